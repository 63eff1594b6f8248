//! Exports to a bucket: `s3://` datasets on moto (a real S3 API on the loopback), killed and
//! resumed, incremental, and with the credentials kept out of what the user sees. Each test
//! is skipped with a message where moto cannot be started.

use std::collections::{BTreeSet, HashSet};
use std::process::Command;

use gleap_etl::emulator::Emulator;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::Value;

use crate::export::{assert_every_session_once, config, export_to, parquet_ids, run};
use crate::util::{Dir, Killer, Moto};

/// `gleap-etl export sessions --out s3://BUCKET/sessions` with moto's endpoint and keys.
fn export(emulator: &Emulator, dir: &Dir, moto: &Moto, bucket: &str, extra: &[&str]) -> Command {
    let out = format!("s3://{bucket}/sessions");
    let mut cmd = export_to(emulator, dir, out.as_ref(), extra);
    cmd.envs(moto.env());
    cmd
}

/// Every object under `prefix/`, by name relative to it.
pub(crate) async fn objects(store: &dyn ObjectStore, prefix: &str) -> Vec<String> {
    use futures_util::TryStreamExt;
    let prefix = ObjectPath::from(prefix);
    let listed: Vec<_> = store.list(Some(&prefix)).try_collect().await.unwrap();
    let mut names: Vec<String> = listed
        .iter()
        .map(|m| {
            m.location
                .prefix_match(&prefix)
                .unwrap()
                .map(|p| p.as_ref().to_string())
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect();
    names.sort();
    names
}

async fn read_manifest(store: &dyn ObjectStore) -> Value {
    let bytes = store
        .get(&ObjectPath::from("sessions/_manifest.json"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// The `_id` of every row of a part file, read through object_store with the parquet crate.
async fn part_ids(store: &dyn ObjectStore, file: &str) -> Vec<String> {
    let bytes = store
        .get(&ObjectPath::from(format!("sessions/{file}")))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    parquet_ids(bytes)
}

/// The `_id` of every row of the parts the manifest names.
async fn dataset_ids(store: &dyn ObjectStore) -> Vec<String> {
    let manifest = read_manifest(store).await;
    let mut ids = Vec::new();
    for file in manifest["files"].as_array().unwrap() {
        ids.extend(part_ids(store, file.as_str().unwrap()).await);
    }
    ids
}

/// 30,000 sessions exported to `s3://…/sessions` on moto, SIGKILLed three times at random
/// moments (right after the emulator answered a page) and run again each time: the manifest
/// names parts holding every session exactly once, the bucket holds nothing else under the
/// prefix (no orphan part of a killed run), and the uploads the kills cut short are aborted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_to_a_bucket_killed_three_times_ends_with_every_session_once() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("exports");
    let killer = Killer::new();
    let mut config = config(30_000);
    config.on_request = Some(killer.hook());
    let emulator = Emulator::start(config).await.unwrap();
    let dir = Dir::new();
    let args = ["--part-rows", "1500", "--page-size", "500", "--incremental"];
    let mut rng = fastrand::Rng::with_seed(16);
    let handled = || emulator.stats()["total_requests"].as_u64().unwrap();
    for _ in 0..3 {
        let at = handled() + rng.u64(10..30);
        killer
            .run_until_killed(export(&emulator, &dir, &moto, "exports", &args), at)
            .await;
    }
    // Uploads the kills cut short: those whose id the state store noted are aborted by the
    // next run; only an upload whose creation a kill interrupted (its id never received, at
    // most one per kill) can stay, for the bucket's lifecycle rule.
    let left_open = moto.pending_uploads("exports");
    let noted: BTreeSet<String> = gleap_etl::state::StateStore::open(&dir.join("state"))
        .unwrap()
        .open_uploads("s3://exports/sessions")
        .unwrap()
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    assert!(noted.is_subset(&left_open), "{noted:?} {left_open:?}");
    let last = run(export(&emulator, &dir, &moto, "exports", &args)).await;
    assert_eq!(last.code, 0, "{last:?}");
    let still_open = moto.pending_uploads("exports");
    assert!(
        still_open.is_disjoint(&noted) && still_open.is_subset(&left_open) && still_open.len() <= 3,
        "open before the last run {left_open:?}, noted {noted:?}, open after {still_open:?}"
    );
    assert!(
        gleap_etl::state::StateStore::open(&dir.join("state"))
            .unwrap()
            .open_uploads("s3://exports/sessions")
            .unwrap()
            .is_empty()
    );

    let store = moto.store("exports");
    assert_every_session_once(&emulator, &dataset_ids(&store).await, 30_000);

    let manifest = read_manifest(&store).await;
    assert_eq!(manifest["rows"], 30_000);
    assert_eq!(manifest["cursor"]["complete"], true);
    let mut named: Vec<String> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    named.push("_manifest.json".into());
    named.sort();
    assert_eq!(
        objects(&store, "sessions").await,
        named,
        "the prefix holds the manifest and the parts it names, nothing else"
    );
    let report = std::fs::read_to_string(dir.join("report.json")).unwrap();
    assert!(report.contains("s3://exports/sessions"), "{report}");
}

/// After 300 sessions changed, an incremental run to the bucket adds one part holding
/// exactly those 300 (and removes part objects no committed part names); a run with nothing
/// changed adds none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_export_to_a_bucket_adds_only_the_changed_rows() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("nightly");
    let emulator = Emulator::start(config(6_000)).await.unwrap();
    let dir = Dir::new();
    let nightly = || {
        run(export(
            &emulator,
            &dir,
            &moto,
            "nightly",
            &["--incremental"],
        ))
    };
    let first = nightly().await;
    assert_eq!(first.code, 0, "{first:?}");
    let store = moto.store("nightly");
    assert_eq!(dataset_ids(&store).await.len(), 6_000);

    // What a run killed between completing a part's upload and committing it leaves: an
    // object no committed part names. The next run removes it.
    for orphan in [
        "part-00077.parquet",
        "createdAt_month=2024-01/part-00003-1.parquet",
    ] {
        store
            .put(
                &ObjectPath::from(format!("sessions/{orphan}")),
                b"PAR1".to_vec().into(),
            )
            .await
            .unwrap();
    }
    let changed: HashSet<String> = emulator.touch_sessions(300).into_iter().collect();
    let second = nightly().await;
    assert_eq!(second.code, 0, "{second:?}");
    let manifest = read_manifest(&store).await;
    assert_eq!(
        manifest["parts"].as_array().unwrap().len(),
        2,
        "{manifest:#}"
    );
    assert_eq!(manifest["rows"], 6_300);
    let new_part = manifest["parts"][1]["files"][0]["file"].as_str().unwrap();
    let ids: HashSet<String> = part_ids(&store, new_part).await.into_iter().collect();
    assert_eq!(
        ids, changed,
        "the new part holds exactly the changed sessions"
    );

    let third = nightly().await;
    assert_eq!(third.code, 0, "{third:?}");
    assert_eq!(
        read_manifest(&store).await["parts"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        objects(&store, "sessions").await.len(),
        3,
        "manifest and two parts"
    );
}

/// A prefix holding other objects and no manifest is refused, as a folder is, and left as it
/// is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_holding_other_objects_is_refused() {
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("shared");
    let store = moto.store("shared");
    store
        .put(
            &ObjectPath::from("sessions/part-00000.parquet"),
            b"spark's".to_vec().into(),
        )
        .await
        .unwrap();
    let emulator = Emulator::start(config(10)).await.unwrap();
    let dir = Dir::new();
    let refused = run(export(&emulator, &dir, &moto, "shared", &[])).await;
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused.stderr.contains("s3://shared/sessions")
            && refused.stderr.contains("not a gleap-etl dataset"),
        "{refused:?}"
    );
    assert_eq!(
        objects(&store, "sessions").await,
        vec!["part-00000.parquet".to_string()]
    );
}

/// The bucket's credentials never reach what the user sees: a run that fails on the bucket
/// (it does not exist) says which bucket and why, and neither its messages nor its report
/// hold the secret key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_error_names_the_bucket_and_not_the_secret() {
    let Some(moto) = Moto::start() else { return };
    let emulator = Emulator::start(config(10)).await.unwrap();
    let dir = Dir::new();
    let secret = "s3cr3t-Key/that+must+never+show";
    let mut cmd = export(&emulator, &dir, &moto, "missing-bucket", &[]);
    cmd.env("AWS_SECRET_ACCESS_KEY", secret);
    let failed = run(cmd).await;
    assert_eq!(failed.code, 2, "{failed:?}");
    assert!(
        failed.stderr.contains("s3://missing-bucket/sessions"),
        "{failed:?}"
    );
    assert!(failed.stderr.contains("NoSuchBucket"), "{failed:?}");
    let report = std::fs::read_to_string(dir.join("report.json")).unwrap_or_default();
    for text in [&failed.stdout, &failed.stderr, &report] {
        assert!(!text.contains(secret), "the secret shows: {text}");
    }
}

/// SIGTERM in the middle of an export to a bucket: the run stops (exit 2) and leaves its
/// committed parts (pending in the manifest) and nothing more: no open multipart upload, no
/// part object the manifest does not name, no upload id noted in the state store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_an_export_to_a_bucket_aborts_its_upload() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    let Some(moto) = Moto::start() else { return };
    moto.create_bucket("stopped");
    let pid = Arc::new(AtomicU32::new(0));
    let mut config = config(30_000);
    let target = pid.clone();
    // The 9th request: the first parts are committed, the next one's upload is open.
    config.on_request = Some(Arc::new(move |n| {
        if n == 9 {
            let pid = target.load(Ordering::SeqCst);
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
    }));
    let emulator = Emulator::start(config).await.unwrap();
    let dir = Dir::new();
    let args = ["--part-rows", "1500", "--page-size", "500", "--incremental"];
    let status =
        crate::util::run_with_pid(export(&emulator, &dir, &moto, "stopped", &args), pid).await;
    assert_eq!(status.code(), Some(2), "{status:?}");
    assert_eq!(moto.pending_uploads("stopped"), BTreeSet::new());
    let store = moto.store("stopped");
    // The first generation is not complete: the manifest names no current file yet, and
    // lists the committed parts as pending.
    let manifest = read_manifest(&store).await;
    assert_eq!(manifest["files"], serde_json::json!([]), "{manifest:#}");
    let pending = manifest["pending"]["parts"].as_array().unwrap();
    let mut named = vec!["_manifest.json".to_string()];
    let (mut rows, mut read) = (0, 0);
    for part in pending {
        rows += part["rows"].as_u64().unwrap();
        for file in part["files"].as_array().unwrap() {
            let file = file["file"].as_str().unwrap();
            read += part_ids(&store, file).await.len() as u64;
            named.push(file.to_string());
        }
    }
    assert!(rows > 0 && rows < 30_000, "{manifest:#}");
    assert_eq!(read, rows);
    named.sort();
    assert_eq!(objects(&store, "sessions").await, named);
    assert!(
        gleap_etl::state::StateStore::open(&dir.join("state"))
            .unwrap()
            .open_uploads("s3://stopped/sessions")
            .unwrap()
            .is_empty()
    );
}
