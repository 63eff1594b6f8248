//! Parquet datasets: a folder of `part-NNNNN.parquet` files and a `_manifest.json`.
//!
//! Records are written to the files of the current part under `*.inprogress` names. Once a
//! part holds `part_rows` records and the input behind it is known (the source cursor after a
//! page, for the Gleap source; the last source record, for files), its files are synced, the
//! part and that input position are committed together in the state store, and the files are
//! renamed. A killed run leaves at most uncommitted `.inprogress` files, which the next run
//! removes before it resumes after the last committed part: nothing is lost or written twice.
//!
//! Parts belong to a generation. A run that reads its input afresh writes a new generation;
//! the manifest keeps naming the previous one as current until the new one is complete, then
//! the old files are removed. A run that appends (an incremental export, or the resumption of
//! an interrupted one) adds parts to the generation it continues.
//!
//! With `partition_by`, each part has one file per value of a date field, in Hive-style
//! folders (`createdAt_month=2024-03/part-00000.parquet`).
//!
//! The dataset's path may be a bucket URL (`s3://bucket/prefix`, `gs://`, `az://`): the
//! files then go through [`super::storage::Bucket`] (multipart uploads, completed before the
//! commit; the manifest is what makes them current), a local folder through
//! [`super::storage::LocalFolder`] (as described above).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use indexmap::IndexMap;
use parquet::file::properties::WriterProperties;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::schema::{self, Fields};
use super::snapshot;
use super::storage::{self, DatasetFiles, PartWriter};
use super::{OpenFile, ParquetCompression, ParquetSinkConfig, Shaper};
use crate::error::{Error, Result};
use crate::record::{FieldPath, FieldType, Position, Record, Value, parse_timestamp};
use crate::sinks::{Sink, SinkContext, SinkSummary};
use crate::sources::gleap::StartMode;
use crate::state::{DatasetRow, PartRow, StateStore};

/// The manifest's file name in the dataset folder.
pub const MANIFEST: &str = "_manifest.json";

/// Dataset settings.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    /// Records per part (a part is cut at the first page or record boundary after this many).
    /// Default 100000.
    #[serde(default = "default_part_rows")]
    #[schemars(range(min = 1))]
    pub part_rows: u64,
    /// Hive-style folders by a date field.
    #[serde(default)]
    pub partition_by: Option<PartitionBy>,
    /// At most this many files are open at once when partitioning; more partitions in one
    /// part close the open files and continue in new ones. Default 16.
    #[serde(default = "default_max_open_files")]
    #[schemars(range(min = 1))]
    pub max_open_files: usize,
    /// Also keep a current-state table in `snapshot/`: one row per `_id`, its latest version
    /// by `updatedAt`, rewritten after each run that committed parts (see
    /// [`super::snapshot`]). Default false.
    #[serde(default)]
    pub snapshot: bool,
    /// What a later run does with a field the dataset has no column for: `evolve` (the
    /// default) gives it a typed column in the parts written from then on (readers take the
    /// union: DuckDB's `union_by_name`); `freeze` keeps the columns of the dataset's first
    /// part, and such fields go to the `rest` column (or the dead-letter file).
    #[serde(default)]
    pub schema: SchemaPolicy,
}

/// How a dataset's columns may change from run to run (`dataset.schema`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SchemaPolicy {
    /// New fields get typed columns in later parts; old columns keep their types.
    #[default]
    Evolve,
    /// Every part keeps the columns of the first.
    Freeze,
}

impl Default for DatasetConfig {
    /// The defaults a pipeline file gets.
    fn default() -> DatasetConfig {
        DatasetConfig {
            part_rows: default_part_rows(),
            partition_by: None,
            max_open_files: default_max_open_files(),
            snapshot: false,
            schema: SchemaPolicy::default(),
        }
    }
}

fn default_part_rows() -> u64 {
    100_000
}

