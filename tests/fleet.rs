//! A fleet of PBXes sharing bans through a real CrowdSec Local API (issue 14). No mock: Debian's
//! crowdsec 1.4.6 runs as `crowdsec -no-cs` on sqlite in a temp dir (tests/common/crowdsec.rs).
use crate::common;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::crowdsec::{Lapi, LapiNet, require_crowdsec};
use common::netns::Pair;

/// The harness itself: a LAPI comes up, takes a machine and a bouncer, and both can log in
/// or pull; the decisions list starts empty.
#[test]
fn lapi_harness_starts_and_takes_a_machine_and_a_bouncer() {
    if !require_crowdsec("lapi_harness_starts_and_takes_a_machine_and_a_bouncer") {
        return;
    }
    let lapi = Lapi::start(None, "127.0.0.1");
    lapi.add_machine("pbx-a", "pbx-a-password-0123456789");
    let key = lapi.add_bouncer("astpatch-pbx-a");
    assert!(!key.is_empty());
    assert!(lapi.decisions().is_empty());
    lapi.cscli_ok(&[
        "decisions",
        "add",
        "--ip",
        "198.51.100.9",
        "--duration",
        "1h",
    ]);
    let d = lapi.decisions();
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].0, "198.51.100.9");
    assert_eq!(d[0].1, "cscli");
}

const PJSIP: &str = "NOTICE[4242] res_pjsip/pjsip_distributor.c: Request 'REGISTER' from '<sip:100@10.250.0.1>' failed for 'ADDR:5060' (callid: 1a2b3c) - No matching endpoint found";

fn append_failures(log: &Path, addr: &str, n: usize) {
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .open(log)
        .unwrap();
    for _ in 0..n {
        writeln!(f, "[2026-11-26 18:00:00] {}", PJSIP.replace("ADDR", addr)).unwrap();
    }
}

/// One PBX: a watcher with `--ban` in its namespace, its log, state and settings.
struct Pbx {
    pair: Pair,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Output of every run so far.
    out: String,
    runs: u32,
    /// firewall_check, in seconds: the tests check the firewall every second; the bench
    /// leaves the production minute so its idle figure is the steady state's.
    recheck: &'static str,
}

impl Pbx {
    fn new(
        name: &str,
        backend: &str,
        url: &str,
        password: &str,
        api_key: &str,
        ignore: &[&str],
    ) -> Pbx {
        let pair = Pair::new();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("asterisk.log"), "").unwrap();
        let mut ignoreip = vec!["127.0.0.0/8".to_owned(), "::1".to_owned()];
        ignoreip.extend(ignore.iter().map(|s| s.to_string()));
        let quoted: Vec<String> = ignoreip.iter().map(|s| format!("\"{s}\"")).collect();
        std::fs::write(d.join("password"), format!("{password}\n")).unwrap();
        let cfg = format!(
            "logs = [\"{log}\"]\nstate_dir = \"{state}\"\nbackend = \"{backend}\"\nmaxretry = 3\n\
             ignoreip = [{ign}]\n\n[crowdsec]\nurl = \"{url}\"\nmachine_id = \"{name}\"\n\
             password_file = \"{pw}\"\napi_key = \"{api_key}\"\npull_every = \"1s\"\n",
            log = d.join("asterisk.log").display(),
            state = d.join("state").display(),
            ign = quoted.join(", "),
            pw = d.join("password").display(),
        );
        std::fs::write(d.join("astpatch.toml"), cfg).unwrap();
        Pbx {
            pair,
            dir,
            child: None,
            out: String::new(),
            runs: 0,
            recheck: "1",
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("asterisk.log")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn out_path(&self) -> PathBuf {
        self.dir.path().join(format!("watch-{}.out", self.runs))
    }

    fn start(&mut self) {
        self.runs += 1;
        let _ = std::fs::remove_file(self.state().join("watch.pid"));
        let cfg = self.dir.path().join("astpatch.toml");
        let text = std::fs::read_to_string(&cfg).unwrap();
        if !text.contains("firewall_check") {
            // Top-level key: before any [table] of the file.
            std::fs::write(
                &cfg,
                format!("firewall_check = \"{}s\"\n{text}", self.recheck),
            )
            .unwrap();
        }
        let child = Command::new("ip")
            .args(["netns", "exec", &self.pair.pbx, common::bin()])
            .args(["watch", "--ban", "--config"])
            .arg(&cfg)
            .stdout(std::fs::File::create(self.out_path()).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.wait_for(|p| p.state().join("watch.pid").exists(), "watcher start");
    }

    /// SIGKILL: nothing of the watcher gets to run.
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.out
            .push_str(&std::fs::read_to_string(self.out_path()).unwrap_or_default());
    }

    fn output(&self) -> String {
        self.out.clone() + &std::fs::read_to_string(self.out_path()).unwrap_or_default()
    }

    fn wait_for(&self, mut cond: impl FnMut(&Pbx) -> bool, what: &str) {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(15) {
            if cond(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "{}: timed out waiting for {what}; watcher said:\n{}",
            self.pair.pbx,
            self.output()
        );
    }

    /// Seconds until `cond` held, at most `limit`.
    fn within(&self, limit: Duration, mut cond: impl FnMut(&Pbx) -> bool, what: &str) -> Duration {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if cond(self) {
                return t0.elapsed();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{}: not within {limit:?}: {what}; watcher said:\n{}",
            self.pair.pbx,
            self.output()
        );
    }

    fn reaches(&self, v6: bool) -> bool {
        self.pair.peer_reaches(v6)
    }

    fn status(&self) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.pair.pbx, common::bin()])
            .args(["status", "--config"])
            .arg(self.dir.path().join("astpatch.toml"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `astpatch ARGS --config …` in the PBX's namespace: (success, stdout+stderr).
    fn cli(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.pair.pbx, common::bin()])
            .args(args)
            .arg("--config")
            .arg(self.dir.path().join("astpatch.toml"))
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }

    fn fleet_objects(&self) -> String {
        let out = self.pair.exec(
            &self.pair.pbx,
            &["nft", "list", "table", "inet", "astpatch-fleet"],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Pbx {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The whole issue-14 story on nftables with real packets: two PBXes in two namespaces
/// share one real LAPI (in a third); the attacker is the peer's address, the same in both
/// pairs.
#[test]
fn two_pbxes_share_bans_through_a_real_lapi() {
    let name = "two_pbxes_share_bans_through_a_real_lapi";
    if !common::require_root(name) || !require_crowdsec(name) {
        return;
    }
    let t_start = Instant::now();
    let mut net = LapiNet::new();
    let mut lapi = Lapi::start(Some(&net.ns), "0.0.0.0");
    lapi.add_machine("pbx-a", "pbx-a-password-0123456789");
    lapi.add_machine("pbx-b", "pbx-b-password-0123456789");
    let key_a = lapi.add_bouncer("astpatch-pbx-a");
    let key_b = lapi.add_bouncer("astpatch-pbx-b");
    // B never bans the peer's IPv6 address, whatever the fleet says.
    let (peer4, peer6) = ("10.250.0.2", "fd00:a57::2");
    let mut a = Pbx::new(
        "pbx-a",
        "nftables",
        "",
        "pbx-a-password-0123456789",
        &key_a,
        &[],
    );
    let url_a = net.link(&a.pair.pbx, lapi.port);
    let mut b = Pbx::new(
        "pbx-b",
        "nftables",
        "",
        "pbx-b-password-0123456789",
        &key_b,
        &[peer6],
    );
    let url_b = net.link(&b.pair.pbx, lapi.port);
    for (p, url) in [(&a, &url_a), (&b, &url_b)] {
        let cfg = p.dir.path().join("astpatch.toml");
        let t = std::fs::read_to_string(&cfg).unwrap();
        std::fs::write(&cfg, t.replace("url = \"\"", &format!("url = \"{url}\""))).unwrap();
    }
    a.start();
    b.start();
    assert!(a.reaches(false) && b.reaches(false) && b.reaches(true));

    // 1. The attacker fails on A: A bans it, pushes, B pulls and drops it within pull_every.
    append_failures(&a.log(), peer4, 3);
    a.wait_for(|p| !p.reaches(false), "A drops the attacker");
    // pull_every (1 s), plus the push and one packet probe (600 ms when dropped).
    let took = b.within(
        Duration::from_secs(3),
        |p| !p.reaches(false),
        "B drops the attacker A banned",
    );
    eprintln!("A's ban dropped on B after {took:?} (pull_every 1s)");
    let d = lapi.decisions();
    assert!(
        d.iter()
            .any(|(v, o, s)| v == peer4 && o == "crowdsec" && s == "astpatch/asterisk-auth"),
        "{d:?}"
    );
    // The alert means something to `cscli alerts inspect`: machine, scenario, rule, count.
    let alerts = lapi.cscli_ok(&["alerts", "list", "-o", "json"]);
    assert!(
        alerts.contains("pbx-a") && alerts.contains("astpatch/asterisk-auth"),
        "{alerts}"
    );
    // A does not apply its own decision a second time: its fleet objects stay empty.
    a.wait_for(|p| p.output().contains("full list"), "A pulled");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!a.fleet_objects().contains(peer4), "{}", a.fleet_objects());
    assert!(b.fleet_objects().contains(peer4), "{}", b.fleet_objects());
    assert!(b.output().contains("fleet: "), "{}", b.output());

    // A Range ban by hand travels as a Range decision.
    let (ok, said) = a.cli(&["ban", "198.51.100.0/24"]);
    assert!(ok, "{said}");
    b.wait_for(
        |p| p.fleet_objects().contains("198.51.100.0/24"),
        "B holds A's Range ban",
    );
    assert!(
        lapi.decisions()
            .iter()
            .any(|(v, _, s)| v == "198.51.100.0/24" && s == "astpatch/manual"),
        "{:?}",
        lapi.decisions()
    );
    // verify checks the login and the stream (without taking the watcher's delta).
    // (An Asterisk of our own naming, stopped: the host may run others.)
    let conf = a.dir.path().join("asterisk.conf");
    std::fs::write(&conf, "[directories]\n").unwrap();
    let (_, said) = a.cli(&["verify", "--asterisk-conf", conf.to_str().unwrap()]);
    assert!(
        said.contains("logged in as watcher machine pbx-a")
            && said.contains("bouncer key taken; the watcher pulled"),
        "{said}"
    );

    let (ok, said) = a.cli(&["unban", "198.51.100.0/24"]);
    assert!(ok, "{said}");
    b.wait_for(
        |p| !p.fleet_objects().contains("198.51.100.0/24"),
        "B drops A's Range ban once A lifted it",
    );

    // 2. `cscli decisions delete` lets it back in on both.
    lapi.cscli_ok(&["decisions", "delete", "--ip", peer4]);
    b.within(
        Duration::from_secs(6),
        |p| p.reaches(false),
        "B lets it back in",
    );
    a.within(
        Duration::from_secs(6),
        |p| p.reaches(false),
        "A lets it back in",
    );
    assert!(
        a.output().contains("its decision was deleted on the LAPI"),
        "{}",
        a.output()
    );

    // 2b. A manual unban on A of a ban A pushed deletes its decision: B lets it back in too.
    append_failures(&a.log(), peer4, 3);
    a.wait_for(|p| !p.reaches(false), "A drops the attacker again");
    b.within(
        Duration::from_secs(6),
        |p| !p.reaches(false),
        "B drops it again",
    );
    let (ok, said) = a.cli(&["unban", peer4]);
    assert!(ok, "{said}");
    assert!(said.contains("the watcher deletes its decision"), "{said}");
    a.within(Duration::from_secs(3), |p| p.reaches(false), "A lets it in");
    b.within(
        Duration::from_secs(6),
        |p| p.reaches(false),
        "B lets it in after A's unban",
    );
    assert!(
        !lapi.decisions().iter().any(|(v, _, _)| v == peer4),
        "{:?}",
        lapi.decisions()
    );

    // 3. A decision from elsewhere is enforced on both; one for B's ignoreip is not on B.
    lapi.cscli_ok(&[
        "decisions",
        "add",
        "--ip",
        peer4,
        "--duration",
        "1h",
        "--reason",
        "pbx-z",
    ]);
    lapi.cscli_ok(&[
        "decisions",
        "add",
        "--ip",
        peer6,
        "--duration",
        "1h",
        "--reason",
        "pbx-z",
    ]);
    a.within(
        Duration::from_secs(6),
        |p| !p.reaches(false) && !p.reaches(true),
        "A enforces cscli's decisions",
    );
    b.within(
        Duration::from_secs(6),
        |p| !p.reaches(false),
        "B enforces cscli's decision",
    );
    b.wait_for(
        |p| {
            p.output().contains(&format!(
                "not enforcing {peer6}/128 (decision from cscli): overlaps ignoreip"
            ))
        },
        "B says it refused",
    );
    assert!(
        b.reaches(true),
        "B's ignoreip address is never banned by the fleet"
    );
    assert_eq!(
        b.output()
            .matches(&format!("not enforcing {peer6}/128"))
            .count(),
        1,
        "said once"
    );
    // A decision on the LAPI's own address would cut A's link: refused, said once.
    lapi.cscli_ok(&["decisions", "add", "--ip", "10.251.1.1", "--duration", "1h"]);
    a.wait_for(
        |p| {
            p.output().contains(
                "not enforcing 10.251.1.1/32 (decision from cscli): it covers the LAPI's address",
            )
        },
        "A refuses to ban the LAPI",
    );
    // Unbanning a fleet ban on A lifts it on A only.
    let (ok, said) = a.cli(&["unban", peer4]);
    assert!(ok, "{said}");
    assert!(
        said.contains("lifted the fleet's ban of 10.250.0.2/32 here (decision from cscli")
            && said.contains("cscli decisions delete --ip 10.250.0.2"),
        "{said}"
    );
    a.within(
        Duration::from_secs(3),
        |p| p.reaches(false),
        "A lifts the fleet's ban here",
    );
    assert!(!b.reaches(false), "B still enforces it");
    let st = b.status();
    assert!(
        st.contains("Fleet decisions:    3 held, 2 enforced here, 1 refused"),
        "{st}"
    );
    assert!(
        st.contains("not enforced: refusing to ban fd00:a57::2/128: overlaps ignoreip"),
        "{st}"
    );
    lapi.cscli_ok(&["decisions", "delete", "--all"]);
    a.within(
        Duration::from_secs(6),
        |p| p.reaches(false) && p.reaches(true),
        "A lets both back in",
    );

    // 4. The LAPI goes away: local bans go on, pushes wait; it comes back: they arrive.
    lapi.stop();
    append_failures(&a.log(), peer6, 3);
    a.wait_for(|p| !p.reaches(true), "A bans locally without the LAPI");
    a.wait_for(
        |p| p.output().contains("push: LAPI unreachable"),
        "A says the LAPI is gone",
    );
    let st = a.status();
    assert!(st.contains("Fleet pushes:       1 queued"), "{st}");
    assert!(st.contains("LAPI unreachable"), "{st}");
    lapi.run();
    a.within(
        Duration::from_secs(10),
        |_| lapi.decisions().iter().any(|(v, _, _)| v == peer6),
        "the queued push arrives",
    );

    // 5. Same after kill -9 of the watcher while the LAPI is away.
    lapi.stop();
    append_failures(&a.log(), "198.51.100.20", 3);
    a.wait_for(
        |p| p.output().contains("ban 198.51.100.20"),
        "A bans 198.51.100.20",
    );
    a.kill9();
    lapi.run();
    a.start();
    a.within(
        Duration::from_secs(10),
        |_| {
            lapi.decisions()
                .iter()
                .any(|(v, _, _)| v == "198.51.100.20")
        },
        "the push queued before kill -9 arrives",
    );
    eprintln!("whole scenario: {:?}", t_start.elapsed());
}

/// Per backend, the fleet objects for real: a decision from elsewhere (IPv4 host, IPv6
/// host) drops the peer, its deletion lets it in; a flush of the fleet objects from outside
/// is repaired; the local objects are left alone.
fn fleet_objects_roundtrip(backend: &str) {
    let name = format!("fleet_objects_roundtrip_{backend}");
    if !common::require_root(&name) || !require_crowdsec(&name) {
        return;
    }
    let mut net = LapiNet::new();
    let lapi = Lapi::start(Some(&net.ns), "0.0.0.0");
    let key = lapi.add_bouncer("astpatch-pbx-c");
    lapi.add_machine("pbx-c", "pbx-c-password-0123456789");
    let mut c = Pbx::new("pbx-c", backend, "", "pbx-c-password-0123456789", &key, &[]);
    let url = net.link(&c.pair.pbx, lapi.port);
    let cfg = c.dir.path().join("astpatch.toml");
    let t = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, t.replace("url = \"\"", &format!("url = \"{url}\""))).unwrap();
    c.start();
    assert!(c.reaches(false) && c.reaches(true));
    for v in ["10.250.0.2", "fd00:a57::2"] {
        lapi.cscli_ok(&["decisions", "add", "--ip", v, "--duration", "1h"]);
    }
    c.within(
        Duration::from_secs(4),
        |p| !p.reaches(false) && !p.reaches(true),
        "both families dropped",
    );
    // Nothing went into the local objects: `status` lists no local ban, two fleet bans.
    let st = c.status();
    assert!(st.contains("Currently banned:   0"), "{st}");
    assert!(st.contains("Fleet bans (2):"), "{st}");
    // Flushed from outside: the periodic check puts them back.
    match backend {
        "ipset" => {
            c.pair
                .exec_ok(&c.pair.pbx, &["ipset", "flush", "astpatch-fleet4"]);
            c.pair.exec_ok(
                &c.pair.pbx,
                &[
                    "iptables",
                    "-D",
                    "INPUT",
                    "-m",
                    "set",
                    "--match-set",
                    "astpatch-fleet4",
                    "src",
                    "-j",
                    "DROP",
                ],
            );
        }
        _ => {
            c.pair
                .exec_ok(&c.pair.pbx, &["iptables", "-F", "astpatch-fleet"]);
        }
    }
    assert!(c.reaches(false), "flushed: the peer passes for now");
    c.within(
        Duration::from_secs(5),
        |p| !p.reaches(false),
        "the fleet objects repaired",
    );
    lapi.cscli_ok(&["decisions", "delete", "--all"]);
    c.within(
        Duration::from_secs(4),
        |p| p.reaches(false) && p.reaches(true),
        "both let in again",
    );
    // Uninstall: `unban --all --purge` removes the fleet objects too.
    c.kill9();
    let (ok, said) = c.cli(&["unban", "--all", "--purge"]);
    assert!(ok && said.contains("fleet: "), "{said}");
    let gone = match backend {
        "ipset" => !c
            .pair
            .exec(&c.pair.pbx, &["ipset", "list", "-n", "astpatch-fleet4"])
            .status
            .success(),
        _ => !c
            .pair
            .exec(&c.pair.pbx, &["iptables", "-S", "astpatch-fleet"])
            .status
            .success(),
    };
    assert!(gone, "{said}");
}

#[test]
fn fleet_objects_roundtrip_ipset() {
    fleet_objects_roundtrip("ipset");
}

#[test]
fn fleet_objects_roundtrip_iptables() {
    fleet_objects_roundtrip("iptables");
}

/// `scripts/bench-fleet` (ignored in the suite): a real LAPI holding N decisions (default
/// 100,000: 90% IPv4 hosts, 10% IPv6 hosts); prints the first stream's cost, step by step and
/// end to end through the watcher, per backend, and what a steady-state pull costs.
#[test]
#[ignore]
fn bench_fleet_stream() {
    use astpatch::fleet::client::{Http, Lapi as _};
    use astpatch::fleet::enforce::Enforcer;
    use astpatch::fleet::pull::{Fleet, desired};
    if !common::require_root("bench_fleet_stream") || !require_crowdsec("bench_fleet_stream") {
        return;
    }
    let n: usize = std::env::var("ASTPATCH_BENCH_DECISIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let mut net = LapiNet::new();
    let lapi = Lapi::start(Some(&net.ns), "0.0.0.0");
    let key = lapi.add_bouncer("astpatch-bench");
    let csv = lapi.dir().join("decisions.csv");
    let mut text = String::from("duration,scope,value\n");
    for i in 0..n {
        if i % 10 == 9 {
            text.push_str(&format!("4h,ip,2a02:db8:{:x}::{:x}\n", i >> 16, i & 0xffff));
        } else {
            text.push_str(&format!(
                "4h,ip,44.{}.{}.{}\n",
                (i >> 16) & 255,
                (i >> 8) & 255,
                i & 255
            ));
        }
    }
    std::fs::write(&csv, text).unwrap();
    let t = Instant::now();
    lapi.cscli_ok(&["decisions", "import", "-i", csv.to_str().unwrap()]);
    println!(
        "setup: cscli decisions import of {n} decisions: {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // Step by step, in process, against the fleet objects in a namespace of their own.
    let pair = Pair::new();
    let url = net.link(&pair.pbx, lapi.port);
    let settings = astpatch::settings::Settings::default();
    let (stream, t_stream) = common::netns::in_netns(&pair.pbx, {
        let (url, key) = (url.clone(), key.clone());
        move || {
            let mut http = Http::new(&url);
            let t = Instant::now();
            let s = http.stream(&key, true).unwrap();
            (s, t.elapsed())
        }
    });
    let now = astpatch::clock::now_secs();
    let t = Instant::now();
    let mut fleet = Fleet::default();
    let (added, _) = fleet.take(stream, true, now);
    let t_take = t.elapsed();
    let t = Instant::now();
    let want = desired(
        &fleet,
        &settings,
        &[],
        &Default::default(),
        &Default::default(),
        true,
        now,
    );
    let t_desired = t.elapsed();
    assert_eq!(added, n);
    assert_eq!(want.nets.len(), n);
    println!(
        "first stream (startup=true), {n} decisions: LAPI answer + transfer + parse {:.2} s; held {:.0} ms; filtered (ignoreip, own, covered) {:.0} ms",
        t_stream.as_secs_f64(),
        t_take.as_secs_f64() * 1e3,
        t_desired.as_secs_f64() * 1e3
    );
    for backend in ["nftables", "ipset"] {
        let b: astpatch::firewall::Backend =
            serde_json::from_str(&format!("\"{backend}\"")).unwrap();
        let mut enf = Enforcer::new(
            b,
            Box::new(astpatch::firewall::SystemRunner::in_netns(&pair.pbx)),
            true,
        );
        let t = Instant::now();
        enf.apply(&want.nets, now).unwrap();
        let full = t.elapsed();
        // One more decision, as a steady-state change.
        let mut more = want.nets.clone();
        more.insert("45.1.2.3/32".parse().unwrap(), now + 3600);
        let t = Instant::now();
        enf.apply(&more, now).unwrap();
        let one = t.elapsed();
        let t = Instant::now();
        enf.apply(&more, now).unwrap();
        let none = t.elapsed();
        println!(
            "{backend:>9}: {n} fleet bans into the kernel in {:.2} s (one batch); +1 decision {:.1} ms; nothing changed {:.3} ms",
            full.as_secs_f64(),
            one.as_secs_f64() * 1e3,
            none.as_secs_f64() * 1e3
        );
        let _ = pair.exec(
            &pair.pbx,
            &["nft", "delete", "table", "inet", "astpatch-fleet"],
        );
    }
    drop(pair);

    // End to end: the watcher starts against the LAPI holding n decisions; time from its
    // start line to "fleet bans in place", per backend.
    for backend in ["nftables", "ipset"] {
        let mut p = Pbx::new("bench", backend, "", "unused", &key, &[]);
        let url = net.link(&p.pair.pbx, lapi.port);
        let cfg = p.dir.path().join("astpatch.toml");
        let t = std::fs::read_to_string(&cfg).unwrap();
        let t = t
            .replace("url = \"\"", &format!("url = \"{url}\"\npush = false"))
            .replace("machine_id = \"bench\"\n", "");
        let t = t
            .lines()
            .filter(|l| !l.starts_with("password_file"))
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&cfg, t + "\n").unwrap();
        p.recheck = "60";
        let t0 = Instant::now();
        p.start();
        p.within(
            Duration::from_secs(60),
            |p| p.output().contains(&format!("{n} fleet bans in place")),
            "all fleet bans in place",
        );
        let total = t0.elapsed();
        // Steady state: pull_every 1s, nothing changes; the watcher's CPU over 20 s.
        let pid = p.child.as_ref().unwrap().id();
        let cpu = |pid: u32| -> f64 {
            // `ip netns exec` execs the watcher: the child's pid is the watcher's.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let f: Vec<&str> = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect();
            let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
                + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
            ticks / 100.0
        };
        std::thread::sleep(Duration::from_secs(2));
        let c0 = cpu(pid);
        std::thread::sleep(Duration::from_secs(20));
        let c1 = cpu(pid);
        println!(
            "{backend:>9}: watcher start → {n} fleet bans in place: {:.2} s end to end; then idle with pull_every 1s: {:.1} ms CPU per pull",
            total.as_secs_f64(),
            (c1 - c0) * 1e3 / 20.0
        );
        p.kill9();
    }

    // A delta pull when nothing changed, from this side.
    let pair = Pair::new();
    let url = net.link(&pair.pbx, lapi.port);
    let times = common::netns::in_netns(&pair.pbx, move || {
        let mut http = Http::new(&url);
        http.stream(&key, true).unwrap();
        (0..20)
            .map(|_| {
                let t = Instant::now();
                let s = http.stream(&key, false).unwrap();
                assert!(s.new.unwrap_or_default().is_empty());
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect::<Vec<f64>>()
    });
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "steady-state delta pull, nothing changed ({n} decisions held on the LAPI): p50 {:.1} ms, max {:.1} ms (round trip, mostly the LAPI's query)",
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1]
    );
}
