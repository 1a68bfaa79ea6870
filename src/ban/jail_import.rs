//! Read a fail2ban `jail.local` (INI with fail2ban's conventions) and turn its `[DEFAULT]` and
//! `[asterisk]` sections into astpatch settings, saying what could not be carried over.
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use crate::error::{Error, Result};
use crate::firewall::Backend;
use crate::settings::{BantimeIncrement, Settings};

/// Sections in file order; each maps lower-case keys to values (continuation lines joined).
pub fn parse_ini(text: &str) -> Result<Vec<(String, HashMap<String, String>)>> {
    let mut sections: Vec<(String, HashMap<String, String>)> = vec![];
    let mut last_key: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end();
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        // An indented line continues the previous value (logpath lists, ignoreip lists).
        if let (true, Some(key)) = (line.starts_with([' ', '\t']), &last_key) {
            if let Some((_, map)) = sections.last_mut() {
                let v = map.get_mut(key).expect("key exists");
                v.push(' ');
                v.push_str(strip_comment(trimmed));
                continue;
            }
        }
        if let Some(name) = trimmed.strip_prefix('[') {
            let Some(name) = name.split(']').next().filter(|_| name.contains(']')) else {
                return Err(Error::input(
                    format!("line {}: unclosed section header", i + 1),
                    None,
                ));
            };
            sections.push((name.trim().to_owned(), HashMap::new()));
            last_key = None;
            continue;
        }
        let Some((k, v)) = trimmed.split_once(['=', ':']) else {
            return Err(Error::input(
                format!("line {}: expected `key = value`, found `{trimmed}`", i + 1),
                Some("this must be a fail2ban jail file such as /etc/fail2ban/jail.local"),
            ));
        };
        let Some((_, map)) = sections.last_mut() else {
            return Err(Error::input(
                format!("line {}: setting before any [section]", i + 1),
                None,
            ));
        };
        let key = k.trim().to_ascii_lowercase();
        map.insert(key.clone(), strip_comment(v.trim()).to_owned());
        last_key = Some(key);
    }
    Ok(sections)
}

/// fail2ban allows ` ; comment` and ` # comment` after a value.
fn strip_comment(v: &str) -> &str {
    let cut = [" ;", "\t;", " #", "\t#"]
        .iter()
        .filter_map(|m| v.find(m))
        .min()
        .unwrap_or(v.len());
    v[..cut].trim()
}

/// fail2ban durations: seconds, or `10m`, `1h`, `1d`, `1w` (also with spaces).
fn duration(key: &str, v: &str) -> Result<Duration> {
    crate::duration::parse(v).map_err(|e| Error::input(format!("{key} = {v}: {e}"), None))
}

/// Resolve fail2ban's `%(name)s` references from the same merged keys ([DEFAULT] plus the
/// jail), as fail2ban does; nested references too, a loop or unknown name is left as written.
fn interpolate(kv: &HashMap<String, String>) -> HashMap<String, String> {
    kv.iter()
        .map(|(k, v)| {
            let mut v = v.clone();
            // Bounded passes: a self-reference cannot loop forever or grow without end.
            for _ in 0..10 {
                let mut out = String::with_capacity(v.len());
                let mut rest = v.as_str();
                let mut changed = false;
                while let Some(i) = rest.find("%(") {
                    out.push_str(&rest[..i]);
                    let after = &rest[i + 2..];
                    match after.find(")s") {
                        Some(j) => match kv.get(&after[..j].trim().to_ascii_lowercase()) {
                            Some(sub) if out.len() + sub.len() < 64 * 1024 => {
                                out.push_str(sub);
                                changed = true;
                                rest = &after[j + 2..];
                            }
                            _ => {
                                out.push_str(&rest[i..i + 2 + j + 2]);
                                rest = &after[j + 2..];
                            }
                        },
                        None => {
                            out.push_str(&rest[i..]);
                            rest = "";
                        }
                    }
                }
                out.push_str(rest);
                v = out;
                if !changed {
                    break;
                }
            }
            (k.clone(), v)
        })
        .collect()
}

