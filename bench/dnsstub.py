#!/usr/bin/python3
"""A DNS server for benchmarks, on loopback only: it answers for a handful of names
(the load generator's sender domain and localhost) and says NXDOMAIN to everything
else, over UDP and TCP. Like a real recursive resolver, it puts an SOA record in the
authority section of negative answers (RFC 2308), so they may be cached for 300 s.

Usage: dnsstub.py IP PORT SENDER_DOMAIN
"""
import socket
import socketserver
import struct
import sys
import threading

ip, port, sender = sys.argv[1], int(sys.argv[2]), sys.argv[3].lower().rstrip(".") + "."
if not ip.startswith("127."):
    sys.exit("dnsstub: loopback addresses only")

A, SOA, PTR, TXT = 1, 6, 12, 16


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def txt(s):
    return bytes([len(s)]) + s.encode()


ZONE = {
    (sender, A): [socket.inet_aton("127.0.0.1")],
    (sender, TXT): [txt("v=spf1 ip4:127.0.0.0/8 -all")],
    ("localhost.", A): [socket.inet_aton("127.0.0.1")],
    ("1.0.0.127.in-addr.arpa.", PTR): [encode_name("localhost.")],
}
NAMES = {name for name, _ in ZONE}
# SOA of the root zone for negative answers: MNAME, RNAME, serial, refresh, retry,
# expire, minimum (the negative TTL)
SOA_RR = b"\0" + struct.pack(">HHI", SOA, 1, 300)
SOA_RDATA = encode_name("ns.stub.") + encode_name("admin.stub.") + struct.pack(">IIIII", 1, 3600, 600, 86400, 300)
SOA_RR += struct.pack(">H", len(SOA_RDATA)) + SOA_RDATA


def answer(query):
    if len(query) < 12:
        return None
    qid, flags = struct.unpack(">HH", query[:4])
    labels, off = [], 12
    while off < len(query) and query[off] != 0:
        n = query[off]
        labels.append(query[off + 1:off + 1 + n].decode("ascii", "replace").lower())
        off += 1 + n
    off += 1
    if off + 4 > len(query):
        return None
    qtype, _ = struct.unpack(">HH", query[off:off + 4])
    question = query[12:off + 4]
    name = ".".join(labels) + "."
    rdatas = ZONE.get((name, qtype), [])
    rcode = 0 if name in NAMES else 3
    flags = 0x8400 | (flags & 0x0100) | rcode  # response, authoritative, copy RD
    nscount = 0 if rdatas else 1
    out = struct.pack(">HHHHHH", qid, flags, 1, len(rdatas), nscount, 0) + question
    for rd in rdatas:
        out += b"\xc0\x0c" + struct.pack(">HHIH", qtype, 1, 300, len(rd)) + rd
    if nscount:
        out += SOA_RR
    return out


class TCPHandler(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.settimeout(10)
        while True:
            hdr = self.request.recv(2)
            if len(hdr) < 2:
                return
            (n,) = struct.unpack(">H", hdr)
            q = b""
            while len(q) < n:
                chunk = self.request.recv(n - len(q))
                if not chunk:
                    return
                q += chunk
            a = answer(q)
            if a is None:
                return
            self.request.sendall(struct.pack(">H", len(a)) + a)


class TCPServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


tcp = TCPServer((ip, port), TCPHandler)
threading.Thread(target=tcp.serve_forever, daemon=True).start()
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind((ip, port))
while True:
    q, peer = udp.recvfrom(4096)
    a = answer(q)
    if a is not None:
        udp.sendto(a, peer)
