//! Files and inline images re-hosted (`attachments: rehost`): the shipped Zendesk and
//! Intercom pipelines on copies of the samples whose file URLs point at a local file server
//! standing in for the old helpdesk's file host (some files 404, one takes retries, one is
//! over the size cap, one redirects, 5% of its answers are 503), against the emulator with
//! 5% faults; killed with SIGKILL and run again; run again with the file server gone. Also
//! the downloader's rules: the address guard, the redirect cap, credentials kept to their
//! host, the size cap.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use gleap_etl::emulator::{Emulator, EmulatorConfig, FaultConfig};
use gleap_etl::files::fetch::{Credential, FetchSettings, Fetcher};
use gleap_etl::files::vault::Vault;
use serde_json::Value;

use crate::util::{json_lines, output, read_text, repo, run_with_pid, shipped_pipeline};

const KEY: &str = "files-key";
const PROJECT: &str = "65a0000000000000000000f1";
/// The size cap the runs use (`FILES_MAX_MIB`); the big file is twice it.
const CAP_MIB: f64 = 0.5;

/// The old helpdesk's file host.
#[derive(Default)]
struct FileHost {
    /// 200 answers per path and query, of the files that can be had.
    served: Mutex<BTreeMap<String, u64>>,
    /// Every request per path and query.
    asked: Mutex<BTreeMap<String, u64>>,
    /// Answer 503 to this share of requests (seeded).
    fault_rate: f64,
    rng: Mutex<Option<fastrand::Rng>>,
    faults: AtomicU64,
}

