//! `gleap-etl run` and `plan` on file-to-file pipelines.

use serde_json::{Value, json};

use crate::util::{Dir, json_lines, read_parquet};

/// The pipeline of the README on the sample CSV (BOM, unicode, multi-line fields, a ragged
/// row, an empty email, a duplicate id): a typed Parquet file, the ragged row in the
/// dead-letter file with its line, exit code 1.
#[test]
fn users_to_parquet_on_the_sample_csv() {
    let dir = Dir::new();
    let report = dir.join("report.json");
    let run = dir.run_in_repo(&[
        "run",
        "pipelines/users-to-parquet.yaml",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1, "{run:?}");

    let (schema, rows) = read_parquet(&dir.join("out/users.parquet"));
    assert_eq!(
        rows.len(),
        8,
        "11 rows - 1 ragged - 1 without email - 1 duplicate"
    );
    let types: Vec<(String, String)> = schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().to_string()))
        .collect();
    let type_of = |name: &str| {
        types
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.clone())
            .unwrap_or_default()
    };
    assert_eq!(type_of("userId"), "Utf8");
    assert!(type_of("signup").starts_with("Timestamp(µs"), "{types:?}");
    assert!(
        type_of("customData").contains("seats") && type_of("customData").contains("Int64"),
        "{types:?}"
    );
    assert!(type_of("tags").starts_with("List("), "{types:?}");

    let first = &rows[0];
    assert_eq!(first["userId"], "u001");
    assert_eq!(first["name"], "Zoë Ångström");
    assert_eq!(first["customData"], json!({"seats": 12, "plan": "pro"}));
    assert_eq!(first["tags"], json!(["vip", "beta"]));
    let li = rows.iter().find(|r| r["userId"] == "u002").unwrap();
    assert_eq!(li["notes"], "Called twice\nabout invoices");
    assert_eq!(li["name"], "李雷", "the first u002 wins");
    assert_eq!(
        li["customData"]["plan"], "free",
        "an empty plan becomes the default"
    );
    let soren = rows.iter().find(|r| r["userId"] == "u003").unwrap();
    assert_eq!(soren["lang"], "en");
    assert!(
        rows.iter()
            .all(|r| r["userId"] != "u005" && r["userId"] != "u007")
    );

    let dead = json_lines(&std::fs::read_to_string(dir.join("state/dead-letter.jsonl")).unwrap());
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["line"], 9);
    assert_eq!(dead[0]["row"], 7);
    assert_eq!(dead[0]["stage"], "source");
    assert_eq!(
        dead[0]["reason"],
        "row has 10 fields, the header has 9 columns"
    );
    assert_eq!(dead[0]["record"][0], "u007");

    let report: Value = serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    assert_eq!(report["exit_code"], 1);
    assert_eq!(report["streams"][0]["read"], 11);
    assert_eq!(report["streams"][0]["written"], 8);
    assert_eq!(report["streams"][0]["filtered"], 2);
    assert_eq!(report["streams"][0]["dead_lettered"], 1);
    assert!(
        run.stderr
            .contains("users-to-parquet: finished with dead-lettered records"),
        "{run:?}"
    );
}

fn write_pipeline(dir: &Dir, body: &str) -> String {
    let text = format!("version: 1\nname: t\nstate_dir: state\nstreams:\n{body}");
    dir.write("p.yaml", text);
    "p.yaml".to_string()
}

