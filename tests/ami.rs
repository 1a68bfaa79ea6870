//! Security events over AMI: every real capture judged (only the real senders are ever named;
//! chan_sip's maddr-steered events never), and the watcher reading a real TCP server that
//! speaks AMI as Asterisk 20.20.1 did (banner, Login response, the captured event blocks).
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use astpatch::ami::message::Splitter;
use astpatch::ami::security::{Verdict, judge_block};

use crate::common;

const REAL: &str = "tests/corpus/real";

/// The bytes of a capture after its `# ---` header.
fn capture(path: &Path) -> Vec<u8> {
    let raw = std::fs::read(path).unwrap();
    let at = memchr::memmem::find(&raw, b"# ---\n").expect("header end") + 6;
    raw[at..].to_vec()
}

fn ami_captures() -> Vec<PathBuf> {
    let mut out = vec![];
    let mut dirs = vec![PathBuf::from(REAL)];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "ami") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_real_ami_capture_names_only_the_real_senders() {
    let allowed: Vec<IpAddr> = ["10.96.0.2", "10.96.0.3", "fd00:96::2", "fd00:96::3"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    let (mut failures, mut untrusted, mut events) = (0, 0, 0);
    let files = ami_captures();
    assert!(files.len() >= 20, "{files:?}");
    for f in &files {
        let mut s = Splitter::default();
        let bytes = capture(f);
        s.push(&bytes);
        if bytes.starts_with(b"Asterisk Call Manager/") {
            s.banner();
        }
        while let Some(b) = s.next_block() {
            events += 1;
            match judge_block(b.unwrap()) {
                Verdict::Failure { addr, .. } => {
                    failures += 1;
                    assert!(allowed.contains(&addr), "{}: blamed {addr}", f.display());
                }
                Verdict::Untrusted { service, .. } => {
                    untrusted += 1;
                    assert_eq!(service, "SIP", "{}", f.display());
                }
                Verdict::Refused(why) => panic!("{}: refused a real event: {why}", f.display()),
                Verdict::NoAddress { .. } | Verdict::NotFailure => {}
            }
        }
    }
    eprintln!(
        "ami captures: {} files, {events} messages, {failures} failures believed, {untrusted} chan_sip failures not",
        files.len()
    );
    assert!(failures > 0 && untrusted > 0);
}

/// A TCP server that answers as Asterisk 20.20.1's manager did: banner, Login response, then
/// the given event bytes. Records what the client sent.
struct FakeAmi {
    port: u16,
    sent: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl FakeAmi {
    fn start(accept_login: bool, events: Vec<u8>) -> FakeAmi {
        Self::start_in(None, accept_login, events)
    }

    /// Listening on 127.0.0.1 of network namespace `ns` (the watcher's own loopback there).
    fn start_in(ns: Option<&str>, accept_login: bool, events: Vec<u8>) -> FakeAmi {
        let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let rec = sent.clone();
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let ns = ns.map(|n| format!("/var/run/netns/{n}"));
        std::thread::spawn(move || {
            if let Some(path) = ns {
                use std::os::fd::AsRawFd;
                let fd = std::fs::File::open(&path).unwrap();
                // SAFETY: setns on this thread only; the sockets it makes stay in `path`.
                assert_eq!(
                    unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) },
                    0
                );
            }
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            port_tx.send(l.local_addr().unwrap().port()).unwrap();
            for conn in l.incoming() {
                let Ok(mut c) = conn else { return };
                let _ = c.write_all(b"Asterisk Call Manager/9.0.0\r\n");
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                rec.lock().unwrap().extend_from_slice(&got);
                if !accept_login {
                    let _ =
                        c.write_all(b"Response: Error\r\nMessage: Authentication failed\r\n\r\n");
                    continue;
                }
                let _ =
                    c.write_all(b"Response: Success\r\nMessage: Authentication accepted\r\n\r\n");
                let _ = c.write_all(&events);
                // Stay connected, as Asterisk does.
                std::thread::sleep(Duration::from_secs(30));
            }
        });
        let port = port_rx.recv().unwrap();
        FakeAmi { port, sent }
    }
}

struct Watch {
    child: Child,
    out: PathBuf,
}

