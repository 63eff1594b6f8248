//! The running Gleap sink. `write` (on the engine's writer thread) prepares a record and, when
//! it changed, spawns a job on the run's async runtime; jobs go through the shared client
//! (rate limit, concurrency, retries). A background task commits confirmations and the
//! checkpoint to the state store every quarter second; records with the same source id never
//! run at the same time.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};

use super::tracker::SeqTracker;
use super::{Entity, GleapRun, GleapSinkConfig, Prepared, Preparer, SessionKey, matches_remote};
use crate::dead_letter::DeadLetter;
use crate::error::{Error, Result};
use crate::gleap::client::{
    Answer, CallError, GleapClient, MAX_PAGE_SIZE, RequestCounters, backoff,
};
use crate::gleap::model::field;
use crate::record::{Position, Record};
use crate::sinks::{Sink, SinkContext, SinkSummary};
use crate::state::{Commit, MapEntry, StateStore};

/// Jobs queued or in flight at once (they wait for the rate limit, not for memory).
const MAX_JOBS: usize = 256;
const COMMIT_EVERY: Duration = Duration::from_millis(250);

/// What became of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Done {
    Created,
    Updated,
    Unchanged,
}

/// Why a record could not be written; `keep_intent` when its create may have happened.
struct Failure {
    reason: String,
    keep_intent: bool,
}

impl Failure {
    fn from_call(what: &str, e: CallError) -> Failure {
        let keep_intent = !matches!(e, CallError::Rejected { .. });
        Failure {
            reason: format!("{what}: {e}"),
            keep_intent,
        }
    }
}

struct Job {
    prepared: Prepared,
    record: Record,
    position: Position,
}

#[derive(Default)]
struct Counts {
    created: u64,
    updated: u64,
    unchanged: u64,
    rejected: u64,
}

struct State {
    map: HashMap<String, MapEntry>,
    mapped_ids: HashSet<String>,
    intents: HashSet<String>,
    tracker: SeqTracker,
    pending: Commit,
    in_flight: HashSet<String>,
    waiting: HashMap<String, VecDeque<Job>>,
    jobs: usize,
    counts: Counts,
    fatal: Option<Error>,
    stopping: bool,
}

struct Inner {
    stream: String,
    entity: Entity,
    key: SessionKey,
    preparer: Preparer,
    client: Arc<GleapClient>,
    store: Arc<StateStore>,
    context: SinkContext,
    counters: RequestCounters,
    /// Existing sessions by key, when prefetched.
    prefetched: Option<HashMap<String, Value>>,
    state: Mutex<State>,
    idle: Notify,
    slots: Arc<Semaphore>,
    max_attempts: u32,
    intent_writer: IntentWriter,
}

/// Writes intents in groups: a create waits for the transaction that holds its intent, and
/// one transaction takes every intent that came while the last one was being written. With
/// many creates in flight this turns one SQLite commit per create into one per group (the
/// import's CPU time fell by about a third), and an intent is still durable before its
/// request goes out.
struct IntentWriter {
    sender: Mutex<std::sync::mpsc::Sender<IntentRequest>>,
}

type IntentRequest = (
    String,
    tokio::sync::oneshot::Sender<std::result::Result<(), String>>,
);

/// Intents per transaction at most.
const INTENT_GROUP: usize = 1024;

impl IntentWriter {
    fn start(store: Arc<StateStore>, stream: String) -> Result<IntentWriter> {
        let (sender, receiver) = std::sync::mpsc::channel::<IntentRequest>();
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
                    let result = store.add_intents(&stream, &ids).map_err(|e| e.to_string());
                    for (_, reply) in group {
                        let _ = reply.send(result.clone());
                    }
                }
            })
            .map_err(|e| Error::Other(format!("cannot start the intent writer: {e}")))?;
        Ok(IntentWriter {
            sender: Mutex::new(sender),
        })
    }

    /// Records the intent to create `source_id`; returns once it is committed.
    async fn record(&self, source_id: String) -> std::result::Result<(), String> {
        let (reply, committed) = tokio::sync::oneshot::channel();
        self.sender
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send((source_id, reply))
            .map_err(|_| "the intent writer stopped".to_string())?;
        committed
            .await
            .map_err(|_| "the intent writer stopped".to_string())?
    }
}

pub struct GleapSink {
    inner: Arc<Inner>,
    runtime: Arc<tokio::runtime::Runtime>,
    resume_after: Option<u64>,
    committer: Option<tokio::task::JoinHandle<()>>,
    prefetch_requests: u64,
}

