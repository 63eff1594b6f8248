//! The emulator's data: sessions, tickets and messages of one project, with the behaviour the
//! real API has (ObjectIds, millisecond timestamps, per-project bug ids, references that must
//! exist, populated sessions in answers), answered in the shapes clients run against the live
//! API found (tmcinerney/gleap): tickets and messages carry `id`, not `_id`; a message's text
//! is in `data.content` while `comment` and `isNote` are answered as null; notes are
//! `type: "NOTE"`; `GET /messages` answers in conversation order whatever `sort` says.

use std::collections::{HashMap, HashSet, VecDeque};

use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use serde_json::{Map, Value, json};

use super::index::TimeIndexes;
use super::query::{ListQuery, TimeField};
use crate::record::format_timestamp;

pub type Doc = Map<String, Value>;

/// The three collections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Sessions,
    Tickets,
    Messages,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Sessions, Kind::Tickets, Kind::Messages];

    fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Sessions => "sessions",
            Kind::Tickets => "tickets",
            Kind::Messages => "messages",
        }
    }

    fn singular(self) -> &'static str {
        match self {
            Kind::Sessions => "Session",
            Kind::Tickets => "Ticket",
            Kind::Messages => "Message",
        }
    }
}

/// An answer the API gives instead of a document.
#[derive(Debug, PartialEq)]
pub enum StoreError {
    NotFound(String),
    BadRequest(String),
}

/// The agent the API key acts as: authors of agent messages.
fn api_agent() -> Value {
    json!({"id": "64b000000000000000000001", "email": "api@gleap.local", "firstName": "API", "lastName": "Agent"})
}

/// The project's team members when none are given (`GET /projects/users`): the API agent and
/// one agent of the samples (sam@acme.example), so that a sample run shows both matched and
/// unmatched agents.
pub fn default_team() -> Vec<Doc> {
    [
        api_agent(),
        json!({"id": "64b0000000000000000000a2", "email": "sam@acme.example", "firstName": "Sam", "lastName": "Support"}),
    ]
    .into_iter()
    .filter_map(|v| match v {
        Value::Object(o) => Some(o),
        _ => None,
    })
    .collect()
}

/// All data of the emulated project.
#[derive(Debug, Default)]
pub struct Store {
    sessions: IndexMap<String, Doc>,
    tickets: IndexMap<String, Doc>,
    messages: IndexMap<String, Doc>,
    /// userId -> ids of the sessions with it, oldest first.
    user_ids: HashMap<String, Vec<String>>,
    /// Per kind (`Kind::index`), the documents ordered by `createdAt` and by `updatedAt`.
    time_indexes: [TimeIndexes; 3],
    next_bug_id: u64,
    ids: ObjectIds,
    /// The emulator's seed: generated sessions and the sessions `touch_sessions` picks.
    seed: u64,
    /// How many times `touch_sessions` ran (each call picks other sessions).
    touches: u64,
    /// Ticket id -> its messages' ids, in conversation order.
    messages_by_ticket: HashMap<String, Vec<String>>,
    /// Message id -> the position in its input the client said it had (`x-gleap-etl-seq`).
    import_seq: HashMap<String, u64>,
    /// New sessions show in lists this many milliseconds after they were created.
    index_lag_ms: i64,
    /// Sessions created within the last `index_lag_ms`, oldest first, with when.
    recent_sessions: VecDeque<(i64, String)>,
    /// Help-centre collections and articles.
    pub help: super::helpcentre::HelpCentre,
    /// Team members (`GET /projects/users`), each with `id`: whom `user` and
    /// `processingUser` may name.
    team: Vec<Doc>,
}

impl Store {
    pub fn new(seed: u64) -> Store {
        Store {
            next_bug_id: 1,
            ids: ObjectIds::new(seed),
            seed,
            team: default_team(),
            ..Default::default()
        }
    }

    /// Replaces the team members (each needs an `id` or `_id`).
    pub fn set_team(&mut self, team: Vec<Doc>) {
        self.team = team
            .into_iter()
            .filter_map(|mut m| {
                let id = crate::gleap::answer::id(&Value::Object(m.clone()))?.to_string();
                m.shift_remove("_id");
                m.insert("id".into(), Value::String(id));
                Some(m)
            })
            .collect();
    }

    /// `GET /projects/users`.
    pub fn team(&self) -> Value {
        Value::Array(self.team.iter().cloned().map(Value::Object).collect())
    }

    fn team_member(&self, id: &str) -> Option<&Doc> {
        self.team
            .iter()
            .find(|m| m.get("id").and_then(Value::as_str) == Some(id))
    }

    /// A `user` or `processingUser` must name a team member.
    fn require_member(&self, field: &str, body: &Doc) -> Result<(), StoreError> {
        match body.get(field) {
            None | Some(Value::Null) => Ok(()),
            Some(Value::String(id)) if self.team_member(id).is_some() => Ok(()),
            Some(id) => Err(StoreError::BadRequest(format!(
                "{field}: no team member with id {id} in this project"
            ))),
        }
    }

    fn collection(&self, kind: Kind) -> &IndexMap<String, Doc> {
        match kind {
            Kind::Sessions => &self.sessions,
            Kind::Tickets => &self.tickets,
            Kind::Messages => &self.messages,
        }
    }

    fn collection_mut(&mut self, kind: Kind) -> &mut IndexMap<String, Doc> {
        match kind {
            Kind::Sessions => &mut self.sessions,
            Kind::Tickets => &mut self.tickets,
            Kind::Messages => &mut self.messages,
        }
    }

    pub fn count(&self, kind: Kind) -> usize {
        self.collection(kind).len()
    }

    /// The stored documents of a kind, oldest first.
    pub fn docs(&self, kind: Kind) -> impl Iterator<Item = &Doc> {
        self.collection(kind).values()
    }

    /// Lists show a new session only `lag` after it was created (`Quirks::index_lag`).
    pub fn set_index_lag(&mut self, lag: std::time::Duration) {
        self.index_lag_ms = lag.as_millis() as i64;
    }

    /// Ids of the sessions lists do not show yet at `now`.
    pub fn hidden_sessions(&mut self, now: DateTime<Utc>) -> HashSet<String> {
        let shown_before = now.timestamp_millis() - self.index_lag_ms;
        while self
            .recent_sessions
            .front()
            .is_some_and(|(at, _)| *at <= shown_before)
        {
            self.recent_sessions.pop_front();
        }
        self.recent_sessions
            .iter()
            .map(|(_, id)| id.clone())
            .collect()
    }

