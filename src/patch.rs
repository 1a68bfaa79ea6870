//! The patch engine: applies the unified diffs in `patches/` by content, not by line number.
//!
//! Each hunk names its C function in the `@@` header and holds one log statement before (`-`)
//! and after (`+`). A hunk is applied to a site found by [`crate::sites`] when the site sits in
//! that function and its statement equals the `-` side with whitespace outside string literals
//! ignored. The site keeps its own indentation and line endings, so offset drift, re-indented
//! code, CRLF copies and vendor changes elsewhere in the file do not matter.
use serde::{Deserialize, Serialize};

use crate::sites::{self, AddressApi, Site, SiteScan};

/// One `-`/`+` pair of a patch file.
#[derive(Debug, Clone)]
pub struct Hunk {
    pub function: String,
    /// Line in the release the patch was made from; for people, never used to apply.
    pub reference_line: usize,
    pub old: Vec<String>,
    pub new: Vec<String>,
    old_norm: Vec<u8>,
    new_norm: Vec<u8>,
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
        include_str!("../patches/shape-0-inet.patch"),
    ),
    ("shape-0.patch", include_str!("../patches/shape-0.patch")),
    ("shape-1.patch", include_str!("../patches/shape-1.patch")),
    (
        "shape-2-buf.patch",
        include_str!("../patches/shape-2-buf.patch"),
    ),
    ("shape-2.patch", include_str!("../patches/shape-2.patch")),
    ("shape-3.patch", include_str!("../patches/shape-3.patch")),
    ("shape-4.patch", include_str!("../patches/shape-4.patch")),
    ("shape-4c.patch", include_str!("../patches/shape-4c.patch")),
    ("shape-5.patch", include_str!("../patches/shape-5.patch")),
    ("shape-5c.patch", include_str!("../patches/shape-5c.patch")),
    ("shape-6.patch", include_str!("../patches/shape-6.patch")),
    ("shape-7.patch", include_str!("../patches/shape-7.patch")),
    ("shape-8.patch", include_str!("../patches/shape-8.patch")),
];
const INDEX: &str = include_str!("../patches/index.json");

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
    /// Already exactly what the hunk writes.
    AlreadyPatched,
    /// Carries an address, but not in astpatch's words (a hand patch): left alone.
    PatchedByHand,
    /// No hunk fits: the whole apply is refused.
    Unknown,
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
}

impl Plan {
    pub fn unknown(&self) -> impl Iterator<Item = &PlannedSite> {
        self.sites.iter().filter(|s| s.action == Action::Unknown)
    }
    pub fn changes(&self) -> usize {
        self.sites
            .iter()
            .filter(|s| s.action == Action::Patch)
            .count()
    }
}

/// Direction of application: forward patches, reverse restores the stock statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Reverse,
}

/// Match every site of `scan` against `patch`.
pub fn plan(src: &[u8], scan: &SiteScan, patch: &Patch, direction: Direction) -> Plan {
    let sites = scan
        .sites
        .iter()
        .map(|site| {
            let norm = site.normalized(src);
            let in_function = |h: &Hunk| h.function == site.function;
            let hit = patch
                .hunks
                .iter()
                .position(|h| in_function(h) && sides(h, direction).0 == norm.as_slice());
            let done = patch
                .hunks
                .iter()
                .any(|h| in_function(h) && sides(h, direction).1 == norm.as_slice());
            let (action, hunk) = match (hit, done) {
                (Some(i), _) => (Action::Patch, Some(i)),
                (None, true) => (Action::AlreadyPatched, None),
                (None, false) if direction == Direction::Forward && site.patched => {
                    (Action::PatchedByHand, None)
                }
                (None, false) if direction == Direction::Reverse && !site.patched => {
                    (Action::AlreadyPatched, None)
                }
                _ => (Action::Unknown, None),
            };
            PlannedSite {
                site: site.clone(),
                action,
                hunk,
            }
        })
        .collect();
    Plan { sites }
}

/// The normalised (from, to) statements of a hunk for a direction.
fn sides(h: &Hunk, direction: Direction) -> (&[u8], &[u8]) {
    match direction {
        Direction::Forward => (&h.old_norm, &h.new_norm),
        Direction::Reverse => (&h.new_norm, &h.old_norm),
    }
}

/// Rewrite `src` according to `plan`. Sites that are not `Patch` are left byte for byte.
pub fn execute(src: &[u8], plan: &Plan, patch: &Patch, direction: Direction) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len() + 128 * plan.sites.len());
    let mut cursor = 0;
    for ps in &plan.sites {
        let (Action::Patch, Some(i)) = (ps.action, ps.hunk) else {
            continue;
        };
        let hunk = &patch.hunks[i];
        let (from, to) = match direction {
            Direction::Forward => (&hunk.old, &hunk.new),
            Direction::Reverse => (&hunk.new, &hunk.old),
        };
        let span = ps.site.span.clone();
        out.extend_from_slice(&src[cursor..span.start]);
        out.extend_from_slice(&render(&src[span.clone()], from, to));
        cursor = span.end;
    }
    out.extend_from_slice(&src[cursor..]);
    out
}

/// The replacement statement in the site's own layout: its first line starts where the old
/// `ast_log(` started; continuation lines keep the site's indentation where the line counts
/// agree, and the site's line ending (LF or CRLF) is kept.
fn render(original: &[u8], from: &[String], to: &[String]) -> Vec<u8> {
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
        let indent: &[u8] = if from.len() == to.len() {
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
        let e = parse_patch("x", "@@ -1 +1 @@ static int f(\n-ast_log(LOG_NOTICE, \"x\");\n+ast_log(LOG_NOTICE, \"y\");\n")
            .unwrap_err();
        assert!(
            e.to_string().contains("not a patched inbound log site"),
            "{e}"
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
