//! `export --snapshot`: the dataset's `snapshot/` holds one row per session, its latest
//! version, across incremental runs, kills during its rewrite, and in a bucket.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;

use arrow::array::{Array, StringArray, TimestampMicrosecondArray};
use gleap_etl::emulator::Emulator;
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

use crate::export::{config, export_to, run};
use crate::util::{Dir, Moto};

const ARGS: [&str; 4] = ["--incremental", "--snapshot", "--part-rows", "1000"];

fn export(emulator: &Emulator, dir: &Dir) -> Command {
    export_to(emulator, dir, dir.join("out/sessions").as_os_str(), &ARGS)
}

/// `cmd` with the snapshot rewrite SIGKILLed at `point` (`written` or `committed`).
async fn killed_at(mut cmd: Command, point: &str) {
    cmd.env("GLEAP_ETL_TEST_KILL_IN_SNAPSHOT", point);
    let status = crate::util::run_with_pid(cmd, Arc::new(AtomicU32::new(0))).await;
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "killed when the snapshot was {point}: {status:?}"
    );
}

/// `_id` and `updatedAt` (µs) of every row of a Parquet file.
fn versions(file: impl parquet::file::reader::ChunkReader + 'static) -> Vec<(String, i64)> {
    let mut rows = Vec::new();
    for batch in ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
    {
        let batch = batch.unwrap();
        let ids = batch.column_by_name("_id").unwrap();
        let ids = ids.as_any().downcast_ref::<StringArray>().unwrap();
        let at = batch.column_by_name("updatedAt").unwrap();
        let at = at
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        rows.extend((0..batch.num_rows()).map(|i| (ids.value(i).to_string(), at.value(i))));
    }
    rows
}

fn manifest(out: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(out.join("_manifest.json")).unwrap()).unwrap()
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect()
}

/// The rows of the snapshot the manifest names.
fn snapshot_rows(out: &Path) -> Vec<(String, i64)> {
    names(&manifest(out)["snapshot"]["files"])
        .iter()
        .flat_map(|f| versions(std::fs::File::open(out.join(f)).unwrap()))
        .collect()
}

/// The files in `out/snapshot`, whatever their name.
fn snapshot_folder(out: &Path) -> BTreeSet<String> {
    std::fs::read_dir(out.join("snapshot"))
        .map(|d| {
            d.flatten()
                .map(|e| format!("snapshot/{}", e.file_name().to_string_lossy()))
                .collect()
        })
        .unwrap_or_default()
}

/// Each session of the emulator with its `updatedAt` in µs.
fn latest(emulator: &Emulator) -> HashMap<String, i64> {
    emulator.dump()["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let at = chrono::DateTime::parse_from_rfc3339(s["updatedAt"].as_str().unwrap())
                .unwrap()
                .timestamp_micros();
            (s["_id"].as_str().unwrap().to_string(), at)
        })
        .collect()
}

/// Exactly one row per session of the emulator, with its current `updatedAt`.
fn assert_current(emulator: &Emulator, rows: &[(String, i64)]) {
    let expected = latest(emulator);
    assert_eq!(rows.len(), expected.len(), "one row per session");
    let got: HashMap<String, i64> = rows.iter().cloned().collect();
    assert_eq!(got.len(), rows.len(), "no _id twice");
    let stale: Vec<_> = expected
        .iter()
        .filter(|(id, at)| got.get(*id) != Some(at))
        .take(5)
        .collect();
    assert!(
        stale.is_empty(),
        "sessions not at their latest version: {stale:?}"
    );
}

/// Three incremental runs with sessions changed between them: the parts hold a row per
/// version, the snapshot exactly one row per session at its latest `updatedAt`; the previous
/// snapshot's files are gone; a run with nothing new leaves the snapshot as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_runs_keep_one_row_per_session_at_its_latest_version() {
    let emulator = Emulator::start(config(4_000)).await.unwrap();
    let dir = Dir::new();
    let out = dir.join("out/sessions");
    let first = run(export(&emulator, &dir)).await;
    assert_eq!(first.code, 0, "{first:?}");
    assert_current(&emulator, &snapshot_rows(&out));

    emulator.touch_sessions(300);
    let second = run(export(&emulator, &dir)).await;
    assert_eq!(second.code, 0, "{second:?}");
    emulator.touch_sessions(500);
    let third = run(export(&emulator, &dir)).await;
    assert_eq!(third.code, 0, "{third:?}");

    let m = manifest(&out);
    assert_eq!(m["rows"], 4_800, "the parts keep every version: {m:#}");
    assert_eq!(m["snapshot"]["rows"], 4_000, "{m:#}");
    assert_current(&emulator, &snapshot_rows(&out));
    let named: BTreeSet<String> = names(&m["snapshot"]["files"]).into_iter().collect();
    assert_eq!(
        snapshot_folder(&out),
        named,
        "snapshot/ holds the current snapshot only"
    );
    let report: Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    let snapshot = &report["streams"][0]["sink"]["detail"]["snapshot"];
    assert_eq!(snapshot["from_previous"], 3_500, "{report:#}");

    let fourth = run(export(&emulator, &dir)).await;
    assert_eq!(fourth.code, 0, "{fourth:?}");
    assert_eq!(manifest(&out)["snapshot"], m["snapshot"], "nothing new");

    // A full export: a new generation, and a snapshot rebuilt from its parts alone.
    emulator.touch_sessions(100);
    let full = export_to(
        &emulator,
        &dir,
        out.as_os_str(),
        &["--snapshot", "--part-rows", "1000"],
    );
    let full = run(full).await;
    assert_eq!(full.code, 0, "{full:?}");
    let m = manifest(&out);
    assert_eq!(m["rows"], 4_000, "{m:#}");
    assert_eq!(m["snapshot"]["generation"], m["generation"], "{m:#}");
    assert_current(&emulator, &snapshot_rows(&out));
    let named: BTreeSet<String> = names(&m["snapshot"]["files"]).into_iter().collect();
    assert_eq!(snapshot_folder(&out), named);
}

