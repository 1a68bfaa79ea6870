//! Table-driven recognition tests over the plain-text corpora in tests/corpus/ (the format is
//! described at the top of each file), modelled on sshguard's attack corpus.
use std::net::IpAddr;

use astpatch::ban::scan::Scanner;
use astpatch::logs::frame::TimeContext;
use astpatch::logs::provenance::{Counts, Provenance};
use astpatch::logs::recognise::{RecogniseOptions, Recogniser, Recognition, Rule};
use astpatch::settings::Settings;

/// 2026-11-30 00:00 UTC, so the corpus's yearless dates fall in 2026.
const NOW: i64 = 1_795_996_800;

const BYSTANDERS: &[&str] = &[
    "192.0.2.1",
    "127.0.0.1",
    "0.0.0.0",
    "::1",
    "198.51.100.99",
    "6.6.6.6",
];

#[derive(Debug, Clone, PartialEq)]
enum Expect {
    Addr(IpAddr, Rule),
    NoAddress(Rule),
    Ambiguous(Rule),
    Forged(Rule),
    NotFailure,
}

struct Case {
    lineno: usize,
    line: Vec<u8>,
    expect: Option<Expect>,
    stock: bool,
}

/// The tag of the patched build the corpus pretends is installed (`tagged` lines end in it).
const CORPUS_TAG: &str = "c0ffee00c0ffee00";

/// What the reader knows of the chan_sip module, from most to least trusting.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// `patched = true` with the corpus build's tag known: untagged tails believed too.
    PatchedTrue,
    /// `patched = "auto"`, the corpus build's module installed: only its tagged lines.
    Auto,
    /// `patched = "auto"` on a stock system: no tag known, so a tagged line is forged.
    Stock,
}

const MODES: [Mode; 3] = [Mode::PatchedTrue, Mode::Auto, Mode::Stock];

fn recogniser(mode: Mode) -> Recogniser {
    let tag = CORPUS_TAG.parse().unwrap();
    Recogniser::with_time_context(
        RecogniseOptions {
            known_tags: if mode == Mode::Stock {
                vec![]
            } else {
                vec![tag]
            },
            trust_untagged: mode == Mode::PatchedTrue,
            ..Default::default()
        },
        TimeContext::utc(NOW),
    )
}

/// `\xNN` escapes stand for bytes a text file cannot show; `{{N*c}}` for N times `c`.
fn unescape(s: &str) -> Vec<u8> {
    let mut expanded = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find("{{") {
        let Some(q) = rest[p..].find("}}") else { break };
        let inner = &rest[p + 2..p + q];
        match inner.split_once('*') {
            Some((n, c)) if n.parse::<usize>().is_ok() => {
                expanded.push_str(&rest[..p]);
                expanded.push_str(&c.repeat(n.parse().unwrap()));
            }
            _ => expanded.push_str(&rest[..p + q + 2]),
        }
        rest = &rest[p + q + 2..];
    }
    expanded.push_str(rest);
    unescape_bytes(&expanded)
}

