//! Requests per second the Gleap emulator serves on loopback, measured by `wrk` (Debian:
//! `apt-get install wrk`) against the release binary, for a read (GET a session by userId)
//! and a write (POST a session). Target: at least 20,000 simple requests/s, so the emulator
//! is never the bottleneck of our other benchmarks (Gleap itself allows 1000 a minute).
//! Without wrk, a built-in load generator (reqwest, 64 concurrent requests) measures instead.
//!
//! The `keyset` case starts an emulator with 1,000,000 generated sessions
//! (`--generate-sessions`), reports how long they take to generate and the memory they take
//! (RSS), and times keyset pages as an incremental export asks for them
//! (`sort=updatedAt&updatedAt>=X&updatedAt<=Y&limit=1000`, X the last page's last updatedAt;
//! the same on createdAt, and descending). Target: under 10 ms a page.
//!
//! The `keyset-in-process` case generates the same sessions in this process and times the
//! same pages without HTTP: the index against the scan every list took before.
//!
//!     cargo bench --bench emulator               # all cases
//!     cargo bench --bench emulator -- keyset     # the cases whose name has `keyset`

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

// As the binary does, so that in-process figures match it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TARGET: f64 = 20_000.0;
const SECONDS: u64 = 10;
const CONNECTIONS: usize = 64;
const KEY: &str = "bench-key";
const PROJECT: &str = "65a0000000000000000000bb";

fn main() {
    // `cargo bench -- NAME` passes NAME (and `--bench`).
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let selected = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    let mut all_met = true;
    if selected("throughput") {
        all_met &= throughput();
    }
    if selected("keyset-http") {
        all_met &= keyset();
    }
    if selected("keyset-in-process") {
        in_process();
    }
    if !all_met {
        std::process::exit(1);
    }
}

