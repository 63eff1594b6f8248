//! Parquet sink: one file with a typed schema, written a row group at a time so memory stays
//! flat however many records pass.
//!
//! The schema is declared (`schema:`), inferred from the first `infer_rows` records, or both.
//! Inference looks at every field, nested objects and lists included, and picks the narrowest
//! type every value fits: `int64`, `float64`, `bool`, UTC `timestamp` (RFC 3339 strings),
//! `date32` (`YYYY-MM-DD` strings), `string`, `list<...>`, a struct for objects, and `json`
//! (the JSON text, as a UTF-8 column with the `arrow.json` extension) for fields that mix
//! objects or lists with other values. A later record that does not fit the schema (a new
//! field, a value of another type) goes to the dead-letter file, saying which field and why.

mod builder;
mod conform;
mod dataset;
pub use dataset::{DatasetConfig, Granularity, PartitionBy, SchemaPolicy};
mod schema;
mod snapshot;
mod storage;

use std::fs::File;

use indexmap::IndexMap;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use self::builder::{BatchBuilder, Problem, check_record};
use self::schema::Fields;
use super::output::PendingOutput;
use super::{Sink, SinkContext, SinkSummary};
use crate::error::{Error, Result};
use crate::record::{FieldPath, FieldType, Position, Record, Value};

/// Writes one Apache Parquet file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParquetSinkConfig {
    /// The output file. It is written as `<path>.inprogress` and renamed once complete, so a
    /// failed run leaves the previous file in place. With `dataset:`, the folder, or a bucket
    /// URL: `s3://bucket/prefix`, `gs://`, `az://` (credentials from the environment), or
    /// `file:///abs/path`.
    pub path: String,
    /// Declared column types by field name: `string`, `int`, `float`, `bool`, `timestamp`,
    /// `date`, `json` or `list<TYPE>`. A dotted name (`customData.seats`) declares a field of
    /// a nested object. Declared fields always get a column, even when no record has them;
    /// other fields are inferred from the first `infer_rows` records. Default: none.
    #[serde(default)]
    pub schema: IndexMap<String, FieldType>,
    /// The compression codec. Default `zstd`.
    #[serde(default)]
    pub compression: ParquetCompression,
    /// The compression level: 1 to 22 for zstd (default 3), 0 to 10 for gzip (default 6).
    /// Other codecs have no levels.
    #[serde(default)]
    pub compression_level: Option<i32>,
    /// A row group is closed once its estimated encoded size passes this many MiB, so the
    /// memory used stays flat; a row group also never holds more than 1,000,000 rows.
    /// Default 64.
    #[serde(default = "default_row_group_mib")]
    #[schemars(range(min = 1))]
    pub row_group_mib: usize,
    /// How many records are held to infer the schema before any is written. Default 10000.
    #[serde(default = "default_infer_rows")]
    #[schemars(range(min = 1))]
    pub infer_rows: usize,
    /// How many records are converted to columns at a time. Default 8192.
    #[serde(default = "default_batch_rows")]
    #[schemars(range(min = 1))]
    pub batch_rows: usize,
    /// Nested fields that also get a column of their own, typed, named with `_` for `.`
    /// (`customData.plan` -> `customData_plan`); the nested value stays where it was.
    /// `customData.*` gives every key of the object a column (`customData_<key>`, at most
    /// 256 of them): in a dataset with `schema: evolve`, a key records gain later gets its
    /// column in the parts written from then on.
    #[serde(default)]
    pub flatten: Vec<FieldPath>,
    /// A JSON column that takes fields the schema has no column for, or whose value does not
    /// fit their column, instead of sending the record to the dead-letter file.
    #[serde(default)]
    pub rest: Option<String>,
    /// Write a dataset: `path` is a folder of `part-NNNNN.parquet` files and a
    /// `_manifest.json`, each part committed with the input it holds, so a killed run resumes
    /// after its last part.
    #[serde(default)]
    pub dataset: Option<dataset::DatasetConfig>,
}

/// A Parquet compression codec.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParquetCompression {
    /// Zstandard: small files, fast to read. The default.
    #[default]
    Zstd,
    /// Snappy: fast, larger files.
    Snappy,
    /// Gzip: widely readable, slow to write.
    Gzip,
    /// LZ4 (the `LZ4_RAW` codec).
    Lz4,
    /// No compression.
    None,
}

/// The default of `row_group_mib`.
pub const DEFAULT_ROW_GROUP_MIB: usize = 64;
/// The default of `infer_rows`.
pub const DEFAULT_INFER_ROWS: usize = 10_000;
/// The default of `batch_rows`.
pub const DEFAULT_BATCH_ROWS: usize = 8192;
/// The default zstd level.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;
/// The default gzip level.
pub const DEFAULT_GZIP_LEVEL: i32 = 6;
/// The most rows a row group holds.
pub const MAX_ROW_GROUP_ROWS: usize = 1_000_000;
/// The most text (in string and json columns) one record batch holds; Arrow's 32-bit
/// offsets cap a column at 2 GiB. A batch is cut early to stay below, and a record holding
/// more than this on its own is sent to the dead-letter file.
const MAX_BATCH_TEXT_BYTES: usize = 1 << 30;

