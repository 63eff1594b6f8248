//! The help centre of the emulated project: collections (nested by `parent`) and their
//! articles, under `/v3/helpcenter/collections`, behind the same gate as the rest of the API
//! (key, project, quota, faults). Bodies are checked against Gleap's `HelpCenterCollectionDto`
//! and `HelpcenterArticleDto` (full.yml): unknown fields are dropped and counted, as Gleap
//! drops them. `title`, `description`, `content` and `plainContent` must be localized objects
//! (`{"en": ...}`), the shape the live API was seen with (NicolePrince1/nicole-workspace,
//! article-before-*.json); a plain string there is a 400 here, so a client that sends one is
//! caught. Answers carry `_id` and `id`, articles a per-project `docId` (the number of their
//! public URL). `GET /helpcenter/collections` lists the top-level collections with counts;
//! `GET /helpcenter/collections/all` lists every collection, subcollections included.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use indexmap::IndexMap;
use serde_json::{Map, Value, json};

use super::api::{App, error, written};
use crate::gleap::model::{Field, FieldKind, check_body};
use crate::record::format_timestamp;

type Doc = Map<String, Value>;

const fn field(name: &'static str, kind: FieldKind) -> Field {
    Field {
        name,
        kind,
        required: false,
    }
}

/// `HelpCenterCollectionDto`.
const COLLECTION_FIELDS: &[Field] = &[
    field("title", FieldKind::Any),
    field("description", FieldKind::Any),
    field("iconUrl", FieldKind::Str),
    field("project", FieldKind::Str),
    field("lexorank", FieldKind::Str),
    field("docId", FieldKind::Number),
    field("parent", FieldKind::Any),
    field("externalId", FieldKind::Str),
    field("targetAudience", FieldKind::Str),
    field("baseAudienceFilter", FieldKind::Any),
    field("extendedAudienceFilter", FieldKind::Any),
];

/// `HelpcenterArticleDto`.
const ARTICLE_FIELDS: &[Field] = &[
    field("title", FieldKind::Any),
    field("description", FieldKind::Any),
    field("content", FieldKind::Any),
    field("plainContent", FieldKind::Any),
    field("helpcenterCollection", FieldKind::Str),
    field("author", FieldKind::Str),
    field("project", FieldKind::Str),
    field("isDraft", FieldKind::Bool),
    field("docId", FieldKind::Number),
    field("lexorank", FieldKind::Str),
    field("upvotes", FieldKind::Any),
    field("targetAudience", FieldKind::Str),
    field("externalId", FieldKind::Str),
    field("baseAudienceFilter", FieldKind::Any),
    field("extendedAudienceFilter", FieldKind::Any),
    field("tags", FieldKind::List(&FieldKind::Str)),
    field("newCollectionId", FieldKind::Str),
];

/// Collections and articles, in creation order.
#[derive(Debug, Default)]
pub struct HelpCentre {
    collections: IndexMap<String, Doc>,
    articles: IndexMap<String, Doc>,
    next_id: u64,
    next_doc_id: u64,
}

