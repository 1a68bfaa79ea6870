//! The fleet's bans in the kernel: objects of their own, apart from the local bans' (so an
//! unban, a repair or a purge on one side never touches the other), filled in batches through
//! the same [`CommandRunner`] the local backends use:
//!
//! - nftables: `table inet astpatch-fleet` (timeout sets `addr4`/`addr6`, interval sets
//!   `net4`/`net6`, its own input chain); a full load deletes and re-creates the table in one
//!   `nft -f` transaction, changes are `add/delete element` batches;
//! - ipset: `astpatch-fleet4`/`astpatch-fleet6` (hash:net with timeouts) and one `-m set` DROP
//!   rule each in INPUT; a full load fills a fresh set and `swap`s it in (no gap);
//! - iptables: chain `astpatch-fleet`, one DROP rule per network, jumped to from INPUT; every
//!   change rewrites the chain in one `iptables-restore --noflush` (fine for a small fleet;
//!   use ipset or nftables for many decisions: iptables matches rule by rule).
//!
//! With ipset and nftables the kernel also times each entry out when its decision ends, so
//! fleet bans already applied end on time even if the watcher is gone.
use std::collections::BTreeMap;
use std::fmt::Write as _;

use ipnet::IpNet;

use crate::error::Result;
use crate::firewall::Backend;
use crate::firewall::{CommandRunner, command_failed};

pub const NFT_TABLE: &str = "astpatch-fleet";
pub const IPSET4: &str = "astpatch-fleet4";
pub const IPSET6: &str = "astpatch-fleet6";
pub const CHAIN: &str = "astpatch-fleet";
const MODULES: &str = "nf_tables ip_set ip_set_hash_net xt_set";

/// What the objects hold: network → unix time it ends.
pub type Nets = BTreeMap<IpNet, i64>;

fn host(net: &IpNet) -> bool {
    net.prefix_len() == net.max_prefix_len()
}

fn nft_set(net: &IpNet) -> &'static str {
    match (net, host(net)) {
        (IpNet::V4(_), true) => "addr4",
        (IpNet::V6(_), true) => "addr6",
        (IpNet::V4(_), false) => "net4",
        (IpNet::V6(_), false) => "net6",
    }
}

fn nft_key(net: &IpNet) -> String {
    if host(net) {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

fn left(until: i64, now: i64) -> i64 {
    (until - now).clamp(1, crate::firewall::MAX_KERNEL_TIMEOUT)
}

/// The whole table, re-created with `nets` in it (one transaction: no moment without it).
pub fn nft_full(nets: &Nets, now: i64) -> String {
    let mut t = String::with_capacity(nets.len() * 40 + 1024);
    // `add` first so the `delete` is valid when the table does not exist yet.
    let _ = writeln!(
        t,
        "add table inet {NFT_TABLE}\ndelete table inet {NFT_TABLE}"
    );
    let _ = writeln!(
        t,
        "table inet {NFT_TABLE} {{
  set addr4 {{ type ipv4_addr; flags timeout; }}
  set addr6 {{ type ipv6_addr; flags timeout; }}
  set net4 {{ type ipv4_addr; flags interval, timeout; }}
  set net6 {{ type ipv6_addr; flags interval, timeout; }}
  chain input {{
    type filter hook input priority filter - 9; policy accept;
    ip saddr @addr4 drop
    ip6 saddr @addr6 drop
    ip saddr @net4 drop
    ip6 saddr @net6 drop
  }}
}}"
    );
    nft_elements(&mut t, "add", nets.iter().map(|(n, u)| (n, Some(*u))), now);
    t
}

fn nft_elements<'a>(
    t: &mut String,
    verb: &str,
    nets: impl Iterator<Item = (&'a IpNet, Option<i64>)>,
    now: i64,
) {
    let mut by_set: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (n, until) in nets {
        let e = match until {
            Some(u) => format!("{} timeout {}s", nft_key(n), left(u, now)),
            None => nft_key(n),
        };
        by_set.entry(nft_set(n)).or_default().push(e);
    }
    for (set, els) in by_set {
        // Chunked so no statement gets huge; still one transaction.
        for chunk in els.chunks(2000) {
            let _ = writeln!(
                t,
                "{verb} element inet {NFT_TABLE} {set} {{ {} }}",
                chunk.join(", ")
            );
        }
    }
}

