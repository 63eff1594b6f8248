//! A small harness: a temporary directory to work in and the `gleap-etl` binary to run.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root, where `pipelines/` and `samples/` are.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A scratch directory for one test.
pub struct Dir {
    pub tmp: tempfile::TempDir,
}

impl Dir {
    pub fn new() -> Dir {
        Dir {
            tmp: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// Writes a file (creating directories) and returns its path.
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, contents).unwrap();
        path
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    /// `gleap-etl ARGS` run in this directory.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gleap-etl"));
        cmd.args(args)
            .current_dir(self.path())
            .env_remove("RUST_LOG");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.cmd(args).output().expect("gleap-etl runs"))
    }

    /// `gleap-etl ARGS` run in the repository (for the shipped pipelines and samples), with
    /// `OUT_DIR` and `STATE_DIR` pointing into this directory.
    pub fn run_in_repo(&self, args: &[&str]) -> Run {
        let mut cmd = self.cmd(args);
        cmd.current_dir(repo())
            .env("OUT_DIR", self.join("out"))
            .env("STATE_DIR", self.join("state"));
        Run::from(cmd.output().expect("gleap-etl runs"))
    }

    /// `gleap-etl run --emulator --no-progress --report REPORT` of `pipeline`, run in this
    /// directory.
    pub fn emulated_run(&self, pipeline: &str, report: &Path) -> Command {
        self.cmd(&[
            "run",
            pipeline,
            "--emulator",
            "--no-progress",
            "--report",
            report.to_str().unwrap(),
        ])
    }
}

/// `gleap-etl run <repo>/pipelines/PIPELINE --no-progress EXTRA..` run in the repository
/// against `emulator` with the key and project given (no request rate limit), its output
/// captured.
pub fn shipped_pipeline(
    pipeline: &str,
    extra: &[&str],
    emulator: &gleap_etl::emulator::Emulator,
    key: &str,
    project: &str,
) -> Command {
    let mut cmd = shipped_command("run", pipeline, emulator, key, project);
    cmd.arg("--no-progress").args(extra);
    cmd
}

/// `gleap-etl COMMAND <repo>/pipelines/PIPELINE` (add the arguments after it) run in the
/// repository against `emulator` with the key and project given (no request rate limit), no
/// terminal on stdin, its output captured.
pub fn shipped_command(
    command: &str,
    pipeline: &str,
    emulator: &gleap_etl::emulator::Emulator,
    key: &str,
    project: &str,
) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gleap-etl"));
    cmd.arg(command)
        .arg(repo().join("pipelines").join(pipeline))
        .current_dir(repo())
        .env("GLEAP_BASE_URL", emulator.base_url())
        .env("GLEAP_API_KEY", key)
        .env("GLEAP_PROJECT_ID", project)
        .env("GLEAP_REQUESTS_PER_MINUTE", "600000")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    cmd
}

/// An emulator's settings with this key and project and no request quota.
pub fn unlimited(key: &str, project: &str) -> gleap_etl::emulator::EmulatorConfig {
    gleap_etl::emulator::EmulatorConfig {
        api_key: Some(key.into()),
        project: Some(project.into()),
        quota: None,
        ..Default::default()
    }
}

/// Runs `cmd` off the async runtime and gives what it did.
pub async fn output(mut cmd: Command) -> Run {
    tokio::task::spawn_blocking(move || Run::from(cmd.output().unwrap()))
        .await
        .unwrap()
}

/// Runs `cmd` (output discarded) off the async runtime, its pid in `pid` while it runs (for
/// a kill hook); gives how it ended.
pub async fn run_with_pid(
    mut cmd: Command,
    pid: std::sync::Arc<std::sync::atomic::AtomicU32>,
) -> std::process::ExitStatus {
    tokio::task::spawn_blocking(move || {
        let mut child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        pid.store(child.id(), std::sync::atomic::Ordering::SeqCst);
        child.wait().unwrap()
    })
    .await
    .unwrap()
}

