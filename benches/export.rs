//! Exporting sessions from the emulator to a Parquet dataset: rows/s and peak memory of
//! `gleap-etl export sessions` (a fresh process) at 100,000 and 1,000,000 sessions.
//! Target: peak memory under 150 MB at 1M sessions.
//!
//!     cargo bench --bench export

use std::process::Command;

use gleap_etl::emulator::{Emulator, EmulatorConfig};

const TARGET_PEAK_BYTES: u64 = 150 * 1024 * 1024;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut last_peak = 0;
    for sessions in [100_000usize, 1_000_000] {
        let started = std::time::Instant::now();
        let emulator = runtime
            .block_on(Emulator::start(EmulatorConfig {
                api_key: Some("bench-key".into()),
                project: Some("65a0000000000000000000aa".into()),
                quota: None,
                generate_sessions: sessions,
                faults: gleap_etl::emulator::FaultConfig {
                    seed: 1,
                    ..Default::default()
                },
                ..Default::default()
            }))
            .unwrap();
        println!(
            "emulator filled with {sessions} sessions in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let out = dir.path().join(format!("out-{sessions}"));
        let report_path = dir.path().join(format!("report-{sessions}.json"));
        let status = Command::new(env!("CARGO_BIN_EXE_gleap-etl"))
            .args([
                "export",
                "sessions",
                "--quiet",
                "--flatten",
                "customData.plan",
            ])
            .arg("--out")
            .arg(&out)
            .arg("--state-dir")
            .arg(dir.path().join(format!("state-{sessions}")))
            .arg("--report")
            .arg(&report_path)
            .env("GLEAP_BASE_URL", emulator.base_url())
            .env("GLEAP_API_KEY", "bench-key")
            .env("GLEAP_PROJECT_ID", "65a0000000000000000000aa")
            .env("GLEAP_REQUESTS_PER_MINUTE", "100000000")
            .status()
            .expect("gleap-etl runs");
        assert!(status.success(), "gleap-etl export failed: {status}");
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
        let peak = report["peak_memory_bytes"]
            .as_u64()
            .expect("peak memory is reported on Linux");
        let secs = report["elapsed_secs"].as_f64().unwrap();
        let rows = report["records_written"].as_u64().unwrap();
        assert_eq!(rows, sessions as u64, "every session exported");
        let bytes = report["streams"][0]["sink"]["bytes"].as_u64().unwrap_or(0);
        println!(
            "export_sessions rows={rows:>9}  elapsed={secs:>6.2} s  rows/s={:>9.0}  peak_rss={:>6.1} MB  dataset={:>6.1} MB",
            rows as f64 / secs,
            peak as f64 / (1024.0 * 1024.0),
            bytes as f64 / 1e6
        );
        last_peak = peak;
        drop(emulator);
    }
    println!(
        "target peak_rss(1M sessions) < 150 MB: {}",
        if last_peak < TARGET_PEAK_BYTES {
            "met"
        } else {
            "MISSED"
        }
    );
}
