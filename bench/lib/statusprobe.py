"""What Dovecot spends on STATUS and SELECT of a mailbox another session just changed.

quixysync asks STATUS of every mailbox before it selects one (so that a sync with
nothing to do selects nothing); mbsync, and the floor probe of floor.py, only SELECT.
This probe answers how much that STATUS costs the server when the mailbox did change:
each trial changes the mailbox as scenario c does (corpus.mutate_server: K new
messages, K flag changes, K deletions, from a session of its own), waits the
benchmark's settle time, then times one of these sequences on a new connection:

  select       SELECT (CONDSTORE)
  status       STATUS, then SELECT
  quixysync    LIST "" "", STATUS and LIST "" "*" pipelined, then SELECT (what a
               quixysync run sends for a channel of one mailbox)

Variants alternate trial by trial. Printed per trial: the wall time from the first
command to the last tagged answer, and the server's own time of each command (Dovecot
appends it to its OK answers). Needs a server and an account with the corpus in them,
as `bench/compare.sh --keep` leaves them (start the server again with
`dovecot -c DIR/dovecot/dovecot.conf`; the port is in that file, the password is the
user name).

  python3 bench/lib/statusprobe.py --port P [--user quixysync] [--mailbox INBOX] [--trials 8]
"""

import argparse
import re
import socket
import statistics
import sys
import time

import corpus

_SERVER_TIME = re.compile(rb"\(([0-9.]+) \+")


def _session(host, port, user, password):
    s = socket.create_connection((host, port), timeout=120)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = s.makefile("rb")
    f.readline()  # greeting
    s.sendall(b"L LOGIN %s %s\r\n" % (corpus._quote(user).encode(), corpus._quote(password).encode()))
    while True:
        line = f.readline()
        if not line:
            raise SystemExit("statusprobe: the server closed the connection at login")
        if line.startswith(b"L "):
            if not line.startswith(b"L OK"):
                raise SystemExit(f"statusprobe: login refused: {line!r}")
            return s, f


def timed(host, port, user, password, rounds):
    """Sends each round's commands at once and reads their answers; returns the wall
    time of all rounds and [(command, server seconds)]."""
    s, f = _session(host, port, user, password)
    out, n = [], 0
    t0 = time.monotonic()
    for cmds in rounds:
        tags = []
        for c in cmds:
            n += 1
            tags.append((b"T%d" % n, c))
        s.sendall(b"".join(t + b" " + c + b"\r\n" for t, c in tags))
        for tag, c in tags:
            while True:
                line = f.readline()
                if not line:
                    raise SystemExit("statusprobe: the server closed the connection")
                if line.startswith(tag + b" "):
                    if not line.startswith(tag + b" OK"):
                        raise SystemExit(f"statusprobe: {c!r} failed: {line!r}")
                    m = _SERVER_TIME.search(line)
                    out.append((c.split()[0].decode(), float(m.group(1)) if m else None))
                    break
    wall = time.monotonic() - t0
    s.sendall(b"Z LOGOUT\r\n")
    s.close()
    return wall, out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", default="quixysync")
    p.add_argument("--password", help="default: the user name, as compare.sh sets it")
    p.add_argument("--mailbox", default="INBOX")
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--settle", type=float, default=1.1)
    p.add_argument("--seed", type=int, default=7)
    a = p.parse_args()
    pw = a.password or a.user
    box = corpus._quote(a.mailbox).encode()
    status = b"STATUS " + box + b" (MESSAGES UIDVALIDITY HIGHESTMODSEQ UIDNEXT)"
    select = b"SELECT " + box + b" (CONDSTORE)"
    variants = {
        "select": [[select]],
        "status": [[status], [select]],
        "quixysync": [[b'LIST "" ""', status, b'LIST "" "*"'], [select]],
    }
    walls = {v: [] for v in variants}
    rnd = 1000
    for trial in range(a.trials):
        for name, rounds in variants.items():
            rnd += 1
            corpus.mutate_server(a.host, a.port, a.user, pw, a.k, rnd, a.seed)
            time.sleep(a.settle)
            wall, out = timed(a.host, a.port, a.user, pw, rounds)
            walls[name].append(wall)
            parts = ", ".join(f"{c} {t:.3f}" for c, t in out if c != "LIST")
            print(f"trial {trial + 1} {name:9s} wall {wall:.3f} s  (server: {parts})", flush=True)
    print()
    for name, w in walls.items():
        print(f"{name:9s} median wall {statistics.median(w):.3f} s  (min {min(w):.3f}, max {max(w):.3f}, {len(w)} trials)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
