//! Sources: where records come from. Each reads its files as a stream (memory stays flat
//! however large the input), yields records with their positions, and hands records it
//! cannot read to the dead-letter file instead of failing the run.

pub mod csv;
pub mod dump;
pub mod files;
pub mod gleap;
pub mod intercom;
pub mod jsonl;
pub mod parquet;
pub mod zendesk;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::error::Result;
use crate::record::{Position, Record, Value};

/// Where a stream reads its records from. Exactly one kind.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// Delimited text with a header row.
    Csv(csv::CsvSourceConfig),
    /// Apache Parquet files, read a row group at a time.
    Parquet(parquet::ParquetSourceConfig),
    /// Newline-delimited JSON, one object per line.
    Jsonl(jsonl::JsonlSourceConfig),
    /// Zendesk exports and API dumps: users, tickets, comments.
    Zendesk(zendesk::ZendeskSourceConfig),
    /// Intercom API dumps: contacts, conversations, conversation parts.
    Intercom(intercom::IntercomSourceConfig),
    /// Gleap sessions, tickets or messages, read back through the API (exports).
    Gleap(gleap::GleapSourceConfig),
}

impl SourceConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::Csv(_) => "csv",
            SourceConfig::Parquet(_) => "parquet",
            SourceConfig::Jsonl(_) => "jsonl",
            SourceConfig::Zendesk(_) => "zendesk",
            SourceConfig::Intercom(_) => "intercom",
            SourceConfig::Gleap(_) => "gleap",
        }
    }

    /// Finds the input files and prepares to read them. Fails when no file matches.
    pub fn open(&self) -> Result<OpenedSource> {
        self.open_for("", None)
    }

    /// [`SourceConfig::open`] for a stream of a run: the Gleap source reads through the
    /// run's client and resumes from the stream's stored cursor.
    pub fn open_for(
        &self,
        stream: &str,
        gleap: Option<Arc<crate::sinks::gleap::GleapRun>>,
    ) -> Result<OpenedSource> {
        match self {
            SourceConfig::Gleap(c) => c.open(stream, gleap),
            SourceConfig::Csv(c) => c.open(),
            SourceConfig::Parquet(c) => c.open(),
            SourceConfig::Jsonl(c) => c.open(),
            SourceConfig::Zendesk(c) => c.open(),
            SourceConfig::Intercom(c) => c.open(),
        }
    }
}

/// What a source yields: a record, or a record it could not read.
#[derive(Debug)]
pub enum SourceItem {
    Record(Record, Position),
    Rejected(Rejected),
}

/// A record the source could not read, kept as raw as possible.
#[derive(Debug)]
pub struct Rejected {
    pub position: Position,
    pub record: Value,
    pub reason: String,
}

/// Items in order; an `Err` is fatal (the input cannot be read further) and ends the stream.
pub type SourceIter = Box<dyn Iterator<Item = Result<SourceItem>> + Send>;

/// How far through its input a source is, for progress bars.
#[derive(Debug, Clone)]
pub struct SourceProgress {
    pub unit: ProgressUnit,
    /// The amount of work in all, when known.
    pub total: Option<u64>,
    /// The amount done so far, updated by the reader.
    pub done: Arc<AtomicU64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressUnit {
    /// Bytes read from disk (compressed bytes for `.gz`).
    Bytes,
    /// Rows read.
    Rows,
}

/// A source ready to be read.
pub struct OpenedSource {
    pub items: SourceIter,
    pub progress: SourceProgress,
    pub files: Vec<PathBuf>,
    /// API sources: where the read stands after each page, for the sink to commit.
    pub cursor: Option<Arc<gleap::CursorLog>>,
}

impl OpenedSource {
    /// Reads `files` one after another: `read_file` opens one and returns its items, adding
    /// to the progress counter it is given as it goes. `total` is in `unit`s.
    pub fn from_files<F>(
        files: Vec<PathBuf>,
        unit: ProgressUnit,
        total: u64,
        mut read_file: F,
    ) -> OpenedSource
    where
        F: FnMut(&Path, &Arc<AtomicU64>) -> Result<SourceIter> + Send + 'static,
    {
        let done = Arc::new(AtomicU64::new(0));
        let progress = SourceProgress {
            unit,
            total: Some(total),
            done: done.clone(),
        };
        let mut pending = files.clone().into_iter();
        let mut current: Option<SourceIter> = None;
        let mut failed = false;
        let items = Box::new(std::iter::from_fn(move || {
            loop {
                if failed {
                    return None;
                }
                if let Some(items) = current.as_mut() {
                    match items.next() {
                        Some(Err(e)) => {
                            failed = true;
                            return Some(Err(e));
                        }
                        Some(item) => return Some(item),
                        None => current = None,
                    }
                }
                let path = pending.next()?;
                match read_file(&path, &done) {
                    Ok(items) => current = Some(items),
                    Err(e) => {
                        failed = true;
                        return Some(Err(e));
                    }
                }
            }
        }));
        OpenedSource {
            items,
            progress,
            files,
            cursor: None,
        }
    }
}
