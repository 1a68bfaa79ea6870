//! `astpatch verify` against real files in a temp root: a mini tree built with real make/gcc,
//! logger.conf variants, a watcher pid file naming a live process, and the firewall check
//! against real iptables inside a network namespace the test creates.
use crate::common;

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

use astpatch::ban::state::{self, Ban, PidFile, State};
use astpatch::cli::progress::PlainProgress;
use astpatch::firewall::Backend;
use astpatch::firewall::{self, SystemRunner};
use astpatch::module::build::{self, RebuildOptions};
use common::mini_asterisk::{self, MiniTree};
use ipnet::IpNet;

const LOGGER_GOOD: &str = "[general]\ndateformat = %F %T.%3q\n\n[logfiles]\nconsole => notice,warning,error\nmessages => notice,warning,error\nsecurity => security\n";
const LOGGER_BAD: &str = "[general]\ndateformat = %d/%m/%Y %H:%M\n\n[logfiles]\nconsole => notice,warning,error\nmessages => notice,warning,error\n";

struct System {
    dir: tempfile::TempDir,
    tree: PathBuf,
    root: PathBuf,
    config: PathBuf,
    moddir: PathBuf,
}

impl System {
    fn state_dir(&self) -> PathBuf {
        self.root.join("var/lib/astpatch")
    }
}

/// Built, installed (stock), with asterisk.conf, logger.conf and an astpatch.toml.
fn system(logger: &str) -> System {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let root = dir.path().join("root");
    mini_asterisk::write(&tree, &MiniTree::default());
    mini_asterisk::run(&tree, "./configure", &["--prefix=/usr"]);
    mini_asterisk::run(&tree, "make", &["-j2"]);
    mini_asterisk::run(
        &tree,
        "make",
        &["install", &format!("DESTDIR={}", root.display())],
    );
    let etc = root.join("etc/asterisk");
    fs::create_dir_all(&etc).unwrap();
    fs::write(
        etc.join("asterisk.conf"),
        "[directories](!)\nastetcdir => /etc/asterisk\nastmoddir => /usr/lib/asterisk/modules\nastlogdir => /var/log/asterisk\nastrundir => /var/run/asterisk\n",
    )
    .unwrap();
    fs::write(etc.join("logger.conf"), logger).unwrap();
    let config = dir.path().join("astpatch.toml");
    fs::write(
        &config,
        "logs = [\"/var/log/asterisk/messages\", \"/var/log/asterisk/security\"]\nstate_dir = \"/var/lib/astpatch\"\nbackend = \"iptables\"\npatched = true\n",
    )
    .unwrap();
    let moddir = root.join("usr/lib/asterisk/modules");
    System {
        dir,
        tree,
        root,
        config,
        moddir,
    }
}

fn patch_rebuild_install(s: &System) {
    astpatch::patch::apply::apply(&s.tree, false).unwrap();
    let mut p = PlainProgress::new(Vec::new());
    build::rebuild(&s.tree, &RebuildOptions { jobs: 2, log: None }, &mut p).unwrap();
    astpatch::module::install::install_module(&s.tree, &s.moddir).unwrap();
}

/// A process whose command line reads `astpatch watch [--ban]`, standing in for the watcher
/// (a shell blocked reading its stdin: no child left behind when it is killed).
struct FakeWatcher(Child);

impl FakeWatcher {
    fn start(ban: bool) -> FakeWatcher {
        let mut c = Command::new("/bin/sh");
        c.args(["-c", "read x", "astpatch", "watch"]);
        if ban {
            c.arg("--ban");
        }
        FakeWatcher(c.stdin(Stdio::piped()).spawn().unwrap())
    }
}

impl Drop for FakeWatcher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn pid_file(s: &System, pid: u32) {
    fs::create_dir_all(s.state_dir()).unwrap();
    state::write_pid_file(
        &s.state_dir(),
        &PidFile {
            pid,
            logs: vec![
                "/var/log/asterisk/messages".into(),
                "/var/log/asterisk/security".into(),
            ],
            backend: Backend::Iptables,
            started_at: 1_795_000_000,
        },
    )
    .unwrap();
}

fn record_ban(s: &System, net: &str) {
    let now = astpatch::clock::now_secs();
    let mut st = State::open(&s.state_dir()).unwrap();
    st.record_ban(Ban {
        net: net.parse().unwrap(),
        until: Some(now + 3600),
        reason: "chan-sip-auth".into(),
        failures: 5,
        banned_at: now,
    })
    .unwrap();
}

