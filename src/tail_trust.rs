//! Whether the address at the end of chan_sip failure lines may be believed. A stock chan_sip
//! ends those lines with the sender's From header, so the tail is trusted only when the module
//! Asterisk loads carries astpatch's format strings (the same test `verify` and `install` use),
//! or when the operator says so with `patched = true`.
use std::io;
use std::path::{Path, PathBuf};

use crate::asterisk_conf::{self, Directories};
use crate::config::Patched;
use crate::install;

/// The decision and the reason, in words for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailTrust {
    pub trusted: bool,
    pub reason: String,
}

impl TailTrust {
    /// The one start-up line that says what was decided and why.
    pub fn line(&self) -> String {
        let verdict = if self.trusted {
            "chan_sip tails trusted"
        } else {
            "chan_sip tails not trusted"
        };
        format!("{verdict}: {}", self.reason)
    }
}

const UNTRUSTED: &str = "stock chan_sip failures are counted without an address";

/// The pure part: what reading the installed module (at `path`) tells.
pub fn from_module(path: &Path, read: Result<&[u8], &io::Error>) -> TailTrust {
    let p = path.display();
    match read {
        Ok(bytes) if install::module_is_patched(bytes) => TailTrust {
            trusted: true,
            reason: format!("{p} carries astpatch's format (patched = \"auto\")"),
        },
        Ok(_) => TailTrust {
            trusted: false,
            reason: format!("{p} has no astpatch format; {UNTRUSTED}"),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => TailTrust {
            trusted: false,
            reason: format!("{p} does not exist; {UNTRUSTED}"),
        },
        Err(e) => TailTrust {
            trusted: false,
            reason: format!("cannot read {p} ({e}); {UNTRUSTED}"),
        },
    }
}

/// Where Asterisk loads chan_sip.so from on the system at `root`: asterisk.conf's `astmoddir`
/// (as verify and install find it), else the first usual module directory that holds one.
pub fn installed_module(root: &Path) -> PathBuf {
    if let Ok(m) = install::resolve_moddir(None, None, root) {
        return m.path.join(install::MODULE);
    }
    // Distribution packages for 64-bit Red Hat-likes use lib64; everyone else Asterisk's default.
    let candidates = [
        Directories::default().astmoddir,
        PathBuf::from("/usr/lib64/asterisk/modules"),
    ]
    .map(|d| asterisk_conf::under(root, &d).join(install::MODULE));
    candidates
        .iter()
        .find(|p| p.exists())
        .unwrap_or(&candidates[0])
        .clone()
}

/// Decide for the `patched` setting on the system at `root` (`/` is the live system).
pub fn decide(patched: Patched, root: &Path) -> TailTrust {
    match patched {
        Patched::True => TailTrust {
            trusted: true,
            reason: "patched = true in the settings".into(),
        },
        Patched::False => TailTrust {
            trusted: false,
            reason: format!("patched = false in the settings; {UNTRUSTED}"),
        },
        Patched::Auto => {
            let path = installed_module(root);
            let read = std::fs::read(&path);
            from_module(&path, read.as_deref())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATCHED: &[u8] = b"\x7fELF..NOTICE Failed to authenticate device %s (%s:%d)\0..";
    const STOCK: &[u8] = b"\x7fELF..NOTICE Failed to authenticate device %s\0..";

    #[test]
    fn only_a_module_with_astpatch_strings_is_trusted() {
        let p = Path::new("/m/chan_sip.so");
        let t = from_module(p, Ok(PATCHED));
        assert!(t.trusted);
        assert_eq!(
            t.line(),
            "chan_sip tails trusted: /m/chan_sip.so carries astpatch's format (patched = \"auto\")"
        );
        let t = from_module(p, Ok(STOCK));
        assert!(!t.trusted);
        assert!(
            t.line()
                .starts_with("chan_sip tails not trusted: /m/chan_sip.so has no astpatch format;"),
            "{}",
            t.line()
        );
        let t = from_module(p, Err(&io::ErrorKind::NotFound.into()));
        assert!(!t.trusted && t.reason.contains("does not exist"), "{t:?}");
        let t = from_module(p, Err(&io::ErrorKind::PermissionDenied.into()));
        assert!(!t.trusted && t.reason.starts_with("cannot read"), "{t:?}");
        assert!(!from_module(p, Ok(b"")).trusted);
    }

    #[test]
    fn explicit_settings_win_without_looking() {
        let nowhere = Path::new("/nonexistent-astpatch-root");
        assert!(decide(Patched::True, nowhere).trusted);
        assert!(!decide(Patched::False, nowhere).trusted);
        assert!(!decide(Patched::Auto, nowhere).trusted);
    }
}
