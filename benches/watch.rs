//! `cargo bench --bench watch` (root): the watcher's figures, measured for real inside
//! throw-away network namespaces.
//!
//! * latency from a failure line appended to the log to the ban being in the kernel (the
//!   watcher prints `ban …` only after the firewall command returned), p50/p99 over 1,000
//!   bans, per backend, one ban at a time so no queueing inflates it;
//! * latency from a PJSIP security event on the AMI socket to the ban in the kernel, likewise
//!   (`-- ami` runs only these);
//! * restore time for 100k bans per backend (10k for iptables: one rule per ban);
//! * the watcher's peak RSS after following a log with 1M distinct failing addresses;
//! * a burst: N attackers × maxretry lines appended in one write, to every ban in the kernel
//!   (new bans/s), per backend, and fail2ban-server (its own config, in its own namespace,
//!   with the matching ban action) on the same burst.
//!
//! `cargo test --all-targets` runs a tiny pass (so the code keeps working); full sizes only
//! under `cargo bench`. Not root: prints SKIP.
#[path = "../tests/common/netns.rs"]
#[allow(dead_code)]
mod netns;

use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use astpatch::firewall::Backend;
use astpatch::firewall::{self, SystemRunner};
use ipnet::IpNet;

const BIN: &str = env!("CARGO_BIN_EXE_astpatch");

fn line(addr: Ipv4Addr) -> String {
    format!(
        "[2026-11-26 18:00:00] NOTICE[4242] chan_sip.c: Registration from '<sip:100@10.250.0.1>' failed for '{addr}:5060' - Wrong password\n"
    )
}

fn addr(i: u32) -> Ipv4Addr {
    // 11.0.0.0 upwards: distinct, never loopback/ignored, never the namespaces' own.
    Ipv4Addr::from(0x0b00_0000 + i + 1)
}

/// Kills the watcher even when a measurement panics.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn config(dir: &Path, backend: &str, maxretry: u32, log: &Path) -> std::path::PathBuf {
    let cfg = dir.join("astpatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "maxretry = {maxretry}\nbackend = \"{backend}\"\nstate_dir = \"{}\"\nlogs = [\"{}\"]\n",
            dir.join("state").display(),
            log.display()
        ),
    )
    .unwrap();
    cfg
}

fn latency(backend: &str, n: u32) {
    let pair = netns::Pair::new();
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("messages");
    std::fs::write(&log, "").unwrap();
    let cfg = config(d.path(), backend, 1, &log);
    let (child, rx) = banning_watcher(&pair, &cfg);
    // Wait for the start-up line.
    let (first, _) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("watcher started");
    assert!(first.starts_with("astpatch watch:"), "{first}");
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    let mut lat = Vec::with_capacity(n as usize);
    for i in 0..n {
        let a = addr(i);
        let t0 = Instant::now();
        f.write_all(line(a).as_bytes()).unwrap();
        lat.push(said(&rx, &format!("ban {a}/32 "), 10) - t0);
    }
    drop(child);
    report("latency", "line appended", backend, &pair, lat, n);
}

/// Latency from a PJSIP security event written on the AMI socket to the ban in the kernel
/// (the watcher says `ban …` after the firewall returned): a TCP server in the pbx namespace
/// answers as Asterisk 20.20.1's manager did and writes one InvalidPassword event per address.
fn ami_latency(backend: &str, n: u32) {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let pair = netns::Pair::new();
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("messages");
    std::fs::write(&log, "").unwrap();
    let (port_tx, port_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<(Ipv4Addr, mpsc::Sender<Instant>)>();
    let ns = format!("/var/run/netns/{}", pair.pbx);
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&ns).unwrap();
        // SAFETY: this thread only; its sockets stay in the pbx namespace.
        assert_eq!(
            unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) },
            0
        );
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        port_tx.send(l.local_addr().unwrap().port()).unwrap();
        let (mut c, _) = l.accept().unwrap();
        c.set_nodelay(true).unwrap();
        c.write_all(b"Asterisk Call Manager/9.0.0\r\n").unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let k = c.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..k]);
        }
        c.write_all(b"Response: Success\r\nMessage: Authentication accepted\r\n\r\n")
            .unwrap();
        for (a, sent) in go_rx {
            let ev = format!(
                "Event: InvalidPassword\r\nPrivilege: security,all\r\nEventTV: 2026-11-30T05:39:47.302+0000\r\nSeverity: Error\r\nService: PJSIP\r\nEventVersion: 2\r\nAccountID: 200\r\nSessionID: c5\r\nLocalAddress: IPV4/UDP/10.250.0.1/5060\r\nRemoteAddress: IPV4/UDP/{a}/5060\r\nChallenge: 1\r\nReceivedChallenge: 1\r\nReceivedHash: ab\r\n\r\n"
            );
            let t0 = Instant::now();
            c.write_all(ev.as_bytes()).unwrap();
            let _ = sent.send(t0);
        }
    });
    let port = port_rx.recv().unwrap();
    let cfg = config(d.path(), backend, 1, &log);
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!("{text}[ami]\nport = {port}\nusername = \"astpatch\"\nsecret = \"s\"\n"),
    )
    .unwrap();
    let (child, rx) = banning_watcher(&pair, &cfg);
    said(&rx, "AMI: logged in", 20);
    let mut lat = Vec::with_capacity(n as usize);
    for i in 0..n {
        let a = addr(i);
        let (stx, srx) = mpsc::channel();
        go_tx.send((a, stx)).unwrap();
        let t0 = srx.recv().unwrap();
        lat.push(said(&rx, &format!("ban {a}/32 "), 10) - t0);
    }
    drop(child);
    report("ami-latency", "AMI event", backend, &pair, lat, n);
}

