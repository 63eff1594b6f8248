//! The one Gleap API client: base URL, bearer key and `project` header, a keep-alive pool,
//! a timeout per attempt, the run's shared rate limit and concurrency, and the one place
//! that decides what to do with an answer:
//!
//! | answer                              | GET / PUT / DELETE        | POST (creates)                    |
//! |-------------------------------------|---------------------------|-----------------------------------|
//! | 2xx, 404                            | returned                  | returned                          |
//! | 429                                 | every sender pauses, retry | every sender pauses, retry       |
//! | 408, 5xx, dropped connection, timeout | retried with backoff    | `Ambiguous`: the caller looks it up before sending again |
//! | connection refused (nothing sent)   | retried with backoff      | retried with backoff              |
//! | 401, 403 (key or project refused)   | `Fatal`: the run stops    | `Fatal`: the run stops            |
//! | other 4xx                           | `Rejected`, not retried   | `Rejected`, not retried           |
//!
//! A run stops (`Fatal`, and no request is sent after it) at the first 401 or 403, when
//! Gleap has not answered a request's worth of attempts (`max_attempts`, across requests)
//! before answering any, after [`UNREACHABLE_CALLS`] requests in a row gave up without an
//! answer, or when [`GleapClient::halt`] is called (too many dead letters). A GET the run can
//! do without ([`GleapClient::call_optional`]: the team list) answers a 401 or 403 as
//! `Rejected` instead.
//!
//! Backoff is full-jitter exponential. A 429 pauses all senders of the run until its
//! `Retry-After` (or an exponential pause when Gleap sends none).

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Notify;

use crate::error::{Error, Result};

/// The public API's address.
pub const GLEAP_BASE_URL: &str = "https://api.gleap.io/v3";
/// Sent with each message create: the record's position in its stream's input. Gleap
/// ignores it; the emulator counts messages created out of that order
/// (`messages_out_of_order` in its stats).
pub const SEQ_HEADER: &str = "x-gleap-etl-seq";
/// The most records a Gleap list request answers at once (`limit`).
pub const MAX_PAGE_SIZE: usize = 1000;
/// We pace at this share of the quota, to keep clear of 429s when answers arrive unevenly.
const QUOTA_SHARE: f64 = 0.985;
const BACKOFF_BASE: Duration = Duration::from_millis(200);
const BACKOFF_CAP: Duration = Duration::from_secs(20);
/// 429s do not use up attempts, up to this many.
const MAX_RATE_LIMITED: u32 = 100;
/// Requests in a row that gave up without an answer (each after its retries) before the run
/// stops: Gleap is not reachable, and every further record would wait out the same retries.
pub const UNREACHABLE_CALLS: u64 = 3;

/// The API key. It is never printed: `Debug` and `Display` show `<hidden>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<hidden>")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<hidden>")
    }
}

/// The pipeline's `gleap:` block. Unset values come from `GLEAP_BASE_URL`, `GLEAP_API_KEY`,
/// `GLEAP_PROJECT_ID` and `GLEAP_REQUESTS_PER_MINUTE`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GleapConfig {
    /// The API's address. Default `${GLEAP_BASE_URL}`, else https://api.gleap.io/v3.
    #[serde(default)]
    pub base_url: Option<String>,
    /// The API key. Default `${GLEAP_API_KEY}`. Never printed.
    #[serde(default)]
    pub api_key: Option<String>,
    /// The project id. Default `${GLEAP_PROJECT_ID}`.
    #[serde(default)]
    pub project: Option<String>,
    /// The project's quota, shared by every stream of the run. Default
    /// `${GLEAP_REQUESTS_PER_MINUTE}`, else 1000 (Gleap's).
    #[serde(default)]
    pub requests_per_minute: Option<f64>,
    /// Requests in flight: a number, or `adaptive` (raised while latency holds, halved on 429s
    /// and timeouts). Default `adaptive`.
    #[serde(default)]
    pub concurrency: Option<ConcurrencySetting>,
    /// Timeout of one attempt. Default 30.
    #[serde(default)]
    pub timeout_secs: Option<f64>,
    /// Attempts per request before giving up (429s not counted). Default 8.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// How long a look-up through a list (a session by `email`) keeps looking for a record
    /// whose create answer was lost before taking it for absent, for lists served from an
    /// index that shows new records late (`gleap-etl doctor` measures it). Default 4.
    #[serde(default)]
    pub lookup_settle_secs: Option<f64>,
    /// The bearer token for file uploads (`POST /uploads`, `attachments: rehost`), when the
    /// project's API key is not accepted there: Gleap's own importers send a user's token.
    /// Default `${GLEAP_UPLOAD_TOKEN}`, else the API key. Never printed.
    #[serde(default)]
    pub upload_token: Option<String>,
}

/// `concurrency: 8` or `concurrency: adaptive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[serde(untagged)]
pub enum ConcurrencySetting {
    Fixed(u32),
    #[schemars(with = "String")]
    Adaptive,
}

