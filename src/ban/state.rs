//! Durable ban state under `state_dir`: a write-ahead journal of JSON lines. A ban is appended
//! and fsynced *before* the firewall is touched, so `kill -9` at any instant loses no ban: on
//! start the watcher re-adds whatever the journal holds and the kernel lacks.
//!
//! Why a journal and not SQLite: one append + fsync per ban is the whole write path, the file
//! is readable with `cat`, a torn last line (crash mid-write) is detectable and harmless (that
//! ban never reached the firewall), and no C library is linked. Compaction rewrites the file
//! as a snapshot of the live bans via temp+rename (`atomic.rs`).
//!
//! Every mutation holds `journal.lock` (flock), so `astpatch ban` / `unban` work beside a
//! running watcher; the watcher re-reads what others appended (`refresh`). `watch.lock` is held
//! by the watcher for its lifetime, so a second watcher refuses to start.
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const JOURNAL: &str = "bans.journal";
const JOURNAL_LOCK: &str = "journal.lock";
const WATCH_LOCK: &str = "watch.lock";
pub const PID_FILE: &str = "watch.pid";
pub const STATS_FILE: &str = "stats.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ban {
    pub net: IpNet,
    /// Unix time the ban ends; None = until unbanned.
    pub until: Option<i64>,
    pub reason: String,
    pub failures: u32,
    pub banned_at: i64,
}

/// One journal line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Record {
    Ban(Ban),
    Unban {
        net: IpNet,
        at: i64,
        why: String,
    },
    UnbanAll {
        at: i64,
    },
    /// Written by compaction: how often `net` was banned before (for bantime_increment) and
    /// the running total, so both survive the rewrite.
    History {
        net: IpNet,
        bans: u32,
    },
    Totals {
        total_banned: u64,
    },
}

/// The ban store. Holds the journal's content in memory; every change goes to disk first.
pub struct State {
    dir: PathBuf,
    bans: BTreeMap<IpNet, Ban>,
    history: HashMap<IpNet, u32>,
    total_banned: u64,
    /// Bytes of the journal already applied, and which file (inode) they belong to.
    offset: u64,
    ino: u64,
    lines: u64,
    /// Set when the journal was unreadable and moved aside: where it went.
    pub recovered_from: Option<PathBuf>,
    /// False for read-only views (`status`, `verify`): never truncate or move the journal.
    repair: bool,
    /// Records applied in memory that could not be written (disk full, I/O error): written
    /// before anything else by the next append or compaction that works.
    unwritten: Vec<Record>,
    /// Why the journal could not be written, while it cannot.
    journal_error: Option<String>,
}

/// Exclusive `flock` on a file, released on drop.
pub struct FileLock {
    file: File,
}

