//! `verify PIPELINE`: the proof a support lead signs a migration off with. It reads the source
//! again through the pipeline's transforms, prepares each record's body as the Gleap sink
//! would send it, and compares it with what Gleap holds, found through the id map and the
//! list endpoints (safe paging, [`crate::gleap::paging`]; no server filter is trusted):
//!
//! - arrived and equal, field by field for the fields we send (read tolerantly: a message's
//!   text from `data.content`, a note by its `type`, references as ids or objects);
//! - missing: the mapped id is not in Gleap (or nothing is mapped and nothing found by its
//!   key or `customData.importId`);
//! - present twice: two sessions with the same key, two tickets with the same importId, two
//!   messages with the same text on a ticket where the source has one;
//! - changed since: the fields that differ;
//! - out of order: messages whose place in their ticket's conversation is not the source's;
//! - gone from the source: records this pipeline created (its id map, its importId) that the
//!   source no longer has.
//!
//! Cost: sessions and tickets by list pages of 1000, messages one request per deeply checked
//! ticket (`GET /messages?ticket=`); with `--sample N` the other tickets' messages are
//! counted from list pages of all messages. The estimate is known before any request.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use reqwest::Method;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::engine::{self, GleapTarget};
use crate::error::{Error, Result};
use crate::gleap::answer;
use crate::gleap::client::{GleapClient, RequestCounters};
use crate::gleap::paging::{self, PageGuard, PagingError, SMALLEST_PAGE_CAP};
use crate::pipeline::Pipeline;
use crate::sinks::gleap::{Entity, GleapSinkConfig, Preparer, differing_fields, id_text};
use crate::state::{MapEntry, StateStore};

/// Records per list page.
pub const PAGE: usize = 1000;

/// How to verify.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Overrides the pipeline's `state_dir`.
    pub state_dir: Option<PathBuf>,
    /// Check this many random tickets deeply, the rest by counts (default: all deeply).
    pub sample: Option<usize>,
    /// Seed for the sample (default: random).
    pub seed: Option<u64>,
    /// Where to read from instead of the pipeline's `gleap:` target (`--emulator`).
    pub gleap_target: Option<GleapTarget>,
}

/// What is wrong with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    Missing,
    Twice,
    Changed,
    OutOfOrder,
    GoneFromSource,
    /// The pipeline dead-letters the record (a bad field, a parent that never arrived): it
    /// was never sent.
    NotSent,
}

impl ProblemKind {
    pub fn label(self) -> &'static str {
        match self {
            ProblemKind::Missing => "missing",
            ProblemKind::Twice => "present twice",
            ProblemKind::Changed => "changed since",
            ProblemKind::OutOfOrder => "out of order",
            ProblemKind::GoneFromSource => "gone from the source",
            ProblemKind::NotSent => "not sent (dead-lettered)",
        }
    }
}

/// One problem found.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub stream: String,
    pub kind: ProblemKind,
    /// The source ids of the records concerned (several for messages out of order).
    pub records: Vec<String>,
    /// Messages: the source id of their ticket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    /// The Gleap ids concerned (both copies of a record present twice).
    pub gleap_ids: Vec<String>,
    /// Changed: the fields that differ.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    pub detail: String,
}

/// The counts of one stream.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StreamSummary {
    pub stream: String,
    pub entity: &'static str,
    /// Records the source holds (after the transforms).
    pub in_source: u64,
    pub arrived_equal: u64,
    pub missing: u64,
    pub twice: u64,
    pub changed: u64,
    pub out_of_order: u64,
    pub gone_from_source: u64,
    /// Tickets this pipeline created, gone from the source and archived in Gleap (what
    /// `run --prune` does): not a problem.
    pub pruned: u64,
    /// Records the pipeline dead-letters: never sent, so not in Gleap (each a problem).
    pub dead_lettered: u64,
    /// Messages on tickets outside `--sample`: checked for presence and copies, not for
    /// text or order.
    pub by_count: u64,
    /// Messages: tickets whose every message was checked, text and order.
    pub deep_tickets: u64,
    /// Messages: messages on the checked tickets this pipeline did not send (written in
    /// Gleap since); not a problem.
    pub others_in_gleap: u64,
}

/// What `verify` checked after a sample run.
#[derive(Debug, Serialize)]
pub struct SampleScope {
    /// The sample run.
    pub run: i64,
    /// `verifying the sample of run 3: 20 tickets, ...`
    pub description: String,
}

/// What `verify` found.
#[derive(Debug, Serialize)]
pub struct VerifyReport {
    /// Set when the latest run that wrote was `run --sample`: only its sample was checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample: Option<SampleScope>,
    pub pipeline: String,
    pub estimate: Estimate,
    /// Requests sent (retries included).
    pub requests: u64,
    /// Every record arrived and is equal, nothing twice, out of order or left over.
    pub ok: bool,
    pub streams: Vec<StreamSummary>,
    pub problems: Vec<Problem>,
    /// Streams not verified, and why.
    pub not_verified: Vec<String>,
}

/// The requests `verify` will send, known before it sends any.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Estimate {
    pub requests: u64,
    pub session_pages: u64,
    pub ticket_pages: u64,
    pub message_pages: u64,
    pub deep_tickets: u64,
    pub team: u64,
}

