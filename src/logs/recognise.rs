//! Which log lines are failed logins, and whom to blame — taking the address only from a field
//! Asterisk itself writes.
//!
//! Every rule starts at the message start found by [`crate::logs::frame`] (a position no remote
//! party can move) and reads the address from a place fixed by Asterisk's format string:
//!
//! * at the **start** of the message (`Host ADDR failed MD5…`, AMI's `ADDR failed to
//!   authenticate as…`): nothing attacker-written comes before it;
//! * at the **end** (`… failed for 'ADDR' - Wrong password`, `… (from ADDR)`, patched chan_sip's
//!   `… (ADDR)`): nothing attacker-written comes after it;
//! * **between** attacker fields (`Call from '…' (ADDR) to extension '…'`, PJSIP's `… failed for
//!   'ADDR' (callid: …)`, security events' `RemoteAddress=`): only when every place in the line
//!   that fits the pattern names the same address. Asterisk always writes one, so a second,
//!   different one can only be forged; such a line is [`Recognition::Ambiguous`] and never
//!   blamed on anyone.
//!
//! A stock chan_sip `Failed to authenticate device FROM` line ends in the attacker's From
//! header, so a chan_sip tail is believed only when the line ends with the tag of a patched
//! build the reader knows ([`crate::patch::tag`], [`RecogniseOptions::known_tags`]): then the
//! patched module wrote it, whatever module is loaded now and whatever came before. A line
//! without a tag is [`Recognition::NoAddress`] (unless `patched = true` says untagged tails
//! are believed); one with a tag nobody knows is [`Recognition::Forged`].
//!
//! The hot path allocates nothing: a multi-literal prefilter rejects the ~95% of lines that
//! cannot be failures before any parsing happens.
use std::fmt;
use std::net::IpAddr;

use aho_corasick::{AhoCorasick, MatchKind};
use memchr::memmem;

use crate::logs::frame::{self, TimeContext};
use crate::patch::tag::{self, Tag};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecogniseOptions {
    /// Tags of the patched chan_sip builds this reader has seen ([`crate::ban::trust`]): a
    /// chan_sip "Failed to authenticate" / "fake auth rejection" line that ends in
    /// ` [astpatch:TAG]` with one of these was written by a patched module, so the `(ADDR)`
    /// before the tag is the packet's source. On a stock module that place holds the
    /// attacker's From header.
    pub known_tags: Vec<Tag>,
    /// `patched = true`: also believe the `(ADDR)` tail of lines without a tag (modules patched
    /// by hand, or by astpatch before tags). Never set when the running Asterisk is seen to
    /// have a stock chan_sip loaded.
    pub trust_untagged: bool,
    /// `patched = false`: no chan_sip tail is believed, and none is judged forged.
    pub tails_off: bool,
}

/// The kind of failure a line reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(into = "&'static str")]
pub enum Rule {
    /// chan_sip `Failed to authenticate user|device FROM [(ADDR)] …`.
    ChanSipAuth,
    /// chan_sip `Sending fake auth rejection for user|device FROM [(ADDR)]` (alwaysauthreject).
    ChanSipFakeAuth,
    /// chan_sip `Registration from '…' failed for 'ADDR' - REASON`.
    ChanSipRegister,
    /// chan_sip `Call from '…' (ADDR) to extension '…' rejected because extension not found…`.
    ChanSipNoExtension,
    /// IAX2 `No registration for peer '…' (from ADDR)`.
    Iax2NoPeer,
    /// IAX2 `Host ADDR failed MD5 authentication…` / `did not provide proper plaintext password` /
    /// `failed to authenticate as NAME`.
    Iax2Auth,
    /// IAX2 `Host ADDR denied access to register peer '…'` / `Peer '…' is not dynamic (from ADDR)`.
    Iax2Register,
    /// IAX2 `Rejected connect|dial attempt from ADDR[, request '…' does not exist | , who was
    /// trying to reach '…']`: no user or ACL admits the caller, or no such extension.
    Iax2Rejected,
    /// AMI `ADDR failed to authenticate as '…'`, `tried to authenticate with nonexistent user`,
    /// `failed to pass IP ACL`.
    AmiAuth,
    /// PJSIP `Request '…' from '…' failed for 'ADDR' (callid: …) - No matching endpoint found`.
    PjsipNoEndpoint,
    /// PJSIP `… - Failed to authenticate` / `Error to authenticate`.
    PjsipAuth,
    /// PJSIP `… - Not match Endpoint ACL` / `Not match Endpoint Contact ACL`; res_pjsip_acl's
    /// `Incoming SIP message from ADDR did not pass ACL test` (never an address: see below).
    PjsipAcl,
    /// res_pjsip_session `Call from 'ENDPOINT' (TRANSPORT:ADDR) to extension '…' rejected…` and
    /// `NAME: Call (TRANSPORT:ADDR) to extension '…' rejected…`.
    PjsipNoExtension,
    /// Security log `SecurityEvent="InvalidPassword|ChallengeResponseFailed|InvalidAccountID|
    /// FailedACL|…",…,RemoteAddress="IPV4/UDP/ADDR/PORT"`.
    SecurityEvent,
    /// Opt-in (`dialplan_rejections`): FreePBX's dialplan `Log(WARNING,"Rejecting unknown SIP
    /// connection from ${CHANNEL(recvip)}")`. Any dialplan can write that text, so it is off
    /// unless the operator vouches for theirs.
    DialplanRejection,
}

impl Rule {
    pub const ALL: [Rule; 15] = [
        Rule::ChanSipAuth,
        Rule::ChanSipFakeAuth,
        Rule::ChanSipRegister,
        Rule::ChanSipNoExtension,
        Rule::Iax2NoPeer,
        Rule::Iax2Auth,
        Rule::Iax2Register,
        Rule::Iax2Rejected,
        Rule::AmiAuth,
        Rule::PjsipNoEndpoint,
        Rule::PjsipAuth,
        Rule::PjsipAcl,
        Rule::PjsipNoExtension,
        Rule::SecurityEvent,
        Rule::DialplanRejection,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Rule::ChanSipAuth => "chan-sip-auth",
            Rule::ChanSipFakeAuth => "chan-sip-fake-auth",
            Rule::ChanSipRegister => "chan-sip-register",
            Rule::ChanSipNoExtension => "chan-sip-no-extension",
            Rule::Iax2NoPeer => "iax2-no-peer",
            Rule::Iax2Auth => "iax2-auth",
            Rule::Iax2Register => "iax2-register",
            Rule::Iax2Rejected => "iax2-rejected",
            Rule::AmiAuth => "ami-auth",
            Rule::PjsipNoEndpoint => "pjsip-no-endpoint",
            Rule::PjsipAuth => "pjsip-auth",
            Rule::PjsipAcl => "pjsip-acl",
            Rule::PjsipNoExtension => "pjsip-no-extension",
            Rule::SecurityEvent => "security-event",
            Rule::DialplanRejection => "dialplan-rejection",
        }
    }

    pub fn from_name(name: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.name() == name)
    }
}

impl From<Rule> for &'static str {
    fn from(r: Rule) -> &'static str {
        r.name()
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The verdict on one line. `time` is the line's own timestamp (unix seconds), when its frame
/// carries one astpatch can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recognition {
    NotFailure,
    /// A failure, and the address Asterisk wrote for its source.
    Failure {
        rule: Rule,
        addr: IpAddr,
        time: Option<i64>,
    },
    /// A failure with no trustworthy address (e.g. a stock chan_sip line): seen, never banned.
    NoAddress {
        rule: Rule,
        time: Option<i64>,
    },
    /// A failure where attacker text forged a second candidate address: never banned.
    /// `pair`: the first address in the line's places and the first that differs from it
    /// (`None`: a place held no address, or too many places), so a report can show who hides
    /// behind whom. One of them is usually the real sender.
    Ambiguous {
        rule: Rule,
        time: Option<i64>,
        pair: Option<(IpAddr, Option<IpAddr>)>,
    },
    /// A line shaped to pass for one the patched module wrote (a tag no known build has), or
    /// otherwise shown to be remote-written: never banned, reported as an attempt.
    Forged {
        rule: Rule,
        time: Option<i64>,
    },
}

