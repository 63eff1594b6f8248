//! Intercom dump source: contacts, conversations and their messages from what Intercom dumps
//! really look like: API 2.x pages and objects (`{"type": "list", "data": [..]}`,
//! `{"type": "conversation.list", "conversations": [..]}`, a single contact or conversation
//! with its `conversation_parts`), the legacy 1.x shapes (`user.list`, `contact.list`,
//! conversations with `user` and `conversation_message`), newline-delimited JSON of any of
//! these, and Airbyte records (`{"stream", "data", "emitted_at"}`, streams `contacts`,
//! `conversations`, `conversation_parts`). Several files by glob, `.gz` accepted.
//!
//! Intercom's shapes differ across versions and exporters, so records are rebuilt into one
//! normalised form pipelines can map without knowing where a dump came from: string ids
//! (Intercom mixes integer and string ids), RFC 3339 UTC timestamps (Intercom writes Unix
//! seconds), tag and company names as plain lists, and for conversations a title. Messages
//! come as the `parts` entity, the opening message (`source`, 1.x `conversation_message`)
//! first at position 0. Each part says what `kind` it is: `message` (text or files),
//! `event` (assignment, open, close... with neither) or `empty` (a comment or note with
//! neither), for the pipeline to skip by kind; a blank body is null. Objects of other kinds (admins, tags, tickets...)
//! are skipped; an object of the configured kind that cannot be read is rejected.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::dump::{self, Document};
use super::{OpenedSource, ProgressUnit, Rejected, SourceItem, SourceIter, files};
use crate::error::{Error, Result};
use crate::record::{
    Position, Record, epoch_to_timestamp, format_timestamp, kind_of, parse_timestamp,
};
use crate::transforms::tiptap::html_text;

/// Reads Intercom API dumps.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IntercomSourceConfig {
    /// A file or a glob (`dump/conversations*.json*`), or a list of them; `.gz` accepted.
    pub path: files::PathSpec,
    /// What to read: `contacts`, `conversations` or `parts` (the messages of conversations).
    pub entity: IntercomEntity,
    /// Files to find tag names and companies in (the whole dump: `dump/*.json*`), for the
    /// ids contacts and conversations list without them (API 2.x contacts list tags and
    /// companies by id only): tag and company objects anywhere in them count (a `tags*.json`
    /// or `companies*.json` list page, the named tags of conversations...). Default: none.
    #[serde(default)]
    pub names_from: Option<files::PathSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IntercomEntity {
    /// One record per contact (user or lead).
    Contacts,
    /// One record per conversation.
    Conversations,
    /// One record per message or event of a conversation, the opening message first.
    Parts,
    /// Help-centre collections and sections, one record each ([`super::intercom_articles`]).
    Collections,
    /// Help-centre articles, one record each, with their translations.
    Articles,
    /// One record per admin (teammate) the dump lists (`admin.list` pages, Airbyte `admins`):
    /// `id`, `name`, `email`, for the assignees of conversations.
    Admins,
}

impl IntercomSourceConfig {
    /// Every problem with the options as written; `at` is the source's config path.
    pub fn check(&self, at: &str) -> Vec<crate::config::ConfigError> {
        let mut errors = self.path.check(&format!("{at}.path"));
        if let Some(spec) = &self.names_from {
            let at = format!("{at}.names_from");
            errors.extend(spec.check(&at));
            if !matches!(
                self.entity,
                IntercomEntity::Contacts | IntercomEntity::Conversations
            ) {
                errors.push(crate::config::ConfigError::at(
                    at,
                    "names tags and companies for `contacts` and `conversations` only",
                ));
            }
        }
        errors
    }

    pub fn open(&self) -> Result<OpenedSource> {
        crate::config::checked(self.check("source.intercom"))?;
        let files = self.path.expand()?;
        match self.entity {
            IntercomEntity::Collections => {
                return Ok(super::intercom_articles::open(
                    files,
                    super::intercom_articles::ArticlesKind::Collections,
                ));
            }
            IntercomEntity::Articles => {
                return Ok(super::intercom_articles::open(
                    files,
                    super::intercom_articles::ArticlesKind::Articles,
                ));
            }
            _ => {}
        }
        let total = files::total_size(&files);
        let entity = self.entity;
        let names = Arc::new(match (&self.names_from, entity) {
            (Some(spec), IntercomEntity::Contacts | IntercomEntity::Conversations) => {
                Names::gather(spec)?
            }
            _ => Names::default(),
        });
        Ok(OpenedSource::from_files(
            files,
            ProgressUnit::Bytes,
            total,
            move |path, done| {
                let docs = dump::documents(path, done.clone())?;
                let mut reader = FileReader {
                    entity,
                    path: path.to_path_buf(),
                    file: files::display_name(path),
                    row: 0,
                    positions: HashMap::new(),
                    loose_parts: None,
                    names: names.clone(),
                };
                Ok(Box::new(docs.flat_map(move |doc| reader.document(doc))) as SourceIter)
            },
        ))
    }
}

/// A normalised record, or why an object could not be read and the object.
type Found = std::result::Result<Record, (String, Value)>;

/// An object found in a document, by what it is.
enum Object {
    Contact(Value),
    Conversation(Value),
    /// A conversation part on its own (Airbyte `conversation_parts`), with `conversation_id`.
    Part(Value),
    Admin(Value),
    /// A document that is not a JSON object.
    Invalid(Value),
}

/// The state of reading one file.
struct FileReader {
    entity: IntercomEntity,
    path: PathBuf,
    file: Arc<str>,
    /// Items yielded so far in this file.
    row: u64,
    /// Parts entity: the last position given to a loose part of each conversation.
    positions: HashMap<String, u64>,
    /// Conversations entity: the loose parts the file holds for each conversation, counted
    /// at the first conversation.
    loose_parts: Option<HashMap<String, u64>>,
    /// Tag names and companies by id (`names_from`).
    names: Arc<Names>,
}

impl FileReader {
    fn document(&mut self, doc: dump::Item) -> Vec<Result<SourceItem>> {
        let (value, line) = match doc {
            Err(e) => return vec![Err(e)],
            Ok(Ok(Document { value, line })) => (value, line),
            Ok(Err(bad)) => {
                return vec![Ok(
                    self.item(bad.line, Err((bad.reason, Value::String(bad.text))))
                )];
            }
        };
        let mut objects = Vec::new();
        route(value, &mut objects);
        let mut found = Vec::new();
        match self.entity {
            IntercomEntity::Contacts => {
                for object in objects {
                    match object {
                        Object::Contact(c) => found.push(contact(c, &self.names)),
                        Object::Invalid(v) => found.push(Err(not_an_object(v))),
                        _ => {}
                    }
                }
            }
            IntercomEntity::Conversations => {
                if self.loose_parts.is_none()
                    && objects.iter().any(|o| matches!(o, Object::Conversation(_)))
                {
                    match loose_part_counts(&self.path) {
                        Ok(counts) => self.loose_parts = Some(counts),
                        Err(e) => return vec![Err(e)],
                    }
                }
                for object in objects {
                    match object {
                        Object::Conversation(c) => {
                            let loose = |id: &str| {
                                self.loose_parts
                                    .as_ref()
                                    .and_then(|m| m.get(id))
                                    .copied()
                                    .unwrap_or(0)
                            };
                            found.push(conversation(c, loose, &self.names));
                        }
                        Object::Invalid(v) => found.push(Err(not_an_object(v))),
                        _ => {}
                    }
                }
            }
            IntercomEntity::Parts => {
                for object in objects {
                    match object {
                        Object::Conversation(c) => found.extend(conversation_parts(c)),
                        Object::Part(p) => found.push(loose_part(p, &mut self.positions)),
                        Object::Invalid(v) => found.push(Err(not_an_object(v))),
                        Object::Contact(_) | Object::Admin(_) => {}
                    }
                }
            }
            IntercomEntity::Admins => {
                for object in objects {
                    match object {
                        Object::Admin(a) => found.push(admin(a)),
                        Object::Invalid(v) => found.push(Err(not_an_object(v))),
                        _ => {}
                    }
                }
            }
            // Read by `intercom_articles`.
            IntercomEntity::Collections | IntercomEntity::Articles => {}
        }
        found.into_iter().map(|f| Ok(self.item(line, f))).collect()
    }

