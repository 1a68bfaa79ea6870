#!/usr/bin/env python3
"""Census of Asterisk's log formats that name a remote address.

    scripts/census.py ASTERISK_GIT [--classes asterisk-log-classes.json] [--out FILE]

Walks every release tag of an Asterisk git checkout (each file version read once, by blob id)
in the modules that talk to remote peers (channels/, res/res_pjsip*, main/manager.c,
main/http.c, the security event writer res/res_security_log.c) and finds every
ast_log / ast_trace_log / SCOPE_EXIT_LOG* at NOTICE, WARNING, ERROR or SECURITY whose arguments
print an address (ast_sockaddr_stringify*, ast_inet_ntoa, inet_ntoa, pj_sockaddr_print,
pj_inet_ntoa, pkt_info.src_name, ...). Adjacent string literals are joined; a macro between
them is kept as {NAME}.

Each format is then classified from the curated file beside the output
(asterisk-log-classes.json): exact entries first, then the file's patterns. A format that
neither names is written with class "unclassified" and the script exits 1, so a new Asterisk
release cannot slip a format past the census unseen.

Only format strings and argument expressions are written (data about the logs), never code.
Python 3.11, standard library only. Deterministic: the same checkout gives the same bytes.
"""
import argparse
import json
import re
import subprocess
import sys
import threading
from collections import defaultdict

LEVELS = ("LOG_NOTICE", "LOG_WARNING", "LOG_ERROR", "LOG_SECURITY")

# How Asterisk and pjproject print an address into a log argument.
ADDR_PRINTERS = re.compile(
    r"ast_sockaddr_stringify\w*\s*\(|\bast_inet_ntoa\s*\(|\binet_ntoa\s*\(|pj_sockaddr_print\s*\("
    r"|pj_inet_ntoa\s*\(|pkt_info\s*\.\s*src_name|ast_sockaddr_stringify\b"
)

CALL = re.compile(rb"\b(ast_log|ast_trace_log|SCOPE_EXIT_LOG_RTN_VALUE|SCOPE_EXIT_LOG_RTN|SCOPE_EXIT_LOG)\s*\(")


def in_scope(path):
    if path.startswith("channels/") and path.endswith(".c"):
        return True
    if path.startswith("res/res_pjsip") and path.endswith(".c"):
        return True
    return path in ("main/manager.c", "main/http.c", "res/res_security_log.c")


def module_of(path):
    """The module a file belongs to: its .c name, or the res_pjsip/ folder's module."""
    if path.startswith("res/res_pjsip/"):
        return "res_pjsip"
    if path.startswith("channels/sip/"):
        return "chan_sip"
    if path.startswith("channels/iax2/"):
        return "chan_iax2"
    return path.rsplit("/", 1)[-1][:-2]


def git(repo, *args, input=None):
    return subprocess.run(
        ["git", "-C", repo, *args], input=input, capture_output=True, check=True
    ).stdout


# --- version order (as src/version.rs: alpha < beta < pre < tc < testing < rc < release) ---
PRE = {"alpha": 0, "beta": 1, "pre": 2, "tc": 3, "testing": 4, "rc": 5}


def version_key(tag):
    t = tag.removeprefix("certified/").removeprefix("certified-")
    m = re.match(r"^(\d+(?:\.\d+)*)(.*)$", t)
    if not m:
        return ((), 9, 0, tag)
    nums = tuple(int(x) for x in m.group(1).split("."))
    rest = m.group(2)
    pm = re.match(r"^-?(alpha|beta|pre|tc|testing|rc)(\d*)", rest)
    if pm:
        return (nums, PRE[pm.group(1)], int(pm.group(2) or 0), tag)
    return (nums, 8, 0, tag)


# --- C scanning -------------------------------------------------------------------------
def call_text(src, start):
    """The argument text of the call whose '(' is at start-1, up to its matching ')'."""
    depth = 1
    i = start
    n = len(src)
    while i < n:
        c = src[i]
        if c == 34 or c == 39:  # string or char literal
            q = c
            i += 1
            while i < n and src[i] != q:
                if src[i] == 92:
                    i += 1
                i += 1
        elif c == 47 and i + 1 < n and src[i + 1] == 42:  # /* comment */
            e = src.find(b"*/", i + 2)
            i = n if e < 0 else e + 1
        elif c == 47 and i + 1 < n and src[i + 1] == 47:  # // comment
            e = src.find(b"\n", i)
            i = n if e < 0 else e
        elif c == 40:
            depth += 1
        elif c == 41:
            depth -= 1
            if depth == 0:
                return src[start:i]
        i += 1
        if i - start > 20000:
            return None
    return None


