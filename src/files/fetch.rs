//! Downloads into the vault: http(s) only, through the address guard ([`super::guard`]),
//! redirects followed by hand (each hop checked again, at most `max_redirects`), source
//! credentials sent only to the host they are configured for, a size cap checked on the
//! announced length and again while streaming, a few downloads per host at a time, and
//! retries with backoff for what may pass (5xx, 408, 429, resets, timeouts). Files a dump
//! ships (relative paths) are read from its folder instead.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use super::guard;
use super::vault::Vault;

/// A source credential for one host. Never printed.
#[derive(Clone)]
pub enum Credential {
    Bearer(String),
    Basic { user: String, password: String },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<hidden>")
    }
}

/// What the fetcher is allowed and told.
#[derive(Debug, Clone)]
pub struct FetchSettings {
    pub max_bytes: u64,
    pub max_redirects: u32,
    pub allow_private: bool,
    pub max_attempts: u32,
    pub timeout: Duration,
    pub per_host: usize,
    /// Where relative paths are read from.
    pub dir: Option<PathBuf>,
    /// `(host, credential)`: the host as in URLs (`example.zendesk.com`, or with `:port`).
    pub auth: Vec<(String, Credential)>,
}

/// A file had: where it is in the vault, its size and media type.
#[derive(Debug, Clone, PartialEq)]
pub struct Had {
    pub sha256: String,
    pub size: u64,
    pub mime: Option<String>,
}

enum Attempt {
    Done(Had),
    /// May pass if tried again (with how long the host asked to wait).
    Transient(String, Option<Duration>),
    Permanent(String),
}

pub struct Fetcher {
    http: reqwest::Client,
    settings: FetchSettings,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Fetcher {
    pub fn new(settings: FetchSettings) -> Result<Fetcher, String> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve names itself, past the guard.
            .no_proxy()
            .dns_resolver(guard::resolver(settings.allow_private))
            .connect_timeout(Duration::from_secs(15))
            .user_agent(concat!("gleap-etl/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the download client: {e}"))?;
        Ok(Fetcher {
            http,
            settings,
            hosts: Mutex::new(HashMap::new()),
        })
    }

    /// Has `url` (or a relative path in the dump folder) into the vault.
    pub async fn fetch(&self, url: &str, vault: &Vault) -> Result<Had, String> {
        let has_scheme = url.split_once(':').is_some_and(|(scheme, _)| {
            scheme.len() > 1
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        });
        if !has_scheme {
            return self.read_shipped(url, vault);
        }
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
        check_scheme(&parsed)?;
        let host = host_key(&parsed);
        let permits = self
            .hosts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(host)
            .or_insert_with(|| Arc::new(Semaphore::new(self.settings.per_host.max(1))))
            .clone();
        let _permit = permits.acquire().await.map_err(|e| e.to_string())?;
        let mut last = String::new();
        for attempt in 0..self.settings.max_attempts.max(1) {
            match self.attempt(parsed.clone(), vault).await {
                Attempt::Done(had) => return Ok(had),
                Attempt::Permanent(reason) => return Err(reason),
                Attempt::Transient(reason, wait) => {
                    last = reason;
                    if attempt + 1 < self.settings.max_attempts {
                        let pause = wait
                            .map(|w| w.min(Duration::from_secs(30)))
                            .unwrap_or_else(|| crate::gleap::client::backoff(attempt));
                        tokio::time::sleep(pause).await;
                    }
                }
            }
        }
        Err(format!(
            "gave up after {} attempts, the last: {last}",
            self.settings.max_attempts.max(1)
        ))
    }

