//! Schema evolution of Parquet datasets (`export --schema evolve|freeze`): a field sessions
//! gain after the first export gets a typed column in the parts written from then on, a
//! value that no longer fits its column goes to `otherFields` with a warning, and `freeze`
//! keeps every part on the first part's columns.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use arrow::datatypes::DataType;
use gleap_etl::emulator::Emulator;
use serde_json::{Value, json};

use crate::export::{config, export_to, run};
use crate::util::{Api, Dir, read_parquet};

fn manifest(out: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(out.join("_manifest.json")).unwrap()).unwrap()
}

/// The files of the manifest's part `i`.
fn part_file(manifest: &Value, i: usize) -> String {
    let files = manifest["parts"][i]["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{manifest:#}");
    files[0]["file"].as_str().unwrap().to_string()
}

/// The column names of a Parquet file, with their Arrow types.
fn columns(path: &Path) -> HashMap<String, DataType> {
    let (schema, _) = read_parquet(path);
    schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect()
}

/// The first `n` sessions' ids, in the emulator's order.
fn session_ids(emulator: &Emulator, n: usize) -> Vec<String> {
    emulator.dump()["sessions"].as_array().unwrap()[..n]
        .iter()
        .map(|s| s["_id"].as_str().unwrap().to_string())
        .collect()
}

async fn put(api: &Api, id: &str, body: Value) {
    let (status, answer) = api.put(&format!("/sessions/{id}"), body).await;
    assert_eq!(status, 200, "{answer}");
}

/// Gleap answering a top-level field it did not before (a PUT drops fields Gleap's table
/// does not name, so the emulator sets it directly).
fn gleap_adds(emulator: &Emulator, id: &str, field: &str, value: Value) {
    let fields = json!({ field: value }).as_object().unwrap().clone();
    assert!(emulator.set_session_fields(id, fields), "{id}");
}

/// `export sessions` into `dir`'s `out/sessions` with `flags`, which must succeed.
async fn exported(emulator: &Emulator, dir: &Dir, flags: &[&str]) -> crate::util::Run {
    let out = dir.join("out/sessions");
    let r = run(export_to(emulator, dir, out.as_os_str(), flags)).await;
    assert_eq!(r.code, 0, "{flags:?}: {r:?}");
    r
}

fn report(dir: &Dir) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap()
}

