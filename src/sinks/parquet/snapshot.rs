//! The current-state table of a dataset (`export --snapshot`, `dataset: {snapshot: true}`):
//! one row per `_id`, its latest version by `updatedAt` (ties: the later part's), in the
//! dataset's `snapshot/` folder, so that readers who want "now" de-duplicate nothing.
//!
//! After a run, if parts were committed since the snapshot was built, it is rewritten from
//! the previous snapshot and the new parts without holding the table in memory: the ids (and
//! `updatedAt`) of the new parts' rows are indexed (id -> where its latest version is), the
//! previous snapshot's files are streamed a batch at a time leaving out the ids that changed,
//! and the new latest versions are appended. A full export (a new generation) rebuilds it from
//! its own parts. The files are written under a new number through the dataset's files (a
//! folder or a bucket prefix, multipart), committed in the state store, named by the manifest,
//! and only then are the previous files removed: a killed run leaves the previous snapshot
//! current, and its half-written files are removed by the next run, as orphan parts are.
//!
//! When the new parts have columns the previous snapshot lacks (or the other way round), the
//! snapshot gets every column (the new parts' first), missing values null; a column whose
//! type changed to one the old values cannot be cast to is refused, naming it.

use std::collections::{HashMap, HashSet};

use arrow::array::{Array, ArrayRef, BooleanArray, StringArray, TimestampMicrosecondArray};
use arrow::compute::{CastOptions, can_cast_types, cast, cast_with_options, filter_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::dataset::part_files;
use super::schema;
use super::storage::{DatasetFiles, PartWriter};
use crate::error::{Error, Result};
use crate::state::StateStore;

/// The snapshot's folder (or prefix) in the dataset.
pub const FOLDER: &str = "snapshot";
/// The column a snapshot keeps one row per value of.
const ID: &str = "_id";
/// The column that says which version is the latest.
const UPDATED_AT: &str = "updatedAt";

/// The current snapshot, as committed in the state store.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Snapshot {
    /// The dataset it belongs to (as the dataset row names it).
    dir: String,
    /// Its files are `snapshot/snapshot-NNNNN-KKKKK.parquet` with this number.
    number: u64,
    generation: i64,
    /// The last part it holds.
    through_part: Option<i64>,
    files: Vec<SnapshotFile>,
    rows: u64,
    built_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SnapshotFile {
    file: String,
    rows: u64,
}

/// How snapshot files are written: as the dataset's parts are.
pub struct Settings<'a> {
    pub properties: &'a WriterProperties,
    pub row_group_bytes: usize,
    /// Rows per snapshot file.
    pub file_rows: u64,
}

/// The snapshot committed in the state store, whatever dataset it belongs to.
fn stored(store: &StateStore, stream: &str) -> Result<Option<Snapshot>> {
    Ok(store
        .snapshot(stream)?
        .and_then(|s| serde_json::from_str(&s).ok()))
}

/// The current snapshot of the dataset in `dir`.
fn current(store: &StateStore, stream: &str, dir: &str) -> Result<Option<Snapshot>> {
    Ok(stored(store, stream)?.filter(|s| s.dir == dir))
}

/// The files of the current snapshot of the dataset in `dir` (committed: kept by a tidy).
pub fn files(store: &StateStore, stream: &str, dir: &str) -> Result<Vec<String>> {
    Ok(current(store, stream, dir)?
        .map(|s| s.files.into_iter().map(|f| f.file).collect())
        .unwrap_or_default())
}

/// The manifest's `snapshot`: the files readers of "now" read, or null.
pub fn describe(store: &StateStore, stream: &str, dir: &str) -> Result<Value> {
    Ok(match current(store, stream, dir)? {
        Some(s) => json!({
            "files": s.files.iter().map(|f| f.file.clone()).collect::<Vec<_>>(),
            "rows": s.rows,
            "generation": s.generation,
            "through_part": s.through_part,
            "built_at": s.built_at,
        }),
        None => Value::Null,
    })
}

/// Whether a file name is one a snapshot gives its files: `snapshot-00003-00000.parquet`.
pub fn is_snapshot_name(name: &str) -> bool {
    name.strip_prefix("snapshot-")
        .and_then(|rest| rest.strip_suffix(".parquet"))
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit() || c == '-'))
}

/// Debug builds only: `GLEAP_ETL_TEST_KILL_IN_SNAPSHOT=written|committed` makes the process
/// SIGKILL itself once the new snapshot's files are written (not committed), or once they are
/// committed (the manifest not yet written), so that tests can show what a kill there leaves.
fn test_hook_kill(point: &str) {
    if cfg!(debug_assertions)
        && std::env::var("GLEAP_ETL_TEST_KILL_IN_SNAPSHOT").is_ok_and(|v| v == point)
    {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &std::process::id().to_string()])
            .status();
        std::process::abort();
    }
}

