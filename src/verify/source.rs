//! The source link: is the tree's chan_sip.c patched, at every site, with which tag.
use super::*;

/// What the tree's chan_sip.c says, read once for the source and built-module checks.
pub(super) struct SourceState {
    pub(super) result: Result<(PathBuf, Vec<u8>, sites::SiteScan), crate::error::Error>,
    /// The tree's tag (manifest, else the sites'), which built and installed modules must carry.
    pub(super) tag: Option<Tag>,
    pub(super) tag_state: TagState,
}

pub(super) fn source_state(src: &Path) -> SourceState {
    let result = crate::patch::apply::load(src).map(|l| (l.path, l.bytes, l.scan));
    let (tag, tag_state) = match &result {
        Ok((path, bytes, scan)) => {
            let tag = crate::patch::apply::tree_tag(path, bytes, scan);
            let patched: Vec<bool> = scan.sites.iter().map(|s| s.patched).collect();
            let tags = crate::patch::apply::site_tags(bytes, scan);
            (tag, TagState::of(&patched, &tags, tag))
        }
        Err(_) => (None, TagState::NoSites),
    };
    SourceState {
        result,
        tag,
        tag_state,
    }
}

/// "tag X" / "no tag" / "tags X, Y", for messages about a module.
pub(super) fn carried(tags: &[Tag]) -> String {
    match tags {
        [] => "no tag".into(),
        [t] => format!("tag {t}"),
        many => format!(
            "tags {}",
            many.iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

pub(super) fn check_source(src: Option<&Path>, st: Option<&SourceState>) -> Check {
    const NAME: &str = "source";
    let (Some(src), Some(st)) = (src, st) else {
        return Check::new(
            NAME,
            Status::Skipped,
            "no source tree given (astpatch verify SRC checks it)",
        );
    };
    match &st.result {
        Err(e) => Check::new(NAME, Status::Fail, e.to_string())
            .fix(e.hint().unwrap_or_else(|| "check the path".into())),
        Ok((path, _, scan)) => {
            let n = scan.sites.len();
            let patched = scan.sites.iter().filter(|s| s.patched).count();
            match (scan.state(), st.tag_state, st.tag) {
                (PatchState::Patched, TagState::Tagged, Some(tag)) => Check::new(
                    NAME,
                    Status::Pass,
                    format!(
                        "{}: all {n} inbound sites log the source address, tagged {tag}",
                        shown(path)
                    ),
                ),
                (PatchState::Patched, ..) => Check::new(
                    NAME,
                    Status::Fail,
                    format!(
                        "{}: all {n} inbound sites log the source address, but not all end with the tree's tag: the watcher does not trust their lines by default",
                        shown(path)
                    ),
                )
                .fix(format!(
                    "astpatch apply --rebuild --install {} (adds the tag)",
                    shown(src)
                )),
                (PatchState::NoSites, ..) => Check::new(
                    NAME,
                    Status::Skipped,
                    format!("{}: no inbound failed-auth log statements", shown(path)),
                ),
                _ => Check::new(
                    NAME,
                    Status::Fail,
                    format!(
                        "{}: {patched} of {n} inbound sites log the source address",
                        shown(path)
                    ),
                )
                .fix(format!("astpatch apply {}", shown(src))),
            }
        }
    }
}

/// The format strings of the file's inbound log statements, as the compiler stores them.
pub fn site_format_strings(src: &[u8], scan: &sites::SiteScan) -> Vec<Vec<u8>> {
    scan.sites
        .iter()
        .filter_map(|s| first_literal(&src[s.span.clone()]))
        .collect()
}

/// The first string literal of a statement (adjacent literals joined), with C escapes undone.
pub(super) fn first_literal(stmt: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = stmt.iter().position(|&b| b == b'"')?;
    loop {
        i += 1;
        while i < stmt.len() && stmt[i] != b'"' {
            if stmt[i] == b'\\' && i + 1 < stmt.len() {
                i += 1;
                out.push(match stmt[i] {
                    b'n' => b'\n',
                    b't' => b'\t',
                    b'r' => b'\r',
                    b'0' => 0,
                    other => other,
                });
            } else {
                out.push(stmt[i]);
            }
            i += 1;
        }
        // Another literal right after (only whitespace between) continues the string.
        let next = stmt[(i + 1).min(stmt.len())..]
            .iter()
            .position(|b| !b.is_ascii_whitespace());
        match next {
            Some(off) if stmt[i + 1 + off] == b'"' => i = i + 1 + off,
            _ => return Some(out),
        }
    }
}
