//! Hostile conditions for the Gleap sink and source (issue 12): a refused key, an unreachable
//! Gleap, `--max-errors`, records deleted in Gleap, a lost state store, prefetch against a
//! large project, and incremental exports into a new folder.

use std::path::Path;
use std::process::{Command, Stdio};

use gleap_etl::emulator::{Emulator, EmulatorConfig};
use serde_json::Value;

use crate::export::run;
use crate::util::Dir;

const KEY: &str = "sk-live-HOSTILE-9d1e3b7c";
const PROJECT: &str = "65a0000000000000000000dd";

async fn emulator(generate_sessions: usize) -> Emulator {
    Emulator::start(EmulatorConfig {
        api_key: Some(KEY.into()),
        project: Some(PROJECT.into()),
        quota: None,
        generate_sessions,
        ..Default::default()
    })
    .await
    .unwrap()
}

/// `gleap-etl run pipeline.yaml` in `dir` against `base_url` with `key`.
fn command(dir: &Path, base_url: &str, key: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gleap-etl"));
    cmd.args(["run", "pipeline.yaml", "--no-progress"])
        .args(extra)
        .current_dir(dir)
        .env("GLEAP_BASE_URL", base_url)
        .env("GLEAP_API_KEY", key)
        .env("GLEAP_PROJECT_ID", PROJECT)
        .env("STATE_DIR", dir.join("state"))
        .env("GLEAP_REQUESTS_PER_MINUTE", "600000")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// `users.csv` with `n` contacts `u0`..
fn write_users(dir: &Dir, n: usize) {
    let mut csv = String::from("userId,name\n");
    for i in 0..n {
        csv.push_str(&format!("u{i},User {i}\n"));
    }
    dir.write("users.csv", csv);
}

/// A pipeline of one sessions stream from `users.csv`; `sink` is the gleap sink's block.
fn users_pipeline(dir: &Dir, gleap: &str, sink: &str) {
    dir.write(
        "pipeline.yaml",
        format!(
            "version: 1\nname: hostile\nstate_dir: ${{STATE_DIR}}\ngleap: {gleap}\nstreams:\n  - name: users\n    source: {{ csv: {{ path: users.csv }} }}\n    sink: {{ gleap: {sink} }}\n"
        ),
    );
}

fn requests(stats: &Value, route: &str) -> u64 {
    stats["requests"][route]
        .as_object()
        .map_or(0, |codes| codes.values().filter_map(Value::as_u64).sum())
}

// Defect 13: a 401 dead-lettered every record (without prefetch, one request each).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_stops_the_run_at_the_first_answer() {
    let emulator = emulator(0).await;
    let dir = Dir::new();
    write_users(&dir, 300);
    users_pipeline(&dir, "{}", "{ entity: sessions, prefetch: false }");
    let wrong = "sk-live-WRONG-0000111122223333";
    let run = run(command(dir.path(), &emulator.base_url(), wrong, &[])).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("Gleap refused the API key or the project (401"),
        "{run:?}"
    );
    assert!(!run.stderr.contains(wrong) && !run.stdout.contains(wrong));
    let stats = emulator.stats();
    assert!(
        stats["unauthorized"].as_u64().unwrap() <= 4,
        "requests after the first 401: {}",
        stats["unauthorized"]
    );
    assert!(
        !dir.join("state/dead-letter.jsonl").exists(),
        "a refused key is no record's fault"
    );
}

// Defect 13: with Gleap not listening, each record waited out 8 attempts (63 s for 800) and
// was dead-lettered. Now a request's worth of attempts, across the records, stops the run:
// the records' first attempts fail at once, so no backoff is waited out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_gleap_stops_the_run_after_the_first_request() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let dir = Dir::new();
    write_users(&dir, 300);
    users_pipeline(&dir, "{}", "{ entity: sessions, prefetch: false }");
    let base_url = format!("http://127.0.0.1:{port}/v3");
    let run = run(command(
        dir.path(),
        &base_url,
        KEY,
        &["--report", "report.json"],
    ))
    .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("cannot reach Gleap at"), "{run:?}");
    let report: Value = serde_json::from_str(&dir.read("report.json")).unwrap();
    assert_eq!(report["dead_lettered"], 0, "{report}");
    assert!(!dir.join("state/dead-letter.jsonl").exists());
}