/// Where the latest version of an id is among the new parts' files.
struct Latest {
    /// `updatedAt`, in microseconds (none: older than any).
    at: Option<i64>,
    file: usize,
    row: usize,
}

/// The `_id` column of a batch, as text.
fn ids(batch: &RecordBatch, shown: &dyn Fn() -> String) -> Result<StringArray> {
    let column = batch.column_by_name(ID).ok_or_else(|| {
        Error::output(
            shown(),
            format!("has no `{ID}` column: a snapshot keeps one row per `{ID}`"),
        )
    })?;
    let text = cast(column, &DataType::Utf8)
        .map_err(|e| Error::output(shown(), format!("reading `{ID}`: {e}")))?;
    Ok(text
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("cast to Utf8")
        .clone())
}

/// The `updatedAt` column of a batch in microseconds, if it has one.
fn updated_at(
    batch: &RecordBatch,
    shown: &dyn Fn() -> String,
) -> Result<Option<TimestampMicrosecondArray>> {
    let Some(column) = batch.column_by_name(UPDATED_AT) else {
        return Ok(None);
    };
    let micros = cast(column, &DataType::Timestamp(TimeUnit::Microsecond, None))
        .map_err(|e| Error::output(shown(), format!("reading `{UPDATED_AT}`: {e}")))?;
    Ok(Some(
        micros
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .expect("cast to timestamps")
            .clone(),
    ))
}

fn at(column: &Option<TimestampMicrosecondArray>, row: usize) -> Option<i64> {
    column
        .as_ref()
        .and_then(|c| c.is_valid(row).then(|| c.value(row)))
}

/// Every column of the new files (the newest first) and then of the old ones; a column whose
/// type changed to one the older values cannot be cast to is refused, naming it.
fn union_schema(
    dir: &dyn DatasetFiles,
    new_files: &[String],
    old_files: &[String],
) -> Result<SchemaRef> {
    let mut fields: Vec<(Field, String)> = Vec::new();
    let mut conflicts = Vec::new();
    for file in new_files.iter().rev().chain(old_files) {
        let schema = schema::arrow_schema(&dir.read_schema(file)?);
        for field in schema.fields() {
            match fields.iter().find(|(f, _)| f.name() == field.name()) {
                None => fields.push((field.as_ref().clone(), file.clone())),
                Some((kept, from))
                    if kept.data_type() != field.data_type()
                        && !can_cast_types(field.data_type(), kept.data_type()) =>
                {
                    conflicts.push(format!(
                        "`{}` is {} in {from} but {} in {file}",
                        field.name(),
                        kept.data_type(),
                        field.data_type()
                    ))
                }
                Some(_) => {}
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(Error::output(
            dir.path().join(FOLDER),
            format!(
                "cannot rewrite the snapshot, columns changed type: {}",
                conflicts.join("; ")
            ),
        ));
    }
    Ok(std::sync::Arc::new(Schema::new(
        fields.into_iter().map(|(f, _)| f).collect::<Vec<_>>(),
    )))
}

/// The batch with the snapshot's columns: cast where the type differs, null where missing.
fn conform(batch: &RecordBatch, schema: &SchemaRef) -> std::result::Result<RecordBatch, String> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
            // A value the new type cannot hold is an error, never a silent null.
            Some(c) => cast_with_options(
                c,
                f.data_type(),
                &CastOptions {
                    safe: false,
                    ..CastOptions::default()
                },
            )
            .map_err(|e| format!("`{}` changed type: {e}", f.name())),
            None => Ok(arrow::array::new_null_array(
                f.data_type(),
                batch.num_rows(),
            )),
        })
        .collect::<std::result::Result<Vec<ArrayRef>, String>>()?;
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
}

type SnapshotWriter = ArrowWriter<Box<dyn PartWriter>>;

/// The new snapshot's files, being written: a new file every `file_rows` rows.
struct Output<'a> {
    dir: &'a dyn DatasetFiles,
    settings: &'a Settings<'a>,
    schema: SchemaRef,
    number: u64,
    /// The file being written: its name, writer and rows so far.
    open: Option<(String, SnapshotWriter, u64)>,
    closed: Vec<SnapshotFile>,
}

