//! The watcher's settings (`/etc/astpatch/astpatch.toml`). Defaults follow the seed's fail2ban
//! jail (maxretry 5, findtime 10m, bantime 1h) so a migrating operator sees the same behaviour.
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub const DEFAULT_PATH: &str = "/etc/astpatch/astpatch.toml";

use crate::firewall::Backend;

/// The `patched` setting: `true`, `false`, or `"auto"` (decide from the installed module).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Patched {
    True,
    False,
    #[default]
    Auto,
}

impl std::fmt::Display for Patched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Patched::True => "true",
            Patched::False => "false",
            Patched::Auto => "\"auto\"",
        })
    }
}

impl From<bool> for Patched {
    fn from(b: bool) -> Self {
        if b { Patched::True } else { Patched::False }
    }
}

// Booleans stay booleans in the file (older settings files keep working); only auto is text.
impl Serialize for Patched {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Patched::True => s.serialize_bool(true),
            Patched::False => s.serialize_bool(false),
            Patched::Auto => s.serialize_str("auto"),
        }
    }
}

impl<'de> Deserialize<'de> for Patched {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Patched;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("patched = true, false or \"auto\"")
            }
            fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<Patched, E> {
                Ok(b.into())
            }
            fn visit_str<E: serde::de::Error>(self, t: &str) -> Result<Patched, E> {
                match t {
                    "auto" => Ok(Patched::Auto),
                    _ => Err(E::custom(format!(
                        "patched: \"{t}\" is not true, false or \"auto\""
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// `[ami]`: where the manager listens and the user astpatch logs in as (manager.conf: a user
/// with `read = security`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmiSettings {
    #[serde(default = "default_ami_host")]
    pub host: String,
    #[serde(default = "default_ami_port")]
    pub port: u16,
    pub username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// A file holding the secret (first line), so the settings file can stay world-readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
}

fn default_ami_host() -> String {
    "127.0.0.1".into()
}

fn default_ami_port() -> u16 {
    5038
}

impl AmiSettings {
    /// The secret, from the settings or its file.
    pub fn secret(&self) -> Result<String, String> {
        match (&self.secret, &self.secret_file) {
            (Some(s), _) => Ok(s.clone()),
            (None, Some(f)) => std::fs::read_to_string(f)
                .map(|t| t.lines().next().unwrap_or("").to_owned())
                .map_err(|e| format!("ami.secret_file {}: {e}", f.display())),
            (None, None) => Err("ami: set secret or secret_file".into()),
        }
    }
}

/// Repeat offenders get `bantime * factor^(previous bans)`, never more than `max`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BantimeIncrement {
    #[serde(default = "default_factor")]
    pub factor: u32,
    #[serde(with = "duration_serde")]
    pub max: Duration,
}

fn default_factor() -> u32 {
    2
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Failures within `findtime` that trigger a ban.
    pub maxretry: u32,
    #[serde(with = "duration_serde")]
    pub findtime: Duration,
    #[serde(with = "duration_serde")]
    pub bantime: Duration,
    /// Addresses and networks never banned. Loopback is never banned even if removed here.
    /// Bare addresses (`"::1"`, as fail2ban writes them) mean a single host.
    #[serde(deserialize_with = "nets_or_addrs")]
    pub ignoreip: Vec<IpNet>,
    /// Log files the watcher follows.
    pub logs: Vec<PathBuf>,
    pub backend: Backend,
    /// Which chan_sip "Failed to authenticate" tails are believed: on a stock module that tail
    /// is attacker-written text. `"auto"` believes a line only when it ends with the tag of a
    /// patched build found in chan_sip.so; `true` also believes untagged patched lines (modules
    /// patched by hand); `false` believes none. See [`crate::ban::trust`].
    pub patched: Patched,
    /// Tags of patched builds whose lines are believed besides those found in the module: logs
    /// copied from another PBX, or a build whose module is gone.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<crate::patch::tag::Tag>,
    pub state_dir: PathBuf,
    /// The asterisk.conf of the Asterisk astpatch looks after (the `-C` it runs with), when
    /// several run on this host [default: the one running].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asterisk_conf: Option<PathBuf>,
    pub bantime_increment: Option<BantimeIncrement>,
    /// Ban the whole IPv6 prefix of this length (e.g. 64) rather than one address.
    pub ipv6_prefix: Option<u8>,
    /// Where the watcher writes its counters in Prometheus' text format every few seconds
    /// (for node_exporter's textfile collector); none when unset.
    pub metrics_file: Option<PathBuf>,
    /// How often the watcher checks that the firewall still holds every ban (an outside
    /// `iptables -F`, a firewall reload) and puts back what is missing.
    #[serde(with = "duration_serde")]
    pub firewall_check: Duration,
    /// The Asterisk Manager Interface as a second source of security events (off unless set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ami: Option<AmiSettings>,
    /// Syslog / journald program names whose lines are Asterisk's: a line from any other
    /// program (or `logger -t mallory`) that looks like Asterisk's is not believed.
    #[serde(skip_serializing_if = "is_default_ident")]
    pub syslog_ident: Vec<String>,
    /// Believe FreePBX's dialplan-written `Rejecting unknown SIP connection from ADDR` lines
    /// (from-sip-external's `Log()`). Off: any dialplan `Log()` can write that text.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dialplan_rejections: bool,
    /// Share bans with a fleet of PBXes through CrowdSec's Local API ([`crate::fleet`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crowdsec: Option<crate::fleet::Crowdsec>,
}

fn default_ident() -> Vec<String> {
    vec!["asterisk".to_owned()]
}

fn is_default_ident(v: &[String]) -> bool {
    v == default_ident()
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            maxretry: 5,
            findtime: Duration::from_secs(600),
            bantime: Duration::from_secs(3600),
            ignoreip: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
            logs: vec![
                PathBuf::from("/var/log/asterisk/messages"),
                PathBuf::from("/var/log/asterisk/security"),
            ],
            backend: Backend::Iptables,
            patched: Patched::Auto,
            tags: vec![],
            state_dir: PathBuf::from("/var/lib/astpatch"),
            asterisk_conf: None,
            bantime_increment: None,
            ipv6_prefix: None,
            metrics_file: None,
            firewall_check: Duration::from_secs(60),
            ami: None,
            syslog_ident: default_ident(),
            dialplan_rejections: false,
            crowdsec: None,
        }
    }
}

/// What the command line may put over the settings file, the same for every command that uses
/// the setting (and again after a SIGHUP re-read).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub logs: Vec<PathBuf>,
    pub backend: Option<Backend>,
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read settings: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

impl ConfigError {
    pub fn hint(&self) -> Option<String> {
        match self {
            ConfigError::Read { .. } => Some(
                "create it (see README, section Settings) or pass --config FILE; defaults need no file"
                    .into(),
            ),
            ConfigError::Parse { .. } | ConfigError::Invalid { .. } => Some(
                "fix the key named above; durations look like 600, 10m, 1h; addresses like 192.0.2.0/24"
                    .into(),
            ),
        }
    }
}

impl Settings {
    /// Parse settings text; `path` is only used to name the file in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<Settings, ConfigError> {
        let settings: Settings = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
                .unwrap_or(0);
            ConfigError::Parse {
                path: path.to_owned(),
                line,
                message: e.message().trim().to_owned(),
            }
        })?;
        settings
            .validate()
            .map_err(|message| ConfigError::Invalid {
                path: path.to_owned(),
                message,
            })?;
        Ok(settings)
    }

    /// Load `path`; when `path` is the default location and it does not exist, use defaults.
    pub fn load(path: Option<&Path>) -> Result<Settings, ConfigError> {
        let (path, explicit) = match path {
            Some(p) => (p.to_owned(), true),
            None => (PathBuf::from(DEFAULT_PATH), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Settings::from_toml(&text, &path),
            Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Settings::default())
            }
            Err(source) => Err(ConfigError::Read { path, source }),
        }
    }

    /// The settings with the command line's overrides on top.
    pub fn overridden(mut self, o: &Overrides) -> Settings {
        if !o.logs.is_empty() {
            self.logs = o.logs.clone();
        }
        if let Some(b) = o.backend {
            self.backend = b;
        }
        if let Some(d) = &o.state_dir {
            self.state_dir = d.clone();
        }
        self
    }

    fn validate(&self) -> Result<(), String> {
        if let Some(a) = &self.ami {
            if a.secret.is_some() == a.secret_file.is_some() {
                return Err("ami: set one of secret or secret_file".into());
            }
        }
        if self.maxretry == 0 {
            return Err("maxretry: must be at least 1".into());
        }
        if self.findtime.is_zero() {
            return Err("findtime: must be longer than 0s".into());
        }
        if self.bantime.is_zero() {
            return Err("bantime: must be longer than 0s".into());
        }
        if let Some(p) = self.ipv6_prefix {
            if !(16..=128).contains(&p) {
                return Err(format!(
                    "ipv6_prefix: {p} is not a prefix length from 16 to 128"
                ));
            }
        }
        if let Some(cs) = &self.crowdsec {
            cs.validate()?;
        }
        if let Some(inc) = &self.bantime_increment {
            if inc.factor < 1 {
                return Err("bantime_increment.factor: must be at least 1".into());
            }
            if inc.max < self.bantime {
                return Err("bantime_increment.max: must not be shorter than bantime".into());
            }
        }
        Ok(())
    }

    /// True when `addr` must never be banned: loopback, unspecified, or inside `ignoreip`.
    pub fn is_ignored(&self, addr: IpAddr) -> bool {
        is_never_bannable(addr) || self.ignoreip.iter().any(|net| net.contains(&addr))
    }
}