impl GleapSinkConfig {
    pub fn build(&self, context: SinkContext) -> Result<GleapSink> {
        let run: Arc<GleapRun> = context
            .gleap
            .clone()
            .ok_or_else(|| Error::Other("a Gleap sink needs the run's Gleap client".into()))?;
        let stream = context.stream.clone();
        let store = run.store.clone();
        let checkpoint = store.checkpoint(&stream)?;
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
        let mapped_ids = map.values().map(|e| e.gleap_id.clone()).collect();
        let intents = store.intents(&stream)?;
        let counters = RequestCounters::default();
        let prefetched = if self.prefetch {
            Some(
                run.runtime
                    .block_on(prefetch(&run.client, self.key(), &counters))?,
            )
        } else {
            None
        };
        let prefetch_requests = counters.requests.load(Ordering::Relaxed);
        let inner = Arc::new(Inner {
            entity: self.entity,
            key: self.key(),
            preparer: Preparer::new(&stream, self, &store)?,
            client: run.client.clone(),
            max_attempts: run.client.settings().max_attempts,
            intent_writer: IntentWriter::start(store.clone(), stream.clone())?,
            store,
            context,
            counters,
            prefetched,
            state: Mutex::new(State {
                map,
                mapped_ids,
                intents,
                tracker: SeqTracker::default(),
                pending: Commit::default(),
                in_flight: HashSet::new(),
                waiting: HashMap::new(),
                jobs: 0,
                counts: Counts::default(),
                fatal: None,
                stopping: false,
            }),
            idle: Notify::new(),
            slots: Arc::new(Semaphore::new(MAX_JOBS)),
            stream,
        });
        let committer = run.runtime.spawn(commit_every(inner.clone()));
        Ok(GleapSink {
            inner,
            runtime: run.runtime.clone(),
            resume_after,
            committer: Some(committer),
            prefetch_requests,
        })
    }
}

/// Pages through every session (`MAX_PAGE_SIZE` a request), keyed by `key`.
async fn prefetch(
    client: &GleapClient,
    key: SessionKey,
    counters: &RequestCounters,
) -> Result<HashMap<String, Value>> {
    let mut sessions = HashMap::new();
    let mut skip = 0usize;
    loop {
        let (skip_text, limit) = (skip.to_string(), MAX_PAGE_SIZE.to_string());
        let query = [
            ("limit", limit.as_str()),
            ("skip", skip_text.as_str()),
            ("sort", "createdAt"),
        ];
        let answer = client
            .call(Method::GET, "/sessions", &query, None, false, counters)
            .await
            .map_err(|e| Error::Other(format!("prefetching sessions: {e}")))?;
        let Value::Array(page) = answer.body else {
            return Err(Error::Other(
                "prefetching sessions: GET /sessions did not answer a list".into(),
            ));
        };
        let n = page.len();
        for session in page {
            if let Some(k) = session.get(key.field()).and_then(Value::as_str) {
                sessions.entry(k.to_string()).or_insert(session);
            }
        }
        if n < MAX_PAGE_SIZE {
            return Ok(sessions);
        }
        skip += n;
    }
}

impl Inner {
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
            return Err(e);
        }
        Ok(())
    }

    fn fail(&self, e: Error) {
        let mut state = self.lock();
        state.fatal.get_or_insert(e);
    }
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

/// Runs a job, then the next queued job with the same source id, if any.
async fn run_jobs(inner: Arc<Inner>, mut job: Job) {
    loop {
        let outcome = process(&inner, &job).await;
        let next = finish_job(&inner, job, outcome);
        match next {
            Some(next) => job = next,
            None => return,
        }
    }
}

fn finish_job(
    inner: &Inner,
    job: Job,
    outcome: std::result::Result<(String, Done), Failure>,
) -> Option<Job> {
    let source_id = job.prepared.source_id.clone();
    let mut letter = None;
    let next = {
        let mut state = inner.lock();
        match outcome {
            Ok((gleap_id, done)) => {
                let entry = MapEntry {
                    gleap_id: gleap_id.clone(),
                    hash: job.prepared.hash,
                };
                state.map.insert(source_id.clone(), entry.clone());
                state.mapped_ids.insert(gleap_id);
                state.intents.remove(&source_id);
                state.pending.confirmed.push((source_id.clone(), entry));
                match done {
                    Done::Created => state.counts.created += 1,
                    Done::Updated => state.counts.updated += 1,
                    Done::Unchanged => state.counts.unchanged += 1,
                }
            }
            Err(failure) => {
                state.counts.rejected += 1;
                if !failure.keep_intent && state.intents.remove(&source_id) {
                    state.pending.cleared.push(source_id.clone());
                }
                letter = Some(DeadLetter::new(
                    &inner.stream,
                    &job.position,
                    "sink",
                    failure.reason,
                    Value::Object(job.record.clone()),
                ));
            }
        }
        // The dead letter is written before the record counts as done.
        if let Some(letter) = letter.take()
            && let Err(e) = inner.context.dead_letters.reject(letter)
        {
            state.fatal.get_or_insert(e);
        }
        state.tracker.done(job.position.seq);
        let next = state
            .waiting
            .get_mut(&source_id)
            .and_then(VecDeque::pop_front);
        if state
            .waiting
            .get(&source_id)
            .is_some_and(VecDeque::is_empty)
        {
            state.waiting.remove(&source_id);
        }
        if next.is_none() {
            state.in_flight.remove(&source_id);
            state.jobs -= 1;
        }
        next
    };
    if next.is_none() {
        inner.idle.notify_waiters();
    }
    next
}