fn unescape_bytes(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') && i + 4 <= b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 2..i + 4], 16) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn load(name: &str) -> Vec<Case> {
    let path = format!("{}/tests/corpus/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let mut cases = vec![];
    let (mut expect, mut stock) = (None, false);
    let mut in_block = false;
    for (i, line) in text.lines().enumerate() {
        // Blocks are read by `load_blocks`.
        if line.starts_with("# block") {
            in_block = true;
            continue;
        }
        if in_block {
            in_block = line != "# end";
            continue;
        }
        if let Some(e) = line.strip_prefix("# expect ") {
            let mut parts = e.split_whitespace();
            let what = parts.next().unwrap();
            let rule = parts.next().unwrap_or("-");
            let rule =
                || Rule::from_name(rule).unwrap_or_else(|| panic!("{name}:{}: rule {rule}", i + 1));
            expect = Some(match what {
                "no-address" => Expect::NoAddress(rule()),
                "ambiguous" => Expect::Ambiguous(rule()),
                "forged" => Expect::Forged(rule()),
                "not-failure" => Expect::NotFailure,
                a => Expect::Addr(a.parse().unwrap(), rule()),
            });
            continue;
        }
        if line == "# stock" {
            stock = true;
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        cases.push(Case {
            lineno: i + 1,
            line: unescape(line),
            expect: expect.take(),
            stock: std::mem::take(&mut stock),
        });
    }
    assert!(!cases.is_empty(), "{name} has no cases");
    cases
}

fn verdict(r: Recognition) -> Expect {
    match r {
        Recognition::NotFailure => Expect::NotFailure,
        Recognition::Failure { rule, addr, .. } => Expect::Addr(addr, rule),
        Recognition::NoAddress { rule, .. } => Expect::NoAddress(rule),
        Recognition::Ambiguous { rule, .. } => Expect::Ambiguous(rule),
        Recognition::Forged { rule, .. } => Expect::Forged(rule),
    }
}

fn chan_sip_tail_rule(e: &Expect) -> Option<Rule> {
    match e {
        Expect::Addr(_, r) | Expect::NoAddress(r) | Expect::Ambiguous(r)
            if matches!(r, Rule::ChanSipAuth | Rule::ChanSipFakeAuth) =>
        {
            Some(*r)
        }
        _ => None,
    }
}

/// What a case written for [`Mode::PatchedTrue`] must give in `mode`: a chan_sip tail needs
/// the corpus tag under `Auto`, and any tag is unknown under `Stock`.
fn expected_in(mode: Mode, expect: &Expect, line: &[u8]) -> Expect {
    let Some(rule) = chan_sip_tail_rule(expect) else {
        return expect.clone();
    };
    let tagged = astpatch::patch::tag::split_line(line).is_some();
    match (mode, tagged) {
        (Mode::PatchedTrue, _) => expect.clone(),
        (Mode::Auto, true) => expect.clone(),
        (Mode::Auto, false) | (Mode::Stock, false) => Expect::NoAddress(rule),
        (Mode::Stock, true) => Expect::Forged(rule),
    }
}

/// Check one case in every mode (a stock line is never checked as if patched = true).
fn check(file: &str, c: &Case, failures: &mut Vec<String>) {
    let expect = c
        .expect
        .clone()
        .unwrap_or_else(|| panic!("{file}:{}: no `# expect` line before it", c.lineno));
    let show = String::from_utf8_lossy(&c.line).into_owned();
    for mode in MODES {
        if mode == Mode::PatchedTrue && c.stock {
            continue;
        }
        let want = expected_in(mode, &expect, &c.line);
        let got = verdict(recogniser(mode).recognise(&c.line));
        if got != want {
            failures.push(format!(
                "{file}:{} ({mode:?}): want {want:?}, got {got:?}\n    {show}",
                c.lineno
            ));
        }
    }
}

fn run(file: &str, default: Option<Expect>) {
    let mut failures = vec![];
    for mut c in load(file) {
        if c.expect.is_none() {
            c.expect = default.clone();
        }
        check(file, &c, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn attacks_are_recognised_with_the_right_address_and_rule() {
    run("attacks.txt", None);
}

#[test]
fn near_misses_are_not_failures() {
    run("not-attacks.txt", Some(Expect::NotFailure));
}

#[test]
fn adversarial_lines_get_their_expected_verdict() {
    run("adversarial.txt", None);
}

#[test]
fn no_adversarial_line_blames_a_bystander() {
    let bystanders: Vec<IpAddr> = BYSTANDERS.iter().map(|b| b.parse().unwrap()).collect();
    for c in load("adversarial.txt") {
        for mode in MODES {
            if mode == Mode::PatchedTrue && c.stock {
                continue;
            }
            if let Recognition::Failure { addr, .. } = recogniser(mode).recognise(&c.line) {
                assert!(
                    !bystanders.contains(&addr),
                    "adversarial.txt:{} ({mode:?}) blames bystander {addr}",
                    c.lineno
                );
                assert!(
                    addr == "203.0.113.66".parse::<IpAddr>().unwrap()
                        || addr == "2001:db8:66::66".parse::<IpAddr>().unwrap(),
                    "adversarial.txt:{}: blames {addr}, not the real source",
                    c.lineno
                );
            }
        }
    }
}

#[test]
fn every_rule_is_exercised_by_the_attack_corpus() {
    let seen: Vec<Rule> = load("attacks.txt")
        .iter()
        .filter_map(|c| match c.expect {
            Some(Expect::Addr(_, r)) => Some(r),
            _ => None,
        })
        .collect();
    // The opt-in dialplan rule is off in the corpus; tests/log_formats.rs runs it.
    for r in Rule::ALL
        .into_iter()
        .filter(|r| *r != Rule::DialplanRejection)
    {
        assert!(seen.contains(&r), "no attack line with an address for {r}");
    }
}

#[test]
fn every_attack_line_has_a_time_from_its_frame() {
    let rec = recogniser(Mode::PatchedTrue);
    for c in load("attacks.txt") {
        let r = rec.recognise(&c.line);
        assert!(
            r.time().is_some(),
            "attacks.txt:{}: no time parsed: {r:?}",
            c.lineno
        );
    }
}

#[test]
fn truncated_and_mangled_lines_never_panic() {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let recs = MODES.map(recogniser);
    for file in ["attacks.txt", "not-attacks.txt", "adversarial.txt"] {
        for c in load(file) {
            for cut in 0..=c.line.len() {
                for r in &recs {
                    r.recognise(&c.line[..cut]);
                }
            }
            // Random byte flips anywhere, Asterisk's own text included.
            for _ in 0..200 {
                let mut l = c.line.clone();
                for _ in 0..3 {
                    let i = (rnd() as usize) % l.len();
                    l[i] = rnd() as u8;
                }
                for r in &recs {
                    r.recognise(&l);
                }
            }
        }
    }
}

/// A `# block` of adversarial.txt: physical lines read in order as one log file.
struct Block {
    lineno: usize,
    lines: Vec<Vec<u8>>,
    blamed: Vec<IpAddr>,
    counts: Counts,
}

fn load_blocks(name: &str) -> Vec<Block> {
    let path = format!("{}/tests/corpus/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let mut blocks = vec![];
    let mut cur: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        if line.starts_with("# block") {
            cur = Some(Block {
                lineno: i + 1,
                lines: vec![],
                blamed: vec![],
                counts: Counts::default(),
            });
            continue;
        }
        let Some(b) = cur.as_mut() else { continue };
        if line == "# end" {
            blocks.push(cur.take().unwrap());
        } else if let Some(w) = line.strip_prefix("# want ") {
            for kv in w.split_whitespace() {
                let (k, v) = kv.split_once('=').unwrap();
                match k {
                    "blamed" if v == "-" => {}
                    "blamed" => b.blamed = v.split(',').map(|a| a.parse().unwrap()).collect(),
                    "forged" => b.counts.forged = v.parse().unwrap(),
                    "glued" => b.counts.glued = v.parse().unwrap(),
                    "truncated" => b.counts.truncated = v.parse().unwrap(),
                    "unproven" => b.counts.unproven = v.parse().unwrap(),
                    _ => panic!("{name}:{}: unknown want {k}", i + 1),
                }
            }
        } else if !line.starts_with('#') {
            b.lines.push(unescape(line));
        }
    }
    assert!(cur.is_none(), "{name}: block without # end");
    blocks
}

/// Read like the watcher: line by line through one file's provenance.
fn by_lines(rec: &Recogniser, lines: &[Vec<u8>]) -> (Vec<IpAddr>, Counts) {
    let mut p = Provenance::default();
    let mut out = vec![];
    for l in lines {
        let cand = rec.may_match(l);
        let r = if cand {
            rec.recognise_candidate(l)
        } else {
            Recognition::NotFailure
        };
        p.line(rec, l, cand, r, 0, &mut out);
    }
    p.flush(&mut out);
    let blamed = out
        .iter()
        .filter_map(|r| match r {
            Recognition::Failure { addr, .. } => Some(*addr),
            _ => None,
        })
        .collect();
    (blamed, p.counts())
}

/// Read like `astpatch scan`: the block reader, as one file.
fn by_scan(rec: &Recogniser, lines: &[Vec<u8>]) -> (Vec<IpAddr>, Counts) {
    let mut text = lines.join(&b'\n');
    text.push(b'\n');
    let settings = Settings::default();
    let mut s = Scanner::new(rec, &settings);
    s.read(&text[..], "block");
    let r = s.finish();
    let mut blamed = vec![];
    for a in &r.addresses {
        for _ in 0..a.failures {
            blamed.push(a.address.parse().unwrap());
        }
    }
    (blamed, r.sources[0].counts)
}

#[test]
fn adversarial_blocks_blame_only_what_they_say_in_every_reader() {
    let mut failures = vec![];
    let blocks = load_blocks("adversarial.txt");
    assert!(blocks.len() >= 10, "{}", blocks.len());
    for b in &blocks {
        for mode in [Mode::Auto, Mode::Stock] {
            let rec = recogniser(mode);
            let (blamed, counts) = by_lines(&rec, &b.lines);
            if blamed != b.blamed || counts != b.counts {
                failures.push(format!(
                    "adversarial.txt:{} ({mode:?}, line by line): want {:?} {:?}, got {blamed:?} {counts:?}",
                    b.lineno, b.blamed, b.counts
                ));
            }
            let (mut scanned, scounts) = by_scan(&rec, &b.lines);
            let mut want = b.blamed.clone();
            scanned.sort();
            want.sort();
            if scanned != want || scounts != b.counts {
                failures.push(format!(
                    "adversarial.txt:{} ({mode:?}, scan): want {want:?} {:?}, got {scanned:?} {scounts:?}",
                    b.lineno, b.counts
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
