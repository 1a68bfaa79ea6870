//! Command-line interface: argument definitions and dispatch. Each command's work lives in its
//! own `cmd_*.rs`; this file only parses, routes, and turns library errors into friendly text.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::Error;
use crate::exit_codes;
use crate::output::Style;

#[derive(Debug, Parser)]
#[command(
    name = "astpatch",
    version,
    about = "Make Asterisk log the real source address of failed logins, and ban the attackers",
    long_about = "astpatch patches chan_sip.c so every inbound \"Failed to authenticate\" line ends \
with the address the request really came from (not the attacker-written From header), rebuilds \
and installs the module, proves the chain works, and runs a log watcher that bans offenders \
through iptables, ipset or nftables.\n\nTypical session:\n  astpatch detect /usr/src/asterisk-11.23.1\n  \
astpatch apply --dry-run /usr/src/asterisk-11.23.1\n  astpatch apply /usr/src/asterisk-11.23.1\n\n\
Exit codes: 0 ok, 1 a check failed or nothing to do, 2 usage or input error, 3 environment error \
(permission, missing tool, failing command).",
    after_help = "Colour is used only on a terminal and never when NO_COLOR is set. Every read \
command takes --json."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the effective watcher settings (defaults merged with the settings file).
    ShowConfig {
        /// Settings file [default: /etc/astpatch/astpatch.toml, defaults if absent]
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print JSON instead of TOML.
        #[arg(long)]
        json: bool,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let style = Style::detect();
    match run(cli, style) {
        Ok(code) => exit_codes::code(code),
        Err(e) => {
            report(&e, style);
            exit_codes::code(e.exit_code())
        }
    }
}

fn report(e: &Error, style: Style) {
    eprintln!("{} {e}", style.bad("error:"));
    if let Some(hint) = e.hint() {
        eprintln!("{} {hint}", style.warn("hint:"));
    }
}

fn run(cli: Cli, _style: Style) -> Result<u8, Error> {
    match cli.command {
        Command::ShowConfig { config, json } => {
            let settings = crate::config::Settings::load(config.as_deref())?;
            if json {
                crate::output::print_json(&settings);
            } else {
                print!(
                    "{}",
                    toml::to_string(&settings).expect("settings serialise")
                );
            }
            Ok(exit_codes::SUCCESS)
        }
    }
}