impl ParquetSinkConfig {
    /// Writes to `path`, with the defaults a pipeline file gets.
    pub fn new(path: String) -> ParquetSinkConfig {
        ParquetSinkConfig {
            path,
            schema: IndexMap::new(),
            compression: ParquetCompression::default(),
            compression_level: None,
            row_group_mib: default_row_group_mib(),
            infer_rows: default_infer_rows(),
            batch_rows: default_batch_rows(),
            flatten: Vec::new(),
            rest: None,
            dataset: None,
        }
    }
}

fn default_row_group_mib() -> usize {
    DEFAULT_ROW_GROUP_MIB
}

fn default_infer_rows() -> usize {
    DEFAULT_INFER_ROWS
}

fn default_batch_rows() -> usize {
    DEFAULT_BATCH_ROWS
}

impl ParquetSinkConfig {
    /// The running sink: a file, or a dataset.
    pub fn build_sink(&self, context: SinkContext) -> Result<Box<dyn Sink>> {
        Ok(match &self.dataset {
            Some(d) => Box::new(dataset::DatasetSink::build(self, d, context)?),
            None => Box::new(self.build(context)?),
        })
    }

    /// The declared column types: the source's, overridden by `schema:`.
    fn declared(&self, context: &SinkContext) -> IndexMap<String, FieldType> {
        let mut declared = context.column_types.clone();
        for (k, v) in &self.schema {
            declared.insert(k.clone(), v.clone());
        }
        declared
    }

    /// Every problem with the options as written (dataset options included); `at` is the
    /// sink's config path. `build` makes the same checks.
    pub fn check(&self, at: &str) -> Vec<crate::config::ConfigError> {
        use crate::config::ConfigError;
        let mut errors = match &self.dataset {
            // A dataset's path is a folder.
            Some(_) if self.path.trim().is_empty() => vec![ConfigError::at(
                format!("{at}.path"),
                "an empty path names no folder",
            )],
            Some(_) => Vec::new(),
            None => super::output::check_path(&self.path, at),
        };
        if let Err(e) = schema::validate_declared(&self.schema) {
            errors.push(ConfigError::at(format!("{at}.schema"), e));
        }
        for (name, value) in [
            ("row_group_mib", self.row_group_mib),
            ("infer_rows", self.infer_rows),
            ("batch_rows", self.batch_rows),
        ] {
            if value == 0 {
                errors.push(ConfigError::at(
                    format!("{at}.{name}"),
                    "must be at least 1",
                ));
            }
        }
        if let Err(e) = self.compression() {
            errors.push(ConfigError::at(format!("{at}.compression_level"), e));
        }
        for (i, path) in self.flatten.iter().enumerate() {
            let segments = path.segments();
            if segments[..segments.len() - 1].iter().any(|s| s == "*") || segments == ["*"] {
                errors.push(ConfigError::at(
                    format!("{at}.flatten[{i}]"),
                    format!(
                        "`{}`: `*` stands for every key of an object and comes last, after the object's name (`customData.*`)",
                        path.as_str()
                    ),
                ));
            }
        }
        if let Some(d) = &self.dataset {
            errors.extend(d.check(&format!("{at}.dataset")));
        }
        errors
    }

    /// Checks the settings, creates `<path>.inprogress` and returns the running sink.
    pub fn build(&self, context: SinkContext) -> Result<ParquetSink> {
        crate::config::checked(self.check("sink.parquet"))?;
        let properties = self.writer_properties()?;
        let (file, pending) = PendingOutput::create(self.path.as_ref())?;
        Ok(ParquetSink {
            shaper: Shaper::new(self),
            declared: self.declared(&context),
            context,
            properties,
            infer_rows: self.infer_rows.max(1),
            batch_rows: self.batch_rows,
            row_group_bytes: self.row_group_mib.saturating_mul(1 << 20),
            compression: self.compression,
            pending,
            file: Some(file),
            sample: Vec::new(),
            open: None,
            inferred_from: 0,
            written: 0,
            rejected: 0,
        })
    }

    /// Every Parquet writer setting, in one place.
    pub fn writer_properties(&self) -> Result<WriterProperties> {
        let compression = self
            .compression()
            .map_err(|e| Error::config_at("sink.parquet.compression_level", e))?;
        Ok(WriterProperties::builder()
            .set_compression(compression)
            .set_dictionary_enabled(true)
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_max_row_group_row_count(Some(MAX_ROW_GROUP_ROWS))
            .set_max_row_group_bytes(Some(self.row_group_mib.max(1).saturating_mul(1 << 20)))
            .set_created_by(format!("gleap-etl {}", env!("CARGO_PKG_VERSION")))
            .build())
    }

