//! Follow log files like `tail -F`, delivering whole lines only. Survives rotation by rename
//! (the old file is read to its end before switching), copytruncate and plain truncation
//! (reading restarts at 0), delete-and-recreate, and logs that do not exist yet (waited for).
//! Wake-ups come from inotify (the `notify` crate, watching each log's directory); when that
//! is unavailable, or as a safety net, the files are polled.
use std::fs::{self, File};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

#[derive(Debug, Clone)]
pub struct FollowOptions {
    /// Read files that exist at start from their beginning rather than their end.
    pub from_start: bool,
    /// Longer lines are skipped (with one warning each), keeping memory bounded.
    pub max_line: usize,
    /// How often files are checked without an inotify event.
    pub poll: Duration,
    /// Do not use inotify at all (polling only).
    pub no_inotify: bool,
}

impl Default for FollowOptions {
    fn default() -> Self {
        FollowOptions {
            from_start: false,
            max_line: 64 * 1024,
            poll: Duration::from_secs(1),
            no_inotify: false,
        }
    }
}

struct Tailed {
    path: PathBuf,
    file: Option<File>,
    id: (u64, u64),
    pos: u64,
    partial: Vec<u8>,
    skipping: bool,
    /// Still the file that existed at start (position starts at its end unless from_start).
    at_start: bool,
}

pub struct Follower {
    files: Vec<Tailed>,
    opts: FollowOptions,
    rx: Option<Receiver<()>>,
    _watcher: Option<notify::RecommendedWatcher>,
    buf: Vec<u8>,
}

/// What happened while reading (for the operator's log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Opened(PathBuf),
    Rotated(PathBuf),
    Truncated(PathBuf),
    LineTooLong(PathBuf),
}

impl Follower {
    pub fn new(paths: &[PathBuf], opts: FollowOptions) -> Follower {
        let (rx, watcher) = if opts.no_inotify {
            (None, None)
        } else {
            let (tx, rx) = channel();
            match notify::recommended_watcher(move |_res| {
                let _ = tx.send(());
            }) {
                Ok(mut w) => {
                    let mut any = false;
                    for p in paths {
                        let dir = p.parent().filter(|d| !d.as_os_str().is_empty());
                        let dir = dir.unwrap_or(Path::new("."));
                        any |= w.watch(dir, RecursiveMode::NonRecursive).is_ok();
                    }
                    if any {
                        (Some(rx), Some(w))
                    } else {
                        (None, None)
                    }
                }
                Err(_) => (None, None),
            }
        };
        let mut f = Follower {
            files: paths
                .iter()
                .map(|p| Tailed {
                    path: p.clone(),
                    file: None,
                    id: (0, 0),
                    pos: 0,
                    partial: Vec::new(),
                    skipping: false,
                    at_start: true,
                })
                .collect(),
            opts,
            rx,
            _watcher: watcher,
            buf: vec![0; 64 * 1024],
        };
        // "Start at the end" means the end as of now, not as of the first read.
        if !f.opts.from_start {
            let opts = f.opts.clone();
            for t in &mut f.files {
                if fs::metadata(&t.path).is_ok_and(|m| m.is_file()) {
                    open(t, &opts, &mut |_| {});
                }
            }
        }
        // A log that appears later is new: all of it is read.
        for t in &mut f.files {
            t.at_start = false;
        }
        f
    }

    /// True when inotify delivers wake-ups (otherwise only polling).
    pub fn using_inotify(&self) -> bool {
        self.rx.is_some()
    }

    /// Block until something may have changed, or `timeout` passes (capped by the poll interval).
    pub fn wait(&mut self, timeout: Duration) {
        let t = timeout.min(self.opts.poll);
        match &self.rx {
            Some(rx) => match rx.recv_timeout(t) {
                Ok(()) => while rx.try_recv().is_ok() {},
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => self.rx = None,
            },
            None => std::thread::sleep(t),
        }
    }

    /// Deliver every whole line available now, in file order. Never blocks.
    pub fn read_available(
        &mut self,
        on_line: &mut dyn FnMut(&Path, &[u8]),
        on_event: &mut dyn FnMut(Event),
    ) {
        let opts = self.opts.clone();
        for t in &mut self.files {
            poll_one(t, &opts, &mut self.buf, on_line, on_event);
        }
    }
}