impl Output<'_> {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.open.is_none() {
            let name = format!(
                "{FOLDER}/snapshot-{:05}-{:05}.parquet",
                self.number,
                self.closed.len()
            );
            let file = self.dir.create(&name)?;
            let writer = ArrowWriter::try_new(
                file,
                self.schema.clone(),
                Some(self.settings.properties.clone()),
            )
            .map_err(|e| Error::output(self.dir.path().join(&name), e))?;
            self.open = Some((name, writer, 0));
        }
        let (name, writer, rows) = self.open.as_mut().expect("just opened");
        let failed = |e: &dyn std::fmt::Display| Error::output(self.dir.path().join(&*name), e);
        let batch = conform(batch, &self.schema).map_err(|e| failed(&e))?;
        writer.write(&batch).map_err(|e| failed(&e))?;
        if writer.in_progress_size() >= self.settings.row_group_bytes {
            writer.flush().map_err(|e| failed(&e))?;
        }
        *rows += batch.num_rows() as u64;
        if *rows >= self.settings.file_rows {
            self.close()?;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        if let Some((name, writer, rows)) = self.open.take() {
            let file = writer
                .into_inner()
                .map_err(|e| Error::output(self.dir.path().join(&name), e))?;
            file.close()?;
            self.closed.push(SnapshotFile { file: name, rows });
        }
        Ok(())
    }

    /// A failed rewrite: its files are dropped (the previous snapshot stays current).
    fn abort(&mut self) {
        if let Some((_, mut writer, _)) = self.open.take() {
            writer.inner_mut().abort();
        }
        for f in self.closed.drain(..) {
            self.dir.discard(&f.file);
        }
    }
}

/// Rewrites the snapshot of `stream`'s dataset in `dir` if parts were committed since it was
/// built (or builds it), calls `write_manifest` once the new one is committed, then removes
/// the previous one's files. What it did, for the report.
pub fn refresh(
    dir: &dyn DatasetFiles,
    store: &StateStore,
    stream: &str,
    settings: &Settings,
    write_manifest: &dyn Fn() -> Result<()>,
) -> Result<Value> {
    let dir_text = dir.path().display().to_string();
    let Some(generation) = store.dataset(stream)?.and_then(|r| r.current_generation) else {
        return Ok(Value::Null);
    };
    let parts: Vec<_> = store
        .parts(stream)?
        .into_iter()
        .filter(|p| p.generation == generation)
        .collect();
    let previous = current(store, stream, &dir_text)?;
    let base = previous.as_ref().filter(|s| s.generation == generation);
    let new_parts: Vec<_> = parts
        .iter()
        .filter(|p| match base.and_then(|b| b.through_part) {
            Some(through) => p.part > through,
            None => true,
        })
        .collect();
    if let Some(base) = base
        && new_parts.is_empty()
    {
        return Ok(json!({"rows": base.rows, "rewritten": false}));
    }
    let new_files: Vec<String> = new_parts.iter().flat_map(|p| part_files(p)).collect();
    let old_files: Vec<String> = base
        .map(|b| b.files.iter().map(|f| f.file.clone()).collect())
        .unwrap_or_default();
    let number = stored(store, stream)?.map_or(0, |s| s.number + 1);
    let mut out = Output {
        dir,
        settings,
        schema: union_schema(dir, &new_files, &old_files)?,
        number,
        open: None,
        closed: Vec::new(),
    };
    let written = rewrite(dir, &new_files, &old_files, &mut out);
    let (kept, without_id) = match written.and_then(|w| out.close().map(|()| w)) {
        Ok(w) => w,
        Err(e) => {
            out.abort();
            return Err(e);
        }
    };
    test_hook_kill("written");
    let snapshot = Snapshot {
        dir: dir_text,
        number,
        generation,
        through_part: parts
            .iter()
            .map(|p| p.part)
            .max()
            .or(base.and_then(|b| b.through_part)),
        rows: out.closed.iter().map(|f| f.rows).sum(),
        files: std::mem::take(&mut out.closed),
        built_at: crate::record::format_timestamp(&chrono::Utc::now()),
    };
    store.set_snapshot(stream, &serde_json::to_string(&snapshot).expect("JSON"))?;
    test_hook_kill("committed");
    for f in &snapshot.files {
        dir.publish(&f.file)?;
    }
    write_manifest()?;
    // Readers now follow the new files: the previous ones can go.
    let ours: HashSet<&str> = snapshot.files.iter().map(|f| f.file.as_str()).collect();
    for f in previous.iter().flat_map(|p| &p.files) {
        if !ours.contains(f.file.as_str()) {
            dir.remove(&f.file);
        }
    }
    if without_id > 0 {
        tracing::warn!(
            "stream `{stream}`: {without_id} rows of the new parts have no `{ID}` and are not in the snapshot"
        );
    }
    Ok(json!({
        "rewritten": true,
        "rows": snapshot.rows,
        "files": snapshot.files.len(),
        "from_previous": kept,
        "new_parts": new_parts.len(),
        "rows_without_id": without_id,
    }))
}