/// A change batch: `del` out, `add` in (an entry whose end moved is deleted and re-added).
pub fn nft_change(add: &Nets, del: &[IpNet], now: i64) -> String {
    let mut t = String::new();
    nft_elements(&mut t, "delete", del.iter().map(|n| (n, None)), now);
    nft_elements(&mut t, "add", add.iter().map(|(n, u)| (n, Some(*u))), now);
    t
}

fn ipset_of(net: &IpNet) -> &'static str {
    if net.addr().is_ipv4() { IPSET4 } else { IPSET6 }
}

/// `ipset restore` input: fresh sets filled, swapped in, the old content destroyed.
pub fn ipset_full(nets: &Nets, ipv6: bool, now: i64) -> String {
    let mut t = String::with_capacity(nets.len() * 48 + 512);
    for (set, fam) in families(ipv6) {
        let _ = writeln!(
            t,
            "create {set} hash:net family {fam} timeout 0 maxelem 4194304 -exist\n\
             create {set}-new hash:net family {fam} timeout 0 maxelem 4194304 -exist\n\
             flush {set}-new"
        );
    }
    for (n, u) in nets {
        if n.addr().is_ipv6() && !ipv6 {
            continue;
        }
        let _ = writeln!(
            t,
            "add {}-new {n} timeout {} -exist",
            ipset_of(n),
            left(*u, now)
        );
    }
    for (set, _) in families(ipv6) {
        let _ = writeln!(t, "swap {set} {set}-new\ndestroy {set}-new");
    }
    t
}

pub fn ipset_change(add: &Nets, del: &[IpNet], now: i64) -> String {
    let mut t = String::new();
    for n in del {
        let _ = writeln!(t, "del {} {n} -exist", ipset_of(n));
    }
    for (n, u) in add {
        // -exist: an entry already there gets the new timeout.
        let _ = writeln!(
            t,
            "add {} {n} timeout {} -exist",
            ipset_of(n),
            left(*u, now)
        );
    }
    t
}

fn families(ipv6: bool) -> &'static [(&'static str, &'static str)] {
    if ipv6 {
        &[(IPSET4, "inet"), (IPSET6, "inet6")]
    } else {
        &[(IPSET4, "inet")]
    }
}

/// `iptables-restore --noflush` input for one family: the chain declared (which empties it)
/// and refilled.
pub fn iptables_full(nets: &Nets, v6: bool) -> String {
    let mut t = format!("*filter\n:{CHAIN} - [0:0]\n");
    for n in nets.keys().filter(|n| n.addr().is_ipv6() == v6) {
        let _ = writeln!(t, "-A {CHAIN} -s {n} -j DROP");
    }
    t.push_str("COMMIT\n");
    t
}

pub struct Enforcer {
    backend: Backend,
    runner: Box<dyn CommandRunner>,
    ipv6: bool,
    /// What we put in the kernel.
    applied: Nets,
    /// False until a full load succeeded (and after a failed change): the next apply is full.
    loaded: bool,
}

/// How an apply went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub added: usize,
    pub removed: usize,
    pub full: bool,
}

impl Enforcer {
    pub fn new(backend: Backend, runner: Box<dyn CommandRunner>, ipv6: bool) -> Enforcer {
        Enforcer {
            backend,
            runner,
            ipv6,
            applied: Nets::new(),
            loaded: false,
        }
    }

    pub fn held(&self) -> usize {
        self.applied.len()
    }

    /// Force the next apply to load everything (after the objects went missing).
    pub fn reload_next(&mut self) {
        self.loaded = false;
    }

    fn run(&self, argv: &[&str], stdin: &str) -> Result<bool> {
        let out = self.runner.run(argv, Some(stdin.as_bytes()))?;
        if !out.success {
            return Err(command_failed(argv, &out, MODULES));
        }
        Ok(true)
    }

    fn run_quiet(&self, argv: &[&str]) -> Result<bool> {
        Ok(self.runner.run(argv, None)?.success)
    }

