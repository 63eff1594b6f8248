//! Help-centre collections and articles (`entity: collections` / `articles`).
//!
//! Gleap keys help-centre objects by `externalId`, so re-runs find what an earlier run made:
//! a record the state store does not know is looked for by its `externalId` in the list
//! endpoints before it is created, and a create whose answer was lost is looked for there
//! before it is sent again. Known and unchanged records cost no request.
//!
//! A help centre is small (thousands of objects, not millions), and its objects depend on
//! each other: a collection needs its parent first, an article's links need the articles
//! they point at. So this sink keeps a stream's records until the source is done, then
//! writes collections parents first and articles in two passes: the first creates or
//! updates each article with the links whose target is already known, the second updates
//! the articles whose links changed once every article has its Gleap id.
//!
//! Shape of the bodies (live, NicolePrince1/nicole-workspace, research
//! gleap-help-center-2026-05-25: create_help_center.py and article-before-*.json):
//! `title`, `description`, `content` and `plainContent` are localized objects keyed by
//! language (`{"en": ...}`), `content.en` a TipTap document, `plainContent.en` its text;
//! `isDraft` and `tags` are accepted; answers carry `id` and `_id`, and an article its
//! `docId`, the number in its public URL (help.gleap.io/en/articles/100-slug). What is
//! assumed, not seen: that other languages use their two-letter code as key (`de`), so
//! source locales are reduced to their language (`en-us` -> `en`), and that Gleap stores
//! a TipTap document as sent (when it does not, an adopted record costs an update).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use reqwest::Method;
use serde_json::{Map, Value, json};

use super::{Entity, GleapRun, GleapSinkConfig, id_text};
use crate::error::{Error, Result};
use crate::gleap::answer;
use crate::gleap::client::{Answer, CallError, GleapClient, RequestCounters, backoff};
use crate::record::{Position, Record};
use crate::sinks::{Sink, SinkContext, SinkSummary};
use crate::state::{Commit, MapEntry, StateStore};

/// The fields a collection record may hold besides its id.
const COLLECTION_FIELDS: &[&str] = &[
    "title",
    "description",
    "parent",
    "iconUrl",
    "targetAudience",
    "externalId",
    "locale",
];

/// The fields an article record may hold besides its id.
const ARTICLE_FIELDS: &[&str] = &[
    "title",
    "description",
    "content",
    "plainContent",
    "collection",
    "isDraft",
    "tags",
    "targetAudience",
    "externalId",
    "locale",
];

/// The fields a record of `entity` may hold.
pub fn record_fields(entity: Entity) -> &'static [&'static str] {
    match entity {
        Entity::Collections => COLLECTION_FIELDS,
        _ => ARTICLE_FIELDS,
    }
}

/// Gleap's key for a locale: its language, lower case (`en-US` -> `en`, `pt_BR` -> `pt`).
/// An assumption (see the module docs): the live API was seen with `en` only.
pub fn locale_key(locale: &str) -> String {
    locale
        .split(['-', '_'])
        .next()
        .unwrap_or(locale)
        .trim()
        .to_ascii_lowercase()
}

/// A field as a localized object: an object of values by locale stays one (its keys made
/// Gleap's), anything else (a string, a TipTap document) goes under `locale`.
fn localize(value: Value, locale: &str) -> Value {
    match value {
        Value::Object(map) if map.get("type").and_then(Value::as_str) != Some("doc") => {
            let mut out = Map::new();
            for (k, v) in map {
                if v.is_null() {
                    continue;
                }
                out.entry(locale_key(&k)).or_insert(v);
            }
            Value::Object(out)
        }
        Value::Null => Value::Null,
        other => json!({ locale_key(locale): other }),
    }
}

/// A record ready to write: its source id, the body without references, and the source ids
/// it refers to.
#[derive(Debug, Clone)]
pub struct Item {
    pub source_id: String,
    pub body: Map<String, Value>,
    /// Collections: the parent's source id; articles: the collection's.
    pub parent: Option<String>,
    pub position: Position,
    pub record: Record,
}