impl<'de> Deserialize<'de> for ConcurrencySetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Number(n) => match n.as_u64() {
                Some(n @ 1..=256) => Ok(ConcurrencySetting::Fixed(n as u32)),
                _ => Err(serde::de::Error::custom(format!(
                    "concurrency {n}: between 1 and 256"
                ))),
            },
            Value::String(s) if s == "adaptive" => Ok(ConcurrencySetting::Adaptive),
            other => Err(serde::de::Error::custom(format!(
                "expected a number or `adaptive`, found {other}"
            ))),
        }
    }
}

/// A request: method, path, query, body, and whether it is a create.
type Request<'a> = (
    reqwest::Method,
    &'a str,
    &'a [(&'a str, &'a str)],
    Option<&'a Value>,
    bool,
);

/// Settings with every default applied.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub base_url: String,
    pub api_key: Secret,
    pub project: String,
    pub requests_per_minute: f64,
    pub concurrency: ConcurrencySetting,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub lookup_settle: Duration,
    /// For `POST /uploads`; `None`: the API key.
    pub upload_token: Option<Secret>,
}

/// Why a base URL cannot be Gleap's, if it cannot.
fn base_url_problem(url: &str) -> Option<String> {
    (!(url.starts_with("http://") || url.starts_with("https://")))
        .then(|| format!("`{url}` must start with http:// or https://"))
}

/// Why a request rate cannot be used, if it cannot.
fn rate_problem(per_minute: f64) -> Option<String> {
    (!(per_minute > 0.0 && per_minute.is_finite())).then(|| "must be above 0".to_string())
}

impl GleapConfig {
    /// Every problem with the settings written in the pipeline file (what comes from the
    /// environment is checked when the run starts); `at` is the block's config path.
    pub fn check(&self, at: &str) -> Vec<crate::config::ConfigError> {
        let mut errors = Vec::new();
        if let Some(problem) = self
            .base_url
            .as_deref()
            .filter(|u| !u.is_empty())
            .and_then(|u| base_url_problem(u.trim_end_matches('/')))
        {
            errors.push(crate::config::ConfigError::at(
                format!("{at}.base_url"),
                problem,
            ));
        }
        if let Some(problem) = self.requests_per_minute.and_then(rate_problem) {
            errors.push(crate::config::ConfigError::at(
                format!("{at}.requests_per_minute"),
                problem,
            ));
        }
        errors
    }

    /// Applies the defaults; `env` reads environment variables.
    pub fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<ClientSettings> {
        let from = |v: &Option<String>, var: &str| {
            v.clone()
                .filter(|s| !s.is_empty())
                .or_else(|| env(var).filter(|s| !s.is_empty()))
        };
        let api_key = from(&self.api_key, "GLEAP_API_KEY").ok_or_else(|| {
            Error::config("no Gleap API key: set GLEAP_API_KEY or `gleap: { api_key: ... }` (or run with --emulator)")
        })?;
        let project = from(&self.project, "GLEAP_PROJECT_ID").ok_or_else(|| {
            Error::config("no Gleap project: set GLEAP_PROJECT_ID or `gleap: { project: ... }` (or run with --emulator)")
        })?;
        let base_url =
            from(&self.base_url, "GLEAP_BASE_URL").unwrap_or_else(|| GLEAP_BASE_URL.to_string());
        let base_url = base_url.trim_end_matches('/').to_string();
        if let Some(problem) = base_url_problem(&base_url) {
            return Err(Error::config(format!("gleap base_url {problem}")));
        }
        let requests_per_minute = match self.requests_per_minute {
            Some(n) => n,
            None => match env("GLEAP_REQUESTS_PER_MINUTE").filter(|s| !s.trim().is_empty()) {
                Some(text) => text.trim().parse::<f64>().map_err(|_| {
                    Error::config(format!(
                        "GLEAP_REQUESTS_PER_MINUTE: {text:?} is not a number"
                    ))
                })?,
                None => 1000.0,
            },
        };
        if let Some(problem) = rate_problem(requests_per_minute) {
            return Err(Error::config(format!(
                "gleap requests_per_minute {problem}"
            )));
        }
        Ok(ClientSettings {
            base_url,
            api_key: Secret::new(api_key),
            project,
            requests_per_minute,
            concurrency: self.concurrency.unwrap_or(ConcurrencySetting::Adaptive),
            timeout: Duration::from_secs_f64(self.timeout_secs.unwrap_or(30.0).max(0.1)),
            max_attempts: self.max_attempts.unwrap_or(8).max(1),
            lookup_settle: Duration::from_secs_f64(
                self.lookup_settle_secs.unwrap_or(4.0).clamp(0.0, 600.0),
            ),
            upload_token: from(&self.upload_token, "GLEAP_UPLOAD_TOKEN").map(Secret::new),
        })
    }
}

