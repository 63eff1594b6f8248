//! Issue 15: batches between stages give what records one by one give. The same pipelines
//! run twice on the same hostile CSV, once with batches (the default) and once with
//! `GLEAP_ETL_DATA_PLANE=rows`: the Parquet rows, the dead-letter file (reasons and
//! positions) and every count of the report must be the same, and the batch run must have
//! moved most rows as columns (else this would prove nothing).

use std::fmt::Write as _;

use serde_json::Value;

use crate::util::{Dir, read_parquet};

/// Rows of a CSV that starts tame (the inference window) and then has every kind of row
/// the batches must hand back to the row path: ints in a float column, text in an int
/// column, bad booleans, timestamps that do not parse, ragged rows, invalid UTF-8, and a
/// quote never closed near the end.
fn hostile_csv(rows: usize) -> Vec<u8> {
    let mut out = String::from("id,email,name,plan,seats,signup,country,active,score,tags,born\n");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..rows {
        let r = next();
        // Every third batch of 4096 rows has some.
        let odd = (i / 4096) % 3 == 1 && r % 97 == 0;
        let kind = r % 11;
        let id = if odd && kind == 0 {
            format!("x{i}")
        } else {
            i.to_string()
        };
        let email = match r % 13 {
            0 => String::new(),
            1 => "NULL".into(),
            _ => format!("user{i}@example.com"),
        };
        let seats = if odd && kind == 1 {
            "1.5".to_string()
        } else {
            (r % 300).to_string()
        };
        let signup = match (odd, kind) {
            (true, 2) => "soon".to_string(),
            (true, 3) => String::new(),
            _ => format!("2024-{:02}-{:02} 1{}:30:00", 1 + r % 12, 1 + r % 28, r % 10),
        };
        let country = if r % 5 == 0 {
            String::new()
        } else {
            ["ES", "SE", "DE"][(r % 3) as usize].into()
        };
        let active = if odd && kind == 4 {
            "maybe"
        } else if r % 2 == 0 {
            "true"
        } else {
            "FALSE"
        };
        let score = if odd && kind == 5 {
            "80".to_string()
        } else {
            format!("{}.{}", r % 100, 1 + r % 9)
        };
        let plan = ["pro", "team", "", "Zoë ☃"][(r % 4) as usize];
        // Dates (a date column in Parquet), one in a thousand not a date at all.
        let born = if r % 1000 == 7 {
            "1990-02-30".to_string()
        } else {
            format!("19{:02}-{:02}-{:02}", 50 + r % 50, 1 + r % 12, 1 + r % 28)
        };
        if odd && kind == 6 {
            writeln!(out, "{id},{email},ragged").unwrap();
            continue;
        }
        writeln!(
            out,
            "{id},{email},\"User {i}, Jr.\",{plan},{seats},{signup},{country},{active},{score},\"t{},t2\",{born}",
            r % 7
        )
        .unwrap();
    }
    let mut bytes = out.into_bytes();
    // Invalid UTF-8 in a row of the middle.
    bytes.extend_from_slice(
        b"999999,bad@example.com,\xff\xfe,pro,1,2024-01-01,ES,true,1.5,t,1990-01-01\n",
    );
    bytes.extend_from_slice(
        b"1000000,late@example.com,\"never closed,pro,1,2024-01-01,ES,true,1.5,t,1990-01-01\n",
    );
    bytes
}

const STAGES: &str = r#"
    transforms:
      - filter: '.email != null and .score > 5'
      - skip: { when: '.active == false', reason: inactive }
      - rename: { id: userId, plan: customData.plan, seats: customData.seats }
      - cast: { signup: timestamp, score: float, "customData.seats": int }
      - default: { country: unknown, lang: en }
      - drop: [tags]
"#;

fn pipeline(dir: &Dir, stages: &str, infer_rows: usize) -> String {
    let source = format!(
        r#"csv: {{ path: "{}", infer_rows: 100 }}"#,
        dir.join("contacts.csv").display()
    );
    let sink = format!(
        r#"parquet: {{ path: "{}", infer_rows: {infer_rows}, batch_rows: 1000 }}"#,
        dir.join("out/contacts.parquet").display()
    );
    pipeline_from(dir, &source, stages, &sink)
}

fn pipeline_from(dir: &Dir, source: &str, stages: &str, sink: &str) -> String {
    let yaml = format!(
        r#"version: 1
name: data-plane
streams:
  - name: contacts
    source:
      {source}
{stages}
    sink:
      {sink}
"#
    );
    dir.write("pipeline.yaml", yaml);
    dir.join("pipeline.yaml").display().to_string()
}

/// What a run gave: exit code, Parquet schema and rows, dead letters, and the report's counts.
struct Outcome {
    code: i32,
    parquet: String,
    dead_letters: String,
    counts: Value,
    columnar_rows: u64,
}

