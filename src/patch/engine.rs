//! The patch engine: applies the unified diffs in `patches/` by content, not by line number.
//!
//! Each hunk names its C function in the `@@` header and holds one log statement before (`-`)
//! and after (`+`). A hunk is applied to a site found by [`crate::patch::sites`] when the site sits in
//! that function and its statement equals the `-` side with whitespace outside string literals
//! ignored. The site keeps its own indentation and line endings, so offset drift, re-indented
//! code, CRLF copies and vendor changes elsewhere in the file do not matter.
//!
//! Every `+` format string ends in [`PLACEHOLDER`] just before its `\n`. The engine writes the
//! tree's own tag there ([`crate::patch::tag`]); a raw patch file applied with `patch -p1` still
//! compiles, but the literal text `TAG` is no tag, so a module built from it counts as untagged.
use serde::{Deserialize, Serialize};

use crate::patch::sites::{self, AddressApi, Site, SiteKind, SiteScan};
use crate::patch::tag::{self, Tag};

/// What every `+` format string of a patch file carries before `\n`; replaced by the tree's
/// ` [astpatch:TAG]` when applied. Hex digits only: it adds no conversion to the format.
pub const PLACEHOLDER: &str = " [astpatch:TAG]";

/// Which ending the `+` side of a hunk is rendered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tagging {
    /// No tag: astpatch's wording before tags, which is also the seed's hand patch.
    Legacy,
    /// The tree's tag.
    Tag(Tag),
}

impl Tagging {
    fn ending(self) -> String {
        match self {
            Tagging::Legacy => String::new(),
            Tagging::Tag(t) => t.suffix(),
        }
    }
}

/// `text` with the placeholder replaced for `tagging`.
fn substitute(text: &[u8], tagging: Tagging) -> Vec<u8> {
    let ph = PLACEHOLDER.as_bytes();
    match memchr::memmem::find(text, ph) {
        Some(at) => {
            let mut out = text[..at].to_vec();
            out.extend_from_slice(tagging.ending().as_bytes());
            out.extend_from_slice(&text[at + ph.len()..]);
            out
        }
        None => text.to_vec(),
    }
}

/// A normalised statement with a tag of any value put back to the placeholder, so it can be
/// compared with a hunk's `+` side whatever tag it was written with.
fn detag(norm: &[u8]) -> Option<Vec<u8>> {
    let at = memchr::memmem::find(norm, tag::OPEN)?;
    let start = at + tag::OPEN.len();
    let hex = norm.get(start..start + tag::LEN)?;
    Tag::parse(hex)?;
    if norm.get(start + tag::LEN) != Some(&tag::CLOSE) {
        return None;
    }
    let mut out = norm[..at].to_vec();
    out.extend_from_slice(PLACEHOLDER.as_bytes());
    out.extend_from_slice(&norm[start + tag::LEN + 1..]);
    Some(out)
}

/// One `-`/`+` pair of a patch file.
#[derive(Debug, Clone)]
pub struct Hunk {
    pub function: String,
    /// Line in the release the patch was made from; for people, never used to apply.
    pub reference_line: usize,
    pub old: Vec<String>,
    /// The `+` side as the patch file has it, with [`PLACEHOLDER`]; see [`Hunk::new_lines`].
    pub new: Vec<String>,
    /// Failed-auth or fake-auth, read from the `+` side.
    pub kind: SiteKind,
    old_norm: Vec<u8>,
    /// Normalised `+` side, still with the placeholder.
    new_norm: Vec<u8>,
}

impl Hunk {
    /// The `+` side rendered for `tagging`.
    pub fn new_lines(&self, tagging: Tagging) -> Vec<String> {
        self.new
            .iter()
            .map(|l| String::from_utf8_lossy(&substitute(l.as_bytes(), tagging)).into_owned())
            .collect()
    }

    fn new_norm(&self, tagging: Tagging) -> Vec<u8> {
        substitute(&self.new_norm, tagging)
    }

    fn is_subscribe(&self) -> bool {
        self.old.iter().any(|l| l.contains("SUBSCRIBE"))
    }
}

/// A patch file from `patches/` with its metadata from `patches/index.json`.
#[derive(Debug, Clone)]
pub struct Patch {
    pub file: String,
    pub shape: String,
    pub address_api: AddressApi,
    pub releases: String,
    pub hunks: Vec<Hunk>,
}

