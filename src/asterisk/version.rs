//! Asterisk version strings, parsed into one type that orders correctly across every naming
//! scheme the project has used since 0.x.
//!
//! The schemes: three-part numbers (`11.23.1`), four-part 1.x numbers (`1.4.40.1`, `1.6.2.24`,
//! and five-part security re-spins such as `1.6.2.17.3`), pre-releases (`-rc2`, `-beta1`,
//! `-beta7.1`, `-pre1`, `-alpha2`, `-tc1`, `-testing`), certified releases (`1.8.15-cert4`,
//! `certified/13.21-cert1`, `certified-18.9-cert10`, with their own `-rcN`/`-preN`), and the
//! product flavours `-digiumphones` and `-netsec`.
//!
//! Ordering, in one key: the release numbers (missing trailing parts count as zero, so
//! `13.21` == `13.21.0`), then the certified revision (a plain release is revision 0, so
//! `13.21.0 < 13.21-cert1 < 13.21-cert2 < 13.21.1`), then the pre-release (every pre-release
//! sorts before the release it leads to: `alpha < beta < pre < tc < testing < rc < release`),
//! then the flavour (plain, digiumphones, netsec) as a tie-break between builds of one number.
use std::cmp::Ordering;
use std::fmt;

use serde::{Serialize, Serializer};

/// A parsed Asterisk version. `raw` keeps the text exactly as the tree stated it.
#[derive(Debug, Clone)]
pub struct AsteriskVersion {
    raw: String,
    /// `1.4.40.1` -> `[1, 4, 40, 1]`; `certified/13.21-cert1` -> `[13, 21]`.
    pub numbers: Vec<u32>,
    /// The certified revision: `-cert4` -> `Some(4)`.
    pub cert: Option<u32>,
    /// Named certified releases (`certified/…`, `certified-…`) and `-certN` both set this.
    pub certified: bool,
    pub pre: Option<PreRelease>,
    pub flavour: Flavour,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PreKind {
    Alpha,
    Beta,
    Pre,
    Tc,
    Testing,
    Rc,
}

/// A pre-release tag: `-beta7.1` -> `Beta`, `[7, 1]`; `-testing` -> `Testing`, `[]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PreRelease {
    pub kind: PreKind,
    pub numbers: Vec<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavour {
    Plain,
    Digiumphones,
    Netsec,
}

/// Why a string is not an Asterisk version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not an Asterisk version: {why}")]
pub struct ParseError {
    pub text: String,
    pub why: &'static str,
}

impl AsteriskVersion {
    /// Parse a version as `.version`, a tag name or `git describe` writes it. Surrounding
    /// whitespace is ignored; a `git describe` suffix (`-12-gdeadbee`, `-dirty`) is dropped.
    pub fn parse(text: &str) -> Result<AsteriskVersion, ParseError> {
        let raw = text.trim();
        let err = |why| ParseError {
            text: raw.to_owned(),
            why,
        };
        if raw.is_empty() {
            return Err(err("it is empty"));
        }
        let mut rest = raw;
        let mut certified = false;
        for prefix in ["certified/", "certified-"] {
            if let Some(r) = rest.strip_prefix(prefix) {
                rest = r;
                certified = true;
            }
        }
        // Asterisk's own build scripts prefix git-derived versions ("GIT-master-1a2b3c");
        // those name a branch, not a release.
        let rest = strip_describe_suffix(rest);
        let mut parts = rest.split('-');
        let numbers_text = parts.next().unwrap_or_default();
        let numbers = numbers_text
            .split('.')
            .map(|n| {
                if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || n.len() > 6 {
                    Err(err(
                        "the release number must be dot-separated digits, like 11.23.1",
                    ))
                } else {
                    Ok(n.parse::<u32>().expect("checked digits"))
                }
            })
            .collect::<Result<Vec<u32>, _>>()?;
        if !(2..=5).contains(&numbers.len()) {
            return Err(err(
                "the release number has 2 to 5 parts, like 11.23.1 or 1.4.40.1",
            ));
        }
        let mut cert = None;
        let mut pre = None;
        let mut flavour = Flavour::Plain;
        for part in parts {
            if let Some(n) = part.strip_prefix("cert") {
                if cert.is_some() || pre.is_some() {
                    return Err(err("-certN must come once, before any -rcN"));
                }
                cert = Some(digits(n).ok_or_else(|| err("-cert needs a number, like -cert4"))?);
                certified = true;
            } else if let Some((kind, n)) = pre_kind(part) {
                if pre.is_some() {
                    return Err(err(
                        "only one pre-release tag (-rcN, -betaN, ...) is allowed",
                    ));
                }
                let numbers = if n.is_empty() {
                    if kind != PreKind::Testing {
                        return Err(err("a pre-release tag needs a number, like -rc1"));
                    }
                    Vec::new()
                } else {
                    n.split('.')
                        .map(|x| digits(x).ok_or_else(|| err("bad pre-release number")))
                        .collect::<Result<Vec<_>, _>>()?
                };
                pre = Some(PreRelease { kind, numbers });
            } else if part == "digiumphones" {
                flavour = Flavour::Digiumphones;
            } else if part == "netsec" {
                flavour = Flavour::Netsec;
            } else {
                return Err(err(
                    "unknown suffix (known: -rcN -betaN -preN -alphaN -certN -digiumphones -netsec)",
                ));
            }
        }
        Ok(AsteriskVersion {
            raw: raw.to_owned(),
            numbers,
            cert,
            certified,
            pre,
            flavour,
        })
    }

