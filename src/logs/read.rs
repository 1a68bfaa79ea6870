//! Reading log files line by line, fast and safely: plain files, gzip-rotated ones
//! (`messages.1.gz`, detected by content, not name) and stdin; big buffered reads; lines
//! handed out as byte slices into the buffer (no allocation per line, no UTF-8 requirement, NUL
//! bytes are just bytes); a line longer than the limit is skipped and reported, so one 10 MB
//! line without a newline cannot exhaust memory.
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Lines up to this long are always delivered; a longer one is skipped once it outgrows the
/// read buffer (Asterisk's own lines stay far below it).
pub const DEFAULT_MAX_LINE: usize = 1 << 20;
const CHUNK: usize = 1 << 20;

/// Where lines come from: a path, or `-` for stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Stdin,
    File(PathBuf),
}

impl Source {
    pub fn from_arg(arg: &Path) -> Source {
        if arg == Path::new("-") {
            Source::Stdin
        } else {
            Source::File(arg.to_owned())
        }
    }

    pub fn name(&self) -> String {
        match self {
            Source::Stdin => "-".into(),
            Source::File(p) => p.display().to_string(),
        }
    }

    /// Open for reading, unpacking gzip when the content starts with its magic bytes.
    /// A directory or missing file is an input error naming it.
    pub fn open(&self) -> Result<Box<dyn Read>> {
        let reader: Box<dyn Read> = match self {
            Source::Stdin => Box::new(io::stdin().lock()),
            Source::File(p) => {
                let meta = std::fs::metadata(p).map_err(|e| Error::io(p, e))?;
                if meta.is_dir() {
                    return Err(Error::input(
                        format!("{}: is a directory, not a log file", p.display()),
                        Some("name the log files themselves, e.g. /var/log/asterisk/messages*"),
                    ));
                }
                Box::new(File::open(p).map_err(|e| Error::io(p, e))?)
            }
        };
        Ok(ungzip(reader))
    }
}

/// Peek at the first two bytes; gzip streams are decoded, anything else passed through.
fn ungzip(mut r: Box<dyn Read>) -> Box<dyn Read> {
    let mut magic = [0u8; 2];
    let mut got = 0;
    while got < 2 {
        match r.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // Leave the error for the first real read to report.
            Err(_) => break,
        }
    }
    let head = io::Cursor::new(magic[..got].to_vec());
    let whole = head.chain(r);
    if got == 2 && magic == [0x1f, 0x8b] {
        Box::new(flate2::read::MultiGzDecoder::new(
            io::BufReader::with_capacity(CHUNK, whole),
        ))
    } else {
        Box::new(whole)
    }
}

/// One item from a [`LineReader`].
#[derive(Debug, PartialEq, Eq)]
pub enum Item<'a> {
    /// A line (1-based number), without its `\n`. `complete` is false for a final line that
    /// had no newline (a log cut mid-write).
    Line {
        no: u64,
        text: &'a [u8],
        complete: bool,
    },
    /// Line `no` was longer than the limit and was skipped; `len` bytes of it were seen.
    Overlong { no: u64, len: u64 },
}

/// Many whole lines at once, for scanners that search a whole buffer rather than line by line.
#[derive(Debug, PartialEq, Eq)]
pub enum Block<'a> {
    /// `lines` lines, numbered from `first_no`; `text` ends with `\n` unless `complete` is
    /// false (the input's final line had no newline).
    Lines {
        first_no: u64,
        lines: u64,
        text: &'a [u8],
        complete: bool,
    },
    /// Line `no` was longer than the limit and was skipped.
    Overlong { no: u64, len: u64 },
}

/// Whole lines out of any reader, in bounded memory.
pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max_line: usize,
    line_no: u64,
    eof: bool,
}

impl<R: Read> LineReader<R> {
    pub fn new(inner: R) -> Self {
        LineReader::with_max_line(inner, DEFAULT_MAX_LINE)
    }

    pub fn with_max_line(inner: R, max_line: usize) -> Self {
        LineReader {
            inner,
            buf: vec![0; CHUNK.max(max_line + 1).min(max_line + CHUNK)],
            start: 0,
            end: 0,
            max_line,
            line_no: 0,
            eof: false,
        }
    }

    /// Lines handed out so far (including skipped ones).
    pub fn line_no(&self) -> u64 {
        self.line_no
    }