fn run(dir: &Dir, pipeline: &str, plane: Option<&str>) -> Outcome {
    let state = dir.join("state");
    let _ = std::fs::remove_dir_all(&state);
    let report = dir.join("report.json");
    let mut cmd = dir.cmd(&[
        "run",
        pipeline,
        "--no-progress",
        "--state-dir",
        state.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    match plane {
        Some(p) => cmd.env("GLEAP_ETL_DATA_PLANE", p),
        None => cmd.env_remove("GLEAP_ETL_DATA_PLANE"),
    };
    let out = crate::util::Run::from(cmd.output().unwrap());
    // The file as it is (CSV, JSON lines), or a Parquet file's schema and rows.
    let parquet = match std::fs::read_to_string(dir.join("out/contacts.out")) {
        Ok(text) => text,
        Err(_) => {
            let (schema, rows) = read_parquet(&dir.join("out/contacts.parquet"));
            let mut text = format!("{schema:?}\n");
            for row in rows {
                text.push_str(&serde_json::to_string(&row).unwrap());
                text.push('\n');
            }
            text
        }
    };
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let stream = report["streams"][0].clone();
    let mut counts = serde_json::Map::new();
    for key in [
        "status",
        "read",
        "skipped",
        "source_rejected",
        "filtered",
        "transform_rejected",
        "transforms",
        "written",
        "sink_rejected",
        "dead_lettered",
    ] {
        counts.insert(key.into(), stream[key].clone());
    }
    counts.insert("schema".into(), stream["sink"]["detail"]["schema"].clone());
    Outcome {
        code: out.code,
        parquet,
        // The stages' dead letters in file order; the sink's, which the writer thread
        // writes between them as the threads run (with batches or without), sorted.
        dead_letters: {
            let text = std::fs::read_to_string(state.join("dead-letter.jsonl")).unwrap_or_default();
            let (mut sink, stages): (Vec<&str>, Vec<&str>) =
                text.lines().partition(|l| l.contains(r#""stage":"sink""#));
            sink.sort_unstable();
            format!("{}\n-- sink --\n{}", stages.join("\n"), sink.join("\n"))
        },
        counts: Value::Object(counts),
        columnar_rows: stream["columnar_rows"].as_u64().unwrap_or(0),
    }
}

fn same_either_way(stages: &str, sink_infer_rows: usize, rows: usize) -> Outcome {
    let dir = Dir::new();
    dir.write("contacts.csv", hostile_csv(rows));
    let pipeline = pipeline(&dir, stages, sink_infer_rows);
    compare_planes(&dir, &pipeline, "")
}

/// Runs `pipeline` one record at a time, then in batches: the same output file, dead
/// letters and counts; what the batch run gave.
fn compare_planes(dir: &Dir, pipeline: &str, what: &str) -> Outcome {
    let by_rows = run(dir, pipeline, Some("rows"));
    let by_batches = run(dir, pipeline, None);
    assert_eq!(by_rows.columnar_rows, 0, "{what}");
    assert_eq!(by_batches.code, by_rows.code, "{what}");
    assert_eq!(by_batches.counts, by_rows.counts, "{what}");
    assert!(
        by_batches.parquet == by_rows.parquet,
        "{what}: the output files differ"
    );
    assert!(
        by_batches.dead_letters == by_rows.dead_letters,
        "{what}: the dead letters differ:\n{}\n---\n{}",
        by_batches.dead_letters,
        by_rows.dead_letters
    );
    by_batches
}

#[test]
fn batches_write_the_rows_and_dead_letters_that_records_write() {
    let out = same_either_way(STAGES, 100, 30_000);
    // Exit 1: dead letters (ragged rows, bad UTF-8, timestamps that do not parse...).
    assert_eq!(out.code, 1);
    let read = out.counts["read"].as_u64().unwrap();
    assert_eq!(read, 30_002);
    assert!(
        out.dead_letters.lines().count() > 20,
        "{}",
        out.dead_letters.lines().count()
    );
    let written = out.counts["written"].as_u64().unwrap();
    assert!(
        out.columnar_rows > written / 2,
        "{} of {written} rows as columns",
        out.columnar_rows
    );
    assert!(
        out.dead_letters
            .contains("cannot cast string \\\"soon\\\" to timestamp")
    );
}

#[test]
fn a_row_stage_between_kernels_and_a_sink_schema_from_all_rows_change_nothing() {
    // A jq stage in the middle: the kernels before it run on columns, the rest on rows.
    let stages = STAGES.replace(
        "      - drop: [tags]",
        "      - jq: '.tags = (.tags | split(\",\"))'\n      - drop: [lang]",
    );
    let out = same_either_way(&stages, 100_000, 6_000);
    assert_eq!(out.columnar_rows, 0);
    assert!(
        out.parquet.contains(r#""tags":["t"#),
        "{}",
        &out.parquet[..400]
    );
    // Only filter-and-cast: every row may stay columns through to the file.
    let stages =
        "    transforms:\n      - filter: '.email != null'\n      - cast: { score: float }\n";
    same_either_way(stages, 100, 6_000);
}

#[test]
fn from_parquet_batches_pass_through_the_kernels_as_records_would() {
    let dir = Dir::new();
    dir.write("contacts.csv", hostile_csv(12_000));
    // The CSV as it is, to Parquet (typed as inferred from the first 100 rows): the input.
    let raw = pipeline(&dir, "", 100);
    run(&dir, &raw, None);
    std::fs::rename(
        dir.join("out/contacts.parquet"),
        dir.join("contacts.parquet"),
    )
    .unwrap();
    let source = format!(
        r#"parquet: {{ path: "{}" }}"#,
        dir.join("contacts.parquet").display()
    );
    let sink = format!(
        r#"parquet: {{ path: "{}", infer_rows: 100 }}"#,
        dir.join("out/contacts.parquet").display()
    );
    let pipeline = pipeline_from(&dir, &source, STAGES, &sink);
    let out = compare_planes(&dir, &pipeline, "from Parquet");
    assert!(out.columnar_rows > 0);
}

#[test]
fn csv_and_json_lines_files_and_dedupe_are_byte_for_byte_the_same() {
    let stages = format!("{STAGES}      - dedupe: {{ key: [customData.seats, country] }}\n");
    for sink in ["jsonl", "csv"] {
        let dir = Dir::new();
        dir.write("contacts.csv", hostile_csv(14_000));
        let source = format!(
            r#"csv: {{ path: "{}", infer_rows: 100 }}"#,
            dir.join("contacts.csv").display()
        );
        let out = format!(
            r#"{sink}: {{ path: "{}" }}"#,
            dir.join("out/contacts.out").display()
        );
        let pipeline = pipeline_from(&dir, &source, &stages, &out);
        let by_batches = compare_planes(&dir, &pipeline, sink);
        assert!(by_batches.columnar_rows > 0, "{sink}");
        let dedupe = &by_batches.counts["transforms"][6];
        assert!(
            dedupe["input"].as_u64().unwrap() > dedupe["output"].as_u64().unwrap() + 1000,
            "{dedupe}"
        );
    }
}

/// A CSV read in batches into a dataset, the reader made to panic part-way: the parts
/// committed are kept, the re-run resumes after them, and every row is in the dataset once;
/// parts are still cut at `part_rows`, not at the end of a batch.
#[test]
fn a_dataset_from_batches_resumes_after_a_failed_run_with_every_row_once() {
    let dir = Dir::new();
    let mut csv = String::from("_id,n,name\n");
    for i in 0..10_000 {
        writeln!(csv, "u{i},{},name {i}", i % 7).unwrap();
    }
    dir.write("contacts.csv", csv);
    let source = format!(
        r#"csv: {{ path: "{}" }}"#,
        dir.join("contacts.csv").display()
    );
    let sink = format!(
        r#"parquet: {{ path: "{}", dataset: {{ part_rows: 1000 }} }}"#,
        dir.join("out/ds").display()
    );
    let stages = "    transforms:\n      - filter: '.n != 3'\n";
    let pipeline = pipeline_from(&dir, &source, stages, &sink);
    let state = dir.join("state");
    let args = [
        "run",
        pipeline.as_str(),
        "--no-progress",
        "--state-dir",
        state.to_str().unwrap(),
    ];
    let mut first = dir.cmd(&args);
    first.env("GLEAP_ETL_TEST_PANIC_READER", "contacts:5500");
    let first = crate::util::Run::from(first.output().unwrap());
    assert_eq!(first.code, 2, "{first:?}");
    let report = dir.join("report.json");
    let mut again = dir.cmd(&args);
    again.args(["--report", report.to_str().unwrap()]);
    let second = crate::util::Run::from(again.output().unwrap());
    assert_eq!(second.code, 0, "{second:?}");
    let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let skipped = report["streams"][0]["skipped"].as_u64().unwrap();
    assert!(
        (2000..5500).contains(&skipped),
        "resumed after {skipped} rows committed before the panic"
    );
    let mut ids = crate::export::dataset_ids(&dir.join("out/ds"));
    let expected: Vec<String> = (0..10_000)
        .filter(|i| i % 7 != 3)
        .map(|i| format!("u{i}"))
        .collect();
    assert_eq!(ids.len(), expected.len(), "every row once");
    ids.sort();
    let mut sorted = expected.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    // Parts of about part_rows rows.
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("out/ds/_manifest.json")).unwrap()).unwrap();
    let parts = manifest["files"].as_array().unwrap().len();
    assert!((8..=10).contains(&parts), "{parts} parts: {manifest}");
}
