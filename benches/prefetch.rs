//! A Gleap sink's session prefetch against a large project: peak memory of `gleap-etl run`
//! (a fresh process) prefetching 1,000,000 sessions, and what 2 new contacts cost with
//! `prefetch: true`, `false` and `auto` (the default). The emulator runs as a separate
//! process (`gleap-etl emulator --generate-sessions 1000000 --quota unlimited`), so the
//! peak is the client's alone. Targets: peak under 200 MB; 2 new contacts with `auto` in at
//! most 5 requests.
//!
//!     cargo bench --bench prefetch            # SESSIONS=300000 for a quicker run

mod common;

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TARGET_PEAK_BYTES: u64 = 200 * 1024 * 1024;
const TARGET_AUTO_REQUESTS: u64 = 5;
const KEY: &str = "bench-key";
const PROJECT: &str = "65a0000000000000000000aa";

/// The emulator process; killed when dropped.
struct EmulatorProcess(Child);

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let sessions: usize = std::env::var("SESSIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let started = Instant::now();
    let _emulator = EmulatorProcess(
        Command::new(env!("CARGO_BIN_EXE_gleap-etl"))
            .args(["emulator", "--quota", "unlimited", "--seed", "1"])
            .args(["--generate-sessions", &sessions.to_string()])
            .args(["--addr", &format!("127.0.0.1:{port}")])
            .args(["--api-key", KEY, "--project", PROJECT])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the emulator starts"),
    );
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the emulator never listened"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "emulator process filled with {sessions} sessions in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let dir = tempfile::tempdir().unwrap();
    let mut verdicts = Vec::new();
    for prefetch in ["true", "false", "auto"] {
        // Two contacts the project does not have yet.
        let users = dir.path().join(format!("users-{prefetch}.csv"));
        std::fs::write(
            &users,
            format!("userId,name\nnew-{prefetch}-1,New One\nnew-{prefetch}-2,New Two\n"),
        )
        .unwrap();
        let state = dir.path().join(format!("state-{prefetch}"));
        let pipeline = dir.path().join(format!("p-{prefetch}.yaml"));
        std::fs::write(
            &pipeline,
            format!(
                "version: 1\nname: bench-prefetch\nstate_dir: {}\nstreams:\n  - name: users\n    source: {{ csv: {{ path: \"{}\" }} }}\n    sink: {{ gleap: {{ entity: sessions, prefetch: {prefetch} }} }}\n",
                state.display(),
                users.display()
            ),
        )
        .unwrap();
        let report_path = dir.path().join(format!("report-{prefetch}.json"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gleap-etl"));
        cmd.args(["run", pipeline.to_str().unwrap(), "--quiet", "--report"])
            .arg(&report_path)
            .current_dir(dir.path())
            .env("GLEAP_BASE_URL", format!("http://127.0.0.1:{port}/v3"))
            .env("GLEAP_API_KEY", KEY)
            .env("GLEAP_PROJECT_ID", PROJECT)
            .env("GLEAP_REQUESTS_PER_MINUTE", "100000000");
        let (report, peak) = common::run_for_report(cmd, &report_path);
        let d = &report["streams"][0]["sink"]["detail"];
        let requests = d["requests"].as_u64().unwrap();
        assert_eq!(d["created"], 2, "{d}");
        println!(
            "prefetch={prefetch:<5} sessions={sessions:>8}  requests={requests:>5} (prefetch {:>4})  elapsed={:>6.2} s  peak_rss={:>6.1} MB",
            d["prefetch_requests"],
            report["elapsed_secs"].as_f64().unwrap(),
            peak as f64 / (1024.0 * 1024.0)
        );
        match prefetch {
            "true" => verdicts.push(format!(
                "target peak_rss(prefetch of {sessions} sessions) < 200 MB: {}",
                if peak < TARGET_PEAK_BYTES {
                    "met"
                } else {
                    "MISSED"
                }
            )),
            "auto" => verdicts.push(format!(
                "target requests(2 new contacts, prefetch: auto) <= {TARGET_AUTO_REQUESTS}: {}",
                if requests <= TARGET_AUTO_REQUESTS {
                    "met"
                } else {
                    "MISSED"
                }
            )),
            _ => {}
        }
    }
    for v in verdicts {
        println!("{v}");
    }
}
