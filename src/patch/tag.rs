//! The per-build tag that lets a reader tell a line the patched chan_sip wrote from one an
//! attacker shaped to look like it.
//!
//! A stock chan_sip ends its failure line with the From header, which the remote party writes,
//! so `Failed to authenticate device "x" <sip:x@pbx> (192.0.2.1:5060)` can come from either
//! module. What no remote party knows is a random value compiled into the patched module's
//! format strings: every patched site writes ` [astpatch:TAG]` at the very end of its message,
//! after everything Asterisk itself writes. A line is the patched module's only when it ends
//! with a tag the reader has seen in a module (on disk, mapped by the running Asterisk, or
//! recorded by an earlier run). Trust is then a property of each line, decided without any
//! memory of loads, reloads, restarts or rotations, and a whole forged line (a newline smuggled
//! through a logged field) cannot carry it.
//!
//! The tag is secret from the network, not from the host: it sits in a world-readable `.so` and
//! in every patched log line. Anyone who can read those can already write the log.
use std::fmt;

/// What every patched format string carries between its last Asterisk-written text and `\n`.
pub const OPEN: &[u8] = b" [astpatch:";
pub const CLOSE: u8 = b']';
/// Hex digits in a tag: 64 random bits.
pub const LEN: usize = 16;

/// One build's tag: 16 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag([u8; LEN]);

impl Tag {
    /// A fresh tag from the kernel's random source.
    pub fn generate() -> std::io::Result<Tag> {
        let mut raw = [0u8; LEN / 2];
        let mut filled = 0;
        while filled < raw.len() {
            // SAFETY: the pointer and length describe the unfilled rest of `raw`.
            let n = unsafe {
                libc::getrandom(raw[filled..].as_mut_ptr().cast(), raw.len() - filled, 0)
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            filled += n as usize;
        }
        let mut hex = [0u8; LEN];
        for (i, b) in raw.iter().enumerate() {
            hex[2 * i] = HEX[(b >> 4) as usize];
            hex[2 * i + 1] = HEX[(b & 15) as usize];
        }
        Ok(Tag(hex))
    }

    /// Exactly 16 lowercase hex digits.
    pub fn parse(s: &[u8]) -> Option<Tag> {
        let hex: [u8; LEN] = s.try_into().ok()?;
        hex.iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
            .then_some(Tag(hex))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("tags are ASCII hex")
    }

    /// The text a patched format string ends with: ` [astpatch:TAG]`.
    pub fn suffix(&self) -> String {
        format!(" [astpatch:{}]", self.as_str())
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({})", self.as_str())
    }
}

impl std::str::FromStr for Tag {
    type Err = String;
    fn from_str(s: &str) -> Result<Tag, String> {
        Tag::parse(s.as_bytes())
            .ok_or_else(|| format!("{s:?} is not an astpatch tag (16 lowercase hex digits)"))
    }
}

impl serde::Serialize for Tag {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Tag {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Tag, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A message that ends in ` [astpatch:TAG]`: the text before it and the tag. Any tag-shaped
/// ending is returned, known or not; whether it is believed is the caller's decision.
pub fn split_line(msg: &[u8]) -> Option<(&[u8], Tag)> {
    let msg = msg.strip_suffix(b"\r").unwrap_or(msg);
    let body = msg.strip_suffix(&[CLOSE])?;
    let at = body.len().checked_sub(LEN + OPEN.len())?;
    let (head, rest) = body.split_at(at);
    let hex = rest.strip_prefix(OPEN)?;
    Some((head, Tag::parse(hex)?))
}

/// True when `msg` ends in something that looks like a tag, well-formed or not: a line that
/// carries ` [astpatch:` in its last 40 bytes but no valid tag was shaped by someone guessing.
pub fn looks_tagged(msg: &[u8]) -> bool {
    let tail = &msg[msg.len().saturating_sub(OPEN.len() + LEN + 8)..];
    memchr::memmem::find(tail, OPEN).is_some()
}

/// Every tag compiled into a module's bytes (a patched chan_sip.so holds one, repeated in each
/// patched format string; a module built from a tree patched twice could hold more).
pub fn in_module(bytes: &[u8]) -> Vec<Tag> {
    let needle = &OPEN[1..];
    let mut tags = Vec::new();
    for at in memchr::memmem::find_iter(bytes, needle) {
        let start = at + needle.len();
        let Some(hex) = bytes.get(start..start + LEN) else {
            continue;
        };
        if bytes.get(start + LEN) != Some(&CLOSE) {
            continue;
        }
        if let Some(t) = Tag::parse(hex)
            && !tags.contains(&t)
        {
            tags.push(t);
        }
    }
    tags
}

/// What a chan_sip.so is, by the format strings it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleKind {
    /// No astpatch format: its failure lines end in the From header.
    Stock,
    /// Patched (by hand, or by astpatch before tags) but without a tag: its lines cannot be
    /// told from forged ones, so only `patched = true` trusts them.
    Untagged,
    /// Patched by astpatch with these tags.
    Tagged(Vec<Tag>),
}

impl ModuleKind {
    pub fn of(bytes: &[u8]) -> ModuleKind {
        let tags = in_module(bytes);
        if !tags.is_empty() {
            ModuleKind::Tagged(tags)
        } else if crate::module::install::module_is_patched(bytes) {
            ModuleKind::Untagged
        } else {
            ModuleKind::Stock
        }
    }

