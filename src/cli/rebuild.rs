//! The `--rebuild` / `--install` / `--reload` half of `astpatch apply` and the `--install`
//! half of `astpatch revert`: flags, order of work, and what the operator reads.
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::asterisk::conf;
use crate::asterisk::running;
use crate::cli::output::Style;
use crate::cli::progress::{PlainProgress, TermProgress};
use crate::error::{Error, Result};
use crate::module::build::{self, Progress, RebuildOptions, RebuildReport};
use crate::module::install::{self, InstallReport, Moddir, ReloadReport};
use crate::module::target::{PROC, Target, find_target};
use crate::patch::tag::ModuleKind;

#[derive(Debug, Clone, clap::Args)]
pub struct ApplyBuildArgs {
    /// Rebuild chan_sip after patching: in a built tree only chan_sip is compiled (`make
    /// channels`); an unconfigured tree gets ./configure and a full make. make's output goes to
    /// SRC/astpatch-build.log.
    #[arg(long)]
    pub rebuild: bool,
    /// Copy the built chan_sip.so into the directory Asterisk loads modules from, atomically;
    /// the module it replaces is kept as chan_sip.so.astpatch-bak for `revert --install`.
    #[arg(long)]
    pub install: bool,
    /// Module directory [default: astmoddir from asterisk.conf, else the tree's makeopts].
    #[arg(long, value_name = "DIR", requires = "install")]
    pub moddir: Option<PathBuf>,
    /// After installing, unload and load chan_sip in the running Asterisk, so the new code is
    /// live without a restart; then confirm in /proc that it maps the installed file. Exits
    /// non-zero when nothing was reloaded (no Asterisk running).
    #[arg(long, requires = "install")]
    pub reload: bool,
    /// The asterisk.conf of the Asterisk to install into and reload (the `-C` it runs with);
    /// needed when several run [default: the running one, else /etc/asterisk/asterisk.conf].
    #[arg(long, value_name = "FILE", requires = "install")]
    pub asterisk_conf: Option<PathBuf>,
    /// Root of the system Asterisk runs on: asterisk.conf, module and run directories are read
    /// inside it.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Parallel make jobs [default: number of CPUs].
    #[arg(short = 'j', long, value_name = "N", requires = "rebuild")]
    pub jobs: Option<usize>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RevertInstallArgs {
    /// Also put back the chan_sip.so that `apply --install` replaced (chan_sip.so.astpatch-bak).
    #[arg(long)]
    pub install: bool,
    /// Module directory [default: astmoddir from asterisk.conf, else the tree's makeopts].
    #[arg(long, value_name = "DIR", requires = "install")]
    pub moddir: Option<PathBuf>,
    /// After putting the module back, unload and load chan_sip in the running Asterisk and
    /// confirm in /proc that it maps the restored file (as `apply --reload`).
    #[arg(long, requires = "install")]
    pub reload: bool,
    /// The asterisk.conf of the Asterisk to restore and reload (the `-C` it runs with);
    /// needed when several run [default: the running one, else /etc/asterisk/asterisk.conf].
    #[arg(long, value_name = "FILE", requires = "install")]
    pub asterisk_conf: Option<PathBuf>,
    /// Root of the system Asterisk runs on.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
}

impl ApplyBuildArgs {
    pub fn any(&self) -> bool {
        self.rebuild || self.install
    }
}

/// What `--rebuild`/`--install` did, for `--json` (absent parts are left out).
#[derive(Debug, Clone, Default, Serialize)]
pub struct BuildOutcome {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rebuild: Option<RebuildReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub install: Option<InstallOutcome>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InstallOutcome {
    pub moddir: Moddir,
    #[serde(flatten)]
    pub report: InstallReport,
    /// What the operator runs to make the running Asterisk use it.
    pub load_command: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reload: Option<ReloadReport>,
    /// `--reload` was asked but no Asterisk runs: nothing was reloaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reload_skipped: Option<String>,
    /// What /proc showed after the reload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loaded: Option<String>,
}

impl BuildOutcome {
    /// `--reload` was asked and did not happen.
    pub fn reload_skipped(&self) -> bool {
        self.install
            .as_ref()
            .is_some_and(|i| i.reload_skipped.is_some())
    }
}

/// What `--reload` did.
#[derive(Debug, Default)]
struct Reloaded {
    report: Option<ReloadReport>,
    skipped: Option<String>,
    loaded: Option<String>,
}

/// Unload and load chan_sip in the target, then confirm through /proc that it maps the file
/// now at `installed`. A reload that cannot be confirmed is an error; no Asterisk running
/// is `skipped` (the caller exits non-zero).
fn reload_target(
    t: &Target,
    moddir: &Path,
    installed: &Path,
    json: bool,
    style: Style,
) -> Result<Reloaded> {
    let mut out = Reloaded::default();
    if let Some(i) = &t.instance {
        let r = install::reload(&i.exe, i.conf_arg(), moddir)?;
        out.report = Some(r);
        let bytes = std::fs::read(installed).map_err(|e| Error::io(installed, e))?;
        let inode = std::fs::metadata(installed)
            .map_err(|e| Error::io(installed, e))?
            .ino();
        let expected = ModuleKind::of(&bytes);
        let now = running::inspect(Path::new(PROC), &t.root, i.pid);
        // The kernel names mappings by their real path (an astmoddir through a symlink).
        let real = std::fs::canonicalize(installed).unwrap_or_else(|_| installed.to_owned());
        if let Err(why) = running::confirm_loaded(now.as_ref(), i.pid, &real, inode, &expected) {
            return Err(Error::environment(
                format!(
                    "Asterisk answered that it unloaded and loaded {}, but {why}",
                    install::MODULE
                ),
                Some(&format!(
                    "look at `{}`; a restart of Asterisk loads the installed file",
                    i.rx("module show like chan_sip")
                )),
            ));
        }
        let loaded = format!(
            "pid {} maps {} (inode {inode}, {})",
            i.pid,
            installed.display(),
            running::kind_word(&expected)
        );
        if !json {
            println!(
                "{} the running Asterisk (pid {}) unloaded and loaded {}; it now maps the installed file ({})",
                style.ok("ok:"),
                i.pid,
                install::MODULE,
                running::kind_word(&expected)
            );
        }
        out.loaded = Some(loaded);
        return Ok(out);
    }
    let dirs = conf::load_file(&t.root, &t.conf)?.unwrap_or_default();
    let text = std::fs::read_to_string(conf::under(&t.root, &t.conf)).unwrap_or_default();
    let socket = conf::under(&t.root, &dirs.astrundir)
        .join(conf::ctl_name(&text).unwrap_or_else(|| "asterisk.ctl".into()));
    let present = install::socket_present(&socket);
    // As root every process is visible: a socket without a process is left over from one
    // that stopped (a crash leaves it). Otherwise /proc may hide it (hidepid), or this is
    // another --root: then the socket is the only sign.
    let sees_all = t.root == Path::new("/") && unsafe { libc::geteuid() } == 0;
    if present && !sees_all {
        let r = install::reload(Path::new("asterisk"), t.conf_flag().as_deref(), moddir)?;
        out.report = Some(r);
        if !json {
            println!(
                "{} Asterisk (control socket {}) unloaded and loaded {}",
                style.ok("ok:"),
                socket.display(),
                install::MODULE
            );
            println!(
                "note: no Asterisk process is visible here, so what it loaded was not confirmed through /proc"
            );
        }
        return Ok(out);
    }
    let mut why = format!(
        "nothing was reloaded: no Asterisk is running{} (no asterisk process; {} {}); it loads the installed module when it starts",
        if t.explicit {
            format!(" with {}", t.conf.display())
        } else {
            String::new()
        },
        if present {
            "a control socket left over from one that stopped at"
        } else {
            "no control socket at"
        },
        socket.display()
    );
    if !t.others.is_empty() {
        why.push_str(&format!(
            "; running with another asterisk.conf: {}",
            t.others.join("; ")
        ));
    }
    if !json {
        eprintln!("{} {why}", style.bad("error:"));
    }
    out.skipped = Some(why);
    Ok(out)
}

/// Rebuild, install and reload after a successful apply, printing as it goes (unless `json`).
pub fn after_apply(
    src: &Path,
    args: &ApplyBuildArgs,
    target: Option<&Target>,
    json: bool,
    style: Style,
) -> Result<BuildOutcome> {
    let mut outcome = BuildOutcome::default();
    if args.rebuild {
        let mut opts = RebuildOptions::default();
        if let Some(j) = args.jobs {
            opts.jobs = j.max(1);
        }
        let mut term;
        let mut plain;
        let progress: &mut dyn Progress = if style.interactive {
            term = TermProgress::new();
            &mut term
        } else {
            plain = PlainProgress::new(std::io::stderr());
            &mut plain
        };
        let r = build::rebuild(src, &opts, progress)?;
        if !json {
            print_rebuild(&r, style);
        }
        outcome.rebuild = Some(r);
    }
    if args.install {
        let found;
        let target = match target {
            Some(t) => t,
            None => {
                found = find_target(
                    &args.root,
                    args.asterisk_conf.as_deref(),
                    args.moddir.as_deref(),
                )?;
                &found
            }
        };
        let moddir = target.moddir(args.moddir.as_deref(), src)?;
        let report = install::install_module(src, &moddir.path)?;
        let mut inst = InstallOutcome {
            load_command: target.load_command(),
            moddir,
            report,
            reload: None,
            reload_skipped: None,
            loaded: None,
        };
        if !json {
            // Told how to load it by hand only when astpatch is not about to do it.
            print_install(&inst, !args.reload, style);
        }
        if args.reload {
            let r = reload_target(
                target,
                &inst.moddir.path,
                &inst.report.installed,
                json,
                style,
            )?;
            inst.reload = r.report;
            inst.reload_skipped = r.skipped;
            inst.loaded = r.loaded;
        }
        outcome.install = Some(inst);
    }
    Ok(outcome)
}

fn print_rebuild(r: &RebuildReport, style: Style) {
    let what = if r.compiled.is_empty() && r.linked.is_empty() {
        "already up to date, nothing compiled".to_owned()
    } else {
        format!("compiled {}, linked {}", list(&r.compiled), list(&r.linked))
    };
    println!(
        "{} built {} with `{}` in {:.1} s: {what}",
        style.ok("ok:"),
        r.module.display(),
        r.commands.join(" && "),
        r.elapsed_ms as f64 / 1000.0
    );
    println!("   make's full output: {}", r.log.display());
}

fn list(v: &[String]) -> String {
    const SHOWN: usize = 6;
    if v.is_empty() {
        return "nothing".into();
    }
    let mut s = v.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
    if v.len() > SHOWN {
        s.push_str(&format!(" and {} more", v.len() - SHOWN));
    }
    s
}

fn print_install(i: &InstallOutcome, with_load_command: bool, style: Style) {
    if let Some(n) = &i.moddir.note {
        println!("note: {n}");
    }
    if i.report.unchanged {
        println!(
            "{} {} already holds this module; nothing was written",
            style.ok("ok:"),
            i.report.installed.display()
        );
    } else {
        println!(
            "{} installed {}{}",
            style.ok("ok:"),
            i.report.installed.display(),
            match &i.report.backup {
                Some(b) => format!(
                    " (the previous module is kept as {}; `astpatch revert --install` puts it back)",
                    b.display()
                ),
                None => " (there was no previous module)".into(),
            }
        );
    }
    if with_load_command {
        println!("   load it into the running Asterisk: {}", i.load_command);
    }
}

/// What `revert --install [--reload]` did to the module, for `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct RevertModuleOutcome {
    #[serde(flatten)]
    pub restore: install::RestoreReport,
    pub load_command: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reload: Option<ReloadReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reload_skipped: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loaded: Option<String>,
}

/// `revert --install [--reload]`: put the previous module back after the source was reverted,
/// and make the running Asterisk use it.
pub fn after_revert(
    src: &Path,
    args: &RevertInstallArgs,
    target: Option<&Target>,
    json: bool,
    style: Style,
) -> Result<Option<RevertModuleOutcome>> {
    if !args.install {
        return Ok(None);
    }
    let found;
    let target = match target {
        Some(t) => t,
        None => {
            found = find_target(
                &args.root,
                args.asterisk_conf.as_deref(),
                args.moddir.as_deref(),
            )?;
            &found
        }
    };
    let moddir = target.moddir(args.moddir.as_deref(), src)?;
    let r = install::restore_backup(&moddir.path)?;
    let mut out = RevertModuleOutcome {
        load_command: target.load_command(),
        restore: r,
        reload: None,
        reload_skipped: None,
        loaded: None,
    };
    if !json {
        println!(
            "{} put the previous module back: {}",
            style.ok("ok:"),
            out.restore.restored.display()
        );
        if !args.reload {
            println!("   load it into the running Asterisk: {}", out.load_command);
        }
    }
    if args.reload {
        let r = reload_target(target, &moddir.path, &out.restore.restored, json, style)?;
        out.reload = r.report;
        out.reload_skipped = r.skipped;
        out.loaded = r.loaded;
    }
    Ok(Some(out))
}

/// `--dry-run` writes nothing, so it cannot be combined with building or installing.
pub fn refuse_with_dry_run(args: &ApplyBuildArgs) -> Result<()> {
    if args.any() {
        return Err(Error::input(
            "--dry-run writes nothing, so it cannot be combined with --rebuild or --install",
            Some(
                "run `astpatch apply --dry-run SRC` to review, then `astpatch apply --rebuild --install SRC`",
            ),
        ));
    }
    Ok(())
}
