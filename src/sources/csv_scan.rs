//! A reader in front of the CSV parser that follows its quoting (the same states as
//! `csv_core`) to find what the parser cannot tell: a quote still open at the end of the
//! file, and records or fields past the size limits. An oversized record is cut at the limit
//! for the parser (its quote closed and a line end added) and the rest of it is skipped up
//! to its real end, so memory stays bounded and the next record is read as it should be.

use std::collections::VecDeque;
use std::io::Read;

use super::SizeLimits;

/// What the parser's quoting state is after the bytes seen so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    StartRecord,
    StartField,
    InField,
    InQuoted,
    /// After the escape character inside quotes.
    Escaped,
    /// After a quote inside quotes: the end of the quoted part, or the first of two quotes.
    QuoteInQuoted,
    Comment,
}

/// The quoting options of the parser.
#[derive(Debug, Clone, Copy)]
pub struct Dialect {
    pub delimiter: u8,
    pub quote: u8,
    pub escape: Option<u8>,
    pub comment: Option<u8>,
}

/// A record the scanner cut or found unreadable, by its number in the stream (0-based,
/// the header counted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flagged {
    pub record: u64,
    pub reason: String,
    /// For a quote never closed: where the line after the quote's starts (a byte offset in
    /// the scanned stream, and its line), to read the rest of the file from again.
    pub resume: Option<Resume>,
}

/// Where to read a file again from after a quote that was never closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    pub offset: u64,
    pub line: u64,
}

/// Wraps the input of the CSV parser.
pub struct Scanner<R> {
    inner: R,
    dialect: Dialect,
    limits: SizeLimits,
    state: State,
    /// The file's line at the scan position.
    real_line: u64,
    /// The number of the current record (0-based; `u64::MAX` before the first).
    record: u64,
    /// The lines records start on, from the first the parser has not taken yet: the
    /// parser yields exactly one record for each record start seen here (blank lines and
    /// comments are no records for either), and counts lines wrong after `\r\n`.
    starts: VecDeque<u64>,
    /// The real line the open quote is on, and the offset just past the end of that line.
    quote_line: u64,
    quote_line_end: Option<u64>,
    /// Bytes of the stream scanned so far.
    offset: u64,
    record_bytes: u64,
    field_bytes: u64,
    /// Skipping the rest of a record that was cut.
    skipping: bool,
    /// Bytes for the parser not handed out yet (from `pending_at` on).
    pending: Vec<u8>,
    pending_at: usize,
    chunk: Vec<u8>,
    /// Bytes still to check for a leading byte-order mark.
    bom_left: usize,
    at_eof: bool,
    flagged: VecDeque<Flagged>,
}

const BOM: &[u8] = b"\xef\xbb\xbf";

/// The state after a byte outside quotes (after a field's first byte).
fn unquoted(b: u8, d: Dialect) -> State {
    if b == d.delimiter {
        State::StartField
    } else if b == b'\n' || b == b'\r' {
        State::StartRecord
    } else {
        State::InField
    }
}

impl<R: Read> Scanner<R> {
    pub fn new(inner: R, dialect: Dialect, limits: SizeLimits) -> Scanner<R> {
        Scanner::from_line(inner, dialect, limits, 1)
    }

    /// A scanner for a stream that starts on line `first_line` of its file (after a quote
    /// never closed): no byte-order mark, lines counted from there.
    pub fn from_line(
        inner: R,
        dialect: Dialect,
        limits: SizeLimits,
        first_line: u64,
    ) -> Scanner<R> {
        Scanner {
            inner,
            dialect,
            limits,
            state: State::StartRecord,
            real_line: first_line,
            record: u64::MAX,
            starts: VecDeque::new(),
            quote_line: 0,
            quote_line_end: None,
            offset: 0,
            record_bytes: 0,
            field_bytes: 0,
            skipping: false,
            pending: Vec::new(),
            pending_at: 0,
            chunk: vec![0; 64 * 1024],
            bom_left: if first_line == 1 { BOM.len() } else { 0 },
            at_eof: false,
            flagged: VecDeque::new(),
        }
    }

    /// The line the next record the parser yields starts on, and why it cannot be used if
    /// the scanner flagged it. Called once for each record the parser yields, in order.
    pub fn take_record(&mut self) -> (Option<u64>, Option<Flagged>) {
        let line = self.starts.pop_front();
        let record = self.record.wrapping_sub(self.starts.len() as u64);
        (line, self.take_flag(record))
    }

    fn take_flag(&mut self, record: u64) -> Option<Flagged> {
        while let Some(f) = self.flagged.front() {
            if f.record < record {
                self.flagged.pop_front();
            } else if f.record == record {
                return self.flagged.pop_front();
            } else {
                break;
            }
        }
        None
    }

