//! One failed attempt, one count. Asterisk reports many failures twice: once in `messages`
//! (the module's own NOTICE) and once as a security event (the security log, or AMI). A real
//! 20.20.1 wrote both for every PJSIP and AMI failure, so `maxretry = 3` banned after two
//! attempts. Reports of the same address from the two channels within [`WINDOW`] seconds of
//! each other are paired, one to one, and the second of a pair is not counted. Each channel's
//! own reports are never merged with each other: two lines in `messages` are two attempts.
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use crate::logs::recognise::Rule;

/// Seconds apart that two channels' reports of one attempt may be (both are written within
/// milliseconds; a second of slack covers a slow disk and the one-second log dates).
pub const WINDOW: i64 = 2;

/// Unpaired reports kept per address and channel (a flood keeps the newest).
const KEEP: usize = 64;

/// The channel a report came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// A module's own line (messages, syslog).
    Messages = 0,
    /// A security event (security log or AMI).
    Events = 1,
}

impl Channel {
    pub fn of(rule: Rule) -> Channel {
        if rule == Rule::SecurityEvent {
            Channel::Events
        } else {
            Channel::Messages
        }
    }
}

#[derive(Debug)]
pub struct OneCount {
    unpaired: HashMap<IpAddr, [VecDeque<i64>; 2]>,
    keep: usize,
}

impl Default for OneCount {
    fn default() -> Self {
        OneCount {
            unpaired: HashMap::new(),
            keep: KEEP,
        }
    }
}

impl OneCount {
    /// Keeping every unpaired report: for `scan`, which reads `messages` and `security` one
    /// after the other, so a pair's two halves are a whole file apart.
    pub fn unbounded() -> OneCount {
        OneCount {
            unpaired: HashMap::new(),
            keep: usize::MAX,
        }
    }

    /// True when this report is an attempt not yet counted; false when it is the other
    /// channel's report of one that was (the pair is then used up).
    pub fn first_report(&mut self, addr: IpAddr, ch: Channel, t: i64) -> bool {
        let e = self.unpaired.entry(addr).or_default();
        let other = &mut e[1 - ch as usize];
        while other.front().is_some_and(|&x| t - x > WINDOW) {
            other.pop_front();
        }
        if let Some(i) = other.iter().position(|&x| (t - x).abs() <= WINDOW) {
            other.remove(i);
            return false;
        }
        let mine = &mut e[ch as usize];
        mine.push_back(t);
        if mine.len() > self.keep {
            mine.pop_front();
        }
        true
    }

    /// Forget reports too old to pair (call now and then).
    pub fn expire(&mut self, now: i64) {
        self.unpaired.retain(|_, chans| {
            for c in chans.iter_mut() {
                while c.front().is_some_and(|&x| now - x > WINDOW) {
                    c.pop_front();
                }
            }
            chans.iter().any(|c| !c.is_empty())
        });
    }

    pub fn len(&self) -> usize {
        self.unpaired.len()
    }

    pub fn is_empty(&self) -> bool {
        self.unpaired.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_counts_once_and_each_channel_alone_counts_every_report() {
        let a: IpAddr = "10.96.0.2".parse().unwrap();
        let mut o = OneCount::default();
        // messages then security event: one attempt.
        assert!(o.first_report(a, Channel::Messages, 100));
        assert!(!o.first_report(a, Channel::Events, 100));
        // security event first, then messages: one attempt.
        assert!(o.first_report(a, Channel::Events, 101));
        assert!(!o.first_report(a, Channel::Messages, 102));
        // Three messages lines in a second are three attempts; three events pair with them.
        for _ in 0..3 {
            assert!(o.first_report(a, Channel::Messages, 110));
        }
        for _ in 0..3 {
            assert!(!o.first_report(a, Channel::Events, 110));
        }
        assert!(
            o.first_report(a, Channel::Events, 110),
            "a fourth event is new"
        );
        // Too far apart: two attempts.
        assert!(o.first_report(a, Channel::Messages, 200));
        assert!(o.first_report(a, Channel::Events, 203));
        // Another address never pairs.
        let b: IpAddr = "10.96.0.3".parse().unwrap();
        assert!(o.first_report(b, Channel::Events, 200));
        o.expire(1000);
        assert!(o.is_empty());
    }
}