/// Turns a record into an [`Item`], or says why it cannot be sent.
pub fn prepare(
    config: &GleapSinkConfig,
    stream: &str,
    mut record: Record,
    position: Position,
) -> std::result::Result<Item, (String, Record)> {
    let entity = config.entity;
    let original = record.clone();
    let id_field = config.id_field();
    let Some(source_id) = id_field.get(&record).and_then(id_text) else {
        return Err((
            format!(
                "the record has no `{id_field}`: the source id that keeps re-runs from creating the {} twice",
                entity.singular()
            ),
            original,
        ));
    };
    id_field.remove(&mut record);
    let allowed = record_fields(entity);
    let unknown: Vec<String> = record
        .keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .map(
            |k| match crate::config::did_you_mean(k, allowed.iter().copied()) {
                Some(s) => format!("`{k}` (did you mean `{s}`?)"),
                None => format!("`{k}`"),
            },
        )
        .collect();
    if !unknown.is_empty() {
        return Err((
            format!(
                "not a field of a Gleap help-centre {}, so Gleap would drop it silently: {}",
                entity.singular(),
                unknown.join(", ")
            ),
            original,
        ));
    }
    let locale = match record.remove("locale") {
        Some(Value::String(l)) if !l.trim().is_empty() => l,
        _ => "en".to_string(),
    };
    let ref_field = if entity == Entity::Collections {
        "parent"
    } else {
        "collection"
    };
    let parent = match record.remove(ref_field) {
        None | Some(Value::Null) => None,
        Some(v) => match id_text(&v) {
            Some(id) => Some(id),
            None => {
                return Err((
                    format!("`{ref_field}` holds {v}, not a source id"),
                    original,
                ));
            }
        },
    };
    if entity == Entity::Articles && parent.is_none() {
        return Err((
            "an article needs a `collection` (the source id of its collection, mapped with `refs: {collection: <collections stream>}`)".into(),
            original,
        ));
    }
    let mut body = Map::new();
    for field in ["title", "description", "content", "plainContent"] {
        if let Some(v) = record.remove(field) {
            let v = match (field, v) {
                // A plain-text body becomes a document.
                ("content", Value::String(s)) => crate::transforms::tiptap::text_to_doc(&s),
                (_, v) => v,
            };
            let v = localize(v, &locale);
            if !v.is_null() {
                body.insert(field.into(), v);
            }
        }
    }
    match body.get("title") {
        Some(Value::Object(t)) if !t.is_empty() => {}
        _ => {
            return Err((
                format!("a help-centre {} needs a `title`", entity.singular()),
                original,
            ));
        }
    }
    if entity == Entity::Articles {
        // plainContent: the text of each document, unless given.
        if !body.contains_key("plainContent")
            && let Some(Value::Object(content)) = body.get("content")
        {
            let plain: Map<String, Value> = content
                .iter()
                .map(|(l, doc)| (l.clone(), Value::String(plain_text(doc))))
                .collect();
            body.insert("plainContent".into(), Value::Object(plain));
        }
        let draft = match record.remove("isDraft") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => b,
            Some(v) => return Err((format!("isDraft must be a boolean, not {v}"), original)),
        };
        body.insert("isDraft".into(), Value::Bool(draft));
        match record.remove("tags") {
            None | Some(Value::Null) => {}
            Some(Value::Array(tags)) if tags.iter().all(Value::is_string) => {
                body.insert("tags".into(), Value::Array(tags));
            }
            Some(v) => return Err((format!("tags must be a list of strings, not {v}"), original)),
        }
    }
    for field in ["iconUrl", "targetAudience"] {
        match record.remove(field) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => {
                body.insert(field.into(), Value::String(s));
            }
            Some(v) => return Err((format!("{field} must be a string, not {v}"), original)),
        }
    }
    let external = match record.remove("externalId") {
        Some(v) if id_text(&v).is_some() => id_text(&v).expect("checked"),
        _ => format!("{stream}:{source_id}"),
    };
    body.insert("externalId".into(), Value::String(external));
    Ok(Item {
        source_id,
        body,
        parent,
        position,
        record: original,
    })
}

/// The text of a TipTap document, blocks on lines of their own (Gleap's search reads
/// `plainContent`).
fn plain_text(doc: &Value) -> String {
    answer::text_lines(doc, false).trim().to_string()
}

/// Where an article lives in Gleap: its collection, its id and its `docId` (the number of
/// its public URL) when known. Stored in the id map as `collection/article/docId`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ArticleRef {
    collection: String,
    id: String,
    doc_id: Option<String>,
}

impl ArticleRef {
    fn parse(stored: &str) -> Option<ArticleRef> {
        let mut parts = stored.splitn(3, '/');
        let collection = parts.next()?.to_string();
        let id = parts.next()?.to_string();
        let doc_id = parts.next().filter(|d| !d.is_empty()).map(str::to_string);
        (!collection.is_empty() && !id.is_empty()).then_some(ArticleRef {
            collection,
            id,
            doc_id,
        })
    }

    fn stored(&self) -> String {
        format!(
            "{}/{}/{}",
            self.collection,
            self.id,
            self.doc_id.as_deref().unwrap_or("")
        )
    }
}

