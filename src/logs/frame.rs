//! The frame Asterisk (and syslog) put in front of every log message, from 1.2 to 22:
//!
//! ```text
//! [Nov 24 10:11:12] NOTICE[1234] chan_sip.c: MSG                     file channel, 1.4 - 22
//! [2026-11-24 10:11:12.345] NOTICE[1234][C-0000002a] chan_sip.c: MSG   dateformat=%F %T.%3q, 11+
//! [Nov 24 10:11:12] NOTICE[1234]: chan_sip.c:15459 handle_request_invite: MSG   console/plain
//! Nov 24 10:11:12 NOTICE[1234] chan_sip.c: MSG                          1.2 without timestamp
//! [Nov 24 10:11:12] NOTICE[1234]: MSG                                    1.2 with timestamp
//! Nov 24 10:11:12 pbx asterisk[99]: NOTICE[1234]: chan_sip.c:15459 in handle_request_invite: MSG
//! 2026-11-24T10:11:12+0000 pbx asterisk[99]: NOTICE[1234][C-0000002a]: ...   journalctl -o short-iso
//! ```
//!
//! Everything in the frame is written by Asterisk or syslog, never by a remote party, so the
//! message starts at a position no attacker can move. Times without a year are placed in the
//! year of the reading clock (or the year before, when that would put them more than a day in
//! the future, as happens when January reads December's log); times without a zone are local
//! time in the host zone (`TZ`, else /etc/localtime, else UTC) at the offset in force on that
//! date, so a log spanning a daylight-saving change reads right. Tests pin both.
use memchr::memchr;

/// Where the message starts and when the line was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub msg_start: usize,
    /// Byte range of the source file Asterisk names in the frame (`chan_sip.c`,
    /// `res_pjsip/pjsip_distributor.c`), when the frame names one.
    pub file: Option<(usize, usize)>,
    /// Unix seconds, when the frame carries a date astpatch can read.
    pub time: Option<i64>,
    /// Byte range of the level name (`NOTICE`, `VERBOSE`, `SECURITY`).
    pub level: (usize, usize),
    /// Byte range of the program name a syslog or journald header names (`asterisk` in
    /// `pbx asterisk[99]:`), when the line has such a header.
    pub ident: Option<(usize, usize)>,
}

/// What a frame's date is interpreted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeContext {
    /// "Now", unix seconds: supplies the year for dates without one.
    pub now: i64,
    /// Seconds east of UTC for dates without a zone.
    pub utc_offset: i64,
    /// Ask the host zone for the offset in force at each date instead (daylight saving time
    /// changes between a log's lines); `utc_offset` is then only the first guess.
    pub local_zone: bool,
}

impl TimeContext {
    /// The host clock and zone (`TZ`, else /etc/localtime; UTC when neither says otherwise).
    pub fn system() -> Self {
        let now = now();
        TimeContext {
            now,
            utc_offset: local_offset(now),
            local_zone: true,
        }
    }

    pub fn utc(now: i64) -> Self {
        TimeContext {
            now,
            utc_offset: 0,
            local_zone: false,
        }
    }

    /// Seconds east of UTC for a zoneless local date (`local` = its civil time read as UTC).
    fn offset_at(&self, local: i64) -> i64 {
        if !self.local_zone {
            return self.utc_offset;
        }
        thread_local! {
            // The last local hour asked about and its offset: log lines come in time order.
            static CACHE: std::cell::Cell<(i64, i64)> = const { std::cell::Cell::new((i64::MIN, 0)) };
        }
        let hour = local.div_euclid(3600);
        CACHE.with(|c| {
            let (h, off) = c.get();
            if h == hour {
                return off;
            }
            let off = local_offset(local - self.utc_offset);
            c.set((hour, off));
            off
        })
    }
}

/// Unix seconds now, from the system clock.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn local_offset(now: i64) -> i64 {
    // SAFETY: localtime_r only writes into the tm we hand it.
    unsafe {
        let t: libc::time_t = now as libc::time_t;
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            0
        } else {
            tm.tm_gmtoff as i64
        }
    }
}

