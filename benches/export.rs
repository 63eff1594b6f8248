//! Exporting sessions from the emulator to a Parquet dataset: rows/s and peak memory of
//! `gleap-etl export sessions` (a fresh process) at 100,000 and 1,000,000 sessions.
//! Target: peak memory under 150 MB at 1M sessions. Then 100,000 sessions to `s3://` on moto
//! (where `moto[server]` is installed), rows/s and peak memory against the local figure.
//!
//!     cargo bench --bench export

use std::ffi::OsStr;
use std::process::Command;

use gleap_etl::emulator::{Emulator, EmulatorConfig};

#[path = "../tests/util.rs"]
mod util;

const TARGET_PEAK_BYTES: u64 = 150 * 1024 * 1024;

/// What one export did: rows, seconds, peak RSS, dataset bytes.
struct Figures {
    rows: u64,
    secs: f64,
    peak: u64,
    bytes: u64,
}

impl Figures {
    fn print(&self, what: &str) {
        println!(
            "{what} rows={:>9}  elapsed={:>6.2} s  rows/s={:>9.0}  peak_rss={:>6.1} MB  dataset={:>6.1} MB",
            self.rows,
            self.secs,
            self.rows as f64 / self.secs,
            self.peak as f64 / (1024.0 * 1024.0),
            self.bytes as f64 / 1e6
        );
    }
}

fn emulator(runtime: &tokio::runtime::Runtime, sessions: usize) -> Emulator {
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
    emulator
}

/// `gleap-etl export sessions --out OUT` (a fresh process) with `envs`, its figures.
fn export(
    emulator: &Emulator,
    dir: &std::path::Path,
    name: &str,
    out: &OsStr,
    envs: Vec<(&'static str, String)>,
) -> Figures {
    let report_path = dir.join(format!("report-{name}.json"));
    let status = Command::new(env!("CARGO_BIN_EXE_gleap-etl"))
        .args([
            "export",
            "sessions",
            "--quiet",
            "--flatten",
            "customData.plan",
        ])
        .arg("--out")
        .arg(out)
        .arg("--state-dir")
        .arg(dir.join(format!("state-{name}")))
        .arg("--report")
        .arg(&report_path)
        .env("GLEAP_BASE_URL", emulator.base_url())
        .env("GLEAP_API_KEY", "bench-key")
        .env("GLEAP_PROJECT_ID", "65a0000000000000000000aa")
        .env("GLEAP_REQUESTS_PER_MINUTE", "100000000")
        .envs(envs)
        .status()
        .expect("gleap-etl runs");
    assert!(status.success(), "gleap-etl export failed: {status}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    Figures {
        rows: report["records_written"].as_u64().unwrap(),
        secs: report["elapsed_secs"].as_f64().unwrap(),
        peak: report["peak_memory_bytes"]
            .as_u64()
            .expect("peak memory is reported on Linux"),
        bytes: report["streams"][0]["sink"]["bytes"].as_u64().unwrap_or(0),
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut last_peak = 0;
    let mut local_100k = None;
    for sessions in [100_000usize, 1_000_000] {
        let emulator = emulator(&runtime, sessions);
        let out = dir.path().join(format!("out-{sessions}"));
        let figures = export(
            &emulator,
            dir.path(),
            &sessions.to_string(),
            out.as_os_str(),
            Vec::new(),
        );
        assert_eq!(figures.rows, sessions as u64, "every session exported");
        figures.print("export_sessions");
        last_peak = figures.peak;
        if sessions == 100_000 {
            local_100k = Some(figures);
        }
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

    // The same 100,000 sessions to s3:// on moto (an S3 API on the loopback, in Python: a
    // slower server than a real bucket, so this is a floor), against the local figure.
    let Some(moto) = util::Moto::start() else {
        return;
    };
    moto.create_bucket("bench");
    let emulator = emulator(&runtime, 100_000);
    let s3 = export(
        &emulator,
        dir.path(),
        "moto",
        OsStr::new("s3://bench/sessions"),
        moto.env(),
    );
    assert_eq!(s3.rows, 100_000, "every session exported");
    s3.print("export_sessions_s3");
    let local = local_100k.expect("the local export ran");
    println!(
        "s3 (moto) vs local disk at 100k: rows/s {:.2}x, peak_rss {:.2}x",
        (s3.rows as f64 / s3.secs) / (local.rows as f64 / local.secs),
        s3.peak as f64 / local.peak as f64
    );
}
