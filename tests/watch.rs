//! The watcher for real: it runs inside the "pbx" namespace with a temp log and state dir;
//! real Asterisk failure lines naming the peer get the peer's real packets dropped; a flush of
//! the firewall while it runs, or an ACCEPT inserted above our INPUT hook, is repaired by its
//! periodic check; `kill -9`
//! plus a flushed firewall (as after a reboot) and a restart bring the ban back; a manual
//! unban sticks; a ban expires on time; a second watcher refuses. Per backend, IPv4 and IPv6.
use crate::common;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use astpatch::firewall::{self, SystemRunner};
use common::netns::Pair;

const PJSIP: &str = "NOTICE[4242] res_pjsip/pjsip_distributor.c: Request 'REGISTER' from '<sip:100@10.250.0.1>' failed for 'ADDR:5060' (callid: 1a2b3c) - No matching endpoint found";

fn append_failures(log: &Path, addr: &str, n: usize) {
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .open(log)
        .unwrap();
    for _ in 0..n {
        let ts = "[2026-11-26 18:00:00]";
        writeln!(f, "{ts} {}", PJSIP.replace("ADDR", addr)).unwrap();
    }
}

struct Watcher {
    child: Child,
    out: PathBuf,
}

impl Watcher {
    fn start(pair: &Pair, cfg: &Path, out: PathBuf, state: &Path) -> Watcher {
        Self::start_in(pair, &[common::bin()], cfg, out, state)
    }

    /// As on a host booted with `ipv6.disable=1`: `/proc/sys/net` without `ipv6`, faked by a
    /// tmpfs in a private mount namespace (inside the test's network namespace; each step
    /// execs, so the child is the watcher itself).
    fn start_without_ipv6(pair: &Pair, cfg: &Path, out: PathBuf, state: &Path) -> Watcher {
        let script = format!(
            "mount -t tmpfs none /proc/sys/net && mkdir /proc/sys/net/ipv4 && exec {} \"$@\"",
            common::bin()
        );
        let wrap = [
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
            "sh",
        ];
        Self::start_in(pair, &wrap, cfg, out, state)
    }

    fn start_in(pair: &Pair, run: &[&str], cfg: &Path, out: PathBuf, state: &Path) -> Watcher {
        let _ = std::fs::remove_file(state.join("watch.pid"));
        // Check the firewall every second, not every minute.
        let text = std::fs::read_to_string(cfg).unwrap();
        if !text.contains("firewall_check") {
            // Top-level key: before any [table] of the file.
            std::fs::write(cfg, format!("firewall_check = \"1s\"\n{text}")).unwrap();
        }
        let child = Command::new("ip")
            .args(["netns", "exec", &pair.pbx])
            .args(run)
            .args(["watch", "--ban", "--config"])
            .arg(cfg)
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let w = Watcher { child, out };
        wait_for(|| state.join("watch.pid").exists(), "watcher start", &w);
        w
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(mut cond: impl FnMut() -> bool, what: &str, w: &Watcher) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "timed out waiting for {what}; watcher said:\n{}",
        w.output()
    );
}

