//! Two network namespaces joined by a veth pair: "pbx" (runs the firewall / watcher) and
//! "peer" (sends traffic). Everything lives inside the namespaces; Drop deletes them even when
//! the test fails.
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

const PORT: u16 = 5060;

/// Run `f` on a thread that has entered network namespace `ns`; sockets it creates stay there.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).expect("open netns");
        let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}");
        f()
    })
    .join()
    .expect("netns thread")
}

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct Pair {
    pub pbx: String,
    pub peer: String,
    pub pbx4: &'static str,
    pub peer4: &'static str,
    pub pbx6: &'static str,
    pub peer6: &'static str,
}

fn sh(argv: &[&str]) {
    let st = Command::new(argv[0])
        .args(&argv[1..])
        .status()
        .expect("spawn");
    assert!(st.success(), "{argv:?} failed");
}

impl Pair {
    pub fn new() -> Pair {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let pair = Pair {
            pbx: format!("astp-{pid}-{n}a"),
            peer: format!("astp-{pid}-{n}b"),
            pbx4: "10.250.0.1",
            peer4: "10.250.0.2",
            pbx6: "fd00:a57::1",
            peer6: "fd00:a57::2",
        };
        sh(&["ip", "netns", "add", &pair.pbx]);
        sh(&["ip", "netns", "add", &pair.peer]);
        // Create the veth inside pbx and move one end, so no interface ever sits on the host.
        pair.exec_ok(
            &pair.pbx,
            &[
                "ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1",
            ],
        );
        pair.exec_ok(&pair.pbx, &["ip", "link", "set", "v1", "netns", &pair.peer]);
        for (ns, dev, a4, a6) in [
            (&pair.pbx, "v0", pair.pbx4, pair.pbx6),
            (&pair.peer, "v1", pair.peer4, pair.peer6),
        ] {
            pair.exec_ok(ns, &["ip", "addr", "add", &format!("{a4}/24"), "dev", dev]);
            pair.exec_ok(
                ns,
                &[
                    "ip",
                    "-6",
                    "addr",
                    "add",
                    &format!("{a6}/64"),
                    "dev",
                    dev,
                    "nodad",
                ],
            );
            pair.exec_ok(ns, &["ip", "link", "set", dev, "up"]);
            pair.exec_ok(ns, &["ip", "link", "set", "lo", "up"]);
        }
        pair.listen();
        // Wait until both families pass (link up, neighbour discovery).
        for _ in 0..50 {
            if pair.peer_reaches(false) && pair.peer_reaches(true) {
                return pair;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("veth pair never came up");
    }

    pub fn exec(&self, ns: &str, argv: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", ns])
            .args(argv)
            .output()
            .expect("ip netns exec")
    }

    pub fn exec_ok(&self, ns: &str, argv: &[&str]) {
        let out = self.exec(ns, argv);
        assert!(
            out.status.success(),
            "{argv:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// One real TCP handshake from the peer to a listener in the pbx namespace: true when it
    /// completed (a DROP on the pbx's INPUT makes the SYN vanish and the connect time out).
    pub fn peer_reaches(&self, v6: bool) -> bool {
        let target: SocketAddr = if v6 {
            SocketAddr::new(self.pbx6.parse().unwrap(), PORT)
        } else {
            SocketAddr::new(self.pbx4.parse().unwrap(), PORT)
        };
        in_netns(&self.peer, move || {
            TcpStream::connect_timeout(&target, Duration::from_millis(600)).is_ok()
        })
    }

    /// Listen on PORT (both families) inside the pbx namespace, accepting and closing forever.
    fn listen(&self) {
        let (a4, a6) = (self.pbx4, self.pbx6);
        for addr in [format!("{a4}:{PORT}"), format!("[{a6}]:{PORT}")] {
            let l = in_netns(&self.pbx, move || {
                TcpListener::bind(&addr).expect("bind in pbx")
            });
            std::thread::spawn(move || {
                for c in l.incoming() {
                    drop(c);
                }
            });
        }
    }

    pub fn peer_addr(&self, v6: bool) -> &'static str {
        if v6 { self.peer6 } else { self.peer4 }
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for ns in [&self.pbx, &self.peer] {
            // A banning watcher's lock for this namespace (`state::lock_firewall`), named by
            // the namespace's inode, which /run/netns/NAME shows while the namespace exists.
            if let Ok(m) = std::fs::metadata(format!("/run/netns/{ns}")) {
                use std::os::unix::fs::MetadataExt;
                let lock = std::path::Path::new(astpatch::ban::state::FIREWALL_LOCK_DIR)
                    .join(format!("firewall-net{}.lock", m.ino()));
                let _ = std::fs::remove_file(lock);
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