/// A network namespace of the test's own, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("astp-{}-v{tag}", std::process::id());
        let st = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap();
        assert!(st.success());
        Netns(name)
    }
    fn firewall(&self) -> Box<dyn firewall::Firewall> {
        firewall::for_backend(Backend::Iptables, Box::new(SystemRunner::in_netns(&self.0)))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn verify(s: &System, ns: Option<&Netns>, extra: &[&str]) -> Output {
    common::astpatch_in(ns.map(|n| n.0.as_str()))
        .arg("verify")
        .arg(&s.tree)
        .arg("--root")
        .arg(&s.root)
        .arg("--config")
        .arg(&s.config)
        .args(extra)
        .output()
}

/// One check of a `--json` report, by name.
fn by_name(v: &serde_json::Value, name: &str) -> serde_json::Value {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {v}"))
        .clone()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn snapshot(name: &str, s: &System, text: &str) {
    let tmp = s.dir.path().display().to_string();
    insta::with_settings!({filters => vec![
        (tmp.as_str(), "[TMP]"),
        (r"pid \d+", "pid [PID]"),
        (r"sha256 [0-9a-f]{12}", "sha256 [SHA]"),
        (r"\b[0-9a-f]{16}\b", "[TAG]"),
    ]}, {
        insta::assert_snapshot!(name, text);
    });
}

#[test]
fn a_fully_working_system_passes_every_check() {
    if !common::require_root("a_fully_working_system_passes_every_check") {
        return;
    }
    let s = system(LOGGER_GOOD);
    patch_rebuild_install(&s);
    let _w = FakeWatcher::start(true);
    pid_file(&s, _w.0.id());
    record_ban(&s, "203.0.113.7/32");
    record_ban(&s, "2001:db8:7::/64");
    let ns = Netns::new("pass");
    let mut fw = ns.firewall();
    fw.ensure().unwrap();
    fw.ban("203.0.113.7/32".parse().unwrap(), None).unwrap();
    fw.ban("2001:db8:7::/64".parse().unwrap(), None).unwrap();

    let o = verify(&s, Some(&ns), &[]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}{}",
        stdout(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    snapshot("verify_passing_system", &s, &stdout(&o));

    // The kernel drifts from the state: one ban gone, one nobody recorded.
    fw.unban("2001:db8:7::/64".parse().unwrap()).unwrap();
    fw.ban("198.51.100.9/32".parse().unwrap(), None).unwrap();
    let o = verify(&s, Some(&ns), &["--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let fwc = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "firewall")
        .unwrap();
    assert_eq!(fwc["status"], "fail");
    let detail = fwc["detail"].as_str().unwrap();
    assert!(
        detail.contains("1 active ban(s) not in the kernel: 2001:db8:7::/64"),
        "{detail}"
    );
    assert!(
        detail.contains("does not know: 198.51.100.9/32"),
        "{detail}"
    );
    assert_eq!(v["ok"], false);

    // The same pid file, but the process behind it reports only: it bans nothing.
    let report_only = FakeWatcher::start(false);
    pid_file(&s, report_only.0.id());
    let o = verify(&s, Some(&ns), &["--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let w = &by_name(&v, "watcher");
    assert_eq!(w["name"], "watcher");
    assert_eq!(w["status"], "fail", "{w}");
    assert!(w["detail"].as_str().unwrap().contains("report-only"), "{w}");
    assert!(
        w["fix"]
            .as_str()
            .unwrap()
            .starts_with("restart it with --ban"),
        "{w}"
    );
}

#[test]
fn a_half_done_system_fails_with_one_fix_per_link() {
    if !common::require_root("a_half_done_system_fails_with_one_fix_per_link") {
        return;
    }
    let s = system(LOGGER_BAD);
    // Patched but never rebuilt; the stock module stays installed.
    astpatch::patch::apply::apply(&s.tree, false).unwrap();
    // The watcher died and left its pid file; the firewall was never set up.
    let mut gone = Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    fs::create_dir_all(s.state_dir()).unwrap();
    pid_file(&s, dead);
    record_ban(&s, "203.0.113.7/32");
    let ns = Netns::new("fail");
    let o = verify(&s, Some(&ns), &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    snapshot("verify_failing_system", &s, &stdout(&o));
}

#[test]
fn without_a_watcher_its_checks_are_skipped_and_dateformat_only_warns() {
    let s = system(&LOGGER_GOOD.replace("%F %T.%3q", "%d/%m/%Y %H:%M"));
    patch_rebuild_install(&s);
    let o = verify(&s, None, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    snapshot("verify_no_watcher_yet", &s, &stdout(&o));
    // Without SRC: the installed module is judged by its own bytes.
    let o = Command::new(common::bin())
        .args(["verify", "--json", "--root"])
        .arg(&s.root)
        .arg("--config")
        .arg(&s.config)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let status: Vec<(&str, &str)> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        status,
        [
            ("source", "skipped"),
            ("built-module", "skipped"),
            ("installed-module", "pass"),
            ("loaded-module", "skipped"),
            ("logging", "warn"),
            ("watcher", "skipped"),
            ("firewall", "skipped"),
            // The settings here say patched = true: flagged, never failed.
            ("trust", "warn")
        ]
    );
}

#[test]
fn logging_follows_appendhostname_absolute_paths_and_unwatched_files() {
    let s = system(LOGGER_GOOD);
    let logger = s.root.join("etc/asterisk/logger.conf");
    // NOTICE only to a file the watcher does not read.
    fs::write(
        &logger,
        "[logfiles]\n/var/log/pbx/full => notice,verbose(3)\nsecurity => security\n",
    )
    .unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&verify(&s, None, &["--json"]).stdout).unwrap();
    let c = &by_name(&v, "logging");
    assert_eq!(c["status"], "fail");
    let fix = c["fix"].as_str().unwrap();
    assert!(
        fix.contains(&format!(
            "add \"{}\" to logs",
            s.root.join("var/log/pbx/full").display()
        )),
        "{fix}"
    );
    // appendhostname: the file really written is messages.<host>, which is not watched.
    fs::write(
        &logger,
        "[general]\nappendhostname = yes\n[logfiles]\nmessages => notice\nsecurity => security\n",
    )
    .unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&verify(&s, None, &["--json"]).stdout).unwrap();
    assert_eq!(by_name(&v, "logging")["status"], "fail");
    assert!(
        by_name(&v, "logging")["detail"]
            .as_str()
            .unwrap()
            .contains("messages."),
        "{}",
        by_name(&v, "logging")
    );
    // `*` catches every level, VERBOSE too: packet traces would land in the watched file.
    fs::write(&logger, "[logfiles]\nmessages => *\nsecurity => *\n").unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&verify(&s, None, &["--json"]).stdout).unwrap();
    assert_eq!(
        by_name(&v, "logging")["status"],
        "warn",
        "{}",
        by_name(&v, "logging")
    );
    fs::write(
        &logger,
        "[logfiles]\nmessages => notice,warning,verbose(3)\nsecurity => security\nfull => verbose,debug\n",
    )
    .unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&verify(&s, None, &["--json"]).stdout).unwrap();
    let c = &by_name(&v, "logging");
    assert_eq!(c["status"], "warn", "{c}");
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("also gets VERBOSE/DEBUG"),
        "{c}"
    );
    assert!(
        c["fix"].as_str().unwrap().contains("full => verbose,debug"),
        "{c}"
    );
    // Verbose to another file is fine.
    fs::write(
        &logger,
        "[logfiles]\nmessages => notice,warning,error\nsecurity => security\nfull => notice,verbose,debug\n",
    )
    .unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&verify(&s, None, &["--json"]).stdout).unwrap();
    assert_eq!(
        by_name(&v, "logging")["status"],
        "pass",
        "{}",
        by_name(&v, "logging")
    );
}

/// The firewall check reads each backend's real kernel objects (iptables chain, ipset sets,
/// nftables table) inside a namespace: hooked and in sync passes; not hooked, a missing ban
/// and an unknown entry each fail.
#[test]
fn firewall_check_reads_every_backend_from_the_kernel() {
    if !common::require_root("firewall_check_reads_every_backend_from_the_kernel") {
        return;
    }
    for backend in [Backend::Iptables, Backend::Ipset, Backend::Nftables] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let state_dir = root.join("var/lib/astpatch");
        fs::create_dir_all(&state_dir).unwrap();
        let settings = astpatch::settings::Settings {
            backend,
            ..Default::default()
        };
        let now = astpatch::clock::now_secs();
        let mut st = State::open(&state_dir).unwrap();
        for net in ["203.0.113.7/32", "2001:db8:7::/64"] {
            st.record_ban(Ban {
                net: net.parse().unwrap(),
                until: Some(now + 3600),
                reason: "chan-sip-auth".into(),
                failures: 5,
                banned_at: now,
            })
            .unwrap();
        }
        let ns = Netns::new(&format!("fw{backend}"));
        let open = |b: Backend| firewall::for_backend(b, Box::new(SystemRunner::in_netns(&ns.0)));
        let run = || {
            let inputs = astpatch::verify::Inputs {
                src: None,
                root,
                moddir: None,
                settings: &settings,
                running: astpatch::verify::Running::NotLooked,
                asterisk_conf: None,
            };
            let r = astpatch::verify::verify(&inputs, &open);
            r.checks.into_iter().find(|c| c.name == "firewall").unwrap()
        };
        let c = run();
        assert_eq!(
            c.status,
            astpatch::verify::Status::Fail,
            "{backend}: nothing set up yet"
        );
        assert!(c.detail.contains("not hooked"), "{backend}: {}", c.detail);

        let mut fw = open(backend);
        fw.ensure().unwrap();
        for net in ["203.0.113.7/32", "2001:db8:7::/64"] {
            fw.ban(net.parse().unwrap(), Some(now + 3600)).unwrap();
        }
        let c = run();
        assert_eq!(
            c.status,
            astpatch::verify::Status::Pass,
            "{backend}: {}",
            c.detail
        );
        assert!(
            c.detail.contains("all 2 active ban(s)"),
            "{backend}: {}",
            c.detail
        );

        fw.unban("203.0.113.7/32".parse().unwrap()).unwrap();
        fw.ban(
            "198.51.100.9/32".parse::<IpNet>().unwrap(),
            Some(now + 3600),
        )
        .unwrap();
        let c = run();
        assert_eq!(c.status, astpatch::verify::Status::Fail, "{backend}");
        assert!(
            c.detail.contains("not in the kernel: 203.0.113.7/32"),
            "{backend}: {}",
            c.detail
        );
        assert!(
            c.detail.contains("does not know: 198.51.100.9/32"),
            "{backend}: {}",
            c.detail
        );
        fw.teardown().unwrap();
    }
}

#[test]
fn a_root_that_does_not_exist_is_an_input_error_not_a_failed_checklist() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("no-such-root");
    let o = Command::new(common::bin())
        .args(["verify", "--root"])
        .arg(&missing)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("no such directory") && err.contains("hint:"),
        "{err}"
    );
    assert!(
        o.stdout.is_empty(),
        "no checklist for a root that is not there"
    );
}