fn scenario(backend: &str) {
    let pair = Pair::new();
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("messages");
    let state = d.path().join("state");
    let cfg = d.path().join("astpatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "maxretry = 3\nbackend = \"{backend}\"\nstate_dir = \"{}\"\nlogs = [\"{}\"]\n",
            state.display(),
            log.display()
        ),
    )
    .unwrap();
    // The log does not exist yet: the watcher waits for it.
    let mut w = Watcher::start(&pair, &cfg, d.path().join("out1"), &state);
    for v6 in [false, true] {
        let addr = pair.peer_addr(v6);
        assert!(pair.peer_reaches(v6), "{backend}: blocked before failures");
        let shown = if v6 {
            format!("[{addr}]")
        } else {
            addr.to_string()
        };
        append_failures(&log, &shown, 2);
        std::thread::sleep(Duration::from_millis(300));
        assert!(pair.peer_reaches(v6), "{backend}: banned below maxretry");
        append_failures(&log, &shown, 1);
        wait_for(
            || !pair.peer_reaches(v6),
            &format!("{backend} v6={v6} ban"),
            &w,
        );
    }
    assert!(
        w.output().contains(&format!(
            "ban {}/32 for 1h: 3 failures (pjsip-no-endpoint)",
            pair.peer4
        )),
        "{}",
        w.output()
    );

    // Someone flushes the firewall while the watcher runs: the periodic check puts the bans
    // (and for iptables the INPUT hook) back, without a restart.
    let flush: &[&[&str]] = match backend {
        "iptables" => &[&["iptables", "-w", "-F"], &["ip6tables", "-w", "-F"]],
        "ipset" => &[&["ipset", "flush"]],
        _ => &[&["nft", "flush", "ruleset"]],
    };
    for argv in flush {
        pair.exec_ok(&pair.pbx, argv);
    }
    wait_for(
        || w.output().contains("firewall repaired"),
        &format!("{backend}: repair after an outside flush"),
        &w,
    );
    wait_for(
        || !pair.peer_reaches(false) && !pair.peer_reaches(true),
        &format!("{backend}: packets dropped again after the flush"),
        &w,
    );
    // How many bans a repair line counts is not asserted: iptables and ip6tables are flushed
    // one after the other, and a check falling between them may count one missing ban yet
    // restore both. The dropped packets above are what matters.

    // A tool inserts an ACCEPT for the peer above our INPUT hook (a firewalld reload, docker):
    // the periodic check moves the hook back to the top.
    if backend != "nftables" {
        pair.exec_ok(
            &pair.pbx,
            &[
                "iptables", "-w", "-I", "INPUT", "1", "-s", pair.peer4, "-j", "ACCEPT",
            ],
        );
        wait_for(
            || w.output().contains("moved our INPUT hook back to the top"),
            &format!("{backend}: hook moved back on top"),
            &w,
        );
        let input = pair.exec(&pair.pbx, &["iptables", "-w", "-S", "INPUT"]);
        let input = String::from_utf8_lossy(&input.stdout).into_owned();
        let first = input.lines().find(|l| l.starts_with("-A INPUT")).unwrap();
        assert!(
            first.contains("ASTPATCH") || first.contains("astpatch4"),
            "{input}"
        );
        assert!(input.contains("-j ACCEPT"), "the other rule stays: {input}");
        assert!(
            !pair.peer_reaches(false),
            "{backend}: ACCEPT above the hook"
        );
    }

    // A second watcher on the same state refuses.
    let second = Command::new("ip")
        .args([
            "netns",
            "exec",
            &pair.pbx,
            common::bin(),
            "watch",
            "--ban",
            "--config",
        ])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(
        second.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(String::from_utf8_lossy(&second.stderr).contains("already uses"));

    // kill -9, then lose the firewall's content (as a reboot or `iptables -F` would).
    w.child.kill().unwrap();
    w.child.wait().unwrap();
    let mut fw = firewall::for_backend(
        backend.parse_backend(),
        Box::new(SystemRunner::in_netns(&pair.pbx)),
    );
    fw.teardown().unwrap();
    assert!(
        pair.peer_reaches(false) && pair.peer_reaches(true),
        "{backend}: teardown"
    );
    let w = Watcher::start(&pair, &cfg, d.path().join("out2"), &state);
    assert!(
        w.output().contains("2 active bans (2 re-added"),
        "{}",
        w.output()
    );
    assert!(
        !pair.peer_reaches(false) && !pair.peer_reaches(true),
        "{backend}: restart did not restore"
    );

    // Manual unban while the watcher runs sticks; a short manual ban expires on time.
    let ctl = |args: &[&str]| {
        let out = Command::new("ip")
            .args(["netns", "exec", &pair.pbx, common::bin()])
            .args(args)
            .arg("--config")
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ctl(&["unban", pair.peer4]);
    assert!(pair.peer_reaches(false));
    let status = ctl(&["status", "--json"]);
    let s: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(s["watcher"]["running"], true, "{s}");
    assert_eq!(s["currently_banned"], 1, "{s}");
    // Counters start with each watcher run; the restart read again the failures within
    // findtime before its saved position (the counts died with the killed process): the 6
    // lines, which banned nobody twice.
    assert_eq!(s["total_failed"], 6, "{s}");
    assert_eq!(s["total_banned"], 2, "{s}");
    ctl(&["unban", pair.peer6]);
    ctl(&["ban", pair.peer6, "--for", "2s"]);
    assert!(!pair.peer_reaches(true));
    wait_for(
        || pair.peer_reaches(true),
        &format!("{backend}: expiry of a 2s ban"),
        &w,
    );
    std::thread::sleep(Duration::from_millis(1200));
    assert!(
        pair.peer_reaches(false),
        "{backend}: the watcher re-added an unbanned address"
    );
    assert!(
        w.output()
            .contains(&format!("unban {}/128: ban expired", pair.peer6)),
        "{}",
        w.output()
    );
}

trait ParseBackend {
    fn parse_backend(&self) -> astpatch::firewall::Backend;
}
impl ParseBackend for &str {
    fn parse_backend(&self) -> astpatch::firewall::Backend {
        match *self {
            "iptables" => astpatch::firewall::Backend::Iptables,
            "ipset" => astpatch::firewall::Backend::Ipset,
            _ => astpatch::firewall::Backend::Nftables,
        }
    }
}

#[test]
fn watcher_bans_restores_and_expires_iptables() {
    if common::require_root("watcher_bans_restores_and_expires_iptables") {
        scenario("iptables");
    }
}

#[test]
fn watcher_bans_restores_and_expires_ipset() {
    if common::require_root("watcher_bans_restores_and_expires_ipset") {
        scenario("ipset");
    }
}

#[test]
fn watcher_bans_restores_and_expires_nftables() {
    if common::require_root("watcher_bans_restores_and_expires_nftables") {
        scenario("nftables");
    }
}

#[test]
fn report_only_mode_touches_nothing() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("messages");
    std::fs::write(&log, "").unwrap();
    let child = Command::new(common::bin())
        .args(["watch", "--log"])
        .arg(&log)
        .arg("--state-dir")
        .arg(d.path().join("state"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    append_failures(&log, "203.0.113.9", 5);
    std::thread::sleep(Duration::from_millis(1500));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("would ban 203.0.113.9/32: 5 failures (pjsip-no-endpoint)"),
        "{text}"
    );
    // One start-up line says whether chan_sip tails are trusted (patched = "auto" by default).
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("chan_sip tails trusted: ")
                || l.starts_with("chan_sip tails not trusted: "))
            .count(),
        1,
        "{text}"
    );
    assert!(!d.path().join("state").exists(), "report-only wrote state");
}

