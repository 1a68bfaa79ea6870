//! `astpatch verify`: prove, link by link, that a failed SIP login ends in a kernel drop rule:
//! patched source → built module → installed module → log file → watcher → firewall.
//! Each check reads the real thing (the .so's bytes, logger.conf, the kernel's rules) and
//! says how to fix what is wrong in one line.
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Serialize;

use crate::asterisk::conf::{self, Directories, under};
use crate::asterisk::logger_conf;
use crate::asterisk::running::{Instance, kind_word};
use crate::ban::state;
use crate::ban::unit_file::{self, UnitState};
use crate::firewall::Backend;
use crate::firewall::Firewall;
use crate::module::install;
use crate::patch::detect::TagState;
use crate::patch::sites::{self, PatchState};
use crate::patch::tag::{self, ModuleKind, Tag};
use crate::settings::Settings;

pub mod ami;
pub mod firewall;
pub mod fleet;
pub mod logging;
pub mod module;
pub mod source;
pub mod watcher;

use ami::*;
use firewall::*;
use fleet::*;
use logging::*;
use module::*;
use source::*;
use watcher::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Pass,
    /// Works, but something deserves attention; does not fail verify.
    Warn,
    Fail,
    /// Does not apply here (no tree given, no watcher installed yet).
    Skipped,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn new(name: &'static str, status: Status, detail: impl Into<String>) -> Check {
        Check {
            name,
            status,
            detail: detail.into(),
            fix: None,
        }
    }
    fn fix(mut self, fix: impl Into<String>) -> Check {
        self.fix = Some(fix.into());
        self
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// True when no applicable check failed.
    pub ok: bool,
    pub checks: Vec<Check>,
}

pub struct Inputs<'a> {
    pub src: Option<&'a Path>,
    /// The system Asterisk and the watcher run on (`/` normally; a temp dir in tests).
    pub root: &'a Path,
    pub moddir: Option<&'a Path>,
    pub settings: &'a Settings,
    /// The running Asterisk, as [`crate::asterisk::running`] found it.
    pub running: Running<'a>,
    /// The asterisk.conf to read when no instance runs [default: /etc/asterisk/asterisk.conf].
    pub asterisk_conf: Option<&'a Path>,
}

/// What the caller learnt about the running Asterisk.
#[derive(Debug, Clone, Copy)]
pub enum Running<'a> {
    /// Processes were not looked at (a `--root` other than `/`).
    NotLooked,
    /// No Asterisk server runs (with the named asterisk.conf, when one was named).
    None,
    Instance(&'a Instance),
}

/// A row only when `patched` overrides the default: both overrides deserve a look.
fn check_trust_setting(patched: crate::settings::Patched) -> Option<Check> {
    use crate::settings::Patched;
    const NAME: &str = "trust";
    match patched {
        Patched::Auto => None,
        Patched::True => Some(
            Check::new(
                NAME,
                Status::Warn,
                "patched = true: untagged chan_sip tails are believed; on a stock module they end in the attacker's From header",
            )
            .fix("tag the module (astpatch apply --rebuild --install --reload SRC), then remove patched = true"),
        ),
        Patched::False => Some(
            Check::new(
                NAME,
                Status::Warn,
                "patched = false: chan_sip failure lines never ban, tagged or not",
            )
            .fix("remove patched = false once the module is patched: tagged lines are then believed"),
        ),
    }
}

/// Run every check. `firewall` opens the backend the watcher uses (argv runner inside).
pub fn verify(inp: &Inputs, firewall: &dyn Fn(Backend) -> Box<dyn Firewall>) -> VerifyReport {
    // The running instance's directories are the ones that matter; else its asterisk.conf.
    let dirs = match inp.running {
        Running::Instance(i) => Some(i.dirs.clone()),
        _ => conf::load_file(
            inp.root,
            inp.asterisk_conf.unwrap_or(Path::new(conf::DEFAULT_PATH)),
        )
        .ok()
        .flatten(),
    };
    let src_state = inp.src.map(source_state);
    let tree_tag = src_state.as_ref().and_then(|st| st.tag);
    let (installed, installed_path) = check_installed(inp, tree_tag);
    let mut checks = vec![
        check_source(inp.src, src_state.as_ref()),
        check_built(inp.src, src_state.as_ref()),
        installed,
        check_loaded(inp, installed_path.as_deref()),
    ];
    let (logging, notice_files) = check_logging(inp, dirs.as_ref());
    checks.push(logging);
    let state_dir = under(inp.root, &inp.settings.state_dir);
    checks.push(check_watcher(inp.root, &state_dir, &notice_files));
    if state::watcher_running(&state_dir) {
        checks.extend(judge_health(state::read_health(&state_dir).as_ref()));
    }
    checks.push(check_firewall(&state_dir, inp.settings, firewall));
    checks.extend(check_ami(inp, dirs.as_ref()));
    checks.extend(check_trust_setting(inp.settings.patched));
    checks.extend(check_fleet(inp.settings, &state_dir));
    VerifyReport {
        ok: checks.iter().all(|c| c.status != Status::Fail),
        checks,
    }
}

