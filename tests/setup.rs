//! `astpatch import-fail2ban` and `astpatch install-watcher --dry-run`: their output is the
//! contract (a settings file, a systemd unit), so it is snapshotted.
mod common;

use std::process::Command;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(common::bin())
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn install_watcher_dry_run_prints_the_hardened_unit() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("astpatch.toml");
    std::fs::write(&cfg, "state_dir = \"/var/lib/astpatch\"\n").unwrap();
    let (code, out, err) = run(&[
        "install-watcher",
        "--dry-run",
        "--config",
        cfg.to_str().unwrap(),
        "--unit-dir",
        d.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(!d.path().join("astpatch.service").exists(), "dry run wrote");
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(&regex_escape(common::bin()), "[ASTPATCH]");
    settings.add_filter(&regex_escape(d.path().to_str().unwrap()), "[TMP]");
    settings.bind(|| insta::assert_snapshot!(out));
    for must in [
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_DAC_READ_SEARCH",
        "watch --ban",
    ] {
        assert!(out.contains(must), "{must}");
    }
}

#[test]
fn install_watcher_writes_the_unit_where_told() {
    // Only where systemd is not running: otherwise this would enable a service on the host.
    if std::path::Path::new("/run/systemd/system").exists() {
        eprintln!("SKIP install_watcher_writes_the_unit_where_told: systemd runs here");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("astpatch.toml");
    std::fs::write(
        &cfg,
        format!("state_dir = \"{}\"\n", d.path().join("state").display()),
    )
    .unwrap();
    let (code, out, err) = run(&[
        "install-watcher",
        "--config",
        cfg.to_str().unwrap(),
        "--unit-dir",
        d.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("systemd is not running here"), "{out}");
    let unit = std::fs::read_to_string(d.path().join("astpatch.service")).unwrap();
    assert!(unit.contains("ExecStart=") && unit.contains("[Install]"));
}

fn regex_escape(s: &str) -> String {
    regex::escape(s)
}

/// The seed's jail.local, with one key per line as fail2ban reads it.
const SEED_JAIL: &str = "[DEFAULT]\nignoreip =\nbackend = polling\nbantime = 3600 ; 1hour\nmaxretry= 5\nusedns = no\n\n[asterisk]\nenabled = true\n";

#[test]
fn import_fail2ban_turns_the_seed_jail_into_settings() {
    let d = tempfile::tempdir().unwrap();
    let jail = d.path().join("jail.local");
    std::fs::write(&jail, SEED_JAIL).unwrap();
    let (code, out, err) = run(&["import-fail2ban", jail.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let out = out.replace(d.path().to_str().unwrap(), "[TMP]");
    insta::assert_snapshot!(out);
    // Written with --output, it is a valid settings file for every other command.
    let toml = d.path().join("astpatch.toml");
    let (code, _, err) = run(&[
        "import-fail2ban",
        jail.to_str().unwrap(),
        "--output",
        toml.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, shown, err) = run(&["show-config", "--config", toml.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        shown.contains("maxretry = 5") && shown.contains("bantime = \"1h\""),
        "{shown}"
    );
    // A second write refuses without --force.
    let (code, _, err) = run(&[
        "import-fail2ban",
        jail.to_str().unwrap(),
        "--output",
        toml.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn import_fail2ban_explains_a_wrong_file() {
    let d = tempfile::tempdir().unwrap();
    let jail = d.path().join("jail.local");
    std::fs::write(&jail, "[sshd]\nenabled = true\n").unwrap();
    let (code, _, err) = run(&["import-fail2ban", jail.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("no [asterisk] jail") && err.contains("--jail"),
        "{err}"
    );
    let (code, _, err) = run(&["import-fail2ban", "/nonexistent/jail.local"]);
    assert_eq!(code, 2, "{err}");
}
