//! JSON lines source: one JSON object per line; `.gz` and globs accepted. Blank lines are
//! skipped; a line that is not a JSON object goes to the dead-letter file with its number,
//! and so does a line or a field past the size limits (read no further than the limit).
//! Integers too large for 64 bits are read as strings of their digits, never rounded.

use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use schemars::JsonSchema;
use serde::Deserialize;

use super::{OpenedSource, ProgressUnit, Rejected, SizeLimits, SourceItem, SourceIter, files};
use crate::config::Spanned;
use crate::error::{Error, Result};
use crate::record::{JsonStrings, Position, Value, fits_64_bits, is_integer_literal, kind_of};

/// Reads newline-delimited JSON.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonlSourceConfig {
    /// A file, or a glob such as `dumps/*.jsonl.gz`; `.gz` files are decompressed.
    pub path: String,
    /// The largest string value of a top-level field, in MiB: a line with a larger one is
    /// dead-lettered. Default 16.
    #[serde(default)]
    pub max_field_mib: Option<Spanned<u64>>,
    /// The longest line, in MiB: a longer one is dead-lettered (and read no further than
    /// the limit). Default 64.
    #[serde(default)]
    pub max_record_mib: Option<Spanned<u64>>,
}

impl JsonlSourceConfig {
    /// Every problem with the options as written; `at` is the source's config path.
    pub fn check(&self, at: &str) -> Vec<crate::config::ConfigError> {
        super::check_text_source(
            &self.path,
            self.max_field_mib.as_ref(),
            self.max_record_mib.as_ref(),
            at,
        )
    }

    pub fn open(&self) -> Result<OpenedSource> {
        crate::config::checked(self.check("source.jsonl"))?;
        let files = files::expand(&self.path)?;
        let total = files::total_size(&files);
        let limits =
            SizeLimits::from_mib(self.max_field_mib.as_ref(), self.max_record_mib.as_ref());
        Ok(OpenedSource::from_files(
            files,
            ProgressUnit::Bytes,
            total,
            move |path, done| read_file(path, done.clone(), limits),
        ))
    }
}