    /// Follows one byte of the file.
    fn step(&mut self, b: u8) {
        let d = self.dialect;
        let newline = b == b'\n' || b == b'\r';
        self.state = match self.state {
            State::StartRecord | State::StartField => {
                if self.state == State::StartRecord && !newline && Some(b) != d.comment {
                    self.record = self.record.wrapping_add(1);
                    self.starts.push_back(self.real_line);
                    self.record_bytes = 0;
                    self.field_bytes = 0;
                }
                if self.state == State::StartRecord && Some(b) == d.comment {
                    State::Comment
                } else if b == d.quote {
                    self.quote_line = self.real_line;
                    self.quote_line_end = None;
                    State::InQuoted
                } else {
                    unquoted(b, d)
                }
            }
            State::InField => unquoted(b, d),
            State::InQuoted => {
                if d.escape == Some(b) {
                    State::Escaped
                } else if b == d.quote {
                    if d.escape.is_some() {
                        State::InField
                    } else {
                        State::QuoteInQuoted
                    }
                } else {
                    State::InQuoted
                }
            }
            State::Escaped => State::InQuoted,
            State::QuoteInQuoted if b == d.quote => State::InQuoted,
            State::QuoteInQuoted => unquoted(b, d),
            State::Comment => {
                if b == b'\n' {
                    State::StartRecord
                } else {
                    State::Comment
                }
            }
        };
        self.offset += 1;
        if b == b'\n' {
            self.real_line += 1;
            if matches!(self.state, State::InQuoted | State::Escaped)
                && self.quote_line_end.is_none()
            {
                self.quote_line_end = Some(self.offset);
            }
        }
        match self.state {
            State::StartRecord | State::Comment => {}
            State::StartField => {
                self.record_bytes += 1;
                self.field_bytes = 0;
            }
            _ => {
                self.record_bytes += 1;
                self.field_bytes += 1;
            }
        }
    }

    /// Whether the byte just stepped over takes the record past a limit; if so, the reason.
    fn over_limit(&self) -> Option<String> {
        if matches!(self.state, State::StartRecord | State::Comment) {
            return None;
        }
        if self.field_bytes > self.limits.max_field_bytes {
            Some(format!(
                "a field is larger than max_field_mib ({} MiB)",
                self.limits.max_field_bytes >> 20
            ))
        } else if self.record_bytes > self.limits.max_record_bytes {
            Some(format!(
                "the record is larger than max_record_mib ({} MiB)",
                self.limits.max_record_bytes >> 20
            ))
        } else {
            None
        }
    }

    /// Bytes that end the record for the parser in the state it is in.
    fn closing(&self) -> Vec<u8> {
        let q = self.dialect.quote;
        match self.state {
            State::InQuoted => vec![q, b'\n'],
            State::Escaped => vec![q, q, b'\n'],
            _ => vec![b'\n'],
        }
    }

    /// Scans `input`, appending what the parser should see to `out`.
    /// How many bytes from the start of `rest` leave the state as it is (inside a field or
    /// a quoted part, no line end), within the limits: they can be passed on at once.
    fn plain_run(&self, rest: &[u8]) -> usize {
        let d = self.dialect;
        let run = match self.state {
            State::InField => rest
                .iter()
                .position(|&b| b == d.delimiter || b == b'\n' || b == b'\r'),
            State::InQuoted => rest
                .iter()
                .position(|&b| b == d.quote || b == b'\n' || Some(b) == d.escape),
            _ => return 0,
        }
        .unwrap_or(rest.len());
        let room = (self.limits.max_field_bytes.saturating_sub(self.field_bytes)).min(
            self.limits
                .max_record_bytes
                .saturating_sub(self.record_bytes),
        );
        run.min(usize::try_from(room).unwrap_or(usize::MAX))
    }

    fn scan(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            if self.bom_left == 0 && !self.skipping {
                // The common case: a run of ordinary bytes, handled at once.
                let run = self.plain_run(&input[i..]);
                if run > 0 {
                    out.extend_from_slice(&input[i..i + run]);
                    let n = run as u64;
                    self.offset += n;
                    self.field_bytes += n;
                    self.record_bytes += n;
                    i += run;
                    continue;
                }
            }
            i += 1;
            if self.bom_left > 0 {
                let at = BOM.len() - self.bom_left;
                if b == BOM[at] {
                    self.bom_left -= 1;
                    self.offset += 1;
                    out.push(b);
                    continue;
                }
                self.bom_left = 0;
            }
            let before = self.state;
            self.step(b);
            if self.skipping {
                if self.state == State::StartRecord && before != State::StartRecord {
                    self.skipping = false;
                }
                continue;
            }
            if let Some(reason) = self.over_limit() {
                // The parser has the record up to here: close it, skip the rest.
                self.flagged.push_back(Flagged {
                    record: self.record,
                    reason,
                    resume: None,
                });
                // Close from the state before this byte: the parser has not seen it.
                let now = self.state;
                self.state = before;
                out.extend(self.closing());
                self.state = now;
                self.skipping = self.state != State::StartRecord;
                continue;
            }
            out.push(b);
        }
    }

    fn at_end(&mut self) {
        if self.at_eof {
            return;
        }
        self.at_eof = true;
        if matches!(self.state, State::InQuoted | State::Escaped) {
            let resume = self.quote_line_end.map(|offset| Resume {
                offset,
                line: self.quote_line + 1,
            });
            let reason = match resume {
                Some(r) => format!(
                    "quote opened on line {} never closed; the record ends with that line and reading goes on from line {}",
                    self.quote_line, r.line
                ),
                None => format!("quote opened on line {} never closed", self.quote_line),
            };
            // Replaces a cut's reason for the same record: the quote is the cause.
            self.flagged.retain(|f| f.record != self.record);
            self.flagged.push_back(Flagged {
                record: self.record,
                reason,
                resume,
            });
            if self.skipping {
                // The parser's copy of the record was closed already.
                return;
            }
            let closing = self.closing();
            self.pending.extend(closing);
        }
    }
}