/// What the file host serves for a path: its bytes, or a status to answer instead.
enum Served {
    Bytes(Vec<u8>, &'static str),
    Status(StatusCode),
    Redirect(String),
}

/// Files whose source cannot be had, and the reason the report must give.
const UNHAVEABLE: [(&str, &str); 4] = [
    ("t5000140", "answered 404"),
    ("t5000450", "larger than the size cap"),
    ("30000021", "larger than the size cap"),
    ("missing.png", "answered 404"),
];

fn content(path_and_query: &str, asked: u64) -> Served {
    let name = path_and_query
        .split("name=")
        .nth(1)
        .or_else(|| path_and_query.rsplit('/').next())
        .unwrap_or("file")
        .to_string();
    if path_and_query.contains("t5000140") || path_and_query.contains("missing.png") {
        return Served::Status(StatusCode::NOT_FOUND);
    }
    // Slow: answers 503 twice before the file.
    if path_and_query.contains("t5000230") && asked <= 2 {
        return Served::Status(StatusCode::SERVICE_UNAVAILABLE);
    }
    if path_and_query.contains("30000021") || path_and_query.contains("t5000450") {
        return Served::Bytes(
            vec![b'x'; (CAP_MIB * 2.0 * 1048576.0) as usize],
            "application/pdf",
        );
    }
    if path_and_query.contains("30000009") {
        return Served::Redirect("/ic/final/guide.pdf".into());
    }
    // Every screen.png is the same picture; guide.pdf is one document at two URLs.
    let (bytes, mime) = match name.as_str() {
        "screen.png" => (b"PNG the same screenshot".to_vec(), "image/png"),
        "guide.pdf" => (b"PDF the guide".to_vec(), "application/pdf"),
        other => (
            format!("FILE {other} {path_and_query}").into_bytes(),
            "application/octet-stream",
        ),
    };
    Served::Bytes(bytes, mime)
}

async fn serve_file(State(host): State<Arc<FileHost>>, request: Request) -> Response {
    let key = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let asked = {
        let mut asked = host.asked.lock().unwrap();
        let n = asked.entry(key.clone()).or_default();
        *n += 1;
        *n
    };
    let fault = host
        .rng
        .lock()
        .unwrap()
        .as_mut()
        .is_some_and(|r| r.f64() < host.fault_rate);
    if fault {
        host.faults.fetch_add(1, Ordering::Relaxed);
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    match content(&key, asked) {
        Served::Bytes(bytes, mime) => {
            // Files that are had (not refused for their size).
            if !UNHAVEABLE.iter().any(|(k, _)| key.contains(k)) {
                *host.served.lock().unwrap().entry(key).or_default() += 1;
            }
            ([(header::CONTENT_TYPE, mime)], bytes).into_response()
        }
        Served::Status(status) => status.into_response(),
        Served::Redirect(to) => (StatusCode::FOUND, [(header::LOCATION, to)]).into_response(),
    }
}

/// A file host on 127.0.0.1:0 and a switch that stops it.
async fn start_file_host(
    fault_rate: f64,
) -> (Arc<FileHost>, String, tokio::sync::oneshot::Sender<()>) {
    let host = Arc::new(FileHost {
        fault_rate,
        rng: Mutex::new(Some(fastrand::Rng::with_seed(7))),
        ..Default::default()
    });
    let app = Router::new().fallback(serve_file).with_state(host.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    (host, format!("http://{addr}"), stop)
}

/// The sample dump copied with its file URLs pointing at the file host, as a user's dump
/// points at their helpdesk's.
fn copy_dump(samples: &str, to: &Path, rewrites: &[(&str, String)]) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(repo().join("samples").join(samples)).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let gz = name.ends_with(".gz");
        let mut text = read_text(&path);
        for (from, to) in rewrites {
            text = text.replace(from, to);
        }
        let out = std::fs::File::create(to.join(&name)).unwrap();
        if gz {
            let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
            enc.write_all(text.as_bytes()).unwrap();
            enc.finish().unwrap();
        } else {
            std::io::BufWriter::new(out)
                .write_all(text.as_bytes())
                .unwrap();
        }
    }
}

struct Case {
    pipeline: &'static str,
    dir_var: &'static str,
    samples: &'static str,
    /// (sample host prefix, path on the file host)
    rewrites: Vec<(&'static str, &'static str)>,
    /// A file added to one sample message so that every pipeline has a 404.
    extra: Option<(&'static str, &'static str, &'static str)>,
}

fn command(case: &Case, dump: &Path, state: &Path, emulator: &Emulator, report: &Path) -> Command {
    let extra = ["--report", report.to_str().unwrap()];
    let mut cmd = shipped_pipeline(case.pipeline, &extra, emulator, KEY, PROJECT);
    // One request in flight: a kill on a message create leaves no upload unanswered.
    cmd.env("GLEAP_CONCURRENCY", "1")
        .env("GLEAP_ATTACHMENTS", "rehost")
        .env("FILES_ALLOW_PRIVATE_HOSTS", "true")
        .env("FILES_MAX_MIB", CAP_MIB.to_string())
        .env(case.dir_var, dump)
        .env("STATE_DIR", state)
        .env_remove("RUST_LOG");
    cmd
}

/// Every file URL of the dump's files that points at the file host.
fn dump_urls(dump: &Path, base: &str) -> BTreeSet<String> {
    let mut urls = BTreeSet::new();
    for entry in std::fs::read_dir(dump).unwrap() {
        let path = entry.unwrap().path();
        // Help-centre files belong to the help-centre pipelines, not to these.
        let name = path.file_name().unwrap().to_string_lossy();
        if name.starts_with("help_center") || name.starts_with("articles") {
            continue;
        }
        let text = read_text(&path);
        for piece in text.split(base).skip(1) {
            let end = piece
                .find(|c: char| c == '"' || c == '\\' || c.is_whitespace())
                .unwrap_or(piece.len());
            urls.insert(format!("{base}{}", &piece[..end]));
        }
    }
    urls
}

/// Kills the run when the emulator has carried out `at` message creates and the request
/// just carried out was not an upload (with one request in flight, none is unanswered).
#[derive(Clone, Default)]
struct MessageKiller {
    pid: Arc<std::sync::atomic::AtomicU32>,
    at: Arc<AtomicU64>,
    app: Arc<OnceLock<Arc<gleap_etl::emulator::api::App>>>,
    uploads_seen: Arc<AtomicU64>,
    fired: Arc<AtomicBool>,
}

/// The source URLs the state store holds a content for.
fn recorded_urls(state: &Path) -> BTreeSet<String> {
    let Ok(db) = rusqlite::Connection::open_with_flags(
        state.join("state.sqlite"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    ) else {
        return BTreeSet::new();
    };
    let mut stmt = db
        .prepare("SELECT url FROM file_sources WHERE sha256 IS NOT NULL")
        .unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The path the file host serves a source URL's file at (after its redirect).
fn served_path(url: &str, base: &str) -> String {
    if url.contains("30000009") {
        return "/ic/final/guide.pdf".into();
    }
    url.trim_start_matches(base).to_string()
}

impl MessageKiller {
    fn hook(&self) -> gleap_etl::emulator::api::RequestHook {
        let this = self.clone();
        Arc::new(move |_| {
            let Some(app) = this.app.get() else { return };
            let stats = app.stats();
            let uploads = stats["uploads"]["uploads"].as_u64().unwrap_or(0);
            let was_upload = uploads != this.uploads_seen.swap(uploads, Ordering::SeqCst);
            let messages: u64 = stats["requests"]["POST /messages"]
                .as_object()
                .map(|m| m.values().filter_map(Value::as_u64).sum())
                .unwrap_or(0);
            if !was_upload
                && messages >= this.at.load(Ordering::SeqCst)
                && !this.fired.swap(true, Ordering::SeqCst)
            {
                let pid = this.pid.load(Ordering::SeqCst);
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        })
    }

    async fn run_until_killed(&self, cmd: Command, at: u64) -> bool {
        self.at.store(at, Ordering::SeqCst);
        self.fired.store(false, Ordering::SeqCst);
        let status = run_with_pid(cmd, self.pid.clone()).await;
        self.at.store(u64::MAX, Ordering::SeqCst);
        std::os::unix::process::ExitStatusExt::signal(&status) == Some(9)
    }
}

/// The whole acceptance line for one pipeline.
async fn rehost_samples(case: Case) {
    let (host, base, stop_host) = start_file_host(0.05).await;
    let tmp = tempfile::tempdir().unwrap();
    let dump = tmp.path().join("dump");
    let rewrites: Vec<(&str, String)> = case
        .rewrites
        .iter()
        .map(|(from, to)| (*from, format!("{base}{to}")))
        .collect();
    copy_dump(case.samples, &dump, &rewrites);
    if let Some((file, from, to)) = case.extra {
        let path = dump.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let to = to.replace("{base}", &base);
        assert!(text.contains(from), "{file} holds {from}");
        std::fs::write(&path, text.replacen(from, &to, 1)).unwrap();
    }
    let state = tmp.path().join("state");
    let report_path = tmp.path().join("report.json");
    let killer = MessageKiller::default();
    killer.at.store(u64::MAX, Ordering::SeqCst);
    let emulator = Emulator::start(EmulatorConfig {
        api_key: Some(KEY.into()),
        project: Some(PROJECT.into()),
        quota: None,
        faults: FaultConfig {
            error_rate: 0.03,
            reset_rate: 0.01,
            lost_rate: 0.01,
            seed: 5,
            ..Default::default()
        },
        on_request: Some(killer.hook()),
        ..Default::default()
    })
    .await
    .unwrap();
    let _ = killer.app.set(emulator.app());

    // Killed twice, a few message creates apart, then run to the end.
    // A download the kill cut short (served, not recorded) is had again, rightly: counted.
    let mut kills = 0;
    let mut cut: BTreeMap<String, u64> = BTreeMap::new();
    for at in [3, 9] {
        let before = host.served.lock().unwrap().clone();
        let cmd = command(&case, &dump, &state, &emulator, &report_path);
        if killer.run_until_killed(cmd, at).await {
            kills += 1;
        }
        let recorded: BTreeSet<String> = recorded_urls(&state)
            .iter()
            .map(|u| served_path(u, &base))
            .collect();
        for (path, n) in host.served.lock().unwrap().iter() {
            if before.get(path) != Some(n) && !recorded.contains(path) {
                *cut.entry(path.clone()).or_default() += 1;
            }
        }
    }
    assert!(kills >= 1, "at least one run was killed mid-way");
    let done = output(command(&case, &dump, &state, &emulator, &report_path)).await;
    assert_eq!(
        done.code, 1,
        "dead letters for the files kept as links: {done:?}"
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    let messages_stream = report["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sink"]["detail"]["files"].is_object())
        .expect("a stream re-hosts files")
        .clone();
    let files = &messages_stream["sink"]["detail"]["files"];
    let first_files = files.clone();

    // What the runs had the file host serve (before the checks below ask it too).
    let served_by_runs: BTreeMap<String, u64> = host.served.lock().unwrap().clone();
    // What the dump refers to, and what each haveable URL's content is.
    let urls = dump_urls(&dump, &base);
    let unhaveable: BTreeSet<&String> = urls
        .iter()
        .filter(|u| UNHAVEABLE.iter().any(|(k, _)| u.contains(k)))
        .collect();
    assert!(unhaveable.len() >= 2, "{unhaveable:?}");
    let client = reqwest::Client::new();
    let mut expected_contents = BTreeSet::new();
    for url in urls.iter().filter(|u| !unhaveable.contains(u)) {
        let mut bytes = Vec::new();
        for _ in 0..20 {
            let r = client.get(url).send().await.unwrap();
            if r.status().is_success() {
                bytes = r.bytes().await.unwrap().to_vec();
                break;
            }
        }
        assert!(!bytes.is_empty(), "{url}");
        expected_contents.insert(format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&bytes)));
    }

    // Every distinct content is in Gleap's uploads exactly once.
    let uploads = emulator.uploads();
    let mut per_content: BTreeMap<String, u64> = BTreeMap::new();
    for u in uploads.as_array().unwrap() {
        *per_content
            .entry(u["xxh3"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let stats = emulator.stats();
    let lost_uploads = stats["requests"]["POST /uploads"]["lost"]
        .as_u64()
        .unwrap_or(0);
    let duplicates: u64 = per_content.values().map(|n| n - 1).sum();
    assert_eq!(
        per_content.keys().cloned().collect::<BTreeSet<_>>(),
        expected_contents,
        "every haveable file's content uploaded"
    );
    // An upload whose answer was lost (an injected fault) cannot be looked up: it is sent
    // again, and counted; no other content is uploaded twice, kills included.
    assert_eq!(
        duplicates, lost_uploads,
        "uploads: {uploads:#}\nstats: {stats:#}"
    );

    // Every message points at Gleap's URLs, except the files that could not be had.
    let dump_data = emulator.dump();
    let upload_prefix = format!("http://{}/uploads/files/", emulator.addr());
    let mut references = 0;
    let mut kept = BTreeSet::new();
    for m in dump_data["messages"].as_array().unwrap() {
        for a in m["attachments"].as_array().into_iter().flatten() {
            let url = a["url"].as_str().unwrap();
            references += 1;
            if !url.starts_with(&upload_prefix) {
                assert!(
                    unhaveable.iter().any(|u| u.as_str() == url),
                    "a message points at {url}, neither Gleap nor a file that could not be had"
                );
                kept.insert(url.to_string());
            }
        }
    }
    assert!(
        references >= 4,
        "the samples' messages carry files: {references}"
    );
    assert!(!kept.is_empty());
    // And the Gleap URLs serve the files.
    let one = dump_data["messages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["attachments"].as_array().cloned().unwrap_or_default())
        .find(|a| a["url"].as_str().unwrap().starts_with(&upload_prefix))
        .unwrap();
    let served = client
        .get(one["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert!(served.status().is_success());

    // Each file kept with its link: reported with its reason, and a dead letter.
    let reasons = files["failure_reasons"].as_object().unwrap();
    for url in &kept {
        let (_, why) = UNHAVEABLE.iter().find(|(k, _)| url.contains(k)).unwrap();
        assert!(
            reasons.keys().any(|r| r.contains(why)),
            "{url}: {why} not among {reasons:?}"
        );
    }
    let letters = json_lines(&std::fs::read_to_string(state.join("dead-letter.jsonl")).unwrap());
    for url in &kept {
        assert!(
            letters.iter().any(|l| l["stage"] == "sink (files)"
                && l["reason"].as_str().unwrap().contains(url.as_str())
                && l["reason"]
                    .as_str()
                    .unwrap()
                    .contains("sent with the file's original URL")),
            "no dead letter for {url}: {letters:#?}"
        );
    }
    assert!(
        letters.iter().all(|l| l["stage"] == "sink (files)"),
        "only files were dead-lettered: {letters:#?}"
    );
    assert!(
        done.stderr.contains("kept their original URL"),
        "{}",
        done.stderr
    );

    // Nothing that was had is downloaded again: once, plus once for each kill that cut its
    // download short.
    for (path, n) in &served_by_runs {
        let cut = cut.get(path).copied().unwrap_or(0);
        assert_eq!(
            *n,
            1 + cut,
            "{path} downloaded {n} times: {served_by_runs:#?}"
        );
    }

    // The old helpdesk closes: a re-run completes from the vault.
    stop_host.send(()).unwrap();
    let uploads_before = emulator.uploads().as_array().unwrap().len();
    let again = output(command(&case, &dump, &state, &emulator, &report_path)).await;
    assert_eq!(again.code, 1, "{again:?}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    let files = report["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|s| s["sink"]["detail"]["files"].as_object().cloned())
        .unwrap();
    assert_eq!(files["downloaded"], 0, "{files:?}");
    assert_eq!(files["uploaded"], 0, "{files:?}");
    assert_eq!(
        files["rewritten"], first_files["rewritten"],
        "every file re-hosted again, from the vault: {files:?}"
    );
    assert!(files["from_vault"].as_u64().unwrap() >= 1);
    assert_eq!(files["failed"], first_files["failed"]);
    assert_eq!(emulator.uploads().as_array().unwrap().len(), uploads_before);
    let stats = emulator.stats();
    let created: u64 = stats["requests"]["POST /messages"]
        .as_object()
        .map(|m| m.get("200").and_then(Value::as_u64).unwrap_or(0))
        .unwrap_or(0);
    let messages_now = emulator.dump()["messages"].as_array().unwrap().len();
    assert_eq!(
        messages_now,
        dump_data["messages"].as_array().unwrap().len()
    );
    assert!(created as usize >= messages_now);
    let vault: Vec<_> = std::fs::read_dir(state.join("files"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .collect();
    assert!(vault.len() >= expected_contents.len());

    // `verify` compares the records with the Gleap URLs of their files, from the state
    // store: all arrived and equal, and nothing downloaded or uploaded for it.
    let mut verify = command(&case, &dump, &state, &emulator, &report_path);
    let args: Vec<std::ffi::OsString> = verify.get_args().map(Into::into).collect();
    let mut cmd = Command::new(verify.get_program());
    cmd.arg("verify").arg(&args[1]).arg("--json");
    for (k, v) in verify.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.current_dir(repo())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    verify = cmd;
    let uploads_before = emulator.uploads().as_array().unwrap().len();
    let checked = crate::util::output(verify).await;
    assert_eq!(checked.code, 0, "{checked:?}");
    assert!(checked.stdout.contains("\"ok\": true"), "{checked:?}");
    assert_eq!(emulator.uploads().as_array().unwrap().len(), uploads_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zendesk_files_are_rehosted_once_through_faults_kills_and_a_closed_helpdesk() {
    rehost_samples(Case {
        pipeline: "zendesk_to_gleap.yaml",
        dir_var: "ZENDESK_DIR",
        samples: "zendesk",
        rewrites: vec![("https://acme.zendesk.com/attachments/", "/zd/attachments/")],
        extra: None,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intercom_files_are_rehosted_once_through_faults_kills_and_a_closed_helpdesk() {
    rehost_samples(Case {
        pipeline: "intercom_to_gleap.yaml",
        dir_var: "INTERCOM_DIR",
        samples: "intercom",
        rewrites: vec![("https://downloads.intercomcdn.com/", "/ic/")],
        extra: Some((
            "conversations.json",
            "/ic/i/o/err.png",
            "/ic/i/o/missing.png",
        )),
    })
    .await;
}

// The downloader's rules, each against a local server.

#[derive(Default)]
struct Seen {
    requests: Mutex<Vec<(String, Option<String>)>>,
}

async fn recording_server(
    handler: impl Fn(&str) -> Response + Send + Sync + 'static,
    bind: &str,
) -> (Arc<Seen>, u16) {
    let seen = Arc::new(Seen::default());
    let handler = Arc::new(handler);
    let s = seen.clone();
    let app = Router::new().fallback(move |request: Request| {
        let s = s.clone();
        let handler = handler.clone();
        async move {
            let path = request.uri().path().to_string();
            let auth = request
                .headers()
                .get(header::AUTHORIZATION)
                .map(|v| v.to_str().unwrap().to_string());
            s.requests.lock().unwrap().push((path.clone(), auth));
            handler(&path)
        }
    });
    let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (seen, port)
}

fn settings(allow_private: bool) -> FetchSettings {
    FetchSettings {
        max_bytes: 1048576,
        max_redirects: 3,
        allow_private,
        max_attempts: 2,
        timeout: std::time::Duration::from_secs(10),
        per_host: 2,
        dir: None,
        auth: Vec::new(),
    }
}

#[tokio::test]
async fn downloads_refuse_loopback_and_private_addresses_unless_allowed() {
    let (seen, port) = recording_server(|_| "ok".into_response(), "127.0.0.1:0").await;
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::open(&dir.path().join("files")).unwrap();
    let guarded = Fetcher::new(settings(false)).unwrap();
    for url in [
        format!("http://127.0.0.1:{port}/a"),
        format!("http://localhost:{port}/b"),
        format!("http://[::ffff:127.0.0.1]:{port}/c"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://10.0.0.1/x".to_string(),
    ] {
        let err = guarded.fetch(&url, &vault).await.unwrap_err();
        assert!(
            err.contains("which downloads may not reach"),
            "{url}: {err}"
        );
    }
    assert!(
        seen.requests.lock().unwrap().is_empty(),
        "nothing reached the server"
    );
    for url in ["file:///etc/passwd", "ftp://example.com/x", "gopher://x/"] {
        let err = guarded.fetch(url, &vault).await.unwrap_err();
        assert!(err.contains("only http and https"), "{url}: {err}");
    }
    let open = Fetcher::new(settings(true)).unwrap();
    let had = open
        .fetch(&format!("http://localhost:{port}/d"), &vault)
        .await
        .unwrap();
    assert_eq!(vault.read(&had.sha256).unwrap(), b"ok");
}

#[tokio::test]
async fn redirects_are_capped_and_each_hop_checked() {
    let (seen, port) = recording_server(
        |path| {
            let n: u32 = path.trim_start_matches("/r/").parse().unwrap_or(0);
            (
                StatusCode::FOUND,
                [(header::LOCATION, format!("/r/{}", n + 1))],
            )
                .into_response()
        },
        "127.0.0.1:0",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::open(&dir.path().join("files")).unwrap();
    let fetcher = Fetcher::new(settings(true)).unwrap();
    let err = fetcher
        .fetch(&format!("http://127.0.0.1:{port}/r/0"), &vault)
        .await
        .unwrap_err();
    assert!(err.contains("more than 3 redirects"), "{err}");
    assert_eq!(
        seen.requests.lock().unwrap().len(),
        4,
        "the first and 3 redirects"
    );
    // Each hop is checked like the first: a redirect to another scheme is refused.
    let (_, to_file) = recording_server(
        |_| {
            (
                StatusCode::FOUND,
                [(header::LOCATION, "file:///etc/passwd")],
            )
                .into_response()
        },
        "127.0.0.1:0",
    )
    .await;
    let err = fetcher
        .fetch(&format!("http://127.0.0.1:{to_file}/x"), &vault)
        .await
        .unwrap_err();
    assert!(err.contains("only http and https"), "{err}");
}

#[tokio::test]
async fn credentials_go_only_to_their_own_host() {
    let (other, other_port) = recording_server(|_| "other".into_response(), "127.0.0.1:0").await;
    let (own, own_port) = recording_server(
        move |path| match path {
            "/same" => (StatusCode::FOUND, [(header::LOCATION, "/file")]).into_response(),
            "/away" => (
                StatusCode::FOUND,
                [(
                    header::LOCATION,
                    format!("http://127.0.0.1:{other_port}/file"),
                )],
            )
                .into_response(),
            _ => "own".into_response(),
        },
        "127.0.0.1:0",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::open(&dir.path().join("files")).unwrap();
    let mut s = settings(true);
    s.auth = vec![("localhost".into(), Credential::Bearer("s3cret".into()))];
    let fetcher = Fetcher::new(s).unwrap();
    fetcher
        .fetch(&format!("http://localhost:{own_port}/same"), &vault)
        .await
        .unwrap();
    let had = fetcher
        .fetch(&format!("http://localhost:{own_port}/away"), &vault)
        .await
        .unwrap();
    assert_eq!(vault.read(&had.sha256).unwrap(), b"other");
    let own_seen = own.requests.lock().unwrap().clone();
    assert_eq!(own_seen.len(), 3);
    assert!(
        own_seen
            .iter()
            .all(|(_, a)| a.as_deref() == Some("Bearer s3cret")),
        "the own host gets the token, after a redirect to itself too: {own_seen:?}"
    );
    let other = other.requests.lock().unwrap().clone();
    assert_eq!(other.len(), 1);
    assert_eq!(
        other[0].1, None,
        "no credential after a redirect to another host"
    );
    // Basic auth, the Zendesk way.
    let mut s = settings(true);
    s.auth = vec![(
        format!("localhost:{own_port}"),
        Credential::Basic {
            user: "me@acme.com/token".into(),
            password: "tok".into(),
        },
    )];
    Fetcher::new(s)
        .unwrap()
        .fetch(&format!("http://localhost:{own_port}/file"), &vault)
        .await
        .unwrap();
    let basic = own.requests.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        basic.1.as_deref(),
        Some("Basic bWVAYWNtZS5jb20vdG9rZW46dG9r"),
        "host:port rules match too"
    );
}

#[tokio::test]
async fn files_over_the_size_cap_are_refused_announced_or_not() {
    let (_, port) = recording_server(
        |path| match path {
            "/big" => vec![b'x'; 2 * 1048576].into_response(),
            _ => vec![b'z'; 1048576].into_response(),
        },
        "127.0.0.1:0",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::open(&dir.path().join("files")).unwrap();
    let fetcher = Fetcher::new(settings(true)).unwrap();
    let streamed = unannounced_server(3 * 1048576).await;
    for url in [format!("http://127.0.0.1:{port}/big"), streamed] {
        let err = fetcher.fetch(&url, &vault).await.unwrap_err();
        assert!(err.contains("larger than the size cap"), "{url}: {err}");
    }
    let had = fetcher
        .fetch(&format!("http://127.0.0.1:{port}/exact"), &vault)
        .await
        .unwrap();
    assert_eq!(had.size, 1048576, "a file of exactly the cap is had");
    let left: Vec<_> = std::fs::read_dir(vault.dir().join("tmp"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "refused downloads leave no temporary file");
}

/// A server that answers `size` bytes without announcing a length (read to the close).
async fn unannounced_server(size: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
                    .await;
                let chunk = vec![b'y'; 65536];
                let mut sent = 0;
                while sent < size {
                    if socket.write_all(&chunk).await.is_err() {
                        return;
                    }
                    sent += chunk.len();
                }
            });
        }
    });
    format!("http://{addr}/streamed")
}

#[tokio::test]
async fn files_a_dump_ships_are_read_from_its_folder_and_never_outside_it() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = dir.path().join("dump");
    std::fs::create_dir_all(shipped.join("attachments")).unwrap();
    std::fs::write(shipped.join("attachments/a.txt"), b"shipped").unwrap();
    std::fs::write(dir.path().join("secret.txt"), b"secret").unwrap();
    let vault = Vault::open(&dir.path().join("files")).unwrap();
    let mut s = settings(false);
    s.dir = Some(shipped.clone());
    let fetcher = Fetcher::new(s).unwrap();
    let had = fetcher.fetch("attachments/a.txt", &vault).await.unwrap();
    assert_eq!(vault.read(&had.sha256).unwrap(), b"shipped");
    for bad in [
        "../secret.txt",
        "/etc/passwd",
        "attachments/../../secret.txt",
    ] {
        assert!(fetcher.fetch(bad, &vault).await.is_err(), "{bad}");
    }
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), shipped.join("link.txt")).unwrap();
    let err = fetcher.fetch("link.txt", &vault).await.unwrap_err();
    assert!(err.contains("leaves the files folder"), "{err}");
    let none = Fetcher::new(settings(false)).unwrap();
    assert!(
        none.fetch("a.txt", &vault)
            .await
            .unwrap_err()
            .contains("files: {dir")
    );
}

// The emulator's /uploads and the client's upload, with its authorisation.

/// An emulator behind this file's key and project, with `faults`.
async fn gated_emulator(faults: FaultConfig) -> Emulator {
    Emulator::start(EmulatorConfig {
        api_key: Some(KEY.into()),
        project: Some(PROJECT.into()),
        faults,
        ..Default::default()
    })
    .await
    .unwrap()
}

fn client_for(
    emulator: &Emulator,
    upload_token: Option<&str>,
) -> gleap_etl::gleap::client::GleapClient {
    let env = |name: &str| match name {
        "GLEAP_BASE_URL" => Some(emulator.base_url()),
        "GLEAP_API_KEY" => Some(KEY.to_string()),
        "GLEAP_PROJECT_ID" => Some(PROJECT.to_string()),
        "GLEAP_UPLOAD_TOKEN" => upload_token.map(str::to_string),
        _ => None,
    };
    let mut settings = gleap_etl::gleap::client::GleapConfig::default()
        .resolve(&env)
        .unwrap();
    settings.max_attempts = 3;
    gleap_etl::gleap::client::GleapClient::new(settings).unwrap()
}

#[tokio::test]
async fn the_emulator_takes_uploads_behind_its_gate_and_serves_them_back() {
    let emulator = gated_emulator(FaultConfig::default()).await;
    let client = client_for(&emulator, None);
    assert_eq!(
        client.upload_url(),
        format!("http://{}/uploads", emulator.addr()),
        "beside /v3, not under it"
    );
    let counters = gleap_etl::gleap::client::RequestCounters::default();
    let file = gleap_etl::gleap::client::FilePart {
        bytes: b"PNG bytes".to_vec(),
        name: "shot.png".into(),
        mime: "image/png".into(),
    };
    let url = client.upload(&file, &counters).await.unwrap();
    let again = client.upload(&file, &counters).await.unwrap();
    assert_ne!(url, again, "each upload is a new file");
    let served = reqwest::get(&url).await.unwrap();
    assert_eq!(served.headers()["content-type"], "image/png");
    assert_eq!(served.bytes().await.unwrap().as_ref(), b"PNG bytes");
    let stats = emulator.stats();
    assert_eq!(stats["uploads"]["uploads"], 2);
    assert_eq!(stats["uploads"]["distinct_contents"], 1);
    assert_eq!(stats["uploads"]["duplicate_uploads"], 1);
    assert_eq!(stats["requests"]["POST /uploads"]["200"], 2);
    assert_eq!(emulator.uploads()[0]["name"], "shot.png");

    // Another token: refused, but not fatal to the run (the files keep their links).
    let wrong = client_for(&emulator, Some("user-token-refused"));
    let err = wrong.upload(&file, &counters).await.unwrap_err();
    match err {
        gleap_etl::gleap::client::CallError::Rejected { status, message } => {
            assert_eq!(status, 401);
            assert!(message.contains("upload_token"), "{message}");
            assert!(!message.contains("user-token-refused"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(wrong.halted(), None, "the run goes on");
    assert_eq!(emulator.stats()["uploads"]["uploads"], 2);
    // No multipart `file`: a 400, a rejection.
    let (status, _) = {
        let r = reqwest::Client::new()
            .post(format!("http://{}/uploads", emulator.addr()))
            .bearer_auth(KEY)
            .header("project", PROJECT)
            .multipart(reqwest::multipart::Form::new().text("other", "x"))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    assert_eq!(status, 400);
}

#[tokio::test]
async fn uploads_are_retried_through_server_errors() {
    let emulator = gated_emulator(FaultConfig {
        error_rate: 1.0,
        ..Default::default()
    })
    .await;
    let client = client_for(&emulator, None);
    let counters = gleap_etl::gleap::client::RequestCounters::default();
    let file = gleap_etl::gleap::client::FilePart {
        bytes: b"x".to_vec(),
        name: "x.txt".into(),
        mime: "text/plain".into(),
    };
    // A 5xx to an upload may have stored it: ambiguous, for the caller to send again.
    let err = client.upload(&file, &counters).await.unwrap_err();
    assert!(
        matches!(err, gleap_etl::gleap::client::CallError::Ambiguous(_)),
        "{err:?}"
    );
    assert_eq!(emulator.stats()["faults"]["errors"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upload_keeps_the_links_and_is_not_tried_again_in_the_run() {
    let (_, base, _stop) = start_file_host(0.0).await;
    let emulator = gated_emulator(FaultConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(gleap_etl::state::StateStore::open(dir.path()).unwrap());
    let files: gleap_etl::files::FilesConfig =
        serde_json::from_value(serde_json::json!({"allow_private_hosts": true})).unwrap();
    let refused = gleap_etl::files::Rehoster::new(
        &files,
        store.clone(),
        Arc::new(client_for(&emulator, Some("not-a-user-token"))),
    )
    .unwrap();
    let a = format!("{base}/zd/a.png");
    let b = format!("{base}/zd/b.png");
    let mut record = serde_json::json!({
        "comment": {"type": "doc", "content": [{"type": "image", "attrs": {"src": a}}]},
        "attachments": [{"name": "b.png", "url": b, "type": "image/png"}]
    });
    let original = record.clone();
    let outcome = refused.rehost(&mut record).await;
    assert_eq!(outcome.found, 2);
    assert_eq!(outcome.rewritten, 0);
    assert_eq!(record, original, "the links are kept");
    assert!(
        outcome
            .failed
            .iter()
            .all(|(_, why)| why.contains("upload refused (401)"))
    );
    // The two went out side by side; once refused, no further upload is sent.
    let sent = refused.upload_requests().0;
    assert!(sent <= 2, "{sent}");
    let mut third = serde_json::json!({"attachments": [{"url": format!("{base}/zd/c.png")}]});
    let outcome = refused.rehost(&mut third).await;
    assert!(outcome.failed[0].1.contains("upload refused (401)"));
    assert_eq!(
        refused.upload_requests().0,
        sent,
        "not tried again in the run"
    );
    // Both files are in the vault all the same; with the API key they upload from there.
    let rehoster =
        gleap_etl::files::Rehoster::new(&files, store, Arc::new(client_for(&emulator, None)))
            .unwrap();
    let outcome = rehoster.rehost(&mut record).await;
    assert_eq!((outcome.rewritten, outcome.failed.len()), (2, 0));
    let stats = rehoster.stats();
    assert_eq!(
        (stats.downloaded, stats.from_vault, stats.uploaded),
        (0, 2, 2),
        "{stats:?}"
    );
    let prefix = format!("http://{}/uploads/files/", emulator.addr());
    assert!(
        record["attachments"][0]["url"]
            .as_str()
            .unwrap()
            .starts_with(&prefix)
    );
    assert!(
        record["comment"]["content"][0]["attrs"]["src"]
            .as_str()
            .unwrap()
            .starts_with(&prefix)
    );
}
