package channel

import (
	"reflect"
	"strings"
	"testing"
)

func resolveConfig(t *testing.T) *Config {
	return mustParse(t, lines(
		`[imap.a]`, `host = "h"`, `user = "u"`, `password = "p"`,
		`[maildir.m]`, `path = "/m"`,
		`[maildir.n]`, `path = "/n"`,
		`[channel.work]`, `far = "imap.a"`, `near = "maildir.m"`,
		`[channel.home]`, `far = "imap.a"`, `near = "maildir.n"`,
		`[channel.backup]`, `far = "maildir.m"`, `near = "maildir.n"`,
		`[group.mail]`, `channels = ["work", "home"]`,
	))
}

type tgt struct {
	ch    string
	boxes []string
}

func simplify(ts []Target) []tgt {
	var out []tgt
	for _, t := range ts {
		out = append(out, tgt{t.Channel.Name, t.Mailboxes})
	}
	return out
}

func TestResolve(t *testing.T) {
	cfg := resolveConfig(t)
	cases := []struct {
		args []string
		all  bool
		want []tgt
	}{
		{[]string{"work"}, false, []tgt{{"work", nil}}},
		{[]string{"work:INBOX"}, false, []tgt{{"work", []string{"INBOX"}}}},
		{[]string{"work:inbox,Sent,Lists/go"}, false, []tgt{{"work", []string{"INBOX", "Sent", "Lists/go"}}}},
		{[]string{"mail"}, false, []tgt{{"work", nil}, {"home", nil}}},
		{[]string{"backup", "mail"}, false, []tgt{{"backup", nil}, {"work", nil}, {"home", nil}}},
		{nil, true, []tgt{{"backup", nil}, {"home", nil}, {"work", nil}}},
		// Duplicates collapse; whole wins over a mailbox list; lists merge.
		{[]string{"work", "work"}, false, []tgt{{"work", nil}}},
		{[]string{"work:INBOX", "mail"}, false, []tgt{{"work", nil}, {"home", nil}}},
		{[]string{"mail", "work:INBOX"}, false, []tgt{{"work", nil}, {"home", nil}}},
		{[]string{"work:INBOX", "work:Sent,INBOX"}, false, []tgt{{"work", []string{"INBOX", "Sent"}}}},
		{[]string{"work:a,a"}, false, []tgt{{"work", []string{"a"}}}},
	}
	for _, tc := range cases {
		got, err := cfg.Resolve(tc.args, tc.all)
		if err != nil {
			t.Errorf("Resolve(%q, %v): %v", tc.args, tc.all, err)
			continue
		}
		if !reflect.DeepEqual(simplify(got), tc.want) {
			t.Errorf("Resolve(%q, %v) = %v, want %v", tc.args, tc.all, simplify(got), tc.want)
		}
		for _, g := range got {
			if g.Channel != cfg.Channels[g.Channel.Name] {
				t.Errorf("target does not point at the config's channel")
			}
		}
	}
}

func TestResolveErrors(t *testing.T) {
	cfg := resolveConfig(t)
	cases := []struct {
		args []string
		all  bool
		want []string
	}{
		{nil, false, []string{"name a channel or group, or use --all", "channels: backup, home, work", "groups: mail"}},
		{[]string{"nope"}, false, []string{`unknown channel or group "nope"`, "channels: backup, home, work", "groups: mail"}},
		{[]string{"work", "nope"}, false, []string{`"nope"`}},
		{[]string{"nope:INBOX"}, false, []string{`unknown channel "nope"`, "channels: backup, home, work"}},
		{[]string{"mail:INBOX"}, false, []string{"mail is a group", "needs a channel"}},
		{[]string{"work:"}, false, []string{"empty mailbox name"}},
		{[]string{"work:a,,b"}, false, []string{"empty mailbox name"}},
		{[]string{":INBOX"}, false, []string{"missing channel name"}},
		{[]string{"work"}, true, []string{"--all", "do not also name"}},
	}
	for _, tc := range cases {
		got, err := cfg.Resolve(tc.args, tc.all)
		if err == nil {
			t.Errorf("Resolve(%q, %v) = %v, want an error", tc.args, tc.all, simplify(got))
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Resolve(%q, %v) error lacks %q: %v", tc.args, tc.all, w, err)
			}
		}
	}
	empty := &Config{File: "x.toml"}
	if _, err := empty.Resolve(nil, true); err == nil || !strings.Contains(err.Error(), "defines no channels") {
		t.Errorf("--all without channels: %v", err)
	}
	if _, err := empty.Resolve(nil, false); err == nil || !strings.Contains(err.Error(), "(none defined)") {
		t.Errorf("no args without channels: %v", err)
	}
}
