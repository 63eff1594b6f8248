//! `gleap-etl undo PIPELINE [--run ID | --all]`: deletes from Gleap what this pipeline's runs
//! created, as its id map records it: messages, then tickets, then sessions, newest first.
//! Each mapping is forgotten once its delete is confirmed (a 404: already gone), so a killed
//! undo goes on where it stopped. Records the pipeline found in Gleap and only updated, or
//! whose maker the map does not know (mapped before gleap-etl recorded it), are listed and
//! left alone.

use std::path::PathBuf;
use std::sync::Arc;

use reqwest::Method;

use crate::engine::{self, GleapTarget};
use crate::error::{Error, Result};
use crate::gleap::client::{Answer, CallError, GleapClient, RequestCounters};
use crate::pipeline::Pipeline;
use crate::sinks::gleap::Entity;
use crate::state::{Origin, Provenance, StateStore};

/// What to undo.
#[derive(Debug, Clone, Default)]
pub struct UndoOptions {
    /// Overrides the pipeline's `state_dir`.
    pub state_dir: Option<PathBuf>,
    /// Only what this run created; `None`: every run's.
    pub run: Option<i64>,
    /// Where to delete instead of the pipeline's `gleap:` target (`--emulator`).
    pub gleap_target: Option<GleapTarget>,
}

/// One stream's part of the undo.
#[derive(Debug)]
pub struct StreamUndo {
    pub stream: String,
    pub entity: Entity,
    /// Created by the run(s) undone, newest first: deleted.
    pub delete: Vec<Provenance>,
    /// Found in Gleap and updated: left as they are.
    pub updated: Vec<Provenance>,
    /// Mapped, but whether we created them is not known: left alone.
    pub unknown: Vec<Provenance>,
    /// Creates sent by an interrupted run whose answer was never recorded.
    pub unconfirmed: usize,
    pub deleted: u64,
    pub already_gone: u64,
    pub failed: Vec<String>,
}

/// What [`change_mapped`] does to each record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// `DELETE`; the mapping is forgotten once Gleap confirms it.
    Delete,
    /// `PUT /tickets/{id}/archive` (Gleap's ArchiveTicket; `run --prune`); remembered in the
    /// state store.
    Archive,
}

/// What [`change_mapped`] did.
#[derive(Debug, Default)]
pub(crate) struct Changed {
    /// Deleted or archived.
    pub done: u64,
    /// Answered 404: deleted in Gleap already (its mapping is forgotten all the same).
    pub already_gone: u64,
    /// Records Gleap refused to change, and why: their mappings are kept.
    pub failed: Vec<String>,
}

/// Deletes or archives the Gleap records of `records` (mappings of `stream`, holding
/// `entity`), in the order given, and records each change once Gleap confirmed it (a delete
/// or a 404 forgets the mapping, an archiving is remembered), so that a killed caller goes
/// on where it stopped. A record Gleap refuses to change is named in `out.failed` and kept.
/// Stops at an error that stops every request (the key refused, Gleap unreachable), or when
/// `stop` is set (`Error::Interrupted`); `out` holds what was done until then. Shared by
/// `undo` and `run --prune`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn change_mapped(
    runtime: &tokio::runtime::Runtime,
    client: &GleapClient,
    counters: &RequestCounters,
    store: &StateStore,
    (stream, entity): (&str, Entity),
    change: Change,
    records: &[Provenance],
    out: &mut Changed,
    stop: Option<&std::sync::atomic::AtomicBool>,
) -> Result<()> {
    // Archiving: Gleap's ArchiveTicket, `PUT /tickets/{id}/archive` without a body
    // (../shared/reference/gleap-openapi/ticket.yml).
    let (method, suffix, doing) = match change {
        Change::Delete => (Method::DELETE, "", "deleting"),
        Change::Archive => (Method::PUT, "/archive", "archiving"),
    };
    for p in records {
        if stop.is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed)) {
            return Err(Error::Interrupted);
        }
        let path = format!("{}/{}{suffix}", entity.path(), p.gleap_id);
        let answer =
            runtime.block_on(client.call(method.clone(), &path, &[], None, false, counters));
        match answer {
            Ok(Answer { status: 404, .. }) => {
                store.forget_deleted(stream, &p.source_id, &p.gleap_id)?;
                out.already_gone += 1;
            }
            Ok(_) => {
                match change {
                    Change::Delete => store.forget_deleted(stream, &p.source_id, &p.gleap_id)?,
                    Change::Archive => store.mark_archived(stream, &p.source_id, &p.gleap_id)?,
                }
                out.done += 1;
            }
            Err(CallError::Rejected { status, message }) => out.failed.push(format!(
                "{} {} (Gleap {}): Gleap answered {status}: {message}",
                entity.singular(),
                p.source_id,
                p.gleap_id
            )),
            Err(e) => {
                return Err(Error::remote(
                    format!(
                        "stream `{stream}`: {doing} {} {}",
                        entity.singular(),
                        p.source_id
                    ),
                    &e,
                ));
            }
        }
    }
    Ok(())
}