impl HelpCentre {
    fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("6a1{:021x}", self.next_id)
    }

    pub fn collections(&self) -> impl Iterator<Item = &Doc> {
        self.collections.values()
    }

    pub fn articles(&self) -> impl Iterator<Item = &Doc> {
        self.articles.values()
    }

    pub fn counts(&self) -> Value {
        json!({"collections": self.collections.len(), "articles": self.articles.len()})
    }

    pub fn dump(&self) -> Value {
        json!({
            "collections": self.collections.values().collect::<Vec<_>>(),
            "articles": self.articles.values().collect::<Vec<_>>(),
            "nextId": self.next_id,
            "nextDocId": self.next_doc_id,
        })
    }

    /// Reads what `dump` wrote (nothing when `data` has no help centre).
    pub fn load(&mut self, data: Option<&Value>) {
        let Some(data) = data else { return };
        for (key, map) in [
            ("collections", &mut self.collections),
            ("articles", &mut self.articles),
        ] {
            for doc in data
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let (Some(id), Some(doc)) =
                    (doc.get("_id").and_then(Value::as_str), doc.as_object())
                {
                    map.insert(id.to_string(), doc.clone());
                }
            }
        }
        self.next_id = data.get("nextId").and_then(Value::as_u64).unwrap_or(0);
        self.next_doc_id = data.get("nextDocId").and_then(Value::as_u64).unwrap_or(0);
    }

    fn check_parent(&self, body: &Doc, own: Option<&str>) -> Result<(), (StatusCode, String)> {
        match body.get("parent") {
            None | Some(Value::Null) => Ok(()),
            Some(Value::String(p)) if Some(p.as_str()) == own => Err((
                StatusCode::BAD_REQUEST,
                "A collection cannot be its own parent".into(),
            )),
            Some(Value::String(p)) if self.collections.contains_key(p) => Ok(()),
            Some(other) => Err((
                StatusCode::BAD_REQUEST,
                format!("parent {other} is no collection of this project"),
            )),
        }
    }
}

/// `title`, `description`, `content`, `plainContent`: localized objects, or a 400.
fn check_localized(body: &Doc) -> Result<(), String> {
    for key in ["title", "description", "content", "plainContent"] {
        match body.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Object(by_locale))
                if by_locale.get("type").and_then(Value::as_str) != Some("doc") =>
            {
                if key == "content"
                    && let Some((locale, _)) = by_locale
                        .iter()
                        .find(|(_, d)| d.get("type").and_then(Value::as_str) != Some("doc"))
                {
                    return Err(format!(
                        "content.{locale} must be a TipTap document ({{type: doc}})"
                    ));
                }
            }
            Some(other) => {
                return Err(format!(
                    "{key} must be a localized object ({{\"en\": ...}}), not {other}"
                ));
            }
        }
    }
    Ok(())
}

/// The body of a request, checked: unknown fields dropped (and counted), wrong types and
/// unlocalized fields a 400; with the time now, for its timestamps.
fn checked(
    app: &App,
    entity: &str,
    fields: &[Field],
    bytes: &Bytes,
) -> Result<(Doc, String), Box<Response>> {
    let bad = |m: String| Box::new(error(StatusCode::BAD_REQUEST, m));
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("Invalid JSON body: {e}")))?;
    let Value::Object(object) = value else {
        return Err(bad("The body must be a JSON object".into()));
    };
    let c = check_body(fields, object).map_err(|e| bad(format!("Validation failed: {e}")))?;
    if !c.dropped.is_empty() {
        app.lock().stats.dropped(entity, &c.dropped);
    }
    check_localized(&c.body).map_err(|e| bad(format!("Validation failed: {e}")))?;
    Ok((c.body, format_timestamp(&app.clock.now())))
}

fn ok(doc: &Doc) -> Response {
    axum::Json(Value::Object(doc.clone())).into_response()
}

fn not_found(what: &str) -> Response {
    error(StatusCode::NOT_FOUND, format!("{what} not found"))
}

/// The routes, to nest under `/v3` behind the gate.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route(
            "/helpcenter/collections",
            post(create_collection).get(list_top_collections),
        )
        .route("/helpcenter/collections/all", get(list_all_collections))
        .route(
            "/helpcenter/collections/{id}",
            get(get_collection)
                .put(update_collection)
                .delete(delete_collection),
        )
        .route(
            "/helpcenter/collections/{id}/articles",
            post(create_article).get(list_articles),
        )
        .route(
            "/helpcenter/collections/{id}/articles/{article}",
            get(get_article).put(update_article).delete(delete_article),
        )
        .route(
            "/helpcenter/collections/{id}/articles/{article}/move",
            put(move_article),
        )
}