impl FileLock {
    fn take(path: &Path, wait: bool) -> Result<Option<FileLock>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let flags = libc::LOCK_EX | if wait { 0 } else { libc::LOCK_NB };
        if unsafe { libc::flock(file.as_raw_fd(), flags) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::WouldBlock {
                return Ok(None);
            }
            return Err(Error::io(path, e));
        }
        Ok(Some(FileLock { file }))
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// Held by the running watcher for its whole life.
pub fn lock_watcher(dir: &Path) -> Result<FileLock> {
    ensure_dir(dir)?;
    match FileLock::take(&dir.join(WATCH_LOCK), false)? {
        Some(l) => Ok(l),
        None => {
            let who = read_pid_file(dir)
                .map(|p| format!(" (pid {})", p.pid))
                .unwrap_or_default();
            Err(Error::environment(
                format!(
                    "another astpatch watcher{who} already uses {}",
                    dir.display()
                ),
                Some("stop it first (systemctl stop astpatch), or use another --state-dir"),
            ))
        }
    }
}

/// Where banning watchers of one network namespace (its firewall: its chain, sets and table)
/// meet: a lock per namespace, so watchers in different namespaces (containers, tests) do not
/// see each other.
pub const FIREWALL_LOCK_DIR: &str = "/run/astpatch";

/// Held by the banning watcher for its whole life: astpatch's firewall objects have one owner
/// per network namespace. A second watcher with another state dir would remove the first one's
/// bans as "unknown" at every check, and each would put back its own.
pub fn lock_firewall(state_dir: &Path) -> Result<FileLock> {
    use std::io::{Seek, Write};
    use std::os::unix::fs::MetadataExt;
    let ns = std::fs::metadata("/proc/self/ns/net")
        .map(|m| m.ino())
        .map_err(|e| Error::io(Path::new("/proc/self/ns/net"), e))?;
    let dir = Path::new(FIREWALL_LOCK_DIR);
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let path = dir.join(format!("firewall-net{ns}.lock"));
    match FileLock::take(&path, false)? {
        Some(mut l) => {
            // The owner's state dir, for the refusal message a second watcher prints.
            let owner = format!("{}\n", state_dir.display());
            let _ = l.file.set_len(0);
            let _ = l.file.rewind();
            let _ = l.file.write_all(owner.as_bytes());
            Ok(l)
        }
        None => {
            let owner = std::fs::read_to_string(&path).unwrap_or_default();
            let owner = owner.trim();
            Err(Error::environment(
                format!(
                    "another astpatch watcher already bans in this network namespace (state dir {}); \
                     two would remove each other's bans",
                    if owner.is_empty() { "unknown" } else { owner }
                ),
                Some(
                    "run one banning watcher per host: stop the other first (systemctl stop astpatch)",
                ),
            ))
        }
    }
}

/// True when a watcher holds the lock on `dir` right now.
pub fn watcher_running(dir: &Path) -> bool {
    match FileLock::take(&dir.join(WATCH_LOCK), false) {
        Ok(Some(_)) | Err(_) => false,
        Ok(None) => true,
    }
}

/// `<state_dir>/watch.pid`, read by `status` and `verify`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PidFile {
    pub pid: u32,
    pub logs: Vec<PathBuf>,
    pub backend: crate::firewall::Backend,
    pub started_at: i64,
}

pub fn write_pid_file(dir: &Path, p: &PidFile) -> Result<()> {
    write_json(dir, PID_FILE, p)
}

pub fn read_pid_file(dir: &Path) -> Option<PidFile> {
    read_json(dir, PID_FILE)
}

/// Counters only the running watcher knows, published for `astpatch status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    pub currently_failing: usize,
    pub total_failed: u64,
    /// Lines not believed since the watcher started (crate::logs::provenance); absent in files
    /// written by older watchers.
    #[serde(default)]
    pub forged: u64,
    #[serde(default)]
    pub glued: u64,
    #[serde(default)]
    pub truncated: u64,
    #[serde(default)]
    pub unproven: u64,
    /// The AMI link (None without `[ami]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ami: Option<String>,
    pub updated_at: i64,
}

pub fn write_stats(dir: &Path, s: &Stats) -> Result<()> {
    write_json(dir, STATS_FILE, s)
}

pub fn read_stats(dir: &Path) -> Option<Stats> {
    read_json(dir, STATS_FILE)
}