fn file_id(m: &fs::Metadata) -> (u64, u64) {
    (m.dev(), m.ino())
}

fn poll_one(
    t: &mut Tailed,
    opts: &FollowOptions,
    buf: &mut [u8],
    on_line: &mut dyn FnMut(&Path, &[u8]),
    on_event: &mut dyn FnMut(Event),
) {
    let meta = fs::metadata(&t.path).ok().filter(|m| m.is_file());
    match (&meta, t.file.is_some()) {
        (None, _) => {
            // Gone (renamed or deleted): keep reading the old file, the writer may still be
            // appending to it until it reopens the path.
            t.at_start = false;
        }
        (Some(_), false) => open(t, opts, on_event),
        (Some(m), true) if file_id(m) != t.id => {
            // Rotated or recreated: finish the old file, then switch.
            read_lines(t, opts, buf, on_line, on_event);
            t.partial.clear();
            t.skipping = false;
            t.at_start = false;
            on_event(Event::Rotated(t.path.clone()));
            open(t, opts, on_event);
        }
        (Some(m), true) if m.len() < t.pos => {
            // copytruncate or truncation: the content we had read is gone; start over.
            t.pos = 0;
            t.partial.clear();
            t.skipping = false;
            on_event(Event::Truncated(t.path.clone()));
        }
        _ => {}
    }
    read_lines(t, opts, buf, on_line, on_event);
}

fn open(t: &mut Tailed, opts: &FollowOptions, on_event: &mut dyn FnMut(Event)) {
    if let Ok(f) = File::open(&t.path) {
        // Identify what we opened (not what we stat'ed a moment earlier).
        let Ok(fm) = f.metadata() else { return };
        t.id = file_id(&fm);
        t.pos = if t.at_start && !opts.from_start {
            fm.len()
        } else {
            0
        };
        t.at_start = false;
        t.file = Some(f);
        on_event(Event::Opened(t.path.clone()));
    }
}