#[derive(Debug, Deserialize)]
struct Index {
    patches: Vec<IndexEntry>,
}

#[derive(Debug, Deserialize)]
struct IndexEntry {
    file: String,
    shape: String,
    address_api: AddressApi,
    releases: String,
}

/// The patch files compiled into the binary, so astpatch works from any directory.
const EMBEDDED: &[(&str, &str)] = &[
    (
        "shape-0-inet.patch",
        include_str!("../../patches/shape-0-inet.patch"),
    ),
    ("shape-0.patch", include_str!("../../patches/shape-0.patch")),
    ("shape-1.patch", include_str!("../../patches/shape-1.patch")),
    (
        "shape-2-buf.patch",
        include_str!("../../patches/shape-2-buf.patch"),
    ),
    ("shape-2.patch", include_str!("../../patches/shape-2.patch")),
    ("shape-3.patch", include_str!("../../patches/shape-3.patch")),
    ("shape-4.patch", include_str!("../../patches/shape-4.patch")),
    (
        "shape-4c.patch",
        include_str!("../../patches/shape-4c.patch"),
    ),
    ("shape-5.patch", include_str!("../../patches/shape-5.patch")),
    (
        "shape-5c.patch",
        include_str!("../../patches/shape-5c.patch"),
    ),
    ("shape-6.patch", include_str!("../../patches/shape-6.patch")),
    ("shape-7.patch", include_str!("../../patches/shape-7.patch")),
    ("shape-8.patch", include_str!("../../patches/shape-8.patch")),
];
const INDEX: &str = include_str!("../../patches/index.json");

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatchFileError {
    #[error("patches/{file}: {message}")]
    Malformed { file: String, message: String },
}

/// Parse a unified diff of the kind `patches/` holds.
pub fn parse_patch(file: &str, text: &str) -> Result<Vec<Hunk>, PatchFileError> {
    let bad = |message: String| PatchFileError::Malformed {
        file: file.to_owned(),
        message,
    };
    let mut hunks = Vec::new();
    let mut current: Option<Hunk> = None;
    for (n, line) in text.lines().enumerate() {
        if let Some(rest) = line.strip_prefix("@@ ") {
            if let Some(h) = current.take() {
                hunks.push(h);
            }
            let (ranges, context) = rest
                .split_once(" @@")
                .ok_or_else(|| bad(format!("line {}: hunk header without closing @@", n + 1)))?;
            let reference_line = ranges
                .trim_start_matches('-')
                .split([',', ' '])
                .next()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad(format!("line {}: hunk header without a line number", n + 1)))?;
            let function = function_name(context)
                .ok_or_else(|| bad(format!("line {}: hunk header names no C function", n + 1)))?;
            current = Some(Hunk {
                function,
                reference_line,
                old: vec![],
                new: vec![],
                kind: SiteKind::FailedAuth,
                old_norm: vec![],
                new_norm: vec![],
            });
        } else if let Some(h) = current.as_mut() {
            if let Some(l) = line.strip_prefix('-') {
                h.old.push(l.to_owned());
            } else if let Some(l) = line.strip_prefix('+') {
                h.new.push(l.to_owned());
            } else if !line.starts_with(' ') && !line.starts_with('\\') {
                return Err(bad(format!(
                    "line {}: unexpected text inside a hunk",
                    n + 1
                )));
            }
        }
    }
    hunks.extend(current);
    if hunks.is_empty() {
        return Err(bad("no hunks".into()));
    }
    for h in &mut hunks {
        if h.old.is_empty() || h.new.is_empty() {
            return Err(bad(format!(
                "hunk in {} must remove and add a statement",
                h.function
            )));
        }
        let old = h.old.join("\n");
        let new = h.new.join("\n");
        if !old.trim_end().ends_with(';') || !new.trim_end().ends_with(';') {
            return Err(bad(format!(
                "hunk in {} must hold whole statements ending in ';'",
                h.function
            )));
        }
        // The tag goes at the very end of the message, after everything Asterisk writes, and
        // exactly once; the stock side must not mention it.
        let placeholders = new.matches(PLACEHOLDER).count();
        let ends_message = new.contains(&format!("{PLACEHOLDER}\\n\""));
        if placeholders != 1 || !ends_message || old.contains("[astpatch:") {
            return Err(bad(format!(
                "hunk in {}: the + format string must end in `{PLACEHOLDER}\\n` (once), the - side must not",
                h.function
            )));
        }
        h.old_norm = sites::normalize(old.as_bytes());
        h.new_norm = sites::normalize(new.as_bytes());
        // The new statement must itself be an inbound site the scanner recognises as patched,
        // or detect and apply would disagree about what "patched" means.
        let probe = format!("static void {}(int x)\n{{\n{new}\n}}\n", h.function);
        let found = sites::scan(probe.as_bytes());
        if found.sites.len() != 1 || !found.sites[0].patched {
            return Err(bad(format!(
                "hunk in {}: the + side is not a patched inbound log site",
                h.function
            )));
        }
        h.kind = found.sites[0].kind;
    }
    Ok(hunks)
}