/// `<state_dir>/health.json`: what is wrong with the watcher's storage and logs, for
/// `status` and `verify`. Unlike the other status files it is written in place into room
/// reserved at start, so it can still say "the disk is full" when the disk is full.
pub const HEALTH_FILE: &str = "health.json";
const HEALTH_ROOM: usize = 16 * 1024;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Health {
    /// Why the ban journal cannot be written, while it cannot.
    pub journal_error: Option<String>,
    /// Records held in memory only meanwhile.
    pub unwritten: usize,
    /// Followed logs that cannot be read.
    pub unreadable: Vec<Unreadable>,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Unreadable {
    pub path: PathBuf,
    pub error: String,
}

/// The open health file with its room reserved.
pub struct HealthFile {
    file: File,
    written_at: std::cell::Cell<i64>,
}

impl HealthFile {
    /// Open (creating) the file and fill its whole room, so later writes need no new space.
    pub fn open(dir: &Path) -> Result<HealthFile> {
        let path = dir.join(HEALTH_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o644)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let hf = HealthFile {
            file,
            written_at: std::cell::Cell::new(i64::MIN),
        };
        let blank = Health::default();
        hf.write(&blank, i64::MIN)
            .map_err(|e| Error::io(&path, e))?;
        hf.file.sync_all().map_err(|e| Error::io(&path, e))?;
        Ok(hf)
    }

    /// Overwrite the room with `h` (JSON padded with spaces). Lists too long are cut.
    pub fn write(&self, h: &Health, now: i64) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let mut h = h.clone();
        let mut text = serde_json::to_vec(&h).expect("json");
        while text.len() >= HEALTH_ROOM && !h.unreadable.is_empty() {
            h.unreadable.truncate(h.unreadable.len() / 2);
            text = serde_json::to_vec(&h).expect("json");
        }
        if let Some(e) = h
            .journal_error
            .as_mut()
            .filter(|_| text.len() >= HEALTH_ROOM)
        {
            e.truncate(200);
            text = serde_json::to_vec(&h).expect("json");
        }
        text.resize(HEALTH_ROOM, b' ');
        text[HEALTH_ROOM - 1] = b'\n';
        self.file.write_all_at(&text, 0)?;
        self.written_at.set(now);
        Ok(())
    }

    /// When it was last written (unix seconds).
    pub fn written_at(&self) -> i64 {
        self.written_at.get()
    }
}

/// What the watcher last said in health.json; None when absent or unreadable.
pub fn read_health(dir: &Path) -> Option<Health> {
    let bytes = fs::read(dir.join(HEALTH_FILE)).ok()?;
    serde_json::from_slice(bytes.trim_ascii()).ok()
}

/// Where the watcher stands in each log, for a restart to resume from.
pub const POSITIONS_FILE: &str = "positions.json";

pub fn write_positions(dir: &Path, p: &[(PathBuf, crate::logs::follow::Position)]) -> Result<()> {
    write_json(dir, POSITIONS_FILE, &p)
}

/// The saved positions; none when absent or unreadable (then logs start as on first use).
pub fn read_positions(
    dir: &Path,
) -> std::collections::HashMap<PathBuf, crate::logs::follow::Position> {
    read_json::<Vec<(PathBuf, crate::logs::follow::Position)>>(dir, POSITIONS_FILE)
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// A small status file others read: replaced atomically, world-readable.
fn write_json<T: Serialize>(dir: &Path, name: &str, value: &T) -> Result<()> {
    let path = dir.join(name);
    let text = serde_json::to_string(value).expect("status files serialise");
    crate::atomic::write(&path, text.as_bytes(), Some(0o644)).map_err(|e| Error::io(&path, e))
}

/// Absent or unreadable reads as "none": the writer may not have run yet.
fn read_json<T: serde::de::DeserializeOwned>(dir: &Path, name: &str) -> Option<T> {
    serde_json::from_slice(&fs::read(dir.join(name)).ok()?).ok()
}

fn ensure_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    Ok(())
}

impl State {
    /// Open (creating) the store in `dir`. A journal that cannot be parsed is moved aside to
    /// `bans.journal.corrupt-<time>`, the store starts empty, and `recovered_from` says so — the
    /// caller then adopts what the kernel holds.
    pub fn open(dir: &Path) -> Result<State> {
        ensure_dir(dir)?;
        let mut st = State {
            dir: dir.to_owned(),
            bans: BTreeMap::new(),
            history: HashMap::new(),
            total_banned: 0,
            offset: 0,
            ino: 0,
            lines: 0,
            recovered_from: None,
            repair: true,
            unwritten: vec![],
            journal_error: None,
        };
        let _l = st.lock()?;
        st.catch_up()?;
        Ok(st)
    }