/// Runs right before a request goes out (and is waited for); an `Err` stops it.
pub type BeforeSend<'a> = dyn Fn() -> std::pin::Pin<
        Box<dyn std::future::Future<Output = std::result::Result<(), String>> + Send + 'a>,
    > + Send
    + Sync
    + 'a;

/// Why a call did not give an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// A create may or may not have been applied: look before sending it again.
    Ambiguous(String),
    /// Gleap refused the request (a 4xx other than 408 and 429).
    Rejected { status: u16, message: String },
    /// Retries ran out.
    GaveUp(String),
    /// The run cannot go on (the key or project refused, Gleap unreachable, or stopped):
    /// nothing more is sent.
    Fatal(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Ambiguous(m) => write!(f, "no answer: {m}"),
            CallError::Rejected { status, message } => {
                write!(f, "Gleap answered {status}: {message}")
            }
            CallError::GaveUp(m) => write!(f, "gave up: {m}"),
            CallError::Fatal(m) => f.write_str(m),
        }
    }
}

/// A 2xx or 404 answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

/// Request counters, for the run and per stream.
#[derive(Debug, Default)]
pub struct RequestCounters {
    pub requests: AtomicU64,
    pub rate_limited: AtomicU64,
    pub retries: AtomicU64,
    /// Set when the stream stops: its calls that have not gone out yet are not sent
    /// (`CallError::Fatal`).
    pub stopped: std::sync::atomic::AtomicBool,
}

impl RequestCounters {
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.requests.load(Ordering::Relaxed),
            self.rate_limited.load(Ordering::Relaxed),
            self.retries.load(Ordering::Relaxed),
        )
    }
}

/// The shared client.
pub struct GleapClient {
    http: reqwest::Client,
    settings: ClientSettings,
    limiter: DefaultDirectRateLimiter,
    /// Requests take their turn at the rate limit in the order they came (tokio's semaphore is
    /// fair), so early records are not starved and the checkpoint keeps moving.
    turn: tokio::sync::Semaphore,
    /// Until when every sender waits after a 429.
    paused_until: Mutex<Option<Instant>>,
    consecutive_429: AtomicU64,
    concurrency: ConcurrencyLimit,
    pub totals: RequestCounters,
    /// Why the run stopped sending, once it did ([`GleapClient::halt`]).
    halted: Mutex<Option<String>>,
    /// Set once the run halts: calls waiting their turn or a backoff stop waiting.
    halt_signal: tokio::sync::watch::Sender<bool>,
    /// Whether Gleap has answered any request of this run.
    answered: std::sync::atomic::AtomicBool,
    /// Calls in a row that gave up without an answer.
    unreachable_calls: AtomicU64,
    /// Attempts without an answer before Gleap answered any.
    unanswered_attempts: AtomicU64,
    /// The largest page each list endpoint answered (safe paging, `super::paging`).
    page_sizes: super::paging::PageSizes,
}

impl std::fmt::Debug for GleapClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GleapClient")
            .field("base_url", &self.settings.base_url)
            .field("project", &self.settings.project)
            .finish()
    }
}

