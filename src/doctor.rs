//! `gleap-etl doctor`: checks a real Gleap project against what gleap-etl assumes about it,
//! before a migration, in at most [`MAX_REQUESTS`] requests. Gleap's spec leaves most of
//! its answers and list parameters undocumented, and our emulator is only a guess: so this
//! asks the project itself. It reads the shape of each list and object answer (id fields,
//! wrappers, where a message's text is), tries whether `limit`, `skip`, `sort` and the
//! filters gleap-etl uses are applied, how long a new session takes to show in lists, what
//! `by-user-id` answers for an unknown user and what a second `POST /sessions` with the same
//! `userId` does, and which rate-limit headers come back. It creates one clearly named probe
//! session (and, to see what a second create does, perhaps another), a ticket and an
//! internal note (`customData.gleapEtlProbe`), reads them back and deletes them.
//!
//! Each finding is an assumption, what was observed, and what gleap-etl will do about it;
//! `fail` where a migration would go wrong. `--record DIR` keeps every raw answer, with the
//! key, e-mail addresses, names and the project id redacted, for a bug report (and for us to
//! turn into fixtures).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use reqwest::Method;
use serde::Serialize;
use serde_json::{Value, json};

use crate::gleap::answer;
use crate::gleap::client::{Answer, CallError, GleapClient, RequestCounters};

/// The most requests a doctor run makes (retries included); the clean-up always runs.
pub const MAX_REQUESTS: u64 = 40;
/// Requests kept back for the clean-up.
const CLEANUP_REQUESTS: u64 = 4;
/// How long a new session is waited for in a list.
const LAG_WAIT: Duration = Duration::from_secs(8);

/// How an assumption fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// It holds.
    Ok,
    /// It does not hold; gleap-etl copes (at some cost, or for some pipelines only).
    Warn,
    /// It does not hold and a migration would go wrong (stop with an error, or worse).
    Fail,
    /// It could not be observed in this project.
    Unknown,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Unknown => "?",
        }
    }
}

/// One assumption checked.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// A short name: `sessions.list`, `filter.customData.importId`, `index_lag`...
    pub check: &'static str,
    pub status: Status,
    pub assumption: &'static str,
    pub observed: String,
    /// What gleap-etl does about it.
    pub gleap_etl: String,
}

/// What a doctor run found.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    pub base_url: String,
    /// The probe's name, in every record it created (`customData.gleapEtlProbe`).
    pub probe: String,
    pub requests: u64,
    pub findings: Vec<Finding>,
    /// Probe records that could not be deleted (`sessions/<id>`...).
    pub left_behind: Vec<String>,
}

impl DoctorReport {
    /// Whether a migration would go wrong.
    pub fn failed(&self) -> bool {
        self.findings.iter().any(|f| f.status == Status::Fail)
    }

    pub fn finding(&self, check: &str) -> Option<&Finding> {
        self.findings.iter().find(|f| f.check == check)
    }

    /// The table `doctor` prints: one row per assumption.
    pub fn table(&self) -> String {
        let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
        let mut out = format!(
            "gleap-etl doctor: {} ({} requests, probe {})\n\n| | check | assumption | observed | gleap-etl will |\n|---|---|---|---|---|\n",
            self.base_url, self.requests, self.probe
        );
        for f in &self.findings {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                f.status.label(),
                f.check,
                cell(f.assumption),
                cell(&f.observed),
                cell(&f.gleap_etl)
            ));
        }
        let count = |s: Status| self.findings.iter().filter(|f| f.status == s).count();
        out.push_str(&format!(
            "\n{} ok, {} warnings, {} failures, {} not observable.{}\n",
            count(Status::Ok),
            count(Status::Warn),
            count(Status::Fail),
            count(Status::Unknown),
            if self.failed() {
                " A migration into this project would go wrong where it says FAIL."
            } else {
                ""
            }
        ));
        if !self.left_behind.is_empty() {
            out.push_str(&format!(
                "Could not delete the probe's {}: delete them in Gleap (customData.gleapEtlProbe = {}).\n",
                self.left_behind.join(", "),
                self.probe
            ));
        }
        out
    }
}

/// How to run the checks.
#[derive(Debug, Clone, Default)]
pub struct DoctorOptions {
    /// Save every raw answer here, redacted.
    pub record: Option<PathBuf>,
    /// How long look-ups through lists keep looking after a lost answer
    /// (`gleap: lookup_settle_secs`).
    pub lookup_settle: Duration,
}

/// Saves exchanges, redacted.
struct Recorder {
    dir: PathBuf,
    secrets: Vec<String>,
    count: usize,
}

