//! Per-address failure counting for the watcher: "ban once `maxretry` failures fall within
//! `findtime`", exactly as fail2ban's jail counts, in bounded memory and with no clock inside
//! (the caller passes `now`, so tests and log replays decide what time it is).
//!
//! Memory: a watcher under a distributed attack sees hundreds of thousands of addresses that fail
//! once or twice. Each address costs one hash-table slot of 36 bytes (a 16-byte key and up to four
//! recent failure times as `u32` seconds) when `maxretry <= 5`, the common case; larger `maxretry`
//! keeps the times in a small vector instead. The table never grows past `max_entries`: when it is
//! full, expired windows are dropped first, then the least recently failing tenth is evicted and
//! counted in [`Tracker::evicted`] so the watcher can say so.
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};

/// What one more failure from an address means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not yet: `failures` within the window so far, this one included.
    Counting { failures: u32 },
    /// `failures` within the window reached `maxretry`; the address has been forgotten, so a
    /// failure that arrives after the ban starts a fresh count.
    Ban { failures: u32 },
}

/// Addresses as 16 bytes, IPv4 in its mapped form, so `::ffff:192.0.2.7` and `192.0.2.7` are
/// one attacker.
type Key = [u8; 16];

fn key(addr: IpAddr) -> Key {
    match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

fn addr_of(key: &Key) -> IpAddr {
    let v6 = Ipv6Addr::from(*key);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// The recent failure times of one address, oldest first, as seconds since the tracker's base.
trait Recent: Default {
    fn times(&self) -> &[u32];
    /// Keep only times `>= cutoff`, then append `t`, dropping the oldest beyond `keep`.
    fn retain_push(&mut self, cutoff: u32, t: u32, keep: usize);
    fn newest(&self) -> u32 {
        self.times().last().copied().unwrap_or(0)
    }
}

const INLINE: usize = 4;

/// Up to four times without a heap allocation: enough for `maxretry <= 5`.
#[derive(Default)]
struct Inline {
    t: [u32; INLINE],
    len: u8,
}

impl Recent for Inline {
    fn times(&self) -> &[u32] {
        &self.t[..self.len as usize]
    }
    fn retain_push(&mut self, cutoff: u32, t: u32, keep: usize) {
        let keep = keep.min(INLINE);
        let mut out = [0u32; INLINE];
        let mut n = 0;
        for &x in self.times() {
            if x >= cutoff {
                out[n] = x;
                n += 1;
            }
        }
        if keep == 0 {
            self.len = 0;
            return;
        }
        if n == keep {
            out.copy_within(1..n, 0);
            n -= 1;
        }
        out[n] = t;
        self.t = out;
        self.len = (n + 1) as u8;
    }
}

impl Recent for Vec<u32> {
    fn times(&self) -> &[u32] {
        self
    }
    fn retain_push(&mut self, cutoff: u32, t: u32, keep: usize) {
        self.retain(|&x| x >= cutoff);
        if keep == 0 {
            self.clear();
            return;
        }
        if self.len() >= keep {
            let extra = self.len() + 1 - keep;
            self.drain(..extra);
        }
        self.push(t);
    }
}

struct Table<R> {
    map: HashMap<Key, R>,
}

impl<R: Recent> Table<R> {
    fn new() -> Self {
        Table {
            map: HashMap::new(),
        }
    }
}

enum Store {
    Inline(Table<Inline>),
    Heap(Table<Vec<u32>>),
}

/// Counts failures per address within a sliding window; see the module comment.
pub struct Tracker {
    maxretry: u32,
    findtime: i64,
    max_entries: usize,
    /// Times are stored as `u32` seconds after `base`, fixed by the first `record`.
    base: Option<i64>,
    store: Store,
    evicted: u64,
}

impl Tracker {
    /// `maxretry` failures within `findtime_secs` ban; at most `max_entries` addresses are
    /// tracked at once (at least 16 are always allowed).
    pub fn new(maxretry: u32, findtime_secs: i64, max_entries: usize) -> Self {
        let maxretry = maxretry.max(1);
        let store = if (maxretry as usize - 1) <= INLINE {
            Store::Inline(Table::new())
        } else {
            Store::Heap(Table::new())
        };
        Tracker {
            maxretry,
            findtime: findtime_secs.max(0),
            max_entries: max_entries.max(16),
            base: None,
            store,
            evicted: 0,
        }
    }

    /// One failure from `addr` at unix time `now`.
    pub fn record(&mut self, addr: IpAddr, now: i64) -> Verdict {
        let t = self.rel(now);
        let cutoff = self.rel(now.saturating_sub(self.findtime));
        let (maxretry, max_entries) = (self.maxretry, self.max_entries);
        let k = key(addr);
        let (verdict, grew_full) = match &mut self.store {
            Store::Inline(tab) => record_in(tab, k, t, cutoff, maxretry, max_entries),
            Store::Heap(tab) => record_in(tab, k, t, cutoff, maxretry, max_entries),
        };
        if grew_full {
            self.make_room(now, k);
        }
        verdict
    }

    /// Forget every address whose most recent failure is older than `findtime` before `now`.
    pub fn expire(&mut self, now: i64) {
        if self.base.is_none() {
            return;
        }
        let cutoff = self.rel(now.saturating_sub(self.findtime));
        match &mut self.store {
            Store::Inline(tab) => tab.map.retain(|_, r| r.newest() >= cutoff),
            Store::Heap(tab) => tab.map.retain(|_, r| r.newest() >= cutoff),
        }
    }

    /// Addresses currently being counted.
    pub fn len(&self) -> usize {
        match &self.store {
            Store::Inline(tab) => tab.map.len(),
            Store::Heap(tab) => tab.map.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Addresses dropped, over the tracker's lifetime, because the table was full.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Failures within the window for `addr` as of `now` (0 when unknown); for status output.
    pub fn failures(&self, addr: IpAddr, now: i64) -> u32 {
        let Some(base) = self.base else { return 0 };
        let cutoff = (now.saturating_sub(self.findtime) - base).clamp(0, u32::MAX as i64) as u32;
        let k = key(addr);
        let times = match &self.store {
            Store::Inline(tab) => tab.map.get(&k).map(|r| r.times()),
            Store::Heap(tab) => tab.map.get(&k).map(|r| r.times()),
        };
        times.map_or(0, |ts| ts.iter().filter(|&&x| x >= cutoff).count() as u32)
    }

    /// The addresses currently counted, with their failures in the window as of `now`.
    pub fn snapshot(&self, now: i64) -> Vec<(IpAddr, u32)> {
        let addrs: Vec<IpAddr> = match &self.store {
            Store::Inline(tab) => tab.map.keys().map(addr_of).collect(),
            Store::Heap(tab) => tab.map.keys().map(addr_of).collect(),
        };
        let mut out: Vec<(IpAddr, u32)> = addrs
            .into_iter()
            .map(|a| (a, self.failures(a, now)))
            .filter(|&(_, n)| n > 0)
            .collect();
        out.sort();
        out
    }

    fn rel(&mut self, t: i64) -> u32 {
        let base = *self.base.get_or_insert(t.saturating_sub(self.findtime));
        (t - base).clamp(0, u32::MAX as i64) as u32
    }

    /// Called when an insertion filled the table: drop expired windows, and if that is not
    /// enough, the tenth of addresses that failed least recently.
    /// `keep` is the address just recorded: among addresses that failed in the same second it
    /// would otherwise be as likely to go as any, and forgetting the one attacker that is
    /// active right now is the worst choice.
    fn make_room(&mut self, now: i64, keep: Key) {
        self.expire(now);
        let target = self.max_entries - self.max_entries / 10;
        let before = self.len();
        if before <= target {
            return;
        }
        match &mut self.store {
            Store::Inline(tab) => evict_oldest(tab, before - target, &keep),
            Store::Heap(tab) => evict_oldest(tab, before - target, &keep),
        }
        self.evicted += (before - self.len()) as u64;
    }
}

fn record_in<R: Recent>(
    tab: &mut Table<R>,
    k: Key,
    t: u32,
    cutoff: u32,
    maxretry: u32,
    max_entries: usize,
) -> (Verdict, bool) {
    let keep = maxretry as usize - 1;
    let entry = tab.map.entry(k).or_default();
    let prior = entry.times().iter().filter(|&&x| x >= cutoff).count() as u32;
    let failures = prior + 1;
    if failures >= maxretry {
        tab.map.remove(&k);
        return (Verdict::Ban { failures }, false);
    }
    entry.retain_push(cutoff, t, keep);
    (Verdict::Counting { failures }, tab.map.len() >= max_entries)
}

fn evict_oldest<R: Recent>(tab: &mut Table<R>, n: usize, keep: &Key) {
    let mut newest: Vec<u32> = tab.map.values().map(Recent::newest).collect();
    let idx = (n - 1).min(newest.len() - 1);
    let (_, &mut limit, _) = newest.select_nth_unstable(idx);
    let mut left = n;
    tab.map.retain(|k, r| {
        if left > 0 && r.newest() <= limit && k != keep {
            left -= 1;
            false
        } else {
            true
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn bans_on_the_maxretryth_failure_within_findtime_then_forgets() {
        let mut t = Tracker::new(3, 600, 1000);
        let a = ip("203.0.113.7");
        assert_eq!(t.record(a, 1000), Verdict::Counting { failures: 1 });
        assert_eq!(t.record(a, 1100), Verdict::Counting { failures: 2 });
        assert_eq!(t.len(), 1);
        assert_eq!(t.record(a, 1200), Verdict::Ban { failures: 3 });
        assert_eq!(t.len(), 0);
        assert_eq!(t.record(a, 1201), Verdict::Counting { failures: 1 });
    }

    #[test]
    fn the_window_slides() {
        let mut t = Tracker::new(3, 600, 1000);
        let a = ip("203.0.113.7");
        t.record(a, 0);
        t.record(a, 500);
        // The failure at 0 is now outside the window: 500 and 700 remain.
        assert_eq!(t.record(a, 700), Verdict::Counting { failures: 2 });
        assert_eq!(t.record(a, 1000), Verdict::Ban { failures: 3 });
    }

    #[test]
    fn failures_exactly_findtime_apart_still_count() {
        let mut t = Tracker::new(2, 600, 1000);
        let a = ip("203.0.113.7");
        t.record(a, 100);
        assert_eq!(t.record(a, 700), Verdict::Ban { failures: 2 });
    }

    #[test]
    fn maxretry_one_bans_at_once() {
        let mut t = Tracker::new(1, 600, 1000);
        assert_eq!(t.record(ip("2001:db8::1"), 5), Verdict::Ban { failures: 1 });
        assert!(t.is_empty());
    }

    #[test]
    fn large_maxretry_uses_the_heap_store_and_stays_exact() {
        let mut t = Tracker::new(10, 100, 1000);
        let a = ip("198.51.100.20");
        for i in 0..9 {
            assert_eq!(
                t.record(a, i * 10),
                Verdict::Counting {
                    failures: i as u32 + 1
                }
            );
        }
        // At 150 the failures at 0..40 have left the window: 50..80 (4) + this one.
        assert_eq!(t.record(a, 150), Verdict::Counting { failures: 5 });
        for s in [151, 152, 153, 154] {
            t.record(a, s);
        }
        // At 155 the failure at 50 has left too.
        assert_eq!(t.record(a, 155), Verdict::Counting { failures: 9 });
        assert_eq!(t.record(a, 156), Verdict::Ban { failures: 10 });
    }

    #[test]
    fn addresses_are_counted_apart_and_mapped_v4_is_v4() {
        let mut t = Tracker::new(2, 600, 1000);
        t.record(ip("192.0.2.10"), 0);
        assert_eq!(
            t.record(ip("192.0.2.11"), 1),
            Verdict::Counting { failures: 1 }
        );
        assert_eq!(
            t.record(ip("::ffff:192.0.2.10"), 2),
            Verdict::Ban { failures: 2 }
        );
    }

    #[test]
    fn expire_forgets_quiet_addresses() {
        let mut t = Tracker::new(5, 600, 1000);
        t.record(ip("192.0.2.10"), 0);
        t.record(ip("192.0.2.11"), 500);
        t.expire(700);
        assert_eq!(t.len(), 1);
        assert_eq!(t.snapshot(700), vec![(ip("192.0.2.11"), 1)]);
        t.expire(1101);
        assert!(t.is_empty());
    }

    #[test]
    fn clock_going_backwards_does_not_panic_or_ban_wrongly() {
        let mut t = Tracker::new(3, 600, 1000);
        let a = ip("192.0.2.10");
        t.record(a, 10_000);
        assert_eq!(t.record(a, 5), Verdict::Counting { failures: 2 });
    }

    #[test]
    fn memory_is_bounded_and_evictions_are_counted() {
        let mut t = Tracker::new(5, 600, 1000);
        for i in 0..100_000u32 {
            let a = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            t.record(a, i as i64 / 1000);
            assert!(t.len() <= 1000);
            // Eviction never drops the address that just failed, even among same-second ties.
            assert_eq!(
                t.failures(a, i as i64 / 1000),
                1,
                "address {i} was forgotten at once"
            );
        }
        assert!(t.evicted() >= 99_000, "{}", t.evicted());
        // The most recent attacker is still being counted.
        let last = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + 99_999));
        assert_eq!(t.failures(last, 100), 1);
    }

    #[test]
    fn a_full_table_still_bans_a_persistent_attacker() {
        let mut t = Tracker::new(3, 600, 100);
        let attacker = ip("203.0.113.9");
        let mut banned = false;
        for i in 0..10_000u32 {
            let now = i as i64 / 10;
            let noise = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            t.record(noise, now);
            if i % 50 == 0 && matches!(t.record(attacker, now), Verdict::Ban { .. }) {
                banned = true;
            }
        }
        assert!(banned);
    }

    #[test]
    fn inline_slot_is_small() {
        assert!(std::mem::size_of::<(Key, Inline)>() <= 36);
    }
}
