//! The dead-letter file: records that could not be read, transformed or written, one JSON
//! object per line with where they came from and why. A record never just disappears.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::record::{Position, Value};

/// One rejected record.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeadLetter {
    pub stream: String,
    /// The source file the record came from.
    pub file: String,
    /// The line the record starts on (CSV, JSON lines).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// The record's number in its file, 1-based, header not counted.
    pub row: u64,
    /// Where it failed: `source`, `transforms[2] (cast)` or `sink`.
    pub stage: String,
    pub reason: String,
    /// The record: as read for source failures, as it entered the failing step otherwise.
    pub record: Value,
}

impl DeadLetter {
    pub fn new(
        stream: &str,
        position: &Position,
        stage: impl Into<String>,
        reason: impl Into<String>,
        record: Value,
    ) -> Self {
        DeadLetter {
            stream: stream.to_string(),
            file: crate::redact::redact(&position.file).into_owned(),
            line: position.line,
            row: position.row,
            stage: stage.into(),
            reason: crate::redact::redact(&reason.into()).into_owned(),
            record,
        }
    }
}

/// Where rejected records go; shared by every stream of a run.
#[derive(Clone)]
pub struct DeadLetters {
    inner: Arc<Inner>,
}

struct Inner {
    target: Mutex<Target>,
    path: PathBuf,
    count: AtomicU64,
    /// Per stream: a run's streams share the file, each reports its own.
    per_stream: Mutex<HashMap<String, u64>>,
    max_errors: Option<u64>,
}

enum Target {
    /// Opened on the first rejected record. Each letter is written with one `write` and
    /// counted only once it is written, so a full disk cannot leave counted letters behind
    /// in a buffer that never reaches the file.
    File(Option<File>),
    /// Kept for `plan` and tests.
    Memory(Vec<DeadLetter>),
}

impl DeadLetters {
    /// Rejected records go to `path`, replacing what an earlier run left there, or added to
    /// it when this run resumes an interrupted one. More than `max_errors` of them stop the
    /// run.
    pub fn to_file(path: &Path, max_errors: Option<u64>, append: bool) -> Result<Self> {
        if !append {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(path, e)),
            }
        }
        Ok(Self::with_target(path, Target::File(None), max_errors))
    }

    /// Rejected records are kept in memory (see [`DeadLetters::take`]).
    pub fn in_memory(max_errors: Option<u64>) -> Self {
        Self::with_target(
            Path::new("(memory)"),
            Target::Memory(Vec::new()),
            max_errors,
        )
    }

    fn with_target(path: &Path, target: Target, max_errors: Option<u64>) -> Self {
        DeadLetters {
            inner: Arc::new(Inner {
                target: Mutex::new(target),
                path: path.to_path_buf(),
                count: AtomicU64::new(0),
                per_stream: Mutex::new(HashMap::new()),
                max_errors,
            }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Records a rejected record. Fails when the file cannot be written or the record is one
    /// more than `--max-errors` allows.
    pub fn reject(&self, letter: DeadLetter) -> Result<()> {
        let mut target = self.inner.target.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *target {
            Target::File(writer) => {
                if writer.is_none() {
                    if let Some(dir) = self.inner.path.parent() {
                        crate::dirs::create(dir, "state dir")?;
                    }
                    // Appending: a fresh run removed the old file in `to_file`.
                    let file = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&self.inner.path)
                        .map_err(|e| Error::io(&self.inner.path, e))?;
                    *writer = Some(file);
                }
                let w = writer.as_mut().expect("opened above");
                let mut line = serde_json::to_vec(&letter).map_err(|e| {
                    Error::output(
                        &self.inner.path,
                        format!("a dead letter cannot be written as JSON: {e}"),
                    )
                })?;
                line.push(b'\n');
                w.write_all(&line)
                    .map_err(|e| Error::io(&self.inner.path, e))?;
                *self
                    .inner
                    .per_stream
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(letter.stream)
                    .or_default() += 1;
            }
            Target::Memory(letters) => {
                *self
                    .inner
                    .per_stream
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(letter.stream.clone())
                    .or_default() += 1;
                letters.push(letter);
            }
        }
        drop(target);
        let count = self.inner.count.fetch_add(1, Ordering::SeqCst) + 1;
        match self.inner.max_errors {
            Some(max) if count > max => {
                self.flush()?;
                Err(Error::TooManyErrors {
                    count,
                    max,
                    file: self.inner.path.clone(),
                })
            }
            _ => Ok(()),
        }
    }

    /// How many records were rejected so far.
    pub fn count(&self) -> u64 {
        self.inner.count.load(Ordering::SeqCst)
    }

    /// How many records of `stream` were rejected so far.
    pub fn count_for(&self, stream: &str) -> u64 {
        self.inner
            .per_stream
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(stream)
            .copied()
            .unwrap_or(0)
    }

    /// Every letter is in the file once `reject` returns; this only checks that nothing
    /// went wrong.
    pub fn flush(&self) -> Result<()> {
        let mut target = self.inner.target.lock().unwrap_or_else(|p| p.into_inner());
        if let Target::File(Some(w)) = &mut *target {
            w.flush().map_err(|e| Error::io(&self.inner.path, e))?;
        }
        Ok(())
    }

    /// The records kept in memory, emptied.
    pub fn take(&self) -> Vec<DeadLetter> {
        let mut target = self.inner.target.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *target {
            Target::Memory(letters) => std::mem::take(letters),
            Target::File(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn letter(row: u64) -> DeadLetter {
        let position = Position {
            seq: 0,
            file: "in.csv".into(),
            line: Some(row + 1),
            row,
        };
        DeadLetter::new("users", &position, "source", "ragged row", json!(["a"]))
    }

    #[test]
    fn writes_one_json_object_per_line_and_stops_past_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/dead-letter.jsonl");
        let dl = DeadLetters::to_file(&path, Some(1), false).unwrap();
        dl.reject(letter(1)).unwrap();
        let err = dl.reject(letter(2)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::TooManyErrors {
                    count: 2,
                    max: 1,
                    ..
                }
            ),
            "{err}"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0],
            json!({"stream": "users", "file": "in.csv", "line": 2, "row": 1, "stage": "source",
                   "reason": "ragged row", "record": ["a"]})
        );
    }

    #[test]
    fn a_new_run_starts_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead-letter.jsonl");
        std::fs::write(&path, "old\n").unwrap();
        let dl = DeadLetters::to_file(&path, None, false).unwrap();
        assert!(!path.exists());
        dl.reject(letter(1)).unwrap();
        dl.flush().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
    }
}