    /// The codec at its level (`compression`, `compression_level`), or why the level does
    /// not fit the codec.
    fn compression(&self) -> std::result::Result<Compression, String> {
        let level = self.compression_level;
        Ok(match self.compression {
            ParquetCompression::Zstd => {
                let level = level.unwrap_or(DEFAULT_ZSTD_LEVEL);
                Compression::ZSTD(
                    ZstdLevel::try_new(level)
                        .map_err(|_| format!("{level} is not a zstd level (1 to 22)"))?,
                )
            }
            ParquetCompression::Gzip => {
                let level = level.unwrap_or(DEFAULT_GZIP_LEVEL);
                Compression::GZIP(
                    u32::try_from(level)
                        .ok()
                        .and_then(|l| GzipLevel::try_new(l).ok())
                        .ok_or_else(|| format!("{level} is not a gzip level (0 to 10)"))?,
                )
            }
            other => {
                if let Some(level) = level {
                    return Err(format!(
                        "{level}: only zstd and gzip have levels, not {}",
                        match other {
                            ParquetCompression::Snappy => "snappy",
                            ParquetCompression::Lz4 => "lz4",
                            _ => "none",
                        }
                    ));
                }
                match other {
                    ParquetCompression::Snappy => Compression::SNAPPY,
                    ParquetCompression::Lz4 => Compression::LZ4_RAW,
                    _ => Compression::UNCOMPRESSED,
                }
            }
        })
    }
}

/// The most columns one `flatten` wildcard (`customData.*`) adds; further keys stay only
/// in the object's own column.
pub const MAX_WILDCARD_COLUMNS: usize = 256;

/// What every record goes through before it is checked against the schema: `flatten`
/// copies, and `rest` collecting what has no column.
#[derive(Debug, Clone)]
struct Shaper {
    /// Named fields (`customData.plan`) and their columns (`customData_plan`).
    flatten: Vec<(FieldPath, String)>,
    /// Objects every key of which gets a column (`customData.*`), and the columns' prefix
    /// (`customData_`).
    wildcards: Vec<(FieldPath, String)>,
    rest: Option<String>,
}

impl Shaper {
    fn new(config: &ParquetSinkConfig) -> Shaper {
        let mut flatten = Vec::new();
        let mut wildcards = Vec::new();
        for path in &config.flatten {
            match path.as_str().strip_suffix(".*") {
                Some(object) => {
                    let object = FieldPath::parse(object).expect("a part of a field path");
                    let prefix = format!("{}_", object.as_str().replace('.', "_"));
                    wildcards.push((object, prefix));
                }
                None => flatten.push((path.clone(), path.as_str().replace('.', "_"))),
            }
        }
        Shaper {
            flatten,
            wildcards,
            rest: config.rest.clone(),
        }
    }

    /// Whether records are changed before they meet the schema (so a batch cannot be
    /// written as it is).
    fn reshapes(&self) -> bool {
        !self.flatten.is_empty() || !self.wildcards.is_empty() || self.rest.is_some()
    }

    /// Adds the flattened columns: named fields first, then each key of a wildcard's object
    /// that no field of the record already names.
    fn flatten(&self, record: &mut Record) {
        for (path, column) in &self.flatten {
            let value = path.get(record).cloned().unwrap_or(Value::Null);
            record.insert(column.clone(), value);
        }
        for (path, prefix) in &self.wildcards {
            let Some(Value::Object(object)) = path.get(record) else {
                continue;
            };
            let copies: Vec<(String, Value)> = object
                .iter()
                .map(|(key, value)| (format!("{prefix}{key}"), value.clone()))
                .filter(|(column, _)| !record.contains_key(column))
                .collect();
            record.extend(copies);
        }
    }

    /// Whether the top-level field `name` is a wildcard's copy of a key of its object: the
    /// object holds the same value under the key, so nothing is lost without the copy (a
    /// field of the record's own that differs is not a copy).
    fn is_wildcard_copy(&self, record: &Record, name: &str) -> bool {
        self.wildcards.iter().any(|(path, prefix)| {
            name.strip_prefix(prefix.as_str()).is_some_and(|key| {
                matches!(path.get(record), Some(Value::Object(o)) if o.get(key) == record.get(name))
            })
        })
    }

    /// Keeps the first [`MAX_WILDCARD_COLUMNS`] columns of each wildcard, in column order;
    /// the names of the columns dropped (their keys stay in the object's column).
    fn limit_wildcards(&self, fields: &mut Fields) -> Vec<String> {
        let mut dropped = Vec::new();
        for (_, prefix) in &self.wildcards {
            let over: Vec<String> = fields
                .iter()
                .filter(|(name, f)| name.starts_with(prefix.as_str()) && !f.declared)
                .skip(MAX_WILDCARD_COLUMNS)
                .map(|(name, _)| name.clone())
                .collect();
            for name in over {
                fields.shift_remove(&name);
                dropped.push(name);
            }
        }
        if !dropped.is_empty() {
            let more = dropped.len().saturating_sub(10);
            tracing::warn!(
                "{} keys past the {MAX_WILDCARD_COLUMNS} columns a flatten wildcard adds stay only in their object's column: {}{}",
                dropped.len(),
                dropped[..dropped.len() - more].join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            );
        }
        dropped
    }

