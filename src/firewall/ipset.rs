//! ipset: one `hash:net` set per family (`astpatch4`, `astpatch6`; hash:net holds single
//! addresses and /64 prefixes alike) with kernel timeouts, and one iptables/ip6tables rule in
//! INPUT matching the set. Batches go through `ipset restore`.
use ipnet::IpNet;

use super::Backend;
use super::{
    CommandRunner, Firewall, command_failed, ipv6, must, now, parse_net, raise_hook, timeout_secs,
};
use crate::error::Result;

pub const SET4: &str = "astpatch4";
pub const SET6: &str = "astpatch6";
const MODULES: &str = "ip_set ip_set_hash_net xt_set";
/// Room for a large attack; memory is allocated per entry, not up front.
const MAXELEM: &str = "4194304";

pub struct Ipset {
    runner: Box<dyn CommandRunner>,
    /// False on a host without IPv6: no `astpatch6` set, no ip6tables.
    ipv6: bool,
}

fn set_of(net: &IpNet) -> &'static str {
    match net {
        IpNet::V4(_) => SET4,
        IpNet::V6(_) => SET6,
    }
}

const FAMILIES: [(&str, &str, &str); 2] =
    [(SET4, "inet", "iptables"), (SET6, "inet6", "ip6tables")];

impl Ipset {
    pub fn new(runner: Box<dyn CommandRunner>) -> Self {
        Ipset { runner, ipv6: true }
    }

    /// IPv4-only when `on` is false (the host has no IPv6 stack).
    pub fn with_ipv6(mut self, on: bool) -> Self {
        self.ipv6 = on;
        self
    }

    /// The (set, family, tool) triples in use: IPv4 only when IPv6 is off.
    fn families(&self) -> &'static [(&'static str, &'static str, &'static str)] {
        if self.ipv6 { &FAMILIES } else { &FAMILIES[..1] }
    }

    fn ok(&self, argv: &[&str]) -> Result<bool> {
        Ok(self.runner.run(argv, None)?.success)
    }

    fn rule(set: &str) -> [&str; 6] {
        ["-m", "set", "--match-set", set, "src", "-j"]
    }

    fn hook_present(&self, t: &str, set: &str) -> Result<bool> {
        let mut argv = vec![t, "-w", "-C", "INPUT"];
        argv.extend(Self::rule(set));
        argv.push("DROP");
        self.ok(&argv)
    }
}

fn create_line(set: &str, family: &str) -> String {
    format!("create {set} hash:net family {family} timeout 0 maxelem {MAXELEM} -exist\n")
}

pub(crate) fn add_line(set: &str, net: &IpNet, until: Option<i64>, now: i64) -> String {
    match timeout_secs(until, now) {
        Some(t) => format!("add {set} {net} timeout {t} -exist\n"),
        None => format!("add {set} {net} timeout 0 -exist\n"),
    }
}

/// Entries in `ipset save` output.
pub fn parse_save(text: &str) -> Vec<IpNet> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            match (w.next(), w.next(), w.next()) {
                (Some("add"), Some(s), Some(a)) if s == SET4 || s == SET6 => parse_net(a),
                _ => None,
            }
        })
        .collect()
}

impl Firewall for Ipset {
    fn ensure(&mut self) -> Result<()> {
        let mut batch = String::new();
        for &(set, fam, _) in self.families() {
            batch.push_str(&create_line(set, fam));
        }
        let argv = ["ipset", "restore"];
        let out = self.runner.run(&argv, Some(batch.as_bytes()))?;
        if !out.success {
            return Err(command_failed(&argv, &out, MODULES));
        }
        for &(set, _, t) in self.families() {
            if !self.hook_present(t, set)? {
                let mut argv = vec![t, "-w", "-I", "INPUT", "1"];
                argv.extend(Self::rule(set));
                argv.push("DROP");
                must(&*self.runner, &argv, MODULES)?;
            }
        }
        Ok(())
    }

