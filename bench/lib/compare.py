#!/usr/bin/env python3
"""Scenario driver of bench/compare.sh (which starts the server and passes everything in).

Each tool gets its own pair of accounts on the one Dovecot, "<tool>" (holds the corpus)
and "<tool>-push" (starts empty, for scenario f), installed identically, and its own
local tree. Per scenario and rep the tools run one after the other, the order flipping
every rep, each after the same deterministic mutation of its own side. After every
timed run the tool's account is compared with its local tree (messages and flags), and
after both ran, the two accounts are compared with each other.
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import corpus  # noqa: E402
import floor  # noqa: E402
import verify  # noqa: E402

SCENARIOS = {  # id -> (label, mode)
    "a": [("a-pull-initial", "sync")],
    "b": [("b-noop", "sync")],
    "c": [("c-server-changes", "sync")],
    "d": [("d-local-changes", "sync")],
    "e": [("e-pull-only", "pull"), ("e-push-only", "push")],
    "g": [("g-large-pull", "sync"), ("g-large-push", "sync")],
    "f": [("f-push-initial", "sync")],
}
TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- server CPU (Dovecot master + children, living and reaped) -----------------

def _stat(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    rest = s[s.rindex(")") + 2:].split()
    return s[s.index("(") + 1:s.rindex(")")], [int(x) for x in rest[11:15]]  # utime stime cutime cstime


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def server_cpu(pid):
    st = _stat(pid)
    if st is None:
        return None
    total, stack = sum(st[1]), _children(pid)
    while stack:
        c = stack.pop()
        cs = _stat(c)
        if cs:
            total += sum(cs[1])
            stack.extend(_children(c))
    return total / TCK


def resident_logins(pid):
    """The login processes a high-performance-mode Dovecot (--login fast) keeps running."""
    return {c for c in _children(pid) if (_stat(c) or ("",))[0] == "imap-login"}


def wait_server_idle(pid, resident=frozenset(), timeout=3.0):
    """service_count = 1: an imap process exits with its connection; its CPU reaches the
    master's cutime/cstime only once it has been reaped. Resident login processes live on
    (their CPU is counted while they live); any other login process is waited for."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        busy = False
        for c in _children(pid):
            name = (_stat(c) or ("",))[0]
            if name in ("imap", "doveadm-server") or (name == "imap-login" and c not in resident):
                busy = True
                break
        if not busy:
            return
        time.sleep(0.02)


# --- tools ------------------------------------------------------------------------

class Tool:
    def __init__(self, name, a, push=False):
        self.name, self.a = name, a
        suffix = "-push" if push else ""
        self.user = self.password = name + suffix
        self.local = os.path.join(a.state, "local", name + suffix)
        self.work = os.path.join(a.state, "work", name + suffix)
        self.log = os.path.join(a.state, "work", f"{name}{suffix}.log")

    def port(self):
        # The tools connect through --tool-port(s) (a delay proxy with --rtt);
        # the corpus and the mutations go to Dovecot directly.
        if self.a.tls == "imaps":
            return self.a.tool_tlsport or self.a.tlsport
        return self.a.tool_port or self.a.port

    def fresh(self):
        for p in (self.local, self.work):
            shutil.rmtree(p, ignore_errors=True)
            os.makedirs(p)
        self.setup()


class Mbsync(Tool):
    def setup(self):
        tls = {"none": "SSLType None", "starttls": "SSLType STARTTLS", "imaps": "SSLType IMAPS"}[self.a.tls]
        if self.a.tls != "none" and self.a.trust == "file":
            tls += f"\nCertificateFile {self.a.cafile}"
        # isync 1.4 syntax (1.5 renamed SSLType to TLSType). Defaults otherwise: FSync yes.
        with open(os.path.join(self.work, "mbsyncrc"), "w") as f:
            f.write(f"""IMAPAccount far
Host {self.a.host}
Port {self.port()}
User {self.user}
Pass {self.password}
{tls}
AuthMechs LOGIN

IMAPStore far
Account far

MaildirStore near
Path {self.local}/
Inbox {self.local}/INBOX
SubFolders Verbatim

Channel bench
Far :far:
Near :near:
Patterns *
Create Both
Expunge Both
SyncState *
""")

    def argv(self, mode):
        extra = {"sync": [], "pull": ["--pull"], "push": ["--push"]}[mode]
        return ["mbsync", "-c", os.path.join(self.work, "mbsyncrc"), *extra, "-a"]

    local_names = "mutf7"  # mbsync 1.4 keeps the wire names on disk


