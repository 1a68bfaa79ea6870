//! Line provenance: which physical lines of one log file Asterisk can only have written whole.
//! One [`Provenance`] per log file, fed every line in file order (scan's block reader and the
//! watcher's per-file line path both go through it, so one policy serves every reader).
//!
//! The recogniser judges one line at a time. That is not enough, because Asterisk logs some
//! fields raw, newlines included:
//!
//! * **Unfinished messages.** chan_sip URL-decodes the dialled extension before it logs
//!   `Call from '%s' (%s) to extension '%s' rejected because extension not found in context
//!   '%s'.`, so `%0A` in the request URI ends the physical line early and the attacker's text
//!   after it is a whole line of its choosing, frame included. The same holds for IAX2 peer
//!   names and MD5 results (raw IEs), AMI user names given to the HTTP manager (URL-decoded),
//!   PJSIP's `Call from` and AMI security events. A line that starts such a format but lacks
//!   the ending Asterisk writes after the attacker's field opens an *unfinished* message:
//!   it and every line after it up to the one that carries that ending are forged — neither
//!   half is blamed on anyone. Forged lines inside may end that way too, and a long message is
//!   cut before Asterisk's ending, so where it ends cannot be told: every line within one
//!   message's length ([`WINDOW`]) of its start is taken as part of it. A genuine failure right
//!   after an attack may be taken with it (never blamed, counted as forged); never the other
//!   way round. (The first half names the real sender, but the sender made it
//!   too: counting it would let them spend their failures on an address of their choice.)
//! * **Complete-looking first halves.** The attacker can end the first physical line with the
//!   format's own ending (`…extension '1' rejected because extension not found in context
//!   'public'.` then a newline), so nothing looks unfinished. The message's real ending then
//!   arrives later as a line without any frame. So every line that starts such a format opens a
//!   window of one message's length ([`WINDOW`] bytes): the failures read in it are held, and a
//!   frameless line ending as the format ends marks everything since the window's first start
//!   forged. A window that passes without one releases what it held, in order; the watcher
//!   releases after [`HOLD_SECS`] too (one message arrives in one write, so its fragments come
//!   together).
//! * **Truncated and glued lines.** The file channel writes at most 8191 bytes of one message
//!   (frame included from 16 on: `LOGMSG_SIZE` = max(BUFSIZ, 8192); the message alone on 1.8 -
//!   15: `BUFSIZ`) and loses the newline of a message it cuts, so the next entry is glued onto
//!   the cut one. An attacker who fills a header pushes Asterisk's own tail out of the line,
//!   and the address left at the end is a forged one or the next, innocent entry's. A line of
//!   [`TRUNCATED_AT`] bytes or more is *truncated*, or *glued* when a second frame shows the
//!   next entry; neither is believed — unless it ends in the tag of a known patched build,
//!   which only that build's chan_sip writes. A second frame in a shorter line was written into
//!   a field (`%0D` before it, or plain text): *forged*.
//!
//! * **Whole-looking first halves with whole forged lines after them.** The attacker can also
//!   end the first line as Asterisk ends the format *and* put a whole forged line, frame
//!   included, last: Asterisk's real ending then closes that forged line, and no line shows the
//!   cut. What the file still shows is that the message's last physical line ends as the
//!   format ends. So a believed whole line of such a format casts a *shadow* one message long:
//!   a failure in it waits, and is *unproven* (never blamed) when a later line in the shadow
//!   ends as the shadow's format ends, believed when none does. A tagged chan_sip failure
//!   proves itself and never waits. Only believed lines cast a shadow, and a shadowed line casts
//!   none, so a sender cannot hide others for free: each shadow costs it a counted failure —
//!   except where the address follows the sender's field (IAX2's `No registration for peer
//!   'x' (from ADDR)`): there the whole first line may be the sender's, so it waits in its own
//!   shadow (seen on real 11.23.1 and 20.20.1). IAX2's `Host ADDR failed to authenticate as
//!   USER` has no ending at all; its user name is bounded instead (see the user-field rule). The
//!   price: two failures of such formats close together (a dial scan's `Call from` lines) count
//!   once per message length; the tag (for chan_sip's failures) and AMI's events (issue 13)
//!   are the way around it.
//!
//! Formats whose attacker field cannot hold a newline (PJSIP's headers, chan_sip's raw From/To
//! headers, AMI over TCP) need none of this.
use std::collections::VecDeque;
use std::sync::LazyLock;

use memchr::memmem;
use serde::{Deserialize, Serialize};

use std::net::IpAddr;

use crate::logs::frame::Frame;
use crate::logs::recognise::{Port, Recogniser, Recognition, Rule, parse_addr};

/// A physical line this long or longer was cut by Asterisk's logger (8191 bytes: LOGMSG_SIZE
/// or BUFSIZ, less the terminating NUL, on glibc).
pub const TRUNCATED_AT: usize = 8191;

/// The most bytes one Asterisk message spans: [`TRUNCATED_AT`] of message plus the frame
/// (1.8 - 15 cut the message alone).
pub const WINDOW: u64 = TRUNCATED_AT as u64 + 256;

/// The longest user name chan_iax2 can log in `Host %s failed to authenticate as %s`: an
/// information element's length is one byte.
pub const IAX2_USERNAME_MAX: u64 = 255;

/// Seconds a live reader holds a window's failures before it releases them.
pub const HOLD_SECS: i64 = 2;

