//! The Gleap sink: idempotent upserts of sessions, tickets and messages.
//!
//! Gleap has no idempotency keys and no external ids, so the sink keeps its own: an id map in
//! the state store (source id -> Gleap id and a hash of what was sent), intents written before
//! every create, and a way to find each entity again when an answer is lost: sessions by
//! `userId` (or email), tickets by `customData.importId`, messages by their content on their
//! ticket. A record costs no request when its hash is unchanged, one when it is new (with
//! `prefetch`) or changed, and a look-up more only when an earlier attempt left it uncertain.

pub mod agents;
pub mod helpcentre;
mod lookup;
mod sink;
mod tracker;

use std::collections::HashMap;
use std::sync::Arc;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value};

pub use sink::GleapSink;
pub(crate) use sink::same_message;

/// The `customData.importId` of stream `stream`'s ticket `source_id`: this pipeline's
/// import marker.
pub fn import_id(stream: &str, source_id: &str) -> String {
    format!("{stream}:{source_id}")
}

use crate::config::{ConfigError, did_you_mean};
use crate::error::{Error, Result};
use crate::gleap::client::GleapClient;
use crate::gleap::fields::{
    CREATE_MESSAGE_FIELDS, CREATE_TICKET_FIELDS, SESSION_FIELDS, UPDATE_TICKET_FIELDS,
};
use crate::gleap::model::{Field, check_body};
use crate::record::{FieldPath, Record};
use crate::state::{MapEntry, StateStore};

/// Writes records to Gleap as sessions, tickets or messages.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GleapSinkConfig {
    /// `sessions` (contacts), `tickets` or `messages` (comments).
    pub entity: Entity,
    /// Sessions: the field that identifies a contact, `userId` (default) or `email`.
    #[serde(default)]
    pub key: Option<SessionKey>,
    /// Tickets and messages: the record field with the source id (default `id`). It is not
    /// sent; it keys the id map, and tickets carry it in `customData.importId`.
    #[serde(default)]
    pub id: Option<FieldPath>,
    /// Sessions: read every existing session (1000 per request) so that a record costs no
    /// look-up: `true` before writing, `false` never (a new contact costs a look-up), or
    /// `auto` (default): look records up one by one, and read the sessions, a page for each
    /// look-up beyond the first few, only while that is paying off (a few new contacts in
    /// a large project cost a few requests, a large import one request a record).
    #[serde(default)]
    pub prefetch: PrefetchSetting,
    /// Fields holding source ids of another stream's records, replaced by the Gleap ids that
    /// stream created: `{session: users}` on tickets, `{ticket: tickets, session: users}` on
    /// messages. The other stream runs first.
    #[serde(default)]
    pub refs: IndexMap<String, String>,
    /// Articles: the URL of an article in the new help centre, for rewriting links between
    /// articles: `{locale}`, `{docId}` (the number Gleap gives it), `{id}`, `{collection}`
    /// and `{slug}` (of its title) are filled in, e.g.
    /// `https://help.example.com/{locale}/articles/{docId}-{slug}`. Without it, links to
    /// the old help centre's articles are kept (and counted).
    #[serde(default)]
    pub article_url: Option<String>,
    /// Articles: the hosts of the old help centre (`acme.zendesk.com`, `intercom.help`);
    /// only links to them (and relative ones) are rewritten. Default: any host.
    #[serde(default)]
    pub article_hosts: Vec<String>,
    /// `link` (default): attachment and image URLs are sent as the source has them;
    /// `rehost`: each file is downloaded into the vault, uploaded to Gleap once, and the
    /// record sent with Gleap's URLs (README: Files and inline images).
    #[serde(default)]
    pub attachments: crate::files::AttachmentsMode,
    /// With `attachments: rehost`: limits, the files folder and source credentials.
    #[serde(default)]
    pub files: crate::files::FilesConfig,
    /// Tickets and messages: send the source's agents as the Gleap team members with the same
    /// e-mail (`user` of a message, `processingUser` of a ticket), read from the record's
    /// `agent: {id, email, name}`; `file:` maps source e-mails or ids to team e-mails.
    #[serde(default)]
    pub agents: Option<agents::AgentsConfig>,
}

/// `prefetch: true`, `false` or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, JsonSchema)]
#[serde(untagged)]
pub enum PrefetchSetting {
    Flag(bool),
    #[default]
    #[schemars(with = "String")]
    Auto,
}

