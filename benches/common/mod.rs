//! Shared by the benches: a deterministic CSV of contacts and the pipeline that converts it.

#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::process::Command;

/// Writes `rows` contact rows (10 columns) to `path`; the same rows every time.
pub fn write_contacts_csv(path: &Path, rows: usize) {
    let file = std::fs::File::create(path).expect("create the bench input");
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    writeln!(
        out,
        "id,email,name,plan,seats,signup,country,active,score,tags"
    )
    .unwrap();
    let plans = ["free", "pro", "team", "enterprise"];
    let countries = ["DE", "US", "FR", "JP", "BR", "IN", "SE", "ES"];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..rows {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let email = if x.is_multiple_of(50) {
            String::new()
        } else {
            format!("user{i}@example.com")
        };
        writeln!(
            out,
            "{i},{email},\"User {i}, Jr.\",{},{},2024-{:02}-{:02} {:02}:{:02}:00,{},{},{}.{},\"tag{},tag{}\"",
            plans[(x % 4) as usize],
            1 + x % 200,
            1 + (x >> 8) % 12,
            1 + (x >> 16) % 28,
            (x >> 24) % 24,
            (x >> 32) % 60,
            countries[((x >> 40) % 8) as usize],
            ((x >> 44) as u32).is_multiple_of(2),
            (x >> 45) % 100,
            (x >> 52) % 100,
            x % 7,
            x % 5,
        )
        .unwrap();
    }
    out.flush().unwrap();
}

/// CSV -> 4 stages -> Parquet, the conversion the benches measure.
pub fn pipeline_yaml(input: &Path, output: &Path, state: &Path) -> String {
    format!(
        r#"version: 1
name: bench-csv-to-parquet
state_dir: {state}
streams:
  - name: contacts
    source:
      csv: {{ path: "{input}" }}
    transforms:
      - filter: '.email != null'
      - rename: {{ id: userId, plan: customData.plan, seats: customData.seats }}
      - cast: {{ signup: timestamp, score: float }}
      - default: {{ country: unknown }}
    sink:
      parquet: {{ path: "{output}" }}
"#,
        state = state.display(),
        input = input.display(),
        output = output.display(),
    )
}

/// Prints whether the larger run's peak is under `target_bytes` and within `max_growth` of
/// the smaller run's, labelled `peak_label` and `flat_label`; exits 1 when either is missed.
pub fn check_peaks(
    (small, large): (u64, u64),
    target_bytes: u64,
    max_growth: f64,
    peak_label: &str,
    flat_label: &str,
) {
    let growth = large as f64 / small as f64;
    let peak_ok = large < target_bytes;
    let flat_ok = growth <= max_growth;
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "target {peak_label}: {}   target {flat_label}: {} (x{growth:.2})",
        verdict(peak_ok),
        verdict(flat_ok),
    );
    if !(peak_ok && flat_ok) {
        std::process::exit(1);
    }
}

/// Runs `cmd`, a `gleap-etl` command writing its report to `report_path`, which must succeed;
/// its report and the peak memory it reports (bytes).
pub fn run_for_report(mut cmd: Command, report_path: &Path) -> (serde_json::Value, u64) {
    let status = cmd.status().expect("gleap-etl runs");
    assert!(status.success(), "gleap-etl failed: {status}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report_path).unwrap()).unwrap();
    let peak = report["peak_memory_bytes"]
        .as_u64()
        .expect("peak memory is reported on Linux");
    (report, peak)
}
