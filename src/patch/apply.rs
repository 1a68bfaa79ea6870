//! `astpatch apply`: detect, pick the patch, and rewrite chan_sip.c all-or-nothing.
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::asterisk::tree::{CHAN_SIP, SourceTree};
use crate::error::{Error, Result};
use crate::patch::engine::{self, Action, Direction, Patch, PlannedSite, Tagging};
use crate::patch::manifest::{self, Manifest};
use crate::patch::sites::{self, PatchState};
use crate::patch::tag::{self, Tag};

#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    pub tree: PathBuf,
    pub file: PathBuf,
    pub patch: String,
    pub shape: String,
    pub state_before: PatchState,
    /// The tree's tag: every site ends its message with ` [astpatch:TAG]`.
    pub tag: Tag,
    pub tag_origin: TagOrigin,
    pub sites: Vec<PlannedSite>,
    /// How many statements were (or, with --dry-run, would be) rewritten.
    pub changed: usize,
    pub written: bool,
    /// Unified diff of the change, with --dry-run only (on a 1 MB file the diff costs more than
    /// the rest of apply); empty when nothing changes. Bytes that are not UTF-8
    /// (Latin-1 comments) are shown lossily here; `patch_bytes` has them exact.
    pub diff: String,
    /// The same diff byte for byte, as `--dry-run` prints it: `patch -p1` applies it even where
    /// a context line holds Latin-1.
    #[serde(skip)]
    pub patch_bytes: Vec<u8>,
    pub notes: Vec<String>,
}

/// Where the tag of an apply came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TagOrigin {
    /// The tree's manifest: an earlier apply chose it, and a module built then carries it.
    Manifest,
    /// The sites already carry it (the manifest is gone).
    File,
    /// Fresh from the kernel's random source (with --dry-run: shown, not kept).
    New,
}

/// The tag each site's statement carries, in site order (`None`: no tag).
pub fn site_tags(src: &[u8], scan: &sites::SiteScan) -> Vec<Option<Tag>> {
    scan.sites
        .iter()
        .map(|s| tag::in_module(&src[s.span.clone()]).first().copied())
        .collect()
}

/// The one tag every tagged site shares, if they share exactly one.
fn file_tag(src: &[u8], scan: &sites::SiteScan) -> Option<Tag> {
    let mut tags: Vec<Tag> = site_tags(src, scan).into_iter().flatten().collect();
    tags.dedup();
    match tags.as_slice() {
        [t] => Some(*t),
        _ => None,
    }
}

/// The tree's tag as far as it is settled: the manifest's, else the one its sites share.
pub fn tree_tag(chan_sip: &Path, src: &[u8], scan: &sites::SiteScan) -> Option<Tag> {
    manifest::load(chan_sip)
        .ok()
        .flatten()
        .and_then(|m| m.tag)
        .or_else(|| file_tag(src, scan))
}

/// The tag this apply writes: kept from the manifest or the file, or a new one.
fn choose_tag(record: Option<&Manifest>, l: &Loaded) -> Result<(Tag, TagOrigin)> {
    if let Some(t) = record.and_then(|m| m.tag) {
        return Ok((t, TagOrigin::Manifest));
    }
    if let Some(t) = file_tag(&l.bytes, &l.scan) {
        return Ok((t, TagOrigin::File));
    }
    let t = Tag::generate().map_err(|e| {
        Error::environment(
            format!("cannot draw a tag from the kernel's random source: {e}; nothing was written"),
            Some("astpatch needs getrandom(2) (Linux 3.17 or later)"),
        )
    })?;
    Ok((t, TagOrigin::New))
}

/// Everything `apply` and `revert` learn from the file before deciding anything.
pub(crate) struct Loaded {
    pub tree: SourceTree,
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub scan: sites::SiteScan,
}

