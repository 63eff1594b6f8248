//! The state store: one SQLite file per pipeline (`<state_dir>/state.sqlite`, WAL) holding
//!
//! - the id map: for each stream, source id -> Gleap id and the hash of what was last sent;
//! - intents: creates that were sent but whose answer is not recorded yet, so a re-run looks
//!   them up instead of creating them twice;
//! - a checkpoint per stream: the position in the input below which every record is confirmed
//!   (or dead-lettered), with a fingerprint of the input it belongs to;
//! - run history;
//! - the tickets `run --prune` archived (gone from the source), so that a nightly sync
//!   archives each once and a ticket that comes back is un-archived;
//! - for sources that read an API (the Gleap source), the cursor they resume from;
//! - for Parquet datasets, the parts committed so far and which generation is current.
//!
//! Confirmations and the checkpoint are committed together, so the checkpoint never passes a
//! record whose id is not stored. Intents are committed before their request is sent. WAL with
//! `synchronous=NORMAL` keeps every commit across a killed process.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{Error, Result};

const SCHEMA_VERSION: i64 = 1;

/// What the store knows of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapEntry {
    pub gleap_id: String,
    /// Hash of the body last sent for it.
    pub hash: u128,
}

/// Where a stream stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Every source record with a sequence number up to this one is done; `None` when none is.
    pub done_through: Option<u64>,
    /// Identifies the input (file names, sizes, modification times).
    pub fingerprint: String,
    /// Whether the stream ran to its end.
    pub complete: bool,
}

/// Who made the Gleap record a mapping points to, for `undo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Created by this pipeline (this run, or an earlier attempt whose answer was lost).
    Created,
    /// Found in Gleap and taken over (a session found by userId, `--adopt-existing`).
    Adopted,
}

impl Origin {
    fn text(self) -> &'static str {
        match self {
            Origin::Created => "created",
            Origin::Adopted => "adopted",
        }
    }
}

/// One mapping as `undo` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    pub source_id: String,
    pub gleap_id: String,
    /// `None`: not known (a mapping written before gleap-etl recorded it, or by a sink that
    /// does not): treated as not created by us.
    pub origin: Option<Origin>,
    /// The run that confirmed the create, or took the record over.
    pub origin_run: Option<i64>,
}

/// Confirmations to commit together with a checkpoint.
#[derive(Debug, Default)]
pub struct Commit {
    pub confirmed: Vec<(String, MapEntry)>,
    /// For confirmed records whose Gleap record is new to the map: who made it. A confirmed
    /// record not named here keeps what the map knew.
    pub origins: HashMap<String, Origin>,
    /// Intents resolved without a confirmation (found absent, or dead-lettered).
    pub cleared: Vec<String>,
    /// Records `run --prune` had archived, back in the source and updated with
    /// `archived: false`: no longer pruned.
    pub unarchived: Vec<String>,
    pub done_through: Option<u64>,
}

impl Commit {
    pub fn is_empty(&self) -> bool {
        self.confirmed.is_empty()
            && self.cleared.is_empty()
            && self.unarchived.is_empty()
            && self.done_through.is_none()
    }
}

/// A Parquet dataset: which generation of parts readers should use, and which one a run is
/// writing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetRow {
    pub dir: String,
    /// The generation whose parts are current; `None` until one is complete.
    pub current_generation: Option<i64>,
    /// The generation a run is writing parts of (the current one when it appends).
    pub building_generation: Option<i64>,
    /// Identifies the input of the run that writes `building_generation`.
    pub fingerprint: String,
    /// File sources: every source record up to this one is in a committed part.
    pub through_seq: Option<u64>,
}

/// One committed part of a dataset: its files (relative to the dataset folder) and rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartRow {
    pub part: i64,
    pub generation: i64,
    /// JSON: `[{"file": "part-00000.parquet", "rows": 10}]`.
    pub files: String,
    pub rows: u64,
    pub committed_at: String,
    /// JSON: the part's columns and their types (`{"_id": "string", ...}`, as the run
    /// summary shows them); `None` for parts committed before schemas were recorded.
    pub schema: Option<String>,
}

/// A finished or running run.
#[derive(Debug, Clone)]
pub struct RunRow {
    pub id: i64,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub status: String,
}

/// A stream's state, for `gleap-etl status`.
#[derive(Debug, Clone)]
pub struct StreamState {
    pub mapped: u64,
    pub intents: u64,
    pub checkpoint: Option<Checkpoint>,
}

pub struct StateStore {
    conn: Mutex<Connection>,
    path: PathBuf,
    /// The run begun through this store (`begin_run`): creates are recorded as its.
    run: Mutex<Option<i64>>,
}

