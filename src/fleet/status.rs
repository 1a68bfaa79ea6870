//! The fleet's part of `astpatch status`: the link as the fleet thread last wrote it, and the
//! fleet's bans held here, each with its origin (kept apart from the local bans).
use std::time::Duration;

use ipnet::IpNet;
use serde::Serialize;

use super::link::Link;
use super::pull::Fleet;
use crate::settings::Settings;

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
    let local = crate::firewall::host::local_addresses();
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
            refused: crate::ban::policy::check_bannable(&h.net, settings, &local)
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

pub fn ago(t: Option<i64>, now: i64) -> String {
    match t {
        Some(t) => format!(
            "{} ago",
            crate::duration::format(Duration::from_secs(now.saturating_sub(t).max(0) as u64))
        ),
        None => "never".into(),
    }
}