/// Reads a line into `buf` (cleared first), keeping no more than `max` bytes of it; returns
/// the bytes read (0 at the end) and whether the line was longer than `max`.
fn read_line_limited(
    input: &mut dyn BufRead,
    buf: &mut Vec<u8>,
    max: u64,
) -> std::io::Result<(usize, bool)> {
    buf.clear();
    let (mut read, mut over) = (0usize, false);
    loop {
        let available = input.fill_buf()?;
        if available.is_empty() {
            return Ok((read, over));
        }
        let (part, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        let room = (max as usize).saturating_sub(buf.len());
        if part.len() > room {
            over = true;
        }
        buf.extend_from_slice(&part[..part.len().min(room)]);
        let n = part.len();
        read += n;
        input.consume(n);
        if done {
            return Ok((read, over));
        }
    }
}

/// The line with every integer literal too large for 64 bits put in quotes, so that it is
/// read as a string of its digits instead of a rounded float (serde_json would round it).
/// Lines without a run of 19 digits are returned as they are, without a copy.
fn quote_big_integers(line: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let mut run = 0usize;
    if !line.iter().any(|b| {
        run = if b.is_ascii_digit() { run + 1 } else { 0 };
        run >= 19
    }) {
        return std::borrow::Cow::Borrowed(line);
    }
    let mut out = Vec::with_capacity(line.len() + 8);
    let mut strings = JsonStrings::default();
    let mut i = 0;
    while i < line.len() {
        let b = line[i];
        if strings.string_byte(b) {
            out.push(b);
            i += 1;
            continue;
        }
        if b == b'-' || b.is_ascii_digit() {
            let end = line[i..]
                .iter()
                .position(|c| {
                    !(c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E'))
                })
                .map_or(line.len(), |n| i + n);
            let token = &line[i..end];
            let text = std::str::from_utf8(token).unwrap_or("");
            if is_integer_literal(text) && !fits_64_bits(text) {
                out.push(b'"');
                out.extend_from_slice(token);
                out.push(b'"');
            } else {
                out.extend_from_slice(token);
            }
            i = end;
            continue;
        }
        out.push(b);
        i += 1;
    }
    std::borrow::Cow::Owned(out)
}

/// The first top-level field whose string value is longer than `max` bytes.
fn oversized_field(record: &crate::record::Record, max: u64) -> Option<&str> {
    record
        .iter()
        .find(|(_, v)| v.as_str().is_some_and(|s| s.len() as u64 > max))
        .map(|(k, _)| k.as_str())
}

fn read_file(path: &Path, counter: Arc<AtomicU64>, limits: SizeLimits) -> Result<SourceIter> {
    let mut input = files::open(path, counter)?;
    let file = files::display_name(path);
    let mut line_no = 0u64;
    let mut row = 0u64;
    let mut buf = Vec::with_capacity(4096);
    let mut finished = false;
    Ok(Box::new(std::iter::from_fn(move || {
        loop {
            if finished {
                return None;
            }
            let over = match read_line_limited(&mut input, &mut buf, limits.max_record_bytes) {
                Ok((0, _)) => {
                    finished = true;
                    return None;
                }
                Ok((_, over)) => over,
                Err(e) => {
                    finished = true;
                    return Some(Err(Error::input(format!("{file}:{}", line_no + 1), e)));
                }
            };
            line_no += 1;
            let text = trim_line(&buf);
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            row += 1;
            let position = Position {
                seq: 0,
                file: file.clone(),
                line: Some(line_no),
                row,
            };
            let reject = |reason: String, record: Value| {
                Some(Ok(SourceItem::Rejected(Rejected {
                    position: position.clone(),
                    record,
                    reason,
                })))
            };
            if over {
                let keep = &text[..text.len().min(1024)];
                return reject(
                    format!(
                        "the line is longer than max_record_mib ({} MiB)",
                        limits.max_record_bytes >> 20
                    ),
                    Value::String(format!("{}…", String::from_utf8_lossy(keep))),
                );
            }
            return match serde_json::from_slice::<Value>(&quote_big_integers(text)) {
                Ok(Value::Object(record)) => match oversized_field(&record, limits.max_field_bytes)
                {
                    Some(field) => reject(
                        format!(
                            "field `{field}` is larger than max_field_mib ({} MiB)",
                            limits.max_field_bytes >> 20
                        ),
                        Value::Null,
                    ),
                    None => Some(Ok(SourceItem::Record(record, position))),
                },
                Ok(other) => reject(
                    format!("the line holds {}, not a JSON object", kind_of(&other)),
                    other,
                ),
                Err(e) => reject(
                    format!("invalid JSON: {e}"),
                    Value::String(String::from_utf8_lossy(text).into_owned()),
                ),
            };
        }
    })))
}

/// The line without its line ending and a leading BOM.
fn trim_line(buf: &[u8]) -> &[u8] {
    let mut t = buf;
    if let Some(rest) = t.strip_suffix(b"\n") {
        t = rest;
    }
    if let Some(rest) = t.strip_suffix(b"\r") {
        t = rest;
    }
    t.strip_prefix(b"\xef\xbb\xbf").unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_objects_and_rejects_the_rest_with_line_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("in.jsonl");
        std::fs::write(
            &p,
            b"{\"a\":1}\r\n\n[1,2]\n{\"a\":\n{\"b\":\"\xff\"}\n{\"a\":2}",
        )
        .unwrap();
        let c = JsonlSourceConfig {
            path: p.to_str().unwrap().into(),
            max_field_mib: None,
            max_record_mib: None,
        };
        let got: Vec<String> = c
            .open()
            .unwrap()
            .items
            .map(|i| match i.unwrap() {
                SourceItem::Record(r, p) => format!("ok {} {}", p.line.unwrap(), Value::Object(r)),
                SourceItem::Rejected(r) => format!("bad {} {}", r.position.line.unwrap(), r.reason),
                SourceItem::Batch(_) => unreachable!("a source opened for rows gives no batch"),
            })
            .collect();
        assert_eq!(got.len(), 5, "{got:?}");
        assert_eq!(got[0], "ok 1 {\"a\":1}");
        assert_eq!(got[1], "bad 3 the line holds a list, not a JSON object");
        assert!(got[2].starts_with("bad 4 invalid JSON: EOF"), "{}", got[2]);
        assert!(got[3].starts_with("bad 5 invalid JSON"), "{}", got[3]);
        assert_eq!(got[4], "ok 6 {\"a\":2}");
        let _ = json!(null);
    }

    #[test]
    fn big_integers_keep_their_digits_as_strings() {
        let line = br#"{"a":12345678901234567890123,"b":[-18446744073709551617,1.5e300],"c":"12345678901234567890123 \"9999999999999999999999\"","d":18446744073709551615,"e":-9223372036854775808}"#;
        let fixed = quote_big_integers(line);
        let v: Value = serde_json::from_slice(&fixed).unwrap();
        assert_eq!(
            v,
            json!({"a": "12345678901234567890123", "b": ["-18446744073709551617", 1.5e300],
                   "c": "12345678901234567890123 \"9999999999999999999999\"",
                   "d": 18446744073709551615u64, "e": i64::MIN})
        );
        assert!(matches!(
            quote_big_integers(b"{\"a\":1}"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn long_lines_are_cut_and_skipped_to_their_end() {
        let mut input: &[u8] = b"0123456789\nab\n";
        let mut buf = Vec::new();
        assert_eq!(
            read_line_limited(&mut input, &mut buf, 4).unwrap(),
            (11, true)
        );
        assert_eq!(buf, b"0123");
        assert_eq!(
            read_line_limited(&mut input, &mut buf, 4).unwrap(),
            (3, false)
        );
        assert_eq!(buf, b"ab\n");
        assert_eq!(
            read_line_limited(&mut input, &mut buf, 4).unwrap(),
            (0, false)
        );
    }
}