def split_args(text):
    """Top-level comma split, comments dropped, strings kept."""
    args, cur, depth, i, n = [], [], 0, 0, len(text)
    while i < n:
        c = text[i]
        if c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                if text[j] == "\\":
                    j += 1
                j += 1
            cur.append(text[i : j + 1])
            i = j + 1
            continue
        if text.startswith("/*", i):
            e = text.find("*/", i + 2)
            i = n if e < 0 else e + 2
            cur.append(" ")
            continue
        if text.startswith("//", i):
            e = text.find("\n", i)
            i = n if e < 0 else e
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        if c == "," and depth == 0:
            args.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    args.append("".join(cur))
    return [re.sub(r"\s+", " ", a).strip() for a in args]


STR_OR_TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"|([A-Za-z_]\w*)|(\S)')


def join_literals(arg):
    """Adjacent literals joined; a macro between them becomes {NAME}. None if not a format."""
    out, saw_lit = [], False
    for m in STR_OR_TOKEN.finditer(arg):
        if m.group(1) is not None:
            out.append(m.group(1))
            saw_lit = True
        elif m.group(2) is not None:
            out.append("{" + m.group(2) + "}")
        else:
            return None
    return c_unescape("".join(out)) if saw_lit else None


C_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "'": "'", "\\": "\\", "?": "?", "a": "\a"}


def c_unescape(s):
    """The string the C literal stands for (the escapes Asterisk's formats use)."""
    return re.sub(r"\\(.)", lambda m: C_ESCAPES.get(m.group(1), m.group(0)), s)


def scan_blob(src):
    found = []
    for m in CALL.finditer(src):
        body = call_text(src, m.end())
        if body is None:
            continue
        text = body.decode("latin-1")
        args = split_args(text)
        lvl = next((i for i, a in enumerate(args[:3]) if a in LEVELS), None)
        if lvl is None or lvl + 1 >= len(args):
            continue
        fmt = join_literals(args[lvl + 1])
        if fmt is None:
            continue
        rest = args[lvl + 2 :]
        if not any(ADDR_PRINTERS.search(a) for a in rest):
            continue
        found.append((args[lvl][4:], fmt, tuple(rest)))
    return found


def security_log_formats(src):
    """res_security_log writes one SECURITY line per event, built from the event's fields: the
    census records it once, with the field list as its arguments."""
    if b"LOG_SECURITY" in src or b"ast_log_dynamic_level(LOG_SECURITY" in src or b"LOG_SECURITY" in src:
        return [("SECURITY", 'SecurityEvent="%s",...,RemoteAddress="%s",...', ("event fields",))]
    return []