/// The text of a file, unzipped if its name ends in `.gz`.
pub fn read_text(path: &Path) -> String {
    use std::io::Read;
    let mut text = String::new();
    let file = std::fs::File::open(path).unwrap();
    if path.extension().is_some_and(|e| e == "gz") {
        flate2::read::GzDecoder::new(file)
            .read_to_string(&mut text)
            .unwrap();
    } else {
        std::io::BufReader::new(file)
            .read_to_string(&mut text)
            .unwrap();
    }
    text
}

/// What a command did.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// The JSON objects of a JSON lines file.
pub fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Reads a Parquet file back as JSON records (through our own Parquet source), with its
/// arrow schema.
pub fn read_parquet(
    path: &Path,
) -> (
    arrow::datatypes::SchemaRef,
    Vec<serde_json::Map<String, serde_json::Value>>,
) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let builder =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let schema = builder.schema().clone();
    let config: gleap_etl::sources::parquet::ParquetSourceConfig =
        serde_json::from_value(serde_json::json!({ "path": path.to_str().unwrap() })).unwrap();
    let rows = config
        .open()
        .unwrap()
        .items
        .map(|item| match item.unwrap() {
            gleap_etl::sources::SourceItem::Record(record, _) => record,
            other => panic!("unreadable row: {other:?}"),
        })
        .collect();
    (schema, rows)
}

/// A small HTTP client for the Gleap API (emulated): key and project headers set.
pub struct Api {
    pub client: reqwest::Client,
    pub base: String,
    pub key: String,
    pub project: String,
}

impl Api {
    pub fn new(emulator: &gleap_etl::emulator::Emulator) -> Api {
        Api {
            client: reqwest::Client::new(),
            base: emulator.base_url(),
            key: emulator.api_key().to_string(),
            project: emulator.project().to_string(),
        }
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header("project", &self.project)
    }

    /// Sends and returns the status and the JSON body (null when empty).
    pub async fn send(&self, request: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
        let response = request.send().await.expect("an answer");
        let status = response.status().as_u16();
        let text = response.text().await.expect("a body");
        let body = if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON: {text}"))
        };
        (status, body)
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.send(self.request(reqwest::Method::POST, path).json(&body))
            .await
    }

    pub async fn put(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.send(self.request(reqwest::Method::PUT, path).json(&body))
            .await
    }

    pub async fn delete(&self, path: &str) -> (u16, serde_json::Value) {
        self.send(self.request(reqwest::Method::DELETE, path)).await
    }
}

/// Writes users.csv, tickets.csv and messages.csv as `samples/helpdesk` has them: `users`
/// contacts, `tickets` tickets (each of a contact), `per_ticket` comments on each (every
/// fourth by the customer, every fourth an internal note). Comments start with their id.
pub fn write_helpdesk(dir: &Path, users: usize, tickets: usize, per_ticket: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut u = String::from("user_id,email,name,plan,company\n");
    for i in 0..users {
        u.push_str(&format!(
            "cust-{i:05},user{i}@example.com,User {i} Ünïcode,{},Acme {}\n",
            ["free", "pro", "team"][i % 3],
            i % 7
        ));
    }
    std::fs::write(dir.join("users.csv"), u).unwrap();
    let mut t = String::from("ticket_id,user_id,title,status,priority,type,tags,created_at\n");
    let mut m = String::from("message_id,ticket_id,user_id,author,body,internal,created_at\n");
    let mut n = 0;
    for i in 0..tickets {
        let user = format!("cust-{:05}", (i * 7) % users);
        t.push_str(&format!(
            "T-{i:05},{user},\"Ticket {i}, about \"\"things\"\"\",{},{},{},\"a,b\",2024-01-01T00:00:00Z\n",
            ["OPEN", "INPROGRESS", "DONE"][i % 3],
            ["LOW", "MEDIUM", "HIGH"][i % 3],
            ["BUG", "INQUIRY", "FEATURE_REQUEST"][i % 3]
        ));
        for j in 0..per_ticket {
            n += 1;
            let id = format!("M-{n:06}");
            let (author, internal, who) = match (i + j) % 4 {
                0 => ("customer", "false", user.as_str()),
                3 => ("agent", "true", ""),
                _ => ("agent", "false", ""),
            };
            m.push_str(&format!("{id},T-{i:05},{who},{author},\"{id}: comment {j} on ticket {i}\",{internal},2024-01-02T00:00:00Z\n"));
        }
    }
    std::fs::write(dir.join("tickets.csv"), t).unwrap();
    std::fs::write(dir.join("messages.csv"), m).unwrap();
}