fn function_name(context: &str) -> Option<String> {
    let before = &context[..context.find('(')?];
    let name: String = before
        .trim_end()
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    (!name.is_empty()).then_some(name)
}

/// Every embedded patch with its metadata. Panics only if the build embedded a broken patch,
/// which the unit tests rule out.
pub fn embedded() -> &'static [Patch] {
    static PATCHES: std::sync::OnceLock<Vec<Patch>> = std::sync::OnceLock::new();
    PATCHES.get_or_init(|| load_embedded().expect("embedded patches are valid (see tests)"))
}

fn load_embedded() -> Result<Vec<Patch>, PatchFileError> {
    let index: Index = serde_json::from_str(INDEX).map_err(|e| PatchFileError::Malformed {
        file: "index.json".into(),
        message: e.to_string(),
    })?;
    index
        .patches
        .into_iter()
        .map(|e| {
            let text = EMBEDDED
                .iter()
                .find(|(f, _)| *f == e.file)
                .map(|(_, t)| *t)
                .ok_or_else(|| PatchFileError::Malformed {
                    file: e.file.clone(),
                    message: "listed in index.json but not embedded".into(),
                })?;
            Ok(Patch {
                hunks: parse_patch(&e.file, text)?,
                file: e.file,
                shape: e.shape,
                address_api: e.address_api,
                releases: e.releases,
            })
        })
        .collect()
}

/// The patch for a scanned file: its content shape and address API must both match.
pub fn select<'p>(patches: &'p [Patch], scan: &SiteScan) -> Option<&'p Patch> {
    let shape = scan.shape()?;
    let api = scan.address_api?;
    patches
        .iter()
        .find(|p| p.shape == shape && p.address_api == api)
}

/// What the engine will do with one site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Stock statement; the hunk rewrites it.
    Patch,
    /// Already exactly what the hunk writes, with this tree's tag.
    AlreadyPatched,
    /// astpatch's wording without a tag (an earlier astpatch, or the seed's hand patch, which
    /// used the same words) or with another tag: rewritten with this tree's tag.
    Upgrade,
    /// Carries an address in other words (a hand patch) in a place exactly one hunk fits: its
    /// untagged lines would never be trusted by default, so it is rewritten in astpatch's
    /// tagged words (revert restores the hand patch).
    RewriteHandPatch,
    /// Carries an address in other words, and no single hunk fits it: left alone.
    PatchedByHand,
    /// No hunk fits: the whole apply is refused.
    Unknown,
}