/// Parse the frame at the start of `line`. `None` when the line does not start with a frame
/// astpatch knows (it is then not treated as an Asterisk message at all).
pub fn parse(line: &[u8], tc: &TimeContext) -> Option<Frame> {
    let mut pos = 0;
    let mut time = None;
    let mut ident = None;
    if line.first() == Some(&b'[') {
        // Asterisk's own date, in brackets.
        let close = memchr(b']', &line[..line.len().min(64)])?;
        time = parse_date(&line[1..close], tc).map(|(t, _)| t);
        pos = close + 1;
        pos = skip_byte(line, pos, b' ')?;
    } else if let Some((t, used)) = parse_date(line, tc) {
        time = Some(t);
        pos = skip_byte(line, used, b' ')?;
        if level_at(line, pos).is_none() {
            // A syslog header: HOST IDENT[PID]: then Asterisk's syslog frame (no date of its own).
            pos = skip_token(line, pos)?;
            pos = skip_byte(line, pos, b' ')?;
            let ident_end = skip_token(line, pos)?;
            if line[ident_end - 1] != b':' {
                return None;
            }
            // `asterisk[99]:` or `asterisk:`: the name without pid and colon.
            let tok = &line[pos..ident_end - 1];
            let name_end = memchr(b'[', tok).unwrap_or(tok.len());
            ident = Some((pos, pos + name_end));
            pos = skip_byte(line, ident_end, b' ')?;
            // journald relays of the file channel's format keep Asterisk's own date.
            if line.get(pos) == Some(&b'[') {
                if let Some(close) = memchr(b']', &line[pos..line.len().min(pos + 64)]) {
                    if let Some((t, _)) = parse_date(&line[pos + 1..pos + close], tc) {
                        time = Some(t);
                        pos = skip_byte(line, pos + close + 1, b' ')?;
                    }
                }
            }
        }
    }
    let level_start = pos;
    pos = level_at(line, pos)?;
    let level_end = level_start
        + line[level_start..]
            .iter()
            .take_while(|c| c.is_ascii_uppercase())
            .count();
    let (msg_start, file) = match line.get(pos) {
        // Dialplan Log(): the file channel prints "Ext. EXTEN: MSG" where a module prints its
        // file. EXTEN is the caller's; the frame ends at the first ": " after it (only the
        // opt-in dialplan rule reads such lines, from their end).
        Some(b' ') if line[pos + 1..].starts_with(b"Ext. ") => {
            let colon = memchr::memmem::find(&line[pos + 6..], b": ")? + pos + 6;
            (colon + 2, Some((pos + 1, pos + 5)))
        }
        // File channel: " FILE: MSG".
        Some(b' ') => {
            let file_end = skip_token(line, pos + 1)?;
            if line[file_end - 1] != b':' {
                return None;
            }
            (
                skip_byte(line, file_end, b' ')?,
                Some((pos + 1, file_end - 1)),
            )
        }
        // Console, plain or syslog: ": [FILE:LINE [in ]FUNC: ]MSG".
        Some(b':') => {
            let pos = skip_byte(line, pos + 1, b' ')?;
            match source_location(line, pos) {
                Some((msg, file_end)) => (msg, Some((pos, file_end))),
                None => (pos, None),
            }
        }
        _ => return None,
    };
    Some(Frame {
        msg_start,
        file,
        time,
        level: (level_start, level_end),
        ident,
    })
}

fn skip_byte(line: &[u8], pos: usize, b: u8) -> Option<usize> {
    (line.get(pos) == Some(&b)).then_some(pos + 1)
}

/// End of a run of non-space bytes starting at `pos` (which must not be empty).
fn skip_token(line: &[u8], pos: usize) -> Option<usize> {
    let len = line
        .get(pos..)?
        .iter()
        .position(|&c| c == b' ')
        .unwrap_or(line.len() - pos);
    (len > 0).then_some(pos + len)
}

