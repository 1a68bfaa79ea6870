//! `astpatch install-watcher`: a hardened systemd unit that runs `astpatch watch --ban`,
//! enabled and started where systemd runs. `--dry-run` prints what would be written and run.
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::ban::unit_file::{UNIT_NAME, unit_text};
use crate::cli::output::Style;
use crate::error::{Error, Result};
use crate::exit_codes;
use crate::settings::{Overrides, Settings};

pub fn run(
    config: Option<&Path>,
    settings: &Settings,
    overrides: &Overrides,
    unit_dir: &Path,
    dry_run: bool,
    style: Style,
) -> Result<u8> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::environment(format!("cannot find my own executable: {e}"), None))?;
    let config: PathBuf = config
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from(crate::settings::DEFAULT_PATH));
    let unit = unit_text(&exe, &config, settings, overrides);
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
