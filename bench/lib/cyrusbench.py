#!/usr/bin/env python3
"""Driver of bench/cyrus.sh: quixysync (one or two binaries) against mbsync on a private Cyrus.

bench/cyrus.sh starts the server and calls this with its port and admin login. This
creates one account per tool (user/<name> as the admin), loads the same deterministic
corpus into each over IMAP (pipelined APPENDs with LITERAL+, untimed), and runs the
scenarios with the tools alternating run by run:

  a  initial pull into an empty Maildir (one timed run per tool)
  b  no-op resync
  c  server changes: before each run, on that tool's account, K APPENDs, K flag changes
     (UID STORE +/-\\Seen or \\Flagged), K deletions (\\Deleted + UID EXPUNGE)
  d  local changes: before each run, in that tool's Maildir, K new files, K flag renames,
     K deletions (bench/lib/corpus.py's mutate_local, as compare.sh's scenario d)

After every timed run the account (read over IMAP) is compared with the Maildir: folder
set, Message-IDs, duplicates, flags S R F D T. After every round the accounts of all tools
are compared with each other ("same accounts"), which shows they got the same work.

    python3 bench/lib/cyrusbench.py --summarize FILE.jsonl   # remake the table
"""
import argparse
import imaplib
import json
import os
import platform
import random
import re
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailgen  # noqa: E402
import verify  # noqa: E402
from compare import fmt, log, med, ratio, run_timed, server_cpu  # noqa: E402  (compare.sh's driver)
from corpus import msgid_of_bytes, mutate_local  # noqa: E402

MD2IMAP = {v: k for k, v in verify.IMAP2MD.items()}
SCEN_NAMES = {"a": "a initial pull", "b": "b no-op", "c": "c server changes", "d": "d local changes"}


# --- a small pipelining IMAP client -------------------------------------------------------
# imaplib waits for every answer and writes a literal and its CRLF in two send()s, which
# on a Cyrus connection (no TCP_NODELAY on either side) can wait 40 ms for a delayed ACK
# each time. Loading and changing the accounts is untimed, but should not take minutes.

def qstr(s):
    b = s.encode() if isinstance(s, str) else s
    return b'"' + b.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


_LIT = re.compile(rb"\{(\d+)\+?\}\r\n$")


class Imap:
    def __init__(self, host, port, user, password):
        self.s = socket.create_connection((host, port), timeout=300)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.r = self.s.makefile("rb")
        self.greeting = self.r.readline().decode(errors="replace").strip()
        if not self.greeting.startswith("* OK"):
            raise RuntimeError(f"IMAP greeting: {self.greeting}")
        self.n = 0
        self.ok(self.send(b"LOGIN " + qstr(user) + b" " + qstr(password)))
        caps = b" ".join(self.ok(self.send(b"CAPABILITY"))).upper()
        self.literal_plus = b"LITERAL+" in caps

    def send(self, cmd):
        self.n += 1
        tag = b"T%d" % self.n
        self.s.sendall(tag + b" " + cmd + b"\r\n")
        return tag

    def read(self, tag):
        """(tagged line, [untagged responses with their literals inlined])"""
        untagged = []
        while True:
            line = self.r.readline()
            if not line:
                raise RuntimeError("IMAP connection closed")
            m = _LIT.search(line)
            while m:
                line += self.r.read(int(m.group(1)))
                more = self.r.readline()
                line += more
                m = _LIT.search(more)
            if line.startswith(tag + b" "):
                return line, untagged
            untagged.append(line)

    def ok(self, tag):
        line, untagged = self.read(tag)
        if not line[len(tag) + 1:].upper().startswith(b"OK"):
            raise RuntimeError(f"IMAP {tag.decode()}: {line.decode(errors='replace').strip()}")
        return untagged

    def pipeline(self, cmds, window=100):
        """Send cmds with at most window answers outstanding; every one must be OK."""
        tags = []
        for cmd in cmds:
            tags.append(self.send(cmd))
            if len(tags) >= window:
                self.ok(tags.pop(0))
        for t in tags:
            self.ok(t)

    def append_cmd(self, box, flags, t, data):
        data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        if not self.literal_plus:
            raise RuntimeError("server lacks LITERAL+")
        return (b"APPEND " + qstr(box) + b" (" + " ".join(flags).encode() + b") "
                + imaplib.Time2Internaldate(t).encode() + b" {%d+}\r\n" % len(data) + data)

    def list(self):
        names = []
        for line in self.ok(self.send(b'LIST "" "*"')):
            m = re.match(rb'\* LIST \(([^)]*)\) (?:"(?:[^"\\]|\\.)*"|NIL) (.*)\r\n$', line, re.S)
            if not m or b"\\noselect" in m.group(1).lower() or b"\\nonexistent" in m.group(1).lower():
                continue
            n = m.group(2)
            lm = re.match(rb"\{(\d+)\+?\}\r\n", n)
            if lm:
                n = n[lm.end():]
            elif n.startswith(b'"'):
                n = n[1:-1].replace(b'\\"', b'"').replace(b"\\\\", b"\\")
            names.append(n.decode())
        return sorted(names)

    def messages(self, box, select=False):
        """[(uid, Message-ID, [flags])] of box."""
        self.ok(self.send((b"SELECT " if select else b"EXAMINE ") + qstr(box)))
        out = []
        for line in self.ok(self.send(b"UID FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")):
            if b" FETCH " not in line[:40]:
                continue
            uid = int(re.search(rb"UID (\d+)", line).group(1))
            fl = re.search(rb"FLAGS \(([^)]*)\)", line).group(1).decode().split()
            out.append((uid, msgid_of_bytes(line[line.find(b"]"):]), fl))
        return out

    def close(self):
        try:
            self.ok(self.send(b"LOGOUT"))
        except Exception:
            pass
        self.s.close()


