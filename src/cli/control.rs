//! Presentation of `astpatch ban`, `unban` and `status` (the work is in [`crate::ban::control`]).
use std::time::Duration;

use crate::ban::control::{self, Purged};
use crate::ban::policy;
use crate::cli::output::Style;
use crate::clock::now_secs;
use crate::error::Result;
use crate::exit_codes;
use crate::firewall::Backend;
use crate::settings::Settings;

pub fn run_ban(
    settings: &Settings,
    backend: Option<Backend>,
    target: &str,
    ban_for: Option<Duration>,
    style: Style,
) -> Result<u8> {
    let net = policy::parse_target(target)?;
    let mut fw = control::open_firewall(settings, backend);
    let local = crate::firewall::host::local_addresses();
    let len = control::ban(settings, &mut *fw, net, ban_for, &local, now_secs())?;
    println!(
        "{} {net} for {} (backend {})",
        style.ok("banned"),
        crate::duration::format(len),
        fw.name()
    );
    if let Some(cs) = settings.crowdsec.as_ref().filter(|c| c.push) {
        // The journal is the fleet's push queue: the watcher's fleet thread sends it.
        println!(
            "fleet: the watcher pushes it to {} {}",
            cs.base_url(),
            if crate::ban::state::watcher_running(&settings.state_dir) {
                "now (or when the LAPI answers again)"
            } else {
                "when it next runs"
            }
        );
    }
    Ok(exit_codes::SUCCESS)
}

pub fn run_unban(
    settings: &Settings,
    backend: Option<Backend>,
    target: Option<&str>,
    all: bool,
    purge: bool,
    style: Style,
) -> Result<u8> {
    let now = now_secs();
    if purge {
        let report = control::purge(settings, now)?;
        for o in report.fleet {
            println!("{} fleet: {o} removed", style.ok("purged"));
        }
        for (b, done) in report.backends {
            match done {
                Purged::ToolMissing(tool) => {
                    println!("{b}: {tool} is not installed, nothing to remove")
                }
                Purged::Removed => {
                    println!("{} {b}: astpatch's objects removed", style.ok("purged"))
                }
            }
        }
        return Ok(exit_codes::SUCCESS);
    }
    let mut fw = control::open_firewall(settings, backend);
    if all {
        let n = control::unban_all(settings, &mut *fw, now)?;
        println!(
            "{} all {n} bans (backend {})",
            style.ok("unbanned"),
            fw.name()
        );
        return Ok(exit_codes::SUCCESS);
    }
    let net = policy::parse_target(target.expect("clap requires ADDR or --all"))?;
    match control::unban(settings, &mut *fw, net, now)? {
        control::Unbanned::Fleet(msg) => println!("{} {msg}", style.ok("unbanned")),
        control::Unbanned::Local { notes } => {
            println!("{} {net}", style.ok("unbanned"));
            for n in notes {
                println!("{n}");
            }
        }
    }
    Ok(exit_codes::SUCCESS)
}

pub fn run_status(
    settings: &Settings,
    backend: Option<Backend>,
    json: bool,
    style: Style,
) -> Result<u8> {
    let fw = control::open_firewall(settings, backend);
    let s = control::status(settings, &*fw, now_secs())?;
    if json {
        crate::cli::output::print_json(&s);
        return Ok(exit_codes::SUCCESS);
    }
    let opt = |v: Option<String>| v.unwrap_or_else(|| "- (watcher not running)".into());
    match &s.watcher.pid_file {
        Some(p) => println!(
            "Watcher:            {} (pid {}, backend {}, logs {})",
            style.ok("running"),
            p.pid,
            p.backend,
            p.logs
                .iter()
                .map(|l| l.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => println!("Watcher:            {}", style.warn("not running")),
    }
    match s.hooked {
        Some(true) => println!(
            "Firewall:           {} ({} objects hooked into INPUT)",
            style.ok("active"),
            s.backend
        ),
        Some(false) => println!(
            "Firewall:           {} ({} objects absent or not hooked into INPUT; `astpatch watch --ban` restores them)",
            style.bad("NOT active"),
            s.backend
        ),
        None => println!("Firewall:           unknown (cannot read it; root needed)"),
    }
    if let Some(e) = &s.journal_error {
        println!(
            "Ban journal:        {}: {e}; {} records held in memory only (the firewall still bans; a crash now loses them)",
            style.bad("NOT WRITABLE"),
            s.unwritten_records
        );
    }
    for u in &s.unreadable_logs {
        println!(
            "Unreadable log:     {} {}: {} (its failures are not counted)",
            style.bad("cannot read"),
            u.path.display(),
            u.error
        );
    }
    println!(
        "Currently failing:  {}",
        opt(s.currently_failing.map(|v| v.to_string()))
    );
    println!(
        "Total failed:       {}",
        opt(s.total_failed.map(|v| v.to_string()))
    );
    println!(
        "Not believed:       {}",
        opt(s.forged_lines.map(|f| format!(
            "{f} forged, {} glued, {} truncated, {} unproven log lines (never blamed on anyone)",
            s.glued_lines.unwrap_or(0),
            s.truncated_lines.unwrap_or(0),
            s.unproven_lines.unwrap_or(0)
        )))
    );
    if let Some(a) = &s.ami {
        println!("AMI:                {a}");
    }
    println!("Currently banned:   {}", s.currently_banned);
    println!("Total banned:       {}", s.total_banned);
    println!("Banned list ({}):", s.backend);
    for b in &s.banned {
        let left = match b.expires_in {
            Some(secs) => format!(
                "{} left",
                crate::duration::format(Duration::from_secs(secs.max(0) as u64))
            ),
            None => "permanent".into(),
        };
        let kernel = match b.in_kernel {
            Some(true) => String::new(),
            Some(false) => format!(
                "  {}",
                style.bad("NOT in the firewall (the watcher re-adds it)")
            ),
            None => String::new(),
        };
        println!(
            "  {:<24} {:<14} {}{kernel}",
            b.ban.net.to_string(),
            left,
            b.ban.reason
        );
    }
    if let Some(f) = &s.fleet {
        crate::cli::fleet_status::print_fleet(f, now_secs(), style);
    }
    Ok(exit_codes::SUCCESS)
}