fn default_max_open_files() -> usize {
    16
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PartitionBy {
    /// The field holding an instant (RFC 3339) or a date.
    pub field: FieldPath,
    /// `day`, `month` (default) or `year`.
    #[serde(default)]
    pub granularity: Granularity,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    Day,
    #[default]
    Month,
    Year,
}

impl DatasetConfig {
    /// Every problem with the options as written; `at` is the `dataset` option's config path.
    pub fn check(&self, at: &str) -> Vec<crate::config::ConfigError> {
        let mut errors = Vec::new();
        for (name, value) in [
            ("part_rows", self.part_rows),
            ("max_open_files", self.max_open_files as u64),
        ] {
            if value == 0 {
                errors.push(crate::config::ConfigError::at(
                    format!("{at}.{name}"),
                    "must be at least 1",
                ));
            }
        }
        errors
    }
}

impl PartitionBy {
    /// The folder of a record: `createdAt_month=2024-03`, or Hive's default partition.
    fn folder(&self, record: &Record) -> String {
        let (name, format) = match self.granularity {
            Granularity::Day => ("day", "%Y-%m-%d"),
            Granularity::Month => ("month", "%Y-%m"),
            Granularity::Year => ("year", "%Y"),
        };
        let value = match self.field.get(record) {
            Some(Value::String(s)) => {
                parse_timestamp(s.trim()).map(|t| t.format(format).to_string())
            }
            _ => None,
        };
        format!(
            "{}_{name}={}",
            self.field.as_str().replace('.', "_"),
            value.as_deref().unwrap_or("__HIVE_DEFAULT_PARTITION__")
        )
    }
}

/// One file of the part being written.
struct PartFile {
    /// Relative to the dataset folder, without `.inprogress`.
    name: String,
    open: OpenFile<Box<dyn PartWriter>>,
    rows: u64,
}

pub struct DatasetSink {
    context: SinkContext,
    shaper: Shaper,
    declared: IndexMap<String, FieldType>,
    properties: WriterProperties,
    compression: ParquetCompression,
    config: DatasetConfig,
    /// The folder or bucket prefix the files go to (a folder is locked while this sink
    /// writes it: a second run writing the same dataset refuses).
    dir: Box<dyn DatasetFiles>,
    store: Arc<StateStore>,
    generation: i64,
    /// The number of the part being written.
    part: i64,
    infer_rows: usize,
    batch_rows: usize,
    row_group_bytes: usize,
    fields: Option<Fields>,
    /// `schema: evolve`: the columns of the dataset's last part, which this run's part
    /// keeps, adding the fields its first records bring (see [`schema::evolve`]).
    base: Option<Fields>,
    /// The columns this run added to the dataset's.
    added: Vec<String>,
    /// Fields whose value no longer fits their column (so went to `rest`), by name: the
    /// column's type and the first such value's, noted once per field.
    type_changes: IndexMap<String, (String, String)>,
    sample: Vec<(Record, Position)>,
    inferred_from: usize,
    /// Open files of the part, by partition folder ("" without partitioning).
    files: HashMap<String, PartFile>,
    /// Files of the part already closed (when more partitions came than may be open).
    closed: Vec<(String, u64)>,
    /// How many files each partition folder has in the part, for their names.
    file_counts: HashMap<String, usize>,
    part_rows: u64,
    /// File sources: source records up to this one are in committed parts.
    resume_after: Option<u64>,
    written: u64,
    rejected: u64,
    parts_committed: u64,
    /// Why this incremental run exports everything (its folder does not hold what the
    /// cursor says).
    started_over: Option<String>,
}

/// The files of a committed part, from its JSON.
pub(super) fn part_files(part: &PartRow) -> Vec<String> {
    serde_json::from_str::<Vec<Value>>(&part.files)
        .unwrap_or_default()
        .iter()
        .filter_map(|f| f.get("file").and_then(Value::as_str).map(str::to_string))
        .collect()
}

/// Whether a file name is one this sink gives parts: `part-00012.parquet`, `part-00012-3.parquet`.
pub(super) fn is_part_name(name: &str) -> bool {
    name.strip_prefix("part-")
        .and_then(|rest| rest.strip_suffix(".parquet"))
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit() || c == '-'))
}