/// An undo, planned: the counts come first, then `execute`.
pub struct Undo {
    pub pipeline: String,
    pub run: Option<i64>,
    pub streams: Vec<StreamUndo>,
    store: StateStore,
    settings: crate::gleap::client::ClientSettings,
    _lock: crate::dirs::StateDirLock,
}

/// The order records are deleted in: messages, then tickets, then sessions.
pub(crate) fn rank(entity: Entity) -> u8 {
    match entity {
        Entity::Messages => 0,
        Entity::Tickets => 1,
        _ => 2,
    }
}

/// Reads the id map and decides what the undo deletes; holds the state dir's lock.
pub fn plan(pipeline: &Pipeline, options: &UndoOptions) -> Result<Undo> {
    let state_dir = pipeline.state_dir(options.state_dir.as_deref());
    if !state_dir.join("state.sqlite").exists() {
        return Err(Error::config(format!(
            "no state store in {}: undo deletes what earlier runs recorded there, and none did (a different --state-dir?)",
            state_dir.display()
        )));
    }
    let lock = crate::dirs::StateDirLock::acquire(&state_dir)?;
    let store = StateStore::open(&state_dir)?;
    if let Some(run) = options.run
        && !store.runs(usize::MAX)?.iter().any(|r| r.id == run)
    {
        return Err(Error::config(format!(
            "no run {run} in {} (`gleap-etl status` lists the runs)",
            store.path().display()
        )));
    }
    let mut streams = Vec::new();
    for stream in &pipeline.config.streams {
        let Some(g) = stream.sink.gleap_records() else {
            continue;
        };
        let name = stream.name.value.clone();
        let mut s = StreamUndo {
            stream: name.clone(),
            entity: g.entity,
            delete: Vec::new(),
            updated: Vec::new(),
            unknown: Vec::new(),
            unconfirmed: if options.run.is_none() {
                store.intents(&name)?.len()
            } else {
                0
            },
            deleted: 0,
            already_gone: 0,
            failed: Vec::new(),
        };
        for p in store.provenance(&name)? {
            let ours = options.run.is_none_or(|run| p.origin_run == Some(run));
            match p.origin {
                Some(Origin::Created) if ours => s.delete.push(p),
                Some(Origin::Adopted) if ours => s.updated.push(p),
                None if options.run.is_none() => s.unknown.push(p),
                _ => {}
            }
        }
        streams.push(s);
    }
    if streams.is_empty() {
        return Err(Error::config(format!(
            "{}: no stream writes sessions, tickets or messages to Gleap; nothing to undo",
            pipeline.name()
        )));
    }
    streams.sort_by_key(|s| rank(s.entity));
    let settings = engine::gleap_settings(pipeline, options.gleap_target.as_ref())?;
    Ok(Undo {
        pipeline: pipeline.name().to_string(),
        run: options.run,
        streams,
        store,
        settings,
        _lock: lock,
    })
}

fn count(n: usize, entity: Entity) -> String {
    let name = if n == 1 {
        entity.singular()
    } else {
        entity.name()
    };
    format!("{n} {name}")
}