fn db_error(path: &Path, e: rusqlite::Error) -> Error {
    Error::State {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn hash_text(hash: u128) -> String {
    format!("{hash:032x}")
}

impl StateStore {
    /// Opens (creating) `<dir>/state.sqlite`.
    pub fn open(dir: &Path) -> Result<StateStore> {
        crate::dirs::create(dir, "state dir")?;
        let path = dir.join("state.sqlite");
        let conn = Connection::open(&path).map_err(|e| db_error(&path, e))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA busy_timeout = 5000;
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS id_map (
                 stream TEXT NOT NULL, source_id TEXT NOT NULL, gleap_id TEXT NOT NULL,
                 hash TEXT NOT NULL, updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
                 PRIMARY KEY (stream, source_id));
             CREATE TABLE IF NOT EXISTS intents (
                 stream TEXT NOT NULL, source_id TEXT NOT NULL,
                 created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
                 PRIMARY KEY (stream, source_id));
             CREATE TABLE IF NOT EXISTS checkpoints (
                 stream TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, done_through INTEGER,
                 complete INTEGER NOT NULL, updated_at TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS source_cursors (
                 stream TEXT PRIMARY KEY, cursor TEXT NOT NULL, updated_at TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS datasets (
                 stream TEXT PRIMARY KEY, dir TEXT NOT NULL, current_generation INTEGER,
                 building_generation INTEGER, fingerprint TEXT NOT NULL, through_seq INTEGER);
             CREATE TABLE IF NOT EXISTS dataset_parts (
                 stream TEXT NOT NULL, part INTEGER NOT NULL, generation INTEGER NOT NULL,
                 files TEXT NOT NULL, rows INTEGER NOT NULL, committed_at TEXT NOT NULL,
                 PRIMARY KEY (stream, part));
             CREATE TABLE IF NOT EXISTS runs (
                 id INTEGER PRIMARY KEY AUTOINCREMENT, pipeline TEXT NOT NULL, started_at TEXT NOT NULL,
                 finished_at TEXT, status TEXT NOT NULL, report TEXT);
             CREATE TABLE IF NOT EXISTS file_sources (
                 url TEXT PRIMARY KEY, sha256 TEXT, size INTEGER, mime TEXT, failure TEXT,
                 attempts INTEGER NOT NULL DEFAULT 0, updated_at TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS sample (
                 stream TEXT NOT NULL, source_id TEXT NOT NULL, run INTEGER NOT NULL,
                 PRIMARY KEY (stream, source_id));
             CREATE TABLE IF NOT EXISTS file_uploads (
                 target TEXT NOT NULL, sha256 TEXT NOT NULL, file_url TEXT, attempts INTEGER NOT NULL DEFAULT 0,
                 updated_at TEXT NOT NULL, PRIMARY KEY (target, sha256));
             CREATE TABLE IF NOT EXISTS dataset_uploads (
                 dir TEXT NOT NULL, location TEXT NOT NULL, upload_id TEXT NOT NULL,
                 started_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
                 PRIMARY KEY (location, upload_id));
             CREATE TABLE IF NOT EXISTS pruned (
                 stream TEXT NOT NULL, source_id TEXT NOT NULL, gleap_id TEXT NOT NULL,
                 run INTEGER, pruned_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
                 PRIMARY KEY (stream, source_id));",
        )
        .map_err(|e| db_error(&path, e))?;
        add_columns(
            &conn,
            "id_map",
            &[("origin", "TEXT"), ("origin_run", "INTEGER")],
        )
        .and_then(|()| add_columns(&conn, "dataset_parts", &[("schema", "TEXT")]))
        .map_err(|e| db_error(&path, e))?;
        let version: Option<String> = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| db_error(&path, e))?;
        match version.as_deref().map(str::parse::<i64>) {
            None => {
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)",
                    [SCHEMA_VERSION.to_string()],
                )
                .map_err(|e| db_error(&path, e))?;
            }
            Some(Ok(SCHEMA_VERSION)) => {}
            Some(other) => {
                return Err(Error::State {
                    path: path.to_path_buf(),
                    message: format!(
                        "schema version {other:?}, this gleap-etl reads {SCHEMA_VERSION}"
                    ),
                });
            }
        }
        Ok(StateStore {
            conn: Mutex::new(conn),
            path,
            run: Mutex::new(None),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn).map_err(|e| db_error(&self.path, e))
    }

    /// The id map of a stream.
    pub fn load_map(&self, stream: &str) -> Result<HashMap<String, MapEntry>> {
        self.with(|c| {
            let mut stmt =
                c.prepare("SELECT source_id, gleap_id, hash FROM id_map WHERE stream = ?1")?;
            let rows = stmt.query_map([stream], |r| {
                let hash: String = r.get(2)?;
                Ok((
                    r.get::<_, String>(0)?,
                    MapEntry {
                        gleap_id: r.get(1)?,
                        hash: u128::from_str_radix(&hash, 16).unwrap_or(0),
                    },
                ))
            })?;
            rows.collect()
        })
    }

    /// Source ids whose create may have happened without its answer being recorded.
    /// Forgets the Gleap id of a record (it is gone from Gleap): the next run creates it.
    pub fn forget(&self, stream: &str, source_id: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "DELETE FROM id_map WHERE stream = ?1 AND source_id = ?2",
                params![stream, source_id],
            )
            .map(|_| ())
        })
    }

    pub fn intents(&self, stream: &str) -> Result<HashSet<String>> {
        self.with(|c| {
            let mut stmt = c.prepare("SELECT source_id FROM intents WHERE stream = ?1")?;
            let rows = stmt.query_map([stream], |r| r.get::<_, String>(0))?;
            rows.collect()
        })
    }

    /// Records, durably, that creates are about to be sent: one transaction for several
    /// (a group commit, see the Gleap sink's `IntentWriter`).
    pub fn add_intents(&self, stream: &str, source_ids: &[String]) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT OR IGNORE INTO intents (stream, source_id) VALUES (?1, ?2)",
                )?;
                for id in source_ids {
                    insert.execute(params![stream, id])?;
                }
            }
            tx.commit()
        })
    }

    /// Commits confirmations, cleared intents and the checkpoint in one transaction.
    pub fn commit(&self, stream: &str, commit: &Commit) -> Result<()> {
        if commit.is_empty() {
            return Ok(());
        }
        let run = *self.run.lock().unwrap_or_else(|p| p.into_inner());
        self.with(|c| {
            let tx = c.transaction()?;
            {
                let mut upsert = tx.prepare_cached(
                    "INSERT INTO id_map (stream, source_id, gleap_id, hash) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (stream, source_id) DO UPDATE SET gleap_id = excluded.gleap_id,
                     hash = excluded.hash, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now')",
                )?;
                // Who made the record: set when the map learns of it (a create, a record
                // taken over, another record than before); kept on updates.
                let mut provenance = tx.prepare_cached(
                    "UPDATE id_map SET origin = ?3, origin_run = ?4 WHERE stream = ?1 AND source_id = ?2",
                )?;
                let mut clear = tx.prepare_cached("DELETE FROM intents WHERE stream = ?1 AND source_id = ?2")?;
                let mut unarchive =
                    tx.prepare_cached("DELETE FROM pruned WHERE stream = ?1 AND source_id = ?2")?;
                for source_id in &commit.unarchived {
                    unarchive.execute(params![stream, source_id])?;
                }
                for (source_id, entry) in &commit.confirmed {
                    upsert.execute(params![stream, source_id, entry.gleap_id, hash_text(entry.hash)])?;
                    if let Some(origin) = commit.origins.get(source_id) {
                        provenance.execute(params![stream, source_id, origin.text(), run])?;
                    }
                    clear.execute(params![stream, source_id])?;
                }
                for source_id in &commit.cleared {
                    clear.execute(params![stream, source_id])?;
                }
                if let Some(done) = commit.done_through {
                    tx.execute(
                        "UPDATE checkpoints SET done_through = ?2, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE stream = ?1",
                        params![stream, done as i64],
                    )?;
                }
            }
            tx.commit()
        })
    }

    pub fn checkpoint(&self, stream: &str) -> Result<Option<Checkpoint>> {
        self.with(|c| {
            c.query_row(
                "SELECT fingerprint, done_through, complete FROM checkpoints WHERE stream = ?1",
                [stream],
                |r| {
                    Ok(Checkpoint {
                        fingerprint: r.get(0)?,
                        done_through: r.get::<_, Option<i64>>(1)?.map(|v| v as u64),
                        complete: r.get::<_, i64>(2)? != 0,
                    })
                },
            )
            .optional()
        })
    }

    /// Starts a stream over its input afresh (position 0) under `fingerprint`.
    pub fn restart_stream(&self, stream: &str, fingerprint: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO checkpoints (stream, fingerprint, done_through, complete, updated_at)
                 VALUES (?1, ?2, NULL, 0, strftime('%Y-%m-%dT%H:%M:%fZ','now'))
                 ON CONFLICT (stream) DO UPDATE SET fingerprint = excluded.fingerprint, done_through = NULL,
                 complete = 0, updated_at = excluded.updated_at",
                params![stream, fingerprint],
            )
        })
        .map(|_| ())
    }

    /// Marks a stream as having reached the end of its input.
    pub fn complete_stream(&self, stream: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE checkpoints SET complete = 1 WHERE stream = ?1",
                [stream],
            )
        })
        .map(|_| ())
    }

    pub fn begin_run(&self, pipeline: &str, started_at: &str) -> Result<i64> {
        let id = self.with(|c| {
            c.execute(
                "INSERT INTO runs (pipeline, started_at, status) VALUES (?1, ?2, 'running')",
                params![pipeline, started_at],
            )?;
            Ok(c.last_insert_rowid())
        })?;
        *self.run.lock().unwrap_or_else(|p| p.into_inner()) = Some(id);
        Ok(id)
    }

    /// The mappings of a stream with who made their records, newest first (the run that
    /// created them, then the order the map learned of them).
    pub fn provenance(&self, stream: &str) -> Result<Vec<Provenance>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT source_id, gleap_id, origin, origin_run FROM id_map WHERE stream = ?1
                 ORDER BY origin_run DESC, rowid DESC",
            )?;
            let rows = stmt.query_map([stream], |r| {
                let origin: Option<String> = r.get(2)?;
                Ok(Provenance {
                    source_id: r.get(0)?,
                    gleap_id: r.get(1)?,
                    origin: match origin.as_deref() {
                        Some("created") => Some(Origin::Created),
                        Some("adopted") => Some(Origin::Adopted),
                        _ => None,
                    },
                    origin_run: r.get(3)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Forgets a mapping if it still points to `gleap_id` (the record was deleted): the
    /// next run creates it again. An archiving of it by `run --prune` is forgotten too.
    pub fn forget_deleted(&self, stream: &str, source_id: &str, gleap_id: &str) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            for table in ["id_map", "pruned"] {
                tx.execute(
                    &format!(
                        "DELETE FROM {table} WHERE stream = ?1 AND source_id = ?2 AND gleap_id = ?3"
                    ),
                    params![stream, source_id, gleap_id],
                )?;
            }
            tx.commit()
        })
    }

    /// The records of a stream `run --prune` archived: source id -> Gleap id.
    pub fn archived(&self, stream: &str) -> Result<HashMap<String, String>> {
        self.with(|c| {
            let mut stmt = c.prepare("SELECT source_id, gleap_id FROM pruned WHERE stream = ?1")?;
            let rows = stmt.query_map([stream], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    /// `run --prune` archived a record (Gleap confirmed it), in the run begun through this
    /// store.
    pub fn mark_archived(&self, stream: &str, source_id: &str, gleap_id: &str) -> Result<()> {
        let run = *self.run.lock().unwrap_or_else(|p| p.into_inner());
        self.with(|c| {
            c.execute(
                "INSERT INTO pruned (stream, source_id, gleap_id, run) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (stream, source_id) DO UPDATE SET gleap_id = excluded.gleap_id,
                 run = excluded.run, pruned_at = strftime('%Y-%m-%dT%H:%M:%fZ','now')",
                params![stream, source_id, gleap_id, run],
            )
            .map(|_| ())
        })
    }

    /// The next run of a stream reads its input from the start again (records whose
    /// mappings are kept are unchanged and cost nothing; forgotten ones are created).
    pub fn rewind_stream(&self, stream: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE checkpoints SET done_through = NULL, complete = 0 WHERE stream = ?1",
                [stream],
            )
        })
        .map(|_| ())
    }

    pub fn finish_run(
        &self,
        run: i64,
        finished_at: &str,
        status: &str,
        report: &str,
    ) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE runs SET finished_at = ?2, status = ?3, report = ?4 WHERE id = ?1",
                params![run, finished_at, status, report],
            )
        })
        .map(|_| ())
    }

    /// Records the selection of sample run `run` (`run --sample`), replacing an earlier one.
    /// Streams not named select nothing.
    pub fn set_sample<'a>(
        &self,
        run: i64,
        streams: impl IntoIterator<Item = (&'a String, &'a HashSet<String>)>,
    ) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute("DELETE FROM sample", [])?;
            // A marker row, so that a sample selecting nothing of any stream is still known.
            tx.execute(
                "INSERT INTO sample (stream, source_id, run) VALUES ('', '', ?1)",
                [run],
            )?;
            {
                let mut insert = tx.prepare(
                    "INSERT OR IGNORE INTO sample (stream, source_id, run) VALUES (?1, ?2, ?3)",
                )?;
                for (stream, ids) in streams {
                    for id in ids {
                        insert.execute(params![stream, id, run])?;
                    }
                }
            }
            tx.commit()
        })
    }

    /// Forgets the sample: a full run wrote everything, or an undo removed the sample.
    pub fn clear_sample(&self) -> Result<()> {
        self.with(|c| c.execute("DELETE FROM sample", []).map(|_| ()))
    }

    /// The selection of the latest sample run, when no full run came after it: the run and,
    /// per stream, the source ids it wrote.
    #[allow(clippy::type_complexity)]
    pub fn sample(&self) -> Result<Option<(i64, HashMap<String, HashSet<String>>)>> {
        self.with(|c| {
            let mut stmt = c.prepare("SELECT stream, source_id, run FROM sample")?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?;
            let mut run = None;
            let mut streams: HashMap<String, HashSet<String>> = HashMap::new();
            for row in rows {
                let (stream, id, r) = row?;
                run = Some(r);
                if !stream.is_empty() {
                    streams.entry(stream).or_default().insert(id);
                }
            }
            Ok(run.map(|r| (r, streams)))
        })
    }

    /// The latest runs, newest first.
    pub fn runs(&self, limit: usize) -> Result<Vec<RunRow>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT id, started_at, finished_at, status FROM runs ORDER BY id DESC LIMIT ?1",
            )?;
            let rows = stmt.query_map([limit as i64], |r| {
                Ok(RunRow {
                    id: r.get(0)?,
                    started_at: r.get(1)?,
                    finished_at: r.get(2)?,
                    status: r.get(3)?,
                })
            })?;
            rows.collect()
        })
    }

    /// The cursor an API source of `stream` resumes from (JSON, the source's own format).
    pub fn source_cursor(&self, stream: &str) -> Result<Option<String>> {
        self.with(|c| {
            c.query_row(
                "SELECT cursor FROM source_cursors WHERE stream = ?1",
                [stream],
                |r| r.get(0),
            )
            .optional()
        })
    }

    pub fn set_source_cursor(&self, stream: &str, cursor: &str) -> Result<()> {
        self.with(|c| set_cursor(c, stream, cursor)).map(|_| ())
    }

    pub fn dataset(&self, stream: &str) -> Result<Option<DatasetRow>> {
        self.with(|c| {
            c.query_row(
                "SELECT dir, current_generation, building_generation, fingerprint, through_seq
                 FROM datasets WHERE stream = ?1",
                [stream],
                |r| {
                    Ok(DatasetRow {
                        dir: r.get(0)?,
                        current_generation: r.get(1)?,
                        building_generation: r.get(2)?,
                        fingerprint: r.get(3)?,
                        through_seq: r.get::<_, Option<i64>>(4)?.map(|v| v as u64),
                    })
                },
            )
            .optional()
        })
    }

    /// Records where the dataset of `stream` stands (before a run writes parts).
    pub fn set_dataset(&self, stream: &str, row: &DatasetRow) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO datasets (stream, dir, current_generation, building_generation, fingerprint, through_seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (stream) DO UPDATE SET dir = excluded.dir,
                 current_generation = excluded.current_generation,
                 building_generation = excluded.building_generation,
                 fingerprint = excluded.fingerprint, through_seq = excluded.through_seq",
                params![
                    stream,
                    row.dir,
                    row.current_generation,
                    row.building_generation,
                    row.fingerprint,
                    row.through_seq.map(|v| v as i64)
                ],
            )
        })
        .map(|_| ())
    }

    /// The committed parts of `stream`'s dataset, in order.
    pub fn parts(&self, stream: &str) -> Result<Vec<PartRow>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT part, generation, files, rows, committed_at, schema FROM dataset_parts
                 WHERE stream = ?1 ORDER BY part",
            )?;
            let rows = stmt.query_map([stream], |r| {
                Ok(PartRow {
                    part: r.get(0)?,
                    generation: r.get(1)?,
                    files: r.get(2)?,
                    rows: r.get::<_, i64>(3)? as u64,
                    committed_at: r.get(4)?,
                    schema: r.get(5)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Records the schema of a part committed before schemas were (see [`PartRow::schema`]).
    pub fn set_part_schema(&self, stream: &str, part: i64, schema: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE dataset_parts SET schema = ?3 WHERE stream = ?1 AND part = ?2",
                params![stream, part, schema],
            )
            .map(|_| ())
        })
    }

    /// Commits a written part together with how far the input is done: the source cursor
    /// (API sources) or the last source record in it (file sources). One transaction, so a
    /// part is committed exactly when its input is.
    pub fn commit_part(
        &self,
        stream: &str,
        part: &PartRow,
        cursor: Option<&str>,
        through_seq: Option<u64>,
    ) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO dataset_parts (stream, part, generation, files, rows, committed_at, schema)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    stream,
                    part.part,
                    part.generation,
                    part.files,
                    part.rows as i64,
                    part.committed_at,
                    part.schema
                ],
            )?;
            if let Some(cursor) = cursor {
                set_cursor(&tx, stream, cursor)?;
            }
            if let Some(seq) = through_seq {
                tx.execute(
                    "UPDATE datasets SET through_seq = ?2 WHERE stream = ?1",
                    params![stream, seq as i64],
                )?;
            }
            tx.commit()
        })
    }

    /// Makes `generation` the current one of `stream`'s dataset, with the final cursor, and
    /// forgets the parts of older generations (returned, for their files to be removed).
    pub fn complete_generation(
        &self,
        stream: &str,
        generation: i64,
        cursor: Option<&str>,
    ) -> Result<Vec<PartRow>> {
        let old: Vec<PartRow> = self
            .parts(stream)?
            .into_iter()
            .filter(|p| p.generation != generation)
            .collect();
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "UPDATE datasets SET current_generation = ?2, building_generation = NULL,
                 through_seq = NULL WHERE stream = ?1",
                params![stream, generation],
            )?;
            tx.execute(
                "DELETE FROM dataset_parts WHERE stream = ?1 AND generation != ?2",
                params![stream, generation],
            )?;
            if let Some(cursor) = cursor {
                set_cursor(&tx, stream, cursor)?;
            }
            tx.commit()
        })?;
        Ok(old)
    }

    /// Forgets the parts of a generation that will not be completed (returned, for their
    /// files to be removed).
    pub fn drop_generation(&self, stream: &str, generation: i64) -> Result<Vec<PartRow>> {
        let dropped: Vec<PartRow> = self
            .parts(stream)?
            .into_iter()
            .filter(|p| p.generation == generation)
            .collect();
        self.with(|c| {
            c.execute(
                "DELETE FROM dataset_parts WHERE stream = ?1 AND generation = ?2",
                params![stream, generation],
            )
        })?;
        Ok(dropped)
    }

    pub fn stream_state(&self, stream: &str) -> Result<StreamState> {
        let (mapped, intents) = self.with(|c| {
            let mapped: i64 = c.query_row(
                "SELECT COUNT(*) FROM id_map WHERE stream = ?1",
                [stream],
                |r| r.get(0),
            )?;
            let intents: i64 = c.query_row(
                "SELECT COUNT(*) FROM intents WHERE stream = ?1",
                [stream],
                |r| r.get(0),
            )?;
            Ok((mapped as u64, intents as u64))
        })?;
        Ok(StreamState {
            mapped,
            intents,
            checkpoint: self.checkpoint(stream)?,
        })
    }
}

