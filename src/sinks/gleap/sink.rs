//! The running Gleap sink. `write` (on the engine's writer thread) prepares a record and, when
//! it changed, queues a job in its lane; lanes run as tasks on the run's async runtime and
//! their requests go through the shared client (rate limit, concurrency, retries). A
//! background task commits confirmations and the checkpoint to the state store every quarter
//! second.
//!
//! A lane runs its jobs one at a time, in the order they came. Records with the same source
//! id share a lane, and so do the messages of one ticket: Gleap cannot back-date a message,
//! so the order they are created in is the order an agent reads the conversation in. A
//! message is sent only once the one before it in its ticket is confirmed (or
//! dead-lettered), whatever retries and look-ups that took; different lanes run side by
//! side, so the quota stays in use. A message created in this run before one of its ticket
//! that an earlier run created (an older comment added to the input later) cannot be put in
//! its place: the report counts these (`out_of_order`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::lookup::{Cached, LookUp, Prefetched, prefetch, session_has, verify};
use super::tracker::SeqTracker;
use super::{
    Entity, GleapRun, GleapSinkConfig, PrefetchSetting, Prepared, Preparer, SessionKey,
    matches_remote,
};
use crate::dead_letter::DeadLetter;
use crate::error::{Error, Result};
use crate::gleap::answer;
use crate::gleap::client::{
    Answer, CallError, GleapClient, MAX_PAGE_SIZE, RequestCounters, SEQ_HEADER, backoff,
};
use crate::gleap::model::field;
use crate::gleap::paging::list_all;
use crate::record::{Position, Record};
use crate::sinks::{Sink, SinkContext, SinkSummary};
use crate::state::{Commit, MapEntry, Origin, StateStore};

/// Jobs queued or in flight at once (they wait for the rate limit and their lane, not for
/// memory): enough lanes side by side to keep the quota in use behind a long thread.
const MAX_JOBS: usize = 4096;
const COMMIT_EVERY: Duration = Duration::from_millis(250);
/// `prefetch: auto`: records looked up before the first page of sessions is read; each
/// further record waits for a page to be read, then is looked up in the sessions if they are
/// all read, else on its own. A few new contacts cost a look-up each and no page; a large
/// import has read every page by the time it made this many look-ups plus one a page (about
/// twice what the cheaper of the two would have cost, at most), and costs nothing more.
const AUTO_LOOKUPS_BEFORE_PREFETCH: u64 = 4;

/// What became of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Done {
    Created,
    /// Found in Gleap after a lost answer or a killed run: created by an earlier attempt.
    Adopted,
    Updated,
    Unchanged,
    /// Created again: Gleap answered 404 for the id the state store had.
    Recreated,
}

/// Why a record could not be written; `keep_intent` when its create may have happened;
/// `stop` when the stream cannot go on safely (the record is left for the next run).
struct Failure {
    reason: String,
    keep_intent: bool,
    stop: bool,
}

impl Failure {
    fn from_call(what: &str, e: CallError) -> Failure {
        let keep_intent = !matches!(e, CallError::Rejected { .. });
        Failure {
            stop: matches!(e, CallError::Fatal(_)),
            reason: format!("{what}: {e}"),
            keep_intent,
        }
    }
}

struct Job {
    prepared: Prepared,
    record: Record,
    position: Position,
    lane: String,
    /// Held until the job is done ([`MAX_JOBS`]).
    _permit: OwnedSemaphorePermit,
}

#[derive(Default)]
struct Counts {
    created: u64,
    updated: u64,
    unchanged: u64,
    rejected: u64,
    out_of_order: u64,
    recreated: u64,
    /// Dead-lettered because a record they reference is gone from Gleap (its mapping is
    /// forgotten: the next run re-creates both).
    parent_gone: u64,
    /// Archived by `run --prune`, back in the source: updated with `archived: false`.
    unarchived: u64,
}

struct State {
    map: HashMap<String, MapEntry>,
    mapped_ids: HashSet<String>,
    intents: HashSet<String>,
    tracker: SeqTracker,
    pending: Commit,
    /// Busy lanes, each with the jobs waiting behind the one running.
    lanes: HashMap<String, VecDeque<Job>>,
    /// Jobs queued or running.
    jobs: usize,
    counts: Counts,
    /// Messages: per ticket lane (by hash), how many this run created since the last message
    /// that was there before it; `None` when nothing was there before the run.
    created_since_existing: Option<HashMap<u64, u64>>,
    /// Sessions: source ids written in this run (the prefetch may not show them).
    written_this_run: HashSet<String>,
    /// Sessions whose mapped id the prefetch does not hold (deleted in Gleap): created again.
    gone: HashSet<String>,
    /// Source ids of records `run --prune` archived: sent again, with `archived: false`,
    /// even when unchanged.
    archived: HashSet<String>,
    /// Why the stream must stop, until the engine hears it (`write`, `finish`).
    fatal: Option<Error>,
    /// The stream is stopping on an error: lanes start nothing more.
    failed: bool,
    stopping: bool,
}

impl State {
    /// The stream must stop: the first error is what the engine hears.
    fn fail(&mut self, e: Error) {
        self.failed = true;
        self.fatal.get_or_insert(e);
    }

    /// A record of `lane` that was in Gleap before this run passed in lane order: the
    /// messages this run created before it in that ticket are out of order.
    fn existing_passed(&mut self, entity: Entity, lane: &str) {
        if entity != Entity::Messages {
            return;
        }
        if let Some(created) = &mut self.created_since_existing
            && let Some(n) = created.remove(&lane_hash(lane))
        {
            self.counts.out_of_order += n;
        }
    }

    fn created(&mut self, entity: Entity, lane: &str) {
        if entity != Entity::Messages {
            return;
        }
        if let Some(created) = &mut self.created_since_existing {
            *created.entry(lane_hash(lane)).or_default() += 1;
        }
    }
}

fn lane_hash(lane: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(lane.as_bytes())
}

/// The lane of a record: its ticket for a message, else its source id.
fn lane_of(entity: Entity, prepared: &Prepared) -> String {
    match (entity, prepared.body.get("ticket").and_then(Value::as_str)) {
        (Entity::Messages, Some(ticket)) => format!("ticket {ticket}"),
        _ => prepared.source_id.clone(),
    }
}

