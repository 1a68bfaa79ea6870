//! `asterisk-versions.json`: which release series ship chan_sip, and which chan_sip shape a
//! version is expected to have. Embedded at build time and validated on first use; the test
//! suite validates it too, so a malformed table fails `cargo test`, not an operator's run.
use std::fmt;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::asterisk::version::AsteriskVersion;

const EMBEDDED: &str = include_str!("../../asterisk-versions.json");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChanSipStatus {
    Present,
    /// Still built and shipped (17–20), but on its way out.
    Deprecated,
    /// Not in the tree at all (21 on).
    Absent,
}

impl fmt::Display for ChanSipStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChanSipStatus::Present => "present",
            ChanSipStatus::Deprecated => "present (deprecated)",
            ChanSipStatus::Absent => "absent",
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    #[allow(dead_code)]
    about: String,
    chan_sip_removed_in: String,
    series: Vec<RawSeries>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSeries {
    series: String,
    chan_sip: ChanSipStatus,
    shapes: Vec<RawStep>,
    #[serde(default)]
    certified_shapes: Vec<RawStep>,
    #[serde(default)]
    notes: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    from: String,
    shape: String,
}

#[derive(Debug)]
struct Step {
    from: AsteriskVersion,
    shape: String,
}

#[derive(Debug)]
struct Series {
    name: String,
    chan_sip: ChanSipStatus,
    shapes: Vec<Step>,
    certified_shapes: Vec<Step>,
    notes: Option<String>,
}

/// What the table says about a version's series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeriesInfo {
    pub series: String,
    /// False when the series is newer or older than anything in the table.
    pub known: bool,
    pub chan_sip: ChanSipStatus,
    pub notes: Option<String>,
}

#[derive(Debug)]
pub struct Table {
    removed_in: u32,
    series: Vec<Series>,
}

/// Shape ids `patches/index.json` knows; the table may name no other.
const SHAPES: [&str; 11] = ["0", "1", "2", "3", "4", "4c", "5", "5c", "6", "7", "8"];

