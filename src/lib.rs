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
pub mod config;
pub mod duration;
pub mod error;
pub mod exit_codes;
pub mod install;
pub mod makeopts;
pub mod manifest;
pub mod output;
pub mod patch;
pub mod progress;
pub mod revert;
pub mod sites;
pub mod tree;