impl Recognition {
    pub fn rule(&self) -> Option<Rule> {
        match *self {
            Recognition::NotFailure => None,
            Recognition::Failure { rule, .. }
            | Recognition::NoAddress { rule, .. }
            | Recognition::Ambiguous { rule, .. }
            | Recognition::Forged { rule, .. } => Some(rule),
        }
    }

    pub fn time(&self) -> Option<i64> {
        match *self {
            Recognition::NotFailure => None,
            Recognition::Failure { time, .. }
            | Recognition::NoAddress { time, .. }
            | Recognition::Ambiguous { time, .. }
            | Recognition::Forged { time, .. } => time,
        }
    }
}

/// Literals at least one of which every failure line contains. Chosen from the Asterisk-written
/// part of each message, so the prefilter can only let through more, never less.
const PREFILTER: &[&str] = &[
    "Failed to authenticate user ",
    "Failed to authenticate device ",
    "fake auth rejection for ",
    "' failed for '",
    "rejected because extension not found",
    "No registration for peer '",
    " failed MD5 authentication",
    " did not provide proper plaintext password",
    " failed RSA authentication",
    " tried to authenticate with nonexistent user",
    " failed to authenticate as ",
    " denied access to register peer '",
    "' is not dynamic (from ",
    "Rejected connect attempt from ",
    "Rejected dial attempt from ",
    " did not pass ACL test",
    "Rejecting unknown SIP connection from ",
    " failed to pass IP ACL as '",
    "SecurityEvent=\"",
    // Not a failure: the header of a packet pjproject dumps into the log (see `packet_dump`).
    " bytes packet from ",
    // Not failures on their own: the starts of messages whose attacker-written field may hold
    // a newline, which line provenance must see (crate::logs::provenance). The other such formats
    // start with a literal above.
    "Call from '",
    ") to extension '",
];

/// Levels at which modules log without a file name in the frame (1.2's `NOTICE[1234]: …`).
/// `Verbose()` and `Log()` in the dialplan write caller-chosen text at VERBOSE/DEBUG/DTMF.
const FILELESS_LEVELS: &[&[u8]] = &[b"NOTICE", b"WARNING", b"ERROR"];

/// Line-by-line readers' memory of a packet dump in progress (one per log file; reset it when
/// the file is rotated or truncated).
#[derive(Debug, Default, Clone, Copy)]
pub struct PacketDumpSkip {
    left: usize,
}

impl PacketDumpSkip {
    /// True when `line` (without its newline) is, or belongs to, a packet pjproject dumps into
    /// the log: such lines must not be read as failures. Call it for every line, in order.
    pub fn skip(&mut self, rec: &Recogniser, line: &[u8]) -> bool {
        if self.left > 0 {
            self.left = self.left.saturating_sub(line.len() + 1);
            return true;
        }
        if !rec.may_match(line) {
            return false;
        }
        match rec.packet_dump(line) {
            Some(n) => {
                self.left = n;
                true
            }
            None => false,
        }
    }
}

/// The line pjproject writes after a dumped packet, with its newline.
const PACKET_END: &[u8] = b"-- end of packet.\n";

/// Security events that mean a failed or refused login attempt (not InvalidTransport,
/// RequestNotAllowed or UnexpectedAddress: those are what misconfigured phones and NAT produce).
const FAILURE_EVENTS: &[&[u8]] = &[
    b"InvalidPassword",
    b"ChallengeResponseFailed",
    b"InvalidAccountID",
    b"FailedACL",
    b"AuthMethodNotAllowed",
];

pub struct Recogniser {
    opts: RecogniseOptions,
    /// Syslog / journald program names whose lines are Asterisk's (`syslog_ident`).
    idents: Vec<Vec<u8>>,
    tc: TimeContext,
    /// Read "now" from the system clock at each line (a watcher runs across New Year).
    live: bool,
    /// The opt-in [`Rule::DialplanRejection`].
    dialplan_rejections: bool,
    prefilter: AhoCorasick,
    pjsip_candidate: memmem::Finder<'static>,
    remote_address: memmem::Finder<'static>,
    call_candidate: memmem::Finder<'static>,
    pjsip_reason: memmem::FinderRev<'static>,
    register_reason: memmem::FinderRev<'static>,
    register_addr: memmem::FinderRev<'static>,
}

impl Recogniser {
    /// A recogniser reading yearless and zoneless dates against the host clock (read afresh
    /// for each failure line) and zone.
    pub fn new(opts: RecogniseOptions) -> Self {
        Recogniser {
            live: true,
            ..Recogniser::with_time_context(opts, TimeContext::system())
        }
    }