/// What the import produced, and what the operator should know about it.
#[derive(Debug)]
pub struct Imported {
    pub settings: Settings,
    pub notes: Vec<String>,
}

pub fn import(text: &str, jail: &str) -> Result<Imported> {
    let kv = jail_keys(&parse_ini(text)?, jail)?;
    let mut s = Settings::default();
    let mut notes = vec![];
    for (key, v) in kv.iter() {
        let v = v.trim();
        // A reference to something defined elsewhere (paths-*.conf, jail.conf) cannot be
        // resolved from this file: say so and keep the default rather than fail the import.
        if v.contains("%(") && key != "logpath" {
            notes.push(format!(
                "{key} = {v}: fail2ban interpolation not defined in this file; left at astpatch's default"
            ));
            continue;
        }
        match key.as_str() {
            "maxretry" => {
                s.maxretry = v.parse().map_err(|_| {
                    Error::input(format!("maxretry = {v}: not a whole number"), None)
                })?
            }
            "findtime" => s.findtime = duration(key, v)?,
            "bantime" => {
                if v.starts_with('-') {
                    s.bantime = Duration::from_secs(7 * 86_400);
                    notes.push("bantime = -1 (forever) became 1w: astpatch bans always end; raise it if you must".into());
                } else {
                    s.bantime = duration(key, v)?;
                }
            }
            "ignoreip" => s.ignoreip = ignore_list(v, &mut notes),
            "logpath" => s.logs = log_list(v, &mut notes),
            "banaction" | "action" | "banaction_allports" => {
                // banaction wins over banaction_allports when both are set.
                if key != "banaction_allports" || !kv.contains_key("banaction") {
                    s.backend = backend_of_action(key, v, s.backend, &mut notes);
                }
            }
            "bantime.increment" => {
                if matches!(v.to_ascii_lowercase().as_str(), "true" | "yes" | "1" | "on") {
                    s.bantime_increment = Some(increment(&kv, &mut notes)?);
                }
            }
            "bantime.factor" | "bantime.maxtime" | "bantime.formula" | "bantime.multipliers" => {}
            "enabled"
            | "filter"
            | "port"
            | "protocol"
            | "usedns"
            | "backend"
            | "chain"
            | "destemail"
            | "sender"
            | "mta"
            | "bantime.rndtime"
            | "bantime.overalljails"
            | "logencoding"
            | "journalmatch" => {}
            other => notes.push(format!("{other} = {v}: no astpatch equivalent; ignored")),
        }
    }
    if let Some(inc) = &mut s.bantime_increment {
        if inc.max < s.bantime {
            inc.max = s.bantime;
        }
    }
    if kv.get("enabled").is_some_and(|e| {
        !matches!(
            e.trim().to_ascii_lowercase().as_str(),
            "true" | "yes" | "on" | "1"
        )
    }) {
        notes.push(format!(
            "[{jail}] is not enabled in fail2ban; imported anyway"
        ));
    }
    notes.sort();
    Ok(Imported { settings: s, notes })
}

/// The jail's keys over [DEFAULT]'s, interpolated; sections repeated in the file are merged.
fn jail_keys(
    sections: &[(String, HashMap<String, String>)],
    jail: &str,
) -> Result<HashMap<String, String>> {
    let get_section = |name: &str| {
        sections
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .fold(HashMap::new(), |mut acc, (_, m)| {
                acc.extend(m.clone());
                acc
            })
    };
    if !sections.iter().any(|(n, _)| n.eq_ignore_ascii_case(jail)) {
        let names: Vec<&str> = sections.iter().map(|(n, _)| n.as_str()).collect();
        return Err(Error::input(
            format!(
                "no [{jail}] jail in this file (sections: {})",
                names.join(", ")
            ),
            Some("name the jail with --jail NAME"),
        ));
    }
    let mut kv = get_section("DEFAULT");
    kv.extend(get_section(jail));
    Ok(interpolate(&kv))
}

