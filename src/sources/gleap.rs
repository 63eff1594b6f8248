//! Gleap source: sessions, tickets or messages read back from Gleap's API, for exports.
//!
//! Pages are read by keyset, not by a growing `skip`: sorted by `updatedAt` (or `createdAt`),
//! each request asks for `field >= <the last value read>`, and the records at that value
//! already read are left out by id. The window is closed at the start of a run by the newest
//! value Gleap holds then (`field <= upper`), by Gleap's own clock: records created or
//! changed while a long export runs are neither skipped nor read twice; they belong to the
//! next (incremental) run. Should more than a page of records share one value, the pages at
//! that value move by `skip`.
//!
//! Where the source stands after each page (the [`Cursor`]) is published on a [`CursorLog`]:
//! a sink that makes its output durable in steps (a Parquet dataset) commits the cursor with
//! each step, so a killed export resumes after its last committed step. With
//! `incremental: true` the next run reads only what changed since the last complete one.
//!
//! Nothing about Gleap's paging is taken on trust (`crate::gleap::paging`): a page shorter
//! than asked ends the read only once a longer one was seen (pages may be capped below
//! `limit`); a record before the window, after it or out of order, a page longer than asked
//! and a page repeated for another `skip` stop the read with an error naming the problem;
//! tickets are counted against Gleap's `totalCount`. Answers are read with
//! `crate::gleap::answer` (`id` or `_id`); every record carries `_id` in the output.
//!
//! Messages are read ticket by ticket through the documented `ticket=` filter, in
//! conversation order: the tickets are paged as above (for an incremental run, those changed
//! since the cursor, whose new messages moved them), and of each ticket's messages those at
//! or after the window's start are kept. `GET /messages` ignores `sort`
//! (tmcinerney/gleap commit 617ecce), so it cannot be paged by time itself.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{OpenedSource, ProgressUnit, Rejected, SourceItem, SourceProgress};
use crate::error::{Error, Result};
use crate::gleap::answer::{self, ListPage};
use crate::gleap::client::{MAX_PAGE_SIZE, RequestCounters};
use crate::gleap::model::{Field, FieldKind};
use crate::gleap::paging::{PagingError, list_all};
use crate::record::{FieldType, Position};
use crate::sinks::gleap::{Entity, GleapRun};

/// Reads sessions, tickets or messages from Gleap.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GleapSourceConfig {
    /// What to read: `sessions`, `tickets` or `messages`.
    pub entity: Entity,
    /// Only records whose order field is at or after this instant (RFC 3339 or a date).
    #[serde(default)]
    pub since: Option<String>,
    /// Records per request, 1 to 1000. Default 1000.
    #[serde(default = "default_page_size")]
    #[schemars(range(min = 1, max = 1000))]
    pub page_size: usize,
    /// The field pages are ordered and windowed by: `updatedAt` or `createdAt`. Default:
    /// `updatedAt` when incremental (changes are what the next run wants), else `createdAt`
    /// (it never moves, so a record changed during the export is still read exactly once).
    /// Messages are read ticket by ticket, the tickets paged by this field (by `updatedAt`
    /// also when `since` is set: a new message moves its ticket's).
    #[serde(default)]
    pub order_by: Option<OrderField>,
    /// Keep the cursor in the state store: the next run reads only records whose order field
    /// is at or after where this one ended.
    #[serde(default)]
    pub incremental: bool,
}

fn default_page_size() -> usize {
    MAX_PAGE_SIZE
}