class Quixysync(Tool):
    def setup(self):
        tls = {"none": 'tls = "none"', "starttls": 'tls = "starttls"', "imaps": 'tls = "implicit"'}[self.a.tls]
        if self.a.tls != "none" and self.a.trust == "file":
            tls += f'\nca_file = "{self.a.cafile}"'
        # QS_CONNECTIONS: the store's connections setting, to measure what
        # parallel mailbox pairs buy (default: quixysync's own default).
        conns = os.environ.get(self.connections_env, "")
        conns = f"connections = {int(conns)}\n" if conns else ""
        with open(os.path.join(self.work, "quixysync.toml"), "w") as f:
            f.write(f"""[imap.far]
host = "{self.a.host}"
port = {self.port()}
{tls}
user = "{self.user}"
password = "{self.password}"
{conns}
[maildir.near]
path = "{self.local}"
inbox = "{self.local}/INBOX"
layout = "verbatim"

[channel.bench]
far = "imap.far"
near = "maildir.near"
mailboxes = ["*"]
create = "both"
expunge = "both"
""")

    def argv(self, mode):
        return [self.a.qs_bin, "-q", "-c", os.path.join(self.work, "quixysync.toml"), mode, "--all",
                *self.a.qs_args.split()]

    local_names = "utf8"  # quixysync writes folder names as UTF-8
    connections_env = "QS_CONNECTIONS"


class Quixysync2(Quixysync):
    """QS_BIN2: a second quixysync build on its own account, run in the same reps as
    the first, so that an A/B of two builds meets the same changes and moments.
    QS_CONNECTIONS2 is its connections setting (an A/B of one build's settings)."""

    connections_env = "QS_CONNECTIONS2"

    def argv(self, mode):
        return [self.a.qs_bin2, *super().argv(mode)[1:]]


TOOLS = {"mbsync": Mbsync, "quixysync": Quixysync, "quixysync2": Quixysync2}