/// `ignoreip`: addresses and networks; host names are not resolved (said in a note).
fn ignore_list(v: &str, notes: &mut Vec<String>) -> Vec<IpNet> {
    let mut nets = vec![];
    for t in v.split([' ', ',', '\t']).filter(|t| !t.is_empty()) {
        match t.parse::<IpNet>().or_else(|_| t.parse::<std::net::IpAddr>().map(IpNet::from)) {
            Ok(n) => nets.push(n),
            Err(_) => notes.push(format!("ignoreip entry '{t}' is not an address or network (host names are not resolved); left out")),
        }
    }
    // Loopback is protected anyway; keep the seed's defaults visible.
    for d in ["127.0.0.0/8", "::1/128"] {
        let d: IpNet = d.parse().unwrap();
        if !nets.contains(&d) {
            nets.push(d);
        }
    }
    nets
}

/// `logpath`: the named files; interpolations and wildcards cannot be followed (said in notes).
fn log_list(v: &str, notes: &mut Vec<String>) -> Vec<PathBuf> {
    let logs: Vec<PathBuf> = v
        .split_whitespace()
        .filter(|p| !p.contains("%("))
        .map(PathBuf::from)
        .collect();
    if v.contains("%(") {
        notes.push(format!(
            "logpath uses fail2ban interpolation ({v}); list the files in logs = [...]"
        ));
    }
    if logs
        .iter()
        .any(|p| p.to_string_lossy().contains(['*', '?']))
    {
        notes.push(
            "logpath has wildcards; astpatch follows named files: list them in logs = [...]".into(),
        );
    }
    logs
}

/// The backend a fail2ban ban action amounts to; `current` when the action is unknown.
fn backend_of_action(key: &str, v: &str, current: Backend, notes: &mut Vec<String>) -> Backend {
    let a = v.to_ascii_lowercase();
    let b = if a.contains("nftables") {
        Backend::Nftables
    } else if a.contains("ipset") {
        Backend::Ipset
    } else if a.contains("iptables") || a.contains("firewallcmd") {
        Backend::Iptables
    } else {
        notes.push(format!(
            "{key} = {v}: unknown action; backend left at {current}"
        ));
        return current;
    };
    if a.contains("firewallcmd") {
        notes.push(format!("{key} = {v}: astpatch talks to the kernel directly ({b} backend), not through firewalld"));
    }
    b
}

/// `bantime.increment = true` with its factor and maxtime.
fn increment(kv: &HashMap<String, String>, notes: &mut Vec<String>) -> Result<BantimeIncrement> {
    let factor = kv
        .get("bantime.factor")
        .and_then(|f| f.trim().parse::<f64>().ok())
        .map(|f| f.round().max(1.0) as u32)
        .unwrap_or(2);
    let max = match kv.get("bantime.maxtime") {
        Some(m) => duration("bantime.maxtime", m)?,
        None => Duration::from_secs(7 * 86_400),
    };
    if kv.contains_key("bantime.formula") || kv.contains_key("bantime.multipliers") {
        notes.push("bantime.formula / bantime.multipliers are not supported; astpatch multiplies by factor per previous ban".into());
    }
    Ok(BantimeIncrement { factor, max })
}