    /// The text exactly as given (trimmed).
    pub fn raw(&self) -> &str {
        &self.raw
    }

    pub fn major(&self) -> u32 {
        self.numbers[0]
    }

    /// The release series the Asterisk project named its branches by: `1.2`, `1.4`, `1.6.0`,
    /// `1.6.1`, `1.6.2`, `1.8`, then `10`, `11`, … (and `0.x`/`1.0` for the oldest).
    pub fn series(&self) -> String {
        match (self.numbers[0], self.numbers[1]) {
            (0, minor) => format!("0.{minor}"),
            (1, 6) => format!("1.6.{}", self.numbers.get(2).copied().unwrap_or(0)),
            (1, minor) => format!("1.{minor}"),
            (major, _) => major.to_string(),
        }
    }

    /// The nearest semantic version, for tools that speak semver.
    ///
    /// Faithful only for three-part releases from 10 on (`major.minor.patch`, pre-releases as
    /// `rc.2`, `beta.1`, which semver happens to order like Asterisk does). It is **not**
    /// faithful, and `None` is returned, for: four- and five-part 1.x numbers (in `1.4.40.1`
    /// the "major" is `1.4`, and semver has no fourth part), certified releases (`-cert4` is a
    /// later, patched build of the same numbers, which semver would sort *before* the
    /// release as a pre-release), and flavoured builds (`-digiumphones`, `-netsec` are
    /// products, not versions). Range matching therefore uses this type's own `Ord`.
    pub fn to_semver(&self) -> Option<semver::Version> {
        if self.numbers.len() != 3 || self.numbers[0] < 10 || self.certified {
            return None;
        }
        if self.flavour != Flavour::Plain {
            return None;
        }
        let mut v = semver::Version::new(
            self.numbers[0].into(),
            self.numbers[1].into(),
            self.numbers[2].into(),
        );
        if let Some(p) = &self.pre {
            let mut text = format!("{:?}", p.kind).to_lowercase();
            for n in &p.numbers {
                text.push('.');
                text.push_str(&n.to_string());
            }
            v.pre = semver::Prerelease::new(&text).ok()?;
        }
        Some(v)
    }