def census(repo):
    tags = git(repo, "tag").decode().split()
    per_blob = {}  # blob id -> [(level, fmt, args)]
    where = defaultdict(set)  # (module, level, fmt) -> {tags}
    args_of = defaultdict(set)  # (module, level, fmt) -> {args tuple}
    files_of = defaultdict(set)
    todo = {}
    tag_blobs = {}
    for tag in tags:
        try:
            out = git(repo, "ls-tree", "-r", "refs/tags/" + tag, "--", "channels", "res", "main/manager.c", "main/http.c")
        except subprocess.CalledProcessError:
            continue
        blobs = []
        for line in out.decode("latin-1").splitlines():
            meta, path = line.split("\t", 1)
            _, kind, oid = meta.split()
            if kind == "blob" and in_scope(path):
                blobs.append((path, oid))
                todo[oid] = path
        tag_blobs[tag] = blobs
    oids = sorted(todo)
    proc = subprocess.Popen(["git", "-C", repo, "cat-file", "--batch"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    # Feed the ids from a thread: cat-file's answers would fill the pipe before we read them.
    feeder = threading.Thread(target=lambda: (proc.stdin.write(("\n".join(oids) + "\n").encode()), proc.stdin.close()))
    feeder.start()
    for oid in oids:
        head = proc.stdout.readline().split()
        size = int(head[2])
        src = proc.stdout.read(size)
        proc.stdout.read(1)
        if todo[oid] == "res/res_security_log.c":
            per_blob[oid] = security_log_formats(src)
        else:
            per_blob[oid] = scan_blob(src)
    feeder.join()
    proc.wait()
    for tag, blobs in tag_blobs.items():
        for path, oid in blobs:
            for level, fmt, args in per_blob[oid]:
                key = (module_of(path), level, fmt)
                where[key].add(tag)
                args_of[key].add(args)
                files_of[key].add(path)
    entries = []
    for key in sorted(where):
        module, level, fmt = key
        ts = sorted(where[key], key=version_key)
        entries.append(
            {
                "module": module,
                "level": level,
                "format": fmt,
                "files": sorted(files_of[key]),
                "first": ts[0],
                "last": ts[-1],
                "tags": len(ts),
                "arguments": [list(a) for a in sorted(args_of[key])],
            }
        )
    return entries, len(tags), len(oids)


def classify(entries, classes):
    exact = {(c["module"], c["format"]): c for c in classes["formats"]}
    patterns = [(re.compile(p["match"]), p) for p in classes["patterns"]]
    unclassified = 0
    used = set()
    for e in entries:
        c = exact.get((e["module"], e["format"]))
        if c is not None:
            used.add((e["module"], e["format"]))
            e["class"] = c["class"]
            for k in ("rule", "blamed", "address", "filled_by", "steerable", "raw_fields", "note"):
                if k in c:
                    e[k] = c[k]
            continue
        for rx, p in patterns:
            if p.get("module", e["module"]) == e["module"] and rx.search(e["format"]):
                e["class"] = p["class"]
                e["note"] = p["note"]
                break
        else:
            e["class"] = "unclassified"
            unclassified += 1
    stale = sorted(set(exact) - used)
    return unclassified, stale


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("repo")
    ap.add_argument("--classes", default="asterisk-log-classes.json")
    ap.add_argument("--out", default="-")
    ap.add_argument("--reclassify", metavar="JSON", help="reuse the formats of an earlier output instead of walking the tags")
    a = ap.parse_args()
    if a.reclassify:
        with open(a.reclassify) as f:
            old = json.load(f)
        keep = ("module", "level", "format", "files", "first", "last", "tags", "arguments")
        entries = [{k: e[k] for k in keep} for e in old["formats"]]
        ntags, nblobs = old["tags_walked"], old["file_versions_read"]
    else:
        entries, ntags, nblobs = census(a.repo)
    with open(a.classes) as f:
        classes = json.load(f)
    unclassified, stale = classify(entries, classes)
    summary = defaultdict(lambda: {"found": 0, "counted": 0, "refused": 0, "not_attack": 0})
    for e in entries:
        s = summary[e["module"]]
        s["found"] += 1
        if e["class"] == "attack":
            s["counted" if e.get("blamed") else "refused"] += 1
        elif e["class"] == "not-attack":
            s["not_attack"] += 1
    doc = {
        "about": "Every ast_log at NOTICE/WARNING/ERROR/SECURITY that prints a remote address, in every release tag of Asterisk; generated by scripts/census.py from the curated classes in asterisk-log-classes.json. class: attack (counted when 'rule' names the astpatch rule; otherwise refused, with the reason in 'note') or not-attack. address: which argument is the address; filled_by: what fills it; steerable: whether a remote party chooses it; raw_fields: attacker text printed raw (newline-capable).",
        "tags_walked": ntags,
        "file_versions_read": nblobs,
        "summary": dict(sorted(summary.items())),
        "formats": entries,
    }
    text = json.dumps(doc, indent=1, ensure_ascii=False, sort_keys=False) + "\n"
    if a.out == "-":
        sys.stdout.write(text)
    else:
        with open(a.out, "w") as f:
            f.write(text)
    if stale:
        print(f"census: {len(stale)} classified formats no longer found: {stale[:5]}", file=sys.stderr)
    if unclassified:
        print(f"census: {unclassified} formats unclassified", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