impl GleapClient {
    pub fn new(settings: ClientSettings) -> Result<GleapClient> {
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .user_agent(concat!("gleap-etl/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::internal(format!("cannot build the HTTP client: {e}")))?;
        let per_request =
            Duration::from_secs_f64(60.0 / (settings.requests_per_minute * QUOTA_SHARE));
        // A little burst lets requests that came late (timers, stream changes) catch up. In
        // any minute GCRA admits at most burst + 98.5% of the quota, which the burst keeps
        // under the full quota: it is half of the 1.5% margin.
        let burst = ((1.0 - QUOTA_SHARE) * settings.requests_per_minute * 0.5)
            .floor()
            .clamp(1.0, 1000.0) as u32;
        let quota = Quota::with_period(per_request)
            .ok_or_else(|| Error::config("gleap requests_per_minute is too high"))?
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        let concurrency = match settings.concurrency {
            ConcurrencySetting::Fixed(n) => ConcurrencyLimit::fixed(n as usize),
            ConcurrencySetting::Adaptive => ConcurrencyLimit::adaptive(),
        };
        Ok(GleapClient {
            http,
            limiter: RateLimiter::direct(quota),
            turn: tokio::sync::Semaphore::new(1),
            paused_until: Mutex::new(None),
            consecutive_429: AtomicU64::new(0),
            concurrency,
            totals: RequestCounters::default(),
            halted: Mutex::new(None),
            halt_signal: tokio::sync::watch::Sender::new(false),
            answered: Default::default(),
            unreachable_calls: AtomicU64::new(0),
            unanswered_attempts: AtomicU64::new(0),
            page_sizes: Default::default(),
            settings,
        })
    }

    pub fn settings(&self) -> &ClientSettings {
        &self.settings
    }

    /// The largest page each list endpoint has answered in this run.
    pub fn page_sizes(&self) -> &super::paging::PageSizes {
        &self.page_sizes
    }

    /// The concurrency limit now (it moves when adaptive).
    pub fn concurrency(&self) -> usize {
        self.concurrency.limit()
    }

    /// Stops the run's requests: every call from now on, and every retry, fails with
    /// `CallError::Fatal(reason)` without sending. The first reason stays.
    pub fn halt(&self, reason: impl Into<String>) {
        let mut halted = self.halted.lock().unwrap_or_else(|p| p.into_inner());
        if halted.is_none() {
            let reason = reason.into();
            tracing::error!("{reason}");
            *halted = Some(reason);
            self.halt_signal.send_replace(true);
        }
    }

    /// Why the run stopped sending, if it did.
    pub fn halted(&self) -> Option<String> {
        self.halted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits for `wait`, or fails with `Fatal` as soon as the run halts.
    async fn unless_halted<T>(
        &self,
        wait: impl std::future::Future<Output = T>,
    ) -> std::result::Result<T, CallError> {
        let mut halted = self.halt_signal.subscribe();
        tokio::select! {
            done = wait => Ok(done),
            _ = halted.wait_for(|h| *h) => {
                Err(CallError::Fatal(self.halted().unwrap_or_default()))
            }
        }
    }

    /// `Fatal` when the run or the stream (`counters`) stopped sending.
    fn may_send(&self, counters: &RequestCounters) -> std::result::Result<(), CallError> {
        if let Some(reason) = self.halted() {
            return Err(CallError::Fatal(reason));
        }
        if counters.stopped.load(Ordering::Relaxed) {
            return Err(CallError::Fatal("the stream stopped".into()));
        }
        Ok(())
    }

    /// A message from Gleap with the key, should it echo it, hidden.
    fn hide_key(&self, message: String) -> String {
        let mut message = message;
        let upload = self.settings.upload_token.as_ref();
        for key in std::iter::once(&self.settings.api_key).chain(upload) {
            if !key.expose().is_empty() {
                message = message.replace(key.expose(), "<hidden>");
            }
        }
        message
    }

    async fn wait_for_pause(&self) {
        loop {
            let until = *self.paused_until.lock().unwrap_or_else(|p| p.into_inner());
            match until {
                Some(t) if t > Instant::now() => tokio::time::sleep(t - Instant::now()).await,
                _ => return,
            }
        }
    }

    fn pause(&self, retry_after: Option<Duration>) {
        let n = self.consecutive_429.fetch_add(1, Ordering::Relaxed);
        let wait = retry_after.unwrap_or_else(|| Duration::from_secs(1 << n.min(6)));
        let until = Instant::now() + wait;
        let mut paused = self.paused_until.lock().unwrap_or_else(|p| p.into_inner());
        if paused.is_none_or(|p| p < until) {
            *paused = Some(until);
        }
    }

    /// Sends a request, retrying as the table above says. `path` is relative to the base
    /// URL (`/sessions`); `create` marks a POST that must not be repeated blindly.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        create: bool,
        counters: &RequestCounters,
    ) -> std::result::Result<Answer, CallError> {
        self.call_with(method, path, query, body, create, counters, None, &[])
            .await
    }

    /// [`GleapClient::call`], running `before_send` once the request is admitted (after the
    /// rate limit), right before each attempt goes out: creates record their intent there;
    /// `headers` are sent besides the key and project.
    #[allow(clippy::too_many_arguments)]
    pub async fn call_with(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        create: bool,
        counters: &RequestCounters,
        before_send: Option<&BeforeSend<'_>>,
        headers: &[(&str, &str)],
    ) -> std::result::Result<Answer, CallError> {
        let request = (method, path, query, body, create);
        self.send_json(request, counters, before_send, headers, true)
            .await
    }

    /// A GET the run can do without: retried like any other, but a 401 or 403 is answered as
    /// `Rejected` and does not stop the run (the team list, whose access the spec does not
    /// settle for project API keys).
    pub async fn call_optional(
        &self,
        path: &str,
        counters: &RequestCounters,
    ) -> std::result::Result<Answer, CallError> {
        let request = (reqwest::Method::GET, path, &[][..], None, false);
        self.send_json(request, counters, None, &[], false).await
    }

    async fn send_json(
        &self,
        (method, path, query, body, create): Request<'_>,
        counters: &RequestCounters,
        before_send: Option<&BeforeSend<'_>>,
        headers: &[(&str, &str)],
        refusal_halts: bool,
    ) -> std::result::Result<Answer, CallError> {
        let url = format!("{}{path}", self.settings.base_url);
        let payload = match body {
            Some(body) => Payload::Json(body),
            None => Payload::None,
        };
        self.send(
            method,
            &url,
            query,
            payload,
            create,
            counters,
            before_send,
            headers,
            refusal_halts,
        )
        .await
    }

    /// Where files are uploaded: the API's address without its `/v3`, then `/uploads`.
    pub fn upload_url(&self) -> String {
        let base = &self.settings.base_url;
        format!("{}/uploads", base.strip_suffix("/v3").unwrap_or(base))
    }

    /// `POST /uploads` with the file as multipart field `file`: Gleap's URL for it
    /// (`fileUrl`, read tolerantly). Rate-limited and retried as every call; an answer lost
    /// after the file went out is `Ambiguous` (the caller may send it again: uploads cannot
    /// be looked up). A refused key (401, 403) is `Rejected` here, not fatal: the run goes
    /// on with the files' original links.
    pub async fn upload(
        &self,
        file: &FilePart,
        counters: &RequestCounters,
    ) -> std::result::Result<String, CallError> {
        let url = self.upload_url();
        let answer = self
            .send(
                reqwest::Method::POST,
                &url,
                &[],
                Payload::File(file),
                true,
                counters,
                None,
                &[],
                false,
            )
            .await?;
        if answer.status == 404 {
            return Err(CallError::Rejected {
                status: 404,
                message: format!("no upload endpoint at {url}"),
            });
        }
        super::answer::file_url(&answer.body).ok_or_else(|| CallError::Rejected {
            status: answer.status,
            message: format!(
                "the upload's answer has no `fileUrl`: {}",
                crate::record::describe(&answer.body)
            ),
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        query: &[(&str, &str)],
        payload: Payload<'_>,
        create: bool,
        counters: &RequestCounters,
        before_send: Option<&BeforeSend<'_>>,
        headers: &[(&str, &str)],
        refusal_halts: bool,
    ) -> std::result::Result<Answer, CallError> {
        let upload = matches!(payload, Payload::File(_));
        let token = match (&payload, &self.settings.upload_token) {
            (Payload::File(_), Some(token)) => token,
            _ => &self.settings.api_key,
        };
        let mut attempt = 0u32;
        let mut rate_limited = 0u32;
        loop {
            self.may_send(counters)?;
            let permit = self
                .unless_halted(async {
                    let _turn = self.turn.acquire().await.expect("never closed");
                    self.wait_for_pause().await;
                    let permit = self.concurrency.acquire().await;
                    self.limiter.until_ready().await;
                    permit
                })
                .await?;
            // Admitted: the run may have stopped while this call waited its turn.
            self.may_send(counters)?;
            if let Some(hook) = before_send {
                hook().await.map_err(CallError::GaveUp)?;
            }
            for c in [&self.totals, counters] {
                c.requests.fetch_add(1, Ordering::Relaxed);
            }
            let started = Instant::now();
            let mut request = self
                .http
                .request(method.clone(), url)
                .bearer_auth(token.expose())
                .header("project", &self.settings.project)
                .timeout(self.settings.timeout);
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            if !query.is_empty() {
                request = request.query(query);
            }
            match &payload {
                Payload::None => {}
                Payload::Json(body) => request = request.json(body),
                Payload::File(file) => request = request.multipart(file.form()),
            }
            let outcome = match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let headers = response.headers().clone();
                    let retry_after = headers
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<f64>().ok())
                        .map(|s| Duration::from_secs_f64(s.max(0.0)));
                    match response.bytes().await {
                        Ok(bytes) => {
                            let body = if bytes.is_empty() {
                                Value::Null
                            } else {
                                serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                                    Value::String(String::from_utf8_lossy(&bytes).into_owned())
                                })
                            };
                            Ok((status, body, retry_after, headers))
                        }
                        Err(e) => Err(TransportFailure::of(&e, false)),
                    }
                }
                Err(e) => Err(TransportFailure::of(&e, e.is_connect())),
            };
            drop(permit);
            attempt += 1;
            let got_answer = outcome.is_ok();
            if got_answer {
                self.answered.store(true, Ordering::Relaxed);
                self.unreachable_calls.store(0, Ordering::Relaxed);
            }
            let (message, nothing_sent) = match outcome {
                Ok((status, body, _, headers)) if (200..300).contains(&status) || status == 404 => {
                    self.concurrency.succeeded(started.elapsed());
                    self.consecutive_429.store(0, Ordering::Relaxed);
                    return Ok(Answer {
                        status,
                        body,
                        headers,
                    });
                }
                Ok((429, _, retry_after, _)) => {
                    for c in [&self.totals, counters] {
                        c.rate_limited.fetch_add(1, Ordering::Relaxed);
                    }
                    self.concurrency.overloaded();
                    self.pause(retry_after);
                    rate_limited += 1;
                    attempt -= 1;
                    if rate_limited > MAX_RATE_LIMITED {
                        return Err(CallError::GaveUp(format!(
                            "{rate_limited} answers of 429 in a row"
                        )));
                    }
                    continue;
                }
                Ok((status, body, ..)) if status == 408 || status >= 500 => {
                    (format!("{status}: {}", message_of(&body)), false)
                }
                Ok((status @ (401 | 403), body, ..)) if upload => {
                    return Err(CallError::Rejected {
                        status,
                        message: format!(
                            "Gleap refused the upload's authorisation ({}): set `gleap: {{upload_token}}` (GLEAP_UPLOAD_TOKEN) to a token /uploads accepts",
                            self.hide_key(message_of(&body))
                        ),
                    });
                }
                Ok((status @ (401 | 403), body, ..)) if !refusal_halts => {
                    return Err(CallError::Rejected {
                        status,
                        message: self.hide_key(message_of(&body)),
                    });
                }
                Ok((status @ (401 | 403), body, ..)) => {
                    let reason = format!(
                        "Gleap refused the API key or the project ({status}: {}): check GLEAP_API_KEY and GLEAP_PROJECT_ID (or `gleap: {{api_key, project}}`); the run stopped and sends nothing more",
                        self.hide_key(message_of(&body))
                    );
                    self.halt(reason.clone());
                    return Err(CallError::Fatal(reason));
                }
                Ok((status, body, ..)) => {
                    return Err(CallError::Rejected {
                        status,
                        message: message_of(&body),
                    });
                }
                Err(failure) => {
                    if failure.timed_out {
                        self.concurrency.overloaded();
                    }
                    (failure.message, failure.nothing_sent)
                }
            };
            if !got_answer && let Some(reason) = self.never_answered(&message) {
                return Err(CallError::Fatal(reason));
            }
            if create && !nothing_sent {
                return Err(CallError::Ambiguous(message));
            }
            if attempt >= self.settings.max_attempts {
                let gave_up = format!("{attempt} attempts, the last: {message}");
                if !got_answer && let Some(reason) = self.unreachable(&gave_up) {
                    return Err(CallError::Fatal(reason));
                }
                return Err(CallError::GaveUp(gave_up));
            }
            for c in [&self.totals, counters] {
                c.retries.fetch_add(1, Ordering::Relaxed);
            }
            self.unless_halted(tokio::time::sleep(backoff(attempt)))
                .await?;
        }
    }
}