#[test]
fn failures_are_counted_across_rotation_and_copytruncate() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("messages");
    std::fs::write(&log, "").unwrap();
    let child = Command::new(common::bin())
        .args(["watch", "--log"])
        .arg(&log)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // Two failures, then logrotate's rename + new file, two more, then copytruncate, one more:
    // five within findtime from one address is a ban (the default maxretry).
    append_failures(&log, "203.0.113.50", 2);
    std::thread::sleep(Duration::from_millis(300));
    std::fs::rename(&log, d.path().join("messages.1")).unwrap();
    append_failures(&log, "203.0.113.50", 2);
    std::thread::sleep(Duration::from_millis(1500));
    std::fs::copy(&log, d.path().join("messages.2")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    append_failures(&log, "203.0.113.50", 1);
    std::thread::sleep(Duration::from_millis(1500));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("was rotated"), "{text}");
    assert!(text.contains("was truncated"), "{text}");
    assert!(
        text.contains("would ban 203.0.113.50/32: 5 failures"),
        "{text}"
    );
}

#[test]
fn without_ipv6_the_watcher_bans_ipv4_only_and_says_so() {
    if !common::require_root("without_ipv6_the_watcher_bans_ipv4_only_and_says_so") {
        return;
    }
    for backend in ["iptables", "ipset"] {
        let pair = Pair::new();
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("messages");
        let state = d.path().join("state");
        let cfg = d.path().join("astpatch.toml");
        std::fs::write(
            &cfg,
            format!(
                "maxretry = 3\nbackend = \"{backend}\"\nstate_dir = \"{}\"\nlogs = [\"{}\"]\n",
                state.display(),
                log.display()
            ),
        )
        .unwrap();
        let w = Watcher::start_without_ipv6(&pair, &cfg, d.path().join("out"), &state);
        append_failures(&log, &format!("[{}]", pair.peer6), 5);
        append_failures(&log, pair.peer4, 3);
        wait_for(
            || !pair.peer_reaches(false),
            &format!("{backend} v4 ban"),
            &w,
        );
        assert!(pair.peer_reaches(true), "{backend}");
        let said = w.output();
        assert!(said.contains(firewall::ipv6::OFF_LINE), "{backend}: {said}");
        assert!(
            !said.contains(pair.peer6) && !said.contains("error"),
            "{backend}: {said}"
        );
        let v6 = pair.exec(&pair.pbx, &["ip6tables", "-w", "-S", "INPUT"]);
        let v6 = String::from_utf8_lossy(&v6.stdout);
        assert!(
            !v6.contains("ASTPATCH") && !v6.contains("astpatch6"),
            "{backend}: {v6}"
        );
    }
}

