//! The seed's choice: an `ASTPATCH` chain in the filter table (iptables for IPv4, ip6tables for
//! IPv6), jumped to from INPUT, one DROP rule per ban. The kernel has no timeouts here, so the
//! watcher removes expired bans itself.
use ipnet::IpNet;

use super::Backend;
use super::{CommandRunner, Firewall, command_failed, ipv6, must, parse_net, raise_hook};
use crate::error::Result;

pub const CHAIN: &str = "ASTPATCH";
const MODULES: &str = "ip_tables ip6_tables iptable_filter ip6table_filter (or nf_tables)";

pub struct Iptables {
    runner: Box<dyn CommandRunner>,
    /// False on a host without IPv6: ip6tables is never run.
    ipv6: bool,
}

fn tool(net: &IpNet) -> &'static str {
    match net {
        IpNet::V4(_) => "iptables",
        IpNet::V6(_) => "ip6tables",
    }
}

impl Iptables {
    pub fn new(runner: Box<dyn CommandRunner>) -> Self {
        Iptables { runner, ipv6: true }
    }

    /// IPv4-only when `on` is false (the host has no IPv6 stack).
    pub fn with_ipv6(mut self, on: bool) -> Self {
        self.ipv6 = on;
        self
    }

    /// The tools in use: `iptables`, and `ip6tables` unless IPv6 is off.
    fn tools(&self) -> &'static [&'static str] {
        if self.ipv6 {
            &["iptables", "ip6tables"]
        } else {
            &["iptables"]
        }
    }

    fn ok(&self, argv: &[&str]) -> Result<bool> {
        Ok(self.runner.run(argv, None)?.success)
    }

    fn ensure_family(&self, t: &str) -> Result<()> {
        if !self.ok(&[t, "-w", "-S", CHAIN])? {
            must(&*self.runner, &[t, "-w", "-N", CHAIN], MODULES)?;
        }
        if !self.ok(&[t, "-w", "-C", "INPUT", "-j", CHAIN])? {
            must(
                &*self.runner,
                &[t, "-w", "-I", "INPUT", "1", "-j", CHAIN],
                MODULES,
            )?;
        }
        Ok(())
    }

    fn list_family(&self, t: &str) -> Result<Vec<IpNet>> {
        let out = self.runner.run(&[t, "-w", "-S", CHAIN], None)?;
        if !out.success {
            return Ok(vec![]); // no chain: nothing held
        }
        Ok(parse_rules(&out.stdout))
    }
}

/// The banned sources in `iptables -S ASTPATCH` output.
pub fn parse_rules(text: &str) -> Vec<IpNet> {
    text.lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            match w.as_slice() {
                ["-A", c, "-s", src, "-j", "DROP"] if *c == CHAIN => parse_net(src),
                _ => None,
            }
        })
        .collect()
}

impl Firewall for Iptables {
    fn ensure(&mut self) -> Result<()> {
        for t in self.tools() {
            self.ensure_family(t)?;
        }
        Ok(())
    }

    fn ban(&mut self, net: IpNet, _until: Option<i64>) -> Result<()> {
        if net.addr().is_ipv6() && !self.ipv6 {
            return Err(ipv6::refuse(&net));
        }
        let (t, src) = (tool(&net), net.to_string());
        if !self.ok(&[t, "-w", "-C", CHAIN, "-s", &src, "-j", "DROP"])? {
            must(
                &*self.runner,
                &[t, "-w", "-A", CHAIN, "-s", &src, "-j", "DROP"],
                MODULES,
            )?;
        }
        Ok(())
    }

    fn ban_many(&mut self, bans: &[(IpNet, Option<i64>)]) -> Result<()> {
        super::refuse_ipv6_in(bans, self.ipv6)?;
        if bans.len() <= 1 {
            return bans.iter().try_for_each(|(n, u)| self.ban(*n, *u));
        }
        // Appended without a check per rule (that would be a process per ban): the engine
        // only bans what its state does not hold, and a duplicate rule is harmless (unban
        // deletes every copy; the periodic check compares sets, not counts).
        for (t, v6) in [("iptables-restore", false), ("ip6tables-restore", true)] {
            let mut batch = String::from("*filter\n");
            let mut any = false;
            for (net, _) in bans.iter().filter(|(n, _)| n.addr().is_ipv6() == v6) {
                batch.push_str(&format!("-A {CHAIN} -s {net} -j DROP\n"));
                any = true;
            }
            if !any {
                continue;
            }
            batch.push_str("COMMIT\n");
            let argv = [t, "-w", "--noflush"];
            let out = self.runner.run(&argv, Some(batch.as_bytes()))?;
            if !out.success {
                return Err(command_failed(&argv, &out, MODULES));
            }
        }
        Ok(())
    }

