//! `astpatch detect`: what a source tree is (version, series, whether it has chan_sip) and what
//! its chan_sip.c holds (shape, every inbound failure site, patched or not). The version only
//! sets an expectation; the file's content decides, and a disagreement is reported.
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::asterisk::tree::SourceTree;
use crate::asterisk::version_source::{self, VersionSource};
use crate::asterisk::versions_table::{ChanSipStatus, Table};
use crate::error::Result;
use crate::patch::engine;
use crate::patch::manifest;
use crate::patch::sites::{self, AddressApi, PatchState, SiteKind, Wording};
use crate::patch::tag::Tag;

#[derive(Debug, Clone, Serialize)]
pub struct DetectReport {
    pub tree: PathBuf,
    pub version: VersionInfo,
    pub series: String,
    pub chan_sip: ChanSipStatus,
    pub series_notes: Option<String>,
    /// The shape the version table expects; `None` when the version is unknown to it.
    pub expected_shape: Option<String>,
    /// The shape chan_sip.c's content shows; `None` when it matches no known shape.
    pub shape: Option<String>,
    pub address_api: Option<AddressApi>,
    /// The patch `astpatch apply` would use.
    pub patch: Option<String>,
    pub state: PatchState,
    /// Whether the sites carry the tree's tag, which the watcher needs to trust their lines.
    pub tag_state: TagState,
    /// The tree's tag: the manifest's, else the one every tagged site shares.
    pub tag: Option<Tag>,
    pub sites: Vec<SiteInfo>,
    pub warnings: Vec<String>,
}

/// How far the file's sites carry a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TagState {
    NoSites,
    /// No site logs the address yet.
    Unpatched,
    /// Patched (by an earlier astpatch or by hand) but no site carries a tag: the watcher does
    /// not trust these lines by default.
    Untagged,
    /// Some sites carry the tree's tag and others do not (or another one): re-run apply.
    Mixed,
    /// Every site ends its message with the tree's tag.
    Tagged,
}

impl TagState {
    pub fn of(patched: &[bool], tags: &[Option<Tag>], tree: Option<Tag>) -> TagState {
        if patched.is_empty() {
            return TagState::NoSites;
        }
        if !patched.contains(&true) {
            return TagState::Unpatched;
        }
        if tags.iter().all(Option::is_none) {
            return TagState::Untagged;
        }
        if tree.is_some() && tags.iter().all(|t| *t == tree) {
            TagState::Tagged
        } else {
            TagState::Mixed
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct VersionInfo {
    /// Exactly as the tree states it.
    pub raw: String,
    pub source: VersionSource,
    /// False when the text is no Asterisk version astpatch knows how to read.
    pub parsed: bool,
    /// The nearest semantic version, where that mapping is faithful.
    pub semver: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SiteInfo {
    pub function: String,
    pub line: usize,
    pub kind: SiteKind,
    pub wording: Wording,
    pub patched: bool,
    /// The tag the site's format string ends with, if any.
    pub tag: Option<Tag>,
}

/// Detect the tree at `root`.
pub fn detect(root: &Path) -> Result<DetectReport> {
    let tree = SourceTree::open(root)?;
    let found = version_source::detect(root)?;
    let bytes = tree.read_chan_sip()?;
    let scan = sites::scan(&bytes);
    let table = Table::embedded();
    let mut warnings = Vec::new();

    let (series, chan_sip, series_notes, expected_shape) = match &found.parsed {
        Ok(v) => {
            let info = table.series_info(v);
            if !info.known {
                warnings.push(format!(
                    "series {} is not in astpatch's version table; judging by the file's content",
                    info.series
                ));
            }
            let expected = table.expected_shape(v).map(str::to_owned);
            (info.series, info.chan_sip, info.notes, expected)
        }
        Err(e) => {
            warnings.push(format!("{e}; judging by the file's content alone"));
            ("unknown".to_owned(), ChanSipStatus::Present, None, None)
        }
    };
    let shape = scan.shape().map(str::to_owned);
    match (&expected_shape, &shape) {
        (Some(want), Some(got)) if want != got => warnings.push(format!(
            "version {} usually has shape {want}, but this chan_sip.c has shape {got}; \
             the content wins",
            found.raw
        )),
        (_, None) if !scan.sites.is_empty() => warnings.push(
            "the inbound sites match no known shape; `astpatch apply` will refuse — please file \
             an issue with `astpatch apply --dry-run` output"
                .to_owned(),
        ),
        _ => {}
    }
    let patch = engine::select(engine::embedded(), &scan).map(|p| p.file.clone());
    let site_tags = crate::patch::apply::site_tags(&bytes, &scan);
    let recorded = match manifest::load(&tree.chan_sip()) {
        Ok(m) => m.and_then(|m| m.tag),
        Err(e) => {
            warnings.push(e.to_string());
            None
        }
    };
    let tag = recorded.or_else(|| crate::patch::apply::tree_tag(&tree.chan_sip(), &bytes, &scan));
    if let Some(r) = recorded
        && site_tags.iter().flatten().any(|t| *t != r)
    {
        warnings.push(format!(
            "the manifest records tag {r}, but some sites carry another; `astpatch revert` and `astpatch apply` set them straight"
        ));
    }
    let patched: Vec<bool> = scan.sites.iter().map(|s| s.patched).collect();
    let tag_state = TagState::of(&patched, &site_tags, tag);
    let version = VersionInfo {
        semver: found
            .parsed
            .as_ref()
            .ok()
            .and_then(|v| v.to_semver())
            .map(|s| s.to_string()),
        parsed: found.parsed.is_ok(),
        raw: found.raw,
        source: found.source,
    };
    Ok(DetectReport {
        tree: root.to_owned(),
        version,
        series,
        chan_sip,
        series_notes,
        expected_shape,
        shape,
        address_api: scan.address_api,
        patch,
        state: scan.state(),
        tag_state,
        tag,
        sites: scan
            .sites
            .iter()
            .zip(site_tags)
            .map(|(s, tag)| SiteInfo {
                function: s.function.clone(),
                line: s.line,
                kind: s.kind,
                wording: s.wording,
                patched: s.patched,
                tag,
            })
            .collect(),
        warnings,
    })
}