    fn item(&mut self, line: u64, found: Found) -> SourceItem {
        self.row += 1;
        let position = Position {
            file: self.file.clone(),
            line: Some(line),
            row: self.row,
            seq: 0,
        };
        match found {
            Ok(record) => SourceItem::Record(record, position),
            Err((reason, record)) => SourceItem::Rejected(Rejected {
                position,
                record,
                reason,
            }),
        }
    }
}

fn not_an_object(v: Value) -> (String, Value) {
    (
        format!("the document holds {}, not a JSON object", kind_of(&v)),
        v,
    )
}

/// Finds the contacts, conversations and loose parts of one document: the object itself, the
/// items of a list page or of a top-level array, the data of an Airbyte record or webhook.
fn route(value: Value, out: &mut Vec<Object>) {
    match value {
        Value::Object(_) => route_object(value, out),
        Value::Array(items) => {
            for item in items {
                route_item(item, None, out);
            }
        }
        other => out.push(Object::Invalid(other)),
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Contact,
    Conversation,
    Part,
    Admin,
}

fn route_object(mut value: Value, out: &mut Vec<Object>) {
    if let Some((stream, _)) = dump::airbyte(&value) {
        let kind = match stream {
            "contacts" => Kind::Contact,
            "conversations" => Kind::Conversation,
            "conversation_parts" => Kind::Part,
            "admins" => Kind::Admin,
            _ => return,
        };
        let data = value.get_mut("data").map(Value::take).unwrap_or_default();
        out.push(wrap(kind, data));
        return;
    }
    let Some(map) = value.as_object_mut() else {
        return;
    };
    // Airbyte's raw tables (`_airbyte_data`) and webhook notifications (`data.item`).
    if let Some(data) = map
        .get_mut("_airbyte_data")
        .filter(|d| d.is_object())
        .map(Value::take)
    {
        route_item(data, None, out);
        return;
    }
    let kind = map.get("type").and_then(Value::as_str).map(str::to_string);
    if kind.as_deref() == Some("notification_event") {
        if let Some(item) = map
            .get_mut("data")
            .and_then(|d| d.get_mut("item"))
            .map(Value::take)
        {
            route_item(item, None, out);
        }
        return;
    }
    if let Some(k) = kind.as_deref().and_then(kind_of_type) {
        out.push(wrap(k, value));
        return;
    }
    // A list page (`list`, `contact.list`, `conversation.list`...) or an untyped wrapper.
    if kind
        .as_deref()
        .is_some_and(|t| t != "list" && !t.ends_with(".list"))
    {
        return;
    }
    for (key, hint) in [
        ("data", None),
        ("contacts", Some(Kind::Contact)),
        ("users", Some(Kind::Contact)),
        ("leads", Some(Kind::Contact)),
        ("conversations", Some(Kind::Conversation)),
        ("conversation_parts", Some(Kind::Part)),
        ("admins", Some(Kind::Admin)),
    ] {
        if let Some(Value::Array(items)) = map.get_mut(key).map(Value::take) {
            for item in items {
                route_item(item, hint, out);
            }
        }
    }
}

/// An item of a list: its `type` says what it is, else the list it is in.
fn route_item(item: Value, hint: Option<Kind>, out: &mut Vec<Object>) {
    match item.get("type").and_then(Value::as_str) {
        Some(t) => {
            if let Some(k) = kind_of_type(t) {
                out.push(wrap(k, item));
            }
        }
        None => {
            if let Some(k) = hint {
                out.push(wrap(k, item));
            }
        }
    }
}

fn kind_of_type(t: &str) -> Option<Kind> {
    match t {
        "contact" | "user" | "lead" => Some(Kind::Contact),
        "conversation" => Some(Kind::Conversation),
        "conversation_part" => Some(Kind::Part),
        "admin" => Some(Kind::Admin),
        _ => None,
    }
}

fn wrap(kind: Kind, value: Value) -> Object {
    match kind {
        Kind::Contact => Object::Contact(value),
        Kind::Conversation => Object::Conversation(value),
        Kind::Part => Object::Part(value),
        Kind::Admin => Object::Admin(value),
    }
}

/// The loose parts of each conversation in a file, read ahead so that a conversation can say
/// how many parts it has.
fn loose_part_counts(path: &Path) -> Result<HashMap<String, u64>> {
    if !dump::is_json_lines(path)? {
        // One document, read element by element.
        let mut counts: HashMap<String, u64> = HashMap::new();
        for doc in dump::documents(path, Arc::new(AtomicU64::new(0)))? {
            if let Ok(Document { value, .. }) = doc? {
                add_loose_parts(value, &mut counts);
            }
        }
        return Ok(counts);
    }
    let mut input = files::open(path, Arc::new(AtomicU64::new(0)))?;
    let name = files::display_name(path);
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut buf = Vec::with_capacity(4096);
    let mut first = true;
    let mut line_no = 0u64;
    loop {
        buf.clear();
        let n = input
            .read_until(b'\n', &mut buf)
            .map_err(|e| Error::input(format!("{name}:{}", line_no + 1), e))?;
        if n == 0 {
            return Ok(counts);
        }
        line_no += 1;
        let text = buf
            .strip_prefix(b"\xef\xbb\xbf")
            .unwrap_or(&buf)
            .trim_ascii();
        if text.is_empty() {
            continue;
        }
        // Only lines that can hold a loose part are parsed.
        let wanted =
            first || (contains(text, b"conversation_id") && contains(text, b"conversation_part"));
        let parsed = if wanted {
            serde_json::from_slice::<Value>(text).ok()
        } else {
            None
        };
        first = false;
        if let Some(value) = parsed {
            add_loose_parts(value, &mut counts);
        }
    }
}

/// Adds the loose parts of one document to `counts`.
fn add_loose_parts(value: Value, counts: &mut HashMap<String, u64>) {
    let mut objects = Vec::new();
    route(value, &mut objects);
    for (id, n) in count_loose_parts(objects.iter()) {
        *counts.entry(id).or_default() += n;
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// How many records the loose parts among `objects` make, per conversation.
fn count_loose_parts<'a>(objects: impl Iterator<Item = &'a Object>) -> HashMap<String, u64> {
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut positions = HashMap::new();
    for object in objects {
        if let Object::Part(p) = object
            && let Ok(r) = loose_part(p.clone(), &mut positions)
            && let Some(id) = r.get("conversation_id").and_then(Value::as_str)
        {
            *counts.entry(id.to_string()).or_default() += 1;
        }
    }
    counts
}

// ---- values ----

/// An id as a string: strings as they are, integers written out.
/// The object `value` and its id, else why not (`what`: "a contact") and `value`.
fn object_with_id(
    value: Value,
    what: &str,
) -> std::result::Result<(Map<String, Value>, String), (String, Value)> {
    let Value::Object(o) = value else {
        return Err((
            format!("{what} that is {}, not an object", kind_of(&value)),
            value,
        ));
    };
    let Some(id) = id_string(o.get("id")) else {
        return Err((format!("{what} without an id"), Value::Object(o)));
    };
    Ok((o, id))
}

fn id_string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn id_value(v: Option<&Value>) -> Value {
    id_string(v).map_or(Value::Null, Value::String)
}

/// A non-empty string, trimmed; else null.
fn text(v: Option<&Value>) -> Value {
    match v {
        Some(Value::String(s)) if !s.trim().is_empty() => Value::String(s.trim().to_string()),
        Some(Value::Number(n)) => Value::String(n.to_string()),
        _ => Value::Null,
    }
}

/// A timestamp as RFC 3339 UTC: from Unix seconds (Intercom's form), or an ISO string.
fn timestamp(v: Option<&Value>) -> Value {
    let t = match v {
        Some(Value::Number(n)) => n.as_f64().and_then(epoch_to_timestamp),
        Some(Value::String(s)) => {
            let s = s.trim();
            match s.parse::<f64>() {
                Ok(n) => epoch_to_timestamp(n),
                Err(_) => parse_timestamp(s),
            }
        }
        _ => None,
    };
    t.map_or(Value::Null, |t| Value::String(format_timestamp(&t)))
}

/// The items of a list value: a JSON array, or an object's `data` or `key` array (2.x
/// `{"type": "list", "data": [..]}`, 1.x `{"type": "tag.list", "tags": [..]}`).
fn items<'a>(v: Option<&'a Value>, key: &str) -> &'a [Value] {
    match v {
        Some(Value::Array(a)) => a,
        Some(Value::Object(o)) => o
            .get(key)
            .and_then(Value::as_array)
            .or_else(|| o.get("data").and_then(Value::as_array))
            .map_or(&[], Vec::as_slice),
        _ => &[],
    }
}