    /// Our INPUT hooks (ipset, iptables) in place, for every family held.
    fn hook(&self) -> Result<()> {
        let tables: &[&str] = if self.ipv6 {
            &["iptables", "ip6tables"]
        } else {
            &["iptables"]
        };
        for (i, t) in tables.iter().enumerate() {
            let rule: Vec<&str> = match self.backend {
                Backend::Ipset => vec![
                    "-m",
                    "set",
                    "--match-set",
                    if i == 0 { IPSET4 } else { IPSET6 },
                    "src",
                    "-j",
                    "DROP",
                ],
                Backend::Iptables => vec!["-j", CHAIN],
                Backend::Nftables => return Ok(()),
            };
            let mut check = vec![*t, "-w", "-C", "INPUT"];
            check.extend(&rule);
            if !self.run_quiet(&check)? {
                let mut ins = vec![*t, "-w", "-I", "INPUT", "1"];
                ins.extend(&rule);
                let out = self.runner.run(&ins, None)?;
                if !out.success {
                    return Err(command_failed(&ins, &out, MODULES));
                }
            }
        }
        Ok(())
    }

    /// How many entries of one family the kernel should hold now (those the kernel may
    /// already have timed out left aside).
    fn expected(&self, v6: bool, now: i64) -> usize {
        self.applied
            .iter()
            .filter(|(n, u)| n.addr().is_ipv6() == v6 && **u > now + 2)
            .count()
    }

    /// True when our objects and hooks are all in the kernel and no entry is missing (a
    /// cheap check, for the periodic repair: ipset and iptables count their entries; for
    /// nftables the table and chain must be there, as `nft flush ruleset` removes them).
    pub fn intact(&self, now: i64) -> Result<bool> {
        match self.backend {
            Backend::Ipset => {
                for (i, (set, _)) in families(self.ipv6).iter().enumerate() {
                    let out = self.runner.run(&["ipset", "list", "-t", set], None)?;
                    let n = out
                        .stdout
                        .lines()
                        .find_map(|l| l.strip_prefix("Number of entries: "))
                        .and_then(|n| n.trim().parse::<usize>().ok());
                    if !out.success || n.is_none_or(|n| n < self.expected(i == 1, now)) {
                        return Ok(false);
                    }
                }
            }
            Backend::Iptables => {
                let tables: &[&str] = if self.ipv6 {
                    &["iptables", "ip6tables"]
                } else {
                    &["iptables"]
                };
                for (i, t) in tables.iter().enumerate() {
                    let out = self.runner.run(&[t, "-w", "-S", CHAIN], None)?;
                    let n = out.stdout.lines().filter(|l| l.starts_with("-A ")).count();
                    let want = self
                        .applied
                        .keys()
                        .filter(|k| k.addr().is_ipv6() == (i == 1))
                        .count();
                    if !out.success || n < want {
                        return Ok(false);
                    }
                }
            }
            Backend::Nftables => {}
        }
        self.hooks_present()
    }

