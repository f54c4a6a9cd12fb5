package channel

import (
	"fmt"
	"strings"
)

// Target is one channel to run, restricted to some mailboxes or not.
type Target struct {
	Channel   *Channel
	Mailboxes []string // nil = every mailbox the channel's patterns match
}

// Resolve turns command-line names into targets. Each arg is CHANNEL,
// CHANNEL:BOX[,BOX...] or GROUP; all selects every channel (sorted by name)
// and takes no args. A channel named more than once runs once: whole if any
// mention is whole, else with the union of the named mailboxes. Targets keep
// the order of first mention. Explicitly named mailboxes are used as given
// (INBOX in any case is "INBOX"), even when the patterns would exclude them.
// Every error is a usage error.
func (c *Config) Resolve(args []string, all bool) ([]Target, error) {
	if all {
		if len(args) > 0 {
			return nil, fmt.Errorf("--all selects every channel; do not also name channels or groups (%s)", strings.Join(args, " "))
		}
		var out []Target
		for _, n := range c.ChannelNames() {
			out = append(out, Target{Channel: c.Channels[n]})
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("%s defines no channels; add a [channel.NAME] table", c.File)
		}
		return out, nil
	}
	if len(args) == 0 {
		return nil, fmt.Errorf("name a channel or group, or use --all; %s", c.available())
	}
	var out []Target
	index := map[string]int{}
	add := func(ch *Channel, boxes []string) {
		i, seen := index[ch.Name]
		if !seen {
			index[ch.Name] = len(out)
			out = append(out, Target{Channel: ch, Mailboxes: boxes})
			return
		}
		t := &out[i]
		if t.Mailboxes == nil {
			return // already whole
		}
		if boxes == nil {
			t.Mailboxes = nil
			return
		}
		for _, b := range boxes {
			if !contains(t.Mailboxes, b) {
				t.Mailboxes = append(t.Mailboxes, b)
			}
		}
	}
	for _, arg := range args {
		name, boxList, hasBoxes := strings.Cut(arg, ":")
		if name == "" {
			return nil, fmt.Errorf("%q: missing channel name; write CHANNEL, CHANNEL:MAILBOX[,MAILBOX...] or GROUP", arg)
		}
		if hasBoxes {
			ch := c.Channels[name]
			if ch == nil {
				if _, isGroup := c.Groups[name]; isGroup {
					return nil, fmt.Errorf("%q: %s is a group; CHANNEL:MAILBOX needs a channel (%s)", arg, name, c.available())
				}
				return nil, fmt.Errorf("%q: unknown channel %q; %s", arg, name, c.available())
			}
			var boxes []string
			for _, b := range strings.Split(boxList, ",") {
				if b == "" {
					return nil, fmt.Errorf("%q: empty mailbox name; write CHANNEL:MAILBOX[,MAILBOX...] without empty entries", arg)
				}
				b = canonInbox(b)
				if !contains(boxes, b) {
					boxes = append(boxes, b)
				}
			}
			add(ch, boxes)
			continue
		}
		if ch := c.Channels[name]; ch != nil {
			add(ch, nil)
			continue
		}
		if g := c.Groups[name]; g != nil {
			for _, n := range g.Channels {
				if ch := c.Channels[n]; ch != nil {
					add(ch, nil)
				}
			}
			continue
		}
		return nil, fmt.Errorf("unknown channel or group %q; %s", name, c.available())
	}
	return out, nil
}

func (c *Config) available() string {
	s := "channels: " + listOrNone(c.ChannelNames())
	if len(c.Groups) > 0 {
		s += "; groups: " + strings.Join(c.GroupNames(), ", ")
	}
	return s
}

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "(none defined)"
	}
	return strings.Join(l, ", ")
}
