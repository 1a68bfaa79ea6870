//! Presentation of `astpatch verify`: one line per check, a fix under each failure.
use std::path::Path;

use crate::asterisk::running;
use crate::cli::output::{Style, print_json};
use crate::error::{Error, Result};
use crate::exit_codes;
use crate::firewall::{self, SystemRunner};
use crate::settings::Settings;
use crate::verify::{self, Inputs, Running, Status, VerifyReport};

pub fn run(
    src: Option<&Path>,
    root: &Path,
    moddir: Option<&Path>,
    asterisk_conf: Option<&Path>,
    settings: &Settings,
    json: bool,
    style: Style,
) -> Result<u8> {
    // A mistyped --root would otherwise read as "nothing is installed" and fail every check.
    if !root.is_dir() {
        return Err(Error::input(
            format!(
                "--root {}: no such directory; verify reads etc/asterisk, the module dir and var/lib/astpatch under it",
                root.display()
            ),
            Some("leave --root out to check this machine (it defaults to /)"),
        ));
    }
    let asterisk_conf = asterisk_conf.or(settings.asterisk_conf.as_deref());
    // Several servers and none named: asked, not guessed (the checks would judge the wrong one).
    let instance;
    let running = if root == Path::new("/") {
        let found =
            running::discover(Path::new("/proc"), root).map_err(|e| Error::io("/proc", e))?;
        instance = running::select_by(found, asterisk_conf, moddir)?;
        match &instance {
            Some(i) => Running::Instance(i),
            None => Running::None,
        }
    } else {
        Running::NotLooked
    };
    let inputs = Inputs {
        src,
        root,
        moddir,
        settings,
        running,
        asterisk_conf,
    };
    let report = verify::verify(&inputs, &|b| {
        firewall::for_backend(b, Box::new(SystemRunner::host()))
    });
    if json {
        print_json(&report);
    } else {
        print!("{}", render(&report, style));
    }
    Ok(if report.ok {
        exit_codes::SUCCESS
    } else {
        exit_codes::CHECK_FAILED
    })
}

/// The checklist as text.
pub fn render(report: &VerifyReport, style: Style) -> String {
    let mut out = String::new();
    for c in &report.checks {
        let mark = match c.status {
            Status::Pass => style.ok("✓"),
            Status::Warn => style.warn("!"),
            Status::Fail => style.bad("✗"),
            Status::Skipped => "-".to_owned(),
        };
        let detail = if c.status == Status::Skipped {
            format!("skipped: {}", c.detail)
        } else {
            c.detail.clone()
        };
        out.push_str(&format!("{mark} {:<17} {detail}\n", c.name));
        if let Some(fix) = &c.fix {
            if c.status != Status::Pass {
                out.push_str(&format!("  {:<17} fix: {fix}\n", ""));
            }
        }
    }
    let failed = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .count();
    let applicable = report
        .checks
        .iter()
        .filter(|c| c.status != Status::Skipped)
        .count();
    if failed == 0 {
        out.push_str(&format!(
            "{} all {applicable} applicable checks pass\n",
            style.ok("ok:")
        ));
    } else {
        out.push_str(&format!(
            "{} {failed} of {applicable} applicable checks failed\n",
            style.bad("failed:")
        ));
    }
    out
}
