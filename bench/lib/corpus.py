"""Deterministic corpus: build, install (server / local), and mutate.

build()          writes the corpus once (cached under the state dir): one directory per
                 folder (on-disk name in modified UTF-7) with cur/ files named like
                 Dovecot's, and manifest.json.
install_server() copies it into a Dovecot maildir (LAYOUT=fs, INBOX = root) and writes
                 each folder's dovecot-uidlist, so UIDs are 1..n in date order and
                 UIDVALIDITY is fixed: every install is identical.
install_local()  copies it into a client-side tree (INBOX at ROOT/INBOX, "a/b" at ROOT/a/b).
mutate_server()  over IMAP: K new messages, K flag changes, K deletions.
mutate_local()   on files: K new files in new/, K flag renames, K deletions.

The mutations pick messages by (folder, Message-ID) with an RNG seeded by (seed, round),
so two accounts (or two local trees) that hold the same messages get the same changes,
whatever their UIDs or file names are. That is what lets two tools be compared on
separate but identical accounts.
"""
import imaplib
import json
import os
import random
import re
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailgen  # noqa: E402


def build(out, n, folders, seed, profile):
    if os.path.exists(os.path.join(out, "manifest.json")):
        return
    tmp = out + ".part"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    flist = mailgen.folder_list(folders)
    counts = mailgen.distribute(n, flist)
    man = {"n": n, "folders_n": folders, "seed": seed, "profile": profile, "folders": []}
    large = mailgen.large_set(seed, counts, profile)
    total = 0
    t0 = time.time()
    for fi, ((name, _w), cnt) in enumerate(zip(flist, counts)):
        rel = "INBOX" if name == "INBOX" else mailgen.mutf7_encode(name)
        d = os.path.join(tmp, rel, "cur")
        os.makedirs(d)
        files = []
        for i in range(cnt):
            _msgid, t, data = mailgen.make_message(seed, fi, i, profile=profile,
                                                   force_size=large.get((fi, i)))
            flags = mailgen.flags_for(seed, name, fi, i, cnt)
            fn = mailgen.maildir_name(t, i, fi, data, flags)
            p = os.path.join(d, fn)
            with open(p, "wb") as f:
                f.write(data)
            os.utime(p, (t, t))
            files.append(fn)
            total += len(data)
        man["folders"].append({"name": name, "rel": rel, "count": cnt, "files": files,
                               "uidvalidity": mailgen.folder_uidvalidity(seed, name),
                               "guid": mailgen.folder_guid(seed, name)})
    man["bytes"] = total
    with open(os.path.join(tmp, "manifest.json"), "w") as f:
        json.dump(man, f)
    os.rename(tmp, out)
    print(f"corpus: {n} messages in {len(flist)} folders, {total / 1e6:.1f} MB, "
          f"built in {time.time() - t0:.1f}s -> {out}", file=sys.stderr)


def manifest(src):
    with open(os.path.join(src, "manifest.json")) as f:
        return json.load(f)


def _chown_tree(path, uid, gid):
    os.chown(path, uid, gid)
    for dp, dns, fns in os.walk(path):
        for n in dns + fns:
            os.lchown(os.path.join(dp, n), uid, gid)


def install_server(src, dest, uid, gid):
    man = manifest(src)
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest)
    for fo in man["folders"]:
        d = dest if fo["name"] == "INBOX" else os.path.join(dest, fo["rel"])
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        srcd = os.path.join(src, fo["rel"], "cur")
        lines = [f"3 V{fo['uidvalidity']} N{fo['count'] + 1} G{fo['guid']}\n"]
        for uid_, fn in enumerate(fo["files"], 1):
            shutil.copy2(os.path.join(srcd, fn), os.path.join(d, "cur", fn))
            lines.append(f"{uid_} :{fn}\n")
        with open(os.path.join(d, "dovecot-uidlist"), "w") as f:
            f.writelines(lines)
    with open(os.path.join(dest, "subscriptions"), "w") as f:
        f.write("V\t2\n\n" + "".join(fo["name"] + "\n" for fo in man["folders"]))
    _chown_tree(dest, uid, gid)


def install_local(src, dest, names):
    """names: "mutf7" (as mbsync 1.4 writes them) or "utf8" (as quixysync does)."""
    man = manifest(src)
    os.makedirs(dest, exist_ok=True)
    for fo in man["folders"]:
        if fo["name"] == "INBOX":
            rel = "INBOX"
        else:
            rel = fo["rel"] if names == "mutf7" else fo["name"]
        d = os.path.join(dest, rel)
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        srcd = os.path.join(src, fo["rel"], "cur")
        for fn in fo["files"]:
            shutil.copy2(os.path.join(srcd, fn), os.path.join(d, "cur", fn))


