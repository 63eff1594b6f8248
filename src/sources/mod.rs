//! Sources: where records come from. Each reads its files as a stream (memory stays flat
//! however large the input), yields records with their positions, and hands records it
//! cannot read to the dead-letter file instead of failing the run.

pub mod csv;
mod csv_columns;
mod csv_scan;
pub mod dump;
pub mod files;
pub mod gleap;
pub mod intercom;
pub mod intercom_articles;
pub mod jsonl;
pub mod parquet;
mod parquet_depth;
pub mod zendesk;
pub mod zendesk_guide;

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

    /// Every problem with the options as written, found without touching any file; `at` is
    /// the config path of the source (`streams[0].source`). `open` makes the same checks.
    pub fn check(&self, at: &str) -> Vec<crate::config::ConfigError> {
        let at = format!("{at}.{}", self.kind());
        match self {
            SourceConfig::Csv(c) => c.check(&at),
            SourceConfig::Parquet(c) => c.check(&at),
            SourceConfig::Jsonl(c) => c.check(&at),
            SourceConfig::Zendesk(c) => c.check(&at),
            SourceConfig::Intercom(c) => c.check(&at),
            SourceConfig::Gleap(c) => c.check(&at),
        }
    }

    /// Whether the source reads from Gleap through the API (it needs the run's client).
    pub fn reads_gleap(&self) -> bool {
        matches!(self, SourceConfig::Gleap(_))
    }

    /// Why a run of this source reads only part of what it holds (an incremental read, a
    /// `since`), if it does: such a run cannot tell what is gone from it.
    pub fn reads_part(&self) -> Option<&'static str> {
        match self {
            SourceConfig::Gleap(g) if g.incremental => Some("reads incrementally"),
            SourceConfig::Gleap(g) if g.since.is_some() => Some("reads only since `since`"),
            _ => None,
        }
    }

    /// Column types the source knows its records to have (the Gleap source's documented
    /// fields); none for file sources, whose types are inferred.
    pub fn column_types(&self) -> indexmap::IndexMap<String, crate::record::FieldType> {
        match self {
            SourceConfig::Gleap(g) => g.column_types(),
            _ => Default::default(),
        }
    }

    /// The fields every record has, when the source knows them before the run (a `gleap`
    /// source's documented fields), with what the records are (`Gleap tickets records`),
    /// for messages. `None` when the fields are only known once the input is read.
    pub fn known_fields(
        &self,
    ) -> Option<(String, indexmap::IndexMap<String, crate::record::FieldType>)> {
        match self {
            SourceConfig::Gleap(g) => Some((
                format!("Gleap {} records", g.entity.name()),
                g.column_types(),
            )),
            _ => None,
        }
    }

    /// The paths and globs of the files it reads, as written (none for API sources).
    pub fn input_patterns(&self) -> Vec<&str> {
        match self {
            SourceConfig::Csv(c) => vec![c.path.as_str()],
            SourceConfig::Parquet(c) => vec![c.path.as_str()],
            SourceConfig::Jsonl(c) => vec![c.path.as_str()],
            SourceConfig::Zendesk(c) => c.path.patterns(),
            SourceConfig::Intercom(c) => c.path.patterns(),
            SourceConfig::Gleap(_) => Vec::new(),
        }
    }

    /// Finds the input files and prepares to read them. Fails when no file matches.
    pub fn open(&self) -> Result<OpenedSource> {
        self.open_for("", None)
    }

    /// The source opened to hand over [`crate::batch::Batch`]es where it can (CSV, Parquet), for a
    /// stream whose stages and sink take them; `None` for a source that reads rows only.
    pub fn open_columnar(&self) -> Option<Result<OpenedSource>> {
        match self {
            SourceConfig::Csv(c) => Some(c.open_batches(csv::MIN_BATCH_ROWS)),
            SourceConfig::Parquet(c) => Some(c.open_as(true)),
            _ => None,
        }
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

/// How large a field and a record of a text source may be (`max_field_mib`,
/// `max_record_mib`); a larger one is skipped (read no further than the limit) and
/// dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeLimits {
    pub max_field_bytes: u64,
    pub max_record_bytes: u64,
}

impl SizeLimits {
    /// `max_field_mib` default.
    pub const DEFAULT_FIELD_MIB: u64 = 16;
    /// `max_record_mib` default.
    pub const DEFAULT_RECORD_MIB: u64 = 64;

    /// The limits from the options as written (in MiB), with the defaults (the field
    /// limit's default is no more than the record limit).
    pub fn from_mib(
        field: Option<&crate::config::Spanned<u64>>,
        record: Option<&crate::config::Spanned<u64>>,
    ) -> SizeLimits {
        let record = record.map_or(Self::DEFAULT_RECORD_MIB, |v| v.value);
        let field = field.map_or(Self::DEFAULT_FIELD_MIB.min(record), |v| v.value);
        SizeLimits {
            max_field_bytes: field.saturating_mul(1 << 20),
            max_record_bytes: record.saturating_mul(1 << 20),
        }
    }

    /// Problems with the options as written: each at least 1, the field limit not above
    /// the record limit. `path` is the source's config path.
    pub fn check(
        field: Option<&crate::config::Spanned<u64>>,
        record: Option<&crate::config::Spanned<u64>>,
        path: &str,
    ) -> Vec<crate::config::ConfigError> {
        use crate::config::ConfigError;
        let mut errors = Vec::new();
        for (name, v) in [("max_field_mib", field), ("max_record_mib", record)] {
            if let Some(v) = v.filter(|v| v.value == 0 || v.value > 1 << 20) {
                errors.push(ConfigError::new(
                    v.location(),
                    format!(
                        "{path}.{name}: {} is not a size limit: between 1 and 1048576 (MiB)",
                        v.value
                    ),
                ));
            }
        }
        let limits = SizeLimits::from_mib(field, record);
        if errors.is_empty() && limits.max_field_bytes > limits.max_record_bytes {
            let at = field
                .or(record)
                .map_or(crate::config::Location::UNKNOWN, |v| v.location());
            errors.push(ConfigError::new(
                at,
                format!(
                    "{path}.max_field_mib: a field ({} MiB) cannot be larger than a record (max_record_mib: {} MiB)",
                    limits.max_field_bytes >> 20,
                    limits.max_record_bytes >> 20
                ),
            ));
        }
        errors
    }
}

/// The checks of a text source (CSV, JSON lines) on its `path` and size limits; `at` is the
/// source's config path.
fn check_text_source(
    path: &str,
    field: Option<&crate::config::Spanned<u64>>,
    record: Option<&crate::config::Spanned<u64>>,
    at: &str,
) -> Vec<crate::config::ConfigError> {
    let mut errors: Vec<_> = files::check_pattern(path, &format!("{at}.path"))
        .into_iter()
        .collect();
    errors.extend(SizeLimits::check(field, record, at));
    errors
}

impl Default for SizeLimits {
    fn default() -> SizeLimits {
        SizeLimits::from_mib(None, None)
    }
}

/// What a source yields: a record, or a record it could not read.
#[derive(Debug)]
pub enum SourceItem {
    Record(Record, Position),
    Rejected(Rejected),
    /// Rows as columns, from a source opened with [`SourceConfig::open_columnar`].
    Batch(crate::batch::Batch),
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