struct Inner {
    stream: String,
    entity: Entity,
    key: SessionKey,
    preparer: Preparer,
    /// `agents:`: who was matched with a team member, for the report.
    agents: Option<Arc<super::agents::Agents>>,
    client: Arc<GleapClient>,
    store: Arc<StateStore>,
    context: SinkContext,
    counters: RequestCounters,
    /// Existing sessions by key, once prefetched.
    prefetched: std::sync::OnceLock<Prefetched>,
    /// `prefetch: auto`: a permit for each page the prefetch may read (one per record
    /// beyond [`AUTO_LOOKUPS_BEFORE_PREFETCH`]); closed when the stream ends.
    prefetch_pace: Option<Arc<Semaphore>>,
    /// Records that needed a look-up.
    lookups: std::sync::atomic::AtomicU64,
    /// Pages the prefetch has read; `u64::MAX` once it ended (read or given up).
    pages_read: tokio::sync::watch::Sender<u64>,
    /// The prefetch's requests (also in the stream's).
    prefetch_counters: RequestCounters,
    /// Why sessions were not prefetched although the pipeline asked (Gleap's paging).
    prefetch_skipped: Mutex<Option<String>>,
    state: Mutex<State>,
    idle: Notify,
    slots: Arc<Semaphore>,
    max_attempts: u32,
    lookup_settle: Duration,
    intent_writer: IntentWriter,
    /// `--adopt-existing`: every record the store does not know is looked up first.
    adopt_existing: bool,
    /// A tickets stream the state store knows nothing of: before its first create, whether
    /// Gleap holds a ticket of an earlier run ([`check_lost_state`]).
    lost_state_check: Option<tokio::sync::OnceCell<std::result::Result<(), String>>>,
    /// Set once a look-up found its filter (`customData.importId`, `ticket`) ignored
    /// ([`Inner::filter_ignored`]: warned once).
    filter_ignored_warned: AtomicBool,
    /// Gleap ids of referenced records found gone from Gleap.
    gone_parents: Mutex<HashSet<String>>,
    /// `attachments: rehost`: files re-hosted before a record is sent.
    rehoster: Option<crate::files::Rehoster>,
}

/// Writes intents in groups: a create waits for the transaction that holds its intent, and
/// one transaction takes every intent that came while the last one was being written. With
/// many creates in flight this turns one SQLite commit per create into one per group (the
/// import's CPU time fell by about a third), and an intent is still durable before its
/// request goes out.
struct IntentWriter {
    sender: Mutex<std::sync::mpsc::Sender<IntentRequest>>,
    /// The state store's file, to name in its errors.
    store: PathBuf,
}

/// A source id and where to answer: a failed write answers its state store error's message.
type IntentRequest = (
    String,
    tokio::sync::oneshot::Sender<std::result::Result<(), String>>,
);

/// Intents per transaction at most.
const INTENT_GROUP: usize = 1024;

impl IntentWriter {
    fn start(store: Arc<StateStore>, stream: String) -> Result<IntentWriter> {
        let (sender, receiver) = std::sync::mpsc::channel::<IntentRequest>();
        let path = store.path().to_path_buf();
        std::thread::Builder::new()
            .name(format!("intents-{stream}"))
            .spawn(move || {
                while let Ok(first) = receiver.recv() {
                    let mut group = vec![first];
                    while group.len() < INTENT_GROUP {
                        match receiver.try_recv() {
                            Ok(more) => group.push(more),
                            Err(_) => break,
                        }
                    }
                    let ids: Vec<String> = group.iter().map(|(id, _)| id.clone()).collect();
                    let result = store.add_intents(&stream, &ids).map_err(|e| match e {
                        Error::State { message, .. } => message,
                        e => e.to_string(),
                    });
                    for (_, reply) in group {
                        let _ = reply.send(result.clone());
                    }
                }
            })
            .map_err(|e| Error::internal(format!("cannot start the intent writer: {e}")))?;
        Ok(IntentWriter {
            sender: Mutex::new(sender),
            store: path,
        })
    }

    /// Records the intent to create `source_id`; returns once it is committed.
    async fn record(&self, source_id: String) -> Result<()> {
        let stopped = || Error::internal("the intent writer stopped");
        let (reply, committed) = tokio::sync::oneshot::channel();
        self.sender
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send((source_id, reply))
            .map_err(|_| stopped())?;
        committed
            .await
            .map_err(|_| stopped())?
            .map_err(|message| Error::State {
                path: self.store.clone(),
                message,
            })
    }
}

pub struct GleapSink {
    inner: Arc<Inner>,
    runtime: Arc<tokio::runtime::Runtime>,
    resume_after: Option<u64>,
    committer: Option<tokio::task::JoinHandle<()>>,
    /// `run --prune`: the source ids that reached the sink, handed to the run's registry
    /// when the stream finishes ([`crate::prune`]).
    seen: Option<(Arc<crate::prune::SeenIds>, crate::prune::StreamSeen)>,
}

impl GleapSinkConfig {
    pub fn build(&self, context: SinkContext) -> Result<GleapSink> {
        let run: Arc<GleapRun> = context
            .gleap
            .clone()
            .ok_or_else(|| Error::internal("a Gleap sink needs the run's Gleap client"))?;
        let stream = context.stream.clone();
        let adopt_existing = run.adopt_existing;
        // Lane tasks hold the sink's state; it must not hold the run (and so the runtime
        // they run on), or the last task to finish would drop the runtime from inside it.
        let mut context = context;
        context.gleap = None;
        let store = run.store.clone();
        let checkpoint = store.checkpoint(&stream)?;
        let never_ran = checkpoint.is_none();
        let resume_after = match &checkpoint {
            Some(cp) if !cp.complete && cp.fingerprint == context.input_fingerprint => {
                cp.done_through
            }
            _ => {
                store.restart_stream(&stream, &context.input_fingerprint)?;
                None
            }
        };
        let map = store.load_map(&stream)?;
        let archived = match self.entity {
            Entity::Tickets => store.archived(&stream)?.into_keys().collect(),
            _ => HashSet::new(),
        };
        let lost_state_check =
            (self.entity == Entity::Tickets && never_ran && map.is_empty() && !adopt_existing)
                .then(tokio::sync::OnceCell::new);
        let mapped_ids = map.values().map(|e| e.gleap_id.clone()).collect();
        let intents = store.intents(&stream)?;
        let counters = RequestCounters::default();
        let prefetch_counters = RequestCounters::default();
        let mut prefetch_skipped = None;
        let prefetched = std::sync::OnceLock::new();
        let sessions = self.entity == Entity::Sessions;
        if sessions && self.prefetch == PrefetchSetting::Flag(true) {
            match run.runtime.block_on(prefetch(
                &run.client,
                self.key(),
                &prefetch_counters,
                None,
                || {},
            )) {
                Ok(p) => {
                    let _ = prefetched.set(p);
                }
                // Gleap's paging cannot be followed: each record is looked up instead.
                Err(e) if e.is_paging() => prefetch_skipped = Some(paging_fallback(&stream, &e)),
                Err(e) => return Err(Error::paging("prefetching sessions", &e)),
            }
        }
        let prefetch_pace = (sessions && self.prefetch == PrefetchSetting::Auto)
            .then(|| Arc::new(Semaphore::new(0)));
        let created_since_existing =
            (self.entity == Entity::Messages && !map.is_empty()).then(HashMap::new);
        let settings = run.client.settings();
        let rehoster = match self.attachments {
            crate::files::AttachmentsMode::Link => None,
            crate::files::AttachmentsMode::Rehost => Some(crate::files::Rehoster::new(
                &self.files,
                store.clone(),
                run.client.clone(),
            )?),
        };
        let mut preparer = Preparer::new(&stream, self, &store)?;
        let agents = match &self.agents {
            Some(config) => {
                let team = run.runtime.block_on(run.team.get(&run.client));
                let agents = Arc::new(super::agents::Agents::new(config, self.entity, team)?);
                preparer = preparer.with_agents(agents.clone());
                Some(agents)
            }
            None => None,
        };
        let inner = Arc::new(Inner {
            rehoster,
            entity: self.entity,
            key: self.key(),
            preparer,
            agents,
            client: run.client.clone(),
            max_attempts: settings.max_attempts,
            lookup_settle: settings.lookup_settle,
            intent_writer: IntentWriter::start(store.clone(), stream.clone())?,
            adopt_existing,
            lost_state_check,
            filter_ignored_warned: AtomicBool::new(false),
            gone_parents: Mutex::new(HashSet::new()),
            store,
            context,
            counters,
            prefetched,
            prefetch_pace: prefetch_pace.clone(),
            lookups: Default::default(),
            pages_read: tokio::sync::watch::Sender::new(0),
            prefetch_counters,
            prefetch_skipped: Mutex::new(prefetch_skipped),
            state: Mutex::new(State {
                map,
                mapped_ids,
                intents,
                tracker: SeqTracker::default(),
                pending: Commit::default(),
                lanes: HashMap::new(),
                jobs: 0,
                counts: Counts::default(),
                created_since_existing,
                written_this_run: HashSet::new(),
                gone: HashSet::new(),
                archived,
                fatal: None,
                failed: false,
                stopping: false,
            }),
            idle: Notify::new(),
            slots: Arc::new(Semaphore::new(MAX_JOBS)),
            stream,
        });
        let committer = run.runtime.spawn(commit_every(inner.clone()));
        if let Some(pace) = prefetch_pace {
            run.runtime
                .spawn(prefetch_when_it_pays(inner.clone(), pace));
        }
        Ok(GleapSink {
            inner,
            runtime: run.runtime.clone(),
            resume_after,
            committer: Some(committer),
            seen: run
                .prune_seen
                .clone()
                .map(|registry| (registry, Default::default())),
        })
    }
}

