//! The watcher link: a watcher runs with --ban (under systemd or by hand) and follows the
//! files the failures are written to.
use super::*;

/// What a pid names, judged from its command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcKind {
    /// `astpatch … watch … --ban`.
    Banning,
    /// `astpatch … watch` without `--ban`: it reports, it bans nothing.
    ReportOnly,
    /// No such process, or something else that reused the pid.
    Other,
}

/// Classify a `/proc/PID/cmdline` (NUL-separated argv).
pub fn classify_cmdline(cmdline: &[u8]) -> ProcKind {
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let Some(me) = args.iter().position(|a| {
        let name = a.rsplit(|&b| b == b'/').next().unwrap_or(a);
        memchr::memmem::find(name, b"astpatch").is_some()
    }) else {
        return ProcKind::Other;
    };
    let rest = &args[me + 1..];
    if !rest.iter().any(|a| *a == b"watch") {
        ProcKind::Other
    } else if rest.iter().any(|a| *a == b"--ban") {
        ProcKind::Banning
    } else {
        ProcKind::ReportOnly
    }
}

/// What `pid` is now (pid files outlive crashes, and pids are reused).
pub(super) fn process_kind(pid: u32) -> ProcKind {
    // SAFETY: signal 0 only checks for existence and permission.
    let exists = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if !exists {
        return ProcKind::Other;
    }
    match fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmd) => classify_cmdline(&cmd),
        // /proc hidden (hidepid): the process exists, and the pid file says it bans.
        Err(_) => ProcKind::Banning,
    }
}

/// The watcher as its pid file and the process it names show it.
#[derive(Debug, Clone)]
pub enum WatcherProcess {
    NoPidFile,
    Gone(u32),
    Running(state::PidFile, ProcKind),
    /// No banning watcher, but `astpatch watch` without --ban runs (these pids).
    OnlyReportOnly(Vec<u32>),
}

/// Pids of `astpatch watch` processes without --ban, from a /proc-like directory.
pub fn report_only_watchers(proc_dir: &Path) -> Vec<u32> {
    let Ok(entries) = fs::read_dir(proc_dir) else {
        return vec![];
    };
    let mut pids: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != std::process::id())
        .filter(|pid| {
            fs::read(proc_dir.join(pid.to_string()).join("cmdline"))
                .is_ok_and(|c| classify_cmdline(&c) == ProcKind::ReportOnly)
        })
        .collect();
    pids.sort_unstable();
    pids
}

pub(super) const START_WATCHER: &str = "start it: systemctl start astpatch (unit from `astpatch install-watcher`), or run `astpatch watch --ban`";
pub(super) const RESTART_WITH_BAN: &str = "restart it with --ban: stop it, then `astpatch watch --ban` or systemctl restart astpatch (unit from `astpatch install-watcher`)";

pub(super) fn check_watcher(root: &Path, state_dir: &Path, notice_files: &[PathBuf]) -> Check {
    let unit = unit_file::unit_state(root, &unit_file::SystemSystemctl);
    let process = if !state_dir.is_dir() {
        WatcherProcess::NoPidFile
    } else {
        match state::read_pid_file(state_dir) {
            None => WatcherProcess::NoPidFile,
            Some(p) => match process_kind(p.pid) {
                ProcKind::Other => WatcherProcess::Gone(p.pid),
                kind => WatcherProcess::Running(p, kind),
            },
        }
    };
    // A report-only watcher writes no pid file; look for one, but only on the real system
    // (a temp --root has no processes of its own).
    let process = match process {
        WatcherProcess::NoPidFile | WatcherProcess::Gone(_) if root == Path::new("/") => {
            match report_only_watchers(Path::new("/proc")) {
                pids if pids.is_empty() => process,
                pids => WatcherProcess::OnlyReportOnly(pids),
            }
        }
        p => p,
    };
    judge_watcher(root, state_dir, &process, &unit, notice_files)
}

pub(super) fn unit_without_ban_fix(f: &unit_file::UnitFile) -> String {
    format!(
        "{} runs the watcher without --ban: put --ban back on its ExecStart= (or re-run `astpatch install-watcher`), then systemctl daemon-reload && systemctl restart astpatch",
        shown(&f.path)
    )
}

