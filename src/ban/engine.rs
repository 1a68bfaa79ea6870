//! The watcher's engine: recognised failure → tracker → durable state → firewall, plus expiry
//! on time, pick-up of `astpatch ban`/`unban` made by others, and reconciliation at start.
//! No loop and no clock in here: the caller feeds lines and ticks with `now`, so the logic is
//! tested without sleeping; `cli::watch` owns the loop, the files and the signals.
use std::io::Write;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::ban::metrics::Metrics;
use crate::ban::policy;
use crate::ban::state::{self, Ban, State};
use crate::ban::tracker::{Tracker, Verdict};
use crate::error::Result;
use crate::firewall::Firewall;
use crate::logs::provenance::{Counts, Provenance};
use crate::logs::recognise::{PacketDumpSkip, RecogniseOptions, Recogniser, Recognition, Rule};
use crate::patch::tag::Tag;
use crate::settings::Settings;

/// Addresses tracked at once before the least recent are evicted (bounded memory: the tracker
/// costs about 36 bytes per slot plus table overhead).
pub const MAX_TRACKED: usize = 500_000;

/// Bans decided before they are written and applied as one batch even within one read.
pub const BATCH_MAX: usize = 20_000;

/// True when the periodic firewall check is due. A clock that went backwards makes it due
/// at once (and restarts the count) rather than stalling the check until it catches up.
pub fn recheck_due(last: i64, now: i64, every: i64) -> bool {
    now < last || now.saturating_sub(last) >= every
}

/// What `reconcile` found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reconciled {
    pub active: usize,
    pub expired: usize,
    pub readded: usize,
    pub removed_unknown: usize,
    pub adopted_from_kernel: usize,
}

/// Seconds between two writes of the metrics file.
pub const METRICS_EVERY: i64 = 5;

/// Seconds between two looks for new tags prompted by unknown ones.
pub const RELEARN_EVERY: i64 = 5;

/// Seconds between two reports of a log file's forged, glued and truncated lines: an attack
/// writes thousands, and one line a minute says as much.
pub const REPORT_EVERY: i64 = 60;

/// What the engine keeps per log file.
#[derive(Default)]
struct FileState {
    /// A raw SIP packet pjproject is dumping into it. Its lines are written by the remote
    /// party — whole forged log lines included — so none of them is read.
    dump: PacketDumpSkip,
    /// Line provenance of the current file (crate::logs::provenance).
    prov: Provenance,
    /// Counts of the file's earlier incarnations (before a rotation or truncation).
    base: Counts,
    /// Counts last reported, and when.
    said: Counts,
    said_at: Option<i64>,
}

impl FileState {
    fn counts(&self) -> Counts {
        let mut c = self.base;
        c.add(&self.prov.counts());
        c
    }
}

pub struct Engine {
    settings: Settings,
    recogniser: Recogniser,
    tag_source: Option<Box<dyn FnMut() -> Vec<Tag> + Send>>,
    last_relearn: i64,
    forged: u64,
    metrics: Metrics,
    metrics_at: i64,
    metrics_failing: bool,
    /// Per log file: packet dumps and line provenance.
    files: std::collections::HashMap<std::path::PathBuf, FileState>,
    /// Verdicts line provenance released, waiting to be acted on.
    released: Vec<Recognition>,
    tracker: Tracker,
    /// None in report-only mode (no `--ban`): nothing is recorded or changed.
    state: Option<State>,
    fw: Option<Box<dyn Firewall>>,
    local: Vec<IpAddr>,
    /// False on a host without IPv6: IPv6 addresses are never banned (or reported).
    ipv6: bool,
    /// The host's addresses now: they change after start (DHCP, IPv6 temporary addresses
    /// rotating daily), so they are looked up again before a ban, at most once a second.
    local_now: fn() -> Vec<IpAddr>,
    local_seen: (i64, Vec<IpAddr>),
    from_start: bool,
    pub total_failed: u64,
    /// Bans the firewall refused; retried on every tick.
    retry: Vec<(IpNet, Option<i64>)>,
    /// Bans decided, not yet recorded and applied ([`Engine::flush`]).
    pending: Vec<Ban>,
    pending_nets: std::collections::HashSet<IpNet>,
    /// When a journal write failure was last said.
    journal_said: Option<i64>,
    /// stats.json could not be written last time (said once).
    stats_failing: bool,
    compact_failed_at: i64,
    /// `<state_dir>/health.json`, written in place (it needs no new disk space).
    health: Option<state::HealthFile>,
    health_said: Option<state::Health>,
    /// Followed logs that cannot be read, with why (set by the caller).
    unreadable: Vec<(std::path::PathBuf, String)>,
    /// The current line is a replay (read from before the watcher started).
    replaying: bool,
    last_second: i64,
    last_expire: i64,
    recheck_every: i64,
    last_recheck: i64,
    evicted_said: u64,
    /// Counters last written to stats.json, and when.
    published: Option<(usize, u64, Counts)>,
    published_at: i64,
    /// Pairs a module's line with the security event for the same attempt.
    one_count: crate::ban::one_count::OneCount,
    /// The AMI link as `status` shows it (None: no `[ami]`).
    ami_link: Option<String>,
    /// Logged in to AMI and reading security events: the security log's events are the same
    /// ones, so they are not counted a second time.
    events_live: bool,
    out: Box<dyn Write + Send>,
    /// Told after each ban is recorded (the fleet thread's nudge); must not block.
    on_ban: Option<Box<dyn FnMut() + Send>>,
}

impl Engine {
    /// `state`/`fw` are Some to ban, None to only report what would be banned.
    /// The chan_sip tails believed are those tagged with `settings.tags` (and untagged ones
    /// with `patched = true`); give it what [`crate::ban::trust::decide`] found with
    /// [`Engine::set_tail_trust`].
    pub fn new(
        settings: Settings,
        state: Option<State>,
        fw: Option<Box<dyn Firewall>>,
        local: Vec<IpAddr>,
        from_start: bool,
        out: Box<dyn Write + Send>,
    ) -> Engine {
        let mut recogniser = Recogniser::new(RecogniseOptions {
            known_tags: settings.tags.clone(),
            trust_untagged: settings.patched == crate::settings::Patched::True,
            tails_off: settings.patched == crate::settings::Patched::False,
        });
        recogniser.set_syslog_idents(&settings.syslog_ident);
        recogniser.set_dialplan_rejections(settings.dialplan_rejections);
        let tracker = Tracker::new(
            settings.maxretry,
            settings.findtime.as_secs() as i64,
            MAX_TRACKED,
        );
        // The kernel is compared with the state while running: an outside `iptables -F`, `nft
        // flush ruleset`, `ipset flush` or a deleted INPUT hook would otherwise leave bans
        // missing until a restart.
        let recheck_every = (settings.firewall_check.as_secs() as i64).max(1);
        Engine {
            settings,
            recogniser,
            tag_source: None,
            last_relearn: i64::MIN,
            forged: 0,
            metrics: Metrics::default(),
            metrics_at: i64::MIN,
            metrics_failing: false,
            files: std::collections::HashMap::new(),
            released: Vec::new(),
            tracker,
            state,
            ipv6: fw.as_ref().is_none_or(|f| f.ipv6()),
            fw,
            local,
            local_now: crate::firewall::host::local_addresses,
            local_seen: (i64::MIN, vec![]),
            from_start,
            total_failed: 0,
            retry: vec![],
            pending: vec![],
            pending_nets: Default::default(),
            journal_said: None,
            stats_failing: false,
            compact_failed_at: i64::MIN,
            health: None,
            health_said: None,
            unreadable: vec![],
            replaying: false,
            last_second: i64::MIN,
            last_expire: i64::MIN,
            recheck_every,
            last_recheck: i64::MIN,
            evicted_said: 0,
            published: None,
            published_at: i64::MIN,
            one_count: Default::default(),
            ami_link: None,
            events_live: false,
            out,
            on_ban: None,
        }
    }

