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
    use crate::asterisk::versions_table::{ChanSipStatus, Table};
    let found = crate::asterisk::version_source::detect(root).ok()?;
    let v = found.parsed.as_ref().ok()?;
    (Table::embedded().series_info(v).chan_sip == ChanSipStatus::Absent).then_some(found.raw)
}

/// Far above any real chan_sip.c (the largest release's is about 1.3 MB), far below what
/// reading a stray disk image into memory would cost.
const MAX_CHAN_SIP_BYTES: u64 = 32 << 20;

const NOT_CHAN_SIP_HINT: &str = "put the release's channels/chan_sip.c back (from its tarball, or `git checkout channels/chan_sip.c`)";

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
                Some(NOT_CHAN_SIP_HINT),
            ));
        }
        if meta.len() > MAX_CHAN_SIP_BYTES {
            return Err(Error::input(
                format!(
                    "{} is {} MB; no chan_sip.c is larger than about 1.3 MB, so this is not one",
                    path.display(),
                    meta.len() / 1_000_000
                ),
                Some(NOT_CHAN_SIP_HINT),
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

    #[test]
    fn a_huge_chan_sip_is_refused_before_it_is_read() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("channels")).unwrap();
        let f = fs::File::create(d.path().join(CHAN_SIP)).unwrap();
        // Sparse: costs no disk, and would cost 3 GB of memory if read.
        f.set_len(3 << 30).unwrap();
        let e = SourceTree::open(d.path())
            .unwrap()
            .read_chan_sip()
            .unwrap_err();
        assert!(e.to_string().contains("this is not one"), "{e}");
        assert_eq!(e.exit_code(), crate::exit_codes::INPUT_ERROR);
    }
}