def tool_version(name, a):
    qs = a.qs_bin2 if name == "quixysync2" else a.qs_bin
    cmds = [["mbsync", "--version"]] if name == "mbsync" else [[qs, "version"], [qs, "--version"]]
    for c in cmds:
        try:
            r = subprocess.run(c, capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        out = (r.stdout or r.stderr).decode(errors="replace").strip().splitlines()
        if r.returncode == 0 and out:
            return out[0]
    return "?"


def repo_revision(qs_bin):
    """", built from <commit>[+changes]" when the binary was built from this repo's work tree."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if not os.path.abspath(qs_bin).startswith(os.path.join(repo, "bench", "out") + os.sep):
        return ""
    try:
        head = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"],
                              capture_output=True, check=True).stdout.decode().strip()
        dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""
    return f", built from {head}" + (" + uncommitted changes" if dirty else "")


# --- one timed run ----------------------------------------------------------------

def run_timed(exec_bin, argv, logpath, timeout):
    """Through benchexec (bench/cmd/benchexec): wall clock and the tool's own rusage from
    wait4. Forking the tool from this Python process would put the driver's RSS (10-30 MiB)
    under the tool's peak RSS: Linux keeps the pre-exec high-water mark in ru_maxrss."""
    with open(logpath, "ab") as logf:
        logf.write(f"\n=== {time.strftime('%F %T')} {' '.join(argv)}\n".encode())
    r = subprocess.run([exec_bin, "-log", logpath, "-timeout", f"{timeout}s", "--", *argv],
                       stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise SystemExit(f"benchexec failed for {' '.join(argv)} (exit {r.returncode})")
    x = json.loads(r.stdout)
    rec = {"wall_s": round(x["wall_s"], 4), "user_s": round(x["user_s"], 4), "sys_s": round(x["sys_s"], 4),
           "cpu_s": round(x["user_s"] + x["sys_s"], 4), "maxrss_mib": round(x["maxrss_kib"] / 1024, 1),
           "rc": x["rc"]}
    if x.get("timed_out"):
        rec["timed_out"] = True
    return rec


class Bench:
    def __init__(self, a):
        self.a = a
        self.tools = [TOOLS[t](t, a) for t in a.tools]
        self.push_tools = [TOOLS[t](t, a, push=True) for t in a.tools]
        self.versions = {t: tool_version(t, a) for t in a.tools}
        if "quixysync" in self.versions:
            self.versions["quixysync"] += repo_revision(a.qs_bin)
        self.corpus = os.path.join(a.state, "corpus", f"n{a.n}-m{a.folders}-s{a.seed}-{a.profile}")
        self.out = open(os.path.join(a.results, a.tag + ".jsonl"), "w")
        self.failed = 0

    def emit(self, rec):
        self.out.write(json.dumps(rec, ensure_ascii=False) + "\n")
        self.out.flush()

    def mailroot(self, user):
        return os.path.join(self.a.mail, user)

    def install_server(self, user):
        corpus.install_server(self.corpus, self.mailroot(user), self.a.mail_uid, self.a.mail_gid)
        self.doveadm("force-resync", "-u", user, "*")
        self.doveadm("mailbox", "status", "-u", user, "messages", "*")  # builds the indexes, untimed

    def empty_server(self, user):
        shutil.rmtree(self.mailroot(user), ignore_errors=True)

    def doveadm(self, *args):
        r = subprocess.run(["doveadm", "-c", self.a.conf, *args], capture_output=True)
        if r.returncode != 0:
            raise SystemExit(f"doveadm {' '.join(args)}: {r.stderr.decode(errors='replace').strip()}")

    def settle_disk(self):
        """Only where the state dir is ext4 without a journal (see README): after big
        deletions, file creation there is slow for minutes unless the cache is dropped."""
        if not self.a.nojournal:
            return
        os.sync()
        try:
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("1\n")
        except OSError:
            log("cannot drop caches; sleeping 65 s")
            time.sleep(65)
        for root in (self.a.mail, self.corpus):
            for dp, _dns, fns in os.walk(root):
                for fn in fns:
                    try:
                        with open(os.path.join(dp, fn), "rb") as f:
                            while f.read(1 << 20):
                                pass
                    except OSError:
                        pass

    def timed(self, tool, scen, rep, mode):
        os.sync()
        time.sleep(self.a.settle)  # mbsync sleeps 1 s if a Maildir changed within the current second
        pid = self.a.dove_pid
        wait_server_idle(pid, self.a.resident)
        dirty = self.write_dirty()
        s0 = server_cpu(pid)
        load = os.getloadavg()[0]  # other load on the machine skews everything: keep it on record
        try:
            rec = run_timed(self.a.exec_bin, tool.argv(mode), tool.log, self.a.timeout)
        finally:
            if dirty:
                os.unlink(dirty)  # its pages go unwritten
        rec["load1"] = round(load, 2)
        wait_server_idle(pid, self.a.resident)
        s1 = server_cpu(pid)
        if s0 is not None and s1 is not None:
            rec["srv_cpu_s"] = round(s1 - s0, 3)
        srv = verify.server_side(self.a.conf, tool.user)
        problems = verify.compare(srv, verify.local_side(tool.local))
        rec.update(type="run", tool=tool.name, scenario=scen, rep=rep, mode=mode,
                   verify_ok=not problems, verify=problems[:10] or f"{verify.count(srv)} messages equal")
        self.emit(rec)
        if rec["rc"] or problems:
            self.failed += 1
        msg = "verify OK" if not problems else f"verify FAIL: {problems[0]}"
        log(f"  {tool.name:9s} {scen}#{rep}: wall {rec['wall_s']:.3f}s cpu {rec['cpu_s']:.3f}s "
            f"rss {rec['maxrss_mib']}MiB srv {rec.get('srv_cpu_s')}s rc={rec['rc']} {msg}")
        if rec["rc"]:
            with open(tool.log, "rb") as f:
                tail = f.read()[-600:].decode(errors="replace").strip()
            log(f"    tail of {tool.log}:\n{tail}")
        return srv

    def write_dirty(self):
        """--dirty MB: another program's unwritten data on the tools' file system,
        as a download or a copy in progress leaves it, written just before a timed
        run and deleted after it (so its pages are never written)."""
        if not self.a.dirty:
            return None
        path = os.path.join(self.a.state, "work", "dirty.bin")
        block = os.urandom(1 << 20)
        with open(path, "wb") as f:
            for _ in range(self.a.dirty):
                f.write(block)
        return path

    def cross(self, scen, rep, snaps):
        """Both tools had the same changes: their accounts must now be the same
        (every tool's against the first's, with QS_BIN2's third tool)."""
        if len(snaps) < 2:
            return
        (n1, s1), *rest = list(snaps.items())
        problems = [p for n2, s2 in rest for p in verify.compare(s1, s2, n1, n2)]
        self.emit({"type": "cross", "scenario": scen, "rep": rep, "ok": not problems, "problems": problems[:10]})
        if problems:
            log(f"  accounts of {', '.join(snaps)} differ after {scen}#{rep}: {problems[0]}")

    def large(self, a):
        """g: one message of --big MB arrives on the server (pulled) or in the local INBOX
        (pushed). Peak RSS against the no-op's shows what holding it costs: streamed, little;
        read whole, its size or more. Each rep's message is removed again, untimed."""
        for label, _mode in SCENARIOS["g"]:
            log(f"[g] {label} ({a.big} MB)")
            for rep in range(1, a.reps + 1):
                msgid, data = corpus.big_message(a.big, f"{label}-{rep}")
                for t in self.tools:
                    if label == "g-large-pull":
                        corpus.append_server(a.host, a.port, t.user, t.password, "INBOX", data)
                    else:
                        corpus.add_local(os.path.join(t.local, "INBOX"), data, f"{int(time.time())}.big{rep}.qsbench")
                snaps = {}
                for t in self.order(self.tools, rep):
                    snaps[t.name] = self.timed(t, label, rep, "sync")
                self.cross(label, rep, snaps)
                for t in self.tools:
                    self.doveadm("expunge", "-u", t.user, "mailbox", "INBOX", "header", "Message-ID", msgid)
                    corpus.remove_local(os.path.join(t.local, "INBOX"), msgid)
                    rec = run_timed(a.exec_bin, t.argv("sync"), t.log, a.timeout)
                    if rec["rc"]:
                        log(f"  {t.name} sync after removing the large message exited {rec['rc']} (see {t.log})")
                del data

    def floor(self, scen, rep):
        """The server's part of scen (bench/lib/floor.py) and a Go program that does
        nothing, timed after the tools' runs of this rep: what no Go client can beat
        here. Server changes need changes of their own, so that the probe neither pays
        for a tool nor spares it the first SELECT after them: one more round of changes
        on one account, the probe, then an untimed sync of that account's tool."""
        a = self.a
        if not self.tools:
            return
        t = next((x for x in self.tools if x.name == "quixysync"), self.tools[0])
        host, port = a.host, t.port()
        tls = floor.TLS(a.tls, a.cafile, a.host)
        names = floor.mailboxes(a.host, a.port, t.user, t.password)
        rec = {"type": "floor", "scenario": scen, "rep": rep, "account": t.user}
        if scen == "b-noop":
            wait_server_idle(a.dove_pid, a.resident)
            rec["server_s"] = round(floor.noop(host, port, t.user, t.password, names, tls), 4)
        else:
            # Every account gets the same changes, so that the accounts still compare
            # equal after the next rep; each tool then syncs them away, untimed.
            before = floor.status_all(a.host, a.port, t.user, t.password, names)
            for x in self.tools:
                corpus.mutate_server(a.host, a.port, x.user, x.password, a.k, 1000 + rep, a.seed)
            os.sync()
            time.sleep(a.settle)
            wait_server_idle(a.dove_pid, a.resident)
            secs, rec["bytes"] = floor.changes(host, port, t.user, t.password, before, tls)
            rec["server_s"] = round(secs, 4)
            for x in self.tools:
                sync = run_timed(a.exec_bin, x.argv("sync"), x.log, a.timeout)
                if sync["rc"]:
                    self.failed += 1
                    log(f"  {x.name} sync after the floor's changes exited {sync['rc']} (see {x.log})")
        proc = run_timed(a.exec_bin, [a.exec_bin, "-nothing"], os.devnull, 60)
        rec["proc_s"], rec["proc_cpu_s"] = proc["wall_s"], proc["cpu_s"]
        self.emit(rec)
        log(f"  floor     {scen}#{rep}: server {rec['server_s']:.3f}s + Go process {rec['proc_s']:.3f}s")

    def order(self, tools, rep):
        return tools if rep % 2 else tools[::-1]

    def run(self):
        a = self.a
        scen = a.scenarios
        self.emit({"type": "meta", "tag": a.tag, "time": time.strftime("%FT%T%z"), "n": a.n, "folders": a.folders,
                   "profile": a.profile, "seed": a.seed, "k": a.k, "reps": a.reps, "tls": a.tls, "trust": a.trust, "login": a.login,
                   "rtt_ms": a.rtt, "dirty_mb": a.dirty,
                   "scenarios": scen, "versions": self.versions, "machine": machine(a)})
        if not os.path.exists(os.path.join(self.corpus, "manifest.json")):
            log(f"building corpus n={a.n} folders={a.folders} profile={a.profile}")
            corpus.build(self.corpus, a.n, a.folders, a.seed, a.profile)
        man = corpus.manifest(self.corpus)
        log(f"corpus: {man['n']} messages, {man['bytes'] / 1e6:.1f} MB, {len(man['folders'])} folders")

        if any(s in scen for s in "abcdeg"):
            for t in self.tools:
                log(f"installing the corpus into account {t.user}")
                self.install_server(t.user)
            self.settle_disk()
        if "a" in scen:
            log("[a] initial pull into an empty Maildir")
            for rep in range(1, a.reps + 1):
                snaps = {}
                for t in self.order(self.tools, rep):
                    t.fresh()
                    self.settle_disk()
                    snaps[t.name] = self.timed(t, "a-pull-initial", rep, "sync")
                self.cross("a-pull-initial", rep, snaps)
        elif any(s in scen for s in "bcdeg"):
            for t in self.tools:
                log(f"untimed initial pull for {t.name}")
                t.fresh()
                rec = run_timed(a.exec_bin, t.argv("sync"), t.log, a.timeout)
                if rec["rc"]:
                    log(f"  {t.name} initial pull exited {rec['rc']} (see {t.log})")
        k = a.k
        for s, base in (("b", 0), ("c", 0), ("d", 100), ("e", 200)):
            if s not in scen:
                continue
            for label, mode in SCENARIOS[s]:
                log(f"[{s}] {label}" + ("" if s == "b" else f" (k={k})"))
                for rep in range(1, a.reps + 1):
                    rnd = base + rep + (100 if label == "e-push-only" else 0)
                    ready = []
                    for t in self.tools:
                        try:
                            if label in ("c-server-changes", "e-pull-only"):
                                corpus.mutate_server(a.host, a.port, t.user, t.password, k, rnd, a.seed)
                            elif label in ("d-local-changes", "e-push-only"):
                                corpus.mutate_local(t.local, k, rnd, a.seed)
                            ready.append(t)
                        except (Exception, SystemExit) as e:  # a tool that broke its side: skip it, go on
                            self.failed += 1
                            self.emit({"type": "skip", "tool": t.name, "scenario": label, "rep": rep, "why": str(e)})
                            log(f"  {t.name:9s} {label}#{rep}: skipped, the changes could not be made: {e}")
                    snaps = {}
                    for t in self.order(ready, rep):
                        snaps[t.name] = self.timed(t, label, rep, mode)
                    self.cross(label, rep, snaps)
                    if label in ("b-noop", "c-server-changes") and a.floors:
                        self.floor(label, rep)
        if "g" in scen:
            self.large(a)
        if "f" in scen:
            for t in self.tools:
                shutil.rmtree(t.local, ignore_errors=True)
                self.empty_server(t.user)
            log("[f] initial push of a full Maildir into an empty account")
            for rep in range(1, a.reps + 1):
                snaps = {}
                for t in self.order(self.push_tools, rep):
                    self.empty_server(t.user)
                    t.fresh()
                    corpus.install_local(self.corpus, t.local, t.local_names)
                    self.settle_disk()
                    snaps[t.name] = self.timed(t, "f-push-initial", rep, "sync")
                self.cross("f-push-initial", rep, snaps)
            for t in self.push_tools:
                shutil.rmtree(t.local, ignore_errors=True)
                self.empty_server(t.user)
        self.out.close()


def machine(a):
    def first(path, key):
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith(key):
                        return line[len(key):].lstrip(" \t:=").strip()
        except OSError:
            pass
        return "?"
    mem = first("/proc/meminfo", "MemTotal")
    try:
        mem = f"{int(mem.split()[0]) / 1048576:.0f} GiB"
    except ValueError:
        pass
    dv = subprocess.run(["dovecot", "--version"], capture_output=True).stdout.decode().strip()
    return {"cpu": first("/proc/cpuinfo", "model name"), "cores": os.cpu_count(), "mem": mem,
            "kernel": platform.release(), "os": first("/etc/os-release", "PRETTY_NAME").strip('"'),
            "dovecot": dv, "state_fs": a.state_fs}


# --- summary ----------------------------------------------------------------------

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, nd=3):
    if x is None:
        return "-"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.{nd}f}" if abs(x) < 1 else f"{x:.2f}"