    /// Puts a new document in, and in the indexes.
    fn insert_doc(&mut self, kind: Kind, id: String, doc: Doc) {
        if kind == Kind::Messages
            && !self.messages.contains_key(&id)
            && let Some(ticket) = doc.get("ticket").and_then(Value::as_str)
        {
            self.messages_by_ticket
                .entry(ticket.to_string())
                .or_default()
                .push(id.clone());
        }
        let indexes = &mut self.time_indexes[kind.index()];
        let collection = match kind {
            Kind::Sessions => &mut self.sessions,
            Kind::Tickets => &mut self.tickets,
            Kind::Messages => &mut self.messages,
        };
        // `load` of a list with the same `_id` twice: the last one wins.
        if let Some(old) = collection.get(&id) {
            indexes.remove(&id, old);
        }
        indexes.insert(&id, &doc);
        collection.insert(id, doc);
    }

    /// A list query's page and, when `want_total`, how many documents match in all
    /// (GET /tickets answers it; counting is the only part of a keyset page that is not
    /// bounded by the page). Sorted on `createdAt` or `updatedAt`, it walks that field's
    /// index from the query's bounds and stops when the page is full; otherwise, or while
    /// some document's field is not a canonical timestamp, it scans every document. Both give
    /// the same pages.
    pub fn list<'s>(
        &'s self,
        kind: Kind,
        query: &ListQuery,
        want_total: bool,
    ) -> (Vec<&'s Doc>, Option<usize>) {
        if let Some(plan) = query.index_plan() {
            let index = self.time_indexes[kind.index()].get(plan.field);
            if index.complete() {
                let docs = self.collection(kind);
                let lookup = |id: &str| docs.get(id).expect("indexed documents exist");
                let ids = index.range(plan.from, plan.to);
                return if plan.desc {
                    query.run_ordered(&plan, ids.rev(), lookup, want_total)
                } else {
                    query.run_ordered(&plan, ids, lookup, want_total)
                };
            }
        }
        // The messages of one ticket, from its own list.
        if kind == Kind::Messages
            && let Some(ids) = query.single_value("ticket").map(|t| {
                self.messages_by_ticket
                    .get(t)
                    .map(Vec::as_slice)
                    .unwrap_or_default()
            })
        {
            let (page, total) = query.run(ids.iter().filter_map(|id| self.messages.get(id)));
            return (page, Some(total));
        }
        let (page, total) = query.run(self.docs(kind));
        (page, Some(total))
    }

    /// Swaps the messages at positions `a` and `b` of a ticket's conversation order.
    pub fn swap_messages(&mut self, ticket: &str, a: usize, b: usize) -> bool {
        match self.messages_by_ticket.get_mut(ticket) {
            Some(ids) if a < ids.len() && b < ids.len() => {
                ids.swap(a, b);
                true
            }
            _ => false,
        }
    }

    fn stamp(&mut self, now: DateTime<Utc>, mut body: Doc) -> (String, Doc) {
        let id = self.ids.next(now);
        let at = Value::String(format_timestamp(&now));
        let mut doc = Doc::with_capacity(body.len() + 4);
        doc.insert("_id".into(), Value::String(id.clone()));
        doc.insert("id".into(), Value::String(id.clone()));
        doc.append(&mut body);
        doc.insert("createdAt".into(), at.clone());
        doc.insert("updatedAt".into(), at);
        (id, doc)
    }

    fn exists(&self, kind: Kind, id: &Value) -> bool {
        id.as_str()
            .is_some_and(|id| self.collection(kind).contains_key(id))
    }

    fn require(&self, kind: Kind, field: &str, body: &Doc) -> Result<(), StoreError> {
        match body.get(field) {
            None | Some(Value::Null) => Ok(()),
            Some(id) if self.exists(kind, id) => Ok(()),
            Some(id) => Err(StoreError::BadRequest(format!(
                "{field}: no {} with id {id} in this project",
                kind.singular().to_lowercase()
            ))),
        }
    }

    /// `POST /sessions`: always a new session, even when the userId exists.
    pub fn create_session(&mut self, now: DateTime<Utc>, mut body: Doc) -> Value {
        body.entry("lastActivity")
            .or_insert_with(|| Value::String(format_timestamp(&now)));
        let (id, doc) = self.stamp(now, body);
        if let Some(user_id) = doc.get("userId").and_then(Value::as_str) {
            self.user_ids
                .entry(user_id.to_string())
                .or_default()
                .push(id.clone());
        }
        if self.index_lag_ms > 0 {
            self.recent_sessions
                .push_back((now.timestamp_millis(), id.clone()));
        }
        self.insert_doc(Kind::Sessions, id.clone(), doc);
        self.render(Kind::Sessions, &id).expect("just inserted")
    }

    /// `POST /tickets`: a bug id of the project's own sequence; the session must exist.
    pub fn create_ticket(
        &mut self,
        now: DateTime<Utc>,
        mut body: Doc,
    ) -> Result<Value, StoreError> {
        self.require(Kind::Sessions, "session", &body)?;
        self.require_member("processingUser", &body)?;
        body.insert("bugId".into(), Value::from(self.next_bug_id));
        self.next_bug_id += 1;
        for (key, default) in [
            ("status", json!("OPEN")),
            ("priority", json!("LOW")),
            ("type", json!("INQUIRY")),
            ("archived", json!(false)),
            ("isSpam", json!(false)),
        ] {
            body.entry(key).or_insert(default);
        }
        let (id, doc) = self.stamp(now, body);
        self.insert_doc(Kind::Tickets, id.clone(), doc);
        Ok(self.render(Kind::Tickets, &id).expect("just inserted"))
    }

    /// `POST /messages`: on an existing ticket; customer-authored when `session` is given;
    /// a note (`type: NOTE`) when `isNote`. The ticket's `updatedAt` becomes now. `seq` is
    /// where the client says the message stands in its input, for the out-of-order count.
    pub fn create_message(
        &mut self,
        now: DateTime<Utc>,
        mut body: Doc,
        seq: Option<u64>,
    ) -> Result<Value, StoreError> {
        match body.get("ticket") {
            None | Some(Value::Null) => {
                return Err(StoreError::BadRequest("ticket is required".into()));
            }
            Some(id) if !self.exists(Kind::Tickets, id) => {
                return Err(StoreError::BadRequest(format!(
                    "ticket: no ticket with id {id} in this project"
                )));
            }
            _ => {}
        }
        self.require(Kind::Sessions, "session", &body)?;
        self.require_member("user", &body)?;
        match body.get("comment") {
            None | Some(Value::String(_)) => {}
            Some(Value::Object(doc)) if doc.get("type").and_then(Value::as_str) == Some("doc") => {}
            Some(_) => {
                return Err(StoreError::BadRequest(
                    "comment must be a string or a TipTap document ({\"type\": \"doc\", ...})"
                        .into(),
                ));
            }
        }
        let note = body.get("isNote").and_then(Value::as_bool) == Some(true);
        body.insert("isNote".into(), json!(note));
        if note {
            body.insert("type".into(), json!("NOTE"));
        }
        body.entry("type").or_insert(json!("TEXT"));
        let ticket = body
            .get("ticket")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let index = self.messages_by_ticket.get(&ticket).map_or(0, Vec::len);
        body.insert("index".into(), json!(index));
        let (id, doc) = self.stamp(now, body);
        self.insert_doc(Kind::Messages, id.clone(), doc);
        if let Some(seq) = seq {
            self.import_seq.insert(id.clone(), seq);
        }
        if let Some(t) = self.tickets.get_mut(&ticket) {
            t.insert("latestComment".into(), Value::String(id.clone()));
        }
        self.touch(Kind::Tickets, &ticket, now);
        Ok(self.render(Kind::Messages, &id).expect("just inserted"))
    }

    /// `PUT`: the given fields replace the stored ones.
    pub fn update(
        &mut self,
        kind: Kind,
        id: &str,
        now: DateTime<Utc>,
        body: Doc,
    ) -> Result<Value, StoreError> {
        self.apply_update(kind, id, now, body)?;
        Ok(self.render(kind, id).expect("exists"))
    }

    /// `update` without the answer.
    fn apply_update(
        &mut self,
        kind: Kind,
        id: &str,
        now: DateTime<Utc>,
        body: Doc,
    ) -> Result<(), StoreError> {
        if !self.collection(kind).contains_key(id) {
            return Err(self.not_found(kind));
        }
        if kind == Kind::Tickets {
            self.require(Kind::Sessions, "session", &body)?;
            self.require_member("processingUser", &body)?;
        }
        if kind == Kind::Messages {
            self.require_member("user", &body)?;
        }
        let old_user_id = self.sessions.get(id).and_then(|d| d.get("userId")).cloned();
        let doc = self
            .collection_mut(kind)
            .get_mut(id)
            .expect("checked above");
        for (key, value) in body {
            if !matches!(
                key.as_str(),
                "_id" | "id" | "createdAt" | "updatedAt" | "bugId"
            ) {
                doc.insert(key, value);
            }
        }
        let new_user_id = doc.get("userId").cloned();
        self.touch(kind, id, now);
        if kind == Kind::Sessions && old_user_id != new_user_id {
            if let Some(Value::String(old)) = &old_user_id {
                self.unindex_user_id(old, id);
            }
            if let Some(Value::String(new)) = new_user_id {
                self.user_ids.entry(new).or_default().push(id.to_string());
            }
        }
        Ok(())
    }

    /// Sets a document's `updatedAt` to `now`, in its index too.
    fn touch(&mut self, kind: Kind, id: &str, now: DateTime<Utc>) {
        let Some(doc) = self.collection_mut(kind).get_mut(id) else {
            return;
        };
        let updated_at = Value::String(format_timestamp(&now));
        let old_updated_at = doc.insert("updatedAt".into(), updated_at.clone());
        let index = self.time_indexes[kind.index()].get_mut(TimeField::UpdatedAt);
        index.remove(old_updated_at.as_ref(), id);
        index.insert(Some(&updated_at), id);
    }

    fn unindex_user_id(&mut self, user_id: &str, id: &str) {
        if let Some(ids) = self.user_ids.get_mut(user_id) {
            ids.retain(|i| i != id);
            if ids.is_empty() {
                self.user_ids.remove(user_id);
            }
        }
    }

    /// `DELETE /sessions/{id}`.
    pub fn delete_session(&mut self, id: &str) -> Result<(), StoreError> {
        self.delete(Kind::Sessions, id)
    }

    /// `DELETE /{kind}/{id}`; a ticket's messages go with it.
    pub fn delete(&mut self, kind: Kind, id: &str) -> Result<(), StoreError> {
        let doc = self
            .collection_mut(kind)
            .shift_remove(id)
            .ok_or_else(|| self.not_found(kind))?;
        self.time_indexes[kind.index()].remove(id, &doc);
        match kind {
            Kind::Sessions => {
                if let Some(Value::String(user_id)) = doc.get("userId") {
                    self.unindex_user_id(&user_id.clone(), id);
                }
            }
            Kind::Tickets => {
                for message in self.messages_by_ticket.remove(id).unwrap_or_default() {
                    if let Some(m) = self.messages.shift_remove(&message) {
                        self.time_indexes[Kind::Messages.index()].remove(&message, &m);
                    }
                    self.import_seq.remove(&message);
                }
            }
            Kind::Messages => {
                if let Some(ids) = doc
                    .get("ticket")
                    .and_then(Value::as_str)
                    .and_then(|t| self.messages_by_ticket.get_mut(t))
                {
                    ids.retain(|m| m != id);
                }
                self.import_seq.remove(id);
            }
        }
        Ok(())
    }

    pub fn get(&self, kind: Kind, id: &str) -> Result<Value, StoreError> {
        self.render(kind, id).ok_or_else(|| self.not_found(kind))
    }

    /// `GET /sessions/by-user-id/{userId}`: the oldest session with that userId.
    pub fn session_by_user_id(&self, user_id: &str) -> Result<Value, StoreError> {
        self.user_ids
            .get(user_id)
            .and_then(|ids| ids.first())
            .and_then(|id| self.render(Kind::Sessions, id))
            .ok_or_else(|| StoreError::NotFound(format!("No session with userId {user_id:?}")))
    }

    fn not_found(&self, kind: Kind) -> StoreError {
        StoreError::NotFound(format!("{} not found", kind.singular()))
    }

    /// A document as the API answers it. Sessions as stored (`_id` and `id`). Tickets and
    /// messages with `id` only, their session as `{id, email, name, userId}`, agent messages
    /// their author as `user`; a message's text in `data.content`, `comment` and `isNote`
    /// null (write-only), a note by its `type`.
    pub fn render(&self, kind: Kind, id: &str) -> Option<Value> {
        let doc = self.collection(kind).get(id)?;
        Some(self.render_doc(kind, doc))
    }

    pub fn render_doc(&self, kind: Kind, doc: &Doc) -> Value {
        if kind == Kind::Sessions {
            return Value::Object(doc.clone());
        }
        let mut out = doc.clone();
        out.shift_remove("_id");
        if let Some(Value::String(session_id)) = doc.get("session")
            && let Some(session) = self.sessions.get(session_id)
        {
            let mut summary = Map::new();
            for key in ["id", "email", "name", "userId"] {
                if let Some(v) = session.get(key) {
                    summary.insert(key.into(), v.clone());
                }
            }
            out.insert("session".into(), Value::Object(summary));
        }
        if kind == Kind::Messages {
            if doc.get("session").is_none_or(Value::is_null) {
                let member = doc
                    .get("user")
                    .and_then(Value::as_str)
                    .and_then(|id| self.team_member(id))
                    .map(|m| Value::Object(m.clone()));
                out.insert("user".into(), member.unwrap_or_else(api_agent));
            }
            let content = out.insert("comment".into(), Value::Null);
            out.insert("isNote".into(), Value::Null);
            let mut data = match out.shift_remove("data") {
                Some(Value::Object(data)) => data,
                _ => Map::new(),
            };
            data.insert("content".into(), content.unwrap_or(Value::Null));
            out.insert("data".into(), Value::Object(data));
        }
        out.shift_remove("sendToChannel");
        Value::Object(out)
    }

    /// Messages created after a message of their ticket that comes later in the client's
    /// input (by the `x-gleap-etl-seq` each create carried): how many, on how many tickets,
    /// and a few of those tickets. Messages created without it are not judged.
    pub fn messages_out_of_order(&self) -> (u64, u64, Vec<String>) {
        let (mut messages, mut tickets) = (0, Vec::new());
        for (ticket, ids) in &self.messages_by_ticket {
            let mut highest = None;
            let mut late = 0;
            for seq in ids.iter().filter_map(|id| self.import_seq.get(id)) {
                if highest.is_some_and(|h| *seq < h) {
                    late += 1;
                }
                highest = highest.max(Some(*seq));
            }
            if late > 0 {
                messages += late;
                tickets.push(ticket.clone());
            }
        }
        tickets.sort();
        let count = tickets.len() as u64;
        tickets.truncate(10);
        (messages, count, tickets)
    }

    /// How many userIds more than one session shares, with a few of them.
    pub fn shared_user_ids(&self) -> (usize, Vec<String>) {
        let mut shared: Vec<&String> = self
            .user_ids
            .iter()
            .filter(|(_, ids)| ids.len() > 1)
            .map(|(u, _)| u)
            .collect();
        shared.sort();
        (shared.len(), shared.into_iter().take(10).cloned().collect())
    }

    /// Everything, for `/__emulator/dump` and `--data`.
    pub fn dump(&self) -> Value {
        json!({
            "sessions": self.sessions.values().collect::<Vec<_>>(),
            "tickets": self.tickets.values().collect::<Vec<_>>(),
            "messages": self.messages.values().collect::<Vec<_>>(),
            "nextBugId": self.next_bug_id,
            "importSeq": self.import_seq,
            "helpcenter": self.help.dump(),
            "team": self.team,
        })
    }

    /// Reads what `dump` wrote.
    pub fn load(&mut self, data: &Value) -> Result<(), String> {
        for kind in Kind::ALL {
            let docs = data
                .get(kind.name())
                .and_then(Value::as_array)
                .ok_or_else(|| format!("no `{}` list", kind.name()))?;
            for doc in docs {
                let doc = doc
                    .as_object()
                    .ok_or_else(|| format!("a {} entry is not an object", kind.name()))?;
                let id = doc
                    .get("_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("a {} entry has no _id", kind.name()))?;
                if kind == Kind::Sessions
                    && let Some(user_id) = doc.get("userId").and_then(Value::as_str)
                {
                    self.user_ids
                        .entry(user_id.to_string())
                        .or_default()
                        .push(id.to_string());
                }
                self.insert_doc(kind, id.to_string(), doc.clone());
            }
        }
        if let Some(Value::Object(seqs)) = data.get("importSeq") {
            for (id, seq) in seqs {
                if let Some(seq) = seq.as_u64() {
                    self.import_seq.insert(id.clone(), seq);
                }
            }
        }
        self.help.load(data.get("helpcenter"));
        if let Some(Value::Array(team)) = data.get("team") {
            self.set_team(team.iter().filter_map(|m| m.as_object().cloned()).collect());
        }
        self.next_bug_id = data
            .get("nextBugId")
            .and_then(Value::as_u64)
            .unwrap_or(self.tickets.len() as u64 + 1);
        Ok(())
    }
}