    fn ban(&mut self, net: IpNet, until: Option<i64>) -> Result<()> {
        if net.addr().is_ipv6() && !self.ipv6 {
            return Err(ipv6::refuse(&net));
        }
        let (set, n) = (set_of(&net), net.to_string());
        let t = timeout_secs(until, now()).unwrap_or(0).to_string();
        must(
            &*self.runner,
            &["ipset", "add", set, &n, "timeout", &t, "-exist"],
            MODULES,
        )?;
        Ok(())
    }

    fn ban_many(&mut self, bans: &[(IpNet, Option<i64>)]) -> Result<()> {
        super::refuse_ipv6_in(bans, self.ipv6)?;
        if bans.len() <= 1 {
            // One `ipset add` is cheaper than a restore.
            return bans.iter().try_for_each(|(n, u)| self.ban(*n, *u));
        }
        let now = now();
        let mut batch = String::with_capacity(bans.len() * 48);
        for (net, until) in bans {
            batch.push_str(&add_line(set_of(net), net, *until, now));
        }
        let argv = ["ipset", "restore"];
        let out = self.runner.run(&argv, Some(batch.as_bytes()))?;
        if !out.success {
            return Err(command_failed(&argv, &out, MODULES));
        }
        Ok(())
    }

    fn unban(&mut self, net: IpNet) -> Result<()> {
        if net.addr().is_ipv6() && !self.ipv6 {
            return Ok(()); // nothing IPv6 is held
        }
        let (set, n) = (set_of(&net), net.to_string());
        let argv = ["ipset", "del", set, &n, "-exist"];
        let out = self.runner.run(&argv, None)?;
        // A missing set holds nothing to remove.
        if !out.success && !out.stderr.contains("does not exist") {
            return Err(command_failed(&argv, &out, MODULES));
        }
        Ok(())
    }

    fn list(&self) -> Result<Vec<IpNet>> {
        let mut v = vec![];
        for &(set, _, _) in self.families() {
            let out = self.runner.run(&["ipset", "save", set], None)?;
            if out.success {
                v.extend(parse_save(&out.stdout));
            }
        }
        Ok(v)
    }