impl Action {
    /// The site's statement is rewritten.
    pub fn rewrites(self) -> bool {
        matches!(
            self,
            Action::Patch | Action::Upgrade | Action::RewriteHandPatch
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedSite {
    #[serde(flatten)]
    pub site: Site,
    pub action: Action,
    #[serde(skip)]
    hunk: Option<usize>,
}

/// The result of matching a patch against a file; pure, nothing written.
#[derive(Debug, Clone)]
pub struct Plan {
    pub sites: Vec<PlannedSite>,
    pub tagging: Tagging,
}

impl Plan {
    pub fn unknown(&self) -> impl Iterator<Item = &PlannedSite> {
        self.sites.iter().filter(|s| s.action == Action::Unknown)
    }
    pub fn changes(&self) -> usize {
        self.sites.iter().filter(|s| s.action.rewrites()).count()
    }
    pub fn count(&self, action: Action) -> usize {
        self.sites.iter().filter(|s| s.action == action).count()
    }
}

/// Direction of application: forward patches, reverse restores the stock statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Reverse,
}

/// Match every site of `scan` against `patch`. Forward, `tagging` is what the sites are
/// written with; reverse, what astpatch wrote (the manifest's tag, or `Legacy` for a record
/// from before tags).
pub fn plan(
    src: &[u8],
    scan: &SiteScan,
    patch: &Patch,
    direction: Direction,
    tagging: Tagging,
) -> Plan {
    let mut sites: Vec<PlannedSite> = scan
        .sites
        .iter()
        .map(|site| {
            let norm = site.normalized(src);
            let hunks = || {
                patch
                    .hunks
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| h.function == site.function)
            };
            let find = |f: &dyn Fn(&Hunk) -> bool| hunks().find(|(_, h)| f(h)).map(|(i, _)| i);
            let (action, hunk) = match direction {
                Direction::Forward => {
                    if let Some(i) = find(&|h| h.old_norm == norm) {
                        (Action::Patch, Some(i))
                    } else if let Some(i) = find(&|h| h.new_norm(tagging) == norm) {
                        (Action::AlreadyPatched, Some(i))
                    } else if let Some(i) = find(&|h| h.new_norm(Tagging::Legacy) == norm) {
                        (Action::Upgrade, Some(i))
                    } else if let Some(i) = detag(&norm).and_then(|d| find(&|h| h.new_norm == d)) {
                        (Action::Upgrade, Some(i))
                    } else if site.patched {
                        // Settled below, once every other site has claimed its hunk.
                        (Action::PatchedByHand, None)
                    } else {
                        (Action::Unknown, None)
                    }
                }
                Direction::Reverse => {
                    if let Some(i) = find(&|h| h.new_norm(tagging) == norm) {
                        (Action::Patch, Some(i))
                    } else if find(&|h| h.old_norm == norm).is_some() || !site.patched {
                        (Action::AlreadyPatched, None)
                    } else {
                        (Action::Unknown, None)
                    }
                }
            };
            PlannedSite {
                site: site.clone(),
                action,
                hunk,
            }
        })
        .collect();
    if direction == Direction::Forward {
        settle_hand_patches(src, patch, &mut sites);
    }
    Plan { sites, tagging }
}

/// A hand-patched site is rewritten only when exactly one hunk can be meant: same function,
/// same kind of message, SUBSCRIBE or not, and not already the hunk of another site.
fn settle_hand_patches(src: &[u8], patch: &Patch, sites: &mut [PlannedSite]) {
    let claimed: Vec<usize> = sites.iter().filter_map(|s| s.hunk).collect();
    let picks: Vec<Option<usize>> = sites
        .iter()
        .map(|ps| {
            if ps.action != Action::PatchedByHand {
                return None;
            }
            let subscribe =
                memchr::memmem::find(&src[ps.site.span.clone()], b"SUBSCRIBE").is_some();
            let mut candidates = patch.hunks.iter().enumerate().filter(|(i, h)| {
                h.function == ps.site.function
                    && h.kind == ps.site.kind
                    && h.is_subscribe() == subscribe
                    && !claimed.contains(i)
            });
            match (candidates.next(), candidates.next()) {
                (Some((i, _)), None) => Some(i),
                _ => None,
            }
        })
        .collect();
    for (ps, pick) in sites.iter_mut().zip(&picks) {
        // Two hand patches that would both become the same statement: neither is certain.
        if let Some(i) = *pick
            && picks.iter().filter(|p| **p == Some(i)).count() == 1
        {
            ps.action = Action::RewriteHandPatch;
            ps.hunk = Some(i);
        }
    }
}

/// Rewrite `src` according to `plan`. Sites that are not rewritten are left byte for byte.
pub fn execute(src: &[u8], plan: &Plan, patch: &Patch, direction: Direction) -> Vec<u8> {
    replace_sites(
        src,
        plan.sites.iter().filter_map(|ps| {
            let i = ps.hunk.filter(|_| ps.action.rewrites())?;
            let hunk = &patch.hunks[i];
            let original = &src[ps.site.span.clone()];
            let (from_lines, to) = match (direction, ps.action) {
                (Direction::Reverse, _) => (hunk.new.len(), hunk.old.clone()),
                (Direction::Forward, Action::Patch) => {
                    (hunk.old.len(), hunk.new_lines(plan.tagging))
                }
                (Direction::Forward, Action::Upgrade) => {
                    (hunk.new.len(), hunk.new_lines(plan.tagging))
                }
                (Direction::Forward, _) => (
                    original.split(|&b| b == b'\n').count(),
                    hunk.new_lines(plan.tagging),
                ),
            };
            Some((ps.site.span.clone(), render(original, from_lines, &to)))
        }),
    )
}

/// `src` with each (ascending, disjoint) byte range replaced by its new bytes.
pub fn replace_sites(
    src: &[u8],
    replacements: impl IntoIterator<Item = (std::ops::Range<usize>, Vec<u8>)>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len() + 2048);
    let mut cursor = 0;
    for (span, bytes) in replacements {
        out.extend_from_slice(&src[cursor..span.start]);
        out.extend_from_slice(&bytes);
        cursor = span.end;
    }
    out.extend_from_slice(&src[cursor..]);
    out
}

