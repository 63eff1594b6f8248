//! Hostile input files and programs (issue 12, defects 5, 6, 7, 11 and 15): each is read,
//! or dead-lettered with its reason, within the limits; nothing aborts, nothing is rounded.

use serde_json::{Value, json};

use crate::util::{Dir, Run, json_lines, read_parquet};

/// Writes `pipeline.yaml` with these streams (state in `state/`) and runs it with a report.
fn run_streams(dir: &Dir, streams: &str) -> (Run, Value) {
    dir.write(
        "pipeline.yaml",
        format!("version: 1\nname: hostile\nstate_dir: state\nstreams:\n{streams}"),
    );
    let run = dir.run(&[
        "run",
        "pipeline.yaml",
        "--no-progress",
        "--report",
        "report.json",
    ]);
    assert!(!run.stderr.contains("panicked at"), "{run:?}");
    let report = serde_json::from_str(&dir.read("report.json")).unwrap_or(Value::Null);
    (run, report)
}

/// The dead letters of the run, as JSON.
fn dead_letters(dir: &Dir) -> Vec<Value> {
    std::fs::read_to_string(dir.join("state/dead-letter.jsonl"))
        .map(|t| json_lines(&t))
        .unwrap_or_default()
}

#[test]
fn an_unterminated_quote_is_a_dead_letter_and_reading_goes_on_after_its_line() {
    let dir = Dir::new();
    dir.write(
        "notes.csv",
        "id,note\n1,\"two\nlines\"\n2,fine\n3,\"never closed\n4,read again\n5,\"\"\n",
    );
    let (run, _) = run_streams(
        &dir,
        "  - name: notes\n    source: { csv: { path: notes.csv } }\n    sink: { jsonl: { path: out/notes.jsonl } }\n",
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        json_lines(&dir.read("out/notes.jsonl")),
        [
            json!({"id": 1, "note": "two\nlines"}),
            json!({"id": 2, "note": "fine"}),
            json!({"id": 4, "note": "read again"}),
            json!({"id": 5, "note": null}),
        ]
    );
    let dead = dead_letters(&dir);
    let summary: Vec<(u64, &str, &Value)> = dead
        .iter()
        .map(|d| {
            (
                d["line"].as_u64().unwrap(),
                d["reason"].as_str().unwrap(),
                &d["record"],
            )
        })
        .collect();
    assert_eq!(
        summary,
        [(
            5,
            "quote opened on line 5 never closed; the record ends with that line and reading goes on from line 6",
            &json!(["3", "never closed"])
        )]
    );
}

#[test]
fn integers_beyond_64_bits_keep_their_digits_through_every_sink() {
    let dir = Dir::new();
    let (big, beyond_u64) = ("12345678901234567890123", "18446744073709551617");
    dir.write(
        "big.csv",
        format!("id,big,u,f\n1,{big},{beyond_u64},1.5\n2,7,-{beyond_u64},2\n"),
    );
    dir.write(
        "big.jsonl",
        format!("{{\"id\":1,\"big\":{big},\"u\":[{beyond_u64}],\"ok\":18446744073709551615,\"f\":1.5}}\n"),
    );
    let stream = |name: &str, source: &str, sink: &str| {
        format!("  - name: {name}\n    source: {source}\n    sink: {sink}\n")
    };
    let (run, _) = run_streams(
        &dir,
        &[
            stream(
                "csv-csv",
                "{ csv: { path: big.csv } }",
                "{ csv: { path: out/big.csv } }",
            ),
            stream(
                "csv-jsonl",
                "{ csv: { path: big.csv } }",
                "{ jsonl: { path: out/big.jsonl } }",
            ),
            stream(
                "jsonl-jsonl",
                "{ jsonl: { path: big.jsonl } }",
                "{ jsonl: { path: out/again.jsonl } }",
            ),
            stream(
                "csv-parquet",
                "{ csv: { path: big.csv } }",
                "{ parquet: { path: out/big.parquet } }",
            ),
        ]
        .concat(),
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        dir.read("out/big.csv"),
        format!("id,big,u,f\n1,{big},{beyond_u64},1.5\n2,7,-{beyond_u64},2\n")
    );
    assert_eq!(
        json_lines(&dir.read("out/big.jsonl")),
        [
            json!({"id": 1, "big": big, "u": beyond_u64, "f": 1.5}),
            json!({"id": 2, "big": "7", "u": format!("-{beyond_u64}"), "f": 2}),
        ]
    );
    assert_eq!(
        json_lines(&dir.read("out/again.jsonl")),
        [json!({"id": 1, "big": big, "u": [beyond_u64], "ok": 18446744073709551615u64, "f": 1.5})]
    );
    let (schema, rows) = read_parquet(&dir.join("out/big.parquet"));
    for column in ["big", "u"] {
        assert_eq!(
            schema.field_with_name(column).unwrap().data_type(),
            &arrow::datatypes::DataType::Utf8,
            "{column}"
        );
    }
    assert_eq!(rows[0]["big"], json!(big));
    assert_eq!(rows[1]["u"], json!(format!("-{beyond_u64}")));
}

