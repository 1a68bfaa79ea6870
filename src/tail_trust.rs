//! Which chan_sip tails a reader believes. A stock chan_sip ends its failure lines with the
//! sender's From header, so a tail is believed only on a line that carries the tag of a patched
//! build ([`crate::module_tag`]): the tags are learnt from the chan_sip.so Asterisk loads. Lines
//! patched without a tag are believed only when the operator says so with `patched = true`.
use std::io;
use std::path::{Path, PathBuf};

use crate::asterisk_conf::{self, Directories};
use crate::config::Patched;
use crate::install;
use crate::module_tag::{ModuleKind, Tag};
use crate::recognise::RecogniseOptions;

/// What a reader believes, and the reason in words for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailTrust {
    pub options: RecogniseOptions,
    pub reason: String,
}

impl TailTrust {
    /// True when some chan_sip tail can be believed at all.
    pub fn trusted(&self) -> bool {
        !self.options.known_tags.is_empty() || self.options.trust_untagged
    }

    /// The one start-up line that says what was decided and why.
    pub fn line(&self) -> String {
        let verdict = if self.trusted() {
            "chan_sip tails trusted"
        } else {
            "chan_sip tails not trusted"
        };
        format!("{verdict}: {}", self.reason)
    }
}

const UNTRUSTED: &str = "stock chan_sip failures are counted without an address";

fn tag_list(tags: &[Tag]) -> String {
    tags.iter().map(Tag::as_str).collect::<Vec<_>>().join(", ")
}

/// The pure part: what the `patched` setting, the tags given in the settings, and reading the
/// module at `path` tell.
pub fn from_module(
    patched: Patched,
    extra: &[Tag],
    path: &Path,
    read: Result<&[u8], &io::Error>,
) -> TailTrust {
    let p = path.display();
    let mut known: Vec<Tag> = extra.to_vec();
    if patched == Patched::False {
        return TailTrust {
            options: RecogniseOptions {
                tails_off: true,
                ..RecogniseOptions::default()
            },
            reason: format!("patched = false in the settings; {UNTRUSTED}"),
        };
    }
    let kind = read.map(ModuleKind::of);
    let mut reason = match &kind {
        Ok(ModuleKind::Tagged(tags)) => {
            for t in tags {
                if !known.contains(t) {
                    known.push(*t);
                }
            }
            format!(
                "lines tagged by build {} are believed ({p})",
                tag_list(tags)
            )
        }
        Ok(ModuleKind::Untagged) => format!(
            "{p} is patched without astpatch's tag (by hand, or by astpatch before 0.2):              re-run astpatch apply --rebuild --install --reload to tag it"
        ),
        Ok(ModuleKind::Stock) => format!("{p} has no astpatch format"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => format!("{p} does not exist"),
        Err(e) => format!("cannot read {p} ({e})"),
    };
    if !extra.is_empty() {
        reason.push_str(&format!("; tags from the settings: {}", tag_list(extra)));
    }
    let trust_untagged = patched == Patched::True;
    if trust_untagged {
        reason
            .push_str("; patched = true: lines without a tag are believed too (verify flags this)");
    } else if known.is_empty() {
        reason.push_str(&format!("; {UNTRUSTED}"));
    }
    TailTrust {
        options: RecogniseOptions {
            known_tags: known,
            trust_untagged,
            tails_off: false,
        },
        reason,
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

/// Decide for the `patched` setting and the settings' `tags` on the system at `root` (`/` is
/// the live system).
pub fn decide(patched: Patched, extra: &[Tag], root: &Path) -> TailTrust {
    let path = installed_module(root);
    let read = if patched == Patched::False {
        Ok(vec![])
    } else {
        std::fs::read(&path)
    };
    from_module(patched, extra, &path, read.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAGGED: &[u8] =
        b"\x7fELF..NOTICE Failed to authenticate device %s (%s) [astpatch:00112233445566ff]\0..";
    const UNTAGGED: &[u8] = b"\x7fELF..NOTICE Failed to authenticate device %s (%s)\0..";
    const STOCK: &[u8] = b"\x7fELF..NOTICE Failed to authenticate device %s\0..";

    fn tag(s: &str) -> Tag {
        s.parse().unwrap()
    }

    #[test]
    fn only_a_tagged_module_makes_lines_believed_by_default() {
        let p = Path::new("/m/chan_sip.so");
        let t = from_module(Patched::Auto, &[], p, Ok(TAGGED));
        assert_eq!(t.options.known_tags, vec![tag("00112233445566ff")]);
        assert!(!t.options.trust_untagged);
        assert_eq!(
            t.line(),
            "chan_sip tails trusted: lines tagged by build 00112233445566ff are believed (/m/chan_sip.so)"
        );
        let t = from_module(Patched::Auto, &[], p, Ok(UNTAGGED));
        assert!(!t.trusted(), "{t:?}");
        assert!(t.reason.contains("re-run astpatch apply"), "{}", t.reason);
        let t = from_module(Patched::Auto, &[], p, Ok(STOCK));
        assert!(!t.trusted());
        assert!(
            t.line()
                .starts_with("chan_sip tails not trusted: /m/chan_sip.so has no astpatch format;"),
            "{}",
            t.line()
        );
        let t = from_module(Patched::Auto, &[], p, Err(&io::ErrorKind::NotFound.into()));
        assert!(!t.trusted() && t.reason.contains("does not exist"), "{t:?}");
        let t = from_module(
            Patched::Auto,
            &[],
            p,
            Err(&io::ErrorKind::PermissionDenied.into()),
        );
        assert!(!t.trusted() && t.reason.starts_with("cannot read"), "{t:?}");
        assert!(!from_module(Patched::Auto, &[], p, Ok(b"")).trusted());
    }

    #[test]
    fn settings_tags_add_and_patched_true_believes_untagged_lines_loudly() {
        let p = Path::new("/m/chan_sip.so");
        let t = from_module(Patched::Auto, &[tag("aaaaaaaaaaaaaaaa")], p, Ok(TAGGED));
        assert_eq!(
            t.options.known_tags,
            vec![tag("aaaaaaaaaaaaaaaa"), tag("00112233445566ff")]
        );
        let t = from_module(Patched::True, &[], p, Ok(UNTAGGED));
        assert!(t.options.trust_untagged && t.trusted());
        assert!(t.reason.contains("patched = true"), "{}", t.reason);
        // false wins over everything, tags included.
        let t = from_module(Patched::False, &[tag("aaaaaaaaaaaaaaaa")], p, Ok(TAGGED));
        assert!(!t.trusted(), "{t:?}");
    }

    #[test]
    fn decide_reads_nothing_for_false_and_finds_no_module_nowhere() {
        let nowhere = Path::new("/nonexistent-astpatch-root");
        assert!(decide(Patched::True, &[], nowhere).trusted());
        assert!(!decide(Patched::False, &[], nowhere).trusted());
        assert!(!decide(Patched::Auto, &[], nowhere).trusted());
    }
}