impl DatasetSink {
    pub fn build(
        config: &ParquetSinkConfig,
        dataset: &DatasetConfig,
        context: SinkContext,
    ) -> Result<DatasetSink> {
        crate::config::checked(config.check("sink.parquet"))?;
        let properties = config.writer_properties()?;
        let store = context.state.clone().ok_or_else(|| {
            Error::internal("sink.parquet: a dataset needs the run's state store")
        })?;
        let dir = storage::open(&config.path, &store)?;
        // The folder is the dataset's own: its files are renamed and removed as parts come
        // and go, so a folder holding something else is refused.
        if dir.is_foreign(MANIFEST)? {
            return Err(Error::output(
                dir.path(),
                "the folder is not empty and has no _manifest.json: not a gleap-etl dataset; choose an empty or new folder",
            ));
        }
        let stream = context.stream.clone();
        let dir_text = dir.path().display().to_string();
        let row = store.dataset(&stream)?.filter(|r| r.dir == dir_text);
        let mut parts = store.parts(&stream)?;
        if row.is_none() && !parts.is_empty() {
            // The stream wrote a dataset elsewhere before: that one is left alone.
            for p in &parts {
                store.drop_generation(&stream, p.generation)?;
            }
            parts.clear();
        }
        let current = row.as_ref().and_then(|r| r.current_generation);
        let building = row.as_ref().and_then(|r| r.building_generation);
        // An incremental run adds to the dataset only if it holds what the cursor says.
        let started_over = match &context.cursor {
            Some(log) if log.mode == StartMode::Append => {
                let why = append_refused(&*dir, row.as_ref(), store.source_cursor(&stream)?);
                if let Some(why) = &why {
                    tracing::warn!("stream `{stream}`: {why}");
                    log.start_over(why.clone());
                }
                why
            }
            _ => None,
        };
        let continued = match (&context.cursor, &row) {
            (Some(_), _) if started_over.is_some() => None,
            (Some(log), Some(_)) => match log.mode {
                StartMode::Resume => building,
                StartMode::Append => building.or(current),
                StartMode::Fresh => None,
            },
            (None, Some(r)) => building
                .filter(|_| r.fingerprint == context.input_fingerprint && r.through_seq.is_some()),
            _ => None,
        };
        let (generation, resume_after) = match continued {
            Some(g) => (
                g,
                row.as_ref()
                    .and_then(|r| r.through_seq)
                    .filter(|_| context.cursor.is_none()),
            ),
            None => {
                // A new generation; an abandoned one is removed.
                if let Some(b) = building.filter(|b| Some(*b) != current) {
                    for p in store.drop_generation(&stream, b)? {
                        remove_files(&*dir, &p);
                    }
                    parts.retain(|p| p.generation != b);
                }
                let next = parts
                    .iter()
                    .map(|p| p.generation)
                    .chain(current)
                    .chain(building)
                    .max()
                    .unwrap_or(0)
                    + 1;
                (next, None)
            }
        };
        store.set_dataset(
            &stream,
            &DatasetRow {
                dir: dir_text.clone(),
                current_generation: current,
                building_generation: Some(generation),
                fingerprint: context.input_fingerprint.clone(),
                through_seq: resume_after,
            },
        )?;
        // What a killed run left: files of committed parts not yet published are published,
        // other unfinished files and part files no committed part names are removed.
        let mut committed: HashSet<String> =
            store.parts(&stream)?.iter().flat_map(part_files).collect();
        committed.extend(snapshot::files(&store, &stream, &dir_text)?);
        dir.tidy(&committed, &is_part_name)?;
        record_old_schemas(&*dir, &store, &stream, &store.parts(&stream)?);
        let parts = store.parts(&stream)?;
        let part = parts.iter().map(|p| p.part + 1).max().unwrap_or(0);
        // Later parts keep the columns of the generation's last part (with `freeze`, every
        // part has the first's); with `evolve`, this run's first records may add columns.
        let last = match parts.iter().rev().find(|p| p.generation == generation) {
            Some(p) => match part_files(p).first() {
                Some(f) => Some(dir.read_schema(f)?),
                None => None,
            },
            None => None,
        };
        let (fields, base) = match dataset.schema {
            SchemaPolicy::Freeze => (last, None),
            SchemaPolicy::Evolve => (None, last),
        };
        let sink = DatasetSink {
            shaper: Shaper::new(config),
            declared: config.declared(&context),
            context,
            properties,
            compression: config.compression,
            config: dataset.clone(),
            dir,
            store,
            generation,
            part,
            infer_rows: config.infer_rows.max(1),
            batch_rows: config.batch_rows,
            row_group_bytes: config.row_group_mib.saturating_mul(1 << 20),
            inferred_from: 0,
            fields,
            base,
            added: Vec::new(),
            type_changes: IndexMap::new(),
            sample: Vec::new(),
            files: HashMap::new(),
            closed: Vec::new(),
            file_counts: HashMap::new(),
            part_rows: 0,
            resume_after,
            written: 0,
            rejected: 0,
            parts_committed: 0,
            started_over,
        };
        sink.write_manifest()?;
        // Files of a snapshot the manifest no longer names go once it is written.
        sink.dir.tidy(&committed, &snapshot::is_snapshot_name)?;
        Ok(sink)
    }

    fn fix_schema(&mut self) -> Result<()> {
        let mut fields = self
            .shaper
            .columns(self.sample.iter().map(|(r, _)| r), &self.declared);
        if let Some(base) = self.base.take() {
            let sample = &self.sample;
            let has_value = |name: &str| {
                sample
                    .iter()
                    .any(|(r, _)| r.get(name).is_some_and(|v| !v.is_null()))
            };
            (fields, self.added) =
                schema::evolve(&base, fields, self.shaper.rest.as_deref(), has_value);
        }
        // The cap on a wildcard's columns applies to the schema the part gets: the last
        // part's columns come first, so they are kept.
        let dropped = self.shaper.limit_wildcards(&mut fields);
        self.added.retain(|name| !dropped.contains(name));
        if !self.added.is_empty() {
            tracing::info!(
                "stream `{}`: new columns from this run on: {}",
                self.context.stream,
                self.added.join(", ")
            );
        }
        self.inferred_from = self.sample.len();
        self.fields = Some(fields);
        for (record, position) in std::mem::take(&mut self.sample) {
            self.write_row(record, position)?;
        }
        Ok(())
    }

