//! The HTTP API: routes under `/v3`, behind one gate that checks the key and the project,
//! applies the quota, adds latency and injects faults; and `/__emulator/*` for tests.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{MatchedPath, Path, RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::limits::{Fault, Faults, QuotaWindow, Stats};
use super::query;
use super::quirks::Quirks;
use super::store::{Doc, Kind, Store, StoreError};
use crate::clock::Clock;
use crate::gleap::fields::{
    CREATE_MESSAGE_FIELDS, CREATE_TICKET_FIELDS, SESSION_FIELDS, UPDATE_TICKET_FIELDS,
};
use crate::gleap::model::{Field, check_body};

/// Drops the connection a request came in on (set by the server for each connection).
#[derive(Clone)]
pub struct ConnectionKill(pub Arc<Notify>);

/// Everything behind the API.
pub struct App {
    pub api_key: String,
    pub project: String,
    pub retry_after: bool,
    pub quirks: Quirks,
    pub clock: Arc<dyn Clock>,
    pub shared: Mutex<Shared>,
    /// Set by every write; cleared when `--data` is saved.
    pub dirty: AtomicBool,
    /// Called after every request the API carried out, with how many it has carried out.
    pub on_request: Option<RequestHook>,
    pub handled: std::sync::atomic::AtomicU64,
}

/// A test's view of requests as they are carried out (to kill a client at a chosen moment).
pub type RequestHook = Arc<dyn Fn(u64) + Send + Sync>;

/// What requests change, under one lock.
pub struct Shared {
    pub store: Store,
    pub quota: QuotaWindow,
    pub faults: Faults,
    pub stats: Stats,
    /// Files uploaded to `/uploads`.
    pub uploads: super::uploads::Uploads,
}

impl App {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The counters, with entity counts and sessions that share a userId.
    pub fn stats(&self) -> Value {
        let shared = self.lock();
        let mut stats = serde_json::to_value(&shared.stats).expect("stats are JSON");
        let entities: serde_json::Map<String, Value> = Kind::ALL
            .iter()
            .map(|k| (k.name().to_string(), Value::from(shared.store.count(*k))))
            .collect();
        let (shared_count, examples) = shared.store.shared_user_ids();
        stats["entities"] = Value::Object(entities);
        stats["help_centre"] = shared.store.help.counts();
        stats["sessions_sharing_a_user_id"] =
            json!({"user_ids": shared_count, "examples": examples});
        let (late, tickets, examples) = shared.store.messages_out_of_order();
        stats["messages_out_of_order"] = json!(late);
        stats["tickets_out_of_order"] = json!({"tickets": tickets, "examples": examples});
        stats["quirks"] = json!(self.quirks.describe());
        stats["uploads"] = shared.uploads.stats();
        stats
    }

    /// The files uploaded, without their bytes.
    pub fn uploads(&self) -> Value {
        self.lock().uploads.list()
    }

    pub fn dump(&self) -> Value {
        self.lock().store.dump()
    }

    /// Updates `n` sessions now (see `Store::touch_sessions`); their ids.
    pub fn touch_sessions(&self, n: usize) -> Vec<String> {
        let now = self.clock.now();
        let ids = self.lock().store.touch_sessions(now, n);
        self.dirty.store(true, Ordering::Relaxed);
        ids
    }

    /// Sets fields of a session unchecked (see `Emulator::set_session_fields`).
    pub fn set_session_fields(&self, id: &str, fields: super::store::Doc) -> bool {
        let now = self.clock.now();
        let set = self.lock().store.set_session_fields(now, id, fields);
        self.dirty.store(true, Ordering::Relaxed);
        set
    }

    /// Swaps two messages of a ticket's conversation (see `Emulator::swap_messages`).
    pub fn swap_messages(&self, ticket: &str, a: usize, b: usize) -> bool {
        let swapped = self.lock().store.swap_messages(ticket, a, b);
        self.dirty.store(true, Ordering::Relaxed);
        swapped
    }

