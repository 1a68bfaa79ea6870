//! Firewall backends. Each backend creates and owns its own objects (a chain, sets, a table)
//! and touches nothing else. Every command runs as an argument vector through a
//! [`CommandRunner`] — never a shell — so tests can run the very same commands inside a network
//! namespace (`ip netns exec NS …`) and the host's rule set is never involved.
use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};

use ipnet::IpNet;

use crate::error::{Error, Result};

/// Which firewall tool bans. One spelling everywhere: the settings file (serde), the command
/// line (clap) and messages (Display) all use the lowercase name.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    Default,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[default]
    Iptables,
    Ipset,
    Nftables,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use clap::ValueEnum;
        f.write_str(
            self.to_possible_value()
                .expect("no skipped variants")
                .get_name(),
        )
    }
}

pub mod host;
pub mod ipset;
pub mod iptables;
pub mod ipv6;
pub mod libnft;
pub mod nftables;

/// What a finished command left behind.
#[derive(Debug, Clone)]
pub struct Output {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs one program with arguments (and optional stdin). Spawn failures are errors; a non-zero
/// exit is reported in [`Output::success`] so callers can tell "absent" from "broken".
pub trait CommandRunner: Send {
    fn run(&self, argv: &[&str], stdin: Option<&[u8]>) -> Result<Output>;
    /// True when commands run in this process's own network namespace, unchanged: then a
    /// backend may do the same through a library instead (libnftables).
    fn local(&self) -> bool {
        false
    }
}

/// Runs commands on this host, or inside a network namespace when built with [`SystemRunner::in_netns`].
#[derive(Debug, Clone, Default)]
pub struct SystemRunner {
    prefix: Vec<String>,
}

impl SystemRunner {
    pub fn host() -> Self {
        SystemRunner { prefix: vec![] }
    }

    /// Prefix every command with `ip netns exec NS`.
    pub fn in_netns(ns: &str) -> Self {
        SystemRunner {
            prefix: vec!["ip".into(), "netns".into(), "exec".into(), ns.into()],
        }
    }
}

impl CommandRunner for SystemRunner {
    fn local(&self) -> bool {
        self.prefix.is_empty()
    }

    fn run(&self, argv: &[&str], stdin: Option<&[u8]>) -> Result<Output> {
        let full: Vec<&str> = self
            .prefix
            .iter()
            .map(String::as_str)
            .chain(argv.iter().copied())
            .collect();
        let mut cmd = Command::new(full[0]);
        cmd.args(&full[1..])
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| spawn_error(full[0], e))?;
        // The batch is written from a second thread while this one drains stdout/stderr: a
        // tool that answers before reading all its input would otherwise deadlock on a full
        // pipe, and one that fails early (closing its stdin) must still be waited for and
        // have its stderr — the message naming the missing module — reported.
        let out = std::thread::scope(|scope| {
            let writer = stdin.map(|input| {
                let mut pipe = child.stdin.take().expect("piped stdin");
                scope.spawn(move || pipe.write_all(input))
            });
            let out = child.wait_with_output();
            let written = writer.map(|w| w.join().expect("stdin writer"));
            (out, written)
        });
        let (out, written) = out;
        let out = out.map_err(|e| Error::environment(format!("{}: {e}", full[0]), None))?;
        if let Some(Err(e)) = written {
            // A closed pipe is the tool's own early exit, reported below by its status.
            if out.status.success() || e.kind() != std::io::ErrorKind::BrokenPipe {
                return Err(Error::environment(
                    format!("{}: writing input: {e}", full[0]),
                    None,
                ));
            }
        }
        let output = Output {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        // `ip netns exec` reports a missing program itself, with exit status 255.
        if !output.success && output.stderr.contains("No such file or directory") {
            if let Some(prog) = argv.first() {
                if output.stderr.contains(&format!("\"{prog}\"")) {
                    return Err(spawn_error(
                        prog,
                        std::io::Error::from(std::io::ErrorKind::NotFound),
                    ));
                }
            }
        }
        Ok(output)
    }
}

/// The Debian package that ships a firewall program.
pub fn package_of(program: &str) -> &'static str {
    match program {
        "iptables" | "ip6tables" | "iptables-restore" | "ip6tables-restore" => "iptables",
        "ipset" => "ipset",
        "nft" => "nftables",
        "ip" => "iproute2",
        _ => "the package that provides it",
    }
}