/// Open the tree and read chan_sip.c, refusing files astpatch must not rewrite.
pub(crate) fn load(root: &Path) -> Result<Loaded> {
    let tree = SourceTree::open(root)?;
    let path = tree.chan_sip();
    let link = fs::symlink_metadata(&path).map_err(|e| Error::io(&path, e))?;
    if link.file_type().is_symlink() {
        let target = fs::read_link(&path)
            .map(|t| t.display().to_string())
            .unwrap_or_default();
        return Err(Error::input(
            format!(
                "{} is a symlink (to {target}); astpatch only rewrites regular files",
                path.display()
            ),
            Some(
                "run astpatch on the tree that holds the real file, or replace the link with a copy",
            ),
        ));
    }
    let bytes = tree.read_chan_sip()?;
    if bytes.is_empty() {
        return Err(Error::input(
            format!("{} is empty", path.display()),
            Some(
                "restore chan_sip.c from the release tarball or `git checkout channels/chan_sip.c`",
            ),
        ));
    }
    if !bytes.ends_with(b"\n") {
        return Err(Error::input(
            format!(
                "{} looks truncated: it does not end with a newline",
                path.display()
            ),
            Some(
                "restore chan_sip.c from the release tarball or `git checkout channels/chan_sip.c`",
            ),
        ));
    }
    let scan = sites::scan(&bytes);
    Ok(Loaded {
        tree,
        path,
        bytes,
        scan,
    })
}

/// The patch for a loaded file, or an error that lists what was found.
pub(crate) fn choose_patch(l: &Loaded) -> Result<&'static Patch> {
    if l.scan.sites.is_empty() {
        return Err(Error::nothing_to_do(
            format!(
                "{}: no inbound \"Failed to authenticate\" log statements found",
                l.path.display()
            ),
            Some(
                "this chan_sip.c logs no inbound authentication failures; there is nothing to patch",
            ),
        ));
    }
    engine::select(engine::embedded(), &l.scan).ok_or_else(|| {
        let listing: Vec<String> = l
            .scan
            .sites
            .iter()
            .map(|s| format!("line {} in {}()", s.line, s.function))
            .collect();
        Error::input(
            format!(
                "{}: unrecognised chan_sip.c layout (sites at {}; shape {}, address API {})",
                l.path.display(),
                listing.join(", "),
                l.scan.shape().unwrap_or("unknown"),
                l.scan
                    .address_api
                    .map(|a| format!("{a:?}"))
                    .unwrap_or_else(|| "unknown".into()),
            ),
            Some(FILE_AN_ISSUE),
        )
    })
}

/// What to send when astpatch meets a layout it does not know: the refusal itself names every
/// site and shows its statement, and `--dry-run` prints it without touching anything.
const FILE_AN_ISSUE: &str = "nothing was written; to report it, attach the output of \
`astpatch apply --dry-run SRC 2> astpatch-issue.txt` (it lists each site and its statement) and \
of `astpatch detect --json SRC` to an issue";

/// Refuse, naming each site and showing its statement, when any site fits no hunk.
pub(crate) fn refuse_unknown(
    path: &Path,
    src: &[u8],
    plan: &engine::Plan,
    patch: &Patch,
) -> Result<()> {
    let unknown: Vec<String> = plan
        .unknown()
        .map(|s| {
            format!(
                "  {}:{} in {}(): statement matches no hunk of {}\n      {}",
                CHAN_SIP,
                s.site.line,
                s.site.function,
                patch.file,
                one_line(&src[s.site.span.clone()])
            )
        })
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(Error::input(
        format!(
            "{}: {} site(s) cannot be matched; nothing was written\n{}",
            path.display(),
            unknown.len(),
            unknown.join("\n")
        ),
        Some(&format!(
            "a local change touched these log statements; {FILE_AN_ISSUE}"
        )),
    ))
}

/// A C statement on one line for a report: whitespace runs collapsed, control bytes and
/// non-UTF-8 shown escaped, long statements cut.
fn one_line(stmt: &[u8]) -> String {
    let text = String::from_utf8_lossy(stmt);
    let mut out = String::new();
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        for c in word.chars() {
            if c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
    }
    if out.chars().count() > 200 {
        out = out.chars().take(200).collect::<String>() + "…";
    }
    out
}

