//! Exporting sessions from the emulator to a Parquet dataset: rows/s and peak memory of
//! `gleap-etl export sessions` (a fresh process) at 100,000 and 1,000,000 sessions.
//! Target: peak memory under 150 MB at 1M sessions. Then 100,000 sessions to `s3://` on moto
//! (where `moto[server]` is installed) and to a local folder, three times each: the medians
//! of rows/s and peak memory compared.
//!
//!     cargo bench --bench export

use std::ffi::OsStr;
use std::process::Command;

use gleap_etl::emulator::{Emulator, EmulatorConfig};

#[path = "../tests/util.rs"]
mod util;

const TARGET_PEAK_BYTES: u64 = 150 * 1024 * 1024;
/// Runs of each side of the local-folder vs bucket comparison.
const RUNS: usize = 3;

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
        // Custom fields get typed columns by default (customData.*).
        .args(["export", "sessions", "--quiet"])
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
    // slower server than a real bucket, so this is a floor), against a local folder: three
    // runs each, alternating, on one emulator; the medians are compared (one run of under
    // a second swings by 2x on a loaded machine).
    let Some(moto) = util::Moto::start() else {
        return;
    };
    moto.create_bucket("bench");
    let emulator = emulator(&runtime, 100_000);
    let (mut local, mut s3) = (Vec::new(), Vec::new());
    for round in 0..RUNS {
        let out = dir.path().join(format!("out-local-{round}"));
        let name = format!("local-{round}");
        let figures = export(&emulator, dir.path(), &name, out.as_os_str(), Vec::new());
        figures.print("export_sessions_local");
        local.push(figures);
        let url = format!("s3://bench/sessions-{round}");
        let name = format!("moto-{round}");
        let figures = export(&emulator, dir.path(), &name, OsStr::new(&url), moto.env());
        assert_eq!(figures.rows, 100_000, "every session exported");
        figures.print("export_sessions_s3   ");
        s3.push(figures);
    }
    let median = |runs: &[Figures], of: fn(&Figures) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(of).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let rate = |f: &Figures| f.rows as f64 / f.secs;
    let peak = |f: &Figures| f.peak as f64;
    println!(
        "s3 (moto) vs local disk at 100k, medians of {RUNS}: rows/s {:.0} vs {:.0} ({:.2}x), peak_rss {:.1} vs {:.1} MB ({:.2}x)",
        median(&s3, rate),
        median(&local, rate),
        median(&s3, rate) / median(&local, rate),
        median(&s3, peak) / (1024.0 * 1024.0),
        median(&local, peak) / (1024.0 * 1024.0),
        median(&s3, peak) / median(&local, peak)
    );
}
