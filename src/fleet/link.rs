//! The link's health as `status` shows it: `fleet/link.json`, rewritten atomically by the
//! watcher's fleet thread when something changed.
use std::path::Path;

use serde::{Deserialize, Serialize};

pub const LINK: &str = "link.json";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub url: String,
    pub push: bool,
    pub pull: bool,
    /// Last successful stream pull (unix seconds).
    pub last_pull: Option<i64>,
    /// Last alert the LAPI took.
    pub last_push: Option<i64>,
    /// Fleet decisions held (all, before refusals).
    pub decisions_held: usize,
    /// Of them, in the fleet firewall objects now.
    pub enforced: usize,
    /// Refused here (ignoreip, own address, loopback, link-local).
    pub refused: usize,
    /// Local bans the LAPI has not taken yet, and unbans whose decisions are not yet deleted.
    pub pushes_queued: usize,
    pub deletes_queued: usize,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    pub updated_at: i64,
}

pub fn read(fleet_dir: &Path) -> Option<Link> {
    let b = std::fs::read(fleet_dir.join(LINK)).ok()?;
    serde_json::from_slice(&b).ok()
}

/// Replaced whole (temp file + rename: a reader never sees half of it) but not fsynced: it is
/// rewritten at every pull and only `status` reads it; a crash loses nothing that matters.
pub fn write(fleet_dir: &Path, l: &Link) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(l).expect("json");
    let tmp = fleet_dir.join(format!("{LINK}.tmp"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, fleet_dir.join(LINK))
}