impl GleapSourceConfig {
    /// Reads every record of `entity`, with the defaults a pipeline file gets.
    pub fn new(entity: Entity) -> GleapSourceConfig {
        GleapSourceConfig {
            entity,
            since: None,
            page_size: default_page_size(),
            order_by: None,
            incremental: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum OrderField {
    #[serde(rename = "updatedAt", alias = "updated_at")]
    UpdatedAt,
    #[serde(rename = "createdAt", alias = "created_at")]
    CreatedAt,
}

impl OrderField {
    pub fn name(self) -> &'static str {
        match self {
            OrderField::UpdatedAt => "updatedAt",
            OrderField::CreatedAt => "createdAt",
        }
    }
}

/// Where a read stands. Stored (as JSON) in the state store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub entity: String,
    pub order_by: String,
    /// Where this run's window starts (inclusive); `None`: the beginning.
    pub from: Option<String>,
    /// Where it ends (inclusive): the newest value when the run started. `None` until known.
    pub upper: Option<String>,
    /// The id of the record at `upper` that comes last in the window (the newest): once it
    /// is read, the window is.
    #[serde(default)]
    pub upper_id: Option<String>,
    /// The last value read.
    pub after: Option<String>,
    /// Ids read whose value is `after`.
    pub seen: Vec<String>,
    /// Records to skip at `after`, when more than a page share that value.
    #[serde(default)]
    pub skip: usize,
    /// The window is read to its end.
    pub complete: bool,
    /// Records (tickets, for messages) of the window read so far.
    #[serde(default)]
    pub read: u64,
    /// Ids read at the window's start value by the run before (`seen` when it started).
    #[serde(default)]
    pub carried: u64,
    /// Tickets: how many Gleap counted in the window when its first page was read, less
    /// `carried`.
    #[serde(default)]
    pub counted: Option<u64>,
    /// Messages read in this window whose value is at or after `upper`: the next window
    /// starts at `upper` (inclusive) and must not read them again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages_at_upper: Vec<String>,
    /// `messages_at_upper` of the window before: read already, left out of this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages_carried: Vec<String>,
}

/// How a run of the source starts, decided from the stored cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    /// From the beginning (or `since`): a new snapshot.
    Fresh,
    /// After the end of the last complete run: only what changed (incremental).
    Append,
    /// Where an interrupted run stopped.
    Resume,
}

/// The cursor after each page, for the sink to commit with the output that holds the page.
#[derive(Debug)]
pub struct CursorLog {
    pub mode: StartMode,
    /// (the sequence number of the page's last record, the cursor after the page).
    pages: Mutex<VecDeque<(u64, String)>>,
    last: Mutex<Option<String>>,
    /// Why an incremental run reads everything after all ([`CursorLog::start_over`]).
    started_over: Mutex<Option<String>>,
}

impl Cursor {
    /// The cursor stream `stream` stored, if any (one that no longer parses reads as none:
    /// the next run starts afresh).
    pub fn stored(store: &crate::state::StateStore, stream: &str) -> Result<Option<Cursor>> {
        Ok(store
            .source_cursor(stream)?
            .and_then(|c| serde_json::from_str(&c).ok()))
    }
}

impl CursorLog {
    pub fn new(mode: StartMode) -> CursorLog {
        CursorLog {
            mode,
            pages: Mutex::new(VecDeque::new()),
            last: Mutex::new(None),
            started_over: Mutex::new(None),
        }
    }

    /// Before the first record is read: an incremental run ([`StartMode::Append`]) reads
    /// everything instead (a fresh export), because the output it would add to does not hold
    /// what the cursor says (`why`).
    pub fn start_over(&self, why: String) {
        *self.started_over.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    }

