"""Compare a Dovecot account with a client-side Maildir tree (and two accounts with each other).

A snapshot is {folder name: [(Message-ID, flag letters), ...]}.
Server: `doveadm fetch 'mailbox flags hdr.message-id' all` (plus `mailbox status` so
empty folders count too). Local: every directory under ROOT with cur/ and new/ is a
folder, ROOT/INBOX is INBOX, other names are read as modified UTF-7 when they decode
as such (mbsync 1.4 writes `Entw&APw-rfe`, quixysync `Entwürfe`); Message-IDs come from
the files, flags from the `:2,` suffix. Only the flags S R F D T are compared.
"""
import collections
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailgen  # noqa: E402
from corpus import msgid_of_bytes  # noqa: E402

IMAP2MD = {"\\Seen": "S", "\\Answered": "R", "\\Flagged": "F", "\\Draft": "D", "\\Deleted": "T"}


def server_side(conf, user):
    def doveadm(*args):
        r = subprocess.run(["doveadm", "-c", conf, "-f", "tab", *args], capture_output=True)
        if r.returncode != 0:
            raise RuntimeError(f"doveadm {' '.join(args)}: {r.stderr.decode(errors='replace').strip()}")
        return r.stdout.decode("utf-8", "replace").split("\n")[1:]

    boxes = collections.defaultdict(list)
    for line in doveadm("fetch", "-u", user, "mailbox flags hdr.message-id", "all"):
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        fl = "".join(sorted(IMAP2MD[f] for f in parts[1].split() if f in IMAP2MD))
        boxes[parts[0]].append((parts[2].strip(), fl))
    for line in doveadm("mailbox", "status", "-u", user, "messages", "*"):
        if line:
            boxes.setdefault(line.rsplit("\t", 1)[0], [])
    return dict(boxes)


def local_side(root):
    boxes = {}
    inbox = os.path.normpath(os.path.join(root, "INBOX"))
    for dp, dns, _fns in os.walk(root):
        if not ("cur" in dns and "new" in dns):
            continue
        rel = os.path.relpath(dp, root)
        if rel == ".":
            continue
        name = "INBOX" if os.path.normpath(dp) == inbox else mailgen.mutf7_decode(rel)
        lst = []
        for sub in ("cur", "new"):
            sd = os.path.join(dp, sub)
            for fn in os.listdir(sd):
                if fn.startswith("."):
                    continue
                with open(os.path.join(sd, fn), "rb") as f:
                    mid = msgid_of_bytes(f.read(16384))
                fl = ""
                if ":2," in fn:
                    fl = "".join(sorted(c for c in fn.split(":2,", 1)[1] if c in "SRFDT"))
                lst.append((mid, fl))
        boxes[name] = lst
    return boxes


def compare(a, b, an="server", bn="local"):
    """Problems (strings) between two snapshots; empty list = identical."""
    problems = []
    for box in sorted(set(a) | set(b)):
        x, y = a.get(box), b.get(box)
        if x is None or y is None:
            problems.append(f"{box}: only on {an if y is None else bn} ({len(x or y)} msgs)")
            continue
        xd, yd = dict(x), dict(y)
        if len(xd) != len(x):
            problems.append(f"{box}: {len(x) - len(xd)} duplicate Message-IDs on {an}")
        if len(yd) != len(y):
            problems.append(f"{box}: {len(y) - len(yd)} duplicate Message-IDs on {bn}")
        miss, extra = set(xd) - set(yd), set(yd) - set(xd)
        if miss:
            problems.append(f"{box}: {len(miss)} missing on {bn}, e.g. {sorted(miss)[0]}")
        if extra:
            problems.append(f"{box}: {len(extra)} missing on {an}, e.g. {sorted(extra)[0]}")
        bad = sorted(m for m in set(xd) & set(yd) if xd[m] != yd[m])
        if bad:
            m = bad[0]
            problems.append(f"{box}: {len(bad)} flag mismatches, e.g. {m} {an}={xd[m]!r} {bn}={yd[m]!r}")
    return problems


def count(snap):
    return sum(len(v) for v in snap.values())