// Defect 13: `--max-errors 0` sent 503 rejected creates before the run stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_errors_stops_sending_at_once() {
    let emulator = emulator(0).await;
    let dir = Dir::new();
    // Every ticket names a session Gleap does not have: each create is a 400.
    let mut csv = String::from("id,title,session\n");
    for i in 0..500 {
        csv.push_str(&format!("T{i},Ticket {i},65a00000000000000000ffff\n"));
    }
    dir.write("tickets.csv", csv);
    dir.write(
        "pipeline.yaml",
        "version: 1\nname: hostile\nstate_dir: ${STATE_DIR}\nstreams:\n  - name: tickets\n    source: { csv: { path: tickets.csv } }\n    sink: { gleap: { entity: tickets } }\n",
    );
    let run = run(command(
        dir.path(),
        &emulator.base_url(),
        KEY,
        &["--max-errors", "0"],
    ))
    .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--max-errors"), "{run:?}");
    let sent = requests(&emulator.stats(), "POST /tickets");
    // The requests in flight when the first answer came (the concurrency), and no more.
    assert!(sent <= 8, "{sent} creates sent for --max-errors 0");
}

/// The `users` stream's detail in a `--report` file.
fn users_detail(dir: &Dir) -> Value {
    let report: Value = serde_json::from_str(&dir.read("report.json")).unwrap();
    report["streams"][0]["sink"]["detail"].clone()
}

// Defect 18: against 300,000 sessions, 2 new contacts with `prefetch: true` cost 303
// requests. With `prefetch: auto` (the default) they are looked up one by one; a large
// import reads the sessions once that pays, and then costs no look-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_auto_looks_few_records_up_and_prefetches_for_many() {
    let emulator = emulator(3000).await;
    let dir = Dir::new();
    dir.write("users.csv", "userId,name\nnew-1,New One\nnew-2,New Two\n");
    users_pipeline(&dir, "{}", "{ entity: sessions }");
    let report = ["--report", "report.json"];
    let r = run(command(dir.path(), &emulator.base_url(), KEY, &report)).await;
    assert_eq!(r.code, 0, "{r:?}");
    let d = users_detail(&dir);
    assert_eq!(d["created"], 2, "{d}");
    assert!(d["requests"].as_u64().unwrap() <= 5, "{d}");
    assert_eq!(d["prefetch_requests"], 0, "{d}");

    // 400 contacts the project has, as it has them: all unchanged, and most never looked up.
    let dump = emulator.dump();
    let mut csv = String::from("userId,name\n");
    for s in dump["sessions"].as_array().unwrap().iter().take(400) {
        csv.push_str(&format!(
            "{},{}\n",
            s["userId"].as_str().unwrap(),
            s["name"].as_str().unwrap()
        ));
    }
    let other = Dir::new();
    other.write("users.csv", csv);
    users_pipeline(
        &other,
        "{ concurrency: 4 }",
        "{ entity: sessions, prefetch: auto }",
    );
    let r = run(command(other.path(), &emulator.base_url(), KEY, &report)).await;
    assert_eq!(r.code, 0, "{r:?}");
    let d = users_detail(&other);
    assert_eq!(
        (d["unchanged"].as_u64(), d["created"].as_u64()),
        (Some(400), Some(0)),
        "{d}"
    );
    let pages = d["prefetch_requests"].as_u64().unwrap();
    assert!(
        (4..=6).contains(&pages),
        "3,000 sessions: 3 full pages and the end: {d}"
    );
    assert!(
        d["requests"].as_u64().unwrap() <= 40,
        "a look-up for the first records only: {d}"
    );
    assert!(d.get("prefetch_skipped").is_none(), "{d}");
}

/// Users and their tickets: `users.csv` (userId,name) and `tickets.csv` (id,title,session).
fn helpdesk_pipeline(dir: &Dir, state_dir: &str) {
    helpdesk_pipeline_with(dir, state_dir, "auto");
}

fn helpdesk_pipeline_with(dir: &Dir, state_dir: &str, prefetch: &str) {
    dir.write(
        "pipeline.yaml",
        format!(
            "version: 1\nname: hostile\nstate_dir: {state_dir}\nstreams:\n  - name: users\n    source: {{ csv: {{ path: users.csv }} }}\n    sink: {{ gleap: {{ entity: sessions, prefetch: {prefetch} }} }}\n  - name: tickets\n    source: {{ csv: {{ path: tickets.csv }} }}\n    sink: {{ gleap: {{ entity: tickets, refs: {{ session: users }} }} }}\n"
        ),
    );
}

/// `DELETE /v3/{what}/{id}` on the emulator.
async fn delete_in_gleap(emulator: &Emulator, what: &str, id: &str) {
    let status = reqwest::Client::new()
        .delete(format!("{}/{what}/{id}", emulator.base_url()))
        .bearer_auth(KEY)
        .header("project", PROJECT)
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "DELETE {what}/{id}: {status}");
}

fn session_id(dump: &Value, user_id: &str) -> String {
    let sessions = dump["sessions"].as_array().unwrap();
    let found: Vec<&Value> = sessions.iter().filter(|s| s["userId"] == user_id).collect();
    assert_eq!(found.len(), 1, "one session for {user_id}: {found:?}");
    found[0]["_id"].as_str().unwrap().to_string()
}