    fn key(&self) -> (Vec<u32>, u32, (u8, Option<&PreRelease>), Flavour) {
        let mut n = self.numbers.clone();
        while n.last() == Some(&0) {
            n.pop();
        }
        // A release sorts after all of its pre-releases.
        let pre = match &self.pre {
            Some(p) => (0, Some(p)),
            None => (1, None),
        };
        (n, self.cert.unwrap_or(0), pre, self.flavour)
    }
}

fn digits(s: &str) -> Option<u32> {
    (!s.is_empty() && s.len() <= 6 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().expect("checked digits"))
}

fn pre_kind(part: &str) -> Option<(PreKind, &str)> {
    const KINDS: [(&str, PreKind); 6] = [
        ("alpha", PreKind::Alpha),
        ("beta", PreKind::Beta),
        ("pre", PreKind::Pre),
        ("testing", PreKind::Testing),
        ("tc", PreKind::Tc),
        ("rc", PreKind::Rc),
    ];
    KINDS.iter().find_map(|(name, kind)| {
        let n = part.strip_prefix(name)?;
        n.bytes()
            .all(|b| b.is_ascii_digit() || b == b'.')
            .then_some((*kind, n))
    })
}

/// `git describe` appends `-<commits>-g<hash>` and, with `--dirty`, `-dirty`.
fn strip_describe_suffix(s: &str) -> &str {
    let s = s.strip_suffix("-dirty").unwrap_or(s);
    let mut it = s.rsplitn(3, '-');
    if let (Some(hash), Some(count), Some(head)) = (it.next(), it.next(), it.next())
        && hash.len() > 1
        && hash.starts_with('g')
        && hash[1..].bytes().all(|b| b.is_ascii_hexdigit())
        && count.bytes().all(|b| b.is_ascii_digit())
        && !count.is_empty()
    {
        return head;
    }
    s
}

impl PartialEq for AsteriskVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for AsteriskVersion {}
impl PartialOrd for AsteriskVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for AsteriskVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

impl fmt::Display for AsteriskVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl Serialize for AsteriskVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

impl std::str::FromStr for AsteriskVersion {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AsteriskVersion::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> AsteriskVersion {
        AsteriskVersion::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn parses_every_scheme() {
        // text, numbers, cert, certified, pre-release, flavour
        type Case<'a> = (
            &'a str,
            &'a [u32],
            Option<u32>,
            bool,
            Option<(PreKind, &'a [u32])>,
            Flavour,
        );
        let cases: &[Case] = &[
            ("11.23.1", &[11, 23, 1], None, false, None, Flavour::Plain),
            (
                "1.4.40.1",
                &[1, 4, 40, 1],
                None,
                false,
                None,
                Flavour::Plain,
            ),
            (
                "1.6.2.24",
                &[1, 6, 2, 24],
                None,
                false,
                None,
                Flavour::Plain,
            ),
            (
                "1.6.2.17.3",
                &[1, 6, 2, 17, 3],
                None,
                false,
                None,
                Flavour::Plain,
            ),
            (
                "13.32.0-rc2",
                &[13, 32, 0],
                None,
                false,
                Some((PreKind::Rc, &[2])),
                Flavour::Plain,
            ),
            (
                "1.6.0-beta7.1",
                &[1, 6, 0],
                None,
                false,
                Some((PreKind::Beta, &[7, 1])),
                Flavour::Plain,
            ),
            (
                "21.0.0-pre1",
                &[21, 0, 0],
                None,
                false,
                Some((PreKind::Pre, &[1])),
                Flavour::Plain,
            ),
            (
                "12.0.0-alpha2",
                &[12, 0, 0],
                None,
                false,
                Some((PreKind::Alpha, &[2])),
                Flavour::Plain,
            ),
            (
                "1.4.23-testing",
                &[1, 4, 23],
                None,
                false,
                Some((PreKind::Testing, &[])),
                Flavour::Plain,
            ),
            (
                "1.8.19.0-tc1",
                &[1, 8, 19, 0],
                None,
                false,
                Some((PreKind::Tc, &[1])),
                Flavour::Plain,
            ),
            (
                "1.8.15-cert4",
                &[1, 8, 15],
                Some(4),
                true,
                None,
                Flavour::Plain,
            ),
            (
                "certified/13.21-cert1",
                &[13, 21],
                Some(1),
                true,
                None,
                Flavour::Plain,
            ),
            (
                "certified-18.9-cert10",
                &[18, 9],
                Some(10),
                true,
                None,
                Flavour::Plain,
            ),
            (
                "certified/13.21-cert1-rc1",
                &[13, 21],
                Some(1),
                true,
                Some((PreKind::Rc, &[1])),
                Flavour::Plain,
            ),
            (
                "certified-20.7-cert1-pre1",
                &[20, 7],
                Some(1),
                true,
                Some((PreKind::Pre, &[1])),
                Flavour::Plain,
            ),
            (
                "10.12.2-digiumphones",
                &[10, 12, 2],
                None,
                false,
                None,
                Flavour::Digiumphones,
            ),
            (
                "10.2.0-digiumphones-rc1",
                &[10, 2, 0],
                None,
                false,
                Some((PreKind::Rc, &[1])),
                Flavour::Digiumphones,
            ),
            (
                "1.2.13-netsec",
                &[1, 2, 13],
                None,
                false,
                None,
                Flavour::Netsec,
            ),
            (
                "  11.25.3\n",
                &[11, 25, 3],
                None,
                false,
                None,
                Flavour::Plain,
            ),
        ];
        for (text, numbers, cert, certified, pre, flavour) in cases {
            let got = v(text);
            assert_eq!(got.numbers, *numbers, "{text}");
            assert_eq!(got.cert, *cert, "{text}");
            assert_eq!(got.certified, *certified, "{text}");
            assert_eq!(
                got.pre.as_ref().map(|p| (p.kind, p.numbers.as_slice())),
                pre.map(|(k, n)| (k, n)),
                "{text}"
            );
            assert_eq!(got.flavour, *flavour, "{text}");
            assert_eq!(got.raw(), text.trim());
        }
    }