    /// As [`Recogniser::new`], with an explicit "now" and zone (tests, replays).
    pub fn with_time_context(opts: RecogniseOptions, tc: TimeContext) -> Self {
        let prefilter = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostFirst)
            .build(PREFILTER)
            .expect("static patterns build");
        Recogniser {
            opts,
            idents: vec![b"asterisk".to_vec()],
            tc,
            live: false,
            dialplan_rejections: false,
            prefilter,
            pjsip_candidate: memmem::Finder::new(b"' failed for '"),
            remote_address: memmem::Finder::new(b"RemoteAddress=\""),
            call_candidate: memmem::Finder::new(b"' ("),
            pjsip_reason: memmem::FinderRev::new(b") - "),
            register_reason: memmem::FinderRev::new(b"' - "),
            register_addr: memmem::FinderRev::new(b"' failed for '"),
        }
    }

    pub fn options(&self) -> &RecogniseOptions {
        &self.opts
    }

    /// The syslog / journald program names (idents) whose lines are believed: any other
    /// program, or a local user's `logger -t`, can write a line that looks like Asterisk's.
    pub fn set_syslog_idents(&mut self, idents: &[String]) {
        self.idents = idents.iter().map(|i| i.as_bytes().to_vec()).collect();
    }

    /// Believe FreePBX's dialplan-written `Rejecting unknown SIP connection from ADDR` lines
    /// (`dialplan_rejections = true`): the operator vouches that no other dialplan `Log()` ends
    /// a line with that text.
    pub fn set_dialplan_rejections(&mut self, on: bool) {
        self.dialplan_rejections = on;
    }

    /// The frame of `line`, read against this recogniser's clock.
    pub fn frame(&self, line: &[u8]) -> Option<frame::Frame> {
        frame::parse(line, &self.tc)
    }

    /// True when `line` ends in the tag of a build this reader knows: only that build's
    /// chan_sip wrote its end, whatever precedes it.
    pub fn ends_with_known_tag(&self, line: &[u8]) -> bool {
        tag::split_line(line).is_some_and(|(_, t)| self.opts.known_tags.contains(&t))
    }

    /// The builds whose tags are believed, learnt afresh (a new module installed and loaded
    /// while a reader runs brings a new tag).
    pub fn set_known_tags(&mut self, tags: Vec<Tag>) {
        self.opts.known_tags = tags;
    }

    /// True when `line` may be a failure; false is final. For bulk scanning.
    #[inline]
    pub fn may_match(&self, line: &[u8]) -> bool {
        self.prefilter.is_match(line)
    }

    /// Offset of the first prefilter hit in `haystack` (any number of lines): the line around
    /// it may be a failure, and no line before it is.
    #[inline]
    pub fn find_candidate(&self, haystack: &[u8]) -> Option<usize> {
        self.prefilter.find(haystack).map(|m| m.start())
    }

    /// True when `line` starts with an Asterisk or syslog frame astpatch knows.
    pub fn has_frame(&self, line: &[u8]) -> bool {
        frame::parse(line, &self.tc).is_some()
    }

    /// Classify one line (without its newline; a trailing `\r` is ignored).
    pub fn recognise(&self, line: &[u8]) -> Recognition {
        if !self.may_match(line) {
            return Recognition::NotFailure;
        }
        self.recognise_candidate(line)
    }

    /// When `line` is pjproject's report of a SIP packet it could not parse, the number of log
    /// bytes that follow it and belong to that report: the raw packet, its newline, and
    /// `-- end of packet.` with its newline.
    ///
    /// The packet is written as it arrived, newlines and all (`ERROR[…] pjproject:
    /// sip_transport.c Error processing N bytes packet from UDP ADDR:PORT : …:` then the N
    /// bytes), so a remote party who sends one malformed packet writes whole log lines of its
    /// choosing — forged failure lines blaming anyone, enough of them to reach maxretry. Those
    /// lines can only be told apart by position, so readers skip exactly N bytes after this
    /// header rather than looking for the end marker, which the packet itself may contain.
    pub fn packet_dump(&self, line: &[u8]) -> Option<usize> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !line.ends_with(b":") {
            return None;
        }
        let frame = frame::parse(line, &self.tc)?;
        let msg = &line[frame.msg_start..];
        // Only pjproject's own messages: anywhere else the text could be a remote party's,
        // planted to make readers skip (and so miss) the lines that follow.
        let from_pjproject = match frame.file {
            Some((a, b)) => &line[a..b] == b"pjproject",
            // Console/syslog form: `pjproject:0 <?>: …` is not a C file, so it leads the message.
            None => msg.starts_with(b"pjproject:"),
        };
        if !from_pjproject {
            return None;
        }
        let head = &msg[..msg.len().min(96)];
        let p = memmem::find(head, b"Error processing ")? + 17;
        let digits = msg[p..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 7 || !msg[p + digits..].starts_with(b" bytes packet from ") {
            return None;
        }
        let n: usize = std::str::from_utf8(&msg[p..p + digits])
            .ok()?
            .parse()
            .ok()?;
        Some(n + 1 + PACKET_END.len())
    }

    /// [`Recogniser::recognise`] for a line that already passed [`Recogniser::may_match`].
    pub fn recognise_candidate(&self, line: &[u8]) -> Recognition {
        self.recognise_framed(line).0
    }

    /// [`Recogniser::recognise_candidate`], with the frame it found (line provenance looks
    /// at it too: read once).
    pub fn recognise_framed(&self, line: &[u8]) -> (Recognition, Option<frame::Frame>) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let tc = if self.live {
            TimeContext {
                now: frame::now(),
                ..self.tc
            }
        } else {
            self.tc
        };
        let Some(frame) = frame::parse(line, &tc) else {
            return (Recognition::NotFailure, None);
        };
        (self.judge_framed(line, &frame), Some(frame))
    }

    fn judge_framed(&self, line: &[u8], frame: &frame::Frame) -> Recognition {
        let r = self.classify(line, frame);
        let Some(rule) = r.rule() else { return r };
        if !self.frame_believed(line, frame) {
            return Recognition::Forged {
                rule,
                time: frame.time,
            };
        }
        // Asterisk writes no CR inside a message of its own: one there came in a remote
        // party's field (`%0D` in a SIP extension), to hide a forged line after it from a
        // terminal or from a reader that splits at CR. It stays one line here, so where the
        // address sits is still Asterisk's; only a second candidate makes it an attempt.
        if matches!(r, Recognition::Ambiguous { .. }) && memchr::memchr(b'\r', line).is_some() {
            return Recognition::Forged {
                rule,
                time: frame.time,
            };
        }
        r
    }

    /// Whether the frame can only be Asterisk's: a syslog/journald line from its program, a
    /// frame without a file name at a level real modules log at there.
    fn frame_believed(&self, line: &[u8], frame: &frame::Frame) -> bool {
        if let Some((a, b)) = frame.ident {
            if !self.idents.iter().any(|i| i[..] == line[a..b]) {
                return false;
            }
        }
        frame.file.is_some() || FILELESS_LEVELS.contains(&&line[frame.level.0..frame.level.1])
    }

    fn classify(&self, line: &[u8], frame: &frame::Frame) -> Recognition {
        let msg = &line[frame.msg_start..];
        let time = frame.time;
        // Where the frame names the source file, the message must come from the module that
        // writes it: dialplan Log()/Verbose() put caller-chosen text at the message start.
        let file = frame.file.map(|(a, b)| {
            let f = &line[a..b];
            memchr::memrchr(b'/', f).map_or(f, |s| &f[s + 1..])
        });
        let from = |module: &[u8]| file.is_none_or(|f| f == module);
        let found = |rule, found: Found| match found {
            Found::Addr(addr) => Recognition::Failure { rule, addr, time },
            Found::NoAddr => Recognition::NoAddress { rule, time },
            Found::Ambiguous(pair) => Recognition::Ambiguous { rule, time, pair },
            Found::Forged => Recognition::Forged { rule, time },
        };
        if let Some(rest) = strip_either(
            msg,
            b"Failed to authenticate user ",
            b"Failed to authenticate device ",
        )
        .filter(|_| from(b"chan_sip.c"))
        {
            return found(Rule::ChanSipAuth, self.chan_sip_tail(rest));
        }
        if let Some(rest) = strip_either(
            msg,
            b"Sending fake auth rejection for user ",
            b"Sending fake auth rejection for device ",
        )
        .filter(|_| from(b"chan_sip.c"))
        {
            return found(Rule::ChanSipFakeAuth, self.chan_sip_tail(rest));
        }
        if msg.starts_with(b"Registration from '") && from(b"chan_sip.c") {
            return match self.register_addr(msg).or_else(|| old_register_addr(msg)) {
                Some(a) => found(Rule::ChanSipRegister, Found::Addr(a)),
                None => Recognition::NotFailure,
            };
        }
        if msg.starts_with(b"Call from '") && from(b"chan_sip.c") {
            return match self.call_from(msg) {
                Some(f) => found(Rule::ChanSipNoExtension, f),
                None => Recognition::NotFailure,
            };
        }
        // chan_iax (IAX1, until 1.0) wrote the same words as chan_iax2.
        let from_iax = file.is_none_or(|f| f == b"chan_iax2.c" || f == b"chan_iax.c");
        if let Some(rest) = msg
            .strip_prefix(b"No registration for peer '")
            .filter(|_| from_iax)
        {
            let f = tail_in(rest, b"' (from ", b")")
                .and_then(|a| parse_addr(a, Port::Optional))
                .map_or(Found::NoAddr, Found::Addr);
            return found(Rule::Iax2NoPeer, f);
        }
        if let Some(rest) = msg.strip_prefix(b"Peer '").filter(|_| from_iax) {
            // The name matched a configured peer; the address Asterisk appends ends the line.
            return match tail_in(rest, b"' is not dynamic (from ", b")") {
                Some(a) => found(
                    Rule::Iax2Register,
                    parse_addr(a, Port::Optional).map_or(Found::NoAddr, Found::Addr),
                ),
                None => Recognition::NotFailure,
            };
        }
        if let Some(rest) = msg.strip_prefix(b"Host ").filter(|_| from_iax) {
            return match iax2_host(rest) {
                Some((rule, f)) => found(rule, f),
                None => Recognition::NotFailure,
            };
        }
        if let Some(rest) = strip_either(
            msg,
            b"Rejected connect attempt from ",
            b"Rejected dial attempt from ",
        )
        .filter(|_| from_iax)
        {
            return match iax2_rejected(rest) {
                Some(f) => found(Rule::Iax2Rejected, f),
                None => Recognition::NotFailure,
            };
        }
        if file == Some(b"res_pjsip_session.c") {
            return match pjsip_call(msg) {
                Some(f) => found(Rule::PjsipNoExtension, f),
                None => Recognition::NotFailure,
            };
        }
        // res_pjsip_acl writes these words at two sites: with the packet's source (the `acl`
        // check) and with each address a Contact header names (`contact_acl`), which the
        // sender writes. One cannot be told from the other, so the line names nobody; the
        // security log's FailedACL event carries the packet's source.
        if file == Some(b"res_pjsip_acl.c")
            && msg.starts_with(b"Incoming SIP message from ")
            && msg.ends_with(b" did not pass ACL test")
        {
            return found(Rule::PjsipAcl, Found::NoAddr);
        }
        if self.dialplan_rejections {
            if let Some(a) = dialplan_rejection(line, frame) {
                return found(Rule::DialplanRejection, Found::Addr(a));
            }
        }
        if (msg.starts_with(b"Request '") || msg.starts_with(b"Request from '"))
            && from(b"pjsip_distributor.c")
        {
            return match self.pjsip(msg) {
                Some((rule, f)) => found(rule, f),
                None => Recognition::NotFailure,
            };
        }
        if let Some(rest) = msg
            .strip_prefix(b"SecurityEvent=\"")
            .filter(|_| from(b"res_security_log.c"))
        {
            return match self.security_event(rest) {
                Some(f) => found(Rule::SecurityEvent, f),
                None => Recognition::NotFailure,
            };
        }
        if let Some(a) = ami(msg).filter(|_| from(b"manager.c")) {
            return found(Rule::AmiAuth, Found::Addr(a));
        }
        Recognition::NotFailure
    }

    /// Patched chan_sip: `FROM (ADDR)`, `FROM (ADDR) for SUBSCRIBE`,
    /// `FROM (ADDR) for METHOD, code = N`, each followed by ` [astpatch:TAG]`. `rest` starts
    /// after "user "/"device ".
    fn chan_sip_tail(&self, rest: &[u8]) -> Found {
        if self.opts.tails_off {
            return Found::NoAddr;
        }
        let tail = match tag::split_line(rest) {
            Some((head, tag)) if self.opts.known_tags.contains(&tag) => head,
            // Only a remote party who wants its From header read as a patched tail writes a
            // tag that no build of ours has.
            Some(_) => return Found::Forged,
            None if tag::looks_tagged(rest) => return Found::Forged,
            None if self.opts.trust_untagged => rest,
            None => return Found::NoAddr,
        };
        Self::chan_sip_addr(tail)
    }

    fn chan_sip_addr(rest: &[u8]) -> Found {
        let mut tail = rest;
        if let Some(t) = tail.strip_suffix(b" for SUBSCRIBE") {
            tail = t;
        } else if let Some(t) = strip_method_code(tail) {
            tail = t;
        }
        tail_in(tail, b" (", b")")
            .and_then(|a| parse_addr(a, Port::Optional))
            .map_or(Found::NoAddr, Found::Addr)
    }

    /// `… failed for 'ADDR' - REASON`: REASON is one of chan_sip's fixed texts, none with a quote.
    fn register_addr(&self, msg: &[u8]) -> Option<IpAddr> {
        let sep = self.register_reason.rfind(msg)?;
        if memchr::memchr(b'\'', &msg[sep + 4..]).is_some() {
            return None;
        }
        let head = &msg[..sep];
        let p = self.register_addr.rfind(head)?;
        parse_addr(&head[p + 14..], Port::Optional)
    }

    /// `Call from 'USER' (ADDR) to extension 'EXTEN' rejected because extension not found in
    /// context 'CTX'.` (1.8.5+) — USER and EXTEN are both attacker-written.
    ///
    /// Earlier releases wrote no address: `Call from 'USER' to extension 'EXTEN' rejected
    /// because extension not found[ in context 'CTX'].` (1.4 without, 1.6.0 - 1.8.4 with the
    /// context). There a forged `' (ADDR) to extension '` in USER or EXTEN would be the only
    /// candidate, so the line itself must prove it is the newer form: Asterisk's old format always
    /// contains `' to extension '`, its new one never does. A line containing it is never trusted.
    fn call_from(&self, msg: &[u8]) -> Option<Found> {
        let old_form = memmem::find(msg, b"' to extension '").is_some();
        if msg.ends_with(b"' rejected because extension not found.") {
            return Some(Found::NoAddr);
        }
        let ctx = memmem::rfind(msg, b"' rejected because extension not found in context '")?;
        let head = &msg[..ctx];
        let mut cands = Candidates::default();
        for i in self.call_candidate.find_iter(head) {
            if cands.full() {
                break;
            }
            let rest = &head[i + 3..];
            let Some(close) = memmem::find(rest, b") to extension '") else {
                continue;
            };
            cands.add(parse_addr(&rest[..close], Port::Optional));
        }
        Some(match cands.verdict() {
            Found::Addr(a) if old_form => Found::Ambiguous(Some((a, None))),
            f => f,
        })
    }

    /// `Request 'METHOD' from 'FROM' failed for 'ADDR' (callid: CALLID) - REASON[ after N tries
    /// in X ms]` (13.10+) or `Request from 'FROM' failed for 'ADDR:PORT' (callid: …) - …` (12,
    /// 13.0). METHOD, FROM and CALLID are attacker-written; REASON is Asterisk's.
    fn pjsip(&self, msg: &[u8]) -> Option<(Rule, Found)> {
        let dash = self.pjsip_reason.rfind(msg)?;
        let mut reason = &msg[dash + 4..];
        if let Some(p) = memmem::rfind(reason, b" after ") {
            if reason.ends_with(b" ms") && memmem::find(&reason[p..], b" tries in ").is_some() {
                reason = &reason[..p];
            }
        }
        let rule = match reason {
            b"No matching endpoint found" => Rule::PjsipNoEndpoint,
            b"Failed to authenticate" | b"Error to authenticate" => Rule::PjsipAuth,
            b"Not match Endpoint ACL" | b"Not match Endpoint Contact ACL" => Rule::PjsipAcl,
            _ => return None,
        };
        let head = &msg[..dash];
        let mut cands = Candidates::default();
        for i in self.pjsip_candidate.find_iter(head) {
            if cands.full() {
                break;
            }
            let rest = &head[i + 14..];
            let Some(close) = memmem::find(rest, b"' (callid: ") else {
                continue;
            };
            cands.add(parse_addr(&rest[..close], Port::Required));
        }
        Some((rule, cands.verdict()))
    }

    /// `NAME",Field="…",…,RemoteAddress="IPV4/UDP/ADDR/PORT",…` in any field order. Values are
    /// not escaped by Asterisk, so attacker-written ones (AccountID, SessionID, Received*) may
    /// carry a forged `,RemoteAddress="…"`.
    ///
    /// chan_sip's events (`Service="SIP"`) never name an address: chan_sip fills RemoteAddress
    /// from the dialog's `p->sa`, which `check_via()` sets from the top Via's `maddr=` — a
    /// value the sender chooses (docs/provenance.md). A `Service="SIP"` written into an
    /// attacker field of another service's event only hides the attacker's own address.
    fn security_event(&self, rest: &[u8]) -> Option<Found> {
        let q = memchr::memchr(b'"', rest)?;
        if !FAILURE_EVENTS.contains(&&rest[..q]) {
            return None;
        }
        if memmem::find(rest, b",Service=\"SIP\"").is_some() {
            return Some(Found::NoAddr);
        }
        let mut cands = Candidates::default();
        for i in self.remote_address.find_iter(rest) {
            if cands.full() {
                break;
            }
            if i == 0 || rest[i - 1] != b',' {
                continue;
            }
            let v = &rest[i + 15..];
            let Some(end) = memchr::memchr(b'"', v) else {
                continue;
            };
            cands.add(security_addr(&v[..end]));
        }
        Some(cands.verdict())
    }
}

