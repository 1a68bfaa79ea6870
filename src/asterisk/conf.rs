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
    parse_over(text, Directories::default())
}

/// Parse asterisk.conf text over `base`: keys the file does not set keep `base`'s value (a
/// running Asterisk's are the defaults compiled into its binary, not the `/usr` ones).
pub fn parse_over(text: &str, base: Directories) -> Directories {
    let mut d = base;
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
        // Asterisk compares these keys with strcasecmp.
        match key.trim().to_ascii_lowercase().as_str() {
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

/// `[files] astctl`: the control socket's file name inside astrundir, when the file sets it.
pub fn ctl_name(text: &str) -> Option<String> {
    let mut in_files = false;
    let mut found = None;
    for raw in text.lines() {
        let line = raw.split(';').next().unwrap_or("").trim();
        if let Some(rest) = line.strip_prefix('[') {
            in_files = rest.split(']').next().is_some_and(|n| n.trim() == "files");
            continue;
        }
        if !in_files {
            continue;
        }
        if let Some((key, value)) = line.split_once("=>").or_else(|| line.split_once('='))
            && key.trim().eq_ignore_ascii_case("astctl")
            && !value.trim().is_empty()
        {
            found = Some(value.trim().to_owned());
        }
    }
    found
}

/// `path` as seen from inside `root` (`/` is the live system).
pub fn under(root: &Path, path: &Path) -> PathBuf {
    if root == Path::new("/") {
        return path.to_owned();
    }
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// Where an Asterisk built with `--prefix=/usr` reads its asterisk.conf.
pub const DEFAULT_PATH: &str = "/etc/asterisk/asterisk.conf";

/// Read `<root>/etc/asterisk/asterisk.conf`; `None` when there is none. Paths inside are
/// returned as they are written (relative to `root`).
pub fn load(root: &Path) -> Result<Option<Directories>> {
    load_file(root, Path::new(DEFAULT_PATH))
}

/// Read the asterisk.conf at `conf` inside `root`; `None` when there is none.
pub fn load_file(root: &Path, conf: &Path) -> Result<Option<Directories>> {
    let path = under(root, conf);
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
        assert_eq!(
            parse("[directories]\nAstModDir => /m\n").astmoddir,
            Path::new("/m")
        );
    }

    #[test]
    fn keys_not_set_keep_the_base_and_astctl_names_the_socket() {
        let base = Directories {
            astetcdir: "/opt/a/etc/asterisk".into(),
            astmoddir: "/opt/a/lib/asterisk/modules".into(),
            astlogdir: "/opt/a/var/log/asterisk".into(),
            astrundir: "/opt/a/var/run/asterisk".into(),
            moddir_from_file: false,
        };
        let d = parse_over("[directories]\nastlogdir => /srv/log\n", base.clone());
        assert_eq!(d.astmoddir, base.astmoddir);
        assert_eq!(d.astlogdir, Path::new("/srv/log"));
        assert_eq!(
            ctl_name("[files]\nastctlpermissions = 0660\nastctl => pbx.ctl ; renamed\n").as_deref(),
            Some("pbx.ctl")
        );
        assert_eq!(ctl_name("[options]\nastctl => no.ctl\n[files]\n"), None);
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