/// A banning watcher in the pbx namespace, each line it prints timestamped on arrival.
fn banning_watcher(pair: &netns::Pair, cfg: &Path) -> (Reap, mpsc::Receiver<(String, Instant)>) {
    let mut child = Reap(
        Command::new("ip")
            .args([
                "netns", "exec", &pair.pbx, BIN, "watch", "--ban", "--config",
            ])
            .arg(cfg)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = mpsc::channel();
    let out = child.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send((l, Instant::now()));
        }
    });
    (child, rx)
}

/// When the watcher said a line starting with `prefix` (within `secs`).
fn said(rx: &mpsc::Receiver<(String, Instant)>, prefix: &str, secs: u64) -> Instant {
    loop {
        let (l, t) = rx
            .recv_timeout(Duration::from_secs(secs))
            .unwrap_or_else(|_| panic!("no {prefix:?} said"));
        if l.starts_with(prefix) {
            return t;
        }
    }
}

/// p50 / p99 / max of `lat`, and the kernel holding all `n` bans.
fn report(
    label: &str,
    from: &str,
    backend: &str,
    pair: &netns::Pair,
    mut lat: Vec<Duration>,
    n: u32,
) {
    let fw = firewall::for_backend(
        backend_of(backend),
        Box::new(SystemRunner::in_netns(&pair.pbx)),
    );
    let held = fw.list().unwrap().len();
    lat.sort();
    println!(
        "{label} {backend:<9} {from} -> ban in kernel over {n} bans: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (kernel holds {held})",
        ms(pct(&lat, 0.50)),
        ms(pct(&lat, 0.99)),
        ms(*lat.last().unwrap())
    );
    assert_eq!(held, n as usize);
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn backend_of(b: &str) -> Backend {
    match b {
        "iptables" => Backend::Iptables,
        "ipset" => Backend::Ipset,
        _ => Backend::Nftables,
    }
}

fn cpu_of_children() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn restore(backend: &str, n: u32) {
    let pair = netns::Pair::new();
    let now = astpatch::clock::now_secs();
    let bans: Vec<(IpNet, Option<i64>)> = (0..n)
        .map(|i| (IpNet::from(std::net::IpAddr::V4(addr(i))), Some(now + 3600)))
        .collect();
    let mut fw = firewall::for_backend(
        backend_of(backend),
        Box::new(SystemRunner::in_netns(&pair.pbx)),
    );
    let cpu0 = cpu_of_children();
    let t = Instant::now();
    fw.restore(&bans).unwrap();
    let wall = t.elapsed();
    let cpu = cpu_of_children() - cpu0;
    let held = fw.list().unwrap().len();
    println!(
        "restore {backend:<9} {n} bans: {:.2} s wall, {:.2} s CPU in the tools (kernel holds {held})",
        wall.as_secs_f64(),
        cpu
    );
    assert_eq!(held, n as usize);
}

fn rss(n: u32) {
    let pair = netns::Pair::new();
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("messages");
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&log).unwrap());
        for i in 0..n {
            w.write_all(line(addr(i)).as_bytes()).unwrap();
        }
    }
    let size = std::fs::metadata(&log).unwrap().len();
    let cfg = config(d.path(), "nftables", 5, &log);
    let child = Reap(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &pair.pbx,
                BIN,
                "watch",
                "--ban",
                "--from-start",
                "--config",
            ])
            .arg(&cfg)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let t = Instant::now();
    let stats = d.path().join("state/stats.json");
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let done = std::fs::read(&stats)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|v| v["total_failed"].as_u64() == Some(n as u64));
        if done {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(600), "watcher too slow");
    }
    let took = t.elapsed();
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.0.id())).unwrap();
    let field = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .map(|l| l.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap() / 1024.0)
            .unwrap_or(0.0)
    };
    println!(
        "rss       {n} distinct failing addresses ({:.0} MB log, read in {:.1} s): peak RSS {:.1} MB, now {:.1} MB",
        size as f64 / 1e6,
        took.as_secs_f64(),
        field("VmHWM:"),
        field("VmRSS:")
    );
    drop(child);
}

