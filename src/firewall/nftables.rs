//! nftables: `table inet astpatch` with timeout sets and an input chain that drops their
//! members. Single addresses go to hash sets (`addr4`, `addr6`); networks (a /64, a CLI ban of
//! a /24) to interval sets (`net4`, `net6`). Kept apart because `nft` reads a table's interval
//! sets whole before every change: with 100k addresses in an interval set one ban took
//! seconds, in a hash set it takes milliseconds. Created and restored in one `nft -f` batch
//! (atomic in the kernel).
use ipnet::IpNet;

use super::Backend;
use super::{
    CommandRunner, Firewall, Output, command_failed, ipv6, libnft, now, parse_net, timeout_secs,
};
use crate::error::Result;

pub const TABLE: &str = "astpatch";
const MODULES: &str = "nf_tables nft_set_hash nft_set_rbtree";

pub struct Nftables {
    runner: Box<dyn CommandRunner>,
    /// False on a host without IPv6. The `inet` table, its `ipv6_addr` sets and `ip6 saddr`
    /// rules need no IPv6 stack (the hooks and set types are nf_tables' own), so the table
    /// stays as it is; only IPv6 bans are refused, as with the other backends.
    ipv6: bool,
    /// libnftables kept loaded (batches without starting `nft`), when the runner runs here.
    session: std::sync::Mutex<Session>,
}

enum Session {
    /// One-shot use: `nft` processes.
    Untried,
    /// [`Firewall::keep_session`] asked for the library; opened at the first batch.
    Wanted,
    Open(libnft::Session),
    Absent,
}

const SETS: [&str; 4] = ["addr4", "addr6", "net4", "net6"];

fn set_of(net: &IpNet) -> &'static str {
    let host = net.prefix_len() == net.max_prefix_len();
    match (net, host) {
        (IpNet::V4(_), true) => "addr4",
        (IpNet::V6(_), true) => "addr6",
        (IpNet::V4(_), false) => "net4",
        (IpNet::V6(_), false) => "net6",
    }
}

/// Declaring the table, sets and chain is idempotent in a batch: existing ones are kept.
const DEFINITION: &str = "table inet astpatch {
  set addr4 { type ipv4_addr; flags timeout; }
  set addr6 { type ipv6_addr; flags timeout; }
  set net4 { type ipv4_addr; flags interval, timeout; }
  set net6 { type ipv6_addr; flags interval, timeout; }
  chain input {
    type filter hook input priority filter - 10; policy accept;
  }
}
";

