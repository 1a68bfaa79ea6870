//! `astpatch scan`'s work, without the printing: run every line through the recogniser, count
//! per rule and per address, and replay the failures through the watcher's own [`Tracker`] with
//! the settings' maxretry/findtime/ignoreip to say which addresses it would ban.
use std::collections::HashMap;
use std::io::Read;
use std::net::IpAddr;

use serde::Serialize;

use crate::ban::policy;
use crate::ban::tracker::{Tracker, Verdict};
use crate::logs::provenance::{Counts, Provenance};
use crate::logs::read::{Block, LineReader};
use crate::logs::recognise::{Recogniser, Recognition, Rule};
use crate::settings::Settings;

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct RuleCount {
    pub rule: &'static str,
    /// Lines with an address.
    pub failures: u64,
    /// Lines with no trustworthy address (e.g. stock chan_sip): never banned.
    pub no_address: u64,
    /// Lines where a second, forged candidate address made the source unclear: never banned.
    pub ambiguous: u64,
    /// Lines shaped to pass for the patched module's (a tag no known build has): never banned.
    pub forged: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AddressCount {
    /// Canonical text: IPv6 compressed, no brackets, no port.
    pub address: String,
    pub failures: u64,
    /// The watcher, with these settings, would have banned it while reading these lines.
    pub would_ban: bool,
    /// Loopback, unspecified, multicast, link-local, inside `ignoreip` or one of this host's
    /// own addresses: never banned (the watcher's own rule, [`crate::ban::policy::ban_target`]).
    pub ignored: bool,
    pub first: Option<i64>,
    pub last: Option<i64>,
    pub rules: Vec<&'static str>,
}

/// Ambiguous lines that named the same candidates: one is usually the sender, hiding behind
/// the other (a bystander's address written into a field).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AmbiguousPair {
    /// One or two canonical addresses; `null` for a place that held no address (or a flood of
    /// places).
    pub candidates: [Option<String>; 2],
    pub lines: u64,
    pub rules: Vec<&'static str>,
}

/// Lines of one input that were not believed (crate::logs::provenance): never blamed on anyone.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SourceCount {
    pub file: String,
    #[serde(flatten)]
    pub counts: Counts,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Window {
    pub first: i64,
    pub last: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ScanReport {
    pub files: Vec<String>,
    pub lines: u64,
    /// Failure lines of any kind (with an address, without, ambiguous).
    pub matched: u64,
    pub with_address: u64,
    pub no_address: u64,
    pub ambiguous: u64,
    pub forged: u64,
    /// Earliest and latest timestamp among failure lines.
    pub window: Option<Window>,
    pub maxretry: u32,
    pub findtime_secs: u64,
    /// How many patched builds' tags were believed, and whether untagged tails were too.
    pub trusted_tags: usize,
    pub trust_untagged: bool,
    pub rules: Vec<RuleCount>,
    pub addresses: Vec<AddressCount>,
    /// Ambiguous lines per candidate pair, most lines first.
    pub ambiguous_pairs: Vec<AmbiguousPair>,
    /// Lines with failure text but no known frame: not counted, reported in `warnings`.
    pub unframed: u64,
    /// Per input: lines a remote party wrote to pass for Asterisk's (forged), and lines the
    /// logger cut (truncated) or glued to the next entry (glued). Totals below.
    pub sources: Vec<SourceCount>,
    pub forged_lines: u64,
    pub glued: u64,
    pub truncated: u64,
    /// Failures read right after a line whose sender could have written them.
    pub unproven: u64,
    pub warnings: Vec<String>,
}

#[derive(Default)]
struct AddrStats {
    failures: u64,
    first: Option<i64>,
    last: Option<i64>,
    rules: u16,
    would_ban: bool,
}

/// Accumulates what the lines say; feed it lines in log order.
pub struct Scanner<'a> {
    rec: &'a Recogniser,
    settings: &'a Settings,
    tracker: Tracker,
    one_count: crate::ban::one_count::OneCount,
    last_time: i64,
    lines: u64,
    rules: [RuleCount; Rule::ALL.len()],
    addrs: HashMap<IpAddr, AddrStats>,
    /// Ambiguous lines per (candidate, other candidate): count and rules.
    pairs: HashMap<(Option<IpAddr>, Option<IpAddr>), (u64, u16)>,
    window: Option<Window>,
    files: Vec<String>,
    warnings: Vec<String>,
    unframed: u64,
    unframed_first: Option<String>,
    /// Bytes still to come of a packet pjproject is dumping into the log: remote-written lines
    /// that are never read as Asterisk's (see [`Recogniser::packet_dump`]).
    in_packet: usize,
    /// The host's own addresses: never banned, as the watcher never bans them.
    local: Vec<IpAddr>,
    /// Line provenance of the input being read (one per input).
    prov: Provenance,
    /// Verdicts the provenance layer released, waiting to be recorded.
    released: Vec<Recognition>,
    sources: Vec<SourceCount>,
}