/// What synthetic sessions (`Store::generate_sessions`) are drawn from.
const FIRST_NAMES: [&str; 8] = [
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken",
];
const LAST_NAMES: [&str; 8] = [
    "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson",
];
const PLANS: [&str; 4] = ["free", "pro", "team", "enterprise"];
const TAGS: [&str; 6] = ["vip", "beta", "churn-risk", "newsletter", "mobile", "web"];

/// Generated sessions are created from 2023-01-01T00:00:00Z on, over this many days, and
/// updated up to `GENERATED_UPDATE_DAYS` later: all before 2024-01-01 (`ManualClock::at_2024`),
/// so that sessions touched "now" are the newest.
const GENERATED_START_MS: i64 = 1_672_531_200_000;
const GENERATED_CREATE_DAYS: i64 = 273;
const GENERATED_UPDATE_DAYS: i64 = 60;
const DAY_MS: i64 = 86_400_000;
/// Sessions are generated in chunks of this many, each from its own random sequence, so that
/// threads can build them (fresh memory is most of the cost) and the result does not depend
/// on how many there are.
const GENERATED_CHUNK: usize = 1 << 14;

/// Sessions `first..end` of `n` generated ones, with their ids.
fn generated_chunk(
    seed: u64,
    n: usize,
    first: usize,
    end: usize,
    ids: &ObjectIds,
) -> Vec<(String, Doc)> {
    let chunk = (first / GENERATED_CHUNK) as u64;
    let mut rng = fastrand::Rng::with_seed(
        seed ^ 0x6765_6e65_7261_7465 ^ chunk.wrapping_mul(0x9e37_79b9_7f4a_7c15),
    );
    let span = GENERATED_CREATE_DAYS * DAY_MS;
    let slot = (span / n as i64).max(1);
    let mut created = GENERATED_START_MS;
    let mut out = Vec::with_capacity(end - first);
    for i in first..end {
        // About one in ten has the createdAt of the one before.
        if i == first || rng.u8(..10) != 0 {
            created =
                GENERATED_START_MS + (i as i64).saturating_mul(span) / n as i64 + rng.i64(0..slot);
        }
        let updated = match rng.u8(..6) {
            0 | 1 => created,
            // On a whole minute: equal updatedAt across sessions.
            2 => {
                let t = created + rng.i64(0..GENERATED_UPDATE_DAYS * DAY_MS);
                (t - t.rem_euclid(60_000)).max(created)
            }
            _ => created + rng.i64(0..GENERATED_UPDATE_DAYS * DAY_MS),
        };
        let created_at = DateTime::from_timestamp_millis(created).expect("a 2023 instant");
        let updated_at =
            format_timestamp(&DateTime::from_timestamp_millis(updated).expect("a 2023 instant"));
        let id = ids.nth(created_at, i);
        let user_id = format!("user-{:06}", i + 1);
        let first_name = FIRST_NAMES[rng.usize(..FIRST_NAMES.len())];
        let last_name = LAST_NAMES[rng.usize(..LAST_NAMES.len())];
        let plan = PLANS[rng.usize(..PLANS.len())];
        let mut custom = Map::with_capacity(3);
        custom.insert("plan".into(), Value::from(plan));
        custom.insert("seats".into(), Value::from(rng.u32(1..=500)));
        custom.insert(
            "trial".into(),
            Value::from(plan == "free" || rng.u8(..5) == 0),
        );
        let tags: Vec<Value> = TAGS
            .iter()
            .filter(|_| rng.u8(..4) == 0)
            .map(|t| Value::from(*t))
            .collect();
        let mut doc = Doc::with_capacity(10);
        doc.insert("_id".into(), Value::String(id.clone()));
        doc.insert("id".into(), Value::String(id.clone()));
        doc.insert(
            "email".into(),
            Value::String(format!("{user_id}@example.com")),
        );
        doc.insert("userId".into(), Value::String(user_id));
        doc.insert(
            "name".into(),
            Value::String(format!("{first_name} {last_name}")),
        );
        doc.insert("customData".into(), Value::Object(custom));
        doc.insert("tags".into(), Value::Array(tags));
        doc.insert("lastActivity".into(), Value::String(updated_at.clone()));
        doc.insert(
            "createdAt".into(),
            Value::String(format_timestamp(&created_at)),
        );
        doc.insert("updatedAt".into(), Value::String(updated_at));
        out.push((id, doc));
    }
    out
}

