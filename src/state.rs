//! The state store: one SQLite file per pipeline (`<state_dir>/state.sqlite`, WAL) holding
//!
//! - the id map: for each stream, source id -> Gleap id and the hash of what was last sent;
//! - intents: creates that were sent but whose answer is not recorded yet, so a re-run looks
//!   them up instead of creating them twice;
//! - a checkpoint per stream: the position in the input below which every record is confirmed
//!   (or dead-lettered), with a fingerprint of the input it belongs to;
//! - run history.
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

/// Confirmations to commit together with a checkpoint.
#[derive(Debug, Default)]
pub struct Commit {
    pub confirmed: Vec<(String, MapEntry)>,
    /// Intents resolved without a confirmation (found absent, or dead-lettered).
    pub cleared: Vec<String>,
    pub done_through: Option<u64>,
}

impl Commit {
    pub fn is_empty(&self) -> bool {
        self.confirmed.is_empty() && self.cleared.is_empty() && self.done_through.is_none()
    }
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
}

fn db_error(path: &Path, e: rusqlite::Error) -> Error {
    Error::Other(format!("state store {}: {e}", path.display()))
}

fn hash_text(hash: u128) -> String {
    format!("{hash:032x}")
}

impl StateStore {
    /// Opens (creating) `<dir>/state.sqlite`.
    pub fn open(dir: &Path) -> Result<StateStore> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
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
             CREATE TABLE IF NOT EXISTS runs (
                 id INTEGER PRIMARY KEY AUTOINCREMENT, pipeline TEXT NOT NULL, started_at TEXT NOT NULL,
                 finished_at TEXT, status TEXT NOT NULL, report TEXT);",
        )
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
                return Err(Error::Other(format!(
                    "state store {}: schema version {other:?}, this gleap-etl reads {SCHEMA_VERSION}",
                    path.display()
                )));
            }
        }
        Ok(StateStore {
            conn: Mutex::new(conn),
            path,
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
    pub fn intents(&self, stream: &str) -> Result<HashSet<String>> {
        self.with(|c| {
            let mut stmt = c.prepare("SELECT source_id FROM intents WHERE stream = ?1")?;
            let rows = stmt.query_map([stream], |r| r.get::<_, String>(0))?;
            rows.collect()
        })
    }

    /// Records, durably, that a create is about to be sent.
    pub fn add_intent(&self, stream: &str, source_id: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO intents (stream, source_id) VALUES (?1, ?2)",
                params![stream, source_id],
            )
        })
        .map(|_| ())
    }

    /// Commits confirmations, cleared intents and the checkpoint in one transaction.
    pub fn commit(&self, stream: &str, commit: &Commit) -> Result<()> {
        if commit.is_empty() {
            return Ok(());
        }
        self.with(|c| {
            let tx = c.transaction()?;
            {
                let mut upsert = tx.prepare_cached(
                    "INSERT INTO id_map (stream, source_id, gleap_id, hash) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (stream, source_id) DO UPDATE SET gleap_id = excluded.gleap_id,
                     hash = excluded.hash, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now')",
                )?;
                let mut clear = tx.prepare_cached("DELETE FROM intents WHERE stream = ?1 AND source_id = ?2")?;
                for (source_id, entry) in &commit.confirmed {
                    upsert.execute(params![stream, source_id, entry.gleap_id, hash_text(entry.hash)])?;
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
        self.with(|c| {
            c.execute(
                "INSERT INTO runs (pipeline, started_at, status) VALUES (?1, ?2, 'running')",
                params![pipeline, started_at],
            )?;
            Ok(c.last_insert_rowid())
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmations_checkpoints_and_intents_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = StateStore::open(dir.path()).unwrap();
            store.restart_stream("users", "fp1").unwrap();
            store.add_intent("users", "u1").unwrap();
            store.add_intent("users", "u2").unwrap();
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
}
