//! JSON lines source: one JSON object per line; `.gz` and globs accepted. Blank lines are
//! skipped; a line that is not a JSON object goes to the dead-letter file with its number.

use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use schemars::JsonSchema;
use serde::Deserialize;

use super::{OpenedSource, ProgressUnit, Rejected, SourceItem, SourceIter, files};
use crate::error::{Error, Result};
use crate::record::{Position, Value, kind_of};

/// Reads newline-delimited JSON.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonlSourceConfig {
    /// A file, or a glob such as `dumps/*.jsonl.gz`; `.gz` files are decompressed.
    pub path: String,
}

impl JsonlSourceConfig {
    pub fn open(&self) -> Result<OpenedSource> {
        let files = files::expand(&self.path)?;
        let total = files::total_size(&files);
        Ok(OpenedSource::from_files(
            files,
            ProgressUnit::Bytes,
            total,
            |path, done| read_file(path, done.clone()),
        ))
    }
}

fn read_file(path: &Path, counter: Arc<AtomicU64>) -> Result<SourceIter> {
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
            buf.clear();
            match input.read_until(b'\n', &mut buf) {
                Ok(0) => {
                    finished = true;
                    return None;
                }
                Ok(_) => {}
                Err(e) => {
                    finished = true;
                    return Some(Err(Error::input(format!("{file}:{}", line_no + 1), e)));
                }
            }
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
            return match serde_json::from_slice::<Value>(text) {
                Ok(Value::Object(record)) => Some(Ok(SourceItem::Record(record, position))),
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
        };
        let got: Vec<String> = c
            .open()
            .unwrap()
            .items
            .map(|i| match i.unwrap() {
                SourceItem::Record(r, p) => format!("ok {} {}", p.line.unwrap(), Value::Object(r)),
                SourceItem::Rejected(r) => format!("bad {} {}", r.position.line.unwrap(), r.reason),
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
}