impl<'de> Deserialize<'de> for PrefetchSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Bool(b) => Ok(PrefetchSetting::Flag(b)),
            Value::String(s) if s == "auto" => Ok(PrefetchSetting::Auto),
            other => Err(serde::de::Error::custom(format!(
                "expected true, false or `auto`, found {other}"
            ))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    Sessions,
    Tickets,
    Messages,
    /// Help-centre collections ([`helpcentre`]).
    Collections,
    /// Help-centre articles ([`helpcentre`]).
    Articles,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
pub enum SessionKey {
    #[default]
    #[serde(rename = "userId")]
    UserId,
    #[serde(rename = "email")]
    Email,
}

impl SessionKey {
    pub fn field(self) -> &'static str {
        match self {
            SessionKey::UserId => "userId",
            SessionKey::Email => "email",
        }
    }
}

impl Entity {
    pub fn name(self) -> &'static str {
        match self {
            Entity::Sessions => "sessions",
            Entity::Tickets => "tickets",
            Entity::Messages => "messages",
            Entity::Collections => "collections",
            Entity::Articles => "articles",
        }
    }

    /// Help-centre content, written by [`helpcentre::HelpCentreSink`].
    pub fn is_help_centre(self) -> bool {
        matches!(self, Entity::Collections | Entity::Articles)
    }

    pub fn singular(self) -> &'static str {
        match self {
            Entity::Sessions => "session",
            Entity::Tickets => "ticket",
            Entity::Messages => "message",
            Entity::Collections => "collection",
            Entity::Articles => "article",
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Entity::Sessions => "/sessions",
            Entity::Tickets => "/tickets",
            Entity::Messages => "/messages",
            Entity::Collections => "/helpcenter/collections",
            Entity::Articles => "/helpcenter/collections/{id}/articles",
        }
    }

    pub fn create_fields(self) -> &'static [Field] {
        match self {
            Entity::Sessions => SESSION_FIELDS,
            Entity::Tickets => CREATE_TICKET_FIELDS,
            Entity::Messages => CREATE_MESSAGE_FIELDS,
            Entity::Collections | Entity::Articles => &[],
        }
    }

    pub fn update_fields(self) -> &'static [Field] {
        match self {
            Entity::Sessions => SESSION_FIELDS,
            Entity::Tickets => UPDATE_TICKET_FIELDS,
            Entity::Messages => CREATE_MESSAGE_FIELDS,
            Entity::Collections | Entity::Articles => &[],
        }
    }

    /// The reference fields a `refs:` may name.
    pub fn ref_fields(self) -> &'static [&'static str] {
        match self {
            Entity::Sessions => &[],
            Entity::Tickets => &["session"],
            Entity::Messages => &["ticket", "session"],
            Entity::Collections => &["parent"],
            Entity::Articles => &["collection"],
        }
    }
}