/// A file source as the state store knows it ([`crate::files`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSource {
    /// Its content's address in the vault, once it was had.
    pub sha256: Option<String>,
    pub size: Option<u64>,
    pub mime: Option<String>,
    /// Why it could not be had, the last time it was tried.
    pub failure: Option<String>,
    pub attempts: u64,
}

/// An upload of a vault file to a Gleap project (`target`: the upload URL and project).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileUpload {
    /// Gleap's URL for it, once an upload was answered.
    pub file_url: Option<String>,
    /// Uploads sent; more than zero without a URL: an answer was lost.
    pub attempts: u64,
}

/// The files' tables: where each source URL's content is in the vault, and where each
/// content is in Gleap. Each write is its own transaction, committed before the next step.
impl StateStore {
    pub fn file_source(&self, url: &str) -> Result<Option<FileSource>> {
        self.with(|c| {
            c.query_row(
                "SELECT sha256, size, mime, failure, attempts FROM file_sources WHERE url = ?1",
                [url],
                |r| {
                    Ok(FileSource {
                        sha256: r.get(0)?,
                        size: r.get::<_, Option<i64>>(1)?.map(|n| n as u64),
                        mime: r.get(2)?,
                        failure: r.get(3)?,
                        attempts: r.get::<_, i64>(4)? as u64,
                    })
                },
            )
            .optional()
        })
    }

