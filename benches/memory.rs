//! Peak memory and throughput of `gleap-etl run` converting CSV -> 4 stages -> Parquet at
//! 100k and 1M rows (10 columns), each in a fresh process. Targets: peak memory under
//! 200 MB at 1M rows, and no more than 20% above the 100k-row peak (memory stays flat).
//!
//!     cargo bench --bench memory

mod common;

use std::process::Command;

const TARGET_PEAK_BYTES: u64 = 200 * 1024 * 1024;
const TARGET_GROWTH: f64 = 1.20;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let mut results = Vec::new();
    for rows in [100_000usize, 1_000_000] {
        let input = dir.path().join(format!("contacts-{rows}.csv"));
        common::write_contacts_csv(&input, rows);
        let state = dir.path().join(format!("state-{rows}"));
        let yaml = common::pipeline_yaml(
            &input,
            &dir.path().join(format!("out-{rows}.parquet")),
            &state,
        );
        let pipeline = dir.path().join(format!("p-{rows}.yaml"));
        std::fs::write(&pipeline, yaml).unwrap();
        let report_path = dir.path().join(format!("report-{rows}.json"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gleap-etl"));
        cmd.args([
            "run",
            pipeline.to_str().unwrap(),
            "--quiet",
            "--report",
            report_path.to_str().unwrap(),
        ]);
        let (report, peak) = common::run_for_report(cmd, &report_path);
        let secs = report["elapsed_secs"].as_f64().unwrap();
        let input_mb = std::fs::metadata(&input).unwrap().len() as f64 / 1e6;
        println!(
            "csv_to_parquet rows={rows:>9} input={input_mb:>7.1} MB  elapsed={secs:>6.2} s  rows/s={:>10.0}  peak_rss={:>6.1} MB",
            rows as f64 / secs,
            peak as f64 / (1024.0 * 1024.0)
        );
        results.push(peak);
    }
    common::check_peaks(
        (results[0], results[1]),
        TARGET_PEAK_BYTES,
        TARGET_GROWTH,
        "peak_rss(1M) < 200 MB",
        "peak_rss(1M) <= 1.2 x peak_rss(100k)",
    );
}
