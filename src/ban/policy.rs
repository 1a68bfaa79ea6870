//! Ban decisions that need no clock and no firewall: what network an address bans, for how
//! long, and whether a target may be banned at all.
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use crate::error::{Error, Result};
use crate::settings::{Settings, is_never_bannable};

/// The network a ban of `addr` covers: the address itself, or its IPv6 prefix when
/// `ipv6_prefix` is set (attackers rotate through their /64 freely). IPv4-mapped IPv6
/// addresses are banned as the IPv4 address they are.
pub fn ban_net(addr: IpAddr, ipv6_prefix: Option<u8>) -> IpNet {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpNet::from(IpAddr::V4(v4)),
            None => match ipv6_prefix {
                Some(p) => IpNet::new(addr, p).expect("validated prefix").trunc(),
                None => IpNet::from(addr),
            },
        },
        v4 => IpNet::from(v4),
    }
}

/// The one rule every reader (scan, watch, `watch --from-start`) uses to turn a failing address
/// into what it bans: the address's network ([`ban_net`]), or the address alone when the
/// wider network would take in `ignoreip` or one of `local` (the host's own addresses); None
/// when nothing may be banned for it.
pub fn ban_target(addr: IpAddr, settings: &Settings, local: &[IpAddr]) -> Option<IpNet> {
    let net = ban_net(addr, settings.ipv6_prefix);
    if check_bannable(&net, settings, local).is_ok() {
        return Some(net);
    }
    let one = ban_net(addr, None);
    check_bannable(&one, settings, local).is_ok().then_some(one)
}

/// `bantime`, or with `bantime_increment` `bantime * factor^previous`, capped at `max`.
pub fn ban_length(settings: &Settings, previous_bans: u32) -> Duration {
    let base = settings.bantime;
    match &settings.bantime_increment {
        None => base,
        Some(inc) => {
            let mult = (inc.factor as u64).saturating_pow(previous_bans.min(64));
            let secs = base.as_secs().saturating_mul(mult);
            Duration::from_secs(secs).min(inc.max)
        }
    }
}

/// Parse an address or CIDR network from the command line. An IPv4-mapped IPv6 target
/// (`::ffff:203.0.113.7`) is the IPv4 host or network it names: IPv4 traffic never matches an
/// ip6tables rule, so banning it as IPv6 would silently ban nothing (and slip past an IPv4
/// ignoreip).
pub fn parse_target(text: &str) -> Result<IpNet> {
    parse_target_as_written(text).map(unmap)
}

fn unmap(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(n) if n.prefix_len() >= 96 => match n.addr().to_ipv4_mapped() {
            Some(v4) => IpNet::new(IpAddr::V4(v4), n.prefix_len() - 96).expect("0..=32"),
            None => net,
        },
        _ => net,
    }
}

fn parse_target_as_written(text: &str) -> Result<IpNet> {
    let t = text.trim();
    if let Ok(a) = t.parse::<IpAddr>() {
        return Ok(IpNet::from(a));
    }
    match t.parse::<IpNet>() {
        Ok(n) if n != n.trunc() => Err(Error::input(
            format!("{t}: host bits are set in this network"),
            Some(&format!("did you mean {}?", n.trunc())),
        )),
        Ok(n) => Ok(n),
        Err(_) => Err(Error::input(
            format!("{t}: not an IP address or CIDR network"),
            Some("write e.g. 203.0.113.7, 203.0.113.0/24, 2001:db8::1 or 2001:db8::/64"),
        )),
    }
}