    /// The content of `url` is in the vault under `sha256`.
    pub fn set_file_had(&self, url: &str, sha256: &str, size: u64, mime: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO file_sources (url, sha256, size, mime, failure, attempts, updated_at)
                 VALUES (?1, ?2, ?3, ?4, NULL, 1, strftime('%Y-%m-%dT%H:%M:%fZ','now'))
                 ON CONFLICT (url) DO UPDATE SET sha256 = excluded.sha256, size = excluded.size,
                 mime = excluded.mime, failure = NULL, attempts = attempts + 1,
                 updated_at = excluded.updated_at",
                params![url, sha256, size as i64, mime],
            )
            .map(|_| ())
        })
    }

    /// `url` could not be had, and why.
    pub fn set_file_failed(&self, url: &str, reason: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO file_sources (url, failure, attempts, updated_at)
                 VALUES (?1, ?2, 1, strftime('%Y-%m-%dT%H:%M:%fZ','now'))
                 ON CONFLICT (url) DO UPDATE SET failure = excluded.failure,
                 attempts = attempts + 1, updated_at = excluded.updated_at",
                params![url, reason],
            )
            .map(|_| ())
        })
    }

    /// The current-state snapshot of `stream`'s dataset (JSON, the dataset sink's own
    /// format), kept in `meta`: setting it is what makes a new snapshot current.
    pub fn snapshot(&self, stream: &str) -> Result<Option<String>> {
        self.with(|c| {
            c.query_row(
                "SELECT value FROM meta WHERE key = ?1",
                [format!("snapshot:{stream}")],
                |r| r.get(0),
            )
            .optional()
        })
    }

    pub fn set_snapshot(&self, stream: &str, snapshot: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![format!("snapshot:{stream}"), snapshot],
            )
            .map(|_| ())
        })
    }

    /// A multipart upload of a dataset part in a bucket began (noted before any byte is sent,
    /// so that the next run can abort it if this one is killed).
    pub fn begin_upload(&self, dir: &str, location: &str, upload_id: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO dataset_uploads (dir, location, upload_id) VALUES (?1, ?2, ?3)",
                params![dir, location, upload_id],
            )
            .map(|_| ())
        })
    }

    /// The upload was completed or aborted.
    pub fn end_upload(&self, location: &str, upload_id: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "DELETE FROM dataset_uploads WHERE location = ?1 AND upload_id = ?2",
                params![location, upload_id],
            )
            .map(|_| ())
        })
    }

    /// The uploads of the dataset in `dir` begun and not ended: (location, upload id).
    pub fn open_uploads(&self, dir: &str) -> Result<Vec<(String, String)>> {
        self.with(|c| {
            let mut stmt =
                c.prepare("SELECT location, upload_id FROM dataset_uploads WHERE dir = ?1")?;
            let rows = stmt.query_map([dir], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    pub fn file_upload(&self, target: &str, sha256: &str) -> Result<Option<FileUpload>> {
        self.with(|c| {
            c.query_row(
                "SELECT file_url, attempts FROM file_uploads WHERE target = ?1 AND sha256 = ?2",
                params![target, sha256],
                |r| {
                    Ok(FileUpload {
                        file_url: r.get(0)?,
                        attempts: r.get::<_, i64>(1)? as u64,
                    })
                },
            )
            .optional()
        })
    }

    /// An upload of `sha256` is about to be sent (committed first, like an intent).
    pub fn file_upload_sending(&self, target: &str, sha256: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO file_uploads (target, sha256, attempts, updated_at)
                 VALUES (?1, ?2, 1, strftime('%Y-%m-%dT%H:%M:%fZ','now'))
                 ON CONFLICT (target, sha256) DO UPDATE SET attempts = attempts + 1,
                 updated_at = excluded.updated_at",
                params![target, sha256],
            )
            .map(|_| ())
        })
    }

    /// Gleap answered `file_url` for `sha256`.
    pub fn set_file_uploaded(&self, target: &str, sha256: &str, file_url: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO file_uploads (target, sha256, file_url, attempts, updated_at)
                 VALUES (?1, ?2, ?3, 1, strftime('%Y-%m-%dT%H:%M:%fZ','now'))
                 ON CONFLICT (target, sha256) DO UPDATE SET file_url = excluded.file_url,
                 updated_at = excluded.updated_at",
                params![target, sha256, file_url],
            )
            .map(|_| ())
        })
    }
}