fn shown(p: &Path) -> String {
    p.display().to_string()
}

fn src_arg(src: Option<&Path>) -> String {
    src.map(shown).unwrap_or_else(|| "SRC".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_overridden_patched_setting_gets_a_trust_row() {
        use crate::settings::Patched;
        assert!(check_trust_setting(Patched::Auto).is_none());
        let t = check_trust_setting(Patched::True).unwrap();
        assert_eq!(t.status, Status::Warn);
        assert!(t.detail.contains("From header") && t.fix.unwrap().contains("--reload"));
        assert_eq!(
            check_trust_setting(Patched::False).unwrap().status,
            Status::Warn
        );
    }

    #[test]
    fn format_strings_come_out_of_statements_as_compiled() {
        let stmt = b"ast_log(LOG_NOTICE, \"Failed to authenticate device %s (%s) for %s, \"\n\t\t\"code = %d\\n\", a, b);";
        assert_eq!(
            first_literal(stmt).unwrap(),
            b"Failed to authenticate device %s (%s) for %s, code = %d\n"
        );
        assert_eq!(
            first_literal(b"x(\"a\\\"b\\tc\", \"separate\")").unwrap(),
            b"a\"b\tc"
        );
        assert_eq!(first_literal(b"no literal"), None);
    }

    #[test]
    fn a_watcher_is_astpatch_watch_and_bans_only_with_the_flag() {
        let c = |args: &[&str]| classify_cmdline(args.join("\0").as_bytes());
        assert_eq!(
            c(&[
                "/usr/local/bin/astpatch",
                "watch",
                "--ban",
                "--config",
                "/etc/a.toml"
            ]),
            ProcKind::Banning
        );
        assert_eq!(
            c(&["astpatch", "watch", "--log", "/x"]),
            ProcKind::ReportOnly
        );
        // The pid was reused by another astpatch command, or by something else entirely.
        assert_eq!(c(&["astpatch", "status"]), ProcKind::Other);
        assert_eq!(
            c(&["/usr/sbin/asterisk", "watch", "--ban"]),
            ProcKind::Other
        );
        assert_eq!(c(&["vim", "/etc/astpatch/watch", "--ban"]), ProcKind::Other);
    }

    fn pid(n: u32) -> state::PidFile {
        state::PidFile {
            pid: n,
            logs: vec!["/var/log/asterisk/messages".into()],
            backend: Backend::Iptables,
            started_at: 0,
        }
    }

    fn systemd(active: &str, enabled: &str) -> Option<unit_file::Systemd> {
        Some(unit_file::Systemd {
            active: active.into(),
            enabled: enabled.into(),
        })
    }

    fn unit_file(bans: bool) -> Option<unit_file::UnitFile> {
        Some(unit_file::UnitFile {
            path: "/etc/systemd/system/astpatch-watch.service".into(),
            bans,
        })
    }

    /// (status, detail, fix) for one situation, with the state dir present.
    fn judge(process: WatcherProcess, unit: UnitState) -> (Status, String, String) {
        let dir = tempfile::tempdir().unwrap();
        let c = judge_watcher(
            Path::new("/"),
            dir.path(),
            &process,
            &unit,
            &["/var/log/asterisk/messages".into()],
        );
        (c.status, c.detail, c.fix.unwrap_or_default())
    }

    #[test]
    fn a_report_only_watcher_fails() {
        let (st, detail, fix) = judge(
            WatcherProcess::Running(pid(7), ProcKind::ReportOnly),
            UnitState::default(),
        );
        assert_eq!(st, Status::Fail);
        assert!(detail.contains("report-only"), "{detail}");
        assert!(fix.starts_with("restart it with --ban"), "{fix}");
    }

    #[test]
    fn report_only_watchers_are_found_in_proc() {
        let proc_dir = tempfile::tempdir().unwrap();
        for (pid, argv) in [
            ("100", "/usr/bin/astpatch\0watch\0--log\0/x\0"),
            ("101", "/usr/bin/astpatch\0watch\0--ban\0"),
            ("102", "sleep\0x600\0"),
            ("self", "/usr/bin/astpatch\0watch\0"),
            ("7", "astpatch\0watch\0"),
        ] {
            let d = proc_dir.path().join(pid);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("cmdline"), argv).unwrap();
        }
        fs::create_dir_all(proc_dir.path().join("103")).unwrap(); // exited: no cmdline
        assert_eq!(report_only_watchers(proc_dir.path()), [7, 100]);
        let (st, detail, fix) = judge(
            WatcherProcess::OnlyReportOnly(vec![7, 100]),
            UnitState::default(),
        );
        assert_eq!(st, Status::Fail);
        assert!(
            detail.contains("report-only, without --ban (pid 7, 100)"),
            "{detail}"
        );
        assert_eq!(fix, RESTART_WITH_BAN);
    }

    #[test]
    fn a_banning_watcher_passes_and_shows_the_unit() {
        let (st, detail, _) = judge(
            WatcherProcess::Running(pid(7), ProcKind::Banning),
            UnitState::default(),
        );
        assert_eq!(st, Status::Pass);
        assert_eq!(
            detail,
            "running (pid 7, backend iptables), following /var/log/asterisk/messages"
        );
        let (st, detail, _) = judge(
            WatcherProcess::Running(pid(7), ProcKind::Banning),
            UnitState {
                file: unit_file(true),
                systemd: systemd("active", "enabled"),
            },
        );
        assert_eq!(st, Status::Pass);
        assert!(
            detail.ends_with("; unit astpatch-watch.service active, enabled"),
            "{detail}"
        );
        // Running by hand while the unit is disabled: gone after a reboot.
        let (st, _, fix) = judge(
            WatcherProcess::Running(pid(7), ProcKind::Banning),
            UnitState {
                file: unit_file(true),
                systemd: systemd("inactive", "disabled"),
            },
        );
        assert_eq!(st, Status::Warn);
        assert!(fix.starts_with("systemctl enable astpatch"), "{fix}");
    }

    #[test]
    fn a_missing_or_stale_pid_file_gets_the_systemd_fix() {
        for (process, active, enabled, want) in [
            (
                WatcherProcess::NoPidFile,
                "inactive",
                "disabled",
                "systemctl enable --now astpatch",
            ),
            (
                WatcherProcess::Gone(9),
                "failed",
                "enabled",
                "systemctl restart astpatch (journalctl",
            ),
            (
                WatcherProcess::Gone(9),
                "active",
                "enabled",
                "systemctl restart astpatch; if it still",
            ),
        ] {
            let (st, detail, fix) = judge(
                process,
                UnitState {
                    file: unit_file(true),
                    systemd: systemd(active, enabled),
                },
            );
            assert_eq!(st, Status::Fail);
            assert!(detail.starts_with("not running"), "{detail}");
            assert!(
                detail.ends_with(&format!(
                    "; unit astpatch-watch.service {active}, {enabled}"
                )),
                "{detail}"
            );
            assert!(fix.starts_with(want), "{fix}");
        }
        // A unit whose ExecStart lost --ban: that is the fix, whatever systemd says.
        let (_, _, fix) = judge(
            WatcherProcess::NoPidFile,
            UnitState {
                file: unit_file(false),
                systemd: systemd("active", "enabled"),
            },
        );
        assert!(fix.contains("without --ban: put --ban back"), "{fix}");
        // The unit file is there but systemd does not run: detail only, the manual fix.
        let (st, detail, fix) = judge(
            WatcherProcess::NoPidFile,
            UnitState {
                file: unit_file(true),
                systemd: None,
            },
        );
        assert_eq!(st, Status::Fail);
        assert!(
            detail.ends_with("present but systemd is not running here"),
            "{detail}"
        );
        assert_eq!(fix, START_WATCHER);
    }

    #[test]
    fn no_state_dir_and_no_unit_is_skipped_but_a_unit_alone_is_not() {
        let c = |unit: &UnitState| {
            judge_watcher(
                Path::new("/"),
                Path::new("/nonexistent/astpatch-state"),
                &WatcherProcess::NoPidFile,
                unit,
                &[],
            )
            .status
        };
        assert_eq!(c(&UnitState::default()), Status::Skipped);
        // A report-only watcher creates no state dir, yet it is a watcher that bans nothing.
        let only = judge_watcher(
            Path::new("/"),
            Path::new("/nonexistent/astpatch-state"),
            &WatcherProcess::OnlyReportOnly(vec![5]),
            &UnitState::default(),
            &[],
        );
        assert_eq!(only.status, Status::Fail);
        assert_eq!(
            c(&UnitState {
                file: unit_file(true),
                systemd: systemd("failed", "enabled"),
            }),
            Status::Fail
        );
    }

    #[test]
    fn loaded_module_verdicts_for_what_proc_shows() {
        use crate::asterisk::running::MappedModule;
        use crate::patch::tag::Tag;
        let t = |s: &str| s.parse::<Tag>().unwrap();
        let inst = |m: Option<MappedModule>| Instance {
            pid: 9,
            exe: "/opt/ast20/sbin/asterisk".into(),
            exe_deleted: false,
            config: "/opt/ast20/etc/asterisk/asterisk.conf".into(),
            explicit_config: true,
            dirs: Directories::default(),
            ctl_socket: "/opt/ast20/var/run/asterisk/asterisk.ctl".into(),
            chan_sip: m,
            maps_error: None,
        };
        let mapped = |inode, deleted, kind| {
            Some(MappedModule {
                path: "/m/chan_sip.so".into(),
                inode,
                deleted,
                kind: Ok(kind),
            })
        };
        let a = ModuleKind::Tagged(vec![t("aaaaaaaaaaaaaaaa")]);
        let b = ModuleKind::Tagged(vec![t("bbbbbbbbbbbbbbbb")]);
        let judge = |i: &Instance, installed: (u64, ModuleKind)| {
            let c = judge_loaded(i, Some(Path::new("/src")), Some(&installed));
            (c.status, c.detail, c.fix.unwrap_or_default())
        };
        // Nothing loaded: the fix loads it in that instance.
        let (st, detail, fix) = judge(&inst(None), (1, a.clone()));
        assert_eq!(st, Status::Fail);
        assert_eq!(
            detail,
            "the running Asterisk (pid 9) has no chan_sip.so loaded"
        );
        assert_eq!(
            fix,
            "/opt/ast20/sbin/asterisk -C /opt/ast20/etc/asterisk/asterisk.conf -rx 'module load chan_sip.so'"
        );
        // An older patched build still loaded (replaced on disk): another tag, so fail.
        let (st, detail, fix) = judge(&inst(mapped(1, true, a.clone())), (2, b.clone()));
        assert_eq!(st, Status::Fail);
        assert!(
            detail.contains("no longer the installed file (deleted on disk)"),
            "{detail}"
        );
        assert!(fix.contains("-rx 'module unload chan_sip.so' && "), "{fix}");
        // The same build reinstalled under another inode: its lines look the same, so warn.
        let (st, _, _) = judge(&inst(mapped(1, true, a.clone())), (2, a.clone()));
        assert_eq!(st, Status::Warn);
        // The installed file itself, tagged: pass.
        let (st, detail, _) = judge(&inst(mapped(2, false, b.clone())), (2, b.clone()));
        assert_eq!(st, Status::Pass, "{detail}");
        // /proc/PID/maps unreadable: not "not loaded", and said so.
        let mut hidden = inst(None);
        hidden.maps_error = Some("cannot read /proc/9/maps: permission denied".into());
        let (st, detail, fix) = judge(&hidden, (2, b));
        assert_eq!(st, Status::Fail);
        assert!(detail.contains("permission denied"), "{detail}");
        assert!(fix.contains("as root"), "{fix}");
    }

    #[test]
    fn security_level_from_1_8_on() {
        for (v, has) in [
            (Some("1.4.44"), false),
            (Some("1.6.2.24"), false),
            (Some("1.8.32.3"), true),
            (Some("certified/1.8.28-cert5"), true),
            (Some("11.23.1\n"), true),
            (Some("20.10.0"), true),
            (None, true),
        ] {
            assert_eq!(has_security_level(v), has, "{v:?}");
        }
    }
}