/// Writes one record: nothing if unchanged, an update if known, else a look-up where needed
/// and a create.
async fn process(inner: &Inner, job: &Job) -> std::result::Result<(String, Done), Failure> {
    let p = &job.prepared;
    let (known, uncertain) = {
        let state = inner.lock();
        (
            state.map.get(&p.source_id).cloned(),
            state.intents.contains(&p.source_id),
        )
    };
    if let Some(entry) = &known {
        if entry.hash == p.hash {
            return Ok((entry.gleap_id.clone(), Done::Unchanged));
        }
        if let Some(done) = update(inner, &entry.gleap_id, p).await? {
            return Ok((entry.gleap_id.clone(), done));
        }
        // Deleted in Gleap since: create it again.
    }
    let found = match inner.entity {
        Entity::Sessions => match &inner.prefetched {
            Some(sessions) if !uncertain => {
                sessions.get(&p.source_id).map(|s| (id_of(s), s.clone()))
            }
            _ => find(inner, p).await?,
        },
        _ if uncertain => find(inner, p).await?,
        _ => None,
    };
    if let Some((gleap_id, remote)) = found {
        if matches_remote(&p.body, &remote) {
            return Ok((gleap_id, Done::Unchanged));
        }
        return match update(inner, &gleap_id, p).await? {
            Some(done) => Ok((gleap_id, done)),
            None => create(inner, p).await,
        };
    }
    create(inner, p).await
}

fn id_of(doc: &Value) -> String {
    doc.get("_id")
        .or_else(|| doc.get("id"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
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

/// `POST`, with the intent recorded first; an unclear answer is looked up before retrying.
async fn create(inner: &Inner, p: &Prepared) -> std::result::Result<(String, Done), Failure> {
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
                .inspect_err(|message| {
                    inner.lock().intents.remove(&p.source_id);
                    inner.fail(Error::Other(message.clone()));
                })
        })
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
            )
            .await;
        match answer {
            Ok(Answer { status, body }) if (200..300).contains(&status) => {
                let id = id_of(&body);
                if id.is_empty() {
                    return Err(Failure {
                        reason: format!("create answered {status} without an id"),
                        keep_intent: true,
                    });
                }
                return Ok((id, Done::Created));
            }
            Ok(Answer { status, body }) => {
                return Err(Failure {
                    reason: format!("create answered {status}: {body}"),
                    keep_intent: true,
                });
            }
            Err(CallError::Ambiguous(message)) => {
                last = message;
                // The create may have happened: look before sending it again.
                if let Some((id, _)) = find(inner, p).await? {
                    return Ok((id, Done::Created));
                }
                inner.counters.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(backoff(attempt)).await;
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
    })
}

