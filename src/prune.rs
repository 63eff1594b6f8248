//! `run PIPELINE --prune[=archive|delete] [--prune-sessions]`: nightly syncs that follow
//! deletions. After a run that read its whole source, the records this pipeline created
//! earlier (id map provenance `created`) whose source ids did not reach their Gleap sink in
//! this run are gone from the source: tickets are archived (Gleap's ArchiveTicket,
//! `PUT /tickets/{id}/archive`, ../shared/reference/gleap-openapi/ticket.yml), or with
//! `delete` deleted with their messages; sessions only with `--prune-sessions`, and
//! then deleted (a session cannot be archived). Records the pipeline adopted, or whose
//! maker the map does not know, are left and counted.
//!
//! Records a `filter` or `skip` stage drops count as gone: they are no longer part of what
//! the pipeline migrates (a deleted Zendesk ticket is filtered out by `.status != "deleted"`).
//!
//! A run that did not read its whole source prunes nothing and says why: it was
//! interrupted, went over `--max-errors`, a stream failed or did not run, a stream resumed
//! an interrupted run (it did not see the records before its checkpoint), or records were
//! dead-lettered before they reached the sink (their ids are not known, so they might be
//! among the "gone").
//!
//! The prune runs once every stream has finished: messages, then tickets, then sessions,
//! newest first. It is resumable: an archived ticket is remembered in the state store
//! (`pruned`), so the next night sends no request for it, and a delete forgets its mapping
//! once Gleap confirmed it (as `undo` does, with `undo`'s code). A ticket that comes back in
//! the source is un-archived by the next run (`PUT /tickets/{id}/unarchive`), and updated if
//! it changed.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use crate::engine::report::{StreamReport, StreamStatus, count, plural};
use crate::error::{Error, Result};
use crate::gleap::client::RequestCounters;
use crate::pipeline::Pipeline;
use crate::sinks::gleap::{Entity, GleapRun};
use crate::state::{Origin, Provenance};
use crate::undo::{Change, Changed, change_mapped, rank};

/// What `--prune` does to a ticket gone from the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum PruneMode {
    /// Tickets are archived (`PUT /tickets/{id}/archive`); messages are left.
    Archive,
    /// Messages, then tickets are deleted.
    Delete,
}

/// `--prune` and `--prune-sessions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneOptions {
    pub mode: PruneMode,
    /// Sessions gone from the source are deleted too (they cannot be archived).
    pub sessions: bool,
}

/// The source ids one stream's Gleap sink was handed in this run.
#[derive(Debug, Default)]
pub struct StreamSeen {
    ids: HashSet<String>,
    /// Records without a source id (dead-lettered by the sink): whose they are is unknown.
    without_id: u64,
    /// The records of other streams its records refer to (`refs`): stream -> source ids.
    referenced: HashMap<String, HashSet<String>>,
}

impl StreamSeen {
    /// A record reached the sink, with its source id if it has one.
    pub fn saw(&mut self, source_id: Option<String>) {
        match source_id {
            Some(id) => {
                self.ids.insert(id);
            }
            None => self.without_id += 1,
        }
    }

    /// A record of the stream refers to record `source_id` of `stream` (a ticket to its
    /// contact): that one is in use, whatever its own stream's source says.
    pub fn refers_to(&mut self, stream: &str, source_id: &str) {
        self.referenced
            .entry(stream.to_string())
            .or_default()
            .insert(source_id.to_string());
    }
}

/// Where the Gleap sinks of a `--prune` run leave what they saw, once their stream has
/// reached its end; and the records their records refer to.
#[derive(Debug, Default)]
pub struct SeenIds {
    by_stream: Mutex<HashMap<String, StreamSeen>>,
    /// Stream -> the source ids of its records that records seen refer to.
    referenced: Mutex<HashMap<String, HashSet<String>>>,
}