impl Table {
    /// The table compiled into this binary.
    pub fn embedded() -> &'static Table {
        static TABLE: OnceLock<Table> = OnceLock::new();
        TABLE.get_or_init(|| {
            Table::parse(EMBEDDED)
                .unwrap_or_else(|e| panic!("asterisk-versions.json is invalid: {e}"))
        })
    }

    /// Parse and validate a table. Every error names the entry at fault.
    pub fn parse(text: &str) -> Result<Table, String> {
        let raw: RawTable = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let removed = AsteriskVersion::parse(&raw.chan_sip_removed_in)
            .map(|v| v.major())
            .or_else(|_| raw.chan_sip_removed_in.parse::<u32>())
            .map_err(|_| "chan_sip_removed_in must be a major version like \"21\"".to_owned())?;
        let mut series: Vec<Series> = Vec::new();
        for s in raw.series {
            if series.iter().any(|o| o.name == s.series) {
                return Err(format!("series {} listed twice", s.series));
            }
            let steps = |raw: Vec<RawStep>| -> Result<Vec<Step>, String> {
                let mut steps: Vec<Step> = Vec::new();
                for r in raw {
                    let from = AsteriskVersion::parse(&r.from)
                        .map_err(|e| format!("series {}: {e}", s.series))?;
                    if from.series() != s.series {
                        return Err(format!(
                            "series {}: step {} belongs to series {}",
                            s.series,
                            r.from,
                            from.series()
                        ));
                    }
                    if !SHAPES.contains(&r.shape.as_str()) {
                        return Err(format!(
                            "series {}: unknown shape {:?} (known: {})",
                            s.series,
                            r.shape,
                            SHAPES.join(" ")
                        ));
                    }
                    if let Some(prev) = steps.last()
                        && prev.from >= from
                    {
                        return Err(format!(
                            "series {}: steps must ascend ({} then {})",
                            s.series, prev.from, from
                        ));
                    }
                    steps.push(Step {
                        from,
                        shape: r.shape,
                    });
                }
                Ok(steps)
            };
            let shapes = steps(s.shapes)?;
            let certified_shapes = steps(s.certified_shapes)?;
            let has_shapes = !shapes.is_empty() || !certified_shapes.is_empty();
            if s.chan_sip == ChanSipStatus::Absent && has_shapes {
                return Err(format!(
                    "series {}: chan_sip absent but shapes given",
                    s.series
                ));
            }
            series.push(Series {
                name: s.series,
                chan_sip: s.chan_sip,
                shapes,
                certified_shapes,
                notes: s.notes,
            });
        }
        Ok(Table {
            removed_in: removed,
            series,
        })
    }

    fn find(&self, v: &AsteriskVersion) -> Option<&Series> {
        let name = v.series();
        self.series.iter().find(|s| s.name == name)
    }

    /// The series of `v`, whether it ships chan_sip, and the table's notes. A series the
    /// table does not know is assumed to have chan_sip before the removal and none after.
    pub fn series_info(&self, v: &AsteriskVersion) -> SeriesInfo {
        match self.find(v) {
            Some(s) => SeriesInfo {
                series: s.name.clone(),
                known: true,
                chan_sip: s.chan_sip,
                notes: s.notes.clone(),
            },
            None => SeriesInfo {
                series: v.series(),
                known: false,
                chan_sip: if v.major() >= self.removed_in {
                    ChanSipStatus::Absent
                } else {
                    ChanSipStatus::Present
                },
                notes: None,
            },
        }
    }

    /// The shape the table expects for `v`, if any.
    pub fn expected_shape(&self, v: &AsteriskVersion) -> Option<&str> {
        let s = self.find(v)?;
        let steps = if v.certified && !s.certified_shapes.is_empty() {
            &s.certified_shapes
        } else {
            &s.shapes
        };
        steps
            .iter()
            .rev()
            .find(|step| step.from <= *v)
            .map(|step| step.shape.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> AsteriskVersion {
        AsteriskVersion::parse(s).unwrap()
    }

    #[test]
    fn embedded_table_is_valid() {
        let t = Table::embedded();
        assert!(t.series.len() >= 25);
    }

    #[test]
    fn expected_shapes_follow_the_census() {
        let t = Table::embedded();
        for (version, shape) in [
            ("0.9.0", Some("0")),
            ("1.0.12", Some("0")),
            ("1.2.7.1", Some("1")),
            ("1.2.8", Some("2")),
            ("1.2.13-netsec", Some("2")),
            ("1.4.40.1", Some("2")),
            ("1.6.0.28", Some("2")),
            ("1.6.1.0", Some("3")),
            ("1.6.2.24", Some("3")),
            ("1.8.20.1", Some("4")),
            ("1.8.20.2", Some("5")),
            ("1.8.11-cert10", Some("4c")),
            ("1.8.15-cert4", Some("5c")),
            ("certified/1.8.28-cert5", Some("5c")),
            ("10.0.0-beta1", Some("4c")),
            ("10.12.1-digiumphones", Some("6")),
            ("10.12.2-digiumphones", Some("7")),
            ("11.2.1", Some("6")),
            ("11.23.1", Some("7")),
            ("certified/11.6-cert18", Some("7")),
            ("13.31.0", Some("7")),
            ("13.32.0-rc1", Some("8")),
            ("certified/13.21-cert1", Some("7")),
            ("certified/16.8-cert14", Some("7")),
            ("16.9.0", Some("8")),
            ("certified-18.9-cert10", Some("8")),
            ("20.20.1", Some("8")),
            ("0.1.12", None),
            ("21.0.0", None),
            ("24.0.0", None),
        ] {
            assert_eq!(t.expected_shape(&v(version)), shape, "{version}");
        }
    }

    #[test]
    fn chan_sip_status_by_series() {
        let t = Table::embedded();
        assert_eq!(
            t.series_info(&v("16.30.1")).chan_sip,
            ChanSipStatus::Present
        );
        assert_eq!(
            t.series_info(&v("18.9.0")).chan_sip,
            ChanSipStatus::Deprecated
        );
        let info = t.series_info(&v("21.2.0"));
        assert_eq!(info.chan_sip, ChanSipStatus::Absent);
        assert!(info.notes.unwrap().contains("PJSIP"));
        // Beyond the table: assumed absent, and flagged as unknown.
        let info = t.series_info(&v("30.1.0"));
        assert_eq!((info.chan_sip, info.known), (ChanSipStatus::Absent, false));
        assert_eq!(t.series_info(&v("1.6.2.24")).series, "1.6.2");
    }

    #[test]
    fn malformed_tables_are_rejected_with_the_entry_named() {
        let base = |series: &str| {
            format!(r#"{{"about":"x","chan_sip_removed_in":"21","series":[{series}]}}"#)
        };
        for (body, needle) in [
            (
                r#"{"series":"11","chan_sip":"present","shapes":[{"from":"11.x","shape":"7"}]}"#,
                "not an Asterisk version",
            ),
            (
                r#"{"series":"11","chan_sip":"present","shapes":[{"from":"12.0.0","shape":"7"}]}"#,
                "belongs to series 12",
            ),
            (
                r#"{"series":"11","chan_sip":"present","shapes":[{"from":"11.0.0","shape":"9"}]}"#,
                "unknown shape",
            ),
            (
                r#"{"series":"11","chan_sip":"present","shapes":[{"from":"11.3.0","shape":"7"},{"from":"11.2.0","shape":"6"}]}"#,
                "must ascend",
            ),
            (
                r#"{"series":"21","chan_sip":"absent","shapes":[{"from":"21.0.0","shape":"8"}]}"#,
                "absent but shapes",
            ),
            (
                r#"{"series":"11","chan_sip":"maybe","shapes":[]}"#,
                "unknown variant",
            ),
            (
                r#"{"series":"11","chan_sip":"present","shapes":[],"typo":1}"#,
                "unknown field",
            ),
        ] {
            let err = Table::parse(&base(body)).unwrap_err();
            assert!(err.contains(needle), "{body}: {err}");
        }
        let twice = base(
            r#"{"series":"11","chan_sip":"present","shapes":[]},{"series":"11","chan_sip":"present","shapes":[]}"#,
        );
        assert!(Table::parse(&twice).unwrap_err().contains("twice"));
    }
}
