#!/usr/bin/env python3
"""The IMAP conversation of one run, per connection, from a packet capture.

    tcpdump -i lo -w run.pcap -U -s 0 tcp port PORT &   # as root, before the run
    quixysync sync --all; kill %1
    python3 bench/lib/pcaptimeline.py run.pcap [--port PORT]

Prints one line per TCP segment that carries data: milliseconds from the first
packet, the connection (C0, C1, ... in the order they were opened), the
direction ("<" from the server, ">" to it), the payload's size and its first
line, and for the server's segments the tagged answers they end with. Gaps
show where a connection sat idle: between a mailbox's last FETCH answer and
the next mailbox's SELECT, say, while the client wrote files (a trace from
QUIXYSYNC_TRACE shows what the client did meanwhile). The capture is taken
outside the client, so it costs the client nothing.

Reads the classic pcap format (tcpdump -w) of Ethernet, Linux cooked or
loopback (BSD) captures; IPv4 only; needs nothing but Python 3.
"""

import argparse
import signal
import struct
import sys

LINK_HEADER = {1: 14, 113: 16, 0: 4, 108: 4}  # Ethernet, Linux cooked, BSD loopback, OpenBSD loopback


def packets(path):
    """Yields (seconds, src port, dst port, TCP flags, payload)."""
    with open(path, "rb") as f:
        head = f.read(24)
        if len(head) < 24:
            sys.exit(f"{path}: not a pcap file")
        magic = struct.unpack("<I", head[:4])[0]
        if magic not in (0xA1B2C3D4, 0xA1B23C4D):
            sys.exit(f"{path}: not a little-endian classic pcap file (pcapng? use tcpdump -w)")
        frac = 1e9 if magic == 0xA1B23C4D else 1e6
        link = struct.unpack("<I", head[20:24])[0]
        if link not in LINK_HEADER:
            sys.exit(f"{path}: link type {link} not understood")
        skip = LINK_HEADER[link]
        while True:
            rec = f.read(16)
            if len(rec) < 16:
                return
            sec, sub, incl, _ = struct.unpack("<IIII", rec)
            data = f.read(incl)
            ip = data[skip:]
            if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6:
                continue  # not IPv4 TCP
            tcp = ip[(ip[0] & 15) * 4:]
            if len(tcp) < 20:
                continue
            sport, dport = struct.unpack(">HH", tcp[:4])
            yield sec + sub / frac, sport, dport, tcp[13], tcp[(tcp[12] >> 4) * 4:]


def tagged(payload):
    """The tagged answers (tag OK/NO/BAD ...) a server segment ends with."""
    out = []
    for line in payload.split(b"\r\n"):
        parts = line.split(b" ", 2)
        if len(parts) >= 2 and parts[0][:1] not in (b"*", b"+", b"") and parts[1] in (b"OK", b"NO", b"BAD"):
            out.append(line[:60].decode("latin-1"))
    return out


def main():
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # | head
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pcap")
    ap.add_argument("--port", type=int, help="the server's port (default: the first SYN's destination)")
    a = ap.parse_args()
    pk = list(packets(a.pcap))
    if not pk:
        sys.exit(f"{a.pcap}: no TCP packets")
    port = a.port
    if port is None:
        port = next((dp for _, _, dp, fl, _ in pk if fl & 0x02 and not fl & 0x10), None)
        if port is None:
            sys.exit(f"{a.pcap}: no connection opened in the capture; name the server's --port")
    t0 = pk[0][0]
    conns = {}
    for t, sp, dp, fl, pl in pk:
        if port not in (sp, dp):
            continue
        client = dp if sp == port else sp
        c = conns.setdefault(client, len(conns))
        ms = (t - t0) * 1000
        if fl & 0x02 and not fl & 0x10:
            print(f"{ms:9.2f} C{c} SYN")
        if not pl:
            continue
        to_server = dp == port
        first = pl.split(b"\r\n", 1)[0][:80].decode("latin-1")
        tail = "" if to_server else " | ".join(tagged(pl)[-2:])
        print(f"{ms:9.2f} C{c} {'>' if to_server else '<'} {len(pl):6d} {first}" + (f"  [{tail}]" if tail else ""))


if __name__ == "__main__":
    main()