    /// Closes every open file of the part (they stay `.inprogress` until the commit).
    fn close_files(&mut self) -> Result<()> {
        for (_, mut file) in self.files.drain() {
            let path = self.dir.path().join(&file.name);
            file.open
                .write_batch(usize::MAX)
                .map_err(|e| Error::output(&path, e))?;
            let written = file
                .open
                .writer
                .into_inner()
                .map_err(|e| Error::output(&path, e))?;
            written.close()?;
            self.closed.push((file.name, file.rows));
        }
        Ok(())
    }

    fn open_file(&mut self, folder: &str) -> Result<()> {
        if self.files.len() >= self.config.max_open_files {
            self.close_files()?;
        }
        let fields = self.fields.clone().expect("the schema is fixed");
        let count = self.file_counts.entry(folder.to_string()).or_insert(0);
        let mut name = format!("part-{:05}", self.part);
        if *count > 0 {
            name.push_str(&format!("-{count}"));
        }
        *count += 1;
        name.push_str(".parquet");
        if !folder.is_empty() {
            name = format!("{folder}/{name}");
        }
        let file = self.dir.create(&name)?;
        let open = OpenFile::new(file, fields, &self.properties)
            .map_err(|e| Error::output(self.dir.path().join(&name), e))?;
        self.files.insert(
            folder.to_string(),
            PartFile {
                name,
                open,
                rows: 0,
            },
        );
        Ok(())
    }

    fn write_row(&mut self, mut record: Record, position: Position) -> Result<()> {
        let fields = self.fields.as_ref().expect("the schema is fixed");
        let bytes = match self.shaper.check(fields, &mut record, self.inferred_from) {
            Ok(bytes) => bytes,
            Err(reason) => {
                self.rejected += 1;
                return self.context.reject(&position, reason, record);
            }
        };
        if let Some(rest) = self.shaper.rest.as_deref()
            && let Some(Value::Object(moved)) = record.get(rest)
        {
            for (name, value) in moved {
                if let Some(column) = fields.get(name).filter(|_| name != rest)
                    && !self.type_changes.contains_key(name)
                {
                    let (column, found) = (column.ty.type_name(), schema::value_type(value));
                    tracing::warn!(
                        "stream `{}`: field `{name}` no longer fits its {column} column (a {found} value); such values go to `{rest}`",
                        self.context.stream
                    );
                    self.type_changes.insert(name.clone(), (column, found));
                }
            }
        }
        let folder = match &self.config.partition_by {
            Some(p) => p.folder(&record),
            None => String::new(),
        };
        if !self.files.contains_key(&folder) {
            self.open_file(&folder)?;
        }
        // Open files share the row-group budget, so memory stays flat.
        let budget = self.row_group_bytes / self.files.len().max(1);
        let batch_rows = self.batch_rows;
        let file = self.files.get_mut(&folder).expect("just opened");
        file.open
            .append(&record, bytes, batch_rows, budget.max(1 << 20))
            .map_err(|e| Error::output(self.dir.path().join(&file.name), e))?;
        file.rows += 1;
        self.part_rows += 1;
        self.written += 1;
        Ok(())
    }

    /// Closes the part's files, commits them with the input they hold, renames them.
    fn commit_part(&mut self, cursor: Option<String>, through_seq: Option<u64>) -> Result<()> {
        if self.fields.is_none() {
            self.fix_schema()?;
        }
        self.close_files()?;
        if self.closed.is_empty() {
            // Nothing written since the last part: only the input position moves.
            if let Some(c) = &cursor {
                self.store.set_source_cursor(&self.context.stream, c)?;
            }
            return Ok(());
        }
        let files: Vec<(String, u64)> = std::mem::take(&mut self.closed);
        let rows = files.iter().map(|(_, r)| r).sum();
        let row = PartRow {
            part: self.part,
            generation: self.generation,
            files: serde_json::to_string(
                &files
                    .iter()
                    .map(|(f, r)| json!({"file": f, "rows": r}))
                    .collect::<Vec<_>>(),
            )
            .expect("JSON"),
            rows,
            committed_at: crate::record::format_timestamp(&chrono::Utc::now()),
            schema: self
                .fields
                .as_ref()
                .map(|f| schema::describe_fields(f).to_string()),
        };
        self.store
            .commit_part(&self.context.stream, &row, cursor.as_deref(), through_seq)?;
        for (name, _) in &files {
            self.dir.publish(name)?;
        }
        self.part += 1;
        self.part_rows = 0;
        self.parts_committed += 1;
        self.file_counts.clear();
        self.write_manifest()
    }