fn stream_detail(dir: &Dir, stream: &str) -> Value {
    let report: Value = serde_json::from_str(&dir.read("report.json")).unwrap();
    report["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == stream)
        .unwrap_or_else(|| panic!("no stream {stream}: {report}"))["sink"]["detail"]
        .clone()
}

// Defect 14: a session deleted in Gleap stayed mapped; its changed record is re-created (and
// counted), and a child created for it makes the next run re-create it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_deleted_in_gleap_are_created_again() {
    let emulator = emulator(0).await;
    let dir = Dir::new();
    dir.write("users.csv", "userId,name\nu0,Ann\nu1,Bob\nu2,Cy\n");
    dir.write("tickets.csv", "id,title,session\nT0,First,u0\n");
    helpdesk_pipeline(&dir, "${STATE_DIR}");
    let report = ["--report", "report.json"];
    let r = run(command(dir.path(), &emulator.base_url(), KEY, &report)).await;
    assert_eq!(r.code, 0, "{r:?}");

    // u1 is deleted in Gleap and changes in the input: updated, Gleap answers 404, created again.
    delete_in_gleap(&emulator, "sessions", &session_id(&emulator.dump(), "u1")).await;
    // u0 is deleted in Gleap and unchanged, but a new ticket of it comes.
    delete_in_gleap(&emulator, "sessions", &session_id(&emulator.dump(), "u0")).await;
    dir.write("users.csv", "userId,name\nu0,Ann\nu1,Bob B.\nu2,Cy\n");
    dir.write(
        "tickets.csv",
        "id,title,session\nT0,First,u0\nT1,Second,u0\n",
    );
    let r = run(command(dir.path(), &emulator.base_url(), KEY, &report)).await;
    assert_eq!(r.code, 1, "{r:?}");
    let users = stream_detail(&dir, "users");
    assert_eq!(users["recreated"], 1, "{users}");
    let tickets = stream_detail(&dir, "tickets");
    assert_eq!(tickets["parent_gone"], 1, "{tickets}");
    let letters = dir.read("state/dead-letter.jsonl");
    assert!(
        letters.contains("is gone from Gleap") && letters.contains("the next run creates it again"),
        "{letters}"
    );

    // The next run creates u0 again, then T1, and moves T0 to it.
    let r = run(command(dir.path(), &emulator.base_url(), KEY, &report)).await;
    assert_eq!(r.code, 0, "{r:?}");
    let dump = emulator.dump();
    assert_eq!(dump["sessions"].as_array().unwrap().len(), 3);
    let u0 = session_id(&dump, "u0");
    let tickets = dump["tickets"].as_array().unwrap();
    assert_eq!(tickets.len(), 2, "{tickets:?}");
    assert!(
        tickets.iter().all(|t| t["session"] == u0.as_str()),
        "{tickets:?}"
    );

    // u2 is deleted in Gleap and unchanged: a prefetch that does not hold it creates it again.
    delete_in_gleap(&emulator, "sessions", &session_id(&emulator.dump(), "u2")).await;
    helpdesk_pipeline_with(&dir, "${STATE_DIR}", "true");
    let r = run(command(dir.path(), &emulator.base_url(), KEY, &report)).await;
    assert_eq!(r.code, 0, "{r:?}");
    let users = stream_detail(&dir, "users");
    assert_eq!(
        (users["recreated"].as_u64(), users["unchanged"].as_u64()),
        (Some(1), Some(2)),
        "{users}"
    );
    session_id(&emulator.dump(), "u2");
}

// Defect 14: a 0-byte state.sqlite, or a relative state_dir run from another folder, counted
// as a fresh start and created every ticket again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_state_is_refused_before_anything_is_created_again() {
    let emulator = emulator(0).await;
    let dir = Dir::new();
    dir.write("users.csv", "userId,name\nu0,Ann\nu1,Bob\n");
    dir.write(
        "tickets.csv",
        "id,title,session\nT0,First,u0\nT1,Second,u1\n",
    );
    helpdesk_pipeline(&dir, "${STATE_DIR}");
    let r = run(command(dir.path(), &emulator.base_url(), KEY, &[])).await;
    assert_eq!(r.code, 0, "{r:?}");
    let tickets = |e: &Emulator| e.dump()["tickets"].as_array().unwrap().len();
    assert_eq!(tickets(&emulator), 2);

    // The store emptied to 0 bytes.
    let state = dir.join("state");
    for entry in std::fs::read_dir(&state).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("state.sqlite") {
            std::fs::write(&path, b"").unwrap();
        }
    }
    let r = run(command(dir.path(), &emulator.base_url(), KEY, &[])).await;
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("Gleap already holds ticket"), "{r:?}");
    // As the pipeline names it (`${STATE_DIR}`, a value never printed).
    assert!(
        r.stderr.contains("${STATE_DIR}/state.sqlite"),
        "names the state dir: {r:?}"
    );
    assert!(r.stderr.contains("--adopt-existing"), "{r:?}");
    assert!(r.stderr.contains("gleap-etl reconcile"), "{r:?}");
    assert_eq!(tickets(&emulator), 2, "nothing created twice");

    // Adopting what Gleap holds rebuilds the state, creating nothing.
    let r = run(command(
        dir.path(),
        &emulator.base_url(),
        KEY,
        &["--adopt-existing"],
    ))
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(tickets(&emulator), 2, "nothing created twice");
    assert_eq!(emulator.dump()["sessions"].as_array().unwrap().len(), 2);

    // A relative state_dir, run from another folder: a new, empty state there.
    let other = Dir::new();
    helpdesk_pipeline(&other, "state");
    for file in ["users.csv", "tickets.csv"] {
        other.write(file, dir.read(file));
    }
    let r = run(command(other.path(), &emulator.base_url(), KEY, &[])).await;
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("relative `state_dir`"), "{r:?}");
    assert_eq!(tickets(&emulator), 2, "nothing created twice");
}

