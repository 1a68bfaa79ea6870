//! Asterisk's own log formats (asterisk-log-formats.json, from scripts/census.py over every
//! release tag) against the recogniser: every attack format is blamed on the address Asterisk
//! wrote, in every frame style; no other format is ever blamed. Plus the census's own
//! regeneration (opt-in, needs an Asterisk checkout) and fail2ban's annotated test log (when
//! fail2ban is installed).
use std::net::IpAddr;
use std::path::Path;

use astpatch::logs::frame::TimeContext;
use astpatch::logs::recognise::{RecogniseOptions, Recogniser, Recognition, Rule};
use serde_json::Value;

/// 2026-11-30 00:00 UTC.
const NOW: i64 = 1_795_996_800;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn census() -> Value {
    let text = std::fs::read_to_string(root().join("asterisk-log-formats.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// `ASTPATCH_ASTERISK_GIT=/path/to/asterisk cargo test --test log_formats census -- --nocapture`
#[test]
fn census_regenerates_to_the_committed_file() {
    let Ok(repo) = std::env::var("ASTPATCH_ASTERISK_GIT") else {
        eprintln!(
            "SKIP census_regenerates_to_the_committed_file: set ASTPATCH_ASTERISK_GIT to an Asterisk git checkout"
        );
        return;
    };
    let out = tempfile::NamedTempFile::new().unwrap();
    let st = std::process::Command::new("python3")
        .current_dir(root())
        .args(["scripts/census.py", &repo, "--out"])
        .arg(out.path())
        .status()
        .expect("python3 runs");
    assert!(
        st.success(),
        "census.py failed (an unclassified format? add it to asterisk-log-classes.json)"
    );
    let fresh = std::fs::read_to_string(out.path()).unwrap();
    let committed = std::fs::read_to_string(root().join("asterisk-log-formats.json")).unwrap();
    if fresh != committed {
        let diff = similar::TextDiff::from_lines(&committed, &fresh);
        let shown: String = diff
            .unified_diff()
            .context_radius(2)
            .to_string()
            .lines()
            .take(80)
            .collect::<Vec<_>>()
            .join("\n");
        panic!(
            "asterisk-log-formats.json is stale; regenerate with python3 scripts/census.py {repo} --out asterisk-log-formats.json\n{shown}"
        );
    }
}

fn recogniser() -> Recogniser {
    Recogniser::with_time_context(RecogniseOptions::default(), TimeContext::utc(NOW))
}

/// The frames Asterisk (file channel of every era, console/plain, syslog, journald) and the
/// relays in fail2ban's samples put before a message. `{L}`: level, `{F}`: source file.
const FRAMES: &[&str] = &[
    "[Nov 24 10:11:12] {L}[1234] {F}: ",
    "[2026-11-24 10:11:12.345] {L}[1234] {F}: ",
    "[Nov 24 10:11:12] {L}[1234][C-0000002a] {F}: ",
    "[2026-11-24 10:11:12] {L} [1234] {F}: ",
    "[Nov 24 10:11:12] {L}[1234]: {F}:15459 some_func: ",
    "Nov 24 10:11:12 pbx asterisk[99]: {L}[1234]: {F}:15459 in some_func: ",
    "Nov  4 10:11:12 pbx asterisk[99]: {L}[1234][C-0000002a]: {F}:1 in f: ",
    "Nov 4 10:11:12 pbx asterisk[99]: {L}[1234]: {F}:1 in f: ",
    "2026-11-24T10:11:12+0000 pbx asterisk[99]: {L}[1234][C-0000002a]: {F}:1 f: ",
];

const V4: &str = "203.0.113.7";
const V6: &str = "2001:db8::7";

/// How the printer the census names writes the address: (the address conversion's text, the
/// port conversion's text when the format prints the port apart).
fn address_forms(printed_as: &str) -> Vec<(String, Option<&'static str>)> {
    let s = |a: &str| (a.to_owned(), None);
    match printed_as {
        "sockaddr" => vec![s(V4), s("203.0.113.7:4569"), s(V6), s("[2001:db8::7]:4569")],
        "addr" => vec![s(V4), s(V6)],
        "pj_print" => vec![
            s("203.0.113.7:5060"),
            s("[2001:db8::7]:5060"),
            s("[203.0.113.7]:5060"),
        ],
        "name_port" => vec![(V4.to_owned(), Some("5060")), (V6.to_owned(), Some("5060"))],
        other => panic!("unknown printed_as {other}"),
    }
}

/// printf `fmt` with `value(i, conv)` for the i-th conversion (`%.*s` takes one value).
fn render(fmt: &str, mut value: impl FnMut(usize, char) -> String) -> String {
    let mut out = String::new();
    let mut it = fmt.chars().peekable();
    let mut n = 0;
    while let Some(c) = it.next() {
        if c == '{' {
            // A macro the census kept by name between literals: a PJSIP string conversion.
            for c in it.by_ref() {
                if c == '}' {
                    break;
                }
            }
            out.push_str(&value(n, 's'));
            n += 1;
            continue;
        }
        if c != '%' {
            out.push(c);
            continue;
        }
        if it.peek() == Some(&'%') {
            it.next();
            out.push('%');
            continue;
        }
        let mut conv = 's';
        for c in it.by_ref() {
            if c.is_ascii_alphabetic() && !matches!(c, 'l' | 'z' | 'h' | 'j' | 't' | 'q') {
                conv = c;
                break;
            }
        }
        out.push_str(&value(n, conv));
        n += 1;
    }
    out
}

fn filler(conv: char) -> String {
    match conv {
        's' => "100".into(),
        'f' => "1.000".into(),
        'p' => "0x1".into(),
        _ => "1".into(),
    }
}

fn frame_file(path: &str) -> &str {
    path.strip_prefix("channels/")
        .or_else(|| path.strip_prefix("res/"))
        .or_else(|| path.strip_prefix("main/"))
        .unwrap_or(path)
}

fn framed(frame: &str, level: &str, file: &str, msg: &str) -> String {
    format!(
        "{}{}",
        frame.replace("{L}", level).replace("{F}", file),
        msg.trim_end_matches('\n')
    )
}

/// The reasons PJSIP's distributor writes after ` - `, and the rule each is.
const PJSIP_REASONS: &[(&str, Rule)] = &[
    ("No matching endpoint found", Rule::PjsipNoEndpoint),
    ("Failed to authenticate", Rule::PjsipAuth),
    ("Error to authenticate", Rule::PjsipAuth),
    ("Not match Endpoint ACL", Rule::PjsipAcl),
    ("Not match Endpoint Contact ACL", Rule::PjsipAcl),
];

/// Each message an attack format renders to with one address form, and the rule it must get.
fn attack_messages(e: &Value, addr: &str, port: Option<&str>) -> Vec<(String, Rule)> {
    let fmt = e["format"].as_str().unwrap();
    let conv = e["address"]["conversion"].as_u64().unwrap() as usize;
    let port_conv = e["address"]["port_conversion"].as_u64().map(|p| p as usize);
    let rules: Vec<Rule> = e["rule"]
        .as_str()
        .unwrap()
        .split('|')
        .map(|r| Rule::from_name(r).unwrap_or_else(|| panic!("no rule {r}")))
        .collect();
    let reasons: Vec<(&str, Rule)> = if fmt.contains(") - %s") {
        PJSIP_REASONS.to_vec()
    } else if fmt.contains("' - %s") {
        vec![("Wrong password", rules[0])]
    } else {
        vec![("", rules[0])]
    };
    // The conversion right after ` - ` is the reason.
    let reason_conv = fmt
        .find(" - %s")
        .map(|p| fmt[..p].matches('%').count() - fmt[..p].matches("%%").count() * 2);
    reasons
        .into_iter()
        .map(|(reason, rule)| {
            let msg = render(fmt, |i, c| {
                if i == conv {
                    addr.to_owned()
                } else if Some(i) == port_conv {
                    port.unwrap().to_owned()
                } else if Some(i) == reason_conv {
                    reason.to_owned()
                } else if fmt.contains(" (%s:%s") && i == conv - 1 {
                    "UDP".to_owned()
                } else {
                    filler(c)
                }
            });
            (msg, rule)
        })
        .collect()
}

/// Security events as res_security_log writes them, per service: PJSIP's and AMI's
/// RemoteAddress is the packet's or connection's source; chan_sip's is the Via maddr.
fn security_events(ip: &str) -> Vec<(String, bool)> {
    let remote = if ip.contains(':') {
        format!("IPV6/UDP/[{ip}]/5060")
    } else {
        format!("IPV4/UDP/{ip}/5060")
    };
    let mut v = vec![];
    for ev in [
        "InvalidPassword",
        "ChallengeResponseFailed",
        "InvalidAccountID",
        "FailedACL",
        "AuthMethodNotAllowed",
    ] {
        for (service, blamed) in [("PJSIP", true), ("AMI", true), ("SIP", false)] {
            v.push((
                format!(
                    "SecurityEvent=\"{ev}\",EventTV=\"2026-11-24T10:11:12.000+0000\",Severity=\"Error\",Service=\"{service}\",EventVersion=\"1\",AccountID=\"100\",SessionID=\"0x7f\",LocalAddress=\"IPV4/UDP/192.0.2.1/5060\",RemoteAddress=\"{remote}\""
                ),
                blamed,
            ));
        }
    }
    v
}

#[test]
fn every_attack_format_of_every_release_is_blamed_on_asterisks_address_in_every_frame() {
    let rec = recogniser();
    let census = census();
    let mut checked = 0;
    for e in census["formats"].as_array().unwrap() {
        if e["class"] != "attack" || e["blamed"] != true {
            continue;
        }
        let level = e["level"].as_str().unwrap();
        let file = frame_file(e["files"][0].as_str().unwrap());
        let printed_as = e["address"]["printed_as"].as_str().unwrap();
        let mut cases: Vec<(String, Option<Rule>, &str)> = vec![];
        if printed_as == "security" {
            for ip in [V4, V6] {
                for (msg, blamed) in security_events(ip) {
                    cases.push((msg, blamed.then_some(Rule::SecurityEvent), ip));
                }
            }
        } else {
            for (addr, port) in address_forms(printed_as) {
                let ip = if addr.contains("2001:") { V6 } else { V4 };
                for (msg, rule) in attack_messages(e, &addr, port) {
                    cases.push((msg, Some(rule), ip));
                }
            }
        }
        for (msg, rule, ip) in cases {
            for frame in FRAMES {
                let line = framed(frame, level, file, &msg);
                let got = rec.recognise(line.as_bytes());
                match rule {
                    Some(rule) => {
                        let want: IpAddr = ip.parse().unwrap();
                        assert!(
                            matches!(got, Recognition::Failure { rule: r, addr, .. } if r == rule && addr == want),
                            "{line}\n  want {rule} {want}, got {got:?}"
                        );
                    }
                    None => assert!(
                        matches!(got, Recognition::NoAddress { .. }),
                        "{line}\n  want no address, got {got:?}"
                    ),
                }
                checked += 1;
            }
        }
    }
    eprintln!("{checked} rendered attack lines checked");
    assert!(checked > 1000, "{checked}");
}

#[test]
fn no_other_format_is_ever_blamed() {
    let rec = recogniser();
    let census = census();
    let mut checked = 0;
    for e in census["formats"].as_array().unwrap() {
        if e["class"] == "attack" && e["blamed"] == true {
            continue;
        }
        assert_ne!(e["class"], "unclassified", "{e}");
        let level = e["level"].as_str().unwrap();
        let fmt = e["format"].as_str().unwrap();
        for file in e["files"].as_array().unwrap() {
            let file = frame_file(file.as_str().unwrap());
            // Every string field an address, in every form: whatever Asterisk puts there.
            for addr in [V4, "203.0.113.7:5060", V6, "[2001:db8::7]:5060"] {
                let msg = render(fmt, |_, c| if c == 's' { addr.into() } else { filler(c) });
                for frame in FRAMES {
                    let line = framed(frame, level, file, &msg);
                    let got = rec.recognise(line.as_bytes());
                    assert!(
                        !matches!(got, Recognition::Failure { .. }),
                        "{line}\n  {} must never be blamed: {got:?}",
                        e["note"]
                    );
                    checked += 1;
                }
            }
        }
    }
    eprintln!("{checked} rendered lines of formats that are not attacks, or refused, checked");
}

const FAIL2BAN_LOG: &str = "/usr/lib/python3/dist-packages/fail2ban/tests/files/logs/asterisk";

/// Lines of fail2ban's annotated asterisk log that astpatch refuses on purpose, with the
/// reason; README.md ("fail2ban's test log") lists each. Matched by a piece of the line.
const FAIL2BAN_REFUSED: &[(&str, &str)] = &[
    (
        "Service=\"SIP\"",
        "chan_sip's security events take RemoteAddress from the Via header's maddr=, which the sender chooses",
    ),
    (
        "SessionID=\"\",LocalAddress=\"IPV4/UDP/127.0.0.1/5060\",RemoteAddress=\"IPV4/UDP/5.6.7.8/1111\"\"",
        "a SessionID holding a second RemoteAddress: two candidates, so nobody can tell which Asterisk wrote",
    ),
    (
        "hacking attempt detected",
        "no Asterisk release writes this (it is not in the census of every tag)",
    ),
    (
        "Rejecting unknown SIP connection from",
        "FreePBX dialplan Log() text, which any dialplan can write: opt-in, dialplan_rejections = true",
    ),
];

struct Fail2banLine {
    lineno: usize,
    line: String,
    host: IpAddr,
}

/// Each log line of fail2ban's file with the host its failJSON names. Journal lines (after
/// `filterOptions … "logtype": "journal"`) get the header `journalctl -o short-iso` writes.
fn fail2ban_lines(text: &str) -> Vec<Fail2banLine> {
    let mut out = vec![];
    let mut host: Option<IpAddr> = None;
    let mut prefix = String::new();
    for (i, l) in text.lines().enumerate() {
        if let Some(opts) = l.strip_prefix("# filterOptions: ") {
            let v: Value = serde_json::from_str(opts).unwrap();
            if v[0]["logtype"] == "journal" {
                prefix = format!(
                    "2026-11-24T10:11:12+0000 {}",
                    v[0]["test.prefix-line"].as_str().unwrap_or("")
                );
            }
            continue;
        }
        if let Some(j) = l.strip_prefix("# failJSON: ") {
            let v: Value = serde_json::from_str(j).unwrap();
            host = (v["match"] == true).then(|| v["host"].as_str().unwrap().parse().unwrap());
            continue;
        }
        if l.starts_with('#') || l.trim().is_empty() {
            continue;
        }
        if let Some(h) = host.take() {
            out.push(Fail2banLine {
                lineno: i + 1,
                line: format!("{prefix}{l}"),
                host: h,
            });
        }
    }
    out
}

#[test]
fn fail2ban_test_log_is_blamed_on_its_hosts_except_the_listed_refusals() {
    let Ok(text) = std::fs::read_to_string(FAIL2BAN_LOG) else {
        eprintln!("SKIP fail2ban_test_log…: fail2ban is not installed ({FAIL2BAN_LOG})");
        return;
    };
    let lines = fail2ban_lines(&text);
    assert!(lines.len() >= 40, "{} annotated lines", lines.len());
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let mut dialplan = recogniser();
    dialplan.set_dialplan_rejections(true);
    let (mut blamed, mut refused) = (0, 0);
    for opt_in in [false, true] {
        let rec = if opt_in { &dialplan } else { &recogniser() };
        for f in &lines {
            let got = rec.recognise(f.line.as_bytes());
            let refusal = FAIL2BAN_REFUSED
                .iter()
                .find(|(p, _)| f.line.contains(p))
                .filter(|(p, _)| !(opt_in && p.starts_with("Rejecting unknown")));
            match (refusal, got) {
                (None, Recognition::Failure { addr, .. }) => {
                    assert_eq!(addr, f.host, "fail2ban asterisk:{}: {}", f.lineno, f.line);
                    blamed += !opt_in as usize;
                }
                (None, got) => panic!(
                    "fail2ban asterisk:{}: not blamed on {}: {got:?}\n{}",
                    f.lineno, f.host, f.line
                ),
                (Some((p, why)), got) => {
                    assert!(
                        !matches!(got, Recognition::Failure { .. }),
                        "fail2ban asterisk:{}: refused ({why}) but blamed: {got:?}",
                        f.lineno
                    );
                    assert!(
                        readme.contains(why),
                        "README.md must list the refusal of `{p}`: {why}"
                    );
                    refused += !opt_in as usize;
                }
            }
        }
    }
    eprintln!(
        "fail2ban's asterisk test log: {blamed} of {} lines blamed on their host, {refused} refused",
        lines.len()
    );
}