impl GleapSinkConfig {
    /// Every problem with the sink's own settings; `at` is the sink's config path. Whether
    /// the streams `refs` names exist and write to Gleap is checked with the pipeline.
    pub fn check(&self, at: &str) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        let mut problem = |option: &str, message: String| {
            problems.push(ConfigError::at(format!("{at}.{option}"), message));
        };
        let entity = self.entity.name();
        if !self.entity.is_help_centre() {
            if self.article_url.is_some() {
                problem("article_url", format!("is for articles, not {entity}"));
            }
            if !self.article_hosts.is_empty() {
                problem("article_hosts", format!("is for articles, not {entity}"));
            }
        }
        if let Some(url) = &self.article_url
            && !url.contains("{docId}")
            && !url.contains("{id}")
        {
            problem(
                "article_url",
                format!(
                    "{url:?} names no article: put `{{docId}}` (the number in Gleap's article URLs) or `{{id}}` in it"
                ),
            );
        }
        if self.entity == Entity::Articles && !self.refs.contains_key("collection") {
            problem("refs", "articles need `refs: {collection: <collections stream>}`: the stream whose collections hold them".into());
        }
        if self.entity == Entity::Sessions {
            if self.id.is_some() {
                problem(
                    "id",
                    "is for tickets and messages; sessions are keyed by `key` (userId or email)"
                        .into(),
                );
            }
        } else {
            if self.key.is_some() {
                problem(
                    "key",
                    format!("is for sessions; {entity} are keyed by `id`"),
                );
            }
            if self.prefetch == PrefetchSetting::Flag(true) {
                problem("prefetch", format!("is for sessions, not {entity}"));
            }
        }
        for field in self.refs.keys() {
            let allowed = self.entity.ref_fields();
            if !allowed.contains(&field.as_str()) {
                problem(
                    &format!("refs.{field}"),
                    if allowed.is_empty() {
                        format!("{entity} take no `refs`")
                    } else {
                        format!(
                            "`{field}` is not a reference of {entity}; it takes {}",
                            allowed.join(", ")
                        )
                    },
                );
            }
        }
        if let Some(a) = &self.agents {
            problems.extend(a.check(&format!("{at}.agents"), self.entity));
        }
        problems.extend(self.files.check(&format!("{at}.files")));
        problems
    }

    pub fn key(&self) -> SessionKey {
        self.key.unwrap_or_default()
    }

    /// The running sink: help-centre content, or sessions, tickets and messages.
    pub fn build_sink(
        &self,
        context: crate::sinks::SinkContext,
    ) -> Result<Box<dyn crate::sinks::Sink>> {
        crate::config::checked(self.check("sink.gleap"))?;
        if self.entity.is_help_centre() {
            return Ok(Box::new(helpcentre::HelpCentreSink::new(self, context)?));
        }
        Ok(Box::new(self.build(context)?))
    }

    fn id_field(&self) -> FieldPath {
        self.id
            .clone()
            .unwrap_or_else(|| FieldPath::parse("id").expect("a valid path"))
    }

    /// The source id a record is keyed by in the id map, read as the sink reads it (sessions:
    /// the `key` field; tickets and messages: the `id` field), or `None` when it has none.
    pub fn source_id(&self, record: &Record) -> Option<String> {
        match self.entity {
            Entity::Sessions => record.get(self.key().field()).and_then(id_text),
            _ => self.id_field().get(record).and_then(id_text),
        }
    }
}

/// What the Gleap sinks of a run share: one client (one rate limit), one state store, one
/// async runtime.
pub struct GleapRun {
    pub client: Arc<GleapClient>,
    pub store: Arc<StateStore>,
    pub runtime: Arc<tokio::runtime::Runtime>,
    /// Look up every record the state store does not know, and adopt what Gleap holds
    /// (`--adopt-existing`, after a lost state).
    pub adopt_existing: bool,
    /// The project's team members, read once by the first sink with `agents:`.
    pub team: agents::TeamCache,
    /// `run --prune`: where each stream's sink leaves the source ids it saw.
    pub prune_seen: Option<Arc<crate::prune::SeenIds>>,
}

/// A record ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub source_id: String,
    pub body: Map<String, Value>,
    pub hash: u128,
    /// The records of other streams it references.
    pub parents: Vec<ParentRef>,
}

/// A reference to another stream's record, mapped to its Gleap id.
#[derive(Debug, Clone, PartialEq)]
pub struct ParentRef {
    /// The reference field: `session` or `ticket`.
    pub field: String,
    pub stream: String,
    pub source_id: String,
    pub gleap_id: String,
}

impl ParentRef {
    /// Where Gleap answers the referenced record: `/sessions/ID`, `/tickets/ID`.
    pub fn path(&self) -> String {
        format!("/{}s/{}", self.field, self.gleap_id)
    }
}

/// Turns records into request bodies for one stream.
pub struct Preparer {
    stream: String,
    config: GleapSinkConfig,
    /// For each `refs` field, the id map of the stream it names.
    parents: HashMap<String, (String, HashMap<String, MapEntry>)>,
    /// `plan`: references show the source id they will be mapped from.
    preview: bool,
    /// `agents:`: the source agents matched with team members.
    agents: Option<Arc<agents::Agents>>,
}

impl Preparer {
    pub fn new(stream: &str, config: &GleapSinkConfig, store: &StateStore) -> Result<Preparer> {
        let mut parents = HashMap::new();
        for (field, parent) in &config.refs {
            parents.insert(field.clone(), (parent.clone(), store.load_map(parent)?));
        }
        Ok(Preparer {
            stream: stream.to_string(),
            config: config.clone(),
            parents,
            preview: false,
            agents: None,
        })
    }