    /// Called after every ban recorded in the journal (the fleet pushes it; it must not
    /// block: the log loop never waits on the network).
    pub fn set_on_ban(&mut self, f: Box<dyn FnMut() + Send>) {
        self.on_ban = Some(f);
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Take new settings (SIGHUP) and say what changed. What only a restart can change (the
    /// logs followed, the backend, the state dir) is kept as it is; new maxretry or findtime
    /// start the failure counts afresh. The caller sets the tail trust again.
    pub fn reload(&mut self, mut new: Settings) -> Vec<String> {
        let mut notes = vec![];
        let old = &self.settings;
        if new.logs != old.logs {
            notes.push("the logs followed change only with a restart; keeping the old list".into());
            new.logs = old.logs.clone();
        }
        if new.backend != old.backend {
            notes.push(format!(
                "the backend changes only with a restart; keeping {}",
                old.backend
            ));
            new.backend = old.backend;
        }
        if new.state_dir != old.state_dir {
            notes.push(format!(
                "state_dir changes only with a restart; keeping {}",
                old.state_dir.display()
            ));
            new.state_dir = old.state_dir.clone();
        }
        if new.ami != old.ami {
            notes.push("[ami] changes only with a restart; keeping the old connection".into());
            new.ami = old.ami.clone();
        }
        if new.crowdsec != old.crowdsec {
            // The fleet thread took its settings at start (and ignoreip with them).
            notes.push("[crowdsec] changes only with a restart; keeping the old link".into());
            new.crowdsec = old.crowdsec.clone();
        }
        if new.maxretry != old.maxretry || new.findtime != old.findtime {
            notes.push(format!(
                "maxretry {} within {}: failure counts start afresh",
                new.maxretry,
                crate::duration::format(new.findtime)
            ));
            self.tracker = Tracker::new(new.maxretry, new.findtime.as_secs() as i64, MAX_TRACKED);
        }
        self.recheck_every = (new.firewall_check.as_secs() as i64).max(1);
        self.settings = new;
        notes
    }

    /// Which chan_sip tails are believed from now on.
    pub fn set_tail_trust(&mut self, opts: RecogniseOptions) {
        self.recogniser = Recogniser::new(opts);
        self.recogniser
            .set_syslog_idents(&self.settings.syslog_ident);
        self.recogniser
            .set_dialplan_rejections(self.settings.dialplan_rejections);
    }

    /// Where to learn the tags again when a line carries one we do not know: a module built
    /// and loaded while we run has a new tag. Asked at most once every [`RELEARN_EVERY`]
    /// seconds, so forged lines cannot make us read modules in a loop.
    pub fn set_tag_source(&mut self, source: Box<dyn FnMut() -> Vec<Tag> + Send>) {
        self.tag_source = Some(source);
    }

    /// True when the known tags changed.
    fn relearn_tags(&mut self, now: i64) -> bool {
        if now.saturating_sub(self.last_relearn) < RELEARN_EVERY {
            return false;
        }
        let Some(source) = self.tag_source.as_mut() else {
            return false;
        };
        self.last_relearn = now;
        let mut tags = source();
        for t in &self.settings.tags {
            if !tags.contains(t) {
                tags.push(*t);
            }
        }
        let known = &self.recogniser.options().known_tags;
        let new: Vec<Tag> = tags
            .iter()
            .filter(|t| !known.contains(t))
            .copied()
            .collect();
        if new.is_empty() {
            return false;
        }
        let mut all = known.clone();
        all.extend(&new);
        self.recogniser.set_known_tags(all);
        let names: Vec<&str> = new.iter().map(Tag::as_str).collect();
        self.say(format_args!(
            "chan_sip tails of build {} are believed from now on (a newly installed module)",
            names.join(", ")
        ));
        true
    }

    /// Write the metrics file (setting `metrics_file`) every [`METRICS_EVERY`] seconds. A
    /// failed write is a warning, said once until it works again: banning goes on.
    fn write_metrics(&mut self, now: i64) {
        let Some(path) = self.settings.metrics_file.clone() else {
            return;
        };
        if now.saturating_sub(self.metrics_at) < METRICS_EVERY {
            return;
        }
        self.metrics_at = now;
        self.metrics.active_bans = self
            .state
            .as_ref()
            .map_or(0, |st| st.active_bans(now).len());
        self.metrics.sources = self
            .settings
            .logs
            .iter()
            .map(|l| (l.display().to_string(), std::fs::File::open(l).is_ok()))
            .collect();
        let text = self.metrics.render(now);
        match crate::atomic::write(&path, text.as_bytes(), Some(0o644)) {
            Ok(()) => self.metrics_failing = false,
            Err(e) if !self.metrics_failing => {
                self.metrics_failing = true;
                self.say(format_args!(
                    "warning: cannot write metrics to {}: {e}; banning goes on",
                    path.display()
                ));
            }
            Err(_) => {}
        }
    }

    /// What the watcher has counted (also what the metrics file shows).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// chan_sip lines seen with a tag no known build has.
    pub fn forged(&self) -> u64 {
        self.forged
    }

    /// Whether the host has IPv6 (taken from the firewall when there is one; report-only
    /// mode is told here).
    pub fn set_ipv6(&mut self, on: bool) {
        self.ipv6 = on;
    }

    /// Seconds between firewall checks (at least 1).
    pub fn set_recheck_every(&mut self, secs: i64) {
        self.recheck_every = secs.max(1);
    }

    fn say(&mut self, msg: std::fmt::Arguments) {
        let _ = writeln!(self.out, "{msg}");
        let _ = self.out.flush();
    }

    /// Bring the kernel in line with the state: adopt the kernel's bans if the state was
    /// corrupt, drop expired bans, then put exactly the active bans in place in one batch
    /// (re-adding what is missing, removing objects of ours the state does not know).
    pub fn reconcile(&mut self, now: i64) -> Result<Reconciled> {
        let (Some(st), Some(fw)) = (self.state.as_mut(), self.fw.as_mut()) else {
            return Ok(Reconciled::default());
        };
        let mut r = Reconciled::default();
        let kernel = fw.list().unwrap_or_default();
        if let Some(aside) = st.recovered_from.take() {
            let until = now + self.settings.bantime.as_secs() as i64;
            for net in &kernel {
                st.record_ban(Ban {
                    net: *net,
                    until: Some(until),
                    reason: "recovered-from-firewall".into(),
                    failures: 0,
                    banned_at: now,
                })?;
            }
            r.adopted_from_kernel = kernel.len();
            let msg = format!(
                "state was corrupt (kept as {}); adopted the {} bans the firewall holds, each for bantime",
                aside.display(),
                kernel.len()
            );
            self.say(format_args!("{msg}"));
        }
        let (Some(st), Some(fw)) = (self.state.as_mut(), self.fw.as_mut()) else {
            unreachable!()
        };
        let mut journal_err = None;
        for net in st.expired(now) {
            // Applied in memory even when the journal cannot be written (kept and retried).
            if let Err(e) = st.record_unban(net, "expired", now) {
                journal_err = Some(e.to_string());
            }
            r.expired += 1;
        }
        let active = held_by(&**fw, st.active_bans(now));
        r.active = active.len();
        r.readded = active.iter().filter(|(n, _)| !kernel.contains(n)).count();
        r.removed_unknown = kernel
            .iter()
            .filter(|n| !active.iter().any(|(a, _)| a == *n))
            .count();
        fw.restore(&active)?;
        // A full disk must not keep the watcher from starting: compaction waits for room.
        let compacted = if st.unwritten() == 0 {
            st.compact(now).err().map(|e| e.to_string())
        } else {
            None
        };
        self.last_recheck = now;
        if let Some(e) = compacted {
            self.compact_failed_at = now;
            self.say(format_args!(
                "warning: cannot compact the ban journal: {e}; it keeps growing until it can"
            ));
        }
        if let Some(e) = journal_err {
            self.journal_failing(now, &e);
        }
        Ok(r)
    }

    /// One line of the log at `path`, in file order: skips pjproject's packet dumps, then
    /// judges the line through the recogniser and the file's line provenance. Call
    /// [`Engine::file_restarted`] when the file is rotated or truncated. Returns the network
    /// banned (or that would be banned) on this call, if any: a failure held in a provenance
    /// window is acted on when the window closes (a later line, or [`Engine::tick`]).
    pub fn on_log_line(&mut self, path: &std::path::Path, line: &[u8], now: i64) -> Option<IpNet> {
        self.on_log_line_as(path, line, false, now)
    }

    /// [`Engine::on_log_line`] for a line that may be a replay: one written while no watcher
    /// ran (read on resuming), judged by its own date like `--from-start`.
    pub fn on_log_line_as(
        &mut self,
        path: &std::path::Path,
        line: &[u8],
        replay: bool,
        now: i64,
    ) -> Option<IpNet> {
        self.replaying = replay;
        // Looked up by reference: no allocation per line once the file is known.
        if !self.files.contains_key(path) {
            self.files.insert(path.to_path_buf(), FileState::default());
        }
        self.metrics.lines_read += 1;
        self.metrics.last_line_at = Some(now);
        let fs = self.files.get_mut(path).expect("inserted above");
        if fs.dump.skip(&self.recogniser, line) {
            return None;
        }
        let cand = self.recogniser.may_match(line);
        if !cand && !fs.prov.busy() {
            return None;
        }
        let (mut r, mut frame) = (Recognition::NotFailure, None);
        if cand {
            (r, frame) = self.recogniser.recognise_framed(line);
            if matches!(r, Recognition::Forged { .. }) && self.relearn_tags(now) {
                (r, frame) = self.recogniser.recognise_framed(line);
            }
        }
        let fs = self.files.get_mut(path).expect("inserted above");
        fs.prov.line_framed(
            &self.recogniser,
            line,
            cand,
            r,
            frame,
            now,
            &mut self.released,
        );
        self.act_on_released(now)
    }

    fn act_on_released(&mut self, now: i64) -> Option<IpNet> {
        if self.released.is_empty() {
            return None;
        }
        let mut rel = std::mem::take(&mut self.released);
        let mut banned = None;
        for r in rel.drain(..) {
            if let Some(n) = self.on_recognition(r, now, true) {
                banned = Some(n);
            }
        }
        self.released = rel;
        banned
    }

    /// One security event read over AMI ([`crate::ami`]). Returns the network banned (or that
    /// would be), if any.
    pub fn on_ami_event(&mut self, v: crate::ami::security::Verdict, now: i64) -> Option<IpNet> {
        use crate::ami::security::Verdict;
        match v {
            Verdict::Failure { addr, time, .. } => {
                let r = Recognition::Failure {
                    rule: Rule::SecurityEvent,
                    addr,
                    time,
                };
                self.on_recognition(r, now, false)
            }
            Verdict::Refused(why) => {
                self.forged += 1;
                self.metrics.forged[Rule::SecurityEvent as usize] += 1;
                self.say(format_args!(
                    "warning: AMI: an event was refused ({why}); never blamed on anyone"
                ));
                None
            }
            Verdict::Untrusted { .. } | Verdict::NoAddress { .. } | Verdict::NotFailure => None,
        }
    }

    /// The AMI link changed: `live` when security events flow, `line` what `status` shows.
    pub fn set_ami_link(&mut self, live: bool, line: String) {
        self.events_live = live;
        self.ami_link = Some(line);
        self.published = None;
    }

    /// The file at `path` starts afresh (opened, rotated, truncated): no dump is in progress,
    /// and what its line provenance held is acted on as read.
    pub fn file_restarted(&mut self, path: &std::path::Path) {
        if let Some(fs) = self.files.get_mut(path) {
            fs.prov.flush(&mut self.released);
            fs.base = fs.counts();
            fs.prov = Provenance::default();
            fs.dump = PacketDumpSkip::default();
        }
        let now = crate::logs::frame::now();
        self.act_on_released(now);
    }

    /// Lines of `path` not believed so far.
    pub fn not_believed(&self, path: &std::path::Path) -> Counts {
        self.files
            .get(path)
            .map(FileState::counts)
            .unwrap_or_default()
    }

    /// Lines not believed, all files.
    pub fn not_believed_total(&self) -> Counts {
        let mut c = Counts::default();
        for fs in self.files.values() {
            c.add(&fs.counts());
        }
        c
    }

    /// One log line of an unnamed file, its ban (if any) applied at once (tests, replays).
    pub fn on_line(&mut self, line: &[u8], now: i64) -> Option<IpNet> {
        let r = self.on_log_line(std::path::Path::new(""), line, now);
        self.flush(now);
        r
    }

    /// One verdict, in line order. Returns the network banned (or that would be), if any.
    fn on_recognition(&mut self, r: Recognition, now: i64, from_log: bool) -> Option<IpNet> {
        let (rule, addr, time) = match r {
            Recognition::Failure { rule, addr, time } => (rule, addr, time),
            Recognition::Forged { rule, .. } => {
                self.forged += 1;
                self.metrics.forged[rule as usize] += 1;
                return None;
            }
            _ => return None,
        };
        // While AMI delivers the security events, the security log's copies of them are not
        // counted again (one failed attempt, one count).
        if from_log && self.events_live && rule == Rule::SecurityEvent {
            return None;
        }
        // An IPv4-mapped address is the IPv4 host it names: ignoreip and the host's own
        // addresses are written as IPv4, and the ban is too (`policy::ban_net`).
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        // A host without IPv6 receives no IPv6 traffic: such a line (an old log replayed, a
        // proxy's report) is nothing to ban.
        if addr.is_ipv6() && !self.ipv6 {
            return None;
        }
        if self.settings.is_ignored(addr) || self.local.contains(&addr) {
            return None;
        }
        // Every failure counts at its own time, so a ban lasts from the last failure however
        // late the line was read. Replayed lines (--from-start, or the part of a log written
        // while no watcher ran) are taken at their word; a date ahead of the clock counts as
        // now. A live line's date is believed only within findtime of the clock: one further
        // off says the clock or the time zone is wrong, not that the failure is old, and
        // must not stop live banning.
        let replay = self.from_start || self.replaying;
        let t = match time {
            Some(t) if replay => t.min(now),
            Some(t)
                if t <= now && t >= now.saturating_sub(self.settings.findtime.as_secs() as i64) =>
            {
                t
            }
            _ => now,
        };
        // The same attempt reported by its module and as a security event counts once.
        let ch = crate::ban::one_count::Channel::of(rule);
        if !self
            .one_count
            .first_report(addr, ch, time.unwrap_or(t).min(now))
        {
            return None;
        }
        self.total_failed += 1;
        self.metrics.failures[rule as usize] += 1;
        let failures = match self.tracker.record(addr, t) {
            Verdict::Counting { .. } => return None,
            Verdict::Ban { failures } => failures,
        };
        if self.local_seen.0 != now {
            self.local_seen = (now, (self.local_now)());
        }
        let local: Vec<IpAddr> = self
            .local
            .iter()
            .chain(&self.local_seen.1)
            .copied()
            .collect();
        let net = policy::ban_target(addr, &self.settings, &local)?;
        // A replayed ban lasts from its last failure, as it would have live: one that would
        // already have ended is not made.
        if replay && t < now {
            let len = policy::ban_length(
                &self.settings,
                self.state.as_ref().map_or(0, |st| st.previous_bans(&net)),
            );
            let ended = t.saturating_add(len.as_secs() as i64);
            if ended <= now {
                self.say(format_args!(
                    "not banning {net}: {failures} failures ({rule}) up to {}, but that ban would have ended at {}",
                    crate::logs::frame::format_utc(t),
                    crate::logs::frame::format_utc(ended)
                ));
                return None;
            }
        }
        let Some(st) = self.state.as_mut() else {
            self.say(format_args!(
                "would ban {net}: {failures} failures ({rule}); run with --ban to ban"
            ));
            return Some(net);
        };
        if self.pending_nets.contains(&net) {
            return None; // already in this batch (another address of the same /64)
        }
        let in_force = |st: &State| {
            st.get(&net)
                .is_some_and(|b| b.until.is_none_or(|u| u > now))
        };
        // Our memory may be older than an `astpatch unban` made a moment ago (it is read on
        // the next tick): look at the journal again before swallowing these failures.
        if in_force(st) && (st.refresh().is_err() || in_force(st)) {
            return None; // already banned (e.g. another address of the same /64)
        }
        let len = policy::ban_length(&self.settings, st.previous_bans(&net));
        // Stamped with the failure's own time: a backlog read late does not lengthen it.
        let until = t + len.as_secs() as i64;
        self.pending.push(Ban {
            net,
            until: Some(until),
            reason: rule.to_string(),
            failures,
            banned_at: t,
        });
        self.pending_nets.insert(net);
        if self.pending.len() >= BATCH_MAX {
            self.flush(now);
        }
        Some(net)
    }

    /// Keep `<state_dir>/health.json` (journal trouble, unreadable logs) for `status` and
    /// `verify`. Opened by the caller at start, while space is sure to be there.
    pub fn set_health_file(&mut self, h: state::HealthFile) {
        self.health = Some(h);
    }

    /// The followed logs that cannot be read now, with why (empty when all can).
    pub fn set_unreadable(&mut self, logs: Vec<(std::path::PathBuf, String)>) {
        self.unreadable = logs;
    }

    fn publish_health(&mut self, now: i64) {
        let Some(hf) = &self.health else { return };
        let st = self.state.as_ref();
        let h = state::Health {
            journal_error: st.and_then(|s| s.journal_error().map(str::to_owned)),
            unwritten: st.map_or(0, State::unwritten),
            unreadable: self
                .unreadable
                .iter()
                .map(|(p, e)| state::Unreadable {
                    path: p.clone(),
                    error: e.clone(),
                })
                .collect(),
            updated_at: 0,
        };
        // Written when something changed, and once a minute so readers see it is current.
        let same = self.health_said.as_ref() == Some(&h);
        if same && now.saturating_sub(hf.written_at()) < 60 {
            return;
        }
        let h2 = state::Health {
            updated_at: now,
            ..h.clone()
        };
        if hf.write(&h2, now).is_ok() {
            self.health_said = Some(h);
        }
    }

    /// Bans decided but not yet recorded and applied.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Record every ban decided since the last flush in one journal write (fsynced before the
    /// firewall is touched: a crash loses none), then apply them in one firewall batch. The
    /// caller flushes after each read of the logs; [`Engine::tick`] flushes too.
    pub fn flush(&mut self, now: i64) {
        if self.pending.is_empty() {
            return;
        }
        let bans = std::mem::take(&mut self.pending);
        self.pending_nets.clear();
        let st = self.state.as_mut().expect("pending bans imply a state");
        let held = st.unwritten();
        match st.record_bans(bans.clone()) {
            // The firewall still bans; the records stay in memory and are written by the
            // first append that works (tick retries).
            Err(e) => self.journal_failing(now, &e.to_string()),
            Ok(()) if held > 0 => {
                self.journal_said = None;
                self.say(format_args!(
                    "the ban journal is writable again: wrote the {held} records held in memory"
                ));
            }
            Ok(()) => {}
        }
        for _ in &bans {
            self.metrics.ban("log");
        }
        // The fleet thread pushes from the journal: tell it there is something new.
        if let Some(f) = self.on_ban.as_mut() {
            f();
        }
        let batch: Vec<(IpNet, Option<i64>)> = bans.iter().map(|b| (b.net, b.until)).collect();
        let fw = self.fw.as_mut().expect("state implies firewall");
        match fw.ban_many(&batch) {
            Ok(()) => {
                for b in &bans {
                    let len = std::time::Duration::from_secs(
                        b.until.map_or(0, |u| u.saturating_sub(b.banned_at).max(0)) as u64,
                    );
                    self.say(format_args!(
                        "ban {} for {}: {} failures ({})",
                        b.net,
                        crate::duration::format(len),
                        b.failures,
                        b.reason
                    ));
                }
            }
            Err(e) => {
                self.say(format_args!(
                    "error: firewall refused a batch of {} bans ({}…): {e}; will retry",
                    batch.len(),
                    batch[0].0
                ));
                self.retry.extend(batch);
            }
        }
    }

    /// The journal cannot be written: loud, but at most once a minute while it lasts.
    fn journal_failing(&mut self, now: i64, why: &str) {
        let held = self.state.as_ref().map_or(0, State::unwritten);
        if self
            .journal_said
            .is_some_and(|t| now.saturating_sub(t) < 60)
        {
            return;
        }
        self.journal_said = Some(now);
        self.say(format_args!(
            "error: cannot write the ban journal: {why}; {held} records are held in memory only \
             (the firewall still bans; retried every second; a crash now would lose them)"
        ));
    }

    /// Housekeeping; call often (it does its work at most once a second).
    pub fn tick(&mut self, now: i64) -> Result<()> {
        self.flush(now);
        if now == self.last_second {
            return Ok(());
        }
        self.last_second = now;
        for fs in self.files.values_mut() {
            fs.prov.flush_stale(now, &mut self.released);
        }
        self.act_on_released(now);
        self.flush(now);
        self.report_not_believed(now);
        // Storage faults are said and survived here, never returned: a full disk must not
        // stop the banning.
        let mut journal_err: Option<String> = None;
        if let (Some(st), Some(fw)) = (self.state.as_mut(), self.fw.as_mut()) {
            let mut msgs = vec![];
            if st.unwritten() > 0 {
                match st.retry_unwritten() {
                    Ok(n) => {
                        self.journal_said = None;
                        msgs.push(format!(
                            "the ban journal is writable again: wrote the {n} records held in memory"
                        ));
                    }
                    Err(e) => journal_err = Some(e.to_string()),
                }
            }
            // Others' `astpatch ban`/`unban`: they applied the firewall change themselves;
            // taking the records in is what makes expiry and reconciliation respect them.
            if let Err(e) = st.refresh() {
                msgs.push(format!("warning: cannot read the ban journal: {e}"));
            }
            for net in st.expired(now) {
                // Applied in memory even when it cannot be written (then kept and retried).
                if let Err(e) = st.record_unban(net, "expired", now) {
                    journal_err = Some(e.to_string());
                }
                match fw.unban(net) {
                    Ok(()) => msgs.push(format!("unban {net}: ban expired")),
                    Err(e) => msgs.push(format!("error: unban {net}: {e}")),
                }
            }
            let retry = std::mem::take(&mut self.retry);
            let retry: Vec<(IpNet, Option<i64>)> = retry
                .into_iter()
                .filter(|(net, _)| st.get(net).is_some())
                .collect();
            if !retry.is_empty() {
                if let Err(e) = fw.ban_many(&retry) {
                    msgs.push(format!(
                        "error: firewall still refuses {} bans ({}…): {e}",
                        retry.len(),
                        retry[0].0
                    ));
                    self.retry = retry;
                } else {
                    msgs.push(format!("{} bans applied on retry", retry.len()));
                }
            }
            if recheck_due(self.last_recheck, now, self.recheck_every) {
                self.last_recheck = now;
                match repair(st, fw.as_mut(), now) {
                    Ok(Some(m)) => msgs.push(m),
                    Ok(None) => {}
                    Err(e) => msgs.push(format!(
                        "error: firewall check: {e}; trying again in {}s",
                        self.recheck_every
                    )),
                }
            }
            if st.unwritten() == 0
                && st.journal_lines() > 10_000 + 2 * st.active_bans(now).len() as u64
                && now.saturating_sub(self.compact_failed_at) >= 60
            {
                if let Err(e) = st.compact(now) {
                    self.compact_failed_at = now;
                    msgs.push(format!(
                        "warning: cannot compact the ban journal: {e}; it keeps growing until it can"
                    ));
                }
            }
            // Published when it changed (or once a minute), not every second: each write is
            // a temp file, two fsyncs and a rename.
            let nb = {
                let mut c = Counts::default();
                for fs in self.files.values() {
                    c.add(&fs.counts());
                }
                c
            };
            let counts = (self.tracker.len(), self.total_failed, nb);
            if self.published != Some(counts) || now.saturating_sub(self.published_at) >= 60 {
                let written = state::write_stats(
                    st.dir(),
                    &state::Stats {
                        currently_failing: counts.0,
                        total_failed: counts.1,
                        forged: nb.forged,
                        glued: nb.glued,
                        truncated: nb.truncated,
                        unproven: nb.unproven,
                        ami: self.ami_link.clone(),
                        updated_at: now,
                    },
                );
                self.published = Some(counts);
                self.published_at = now;
                // Only a status file: a warning, said when it starts failing.
                match written {
                    Ok(()) => self.stats_failing = false,
                    Err(e) if !self.stats_failing => {
                        self.stats_failing = true;
                        msgs.push(format!(
                            "warning: cannot write {}: {e}; `astpatch status` shows older counts until it can (banning goes on)",
                            state::STATS_FILE
                        ));
                    }
                    Err(_) => {}
                }
            }
            for m in msgs {
                self.say(format_args!("{m}"));
            }
        }
        if let Some(e) = journal_err {
            self.journal_failing(now, &e);
        }
        self.publish_health(now);
        if now.saturating_sub(self.last_expire) >= 60 {
            self.last_expire = now;
            self.tracker.expire(now);
            self.one_count.expire(now);
        }
        self.write_metrics(now);
        if self.tracker.evicted() > self.evicted_said {
            let n = self.tracker.evicted() - self.evicted_said;
            self.evicted_said = self.tracker.evicted();
            self.say(format_args!(
                "warning: tracking {MAX_TRACKED} addresses at once; forgot the {n} that failed least recently (memory stays bounded)"
            ));
        }
        Ok(())
    }

    /// Say, per log file and at most once every [`REPORT_EVERY`] seconds, how many lines
    /// were not believed since the last time.
    fn report_not_believed(&mut self, now: i64) {
        let mut msgs = vec![];
        for (path, fs) in self.files.iter_mut() {
            let c = fs.counts();
            if c == fs.said
                || fs
                    .said_at
                    .is_some_and(|t| now.saturating_sub(t) < REPORT_EVERY)
            {
                continue;
            }
            let d = Counts {
                forged: c.forged - fs.said.forged,
                glued: c.glued - fs.said.glued,
                truncated: c.truncated - fs.said.truncated,
                unproven: c.unproven - fs.said.unproven,
            };
            let since = match fs.said_at {
                Some(t) => format!(
                    " in the last {}",
                    crate::duration::format(std::time::Duration::from_secs(
                        now.saturating_sub(t).max(0) as u64
                    ))
                ),
                None => String::new(),
            };
            msgs.push(format!(
                "warning: {}: {} forged, {} glued, {} truncated, {} unproven lines not believed{since} \
                 (never blamed on anyone; `astpatch scan` shows them)",
                path.display(),
                d.forged,
                d.glued,
                d.truncated,
                d.unproven,
            ));
            fs.said = c;
            fs.said_at = Some(now);
        }
        msgs.sort();
        for m in msgs {
            self.say(format_args!("{m}"));
        }
    }

    pub fn currently_failing(&self) -> usize {
        self.tracker.len()
    }
}

/// The active bans `fw` can hold: IPv6 ones are left out on a host without IPv6 (recorded
/// before a reboot with `ipv6.disable=1`, they match nothing and would look forever missing).
fn held_by(fw: &dyn Firewall, bans: Vec<Ban>) -> Vec<(IpNet, Option<i64>)> {
    bans.iter()
        .filter(|b| fw.ipv6() || b.net.addr().is_ipv4())
        .map(|b| (b.net, b.until))
        .collect()
}

/// Compare the kernel with the state's active bans; when our hook is gone, a ban is missing
/// or one is there the state no longer has, put exactly the active bans back in one batch
/// (`restore` also re-creates the objects and the hook). Then make sure no rule sits above
/// our hook. Returns the line saying what was repaired, or None when all was in place.
fn repair(st: &mut State, fw: &mut dyn Firewall, now: i64) -> Result<Option<String>> {
    let hooked = fw.hooked()?;
    let kernel = fw.list()?;
    // The state is read after the kernel: `astpatch ban`/`unban` record before they change
    // the firewall, so whatever the kernel showed of theirs is already in the journal and is
    // not mistaken for a stranger.
    st.refresh()?;
    let active = held_by(fw, st.active_bans(now));
    // A kernel timeout counted from a second later than `until` may end a moment early:
    // not a repair.
    let missing = active
        .iter()
        .filter(|(n, u)| !kernel.contains(n) && u.is_none_or(|u| u > now + 2))
        .count();
    let unknown = kernel
        .iter()
        .filter(|n| !active.iter().any(|(a, _)| a == *n))
        .count();
    let mut what = vec![];
    if !hooked || missing > 0 || unknown > 0 {
        fw.restore(&active)?;
        if !hooked {
            what.push("re-hooked into INPUT".to_string());
        }
        if missing > 0 {
            what.push(format!("re-added {missing} missing bans"));
        }
        if unknown > 0 {
            what.push(format!("removed {unknown} the state does not hold"));
        }
    }
    if fw.hook_on_top()? {
        what.push("moved our INPUT hook back to the top (rules inserted above it let banned traffic through)".to_string());
    }
    if what.is_empty() {
        return Ok(None);
    }
    Ok(Some(format!(
        "firewall repaired (changed from outside?): {}; {} active bans in place",
        what.join(", "),
        active.len()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::Backend;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    /// An in-memory firewall: the kernel's view is a list; `.1` is set when someone removed
    /// our INPUT hook, `.2` when someone inserted a rule above it; `.3` means the host has
    /// no IPv6 (an IPv6 ban is then an error, as with the real backends).
    #[derive(Clone, Default)]
    struct MemFw(
        Arc<Mutex<Vec<IpNet>>>,
        Arc<AtomicBool>,
        Arc<AtomicBool>,
        Arc<AtomicBool>,
        /// The size of every ban_many call.
        Arc<Mutex<Vec<usize>>>,
    );

    impl Firewall for MemFw {
        fn ban_many(&mut self, bans: &[(IpNet, Option<i64>)]) -> Result<()> {
            crate::firewall::refuse_ipv6_in(bans, self.ipv6())?;
            self.4.lock().unwrap().push(bans.len());
            for (n, u) in bans {
                self.ban(*n, *u)?;
            }
            Ok(())
        }
        fn ensure(&mut self) -> Result<()> {
            self.1.store(false, Ordering::SeqCst);
            Ok(())
        }
        fn ban(&mut self, net: IpNet, _: Option<i64>) -> Result<()> {
            if net.addr().is_ipv6() && !self.ipv6() {
                return Err(crate::firewall::ipv6::refuse(&net));
            }
            let mut v = self.0.lock().unwrap();
            if !v.contains(&net) {
                v.push(net);
            }
            Ok(())
        }
        fn unban(&mut self, net: IpNet) -> Result<()> {
            self.0.lock().unwrap().retain(|n| *n != net);
            Ok(())
        }
        fn list(&self) -> Result<Vec<IpNet>> {
            Ok(self.0.lock().unwrap().clone())
        }
        fn hooked(&self) -> Result<bool> {
            Ok(!self.1.load(Ordering::SeqCst))
        }
        fn restore(&mut self, bans: &[(IpNet, Option<i64>)]) -> Result<()> {
            *self.0.lock().unwrap() = bans.iter().map(|b| b.0).collect();
            self.ensure()
        }
        fn hook_on_top(&mut self) -> Result<bool> {
            Ok(self.2.swap(false, Ordering::SeqCst))
        }
        fn teardown(&mut self) -> Result<()> {
            self.0.lock().unwrap().clear();
            Ok(())
        }
        fn name(&self) -> Backend {
            Backend::Iptables
        }
        fn ipv6(&self) -> bool {
            !self.3.load(Ordering::SeqCst)
        }
    }

    const LINE: &str = "[2026-11-24 10:11:12] NOTICE[42] res_pjsip/pjsip_distributor.c: Request 'REGISTER' from '<sip:100@192.0.2.1>' failed for 'ADDR:5060' (callid: abc) - No matching endpoint found";

    fn line(addr: &str) -> Vec<u8> {
        LINE.replace("ADDR", addr).into_bytes()
    }

    fn engine(dir: &std::path::Path, fw: &MemFw, settings: Settings) -> Engine {
        let st = State::open(dir).unwrap();
        Engine::new(
            settings,
            Some(st),
            Some(Box::new(fw.clone())),
            vec![],
            false,
            Box::new(std::io::sink()),
        )
    }

    fn settings() -> Settings {
        Settings {
            maxretry: 3,
            ignoreip: vec!["198.51.100.0/24".parse().unwrap()],
            ..Settings::default()
        }
    }

    const TAGGED: &str = "[2026-11-24 10:11:12] NOTICE[42][C-00000003] chan_sip.c: Failed to authenticate device \"x\" <sip:100@pbx>;tag=1 (ADDR:5060) for INVITE, code = -1";

    fn chan_sip(addr: &str, tag: &str) -> Vec<u8> {
        let l = TAGGED.replace("ADDR", addr);
        if tag.is_empty() {
            l.into_bytes()
        } else {
            format!("{l} [astpatch:{tag}]").into_bytes()
        }
    }

    /// The bystander story of issue 10: the stock module still loaded, the From header ending in
    /// `(192.0.2.1:5060)`. Whatever the module on disk, only the tagged lines the patched build
    /// writes ban, and the tag an attacker guesses bans no one.
    #[test]
    fn only_lines_tagged_by_a_known_build_ban() {
        let d = tempfile::tempdir().unwrap();
        let fw = MemFw::default();
        let mut e = engine(d.path(), &fw, settings());
        e.set_tail_trust(RecogniseOptions {
            known_tags: vec!["00112233445566ff".parse().unwrap()],
            ..RecogniseOptions::default()
        });
        for _ in 0..5 {
            assert_eq!(e.on_line(&chan_sip("192.0.2.1", ""), 1000), None);
            assert_eq!(
                e.on_line(&chan_sip("192.0.2.1", "0123456789abcdef"), 1000),
                None
            );
        }
        assert!(fw.list().unwrap().is_empty());
        assert_eq!(e.forged(), 5);
        assert_eq!(e.total_failed, 0);
        for _ in 0..3 {
            e.on_line(&chan_sip("203.0.113.7", "00112233445566ff"), 1000);
        }
        assert_eq!(
            fw.list().unwrap(),
            vec!["203.0.113.7/32".parse::<IpNet>().unwrap()]
        );
    }

    /// A module built and loaded while the watcher runs has a new tag: the first line with it
    /// makes the watcher look again (at most every RELEARN_EVERY seconds), and a tag that the
    /// module does not carry stays unknown however often it is sent.
    #[test]
    fn a_new_build_is_learnt_from_its_module_and_forged_tags_cost_one_look() {
        let d = tempfile::tempdir().unwrap();
        let fw = MemFw::default();
        let mut e = engine(d.path(), &fw, settings());
        let looks = Arc::new(Mutex::new(0));
        let installed = Arc::new(Mutex::new(vec![]));
        {
            let (looks, installed) = (looks.clone(), installed.clone());
            e.set_tag_source(Box::new(move || {
                *looks.lock().unwrap() += 1;
                installed.lock().unwrap().clone()
            }));
        }
        for i in 0..50 {
            e.on_line(&chan_sip("192.0.2.1", "0123456789abcdef"), 1000 + i / 10);
        }
        assert_eq!(*looks.lock().unwrap(), 1, "one look per {RELEARN_EVERY} s");
        installed
            .lock()
            .unwrap()
            .push("aaaaaaaaaaaaaaaa".parse().unwrap());
        for _ in 0..3 {
            e.on_line(&chan_sip("203.0.113.9", "aaaaaaaaaaaaaaaa"), 1010);
        }
        assert_eq!(
            fw.list().unwrap(),
            vec!["203.0.113.9/32".parse::<IpNet>().unwrap()]
        );
        assert_eq!(*looks.lock().unwrap(), 2);
    }

    /// Issue 12, item 4: a replay (--from-start) judges each failure at its own time. A ban
    /// whose time would be over is not made; one still running lasts from its last failure;
    /// a date ahead of the clock counts as now.
    #[test]
    fn replayed_failures_ban_only_while_their_ban_would_still_run() {
        let d = tempfile::tempdir().unwrap();
        let fw = MemFw::default();
        let st = State::open(d.path()).unwrap();
        let mut e = Engine::new(
            settings(),
            Some(st),
            Some(Box::new(fw.clone())),
            vec![],
            true,
            Box::new(std::io::sink()),
        );
        let at = |date: &str, addr: &str| {
            LINE.replace("2026-11-24 10:11:12", date)
                .replace("ADDR", addr)
                .into_bytes()
        };
        // now = 2026-11-24 12:00:00 UTC; bantime 1h.
        let now = 1_795_521_600;
        for _ in 0..3 {
            assert_eq!(
                e.on_line(&at("2001-01-01 00:00:00", "203.0.113.1"), now),
                None
            );
            assert_eq!(
                e.on_line(&at("2026-11-24 10:30:00", "203.0.113.2"), now),
                None
            );
        }
        for _ in 0..3 {
            e.on_line(&at("2026-11-24 11:30:00", "203.0.113.3"), now);
            e.on_line(&at("2036-01-01 00:00:00", "203.0.113.4"), now);
        }
        let mut banned = fw.list().unwrap();
        banned.sort();
        assert_eq!(
            banned,
            vec![
                "203.0.113.3/32".parse::<IpNet>().unwrap(),
                "203.0.113.4/32".parse().unwrap()
            ]
        );
        let st = State::open(d.path()).unwrap();
        let b3 = st.get(&"203.0.113.3/32".parse().unwrap()).unwrap();
        assert_eq!(b3.banned_at, now - 1800, "stamped with its last failure");
        assert_eq!(b3.until, Some(now - 1800 + 3600));
        let b4 = st.get(&"203.0.113.4/32".parse().unwrap()).unwrap();
        assert_eq!((b4.banned_at, b4.until), (now, Some(now + 3600)));
    }

    /// Issue 10, item 7: after `astpatch unban` by another process, the next maxretry failures
    /// ban again at once, not after the watcher's next tick.
    #[test]
    fn failures_right_after_an_outside_unban_ban_again() {
        let d = tempfile::tempdir().unwrap();
        let fw = MemFw::default();
        let mut e = engine(d.path(), &fw, settings());
        for _ in 0..3 {
            e.on_line(&line("203.0.113.7"), 1000);
        }
        let net: IpNet = "203.0.113.7/32".parse().unwrap();
        assert_eq!(fw.list().unwrap(), vec![net]);
        // `astpatch unban` in another process: its own state handle and the kernel.
        let mut other = State::open(d.path()).unwrap();
        other.record_unban(net, "manual", 1000).unwrap();
        fw.clone().unban(net).unwrap();
        // Within the same second, before any tick.
        let mut banned = None;
        for _ in 0..3 {
            banned = banned.or(e.on_line(&line("203.0.113.7"), 1000));
        }
        assert_eq!(banned, Some(net));
        assert_eq!(fw.list().unwrap(), vec![net]);
    }

    /// Issue 12, item 1: what one read recognised goes to the journal in one write and to the
    /// firewall in one batch, each ban stamped with its own last failure.
    #[test]
    fn one_read_is_one_batch_and_each_ban_keeps_its_own_time() {
        let d = tempfile::tempdir().unwrap();
        let fw = MemFw::default();
        let mut e = engine(d.path(), &fw, settings());
        let p = std::path::Path::new("/var/log/asterisk/messages");
        let now = 1_795_521_600; // 2026-11-24 12:00:00 UTC
        let at = |secs: i64, addr: &str| {
            LINE.replace(
                "2026-11-24 10:11:12",
                &crate::logs::frame::format_utc(now - secs).replace(" UTC", ""),
            )
            .replace("ADDR", addr)
            .into_bytes()
        };
        for i in 0..300 {
            let a = format!("203.0.{}.{}", i / 200, i % 200 + 1);
            for _ in 0..3 {
                e.on_log_line(p, &at(i % 60, &a), now);
            }
        }
        assert!(fw.list().unwrap().is_empty(), "nothing before the flush");
        assert_eq!(e.pending(), 300);
        e.flush(now);
        assert_eq!(*fw.4.lock().unwrap(), [300], "one batch");
        assert_eq!(fw.list().unwrap().len(), 300);
        let st = State::open(d.path()).unwrap();
        assert_eq!(st.active_bans(now).len(), 300);
        let b = st.get(&"203.0.0.60/32".parse().unwrap()).unwrap();
        assert_eq!(b.banned_at, now - 59, "its own failure time");
        assert_eq!(b.until, Some(now - 59 + 3600));
        // A live line dated beyond findtime says the clock is off: it counts as now.
        for _ in 0..3 {
            e.on_log_line(p, &at(86_400, "203.0.9.9"), now);
        }
        e.flush(now);
        let st = State::open(d.path()).unwrap();
        assert_eq!(
            st.get(&"203.0.9.9/32".parse().unwrap()).unwrap().banned_at,
            now
        );
    }

    /// Issue 12, item 5: a journal that cannot be written (here: a full device) is loud, the
    /// firewall still bans, the records wait in memory and are written once it works again;
    /// health.json says so meanwhile, and the engine never stops.
    #[test]
    fn a_full_disk_under_the_journal_degrades_and_recovers() {
        let d = tempfile::tempdir().unwrap();
        let j = d.path().join(state::JOURNAL);
        std::os::unix::fs::symlink("/dev/full", &j).unwrap();
        let fw = MemFw::default();
        let said = Said::default();
        let mut e = Engine::new(
            settings(),
            Some(State::open(d.path()).unwrap()),
            Some(Box::new(fw.clone())),
            vec![],
            false,
            Box::new(said.clone()),
        );
        e.set_health_file(state::HealthFile::open(d.path()).unwrap());
        for t in 0..3 {
            e.on_line(&line("203.0.113.7"), 1000 + t);
        }
        assert_eq!(fw.list().unwrap().len(), 1, "banned all the same");
        for t in 3..70 {
            e.on_line(&line(&format!("203.0.113.{}", 10 + t / 3)), 1000 + t);
            e.tick(1000 + t).unwrap();
        }
        let text = said.text();
        assert!(
            text.contains("error: cannot write the ban journal"),
            "{text}"
        );
        assert_eq!(
            text.matches("error: cannot write the ban journal").count(),
            2,
            "once a minute: {text}"
        );
        let h = state::read_health(d.path()).unwrap();
        assert!(h.journal_error.is_some() && h.unwritten > 10, "{h:?}");
        let banned = fw.list().unwrap().len();
        assert!(banned > 10);
        // A periodic check must not remove what only memory holds.
        e.set_recheck_every(1);
        e.tick(1100).unwrap();
        assert_eq!(fw.list().unwrap().len(), banned);
        // Space again.
        std::fs::remove_file(&j).unwrap();
        e.tick(1101).unwrap();
        assert!(
            said.text().contains("the ban journal is writable again"),
            "{}",
            said.text()
        );
        let st = State::open(d.path()).unwrap();
        assert_eq!(st.active_bans(1101).len(), banned);
        assert_eq!(st.total_banned(), banned as u64);
        e.tick(1200).unwrap();
        let h = state::read_health(d.path()).unwrap();
        assert_eq!((h.journal_error, h.unwritten), (None, 0));
    }

    #[test]
    fn forged_lines_inside_a_dumped_sip_packet_are_never_read() {
        let d = tempfile::tempdir().unwrap();
        let fw = MemFw::default();
        let mut e = engine(d.path(), &fw, settings());
        let log = std::path::Path::new("/var/log/asterisk/messages");
        let forged = String::from_utf8(line("192.0.2.1")).unwrap();
        // The packet carries maxretry forged failure lines naming a bystander.
        let packet = format!("OPTIONS sip:x SIP/2.0\r\n{forged}\r\n{forged}\r\n{forged}\r\n");
        let header = format!(
            "[2026-11-24 10:11:13] ERROR[6120] pjproject: \tsip_transport.c  Error processing {} bytes packet from UDP 203.0.113.66:5060 : x:",
            packet.len()
        );
        assert_eq!(e.on_log_line(log, header.as_bytes(), 1000), None);
        for l in packet.split('\n') {
            assert_eq!(e.on_log_line(log, l.as_bytes(), 1000), None, "{l}");
        }
        assert_eq!(e.on_log_line(log, b"-- end of packet.", 1000), None);
        assert!(fw.list().unwrap().is_empty());
        assert_eq!(e.total_failed, 0);
        // Lines after the dump are read again.
        for _ in 0..3 {
            e.on_log_line(log, &line("203.0.113.7"), 1000);
        }
        e.flush(1000);
        assert_eq!(fw.list().unwrap().len(), 1);
        // The same forged lines outside a dump would have banned: the skip is what saved it.
        let d2 = tempfile::tempdir().unwrap();
        let fw2 = MemFw::default();
        let mut e2 = engine(d2.path(), &fw2, settings());
        for _ in 0..3 {
            e2.on_log_line(log, forged.as_bytes(), 1000);
        }
        e2.flush(1000);
        assert_eq!(fw2.list().unwrap().len(), 1);
    }

    #[test]
    fn bans_after_maxretry_records_first_and_expires_on_time() {
        let d = tempfile::tempdir().unwrap();
        let fw = MemFw::default();
        let mut e = engine(d.path(), &fw, settings());
        assert_eq!(e.on_line(&line("203.0.113.7"), 1000), None);
        assert_eq!(e.on_line(b"unrelated line", 1000), None);
        assert_eq!(e.on_line(&line("203.0.113.7"), 1001), None);
        let net = e.on_line(&line("203.0.113.7"), 1002).unwrap();
        assert_eq!(fw.list().unwrap(), vec![net]);
        let st = State::open(d.path()).unwrap();
        let b = st.get(&net).unwrap();
        assert_eq!(
            (b.until, b.failures, b.reason.as_str()),
            (Some(1002 + 3600), 3, "pjsip-no-endpoint")
        );
        e.tick(1002 + 3599).unwrap();
        assert_eq!(fw.list().unwrap().len(), 1);
        e.tick(1002 + 3600).unwrap();
        assert!(fw.list().unwrap().is_empty(), "expired on time");
        assert!(State::open(d.path()).unwrap().active_bans(5000).is_empty());
    }

    #[test]
    fn ignored_and_local_addresses_are_never_banned() {
        let d = tempfile::tempdir().unwrap();
        let fw = MemFw::default();
        let st = State::open(d.path()).unwrap();
        let local = vec!["192.0.2.50".parse().unwrap()];
        let mut e = Engine::new(
            settings(),
            Some(st),
            Some(Box::new(fw.clone())),
            local,
            false,
            Box::new(std::io::sink()),
        );
        for a in ["198.51.100.9", "127.0.0.1", "192.0.2.50", "::1"] {
            for t in 0..10 {
                assert_eq!(e.on_line(&line(a), t), None, "{a}");
            }
        }
        assert!(fw.list().unwrap().is_empty());
        assert_eq!(e.total_failed, 0);
    }

    #[test]
    fn a_widened_or_mapped_ban_never_covers_ignoreip_or_the_host() {
        let d = tempfile::tempdir().unwrap();
        let fw = MemFw::default();
        let st = State::open(d.path()).unwrap();
        let mut s = settings();
        s.ipv6_prefix = Some(64);
        // The admin's address and the host share a /64 with attackers (one hosting LAN).
        s.ignoreip.push("2001:db8:1:2::1/128".parse().unwrap());
        let local = vec!["2001:db8:5:5::10".parse().unwrap()];
        let mut e = Engine::new(
            s,
            Some(st),
            Some(Box::new(fw.clone())),
            local,
            false,
            Box::new(std::io::sink()),
        );
        let mut got = vec![];
        for a in [
            "[2001:db8:1:2::99]",
            "[2001:db8:5:5::66]",
            "[::ffff:198.51.100.9]",
        ] {
            for t in 0..3 {
                if let Some(n) = e.on_line(&line(a), t) {
                    got.push(n.to_string());
                }
            }
        }
        assert_eq!(got, ["2001:db8:1:2::99/128", "2001:db8:5:5::66/128"]);
        assert_eq!(fw.list().unwrap().len(), 2);
    }

    #[test]
    fn an_address_the_host_gained_after_start_is_never_banned() {
        let d = tempfile::tempdir().unwrap();
        let fw = MemFw::default();
        let mut e = engine(d.path(), &fw, settings());
        // Say DHCP gave the host 203.0.113.7 after the watcher started.
        e.local_now = || vec!["203.0.113.7".parse().unwrap()];
        for t in 0..5 {
            assert_eq!(e.on_line(&line("203.0.113.7"), t), None);
        }
        assert!(fw.list().unwrap().is_empty());
        for t in 0..3 {
            e.on_line(&line("203.0.113.8"), 10 + t);
        }
        assert_eq!(fw.list().unwrap().len(), 1, "others are still banned");
    }

    #[test]
    fn without_ipv6_only_ipv4_is_banned_and_old_ipv6_bans_are_not_missing() {
        let d = tempfile::tempdir().unwrap();
        let fw = MemFw::default();
        fw.3.store(true, Ordering::SeqCst);
        // Banned before the host was rebooted with ipv6.disable=1.
        let old: IpNet = "2001:db8::66/128".parse().unwrap();
        State::open(d.path())
            .unwrap()
            .record_ban(Ban {
                net: old,
                until: Some(10_000),
                reason: "test".into(),
                failures: 3,
                banned_at: 0,
            })
            .unwrap();
        let out = Said::default();
        let st = State::open(d.path()).unwrap();
        let mut e = Engine::new(
            settings(),
            Some(st),
            Some(Box::new(fw.clone())),
            vec![],
            false,
            Box::new(out.clone()),
        );
        let r = e.reconcile(100).unwrap();
        assert_eq!((r.active, r.readded), (0, 0), "{:?}", r.active);
        for t in 0..10 {
            assert_eq!(e.on_line(&line("[2001:db8::77]"), 100 + t), None);
        }
        for t in 0..3 {
            e.on_line(&line("192.0.2.9"), 100 + t);
        }
        assert_eq!(
            fw.list().unwrap(),
            vec!["192.0.2.9/32".parse::<IpNet>().unwrap()]
        );
        e.set_recheck_every(1);
        e.tick(200).unwrap();
        e.tick(201).unwrap();
        let text = out.text();
        assert!(
            !text.contains("repaired") && !text.contains("error"),
            "{text}"
        );
        // The old IPv6 ban stays recorded (it applies again once IPv6 is back).
        assert!(State::open(d.path()).unwrap().get(&old).is_some());
    }

    #[test]
    fn ipv6_prefix_and_increment_apply() {
        let d = tempfile::tempdir().unwrap();
        let fw = MemFw::default();
        let mut s = settings();
        s.ipv6_prefix = Some(64);
        s.bantime_increment = Some(crate::settings::BantimeIncrement {
            factor: 2,
            max: std::time::Duration::from_secs(86_400),
        });
        let mut e = engine(d.path(), &fw, s);
        let mut banned = None;
        for t in 0..3 {
            banned = e.on_line(&line("[2001:db8:1:2::99]"), t);
        }
        let net = banned.unwrap();
        assert_eq!(net.to_string(), "2001:db8:1:2::/64");
        e.tick(3600 + 5).unwrap();
        for t in 0..3 {
            banned = e.on_line(&line("[2001:db8:1:2::7]"), 4000 + t);
        }
        assert_eq!(banned, Some(net));
        let st = State::open(d.path()).unwrap();
        assert_eq!(
            st.get(&net).unwrap().until,
            Some(4002 + 7200),
            "second ban twice as long"
        );
    }

    #[test]
    fn report_only_mode_changes_nothing() {
        let mut out = Vec::new();
        struct W(Arc<Mutex<Vec<u8>>>);
        impl Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Arc::new(Mutex::new(Vec::new()));
        let mut e = Engine::new(
            settings(),
            None,
            None,
            vec![],
            false,
            Box::new(W(buf.clone())),
        );
        for t in 0..3 {
            e.on_line(&line("203.0.113.7"), t);
        }
        e.tick(10).unwrap();
        out.extend_from_slice(&buf.lock().unwrap());
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("would ban 203.0.113.7/32: 3 failures (pjsip-no-endpoint)"),
            "{text}"
        );
    }

    #[test]
    fn reconcile_readds_missing_drops_expired_and_unknown() {
        let d = tempfile::tempdir().unwrap();
        let mut st = State::open(d.path()).unwrap();
        for (n, until) in [("203.0.113.1/32", 5000), ("203.0.113.2/32", 50)] {
            st.record_ban(Ban {
                net: n.parse().unwrap(),
                until: Some(until),
                reason: "t".into(),
                failures: 5,
                banned_at: 0,
            })
            .unwrap();
        }
        let fw = MemFw::default();
        fw.0.lock().unwrap().push("192.0.2.99/32".parse().unwrap()); // not ours to keep
        let mut e = Engine::new(
            settings(),
            Some(st),
            Some(Box::new(fw.clone())),
            vec![],
            false,
            Box::new(std::io::sink()),
        );
        let r = e.reconcile(100).unwrap();
        assert_eq!(
            r,
            Reconciled {
                active: 1,
                expired: 1,
                readded: 1,
                removed_unknown: 1,
                adopted_from_kernel: 0
            }
        );
        assert_eq!(
            fw.list().unwrap(),
            vec!["203.0.113.1/32".parse::<IpNet>().unwrap()]
        );
    }

    #[test]
    fn corrupt_state_adopts_the_kernel_view() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(state::JOURNAL), "not json\n").unwrap();
        let st = State::open(d.path()).unwrap();
        let fw = MemFw::default();
        fw.0.lock().unwrap().push("192.0.2.99/32".parse().unwrap());
        let mut e = Engine::new(
            settings(),
            Some(st),
            Some(Box::new(fw.clone())),
            vec![],
            false,
            Box::new(std::io::sink()),
        );
        let r = e.reconcile(100).unwrap();
        assert_eq!(r.adopted_from_kernel, 1);
        assert_eq!(fw.list().unwrap().len(), 1, "kept, not wiped");
        let st = State::open(d.path()).unwrap();
        assert_eq!(st.active_bans(100)[0].reason, "recovered-from-firewall");
    }

    #[test]
    fn manual_unban_by_another_process_is_respected() {
        let d = tempfile::tempdir().unwrap();
        let fw = MemFw::default();
        let mut e = engine(d.path(), &fw, settings());
        let mut net = None;
        for t in 0..3 {
            net = e.on_line(&line("203.0.113.7"), t);
        }
        let net = net.unwrap();
        let mut cli = State::open(d.path()).unwrap();
        cli.record_unban(net, "manual", 5).unwrap();
        fw.clone().unban(net).unwrap();
        e.tick(6).unwrap();
        e.tick(3600 + 10).unwrap();
        assert!(fw.list().unwrap().is_empty());
        // and a fresh round of failures bans again
        for t in 0..3 {
            e.on_line(&line("203.0.113.7"), 4000 + t);
        }
        assert_eq!(fw.list().unwrap(), vec![net]);
    }

    /// A Write that keeps what was said.
    #[derive(Clone, Default)]
    struct Said(Arc<Mutex<Vec<u8>>>);
    impl Write for Said {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl Said {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    #[test]
    fn recheck_is_due_every_interval_and_after_a_backward_clock() {
        assert!(recheck_due(i64::MIN, 0, 60), "never checked");
        assert!(!recheck_due(100, 159, 60));
        assert!(recheck_due(100, 160, 60));
        assert!(recheck_due(100, 40, 60), "clock went back");
    }

    #[test]
    fn an_outside_flush_or_lost_hook_is_repaired_on_the_next_due_tick() {
        let d = tempfile::tempdir().unwrap();
        let fw = MemFw::default();
        let said = Said::default();
        let st = State::open(d.path()).unwrap();
        let mut e = Engine::new(
            settings(),
            Some(st),
            Some(Box::new(fw.clone())),
            vec![],
            false,
            Box::new(said.clone()),
        );
        e.reconcile(1000).unwrap();
        for a in ["203.0.113.7", "203.0.113.8"] {
            for t in 0..3 {
                e.on_line(&line(a), 1000 + t);
            }
        }
        assert_eq!(fw.list().unwrap().len(), 2);
        // `iptables -F` / `ipset flush` while the watcher runs: the bans vanish.
        fw.0.lock().unwrap().clear();
        for t in 1001..1060 {
            e.tick(t).unwrap();
        }
        assert!(fw.list().unwrap().is_empty(), "checked before it was due");
        e.tick(1060).unwrap();
        assert_eq!(fw.list().unwrap().len(), 2, "{}", said.text());
        assert!(
            said.text()
                .contains("firewall repaired (changed from outside?): re-added 2 missing bans; 2 active bans in place"),
            "{}",
            said.text()
        );
        // All in place: the next check changes and says nothing.
        let before = said.text().len();
        e.tick(1120).unwrap();
        assert_eq!(said.text().len(), before, "{}", said.text());
        // Another tool deletes our INPUT hook and adds a rule of its own to our chain.
        fw.1.store(true, Ordering::SeqCst);
        fw.0.lock().unwrap().push("192.0.2.99/32".parse().unwrap());
        e.tick(1180).unwrap();
        assert!(fw.hooked().unwrap());
        assert_eq!(fw.list().unwrap().len(), 2);
        assert!(
            said.text().contains(
                "re-hooked into INPUT, removed 1 the state does not hold; 2 active bans in place"
            ),
            "{}",
            said.text()
        );
        // A firewalld reload inserts its rules above our hook.
        fw.2.store(true, Ordering::SeqCst);
        e.tick(1200).unwrap();
        assert!(fw.2.load(Ordering::SeqCst), "moved before it was due");
        e.tick(1240).unwrap();
        assert!(!fw.2.load(Ordering::SeqCst));
        assert!(
            said.text().contains(
                "firewall repaired (changed from outside?): moved our INPUT hook back to the top"
            ),
            "{}",
            said.text()
        );
    }

    const REAL_CALL: &str = "[Nov 30 04:27:49] NOTICE[2515][C-00000003] chan_sip.c: Call from '' (ADDR:5061) to extension '1";
    const CALL_END: &str = "' rejected because extension not found in context 'public'.";

    #[test]
    fn newline_forgeries_ban_nobody_and_are_reported_once_a_window() {
        let d = tempfile::tempdir().unwrap();
        let fw = MemFw::default();
        let said = Said::default();
        let mut e = Engine::new(
            settings(),
            Some(State::open(d.path()).unwrap()),
            Some(Box::new(fw.clone())),
            vec![],
            false,
            Box::new(said.clone()),
        );
        let p = std::path::Path::new("/var/log/asterisk/messages");
        let first = REAL_CALL.replace("ADDR", "10.96.0.2");
        let forged = format!(
            "[Nov 30 10:00:00] NOTICE[1234] chan_sip.c: Call from 'x' (192.0.2.1:5060) to extension '2{CALL_END}"
        );
        for i in 0..10 {
            e.on_log_line(p, first.as_bytes(), 1000 + i);
            e.on_log_line(p, forged.as_bytes(), 1000 + i);
            e.tick(1000 + i).unwrap();
        }
        // The last message's window closes on the clock.
        e.tick(1009 + crate::logs::provenance::HOLD_SECS).unwrap();
        assert!(fw.list().unwrap().is_empty());
        assert_eq!(e.not_believed(p).forged, 20);
        let text = said.text();
        assert_eq!(text.matches("lines not believed").count(), 1, "{text}");
        assert!(
            text.contains("messages: 2 forged, 0 glued, 0 truncated, 0 unproven"),
            "{text}"
        );
        let stats = state::read_stats(d.path()).unwrap();
        assert_eq!((stats.forged, stats.glued, stats.truncated), (20, 0, 0));
        e.tick(1000 + REPORT_EVERY + 5).unwrap();
        let text = said.text();
        assert_eq!(text.matches("lines not believed").count(), 2, "{text}");
        assert!(text.contains("messages: 18 forged"), "{text}");
        // Nothing new: nothing said.
        e.tick(1000 + 3 * REPORT_EVERY).unwrap();
        assert_eq!(said.text().matches("lines not believed").count(), 2);
    }

    #[test]
    fn a_held_failure_is_acted_on_when_its_window_closes() {
        let d = tempfile::tempdir().unwrap();
        let fw = MemFw::default();
        let mut e = engine(d.path(), &fw, settings());
        let p = std::path::Path::new("/var/log/asterisk/messages");
        let honest = format!(
            "[Nov 30 04:27:49] NOTICE[2515] chan_sip.c: Call from '100' (203.0.113.7:5060) to extension '9{CALL_END}"
        );
        // One message's length apart: closer, the second could be the first one's sender's
        // text (unproven, see logs::provenance).
        for n in 0..3 {
            assert_eq!(e.on_log_line(p, honest.as_bytes(), 1000), None);
            for i in 0..if n < 2 { 200 } else { 0 } {
                let chatter = format!("[Nov 30 04:27:49] VERBOSE[2515] pbx.c: -- chatter line {i}");
                assert_eq!(e.on_log_line(p, chatter.as_bytes(), 1000), None);
            }
        }
        e.tick(1001).unwrap();
        assert!(fw.list().unwrap().is_empty());
        e.tick(1000 + crate::logs::provenance::HOLD_SECS).unwrap();
        assert_eq!(
            fw.list().unwrap(),
            vec!["203.0.113.7/32".parse::<IpNet>().unwrap()]
        );
    }

    /// A real 20.20.1 PJSIP failure: its `messages` line and its security log line are one
    /// attempt. With maxretry 3, three attempts ban; six lines of two attempts do not.
    #[test]
    fn a_failure_reported_twice_counts_once() {
        let d = tempfile::tempdir().unwrap();
        let fw = MemFw::default();
        let mut e = engine(d.path(), &fw, settings());
        let msg = b"[Nov 30 05:42:40] NOTICE[31160] res_pjsip/pjsip_distributor.c: Request 'REGISTER' from '\"x\" <sip:200@203.0.113.1>' failed for '10.96.0.2:5073' (callid: c5@10.96.0.2) - Failed to authenticate";
        let sec = b"[Nov 30 05:42:40] SECURITY[31201] res_security_log.c: SecurityEvent=\"ChallengeResponseFailed\",EventTV=\"2026-11-30T05:42:40.113+0000\",Severity=\"Error\",Service=\"PJSIP\",EventVersion=\"1\",AccountID=\"200\",SessionID=\"c5@10.96.0.2\",LocalAddress=\"IPV4/UDP/203.0.113.1/5062\",RemoteAddress=\"IPV4/UDP/10.96.0.2/5073\",Challenge=\"1\",Response=\"2\",ExpectedResponse=\"\"";
        let (m, s) = (
            std::path::Path::new("/var/log/asterisk/messages"),
            std::path::Path::new("/var/log/asterisk/security"),
        );
        for _ in 0..2 {
            e.on_log_line(m, msg, 1000);
            e.on_log_line(s, sec, 1000);
        }
        e.tick(1000).unwrap();
        assert!(fw.list().unwrap().is_empty(), "two attempts banned");
        assert_eq!(e.total_failed, 2);
        e.on_log_line(s, sec, 1001);
        e.on_log_line(m, msg, 1001);
        e.tick(1001).unwrap();
        assert_eq!(
            fw.list().unwrap(),
            vec!["10.96.0.2/32".parse::<IpNet>().unwrap()]
        );
    }
}