/// Reads every file the manifest names with DuckDB's `union_by_name` (when python3 can
/// import duckdb): the row count, the rows with `churnRisk`, its type and the sum.
fn duckdb_union(out: &Path) -> Option<Value> {
    let files: Vec<String> = manifest(out)["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| out.join(f.as_str().unwrap()).display().to_string())
        .collect();
    let script = r#"
import json, sys
try:
    import duckdb
except ImportError as e:
    print(json.dumps({"skipped": str(e)}))
    sys.exit(0)
files = ", ".join("'" + f.replace("'", "''") + "'" for f in json.loads(sys.argv[1]))
row = duckdb.sql(
    "select count(*), count(churnRisk), any_value(typeof(churnRisk)), sum(churnRisk), "
    f"count(customData_region) from read_parquet([{files}], union_by_name = true)"
).fetchall()[0]
print(json.dumps({"rows": row[0], "with_churn": row[1], "type": row[2], "sum": row[3],
                  "with_region": row[4]}))
"#;
    let output = std::process::Command::new(crate::util::duckdb_python())
        .args(["-c", script, &serde_json::to_string(&files).unwrap()])
        .output();
    let output = match output {
        Ok(o) if o.status.success() => o,
        Ok(o) => panic!("duckdb: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => {
            eprintln!("skipped: the DuckDB check needs python3 with duckdb: {e}");
            return None;
        }
    };
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    if let Some(why) = answer.get("skipped") {
        eprintln!(
            "skipped: the DuckDB check needs python3 with duckdb (pip install duckdb): {why}"
        );
        return None;
    }
    Some(answer)
}

/// Sessions gain a top-level `churnRisk` and a custom field `customData.region` after the
/// first export; the next incremental run (with no flag naming either) writes a part with
/// typed columns for both, the old part stays without them, and the manifest records
/// each part's columns. A later `churnRisk` that is text goes to otherFields, with a
/// warning naming the field and both types, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_sessions_gain_gets_a_typed_column_in_later_parts() {
    let emulator = Emulator::start(config(300)).await.unwrap();
    let api = Api::new(&emulator);
    let dir = Dir::new();
    let out = dir.join("out/sessions");
    exported(&emulator, &dir, &["--incremental", "--snapshot"]).await;
    let old_part = out.join(part_file(&manifest(&out), 0));
    assert!(!columns(&old_part).contains_key("churnRisk"));

    let ids = session_ids(&emulator, 300);
    let mut risk = HashMap::new();
    for (i, id) in ids[..20].iter().enumerate() {
        let r = 0.25 + i as f64;
        risk.insert(id.clone(), r);
        let custom = json!({"plan": "pro", "seats": 7, "trial": false, "region": "eu"});
        put(&api, id, json!({"customData": custom})).await;
        gleap_adds(&emulator, id, "churnRisk", json!(r));
    }
    // No --flatten customData.region: every custom field gets a column by itself.
    let evolving = ["--incremental", "--snapshot"];
    exported(&emulator, &dir, &evolving).await;
    let m = manifest(&out);
    assert_eq!(m["parts"].as_array().unwrap().len(), 2, "{m:#}");
    assert_eq!(m["schema_policy"], "evolve");
    let new_part = out.join(part_file(&m, 1));
    let new_columns = columns(&new_part);
    assert_eq!(new_columns["churnRisk"], DataType::Float64);
    assert_eq!(new_columns["customData_region"], DataType::Utf8);
    // The old part is as it was; old columns keep their types.
    let old_columns = columns(&old_part);
    assert!(!old_columns.contains_key("churnRisk"));
    assert!(!old_columns.contains_key("customData_region"));
    for (name, ty) in &old_columns {
        assert_eq!(&new_columns[name], ty, "{name}");
    }
    // The manifest records both parts' schemas, and their union.
    assert_eq!(m["parts"][0]["schema"].get("churnRisk"), None, "{m:#}");
    assert_eq!(m["parts"][1]["schema"]["churnRisk"], "float64");
    assert_eq!(m["parts"][1]["schema"]["customData_region"], "string");
    assert_eq!(m["parts"][0]["schema"]["customData_seats"], "int64");
    assert_eq!(m["parts"][0]["schema"]["customData_plan"], "string");
    assert_eq!(m["parts"][0]["schema"]["customData_trial"], "bool");
    assert_eq!(m["schema"]["churnRisk"], "float64");
    assert_eq!(
        m["schema"].as_object().unwrap().len(),
        new_columns.len(),
        "{m:#}"
    );
    let detail = &report(&dir)["streams"][0]["sink"]["detail"];
    let added: BTreeSet<&str> = detail["new_columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(added, BTreeSet::from(["churnRisk", "customData_region"]));
    assert_eq!(detail["type_changes"], json!([]));
    // The new part holds the values, typed, and nothing of them in otherFields.
    let (_, rows) = read_parquet(&new_part);
    assert_eq!(rows.len(), 20);
    for row in &rows {
        let id = row["_id"].as_str().unwrap();
        assert_eq!(row["churnRisk"], json!(risk[id]), "{row:?}");
        assert_eq!(row["customData_region"], "eu");
        assert_eq!(row["customData_plan"], "pro");
        assert_eq!(row["customData_trial"], false);
        assert_eq!(row["customData"]["region"], "eu");
        assert!(row["otherFields"].is_null(), "{row:?}");
    }

    // Five sessions' churnRisk becomes text: it goes to otherFields, with one warning.
    for id in &ids[20..25] {
        gleap_adds(&emulator, id, "churnRisk", json!("high"));
    }
    let third = exported(&emulator, &dir, &evolving).await;
    let m = manifest(&out);
    let third_part = out.join(part_file(&m, 2));
    assert_eq!(columns(&third_part)["churnRisk"], DataType::Float64);
    let (_, rows) = read_parquet(&third_part);
    assert_eq!(rows.len(), 5);
    for row in &rows {
        assert!(row["churnRisk"].is_null(), "{row:?}");
        assert_eq!(row["otherFields"], json!({"churnRisk": "high"}), "{row:?}");
    }
    let detail = &report(&dir)["streams"][0]["sink"]["detail"];
    let changes = detail["type_changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{detail:#}");
    assert_eq!(changes[0]["field"], "churnRisk");
    assert_eq!(changes[0]["column"], "float64");
    assert_eq!(changes[0]["found"], "string");
    assert!(
        changes[0]["warning"]
            .as_str()
            .unwrap()
            .contains("went to `otherFields`"),
        "{detail:#}"
    );
    // Warned once while running, and in the run's summary line.
    assert_eq!(
        third
            .stderr
            .matches("field `churnRisk` no longer fits")
            .count(),
        2,
        "{third:?}"
    );
    let warning =
        "; warning: field `churnRisk` no longer fits its float64 column (a string value came)";
    assert!(third.stderr.contains(warning), "{third:?}");
    assert_eq!(detail["new_columns"], json!([]));

    // The snapshot (one row per session) has the new columns, typed, with their values.
    let snapshot = &manifest(&out)["snapshot"]["files"];
    let mut latest = HashMap::new();
    for file in snapshot.as_array().unwrap() {
        let path = out.join(file.as_str().unwrap());
        assert_eq!(columns(&path)["churnRisk"], DataType::Float64);
        for row in read_parquet(&path).1 {
            latest.insert(row["_id"].as_str().unwrap().to_string(), row);
        }
    }
    assert_eq!(latest.len(), 300);
    for (id, r) in &risk {
        assert_eq!(latest[id]["churnRisk"], json!(r), "{id}");
    }

    // Readers see the union: DuckDB over every part.
    if let Some(answer) = duckdb_union(&out) {
        assert_eq!(answer["rows"], 325, "{answer}");
        assert_eq!(answer["with_churn"], 20, "{answer}");
        assert_eq!(answer["type"], "DOUBLE", "{answer}");
        assert_eq!(answer["sum"], json!(risk.values().sum::<f64>()), "{answer}");
        assert_eq!(answer["with_region"], 20, "{answer}");
    }
}

/// `--schema freeze` keeps the first part's columns: the field sessions gained goes to
/// otherFields, and every part records the same schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freeze_keeps_the_first_parts_columns() {
    let emulator = Emulator::start(config(100)).await.unwrap();
    let dir = Dir::new();
    let out = dir.join("out/sessions");
    let api = Api::new(&emulator);
    let flags = ["--incremental", "--schema", "freeze"];
    exported(&emulator, &dir, &flags).await;
    for id in &session_ids(&emulator, 100)[..10] {
        gleap_adds(&emulator, id, "churnRisk", json!(0.5));
        put(
            &api,
            id,
            json!({"customData": {"plan": "team", "region": "us"}}),
        )
        .await;
    }
    exported(&emulator, &dir, &flags).await;
    let m = manifest(&out);
    assert_eq!(m["schema_policy"], "freeze");
    assert_eq!(m["parts"].as_array().unwrap().len(), 2, "{m:#}");
    assert_eq!(m["parts"][0]["schema"], m["parts"][1]["schema"], "{m:#}");
    let (old, new) = (out.join(part_file(&m, 0)), out.join(part_file(&m, 1)));
    assert_eq!(columns(&old), columns(&new));
    assert!(!columns(&new).contains_key("churnRisk"));
    let (_, rows) = read_parquet(&new);
    assert_eq!(rows.len(), 10);
    assert!(!columns(&new).contains_key("customData_region"));
    for row in &rows {
        // The new custom field stays in customData alone, not copied to otherFields.
        assert_eq!(row["otherFields"], json!({"churnRisk": 0.5}), "{row:?}");
        assert_eq!(row["customData"]["region"], "us", "{row:?}");
        assert_eq!(row["customData_plan"], "team", "{row:?}");
    }
    let detail = &report(&dir)["streams"][0]["sink"]["detail"];
    assert_eq!(detail["new_columns"], json!([]));
    // A field without a column is not a type change.
    assert_eq!(detail["type_changes"], json!([]));
}