    #[test]
    fn orders_across_schemes() {
        let ascending = [
            "0.9.0",
            "1.0.12",
            "1.2.7.1",
            "1.2.8",
            "1.2.13",
            "1.2.13-netsec",
            "1.4.23-testing",
            "1.4.23-rc1",
            "1.4.23",
            "1.4.40",
            "1.4.40.1",
            "1.6.0-beta7",
            "1.6.0-beta7.1",
            "1.6.0-rc1",
            "1.6.0",
            "1.6.0.28",
            "1.6.1.0",
            "1.6.2.17",
            "1.6.2.17.1",
            "1.6.2.17.3",
            "1.6.2.24",
            "1.8.0-beta1",
            "1.8.11.0",
            "1.8.11-cert1-rc1",
            "1.8.11-cert1",
            "1.8.11-cert10",
            "1.8.11.1",
            "1.8.32.3",
            "10.0.0-beta1",
            "10.12.2",
            "10.12.2-digiumphones",
            "11.23.1",
            "12.0.0-alpha1",
            "12.0.0-alpha2",
            "12.0.0-beta1",
            "12.0.0",
            "13.21.0",
            "certified/13.21-cert1-rc1",
            "certified/13.21-cert1",
            "certified/13.21-cert2",
            "13.21.1",
            "13.32.0-rc1",
            "13.32.0-rc2",
            "13.32.0",
            "18.9.0",
            "certified-18.9-cert10",
            "20.7.0",
            "certified-20.7-cert1-pre1",
            "certified-20.7-cert1",
            "20.20.1",
            "21.0.0-pre1",
            "21.0.0-rc1",
            "21.0.0",
        ];
        for pair in ascending.windows(2) {
            assert!(v(pair[0]) < v(pair[1]), "{} < {}", pair[0], pair[1]);
        }
        assert_eq!(v("13.21"), v("13.21.0"));
    }

    #[test]
    fn semver_where_faithful_agrees_with_ord() {
        let all = [
            "10.0.0-beta1",
            "10.0.0-rc1",
            "10.0.0",
            "11.23.1",
            "12.0.0-alpha1",
            "12.0.0-beta2",
            "13.32.0-rc1",
            "13.32.0-rc2",
            "13.32.0",
            "20.20.1",
            "21.0.0-pre1",
            "21.0.0-rc1",
        ];
        for a in all {
            for b in all {
                let (va, vb) = (v(a), v(b));
                let (sa, sb) = (va.to_semver().unwrap(), vb.to_semver().unwrap());
                assert_eq!(va.cmp(&vb), sa.cmp(&sb), "{a} vs {b}");
            }
        }
        for unfaithful in [
            "1.4.40.1",
            "1.6.2.24",
            "1.8.15-cert4",
            "certified/13.21-cert1",
            "10.12.2-digiumphones",
        ] {
            assert!(v(unfaithful).to_semver().is_none(), "{unfaithful}");
        }
        assert_eq!(
            v("13.32.0-rc2").to_semver().unwrap().to_string(),
            "13.32.0-rc.2"
        );
    }

    #[test]
    fn series_names() {
        for (text, series) in [
            ("0.9.0", "0.9"),
            ("1.0.12", "1.0"),
            ("1.2.40", "1.2"),
            ("1.4.44", "1.4"),
            ("1.6.0.28", "1.6.0"),
            ("1.6.1.0", "1.6.1"),
            ("1.6.2.24", "1.6.2"),
            ("1.8.32.3", "1.8"),
            ("certified/1.8.11-cert10", "1.8"),
            ("11.23.1", "11"),
            ("certified-18.9-cert10", "18"),
            ("22.0.0-pre1", "22"),
        ] {
            assert_eq!(v(text).series(), series, "{text}");
        }
    }

    #[test]
    fn git_describe_suffixes_are_dropped() {
        assert_eq!(v("11.23.1-12-g1a2b3c4").numbers, [11, 23, 1]);
        assert_eq!(
            v("13.32.0-rc1-3-gdeadbee-dirty").pre.unwrap().kind,
            PreKind::Rc
        );
        assert_eq!(v("11.23.1-dirty").numbers, [11, 23, 1]);
    }

    #[test]
    fn rejects_what_is_not_a_version() {
        for bad in [
            "",
            "SVN-trunk-r12345",
            "GIT-master-1a2b3c",
            "11",
            "11.x.1",
            "11.23.1-foo",
            "1.2.3.4.5.6",
            "11.23.1-rc",
            "11.23.1-cert",
            "11.23.1-rc1-rc2",
            "\u{fffd}",
        ] {
            assert!(AsteriskVersion::parse(bad).is_err(), "{bad:?} should fail");
        }
    }
}
