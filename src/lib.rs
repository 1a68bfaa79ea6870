//! astpatch: make Asterisk's chan_sip log the real source address of failed authentications,
//! and ban the offenders through the firewall.
//!
//! Pure logic (version parsing, patch matching, log recognition, ban decisions) lives in
//! side-effect-free modules; files, `make`, the firewall and the clock sit behind small traits.

pub mod apply;
pub mod asterisk_conf;
pub mod atomic;
pub mod build;
pub mod cli;
pub mod cmd_apply;
pub mod cmd_build;
pub mod cmd_control;
pub mod cmd_detect;
pub mod cmd_import_fail2ban;
pub mod cmd_install_watcher;
pub mod cmd_scan;
pub mod cmd_verify;
pub mod cmd_watch;
pub mod config;
pub mod detect;
pub mod duration;
pub mod error;
pub mod exit_codes;
pub mod firewall;
pub mod fleet;
pub mod follow;
pub mod install;
pub mod jail;
pub mod logframe;
pub mod logger_conf;
pub mod logread;
pub mod makeopts;
pub mod manifest;
pub mod manual;
pub mod metrics;
pub mod module_tag;
pub mod output;
pub mod patch;
pub mod policy;
pub mod progress;
pub mod provenance;
pub mod recognise;
pub mod revert;
pub mod running;
pub mod scan;
pub mod sites;
pub mod state;
pub mod tail_trust;
pub mod tracker;
pub mod tree;
pub mod verify;
pub mod version;
pub mod version_source;
pub mod versions_table;
pub mod watch;
pub mod watcher_unit;