    /// The next line, `None` at the end. An I/O error (file vanished, corrupt gzip) ends the
    /// stream; the caller reports it with [`LineReader::line_no`] and keeps what it has.
    pub fn next_item(&mut self) -> io::Result<Option<Item<'_>>> {
        loop {
            if let Some(nl) = memchr::memchr(b'\n', &self.buf[self.start..self.end]) {
                let s = self.start;
                self.start += nl + 1;
                self.line_no += 1;
                return Ok(Some(Item::Line {
                    no: self.line_no,
                    text: &self.buf[s..s + nl],
                    complete: true,
                }));
            }
            if self.eof {
                if self.start < self.end {
                    let s = self.start;
                    self.start = self.end;
                    self.line_no += 1;
                    return Ok(Some(Item::Line {
                        no: self.line_no,
                        text: &self.buf[s..self.end],
                        complete: false,
                    }));
                }
                return Ok(None);
            }
            if self.end - self.start > self.max_line {
                return self.skip_overlong().map(Some);
            }
            self.fill()?;
        }
    }

    /// The next run of whole lines: everything up to the last newline in the buffer. The same
    /// stream as [`LineReader::next_item`], in bigger pieces; do not mix the two on one reader.
    pub fn next_block(&mut self) -> io::Result<Option<Block<'_>>> {
        loop {
            if let Some(last) = memchr::memrchr(b'\n', &self.buf[self.start..self.end]) {
                let s = self.start;
                self.start += last + 1;
                let text = &self.buf[s..self.start];
                let lines = count_newlines(text);
                let first_no = self.line_no + 1;
                self.line_no += lines;
                return Ok(Some(Block::Lines {
                    first_no,
                    lines,
                    text,
                    complete: true,
                }));
            }
            if self.eof {
                if self.start < self.end {
                    let s = self.start;
                    self.start = self.end;
                    self.line_no += 1;
                    return Ok(Some(Block::Lines {
                        first_no: self.line_no,
                        lines: 1,
                        text: &self.buf[s..self.end],
                        complete: false,
                    }));
                }
                return Ok(None);
            }
            if self.end - self.start > self.max_line {
                return match self.skip_overlong()? {
                    Item::Overlong { no, len } => Ok(Some(Block::Overlong { no, len })),
                    Item::Line { .. } => unreachable!("skip_overlong yields Overlong"),
                };
            }
            self.fill()?;
        }
    }

    /// Move the partial line to the front and read more after it.
    fn fill(&mut self) -> io::Result<()> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            // Only reachable while a line is shorter than max_line; the buffer is sized for it.
            let grow = self.buf.len().min(self.max_line + 1);
            self.buf.resize(self.buf.len() + grow, 0);
        }
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Discard the current line up to its newline (or the end of input) without keeping it.
    fn skip_overlong(&mut self) -> io::Result<Item<'static>> {
        let mut len = (self.end - self.start) as u64;
        self.start = 0;
        self.end = 0;
        self.line_no += 1;
        loop {
            let n = match self.inner.read(&mut self.buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                self.eof = true;
                break;
            }
            if let Some(nl) = memchr::memchr(b'\n', &self.buf[..n]) {
                len += nl as u64;
                self.start = nl + 1;
                self.end = n;
                break;
            }
            len += n as u64;
        }
        Ok(Item::Overlong {
            no: self.line_no,
            len,
        })
    }
}