fn spawn_error(program: &str, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::environment(
            format!("{program}: command not found"),
            Some(&format!(
                "install it: apt-get install {} (or choose another backend with --backend)",
                package_of(program)
            )),
        )
    } else {
        Error::environment(format!("{program}: cannot run: {e}"), None)
    }
}

/// Turn a failed command into an Environment error; when the kernel lacks what the command
/// needs, name the module to load.
pub fn command_failed(argv: &[&str], out: &Output, modules: &str) -> Error {
    let stderr = out.stderr.trim();
    let lower = stderr.to_ascii_lowercase();
    let kernel = [
        "kernel module",
        "module is not loaded",
        "can't initialize",
        "protocol not supported",
        "not supported",
        "kernel error",
        "could not fetch rule set generation",
        "operation not supported",
        "no such file or directory",
        "unknown",
    ]
    .iter()
    .any(|m| lower.contains(m));
    let hint = if lower.contains("address family not supported") {
        "the kernel has no IPv6 stack (booted with ipv6.disable=1?); astpatch then runs IPv4-only, \
         which it decides from /proc/sys/net/ipv6"
            .to_owned()
    } else if lower.contains("permission denied") || lower.contains("operation not permitted") {
        "run as root (or with CAP_NET_ADMIN)".to_owned()
    } else if kernel {
        format!("the kernel may lack the needed support: modprobe {modules}")
    } else {
        "see the message above; `astpatch status` shows what astpatch holds".to_owned()
    };
    Error::environment(
        format!("`{}` failed: {stderr}", argv.join(" ")),
        Some(&hint),
    )
}

/// Run a command that must succeed.
pub(crate) fn must(runner: &dyn CommandRunner, argv: &[&str], modules: &str) -> Result<Output> {
    let out = runner.run(argv, None)?;
    if out.success {
        Ok(out)
    } else {
        Err(command_failed(argv, &out, modules))
    }
}

/// A firewall backend: owns its objects, holds bans, can list what the kernel has.
pub trait Firewall: Send {
    /// Create the backend's own chain/set/table and hook it into INPUT (idempotent).
    fn ensure(&mut self) -> Result<()>;
    /// Drop traffic from `net` (idempotent). `until` is a unix time; backends with kernel
    /// timeouts let the kernel expire it too.
    fn ban(&mut self, net: IpNet, until: Option<i64>) -> Result<()>;
    /// Drop traffic from every net in `bans`, each with its own end time, in as few commands
    /// as the backend allows (`nft -f -`, `ipset restore`, `*-restore --noflush`): what one
    /// read of the logs recognised goes in together, so a burst costs a process or two, not
    /// one per ban. An IPv6 net on a host without IPv6 is refused like [`Firewall::ban`] does,
    /// before anything changes.
    fn ban_many(&mut self, bans: &[(IpNet, Option<i64>)]) -> Result<()> {
        for (net, until) in bans {
            self.ban(*net, *until)?;
        }
        Ok(())
    }
    /// Stop dropping `net` (idempotent: absent is fine).
    fn unban(&mut self, net: IpNet) -> Result<()>;
    /// What the kernel holds now.
    fn list(&self) -> Result<Vec<IpNet>>;
    /// True when INPUT jumps to our objects (for every family).
    fn hooked(&self) -> Result<bool>;
    /// Make our INPUT hook the first rule of INPUT again where another tool (a firewalld
    /// reload, docker) inserted rules above it: an ACCEPT there lets banned traffic through.
    /// True when it was moved. nftables needs nothing: its own base chain runs first.
    fn hook_on_top(&mut self) -> Result<bool> {
        Ok(false)
    }
    /// Replace everything held with exactly `bans`, in one batch where the backend allows it.
    fn restore(&mut self, bans: &[(IpNet, Option<i64>)]) -> Result<()>;
    /// Remove every object the backend created.
    fn teardown(&mut self) -> Result<()>;
    /// A long-lived caller (the watcher) may keep a session open across batches where the
    /// backend has one (nftables: libnftables instead of an `nft` process per batch). One-shot
    /// commands do not: they behave exactly like the tools.
    fn keep_session(&mut self) {}
    fn name(&self) -> Backend;
    /// False when the host has no IPv6 ([`ipv6`]): then only IPv4 bans are held, an IPv6 ban
    /// is refused and nothing of the IPv6 half (ip6tables, the inet6 set) is touched.
    fn ipv6(&self) -> bool {
        true
    }
}

