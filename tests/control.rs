//! `astpatch ban` / `unban` / `status` as an operator runs them: bad targets are refused with
//! an input error; inside a network namespace real packets stop and pass again.
use crate::common;

use std::process::Command;

use common::TestEnv;
use common::netns::Pair;

fn config(env: &TestEnv, backend: &str) -> std::path::PathBuf {
    env.settings(&format!(
        "backend = \"{backend}\"\nignoreip = [\"127.0.0.0/8\", \"::1\", \"10.99.0.0/16\"]\n"
    ))
}

fn astpatch(ns: Option<&str>, args: &[&str]) -> std::process::Output {
    common::astpatch_in(ns).args(args).output()
}

#[test]
fn bad_and_protected_targets_are_input_errors() {
    let d = TestEnv::new();
    let cfg = config(&d, "iptables");
    let cfg = cfg.to_str().unwrap();
    for (target, words) in [
        ("not-an-ip", "not an IP address"),
        ("10.0.0.1/33", "not an IP address"),
        ("203.0.113.7/24", "host bits"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.99.3.4", "ignoreip"),
        ("0.0.0.0/0", "wider"),
    ] {
        let out = astpatch(None, &["ban", target, "--config", cfg]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{target}: {err}");
        assert!(err.contains(words), "{target}: {err}");
    }
    let out = astpatch(
        None,
        &["ban", "203.0.113.7", "--for", "2x", "--config", cfg],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        !d.path().join("state/bans.journal").exists(),
        "nothing recorded"
    );
}

fn control_cycle(backend: &str) {
    let pair = Pair::new();
    let d = TestEnv::new();
    let cfg = config(&d, backend);
    let cfg = cfg.to_str().unwrap();
    let ns = Some(pair.pbx.as_str());
    for v6 in [false, true] {
        let peer = pair.peer_addr(v6);
        assert!(pair.peer_reaches(v6));
        let out = astpatch(ns, &["ban", peer, "--for", "2h", "--config", cfg]);
        assert!(
            out.status.success(),
            "{backend}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !pair.peer_reaches(v6),
            "{backend} v6={v6}: not dropped after `astpatch ban`"
        );
    }
    // The pbx's own address is refused.
    let out = astpatch(ns, &["ban", pair.pbx4, "--config", cfg]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = astpatch(ns, &["status", "--json", "--config", cfg]);
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["currently_banned"], 2, "{s}");
    assert_eq!(s["total_banned"], 2);
    assert_eq!(s["watcher"]["running"], false);
    assert_eq!(s["hooked"], true, "{s}");
    assert_eq!(s["banned"][0]["in_kernel"], true, "{s}");
    assert_eq!(s["banned"][0]["reason"], "manual");
    let left = s["banned"][0]["expires_in"].as_i64().unwrap();
    assert!((7190..=7200).contains(&left), "{left}");
    let text = astpatch(ns, &["status", "--config", cfg]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("Currently banned:   2") && text.contains(pair.peer4),
        "{text}"
    );
    assert!(text.contains("Firewall:           active"), "{text}");

    let out = astpatch(ns, &["unban", pair.peer4, "--config", cfg]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        pair.peer_reaches(false) && !pair.peer_reaches(true),
        "{backend}: unban one"
    );
    let out = astpatch(ns, &["unban", pair.peer4, "--config", cfg]);
    assert_eq!(out.status.code(), Some(1), "unbanning twice: nothing to do");
    let out = astpatch(ns, &["unban", "--all", "--config", cfg]);
    assert!(out.status.success());
    assert!(pair.peer_reaches(true), "{backend}: unban --all");
    let out = astpatch(ns, &["status", "--json", "--config", cfg]);
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["currently_banned"], 0);
}

#[test]
fn ban_status_unban_iptables() {
    if common::require_root("ban_status_unban_iptables") {
        control_cycle("iptables");
    }
}

#[test]
fn ban_status_unban_ipset() {
    if common::require_root("ban_status_unban_ipset") {
        control_cycle("ipset");
    }
}

#[test]
fn ban_status_unban_nftables() {
    if common::require_root("ban_status_unban_nftables") {
        control_cycle("nftables");
    }
}

#[test]
fn a_missing_firewall_tool_names_the_package_and_records_nothing() {
    let d = TestEnv::new();
    for (backend, package) in [
        ("iptables", "iptables"),
        ("ipset", "ipset"),
        ("nftables", "nftables"),
    ] {
        let cfg = config(&d, backend);
        let out = Command::new(common::bin())
            .args(["ban", "203.0.113.7", "--config", cfg.to_str().unwrap()])
            .env("PATH", d.path()) // no firewall tools here
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{backend}: {err}");
        assert!(
            err.contains(&format!("apt-get install {package}")),
            "{backend}: {err}"
        );
        assert!(
            !d.path().join("state/bans.journal").exists(),
            "{backend}: recorded anyway"
        );
    }
}

/// What a host booted with `ipv6.disable=1` shows: `/proc/sys/net` without `ipv6`. Faked for
/// one command in a private mount namespace (a tmpfs over /proc/sys/net, inside the test's
/// network namespace); the host's own /proc is untouched.
fn astpatch_without_ipv6(ns: &str, args: &[&str]) -> std::process::Output {
    let script = format!(
        "mount -t tmpfs none /proc/sys/net && mkdir /proc/sys/net/ipv4 && exec {} \"$@\"",
        common::bin()
    );
    Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "unshare",
            "-m",
            "--propagation",
            "private",
        ])
        .args(["sh", "-c", &script, "sh"])
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

