//! The watcher's systemd unit: the text `install-watcher` writes, and what systemd knows about
//! it for `verify`: the unit file (and whether its ExecStart bans), whether systemd runs, and the
//! unit's active/enabled state.
//! systemctl sits behind a trait so the decisions built on this are tested without systemd.
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::asterisk::conf::under;
use crate::settings::{Overrides, Settings};

/// Where `astpatch install-watcher` writes the unit by default.
pub const UNIT_DIR: &str = "/etc/systemd/system";

/// Asks systemd one question (`systemctl VERB UNIT`); `None` when there is no answer.
pub trait Systemctl {
    fn query(&self, verb: &str, unit: &str) -> Option<String>;
}

/// The real `systemctl`, run by argv.
pub struct SystemSystemctl;

impl Systemctl for SystemSystemctl {
    fn query(&self, verb: &str, unit: &str) -> Option<String> {
        // is-active/is-enabled exit non-zero for "inactive"/"disabled" but still print the
        // state; an unknown unit prints nothing on stdout.
        let out = Command::new("systemctl").args([verb, unit]).output().ok()?;
        let s = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (!s.is_empty()).then_some(s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitFile {
    pub path: PathBuf,
    /// ExecStart= passes `--ban`; without it the service only reports.
    pub bans: bool,
}

impl UnitFile {
    /// The unit's name (`astpatch.service`, or the older `astpatch-watch.service`).
    pub fn name(&self) -> &str {
        self.path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(UNIT_NAME)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Systemd {
    /// `systemctl is-active`: active, inactive, failed, activating…
    pub active: String,
    /// `systemctl is-enabled`: enabled, disabled, masked…; "not-found" when unknown.
    pub enabled: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnitState {
    pub file: Option<UnitFile>,
    /// `None` when systemd is not running here (no /run/systemd/system).
    pub systemd: Option<Systemd>,
}

impl UnitState {
    /// systemd runs and knows the unit.
    pub fn loaded(&self) -> Option<&Systemd> {
        self.systemd.as_ref().filter(|s| s.enabled != "not-found")
    }

    /// Somebody installed the unit (the file is there, or systemd knows it).
    pub fn installed(&self) -> bool {
        self.file.is_some() || self.loaded().is_some()
    }

    /// The unit's state for a check's detail; `None` when there is no unit.
    pub fn describe(&self) -> Option<String> {
        match (self.loaded(), &self.file) {
            (Some(s), f) => Some(format!(
                "unit {} {}, {}",
                f.as_ref().map_or(UNIT_NAME, |f| f.name()),
                s.active,
                s.enabled
            )),
            (None, Some(f)) if self.systemd.is_none() => Some(format!(
                "unit file {} present but systemd is not running here",
                f.path.display()
            )),
            _ => None,
        }
    }
}

/// True when an ExecStart= line of the unit runs the watcher with `--ban`.
pub fn exec_start_bans(unit: &str) -> bool {
    unit.lines()
        .filter_map(|l| l.trim().strip_prefix("ExecStart="))
        .any(|cmd| cmd.split_whitespace().any(|w| w == "--ban"))
}

/// Where the unit may be, in systemd's order: the operator's (`install-watcher`), the
/// package's, and the name `install-watcher` used before the package existed.
const UNIT_PLACES: &[(&str, &str)] = &[
    (UNIT_DIR, UNIT_NAME),
    ("/lib/systemd/system", UNIT_NAME),
    ("/usr/lib/systemd/system", UNIT_NAME),
    (UNIT_DIR, "astpatch-watch.service"),
];

/// Read the unit under `root` and, when systemd runs there, ask it about the unit.
pub fn unit_state(root: &Path, systemctl: &dyn Systemctl) -> UnitState {
    let found = UNIT_PLACES.iter().find_map(|(dir, name)| {
        let path = under(root, &Path::new(dir).join(name));
        fs::read_to_string(&path)
            .ok()
            .map(|text| (*name, path, text))
    });
    let name = found.as_ref().map_or(UNIT_NAME, |f| f.0);
    let file = found.map(|(_, path, text)| UnitFile {
        bans: exec_start_bans(&text),
        path,
    });
    let systemd = under(root, Path::new("/run/systemd/system"))
        .is_dir()
        .then(|| Systemd {
            active: systemctl
                .query("is-active", name)
                .unwrap_or_else(|| "unknown".into()),
            enabled: systemctl
                .query("is-enabled", name)
                .unwrap_or_else(|| "not-found".into()),
        });
    UnitState { file, systemd }
}

/// The same name the Debian package ships in /lib/systemd/system: a unit written here, in
/// /etc/systemd/system, overrides the package's.
pub const UNIT_NAME: &str = "astpatch.service";

/// The unit text. Root, but with only the capabilities the watcher needs: NET_ADMIN/NET_RAW
/// for the firewall, DAC_READ_SEARCH to read logs owned by the asterisk user.
/// `overrides` are the command line's (`install-watcher --state-dir …`), passed on to the
/// watcher so it runs with what the unit was made for.
pub fn unit_text(exe: &Path, config: &Path, settings: &Settings, overrides: &Overrides) -> String {
    let state = unit_word(&settings.state_dir);
    let mut extra = String::new();
    if let Some(d) = &overrides.state_dir {
        extra.push_str(&format!(" --state-dir {}", unit_word(d)));
    }
    if let Some(b) = overrides.backend {
        extra.push_str(&format!(" --backend {b}"));
    }
    format!(
        "[Unit]
Description=astpatch watcher: ban Asterisk attackers through the firewall
After=network-online.target asterisk.service
Wants=network-online.target

[Service]
Type=simple
ExecStart={exe} watch --ban --config {config}{extra}
# Re-reads the settings (systemctl reload astpatch); logs, backend and state_dir need a restart.
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=2s
# Least privilege: root, but only the capabilities the firewall and log reading need.
CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_DAC_READ_SEARCH
AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW CAP_DAC_READ_SEARCH
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths={state} /run -/var/lib/prometheus/node-exporter
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_UNIX AF_NETLINK AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
UMask=0077

[Install]
WantedBy=multi-user.target
",
        exe = unit_word(exe),
        config = unit_word(config),
    )
}

/// A path as one word of a unit file: `%` is a systemd specifier (doubled), and a path with
/// blanks, quotes or backslashes is quoted with C escapes, or systemd would split it.
fn unit_word(p: &Path) -> String {
    let text = p.to_string_lossy().replace('%', "%%");
    if !text.contains(|c: char| c.is_whitespace() || matches!(c, '"' | '\\' | '\'' | ';')) {
        return text;
    }
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake(&'static str, &'static str);
    impl Systemctl for Fake {
        fn query(&self, verb: &str, _: &str) -> Option<String> {
            let s = if verb == "is-active" { self.0 } else { self.1 };
            (!s.is_empty()).then(|| s.to_owned())
        }
    }

    #[test]
    fn exec_start_needs_the_ban_flag() {
        assert!(exec_start_bans(
            "[Service]\nExecStart=/usr/bin/astpatch watch --ban --config /etc/a.toml\n"
        ));
        assert!(!exec_start_bans(
            "[Service]\nExecStart=/usr/bin/astpatch watch --config /etc/a.toml\n# --ban\n"
        ));
        assert!(!exec_start_bans("[Service]\nExecStart=/x --banana\n"));
    }

    #[test]
    fn systemd_is_asked_only_where_it_runs() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        assert_eq!(
            unit_state(r, &Fake("active", "enabled")),
            UnitState::default()
        );
        let dir = r.join("etc/systemd/system");
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join(UNIT_NAME),
            "[Service]\nExecStart=/a watch --config /c\n",
        )
        .unwrap();
        let st = unit_state(r, &Fake("active", "enabled"));
        assert!(!st.file.as_ref().unwrap().bans);
        assert_eq!(st.systemd, None);
        assert!(st.installed());
        assert!(st.describe().unwrap().contains("systemd is not running"));

        fs::create_dir_all(r.join("run/systemd/system")).unwrap();
        let st = unit_state(r, &Fake("failed", "enabled"));
        assert_eq!(
            st.describe().unwrap(),
            "unit astpatch.service failed, enabled"
        );
        // The package's unit, and the name install-watcher used before it, are found too.
        fs::remove_file(dir.join(UNIT_NAME)).unwrap();
        for (d, name) in [
            ("lib/systemd/system", UNIT_NAME),
            ("etc/systemd/system", "astpatch-watch.service"),
        ] {
            let path = r.join(d).join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, "[Service]\nExecStart=/a watch --ban\n").unwrap();
            let st = unit_state(r, &Fake("active", "enabled"));
            assert!(st.file.as_ref().unwrap().bans);
            assert_eq!(
                st.describe().unwrap(),
                format!("unit {name} active, enabled")
            );
            fs::remove_file(path).unwrap();
        }
        // systemd runs but knows no such unit, and the file is elsewhere.
        let st = unit_state(r, &Fake("inactive", ""));
        assert!(!st.installed());
        assert_eq!(st.describe(), None);
    }
}

#[cfg(test)]
mod unit_text_tests {
    use super::*;

    #[test]
    fn paths_with_blanks_or_percent_stay_one_word() {
        let s = Settings {
            state_dir: "/var/lib/ast patch".into(),
            ..Settings::default()
        };
        let unit = unit_text(
            Path::new("/opt/my tools/astpatch"),
            Path::new("/etc/astpatch/100%.toml"),
            &s,
            &Overrides::default(),
        );
        assert!(
            unit.contains(
                "ExecStart=\"/opt/my tools/astpatch\" watch --ban --config /etc/astpatch/100%%.toml\n"
            ),
            "{unit}"
        );
        assert!(
            unit.contains(
                "ReadWritePaths=\"/var/lib/ast patch\" /run -/var/lib/prometheus/node-exporter\n"
            ),
            "{unit}"
        );
        let plain = unit_text(
            Path::new("/usr/bin/astpatch"),
            Path::new("/etc/a.toml"),
            &Settings::default(),
            &Overrides::default(),
        );
        assert!(plain.contains("ExecStart=/usr/bin/astpatch watch --ban --config /etc/a.toml\n"));
        assert_eq!(unit_word(Path::new("/x/a\"b\\c")), "\"/x/a\\\"b\\\\c\"");
    }
}