def ratio(q, m):
    return f"{q / m:.2f}" if q is not None and m else "-"


def summarize(path):
    meta, runs, cross, skips, floors = {}, {}, {}, {}, {}
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if r["type"] == "meta":
                meta = r
            elif r["type"] == "run":
                runs.setdefault((r["scenario"], r["tool"]), []).append(r)
            elif r["type"] == "skip":
                skips[(r["scenario"], r["tool"])] = skips.get((r["scenario"], r["tool"]), 0) + 1
            elif r["type"] == "cross":
                cross.setdefault(r["scenario"], []).append(r["ok"])
            elif r["type"] == "floor":
                floors.setdefault(r["scenario"], []).append(r)
    mc = meta.get("machine", {})
    loads = [r.get("load1") for rs in runs.values() for r in rs if r.get("load1") is not None]
    out = [f"Corpus n={meta.get('n')} folders={meta.get('folders')} profile={meta.get('profile')}, "
           f"k={meta.get('k')}, tls={meta.get('tls')}, reps={meta.get('reps')}, "
           + ("the tools trust the server through SSL_CERT_FILE (the system's CA bundle and its certificate), "
              if meta.get("trust") == "system" and meta.get("tls") != "none" else "")
           + (f"round trip to the server {meta['rtt_ms']} ms (delay proxy), " if meta.get("rtt_ms") else "")
           + (f"{meta['dirty_mb']} MB of another program's unwritten data on the tools' file system, " if meta.get("dirty_mb") else "")
           + f"Dovecot login processes: {meta.get('login', 'secure')}; {meta.get('time')}.",
           f"Tools: " + ", ".join(f"{t} ({v})" for t, v in meta.get("versions", {}).items())
           + f"; Dovecot {mc.get('dovecot')}.",
           f"Machine: {mc.get('cpu')}, {mc.get('cores')} cores (shared with the server), {mc.get('mem')}, "
           f"{mc.get('os')}, Linux {mc.get('kernel')}; state on {mc.get('state_fs')}."
           + (f" Load average before the timed runs: {min(loads):.1f}-{max(loads):.1f}." if loads else ""),
           "",
           "Wall: median (min-max) seconds. CPU: user+sys of the client. RSS: peak, MiB. "
           "Ratios: quixysync / mbsync, medians of this run. Server: Dovecot CPU s (mbsync / quixysync).",
           "",
           "| scenario | mbsync wall | quixysync wall | wall ratio | mbsync cpu | quixysync cpu | cpu ratio "
           "| mbsync RSS | quixysync RSS | server cpu | verify |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    order = [lab for s in "abcdefg" for lab, _ in SCENARIOS[s]]
    for scen in order:
        cols = {}
        for tool in ("mbsync", "quixysync"):
            rs = runs.get((scen, tool), [])
            if not rs:
                cols[tool] = None
                continue
            w = [r["wall_s"] for r in rs]
            bad = sum(1 for r in rs if r["rc"])
            vbad = sum(1 for r in rs if not r["verify_ok"])
            cols[tool] = {"wall": med(w), "min": min(w), "max": max(w), "cpu": med([r["cpu_s"] for r in rs]),
                          "rss": med([r["maxrss_mib"] for r in rs]), "srv": med([r.get("srv_cpu_s") for r in rs]),
                          "ok": ("OK" if not vbad else f"FAIL {vbad}/{len(rs)}") + (f", rc!=0 {bad}/{len(rs)}" if bad else ""),
                          "n": len(rs)}
        if not any(cols.values()):
            continue
        m, q = cols["mbsync"], cols["quixysync"]

        def g(c, k):
            if not c or c[k] is None:
                return "-"
            return f"{c[k]:.1f}" if k == "rss" else fmt(c[k])

        def wall(c):
            return f"{fmt(c['wall'])} ({fmt(c['min'])}-{fmt(c['max'])})" if c else "-"
        ver = " / ".join(f"{t[0]}: {c['ok']}" for t, c in (("mbsync", m), ("quixysync", q)) if c)
        for t in ("mbsync", "quixysync"):
            if skips.get((scen, t)):
                ver += f", {t[0]}: {skips[(scen, t)]} skipped"
        cr = cross.get(scen)
        if cr:
            ver += ", same accounts" if all(cr) else f", accounts differ {cr.count(False)}/{len(cr)}"
        out.append(f"| {scen} | {wall(m)} | {wall(q)} | {ratio(q and q['wall'], m and m['wall'])} | "
                   f"{g(m, 'cpu')} | {g(q, 'cpu')} | {ratio(q and q['cpu'], m and m['cpu'])} | "
                   f"{g(m, 'rss')} | {g(q, 'rss')} | {g(m, 'srv')} / {g(q, 'srv')} | {ver} |")
    if any(t == "quixysync2" for _, t in runs):
        # QS_BIN2: the two builds side by side, medians (min-max) of the same reps.
        out += ["", "Two quixysync builds (quixysync = QS_BIN, quixysync2 = QS_BIN2), median (min-max) s:", "",
                "| scenario | quixysync wall | quixysync2 wall | quixysync cpu | quixysync2 cpu | verify |",
                "|---|---|---|---|---|---|"]
        for scen in order:
            rs1, rs2 = runs.get((scen, "quixysync"), []), runs.get((scen, "quixysync2"), [])
            if not rs1 or not rs2:
                continue

            def mm(rs, k):
                v = [r[k] for r in rs]
                return f"{fmt(med(v))} ({fmt(min(v))}-{fmt(max(v))})"
            ok = all(r["verify_ok"] and not r["rc"] for r in rs1 + rs2)
            out.append(f"| {scen} | {mm(rs1, 'wall_s')} | {mm(rs2, 'wall_s')} | {mm(rs1, 'cpu_s')} | "
                       f"{mm(rs2, 'cpu_s')} | {'OK' if ok else 'FAIL'} |")
    if floors:
        out += ["", "Floors: the server's part of the scenario, asked over one connection with every command "
                "pipelined (`bench/lib/floor.py`), plus a Go program that does nothing (`benchexec -nothing`): "
                "no Go client can take less here, unless more connections share out the server's work (they "
                "cannot share a login, or one mailbox's SELECT). Medians, seconds.", "",
                "| scenario | server's part | Go process | floor | mbsync wall | floor / mbsync | quixysync wall "
                "| quixysync above the floor |",
                "|---|---|---|---|---|---|---|---|"]
        for scen, fs in floors.items():
            srv, proc = med([f["server_s"] for f in fs]), med([f["proc_s"] for f in fs])
            fl = srv + proc
            m = med([r["wall_s"] for r in runs.get((scen, "mbsync"), [])])
            q = med([r["wall_s"] for r in runs.get((scen, "quixysync"), [])])
            out.append(f"| {scen} | {fmt(srv)} | {fmt(proc)} | {fmt(fl)} | {fmt(m)} | {ratio(fl, m)} | {fmt(q)} | "
                       + (f"{fmt(q - fl)} |" if q is not None else "- |"))
    return "\n".join(out) + "\n"


SYSTEM_BUNDLES = ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt",
                  "/etc/ssl/ca-bundle.pem", "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", "/etc/ssl/cert.pem"]