/// The settings file text: notes as comments, then the settings.
pub fn render(imp: &Imported, source: &str) -> String {
    let mut out =
        format!("# astpatch settings imported from {source} by `astpatch import-fail2ban`\n");
    for n in &imp.notes {
        out.push_str(&format!("# note: {n}\n"));
    }
    out.push('\n');
    out.push_str(&toml::to_string(&imp.settings).expect("settings serialise"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The seed's jail.local, as the article writes it (one key per line).
    const SEED: &str = "[DEFAULT]\nignoreip =\nbackend = polling\nbantime = 3600 ; 1hour\nmaxretry= 5\nusedns = no\n\n[asterisk]\nenabled = true\n";

    #[test]
    fn the_seed_jail_gives_the_defaults() {
        let imp = import(SEED, "asterisk").unwrap();
        assert_eq!(imp.settings.maxretry, 5);
        assert_eq!(imp.settings.bantime, Duration::from_secs(3600));
        assert_eq!(imp.settings.backend, Backend::Iptables);
        assert!(imp.settings.is_ignored("127.0.0.1".parse().unwrap()));
        assert!(imp.notes.is_empty(), "{:?}", imp.notes);
        // What we write reads back as the same settings.
        let text = render(&imp, "jail.local");
        let back = Settings::from_toml(&text, Path::new("x")).unwrap();
        assert_eq!(back, imp.settings);
    }

    #[test]
    fn jail_overrides_default_and_everything_maps() {
        let text = "[DEFAULT]\nbantime = 1h\nmaxretry = 5\nbanaction = firewallcmd-ipset\nignoreip = 127.0.0.1/8 ::1 192.0.2.0/24\n   198.51.100.7 pbx.example.com\n\n[asterisk]\nenabled = true\nmaxretry = 3\nfindtime = 5m\nlogpath = /var/log/asterisk/messages\n          /var/log/asterisk/security\nbantime.increment = true\nbantime.factor = 3\nbantime.maxtime = 2d\nport = 5060,5061\n";
        let imp = import(text, "asterisk").unwrap();
        let s = &imp.settings;
        assert_eq!(s.maxretry, 3);
        assert_eq!(s.findtime, Duration::from_secs(300));
        assert_eq!(s.backend, Backend::Ipset);
        assert_eq!(s.logs.len(), 2);
        assert!(s.is_ignored("198.51.100.7".parse().unwrap()));
        assert!(s.is_ignored("192.0.2.9".parse().unwrap()));
        let inc = s.bantime_increment.as_ref().unwrap();
        assert_eq!((inc.factor, inc.max), (3, Duration::from_secs(2 * 86_400)));
        let notes = imp.notes.join("\n");
        assert!(notes.contains("pbx.example.com"), "{notes}");
        assert!(notes.contains("firewalld"), "{notes}");
    }

    #[test]
    fn interpolation_and_fail2ban_booleans_are_understood() {
        let text = "[DEFAULT]\nmy_bantime = 2h\nbantime = %(my_bantime)s\nloop = %(loop)s\n\n[asterisk]\nenabled = True\nmaxretry = %(not_here)s\nfindtime = %(loop)s\nlogpath = %(asterisk_log)s\nbanaction = %(banaction_allports)s\nignoreip = 127.0.0.1 %(unclosed\n";
        let imp = import(text, "asterisk").unwrap();
        assert_eq!(imp.settings.bantime, Duration::from_secs(7200));
        assert_eq!(imp.settings.maxretry, 5, "unresolved: default kept");
        let notes = imp.notes.join("\n");
        assert!(notes.contains("maxretry = %(not_here)s"), "{notes}");
        assert!(
            notes.contains("logpath uses fail2ban interpolation"),
            "{notes}"
        );
        assert!(!notes.contains("not enabled"), "{notes}");
    }

    #[test]
    fn bad_files_are_input_errors() {
        assert!(
            import("[DEFAULT]\nmaxretry = 5\n", "asterisk")
                .unwrap_err()
                .to_string()
                .contains("no [asterisk] jail")
        );
        assert!(import("just text\n", "asterisk").is_err());
        assert!(import("[asterisk]\nmaxretry = five\n", "asterisk").is_err());
        assert!(import("[asterisk]\nfindtime = 10x\n", "asterisk").is_err());
        let imp = import("[asterisk]\nbantime = -1\n", "asterisk").unwrap();
        assert_eq!(imp.settings.bantime, Duration::from_secs(604_800));
    }
}