enum Found {
    Forged,
    Addr(IpAddr),
    NoAddr,
    Ambiguous(Option<(IpAddr, Option<IpAddr>)>),
}

/// The places where Asterisk's format puts the address, and what each holds. Asterisk always
/// writes the real one, so when every place holds the same address it is the source. When they
/// differ, or one holds something that is not an address (Asterisk's own could be, e.g. a
/// `(null)` for a missing field, leaving a forged one alone), nobody can tell which is real.
#[derive(Default)]
struct Candidates {
    first: Option<IpAddr>,
    /// The first address that differs from `first`.
    other: Option<IpAddr>,
    doubt: bool,
    seen: u32,
}

/// More places than this in one line is no Asterisk line but a flood of forgeries; stopping
/// there keeps a hostile line from costing quadratic time.
const MAX_CANDIDATES: u32 = 16;

impl Candidates {
    /// True once enough places were looked at; the verdict is then ambiguous.
    fn full(&mut self) -> bool {
        self.seen += 1;
        if self.seen > MAX_CANDIDATES {
            self.doubt = true;
            return true;
        }
        false
    }

    fn add(&mut self, a: Option<IpAddr>) {
        match (a, self.first) {
            (None, _) => self.doubt = true,
            (Some(a), None) => self.first = Some(a),
            (Some(a), Some(f)) => {
                if a != f {
                    self.doubt = true;
                    self.other.get_or_insert(a);
                }
            }
        }
    }

    fn verdict(&self) -> Found {
        match (self.first, self.doubt) {
            (None, false) => Found::NoAddr,
            (None, true) => Found::Ambiguous(None),
            (Some(a), true) => Found::Ambiguous(Some((a, self.other))),
            (Some(a), false) => Found::Addr(a),
        }
    }
}

