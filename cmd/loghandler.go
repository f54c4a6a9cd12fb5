package cmd

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
)

// humanHandler writes the warnings and errors of a run at the default
// verbosity the way the command's own errors read — "quixysync: warning:
// MESSAGE: key=value ..." — rather than as structured records with a time
// stamp: they land in a terminal or a cron mail, next to "quixysync: ..."
// lines, for a person to read. -v and --debug keep slog's text format,
// whose time stamps matter there.
type humanHandler struct {
	mu    *sync.Mutex
	w     io.Writer
	level slog.Level
	attrs []slog.Attr // from WithAttrs, group prefixes applied
	group string      // "" or "a.b."
}

func newHumanHandler(w io.Writer, level slog.Level) *humanHandler {
	return &humanHandler{mu: &sync.Mutex{}, w: w, level: level}
}

func (h *humanHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *humanHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString("quixysync: ")
	switch {
	case r.Level >= slog.LevelError:
		b.WriteString("error: ")
	case r.Level >= slog.LevelWarn:
		b.WriteString("warning: ")
	}
	b.WriteString(r.Message)
	sep := ": "
	add := func(a slog.Attr, prefix string) {
		if a.Equal(slog.Attr{}) {
			return
		}
		b.WriteString(sep)
		sep = " "
		b.WriteString(humanText(prefix+a.Key) + "=" + humanValue(a.Value))
	}
	for _, a := range h.attrs {
		add(a, "")
	}
	r.Attrs(func(a slog.Attr) bool {
		add(a, h.group)
		return true
	})
	b.WriteByte('\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.w, b.String())
	return err
}

// humanValue is a value as logfmt writes it: quoted when it has a space, a
// quote or an equals sign (an error's text), bare otherwise.
func humanValue(v slog.Value) string { return humanText(v.Resolve().String()) }

func humanText(s string) string {
	if s == "" || strings.ContainsAny(s, " \"=\t\n") {
		return strconv.Quote(s)
	}
	return s
}

func (h *humanHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := *h
	n.attrs = append([]slog.Attr(nil), h.attrs...)
	for _, a := range as {
		a.Key = h.group + a.Key
		n.attrs = append(n.attrs, a)
	}
	return &n
}

func (h *humanHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	n := *h
	n.group = h.group + name + "."
	return &n
}
