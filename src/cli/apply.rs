//! Presentation of `astpatch apply` and `astpatch revert`.
use std::path::Path;

use crate::cli::output::{Style, print_json};
use crate::cli::rebuild::{self, ApplyBuildArgs, BuildOutcome, RevertInstallArgs};
use crate::error::Result;
use crate::exit_codes;
use crate::patch::apply::{self, ApplyReport, TagOrigin};
use crate::patch::revert::{self, RevertOutcome};

pub fn run_apply(
    src: &Path,
    dry_run: bool,
    json: bool,
    build: &ApplyBuildArgs,
    style: Style,
) -> Result<u8> {
    if dry_run {
        rebuild::refuse_with_dry_run(build)?;
    }
    // Which Asterisk to install into is settled before the source is touched.
    let target = if build.install {
        Some(crate::module::target::find_target(
            &build.root,
            build.asterisk_conf.as_deref(),
            build.moddir.as_deref(),
        )?)
    } else {
        None
    };
    let report = apply::apply(src, dry_run)?;
    if !json && dry_run {
        print_dry_run(&report, style)?;
    } else if !json {
        print_applied(&report, style);
    }
    let built = if build.any() {
        rebuild::after_apply(src, build, target.as_ref(), json, style)?
    } else {
        BuildOutcome::default()
    };
    let reload_skipped = built.reload_skipped();
    if json {
        print_json(&Combined {
            apply: &report,
            build: built,
        });
    }
    // `--reload` that reloaded nothing is not success, whatever else was done.
    Ok(if reload_skipped {
        exit_codes::CHECK_FAILED
    } else {
        exit_codes::SUCCESS
    })
}

/// `--json` output: the apply report, plus the rebuild/install parts when asked for.
#[derive(serde::Serialize)]
struct Combined<'a, T: serde::Serialize> {
    #[serde(flatten)]
    apply: &'a T,
    #[serde(flatten)]
    build: BuildOutcome,
}

fn total(r: &ApplyReport) -> usize {
    r.sites.len()
}

fn tagged(r: &ApplyReport) -> usize {
    r.sites
        .iter()
        .filter(|s| s.action == crate::patch::engine::Action::AlreadyPatched)
        .count()
}

fn print_dry_run(r: &ApplyReport, style: Style) -> Result<()> {
    // The diff goes to stdout so it can be saved and applied with `patch -p1`; the summary to
    // stderr so it does not end up inside that file.
    {
        use std::io::Write;
        // Raw bytes: Latin-1 context lines must reach the patch file unchanged.
        let mut out = std::io::stdout().lock();
        out.write_all(&r.patch_bytes)
            .and_then(|()| out.flush())
            .map_err(|e| crate::error::Error::io("standard output", e))?;
    }
    if r.changed == 0 {
        eprintln!(
            "{} is already patched ({} of {} sites carry the source address and the tag {}); nothing would change",
            r.file.display(),
            tagged(r),
            total(r),
            r.tag
        );
    } else {
        eprintln!(
            "{} {} of {} inbound sites would change with {} (shape {}), tag {}; nothing was written",
            style.bold("dry run:"),
            r.changed,
            total(r),
            r.patch,
            r.shape,
            r.tag
        );
        if r.tag_origin == TagOrigin::New {
            eprintln!(
                "note: the tag is new and kept nowhere: `astpatch apply` draws its own, unless this diff is applied first (then apply keeps the tag it finds)"
            );
        }
    }
    for n in &r.notes {
        eprintln!("note: {n}");
    }
    Ok(())
}

fn print_applied(r: &ApplyReport, style: Style) {
    if r.changed == 0 {
        println!(
            "{} {} is already patched: {} of {} inbound sites carry the source address and the tag {}; nothing to do",
            style.ok("ok:"),
            r.file.display(),
            tagged(r),
            total(r),
            r.tag
        );
    } else {
        println!(
            "{} patched {} with {} (shape {}): {} of {} inbound sites now log the source address, tagged {}",
            style.ok("ok:"),
            r.file.display(),
            r.patch,
            r.shape,
            r.changed,
            total(r),
            r.tag
        );
        println!(
            "   the original is kept as {}.astpatch-orig; `astpatch revert` restores it",
            r.file.display()
        );
    }
    for n in &r.notes {
        println!("note: {n}");
    }
}

pub fn run_revert(src: &Path, json: bool, install: &RevertInstallArgs, style: Style) -> Result<u8> {
    let target = if install.install {
        Some(crate::module::target::find_target(
            &install.root,
            install.asterisk_conf.as_deref(),
            install.moddir.as_deref(),
        )?)
    } else {
        None
    };
    let report = match revert::revert(src) {
        // The source may have been reverted by hand; the module can still go back.
        Err(e @ crate::error::Error::NothingToDo { .. }) if install.install => {
            if !json {
                println!("note: {e}");
            }
            None
        }
        r => Some(r?),
    };
    if let Some(report) = &report {
        if !json {
            print_reverted(report, style);
        }
    }
    let restored = rebuild::after_revert(src, install, target.as_ref(), json, style)?;
    let reload_skipped = restored
        .as_ref()
        .is_some_and(|r| r.reload_skipped.is_some());
    if json {
        #[derive(serde::Serialize)]
        struct Combined<'a> {
            #[serde(flatten, skip_serializing_if = "Option::is_none")]
            source: Option<&'a revert::RevertReport>,
            #[serde(skip_serializing_if = "Option::is_none")]
            module: Option<rebuild::RevertModuleOutcome>,
        }
        print_json(&Combined {
            source: report.as_ref(),
            module: restored,
        });
    }
    Ok(if reload_skipped {
        exit_codes::CHECK_FAILED
    } else {
        exit_codes::SUCCESS
    })
}

fn print_reverted(report: &revert::RevertReport, style: Style) {
    let what = match report.outcome {
        RevertOutcome::Restored => "restored the original byte for byte".to_owned(),
        RevertOutcome::RevertedSitesOnly => format!(
            "put back the {} statements astpatch changed; your other edits since apply are kept",
            report.sites
        ),
        RevertOutcome::AlreadyOriginal => {
            "already held the original bytes; removed astpatch's leftover record".to_owned()
        }
    };
    println!("{} {}: {what}", style.ok("ok:"), report.file.display());
}
