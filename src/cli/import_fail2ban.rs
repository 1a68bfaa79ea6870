//! `astpatch import-fail2ban JAIL_LOCAL`: print (or write) astpatch settings equivalent to an
//! existing fail2ban jail.
use std::path::Path;

use crate::cli::output::Style;
use crate::error::{Error, Result};
use crate::exit_codes;

pub fn run(
    jail_local: &Path,
    jail: &str,
    output: Option<&Path>,
    force: bool,
    style: Style,
) -> Result<u8> {
    let text = std::fs::read_to_string(jail_local).map_err(|e| Error::io(jail_local, e))?;
    let imp = crate::ban::jail_import::import(&text, jail).map_err(|e| match e {
        Error::Input { message, hint } => Error::Input {
            message: format!("{}: {message}", jail_local.display()),
            hint,
        },
        other => other,
    })?;
    let rendered = crate::ban::jail_import::render(&imp, &jail_local.display().to_string());
    match output {
        None => print!("{rendered}"),
        Some(out) => {
            if out.exists() && !force {
                return Err(Error::input(
                    format!("{} exists; not overwriting it", out.display()),
                    Some("pass --force to replace it, or omit --output to print"),
                ));
            }
            if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            }
            crate::atomic::write(out, rendered.as_bytes(), Some(0o644))
                .map_err(|e| Error::io(out, e))?;
            eprintln!("{} {}", style.ok("wrote"), out.display());
            for n in &imp.notes {
                eprintln!("{} {n}", style.warn("note:"));
            }
        }
    }
    Ok(exit_codes::SUCCESS)
}