    /// Matches source agents with team members before each record is checked.
    pub fn with_agents(mut self, agents: Arc<agents::Agents>) -> Preparer {
        self.agents = Some(agents);
        self
    }

    /// For `plan`: no state store; references show `<stream source-id>` instead of a Gleap id.
    pub fn preview(stream: &str, config: &GleapSinkConfig) -> Preparer {
        let parents = config
            .refs
            .iter()
            .map(|(f, p)| (f.clone(), (p.clone(), HashMap::new())))
            .collect();
        Preparer {
            stream: stream.to_string(),
            config: config.clone(),
            parents,
            preview: true,
            agents: config
                .agents
                .as_ref()
                .map(|a| Arc::new(agents::Agents::offline(a, config.entity))),
        }
    }

    /// The source id of a record as `prepare` reads it, if it has one.
    pub fn source_id(&self, record: &Record) -> Option<String> {
        self.config.source_id(record)
    }

    /// The `customData.importId` a ticket carries.
    pub fn import_id(&self, source_id: &str) -> String {
        import_id(&self.stream, source_id)
    }

    /// The body for a record, or why it cannot be sent.
    pub fn prepare(&self, mut record: Record) -> std::result::Result<Prepared, (String, Record)> {
        macro_rules! reject {
            ($($arg:tt)*) => { return Err((format!($($arg)*), record)) };
        }
        let entity = self.config.entity;
        if entity.is_help_centre() {
            return self.prepare_help_centre(record);
        }
        if let Some(agents) = &self.agents {
            agents.apply(&mut record);
        }
        let source_id = match entity {
            Entity::Sessions => {
                let key = self.config.key().field();
                match record.get(key).and_then(id_text) {
                    Some(id) => {
                        record.insert(key.into(), Value::String(id.clone()));
                        id
                    }
                    None => reject!("the record has no `{key}`, which identifies a session"),
                }
            }
            _ => {
                let field = self.config.id_field();
                match field.get(&record).and_then(id_text) {
                    Some(id) => {
                        field.remove(&mut record);
                        id
                    }
                    None => reject!(
                        "the record has no `{field}`: the source id that keeps re-runs from creating the {} twice",
                        entity.singular()
                    ),
                }
            }
        };
        let mut refs = Vec::new();
        for (field, (parent, map)) in &self.parents {
            match record.get(field) {
                None | Some(Value::Null) => {}
                Some(value) => {
                    let Some(parent_id) = id_text(value) else {
                        reject!("`{field}` holds {value}, not a source id")
                    };
                    match map.get(&parent_id) {
                        None if self.preview => {
                            record.insert(
                                field.clone(),
                                Value::String(format!("<{parent} {parent_id}>")),
                            );
                        }
                        Some(entry) => {
                            record.insert(field.clone(), Value::String(entry.gleap_id.clone()));
                            refs.push(ParentRef {
                                field: field.clone(),
                                stream: parent.clone(),
                                source_id: parent_id,
                                gleap_id: entry.gleap_id.clone(),
                            });
                        }
                        None => reject!(
                            "`{field}` names {parent_id:?} of stream `{parent}`, which has no Gleap id: it was not created (see its dead letters) or is not in its input"
                        ),
                    }
                }
            }
        }
        if entity == Entity::Messages && record.get("ticket").is_none_or(Value::is_null) {
            reject!(
                "a message needs a `ticket` (map it with `refs: {{ticket: <tickets stream>}}`)"
            );
        }
        let fields = entity.create_fields();
        let unknown: Vec<String> = record
            .keys()
            .filter(|k| !fields.iter().any(|f| f.name == k.as_str()))
            .map(|k| match did_you_mean(k, fields.iter().map(|f| f.name)) {
                Some(s) => format!("`{k}` (did you mean `{s}`?)"),
                None => format!("`{k}`"),
            })
            .collect();
        if !unknown.is_empty() {
            reject!(
                "not a Gleap {} field, so Gleap would drop it silently: {}",
                entity.singular(),
                unknown.join(", ")
            );
        }
        // Null fields are not sent: a create has nothing to clear.
        record.retain(|_, v| !v.is_null());
        let mut body = match check_body(fields, record.clone()) {
            Ok(checked) if checked.dropped.is_empty() => checked.body,
            Ok(checked) => reject!(
                "not Gleap fields, Gleap would drop them silently: {}",
                checked.dropped.join(", ")
            ),
            Err(e) => reject!("{e}"),
        };
        match entity {
            Entity::Tickets => {
                let custom = body
                    .entry("customData")
                    .or_insert_with(|| Value::Object(Map::new()));
                if custom.is_null() {
                    *custom = Value::Object(Map::new());
                }
                let Value::Object(custom) = custom else {
                    reject!("customData must be an object")
                };
                custom.insert("importId".into(), Value::String(self.import_id(&source_id)));
            }
            Entity::Messages => {
                // An import must never notify the customer.
                body.insert("sendToChannel".into(), Value::Bool(false));
            }
            Entity::Sessions | Entity::Collections | Entity::Articles => {}
        }
        let hash = xxhash_rust::xxh3::xxh3_128(&serde_json::to_vec(&body).expect("JSON"));
        // Set after hashing: constant, so they change no hash that earlier runs stored.
        for (field, value) in silent_fields(entity) {
            body.insert((*field).into(), Value::Bool(*value));
        }
        Ok(Prepared {
            source_id,
            body,
            hash,
            parents: refs,
        })
    }
}