    fn hooked(&self) -> Result<bool> {
        for &(set, _, t) in self.families() {
            if !self.hook_present(t, set)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn hook_on_top(&mut self) -> Result<bool> {
        let mut moved = false;
        for &(set, _, t) in self.families() {
            let rule = format!("{} DROP", Self::rule(set).join(" "));
            moved |= raise_hook(&*self.runner, t, &rule, MODULES)?;
        }
        Ok(moved)
    }

    fn restore(&mut self, bans: &[(IpNet, Option<i64>)]) -> Result<()> {
        let now = now();
        let mut batch = String::with_capacity(bans.len() * 48 + 256);
        for &(set, fam, _) in self.families() {
            batch.push_str(&create_line(set, fam));
            batch.push_str(&format!("flush {set}\n"));
        }
        // IPv6 bans on a host without IPv6 are left out: no packet could match them.
        for (net, until) in bans.iter().filter(|(n, _)| self.ipv6 || n.addr().is_ipv4()) {
            batch.push_str(&add_line(set_of(net), net, *until, now));
        }
        let argv = ["ipset", "restore"];
        let out = self.runner.run(&argv, Some(batch.as_bytes()))?;
        if !out.success {
            return Err(command_failed(&argv, &out, MODULES));
        }
        self.ensure()
    }

    fn teardown(&mut self) -> Result<()> {
        for &(set, _, t) in self.families() {
            while self.hook_present(t, set)? {
                let mut argv = vec![t, "-w", "-D", "INPUT"];
                argv.extend(Self::rule(set));
                argv.push("DROP");
                must(&*self.runner, &argv, MODULES)?;
            }
            if self.ok(&["ipset", "list", "-n", set])? {
                must(&*self.runner, &["ipset", "destroy", set], MODULES)?;
            }
        }
        Ok(())
    }

    fn name(&self) -> Backend {
        Backend::Ipset
    }

    fn ipv6(&self) -> bool {
        self.ipv6
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::fake::Recorder;

    #[test]
    fn parses_save_output() {
        let text = "create astpatch4 hash:net family inet hashsize 1024 maxelem 4194304 timeout 0\nadd astpatch4 9.9.0.0/16 timeout 0\nadd astpatch4 9.9.9.9 timeout 49\nadd other 1.1.1.1\n";
        let v = parse_save(text);
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].to_string(), "9.9.9.9/32");
    }

    #[test]
    fn restore_flushes_and_adds_with_timeouts_in_one_batch() {
        let r = Recorder::default();
        let mut fw = Ipset::new(Box::new(r.clone()));
        let far = now() + 100;
        fw.restore(&[
            ("192.0.2.7/32".parse().unwrap(), Some(far)),
            ("2001:db8::/64".parse().unwrap(), None),
        ])
        .unwrap();
        let b = r.stdin_of("ipset restore").unwrap();
        assert!(
            b.contains("flush astpatch4\n") && b.contains("flush astpatch6\n"),
            "{b}"
        );
        assert!(
            b.contains("add astpatch6 2001:db8::/64 timeout 0 -exist"),
            "{b}"
        );
        let line = b.lines().find(|l| l.starts_with("add astpatch4")).unwrap();
        let t: i64 = line.split_whitespace().nth(4).unwrap().parse().unwrap();
        assert!((99..=100).contains(&t), "{line}");
    }

    #[test]
    fn a_batch_is_one_restore_with_each_timeout() {
        let r = Recorder::default();
        let mut fw = Ipset::new(Box::new(r.clone()));
        let t = now();
        fw.ban_many(&[
            ("192.0.2.7/32".parse().unwrap(), Some(t + 100)),
            ("192.0.2.8/32".parse().unwrap(), Some(t + 200)),
            ("2001:db8::/64".parse().unwrap(), None),
        ])
        .unwrap();
        assert_eq!(r.calls(), ["ipset restore"]);
        let b = r.stdin_of("ipset restore").unwrap();
        let lines: Vec<&str> = b.lines().collect();
        assert_eq!(lines.len(), 3, "{b}");
        assert!(lines[0].starts_with("add astpatch4 192.0.2.7/32 timeout "));
        assert!(lines[1].starts_with("add astpatch4 192.0.2.8/32 timeout "));
        assert_eq!(lines[2], "add astpatch6 2001:db8::/64 timeout 0 -exist");
        let t1: i64 = lines[1].split_whitespace().nth(4).unwrap().parse().unwrap();
        assert!((199..=200).contains(&t1), "{b}");
        let mut v4only = Ipset::new(Box::new(r.clone())).with_ipv6(false);
        assert!(
            v4only
                .ban_many(&[
                    ("192.0.2.9/32".parse().unwrap(), None),
                    ("2001:db8::/64".parse().unwrap(), None)
                ])
                .is_err()
        );
        assert_eq!(r.calls().len(), 1, "refused before anything ran");
    }

    #[test]
    fn without_ipv6_no_inet6_set_and_no_ip6tables() {
        let r = Recorder::default();
        r.answer("iptables -w -C INPUT", false, "");
        let mut fw = Ipset::new(Box::new(r.clone())).with_ipv6(false);
        fw.ensure().unwrap();
        fw.ban("192.0.2.7/32".parse().unwrap(), None).unwrap();
        let e = fw.ban("2001:db8::/64".parse().unwrap(), None).unwrap_err();
        assert!(
            e.to_string()
                .contains("IPv6 is disabled on this host; nothing to ban")
        );
        fw.unban("2001:db8::/64".parse().unwrap()).unwrap();
        fw.list().unwrap();
        fw.hooked().unwrap();
        fw.hook_on_top().unwrap();
        fw.restore(&[
            ("192.0.2.7/32".parse().unwrap(), None),
            ("2001:db8::/64".parse().unwrap(), None),
        ])
        .unwrap();
        fw.teardown().unwrap();
        let calls = r.calls();
        assert!(
            !calls
                .iter()
                .any(|c| c.starts_with("ip6tables") || c.contains(SET6)),
            "{calls:?}"
        );
        let batches: Vec<String> = r
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter_map(|c| c.1.clone())
            .collect();
        assert!(!batches.is_empty());
        assert!(
            batches
                .iter()
                .all(|b| !b.contains(SET6) && !b.contains("inet6")),
            "{batches:?}"
        );
    }
}
