//! Sinks: where records go. File sinks write to a temporary name and rename on success, so
//! a failed or interrupted run never leaves a half-written file under the real name.

pub mod csv;
pub mod gleap;
pub mod jsonl;
pub mod output;
pub mod parquet;

use std::path::PathBuf;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::dead_letter::{DeadLetter, DeadLetters};
use crate::error::Result;
use crate::record::{Position, Record, Value};

/// Where a stream writes its records. Exactly one kind.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkConfig {
    /// An Apache Parquet file with a typed schema, zstd-compressed.
    Parquet(parquet::ParquetSinkConfig),
    /// Delimited text with a header row; nested fields become dotted columns.
    Csv(csv::CsvSinkConfig),
    /// Newline-delimited JSON.
    Jsonl(jsonl::JsonlSinkConfig),
    /// Gleap sessions, tickets or messages, upserted through the API.
    Gleap(gleap::GleapSinkConfig),
}

impl SinkConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::Parquet(_) => "parquet",
            SinkConfig::Csv(_) => "csv",
            SinkConfig::Jsonl(_) => "jsonl",
            SinkConfig::Gleap(_) => "gleap",
        }
    }

    /// The file the sink writes, if it writes one.
    pub fn path(&self) -> Option<&str> {
        match self {
            SinkConfig::Parquet(c) => Some(&c.path),
            SinkConfig::Csv(c) => Some(&c.path),
            SinkConfig::Jsonl(c) => Some(&c.path),
            SinkConfig::Gleap(_) => None,
        }
    }

    /// Every problem with the options as written, found without touching any file; `at` is
    /// the config path of the sink (`streams[0].sink`). `build` makes the same checks.
    pub fn check(&self, at: &str) -> Vec<crate::config::ConfigError> {
        let at = format!("{at}.{}", self.kind());
        match self {
            SinkConfig::Parquet(c) => c.check(&at),
            SinkConfig::Csv(c) => c.check(&at),
            SinkConfig::Jsonl(c) => c.check(&at),
            SinkConfig::Gleap(c) => c.check(&at),
        }
    }

    /// The Gleap sink's settings, when the sink writes to Gleap.
    pub fn gleap(&self) -> Option<&gleap::GleapSinkConfig> {
        match self {
            SinkConfig::Gleap(g) => Some(g),
            _ => None,
        }
    }

    /// The Gleap sink's settings when it writes sessions, tickets or messages: the records
    /// that `verify`, `undo`, `prune` and `--sample` follow by id. `None` for help-centre
    /// content and for other sinks.
    pub fn gleap_records(&self) -> Option<&gleap::GleapSinkConfig> {
        self.gleap().filter(|g| !g.entity.is_help_centre())
    }

    /// Whether the sink writes to Gleap (it needs the run's client and state store).
    pub fn writes_gleap(&self) -> bool {
        self.gleap().is_some()
    }

    /// Whether the stream hands the sink [`crate::batch::Batch`]es: the file sinks (a
    /// Parquet file writes them as they are where they fit its schema, the others as rows,
    /// converted in the writer thread). The Gleap sink takes records one by one, each
    /// confirmed in its own right.
    pub fn takes_batches(&self) -> bool {
        !matches!(self, SinkConfig::Gleap(_))
    }

    /// Whether the sink writes a Parquet dataset (a folder of parts, committed in the state
    /// store).
    pub fn is_dataset(&self) -> bool {
        matches!(self, SinkConfig::Parquet(p) if p.dataset.is_some())
    }

    /// The field a dataset sink partitions its records by (`dataset.partition_by.field`).
    pub fn partition_field(&self) -> Option<&str> {
        match self {
            SinkConfig::Parquet(p) => {
                Some(p.dataset.as_ref()?.partition_by.as_ref()?.field.as_str())
            }
            _ => None,
        }
    }

    /// The column types declared in the sink's `schema:` (none for sinks without one).
    pub fn declared_types(&self) -> indexmap::IndexMap<String, crate::record::FieldType> {
        match self {
            SinkConfig::Parquet(p) => p.schema.clone(),
            _ => Default::default(),
        }
    }

    /// Creates the output (under a temporary name) and returns the running sink.
    pub fn build(&self, context: SinkContext) -> Result<Box<dyn Sink>> {
        Ok(match self {
            SinkConfig::Parquet(c) => c.build_sink(context)?,
            SinkConfig::Csv(c) => Box::new(c.build(context)?),
            SinkConfig::Jsonl(c) => Box::new(c.build(context)?),
            SinkConfig::Gleap(c) => c.build_sink(context)?,
        })
    }
}