# --- mutations -------------------------------------------------------------------

_MSGID_RE = re.compile(rb"^message-id:[ \t]*(.*?)\s*$", re.I | re.M)


def msgid_of_bytes(head):
    end = head.find(b"\n\n")
    if end >= 0:
        head = head[:end + 1]
    head = re.sub(rb"\r?\n[ \t]+", b" ", head)
    m = _MSGID_RE.search(head)
    return m.group(1).decode("ascii", "replace") if m else ""


def _new_message(seed, rnd, side, folder_idx, i, rng):
    size = min(mailgen.size_class(rng, "normal"), 150_000)  # rounds stay comparable
    return mailgen.make_message(seed, folder_idx, i, tag=f"{side}{rnd}", force_size=size)


def _quote(name):
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


_LIST_RE = re.compile(rb'^\((?P<flags>[^)]*)\) (?:"(?:[^"\\]|\\.)*"|NIL) (?P<name>.*)$')


def _imap_list(c):
    _typ, data = c.list('""', "*")
    names = []
    for item in data:
        if isinstance(item, tuple):  # name sent as a literal
            if b"\\noselect" not in item[0].lower():
                names.append(item[1].decode())
            continue
        m = _LIST_RE.match(item)
        if not m or b"\\noselect" in m.group("flags").lower():
            continue
        n = m.group("name")
        if n.startswith(b'"'):
            n = n[1:-1].replace(b'\\"', b'"').replace(b"\\\\", b"\\")
        names.append(n.decode())
    return sorted(names)


def mutate_server(host, port, user, password, k, rnd, seed):
    rng = random.Random(f"mut/{seed}/{rnd}/server")
    c = imaplib.IMAP4(host, port)
    c.login(user, password)
    boxes = _imap_list(c)
    pool = []  # (box, msgid, uid, flags)
    for b in boxes:
        _typ, d = c.select(_quote(b))
        if int(d[0]) == 0:
            continue
        _typ, d = c.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        for item in d:
            if not isinstance(item, tuple):
                continue
            meta = item[0]
            uid = int(re.search(rb"UID (\d+)", meta).group(1))
            fl = re.search(rb"FLAGS \(([^)]*)\)", meta).group(1).decode().split()
            pool.append((b, msgid_of_bytes(item[1]), uid, fl))
    pool.sort(key=lambda x: (x[0], x[1]))
    if len(pool) < 2 * k:
        raise SystemExit(f"mutate-server {user}: only {len(pool)} messages, need {2 * k}")
    pick = rng.sample(range(len(pool)), 2 * k)
    dele = [pool[i] for i in pick[:k]]
    flag = [pool[i] for i in pick[k:]]
    byb = {}
    for b, _m, uid, fl in flag:
        byb.setdefault(b, []).append((uid, fl))
    for b, lst in sorted(byb.items()):
        c.select(_quote(b))
        for uid, fl in lst:
            f = "\\Seen" if rng.random() < 0.5 else "\\Flagged"
            op = "-FLAGS.SILENT" if f in fl else "+FLAGS.SILENT"
            c.uid("STORE", str(uid), op, f"({f})")
    byb = {}
    for b, _m, uid, _f in dele:
        byb.setdefault(b, []).append(uid)
    for b, uids in sorted(byb.items()):
        c.select(_quote(b))
        s = ",".join(map(str, sorted(uids)))
        c.uid("STORE", s, "+FLAGS.SILENT", "(\\Deleted)")
        typ, _ = c.uid("EXPUNGE", s)
        if typ != "OK":
            c.expunge()
    wmap = dict(mailgen.FOLDERS)
    weights = [wmap.get(mailgen.mutf7_decode(b), 4) for b in boxes]
    for i in range(k):
        b = rng.choices(boxes, weights)[0]
        fi = boxes.index(b)
        _msgid, t, data = _new_message(seed, rnd, "s", fi, i, rng)
        flags = "(\\Seen)" if rng.random() < 0.2 else None
        typ, d = c.append(_quote(b), flags, imaplib.Time2Internaldate(t), data.replace(b"\n", b"\r\n"))
        if typ != "OK":
            raise SystemExit(f"mutate-server {user}: APPEND to {b} failed: {d}")
    c.logout()