/// `LEVEL[TID]` optionally followed by `[C-xxxxxxxx]`; returns the position after it.
fn level_at(line: &[u8], pos: usize) -> Option<usize> {
    let rest = line.get(pos..)?;
    let mut n = rest.iter().take_while(|c| c.is_ascii_uppercase()).count();
    if n == 0 {
        return None;
    }
    // `NOTICE [1234]`: some builds and relays put a space before the thread id.
    if rest.get(n) == Some(&b' ') && rest.get(n + 1) == Some(&b'[') {
        n += 1;
    }
    if rest.get(n) != Some(&b'[') {
        return None;
    }
    let digits = rest[n + 1..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    if digits == 0 || rest.get(n + 1 + digits) != Some(&b']') {
        return None;
    }
    let mut end = pos + n + digits + 2;
    if line[end..].starts_with(b"[C-") {
        let hex = line[end + 3..]
            .iter()
            .take_while(|c| c.is_ascii_hexdigit())
            .count();
        if hex > 0 && line.get(end + 3 + hex) == Some(&b']') {
            end += 3 + hex + 1;
        }
    }
    Some(end)
}

/// `chan_sip.c:15459 handle_request_invite: ` or `chan_sip.c:15459 in handle_request_invite: `;
/// returns where the message starts and where the file name ends.
fn source_location(line: &[u8], pos: usize) -> Option<(usize, usize)> {
    let file_end = skip_token(line, pos)?;
    let tok = &line[pos..file_end];
    let colon = memchr::memrchr(b':', tok)?;
    if colon == 0
        || !tok[..colon].ends_with(b".c")
        || colon + 1 == tok.len()
        || !tok[colon + 1..].iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    let mut p = skip_byte(line, file_end, b' ')?;
    if line[p..].starts_with(b"in ") {
        p += 3;
    }
    let func_end = skip_token(line, p)?;
    (line[func_end - 1] == b':').then_some(())?;
    Some((skip_byte(line, func_end, b' ')?, pos + colon))
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// A date at the start of `s`: `Nov 24 10:11:12`, `Nov  4 10:11:12`, `2026-11-24 10:11:12`,
/// `2026-11-24T10:11:12`, each with optional `.fraction` and (ISO forms) optional zone.
/// Returns unix seconds and the bytes used.
pub fn parse_date(s: &[u8], tc: &TimeContext) -> Option<(i64, usize)> {
    if s.len() >= 15 && s[0].is_ascii_uppercase() {
        let month = MONTHS.iter().position(|m| &s[..3] == *m)? as u32 + 1;
        if s[3] != b' ' {
            return None;
        }
        // `Nov 24`, `Nov  4` (syslog pads), `Nov 4` (some relays and fail2ban's samples don't).
        let (day, at) = match (s[4], s[5], s[6]) {
            (b' ', d, b' ') if d.is_ascii_digit() => ((d - b'0') as u32, 7),
            (a, b, b' ') if a.is_ascii_digit() && b.is_ascii_digit() => {
                (((a - b'0') * 10 + (b - b'0')) as u32, 7)
            }
            (d, b' ', _) if d.is_ascii_digit() => ((d - b'0') as u32, 6),
            _ => return None,
        };
        let (secs, used) = hms(&s[at..])?;
        let used = at + used + fraction(&s[at + used..]);
        let local_now = tc.now + tc.utc_offset;
        let year = civil_from_days(local_now.div_euclid(86_400)).0;
        let local = to_unix(year, month, day, secs)?;
        let mut t = local - tc.offset_at(local);
        if t > tc.now + 86_400 {
            let local = to_unix(year - 1, month, day, secs)?;
            t = local - tc.offset_at(local);
        }
        return Some((t, used));
    }
    if s.len() >= 19 && s[4] == b'-' && s[7] == b'-' && (s[10] == b' ' || s[10] == b'T') {
        let year = num(&s[0..4])? as i64;
        let month = num(&s[5..7])?;
        let day = num(&s[8..10])?;
        let (secs, used) = hms(&s[11..])?;
        let mut used = 11 + used;
        used += fraction(&s[used..]);
        let local = to_unix(year, month, day, secs)?;
        let mut offset = None;
        if s[10] == b'T' {
            if let Some((off, n)) = zone(&s[used..]) {
                offset = Some(off);
                used += n;
            }
        }
        let offset = offset.unwrap_or_else(|| tc.offset_at(local));
        return Some((local - offset, used));
    }
    None
}

/// `2026-11-24 10:11:12` (UTC), for reports.
pub fn format_utc(t: i64) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(86_400));
    let s = t.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

fn num(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0, |a, &c| a * 10 + (c - b'0') as u32))
}

/// `HH:MM:SS` → seconds into the day, bytes used.
fn hms(s: &[u8]) -> Option<(u32, usize)> {
    if s.len() < 8 || s[2] != b':' || s[5] != b':' {
        return None;
    }
    let (h, m, sec) = (num(&s[0..2])?, num(&s[3..5])?, num(&s[6..8])?);
    (h < 24 && m < 60 && sec < 61).then_some((h * 3600 + m * 60 + sec, 8))
}