    /// Why the run reads everything though incremental, if it does.
    pub fn started_over(&self) -> Option<String> {
        self.started_over
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The cursor after the records up to `through_seq`; a later cursor for the same record
    /// (a ticket without messages read after it) replaces the earlier one.
    fn publish(&self, through_seq: u64, cursor: String) {
        let mut pages = self.pages.lock().unwrap_or_else(|p| p.into_inner());
        if pages.back().is_some_and(|(s, _)| *s == through_seq) {
            pages.pop_back();
        }
        pages.push_back((through_seq, cursor.clone()));
        drop(pages);
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(cursor);
    }

    /// The cursor to commit once every record up to `seq` is durable, if a page ends at
    /// `seq` (pages ending earlier are forgotten).
    pub fn cursor_through(&self, seq: u64) -> Option<String> {
        let mut pages = self.pages.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((s, _)) = pages.front() {
            if *s < seq {
                pages.pop_front();
            } else if *s == seq {
                return pages.pop_front().map(|(_, c)| c);
            } else {
                return None;
            }
        }
        None
    }

    /// The latest cursor published: once the source is exhausted, the complete one.
    pub fn last(&self) -> Option<String> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl GleapSourceConfig {
    /// Every problem with the options as written; `at` is the source's config path.
    pub fn check(&self, at: &str) -> Vec<crate::config::ConfigError> {
        use crate::config::ConfigError;
        let mut errors = Vec::new();
        if self.entity.is_help_centre() {
            errors.push(ConfigError::at(
                format!("{at}.entity"),
                format!(
                    "the gleap source reads sessions, tickets or messages, not {}",
                    self.entity.name()
                ),
            ));
        }
        if !(1..=MAX_PAGE_SIZE).contains(&self.page_size) {
            errors.push(ConfigError::at(
                format!("{at}.page_size"),
                format!("{} is not between 1 and {MAX_PAGE_SIZE}", self.page_size),
            ));
        }
        if let Err(e) = self.since() {
            errors.push(ConfigError::at(format!("{at}.since"), e));
        }
        errors
    }

    /// `since` as an RFC 3339 instant, or why it is not one.
    fn since(&self) -> std::result::Result<Option<String>, String> {
        self.since
            .as_deref()
            .map(|s| {
                crate::record::parse_timestamp(s.trim())
                    .map(|t| crate::record::format_timestamp(&t))
                    .ok_or_else(|| format!("{s:?} is not a date or an RFC 3339 instant"))
            })
            .transpose()
    }

    fn order(&self) -> OrderField {
        // Messages with `since`: their tickets by updatedAt (a new message moves its ticket's),
        // or the messages since then on tickets created before it would be missed.
        let since_messages = self.entity == Entity::Messages && self.since.is_some();
        self.order_by
            .unwrap_or(if self.incremental || since_messages {
                OrderField::UpdatedAt
            } else {
                OrderField::CreatedAt
            })
    }

    /// Column types of the entity's documented fields, for a Parquet sink to declare: the
    /// fields of Gleap's OpenAPI tables plus ids and timestamps.
    pub fn column_types(&self) -> IndexMap<String, FieldType> {
        let table: &[Field] = match self.entity {
            Entity::Sessions => crate::gleap::fields::SESSION_FIELDS,
            Entity::Tickets => crate::gleap::fields::CREATE_TICKET_FIELDS,
            Entity::Messages => crate::gleap::fields::CREATE_MESSAGE_FIELDS,
            Entity::Collections | Entity::Articles => &[],
        };
        let mut out = IndexMap::new();
        for (name, ty) in [
            ("_id", FieldType::String),
            ("createdAt", FieldType::Timestamp),
            ("updatedAt", FieldType::Timestamp),
        ] {
            out.insert(name.to_string(), ty);
        }
        for field in table {
            let ty = match field.kind {
                // Described as anything, answered as an instant (Gleap's response examples).
                FieldKind::Any
                    if field.name.ends_with("At")
                        || ["firstActivity", "lastActivity", "lastHeardFrom"]
                            .contains(&field.name) =>
                {
                    FieldType::Timestamp
                }
                // Ids may come back populated (a ticket's `session`): left to inference.
                FieldKind::ObjectId => continue,
                FieldKind::Str | FieldKind::Enum(_) => FieldType::String,
                FieldKind::Bool => FieldType::Bool,
                FieldKind::Number => FieldType::Float,
                FieldKind::DateTime => FieldType::Timestamp,
                FieldKind::List(&FieldKind::Str) => FieldType::List(Box::new(FieldType::String)),
                _ => FieldType::Json,
            };
            out.entry(field.name.to_string()).or_insert(ty);
        }
        out
    }

    /// Starts reading: decides from the stored cursor where to start; requests go out as the
    /// records are pulled.
    pub fn open(&self, stream: &str, run: Option<Arc<GleapRun>>) -> Result<OpenedSource> {
        let run = run.ok_or_else(|| {
            Error::config(
                "the gleap source reads from Gleap during a run; it cannot be a lookup table or be planned",
            )
        })?;
        crate::config::checked(self.check("source.gleap"))?;
        let order = self.order();
        let stored = Cursor::stored(&run.store, stream)?
            .filter(|c| c.entity == self.entity.name() && c.order_by == order.name());
        let since = self
            .since()
            .map_err(|e| Error::config_at("source.gleap.since", e))?;
        let fresh = Cursor {
            entity: self.entity.name().into(),
            order_by: order.name().into(),
            from: since.clone(),
            upper: None,
            upper_id: None,
            after: None,
            seen: Vec::new(),
            skip: 0,
            complete: false,
            read: 0,
            carried: 0,
            counted: None,
            messages_at_upper: Vec::new(),
            messages_carried: Vec::new(),
        };
        let fresh_start = fresh.clone();
        let (mode, cursor) = match stored {
            Some(c) if !c.complete => (StartMode::Resume, c),
            Some(c) if self.incremental => {
                // The window starts where the last one ended; the records read at that
                // value are not read again.
                let (after, seen) = if c.after == c.upper {
                    (c.after, c.seen)
                } else {
                    (c.upper, Vec::new())
                };
                (
                    StartMode::Append,
                    Cursor {
                        from: after.clone(),
                        after,
                        carried: seen.len() as u64,
                        seen,
                        messages_carried: c.messages_at_upper,
                        ..fresh
                    },
                )
            }
            _ => (StartMode::Fresh, fresh),
        };
        let log = Arc::new(CursorLog::new(mode));
        let done = Arc::new(AtomicU64::new(0));
        let pager = Pager {
            run,
            entity: self.entity,
            page_size: self.page_size,
            counters: Arc::new(RequestCounters::default()),
            file: format!("GET /v3/{}", self.entity.name()).into(),
            since: if self.incremental || self.since.is_some() {
                cursor.from.clone()
            } else {
                None
            },
            fresh: (mode == StartMode::Append).then_some(fresh_start),
            cursor,
            log: log.clone(),
            pending: None,
            buffer: VecDeque::new(),
            emitted: 0,
            done: done.clone(),
            finished: false,
        };
        Ok(OpenedSource {
            items: Box::new(pager),
            progress: SourceProgress {
                unit: ProgressUnit::Rows,
                total: None,
                done,
            },
            files: Vec::new(),
            cursor: Some(log),
        })
    }
}

type PageResult = Result<ListPage>;

struct Pager {
    run: Arc<GleapRun>,
    entity: Entity,
    page_size: usize,
    counters: Arc<RequestCounters>,
    file: Arc<str>,
    cursor: Cursor,
    /// An incremental run's cursor for a full export, until the first page: taken should
    /// the sink find its output does not hold what the stored cursor says.
    fresh: Option<Cursor>,
    /// Messages: only those whose order field is at or after this (the window's start).
    since: Option<String>,
    log: Arc<CursorLog>,
    /// The next page, requested while the current one is being processed.
    pending: Option<tokio::task::JoinHandle<PageResult>>,
    buffer: VecDeque<SourceItem>,
    emitted: u64,
    done: Arc<AtomicU64>,
    finished: bool,
}

async fn fetch(
    client: Arc<crate::gleap::client::GleapClient>,
    counters: Arc<RequestCounters>,
    path: &'static str,
    query: Vec<(String, String)>,
) -> PageResult {
    let query: Vec<(&str, &str)> = query
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let answer = client
        .call(reqwest::Method::GET, path, &query, None, false, &counters)
        .await
        .map_err(|e| Error::remote(format!("GET {path}"), &e))?;
    if answer.status == 404 {
        return Err(Error::Remote {
            context: format!("GET {path}"),
            status: Some(404),
            retryable: false,
            message: "404".into(),
        });
    }
    answer::list(answer.body)
        .map_err(|e| Error::unusable_answer(format!("GET {path} answered {e}")))
}

/// Orders two values of the order field: as instants when both are, else as text.
fn order_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    match (
        crate::record::parse_timestamp(a),
        crate::record::parse_timestamp(b),
    ) {
        (Some(a), Some(b)) => a.cmp(&b),
        _ => a.cmp(b),
    }
}

/// Gives a record `_id` when Gleap answered only `id` (tickets and messages do).
fn with_id(mut record: crate::record::Record, id: &str) -> crate::record::Record {
    if !record.contains_key("_id") {
        record.insert("_id".into(), Value::String(id.to_string()));
    }
    record
}

impl Pager {
    fn field(&self) -> &str {
        &self.cursor.order_by
    }

