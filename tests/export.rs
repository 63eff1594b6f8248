//! Exports from the emulator to Parquet datasets: killed and resumed, incremental.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};

use arrow::array::{Array, StringArray};
use arrow::datatypes::{DataType, TimeUnit};
use gleap_etl::emulator::{Emulator, EmulatorConfig};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

use crate::util::{Dir, Killer, Run};

const KEY: &str = "export-key";
const PROJECT: &str = "65a0000000000000000000ff";

pub(crate) fn config(sessions: usize) -> EmulatorConfig {
    EmulatorConfig {
        api_key: Some(KEY.into()),
        project: Some(PROJECT.into()),
        quota: None,
        generate_sessions: sessions,
        faults: gleap_etl::emulator::FaultConfig {
            seed: 11,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn export(emulator: &Emulator, dir: &Dir, extra: &[&str]) -> Command {
    export_to(emulator, dir, dir.join("out/sessions").as_os_str(), extra)
}

/// `gleap-etl export sessions --out OUT` from `emulator`, its state and report in `dir`.
pub(crate) fn export_to(
    emulator: &Emulator,
    dir: &Dir,
    out: &std::ffi::OsStr,
    extra: &[&str],
) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gleap-etl"));
    // customData.seats gets its typed column from the default `customData.*`.
    cmd.args(["export", "sessions", "--no-progress"])
        .arg("--out")
        .arg(out)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--report")
        .arg(dir.join("report.json"))
        .args(extra)
        .env("GLEAP_BASE_URL", emulator.base_url())
        .env("GLEAP_API_KEY", KEY)
        .env("GLEAP_PROJECT_ID", PROJECT)
        .env("GLEAP_REQUESTS_PER_MINUTE", "6000000");
    cmd
}

pub(crate) async fn run(cmd: Command) -> Run {
    let mut cmd = cmd;
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    tokio::task::spawn_blocking(move || Run::from(cmd.output().unwrap()))
        .await
        .unwrap()
}

/// The `_id` of every row of the files the manifest names as current.
pub(crate) fn dataset_ids(dir: &Path) -> Vec<String> {
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("_manifest.json")).unwrap()).unwrap();
    let mut ids = Vec::new();
    for file in manifest["files"].as_array().unwrap() {
        let path = dir.join(file.as_str().unwrap());
        ids.extend(parquet_ids(std::fs::File::open(&path).unwrap()));
    }
    ids
}

/// The `_id` of every row of a Parquet file.
pub(crate) fn parquet_ids(file: impl parquet::file::reader::ChunkReader + 'static) -> Vec<String> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let column = builder
        .schema()
        .fields()
        .iter()
        .position(|f| f.name() == "_id")
        .unwrap();
    let mask = ProjectionMask::roots(builder.parquet_schema(), [column]);
    let mut ids = Vec::new();
    for batch in builder.with_projection(mask).build().unwrap() {
        let batch = batch.unwrap();
        let array = batch
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        ids.extend((0..array.len()).map(|i| array.value(i).to_string()));
    }
    ids
}

/// `ids` are `count` sessions of the emulator, each once.
pub(crate) fn assert_every_session_once(emulator: &Emulator, ids: &[String], count: usize) {
    assert_eq!(ids.len(), count, "rows in the dataset");
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), count, "one row per _id");
    let expected: HashSet<String> = emulator.dump()["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["_id"].as_str().unwrap().to_string())
        .collect();
    assert!(unique.iter().all(|id| expected.contains(*id)));
}

fn leftovers(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".inprogress") {
            out.push(name);
        }
    }
    out
}

/// 100,000 sessions; the export is killed with SIGKILL at five random moments (right after
/// the emulator answered a page request) and run again each time: the dataset ends with
/// every session exactly once, with typed columns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_killed_five_times_ends_with_every_session_once() {
    let killer = Killer::new();
    let mut config = config(100_000);
    config.on_request = Some(killer.hook());
    let emulator = Emulator::start(config).await.unwrap();
    let dir = Dir::new();
    let mut rng = fastrand::Rng::with_seed(2026);
    let handled = || emulator.stats()["total_requests"].as_u64().unwrap();
    for _ in 0..5 {
        let at = handled() + rng.u64(3..18);
        let cmd = export(&emulator, &dir, &["--part-rows", "7000", "--incremental"]);
        killer.run_until_killed(cmd, at).await;
    }
    let last = run(export(
        &emulator,
        &dir,
        &["--part-rows", "7000", "--incremental"],
    ))
    .await;
    assert_eq!(last.code, 0, "{last:?}");

    let out = dir.join("out/sessions");
    assert_every_session_once(&emulator, &dataset_ids(&out), 100_000);
    assert!(leftovers(&out).is_empty(), "{:?}", leftovers(&out));
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(out.join("_manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["rows"], 100_000);
    assert_eq!(manifest["cursor"]["complete"], true);

    // Declared types, read back as Parquet says them.
    let first = out.join(manifest["files"][0].as_str().unwrap());
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(first).unwrap()).unwrap();
    let schema = builder.schema();
    let ty = |name: &str| schema.field_with_name(name).unwrap().data_type().clone();
    assert_eq!(
        ty("createdAt"),
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    );
    assert!(matches!(ty("tags"), DataType::List(item) if *item.data_type() == DataType::Utf8));
    assert_eq!(ty("customData"), DataType::Utf8);
    assert_eq!(
        schema
            .field_with_name("customData")
            .unwrap()
            .metadata()
            .get("ARROW:extension:name")
            .map(String::as_str),
        Some("arrow.json")
    );
    assert_eq!(ty("customData_seats"), DataType::Int64);
}

