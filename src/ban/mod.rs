//! From failures to bans. [`tracker`] counts failures per address in a window; [`policy`] says
//! what a failure may ban and for how long; [`trust`] says which chan_sip tails are believed;
//! [`state`] is the durable write-ahead journal; [`engine`] is the watcher without a loop or a
//! clock (the loop is `cli::watch`); [`scan`] replays a log through the same pieces. Also here:
//! importing a fail2ban jail, the metrics file and what systemd knows of the watcher's unit.

pub mod control;
pub mod engine;
pub mod jail_import;
pub mod metrics;
pub mod one_count;
pub mod policy;
pub mod scan;
pub mod state;
pub mod tracker;
pub mod trust;
pub mod unit_file;