    /// Writes `_manifest.json` from the state store (to a temporary name, then renamed).
    fn write_manifest(&self) -> Result<()> {
        let stream = &self.context.stream;
        let row = self.store.dataset(stream)?;
        let current = row.as_ref().and_then(|r| r.current_generation);
        let building = row
            .as_ref()
            .and_then(|r| r.building_generation)
            .filter(|b| Some(*b) != current);
        let describe = |p: &PartRow| {
            json!({
                "part": p.part,
                "generation": p.generation,
                "rows": p.rows,
                "committed_at": p.committed_at,
                "files": serde_json::from_str::<Value>(&p.files).unwrap_or(Value::Null),
                "schema": part_schema(p),
            })
        };
        let parts = self.store.parts(stream)?;
        let of = |generation: Option<i64>| -> Vec<&PartRow> {
            parts
                .iter()
                .filter(|p| Some(p.generation) == generation)
                .collect()
        };
        let (current_parts, pending) = (of(current), of(building));
        let files: Vec<Value> = current_parts
            .iter()
            .flat_map(|p| part_files(p))
            .map(Value::String)
            .collect();
        // What readers get taking the current parts together (DuckDB's `union_by_name`):
        // every column of every part, with the type of the first part that has it.
        let mut union = serde_json::Map::new();
        for p in &current_parts {
            if let Value::Object(columns) = part_schema(p) {
                for (name, ty) in columns {
                    union.entry(name).or_insert(ty);
                }
            }
        }
        let manifest = json!({
            "format": "gleap-etl parquet dataset",
            "version": 1,
            "stream": stream,
            "updated_at": crate::record::format_timestamp(&chrono::Utc::now()),
            "generation": current,
            "rows": current_parts.iter().map(|p| p.rows).sum::<u64>(),
            "files": files,
            "parts": current_parts.iter().map(|p| describe(p)).collect::<Vec<_>>(),
            "pending": {"generation": building, "parts": pending.iter().map(|p| describe(p)).collect::<Vec<_>>()},
            "cursor": self.store.source_cursor(stream)?.and_then(|c| serde_json::from_str::<Value>(&c).ok()),
            "partition_by": self.config.partition_by.as_ref().map(|p| p.field.as_str().to_string()),
            "snapshot": snapshot::describe(&self.store, stream, &self.dir.path().display().to_string())?,
            "schema_policy": self.config.schema,
            "schema": union,
        });
        self.dir.write_whole(
            MANIFEST,
            &serde_json::to_vec_pretty(&manifest).expect("JSON"),
        )
    }
}

/// Records the schemas of parts committed before schemas were, read from their first file's
/// footer (once: the state keeps them). A file that cannot be read leaves its part's schema
/// unknown (null in the manifest), as before.
fn record_old_schemas(dir: &dyn DatasetFiles, store: &StateStore, stream: &str, parts: &[PartRow]) {
    for p in parts.iter().filter(|p| p.schema.is_none()) {
        let Some(file) = part_files(p).into_iter().next() else {
            continue;
        };
        match dir.read_schema(&file) {
            Ok(fields) => {
                let described = schema::describe_fields(&fields).to_string();
                if let Err(e) = store.set_part_schema(stream, p.part, &described) {
                    tracing::warn!("stream `{stream}`: recording the schema of {file}: {e}");
                }
            }
            Err(e) => tracing::warn!("stream `{stream}`: reading the schema of {file}: {e}"),
        }
    }
}

/// A committed part's columns and types, as the manifest shows them (null when not
/// recorded: parts committed before schemas were).
fn part_schema(part: &PartRow) -> Value {
    part.schema
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(Value::Null)
}

/// Why an incremental run cannot add to the dataset in `dir`, if it cannot: the stream's
/// dataset is elsewhere (`row` names another folder, or none), the folder lost its manifest
/// (emptied), or the manifest's cursor is not the state's `cursor` (the folder holds another
/// run's export). Then the run exports everything.
fn append_refused(
    dir: &dyn DatasetFiles,
    row: Option<&DatasetRow>,
    cursor: Option<String>,
) -> Option<String> {
    let full = "so this incremental run exports everything";
    let Some(row) = row else {
        return Some(format!(
            "{} holds no export of this stream (the cursor is of an earlier export elsewhere), {full}",
            dir.path().display()
        ));
    };
    let path = dir.path().join(MANIFEST);
    let manifest: Option<Value> = dir
        .read(MANIFEST)
        .ok()
        .flatten()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let Some(manifest) = manifest else {
        return Some(format!(
            "{} has no readable {MANIFEST} (emptied or new), {full}",
            row.dir
        ));
    };
    let stored = cursor.and_then(|c| serde_json::from_str::<Value>(&c).ok());
    let in_manifest = manifest.get("cursor").cloned().filter(|c| !c.is_null());
    (stored != in_manifest).then(|| {
        format!(
            "the cursor in {} is not the one in the state store (the folder holds another export), {full}",
            path.display()
        )
    })
}