/// Kills a process with SIGKILL when the emulator carries out its request number `kill_at`:
/// the emulator's request hook, and the pid and request number it acts on.
#[derive(Clone, Default)]
pub struct Killer {
    pub pid: std::sync::Arc<std::sync::atomic::AtomicU32>,
    pub kill_at: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Killer {
    pub fn new() -> Killer {
        let killer = Killer::default();
        killer.disarm();
        killer
    }

    /// The hook to set as `EmulatorConfig::on_request`.
    pub fn hook(&self) -> gleap_etl::emulator::api::RequestHook {
        use std::sync::atomic::Ordering;
        let this = self.clone();
        std::sync::Arc::new(move |n| {
            if n == this.kill_at.load(Ordering::SeqCst) {
                let pid = this.pid.load(Ordering::SeqCst);
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        })
    }

    pub fn disarm(&self) {
        self.kill_at
            .store(u64::MAX, std::sync::atomic::Ordering::SeqCst);
    }

    /// Runs `cmd` (output discarded) with the kill armed for request `at`; asserts that it
    /// ended by SIGKILL.
    pub async fn run_until_killed(&self, cmd: Command, at: u64) {
        use std::sync::atomic::Ordering;
        self.kill_at.store(at, Ordering::SeqCst);
        let status = run_with_pid(cmd, self.pid.clone()).await;
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "killed at request {at}: {status:?}"
        );
        self.disarm();
    }
}

/// `gleap-etl <args[0]> pipelines/csv-to-gleap.yaml <args[1..]>` run in `dir` against an
/// emulator, reading the helpdesk files `write_helpdesk` put in `dir/data`, its state in
/// `dir/state`; no terminal on stdin.
pub fn csv_to_gleap(
    base_url: &str,
    key: &str,
    project: &str,
    dir: &Path,
    args: &[&str],
) -> Command {
    let mut cmd = pipeline_command("csv-to-gleap.yaml", base_url, key, project, dir, args);
    cmd.env("DATA_DIR", dir.join("data"));
    cmd
}

/// `gleap-etl <args[0]> <repo>/pipelines/PIPELINE <args[1..]>` run in `dir` against an
/// emulator (no request rate limit), its state in `dir/state`; no terminal on stdin, output
/// captured.
pub fn pipeline_command(
    pipeline: &str,
    base_url: &str,
    key: &str,
    project: &str,
    dir: &Path,
    args: &[&str],
) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gleap-etl"));
    cmd.args(&args[..1])
        .arg(repo().join("pipelines").join(pipeline))
        .args(&args[1..])
        .current_dir(dir)
        .env("GLEAP_BASE_URL", base_url)
        .env("GLEAP_API_KEY", key)
        .env("GLEAP_PROJECT_ID", project)
        .env("GLEAP_REQUESTS_PER_MINUTE", "600000")
        .env("STATE_DIR", dir.join("state"))
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    cmd
}

/// Requests the emulator has answered.
pub fn requests(emulator: &gleap_etl::emulator::Emulator) -> u64 {
    emulator.stats()["total_requests"].as_u64().unwrap()
}

/// The emulator's sessions, tickets and messages: per kind, every document by its id.
pub fn contents(
    emulator: &gleap_etl::emulator::Emulator,
) -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, serde_json::Value>> {
    let dump = emulator.dump();
    ["sessions", "tickets", "messages"]
        .iter()
        .map(|kind| {
            let docs = dump[kind]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| {
                    let id = d["_id"].as_str().or(d["id"].as_str()).unwrap();
                    (id.to_string(), d.clone())
                })
                .collect();
            (kind.to_string(), docs)
        })
        .collect()
}