impl Inner {
    /// A look-up found Gleap ignoring its filter and reads every page instead: said once
    /// per stream.
    fn filter_ignored(&self, what: String) {
        if !self.filter_ignored_warned.swap(true, Ordering::Relaxed) {
            tracing::warn!("stream `{}`: {what}", self.stream);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Commits what is confirmed and how far the checkpoint got; dead letters are flushed
    /// first, so the checkpoint never passes a record whose dead letter could be lost.
    fn commit(&self) -> Result<()> {
        let mut commit = {
            let mut state = self.lock();
            let mut commit = std::mem::take(&mut state.pending);
            commit.done_through = state.tracker.done_through();
            commit
        };
        if commit.is_empty() {
            return Ok(());
        }
        self.context.dead_letters.flush()?;
        if let Err(e) = self.store.commit(&self.stream, &commit) {
            // Put it back for the next attempt.
            let mut state = self.lock();
            state.pending.confirmed.append(&mut commit.confirmed);
            state.pending.cleared.append(&mut commit.cleared);
            state.pending.unarchived.append(&mut commit.unarchived);
            state.pending.origins.extend(commit.origins);
            return Err(e);
        }
        Ok(())
    }

    /// The prefetched sessions for a record that needs a look-up, if they are all read. With
    /// `prefetch: auto`, a record past the first few pays for a page of the prefetch and
    /// waits until it is read.
    async fn prefetched_for_lookup(&self) -> Option<&Prefetched> {
        if let Some(p) = self.prefetched.get() {
            return Some(p);
        }
        let pace = self.prefetch_pace.as_ref()?;
        let n = self.lookups.fetch_add(1, Ordering::Relaxed) + 1;
        if n > AUTO_LOOKUPS_BEFORE_PREFETCH {
            pace.add_permits(1);
            let page = n - AUTO_LOOKUPS_BEFORE_PREFETCH;
            let _ = self
                .pages_read
                .subscribe()
                .wait_for(|&read| read >= page)
                .await;
        }
        self.prefetched.get()
    }

    /// Whether a session mapped by an earlier run is missing from the prefetched sessions
    /// (deleted in Gleap); never for one this run wrote, which the prefetch may not show.
    fn gone_from_prefetch(&self, state: &State, p: &Prepared) -> bool {
        self.entity == Entity::Sessions
            && !state.written_this_run.contains(&p.source_id)
            && self
                .prefetched
                .get()
                .is_some_and(|index| index.get(&p.source_id, &p.body) == Cached::Absent)
    }

    /// The prefetch reads nothing more.
    fn stop_prefetch(&self) {
        if let Some(pace) = &self.prefetch_pace {
            pace.close();
        }
    }

    fn fail(&self, e: Error) {
        self.stop_prefetch();
        self.counters.stopped.store(true, Ordering::Relaxed);
        self.lock().fail(e);
    }

    /// The stream stops on `e`: its requests not sent yet are not sent; when `e` stops the
    /// whole run (too many dead letters), no stream's are.
    fn stopped(&self, e: &Error) {
        self.counters.stopped.store(true, Ordering::Relaxed);
        if matches!(e, Error::TooManyErrors { .. }) {
            self.client.halt(e.to_string());
        }
    }
}

/// Why a prefetch was given up for look-ups (Gleap's paging cannot be followed), logged.
fn paging_fallback(stream: &str, e: &crate::gleap::paging::PagingError) -> String {
    let reason = format!("sessions not prefetched, each looked up instead (more requests): {e}");
    tracing::warn!("stream `{stream}`: {reason}");
    reason
}

/// `prefetch: auto`: reads the sessions a page at a time as look-ups pay for them
/// ([`AUTO_LOOKUPS_BEFORE_PREFETCH`]); once every page is read, records are looked up in it.
async fn prefetch_when_it_pays(inner: Arc<Inner>, pace: Arc<Semaphore>) {
    let read = prefetch(
        &inner.client,
        inner.key,
        &inner.prefetch_counters,
        Some(&pace),
        || inner.pages_read.send_modify(|n| *n += 1),
    )
    .await;
    match read {
        Ok(p) => {
            tracing::debug!(
                "stream `{}`: {} sessions prefetched after {} look-ups",
                inner.stream,
                p.len(),
                inner.lookups.load(Ordering::Relaxed)
            );
            let _ = inner.prefetched.set(p);
        }
        Err(e) if e.is_paging() => {
            *inner
                .prefetch_skipped
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(paging_fallback(&inner.stream, &e));
        }
        // The stream ended first, or a request failed: records go on being looked up.
        Err(_) => {}
    }
    inner.pages_read.send_replace(u64::MAX);
}

async fn commit_every(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(COMMIT_EVERY);
    loop {
        tick.tick().await;
        if inner.lock().stopping {
            return;
        }
        if let Err(e) = inner.commit() {
            inner.fail(e);
        }
    }
}

/// Runs the jobs of a lane one after the other, in the order they came, until it is empty.
/// Once the stream has failed, what waits in the lane is left for the next run.
async fn run_lane(inner: Arc<Inner>, mut job: Job) {
    let mut guard = LaneGuard {
        inner: inner.clone(),
        lane: Some(job.lane.clone()),
    };
    loop {
        let files = rehost(&inner, &mut job).await;
        let outcome = process(&inner, &job).await;
        if outcome.is_ok() {
            files_kept_as_links(&inner, &job, files);
        }
        match finish_job(&inner, job, outcome) {
            Some(next) => job = next,
            None => break,
        }
    }
    guard.lane = None;
    inner.idle.notify_waiters();
}

/// `attachments: rehost`: the job's files re-hosted and its body rewritten to Gleap's URLs;
/// the files kept with their link, and why. A record with files gets a hash of what is
/// sent, salted so that it never equals the hash `write` computes of the record as it came:
/// such a record always reaches its lane, where its files cost no request once had, and a
/// file that could not be had is tried again on the next run.
async fn rehost(inner: &Inner, job: &mut Job) -> Vec<(String, String)> {
    let Some(rehoster) = &inner.rehoster else {
        return Vec::new();
    };
    let mut body = Value::Object(std::mem::take(&mut job.prepared.body));
    let outcome = rehoster.rehost(&mut body).await;
    if let Value::Object(map) = body {
        job.prepared.body = map;
    }
    if outcome.found > 0 {
        job.prepared.hash = super::sent_hash(inner.entity, &job.prepared.body) ^ FILES_SALT;
        job.record = job.prepared.body.clone();
    }
    outcome.failed
}

/// Marks hashes of records whose files were re-hosted.
const FILES_SALT: u128 = 0x6669_6c65_735f_7265_686f_7374_6564_0001;

/// A record sent with some files' original links: a dead letter for each, saying so.
fn files_kept_as_links(inner: &Inner, job: &Job, failed: Vec<(String, String)>) {
    for (url, reason) in failed {
        let letter = DeadLetter::new(
            &inner.stream,
            &job.position,
            "sink (files)",
            format!(
                "the {} was sent with the file's original URL {url}: it could not be re-hosted: {reason}",
                inner.entity.singular()
            ),
            Value::Object(job.record.clone()),
        );
        if let Err(e) = inner.context.dead_letters.reject(letter) {
            if matches!(e, Error::TooManyErrors { .. }) {
                inner.stopped(&e);
            }
            inner.lock().fail(e);
        }
    }
}

/// A lane whose task panicked: its jobs no longer count and the stream fails, or the sink
/// would wait for them for ever.
struct LaneGuard {
    inner: Arc<Inner>,
    /// The lane, until its task ends normally.
    lane: Option<String>,
}

impl Drop for LaneGuard {
    fn drop(&mut self) {
        let Some(lane) = self.lane.take() else {
            return;
        };
        {
            let mut state = self.inner.lock();
            let waiting = state.lanes.remove(&lane).map_or(0, |q| q.len());
            state.jobs = state.jobs.saturating_sub(1 + waiting);
            state.fail(Error::internal(format!(
                "stream `{}`: a request task panicked; the records it held are left for the next run",
                self.inner.stream
            )));
        }
        self.inner.idle.notify_waiters();
    }
}

fn finish_job(
    inner: &Inner,
    job: Job,
    outcome: std::result::Result<(String, Done), Failure>,
) -> Option<Job> {
    let source_id = &job.prepared.source_id;
    let entity = inner.entity;
    // Once the run stopped sending, a failure is that, not something wrong with the record.
    let outcome = outcome.map_err(|mut failure| {
        if let Some(reason) = inner.client.halted() {
            failure.stop = true;
            failure.reason = reason;
        }
        failure
    });
    let mut state = inner.lock();
    let mut done = true;
    match outcome {
        Ok((gleap_id, how)) => {
            let entry = MapEntry {
                gleap_id: gleap_id.clone(),
                hash: job.prepared.hash,
            };
            // An intent: a create of ours went out (this run, or a killed one), so the
            // record found or made is ours; else one the map did not point to was found in
            // Gleap and taken over (a session by userId, `--adopt-existing`).
            let had_intent = state.intents.remove(source_id);
            let previous = state.map.insert(source_id.clone(), entry.clone());
            let origin = if had_intent || matches!(how, Done::Created | Done::Recreated) {
                Some(Origin::Created)
            } else if previous.is_none_or(|p| p.gleap_id != gleap_id) {
                Some(Origin::Adopted)
            } else {
                None
            };
            if let Some(origin) = origin {
                state.pending.origins.insert(source_id.clone(), origin);
            }
            state.mapped_ids.insert(gleap_id);
            state.pending.confirmed.push((source_id.clone(), entry));
            if state.archived.remove(source_id) {
                state.pending.unarchived.push(source_id.clone());
                state.counts.unarchived += 1;
            }
            if entity == Entity::Sessions {
                state.written_this_run.insert(source_id.clone());
            }
            let how = match how {
                Done::Created if state.gone.remove(source_id) => Done::Recreated,
                how => how,
            };
            match how {
                Done::Created | Done::Adopted => {
                    state.counts.created += 1;
                    state.created(entity, &job.lane);
                }
                Done::Updated => {
                    state.counts.updated += 1;
                    state.existing_passed(entity, &job.lane);
                }
                Done::Unchanged => {
                    state.counts.unchanged += 1;
                    state.existing_passed(entity, &job.lane);
                }
                Done::Recreated => {
                    state.counts.recreated += 1;
                    state.created(entity, &job.lane);
                }
            }
        }
        Err(failure) if failure.stop => {
            // Not done and not dead-lettered: the next run takes the record up again.
            done = false;
            // What stops a stream is Gleap's: a key or project refused, no answer, a list
            // that cannot be followed, a record whose presence cannot be told.
            state.fail(Error::Remote {
                context: format!("stream `{}`", inner.stream),
                status: None,
                retryable: false,
                message: failure.reason,
            });
        }
        Err(failure) => {
            if !failure.keep_intent && state.intents.remove(source_id) {
                state.pending.cleared.push(source_id.clone());
            }
            let letter = DeadLetter::new(
                &inner.stream,
                &job.position,
                "sink",
                failure.reason,
                Value::Object(job.record.clone()),
            );
            // The dead letter is written before the record counts as done; one that could
            // not be written (a full disk) leaves the record for the next run.
            match inner.context.dead_letters.reject(letter) {
                Ok(()) => state.counts.rejected += 1,
                Err(e @ Error::TooManyErrors { .. }) => {
                    state.counts.rejected += 1;
                    inner.stopped(&e);
                    state.fail(e);
                }
                Err(e) => {
                    done = false;
                    inner.stopped(&e);
                    state.fail(e);
                }
            }
        }
    }
    if done {
        state.tracker.done(job.position.seq);
    }
    state.jobs -= 1;
    let lane = job.lane.clone();
    drop(job);
    if state.failed {
        inner.counters.stopped.store(true, Ordering::Relaxed);
        // Left for the next run: neither sent nor done.
        let left = state.lanes.remove(&lane).map_or(0, |q| q.len());
        state.jobs -= left;
        return None;
    }
    let next = state.lanes.get_mut(&lane).and_then(VecDeque::pop_front);
    if next.is_none() {
        state.lanes.remove(&lane);
    }
    next
}

/// Writes one record: nothing if unchanged, an update if known, else a look-up where needed
/// and a create.
async fn process(inner: &Inner, job: &Job) -> std::result::Result<(String, Done), Failure> {
    let p = &job.prepared;
    let (known, uncertain, archived) = {
        let state = inner.lock();
        let known = state.map.get(&p.source_id).cloned();
        let uncertain =
            state.intents.contains(&p.source_id) || (inner.adopt_existing && known.is_none());
        (known, uncertain, state.archived.contains(&p.source_id))
    };
    if let Some(entry) = &known {
        if entry.hash == p.hash && !archived {
            return Ok((entry.gleap_id.clone(), Done::Unchanged));
        }
        // Archived by `run --prune` and back in the source: un-archived (Gleap's
        // UnarchiveTicket, `PUT /tickets/{id}/unarchive`), then updated if it changed.
        let gone = archived && !unarchive(inner, &entry.gleap_id).await?;
        if !gone && entry.hash == p.hash {
            return Ok((entry.gleap_id.clone(), Done::Updated));
        }
        if !gone && let Some(done) = update(inner, &entry.gleap_id, p).await? {
            return Ok((entry.gleap_id.clone(), done));
        }
        // Deleted in Gleap since (404): the mapping is forgotten and it is created again.
        inner.lock().mapped_ids.remove(&entry.gleap_id);
        return match write_anew(inner, job, p, uncertain).await? {
            (id, Done::Created) => Ok((id, Done::Recreated)),
            other => Ok(other),
        };
    }
    write_anew(inner, job, p, uncertain).await
}

/// A record without a Gleap id: looked up where needed (and adopted if found), else
/// created.
async fn write_anew(
    inner: &Inner,
    job: &Job,
    p: &Prepared,
    uncertain: bool,
) -> std::result::Result<(String, Done), Failure> {
    // Whether the prefetch says the session found already holds the body.
    let mut prefetched_same = None;
    let prefetched = match inner.entity {
        Entity::Sessions if !uncertain => inner.prefetched_for_lookup().await,
        _ => None,
    };
    let found = match (inner.entity, prefetched) {
        (Entity::Sessions, Some(prefetched)) => match prefetched.get(&p.source_id, &p.body) {
            Cached::Absent => LookUp::Absent,
            Cached::Found(id, same) => {
                prefetched_same = Some(same);
                LookUp::Found(id, Value::Null)
            }
            Cached::Ambiguous(ids) => LookUp::Ambiguous(ids),
        },
        (Entity::Sessions, _) => find(inner, p, uncertain).await?,
        _ if uncertain => find(inner, p, true).await?,
        _ => LookUp::Absent,
    };
    match adopt(inner, p, found)? {
        // A message is found only as we would create it (content, note, author).
        Some((gleap_id, _)) if inner.entity == Entity::Messages => Ok((gleap_id, Done::Adopted)),
        Some((gleap_id, remote)) => {
            if prefetched_same.unwrap_or_else(|| matches_remote(&p.body, &remote)) {
                return Ok((gleap_id, Done::Unchanged));
            }
            match update(inner, &gleap_id, p).await? {
                Some(done) => Ok((gleap_id, done)),
                None => create(inner, job).await,
            }
        }
        None => create(inner, job).await,
    }
}

/// A look-up's result as what to do: the record found, none, or a failure (ambiguous: a dead
/// letter; untrusted: the stream stops).
fn adopt(
    inner: &Inner,
    p: &Prepared,
    found: LookUp,
) -> std::result::Result<Option<(String, Value)>, Failure> {
    match found {
        LookUp::Absent => Ok(None),
        LookUp::Found(id, doc) => Ok(Some((id, doc))),
        LookUp::Ambiguous(ids) => Err(Failure {
            reason: format!(
                "ambiguous: {} {} in Gleap are this record ({}), so none was adopted or overwritten; merge or delete the extra ones in Gleap and run again",
                ids.len(),
                inner.entity.name(),
                ids.join(", ")
            ),
            keep_intent: true,
            stop: false,
        }),
        LookUp::Untrusted(reason) | LookUp::FilterIgnored(reason) => Err(Failure {
            reason: format!(
                "cannot tell whether {} {:?} is already in Gleap: {reason}",
                inner.entity.singular(),
                p.source_id
            ),
            keep_intent: true,
            stop: true,
        }),
    }
}

/// `PUT`; `None` when the entity is gone (404).
async fn update(
    inner: &Inner,
    gleap_id: &str,
    p: &Prepared,
) -> std::result::Result<Option<Done>, Failure> {
    let fields = inner.entity.update_fields();
    let mut body = p.body.clone();
    body.retain(|k, _| field(fields, k).is_some());
    let path = format!("{}/{gleap_id}", inner.entity.path());
    match inner
        .client
        .call(
            Method::PUT,
            &path,
            &[],
            Some(&Value::Object(body)),
            false,
            &inner.counters,
        )
        .await
    {
        Ok(Answer { status: 404, .. }) => Ok(None),
        Ok(_) => Ok(Some(Done::Updated)),
        Err(e) => Err(Failure::from_call("update", e)),
    }
}

/// `PUT /tickets/{id}/unarchive`; `false` when the ticket is gone (404).
async fn unarchive(inner: &Inner, gleap_id: &str) -> std::result::Result<bool, Failure> {
    let path = format!("{}/{gleap_id}/unarchive", inner.entity.path());
    match inner
        .client
        .call(Method::PUT, &path, &[], None, false, &inner.counters)
        .await
    {
        Ok(Answer { status: 404, .. }) => Ok(false),
        Ok(_) => Ok(true),
        Err(e) => Err(Failure::from_call("unarchive", e)),
    }
}

/// Before a fresh tickets stream's first create: does Gleap hold tickets an earlier run of
/// this stream made (its state lost or elsewhere)? One request: the tickets with the first
/// record's import marker; every ticket answered is looked at, so that a project that
/// ignores the filter still shows this stream's markers among the tickets it answers.
async fn check_lost_state(inner: &Inner, p: &Prepared) -> std::result::Result<(), String> {
    const ANSWERED: usize = 100;
    let import_id = inner.preparer.import_id(&p.source_id);
    let limit = ANSWERED.to_string();
    let answer = inner
        .client
        .call(
            Method::GET,
            "/tickets",
            &[("customData.importId", &import_id), ("limit", &limit)],
            None,
            false,
            &inner.counters,
        )
        .await
        .map_err(|e| format!("checking for tickets of an earlier run: {e}"))?;
    let tickets = listed("checking for tickets of an earlier run", answer).map_err(|f| f.reason)?;
    let marker = |t: &Value| answer::import_marker(t).map(str::to_string);
    let prefix = super::import_id(&inner.stream, "");
    let ours: Vec<(String, String)> = tickets
        .iter()
        .filter_map(|t| Some((answer::id(t)?.to_string(), marker(t)?)))
        .filter(|(_, m)| m.starts_with(&prefix))
        .collect();
    if ours.is_empty() {
        if tickets
            .iter()
            .any(|t| marker(t).as_deref() != Some(import_id.as_str()))
        {
            tracing::warn!(
                "stream `{}`: GET /tickets?customData.importId={import_id} answered other tickets (the filter is ignored); none of the {} answered carries this stream's marker, so the check for an earlier run's tickets goes no further",
                inner.stream,
                tickets.len()
            );
        }
        return Ok(());
    }
    let state = inner.store.path();
    let state = std::path::absolute(state).unwrap_or_else(|_| state.to_path_buf());
    let cwd = std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_else(|_| "?".into());
    let (id, marker) = &ours[0];
    Err(format!(
        "Gleap already holds ticket {id} with customData.importId {marker:?}{}, made by an earlier run of this pipeline, but the state store {} knows nothing of stream `{}`: it was lost (emptied or deleted), or this run uses another state dir (a relative `state_dir` is taken from the folder the run starts in, here {cwd}). Nothing was created. Point `state_dir` (or --state-dir) at the earlier run's state, or run `gleap-etl reconcile PIPELINE` (with the same state dir) to rebuild the id map from Gleap (a list page per 1000 sessions or tickets and a request per ticket) and run again, or run with --adopt-existing to look each record up in Gleap (a request more per record)",
        if ours.len() > 1 {
            format!(" (and {} more)", ours.len() - 1)
        } else {
            String::new()
        },
        state.display(),
        inner.stream,
    ))
}

/// After a create was refused: the records it references that are gone from Gleap (a
/// `GET` of each answers 404), their mappings forgotten so the next run re-creates them.
async fn forget_gone_parents(inner: &Inner, p: &Prepared) -> Vec<String> {
    let mut gone = Vec::new();
    for parent in &p.parents {
        let known_gone = inner
            .gone_parents
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&parent.gleap_id);
        if !known_gone {
            let answer = inner
                .client
                .call(
                    Method::GET,
                    &parent.path(),
                    &[],
                    None,
                    false,
                    &inner.counters,
                )
                .await;
            if !matches!(answer, Ok(Answer { status: 404, .. })) {
                continue;
            }
            inner
                .gone_parents
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(parent.gleap_id.clone());
            if let Err(e) = inner.store.forget(&parent.stream, &parent.source_id) {
                inner.fail(e);
            }
        }
        gone.push(format!(
            "its {} {} (record {:?} of stream `{}`) is gone from Gleap (deleted there); its mapping is forgotten, so the next run creates it again, and then this {}",
            parent.field,
            parent.gleap_id,
            parent.source_id,
            parent.stream,
            inner.entity.singular()
        ));
    }
    gone
}

/// A create refused (`status`, Gleap's `message`): why, naming a referenced record gone
/// from Gleap if that is the cause.
async fn refused(inner: &Inner, p: &Prepared, status: u16, message: String) -> Failure {
    let gone = if p.parents.is_empty() {
        Vec::new()
    } else {
        forget_gone_parents(inner, p).await
    };
    if !gone.is_empty() {
        inner.lock().counts.parent_gone += 1;
        return Failure {
            reason: format!("create answered {status}: {}", gone.join("; ")),
            keep_intent: false,
            stop: false,
        };
    }
    Failure {
        reason: format!("create answered {status}: {message}"),
        // A 404 to a create may come from a proxy after Gleap made it: looked up next time.
        keep_intent: status == 404,
        stop: false,
    }
}

/// `POST`, with the intent recorded first; an unclear answer is looked up before retrying.
async fn create(inner: &Inner, job: &Job) -> std::result::Result<(String, Done), Failure> {
    let p = &job.prepared;
    // Set when the intent could not be saved (a full disk): the create did not go out and
    // the record is not at fault, so it is left for the next run, not dead-lettered.
    let intent_failed = &AtomicBool::new(false);
    if let Some(check) = &inner.lost_state_check {
        check
            .get_or_init(|| check_lost_state(inner, p))
            .await
            .clone()
            .map_err(|reason| Failure {
                reason,
                keep_intent: false,
                stop: true,
            })?;
    }
    // The intent is recorded right before the create goes out (not while it waits for the
    // rate limit), so a killed run looks up only what may really have been sent.
    let record_intent = || -> std::pin::Pin<
        Box<dyn std::future::Future<Output = std::result::Result<(), String>> + Send + '_>,
    > {
        Box::pin(async move {
            if !inner.lock().intents.insert(p.source_id.clone()) {
                return Ok(());
            }
            inner
                .intent_writer
                .record(p.source_id.clone())
                .await
                .map_err(|e| {
                    intent_failed.store(true, Ordering::SeqCst);
                    inner.lock().intents.remove(&p.source_id);
                    let message = e.to_string();
                    inner.fail(e);
                    message
                })
        })
    };
    let seq = job.position.seq.to_string();
    let headers: &[(&str, &str)] = match inner.entity {
        Entity::Messages => &[(SEQ_HEADER, seq.as_str())],
        _ => &[],
    };
    let body = Value::Object(p.body.clone());
    let mut last = String::new();
    for attempt in 0..inner.max_attempts {
        let answer = inner
            .client
            .call_with(
                Method::POST,
                inner.entity.path(),
                &[],
                Some(&body),
                true,
                &inner.counters,
                Some(&record_intent),
                headers,
            )
            .await;
        match answer {
            Ok(Answer { status, body, .. }) if (200..300).contains(&status) => {
                return match answer::id(&body) {
                    Some(id) => Ok((id.to_string(), Done::Created)),
                    None => Err(Failure {
                        reason: format!(
                            "create answered {status} without an id (`id` or `_id`): {}",
                            crate::record::describe(&body)
                        ),
                        keep_intent: true,
                        stop: false,
                    }),
                };
            }
            Ok(Answer { status, body, .. }) => {
                return Err(refused(inner, p, status, body.to_string()).await);
            }
            Err(CallError::Rejected { status, message }) => {
                return Err(refused(inner, p, status, message).await);
            }
            Err(CallError::Ambiguous(message)) => {
                last = message;
                // The create may have happened: look before sending it again.
                if let Some((id, _)) = adopt(inner, p, find(inner, p, true).await?)? {
                    return Ok((id, Done::Adopted));
                }
                inner.counters.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(backoff(attempt)).await;
            }
            Err(e) if intent_failed.load(Ordering::SeqCst) => {
                return Err(Failure {
                    reason: format!("create: {e}"),
                    keep_intent: false,
                    stop: true,
                });
            }
            Err(e) => return Err(Failure::from_call("create", e)),
        }
    }
    Err(Failure {
        reason: format!(
            "create: gave up after {} attempts, the last: {last}",
            inner.max_attempts
        ),
        keep_intent: true,
        stop: false,
    })
}

/// Looks for the entity a record may already have created. `after_create`: a create of it
/// may have happened (a lost answer, an intent left by a killed run), so a list that may
/// show new records late is asked again for a while before "absent" is believed.
async fn find(
    inner: &Inner,
    p: &Prepared,
    after_create: bool,
) -> std::result::Result<LookUp, Failure> {
    let settle_until = tokio::time::Instant::now() + inner.lookup_settle;
    let mut pause = Duration::from_millis(250);
    loop {
        let found = find_once(inner, p).await?;
        let listed = inner.entity == Entity::Sessions && inner.key == SessionKey::Email;
        if found != LookUp::Absent
            || !after_create
            || !listed
            || tokio::time::Instant::now() + pause > settle_until
        {
            return Ok(found);
        }
        tokio::time::sleep(pause).await;
        pause *= 2;
    }
}

async fn find_once(inner: &Inner, p: &Prepared) -> std::result::Result<LookUp, Failure> {
    let get = |path: String, query: Vec<(&'static str, String)>| async move {
        let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        inner
            .client
            .call(Method::GET, &path, &query, None, false, &inner.counters)
            .await
    };
    let unmapped = |doc: &Value| {
        let state = inner.lock();
        answer::id(doc).is_some_and(|id| !state.mapped_ids.contains(id))
    };
    let what = format!("looking the {} up", inner.entity.singular());
    match inner.entity {
        // Written by `helpcentre`, never by this sink.
        Entity::Collections | Entity::Articles => Ok(LookUp::Absent),
        Entity::Sessions => {
            let key = inner.key;
            let value = p.source_id.as_str();
            let candidates = match key {
                SessionKey::UserId => {
                    let path = format!(
                        "/sessions/by-user-id/{}",
                        utf8_percent_encode(value, NON_ALPHANUMERIC)
                    );
                    let answer = get(path, vec![])
                        .await
                        .map_err(|e| Failure::from_call(&what, e))?;
                    answer::found(answer.status, answer.body)
                        .into_iter()
                        .collect()
                }
                SessionKey::Email => {
                    let answer = get(
                        "/sessions".into(),
                        vec![("email", value.to_string()), ("limit", "10".into())],
                    )
                    .await
                    .map_err(|e| Failure::from_call(&what, e))?;
                    listed(&what, answer)?
                }
            };
            let request = match key {
                SessionKey::UserId => "GET /sessions/by-user-id".to_string(),
                SessionKey::Email => format!("GET /sessions?email={value}"),
            };
            let has_key = |d: &Value| session_has(key, value, d);
            Ok(verify(&request, candidates, has_key, has_key))
        }
        Entity::Tickets => {
            let import_id = inner.preparer.import_id(&p.source_id);
            let answer = get(
                "/tickets".into(),
                vec![
                    ("customData.importId", import_id.clone()),
                    ("limit", "10".into()),
                ],
            )
            .await
            .map_err(|e| Failure::from_call(&what, e))?;
            let candidates = listed(&what, answer)?;
            let has_import_id = |t: &Value| answer::import_marker(t) == Some(import_id.as_str());
            let what_request = format!("GET /tickets?customData.importId={import_id}");
            match verify(&what_request, candidates, has_import_id, unmapped) {
                // The filter is not applied: every ticket is read and looked at here (a page
                // of 1000 each), which costs more but creates nothing twice.
                LookUp::FilterIgnored(_) => {
                    inner.filter_ignored(format!(
                        "{what_request} answered tickets without that importId (Gleap ignores the filter): tickets whose create answer was lost are looked for in the list of all tickets instead"
                    ));
                    let mut all = Vec::new();
                    list_all(
                        &inner.client,
                        &inner.counters,
                        "/tickets",
                        &[],
                        MAX_PAGE_SIZE,
                        |page| all.extend(page.into_iter().filter(|t| has_import_id(t))),
                    )
                    .await
                    .map_err(|e| Failure {
                        reason: format!("{what}: listing every ticket: {e}"),
                        keep_intent: true,
                        stop: true,
                    })?;
                    Ok(verify(
                        &format!("GET /tickets (every page), importId {import_id}"),
                        all,
                        |_| true,
                        unmapped,
                    ))
                }
                other => Ok(other),
            }
        }
        Entity::Messages => {
            let ticket = p
                .body
                .get("ticket")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let mut candidates = Vec::new();
            list_all(
                &inner.client,
                &inner.counters,
                "/messages",
                &[("ticket", ticket.as_str())],
                MAX_PAGE_SIZE,
                |page| candidates.extend(page),
            )
            .await
            .map_err(|e| Failure {
                reason: format!("{what}: {e}"),
                keep_intent: true,
                stop: e.is_paging(),
            })?;
            // Every page was read: where Gleap ignored the filter (messages of other tickets
            // came back), they are left out here and what remains is the whole ticket. A
            // message that names no ticket stays a candidate.
            let on_ticket = |m: &Value| answer::field_ref(m, "ticket").is_none_or(|t| t == ticket);
            let all = candidates.len();
            candidates.retain(on_ticket);
            if candidates.len() < all {
                inner.filter_ignored(format!(
                    "GET /messages?ticket={ticket} answered messages of other tickets (Gleap ignores the filter): messages whose create answer was lost are looked for among all messages, every page read"
                ));
            }
            Ok(verify(
                &format!("GET /messages?ticket={ticket} (every page)"),
                candidates,
                |_| true,
                |m| unmapped(m) && same_message(&p.body, m),
            ))
        }
    }
}

/// The documents of a list answer, or why it is not one.
fn listed(what: &str, answer: Answer) -> std::result::Result<Vec<Value>, Failure> {
    if answer.status == 404 {
        return Ok(Vec::new());
    }
    answer::list(answer.body)
        .map(|page| page.items)
        .map_err(|e| Failure {
            reason: format!("{what}: Gleap answered {e}"),
            keep_intent: true,
            stop: true,
        })
}

/// Whether a stored message is the one `body` would create: the same content (as text, if
/// Gleap changed its form), note or not, and author.
pub(crate) fn same_message(body: &serde_json::Map<String, Value>, remote: &Value) -> bool {
    let content_same = match (body.get("comment"), answer::message_content(remote)) {
        (Some(sent), Some(stored)) => answer::same_content(sent, stored),
        (None | Some(Value::Null), None) => true,
        _ => false,
    };
    let note = body.get("isNote").and_then(Value::as_bool).unwrap_or(false);
    content_same
        && answer::is_note(remote) == note
        && body.get("session").and_then(Value::as_str) == answer::field_ref(remote, "session")
}

impl Sink for GleapSink {
    fn write(&mut self, record: Record, position: Position) -> Result<()> {
        let inner = &self.inner;
        let seq = position.seq;
        {
            let mut state = inner.lock();
            if let Some(e) = state.fatal.take() {
                return Err(e);
            }
            state.tracker.add(seq);
        }
        if let Some((_, seen)) = &mut self.seen {
            seen.saw(inner.preparer.source_id(&record));
        }
        let prepared = match inner.preparer.prepare(record) {
            Ok(p) => p,
            Err((reason, record)) => {
                inner
                    .context
                    .reject(&position, reason, record)
                    .inspect_err(|e| inner.stopped(e))?;
                inner.lock().counts.rejected += 1;
                inner.lock().tracker.done(seq);
                return Ok(());
            }
        };
        if let Some((_, seen)) = &mut self.seen {
            for parent in &prepared.parents {
                seen.refers_to(&parent.stream, &parent.source_id);
            }
        }
        let lane = lane_of(inner.entity, &prepared);
        // Unchanged, with nothing before it in its lane: done without a request.
        let skip_unchanged = |state: &mut State| {
            let unchanged = state
                .map
                .get(&prepared.source_id)
                .is_some_and(|e| e.hash == prepared.hash)
                && !state.archived.contains(&prepared.source_id);
            if unchanged && inner.gone_from_prefetch(state, &prepared) {
                // Deleted in Gleap: forgotten here, and created again.
                if let Some(old) = state.map.remove(&prepared.source_id) {
                    state.mapped_ids.remove(&old.gleap_id);
                }
                state.gone.insert(prepared.source_id.clone());
                return false;
            }
            if unchanged && !state.lanes.contains_key(&lane) {
                state.counts.unchanged += 1;
                state.existing_passed(inner.entity, &lane);
                state.tracker.done(seq);
                return true;
            }
            false
        };
        if skip_unchanged(&mut inner.lock()) {
            return Ok(());
        }
        let permit = self
            .runtime
            .block_on(inner.slots.clone().acquire_owned())
            .map_err(|_| Error::internal("the Gleap sink stopped"))?;
        let job = {
            let mut state = inner.lock();
            if skip_unchanged(&mut state) {
                return Ok(());
            }
            let job = Job {
                record: prepared.body.clone(),
                prepared,
                position,
                lane,
                _permit: permit,
            };
            state.jobs += 1;
            if let Some(queue) = state.lanes.get_mut(&job.lane) {
                queue.push_back(job);
                return Ok(());
            }
            state.lanes.insert(job.lane.clone(), VecDeque::new());
            job
        };
        self.runtime.spawn(run_lane(inner.clone(), job));
        Ok(())
    }

