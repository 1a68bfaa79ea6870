//! A real CrowdSec Local API for the fleet tests: Debian's `crowdsec` 1.4.6 binaries (unpacked
//! by scripts/install-deps into /opt/astpatch-test/crowdsec, or `ASTPATCH_CROWDSEC_BIN`),
//! run as `crowdsec -c CONFIG -no-cs` (the LAPI only: no log acquisition, no central API, no
//! hub downloads) on sqlite in a temp dir. `cscli` runs against the same config. Drop kills
//! the daemon and deletes the directory.
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const DEFAULT_BIN: &str = "/opt/astpatch-test/crowdsec/usr/bin";

/// Where `crowdsec` and `cscli` are, if they are.
pub fn bin_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("ASTPATCH_CROWDSEC_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_BIN));
    (dir.join("crowdsec").is_file() && dir.join("cscli").is_file()).then_some(dir)
}

/// True when the binaries are there. Otherwise a visible SKIP, or a failure in CI
/// (`ASTPATCH_REQUIRE_ROOT=1`, where install-deps must have put them in place).
pub fn require_crowdsec(test: &str) -> bool {
    if bin_dir().is_some() {
        return true;
    }
    if std::env::var("ASTPATCH_REQUIRE_ROOT").as_deref() == Ok("1") {
        panic!("{test}: crowdsec binaries missing in {DEFAULT_BIN}; run scripts/install-deps");
    }
    eprintln!("SKIP {test}: needs crowdsec in {DEFAULT_BIN} (scripts/install-deps)");
    false
}

pub struct Lapi {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// Network namespace the daemon (and cscli) run in; None = this one.
    netns: Option<String>,
    pub port: u16,
    child: Option<Child>,
}

