//! The `--rebuild` / `--install` / `--reload` half of `astpatch apply` and the `--install`
//! half of `astpatch revert`: flags, order of work, and what the operator reads.
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::asterisk_conf;
use crate::build::{self, PlainProgress, Progress, RebuildOptions, RebuildReport, TermProgress};
use crate::error::{Error, Result};
use crate::install::{self, InstallReport, Moddir, ReloadReport};
use crate::output::Style;

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
    /// After installing, unload and load chan_sip in the running Asterisk (when its control
    /// socket exists), so the new code is live without a restart.
    #[arg(long, requires = "install")]
    pub reload: bool,
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
    /// `--reload` was asked but no control socket exists (Asterisk not running).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reload_skipped: Option<String>,
}

fn conf_flag(root: &Path) -> Option<PathBuf> {
    (root != Path::new("/"))
        .then(|| asterisk_conf::under(root, Path::new("/etc/asterisk/asterisk.conf")))
}

/// Rebuild, install and reload after a successful apply, printing as it goes (unless `json`).
pub fn after_apply(
    src: &Path,
    args: &ApplyBuildArgs,
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
        let moddir = install::resolve_moddir(args.moddir.as_deref(), Some(src), &args.root)?;
        let report = install::install_module(src, &moddir.path)?;
        let conf = conf_flag(&args.root);
        let mut inst = InstallOutcome {
            load_command: install::reload_hint(conf.as_deref()),
            moddir,
            report,
            reload: None,
            reload_skipped: None,
        };
        if !json {
            print_install(&inst, style);
        }
        if args.reload {
            let dirs = asterisk_conf::load(&args.root)?.unwrap_or_default();
            let socket = install::control_socket(&args.root, &dirs);
            if install::socket_present(&socket) {
                let r = install::reload(Path::new("asterisk"), conf.as_deref(), &inst.moddir.path)?;
                if !json {
                    println!(
                        "{} the running Asterisk unloaded and loaded {}",
                        style.ok("ok:"),
                        install::MODULE
                    );
                }
                inst.reload = Some(r);
            } else {
                let why = format!(
                    "no Asterisk control socket at {}: Asterisk is not running, and loads the new module when it starts",
                    socket.display()
                );
                if !json {
                    println!("note: {why}");
                }
                inst.reload_skipped = Some(why);
            }
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

fn print_install(i: &InstallOutcome, style: Style) {
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
    println!("   load it into the running Asterisk: {}", i.load_command);
}

/// `revert --install`: put the previous module back after the source was reverted.
pub fn after_revert(
    src: &Path,
    args: &RevertInstallArgs,
    json: bool,
    style: Style,
) -> Result<Option<install::RestoreReport>> {
    if !args.install {
        return Ok(None);
    }
    let moddir = install::resolve_moddir(args.moddir.as_deref(), Some(src), &args.root)?;
    let r = install::restore_backup(&moddir.path)?;
    if !json {
        println!(
            "{} put the previous module back: {}",
            style.ok("ok:"),
            r.restored.display()
        );
        println!(
            "   load it into the running Asterisk: {}",
            install::reload_hint(conf_flag(&args.root).as_deref())
        );
    }
    Ok(Some(r))
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