fn strip_either<'a>(msg: &'a [u8], a: &[u8], b: &[u8]) -> Option<&'a [u8]> {
    msg.strip_prefix(a).or_else(|| msg.strip_prefix(b))
}

/// The text between the last `open` and the end, when the line ends with `close`.
fn tail_in<'a>(s: &'a [u8], open: &[u8], close: &[u8]) -> Option<&'a [u8]> {
    let inner = s.strip_suffix(close)?;
    let p = memmem::rfind(inner, open)?;
    Some(&inner[p + open.len()..])
}

/// Strip ` for METHOD, code = N` (shape 8), METHOD being one of chan_sip's own upper-case names.
fn strip_method_code(s: &[u8]) -> Option<&[u8]> {
    let p = memmem::rfind(s, b" for ")?;
    let t = &s[p + 5..];
    let comma = memchr::memchr(b',', t)?;
    let method = &t[..comma];
    let code = t[comma..].strip_prefix(b", code = ")?;
    let code = code.strip_prefix(b"-").unwrap_or(code);
    let ok = !method.is_empty()
        && method.iter().all(u8::is_ascii_uppercase)
        && !code.is_empty()
        && code.iter().all(u8::is_ascii_digit);
    ok.then_some(&s[..p])
}

/// `ADDR failed MD5 authentication for '…'`, `ADDR did not provide proper plaintext password
/// for '…'`, `ADDR failed to authenticate as NAME`, `ADDR denied access to register peer '…'`;
/// `NAME failed RSA authentication …` names a peer, not an address. The address starts the
/// message: nothing the sender writes comes before it.
fn iax2_host(rest: &[u8]) -> Option<(Rule, Found)> {
    let sp = memchr::memchr(b' ', rest)?;
    let after = &rest[sp..];
    let rule = if after.starts_with(b" failed MD5 authentication for '")
        || after.starts_with(b" did not provide proper plaintext password for '")
        || after.starts_with(b" failed to authenticate as ")
    {
        Rule::Iax2Auth
    } else if after.starts_with(b" denied access to register peer '") {
        Rule::Iax2Register
    } else if after.starts_with(b" failed RSA authentication with inkeys '") {
        return Some((Rule::Iax2Auth, Found::NoAddr));
    } else {
        return None;
    };
    parse_addr(&rest[..sp], Port::Optional).map(|a| (rule, Found::Addr(a)))
}

/// After `Rejected connect|dial attempt from `: `ADDR` (0.4 - 1.0), `ADDR, request '…' does
/// not exist`, `ADDR, who was trying to reach '…'`, `ADDR, request '…'` (chan_iax). The
/// `requested … incompatible with our capability` forms are a codec mismatch, not an attack.
fn iax2_rejected(rest: &[u8]) -> Option<Found> {
    let end = memchr::memchr(b',', rest).unwrap_or(rest.len());
    let tail = &rest[end..];
    if !(tail.is_empty()
        || tail.starts_with(b", request '")
        || tail.starts_with(b", who was trying to reach '"))
    {
        return None;
    }
    parse_addr(&rest[..end], Port::Optional).map(Found::Addr)
}

/// res_pjsip_session: `Call from 'ENDPOINT' (TRANSPORT:ADDR) to extension 'EXTEN' rejected
/// because extension not found in context 'CTX'.` (12 - 18) or `NAME: Call (TRANSPORT:ADDR) to
/// extension …` (16.1+). ENDPOINT and NAME are the identified endpoint's configured id (or its
/// channel's name), so the first `(` after them is Asterisk's; EXTEN, which the sender writes,
/// comes after the address. ADDR is `HOST:PORT` (12 - 16.0: a bare IPv6 host) or pjproject's
/// `[HOST]:PORT`.
fn pjsip_call(msg: &[u8]) -> Option<Found> {
    let open = if let Some(rest) = msg.strip_prefix(b"Call from '") {
        msg.len() - rest.len() + memmem::find(rest, b"' (")? + 3
    } else {
        memmem::find(msg, b": Call (")? + 8
    };
    // Only a finished message: an unfinished one is line provenance's.
    if !crate::logs::provenance::call_ends(msg) {
        return None;
    }
    let inner = &msg[open..];
    let close = memmem::find(inner, b") to extension '")?;
    let inner = &inner[..close];
    let colon = memchr::memchr(b':', inner)?;
    let transport = &inner[..colon];
    if transport.is_empty()
        || !transport
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-')
    {
        return None;
    }
    Some(parse_addr(&inner[colon + 1..], Port::Required).map_or(Found::NoAddr, Found::Addr))
}

/// Old chan_sip (0.1.12 - 1.0): `Registration from '…' failed for 'ADDR'`, the address ending
/// the line.
fn old_register_addr(msg: &[u8]) -> Option<IpAddr> {
    let inner = msg.strip_suffix(b"'")?;
    let p = memmem::rfind(inner, b"' failed for '")?;
    parse_addr(&inner[p + 14..], Port::Optional)
}

/// FreePBX's `Rejecting unknown SIP connection from ADDR` from dialplan `Log()` (frame
/// `Ext. EXTEN: "…"` or, via syslog, `: Ext. EXTEN:PRIO in @ CONTEXT: "…"`). The address, from
/// `${CHANNEL(recvip)}`, ends the line; the caller's extension sits in the frame before it.
fn dialplan_rejection(line: &[u8], frame: &frame::Frame) -> Option<IpAddr> {
    let msg = &line[frame.msg_start..];
    let dialplan = match frame.file {
        Some((a, b)) => &line[a..b] == b"Ext.",
        None => msg.starts_with(b"Ext. "),
    };
    if !dialplan || &line[frame.level.0..frame.level.1] != b"WARNING" {
        return None;
    }
    let body = msg.strip_suffix(b"\"").unwrap_or(msg);
    let p = memmem::rfind(body, b"Rejecting unknown SIP connection from ")?;
    parse_addr(&body[p + 38..], Port::Optional)
}

/// AMI: the message starts with the address Asterisk took from the TCP connection.
fn ami(msg: &[u8]) -> Option<IpAddr> {
    let sp = memchr::memchr(b' ', msg)?;
    let after = &msg[sp..];
    if after.starts_with(b" tried to authenticate with nonexistent user '")
        || after.starts_with(b" failed to authenticate as '")
        || after.starts_with(b" failed to pass IP ACL as '")
    {
        return parse_addr(&msg[..sp], Port::Optional);
    }
    None
}

/// `IPV4/UDP/203.0.113.7/5060`, `IPV6/TCP/[2001:db8::7]/5060`, `IPV4/203.0.113.7/5060`.
pub fn security_addr(v: &[u8]) -> Option<IpAddr> {
    let rest = v
        .strip_prefix(b"IPV4/")
        .or_else(|| v.strip_prefix(b"IPV6/"))?;
    let rest = ["UDP/", "TCP/", "TLS/", "WS/", "WSS/"]
        .iter()
        .find_map(|t| rest.strip_prefix(t.as_bytes()))
        .unwrap_or(rest);
    let slash = memchr::memrchr(b'/', rest)?;
    let port = &rest[slash + 1..];
    if port.is_empty() || !port.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let host = &rest[..slash];
    let host = host
        .strip_prefix(b"[")
        .and_then(|h| h.strip_suffix(b"]"))
        .unwrap_or(host);
    parse_ip(host)
}

/// Whether an address printed by Asterisk carries a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// `ADDR`, `ADDR:PORT` (IPv4), `[V6]:PORT`, `[V6]` or bare `V6`.
    Optional,
    /// `ADDR:PORT` always present: pjsip's `%s:%d` prints a bare IPv6 followed by `:port`.
    Required,
}

/// An address as Asterisk prints it; IPv4-mapped IPv6 comes back as IPv4.
pub fn parse_addr(s: &[u8], port: Port) -> Option<IpAddr> {
    if s.len() > 64 {
        return None;
    }
    if let Some(rest) = s.strip_prefix(b"[") {
        let close = memchr::memchr(b']', rest)?;
        let after = &rest[close + 1..];
        let port_ok = match after.strip_prefix(b":") {
            Some(p) => !p.is_empty() && p.iter().all(u8::is_ascii_digit),
            None => after.is_empty() && port == Port::Optional,
        };
        return if port_ok {
            parse_ip(&rest[..close])
        } else {
            None
        };
    }
    if port == Port::Optional {
        if let Some(a) = parse_ip(s) {
            return Some(a);
        }
    }
    let colon = memchr::memrchr(b':', s)?;
    let p = &s[colon + 1..];
    if p.is_empty() || p.len() > 5 || !p.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let host = &s[..colon];
    match port {
        // Outside pjsip an unbracketed host with a port is IPv4 (Asterisk brackets IPv6).
        Port::Optional => parse_ip(host).filter(IpAddr::is_ipv4),
        Port::Required => parse_ip(host),
    }
}