#[test]
fn a_clean_run_exits_0_and_leaves_no_dead_letter_file() {
    let dir = Dir::new();
    dir.write(
        "in.jsonl",
        "{\"id\": 1, \"name\": \"a\"}\n{\"id\": 2, \"name\": \"b\"}\n",
    );
    let p = write_pipeline(
        &dir,
        "  - name: s\n    source: { jsonl: { path: in.jsonl } }\n    transforms:\n      - set: { upper: '.name | ascii_upcase' }\n    sink: { csv: { path: out/o.csv } }\n",
    );
    let run = dir.run(&["run", &p]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(dir.read("out/o.csv"), "id,name,upper\n1,a,A\n2,b,B\n");
    assert!(!dir.join("state/dead-letter.jsonl").exists());
}

#[test]
fn max_errors_stops_the_run_and_keeps_no_partial_output() {
    let dir = Dir::new();
    let mut csv = String::from("id,n\n");
    for i in 0..5000 {
        csv.push_str(&format!("{i},{}\n", if i % 10 == 0 { "x" } else { "1" }));
    }
    dir.write("in.csv", csv);
    let p = write_pipeline(
        &dir,
        "  - name: s\n    source: { csv: { path: in.csv, types: { n: int } } }\n    sink: { jsonl: { path: out.jsonl } }\n",
    );
    let run = dir.run(&["run", &p, "--max-errors", "3"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("more than --max-errors 3"), "{run:?}");
    assert!(
        !dir.join("out.jsonl").exists(),
        "no output under the real name"
    );
    assert!(
        !dir.join("out.jsonl.inprogress").exists(),
        "no temporary file left"
    );
    assert_eq!(json_lines(&dir.read("state/dead-letter.jsonl")).len(), 4);

    let run = dir.run(&["run", &p, "--max-errors", "1000"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(json_lines(&dir.read("out.jsonl")).len(), 4500);
    assert_eq!(
        json_lines(&dir.read("state/dead-letter.jsonl")).len(),
        500,
        "a new run starts a new file"
    );
}

#[test]
fn a_missing_input_fails_before_anything_is_written() {
    let dir = Dir::new();
    dir.write("in.jsonl", "{\"a\": 1}\n");
    let p = write_pipeline(
        &dir,
        "  - name: ok\n    source: { jsonl: { path: in.jsonl } }\n    sink: { jsonl: { path: a.jsonl } }\n  - name: missing\n    source: { csv: { path: 'data/*.csv' } }\n    sink: { jsonl: { path: b.jsonl } }\n",
    );
    let run = dir.run(&["run", &p]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("stream `missing`: no file matches `data/*.csv`"),
        "{run:?}"
    );
    assert!(!dir.join("a.jsonl").exists());
}

#[test]
fn needs_orders_streams_and_lookup_joins_the_output_of_another() {
    let dir = Dir::new();
    dir.write(
        "plans.jsonl",
        "{\"code\": \"p1\", \"label\": \"Pro\"}\n{\"code\": \"p2\", \"label\": \"Team\"}\n",
    );
    dir.write("users.csv", "id,plan\n1,p1\n2,p2\n3,p9\n");
    let p = write_pipeline(
        &dir,
        r#"  - name: users
    needs: [plans]
    source: { csv: { path: users.csv } }
    transforms:
      - lookup:
          table: { csv: { path: out/plans.csv } }
          on: plan
          key: code
          fields: { "customData.planLabel": label }
          missing: reject
    sink: { jsonl: { path: out/users.jsonl } }
  - name: plans
    source: { jsonl: { path: plans.jsonl } }
    sink: { csv: { path: out/plans.csv } }
"#,
    );
    let run = dir.run(&["run", &p]);
    assert_eq!(run.code, 1, "{run:?}");
    let users = json_lines(&dir.read("out/users.jsonl"));
    assert_eq!(
        users,
        [
            json!({"id": 1, "plan": "p1", "customData": {"planLabel": "Pro"}}),
            json!({"id": 2, "plan": "p2", "customData": {"planLabel": "Team"}})
        ]
    );
    let dead = json_lines(&dir.read("state/dead-letter.jsonl"));
    assert_eq!(dead[0]["stage"], "transforms[0] (lookup)");
    assert_eq!(dead[0]["reason"], "lookup: no row has `plan` = \"p9\"");
    assert_eq!(dead[0]["line"], 4);
}

#[test]
fn a_failed_stream_skips_the_streams_that_need_it() {
    let dir = Dir::new();
    dir.write("in.jsonl", "{\"a\": 1}\n");
    let p = write_pipeline(
        &dir,
        "  - name: first\n    source: { jsonl: { path: in.jsonl } }\n    transforms:\n      - lookup: { table: { csv: { path: missing.csv } }, on: a }\n    sink: { jsonl: { path: a.jsonl } }\n  - name: second\n    needs: [first]\n    source: { jsonl: { path: in.jsonl } }\n    sink: { jsonl: { path: b.jsonl } }\n",
    );
    let run = dir.run(&["run", &p]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("missing.csv"), "{run:?}");
    assert!(
        run.stderr.contains(
            "second  skipped: stream `second` did not run: it needs `first`, which failed"
        ),
        "{run:?}"
    );
    assert!(!dir.join("b.jsonl").exists());
}

#[test]
fn plan_prints_the_first_records_and_writes_nothing() {
    let dir = Dir::new();
    let run = dir.run_in_repo(&["plan", "pipelines/users-to-parquet.yaml", "--limit", "3"]);
    assert_eq!(run.code, 0, "{run:?}");
    let records: Vec<Value> = run
        .stdout
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 3);
    assert_eq!(records[0]["userId"], "u001");
    assert_eq!(records[0]["signup"], "2024-01-15T09:30:00.000Z");
    assert!(
        run.stdout.starts_with("# stream users: csv -> parquet"),
        "{run:?}"
    );
    assert!(
        !dir.join("out").exists() && !dir.join("state").exists(),
        "plan writes nothing"
    );
}

#[test]
fn gzip_and_globbed_inputs_with_a_bad_line_in_the_middle() {
    use std::io::Write;
    let dir = Dir::new();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"{\"n\": 1}\nnot json\n{\"n\": 2}\n").unwrap();
    dir.write("in/part-1.jsonl.gz", gz.finish().unwrap());
    dir.write("in/part-2.jsonl", "{\"n\": 3}\n");
    let p = write_pipeline(
        &dir,
        "  - name: s\n    source: { jsonl: { path: 'in/part-*' } }\n    sink: { jsonl: { path: out.jsonl.gz } }\n",
    );
    let run = dir.run(&["run", &p]);
    assert_eq!(run.code, 1, "{run:?}");
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(dir.join("out.jsonl.gz")).unwrap()),
        &mut text,
    )
    .unwrap();
    assert_eq!(
        json_lines(&text),
        [json!({"n": 1}), json!({"n": 2}), json!({"n": 3})]
    );
    let dead = json_lines(&dir.read("state/dead-letter.jsonl"));
    assert!(
        dead[0]["file"]
            .as_str()
            .unwrap()
            .ends_with("part-1.jsonl.gz")
    );
    assert_eq!(dead[0]["line"], 2);
    assert_eq!(dead[0]["record"], "not json");
}