impl Preparer {
    /// `plan` of a help-centre stream: the body with the references as `<stream id>`.
    fn prepare_help_centre(
        &self,
        record: Record,
    ) -> std::result::Result<Prepared, (String, Record)> {
        let position = crate::record::Position {
            file: std::sync::Arc::from(""),
            line: None,
            row: 0,
            seq: 0,
        };
        let item = helpcentre::prepare(&self.config, &self.stream, record, position)?;
        let mut body = item.body;
        let field = if self.config.entity == Entity::Collections {
            "parent"
        } else {
            "collection"
        };
        if let Some(parent) = item.parent {
            let stream = self
                .config
                .refs
                .get(field)
                .cloned()
                .unwrap_or_else(|| self.stream.clone());
            body.insert(field.into(), Value::String(format!("<{stream} {parent}>")));
        }
        let hash = xxhash_rust::xxh3::xxh3_128(&serde_json::to_vec(&body).expect("JSON"));
        Ok(Prepared {
            source_id: item.source_id,
            body,
            hash,
            parents: Vec::new(),
        })
    }
}

/// The hash of a body as [`Preparer::prepare`] takes it: without the constant fields it
/// adds after hashing.
pub fn sent_hash(entity: Entity, body: &Map<String, Value>) -> u128 {
    let silent = silent_fields(entity);
    let mut body = body.clone();
    body.retain(|k, _| !silent.iter().any(|(f, _)| f == k));
    xxhash_rust::xxh3::xxh3_128(&serde_json::to_vec(&body).expect("JSON"))
}

/// A source id as text: strings as they are, numbers written out.
pub(crate) fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// What every create of an entity sets so that no customer hears of an import: tickets are
/// created silently and without the auto-reply (`isSilent`, `preventAutoReply`), messages are
/// not sent to the customer's channel and do not count as unread for them
/// (`sendToChannel`, set with the record's hash, and `sessionNotificationsUnread`).
pub fn silent_fields(entity: Entity) -> &'static [(&'static str, bool)] {
    match entity {
        Entity::Sessions => &[],
        Entity::Tickets => &[("isSilent", true), ("preventAutoReply", true)],
        Entity::Messages => &[("sessionNotificationsUnread", false)],
        Entity::Collections | Entity::Articles => &[],
    }
}

/// Fields we send that Gleap does not answer back (write-only, or only an instruction):
/// they are not compared with a stored document.
const NOT_ANSWERED: [&str; 6] = [
    "sendToChannel",
    "isSilent",
    "preventAutoReply",
    "sessionNotificationsUnread",
    "comment",
    "isNote",
];

/// Whether a stored Gleap document already holds every field of `body`: references compare
/// by id (a reference may come back as an object), a message's `comment` with its content
/// (`data.content`) and `isNote` with its type ([`crate::gleap::answer`]).
pub fn matches_remote(body: &Map<String, Value>, remote: &Value) -> bool {
    body.iter().all(|(k, v)| same_field(k, v, remote))
}