/// fail2ban on the same input, where it is installed: `fail2ban-regex` with the stock
/// asterisk filter (it matches and reports; the daemon would also track and ban), measured by
/// GNU time, beside our watcher on the same lines.
fn fail2ban_compare(n: u32) {
    let filter = Path::new("/etc/fail2ban/filter.d/asterisk.conf");
    let time = Path::new("/usr/bin/time");
    if !filter.exists() || !time.exists() {
        println!(
            "fail2ban  SKIP: needs fail2ban-regex, {} and /usr/bin/time",
            filter.display()
        );
        return;
    }
    rss(n);
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("messages");
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&log).unwrap());
        for i in 0..n {
            w.write_all(line(addr(i)).as_bytes()).unwrap();
        }
    }
    let out = Command::new(time)
        .args(["-f", "%e %M"])
        .arg("fail2ban-regex")
        .arg(&log)
        .arg(filter)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let matched = stdout
        .lines()
        .find(|l| l.starts_with("Lines:"))
        .unwrap_or("?");
    let last = err.lines().last().unwrap_or("");
    let mut it = last.split_whitespace();
    let (secs, kb) = (it.next().unwrap_or("?"), it.next().unwrap_or("0"));
    println!(
        "fail2ban  fail2ban-regex on the same {n} lines ({matched}): {secs} s, peak RSS {:.1} MB",
        kb.parse::<f64>().unwrap_or(0.0) / 1024.0
    );
}

/// `[now]`, as Asterisk dates a line (the watcher runs with TZ=UTC).
fn now_stamp() -> String {
    format!(
        "[{}]",
        astpatch::logs::frame::format_utc(astpatch::clock::now_secs())
    )
}

/// N attackers × 5 failures, dated now, in one string.
fn burst_text(n: u32) -> String {
    let ts = now_stamp();
    let mut text = String::with_capacity(n as usize * 5 * 130);
    for _ in 0..5 {
        for i in 0..n {
            text.push_str(&format!(
                "{ts} NOTICE[4242] chan_sip.c: Registration from '<sip:100@10.250.0.1>' failed for '{}:5060' - Wrong password\n",
                addr(i)
            ));
        }
    }
    text
}

/// A burst of `n` attackers (5 failures each, maxretry 5) in one write: time until the
/// watcher has said `ban` for every one (it says so after the firewall command returned),
/// and the kernel holds them all.
fn burst(backend: &str, n: u32) -> f64 {
    let pair = netns::Pair::new();
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("messages");
    std::fs::write(&log, "").unwrap();
    let cfg = config(d.path(), backend, 5, &log);
    let mut child = Reap(
        Command::new("ip")
            .args([
                "netns", "exec", &pair.pbx, BIN, "watch", "--ban", "--config",
            ])
            .arg(&cfg)
            .env("TZ", "UTC")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = mpsc::channel();
    let out = child.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send((l, Instant::now()));
        }
    });
    let (first, _) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("watcher started");
    assert!(first.starts_with("astpatch watch:"), "{first}");
    let text = burst_text(n);
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    let t0 = Instant::now();
    f.write_all(text.as_bytes()).unwrap();
    let mut banned = 0;
    let mut last = t0;
    while banned < n {
        let (l, t) = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("every ban reported");
        if l.starts_with("ban ") {
            banned += 1;
            last = t;
        }
    }
    let took = last - t0;
    let fw = firewall::for_backend(
        backend_of(backend),
        Box::new(SystemRunner::in_netns(&pair.pbx)),
    );
    let held = fw.list().unwrap().len();
    drop(child);
    let rate = f64::from(n) / took.as_secs_f64();
    println!(
        "burst     {backend:<9} astpatch: {} lines, {n} attackers -> all {held} in the kernel in {:.0} ms ({rate:.0} new bans/s)",
        n * 5,
        ms(took)
    );
    assert_eq!(held, n as usize);
    rate
}