/// The metrics file for node_exporter's textfile collector: written atomically while the
/// watcher runs, parsed here with a real Prometheus text-format parser.
#[test]
fn metrics_file_reads_as_prometheus_text() {
    if !common::require_root("metrics_file_reads_as_prometheus_text") {
        return;
    }
    let pair = Pair::new();
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("messages");
    let missing = d.path().join("not-there");
    let state = d.path().join("state");
    let prom = d.path().join("astpatch.prom");
    let cfg = d.path().join("astpatch.toml");
    std::fs::write(&log, "").unwrap();
    std::fs::write(
        &cfg,
        format!(
            "maxretry = 3\nbackend = \"nftables\"\nstate_dir = \"{}\"\nlogs = [\"{}\", \"{}\"]\nmetrics_file = \"{}\"\n",
            state.display(),
            log.display(),
            missing.display(),
            prom.display()
        ),
    )
    .unwrap();
    let w = Watcher::start(&pair, &cfg, d.path().join("out"), &state);
    append_failures(&log, pair.peer4, 3);
    // A stock chan_sip line whose From header ends in a guessed tag: counted as forged.
    {
        let mut f = OpenOptions::new().append(true).open(&log).unwrap();
        writeln!(f, "[2026-11-26 18:00:01] NOTICE[1] chan_sip.c: Failed to authenticate device <sip:1@h>;tag=(192.0.2.1:5060) [astpatch:0123456789abcdef]").unwrap();
    }
    let scrape = || -> Option<prometheus_parse::Scrape> {
        let text = std::fs::read_to_string(&prom).ok()?;
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        prometheus_parse::Scrape::parse(lines).ok()
    };
    let value =
        |s: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>| -> Option<f64> {
            s.samples
                .iter()
                .find(|x| x.metric == name && label.is_none_or(|(k, v)| x.labels.get(k) == Some(v)))
                .map(|x| match x.value {
                    prometheus_parse::Value::Counter(v)
                    | prometheus_parse::Value::Gauge(v)
                    | prometheus_parse::Value::Untyped(v) => v,
                    _ => f64::NAN,
                })
        };
    wait_for(
        || {
            scrape().is_some_and(|s| {
                value(&s, "astpatch_bans_total", Some(("origin", "log"))) == Some(1.0)
                    && value(
                        &s,
                        "astpatch_forged_lines_total",
                        Some(("rule", "chan-sip-auth")),
                    ) == Some(1.0)
            })
        },
        "metrics showing the ban and the forged line",
        &w,
    );
    let s = scrape().unwrap();
    assert_eq!(
        value(
            &s,
            "astpatch_failures_total",
            Some(("rule", "pjsip-no-endpoint"))
        ),
        Some(3.0)
    );
    assert_eq!(
        value(
            &s,
            "astpatch_failures_total",
            Some(("rule", "chan-sip-auth"))
        ),
        Some(0.0)
    );
    assert_eq!(value(&s, "astpatch_active_bans", None), Some(1.0));
    assert_eq!(value(&s, "astpatch_lines_read_total", None), Some(4.0));
    let age = value(&s, "astpatch_last_line_age_seconds", None).unwrap();
    assert!((0.0..60.0).contains(&age), "{age}");
    let log_s = log.display().to_string();
    let missing_s = missing.display().to_string();
    assert_eq!(
        value(&s, "astpatch_source_up", Some(("source", &log_s))),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "astpatch_source_up", Some(("source", &missing_s))),
        Some(0.0)
    );
    // Every family has its TYPE line, as the collector wants.
    let text = std::fs::read_to_string(&prom).unwrap();
    for f in [
        "astpatch_failures_total counter",
        "astpatch_active_bans gauge",
        "astpatch_source_up gauge",
    ] {
        assert!(text.contains(&format!("# TYPE {f}")), "{text}");
    }
    // The file is replaced whole: no temp files are left beside it.
    let left: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".astpatch-tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// SIGHUP re-reads the settings (what `systemctl reload astpatch` sends): a new maxretry takes