def trust_bundle(a):
    """The system's CA bundle with the server's certificate at its end, as a trust store
    in which the server's CA is one public CA among the others."""
    path = os.path.join(a.state, "work", "trust-bundle.pem")
    data = b""
    for f in SYSTEM_BUNDLES:
        if os.path.exists(f):
            with open(f, "rb") as fh:
                data = fh.read()
            break
    else:
        log("no system CA bundle found: --trust system uses the server's certificate alone")
    with open(a.cafile, "rb") as fh:
        cert = fh.read()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data.rstrip(b"\n") + b"\n" + cert)
    return path


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--summarize":  # re-make the table of a results file
        sys.stdout.write(summarize(sys.argv[2]))
        return
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--state", required=True)
    p.add_argument("--conf", required=True)
    p.add_argument("--mail", required=True)
    p.add_argument("--dove-pid", type=int, required=True)
    p.add_argument("--mail-uid", type=int, required=True)
    p.add_argument("--mail-gid", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tlsport", type=int, required=True)
    p.add_argument("--tool-port", type=int, default=0, help="port the tools use (default --port)")
    p.add_argument("--tool-tlsport", type=int, default=0, help="IMAPS port the tools use (default --tlsport)")
    p.add_argument("--rtt", type=int, default=0, help="round trip added by the delay proxy, ms (for the record)")
    p.add_argument("--cafile", required=True)
    p.add_argument("--tls", choices=["none", "starttls", "imaps"], default="none")
    p.add_argument("--trust", choices=["file", "system"], default="file",
                   help="file: the configs name the server's certificate; system: SSL_CERT_FILE does")
    p.add_argument("--login", choices=["fast", "secure"], default="fast")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--folders", type=int, default=10)
    p.add_argument("--profile", choices=["normal", "small"], default="normal")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--big", type=int, default=100, help="size of scenario g's message, MB")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--scenarios", default="abcdef")
    p.add_argument("--tools", default="mbsync,quixysync")
    p.add_argument("--exec-bin", required=True, help="bench/cmd/benchexec binary")
    p.add_argument("--qs-bin", default="quixysync")
    p.add_argument("--qs-bin2", default="", help="a second quixysync build (tool quixysync2)")
    p.add_argument("--qs-args", default="", help="extra arguments for quixysync's sync/pull/push")
    p.add_argument("--tag", required=True)
    p.add_argument("--results", required=True)
    p.add_argument("--settle", type=float, default=1.1)
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--nojournal", type=int, default=0)
    p.add_argument("--dirty", type=int, default=0, help="MB of another program's unwritten data during each timed run")
    p.add_argument("--floors", type=int, default=1, help="probe the server's part of b and c (bench/lib/floor.py)")
    p.add_argument("--state-fs", default="?")
    a = p.parse_args()
    a.resident = resident_logins(a.dove_pid) if a.login == "fast" else frozenset()
    a.tools = [t for t in a.tools.split(",") if t]
    a.scenarios = a.scenarios.replace(",", "")
    if a.trust == "system":
        # The tools inherit this environment: both read SSL_CERT_FILE (OpenSSL's
        # default paths, Go's crypto/x509) as the system's trust store.
        # SSL_CERT_DIR is dropped so that runs compare across machines.
        os.environ["SSL_CERT_FILE"] = trust_bundle(a)
        os.environ.pop("SSL_CERT_DIR", None)
    os.makedirs(a.results, exist_ok=True)
    path = os.path.join(a.results, a.tag + ".jsonl")
    b = Bench(a)
    b.run()
    table = summarize(path)
    with open(os.path.join(a.results, a.tag + ".md"), "w") as f:
        f.write(table)
    sys.stdout.write(table)
    if b.failed:
        log(f"{b.failed} timed runs failed (exit status or verification); see {path}")
        sys.exit(1)


if __name__ == "__main__":
    main()
