package engine_test

import (
	"context"
	"strings"
	"testing"

	"github.com/quixysync/quixysync/engine"
)

// A far RENAME of Foo takes Foo/Sub along. Here (a nested layout) the mv of
// Foo's folder that its hint asks for takes Foo/Sub's along too, onto the
// path Foo/Sub's own hint then says to delete "if a run made it": followed
// in that order, the folder deleted is Foo/Sub's own, with its state and
// any mail not yet synced. Foo/Sub's hint must not ask for that.
func TestRenameHintNestedFolder(t *testing.T) {
	p := newPairing(t, imapMaildir)
	spec := p.spec
	engine.AddMsg(t, spec.Far, "Foo", "f1", 0)
	engine.AddMsg(t, spec.Far, "Foo/Sub", "s1", 0)
	engine.MustSync(t, spec, engine.RunOptions{})
	doveadm(t, "mailbox", "rename", "-u", "alice", "Foo", "Bar")
	res := engine.SyncChannel(context.Background(), spec, engine.RunOptions{})
	msgs := map[string]string{}
	for _, m := range res.Mailboxes {
		if m.Err != nil {
			msgs[m.Mailbox] = m.Err.Error()
		}
	}
	nearDir := func(box string) string {
		d, err := spec.Near.(engine.LocalStore).MailboxDir(box)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if !strings.Contains(msgs["Foo"], "mv "+nearDir("Foo")+" "+nearDir("Bar")) {
		t.Fatalf("Foo: no hint: %s", msgs["Foo"])
	}
	if sub := msgs["Foo/Sub"]; strings.Contains(sub, "delete the folder "+nearDir("Bar/Sub")) {
		t.Errorf("Foo/Sub's hint asks to delete the folder Foo's mv puts there: %s", sub)
	}
}