    fn handled(&self, _route: &str) {
        let n = self.handled.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(hook) = &self.on_request {
            hook(n);
        }
    }
}

pub fn router(app: Arc<App>) -> Router {
    let api = Router::new()
        .route("/sessions", post(create_session).get(list_sessions))
        .route("/sessions/by-user-id/{userId}", get(session_by_user_id))
        .route(
            "/sessions/{id}",
            get(get_session).put(update_session).delete(delete_session),
        )
        .route("/tickets", post(create_ticket).get(list_tickets))
        .route(
            "/tickets/{id}",
            get(get_ticket).put(update_ticket).delete(delete_ticket),
        )
        .route("/tickets/{id}/archive", axum::routing::put(archive_ticket))
        .route(
            "/tickets/{id}/unarchive",
            axum::routing::put(unarchive_ticket),
        )
        .route("/messages", post(create_message).get(list_messages))
        .route(
            "/messages/{id}",
            axum::routing::put(update_message).delete(delete_message),
        )
        .merge(super::helpcentre::routes())
        .route("/projects/users", get(list_team))
        .route_layer(middleware::from_fn_with_state(app.clone(), gate));
    // Gleap's upload endpoint is beside the API, not under /v3; the same gate.
    let uploads = Router::new()
        .route("/uploads", post(super::uploads::upload))
        .route_layer(middleware::from_fn_with_state(app.clone(), gate))
        .layer(axum::extract::DefaultBodyLimit::max(256 << 20))
        .route("/uploads/files/{id}/{name}", get(super::uploads::download));
    Router::new()
        .nest("/v3", api)
        .merge(uploads)
        .route(
            "/__emulator/stats",
            get(|State(app): State<Arc<App>>| async move { axum::Json(app.stats()) }),
        )
        .route(
            "/__emulator/dump",
            get(|State(app): State<Arc<App>>| async move { axum::Json(app.dump()) }),
        )
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "Not found: the emulator serves /v3/sessions, /v3/tickets, /v3/messages, /v3/helpcenter/collections and /uploads",
            )
        })
        .with_state(app)
}

pub(super) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "message": message.into() }))).into_response()
}

/// Auth, quota, latency and faults, in that order, for every `/v3` request.
async fn gate(
    State(app): State<Arc<App>>,
    matched: MatchedPath,
    request: Request,
    next: Next,
) -> Response {
    let route = format!(
        "{} {}",
        request.method(),
        matched.as_str().trim_start_matches("/v3")
    );
    let headers = request.headers();
    let key_ok = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|k| k == app.api_key);
    if !key_ok {
        let mut shared = app.lock();
        shared.stats.unauthorized += 1;
        shared.stats.record(&route, "401");
        return error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized: a valid API key is needed (Authorization: Bearer <key>)",
        );
    }
    let project_ok = headers
        .get("project")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p == app.project);
    if !project_ok {
        let mut shared = app.lock();
        shared.stats.forbidden += 1;
        shared.stats.record(&route, "403");
        return error(
            StatusCode::FORBIDDEN,
            "Forbidden: the `project` header must name this key's project",
        );
    }

    let now_ms = app.clock.now().timestamp_millis();
    let (fault, latency) = {
        let mut shared = app.lock();
        if let Err(wait) = shared.quota.admit(now_ms) {
            shared.stats.rate_limited += 1;
            shared.stats.record(&route, "429");
            drop(shared);
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests: the project's rate limit is reached",
            );
            if app.retry_after {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            }
            return response;
        }
        shared.faults.draw()
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let kill = request.extensions().get::<ConnectionKill>().cloned();
    match fault {
        Fault::None => {
            let response = next.run(request).await;
            app.lock().stats.record(&route, response.status().as_str());
            app.handled(&route);
            response
        }
        Fault::Error(code) => {
            let mut shared = app.lock();
            shared.stats.faults.errors += 1;
            shared.stats.record(&route, &code.to_string());
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            error(
                status,
                "Injected fault: the emulator answered with a server error",
            )
        }
        Fault::Reset | Fault::Lost => {
            if fault == Fault::Lost {
                // The write happens; the answer never arrives.
                let _ = next.run(request).await;
                app.handled(&route);
            }
            {
                let mut shared = app.lock();
                if fault == Fault::Lost {
                    shared.stats.faults.lost_responses += 1;
                    shared.stats.record(&route, "lost");
                } else {
                    shared.stats.faults.resets += 1;
                    shared.stats.record(&route, "reset");
                }
            }
            match kill {
                Some(ConnectionKill(notify)) => {
                    notify.notify_one();
                    std::future::pending::<Response>().await
                }
                None => error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Injected fault (no connection to drop)",
                ),
            }
        }
    }
}