impl GleapClient {
    /// A call gave up without an answer (`gave_up` says how): the run stops (the reason)
    /// when Gleap never answered this run, or after [`UNREACHABLE_CALLS`] such calls in a
    /// row.
    fn unreachable(&self, gave_up: &str) -> Option<String> {
        let in_a_row = self.unreachable_calls.fetch_add(1, Ordering::Relaxed) + 1;
        if in_a_row < UNREACHABLE_CALLS {
            return None;
        }
        Some(self.halt_unreachable(&format!(
            "{in_a_row} requests in a row got no answer ({gave_up})"
        )))
    }

    /// An attempt got no answer (`message`): before Gleap answered anything this run, the
    /// run stops (the reason) once a request's worth of attempts (`max_attempts`, counted
    /// across requests) got none, however many requests wait their turn.
    fn never_answered(&self, message: &str) -> Option<String> {
        if self.answered.load(Ordering::Relaxed) {
            return None;
        }
        let attempts = self.unanswered_attempts.fetch_add(1, Ordering::Relaxed) + 1;
        (attempts >= u64::from(self.settings.max_attempts)).then(|| {
            self.halt_unreachable(&format!(
                "it has not answered a single request ({attempts} attempts, the last: {message})"
            ))
        })
    }

    fn halt_unreachable(&self, why: &str) -> String {
        let reason = format!(
            "cannot reach Gleap at {}: {why}; the run stopped and sends nothing more",
            self.settings.base_url
        );
        self.halt(reason.clone());
        reason
    }
}