impl Recorder {
    fn save(
        &mut self,
        label: &str,
        request: Value,
        answer: &Result<Answer, CallError>,
    ) -> std::io::Result<()> {
        self.count += 1;
        let response = match answer {
            Ok(a) => {
                let headers: serde_json::Map<String, Value> = a
                    .headers
                    .iter()
                    .filter(|(k, _)| interesting_header(k.as_str()))
                    .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or("<binary>"))))
                    .collect();
                json!({"status": a.status, "headers": headers, "body": a.body})
            }
            Err(CallError::Rejected { status, message }) => {
                json!({"status": status, "body": {"message": message}})
            }
            Err(e) => json!({"error": e.to_string()}),
        };
        let exchange = redact(
            &json!({"request": request, "response": response}),
            &self.secrets,
        );
        let path = self
            .dir
            .join(format!("{:02}-{}.json", self.count, file_label(label)));
        let mut bytes = serde_json::to_vec_pretty(&exchange).expect("JSON");
        bytes.push(b'\n');
        std::fs::write(path, bytes)
    }
}

fn file_label(label: &str) -> String {
    label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// Headers worth keeping: rate limits, retry hints, content type.
fn interesting_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.contains("ratelimit")
        || name.contains("rate-limit")
        || name == "retry-after"
        || name == "content-type"
}