/// A JSON object body, checked against a field table: unknown fields are dropped (and
/// counted), wrong types are a 400.
fn body(app: &App, entity: &str, fields: &[Field], bytes: &Bytes) -> Result<Doc, Box<Response>> {
    let bad = |message: String| Box::new(error(StatusCode::BAD_REQUEST, message));
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("Invalid JSON body: {e}")))?;
    let Value::Object(object) = value else {
        return Err(bad("The body must be a JSON object".into()));
    };
    let checked = check_body(fields, object).map_err(|e| bad(format!("Validation failed: {e}")))?;
    if !checked.dropped.is_empty() {
        app.lock().stats.dropped(entity, &checked.dropped);
    }
    Ok(checked.body)
}

fn answer(result: Result<Value, StoreError>) -> Response {
    match result {
        Ok(v) => axum::Json(v).into_response(),
        Err(StoreError::NotFound(m)) => error(StatusCode::NOT_FOUND, m),
        Err(StoreError::BadRequest(m)) => error(StatusCode::BAD_REQUEST, m),
    }
}

pub(super) fn written(app: &App) {
    app.dirty.store(true, Ordering::Relaxed);
}

async fn create_session(State(app): State<Arc<App>>, bytes: Bytes) -> Response {
    let doc = match body(&app, "sessions", SESSION_FIELDS, &bytes) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let now = app.clock.now();
    let created = app.lock().store.create_session(now, doc);
    written(&app);
    axum::Json(created).into_response()
}

async fn create_ticket(State(app): State<Arc<App>>, bytes: Bytes) -> Response {
    let doc = match body(&app, "tickets", CREATE_TICKET_FIELDS, &bytes) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let now = app.clock.now();
    let result = app.lock().store.create_ticket(now, doc);
    written(&app);
    answer(result)
}