impl Estimate {
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.session_pages > 0 {
            parts.push(format!("{} of sessions", self.session_pages));
        }
        if self.ticket_pages > 0 {
            parts.push(format!("{} of tickets", self.ticket_pages));
        }
        if self.message_pages > 0 {
            parts.push(format!("{} of all messages", self.message_pages));
        }
        let mut text = format!(
            "about {} requests: list pages {}",
            self.requests,
            if parts.is_empty() {
                "none".to_string()
            } else {
                parts.join(", ")
            }
        );
        if self.deep_tickets > 0 {
            text.push_str(&format!(
                "; the messages of {} tickets, one request each",
                self.deep_tickets
            ));
        }
        if self.team > 0 {
            text.push_str("; the team, once");
        }
        text
    }
}

/// A record as the sink would send it.
pub(crate) struct Item {
    pub source_id: String,
    /// The hash the sink keeps of what it sent.
    pub hash: u128,
    pub body: Map<String, Value>,
    /// Messages: (source id, Gleap id) of their ticket.
    pub ticket: Option<(String, String)>,
}

/// One Gleap stream of the pipeline, read and prepared.
pub(crate) struct Prepared {
    pub name: String,
    pub config: GleapSinkConfig,
    pub items: Vec<Item>,
    pub map: HashMap<String, MapEntry>,
    /// Records the pipeline dead-letters: (the record's source id, or where it is; why).
    pub not_sent: Vec<(String, String)>,
    /// In the source, outside the sample the latest run wrote: not checked.
    pub outside: HashSet<String>,
}

impl Prepared {
    /// The source ids the source holds: checked, and outside the sample.
    fn source_ids(&self) -> HashSet<&str> {
        self.items
            .iter()
            .map(|i| i.source_id.as_str())
            .chain(self.outside.iter().map(String::as_str))
            .collect()
    }
}

/// The source of a pipeline's Gleap streams read again through its transforms, and the
/// client to compare it with Gleap: what `verify` and `reconcile` start from.
pub(crate) struct SourceReading {
    previews: Vec<engine::StreamPreview>,
    pub client: Arc<GleapClient>,
    pub runtime: tokio::runtime::Runtime,
    team: Option<crate::sinks::gleap::agents::TeamCache>,
    upload_target: String,
    /// The streams writing sessions, tickets or messages, in the pipeline's order.
    pub streams: Vec<(String, GleapSinkConfig)>,
    /// The Gleap streams left out (help centre), and why.
    pub not_covered: Vec<String>,
}

impl SourceReading {
    /// Reads the source of every stream; `command` names what reads it in errors.
    pub fn open(
        pipeline: &Pipeline,
        gleap_target: Option<&GleapTarget>,
        command: &str,
    ) -> Result<SourceReading> {
        let mut not_covered = Vec::new();
        let mut streams = Vec::new();
        for stream in &pipeline.config.streams {
            if let Some(g) = stream.sink.gleap() {
                if g.entity.is_help_centre() {
                    not_covered.push(format!(
                        "{}: help-centre {} are not covered by {command} yet",
                        stream.name.value,
                        g.entity.name()
                    ));
                } else {
                    streams.push((stream.name.value.clone(), g.clone()));
                }
            }
        }
        if streams.is_empty() {
            return Err(Error::config(format!(
                "{}: no stream writes sessions, tickets or messages to Gleap; nothing to {command}",
                pipeline.name()
            )));
        }
        // The source, through the transforms, as `plan` reads it.
        let previews = engine::plan(pipeline, usize::MAX);
        let settings = engine::gleap_settings(pipeline, gleap_target)?;
        let client = Arc::new(GleapClient::new(settings)?);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::internal(format!("cannot start the async runtime: {e}")))?;
        let team = streams
            .iter()
            .any(|(_, g)| g.agents.is_some())
            .then(crate::sinks::gleap::agents::TeamCache::default);
        Ok(SourceReading {
            previews,
            upload_target: crate::files::upload_target(&client),
            client,
            runtime,
            team,
            streams,
            not_covered,
        })
    }

    /// Records stream `name`'s source yields after the transforms.
    pub fn source_len(&self, name: &str) -> u64 {
        self.previews
            .iter()
            .find(|p| p.name == name)
            .map_or(0, |p| (p.records.len() + p.dead_letters.len()) as u64)
    }

    /// Whether a stream sends agents, so that the team is read (one request).
    pub fn has_team(&self) -> bool {
        self.team.is_some()
    }

    /// Stream `name`'s records as its sink would send them, with references resolved
    /// through the id map `store` holds now; with `selected`, only those (the others are
    /// counted as outside).
    pub fn prepare(
        &self,
        name: &str,
        config: &GleapSinkConfig,
        store: &StateStore,
        selected: Option<&HashSet<String>>,
    ) -> Result<Prepared> {
        let preview = self
            .previews
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| Error::internal(format!("stream `{name}` was not read")))?;
        if let Some(e) = &preview.error {
            return Err(Error::input(
                format!("stream `{name}`"),
                format!("cannot read its source: {e}"),
            ));
        }
        let mut preparer = Preparer::new(name, config, store)?;
        if let (Some(agents), Some(team)) = (&config.agents, &self.team) {
            let members = self.runtime.block_on(team.get(&self.client));
            let agents = crate::sinks::gleap::agents::Agents::new(agents, config.entity, members)?;
            preparer = preparer.with_agents(Arc::new(agents));
        }
        let mut items = Vec::new();
        let mut not_sent: Vec<(String, String)> = preview
            .dead_letters
            .iter()
            .map(|d| {
                let at = d.line.map_or(format!("{} row {}", d.file, d.row), |l| {
                    format!("{}:{l}", d.file)
                });
                (at, format!("{}: {}", d.stage, d.reason))
            })
            .collect();
        // A sample run wrote only its sample: the other records are neither checked nor
        // taken for gone from the source; records the transforms reject were never in it.
        if selected.is_some() {
            not_sent.clear();
        }
        let mut outside = HashSet::new();
        for record in &preview.records {
            // Read before: the sink takes the id out of the record.
            let id = config.source_id(record);
            if let Some(selected) = selected
                && !id.as_ref().is_some_and(|id| selected.contains(id))
            {
                outside.extend(id);
                continue;
            }
            let id = id.unwrap_or_else(|| "(no id)".into());
            match preparer.prepare(record.clone()) {
                Ok(mut p) => {
                    if config.attachments == crate::files::AttachmentsMode::Rehost {
                        // Sent with the Gleap URLs of the files earlier runs re-hosted.
                        let mut body = Value::Object(std::mem::take(&mut p.body));
                        crate::files::rewrite_rehosted(store, &self.upload_target, &mut body);
                        if let Value::Object(map) = body {
                            p.body = map;
                        }
                    }
                    let ticket = p
                        .parents
                        .iter()
                        .find(|r| r.field == "ticket")
                        .map(|r| (r.source_id.clone(), r.gleap_id.clone()));
                    items.push(Item {
                        source_id: p.source_id,
                        hash: p.hash,
                        body: p.body,
                        ticket,
                    });
                }
                Err((reason, _)) => {
                    not_sent.push((id, format!("sink: {reason}")));
                }
            }
        }
        Ok(Prepared {
            name: name.to_string(),
            config: config.clone(),
            map: store.load_map(name)?,
            items,
            not_sent,
            outside,
        })
    }
}