impl<'a> Scanner<'a> {
    pub fn new(rec: &'a Recogniser, settings: &'a Settings) -> Self {
        Scanner {
            rec,
            settings,
            one_count: crate::ban::one_count::OneCount::unbounded(),
            tracker: Tracker::new(
                settings.maxretry,
                settings.findtime.as_secs() as i64,
                1 << 22,
            ),
            last_time: 0,
            lines: 0,
            rules: Rule::ALL.map(|r| RuleCount {
                rule: r.name(),
                ..RuleCount::default()
            }),
            addrs: HashMap::new(),
            pairs: HashMap::new(),
            window: None,
            files: vec![],
            warnings: vec![],
            unframed: 0,
            unframed_first: None,
            in_packet: 0,
            local: vec![],
            prov: Provenance::default(),
            released: Vec::new(),
            sources: vec![],
        }
    }

    /// The host's own addresses ([`crate::firewall::host::local_addresses`] on a live system).
    pub fn with_local(mut self, local: Vec<IpAddr>) -> Self {
        self.local = local;
        self
    }

    fn never_banned(&self, addr: IpAddr) -> bool {
        policy::ban_target(addr, self.settings, &self.local).is_none()
    }

    /// One line, without its newline (an input of its own: call [`Scanner::end_input`] after
    /// the last).
    #[inline]
    pub fn line(&mut self, line: &[u8]) {
        self.lines += 1;
        if self.in_packet > 0 {
            self.in_packet = self.in_packet.saturating_sub(line.len() + 1);
            return;
        }
        let cand = self.rec.may_match(line);
        if cand {
            if let Some(n) = self.rec.packet_dump(line) {
                self.in_packet = n;
                return;
            }
        }
        self.judge(line, cand);
    }

    /// Through the recogniser (prefilter hits only) and line provenance; true when the line
    /// carries failure text inside a frame astpatch does not know.
    #[inline]
    fn judge(&mut self, line: &[u8], cand: bool) -> bool {
        if !cand {
            if self.prov.busy() {
                self.prov.line(
                    self.rec,
                    line,
                    false,
                    Recognition::NotFailure,
                    0,
                    &mut self.released,
                );
                self.record_released();
            }
            return false;
        }
        let (r, frame) = self.rec.recognise_framed(line);
        let unframed = frame.is_none();
        self.prov
            .line_framed(self.rec, line, true, r, frame, 0, &mut self.released);
        self.record_released();
        unframed
    }

    #[inline]
    fn record_released(&mut self) {
        if !self.released.is_empty() {
            self.record_all_released();
        }
    }

    fn record_all_released(&mut self) {
        let mut rel = std::mem::take(&mut self.released);
        for r in rel.drain(..) {
            self.record(r);
        }
        self.released = rel;
    }

    /// The input read line by line with [`Scanner::line`] ended: release what line provenance
    /// held and note its counts under `name`.
    pub fn end_input(&mut self, name: &str) {
        self.prov.flush(&mut self.released);
        self.record_released();
        let prov = std::mem::take(&mut self.prov);
        self.sources.push(SourceCount {
            file: name.to_owned(),
            counts: prov.counts(),
        });
        self.in_packet = 0;
    }

    pub fn warn(&mut self, w: String) {
        self.warnings.push(w);
    }

    /// Read every line of `reader` (named `name` in warnings). Read errors end this input with a
    /// warning; what was read counts.
    ///
    /// Searches whole blocks for the prefilter's literals and looks only at the lines around
    /// the hits, so the ~95% of lines that cannot be failures cost no per-line work at all.
    pub fn read<R: Read>(&mut self, reader: R, name: &str) {
        self.files.push(name.to_owned());
        let mut lines = LineReader::new(reader);
        loop {
            match lines.next_block() {
                Ok(Some(Block::Lines {
                    first_no,
                    lines: n,
                    text,
                    complete,
                })) => {
                    self.lines += n;
                    if !complete {
                        self.warnings.push(format!(
                            "{name}:{first_no}: last line has no newline (cut off mid-write?); scanned as it is"
                        ));
                    }
                    if let Some(offset) = self.block(text) {
                        if self.unframed_first.is_none() {
                            let no = first_no + crate::logs::read::count_newlines(&text[..offset]);
                            self.unframed_first = Some(format!("{name}:{no}"));
                        }
                    }
                }
                Ok(Some(Block::Overlong { no, len })) => {
                    self.lines += 1;
                    self.warnings.push(format!(
                        "{name}:{no}: line of {len} bytes skipped (longer than {} bytes)",
                        crate::logs::read::DEFAULT_MAX_LINE
                    ));
                }
                Ok(None) => break,
                Err(e) => {
                    self.warnings.push(format!(
                        "{name}: read error after line {}: {e}; the lines before it are counted",
                        lines.line_no()
                    ));
                    break;
                }
            }
        }
        self.end_input(name);
    }