fn read_lines(
    t: &mut Tailed,
    opts: &FollowOptions,
    buf: &mut [u8],
    on_line: &mut dyn FnMut(&Path, &[u8]),
    on_event: &mut dyn FnMut(Event),
) {
    let Some(f) = &t.file else { return };
    loop {
        let n = match f.read_at(buf, t.pos) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        t.pos += n as u64;
        let mut chunk = &buf[..n];
        while let Some(i) = memchr::memchr(b'\n', chunk) {
            let (head, rest) = (&chunk[..i], &chunk[i + 1..]);
            if t.skipping {
                t.skipping = false;
            } else if t.partial.is_empty() {
                on_line(&t.path, head);
            } else {
                t.partial.extend_from_slice(head);
                if t.partial.len() <= opts.max_line {
                    on_line(&t.path, &t.partial);
                } else {
                    on_event(Event::LineTooLong(t.path.clone()));
                }
                t.partial.clear();
            }
            chunk = rest;
        }
        if !t.skipping {
            t.partial.extend_from_slice(chunk);
            if t.partial.len() > opts.max_line {
                t.partial.clear();
                t.skipping = true;
                on_event(Event::LineTooLong(t.path.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    struct Harness {
        f: Follower,
        lines: Vec<String>,
        events: Vec<Event>,
    }

    impl Harness {
        fn new(paths: &[PathBuf], from_start: bool, max_line: usize) -> Harness {
            let opts = FollowOptions {
                from_start,
                max_line,
                poll: Duration::from_millis(20),
                no_inotify: true,
            };
            Harness {
                f: Follower::new(paths, opts),
                lines: vec![],
                events: vec![],
            }
        }
        fn read(&mut self) -> Vec<String> {
            let (lines, events) = (&mut self.lines, &mut self.events);
            lines.clear();
            self.f.read_available(
                &mut |_, l| lines.push(String::from_utf8_lossy(l).into_owned()),
                &mut |e| events.push(e),
            );
            lines.clone()
        }
    }

    fn append(p: &Path, text: &str) {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn starts_at_end_and_delivers_whole_lines_only() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("messages");
        append(&p, "old line\n");
        let mut h = Harness::new(std::slice::from_ref(&p), false, 1000);
        assert!(h.read().is_empty(), "old content skipped");
        append(&p, "one\ntw");
        assert_eq!(h.read(), ["one"]);
        append(&p, "o\n");
        assert_eq!(h.read(), ["two"]);
    }

    #[test]
    fn from_start_reads_existing_content() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("messages");
        append(&p, "a\nb\n");
        let mut h = Harness::new(&[p], true, 1000);
        assert_eq!(h.read(), ["a", "b"]);
    }

    #[test]
    fn rotation_by_rename_finishes_old_file_then_reads_new_from_start() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("messages");
        append(&p, "");
        let mut h = Harness::new(std::slice::from_ref(&p), false, 1000);
        h.read();
        append(&p, "before\n");
        fs::rename(&p, d.path().join("messages.1")).unwrap();
        // The writer still has the old file open for a moment.
        append(&d.path().join("messages.1"), "late write to old\n");
        assert_eq!(h.read(), ["before", "late write to old"]);
        append(&p, "after\n");
        assert_eq!(h.read(), ["after"]);
        assert!(h.events.contains(&Event::Rotated(p.clone())));
    }

    #[test]
    fn copytruncate_and_truncation_restart_at_zero() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("messages");
        append(&p, "");
        let mut h = Harness::new(std::slice::from_ref(&p), false, 1000);
        append(&p, "first line is long\n");
        assert_eq!(h.read(), ["first line is long"]);
        fs::copy(&p, d.path().join("messages.1")).unwrap();
        fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(0)
            .unwrap();
        h.read();
        append(&p, "new\n");
        assert_eq!(h.read(), ["new"]);
        assert!(h.events.contains(&Event::Truncated(p.clone())));
    }

    #[test]
    fn delete_and_recreate_and_late_appearance() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("not-yet");
        let mut h = Harness::new(std::slice::from_ref(&p), false, 1000);
        assert!(h.read().is_empty());
        append(&p, "created later is read from its start\n");
        assert_eq!(h.read(), ["created later is read from its start"]);
        fs::remove_file(&p).unwrap();
        assert!(h.read().is_empty());
        append(&p, "recreated\n");
        assert_eq!(h.read(), ["recreated"]);
    }

    #[test]
    fn a_log_created_after_start_is_read_whole_even_before_the_first_look() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("late");
        let mut h = Harness::new(std::slice::from_ref(&p), false, 1000);
        append(&p, "one\ntwo\n");
        assert_eq!(h.read(), ["one", "two"]);
    }

    #[test]
    fn overlong_lines_are_skipped_and_binary_is_fine() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("messages");
        append(&p, "");
        let mut h = Harness::new(std::slice::from_ref(&p), false, 10);
        append(&p, "short\n");
        append(&p, &"x".repeat(50));
        assert_eq!(h.read(), ["short"]);
        append(&p, "yyy\nok\n\u{0}\u{1}bin\n");
        assert_eq!(h.read(), ["ok", "\u{0}\u{1}bin"]);
        assert!(h.events.contains(&Event::LineTooLong(p.clone())));
    }

    #[test]
    fn inotify_wakes_the_waiter_promptly() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("messages");
        append(&p, "");
        let opts = FollowOptions {
            poll: Duration::from_secs(10),
            ..FollowOptions::default()
        };
        let mut f = Follower::new(std::slice::from_ref(&p), opts);
        assert!(f.using_inotify());
        f.read_available(&mut |_, _| {}, &mut |_| {});
        let p2 = p.clone();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            append(&p2, "wake\n");
        });
        let t = std::time::Instant::now();
        f.wait(Duration::from_secs(10));
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "woken by inotify, not the timeout"
        );
        writer.join().unwrap();
        let mut got = vec![];
        f.read_available(&mut |_, l| got.push(l.to_vec()), &mut |_| {});
        assert_eq!(got, [b"wake".to_vec()]);
    }
}
