//! `astpatch watch`: the loop around the engine — follow the logs, feed lines and ticks, keep
//! the pid file, stop cleanly on SIGTERM/SIGINT (bans stay in the firewall and the state),
//! re-read the settings on SIGHUP.
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::ami::client::Note;
use crate::ban::engine::Engine;
use crate::ban::state::{self, State};
use crate::clock::now_secs;
use crate::error::{Error, Result};
use crate::exit_codes;
use crate::firewall::{self, SystemRunner};
use crate::logs::follow::{Event, FollowOptions, Follower};
use crate::settings::{Overrides, Settings};

pub struct WatchArgs {
    pub ban: bool,
    /// The settings file, read again on SIGHUP (with the same overrides on top).
    pub config: Option<PathBuf>,
    pub overrides: Overrides,
    pub from_start: bool,
}

static STOP: AtomicBool = AtomicBool::new(false);
static RELOAD: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

extern "C" fn on_hup(_: libc::c_int) {
    RELOAD.store(true, Ordering::SeqCst);
}

/// Which chan_sip tails `settings` make the engine believe, with the source it learns new
/// builds' tags from.
/// builds' tags from. With `record`, every tag learnt is kept in the state dir, so lines of a
/// build whose module is replaced later stay believable in replays (scan, --from-start).
fn apply_tail_trust(
    engine: &mut Engine,
    settings: &Settings,
    record: bool,
) -> crate::ban::trust::TailTrust {
    let trust = crate::ban::trust::decide_live(settings);
    let keep = move |s: &Settings, tags: &[crate::patch::tag::Tag]| {
        if record && !tags.is_empty() {
            if let Err(e) = crate::ban::trust::record(&s.state_dir, tags) {
                println!(
                    "warning: cannot record the build tags in {}: {e}",
                    s.state_dir.display()
                );
            }
        }
    };
    keep(settings, &trust.options.known_tags);
    engine.set_tail_trust(trust.options.clone());
    let s = settings.clone();
    engine.set_tag_source(Box::new(move || {
        let tags = crate::ban::trust::decide_live(&s).options.known_tags;
        keep(&s, &tags);
        tags
    }));
    trust
}

pub fn run_watch(settings: Settings, args: WatchArgs) -> Result<u8> {
    if settings.logs.is_empty() {
        return Err(Error::input(
            "no log files to follow",
            Some("set logs = [...] in the settings file or pass --log FILE"),
        ));
    }
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGHUP, on_hup as *const () as libc::sighandler_t);
    }
    // Positions are fixed before anything announces readiness (start-up line, pid file), so
    // "start at the end" means the end as of when we said we were watching.
    let mut follower = follow_logs(&settings, &args);
    let out = Box::new(std::io::stdout());
    let local = crate::firewall::host::local_addresses();
    let ipv6 = firewall::ipv6::host_has_ipv6();
    let (mut engine, _locks) = if args.ban {
        let (e, locks) = banning_engine(&settings, &args, local, ipv6, out)?;
        (e, Some(locks))
    } else {
        println!("astpatch watch: report only (no --ban): nothing is banned");
        let mut e = Engine::new(settings.clone(), None, None, local, args.from_start, out);
        e.set_ipv6(ipv6);
        (e, None)
    };
    // The fleet link (CrowdSec LAPI) on a thread of its own; dropped (stopped) at return.
    let fleet = if args.ban {
        crate::fleet::worker::start(&settings, ipv6)?.inspect(|h| {
            let h = h.nudger();
            engine.set_on_ban(Box::new(move || h.nudge()));
        })
    } else {
        None
    };
    let trust = apply_tail_trust(&mut engine, &settings, args.ban);
    announce(&settings, &follower, &trust, ipv6);
    let ami = start_ami(&settings);
    // An AMI event is acted on within this; a log line wakes the wait at once anyway.
    let wait = if ami.is_some() {
        Duration::from_millis(5)
    } else {
        Duration::from_millis(250)
    };
    let mut unreadable_said: Option<i64> = None;
    let mut positions_at = i64::MIN;
    let result = (|| -> Result<()> {
        while !STOP.load(Ordering::SeqCst) {
            let now = now_secs();
            let more = read_once(&mut follower, &mut engine, now, &mut unreadable_said);
            if let Some(rx) = &ami {
                drain_ami(&mut engine, rx, now_secs());
            }
            // The batch of what this read recognised, then housekeeping.
            engine.tick(now_secs())?;
            let unreadable = follower.unreadable();
            if !unreadable.is_empty()
                && unreadable_said.is_none_or(|t| now.saturating_sub(t) >= UNREADABLE_EVERY)
            {
                unreadable_said = Some(now);
                for (p, why) in &unreadable {
                    println!(
                        "error: still cannot read {}: {why}; its failures are not counted",
                        p.display()
                    );
                }
            }
            engine.set_unreadable(unreadable);
            // Positions only after the bans of the lines before them are recorded (tick
            // flushed them): a restart resumes after nothing it has not acted on.
            if args.ban
                && (now.saturating_sub(positions_at) >= POSITIONS_EVERY
                    || STOP.load(Ordering::SeqCst))
            {
                positions_at = now;
                save_positions(&settings.state_dir, &mut follower);
            }
            if RELOAD.swap(false, Ordering::SeqCst) {
                reload(&mut engine, &args);
                if let Some(f) = &fleet {
                    f.set_settings(engine.settings());
                }
            }
            if !more {
                follower.wait(wait);
            }
        }
        if args.ban {
            save_positions(&settings.state_dir, &mut follower);
        }
        Ok(())
    })();
    if args.ban {
        let _ = std::fs::remove_file(settings.state_dir.join(state::PID_FILE));
    }
    result?;
    println!(
        "astpatch watch: stopped; bans stay in place and in {}",
        settings.state_dir.display()
    );
    Ok(exit_codes::SUCCESS)
}