/// The names of listed tags or companies: their own, else the name `known` gives their id,
/// else their ids.
fn names(v: Option<&Value>, key: &str, known: impl Fn(&str) -> Option<String>) -> Value {
    Value::Array(
        items(v, key)
            .iter()
            .filter_map(|item| match item {
                Value::String(s) if !s.trim().is_empty() => {
                    Some(Value::String(s.trim().to_string()))
                }
                Value::Object(o) => match text(o.get("name")) {
                    Value::Null => {
                        id_string(o.get("id")).map(|id| Value::String(known(&id).unwrap_or(id)))
                    }
                    name => Some(name),
                },
                _ => None,
            })
            .collect(),
    )
}

/// Tag names and companies by id, found anywhere in the `names_from` files.
#[derive(Debug, Default)]
struct Names {
    tags: HashMap<String, String>,
    companies: HashMap<String, Map<String, Value>>,
}

impl Names {
    fn gather(spec: &files::PathSpec) -> Result<Names> {
        let mut names = Names::default();
        for path in spec.expand()? {
            for doc in dump::documents(&path, Arc::new(AtomicU64::new(0)))? {
                // Unreadable documents are the streams' to report.
                if let Ok(Document { value, .. }) = doc? {
                    names.walk(&value);
                }
            }
        }
        Ok(names)
    }

    fn walk(&mut self, v: &Value) {
        match v {
            Value::Array(items) => items.iter().for_each(|x| self.walk(x)),
            Value::Object(o) => {
                let id = id_string(o.get("id"));
                match (o.get("type").and_then(Value::as_str), id) {
                    (Some("tag"), Some(id)) => {
                        if let Value::String(name) = text(o.get("name")) {
                            self.tags.entry(id).or_insert(name);
                        }
                    }
                    (Some("company"), Some(id)) if !text(o.get("name")).is_null() => {
                        self.companies.entry(id).or_insert_with(|| o.clone());
                    }
                    _ => {}
                }
                o.values().for_each(|x| self.walk(x));
            }
            _ => {}
        }
    }

    fn tag(&self, id: &str) -> Option<String> {
        self.tags.get(id).cloned()
    }

    fn company_name(&self, id: &str) -> Option<String> {
        self.companies
            .get(id)
            .and_then(|c| text(c.get("name")).as_str().map(str::to_string))
    }
}

/// A contact's first company, as sessions take it: `id` (the company's own `company_id`,
/// else Intercom's id), `intercom_id`, `name`, `plan` (its name) and `monthly_spend`, filled
/// from `names` where the contact lists the company by id only; null without a company.
fn first_company(c: &Map<String, Value>, names: &Names) -> Value {
    let Some(listed) = items(c.get("companies"), "companies")
        .iter()
        .find_map(Value::as_object)
    else {
        return Value::Null;
    };
    let id = id_string(listed.get("id"));
    let full = id.as_deref().and_then(|id| names.companies.get(id));
    let field = |k: &str| {
        listed
            .get(k)
            .filter(|v| !v.is_null())
            .or_else(|| full.and_then(|f| f.get(k)).filter(|v| !v.is_null()))
    };
    let plan = match field("plan") {
        Some(Value::Object(p)) => text(p.get("name")),
        other => text(other),
    };
    let spend = field("monthly_spend")
        .and_then(Value::as_f64)
        .map_or(Value::Null, Value::from);
    let own_id = id_string(field("company_id")).or_else(|| id.clone());
    if own_id.is_none() && text(field("name")).is_null() {
        return Value::Null;
    }
    json!({
        "id": own_id,
        "intercom_id": id,
        "name": text(field("name")),
        "plan": plan,
        "monthly_spend": spend,
    })
}

fn object_or_empty(v: Option<&Value>) -> Value {
    match v {
        Some(Value::Object(o)) => Value::Object(o.clone()),
        _ => Value::Object(Map::new()),
    }
}

// ---- contacts ----

fn contact(value: Value, known: &Names) -> Found {
    let (c, id) = object_with_id(value, "a contact")?;
    let external_id = id_string(c.get("external_id"));
    let key = external_id
        .clone()
        .or_else(|| id_string(c.get("user_id")))
        .unwrap_or_else(|| id.clone());
    // 2.x says `role`; in 1.x a `contact` was a lead.
    let role = match (
        c.get("role").and_then(Value::as_str),
        c.get("type").and_then(Value::as_str),
    ) {
        (Some("user"), _) => "user",
        (Some("lead"), _) => "lead",
        (_, Some("contact" | "lead")) => "lead",
        _ => "user",
    };
    let location = match c.get("location").or_else(|| c.get("location_data")) {
        Some(Value::Object(o)) => Value::Object(o.clone()),
        _ => Value::Null,
    };
    let last_seen = c
        .get("last_seen_at")
        .filter(|v| !v.is_null())
        .or_else(|| c.get("last_request_at"));
    let mut r = Record::new();
    r.insert("id".into(), Value::String(id));
    r.insert("key".into(), Value::String(key));
    r.insert(
        "external_id".into(),
        external_id.map_or(Value::Null, Value::String),
    );
    r.insert("role".into(), Value::from(role));
    r.insert("email".into(), text(c.get("email")));
    r.insert("name".into(), text(c.get("name")));
    r.insert("phone".into(), text(c.get("phone")));
    r.insert("created_at".into(), timestamp(c.get("created_at")));
    r.insert("updated_at".into(), timestamp(c.get("updated_at")));
    r.insert("signed_up_at".into(), timestamp(c.get("signed_up_at")));
    r.insert("last_seen_at".into(), timestamp(last_seen));
    r.insert(
        "tags".into(),
        names(c.get("tags"), "tags", |id| known.tag(id)),
    );
    r.insert(
        "companies".into(),
        names(c.get("companies"), "companies", |id| known.company_name(id)),
    );
    r.insert("company".into(), first_company(&c, known));
    r.insert(
        "custom_attributes".into(),
        object_or_empty(c.get("custom_attributes")),
    );
    r.insert("location".into(), location);
    r.insert(
        "unsubscribed_from_emails".into(),
        c.get("unsubscribed_from_emails")
            .and_then(Value::as_bool)
            .map_or(Value::Null, Value::Bool),
    );
    Ok(r)
}

// ---- admins ----

fn admin(value: Value) -> Found {
    let (a, id) = object_with_id(value, "an admin")?;
    let mut r = Record::new();
    r.insert("id".into(), Value::String(id));
    r.insert("name".into(), text(a.get("name")));
    r.insert("email".into(), text(a.get("email")));
    Ok(r)
}

// ---- conversations ----

/// The opening message: 2.x `source`, 1.x `conversation_message`.
fn opening(c: &Map<String, Value>) -> Option<&Map<String, Value>> {
    c.get("source")
        .and_then(Value::as_object)
        .or_else(|| c.get("conversation_message").and_then(Value::as_object))
}

fn is_customer(author_type: Option<&str>) -> bool {
    author_type
        .is_some_and(|t| matches!(t.to_ascii_lowercase().as_str(), "user" | "lead" | "contact"))
}