def snapshot(a, user):
    """{folder (UTF-8): [(Message-ID, flag letters)]} of an account, for verify.compare."""
    c = Imap(a.host, a.port, user, a.password)
    snap = {}
    for b in c.list():
        snap[mailgen.mutf7_decode(b)] = [
            (mid, "".join(sorted(verify.IMAP2MD[f] for f in fl if f in verify.IMAP2MD)))
            for _uid, mid, fl in c.messages(b)]
    c.close()
    return snap


# --- accounts, corpus, changes ------------------------------------------------------------

def create_users(a, users):
    c = Imap(a.host, a.port, a.admin, a.admin_pass)
    for u in users:
        c.ok(c.send(b"CREATE " + qstr(f"user/{u}")))
    c.close()
    m = re.search(r"Cyrus IMAP \S+", c.greeting)
    return m.group(0) if m else c.greeting


def corpus_messages(a):
    """[(folder mUTF-7, [IMAP flags], date, bytes)] in folder order; deterministic."""
    flist = mailgen.folder_list(a.folders)
    counts = mailgen.distribute(a.n, flist)
    large = mailgen.large_set(a.seed, counts, a.profile)
    out = []
    for fi, ((name, _w), cnt) in enumerate(zip(flist, counts)):
        box = "INBOX" if name == "INBOX" else mailgen.mutf7_encode(name)
        for i in range(cnt):
            _mid, t, data = mailgen.make_message(a.seed, fi, i, profile=a.profile, force_size=large.get((fi, i)))
            fl = [MD2IMAP[x] for x in mailgen.flags_for(a.seed, name, fi, i, cnt)]
            out.append((box, fl, t, data))
    return [b for b in ("INBOX" if n == "INBOX" else mailgen.mutf7_encode(n) for n, _ in flist)], out


def load(a, user, boxes, msgs):
    c = Imap(a.host, a.port, user, a.password)
    c.pipeline([b"CREATE " + qstr(b) for b in boxes if b != "INBOX"])
    c.pipeline(c.append_cmd(b, fl, t, d) for b, fl, t, d in msgs)
    got = sum(int(re.search(rb"MESSAGES (\d+)", c.ok(c.send(b"STATUS " + qstr(b) + b" (MESSAGES)"))[0]).group(1))
              for b in boxes)
    c.close()
    if got != len(msgs):
        raise SystemExit(f"load {user}: {got} messages on the server, expected {len(msgs)}")