/// Lines not believed, per log file. Each line counts once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Written by a remote party to pass for Asterisk's (inside an unfinished message, in a
    /// window a fragment closed, a frame inside a short line, a tag no build has, a foreign
    /// program or level).
    pub forged: u64,
    /// Holding a second frame: a cut message with the next entry glued on.
    pub glued: u64,
    /// At the logger's truncation length.
    pub truncated: u64,
    /// Failures read within one message's length after a whole line of a format whose last
    /// field the sender writes raw: that sender could have written them (see the module
    /// documentation). Not blamed on anyone.
    #[serde(default)]
    pub unproven: u64,
}

impl Counts {
    pub fn total(&self) -> u64 {
        self.forged + self.glued + self.truncated + self.unproven
    }

    pub fn add(&mut self, o: &Counts) {
        self.forged += o.forged;
        self.glued += o.glued;
        self.truncated += o.truncated;
        self.unproven += o.unproven;
    }
}

/// Formats with a field a remote party writes raw (newlines included), followed by an ending
/// Asterisk writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fmt {
    /// chan_sip `Call from '…' (ADDR) to extension 'EXTEN' rejected because … context 'CTX'.`
    SipCall,
    /// res_pjsip_session `Call from '…' (…) to extension '…' rejected …` (13 - 16) and
    /// `NAME: Call (…) to extension '…' rejected …` (18+).
    PjsipCall,
    /// chan_iax2 `No registration for peer 'PEER' (from ADDR)`.
    Iax2NoPeer,
    /// chan_iax2 `Host ADDR failed MD5 authentication for 'PEER' (OURS != THEIRS)`.
    Iax2Md5,
    /// chan_iax2 `Rejected connect|dial attempt from ADDR, request 'EXTEN@CTX' does not exist`,
    /// `…, who was trying to reach 'EXTEN@CTX'` (both raw IEs).
    Iax2Rejected,
    /// manager `ADDR failed to authenticate as 'USER'` and its kin.
    Ami,
    /// res_security_log `SecurityEvent="…",…,AccountID="…",…,RemoteAddress="…"…`.
    SecEvent,
}

const FMTS: [Fmt; 7] = [
    Fmt::SipCall,
    Fmt::PjsipCall,
    Fmt::Iax2NoPeer,
    Fmt::Iax2Md5,
    Fmt::Iax2Rejected,
    Fmt::Ami,
    Fmt::SecEvent,
];

impl Fmt {
    fn bit(self) -> u8 {
        1 << self as u8
    }

    /// Whether a whole line of this format opens a window for a later fragment: only where a
    /// default configuration lets the sender write a newline (the extension, IAX2 elements).
    /// AMI's user names hold one only through the HTTP manager, which is off by default; there
    /// an unfinished line is still caught, a complete-looking first half is not (see above).
    fn retro(self) -> bool {
        matches!(
            self,
            Fmt::SipCall | Fmt::PjsipCall | Fmt::Iax2NoPeer | Fmt::Iax2Md5 | Fmt::Iax2Rejected
        )
    }

    /// Whether the address Asterisk writes comes after the sender's raw field: then a whole
    /// line of this format can be the sender's text from end to end (`peer 'x' (from
    /// 192.0.2.1)` and a newline), and the line itself waits in its own shadow.
    fn addr_after_raw(self) -> bool {
        self == Fmt::Iax2NoPeer
    }

    fn rule(self) -> Option<Rule> {
        match self {
            Fmt::SipCall => Some(Rule::ChanSipNoExtension),
            Fmt::PjsipCall => Some(Rule::PjsipNoExtension),
            Fmt::Iax2NoPeer => Some(Rule::Iax2NoPeer),
            Fmt::Iax2Md5 => Some(Rule::Iax2Auth),
            Fmt::Iax2Rejected => Some(Rule::Iax2Rejected),
            Fmt::Ami => Some(Rule::AmiAuth),
            Fmt::SecEvent => Some(Rule::SecurityEvent),
        }
    }

    /// Whether `l` ends as Asterisk ends this format's message (after the last attacker field).
    fn ends(self, l: &[u8]) -> bool {
        match self {
            Fmt::SipCall | Fmt::PjsipCall => call_ends(l),
            Fmt::Iax2NoPeer => l.strip_suffix(b")").is_some_and(|inner| {
                // An address is at most 64 bytes (parse_addr).
                let tail = &inner[inner.len().saturating_sub(72)..];
                memmem::rfind(tail, b"' (from ")
                    .is_some_and(|p| parse_addr(&tail[p + 8..], Port::Optional).is_some())
            }),
            Fmt::Iax2Md5 => l.ends_with(b")"),
            Fmt::Iax2Rejected => l.ends_with(b"' does not exist") || l.ends_with(b"'"),
            Fmt::Ami => l.ends_with(b"'"),
            Fmt::SecEvent => l.ends_with(b"\""),
        }
    }

    /// Whether a line that starts this format is whole. A security event's attacker fields
    /// (AccountID, SessionID) come before the addresses Asterisk writes after them.
    fn whole(self, l: &[u8]) -> bool {
        self.ends(l) && (self != Fmt::SecEvent || REMOTE_ADDRESS.find(l).is_some())
    }
}

pub(crate) fn call_ends(l: &[u8]) -> bool {
    if l.ends_with(b"' rejected because extension not found.") {
        return true;
    }
    const CTX: &[u8] = b"' rejected because extension not found in context '";
    let Some(inner) = l.strip_suffix(b"'.") else {
        return false;
    };
    // The context holds no quote: the last one opens it.
    memchr::memrchr(b'\'', inner).is_some_and(|q| inner[..=q].ends_with(CTX))
}

static REMOTE_ADDRESS: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b",RemoteAddress=\""));
static SERVICE_AMI: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b",Service=\"AMI\""));
static PJSIP_CALL: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b": Call ("));

