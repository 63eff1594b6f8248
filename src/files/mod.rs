//! Files and inline images re-hosted (`attachments: rehost`): each attachment URL and TipTap
//! image `src` of a record is downloaded into the vault ([`vault`]: `<state_dir>/files/
//! <sha256>`, kept), each distinct content uploaded once to Gleap (`POST /uploads`), and
//! the record rewritten to Gleap's URLs. The state store remembers which content each
//! source URL had and which Gleap URL each content got, so a killed run and its re-run
//! download and upload nothing twice, and a re-run after the old account is closed has
//! every file from the vault. A file that cannot be had keeps its original link; the
//! caller reports why ([`Outcome::failed`]).

pub mod fetch;
pub mod guard;
pub mod vault;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use crate::config::ConfigError;
use crate::error::{Error, Result};
use crate::gleap::client::{CallError, FilePart, GleapClient, RequestCounters, backoff};
use crate::state::{FileUpload, StateStore};
use fetch::{Credential, FetchSettings, Fetcher};
use vault::Vault;

/// `attachments: link` (default: the source's URLs are sent as they are) or `rehost`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttachmentsMode {
    #[default]
    Link,
    Rehost,
}

/// How files are had (`files:` beside `attachments: rehost`).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    /// Files larger than this are not downloaded (their link is kept). Default 25.
    #[serde(default)]
    pub max_file_mib: Option<f64>,
    /// Let downloads reach loopback, private, link-local and unique-local addresses (cloud
    /// metadata endpoints among them). Default false: a dump is other people's data.
    #[serde(default)]
    pub allow_private_hosts: Option<bool>,
    /// Downloads from one host at a time. Default 4.
    #[serde(default)]
    pub per_host_concurrency: Option<u32>,
    /// Redirects followed per download, each checked like the first URL. Default 5.
    #[serde(default)]
    pub max_redirects: Option<u32>,
    /// Attempts per download for what may pass (5xx, 408, 429, resets, timeouts). Default 4.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Timeout of one download attempt. Default 120.
    #[serde(default)]
    pub timeout_secs: Option<f64>,
    /// Where files given by a relative path (exports that ship their files) are read from.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Source-side credentials, each sent only to its own host (never after a redirect to
    /// another): `[{host: acme.zendesk.com, user: "me@acme.com/token", password:
    /// "${ZENDESK_TOKEN}"}]` or `[{host: ..., bearer: "${INTERCOM_TOKEN}"}]`.
    #[serde(default)]
    pub auth: Vec<AuthConfig>,
}

/// A credential for one host.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The host, as in the URLs (`acme.zendesk.com`, or `host:port`).
    pub host: String,
    /// Sent as `Authorization: Bearer ...`.
    #[serde(default)]
    pub bearer: Option<String>,
    /// With `password`: sent as HTTP basic auth (Zendesk: `email/token` and the API token).
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
}

impl AuthConfig {
    /// A rule whose host or secret is empty (`${ZENDESK_TOKEN:-}` unset) is ignored, so a
    /// pipeline can offer credentials without requiring them.
    fn in_use(&self) -> bool {
        let filled = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
        !self.host.trim().is_empty() && (filled(&self.bearer) || filled(&self.password))
    }
}