fn parse_ip(s: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(s).ok()?;
    let a: IpAddr = s.parse().ok()?;
    Some(match a {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_996_800;
    const T: i64 = 1_795_515_072;

    /// `trust`: `patched = true` (untagged tails believed). TAG is always a known build.
    fn rec(trust: bool) -> Recogniser {
        Recogniser::with_time_context(
            RecogniseOptions {
                known_tags: vec![TAG.parse().unwrap()],
                trust_untagged: trust,
                ..Default::default()
            },
            TimeContext::utc(NOW),
        )
    }

    const TAG: &str = "00112233445566ff";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn fail(rule: Rule, a: &str) -> Recognition {
        Recognition::Failure {
            rule,
            addr: ip(a),
            time: Some(T),
        }
    }

    const F: &str = "[Nov 24 10:11:12] NOTICE[1234] chan_sip.c: ";

    fn line(msg: &str) -> String {
        format!("{F}{msg}")
    }

    #[test]
    fn patched_chan_sip_every_shape() {
        let r = rec(true);
        for (msg, a) in [
            (
                "Failed to authenticate user \"100\" <sip:100@192.0.2.1>;tag=as1 (203.0.113.7:5060)",
                "203.0.113.7",
            ),
            (
                "Failed to authenticate user <sip:100@192.0.2.1> (203.0.113.7:5060) for SUBSCRIBE",
                "203.0.113.7",
            ),
            (
                "Failed to authenticate device <sip:100@192.0.2.1>;tag=a (203.0.113.7:5061)",
                "203.0.113.7",
            ),
            (
                "Failed to authenticate device <sip:100@192.0.2.1> ([2001:db8::7]:5060)",
                "2001:db8::7",
            ),
            (
                "Failed to authenticate device <sip:100@192.0.2.1> (203.0.113.7) for SUBSCRIBE",
                "203.0.113.7",
            ),
            (
                "Failed to authenticate device <sip:100@192.0.2.1>;tag=x (203.0.113.7:5060) for REGISTER, code = -1",
                "203.0.113.7",
            ),
            (
                "Failed to authenticate device <sip:1@h> ([2001:db8::7]:5060) for INVITE, code = 3",
                "2001:db8::7",
            ),
        ] {
            assert_eq!(
                r.recognise(line(msg).as_bytes()),
                fail(Rule::ChanSipAuth, a),
                "{msg}"
            );
        }
        assert_eq!(
            r.recognise(
                line("Sending fake auth rejection for device <sip:x@y> (203.0.113.8:5060)")
                    .as_bytes()
            ),
            fail(Rule::ChanSipFakeAuth, "203.0.113.8")
        );
        assert_eq!(
            r.recognise(
                line("Sending fake auth rejection for user <sip:x@y> (203.0.113.8:5060)")
                    .as_bytes()
            ),
            fail(Rule::ChanSipFakeAuth, "203.0.113.8")
        );
    }

    #[test]
    fn tagged_lines_are_believed_by_default_and_unknown_tags_are_forged() {
        let auto = rec(false);
        let forms = [
            "Failed to authenticate device \"x\" <sip:1@h>;tag=a (203.0.113.7:5060)",
            "Failed to authenticate device <sip:1@h> (203.0.113.7:5060) for SUBSCRIBE",
            "Failed to authenticate device <sip:1@h>;tag=x (203.0.113.7:5060) for INVITE, code = -1",
            "Failed to authenticate user <sip:1@h> (203.0.113.7:5060)",
        ];
        for m in forms {
            let tagged = line(&format!("{m} [astpatch:{TAG}]"));
            assert_eq!(
                auto.recognise(tagged.as_bytes()),
                fail(Rule::ChanSipAuth, "203.0.113.7"),
                "{tagged}"
            );
            // The same words without the tag: a stock module could have written them.
            assert_eq!(
                auto.recognise(line(m).as_bytes()),
                Recognition::NoAddress {
                    rule: Rule::ChanSipAuth,
                    time: Some(T)
                },
                "{m}"
            );
            // A tag nobody built, or text shaped like one: forged, whatever the setting.
            for bad in [
                " [astpatch:0123456789abcdef]",
                " [astpatch:00112233445566FF]",
                " [astpatch:zz]",
                " [astpatch:00112233445566ff",
            ] {
                for r in [rec(false), rec(true)] {
                    let l = line(&format!("{m}{bad}"));
                    assert_eq!(
                        r.recognise(l.as_bytes()),
                        Recognition::Forged {
                            rule: Rule::ChanSipAuth,
                            time: Some(T)
                        },
                        "{l}"
                    );
                }
            }
        }
        let fake = line(&format!(
            "Sending fake auth rejection for device <sip:x@y> (203.0.113.8:5060) [astpatch:{TAG}]"
        ));
        assert_eq!(
            auto.recognise(fake.as_bytes()),
            fail(Rule::ChanSipFakeAuth, "203.0.113.8")
        );
        // The address is the one right before the tag, whatever the From header holds.
        let l = line(&format!(
            "Failed to authenticate device \"(192.0.2.1:5060) [astpatch:{TAG}]\" <sip:1@h> (203.0.113.7:5060) [astpatch:{TAG}]"
        ));
        assert_eq!(
            auto.recognise(l.as_bytes()),
            fail(Rule::ChanSipAuth, "203.0.113.7")
        );
        // A stock line whose From header ends the line with a known tag and an address is
        // what an attacker who knew the tag would write; it cannot be told apart, which is why
        // the tag is secret. Without the tag it is no address, never the From's address.
        let l = line("Failed to authenticate device \"x\" <sip:1@h>;tag=(192.0.2.1:5060)");
        assert!(matches!(
            auto.recognise(l.as_bytes()),
            Recognition::NoAddress { .. }
        ));
    }

    #[test]
    fn stock_chan_sip_lines_have_no_address_whatever_the_trust() {
        let untrusted = rec(false);
        let l = line("Failed to authenticate device <sip:100@192.0.2.1>;tag=a (203.0.113.7:5061)");
        assert_eq!(
            untrusted.recognise(l.as_bytes()),
            Recognition::NoAddress {
                rule: Rule::ChanSipAuth,
                time: Some(T)
            }
        );
        let trusted = rec(true);
        let l = line("Failed to authenticate device <sip:100@192.0.2.1>;tag=as6e1");
        assert_eq!(
            trusted.recognise(l.as_bytes()),
            Recognition::NoAddress {
                rule: Rule::ChanSipAuth,
                time: Some(T)
            }
        );
    }

    #[test]
    fn chan_sip_registration_all_reasons_and_eras() {
        let r = rec(false);
        for (msg, a) in [
            (
                "Registration from '<sip:100@192.0.2.1>' failed for '203.0.113.7:5060' - Wrong password",
                "203.0.113.7",
            ),
            (
                "Registration from '\"x\"<sip:1@h>' failed for '203.0.113.7' - No matching peer found",
                "203.0.113.7",
            ),
            (
                "Registration from '<sip:1@h>' failed for '[2001:db8::7]:5060' - Device does not match ACL",
                "2001:db8::7",
            ),
            (
                "Registration from '<sip:1@h>' failed for '203.0.113.7:5060' - Username/auth name mismatch",
                "203.0.113.7",
            ),
            (
                "Registration from '<sip:1@h>' failed for '203.0.113.7:5060' - Not a local domain",
                "203.0.113.7",
            ),
            (
                "Registration from '<sip:1@h>' failed for '203.0.113.7:5060' - Peer is not supposed to register",
                "203.0.113.7",
            ),
            (
                "Registration from '<sip:1@h>' failed for '203.0.113.7' - ACL error (permit/deny)",
                "203.0.113.7",
            ),
        ] {
            assert_eq!(
                r.recognise(line(msg).as_bytes()),
                fail(Rule::ChanSipRegister, a),
                "{msg}"
            );
        }
    }

    #[test]
    fn call_from_needs_exactly_one_candidate() {
        let r = rec(false);
        let ok = line(
            "Call from '100' (203.0.113.7:5060) to extension '900441' rejected because extension not found in context 'public'.",
        );
        assert_eq!(
            r.recognise(ok.as_bytes()),
            fail(Rule::ChanSipNoExtension, "203.0.113.7")
        );
        let forged = line(
            "Call from 'x' (192.0.2.1:5060) to extension 'y' (203.0.113.7:5060) to extension '9' rejected because extension not found in context 'public'.",
        );
        assert_eq!(
            r.recognise(forged.as_bytes()),
            Recognition::Ambiguous {
                rule: Rule::ChanSipNoExtension,
                time: Some(T),
                pair: Some((ip("192.0.2.1"), Some(ip("203.0.113.7"))))
            }
        );
        let old = line(
            "Call from 'x' (192.0.2.1) to extension '9' rejected because extension not found.",
        );
        assert_eq!(
            r.recognise(old.as_bytes()),
            Recognition::NoAddress {
                rule: Rule::ChanSipNoExtension,
                time: Some(T)
            }
        );
    }

    #[test]
    fn iax2_and_ami() {
        let r = rec(false);
        let f = "[2026-11-24 10:11:12] NOTICE[42] chan_iax2.c: ";
        assert_eq!(
            r.recognise(
                format!("{f}No registration for peer '6.6.6.6' (from 203.0.113.7)").as_bytes()
            ),
            fail(Rule::Iax2NoPeer, "203.0.113.7")
        );
        assert_eq!(
            r.recognise(
                format!("{f}Host 203.0.113.7 failed MD5 authentication for '100' (abc != def)")
                    .as_bytes()
            ),
            fail(Rule::Iax2Auth, "203.0.113.7")
        );
        assert_eq!(
            r.recognise(
                format!(
                    "{f}Host [2001:db8::7] did not provide proper plaintext password for '100'"
                )
                .as_bytes()
            ),
            fail(Rule::Iax2Auth, "2001:db8::7")
        );
        assert_eq!(
            r.recognise(
                format!("{f}Host 6.6.6.6 failed RSA authentication with inkeys 'k'").as_bytes()
            ),
            Recognition::NoAddress {
                rule: Rule::Iax2Auth,
                time: Some(T)
            }
        );
        let m = "[2026-11-24 10:11:12] NOTICE[42] manager.c: ";
        for msg in [
            "203.0.113.7 tried to authenticate with nonexistent user 'admin'",
            "203.0.113.7 failed to authenticate as 'admin'",
            "203.0.113.7 failed to pass IP ACL as 'admin'",
        ] {
            assert_eq!(
                r.recognise(format!("{m}{msg}").as_bytes()),
                fail(Rule::AmiAuth, "203.0.113.7"),
                "{msg}"
            );
        }
    }

    #[test]
    fn pjsip_reasons_eras_and_forged_candidates() {
        let r = rec(false);
        let f = "[2026-11-24 10:11:12] NOTICE[42] res_pjsip/pjsip_distributor.c: ";
        for (msg, rule, a) in [
            (
                "Request 'REGISTER' from '<sip:100@192.0.2.1>' failed for '203.0.113.7:5060' (callid: abc) - No matching endpoint found",
                Rule::PjsipNoEndpoint,
                "203.0.113.7",
            ),
            (
                "Request 'INVITE' from '<sip:100@192.0.2.1>' failed for '203.0.113.7:5060' (callid: abc) - No matching endpoint found after 5 tries in 3.210 ms",
                Rule::PjsipNoEndpoint,
                "203.0.113.7",
            ),
            (
                "Request 'REGISTER' from '<sip:100@h>' failed for '[2001:db8::7]:5060' (callid: a) - Failed to authenticate",
                Rule::PjsipAuth,
                "2001:db8::7",
            ),
            (
                "Request 'REGISTER' from '<sip:100@h>' failed for '203.0.113.7:5060' (callid: a) - Error to authenticate",
                Rule::PjsipAuth,
                "203.0.113.7",
            ),
            (
                "Request 'INVITE' from '<sip:100@h>' failed for '203.0.113.7:5060' (callid: a) - Not match Endpoint ACL",
                Rule::PjsipAcl,
                "203.0.113.7",
            ),
            (
                "Request from '<sip:100@h>' failed for '2001:db8::7:5060' (callid: a) - No matching endpoint found",
                Rule::PjsipNoEndpoint,
                "2001:db8::7",
            ),
        ] {
            assert_eq!(
                r.recognise(format!("{f}{msg}").as_bytes()),
                fail(rule, a),
                "{msg}"
            );
        }
        let forged = format!(
            "{f}Request 'INVITE' from '<sip:100@h>' failed for '203.0.113.7:5060' (callid: x' failed for '192.0.2.1:5060' (callid: y) - No matching endpoint found"
        );
        assert_eq!(
            r.recognise(forged.as_bytes()),
            Recognition::Ambiguous {
                rule: Rule::PjsipNoEndpoint,
                time: Some(T),
                pair: Some((ip("203.0.113.7"), Some(ip("192.0.2.1"))))
            }
        );
    }

    #[test]
    fn security_events_any_field_order() {
        let r = rec(false);
        let f = "[2026-11-24 10:11:12] SECURITY[42] res_security_log.c: ";
        for msg in [
            "SecurityEvent=\"InvalidPassword\",EventTV=\"2026-11-24T10:11:12.000+0000\",Severity=\"Error\",Service=\"PJSIP\",EventVersion=\"2\",AccountID=\"100\",SessionID=\"0x7f\",LocalAddress=\"IPV4/UDP/192.0.2.1/5060\",RemoteAddress=\"IPV4/UDP/203.0.113.7/5060\",Challenge=\"1\",ReceivedChallenge=\"1\",ReceivedHash=\"ab\"",
            "SecurityEvent=\"ChallengeResponseFailed\",RemoteAddress=\"IPV4/UDP/203.0.113.7/5060\",LocalAddress=\"IPV4/UDP/192.0.2.1/5060\"",
            "SecurityEvent=\"InvalidAccountID\",EventTV=\"x\",Severity=\"Error\",Service=\"PJSIP\",AccountID=\"99\",LocalAddress=\"IPV4/UDP/192.0.2.1/5060\",RemoteAddress=\"IPV4/203.0.113.7/5060\"",
        ] {
            assert_eq!(
                r.recognise(format!("{f}{msg}").as_bytes()),
                fail(Rule::SecurityEvent, "203.0.113.7"),
                "{msg}"
            );
        }
        assert_eq!(
            r.recognise(
                format!(
                    "{f}SecurityEvent=\"FailedACL\",RemoteAddress=\"IPV6/UDP/[2001:db8::7]/5060\""
                )
                .as_bytes()
            ),
            fail(Rule::SecurityEvent, "2001:db8::7")
        );
        for msg in [
            "SecurityEvent=\"SuccessfulAuth\",RemoteAddress=\"IPV4/UDP/203.0.113.7/5060\"",
            "SecurityEvent=\"ChallengeSent\",RemoteAddress=\"IPV4/UDP/203.0.113.7/5060\"",
        ] {
            assert_eq!(
                r.recognise(format!("{f}{msg}").as_bytes()),
                Recognition::NotFailure,
                "{msg}"
            );
        }
        let forged = format!(
            "{f}SecurityEvent=\"InvalidAccountID\",AccountID=\"x\",RemoteAddress=\"IPV4/UDP/192.0.2.1/5060\",RemoteAddress=\"IPV4/UDP/203.0.113.7/5060\""
        );
        assert_eq!(
            r.recognise(forged.as_bytes()),
            Recognition::Ambiguous {
                rule: Rule::SecurityEvent,
                time: Some(T),
                pair: Some((ip("192.0.2.1"), Some(ip("203.0.113.7"))))
            }
        );
    }

    #[test]
    fn outbound_and_other_near_misses_are_not_failures() {
        let r = rec(true);
        for msg in [
            "Failed to authenticate on INVITE to '\"100\" <sip:100@192.0.2.1>;tag=as1'",
            "Failed to authenticate on REGISTER to 'trunk@sip.example.net' (Tries 3)",
            "Failed to authenticate MESSAGE with host 'sip.example.net'",
            "Registered SIP '100' at 203.0.113.7:5060",
            "Host 203.0.113.7 failed to register",
            "Peer '100' is now Reachable. (20ms / 2000ms)",
        ] {
            assert_eq!(
                r.recognise(line(msg).as_bytes()),
                Recognition::NotFailure,
                "{msg}"
            );
        }
    }

    #[test]
    fn crlf_and_unframed_lines() {
        let r = rec(false);
        let l =
            line("Registration from '<sip:1@h>' failed for '203.0.113.7:5060' - Wrong password\r");
        assert_eq!(
            r.recognise(l.as_bytes()),
            fail(Rule::ChanSipRegister, "203.0.113.7")
        );
        // No frame: the message could start anywhere, so the line is not trusted.
        let l = "junk Registration from '<sip:1@h>' failed for '203.0.113.7:5060' - Wrong password";
        assert_eq!(r.recognise(l.as_bytes()), Recognition::NotFailure);
    }

    #[test]
    fn a_flood_of_places_is_ambiguous_and_fast() {
        let r = rec(false);
        let user = "' (".repeat(100_000);
        let l = line(&format!(
            "Call from '{user}' (203.0.113.7:5060) to extension '1' rejected because extension not found in context 'public'."
        ));
        let t = std::time::Instant::now();
        assert_eq!(
            r.recognise(l.as_bytes()),
            Recognition::Ambiguous {
                rule: Rule::ChanSipNoExtension,
                time: Some(T),
                pair: None
            }
        );
        let from = "' failed for '".repeat(50_000);
        let l = format!(
            "[2026-11-24 10:11:12] NOTICE[42] res_pjsip/pjsip_distributor.c: Request 'INVITE' from '{from}' failed for '203.0.113.7:5060' (callid: a) - No matching endpoint found"
        );
        assert!(matches!(
            r.recognise(l.as_bytes()),
            Recognition::Ambiguous { .. }
        ));
        assert!(
            t.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn address_forms() {
        let o = Port::Optional;
        assert_eq!(parse_addr(b"203.0.113.7", o), Some(ip("203.0.113.7")));
        assert_eq!(parse_addr(b"203.0.113.7:5060", o), Some(ip("203.0.113.7")));
        assert_eq!(
            parse_addr(b"[2001:db8::7]:5060", o),
            Some(ip("2001:db8::7"))
        );
        assert_eq!(parse_addr(b"2001:db8::7", o), Some(ip("2001:db8::7")));
        assert_eq!(
            parse_addr(b"::ffff:203.0.113.7", o),
            Some(ip("203.0.113.7"))
        );
        assert_eq!(
            parse_addr(b"2001:db8::7:5060", Port::Required),
            Some(ip("2001:db8::7"))
        );
        assert_eq!(parse_addr(b"203.0.113.7", Port::Required), None);
        for bad in [
            &b"host.example"[..],
            b"1.2.3.4:",
            b"[::1",
            b"1.2.3.4:5060:1",
            b"",
            b"1.2.3.4 ",
        ] {
            assert_eq!(parse_addr(bad, o), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn dialplan_rejections_only_when_the_operator_opts_in() {
        let lines = [
            (
                "[2013-11-11 14:33:38] WARNING[6756][C-0000001d] Ext. s: \"Rejecting unknown SIP connection from 203.0.113.7\"",
                "203.0.113.7",
            ),
            (
                "[2013-11-11 14:33:38] WARNING[8447][C-00000244] Ext. s: \"Rejecting unknown SIP connection from 203.0.113.7:52126\"",
                "203.0.113.7",
            ),
            (
                "[2013-11-11 14:33:38] WARNING[12124][C-00000001] Ext. s: \"Rejecting unknown SIP connection from [2001:db8::1]:5060\"",
                "2001:db8::1",
            ),
            (
                "Mar  1 15:35:53 pbx asterisk[2350]: WARNING[1195][C-00000b43]: Ext. s:6 in @ from-sip-external: \"Rejecting unknown SIP connection from 203.0.113.7\"",
                "203.0.113.7",
            ),
            // The caller's extension sits in the frame; the address the dialplan wrote ends the line.
            (
                "[2013-11-11 14:33:38] WARNING[1][C-1] Ext. Rejecting unknown SIP connection from 6.6.6.6: \"Rejecting unknown SIP connection from 203.0.113.7\"",
                "203.0.113.7",
            ),
        ];
        let mut r = rec(false);
        for (l, _) in lines {
            assert_eq!(r.recognise(l.as_bytes()), Recognition::NotFailure, "{l}");
        }
        r.set_dialplan_rejections(true);
        for (l, a) in lines {
            assert!(
                matches!(r.recognise(l.as_bytes()), Recognition::Failure { rule: Rule::DialplanRejection, addr, .. } if addr == ip(a)),
                "{l}"
            );
        }
        // Only a dialplan frame at WARNING, and only at the end of the line.
        for l in [
            "[2013-11-11 14:33:38] NOTICE[1] chan_sip.c: Rejecting unknown SIP connection from 192.0.2.1",
            "[2013-11-11 14:33:38] VERBOSE[1][C-1] Ext. s: \"Rejecting unknown SIP connection from 192.0.2.1\"",
            "[2013-11-11 14:33:38] WARNING[1][C-1] Ext. s: \"Rejecting unknown SIP connection from 192.0.2.1 x\"",
        ] {
            assert_eq!(r.recognise(l.as_bytes()), Recognition::NotFailure, "{l}");
        }
    }

    #[test]
    fn rule_names_round_trip() {
        for r in Rule::ALL {
            assert_eq!(Rule::from_name(r.name()), Some(r));
        }
    }

    #[test]
    fn only_pjproject_itself_can_announce_a_packet_dump() {
        let r = rec(true);
        let head = "Error processing 433 bytes packet from UDP 203.0.113.66:5060 : PJSIP syntax error exception when parsing 'Request Line' header on line 1 col 1:";
        let file =
            format!("[2026-11-24 10:11:12] ERROR[6120] pjproject: \tsip_transport.c  {head}");
        assert_eq!(r.packet_dump(file.as_bytes()), Some(433 + 1 + 18));
        let console = format!(
            "[2026-11-24 10:11:12] ERROR[6120]: pjproject:0 <?>: \tsip_transport.c  {head}\r"
        );
        assert_eq!(r.packet_dump(console.as_bytes()), Some(433 + 1 + 18));
        // A remote party's From header saying the same must not make readers skip what follows.
        for forged in [
            format!("[2026-11-24 10:11:12] NOTICE[1] chan_sip.c: Failed to authenticate device <sip:x@y> {head}"),
            format!("[2026-11-24 10:11:12] ERROR[6120] res_pjsip.c: {head}"),
            format!("[2026-11-24 10:11:12] ERROR[6120] pjproject: \tsip_transport.c  {head} more"),
            "[2026-11-24 10:11:12] ERROR[6120] pjproject: Error processing 99999999 bytes packet from x:".to_owned(),
        ] {
            assert_eq!(r.packet_dump(forged.as_bytes()), None, "{forged}");
        }
        assert_eq!(r.recognise(file.as_bytes()), Recognition::NotFailure);
    }

    #[test]
    fn a_line_reader_skips_exactly_the_dumped_packet() {
        let r = rec(true);
        let forged = "[2026-11-24 10:11:13] NOTICE[1] chan_iax2.c: Host 192.0.2.1 failed MD5 authentication for 'x' (a != b)";
        let packet = format!("JUNK\r\n{forged}\r\n-- end of packet.\r\n{forged}\r\n");
        let log = format!(
            "[2026-11-24 10:11:13] ERROR[6120] pjproject: \tsip_transport.c  Error processing {} bytes packet from UDP 203.0.113.66:5060 : x:\n{packet}\n-- end of packet.\n{forged}\n",
            packet.len()
        );
        let mut skip = PacketDumpSkip::default();
        let verdicts: Vec<bool> = log
            .trim_end_matches('\n')
            .split('\n')
            .map(|l| skip.skip(&r, l.as_bytes()))
            .collect();
        // Header, the packet's five lines (its last newline ends an empty one), the end marker
        // are skipped; the real line after them is read.
        assert_eq!(verdicts, [true, true, true, true, true, true, true, false]);
    }
}