/// `--no-custom-columns` keeps custom fields in the customData JSON column only: no
/// customData_<key> columns, in the first part or for a field sessions gain later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_custom_columns_keeps_custom_fields_in_their_json_column() {
    let emulator = Emulator::start(config(50)).await.unwrap();
    let api = Api::new(&emulator);
    let dir = Dir::new();
    let out = dir.join("out/sessions");
    let out_arg = out.as_os_str();
    let flags = ["--incremental", "--no-custom-columns"];
    assert_eq!(
        run(export_to(&emulator, &dir, out_arg, &flags)).await.code,
        0
    );
    for id in &session_ids(&emulator, 50)[..5] {
        put(&api, id, json!({"customData": {"region": "eu"}})).await;
    }
    let r = run(export_to(&emulator, &dir, out_arg, &flags)).await;
    assert_eq!(r.code, 0, "{r:?}");
    let m = manifest(&out);
    assert_eq!(m["parts"].as_array().unwrap().len(), 2, "{m:#}");
    for i in 0..2 {
        let path = out.join(part_file(&m, i));
        let names = columns(&path);
        assert!(
            !names.keys().any(|n| n.starts_with("customData_")),
            "{names:?}"
        );
        for row in read_parquet(&path).1 {
            assert!(row["customData"].is_object(), "{row:?}");
            assert!(row["otherFields"].is_null(), "{row:?}");
        }
    }
    let (_, rows) = read_parquet(&out.join(part_file(&m, 1)));
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().all(|r| r["customData"]["region"] == "eu"));
}

/// A bad policy is refused by the flag parser, before anything runs.
#[test]
fn a_bad_schema_policy_is_refused() {
    let dir = Dir::new();
    let out = dir.join("out/sessions");
    let r = dir.run(&[
        "export",
        "sessions",
        "--out",
        out.to_str().unwrap(),
        "--schema",
        "loose",
    ]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("expected evolve or freeze"), "{r:?}");
    assert!(!out.exists());
}
