//! The command line: argument definitions and dispatch ([`args`]), terminal conventions
//! ([`output`], [`progress`]), and one file per command that parses, calls the library, and
//! prints. Generated manuals and completions come from the same definitions ([`manual`]).

pub mod apply;
pub mod args;
pub mod control;
pub mod detect;
pub mod fleet_status;
pub mod import_fail2ban;
pub mod install_watcher;
pub mod manual;
pub mod output;
pub mod progress;
pub mod rebuild;
pub mod scan;
pub mod verify;
pub mod watch;
