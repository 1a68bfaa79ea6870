//! Asterisk's `logger.conf`: which files get which levels, and the date format in front of
//! every line. `verify` uses it to prove the failure lines reach a file the watcher reads.
//!
//! ```text
//! [general]
//! dateformat = %F %T.%3q        ; strftime, plus Asterisk's %q (fractions of a second)
//! appendhostname = yes          ; file names get ".<hostname>"
//! [logfiles]
//! console => notice,warning,error
//! messages => notice,warning,error
//! security => security
//! /var/log/asterisk/full.log => [plain]notice,verbose(3),dtmf   ; 13+: formatter, verbosity
//! syslog.local0 => notice       ; not a file
//! ```
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// As written: a file name (relative to astlogdir, or absolute), `console`, or `syslog.*`.
    pub name: String,
    /// Lower-case level names; `verbose(3)` becomes `verbose`; `*` means every level.
    pub levels: Vec<String>,
    pub line: usize,
}

impl Channel {
    pub fn is_file(&self) -> bool {
        !(self.name == "console" || self.name.starts_with("syslog"))
    }

    pub fn has(&self, level: &str) -> bool {
        self.levels.iter().any(|l| l == level || l == "*")
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoggerConf {
    pub dateformat: Option<String>,
    pub appendhostname: bool,
    pub channels: Vec<Channel>,
}

pub fn parse(text: &str) -> LoggerConf {
    let mut conf = LoggerConf::default();
    let mut section = String::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split(';').next().unwrap_or("").trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            section = rest
                .split(']')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            continue;
        }
        let Some((key, value)) = line.split_once("=>").or_else(|| line.split_once('=')) else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        match section.as_str() {
            "general" => match key.to_ascii_lowercase().as_str() {
                "dateformat" => conf.dateformat = Some(value.to_owned()).filter(|v| !v.is_empty()),
                "appendhostname" => conf.appendhostname = is_true(value),
                _ => {}
            },
            "logfiles" => {
                // 13 and later allow a formatter first: `[plain]notice,warning`.
                let levels = match value.strip_prefix('[') {
                    Some(rest) => rest.split_once(']').map_or("", |(_, l)| l),
                    None => value,
                };
                conf.channels.push(Channel {
                    name: key.to_owned(),
                    levels: levels
                        .split(',')
                        .map(|l| {
                            let l = l.trim().to_ascii_lowercase();
                            l.split('(').next().unwrap_or("").trim().to_owned()
                        })
                        .filter(|l| !l.is_empty())
                        .collect(),
                    line: i + 1,
                });
            }
            _ => {}
        }
    }
    conf
}

fn is_true(v: &str) -> bool {
    matches!(
        v.to_ascii_lowercase().as_str(),
        "yes" | "true" | "y" | "t" | "1" | "on"
    )
}

/// The file a channel writes: relative names live in `logdir`; `appendhostname` adds
/// `.<hostname>`.
pub fn file_path(c: &Channel, logdir: &Path, appendhostname: Option<&str>) -> PathBuf {
    let mut name = c.name.clone();
    if let Some(host) = appendhostname {
        name = format!("{name}.{host}");
    }
    if name.starts_with('/') {
        PathBuf::from(name)
    } else {
        logdir.join(name)
    }
}

/// Render `dateformat` the way Asterisk does for a fixed moment (2026-11-24 10:11:12.345
/// local): strftime, after Asterisk's own `%q`/`%<n>q` (fraction digits) is expanded.
pub fn render_dateformat(format: &str) -> Option<String> {
    let mut expanded = String::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            expanded.push(c);
            continue;
        }
        let mut digits = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        match chars.next() {
            Some('q') => {
                let n: usize = digits.parse().unwrap_or(6).clamp(1, 6);
                expanded.push_str(&"345000"[..n]);
            }
            Some(other) => {
                expanded.push('%');
                expanded.push_str(&digits);
                expanded.push(other);
            }
            None => expanded.push('%'),
        }
    }
    let fmt = std::ffi::CString::new(expanded).ok()?;
    // SAFETY: tm is fully initialised; strftime writes at most buf.len() bytes.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        tm.tm_year = 2026 - 1900;
        tm.tm_mon = 10;
        tm.tm_mday = 24;
        tm.tm_hour = 10;
        tm.tm_min = 11;
        tm.tm_sec = 12;
        tm.tm_wday = 2;
        tm.tm_yday = 327;
        let mut buf = [0u8; 256];
        let n = libc::strftime(buf.as_mut_ptr().cast(), buf.len(), fmt.as_ptr(), &tm);
        (n > 0).then(|| String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

/// True when the watcher can read the date a `dateformat` produces (the whole of it).
pub fn watcher_reads_dateformat(format: &str) -> bool {
    let Some(rendered) = render_dateformat(format) else {
        return false;
    };
    let tc = crate::logs::frame::TimeContext::utc(1_795_000_000);
    crate::logs::frame::parse_date(rendered.as_bytes(), &tc)
        .is_some_and(|(_, used)| used == rendered.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_levels_and_general_options() {
        let c = parse(
            "[general]\ndateformat=%F %T.%3q ; precise\nappendhostname = yes\n[logfiles]\nconsole => notice,warning\nmessages => notice,warning,error\nsecurity=>security\n/var/log/asterisk/full.log => [plain]notice,verbose(3),dtmf\nsyslog.local0 => notice\n;commented => notice\n",
        );
        assert_eq!(c.dateformat.as_deref(), Some("%F %T.%3q"));
        assert!(c.appendhostname);
        let names: Vec<&str> = c.channels.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "console",
                "messages",
                "security",
                "/var/log/asterisk/full.log",
                "syslog.local0"
            ]
        );
        let full = &c.channels[3];
        assert_eq!(full.levels, ["notice", "verbose", "dtmf"]);
        assert!(full.is_file() && !c.channels[0].is_file() && !c.channels[4].is_file());
        assert!(c.channels[2].has("security") && !c.channels[2].has("notice"));
        assert_eq!(
            file_path(&c.channels[1], Path::new("/var/log/asterisk"), Some("pbx")),
            Path::new("/var/log/asterisk/messages.pbx")
        );
        assert_eq!(
            file_path(full, Path::new("/x"), None),
            Path::new("/var/log/asterisk/full.log")
        );
        assert!(
            Channel {
                name: "m".into(),
                levels: vec!["*".into()],
                line: 1
            }
            .has("notice")
        );
    }

    #[test]
    fn dateformats_the_watcher_reads_and_one_it_does_not() {
        assert_eq!(
            render_dateformat("%F %T.%3q").unwrap(),
            "2026-11-24 10:11:12.345"
        );
        assert_eq!(render_dateformat("%b %e %T").unwrap(), "Nov 24 10:11:12");
        for ok in ["%b %e %T", "%F %T", "%F %T.%3q", "%Y-%m-%dT%H:%M:%S"] {
            assert!(watcher_reads_dateformat(ok), "{ok}");
        }
        for bad in ["%s", "%d/%m/%Y %H:%M", "%c"] {
            assert!(!watcher_reads_dateformat(bad), "{bad}");
        }
    }
}