def mutate(a, user, rnd):
    """K deletions, K flag changes, K new messages, picked by (folder, Message-ID) with an
    RNG seeded by the round: accounts that hold the same messages get the same changes."""
    k = a.k
    rng = random.Random(f"mut/{a.seed}/{rnd}/server")
    c = Imap(a.host, a.port, user, a.password)
    boxes = c.list()
    pool = sorted((b, mid, uid, fl) for b in boxes for uid, mid, fl in c.messages(b))
    if len(pool) < 2 * k:
        raise SystemExit(f"mutate {user}: only {len(pool)} messages, need {2 * k}")
    pick = rng.sample(range(len(pool)), 2 * k)
    per_box = {}
    for i in pick[k:]:
        b, _mid, uid, fl = pool[i]
        f = "\\Seen" if rng.random() < 0.5 else "\\Flagged"
        op = "-FLAGS.SILENT" if f in fl else "+FLAGS.SILENT"
        per_box.setdefault(b, {}).setdefault((op, f), []).append(uid)
    dele = {}
    for i in pick[:k]:
        dele.setdefault(pool[i][0], []).append(pool[i][2])
    for b in sorted(set(per_box) | set(dele)):
        cmds = [b"SELECT " + qstr(b)]
        for (op, f), uids in sorted(per_box.get(b, {}).items()):
            cmds.append(f"UID STORE {','.join(map(str, sorted(uids)))} {op} ({f})".encode())
        if b in dele:
            s = ",".join(map(str, sorted(dele[b])))
            cmds += [f"UID STORE {s} +FLAGS.SILENT (\\Deleted)".encode(), f"UID EXPUNGE {s}".encode()]
        c.pipeline(cmds)
    c.ok(c.send(b"UNSELECT"))
    wmap = dict(mailgen.FOLDERS)
    weights = [wmap.get(mailgen.mutf7_decode(b), 4) for b in boxes]
    apps = []
    for i in range(k):
        b = rng.choices(boxes, weights)[0]
        size = min(mailgen.size_class(rng, a.profile), 150_000)
        _mid, t, data = mailgen.make_message(a.seed, boxes.index(b), i, tag=f"s{rnd}", force_size=size)
        apps.append(c.append_cmd(b, ["\\Seen"] if rng.random() < 0.2 else [], t, data))
    c.pipeline(apps)
    c.close()


# --- tools ------------------------------------------------------------------------------

class Tool:
    def __init__(self, name, user, a, binary=None):
        self.name, self.user, self.a, self.bin = name, user, a, binary
        self.local = os.path.join(a.state, "local", name)
        self.work = os.path.join(a.state, "work", name)
        self.log = os.path.join(a.state, "work", name + ".log")

    def fresh(self):
        for p in (self.local, self.work):
            shutil.rmtree(p, ignore_errors=True)
            os.makedirs(p)
        self.setup()


class Mbsync(Tool):
    def setup(self):
        self.conf = os.path.join(self.work, "mbsyncrc")
        with open(self.conf, "w") as f:  # isync 1.4 syntax (1.5 renamed SSLType to TLSType)
            f.write(f"""IMAPAccount cy
Host {self.a.host}
Port {self.a.port}
User {self.user}
Pass {self.a.password}
SSLType None
AuthMechs LOGIN
{"" if self.a.mb_compress == "yes" else "DisableExtension COMPRESS=DEFLATE"}

IMAPStore cy
Account cy

MaildirStore local
Path {self.local}/
Inbox {self.local}/INBOX
SubFolders Verbatim

Channel ch
Far :cy:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
""")

    def argv(self):
        return [self.bin, "-q", "-c", self.conf, "ch"]

    def version(self):
        return _first_line([self.bin, "--version"])


class Quixysync(Tool):
    def setup(self):
        self.conf = os.path.join(self.work, "quixysync.toml")
        with open(self.conf, "w") as f:  # the defaults: layout verbatim, inbox <path>/INBOX, mailboxes ["*"]
            f.write(f"""[imap.cy]
host = "{self.a.host}"
port = {self.a.port}
tls = "none"
user = "{self.user}"
password = "{self.a.password}"

[maildir.local]
path = "{self.local}"

[channel.ch]
far = "imap.cy"
near = "maildir.local"
expunge = "both"
""")

    def argv(self):
        return [self.bin, "-q", "-c", self.conf, "sync", "ch"]

    def version(self):
        return _first_line([self.bin, "version"])


def _first_line(argv):
    try:
        r = subprocess.run(argv, capture_output=True, timeout=10)
        out = (r.stdout or r.stderr).decode(errors="replace").strip().splitlines()
        return out[0] if out else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