    /// One attempt: the redirects followed, the body streamed into the vault.
    async fn attempt(&self, mut current: reqwest::Url, vault: &Vault) -> Attempt {
        let s = &self.settings;
        let mut hops = 0;
        let mut response = loop {
            if let Err(e) = check_scheme(&current) {
                return Attempt::Permanent(e);
            }
            if let Some(ip) = literal_ip(&current)
                && !s.allow_private
                && let Some(why) = guard::refused(ip)
            {
                return Attempt::Permanent(format!(
                    "{ip} is {why}, which downloads may not reach (`files: {{allow_private_hosts: true}}` allows it)"
                ));
            }
            let mut request = self.http.get(current.clone()).timeout(s.timeout);
            if let Some(credential) = self.credential_for(&current) {
                request = match credential {
                    Credential::Bearer(token) => request.bearer_auth(token),
                    Credential::Basic { user, password } => {
                        request.basic_auth(user, Some(password))
                    }
                };
            }
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) => {
                    if let Some(reason) = guard::refusal(&e) {
                        return Attempt::Permanent(reason);
                    }
                    return Attempt::Transient(describe(&e), None);
                }
            };
            let status = response.status();
            if status.is_redirection() {
                let Some(location) = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                else {
                    return Attempt::Permanent(format!(
                        "the file host answered {} without a Location",
                        status.as_u16()
                    ));
                };
                if hops >= s.max_redirects {
                    return Attempt::Permanent(format!(
                        "more than {} redirects (`files: {{max_redirects}}`)",
                        s.max_redirects
                    ));
                }
                current = match current.join(location) {
                    Ok(next) => next,
                    Err(e) => {
                        return Attempt::Permanent(format!("a redirect to a bad URL ({e})"));
                    }
                };
                hops += 1;
                continue;
            }
            if status.is_success() {
                break response;
            }
            let code = status.as_u16();
            let wait = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
                .map(|secs| Duration::from_secs_f64(secs.clamp(0.0, 30.0)));
            let reason = format!("the file host answered {code}");
            return if code == 408 || code == 429 || code >= 500 {
                Attempt::Transient(reason, wait)
            } else {
                Attempt::Permanent(reason)
            };
        };
        if let Some(len) = response.content_length()
            && len > s.max_bytes
        {
            return Attempt::Permanent(too_large(len, s.max_bytes));
        }
        let mime = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string())
            .filter(|v| !v.is_empty());
        let mut incoming = match vault.begin() {
            Ok(i) => i,
            Err(e) => return Attempt::Permanent(format!("cannot write to the vault: {e}")),
        };
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if incoming.size() + chunk.len() as u64 > s.max_bytes {
                        let seen = incoming.size() + chunk.len() as u64;
                        incoming.discard();
                        return Attempt::Permanent(too_large(seen, s.max_bytes));
                    }
                    if let Err(e) = incoming.write(&chunk) {
                        incoming.discard();
                        return Attempt::Permanent(format!("cannot write to the vault: {e}"));
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    incoming.discard();
                    return Attempt::Transient(
                        format!("the download broke off: {}", describe(&e)),
                        None,
                    );
                }
            }
        }
        match incoming.commit(vault) {
            Ok((sha256, size)) => Attempt::Done(Had { sha256, size, mime }),
            Err(e) => Attempt::Permanent(format!("cannot write to the vault: {e}")),
        }
    }

    /// The credential for this URL's host, if one is configured for exactly that host.
    fn credential_for(&self, url: &reqwest::Url) -> Option<&Credential> {
        // Never in clear text to the open internet (a redirect to http:// of the same host
        // included); plain http only where private hosts are allowed (a helpdesk on your own
        // network, the tests' file server).
        if url.scheme() != "https" && !self.settings.allow_private {
            return None;
        }
        let host = url.host_str()?.to_ascii_lowercase();
        let with_port = url.port().map(|p| format!("{host}:{p}"));
        self.settings
            .auth
            .iter()
            .find(|(h, _)| {
                let h = h.to_ascii_lowercase();
                h == host || Some(&h) == with_port.as_ref()
            })
            .map(|(_, c)| c)
    }

    /// A file the dump ships: a relative path inside `files: {dir}`.
    fn read_shipped(&self, rel: &str, vault: &Vault) -> Result<Had, String> {
        let Some(dir) = &self.settings.dir else {
            return Err(
                "a relative path, and no folder to read it from (`files: {dir: ...}`)".into(),
            );
        };
        let path = Path::new(rel);
        if path
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err("a path that leaves the files folder".into());
        }
        let full = dir.join(path);
        let (root, real) = match (dir.canonicalize(), full.canonicalize()) {
            (Ok(root), Ok(real)) => (root, real),
            (Err(e), _) => return Err(format!("the files folder {}: {e}", dir.display())),
            (_, Err(e)) => return Err(format!("not in the files folder ({e})")),
        };
        if !real.starts_with(&root) {
            return Err("a link that leaves the files folder".into());
        }
        let meta = std::fs::metadata(&real).map_err(|e| e.to_string())?;
        if !meta.is_file() {
            return Err("not a file".into());
        }
        if meta.len() > self.settings.max_bytes {
            return Err(too_large(meta.len(), self.settings.max_bytes));
        }
        let mut file = std::fs::File::open(&real).map_err(|e| e.to_string())?;
        let mut incoming = vault
            .begin()
            .map_err(|e| format!("cannot write to the vault: {e}"))?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            use std::io::Read;
            let n = match file.read(&mut buf) {
                Ok(n) => n,
                Err(e) => {
                    incoming.discard();
                    return Err(e.to_string());
                }
            };
            if n == 0 {
                break;
            }
            if incoming.size() + n as u64 > self.settings.max_bytes {
                let seen = incoming.size() + n as u64;
                incoming.discard();
                return Err(too_large(seen, self.settings.max_bytes));
            }
            if let Err(e) = incoming.write(&buf[..n]) {
                incoming.discard();
                return Err(format!("cannot write to the vault: {e}"));
            }
        }
        let (sha256, size) = incoming
            .commit(vault)
            .map_err(|e| format!("cannot write to the vault: {e}"))?;
        Ok(Had {
            sha256,
            size,
            mime: None,
        })
    }
}