/// `loose` gives the number of loose parts (Airbyte `conversation_parts`) the file holds for a
/// conversation id.
fn conversation(value: Value, loose: impl Fn(&str) -> u64, known: &Names) -> Found {
    let (c, id) = object_with_id(value, "a conversation")?;
    let source = opening(&c);
    let title = text(c.get("title"))
        .as_str()
        .map(str::to_string)
        .or_else(|| {
            let subject = collapse(&html_text(source?.get("subject")?.as_str()?));
            (!subject.is_empty()).then_some(subject)
        })
        .or_else(|| first_line(source?.get("body")?.as_str()?))
        .unwrap_or_else(|| format!("Intercom conversation {id}"));
    let state = match (
        c.get("state").and_then(Value::as_str),
        c.get("open").and_then(Value::as_bool),
    ) {
        (Some(s), _) if !s.trim().is_empty() => Value::String(s.trim().to_ascii_lowercase()),
        (_, Some(true)) => Value::from("open"),
        (_, Some(false)) => Value::from("closed"),
        _ => Value::Null,
    };
    let priority = match c.get("priority").and_then(Value::as_str) {
        Some(p @ ("priority" | "not_priority")) => Value::from(p),
        _ => Value::Null,
    };
    let author = source.and_then(|s| s.get("author"));
    let contact_id = items(c.get("contacts"), "contacts")
        .iter()
        .find_map(|x| id_string(x.get("id")))
        .or_else(|| id_string(c.get("user").and_then(|u| u.get("id"))))
        .or_else(|| {
            let author = author?;
            is_customer(author.get("type").and_then(Value::as_str))
                .then(|| id_string(author.get("id")))?
        });
    // 1.x names the assignee, an admin or a team, in `assignee`.
    let assignee = |kind: &str| {
        let a = c.get("assignee")?;
        (a.get("type").and_then(Value::as_str) == Some(kind)).then(|| id_string(a.get("id")))?
    };
    let admin = id_string(c.get("admin_assignee_id")).or_else(|| assignee("admin"));
    let team = id_string(c.get("team_assignee_id")).or_else(|| assignee("team"));
    let nested = parts_of(&c, &id).iter().filter(|p| p.is_ok()).count() as u64;
    let mut r = Record::new();
    r.insert("id".into(), Value::String(id.clone()));
    r.insert("title".into(), Value::String(title));
    r.insert("state".into(), state);
    r.insert("priority".into(), priority);
    r.insert(
        "contact_id".into(),
        contact_id.map_or(Value::Null, Value::String),
    );
    r.insert(
        "tags".into(),
        names(c.get("tags"), "tags", |id| known.tag(id)),
    );
    r.insert("created_at".into(), timestamp(c.get("created_at")));
    r.insert("updated_at".into(), timestamp(c.get("updated_at")));
    r.insert(
        "custom_attributes".into(),
        object_or_empty(c.get("custom_attributes")),
    );
    r.insert(
        "admin_assignee_id".into(),
        admin.map_or(Value::Null, Value::String),
    );
    r.insert(
        "team_assignee_id".into(),
        team.map_or(Value::Null, Value::String),
    );
    r.insert("parts_count".into(), Value::from(nested + loose(&id)));
    Ok(r)
}

// ---- parts ----

/// The messages of a conversation: the opening message, then its `conversation_parts`.
fn conversation_parts(value: Value) -> Vec<Found> {
    let Value::Object(c) = value else {
        return vec![Err((
            format!("a conversation that is {}, not an object", kind_of(&value)),
            value,
        ))];
    };
    let Some(id) = id_string(c.get("id")) else {
        return vec![Err((
            "a conversation without an id: its messages cannot be placed".into(),
            Value::Object(c),
        ))];
    };
    parts_of(&c, &id)
}

fn parts_of(c: &Map<String, Value>, id: &str) -> Vec<Found> {
    let mut out = Vec::new();
    if let Some(source) = opening(c) {
        let part_id = id_string(source.get("id")).unwrap_or_else(|| format!("{id}-source"));
        let created = source
            .get("created_at")
            .filter(|v| !v.is_null())
            .or_else(|| c.get("created_at"));
        out.push(Ok(part(
            source,
            part_id,
            id,
            Value::from("source"),
            0,
            created,
        )));
    }
    let nested = c.get("conversation_parts");
    for (i, p) in items(nested, "conversation_parts").iter().enumerate() {
        let position = i as u64 + 1;
        let Value::Object(p) = p else {
            out.push(Err((
                format!("a conversation part that is {}, not an object", kind_of(p)),
                p.clone(),
            )));
            continue;
        };
        match id_string(p.get("id")) {
            Some(part_id) => out.push(Ok(part(
                p,
                part_id,
                id,
                text(p.get("part_type")),
                position,
                p.get("created_at"),
            ))),
            None => out.push(Err((
                format!("a part of conversation {id} without an id"),
                Value::Object(p.clone()),
            ))),
        }
    }
    out
}

/// A part on its own, as Airbyte's `conversation_parts` stream gives them; its position is
/// its order among the loose parts of its conversation in the file.
fn loose_part(value: Value, positions: &mut HashMap<String, u64>) -> Found {
    let Value::Object(p) = value else {
        return Err((
            format!(
                "a conversation part that is {}, not an object",
                kind_of(&value)
            ),
            value,
        ));
    };
    let Some(conversation_id) = id_string(p.get("conversation_id")) else {
        return Err((
            "a conversation part without conversation_id".into(),
            Value::Object(p),
        ));
    };
    let position = positions.entry(conversation_id.clone()).or_default();
    *position += 1;
    let position = *position;
    let Some(id) = id_string(p.get("id")) else {
        return Err((
            format!("a part of conversation {conversation_id} without an id"),
            Value::Object(p),
        ));
    };
    Ok(part(
        &p,
        id,
        &conversation_id,
        text(p.get("part_type")),
        position,
        p.get("created_at"),
    ))
}

fn part(
    p: &Map<String, Value>,
    id: String,
    conversation_id: &str,
    part_type: Value,
    position: u64,
    created: Option<&Value>,
) -> Record {
    let author = p.get("author").and_then(Value::as_object);
    let field = |k: &str| author.and_then(|a| a.get(k));
    let author_type = text(field("type"));
    let body = match p.get("body") {
        Some(Value::String(s)) if !s.trim().is_empty() => Value::String(s.clone()),
        _ => Value::Null,
    };
    // `note_and_reopen` is a note too: it must not reach the customer.
    let is_note = matches!(part_type.as_str(), Some("note" | "note_and_reopen"));
    let is_customer = is_customer(author_type.as_str());
    let attachments = attachments(p.get("attachments"));
    let kind = part_kind(part_type.as_str(), &body, &attachments);
    let mut r = Record::new();
    r.insert("id".into(), Value::String(id));
    r.insert("conversation_id".into(), Value::from(conversation_id));
    r.insert("part_type".into(), part_type);
    r.insert("kind".into(), Value::from(kind));
    r.insert("body".into(), body);
    r.insert("author_type".into(), author_type);
    r.insert("author_id".into(), id_value(field("id")));
    r.insert("author_name".into(), text(field("name")));
    r.insert("author_email".into(), text(field("email")));
    r.insert("is_customer".into(), Value::Bool(is_customer));
    r.insert("is_note".into(), Value::Bool(is_note));
    r.insert("attachments".into(), attachments);
    r.insert("created_at".into(), timestamp(created));
    r.insert("position".into(), Value::from(position));
    r
}

/// What a part is: a `message` when it has text or files, whatever its type (a reply can
/// close or assign a conversation); else an `event` (assignment, open, close, snoozed...) or,
/// for the types that are written messages, an `empty` one.
fn part_kind(part_type: Option<&str>, body: &Value, attachments: &Value) -> &'static str {
    let has_files = attachments.as_array().is_some_and(|a| !a.is_empty());
    if !body.is_null() || has_files {
        return "message";
    }
    match part_type {
        // Types that are written by someone; a part without a type is taken for one.
        None | Some("source" | "comment" | "note" | "note_and_reopen" | "quick_reply") => "empty",
        Some(_) => "event",
    }
}

