//! Push: our bans become alerts on the LAPI. The write-ahead log is the ban journal itself
//! (`state.rs`: a ban is fsynced there before the firewall is touched), so no push can be lost
//! between "banned" and "queued": what is still to push is computed, at every round, as the
//! active local bans the ledger (`fleet/pushed.json`, replaced atomically after the LAPI took
//! an alert) does not have yet. A `kill -9` at any point at worst pushes one alert twice.
use std::collections::BTreeMap;
use std::path::Path;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::client::{Alert, Event, Meta, NewDecision, Source};
use crate::ban::state::Ban;
use crate::error::{Error, Result};

pub const LEDGER: &str = "pushed.json";
/// The `origin` of our decisions (`cscli decisions list`'s Source column). CrowdSec's own
/// agents write `crowdsec`; cscli 1.4.6 lists only `crowdsec` and `cscli` decisions unless
/// given `-a`, so any other origin would hide our bans from the operator's first look. Ours
/// are told apart by their scenario (`astpatch/…`) and the machine that sent them.
pub const ORIGIN: &str = "crowdsec";
/// CrowdSec wants a duration; a ban without an end is pushed as ten years.
const FOREVER_SECS: i64 = 10 * 365 * 86_400;

/// One ban the LAPI took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pushed {
    /// Which ban of this network (a later ban of it is pushed again).
    pub banned_at: i64,
    pub until: Option<i64>,
    pub alert_id: String,
    /// Its decision ids, for a manual unban to delete; empty until learned.
    #[serde(default)]
    pub decisions: Vec<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    pub pushed: BTreeMap<IpNet, Pushed>,
}

impl Ledger {
    pub fn load(dir: &Path) -> Result<Ledger> {
        let path = dir.join(LEDGER);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                Error::input(
                    format!("{}: {e}", path.display()),
                    Some("remove the file: bans still active are then pushed again"),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ledger::default()),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(LEDGER);
        let bytes = serde_json::to_vec_pretty(self).expect("json");
        crate::atomic::write(&path, &bytes, Some(0o600)).map_err(|e| Error::io(&path, e))
    }
}

/// What a round has to do for the push side.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Work {
    /// Bans the LAPI has not taken yet.
    pub push: Vec<Ban>,
    /// Pushed bans lifted here before their time: their decisions to delete.
    pub delete: Vec<(IpNet, Vec<i64>)>,
    /// Ledger entries whose ban ran out: nothing to do but forget them.
    pub forget: Vec<IpNet>,
}

pub fn pending(active: &[Ban], ledger: &Ledger, now: i64) -> Work {
    let mut w = Work::default();
    let by_net: BTreeMap<IpNet, &Ban> = active.iter().map(|b| (b.net, b)).collect();
    for b in active {
        if ledger
            .pushed
            .get(&b.net)
            .is_none_or(|p| p.banned_at != b.banned_at)
        {
            w.push.push(b.clone());
        }
    }
    for (net, p) in &ledger.pushed {
        match by_net.get(net) {
            Some(b) if b.banned_at == p.banned_at => {}
            // Banned again since: the new ban is pushed; the old decision ends on its own.
            Some(_) => {}
            None if p.until.is_some_and(|u| u <= now) => w.forget.push(*net),
            None => w.delete.push((*net, p.decisions.clone())),
        }
    }
    w
}

/// RFC 3339 in UTC, as the LAPI writes its own times.
pub fn rfc3339(t: i64) -> String {
    format!(
        "{}Z",
        crate::logs::frame::format_utc(t).replacen(' ', "T", 1)
    )
}

/// The scenario of a ban: what `cscli alerts list` shows as its reason.
pub fn scenario(reason: &str) -> String {
    match reason {
        "manual" => "astpatch/manual".into(),
        _ => "astpatch/asterisk-auth".into(),
    }
}

