//! `astpatch watch`: the loop around the engine — follow the logs, feed lines and ticks, keep
//! the pid file, stop cleanly on SIGTERM/SIGINT (bans stay in the firewall and the state),
//! re-read the settings on SIGHUP.
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::config::{Backend, Settings};
use crate::error::{Error, Result};
use crate::exit_codes;
use crate::firewall::{self, SystemRunner, now_secs};
use crate::follow::{Event, FollowOptions, Follower};
use crate::state::{self, State};
use crate::watch::Engine;

pub struct WatchArgs {
    pub ban: bool,
    /// The settings file, read again on SIGHUP.
    pub config: Option<PathBuf>,
    pub logs: Vec<PathBuf>,
    pub backend: Option<Backend>,
    pub state_dir: Option<PathBuf>,
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

/// The command line's overrides on top of a settings file's values.
fn overridden(mut settings: Settings, args: &WatchArgs) -> Settings {
    if !args.logs.is_empty() {
        settings.logs = args.logs.clone();
    }
    if let Some(b) = args.backend {
        settings.backend = b;
    }
    if let Some(d) = &args.state_dir {
        settings.state_dir = d.clone();
    }
    settings
}

/// Which chan_sip tails `settings` make the engine believe, with the source it learns new
/// builds' tags from.
/// builds' tags from. With `record`, every tag learnt is kept in the state dir, so lines of a
/// build whose module is replaced later stay believable in replays (scan, --from-start).
fn apply_tail_trust(
    engine: &mut Engine,
    settings: &Settings,
    record: bool,
) -> crate::tail_trust::TailTrust {
    let trust = crate::tail_trust::decide_live(settings);
    let keep = move |s: &Settings, tags: &[crate::module_tag::Tag]| {
        if record && !tags.is_empty() {
            if let Err(e) = crate::tail_trust::record(&s.state_dir, tags) {
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
        let tags = crate::tail_trust::decide_live(&s).options.known_tags;
        keep(&s, &tags);
        tags
    }));
    trust
}

pub fn run_watch(settings: Settings, args: WatchArgs) -> Result<u8> {
    let settings = overridden(settings, &args);
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
    let mut follower = Follower::new(
        &settings.logs,
        FollowOptions {
            from_start: args.from_start,
            ..FollowOptions::default()
        },
    );
    let out = Box::new(std::io::stdout());
    let local = crate::policy::local_addresses();
    let ipv6 = firewall::ipv6::host_has_ipv6();
    let mut _lock = None;
    let mut engine = if args.ban {
        let lock = state::lock_watcher(&settings.state_dir)?;
        let fw_lock = state::lock_firewall(&settings.state_dir)?;
        _lock = Some((lock, fw_lock));
        let st = State::open(&settings.state_dir)?;
        let mut fw =
            firewall::for_backend_with(settings.backend, Box::new(SystemRunner::host()), ipv6);
        fw.ensure()?;
        let mut e = Engine::new(
            settings.clone(),
            Some(st),
            Some(fw),
            local,
            args.from_start,
            out,
        );
        // Tests shorten the periodic firewall check; operators have no reason to.
        if let Some(secs) = std::env::var("ASTPATCH_RECHECK_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            e.set_recheck_every(secs);
        }
        let r = e.reconcile(now_secs())?;
        println!(
            "astpatch watch: backend {}, {} active bans ({} re-added to the firewall, {} unknown removed, {} expired)",
            settings.backend, r.active, r.readded, r.removed_unknown, r.expired
        );
        state::write_pid_file(
            &settings.state_dir,
            &state::PidFile {
                pid: std::process::id(),
                logs: settings.logs.clone(),
                backend: settings.backend,
                started_at: now_secs(),
            },
        )?;
        e
    } else {
        println!("astpatch watch: report only (no --ban): nothing is banned");
        let mut e = Engine::new(settings.clone(), None, None, local, args.from_start, out);
        e.set_ipv6(ipv6);
        e
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
    let result = (|| -> Result<()> {
        while !STOP.load(Ordering::SeqCst) {
            let now = now_secs();
            // Both callbacks need the engine; events are rare, so collect them and apply
            // them in order before each line.
            let events = std::cell::RefCell::new(Vec::<std::path::PathBuf>::new());
            let engine_cell = std::cell::RefCell::new(&mut engine);
            follower.read_available(
                &mut |path, line| {
                    let mut e = engine_cell.borrow_mut();
                    for p in events.borrow_mut().drain(..) {
                        e.file_restarted(&p);
                    }
                    e.on_log_line(path, line, now);
                },
                &mut |ev| match ev {
                    Event::Opened(p) => {
                        println!("following {}", p.display());
                        events.borrow_mut().push(p);
                    }
                    Event::Rotated(p) => {
                        println!("{} was rotated; following the new file", p.display());
                        events.borrow_mut().push(p);
                    }
                    Event::Truncated(p) => {
                        println!("{} was truncated; reading from its start", p.display());
                        events.borrow_mut().push(p);
                    }
                    Event::LineTooLong(p) => {
                        println!("warning: {}: skipped an overlong line", p.display())
                    }
                },
            );
            for p in events.borrow_mut().drain(..) {
                engine_cell.borrow_mut().file_restarted(&p);
            }
            engine.tick(now_secs())?;
            if RELOAD.swap(false, Ordering::SeqCst) {
                reload(&mut engine, &args);
                if let Some(f) = &fleet {
                    f.set_settings(engine.settings());
                }
            }
            follower.wait(Duration::from_millis(250));
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

/// SIGHUP: read the settings file again. Invalid settings keep the old ones; what only a
/// restart can change (logs, backend, state_dir) is kept and said.
fn reload(engine: &mut Engine, args: &WatchArgs) {
    let new = match Settings::load(args.config.as_deref()) {
        Ok(s) => overridden(s, args),
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