/// An interrupted run (Ctrl-C) leaves the previous output in place and no temporary file.
#[test]
fn an_interrupted_run_replaces_nothing() {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    let dir = Dir::new();
    dir.write("in.jsonl", "{\"a\": 1}\n".repeat(5000));
    dir.write("out.jsonl", "previous\n");
    let yaml = format!(
        "version: 1\nname: t\nstate_dir: {}\nstreams:\n  - name: s\n    source: {{ jsonl: {{ path: {} }} }}\n    sink: {{ jsonl: {{ path: {} }} }}\n",
        dir.join("state").display(),
        dir.join("in.jsonl").display(),
        dir.join("out.jsonl").display()
    );
    let pipeline = gleap_etl::pipeline::Pipeline::parse(
        &yaml,
        std::path::Path::new("p.yaml"),
        &gleap_etl::pipeline::ProcessEnv,
    )
    .unwrap();
    let options = gleap_etl::engine::RunOptions {
        interrupt: Some(Arc::new(AtomicBool::new(true))),
        ..Default::default()
    };
    let report = gleap_etl::engine::run(&pipeline, &options);
    assert_eq!(report.exit_code, 2);
    assert_eq!(
        report.error.as_deref(),
        Some(
            "interrupted: unfinished outputs were left as they were; what was confirmed is kept for the next run"
        )
    );
    assert_eq!(dir.read("out.jsonl"), "previous\n");
    assert!(!dir.join("out.jsonl.inprogress").exists());
}

/// The rule for a missing field versus null (README, Transforms): stages treat the two
/// alike (a filter sees null, `default` fills both, `cast` leaves both as they are), a
/// renamed null stays a null field; JSON lines keep the difference (no key / `null`), CSV
/// writes both empty, Parquet both null. Pinned here so that a columnar data plane keeps it.
#[test]
fn a_missing_field_and_a_null_are_alike_to_stages_and_kept_apart_in_json_lines() {
    let dir = Dir::new();
    dir.write(
        "in.jsonl",
        "{\"id\": 1, \"a\": null, \"n\": null}\n{\"id\": 2}\n{\"id\": 3, \"a\": \"x\", \"n\": \"4\"}\n",
    );
    let stages = "    transforms:\n      - rename: { a: b }\n      - cast: { n: int }\n      - default: { c: d }\n      - filter: '.b == null or .b == \"x\"'\n      - keep: [id, b, n, c]\n";
    let p = write_pipeline(
        &dir,
        &format!(
            "  - name: j\n    source: {{ jsonl: {{ path: in.jsonl }} }}\n{stages}    sink: {{ jsonl: {{ path: out/o.jsonl }} }}\n  - name: c\n    source: {{ jsonl: {{ path: in.jsonl }} }}\n{stages}    sink: {{ csv: {{ path: out/o.csv, columns: [id, b, n, c] }} }}\n  - name: p\n    source: {{ jsonl: {{ path: in.jsonl }} }}\n{stages}    sink: {{ parquet: {{ path: out/o.parquet, schema: {{ b: string, n: int }} }} }}\n"
        ),
    );
    let run = dir.run(&["run", &p]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        json_lines(&dir.read("out/o.jsonl")),
        [
            json!({"id": 1, "b": null, "n": null, "c": "d"}),
            json!({"id": 2, "c": "d"}),
            json!({"id": 3, "b": "x", "n": 4, "c": "d"}),
        ]
    );
    assert_eq!(dir.read("out/o.csv"), "id,b,n,c\n1,,,d\n2,,,d\n3,x,4,d\n");
    let (_, rows) = read_parquet(&dir.join("out/o.parquet"));
    let cells: Vec<(Value, Value, Value)> = rows
        .iter()
        .map(|r| {
            let get = |k: &str| r.get(k).cloned().unwrap_or(Value::Null);
            (get("b"), get("n"), get("c"))
        })
        .collect();
    assert_eq!(
        cells,
        [
            (Value::Null, Value::Null, json!("d")),
            (Value::Null, Value::Null, json!("d")),
            (json!("x"), json!(4), json!("d")),
        ]
    );
}