pub fn apply(root: &Path, dry_run: bool) -> Result<ApplyReport> {
    let l = load(root)?;
    let patch = choose_patch(&l)?;
    let record = manifest::load(&l.path)?;
    let (tag, tag_origin) = choose_tag(record.as_ref(), &l)?;
    let plan = engine::plan(
        &l.bytes,
        &l.scan,
        patch,
        Direction::Forward,
        Tagging::Tag(tag),
    );
    refuse_unknown(&l.path, &l.bytes, &plan, patch)?;
    let state_before = l.scan.state();
    let changed = plan.changes();
    let notes = plan_notes(&plan);
    let new = engine::execute(&l.bytes, &plan, patch, Direction::Forward);
    let patch_bytes = if changed > 0 && dry_run {
        unified_diff_bytes(&l.bytes, &new)
    } else {
        Vec::new()
    };
    let mut report = ApplyReport {
        tree: l.tree.root.clone(),
        file: l.path.clone(),
        patch: patch.file.clone(),
        shape: patch.shape.clone(),
        state_before,
        tag,
        tag_origin,
        sites: plan.sites,
        changed,
        written: false,
        diff: String::from_utf8_lossy(&patch_bytes).into_owned(),
        patch_bytes,
        notes,
    };
    if changed == 0 && !dry_run && heal_interrupted_upgrade(&l, patch, tag, record.as_ref())? {
        report.notes.push(
            "an earlier upgrade to the tagged wording stopped before its record was written; the record is complete now"
                .into(),
        );
    }
    if changed == 0 || dry_run {
        return Ok(report);
    }
    if let Some(note) = git_note(&l.tree.root, &l.path) {
        report.notes.push(note);
    }
    write_patched(&l, &new, patch, tag, record)?;
    report.written = true;
    Ok(report)
}

/// What apply tells the operator about sites it did not simply patch.
fn plan_notes(plan: &engine::Plan) -> Vec<String> {
    let mut notes = Vec::new();
    let upgraded = plan.count(Action::Upgrade);
    if upgraded > 0 {
        notes.push(format!(
            "{upgraded} site(s) already logged the address in astpatch's words but without this tree's tag (an earlier astpatch, or the seed's hand patch): rewritten with the tag the watcher needs"
        ));
    }
    let rewritten = plan.count(Action::RewriteHandPatch);
    if rewritten > 0 {
        notes.push(format!(
            "{rewritten} site(s) carried a hand patch in other words: rewritten in astpatch's tagged words so the watcher trusts their lines; `astpatch revert` gives back the hand-patched file"
        ));
    }
    let by_hand = plan.count(Action::PatchedByHand);
    if by_hand > 0 {
        let at: Vec<String> = plan
            .sites
            .iter()
            .filter(|s| s.action == Action::PatchedByHand)
            .map(|s| format!("line {} in {}()", s.site.line, s.site.function))
            .collect();
        notes.push(format!(
            "{by_hand} site(s) carry a hand patch astpatch cannot match to one of its statements ({}); left as they are: their lines carry no tag, so the watcher trusts them only with patched = true",
            at.join(", ")
        ));
    }
    notes
}

