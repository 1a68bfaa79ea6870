//! Hostile bytes against the recogniser, the frame parser and scan: corpus lines mutated at
//! random (flipped bytes, spliced-in tokens Asterisk's parsers key on, cuts, doublings) and pure
//! noise. Nothing may panic, and a line no longer naming the real source may not blame anyone
//! who is not written in it.
use std::net::IpAddr;

use astpatch::logs::frame::{self, TimeContext};
use astpatch::logs::recognise::{RecogniseOptions, Recogniser, Recognition};

const NOW: i64 = 1_795_996_800;
const SEED: u64 = 0x5eed_a57a_7c4e;

/// Deterministic xorshift, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const TOKENS: &[&[u8]] = &[
    b"'",
    b"\"",
    b"(",
    b")",
    b"[",
    b"]",
    b":",
    b" ",
    b"\r",
    b"\0",
    b"\xff",
    b"' failed for '",
    b"' (callid: ",
    b") - ",
    b"' - ",
    b" (",
    b") to extension '",
    b"' (",
    b"' to extension '",
    b"' rejected because extension not found in context '",
    b",RemoteAddress=\"",
    b"IPV4/UDP/",
    b"IPV6/UDP/[",
    b"/5060\"",
    b" for SUBSCRIBE",
    b" for INVITE, code = -1",
    b"192.0.2.1",
    b"127.0.0.1:5060",
    b"[::1]:5060",
    b"::ffff:127.0.0.1",
    b"0.0.0.0",
    b"99999999999999999999",
    b"Nov 24 10:11:12",
    b"2026-02-30 25:61:61.9999999999",
    b"NOTICE[",
    b"]: ",
    b"chan_sip.c:",
    b"[C-",
];

fn corpus() -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    for f in ["attacks.txt", "not-attacks.txt", "adversarial.txt"] {
        let text =
            std::fs::read(format!("{}/tests/corpus/{f}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        for l in text.split(|&c| c == b'\n') {
            if !l.is_empty() && !l.starts_with(b"#") {
                lines.push(l.to_vec());
            }
        }
    }
    lines
}

fn mutate(rng: &mut Rng, line: &[u8]) -> Vec<u8> {
    let mut v = line.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(5) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            1 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                v.splice(at..at, t.iter().copied());
            }
            2 => v.truncate(at),
            3 => {
                let end = (at + rng.below(40)).min(v.len());
                let copy = v[at..end].to_vec();
                v.splice(at..at, copy);
            }
            _ if at < v.len() => {
                let end = (at + rng.below(8)).min(v.len());
                v.drain(at..end);
            }
            _ => {}
        }
    }
    v
}

/// Whether `addr` is written somewhere in `line`, in any spelling (`[v6]:port`, `v4:port`,
/// PJSIP 12-13's unbracketed `v6:port`, leading zeros, a v4-mapped v6 form, res_pjsip_session's
/// `TRANSPORT:ADDR`).
fn written_in(line: &[u8], addr: IpAddr) -> bool {
    let text = String::from_utf8_lossy(line);
    let same = |a: IpAddr| a == addr || a.to_canonical() == addr;
    text.split(|c: char| " '\"(),=/".contains(c)).any(|tok| {
        let tok = match tok.split_once(':') {
            Some((t, rest))
                if t.starts_with(|c: char| c.is_ascii_uppercase())
                    && t.bytes()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) =>
            {
                rest
            }
            _ => tok,
        };
        let host = tok.trim_start_matches('[');
        let host = host.split(']').next().unwrap_or(host);
        host.parse::<IpAddr>().is_ok_and(same)
            || tok
                .parse::<std::net::SocketAddr>()
                .is_ok_and(|s| same(s.ip()))
            || host
                .rsplit_once(':')
                .is_some_and(|(h, _)| h.parse::<IpAddr>().is_ok_and(same))
    })
}

#[test]
fn mutated_corpus_lines_never_panic_or_blame_an_address_they_do_not_name() {
    let lines = corpus();
    let recs = [false, true].map(|trust| {
        Recogniser::with_time_context(
            RecogniseOptions {
                known_tags: vec!["c0ffee00c0ffee00".parse().unwrap()],
                trust_untagged: trust,
                ..Default::default()
            },
            TimeContext::utc(NOW),
        )
    });
    let mut rng = Rng(SEED);
    for round in 0..400 {
        for line in &lines {
            let m = mutate(&mut rng, line);
            for r in &recs {
                if let Recognition::Failure { addr, .. } = r.recognise(&m) {
                    assert!(
                        written_in(&m, addr),
                        "round {round}: blamed {addr}, which the line does not name: {:?}",
                        String::from_utf8_lossy(&m)
                    );
                }
            }
            let _ = frame::parse(&m, &TimeContext::utc(NOW));
            let _ = frame::parse_date(&m, &TimeContext::utc(NOW));
        }
    }
}

#[test]
fn noise_never_panics() {
    let rec = Recogniser::with_time_context(
        RecogniseOptions {
            known_tags: vec!["c0ffee00c0ffee00".parse().unwrap()],
            trust_untagged: true,
            ..Default::default()
        },
        TimeContext::utc(NOW),
    );
    let mut rng = Rng(0x0dd_b17e5);
    for _ in 0..200_000 {
        let len = rng.below(120);
        let mut v: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if rng.below(2) == 0 {
            let t = TOKENS[rng.below(TOKENS.len())];
            let at = rng.below(v.len() + 1);
            v.splice(at..at, t.iter().copied());
        }
        rec.recognise(&v);
        let _ = frame::parse(&v, &TimeContext::utc(NOW));
        let _ = frame::parse_date(&v, &TimeContext::utc(i64::MAX / 4));
        let _ = frame::parse_date(&v, &TimeContext::utc(i64::MIN / 4));
    }
}