/// The numbers of messages, sessions and tickets in [`contents`].
pub fn counts(
    c: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, serde_json::Value>>,
) -> Vec<usize> {
    c.values().map(std::collections::BTreeMap::len).collect()
}

/// The report of stream `name` in a run report (`--report`).
pub fn report_stream(report: &serde_json::Value, name: &str) -> serde_json::Value {
    report["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no stream {name} in {report:#}"))
        .clone()
}

/// An S3 API on the loopback: `moto` in server mode (`pip install 'moto[server]'`), stopped
/// when dropped. The dataset tests write buckets on it through the same client as real S3.
pub struct Moto {
    child: std::process::Child,
    pub port: u16,
}

/// The Python whose `duckdb` the checks that read Parquet with DuckDB use:
/// `GLEAP_ETL_DUCKDB_PYTHON`, else the venv `.ci/run` makes (`.ci/.venv-duckdb`, DuckDB
/// 1.5.5 with httpfs), else `python3`.
pub fn duckdb_python() -> String {
    if let Ok(python) = std::env::var("GLEAP_ETL_DUCKDB_PYTHON") {
        return python;
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/.venv-duckdb/bin/python");
    if venv.exists() {
        return venv.display().to_string();
    }
    "python3".into()
}

impl Moto {
    /// Starts moto on a free port of 127.0.0.1 and waits until it answers; `None` (with a
    /// message saying the test is skipped) where moto is not installed or does not start.
    pub fn start() -> Option<Moto> {
        let skipped = |why: &str| {
            eprintln!("skipped: moto not available (pip install 'moto[server]'): {why}");
            None
        };
        let python = std::env::var("GLEAP_ETL_MOTO_PYTHON").unwrap_or_else(|_| "python3".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .ok()?;
        let child = Command::new(&python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) => return skipped(&format!("{python}: {e}")),
        };
        let mut moto = Moto { child, port };
        // A real process starting: polled, at most 30 s.
        for _ in 0..600 {
            if let Ok(Some(status)) = moto.child.try_wait() {
                return skipped(&format!("{python} -m moto.server exited: {status}"));
            }
            if moto.request("GET", "/").is_ok() {
                return Some(moto);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        skipped("moto.server did not answer within 30 s")
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A plain HTTP request (moto does not check signatures); the status and the body.
    pub fn request(&self, method: &str, path: &str) -> std::io::Result<(u16, String)> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not HTTP: {answer}")))?;
        let body = answer
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((status, body))
    }

    pub fn create_bucket(&self, bucket: &str) {
        let (status, body) = self.request("PUT", &format!("/{bucket}")).unwrap();
        assert_eq!(status, 200, "creating bucket {bucket}: {body}");
    }

    /// The environment a command needs to write to this moto's buckets.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "moto-access-key".into()),
            ("AWS_SECRET_ACCESS_KEY", "moto-secret-key".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }

    /// A client of `bucket`, as the command's.
    pub fn store(&self, bucket: &str) -> object_store::aws::AmazonS3 {
        self.env()
            .into_iter()
            .fold(
                object_store::aws::AmazonS3Builder::new().with_bucket_name(bucket),
                |b, (k, v)| b.with_config(k.to_ascii_lowercase().parse().unwrap(), v),
            )
            .build()
            .unwrap()
    }

    /// The ids of the multipart uploads of `bucket` begun and neither completed nor aborted.
    pub fn pending_uploads(&self, bucket: &str) -> std::collections::BTreeSet<String> {
        let (status, body) = self.request("GET", &format!("/{bucket}?uploads")).unwrap();
        assert_eq!(status, 200, "{body}");
        body.split("<UploadId>")
            .skip(1)
            .filter_map(|s| s.split_once("</UploadId>").map(|(id, _)| id.to_string()))
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