fn remove_files(dir: &dyn DatasetFiles, part: &PartRow) {
    for f in part_files(part) {
        dir.remove(&f);
    }
}

impl Sink for DatasetSink {
    fn write(&mut self, mut record: Record, position: Position) -> Result<()> {
        self.shaper.flatten(&mut record);
        if self.fields.is_some() {
            return self.write_row(record, position);
        }
        self.sample.push((record, position));
        if self.sample.len() >= self.infer_rows {
            self.fix_schema()?;
        }
        Ok(())
    }

    fn source_done(&mut self, seq: u64) -> Result<()> {
        if self.part_rows + self.sample.len() as u64 >= self.config.part_rows {
            match &self.context.cursor {
                Some(log) => {
                    if let Some(cursor) = log.cursor_through(seq) {
                        self.commit_part(Some(cursor), None)?;
                    }
                }
                None => self.commit_part(None, Some(seq))?,
            }
        }
        Ok(())
    }

    fn resume_after(&self) -> Option<u64> {
        self.resume_after
    }

    fn finish(mut self: Box<Self>) -> Result<SinkSummary> {
        let cursor = self.context.cursor.as_ref().and_then(|l| l.last());
        self.commit_part(cursor.clone(), None)?;
        let stream = self.context.stream.clone();
        let old = self
            .store
            .complete_generation(&stream, self.generation, cursor.as_deref())?;
        for p in &old {
            remove_files(&*self.dir, p);
        }
        self.write_manifest()?;
        let snapshot = match self.config.snapshot {
            true => snapshot::refresh(
                &*self.dir,
                &self.store,
                &stream,
                &snapshot::Settings {
                    properties: &self.properties,
                    row_group_bytes: self.row_group_bytes,
                    file_rows: self.config.part_rows,
                },
                &|| self.write_manifest(),
            )?,
            false => Value::Null,
        };
        let parts = self.store.parts(&stream)?;
        let bytes: u64 = parts
            .iter()
            .flat_map(part_files)
            .filter_map(|f| self.dir.size(&f))
            .sum();
        let fields = match &self.fields {
            Some(f) => schema::describe_fields(f),
            None => Value::Null,
        };
        Ok(SinkSummary {
            written: self.written,
            rejected: self.rejected,
            path: Some(self.dir.path().to_path_buf()),
            bytes: Some(bytes),
            detail: Some(json!({
                "schema": fields,
                "generation": self.generation,
                "parts_written": self.parts_committed,
                "parts": parts.len(),
                "rows": parts.iter().map(|p| p.rows).sum::<u64>(),
                "removed_parts": old.len(),
                "compression": self.compression,
                "full_export": self.started_over,
                "snapshot": snapshot,
                "schema_policy": self.config.schema,
                "new_columns": self.added,
                "type_changes": self.type_changes.iter().map(|(field, (column, found))| json!({
                    "field": field,
                    "column": column,
                    "found": found,
                    "warning": format!(
                        "field `{field}` no longer fits its {column} column (a {found} value came): such values went to `{}`",
                        self.shaper.rest.as_deref().unwrap_or_default()
                    ),
                })).collect::<Vec<_>>(),
            })),
        })
    }