impl Watch {
    fn start(env: &common::TestEnv, port: u16) -> Watch {
        let log = env.write("log/messages", "");
        let cfg = env.settings(&format!(
            "maxretry = 1\nlogs = [\"{}\"]\n[ami]\nport = {port}\nusername = \"astpatch\"\nsecret = \"labsecret\"\n",
            log.display()
        ));
        let out = env.join("watch.out");
        let child = Command::new(common::bin())
            .args(["watch", "--config"])
            .arg(&cfg)
            .env("NO_COLOR", "1")
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Watch { child, out }
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn wait_for(&self, what: &str) -> String {
        let until = Instant::now() + Duration::from_secs(15);
        loop {
            let t = self.text();
            if t.contains(what) {
                return t;
            }
            assert!(Instant::now() < until, "no {what:?} in:\n{t}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_watcher_bans_from_pjsip_events_and_never_from_chan_sips_maddr() {
    let dir = Path::new(REAL).join("asterisk-20.20.1/stock");
    // chan_sip's event names the Via maddr (192.0.2.1); PJSIP's the packet's source.
    let mut events = capture(&dir.join("09-register-wrong-maddr.ami"));
    events.extend(capture(&dir.join("40-pjsip-register-wrong-maddr.ami")));
    let ami = FakeAmi::start(true, events);
    let env = common::TestEnv::new();
    let w = Watch::start(&env, ami.port);
    let t = w.wait_for("would ban 10.96.0.2/32");
    assert!(
        t.contains("AMI: logged in (Asterisk Call Manager/9.0.0)"),
        "{t}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let t = w.text();
    assert!(
        !t.lines()
            .any(|l| l.contains("would ban") && l.contains("192.0.2.1")),
        "{t}"
    );
    let sent = String::from_utf8(ami.sent.lock().unwrap().clone()).unwrap();
    assert!(
        sent.starts_with(
            "Action: Login\r\nUsername: astpatch\r\nSecret: labsecret\r\nEvents: security\r\n\r\n"
        ),
        "{sent:?}"
    );
}

#[test]
fn a_refused_login_is_said_and_tried_again() {
    let ami = FakeAmi::start(false, vec![]);
    let env = common::TestEnv::new();
    let w = Watch::start(&env, ami.port);
    let t = w.wait_for("trying again in 2s");
    assert!(
        t.contains("AMI: login as astpatch refused: Authentication failed; trying again in 1s"),
        "{t}"
    );
    // Still watching the logs meanwhile.
    assert!(!t.contains("error"), "{t}");
}

/// The AMI source end to end: events a real 20.20.1 sent (addresses moved to the test's peer)
/// make a banning watcher drop the peer's real packets in a network namespace; the chan_sip
/// event that names the Via maddr bans nobody.
#[test]
fn ami_events_get_real_packets_dropped() {
    if !common::require_root("ami_events_get_real_packets_dropped") {
        return;
    }
    let pair = common::netns::Pair::new();
    let dir = Path::new(REAL).join("asterisk-20.20.1/stock");
    let mut events = capture(&dir.join("09-register-wrong-maddr.ami"));
    events.extend(capture(&dir.join("30-pjsip-register-wrong.ami")));
    let events = String::from_utf8(events)
        .unwrap()
        .replace("10.96.0.2", pair.peer4)
        .into_bytes();
    let ami = FakeAmi::start_in(Some(&pair.pbx), true, events);
    let env = common::TestEnv::new();
    let log = env.write("log/messages", "");
    let cfg = env.settings(&format!(
        "maxretry = 1\nbackend = \"nftables\"\nlogs = [\"{}\"]\n[ami]\nport = {}\nusername = \"astpatch\"\nsecret = \"labsecret\"\n",
        log.display(),
        ami.port
    ));
    assert!(pair.peer_reaches(false));
    let out = env.join("watch.out");
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
        .arg(&cfg)
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(15);
    while pair.peer_reaches(false) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    let dropped = !pair.peer_reaches(false);
    let _ = child.kill();
    let _ = child.wait();
    let t = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(dropped, "the peer still reaches the pbx:\n{t}");
    assert!(t.contains(&format!("ban {}/32", pair.peer4)), "{t}");
    assert!(!t.contains("192.0.2.1"), "{t}");
    let _ = Command::new("ip")
        .args([
            "netns",
            "exec",
            &pair.pbx,
            common::bin(),
            "unban",
            "--all",
            "--purge",
            "--config",
        ])
        .arg(&cfg)
        .output();
}

/// verify's ami row: manager.conf gives the user security events, and the manager takes the
/// login (a real TCP server answering as 20.20.1's did; a refused login fails with a fix).
#[test]
fn verify_checks_manager_conf_and_the_login() {
    for accept in [true, false] {
        let ami = FakeAmi::start(accept, vec![]);
        let env = common::TestEnv::new();
        let etc = env.join("etc");
        env.write(
            "etc/manager.conf",
            "[general]\nenabled = yes\nbindaddr = 127.0.0.1\n[astpatch]\nsecret = labsecret\nread = security\n",
        );
        let conf = env.write(
            "asterisk.conf",
            format!("[directories]\nastetcdir => {}\n", etc.display()),
        );
        let cfg = env.settings(&format!(
            "[ami]\nport = {}\nusername = \"astpatch\"\nsecret = \"labsecret\"\n",
            ami.port
        ));
        let r = common::astpatch()
            .args(["verify", "--json", "--asterisk-conf"])
            .arg(&conf)
            .arg("--config")
            .arg(&cfg)
            .run();
        let v = r.json();
        let row = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "ami")
            .unwrap_or_else(|| panic!("no ami row: {v}"))
            .clone();
        if accept {
            assert_eq!(row["status"], "pass", "{row}");
            assert!(
                row["detail"]
                    .as_str()
                    .unwrap()
                    .contains("Asterisk Call Manager/9.0.0")
            );
        } else {
            assert_eq!(row["status"], "fail", "{row}");
            assert!(
                row["detail"]
                    .as_str()
                    .unwrap()
                    .contains("Authentication failed")
            );
            assert!(row["fix"].as_str().unwrap().contains("secret"));
        }
    }
}
