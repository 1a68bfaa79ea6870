#!/usr/bin/env python3
"""Write a realistic Asterisk 'messages' log for benchmarks: LINES lines (default 1,000,000)
of ordinary call-processing chatter, with ATTACK_PERCENT (default 5) percent failure lines from
a few hundred scanning addresses, in the formats of chan_sip (patched and stock), PJSIP, IAX2,
AMI and the security log. Deterministic (fixed seed). Usage: gen-asterisk-log.py OUT [LINES]
[ATTACK_PERCENT]"""
import random
import sys
import time

out = sys.argv[1]
lines = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
attack_pct = float(sys.argv[3]) if len(sys.argv) > 3 else 5.0
rnd = random.Random(6)

attackers = [f"203.0.{113 + i // 250}.{i % 250 + 1}" for i in range(400)] + [
    f"2001:db8:66::{i:x}" for i in range(1, 50)
]
exts = ["100", "101", "200", "admin", "1000", "9999", "sipvicious", "test"]

def addr_port(a):
    return f"[{a}]:5060" if ":" in a else f"{a}:5060"

def attack(a, ext):
    k = rnd.randrange(9)
    if k == 0:
        return f"NOTICE[{rnd.randrange(1000, 30000)}] chan_sip.c: Registration from '\"{ext}\"<sip:{ext}@192.0.2.1>' failed for '{addr_port(a)}' - Wrong password"
    if k == 1:
        return f"NOTICE[{rnd.randrange(1000, 30000)}] chan_sip.c: Failed to authenticate device \"{ext}\"<sip:{ext}@192.0.2.1>;tag={rnd.randrange(1 << 30):08x} ({addr_port(a)}) for REGISTER, code = -1 [astpatch:c0ffee00c0ffee00]"
    if k == 2:
        return f"NOTICE[{rnd.randrange(1000, 30000)}] chan_sip.c: Failed to authenticate device <sip:{ext}@192.0.2.1>;tag={rnd.randrange(1 << 30):08x}"
    if k == 3:
        return f"NOTICE[{rnd.randrange(1000, 30000)}][C-{rnd.randrange(1 << 16):08x}] chan_sip.c: Call from '{ext}' ({addr_port(a)}) to extension '00972{rnd.randrange(10**9)}' rejected because extension not found in context 'public'."
    if k == 4:
        return f"NOTICE[{rnd.randrange(1000, 30000)}] res_pjsip/pjsip_distributor.c: Request 'REGISTER' from '<sip:{ext}@192.0.2.1>' failed for '{addr_port(a)}' (callid: {rnd.randrange(1 << 60):x}) - No matching endpoint found"
    if k == 5:
        return f"NOTICE[{rnd.randrange(1000, 30000)}] res_pjsip/pjsip_distributor.c: Request 'INVITE' from '<sip:{ext}@192.0.2.1>' failed for '{addr_port(a)}' (callid: {rnd.randrange(1 << 60):x}) - Failed to authenticate"
    if k == 6:
        sa = f"IPV6/UDP/[{a}]/5060" if ":" in a else f"IPV4/UDP/{a}/5060"
        return (f"SECURITY[{rnd.randrange(1000, 30000)}] res_security_log.c: SecurityEvent=\"InvalidAccountID\",EventTV=\"2026-11-24T10:11:12.345+0000\","
                f"Severity=\"Error\",Service=\"SIP\",EventVersion=\"1\",AccountID=\"{ext}\",SessionID=\"0x7f{rnd.randrange(1 << 32):x}\","
                f"LocalAddress=\"IPV4/UDP/192.0.2.1/5060\",RemoteAddress=\"{sa}\"")
    if k == 7:
        return f"NOTICE[{rnd.randrange(1000, 30000)}] chan_iax2.c: Host {a} failed MD5 authentication for '{ext}' ({rnd.randrange(1 << 64):x} != {rnd.randrange(1 << 64):x})"
    return f"NOTICE[{rnd.randrange(1000, 30000)}] manager.c: {a} failed to authenticate as '{ext}'"

def chatter(n):
    k = rnd.randrange(10)
    c = f"[C-{rnd.randrange(1 << 16):08x}]"
    tid = rnd.randrange(1000, 30000)
    if k < 4:
        return f"VERBOSE[{tid}]{c} pbx.c:     -- Executing [{rnd.randrange(100, 999)}@from-internal:{rnd.randrange(1, 9)}] Dial(\"SIP/{rnd.randrange(100, 999)}-{n:08x}\", \"SIP/trunk/0{rnd.randrange(10**9)},60,tT\") in new stack"
    if k == 4:
        return f"VERBOSE[{tid}]{c} app_dial.c:     -- SIP/trunk-{n:08x} is ringing"
    if k == 5:
        return f"VERBOSE[{tid}]{c} app_dial.c:     -- SIP/trunk-{n:08x} answered SIP/{rnd.randrange(100, 999)}-{n:08x}"
    if k == 6:
        return f"NOTICE[{tid}] chan_sip.c: Peer '{rnd.randrange(100, 999)}' is now Reachable. ({rnd.randrange(1, 90)}ms / 2000ms)"
    if k == 7:
        return f"VERBOSE[{tid}] chan_sip.c: Registered SIP '{rnd.randrange(100, 999)}' at 192.0.2.{rnd.randrange(2, 250)}:5060"
    if k == 8:
        return f"WARNING[{tid}]{c} chan_sip.c: Retransmission timeout reached on transmission {rnd.randrange(1 << 40):x}@192.0.2.1:5060 for seqno 102 (Critical Request) -- See https://wiki.asterisk.org/wiki/display/AST/SIP+Retransmissions"
    return f"VERBOSE[{tid}]{c} bridge_channel.c:   == Spawn extension (from-internal, {rnd.randrange(100, 999)}, 1) exited non-zero on 'SIP/{rnd.randrange(100, 999)}-{n:08x}'"

t0 = 1795515072  # 2026-11-24 10:11:12 UTC
buf = []
with open(out, "w") as f:
    for n in range(lines):
        ts = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t0 + n // 20))
        if rnd.random() * 100 < attack_pct:
            msg = attack(rnd.choice(attackers), rnd.choice(exts))
        else:
            msg = chatter(n)
        buf.append(f"[{ts}] {msg}\n")
        if len(buf) >= 10000:
            f.write("".join(buf))
            buf.clear()
    f.write("".join(buf))
