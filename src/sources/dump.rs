//! Reading helpdesk dump files: a JSON document per file (an API page such as
//! `{"users": [...]}`), or newline-delimited JSON (one object per line, as account exports
//! and Airbyte write them). `.gz` and globs accepted. Dump readers turn each document into
//! records; this module finds the documents and their lines.

use std::io::{BufRead, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use serde_json::Value;

use super::files;
use crate::error::{Error, Result};

/// One JSON document of a dump file, with the line it starts on.
#[derive(Debug)]
pub struct Document {
    pub value: Value,
    pub line: u64,
}

/// A line that is not JSON, in a newline-delimited file.
#[derive(Debug)]
pub struct BadLine {
    pub line: u64,
    pub text: String,
    pub reason: String,
}

/// The documents of a file, in order; a bad line of a newline-delimited file is reported and
/// skipped, a file that is neither form is an error.
pub fn documents(
    path: &Path,
    counter: Arc<AtomicU64>,
) -> Result<Box<dyn Iterator<Item = std::result::Result<Document, BadLine>> + Send>> {
    let mut input = files::open(path, counter)?;
    let name = files::display_name(path);
    // Look at the first two non-empty lines: a single document spans lines or fills one;
    // newline-delimited JSON has a complete object on each.
    let mut first = String::new();
    let mut first_line = 0u64;
    loop {
        first.clear();
        let n = input
            .read_line(&mut first)
            .map_err(|e| Error::input(name.to_string(), e))?;
        first_line += 1;
        if n == 0 {
            return Ok(Box::new(std::iter::empty()));
        }
        if !first.trim().is_empty() {
            break;
        }
    }
    let first_value: Option<Value> =
        serde_json::from_str(first.trim_start_matches('\u{feff}').trim()).ok();
    if let Some(value) = first_value {
        // The first line is complete: newline-delimited, or a one-line document.
        let mut line_no = first_line;
        let mut pending = Some(Ok(Document {
            value,
            line: first_line,
        }));
        let mut buf = String::new();
        let mut done = false;
        return Ok(Box::new(std::iter::from_fn(move || {
            if let Some(p) = pending.take() {
                return Some(p);
            }
            loop {
                if done {
                    return None;
                }
                buf.clear();
                match input.read_line(&mut buf) {
                    Ok(0) => {
                        done = true;
                        return None;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        done = true;
                        return Some(Err(BadLine {
                            line: line_no + 1,
                            text: String::new(),
                            reason: format!("cannot read: {e}"),
                        }));
                    }
                }
                line_no += 1;
                let text = buf.trim();
                if text.is_empty() {
                    continue;
                }
                return Some(match serde_json::from_str::<Value>(text) {
                    Ok(value) => Ok(Document {
                        value,
                        line: line_no,
                    }),
                    Err(e) => Err(BadLine {
                        line: line_no,
                        text: text.chars().take(500).collect(),
                        reason: format!("invalid JSON: {e}"),
                    }),
                });
            }
        })));
    }
    // One document over many lines: read it whole.
    let mut rest = String::new();
    input
        .read_to_string(&mut rest)
        .map_err(|e| Error::input(name.to_string(), e))?;
    let text = format!("{first}{rest}");
    let value: Value = serde_json::from_str(text.trim_start_matches('\u{feff}')).map_err(|e| {
        Error::input(
            format!("{name}:{}", e.line() as u64 + first_line - 1),
            format!("not JSON nor JSON lines: {e}"),
        )
    })?;
    Ok(Box::new(std::iter::once(Ok(Document {
        value,
        line: first_line,
    }))))
}

/// Unwraps an Airbyte record (`{"stream", "data", "emitted_at"}`): the stream and the data.
pub fn airbyte(value: &Value) -> Option<(&str, &Value)> {
    let stream = value.get("stream")?.as_str()?;
    let data = value.get("data")?;
    (value.get("emitted_at").is_some() && data.is_object()).then_some((stream, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Vec<std::result::Result<(u64, Value), (u64, String)>> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.json");
        std::fs::write(&p, text).unwrap();
        documents(&p, Arc::new(AtomicU64::new(0)))
            .unwrap()
            .map(|d| d.map(|d| (d.line, d.value)).map_err(|b| (b.line, b.reason)))
            .collect()
    }

    #[test]
    fn reads_documents_and_json_lines() {
        let pretty = read("{\n  \"users\": [\n    {\"id\": 1}\n  ]\n}\n");
        assert_eq!(pretty.len(), 1);
        assert_eq!(pretty[0].as_ref().unwrap().1["users"][0]["id"], 1);
        let lines = read("\n{\"id\": 1}\n{\"id\": 2}\nnot json\n\n{\"id\": 3}\n");
        let got: Vec<String> = lines
            .iter()
            .map(|r| match r {
                Ok((l, v)) => format!("{l}:{}", v["id"]),
                Err((l, _)) => format!("{l}:bad"),
            })
            .collect();
        assert_eq!(got, ["2:1", "3:2", "4:bad", "6:3"]);
    }

    #[test]
    fn a_file_that_is_not_json_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.json");
        std::fs::write(&p, "{\n \"a\": [1,\n").unwrap();
        assert!(documents(&p, Arc::new(AtomicU64::new(0))).is_err());
    }
}
