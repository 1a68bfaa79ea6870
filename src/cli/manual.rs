//! What a package installs besides the binary, generated from the sources it documents so it
//! cannot drift: man pages from the clap definitions (`clap_mangen`), astpatch.toml(5) and the
//! commented default settings file from one table of settings, shell completions
//! (`clap_complete`), and the systemd unit `install-watcher` writes. `packaging/` holds the
//! generated files the Debian package ships; a test regenerates them and fails when stale.
use std::fmt::Write as _;
use std::path::Path;

use clap::CommandFactory;

use crate::cli::args::Cli;

/// One setting of astpatch.toml, for astpatch.toml(5) and the default settings file.
pub struct SettingDoc {
    pub key: &'static str,
    /// As written in the file (TOML), the default.
    pub default: &'static str,
    pub text: &'static str,
}

/// Every top-level key [`crate::settings::Settings`] reads (a test holds the two together).
pub const SETTINGS: &[SettingDoc] = &[
    SettingDoc {
        key: "maxretry",
        default: "5",
        text: "Failures from one address within findtime that ban it.",
    },
    SettingDoc {
        key: "findtime",
        default: "\"10m\"",
        text: "The window maxretry counts in (s, m, h, d, w units, as fail2ban).",
    },
    SettingDoc {
        key: "bantime",
        default: "\"1h\"",
        text: "How long a ban lasts.",
    },
    SettingDoc {
        key: "ignoreip",
        default: "[\"127.0.0.0/8\", \"::1/128\"]",
        text: "Addresses and networks never banned. Loopback, link-local and this host's own \
               addresses are never banned whatever this says.",
    },
    SettingDoc {
        key: "logs",
        default: "[\"/var/log/asterisk/messages\", \"/var/log/asterisk/security\"]",
        text: "Log files the watcher follows (logger.conf: messages => notice,warning,error and \
               security => security).",
    },
    SettingDoc {
        key: "backend",
        default: "\"iptables\"",
        text: "Firewall backend: iptables, ipset or nftables.",
    },
    SettingDoc {
        key: "patched",
        default: "\"auto\"",
        text: "Which chan_sip failure tails are believed. \"auto\": only lines that end with the \
               tag of a patched build found in chan_sip.so. true: also untagged patched lines \
               (modules patched by hand; verify flags it). false: none.",
    },
    SettingDoc {
        key: "tags",
        default: "[]",
        text: "Tags of patched builds whose lines are believed besides those found in the \
               module: logs copied from another PBX, or a build whose module is gone.",
    },
    SettingDoc {
        key: "state_dir",
        default: "\"/var/lib/astpatch\"",
        text: "Where bans are kept (an fsynced journal), with the watcher's pid and counters.",
    },
    SettingDoc {
        key: "asterisk_conf",
        default: "\"/opt/asterisk/etc/asterisk/asterisk.conf\"",
        text: "The asterisk.conf (the -C it runs with) of the Asterisk astpatch looks after, when \
               several run on this host; verify then judges that one. Off unless set: the one \
               running.",
    },
    SettingDoc {
        key: "bantime_increment",
        default: "{ factor = 2, max = \"1w\" }",
        text: "Repeat offenders get bantime * factor^(earlier bans), at most max. Off unless set.",
    },
    SettingDoc {
        key: "ipv6_prefix",
        default: "64",
        text: "Ban the whole IPv6 prefix of this length rather than one address. Off unless set.",
    },
    SettingDoc {
        key: "syslog_ident",
        default: "[\"asterisk\"]",
        text: "Syslog and journald program names whose lines are Asterisk's; a line from any \
               other program that looks like Asterisk's is not believed.",
    },
    SettingDoc {
        key: "firewall_check",
        default: "\"1m\"",
        text: "How often the watcher checks that the firewall still holds every ban (after an \
               outside iptables -F or a firewall reload) and puts back what is missing.",
    },
    SettingDoc {
        key: "ami",
        default: "{ host = \"127.0.0.1\", port = 5038, username = \"astpatch\", secret_file = \"/etc/astpatch/ami.secret\" }",
        text: "Read Asterisk's security events over the Asterisk Manager Interface as well as the \
               logs (manager.conf: a user allowed to read security events). PJSIP's and AMI's own events name \
               the packet's or TCP peer's address; chan_sip's (Service SIP) never ban. Each field \
               arrives on its own line, so none can be spliced into another. Asterisk 11 has no \
               security events on AMI. Off unless set.",
    },
    SettingDoc {
        key: "dialplan_rejections",
        default: "false",
        text: "Count FreePBX's dialplan-written \"Rejecting unknown SIP connection from ADDR\" \
               lines (from-sip-external's Log()) as failures of that address. Off by default: any \
               dialplan Log() can write that text, so turn it on only when yours is the only one \
               that does.",
    },
    SettingDoc {
        key: "metrics_file",
        default: "\"/var/lib/prometheus/node-exporter/astpatch.prom\"",
        text: "The watcher writes its counters here in Prometheus' text format every 5 seconds, \
               for node_exporter's textfile collector (no socket is opened). Off unless set.",
    },
    SettingDoc {
        key: "crowdsec",
        default: "{ url = \"http://127.0.0.1:8080\", machine_id = \"pbx-a\", password_file = \"/etc/astpatch/crowdsec.secret\", api_key_file = \"/etc/astpatch/crowdsec.key\", pull_every = \"10s\", push = true, pull = true }",
        text: "Share bans with a fleet of PBXes through CrowdSec's Local API (also written as a \
               [crowdsec] table). url: the LAPI. push: every ban made here becomes an alert \
               with its decision, sent as the watcher machine machine_id (cscli machines add \
               ID --password ...) with password or password_file. pull: the fleet's Ip and \
               Range ban decisions are enforced here in firewall objects of their own \
               (astpatch-fleet), pulled every pull_every with the bouncer key api_key or \
               api_key_file (cscli bouncers add NAME); ignoreip, this host's own, loopback and \
               link-local addresses are never banned. Off unless set.",
    },
];