    /// What is paged: the entity, or for messages their tickets.
    fn listed(&self) -> Entity {
        match self.entity {
            Entity::Messages => Entity::Tickets,
            other => other,
        }
    }

    fn endpoint(&self) -> String {
        format!("GET {}", self.listed().path())
    }

    /// A page request through the run's client (its rate limit and retries).
    fn request(
        &self,
        query: Vec<(String, String)>,
    ) -> impl std::future::Future<Output = PageResult> + Send + 'static {
        // The client, not the run: a task must not hold the runtime it runs on.
        fetch(
            self.run.client.clone(),
            self.counters.clone(),
            self.listed().path(),
            query,
        )
    }

    /// The range filters of the window from `from` (or where the read is).
    fn window_query(&self, from: Option<&String>) -> Vec<(String, String)> {
        let field = self.field().to_string();
        let mut q = Vec::new();
        if let Some(from) = from {
            q.push((format!("{field}>"), from.clone()));
        }
        if let Some(upper) = &self.cursor.upper {
            q.push((format!("{field}<"), upper.clone()));
        }
        q
    }

    /// The query of the next page from the cursor.
    fn next_query(&self) -> Vec<(String, String)> {
        let mut q = vec![
            ("sort".to_string(), self.field().to_string()),
            ("limit".to_string(), self.page_size.to_string()),
        ];
        q.extend(self.window_query(self.cursor.after.as_ref().or(self.cursor.from.as_ref())));
        if self.cursor.skip > 0 {
            q.push(("skip".to_string(), self.cursor.skip.to_string()));
        }
        q
    }

