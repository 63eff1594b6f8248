//! The emulator's data: sessions, tickets and messages of one project, with the behaviour the
//! real API has (ObjectIds, millisecond timestamps, per-project bug ids, references that must
//! exist, populated sessions in answers).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use serde_json::{Map, Value, json};

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
    json!({"_id": "64b000000000000000000001", "email": "api@gleap.local", "firstName": "API", "lastName": "Agent"})
}

/// All data of the emulated project.
#[derive(Debug, Default)]
pub struct Store {
    sessions: IndexMap<String, Doc>,
    tickets: IndexMap<String, Doc>,
    messages: IndexMap<String, Doc>,
    /// userId -> ids of the sessions with it, oldest first.
    user_ids: HashMap<String, Vec<String>>,
    next_bug_id: u64,
    ids: ObjectIds,
}

impl Store {
    pub fn new(seed: u64) -> Store {
        Store {
            next_bug_id: 1,
            ids: ObjectIds::new(seed),
            ..Default::default()
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
        self.sessions.insert(id.clone(), doc);
        self.render(Kind::Sessions, &id).expect("just inserted")
    }

    /// `POST /tickets`: a bug id of the project's own sequence; the session must exist.
    pub fn create_ticket(
        &mut self,
        now: DateTime<Utc>,
        mut body: Doc,
    ) -> Result<Value, StoreError> {
        self.require(Kind::Sessions, "session", &body)?;
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
        self.tickets.insert(id.clone(), doc);
        Ok(self.render(Kind::Tickets, &id).expect("just inserted"))
    }

    /// `POST /messages`: on an existing ticket; customer-authored when `session` is given.
    pub fn create_message(
        &mut self,
        now: DateTime<Utc>,
        mut body: Doc,
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
        body.entry("type").or_insert(json!("TEXT"));
        body.entry("isNote").or_insert(json!(false));
        let (id, doc) = self.stamp(now, body);
        let ticket = doc
            .get("ticket")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        self.messages.insert(id.clone(), doc);
        if let Some(t) = self.tickets.get_mut(&ticket) {
            t.insert("latestComment".into(), Value::String(id.clone()));
        }
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
        if !self.collection(kind).contains_key(id) {
            return Err(self.not_found(kind));
        }
        if kind == Kind::Tickets {
            self.require(Kind::Sessions, "session", &body)?;
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
        doc.insert("updatedAt".into(), Value::String(format_timestamp(&now)));
        let new_user_id = doc.get("userId").cloned();
        if kind == Kind::Sessions && old_user_id != new_user_id {
            if let Some(Value::String(old)) = &old_user_id {
                self.unindex_user_id(old, id);
            }
            if let Some(Value::String(new)) = new_user_id {
                self.user_ids.entry(new).or_default().push(id.to_string());
            }
        }
        Ok(self.render(kind, id).expect("exists"))
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
        let doc = self
            .sessions
            .shift_remove(id)
            .ok_or_else(|| self.not_found(Kind::Sessions))?;
        if let Some(Value::String(user_id)) = doc.get("userId") {
            self.unindex_user_id(&user_id.clone(), id);
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

    /// A document as the API answers it: tickets and messages show their session as
    /// `{_id, email, name}`, agent messages their author as `user`.
    pub fn render(&self, kind: Kind, id: &str) -> Option<Value> {
        let doc = self.collection(kind).get(id)?;
        Some(self.render_doc(kind, doc))
    }

    pub fn render_doc(&self, kind: Kind, doc: &Doc) -> Value {
        if kind == Kind::Sessions {
            return Value::Object(doc.clone());
        }
        let mut out = doc.clone();
        if let Some(Value::String(session_id)) = doc.get("session")
            && let Some(session) = self.sessions.get(session_id)
        {
            let mut summary = Map::new();
            for key in ["_id", "id", "email", "name", "userId"] {
                if let Some(v) = session.get(key) {
                    summary.insert(key.into(), v.clone());
                }
            }
            out.insert("session".into(), Value::Object(summary));
        }
        if kind == Kind::Messages && doc.get("session").is_none_or(Value::is_null) {
            out.insert("user".into(), api_agent());
        }
        out.shift_remove("sendToChannel");
        Value::Object(out)
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
                self.collection_mut(kind)
                    .insert(id.to_string(), doc.clone());
            }
        }
        self.next_bug_id = data
            .get("nextBugId")
            .and_then(Value::as_u64)
            .unwrap_or(self.tickets.len() as u64 + 1);
        Ok(())
    }
}

/// MongoDB-style ObjectIds: 4 bytes of seconds, 5 random bytes, a 3-byte counter.
#[derive(Debug, Default)]
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
        self.counter = (self.counter + 1) & 0x00ff_ffff;
        let mut bytes = [0u8; 12];
        bytes[..4].copy_from_slice(&(now.timestamp() as u32).to_be_bytes());
        bytes[4..9].copy_from_slice(&self.random);
        bytes[9..].copy_from_slice(&self.counter.to_be_bytes()[1..]);
        bytes.iter().map(|b| format!("{b:02x}")).collect()
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
        let tid = t["_id"].clone();
        assert_eq!(
            store
                .create_message(now, obj(json!({"comment": "hi"})))
                .unwrap_err(),
            StoreError::BadRequest("ticket is required".into())
        );
        let agent = store
            .create_message(now, obj(json!({"ticket": tid, "comment": "hello"})))
            .unwrap();
        assert_eq!(agent["user"]["firstName"], "API");
        let customer = store
            .create_message(
                now,
                obj(json!({"ticket": tid, "comment": "hey", "session": s["_id"]})),
            )
            .unwrap();
        assert!(customer.get("user").is_none());
        assert_eq!(customer["session"]["_id"], s["_id"]);
        assert!(
            store
                .create_message(now, obj(json!({"ticket": tid, "comment": {"type": "p"}})))
                .is_err()
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
}