    /// A read-only view for reports (`status`, `verify`): creates nothing, repairs nothing.
    /// A torn last line is ignored; a corrupt journal is an error naming it (the watcher is
    /// what sets it aside and recovers). A missing directory reads as "no bans".
    pub fn load(dir: &Path) -> Result<State> {
        let mut st = State {
            dir: dir.to_owned(),
            bans: BTreeMap::new(),
            history: HashMap::new(),
            total_banned: 0,
            offset: 0,
            ino: 0,
            lines: 0,
            recovered_from: None,
            repair: false,
            unwritten: vec![],
            journal_error: None,
        };
        if dir.join(JOURNAL).exists() {
            st.catch_up()?;
        }
        Ok(st)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn journal(&self) -> PathBuf {
        self.dir.join(JOURNAL)
    }

    fn lock(&self) -> Result<FileLock> {
        Ok(FileLock::take(&self.dir.join(JOURNAL_LOCK), true)?.expect("blocking lock"))
    }

    /// Apply whatever others appended since we last looked. Returns true if anything changed.
    /// Call with the journal lock held.
    fn catch_up(&mut self) -> Result<bool> {
        let path = self.journal();
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let changed = self.offset > 0 || !self.bans.is_empty();
                if self.ino != 0 {
                    self.reset();
                }
                return Ok(changed);
            }
            Err(e) => return Err(Error::io(&path, e)),
        };
        let meta = file.metadata().map_err(|e| Error::io(&path, e))?;
        let mut reread = false;
        if meta.ino() != self.ino || meta.len() < self.offset {
            // Replaced by compaction (ours or a CLI's) or truncated: read it all again.
            self.reset();
            self.ino = meta.ino();
            reread = true;
        }
        if meta.len() == self.offset {
            self.reapply_unwritten(reread);
            return Ok(reread);
        }
        file.seek(SeekFrom::Start(self.offset))
            .map_err(|e| Error::io(&path, e))?;
        let mut rest = Vec::new();
        file.read_to_end(&mut rest)
            .map_err(|e| Error::io(&path, e))?;
        // Only whole lines count. A torn tail is a write that never finished: its ban never
        // reached the firewall. Cut it off so the next append starts on a fresh line.
        let whole = rest.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        if whole < rest.len() && self.repair {
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            f.set_len(self.offset + whole as u64)
                .map_err(|e| Error::io(&path, e))?;
            f.sync_all().map_err(|e| Error::io(&path, e))?;
            eprintln!(
                "astpatch: {}: dropped an unfinished last line (a crash mid-write; that ban was never applied)",
                path.display()
            );
        }
        let mut bad = None;
        for (i, line) in BufReader::new(&rest[..whole]).lines().enumerate() {
            let line = line.unwrap_or_default();
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Record>(&line) {
                Ok(r) => self.apply(r),
                Err(e) => {
                    bad = Some(format!("line {}: {e}", self.lines + i as u64 + 1));
                    break;
                }
            }
        }
        if let Some(why) = bad {
            if !self.repair {
                return Err(Error::input(
                    format!("{} is corrupt ({why})", path.display()),
                    Some(
                        "restart the watcher: it keeps the file aside and starts from what the firewall holds",
                    ),
                ));
            }
            let aside = self
                .dir
                .join(format!("{JOURNAL}.corrupt-{}", crate::clock::now_secs()));
            fs::rename(&path, &aside).map_err(|e| Error::io(&path, e))?;
            eprintln!(
                "astpatch: {} is corrupt ({why}); kept it as {} and starting from what the firewall holds",
                path.display(),
                aside.display()
            );
            self.reset();
            self.recovered_from = Some(aside);
            return Ok(true);
        }
        self.lines += rest[..whole].iter().filter(|&&b| b == b'\n').count() as u64;
        self.offset += whole as u64;
        self.reapply_unwritten(reread);
        Ok(true)
    }

    /// After reading the journal afresh, what only memory holds is applied again on top.
    fn reapply_unwritten(&mut self, reread: bool) {
        if reread && !self.unwritten.is_empty() {
            for r in self.unwritten.clone() {
                self.apply(r);
            }
        }
    }

    fn reset(&mut self) {
        self.bans.clear();
        self.history.clear();
        self.total_banned = 0;
        self.offset = 0;
        self.ino = 0;
        self.lines = 0;
    }

    fn apply(&mut self, r: Record) {
        match r {
            Record::Ban(b) => {
                *self.history.entry(b.net).or_default() += 1;
                self.total_banned += 1;
                self.bans.insert(b.net, b);
            }
            Record::Unban { net, .. } => {
                self.bans.remove(&net);
            }
            Record::UnbanAll { .. } => self.bans.clear(),
            Record::History { net, bans } => {
                self.history.insert(net, bans);
            }
            Record::Totals { total_banned } => self.total_banned = total_banned,
        }
    }

    /// Append records durably (write + fsync) under the lock, then apply them. When the
    /// journal cannot be written (a full disk, an I/O error), the records are applied in
    /// memory all the same, kept, and written first by the next append that works; the error
    /// is returned so the caller says so, and [`State::journal_error`] tells until then.
    fn append(&mut self, records: Vec<Record>) -> Result<()> {
        let held = self.unwritten.len();
        let mut all = std::mem::take(&mut self.unwritten);
        all.extend(records);
        if all.is_empty() {
            return Ok(());
        }
        match self.write_records(&all) {
            Ok(()) => {
                self.journal_error = None;
                if held > 0 {
                    // Those were applied when they failed: read everything back once, so
                    // history and totals count them once.
                    let _l = self.lock()?;
                    self.reset();
                    self.catch_up()?;
                }
                Ok(())
            }
            Err(e) => {
                for r in &all[held..] {
                    self.apply(r.clone());
                }
                self.unwritten = all;
                self.journal_error = Some(e.to_string());
                Err(e)
            }
        }
    }

    fn write_records(&mut self, records: &[Record]) -> Result<()> {
        let _l = self.lock()?;
        self.catch_up()?;
        let path = self.journal();
        let mut text = Vec::new();
        for r in records {
            serde_json::to_writer(&mut text, r).expect("json");
            text.push(b'\n');
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let before = f.metadata().map_err(|e| Error::io(&path, e))?.len();
        let written = f
            .write_all(&text)
            .and_then(|()| f.sync_data())
            .and_then(|()| {
                if self.ino == 0 {
                    // A new file: its directory entry must be durable too.
                    crate::atomic::sync_dir(&self.dir)
                } else {
                    Ok(())
                }
            });
        if let Err(e) = written {
            // A short write (ENOSPC halfway) would leave a torn line that the next append
            // glues onto: cut it off (shrinking needs no space).
            let _ = f.set_len(before);
            return Err(Error::io(&path, e));
        }
        // Read back what we wrote (and anything raced in before it) in order.
        self.catch_up()?;
        Ok(())
    }

    /// Record a ban. Returns only once it is on disk: then change the firewall.
    pub fn record_ban(&mut self, ban: Ban) -> Result<()> {
        self.append(vec![Record::Ban(ban)])
    }

    /// Record many bans with one write and one fsync.
    pub fn record_bans(&mut self, bans: Vec<Ban>) -> Result<()> {
        self.append(bans.into_iter().map(Record::Ban).collect())
    }

    /// Write what only memory holds, if anything. Ok(n) records written.
    pub fn retry_unwritten(&mut self) -> Result<usize> {
        let n = self.unwritten.len();
        if n == 0 {
            return Ok(0);
        }
        self.append(vec![])?;
        Ok(n)
    }

    /// Records held in memory only (the journal could not be written).
    pub fn unwritten(&self) -> usize {
        self.unwritten.len()
    }

    /// Why the journal cannot be written, while it cannot.
    pub fn journal_error(&self) -> Option<&str> {
        self.journal_error.as_deref()
    }

    pub fn record_unban(&mut self, net: IpNet, why: &str, now: i64) -> Result<()> {
        self.append(vec![Record::Unban {
            net,
            at: now,
            why: why.into(),
        }])
    }

    pub fn record_unban_all(&mut self, now: i64) -> Result<()> {
        self.append(vec![Record::UnbanAll { at: now }])
    }

    /// Pick up changes made by other processes (`astpatch ban`/`unban`). True if any.
    pub fn refresh(&mut self) -> Result<bool> {
        let _l = self.lock()?;
        self.catch_up()
    }

    /// Bans in force at `now`.
    pub fn active_bans(&self, now: i64) -> Vec<Ban> {
        self.bans
            .values()
            .filter(|b| b.until.is_none_or(|u| u > now))
            .cloned()
            .collect()
    }

    /// Bans whose time is up at `now` (still recorded until unbanned).
    pub fn expired(&self, now: i64) -> Vec<IpNet> {
        self.bans
            .values()
            .filter(|b| b.until.is_some_and(|u| u <= now))
            .map(|b| b.net)
            .collect()
    }

    pub fn get(&self, net: &IpNet) -> Option<&Ban> {
        self.bans.get(net)
    }

    /// How many times `net` was banned before (for bantime_increment).
    pub fn previous_bans(&self, net: &IpNet) -> u32 {
        self.history.get(net).copied().unwrap_or(0)
    }

    pub fn total_banned(&self) -> u64 {
        self.total_banned
    }

    /// Journal lines since the last compaction.
    pub fn journal_lines(&self) -> u64 {
        self.lines
    }

    /// Rewrite the journal as a snapshot (live bans, history, totals) via temp+rename.
    /// Expired bans at `now` are dropped from the snapshot.
    pub fn compact(&mut self, now: i64) -> Result<()> {
        let _l = self.lock()?;
        self.catch_up()?;
        let path = self.journal();
        // Ban records bump history and totals when read back, so they go first and the
        // History/Totals records after them set the exact values.
        let mut records: Vec<Record> = self.active_bans(now).into_iter().map(Record::Ban).collect();
        records.extend(self.history.iter().map(|(net, n)| Record::History {
            net: *net,
            bans: *n,
        }));
        records.push(Record::Totals {
            total_banned: self.total_banned,
        });
        crate::atomic::replace_with(&path, Some(0o600), |w| {
            for r in &records {
                serde_json::to_writer(&mut *w, r)?;
                w.write_all(b"\n")?;
            }
            Ok(())
        })
        .map_err(|e| Error::io(&path, e))?;
        // The snapshot was made from memory, which held the unwritten records too.
        self.unwritten.clear();
        self.journal_error = None;
        self.reset();
        self.catch_up()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ban(net: &str, until: Option<i64>) -> Ban {
        Ban {
            net: net.parse().unwrap(),
            until,
            reason: "chan-sip-auth".into(),
            failures: 5,
            banned_at: 100,
        }
    }

    #[test]
    fn bans_survive_reopen_and_unban_sticks() {
        let d = tempfile::tempdir().unwrap();
        let mut s = State::open(d.path()).unwrap();
        s.record_ban(ban("192.0.2.1/32", Some(200))).unwrap();
        s.record_ban(ban("2001:db8::/64", None)).unwrap();
        s.record_ban(ban("192.0.2.9/32", Some(200))).unwrap();
        s.record_unban("192.0.2.9/32".parse().unwrap(), "manual", 150)
            .unwrap();
        let s2 = State::open(d.path()).unwrap();
        let nets: Vec<String> = s2
            .active_bans(150)
            .iter()
            .map(|b| b.net.to_string())
            .collect();
        assert_eq!(nets, ["192.0.2.1/32", "2001:db8::/64"]);
        assert_eq!(
            s2.expired(200),
            vec!["192.0.2.1/32".parse::<IpNet>().unwrap()]
        );
        assert_eq!(s2.active_bans(200).len(), 1);
        assert_eq!(s2.total_banned(), 3);
    }

    #[test]
    fn another_writer_is_seen_by_refresh() {
        let d = tempfile::tempdir().unwrap();
        let mut watcher = State::open(d.path()).unwrap();
        let mut cli = State::open(d.path()).unwrap();
        cli.record_ban(ban("198.51.100.4/32", None)).unwrap();
        assert!(watcher.refresh().unwrap());
        assert_eq!(watcher.active_bans(0).len(), 1);
        cli.record_unban_all(5).unwrap();
        watcher.refresh().unwrap();
        assert!(watcher.active_bans(0).is_empty());
        assert!(!watcher.refresh().unwrap(), "nothing new");
    }

    #[test]
    fn torn_last_line_is_dropped_and_next_append_is_clean() {
        let d = tempfile::tempdir().unwrap();
        let mut s = State::open(d.path()).unwrap();
        s.record_ban(ban("192.0.2.1/32", None)).unwrap();
        drop(s);
        let j = d.path().join(JOURNAL);
        let mut f = OpenOptions::new().append(true).open(&j).unwrap();
        f.write_all(br#"{"op":"ban","net":"192.0.2.2/32","unt"#)
            .unwrap();
        drop(f);
        let mut s = State::open(d.path()).unwrap();
        assert!(s.recovered_from.is_none());
        assert_eq!(s.active_bans(0).len(), 1);
        s.record_ban(ban("192.0.2.3/32", None)).unwrap();
        let s = State::open(d.path()).unwrap();
        assert_eq!(s.active_bans(0).len(), 2);
    }

    #[test]
    fn corrupt_journal_is_kept_aside_and_store_starts_empty() {
        let d = tempfile::tempdir().unwrap();
        let j = d.path().join(JOURNAL);
        fs::write(&j, "{\"op\":\"ban\"}\n garbage \n").unwrap();
        let s = State::open(d.path()).unwrap();
        let aside = s.recovered_from.clone().expect("recovered");
        assert!(aside.exists() && !j.exists());
        assert_eq!(
            fs::read_to_string(aside).unwrap(),
            "{\"op\":\"ban\"}\n garbage \n"
        );
        assert!(s.active_bans(0).is_empty());
    }

    #[test]
    fn compaction_keeps_live_bans_history_and_totals() {
        let d = tempfile::tempdir().unwrap();
        let mut s = State::open(d.path()).unwrap();
        for _ in 0..3 {
            s.record_ban(ban("192.0.2.1/32", Some(1000))).unwrap();
        }
        s.record_ban(ban("192.0.2.2/32", Some(50))).unwrap();
        s.record_unban("192.0.2.1/32".parse().unwrap(), "expired", 10)
            .unwrap();
        s.record_ban(ban("192.0.2.1/32", Some(1000))).unwrap();
        s.compact(60).unwrap();
        let s = State::open(d.path()).unwrap();
        assert_eq!(s.active_bans(60).len(), 1);
        assert!(
            s.get(&"192.0.2.2/32".parse().unwrap()).is_none(),
            "expired dropped"
        );
        assert_eq!(s.previous_bans(&"192.0.2.1/32".parse().unwrap()), 4);
        assert_eq!(s.previous_bans(&"192.0.2.2/32".parse().unwrap()), 1);
        assert_eq!(s.total_banned(), 5);
        assert!(s.journal_lines() < 8);
    }

    #[test]
    fn read_only_view_repairs_nothing() {
        let d = tempfile::tempdir().unwrap();
        assert!(
            State::load(&d.path().join("absent"))
                .unwrap()
                .active_bans(0)
                .is_empty()
        );
        assert!(
            !d.path().join("absent").exists(),
            "load created the directory"
        );
        let mut s = State::open(d.path()).unwrap();
        s.record_ban(ban("192.0.2.1/32", None)).unwrap();
        let j = d.path().join(JOURNAL);
        let mut f = OpenOptions::new().append(true).open(&j).unwrap();
        f.write_all(b"{\"op\":\"ba").unwrap();
        let before = fs::read(&j).unwrap();
        assert_eq!(State::load(d.path()).unwrap().active_bans(0).len(), 1);
        assert_eq!(
            fs::read(&j).unwrap(),
            before,
            "torn tail left for the watcher"
        );
        fs::write(&j, "garbage\n").unwrap();
        let e = State::load(d.path()).err().expect("corrupt is an error");
        assert!(e.to_string().contains("corrupt"), "{e}");
        assert!(j.exists(), "not moved aside by a reader");
    }

    #[test]
    fn second_watcher_refuses() {
        let d = tempfile::tempdir().unwrap();
        assert!(!watcher_running(d.path()));
        let _first = lock_watcher(d.path()).unwrap();
        assert!(watcher_running(d.path()));
        let e = lock_watcher(d.path()).err().expect("second must refuse");
        assert!(e.to_string().contains("already uses"), "{e}");
    }
}