/// The replacement statement in the site's own layout: its first line starts where the old
/// `ast_log(` started; continuation lines keep the site's indentation where the line counts
/// agree, and the site's line ending (LF or CRLF) is kept.
fn render(original: &[u8], from_lines: usize, to: &[String]) -> Vec<u8> {
    let eol: &[u8] = if original.windows(2).any(|w| w == b"\r\n") {
        b"\r\n"
    } else {
        b"\n"
    };
    let original_lines: Vec<&[u8]> = original.split(|&b| b == b'\n').collect();
    let mut out = Vec::new();
    for (n, line) in to.iter().enumerate() {
        let body = line.trim_start();
        let body = body.trim_end();
        if n == 0 {
            out.extend_from_slice(body.as_bytes());
            continue;
        }
        out.extend_from_slice(eol);
        let indent: &[u8] = if from_lines == to.len() {
            let l = original_lines.get(n).copied().unwrap_or(b"");
            &l[..l
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(l.len())]
        } else {
            &line.as_bytes()[..line.len() - line.trim_start().len()]
        };
        out.extend_from_slice(indent);
        out.extend_from_slice(body.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_patch_is_valid_and_indexed() {
        let patches = load_embedded().unwrap();
        assert_eq!(patches.len(), EMBEDDED.len());
        for (file, _) in EMBEDDED {
            assert!(
                patches.iter().any(|p| p.file == *file),
                "{file} not in index.json"
            );
        }
        // Every patch file in the directory is embedded (a new file must be wired in).
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("patches");
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".patch") {
                assert!(
                    EMBEDDED.iter().any(|(f, _)| *f == name),
                    "{name} is not embedded"
                );
            }
        }
        // One patch per (shape, api): selection is unambiguous.
        for (i, a) in patches.iter().enumerate() {
            for b in &patches[i + 1..] {
                assert!(
                    !(a.shape == b.shape && a.address_api == b.address_api),
                    "{} / {}",
                    a.file,
                    b.file
                );
            }
        }
    }

    #[test]
    fn parse_rejects_malformed() {
        assert!(parse_patch("x", "").is_err());
        assert!(parse_patch("x", "@@ -1 +1 @@ nofunction\n-a;\n+b;\n").is_err());
        assert!(parse_patch("x", "@@ -1 +1 @@ static int f(\n-a;\n").is_err());
        let e = parse_patch("x", "@@ -1 +1 @@ static int f(\n-ast_log(LOG_NOTICE, \"x\");\n+ast_log(LOG_NOTICE, \"y [astpatch:TAG]\\n\");\n")
            .unwrap_err();
        assert!(
            e.to_string().contains("not a patched inbound log site"),
            "{e}"
        );
        // The + side must end its message with the placeholder, exactly once.
        for plus in [
            "ast_log(LOG_NOTICE, \"Failed to authenticate device %s (%s)\\n\", a, b);",
            "ast_log(LOG_NOTICE, \"Failed to authenticate device %s (%s) [astpatch:TAG] x\\n\", a, b);",
            "ast_log(LOG_NOTICE, \"Failed to authenticate device %s (%s) [astpatch:TAG] [astpatch:TAG]\\n\", a, b);",
        ] {
            let text = format!(
                "@@ -1 +1 @@ static int f(\n-ast_log(LOG_NOTICE, \"Failed to authenticate device %s\\n\", a);\n+{plus}\n"
            );
            let e = parse_patch("x", &text).unwrap_err().to_string();
            assert!(e.contains("must end in ` [astpatch:TAG]"), "{plus}: {e}");
        }
    }

    const SHAPE7_INVITE_STOCK: &[u8] = b"ast_log(LOG_NOTICE, \"Failed to authenticate device %s\\n\", sip_get_header(req, \"From\"));";

    /// A one-function file in the layout of shape 7, with `stmts` as its inbound statements.
    fn file(function: &str, stmts: &[&[u8]]) -> Vec<u8> {
        let mut f = format!(
            "static int {function}(struct sip_pvt *p, struct sip_request *req, struct ast_sockaddr *addr)\n{{\n\tsip_get_header(req, \"From\");\n\tast_sockaddr_stringify(addr);\n"
        )
        .into_bytes();
        for s in stmts {
            f.extend_from_slice(b"\t\t");
            f.extend_from_slice(s);
            f.push(b'\n');
        }
        f.extend_from_slice(b"}\n");
        f
    }

    fn shape7() -> &'static Patch {
        embedded()
            .iter()
            .find(|p| p.file == "shape-7.patch")
            .unwrap()
    }

    fn actions(src: &[u8], direction: Direction, tagging: Tagging) -> Vec<Action> {
        let scan = sites::scan(src);
        plan(src, &scan, shape7(), direction, tagging)
            .sites
            .iter()
            .map(|s| s.action)
            .collect()
    }

    #[test]
    fn the_tag_goes_where_the_placeholder_was_and_nowhere_else() {
        let tag = Tag::parse(b"0123456789abcdef").unwrap();
        let src = file("handle_request_invite", &[SHAPE7_INVITE_STOCK]);
        let scan = sites::scan(&src);
        let p = plan(&src, &scan, shape7(), Direction::Forward, Tagging::Tag(tag));
        assert_eq!(p.changes(), 1);
        let out = execute(&src, &p, shape7(), Direction::Forward);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(
            text.contains("\"Failed to authenticate device %s (%s) [astpatch:0123456789abcdef]\\n\", sip_get_header(req, \"From\"), ast_sockaddr_stringify(addr));"),
            "{text}"
        );
        assert!(!text.contains("TAG"));
        // The rendered + side has no conversion the stock one lacks but the address.
        for h in &shape7().hunks {
            let line = h.new_lines(Tagging::Tag(tag)).join("\n");
            let old = h.old.join("\n");
            assert_eq!(
                line.matches('%').count(),
                old.matches('%').count() + 1,
                "{line}"
            );
        }
        // Same tag again: nothing to do; reverse with the tag gives the stock statement back.
        assert_eq!(
            actions(&out, Direction::Forward, Tagging::Tag(tag)),
            [Action::AlreadyPatched]
        );
        let rscan = sites::scan(&out);
        let rp = plan(
            &out,
            &rscan,
            shape7(),
            Direction::Reverse,
            Tagging::Tag(tag),
        );
        assert_eq!(execute(&out, &rp, shape7(), Direction::Reverse), src);
        // Reverse with another tag or none does not claim the statement.
        let other = Tag::parse(b"fedcba9876543210").unwrap();
        assert_eq!(
            actions(&out, Direction::Reverse, Tagging::Tag(other)),
            [Action::Unknown]
        );
        assert_eq!(
            actions(&out, Direction::Reverse, Tagging::Legacy),
            [Action::Unknown]
        );
    }

    #[test]
    fn untagged_or_other_tagged_wording_is_upgraded() {
        let tag = Tag::parse(b"0123456789abcdef").unwrap();
        let legacy: &[u8] = b"ast_log(LOG_NOTICE, \"Failed to authenticate device %s (%s)\\n\", sip_get_header(req, \"From\"), ast_sockaddr_stringify(addr));";
        let other: &[u8] = b"ast_log(LOG_NOTICE, \"Failed to authenticate device %s (%s) [astpatch:aaaaaaaaaaaaaaaa]\\n\", sip_get_header(req, \"From\"), ast_sockaddr_stringify(addr));";
        for stmt in [legacy, other] {
            let src = file("handle_request_invite", &[stmt]);
            assert_eq!(
                actions(&src, Direction::Forward, Tagging::Tag(tag)),
                [Action::Upgrade]
            );
            let scan = sites::scan(&src);
            let p = plan(&src, &scan, shape7(), Direction::Forward, Tagging::Tag(tag));
            let out = execute(&src, &p, shape7(), Direction::Forward);
            let tagged = file("handle_request_invite", &[SHAPE7_INVITE_STOCK]);
            let tscan = sites::scan(&tagged);
            let tp = plan(
                &tagged,
                &tscan,
                shape7(),
                Direction::Forward,
                Tagging::Tag(tag),
            );
            assert_eq!(out, execute(&tagged, &tp, shape7(), Direction::Forward));
        }
        // A malformed tag is no tag: that is a hand patch, not astpatch's statement.
        let bad = String::from_utf8(other.to_vec())
            .unwrap()
            .replace("aaaaaaaaaaaaaaaa", "AAAAAAAAAAAAAAAA");
        assert_eq!(
            detag(&sites::normalize(bad.as_bytes())),
            None,
            "uppercase hex is not a tag"
        );
    }

    #[test]
    fn a_hand_patch_is_rewritten_only_when_one_hunk_can_be_meant() {
        let tag = Tag::parse(b"0123456789abcdef").unwrap();
        let hand: &[u8] = b"ast_log(LOG_NOTICE, \"Failed to authenticate device %s from %s\\n\", sip_get_header(req, \"From\"), ast_sockaddr_stringify(&p->recv));";
        // Without ` (%s` right after the From it is no patched wording at all: unknown.
        let src = file("handle_request_invite", &[hand]);
        assert_eq!(
            actions(&src, Direction::Forward, Tagging::Tag(tag)),
            [Action::Unknown]
        );
        let hand: &[u8] = b"ast_log(LOG_NOTICE, \"Failed to authenticate device %s (%s) via %s\\n\", sip_get_header(req, \"From\"), ast_sockaddr_stringify(&p->recv), \"UDP\");";
        let src = file("handle_request_invite", &[hand]);
        assert_eq!(
            actions(&src, Direction::Forward, Tagging::Tag(tag)),
            [Action::RewriteHandPatch]
        );
        let scan = sites::scan(&src);
        let p = plan(&src, &scan, shape7(), Direction::Forward, Tagging::Tag(tag));
        let out = String::from_utf8(execute(&src, &p, shape7(), Direction::Forward)).unwrap();
        assert!(
            out.contains("\t\tast_log(LOG_NOTICE, \"Failed to authenticate device %s (%s) [astpatch:0123456789abcdef]\\n\", sip_get_header(req, \"From\"), ast_sockaddr_stringify(addr));\n"),
            "{out}"
        );
        // The SUBSCRIBE hunk is never taken for a non-SUBSCRIBE message, nor the other way.
        let sub: &[u8] = b"ast_log(LOG_NOTICE, \"Failed to authenticate device %s (%s) on SUBSCRIBE\\n\", sip_get_header(req, \"From\"), ast_sockaddr_stringify(addr));";
        let src = file("handle_request_subscribe", &[sub]);
        assert_eq!(
            actions(&src, Direction::Forward, Tagging::Tag(tag)),
            [Action::RewriteHandPatch]
        );
        let src = file("handle_request_subscribe", &[hand]);
        assert_eq!(
            actions(&src, Direction::Forward, Tagging::Tag(tag)),
            [Action::PatchedByHand]
        );
        // Two hand patches that would become the same statement: neither is rewritten.
        let src = file("handle_request_invite", &[hand, hand]);
        assert_eq!(
            actions(&src, Direction::Forward, Tagging::Tag(tag)),
            [Action::PatchedByHand, Action::PatchedByHand]
        );
        // A hunk another site already matches is not offered to a hand patch.
        let src = file("handle_request_invite", &[SHAPE7_INVITE_STOCK, hand]);
        assert_eq!(
            actions(&src, Direction::Forward, Tagging::Tag(tag)),
            [Action::Patch, Action::PatchedByHand]
        );
    }

    #[test]
    fn function_names_from_headers() {
        assert_eq!(
            function_name("static int handle_request_invite(").as_deref(),
            Some("handle_request_invite")
        );
        assert_eq!(
            function_name("static void receive_message(struct sip_p").as_deref(),
            Some("receive_message")
        );
        assert_eq!(function_name("nothing here"), None);
    }
}