    /// The schema's extra columns: the flattened ones (inferred) and `rest`.
    fn add_columns(&self, fields: &mut Fields) {
        if let Some(rest) = &self.rest {
            fields.insert(
                rest.clone(),
                schema::FieldSpec {
                    ty: schema::ColType::Json,
                    declared: true,
                },
            );
        }
    }

    /// The schema: inferred from the sample, with the declared types and the extra columns.
    fn columns<'a>(
        &self,
        sample: impl IntoIterator<Item = &'a Record>,
        declared: &IndexMap<String, FieldType>,
    ) -> Fields {
        let mut fields = schema::infer(sample);
        schema::apply_declared(&mut fields, declared);
        self.add_columns(&mut fields);
        fields
    }

    /// Makes the record fit the schema (see [`Shaper::fit`]): the bytes of text it holds, or
    /// why it cannot be written (`inferred_from`: how many records the schema came from).
    fn check(
        &self,
        fields: &Fields,
        record: &mut Record,
        inferred_from: usize,
    ) -> std::result::Result<usize, String> {
        match self.fit(fields, record) {
            Ok(bytes) if bytes <= MAX_BATCH_TEXT_BYTES => Ok(bytes),
            Ok(bytes) => Err(format!(
                "the record holds {bytes} bytes of text; a Parquet batch takes at most {MAX_BATCH_TEXT_BYTES}"
            )),
            Err(problem) => Err(problem_reason(problem, inferred_from)),
        }
    }

    /// Checks the record against the schema, moving fields that do not fit into `rest`
    /// when there is one; the bytes of text it adds, or why it cannot be written.
    fn fit(&self, fields: &Fields, record: &mut Record) -> std::result::Result<usize, Problem> {
        if !self.wildcards.is_empty() {
            // A wildcard's copy of a key with no column (first seen after the schema was
            // fixed, or past the cap) is dropped: its object's column holds the value.
            let orphans: Vec<String> = record
                .keys()
                .filter(|name| self.is_wildcard_copy(record, name) && !fields.contains_key(*name))
                .cloned()
                .collect();
            for name in orphans {
                record.shift_remove(&name);
            }
        }
        let Some(rest_column) = &self.rest else {
            return check_record(fields, record);
        };
        let mut rest = match record.shift_remove(rest_column) {
            Some(Value::Object(o)) => o,
            _ => Record::new(),
        };
        let result = loop {
            match check_record(fields, record) {
                Ok(bytes) => break Ok(bytes),
                Err(Problem::Unknown { path } | Problem::Mismatch { path, .. }) => {
                    let top = path.split('.').next().unwrap_or(&path).to_string();
                    match record.shift_remove(&top) {
                        Some(value) => {
                            rest.insert(top, value);
                        }
                        None => break check_record(fields, record),
                    }
                }
            }
        };
        if !rest.is_empty() {
            record.insert(rest_column.clone(), Value::Object(rest));
        }
        result.map(|bytes| bytes + record.get(rest_column).map_or(0, |v| v.to_string().len()))
    }
}

/// A running Parquet sink.
pub struct ParquetSink {
    context: SinkContext,
    shaper: Shaper,
    declared: IndexMap<String, FieldType>,
    properties: WriterProperties,
    infer_rows: usize,
    batch_rows: usize,
    row_group_bytes: usize,
    compression: ParquetCompression,
    pending: PendingOutput,
    /// The output, until the schema is fixed and the writer takes it.
    file: Option<File>,
    /// Records held until the schema is fixed.
    sample: Vec<(Record, Position)>,
    /// Set once the schema is fixed.
    open: Option<OpenFile>,
    /// How many records the schema was inferred from.
    inferred_from: usize,
    written: u64,
    rejected: u64,
}

/// The file being written, once the schema is fixed: a local file, or (in a dataset) a part
/// going to a folder or a bucket.
struct OpenFile<W: std::io::Write + Send = File> {
    fields: Fields,
    /// The Arrow form of `fields`.
    schema: arrow::datatypes::SchemaRef,
    writer: ArrowWriter<W>,
    batch: BatchBuilder,
    /// Text bytes in `batch`.
    batch_text_bytes: usize,
}

impl<W: std::io::Write + Send> OpenFile<W> {
    fn new(
        file: W,
        fields: Fields,
        properties: &WriterProperties,
    ) -> std::result::Result<OpenFile<W>, String> {
        let arrow_schema = schema::arrow_schema(&fields);
        let writer = ArrowWriter::try_new(file, arrow_schema.clone(), Some(properties.clone()))
            .map_err(|e| e.to_string())?;
        Ok(OpenFile {
            batch: BatchBuilder::new(&fields, arrow_schema.clone()),
            schema: arrow_schema,
            fields,
            writer,
            batch_text_bytes: 0,
        })
    }