    fn hooks_present(&self) -> Result<bool> {
        match self.backend {
            Backend::Nftables => {
                let out = self
                    .runner
                    .run(&["nft", "list", "chain", "inet", NFT_TABLE, "input"], None)?;
                Ok(out.success && out.stdout.contains("@addr4"))
            }
            Backend::Ipset | Backend::Iptables => {
                let tables: &[&str] = if self.ipv6 {
                    &["iptables", "ip6tables"]
                } else {
                    &["iptables"]
                };
                for (i, t) in tables.iter().enumerate() {
                    let rule: Vec<&str> = if self.backend == Backend::Ipset {
                        let set = if i == 0 { IPSET4 } else { IPSET6 };
                        if !self.run_quiet(&["ipset", "list", "-n", set])? {
                            return Ok(false);
                        }
                        vec!["-m", "set", "--match-set", set, "src", "-j", "DROP"]
                    } else {
                        vec!["-j", CHAIN]
                    };
                    let mut check = vec![*t, "-w", "-C", "INPUT"];
                    check.extend(&rule);
                    if !self.run_quiet(&check)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
        }
    }

    fn full(&mut self, nets: &Nets, now: i64) -> Result<()> {
        match self.backend {
            Backend::Nftables => {
                self.run(&["nft", "-f", "-"], &nft_full(nets, now))?;
            }
            Backend::Ipset => {
                self.run(&["ipset", "restore"], &ipset_full(nets, self.ipv6, now))?;
                self.hook()?;
            }
            Backend::Iptables => {
                self.run(
                    &["iptables-restore", "-w", "--noflush"],
                    &iptables_full(nets, false),
                )?;
                if self.ipv6 {
                    self.run(
                        &["ip6tables-restore", "-w", "--noflush"],
                        &iptables_full(nets, true),
                    )?;
                }
                self.hook()?;
            }
        }
        Ok(())
    }

    /// Make the kernel hold exactly `want`: the first time (or after a failure) in one full
    /// load, then only the difference. An entry whose end moved by more than a minute is
    /// re-timed; one due to end within two seconds is left to the kernel's timeout.
    pub fn apply(&mut self, want: &Nets, now: i64) -> Result<Applied> {
        let want: Nets = want
            .iter()
            .filter(|(n, _)| self.ipv6 || n.addr().is_ipv4())
            .map(|(n, u)| (*n, *u))
            .collect();
        if !self.loaded {
            let r = Applied {
                added: want
                    .keys()
                    .filter(|n| !self.applied.contains_key(n))
                    .count(),
                removed: self
                    .applied
                    .keys()
                    .filter(|n| !want.contains_key(n))
                    .count(),
                full: true,
            };
            self.full(&want, now)?;
            self.applied = want;
            self.loaded = true;
            return Ok(r);
        }
        let mut add = Nets::new();
        for (n, u) in &want {
            match self.applied.get(n) {
                Some(old) if (u - old).abs() <= 60 => {}
                _ => {
                    add.insert(*n, *u);
                }
            }
        }
        let gone: Vec<IpNet> = self
            .applied
            .keys()
            .filter(|n| !want.contains_key(n))
            .copied()
            .collect();
        if add.is_empty() && gone.is_empty() {
            return Ok(Applied::default());
        }
        let r = Applied {
            added: add.keys().filter(|n| !self.applied.contains_key(n)).count(),
            removed: gone.len(),
            full: false,
        };
        let result = match self.backend {
            Backend::Nftables => {
                // Re-timed entries go out and in; those nearly over are the kernel's to drop.
                let mut del: Vec<IpNet> = add
                    .keys()
                    .filter(|n| self.applied.get(n).is_some_and(|u| *u > now + 2))
                    .copied()
                    .collect();
                del.extend(
                    gone.iter()
                        .filter(|n| self.applied.get(n).is_some_and(|u| *u > now + 2)),
                );
                self.run(&["nft", "-f", "-"], &nft_change(&add, &del, now))
                    .map(|_| ())
            }
            Backend::Ipset => self
                .run(&["ipset", "restore"], &ipset_change(&add, &gone, now))
                .map(|_| ()),
            Backend::Iptables => self.full(&want, now),
        };
        match result {
            Ok(()) => {
                self.applied = want;
                Ok(r)
            }
            Err(_) => {
                // An element the kernel timed out meanwhile fails a whole nft batch; load
                // everything instead.
                self.loaded = false;
                self.full(&want, now)?;
                self.loaded = true;
                self.applied = want;
                Ok(Applied { full: true, ..r })
            }
        }
    }
}

/// Take one network out of the fleet objects now (`astpatch unban` while no watcher runs);
/// absent is fine.
pub fn remove_one(backend: Backend, runner: &dyn CommandRunner, net: &IpNet) -> Result<()> {
    let n = net.to_string();
    match backend {
        Backend::Nftables => {
            let text = format!(
                "delete element inet {NFT_TABLE} {} {{ {} }}\n",
                nft_set(net),
                nft_key(net)
            );
            runner.run(&["nft", "-f", "-"], Some(text.as_bytes()))?;
        }
        Backend::Ipset => {
            runner.run(&["ipset", "del", ipset_of(net), &n, "-exist"], None)?;
        }
        Backend::Iptables => {
            let t = if net.addr().is_ipv4() {
                "iptables"
            } else {
                "ip6tables"
            };
            runner.run(&[t, "-w", "-D", CHAIN, "-s", &n, "-j", "DROP"], None)?;
        }
    }
    Ok(())
}

/// Remove the fleet objects of every backend (`unban --all --purge`); true when any existed.
pub fn teardown(runner: &dyn CommandRunner) -> Result<Vec<String>> {
    let mut said = vec![];
    let ok = |argv: &[&str]| -> Result<bool> { Ok(runner.run(argv, None)?.success) };
    if crate::firewall::tool_installed("nft")
        && ok(&["nft", "list", "table", "inet", NFT_TABLE])?
        && ok(&["nft", "delete", "table", "inet", NFT_TABLE])?
    {
        said.push(format!("nftables table inet {NFT_TABLE}"));
    }
    for t in ["iptables", "ip6tables"] {
        if !crate::firewall::tool_installed(t) {
            continue;
        }
        for set in [IPSET4, IPSET6] {
            while ok(&[
                t,
                "-w",
                "-D",
                "INPUT",
                "-m",
                "set",
                "--match-set",
                set,
                "src",
                "-j",
                "DROP",
            ])? {}
        }
        while ok(&[t, "-w", "-D", "INPUT", "-j", CHAIN])? {}
        if ok(&[t, "-w", "-F", CHAIN])? && ok(&[t, "-w", "-X", CHAIN])? {
            said.push(format!("{t} chain {CHAIN}"));
        }
    }
    if crate::firewall::tool_installed("ipset") {
        for set in [IPSET4, IPSET6] {
            if ok(&["ipset", "list", "-n", set])? && ok(&["ipset", "destroy", set])? {
                said.push(format!("ipset {set}"));
            }
        }
    }
    Ok(said)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(v: &[(&str, i64)]) -> Nets {
        v.iter().map(|(n, u)| (n.parse().unwrap(), *u)).collect()
    }

    #[test]
    fn nft_full_recreates_the_table_with_elements_by_set() {
        let t = nft_full(
            &nets(&[
                ("203.0.113.7/32", 100),
                ("2001:db8::/64", 200),
                ("2001:db8:1::1/128", 50),
            ]),
            0,
        );
        assert!(t.starts_with("add table inet astpatch-fleet\ndelete table inet astpatch-fleet\n"));
        assert!(t.contains("add element inet astpatch-fleet addr4 { 203.0.113.7 timeout 100s }"));
        assert!(t.contains("add element inet astpatch-fleet net6 { 2001:db8::/64 timeout 200s }"));
        assert!(t.contains("addr6 { 2001:db8:1::1 timeout 50s }"));
        assert!(t.contains("ip6 saddr @net6 drop"));
    }

    #[test]
    fn ipset_full_swaps_a_filled_set_in() {
        let t = ipset_full(
            &nets(&[("203.0.113.7/32", 100), ("2001:db8::/64", 200)]),
            false,
            0,
        );
        assert!(t.contains("add astpatch-fleet4-new 203.0.113.7/32 timeout 100 -exist"));
        assert!(!t.contains("2001:db8"), "no IPv6 on this host: {t}");
        assert!(
            t.contains("swap astpatch-fleet4 astpatch-fleet4-new\ndestroy astpatch-fleet4-new")
        );
    }

    #[test]
    fn iptables_rewrites_the_chain_per_family() {
        let n = nets(&[("203.0.113.7/32", 100), ("2001:db8::/64", 200)]);
        assert_eq!(
            iptables_full(&n, false),
            "*filter\n:astpatch-fleet - [0:0]\n-A astpatch-fleet -s 203.0.113.7/32 -j DROP\nCOMMIT\n"
        );
        assert!(iptables_full(&n, true).contains("-s 2001:db8::/64"));
    }

    #[test]
    fn changes_only_after_a_full_load_and_a_failed_change_falls_back_to_full() {
        use crate::firewall::fake::Recorder;
        let rec = Recorder::default();
        let mut e = Enforcer::new(Backend::Nftables, Box::new(rec.clone()), true);
        let r = e.apply(&nets(&[("203.0.113.7/32", 100)]), 0).unwrap();
        assert_eq!(
            r,
            Applied {
                added: 1,
                removed: 0,
                full: true
            }
        );
        let r = e
            .apply(
                &nets(&[("203.0.113.7/32", 100), ("203.0.113.8/32", 100)]),
                1,
            )
            .unwrap();
        assert_eq!(
            r,
            Applied {
                added: 1,
                removed: 0,
                full: false
            }
        );
        let last = rec.calls().len();
        // Nothing changed: no command at all.
        e.apply(
            &nets(&[("203.0.113.7/32", 100), ("203.0.113.8/32", 100)]),
            2,
        )
        .unwrap();
        assert_eq!(rec.calls().len(), last);
        rec.answer("nft -f -", false, "");
        let r = e.apply(&nets(&[("203.0.113.8/32", 100)]), 3);
        assert!(r.is_err(), "the full load fails too here");
    }
}