/// After 500 sessions changed, an incremental run reads those 500 (in at most a page more
/// than they need) and adds them as a new part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_run_reads_what_changed_into_a_new_part() {
    let emulator = Emulator::start(config(20_000)).await.unwrap();
    let dir = Dir::new();
    let first = run(export(&emulator, &dir, &["--incremental"])).await;
    assert_eq!(first.code, 0, "{first:?}");
    let out = dir.join("out/sessions");
    assert_eq!(dataset_ids(&out).len(), 20_000);

    let changed: HashSet<String> = emulator.touch_sessions(500).into_iter().collect();
    let before = emulator.stats()["total_requests"].as_u64().unwrap();
    let second = run(export(&emulator, &dir, &["--incremental"])).await;
    assert_eq!(second.code, 0, "{second:?}");
    let requests = emulator.stats()["total_requests"].as_u64().unwrap() - before;
    // The newest value, one page of 1000 holding the 500, and nothing more.
    assert!(requests <= 2, "{requests} requests");
    let report: Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["streams"][0]["read"], 500);

    let manifest: Value =
        serde_json::from_slice(&std::fs::read(out.join("_manifest.json")).unwrap()).unwrap();
    assert_eq!(
        manifest["parts"].as_array().unwrap().len(),
        2,
        "{manifest:#}"
    );
    assert_eq!(manifest["rows"], 20_500);
    let new_part = &manifest["parts"][1]["files"][0]["file"];
    let (_, rows) = crate::util::read_parquet(&out.join(new_part.as_str().unwrap()));
    let ids: HashSet<String> = rows
        .iter()
        .map(|r| r["_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        ids, changed,
        "the new part holds exactly the changed sessions"
    );

    // Nothing changed: no part, one request.
    let third = run(export(&emulator, &dir, &["--incremental"])).await;
    assert_eq!(third.code, 0, "{third:?}");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(out.join("_manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["parts"].as_array().unwrap().len(), 2);
}

/// A full (not incremental) export over an existing dataset writes a new generation; the
/// old parts stay current until it is complete, then they are removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_export_replaces_the_dataset_once_complete() {
    let emulator = Emulator::start(config(3_000)).await.unwrap();
    let dir = Dir::new();
    let first = run(export(&emulator, &dir, &["--part-rows", "1000"])).await;
    assert_eq!(first.code, 0, "{first:?}");
    let out = dir.join("out/sessions");
    let files_before: Vec<Value> =
        serde_json::from_slice::<Value>(&std::fs::read(out.join("_manifest.json")).unwrap())
            .unwrap()["files"]
            .as_array()
            .unwrap()
            .clone();
    assert_eq!(files_before.len(), 3);
    let second = run(export(&emulator, &dir, &["--part-rows", "1000"])).await;
    assert_eq!(second.code, 0, "{second:?}");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(out.join("_manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["generation"], 2);
    assert_eq!(dataset_ids(&out).len(), 3_000);
    for f in &files_before {
        assert!(!out.join(f.as_str().unwrap()).exists(), "{f} removed");
    }
}

/// The export's pipeline is built from its flags: a bad value is refused before anything
/// runs, named by its flag.
#[test]
fn bad_export_flags_are_named_by_flag_before_anything_runs() {
    let dir = Dir::new();
    let out = dir.join("out/sessions");
    let state = dir.join("state");
    let cases: [(&[&str], &[&str]); 5] = [
        (
            &["--part-rows", "0", "--page-size", "5000"],
            &[
                "error: --part-rows: must be at least 1",
                "error: --page-size: 5000 is not between 1 and 1000",
            ],
        ),
        (
            &["--since", "yesterday"],
            &["error: --since: \"yesterday\" is not a date or an RFC 3339 instant"],
        ),
        (
            &["--partition-by", "createdAt:week"],
            &[
                "error: --partition-by createdAt:week: `week` is not a granularity: day, month or year",
            ],
        ),
        (&["--flatten", "a..b"], &["error: --flatten a..b: "]),
        (
            &["--flatten", "x.*.y"],
            &["error: --flatten[0]: `x.*.y`: `*` stands for every key of an object"],
        ),
    ];
    for (flags, expected) in cases {
        let mut args = vec![
            "export",
            "sessions",
            "--out",
            out.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ];
        args.extend(flags);
        let r = dir.run(&args);
        assert_eq!(r.code, 2, "{flags:?}: {r:?}");
        for e in expected {
            assert!(r.stderr.contains(e), "{flags:?}: wants {e:?}: {r:?}");
        }
        assert!(!state.exists() && !out.exists(), "nothing ran: {r:?}");
    }
}