/// The source id of the article an old help centre's link points at: the digits after the
/// last `/articles/` of its path (Zendesk `/hc/en-us/articles/123-Slug`, its API
/// `/api/v2/help_center/articles/123.json`, Intercom `/en/articles/123-slug`).
pub fn linked_article(href: &str) -> Option<&str> {
    let path = href.split(['?', '#']).next().unwrap_or(href);
    let at = path.rfind("/articles/")? + "/articles/".len();
    let rest = &path[at..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    (end > 0).then_some(&rest[..end])
}

/// A URL-safe slug of a title: lower-case letters and digits, dashes between words.
fn slug(title: &str) -> String {
    let mut out = String::new();
    for c in title.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

/// What became of the records, for the summary.
#[derive(Default)]
struct Counts {
    created: u64,
    updated: u64,
    unchanged: u64,
    rejected: u64,
    links_rewritten: u64,
    links_kept: u64,
    link_updates: u64,
}

/// The running sink: records are kept until the source is done ([`Sink::finish`]).
pub struct HelpCentreSink {
    config: GleapSinkConfig,
    stream: String,
    items: Vec<Item>,
    seen: HashSet<String>,
    client: Arc<GleapClient>,
    store: Arc<StateStore>,
    runtime: Arc<tokio::runtime::Runtime>,
    context: SinkContext,
    counters: RequestCounters,
    counts: Counts,
    max_attempts: u32,
    /// Source ids written (created, updated, found unchanged) in this run.
    written: HashSet<String>,
    /// `attachments: rehost`: images re-hosted to Gleap before a body goes out.
    rehoster: Option<crate::files::Rehoster>,
    /// Images kept with their original URL: `(externalId, url, why)`, dead-lettered at the end.
    files_kept: std::sync::Mutex<Vec<(String, String, String)>>,
}

impl HelpCentreSink {
    pub fn new(config: &GleapSinkConfig, context: SinkContext) -> Result<HelpCentreSink> {
        let run: Arc<GleapRun> = context
            .gleap
            .clone()
            .ok_or_else(|| Error::internal("a Gleap sink needs the run's Gleap client"))?;
        let stream = context.stream.clone();
        run.store
            .restart_stream(&stream, &context.input_fingerprint)?;
        let rehoster = match config.attachments {
            crate::files::AttachmentsMode::Link => None,
            crate::files::AttachmentsMode::Rehost => Some(crate::files::Rehoster::new(
                &config.files,
                run.store.clone(),
                run.client.clone(),
            )?),
        };
        let mut context = context;
        context.gleap = None;
        Ok(HelpCentreSink {
            rehoster,
            files_kept: Default::default(),
            config: config.clone(),
            stream,
            items: Vec::new(),
            seen: HashSet::new(),
            max_attempts: run.client.settings().max_attempts,
            client: run.client.clone(),
            store: run.store.clone(),
            runtime: run.runtime.clone(),
            context,
            counters: RequestCounters::default(),
            counts: Counts::default(),
            written: HashSet::new(),
        })
    }

    fn reject(&mut self, position: &Position, reason: String, record: Record) -> Result<()> {
        self.counts.rejected += 1;
        self.context.reject(position, reason, record)
    }

    /// The Gleap id of collection `source_id`: this stream's (when it is a collections
    /// stream) or the stream `refs` names for the field.
    fn refs_map(&self, field: &str) -> Result<HashMap<String, MapEntry>> {
        match self.config.refs.get(field) {
            Some(stream) => self.store.load_map(stream),
            None => Ok(HashMap::new()),
        }
    }

    /// A record dead-lettered: a create it may have sent is no longer in flight (the next
    /// run looks it up by `externalId` anyway).
    fn clear_intent(&self, source_id: &str) -> Result<()> {
        let commit = Commit {
            cleared: vec![source_id.to_string()],
            ..Commit::default()
        };
        self.store.commit(&self.stream, &commit)
    }

    fn confirm(&self, source_id: &str, gleap_id: String, hash: u128) -> Result<()> {
        let commit = Commit {
            confirmed: vec![(source_id.to_string(), MapEntry { gleap_id, hash })],
            ..Commit::default()
        };
        self.store.commit(&self.stream, &commit)
    }

    /// Collections, parents first: a collection whose parent is in this stream waits for
    /// it; one whose parent is nowhere, or in a circle, is a dead letter.
    fn write_collections(&mut self) -> Result<()> {
        let mut map = self.store.load_map(&self.stream)?;
        let other = self.refs_map("parent")?;
        let mut remote: Option<Vec<Value>> = None;
        let mut pending: Vec<Item> = std::mem::take(&mut self.items);
        let in_stream: HashSet<String> = pending.iter().map(|i| i.source_id.clone()).collect();
        let mut failed: HashSet<String> = HashSet::new();
        loop {
            let before = pending.len();
            let mut waiting = Vec::new();
            for item in pending {
                let parent_id = match &item.parent {
                    None => None,
                    Some(p) if failed.contains(p) => {
                        failed.insert(item.source_id.clone());
                        let reason = format!(
                            "its parent collection {p:?} could not be written (see its dead letter)"
                        );
                        self.reject(&item.position, reason, item.record)?;
                        continue;
                    }
                    Some(p) if in_stream.contains(p) && other.contains_key(p) => {
                        failed.insert(item.source_id.clone());
                        let reason = format!(
                            "`parent` {p:?} is a collection of this stream and of stream `{}`: give one of them other ids",
                            self.config.refs.get("parent").cloned().unwrap_or_default()
                        );
                        self.reject(&item.position, reason, item.record)?;
                        continue;
                    }
                    Some(p) if in_stream.contains(p) => match map.get(p) {
                        Some(e) if self.done_this_run(p) => Some(e.gleap_id.clone()),
                        _ => {
                            waiting.push(item);
                            continue;
                        }
                    },
                    Some(p) => match other.get(p) {
                        Some(e) => Some(e.gleap_id.clone()),
                        None => {
                            failed.insert(item.source_id.clone());
                            let reason = format!(
                                "`parent` names {p:?}, which is no collection of this stream{}: it was not created (see its dead letters) or is not in the input",
                                self.config
                                    .refs
                                    .get("parent")
                                    .map(|s| format!(" nor of stream `{s}`"))
                                    .unwrap_or_default()
                            );
                            self.reject(&item.position, reason, item.record)?;
                            continue;
                        }
                    },
                };
                let mut body = item.body.clone();
                body.insert(
                    "parent".into(),
                    parent_id.map(Value::String).unwrap_or(Value::Null),
                );
                let hash = hash_of(&body);
                let known = map.get(&item.source_id).cloned();
                let outcome = self.runtime.clone().block_on(self.upsert(
                    &item.source_id,
                    "/helpcenter/collections",
                    // Every collection, subcollections included (`/helpcenter/collections`
                    // answers the top-level ones).
                    "/helpcenter/collections/all",
                    known.as_ref().map(|e| (e.gleap_id.clone(), e.hash)),
                    &body,
                    hash,
                    &mut remote,
                ));
                match outcome {
                    Ok((id, _doc, done)) => {
                        self.count(done);
                        self.confirm(&item.source_id, id.clone(), hash)?;
                        map.insert(item.source_id.clone(), MapEntry { gleap_id: id, hash });
                        self.written.insert(item.source_id.clone());
                    }
                    Err(Failure::Fatal(e)) => return Err(e),
                    Err(Failure::Record(reason)) => {
                        failed.insert(item.source_id.clone());
                        self.clear_intent(&item.source_id)?;
                        self.reject(&item.position, reason, item.record)?;
                    }
                }
            }
            if waiting.is_empty() {
                return Ok(());
            }
            if waiting.len() == before {
                // No progress: the rest wait for each other.
                for item in waiting {
                    let reason = format!(
                        "its parent collection {:?} is its own ancestor: the collections' parents form a circle",
                        item.parent.as_deref().unwrap_or_default()
                    );
                    self.reject(&item.position, reason, item.record)?;
                }
                return Ok(());
            }
            pending = waiting;
        }
    }

    fn done_this_run(&self, source_id: &str) -> bool {
        self.written.contains(source_id)
    }
}

/// What became of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Done {
    Created,
    Updated,
    Unchanged,
}

/// Why a record was not written: its own fault (a dead letter), or the run's (the stream
/// stops, the record is left for the next run).
enum Failure {
    Record(String),
    Fatal(Error),
}

impl Failure {
    fn call(what: &str, e: CallError) -> Failure {
        match e {
            e @ CallError::Fatal(_) => Failure::Fatal(Error::remote("", &e)),
            e => Failure::Record(format!("{what}: {e}")),
        }
    }
}

fn hash_of(body: &Map<String, Value>) -> u128 {
    xxhash_rust::xxh3::xxh3_128(&serde_json::to_vec(body).expect("JSON"))
}

/// The documents of a help-centre list answer (a bare array, or wrapped: see
/// [`answer::list`]).
fn listed(what: &str, answer: Answer) -> std::result::Result<Vec<Value>, Failure> {
    if answer.status == 404 {
        return Ok(Vec::new());
    }
    answer::list(answer.body)
        .map(|page| page.items)
        .map_err(|e| {
            Failure::Fatal(Error::unusable_answer(format!(
                "{what}: Gleap answered {e}"
            )))
        })
}

/// The one document of `docs` with this `externalId`: `Ok(None)` when none has it, an
/// error naming them when several do.
fn by_external_id<'a>(
    docs: &'a [Value],
    external: &str,
    what: &str,
) -> std::result::Result<Option<&'a Value>, Failure> {
    let found: Vec<&Value> = docs
        .iter()
        .filter(|d| d.get("externalId").and_then(Value::as_str) == Some(external))
        .collect();
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        many => Err(Failure::Record(format!(
            "ambiguous: {} {what} in Gleap have externalId {external:?} ({}), so none was adopted or overwritten; delete the extra ones in Gleap and run again",
            many.len(),
            many.iter()
                .filter_map(|d| answer::id(d))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

impl HelpCentreSink {
    fn count(&mut self, done: Done) {
        match done {
            Done::Created => self.counts.created += 1,
            Done::Updated => self.counts.updated += 1,
            Done::Unchanged => self.counts.unchanged += 1,
        }
    }

    /// The one place a body is changed right before it goes out. The attachments
    /// re-hoster (`attachments: rehost`) plugs in here: it rewrites each TipTap `image`
    /// node's `attrs.src` (in every locale of `content`) to the Gleap URL of the file.
    /// Hashes are taken before, from the source's content, so an unchanged record is
    /// skipped without re-hosting anything.
    async fn outgoing(
        &self,
        body: &Map<String, Value>,
    ) -> std::result::Result<Map<String, Value>, Failure> {
        let Some(rehoster) = &self.rehoster else {
            return Ok(body.clone());
        };
        let mut value = Value::Object(body.clone());
        let outcome = rehoster.rehost(&mut value).await;
        if !outcome.failed.is_empty() {
            let external = body
                .get("externalId")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let mut kept = self.files_kept.lock().unwrap_or_else(|p| p.into_inner());
            for (url, why) in outcome.failed {
                if !kept.iter().any(|(e, u, _)| *e == external && *u == url) {
                    kept.push((external.clone(), url, why));
                }
            }
        }
        match value {
            Value::Object(map) => Ok(map),
            _ => Ok(body.clone()),
        }
    }

    /// A dead letter for each image sent with its original URL (it could not be re-hosted),
    /// placed at its record.
    fn files_kept_as_links(&self) -> Result<()> {
        let kept = std::mem::take(&mut *self.files_kept.lock().unwrap_or_else(|p| p.into_inner()));
        let prefix = format!("{}:", self.stream);
        for (external, url, why) in kept {
            let source_id = external.strip_prefix(&prefix).unwrap_or(&external);
            let Some(item) = self.items.iter().find(|i| i.source_id == source_id) else {
                continue;
            };
            self.context
                .dead_letters
                .reject(crate::dead_letter::DeadLetter::new(
                    &self.stream,
                    &item.position,
                    "sink (files)",
                    format!(
                        "the {} was sent with the image's original URL {url}: it could not be re-hosted: {why}",
                        self.config.entity.singular()
                    ),
                    Value::Object(item.record.clone()),
                ))?;
        }
        Ok(())
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: &Map<String, Value>,
        create: bool,
    ) -> std::result::Result<std::result::Result<Answer, CallError>, Failure> {
        // What `outgoing` refuses is the record's fault (or the run's), not Gleap's answer.
        let body = self.outgoing(body).await?;
        Ok(self
            .client
            .call(
                method,
                path,
                &[],
                Some(&Value::Object(body)),
                create,
                &self.counters,
            )
            .await)
    }

    async fn list(&self, endpoint: &str) -> std::result::Result<Vec<Value>, Failure> {
        let what = format!("listing {endpoint}");
        let answer = self
            .client
            .call(Method::GET, endpoint, &[], None, false, &self.counters)
            .await
            .map_err(|e| match e {
                e @ CallError::Fatal(_) => Failure::Fatal(Error::remote("", &e)),
                // Without the list, "absent" cannot be known: the stream stops rather than
                // create a duplicate.
                e => Failure::Fatal(Error::remote(what.clone(), &e)),
            })?;
        listed(&what, answer)
    }

    /// `PUT endpoint/id`; `None` when Gleap answers 404 (deleted there).
    async fn update(
        &self,
        endpoint: &str,
        id: &str,
        body: &Map<String, Value>,
    ) -> std::result::Result<Option<Value>, Failure> {
        match self
            .send(Method::PUT, &format!("{endpoint}/{id}"), body, false)
            .await?
        {
            Ok(Answer { status: 404, .. }) => Ok(None),
            Ok(a) => Ok(Some(a.body)),
            Err(e) => Err(Failure::call("update", e)),
        }
    }

    /// Writes one object of `endpoint` (a collections or articles list): nothing when the
    /// state store knows it with this hash, an update when it knows it otherwise, else a
    /// look-up by `externalId` in the list (read once, kept in `remote`) and an update or a
    /// create. A create without an answer is looked up again before it is sent again.
    #[allow(clippy::too_many_arguments)]
    async fn upsert(
        &self,
        source_id: &str,
        endpoint: &str,
        list_endpoint: &str,
        known: Option<(String, u128)>,
        body: &Map<String, Value>,
        hash: u128,
        remote: &mut Option<Vec<Value>>,
    ) -> std::result::Result<(String, Value, Done), Failure> {
        let what = self.config.entity.name();
        if let Some((id, stored)) = known {
            if stored == hash {
                return Ok((id, Value::Null, Done::Unchanged));
            }
            if let Some(doc) = self.update(endpoint, &id, body).await? {
                return Ok((id, doc, Done::Updated));
            }
        }
        let external = body
            .get("externalId")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if remote.is_none() {
            *remote = Some(self.list(list_endpoint).await?);
        }
        let found =
            by_external_id(remote.as_deref().unwrap_or_default(), &external, what)?.cloned();
        if let Some(doc) = found {
            let Some(id) = answer::id(&doc).map(str::to_string) else {
                return Err(Failure::Record(format!(
                    "Gleap lists a {} with externalId {external:?} but no id",
                    self.config.entity.singular()
                )));
            };
            if super::matches_remote(body, &doc) {
                return Ok((id, doc, Done::Unchanged));
            }
            if let Some(doc) = self.update(endpoint, &id, body).await? {
                return Ok((id, doc, Done::Updated));
            }
        }
        self.store
            .add_intents(&self.stream, &[source_id.to_string()])
            .map_err(Failure::Fatal)?;
        let mut last = String::new();
        for attempt in 0..self.max_attempts {
            match self.send(Method::POST, endpoint, body, true).await? {
                Ok(Answer {
                    status, body: doc, ..
                }) if (200..300).contains(&status) => {
                    return match answer::id(&doc).map(str::to_string) {
                        Some(id) => Ok((id, doc, Done::Created)),
                        None => Err(Failure::Record(format!(
                            "create answered {status} without an id (`id` or `_id`): {}",
                            crate::record::describe(&doc)
                        ))),
                    };
                }
                Ok(Answer {
                    status, body: doc, ..
                }) => {
                    return Err(Failure::Record(format!(
                        "create answered {status}: {}",
                        crate::record::describe(&doc)
                    )));
                }
                Err(CallError::Ambiguous(message)) => {
                    last = message;
                    // The create may have happened: look before sending it again.
                    let docs = self.list(list_endpoint).await?;
                    let found = by_external_id(&docs, &external, what)?.cloned();
                    *remote = Some(docs);
                    if let Some(doc) = found
                        && let Some(id) = answer::id(&doc).map(str::to_string)
                    {
                        return Ok((id, doc, Done::Created));
                    }
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => return Err(Failure::call("create", e)),
            }
        }
        Err(Failure::Record(format!(
            "create: gave up after {} attempts, the last: {last}",
            self.max_attempts
        )))
    }

    /// Articles, in two passes (see the module docs).
    fn write_articles(&mut self) -> Result<()> {
        let map = self.store.load_map(&self.stream)?;
        let collections = self.refs_map("collection")?;
        let mut targets: HashMap<String, ArticleRef> = map
            .iter()
            .filter_map(|(k, e)| ArticleRef::parse(&e.gleap_id).map(|r| (k.clone(), r)))
            .collect();
        let titles: HashMap<String, Value> = self
            .items
            .iter()
            .filter_map(|i| {
                i.body
                    .get("title")
                    .map(|t| (i.source_id.clone(), t.clone()))
            })
            .collect();
        let mut remote: HashMap<String, Option<Vec<Value>>> = HashMap::new();
        let items = std::mem::take(&mut self.items);
        // Pass 1: each article with the links already known.
        let mut sent: Vec<(Item, String, u128)> = Vec::new();
        for item in items {
            let parent = item.parent.clone().unwrap_or_default();
            let Some(collection) = collections.get(&parent).map(|e| e.gleap_id.clone()) else {
                let reason = format!(
                    "`collection` names {parent:?}{}, which has no Gleap id: it was not created (see its dead letters) or is not in its input",
                    self.config
                        .refs
                        .get("collection")
                        .map(|s| format!(" of stream `{s}`"))
                        .unwrap_or_default()
                );
                self.reject(&item.position, reason, item.record)?;
                continue;
            };
            let (body, hash) = self.article_body(&item, &collection, &targets, &titles, None);
            let known = map
                .get(&item.source_id)
                .and_then(|e| ArticleRef::parse(&e.gleap_id).map(|r| (r, e.hash)));
            let endpoint = format!("/helpcenter/collections/{collection}/articles");
            // Moved to another collection: moved in Gleap first.
            if let Some((old, _)) = &known
                && old.collection != collection
            {
                let path = format!(
                    "/helpcenter/collections/{}/articles/{}/move",
                    old.collection, old.id
                );
                let moved = self.runtime.block_on(self.client.call(
                    Method::PUT,
                    &path,
                    &[],
                    Some(&json!({"newCollectionId": collection})),
                    false,
                    &self.counters,
                ));
                if let Err(e @ CallError::Fatal(_)) = moved {
                    return Err(Error::remote("", &e));
                }
            }
            let cache = remote.entry(collection.clone()).or_default();
            let outcome = self.runtime.clone().block_on(self.upsert(
                &item.source_id,
                &endpoint,
                &endpoint,
                known.as_ref().map(|(r, h)| (r.id.clone(), *h)),
                &body,
                hash,
                cache,
            ));
            match outcome {
                Ok((id, doc, done)) => {
                    self.count(done);
                    let doc_id = doc
                        .get("docId")
                        .and_then(id_text)
                        .or_else(|| known.as_ref().and_then(|(r, _)| r.doc_id.clone()));
                    let r = ArticleRef {
                        collection: collection.clone(),
                        id,
                        doc_id,
                    };
                    self.confirm(&item.source_id, r.stored(), hash)?;
                    targets.insert(item.source_id.clone(), r);
                    self.written.insert(item.source_id.clone());
                    sent.push((item, collection, hash));
                }
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Record(reason)) => {
                    self.clear_intent(&item.source_id)?;
                    self.reject(&item.position, reason, item.record)?;
                }
            }
        }
        // The docIds the URL template needs and no answer gave.
        if self
            .config
            .article_url
            .as_deref()
            .is_some_and(|t| t.contains("{docId}"))
        {
            for (item, _, hash) in &sent {
                let Some(r) = targets.get(&item.source_id).cloned() else {
                    continue;
                };
                if r.doc_id.is_some() {
                    continue;
                }
                let path = format!("/helpcenter/collections/{}/articles/{}", r.collection, r.id);
                let answer = self.runtime.block_on(self.client.call(
                    Method::GET,
                    &path,
                    &[],
                    None,
                    false,
                    &self.counters,
                ));
                match answer {
                    Ok(a) => {
                        if let Some(d) = a.body.get("docId").and_then(id_text) {
                            let r = ArticleRef {
                                doc_id: Some(d),
                                ..r
                            };
                            self.confirm(&item.source_id, r.stored(), *hash)?;
                            targets.insert(item.source_id.clone(), r);
                        }
                    }
                    Err(e @ CallError::Fatal(_)) => return Err(Error::remote("", &e)),
                    Err(_) => {}
                }
            }
        }
        // Pass 2: every link that can point at its new article does; the articles whose
        // body changed by it are updated.
        let mut links = (0u64, 0u64);
        for (item, collection, hash) in sent {
            let (body, final_hash) =
                self.article_body(&item, &collection, &targets, &titles, Some(&mut links));
            if final_hash == hash {
                continue;
            }
            let Some(r) = targets.get(&item.source_id).cloned() else {
                continue;
            };
            let endpoint = format!("/helpcenter/collections/{collection}/articles");
            match self
                .runtime
                .clone()
                .block_on(self.update(&endpoint, &r.id, &body))
            {
                Ok(Some(_)) => {
                    self.counts.link_updates += 1;
                    self.confirm(&item.source_id, r.stored(), final_hash)?;
                }
                // Deleted meanwhile: the next run creates it again.
                Ok(None) => {}
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Record(reason)) => {
                    self.reject(
                        &item.position,
                        format!("rewriting its links: {reason}"),
                        item.record,
                    )?;
                }
            }
        }
        self.counts.links_rewritten = links.0;
        self.counts.links_kept = links.1;
        Ok(())
    }

    /// An article's body as it is sent to `collection`, with the links to old articles
    /// whose new place is known rewritten, and its hash (the collection included, so a
    /// move is a change). `links` counts (rewritten, kept) when given.
    fn article_body(
        &self,
        item: &Item,
        collection: &str,
        targets: &HashMap<String, ArticleRef>,
        titles: &HashMap<String, Value>,
        mut links: Option<&mut (u64, u64)>,
    ) -> (Map<String, Value>, u128) {
        let mut body = item.body.clone();
        if let Some(Value::Object(content)) = body.get_mut("content") {
            for (locale, doc) in content.iter_mut() {
                let mut rewrite = |href: &str| -> Option<String> {
                    let id = linked_article(href)?;
                    if !self.link_host_matches(href) {
                        return None;
                    }
                    let url = targets
                        .get(id)
                        .and_then(|t| self.article_url(t, locale, titles.get(id)));
                    if let Some(l) = links.as_deref_mut() {
                        if url.is_some() {
                            l.0 += 1;
                        } else {
                            l.1 += 1;
                        }
                    }
                    url
                };
                rewrite_links(doc, &mut rewrite);
            }
        }
        let mut hashed = body.clone();
        hashed.insert(
            "helpcenterCollection".into(),
            Value::String(collection.to_string()),
        );
        (body, hash_of(&hashed))
    }

    /// Whether a link's host is one of `article_hosts` (any host when none are given; a
    /// relative link always).
    fn link_host_matches(&self, href: &str) -> bool {
        if self.config.article_hosts.is_empty() {
            return true;
        }
        let Some(rest) = href.split_once("://").map(|(_, r)| r) else {
            return true;
        };
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = host.rsplit('@').next().unwrap_or(host);
        let host = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
        self.config
            .article_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(&host))
    }

    /// The new URL of an article from `article_url`; `None` without a template, or when
    /// it needs a `docId` Gleap did not give.
    fn article_url(
        &self,
        target: &ArticleRef,
        locale: &str,
        title: Option<&Value>,
    ) -> Option<String> {
        let template = self.config.article_url.as_deref()?;
        if template.contains("{docId}") && target.doc_id.is_none() {
            return None;
        }
        let title = title
            .and_then(|t| t.get(locale).or_else(|| t.as_object()?.values().next()))
            .and_then(Value::as_str)
            .unwrap_or("");
        let slug = slug(title);
        let mut url = template.to_string();
        if slug.is_empty() {
            url = url.replace("-{slug}", "");
        }
        Some(
            url.replace("{locale}", locale)
                .replace("{docId}", target.doc_id.as_deref().unwrap_or(""))
                .replace("{id}", &target.id)
                .replace("{collection}", &target.collection)
                .replace("{slug}", &slug),
        )
    }
}

/// Rewrites the `href` of every link mark in a TipTap document for which `rewrite` gives a
/// new one.
pub fn rewrite_links(node: &mut Value, rewrite: &mut dyn FnMut(&str) -> Option<String>) {
    let Value::Object(o) = node else { return };
    if let Some(Value::Array(marks)) = o.get_mut("marks") {
        for mark in marks {
            if mark.get("type").and_then(Value::as_str) != Some("link") {
                continue;
            }
            let Some(href) = mark.pointer("/attrs/href").and_then(Value::as_str) else {
                continue;
            };
            if let Some(new) = rewrite(href) {
                mark["attrs"]["href"] = Value::String(new);
            }
        }
    }
    if let Some(Value::Array(children)) = o.get_mut("content") {
        for child in children {
            rewrite_links(child, rewrite);
        }
    }
}

impl Sink for HelpCentreSink {
    fn write(&mut self, record: Record, position: Position) -> Result<()> {
        match prepare(&self.config, &self.stream, record, position.clone()) {
            Ok(item) => {
                if !self.seen.insert(item.source_id.clone()) {
                    let reason = format!(
                        "another record with id {:?} came first in this stream",
                        item.source_id
                    );
                    return self.reject(&position, reason, item.record);
                }
                self.items.push(item);
                Ok(())
            }
            Err((reason, record)) => self.reject(&position, reason, record),
        }
    }

    fn finish(mut self: Box<Self>) -> Result<SinkSummary> {
        match self.config.entity {
            Entity::Collections => self.write_collections()?,
            _ => self.write_articles()?,
        }
        self.files_kept_as_links()?;
        self.context.dead_letters.flush()?;
        self.store.complete_stream(&self.stream)?;
        let (requests, rate_limited, retries) = self.counters.snapshot();
        let c = &self.counts;
        let written = c.created + c.updated + c.unchanged;
        let mut detail = json!({
            "entity": self.config.entity.name(),
            "created": c.created,
            "updated": c.updated,
            "unchanged": c.unchanged,
            "dead_lettered": c.rejected,
            "requests": requests,
            "rate_limited": rate_limited,
            "retries": retries,
            "requests_per_record": if written + c.rejected == 0 { 0.0 } else { requests as f64 / (written + c.rejected) as f64 },
            "concurrency": self.client.concurrency(),
        });
        if let Some(rehoster) = &self.rehoster {
            detail["files"] = rehoster.report_detail();
        }
        if self.config.entity == Entity::Articles {
            detail["links_rewritten"] = json!(c.links_rewritten);
            detail["links_kept"] = json!(c.links_kept);
            detail["link_updates"] = json!(c.link_updates);
            if self.config.article_url.is_none() && c.links_kept > 0 {
                detail["links_note"] = json!(
                    "links to old articles kept: set `article_url` to rewrite them to the new articles"
                );
            }
        }
        Ok(SinkSummary {
            written,
            rejected: c.rejected,
            path: None,
            bytes: None,
            detail: Some(detail),
        })
    }

    fn abort(self: Box<Self>) {
        // Nothing is sent before `finish`; what `finish` confirmed is in the state store.
        self.counters.stopped.store(true, Ordering::Relaxed);
        if let Some(rehoster) = &self.rehoster {
            rehoster.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_article_links_name_their_article() {
        for (href, id) in [
            (
                "https://acme.zendesk.com/hc/en-us/articles/360001-How-to",
                Some("360001"),
            ),
            ("https://acme.zendesk.com/hc/articles/42", Some("42")),
            (
                "https://acme.zendesk.com/api/v2/help_center/articles/7.json",
                Some("7"),
            ),
            (
                "https://intercom.help/acme/en/articles/6543-setup?x=1",
                Some("6543"),
            ),
            ("/hc/de/articles/9#section", Some("9")),
            ("https://acme.zendesk.com/hc/en-us/sections/5", None),
            ("https://example.com/articles/", None),
        ] {
            assert_eq!(linked_article(href), id, "{href}");
        }
        assert_eq!(slug("How to: set up SSO?"), "how-to-set-up-sso");
    }

    #[test]
    fn localized_fields_take_gleap_keys_and_plain_strings_the_record_locale() {
        assert_eq!(
            localize(json!({"en-us": "A", "de": "B"}), "en"),
            json!({"en": "A", "de": "B"})
        );
        assert_eq!(localize(json!("A"), "fr-FR"), json!({"fr": "A"}));
        let doc = json!({"type": "doc", "content": []});
        assert_eq!(localize(doc.clone(), "en"), json!({"en": doc}));
    }

    #[test]
    fn article_refs_round_trip_through_the_id_map() {
        let r = ArticleRef {
            collection: "c1".into(),
            id: "a1".into(),
            doc_id: Some("12".into()),
        };
        assert_eq!(ArticleRef::parse(&r.stored()), Some(r));
        assert_eq!(
            ArticleRef::parse("c1/a1/").unwrap().doc_id,
            None,
            "a docId not known yet"
        );
    }
}
