//! Pull: the fleet's decisions as this PBX holds them (`fleet/held.json`), kept apart from the
//! local bans, and what of them the firewall should hold. Pure: the stream comes in as data,
//! the desired set goes out as data; `enforce.rs` applies it.
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::client::{Decision, Stream};
use crate::error::{Error, Result};
use crate::settings::Settings;

pub const HELD: &str = "held.json";
pub const LIFTED: &str = "lifted.json";

pub fn load_lifted(dir: &Path) -> BTreeMap<IpNet, i64> {
    std::fs::read(dir.join(LIFTED))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

pub fn save_lifted(dir: &Path, lifted: &BTreeMap<IpNet, i64>) -> Result<()> {
    let path = dir.join(LIFTED);
    let bytes = serde_json::to_vec(lifted).expect("json");
    crate::atomic::write(&path, &bytes, Some(0o600)).map_err(|e| Error::io(&path, e))
}

/// One fleet decision held here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub net: IpNet,
    pub until: i64,
    pub origin: String,
    pub scenario: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fleet {
    /// By LAPI decision id.
    pub held: BTreeMap<i64, Held>,
    /// Fleet bans lifted here by `astpatch unban` (net → until the decision would end): not
    /// applied again until then, whatever the stream repeats. Kept in `lifted.json`, which
    /// `unban` writes (the watcher's fleet thread owns `held.json`).
    #[serde(skip)]
    pub lifted: BTreeMap<IpNet, i64>,
    /// The earliest end among `held` (0: not known yet, look).
    #[serde(skip)]
    next_expiry: i64,
}

impl Fleet {
    pub fn load(dir: &Path) -> Result<Fleet> {
        let path = dir.join(HELD);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                Error::input(
                    format!("{}: {e}", path.display()),
                    Some("remove the file: the next pull at start fills it again"),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Fleet::default()),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(HELD);
        let bytes = serde_json::to_vec(self).expect("json");
        crate::atomic::write(&path, &bytes, Some(0o600)).map_err(|e| Error::io(&path, e))
    }

    /// Take in one stream answer. At startup the answer is the whole list: what we held and
    /// it does not name is gone. Returns (decisions added, removed).
    pub fn take(&mut self, s: Stream, startup: bool, now: i64) -> (usize, usize) {
        let (mut added, mut removed) = (0, 0);
        if startup {
            let old = std::mem::take(&mut self.held);
            self.next_expiry = i64::MAX;
            for d in s.new.unwrap_or_default() {
                if let Some(h) = held_of(&d, now) {
                    self.next_expiry = self.next_expiry.min(h.until);
                    self.held.insert(d.id, h);
                }
            }
            added = self.held.keys().filter(|id| !old.contains_key(id)).count();
            removed = old.keys().filter(|id| !self.held.contains_key(id)).count();
        } else {
            // A delta touches only what it names: no pass over everything held.
            for d in s.deleted.unwrap_or_default() {
                removed += usize::from(self.held.remove(&d.id).is_some());
            }
            for d in s.new.unwrap_or_default() {
                if let Some(h) = held_of(&d, now) {
                    self.next_expiry = self.next_expiry.min(h.until);
                    added += usize::from(self.held.insert(d.id, h).is_none());
                }
            }
        }
        removed += self.expire(now);
        self.lifted.retain(|_, u| *u > now);
        (added, removed)
    }

    /// Drop decisions whose time is up; how many. Cheap until the first one is due.
    pub fn expire(&mut self, now: i64) -> usize {
        if now < self.next_expiry {
            return 0;
        }
        let n = self.held.len();
        self.held.retain(|_, h| h.until > now);
        self.next_expiry = self
            .held
            .values()
            .map(|h| h.until)
            .min()
            .unwrap_or(i64::MAX);
        n - self.held.len()
    }
}

/// A decision we can enforce: a ban on an Ip or a Range, with time left.
pub fn held_of(d: &Decision, now: i64) -> Option<Held> {
    if !d.kind.eq_ignore_ascii_case("ban") {
        return None;
    }
    let net = if d.scope.eq_ignore_ascii_case("ip") {
        let a: IpAddr = d.value.trim().parse().ok()?;
        let a = match a {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
            v4 => v4,
        };
        IpNet::from(a)
    } else if d.scope.eq_ignore_ascii_case("range") {
        crate::ban::policy::parse_target(&d.value).ok()?
    } else {
        return None;
    };
    let secs = go_duration_secs(&d.duration)?;
    (secs > 0).then(|| Held {
        net,
        until: now + secs,
        origin: d.origin.clone(),
        scenario: d.scenario.clone(),
    })
}

/// Go's `time.Duration` text (`1h59m52.7479038s`, `-14.75ms`, `3599s`) in whole seconds,
/// rounded up (a ban of 0.4 s left is still a ban).
pub fn go_duration_secs(text: &str) -> Option<i64> {
    let t = text.trim();
    let (neg, mut rest) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t),
    };
    if rest == "0" {
        return Some(0);
    }
    let mut nanos: f64 = 0.0;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&n| n > 0)?;
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..u] {
            "h" => 3.6e12,
            "m" => 6e10,
            "s" => 1e9,
            "ms" => 1e6,
            "us" | "µs" => 1e3,
            "ns" => 1.0,
            _ => return None,
        };
        nanos += value * scale;
        rest = &rest[u..];
    }
    let secs = (nanos / 1e9).ceil() as i64;
    Some(if neg { -secs } else { secs })
}