/// The fields of `body` a stored Gleap document does not hold as sent ([`matches_remote`]).
pub fn differing_fields(body: &Map<String, Value>, remote: &Value) -> Vec<String> {
    body.iter()
        .filter(|(k, v)| !same_field(k, v, remote))
        .map(|(k, _)| k.clone())
        .collect()
}

fn same_field(k: &str, v: &Value, remote: &Value) -> bool {
    use crate::gleap::answer;
    match (k, remote.get(k)) {
        ("comment", _) => {
            answer::message_content(remote).is_some_and(|c| answer::same_content(c, v))
        }
        ("isNote", _) => answer::is_note(remote) == (v.as_bool() == Some(true)),
        (k, _) if NOT_ANSWERED.contains(&k) => true,
        (_, Some(r @ Value::Object(_))) if v.is_string() => answer::ref_id(r) == v.as_str(),
        (_, Some(r)) => r == v,
        (_, None) => v.is_null(),
    }
}

impl GleapRun {
    /// Opens the state store and builds the client and runtime.
    pub fn start(
        store_dir: &std::path::Path,
        settings: crate::gleap::client::ClientSettings,
    ) -> Result<GleapRun> {
        let store = Arc::new(StateStore::open(store_dir)?);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("gleap-io")
            .enable_all()
            .build()
            .map_err(|e| Error::internal(format!("cannot start the async runtime: {e}")))?;
        let client = Arc::new(GleapClient::new(settings)?);
        Ok(GleapRun {
            client,
            store,
            runtime: Arc::new(runtime),
            adopt_existing: false,
            team: Default::default(),
            prune_seen: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(v: Value) -> GleapSinkConfig {
        serde_json::from_value(v).unwrap()
    }

    /// The messages of [`GleapSinkConfig::check`] at path `g`.
    fn problems(c: &GleapSinkConfig) -> Vec<String> {
        c.check("g").into_iter().map(|e| e.message).collect()
    }

    /// A ref field, the stream it names, and that stream's (source id, Gleap id) pairs.
    type Parent<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

    fn preparer(c: &GleapSinkConfig, parents: &[Parent<'_>]) -> Preparer {
        let mut p = Preparer {
            stream: "s".into(),
            config: c.clone(),
            parents: HashMap::new(),
            preview: false,
            agents: None,
        };
        for (field, stream, entries) in parents {
            let map = entries
                .iter()
                .map(|(s, g)| {
                    (
                        s.to_string(),
                        MapEntry {
                            gleap_id: g.to_string(),
                            hash: 0,
                        },
                    )
                })
                .collect();
            p.parents
                .insert(field.to_string(), (stream.to_string(), map));
        }
        p
    }

    fn rec(v: Value) -> Record {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn sessions_are_keyed_by_user_id_and_unknown_fields_refused() {
        let p = preparer(&config(json!({"entity": "sessions"})), &[]);
        let ok = p
            .prepare(rec(
                json!({"userId": 42, "email": "a@x", "customData": {"plan": "pro"}}),
            ))
            .unwrap();
        assert_eq!(ok.source_id, "42");
        assert_eq!(ok.body["userId"], "42");
        let (reason, _) = p
            .prepare(rec(json!({"userId": "u1", "emial": "a@x"})))
            .unwrap_err();
        assert_eq!(
            reason,
            "not a Gleap session field, so Gleap would drop it silently: `emial` (did you mean `email`?)"
        );
        assert!(
            p.prepare(rec(json!({"email": "a@x"})))
                .unwrap_err()
                .0
                .contains("no `userId`")
        );
        let same = p
            .prepare(rec(
                json!({"userId": "42", "email": "a@x", "customData": {"plan": "pro"}}),
            ))
            .unwrap();
        assert_eq!(same.hash, ok.hash, "the same body, the same hash");
    }

    #[test]
    fn tickets_carry_their_import_id_and_mapped_session() {
        let c = config(json!({"entity": "tickets", "refs": {"session": "users"}}));
        let p = preparer(
            &c,
            &[("session", "users", &[("u1", "65a000000000000000000001")])],
        );
        let ok = p
            .prepare(rec(
                json!({"id": 7, "title": "t", "session": "u1", "priority": "HIGH"}),
            ))
            .unwrap();
        assert_eq!(ok.source_id, "7");
        assert!(ok.body.get("id").is_none());
        assert_eq!(ok.body["session"], "65a000000000000000000001");
        assert_eq!(ok.body["customData"], json!({"importId": "s:7"}));
        assert_eq!(ok.body["isSilent"], true, "no notification");
        assert_eq!(ok.body["preventAutoReply"], true, "no auto-reply");
        let (reason, record) = p
            .prepare(rec(json!({"id": 8, "title": "t", "session": "u9"})))
            .unwrap_err();
        assert!(
            reason.contains("\"u9\" of stream `users`, which has no Gleap id"),
            "{reason}"
        );
        assert_eq!(
            record["session"], "u9",
            "the dead letter shows the record as it came"
        );
        assert!(
            p.prepare(rec(json!({"id": 9, "priority": "URGENT"})))
                .unwrap_err()
                .0
                .contains("priority must be one of")
        );
    }

    #[test]
    fn messages_never_notify_and_need_a_ticket() {
        let c = config(json!({"entity": "messages", "refs": {"ticket": "tickets"}}));
        let p = preparer(
            &c,
            &[("ticket", "tickets", &[("t1", "65a0000000000000000000aa")])],
        );
        let ok = p
            .prepare(rec(
                json!({"id": "m1", "ticket": "t1", "comment": "hi", "sendToChannel": true}),
            ))
            .unwrap();
        assert_eq!(ok.body["sendToChannel"], false);
        assert_eq!(ok.body["sessionNotificationsUnread"], false);
        assert!(
            p.prepare(rec(json!({"id": "m2", "comment": "hi"})))
                .unwrap_err()
                .0
                .contains("needs a `ticket`")
        );
        let (reason, _) = p
            .prepare(rec(json!({"id": "m3", "ticket": "t1", "attachments": [{"name": "a", "url": "u", "size": 3}]})))
            .unwrap_err();
        assert!(reason.contains("attachments[0].size"), "{reason}");
    }

    #[test]
    fn help_centre_settings_are_checked() {
        assert!(
            problems(&config(
                json!({"entity": "articles", "refs": {"collection": "c"},
                          "article_url": "https://h/{locale}/articles/{docId}-{slug}"})
            ))
            .is_empty()
        );
        let p = problems(&config(
            json!({"entity": "articles", "article_url": "https://h/x"}),
        ));
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("names no article"), "{p:?}");
        assert!(p[1].contains("refs: {collection"), "{p:?}");
        let p = problems(&config(
            json!({"entity": "tickets", "article_hosts": ["x"]}),
        ));
        assert_eq!(p, ["g.article_hosts: is for articles, not tickets"]);
    }

    #[test]
    fn settings_that_do_not_fit_the_entity_are_problems() {
        assert!(problems(&config(json!({"entity": "sessions"}))).is_empty());
        let p = problems(&config(
            json!({"entity": "tickets", "prefetch": true, "key": "email", "refs": {"ticket": "x"}}),
        ));
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[2].contains("it takes session"));
    }

    #[test]
    fn remote_documents_match_by_value_and_populated_ids() {
        let body = rec(
            json!({"title": "t", "session": "s1", "sendToChannel": false,
                              "isSilent": true, "preventAutoReply": true}),
        );
        assert!(matches_remote(
            &body,
            &json!({"title": "t", "session": {"_id": "s1", "email": "x"}, "bugId": 3})
        ));
        assert!(matches_remote(
            &body,
            &json!({"id": "t9", "title": "t", "session": {"id": "s1"}})
        ));
        assert!(!matches_remote(
            &body,
            &json!({"title": "u", "session": {"_id": "s1"}})
        ));
        assert!(!matches_remote(
            &body,
            &json!({"title": "t", "session": {"id": "s2"}})
        ));
        // A message as the live API answers it: text in data.content, a note by its type.
        let message = rec(json!({"ticket": "t1", "comment": "hi", "isNote": true}));
        let live = json!({"id": "m1", "ticket": "t1", "comment": null, "isNote": null,
                          "type": "NOTE", "data": {"content": "hi"}});
        assert!(matches_remote(&message, &live));
        let mut other = live.clone();
        other["data"]["content"] = json!("bye");
        assert!(!matches_remote(&message, &other));
        let mut text = live.clone();
        text["type"] = json!("TEXT");
        assert!(!matches_remote(&message, &text));
    }
}