#[test]
fn an_installed_unit_without_systemd_is_reported_and_one_without_ban_gets_its_fix() {
    let s = system(LOGGER_GOOD);
    let unit_dir = s.root.join("etc/systemd/system");
    fs::create_dir_all(&unit_dir).unwrap();
    let settings = astpatch::settings::Settings::default();
    let unit = astpatch::ban::unit_file::unit_text(
        std::path::Path::new("/usr/local/bin/astpatch"),
        std::path::Path::new("/etc/astpatch/astpatch.toml"),
        &settings,
        &astpatch::settings::Overrides::default(),
    );
    let path = unit_dir.join(astpatch::ban::unit_file::UNIT_NAME);
    let watcher = |unit: &str| {
        fs::write(&path, unit).unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&verify(&s, None, &["--json"]).stdout).unwrap();
        assert_eq!(by_name(&v, "watcher")["name"], "watcher");
        by_name(&v, "watcher").clone()
    };
    // The unit is installed, so the check applies even before the state dir exists; no
    // systemd in this root: said as detail, and the manual way to start it.
    let w = watcher(&unit);
    assert_eq!(w["status"], "fail", "{w}");
    let detail = w["detail"].as_str().unwrap();
    assert!(detail.starts_with("not running: no watch.pid"), "{detail}");
    assert!(
        detail.ends_with(&format!(
            "; unit file {} present but systemd is not running here",
            path.display()
        )),
        "{detail}"
    );
    assert!(w["fix"].as_str().unwrap().contains("astpatch watch --ban"));
    // Someone took --ban out of ExecStart=: the service would only report.
    let w = watcher(&unit.replace(" --ban", ""));
    assert_eq!(w["status"], "fail");
    assert!(
        w["fix"]
            .as_str()
            .unwrap()
            .contains("runs the watcher without --ban: put --ban back"),
        "{w}"
    );
}