    pub fn is_patched(&self) -> bool {
        !matches!(self, ModuleKind::Stock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tags_are_hex_distinct_and_round_trip() {
        let a = Tag::generate().unwrap();
        let b = Tag::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(Tag::parse(a.as_str().as_bytes()), Some(a));
        assert_eq!(a.suffix(), format!(" [astpatch:{a}]"));
        assert_eq!(a.as_str().parse::<Tag>(), Ok(a));
        assert_eq!(serde_json::to_string(&a).unwrap(), format!("\"{a}\""));
    }

    #[test]
    fn parse_takes_exactly_sixteen_lowercase_hex() {
        assert!(Tag::parse(b"0123456789abcdef").is_some());
        for bad in [
            &b"0123456789ABCDEF"[..],
            b"0123456789abcde",
            b"0123456789abcdef0",
            b"0123456789abcdeg",
            b"",
        ] {
            assert_eq!(Tag::parse(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn split_line_takes_only_the_very_end() {
        let (head, t) = split_line(
            b"Failed to authenticate device x (203.0.113.7:5060) [astpatch:0123456789abcdef]",
        )
        .unwrap();
        assert_eq!(head, b"Failed to authenticate device x (203.0.113.7:5060)");
        assert_eq!(t.as_str(), "0123456789abcdef");
        assert!(split_line(b"x (1.2.3.4:5) [astpatch:0123456789abcdef]\r").is_some());
        // Anything after the tag means Asterisk did not end the message there.
        assert_eq!(split_line(b"x [astpatch:0123456789abcdef] y"), None);
        assert_eq!(split_line(b"x [astpatch:0123456789abcdef]]"), None);
        assert_eq!(split_line(b"x[astpatch:0123456789abcdef]"), None);
        assert_eq!(split_line(b"[astpatch:0123456789abcdef]"), None);
        assert!(looks_tagged(b"x [astpatch:zz]"));
        assert!(!looks_tagged(b"x (1.2.3.4:5)"));
    }

    #[test]
    fn modules_are_told_apart_by_their_strings() {
        let tagged =
            b"\x7fELF\0Failed to authenticate device %s (%s) [astpatch:00112233445566ff]\n\0\
            Sending fake auth rejection for device %s (%s) [astpatch:00112233445566ff]\n\0";
        assert_eq!(
            ModuleKind::of(tagged),
            ModuleKind::Tagged(vec![Tag::parse(b"00112233445566ff").unwrap()])
        );
        assert_eq!(
            ModuleKind::of(b"\x7fELF\0Failed to authenticate device %s (%s)\n\0"),
            ModuleKind::Untagged
        );
        assert_eq!(
            ModuleKind::of(b"\x7fELF\0Failed to authenticate device %s\n\0"),
            ModuleKind::Stock
        );
        // A truncated or malformed tag is no tag.
        assert_eq!(in_module(b"[astpatch:00112233445566f]"), vec![]);
        assert_eq!(in_module(b"[astpatch:00112233445566ff"), vec![]);
    }
}