/// One read of every log: each line to the engine, each event said (and a file that starts
/// afresh flushed in order). True when there is more to read at once.
fn read_once(
    follower: &mut Follower,
    engine: &mut Engine,
    now: i64,
    unreadable_said: &mut Option<i64>,
) -> bool {
    // Both callbacks need the engine; events are rare, so collect them and apply
    // them in order before each line.
    let events = std::cell::RefCell::new(Vec::<std::path::PathBuf>::new());
    let engine_cell = std::cell::RefCell::new(engine);
    let more = follower.read_available(
        &mut |path, line, replay| {
            let mut e = engine_cell.borrow_mut();
            for p in events.borrow_mut().drain(..) {
                e.file_restarted(&p);
            }
            e.on_log_line_as(path, line, replay, now);
        },
        &mut |ev| match ev {
            Event::Opened(p) => {
                println!("following {}", p.display());
                events.borrow_mut().push(p);
            }
            Event::Rotated(p) => {
                println!(
                    "{} was rotated; following the new file (the old one is read to its end)",
                    p.display()
                );
                events.borrow_mut().push(p);
            }
            Event::Truncated(p) => {
                println!("{} was truncated; reading from its start", p.display());
                events.borrow_mut().push(p);
            }
            Event::FromCopy(p, copy) => println!(
                "{}: the lines not yet read when it was truncated are read from {}",
                p.display(),
                copy.display()
            ),
            Event::LineTooLong(p) => {
                println!("warning: {}: skipped an overlong line", p.display())
            }
            Event::Unreadable(p, why) => {
                println!("error: cannot read {}: {why}; its failures are not counted until it can be read", p.display());
                *unreadable_said = Some(now);
            }
            Event::Readable(p) => println!("{} can be read again", p.display()),
            Event::Resumed {
                log,
                from,
                offset,
                newer,
            } => {
                if log == from {
                    println!("{}: resuming at byte {offset} where the last run stopped", log.display());
                } else {
                    println!(
                        "{}: rotated while no watcher ran; resuming in {} at byte {offset}, then {newer} newer rotated files and the log",
                        log.display(),
                        from.display()
                    );
                }
            }
            Event::Missed(p, n) => println!(
                "{}: rotated {} more times since the last look; reading those files too",
                p.display(),
                n
            ),
            Event::ResumeLost(p) => println!(
                "{}: the file the last run read is gone; reading the log from its start",
                p.display()
            ),
        },
    );
    for p in events.borrow_mut().drain(..) {
        engine_cell.borrow_mut().file_restarted(&p);
    }
    more
}

/// The logs followed: a banning watcher resumes each where the last one stopped (a report-only
/// run neither reads nor writes positions); --from-start applies to logs without one.
fn follow_logs(settings: &Settings, args: &WatchArgs) -> Follower {
    let resume = if args.ban {
        state::read_positions(&settings.state_dir)
    } else {
        Default::default()
    };
    Follower::new(
        &settings.logs,
        FollowOptions {
            from_start: args.from_start,
            resume,
            lookback: settings.findtime,
            ..FollowOptions::default()
        },
    )
}