/// True when `tool` is an executable file in one of PATH's directories.
pub fn tool_installed(tool: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|d| {
        std::fs::metadata(d.join(tool))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// The backend for this host: IPv4-only when the kernel has no IPv6 ([`ipv6::host_has_ipv6`]).
pub fn for_backend(b: Backend, runner: Box<dyn CommandRunner>) -> Box<dyn Firewall> {
    for_backend_with(b, runner, ipv6::host_has_ipv6())
}

/// The backend with the IPv6 decision given (tests inject "off" inside a namespace, where
/// the real `ipv6.disable=1` cannot be had).
pub fn for_backend_with(
    b: Backend,
    runner: Box<dyn CommandRunner>,
    ipv6: bool,
) -> Box<dyn Firewall> {
    match b {
        Backend::Iptables => Box::new(iptables::Iptables::new(runner).with_ipv6(ipv6)),
        Backend::Ipset => Box::new(ipset::Ipset::new(runner).with_ipv6(ipv6)),
        Backend::Nftables => Box::new(nftables::Nftables::new(runner).with_ipv6(ipv6)),
    }
}

/// The `*-restore --noflush` batch that moves `rule` (ours, as `iptables -S INPUT` prints it
/// after `-A INPUT `) to the top of INPUT given that listing: every copy deleted and one
/// inserted at 1, in one atomic transaction (if another tool changed INPUT meanwhile, a `-D`
/// fails and nothing changes). None when it is already first, or absent (`ensure` adds it).
pub(crate) fn raise_hook_batch(listing: &str, rule: &str) -> Option<String> {
    let ours = format!("-A INPUT {rule}");
    let rules: Vec<&str> = listing
        .lines()
        .map(str::trim_end)
        .filter(|l| l.starts_with("-A INPUT "))
        .collect();
    let copies = rules.iter().filter(|l| **l == ours).count();
    if copies == 0 || rules[0] == ours {
        return None;
    }
    let mut batch = "*filter\n".to_string();
    for _ in 0..copies {
        batch.push_str(&format!("-D INPUT {rule}\n"));
    }
    batch.push_str(&format!("-I INPUT 1 {rule}\nCOMMIT\n"));
    Some(batch)
}

/// [`raise_hook_batch`] applied with `t` (iptables or ip6tables). True when moved.
pub(crate) fn raise_hook(
    runner: &dyn CommandRunner,
    t: &str,
    rule: &str,
    modules: &str,
) -> Result<bool> {
    let out = must(runner, &[t, "-w", "-S", "INPUT"], modules)?;
    let Some(batch) = raise_hook_batch(&out.stdout, rule) else {
        return Ok(false);
    };
    let restore = format!("{t}-restore");
    let argv = [restore.as_str(), "-w", "--noflush"];
    let out = runner.run(&argv, Some(batch.as_bytes()))?;
    if !out.success {
        return Err(command_failed(&argv, &out, modules));
    }
    Ok(true)
}

/// Refuse a batch holding an IPv6 net when the host has none (before anything changes).
pub(crate) fn refuse_ipv6_in(bans: &[(IpNet, Option<i64>)], ipv6: bool) -> Result<()> {
    match bans.iter().find(|(n, _)| n.addr().is_ipv6()) {
        Some((n, _)) if !ipv6 => Err(ipv6::refuse(n)),
        _ => Ok(()),
    }
}

/// The longest kernel timeout ipset accepts (its limit: 2^31 ms).
pub(crate) const MAX_KERNEL_TIMEOUT: i64 = 2_147_483;

/// Seconds left until `until`, at least 1 (0 means "forever" to ipset and nft). A ban longer
/// than the kernel can time (about 24.8 days, e.g. a capped bantime_increment of 5w) gets no
/// kernel timeout: clamping would silently lift it early while the state still says banned;
/// the watcher removes it on time instead, as it does for iptables.
pub(crate) fn timeout_secs(until: Option<i64>, now: i64) -> Option<i64> {
    until
        .map(|u| (u - now).max(1))
        .filter(|&t| t <= MAX_KERNEL_TIMEOUT)
}

pub(crate) fn now() -> i64 {
    crate::clock::now_secs()
}

/// Parse an address or network as printed by the tools (`1.2.3.4`, `1.2.3.4/32`, `fd00::/64`).
pub(crate) fn parse_net(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
        .map(|n| n.trunc())
}

#[cfg(test)]
pub mod fake {
    //! A recording runner for unit tests: answers from a script, remembers every argv.
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Each call: the argv joined with spaces, and its stdin.
    type Calls = Arc<Mutex<Vec<(String, Option<String>)>>>;

    #[derive(Clone, Default)]
    pub struct Recorder {
        pub calls: Calls,
        /// (argv prefix, success, stdout) — first matching prefix wins; default success.
        pub answers: Arc<Mutex<Vec<(String, bool, String)>>>,
    }

    impl Recorder {
        pub fn answer(&self, prefix: &str, success: bool, stdout: &str) {
            self.answers
                .lock()
                .unwrap()
                .push((prefix.into(), success, stdout.into()));
        }
        pub fn calls(&self) -> Vec<String> {
            self.calls
                .lock()
                .unwrap()
                .iter()
                .map(|c| c.0.clone())
                .collect()
        }
        pub fn stdin_of(&self, prefix: &str) -> Option<String> {
            self.calls
                .lock()
                .unwrap()
                .iter()
                .find(|c| c.0.starts_with(prefix))
                .and_then(|c| c.1.clone())
        }
    }

    impl CommandRunner for Recorder {
        fn run(&self, argv: &[&str], stdin: Option<&[u8]>) -> Result<Output> {
            let line = argv.join(" ");
            self.calls.lock().unwrap().push((
                line.clone(),
                stdin.map(|s| String::from_utf8_lossy(s).into_owned()),
            ));
            for (p, ok, out) in self.answers.lock().unwrap().iter() {
                if line.starts_with(p.as_str()) {
                    return Ok(Output {
                        success: *ok,
                        stdout: out.clone(),
                        stderr: if *ok {
                            String::new()
                        } else {
                            "No chain/target/match by that name.".into()
                        },
                    });
                }
            }
            Ok(Output {
                success: true,
                stdout: String::new(),
                stderr: String::new(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_program_names_the_debian_package() {
        let e = SystemRunner::host()
            .run(&["astpatch-no-such-tool-xyz"], None)
            .unwrap_err();
        assert!(matches!(e, Error::Environment { .. }));
        assert!(e.to_string().contains("command not found"));
        let e = spawn_error("nft", std::io::Error::from(std::io::ErrorKind::NotFound));
        assert!(e.hint().unwrap().contains("apt-get install nftables"));
    }

    #[test]
    fn a_tool_that_fails_before_reading_its_batch_reports_its_own_error() {
        // `ipset restore` on a kernel without ip_set fails on the first line and exits; the
        // rest of a large batch then meets a closed pipe. Its stderr (which names the
        // missing support) must survive, not turn into "Broken pipe".
        let batch = vec![b'x'; 4 << 20];
        let out = SystemRunner::host()
            .run(
                &[
                    "sh",
                    "-c",
                    "echo 'Kernel error received: set type not supported' >&2; exit 1",
                ],
                Some(&batch),
            )
            .expect("the command ran; its failure is in the output");
        assert!(!out.success);
        assert!(
            out.stderr.contains("set type not supported"),
            "{}",
            out.stderr
        );
    }

    #[test]
    fn a_tool_that_writes_much_before_reading_does_not_deadlock() {
        let batch = vec![b'y'; 1 << 20];
        let out = SystemRunner::host()
            .run(
                &["sh", "-c", "head -c 1000000 /dev/zero; cat >/dev/null"],
                Some(&batch),
            )
            .unwrap();
        assert!(out.success);
        assert_eq!(out.stdout.len(), 1_000_000);
    }

    #[test]
    fn kernel_trouble_names_the_module() {
        let out = Output {
            success: false,
            stdout: String::new(),
            stderr: "ipset v7.17: Kernel error received: set type not supported".into(),
        };
        let e = command_failed(&["ipset", "create"], &out, "ip_set ip_set_hash_net");
        assert!(
            e.hint()
                .unwrap()
                .contains("modprobe ip_set ip_set_hash_net")
        );
    }

    #[test]
    fn ip6tables_without_an_ipv6_stack_says_so() {
        let out = Output {
            success: false,
            stdout: String::new(),
            stderr: "ip6tables v1.8.9 (legacy): can't initialize ip6tables table `filter': Address family not supported by protocol".into(),
        };
        let e = command_failed(&["ip6tables", "-w", "-S"], &out, "ip6_tables");
        assert!(
            e.hint().unwrap().contains("ipv6.disable=1"),
            "{:?}",
            e.hint()
        );
    }

    #[test]
    fn bans_longer_than_the_kernel_can_time_are_not_cut_short() {
        assert_eq!(timeout_secs(Some(1100), 1000), Some(100));
        assert_eq!(
            timeout_secs(Some(900), 1000),
            Some(1),
            "due now, not forever"
        );
        assert_eq!(timeout_secs(None, 1000), None);
        let five_weeks = 1000 + 35 * 86_400;
        assert_eq!(timeout_secs(Some(five_weeks), 1000), None);
        assert_eq!(
            ipset::add_line(
                "astpatch4",
                &"192.0.2.1/32".parse().unwrap(),
                Some(five_weeks),
                1000
            ),
            "add astpatch4 192.0.2.1/32 timeout 0 -exist\n"
        );
    }

    #[test]
    fn a_hook_buried_under_other_rules_is_moved_to_the_top_in_one_batch() {
        let buried = "-P INPUT ACCEPT\n-A INPUT -s 10.250.0.2/32 -j ACCEPT\n-A INPUT -j ASTPATCH\n-A INPUT -i lo -j ACCEPT\n-A INPUT -j ASTPATCH\n";
        assert_eq!(
            raise_hook_batch(buried, "-j ASTPATCH").unwrap(),
            "*filter\n-D INPUT -j ASTPATCH\n-D INPUT -j ASTPATCH\n-I INPUT 1 -j ASTPATCH\nCOMMIT\n"
        );
        let on_top = "-P INPUT ACCEPT\n-A INPUT -j ASTPATCH\n-A INPUT -s 10.250.0.2/32 -j ACCEPT\n";
        assert_eq!(raise_hook_batch(on_top, "-j ASTPATCH"), None);
        assert_eq!(
            raise_hook_batch("-P INPUT ACCEPT\n-A INPUT -j ACCEPT\n", "-j ASTPATCH"),
            None,
            "absent is ensure's job"
        );
        // Another chain's jump of the same name elsewhere is not ours.
        let other = "-A INPUT -j ACCEPT\n-A INPUT -j ASTPATCH2\n";
        assert_eq!(raise_hook_batch(other, "-j ASTPATCH"), None);
    }

    #[test]
    fn parses_tool_addresses() {
        assert_eq!(parse_net("1.2.3.4").unwrap().to_string(), "1.2.3.4/32");
        assert_eq!(parse_net("1.2.3.4/32").unwrap().to_string(), "1.2.3.4/32");
        assert_eq!(parse_net("fd00::1:2/64").unwrap().to_string(), "fd00::/64");
        assert!(parse_net("nonsense").is_none());
    }
}