    fn block_on<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.run.runtime.block_on(f)
    }

    /// Closes the window at the newest value Gleap holds now.
    fn find_upper(&mut self) -> Result<()> {
        let field = self.field().to_string();
        let query = vec![
            ("sort".to_string(), format!("-{field}")),
            ("limit".to_string(), "1".to_string()),
        ];
        let newest = self.block_on(self.request(query))?;
        let newest = newest.items.first();
        match newest.and_then(|d| d.get(&field)).and_then(Value::as_str) {
            Some(upper) => {
                self.cursor.upper = Some(upper.to_string());
                self.cursor.upper_id = newest.and_then(answer::id).map(str::to_string);
                // Read to the newest record already (an incremental run with nothing new).
                if self.cursor.after == self.cursor.upper
                    && let Some(id) = &self.cursor.upper_id
                    && self.cursor.seen.contains(id)
                {
                    self.cursor.complete = true;
                }
            }
            None => {
                // Nothing to read.
                self.cursor.complete = true;
                self.cursor.upper = self.cursor.from.clone();
            }
        }
        Ok(())
    }

    fn next_position(&self) -> Position {
        Position {
            file: self.file.clone(),
            line: None,
            row: self.emitted + self.buffer.len() as u64 + 1,
            seq: 0,
        }
    }

    /// Reads the next page into the buffer (for messages: the messages of the page's
    /// tickets), moves the cursor and publishes it.
    fn next_page(&mut self) -> Result<()> {
        if self.cursor.upper.is_none() {
            self.find_upper()?;
            if self.cursor.complete {
                self.publish_cursor();
                return Ok(());
            }
        }
        let sent_skip = self.cursor.skip;
        let page = match self.pending.take() {
            Some(handle) => self.block_on(handle),
            None => Ok(self.block_on(self.request(self.next_query()))),
        }
        .map_err(|e| Error::internal(format!("reading a page: {e}")))??;
        let endpoint = self.endpoint();
        let got = page.items.len();
        if got > self.page_size {
            return Err(Error::unusable_answer(
                PagingError::LimitIgnored {
                    endpoint,
                    asked: self.page_size,
                    got,
                }
                .to_string(),
            ));
        }
        let surely_last = self
            .run
            .client
            .page_sizes()
            .surely_last(&endpoint, self.page_size, got);
        if self.cursor.read == 0 && self.cursor.counted.is_none() {
            self.cursor.counted = page.total.map(|t| t.saturating_sub(self.cursor.carried));
        }
        let field = self.field().to_string();
        let start_after = self.cursor.after.clone();
        let mut seen: HashSet<String> = self.cursor.seen.iter().cloned().collect();
        let mut previous: Option<String> = None;
        let mut all_at_after = true;
        let mut fresh = 0usize;
        for doc in page.items {
            let id = answer::id(&doc).map(str::to_string);
            let value = doc.get(&field).and_then(Value::as_str).map(str::to_string);
            let (Some(id), Some(value)) = (id, value) else {
                self.cursor.read += 1;
                let reason = format!(
                    "a {} without an id (`id` or `_id`) or `{field}`",
                    self.listed().singular()
                );
                let position = self.next_position();
                self.buffer.push_back(SourceItem::Rejected(Rejected {
                    position,
                    reason,
                    record: doc,
                }));
                continue;
            };
            self.check_order(
                &endpoint,
                &field,
                &value,
                start_after.as_ref(),
                previous.as_ref(),
            )?;
            previous = Some(value.clone());
            if Some(&value) == self.cursor.after.as_ref() {
                if !seen.insert(id.clone()) {
                    continue; // read on an earlier page
                }
                self.cursor.seen.push(id.clone());
            } else {
                all_at_after = false;
                self.cursor.after = Some(value);
                self.cursor.seen = vec![id.clone()];
                seen = HashSet::from([id.clone()]);
            }
            let Value::Object(record) = doc else {
                continue;
            };
            fresh += 1;
            self.cursor.read += 1;
            match self.entity {
                Entity::Messages => {
                    self.read_messages(&id)?;
                    self.publish_cursor();
                }
                _ => {
                    let position = self.next_position();
                    self.buffer
                        .push_back(SourceItem::Record(with_id(record, &id), position));
                }
            }
        }
        if fresh == 0 && sent_skip > 0 && got > 0 {
            return Err(Error::unusable_answer(
                PagingError::SkipIgnored {
                    endpoint,
                    skip: sent_skip,
                }
                .to_string(),
            ));
        }
        // The newest record of the window read: nothing comes after it.
        let window_read = self.cursor.after == self.cursor.upper
            && self
                .cursor
                .upper_id
                .as_ref()
                .is_some_and(|id| self.cursor.seen.contains(id));
        // A page all at one value cannot move `>=`: page through that value by skip.
        let more = got > 0 && !surely_last && !window_read && (fresh > 0 || all_at_after);
        self.cursor.skip = if more && all_at_after {
            self.cursor.seen.len()
        } else {
            0
        };
        if !more {
            self.cursor.complete = true;
            self.check_count(&endpoint)?;
        } else {
            self.pending = Some(self.run.runtime.spawn(self.request(self.next_query())));
        }
        if fresh > 0 || self.cursor.complete {
            self.publish_cursor();
        }
        Ok(())
    }

    /// A record must be in the window, after the cursor and in order: otherwise Gleap did
    /// not apply the range filter or the sort, and following its pages would read records
    /// twice or never.
    fn check_order(
        &self,
        endpoint: &str,
        field: &str,
        value: &str,
        after: Option<&String>,
        previous: Option<&String>,
    ) -> Result<()> {
        use std::cmp::Ordering::{Greater, Less};
        let problem = if let Some(a) = after.or(self.cursor.from.as_ref())
            && order_cmp(value, a) == Less
        {
            format!(
                "{field} {value} before {a}, though it asked for {field}>={a}: it ignores the range filter"
            )
        } else if let Some(u) = &self.cursor.upper
            && order_cmp(value, u) == Greater
        {
            format!(
                "{field} {value} after {u}, though it asked for {field}<={u}: it ignores the range filter"
            )
        } else if let Some(p) = previous
            && order_cmp(value, p) == Less
        {
            format!(
                "{field} {value} after {p} on one page, though it asked for sort={field}: it ignores the sort"
            )
        } else {
            return Ok(());
        };
        Err(Error::unusable_answer(format!(
            "{endpoint} answered a record with {problem}, so its pages cannot be followed safely"
        )))
    }

    /// Tickets: the window read must hold as many tickets as Gleap counts in it. When fewer
    /// were read than counted at the start, Gleap is asked once more (tickets deleted since
    /// are not missing).
    fn check_count(&mut self, endpoint: &str) -> Result<()> {
        let Some(counted) = self.cursor.counted else {
            return Ok(());
        };
        if self.cursor.read >= counted {
            return Ok(());
        }
        let mut query = vec![("limit".to_string(), "1".to_string())];
        query.extend(self.window_query(self.cursor.from.as_ref()));
        let now = self.block_on(self.request(query))?;
        let total = now
            .total
            .map_or(counted, |t| t.saturating_sub(self.cursor.carried));
        if self.cursor.read < total {
            return Err(Error::unusable_answer(
                PagingError::Short {
                    endpoint: endpoint.to_string(),
                    read: self.cursor.read,
                    total,
                }
                .to_string(),
            ));
        }
        Ok(())
    }

    /// The messages of a ticket, in conversation order, through `GET /messages?ticket=`:
    /// those at or after the window's start go into the buffer.
    fn read_messages(&mut self, ticket: &str) -> Result<()> {
        let mut messages = Vec::new();
        self.block_on(list_all(
            &self.run.client,
            &self.counters,
            "/messages",
            &[("ticket", ticket)],
            self.page_size,
            |page| messages.extend(page),
        ))
        .map_err(|e| Error::paging(format!("reading the messages of ticket {ticket}"), &e))?;
        let field = self.field().to_string();
        for message in messages {
            if let Some(other) = answer::field_ref(&message, "ticket")
                && other != ticket
            {
                return Err(Error::unusable_answer(format!(
                    "GET /messages?ticket={ticket} answered a message of ticket {other}: Gleap ignores the `ticket` filter, so messages cannot be read ticket by ticket"
                )));
            }
            let value = message.get(&field).and_then(Value::as_str);
            if let (Some(since), Some(value)) = (&self.since, value)
                && order_cmp(value, since) == std::cmp::Ordering::Less
            {
                continue;
            }
            let id = answer::id(&message);
            if let Some(id) = id
                && self.cursor.messages_carried.iter().any(|c| c == id)
            {
                continue;
            }
            if let (Some(upper), Some(value), Some(id)) = (&self.cursor.upper, value, id)
                && order_cmp(value, upper) != std::cmp::Ordering::Less
            {
                self.cursor.messages_at_upper.push(id.to_string());
            }
            let position = self.next_position();
            match (answer::id(&message).map(str::to_string), message) {
                (Some(id), Value::Object(record)) => self
                    .buffer
                    .push_back(SourceItem::Record(with_id(record, &id), position)),
                (_, other) => self.buffer.push_back(SourceItem::Rejected(Rejected {
                    position,
                    reason: format!("a message of ticket {ticket} without an id (`id` or `_id`)"),
                    record: other,
                })),
            }
        }
        Ok(())
    }

    fn publish_cursor(&self) {
        let through = (self.emitted + self.buffer.len() as u64).saturating_sub(1);
        let json = serde_json::to_string(&self.cursor).expect("a cursor is JSON");
        self.log.publish(through, json);
    }
}