#[test]
fn without_ipv6_ban_is_ipv4_only_and_refuses_ipv6() {
    if !common::require_root("without_ipv6_ban_is_ipv4_only_and_refuses_ipv6") {
        return;
    }
    for backend in ["iptables", "ipset"] {
        let pair = Pair::new();
        let d = TestEnv::new();
        let cfg = config(&d, backend);
        let cfg = cfg.to_str().unwrap();
        let out = astpatch_without_ipv6(&pair.pbx, &["ban", pair.peer6, "--config", cfg]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{backend}: {err}");
        assert!(
            err.contains("IPv6 is disabled on this host; nothing to ban"),
            "{backend}: {err}"
        );
        assert!(
            !d.path().join("state/bans.journal").exists(),
            "{backend}: recorded anyway"
        );
        let out = astpatch_without_ipv6(&pair.pbx, &["ban", pair.peer4, "--config", cfg]);
        assert!(
            out.status.success(),
            "{backend}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!pair.peer_reaches(false), "{backend}: v4 ban does not drop");
        assert!(pair.peer_reaches(true), "{backend}");
        // Nothing of the IPv6 half was created.
        let v6 = pair.exec(&pair.pbx, &["ip6tables", "-w", "-S", "INPUT"]);
        let v6 = String::from_utf8_lossy(&v6.stdout);
        assert!(
            !v6.contains("ASTPATCH") && !v6.contains("astpatch6"),
            "{backend}: {v6}"
        );
        let sets = pair.exec(&pair.pbx, &["ipset", "list", "-n"]);
        assert!(
            !String::from_utf8_lossy(&sets.stdout).contains("astpatch6"),
            "{backend}"
        );
        let out = astpatch_without_ipv6(&pair.pbx, &["unban", pair.peer4, "--config", cfg]);
        assert!(out.status.success(), "{backend}");
        assert!(pair.peer_reaches(false), "{backend}: still dropped");
    }
}

/// `unban --all --purge` before an uninstall: with bans held by all three backends at once,
/// every chain, set and table astpatch made is gone afterwards and the peer gets through.
#[test]
fn purge_removes_every_backends_objects() {
    if !common::require_root("purge_removes_every_backends_objects") {
        return;
    }
    let pair = Pair::new();
    let ns = Some(pair.pbx.as_str());
    let mut cfgs = vec![];
    let mut envs = vec![];
    for backend in ["iptables", "ipset", "nftables"] {
        let sub = TestEnv::new();
        let cfg = config(&sub, backend);
        envs.push(sub);
        let out = astpatch(ns, &["ban", pair.peer4, "--config", cfg.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{backend}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        cfgs.push(cfg);
    }
    assert!(!pair.peer_reaches(false));
    let exists = |argv: &[&str]| {
        Command::new("ip")
            .args(["netns", "exec", &pair.pbx])
            .args(argv)
            .output()
            .unwrap()
            .status
            .success()
    };
    let objects: [&[&str]; 4] = [
        &["iptables", "-w", "-S", "ASTPATCH"],
        &["ip6tables", "-w", "-S", "ASTPATCH"],
        &["ipset", "list", "-n", "astpatch4"],
        &["nft", "list", "table", "inet", "astpatch"],
    ];
    for o in objects {
        assert!(exists(o), "{o:?} should exist before the purge");
    }
    // A running watcher would put them back: refused while one holds the state's lock.
    let state = envs[0].join("state");
    let lock = astpatch::ban::state::lock_watcher(&state).unwrap();
    let cfg0 = cfgs[0].to_str().unwrap();
    let out = astpatch(ns, &["unban", "--all", "--purge", "--config", cfg0]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("stop it first"));
    assert!(exists(objects[0]), "nothing removed while refused");
    drop(lock);
    // --purge needs --all.
    let out = astpatch(ns, &["unban", "--purge", "--config", cfg0]);
    assert_eq!(out.status.code(), Some(2));

    let out = astpatch(ns, &["unban", "--all", "--purge", "--config", cfg0]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for o in objects {
        assert!(!exists(o), "{o:?} left after the purge:\n{text}");
    }
    assert!(pair.peer_reaches(false) && pair.peer_reaches(true));
    let out = astpatch(ns, &["status", "--json", "--config", cfg0]);
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["currently_banned"], 0, "{s}");
}

/// One control surface: what `watch --state-dir X --backend B` uses, `ban`, `status` and
/// `unban` take the same way (and `--config` anywhere on the line), so they see the bans that
/// watcher made. An `unban` that finds nothing leaves no state directory behind.
#[test]
fn every_command_takes_the_same_state_dir_and_backend_overrides() {
    if !common::require_root("every_command_takes_the_same_state_dir_and_backend_overrides") {
        return;
    }
    let pair = Pair::new();
    let d = TestEnv::new();
    // The settings file says iptables and another state dir; the overrides win everywhere.
    let cfg = config(&d, "iptables");
    let cfg = cfg.to_str().unwrap();
    let other = d.path().join("other-state");
    let other_s = other.to_str().unwrap();
    let ns = Some(pair.pbx.as_str());
    let peer = pair.peer_addr(false);

    let missing = d.path().join("never-made");
    let out = astpatch(
        ns,
        &[
            "--config",
            cfg,
            "unban",
            peer,
            "--state-dir",
            missing.to_str().unwrap(),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !missing.exists(),
        "an unban that found nothing made {}",
        missing.display()
    );

    let out = astpatch(
        ns,
        &[
            "--config",
            cfg,
            "ban",
            peer,
            "--state-dir",
            other_s,
            "--backend",
            "nftables",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !pair.peer_reaches(false),
        "dropped after ban --backend nftables"
    );
    assert!(other.join("bans.journal").exists());
    assert!(
        !d.path().join("state").exists(),
        "the settings' state dir was used"
    );

    let status = |extra: &[&str]| {
        let mut args = vec!["status", "--json", "--config", cfg];
        args.extend_from_slice(extra);
        let out = astpatch(ns, &args);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let s = status(&["--state-dir", other_s, "--backend", "nftables"]);
    assert_eq!(s["currently_banned"], 1, "{s}");
    assert_eq!(s["backend"], "nftables", "{s}");
    assert_eq!(s["banned"][0]["in_kernel"], true, "{s}");
    let s = status(&[]);
    assert_eq!(
        s["currently_banned"], 0,
        "without the override: the settings' state dir"
    );

    let out = astpatch(
        ns,
        &[
            "unban",
            peer,
            "--state-dir",
            other_s,
            "--backend",
            "nftables",
            "--config",
            cfg,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(pair.peer_reaches(false), "passes again after unban");
    let out = astpatch(ns, &["--config", cfg, "unban", "--all", "--purge"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