/// Gleap's attachment shape (`{name, url, type}`) from Intercom's (`name`, `url`,
/// `content_type`); an attachment without a URL cannot be carried over.
fn attachments(v: Option<&Value>) -> Value {
    Value::Array(
        items(v, "attachments")
            .iter()
            .filter_map(|a| {
                let url = a
                    .get("url")
                    .and_then(Value::as_str)
                    .map(str::trim)
                    .filter(|u| !u.is_empty())?;
                let name = match text(a.get("name")) {
                    Value::String(n) => n,
                    _ => url
                        .split(['?', '#'])
                        .next()
                        .and_then(|u| u.trim_end_matches('/').rsplit('/').next())
                        .filter(|n| !n.is_empty() && !n.contains(':'))
                        .unwrap_or("attachment")
                        .to_string(),
                };
                Some(json!({"name": name, "url": url, "type": text(a.get("content_type"))}))
            })
            .collect(),
    )
}

// ---- text of HTML ----

/// Whitespace runs as one space, trimmed.
fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The first line of text of an HTML body, at most 120 characters.
fn first_line(html: &str) -> Option<String> {
    let text = html_text(html);
    let line = text.lines().map(collapse).find(|l| !l.is_empty())?;
    Some(
        line.chars()
            .take(120)
            .collect::<String>()
            .trim_end()
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    type Item = std::result::Result<(Value, Position), Box<Rejected>>;

    /// Every item of `entity` in the files `pattern` names.
    fn read(entity: &str, pattern: &str) -> Vec<Item> {
        read_config(json!({"path": pattern, "entity": entity}))
    }

    /// Every item the source `config` gives.
    fn read_config(config: Value) -> Vec<Item> {
        let config: IntercomSourceConfig = serde_json::from_value(config).unwrap();
        config
            .open()
            .unwrap()
            .items
            .map(|i| match i.unwrap() {
                SourceItem::Record(r, p) => Ok((Value::Object(r), p)),
                SourceItem::Rejected(r) => Err(Box::new(r)),
                SourceItem::Batch(_) => unreachable!("a source opened for rows gives no batch"),
            })
            .collect()
    }

    /// Writes `files` into a new folder and reads `entity` from all of them.
    fn read_files(entity: &str, files: &[(&str, &str)]) -> Vec<Item> {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        read(entity, &format!("{}/*", dir.path().display()))
    }

    fn records(items: &[Item]) -> Vec<Value> {
        items
            .iter()
            .filter_map(|i| i.as_ref().ok())
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// `line:row` of each item, `!` marking rejections.
    fn places(items: &[Item]) -> Vec<String> {
        items
            .iter()
            .map(|i| match i {
                Ok((_, p)) => format!("{}:{}", p.line.unwrap(), p.row),
                Err(r) => format!("!{}:{}", r.position.line.unwrap(), r.position.row),
            })
            .collect()
    }

    fn reasons(items: &[Item]) -> Vec<String> {
        items
            .iter()
            .filter_map(|i| i.as_ref().err())
            .map(|r| r.reason.clone())
            .collect()
    }

    const CONTACT_2X: &str = r#"{
  "type": "contact",
  "id": "6762f0d01bb69f9f2193bb7d",
  "workspace_id": "ecahpwf5",
  "external_id": "70",
  "role": "user",
  "email": "joe@bloggs.com",
  "phone": null,
  "name": "Joe Bloggs",
  "unsubscribed_from_emails": true,
  "created_at": 1734537424,
  "updated_at": 1734537424,
  "signed_up_at": 1734537424,
  "last_seen_at": null,
  "location": {"type": "location", "country": "Germany", "city": "Berlin"},
  "custom_attributes": {"plan": "pro"},
  "tags": {"type": "list", "data": [{"type": "tag", "id": "7800292", "url": "/tags/7800292"}, {"type": "tag", "id": "7001", "name": "vip"}]},
  "companies": {"type": "list", "data": [{"type": "company", "id": "c1", "url": "/companies/c1"}]},
  "notes": {"type": "list", "data": []}
}
"#;

    const CONTACT_LIST_2X: &str = r#"{"type": "list", "data": [
  {"type": "contact", "id": "c-1", "external_id": "", "role": "lead", "email": "", "name": "Amara", "created_at": 1709300000},
  {"type": "contact", "id": "c-2", "external_id": 42, "role": "user", "email": "b@example.org"},
  {"type": "admin", "id": "a-1", "email": "admin@example.org"}
], "total_count": 2, "pages": {"type": "pages", "page": 1}}
"#;

    const CONVERSATION_2X: &str = r#"{
  "type": "conversation",
  "id": "1911149811",
  "created_at": 1709300000,
  "updated_at": 1709301200,
  "title": null,
  "source": {
    "type": "conversation",
    "id": "403918320",
    "delivered_as": "customer_initiated",
    "subject": "",
    "body": "<p>Hi! I can&#39;t find the <b>export</b> &amp; import button.</p><p>Second line</p>",
    "author": {"type": "user", "id": "65f1a2b3c4d5e6f7a8b9c000", "name": "Zoë Ångström", "email": "zoe@example.org"},
    "attachments": [{"type": "upload", "name": "shot.png", "url": "https://files.example/shot.png", "content_type": "image/png", "filesize": 1200}]
  },
  "contacts": {"type": "contact.list", "contacts": [{"type": "contact", "id": "65f1a2b3c4d5e6f7a8b9c000", "external_id": "crm-0"}]},
  "admin_assignee_id": 814860,
  "team_assignee_id": null,
  "open": true,
  "state": "snoozed",
  "priority": "priority",
  "tags": {"type": "tag.list", "tags": [{"type": "tag", "id": "7001", "name": "billing"}]},
  "custom_attributes": {"channel": "messenger"},
  "conversation_parts": {
    "type": "conversation_part.list",
    "conversation_parts": [
      {"type": "conversation_part", "id": 1, "part_type": "comment", "body": "<p>Okay!</p>", "created_at": 1709300060,
       "author": {"type": "admin", "id": 274, "name": "Operator", "email": "operator@intercom.io"}, "attachments": []},
      {"type": "conversation_part", "id": "2", "part_type": "assignment", "body": null, "created_at": 1709300120,
       "author": {"type": "bot", "id": "278", "name": "Fin", "email": ""}, "attachments": []},
      {"type": "conversation_part", "id": "3", "part_type": "note", "body": "<p>internal</p>", "created_at": 1709300180,
       "author": {"type": "admin", "id": "274", "name": "Operator"},
       "attachments": [{"name": null, "url": "https://files.example/dir/log.txt?sig=1", "content_type": "text/plain"}, {"name": "no url"}]},
      {"type": "conversation_part", "part_type": "comment", "body": "<p>lost</p>"}
    ],
    "total_count": 4
  }
}
"#;

    #[test]
    fn a_2x_contact_is_normalised() {
        let got = read_files("contacts", &[("contact.json", CONTACT_2X)]);
        assert_eq!(places(&got), ["1:1"]);
        assert_eq!(
            records(&got)[0],
            json!({
                "id": "6762f0d01bb69f9f2193bb7d",
                "key": "70",
                "external_id": "70",
                "role": "user",
                "email": "joe@bloggs.com",
                "name": "Joe Bloggs",
                "phone": null,
                "created_at": "2024-12-18T15:57:04.000Z",
                "updated_at": "2024-12-18T15:57:04.000Z",
                "signed_up_at": "2024-12-18T15:57:04.000Z",
                "last_seen_at": null,
                "tags": ["7800292", "vip"],
                "companies": ["c1"],
                "company": {"id": "c1", "intercom_id": "c1", "name": null, "plan": null, "monthly_spend": null},
                "custom_attributes": {"plan": "pro"},
                "location": {"type": "location", "country": "Germany", "city": "Berlin"},
                "unsubscribed_from_emails": true
            })
        );
    }

    #[test]
    fn admins_from_lists_and_airbyte_records() {
        let got = read_files(
            "admins",
            &[
                (
                    "admins.json",
                    r#"{"type": "admin.list", "admins": [{"type": "admin", "id": 814860, "name": "Sam", "email": "sam@acme.example"}, {"type": "admin", "name": "no id"}]}"#,
                ),
                (
                    "contacts.jsonl",
                    r#"{"stream": "admins", "data": {"type": "admin", "id": "814861", "name": "Olivia", "email": ""}, "emitted_at": 1}
{"stream": "contacts", "data": {"type": "contact", "id": "c"}, "emitted_at": 1}"#,
                ),
            ],
        );
        assert_eq!(
            records(&got),
            [
                json!({"id": "814860", "name": "Sam", "email": "sam@acme.example"}),
                json!({"id": "814861", "name": "Olivia", "email": null})
            ]
        );
        assert_eq!(reasons(&got), ["an admin without an id"]);
    }

    #[test]
    fn tag_and_company_ids_are_named_from_the_dump() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write("contacts.json", CONTACT_2X);
        write(
            "tags.json",
            r#"{"type": "list", "data": [{"type": "tag", "id": "7800292", "name": "churn-risk"}, {"type": "tag", "id": "7001", "name": "not this one"}]}"#,
        );
        write(
            "companies.json",
            r#"{"type": "list", "data": [{"type": "company", "id": "c1", "company_id": "acme-1", "name": "Acme", "plan": {"type": "plan", "id": "p", "name": "Pro"}, "monthly_spend": 490}]}"#,
        );
        write(
            "conversations.json",
            r#"{"type": "conversation", "id": "1", "tags": {"type": "tag.list", "tags": [{"type": "tag", "id": "9"}, {"type": "tag", "id": "7002", "name": "onboarding"}]}}"#,
        );
        let read_named = |entity: &str, pattern: &str| {
            records(&read_config(json!({
                "path": dir.path().join(pattern).display().to_string(),
                "entity": entity,
                "names_from": format!("{}/*.json", dir.path().display()),
            })))
        };
        let c = &read_named("contacts", "contacts.json")[0];
        assert_eq!(
            c["tags"],
            json!(["churn-risk", "vip"]),
            "a name the contact gives wins"
        );
        assert_eq!(c["companies"], json!(["Acme"]));
        assert_eq!(
            c["company"],
            json!({"id": "acme-1", "intercom_id": "c1", "name": "Acme", "plan": "Pro", "monthly_spend": 490.0})
        );
        let t = &read_named("conversations", "conversations.json")[0];
        assert_eq!(
            t["tags"],
            json!(["9", "onboarding"]),
            "an id no file names stays"
        );
    }

    #[test]
    fn a_contact_list_skips_admins_and_keys_by_external_id_else_id() {
        let got = read_files(
            "contacts",
            &[
                ("contacts.json", CONTACT_LIST_2X),
                ("conversation.json", CONVERSATION_2X),
            ],
        );
        assert_eq!(
            places(&got),
            ["2:1", "3:2"],
            "the admin and the conversation are skipped; each contact on its own line"
        );
        let r = records(&got);
        assert_eq!(r[0]["key"], "c-1", "an empty external_id is none");
        assert_eq!(r[0]["external_id"], Value::Null);
        assert_eq!(r[0]["role"], "lead");
        assert_eq!(r[0]["email"], Value::Null, "an empty email is no email");
        assert_eq!(r[0]["created_at"], "2024-03-01T13:33:20.000Z");
        assert_eq!(r[0]["tags"], json!([]));
        assert_eq!(r[0]["custom_attributes"], json!({}));
        assert_eq!(r[0]["location"], Value::Null);
        assert_eq!(r[0]["unsubscribed_from_emails"], Value::Null);
        assert_eq!(r[1]["key"], "42", "integer ids are written out");
        assert_eq!(r[1]["external_id"], "42");
    }

    #[test]
    fn a_2x_conversation_and_its_parts() {
        let files = [
            ("conversation.json", CONVERSATION_2X),
            ("contacts.json", CONTACT_LIST_2X),
        ];
        let got = read_files("conversations", &files);
        assert_eq!(places(&got), ["1:1"]);
        assert_eq!(
            records(&got)[0],
            json!({
                "id": "1911149811",
                "title": "Hi! I can't find the export & import button.",
                "state": "snoozed",
                "priority": "priority",
                "contact_id": "65f1a2b3c4d5e6f7a8b9c000",
                "tags": ["billing"],
                "created_at": "2024-03-01T13:33:20.000Z",
                "updated_at": "2024-03-01T13:53:20.000Z",
                "custom_attributes": {"channel": "messenger"},
                "admin_assignee_id": "814860",
                "team_assignee_id": null,
                "parts_count": 4
            })
        );

        let got = read_files("parts", &files);
        assert_eq!(places(&got), ["1:1", "1:2", "1:3", "1:4", "!1:5"]);
        assert_eq!(
            reasons(&got),
            ["a part of conversation 1911149811 without an id"]
        );
        let parts = records(&got);
        assert_eq!(parts.len() as u64, 4, "as many as parts_count says");
        assert_eq!(
            parts[0],
            json!({
                "id": "403918320",
                "conversation_id": "1911149811",
                "part_type": "source",
                "kind": "message",
                "body": "<p>Hi! I can&#39;t find the <b>export</b> &amp; import button.</p><p>Second line</p>",
                "author_type": "user",
                "author_id": "65f1a2b3c4d5e6f7a8b9c000",
                "author_name": "Zoë Ångström",
                "author_email": "zoe@example.org",
                "is_customer": true,
                "is_note": false,
                "attachments": [{"name": "shot.png", "url": "https://files.example/shot.png", "type": "image/png"}],
                "created_at": "2024-03-01T13:33:20.000Z",
                "position": 0
            })
        );
        assert_eq!(
            parts[1],
            json!({
                "id": "1",
                "conversation_id": "1911149811",
                "part_type": "comment",
                "kind": "message",
                "body": "<p>Okay!</p>",
                "author_type": "admin",
                "author_id": "274",
                "author_name": "Operator",
                "author_email": "operator@intercom.io",
                "is_customer": false,
                "is_note": false,
                "attachments": [],
                "created_at": "2024-03-01T13:34:20.000Z",
                "position": 1
            })
        );
        assert_eq!(parts[2]["part_type"], "assignment");
        assert_eq!(parts[2]["kind"], "event");
        assert_eq!(
            parts[2]["body"],
            Value::Null,
            "event parts are kept, without a body"
        );
        assert_eq!(parts[2]["author_email"], Value::Null);
        assert_eq!(parts[2]["position"], 2);
        assert_eq!(parts[3]["is_note"], true);
        assert_eq!(
            parts[3]["attachments"],
            json!([{"name": "log.txt", "url": "https://files.example/dir/log.txt?sig=1", "type": "text/plain"}]),
            "named after the URL when nameless; dropped without a URL"
        );
        assert_eq!(parts[3]["position"], 3);
    }

    #[test]
    fn a_conversation_list_rejects_a_conversation_without_id() {
        let list = r#"{"type": "conversation.list", "pages": {"type": "pages"}, "conversations": [
  {"type": "conversation", "id": 471, "created_at": 1709300000, "open": false,
   "source": {"type": "conversation", "subject": "<p>Refund &lt;urgent&gt;</p>", "body": "<p>body</p>", "author": {"type": "lead", "id": "l-1"}}},
  {"type": "conversation", "created_at": 1709300000, "source": {"body": "<p>who am I</p>"}},
  {"type": "conversation", "id": "473", "source": {"type": "conversation", "body": "  ", "author": {"type": "admin", "id": "9"}}, "assignee": {"type": "team", "id": 77}},
  {"type": "ticket", "id": "9"}
], "total_count": 3}"#;
        let got = read_files("conversations", &[("conversations.json", list)]);
        assert_eq!(
            places(&got),
            ["2:1", "!4:2", "5:3"],
            "each conversation of the page on the line it starts on"
        );
        assert_eq!(reasons(&got), ["a conversation without an id"]);
        let r = records(&got);
        assert_eq!(r[0]["id"], "471");
        assert_eq!(
            r[0]["title"], "Refund <urgent>",
            "the subject, HTML stripped"
        );
        assert_eq!(r[0]["state"], "closed", "from `open`");
        assert_eq!(r[0]["priority"], Value::Null);
        assert_eq!(r[0]["contact_id"], "l-1", "the customer who wrote first");
        assert_eq!(r[0]["parts_count"], 1);
        assert_eq!(r[1]["title"], "Intercom conversation 473");
        assert_eq!(
            r[1]["contact_id"],
            Value::Null,
            "an admin is not the contact"
        );
        assert_eq!(r[1]["state"], Value::Null);
        assert_eq!(r[1]["team_assignee_id"], "77");
        assert_eq!(r[1]["admin_assignee_id"], Value::Null);

        let got = read_files("parts", &[("conversations.json", list)]);
        assert_eq!(places(&got), ["2:1", "!4:2", "5:3"]);
        let parts = records(&got);
        assert_eq!(
            parts[0]["id"], "471-source",
            "no source id: named after the conversation"
        );
        assert_eq!(parts[0]["is_customer"], true);
        assert_eq!(parts[1]["body"], Value::Null, "a blank body is none");
        assert_eq!(
            parts[1]["kind"], "empty",
            "a blank opening message, no file"
        );
    }

    const CONTACT_1X: &str = r#"{
	"type": "contact",
	"id": "54c42e7ea7a765fa7",
	"user_id": "123",
	"email": "mycontact@example.io",
	"phone": "+1234567890",
	"name": "My Contact",
	"companies": {"type": "company.list", "companies": [{"type": "company", "company_id": "762", "id": "54c42ed71623d8caa", "name": "Important Company"}]},
	"location_data": {"type": "location_data", "country_name": "United Kingdom", "timezone": "Europe/London"},
	"last_request_at": 1422143201,
	"created_at": 1422143102,
	"signed_up_at": null,
	"updated_at": 1422143201,
	"unsubscribed_from_emails": false,
	"tags": {"type": "tag.list", "tags": [{"type": "tag", "id": "34202", "name": "Kelly_Lead"}]},
	"custom_attributes": {"is_awesome": true}
}"#;

    const USERS_1X: &str = r#"{"type": "user.list", "users": [{"type": "user", "id": "u-1", "user_id": "", "email": "u@example.org"}, {"id": "u-2", "user_id": "crm-2"}]}"#;

    const CONVERSATION_1X: &str = r#"{
	"type": "conversation",
	"id": "147",
	"created_at": 1400850973,
	"updated_at": 1400857494,
	"open": true,
	"user": {"type": "user", "id": "536e564f316c83104c000020"},
	"assignee": {"type": "admin", "id": "25"},
	"conversation_message": {
		"id": "537e564f316c33104c010020",
		"type": "conversation_message",
		"subject": "",
		"body": "<p>Hi Alice,</p>\n\n<p>We noticed you using our Product, do you have any questions?</p>",
		"author": {"type": "admin", "id": "25"},
		"attachments": [{"name": "signature", "url": "http://someurl.com/signature.jpg"}]
	},
	"conversation_parts": {
		"type": "conversation_part.list",
		"conversation_parts": [{
			"type": "conversation_part", "id": "4412", "part_type": "comment",
			"body": "<p>Hi Jane, it's all great thanks!</p>", "created_at": 1400857494,
			"author": {"type": "user", "id": "536e564f316c83104c000020"}, "attachments": []
		}]
	},
	"tags": {"type": "tag.list", "tags": [{"type": "tag", "id": "12345", "name": "Some tag"}]}
}"#;

    #[test]
    fn legacy_1x_contacts_and_conversations() {
        let files = [
            ("contact.json", CONTACT_1X),
            ("users.json", USERS_1X),
            ("conversation.json", CONVERSATION_1X),
        ];
        let got = read_files("contacts", &files);
        assert_eq!(got.len(), 3);
        let r = records(&got);
        assert_eq!(
            r[0],
            json!({
                "id": "54c42e7ea7a765fa7",
                "key": "123",
                "external_id": null,
                "role": "lead",
                "email": "mycontact@example.io",
                "name": "My Contact",
                "phone": "+1234567890",
                "created_at": "2015-01-24T23:45:02.000Z",
                "updated_at": "2015-01-24T23:46:41.000Z",
                "signed_up_at": null,
                "last_seen_at": "2015-01-24T23:46:41.000Z",
                "tags": ["Kelly_Lead"],
                "companies": ["Important Company"],
                "company": {"id": "762", "intercom_id": "54c42ed71623d8caa", "name": "Important Company", "plan": null, "monthly_spend": null},
                "custom_attributes": {"is_awesome": true},
                "location": {"type": "location_data", "country_name": "United Kingdom", "timezone": "Europe/London"},
                "unsubscribed_from_emails": false
            })
        );
        assert_eq!(
            (r[1]["key"].clone(), r[1]["role"].clone()),
            (json!("u-1"), json!("user"))
        );
        assert_eq!(
            (r[2]["key"].clone(), r[2]["role"].clone()),
            (json!("crm-2"), json!("user"))
        );

        let got = read_files("conversations", &files);
        assert_eq!(
            records(&got),
            [json!({
                "id": "147",
                "title": "Hi Alice,",
                "state": "open",
                "priority": null,
                "contact_id": "536e564f316c83104c000020",
                "tags": ["Some tag"],
                "created_at": "2014-05-23T13:16:13.000Z",
                "updated_at": "2014-05-23T15:04:54.000Z",
                "custom_attributes": {},
                "admin_assignee_id": "25",
                "team_assignee_id": null,
                "parts_count": 2
            })]
        );

        let got = read_files("parts", &files);
        let parts = records(&got);
        assert_eq!(places(&got), ["1:1", "1:2"]);
        assert_eq!(parts[0]["id"], "537e564f316c33104c010020");
        assert_eq!(parts[0]["part_type"], "source");
        assert_eq!(parts[0]["author_type"], "admin");
        assert_eq!(parts[0]["is_customer"], false);
        assert_eq!(
            parts[0]["created_at"], "2014-05-23T13:16:13.000Z",
            "the conversation's time"
        );
        assert_eq!(
            parts[0]["attachments"],
            json!([{"name": "signature", "url": "http://someurl.com/signature.jpg", "type": null}])
        );
        assert_eq!(parts[1]["id"], "4412");
        assert_eq!(parts[1]["is_customer"], true);
        assert_eq!(parts[1]["position"], 1);
    }

    const AIRBYTE: &str = concat!(
        r#"{"stream": "admins", "data": {"type": "admin", "id": "4423433", "email": "a@airbyte.io"}, "emitted_at": 1707747712535}"#,
        "\n",
        r#"{"stream": "contacts", "data": {"type": "contact", "id": "63ea41aa", "external_id": null, "role": "user", "email": "u@example.org", "tags": {"type": "list", "data": [{"id": "7800292", "type": "tag"}]}}, "emitted_at": 1707747712535}"#,
        "\n",
        r#"{"stream": "conversations", "data": {"type": "conversation", "id": "1", "created_at": 1607553243, "state": "open", "source": {"type": "conversation", "id": "701718739", "subject": "", "body": "<p>hey there</p>", "author": {"type": "lead", "id": "5fd1", "name": null, "email": ""}, "attachments": []}, "contacts": {"type": "contact.list", "contacts": [{"type": "contact", "id": "5fd1"}]}, "assignee": null}, "emitted_at": 1707747714058}"#,
        "\n",
        r#"{"stream": "tickets", "data": {"type": "ticket", "id": "9", "contacts": {"type": "contact.list", "contacts": [{"type": "contact", "id": "5fd1"}]}}, "emitted_at": 1707747714058}"#,
        "\n",
        r#"{"stream": "conversation_parts", "data": {"type": "conversation_part", "id": "7288120839", "part_type": "comment", "body": "<p>is this showing up</p>", "created_at": 1607553246, "author": {"id": "5fd1", "type": "user", "name": null, "email": ""}, "attachments": [], "conversation_id": 1}, "emitted_at": 1736209152327}"#,
        "\n",
        "{\"stream\": \"contacts\", \"data\": \n",
        r#"{"stream": "conversation_parts", "data": {"type": "conversation_part", "id": "7288121348", "part_type": "note_and_reopen", "body": "<p>internal</p>", "created_at": 1607553249, "author": {"id": "4423434", "type": "admin", "name": "Operator"}, "conversation_id": "1"}, "emitted_at": 1736209152327}"#,
        "\n\n",
        r#"{"stream": "conversation_parts", "data": {"type": "conversation_part", "id": "88", "part_type": "comment", "body": "<p>elsewhere</p>", "conversation_id": 2}, "emitted_at": 1736209152327}"#,
        "\n",
        r#"{"stream": "conversation_parts", "data": {"type": "conversation_part", "id": "89", "part_type": "comment", "body": "<p>whose?</p>"}, "emitted_at": 1736209152327}"#,
        "\n",
        r#"{"stream": "tags", "data": {"type": "tag", "id": "7800292", "name": "vip"}, "emitted_at": 1707747712535}"#,
        "\n",
    );

    #[test]
    fn airbyte_records_of_other_streams_are_skipped_and_parts_are_placed() {
        let got = read_files("contacts", &[("airbyte.jsonl", AIRBYTE)]);
        assert_eq!(places(&got), ["2:1", "!6:2"]);
        assert_eq!(records(&got)[0]["key"], "63ea41aa");
        assert_eq!(
            records(&got)[0]["tags"],
            json!(["7800292"]),
            "ids where tags have no name"
        );
        let bad = got[1].as_ref().unwrap_err();
        assert!(bad.reason.starts_with("invalid JSON"), "{}", bad.reason);
        assert_eq!(bad.record, json!("{\"stream\": \"contacts\", \"data\":"));

        let got = read_files("conversations", &[("airbyte.jsonl", AIRBYTE)]);
        assert_eq!(places(&got), ["3:1", "!6:2"]);
        let c = &records(&got)[0];
        assert_eq!(
            c["parts_count"], 3,
            "the opening message and the two parts of the file"
        );
        assert_eq!(c["title"], "hey there");
        assert_eq!(c["contact_id"], "5fd1");

        let got = read_files("parts", &[("airbyte.jsonl", AIRBYTE)]);
        assert_eq!(places(&got), ["3:1", "5:2", "!6:3", "7:4", "9:5", "!10:6"]);
        assert_eq!(
            reasons(&got)[1],
            "a conversation part without conversation_id"
        );
        let parts = records(&got);
        let summary: Vec<String> = parts
            .iter()
            .map(|p| {
                format!(
                    "{}/{}@{} {}",
                    p["conversation_id"], p["id"], p["position"], p["part_type"]
                )
            })
            .map(|s| s.replace('"', ""))
            .collect();
        assert_eq!(
            summary,
            [
                "1/701718739@0 source",
                "1/7288120839@1 comment",
                "1/7288121348@2 note_and_reopen",
                "2/88@1 comment"
            ]
        );
        assert_eq!(parts[0]["author_email"], Value::Null);
        assert_eq!(parts[1]["is_customer"], true);
        assert_eq!(parts[1]["created_at"], "2020-12-09T22:34:06.000Z");
        assert_eq!(
            parts[2]["is_note"], true,
            "a note that reopens is still a note"
        );
    }

    #[test]
    fn reads_gzip_and_json_lines_of_plain_objects() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("contacts.jsonl.gz");
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&path).unwrap(),
            flate2::Compression::default(),
        );
        let lines = "{\"type\": \"contact\", \"id\": \"a\", \"role\": \"lead\"}\n\n{\"type\": \"contact\", \"id\": \"b\", \"external_id\": \"ext-b\"}\n";
        gz.write_all(lines.as_bytes()).unwrap();
        gz.finish().unwrap();
        let got = read("contacts", path.to_str().unwrap());
        assert_eq!(places(&got), ["1:1", "3:2"]);
        let keys: Vec<Value> = records(&got).iter().map(|r| r["key"].clone()).collect();
        assert_eq!(keys, ["a", "ext-b"]);
    }

    #[test]
    fn odd_input_is_rejected_or_skipped_never_a_panic() {
        let lines = [
            "42",
            "[1, {\"type\": \"contact\", \"id\": 7}, \"x\"]",
            "{\"type\": \"contact\", \"id\": {}, \"tags\": 5}",
            "{\"type\": \"contact\", \"id\": \"x\", \"tags\": [\"t\", 1, {\"name\": \"\"}], \"custom_attributes\": [1], \"created_at\": \"soon\", \"updated_at\": 1e300, \"location\": \"here\"}",
            "{\"type\": \"conversation\", \"id\": \"c\", \"source\": \"text\", \"conversation_parts\": {\"conversation_parts\": [7, {\"id\": 1, \"author\": \"me\", \"attachments\": [{\"url\": 5}, \"x\"]}]}, \"contacts\": 3, \"state\": 1}",
            "{\"type\": \"conversation\", \"id\": \"d\", \"source\": {\"body\": \"<p>\u{e9}t\u{e9} &#xZZ; &bogus; a < b <br> <p\"}}",
            "{\"type\": \"list\", \"data\": {\"type\": \"contact\"}}",
            "{\"stream\": \"contacts\", \"data\": {\"id\": 1}}",
            "{\"type\": \"notification_event\", \"data\": {\"item\": {\"type\": \"contact\", \"id\": \"w\"}}}",
            "{\"_airbyte_ab_id\": \"x\", \"_airbyte_data\": {\"type\": \"conversation_part\", \"id\": 5, \"conversation_id\": \"c\"}}",
            "null",
        ]
        .join("\n");
        let ids = |entity: &str| -> Vec<String> {
            read_files(entity, &[("odd.jsonl", &lines)])
                .iter()
                .map(|i| match i {
                    Ok((r, _)) => r["id"].as_str().unwrap().to_string(),
                    Err(r) => format!("!{}", r.position.line.unwrap()),
                })
                .collect()
        };
        assert_eq!(ids("contacts"), ["!1", "7", "!3", "x", "w", "!11"]);
        assert_eq!(ids("conversations"), ["!1", "c", "d", "!11"]);
        assert_eq!(ids("parts"), ["!1", "!5", "1", "d-source", "5", "!11"]);

        let got = read_files("contacts", &[("odd.jsonl", &lines)]);
        let x = records(&got).into_iter().find(|r| r["id"] == "x").unwrap();
        assert_eq!(x["tags"], json!(["t"]));
        assert_eq!(x["custom_attributes"], json!({}));
        assert_eq!(x["created_at"], Value::Null);
        assert_eq!(x["location"], Value::Null);
        let got = read_files("conversations", &[("odd.jsonl", &lines)]);
        let r = records(&got);
        assert_eq!(r[0]["title"], "Intercom conversation c");
        assert_eq!(
            r[0]["parts_count"], 2,
            "the part without an object is not one, the loose part is"
        );
        assert_eq!(r[1]["title"], "\u{e9}t\u{e9} &#xZZ; &bogus; a < b");
    }

    #[test]
    fn titles_from_html() {
        assert_eq!(
            first_line("<p>Hi&nbsp;there,</p>\n<p>more</p>").as_deref(),
            Some("Hi there,")
        );
        assert_eq!(
            first_line("<div><br></div><div>  Second  <i>try</i> </div>").as_deref(),
            Some("Second try")
        );
        assert_eq!(
            first_line("Tom &amp; Jerry &quot;&#39;&#x41;&#66;").as_deref(),
            Some("Tom & Jerry \"'AB")
        );
        assert_eq!(first_line("<p> </p>"), None);
        assert_eq!(first_line(&"é".repeat(200)).unwrap().chars().count(), 120);
        assert_eq!(
            collapse(&html_text("<p>Re:</p><p>your order</p>")),
            "Re: your order"
        );
    }
}