/// The file before astpatch's first apply, and whether it already sits in the pristine copy.
fn pristine(
    path: &Path,
    bytes: &[u8],
    record: Option<&Manifest>,
    current: &str,
) -> Result<(Vec<u8>, bool)> {
    let Some(old) = record else {
        return Ok((bytes.to_vec(), false));
    };
    if old.original_sha256 == *current {
        return Ok((bytes.to_vec(), false));
    }
    let revert_first = || {
        Some(
            "run `astpatch revert SRC` first, or remove chan_sip.c.astpatch.json and chan_sip.c.astpatch-orig if you restored the file yourself",
        )
    };
    if old.patched_sha256 != *current {
        // A record from an earlier apply: only safe to overwrite if the file is back to the
        // pristine bytes that record describes, or still exactly what that apply wrote.
        return Err(Error::input(
            format!(
                "{} changed since astpatch last patched it, and its record does not match",
                path.display()
            ),
            revert_first(),
        ));
    }
    // Exactly what an earlier apply wrote (before tags, or with another tag): upgrade in place.
    // The pristine copy stays the original, so revert still gives back the file as it was.
    let orig_path = manifest::original_path(path);
    let orig = match fs::read(&orig_path) {
        Ok(b) if manifest::sha256_hex(&b) == old.original_sha256 => b,
        Ok(_) => {
            return Err(Error::input(
                format!(
                    "{} does not match the hash astpatch recorded; nothing was written",
                    orig_path.display()
                ),
                revert_first(),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::input(
                format!(
                    "{} is missing, so adding the tag in place would lose the way back; nothing was written",
                    orig_path.display()
                ),
                Some(
                    "run `astpatch revert SRC` (it rebuilds the original from the record), then `astpatch apply SRC`",
                ),
            ));
        }
        Err(e) => return Err(Error::io(&orig_path, e)),
    };
    Ok((orig, true))
}

fn write_patched(
    l: &Loaded,
    new: &[u8],
    patch: &Patch,
    tag: Tag,
    record: Option<Manifest>,
) -> Result<()> {
    let path = &l.path;
    let meta = fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.permissions().readonly() {
        return Err(Error::input(
            format!("{} is read-only; nothing was written", path.display()),
            Some("make it writable (chmod u+w) if you mean astpatch to change it"),
        ));
    }
    let mode = crate::atomic::mode_of(path).map_err(|e| Error::io(path, e))?;
    let current = manifest::sha256_hex(&l.bytes);
    let (original, kept) = pristine(&l.path, &l.bytes, record.as_ref(), &current)?;
    let new_record = new_record(&original, new, patch, tag)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    if !may_write(dir) {
        return Err(Error::environment(
            format!(
                "{} is not writable: astpatch writes the new chan_sip.c beside the old one and renames it into place; nothing was written",
                dir.display()
            ),
            Some("run as the tree's owner (or root), or make that directory writable"),
        ));
    }
    let orig = manifest::original_path(path);
    let record_path = manifest::manifest_path(path);
    let wrote = write_all_three(l, new, &new_record, mode, (!kept).then_some(&orig));
    if let Err(e) = wrote {
        // A full disk or a failing device part-way: the original was never replaced, so take
        // back the copy and the record too (or put the earlier record back) and leave the
        // directory as it was.
        if kept {
            // Upgrade in place: the file may already be the new one; put the old bytes back
            // (the earlier record still describes them).
            let _ = crate::atomic::write(path, &l.bytes, Some(mode));
        } else {
            for leftover in [&record_path, &orig] {
                let _ = fs::remove_file(leftover);
            }
        }
        let _ = crate::atomic::sync_dir(dir);
        return Err(match e {
            Error::Io { path, source } => Error::io(
                path,
                std::io::Error::new(source.kind(), format!("{source}; nothing was changed")),
            ),
            other => other,
        });
    }
    Ok(())
}

/// The record of an apply: which statements differ from the pristine file and what they were.
fn new_record(original: &[u8], new: &[u8], patch: &Patch, tag: Tag) -> Result<Manifest> {
    let before = sites::scan(original);
    let after = sites::scan(new);
    if before.sites.len() != after.sites.len() {
        return Err(Error::input(
            format!(
                "the pristine chan_sip.c has {} inbound sites but the patched one {}; nothing was written",
                before.sites.len(),
                after.sites.len()
            ),
            Some(
                "run `astpatch revert SRC` first, or remove chan_sip.c.astpatch.json and chan_sip.c.astpatch-orig if you restored the file yourself",
            ),
        ));
    }
    let (changed_lines, original_statements) = before
        .sites
        .iter()
        .zip(&after.sites)
        .filter(|(b, a)| original[b.span.clone()] != new[a.span.clone()])
        .map(|(b, a)| {
            (
                a.line,
                String::from_utf8_lossy(&original[b.span.clone()]).into_owned(),
            )
        })
        .unzip();
    Ok(Manifest {
        format: manifest::FORMAT,
        astpatch_version: env!("CARGO_PKG_VERSION").into(),
        patch: patch.file.clone(),
        original_sha256: manifest::sha256_hex(original),
        patched_sha256: manifest::sha256_hex(new),
        changed_lines,
        applied_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        tag: Some(tag),
        original_statements,
    })
}

fn write_all_three(
    l: &Loaded,
    new: &[u8],
    record: &Manifest,
    mode: u32,
    orig: Option<&PathBuf>,
) -> Result<()> {
    let path = &l.path;
    let Some(orig) = orig else {
        // Upgrade in place (the pristine copy is already there): file first, then record. A
        // crash between them leaves the tagged file under the earlier record, which
        // `heal_interrupted_upgrade` can prove and finish; the other order could not be proved.
        crate::atomic::write(path, new, Some(mode)).map_err(|e| Error::io(path, e))?;
        return manifest::store(path, record);
    };
    // Pristine copy and record first: a crash after them but before the rename leaves the
    // original in place and a record revert understands.
    crate::atomic::write(orig, &l.bytes, Some(mode)).map_err(|e| Error::io(orig, e))?;
    manifest::store(path, record)?;
    crate::atomic::write(path, new, Some(mode)).map_err(|e| Error::io(path, e))
}

/// An upgrade in place that stopped after the file and before its record: the file is tagged,
/// the record still the one from before tags. If taking the tags out gives exactly the bytes
/// that record describes, write the record the upgrade would have written.
fn heal_interrupted_upgrade(
    l: &Loaded,
    patch: &Patch,
    tag: Tag,
    record: Option<&Manifest>,
) -> Result<bool> {
    let Some(old) = record.filter(|m| m.tag.is_none()) else {
        return Ok(false);
    };
    if manifest::sha256_hex(&l.bytes) == old.patched_sha256 {
        return Ok(false);
    }
    let plan = engine::plan(
        &l.bytes,
        &l.scan,
        patch,
        Direction::Forward,
        Tagging::Legacy,
    );
    let untagged = engine::execute(&l.bytes, &plan, patch, Direction::Forward);
    if manifest::sha256_hex(&untagged) != old.patched_sha256 {
        return Ok(false);
    }
    let (original, _) = pristine(&l.path, &untagged, Some(old), &old.patched_sha256)?;
    manifest::store(&l.path, &new_record(&original, &l.bytes, patch, tag)?)?;
    Ok(true)
}

/// Whether this process may create files in `dir` (root passes unless the mount is read-only,
/// which the write itself then reports).
fn may_write(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return true;
    };
    // SAFETY: a valid NUL-terminated path; access(2) only reads it.
    let ok = unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0;
    ok || std::io::Error::last_os_error().raw_os_error() == Some(libc::EROFS)
}

