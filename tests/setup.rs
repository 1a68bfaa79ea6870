//! `astpatch import-fail2ban` and `astpatch install-watcher --dry-run`: their output is the
//! contract (a settings file, a systemd unit), so it is snapshotted.
use crate::common;

#[test]
fn install_watcher_dry_run_prints_the_hardened_unit() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("astpatch.toml");
    std::fs::write(&cfg, "state_dir = \"/var/lib/astpatch\"\n").unwrap();
    let common::Run {
        code,
        stdout: out,
        stderr: err,
    } = common::astpatch()
        .args([
            "install-watcher",
            "--dry-run",
            "--config",
            cfg.to_str().unwrap(),
            "--unit-dir",
            d.path().to_str().unwrap(),
        ])
        .run();
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
    let common::Run {
        code,
        stdout: out,
        stderr: err,
    } = common::astpatch()
        .args([
            "install-watcher",
            "--config",
            cfg.to_str().unwrap(),
            "--unit-dir",
            d.path().to_str().unwrap(),
        ])
        .run();
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
    let common::Run {
        code,
        stdout: out,
        stderr: err,
    } = common::astpatch()
        .args(["import-fail2ban", jail.to_str().unwrap()])
        .run();
    assert_eq!(code, 0, "{err}");
    let out = out.replace(d.path().to_str().unwrap(), "[TMP]");
    insta::assert_snapshot!(out);
    // Written with --output, it is a valid settings file for every other command.
    let toml = d.path().join("astpatch.toml");
    let common::Run {
        code,
        stdout: _,
        stderr: err,
    } = common::astpatch()
        .args([
            "import-fail2ban",
            jail.to_str().unwrap(),
            "--output",
            toml.to_str().unwrap(),
        ])
        .run();
    assert_eq!(code, 0, "{err}");
    let common::Run {
        code,
        stdout: shown,
        stderr: err,
    } = common::astpatch()
        .args(["show-config", "--config", toml.to_str().unwrap()])
        .run();
    assert_eq!(code, 0, "{err}");
    assert!(
        shown.contains("maxretry = 5") && shown.contains("bantime = \"1h\""),
        "{shown}"
    );
    // A second write refuses without --force.
    let common::Run {
        code,
        stdout: _,
        stderr: err,
    } = common::astpatch()
        .args([
            "import-fail2ban",
            jail.to_str().unwrap(),
            "--output",
            toml.to_str().unwrap(),
        ])
        .run();
    assert_eq!(code, 2, "{err}");
}

#[test]
fn import_fail2ban_explains_a_wrong_file() {
    let d = tempfile::tempdir().unwrap();
    let jail = d.path().join("jail.local");
    std::fs::write(&jail, "[sshd]\nenabled = true\n").unwrap();
    let common::Run {
        code,
        stdout: _,
        stderr: err,
    } = common::astpatch()
        .args(["import-fail2ban", jail.to_str().unwrap()])
        .run();
    assert_eq!(code, 2);
    assert!(
        err.contains("no [asterisk] jail") && err.contains("--jail"),
        "{err}"
    );
    let common::Run {
        code,
        stdout: _,
        stderr: err,
    } = common::astpatch()
        .args(["import-fail2ban", "/nonexistent/jail.local"])
        .run();
    assert_eq!(code, 2, "{err}");
}