impl Store {
    /// Inserts `n` synthetic sessions straight into the store (no HTTP), the same ones for the
    /// same seed: userIds `user-000001`, ..., an email, a name, `customData` with a string
    /// `plan`, an integer `seats` and a boolean `trial`, a list of `tags`, `lastActivity`, and
    /// `createdAt`/`updatedAt` spread over 2023 in creation order (ObjectIds follow). About
    /// one session in ten shares the `createdAt` of the one before it, and some `updatedAt`
    /// fall on a whole minute, so lists see equal timestamps. Threads build the documents.
    pub fn generate_sessions(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        let ids = self.ids.take(n);
        let seed = self.seed;
        let chunks = n.div_ceil(GENERATED_CHUNK);
        // One thread inserts in order; more than a few building for it would only wait.
        let threads = std::thread::available_parallelism()
            .map_or(1, |p| p.get())
            .clamp(1, 8)
            .min(chunks);
        self.sessions.reserve(n);
        self.user_ids.reserve(n);
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::channel();
            for worker in 0..threads {
                let (tx, ids) = (tx.clone(), &ids);
                scope.spawn(move || {
                    for chunk in (worker..chunks).step_by(threads) {
                        let first = chunk * GENERATED_CHUNK;
                        let end = (first + GENERATED_CHUNK).min(n);
                        if tx
                            .send((chunk, generated_chunk(seed, n, first, end, ids)))
                            .is_err()
                        {
                            return;
                        }
                    }
                });
            }
            drop(tx);
            // In order, whichever thread is ahead.
            let mut ready = std::collections::BTreeMap::new();
            let mut next = 0;
            for (chunk, docs) in rx {
                ready.insert(chunk, docs);
                while let Some(docs) = ready.remove(&next) {
                    for (id, doc) in docs {
                        let user_id = doc["userId"].as_str().expect("generated").to_string();
                        self.user_ids.entry(user_id).or_default().push(id.clone());
                        self.insert_doc(Kind::Sessions, id, doc);
                    }
                    next += 1;
                }
            }
        });
    }

    /// Updates `n` sessions (all of them when there are fewer) as a PUT at `now` would:
    /// `updatedAt` becomes `now` and `customData.seats` goes up by one (from 0 when missing).
    /// Which sessions depends on the seed and on how many times this ran before; their ids
    /// come back in stored order.
    pub fn touch_sessions(&mut self, now: DateTime<Utc>, n: usize) -> Vec<String> {
        let count = self.sessions.len();
        let n = n.min(count);
        let mut rng = fastrand::Rng::with_seed(
            self.seed ^ 0x746f_7563_6865_7321 ^ self.touches.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        self.touches += 1;
        // Floyd's sampling: n distinct positions.
        let mut picked = HashSet::with_capacity(n);
        for j in count - n..count {
            let t = rng.usize(..=j);
            if !picked.insert(t) {
                picked.insert(j);
            }
        }
        let mut positions: Vec<usize> = picked.into_iter().collect();
        positions.sort_unstable();
        let ids: Vec<String> = positions
            .into_iter()
            .map(|p| self.sessions.get_index(p).expect("a position").0.clone())
            .collect();
        for id in &ids {
            let mut custom = self.sessions[id]
                .get("customData")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let seats = custom.get("seats").and_then(Value::as_i64).unwrap_or(0);
            custom.insert("seats".into(), Value::from(seats + 1));
            let mut body = Doc::new();
            body.insert("customData".into(), Value::Object(custom));
            self.apply_update(Kind::Sessions, id, now, body)
                .expect("the session exists");
        }
        ids
    }
}

