//! Argument definitions and dispatch. Each command's presentation lives in its own file beside
//! this one; this file only parses, routes, and turns library errors into friendly text.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::cli::output::Style;
use crate::error::Error;
use crate::exit_codes;
use crate::firewall::Backend;
use crate::settings::{Overrides, Settings};

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
    /// Settings file, for every command [default: /etc/astpatch/astpatch.toml; the built-in
    /// defaults when that does not exist]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// `--state-dir`, taken by every command that reads or writes the bans.
#[derive(Debug, Clone, Default, Args)]
pub struct StateDirArg {
    /// Where bans are kept [default: state_dir from the settings, /var/lib/astpatch]
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// `--backend`, taken by every command that touches the firewall.
#[derive(Debug, Clone, Default, Args)]
pub struct BackendArg {
    /// Firewall backend [default: the running watcher's, else backend from the settings,
    /// iptables]
    #[arg(long, value_name = "BACKEND")]
    pub backend: Option<Backend>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Tell which Asterisk a source tree is and what its chan_sip.c holds.
    ///
    /// Reads the version from .version (release tarballs and tags) or `git describe` (a git
    /// clone), looks up the series and the chan_sip shape it should have, then confirms the
    /// shape from chan_sip.c itself — the content wins where they disagree — and lists every
    /// inbound failed-auth log site with its line and whether it already carries the address.
    /// Exit 0 when a patch fits (or the file is patched), 1 when none does.
    #[command(
        after_help = "Examples:\n  astpatch detect /usr/src/asterisk-11.23.1\n  astpatch detect --json ~/src/asterisk | jq .sites"
    )]
    Detect {
        /// Top of the Asterisk source tree (holds .version and channels/chan_sip.c).
        #[arg(value_name = "SRC")]
        src: PathBuf,
        /// Print a JSON report instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Patch chan_sip.c so every inbound failed-auth line ends with the real source address.
    ///
    /// Finds each "Failed to authenticate" and "Sending fake auth rejection" statement by its
    /// content, rewrites all of them or none, keeps the original as chan_sip.c.astpatch-orig,
    /// and does nothing on a second run. Outbound lines ("... on INVITE to ...") are untouched.
    #[command(
        after_help = "Examples:\n  astpatch apply --dry-run /usr/src/asterisk-11.23.1 > astpatch.diff\n  astpatch apply /usr/src/asterisk-11.23.1\n  astpatch apply --rebuild --install /usr/src/asterisk-11.23.1\n  astpatch apply --rebuild --install --reload --moddir /usr/lib64/asterisk/modules /usr/src/asterisk-11.23.1\n  astpatch apply --rebuild --install --reload --asterisk-conf /opt/ast20/etc/asterisk/asterisk.conf /usr/src/asterisk-20.20.1"
    )]
    Apply {
        /// Top of the Asterisk source tree (holds .version and channels/chan_sip.c).
        #[arg(value_name = "SRC")]
        src: PathBuf,
        /// Print the unified diff (applies with `patch -p1`) and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print a JSON report instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        build: crate::cli::rebuild::ApplyBuildArgs,
    },
    /// Undo `astpatch apply`: restore the original chan_sip.c byte for byte.
    ///
    /// If the file was edited after apply, only astpatch's own statements are put back, and
    /// only when each is still exactly as astpatch wrote it; otherwise nothing is changed.
    #[command(
        after_help = "Examples:\n  astpatch revert /usr/src/asterisk-11.23.1\n  astpatch revert --install --reload /usr/src/asterisk-11.23.1\n  astpatch revert --install --reload --asterisk-conf /opt/ast20/etc/asterisk/asterisk.conf /usr/src/asterisk-20.20.1"
    )]
    Revert {
        /// Top of the Asterisk source tree.
        #[arg(value_name = "SRC")]
        src: PathBuf,
        /// Print a JSON report instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        install: crate::cli::rebuild::RevertInstallArgs,
    },
    /// Count failed logins in Asterisk logs: per rule, per address, and whom the watcher would ban.
    ///
    /// Reads plain or gzip-rotated logs (or `-` for stdin) with the watcher's own recogniser
    /// and settings (maxretry, findtime, ignoreip, patched), so it answers "what would
    /// `astpatch watch --ban` do with these lines?" without touching the firewall. Addresses are
    /// taken only from fields Asterisk writes; lines whose source cannot be trusted (stock
    /// chan_sip, forged second addresses) are counted but never blamed on anyone.
    #[command(
        after_help = "Examples:\n  astpatch scan /var/log/asterisk/messages\n  astpatch scan /var/log/asterisk/messages.1.gz /var/log/asterisk/messages --json\n  journalctl -u asterisk -o short-iso | astpatch scan -"
    )]
    Scan {
        /// Log files to read, oldest first; `-` reads stdin; .gz files are unpacked.
        #[arg(value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
        /// Print a JSON report instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateDirArg,
    },
    /// Prove the whole chain works: patched source, built and installed module, logging,
    /// watcher, firewall.
    ///
    /// A checklist: ✓ pass, ✗ fail (with a one-line fix), ! works but look, and "skipped" with
    /// the reason (no tree given, no watcher installed yet). Reads the real things: the
    /// module's bytes, logger.conf, the watcher's pid file, the kernel's rules. Exit 0 when
    /// every applicable check passes, 1 otherwise, so monitoring can run it.
    #[command(
        after_help = "Examples:\n  astpatch verify /usr/src/asterisk-11.23.1\n  astpatch verify            # installed module, logging, watcher, firewall only\n  astpatch verify --json /usr/src/asterisk-11.23.1 | jq '.checks[] | select(.status == \"fail\")'"
    )]
    Verify {
        /// Top of the Asterisk source tree (enables the source and built-module checks).
        #[arg(value_name = "SRC")]
        src: Option<PathBuf>,
        /// Root of the system Asterisk and the watcher run on.
        #[arg(long, value_name = "DIR", default_value = "/")]
        root: PathBuf,
        /// Module directory [default: the running Asterisk's, else astmoddir from asterisk.conf,
        /// else the tree's makeopts].
        #[arg(long, value_name = "DIR")]
        moddir: Option<PathBuf>,
        /// The asterisk.conf of the Asterisk to check (the `-C` it runs with); needed when
        /// several run [default: asterisk_conf from the settings, else the running one].
        #[arg(long, value_name = "FILE")]
        asterisk_conf: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateDirArg,
        #[command(flatten)]
        backend: BackendArg,
    },
    /// Print the effective watcher settings (defaults merged with the settings file).
    ShowConfig {
        /// Print JSON instead of TOML.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateDirArg,
        #[command(flatten)]
        backend: BackendArg,
    },
    /// Follow Asterisk's logs and ban addresses that fail too often (like fail2ban).
    ///
    /// Follows each log across rotation (rename, copytruncate, compression, delete-and-recreate,
    /// several rotations while it was behind) and waits for logs that do not exist yet; starts
    /// at their end unless --from-start, and with --ban a restart resumes where the last run
    /// stopped (state_dir/positions.json). Counts failures per source address (maxretry within
    /// findtime); with --ban it records each batch of bans durably, then puts it into the
    /// firewall in one batch, expires bans on time, and at start restores every ban the
    /// firewall lost (reboot, iptables -F). Without --ban it only reports what it would ban.
    #[command(
        after_help = "Examples:\n  astpatch watch                      # dry: report what would be banned\n  astpatch watch --ban\n  astpatch watch --ban --backend nftables --log /var/log/asterisk/messages\n  astpatch install-watcher            # run it under systemd"
    )]
    Watch {
        /// Ban through the firewall (without it, only report).
        #[arg(long)]
        ban: bool,
        /// A log to follow (repeatable) [default: logs from the settings]
        #[arg(long = "log", value_name = "FILE")]
        logs: Vec<PathBuf>,
        #[command(flatten)]
        backend: BackendArg,
        #[command(flatten)]
        state: StateDirArg,
        /// Read the logs from their beginning, each failure at its own time (default: only
        /// lines written from now on). A log with a position saved by an earlier --ban run
        /// resumes there instead.
        #[arg(long)]
        from_start: bool,
    },
    /// Turn a fail2ban jail (jail.local's [asterisk] and [DEFAULT]) into astpatch settings.
    ///
    /// Carries over maxretry, findtime, bantime, ignoreip, logpath, the ban action (as the
    /// backend) and bantime.increment; prints notes, as comments, for what has no equivalent.
    #[command(
        after_help = "Examples:\n  astpatch import-fail2ban /etc/fail2ban/jail.local\n  astpatch import-fail2ban /etc/fail2ban/jail.local --output /etc/astpatch/astpatch.toml"
    )]
    ImportFail2ban {
        /// The fail2ban jail file.
        #[arg(value_name = "JAIL_LOCAL")]
        jail_local: PathBuf,
        /// Jail section to import.
        #[arg(long, default_value = "asterisk", value_name = "NAME")]
        jail: String,
        /// Write the settings here instead of printing them.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Replace --output if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Install the watcher as a hardened systemd service, enabled and started.
    ///
    /// The unit runs `astpatch watch --ban` as root limited to CAP_NET_ADMIN, CAP_NET_RAW and
    /// CAP_DAC_READ_SEARCH, with no new privileges and a read-only system.
    #[command(
        after_help = "Examples:\n  astpatch install-watcher --dry-run\n  astpatch install-watcher --config /etc/astpatch/astpatch.toml"
    )]
    InstallWatcher {
        /// Print the unit and the commands; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Where the unit goes.
        #[arg(long, value_name = "DIR", default_value = "/etc/systemd/system")]
        unit_dir: PathBuf,
        #[command(flatten)]
        state: StateDirArg,
        #[command(flatten)]
        backend: BackendArg,
    },
    /// Ban an address or network now, through the firewall, recorded durably.
    ///
    /// Works whether or not the watcher runs: the ban is written to the state store first,
    /// then put into the firewall; a running watcher expires it on time. Loopback, this host's
    /// own addresses and anything overlapping ignoreip are refused.
    #[command(
        after_help = "Examples:\n  astpatch ban 203.0.113.7\n  astpatch ban 203.0.113.0/24 --for 2h\n  astpatch ban 2001:db8:1:2::/64 --for 1d"
    )]
    Ban {
        /// IPv4/IPv6 address or CIDR network.
        #[arg(value_name = "ADDR")]
        addr: String,
        /// How long [default: bantime from the settings, grown by bantime_increment].
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
        ban_for: Option<std::time::Duration>,
        #[command(flatten)]
        state: StateDirArg,
        #[command(flatten)]
        backend: BackendArg,
    },
    /// Lift a ban (or every ban with --all), from the state store and the firewall.
    ///
    /// `--all --purge` also removes every firewall object astpatch made (its iptables chain,
    /// ipsets and nftables table, whatever the backend), for an uninstall; stop the watcher
    /// first.
    #[command(
        after_help = "Examples:\n  astpatch unban 203.0.113.7\n  astpatch unban --all\n  systemctl stop astpatch && astpatch unban --all --purge"
    )]
    Unban {
        /// The address or network as banned.
        #[arg(
            value_name = "ADDR",
            required_unless_present = "all",
            conflicts_with = "all"
        )]
        addr: Option<String>,
        /// Lift every ban astpatch holds.
        #[arg(long)]
        all: bool,
        /// With --all: also remove astpatch's firewall objects of every backend.
        #[arg(long, requires = "all")]
        purge: bool,
        #[command(flatten)]
        state: StateDirArg,
        #[command(flatten)]
        backend: BackendArg,
    },
    /// Show the watcher, failure counters and current bans (like fail2ban-client status).
    ///
    /// Each ban shows its time left, reason, and whether the firewall really holds it.
    #[command(
        after_help = "Examples:\n  astpatch status\n  astpatch status --json | jq '.banned[].net'"
    )]
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateDirArg,
        #[command(flatten)]
        backend: BackendArg,
    },
    /// Print the shell completion script for bash, zsh, fish, elvish or powershell.
    ///
    /// The Debian package installs bash, zsh and fish completions already; this is for
    /// installs with `cargo install`.
    #[command(
        after_help = "Examples:\n  astpatch completions bash > /etc/bash_completion.d/astpatch\n  astpatch completions zsh > \"${fpath[1]}/_astpatch\"\n  astpatch completions fish > ~/.config/fish/completions/astpatch.fish"
    )]
    Completions {
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Write the files a package installs: man pages, completions, the commented default
    /// settings file and the systemd unit (for packagers; `packaging/` holds them).
    #[command(after_help = "Example:\n  astpatch generate packaging")]
    Generate {
        /// Directory to write into (created if missing).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    match crate::duration::parse(s)? {
        d if d.is_zero() => Err("must be longer than 0s".into()),
        d => Ok(d),
    }
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

fn run(cli: Cli, style: Style) -> Result<u8, Error> {
    let config = cli.config;
    // The settings file with this command's overrides on top; read only by the commands that
    // use it, so a broken settings file does not stop `detect` or `apply --dry-run`.
    let settings = |state: &StateDirArg, backend: &BackendArg, logs: Vec<PathBuf>| {
        Settings::load(config.as_deref()).map(|s| {
            s.overridden(&Overrides {
                logs,
                backend: backend.backend,
                state_dir: state.state_dir.clone(),
            })
        })
    };
    let plain = || Settings::load(config.as_deref());
    match cli.command {
        Command::Detect { src, json } => crate::cli::detect::run(&src, json, style),
        Command::Apply {
            src,
            dry_run,
            json,
            mut build,
        } => {
            if build.asterisk_conf.is_none() && build.install {
                build.asterisk_conf = plain()?.asterisk_conf;
            }
            crate::cli::apply::run_apply(&src, dry_run, json, &build, style)
        }
        Command::Revert {
            src,
            json,
            mut install,
        } => {
            if install.asterisk_conf.is_none() && install.install {
                install.asterisk_conf = plain()?.asterisk_conf;
            }
            crate::cli::apply::run_revert(&src, json, &install, style)
        }
        Command::Scan { files, json, state } => {
            let settings = settings(&state, &BackendArg::default(), vec![])?;
            crate::cli::scan::run(&files, &settings, json, style)
        }
        Command::Verify {
            src,
            root,
            moddir,
            asterisk_conf,
            json,
            state,
            backend,
        } => {
            let settings = settings(&state, &backend, vec![])?;
            crate::cli::verify::run(
                src.as_deref(),
                &root,
                moddir.as_deref(),
                asterisk_conf.as_deref(),
                &settings,
                json,
                style,
            )
        }
        Command::ShowConfig {
            json,
            state,
            backend,
        } => {
            let settings = settings(&state, &backend, vec![])?;
            if json {
                crate::cli::output::print_json(&settings);
            } else {
                print!(
                    "{}",
                    toml::to_string(&settings).expect("settings serialise")
                );
            }
            Ok(exit_codes::SUCCESS)
        }
        Command::Watch {
            ban,
            logs,
            backend,
            state,
            from_start,
        } => {
            let overrides = Overrides {
                logs,
                backend: backend.backend,
                state_dir: state.state_dir,
            };
            let settings = Settings::load(config.as_deref())?.overridden(&overrides);
            crate::cli::watch::run_watch(
                settings,
                crate::cli::watch::WatchArgs {
                    ban,
                    config,
                    overrides,
                    from_start,
                },
            )
        }
        Command::ImportFail2ban {
            jail_local,
            jail,
            output,
            force,
        } => crate::cli::import_fail2ban::run(&jail_local, &jail, output.as_deref(), force, style),
        Command::InstallWatcher {
            dry_run,
            unit_dir,
            state,
            backend,
        } => {
            let s = settings(&state, &backend, vec![])?;
            let overrides = Overrides {
                logs: vec![],
                backend: backend.backend,
                state_dir: state.state_dir,
            };
            crate::cli::install_watcher::run(
                config.as_deref(),
                &s,
                &overrides,
                &unit_dir,
                dry_run,
                style,
            )
        }
        Command::Ban {
            addr,
            ban_for,
            state,
            backend,
        } => {
            let s = settings(&state, &backend, vec![])?;
            crate::cli::control::run_ban(&s, backend.backend, &addr, ban_for, style)
        }
        Command::Unban {
            addr,
            all,
            purge,
            state,
            backend,
        } => {
            let s = settings(&state, &backend, vec![])?;
            crate::cli::control::run_unban(&s, backend.backend, addr.as_deref(), all, purge, style)
        }
        Command::Status {
            json,
            state,
            backend,
        } => {
            let s = settings(&state, &backend, vec![])?;
            crate::cli::control::run_status(&s, backend.backend, json, style)
        }
        Command::Completions { shell } => {
            use std::io::Write;
            let _ = std::io::stdout().write_all(&crate::cli::manual::completions(shell));
            Ok(exit_codes::SUCCESS)
        }
        Command::Generate { dir } => {
            let written =
                crate::cli::manual::write_packaged(&dir).map_err(|e| Error::io(&dir, e))?;
            for f in written {
                println!("{}", dir.join(f).display());
            }
            Ok(exit_codes::SUCCESS)
        }
    }
}