async fn create_message(
    State(app): State<Arc<App>>,
    headers: axum::http::HeaderMap,
    bytes: Bytes,
) -> Response {
    let seq = headers
        .get(crate::gleap::client::SEQ_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let doc = match body(&app, "messages", CREATE_MESSAGE_FIELDS, &bytes) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let notifies = doc.get("isNote") != Some(&Value::Bool(true))
        && doc.get("session").is_none_or(Value::is_null)
        && doc.get("sendToChannel") != Some(&Value::Bool(false));
    let now = app.clock.now();
    let mut shared = app.lock();
    let result = shared.store.create_message(now, doc, seq);
    if result.is_ok() && notifies {
        shared.stats.customer_notifications += 1;
    }
    drop(shared);
    written(&app);
    answer(result)
}

async fn update(app: Arc<App>, kind: Kind, fields: &[Field], id: String, bytes: Bytes) -> Response {
    let doc = match body(&app, kind.name(), fields, &bytes) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let now = app.clock.now();
    let result = app.lock().store.update(kind, &id, now, doc);
    written(&app);
    answer(result)
}

async fn update_session(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Response {
    update(app, Kind::Sessions, SESSION_FIELDS, id, bytes).await
}

async fn update_ticket(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Response {
    update(app, Kind::Tickets, UPDATE_TICKET_FIELDS, id, bytes).await
}

/// `PUT /tickets/{id}/archive` and `/unarchive` (Gleap's spec: `ArchiveTicket`,
/// `UnarchiveTicket`, no body): set `archived` (and `archivedAt`).
async fn archive_ticket(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    set_archived(&app, &id, true)
}

async fn unarchive_ticket(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    set_archived(&app, &id, false)
}

fn set_archived(app: &Arc<App>, id: &str, archived: bool) -> Response {
    let now = app.clock.now();
    let mut doc = super::store::Doc::new();
    doc.insert("archived".into(), Value::Bool(archived));
    doc.insert(
        "archivedAt".into(),
        if archived {
            Value::String(crate::record::format_timestamp(&now))
        } else {
            Value::Null
        },
    );
    let result = app.lock().store.update(Kind::Tickets, id, now, doc);
    written(app);
    answer(result)
}

async fn update_message(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Response {
    update(app, Kind::Messages, CREATE_MESSAGE_FIELDS, id, bytes).await
}

async fn delete_session(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    delete(&app, Kind::Sessions, &id)
}

/// `DELETE /tickets/{id}` answers 200 `{}` (Gleap's spec), the others 204.
async fn delete_ticket(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    delete(&app, Kind::Tickets, &id)
}

async fn delete_message(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    delete(&app, Kind::Messages, &id)
}

fn delete(app: &App, kind: Kind, id: &str) -> Response {
    let result = app.lock().store.delete(kind, id);
    written(app);
    match result {
        Ok(()) if kind == Kind::Tickets => axum::Json(json!({})).into_response(),
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => answer(Err(e)),
    }
}

async fn get_session(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    answer(app.lock().store.get(Kind::Sessions, &id))
}

async fn get_ticket(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    answer(app.lock().store.get(Kind::Tickets, &id))
}

async fn session_by_user_id(State(app): State<Arc<App>>, Path(user_id): Path<String>) -> Response {
    answer(app.lock().store.session_by_user_id(&user_id))
}

/// A list's answer: its page, and for GET /tickets `{tickets, count, totalCount}` (only it
/// answers how many match in all, and counting can take longer than the page). Serialized
/// under the lock, so that sessions are written from the store without a copy.
fn list(app: &App, kind: Kind, raw: Option<String>) -> Response {
    let mut q = match query::parse(raw.as_deref()) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    app.quirks.apply(&mut q);
    if kind == Kind::Messages {
        // Gleap answers messages in conversation order whatever `sort` asks (tmcinerney/gleap
        // commit 617ecce).
        q.sort = None;
    }
    let mut shared = app.lock();
    if kind == Kind::Sessions && !app.quirks.index_lag.is_zero() {
        q.hidden = shared.store.hidden_sessions(app.clock.now());
    }
    let store = &shared.store;
    let (page, total) = store.list(kind, &q, kind == Kind::Tickets);
    let body = match kind {
        // A session renders as stored.
        Kind::Sessions => serde_json::to_vec(&page),
        Kind::Messages => serde_json::to_vec(
            &page
                .iter()
                .map(|d| store.render_doc(kind, d))
                .collect::<Vec<_>>(),
        ),
        Kind::Tickets => serde_json::to_vec(&json!({
            "tickets": page.iter().map(|d| store.render_doc(kind, d)).collect::<Vec<_>>(),
            "count": page.len(),
            "totalCount": total.expect("asked for"),
        })),
    };
    drop(shared);
    match body {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `GET /projects/users`: the project's team members.
async fn list_team(State(app): State<Arc<App>>) -> Response {
    axum::Json(app.lock().store.team()).into_response()
}

async fn list_sessions(State(app): State<Arc<App>>, RawQuery(raw): RawQuery) -> Response {
    list(&app, Kind::Sessions, raw)
}

async fn list_tickets(State(app): State<Arc<App>>, RawQuery(raw): RawQuery) -> Response {
    list(&app, Kind::Tickets, raw)
}

async fn list_messages(State(app): State<Arc<App>>, RawQuery(raw): RawQuery) -> Response {
    list(&app, Kind::Messages, raw)
}