/// Looks for the entity a record may already have created.
async fn find(
    inner: &Inner,
    p: &Prepared,
) -> std::result::Result<Option<(String, Value)>, Failure> {
    let call = |path: String, query: Vec<(&'static str, String)>| async move {
        let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        inner
            .client
            .call(Method::GET, &path, &query, None, false, &inner.counters)
            .await
    };
    let unmapped = |candidates: Vec<Value>| {
        let state = inner.lock();
        candidates
            .into_iter()
            .find(|c| !state.mapped_ids.contains(&id_of(c)))
            .map(|c| (id_of(&c), c))
    };
    match inner.entity {
        Entity::Sessions => {
            let answer = match inner.key {
                SessionKey::UserId => {
                    let path = format!(
                        "/sessions/by-user-id/{}",
                        utf8_percent_encode(&p.source_id, NON_ALPHANUMERIC)
                    );
                    call(path, vec![]).await
                }
                SessionKey::Email => {
                    call(
                        "/sessions".into(),
                        vec![("email", p.source_id.clone()), ("limit", "1".into())],
                    )
                    .await
                }
            }
            .map_err(|e| Failure::from_call("looking the session up", e))?;
            Ok(match answer.body {
                _ if answer.status == 404 => None,
                Value::Array(list) => list.into_iter().next().map(|s| (id_of(&s), s)),
                doc => Some((id_of(&doc), doc)),
            })
        }
        Entity::Tickets => {
            let import_id = inner.preparer.import_id(&p.source_id);
            let answer = call(
                "/tickets".into(),
                vec![("customData.importId", import_id), ("limit", "10".into())],
            )
            .await
            .map_err(|e| Failure::from_call("looking the ticket up", e))?;
            let tickets = answer
                .body
                .get("tickets")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            Ok(unmapped(tickets))
        }
        Entity::Messages => {
            let ticket = p
                .body
                .get("ticket")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let answer = call(
                "/messages".into(),
                vec![("ticket", ticket), ("limit", "1000".into())],
            )
            .await
            .map_err(|e| Failure::from_call("looking the message up", e))?;
            let same: Vec<Value> = match answer.body {
                Value::Array(list) => list
                    .into_iter()
                    .filter(|m| same_message(&p.body, m))
                    .collect(),
                _ => Vec::new(),
            };
            Ok(unmapped(same))
        }
    }
}

/// Whether a stored message is the one `body` would create: same comment, note flag and
/// author.
fn same_message(body: &serde_json::Map<String, Value>, remote: &Value) -> bool {
    let session_of = |v: Option<&Value>| match v {
        Some(Value::Object(o)) => o.get("_id").cloned(),
        Some(Value::Null) | None => None,
        Some(v) => Some(v.clone()),
    };
    body.get("comment") == remote.get("comment")
        && body.get("isNote").and_then(Value::as_bool).unwrap_or(false)
            == remote
                .get("isNote")
                .and_then(Value::as_bool)
                .unwrap_or(false)
        && session_of(body.get("session")) == session_of(remote.get("session"))
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
        let prepared = match inner.preparer.prepare(record) {
            Ok(p) => p,
            Err((reason, record)) => {
                inner.lock().counts.rejected += 1;
                inner.context.reject(&position, reason, record)?;
                inner.lock().tracker.done(seq);
                return Ok(());
            }
        };
        let job = {
            let mut state = inner.lock();
            if state
                .map
                .get(&prepared.source_id)
                .is_some_and(|e| e.hash == prepared.hash)
            {
                state.counts.unchanged += 1;
                state.tracker.done(seq);
                return Ok(());
            }
            let job = Job {
                record: prepared.body.clone(),
                prepared,
                position,
            };
            if state.in_flight.contains(&job.prepared.source_id) {
                state
                    .waiting
                    .entry(job.prepared.source_id.clone())
                    .or_default()
                    .push_back(job);
                return Ok(());
            }
            state.in_flight.insert(job.prepared.source_id.clone());
            state.jobs += 1;
            job
        };
        let permit = self
            .runtime
            .block_on(inner.slots.clone().acquire_owned())
            .map_err(|_| Error::Other("the Gleap sink stopped".into()))?;
        let task_inner = inner.clone();
        self.runtime.spawn(async move {
            run_jobs(task_inner, job).await;
            drop(permit);
        });
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
        self.stop_committer();
        let inner = &self.inner;
        if let Some(e) = inner.lock().fatal.take() {
            inner.commit()?;
            return Err(e);
        }
        inner.commit()?;
        inner.store.complete_stream(&inner.stream)?;
        let state = inner.lock();
        let c = &state.counts;
        let (requests, rate_limited, retries) = inner.counters.snapshot();
        let records = c.created + c.updated + c.unchanged + c.rejected;
        Ok(SinkSummary {
            written: c.created + c.updated + c.unchanged,
            rejected: c.rejected,
            path: None,
            bytes: None,
            detail: Some(json!({
                "entity": inner.entity.name(),
                "created": c.created,
                "updated": c.updated,
                "unchanged": c.unchanged,
                "dead_lettered": c.rejected,
                "requests": requests,
                "prefetch_requests": self.prefetch_requests,
                "rate_limited": rate_limited,
                "retries": retries,
                "requests_per_record": if records == 0 { 0.0 } else { requests as f64 / records as f64 },
                "concurrency": inner.client.concurrency(),
            })),
        })
    }

    /// Lets the requests in flight finish (for a few seconds at most) and keeps what they
    /// confirmed, so a re-run does not repeat them.
    fn abort(mut self: Box<Self>) {
        self.inner.slots.close();
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