/// What the fleet objects should hold, and what was refused and why.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Desired {
    pub nets: BTreeMap<IpNet, i64>,
    /// (net, origin, why): each said once by the caller.
    pub refused: Vec<(IpNet, String, String)>,
    /// Held but already dropped by a local ban (ours pushed back to us, or the same attacker
    /// banned here too): not applied twice.
    pub covered: usize,
}

/// The fleet objects' content: every held decision with time left, except what may never be
/// banned here (the same rules as a local ban: loopback, link-local, ignoreip, this host's
/// addresses), what a local ban already drops, and what was lifted here by hand.
/// `own` are the ids of decisions we pushed ourselves: the local ban is their enforcement.
pub fn desired(
    fleet: &Fleet,
    settings: &Settings,
    local_addrs: &[IpAddr],
    local_bans: &BTreeSet<IpNet>,
    own: &BTreeSet<i64>,
    ipv6: bool,
    now: i64,
) -> Desired {
    let mut d = Desired::default();
    for (id, h) in &fleet.held {
        if h.until <= now || fleet.lifted.contains_key(&h.net) {
            continue;
        }
        if own.contains(id) {
            d.covered += 1;
            continue;
        }
        if let Err(e) = crate::ban::policy::check_bannable(&h.net, settings, local_addrs) {
            let why = e.to_string();
            let why = why
                .strip_prefix(&format!("refusing to ban {}: ", h.net))
                .unwrap_or(&why)
                .to_owned();
            d.refused.push((h.net, h.origin.clone(), why));
            continue;
        }
        if h.net.addr().is_ipv6() && !ipv6 {
            continue;
        }
        if local_bans.contains(&h.net) {
            d.covered += 1;
            continue;
        }
        let u = d.nets.entry(h.net).or_insert(h.until);
        *u = (*u).max(h.until);
    }
    d.refused.sort();
    d.refused.dedup();
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(id: i64, scope: &str, value: &str, dur: &str) -> Decision {
        Decision {
            id,
            origin: "cscli".into(),
            scenario: "manual".into(),
            scope: scope.into(),
            kind: "ban".into(),
            value: value.into(),
            duration: dur.into(),
        }
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration_secs("59m51.747906665s"), Some(3592));
        assert_eq!(go_duration_secs("1h59m52.7479038s"), Some(7193));
        assert_eq!(go_duration_secs("3599s"), Some(3599));
        assert_eq!(go_duration_secs("-14.750409ms"), Some(-1));
        assert_eq!(go_duration_secs("119.05ms"), Some(1));
        assert_eq!(go_duration_secs("4h"), Some(14400));
        assert_eq!(go_duration_secs("0"), Some(0));
        assert_eq!(go_duration_secs("5 minutes"), None);
        assert_eq!(go_duration_secs("h"), None);
    }

    #[test]
    fn ip_and_range_bans_are_held_other_scopes_and_types_are_not() {
        assert_eq!(
            held_of(&dec(1, "Ip", "203.0.113.7", "1h"), 0).unwrap().net,
            "203.0.113.7/32".parse::<IpNet>().unwrap()
        );
        assert_eq!(
            held_of(&dec(1, "Range", "2001:db8::/64", "1h"), 0)
                .unwrap()
                .net,
            "2001:db8::/64".parse::<IpNet>().unwrap()
        );
        assert_eq!(
            held_of(&dec(1, "ip", "::ffff:203.0.113.7", "1h"), 0)
                .unwrap()
                .net,
            "203.0.113.7/32".parse::<IpNet>().unwrap()
        );
        assert!(held_of(&dec(1, "Country", "CN", "1h"), 0).is_none());
        assert!(held_of(&dec(1, "Ip", "not-an-ip", "1h"), 0).is_none());
        assert!(held_of(&dec(1, "Ip", "203.0.113.7", "-1s"), 0).is_none());
        let mut c = dec(1, "Ip", "203.0.113.7", "1h");
        c.kind = "captcha".into();
        assert!(held_of(&c, 0).is_none());
    }

    #[test]
    fn the_stream_adds_deletes_and_startup_replaces() {
        let mut f = Fleet::default();
        let s = Stream {
            new: Some(vec![
                dec(1, "Ip", "203.0.113.7", "1h"),
                dec(2, "Ip", "203.0.113.8", "1h"),
            ]),
            deleted: None,
        };
        assert_eq!(f.take(s, true, 0), (2, 0));
        let s = Stream {
            new: None,
            deleted: Some(vec![dec(1, "Ip", "203.0.113.7", "-1s")]),
        };
        assert_eq!(f.take(s, false, 1), (0, 1));
        assert_eq!(f.held.keys().copied().collect::<Vec<_>>(), vec![2]);
        // A startup list replaces everything.
        let s = Stream {
            new: Some(vec![dec(3, "Ip", "203.0.113.9", "1h")]),
            deleted: None,
        };
        f.take(s, true, 2);
        assert_eq!(f.held.keys().copied().collect::<Vec<_>>(), vec![3]);
        // Expiry.
        assert_eq!(f.expire(3601), 0);
        assert_eq!(f.expire(3602), 1);
    }

    #[test]
    fn protected_addresses_are_refused_with_their_origin_and_local_bans_not_applied_twice() {
        let mut f = Fleet::default();
        for (id, v) in [
            (1, "127.0.0.1"),
            (2, "fe80::1"),
            (3, "192.0.2.10"),
            (4, "10.0.0.5"),
            (5, "203.0.113.7"),
            (6, "203.0.113.8"),
        ] {
            f.held
                .insert(id, held_of(&dec(id, "Ip", v, "1h"), 0).unwrap());
        }
        let settings = Settings {
            ignoreip: vec!["192.0.2.0/24".parse().unwrap()],
            ..Settings::default()
        };
        let local = ["10.0.0.5".parse().unwrap()];
        let bans: BTreeSet<IpNet> = ["203.0.113.8/32".parse().unwrap()].into();
        let d = desired(&f, &settings, &local, &bans, &BTreeSet::new(), true, 10);
        assert_eq!(
            d.nets.keys().map(|n| n.to_string()).collect::<Vec<_>>(),
            vec!["203.0.113.7/32"]
        );
        assert_eq!(d.covered, 1);
        let refused: Vec<String> = d.refused.iter().map(|r| r.0.to_string()).collect();
        assert_eq!(
            refused,
            vec![
                "10.0.0.5/32",
                "127.0.0.1/32",
                "192.0.2.10/32",
                "fe80::1/128"
            ]
        );
        assert!(d.refused.iter().all(|r| r.1 == "cscli"));
        assert!(d.refused[2].2.contains("ignoreip"), "{:?}", d.refused);
        // Lifted by hand: left out.
        f.lifted.insert("203.0.113.7/32".parse().unwrap(), 3600);
        assert!(
            desired(&f, &settings, &local, &bans, &BTreeSet::new(), true, 10)
                .nets
                .is_empty()
        );
        // Our own decision (by id) is never applied, even with no local ban left for it.
        f.lifted.clear();
        let own: BTreeSet<i64> = [5].into();
        let d = desired(&f, &settings, &local, &BTreeSet::new(), &own, true, 10);
        assert!(!d.nets.contains_key(&"203.0.113.7/32".parse().unwrap()));
        assert!(d.nets.contains_key(&"203.0.113.8/32".parse().unwrap()));
    }
}
