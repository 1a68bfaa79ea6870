//! Random attacker text in every attacker-written field of every format, written the way
//! Asterisk writes it (a field stops at NUL, a message is cut at 8191 bytes and loses its
//! newline, so the next entry is glued on), read by scan's block reader and by the watcher's
//! line path: only the real sender may ever be blamed.
//!
//! Fields that can carry a newline in reality (docs/provenance.md: chan_sip's decoded
//! extension, IAX2 peer names and MD5 results, AMI user names via the HTTP manager, AMI events'
//! AccountID) get LF as well as CR, NUL and text up to and past 8 KiB; the others (raw SIP
//! headers, which end at a newline) get everything but LF. One move is left out, and kept as a
//! documented hole in tests/corpus/adversarial.txt: a field whose text before its first
//! newline ends the way Asterisk ends the format, so that the first physical line looks
//! whole — a log file alone cannot show that cut (the tag closes it for chan_sip failures).
use std::net::IpAddr;

use astpatch::ban::scan::Scanner;
use astpatch::logs::frame::TimeContext;
use astpatch::logs::provenance::Provenance;
use astpatch::logs::recognise::{RecogniseOptions, Recogniser, Recognition};
use astpatch::settings::Settings;

const NOW: i64 = 1_795_996_800;
const SEED: u64 = 0x0a0d_00ff_5eed_1100;
const SENDER: &str = "203.0.113.66";
const TAG: &str = "c0ffee00c0ffee00";

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