# --- measuring ----------------------------------------------------------------------------

class Bench:
    def __init__(self, a):
        self.a = a
        self.tools = []
        for name in a.tools:
            if name == "mbsync":
                self.tools.append(Mbsync("mbsync", "mb", a, os.environ.get("MBSYNC") or shutil.which("mbsync")))
            elif name == "quixysync":
                self.tools.append(Quixysync("quixysync", "qs", a, a.qs_bin))
            elif name == "quixysync2":
                self.tools.append(Quixysync("quixysync2", "qs2", a, a.qs_bin2))
        os.makedirs(a.results, exist_ok=True)
        base = os.path.join(a.results, f"cyrus-n{a.n}-m{a.folders}-{a.tag}")
        self.jsonl, self.md = base + ".jsonl", base + ".md"
        self.out = open(self.jsonl, "w")
        self.failed = 0

    def emit(self, rec):
        self.out.write(json.dumps(rec, ensure_ascii=False) + "\n")
        self.out.flush()

    def order(self, rep):
        r = rep % len(self.tools)
        return self.tools[r:] + self.tools[:r]

    def timed(self, tool, scen, rep):
        os.sync()
        time.sleep(self.a.settle)  # mbsync sleeps 1 s if a Maildir changed within the current second
        s0 = server_cpu(self.a.master_pid)
        load1 = os.getloadavg()[0]
        rec = run_timed(self.a.exec_bin, tool.argv(), tool.log, self.a.timeout)
        time.sleep(0.05)  # let the imapd finish the LOGOUT before its CPU is read
        s1 = server_cpu(self.a.master_pid)
        if s0 is not None and s1 is not None:
            rec["srv_cpu_s"] = round(s1 - s0, 3)
        srv = snapshot(self.a, tool.user)
        problems = verify.compare(srv, verify.local_side(tool.local))
        rec.update(type="run", tool=tool.name, scenario=scen, rep=rep, load1=round(load1, 2),
                   verify_ok=not problems, verify=problems[:10] or f"{verify.count(srv)} messages equal")
        self.emit(rec)
        if rec["rc"] or problems:
            self.failed += 1
        msg = "verify OK" if not problems else f"verify FAIL: {problems[0]}"
        log(f"  {tool.name:10s} {scen}#{rep}: wall {rec['wall_s']:.3f}s cpu {rec['cpu_s']:.3f}s "
            f"rss {rec['maxrss_mib']}MiB srv {rec.get('srv_cpu_s')}s rc={rec['rc']} {msg}")
        if rec["rc"]:
            with open(tool.log, "rb") as f:
                log(f"    tail of {tool.log}:\n{f.read()[-800:].decode(errors='replace').strip()}")
        return srv

    def cross(self, scen, rep, snaps):
        if len(snaps) < 2:
            return
        names = list(snaps)
        problems = []
        for other in names[1:]:
            problems += [f"{names[0]} vs {other}: {p}"
                         for p in verify.compare(snaps[names[0]], snaps[other], names[0], other)]
        self.emit({"type": "cross", "scenario": scen, "rep": rep, "ok": not problems, "problems": problems[:10]})
        if problems:
            self.failed += 1
            log(f"  accounts differ after {scen}#{rep}: {problems[0]}")

    def run(self):
        a = self.a
        t0 = time.time()
        greeting = create_users(a, [t.user for t in self.tools])
        boxes, msgs = corpus_messages(a)
        size = sum(len(m[3]) for m in msgs)
        log(f"corpus: {len(msgs)} messages, {size / 1e6:.1f} MB, {len(boxes)} folders; loading "
            f"into {', '.join(t.user for t in self.tools)}")
        tl = time.time()
        for t in self.tools:
            load(a, t.user, boxes, msgs)
        load_s = time.time() - tl
        log(f"loaded in {load_s:.1f} s")
        self.emit({"type": "meta", "n": a.n, "folders": a.folders, "k": a.k, "reps": a.reps, "profile": a.profile,
                   "seed": a.seed, "scenarios": a.scenarios, "mb_compress": a.mb_compress, "settle_s": a.settle, "corpus_mb": round(size / 1e6, 1),
                   "load_s": round(load_s, 1), "server": greeting, "server_dir": a.server_dir,
                   "state_fs": a.state_fs, "time": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                   "tools": {t.name: {"binary": t.bin, "version": t.version(),
                                      "user": t.user} for t in self.tools},
                   "machine": machine()})
        for t in self.tools:
            t.fresh()
        scen = a.scenarios.split(",")
        if "a" in scen:
            log("scenario a (initial pull), one run per tool")
            for t in self.order(0):
                self.timed(t, "a", 0)
        else:
            log("initial pull (untimed)")
            for t in self.tools:
                r = run_timed(a.exec_bin, t.argv(), t.log, a.timeout)
                if r["rc"]:
                    raise SystemExit(f"initial sync of {t.name} failed (rc {r['rc']}), see {t.log}")
        if "b" in scen:
            log(f"scenario b (no-op), {a.reps} reps")
            for rep in range(a.reps):
                self.cross("b", rep, {t.name: self.timed(t, "b", rep) for t in self.order(rep)})
        if "c" in scen:
            log(f"scenario c (server changes, k={a.k}), {a.reps} reps")
            for rep in range(a.reps):
                snaps = {}
                for t in self.order(rep):
                    mutate(a, t.user, rep + 1)
                    snaps[t.name] = self.timed(t, "c", rep)
                self.cross("c", rep, snaps)
        if "d" in scen:
            log(f"scenario d (local changes, k={a.k}), {a.reps} reps")
            for rep in range(a.reps):
                snaps = {}
                for t in self.order(rep):
                    mutate_local(t.local, a.k, rep + 1, a.seed)
                    snaps[t.name] = self.timed(t, "d", rep)
                self.cross("d", rep, snaps)
        output = {}
        for t in self.tools:  # -q: anything a tool printed is a warning or an error
            with open(t.log, errors="replace") as f:
                lines = [ln.rstrip() for ln in f if ln.strip() and not ln.startswith("=== ")]
            if lines:
                distinct = {}
                for ln in lines:
                    distinct[ln] = distinct.get(ln, 0) + 1
                output[t.name] = {"lines": len(lines), "distinct": [[ln, c] for ln, c in list(distinct.items())[:10]]}
                log(f"{t.name} printed {len(lines)} lines: " + " | ".join(f"{c}x {ln}" for ln, c in distinct.items()))
        self.emit({"type": "end", "elapsed_s": round(time.time() - t0, 1), "failed": self.failed,
                   "tool_output": output})
        self.out.close()
        table = summarize(self.jsonl)
        with open(self.md, "w") as f:
            f.write(table)
        sys.stdout.write(table)
        log(f"done in {time.time() - t0:.0f} s; {self.md}, {self.jsonl}")
        return 1 if self.failed else 0