    /// Open files are dropped and removed (uploads aborted); committed parts stay for the
    /// next run.
    fn abort(mut self: Box<Self>) {
        for (_, mut file) in self.files.drain() {
            file.open.writer.inner_mut().abort();
        }
        for (name, _) in self.closed.drain(..) {
            self.dir.discard(&name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dead_letter::DeadLetters;
    use arrow::array::Array;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use std::fs::File;
    use std::path::Path;

    /// A kill: the lock goes with the process, the open files stay as they are.
    fn kill(sink: DatasetSink) {
        let DatasetSink { dir, files, .. } = sink;
        drop(dir);
        std::mem::forget(files);
    }

    fn sink(dir: &Path, store: &Arc<StateStore>, extra: Value) -> DatasetSink {
        let mut c =
            json!({"path": dir.join("out").to_str().unwrap(), "dataset": {"part_rows": 10}});
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let config: ParquetSinkConfig = serde_json::from_value(c).unwrap();
        let mut context = SinkContext::new("s", DeadLetters::in_memory(None));
        context.state = Some(store.clone());
        context.input_fingerprint = "input-1".into();
        DatasetSink::build(&config, config.dataset.as_ref().unwrap(), context).unwrap()
    }

    fn record(i: u64) -> Record {
        let mut r = json!({"id": i, "createdAt": format!("2024-0{}-15T10:00:00Z", 1 + i % 3)});
        if i == 3 {
            r["extra"] = json!("x");
        }
        r.as_object().unwrap().clone()
    }

    fn feed(sink: &mut DatasetSink, range: std::ops::Range<u64>) {
        for i in range {
            let position = Position {
                file: "in".into(),
                line: Some(i + 1),
                row: i + 1,
                seq: i,
            };
            sink.write(record(i), position).unwrap();
            sink.source_done(i).unwrap();
        }
    }

    fn rows(dir: &Path) -> Vec<i64> {
        let manifest: Value =
            serde_json::from_slice(&std::fs::read(dir.join("out").join(MANIFEST)).unwrap())
                .unwrap();
        let mut ids = Vec::new();
        for f in manifest["files"].as_array().unwrap() {
            let file = File::open(dir.join("out").join(f.as_str().unwrap())).unwrap();
            for batch in ParquetRecordBatchReaderBuilder::try_new(file)
                .unwrap()
                .build()
                .unwrap()
            {
                let batch = batch.unwrap();
                let col = batch.column_by_name("id").unwrap();
                let ints = col
                    .as_any()
                    .downcast_ref::<arrow::array::Int64Array>()
                    .unwrap();
                ids.extend(ints.values().iter().copied());
            }
        }
        ids.sort();
        ids
    }

    #[test]
    fn a_folder_holding_other_files_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("out")).unwrap();
        std::fs::write(dir.path().join("out/part-00000.parquet"), b"spark's").unwrap();
        let store = Arc::new(StateStore::open(&dir.path().join("state")).unwrap());
        let config: ParquetSinkConfig = serde_json::from_value(
            json!({"path": dir.path().join("out").to_str().unwrap(), "dataset": {}}),
        )
        .unwrap();
        let mut context = SinkContext::new("s", DeadLetters::in_memory(None));
        context.state = Some(store);
        let error = DatasetSink::build(&config, config.dataset.as_ref().unwrap(), context)
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("not a gleap-etl dataset"), "{error}");
        assert!(dir.path().join("out/part-00000.parquet").exists());
    }

    #[test]
    fn part_names() {
        assert!(is_part_name("part-00012.parquet"));
        assert!(is_part_name("part-00012-3.parquet"));
        assert!(!is_part_name("part-00012.parquet.inprogress"));
        assert!(!is_part_name("notes.parquet"));
        assert!(!is_part_name("part-.parquet"));
    }

