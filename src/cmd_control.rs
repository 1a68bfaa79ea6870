//! `astpatch ban`, `unban` and `status`: the fail2ban-client of astpatch. They work through
//! the state store (under its lock) whether or not the watcher runs: the change is recorded
//! durably first, then applied to the firewall directly; a running watcher picks the record
//! up from the journal (so it expires the ban on time and does not re-add an unban).
use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;
use serde::Serialize;

use crate::config::{Backend, Settings};
use crate::error::Result;
use crate::exit_codes;
use crate::firewall::{self, Firewall, SystemRunner, now_secs};
use crate::output::Style;
use crate::policy;
use crate::state::{self, Ban, State};

/// The backend in use: the running watcher's, else the settings'.
fn backend(settings: &Settings) -> Backend {
    state::read_pid_file(&settings.state_dir)
        .filter(|_| state::watcher_running(&settings.state_dir))
        .map(|p| p.backend)
        .unwrap_or(settings.backend)
}

fn open_firewall(settings: &Settings) -> Box<dyn Firewall> {
    firewall::for_backend(backend(settings), Box::new(SystemRunner::host()))
}

pub fn run_ban(
    settings: &Settings,
    target: &str,
    ban_for: Option<Duration>,
    style: Style,
) -> Result<u8> {
    let net = policy::parse_target(target)?;
    policy::check_bannable(&net, settings, &policy::local_addresses())?;
    // The firewall must be usable before anything is recorded (a missing tool or module is
    // reported here, and nothing changes).
    let mut fw = open_firewall(settings);
    if net.addr().is_ipv6() && !fw.ipv6() {
        return Err(firewall::ipv6::refuse(&net));
    }
    fw.ensure()?;
    let mut st = State::open(&settings.state_dir)?;
    let now = now_secs();
    let len = ban_for.unwrap_or_else(|| policy::ban_length(settings, st.previous_bans(&net)));
    let until = now + len.as_secs() as i64;
    st.record_ban(Ban {
        net,
        until: Some(until),
        reason: "manual".into(),
        failures: 0,
        banned_at: now,
    })?;
    fw.ban(net, Some(until))?;
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
            if state::watcher_running(&settings.state_dir) {
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
    target: Option<&str>,
    all: bool,
    purge: bool,
    style: Style,
) -> Result<u8> {
    if purge {
        return run_purge(settings, style);
    }
    let mut st = State::open(&settings.state_dir)?;
    let mut fw = open_firewall(settings);
    let now = now_secs();
    if all {
        let n = st.active_bans(now).len();
        st.record_unban_all(now)?;
        // One batch that leaves our objects in place and empty.
        fw.restore(&[])?;
        println!(
            "{} all {n} bans (backend {})",
            style.ok("unbanned"),
            fw.name()
        );
        return Ok(exit_codes::SUCCESS);
    }
    let target = target.expect("clap requires ADDR or --all");
    let net = policy::parse_target(target)?;
    let known = st.get(&net).is_some();
    let in_kernel = fw.list().map(|l| l.contains(&net)).unwrap_or(false);
    let watcher = state::watcher_running(&settings.state_dir);
    if !known && !in_kernel {
        // Not banned here: perhaps by the fleet (kept apart; lifted here only).
        if let Some(msg) =
            crate::fleet::unban::lift_fleet_ban(settings, backend(settings), &net, watcher, now)?
        {
            println!("{} {msg}", style.ok("unbanned"));
            return Ok(exit_codes::SUCCESS);
        }
        return Err(crate::error::Error::nothing_to_do(
            format!("{net} is not banned"),
            Some("`astpatch status` lists the current bans"),
        ));
    }
    // Asked before our own decision is deleted (which it must not count as the fleet's).
    let fleet_holds = crate::fleet::unban::still_held(settings, &net, now);
    st.record_unban(net, "manual", now)?;
    fw.unban(net)?;
    println!("{} {net}", style.ok("unbanned"));
    if let Some(note) = crate::fleet::unban::after_local_unban(settings, &net, watcher) {
        println!("{note}");
    }
    if let Some(note) = fleet_holds {
        println!("{note}");
    }
    Ok(exit_codes::SUCCESS)
}

/// `unban --all --purge`: every ban lifted and every firewall object astpatch made, of every
/// backend, removed (before an uninstall). A running watcher would put them back at its next
/// check, so it must be stopped first.
fn run_purge(settings: &Settings, style: Style) -> Result<u8> {
    if state::watcher_running(&settings.state_dir) {
        return Err(crate::error::Error::environment(
            format!(
                "a watcher uses {} and would put the firewall objects back",
                settings.state_dir.display()
            ),
            Some(
                "stop it first: systemctl stop astpatch (or end `astpatch watch`), then run this again",
            ),
        ));
    }
    if settings.state_dir.is_dir() {
        let mut st = State::open(&settings.state_dir)?;
        st.record_unban_all(now_secs())?;
    }
    for b in [Backend::Iptables, Backend::Ipset, Backend::Nftables] {
        let tool = match b {
            Backend::Iptables => "iptables",
            Backend::Ipset => "ipset",
            Backend::Nftables => "nft",
        };
        if !firewall::tool_installed(tool) {
            println!("{b}: {tool} is not installed, nothing to remove");
            continue;
        }
        firewall::for_backend(b, Box::new(SystemRunner::host())).teardown()?;
        println!("{} {b}: astpatch's objects removed", style.ok("purged"));
    }
    for o in crate::fleet::enforce::teardown(&SystemRunner::host())? {
        println!("{} fleet: {o} removed", style.ok("purged"));
    }
    Ok(exit_codes::SUCCESS)
}

#[derive(Debug, Serialize)]
pub struct WatcherInfo {
    pub running: bool,
    #[serde(flatten)]
    pub pid_file: Option<state::PidFile>,
}

#[derive(Debug, Serialize)]
pub struct BanInfo {
    #[serde(flatten)]
    pub ban: Ban,
    /// Seconds left; None = permanent.
    pub expires_in: Option<i64>,
    /// Whether the firewall holds it right now (None when the firewall could not be read).
    pub in_kernel: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub watcher: WatcherInfo,
    pub backend: Backend,
    /// Whether INPUT reaches astpatch's objects (None when the firewall could not be read).
    pub hooked: Option<bool>,
    /// Only known while the watcher runs.
    pub currently_failing: Option<usize>,
    pub total_failed: Option<u64>,
    /// Log lines not believed since the watcher started: written by a remote party to pass for
    /// Asterisk's (forged), or cut by Asterisk's logger (glued, truncated). Only known while
    /// the watcher runs.
    pub forged_lines: Option<u64>,
    pub glued_lines: Option<u64>,
    pub truncated_lines: Option<u64>,
    pub currently_banned: usize,
    pub total_banned: u64,
    pub banned: Vec<BanInfo>,
    /// The CrowdSec link and the fleet's bans, when `[crowdsec]` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<crate::fleet::status::FleetStatus>,
}

pub fn status(settings: &Settings, fw: &dyn Firewall, now: i64) -> Result<Status> {
    let dir: &Path = &settings.state_dir;
    let running = state::watcher_running(dir);
    let pid_file = state::read_pid_file(dir).filter(|_| running);
    let stats = if running {
        state::read_stats(dir)
    } else {
        None
    };
    let st = State::load(dir)?;
    let kernel = fw.list().ok();
    let banned: Vec<BanInfo> = st
        .active_bans(now)
        .into_iter()
        .map(|b| BanInfo {
            expires_in: b.until.map(|u| u - now),
            // An IPv6 ban kept from before IPv6 was switched off is not held, nor missing.
            in_kernel: kernel
                .as_ref()
                .filter(|_| fw.ipv6() || b.net.addr().is_ipv4())
                .map(|k: &Vec<IpNet>| k.contains(&b.net)),
            ban: b,
        })
        .collect();
    Ok(Status {
        watcher: WatcherInfo { running, pid_file },
        backend: fw.name(),
        hooked: fw.hooked().ok(),
        currently_failing: stats.as_ref().map(|s| s.currently_failing),
        total_failed: stats.as_ref().map(|s| s.total_failed),
        forged_lines: stats.as_ref().map(|s| s.forged),
        glued_lines: stats.as_ref().map(|s| s.glued),
        truncated_lines: stats.as_ref().map(|s| s.truncated),
        currently_banned: banned.len(),
        total_banned: st.total_banned(),
        banned,
        fleet: crate::fleet::status::report(settings, now),
    })
}

pub fn run_status(settings: &Settings, json: bool, style: Style) -> Result<u8> {
    let fw = open_firewall(settings);
    let s = status(settings, &*fw, now_secs())?;
    if json {
        crate::output::print_json(&s);
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
            "{f} forged, {} glued, {} truncated log lines (never blamed on anyone)",
            s.glued_lines.unwrap_or(0),
            s.truncated_lines.unwrap_or(0)
        )))
    );
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
        crate::fleet::status::print(f, now_secs(), style);
    }
    Ok(exit_codes::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::fake::Recorder;

    #[test]
    fn without_ipv6_an_old_ipv6_ban_is_not_reported_missing() {
        let d = tempfile::tempdir().unwrap();
        let settings = Settings {
            state_dir: d.path().to_path_buf(),
            ..Settings::default()
        };
        let mut st = State::open(d.path()).unwrap();
        for net in ["2001:db8::66/128", "192.0.2.9/32"] {
            st.record_ban(Ban {
                net: net.parse().unwrap(),
                until: Some(10_000),
                reason: "test".into(),
                failures: 3,
                banned_at: 0,
            })
            .unwrap();
        }
        drop(st);
        let fw =
            firewall::for_backend_with(Backend::Iptables, Box::new(Recorder::default()), false);
        let s = status(&settings, &*fw, 100).unwrap();
        let kernel: Vec<(String, Option<bool>)> = s
            .banned
            .iter()
            .map(|b| (b.ban.net.to_string(), b.in_kernel))
            .collect();
        assert!(
            kernel.contains(&("2001:db8::66/128".into(), None)),
            "{kernel:?}"
        );
        assert!(
            kernel.contains(&("192.0.2.9/32".into(), Some(false))),
            "{kernel:?}"
        );
    }
}