    /// Adds a record that fits (holding `bytes` of text, see [`Shaper::check`]); the batch is
    /// written first if the record's text would push it past what a batch holds, and after
    /// once it has `batch_rows` records.
    fn append(
        &mut self,
        record: &Record,
        bytes: usize,
        batch_rows: usize,
        row_group_bytes: usize,
    ) -> std::result::Result<(), String> {
        if self.batch_text_bytes + bytes > MAX_BATCH_TEXT_BYTES {
            self.write_batch(row_group_bytes)?;
        }
        self.batch.append(record);
        self.batch_text_bytes += bytes;
        if self.batch.len() >= batch_rows {
            self.write_batch(row_group_bytes)?;
        }
        Ok(())
    }

    /// Writes the records appended so far as a batch; closes the row group once it is big.
    fn write_batch(&mut self, row_group_bytes: usize) -> std::result::Result<(), String> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = self.batch.finish().map_err(|e| e.to_string())?;
        self.batch_text_bytes = 0;
        self.write_columns(&batch, row_group_bytes)
    }

    /// Writes columns of the file's schema; closes the row group once it is big.
    fn write_columns(
        &mut self,
        batch: &arrow::record_batch::RecordBatch,
        row_group_bytes: usize,
    ) -> std::result::Result<(), String> {
        self.writer.write(batch).map_err(|e| e.to_string())?;
        if self.writer.in_progress_size() >= row_group_bytes {
            self.writer.flush().map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

fn output_error(pending: &PendingOutput, e: impl std::fmt::Display) -> Error {
    Error::output(pending.temp_path(), format!("writing Parquet: {e}"))
}

impl ParquetSink {
    fn output_error(&self, e: impl std::fmt::Display) -> Error {
        output_error(&self.pending, e)
    }

    /// Fixes the schema from the records held (and the declared types), opens the writer and
    /// writes the records held.
    fn fix_schema(&mut self) -> Result<()> {
        let mut fields = self
            .shaper
            .columns(self.sample.iter().map(|(r, _)| r), &self.declared);
        self.shaper.limit_wildcards(&mut fields);
        let Some(file) = self.file.take() else {
            return Err(self.output_error("the schema was fixed twice"));
        };
        self.inferred_from = self.sample.len();
        self.open =
            Some(OpenFile::new(file, fields, &self.properties).map_err(|e| self.output_error(e))?);
        for (record, position) in std::mem::take(&mut self.sample) {
            self.write_row(record, position)?;
        }
        Ok(())
    }

    fn write_row(&mut self, mut record: Record, position: Position) -> Result<()> {
        let Some(open) = self.open.as_mut() else {
            return Err(output_error(
                &self.pending,
                "a row came before the schema was fixed",
            ));
        };
        match self
            .shaper
            .check(&open.fields, &mut record, self.inferred_from)
        {
            Ok(bytes) => {
                open.append(&record, bytes, self.batch_rows, self.row_group_bytes)
                    .map_err(|e| output_error(&self.pending, e))?;
                self.written += 1;
                Ok(())
            }
            Err(reason) => {
                self.rejected += 1;
                self.context.reject(&position, reason, record)
            }
        }
    }
}

/// Why a record does not fit the schema, in words.
fn problem_reason(problem: Problem, inferred_from: usize) -> String {
    let inferred = format!(
        "schema inferred from the first {} record{}; declare it in sink.parquet.schema",
        inferred_from,
        if inferred_from == 1 { "" } else { "s" }
    );
    match problem {
        Problem::Unknown { path } => format!("field {path}: not in the schema ({inferred})"),
        Problem::Mismatch {
            path,
            expected,
            found,
            declared,
        } => {
            let hint = if declared {
                "declared in sink.parquet.schema"
            } else {
                &inferred
            };
            format!("field {path}: expected {expected}, found {found} ({hint})")
        }
    }
}

impl Sink for ParquetSink {
    fn write(&mut self, mut record: Record, position: Position) -> Result<()> {
        self.shaper.flatten(&mut record);
        if self.open.is_some() {
            return self.write_row(record, position);
        }
        self.sample.push((record, position));
        if self.sample.len() >= self.infer_rows {
            self.fix_schema()?;
        }
        Ok(())
    }

    /// Once the schema is fixed, a batch whose columns are the schema's (see `conform`) is
    /// written as it is, after the records appended before it; else row by row.
    fn write_batch(&mut self, batch: crate::batch::Batch) -> Result<()> {
        if let Some(open) = self.open.as_mut()
            && !self.shaper.reshapes()
            && let Some(columns) = conform::conform(&open.fields, &open.schema, &batch.columns)
        {
            let row_group_bytes = self.row_group_bytes;
            open.write_batch(row_group_bytes)
                .and_then(|()| open.write_columns(&columns, row_group_bytes))
                .map_err(|e| output_error(&self.pending, e))?;
            self.written += columns.num_rows() as u64;
            return Ok(());
        }
        for (record, position) in batch.to_rows() {
            self.write(record, position)?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<SinkSummary> {
        if self.open.is_none() {
            self.fix_schema()?;
        }
        let Some(mut open) = self.open.take() else {
            return Err(self.output_error("the schema was not fixed"));
        };
        open.write_batch(self.row_group_bytes)
            .map_err(|e| self.output_error(e))?;
        open.writer.flush().map_err(|e| self.output_error(e))?;
        let row_groups = open.writer.flushed_row_groups().len();
        // Writes the footer and hands the file back.
        let file = open.writer.into_inner().map_err(|e| self.output_error(e))?;
        let this = *self;
        let path = this.pending.final_path().to_path_buf();
        let bytes = this.pending.commit(file)?;
        Ok(SinkSummary {
            written: this.written,
            rejected: this.rejected,
            path: Some(path),
            bytes: Some(bytes),
            detail: Some(serde_json::json!({
                "schema": schema::describe_fields(&open.fields),
                "row_groups": row_groups,
                "compression": this.compression,
                "inferred_from": this.inferred_from,
            })),
        })
    }

    /// Drops the writer; the `.inprogress` file is removed, the previous output stays.
    fn abort(self: Box<Self>) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dead_letter::{DeadLetter, DeadLetters};
    use crate::record::Value;
    use crate::sources::SourceItem;
    use crate::sources::parquet::ParquetSourceConfig;
    use arrow::datatypes::{DataType, TimeUnit};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use serde_json::json;
    use std::path::Path;

    fn config(path: &Path, extra: Value) -> ParquetSinkConfig {
        let mut c = json!({"path": path.to_str().unwrap()});
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(c).unwrap()
    }

    fn run(config: &ParquetSinkConfig, records: &[Value]) -> (SinkSummary, Vec<DeadLetter>) {
        let dl = DeadLetters::in_memory(None);
        let context = SinkContext::new("s", dl.clone());
        let mut sink: Box<dyn Sink> = Box::new(config.build(context).unwrap());
        for (i, r) in records.iter().enumerate() {
            let position = Position {
                seq: 0,
                file: "in.jsonl".into(),
                line: Some(i as u64 + 1),
                row: i as u64 + 1,
            };
            sink.write(r.as_object().unwrap().clone(), position)
                .unwrap();
        }
        (sink.finish().unwrap(), dl.take())
    }

    /// The records of a Parquet file, through the Parquet source.
    fn read_back(path: &Path) -> Vec<Value> {
        let source: ParquetSourceConfig =
            serde_json::from_value(json!({"path": path.to_str().unwrap()})).unwrap();
        source
            .open()
            .unwrap()
            .items
            .map(|item| match item.unwrap() {
                SourceItem::Record(r, _) => Value::Object(r),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    fn arrow_types(path: &Path) -> Vec<(String, DataType)> {
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
        builder
            .schema()
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect()
    }

    #[test]
    fn infers_types_and_writes_values_that_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out/users.parquet");
        let records = vec![
            json!({"id": 1, "score": 1.5, "active": true, "name": "Zoë",
                   "createdAt": "2024-03-01T12:00:00.000Z", "day": "2024-03-01",
                   "tags": ["a", "b"], "customData": {"plan": "pro", "seats": 3}}),
            json!({"id": 2, "score": 2, "active": false, "name": null,
                   "createdAt": "2024-03-02T08:30:00.123456Z", "day": "2024-03-02",
                   "tags": [], "customData": {"plan": "free"}}),
        ];
        let (summary, dead) = run(&config(&path, json!({})), &records);
        assert!(dead.is_empty(), "{dead:?}");
        assert_eq!((summary.written, summary.rejected), (2, 0));
        assert_eq!(summary.path.as_deref(), Some(path.as_path()));
        assert_eq!(summary.bytes, Some(std::fs::metadata(&path).unwrap().len()));
        assert!(!dir.path().join("out/users.parquet.inprogress").exists());
        assert_eq!(
            summary.detail.as_ref().unwrap()["schema"],
            json!({"id": "int64", "score": "float64", "active": "bool", "name": "string",
                   "createdAt": "timestamp[us, UTC]", "day": "date32", "tags": "list<string>",
                   "customData": {"plan": "string", "seats": "int64"}})
        );
        assert_eq!(summary.detail.as_ref().unwrap()["row_groups"], json!(1));

        let types = arrow_types(&path);
        let names: Vec<&str> = types.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "id",
                "score",
                "active",
                "name",
                "createdAt",
                "day",
                "tags",
                "customData"
            ]
        );
        assert_eq!(types[0].1, DataType::Int64);
        assert_eq!(types[1].1, DataType::Float64);
        assert_eq!(types[2].1, DataType::Boolean);
        assert_eq!(types[3].1, DataType::Utf8);
        assert_eq!(
            types[4].1,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        assert_eq!(types[5].1, DataType::Date32);
        assert!(matches!(&types[6].1, DataType::List(item) if *item.data_type() == DataType::Utf8));
        let DataType::Struct(inner) = &types[7].1 else {
            panic!("{:?}", types[7].1)
        };
        assert_eq!(inner[1].data_type(), &DataType::Int64);

        let back = read_back(&path);
        assert_eq!(back[0], records[0]);
        assert_eq!(
            back[1],
            json!({"id": 2, "score": 2.0, "active": false, "name": null,
                   "createdAt": "2024-03-02T08:30:00.123456Z", "day": "2024-03-02",
                   "tags": [], "customData": {"plan": "free", "seats": null}})
        );
    }

    #[test]
    fn values_that_do_not_fit_are_dead_lettered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.parquet");
        let records = vec![
            json!({"id": 1, "customData": {"seats": 3}}),
            json!({"id": 2, "customData": {"seats": 4}}),
            json!({"id": 3, "customData": {"seats": "many"}}),
            json!({"id": 4, "customData": {"seats": "5"}}),
            json!({"id": 5.5}),
            json!({"id": 6, "extra": "x"}),
            json!({"id": 7, "customData": {"seats": 1, "plan": "pro"}}),
            // A field outside the schema holding null loses nothing: written.
            json!({"id": 8, "extra": null}),
        ];
        let (summary, dead) = run(&config(&path, json!({"infer_rows": 2})), &records);
        assert_eq!((summary.written, summary.rejected), (4, 4));
        let got: Vec<(u64, &str)> = dead.iter().map(|d| (d.row, d.reason.as_str())).collect();
        assert_eq!(
            got,
            [
                (
                    3,
                    "field customData.seats: expected int, found string \"many\" (schema inferred from the first 2 records; declare it in sink.parquet.schema)"
                ),
                (
                    5,
                    "field id: expected int, found a float `5.5` (schema inferred from the first 2 records; declare it in sink.parquet.schema)"
                ),
                (
                    6,
                    "field extra: not in the schema (schema inferred from the first 2 records; declare it in sink.parquet.schema)"
                ),
                (
                    7,
                    "field customData.plan: not in the schema (schema inferred from the first 2 records; declare it in sink.parquet.schema)"
                ),
            ]
        );
        assert_eq!(dead[0].stage, "sink");
        assert_eq!(dead[0].record, records[2]);
        let ids: Vec<Value> = read_back(&path).iter().map(|r| r["id"].clone()).collect();
        assert_eq!(ids, [json!(1), json!(2), json!(4), json!(8)]);
        assert_eq!(read_back(&path)[2]["customData"], json!({"seats": 5}));
    }

    #[test]
    fn declared_types_override_inference() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.parquet");
        let c = config(
            &path,
            json!({"schema": {"seats": "string", "score": "float", "payload": "json",
                              "customData.plan": "string", "at": "timestamp",
                              "tags": "list<int>"},
                   "compression": "snappy"}),
        );
        let records = vec![
            json!({"seats": 3, "score": 1, "payload": {"a": [1]}, "at": "2024-03-01 10:00:00",
                   "tags": ["1", 2]}),
            json!({"seats": true, "score": "2.5", "payload": "text", "tags": ["x"]}),
        ];
        let (summary, dead) = run(&c, &records);
        assert_eq!(summary.written, 1);
        assert_eq!(
            dead[0].reason,
            "field tags[0]: expected int, found string \"x\" (declared in sink.parquet.schema)"
        );
        assert_eq!(
            summary.detail.unwrap()["schema"],
            json!({"seats": "string", "score": "float64", "payload": "json",
                   "at": "timestamp[us, UTC]", "tags": "list<int64>",
                   "customData": {"plan": "string"}})
        );
        assert_eq!(
            read_back(&path),
            [json!({"seats": "3", "score": 1.0, "payload": {"a": [1]},
                    "at": "2024-03-01T10:00:00.000Z", "tags": [1, 2],
                    "customData": null})]
        );
    }

    #[test]
    fn an_empty_stream_still_writes_a_readable_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.parquet");
        let (summary, _) = run(&config(&path, json!({})), &[]);
        assert_eq!(summary.written, 0);
        assert!(arrow_types(&path).is_empty());
        assert!(read_back(&path).is_empty());

        let declared = dir.path().join("declared.parquet");
        run(
            &config(&declared, json!({"schema": {"id": "int", "a.b": "date"}})),
            &[],
        );
        let types = arrow_types(&declared);
        assert_eq!(types[0], ("id".to_string(), DataType::Int64));
        assert!(
            matches!(&types[1].1, DataType::Struct(f) if f[0].data_type() == &DataType::Date32)
        );
    }

    #[test]
    fn records_without_fields_are_counted_as_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.parquet");
        let (summary, _) = run(&config(&path, json!({})), &[json!({}), json!({"x": null})]);
        assert_eq!(summary.written, 2);
        let meta = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
        assert_eq!(meta.metadata().file_metadata().num_rows(), 2);
    }

    #[test]
    fn small_row_groups_bound_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.parquet");
        let records: Vec<Value> = (0..60_000u64)
            .map(|i| {
                json!({"id": i, "text": format!("{:016x}{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15), i)})
            })
            .collect();
        let c = config(
            &path,
            json!({"row_group_mib": 1, "batch_rows": 1000, "infer_rows": 100}),
        );
        let (summary, _) = run(&c, &records);
        let row_groups = summary.detail.unwrap()["row_groups"].as_u64().unwrap();
        assert!(row_groups >= 2, "{row_groups} row groups");
        let meta = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
        assert_eq!(meta.metadata().num_row_groups() as u64, row_groups);
        assert_eq!(meta.metadata().file_metadata().num_rows(), 60_000);
    }

    #[test]
    fn abort_keeps_the_previous_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.parquet");
        std::fs::write(&path, "old").unwrap();
        let context = SinkContext::new("s", DeadLetters::in_memory(None));
        let mut sink: Box<dyn Sink> = Box::new(config(&path, json!({})).build(context).unwrap());
        let position = Position {
            seq: 0,
            file: "in".into(),
            line: None,
            row: 1,
        };
        sink.write(json!({"a": 1}).as_object().unwrap().clone(), position)
            .unwrap();
        sink.abort();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert!(!dir.path().join("o.parquet.inprogress").exists());
    }

    #[test]
    fn settings_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let context = || SinkContext::new("s", DeadLetters::in_memory(None));
        let path = dir.path().join("o.parquet");
        for (extra, message) in [
            (json!({"compression_level": 40}), "not a zstd level"),
            (
                json!({"compression": "snappy", "compression_level": 1}),
                "only zstd and gzip",
            ),
            (json!({"row_group_mib": 0}), "row_group_mib"),
            (
                json!({"schema": {"a": "json", "a.b": "int"}}),
                "cannot reach into it",
            ),
            (json!({"flatten": ["*"]}), "sink.parquet.flatten[0]: `*`"),
            (
                json!({"flatten": ["a", "x.*.y"]}),
                "sink.parquet.flatten[1]: `x.*.y`",
            ),
        ] {
            let err = config(&path, extra)
                .build(context())
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains(message), "{err}");
        }
        let ok = config(
            &path,
            json!({"compression": "gzip", "compression_level": 9}),
        );
        assert!(ok.build(context()).is_ok());
    }

    /// `flatten: [customData.*]` gives each key of the object a typed column, the object
    /// keeps its own; a key first seen after the sample, or past the cap, stays only in the
    /// object (not in `rest`, not a dead letter); a value that no longer fits its column goes
    /// to `rest`; a field the record already has is not overwritten by a copy.
    #[test]
    fn a_wildcard_gives_each_key_of_an_object_a_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.parquet");
        let mut many = serde_json::Map::new();
        for i in 0..MAX_WILDCARD_COLUMNS + 5 {
            many.insert(format!("k{i:03}"), json!(i));
        }
        let records = [
            json!({"id": 1, "customData": {"plan": "pro", "seats": 3}, "customData_plan": "kept"}),
            json!({"id": 2, "customData": {"seats": 4, "since": "2024-05-01T00:00:00Z"}}),
            json!({"id": 3, "other": {"plan": "x"}}),
            json!({"id": 4, "customData": many}),
            json!({"id": 5, "customData": {"seats": "many", "late": true}}),
            json!({"id": 6, "customData": {"own": 1}, "customData_own": "mine"}),
        ];
        let c = config(
            &path,
            json!({"flatten": ["customData.*"], "infer_rows": 4, "rest": "extra",
                   "schema": {"customData": "json"}}),
        );
        let (summary, dead) = run(&c, &records);
        assert!(dead.is_empty(), "{dead:?}");
        assert_eq!(summary.written, 6);
        let types: std::collections::HashMap<String, DataType> =
            arrow_types(&path).into_iter().collect();
        assert_eq!(types["customData_seats"], DataType::Int64);
        assert_eq!(
            types["customData_since"],
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        assert_eq!(types["customData_plan"], DataType::Utf8);
        assert_eq!(types["customData"], DataType::Utf8);
        assert!(!types.contains_key("other_plan"));
        // seats, plan and since came first; the cap leaves room for 253 of record 4's keys.
        let wildcard = types
            .keys()
            .filter(|k| k.starts_with("customData_"))
            .count();
        assert_eq!(wildcard, MAX_WILDCARD_COLUMNS);
        assert!(types.contains_key("customData_k252"));
        assert!(!types.contains_key("customData_k253"));
        assert!(!types.contains_key("customData_late"));
        let rows = read_back(&path);
        assert_eq!(rows[0]["customData_plan"], "kept");
        assert_eq!(rows[0]["customData"], json!({"plan": "pro", "seats": 3}));
        assert_eq!(rows[1]["customData_seats"], 4);
        assert_eq!(rows[3]["customData_k000"], 0);
        assert_eq!(rows[3]["customData"]["k260"], 260);
        assert!(rows[3]["extra"].is_null(), "{:?}", rows[3]);
        // `late` has no column: only in customData; `seats` no longer fits: in `extra`.
        assert_eq!(
            rows[4]["customData"],
            json!({"seats": "many", "late": true})
        );
        assert!(rows[4]["customData_seats"].is_null());
        assert_eq!(rows[4]["extra"], json!({"customData_seats": "many"}));
        // A field of the record's own, not a copy, with no column: kept in `extra`.
        assert_eq!(rows[5]["extra"], json!({"customData_own": "mine"}));
    }
}