/// What a request carries.
enum Payload<'a> {
    None,
    Json(&'a Value),
    File(&'a FilePart),
}

/// A file to upload: its bytes, name and media type.
#[derive(Clone)]
pub struct FilePart {
    pub bytes: Vec<u8>,
    pub name: String,
    pub mime: String,
}

impl FilePart {
    /// The multipart form, built anew for each attempt.
    fn form(&self) -> reqwest::multipart::Form {
        let part = reqwest::multipart::Part::bytes(self.bytes.clone()).file_name(self.name.clone());
        let part = part.mime_str(&self.mime).unwrap_or_else(|_| {
            reqwest::multipart::Part::bytes(self.bytes.clone()).file_name(self.name.clone())
        });
        reqwest::multipart::Form::new().part("file", part)
    }
}

/// Full-jitter exponential backoff before attempt `attempt + 1`.
pub fn backoff(attempt: u32) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1u32 << attempt.min(16))
        .min(BACKOFF_CAP);
    ceiling.mul_f64(fastrand::f64())
}

fn message_of(body: &Value) -> String {
    match body.get("message") {
        Some(Value::String(m)) => m.clone(),
        _ => {
            let s = body.to_string();
            if s.chars().count() > 200 {
                format!("{}…", s.chars().take(200).collect::<String>())
            } else {
                s
            }
        }
    }
}

