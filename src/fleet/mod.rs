//! A fleet of PBXes sharing bans through CrowdSec's Local API (issue 14): astpatch is a
//! watcher of the LAPI (our bans become alerts with their decisions) and a bouncer (the
//! fleet's decisions go into firewall objects of their own).
//!
//! Failure is normal: everything that talks to the LAPI runs on one thread of its own
//! ([`worker`]); the log loop only nudges it through a bounded channel and never waits. What
//! is still to push is derived from the ban journal (the write-ahead log) against a ledger,
//! so nothing is lost to a crash or an unreachable LAPI. The state lives in
//! `<state_dir>/fleet/`: `pushed.json` (ledger), `held.json` (the fleet's decisions),
//! `lifted.json` (fleet bans lifted here by hand), `link.json` (for `status`).
pub mod client;
pub mod enforce;
pub mod link;
pub mod pull;
pub mod push;
pub mod settings;
pub mod status;
pub mod unban;
pub mod verify;
pub mod worker;

use std::path::{Path, PathBuf};

pub use settings::Crowdsec;

pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("fleet")
}