/// The banning engine: this watcher owns the state dir and the firewall objects (locks held
/// for its life), the firewall is usable, the kernel agrees with the state, and the pid file
/// says so.
fn banning_engine(
    settings: &Settings,
    args: &WatchArgs,
    local: Vec<std::net::IpAddr>,
    ipv6: bool,
    out: Box<dyn std::io::Write + Send>,
) -> Result<(Engine, (state::FileLock, state::FileLock))> {
    let locks = (
        state::lock_watcher(&settings.state_dir)?,
        state::lock_firewall(&settings.state_dir)?,
    );
    let st = State::open(&settings.state_dir)?;
    let mut fw = firewall::for_backend_with(settings.backend, Box::new(SystemRunner::host()), ipv6);
    fw.keep_session();
    fw.ensure()?;
    let mut e = Engine::new(
        settings.clone(),
        Some(st),
        Some(fw),
        local,
        args.from_start,
        out,
    );
    match state::HealthFile::open(&settings.state_dir) {
        Ok(h) => e.set_health_file(h),
        Err(err) => println!("warning: {err}; `astpatch status` cannot show storage trouble"),
    }
    let r = e.reconcile(now_secs())?;
    println!(
        "astpatch watch: backend {}, {} active bans ({} re-added to the firewall, {} unknown removed, {} expired)",
        settings.backend, r.active, r.readded, r.removed_unknown, r.expired
    );
    // Without it `status` and `verify` do not see the watcher, but it bans all the same:
    // a full disk must not keep it from starting.
    if let Err(err) = state::write_pid_file(
        &settings.state_dir,
        &state::PidFile {
            pid: std::process::id(),
            logs: settings.logs.clone(),
            backend: settings.backend,
            started_at: now_secs(),
        },
    ) {
        println!(
            "error: {err}; banning goes on, but `astpatch status` and `verify` will not see this watcher until it is restarted with room on the disk"
        );
    }
    Ok((e, locks))
}

/// What the operator reads once the watcher is up.
fn announce(
    settings: &Settings,
    follower: &Follower,
    trust: &crate::ban::trust::TailTrust,
    ipv6: bool,
) {
    if !ipv6 {
        println!("{}", firewall::ipv6::OFF_LINE);
    }
    println!("{}", trust.line());
    for l in &settings.logs {
        if !l.exists() {
            println!("waiting for {} to appear", l.display());
        }
    }
    if !follower.using_inotify() {
        println!("inotify unavailable: polling the logs every second");
    }
}

/// The AMI connection on its own thread, when `[ami]` is set.
fn start_ami(settings: &Settings) -> Option<std::sync::mpsc::Receiver<Note>> {
    settings.ami.clone().map(|cfg| {
        println!(
            "AMI: connecting to {}:{} as {} for security events",
            cfg.host, cfg.port, cfg.username
        );
        let (tx, rx) = std::sync::mpsc::sync_channel(4096);
        crate::ami::client::spawn(cfg, tx);
        rx
    })
}

/// What the AMI connection said since the last turn of the loop.
fn drain_ami(engine: &mut Engine, rx: &std::sync::mpsc::Receiver<Note>, now: i64) {
    while let Ok(n) = rx.try_recv() {
        match n {
            Note::Up { banner } => {
                println!("AMI: logged in ({banner}); reading security events");
                engine.set_ami_link(true, format!("reading security events ({banner})"));
            }
            Note::NoSecurityClass { banner } => {
                println!(
                    "AMI: {banner} sends no security events (Asterisk 11); the logs stay the only source"
                );
                engine.set_ami_link(false, format!("no security events from {banner}"));
            }
            Note::Event(v) => {
                engine.on_ami_event(v, now);
            }
            Note::Down { why, retry_in } => {
                println!(
                    "AMI: {why}; trying again in {} (the logs are read meanwhile)",
                    crate::duration::format(retry_in)
                );
                engine.set_ami_link(false, format!("down: {why}"));
            }
        }
    }
}

/// Seconds between two reports of a log that stays unreadable.
pub const UNREADABLE_EVERY: i64 = 300;

/// Seconds between two saves of the logs' positions.
pub const POSITIONS_EVERY: i64 = 2;

/// A position file that cannot be written is a warning, said when it starts failing.
fn save_positions(dir: &std::path::Path, follower: &mut Follower) {
    static FAILING: AtomicBool = AtomicBool::new(false);
    match state::write_positions(dir, &follower.positions()) {
        Ok(()) => {
            if FAILING.swap(false, Ordering::SeqCst) {
                println!("log positions are saved again");
            }
        }
        Err(e) => {
            if !FAILING.swap(true, Ordering::SeqCst) {
                println!(
                    "warning: cannot save the log positions: {e}; a restart now would resume from the last saved ones"
                );
            }
        }
    }
}

/// SIGHUP: read the settings file again. Invalid settings keep the old ones; what only a
/// restart can change (logs, backend, state_dir) is kept and said.
fn reload(engine: &mut Engine, args: &WatchArgs) {
    let new = match Settings::load(args.config.as_deref()) {
        Ok(s) => s.overridden(&args.overrides),
        Err(e) => {
            println!("SIGHUP: the settings are invalid, keeping the old ones: {e}");
            return;
        }
    };
    for note in engine.reload(new.clone()) {
        println!("SIGHUP: {note}");
    }
    let settings = engine.settings().clone();
    let trust = apply_tail_trust(engine, &settings, args.ban);
    println!("SIGHUP: settings reloaded; {}", trust.line());
}