/// A transport error, without the URL's query or any header.
/// A request that got no answer: why, whether it surely never reached Gleap (the
/// connection was refused), and whether it timed out (a sign of overload).
struct TransportFailure {
    message: String,
    nothing_sent: bool,
    timed_out: bool,
}

impl TransportFailure {
    fn of(e: &reqwest::Error, nothing_sent: bool) -> TransportFailure {
        TransportFailure {
            message: describe_transport(e, true),
            nothing_sent,
            timed_out: e.is_timeout(),
        }
    }
}

/// A transport error, without the URL (it may carry a signature) or any header: what kind
/// (a body or decode error named as such with `name_broken_answer`, else "the connection
/// failed") and its innermost cause.
pub(crate) fn describe_transport(e: &reqwest::Error, name_broken_answer: bool) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if name_broken_answer && (e.is_body() || e.is_decode()) {
        "the answer broke off"
    } else {
        "the connection failed"
    };
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind} ({detail})")
    }
}

/// How many requests may be in flight: fixed, or adaptive (AIMD: one more after a limit's
/// worth of answers whose latency stays near the best seen; half on 429s and timeouts).
pub struct ConcurrencyLimit {
    state: Mutex<LimitState>,
    notify: Notify,
    adaptive: bool,
    max: usize,
    limit_now: AtomicUsize,
}

struct LimitState {
    limit: usize,
    in_flight: usize,
    successes: usize,
    best_latency: Option<Duration>,
}

pub struct Permit<'a> {
    limit: &'a ConcurrencyLimit,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut s = self.limit.state.lock().unwrap_or_else(|p| p.into_inner());
        s.in_flight -= 1;
        drop(s);
        self.limit.notify.notify_one();
    }
}

impl ConcurrencyLimit {
    pub fn fixed(n: usize) -> ConcurrencyLimit {
        Self::new(n.max(1), false, n.max(1))
    }

    pub fn adaptive() -> ConcurrencyLimit {
        Self::new(2, true, 64)
    }

    fn new(limit: usize, adaptive: bool, max: usize) -> ConcurrencyLimit {
        ConcurrencyLimit {
            state: Mutex::new(LimitState {
                limit,
                in_flight: 0,
                successes: 0,
                best_latency: None,
            }),
            notify: Notify::new(),
            adaptive,
            max,
            limit_now: AtomicUsize::new(limit),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit_now.load(Ordering::Relaxed)
    }

    pub async fn acquire(&self) -> Permit<'_> {
        loop {
            let notified = self.notify.notified();
            {
                let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
                if s.in_flight < s.limit {
                    s.in_flight += 1;
                    return Permit { limit: self };
                }
            }
            notified.await;
        }
    }

    fn succeeded(&self, latency: Duration) {
        if !self.adaptive {
            return;
        }
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let best = *s.best_latency.get_or_insert(latency);
        if latency < best {
            s.best_latency = Some(latency);
        }
        if latency <= best.saturating_mul(2) + Duration::from_millis(5) {
            s.successes += 1;
            if s.successes >= s.limit && s.limit < self.max {
                s.limit += 1;
                s.successes = 0;
                self.limit_now.store(s.limit, Ordering::Relaxed);
                drop(s);
                self.notify.notify_one();
            }
        } else {
            s.successes = 0;
        }
    }