impl SeenIds {
    /// `stream` finished: its sink saw `seen`.
    pub fn finished(&self, stream: &str, mut seen: StreamSeen) {
        let mut referenced = self.referenced.lock().unwrap_or_else(|p| p.into_inner());
        for (other, ids) in std::mem::take(&mut seen.referenced) {
            referenced.entry(other).or_default().extend(ids);
        }
        drop(referenced);
        self.by_stream
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(stream.to_string(), seen);
    }

    /// Whether a record seen in this run refers to record `source_id` of `stream`.
    fn in_use(&self, stream: &str, source_id: &str) -> bool {
        self.referenced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(stream)
            .is_some_and(|ids| ids.contains(source_id))
    }

    fn take(&self, stream: &str) -> Option<StreamSeen> {
        self.by_stream
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(stream)
    }

    fn without_id(&self, stream: &str) -> Option<u64> {
        self.by_stream
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(stream)
            .map(|s| s.without_id)
    }
}

/// What the prune did, in the run report.
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    pub mode: PruneMode,
    /// `--prune-sessions`.
    pub sessions: bool,
    /// Why nothing was pruned (the run did not read its whole source).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_pruned: Vec<String>,
    /// Per stream, messages then tickets then sessions.
    pub streams: Vec<StreamPrune>,
    /// Requests the prune sent.
    pub requests: u64,
    /// Why the prune stopped part-way (run again to go on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What the prune did to one stream's records gone from the source.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StreamPrune {
    pub stream: String,
    pub entity: &'static str,
    /// Mapped records whose source ids did not reach the sink in this run.
    pub gone: u64,
    pub archived: u64,
    pub deleted: u64,
    /// Answered 404: deleted in Gleap already; the mapping is forgotten.
    pub already_gone: u64,
    /// Archived by an earlier run: no request.
    pub archived_earlier: u64,
    /// Gone from the source and left in Gleap: adopted or not known to be ours, messages
    /// when tickets are archived, sessions without `--prune-sessions`.
    pub left: u64,
    /// Of those left: records a record still in the source refers to (a session of a ticket).
    pub in_use: u64,
    /// Records Gleap refused to archive or delete, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<String>,
}

impl PruneReport {
    /// Nothing was pruned, for these reasons.
    pub fn not_run(options: PruneOptions, why: Vec<String>) -> PruneReport {
        PruneReport {
            mode: options.mode,
            sessions: options.sessions,
            not_pruned: why,
            streams: Vec::new(),
            requests: 0,
            error: None,
        }
    }

    /// The lines of the run's summary.
    pub fn human(&self) -> String {
        let mode = match self.mode {
            PruneMode::Archive => "archive",
            PruneMode::Delete => "delete",
        };
        if !self.not_pruned.is_empty() {
            return format!(
                "  prune ({mode}): nothing pruned: {}\n",
                self.not_pruned.join("; ")
            );
        }
        let width = self
            .streams
            .iter()
            .map(|s| s.stream.len())
            .max()
            .unwrap_or(0);
        let mut out = format!(
            "  prune ({mode}): records this pipeline created that are gone from the source; {}\n",
            plural(self.requests, "request", "requests")
        );
        for s in &self.streams {
            let mut parts = vec![
                format!("{} archived", count(s.archived)),
                format!("{} deleted", count(s.deleted)),
                format!("{} already gone", count(s.already_gone)),
                format!("{} left", count(s.left)),
            ];
            if s.in_use > 0 {
                parts.last_mut().expect("four parts").push_str(&format!(
                    " ({} still referred to by records in the source)",
                    count(s.in_use)
                ));
            } else if s.left > 0 {
                parts.last_mut().expect("four parts").push_str(match (s.entity, self.mode) {
                    ("messages", PruneMode::Archive) => {
                        " (archiving leaves messages: --prune=delete deletes them)"
                    }
                    ("sessions", _) if !self.sessions => {
                        " (sessions are deleted only with --prune-sessions, and only those this pipeline created)"
                    }
                    _ => " (not created by this pipeline: adopted, or made before gleap-etl recorded it)",
                });
            }
            if s.archived_earlier > 0 {
                parts.push(format!(
                    "{} archived by an earlier run",
                    count(s.archived_earlier)
                ));
            }
            out.push_str(&format!(
                "    {:<width$}  {} gone: {}\n",
                s.stream,
                plural(s.gone, s.entity_singular(), s.entity),
                parts.join(", ")
            ));
            for f in &s.failed {
                out.push_str(&format!("    {:<width$}  not pruned: {f}\n", ""));
            }
        }
        if let Some(e) = &self.error {
            out.push_str(&format!("    stopped: {e}\n"));
        }
        out
    }
}