/// Writes the previous snapshot's rows whose id did not change, then the new parts' latest
/// versions; (rows kept from the previous snapshot, rows of the new parts without an id).
fn rewrite(
    dir: &dyn DatasetFiles,
    new_files: &[String],
    old_files: &[String],
    out: &mut Output,
) -> Result<(u64, u64)> {
    let shown = |f: &str| dir.path().join(f).display().to_string();
    // The latest version of each id the new parts hold.
    let mut latest: HashMap<String, Latest> = HashMap::new();
    let mut without_id = 0u64;
    for (i, file) in new_files.iter().enumerate() {
        let mut offset = 0;
        dir.read_batches(file, Some(&[ID, UPDATED_AT]), &mut |batch| {
            let ids = ids(&batch, &|| shown(file))?;
            let times = updated_at(&batch, &|| shown(file))?;
            for r in 0..batch.num_rows() {
                if ids.is_null(r) {
                    without_id += 1;
                    continue;
                }
                let version = Latest {
                    at: at(&times, r),
                    file: i,
                    row: offset + r,
                };
                match latest.get_mut(ids.value(r)) {
                    // A later part's version wins unless it is older.
                    Some(l) if l.at > version.at => {}
                    Some(l) => *l = version,
                    None => {
                        latest.insert(ids.value(r).to_string(), version);
                    }
                }
            }
            offset += batch.num_rows();
            Ok(())
        })?;
    }
    // The previous snapshot, without the ids that changed (unless its version is newer).
    let mut kept = 0u64;
    for file in old_files {
        dir.read_batches(file, None, &mut |batch| {
            let ids = ids(&batch, &|| shown(file))?;
            let times = updated_at(&batch, &|| shown(file))?;
            let keep: BooleanArray = (0..batch.num_rows())
                .map(|r| {
                    let keep = ids.is_null(r)
                        || match latest.get(ids.value(r)) {
                            None => true,
                            Some(l) if at(&times, r) > l.at => {
                                latest.remove(ids.value(r));
                                true
                            }
                            Some(_) => false,
                        };
                    Some(keep)
                })
                .collect();
            kept += keep.true_count() as u64;
            out.write(&filter(&batch, &keep, &|| shown(file))?)
        })?;
    }
    // The new latest versions.
    for (i, file) in new_files.iter().enumerate() {
        let mut offset = 0;
        dir.read_batches(file, None, &mut |batch| {
            let ids = ids(&batch, &|| shown(file))?;
            let keep: BooleanArray = (0..batch.num_rows())
                .map(|r| {
                    Some(
                        !ids.is_null(r)
                            && latest
                                .get(ids.value(r))
                                .is_some_and(|l| l.file == i && l.row == offset + r),
                    )
                })
                .collect();
            offset += batch.num_rows();
            out.write(&filter(&batch, &keep, &|| shown(file))?)
        })?;
    }
    Ok((kept, without_id))
}