/// A value with secrets, e-mail addresses and names replaced.
pub fn redact(value: &Value, secrets: &[String]) -> Value {
    const NAME_KEYS: [&str; 6] = [
        "name",
        "firstName",
        "lastName",
        "username",
        "fullName",
        "displayName",
    ];
    match value {
        Value::String(s) => {
            let mut s = s.clone();
            for secret in secrets.iter().filter(|x| !x.is_empty()) {
                s = s.replace(secret.as_str(), "<redacted>");
            }
            Value::String(
                s.split(' ')
                    .map(|word| {
                        if word.contains('@') && word.contains('.') {
                            "redacted@example.com"
                        } else {
                            word
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(" "),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| redact(v, secrets)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| {
                    let v = if NAME_KEYS.contains(&k.as_str()) && v.is_string() {
                        json!("<redacted name>")
                    } else {
                        redact(v, secrets)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A running doctor.
struct Doctor<'a> {
    client: &'a GleapClient,
    counters: RequestCounters,
    recorder: Option<Recorder>,
    findings: Vec<Finding>,
    rate_headers: std::collections::BTreeMap<String, String>,
    settle: Duration,
}

/// What the probe created, to delete.
#[derive(Default)]
struct Created {
    sessions: Vec<String>,
    ticket: Option<String>,
    message: Option<String>,
}

impl Doctor<'_> {
    fn requests(&self) -> u64 {
        self.counters.requests.load(Ordering::Relaxed)
    }

    /// Whether the budget leaves room for `n` more requests besides the clean-up.
    fn room_for(&self, n: u64) -> bool {
        self.requests() + n + CLEANUP_REQUESTS <= MAX_REQUESTS
    }

    fn note(
        &mut self,
        check: &'static str,
        status: Status,
        assumption: &'static str,
        observed: impl Into<String>,
        gleap_etl: impl Into<String>,
    ) {
        self.findings.push(Finding {
            check,
            status,
            assumption,
            observed: observed.into(),
            gleap_etl: gleap_etl.into(),
        });
    }

    async fn send(
        &mut self,
        label: &str,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<Answer, CallError> {
        let reserve = if method == Method::DELETE {
            0
        } else {
            CLEANUP_REQUESTS
        };
        if self.requests() + reserve >= MAX_REQUESTS {
            return Err(CallError::GaveUp(format!(
                "not sent: doctor makes at most {MAX_REQUESTS} requests"
            )));
        }
        let create = method == Method::POST;
        let answer = self
            .client
            .call(
                method.clone(),
                path,
                query,
                body.as_ref(),
                create,
                &self.counters,
            )
            .await;
        if let Ok(a) = &answer {
            for (k, v) in a.headers.iter() {
                if interesting_header(k.as_str()) && k.as_str() != "content-type" {
                    self.rate_headers
                        .insert(k.to_string(), v.to_str().unwrap_or("<binary>").to_string());
                }
            }
        }
        if let Some(recorder) = &mut self.recorder {
            let request = json!({
                "method": method.as_str(),
                "path": path,
                "query": query.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
                "body": body,
            });
            if let Err(e) = recorder.save(label, request, &answer) {
                tracing::warn!("doctor --record: {e}");
            }
        }
        answer
    }

    async fn get(&mut self, label: &str, path: &str, query: &[(&str, &str)]) -> Option<Answer> {
        self.send(label, Method::GET, path, query, None).await.ok()
    }

    /// A list answer's items, or `None` (not a list, or no answer).
    async fn list(
        &mut self,
        label: &str,
        path: &str,
        query: &[(&str, &str)],
    ) -> Option<Vec<Value>> {
        let answer = self.get(label, path, query).await?;
        if answer.status == 404 {
            return Some(Vec::new());
        }
        answer::list(answer.body).ok().map(|p| p.items)
    }
}

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .filter_map(|d| answer::id(d).map(str::to_string))
        .collect()
}

/// A value as JSON, cut at 120 characters.
fn short_json(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(120) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}

/// Which id fields a document carries.
fn id_fields(doc: &Value) -> String {
    let has = |k: &str| {
        doc.get(k)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    };
    match (has("_id"), has("id")) {
        (true, true) => "`_id` and `id`".into(),
        (true, false) => "`_id` only".into(),
        (false, true) => "`id` only".into(),
        (false, false) => "neither `id` nor `_id`".into(),
    }
}

/// How a list answer came: a bare array or a wrapper.
fn list_form(body: &Value) -> String {
    match body {
        Value::Array(a) => format!("a bare array ({} records)", a.len()),
        Value::Object(o) => {
            let keys: Vec<&str> = o.keys().map(String::as_str).collect();
            format!("an object with {}", keys.join(", "))
        }
        other => crate::record::kind_of(other).to_string(),
    }
}

/// The `createdAt` of each record.
fn times(items: &[Value]) -> Vec<Option<&str>> {
    items
        .iter()
        .map(|d| d.get("createdAt").and_then(Value::as_str))
        .collect()
}

/// Runs every check against the project behind `client`, then deletes what it created.
pub async fn examine(
    client: &GleapClient,
    options: &DoctorOptions,
) -> std::io::Result<DoctorReport> {
    let probe = format!("gleap-etl-doctor-{:08x}", fastrand::u32(..));
    let recorder = match &options.record {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            Some(Recorder {
                dir: dir.clone(),
                secrets: vec![
                    client.settings().api_key.expose().to_string(),
                    client.settings().project.clone(),
                ],
                count: 0,
            })
        }
        None => None,
    };
    let mut d = Doctor {
        client,
        counters: RequestCounters::default(),
        recorder,
        findings: Vec::new(),
        rate_headers: Default::default(),
        settle: options.lookup_settle,
    };
    let mut created = Created::default();
    checks(&mut d, &probe, &mut created).await;
    let left_behind = clean_up(&mut d, &created).await;
    let rate = if d.rate_headers.is_empty() {
        "none".to_string()
    } else {
        d.rate_headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    d.note(
        "rate_limit",
        Status::Ok,
        "1000 requests per 60 s per project, 429 past it (no headers documented)",
        format!("rate-limit headers: {rate}"),
        format!(
            "paces at 98.5% of requests_per_minute ({} now) and pauses every sender on a 429 until its Retry-After",
            client.settings().requests_per_minute
        ),
    );
    Ok(DoctorReport {
        base_url: client.settings().base_url.clone(),
        probe,
        requests: d.requests(),
        findings: d.findings,
        left_behind,
    })
}

async fn checks(d: &mut Doctor<'_>, probe: &str, created: &mut Created) {
    // Auth, project and the sessions list.
    match d
        .send("auth", Method::GET, "/sessions", &[("limit", "1")], None)
        .await
    {
        Ok(a) => {
            let form = list_form(&a.body);
            let ok = answer::list(a.body).is_ok();
            d.note(
                "auth",
                Status::Ok,
                "the key (Authorization: Bearer) and the `project` header are accepted",
                format!("GET /sessions answered {}", a.status),
                "sends both with every request",
            );
            d.note(
                "sessions.list",
                if ok { Status::Ok } else { Status::Fail },
                "GET /sessions answers a list (a bare array, per the spec)",
                form,
                "reads a bare array or a list under items, sessions, tickets or messages",
            );
            if !ok {
                return;
            }
        }
        Err(e) => {
            d.note(
                "auth",
                Status::Fail,
                "the key (Authorization: Bearer) and the `project` header are accepted",
                e.to_string(),
                "cannot run: check GLEAP_API_KEY and GLEAP_PROJECT_ID",
            );
            return;
        }
    }

    // The probe session.
    let user_id = probe.to_string();
    let email = format!("{probe}@gleap-etl.invalid");
    let session_body = json!({
        "userId": user_id,
        "email": email,
        "name": "gleap-etl doctor probe (safe to delete)",
        "customData": {"gleapEtlProbe": probe},
    });
    let a = match d
        .send(
            "create-session",
            Method::POST,
            "/sessions",
            &[],
            Some(session_body.clone()),
        )
        .await
    {
        Ok(a) => a,
        Err(e) => {
            d.note(
                "sessions.create",
                Status::Fail,
                "POST /sessions creates a session and answers it",
                e.to_string(),
                "cannot create contacts: the checks stop here",
            );
            return;
        }
    };
    let Some(session_id) = answer::id(&a.body).map(str::to_string) else {
        d.note(
            "sessions.ids",
            Status::Fail,
            "a session is answered with `_id` or `id`",
            format!("POST /sessions answered {}", short_json(&a.body)),
            "cannot map contacts without their ids",
        );
        return;
    };
    created.sessions.push(session_id.clone());
    d.note(
        "sessions.ids",
        Status::Ok,
        "a session is answered with `_id` or `id`",
        id_fields(&a.body),
        "reads `id`, else `_id`",
    );

    // Found by userId at once; an unknown userId is "not found".
    let path = format!("/sessions/by-user-id/{user_id}");
    if let Some(a) = d.get("by-user-id", &path, &[]).await {
        let found = answer::found(a.status, a.body.clone());
        let (status, observed) = match &found {
            Some(doc) if answer::id(doc) == Some(session_id.as_str()) => {
                (Status::Ok, "found it at once".to_string())
            }
            Some(doc) => (
                Status::Fail,
                format!(
                    "answered another session ({})",
                    answer::id(doc).unwrap_or("?")
                ),
            ),
            None => (
                Status::Fail,
                format!("not found right after it was created ({})", a.status),
            ),
        };
        d.note(
            "by_user_id",
            status,
            "GET /sessions/by-user-id/{userId} finds a session created moments ago",
            observed,
            "looks a contact up by userId before creating it when an answer was lost or a run was killed",
        );
    }
    let path = format!("/sessions/by-user-id/{user_id}-absent");
    if let Some(a) = d.get("by-user-id-unknown", &path, &[]).await {
        let observed = format!(
            "{} {}",
            a.status,
            match &a.body {
                Value::Null => "with an empty body".to_string(),
                other => format!("with {}", short_json(other)),
            }
        );
        let status = if answer::found(a.status, a.body).is_none() {
            Status::Ok
        } else {
            Status::Fail
        };
        d.note(
            "by_user_id.unknown",
            status,
            "GET /sessions/by-user-id answers 404 or no session for an unknown userId",
            observed,
            "takes a 404, an empty body or an answer without an id as not found",
        );
    }

    // A second POST with the same userId.
    match d
        .send(
            "create-session-again",
            Method::POST,
            "/sessions",
            &[],
            Some(session_body),
        )
        .await
    {
        Ok(a) => {
            let again = answer::id(&a.body).map(str::to_string);
            let observed = match &again {
                Some(id) if *id == session_id => "updated the same session (an upsert)".to_string(),
                Some(id) => {
                    created.sessions.push(id.clone());
                    "made a second session with the same userId".to_string()
                }
                None => format!("answered {}", short_json(&a.body)),
            };
            d.note(
                "sessions.create_twice",
                Status::Ok,
                "POST /sessions is not documented to upsert: a second one with the same userId may make a second contact",
                observed,
                "never posts a userId it can find: prefetches, or looks up by userId, before creating",
            );
        }
        Err(e) => d.note(
            "sessions.create_twice",
            Status::Unknown,
            "POST /sessions is not documented to upsert: a second one with the same userId may make a second contact",
            e.to_string(),
            "never posts a userId it can find: prefetches, or looks up by userId, before creating",
        ),
    }

    // How late a new session shows in lists: asked by its userId, or (where that filter is
    // ignored) among the newest sessions.
    let started = std::time::Instant::now();
    let mut pause = Duration::from_millis(250);
    let mut visible = None;
    let mut not_yet = Duration::ZERO;
    let mut user_filter_ignored = false;
    loop {
        let asked = started.elapsed();
        let query: &[(&str, &str)] = if user_filter_ignored {
            &[("sort", "-createdAt"), ("limit", "10")]
        } else {
            &[("userId", &user_id), ("limit", "10")]
        };
        let Some(items) = d.list("list-new-session", "/sessions", query).await else {
            break;
        };
        if !user_filter_ignored
            && items
                .iter()
                .any(|s| s.get("userId").and_then(Value::as_str) != Some(user_id.as_str()))
        {
            // This answer says nothing about the lag: ask the other way at once.
            user_filter_ignored = true;
            continue;
        }
        if ids(&items).contains(&session_id) {
            visible = Some(asked);
            break;
        }
        not_yet = asked;
        if started.elapsed() + pause > LAG_WAIT || !d.room_for(8) {
            break;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
    let settle = d.settle;
    let secs = |t: Duration| t.as_secs_f64();
    let (status, observed) = match visible {
        Some(t) if t < Duration::from_millis(200) => (Status::Ok, "at once".to_string()),
        Some(t) => (
            if t <= settle {
                Status::Warn
            } else {
                Status::Fail
            },
            format!(
                "not yet after {:.2} s, shown after {:.2} s",
                secs(not_yet),
                secs(t)
            ),
        ),
        None => (
            Status::Fail,
            format!("not shown within {:.1} s", secs(started.elapsed())),
        ),
    };
    d.note(
        "index_lag",
        status,
        "a new session shows in GET /sessions lists at once",
        observed,
        format!(
            "looks up contacts by userId (not through lists); a look-up by email after a lost answer keeps looking for lookup_settle_secs ({:.0} s), so a longer lag could make a contact twice",
            settle.as_secs_f64()
        ),
    );

    // Filters: each must leave out what does not match.
    let absent_user = format!("{user_id}-absent");
    if let Some(items) = d
        .list(
            "filter-user-id-absent",
            "/sessions",
            &[("userId", &absent_user), ("limit", "5")],
        )
        .await
    {
        user_filter_ignored |= !items.is_empty();
        d.note(
            "filter.userId",
            if user_filter_ignored {
                Status::Warn
            } else {
                Status::Ok
            },
            "GET /sessions?userId=X answers only sessions with that userId",
            if user_filter_ignored {
                "answered sessions with other userIds: ignored"
            } else {
                "applied"
            },
            "does not rely on it: contacts are found with by-user-id",
        );
    }
    let mut email_ignored = false;
    if let Some(items) = d
        .list(
            "filter-email",
            "/sessions",
            &[("email", &email), ("limit", "10")],
        )
        .await
    {
        email_ignored |= items.iter().any(|s| {
            s.get("email")
                .and_then(Value::as_str)
                .is_none_or(|e| !e.eq_ignore_ascii_case(&email))
        });
    }
    let absent_email = format!("absent-{email}");
    if let Some(items) = d
        .list(
            "filter-email-absent",
            "/sessions",
            &[("email", &absent_email), ("limit", "5")],
        )
        .await
    {
        email_ignored |= !items.is_empty();
        d.note(
            "filter.email",
            if email_ignored { Status::Warn } else { Status::Ok },
            "GET /sessions?email=X answers only sessions with that e-mail",
            if email_ignored {
                "answered other sessions: ignored"
            } else {
                "applied"
            },
            "pipelines keyed by email look contacts up with it and stop with an error, rather than create one twice, when it is ignored",
        );
    }
    let future = "2999-01-01T00:00:00.000Z";
    if let Some(items) = d
        .list(
            "filter-updated-at",
            "/sessions",
            &[("updatedAt>", future), ("limit", "5")],
        )
        .await
    {
        d.note(
            "filter.updatedAt",
            if items.is_empty() { Status::Ok } else { Status::Fail },
            "GET /sessions?updatedAt>=T leaves out what changed before T",
            if items.is_empty() {
                "applied".to_string()
            } else {
                format!("answered {} sessions changed before {future}: ignored", items.len())
            },
            "exports read windows of updatedAt/createdAt; where the range filter is ignored they stop with an error",
        );
    }

    // limit, sort and skip on sessions.
    let asc = d
        .list(
            "sort-ascending",
            "/sessions",
            &[("sort", "createdAt"), ("limit", "2")],
        )
        .await
        .unwrap_or_default();
    d.note(
        "limit",
        if asc.len() <= 2 {
            Status::Ok
        } else {
            Status::Fail
        },
        "a list answers at most `limit` records",
        format!("limit=2 answered {}", asc.len()),
        "stops with an error on a page longer than asked",
    );
    if asc.len() == 2 && d.room_for(2) {
        let desc = d
            .list(
                "sort-descending",
                "/sessions",
                &[("sort", "-createdAt"), ("limit", "2")],
            )
            .await
            .unwrap_or_default();
        let (a, z) = (times(&asc), times(&desc));
        let sorted = a.windows(2).all(|w| w[0] <= w[1])
            && z.windows(2).all(|w| w[0] >= w[1])
            && a.first() <= z.first();
        d.note(
            "sort",
            if sorted { Status::Ok } else { Status::Fail },
            "GET /sessions?sort=createdAt / -createdAt answers in that order",
            if sorted {
                "applied".to_string()
            } else {
                format!("ascending {a:?}, descending {z:?}: not applied")
            },
            "exports page by time and stop with an error on records out of order",
        );
        let skipped = d
            .list(
                "skip",
                "/sessions",
                &[("sort", "createdAt"), ("limit", "2"), ("skip", "1")],
            )
            .await
            .unwrap_or_default();
        let (status, observed) = match (ids(&asc).get(1), ids(&skipped).first()) {
            (Some(second), Some(first)) if second == first => (Status::Ok, "applied".to_string()),
            (_, Some(first)) if ids(&asc).first() == Some(first) => (
                Status::Warn,
                "skip=1 answered the same page as skip=0: ignored".to_string(),
            ),
            (_, None) => (Status::Unknown, "skip=1 answered nothing".to_string()),
            _ => (
                Status::Warn,
                "skip=1 answered another page than expected".to_string(),
            ),
        };
        d.note(
            "skip",
            status,
            "GET /sessions?skip=N leaves out the first N records",
            observed,
            "pages exports by time, needing skip only where more than a page share one timestamp; a list longer than a page that can only be read by skip (a prefetch, a ticket's messages) stops with an error, and a prefetch that stops looks each contact up instead",
        );
    } else {
        d.note(
            "sort",
            Status::Unknown,
            "GET /sessions?sort=createdAt / -createdAt answers in that order",
            "fewer than two sessions to compare",
            "exports page by time and stop with an error on records out of order",
        );
    }

    // The largest page.
    if d.room_for(2) {
        let page = d
            .list(
                "page-size",
                "/sessions",
                &[("sort", "createdAt"), ("limit", "1000")],
            )
            .await
            .unwrap_or_default();
        let n = page.len();
        let (status, observed) = if n >= 1000 {
            (
                if n > 1000 { Status::Fail } else { Status::Ok },
                format!("limit=1000 answered {n}"),
            )
        } else {
            let skip = n.to_string();
            let next = d
                .list(
                    "page-size-next",
                    "/sessions",
                    &[("sort", "createdAt"), ("limit", "1000"), ("skip", &skip)],
                )
                .await
                .unwrap_or_default();
            let first_ids = ids(&page);
            let repeated = ids(&next).iter().any(|id| first_ids.contains(id));
            match (next.is_empty(), repeated) {
                (true, _) => (
                    Status::Ok,
                    format!("limit=1000 answered all {n} sessions of the project"),
                ),
                (false, true) => (
                    Status::Unknown,
                    format!(
                        "limit=1000 answered {n}, and skip={n} the same records again (skip ignored)"
                    ),
                ),
                (false, false) => (
                    Status::Warn,
                    format!("limit=1000 answered {n} while more followed: pages hold at most {n}"),
                ),
            }
        };
        d.note(
            "page_size",
            status,
            "a list answers up to `limit` records (1000) while more remain",
            observed,
            "takes a short page for the last only once the same list answered a longer one; otherwise asks once more",
        );
    }

    // The probe ticket.
    let import_id = format!("gleap-etl-doctor:{probe}");
    let ticket_body = json!({
        "title": "gleap-etl doctor probe (safe to delete)",
        "session": session_id,
        "customData": {"importId": import_id, "gleapEtlProbe": probe},
        "isSilent": true,
        "preventAutoReply": true,
    });
    let t = match d
        .send(
            "create-ticket",
            Method::POST,
            "/tickets",
            &[],
            Some(ticket_body),
        )
        .await
    {
        Ok(t) => t,
        Err(e) => {
            d.note(
                "tickets.create",
                Status::Fail,
                "POST /tickets creates a ticket (silently: isSilent, preventAutoReply) and answers it",
                e.to_string(),
                "cannot create tickets",
            );
            return;
        }
    };
    let Some(ticket_id) = answer::id(&t.body).map(str::to_string) else {
        d.note(
            "tickets.ids",
            Status::Fail,
            "a ticket is answered with `id` or `_id`",
            format!("POST /tickets answered {}", short_json(&t.body)),
            "cannot map tickets without their ids",
        );
        return;
    };
    created.ticket = Some(ticket_id.clone());
    let session_form = match t.body.get("session") {
        Some(Value::String(_)) => "its session as an id".to_string(),
        Some(v @ Value::Object(_)) => format!("its session as an object with {}", id_fields(v)),
        _ => "no session".to_string(),
    };
    d.note(
        "tickets.ids",
        Status::Ok,
        "a ticket is answered with `id` or `_id`",
        format!("{}, {session_form}", id_fields(&t.body)),
        "reads `id`, else `_id`; a reference as an id or an object with one",
    );
    if let Some(a) = d
        .get("get-ticket", &format!("/tickets/{ticket_id}"), &[])
        .await
    {
        let same = answer::found(a.status, a.body)
            .is_some_and(|doc| answer::id(&doc) == Some(ticket_id.as_str()));
        d.note(
            "tickets.get",
            if same { Status::Ok } else { Status::Fail },
            "GET /tickets/{id} answers the ticket",
            if same { "it does" } else { "it does not" },
            "updates tickets by id",
        );
    }
    let mut import_ignored = false;
    let mut found_probe = false;
    if let Some(a) = d
        .get(
            "filter-import-id",
            "/tickets",
            &[("customData.importId", &import_id), ("limit", "10")],
        )
        .await
    {
        let form = list_form(&a.body);
        match answer::list(a.body) {
            Ok(page) => {
                found_probe = ids(&page.items).contains(&ticket_id);
                import_ignored |= page
                    .items
                    .iter()
                    .any(|t| answer::import_marker(t) != Some(import_id.as_str()));
                d.note(
                    "tickets.list",
                    if page.total.is_some() { Status::Ok } else { Status::Warn },
                    "GET /tickets answers {tickets, count, totalCount}",
                    form,
                    "reads the list in any wrapper; checks what an export read against totalCount where there is one",
                );
            }
            Err(e) => d.note(
                "tickets.list",
                Status::Fail,
                "GET /tickets answers {tickets, count, totalCount}",
                e,
                "cannot read tickets back",
            ),
        }
    }
    let absent_import = format!("{import_id}-absent");
    if let Some(items) = d
        .list(
            "filter-import-id-absent",
            "/tickets",
            &[("customData.importId", &absent_import), ("limit", "10")],
        )
        .await
    {
        import_ignored |= !items.is_empty();
        let (status, observed) = match (import_ignored, found_probe) {
            (true, _) => (
                Status::Warn,
                "answered tickets with other importIds: ignored",
            ),
            (false, true) => (Status::Ok, "applied"),
            (false, false) => (Status::Fail, "did not answer the probe ticket"),
        };
        d.note(
            "filter.customData.importId",
            status,
            "GET /tickets?customData.importId=X answers only the tickets with that import id",
            observed,
            "finds a ticket whose create answer was lost by it; where it is ignored, reads every ticket instead (a page per 1000 tickets for each such ticket) rather than create it twice",
        );
    }
    if d.room_for(1)
        && let Some(a) = d
            .get("tickets-page-size", "/tickets", &[("limit", "1000")])
            .await
        && let Ok(page) = answer::list(a.body)
        && let Some(total) = page.total
    {
        let n = page.items.len() as u64;
        if n < total.min(1000) {
            d.note(
                "page_size.tickets",
                Status::Warn,
                "GET /tickets answers up to `limit` records (1000) while more remain",
                format!("limit=1000 answered {n} of {total}: pages hold at most {n}"),
                "pages by what comes back and counts against totalCount",
            );
        }
    }

    // The probe note.
    let note_text = format!("gleap-etl doctor probe note {probe}");
    let m = match d
        .send(
            "create-note",
            Method::POST,
            "/messages",
            &[],
            Some(json!({
                "ticket": ticket_id,
                "comment": note_text,
                "isNote": true,
                "sendToChannel": false,
                "sessionNotificationsUnread": false,
            })),
        )
        .await
    {
        Ok(m) => m,
        Err(e) => {
            d.note(
                "messages.create",
                Status::Fail,
                "POST /messages creates an internal note and answers it",
                e.to_string(),
                "cannot create messages",
            );
            return;
        }
    };
    let Some(message_id) = answer::id(&m.body).map(str::to_string) else {
        d.note(
            "messages.ids",
            Status::Fail,
            "a message is answered with `id` or `_id`",
            format!("POST /messages answered {}", short_json(&m.body)),
            "cannot map messages without their ids",
        );
        return;
    };
    created.message = Some(message_id.clone());
    d.note(
        "messages.ids",
        Status::Ok,
        "a message is answered with `id` or `_id`",
        id_fields(&m.body),
        "reads `id`, else `_id`",
    );
    if let Some(a) = d
        .get(
            "list-messages",
            "/messages",
            &[("ticket", &ticket_id), ("limit", "10")],
        )
        .await
    {
        let form = list_form(&a.body);
        let items = answer::list(a.body).map(|p| p.items).unwrap_or_default();
        let stored = items
            .iter()
            .find(|m| answer::id(m) == Some(message_id.as_str()));
        let (status, observed) = match stored {
            None => (Status::Fail, format!("{form}, without the note")),
            Some(m) => {
                let text = answer::message_content(m).map(answer::content_text);
                let place = if m
                    .get("data")
                    .and_then(|d| d.get("content"))
                    .is_some_and(|c| !c.is_null())
                {
                    "data.content"
                } else if m.get("comment").is_some_and(|c| !c.is_null()) {
                    "comment"
                } else {
                    "nowhere we read"
                };
                let note = if m.get("type").and_then(Value::as_str).is_some() {
                    format!("type {}", m["type"])
                } else {
                    format!("isNote {}", m.get("isNote").unwrap_or(&Value::Null))
                };
                let ok = text.as_deref() == Some(note_text.as_str()) && answer::is_note(m);
                (
                    if ok { Status::Ok } else { Status::Fail },
                    format!("{form}; the text in {place}, the note as {note}"),
                )
            }
        };
        d.note(
            "messages.read",
            status,
            "a ticket's messages are read back with their text and whether each is a note",
            observed,
            "reads the text from data.content, else comment, and a note from type NOTE, else isNote; a message whose create answer was lost is found by them",
        );
    }
    let nowhere = "000000000000000000000000";
    match d
        .send(
            "filter-ticket-absent",
            Method::GET,
            "/messages",
            &[("ticket", nowhere), ("limit", "5")],
            None,
        )
        .await
    {
        Ok(a) => {
            let items = if a.status == 404 {
                Vec::new()
            } else {
                answer::list(a.body).map(|p| p.items).unwrap_or_default()
            };
            d.note(
                "filter.ticket",
                if items.is_empty() { Status::Ok } else { Status::Fail },
                "GET /messages?ticket=X answers only that ticket's messages",
                if items.is_empty() {
                    "applied".to_string()
                } else {
                    format!("answered {} messages of other tickets: ignored", items.len())
                },
                "finds lost messages and exports messages ticket by ticket with it; where it is ignored, a lost message is looked for among all messages (every page) and an export of messages stops with an error",
            );
        }
        Err(CallError::Rejected { status, .. }) => d.note(
            "filter.ticket",
            Status::Ok,
            "GET /messages?ticket=X answers only that ticket's messages",
            format!("an unknown ticket answered {status}"),
            "finds lost messages and exports messages ticket by ticket with it",
        ),
        Err(_) => {}
    }
}

/// Deletes what the probe created, newest first; what could not be deleted.
async fn clean_up(d: &mut Doctor<'_>, created: &Created) -> Vec<String> {
    let mut targets = Vec::new();
    if let Some(m) = &created.message {
        targets.push(format!("messages/{m}"));
    }
    if let Some(t) = &created.ticket {
        targets.push(format!("tickets/{t}"));
    }
    for s in created.sessions.iter().rev() {
        targets.push(format!("sessions/{s}"));
    }
    let mut left = Vec::new();
    for target in targets {
        let ok = match d
            .send("delete", Method::DELETE, &format!("/{target}"), &[], None)
            .await
        {
            Ok(a) => (200..300).contains(&a.status) || a.status == 404,
            Err(_) => false,
        };
        if !ok {
            left.push(target);
        }
    }
    let (status, observed) = if left.is_empty() {
        (Status::Ok, "every probe record deleted".to_string())
    } else {
        (
            Status::Warn,
            format!("could not delete {}", left.join(", ")),
        )
    };
    d.note(
        "cleanup",
        status,
        "DELETE removes the probe's message, ticket and sessions",
        observed,
        "deletes nothing but the probe's records",
    );
    left
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_keys_emails_names_and_the_project() {
        let v = json!({
            "name": "Ada Lovelace",
            "fallbackUser": {"username": "Bob", "email": "bob@acme.io"},
            "text": "mail ada@x.io please, key sk-123, project 65a0",
            "list": ["sk-123", 5, null],
            "userId": "u1",
        });
        let r = redact(&v, &["sk-123".into(), "65a0".into()]);
        assert_eq!(r["name"], "<redacted name>");
        assert_eq!(r["fallbackUser"]["username"], "<redacted name>");
        assert_eq!(r["fallbackUser"]["email"], "redacted@example.com");
        assert_eq!(
            r["text"],
            "mail redacted@example.com please, key <redacted>, project <redacted>"
        );
        assert_eq!(r["list"], json!(["<redacted>", 5, null]));
        assert_eq!(r["userId"], "u1");
    }
}