    fn source_done(&mut self, seq: u64) -> Result<()> {
        let mut state = self.inner.lock();
        if let Some(e) = state.fatal.take() {
            return Err(e);
        }
        state.tracker.handed_over(seq);
        Ok(())
    }

    fn resume_after(&self) -> Option<u64> {
        self.resume_after
    }

    fn finish(mut self: Box<Self>) -> Result<SinkSummary> {
        self.wait_idle(None);
        self.inner.stop_prefetch();
        self.stop_committer();
        let seen = self.seen.take();
        let inner = &self.inner;
        // Taken first: the guard must be gone before `commit` locks again.
        let fatal = inner.lock().fatal.take();
        if let Some(e) = fatal {
            inner.commit()?;
            return Err(e);
        }
        inner.commit()?;
        inner.store.complete_stream(&inner.stream)?;
        // Only a stream that reached its end tells `--prune` what its source holds.
        if let Some((registry, seen)) = seen {
            registry.finished(&inner.stream, seen);
        }
        let state = inner.lock();
        let c = &state.counts;
        let (requests, rate_limited, retries) = inner.counters.snapshot();
        let (prefetch_requests, prefetch_rate_limited, prefetch_retries) =
            inner.prefetch_counters.snapshot();
        let (requests, rate_limited, retries) = (
            requests + prefetch_requests,
            rate_limited + prefetch_rate_limited,
            retries + prefetch_retries,
        );
        let records = c.created + c.updated + c.unchanged + c.recreated + c.rejected;
        let mut detail = json!({
            "entity": inner.entity.name(),
            "created": c.created,
            "updated": c.updated,
            "unchanged": c.unchanged,
            "recreated": c.recreated,
            "dead_lettered": c.rejected,
            "requests": requests,
            "prefetch_requests": prefetch_requests,
            "rate_limited": rate_limited,
            "retries": retries,
            "requests_per_record": if records == 0 { 0.0 } else { requests as f64 / records as f64 },
            "concurrency": inner.client.concurrency(),
        });
        if inner.entity == Entity::Messages {
            detail["out_of_order"] = json!(c.out_of_order);
        }
        if c.parent_gone > 0 {
            detail["parent_gone"] = json!(c.parent_gone);
        }
        if c.unarchived > 0 {
            detail["unarchived"] = json!(c.unarchived);
        }
        if let Some(rehoster) = &inner.rehoster {
            detail["files"] = rehoster.report_detail();
        }
        if let Some(agents) = &inner.agents {
            detail["agents"] = agents.summary();
        }
        if let Some(reason) = inner
            .prefetch_skipped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            detail["prefetch_skipped"] = json!(reason);
        }
        Ok(SinkSummary {
            written: c.created + c.updated + c.unchanged + c.recreated,
            rejected: c.rejected,
            path: None,
            bytes: None,
            detail: Some(detail),
        })
    }