/// Addresses no input can get banned, whatever the settings say.
pub fn is_never_bannable(addr: IpAddr) -> bool {
    let addr = match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
        v4 => v4,
    };
    // Link-local sources cannot come from the internet, and the router's fe80:: address is
    // among them: banning it would cut the host's IPv6 off.
    addr.is_loopback()
        || addr.is_unspecified()
        || addr.is_multicast()
        || match addr {
            IpAddr::V4(v4) => v4.is_broadcast() || v4.octets()[0] == 0 || v4.is_link_local(),
            IpAddr::V6(v6) => v6.is_unicast_link_local(),
        }
}

/// serde glue: a list of networks where a bare address means that one host.
fn nets_or_addrs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    let raw = Vec::<String>::deserialize(d)?;
    raw.iter()
        .map(|t| {
            t.parse::<IpNet>()
                .or_else(|_| t.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    serde::de::Error::custom(format!("'{t}' is not an IP address or CIDR network"))
                })
        })
        .collect()
}

/// serde glue: durations as fail2ban-style text (`10m`) or bare seconds.
pub(crate) mod duration_serde {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::duration::format(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(s) => Ok(Duration::from_secs(s)),
            Raw::Text(t) => crate::duration::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Settings, ConfigError> {
        Settings::from_toml(text, Path::new("t.toml"))
    }

    #[test]
    fn empty_file_is_the_seed_jail() {
        let s = parse("").unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(s.maxretry, 5);
        assert_eq!(s.bantime, Duration::from_secs(3600));
    }

    #[test]
    fn reads_every_key() {
        let s = parse(
            r#"
maxretry = 3
findtime = "5m"
bantime = 7200
ignoreip = ["10.0.0.0/8", "2001:db8::/32", "192.0.2.44"]
logs = ["/tmp/messages"]
backend = "nftables"
patched = true
state_dir = "/tmp/state"
ipv6_prefix = 64
[bantime_increment]
factor = 3
max = "1w"
"#,
        )
        .unwrap();
        assert_eq!(s.maxretry, 3);
        assert_eq!(s.findtime, Duration::from_secs(300));
        assert_eq!(s.bantime, Duration::from_secs(7200));
        assert_eq!(s.backend, Backend::Nftables);
        assert_eq!(s.patched, Patched::True);
        assert_eq!(s.ipv6_prefix, Some(64));
        assert_eq!(s.bantime_increment.as_ref().unwrap().factor, 3);
        assert!(s.is_ignored("10.1.2.3".parse().unwrap()));
        assert!(!s.is_ignored("203.0.113.7".parse().unwrap()));
        assert!(s.is_ignored("192.0.2.44".parse().unwrap()));
        assert!(!s.is_ignored("192.0.2.45".parse().unwrap()));
    }

    #[test]
    fn errors_name_line_and_key() {
        let e = parse("maxretry = 5\nfindtime = \"10x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.toml:2"), "{e}");
        assert!(e.contains("unknown unit"), "{e}");
        let e = parse("maxretry = 5\nbogus = 1\n").unwrap_err().to_string();
        assert!(e.contains(":2:") && e.contains("bogus"), "{e}");
        let e = parse("ignoreip = [\"not-an-ip\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains(":1:"), "{e}");
        let e = parse("maxretry = 0\n").unwrap_err().to_string();
        assert!(e.contains("maxretry"), "{e}");
    }

    #[test]
    fn patched_is_a_boolean_or_auto() {
        assert_eq!(parse("").unwrap().patched, Patched::Auto);
        assert_eq!(
            parse("patched = \"auto\"\n").unwrap().patched,
            Patched::Auto
        );
        assert_eq!(parse("patched = true\n").unwrap().patched, Patched::True);
        assert_eq!(parse("patched = false\n").unwrap().patched, Patched::False);
        let e = parse("maxretry = 5\npatched = \"yes\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.toml:2:") && e.contains("patched"), "{e}");
        let e = parse("patched = 1\n").unwrap_err().to_string();
        assert!(e.contains("t.toml:1:") && e.contains("patched"), "{e}");
    }

    #[test]
    fn patched_round_trips_as_written() {
        for (v, text) in [
            (Patched::True, "patched = true"),
            (Patched::False, "patched = false"),
            (Patched::Auto, "patched = \"auto\""),
        ] {
            let s = Settings {
                patched: v,
                ..Settings::default()
            };
            let out = toml::to_string(&s).unwrap();
            assert!(out.contains(text), "{out}");
            assert_eq!(parse(&out).unwrap(), s);
        }
    }

    #[test]
    fn loopback_is_never_banned_even_if_not_ignored() {
        let s = parse("ignoreip = []\n").unwrap();
        for a in [
            "127.0.0.1",
            "127.9.9.9",
            "::1",
            "0.0.0.0",
            "::",
            "::ffff:127.0.0.1",
            "255.255.255.255",
            "fe80::1",
            "febf::ffff",
            "169.254.1.1",
        ] {
            assert!(s.is_ignored(a.parse().unwrap()), "{a}");
        }
        assert!(!s.is_ignored("192.0.2.1".parse().unwrap()));
        assert!(!s.is_ignored("fec0::1".parse().unwrap()));
    }
}
