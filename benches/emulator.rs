//! Requests per second the Gleap emulator serves on loopback, measured by `wrk` (Debian:
//! `apt-get install wrk`) against the release binary, for a read (GET a session by userId)
//! and a write (POST a session). Target: at least 20,000 simple requests/s, so the emulator
//! is never the bottleneck of our other benchmarks (Gleap itself allows 1000 a minute).
//! Without wrk, a built-in load generator (reqwest, 64 concurrent requests) measures instead.
//!
//!     cargo bench --bench emulator

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TARGET: f64 = 20_000.0;
const SECONDS: u64 = 10;
const CONNECTIONS: usize = 64;
const KEY: &str = "bench-key";
const PROJECT: &str = "65a0000000000000000000bb";

fn main() {
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
        .stdout(Stdio::piped())
        .spawn()
        .expect("the emulator starts");
    let first_line = BufReader::new(emulator.stdout.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    let base = first_line.rsplit(' ').next().unwrap().to_string();

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
    if !all_met {
        std::process::exit(1);
    }
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
