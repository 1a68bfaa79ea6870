//! The `[directories]` of a live system's `asterisk.conf`: where the running Asterisk loads
//! modules from, writes logs, and keeps its control socket.
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directories {
    pub astetcdir: PathBuf,
    pub astmoddir: PathBuf,
    pub astlogdir: PathBuf,
    pub astrundir: PathBuf,
    /// True when asterisk.conf named the module directory (not the built-in default).
    pub moddir_from_file: bool,
}

impl Default for Directories {
    /// Asterisk's compiled-in defaults for a `--prefix=/usr` build.
    fn default() -> Self {
        Directories {
            astetcdir: "/etc/asterisk".into(),
            astmoddir: "/usr/lib/asterisk/modules".into(),
            astlogdir: "/var/log/asterisk".into(),
            astrundir: "/var/run/asterisk".into(),
            moddir_from_file: false,
        }
    }
}

/// Parse asterisk.conf text. Keys are `key => value` or `key = value`; the section header may
/// carry a template mark (`[directories](!)`), and `;` starts a comment.
pub fn parse(text: &str) -> Directories {
    let mut d = Directories::default();
    let mut in_dirs = false;
    for raw in text.lines() {
        let line = raw.split(';').next().unwrap_or("").trim();
        if let Some(rest) = line.strip_prefix('[') {
            in_dirs = rest
                .split(']')
                .next()
                .is_some_and(|n| n.trim() == "directories");
            continue;
        }
        if !in_dirs {
            continue;
        }
        let Some((key, value)) = line.split_once("=>").or_else(|| line.split_once('=')) else {
            continue;
        };
        let value = PathBuf::from(value.trim());
        match key.trim() {
            "astetcdir" => d.astetcdir = value,
            "astmoddir" => {
                d.astmoddir = value;
                d.moddir_from_file = true;
            }
            "astlogdir" => d.astlogdir = value,
            "astrundir" => d.astrundir = value,
            _ => {}
        }
    }
    d
}

/// `path` as seen from inside `root` (`/` is the live system).
pub fn under(root: &Path, path: &Path) -> PathBuf {
    if root == Path::new("/") {
        return path.to_owned();
    }
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// Read `<root>/etc/asterisk/asterisk.conf`; `None` when there is none. Paths inside are
/// returned as they are written (relative to `root`).
pub fn load(root: &Path) -> Result<Option<Directories>> {
    let path = under(root, Path::new("/etc/asterisk/asterisk.conf"));
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(parse(&String::from_utf8_lossy(&bytes)))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(&path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_directories_in_both_syntaxes() {
        let d = parse(
            "[options]\nastmoddir => /wrong\n[directories](!) ; template\nastetcdir => /etc/asterisk\nastmoddir => /usr/lib64/asterisk/modules ; moved\nastlogdir = /srv/log\n",
        );
        assert_eq!(d.astmoddir, Path::new("/usr/lib64/asterisk/modules"));
        assert!(d.moddir_from_file);
        assert_eq!(d.astlogdir, Path::new("/srv/log"));
        assert_eq!(d.astrundir, Path::new("/var/run/asterisk"));
        assert!(!parse("[directories]\n;astmoddir => /x\n").moddir_from_file);
    }

    #[test]
    fn paths_are_taken_inside_the_root() {
        assert_eq!(
            under(Path::new("/"), Path::new("/etc/x")),
            Path::new("/etc/x")
        );
        assert_eq!(
            under(Path::new("/tmp/r"), Path::new("/etc/x")),
            Path::new("/tmp/r/etc/x")
        );
    }
}