    /// Lets the requests in flight finish (for a few seconds at most) and keeps what they
    /// confirmed, so a re-run does not repeat them.
    fn abort(mut self: Box<Self>) {
        self.inner.slots.close();
        // What waits for the rate limit is not sent; what is in flight finishes.
        self.inner.counters.stopped.store(true, Ordering::Relaxed);
        self.inner
            .prefetch_counters
            .stopped
            .store(true, Ordering::Relaxed);
        self.inner.stop_prefetch();
        if let Some(rehoster) = &self.inner.rehoster {
            rehoster.stop();
        }
        self.wait_idle(Some(Duration::from_secs(10)));
        self.stop_committer();
        if let Err(e) = self.inner.commit() {
            tracing::warn!("stream `{}`: {e}", self.inner.stream);
        }
    }
}

impl GleapSink {
    fn wait_idle(&self, limit: Option<Duration>) {
        let inner = self.inner.clone();
        let wait = async move {
            loop {
                let idle = inner.idle.notified();
                if inner.lock().jobs == 0 {
                    return;
                }
                idle.await;
            }
        };
        self.runtime.block_on(async move {
            match limit {
                Some(limit) => {
                    let _ = tokio::time::timeout(limit, wait).await;
                }
                None => wait.await,
            }
        });
    }

    fn stop_committer(&mut self) {
        self.inner.lock().stopping = true;
        if let Some(task) = self.committer.take() {
            task.abort();
            let _ = self.runtime.block_on(task);
        }
    }
}
