//! `astpatch revert`: put back the chan_sip.c that `apply` found, byte for byte.
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::patch::apply::load;
use crate::patch::engine::{self, Action, Direction, Tagging};
use crate::patch::manifest;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RevertOutcome {
    /// The file was exactly as astpatch left it: the pristine bytes are back.
    Restored,
    /// The file had other edits since apply; only astpatch's statements were put back.
    RevertedSitesOnly,
    /// The file already held the pristine bytes; the leftover record was removed.
    AlreadyOriginal,
}

#[derive(Debug, Clone, Serialize)]
pub struct RevertReport {
    pub file: PathBuf,
    pub outcome: RevertOutcome,
    pub sites: usize,
}

pub fn revert(root: &Path) -> Result<RevertReport> {
    let l = load(root)?;
    let path = &l.path;
    let Some(record) = manifest::load(path)? else {
        return Err(Error::nothing_to_do(
            format!(
                "nothing to revert: {} carries no astpatch record",
                path.display()
            ),
            Some(
                "astpatch apply leaves chan_sip.c.astpatch.json beside the file; `astpatch detect SRC` shows whether the file is patched",
            ),
        ));
    };
    let mode = crate::atomic::mode_of(path).map_err(|e| Error::io(path, e))?;
    let current = manifest::sha256_hex(&l.bytes);
    let orig_path = manifest::original_path(path);
    let outcome = if current == record.original_sha256 {
        RevertOutcome::AlreadyOriginal
    } else if current == record.patched_sha256 {
        let orig = match fs::read(&orig_path) {
            Ok(orig) => orig,
            // The pristine copy was deleted: undoing astpatch's own statements gives the same
            // bytes, and the recorded hash proves it before anything is written.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let out = reverse_sites(&l, &record)?;
                if manifest::sha256_hex(&out) != record.original_sha256 {
                    return Err(Error::input(
                        format!(
                            "{} is missing, and undoing astpatch's statements does not give the recorded original; nothing was changed",
                            orig_path.display()
                        ),
                        Some(
                            "restore chan_sip.c from the release tarball or `git checkout channels/chan_sip.c`",
                        ),
                    ));
                }
                out
            }
            Err(e) => return Err(Error::io(&orig_path, e)),
        };
        if manifest::sha256_hex(&orig) != record.original_sha256 {
            return Err(Error::input(
                format!(
                    "{} does not match the hash astpatch recorded; nothing was changed",
                    orig_path.display()
                ),
                Some(
                    "the pristine copy was altered; restore chan_sip.c from the release tarball or git instead",
                ),
            ));
        }
        crate::atomic::write(path, &orig, Some(mode)).map_err(|e| Error::io(path, e))?;
        RevertOutcome::Restored
    } else {
        revert_sites_only(&l, &record, mode)?;
        RevertOutcome::RevertedSitesOnly
    };
    for leftover in [manifest::manifest_path(path), orig_path] {
        match fs::remove_file(&leftover) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&leftover, e)),
        }
    }
    if let Some(dir) = path.parent() {
        crate::atomic::sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    }
    Ok(RevertReport {
        file: path.clone(),
        outcome,
        sites: record.changed_lines.len(),
    })
}

/// The file was edited after apply. Undo exactly the statements astpatch wrote, keeping every
/// other edit — but only when each of them is still there, word for word.
fn revert_sites_only(
    l: &crate::patch::apply::Loaded,
    record: &manifest::Manifest,
    mode: u32,
) -> Result<()> {
    let out = reverse_sites(l, record)?;
    crate::atomic::write(&l.path, &out, Some(mode)).map_err(|e| Error::io(&l.path, e))
}

/// The file with exactly the statements astpatch wrote put back, or a refusal naming what
/// stands in the way.
fn reverse_sites(l: &crate::patch::apply::Loaded, record: &manifest::Manifest) -> Result<Vec<u8>> {
    let refuse = |why: String| {
        Error::input(
            format!(
                "{} changed after apply in a way astpatch cannot undo safely: {why}; nothing was changed",
                l.path.display()
            ),
            Some(
                "compare with chan_sip.c.astpatch-orig (the file as it was before apply) and restore by hand",
            ),
        )
    };
    let check_count = |found: usize| {
        if found == record.changed_lines.len() {
            Ok(())
        } else {
            Err(refuse(format!(
                "astpatch changed {} statements but {found} now match its wording",
                record.changed_lines.len(),
            )))
        }
    };
    let patch = engine::embedded()
        .iter()
        .find(|p| p.file == record.patch)
        .ok_or_else(|| {
            refuse(format!(
                "the record names {}, which this astpatch does not ship",
                record.patch
            ))
        })?;
    let Some(tag) = record.tag else {
        // A record from before tags: the statements are astpatch's untagged wording.
        let plan = engine::plan(
            &l.bytes,
            &l.scan,
            patch,
            Direction::Reverse,
            Tagging::Legacy,
        );
        if let Some(s) = plan.unknown().next() {
            return Err(refuse(format!(
                "the log statement at line {} in {}() was edited",
                s.site.line, s.site.function
            )));
        }
        check_count(plan.count(Action::Patch))?;
        return Ok(engine::execute(&l.bytes, &plan, patch, Direction::Reverse));
    };
    // The statements that carry this tree's tag are astpatch's; each goes back to the text the
    // record holds for it (stock, an earlier wording, or a hand patch). Hand patches astpatch
    // left alone carry no tag and stay as they are.
    let plan = engine::plan(
        &l.bytes,
        &l.scan,
        patch,
        Direction::Reverse,
        Tagging::Tag(tag),
    );
    let ours: Vec<_> = plan
        .sites
        .iter()
        .filter(|s| s.action == Action::Patch)
        .collect();
    check_count(ours.len())?;
    Ok(engine::replace_sites(
        &l.bytes,
        ours.iter()
            .zip(&record.original_statements)
            .map(|(s, text)| (s.site.span.clone(), text.as_bytes().to_vec())),
    ))
}