/// The format `line` starts, judged from its frame's file and its message's start.
fn opener(line: &[u8], frame: &Frame) -> Option<Fmt> {
    let msg = &line[frame.msg_start..];
    let file = frame.file.map(|(a, b)| {
        let f = &line[a..b];
        memchr::memrchr(b'/', f).map_or(f, |s| &f[s + 1..])
    });
    let from = |m: &[u8]| file.is_none_or(|f| f == m);
    if msg.starts_with(b"Call from '") && from(b"chan_sip.c") {
        return Some(Fmt::SipCall);
    }
    if file == Some(b"res_pjsip_session.c")
        && (msg.starts_with(b"Call from '") || PJSIP_CALL.find(msg).is_some())
    {
        return Some(Fmt::PjsipCall);
    }
    if file.is_none_or(|f| f == b"chan_iax2.c" || f == b"chan_iax.c") {
        if (msg.starts_with(b"Rejected connect attempt from ")
            || msg.starts_with(b"Rejected dial attempt from "))
            && (memmem::find(msg, b", request '").is_some()
                || memmem::find(msg, b", who was trying to reach '").is_some())
        {
            return Some(Fmt::Iax2Rejected);
        }
        if msg.starts_with(b"No registration for peer '") {
            return Some(Fmt::Iax2NoPeer);
        }
        if msg.starts_with(b"Host ")
            && memmem::find(msg, b" failed MD5 authentication for '").is_some()
        {
            return Some(Fmt::Iax2Md5);
        }
    }
    if from(b"manager.c") {
        if let Some(sp) = memchr::memchr(b' ', msg) {
            let after = &msg[sp..];
            if after.starts_with(b" failed to authenticate as '")
                || after.starts_with(b" tried to authenticate with nonexistent user '")
                || after.starts_with(b" failed to pass IP ACL as '")
            {
                return Some(Fmt::Ami);
            }
        }
    }
    // Only AMI's events have a field that can hold a newline (a user name given to the HTTP
    // manager); an event cut before its addresses is unfinished whatever its service.
    if file == Some(b"res_security_log.c")
        && msg.starts_with(b"SecurityEvent=\"")
        && (SERVICE_AMI.find(msg).is_some() || !Fmt::SecEvent.whole(msg))
    {
        return Some(Fmt::SecEvent);
    }
    None
}

/// More `[` than this in one message is no Asterisk message but a flood: judged to hold a
/// frame rather than parsed at each.
const MAX_BRACKETS: usize = 64;

/// What the frames in one line start.
struct Found {
    /// The format of the message the line's end belongs to: the first frame's, or on a line
    /// the logger cut, the last glued entry's.
    opened: Option<Fmt>,
    /// Some frame in the line starts a format the line does not end as: an unfinished
    /// message (a forged frame's included: judging it so only costs the sender). The offset of
    /// the last such frame: the message's window is counted from there.
    unfinished: Option<usize>,
    /// The message holds a second frame.
    framed_inside: bool,
}

fn openers(rec: &Recogniser, line: &[u8], frame: &Frame) -> Found {
    let first = opener(line, frame);
    let mut found = Found {
        opened: first,
        unfinished: first.filter(|f| !f.whole(line)).map(|_| 0),
        framed_inside: false,
    };
    let mut last = first;
    let msg = frame.msg_start;
    for (n, i) in memchr::memchr_iter(b'[', &line[msg..]).enumerate() {
        if n >= MAX_BRACKETS {
            found.framed_inside = true;
            break;
        }
        let s = &line[msg + i..];
        if s.len() <= 16 || !(s[1].is_ascii_digit() || s[1].is_ascii_uppercase()) {
            continue;
        }
        let Some(f) = rec.frame(s) else { continue };
        found.framed_inside = true;
        if let Some(fmt) = opener(s, &f) {
            last = Some(fmt);
            if !fmt.whole(line) {
                found.unfinished = Some(msg + i);
            }
        }
    }
    if line.len() >= TRUNCATED_AT {
        found.opened = last;
    }
    found
}

/// An unfinished message. Forged lines inside it may end as its format ends, and a long one is
/// cut by the logger before Asterisk's ending, so where it ends cannot be told: every line that
/// starts within [`WINDOW`] bytes of its start is taken as part of it.
#[derive(Debug, Clone, Copy)]
struct Doom {
    start: u64,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    at: u64,
    opener: Option<Fmt>,
    r: Recognition,
    forged: bool,
    /// Already in `counts`.
    counted: bool,
    /// Read while an unfinished message was open: judged when it is resolved.
    doomed: bool,
    /// Counted as unproven; a fragment that proves it forged moves it there.
    unproven: bool,
    /// In a shadow, waiting: unproven if a line of the shadow ends as its opener's format
    /// ends, believed if none does.
    shadowed: bool,
}

/// The per-file judge. See the module documentation.
#[derive(Debug, Default)]
pub struct Provenance {
    counts: Counts,
    /// Bytes of this file seen (the start of the next line).
    pos: u64,
    /// Failures and message starts read since the window opened, not yet released.
    held: VecDeque<Held>,
    /// Formats started in the window: their endings close a message.
    fmts: u8,
    /// Where the last message start in the window was.
    last_start: u64,
    /// An unfinished message in progress.
    doom: Option<Doom>,
    /// When (reader's clock) the window opened.
    since: i64,
    /// Where the last believed whole line of a retro format started, and its format: the
    /// failures after it, within one message's length, could be its sender's newline-split
    /// text — if a later line ends as that format ends (the message's real ending).
    shadow: Option<(u64, Fmt)>,
    /// Open IAX2 user-name fields: where each can end at the latest, and the address of the
    /// line that opened it (see [`Provenance::iax2_user_field`]).
    fields: Vec<(u64, IpAddr)>,
}