/// Keys off by default: written commented out, with an example value.
const OFF_BY_DEFAULT: &[&str] = &[
    "ami",
    "asterisk_conf",
    "bantime_increment",
    "ipv6_prefix",
    "metrics_file",
    "crowdsec",
];

/// The settings file the package installs as a conffile: every setting, commented out, at its
/// default, so the file changes nothing until the operator edits it.
pub fn default_settings_file() -> String {
    let mut o = String::from(
        "# astpatch settings (astpatch.toml(5)). Every line below is commented out and shows the\n\
         # default: uncomment and change what you need, then restart the watcher (systemctl restart astpatch).\n",
    );
    for s in SETTINGS {
        let _ = writeln!(o);
        for line in wrap(s.text, 92) {
            let _ = writeln!(o, "# {line}");
        }
        let example = if OFF_BY_DEFAULT.contains(&s.key) {
            " (example; off by default)"
        } else {
            ""
        };
        let _ = writeln!(o, "#{} = {}{}", s.key, s.default, example_comment(example));
    }
    o
}

fn example_comment(e: &str) -> String {
    if e.is_empty() {
        String::new()
    } else {
        format!("  #{e}")
    }
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![];
    let mut cur = String::new();
    for w in text.split_whitespace() {
        if !cur.is_empty() && cur.len() + 1 + w.len() > width {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(w);
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines
}

/// astpatch.toml(5).
pub fn settings_man_page() -> Vec<u8> {
    use roff::{Roff, bold, italic, roman};
    let mut r = Roff::new();
    r.control("TH", ["ASTPATCH.TOML", "5", "", env!("CARGO_PKG_VERSION")]);
    r.control("SH", ["NAME"]);
    r.text([roman(
        "astpatch.toml - settings of astpatch's watcher, scan, ban and status",
    )]);
    r.control("SH", ["SYNOPSIS"]);
    r.text([
        roman("/etc/astpatch/astpatch.toml, or the file given with "),
        bold("--config"),
    ]);
    r.control("SH", ["DESCRIPTION"]);
    r.text([roman(
        "A TOML file. Every key is optional; a missing file means every default. Unknown keys \
         are an error, reported with the line. Durations take s, m, h, d and w units.",
    )]);
    r.control("SH", ["SETTINGS"]);
    for s in SETTINGS {
        r.control("TP", []);
        r.text([
            bold(s.key),
            roman(" (default "),
            italic(s.default),
            roman(")"),
        ]);
        r.text([roman(s.text)]);
    }
    r.control("SH", ["SEE ALSO"]);
    r.text([roman("astpatch(1), astpatch-watch(1), astpatch-scan(1)")]);
    r.render().into_bytes()
}

/// astpatch(1) and one page per command (`astpatch-watch(1)` …): (file name, roff).
pub fn man_pages() -> Vec<(String, Vec<u8>)> {
    let cmd = Cli::command();
    let mut pages = vec![];
    let mut top = vec![];
    clap_mangen::Man::new(cmd.clone())
        .render(&mut top)
        .expect("rendering to memory");
    pages.push(("astpatch.1".to_owned(), top));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("astpatch-{}", sub.get_name());
        let sub = sub.clone().name(name.clone());
        let mut out = vec![];
        clap_mangen::Man::new(sub)
            .render(&mut out)
            .expect("rendering to memory");
        pages.push((format!("{name}.1"), out));
    }
    pages.push(("astpatch.toml.5".to_owned(), settings_man_page()));
    pages
}

/// The completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    let mut cmd = Cli::command();
    let mut out = vec![];
    clap_complete::generate(shell, &mut cmd, "astpatch", &mut out);
    out
}