impl Lapi {
    /// Start a LAPI listening on `listen_ip` (inside `netns` when given) and wait until it
    /// answers `/health`.
    pub fn start(netns: Option<&str>, listen_ip: &str) -> Lapi {
        let bin = bin_dir().expect("crowdsec binaries (call require_crowdsec first)");
        let dir = tempfile::Builder::new()
            .prefix("astpatch-lapi")
            .tempdir()
            .unwrap();
        let port = match netns {
            // A namespace of the test's own: nothing else listens there.
            Some(_) => 8080,
            None => free_port(),
        };
        let d = dir.path();
        for sub in ["data", "hub", "notifications", "plugins"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let config = format!(
            r#"common:
  daemonize: false
  log_media: file
  log_dir: {d}/
  log_level: info
config_paths:
  config_dir: {d}/
  data_dir: {d}/data/
  simulation_path: {d}/simulation.yaml
  hub_dir: {d}/hub/
  index_path: {d}/hub/.index.json
  notification_dir: {d}/notifications/
  plugin_dir: {d}/plugins/
crowdsec_service:
  acquisition_path: {d}/acquis.yaml
cscli:
  output: human
  color: no
db_config:
  log_level: warning
  type: sqlite
  db_path: {d}/data/crowdsec.db
  use_wal: true
  flush:
    max_items: 1000000
    max_age: 7d
api:
  client:
    credentials_path: {d}/local_api_credentials.yaml
  server:
    log_level: info
    listen_uri: {listen_ip}:{port}
    profiles_path: {d}/profiles.yaml
    trusted_ips:
      - 127.0.0.1
      - ::1
prometheus:
  enabled: false
"#,
            d = d.display()
        );
        std::fs::write(d.join("config.yaml"), config).unwrap();
        // The packaged default profile: alerts without decisions get a 4h Ip ban. Alerts that
        // carry decisions (ours) keep them.
        std::fs::write(
            d.join("profiles.yaml"),
            "name: default_ip_remediation\nfilters:\n - Alert.Remediation == true && Alert.GetScope() == \"Ip\"\ndecisions:\n - type: ban\n   duration: 4h\non_success: break\n",
        )
        .unwrap();
        std::fs::write(d.join("simulation.yaml"), "simulation: off\n").unwrap();
        std::fs::write(d.join("acquis.yaml"), "").unwrap();
        // cscli talks to the LAPI as a machine of its own (`decisions list/add/delete`).
        std::fs::write(
            d.join("local_api_credentials.yaml"),
            format!("url: http://127.0.0.1:{port}\nlogin: x\npassword: x\n"),
        )
        .unwrap();
        let mut lapi = Lapi {
            dir,
            bin,
            netns: netns.map(str::to_owned),
            port,
            child: None,
        };
        // Written straight into the database, before the daemon runs.
        let out = lapi.cscli(&["machines", "add", "cscli-admin", "--auto", "--force"]);
        assert!(out.status.success(), "cscli machines add: {}", text(&out));
        lapi.run();
        lapi
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(path);
                c
            }
            None => Command::new(path),
        }
    }

    /// (Re)start the daemon and wait until it answers.
    pub fn run(&mut self) {
        assert!(self.child.is_none(), "LAPI already running");
        let log = std::fs::File::create(self.dir.path().join("crowdsec.out")).unwrap();
        let child = self
            .command("crowdsec")
            .arg("-c")
            .arg(self.config())
            .arg("-no-cs")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn crowdsec");
        self.child = Some(child);
        let t0 = Instant::now();
        loop {
            // Any answer from the API (as the admin machine cscli logs in with) means up.
            let out = self.cscli(&["decisions", "list", "-o", "json"]);
            if out.status.success() {
                return;
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("crowdsec exited ({st}): {}", self.log());
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "LAPI did not answer within 20 s: {}{}",
                text(&out),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stop the daemon (SIGKILL: as a crash or a network cut looks to a client).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("crowdsec.out")).unwrap_or_default()
            + &std::fs::read_to_string(self.dir.path().join("crowdsec_api.log")).unwrap_or_default()
    }

    pub fn cscli(&self, args: &[&str]) -> Output {
        self.command("cscli")
            .arg("-c")
            .arg(self.config())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("spawn cscli")
    }

    pub fn cscli_ok(&self, args: &[&str]) -> String {
        let out = self.cscli(args);
        assert!(out.status.success(), "cscli {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A watcher machine with this password (validated, as `cscli machines add` makes it).
    pub fn add_machine(&self, id: &str, password: &str) {
        self.cscli_ok(&[
            "machines",
            "add",
            id,
            "--password",
            password,
            "-f",
            "/dev/null",
        ]);
    }

    /// A bouncer; returns its API key.
    pub fn add_bouncer(&self, name: &str) -> String {
        let key = format!("key-{name}-{}", std::process::id());
        self.cscli_ok(&["bouncers", "add", name, "--key", &key]);
        key
    }

    /// Decisions as `cscli decisions list -a -o json` shows them: (value, origin, scenario).
    pub fn decisions(&self) -> Vec<(String, String, String)> {
        let out = self.cscli_ok(&["decisions", "list", "-a", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_default();
        let mut r = vec![];
        for alert in v.as_array().into_iter().flatten() {
            for d in alert["decisions"].as_array().into_iter().flatten() {
                r.push((
                    d["value"].as_str().unwrap_or("").to_owned(),
                    d["origin"].as_str().unwrap_or("").to_owned(),
                    d["scenario"].as_str().unwrap_or("").to_owned(),
                ));
            }
        }
        r
    }
}

impl Drop for Lapi {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A network namespace of its own for the LAPI, joined by one veth link to each PBX
/// namespace (LAPI side 10.251.N.1, PBX side 10.251.N.2): the PBXes reach it without any
/// interface on the host. Drop deletes the namespace (and so its links).
pub struct LapiNet {
    pub ns: String,
    links: u32,
}

impl LapiNet {
    pub fn new() -> LapiNet {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let ns = format!(
            "astp-{}-lapi{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        sh(&["ip", "netns", "add", &ns]);
        sh(&["ip", "netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
        LapiNet { ns, links: 0 }
    }

    /// Link `pbx_ns` to the LAPI namespace; returns the URL the PBX reaches the LAPI at.
    pub fn link(&mut self, pbx_ns: &str, port: u16) -> String {
        self.links += 1;
        let n = self.links;
        let (here, there) = (format!("l{n}"), format!("fl{n}"));
        sh(&[
            "ip", "netns", "exec", &self.ns, "ip", "link", "add", &here, "type", "veth", "peer",
            "name", &there,
        ]);
        sh(&[
            "ip", "netns", "exec", &self.ns, "ip", "link", "set", &there, "netns", pbx_ns,
        ]);
        for (ns, dev, addr) in [
            (self.ns.as_str(), here.as_str(), format!("10.251.{n}.1/24")),
            (pbx_ns, there.as_str(), format!("10.251.{n}.2/24")),
        ] {
            sh(&[
                "ip", "netns", "exec", ns, "ip", "addr", "add", &addr, "dev", dev,
            ]);
            sh(&["ip", "netns", "exec", ns, "ip", "link", "set", dev, "up"]);
        }
        format!("http://10.251.{n}.1:{port}")
    }
}

impl Drop for LapiNet {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

fn sh(argv: &[&str]) {
    let st = Command::new(argv[0])
        .args(&argv[1..])
        .status()
        .expect("spawn");
    assert!(st.success(), "{argv:?} failed");
}
