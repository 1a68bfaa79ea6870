//! Presentation of `astpatch scan`: the `fail2ban-regex` of astpatch.
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use crate::ban::scan::{ScanReport, Scanner};
use crate::ban::trust::TailTrust;
use crate::cli::output::{Style, print_json};
use crate::error::Result;
use crate::exit_codes;
use crate::logs::frame::format_utc;
use crate::logs::read::Source;
use crate::logs::recognise::Recogniser;
use crate::settings::Settings;

/// Addresses listed in the text table; `--json` lists all.
const TEXT_ADDRESSES: usize = 50;

pub fn run(files: &[PathBuf], settings: &Settings, json: bool, style: Style) -> Result<u8> {
    // Open everything first: a wrong argument is reported before minutes of scanning.
    let mut inputs = Vec::with_capacity(files.len());
    for f in files {
        let src = Source::from_arg(f);
        let reader = src.open()?;
        inputs.push((src.name(), reader));
    }
    let trust = crate::ban::trust::decide_live(settings);
    let mut rec = Recogniser::new(trust.options.clone());
    rec.set_syslog_idents(&settings.syslog_ident);
    rec.set_dialplan_rejections(settings.dialplan_rejections);
    let mut scanner =
        Scanner::new(&rec, settings).with_local(crate::firewall::host::local_addresses());
    for (name, reader) in inputs {
        scanner.read(reader, &name);
    }
    let report = scanner.finish();
    for w in &report.warnings {
        eprintln!("{} {w}", style.warn("warning:"));
    }
    if json {
        print_json(&report);
    } else {
        print!("{}", render_text(&report, &trust, style));
    }
    Ok(exit_codes::SUCCESS)
}

/// The human-readable report (also pinned by snapshot tests).
pub fn render_text(r: &ScanReport, trust: &TailTrust, style: Style) -> String {
    let mut o = String::new();
    header(&mut o, r, trust, style);
    rules_table(&mut o, r);
    addresses_table(&mut o, r, style);
    would_ban(&mut o, r);
    chan_sip_notes(&mut o, r);
    not_believed(&mut o, r);
    evasion(&mut o, r);
    o
}

/// The summary: what was read, the window, the settings and the trust in force.
fn header(o: &mut String, r: &ScanReport, trust: &TailTrust, style: Style) {
    let files = if r.files.len() == 1 {
        r.files[0].clone()
    } else {
        format!("{} files", r.files.len())
    };
    let _ = writeln!(
        o,
        "{} {files}: {}, {}",
        style.bold("scanned"),
        plural(r.lines, "line"),
        plural(r.matched, "failure line")
    );
    if r.matched > 0 {
        let _ = writeln!(
            o,
            "  {} with an address, {} without one, {} ambiguous, {} forged (the last three are never banned)",
            r.with_address, r.no_address, r.ambiguous, r.forged
        );
    }
    if let Some(w) = &r.window {
        let _ = writeln!(
            o,
            "window: {} to {} UTC",
            format_utc(w.first),
            format_utc(w.last)
        );
    }
    let _ = writeln!(
        o,
        "settings: maxretry {} within {}",
        r.maxretry,
        crate::duration::format(Duration::from_secs(r.findtime_secs)),
    );
    let _ = writeln!(o, "{}", trust.line());
}

/// Failure lines per rule, by what they name.
fn rules_table(o: &mut String, r: &ScanReport) {
    if !r.rules.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "{:<24}{:>13}{:>12}{:>11}{:>8}",
            "RULE", "WITH ADDRESS", "NO ADDRESS", "AMBIGUOUS", "FORGED"
        );
        for rc in &r.rules {
            let _ = writeln!(
                o,
                "{:<24}{:>13}{:>12}{:>11}{:>8}",
                rc.rule, rc.failures, rc.no_address, rc.ambiguous, rc.forged
            );
        }
    }
}

/// The addresses blamed, the first TEXT_ADDRESSES of them.
fn addresses_table(o: &mut String, r: &ScanReport, style: Style) {
    if !r.addresses.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "{:<40}{:>9}  {:<20} {:<20} WOULD BAN",
            "ADDRESS", "FAILURES", "FIRST (UTC)", "LAST (UTC)"
        );
        for a in r.addresses.iter().take(TEXT_ADDRESSES) {
            let t = |x: Option<i64>| x.map_or("-".to_owned(), format_utc);
            let verdict = if a.would_ban {
                style.bad("yes")
            } else if a.ignored {
                "no (never banned)".to_owned()
            } else {
                "no".to_owned()
            };
            let _ = writeln!(
                o,
                "{:<40}{:>9}  {:<20} {:<20} {verdict}",
                a.address,
                a.failures,
                t(a.first),
                t(a.last)
            );
        }
        if r.addresses.len() > TEXT_ADDRESSES {
            let _ = writeln!(
                o,
                "... and {} more addresses (--json lists all)",
                r.addresses.len() - TEXT_ADDRESSES
            );
        }
    }
}

