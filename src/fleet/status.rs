//! The fleet's part of `astpatch status`: the link as the fleet thread last wrote it, and the
//! fleet's bans held here, each with its origin (kept apart from the local bans).
use std::time::Duration;

use ipnet::IpNet;
use serde::Serialize;

use super::link::Link;
use super::pull::Fleet;
use crate::config::Settings;
use crate::output::Style;

#[derive(Debug, Serialize)]
pub struct FleetBan {
    pub net: IpNet,
    pub expires_in: i64,
    pub origin: String,
    pub scenario: String,
    /// Lifted here by `astpatch unban` (the decision stands elsewhere).
    pub lifted: bool,
    /// Why it is never enforced here (ignoreip, this host's address, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct FleetStatus {
    pub url: String,
    /// None until the watcher's fleet thread wrote it.
    pub link: Option<Link>,
    pub bans: Vec<FleetBan>,
}

pub fn report(settings: &Settings, now: i64) -> Option<FleetStatus> {
    let cs = settings.crowdsec.as_ref()?;
    let dir = super::dir(&settings.state_dir);
    let mut fleet = Fleet::load(&dir).unwrap_or_default();
    fleet.lifted = super::pull::load_lifted(&dir);
    let local = crate::policy::local_addresses();
    let mut bans: Vec<FleetBan> = fleet
        .held
        .values()
        .filter(|h| h.until > now)
        .map(|h| FleetBan {
            net: h.net,
            expires_in: h.until - now,
            origin: h.origin.clone(),
            scenario: h.scenario.clone(),
            lifted: fleet.lifted.contains_key(&h.net),
            refused: crate::policy::check_bannable(&h.net, settings, &local)
                .err()
                .map(|e| e.to_string()),
        })
        .collect();
    bans.sort_by_key(|b| b.net);
    Some(FleetStatus {
        url: cs.base_url().to_owned(),
        link: super::link::read(&dir),
        bans,
    })
}

fn ago(t: Option<i64>, now: i64) -> String {
    match t {
        Some(t) => format!(
            "{} ago",
            crate::duration::format(Duration::from_secs(now.saturating_sub(t).max(0) as u64))
        ),
        None => "never".into(),
    }
}

pub fn print(f: &FleetStatus, now: i64, style: Style) {
    match &f.link {
        None => println!(
            "Fleet (CrowdSec):   {} (no link yet: the watcher with --ban starts it)",
            f.url
        ),
        Some(l) => {
            println!(
                "Fleet (CrowdSec):   {} (push {}, pull {}); last pull {}, last push {}",
                f.url,
                if l.push { "on" } else { "off" },
                if l.pull { "on" } else { "off" },
                ago(l.last_pull, now),
                ago(l.last_push, now)
            );
            println!(
                "Fleet decisions:    {} held, {} enforced here, {} refused (protected addresses)",
                l.decisions_held, l.enforced, l.refused
            );
            println!(
                "Fleet pushes:       {} queued, {} unbans queued",
                l.pushes_queued, l.deletes_queued
            );
            match &l.last_error {
                Some(e) => println!(
                    "Fleet last error:   {} ({})",
                    style.bad(e),
                    ago(l.last_error_at, now)
                ),
                None => println!("Fleet last error:   {}", style.ok("none")),
            }
        }
    }
    println!("Fleet bans ({}):", f.bans.len());
    for b in &f.bans {
        println!(
            "  {:<24} {:<14} {} ({}){}",
            b.net.to_string(),
            format!(
                "{} left",
                crate::duration::format(Duration::from_secs(b.expires_in.max(0) as u64))
            ),
            b.origin,
            b.scenario,
            match (&b.refused, b.lifted) {
                (Some(why), _) => format!("  not enforced: {why}"),
                (None, true) => "  lifted here".into(),
                (None, false) => String::new(),
            }
        );
    }
}
