//! Where a tree's version comes from: `.version` (every tarball and release tag has one),
//! else `git describe` of a checkout (a plain clone has no `.version`; Asterisk's own build
//! derives it the same way), else an error that says what was looked for.
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::asterisk::version::{AsteriskVersion, ParseError};
use crate::error::{Error, Result};

/// How the version was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum VersionSource {
    /// The `.version` file at the top of the tree.
    VersionFile { path: PathBuf },
    /// `git describe --tags` of the checkout holding the tree.
    GitDescribe { repository: PathBuf },
}

impl fmt::Display for VersionSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionSource::VersionFile { .. } => f.write_str(".version"),
            VersionSource::GitDescribe { .. } => f.write_str("git describe"),
        }
    }
}

/// A version as the tree states it, and its parse. An unparsable string is kept (detect
/// reports it and falls back to the file's content) rather than being an error.
#[derive(Debug, Clone)]
pub struct FoundVersion {
    pub raw: String,
    pub parsed: std::result::Result<AsteriskVersion, ParseError>,
    pub source: VersionSource,
}

/// Find the version of the tree at `root`.
pub fn detect(root: &Path) -> Result<FoundVersion> {
    let file = root.join(".version");
    match read_head(&file) {
        Ok(bytes) => {
            // `.version` is one line of ASCII; anything else is still reported, lossily.
            let text = String::from_utf8_lossy(&bytes);
            let line = text.lines().next().unwrap_or_default().trim();
            return Ok(FoundVersion {
                parsed: AsteriskVersion::parse(line),
                raw: printable(line),
                source: VersionSource::VersionFile { path: file },
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            let message = format!("cannot read {}: {e}", file.display());
            let hint =
                "make .version readable (it names the release), or remove it to use git describe";
            // Permission is the system's refusal (exit 3); a directory in its place is bad input.
            return Err(if e.kind() == io::ErrorKind::PermissionDenied {
                Error::environment(message, Some(hint))
            } else {
                Error::input(message, Some(hint))
            });
        }
    }
    if let Some(found) = git_describe(root)? {
        return Ok(found);
    }
    Err(Error::input(
        format!(
            "{} has no .version file and is not inside a git checkout with release tags",
            root.display()
        ),
        Some(
            "a release tarball has .version at its top; for a git clone, fetch its tags \
             (git fetch --tags) so git describe can name the release",
        ),
    ))
}

/// The first bytes of `.version`: a real one is a dozen bytes, and a stray multi-megabyte file
/// must not be read (or printed) whole.
fn read_head(file: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(file)?
        .take(MAX_VERSION_BYTES)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

const MAX_VERSION_BYTES: u64 = 4096;
const MAX_SHOWN_CHARS: usize = 80;

/// The version text as it can be shown on a terminal: control bytes (NUL, escape sequences)
/// escaped and an overlong line cut. A real version is never changed by this.
fn printable(line: &str) -> String {
    let mut out = String::new();
    for (i, c) in line.chars().enumerate() {
        if i == MAX_SHOWN_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn git_describe(root: &Path) -> Result<Option<FoundVersion>> {
    let Ok(repo) = git2::Repository::discover(root) else {
        return Ok(None);
    };
    let mut opts = git2::DescribeOptions::new();
    opts.describe_tags();
    let describe = match repo.describe(&opts) {
        Ok(d) => d,
        // A repository without tags cannot name a release; that is "no version source".
        Err(_) => return Ok(None),
    };
    let mut fmt = git2::DescribeFormatOptions::new();
    fmt.dirty_suffix("-dirty");
    let raw = describe.format(Some(&fmt)).map_err(|e| {
        Error::environment(
            format!("git describe failed in {}: {e}", root.display()),
            None,
        )
    })?;
    let repository = repo
        .workdir()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| repo.path().to_path_buf());
    Ok(Some(FoundVersion {
        parsed: AsteriskVersion::parse(&raw),
        raw,
        source: VersionSource::GitDescribe { repository },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_file_wins_and_keeps_the_raw_text() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".version"), "certified/13.21-cert1\n").unwrap();
        let found = detect(dir.path()).unwrap();
        assert_eq!(found.raw, "certified/13.21-cert1");
        assert_eq!(found.parsed.unwrap().cert, Some(1));
        assert!(matches!(found.source, VersionSource::VersionFile { .. }));
    }

    #[test]
    fn unknown_version_text_is_kept_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".version"), "SVN-branch-1.4-r12345\n").unwrap();
        let found = detect(dir.path()).unwrap();
        assert_eq!(found.raw, "SVN-branch-1.4-r12345");
        assert!(found.parsed.is_err());
    }

    #[test]
    fn git_checkout_without_version_file_uses_describe() {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init(dir.path()).unwrap();
        std::fs::create_dir(dir.path().join("channels")).unwrap();
        std::fs::write(dir.path().join("channels/chan_sip.c"), "int x;\n").unwrap();
        let mut index = repo.index().unwrap();
        index.add_path(Path::new("channels/chan_sip.c")).unwrap();
        index.write().unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::now("t", "t@example.invalid").unwrap();
        let commit = repo
            .commit(Some("HEAD"), &sig, &sig, "c", &tree, &[])
            .unwrap();
        let obj = repo.find_object(commit, None).unwrap();
        repo.tag_lightweight("13.32.0-rc2", &obj, false).unwrap();
        let found = detect(dir.path()).unwrap();
        assert_eq!(found.raw, "13.32.0-rc2");
        assert!(matches!(found.source, VersionSource::GitDescribe { .. }));
        // An uncommitted change is visible in the describe string and still parses.
        std::fs::write(dir.path().join("channels/chan_sip.c"), "int y;\n").unwrap();
        let found = detect(dir.path()).unwrap();
        assert_eq!(found.raw, "13.32.0-rc2-dirty");
        assert_eq!(found.parsed.unwrap().numbers, [13, 32, 0]);
    }

    #[test]
    fn a_garbage_version_file_is_shown_escaped_and_short() {
        let dir = tempfile::tempdir().unwrap();
        let v = dir.path().join(".version");
        std::fs::write(&v, b"11.23.1\0\x1b[2J\x1b]0;owned\x07").unwrap();
        let found = detect(dir.path()).unwrap();
        assert!(!found.raw.chars().any(char::is_control), "{:?}", found.raw);
        assert!(found.raw.starts_with("11.23.1\\u{0}"), "{:?}", found.raw);
        assert!(found.parsed.is_err());
        std::fs::write(&v, "9".repeat(3_000_000)).unwrap();
        let found = detect(dir.path()).unwrap();
        assert!(
            found.raw.chars().count() <= MAX_SHOWN_CHARS + 1,
            "{}",
            found.raw.len()
        );
        assert!(found.parsed.is_err());
    }

    #[test]
    fn no_source_is_a_clear_input_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = detect(dir.path()).unwrap_err();
        assert!(err.to_string().contains("no .version file"), "{err}");
        assert!(err.hint().unwrap().contains("git fetch --tags"));
    }

    #[test]
    fn unreadable_version_file_is_an_input_error() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be cannot be read as one, even by root.
        std::fs::create_dir(dir.path().join(".version")).unwrap();
        let err = detect(dir.path()).unwrap_err();
        assert!(err.to_string().contains("cannot read"), "{err}");
    }
}
