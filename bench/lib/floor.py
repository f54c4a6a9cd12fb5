"""The server's part of a scenario: the least any client could take.

A probe speaks just the IMAP a sync needs, over one connection, every command
pipelined (written at once, read back once), and times it from the TCP connect to
the last tagged answer. The client's own work (starting a process, reading its
state, writing files) is not in it, so no client can be faster than the probe plus
the cost of starting a process (`benchexec -nothing` measures a Go program that does
nothing). When that sum, divided by mbsync's time, is above a target ratio, the
target is out of reach of any client on this server and machine.

The probes, what each must ask:
- no-op: log in, STATUS (MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ) of every
  mailbox, LIST "" "*" (quixysync's no-op asks the same; mbsync SELECTs each
  mailbox and fetches every UID and flag).
- server changes: log in, then per mailbox SELECT (CONDSTORE), the bodies and flags
  of the UIDs from the last UIDNEXT on, the flag changes since the last
  HIGHESTMODSEQ, and UID SEARCH ALL (without QRESYNC the only way to learn which
  messages were deleted). The last UIDNEXT and HIGHESTMODSEQ come from an untimed
  STATUS before the changes, as a client would have them in its state.

With TLS (STARTTLS or implicit), the probe's connection is encrypted as the tools'
are, the handshake inside the timed span: Python's ssl module, that is OpenSSL, as
mbsync uses, with the benchmark's CA file. The handshake's client side costs well
under a millisecond, so the span is still the server's part.
"""

import base64
import imaplib
import re
import socket
import ssl
import time

import corpus

_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")


class TLS:
    """How the probe secures its connection: mode "none", "starttls" or "imaps"."""

    def __init__(self, mode="none", cafile=None, host="127.0.0.1"):
        self.mode, self.host = mode, host
        self.ctx = None
        if mode != "none":
            self.ctx = ssl.create_default_context(cafile=cafile)


PLAIN = TLS()


class _Conn:
    def __init__(self, host, port, tls=PLAIN, timeout=120):
        self.s = socket.create_connection((host, port), timeout=timeout)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.tls = tls
        if tls.mode == "imaps":
            self.s = tls.ctx.wrap_socket(self.s, server_hostname=tls.host)

    def starttls(self):
        """STARTTLS after the greeting, when the connection asks for it."""
        if self.tls.mode != "starttls":
            return
        self.send(b"T STARTTLS\r\n")
        self.until(b"T")
        if self.buf:
            raise RuntimeError("probe: data after STARTTLS's answer, before the handshake")
        self.s = self.tls.ctx.wrap_socket(self.s, server_hostname=self.tls.host)

    def _fill(self):
        d = self.s.recv(1 << 20)
        if not d:
            raise ConnectionError("server closed the connection")
        self.buf += d

    def line(self):
        """One response line, literals included (so a body cannot end a response)."""
        out = b""
        while True:
            while b"\r\n" not in self.buf:
                self._fill()
            i = self.buf.index(b"\r\n") + 2
            part, self.buf = self.buf[:i], self.buf[i:]
            out += part
            m = _LITERAL.search(part)
            if not m:
                return out
            n = int(m.group(1))
            while len(self.buf) < n:
                self._fill()
            out += self.buf[:n]
            self.buf = self.buf[n:]

    def until(self, tag):
        """Reads up to the tagged answer of tag; returns the untagged lines before it."""
        lines = []
        while True:
            ln = self.line()
            if ln.startswith(tag + b" "):
                if not ln[len(tag) + 1:].startswith(b"OK"):
                    raise RuntimeError(f"probe: {ln[:200]!r}")
                return lines
            lines.append(ln)

    def send(self, data):
        self.s.sendall(data)

    def close(self):
        self.s.close()


def _login(c, user, password):
    c.line()  # greeting
    c.starttls()
    cred = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode())
    c.send(b"L AUTHENTICATE PLAIN " + cred + b"\r\n")
    c.until(b"L")


def _q(name):
    return corpus._quote(name).encode()


def mailboxes(host, port, user, password):
    """The account's selectable mailboxes, as names on the wire (untimed)."""
    c = imaplib.IMAP4(host, port)
    try:
        c.login(user, password)
        return corpus._imap_list(c)
    finally:
        c.logout()


def status_all(host, port, user, password, names):
    """{name: (UIDNEXT, HIGHESTMODSEQ)}, what a client keeps from its last run (untimed)."""
    c = _Conn(host, port)  # untimed: plain is enough
    try:
        _login(c, user, password)
        out = {}
        for i, n in enumerate(names):
            tag = b"S%d" % i
            c.send(tag + b" STATUS " + _q(n) + b" (UIDNEXT HIGHESTMODSEQ)\r\n")
            for ln in c.until(tag):
                un = re.search(rb"UIDNEXT (\d+)", ln)
                hm = re.search(rb"HIGHESTMODSEQ (\d+)", ln)
                if un and hm:
                    out[n] = (int(un.group(1)), int(hm.group(1)))
        c.send(b"Q LOGOUT\r\n")
        return out
    finally:
        c.close()


def noop(host, port, user, password, names, tls=PLAIN):
    """Seconds from connect to the last answer of a no-op's questions."""
    t0 = time.perf_counter()
    c = _Conn(host, port, tls)
    try:
        _login(c, user, password)
        cmds = b"".join(b"S%d STATUS %s (MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)\r\n" % (i, _q(n))
                        for i, n in enumerate(names))
        c.send(cmds + b'Z LIST "" "*"\r\n')
        c.until(b"Z")
        t1 = time.perf_counter()
        c.send(b"Q LOGOUT\r\n")
        return t1 - t0
    finally:
        c.close()


def changes(host, port, user, password, before, tls=PLAIN):
    """Seconds from connect to the last answer of a server-changes run's questions,
    and the bytes of message data received. before: status_all from before the changes."""
    t0 = time.perf_counter()
    c = _Conn(host, port, tls)
    try:
        _login(c, user, password)
        cmds = []
        for i, (n, (uidnext, modseq)) in enumerate(sorted(before.items())):
            cmds.append(b"A%d SELECT %s (CONDSTORE)\r\n" % (i, _q(n)))
            # Not "%d:*": with no new message, * is the last UID and the range
            # would fetch that message's body again.
            cmds.append(b"B%d UID FETCH %d:4294967295 (FLAGS BODY.PEEK[])\r\n" % (i, uidnext))
            if uidnext > 1:
                cmds.append(b"C%d UID FETCH 1:%d (FLAGS) (CHANGEDSINCE %d)\r\n" % (i, uidnext - 1, modseq))
            cmds.append(b"D%d UID SEARCH RETURN (ALL) ALL\r\n" % i)
        last = cmds[-1].split(b" ", 1)[0]
        c.send(b"".join(cmds))
        lines = c.until(last)
        bad = [ln for ln in lines if re.match(rb"[A-D]\d+ (NO|BAD)", ln)]
        if bad:
            raise RuntimeError(f"probe: {bad[0][:200]!r}")
        got = sum(len(ln) for ln in lines)
        t1 = time.perf_counter()
        c.send(b"Q LOGOUT\r\n")
        return t1 - t0, got
    finally:
        c.close()