    #[test]
    fn a_killed_run_resumes_after_its_last_committed_part() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(StateStore::open(&dir.path().join("state")).unwrap());
        let mut first = sink(dir.path(), &store, json!({"infer_rows": 4}));
        feed(&mut first, 0..25);
        // Killed: the third part's file is left `.inprogress`, never committed; the lock
        // goes with the process.
        kill(first);
        let mut again = sink(dir.path(), &store, json!({"infer_rows": 4}));
        assert_eq!(again.resume_after(), Some(19));
        let left: Vec<_> = std::fs::read_dir(dir.path().join("out"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".inprogress"))
            .map(|e| e.path())
            .collect();
        assert!(left.is_empty(), "{left:?}");
        feed(&mut again, 20..25);
        // A part file of a generation whose removal was cut short.
        std::fs::write(dir.path().join("out/part-00099.parquet"), b"old").unwrap();
        kill(again);
        let mut again = sink(dir.path(), &store, json!({"infer_rows": 4}));
        assert!(!dir.path().join("out/part-00099.parquet").exists());
        assert_eq!(again.resume_after(), Some(19));
        feed(&mut again, 20..25);
        let summary = Box::new(again).finish().unwrap();
        assert_eq!(summary.written, 5);
        assert_eq!(rows(dir.path()), (0..25).collect::<Vec<i64>>());
        assert_eq!(store.parts("s").unwrap().len(), 3);
    }

    /// Feeds records `range`, changed by `change` first.
    fn feed_with(
        sink: &mut DatasetSink,
        range: std::ops::Range<u64>,
        change: impl Fn(u64, &mut Record),
    ) {
        for i in range {
            let mut r = record(i);
            change(i, &mut r);
            let position = Position {
                file: "in".into(),
                line: Some(i + 1),
                row: i + 1,
                seq: i,
            };
            sink.write(r, position).unwrap();
            sink.source_done(i).unwrap();
        }
    }

    fn file_columns(path: &Path) -> Vec<String> {
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
        builder
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    /// A resumed run whose records bring a field the committed parts lack: with `evolve` its
    /// parts get a typed column (a field only null so far waits), with `freeze` the field
    /// goes to the rest column; the manifest records each part's columns.
    #[test]
    fn a_resumed_run_evolves_or_keeps_the_columns() {
        for (policy, evolves) in [("evolve", true), ("freeze", false)] {
            let dir = tempfile::tempdir().unwrap();
            let store = Arc::new(StateStore::open(&dir.path().join("state")).unwrap());
            let extra = json!({"infer_rows": 4, "rest": "otherFields",
                               "dataset": {"part_rows": 10, "schema": policy}});
            let mut first = sink(dir.path(), &store, extra.clone());
            feed(&mut first, 0..25);
            kill(first);
            let mut again = sink(dir.path(), &store, extra);
            assert_eq!(again.resume_after(), Some(19));
            // `score` is new; `pending` too, but only ever null.
            feed_with(&mut again, 20..25, |i, r| {
                r.insert("score".into(), json!(i as f64 / 2.0));
                r.insert("pending".into(), Value::Null);
            });
            let summary = Box::new(again).finish().unwrap();
            let detail = summary.detail.unwrap();
            let out = dir.path().join("out");
            let manifest: Value =
                serde_json::from_slice(&std::fs::read(out.join(MANIFEST)).unwrap()).unwrap();
            assert_eq!(manifest["schema_policy"], policy);
            let last = file_columns(&out.join("part-00002.parquet"));
            assert_eq!(
                last.contains(&"score".to_string()),
                evolves,
                "{policy}: {last:?}"
            );
            assert!(!file_columns(&out.join("part-00000.parquet")).contains(&"score".into()));
            assert_eq!(
                manifest["parts"][2]["schema"].get("score"),
                evolves.then(|| json!("float64")).as_ref(),
                "{policy}: {manifest:#}"
            );
            assert_eq!(manifest["parts"][0]["schema"].get("score"), None);
            assert!(!last.contains(&"pending".to_string()), "{last:?}");
            // The rest column stays last.
            assert_eq!(last.last().map(String::as_str), Some("otherFields"));
            let expected: &[&str] = if evolves { &["score"] } else { &[] };
            assert_eq!(detail["new_columns"], json!(expected), "{policy}");
            assert_eq!(rows(dir.path()), (0..25).collect::<Vec<i64>>());
        }
    }

    /// Parts committed before schemas were recorded get theirs from their files' footers
    /// when the next run starts.
    #[test]
    fn schemas_of_older_parts_are_read_from_their_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(StateStore::open(&dir.path().join("state")).unwrap());
        let mut first = sink(dir.path(), &store, json!({"infer_rows": 4}));
        feed(&mut first, 0..25);
        kill(first);
        let db = rusqlite::Connection::open(dir.path().join("state/state.sqlite")).unwrap();
        db.execute("UPDATE dataset_parts SET schema = NULL", [])
            .unwrap();
        assert!(store.parts("s").unwrap().iter().all(|p| p.schema.is_none()));
        let again = sink(dir.path(), &store, json!({"infer_rows": 4}));
        let manifest: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("out").join(MANIFEST)).unwrap())
                .unwrap();
        let parts = manifest["pending"]["parts"].as_array().unwrap();
        assert_eq!(parts.len(), 2, "{manifest:#}");
        for p in parts {
            assert_eq!(p["schema"]["id"], "int64", "{manifest:#}");
            assert_eq!(
                p["schema"]["createdAt"], "timestamp[us, UTC]",
                "{manifest:#}"
            );
        }
        kill(again);
    }

    #[test]
    fn partitions_go_to_hive_folders_and_rest_takes_what_has_no_column() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(StateStore::open(&dir.path().join("state")).unwrap());
        let mut s = sink(
            dir.path(),
            &store,
            json!({"infer_rows": 2, "rest": "otherFields",
                   "dataset": {"part_rows": 100, "partition_by": {"field": "createdAt"}}}),
        );
        feed(&mut s, 0..9);
        Box::new(s).finish().unwrap();
        let out = dir.path().join("out");
        for month in ["2024-01", "2024-02", "2024-03"] {
            assert!(
                out.join(format!("createdAt_month={month}/part-00000.parquet"))
                    .exists(),
                "{month}"
            );
        }
        assert_eq!(rows(dir.path()), (0..9).collect::<Vec<i64>>());
        // `extra` was not in the two records the schema came from: record 3's went to the
        // rest column.
        let file = File::open(out.join("createdAt_month=2024-01/part-00000.parquet")).unwrap();
        let batch = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let rest = batch.column_by_name("otherFields").unwrap();
        let rest = rest
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        assert!((0..rest.len()).any(|i| rest.is_valid(i) && rest.value(i) == r#"{"extra":"x"}"#));
    }
}
