//! What `apply` leaves beside chan_sip.c so `revert` can be exact: the pristine bytes
//! (`chan_sip.c.astpatch-orig`) and a small JSON record of hashes and the sites it changed.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::patch::tag::Tag;

/// 2 adds the tree's tag and the statements astpatch replaced; format 1 records (from before
/// tags) are still read, so such a tree can be reverted or upgraded in place.
pub const FORMAT: u32 = 2;
const READABLE: [u32; 2] = [1, 2];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub astpatch_version: String,
    pub patch: String,
    pub original_sha256: String,
    pub patched_sha256: String,
    /// 1-based lines (in the patched file) of the statements astpatch rewrote.
    pub changed_lines: Vec<usize>,
    pub applied_at: u64,
    /// The tree's tag, written into every site; kept across re-applies (format 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<Tag>,
    /// Format 2: the pristine text of each statement in `changed_lines`, in the same order, so
    /// revert can put back a hand patch or an earlier wording when the pristine copy is gone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub original_statements: Vec<String>,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn manifest_path(chan_sip: &Path) -> PathBuf {
    sibling(chan_sip, ".astpatch.json")
}

pub fn original_path(chan_sip: &Path) -> PathBuf {
    sibling(chan_sip, ".astpatch-orig")
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Read the manifest if there is one.
pub fn load(chan_sip: &Path) -> Result<Option<Manifest>> {
    let path = manifest_path(chan_sip);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let m: Manifest = serde_json::from_str(&text).map_err(|e| {
        Error::input(
            format!("{}: not a valid astpatch manifest: {e}", path.display()),
            Some("if chan_sip.c.astpatch-orig is the pristine file, copy it back by hand and delete both files"),
        )
    })?;
    if !READABLE.contains(&m.format) {
        return Err(Error::input(
            format!(
                "{}: manifest format {} is not one this astpatch reads (1 or {FORMAT})",
                path.display(),
                m.format
            ),
            Some("use the astpatch version that applied the patch to revert it"),
        ));
    }
    if m.format >= 2 && (m.tag.is_none() || m.original_statements.len() != m.changed_lines.len()) {
        return Err(Error::input(
            format!(
                "{}: format {} manifest without its tag or statements",
                path.display(),
                m.format
            ),
            Some(
                "if chan_sip.c.astpatch-orig is the pristine file, copy it back by hand and delete both files",
            ),
        ));
    }
    Ok(Some(m))
}

pub fn store(chan_sip: &Path, m: &Manifest) -> Result<()> {
    let path = manifest_path(chan_sip);
    let text = serde_json::to_string_pretty(m).expect("manifest serialises") + "\n";
    // As readable as chan_sip.c itself (which holds the same tag): every later apply, detect
    // and install reads the record, also as a user who may read the tree but not write it.
    let mode = crate::atomic::mode_of(chan_sip).ok().map(|m| m & 0o666);
    crate::atomic::write(&path, text.as_bytes(), mode).map_err(|e| Error::io(&path, e))
}