/// `gleap-etl export sessions --incremental --out OUT` with the state in `state`.
fn export_into(emulator: &Emulator, dir: &Dir, out: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gleap-etl"));
    cmd.args(["export", "sessions", "--incremental", "--no-progress"])
        .arg("--out")
        .arg(dir.join(out))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--report")
        .arg(dir.join("report.json"))
        .env("GLEAP_BASE_URL", emulator.base_url())
        .env("GLEAP_API_KEY", KEY)
        .env("GLEAP_PROJECT_ID", PROJECT)
        .env("GLEAP_REQUESTS_PER_MINUTE", "6000000")
        .env_remove("RUST_LOG");
    cmd
}

/// Runs an incremental export into `out`; the ids its dataset holds and why it exported
/// everything, if it did.
async fn incremental(emulator: &Emulator, dir: &Dir, out: &str) -> (Vec<String>, Option<String>) {
    let r = run(export_into(emulator, dir, out)).await;
    assert_eq!(r.code, 0, "{r:?}");
    let report: Value = serde_json::from_str(&dir.read("report.json")).unwrap();
    let why = report["streams"][0]["sink"]["detail"]["full_export"]
        .as_str()
        .map(str::to_string);
    if let Some(why) = &why {
        assert!(
            r.stderr.contains(why.as_str()),
            "the summary says why: {r:?}"
        );
    }
    let mut ids = crate::export::dataset_ids(&dir.join(out));
    ids.sort();
    (ids, why)
}

// Defect 4: `export --incremental` into a new or emptied folder wrote 0 rows and exited 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_export_into_a_folder_without_the_earlier_export_exports_everything() {
    let emulator = emulator(300).await;
    let dir = Dir::new();
    let (all, why) = incremental(&emulator, &dir, "a").await;
    assert_eq!(all.len(), 300);
    assert_eq!(why, None, "the first export is a full one anyway");
    // Nothing changed: the same folder stays as it is, and nothing is read again.
    let (ids, why) = incremental(&emulator, &dir, "a").await;
    assert_eq!((ids.len(), why), (300, None));

    // A new folder, the same state: everything, said so.
    let (ids, why) = incremental(&emulator, &dir, "b").await;
    assert_eq!(ids, all, "a new folder gets every session");
    assert!(why.unwrap().contains("holds no export of this stream"));

    // The folder emptied.
    for entry in std::fs::read_dir(dir.join("b")).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let (ids, why) = incremental(&emulator, &dir, "b").await;
    assert_eq!(ids, all, "an emptied folder gets every session");
    assert!(why.unwrap().contains("no readable _manifest.json"));

    // Folder `b` restored from a backup taken before the last run: an older cursor.
    let copy = |from: &str, to: &str| {
        std::fs::create_dir_all(dir.join(to)).unwrap();
        for entry in std::fs::read_dir(dir.join(from)).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, dir.join(to).join(path.file_name().unwrap())).unwrap();
        }
    };
    copy("b", "backup");
    emulator.touch_sessions(5);
    let (ids, why) = incremental(&emulator, &dir, "b").await;
    assert_eq!(
        (ids.len(), why),
        (305, None),
        "b is current: the 5 changed sessions are added"
    );
    std::fs::remove_dir_all(dir.join("b")).unwrap();
    copy("backup", "b");
    let (ids, why) = incremental(&emulator, &dir, "b").await;
    assert_eq!(ids, all, "no session twice, none missing");
    assert!(why.unwrap().contains("is not the one in the state store"));

    // Folder `a`, left behind when the export moved to `b`.
    let (ids, why) = incremental(&emulator, &dir, "a").await;
    assert_eq!(ids, all);
    assert!(why.unwrap().contains("holds no export of this stream"));
}
