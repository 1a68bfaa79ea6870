//! The watcher's counters in Prometheus' text format, for node_exporter's textfile collector:
//! written to a file (setting `metrics_file`), replaced atomically, never served on a socket.
use std::fmt::Write as _;

use crate::logs::recognise::Rule;

/// What the watcher has counted since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Failures with an address, per rule.
    pub failures: [u64; Rule::ALL.len()],
    /// Lines an attacker shaped to pass for Asterisk's own, per rule: attempts, never banned.
    pub forged: [u64; Rule::ALL.len()],
    /// Bans made, by origin (`log`: the watcher from log lines).
    pub bans: Vec<(&'static str, u64)>,
    pub active_bans: usize,
    pub lines_read: u64,
    /// Unix time of the last line read.
    pub last_line_at: Option<i64>,
    /// Each followed source and whether it can be read now.
    pub sources: Vec<(String, bool)>,
}

impl Metrics {
    pub fn ban(&mut self, origin: &'static str) {
        match self.bans.iter_mut().find(|(o, _)| *o == origin) {
            Some((_, n)) => *n += 1,
            None => self.bans.push((origin, 1)),
        }
    }

    /// The text-format exposition at `now` (unix seconds).
    pub fn render(&self, now: i64) -> String {
        let mut o = String::new();
        per_rule(
            &mut o,
            "astpatch_failures_total",
            "Failed logins with a trusted source address, per rule.",
            &self.failures,
        );
        per_rule(
            &mut o,
            "astpatch_forged_lines_total",
            "Lines an attacker shaped to pass for Asterisk's own (an unknown astpatch tag, a \
             line forged through a newline), per rule: never banned.",
            &self.forged,
        );
        head(
            &mut o,
            "astpatch_bans_total",
            "counter",
            "Bans made, by origin.",
        );
        let mut bans = self.bans.clone();
        if !bans.iter().any(|(o, _)| *o == "log") {
            bans.insert(0, ("log", 0));
        }
        for (origin, n) in bans {
            let _ = writeln!(o, "astpatch_bans_total{{origin=\"{origin}\"}} {n}");
        }
        head(
            &mut o,
            "astpatch_active_bans",
            "gauge",
            "Bans in force now.",
        );
        let _ = writeln!(o, "astpatch_active_bans {}", self.active_bans);
        head(
            &mut o,
            "astpatch_lines_read_total",
            "counter",
            "Log lines read.",
        );
        let _ = writeln!(o, "astpatch_lines_read_total {}", self.lines_read);
        head(
            &mut o,
            "astpatch_last_line_age_seconds",
            "gauge",
            "Seconds since the last log line was read (-1: none yet).",
        );
        let age = self
            .last_line_at
            .map_or(-1, |t| now.saturating_sub(t).max(0));
        let _ = writeln!(o, "astpatch_last_line_age_seconds {age}");
        head(
            &mut o,
            "astpatch_source_up",
            "gauge",
            "Whether a followed source can be read (1) or not (0).",
        );
        for (name, up) in &self.sources {
            let _ = writeln!(
                o,
                "astpatch_source_up{{kind=\"log\",source=\"{}\"}} {}",
                escape_label(name),
                u8::from(*up)
            );
        }
        o
    }
}

fn per_rule(o: &mut String, name: &str, help: &str, counts: &[u64; Rule::ALL.len()]) {
    head(o, name, "counter", help);
    for r in Rule::ALL {
        let _ = writeln!(o, "{name}{{rule=\"{r}\"}} {}", counts[r as usize]);
    }
}

fn head(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}");
    let _ = writeln!(o, "# TYPE {name} {kind}");
}

/// A label value as the text format wants it: backslash, quote and newline escaped.
fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_help_and_type() {
        let mut m = Metrics::default();
        m.failures[Rule::ChanSipAuth as usize] = 3;
        m.forged[Rule::ChanSipAuth as usize] = 2;
        m.ban("log");
        m.ban("log");
        m.active_bans = 1;
        m.lines_read = 10;
        m.last_line_at = Some(100);
        m.sources = vec![("/var/log/a \"b\"".into(), true), ("/x".into(), false)];
        let t = m.render(130);
        for want in [
            "astpatch_failures_total{rule=\"chan-sip-auth\"} 3",
            "astpatch_failures_total{rule=\"pjsip-auth\"} 0",
            "astpatch_forged_lines_total{rule=\"chan-sip-auth\"} 2",
            "astpatch_bans_total{origin=\"log\"} 2",
            "astpatch_active_bans 1",
            "astpatch_lines_read_total 10",
            "astpatch_last_line_age_seconds 30",
            "astpatch_source_up{kind=\"log\",source=\"/var/log/a \\\"b\\\"\"} 1",
            "astpatch_source_up{kind=\"log\",source=\"/x\"} 0",
            "# TYPE astpatch_failures_total counter",
            "# TYPE astpatch_active_bans gauge",
        ] {
            assert!(t.contains(want), "{want} missing:\n{t}");
        }
        assert!(
            Metrics::default()
                .render(5)
                .contains("astpatch_last_line_age_seconds -1")
        );
    }
}