impl Iterator for Pager {
    type Item = Result<SourceItem>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.buffer.pop_front() {
                self.emitted += 1;
                self.done.store(self.emitted, Ordering::Relaxed);
                return Some(Ok(item));
            }
            if self.finished || self.cursor.complete {
                self.finished = true;
                let (requests, limited, retries) = self.counters.snapshot();
                tracing::info!(
                    "GET /{}: {} in {requests} requests ({limited} answered 429, {retries} retries)",
                    self.entity.name(),
                    crate::engine::report::records(self.emitted)
                );
                return None;
            }
            if let Some(fresh) = self.fresh.take()
                && self.log.started_over().is_some()
            {
                self.since = fresh.from.clone();
                self.cursor = fresh;
            }
            if let Err(e) = self.next_page() {
                self.finished = true;
                return Some(Err(e));
            }
        }
    }
}

impl Drop for Pager {
    fn drop(&mut self) {
        if let Some(handle) = self.pending.take() {
            handle.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_gives_the_cursor_of_the_page_ending_at_a_record() {
        let log = CursorLog::new(StartMode::Fresh);
        log.publish(9, "a".into());
        log.publish(19, "b".into());
        log.publish(29, "c".into());
        assert_eq!(log.cursor_through(5), None);
        assert_eq!(log.cursor_through(19).as_deref(), Some("b"));
        assert_eq!(log.cursor_through(25), None);
        assert_eq!(log.cursor_through(29).as_deref(), Some("c"));
        assert_eq!(log.last().as_deref(), Some("c"));
    }

    #[test]
    fn column_types_come_from_gleaps_tables() {
        let config: GleapSourceConfig =
            serde_json::from_value(serde_json::json!({"entity": "sessions"})).unwrap();
        let types = config.column_types();
        assert_eq!(types["createdAt"], FieldType::Timestamp);
        assert_eq!(types["customData"], FieldType::Json);
        assert_eq!(types["tags"], FieldType::List(Box::new(FieldType::String)));
        assert_eq!(types["unsubscribed"], FieldType::Bool);
        assert_eq!(config.order(), OrderField::CreatedAt);
    }
}