/// fail2ban-server on the same burst: its own copy of /etc/fail2ban (no other jail), the
/// [asterisk] jail on our log with the ban action for `backend`, run inside a throw-away
/// namespace (never the host's rules). Time until it reports every attacker banned, or the
/// `limit`; its bans/s either way.
fn fail2ban_burst(backend: &str, n: u32, limit: Duration) {
    if !Path::new("/usr/bin/fail2ban-server").exists() {
        println!(
            "burst     {backend:<9} fail2ban: SKIP (fail2ban not installed; scripts/install-deps)"
        );
        return;
    }
    let pair = netns::Pair::new();
    let d = tempfile::tempdir().unwrap();
    let conf = d.path().join("fail2ban");
    assert!(
        Command::new("cp")
            .args(["-r", "/etc/fail2ban"])
            .arg(&conf)
            .status()
            .unwrap()
            .success()
    );
    let _ = std::fs::remove_dir_all(conf.join("jail.d"));
    std::fs::create_dir(conf.join("jail.d")).unwrap();
    let log = d.path().join("messages");
    std::fs::write(&log, "").unwrap();
    std::fs::write(
        conf.join("fail2ban.local"),
        format!(
            "[Definition]\nloglevel = NOTICE\nlogtarget = {}\nsocket = {}\npidfile = {}\ndbfile = :memory:\n",
            d.path().join("f2b.log").display(),
            d.path().join("f2b.sock").display(),
            d.path().join("f2b.pid").display()
        ),
    )
    .unwrap();
    let action = match backend {
        "iptables" => "iptables-allports",
        "ipset" => "iptables-ipset-proto6-allports",
        _ => "nftables-allports",
    };
    std::fs::write(
        conf.join("jail.local"),
        format!(
            "[DEFAULT]\nbantime = 3600\nfindtime = 600\nmaxretry = 5\nbackend = auto\nbanaction = {action}\nbanaction_allports = {action}\n\n[asterisk]\nenabled = true\nmaxretry = 5\nlogpath = {}\naction = %(banaction)s\n",
            log.display()
        ),
    )
    .unwrap();
    let server = Reap(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &pair.pbx,
                "fail2ban-server",
                "-f",
                "-x",
                "-c",
            ])
            .arg(&conf)
            .env("TZ", "UTC")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = |args: &[&str]| {
        Command::new("fail2ban-client")
            .arg("-c")
            .arg(&conf)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let t = Instant::now();
    while !client(&["status", "asterisk"]).contains("Currently banned") {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "fail2ban-server did not start"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = burst_text(n);
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    let t0 = Instant::now();
    f.write_all(text.as_bytes()).unwrap();
    let banned = || -> u32 {
        client(&["status", "asterisk"])
            .lines()
            .find(|l| l.contains("Total banned"))
            .and_then(|l| l.split_whitespace().last()?.parse().ok())
            .unwrap_or(0)
    };
    let mut got = 0;
    while got < n && t0.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(250));
        got = banned();
    }
    let took = t0.elapsed();
    let _ = client(&["stop"]);
    drop(server);
    let rate = f64::from(got) / took.as_secs_f64();
    if got >= n {
        println!(
            "burst     {backend:<9} fail2ban {action}: {} lines, {n} attackers -> all banned in {:.0} ms ({rate:.0} new bans/s)",
            n * 5,
            ms(took)
        );
    } else {
        println!(
            "burst     {backend:<9} fail2ban {action}: {} lines, {n} attackers -> {got} banned after {:.0} s ({rate:.0} new bans/s); stopped waiting",
            n * 5,
            took.as_secs_f64()
        );
    }
}

fn main() {
    if unsafe { libc::geteuid() } != 0 {
        println!("SKIP bench watch: needs root (network namespaces, firewall)");
        return;
    }
    let full = std::env::args().any(|a| a == "--bench");
    let (bans, restore_n, addrs) = if full {
        (1000, 100_000, 1_000_000)
    } else {
        (20, 2_000, 20_000)
    };
    // `cargo bench --bench watch -- nftables` runs only what names nftables ("rss": the RSS
    // run, "burst": the bursts of every backend with fail2ban beside them, "latency": the
    // line -> ban latency of every backend).
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    for b in ["iptables", "ipset", "nftables"] {
        if wanted(b) || wanted("latency") {
            latency(b, bans);
        }
    }
    for b in ["iptables", "ipset", "nftables"] {
        if wanted(b) || wanted("ami") {
            ami_latency(b, bans);
        }
    }
    for b in ["ipset", "nftables"] {
        if wanted(b) {
            restore(b, restore_n);
        }
    }
    if wanted("iptables") {
        restore("iptables", restore_n / 10);
    }
    // Bursts: astpatch with 20,000 attackers (target: 10,000 new bans/s), and astpatch and
    // fail2ban side by side on the same smaller burst.
    let (big, same, limit) = if full {
        (20_000, 2_000, Duration::from_secs(120))
    } else {
        (500, 50, Duration::from_secs(20))
    };
    for b in ["iptables", "ipset", "nftables"] {
        if wanted(b) || wanted("burst") {
            burst(b, big);
            burst(b, same);
            fail2ban_burst(b, same, limit);
        }
    }
    if wanted("rss") {
        rss(addrs);
    }
    if wanted("fail2ban") {
        fail2ban_compare(addrs / 5);
    }
}