impl Provenance {
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// True while every line must be passed in (a window is open); otherwise lines that hold
    /// no prefilter literal may be skipped.
    #[inline]
    pub fn busy(&self) -> bool {
        self.window_open() || !self.fields.is_empty()
    }

    /// A window holds failures for a later fragment (formats started in it).
    #[inline]
    fn window_open(&self) -> bool {
        self.fmts != 0
    }

    /// Judge the next line of the file (without its newline). `cand`: the line passed the
    /// recogniser's prefilter, and `r` is its verdict (pass `NotFailure` otherwise). Verdicts
    /// come out in `out`, in line order, possibly lines later.
    #[inline]
    pub fn line(
        &mut self,
        rec: &Recogniser,
        line: &[u8],
        cand: bool,
        r: Recognition,
        now: i64,
        out: &mut Vec<Recognition>,
    ) {
        let frame = if cand {
            rec.frame(line.strip_suffix(b"\r").unwrap_or(line))
        } else {
            None
        };
        self.line_framed(rec, line, cand, r, frame, now, out);
    }

    /// [`Provenance::line`] with the frame the recogniser found in a candidate line
    /// ([`Recogniser::recognise_framed`]), so it is not parsed twice.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn line_framed(
        &mut self,
        rec: &Recogniser,
        line: &[u8],
        cand: bool,
        r: Recognition,
        frame: Option<Frame>,
        now: i64,
        out: &mut Vec<Recognition>,
    ) {
        let start = self.pos;
        self.pos += line.len() as u64 + 1;
        let mut r = r;
        if !self.fields.is_empty()
            || matches!(
                r,
                Recognition::Failure {
                    rule: Rule::Iax2Auth,
                    ..
                }
            )
        {
            r = self.iax2_user_field(line, start, r, frame.as_ref());
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if self.window_open() && self.expiring(start) {
            self.expire(start, out);
        }
        // Most lines in a window: no failure text, no unfinished message, and an end no
        // format's ending has (every ending ends in one of these).
        if !cand && self.doom.is_none() && !matches!(line.last(), Some(b'.' | b')' | b'\'' | b'"'))
        {
            return;
        }
        self.judge(rec, line, start, cand, r, frame, now, out);
    }

    /// chan_iax2's `Host ADDR failed to authenticate as USER` ends with USER, a raw information
    /// element: a newline in it writes whole lines of the sender's choosing, and no ending of
    /// Asterisk's shows where USER stopped. But USER holds at most [`IAX2_USERNAME_MAX`] bytes,
    /// so a line forged inside it ends within that many bytes of USER's start. A failure line
    /// that does is believed only when it names the same address as the line whose USER may
    /// hold it (the sender's own, which costs nobody else anything); otherwise it is forged.
    /// A genuine failure of another address written right after one of these may be taken
    /// with it: never blamed, counted as forged.
    fn iax2_user_field(
        &mut self,
        line: &[u8],
        start: u64,
        r: Recognition,
        frame: Option<&Frame>,
    ) -> Recognition {
        self.fields.retain(|&(end, _)| start < end);
        let end_of_line = start + line.len() as u64;
        if let Recognition::Failure { addr, .. } = r {
            if self
                .fields
                .iter()
                .any(|&(end, opener)| end_of_line <= end && opener != addr)
            {
                return forge(r, None);
            }
        }
        if let (
            Recognition::Failure {
                rule: Rule::Iax2Auth,
                addr,
                ..
            },
            Some(f),
        ) = (r, frame)
        {
            const AS: &[u8] = b" failed to authenticate as ";
            if let Some(p) = memmem::find(&line[f.msg_start..], AS) {
                let user = start + (f.msg_start + p + AS.len()) as u64;
                if self.fields.len() < 16 {
                    self.fields.push((user + IAX2_USERNAME_MAX, addr));
                }
            }
        }
        r
    }

    /// Whether something held, the unfinished message or the window ends before `at`.
    #[inline]
    fn expiring(&self, at: u64) -> bool {
        self.held.front().is_some_and(|h| at - h.at >= WINDOW)
            || self.doom.is_some_and(|d| at - d.start >= WINDOW)
            || at - self.last_start >= WINDOW
    }

    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn judge(
        &mut self,
        rec: &Recogniser,
        line: &[u8],
        start: u64,
        cand: bool,
        r: Recognition,
        frame: Option<Frame>,
        now: i64,
        out: &mut Vec<Recognition>,
    ) {
        let frame = if cand { frame } else { None };
        let mut r = r;
        let mut opened = None;
        let mut unfinished = None;
        // Each line counts once, under the first reason it is not believed.
        let mut counted = false;
        let mut tail_proven = false;
        if let Some(f) = &frame {
            let found = openers(rec, line, f);
            unfinished = found.unfinished;
            opened = found.opened.filter(|f| f.retro() || unfinished.is_some());
            // A cut message loses its newline, so a line past the cut holds the next entry
            // (glued); a second frame in a shorter line was written into a field (forged).
            // The tag proves only the chan_sip tail before it, not the message the line
            // starts with.
            tail_proven = matches!(
                r,
                Recognition::Failure {
                    rule: Rule::ChanSipAuth | Rule::ChanSipFakeAuth,
                    ..
                }
            ) && rec.ends_with_known_tag(line);
            let doubt = if tail_proven {
                None
            } else if line.len() >= TRUNCATED_AT {
                Some(if found.framed_inside {
                    &mut self.counts.glued
                } else {
                    &mut self.counts.truncated
                })
            } else if found.framed_inside {
                Some(&mut self.counts.forged)
            } else {
                None
            };
            if let Some(n) = doubt {
                *n += 1;
                counted = true;
                r = forge(r, None);
            }
        }
        if !counted && matches!(r, Recognition::Forged { .. }) {
            self.counts.forged += 1;
            counted = true;
        }
        // The sender of a whole-looking line whose last field it writes raw may have put a
        // newline and whole lines of its own after it, the real ending coming only at the end
        // of the last one: nothing in the file tells those lines from Asterisk's. So within one
        // message's length, no failure is believed that does not prove itself (the tag).
        // Such a message's real ending is appended to its last physical line, so only the lines
        // up to one that ends that way can be the sender's: a failure in the shadow waits for
        // such a line (then it is unproven) or for the shadow's end (then it is believed).
        let in_shadow = self.shadow.filter(|(o, _)| start - o < WINDOW);
        let mut shadowed = in_shadow.is_some() && !counted && r.rule().is_some() && !tail_proven;
        let ends_shadow = in_shadow.is_some_and(|(_, f)| f.ends(line));
        // Only a line that is itself believed casts a shadow: otherwise a sender could hide
        // everyone after it for free, with lines that never count against it. (A line whose
        // address follows the sender's field waits in its own shadow; see `addr_after_raw`.)
        if in_shadow.is_none() && !counted && self.doom.is_none() && unfinished.is_none() {
            if let Some(f) = opened.filter(|f| f.retro()) {
                self.shadow = Some((start, f));
                if f.addr_after_raw() && r.rule().is_some() {
                    shadowed = true;
                }
            }
        }
        self.place(
            rec,
            line,
            start,
            cand,
            r,
            counted,
            shadowed,
            opened,
            unfinished,
            frame.is_some(),
            now,
            out,
        );
        if ends_shadow {
            self.unprove_shadowed();
        }
    }

    /// Every failure waiting in the shadow could be the sender's text: unproven.
    fn unprove_shadowed(&mut self) {
        for h in self.held.iter_mut().filter(|h| h.shadowed) {
            h.shadowed = false;
            if !h.forged && !h.counted {
                h.forged = true;
                h.counted = true;
                h.unproven = true;
                self.counts.unproven += 1;
            }
        }
    }

    /// Where a judged line goes: into the unfinished message, the window, or out.
    #[allow(clippy::too_many_arguments)]
    fn place(
        &mut self,
        rec: &Recogniser,
        line: &[u8],
        start: u64,
        cand: bool,
        r: Recognition,
        counted: bool,
        shadowed: bool,
        opened: Option<Fmt>,
        unfinished: Option<usize>,
        framed: bool,
        now: i64,
        out: &mut Vec<Recognition>,
    ) {
        if let Some(fmt) = opened {
            if !self.window_open() {
                self.since = now;
            }
            self.fmts |= fmt.bit();
            self.last_start = start;
        }
        if let Some(at) = unfinished {
            // A new unfinished message: the one before (if any) is over, this one starts.
            self.resolve();
            self.doom = Some(Doom {
                start: start + at as u64,
            });
            if !self.window_open() {
                self.since = now;
            }
            self.fmts |= opened.map_or(1, Fmt::bit);
            self.last_start = start;
        }
        if self.doom.is_some() {
            // Inside an unfinished message, or too close after it to tell. Asterisk's own
            // chatter (framed, no failure text) is neither blamed nor counted.
            if !cand && rec.frame(line).is_some() {
                return;
            }
            self.held.push_back(Held {
                at: start,
                opener: opened,
                r,
                forged: counted,
                counted,
                doomed: true,
                unproven: false,
                shadowed,
            });
            return;
        }
        if opened.is_some() {
            self.held.push_back(Held {
                at: start,
                opener: opened,
                r,
                forged: counted,
                counted,
                doomed: false,
                unproven: false,
                shadowed,
            });
            return;
        }
        if self.window_open() {
            if self.is_fragment(rec, line, framed) {
                if !counted {
                    self.counts.forged += 1;
                }
                self.forge_since(start, out);
                return;
            }
            self.push(start, None, r, counted, shadowed, out);
            return;
        }
        if r.rule().is_some() {
            out.push(r);
        }
    }

    /// A frameless line that ends as a format started in the window ends: the rest of a message
    /// that began at one of the window's starts.
    fn is_fragment(&self, rec: &Recogniser, line: &[u8], framed: bool) -> bool {
        if framed {
            return false;
        }
        let ends = FMTS
            .iter()
            .any(|f| self.fmts & f.bit() != 0 && f.ends(line));
        ends && rec.frame(line).is_none()
    }

    /// Hold a line of an open window (only failures and message starts need a place).
    fn push(
        &mut self,
        at: u64,
        opener: Option<Fmt>,
        r: Recognition,
        counted: bool,
        shadowed: bool,
        out: &mut Vec<Recognition>,
    ) {
        let mut forged = self.doom.is_some() || counted;
        if r.rule().is_none() && opener.is_none() {
            return;
        }
        if !self.window_open() {
            // No window to wait in: a shadowed failure cannot wait for its shadow's end.
            if shadowed && !forged {
                self.counts.unproven += 1;
                forged = true;
            }
            out.push(if forged { forge(r, None) } else { r });
            return;
        }
        self.held.push_back(Held {
            at,
            opener,
            r,
            forged,
            counted,
            doomed: false,
            unproven: false,
            shadowed,
        });
    }

    /// A fragment at `at` ended a message: everything held since the earliest start that can
    /// reach it is the sender's; what came before is released as read.
    fn forge_since(&mut self, at: u64, out: &mut Vec<Recognition>) {
        let first = self
            .held
            .iter()
            .position(|h| h.opener.is_some() && at - h.at < WINDOW)
            .unwrap_or(self.held.len());
        // A shadow cast by a line now proven forged is lifted with it.
        if let Some(h) = self.held.get(first) {
            if self.shadow.is_some_and(|(o, _)| o >= h.at) {
                self.shadow = None;
            }
        }
        for (i, h) in self.held.drain(..).enumerate() {
            if i < first {
                emit(h, out);
            } else {
                if h.unproven {
                    // Proven forged after all: counted under the stronger finding.
                    self.counts.unproven -= 1;
                    self.counts.forged += 1;
                } else if !h.counted {
                    self.counts.forged += 1;
                }
                emit(
                    Held {
                        forged: true,
                        unproven: false,
                        shadowed: false,
                        ..h
                    },
                    out,
                );
            }
        }
        self.close();
    }

    fn close(&mut self) {
        self.resolve();
        self.fmts = 0;
    }

    /// The unfinished message's window is over: every line read in it is forged.
    fn resolve(&mut self) {
        if self.doom.take().is_none() {
            return;
        }
        for h in self.held.iter_mut().filter(|h| h.doomed) {
            h.doomed = false;
            h.forged = true;
            if h.unproven {
                h.unproven = false;
                self.counts.unproven -= 1;
                self.counts.forged += 1;
            } else if !h.counted {
                h.counted = true;
                self.counts.forged += 1;
            }
        }
    }

    /// Release what can no longer belong to a message that ends at or after `at`.
    fn expire(&mut self, at: u64, out: &mut Vec<Recognition>) {
        if self.doom.is_some_and(|d| at - d.start >= WINDOW) {
            self.resolve();
        }
        while let Some(h) = self.held.front() {
            if at - h.at < WINDOW {
                break;
            }
            let h = self.held.pop_front().expect("front exists");
            emit(h, out);
        }
        if self.doom.is_none() && at - self.last_start >= WINDOW {
            self.flush(out);
        }
    }

    /// Release everything held (end of input, or the file restarts).
    pub fn flush(&mut self, out: &mut Vec<Recognition>) {
        self.resolve();
        for h in self.held.drain(..) {
            emit(h, out);
        }
        self.close();
    }

    /// A live reader's clock: a window open for [`HOLD_SECS`] has received its whole message.
    pub fn flush_stale(&mut self, now: i64, out: &mut Vec<Recognition>) {
        if self.window_open() && now.saturating_sub(self.since) >= HOLD_SECS {
            self.flush(out);
        }
    }
}