/// The watcher check's decision, free of effects: pid file and process, systemd's view of
/// the unit, and the files NOTICE goes to.
pub fn judge_watcher(
    root: &Path,
    state_dir: &Path,
    process: &WatcherProcess,
    unit: &UnitState,
    notice_files: &[PathBuf],
) -> Check {
    const NAME: &str = "watcher";
    let report_only_runs = matches!(process, WatcherProcess::OnlyReportOnly(_));
    if !state_dir.is_dir() && !unit.installed() && !report_only_runs {
        return Check::new(
            NAME,
            Status::Skipped,
            format!(
                "no watcher installed yet ({} does not exist)",
                shown(state_dir)
            ),
        );
    }
    let with_unit = |detail: String| match unit.describe() {
        Some(u) => format!("{detail}; {u}"),
        None => detail,
    };
    let unit_report_only = unit.file.as_ref().filter(|f| !f.bans);
    let pid = match process {
        WatcherProcess::Running(pid, ProcKind::Banning) => pid,
        WatcherProcess::Running(pid, _) => {
            return Check::new(
                NAME,
                Status::Fail,
                with_unit(format!(
                    "running (pid {}) report-only, without --ban: it bans nothing",
                    pid.pid
                )),
            )
            .fix(RESTART_WITH_BAN);
        }
        WatcherProcess::OnlyReportOnly(pids) => {
            let list: Vec<String> = pids.iter().map(u32::to_string).collect();
            return Check::new(
                NAME,
                Status::Fail,
                with_unit(format!(
                    "no watcher bans: `astpatch watch` runs report-only, without --ban (pid {}); it bans nothing",
                    list.join(", ")
                )),
            )
            .fix(match unit_report_only {
                Some(f) => unit_without_ban_fix(f),
                None => RESTART_WITH_BAN.into(),
            });
        }
        not_running => {
            let why = match not_running {
                WatcherProcess::Gone(pid) => {
                    format!("not running: pid {pid} from {} is gone", state::PID_FILE)
                }
                _ => format!(
                    "not running: no {} in {}",
                    state::PID_FILE,
                    shown(state_dir)
                ),
            };
            let fix = if let Some(f) = unit_report_only {
                unit_without_ban_fix(f)
            } else {
                match unit.loaded() {
                    Some(s) if s.active == "active" => format!(
                        "systemctl restart astpatch; if it still writes no pid file, its --config must use state_dir {}",
                        shown(state_dir)
                    ),
                    Some(s) if s.enabled == "enabled" => {
                        "systemctl restart astpatch (journalctl -u astpatch says why it stopped)"
                            .into()
                    }
                    Some(_) => "systemctl enable --now astpatch".into(),
                    None => START_WATCHER.into(),
                }
            };
            return Check::new(NAME, Status::Fail, with_unit(why)).fix(fix);
        }
    };
    let follows: BTreeSet<PathBuf> = pid.logs.iter().map(|l| under(root, l)).collect();
    match notice_files.iter().find(|f| follows.contains(*f)) {
        None if !notice_files.is_empty() => Check::new(
            NAME,
            Status::Fail,
            with_unit(format!(
                "running (pid {}) but not following {}, where NOTICE goes",
                pid.pid,
                shown(&notice_files[0])
            )),
        )
        .fix(format!(
            "add \"{}\" to logs in astpatch.toml and restart the watcher",
            shown(&notice_files[0])
        )),
        followed => {
            let mut detail = format!("running (pid {}, backend {})", pid.pid, pid.backend);
            if let Some(f) = followed {
                detail.push_str(&format!(", following {}", shown(f)));
            }
            let detail = with_unit(detail);
            // Running now, but a unit that is not enabled will not bring it back after a reboot.
            match unit.loaded() {
                Some(s) if s.enabled != "enabled" => Check::new(NAME, Status::Warn, detail)
                    .fix("systemctl enable astpatch, so it starts at boot"),
                _ => Check::new(NAME, Status::Pass, detail),
            }
        }
    }
}

/// What the running watcher says is wrong with its storage and logs (health.json): a ban
/// journal it cannot write, logs it cannot read. No row when all is well.
pub fn judge_health(h: Option<&state::Health>) -> Option<Check> {
    const NAME: &str = "watcher-health";
    let h = h?;
    let mut what = vec![];
    let mut fixes = vec![];
    if let Some(e) = &h.journal_error {
        what.push(format!(
            "cannot write its ban journal ({e}); {} records are held in memory only and a crash would lose them",
            h.unwritten
        ));
        fixes.push(
            "free space (or fix the file system) under the state dir; the watcher writes them as soon as it can"
                .to_string(),
        );
    }
    if !h.unreadable.is_empty() {
        let list: Vec<String> = h
            .unreadable
            .iter()
            .map(|u| format!("{} ({})", shown(&u.path), u.error))
            .collect();
        what.push(format!(
            "cannot read {}: their failures are not counted",
            list.join(", ")
        ));
        fixes.push(
            "let the watcher read them (owner/mode, or the unit's CAP_DAC_READ_SEARCH); it picks them up by itself"
                .to_string(),
        );
    }
    if what.is_empty() {
        return None;
    }
    Some(Check::new(NAME, Status::Fail, what.join("; ")).fix(fixes.join("; ")))
}

#[cfg(test)]
mod health_tests {
    use super::*;

    #[test]
    fn storage_and_log_trouble_of_the_running_watcher_fail_with_a_fix() {
        assert!(judge_health(None).is_none());
        assert!(judge_health(Some(&state::Health::default())).is_none());
        let h = state::Health {
            journal_error: Some("No space left on device (os error 28)".into()),
            unwritten: 12,
            unreadable: vec![state::Unreadable {
                path: "/var/log/asterisk/security".into(),
                error: "Permission denied (os error 13)".into(),
            }],
            updated_at: 1,
        };
        let c = judge_health(Some(&h)).unwrap();
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.detail.contains("No space left") && c.detail.contains("12 records"),
            "{}",
            c.detail
        );
        assert!(
            c.detail
                .contains("/var/log/asterisk/security (Permission denied"),
            "{}",
            c.detail
        );
        let fix = c.fix.unwrap();
        assert!(
            fix.contains("free space") && fix.contains("CAP_DAC_READ_SEARCH"),
            "{fix}"
        );
    }
}