async fn create_collection(State(app): State<Arc<App>>, bytes: Bytes) -> Response {
    let (mut doc, now) = match checked(&app, "helpcenter_collections", COLLECTION_FIELDS, &bytes) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let mut shared = app.lock();
    let help = &mut shared.store.help;
    if let Err((status, m)) = help.check_parent(&doc, None) {
        return error(status, m);
    }
    let id = help.new_id();
    doc.insert("_id".into(), json!(id));
    doc.insert("id".into(), json!(id));
    doc.insert("project".into(), json!(app.project));
    doc.entry("parent").or_insert(Value::Null);
    doc.entry("targetAudience").or_insert(json!("all"));
    doc.insert("createdAt".into(), json!(now));
    doc.insert("updatedAt".into(), json!(now));
    help.collections.insert(id, doc.clone());
    drop(shared);
    written(&app);
    ok(&doc)
}

/// Top-level collections, with their counts (`CollectionWithCounts`).
async fn list_top_collections(State(app): State<Arc<App>>) -> Response {
    let shared = app.lock();
    let help = &shared.store.help;
    let out: Vec<Value> = help
        .collections
        .values()
        .filter(|c| c.get("parent").is_none_or(Value::is_null))
        .map(|c| {
            let id = c.get("_id").and_then(Value::as_str).unwrap_or_default();
            let mut c = c.clone();
            let subs = help
                .collections
                .values()
                .filter(|s| s.get("parent").and_then(Value::as_str) == Some(id))
                .count();
            let articles = help
                .articles
                .values()
                .filter(|a| a.get("helpcenterCollection").and_then(Value::as_str) == Some(id))
                .count();
            c.insert("subCollectionsCount".into(), json!(subs));
            c.insert("articlesCount".into(), json!(articles));
            Value::Object(c)
        })
        .collect();
    axum::Json(Value::Array(out)).into_response()
}

async fn list_all_collections(State(app): State<Arc<App>>) -> Response {
    let shared = app.lock();
    let out: Vec<&Doc> = shared.store.help.collections.values().collect();
    axum::Json(json!(out)).into_response()
}

async fn get_collection(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    match app.lock().store.help.collections.get(&id) {
        Some(doc) => ok(doc),
        None => not_found("Collection"),
    }
}

async fn update_collection(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Response {
    let (doc, now) = match checked(&app, "helpcenter_collections", COLLECTION_FIELDS, &bytes) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let mut shared = app.lock();
    let help = &mut shared.store.help;
    if !help.collections.contains_key(&id) {
        return not_found("Collection");
    }
    if let Err((status, m)) = help.check_parent(&doc, Some(&id)) {
        return error(status, m);
    }
    let stored = help.collections.get_mut(&id).expect("checked");
    for (k, v) in doc {
        stored.insert(k, v);
    }
    stored.insert("updatedAt".into(), json!(now));
    let out = stored.clone();
    drop(shared);
    written(&app);
    ok(&out)
}

async fn delete_collection(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let mut shared = app.lock();
    let help = &mut shared.store.help;
    if help.collections.shift_remove(&id).is_none() {
        return not_found("Collection");
    }
    help.articles
        .retain(|_, a| a.get("helpcenterCollection").and_then(Value::as_str) != Some(&id));
    drop(shared);
    written(&app);
    axum::Json(json!({"success": true})).into_response()
}

async fn create_article(
    State(app): State<Arc<App>>,
    Path(collection): Path<String>,
    bytes: Bytes,
) -> Response {
    let (mut doc, now) = match checked(&app, "helpcenter_articles", ARTICLE_FIELDS, &bytes) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let mut shared = app.lock();
    let help = &mut shared.store.help;
    if !help.collections.contains_key(&collection) {
        return not_found("Collection");
    }
    let id = help.new_id();
    help.next_doc_id += 1;
    doc.insert("_id".into(), json!(id));
    doc.insert("id".into(), json!(id));
    doc.insert("docId".into(), json!(help.next_doc_id));
    doc.insert("helpcenterCollection".into(), json!(collection));
    doc.insert("project".into(), json!(app.project));
    doc.entry("isDraft").or_insert(json!(true));
    doc.entry("tags").or_insert(json!([]));
    doc.entry("targetAudience").or_insert(json!("all"));
    doc.insert("sourceUsage".into(), json!(0));
    doc.insert("createdAt".into(), json!(now));
    doc.insert("updatedAt".into(), json!(now));
    help.articles.insert(id, doc.clone());
    drop(shared);
    written(&app);
    ok(&doc)
}

async fn list_articles(State(app): State<Arc<App>>, Path(collection): Path<String>) -> Response {
    let shared = app.lock();
    let help = &shared.store.help;
    if !help.collections.contains_key(&collection) {
        return not_found("Collection");
    }
    let out: Vec<&Doc> = help
        .articles
        .values()
        .filter(|a| a.get("helpcenterCollection").and_then(Value::as_str) == Some(&collection))
        .collect();
    axum::Json(json!(out)).into_response()
}

/// The article `id` of collection `collection`, or a 404 answer.
fn article_in<'h>(
    help: &'h mut HelpCentre,
    collection: &str,
    id: &str,
) -> Result<&'h mut Doc, Box<Response>> {
    match help.articles.get_mut(id) {
        Some(a) if a.get("helpcenterCollection").and_then(Value::as_str) == Some(collection) => {
            Ok(a)
        }
        _ => Err(Box::new(not_found("Article"))),
    }
}