impl Store {
    /// Sets fields of session `id` as a PUT at `now` would, without checking them against
    /// Gleap's field table: a field Gleap starts answering that it did not before. False
    /// when there is no such session.
    pub fn set_session_fields(&mut self, now: DateTime<Utc>, id: &str, fields: Doc) -> bool {
        self.apply_update(Kind::Sessions, id, now, fields).is_ok()
    }
}

/// MongoDB-style ObjectIds: 4 bytes of seconds, 5 random bytes, a 3-byte counter.
#[derive(Debug, Default, Clone)]
struct ObjectIds {
    random: [u8; 5],
    counter: u32,
}

impl ObjectIds {
    fn new(seed: u64) -> ObjectIds {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut random = [0u8; 5];
        rng.fill(&mut random);
        ObjectIds {
            random,
            counter: rng.u32(..0x00ff_ffff),
        }
    }

    fn next(&mut self, now: DateTime<Utc>) -> String {
        let id = self.nth(now, 0);
        self.counter = (self.counter + 1) & 0x00ff_ffff;
        id
    }

    /// Takes the next `n` ids' counters: the ids `nth(now, 0..n)` of the copy returned are
    /// those `n` calls of `next` would have made.
    fn take(&mut self, n: usize) -> ObjectIds {
        let taken = self.clone();
        self.counter = ((self.counter as usize + n) & 0x00ff_ffff) as u32;
        taken
    }

    /// The id `i` calls of `next` from now would make, at `now`.
    fn nth(&self, now: DateTime<Utc>, i: usize) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let counter = ((self.counter as usize + i + 1) & 0x00ff_ffff) as u32;
        let mut bytes = [0u8; 12];
        bytes[..4].copy_from_slice(&(now.timestamp() as u32).to_be_bytes());
        bytes[4..9].copy_from_slice(&self.random);
        bytes[9..].copy_from_slice(&counter.to_be_bytes()[1..]);
        let mut id = String::with_capacity(24);
        for b in bytes {
            id.push(char::from(HEX[usize::from(b >> 4)]));
            id.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        id
    }
}