/// Refuse networks that may never be banned: loopback, unspecified, multicast, link-local, anything
/// overlapping `ignoreip`, the host's own addresses, and absurdly wide networks.
pub fn check_bannable(net: &IpNet, settings: &Settings, local: &[IpAddr]) -> Result<()> {
    let refuse = |why: String| {
        Err(Error::input(
            format!("refusing to ban {net}: {why}"),
            Some("ignoreip in the settings file lists what is protected"),
        ))
    };
    let min = if net.addr().is_ipv4() { 8 } else { 16 };
    if net.prefix_len() < min {
        return refuse(format!("wider than /{min}"));
    }
    if is_never_bannable(net.network()) || is_never_bannable(net.addr()) {
        return refuse("loopback, unspecified, multicast, broadcast or link-local".into());
    }
    if let Some(i) = settings
        .ignoreip
        .iter()
        .find(|i| i.contains(net) || net.contains(*i))
    {
        return refuse(format!("overlaps ignoreip {i}"));
    }
    if let Some(a) = local.iter().find(|a| net.contains(*a)) {
        return refuse(format!("{a} is one of this host's own addresses"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::BantimeIncrement;

    #[test]
    fn ipv6_prefix_bans_the_whole_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::9".parse().unwrap();
        assert_eq!(ban_net(a, Some(64)).to_string(), "2001:db8:1:2::/64");
        assert_eq!(ban_net(a, None).to_string(), "2001:db8:1:2:aaaa::9/128");
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(ban_net(v4, Some(64)).to_string(), "192.0.2.1/32");
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(ban_net(mapped, Some(64)).to_string(), "192.0.2.1/32");
    }

    #[test]
    fn one_ban_target_rule_for_every_reader() {
        let mut s = Settings {
            ipv6_prefix: Some(64),
            ..Settings::default()
        };
        s.ignoreip.push("2001:db8:1:2::7/128".parse().unwrap());
        let ip = |t: &str| t.parse::<IpAddr>().unwrap();
        let host = [ip("203.0.113.1"), ip("2001:db8:9::1")];
        assert_eq!(
            ban_target(ip("198.51.100.7"), &s, &host)
                .unwrap()
                .to_string(),
            "198.51.100.7/32"
        );
        assert_eq!(
            ban_target(ip("::ffff:198.51.100.7"), &s, &host)
                .unwrap()
                .to_string(),
            "198.51.100.7/32"
        );
        // The host itself, loopback, ignoreip: nothing.
        assert_eq!(ban_target(ip("203.0.113.1"), &s, &host), None);
        assert_eq!(ban_target(ip("127.0.0.1"), &s, &host), None);
        assert_eq!(ban_target(ip("::ffff:127.0.0.1"), &s, &host), None);
        assert_eq!(ban_target(ip("2001:db8:1:2::7"), &s, &host), None);
        // A /64 that would take in ignoreip or the host narrows to the one address.
        assert_eq!(
            ban_target(ip("2001:db8:1:2::8"), &s, &host)
                .unwrap()
                .to_string(),
            "2001:db8:1:2::8/128"
        );
        assert_eq!(
            ban_target(ip("2001:db8:9::2"), &s, &host)
                .unwrap()
                .to_string(),
            "2001:db8:9::2/128"
        );
        assert_eq!(
            ban_target(ip("2001:db8:5::2"), &s, &host)
                .unwrap()
                .to_string(),
            "2001:db8:5::/64"
        );
    }

    #[test]
    fn repeat_offenders_get_longer_bans_capped() {
        let mut s = Settings::default();
        assert_eq!(ban_length(&s, 3), Duration::from_secs(3600));
        s.bantime_increment = Some(BantimeIncrement {
            factor: 2,
            max: Duration::from_secs(86_400),
        });
        assert_eq!(ban_length(&s, 0), Duration::from_secs(3600));
        assert_eq!(ban_length(&s, 2), Duration::from_secs(4 * 3600));
        assert_eq!(ban_length(&s, 10), Duration::from_secs(86_400));
        assert_eq!(ban_length(&s, u32::MAX), Duration::from_secs(86_400));
    }

    #[test]
    fn targets_parse_or_explain() {
        assert_eq!(
            parse_target("203.0.113.7").unwrap().to_string(),
            "203.0.113.7/32"
        );
        assert_eq!(
            parse_target("2001:db8::/64").unwrap().to_string(),
            "2001:db8::/64"
        );
        let e = parse_target("203.0.113.7/24").unwrap_err();
        assert!(e.hint().unwrap().contains("203.0.113.0/24"));
        assert!(matches!(
            parse_target("example.com"),
            Err(Error::Input { .. })
        ));
        assert!(parse_target("10.0.0.1/33").is_err());
    }

    #[test]
    fn ipv4_mapped_targets_are_their_ipv4_host_or_network() {
        let t = |s: &str| parse_target(s).unwrap().to_string();
        assert_eq!(t("::ffff:203.0.113.7"), "203.0.113.7/32");
        assert_eq!(t("::ffff:198.51.100.0/120"), "198.51.100.0/24");
        assert_eq!(t("2001:db8::1"), "2001:db8::1/128");
        let s = Settings {
            ignoreip: vec!["10.1.0.0/16".parse().unwrap()],
            ..Settings::default()
        };
        let n = parse_target("::ffff:10.1.2.3").unwrap();
        assert!(check_bannable(&n, &s, &[]).is_err());
    }

    #[test]
    fn protected_targets_are_refused() {
        let s = Settings {
            ignoreip: vec![
                "127.0.0.0/8".parse().unwrap(),
                "10.1.0.0/16".parse().unwrap(),
            ],
            ..Settings::default()
        };
        let local: Vec<IpAddr> = vec!["192.0.2.10".parse().unwrap()];
        for t in [
            "127.0.0.1",
            "::1",
            "0.0.0.0/8",
            "10.1.2.3",
            "10.0.0.0/8",
            "192.0.2.0/24",
            "::/0",
            "16.0.0.0/4",
        ] {
            let n = parse_target(t).unwrap();
            assert!(check_bannable(&n, &s, &local).is_err(), "{t}");
        }
        for t in ["203.0.113.7", "10.2.0.0/16", "2001:db8::/64"] {
            check_bannable(&parse_target(t).unwrap(), &s, &local).unwrap();
        }
    }
}
