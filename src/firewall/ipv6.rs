//! Whether the kernel has IPv6 at all. Hosts booted with `ipv6.disable=1` (common on VPSes)
//! have no IPv6 stack: `ip6tables` fails ("can't initialize ip6tables table `filter': Address
//! family not supported by protocol") and an `inet6` ipset cannot be hooked, yet the host can
//! receive no IPv6 packet either. The backends then run IPv4-only instead of failing to start.
//!
//! The signal is `/proc/sys/net/ipv6`: the kernel creates it when, and only when, the IPv6
//! stack is initialised, independent of the tools (ip6tables' messages differ between the
//! legacy and nf_tables variants and between versions) and of per-interface switches — a
//! `net.ipv6.conf.all.disable_ipv6=1` sysctl leaves the stack (and ip6tables) in place and is
//! not "off" here. `/proc/sys/net` itself is checked first: without /proc mounted nothing is
//! known, and IPv6 is assumed present (the tools then report any real trouble).
use std::path::Path;

use ipnet::IpNet;

use crate::error::Error;

/// What was observed on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// `/proc/sys/net` exists (procfs is mounted and shows the network sysctls).
    pub proc_sys_net: bool,
    /// `/proc/sys/net/ipv6` exists.
    pub proc_sys_net_ipv6: bool,
}

/// True when the kernel has an IPv6 stack (or when that cannot be told).
pub fn decide(f: Facts) -> bool {
    !f.proc_sys_net || f.proc_sys_net_ipv6
}

/// The facts under `root` (`/` on a real host).
pub fn observe(root: &Path) -> Facts {
    let net = root.join("proc/sys/net");
    Facts {
        proc_sys_net: net.is_dir(),
        proc_sys_net_ipv6: net.join("ipv6").is_dir(),
    }
}

/// This host's answer. Boot-time `ipv6.disable=1` holds for every network namespace.
pub fn host_has_ipv6() -> bool {
    decide(observe(Path::new("/")))
}

/// The line the watcher prints at start when IPv6 is off.
pub const OFF_LINE: &str = "IPv6 is disabled on this host (booted with ipv6.disable=1?): the firewall works IPv4-only and IPv6 addresses are not banned";

/// The refusal of an IPv6 ban on a host without IPv6.
pub fn refuse(net: &IpNet) -> Error {
    Error::nothing_to_do(
        format!("IPv6 is disabled on this host; nothing to ban ({net} cannot reach it)"),
        Some(
            "the kernel has no IPv6 stack (/proc/sys/net/ipv6 is absent), so no IPv6 packet arrives",
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_only_when_proc_shows_net_without_ipv6() {
        let f = |net, v6| Facts {
            proc_sys_net: net,
            proc_sys_net_ipv6: v6,
        };
        assert!(decide(f(true, true)), "a normal host");
        assert!(!decide(f(true, false)), "ipv6.disable=1");
        assert!(decide(f(false, false)), "no /proc: unknown, keep both");
        assert!(decide(f(false, true)));
    }

    #[test]
    fn observes_a_fake_proc_tree() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(
            observe(root.path()),
            Facts {
                proc_sys_net: false,
                proc_sys_net_ipv6: false
            }
        );
        std::fs::create_dir_all(root.path().join("proc/sys/net/ipv4")).unwrap();
        assert!(!decide(observe(root.path())), "booted with ipv6.disable=1");
        std::fs::create_dir_all(root.path().join("proc/sys/net/ipv6/conf/all")).unwrap();
        assert!(decide(observe(root.path())));
        // A file where the directory should be is not the IPv6 stack.
        let root2 = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root2.path().join("proc/sys/net")).unwrap();
        std::fs::write(root2.path().join("proc/sys/net/ipv6"), "").unwrap();
        assert!(!decide(observe(root2.path())));
    }

    #[test]
    fn the_refusal_says_ipv6_is_off() {
        let e = refuse(&"2001:db8::1/128".parse().unwrap());
        assert!(
            e.to_string()
                .contains("IPv6 is disabled on this host; nothing to ban"),
            "{e}"
        );
    }
}