/// The files the package installs from `packaging/`, as (path under `packaging/`, contents).
pub fn packaged_files() -> Vec<(String, Vec<u8>)> {
    use clap_complete::Shell;
    let mut files: Vec<(String, Vec<u8>)> = man_pages()
        .into_iter()
        .map(|(n, b)| (format!("man/{n}"), b))
        .collect();
    files.push(("completions/astpatch.bash".into(), completions(Shell::Bash)));
    files.push(("completions/_astpatch".into(), completions(Shell::Zsh)));
    files.push(("completions/astpatch.fish".into(), completions(Shell::Fish)));
    files.push(("astpatch.toml".into(), default_settings_file().into_bytes()));
    files.push((
        "astpatch.service".into(),
        crate::ban::unit_file::unit_text(
            Path::new("/usr/bin/astpatch"),
            Path::new(crate::settings::DEFAULT_PATH),
            &crate::settings::Settings::default(),
            &crate::settings::Overrides::default(),
        )
        .into_bytes(),
    ));
    files
}

/// Write every packaged file under `dir` (what `astpatch generate packaging DIR` does).
pub fn write_packaged(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut written = vec![];
    for (rel, bytes) in packaged_files() {
        let path = dir.join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        crate::atomic::write(&path, &bytes, None)?;
        written.push(rel);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_is_documented_and_every_documented_key_exists() {
        let mut s = crate::settings::Settings {
            bantime_increment: Some(crate::settings::BantimeIncrement {
                factor: 2,
                max: std::time::Duration::from_secs(604_800),
            }),
            ipv6_prefix: Some(64),
            metrics_file: Some("/m.prom".into()),
            ami: Some(crate::settings::AmiSettings {
                host: "127.0.0.1".into(),
                port: 5038,
                username: "astpatch".into(),
                secret: None,
                secret_file: Some("/etc/astpatch/ami.secret".into()),
            }),
            asterisk_conf: Some("/opt/a/asterisk.conf".into()),
            crowdsec: Some(
                toml::from_str(
                    "url = \"http://127.0.0.1:8080\"
push = false
api_key = \"k\"",
                )
                .unwrap(),
            ),
            ..crate::settings::Settings::default()
        };
        s.tags = vec!["0123456789abcdef".parse().unwrap()];
        // Keys left out of the file at their default are set, so every key is written.
        s.syslog_ident = vec!["asterisk".into(), "asterisk20".into()];
        s.dialplan_rejections = true;
        let v = toml::Value::try_from(&s).unwrap();
        let keys: Vec<&String> = v.as_table().unwrap().keys().collect();
        for k in &keys {
            assert!(
                SETTINGS.iter().any(|d| d.key == k.as_str()),
                "setting {k} is not in manual::SETTINGS"
            );
        }
        for d in SETTINGS {
            assert!(
                keys.iter().any(|k| k.as_str() == d.key),
                "manual::SETTINGS documents {} which Settings does not have",
                d.key
            );
        }
    }

    #[test]
    fn the_commented_default_file_parses_to_the_defaults_and_each_value_is_valid() {
        let text = default_settings_file();
        let parsed: crate::settings::Settings = toml::from_str(&text).unwrap();
        assert_eq!(parsed, crate::settings::Settings::default());
        // Uncommented one by one, every shown value is accepted.
        for line in text
            .lines()
            .filter(|l| l.starts_with('#') && l.contains(" = "))
        {
            let kv = line.trim_start_matches('#');
            let kv = kv.split("  #").next().unwrap();
            toml::from_str::<crate::settings::Settings>(kv).unwrap_or_else(|e| panic!("{kv}: {e}"));
        }
    }

    #[test]
    fn a_page_per_visible_command_and_one_for_the_settings() {
        let pages = man_pages();
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        for n in [
            "astpatch.1",
            "astpatch-watch.1",
            "astpatch-scan.1",
            "astpatch.toml.5",
        ] {
            assert!(names.contains(&n), "{names:?}");
        }
        let watch = &pages
            .iter()
            .find(|(n, _)| n == "astpatch-watch.1")
            .unwrap()
            .1;
        let watch = String::from_utf8_lossy(watch);
        assert!(watch.contains("\\-\\-from\\-start"), "{watch}");
    }
}
