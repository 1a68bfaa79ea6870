//! `ban`, `unban` and `status` without the printing: the fail2ban-client of astpatch. They work
//! through the state store (under its lock) whether or not the watcher runs: the change is
//! recorded durably first, then applied to the firewall directly; a running watcher picks the
//! record up from the journal (so it expires the ban on time and does not re-add an unban).
use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;
use serde::Serialize;

use crate::ban::policy;
use crate::ban::state::{self, Ban, State};
use crate::error::{Error, Result};
use crate::firewall::{self, Backend, Firewall, SystemRunner};
use crate::settings::Settings;

/// The backend in use: the one asked for on the command line, else the running watcher's, else
/// the settings'.
pub fn backend(settings: &Settings, asked: Option<Backend>) -> Backend {
    asked.unwrap_or_else(|| {
        state::read_pid_file(&settings.state_dir)
            .filter(|_| state::watcher_running(&settings.state_dir))
            .map(|p| p.backend)
            .unwrap_or(settings.backend)
    })
}

/// The firewall of [`backend`], run on this host.
pub fn open_firewall(settings: &Settings, asked: Option<Backend>) -> Box<dyn Firewall> {
    firewall::for_backend(backend(settings, asked), Box::new(SystemRunner::host()))
}

/// Ban `net` now: refused targets and an unusable firewall change nothing; otherwise the ban is
/// recorded, then put into the firewall. Returns how long it lasts.
pub fn ban(
    settings: &Settings,
    fw: &mut dyn Firewall,
    net: IpNet,
    ban_for: Option<Duration>,
    local: &[std::net::IpAddr],
    now: i64,
) -> Result<Duration> {
    policy::check_bannable(&net, settings, local)?;
    if net.addr().is_ipv6() && !fw.ipv6() {
        return Err(firewall::ipv6::refuse(&net));
    }
    // The firewall must be usable before anything is recorded (a missing tool or module is
    // reported here, and nothing changes).
    fw.ensure()?;
    let mut st = State::open(&settings.state_dir)?;
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
    Ok(len)
}

/// What `unban ADDR` did.
pub enum Unbanned {
    /// Our own ban, lifted; with what the operator should know about the fleet (our pushed
    /// decision deleted or not, a fleet ban still holding the address).
    Local { notes: Vec<String> },
    /// Not ours: a fleet ban, lifted on this PBX only (the message says how to lift it
    /// everywhere).
    Fleet(String),
}

/// Lift the ban on `net`. Without a state directory there is nothing recorded, and none is
/// created: only the firewall (and the fleet's bans) are asked.
pub fn unban(settings: &Settings, fw: &mut dyn Firewall, net: IpNet, now: i64) -> Result<Unbanned> {
    let has_state = settings.state_dir.is_dir();
    let mut st = if has_state {
        Some(State::open(&settings.state_dir)?)
    } else {
        None
    };
    let known = st.as_ref().is_some_and(|s| s.get(&net).is_some());
    let in_kernel = fw.list().map(|l| l.contains(&net)).unwrap_or(false);
    let watcher = state::watcher_running(&settings.state_dir);
    if !known && !in_kernel {
        // Not banned by us: perhaps by the fleet (kept apart; lifted here only).
        if let Some(msg) =
            crate::fleet::unban::lift_fleet_ban(settings, fw.name(), &net, watcher, now)?
        {
            return Ok(Unbanned::Fleet(msg));
        }
        return Err(Error::nothing_to_do(
            format!("{net} is not banned"),
            Some("`astpatch status` lists the current bans"),
        ));
    }
    // Asked before our own decision is deleted (which it must not count as the fleet's).
    let fleet_holds = crate::fleet::unban::still_held(settings, &net, now);
    if let Some(st) = st.as_mut() {
        st.record_unban(net, "manual", now)?;
    }
    fw.unban(net)?;
    let mut notes: Vec<String> = crate::fleet::unban::after_local_unban(settings, &net, watcher)
        .into_iter()
        .collect();
    notes.extend(fleet_holds);
    Ok(Unbanned::Local { notes })
}

/// Lift every ban; returns how many were active. Our firewall objects stay, empty.
pub fn unban_all(settings: &Settings, fw: &mut dyn Firewall, now: i64) -> Result<usize> {
    let mut n = 0;
    if settings.state_dir.is_dir() {
        let mut st = State::open(&settings.state_dir)?;
        n = st.active_bans(now).len();
        st.record_unban_all(now)?;
    }
    fw.restore(&[])?;
    Ok(n)
}

/// What `unban --all --purge` did with one backend.
pub enum Purged {
    ToolMissing(&'static str),
    Removed,
}

/// `unban --all --purge`: every ban lifted and every firewall object astpatch made, of every
/// backend, removed (before an uninstall). A running watcher would put them back at its next
/// check, so it must be stopped first.
/// What `unban --all --purge` removed: per backend, and the fleet's own objects (its table,
/// sets and chain).
pub struct PurgeReport {
    pub backends: Vec<(Backend, Purged)>,
    pub fleet: Vec<String>,
}

pub fn purge(settings: &Settings, now: i64) -> Result<PurgeReport> {
    if state::watcher_running(&settings.state_dir) {
        return Err(Error::environment(
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
        st.record_unban_all(now)?;
    }
    let mut out = Vec::new();
    for b in [Backend::Iptables, Backend::Ipset, Backend::Nftables] {
        let tool = match b {
            Backend::Iptables => "iptables",
            Backend::Ipset => "ipset",
            Backend::Nftables => "nft",
        };
        if !firewall::tool_installed(tool) {
            out.push((b, Purged::ToolMissing(tool)));
            continue;
        }
        firewall::for_backend(b, Box::new(SystemRunner::host())).teardown()?;
        out.push((b, Purged::Removed));
    }
    let fleet = crate::fleet::enforce::teardown(&SystemRunner::host())?;
    Ok(PurgeReport {
        backends: out,
        fleet,
    })
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
    /// Failures right after a line whose sender could have written them (a newline in a raw
    /// field): not believed.
    pub unproven_lines: Option<u64>,
    /// The AMI link, while the watcher runs with `[ami]`.
    pub ami: Option<String>,
    /// The CrowdSec link and the fleet's bans, when `[crowdsec]` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<crate::fleet::status::FleetStatus>,
    pub currently_banned: usize,
    pub total_banned: u64,
    pub banned: Vec<BanInfo>,
    /// Why the running watcher cannot write its ban journal (a full disk…), and how many
    /// records it holds in memory only meanwhile. None when it can (or is not running).
    pub journal_error: Option<String>,
    pub unwritten_records: usize,
    /// Followed logs the running watcher cannot read.
    pub unreadable_logs: Vec<state::Unreadable>,
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
    let health = if running {
        state::read_health(dir)
    } else {
        None
    }
    .unwrap_or_default();
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
        unproven_lines: stats.as_ref().map(|s| s.unproven),
        ami: stats.as_ref().and_then(|s| s.ami.clone()),
        fleet: crate::fleet::status::report(settings, now),
        currently_banned: banned.len(),
        total_banned: st.total_banned(),
        banned,
        journal_error: health.journal_error,
        unwritten_records: health.unwritten,
        unreadable_logs: health.unreadable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::Backend;
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