/// List pages a listing of `n` records takes: full pages, then a short or empty one.
pub(crate) fn pages(n: u64) -> u64 {
    if n == 0 {
        1
    } else if n < PAGE as u64 {
        2
    } else {
        n / PAGE as u64 + 1
    }
}

/// Requests to read one ticket's `n` messages: one while the page is shorter than any cap.
pub(crate) fn ticket_cost(n: u64) -> u64 {
    if n < SMALLEST_PAGE_CAP as u64 {
        1
    } else {
        n / PAGE as u64 + 2
    }
}

/// Verifies `pipeline`; `on_estimate` hears the cost before the first request.
pub fn verify(
    pipeline: &Pipeline,
    options: &VerifyOptions,
    on_estimate: impl FnOnce(&Estimate),
) -> Result<VerifyReport> {
    let state_dir = pipeline.state_dir(options.state_dir.as_deref());
    if !state_dir.join("state.sqlite").exists() {
        return Err(Error::config(format!(
            "no state store in {}: verify compares through the id map of earlier runs, and no run has written to Gleap from there (a different --state-dir?)",
            state_dir.display()
        )));
    }
    let store = StateStore::open(&state_dir)?;
    // After `run --sample` (and no full run since), the sample is what is expected in Gleap.
    let sample = store.sample()?;
    let reading = SourceReading::open(pipeline, options.gleap_target.as_ref(), "verify")?;
    let not_verified = reading.not_covered.clone();
    let team_requests = u64::from(reading.has_team());
    let mut streams = Vec::new();
    for (name, config) in &reading.streams {
        let selected = sample
            .as_ref()
            .map(|(_, streams)| streams.get(name).cloned().unwrap_or_default());
        streams.push(reading.prepare(name, config, &store, selected.as_ref())?);
    }
    let SourceReading {
        client, runtime, ..
    } = reading;

    // Which tickets are checked deeply.
    let mut rng = fastrand::Rng::with_seed(options.seed.unwrap_or_else(|| fastrand::u64(..)));
    let mut deep: Vec<String> = Vec::new();
    let mut counted_tickets = false;
    let mut messages_per_ticket: HashMap<String, u64> = HashMap::new();
    let mut all_messages = 0u64;
    for s in streams
        .iter()
        .filter(|s| s.config.entity == Entity::Messages)
    {
        for item in &s.items {
            if let Some((_, t)) = &item.ticket {
                *messages_per_ticket.entry(t.clone()).or_default() += 1;
            }
        }
        all_messages += (s.items.len() as u64).max(s.map.len() as u64);
    }
    let mut candidates: Vec<String> = messages_per_ticket.keys().cloned().collect();
    candidates.sort();
    match options.sample {
        Some(n) if n < candidates.len() => {
            rng.shuffle(&mut candidates);
            candidates.truncate(n);
            candidates.sort();
            counted_tickets = true;
        }
        _ => {}
    }
    deep.extend(candidates);
    let size = |entity: Entity| -> Option<u64> {
        let of: Vec<&Prepared> = streams
            .iter()
            .filter(|s| s.config.entity == entity)
            .collect();
        (!of.is_empty()).then(|| {
            of.iter()
                .map(|s| (s.items.len() as u64).max(s.map.len() as u64))
                .sum()
        })
    };
    let mut estimate = Estimate {
        session_pages: size(Entity::Sessions).map_or(0, pages),
        ticket_pages: size(Entity::Tickets).map_or(0, pages),
        message_pages: if counted_tickets {
            pages(all_messages)
        } else {
            0
        },
        deep_tickets: deep.len() as u64,
        team: team_requests,
        requests: 0,
    };
    estimate.requests = estimate.session_pages
        + estimate.ticket_pages
        + estimate.message_pages
        + estimate.team
        + deep
            .iter()
            .map(|t| ticket_cost(messages_per_ticket[t]))
            .sum::<u64>();
    on_estimate(&estimate);

    // What Gleap holds.
    let counters = Arc::new(RequestCounters::default());
    let fetched = runtime.block_on(fetch(
        client.clone(),
        counters,
        estimate.session_pages > 0,
        estimate.ticket_pages > 0,
        counted_tickets,
        deep.clone(),
    ));
    let gleap = fetched.map_err(|e| Error::paging("reading Gleap", &e))?;

    let mut problems = Vec::new();
    let mut summaries = Vec::new();
    let deep_set: HashSet<&str> = deep.iter().map(String::as_str).collect();
    for s in &streams {
        let mut summary = StreamSummary {
            stream: s.name.clone(),
            entity: s.config.entity.name(),
            in_source: (s.items.len() + s.not_sent.len()) as u64,
            dead_lettered: s.not_sent.len() as u64,
            ..Default::default()
        };
        let mut found = match s.config.entity {
            Entity::Sessions => check_sessions(s, &gleap.sessions),
            Entity::Tickets => check_tickets(s, &gleap.tickets),
            _ => check_messages(s, &gleap, &deep_set, &mut summary),
        };
        if s.config.entity == Entity::Tickets {
            // Gone from the source and archived: pruned (`run --prune`), as it should be.
            let archived: HashSet<&str> = gleap
                .tickets
                .iter()
                .filter(|d| d.get("archived") == Some(&Value::Bool(true)))
                .filter_map(answer::id)
                .collect();
            found.retain(|p| {
                let pruned = p.kind == ProblemKind::GoneFromSource
                    && !p.gleap_ids.is_empty()
                    && p.gleap_ids.iter().all(|id| archived.contains(id.as_str()));
                summary.pruned += u64::from(pruned);
                !pruned
            });
        }
        for (record, reason) in &s.not_sent {
            found.push(problem(
                &s.name,
                ProblemKind::NotSent,
                record,
                reason.clone(),
            ));
        }
        let mut troubled: HashSet<&str> = HashSet::new();
        for p in &found {
            let n = p.records.len() as u64;
            match p.kind {
                ProblemKind::Missing => summary.missing += n,
                ProblemKind::Twice => summary.twice += n,
                ProblemKind::Changed => summary.changed += n,
                ProblemKind::OutOfOrder => summary.out_of_order += n,
                ProblemKind::GoneFromSource => summary.gone_from_source += n,
                ProblemKind::NotSent => {}
            }
            if p.kind != ProblemKind::GoneFromSource {
                troubled.extend(p.records.iter().map(String::as_str));
            }
        }
        summary.arrived_equal = s
            .items
            .iter()
            .filter(|i| !troubled.contains(i.source_id.as_str()))
            .count() as u64;
        problems.extend(found);
        summaries.push(summary);
    }
    let (requests, _, _) = client.totals.snapshot();
    let sample = sample.map(|(run, _)| {
        let of = |entity: &str| -> u64 {
            summaries
                .iter()
                .filter(|s| s.entity == entity)
                .map(|s| s.in_source)
                .sum()
        };
        let records = ["tickets", "messages", "sessions"]
            .iter()
            .filter(|e| summaries.iter().any(|s| s.entity == **e))
            .map(|e| format!("{} {e}", of(e)))
            .collect::<Vec<_>>()
            .join(", ");
        SampleScope {
            run,
            description: format!(
                "verifying the sample of run {run}: {records} (what `run --sample` wrote; the other records of the source are not checked until a full run)"
            ),
        }
    });
    Ok(VerifyReport {
        sample,
        pipeline: pipeline.name().to_string(),
        estimate,
        requests,
        ok: problems.is_empty(),
        streams: summaries,
        problems,
        not_verified,
    })
}