impl FilesConfig {
    /// Every problem in these settings; `at` is the `files` option's config path.
    pub fn check(&self, at: &str) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        if let Some(mib) = self.max_file_mib
            && !(mib > 0.0 && mib.is_finite())
        {
            problems.push(ConfigError::at(
                format!("{at}.max_file_mib"),
                format!("{mib} must be above 0"),
            ));
        }
        if self.per_host_concurrency == Some(0) {
            problems.push(ConfigError::at(
                format!("{at}.per_host_concurrency"),
                "must be 1 or more",
            ));
        }
        if self.max_attempts == Some(0) {
            problems.push(ConfigError::at(
                format!("{at}.max_attempts"),
                "must be 1 or more",
            ));
        }
        if let Some(secs) = self.timeout_secs
            && !(secs > 0.0 && secs.is_finite())
        {
            problems.push(ConfigError::at(
                format!("{at}.timeout_secs"),
                format!("{secs} must be above 0"),
            ));
        }
        for (i, a) in self.auth.iter().enumerate().filter(|(_, a)| a.in_use()) {
            if a.host.contains('/') {
                problems.push(ConfigError::at(
                    format!("{at}.auth[{i}].host"),
                    "must be a host name such as acme.zendesk.com",
                ));
            }
            match (&a.bearer, &a.user, &a.password) {
                (Some(_), None, None) | (None, Some(_), Some(_)) => {}
                _ => problems.push(ConfigError::at(
                    format!("{at}.auth[{i}]"),
                    "takes either `bearer`, or `user` and `password`",
                )),
            }
        }
        problems
    }

    fn settings(&self) -> Result<FetchSettings> {
        crate::config::checked(self.check("files"))?;
        let auth = self
            .auth
            .iter()
            .filter(|a| a.in_use())
            .map(|a| {
                let credential = match (&a.bearer, &a.user, &a.password) {
                    (Some(token), _, _) => Credential::Bearer(token.clone()),
                    (None, Some(user), Some(password)) => Credential::Basic {
                        user: user.clone(),
                        password: password.clone(),
                    },
                    _ => unreachable!("checked by problems()"),
                };
                (a.host.trim().to_string(), credential)
            })
            .collect();
        Ok(FetchSettings {
            max_bytes: (self.max_file_mib.unwrap_or(25.0) * 1048576.0) as u64,
            max_redirects: self.max_redirects.unwrap_or(5),
            allow_private: self.allow_private_hosts.unwrap_or(false),
            max_attempts: self.max_attempts.unwrap_or(4).max(1),
            timeout: Duration::from_secs_f64(self.timeout_secs.unwrap_or(120.0).max(0.1)),
            per_host: self.per_host_concurrency.unwrap_or(4).max(1) as usize,
            dir: self.dir.clone(),
            auth,
        })
    }
}

/// What re-hosting did to one record.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Outcome {
    /// File references found (attachment URLs and image `src`s).
    pub found: usize,
    /// Rewritten to a Gleap URL.
    pub rewritten: usize,
    /// Kept with their original link: `(url, why)`.
    pub failed: Vec<(String, String)>,
}

/// What re-hosting did in a run, for the report.
#[derive(Debug, Default, Clone, Serialize)]
pub struct FileStats {
    /// File references met (one file in two messages counts twice).
    pub references: u64,
    /// References rewritten to a Gleap URL.
    pub rewritten: u64,
    /// References kept with their original URL.
    pub failed: u64,
    /// Source URLs downloaded (or read from the files folder) in this run, and their bytes.
    pub downloaded: u64,
    pub downloaded_bytes: u64,
    /// Source URLs found in the vault, had by an earlier run.
    pub from_vault: u64,
    /// Contents uploaded in this run.
    pub uploaded: u64,
    /// Contents an earlier run uploaded (its Gleap URL reused).
    pub upload_reused: u64,
    /// Uploads sent again because an earlier attempt's answer was lost (Gleap may hold
    /// that content twice).
    pub uploads_sent_again: u64,
    /// Why references were kept with their link, with how many each.
    pub failure_reasons: BTreeMap<String, u64>,
    /// A few of them: `{url, reason}`.
    pub failure_examples: Vec<Value>,
}

const FAILURE_EXAMPLES: usize = 20;
/// Uploads read into memory at once: with the 25 MiB cap, 200 MiB at most.
const UPLOADS_IN_MEMORY: usize = 8;

type Shared<T> = Arc<OnceCell<std::result::Result<T, String>>>;

/// Re-hosts the files of records; one for a sink (or any stage that sends TipTap content).
#[derive(Clone)]
pub struct Rehoster {
    inner: Arc<Inner>,
}