/// A run killed while it rewrites the snapshot leaves the previous one current and readable
/// (its half-written files are not named); killed after committing the new one but before
/// the manifest names it, the previous one is still what the manifest names and still there.
/// The next run makes the new one current and removes the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_during_the_rewrite_leaves_the_previous_snapshot_current() {
    let emulator = Emulator::start(config(3_000)).await.unwrap();
    let dir = Dir::new();
    let out = dir.join("out/sessions");
    let first = run(export(&emulator, &dir)).await;
    assert_eq!(first.code, 0, "{first:?}");
    let before = snapshot_rows(&out);
    let files_before = manifest(&out)["snapshot"]["files"].clone();

    emulator.touch_sessions(200);
    killed_at(export(&emulator, &dir), "written").await;
    assert_eq!(manifest(&out)["snapshot"]["files"], files_before);
    assert_eq!(
        snapshot_rows(&out),
        before,
        "the previous snapshot is intact"
    );
    assert!(
        snapshot_folder(&out).len() > names(&files_before).len(),
        "the killed rewrite left files: {:?}",
        snapshot_folder(&out)
    );

    killed_at(export(&emulator, &dir), "committed").await;
    assert_eq!(manifest(&out)["snapshot"]["files"], files_before);
    assert_eq!(
        snapshot_rows(&out),
        before,
        "the previous snapshot is intact"
    );

    let again = run(export(&emulator, &dir)).await;
    assert_eq!(again.code, 0, "{again:?}");
    let m = manifest(&out);
    assert_ne!(m["snapshot"]["files"], files_before);
    assert_current(&emulator, &snapshot_rows(&out));
    let named: BTreeSet<String> = names(&m["snapshot"]["files"]).into_iter().collect();
    assert_eq!(snapshot_folder(&out), named, "no orphan left");
    assert_eq!(m["rows"], 3_200);
}

/// The same on moto (`s3://`): the snapshot is written as multipart uploads under
/// `sessions/snapshot/`; a kill during its rewrite leaves the previous one current; the next
/// run swaps in the new one, and the prefix holds nothing the manifest does not name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_in_a_bucket_survives_a_kill_and_is_current_after_the_next_run() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("current");
    let emulator = Emulator::start(config(3_000)).await.unwrap();
    let dir = Dir::new();
    let to_bucket = || {
        let mut cmd = export_to(&emulator, &dir, "s3://current/sessions".as_ref(), &ARGS);
        cmd.envs(moto.env());
        cmd
    };
    let store = moto.store("current");
    let read = |name: String| {
        let store = &store;
        async move {
            store
                .get(&ObjectPath::from(format!("sessions/{name}")))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
        }
    };
    let manifest =
        || async { serde_json::from_slice::<Value>(&read("_manifest.json".into()).await).unwrap() };
    let rows = || async {
        let mut rows = Vec::new();
        for f in names(&manifest().await["snapshot"]["files"]) {
            rows.extend(versions(read(f).await));
        }
        rows
    };

    let first = run(to_bucket()).await;
    assert_eq!(first.code, 0, "{first:?}");
    assert_current(&emulator, &rows().await);
    let before = manifest().await["snapshot"]["files"].clone();

    emulator.touch_sessions(250);
    killed_at(to_bucket(), "written").await;
    assert_eq!(manifest().await["snapshot"]["files"], before);
    assert_eq!(
        rows().await.len(),
        3_000,
        "the previous snapshot is readable"
    );

    let again = run(to_bucket()).await;
    assert_eq!(again.code, 0, "{again:?}");
    let m = manifest().await;
    assert_ne!(m["snapshot"]["files"], before);
    assert_current(&emulator, &rows().await);
    let mut named: Vec<String> = names(&m["files"]);
    named.extend(names(&m["snapshot"]["files"]));
    named.push("_manifest.json".into());
    named.sort();
    let listed = crate::buckets::objects(&store, "sessions").await;
    assert_eq!(listed, named, "the prefix holds what the manifest names");
    assert!(moto.pending_uploads("current").is_empty());
}