fn listed(items: &[Provenance]) -> String {
    const SHOWN: usize = 10;
    let mut text: Vec<String> = items
        .iter()
        .take(SHOWN)
        .map(|p| format!("{} (Gleap {})", p.source_id, p.gleap_id))
        .collect();
    if items.len() > SHOWN {
        text.push(format!("and {} more", items.len() - SHOWN));
    }
    text.join(", ")
}

impl Undo {
    /// Records the undo deletes.
    pub fn to_delete(&self) -> usize {
        self.streams.iter().map(|s| s.delete.len()).sum()
    }

    /// The counts, before anything is deleted.
    pub fn describe(&self) -> String {
        let which = match self.run {
            Some(run) => format!("run {run}"),
            None => "all runs".to_string(),
        };
        let mut out = format!("undo {} ({which}):\n", self.pipeline);
        for s in &self.streams {
            out.push_str(&format!(
                "  {}: delete {}",
                s.stream,
                count(s.delete.len(), s.entity)
            ));
            if !s.updated.is_empty() {
                out.push_str(&format!(
                    "; {} updated, not reverted: {}",
                    count(s.updated.len(), s.entity),
                    listed(&s.updated)
                ));
            }
            if !s.unknown.is_empty() {
                out.push_str(&format!(
                    "; {} not known to be created by this pipeline (mapped before gleap-etl recorded it), left alone: {}",
                    count(s.unknown.len(), s.entity),
                    listed(&s.unknown)
                ));
            }
            if s.unconfirmed > 0 {
                out.push_str(&format!(
                    "; {} sent by an interrupted run and never confirmed: run the pipeline again first to settle them, or they stay in Gleap",
                    count(s.unconfirmed, s.entity)
                ));
            }
            out.push('\n');
        }
        out
    }

    /// Deletes, stream by stream (messages, tickets, sessions), newest first; forgets each
    /// mapping once its record is gone. Stops at an error that stops every request (the key
    /// refused, Gleap unreachable); a record Gleap refuses to delete is named and kept.
    pub fn execute(&mut self) -> Result<()> {
        let client = Arc::new(GleapClient::new(self.settings.clone())?);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::internal(format!("cannot start the async runtime: {e}")))?;
        let counters = RequestCounters::default();
        for s in &mut self.streams {
            let mut done = Changed::default();
            let result = change_mapped(
                &runtime,
                &client,
                &counters,
                &self.store,
                (&s.stream, s.entity),
                Change::Delete,
                &s.delete,
                &mut done,
                None,
            );
            s.deleted = done.done;
            s.already_gone = done.already_gone;
            s.failed = done.failed;
            // Its checkpoint may pass records whose mappings are gone: the next run reads
            // the input from the start and creates them again.
            if s.deleted + s.already_gone > 0 {
                self.store.rewind_stream(&s.stream)?;
            }
            result.map_err(|e| e.hinted("run undo again to go on"))?;
        }
        // The sample a `run --sample` wrote is gone with the run: `verify` no longer
        // expects it.
        if !self.failed()
            && let Some((run, _)) = self.store.sample()?
            && self.run.is_none_or(|undone| undone == run)
        {
            self.store.clear_sample()?;
        }
        Ok(())
    }

    /// What was done, after `execute`.
    pub fn report(&self) -> String {
        let mut out = String::new();
        for s in &self.streams {
            out.push_str(&format!(
                "{}: {} deleted",
                s.stream,
                count(s.deleted as usize, s.entity)
            ));
            if s.already_gone > 0 {
                out.push_str(&format!(", {} already gone", s.already_gone));
            }
            if !s.updated.is_empty() {
                out.push_str(&format!(", {} updated, not reverted", s.updated.len()));
            }
            if !s.unknown.is_empty() {
                out.push_str(&format!(", {} not known to be ours, left", s.unknown.len()));
            }
            out.push('\n');
            for f in &s.failed {
                out.push_str(&format!("  not deleted: {f}\n"));
            }
        }
        out
    }

    pub fn failed(&self) -> bool {
        self.streams.iter().any(|s| !s.failed.is_empty())
    }
}