struct Inner {
    fetcher: Fetcher,
    vault: Vault,
    store: Arc<StateStore>,
    client: Arc<GleapClient>,
    /// The upload endpoint and project: uploads are remembered per target.
    target: String,
    max_upload_attempts: u32,
    counters: RequestCounters,
    by_url: Mutex<HashMap<String, Shared<String>>>,
    by_sha: Mutex<HashMap<String, Shared<String>>>,
    /// Set when Gleap refused the upload's authorisation: no more uploads are tried.
    uploads_refused: Mutex<Option<String>>,
    /// Uploads whose bytes are in memory at once (each up to `max_file_mib`).
    upload_slots: tokio::sync::Semaphore,
    stats: Mutex<FileStats>,
}

/// One file reference in a record: its JSON pointer, URL, and name and type when given.
#[derive(Debug, Clone, PartialEq)]
struct FileRef {
    pointer: String,
    url: String,
    name: Option<String>,
    mime: Option<String>,
}

impl Rehoster {
    /// The vault is `<dir of the state store>/files`.
    pub fn new(
        config: &FilesConfig,
        store: Arc<StateStore>,
        client: Arc<GleapClient>,
    ) -> Result<Rehoster> {
        let state_dir = store
            .path()
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_default();
        let vault_dir = state_dir.join("files");
        let vault = Vault::open(&vault_dir).map_err(|e| Error::io(&vault_dir, e))?;
        let fetcher = Fetcher::new(config.settings()?).map_err(Error::internal)?;
        let target = format!("{} {}", client.upload_url(), client.settings().project);
        let max_upload_attempts = client.settings().max_attempts;
        Ok(Rehoster {
            inner: Arc::new(Inner {
                fetcher,
                vault,
                store,
                client,
                target,
                max_upload_attempts,
                counters: RequestCounters::default(),
                by_url: Mutex::new(HashMap::new()),
                by_sha: Mutex::new(HashMap::new()),
                uploads_refused: Mutex::new(None),
                upload_slots: tokio::sync::Semaphore::new(UPLOADS_IN_MEMORY),
                stats: Mutex::new(FileStats::default()),
            }),
        })
    }

    /// Rewrites every `attachments[].url` and TipTap `image` node's `attrs.src` in `value`
    /// (at any depth) to a Gleap URL; a file that cannot be had keeps its link.
    pub async fn rehost(&self, value: &mut Value) -> Outcome {
        let mut refs = Vec::new();
        collect(value, &mut String::new(), &mut refs);
        let mut outcome = Outcome {
            found: refs.len(),
            ..Default::default()
        };
        if refs.is_empty() {
            return outcome;
        }
        let mut tasks = tokio::task::JoinSet::new();
        let mut seen = std::collections::HashSet::new();
        for r in &refs {
            if seen.insert(r.url.clone()) {
                let inner = self.inner.clone();
                let r = r.clone();
                tasks.spawn(async move {
                    let result = inner.resolve(&r).await;
                    (r.url, result)
                });
            }
        }
        let mut resolved = HashMap::new();
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok((url, result)) => {
                    resolved.insert(url, result);
                }
                Err(e) => tracing::warn!("a file task failed: {e}"),
            }
        }
        let mut stats = self.inner.lock_stats();
        for r in refs {
            stats.references += 1;
            let result = resolved
                .get(&r.url)
                .cloned()
                .unwrap_or_else(|| Err("the file task stopped".into()));
            match result {
                Ok(gleap_url) => {
                    if let Some(slot) = value.pointer_mut(&r.pointer) {
                        *slot = Value::String(gleap_url);
                        outcome.rewritten += 1;
                        stats.rewritten += 1;
                    }
                }
                Err(reason) => {
                    stats.failed += 1;
                    *stats.failure_reasons.entry(reason.clone()).or_default() += 1;
                    if stats.failure_examples.len() < FAILURE_EXAMPLES
                        && !stats
                            .failure_examples
                            .iter()
                            .any(|e| e["url"] == r.url.as_str())
                    {
                        stats
                            .failure_examples
                            .push(json!({"url": r.url, "reason": reason}));
                    }
                    outcome.failed.push((r.url, reason));
                }
            }
        }
        outcome
    }

    /// The run's counts so far.
    pub fn stats(&self) -> FileStats {
        self.inner.lock_stats().clone()
    }

    /// Requests to Gleap's upload endpoint: sent, rate-limited, retried.
    pub fn upload_requests(&self) -> (u64, u64, u64) {
        self.inner.counters.snapshot()
    }

    /// The report's `files` entry: the run's counts and the upload requests.
    pub fn report_detail(&self) -> Value {
        let mut files = serde_json::to_value(self.stats()).unwrap_or_default();
        let (sent, rate_limited, retries) = self.upload_requests();
        files["upload_requests"] = json!(sent);
        files["upload_rate_limited"] = json!(rate_limited);
        files["upload_retries"] = json!(retries);
        files
    }

    /// Stops sending uploads that have not gone out yet (the stream stops).
    pub fn stop(&self) {
        self.inner.counters.stopped.store(true, Ordering::Relaxed);
    }
}

