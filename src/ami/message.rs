//! AMI's wire format: a banner line (`Asterisk Call Manager/7.0.3`), then messages of
//! `Key: Value` lines ending in CRLF, each message ending with an empty line. Parsing is pure
//! and allocation-free per field, so it keeps up with any event rate Asterisk can write.

/// One message's fields in order, borrowed from the block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    pub fields: Vec<(&'a str, &'a str)>,
}

/// Why a block is not a message astpatch believes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Malformed {
    /// Not UTF-8.
    Encoding,
    /// A line without `": "`.
    NoSeparator,
    /// A key given twice: a value held a CRLF and the sender wrote a field of its own.
    Duplicate(String),
    /// A bare CR or LF inside a value: text no well-formed AMI writer sends.
    StrayLineBreak,
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Malformed::Encoding => f.write_str("not UTF-8"),
            Malformed::NoSeparator => f.write_str("a line without \": \""),
            Malformed::Duplicate(k) => {
                write!(f, "{k} given twice (a value held a line break)")
            }
            Malformed::StrayLineBreak => f.write_str("a bare CR or LF inside a value"),
        }
    }
}

impl<'a> Message<'a> {
    /// The first value of `key` (keys compare without case, as Asterisk's do).
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| *v)
    }
}

/// Parse one block (without its terminating empty line). A key given twice refuses the whole
/// block: that only happens when a value carried a CRLF and the sender spliced in a field.
pub fn parse(block: &[u8]) -> Result<Message<'_>, Malformed> {
    let text = std::str::from_utf8(block).map_err(|_| Malformed::Encoding)?;
    let mut fields: Vec<(&str, &str)> = Vec::with_capacity(16);
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        if line.contains(['\r', '\n']) {
            return Err(Malformed::StrayLineBreak);
        }
        // `Key:` with an empty value (no space after the colon) is a field too.
        let (k, v) = match line.split_once(": ") {
            Some(kv) => kv,
            None => (line.strip_suffix(':').ok_or(Malformed::NoSeparator)?, ""),
        };
        if fields.iter().any(|(seen, _)| seen.eq_ignore_ascii_case(k)) {
            return Err(Malformed::Duplicate(k.to_owned()));
        }
        fields.push((k, v));
    }
    Ok(Message { fields })
}

/// Cuts a byte stream into blocks at each empty line, keeping what is incomplete for later.
#[derive(Debug, Default)]
pub struct Splitter {
    buf: Vec<u8>,
    /// Where the next block starts in `buf` (consumed bytes are dropped in bulk, not per block).
    start: usize,
    /// Where the unsearched part of `buf` starts (a terminator may straddle two reads).
    from: usize,
}

/// The most bytes one block may take: a bigger one is no AMI event (a flood), dropped.
pub const MAX_BLOCK: usize = 64 * 1024;

impl Splitter {
    /// Add bytes read from the socket.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.from -= self.start;
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete block, without its `\r\n\r\n`. `Some(Err(n))` when `n` bytes without a
    /// terminator were dropped as too long.
    pub fn next_block(&mut self) -> Option<Result<&[u8], usize>> {
        let from = self.from.max(self.start);
        match memchr::memmem::find(&self.buf[from..], b"\r\n\r\n") {
            Some(i) => {
                let (begin, end) = (self.start, from + i);
                self.start = end + 4;
                self.from = self.start;
                Some(Ok(&self.buf[begin..end]))
            }
            None if self.buf.len() - self.start > MAX_BLOCK => {
                let n = self.buf.len() - self.start;
                self.buf.clear();
                self.start = 0;
                self.from = 0;
                Some(Err(n))
            }
            None => {
                self.from = self.buf.len().saturating_sub(3).max(self.start);
                None
            }
        }
    }

    /// Take the banner line (`Asterisk Call Manager/…`) if it is complete.
    pub fn banner(&mut self) -> Option<String> {
        let i = memchr::memmem::find(&self.buf[self.start..], b"\r\n")?;
        let line = String::from_utf8_lossy(&self.buf[self.start..self.start + i]).into_owned();
        self.start += i + 2;
        self.from = self.start;
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_in_order_and_case_blind_lookup() {
        let m = parse(
            b"Event: InvalidPassword\r\nService: PJSIP\r\nRemoteAddress: IPV4/UDP/10.96.0.2/5060",
        )
        .unwrap();
        assert_eq!(m.get("event"), Some("InvalidPassword"));
        assert_eq!(m.get("RemoteAddress"), Some("IPV4/UDP/10.96.0.2/5060"));
        assert_eq!(m.fields.len(), 3);
    }

    #[test]
    fn a_spliced_field_refuses_the_block() {
        // AccountID held CRLF + a RemoteAddress of the sender's choosing.
        let b = b"Event: InvalidAccountID\r\nAccountID: x\r\nRemoteAddress: IPV4/UDP/192.0.2.1/5060\r\nSessionID: s\r\nRemoteAddress: IPV4/UDP/10.96.0.2/5060";
        assert_eq!(parse(b), Err(Malformed::Duplicate("RemoteAddress".into())));
        assert_eq!(
            parse(b"Event: X\r\nAccountID: a\nb"),
            Err(Malformed::StrayLineBreak)
        );
        assert_eq!(parse(b"Event: X\r\nnonsense"), Err(Malformed::NoSeparator));
    }

    #[test]
    fn blocks_split_across_reads_and_floods_are_dropped() {
        let mut s = Splitter::default();
        s.push(b"Asterisk Call Manager/7.0.3\r\nResponse: Success\r\nMessage: Authentication accepted\r");
        assert_eq!(s.banner().as_deref(), Some("Asterisk Call Manager/7.0.3"));
        assert!(s.next_block().is_none());
        s.push(b"\n\r\nEvent: A\r\n\r\nEvent: B\r\n");
        assert_eq!(
            s.next_block(),
            Some(Ok(
                &b"Response: Success\r\nMessage: Authentication accepted"[..]
            ))
        );
        assert_eq!(s.next_block(), Some(Ok(&b"Event: A"[..])));
        assert!(s.next_block().is_none());
        s.push(b"\r\n");
        assert_eq!(s.next_block(), Some(Ok(&b"Event: B"[..])));
        s.push(&vec![b'x'; MAX_BLOCK + 1]);
        assert_eq!(s.next_block(), Some(Err(MAX_BLOCK + 1)));
    }
}
