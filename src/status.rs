//! `gleap-etl status PIPELINE [--json]`: what the state store knows, as one typed report the
//! store builds ([`StateStore::status_report`]) and the CLI prints as text or JSON.

use std::path::PathBuf;

use serde::Serialize;

use crate::engine::report::plural;
use crate::error::Result;
use crate::state::StateStore;

/// Where a stream stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Progress {
    NeverRun,
    Complete,
    /// The next run resumes after record `done_through` (0-based), or from the start.
    Interrupted {
        done_through: Option<u64>,
    },
}

/// What a Gleap stream's id map holds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IdMapStatus {
    pub mapped: u64,
    /// Creates sent whose answer was never recorded (looked up by the next run).
    pub awaiting_confirmation: u64,
    /// Tickets `run --prune` archived (not archived again each run).
    pub archived: u64,
}

/// An incremental Gleap source's window.
#[derive(Debug, Clone, Serialize)]
pub struct CursorStatus {
    pub order_by: String,
    pub complete: bool,
    pub from: Option<String>,
    pub upper: Option<String>,
    pub last_read: Option<String>,
}

/// A Parquet dataset's parts.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetStatus {
    pub dir: String,
    pub parts: u64,
    pub rows: u64,
    /// A replacement in progress: its parts and rows so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replacing: Option<(u64, u64)>,
}

/// One stream.
#[derive(Debug, Clone, Serialize)]
pub struct StreamStatus {
    pub name: String,
    pub progress: Progress,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_map: Option<IdMapStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<CursorStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset: Option<DatasetStatus>,
    /// `run --sample` in force: the records of this stream in the sample.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample: Option<u64>,
}

/// A run, as the store recorded it.
#[derive(Debug, Clone, Serialize)]
pub struct RunStatus {
    pub id: i64,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub status: String,
}

/// What `status` prints.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub pipeline: String,
    pub state_dir: PathBuf,
    pub streams: Vec<StreamStatus>,
    /// `run --sample` wrote last: its run (verify checks only the sample).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_run: Option<i64>,
    /// The newest first.
    pub runs: Vec<RunStatus>,
}

impl StateStore {
    /// The status of `streams` (name, whether it writes to Gleap), and the last `runs` runs.
    pub fn status_report(
        &self,
        pipeline: &str,
        streams: &[(String, bool)],
        runs: usize,
    ) -> Result<StatusReport> {
        let sample = self.sample()?;
        let mut out = Vec::new();
        for (name, gleap) in streams {
            let s = self.stream_state(name)?;
            let progress = match &s.checkpoint {
                None => Progress::NeverRun,
                Some(cp) if cp.complete => Progress::Complete,
                Some(cp) => Progress::Interrupted {
                    done_through: cp.done_through,
                },
            };
            let id_map = if *gleap {
                Some(IdMapStatus {
                    mapped: s.mapped,
                    awaiting_confirmation: s.intents,
                    archived: self.archived(name)?.len() as u64,
                })
            } else {
                None
            };
            let cursor = crate::sources::gleap::Cursor::stored(self, name)?.map(|c| CursorStatus {
                order_by: c.order_by,
                complete: c.complete,
                from: c.from,
                upper: c.upper,
                last_read: c.after,
            });
            let dataset = match self.dataset(name)? {
                Some(d) => {
                    let parts = self.parts(name)?;
                    let of = |g: Option<i64>| {
                        let p: Vec<_> = parts.iter().filter(|p| Some(p.generation) == g).collect();
                        (p.len() as u64, p.iter().map(|p| p.rows).sum::<u64>())
                    };
                    let (n, rows) = of(d.current_generation);
                    let replacing = (d.building_generation.is_some()
                        && d.building_generation != d.current_generation)
                        .then(|| of(d.building_generation));
                    Some(DatasetStatus {
                        dir: d.dir,
                        parts: n,
                        rows,
                        replacing,
                    })
                }
                None => None,
            };
            out.push(StreamStatus {
                name: name.clone(),
                progress,
                id_map,
                cursor,
                dataset,
                sample: sample
                    .as_ref()
                    .map(|(_, s)| s.get(name).map_or(0, |ids| ids.len() as u64)),
            });
        }
        Ok(StatusReport {
            pipeline: pipeline.to_string(),
            state_dir: self.path().parent().map(PathBuf::from).unwrap_or_default(),
            streams: out,
            sample_run: sample.map(|(run, _)| run),
            runs: self
                .runs(runs)?
                .into_iter()
                .map(|r| RunStatus {
                    id: r.id,
                    started_at: r.started_at,
                    finished_at: r.finished_at,
                    status: r.status,
                })
                .collect(),
        })
    }
}