impl Inner {
    fn lock_stats(&self) -> std::sync::MutexGuard<'_, FileStats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cell(map: &Mutex<HashMap<String, Shared<String>>>, key: &str) -> Shared<String> {
        map.lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.to_string())
            .or_default()
            .clone()
    }

    /// The Gleap URL for a reference's URL, each URL worked out once per run.
    async fn resolve(&self, r: &FileRef) -> std::result::Result<String, String> {
        let cell = Self::cell(&self.by_url, &r.url);
        cell.get_or_init(|| self.resolve_uncached(r)).await.clone()
    }

    async fn resolve_uncached(&self, r: &FileRef) -> std::result::Result<String, String> {
        let known = self.store.file_source(&r.url).map_err(|e| e.to_string())?;
        let (sha, mime) = match known {
            Some(src) if src.sha256.as_deref().is_some_and(|sha| self.vault.has(sha)) => {
                self.lock_stats().from_vault += 1;
                (src.sha256.unwrap_or_default(), src.mime)
            }
            _ => match self.fetcher.fetch(&r.url, &self.vault).await {
                Ok(had) => {
                    let mime = had
                        .mime
                        .clone()
                        .filter(|m| m != "application/octet-stream")
                        .or_else(|| r.mime.clone())
                        .or(had.mime)
                        .unwrap_or_else(|| guess_mime(&r.url).to_string());
                    self.store
                        .set_file_had(&r.url, &had.sha256, had.size, &mime)
                        .map_err(|e| e.to_string())?;
                    let mut stats = self.lock_stats();
                    stats.downloaded += 1;
                    stats.downloaded_bytes += had.size;
                    (had.sha256, Some(mime))
                }
                Err(reason) => {
                    if let Err(e) = self.store.set_file_failed(&r.url, &reason) {
                        tracing::warn!("{e}");
                    }
                    return Err(reason);
                }
            },
        };
        let name = r
            .name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| file_name(&r.url));
        let mime = mime
            .or_else(|| r.mime.clone())
            .unwrap_or_else(|| guess_mime(&name).to_string());
        let cell = Self::cell(&self.by_sha, &sha);
        cell.get_or_init(|| self.upload(&sha, name, mime))
            .await
            .clone()
    }

    /// Uploads a content once: the Gleap URL an earlier run got, else a new upload.
    async fn upload(
        &self,
        sha: &str,
        name: String,
        mime: String,
    ) -> std::result::Result<String, String> {
        let refused = self
            .uploads_refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(reason) = refused {
            return Err(reason);
        }
        let mut sent_before = match self
            .store
            .file_upload(&self.target, sha)
            .map_err(|e| e.to_string())?
        {
            Some(FileUpload {
                file_url: Some(url),
                ..
            }) => {
                self.lock_stats().upload_reused += 1;
                return Ok(url);
            }
            Some(FileUpload { attempts, .. }) => attempts > 0,
            None => false,
        };
        let _slot = self
            .upload_slots
            .acquire()
            .await
            .map_err(|e| e.to_string())?;
        let bytes = self
            .vault
            .read(sha)
            .map_err(|e| format!("cannot read the vault: {e}"))?;
        let part = FilePart { bytes, name, mime };
        let mut last = String::new();
        for attempt in 0..self.max_upload_attempts.max(1) {
            // Committed before it goes out: a lost answer is known to the next run.
            self.store
                .file_upload_sending(&self.target, sha)
                .map_err(|e| e.to_string())?;
            if sent_before {
                self.lock_stats().uploads_sent_again += 1;
            }
            match self.client.upload(&part, &self.counters).await {
                Ok(url) => {
                    self.store
                        .set_file_uploaded(&self.target, sha, &url)
                        .map_err(|e| e.to_string())?;
                    self.lock_stats().uploaded += 1;
                    return Ok(url);
                }
                Err(CallError::Ambiguous(message)) => {
                    last = message;
                    sent_before = true;
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(CallError::Rejected {
                    status: status @ (401 | 403),
                    message,
                }) => {
                    let reason = format!("upload refused ({status}): {message}");
                    *self
                        .uploads_refused
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = Some(reason.clone());
                    return Err(reason);
                }
                Err(e) => return Err(format!("upload: {e}")),
            }
        }
        Err(format!(
            "upload: gave up after {} attempts, the last: {last}",
            self.max_upload_attempts.max(1)
        ))
    }
}