/// A format: its frame's level and file, and its message with `{R}` (a field without
/// newlines) and `{L}` (a field that may hold them) where the sender writes.
struct Format(&'static str, &'static str, &'static str);

const FORMATS: &[Format] = &[
    Format(
        "NOTICE",
        "chan_sip.c",
        "Failed to authenticate device {R} (SENDER:5060) for INVITE, code = -1 [astpatch:TAG]",
    ),
    Format(
        "NOTICE",
        "chan_sip.c",
        "Failed to authenticate user {R} (SENDER:5060) for SUBSCRIBE [astpatch:TAG]",
    ),
    Format(
        "NOTICE",
        "chan_sip.c",
        "Sending fake auth rejection for device {R} (SENDER:5060) [astpatch:TAG]",
    ),
    Format(
        "NOTICE",
        "chan_sip.c",
        "Registration from '{R}' failed for 'SENDER:5060' - Wrong password",
    ),
    Format(
        "NOTICE",
        "chan_sip.c",
        "Call from '{R}' (SENDER:5060) to extension '{L}' rejected because extension not found in context 'public'.",
    ),
    Format(
        "NOTICE",
        "chan_iax2.c",
        "No registration for peer '{L}' (from SENDER)",
    ),
    Format(
        "NOTICE",
        "chan_iax2.c",
        "Host SENDER failed MD5 authentication for '300' (0123456789abcdef0123456789abcdef != {L})",
    ),
    Format(
        "NOTICE",
        "manager.c",
        "SENDER failed to authenticate as '{L}'",
    ),
    Format(
        "NOTICE",
        "manager.c",
        "SENDER tried to authenticate with nonexistent user '{L}'",
    ),
    Format(
        "NOTICE",
        "res_pjsip/pjsip_distributor.c",
        "Request '{R}' from '{R}' failed for 'SENDER:5060' (callid: {R}) - No matching endpoint found",
    ),
    Format(
        "SECURITY",
        "res_security_log.c",
        "SecurityEvent=\"InvalidAccountID\",EventTV=\"2026-11-30T05:40:52.000+0000\",Severity=\"Error\",Service=\"AMI\",EventVersion=\"1\",AccountID=\"{L}\",SessionID=\"0x7f1\",LocalAddress=\"IPV4/TCP/203.0.113.1/5038\",RemoteAddress=\"IPV4/TCP/SENDER/41222\",SessionTV=\"2026-11-30T05:40:52.000+0000\"",
    ),
    Format(
        "SECURITY",
        "res_security_log.c",
        "SecurityEvent=\"ChallengeResponseFailed\",EventTV=\"2026-11-30T05:40:52.000+0000\",Severity=\"Error\",Service=\"PJSIP\",EventVersion=\"1\",AccountID=\"{R}\",SessionID=\"{R}\",LocalAddress=\"IPV4/UDP/203.0.113.1/5060\",RemoteAddress=\"IPV4/UDP/SENDER/5060\",Challenge=\"1\",Response=\"{R}\",ExpectedResponse=\"\"",
    ),
];

const BYSTANDERS: &[&str] = &["192.0.2.1", "198.51.100.99", "6.6.6.6", "127.0.0.1"];

/// Pieces the attacker strings together: whole forged lines of every format naming
/// bystanders, frames, the formats' own endings and address places, control bytes.
fn tokens() -> Vec<Vec<u8>> {
    let mut t: Vec<Vec<u8>> = [
        "\r",
        "\0",
        "'",
        "\"",
        "(",
        ")",
        " ",
        "x",
        "%0A",
        "\u{1b}[2K",
        "' rejected because extension not found in context 'public'.",
        "' rejected because extension not found.",
        "' (from 192.0.2.1)",
        " != 0123456789abcdef0123456789abcdef)",
        "' failed for '192.0.2.1:5060' - Wrong password",
        "' failed for '192.0.2.1:5060' (callid: a) - No matching endpoint found",
        ",RemoteAddress=\"IPV4/UDP/192.0.2.1/5060\"",
        " (192.0.2.1:5060) [astpatch:0123456789abcdef]",
        "[Nov 30 10:00:00] NOTICE[1234] chan_sip.c: ",
        "[Nov 30 10:00:00] NOTICE[1234][C-00000099] manager.c: ",
        "Nov 30 10:00:00 pbx asterisk[1]: NOTICE[1]: manager.c:1 in f: ",
        "[Nov 30 10:00:00] VERBOSE[1]: ",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    for f in FORMATS {
        for b in BYSTANDERS {
            let msg = f.2.replace("{R}", "x").replace("{L}", "y");
            // The sender does not know the build's tag (issue 10): it guesses.
            let msg = msg.replace("SENDER", b).replace("TAG", "0123456789abcdef");
            t.push(format!("[Nov 30 10:00:00] {}[1234] {}: {msg}", f.0, f.1).into_bytes());
            // The same line without its ending, for Asterisk's to complete.
            let cut = msg.len() * 2 / 3;
            t.push(
                format!("[Nov 30 10:00:00] {}[1234] {}: {}", f.0, f.1, &msg[..cut]).into_bytes(),
            );
        }
    }
    t
}

/// The sender's text for one field. `lines`: the field can hold a newline.
fn field(rng: &mut Rng, toks: &[Vec<u8>], lines: bool) -> Vec<u8> {
    let mut v = Vec::new();
    for _ in 0..rng.below(8) {
        match rng.below(10) {
            0 if lines => v.push(b'\n'),
            1 => v.extend(std::iter::repeat_n(b'A', rng.below(9000))),
            _ => v.extend(&toks[rng.below(toks.len())]),
        }
    }
    if !lines {
        v.retain(|&c| c != b'\n');
    }
    // Asterisk prints the field with %s: it ends at a NUL.
    if let Some(p) = v.iter().position(|&c| c == 0) {
        v.truncate(p);
    }
    // The documented hole left out: text before the first newline that ends as the format
    // does. Any other byte there keeps the cut visible.
    if let Some(p) = v.iter().position(|&c| c == b'\n') {
        v.insert(p, b'x');
    }
    v
}

/// One message as Asterisk's file channel writes it (16+: frame and message cut at 8191 bytes
/// together; up to 15: the message alone), newline lost when cut.
fn write(out: &mut Vec<u8>, level: &str, file: &str, msg: &[u8], old_logger: bool) {
    let frame = format!("[Nov 30 05:40:52] {level}[31195][C-0000000c] {file}: ");
    let mut line = frame.clone().into_bytes();
    if old_logger {
        line.extend(&msg[..msg.len().min(8191)]);
    } else {
        line.extend(msg);
        line.truncate(8191);
    }
    let cut = line.len() < frame.len() + msg.len();
    out.extend(&line);
    if !cut {
        out.push(b'\n');
    }
}

fn message(rng: &mut Rng, toks: &[Vec<u8>], f: &Format) -> Vec<u8> {
    let tpl = f.2.replace("SENDER", SENDER).replace("TAG", TAG);
    let mut msg = Vec::new();
    let mut rest = tpl.as_str();
    while let Some(p) = rest.find('{') {
        msg.extend(&rest.as_bytes()[..p]);
        let lines = &rest[p..p + 3] == "{L}";
        msg.extend(field(rng, toks, lines));
        rest = &rest[p + 3..];
    }
    msg.extend(rest.as_bytes());
    msg
}

fn recogniser() -> Recogniser {
    Recogniser::with_time_context(
        RecogniseOptions {
            known_tags: vec![TAG.parse().unwrap()],
            ..Default::default()
        },
        TimeContext::utc(NOW),
    )
}

fn blamed_by_lines(rec: &Recogniser, log: &[u8]) -> (Vec<IpAddr>, u64) {
    let mut p = Provenance::default();
    let mut out = vec![];
    let body = log.strip_suffix(b"\n").unwrap_or(log);
    for l in body.split(|&c| c == b'\n') {
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
    (blamed, p.counts().total())
}

#[test]
fn only_the_sender_is_ever_blamed() {
    let rec = recogniser();
    let settings = Settings::default();
    let toks = tokens();
    let sender: IpAddr = SENDER.parse().unwrap();
    // ASTPATCH_FUZZ_SEED explores further; the default seed keeps CI reproducible.
    let seed = std::env::var("ASTPATCH_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(SEED);
    let mut rng = Rng(seed);
    let (mut blamed_total, mut doubted_total) = (0, 0);
    for case in 0..1500 {
        let mut log = Vec::new();
        let old_logger = rng.below(2) == 0;
        for _ in 0..1 + rng.below(4) {
            if rng.below(3) == 0 {
                log.extend(
                    b"[Nov 30 05:40:52] VERBOSE[31195] pbx.c: -- Executing [s@public:1] NoOp\n",
                );
            }
            let f = &FORMATS[rng.below(FORMATS.len())];
            let msg = message(&mut rng, &toks, f);
            write(&mut log, f.0, f.1, &msg, old_logger);
        }
        let (by_lines, doubted) = blamed_by_lines(&rec, &log);
        let mut s = Scanner::new(&rec, &settings);
        s.read(&log[..], "fuzz");
        let report = s.finish();
        let show = || {
            // The whole case, for a closer look.
            let _ = std::fs::write(std::env::temp_dir().join("provenance-fuzz-case.log"), &log);
            String::from_utf8_lossy(&log[..log.len().min(3000)]).into_owned()
        };
        for a in &by_lines {
            assert_eq!(*a, sender, "case {case}: line path blames {a}:\n{}", show());
        }
        for a in &report.addresses {
            assert_eq!(
                a.address,
                SENDER,
                "case {case}: scan blames {}:\n{}",
                a.address,
                show()
            );
        }
        let scanned: u64 = report.addresses.iter().map(|a| a.failures).sum();
        assert_eq!(
            scanned,
            by_lines.len() as u64,
            "case {case}: readers disagree:\n{}",
            show()
        );
        blamed_total += by_lines.len();
        doubted_total += doubted;
    }
    // Not vacuous: the sender's own failures are still seen, and forgeries are caught.
    assert!(blamed_total > 300, "{blamed_total}");
    assert!(doubted_total > 300, "{doubted_total}");
}