fn check_scheme(url: &reqwest::Url) -> Result<(), String> {
    match url.scheme() {
        "http" | "https" => Ok(()),
        other => Err(format!(
            "a `{other}:` URL: downloads follow only http and https"
        )),
    }
}

fn host_key(url: &reqwest::Url) -> String {
    match url.port_or_known_default() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    }
}

fn literal_ip(url: &reqwest::Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

fn too_large(size: u64, max: u64) -> String {
    format!(
        "larger than the size cap: {:.1} MiB or more, the cap is {:.1} MiB (`files: {{max_file_mib}}`)",
        size as f64 / 1048576.0,
        max as f64 / 1048576.0
    )
}

/// A transport error, without the URL (it may carry a signature) or any header (a broken
/// body is "the connection failed": the caller says the download broke off).
fn describe(e: &reqwest::Error) -> String {
    crate::gleap::client::describe_transport(e, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetcher(allow_private: bool) -> Fetcher {
        Fetcher::new(FetchSettings {
            max_bytes: 1024,
            max_redirects: 5,
            allow_private,
            max_attempts: 1,
            timeout: Duration::from_secs(1),
            per_host: 1,
            dir: None,
            auth: vec![(
                "acme.zendesk.com".into(),
                Credential::Bearer("secret-token".into()),
            )],
        })
        .unwrap()
    }

    #[tokio::test]
    async fn credentials_go_to_their_host_over_https_only() {
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        let strict = fetcher(false);
        assert!(
            strict
                .credential_for(&url("https://acme.zendesk.com/a"))
                .is_some()
        );
        assert!(
            strict
                .credential_for(&url("https://ACME.zendesk.com/a"))
                .is_some()
        );
        assert!(
            strict
                .credential_for(&url("http://acme.zendesk.com/a"))
                .is_none()
        );
        assert!(
            strict
                .credential_for(&url("https://cdn.zendesk.com/a"))
                .is_none()
        );
        assert!(
            strict
                .credential_for(&url("https://acme.zendesk.com.evil.io/a"))
                .is_none()
        );
        let private = fetcher(true);
        assert!(
            private
                .credential_for(&url("http://acme.zendesk.com/a"))
                .is_some()
        );
    }
}