/// Every file reference in `value`: `attachments[i].url` of any object, and `attrs.src` of
/// any TipTap node of type `image`.
/// Rewrites the file URLs in `value` that earlier runs re-hosted to `target` (the upload URL
/// and project, as [`Rehoster`] names it) to their Gleap URLs, from the state store alone:
/// no download, no upload (`verify`). Returns how many it rewrote.
pub fn rewrite_rehosted(store: &StateStore, target: &str, value: &mut Value) -> usize {
    let mut refs = Vec::new();
    collect(value, &mut String::new(), &mut refs);
    let mut rewritten = 0;
    for r in refs {
        let Ok(Some(crate::state::FileSource {
            sha256: Some(sha), ..
        })) = store.file_source(&r.url)
        else {
            continue;
        };
        if let Ok(Some(FileUpload {
            file_url: Some(url),
            ..
        })) = store.file_upload(target, &sha)
            && let Some(slot) = value.pointer_mut(&r.pointer)
        {
            *slot = Value::String(url);
            rewritten += 1;
        }
    }
    rewritten
}

/// The `target` [`Rehoster`] records uploads under for `client`.
pub fn upload_target(client: &GleapClient) -> String {
    format!("{} {}", client.upload_url(), client.settings().project)
}

fn collect(value: &Value, path: &mut String, out: &mut Vec<FileRef>) {
    match value {
        Value::Object(map) => {
            if map.get("type").and_then(Value::as_str) == Some("image")
                && let Some(attrs) = map.get("attrs")
                && let Some(src) = attrs.get("src").and_then(Value::as_str)
                && !src.trim().is_empty()
            {
                out.push(FileRef {
                    pointer: format!("{path}/attrs/src"),
                    url: src.to_string(),
                    name: attrs
                        .get("title")
                        .or_else(|| attrs.get("alt"))
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    mime: None,
                });
            }
            if let Some(Value::Array(items)) = map.get("attachments") {
                for (i, item) in items.iter().enumerate() {
                    if let Some(url) = item.get("url").and_then(Value::as_str)
                        && !url.trim().is_empty()
                    {
                        out.push(FileRef {
                            pointer: format!("{path}/attachments/{i}/url"),
                            url: url.to_string(),
                            name: item.get("name").and_then(Value::as_str).map(str::to_string),
                            mime: item.get("type").and_then(Value::as_str).map(str::to_string),
                        });
                    }
                }
            }
            for (key, child) in map {
                let len = path.len();
                path.push('/');
                path.push_str(&key.replace('~', "~0").replace('/', "~1"));
                collect(child, path, out);
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("/{i}"));
                collect(child, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// The last path segment of a URL (or the `name=` of its query), for an upload's name.
fn file_name(url: &str) -> String {
    let no_fragment = url.split('#').next().unwrap_or(url);
    let (path, query) = no_fragment.split_once('?').unwrap_or((no_fragment, ""));
    if let Some(name) = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("name="))
        .filter(|n| !n.is_empty())
    {
        return percent_encoding::percent_decode_str(name)
            .decode_utf8_lossy()
            .into_owned();
    }
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|s| !s.is_empty() && !s.contains(':'))
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .unwrap_or_else(|| "file".to_string())
}

/// A media type from a file name's extension.
fn guess_mime(name: &str) -> &'static str {
    let name = name.split(['?', '#']).next().unwrap_or(name);
    let ext = name.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "pdf" => "application/pdf",
        "txt" | "log" => "text/plain",
        "csv" => "text/csv",
        "json" => "application/json",
        "zip" => "application/zip",
        "mp4" => "video/mp4",
        "mov" => "video/quicktime",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachments_and_image_nodes_are_found_at_any_depth() {
        let v = json!({
            "comment": {"type": "doc", "content": [
                {"type": "paragraph", "content": [{"type": "text", "text": "x"}]},
                {"type": "image", "attrs": {"src": "https://a/i.png", "alt": "shot"}}
            ]},
            "attachments": [{"name": "r.pdf", "url": "https://a/r.pdf", "type": "application/pdf"}, {"name": "no url"}],
            "nested": {"a/b": {"attachments": [{"url": "rel/x.txt"}]}}
        });
        let mut refs = Vec::new();
        collect(&v, &mut String::new(), &mut refs);
        let urls: Vec<(&str, &str)> = refs
            .iter()
            .map(|r| (r.pointer.as_str(), r.url.as_str()))
            .collect();
        assert_eq!(
            urls,
            [
                ("/attachments/0/url", "https://a/r.pdf"),
                ("/comment/content/1/attrs/src", "https://a/i.png"),
                ("/nested/a~1b/attachments/0/url", "rel/x.txt"),
            ]
        );
        assert_eq!(refs[0].mime.as_deref(), Some("application/pdf"));
        assert_eq!(refs[1].name.as_deref(), Some("shot"));
        for r in &refs {
            assert!(v.pointer(&r.pointer).is_some(), "{}", r.pointer);
        }
    }

    #[test]
    fn names_come_from_the_url() {
        assert_eq!(
            file_name("https://acme.zendesk.com/attachments/token/t1/?name=screen%20shot.png"),
            "screen shot.png"
        );
        assert_eq!(file_name("https://x/i/o/30000021/guide.pdf#p"), "guide.pdf");
        assert_eq!(file_name("https://x/"), "x");
        assert_eq!(guess_mime("a.PNG"), "image/png");
        assert_eq!(guess_mime("a"), "application/octet-stream");
    }

    #[test]
    fn bad_settings_are_all_reported() {
        let c: FilesConfig = serde_json::from_value(json!({
            "max_file_mib": 0,
            "per_host_concurrency": 0,
            "auth": [{"host": "a.example", "bearer": "t", "user": "u"}, {"host": "https://b/", "bearer": "t"},
                     {"host": "", "bearer": "t"}, {"host": "c.example", "user": "u", "password": ""}]
        }))
        .unwrap();
        let p = c.check("files");
        assert_eq!(p.len(), 4, "{p:?}");
        assert_eq!(
            c.auth.iter().filter(|a| a.in_use()).count(),
            2,
            "empty ones ignored"
        );
        let ok: FilesConfig = serde_json::from_value(json!({
            "auth": [{"host": "a.example", "user": "u", "password": "p"}]
        }))
        .unwrap();
        assert!(ok.check("files").is_empty());
        assert_eq!(ok.settings().unwrap().max_bytes, 25 * 1048576);
        assert!(format!("{:?}", ok.settings().unwrap().auth).contains("<hidden>"));
        assert!(!format!("{:?}", ok.settings().unwrap().auth).contains("\"p\""));
    }
}
