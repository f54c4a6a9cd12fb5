package channel

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ConfigError is one problem in a configuration file. Its message says what is
// wrong and how to fix it.
type ConfigError struct {
	File string // the file, as given to Load or Parse
	Line int    // 1-based; 0 when not known or not about one line
	Key  string // dotted key, e.g. "imap.work.tls"; empty when about the whole file
	Msg  string
}

// Error formats the problem as "FILE:LINE: KEY: MSG", leaving out the parts
// that are unknown.
func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// joinErrors sorts by line (then key, then message) so the report reads top
// to bottom, and returns a single error unwrapped when there is only one.
func joinErrors(errs []*ConfigError) error {
	if len(errs) == 0 {
		return nil
	}
	sort.SliceStable(errs, func(i, j int) bool {
		a, b := errs[i], errs[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		if a.Key != b.Key {
			return a.Key < b.Key
		}
		return a.Msg < b.Msg
	})
	if len(errs) == 1 {
		return errs[0]
	}
	list := make([]error, len(errs))
	for i, e := range errs {
		list[i] = e
	}
	return errors.Join(list...)
}

// ConfigErrors returns every *ConfigError inside err (a single one or an
// errors.Join of several), in order.
func ConfigErrors(err error) []*ConfigError {
	var out []*ConfigError
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		if ce, ok := e.(*ConfigError); ok {
			out = append(out, ce)
			return
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		walk(errors.Unwrap(e))
	}
	walk(err)
	return out
}