/// Newlines in `s`. Byte-wide lane counters that never overflow (at most 255 blocks between
/// flushes) let the compiler turn the inner loop into SIMD compares and subtracts.
pub fn count_newlines(s: &[u8]) -> u64 {
    const LANES: usize = 32;
    let mut total = 0u64;
    let mut blocks = s.chunks_exact(LANES);
    loop {
        let mut lanes = [0u8; LANES];
        let mut n = 0;
        for block in blocks.by_ref() {
            for (l, &b) in lanes.iter_mut().zip(block) {
                *l += (b == b'\n') as u8;
            }
            n += 1;
            if n == 255 {
                break;
            }
        }
        total += lanes.iter().map(|&l| l as u64).sum::<u64>();
        if n < 255 {
            break;
        }
    }
    total + blocks.remainder().iter().filter(|&&b| b == b'\n').count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(data: &[u8], max: usize) -> Vec<String> {
        let mut r = LineReader::with_max_line(data, max);
        let mut out = vec![];
        while let Some(item) = r.next_item().unwrap() {
            out.push(match item {
                Item::Line { no, text, complete } => format!(
                    "{no}:{}{}",
                    String::from_utf8_lossy(text),
                    if complete { "" } else { "$" }
                ),
                Item::Overlong { no, len } => format!("{no}:overlong {len}"),
            });
        }
        out
    }

    #[test]
    fn lines_crlf_nul_invalid_utf8_and_a_truncated_end() {
        let data = b"one\r\ntw\0o\n\xff\xfe bad\n\nlast";
        assert_eq!(
            collect(data, 100),
            vec![
                "1:one\r",
                "2:tw\0o",
                "3:\u{fffd}\u{fffd} bad",
                "4:",
                "5:last$"
            ]
        );
    }

    #[test]
    fn newline_counting_matches_the_naive_count() {
        let mut data = vec![];
        for i in 0..100_000u32 {
            data.push(if i % 7 == 0 || i % 251 == 0 {
                b'\n'
            } else {
                b'a'
            });
        }
        for len in [0, 1, 31, 32, 33, 8160, 8161, 100_000] {
            let s = &data[..len];
            let naive = s.iter().filter(|&&b| b == b'\n').count() as u64;
            assert_eq!(count_newlines(s), naive, "{len}");
        }
        assert_eq!(count_newlines(&[b'\n'; 20_000]), 20_000);
    }

    #[test]
    fn blocks_carry_the_same_lines_as_items() {
        let mut data = Vec::new();
        for i in 0..300_000 {
            data.extend(format!("line {i}\n").bytes());
        }
        data.extend(std::iter::repeat_n(b'x', 3 << 20));
        data.extend(b"\nafter\nlast");
        let mut r = LineReader::with_max_line(&data[..], 2000);
        let mut lines = vec![];
        let mut overlong = vec![];
        while let Some(b) = r.next_block().unwrap() {
            match b {
                Block::Lines {
                    first_no,
                    lines: n,
                    text,
                    complete,
                } => {
                    let split: Vec<&[u8]> = if complete {
                        text[..text.len() - 1].split(|&c| c == b'\n').collect()
                    } else {
                        vec![text]
                    };
                    assert_eq!(split.len() as u64, n);
                    for (k, l) in split.into_iter().enumerate() {
                        lines.push((first_no + k as u64, String::from_utf8_lossy(l).into_owned()));
                    }
                }
                Block::Overlong { no, len } => overlong.push((no, len)),
            }
        }
        assert_eq!(lines.len(), 300_002);
        assert_eq!(lines[299_999], (300_000, "line 299999".to_string()));
        assert_eq!(overlong, vec![(300_001, 3 << 20)]);
        assert_eq!(lines[300_000], (300_002, "after".to_string()));
        assert_eq!(lines[300_001], (300_003, "last".to_string()));
    }

    #[test]
    fn overlong_lines_are_skipped_in_bounded_memory() {
        let mut data = b"a\n".to_vec();
        data.extend(std::iter::repeat_n(b'x', 10 << 20));
        data.extend(b"\nb\n");
        let mut r = LineReader::with_max_line(&data[..], 1000);
        let mut got = vec![];
        while let Some(item) = r.next_item().unwrap() {
            got.push(match item {
                Item::Line { text, .. } => String::from_utf8_lossy(text).into_owned(),
                Item::Overlong { no, len } => format!("{no}:{len}"),
            });
        }
        assert_eq!(
            got,
            vec!["a".to_string(), format!("2:{}", 10 << 20), "b".into()]
        );
        assert!(r.buf.len() <= CHUNK + 1001);
    }

    #[test]
    fn a_huge_final_line_without_newline() {
        let data = vec![b'y'; 3 << 20];
        assert_eq!(
            collect(&data, 1000),
            vec![format!("1:overlong {}", 3 << 20)]
        );
    }

    #[test]
    fn lines_longer_than_one_chunk_but_within_the_limit() {
        let long = "z".repeat(CHUNK + 10);
        let data = format!("{long}\nq\n");
        let got = collect(data.as_bytes(), 4 << 20);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].len(), CHUNK + 12);
        assert_eq!(got[1], "2:q");
    }

    #[test]
    fn gzip_is_detected_by_content() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"first\nsecond\n").unwrap();
        let gz = enc.finish().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("messages.1");
        std::fs::write(&p, gz).unwrap();
        let mut s = String::new();
        Source::File(p)
            .open()
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "first\nsecond\n");
    }

    #[test]
    fn directories_and_missing_files_are_input_errors() {
        let dir = tempfile::tempdir().unwrap();
        let e = Source::File(dir.path().into()).open().err().unwrap();
        assert!(e.to_string().contains("is a directory"), "{e}");
        assert_eq!(e.exit_code(), crate::exit_codes::INPUT_ERROR);
        let e = Source::File(dir.path().join("nope")).open().err().unwrap();
        assert_eq!(e.exit_code(), crate::exit_codes::INPUT_ERROR);
    }
}