    /// Whole lines (the last one may lack its newline); counts nothing but failures. Returns
    /// the offset of the first line that carries failure text inside a frame astpatch does not
    /// know, if any.
    fn block(&mut self, text: &[u8]) -> Option<usize> {
        let mut unframed = None;
        let mut pos = 0;
        if self.in_packet > 0 {
            match self.skip_packet(text, 0) {
                Some(p) => pos = p,
                None => return None,
            }
        }
        // Where the next prefilter hit is (text.len(): none), when known: lines before it
        // need no prefilter run of their own.
        let mut next_hit: Option<usize> = None;
        while pos < text.len() {
            // While line provenance holds a window every line is looked at; otherwise only
            // the lines around prefilter hits.
            let (start, end, cand) = if self.prov.busy() {
                let end = memchr::memchr(b'\n', &text[pos..]).map_or(text.len(), |p| pos + p);
                let hit = match next_hit {
                    Some(h) if h >= pos => h,
                    _ => {
                        let h = self
                            .rec
                            .find_candidate(&text[pos..])
                            .map_or(text.len(), |h| pos + h);
                        next_hit = Some(h);
                        h
                    }
                };
                (pos, end, hit <= end)
            } else {
                let Some(hit) = self.rec.find_candidate(&text[pos..]) else {
                    break;
                };
                let hit = pos + hit;
                let start = memchr::memrchr(b'\n', &text[..hit]).map_or(0, |p| p + 1);
                let end = memchr::memchr(b'\n', &text[hit..]).map_or(text.len(), |p| hit + p);
                (start, end, true)
            };
            let line = &text[start..end];
            if cand {
                if let Some(n) = self.rec.packet_dump(line) {
                    self.in_packet = n;
                    match self.skip_packet(text, end + 1) {
                        Some(p) => pos = p,
                        None => break,
                    }
                    continue;
                }
            }
            if self.judge(line, cand) {
                self.unframed += 1;
                unframed.get_or_insert(start);
            }
            pos = end + 1;
        }
        unframed
    }

    /// Step over the rest of a dumped packet starting at `from`: the offset of the first line
    /// after it, or `None` when it runs past this block (the rest is skipped in the next). A
    /// count that ends mid-line (pjproject cut the packet short) skips to that line's end.
    fn skip_packet(&mut self, text: &[u8], from: usize) -> Option<usize> {
        let left = text.len().saturating_sub(from);
        if self.in_packet >= left {
            self.in_packet -= left;
            return None;
        }
        let target = from + self.in_packet;
        self.in_packet = 0;
        if target == 0 || text[target - 1] == b'\n' {
            return Some(target);
        }
        memchr::memchr(b'\n', &text[target..]).map(|p| target + p + 1)
    }

    fn record(&mut self, r: Recognition) {
        let Some(rule) = r.rule() else { return };
        let rc = &mut self.rules[rule as usize];
        match r {
            Recognition::Failure { .. } => rc.failures += 1,
            Recognition::NoAddress { .. } => rc.no_address += 1,
            Recognition::Ambiguous { pair, .. } => {
                rc.ambiguous += 1;
                let key = match pair {
                    Some((a, Some(b))) => (Some(a.min(b)), Some(a.max(b))),
                    Some((a, None)) => (Some(a), None),
                    None => (None, None),
                };
                let e = self.pairs.entry(key).or_default();
                e.0 += 1;
                e.1 |= 1 << rule as u16;
            }
            Recognition::Forged { .. } => rc.forged += 1,
            Recognition::NotFailure => {}
        }
        if let Some(t) = r.time() {
            self.last_time = t;
            self.window = Some(match self.window.take() {
                None => Window { first: t, last: t },
                Some(w) => Window {
                    first: w.first.min(t),
                    last: w.last.max(t),
                },
            });
        }
        if let Recognition::Failure { addr, time, .. } = r {
            let now = time.unwrap_or(self.last_time);
            let ignored = self.never_banned(addr);
            let s = self.addrs.entry(addr).or_default();
            s.failures += 1;
            s.rules |= 1 << rule as u16;
            if let Some(t) = time {
                s.first = Some(s.first.map_or(t, |f| f.min(t)));
                s.last = Some(s.last.map_or(t, |l| l.max(t)));
            }
            // One attempt reported in messages and as a security event counts once.
            let ch = crate::ban::one_count::Channel::of(rule);
            if !ignored && self.one_count.first_report(addr, ch, now) {
                if let Verdict::Ban { .. } = self.tracker.record(addr, now) {
                    s.would_ban = true;
                }
            }
        }
    }