impl StreamPrune {
    fn entity_singular(&self) -> &'static str {
        self.entity.strip_suffix('s').unwrap_or(self.entity)
    }
}

/// The streams a prune looks at: Gleap sinks of sessions, tickets and messages, in the
/// order their records are removed (messages, tickets, sessions).
fn pruned_streams(pipeline: &Pipeline) -> Vec<(String, Entity)> {
    let mut streams: Vec<(String, Entity)> = pipeline
        .config
        .streams
        .iter()
        .filter_map(|s| Some((s.name.value.clone(), s.sink.gleap_records()?.entity)))
        .collect();
    streams.sort_by_key(|(_, entity)| rank(*entity));
    streams
}

/// Why this run must prune nothing: it did not read its whole source. Empty: prune.
pub fn blockers(
    pipeline: &Pipeline,
    reports: &[StreamReport],
    run_error: Option<&Error>,
    seen: &SeenIds,
) -> Vec<String> {
    let mut why = Vec::new();
    match run_error {
        Some(Error::Interrupted) => {
            why.push("the run was interrupted (SIGINT/SIGTERM) before it read its whole source".into())
        }
        Some(Error::TooManyErrors { max, .. }) => why.push(format!(
            "more than {max} records went to the dead-letter file (--max-errors), so the run stopped before it read its whole source"
        )),
        _ => {}
    }
    if !why.is_empty() {
        return why;
    }
    let streams = pruned_streams(pipeline);
    if streams.is_empty() {
        return vec!["no stream writes sessions, tickets or messages to Gleap".into()];
    }
    for (name, _) in &streams {
        if let Some(part) = pipeline
            .config
            .streams
            .iter()
            .find(|s| &s.name.value == name)
            .and_then(|s| s.source.reads_part())
        {
            why.push(format!(
                "stream `{name}`'s source {part}: a run does not read all of it"
            ));
            continue;
        }
        let Some(r) = reports.iter().find(|r| &r.name == name) else {
            why.push(format!("stream `{name}` did not run"));
            continue;
        };
        match r.status {
            StreamStatus::Failed => why.push(format!("stream `{name}` failed")),
            StreamStatus::Skipped | StreamStatus::NotInSample => {
                why.push(format!("stream `{name}` did not run"))
            }
            _ => {}
        }
        if !r.status.finished() {
            continue;
        }
        if r.skipped > 0 || r.resumed_after.is_some() {
            why.push(format!(
                "stream `{name}` resumed an interrupted run and did not see the {} before its checkpoint: prune at the next full run",
                plural(r.skipped, "record", "records")
            ));
        }
        let before_sink = r.source_rejected + r.transform_rejected;
        if before_sink > 0 {
            why.push(format!(
                "stream `{name}`: {} dead-lettered before the sink (their ids are not known, so they might be among the records gone from the source)",
                plural(before_sink, "record", "records")
            ));
        }
        match seen.without_id(name) {
            None => why.push(format!("stream `{name}` did not reach its end")),
            Some(0) => {}
            Some(n) => why.push(format!(
                "stream `{name}`: {} without a source id reached the sink (whose they are is not known)",
                plural(n, "record", "records")
            )),
        }
    }
    if why.is_empty()
        && let Some(e) = run_error
    {
        why.push(format!("the run failed: {e}"));
    }
    why
}