/// Starts the release binary's emulator with these extra arguments; its base URL.
fn spawn_emulator(extra: &[&str]) -> (std::process::Child, String) {
    let mut emulator = Command::new(env!("CARGO_BIN_EXE_gleap-etl"))
        .args([
            "emulator",
            "--addr",
            "127.0.0.1:0",
            "--quota",
            "unlimited",
            "--api-key",
            KEY,
            "--project",
            PROJECT,
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .expect("the emulator starts");
    let mut lines = BufReader::new(emulator.stdout.take().unwrap()).lines();
    let first_line = lines.next().unwrap().unwrap();
    let base = first_line.rsplit(' ').next().unwrap().to_string();
    // Keep reading what it prints, so that it never writes to a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (emulator, base)
}

/// Resident and peak memory of a process, in MiB (Linux).
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

const KEYSET_SESSIONS: usize = 1_000_000;
const KEYSET_TARGET_MS: f64 = 10.0;
const KEYSET_PAGES: usize = 20;

fn keyset() -> bool {
    let (mut idle, _) = spawn_emulator(&["--seed", "1"]);
    let (idle_rss, _) = rss_mib(idle.id());
    let _ = idle.kill();
    let _ = idle.wait();

    let started = Instant::now();
    let n = KEYSET_SESSIONS.to_string();
    let (mut emulator, base) = spawn_emulator(&["--seed", "1", "--generate-sessions", &n]);
    let ready = started.elapsed();
    let (rss, peak) = rss_mib(emulator.id());
    println!(
        "emulator --generate-sessions {KEYSET_SESSIONS}: ready in {ready:.2?} (process start and generation); RSS {rss:.0} MiB (peak {peak:.0} MiB; {idle_rss:.0} MiB without sessions), {:.0} bytes a session",
        (rss - idle_rss) * 1024.0 * 1024.0 / KEYSET_SESSIONS as f64
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::new();
    let mut all_met = true;
    for (field, desc, from) in [
        ("updatedAt", false, "2023-01-01T00:00:00.000Z"),
        ("updatedAt", false, "2023-06-01T00:00:00.000Z"),
        ("createdAt", false, "2023-01-01T00:00:00.000Z"),
        ("createdAt", false, "2023-06-01T00:00:00.000Z"),
        ("updatedAt", true, "2024-01-01T00:00:00.000Z"),
    ] {
        let mut times = Vec::new();
        let mut bound = from.to_string();
        let mut rows = 0;
        for _ in 0..KEYSET_PAGES {
            let url = if desc {
                format!("{base}/sessions?sort=-{field}&{field}<={bound}&limit=1000")
            } else {
                format!(
                    "{base}/sessions?sort={field}&{field}>={bound}&{field}<=2024-01-01T00:00:00.000Z&limit=1000"
                )
            };
            let t = Instant::now();
            let body = runtime.block_on(async {
                let response = client
                    .get(&url)
                    .bearer_auth(KEY)
                    .header("project", PROJECT)
                    .send()
                    .await
                    .unwrap();
                assert!(
                    response.status().is_success(),
                    "{url}: {}",
                    response.status()
                );
                response.bytes().await.unwrap()
            });
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let page = page.as_array().unwrap();
            assert_eq!(page.len(), 1000, "{url}");
            rows += page.len();
            bound = page.last().unwrap()[field].as_str().unwrap().to_string();
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let max = times[times.len() - 1];
        let met = median < KEYSET_TARGET_MS;
        all_met &= met;
        let (op, sort) = if desc { ("<=", "-") } else { (">=", "") };
        println!(
            "emulator keyset GET /v3/sessions?sort={sort}{field}&{field}{op}X&limit=1000 from {from}: {KEYSET_PAGES} pages ({rows} rows), median {median:.1} ms, max {max:.1} ms a page over HTTP; target < {KEYSET_TARGET_MS} ms: {}",
            if met { "met" } else { "MISSED" }
        );
    }
    let _ = emulator.kill();
    let _ = emulator.wait();
    all_met
}

/// The same pages without HTTP: the index path against the scan it replaces (which every
/// list took before the indexes), and what serializing a page adds.
fn in_process() {
    use gleap_etl::emulator::query;
    use gleap_etl::emulator::store::{Kind, Store};
    use std::hint::black_box;

    let mut store = Store::new(1);
    let started = Instant::now();
    store.generate_sessions(KEYSET_SESSIONS);
    println!(
        "in process: Store::generate_sessions({KEYSET_SESSIONS}) in {:.2?}",
        started.elapsed()
    );
    for raw in [
        "sort=updatedAt&updatedAt>=2023-06-01T00:00:00.000Z&updatedAt<=2024-01-01T00:00:00.000Z&limit=1000",
        "sort=createdAt&createdAt>=2023-06-01T00:00:00.000Z&limit=1000",
        "sort=-updatedAt&updatedAt<=2023-06-01T00:00:00.000Z&limit=1000",
        "sort=updatedAt&updatedAt>=2023-06-01T00:00:00.000Z&customData.plan=pro&limit=1000",
    ] {
        let q = query::parse(Some(raw)).unwrap();
        let reps = 50;
        let started = Instant::now();
        for _ in 0..reps {
            black_box(store.list(Kind::Sessions, &q, false));
        }
        let index = started.elapsed().as_secs_f64() * 1000.0 / reps as f64;
        let (page, _) = store.list(Kind::Sessions, &q, false);
        let started = Instant::now();
        // What GET /sessions answers: the page as stored.
        let body = serde_json::to_vec(&page).unwrap();
        let serialize = started.elapsed().as_secs_f64() * 1000.0;
        let started = Instant::now();
        let (scan_page, _) = black_box(q.run(store.docs(Kind::Sessions)));
        let scan = started.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(page.len(), scan_page.len());
        assert!(
            page.iter()
                .zip(&scan_page)
                .all(|(a, b)| a["_id"] == b["_id"])
        );
        println!(
            "in process: {raw}: index {index:.2} ms, scan {scan:.0} ms; serializing the page ({} KiB) {serialize:.1} ms",
            body.len() / 1024
        );
    }
}

/// Requests/s for a read and a write.
fn throughput() -> bool {
    let (mut emulator, base) = spawn_emulator(&[]);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::new();
    let seeded: serde_json::Value = runtime.block_on(async {
        client
            .post(format!("{base}/sessions"))
            .bearer_auth(KEY)
            .header("project", PROJECT)
            .json(&serde_json::json!({"userId": "bench-user", "email": "bench@example.com", "name": "Bench"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(seeded["userId"], "bench-user");

    let wrk = Command::new("wrk").arg("--version").output().is_ok();
    let mut all_met = true;
    for (label, method, path, body) in [
        (
            "GET /v3/sessions/by-user-id/{userId}",
            "GET",
            "/sessions/by-user-id/bench-user",
            None,
        ),
        (
            "POST /v3/sessions",
            "POST",
            "/sessions",
            Some(r#"{"userId":"load","email":"load@example.com"}"#),
        ),
    ] {
        let url = format!("{base}{path}");
        let (rate, tool) = if wrk {
            (
                run_wrk(&url, method, body),
                format!("wrk, 2 threads, {CONNECTIONS} connections, {SECONDS} s"),
            )
        } else {
            let rate = runtime.block_on(built_in_load(&client, &url, method, body));
            (
                rate,
                format!(
                    "built-in reqwest load, {CONNECTIONS} concurrent, {SECONDS} s (install wrk for the reference figure)"
                ),
            )
        };
        let met = rate >= TARGET;
        all_met &= met;
        println!(
            "emulator {label}: {rate:.0} requests/s ({tool}); target >= {TARGET:.0}: {}",
            if met { "met" } else { "MISSED" }
        );
    }
    let _ = emulator.kill();
    let _ = emulator.wait();
    all_met
}

fn run_wrk(url: &str, method: &str, body: Option<&str>) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "-t2".to_string(),
        format!("-c{CONNECTIONS}"),
        format!("-d{SECONDS}s"),
        "-H".into(),
        format!("Authorization: Bearer {KEY}"),
        "-H".into(),
        format!("project: {PROJECT}"),
    ];
    if let Some(body) = body {
        let script = dir.path().join("request.lua");
        std::fs::write(
            &script,
            format!(
                "wrk.method = \"{method}\"\nwrk.body = '{body}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
            ),
        )
        .unwrap();
        args.push("-s".into());
        args.push(script.display().to_string());
    }
    args.push(url.to_string());
    let out = Command::new("wrk").args(&args).output().expect("wrk runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let non_2xx = text
        .lines()
        .find(|l| l.contains("Non-2xx"))
        .map(str::to_string);
    assert!(non_2xx.is_none(), "wrk saw errors: {non_2xx:?}\n{text}");
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk's output:\n{text}"))
}

async fn built_in_load(
    client: &reqwest::Client,
    url: &str,
    method: &str,
    body: Option<&str>,
) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(SECONDS);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (client, url, method, body) = (
            client.clone(),
            url.to_string(),
            method.to_string(),
            body.map(str::to_string),
        );
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                let request = client
                    .request(method.parse().unwrap(), &url)
                    .bearer_auth(KEY)
                    .header("project", PROJECT)
                    .header("content-type", "application/json");
                let request = match &body {
                    Some(b) => request.body(b.clone()),
                    None => request,
                };
                let response = request.send().await.expect("an answer");
                assert!(response.status().is_success());
                let _ = response.bytes().await;
                done += 1;
            }
            done
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}
