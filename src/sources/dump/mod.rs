//! Reading helpdesk dump files: a JSON document per file (an API page such as
//! `{"users": [...]}`, or a top-level array), or newline-delimited JSON (one object per line,
//! as account exports and Airbyte write them). `.gz` and globs accepted. Dump readers turn
//! each document into records; this module finds the documents and their lines. A page is
//! read element by element (see [`stream`]): memory stays flat whatever the file's size.

mod stream;

use std::io::{BufRead, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

use super::files;
use crate::error::{Error, Result};

/// A first line longer than this is not read whole to tell the file's form: the file is a
/// single document, streamed.
const FIRST_LINE_LIMIT: u64 = 4 * 1024 * 1024;

/// One JSON document of a dump file, with the line it starts on. An element of a page comes
/// as a page of one (`{"users": [element], ...the page's other members}`, `[element]` for a
/// top-level array), on the line the element starts on.
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

/// A document, a bad line to skip, or (`Err`) a fatal error: the file cannot be read on.
pub type Item = Result<std::result::Result<Document, BadLine>>;

/// The documents of a file, in order. A bad line of a newline-delimited file is reported and
/// skipped; a file that is neither form ends with an error (a single document is checked
/// whole before any of its elements is given).
pub fn documents(
    path: &Path,
    counter: Arc<AtomicU64>,
) -> Result<Box<dyn Iterator<Item = Item> + Send>> {
    let counted_before = counter.load(Ordering::Relaxed);
    let mut input = files::open(path, counter.clone())?;
    Ok(match form(&mut input, path)? {
        Form::Empty => Box::new(std::iter::empty()),
        Form::Lines { first, line } => Box::new(
            std::iter::once(Ok(Ok(Document { value: first, line })))
                .chain(LineDocuments::new(input, line)),
        ),
        Form::Document => {
            // Streamed from the start of the file, in a thread.
            drop(input);
            counter.store(counted_before, Ordering::Relaxed);
            Box::new(stream::stream_document(path, counter))
        }
    })
}

/// Whether `path` holds newline-delimited JSON, as [`documents`] tells it.
pub fn is_json_lines(path: &Path) -> Result<bool> {
    let mut input = files::open(path, Arc::new(AtomicU64::new(0)))?;
    Ok(matches!(form(&mut input, path)?, Form::Lines { .. }))
}

/// The form of a dump file, told by its first non-empty line.
enum Form {
    Empty,
    /// Newline-delimited JSON (or a one-line document): the first line's value and number.
    Lines {
        first: Value,
        line: u64,
    },
    /// A single document over many lines, or on one line too long to hold.
    Document,
}

/// Reads up to the first non-empty line: newline-delimited JSON has a complete value on it;
/// a single document spans lines, or fills one that may be too long to hold.
fn form(input: &mut impl BufRead, path: &Path) -> Result<Form> {
    let mut first = Vec::new();
    let mut line = 0u64;
    loop {
        first.clear();
        let n = input
            .by_ref()
            .take(FIRST_LINE_LIMIT)
            .read_until(b'\n', &mut first)
            .map_err(|e| Error::input(files::display_name(path).to_string(), e))?;
        line += 1;
        if n == 0 {
            return Ok(Form::Empty);
        }
        if !first.trim_ascii().is_empty() {
            break;
        }
    }
    let whole = first.ends_with(b"\n") || (first.len() as u64) < FIRST_LINE_LIMIT;
    let text = first
        .strip_prefix(b"\xef\xbb\xbf")
        .unwrap_or(&first)
        .trim_ascii();
    Ok(match whole.then(|| serde_json::from_slice::<Value>(text)) {
        Some(Ok(first)) => Form::Lines { first, line },
        _ => Form::Document,
    })
}

/// The documents of newline-delimited JSON, one a line; a line that is not JSON is a
/// [`BadLine`].
pub struct LineDocuments<R> {
    input: R,
    /// The line last read.
    line: u64,
    buf: String,
    done: bool,
}

impl<R: BufRead> LineDocuments<R> {
    /// Reads `input` whose next line is line `line + 1`.
    pub fn new(input: R, line: u64) -> LineDocuments<R> {
        LineDocuments {
            input,
            line,
            buf: String::new(),
            done: false,
        }
    }
}

impl<R: BufRead> Iterator for LineDocuments<R> {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        loop {
            if self.done {
                return None;
            }
            self.buf.clear();
            match self.input.read_line(&mut self.buf) {
                Ok(0) => {
                    self.done = true;
                    return None;
                }
                Ok(_) => {}
                Err(e) => {
                    self.done = true;
                    return Some(Ok(Err(BadLine {
                        line: self.line + 1,
                        text: String::new(),
                        reason: format!("cannot read: {e}"),
                    })));
                }
            }
            self.line += 1;
            let text = self.buf.trim();
            if text.is_empty() {
                continue;
            }
            return Some(Ok(match serde_json::from_str::<Value>(text) {
                Ok(value) => Ok(Document {
                    value,
                    line: self.line,
                }),
                Err(e) => Err(BadLine {
                    line: self.line,
                    text: text.chars().take(500).collect(),
                    reason: format!("invalid JSON: {e}"),
                }),
            }));
        }
    }
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

    type Got = std::result::Result<std::result::Result<(u64, Value), (u64, String)>, String>;

    fn read(text: &str) -> Vec<Got> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.json");
        std::fs::write(&p, text).unwrap();
        documents(&p, Arc::new(AtomicU64::new(0)))
            .unwrap()
            .map(|d| match d {
                Ok(d) => Ok(d.map(|d| (d.line, d.value)).map_err(|b| (b.line, b.reason))),
                Err(e) => Err(e.to_string()),
            })
            .collect()
    }

    /// `line:value` of each document.
    fn places(got: &[Got]) -> Vec<String> {
        got.iter()
            .map(|r| match r {
                Ok(Ok((l, v))) => format!("{l}:{v}"),
                Ok(Err((l, _))) => format!("{l}:bad"),
                Err(e) => format!("error {e}"),
            })
            .collect()
    }

    #[test]
    fn reads_json_lines() {
        let lines = read("\n{\"id\": 1}\n{\"id\": 2}\nnot json\n\n{\"id\": 3}\n");
        assert_eq!(
            places(&lines),
            ["2:{\"id\":1}", "3:{\"id\":2}", "4:bad", "6:{\"id\":3}"]
        );
    }

    #[test]
    fn a_page_comes_element_by_element_each_on_its_own_line() {
        let page = "\u{feff}{\n  \"count\": 2,\n  \"users\": [\n    {\"id\": 1},\n\n    {\n      \"id\": 2,\n      \"tags\": [\"a\"]\n    }\n  ],\n  \"ticket\": {\"id\": 9},\n  \"groups\": []\n}\n";
        assert_eq!(
            places(&read(page)),
            [
                r#"4:{"count":2,"ticket":{"id":9},"users":[{"id":1}]}"#,
                r#"6:{"count":2,"ticket":{"id":9},"users":[{"id":2,"tags":["a"]}]}"#,
            ],
            "the page's other members, wherever they stand, come with each element"
        );
        // The same page on one line too long to read whole to tell its form.
        let pad = "x".repeat(FIRST_LINE_LIMIT as usize);
        let long = format!(
            "{{\"users\": [{{\"id\": 1, \"pad\": \"{pad}\"}}, {{\"id\": 2}}], \"next_page\": null}}"
        );
        let got = read(&long);
        assert_eq!(got.len(), 2);
        assert_eq!(
            places(&got)[1],
            r#"1:{"next_page":null,"users":[{"id":2}]}"#
        );
    }

    #[test]
    fn a_top_level_array_comes_element_by_element() {
        assert_eq!(
            places(&read("[\n  {\"id\": 1},\n  {\"id\": 2}, 3\n]\n")),
            [r#"2:[{"id":1}]"#, r#"3:[{"id":2}]"#, "3:[3]"]
        );
    }

    #[test]
    fn a_record_or_a_page_without_elements_comes_whole() {
        // A record (it has an id) keeps its arrays, wherever its id stands.
        let record = "{\n  \"comments\": [{\"id\": 5}],\n  \"id\": 1\n}\n";
        assert_eq!(
            places(&read(record)),
            [r#"1:{"comments":[{"id":5}],"id":1}"#]
        );
        let empty = "{\n  \"users\": [],\n  \"count\": 0\n}\n";
        assert_eq!(places(&read(empty)), [r#"1:{"users":[],"count":0}"#]);
    }

    #[test]
    fn json_lines_after_a_document_are_read_as_lines() {
        let text = "{\n \"users\": [{\"id\": 1}]\n}\n{\"id\": 2}\nnot json\n";
        assert_eq!(
            places(&read(text)),
            [r#"2:{"users":[{"id":1}]}"#, r#"4:{"id":2}"#, "5:bad"]
        );
    }

    #[test]
    fn a_file_that_is_not_json_fails_before_any_element() {
        let got = read("{\n \"users\": [{\"id\": 1},\n {\"id\": 2},\n");
        assert_eq!(got.len(), 1, "{got:?}");
        let e = got[0].as_ref().unwrap_err();
        assert!(
            e.contains("d.json:4") && e.contains("not JSON nor JSON lines"),
            "{e}"
        );
        let got = read("[\n1,\n2,,\n]");
        assert!(got[0].as_ref().unwrap_err().contains("d.json:3"), "{got:?}");
    }

    #[test]
    fn an_early_stop_ends_the_reader_thread() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.json");
        let elements: Vec<String> = (0..10_000).map(|i| format!("{{\"id\": {i}}}")).collect();
        std::fs::write(&p, format!("[\n{}\n]", elements.join(",\n"))).unwrap();
        let mut docs = documents(&p, Arc::new(AtomicU64::new(0))).unwrap();
        assert!(docs.next().unwrap().unwrap().is_ok());
        drop(docs);
        // Nothing to assert but that the drop does not hang or panic.
    }

    #[test]
    fn line_counter_counts_lines_as_bytes_pass() {
        let mut r = stream::LineCounter::new(&b"\xef\xbb\xbf\n \n  {\n}\n"[..]);
        assert_eq!(r.skip_whitespace().unwrap(), 3);
        let mut rest = String::new();
        r.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "{\n}\n");
        assert_eq!(r.line.get(), 5);
    }
}
