//! An Asterisk source tree on disk: where its chan_sip.c is, and the checks that turn a wrong
//! path into one clear sentence instead of a confusing failure later.
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub const CHAN_SIP: &str = "channels/chan_sip.c";

#[derive(Debug, Clone)]
pub struct SourceTree {
    pub root: PathBuf,
}

const TREE_HINT: &str = "point astpatch at the top of the Asterisk source tree: the folder that holds .version and channels/";

/// The release a tree without chan_sip.c states, when that release is one with no chan_sip
/// (21+): every command then says so instead of "not an Asterisk tree".
fn release_without_chan_sip(root: &Path) -> Option<String> {
    use crate::versions_table::{ChanSipStatus, Table};
    let found = crate::version_source::detect(root).ok()?;
    let v = found.parsed.as_ref().ok()?;
    (Table::embedded().series_info(v).chan_sip == ChanSipStatus::Absent).then_some(found.raw)
}

impl SourceTree {
    /// Check that `root` is a directory that holds `channels/chan_sip.c`.
    pub fn open(root: &Path) -> Result<SourceTree> {
        let meta = fs::metadata(root).map_err(|e| Error::io(root, e))?;
        if !meta.is_dir() {
            let hint = if root.file_name().is_some_and(|n| n == "chan_sip.c") {
                "pass the tree, not the file: e.g. `astpatch detect /usr/src/asterisk-11.23.1`"
            } else {
                TREE_HINT
            };
            return Err(Error::input(
                format!("{} is a file, not a source tree", root.display()),
                Some(hint),
            ));
        }
        let tree = SourceTree {
            root: root.to_owned(),
        };
        let chan_sip = tree.chan_sip();
        let missing = fs::symlink_metadata(&chan_sip)
            .err()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound);
        if missing && let Some(release) = release_without_chan_sip(root) {
            return Err(Error::nothing_to_do(
                format!(
                    "{} is Asterisk {release}, which has no chan_sip (removed in 21)",
                    root.display()
                ),
                Some(
                    "nothing to patch: PJSIP's failure lines already carry the source address; \
                     run `astpatch watch` on the log as it is",
                ),
            ));
        }
        match fs::symlink_metadata(&chan_sip) {
            Ok(_) => Ok(tree),
            // A tree this user may not look into is a permission problem, not "no chan_sip".
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&chan_sip, e)),
            Err(_) if root.join("channels/chan_pjsip.c").exists() => Err(Error::nothing_to_do(
                format!(
                    "{} has no chan_sip: it was removed in Asterisk 21",
                    root.display()
                ),
                Some(
                    "nothing to patch; PJSIP's failure lines already carry the source address, so `astpatch watch` can read them as they are",
                ),
            )),
            Err(_) => Err(Error::input(
                format!(
                    "{} is not an Asterisk source tree: it has no {CHAN_SIP}",
                    root.display()
                ),
                Some(TREE_HINT),
            )),
        }
    }

    pub fn chan_sip(&self) -> PathBuf {
        self.root.join(CHAN_SIP)
    }

    /// The bytes of chan_sip.c (Latin-1 in places: never decoded as UTF-8).
    pub fn read_chan_sip(&self) -> Result<Vec<u8>> {
        let path = self.chan_sip();
        let meta = fs::metadata(&path).map_err(|e| Error::io(&path, e))?;
        if !meta.is_file() {
            return Err(Error::input(
                format!("{} is not a regular file", path.display()),
                Some(TREE_HINT),
            ));
        }
        fs::read(&path).map_err(|e| Error::io(&path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_paths_get_one_clear_error() {
        let d = tempfile::tempdir().unwrap();
        let missing = SourceTree::open(&d.path().join("nope")).unwrap_err();
        assert!(matches!(missing, Error::Io { .. }));
        let file = d.path().join("chan_sip.c");
        fs::write(&file, "x").unwrap();
        let e = SourceTree::open(&file).unwrap_err();
        assert!(e.to_string().contains("is a file"), "{e}");
        assert!(e.hint().unwrap().contains("pass the tree"));
        let e = SourceTree::open(d.path()).unwrap_err();
        assert!(e.to_string().contains("not an Asterisk source tree"), "{e}");
        assert_eq!(e.exit_code(), crate::exit_codes::INPUT_ERROR);
        fs::create_dir(d.path().join("channels")).unwrap();
        fs::write(d.path().join("channels/chan_pjsip.c"), "x").unwrap();
        let e = SourceTree::open(d.path()).unwrap_err();
        assert!(e.to_string().contains("removed in Asterisk 21"), "{e}");
        assert_eq!(e.exit_code(), crate::exit_codes::CHECK_FAILED);
    }
}