/// Archives or deletes what this pipeline created that is gone from the source (the run
/// read its whole source: [`blockers`] found nothing). Stops at an error that stops every
/// request, or when `cancel` is set; the report says so, and the next run goes on. The
/// error it stopped at comes back with the report.
pub fn prune(
    pipeline: &Pipeline,
    gleap: &GleapRun,
    options: PruneOptions,
    seen: &SeenIds,
    cancel: &AtomicBool,
) -> (PruneReport, Option<Error>) {
    let mut report = PruneReport::not_run(options, Vec::new());
    let mut stopped = None;
    let counters = RequestCounters::default();
    for (stream, entity) in pruned_streams(pipeline) {
        let mut s = StreamPrune {
            stream: stream.clone(),
            entity: entity.name(),
            ..Default::default()
        };
        let result = prune_stream(gleap, options, seen, cancel, &counters, entity, &mut s);
        report.streams.push(s);
        if let Err(e) = result {
            let e = e.hinted("the next full run goes on");
            report.error = Some(match e {
                Error::Interrupted => "interrupted; the next full run goes on".into(),
                ref e => e.to_string(),
            });
            stopped = Some(e);
            break;
        }
    }
    report.requests = counters.requests.load(Ordering::Relaxed);
    (report, stopped)
}

#[allow(clippy::too_many_arguments)]
fn prune_stream(
    gleap: &GleapRun,
    options: PruneOptions,
    seen: &SeenIds,
    cancel: &AtomicBool,
    counters: &RequestCounters,
    entity: Entity,
    s: &mut StreamPrune,
) -> Result<()> {
    let store = &gleap.store;
    let stream_seen = seen
        .take(&s.stream)
        .ok_or_else(|| Error::internal(format!("stream `{}` did not reach its end", s.stream)))?;
    let archived = store.archived(&s.stream)?;
    let mut to_archive: Vec<Provenance> = Vec::new();
    let mut to_delete: Vec<Provenance> = Vec::new();
    for p in store.provenance(&s.stream)? {
        if stream_seen.ids.contains(&p.source_id) {
            continue;
        }
        s.gone += 1;
        if p.origin != Some(Origin::Created) {
            s.left += 1;
            continue;
        }
        // Gone from its own stream's source, but a record still in the source refers to it
        // (a ticket to a contact the users export no longer has): kept.
        if seen.in_use(&s.stream, &p.source_id) {
            s.left += 1;
            s.in_use += 1;
            continue;
        }
        match (entity, options.mode) {
            (Entity::Tickets, PruneMode::Archive) => {
                if archived.get(&p.source_id) == Some(&p.gleap_id) {
                    s.archived_earlier += 1;
                } else {
                    to_archive.push(p);
                }
            }
            (Entity::Tickets | Entity::Messages, PruneMode::Delete) => to_delete.push(p),
            (Entity::Sessions, _) if options.sessions => to_delete.push(p),
            _ => s.left += 1,
        }
    }
    for (change, records) in [(Change::Delete, &to_delete), (Change::Archive, &to_archive)] {
        let mut done = Changed::default();
        let result = change_mapped(
            &gleap.runtime,
            &gleap.client,
            counters,
            store,
            (&s.stream, entity),
            change,
            records,
            &mut done,
            Some(cancel),
        );
        match change {
            Change::Delete => s.deleted += done.done,
            Change::Archive => s.archived += done.done,
        }
        s.already_gone += done.already_gone;
        s.failed.extend(done.failed);
        result?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline() -> Pipeline {
        let yaml = "version: 1
name: p
streams:
  - name: users
    source: { csv: { path: users.csv } }
    sink: { gleap: { entity: sessions } }
  - name: tickets
    source: { csv: { path: tickets.csv } }
    sink: { gleap: { entity: tickets, refs: { session: users } } }
  - name: out
    source: { csv: { path: tickets.csv } }
    sink: { jsonl: { path: out.jsonl } }
";
        Pipeline::parse(
            yaml,
            std::path::Path::new("p.yaml"),
            &crate::config::ProcessEnv,
        )
        .unwrap()
    }

    fn finished(name: &str) -> StreamReport {
        StreamReport {
            name: name.into(),
            status: StreamStatus::Ok,
            ..Default::default()
        }
    }

    /// Both Gleap streams finished, the users' sink saw `without_id` records without an id.
    fn seen(without_id: u64) -> SeenIds {
        let seen = SeenIds::default();
        let mut users = StreamSeen::default();
        users.saw(Some("u1".into()));
        for _ in 0..without_id {
            users.saw(None);
        }
        seen.finished("users", users);
        seen.finished("tickets", StreamSeen::default());
        seen
    }

    #[test]
    fn a_run_that_read_its_whole_source_prunes() {
        let reports = [finished("users"), finished("tickets")];
        assert!(blockers(&pipeline(), &reports, None, &seen(0)).is_empty());
        // A stream that does not write to Gleap is not looked at; tickets before sessions.
        let names: Vec<String> = pruned_streams(&pipeline())
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["tickets", "users"]);
    }

    /// A source read incrementally or since an instant holds more than a run reads: what a
    /// run did not see is not gone.
    #[test]
    fn a_source_read_in_part_prunes_nothing() {
        for option in ["incremental: true", "since: \"2024-01-01\""] {
            let yaml = format!(
                "version: 1
name: p
streams:
  - name: tickets
    source: {{ gleap: {{ entity: tickets, {option} }} }}
    sink: {{ gleap: {{ entity: tickets }} }}
"
            );
            let p = Pipeline::parse(
                &yaml,
                std::path::Path::new("p.yaml"),
                &crate::config::ProcessEnv,
            )
            .unwrap();
            let seen = SeenIds::default();
            seen.finished("tickets", StreamSeen::default());
            let why = blockers(&p, &[finished("tickets")], None, &seen);
            assert_eq!(why.len(), 1, "{option}: {why:?}");
            assert!(
                why[0].starts_with("stream `tickets`'s source reads")
                    && why[0].ends_with("a run does not read all of it"),
                "{option}: {why:?}"
            );
        }
    }

    #[test]
    fn a_run_that_did_not_read_its_whole_source_says_why() {
        let p = pipeline();
        let why = |reports: &[StreamReport], error: Option<&Error>, seen: &SeenIds| {
            blockers(&p, reports, error, seen)
        };
        assert_eq!(
            why(&[], Some(&Error::Interrupted), &seen(0)),
            ["the run was interrupted (SIGINT/SIGTERM) before it read its whole source"]
        );
        let too_many = Error::TooManyErrors {
            count: 4,
            max: 3,
            file: "dl.jsonl".into(),
        };
        assert_eq!(
            why(&[], Some(&too_many), &seen(0)),
            [
                "more than 3 records went to the dead-letter file (--max-errors), so the run stopped before it read its whole source"
            ]
        );
        let mut resumed = finished("tickets");
        resumed.skipped = 7;
        resumed.resumed_after = Some(6);
        let mut rejected = finished("users");
        rejected.source_rejected = 1;
        rejected.transform_rejected = 1;
        assert_eq!(
            why(&[rejected, resumed], None, &seen(0)),
            [
                "stream `tickets` resumed an interrupted run and did not see the 7 records before its checkpoint: prune at the next full run",
                "stream `users`: 2 records dead-lettered before the sink (their ids are not known, so they might be among the records gone from the source)",
            ]
        );
        let mut failed = finished("tickets");
        failed.status = StreamStatus::Failed;
        assert_eq!(
            why(&[finished("users"), failed], None, &seen(1)),
            [
                "stream `tickets` failed",
                "stream `users`: 1 record without a source id reached the sink (whose they are is not known)",
            ]
        );
        // A stream whose sink did not hand over what it saw did not reach its end.
        let partial = SeenIds::default();
        partial.finished("users", StreamSeen::default());
        assert_eq!(
            why(&[finished("users"), finished("tickets")], None, &partial),
            ["stream `tickets` did not reach its end"]
        );
    }
}