/// A git checkout gets a note when chan_sip.c has uncommitted changes; astpatch never commits,
/// stashes or resets anything.
fn git_note(root: &Path, file: &Path) -> Option<String> {
    let repo = git2::Repository::discover(root).ok()?;
    let workdir = repo.workdir()?.canonicalize().ok()?;
    let rel = file
        .canonicalize()
        .ok()?
        .strip_prefix(&workdir)
        .ok()?
        .to_owned();
    let status = repo.status_file(&rel).ok()?;
    let dirty = git2::Status::WT_MODIFIED
        | git2::Status::INDEX_MODIFIED
        | git2::Status::WT_NEW
        | git2::Status::INDEX_NEW;
    status.intersects(dirty).then(|| {
        format!("{} had uncommitted changes in git before apply; they are kept (astpatch never commits or resets)", rel.display())
    })
}

/// Unified diff for people; bytes that are not UTF-8 are shown lossily (the file is exact).
pub fn unified_diff(old: &[u8], new: &[u8]) -> String {
    String::from_utf8_lossy(&unified_diff_bytes(old, new)).into_owned()
}

/// Unified diff over bytes. Each byte is read as the Latin-1 character of the same value (a
/// lossless mapping), diffed as text and written back, so every byte of a context line
/// survives and the result is a patch `patch -p1` applies.
pub fn unified_diff_bytes(old: &[u8], new: &[u8]) -> Vec<u8> {
    let latin1 = |b: &[u8]| b.iter().map(|&c| char::from(c)).collect::<String>();
    let (old, new) = (latin1(old), latin1(new));
    similar::TextDiff::from_lines(old.as_str(), new.as_str())
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{CHAN_SIP}"), &format!("b/{CHAN_SIP}"))
        .to_string()
        .chars()
        // Only the inputs' characters (all below U+0100) and ASCII headers come out.
        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
        .collect()
}