/// How nft wants an element: a host as a bare address (hash sets refuse `/32`), a network
/// in CIDR form.
fn key(net: &IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

fn element(net: &IpNet, until: Option<i64>, now: i64) -> String {
    match timeout_secs(until, now) {
        Some(t) => format!("{} timeout {t}s", key(net)),
        None => key(net),
    }
}

/// Elements of `nft -j list set` output.
pub fn parse_set_json(text: &str) -> Vec<IpNet> {
    fn net_of(v: &serde_json::Value) -> Option<IpNet> {
        match v {
            serde_json::Value::String(s) => parse_net(s),
            serde_json::Value::Object(o) => {
                if let Some(e) = o.get("elem") {
                    return net_of(e.get("val")?);
                }
                if let Some(p) = o.get("prefix") {
                    return parse_net(&format!("{}/{}", p.get("addr")?.as_str()?, p.get("len")?));
                }
                if let Some(r) = o.get("range") {
                    // Only produced if someone merged neighbours; keep the start address.
                    return parse_net(r.get(0)?.as_str()?);
                }
                None
            }
            _ => None,
        }
    }
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(text) else {
        return vec![];
    };
    doc.get("nftables")
        .and_then(|a| a.as_array())
        .into_iter()
        .flatten()
        .filter_map(|o| o.get("set")?.get("elem")?.as_array())
        .flatten()
        .filter_map(net_of)
        .collect()
}

/// One `nft -f` transaction that adds every ban with its own timeout. As in a single ban,
/// add (so the delete is valid), delete, add with the timeout: an element already held gets
/// the new timeout. Chunked so no statement gets huge.
pub(crate) fn ban_batch(bans: &[(IpNet, Option<i64>)], now: i64) -> String {
    let mut text = String::with_capacity(bans.len() * 100 + 64);
    for set in SETS {
        let of_set: Vec<&(IpNet, Option<i64>)> =
            bans.iter().filter(|(n, _)| set_of(n) == set).collect();
        for chunk in of_set.chunks(1000) {
            let keys: Vec<String> = chunk.iter().map(|(n, _)| key(n)).collect();
            let keys = keys.join(", ");
            let els: Vec<String> = chunk.iter().map(|(n, u)| element(n, *u, now)).collect();
            text.push_str(&format!(
                "add element inet {TABLE} {set} {{ {keys} }}\n\
                 delete element inet {TABLE} {set} {{ {keys} }}\n\
                 add element inet {TABLE} {set} {{ {} }}\n",
                els.join(", ")
            ));
        }
    }
    text
}

impl Nftables {
    pub fn new(runner: Box<dyn CommandRunner>) -> Self {
        Nftables {
            runner,
            ipv6: true,
            session: std::sync::Mutex::new(Session::Untried),
        }
    }

    /// Refuse IPv6 bans when `on` is false (the host has no IPv6 stack).
    pub fn with_ipv6(mut self, on: bool) -> Self {
        self.ipv6 = on;
        self
    }

    /// `text` through `nft -f -`: in libnftables when the caller asked to keep a session
    /// ([`Firewall::keep_session`]), `nft` is installed (without it, the tool's absence is
    /// reported as always, and nothing is touched), the library loads, and the runner runs
    /// commands in our own namespace; ASTPATCH_NFT_PROCESS=1 forces the process.
    fn run_text(&self, text: &str) -> Result<Output> {
        let mut s = self.session.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(*s, Session::Wanted) {
            *s = if self.runner.local()
                && std::env::var_os("ASTPATCH_NFT_PROCESS").is_none()
                && super::tool_installed("nft")
            {
                libnft::Session::open().map_or(Session::Absent, Session::Open)
            } else {
                Session::Absent
            };
        }
        if let Session::Open(lib) = &mut *s {
            return Ok(match lib.run(text) {
                Ok(stdout) => Output {
                    success: true,
                    stdout,
                    stderr: String::new(),
                },
                Err(stderr) => Output {
                    success: false,
                    stdout: String::new(),
                    stderr,
                },
            });
        }
        drop(s);
        self.runner.run(&["nft", "-f", "-"], Some(text.as_bytes()))
    }

    fn batch(&self, text: &str) -> Result<()> {
        let argv = ["nft", "-f", "-"];
        let out = self.run_text(text)?;
        if !out.success {
            return Err(command_failed(&argv, &out, MODULES));
        }
        Ok(())
    }

    fn rules_present(&self) -> Result<bool> {
        let out = self
            .runner
            .run(&["nft", "list", "chain", "inet", TABLE, "input"], None)?;
        Ok(out.success
            && SETS
                .iter()
                .all(|set| out.stdout.contains(&format!("@{set} "))))
    }
}

impl Firewall for Nftables {
    fn ensure(&mut self) -> Result<()> {
        self.batch(DEFINITION)?;
        if !self.rules_present()? {
            self.batch(
                "flush chain inet astpatch input\n\
                 add rule inet astpatch input ip saddr @addr4 drop\n\
                 add rule inet astpatch input ip6 saddr @addr6 drop\n\
                 add rule inet astpatch input ip saddr @net4 drop\n\
                 add rule inet astpatch input ip6 saddr @net6 drop\n",
            )?;
        }
        Ok(())
    }

    fn ban(&mut self, net: IpNet, until: Option<i64>) -> Result<()> {
        if net.addr().is_ipv6() && !self.ipv6 {
            return Err(ipv6::refuse(&net));
        }
        // Delete-then-add in one batch refreshes the timeout of an existing element; the
        // leading add makes the delete valid when the element is new.
        let (el, k, set) = (element(&net, until, now()), key(&net), set_of(&net));
        self.batch(&format!(
            "add element inet {TABLE} {set} {{ {k} }}\n\
             delete element inet {TABLE} {set} {{ {k} }}\n\
             add element inet {TABLE} {set} {{ {el} }}\n"
        ))
    }

    fn ban_many(&mut self, bans: &[(IpNet, Option<i64>)]) -> Result<()> {
        super::refuse_ipv6_in(bans, self.ipv6)?;
        if bans.is_empty() {
            return Ok(());
        }
        let text = ban_batch(bans, now());
        self.batch(&text)
    }

    fn unban(&mut self, net: IpNet) -> Result<()> {
        if net.addr().is_ipv6() && !self.ipv6 {
            return Ok(()); // nothing IPv6 is held
        }
        // Deleting directly (not listing first: that reads the whole set); an element the
        // kernel already expired, or a missing table, is "not banned", which is fine.
        let text = format!(
            "delete element inet {TABLE} {} {{ {} }}\n",
            set_of(&net),
            key(&net)
        );
        let argv = ["nft", "-f", "-"];
        let out = self.run_text(&text)?;
        if out.success || out.stderr.contains("No such file or directory") {
            return Ok(());
        }
        Err(command_failed(&argv, &out, MODULES))
    }

    fn list(&self) -> Result<Vec<IpNet>> {
        let mut v = vec![];
        for set in SETS {
            let out = self
                .runner
                .run(&["nft", "-j", "list", "set", "inet", TABLE, set], None)?;
            if out.success {
                v.extend(parse_set_json(&out.stdout));
            }
        }
        Ok(v)
    }

    fn hooked(&self) -> Result<bool> {
        let out = self
            .runner
            .run(&["nft", "list", "chain", "inet", TABLE, "input"], None)?;
        Ok(out.success && out.stdout.contains("hook input") && self.rules_present()?)
    }

    fn restore(&mut self, bans: &[(IpNet, Option<i64>)]) -> Result<()> {
        self.ensure()?;
        let now = now();
        let mut text = String::with_capacity(bans.len() * 40 + 256);
        for set in SETS {
            text.push_str(&format!("flush set inet {TABLE} {set}\n"));
        }
        for set in SETS {
            let els: Vec<String> = bans
                .iter()
                .filter(|(n, _)| set_of(n) == set && (self.ipv6 || n.addr().is_ipv4()))
                .map(|(n, u)| element(n, *u, now))
                .collect();
            // Chunked so no single statement gets huge; still one transaction.
            for chunk in els.chunks(1000) {
                text.push_str(&format!(
                    "add element inet {TABLE} {set} {{ {} }}\n",
                    chunk.join(", ")
                ));
            }
        }
        self.batch(&text)
    }

    fn teardown(&mut self) -> Result<()> {
        let out = self
            .runner
            .run(&["nft", "list", "table", "inet", TABLE], None)?;
        if out.success {
            self.batch("delete table inet astpatch\n")?;
        }
        Ok(())
    }

    fn name(&self) -> Backend {
        Backend::Nftables
    }

    fn keep_session(&mut self) {
        let s = self.session.get_mut().unwrap_or_else(|e| e.into_inner());
        if matches!(*s, Session::Untried) {
            *s = Session::Wanted;
        }
    }

    fn ipv6(&self) -> bool {
        self.ipv6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_go_to_hash_sets_networks_to_interval_sets() {
        let n = |s: &str| s.parse::<IpNet>().unwrap();
        assert_eq!(set_of(&n("192.0.2.1/32")), "addr4");
        assert_eq!(set_of(&n("2001:db8::1/128")), "addr6");
        assert_eq!(set_of(&n("192.0.2.0/24")), "net4");
        assert_eq!(set_of(&n("2001:db8::/64")), "net6");
    }

    /// One-shot commands (`astpatch ban`, status, purge) behave exactly like the tools: only
    /// a caller that keeps a session (the watcher) may use libnftables. (A `ban` on a host
    /// without `nft` must report the missing tool and touch nothing, not go through the
    /// library.)
    #[test]
    fn only_a_kept_session_bypasses_the_nft_process() {
        use crate::firewall::fake::Recorder;
        struct Local(Recorder);
        impl CommandRunner for Local {
            fn run(&self, argv: &[&str], stdin: Option<&[u8]>) -> Result<Output> {
                self.0.run(argv, stdin)
            }
            fn local(&self) -> bool {
                true
            }
        }
        let r = Recorder::default();
        let fw = Nftables::new(Box::new(Local(r.clone())));
        fw.batch("add table inet astpatch\n").unwrap();
        assert_eq!(r.calls(), ["nft -f -"]);
    }

    #[test]
    fn a_batch_is_one_transaction_with_each_timeout() {
        let n = |s: &str| s.parse::<IpNet>().unwrap();
        let text = ban_batch(
            &[
                (n("192.0.2.1/32"), Some(1100)),
                (n("192.0.2.2/32"), Some(1200)),
                (n("2001:db8::/64"), None),
            ],
            1000,
        );
        assert_eq!(
            text,
            "add element inet astpatch addr4 { 192.0.2.1, 192.0.2.2 }\n\
             delete element inet astpatch addr4 { 192.0.2.1, 192.0.2.2 }\n\
             add element inet astpatch addr4 { 192.0.2.1 timeout 100s, 192.0.2.2 timeout 200s }\n\
             add element inet astpatch net6 { 2001:db8::/64 }\n\
             delete element inet astpatch net6 { 2001:db8::/64 }\n\
             add element inet astpatch net6 { 2001:db8::/64 }\n"
        );
    }

    #[test]
    fn parses_nft_json_elements() {
        let v4 = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"set": {"family": "inet", "name": "ban4", "table": "astpatch", "type": "ipv4_addr", "elem": [{"elem": {"val": "10.1.1.1", "timeout": 100, "expires": 99}}, {"prefix": {"addr": "10.2.0.0", "len": 16}}, "10.3.3.3"]}}]}"#;
        let got: Vec<String> = parse_set_json(v4).iter().map(|n| n.to_string()).collect();
        assert_eq!(got, ["10.1.1.1/32", "10.2.0.0/16", "10.3.3.3/32"]);
        let v6 = r#"{"nftables": [{"set": {"elem": [{"elem": {"val": {"prefix": {"addr": "fd00::", "len": 64}}, "timeout": 100}}]}}]}"#;
        assert_eq!(parse_set_json(v6)[0].to_string(), "fd00::/64");
        assert!(parse_set_json("garbage").is_empty());
    }
}