/// effect, invalid settings keep the old ones, and the watcher lives on (it used to die with
/// status 129, which systemd takes for a clean exit).
#[test]
fn sighup_reloads_the_settings_and_keeps_the_old_ones_when_invalid() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("messages");
    let cfg = d.path().join("astpatch.toml");
    std::fs::write(&log, "").unwrap();
    let write_cfg = |maxretry: &str| {
        std::fs::write(
            &cfg,
            format!(
                "maxretry = {maxretry}\nlogs = [\"{}\"]\nstate_dir = \"{}\"\n",
                log.display(),
                d.path().join("state").display()
            ),
        )
        .unwrap()
    };
    write_cfg("5");
    let out_path = d.path().join("out");
    let child = Command::new(common::bin())
        .args(["watch", "--config"])
        .arg(&cfg)
        .stdout(std::fs::File::create(&out_path).unwrap())
        .spawn()
        .unwrap();
    // Killed and reaped even when an assertion fails.
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Reap(child);
    let out = || std::fs::read_to_string(&out_path).unwrap_or_default();
    let wait = |what: &str, cond: &dyn Fn(&str) -> bool| {
        let t = Instant::now();
        while !cond(&out()) {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "waiting for {what}:\n{}",
                out()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait("start", &|o| o.contains("chan_sip tails"));
    std::thread::sleep(Duration::from_millis(300));
    append_failures(&log, "203.0.113.9", 2);
    std::thread::sleep(Duration::from_millis(700));
    assert!(!out().contains("would ban"), "{}", out());

    write_cfg("2");
    unsafe { libc::kill(child.0.id() as i32, libc::SIGHUP) };
    wait("reload", &|o| o.contains("SIGHUP: settings reloaded"));
    assert!(
        out().contains("SIGHUP: maxretry 2 within 10m: failure counts start afresh"),
        "{}",
        out()
    );
    append_failures(&log, "203.0.113.9", 2);
    wait("a ban at the new maxretry", &|o| {
        o.contains("would ban 203.0.113.9/32: 2 failures")
    });

    write_cfg("\"many\"");
    unsafe { libc::kill(child.0.id() as i32, libc::SIGHUP) };
    wait("refusal", &|o| {
        o.contains("SIGHUP: the settings are invalid, keeping the old ones")
    });
    append_failures(&log, "203.0.113.10", 2);
    wait("still banning with maxretry 2", &|o| {
        o.contains("would ban 203.0.113.10/32: 2 failures")
    });
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "the watcher died on SIGHUP"
    );
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    assert!(child.0.wait().unwrap().success());
}