fn filter(
    batch: &RecordBatch,
    keep: &BooleanArray,
    shown: &dyn Fn() -> String,
) -> Result<RecordBatch> {
    filter_record_batch(batch, keep).map_err(|e| Error::output(shown(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names_are_not_part_names() {
        assert!(is_snapshot_name("snapshot-00003-00000.parquet"));
        assert!(!is_snapshot_name("snapshot-00003-00000.parquet.inprogress"));
        assert!(!is_snapshot_name("part-00003.parquet"));
        assert!(!super::super::dataset::is_part_name(
            "snapshot-00003-00000.parquet"
        ));
    }

    use arrow::array::{Int64Array, ListArray};
    use std::sync::Arc;

    fn write(path: &std::path::Path, columns: Vec<(&str, ArrayRef)>) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        let mut w =
            ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None)
                .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    fn ids(v: &[&str]) -> ArrayRef {
        Arc::new(StringArray::from(v.to_vec()))
    }

    fn times(v: &[i64]) -> ArrayRef {
        Arc::new(TimestampMicrosecondArray::from(v.to_vec()).with_timezone("UTC"))
    }

    /// The previous snapshot has a column the new part lacks and the other way round: the
    /// new snapshot has both (the new part's first), nulls where a row had none; the changed
    /// id's newer version replaces the old, a version older than the snapshot's does not.
    #[test]
    fn a_rewrite_across_schemas_keeps_every_column_and_the_latest_versions() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Arc::new(StateStore::open(&tmp.path().join("state")).unwrap());
        let out = tmp.path().join("out");
        let dir = super::super::storage::open(out.to_str().unwrap(), &store).unwrap();
        write(
            &out.join("part-00001.parquet"),
            vec![
                ("_id", ids(&["a", "b", "c"])),
                ("updatedAt", times(&[20, 20, 5])),
                (
                    "plan",
                    Arc::new(Int64Array::from(vec![2, 3, 4])) as ArrayRef,
                ),
            ],
        );
        write(
            &out.join("snapshot/snapshot-00000-00000.parquet"),
            vec![
                ("_id", ids(&["a", "c", "d"])),
                ("updatedAt", times(&[10, 10, 10])),
                ("name", ids(&["old a", "old c", "old d"])),
            ],
        );
        let properties = WriterProperties::builder().build();
        let settings = Settings {
            properties: &properties,
            row_group_bytes: 1 << 20,
            file_rows: 100,
        };
        let (new, old) = (
            vec!["part-00001.parquet".to_string()],
            vec!["snapshot/snapshot-00000-00000.parquet".to_string()],
        );
        let mut output = Output {
            dir: &*dir,
            settings: &settings,
            schema: union_schema(&*dir, &new, &old).unwrap(),
            number: 1,
            open: None,
            closed: Vec::new(),
        };
        let (kept, without_id) = rewrite(&*dir, &new, &old, &mut output).unwrap();
        output.close().unwrap();
        assert_eq!((kept, without_id), (2, 0));
        let file =
            std::fs::File::open(out.join("snapshot/snapshot-00001-00000.parquet.inprogress"))
                .unwrap();
        let batches: Vec<RecordBatch> =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                .unwrap()
                .build()
                .unwrap()
                .map(|b| b.unwrap())
                .collect();
        let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
        let names: Vec<_> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, ["_id", "updatedAt", "plan", "name"]);
        let col = |name: &str| batch.column_by_name(name).unwrap().clone();
        let (id, at, plan, name) = (col("_id"), col("updatedAt"), col("plan"), col("name"));
        let id = id.as_any().downcast_ref::<StringArray>().unwrap();
        let at = at
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        let plan = plan.as_any().downcast_ref::<Int64Array>().unwrap();
        let name = name.as_any().downcast_ref::<StringArray>().unwrap();
        let rows: Vec<_> = (0..batch.num_rows())
            .map(|r| {
                (
                    id.value(r),
                    at.value(r),
                    plan.is_valid(r).then(|| plan.value(r)),
                    name.is_valid(r).then(|| name.value(r)),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("c", 10, None, Some("old c")),
                ("d", 10, None, Some("old d")),
                ("a", 20, Some(2), None),
                ("b", 20, Some(3), None),
            ]
        );

        // A column whose type cannot be cast is refused, named.
        write(
            &out.join("part-00002.parquet"),
            vec![
                ("_id", ids(&["a"])),
                ("updatedAt", times(&[30])),
                (
                    "name",
                    Arc::new(ListArray::from_iter_primitive::<
                        arrow::datatypes::Int64Type,
                        _,
                        _,
                    >(vec![Some(vec![Some(1)])])) as ArrayRef,
                ),
            ],
        );
        // A column whose old values the new type cannot hold is refused, named.
        let new = vec!["part-00002.parquet".to_string()];
        let error = match union_schema(&*dir, &new, &old) {
            Err(e) => e,
            Ok(schema) => {
                let mut output = Output {
                    dir: &*dir,
                    settings: &settings,
                    schema,
                    number: 2,
                    open: None,
                    closed: Vec::new(),
                };
                let error = rewrite(&*dir, &new, &old, &mut output).unwrap_err();
                output.abort();
                error
            }
        }
        .to_string();
        assert!(error.contains("`name`"), "{error}");
    }

    #[test]
    fn a_batch_gets_the_snapshot_columns_with_nulls_for_missing_ones() {
        let old = RecordBatch::try_from_iter([(
            "_id",
            std::sync::Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef,
        )])
        .unwrap();
        let schema = std::sync::Arc::new(Schema::new(vec![
            Field::new("_id", DataType::Utf8, true),
            Field::new("plan", DataType::Int64, true),
        ]));
        let batch = conform(&old, &schema).unwrap();
        assert_eq!(batch.schema(), schema);
        assert_eq!(batch.column(1).null_count(), 2);
    }
}
