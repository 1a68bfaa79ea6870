//! `astpatch install-watcher`: a hardened systemd unit that runs `astpatch watch --ban`,
//! enabled and started where systemd runs. `--dry-run` prints what would be written and run.
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::config::Settings;
use crate::error::{Error, Result};
use crate::exit_codes;
use crate::output::Style;

/// The same name the Debian package ships in /lib/systemd/system: a unit written here, in
/// /etc/systemd/system, overrides the package's.
pub const UNIT_NAME: &str = "astpatch.service";

/// The unit text. Root, but with only the capabilities the watcher needs: NET_ADMIN/NET_RAW
/// for the firewall, DAC_READ_SEARCH to read logs owned by the asterisk user.
pub fn unit_text(exe: &Path, config: &Path, settings: &Settings) -> String {
    let state = unit_word(&settings.state_dir);
    format!(
        "[Unit]
Description=astpatch watcher: ban Asterisk attackers through the firewall
After=network-online.target asterisk.service
Wants=network-online.target

[Service]
Type=simple
ExecStart={exe} watch --ban --config {config}
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
        );
        assert!(plain.contains("ExecStart=/usr/bin/astpatch watch --ban --config /etc/a.toml\n"));
        assert_eq!(unit_word(Path::new("/x/a\"b\\c")), "\"/x/a\\\"b\\\\c\"");
    }
}

pub fn run(
    config: Option<&Path>,
    settings: &Settings,
    unit_dir: &Path,
    dry_run: bool,
    style: Style,
) -> Result<u8> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::environment(format!("cannot find my own executable: {e}"), None))?;
    let config: PathBuf = config
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_PATH));
    let unit = unit_text(&exe, &config, settings);
    let path = unit_dir.join(UNIT_NAME);
    let commands = [
        vec!["systemctl", "daemon-reload"],
        vec!["systemctl", "enable", "--now", UNIT_NAME],
    ];
    if dry_run {
        println!("# would write {} (mode 0644):", path.display());
        print!("{unit}");
        println!("# then run:");
        for c in &commands {
            println!("{}", c.join(" "));
        }
        return Ok(exit_codes::SUCCESS);
    }
    std::fs::create_dir_all(unit_dir).map_err(|e| Error::io(unit_dir, e))?;
    // ReadWritePaths= needs the state directory to exist before the service starts.
    std::fs::create_dir_all(&settings.state_dir).map_err(|e| Error::io(&settings.state_dir, e))?;
    crate::atomic::write(&path, unit.as_bytes(), Some(0o644)).map_err(|e| Error::io(&path, e))?;
    println!("{} {}", style.ok("wrote"), path.display());
    if !config.exists() {
        println!(
            "{} {} does not exist; the watcher runs with the defaults (see `astpatch show-config`)",
            style.warn("note:"),
            config.display()
        );
    }
    if !Path::new("/run/systemd/system").exists() {
        println!(
            "{} systemd is not running here; start it with: systemctl daemon-reload && systemctl enable --now {UNIT_NAME}",
            style.warn("note:")
        );
        return Ok(exit_codes::SUCCESS);
    }
    for c in &commands {
        let out = Command::new(c[0]).args(&c[1..]).output().map_err(|e| {
            Error::environment(format!("{}: {e}", c[0]), Some("is systemd installed?"))
        })?;
        if !out.status.success() {
            return Err(Error::environment(
                format!(
                    "`{}` failed: {}",
                    c.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                Some(&format!("see: journalctl -u {UNIT_NAME}")),
            ));
        }
    }
    println!(
        "{} {UNIT_NAME} enabled and started; check with `astpatch status`",
        style.ok("ok:")
    );
    Ok(exit_codes::SUCCESS)
}
