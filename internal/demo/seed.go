package demo

import (
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
)

// Message is one seeded message.
type Message struct {
	Raw   []byte // CRLF line endings, as IMAP carries it
	Flags []imap.Flag
	Date  time.Time
}

// Mailbox is one seeded mailbox.
type Mailbox struct {
	Name     string
	Messages []Message
}

// Tree returns the demo's mailbox tree. It is deterministic: the same bytes
// every time, so runs and tests are reproducible.
func Tree() []Mailbox {
	return []Mailbox{
		{Name: "INBOX", Messages: inbox()},
		{Name: "Archive/2025", Messages: archive()},
		{Name: "Sent", Messages: sent()},
		{Name: "Entwürfe", Messages: drafts()},
	}
}

// Seed creates the demo tree on the server and returns the number of messages.
func (s *Server) Seed() (int, error) {
	n := 0
	for _, mb := range Tree() {
		if err := s.Create(mb.Name); err != nil {
			return n, err
		}
		for _, m := range mb.Messages {
			if _, err := s.Append(mb.Name, m.Raw, m.Flags, m.Date); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

const me = "Demo User <demo@quixysync.example>"

var people = []string{
	"Ada Lovelace <ada@analytical.example>",
	"Grace Hopper <grace@cobol.example>",
	"Linus Example <linus@kernel.example>",
	"Margaret Hamilton <margaret@apollo.example>",
	"Ken Thompson <ken@unix.example>",
	"Jörg Müller <joerg@beispiel.example>",
	"Radia Perlman <radia@spanning.example>",
}

var inboxSubjects = []string{
	"Lunch on Friday?",
	"Re: quarterly report draft",
	"Your invoice #20417",
	"Meeting notes 2025-03-04",
	"Photos from the trip",
	"Build failed on main",
	"Re: Re: holiday schedule",
	"Welcome to the mailing list",
	"Password reset requested (not you? ignore this)",
	"Slides for Tuesday",
	"Weekly digest",
	"Question about the API",
	"Conference travel booked",
	"Fwd: contract v3",
	"Grüße aus München",
	"Server maintenance tonight",
	"Re: code review",
	"Newsletter: spring edition",
	"Can you take a look?",
	"Thanks!",
}

var bodies = []string{
	"Hi,\n\njust checking whether this still works for you.\n\nCheers",
	"Hello,\n\nplease find my comments inline below. Nothing major,\nmostly wording.\n\nBest regards",
	"Hi there,\n\nthe numbers are in. Let me know if anything looks off.\n\nThanks",
	"Hey,\n\nquick one: can we move this to next week?\n\n-- \nsent from a small screen",
}

func inbox() []Message {
	var msgs []Message
	base := time.Date(2025, 3, 1, 8, 15, 0, 0, time.UTC)
	for i, subj := range inboxSubjects {
		from := people[i%len(people)]
		date := base.Add(time.Duration(i) * 7 * time.Hour)
		var flags []imap.Flag
		switch {
		case i < 12: // older mail has been read
			flags = append(flags, imap.FlagSeen)
		}
		if i%5 == 1 {
			flags = append(flags, imap.FlagAnswered)
		}
		if i == 3 || i == 13 {
			flags = append(flags, imap.FlagFlagged)
		}
		var attach *attachment
		if i%4 == 2 {
			attach = sampleAttachment(i)
		}
		msgs = append(msgs, Message{
			Raw:   compose(from, me, subj, date, fmt.Sprintf("inbox-%02d", i), bodies[i%len(bodies)], attach),
			Flags: flags,
			Date:  date,
		})
	}
	return msgs
}

func archive() []Message {
	var msgs []Message
	base := time.Date(2025, 1, 6, 10, 0, 0, 0, time.UTC)
	for i := 0; i < 10; i++ {
		from := people[(i+2)%len(people)]
		date := base.Add(time.Duration(i) * 5 * 24 * time.Hour)
		subj := fmt.Sprintf("Project status, week %d", 2+i*5/7+i)
		var attach *attachment
		if i%3 == 0 {
			attach = sampleAttachment(100 + i)
		}
		flags := []imap.Flag{imap.FlagSeen}
		if i == 4 {
			flags = append(flags, imap.FlagFlagged)
		}
		msgs = append(msgs, Message{
			Raw:   compose(from, me, subj, date, fmt.Sprintf("archive-%02d", i), bodies[(i+1)%len(bodies)], attach),
			Flags: flags,
			Date:  date,
		})
	}
	return msgs
}

func sent() []Message {
	var msgs []Message
	base := time.Date(2025, 3, 2, 17, 30, 0, 0, time.UTC)
	subjects := []string{"Re: Lunch on Friday?", "Re: Your invoice #20417", "Slides attached", "Re: Question about the API", "Out of office"}
	for i, subj := range subjects {
		date := base.Add(time.Duration(i) * 26 * time.Hour)
		var attach *attachment
		if i == 2 {
			attach = sampleAttachment(200)
		}
		msgs = append(msgs, Message{
			Raw:   compose(me, people[i%len(people)], subj, date, fmt.Sprintf("sent-%02d", i), bodies[(i+2)%len(bodies)], attach),
			Flags: []imap.Flag{imap.FlagSeen},
			Date:  date,
		})
	}
	return msgs
}

func drafts() []Message {
	var msgs []Message
	base := time.Date(2025, 3, 9, 21, 0, 0, 0, time.UTC)
	subjects := []string{"Entwurf: Angebot", "Notizen zur Übergabe", "(no subject)"}
	for i, subj := range subjects {
		date := base.Add(time.Duration(i) * 3 * time.Hour)
		msgs = append(msgs, Message{
			Raw:   compose(me, people[5], subj, date, fmt.Sprintf("draft-%02d", i), "Noch nicht fertig …\n", nil),
			Flags: []imap.Flag{imap.FlagSeen, imap.FlagDraft},
			Date:  date,
		})
	}
	return msgs
}

// NewArrival is the message the demo delivers between its two syncs.
func NewArrival() Message {
	date := time.Date(2025, 3, 14, 9, 41, 0, 0, time.UTC)
	return Message{
		Raw:  compose(people[3], me, "New message while you were away", date, "arrival-01", bodies[0], nil),
		Date: date,
	}
}

// LocalSent is the message the demo "sends" locally (a file in Sent/new)
// between its two syncs; it uses LF line endings as files in a Maildir do.
func LocalSent() []byte {
	date := time.Date(2025, 3, 14, 10, 2, 0, 0, time.UTC)
	raw := compose(me, people[0], "Re: New message while you were away", date, "local-01", "Got it, thanks!\n", nil)
	return []byte(strings.ReplaceAll(string(raw), "\r\n", "\n"))
}

type attachment struct {
	name, contentType string
	data              []byte
}

func sampleAttachment(n int) *attachment {
	if n%2 == 0 {
		var b strings.Builder
		b.WriteString("item,quantity,price\n")
		for i := 0; i < 6; i++ {
			fmt.Fprintf(&b, "widget-%d,%d,%d.%02d\n", n+i, (n*7+i)%13+1, (n*3+i)%40+2, (n+i*11)%100)
		}
		return &attachment{name: fmt.Sprintf("report-%d.csv", n), contentType: "text/csv", data: []byte(b.String())}
	}
	// A tiny deterministic binary blob, so the attachment is real base64.
	data := make([]byte, 300)
	x := uint32(n)*2654435761 + 1 // the low 32 bits, whatever the size of int
	for i := range data {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		data[i] = byte(x)
	}
	return &attachment{name: fmt.Sprintf("scan-%d.bin", n), contentType: "application/octet-stream", data: data}
}

// compose builds an RFC 5322 message with CRLF line endings.
func compose(from, to, subject string, date time.Time, id, body string, att *attachment) []byte {
	var b strings.Builder
	h := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	h("From", encodeAddress(from))
	h("To", encodeAddress(to))
	h("Subject", encodeHeader(subject))
	h("Date", date.Format(time.RFC1123Z))
	h("Message-ID", "<"+id+"@quixysync.example>")
	h("MIME-Version", "1.0")
	text := strings.ReplaceAll(body, "\n", "\r\n") + "\r\n"
	if att == nil {
		h("Content-Type", "text/plain; charset=utf-8")
		h("Content-Transfer-Encoding", "8bit")
		b.WriteString("\r\n" + text)
		return []byte(b.String())
	}
	boundary := "=_quixysync_" + id
	h("Content-Type", `multipart/mixed; boundary="`+boundary+`"`)
	b.WriteString("\r\nThis is a multi-part message in MIME format.\r\n")
	b.WriteString("--" + boundary + "\r\n")
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	b.WriteString(text)
	b.WriteString("--" + boundary + "\r\n")
	b.WriteString("Content-Type: " + att.contentType + `; name="` + att.name + "\"\r\n")
	b.WriteString("Content-Disposition: attachment; filename=\"" + att.name + "\"\r\n")
	b.WriteString("Content-Transfer-Encoding: base64\r\n\r\n")
	enc := base64.StdEncoding.EncodeToString(att.data)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	b.WriteString("--" + boundary + "--\r\n")
	return []byte(b.String())
}

// encodeAddress encodes the display name of "Name <addr>" when it is not ASCII.
func encodeAddress(s string) string {
	name, addr, ok := strings.Cut(s, " <")
	if !ok {
		return s
	}
	return encodeHeader(name) + " <" + addr
}

// encodeHeader encodes a non-ASCII header value as an RFC 2047 word.
func encodeHeader(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return "=?utf-8?b?" + base64.StdEncoding.EncodeToString([]byte(s)) + "?="
		}
	}
	return s
}