/// What was read from Gleap.
#[derive(Default)]
struct Gleap {
    sessions: Vec<Value>,
    tickets: Vec<Value>,
    /// Every message of the project, when some tickets are checked by counts.
    all_messages: Option<Vec<Value>>,
    /// The messages of each deeply checked ticket, in Gleap's conversation order.
    by_ticket: HashMap<String, Vec<Value>>,
}

async fn fetch(
    client: Arc<GleapClient>,
    counters: Arc<RequestCounters>,
    sessions: bool,
    tickets: bool,
    all_messages: bool,
    deep: Vec<String>,
) -> std::result::Result<Gleap, PagingError> {
    let mut out = Gleap::default();
    if sessions {
        out.sessions = list_every(&client, &counters, "/sessions").await?;
    }
    if tickets {
        out.tickets = list_every(&client, &counters, "/tickets").await?;
    }
    if all_messages {
        out.all_messages = Some(list_every(&client, &counters, "/messages").await?);
    }
    // The tickets' messages, as many at a time as the client allows.
    let limit = Arc::new(tokio::sync::Semaphore::new(client.concurrency().max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for ticket in deep {
        let (client, counters, limit) = (client.clone(), counters.clone(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let messages = ticket_messages(&client, &counters, &ticket).await;
            (ticket, messages)
        });
    }
    while let Some(done) = tasks.join_next().await {
        let (ticket, messages) =
            done.map_err(|e| PagingError::Request(format!("a listing task failed: {e}")))?;
        out.by_ticket.insert(ticket, messages?);
    }
    Ok(out)
}

/// Every record of a list endpoint, page by page (safe paging, no filter).
pub(crate) async fn list_every(
    client: &GleapClient,
    counters: &RequestCounters,
    path: &str,
) -> std::result::Result<Vec<Value>, PagingError> {
    let mut all = Vec::new();
    paging::list_all(client, counters, path, &[], PAGE, |page| all.extend(page)).await?;
    Ok(all)
}

/// `GET /messages?ticket=ID`, every page: a page shorter than asked and than any cap on page
/// length ([`SMALLEST_PAGE_CAP`]) ends it, so a ticket of a usual length costs one request.
/// Messages of other tickets (an ignored filter) are left out.
pub(crate) async fn ticket_messages(
    client: &GleapClient,
    counters: &RequestCounters,
    ticket: &str,
) -> std::result::Result<Vec<Value>, PagingError> {
    let mut guard = PageGuard::new("GET /messages");
    let mut skip = 0usize;
    let mut total = None;
    let mut out = Vec::new();
    let limit = PAGE.to_string();
    loop {
        let skip_text = skip.to_string();
        let mut q = vec![("ticket", ticket), ("limit", limit.as_str())];
        if skip > 0 {
            q.push(("skip", &skip_text));
        }
        let answer = client
            .call(Method::GET, "/messages", &q, None, false, counters)
            .await
            .map_err(|e| PagingError::Request(format!("GET /messages?ticket={ticket}: {e}")))?;
        if answer.status == 404 {
            break;
        }
        let page = answer::list(answer.body)
            .map_err(|e| PagingError::Shape(format!("GET /messages answered {e}")))?;
        total = total.or(page.total);
        let got = page.items.len();
        let verdict = guard.check(client.page_sizes(), PAGE, skip, page.items)?;
        out.extend(verdict.fresh);
        if !verdict.more || got < SMALLEST_PAGE_CAP {
            break;
        }
        skip += got;
    }
    guard.check_total(total)?;
    out.retain(|m| answer::field_ref(m, "ticket") == Some(ticket));
    Ok(out)
}

/// A value for a human line, cut short.
fn short(v: Option<&Value>) -> String {
    let text = match v {
        None | Some(Value::Null) => "nothing".to_string(),
        Some(Value::String(s)) => format!("{s:?}"),
        Some(r @ Value::Object(_)) if answer::ref_id(r).is_some() => {
            answer::ref_id(r).unwrap_or_default().to_string()
        }
        Some(v) => v.to_string(),
    };
    if text.chars().count() > 60 {
        format!("{}…", text.chars().take(59).collect::<String>())
    } else {
        text
    }
}

/// How the changed fields differ: `title: Gleap "x", sent "y"`.
fn changes(body: &Map<String, Value>, remote: &Value, fields: &[String]) -> String {
    fields
        .iter()
        .map(|f| {
            let (gleap, sent) = match f.as_str() {
                "comment" => (
                    answer::message_content(remote).map(answer::content_text),
                    body.get(f).map(answer::content_text),
                ),
                "isNote" => (
                    Some(answer::is_note(remote).to_string()),
                    body.get(f).map(|v| v.to_string()),
                ),
                _ => (Some(short(remote.get(f))), Some(short(body.get(f)))),
            };
            format!(
                "{f}: Gleap {}, sent {}",
                gleap.unwrap_or_else(|| "nothing".into()),
                sent.unwrap_or_else(|| "nothing".into())
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn problem(stream: &str, kind: ProblemKind, record: &str, detail: String) -> Problem {
    Problem {
        stream: stream.to_string(),
        kind,
        records: vec![record.to_string()],
        ticket: None,
        gleap_ids: Vec::new(),
        fields: Vec::new(),
        detail,
    }
}

/// Sessions and tickets: each record found by its mapped id, else by its key; compared;
/// copies by key; records this pipeline made that the source no longer has.
fn check_keyed(
    s: &Prepared,
    docs: &[Value],
    key_of: &dyn Fn(&Value) -> Option<String>,
    key_of_item: &dyn Fn(&Item) -> String,
    key_name: &str,
) -> Vec<Problem> {
    let by_id: HashMap<&str, &Value> = docs
        .iter()
        .filter_map(|d| answer::id(d).map(|id| (id, d)))
        .collect();
    let mut by_key: HashMap<String, Vec<&Value>> = HashMap::new();
    for d in docs {
        if let Some(k) = key_of(d) {
            by_key.entry(k).or_default().push(d);
        }
    }
    let mut problems = Vec::new();
    let mut source_keys = HashSet::new();
    for item in &s.items {
        let key = key_of_item(item);
        source_keys.insert(key.clone());
        let mapped = s.map.get(&item.source_id).map(|e| e.gleap_id.as_str());
        let same_key = by_key.get(&key).map(Vec::as_slice).unwrap_or_default();
        let doc = mapped
            .and_then(|id| by_id.get(id).copied())
            .or_else(|| same_key.first().copied());
        let Some(doc) = doc else {
            let detail = match mapped {
                Some(id) => format!("mapped to {id}, which Gleap does not hold"),
                None => format!("not in the id map, and no record in Gleap has {key_name} {key:?}"),
            };
            let mut p = problem(&s.name, ProblemKind::Missing, &item.source_id, detail);
            p.gleap_ids.extend(mapped.map(str::to_string));
            problems.push(p);
            continue;
        };
        let id = answer::id(doc).unwrap_or_default().to_string();
        if same_key.len() > 1 {
            let ids: Vec<String> = same_key
                .iter()
                .filter_map(|d| answer::id(d).map(str::to_string))
                .collect();
            let mut p = problem(
                &s.name,
                ProblemKind::Twice,
                &item.source_id,
                format!("{} records in Gleap have {key_name} {key:?}", ids.len()),
            );
            p.gleap_ids = ids;
            problems.push(p);
        }
        let fields = differing_fields(&item.body, doc);
        if !fields.is_empty() {
            let mut p = problem(
                &s.name,
                ProblemKind::Changed,
                &item.source_id,
                changes(&item.body, doc, &fields),
            );
            p.gleap_ids = vec![id];
            p.fields = fields;
            problems.push(p);
        }
    }
    // Made by this pipeline, gone from the source: mapped ids, and (tickets) importIds.
    let source_ids: HashSet<&str> = s.source_ids();
    let mut gone: Vec<(String, String)> = s
        .map
        .iter()
        .filter(|(sid, e)| {
            !source_ids.contains(sid.as_str()) && by_id.contains_key(e.gleap_id.as_str())
        })
        .map(|(sid, e)| (sid.clone(), e.gleap_id.clone()))
        .collect();
    if s.config.entity == Entity::Tickets {
        let prefix = format!("{}:", s.name);
        let known: HashSet<String> = gone.iter().map(|(_, g)| g.clone()).collect();
        for (key, docs) in &by_key {
            if let Some(sid) = key.strip_prefix(&prefix)
                && !source_keys.contains(key)
                && !s.outside.contains(sid)
            {
                for d in docs {
                    if let Some(id) = answer::id(d)
                        && !known.contains(id)
                    {
                        gone.push((sid.to_string(), id.to_string()));
                    }
                }
            }
        }
    }
    gone.sort();
    for (sid, id) in gone {
        let mut p = problem(
            &s.name,
            ProblemKind::GoneFromSource,
            &sid,
            format!("{id} was created by this pipeline; the source no longer has it"),
        );
        p.gleap_ids = vec![id];
        problems.push(p);
    }
    problems
}

fn check_sessions(s: &Prepared, docs: &[Value]) -> Vec<Problem> {
    let key = s.config.key().field();
    check_keyed(
        s,
        docs,
        &|d| d.get(key).and_then(id_text),
        &|i| i.source_id.clone(),
        key,
    )
}

fn check_tickets(s: &Prepared, docs: &[Value]) -> Vec<Problem> {
    check_keyed(
        s,
        docs,
        &|d| answer::import_marker(d).map(str::to_string),
        &|i| crate::sinks::gleap::import_id(&s.name, &i.source_id),
        "customData.importId",
    )
}

/// Messages, ticket by ticket: by mapped id (else by text), compared (deeply checked
/// tickets), copies by text, order (deeply checked tickets), left-overs.
fn check_messages(
    s: &Prepared,
    gleap: &Gleap,
    deep: &HashSet<&str>,
    summary: &mut StreamSummary,
) -> Vec<Problem> {
    let mut by_ticket: HashMap<&str, Vec<&Item>> = HashMap::new();
    let mut ticket_source: HashMap<&str, &str> = HashMap::new();
    for item in &s.items {
        if let Some((sid, gid)) = &item.ticket {
            by_ticket.entry(gid).or_default().push(item);
            ticket_source.insert(gid, sid);
        }
    }
    let mut counted: HashMap<String, Vec<Value>> = HashMap::new();
    if let Some(all) = &gleap.all_messages {
        for m in all {
            if let Some(t) = answer::field_ref(m, "ticket") {
                counted.entry(t.to_string()).or_default().push(m.clone());
            }
        }
    }
    let source_of: HashMap<&str, &str> = s
        .map
        .iter()
        .map(|(sid, e)| (e.gleap_id.as_str(), sid.as_str()))
        .collect();
    let source_ids: HashSet<&str> = s.source_ids();
    let mut tickets: Vec<&str> = by_ticket.keys().copied().collect();
    tickets.sort();
    let mut problems = Vec::new();
    let text = |v: Option<&Value>| v.map(answer::content_text).unwrap_or_default();
    for ticket in tickets {
        let items = &by_ticket[ticket];
        let is_deep = deep.contains(ticket);
        let docs: &[Value] = if is_deep {
            summary.deep_tickets += 1;
            gleap
                .by_ticket
                .get(ticket)
                .map(Vec::as_slice)
                .unwrap_or_default()
        } else {
            summary.by_count += items.len() as u64;
            counted.get(ticket).map(Vec::as_slice).unwrap_or_default()
        };
        let ticket_sid = ticket_source.get(ticket).copied().unwrap_or(ticket);
        let on = format!("ticket {ticket_sid} ({ticket})");
        let p_for = |kind, record: &str, detail: String, ids: Vec<String>| {
            let mut p = problem(&s.name, kind, record, detail);
            p.ticket = Some(ticket_sid.to_string());
            p.gleap_ids = ids;
            p
        };
        let position: HashMap<&str, usize> = docs
            .iter()
            .enumerate()
            .filter_map(|(i, d)| answer::id(d).map(|id| (id, i)))
            .collect();
        let mut used: Vec<Option<usize>> = vec![None; docs.len()];
        let mut matched: Vec<Option<usize>> = vec![None; items.len()];
        for (n, item) in items.iter().enumerate() {
            if let Some(e) = s.map.get(&item.source_id)
                && let Some(&at) = position.get(e.gleap_id.as_str())
            {
                used[at] = Some(n);
                matched[n] = Some(at);
            }
        }
        // Not in the id map (a lost state): found by text among the messages left.
        for (n, item) in items.iter().enumerate() {
            if matched[n].is_some() || s.map.contains_key(&item.source_id) {
                continue;
            }
            let want = text(item.body.get("comment"));
            if let Some(at) = (0..docs.len())
                .find(|&at| used[at].is_none() && text(answer::message_content(&docs[at])) == want)
            {
                used[at] = Some(n);
                matched[n] = Some(at);
            }
        }
        for (n, item) in items.iter().enumerate() {
            match matched[n] {
                None => {
                    let mapped = s.map.get(&item.source_id).map(|e| e.gleap_id.clone());
                    let detail = match &mapped {
                        Some(id) => format!(
                            "mapped to {id}, which is not among the {} messages of {on}",
                            docs.len()
                        ),
                        None => format!("not in the id map, and {on} has no message with its text"),
                    };
                    problems.push(p_for(
                        ProblemKind::Missing,
                        &item.source_id,
                        detail,
                        mapped.into_iter().collect(),
                    ));
                }
                Some(at) if is_deep => {
                    let fields = differing_fields(&item.body, &docs[at]);
                    if !fields.is_empty() {
                        let mut p = p_for(
                            ProblemKind::Changed,
                            &item.source_id,
                            changes(&item.body, &docs[at], &fields),
                            answer::id(&docs[at])
                                .map(str::to_string)
                                .into_iter()
                                .collect(),
                        );
                        p.fields = fields;
                        problems.push(p);
                    }
                }
                Some(_) => {}
            }
        }
        // The messages left: made by this pipeline for records gone from the source, copies
        // of a record's text, or written in Gleap since.
        let mut copies: HashMap<usize, Vec<String>> = HashMap::new();
        for (at, doc) in docs.iter().enumerate() {
            if used[at].is_some() {
                continue;
            }
            let id = answer::id(doc).unwrap_or_default().to_string();
            if let Some(sid) = source_of.get(id.as_str())
                && !source_ids.contains(sid)
            {
                problems.push(p_for(
                    ProblemKind::GoneFromSource,
                    sid,
                    format!("{id} was created by this pipeline; the source no longer has it"),
                    vec![id],
                ));
                continue;
            }
            let have = text(answer::message_content(doc));
            match items
                .iter()
                .position(|i| !have.is_empty() && text(i.body.get("comment")) == have)
            {
                Some(n) => copies.entry(n).or_default().push(id),
                None => summary.others_in_gleap += 1,
            }
        }
        let mut copied: Vec<_> = copies.into_iter().collect();
        copied.sort();
        for (n, extra) in copied {
            let mut ids: Vec<String> = matched[n]
                .and_then(|at| answer::id(&docs[at]))
                .map(str::to_string)
                .into_iter()
                .collect();
            ids.extend(extra);
            problems.push(p_for(
                ProblemKind::Twice,
                &items[n].source_id,
                format!(
                    "{} messages of {on} have its text; the source has it once",
                    ids.len()
                ),
                ids,
            ));
        }
        // Order: the records in Gleap's order against the source's.
        if is_deep {
            let in_gleap: Vec<usize> = used.iter().flatten().copied().collect();
            let misplaced = misplaced(&in_gleap);
            if !misplaced.is_empty() {
                let mut in_order = misplaced.clone();
                in_order.sort();
                let names = |ns: &[usize]| {
                    ns.iter()
                        .map(|&n| items[n].source_id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let mut p = p_for(
                    ProblemKind::OutOfOrder,
                    "",
                    format!(
                        "{on} shows {} in this order; the source has {}",
                        names(&misplaced),
                        names(&in_order)
                    ),
                    misplaced
                        .iter()
                        .filter_map(|&n| matched[n].and_then(|at| answer::id(&docs[at])))
                        .map(str::to_string)
                        .collect(),
                );
                p.records = in_order
                    .iter()
                    .map(|&n| items[n].source_id.clone())
                    .collect();
                problems.push(p);
            }
        }
    }
    problems
}

/// The records (by source position) Gleap shows at another place than the source among the
/// records found, in Gleap's order: both of two swapped messages.
fn misplaced(in_gleap: &[usize]) -> Vec<usize> {
    let mut in_source = in_gleap.to_vec();
    in_source.sort();
    in_gleap
        .iter()
        .zip(&in_source)
        .filter(|(g, s)| g != s)
        .map(|(g, _)| *g)
        .collect()
}

/// Rows as aligned columns: the first `left` columns flush left, the others (counts) right.
pub(crate) fn render_table(rows: &[Vec<String>], left: usize) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |cell| cell.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (cell, w))| {
                if c < left {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

impl VerifyReport {
    /// Exit 0 when all arrived and equal, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        if self.ok {
            engine::EXIT_OK
        } else {
            engine::EXIT_DEAD_LETTERS
        }
    }

    /// The human table.
    pub fn table(&self) -> String {
        let mut out = self
            .sample
            .as_ref()
            .map(|s| format!("{}\n", s.description))
            .unwrap_or_default();
        out.push_str(&format!(
            "verify {}: {} requests (estimated {})\n\n",
            self.pipeline, self.requests, self.estimate.requests
        ));
        let header = [
            "stream",
            "entity",
            "in source",
            "arrived, equal",
            "missing",
            "twice",
            "changed",
            "out of order",
            "gone from source",
            "dead-lettered",
        ];
        let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
        for s in &self.streams {
            let order = if s.entity == "messages" {
                s.out_of_order.to_string()
            } else {
                "-".into()
            };
            rows.push(vec![
                s.stream.clone(),
                s.entity.to_string(),
                s.in_source.to_string(),
                s.arrived_equal.to_string(),
                s.missing.to_string(),
                s.twice.to_string(),
                s.changed.to_string(),
                order,
                s.gone_from_source.to_string(),
                s.dead_lettered.to_string(),
            ]);
        }
        out.push_str(&render_table(&rows, 2));
        for s in &self.streams {
            if s.pruned > 0 {
                out.push_str(&format!(
                    "\n{}: {} gone from the source and archived in Gleap (run --prune): pruned, not a problem\n",
                    s.stream,
                    crate::engine::report::plural(s.pruned, "ticket", "tickets")
                ));
            }
            if s.entity == "messages" {
                out.push_str(&format!(
                    "\n{}: {} tickets checked message by message (text and order){}{}\n",
                    s.stream,
                    s.deep_tickets,
                    if s.by_count > 0 {
                        format!(
                            "; {} messages on the other tickets checked by counts only",
                            s.by_count
                        )
                    } else {
                        String::new()
                    },
                    if s.others_in_gleap > 0 {
                        format!(
                            "; {} messages on them were written in Gleap, not by this pipeline",
                            s.others_in_gleap
                        )
                    } else {
                        String::new()
                    }
                ));
            }
        }
        if !self.problems.is_empty() {
            out.push_str(&format!("\n{} problems:\n", self.problems.len()));
            for p in &self.problems {
                let on = p
                    .ticket
                    .as_ref()
                    .map(|t| format!(" (ticket {t})"))
                    .unwrap_or_default();
                out.push_str(&format!(
                    "  {} {}{on}: {}: {}\n",
                    p.stream,
                    p.records.join(", "),
                    p.kind.label(),
                    p.detail
                ));
            }
        }
        for n in &self.not_verified {
            out.push_str(&format!("not verified: {n}\n"));
        }
        out.push_str(if self.ok {
            "\nall arrived and equal\n"
        } else {
            "\nnot everything arrived as sent\n"
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_estimates_follow_safe_paging() {
        assert_eq!(pages(0), 1);
        assert_eq!(pages(5), 2, "a short first page is not trusted: one more");
        assert_eq!(pages(1000), 2);
        assert_eq!(pages(1500), 2, "a page shorter than the one before ends it");
        assert_eq!(pages(2000), 3);
        assert_eq!(ticket_cost(3), 1);
        assert_eq!(ticket_cost(40), 2);
    }

    fn item(id: &str, comment: Value, note: bool) -> Item {
        let body = serde_json::json!({"ticket": "g-t1", "comment": comment, "isNote": note,
                                      "sendToChannel": false});
        Item {
            source_id: id.into(),
            hash: 0,
            body: body.as_object().unwrap().clone(),
            ticket: Some(("T1".into(), "g-t1".into())),
        }
    }

    #[test]
    fn messages_are_read_tolerantly_and_copies_and_others_told_apart() {
        use serde_json::json;
        let doc = json!({"type": "doc", "content": [{"type": "paragraph",
                         "content": [{"type": "text", "text": "Hello  there"}]}]});
        let config: GleapSinkConfig =
            serde_json::from_value(json!({"entity": "messages"})).unwrap();
        let map = [("a", "g1"), ("b", "g2"), ("c", "g3")]
            .iter()
            .map(|(s, g)| {
                let entry = MapEntry {
                    gleap_id: g.to_string(),
                    hash: 0,
                };
                (s.to_string(), entry)
            })
            .collect();
        let s = Prepared {
            name: "messages".into(),
            config,
            items: vec![
                item("a", doc.clone(), false),
                item("b", json!("a note"), true),
                item("c", json!("third"), false),
            ],
            map,
            not_sent: Vec::new(),
            outside: HashSet::new(),
        };
        // `_id` or `id`; text in data.content (a string for a document sent) or `comment`;
        // a note by its type; a copy of "third"; an agent's reply written in Gleap.
        let answered = vec![
            json!({"_id": "g1", "ticket": {"id": "g-t1"}, "comment": null,
                   "data": {"content": "Hello there"}}),
            json!({"id": "g2", "ticket": "g-t1", "type": "NOTE", "comment": "a note"}),
            json!({"id": "g3", "ticket": "g-t1", "data": {"content": "third"}}),
            json!({"id": "g4", "ticket": "g-t1", "data": {"content": "third"}}),
            json!({"id": "g5", "ticket": "g-t1", "data": {"content": "Thanks, fixed"}}),
        ];
        let gleap = Gleap {
            by_ticket: [("g-t1".to_string(), answered.clone())].into(),
            ..Default::default()
        };
        let deep: HashSet<&str> = ["g-t1"].into();
        let mut summary = StreamSummary::default();
        let problems = check_messages(&s, &gleap, &deep, &mut summary);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].kind, ProblemKind::Twice);
        assert_eq!(problems[0].records, ["c"]);
        assert_eq!(problems[0].gleap_ids, ["g3", "g4"]);
        assert_eq!(summary.others_in_gleap, 1);
        // The note answered as a comment: changed, `isNote`.
        let mut edited = answered;
        edited[1]["type"] = json!("COMMENT");
        let gleap = Gleap {
            by_ticket: [("g-t1".to_string(), edited)].into(),
            ..Default::default()
        };
        let problems = check_messages(&s, &gleap, &deep, &mut summary);
        let changed: Vec<_> = problems
            .iter()
            .filter(|p| p.kind == ProblemKind::Changed)
            .collect();
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].records, ["b"]);
        assert_eq!(changed[0].fields, ["isNote"]);
        assert!(
            changed[0].detail.contains("isNote: Gleap false, sent true"),
            "{}",
            changed[0].detail
        );
    }

    #[test]
    fn misplaced_messages_are_those_not_where_the_source_has_them() {
        assert_eq!(misplaced(&[0, 1, 2, 3]), Vec::<usize>::new());
        assert_eq!(misplaced(&[0, 2, 1, 3]), vec![2, 1], "a swap names both");
        // A missing message (1) moves nothing out of order.
        assert_eq!(misplaced(&[0, 2, 3]), Vec::<usize>::new());
        assert_eq!(misplaced(&[3, 0, 1, 2]), vec![3, 0, 1, 2]);
    }
}