fn forge(r: Recognition, fallback: Option<Rule>) -> Recognition {
    match r.rule().or(fallback) {
        Some(rule) => Recognition::Forged {
            rule,
            time: r.time(),
        },
        None => Recognition::NotFailure,
    }
}

fn emit(h: Held, out: &mut Vec<Recognition>) {
    let r = if h.forged {
        forge(h.r, h.opener.and_then(Fmt::rule))
    } else {
        h.r
    };
    if r.rule().is_some() {
        out.push(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::frame::TimeContext;
    use crate::logs::recognise::RecogniseOptions;
    use std::net::IpAddr;

    const TAG: &str = "00112233445566ff";

    fn rec() -> Recogniser {
        Recogniser::with_time_context(
            RecogniseOptions {
                known_tags: vec![TAG.parse().unwrap()],
                ..Default::default()
            },
            TimeContext::utc(1_795_996_800),
        )
    }

    /// Feed `lines` as one file; the verdicts in release order and the counts.
    fn judge(lines: &[&str]) -> (Vec<Recognition>, Counts) {
        let rec = rec();
        let mut p = Provenance::default();
        let mut out = vec![];
        for l in lines {
            let l = l.as_bytes();
            let cand = rec.may_match(l);
            let r = if cand {
                rec.recognise_candidate(l)
            } else {
                Recognition::NotFailure
            };
            p.line(&rec, l, cand, r, 0, &mut out);
        }
        p.flush(&mut out);
        (out, p.counts())
    }

    fn blamed(v: &[Recognition]) -> Vec<IpAddr> {
        v.iter()
            .filter_map(|r| match r {
                Recognition::Failure { addr, .. } => Some(*addr),
                _ => None,
            })
            .collect()
    }

    const REAL: &str = "[Nov 30 04:27:49] NOTICE[2515][C-00000003] chan_sip.c: ";
    const END: &str = "' rejected because extension not found in context 'public'.";
    const FORGED_CALL: &str = "[Nov 30 10:00:00] NOTICE[1234] chan_sip.c: Call from 'x' (192.0.2.1:5060) to extension '2' rejected because extension not found in context 'public'.";
    const FORGED_AMI: &str =
        "[Nov 30 10:00:00] NOTICE[1234] manager.c: 192.0.2.1 failed to authenticate as 'admin'";

    fn filler(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("[Nov 30 04:28:{:02}] VERBOSE[1] pbx.c: -- line {i}", i % 60))
            .collect()
    }

    #[test]
    fn a_newline_in_the_extension_forges_nothing_and_blames_nobody() {
        let first = format!("{REAL}Call from '' (10.96.0.2:5061) to extension '1");
        let (v, c) = judge(&[&first, FORGED_CALL]);
        assert_eq!(blamed(&v), Vec::<IpAddr>::new());
        assert_eq!(c.forged, 2, "{v:?}");
        assert!(
            v.iter().all(|r| matches!(r, Recognition::Forged { .. })),
            "{v:?}"
        );
    }

    #[test]
    fn a_newline_in_an_iax2_extension_or_pjsip_extension_forges_nothing() {
        for first in [
            "[Nov 30 04:27:49] NOTICE[42] chan_iax2.c: Rejected dial attempt from 10.96.0.2, request '1",
            "[Nov 30 04:27:49] NOTICE[42] chan_iax2.c: Rejected connect attempt from 10.96.0.2, who was trying to reach '1",
            "[Nov 30 04:27:49] NOTICE[42] res_pjsip_session.c: anonymous: Call (UDP:10.96.0.2:5060) to extension '1",
        ] {
            let (v, c) = judge(&[first, FORGED_AMI]);
            assert_eq!(blamed(&v), Vec::<IpAddr>::new(), "{first}");
            assert_eq!(c.forged, 2, "{first}: {v:?}");
        }
        // Finished, they are what they say.
        let whole = "[Nov 30 04:27:49] NOTICE[42] chan_iax2.c: Rejected dial attempt from 10.96.0.2, request '1@default' does not exist";
        let (v, c) = judge(&[whole]);
        assert_eq!(blamed(&v), vec!["10.96.0.2".parse::<IpAddr>().unwrap()]);
        assert_eq!(c, Counts::default());
    }

    #[test]
    fn many_forged_lines_in_one_message() {
        let first = format!("{REAL}Call from '' (10.96.0.2:5061) to extension '1");
        let mut lines = vec![first];
        for _ in 0..10 {
            lines.push(FORGED_AMI.to_owned());
        }
        lines.push(FORGED_CALL.to_owned());
        lines.extend(filler(3));
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let (v, c) = judge(&refs);
        assert_eq!(blamed(&v), Vec::<IpAddr>::new());
        assert_eq!(c.forged, 12);
    }

    #[test]
    fn a_first_half_ending_as_asterisk_would_is_undone_by_the_fragment() {
        let first = format!("{REAL}Call from '' (10.96.0.2:5061) to extension '1{END}");
        let frag = format!("2{END}");
        let (v, c) = judge(&[&first, FORGED_AMI, FORGED_AMI, &frag]);
        assert_eq!(blamed(&v), Vec::<IpAddr>::new());
        assert_eq!(c.forged, 4, "{v:?}");
        assert_eq!(c.unproven, 0, "a fragment proves them forged: {c:?}");
    }

    /// The hole a log file alone left open (issue 11): the attacker's first line ends as
    /// Asterisk would and the last forged line carries Asterisk's real ending, so no fragment
    /// shows. The lines after it cannot prove they are Asterisk's: unproven, never blamed.
    #[test]
    fn whole_forged_lines_after_a_whole_first_half_are_unproven() {
        let first = format!("{REAL}Call from '' (10.96.0.2:5061) to extension '1{END}");
        let (v, c) = judge(&[&first, FORGED_AMI, FORGED_CALL]);
        assert_eq!(blamed(&v), vec!["10.96.0.2".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            c,
            Counts {
                unproven: 2,
                ..Counts::default()
            }
        );
        // The same through every other format whose last field is written raw: the last
        // forged line carries that format's real ending.
        // `unproven` counts the first line too where its address follows the sender's field.
        for (first, last, unproven) in [
            (
                "[Nov 30 04:27:49] NOTICE[9] chan_iax2.c: No registration for peer 'x' (from 10.96.0.2)",
                "[Nov 30 10:00:00] NOTICE[1234] chan_iax2.c: No registration for peer 'z' (from 10.96.0.2)",
                3,
            ),
            (
                "[Nov 30 04:27:49] NOTICE[9] chan_iax2.c: Host 10.96.0.2 failed MD5 authentication for 'x' (a != b)",
                "[Nov 30 10:00:00] NOTICE[1234] chan_iax2.c: Host 192.0.2.1 failed MD5 authentication for 'z' (a != b)",
                2,
            ),
            (
                "[Nov 30 04:27:49] NOTICE[9] res_pjsip_session.c: Call from 'x' (UDP:10.96.0.2:5060) to extension '1' rejected because extension not found in context 'public'.",
                FORGED_CALL,
                2,
            ),
        ] {
            let (v, c) = judge(&[first, FORGED_AMI, last]);
            assert!(
                !blamed(&v).contains(&"192.0.2.1".parse().unwrap()),
                "{first}: {v:?}"
            );
            assert_eq!(c.unproven, unproven, "{first}: {c:?}");
        }
        // The whole first line is the sender's when the address follows its field: `peer 'x'
        // (from 192.0.2.1)`, a newline, and Asterisk's real `' (from SENDER)` ends a later line
        // (captured from real 11.23.1 and 20.20.1: 90-iax2-regreq-peer-lf-whole-first-bystander).
        let (v, c) = judge(&[
            "[Nov 30 08:58:28] NOTICE[3749] chan_iax2.c: No registration for peer 'x' (from 192.0.2.1)",
            "[Nov 30 10:00:00] NOTICE[1234] chan_iax2.c: No registration for peer 'z' (from 10.96.0.2)",
        ]);
        assert_eq!(blamed(&v), Vec::<IpAddr>::new(), "{v:?}");
        assert_eq!(c.unproven, 2);
    }

    /// Failures after such a line, when no line within one message's length ends as its
    /// format ends, cannot be inside its message: believed.
    #[test]
    fn failures_in_a_shadow_that_no_ending_closes_are_believed() {
        let first = format!("{REAL}Call from '' (10.96.0.2:5061) to extension '1{END}");
        let mut lines = vec![first, FORGED_AMI.to_owned(), FORGED_AMI.to_owned()];
        lines.extend(filler(250));
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let (v, c) = judge(&refs);
        assert_eq!(blamed(&v).len(), 3, "{v:?}");
        assert_eq!(c, Counts::default());
    }

    /// A tagged chan_sip failure proves itself, shadow or not; the sender cannot make it.
    #[test]
    fn a_tagged_failure_in_the_shadow_is_believed() {
        let first = format!("{REAL}Call from '' (10.96.0.2:5061) to extension '1{END}");
        let tagged = format!(
            "[Nov 30 04:27:50] NOTICE[2515] chan_sip.c: Failed to authenticate device <sip:1@h>;tag=x (203.0.113.9:5060) [astpatch:{TAG}]"
        );
        let (v, c) = judge(&[&first, &tagged]);
        assert_eq!(
            blamed(&v),
            vec![
                "10.96.0.2".parse::<IpAddr>().unwrap(),
                "203.0.113.9".parse().unwrap()
            ]
        );
        assert_eq!(c, Counts::default());
    }

    /// The shadow is one message long from a line that is itself believed: a sender cannot
    /// stretch it by sending shadowed lines of the same format to hide everyone after them.
    #[test]
    fn shadowed_lines_do_not_stretch_the_shadow() {
        let call = |a: &str| format!("{REAL}Call from '100' ({a}:5060) to extension '9{END}");
        // ~7 KiB of chatter, a shadowed call, ~3 KiB more: past the first call's shadow but
        // within the second's, had it opened one.
        let mut lines = vec![call("198.51.100.1")];
        lines.extend(filler(150));
        lines.push(call("198.51.100.2"));
        lines.extend(filler(60));
        lines.push(call("198.51.100.3"));
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let (v, c) = judge(&refs);
        assert_eq!(
            blamed(&v),
            vec![
                "198.51.100.1".parse::<IpAddr>().unwrap(),
                "198.51.100.3".parse().unwrap()
            ]
        );
        assert_eq!(c.unproven, 1);
    }

    /// The cost: two honest failures of such a format within one message's length; the second
    /// cannot prove it is not the first one's sender's. One message later, lines count again.
    #[test]
    fn honest_lines_keep_their_order_and_are_released_after_a_window() {
        let call = |a: &str| format!("{REAL}Call from '100' ({a}:5060) to extension '9{END}");
        let mut lines = vec![call("203.0.113.1"), call("203.0.113.2")];
        lines.extend(filler(200));
        lines.push(call("203.0.113.3"));
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let (v, c) = judge(&refs);
        let want: Vec<IpAddr> = ["203.0.113.1", "203.0.113.3"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(blamed(&v), want);
        assert_eq!(
            c,
            Counts {
                unproven: 1,
                ..Counts::default()
            }
        );
    }

    #[test]
    fn an_unfinished_message_ends_with_its_window() {
        let first =
            "[Nov 30 04:27:49] NOTICE[42] chan_iax2.c: No registration for peer 'x".to_owned();
        let mut lines = vec![first, FORGED_AMI.to_owned()];
        lines.extend(filler(200));
        lines.push(
            "[Nov 30 04:29:00] NOTICE[42] chan_iax2.c: No registration for peer 'y' (from 203.0.113.9)"
                .to_owned(),
        );
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let (v, c) = judge(&refs);
        assert_eq!(blamed(&v), vec!["203.0.113.9".parse::<IpAddr>().unwrap()]);
        // The open line and every line up to the window's end (filler included) is forged.
        assert!(c.forged >= 2, "{c:?}");
    }

    #[test]
    fn truncated_and_glued_lines_are_not_believed_unless_tagged() {
        let pj = |a: &str| {
            format!(
                "[2026-11-30 04:27:49] NOTICE[6120] res_pjsip/pjsip_distributor.c: Request 'INVITE' from '<sip:x@y>' failed for '{a}:5060' (callid: c) - No matching endpoint found"
            )
        };
        let long = format!(
            "[2026-11-30 04:27:49] NOTICE[6120] res_pjsip/pjsip_distributor.c: Request 'INVITE' from '<sip:{}@y>' failed for '203.0.113.66:5060' (callid: c) - No matching endpoint found",
            "A".repeat(TRUNCATED_AT)
        );
        let cut = format!(
            "[2026-11-30 04:27:49] NOTICE[6120] res_pjsip/pjsip_distributor.c: Request 'INVITE' from '<sip:{}",
            "A".repeat(TRUNCATED_AT)
        );
        let glued = format!("{}{}", &cut[..TRUNCATED_AT], pj("198.51.100.7"));
        let framed = format!("{}{}", &cut[..200], pj("198.51.100.7"));
        let (v, c) = judge(&[&long, &glued, &framed]);
        assert_eq!(blamed(&v), Vec::<IpAddr>::new());
        assert_eq!((c.truncated, c.glued, c.forged), (1, 1, 1));
        let tagged = format!(
            "[Nov 30 04:27:49] NOTICE[1] chan_sip.c: Failed to authenticate device <sip:{}[Nov 30 04:27:49] NOTICE[1] chan_sip.c: Failed to authenticate device <sip:1@h> (203.0.113.66:5060) [astpatch:{TAG}]",
            "B".repeat(TRUNCATED_AT)
        );
        let (v, c) = judge(&[&tagged]);
        assert_eq!(blamed(&v), vec!["203.0.113.66".parse::<IpAddr>().unwrap()]);
        assert_eq!(c, Counts::default());
    }

    #[test]
    fn stale_windows_are_released_on_the_clock() {
        let rec = rec();
        let mut p = Provenance::default();
        let mut out = vec![];
        let l = format!("{REAL}Call from '100' (203.0.113.1:5060) to extension '9{END}");
        let r = rec.recognise(l.as_bytes());
        p.line(&rec, l.as_bytes(), true, r, 100, &mut out);
        assert!(out.is_empty() && p.busy());
        p.flush_stale(101, &mut out);
        assert!(out.is_empty());
        p.flush_stale(100 + HOLD_SECS, &mut out);
        assert_eq!(blamed(&out), vec!["203.0.113.1".parse::<IpAddr>().unwrap()]);
        assert!(!p.busy());
    }
}