    pub fn finish(mut self) -> ScanReport {
        if self.prov.busy() || self.prov.counts().total() > 0 {
            self.end_input("(lines)");
        }
        if let Some(first) = &self.unframed_first {
            self.warnings.push(format!(
                "{} lines carry failure text but start with no Asterisk log frame astpatch knows \
                 (first at {first}); they were not counted. A custom logger.conf format or a \
                 relay that rewrites lines? See README, Scanning logs",
                self.unframed
            ));
        }
        let mut addresses: Vec<AddressCount> = self
            .addrs
            .into_iter()
            .map(|(a, s)| AddressCount {
                address: a.to_string(),
                failures: s.failures,
                would_ban: s.would_ban,
                ignored: policy::ban_target(a, self.settings, &self.local).is_none(),
                first: s.first,
                last: s.last,
                rules: Rule::ALL
                    .iter()
                    .filter(|&&r| s.rules & (1 << r as u16) != 0)
                    .map(|r| r.name())
                    .collect(),
            })
            .collect();
        addresses.sort_by(|a, b| {
            b.failures.cmp(&a.failures).then_with(|| {
                let pa: Option<IpAddr> = a.address.parse().ok();
                pa.cmp(&b.address.parse().ok())
            })
        });
        let mut ambiguous_pairs: Vec<AmbiguousPair> = self
            .pairs
            .into_iter()
            .map(|((a, b), (lines, rules))| AmbiguousPair {
                candidates: [a.map(|a| a.to_string()), b.map(|b| b.to_string())],
                lines,
                rules: Rule::ALL
                    .iter()
                    .filter(|&&r| rules & (1 << r as u16) != 0)
                    .map(|r| r.name())
                    .collect(),
            })
            .collect();
        ambiguous_pairs.sort_by(|x, y| {
            y.lines
                .cmp(&x.lines)
                .then_with(|| x.candidates.cmp(&y.candidates))
        });
        let rules: Vec<RuleCount> = self
            .rules
            .into_iter()
            .filter(|r| r.failures + r.no_address + r.ambiguous + r.forged > 0)
            .collect();
        let sum = |f: fn(&RuleCount) -> u64| rules.iter().map(f).sum::<u64>();
        let (with_address, no_address, ambiguous, forged) = (
            sum(|r| r.failures),
            sum(|r| r.no_address),
            sum(|r| r.ambiguous),
            sum(|r| r.forged),
        );
        let mut all = Counts::default();
        for sc in &self.sources {
            all.add(&sc.counts);
        }
        ScanReport {
            files: self.files,
            lines: self.lines,
            matched: with_address + no_address + ambiguous + forged,
            with_address,
            no_address,
            ambiguous,
            forged,
            window: self.window,
            maxretry: self.settings.maxretry,
            findtime_secs: self.settings.findtime.as_secs(),
            trusted_tags: self.rec.options().known_tags.len(),
            trust_untagged: self.rec.options().trust_untagged,
            rules,
            addresses,
            ambiguous_pairs,
            unframed: self.unframed,
            sources: self.sources,
            forged_lines: all.forged,
            glued: all.glued,
            truncated: all.truncated,
            unproven: all.unproven,
            warnings: self.warnings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::frame::TimeContext;
    use crate::logs::recognise::RecogniseOptions;

    fn scan(text: &str, settings: &Settings) -> ScanReport {
        let rec = Recogniser::with_time_context(
            RecogniseOptions {
                known_tags: settings.tags.clone(),
                trust_untagged: settings.patched == crate::settings::Patched::True,
                tails_off: settings.patched == crate::settings::Patched::False,
            },
            TimeContext::utc(1_795_996_800),
        );
        let mut s = Scanner::new(&rec, settings);
        s.read(text.as_bytes(), "t.log");
        s.finish()
    }

    fn reg(min: u32, sec: u32, addr: &str) -> String {
        format!(
            "[2026-11-24 10:{min:02}:{sec:02}] NOTICE[1] chan_sip.c: Registration from '<sip:1@h>' failed for '{addr}:5060' - Wrong password\n"
        )
    }

    /// A reader that fails after handing out `ok` bytes, like a file on a vanished NFS mount.
    struct Vanishing {
        data: Vec<u8>,
        pos: usize,
        ok: usize,
    }

    impl Read for Vanishing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.pos >= self.ok {
                return Err(std::io::Error::other("stale file handle"));
            }
            let n = buf.len().min(self.ok - self.pos).min(7);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    /// Scan says "would ban" only where the watcher would: never the host's own address, and
    /// a /64 that would take the host in narrows to the attacker's address.
    #[test]
    fn the_hosts_own_addresses_are_never_banned_as_in_the_watcher() {
        let settings = Settings {
            maxretry: 2,
            ipv6_prefix: Some(64),
            ..Settings::default()
        };
        let rec = Recogniser::with_time_context(
            RecogniseOptions::default(),
            TimeContext::utc(1_795_996_800),
        );
        let pjsip = |a: &str| {
            format!(
                "[2026-11-24 10:11:12] NOTICE[42] res_pjsip/pjsip_distributor.c: Request 'REGISTER' from '<sip:1@h>' failed for '{a}:5060' (callid: c) - No matching endpoint found\n"
            )
        };
        let text = [
            pjsip("203.0.113.1"),
            pjsip("203.0.113.1"),
            pjsip("[2001:db8::7]"),
            pjsip("[2001:db8::7]"),
        ]
        .concat();
        let local = vec![
            "203.0.113.1".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
        ];
        let mut s = Scanner::new(&rec, &settings).with_local(local);
        s.read(text.as_bytes(), "t.log");
        let r = s.finish();
        let get = |a: &str| r.addresses.iter().find(|x| x.address == a).unwrap();
        assert!(!get("203.0.113.1").would_ban && get("203.0.113.1").ignored);
        assert!(get("2001:db8::7").would_ban && !get("2001:db8::7").ignored);
    }

    #[test]
    fn a_read_error_keeps_what_was_read_and_says_where() {
        let log = reg(0, 1, "203.0.113.7") + &reg(0, 2, "203.0.113.7") + &reg(0, 3, "203.0.113.7");
        let ok = log.len() - 10;
        let settings = Settings::default();
        let rec = Recogniser::with_time_context(RecogniseOptions::default(), TimeContext::utc(0));
        let mut s = Scanner::new(&rec, &settings);
        s.read(
            Vanishing {
                data: log.into_bytes(),
                pos: 0,
                ok,
            },
            "m",
        );
        let r = s.finish();
        assert_eq!(r.lines, 2);
        assert_eq!(r.addresses[0].failures, 2);
        assert_eq!(r.warnings.len(), 1);
        assert!(
            r.warnings[0].starts_with("m: read error after line 2: stale file handle"),
            "{:?}",
            r.warnings
        );
    }

    #[test]
    fn would_ban_follows_maxretry_findtime_and_ignoreip() {
        let mut log = String::new();
        // 203.0.113.7: five failures within a minute -> banned.
        for s in 0..5 {
            log += &reg(0, s, "203.0.113.7");
        }
        // 198.51.100.9: five failures, each 4 minutes apart -> never 5 within 10 minutes.
        for m in 0..5 {
            log += &reg(m * 4, 30, "198.51.100.9");
        }
        // 10.1.2.3: ignored by settings.
        for s in 0..6 {
            log += &reg(1, s, "10.1.2.3");
        }
        log +=
            "[2026-11-24 10:30:00] NOTICE[1] chan_sip.c: Failed to authenticate device <sip:1@h>\n";
        log += "not a failure\n";
        log += "Nov 24 pbx: Registration from '<sip:1@h>' failed for '203.0.113.99' - Wrong password\n";
        let mut settings = Settings::default();
        settings.ignoreip.push("10.0.0.0/8".parse().unwrap());
        let r = scan(&log, &settings);
        assert_eq!(r.lines, 19);
        assert_eq!(r.unframed, 1);
        assert!(
            r.warnings[0].contains("(first at t.log:19)"),
            "{:?}",
            r.warnings
        );
        assert_eq!(r.matched, 17);
        assert_eq!(r.no_address, 1);
        let by = |a: &str| r.addresses.iter().find(|x| x.address == a).unwrap().clone();
        assert!(by("203.0.113.7").would_ban);
        assert_eq!(by("198.51.100.9").failures, 5);
        assert!(!by("198.51.100.9").would_ban);
        assert!(by("10.1.2.3").ignored && !by("10.1.2.3").would_ban);
        assert_eq!(r.addresses[0].address, "10.1.2.3");
        let w = r.window.unwrap();
        assert_eq!(w.last - w.first, 30 * 60);
    }
}
