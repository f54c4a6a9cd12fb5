#!/usr/bin/env python3
"""Where each mailbox of one quixysync run waited, from a Go execution trace.

    QUIXYSYNC_TRACE=run.trace quixysync sync --all
    python3 bench/lib/tracetimeline.py run.trace [--min-ms 1.0] [--match engine.syncMailbox]

For every goroutine whose stacks contain --match (default: the engine's per-mailbox
goroutines), prints when it started and ended (ms from the trace's start) and each
wait of at least --min-ms: blocked in a system call (which one, e.g. Fsync, Syncfs)
or waiting (network, a channel, a lock), with the first quixysync frame of the stack
that blocked. A CPU profile shows where time is spent running; this shows the
waits between, e.g. mailboxes queueing for one of the pool's connections
(`imap.(*Store).take`) while another holds it through a flush.

Reads `go tool trace -d=parsed` (Go 1.26's text dump); needs Go on PATH.
"""

import argparse
import re
import signal
import subprocess
import sys
from collections import defaultdict

TRANSITION = re.compile(
    r'M=(-?\d+) P=(-?\d+) G=(-?\d+) StateTransition Time=(\d+) GoID=(\d+) (\w+)->(\w+) Reason="([^"]*)"')


def parse(lines):
    """Yields (time ns, goroutine, from, to, reason, stack frames)."""
    i = 0
    while i < len(lines):
        m = TRANSITION.match(lines[i])
        i += 1
        if not m:
            continue
        stack = []
        if i < len(lines) and lines[i].startswith(("TransitionStack=", "Stack=")):
            i += 1
            while i < len(lines) and lines[i].startswith("\t"):
                if not lines[i].startswith("\t\t"):
                    stack.append(lines[i].strip().split(" @")[0])
                i += 1
        # The stack is the running goroutine's (G=): for another's
        # transition (a wakeup) it says who woke it, not where it was.
        own = m.group(3) == m.group(5)
        yield int(m.group(4)), int(m.group(5)), m.group(6), m.group(7), m.group(8), stack if own else []


def ours(stack):
    for f in stack:
        if "quixysync/quixysync/" in f:
            return f.split("quixysync/quixysync/", 1)[1]
    return stack[0] if stack else "?"


def main():
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # | head
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trace")
    ap.add_argument("--min-ms", type=float, default=1.0)
    ap.add_argument("--match", default="engine.syncMailbox")
    a = ap.parse_args()
    out = subprocess.run(["go", "tool", "trace", "-d=parsed", a.trace], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"go tool trace: {out.stderr.strip()}")
    events = list(parse(out.stdout.split("\n")))
    if not events:
        sys.exit(f"{a.trace}: no goroutine transitions (not a Go 1.26 execution trace?)")
    t0 = events[0][0]
    byg = defaultdict(list)
    for e in events:
        byg[e[1]].append(e)
    for g, es in sorted(byg.items()):
        if not any(a.match in f for e in es for f in e[5]):
            continue
        print(f"G{g}: {(es[0][0] - t0) / 1e6:.1f}-{(es[-1][0] - t0) / 1e6:.1f} ms")
        blocked = None
        for t, _, frm, to, reason, stack in es:
            if frm == "Running" and to in ("Syscall", "Waiting"):
                blocked = (t, to, reason, stack)
            elif blocked and to in ("Running", "Runnable"):
                ms = (t - blocked[0]) / 1e6
                if ms >= a.min_ms:
                    what = blocked[3][0].rsplit(".", 1)[-1] if blocked[1] == "Syscall" and blocked[3] else blocked[2]
                    print(f"  {(blocked[0] - t0) / 1e6:7.1f} +{ms:5.1f} {blocked[1].lower():7s} {what[:24]:24s} {ours(blocked[3])}")
                blocked = None


if __name__ == "__main__":
    main()
