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

/// A record the scanner cut or found unreadable, by the line the parser sees it start on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flagged {
    pub parser_line: u64,
    pub reason: String,
}

/// Wraps the input of the CSV parser.
pub struct Scanner<R> {
    inner: R,
    dialect: Dialect,
    limits: SizeLimits,
    state: State,
    /// The file's line at the scan position, and the line the parser counts there.
    real_line: u64,
    parser_line: u64,
    /// Where the current record starts, as the parser counts lines.
    record_parser_line: u64,
    /// The real line the open quote is on.
    quote_line: u64,
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
    /// From a parser line on, how many lines the file has more (lines skipped with cuts).
    shifts: VecDeque<(u64, u64)>,
    shift: u64,
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
        Scanner {
            inner,
            dialect,
            limits,
            state: State::StartRecord,
            real_line: 1,
            parser_line: 1,
            record_parser_line: 1,
            quote_line: 0,
            record_bytes: 0,
            field_bytes: 0,
            skipping: false,
            pending: Vec::new(),
            pending_at: 0,
            chunk: vec![0; 64 * 1024],
            bom_left: BOM.len(),
            at_eof: false,
            flagged: VecDeque::new(),
            shifts: VecDeque::new(),
            shift: 0,
        }
    }

    /// The reason the record the parser saw start on `parser_line` cannot be used, if the
    /// scanner flagged it; flags of earlier lines are forgotten.
    pub fn take_flag(&mut self, parser_line: u64) -> Option<String> {
        while let Some(f) = self.flagged.front() {
            if f.parser_line < parser_line {
                self.flagged.pop_front();
            } else if f.parser_line == parser_line {
                return self.flagged.pop_front().map(|f| f.reason);
            } else {
                break;
            }
        }
        None
    }

    /// The file's line for a line the parser counts (they differ after a cut record).
    pub fn real_line(&mut self, parser_line: u64) -> u64 {
        while let Some(&(from, shift)) = self.shifts.front() {
            if from > parser_line {
                break;
            }
            self.shift = shift;
            self.shifts.pop_front();
        }
        parser_line + self.shift
    }

    /// Follows one byte of the file.
    fn step(&mut self, b: u8) {
        let d = self.dialect;
        let newline = b == b'\n' || b == b'\r';
        self.state = match self.state {
            State::StartRecord | State::StartField => {
                if self.state == State::StartRecord && !newline {
                    self.record_parser_line = self.parser_line;
                    self.record_bytes = 0;
                    self.field_bytes = 0;
                }
                if self.state == State::StartRecord && Some(b) == d.comment {
                    State::Comment
                } else if b == d.quote {
                    self.quote_line = self.real_line;
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
        if b == b'\n' {
            self.real_line += 1;
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

    fn emit(&mut self, out: &mut Vec<u8>, b: u8) {
        if b == b'\n' {
            self.parser_line += 1;
        }
        out.push(b);
    }

    /// Scans `input`, appending what the parser should see to `out`.
    fn scan(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            if self.bom_left > 0 {
                let at = BOM.len() - self.bom_left;
                if b == BOM[at] {
                    self.bom_left -= 1;
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
                    self.shifts
                        .push_back((self.parser_line, self.real_line - self.parser_line));
                }
                continue;
            }
            if let Some(reason) = self.over_limit() {
                // The parser has the record up to here: close it, skip the rest.
                self.flagged.push_back(Flagged {
                    parser_line: self.record_parser_line,
                    reason,
                });
                // Close from the state before this byte: the parser has not seen it.
                let now = self.state;
                self.state = before;
                for c in self.closing() {
                    self.emit(out, c);
                }
                self.state = now;
                self.skipping = true;
                if self.state == State::StartRecord {
                    self.skipping = false;
                    self.shifts
                        .push_back((self.parser_line, self.real_line - self.parser_line));
                }
                continue;
            }
            self.emit(out, b);
        }
    }

    fn at_end(&mut self) {
        if self.at_eof {
            return;
        }
        self.at_eof = true;
        if matches!(self.state, State::InQuoted | State::Escaped) {
            let lines = self.real_line - self.quote_line + 1;
            let reason = format!(
                "quote opened on line {} never closed: the rest of the file ({lines} line{}) is read as this one record and cannot be trusted",
                self.quote_line,
                if lines == 1 { "" } else { "s" }
            );
            // Replaces a cut's reason for the same record: the quote is the cause.
            self.flagged
                .retain(|f| f.parser_line != self.record_parser_line);
            self.flagged.push_back(Flagged {
                parser_line: self.record_parser_line,
                reason,
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

    #[test]
    fn passes_good_csv_through_unchanged() {
        let text = b"\xef\xbb\xbfa,b\n\"x \"\"y\"\"\",\"1\n2\"\r\n3,4\n";
        let (out, mut s) = scan(text, SizeLimits::default());
        assert_eq!(out, text);
        assert_eq!(s.take_flag(1), None);
        assert!(s.flagged.is_empty());
    }

    #[test]
    fn flags_a_quote_left_open_at_the_end() {
        let (out, mut s) = scan(b"a,b\n1,\"x\n2,y\n3,z\n", SizeLimits::default());
        assert!(out.ends_with(b"\"\n"), "the parser's record is closed");
        let reason = s.take_flag(2).expect("flagged");
        assert!(
            reason.starts_with("quote opened on line 2 never closed"),
            "{reason}"
        );
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
        assert!(s.take_flag(2).unwrap().contains("max_field_mib"));
        assert_eq!(
            s.real_line(3),
            4,
            "line 3 for the parser is line 4 of the file"
        );
        assert!(s.take_flag(4).unwrap().contains("max_record_mib"));
        assert_eq!(s.real_line(5), 6);
    }
}
