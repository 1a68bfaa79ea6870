//! Issue 12's soak test, per backend, in a network namespace: a writer appends Asterisk
//! failure lines at 2,000 lines/s (plus a burst of 30,000) while real `logrotate` rotates the
//! log with `create` and an Asterisk-style reopen after postrotate (late lines land in the
//! renamed file), `copytruncate`, and `compress` + `delaycompress`; the watcher is stopped
//! (SIGSTOP) through several rotations so it has a backlog, killed with -9 in the middle of
//! that backlog and restarted while the log rotates again; the tmpfs under its state dir is
//! filled up and freed; and one of its logs cannot be read until it can. Afterwards every
//! attacker with maxretry failures on disk is in the kernel (and in the journal), no decoy
//! with fewer is, and the peer's real packets are dropped.
//!
//! Also here: `ban_many` of 20,000 bans per backend against the real kernel.
//! Needs root; skips visibly otherwise (ASTPATCH_REQUIRE_ROOT=1 makes that a failure).
use crate::common;

use std::collections::{HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use astpatch::firewall::Backend;
use astpatch::firewall::{self, SystemRunner};
use common::netns::Pair;
use ipnet::IpNet;

const MAXRETRY: usize = 5;
const RATE: usize = 2_200;
const BURST: usize = 30_000;

const FAIL: &str = "NOTICE[4242] res_pjsip/pjsip_distributor.c: Request 'REGISTER' from '<sip:100@10.250.0.1>' failed for 'ADDR:5060' (callid: CALLID) - No matching endpoint found";

fn stamp() -> String {
    format!(
        "[{}]",
        astpatch::logs::frame::format_utc(astpatch::clock::now_secs())
    )
}

fn shown(a: &IpAddr) -> String {
    match a {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// The failure lines to write, in a shuffled order (each attacker's failures spread over
/// the whole run), and who is who.
struct Plan {
    events: Vec<IpAddr>,
}

fn plan(peer: IpAddr) -> Plan {
    let mut events = vec![];
    for i in 0..2_000u32 {
        let a = IpAddr::from([10, 1, (i / 250) as u8, (i % 250 + 1) as u8]);
        events.extend(std::iter::repeat_n(a, MAXRETRY));
        let d = IpAddr::from([10, 2, (i / 250) as u8, (i % 250 + 1) as u8]);
        events.extend(std::iter::repeat_n(d, MAXRETRY - 1));
    }
    for i in 0..100u16 {
        let a: IpAddr = format!("fd00:b::{:x}", i + 1).parse().unwrap();
        events.extend(std::iter::repeat_n(a, MAXRETRY));
    }
    events.extend(std::iter::repeat_n(peer, MAXRETRY));
    // A fixed shuffle (xorshift), so a failure is reproducible.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in (1..events.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        events.swap(i, (x % (i as u64 + 1)) as usize);
    }
    Plan { events }
}

/// Asterisk's logger, roughly: appends to an open file, one line in four a failure; reopens
/// the path when postrotate asks (a flag file), not before.
struct LogWriter {
    stop: Arc<AtomicBool>,
    burst: Arc<AtomicUsize>,
    written: Arc<AtomicUsize>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl LogWriter {
    fn start(log: PathBuf, reopen: PathBuf, events: Vec<IpAddr>) -> LogWriter {
        let stop = Arc::new(AtomicBool::new(false));
        let burst = Arc::new(AtomicUsize::new(0));
        let written = Arc::new(AtomicUsize::new(0));
        let (s, b, w) = (stop.clone(), burst.clone(), written.clone());
        let handle = std::thread::spawn(move || {
            let open = || {
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap()
            };
            let mut f = open();
            let mut next = events.into_iter();
            let t0 = Instant::now();
            let mut n = 0usize;
            let mut due_extra = 0usize;
            while !s.load(Ordering::SeqCst) {
                if fs::remove_file(&reopen).is_ok() {
                    f = open();
                }
                due_extra += b.swap(0, Ordering::SeqCst);
                let due = (t0.elapsed().as_secs_f64() * RATE as f64) as usize + due_extra;
                if n < due {
                    let ts = stamp();
                    let mut text = String::with_capacity((due - n) * 160);
                    while n < due {
                        let line = match (n % 4 == 0).then(|| next.next()).flatten() {
                            Some(a) => FAIL
                                .replace("ADDR", &shown(&a))
                                .replace("CALLID", &n.to_string()),
                            None => format!(
                                "VERBOSE[4242] pbx.c: -- Executing [s@default:1] NoOp(\"PJSIP/x\", \"filler {n}\") in new stack"
                            ),
                        };
                        text.push_str(&ts);
                        text.push(' ');
                        text.push_str(&line);
                        text.push('\n');
                        n += 1;
                    }
                    f.write_all(text.as_bytes()).unwrap();
                    w.store(n, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            // What was not written yet is written now, so every planned failure is on disk.
            let ts = stamp();
            let mut text = String::new();
            for (k, a) in next.enumerate() {
                text.push_str(&format!(
                    "{ts} {}\n",
                    FAIL.replace("ADDR", &shown(&a))
                        .replace("CALLID", &format!("tail{k}"))
                ));
            }
            f.write_all(text.as_bytes()).unwrap();
        });
        LogWriter {
            stop,
            burst,
            written,
            handle: Some(handle),
        }
    }

    fn finish(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            h.join().unwrap();
        }
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A tmpfs of our own under the state dir, unmounted when done.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path) -> Tmpfs {
        fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=16m,mode=0755", "tmpfs"])
            .arg(at)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount tmpfs");
        Tmpfs(at.to_path_buf())
    }

    /// Fill it to the last byte.
    fn fill(&self) {
        let mut f = fs::File::create(self.0.join("fill")).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let small = [0u8; 512];
        while f.write_all(&small).is_ok() {}
        let _ = f.write_all(&[0u8]);
    }

    fn free(&self) {
        fs::remove_file(self.0.join("fill")).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

struct Watcher {
    child: Child,
    out: PathBuf,
}

impl Watcher {
    /// The watcher in the pbx namespace, without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH (so a
    /// log with mode 000 really cannot be read, as for a watcher that is not root).
    fn start(pair: &Pair, cfg: &Path, out: PathBuf, state: &Path) -> Watcher {
        let _ = fs::remove_file(state.join("watch.pid"));
        let child = Command::new("ip")
            .args(["netns", "exec", &pair.pbx])
            .args([
                "setpriv",
                "--bounding-set",
                "-dac_override,-dac_read_search",
                common::bin(),
                "watch",
                "--ban",
                "--config",
            ])
            .arg(cfg)
            .env("TZ", "UTC")
            .stdout(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&out)
                    .unwrap(),
            )
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut w = Watcher { child, out };
        let t = Instant::now();
        while !state.join("watch.pid").exists() {
            assert!(w.child.try_wait().unwrap().is_none(), "{}", w.output());
            assert!(t.elapsed() < Duration::from_secs(20), "{}", w.output());
            std::thread::sleep(Duration::from_millis(50));
        }
        w
    }

    fn output(&self) -> String {
        fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn signal(&self, sig: libc::c_int) {
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn logrotate(conf: &Path, statefile: &Path) {
    let out = Command::new("logrotate")
        .arg("-f")
        .arg("-s")
        .arg(statefile)
        .arg(conf)
        .output()
        .expect("logrotate (scripts/install-deps installs it)");
    assert!(
        out.status.success(),
        "logrotate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Failures per address in every file the log became (plain and gzip).
fn on_disk(dir: &Path) -> HashMap<IpAddr, usize> {
    let mut counts = HashMap::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("messages") {
            continue;
        }
        let raw = fs::read(&p).unwrap();
        let text = if raw.starts_with(&[0x1f, 0x8b]) {
            let mut s = Vec::new();
            flate2::read::MultiGzDecoder::new(&raw[..])
                .read_to_end(&mut s)
                .unwrap();
            s
        } else {
            raw
        };
        for line in String::from_utf8_lossy(&text).lines() {
            if let Some(rest) = line.split("failed for '").nth(1) {
                let addr = rest.split("' (callid").next().unwrap();
                let host = addr.rsplit_once(':').unwrap().0;
                let host = host.trim_start_matches('[').trim_end_matches(']');
                *counts.entry(host.parse::<IpAddr>().unwrap()).or_insert(0) += 1;
            }
        }
    }
    counts
}

fn status(pair: &Pair, cfg: &Path) -> serde_json::Value {
    let out = pair.exec(
        &pair.pbx,
        &[
            common::bin(),
            "status",
            "--json",
            "--config",
            cfg.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// With `kill`, the watcher is killed with -9 in the middle of its backlog and restarted (it
/// then reads again from where it stood findtime ago); without, it works through the
/// backlog, the rotations and the copytruncate by itself.
fn soak(backend: &str, kill: bool) {
    let started = Instant::now();
    let pair = Pair::new();
    let d = tempfile::tempdir().unwrap();
    let logs = d.path().join("logs");
    fs::create_dir(&logs).unwrap();
    let log = logs.join("messages");
    let security = logs.join("security");
    let reopen = d.path().join("reopen");
    let state = d.path().join("state");
    let tmpfs = Tmpfs::mount(&state);
    fs::write(&log, "").unwrap();
    fs::write(&security, "").unwrap();
    fs::set_permissions(
        &security,
        std::os::unix::fs::PermissionsExt::from_mode(0o000),
    )
    .unwrap();
    let cfg = d.path().join("astpatch.toml");
    fs::write(
        &cfg,
        format!(
            "maxretry = {MAXRETRY}\nfindtime = \"10m\"\nbantime = \"1h\"\nbackend = \"{backend}\"\n\
             logs = [\"{}\", \"{}\"]\nstate_dir = \"{}\"\n",
            log.display(),
            security.display(),
            state.display()
        ),
    )
    .unwrap();
    let rot_state = d.path().join("logrotate.state");
    let create = d.path().join("create.conf");
    fs::write(
        &create,
        format!(
            "{} {{\n  rotate 1000\n  create 0644 root root\n  compress\n  delaycompress\n  missingok\n  postrotate\n    sleep 0.2; touch {}\n  endscript\n}}\n",
            log.display(),
            reopen.display()
        ),
    )
    .unwrap();
    let copytruncate = d.path().join("copytruncate.conf");
    fs::write(
        &copytruncate,
        format!(
            "{} {{\n  rotate 1000\n  copytruncate\n  compress\n  delaycompress\n  missingok\n}}\n",
            log.display()
        ),
    )
    .unwrap();

    let peer: IpAddr = pair.peer4.parse().unwrap();
    let p = plan(peer);
    let mut w = Watcher::start(&pair, &cfg, d.path().join("out"), &state);
    let mut writer = LogWriter::start(log.clone(), reopen.clone(), p.events);
    let at = |secs: f64| {
        let until = started + Duration::from_secs_f64(secs);
        if let Some(left) = until.checked_duration_since(Instant::now()) {
            std::thread::sleep(left);
        }
    };
    let t0 = started.elapsed().as_secs_f64();
    at(t0 + 1.5);
    logrotate(&create, &rot_state);
    // Falls behind: stopped through a copytruncate, a burst and two rotations.
    at(t0 + 3.0);
    w.signal(libc::SIGSTOP);
    at(t0 + 3.5);
    logrotate(&copytruncate, &rot_state);
    writer.burst.fetch_add(BURST, Ordering::SeqCst);
    at(t0 + 4.5);
    logrotate(&create, &rot_state);
    at(t0 + 5.5);
    logrotate(&create, &rot_state);
    at(t0 + 6.0);
    w.signal(libc::SIGCONT);
    // Once it has found the copy of what the copytruncate took away: kill -9 in the
    // middle of that backlog, and rotate again while no watcher runs.
    let t = Instant::now();
    while !w
        .output()
        .contains("the lines not yet read when it was truncated are read from")
    {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{backend}: the copytruncate during the backlog went unnoticed:\n{}",
            w.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    if kill {
        w.child.kill().unwrap();
        w.child.wait().unwrap();
        at(t0 + 7.0);
        logrotate(&create, &rot_state);
        at(t0 + 8.0);
        w = Watcher::start(&pair, &cfg, d.path().join("out"), &state);
    } else {
        at(t0 + 7.0);
        logrotate(&create, &rot_state);
    }
    // The state's file system fills up while bans keep coming.
    at(t0 + 9.5);
    tmpfs.fill();
    let t = Instant::now();
    let s = loop {
        let s = status(&pair, &cfg);
        if !s["journal_error"].is_null() && !s["unreadable_logs"].as_array().unwrap().is_empty() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(8),
            "{backend}: status never showed the full disk and the unreadable log: journal_error {}, unreadable_logs {}, total_banned {}\n{}",
            s["journal_error"],
            s["unreadable_logs"],
            s["total_banned"],
            w.output()
                .lines()
                .filter(|l| !l.starts_with("ban "))
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        s["unwritten_records"].as_u64().unwrap() > 0,
        "{}",
        s["unwritten_records"]
    );
    assert!(
        w.child.try_wait().unwrap().is_none(),
        "{backend}: the watcher exited on a full disk:\n{}",
        w.output()
    );
    at(t0 + 13.0);
    tmpfs.free();
    fs::set_permissions(
        &security,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    at(t0 + 14.0);
    writer.finish();
    let lines = writer.written.load(Ordering::SeqCst);
    let rate = (lines - BURST) as f64 / (started.elapsed().as_secs_f64() - t0);
    assert!(rate >= 2_000.0, "{backend}: wrote {rate:.0} lines/s");

    // Every attacker with maxretry failures on disk banned, no decoy.
    let counts = on_disk(&logs);
    let want: HashSet<IpNet> = counts
        .iter()
        .filter(|(_, n)| **n >= MAXRETRY)
        .map(|(a, _)| IpNet::from(*a))
        .collect();
    let decoys: HashSet<IpNet> = counts
        .iter()
        .filter(|(_, n)| **n < MAXRETRY)
        .map(|(a, _)| IpNet::from(*a))
        .collect();
    assert!(want.len() > 1_900 && decoys.len() > 1_900, "{}", want.len());
    let fw = firewall::for_backend(
        match backend {
            "iptables" => Backend::Iptables,
            "ipset" => Backend::Ipset,
            _ => Backend::Nftables,
        },
        Box::new(SystemRunner::in_netns(&pair.pbx)),
    );
    let t = Instant::now();
    let kernel: HashSet<IpNet> = loop {
        let k: HashSet<IpNet> = fw.list().unwrap().into_iter().collect();
        if want.is_subset(&k) || t.elapsed() > Duration::from_secs(40) {
            break k;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let missing: Vec<&IpNet> = want.difference(&kernel).collect();
    let out = w.output();
    assert!(
        missing.is_empty(),
        "{backend}: {} of {} attackers not banned, e.g. {:?}\n{}",
        missing.len(),
        want.len(),
        &missing[..missing.len().min(5)],
        &out[out.len().saturating_sub(3000)..]
    );
    let wrong: Vec<&IpNet> = decoys.intersection(&kernel).collect();
    assert!(wrong.is_empty(), "{backend}: decoys banned: {wrong:?}");
    // Nothing lost from the journal: once the disk had room, what memory held was written.
    let t = Instant::now();
    loop {
        let st = astpatch::ban::state::State::load(&state).unwrap();
        let journal: HashSet<IpNet> = st
            .active_bans(astpatch::clock::now_secs())
            .into_iter()
            .map(|b| b.net)
            .collect();
        if journal == kernel {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{backend}: journal {} bans, kernel {}",
            journal.len(),
            kernel.len()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        !pair.peer_reaches(false),
        "{backend}: the peer's packets pass"
    );
    assert!(w.child.try_wait().unwrap().is_none(), "{out}");
    let resumed = ["rotated while no watcher ran; resuming in"];
    for said in [
        "was rotated",
        "the lines not yet read when it was truncated are read from",
        "error: cannot write the ban journal",
        "the ban journal is writable again",
        "error: cannot read",
        "can be read again",
    ]
    .iter()
    .chain(resumed.iter().filter(|_| kill))
    {
        assert!(
            out.contains(said),
            "{backend}: never said {said:?}:\n{}",
            &out[out.len().saturating_sub(4000)..]
        );
    }
    let s = status(&pair, &cfg);
    assert!(s["journal_error"].is_null(), "{s}");
    eprintln!(
        "{backend} (kill -9: {kill}): {lines} lines at {rate:.0} lines/s, {} attackers banned, {} decoys not, in {:.1} s",
        want.len(),
        decoys.len(),
        started.elapsed().as_secs_f64()
    );
    drop(w);
    drop(tmpfs);
}

#[test]
fn soak_iptables() {
    if common::require_root("soak_iptables") {
        soak("iptables", true);
    }
}

#[test]
fn soak_ipset() {
    if common::require_root("soak_ipset") {
        soak("ipset", true);
    }
}

#[test]
fn soak_nftables() {
    if common::require_root("soak_nftables") {
        soak("nftables", true);
    }
}

#[test]
fn soak_without_a_crash_iptables() {
    if common::require_root("soak_without_a_crash_iptables") {
        soak("iptables", false);
    }
}

#[test]
fn soak_without_a_crash_ipset() {
    if common::require_root("soak_without_a_crash_ipset") {
        soak("ipset", false);
    }
}

#[test]
fn soak_without_a_crash_nftables() {
    if common::require_root("soak_without_a_crash_nftables") {
        soak("nftables", false);
    }
}

/// 20,000 new bans in one batch per backend reach the kernel, each with its own timeout where
/// the kernel keeps one, and a second batch over them changes nothing but the timeouts.
fn batch(b: Backend) {
    let pair = Pair::new();
    let mut fw = firewall::for_backend(b, Box::new(SystemRunner::in_netns(&pair.pbx)));
    fw.ensure().unwrap();
    let now = astpatch::clock::now_secs();
    let bans: Vec<(IpNet, Option<i64>)> = (0..20_000u32)
        .map(|i| {
            let a = IpAddr::from([10, 9, (i / 250) as u8, (i % 250 + 1) as u8]);
            (IpNet::from(a), Some(now + 600 + i64::from(i % 60)))
        })
        .chain(std::iter::once((
            IpNet::from(pair.peer4.parse::<IpAddr>().unwrap()),
            Some(now + 600),
        )))
        .collect();
    let t = Instant::now();
    fw.ban_many(&bans).unwrap();
    let took = t.elapsed();
    let held: HashSet<IpNet> = fw.list().unwrap().into_iter().collect();
    assert_eq!(held.len(), bans.len(), "{b}");
    assert!(!pair.peer_reaches(false), "{b}: the peer's packets pass");
    eprintln!(
        "{b}: {} bans in one batch in {:.0} ms ({:.0} bans/s)",
        bans.len(),
        took.as_secs_f64() * 1000.0,
        bans.len() as f64 / took.as_secs_f64()
    );
    if b != Backend::Iptables {
        // Set backends: a second batch refreshes timeouts, adds no duplicates.
        fw.ban_many(&bans[..100]).unwrap();
        assert_eq!(fw.list().unwrap().len(), bans.len(), "{b}");
    }
    fw.teardown().unwrap();
}

#[test]
fn ban_many_reaches_the_kernel_iptables() {
    if common::require_root("ban_many_reaches_the_kernel_iptables") {
        batch(Backend::Iptables);
    }
}

#[test]
fn ban_many_reaches_the_kernel_ipset() {
    if common::require_root("ban_many_reaches_the_kernel_ipset") {
        batch(Backend::Ipset);
    }
}

#[test]
fn ban_many_reaches_the_kernel_nftables() {
    if common::require_root("ban_many_reaches_the_kernel_nftables") {
        batch(Backend::Nftables);
    }
}