/// Whom the watcher would ban.
fn would_ban(o: &mut String, r: &ScanReport) {
    let banned: Vec<&str> = r
        .addresses
        .iter()
        .filter(|a| a.would_ban)
        .map(|a| a.address.as_str())
        .collect();
    let _ = writeln!(o);
    match banned.len() {
        0 => {
            let _ = writeln!(o, "would ban no address");
        }
        n => {
            let shown: Vec<&str> = banned.iter().take(10).copied().collect();
            let more = if n > 10 {
                format!(" and {} more", n - 10)
            } else {
                String::new()
            };
            let _ = writeln!(
                o,
                "would ban {n} address{}: {}{more}",
                if n == 1 { "" } else { "es" },
                shown.join(", ")
            );
        }
    }
}

/// chan_sip lines without a believable address, and tags no build has.
fn chan_sip_notes(o: &mut String, r: &ScanReport) {
    let chan_sip_blind: u64 = r
        .rules
        .iter()
        .filter(|rc| rc.rule.starts_with("chan-sip-"))
        .map(|rc| rc.no_address)
        .sum();
    if chan_sip_blind > 0 {
        let _ = writeln!(
            o,
            "note: {} name no trustworthy address: they carry no tag of a patched build, so \
             their end may be the attacker's From header. Patch, install and load the module \
             (astpatch apply --rebuild --install --reload): the lines it writes from then on are tagged and believed.",
            plural(chan_sip_blind, "chan_sip line")
        );
    }
    let tag_forged: u64 = r
        .rules
        .iter()
        .filter(|rc| rc.rule == "chan-sip-auth" || rc.rule == "chan-sip-fake-auth")
        .map(|rc| rc.forged)
        .sum();
    if tag_forged > 0 {
        let _ = writeln!(
            o,
            "note: {} carried a tag no known build has: someone shaped them to pass for the \
             patched module's (or they come from a build whose module is gone: add its tag to \
             tags = [...] in the settings). Never blamed on anyone.",
            plural(tag_forged, "chan_sip line")
        );
    }
}

/// Lines not believed, per input.
fn not_believed(o: &mut String, r: &ScanReport) {
    if r.sources.iter().any(|s| s.counts.total() > 0) {
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "{:<40}{:>8}{:>8}{:>11}{:>10}",
            "LINES NOT BELIEVED IN", "FORGED", "GLUED", "TRUNCATED", "UNPROVEN"
        );
        for s in r.sources.iter().filter(|s| s.counts.total() > 0) {
            let _ = writeln!(
                o,
                "{:<40}{:>8}{:>8}{:>11}{:>10}",
                s.file, s.counts.forged, s.counts.glued, s.counts.truncated, s.counts.unproven
            );
        }
        let _ = writeln!(
            o,
            "note: forged lines were written by a remote party to pass for Asterisk's (a newline \
             in a field Asterisk logs raw, a tag no build has, another program's syslog line); \
             glued and truncated ones were cut by Asterisk's logger at 8 KiB, so their end is \
             not Asterisk's; unproven ones are failures right after a line whose sender could \
             have written them through a newline in a field logged raw. None of them is blamed \
             on anyone."
        );
    }
}

/// Security events without a believed address, and ambiguous lines per candidate pair.
fn evasion(o: &mut String, r: &ScanReport) {
    let events_blind: u64 = r
        .rules
        .iter()
        .filter(|rc| rc.rule == "security-event")
        .map(|rc| rc.no_address)
        .sum();
    if events_blind > 0 {
        let _ = writeln!(
            o,
            "note: {} name no address astpatch believes: chan_sip's (Service=\"SIP\") take \
             RemoteAddress from the Via maddr= the sender chooses. The messages log names the \
             real source of the same attempts.",
            plural(events_blind, "security event")
        );
    }
    if r.ambiguous > 0 {
        let _ = writeln!(
            o,
            "note: {} named a second, different address inside sender-written text (a forgery \
             attempt, or a flood): such lines are never blamed on anyone.",
            plural(r.ambiguous, "failure line")
        );
    }
    if !r.ambiguous_pairs.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(o, "{:<66}{:>7}  RULES", "AMBIGUOUS: CANDIDATES", "LINES");
        for p in r.ambiguous_pairs.iter().take(TEXT_PAIRS) {
            let c = |x: &Option<String>| x.clone().unwrap_or_else(|| "(no address)".to_owned());
            let cands = match &p.candidates {
                [None, None] => "(no address: a flood of places)".to_owned(),
                [a, b] => format!("{} / {}", c(a), c(b)),
            };
            let _ = writeln!(o, "{cands:<66}{:>7}  {}", p.lines, p.rules.join(","));
        }
        if r.ambiguous_pairs.len() > TEXT_PAIRS {
            let _ = writeln!(
                o,
                "... and {} more pairs (--json lists all)",
                r.ambiguous_pairs.len() - TEXT_PAIRS
            );
        }
        let _ = writeln!(
            o,
            "note: in each pair one address is usually the sender, hiding behind an address it \
             wrote into a field; a log line cannot say which. With [ami] set, the watcher counts such \
             PJSIP and AMI attempts from their security events, which name the real source \
             (README, Security events over AMI)."
        );
    }
}

/// Candidate pairs shown in the text report.
const TEXT_PAIRS: usize = 20;

fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}