impl StatusReport {
    /// The text `status` prints.
    pub fn text(&self) -> String {
        let mut out = format!(
            "{}: state in {}\n",
            self.pipeline,
            self.state_dir.join("state.sqlite").display()
        );
        for s in &self.streams {
            let progress = match s.progress {
                Progress::NeverRun => "never run".to_string(),
                Progress::Complete => "complete".to_string(),
                Progress::Interrupted {
                    done_through: Some(n),
                } => format!(
                    "interrupted: records 1-{} done, the next run resumes after them",
                    n + 1
                ),
                Progress::Interrupted { done_through: None } => {
                    "interrupted before any record was done".to_string()
                }
            };
            match &s.id_map {
                Some(m) => {
                    out.push_str(&format!(
                        "  {}: {progress}; {} mapped; {} awaiting confirmation",
                        s.name,
                        plural(m.mapped, "id", "ids"),
                        plural(m.awaiting_confirmation, "create", "creates")
                    ));
                    if m.archived > 0 {
                        out.push_str(&format!(
                            "; {} archived by --prune",
                            plural(m.archived, "ticket", "tickets")
                        ));
                    }
                    out.push('\n');
                }
                None => out.push_str(&format!("  {}:\n", s.name)),
            }
            if let Some(c) = &s.cursor {
                out.push_str(&format!(
                    "    read from Gleap by {}: {} (window {} .. {}, last read {})\n",
                    c.order_by,
                    if c.complete {
                        "complete; the next incremental run starts at the window's end"
                    } else {
                        "interrupted; the next run resumes after the last read"
                    },
                    c.from.as_deref().unwrap_or("the beginning"),
                    c.upper.as_deref().unwrap_or("?"),
                    c.last_read.as_deref().unwrap_or("nothing"),
                ));
            }
            if let Some(d) = &s.dataset {
                out.push_str(&format!(
                    "    dataset {}: {} current, {}",
                    d.dir,
                    plural(d.parts, "part", "parts"),
                    plural(d.rows, "row", "rows")
                ));
                if let Some((n, rows)) = d.replacing {
                    out.push_str(&format!(
                        "; a replacement in progress: {}, {} so far",
                        plural(n, "part", "parts"),
                        plural(rows, "row", "rows")
                    ));
                }
                out.push('\n');
            }
        }
        if let Some(run) = self.sample_run {
            let counts: Vec<String> = self
                .streams
                .iter()
                .filter_map(|s| s.sample.map(|n| format!("{n} of `{}`", s.name)))
                .collect();
            out.push_str(&format!(
                "  a sample is in Gleap (run {run}: {}): `verify` checks it, `undo --all` removes it, a full run completes it\n",
                counts.join(", ")
            ));
        }
        if !self.runs.is_empty() {
            out.push_str("  last runs:\n");
            for r in &self.runs {
                out.push_str(&format!(
                    "    #{} {} -> {} {}\n",
                    r.id,
                    r.started_at,
                    r.finished_at.as_deref().unwrap_or("(did not finish)"),
                    r.status
                ));
            }
        }
        out
    }
}