/// What a sink needs from the run.
#[derive(Clone)]
pub struct SinkContext {
    pub stream: String,
    pub dead_letters: DeadLetters,
    /// Identifies the stream's input (names, sizes and times of its files), for resuming.
    pub input_fingerprint: String,
    /// The run's Gleap client and state store, when it has Gleap sinks or sources.
    pub gleap: Option<Arc<gleap::GleapRun>>,
    /// The run's state store, when the pipeline needs one (Gleap, datasets).
    pub state: Option<Arc<crate::state::StateStore>>,
    /// API sources: where the read stands after each page, to commit with durable output.
    pub cursor: Option<Arc<crate::sources::gleap::CursorLog>>,
    /// Column types the source knows its records to have (the Gleap source's documented
    /// fields), when records reach the sink untransformed; declared types override them.
    pub column_types: indexmap::IndexMap<String, crate::record::FieldType>,
}

impl SinkContext {
    /// A context for a stream without Gleap services or a known input.
    pub fn new(stream: &str, dead_letters: DeadLetters) -> SinkContext {
        SinkContext {
            stream: stream.to_string(),
            dead_letters,
            input_fingerprint: String::new(),
            gleap: None,
            state: None,
            cursor: None,
            column_types: Default::default(),
        }
    }

    /// Sends a record the sink cannot write to the dead-letter file. Fails when that is one
    /// record more than `--max-errors` allows.
    pub fn reject(
        &self,
        position: &Position,
        reason: impl Into<String>,
        record: Record,
    ) -> Result<()> {
        self.dead_letters.reject(DeadLetter::new(
            &self.stream,
            position,
            "sink",
            reason,
            Value::Object(record),
        ))
    }
}

/// A running sink.
pub trait Sink: Send {
    /// Takes one record. A record the sink cannot write goes to the dead-letter file through
    /// its [`SinkContext`]; an `Err` is fatal and ends the stream.
    fn write(&mut self, record: Record, position: Position) -> Result<()>;

    /// Writes the rows of a batch; a sink without a batch writer takes them as records,
    /// each followed by [`Sink::source_done`] for its source row (a kernel gives at most one
    /// row per source row), as the row path hands them over: a dataset still cuts its parts
    /// at the first row after `part_rows`, not at the end of a batch.
    fn write_batch(&mut self, batch: crate::batch::Batch) -> Result<()> {
        for (record, position) in batch.to_rows() {
            let seq = position.seq;
            self.write(record, position)?;
            self.source_done(seq)?;
        }
        Ok(())
    }

    /// Writes everything still buffered and puts the output in place.
    fn finish(self: Box<Self>) -> Result<SinkSummary>;

    /// Gives up: partial output is removed, the previous output (if any) stays.
    fn abort(self: Box<Self>);

    /// Source record `seq` (see [`Position::seq`]) has been handed over: every record it
    /// turned into was passed to `write` (none, if it was filtered or dead-lettered).
    /// Checkpointing sinks count on it; source records come in increasing order.
    fn source_done(&mut self, _seq: u64) -> Result<()> {
        Ok(())
    }

    /// Source records up to and including this one were confirmed by an earlier, interrupted
    /// run over the same input: the engine skips them.
    fn resume_after(&self) -> Option<u64> {
        None
    }
}

/// What a sink wrote.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SinkSummary {
    /// Records written.
    pub written: u64,
    /// Records sent to the dead-letter file by the sink.
    pub rejected: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Size of the output file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Sink-specific details (Parquet: schema, row groups).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<Value>,
}