#[test]
fn values_nested_past_the_depth_limit_are_dead_letters_not_aborts() {
    let dir = Dir::new();
    dir.write(
        "deep.csv",
        format!("id,x\n1,\"{}\"\n2,\"[[1]]\"\n", "[".repeat(3000)),
    );
    let (run, _) = run_streams(
        &dir,
        "  - name: deep
    source: { csv: { path: deep.csv } }
    transforms:
      - jq: '.x |= fromjson'
      - set: { y: 'if .id == 2 then reduce range(50000) as $i (0; [.]) else null end' }
    sink: { jsonl: { path: out/deep.jsonl } }
",
    );
    assert_eq!(run.code, 1, "{run:?}");
    let dead = dead_letters(&dir);
    let reasons: Vec<&str> = dead.iter().map(|d| d["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons[0].contains("cannot parse JSON nested deeper than the depth limit (128 levels)"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].contains("jq produced a value nested deeper than the depth limit"),
        "{reasons:?}"
    );
}

#[test]
fn only_http_and_relative_images_become_attachments_and_the_rest_are_reported() {
    let dir = Dir::new();
    let html = r#"<p>hi <img src="javascript:alert(1)"><img src="java&#9;script:alert(2)"><img src="data:image/png;base64,AAAA"><img src="https://x.test/ok.png"><img src="/rel/b.gif"></p>"#;
    dir.write(
        "comments.jsonl",
        format!("{}\n", json!({"id": 1, "html": html})),
    );
    let (run, report) = run_streams(
        &dir,
        "  - name: comments
    source: { jsonl: { path: comments.jsonl } }
    transforms:
      - html_to_tiptap: { from: [html] }
    sink: { jsonl: { path: out/comments.jsonl } }
",
    );
    assert_eq!(run.code, 0, "{run:?}");
    let out = json_lines(&dir.read("out/comments.jsonl"));
    let urls: Vec<&str> = out[0]["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["url"].as_str().unwrap())
        .collect();
    assert_eq!(urls, ["https://x.test/ok.png", "/rel/b.gif"]);
    assert_eq!(
        report["streams"][0]["transforms"][0]["dropped"],
        json!({"image with a data: src": 1, "image with a javascript: src": 2})
    );
    assert!(
        run.stderr
            .contains("image with a javascript: src left out: 2"),
        "{run:?}"
    );
}

#[test]
fn fields_and_records_past_the_size_limits_are_dead_letters_and_reading_goes_on() {
    let dir = Dir::new();
    // A quoted field of 1.2 MiB over many lines, then a good row: the line numbers after the
    // skipped record are still the file's.
    let field = "x\n".repeat(600_000);
    dir.write(
        "big.csv",
        format!("id,body\n1,ok\n2,\"{field}\"\n3,after\n"),
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, b"id,body\n1,").unwrap();
    std::io::Write::write_all(&mut gz, &vec![0u8; 3 << 20]).unwrap();
    std::io::Write::write_all(&mut gz, b"\n2,ok\n").unwrap();
    dir.write("zeros.csv.gz", gz.finish().unwrap());
    dir.write(
        "long.jsonl",
        format!(
            "{{\"a\":1}}\n{{\"a\":\"{}\"}}\n{{\"a\":3}}\n",
            "y".repeat(1_200_000)
        ),
    );
    let (run, _) = run_streams(
        &dir,
        "  - name: csv
    source: { csv: { path: big.csv, max_field_mib: 1 } }
    sink: { jsonl: { path: out/csv.jsonl } }
  - name: zeros
    source: { csv: { path: zeros.csv.gz, max_field_mib: 1, max_record_mib: 2 } }
    sink: { jsonl: { path: out/zeros.jsonl } }
  - name: jsonl
    source: { jsonl: { path: long.jsonl, max_record_mib: 1 } }
    sink: { jsonl: { path: out/jsonl.jsonl } }
",
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        json_lines(&dir.read("out/csv.jsonl")),
        [
            json!({"id": 1, "body": "ok"}),
            json!({"id": 3, "body": "after"})
        ]
    );
    assert_eq!(
        json_lines(&dir.read("out/zeros.jsonl")),
        [json!({"id": 2, "body": "ok"})]
    );
    assert_eq!(
        json_lines(&dir.read("out/jsonl.jsonl")),
        [json!({"a": 1}), json!({"a": 3})]
    );
    let mut dead: Vec<(String, u64, String)> = dead_letters(&dir)
        .iter()
        .map(|d| {
            (
                d["stream"].as_str().unwrap().to_string(),
                d["line"].as_u64().unwrap(),
                d["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    dead.sort();
    assert_eq!(
        dead,
        [
            (
                "csv".to_string(),
                3,
                "a field is larger than max_field_mib (1 MiB)".to_string()
            ),
            (
                "jsonl".to_string(),
                2,
                "the line is longer than max_record_mib (1 MiB)".to_string()
            ),
            (
                "zeros".to_string(),
                2,
                "a field is larger than max_field_mib (1 MiB)".to_string()
            ),
        ]
    );
    // The rows after the skipped record keep their own line numbers.
    let report: Value = serde_json::from_str(&dir.read("report.json")).unwrap();
    assert_eq!(report["records_written"], json!(5));
}

#[test]
fn jq_stages_stop_at_their_time_output_and_recursion_limits() {
    let dir = Dir::new();
    dir.write(
        "in.jsonl",
        "{\"id\":1}\n{\"id\":2}\n{\"id\":3}\n{\"id\":4}\n",
    );
    let (run, _) = run_streams(
        &dir,
        "  - name: limited
    jq_timeout_ms: 50
    jq_max_outputs: 100
    source: { jsonl: { path: in.jsonl } }
    transforms:
      - jq: 'if .id == 1 then def f: f; f elif .id == 2 then .n = range(1e9) else . end'
      - set: { x: 'if .id == 3 then [range(1e12)] elif .id == 4 then def g: 1 + g; g else 0 end' }
    sink: { jsonl: { path: out/limited.jsonl } }
",
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(!dir.join("out/limited.jsonl").exists() || dir.read("out/limited.jsonl").is_empty());
    let dead = dead_letters(&dir);
    let reason_of = |id: u64| -> String {
        dead.iter()
            .find(|d| d["record"]["id"] == json!(id))
            .map(|d| d["reason"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("no dead letter for {id}: {dead:?}"))
    };
    for (id, expected) in [
        (1, "jq_timeout_ms (50 ms)"),
        (2, "jq_max_outputs (100)"),
        (3, "jq_timeout_ms (50 ms)"),
        (4, "jq recursion too deep"),
    ] {
        let reason = reason_of(id);
        assert!(reason.contains(expected), "{id}: {reason}");
    }
}

#[test]
fn limit_options_are_checked_where_they_are_written() {
    let dir = Dir::new();
    dir.write("in.csv", "a\n1\n");
    dir.write(
        "pipeline.yaml",
        "version: 1
name: limits
streams:
  - name: s
    jq_max_outputs: 0
    source: { csv: { path: in.csv, max_record_mib: 0 } }
    sink: { jsonl: { path: out/s.jsonl } }
  - name: t
    source: { jsonl: { path: in.csv, max_field_mib: 8, max_record_mib: 4 } }
    sink: { jsonl: { path: out/t.jsonl } }
",
    );
    let run = dir.run(&["validate", "pipeline.yaml"]);
    assert_eq!(run.code, 2, "{run:?}");
    for (at, text) in [
        (
            "pipeline.yaml:5:",
            "streams[0].jq_max_outputs: must be at least 1",
        ),
        (
            "pipeline.yaml:6:",
            "streams[0].source.csv.max_record_mib: 0 is not a size limit",
        ),
        (
            "pipeline.yaml:9:",
            "streams[1].source.jsonl.max_field_mib: a field (8 MiB) cannot be larger than a record (max_record_mib: 4 MiB)",
        ),
    ] {
        assert!(
            run.stderr
                .lines()
                .any(|l| l.starts_with(at) && l.contains(text)),
            "{at} {text}: {run:?}"
        );
    }
}

#[test]
fn a_header_of_100k_columns_and_100k_nested_divs_are_read_in_linear_time() {
    let dir = Dir::new();
    let n = 100_000;
    // All alike: each name needs a suffix, the worst case for naming.
    dir.write(
        "wide.csv",
        format!("{}c\n{}1\n", "c,".repeat(n), "1,".repeat(n)),
    );
    dir.write(
        "divs.csv",
        format!(
            "id,html\n1,\"{}deep{}\"\n",
            "<div>".repeat(n),
            "</div>".repeat(n)
        ),
    );
    let started = std::time::Instant::now();
    let (run, _) = run_streams(
        &dir,
        "  - name: wide
    source: { csv: { path: wide.csv } }
    sink: { jsonl: { path: out/wide.jsonl } }
  - name: divs
    source: { csv: { path: divs.csv } }
    transforms:
      - html_to_tiptap: { from: [html] }
    sink: { jsonl: { path: out/divs.jsonl } }
",
    );
    assert_eq!(run.code, 0, "{run:?}");
    let wide = json_lines(&dir.read("out/wide.jsonl"));
    let record = wide[0].as_object().unwrap();
    assert_eq!(record.len(), n + 1);
    assert_eq!(record[&format!("c_{}", n + 1)], json!(1));
    let divs = json_lines(&dir.read("out/divs.jsonl"));
    assert_eq!(
        divs[0]["html"]["content"][0]["content"][0]["text"],
        json!("deep")
    );
    // Quadratic, these took minutes (debug build); linear, about a second.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}