impl<R: Read> Read for Scanner<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.pending_at < self.pending.len() {
                let ready = &self.pending[self.pending_at..];
                let n = buf.len().min(ready.len());
                buf[..n].copy_from_slice(&ready[..n]);
                self.pending_at += n;
                return Ok(n);
            }
            self.pending.clear();
            self.pending_at = 0;
            if self.at_eof {
                return Ok(0);
            }
            let n = self.inner.read(&mut self.chunk)?;
            if n == 0 {
                self.at_end();
                continue;
            }
            let (chunk, mut out) = (
                std::mem::take(&mut self.chunk),
                std::mem::take(&mut self.pending),
            );
            self.scan(&chunk[..n], &mut out);
            self.chunk = chunk;
            self.pending = out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dialect() -> Dialect {
        Dialect {
            delimiter: b',',
            quote: b'"',
            escape: None,
            comment: None,
        }
    }

    fn scan(input: &[u8], limits: SizeLimits) -> (Vec<u8>, Scanner<&[u8]>) {
        let mut s = Scanner::new(input, dialect(), limits);
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        (out, s)
    }

    /// Each record's start line and flag reason, as the parser takes them.
    fn records(s: &mut Scanner<&[u8]>, n: usize) -> Vec<(Option<u64>, Option<String>)> {
        (0..n)
            .map(|_| {
                let (line, flag) = s.take_record();
                (line, flag.map(|f| f.reason))
            })
            .collect()
    }

    #[test]
    fn passes_good_csv_through_unchanged_and_tells_where_records_start() {
        let text = b"\xef\xbb\xbfa,b\r\n\"x \"\"y\"\"\",\"1\n2\"\r\n\r\n,\n3,4";
        let (out, mut s) = scan(text, SizeLimits::default());
        assert_eq!(out, text);
        assert_eq!(
            records(&mut s, 5),
            [
                (Some(1), None),
                (Some(2), None),
                (Some(5), None),
                (Some(6), None),
                (None, None)
            ]
        );
    }

    #[test]
    fn flags_a_quote_left_open_at_the_end() {
        let (out, mut s) = scan(b"a,b\n1,\"x\n2,y\n3,z\n", SizeLimits::default());
        assert!(out.ends_with(b"\"\n"), "the parser's record is closed");
        assert_eq!(s.take_record(), (Some(1), None));
        let (line, flag) = s.take_record();
        let flag = flag.expect("flagged");
        assert_eq!(line, Some(2));
        assert!(
            flag.reason
                .starts_with("quote opened on line 2 never closed"),
            "{}",
            flag.reason
        );
        assert_eq!(flag.resume, Some(Resume { offset: 9, line: 3 }));
    }

    #[test]
    fn cuts_records_over_the_limit_and_keeps_line_numbers() {
        let limits = SizeLimits {
            max_field_bytes: 8,
            max_record_bytes: 20,
        };
        let text = b"a,b\n1,\"0123456789\nabc\"\n2,ok\n3,\"aaaaaa\",bbbbbbbb,cccccccc\n4,end\n";
        let (out, mut s) = scan(text, limits);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a,b\n1,\"0123456\"\n2,ok\n3,\"aaaaaa\",bbbbbbbb,\n4,end\n"
        );
        let got = records(&mut s, 5);
        assert_eq!(got[0], (Some(1), None));
        assert_eq!(got[1].0, Some(2));
        assert!(got[1].1.as_ref().unwrap().contains("max_field_mib"));
        assert_eq!(got[2], (Some(4), None));
        assert_eq!(got[3].0, Some(5));
        assert!(got[3].1.as_ref().unwrap().contains("max_record_mib"));
        assert_eq!(got[4], (Some(6), None));
    }
}