    fn unban(&mut self, net: IpNet) -> Result<()> {
        if net.addr().is_ipv6() && !self.ipv6 {
            return Ok(()); // nothing IPv6 is held
        }
        let (t, src) = (tool(&net), net.to_string());
        // Delete every copy (a hand-added duplicate would otherwise keep dropping).
        let check = [t, "-w", "-C", CHAIN, "-s", &src, "-j", "DROP"];
        let delete = [t, "-w", "-D", CHAIN, "-s", &src, "-j", "DROP"];
        while self.ok(&check)? {
            let out = self.runner.run(&delete, None)?;
            // The running watcher's periodic re-check may remove the rule between our check
            // and our delete (`astpatch unban` records first, then edits the kernel): gone is
            // what we wanted, so only a rule that is still there is an error.
            if !out.success && self.ok(&check)? {
                return Err(command_failed(&delete, &out, MODULES));
            }
        }
        Ok(())
    }

    fn list(&self) -> Result<Vec<IpNet>> {
        let mut v = vec![];
        for t in self.tools() {
            v.extend(self.list_family(t)?);
        }
        Ok(v)
    }

    fn hooked(&self) -> Result<bool> {
        for t in self.tools() {
            if !self.ok(&[t, "-w", "-C", "INPUT", "-j", CHAIN])? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn hook_on_top(&mut self) -> Result<bool> {
        let rule = format!("-j {CHAIN}");
        let mut moved = false;
        for t in self.tools() {
            moved |= raise_hook(&*self.runner, t, &rule, MODULES)?;
        }
        Ok(moved)
    }

    fn restore(&mut self, bans: &[(IpNet, Option<i64>)]) -> Result<()> {
        // One `*-restore --noflush` batch per family: declaring the chain flushes it, then
        // every ban is appended; other chains are left alone.
        // IPv6 bans on a host without IPv6 are left out: no packet could match them.
        let families = [("iptables-restore", false), ("ip6tables-restore", true)];
        for (t, v6) in families.into_iter().filter(|(_, v6)| self.ipv6 || !v6) {
            let mut batch = format!("*filter\n:{CHAIN} - [0:0]\n");
            for (net, _) in bans.iter().filter(|(n, _)| matches!(n, IpNet::V6(_)) == v6) {
                batch.push_str(&format!("-A {CHAIN} -s {net} -j DROP\n"));
            }
            batch.push_str("COMMIT\n");
            let argv = [t, "-w", "--noflush"];
            let out = self.runner.run(&argv, Some(batch.as_bytes()))?;
            if !out.success {
                return Err(command_failed(&argv, &out, MODULES));
            }
        }
        self.ensure()
    }

    fn teardown(&mut self) -> Result<()> {
        for t in self.tools() {
            while self.ok(&[t, "-w", "-C", "INPUT", "-j", CHAIN])? {
                must(
                    &*self.runner,
                    &[t, "-w", "-D", "INPUT", "-j", CHAIN],
                    MODULES,
                )?;
            }
            if self.ok(&[t, "-w", "-S", CHAIN])? {
                must(&*self.runner, &[t, "-w", "-F", CHAIN], MODULES)?;
                must(&*self.runner, &[t, "-w", "-X", CHAIN], MODULES)?;
            }
        }
        Ok(())
    }

    fn name(&self) -> Backend {
        Backend::Iptables
    }

    fn ipv6(&self) -> bool {
        self.ipv6
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::Output;
    use crate::firewall::fake::Recorder;

    #[test]
    fn unban_of_a_rule_someone_else_just_removed_is_not_an_error() {
        // -C finds the rule, the watcher's re-check removes it, our -D then fails: fine, as
        // long as the rule is gone. A -D that fails with the rule still there is an error.
        struct Racing {
            rule_there: std::sync::Mutex<bool>,
            delete_works: bool,
        }
        impl CommandRunner for Racing {
            fn run(&self, argv: &[&str], _: Option<&[u8]>) -> Result<Output> {
                let mut there = self.rule_there.lock().unwrap();
                let success = match argv[2] {
                    "-C" => *there,
                    "-D" => {
                        let deleted = *there && self.delete_works;
                        if deleted {
                            *there = false;
                        }
                        deleted
                    }
                    _ => true,
                };
                Ok(Output {
                    success,
                    stdout: String::new(),
                    stderr: if success {
                        String::new()
                    } else {
                        "Bad rule".into()
                    },
                })
            }
        }
        let net: IpNet = "192.0.2.7/32".parse().unwrap();
        let mut fw = Iptables::new(Box::new(Racing {
            rule_there: true.into(),
            delete_works: false,
        }));
        // The rule stays: error.
        assert!(fw.unban(net).is_err());
        let racing = Racing {
            rule_there: true.into(),
            delete_works: false,
        };
        // Someone removes it between -C and -D.
        struct Gone(Racing);
        impl CommandRunner for Gone {
            fn run(&self, argv: &[&str], stdin: Option<&[u8]>) -> Result<Output> {
                let out = self.0.run(argv, stdin)?;
                if argv[2] == "-C" && out.success {
                    *self.0.rule_there.lock().unwrap() = false;
                }
                Ok(out)
            }
        }
        let mut fw = Iptables::new(Box::new(Gone(racing)));
        fw.unban(net).unwrap();
    }

    #[test]
    fn parses_only_our_drop_rules() {
        let text = "-N ASTPATCH\n-A ASTPATCH -s 10.250.0.2/32 -j DROP\n-A ASTPATCH -s 10.9.0.0/16 -j DROP\n-A ASTPATCH -s 10.1.1.1/32 -j ACCEPT\n";
        let v = parse_rules(text);
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].to_string(), "10.9.0.0/16");
    }

    #[test]
    fn ban_adds_once_and_picks_the_family() {
        let r = Recorder::default();
        r.answer("iptables -w -C ASTPATCH", false, "");
        let mut fw = Iptables::new(Box::new(r.clone()));
        fw.ban("192.0.2.7/32".parse().unwrap(), None).unwrap();
        r.answer("ip6tables -w -C ASTPATCH", true, "");
        fw.ban("2001:db8::/64".parse().unwrap(), None).unwrap();
        let calls = r.calls();
        assert!(calls.contains(&"iptables -w -A ASTPATCH -s 192.0.2.7/32 -j DROP".to_string()));
        assert!(
            !calls.iter().any(|c| c.starts_with("ip6tables -w -A")),
            "{calls:?}"
        );
    }

    #[test]
    fn a_batch_appends_to_our_chain_in_one_restore_per_family() {
        let r = Recorder::default();
        let mut fw = Iptables::new(Box::new(r.clone()));
        fw.ban_many(&[
            ("192.0.2.7/32".parse().unwrap(), None),
            ("192.0.2.8/32".parse().unwrap(), Some(5)),
        ])
        .unwrap();
        assert_eq!(r.calls(), ["iptables-restore -w --noflush"]);
        assert_eq!(
            r.stdin_of("iptables-restore").unwrap(),
            "*filter\n-A ASTPATCH -s 192.0.2.7/32 -j DROP\n-A ASTPATCH -s 192.0.2.8/32 -j DROP\nCOMMIT\n"
        );
    }

    #[test]
    fn restore_is_one_noflush_batch_per_family() {
        let r = Recorder::default();
        let mut fw = Iptables::new(Box::new(r.clone()));
        fw.restore(&[
            ("192.0.2.7/32".parse().unwrap(), None),
            ("2001:db8::/64".parse().unwrap(), Some(5)),
        ])
        .unwrap();
        let v4 = r.stdin_of("iptables-restore").unwrap();
        assert_eq!(
            v4,
            "*filter\n:ASTPATCH - [0:0]\n-A ASTPATCH -s 192.0.2.7/32 -j DROP\nCOMMIT\n"
        );
        let v6 = r.stdin_of("ip6tables-restore").unwrap();
        assert!(v6.contains("-A ASTPATCH -s 2001:db8::/64 -j DROP"));
    }

    #[test]
    fn without_ipv6_ip6tables_is_never_run() {
        let r = Recorder::default();
        r.answer("iptables -w -C ASTPATCH", false, "");
        r.answer(
            "iptables -w -S ASTPATCH",
            true,
            "-N ASTPATCH\n-A ASTPATCH -s 192.0.2.7/32 -j DROP\n",
        );
        let mut fw = Iptables::new(Box::new(r.clone())).with_ipv6(false);
        assert!(!fw.ipv6());
        fw.ensure().unwrap();
        fw.ban("192.0.2.7/32".parse().unwrap(), None).unwrap();
        let e = fw
            .ban("2001:db8::7/128".parse().unwrap(), None)
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("IPv6 is disabled on this host; nothing to ban")
        );
        fw.unban("2001:db8::7/128".parse().unwrap()).unwrap();
        assert_eq!(fw.list().unwrap().len(), 1);
        assert!(fw.hooked().unwrap());
        fw.hook_on_top().unwrap();
        fw.restore(&[
            ("192.0.2.7/32".parse().unwrap(), None),
            ("2001:db8::/64".parse().unwrap(), None),
        ])
        .unwrap();
        assert!(!r.stdin_of("iptables-restore").unwrap().contains("2001:db8"));
        r.answer("iptables -w -C INPUT", false, ""); // the hook is gone after one -D
        fw.teardown().unwrap();
        let calls = r.calls();
        assert!(
            calls
                .iter()
                .any(|c| c.starts_with("iptables -w -A ASTPATCH"))
        );
        assert!(
            !calls.iter().any(|c| c.starts_with("ip6tables")),
            "{calls:?}"
        );
    }
}