def machine():
    def first(path, key):
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith(key):
                        return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return "?"
    return {"cpu": first("/proc/cpuinfo", "model name"), "cores": os.cpu_count(),
            "mem": first("/proc/meminfo", "MemTotal"), "kernel": platform.release()}


# --- summary ------------------------------------------------------------------------------

def summarize(path):
    meta, runs, cross, end = {}, {}, {}, {}
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if r["type"] == "meta":
                meta = r
            elif r["type"] == "run":
                runs.setdefault(r["scenario"], {}).setdefault(r["tool"], []).append(r)
            elif r["type"] == "cross":
                cross.setdefault(r["scenario"], []).append(r["ok"])
            elif r["type"] == "end":
                end = r
    tools = list(meta.get("tools", {}))
    mc = meta.get("machine", {})
    loads = [r["load1"] for s in runs.values() for rs in s.values() for r in rs if r.get("load1") is not None]
    out = [f"Cyrus benchmark: n={meta.get('n')} folders={meta.get('folders')} profile={meta.get('profile')} "
           f"({meta.get('corpus_mb')} MB), k={meta.get('k')}, reps={meta.get('reps')}, plain IMAP on 127.0.0.1; "
           f"{meta.get('time')}.",
           f"Server: {meta.get('server')} (spool on {meta.get('server_dir')}); corpus loaded over IMAP in "
           f"{meta.get('load_s')} s (untimed). mbsync COMPRESS=DEFLATE: "
           + ("on (its default; quixysync does not compress)" if meta.get("mb_compress", "yes") == "yes"
              else "off (DisableExtension COMPRESS=DEFLATE)") + ".",
           "Tools: " + "; ".join(f"{t} = {v.get('binary')} ({v.get('version')})" for t, v in meta.get("tools", {}).items())
           + ".",
           f"Machine: {mc.get('cpu')}, {mc.get('cores')} cores (shared with the server), {mc.get('mem')}, "
           f"Linux {mc.get('kernel')}; Maildirs on {meta.get('state_fs')}."
           + (f" Load average before the timed runs: {min(loads):.1f}-{max(loads):.1f}." if loads else ""),
           "",
           "Wall: median (min-max) s. CPU: user+sys of the client, median s. RSS: peak, median MiB. "
           "Server: Cyrus CPU s, median (10 ms ticks). Ratios: medians of this run against mbsync.",
           ""]
    for scen in sorted(runs):
        per = runs[scen]
        cr = cross.get(scen)
        title = SCEN_NAMES.get(scen, scen)
        if cr:
            title += ": accounts of all tools equal after every round" if all(cr) else \
                f": accounts differ after {cr.count(False)}/{len(cr)} rounds"
        out += [f"### {title}", "",
                "| tool | wall | min-max | cpu | RSS | server cpu | wall / mbsync | cpu / mbsync | runs | verify |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        mb = per.get("mbsync")
        mw = med([r["wall_s"] for r in mb]) if mb else None
        mcpu = med([r["cpu_s"] for r in mb]) if mb else None
        cols = {}
        for t in tools:
            rs = per.get(t)
            if not rs:
                continue
            w = [r["wall_s"] for r in rs]
            vbad = sum(1 for r in rs if not r["verify_ok"])
            bad = sum(1 for r in rs if r["rc"])
            ok = ("OK" if not vbad else f"FAIL {vbad}/{len(rs)}") + (f", rc!=0 {bad}/{len(rs)}" if bad else "")
            cols[t] = med(w)
            c = med([r["cpu_s"] for r in rs])
            out.append(f"| {t} | {fmt(med(w))} | {fmt(min(w))}-{fmt(max(w))} | {fmt(c)} | "
                       f"{med([r['maxrss_mib'] for r in rs]):.1f} | {fmt(med([r.get('srv_cpu_s') for r in rs]))} | "
                       f"{ratio(med(w), mw) if t != 'mbsync' else ''} | {ratio(c, mcpu) if t != 'mbsync' else ''} | "
                       f"{len(rs)} | {ok} |")
        if cols.get("quixysync") and cols.get("quixysync2"):
            out += ["", f"quixysync / quixysync2 wall: {ratio(cols['quixysync'], cols['quixysync2'])}"]
        out.append("")
    for t, o in end.get("tool_output", {}).items():
        out.append(f"{t} printed {o['lines']} lines with -q: "
                   + "; ".join(f"{c}x `{ln}`" for ln, c in o.get("distinct", [])) + ".")
    if end:
        out.append(f"Whole run (load, scenarios, checks): {end.get('elapsed_s')} s.")
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--summarize":
        sys.stdout.write(summarize(sys.argv[2]))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--admin", required=True)
    p.add_argument("--admin-pass", required=True)
    p.add_argument("--password", default="bench-pw", help="every tool user's password")
    p.add_argument("--master-pid", type=int, required=True)
    p.add_argument("--server-dir", default="?")
    p.add_argument("--state", required=True)
    p.add_argument("--state-fs", default="?")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--folders", type=int, default=10)
    p.add_argument("--profile", choices=["small", "normal"], default="small")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--scenarios", default="a,b,c")
    p.add_argument("--tools", required=True, help="comma list of mbsync, quixysync, quixysync2")
    p.add_argument("--qs-bin", default="")
    p.add_argument("--qs-bin2", default="")
    p.add_argument("--mb-compress", choices=["yes", "no"], default="yes",
                   help="no: DisableExtension COMPRESS=DEFLATE in mbsync's config (Cyrus offers COMPRESS=DEFLATE)")
    p.add_argument("--exec-bin", required=True)
    p.add_argument("--settle", type=float, default=1.1)
    p.add_argument("--timeout", type=int, default=1800)
    p.add_argument("--results", required=True)
    p.add_argument("--tag", required=True)
    a = p.parse_args()
    a.tools = a.tools.split(",")
    return Bench(a).run()


if __name__ == "__main__":
    sys.exit(main())
