//! Table-driven recognition tests over the plain-text corpora in tests/corpus/ (the format is
//! described at the top of each file), modelled on sshguard's attack corpus.
use std::net::IpAddr;

use astpatch::logframe::TimeContext;
use astpatch::recognise::{RecogniseOptions, Recogniser, Recognition, Rule};

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
    NotFailure,
}

struct Case {
    lineno: usize,
    line: Vec<u8>,
    expect: Option<Expect>,
    stock: bool,
}

fn recogniser(trust: bool) -> Recogniser {
    Recogniser::with_time_context(
        RecogniseOptions {
            trust_chan_sip_tail: trust,
        },
        TimeContext::utc(NOW),
    )
}

/// `\xNN` escapes stand for bytes a text file cannot show.
fn unescape(s: &str) -> Vec<u8> {
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
    for (i, line) in text.lines().enumerate() {
        if let Some(e) = line.strip_prefix("# expect ") {
            let mut parts = e.split_whitespace();
            let what = parts.next().unwrap();
            let rule = parts.next().unwrap_or("-");
            let rule =
                || Rule::from_name(rule).unwrap_or_else(|| panic!("{name}:{}: rule {rule}", i + 1));
            expect = Some(match what {
                "no-address" => Expect::NoAddress(rule()),
                "ambiguous" => Expect::Ambiguous(rule()),
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

/// Check one case with chan_sip tails trusted (unless it is a stock line) and untrusted.
fn check(file: &str, c: &Case, failures: &mut Vec<String>) {
    let expect = c
        .expect
        .clone()
        .unwrap_or_else(|| panic!("{file}:{}: no `# expect` line before it", c.lineno));
    let show = String::from_utf8_lossy(&c.line).into_owned();
    for trust in [true, false] {
        if trust && c.stock {
            continue;
        }
        let want = match (trust, chan_sip_tail_rule(&expect)) {
            (false, Some(rule)) => Expect::NoAddress(rule),
            _ => expect.clone(),
        };
        let got = verdict(recogniser(trust).recognise(&c.line));
        if got != want {
            failures.push(format!(
                "{file}:{} (trust {trust}): want {want:?}, got {got:?}\n    {show}",
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
        for trust in [true, false] {
            if trust && c.stock {
                continue;
            }
            if let Recognition::Failure { addr, .. } = recogniser(trust).recognise(&c.line) {
                assert!(
                    !bystanders.contains(&addr),
                    "adversarial.txt:{} (trust {trust}) blames bystander {addr}",
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
    for r in Rule::ALL {
        assert!(seen.contains(&r), "no attack line with an address for {r}");
    }
}

#[test]
fn every_attack_line_has_a_time_from_its_frame() {
    let rec = recogniser(true);
    for c in load("attacks.txt") {
        let r = rec.recognise(&c.line);
        assert!(
            r.time().is_some(),
            "attacks.txt:{}: no time parsed: {r:?}",
            c.lineno
        );
    }
}