fn fraction(s: &[u8]) -> usize {
    if s.first() == Some(&b'.') {
        let n = s[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n > 0 {
            return n + 1;
        }
    }
    0
}

/// `Z`, `+0100`, `+01:00`, `-05` → seconds east, bytes used.
fn zone(s: &[u8]) -> Option<(i64, usize)> {
    match s.first()? {
        b'Z' => Some((0, 1)),
        &c @ (b'+' | b'-') => {
            let sign = if c == b'-' { -1 } else { 1 };
            let h = num(s.get(1..3)?)? as i64;
            let (m, used) = match s.get(3) {
                Some(b':') => (num(s.get(4..6)?)? as i64, 6),
                Some(d) if d.is_ascii_digit() => (num(s.get(3..5)?)? as i64, 5),
                _ => (0, 3),
            };
            Some((sign * (h * 3600 + m * 60), used))
        }
        _ => None,
    }
}

fn to_unix(year: i64, month: u32, day: u32, secs: u32) -> Option<i64> {
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + secs as i64)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-30 00:00:00 UTC.
    const NOW: i64 = 1_795_996_800;
    /// 2026-11-24 10:11:12 UTC.
    const T: i64 = 1_795_515_072;

    fn tc() -> TimeContext {
        TimeContext::utc(NOW)
    }

    fn frame(line: &str) -> (Option<i64>, String) {
        let f = parse(line.as_bytes(), &tc()).unwrap_or_else(|| panic!("no frame: {line}"));
        if let Some((a, b)) = f.file {
            assert!(line[a..b].ends_with(".c"), "{line}: file {}", &line[a..b]);
        }
        (f.time, line[f.msg_start..].to_owned())
    }

    #[test]
    fn the_reference_instant_is_right() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(to_unix(2026, 11, 24, 10 * 3600 + 11 * 60 + 12), Some(T));
        assert_eq!(civil_from_days(T / 86_400), (2026, 11, 24));
        assert_eq!(format_utc(T), "2026-11-24 10:11:12");
    }

    #[test]
    fn file_channel_frames_of_every_era() {
        for line in [
            "[Nov 24 10:11:12] NOTICE[1234] chan_sip.c: MSG x",
            "[2026-11-24 10:11:12] NOTICE[1234] chan_sip.c: MSG x",
            "[2026-11-24 10:11:12.345] NOTICE[1234][C-0000002a] chan_sip.c: MSG x",
            "[2026-11-24T10:11:12.345+0000] SECURITY[1234] res_security_log.c: MSG x",
            "[Nov 24 10:11:12] NOTICE[1234]: chan_sip.c:15459 handle_request_invite: MSG x",
            "[Nov 24 10:11:12] NOTICE[1234][C-0000002a]: chan_sip.c:15459 in handle_request_invite: MSG x",
            "[Nov 24 10:11:12] NOTICE[1234]: MSG x",
            "Nov 24 10:11:12 NOTICE[1234] chan_sip.c: MSG x",
            "[2026-11-24 10:11:12] NOTICE[1234] res_pjsip/pjsip_distributor.c: MSG x",
            "[2026-11-24 10:11:12] NOTICE [1234] manager.c: MSG x",
            "[Nov 24 10:11:12] WARNING [1234][C-0000002a]: chan_iax2.c:11373 socket_process_helper: MSG x",
        ] {
            assert_eq!(frame(line), (Some(T), "MSG x".into()), "{line}");
        }
    }

    #[test]
    fn syslog_and_journald_frames() {
        for line in [
            "Nov 24 10:11:12 pbx asterisk[99]: NOTICE[1234]: chan_sip.c:15459 in handle_request_invite: MSG x",
            "Nov 24 10:11:12 pbx asterisk[99]: NOTICE[1234][C-0000002a]: chan_sip.c:1 in f: MSG x",
            "2026-11-24T10:11:12+0000 pbx asterisk[99]: NOTICE[1234]: chan_sip.c:1 in f: MSG x",
            "2026-11-24T11:11:12+01:00 pbx asterisk[99]: NOTICE[1234]: chan_sip.c:1 in f: MSG x",
            "2026-11-24T10:11:12.123456Z pbx asterisk: NOTICE[1234]: manager.c:3753 in authenticate: MSG x",
            "Nov 24 10:11:12.123456 pbx asterisk[99]: NOTICE[1234]: chan_sip.c:1 in f: MSG x",
            "2026-11-24T10:11:12+0000 pbx asterisk[99]: [Nov 24 10:11:12] NOTICE[566]: chan_sip.c:1 f: MSG x",
        ] {
            assert_eq!(frame(line), (Some(T), "MSG x".into()), "{line}");
        }
    }

    #[test]
    fn level_and_syslog_ident_are_located() {
        let l = "Nov 24 10:11:12 pbx asterisk[99]: NOTICE[1234]: chan_sip.c:1 in f: MSG x";
        let f = parse(l.as_bytes(), &tc()).unwrap();
        assert_eq!(&l[f.level.0..f.level.1], "NOTICE");
        let (a, b) = f.ident.unwrap();
        assert_eq!(&l[a..b], "asterisk");
        let l = "2026-11-24T10:11:12Z pbx mallory: VERBOSE[1]: x";
        let f = parse(l.as_bytes(), &tc()).unwrap();
        assert_eq!(&l[f.ident.unwrap().0..f.ident.unwrap().1], "mallory");
        assert_eq!(&l[f.level.0..f.level.1], "VERBOSE");
        let l = "[Nov 24 10:11:12] SECURITY[1][C-0000002a] res_security_log.c: m";
        let f = parse(l.as_bytes(), &tc()).unwrap();
        assert_eq!((&l[f.level.0..f.level.1], f.ident), ("SECURITY", None));
    }

    #[test]
    fn single_digit_days_are_space_padded() {
        let (t, _) = frame("[Nov  4 10:11:12] NOTICE[1] chan_sip.c: m");
        assert_eq!(t, Some(T - 20 * 86_400));
        for l in [
            "Nov 4 10:11:12 pbx asterisk[9]: NOTICE[1]: chan_sip.c:1 in f: m",
            "Nov  4 10:11:12 pbx asterisk[9]: NOTICE[1]: chan_sip.c:1 in f: m",
        ] {
            assert_eq!(frame(l), (Some(T - 20 * 86_400), "m".into()), "{l}");
        }
    }

    #[test]
    fn dialplan_log_frames_end_at_the_first_colon_after_the_extension() {
        let l = "[2013-11-11 14:33:38] WARNING[6756][C-0000001d] Ext. s: \"Rejecting x\"";
        let f = parse(l.as_bytes(), &tc()).unwrap();
        assert_eq!(&l[f.msg_start..], "\"Rejecting x\"");
        assert_eq!(f.file.map(|(a, b)| &l[a..b]), Some("Ext."));
    }

    #[test]
    fn yearless_dates_in_the_future_belong_to_last_year() {
        let (t, _) = frame("[Dec 31 23:59:59] NOTICE[1] chan_sip.c: m");
        assert_eq!(civil_from_days(t.unwrap() / 86_400), (2025, 12, 31));
    }

    #[test]
    fn local_offset_applies_only_to_zoneless_dates() {
        let tc = TimeContext {
            now: NOW,
            utc_offset: 3600,
            local_zone: false,
        };
        let f = parse(b"[2026-11-24 11:11:12] NOTICE[1] chan_sip.c: m", &tc).unwrap();
        assert_eq!(f.time, Some(T));
        let f = parse(b"[2026-11-24T10:11:12Z] NOTICE[1] chan_sip.c: m", &tc).unwrap();
        assert_eq!(f.time, Some(T));
    }

    #[test]
    fn unknown_date_formats_still_frame_without_a_time() {
        let f = parse(b"[24/11/2026 10h11] NOTICE[1] chan_sip.c: m", &tc()).unwrap();
        assert_eq!(f.time, None);
    }

    #[test]
    fn not_frames() {
        for line in [
            "",
            "Registration from 'x' failed for '1.2.3.4' - Wrong password",
            "[Nov 24 10:11:12]",
            "[Nov 24 10:11:12] NOTICE chan_sip.c: m",
            "[Nov 24 10:11:12] NOTICE[] chan_sip.c: m",
            "[Nov 24 10:11:12] notice[1] chan_sip.c: m",
            "-- Executing [100@default:1] Dial(\"SIP/x\")",
            "Nov 24 10:11:12 pbx kernel: [1.234] something",
        ] {
            assert!(parse(line.as_bytes(), &tc()).is_none(), "{line}");
        }
    }
}