/// Columns added to `table` after it was first made: `origin` and `origin_run` on `id_map`
/// (before `undo`), `schema` on `dataset_parts` (before schema evolution); older stores'
/// rows keep NULL (not known).
fn add_columns(c: &Connection, table: &str, wanted: &[(&str, &str)]) -> rusqlite::Result<()> {
    let mut stmt = c.prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?;
    let columns: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for (column, ty) in wanted {
        if !columns.iter().any(|c| c == column) {
            c.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {ty}"))?;
        }
    }
    Ok(())
}

fn set_cursor(c: &Connection, stream: &str, cursor: &str) -> rusqlite::Result<usize> {
    c.execute(
        "INSERT INTO source_cursors (stream, cursor, updated_at)
         VALUES (?1, ?2, strftime('%Y-%m-%dT%H:%M:%fZ','now'))
         ON CONFLICT (stream) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
        params![stream, cursor],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmations_checkpoints_and_intents_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = StateStore::open(dir.path()).unwrap();
            store.restart_stream("users", "fp1").unwrap();
            store
                .add_intents("users", &["u1".into(), "u2".into()])
                .unwrap();
            let commit = Commit {
                confirmed: vec![(
                    "u1".into(),
                    MapEntry {
                        gleap_id: "g1".into(),
                        hash: 0xabc,
                    },
                )],
                cleared: vec![],
                done_through: Some(7),
                ..Commit::default()
            };
            store.commit("users", &commit).unwrap();
        }
        let store = StateStore::open(dir.path()).unwrap();
        let map = store.load_map("users").unwrap();
        assert_eq!(
            map["u1"],
            MapEntry {
                gleap_id: "g1".into(),
                hash: 0xabc
            }
        );
        assert_eq!(
            store.intents("users").unwrap(),
            HashSet::from(["u2".to_string()])
        );
        let cp = store.checkpoint("users").unwrap().unwrap();
        assert_eq!(
            cp,
            Checkpoint {
                done_through: Some(7),
                fingerprint: "fp1".into(),
                complete: false
            }
        );
        store.complete_stream("users").unwrap();
        assert!(store.checkpoint("users").unwrap().unwrap().complete);
        store.restart_stream("users", "fp2").unwrap();
        assert_eq!(
            store.checkpoint("users").unwrap().unwrap().done_through,
            None
        );
        assert_eq!(store.stream_state("users").unwrap().mapped, 1);
    }

    #[test]
    fn provenance_is_recorded_per_run_and_old_stores_read_as_not_known() {
        let dir = tempfile::tempdir().unwrap();
        // A store from before `undo`: id_map without the provenance columns, one mapping.
        {
            let c = Connection::open(dir.path().join("state.sqlite")).unwrap();
            c.execute_batch(
                "CREATE TABLE id_map (stream TEXT NOT NULL, source_id TEXT NOT NULL, gleap_id TEXT NOT NULL,
                 hash TEXT NOT NULL, updated_at TEXT NOT NULL DEFAULT '', PRIMARY KEY (stream, source_id));
                 INSERT INTO id_map (stream, source_id, gleap_id, hash) VALUES ('users', 'old', 'g0', '0');",
            )
            .unwrap();
        }
        let store = StateStore::open(dir.path()).unwrap();
        let entry = |id: &str| MapEntry {
            gleap_id: id.into(),
            hash: 1,
        };
        let commit = |confirmed: &[(&str, &str)], origins: &[(&str, Origin)]| Commit {
            confirmed: confirmed
                .iter()
                .map(|(s, g)| (s.to_string(), entry(g)))
                .collect(),
            origins: origins.iter().map(|(s, o)| (s.to_string(), *o)).collect(),
            ..Commit::default()
        };
        let first = store.begin_run("p", "t1").unwrap();
        store
            .commit(
                "users",
                &commit(
                    &[("a", "g1"), ("b", "g2")],
                    &[("a", Origin::Created), ("b", Origin::Adopted)],
                ),
            )
            .unwrap();
        let second = store.begin_run("p", "t2").unwrap();
        // An update of `a` (no origin) keeps run 1's create; `c` is run 2's.
        store
            .commit(
                "users",
                &commit(&[("a", "g1"), ("c", "g3")], &[("c", Origin::Created)]),
            )
            .unwrap();
        let seen: Vec<_> = store
            .provenance("users")
            .unwrap()
            .into_iter()
            .map(|p| (p.source_id, p.origin, p.origin_run))
            .collect();
        assert_eq!(
            seen,
            vec![
                ("c".to_string(), Some(Origin::Created), Some(second)),
                ("b".to_string(), Some(Origin::Adopted), Some(first)),
                ("a".to_string(), Some(Origin::Created), Some(first)),
                ("old".to_string(), None, None),
            ]
        );
        // Forgotten only while it still points to the deleted record.
        store.forget_deleted("users", "a", "other").unwrap();
        store.forget_deleted("users", "c", "g3").unwrap();
        let left: Vec<_> = store.load_map("users").unwrap().into_keys().collect();
        assert_eq!(left.len(), 3);
        assert!(!left.contains(&"c".to_string()));
    }

    #[test]
    fn archived_records_are_remembered_until_back_or_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let run = store.begin_run("p", "t1").unwrap();
        store.mark_archived("tickets", "t1", "g1").unwrap();
        store.mark_archived("tickets", "t2", "g2").unwrap();
        store.mark_archived("tickets", "t3", "g3").unwrap();
        assert_eq!(store.archived("tickets").unwrap().len(), 3);
        assert!(store.archived("other").unwrap().is_empty());
        let row: (String, Option<i64>) = store
            .with(|c| {
                c.query_row(
                    "SELECT gleap_id, run FROM pruned WHERE source_id = 't1'",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
            })
            .unwrap();
        assert_eq!(row, ("g1".to_string(), Some(run)));
        // t1 is back in the source (updated with archived: false); t2 is deleted.
        store
            .commit(
                "tickets",
                &Commit {
                    unarchived: vec!["t1".into()],
                    ..Commit::default()
                },
            )
            .unwrap();
        store.forget_deleted("tickets", "t2", "g2").unwrap();
        // Another record now: not forgotten.
        store.forget_deleted("tickets", "t3", "other").unwrap();
        let left = store.archived("tickets").unwrap();
        assert_eq!(left, HashMap::from([("t3".to_string(), "g3".to_string())]));
    }

    #[test]
    fn runs_are_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let run = store.begin_run("p", "2024-01-01T00:00:00Z").unwrap();
        store
            .finish_run(run, "2024-01-01T00:01:00Z", "ok", "{}")
            .unwrap();
        let runs = store.runs(5).unwrap();
        assert_eq!(runs[0].status, "ok");
    }

    #[test]
    fn parts_commit_with_their_cursor_and_generations_replace_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let part = |part: i64, generation: i64| PartRow {
            part,
            generation,
            files: format!(r#"[{{"file":"part-{part:05}.parquet","rows":10}}]"#),
            rows: 10,
            committed_at: "2024-01-01T00:00:00Z".into(),
            schema: None,
        };
        store
            .set_dataset(
                "s",
                &DatasetRow {
                    dir: "out".into(),
                    current_generation: None,
                    building_generation: Some(1),
                    fingerprint: "f".into(),
                    through_seq: None,
                },
            )
            .unwrap();
        store
            .commit_part("s", &part(0, 1), Some("c0"), Some(9))
            .unwrap();
        store
            .commit_part("s", &part(1, 1), Some("c1"), Some(19))
            .unwrap();
        assert_eq!(store.source_cursor("s").unwrap().as_deref(), Some("c1"));
        assert_eq!(store.dataset("s").unwrap().unwrap().through_seq, Some(19));
        // A part number is committed once.
        assert!(
            store
                .commit_part("s", &part(1, 1), Some("c2"), None)
                .is_err()
        );
        assert_eq!(store.source_cursor("s").unwrap().as_deref(), Some("c1"));
        assert!(
            store
                .complete_generation("s", 1, Some("done"))
                .unwrap()
                .is_empty()
        );
        let d = store.dataset("s").unwrap().unwrap();
        assert_eq!(
            (d.current_generation, d.building_generation),
            (Some(1), None)
        );
        store.commit_part("s", &part(2, 2), None, None).unwrap();
        let old = store.complete_generation("s", 2, None).unwrap();
        assert_eq!(old.iter().map(|p| p.part).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(store.parts("s").unwrap().len(), 1);
        assert_eq!(store.drop_generation("s", 2).unwrap().len(), 1);
        assert!(store.parts("s").unwrap().is_empty());
    }
}