async fn get_article(
    State(app): State<Arc<App>>,
    Path((collection, id)): Path<(String, String)>,
) -> Response {
    let mut shared = app.lock();
    match article_in(&mut shared.store.help, &collection, &id) {
        Ok(a) => ok(a),
        Err(r) => *r,
    }
}

async fn update_article(
    State(app): State<Arc<App>>,
    Path((collection, id)): Path<(String, String)>,
    bytes: Bytes,
) -> Response {
    let (mut doc, now) = match checked(&app, "helpcenter_articles", ARTICLE_FIELDS, &bytes) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let target = doc
        .remove("newCollectionId")
        .and_then(|v| v.as_str().map(str::to_string));
    // Where an article lives is changed by a move, not by a field of the update.
    doc.remove("helpcenterCollection");
    doc.remove("docId");
    change_article(&app, &collection, &id, doc, target, Some(now))
}

async fn move_article(
    State(app): State<Arc<App>>,
    Path((collection, id)): Path<(String, String)>,
    bytes: Bytes,
) -> Response {
    let target = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v.get("newCollectionId")?.as_str().map(str::to_string));
    let Some(target) = target else {
        return error(StatusCode::BAD_REQUEST, "newCollectionId is required");
    };
    change_article(&app, &collection, &id, Doc::new(), Some(target), None)
}

/// Article `id` of collection `collection` given the fields of `doc`, moved to collection
/// `target` (a 404 if there is none such) and its `updatedAt` set to `now` when given.
fn change_article(
    app: &App,
    collection: &str,
    id: &str,
    doc: Doc,
    target: Option<String>,
    now: Option<String>,
) -> Response {
    let mut shared = app.lock();
    let help = &mut shared.store.help;
    if let Some(t) = &target
        && !help.collections.contains_key(t)
    {
        return not_found("Collection");
    }
    let stored = match article_in(help, collection, id) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    for (k, v) in doc {
        stored.insert(k, v);
    }
    if let Some(t) = target {
        stored.insert("helpcenterCollection".into(), json!(t));
    }
    if let Some(now) = now {
        stored.insert("updatedAt".into(), json!(now));
    }
    let out = stored.clone();
    drop(shared);
    written(app);
    ok(&out)
}

async fn delete_article(
    State(app): State<Arc<App>>,
    Path((collection, id)): Path<(String, String)>,
) -> Response {
    let mut shared = app.lock();
    let help = &mut shared.store.help;
    if article_in(help, &collection, &id).is_err() {
        return not_found("Article");
    }
    help.articles.shift_remove(&id);
    drop(shared);
    written(&app);
    axum::Json(json!({"success": true})).into_response()
}