def _local_maildirs(root):
    out = []
    for dp, dns, _fns in os.walk(root):
        if "cur" in dns and "new" in dns:
            out.append(dp)
    return sorted(out)


def mutate_local(root, k, rnd, seed):
    rng = random.Random(f"mut/{seed}/{rnd}/local")
    dirs = _local_maildirs(root)
    pool = []  # (folder, msgid, path)
    for d in dirs:
        rel = mailgen.mutf7_decode(os.path.relpath(d, root))  # same order for mUTF-7 and UTF-8 trees
        for sub in ("cur", "new"):
            sd = os.path.join(d, sub)
            for fn in os.listdir(sd):
                if fn.startswith("."):
                    continue
                p = os.path.join(sd, fn)
                with open(p, "rb") as f:
                    pool.append((rel, msgid_of_bytes(f.read(16384)), p))
    pool.sort(key=lambda x: (x[0], x[1], x[2]))
    if len(pool) < 2 * k:
        raise SystemExit(f"mutate-local {root}: only {len(pool)} messages, need {2 * k}")
    pick = rng.sample(range(len(pool)), 2 * k)
    for i in pick[:k]:
        os.unlink(pool[i][2])
    for i in pick[k:]:
        p = pool[i][2]
        d, fn = os.path.split(p)
        mdir = os.path.dirname(d)
        base, _, fl = fn.partition(":2,")
        fl = set(fl) ^ ({"S"} if rng.random() < 0.5 else {"F"})
        os.rename(p, os.path.join(mdir, "cur", base + ":2," + "".join(sorted(fl))))
    wmap = dict(mailgen.FOLDERS)
    names = [mailgen.mutf7_decode(os.path.relpath(d, root)) for d in dirs]
    order = sorted(range(len(dirs)), key=lambda i: names[i])
    weights = [wmap.get(names[i], 4) for i in order]
    for i in range(k):
        pos = rng.choices(range(len(order)), weights)[0]
        d = dirs[order[pos]]
        _msgid, t, data = _new_message(seed, rnd, "l", pos, i, rng)
        fn = f"{t}.M{i}R{rnd}.qsbench"
        tp = os.path.join(d, "tmp", fn)
        with open(tp, "wb") as f:
            f.write(data)
        os.rename(tp, os.path.join(d, "new", fn))


def big_message(mb, tag):
    """A deterministic message of about mb MB with LF line endings, as a mail client stores
    it: a short text part and a base64 attachment of pseudo-random bytes (it compresses
    and deduplicates like real attachments: not at all). Returns (Message-ID, bytes)."""
    import base64
    msgid = f"<big-{tag}@qsbench.test>"
    head = (f"From: Big Sender <big@example.org>\nTo: bench@qsbench.test\n"
            f"Subject: large message {tag}\nMessage-ID: {msgid}\n"
            "Date: Mon, 02 Mar 2026 10:00:00 +0000\nMIME-Version: 1.0\n"
            'Content-Type: multipart/mixed; boundary="b1"\n\n'
            "--b1\nContent-Type: text/plain; charset=utf-8\n\nThe scan is attached.\n\n"
            '--b1\nContent-Type: application/octet-stream; name="scan.bin"\n'
            "Content-Transfer-Encoding: base64\n\n").encode()
    raw = random.Random(f"big/{tag}").randbytes(mb * 1_000_000 * 3 // 4)
    return msgid, head + base64.encodebytes(raw) + b"\n--b1--\n"


def append_server(host, port, user, password, box, data):
    """APPEND one message (LF line endings, sent as CRLF) to box."""
    c = imaplib.IMAP4(host, port)
    c.login(user, password)
    typ, d = c.append(_quote(box), None, None, data.replace(b"\n", b"\r\n"))
    c.logout()
    if typ != "OK":
        raise SystemExit(f"APPEND of a large message to {user}/{box} failed: {d}")


def add_local(folder, data, name):
    """Deliver one message into the Maildir folder's new/ (tmp/, then rename)."""
    tp = os.path.join(folder, "tmp", name)
    with open(tp, "wb") as f:
        f.write(data)
    os.rename(tp, os.path.join(folder, "new", name))


def remove_local(folder, msgid):
    """Remove the files of folder (cur/ and new/) whose Message-ID is msgid."""
    for sub in ("cur", "new"):
        sd = os.path.join(folder, sub)
        for fn in os.listdir(sd):
            p = os.path.join(sd, fn)
            with open(p, "rb") as f:
                if msgid_of_bytes(f.read(16384)) == msgid:
                    os.unlink(p)