    fn overloaded(&self) {
        if !self.adaptive {
            return;
        }
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.limit = (s.limit / 2).max(1);
        s.successes = 0;
        self.limit_now.store(s.limit, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_come_from_the_block_or_the_environment_and_hide_the_key() {
        let env = |name: &str| match name {
            "GLEAP_API_KEY" => Some("sk-from-env".to_string()),
            "GLEAP_PROJECT_ID" => Some("p1".to_string()),
            _ => None,
        };
        let s = GleapConfig::default().resolve(&env).unwrap();
        assert_eq!(s.base_url, GLEAP_BASE_URL);
        assert_eq!(s.api_key.expose(), "sk-from-env");
        assert!(!format!("{s:?}").contains("sk-from-env"));
        assert_eq!(s.concurrency, ConcurrencySetting::Adaptive);
        let none = |_: &str| None;
        let err = GleapConfig::default()
            .resolve(&none)
            .unwrap_err()
            .to_string();
        assert!(err.contains("GLEAP_API_KEY"), "{err}");
        let c: GleapConfig = serde_json::from_value(
            serde_json::json!({"concurrency": 8, "api_key": "k", "project": "p"}),
        )
        .unwrap();
        assert_eq!(
            c.resolve(&none).unwrap().concurrency,
            ConcurrencySetting::Fixed(8)
        );
        assert!(
            serde_json::from_value::<GleapConfig>(serde_json::json!({"concurrency": "lots"}))
                .is_err()
        );
    }

    #[test]
    fn backoff_grows_with_full_jitter_and_a_cap() {
        for attempt in 0..20 {
            let b = backoff(attempt);
            assert!(b <= BACKOFF_CAP);
            assert!(b <= BACKOFF_BASE.saturating_mul(1 << attempt.min(16)));
        }
    }

    #[tokio::test]
    async fn adaptive_concurrency_rises_while_latency_holds_and_halves_on_overload() {
        let limit = ConcurrencyLimit::adaptive();
        assert_eq!(limit.limit(), 2);
        for _ in 0..20 {
            limit.succeeded(Duration::from_millis(10));
        }
        let raised = limit.limit();
        assert!(raised > 4, "{raised}");
        limit.overloaded();
        assert_eq!(limit.limit(), raised / 2);
        for _ in 0..50 {
            limit.succeeded(Duration::from_millis(500));
        }
        assert_eq!(limit.limit(), raised / 2, "slow answers do not raise it");
        let _a = limit.acquire().await;
        assert_eq!(limit.state.lock().unwrap().in_flight, 1);
    }

    fn client_for(base_url: String) -> GleapClient {
        GleapClient::new(ClientSettings {
            base_url,
            api_key: Secret::new("sk-never-printed"),
            project: "p".into(),
            requests_per_minute: 60_000.0,
            concurrency: ConcurrencySetting::Fixed(1),
            timeout: Duration::from_secs(3600),
            max_attempts: 4,
            lookup_settle: Duration::ZERO,
            upload_token: None,
        })
        .unwrap()
    }

    /// A port nothing listens on: connections to it are refused.
    async fn closed_port() -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    }

    async fn get(client: &GleapClient, counters: &RequestCounters) -> Result<Answer, CallError> {
        client
            .call(
                reqwest::Method::GET,
                "/sessions",
                &[],
                None,
                false,
                counters,
            )
            .await
    }

    // The clock is paused: backoff waits pass at once.
    #[tokio::test(start_paused = true)]
    async fn a_gleap_never_reached_stops_the_run_after_the_first_requests_retries() {
        let client = client_for(format!("http://127.0.0.1:{}", closed_port().await));
        let counters = RequestCounters::default();
        let first = get(&client, &counters).await.unwrap_err();
        assert!(
            matches!(&first, CallError::Fatal(m) if m.contains("cannot reach Gleap") && m.contains("not answered a single request")),
            "{first}"
        );
        assert_eq!(counters.requests.load(Ordering::Relaxed), 4, "its retries");
        // Nothing more is sent.
        let next = get(&client, &counters).await.unwrap_err();
        assert!(matches!(next, CallError::Fatal(_)), "{next}");
        assert_eq!(counters.requests.load(Ordering::Relaxed), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn many_requests_at_once_to_a_gleap_never_reached_stop_after_one_requests_worth() {
        let client = std::sync::Arc::new(client_for(format!(
            "http://127.0.0.1:{}",
            closed_port().await
        )));
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let client = client.clone();
            calls.spawn(async move { get(&client, &RequestCounters::default()).await });
        }
        while let Some(outcome) = calls.join_next().await {
            assert!(matches!(outcome.unwrap(), Err(CallError::Fatal(_))));
        }
        assert_eq!(
            client.totals.requests.load(Ordering::Relaxed),
            4,
            "max_attempts attempts in all, not 4 for each of the 50"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_gleap_gone_away_stops_the_run_after_a_few_requests_in_a_row() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        // Answers one request, then stops listening.
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await.unwrap();
            socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n[]")
                .await
                .unwrap();
        });
        let client = client_for(base);
        let counters = RequestCounters::default();
        assert_eq!(get(&client, &counters).await.unwrap().status, 200);
        server.await.unwrap();
        for n in 1..UNREACHABLE_CALLS {
            let e = get(&client, &counters).await.unwrap_err();
            assert!(matches!(e, CallError::GaveUp(_)), "call {n}: {e}");
        }
        let e = get(&client, &counters).await.unwrap_err();
        assert!(
            matches!(&e, CallError::Fatal(m) if m.contains("3 requests in a row got no answer")),
            "{e}"
        );
        let sent = counters.requests.load(Ordering::Relaxed);
        assert_eq!(sent, 1 + 4 * UNREACHABLE_CALLS);
        assert!(matches!(
            get(&client, &counters).await,
            Err(CallError::Fatal(_))
        ));
        assert_eq!(
            counters.requests.load(Ordering::Relaxed),
            sent,
            "nothing more sent"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_halted_client_or_stopped_stream_sends_nothing() {
        let client = client_for(format!("http://127.0.0.1:{}", closed_port().await));
        let counters = RequestCounters::default();
        counters.stopped.store(true, Ordering::Relaxed);
        assert!(matches!(
            get(&client, &counters).await,
            Err(CallError::Fatal(_))
        ));
        let other = RequestCounters::default();
        client.halt("stopped: too many dead letters");
        assert_eq!(
            get(&client, &other).await.unwrap_err(),
            CallError::Fatal("stopped: too many dead letters".into())
        );
        assert_eq!(client.totals.requests.load(Ordering::Relaxed), 0);
    }
}