/// Issue 10 in a network namespace: the peer's packets stay allowed while the log holds only
/// lines an attacker could write naming it (a stock line whose From header ends in its address,
/// the same with a guessed tag), and are dropped once the patched build's tagged lines name it.
#[test]
fn only_tagged_chan_sip_lines_get_real_packets_dropped() {
    if !common::require_root("only_tagged_chan_sip_lines_get_real_packets_dropped") {
        return;
    }
    let pair = Pair::new();
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("messages");
    let state = d.path().join("state");
    let cfg = d.path().join("astpatch.toml");
    std::fs::write(&log, "").unwrap();
    std::fs::write(
        &cfg,
        format!(
            "maxretry = 3\nbackend = \"nftables\"\nstate_dir = \"{}\"\nlogs = [\"{}\"]\ntags = [\"0123456789abcdef\"]\n",
            state.display(),
            log.display()
        ),
    )
    .unwrap();
    let w = Watcher::start(&pair, &cfg, d.path().join("out"), &state);
    let peer = pair.peer4;
    let line = |tail: &str| {
        format!(
            "[2026-11-30 04:27:49] NOTICE[2515][C-00000003] chan_sip.c: Failed to authenticate device \"x\" <sip:100@pbx>;tag=1 ({peer}:5060){tail}\n"
        )
    };
    let mut f = OpenOptions::new().append(true).open(&log).unwrap();
    for _ in 0..5 {
        f.write_all(line("").as_bytes()).unwrap();
        f.write_all(line(" [astpatch:fedcba9876543210]").as_bytes())
            .unwrap();
        f.write_all(line(" for INVITE, code = -1 [astpatch:0123456789ABCDEF]").as_bytes())
            .unwrap();
    }
    f.flush().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        pair.peer_reaches(false),
        "banned on lines an attacker could write:\n{}",
        w.output()
    );
    for _ in 0..3 {
        f.write_all(line(" for INVITE, code = -1 [astpatch:0123456789abcdef]").as_bytes())
            .unwrap();
    }
    f.flush().unwrap();
    wait_for(|| !pair.peer_reaches(false), "the tagged lines' ban", &w);
    assert!(
        w.output().contains("3 failures (chan-sip-auth)"),
        "{}",
        w.output()
    );
}

/// Issue 12, item 7: astpatch's firewall objects have one owner per network namespace. A second
/// banning watcher with another state dir refuses to start (it would remove the first one's
/// bans at every check), and names the owner's state dir.
#[test]
fn a_second_banning_watcher_in_the_same_namespace_refuses() {
    if !common::require_root("a_second_banning_watcher_in_the_same_namespace_refuses") {
        return;
    }
    let pair = Pair::new();
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("messages");
    std::fs::write(&log, "").unwrap();
    let cfg = |name: &str| {
        let p = d.path().join(format!("{name}.toml"));
        std::fs::write(
            &p,
            format!(
                "backend = \"nftables\"\nstate_dir = \"{}\"\nlogs = [\"{}\"]\n",
                d.path().join(name).display(),
                log.display()
            ),
        )
        .unwrap();
        p
    };
    let (a, b) = (cfg("a"), cfg("b"));
    let w = Watcher::start(&pair, &a, d.path().join("out-a"), &d.path().join("a"));
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &pair.pbx,
            common::bin(),
            "watch",
            "--ban",
            "--config",
        ])
        .arg(&b)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    if child.try_wait().unwrap().is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("a second banning watcher started beside the first");
    }
    let second = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(3), "{err}");
    assert!(
        err.contains("already bans in this network namespace")
            && err.contains(&d.path().join("a").display().to_string()),
        "{err}"
    );
    // The first one is unharmed and still bans.
    append_failures(&log, pair.peer4, 5);
    wait_for(|| !pair.peer_reaches(false), "the first watcher's ban", &w);
}