/// Whether `s` looks like an ObjectId.
pub fn is_object_id(s: &str) -> bool {
    s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};

    fn obj(v: Value) -> Doc {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn ids_are_increasing_object_ids() {
        let clock = ManualClock::at_2024();
        let mut ids = ObjectIds::new(7);
        let a = ids.next(clock.now());
        let b = ids.next(clock.now());
        assert!(is_object_id(&a) && is_object_id(&b));
        assert!(a < b);
        assert!(a.starts_with("65920080"), "seconds of 2024-01-01: {a}");
    }

    #[test]
    fn tickets_get_bug_ids_defaults_and_a_populated_session() {
        let now = ManualClock::at_2024().now();
        let mut store = Store::new(1);
        let s = store.create_session(
            now,
            obj(json!({"userId": "u1", "email": "a@x", "name": "Ada"})),
        );
        let sid = s["_id"].as_str().unwrap();
        let t1 = store
            .create_ticket(now, obj(json!({"title": "x", "session": sid})))
            .unwrap();
        let t2 = store
            .create_ticket(now, obj(json!({"title": "y"})))
            .unwrap();
        assert_eq!(
            (t1["bugId"].as_u64(), t2["bugId"].as_u64()),
            (Some(1), Some(2))
        );
        assert_eq!(t1["status"], "OPEN");
        assert_eq!(t1["session"]["email"], "a@x");
        assert_eq!(t1["createdAt"], "2024-01-01T00:00:00.000Z");
        let err = store
            .create_ticket(now, obj(json!({"session": "000000000000000000000000"})))
            .unwrap_err();
        assert!(matches!(err, StoreError::BadRequest(_)));
    }

    #[test]
    fn a_second_post_with_the_same_user_id_makes_a_second_session() {
        let now = ManualClock::at_2024().now();
        let mut store = Store::new(1);
        let first = store.create_session(now, obj(json!({"userId": "u1"})));
        store.create_session(now, obj(json!({"userId": "u1"})));
        assert_eq!(store.count(Kind::Sessions), 2);
        assert_eq!(store.session_by_user_id("u1").unwrap()["_id"], first["_id"]);
        assert_eq!(store.shared_user_ids(), (1, vec!["u1".to_string()]));
    }

    #[test]
    fn messages_need_their_ticket_and_name_their_author() {
        let now = ManualClock::at_2024().now();
        let mut store = Store::new(1);
        let s = store.create_session(now, obj(json!({"userId": "u1"})));
        let t = store
            .create_ticket(now, obj(json!({"title": "x"})))
            .unwrap();
        assert!(t.get("_id").is_none(), "tickets answer `id` only");
        let tid = t["id"].clone();
        assert_eq!(
            store
                .create_message(now, obj(json!({"comment": "hi"})), None)
                .unwrap_err(),
            StoreError::BadRequest("ticket is required".into())
        );
        let agent = store
            .create_message(now, obj(json!({"ticket": tid, "comment": "hello"})), None)
            .unwrap();
        assert_eq!(agent["user"]["firstName"], "API");
        let customer = store
            .create_message(
                now,
                obj(json!({"ticket": tid, "comment": "hey", "session": s["_id"]})),
                None,
            )
            .unwrap();
        assert!(customer.get("user").is_none());
        assert_eq!(customer["session"]["id"], s["_id"]);
        assert!(customer["session"].get("_id").is_none());
        assert!(
            store
                .create_message(
                    now,
                    obj(json!({"ticket": tid, "comment": {"type": "p"}})),
                    None
                )
                .is_err()
        );
    }

    #[test]
    fn messages_answer_like_the_live_api() {
        let clock = ManualClock::at_2024();
        let mut store = Store::new(1);
        let t = store
            .create_ticket(clock.now(), obj(json!({"title": "x"})))
            .unwrap();
        let tid = t["id"].as_str().unwrap().to_string();
        let later = clock.now() + chrono::Duration::seconds(5);
        let note = store
            .create_message(
                later,
                obj(json!({"ticket": tid, "comment": "inside", "isNote": true})),
                Some(1),
            )
            .unwrap();
        assert!(note.get("_id").is_none());
        assert!(note["id"].is_string());
        assert_eq!(note["data"]["content"], "inside");
        assert_eq!(note["comment"], Value::Null, "write-only");
        assert_eq!(note["isNote"], Value::Null, "write-only");
        assert_eq!(note["type"], "NOTE");
        assert_eq!(note["index"], 0);
        let doc = json!({"type": "doc", "content": []});
        let text = store
            .create_message(later, obj(json!({"ticket": tid, "comment": doc})), Some(0))
            .unwrap();
        assert_eq!(text["type"], "TEXT");
        assert_eq!(text["data"]["content"], doc);
        assert_eq!(text["index"], 1);
        // The ticket moved to the message's time.
        assert_eq!(
            store.get(Kind::Tickets, &tid).unwrap()["updatedAt"],
            format_timestamp(&later)
        );
        // The second one came first in the client's input: out of order.
        assert_eq!(store.messages_out_of_order(), (1, 1, vec![tid.clone()]));
        // Lists of one ticket's messages come from its own list, in conversation order.
        let q = crate::emulator::query::parse(Some(&format!("ticket={tid}"))).unwrap();
        let (page, total) = store.list(Kind::Messages, &q, true);
        assert_eq!(total, Some(2));
        assert_eq!(page[0]["comment"], "inside");
        // A ticket's messages go with it.
        store.delete(Kind::Tickets, &tid).unwrap();
        assert_eq!(store.count(Kind::Messages), 0);
        assert_eq!(store.messages_out_of_order(), (0, 0, vec![]));
        assert!(store.delete(Kind::Tickets, &tid).is_err());
    }

    #[test]
    fn new_sessions_stay_hidden_from_lists_for_the_lag() {
        let clock = ManualClock::at_2024();
        let mut store = Store::new(1);
        store.set_index_lag(std::time::Duration::from_millis(2000));
        let s = store.create_session(clock.now(), obj(json!({"userId": "u1"})));
        let id = s["_id"].as_str().unwrap().to_string();
        assert_eq!(
            store.hidden_sessions(clock.now()),
            HashSet::from([id.clone()])
        );
        let soon = clock.now() + chrono::Duration::milliseconds(1999);
        assert_eq!(store.hidden_sessions(soon).len(), 1);
        let later = clock.now() + chrono::Duration::milliseconds(2000);
        assert!(store.hidden_sessions(later).is_empty());
        assert!(
            store.session_by_user_id("u1").is_ok(),
            "found by userId at once"
        );
    }

    #[test]
    fn dump_and_load_round_trip() {
        let now = ManualClock::at_2024().now();
        let mut store = Store::new(1);
        store.create_session(now, obj(json!({"userId": "u1"})));
        store
            .create_ticket(now, obj(json!({"title": "x"})))
            .unwrap();
        let dump = store.dump();
        let mut again = Store::new(2);
        again.load(&dump).unwrap();
        assert_eq!(again.dump(), dump);
        assert!(again.session_by_user_id("u1").is_ok());
        assert_eq!(again.create_ticket(now, Doc::new()).unwrap()["bugId"], 2);
    }

    // The index path of `Store::list` against the scan (`ListQuery::run`), on random stores
    // and random queries.

    const PLANS: [&str; 3] = ["free", "pro", "team"];

    /// One of 24 instants 250 ms apart from 2024-01-01, so that many documents share one.
    fn instant(rng: &mut fastrand::Rng) -> DateTime<Utc> {
        ManualClock::at_2024().now() + chrono::Duration::milliseconds(rng.i64(0..24) * 250)
    }

    fn session_body(rng: &mut fastrand::Rng) -> Doc {
        let mut body = obj(json!({
            "userId": format!("u{}", rng.u8(..20)),
            "tags": if rng.bool() { json!(["x"]) } else { json!(["y", "z"]) },
        }));
        if rng.u8(..5) > 0 {
            body.insert(
                "customData".into(),
                json!({"plan": PLANS[rng.usize(..3)], "seats": rng.u8(..4)}),
            );
        }
        body
    }

    /// A filter value: a timestamp in one of the forms clients send, near the instants
    /// documents have (between them, on them, with fractions of a millisecond), or text.
    fn time_value(rng: &mut fastrand::Rng) -> String {
        let t = instant(rng) + chrono::Duration::microseconds(rng.i64(-1500..1500));
        match rng.u8(..8) {
            0 => t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            1 => t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            2 => t
                .with_timezone(&chrono::FixedOffset::east_opt(3600).unwrap())
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, false)
                .replace('+', "%2B"),
            3 => "2024-01-01".into(),
            4 => "2024-01-01T00:00:03".into(),
            5 if rng.u8(..4) == 0 => "not-a-time".into(),
            _ => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }
    }

    fn random_query(rng: &mut fastrand::Rng, kind: Kind) -> String {
        let field = if rng.bool() { "createdAt" } else { "updatedAt" };
        let other = if field == "createdAt" {
            "updatedAt"
        } else {
            "createdAt"
        };
        let mut parts = vec![format!("sort={}{field}", if rng.bool() { "-" } else { "" })];
        for _ in 0..rng.usize(..4) {
            let on = if rng.u8(..4) == 0 { other } else { field };
            let op = [">=", "<=", ">", "<", "%3E=", "%3C="][rng.usize(..6)];
            parts.push(format!("{on}{op}{}", time_value(rng)));
        }
        for _ in 0..rng.usize(..3) {
            parts.push(match (kind, rng.u8(..6)) {
                (Kind::Sessions, 0) => format!("customData.plan={}", PLANS[rng.usize(..3)]),
                (Kind::Sessions, 1) => "customData.plan=pro,team".into(),
                (Kind::Sessions, 2) => "customData.plan!=free".into(),
                (Kind::Sessions, 3) => "tags=x".into(),
                (Kind::Tickets, 0) => "status=OPEN".into(),
                (Kind::Tickets, 1) => "priority=HIGH,LOW".into(),
                (Kind::Tickets, 2) => "ignoreArchived=true".into(),
                (_, 4) => format!("{field}={}", format_timestamp(&instant(rng))),
                _ => format!("{other}!={}", format_timestamp(&instant(rng))),
            });
        }
        if rng.bool() {
            parts.push(format!("skip={}", rng.usize(..12)));
        }
        if rng.u8(..6) > 0 {
            parts.push(format!("limit={}", rng.usize(..15)));
        }
        rng.shuffle(&mut parts);
        parts.join("&")
    }

    fn ids_of(page: &[&Doc]) -> Vec<String> {
        page.iter()
            .map(|d| d["_id"].as_str().unwrap().into())
            .collect()
    }

    /// Runs random queries both ways; all must agree, and take the index path.
    fn same_pages_both_ways(store: &Store, rng: &mut fastrand::Rng, queries: usize) {
        for _ in 0..queries {
            let kind = if rng.u8(..3) == 0 {
                Kind::Tickets
            } else {
                Kind::Sessions
            };
            let raw = random_query(rng, kind);
            let q = crate::emulator::query::parse(Some(&raw)).unwrap();
            let plan = q.index_plan().expect("sorted on a timestamp");
            assert!(store.time_indexes[kind.index()].get(plan.field).complete());
            let (scan_page, scan_total) = q.run(store.docs(kind));
            let (page, total) = store.list(kind, &q, true);
            assert_eq!(
                ids_of(&page),
                ids_of(&scan_page),
                "{kind:?} {raw} ({plan:?})"
            );
            assert_eq!(total, Some(scan_total), "{kind:?} {raw}");
            let (page, total) = store.list(kind, &q, false);
            assert_eq!(ids_of(&page), ids_of(&scan_page), "{kind:?} {raw}");
            assert_eq!(total, None);
        }
    }

    #[test]
    fn the_index_path_gives_the_scan_pages() {
        let mut rng = fastrand::Rng::with_seed(20240101);
        for round in 0..12 {
            let mut store = Store::new(round);
            if round % 3 == 2 {
                // Loaded documents: ids in no particular order against stored order.
                let sessions: Vec<Value> = (0..80)
                    .map(|_| {
                        let mut doc = session_body(&mut rng);
                        let id: String = (0..24)
                            .map(|_| char::from_digit(rng.u32(..16), 16).unwrap())
                            .collect();
                        doc.insert("_id".into(), json!(id));
                        doc.insert(
                            "createdAt".into(),
                            json!(format_timestamp(&instant(&mut rng))),
                        );
                        doc.insert(
                            "updatedAt".into(),
                            json!(format_timestamp(&instant(&mut rng))),
                        );
                        Value::Object(doc)
                    })
                    .collect();
                store
                    .load(&json!({"sessions": sessions, "tickets": [], "messages": []}))
                    .unwrap();
            }
            for _ in 0..rng.usize(40..120) {
                let now = instant(&mut rng);
                store.create_session(now, session_body(&mut rng));
            }
            let session_ids: Vec<String> = store.sessions.keys().cloned().collect();
            for _ in 0..rng.usize(10..40) {
                let now = instant(&mut rng);
                let status = ["OPEN", "DONE"][rng.usize(..2)];
                let priority = ["LOW", "MEDIUM", "HIGH"][rng.usize(..3)];
                let mut body = obj(json!({
                    "status": status,
                    "priority": priority,
                    "archived": rng.u8(..4) == 0,
                }));
                if rng.bool() {
                    body.insert(
                        "session".into(),
                        json!(session_ids[rng.usize(..session_ids.len())]),
                    );
                }
                store.create_ticket(now, body).unwrap();
            }
            same_pages_both_ways(&store, &mut rng, 150);

            // Updates move documents in the updatedAt index, to earlier instants too.
            for kind in [Kind::Sessions, Kind::Tickets] {
                let ids: Vec<String> = store.collection(kind).keys().cloned().collect();
                for id in &ids {
                    if rng.u8(..3) > 0 {
                        continue;
                    }
                    let body = match kind {
                        Kind::Sessions => {
                            obj(json!({"customData": {"plan": PLANS[rng.usize(..3)]}}))
                        }
                        _ => obj(json!({"status": "DONE"})),
                    };
                    store.update(kind, id, instant(&mut rng), body).unwrap();
                }
            }
            let touched = store.touch_sessions(instant(&mut rng), 10);
            assert_eq!(touched.len(), 10);
            same_pages_both_ways(&store, &mut rng, 150);

            for id in &session_ids {
                if rng.u8(..5) == 0 {
                    store.delete_session(id).unwrap();
                }
            }
            same_pages_both_ways(&store, &mut rng, 150);
        }
    }

    #[test]
    fn ties_on_a_timestamp_go_by_id_both_ways() {
        let at = "2024-01-01T00:00:00.000Z";
        let later = "2024-01-01T00:00:01.000Z";
        let docs: Vec<Value> = [("c", at), ("a", later), ("d", at), ("b", at)]
            .iter()
            .map(|(id, t)| json!({"_id": id, "createdAt": t, "updatedAt": t}))
            .collect();
        let mut store = Store::new(1);
        store
            .load(&json!({"sessions": docs, "tickets": [], "messages": []}))
            .unwrap();
        for (raw, want) in [
            ("sort=createdAt", vec!["b", "c", "d", "a"]),
            ("sort=-createdAt", vec!["a", "d", "c", "b"]),
            ("sort=updatedAt&limit=2&skip=1", vec!["c", "d"]),
            (
                "sort=-updatedAt&updatedAt<2024-01-01T00:00:01Z",
                vec!["d", "c", "b"],
            ),
        ] {
            let q = crate::emulator::query::parse(Some(raw)).unwrap();
            assert_eq!(
                ids_of(&store.list(Kind::Sessions, &q, false).0),
                want,
                "{raw}"
            );
            assert_eq!(
                ids_of(&q.run(store.docs(Kind::Sessions)).0),
                want,
                "{raw} (scan)"
            );
        }
    }

    #[test]
    fn a_timestamp_in_another_form_turns_the_index_off_until_it_goes() {
        let mut store = Store::new(1);
        store
            .load(&json!({"sessions": [
                {"_id": "x", "createdAt": "2024-01-01T00:00:00Z", "updatedAt": "2024-01-01T00:00:00.000Z"},
            ], "tickets": [], "messages": []}))
            .unwrap();
        let now = ManualClock::at_2024().now();
        let s = store.create_session(now, Doc::new());
        let index = &store.time_indexes[Kind::Sessions.index()];
        assert!(!index.get(TimeField::CreatedAt).complete());
        assert!(index.get(TimeField::UpdatedAt).complete());
        // "…00Z" sorts after "…00.000Z" as text: the scan's order, which the list keeps.
        let q = crate::emulator::query::parse(Some("sort=createdAt")).unwrap();
        let (page, total) = store.list(Kind::Sessions, &q, false);
        assert_eq!(ids_of(&page), [s["_id"].as_str().unwrap(), "x"]);
        assert_eq!(total, Some(2), "the scan counts anyway");
        store.delete_session("x").unwrap();
        let index = &store.time_indexes[Kind::Sessions.index()];
        assert!(index.get(TimeField::CreatedAt).complete());
        assert_eq!(index.get(TimeField::CreatedAt).len(), 1);
        assert_eq!(index.get(TimeField::UpdatedAt).len(), 1);
    }

    #[test]
    fn generated_sessions_are_the_same_for_a_seed_and_share_timestamps() {
        let mut a = Store::new(9);
        a.generate_sessions(2000);
        let mut b = Store::new(9);
        b.generate_sessions(2000);
        assert_eq!(a.dump(), b.dump());
        let mut c = Store::new(10);
        c.generate_sessions(2000);
        assert_ne!(a.dump(), c.dump());

        let first = a.docs(Kind::Sessions).next().unwrap();
        assert_eq!(first["userId"], "user-000001");
        assert_eq!(first["email"], "user-000001@example.com");
        assert!(first["customData"]["plan"].is_string());
        assert!(first["customData"]["seats"].is_u64());
        assert!(first["customData"]["trial"].is_boolean());
        assert!(first["tags"].is_array());
        assert!(a.session_by_user_id("user-002000").is_ok());
        let created: Vec<&str> = a
            .docs(Kind::Sessions)
            .map(|d| d["createdAt"].as_str().unwrap())
            .collect();
        assert!(
            created.windows(2).all(|w| w[0] <= w[1]),
            "in creation order"
        );
        assert!(created.windows(2).filter(|w| w[0] == w[1]).count() > 100);
        let updated: HashSet<&str> = a
            .docs(Kind::Sessions)
            .map(|d| d["updatedAt"].as_str().unwrap())
            .collect();
        assert!(updated.len() < 2000, "some updatedAt are equal");
        assert!(created[0] >= "2023-01-01" && updated.iter().all(|u| *u < "2024-01-01"));
        let index = &a.time_indexes[Kind::Sessions.index()];
        for field in TimeField::ALL {
            assert!(index.get(field).complete());
            assert_eq!(index.get(field).len(), 2000);
        }
    }

    #[test]
    fn touched_sessions_are_the_newest_and_changed() {
        let mut store = Store::new(3);
        store.generate_sessions(500);
        let before = store.dump();
        let now = ManualClock::at_2024().now();
        let ids = store.touch_sessions(now, 20);
        assert_eq!(ids.len(), 20);
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 20, "distinct");
        let q = crate::emulator::query::parse(Some(
            "sort=updatedAt&updatedAt>=2024-01-01T00:00:00.000Z",
        ))
        .unwrap();
        let (page, _) = store.list(Kind::Sessions, &q, false);
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids_of(&page), sorted, "ties on now go by _id");
        let old = |id: &str| {
            before["sessions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["_id"] == id)
                .unwrap()
                .clone()
        };
        for doc in &page {
            let id = doc["_id"].as_str().unwrap();
            assert_eq!(doc["updatedAt"], "2024-01-01T00:00:00.000Z");
            assert_eq!(
                doc["customData"]["seats"].as_u64().unwrap(),
                old(id)["customData"]["seats"].as_u64().unwrap() + 1
            );
            assert_eq!(doc["createdAt"], old(id)["createdAt"]);
        }
        let again = store.touch_sessions(now, 20);
        assert_ne!(again, ids, "another call picks other sessions");
        assert_eq!(store.touch_sessions(now, 10_000).len(), 500);
    }
}