/// The alert for one ban, carrying its decision for the time the ban has left.
pub fn alert_for(ban: &Ban, machine_id: &str, now: i64) -> Alert {
    let host = ban.net.prefix_len() == ban.net.max_prefix_len();
    let (scope, value) = if host {
        ("Ip", ban.net.addr().to_string())
    } else {
        ("Range", ban.net.to_string())
    };
    let left = ban.until.map_or(FOREVER_SECS, |u| (u - now).max(1));
    let scenario = scenario(&ban.reason);
    let message = if ban.reason == "manual" {
        format!("{machine_id}: astpatch ban {value} (by hand)")
    } else {
        format!(
            "{machine_id}: {} failed authentications from {value} ({}) on Asterisk",
            ban.failures, ban.reason
        )
    };
    let at = rfc3339(ban.banned_at);
    Alert {
        scenario: scenario.clone(),
        scenario_hash: String::new(),
        scenario_version: env!("CARGO_PKG_VERSION").into(),
        message,
        events_count: ban.failures.max(1) as i32,
        start_at: at.clone(),
        stop_at: at.clone(),
        capacity: 0,
        leakspeed: "0".into(),
        simulated: false,
        remediation: true,
        source: Source {
            scope: scope.into(),
            value: value.clone(),
            ip: host.then(|| value.clone()),
            range: (!host).then(|| value.clone()),
        },
        events: vec![Event {
            timestamp: at,
            meta: vec![
                meta("rule", &ban.reason),
                meta("failures", &ban.failures.to_string()),
                meta("source", &value),
                meta("service", "asterisk"),
                meta("machine", machine_id),
            ],
        }],
        decisions: vec![NewDecision {
            duration: format!("{left}s"),
            origin: ORIGIN.into(),
            scenario,
            scope: scope.into(),
            kind: "ban".into(),
            value,
            simulated: false,
        }],
    }
}

fn meta(k: &str, v: &str) -> Meta {
    Meta {
        key: k.into(),
        value: v.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ban(net: &str, at: i64, until: i64) -> Ban {
        Ban {
            net: net.parse().unwrap(),
            until: Some(until),
            reason: "chan_sip".into(),
            failures: 5,
            banned_at: at,
        }
    }

    fn pushed(at: i64, until: i64, ids: &[i64]) -> Pushed {
        Pushed {
            banned_at: at,
            until: Some(until),
            alert_id: "1".into(),
            decisions: ids.to_vec(),
        }
    }

    #[test]
    fn unpushed_bans_are_pending_and_pushed_ones_are_not() {
        let mut l = Ledger::default();
        l.pushed
            .insert("203.0.113.7/32".parse().unwrap(), pushed(100, 200, &[4]));
        let active = [
            ban("203.0.113.7/32", 100, 200),
            ban("203.0.113.8/32", 110, 210),
        ];
        let w = pending(&active, &l, 150);
        assert_eq!(w.push, vec![active[1].clone()]);
        assert!(w.delete.is_empty() && w.forget.is_empty());
        // Banned again later: pushed again.
        let w = pending(&[ban("203.0.113.7/32", 300, 400)], &l, 300);
        assert_eq!(w.push.len(), 1);
        assert!(w.delete.is_empty());
    }

    #[test]
    fn a_ban_lifted_early_deletes_its_decisions_and_an_expired_one_is_forgotten() {
        let mut l = Ledger::default();
        l.pushed
            .insert("203.0.113.7/32".parse().unwrap(), pushed(100, 200, &[4, 5]));
        let w = pending(&[], &l, 150);
        assert_eq!(
            w.delete,
            vec![("203.0.113.7/32".parse().unwrap(), vec![4, 5])]
        );
        let w = pending(&[], &l, 200);
        assert!(w.delete.is_empty());
        assert_eq!(w.forget.len(), 1);
    }

    #[test]
    fn the_alert_carries_scope_value_remaining_time_rule_and_count() {
        let a = alert_for(&ban("203.0.113.7/32", 100, 3700), "pbx-a", 700);
        assert_eq!(a.source.scope, "Ip");
        assert_eq!(a.source.ip.as_deref(), Some("203.0.113.7"));
        let d = &a.decisions[0];
        assert_eq!(
            (
                d.scope.as_str(),
                d.value.as_str(),
                d.duration.as_str(),
                d.kind.as_str()
            ),
            ("Ip", "203.0.113.7", "3000s", "ban")
        );
        assert_eq!(a.scenario, "astpatch/asterisk-auth");
        assert_eq!(a.events_count, 5);
        assert!(a.events[0].meta.contains(&meta("rule", "chan_sip")));
        assert_eq!(a.start_at, "1970-01-01T00:01:40Z");
        let mut r = ban("2001:db8::/64", 100, 3700);
        r.reason = "manual".into();
        let a = alert_for(&r, "pbx-a", 100);
        assert_eq!(a.decisions[0].scope, "Range");
        assert_eq!(a.source.range.as_deref(), Some("2001:db8::/64"));
        assert_eq!(a.scenario, "astpatch/manual");
    }
}
