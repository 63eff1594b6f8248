//! Real Gleap, not only our emulator (issue 11): thread order through faults, an emulator
//! that answers like the live API, and each of its harder switches (capped pages, ignored
//! `skip`, ignored filters, a lagging index) against imports, exports and `doctor`. An
//! import either finishes exact or stops with an error naming the problem; nothing is
//! duplicated or overwritten; an export reads every record once or stops with an error.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use gleap_etl::emulator::{Emulator, EmulatorConfig, FaultConfig, Quirks};
use serde_json::Value;

use crate::export::{dataset_ids, run};
use crate::util::{Api, Dir, Run, read_parquet, repo, write_helpdesk};

const KEY: &str = "fidelity-key";
const PROJECT: &str = "65a0000000000000000000ab";

fn faults(error: f64, reset: f64, lost: f64) -> FaultConfig {
    FaultConfig {
        error_rate: error,
        reset_rate: reset,
        lost_rate: lost,
        seed: 2026,
        ..Default::default()
    }
}

async fn emulator(faults: FaultConfig, quirks: Quirks, sessions: usize) -> Emulator {
    Emulator::start(EmulatorConfig {
        api_key: Some(KEY.into()),
        project: Some(PROJECT.into()),
        quota: None,
        faults,
        quirks,
        generate_sessions: sessions,
        ..Default::default()
    })
    .await
    .unwrap()
}

/// `gleap-etl ARGS` against `emulator`, in `dir`.
fn gleap(emulator: &Emulator, dir: &Dir, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gleap-etl"));
    cmd.args(args)
        .current_dir(dir.path())
        .env("GLEAP_BASE_URL", emulator.base_url())
        .env("GLEAP_API_KEY", KEY)
        .env("GLEAP_PROJECT_ID", PROJECT)
        .env("GLEAP_REQUESTS_PER_MINUTE", "6000000")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// `pipelines/csv-to-gleap.yaml` on `dir/data`, state in `dir/state`, report in
/// `dir/report.json`.
fn csv_import(emulator: &Emulator, dir: &Dir) -> Command {
    let pipeline = repo().join("pipelines/csv-to-gleap.yaml");
    let mut cmd = gleap(
        emulator,
        dir,
        &["run", pipeline.to_str().unwrap(), "--no-progress"],
    );
    cmd.arg("--report")
        .arg(dir.join("report.json"))
        .env("DATA_DIR", dir.join("data"))
        .env("STATE_DIR", dir.join("state"));
    cmd
}

/// The Gleap sink's detail of a stream in the run report `dir/report.json`.
fn detail(dir: &Dir, stream: &str) -> Value {
    let report: Value = serde_json::from_str(&dir.read("report.json")).unwrap();
    let s = report["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == stream)
        .unwrap_or_else(|| panic!("no stream {stream} in {report}"));
    s["sink"]["detail"].clone()
}

/// `gleap-etl export ENTITY` into `dir/out/ENTITY`.
fn export(emulator: &Emulator, dir: &Dir, entity: &str, extra: &[&str]) -> Command {
    let mut cmd = gleap(emulator, dir, &["export", entity, "--no-progress"]);
    cmd.arg("--out")
        .arg(dir.join(&format!("out/{entity}")))
        .arg("--state-dir")
        .arg(dir.join(&format!("state-{entity}")))
        .arg("--report")
        .arg(dir.join("report.json"))
        .args(extra);
    cmd
}

/// Users whose userIds are those of the emulator's generated sessions (`user-000001`...),
/// with no tickets or messages.
fn write_known_users(data: &Path, n: usize) {
    std::fs::create_dir_all(data).unwrap();
    let mut u = String::from("user_id,email,name,plan,company\n");
    for i in 1..=n {
        u.push_str(&format!(
            "user-{i:06},user-{i:06}@example.com,Known {i},pro,Acme\n"
        ));
    }
    std::fs::write(data.join("users.csv"), u).unwrap();
    std::fs::write(
        data.join("tickets.csv"),
        "ticket_id,user_id,title,status,priority,type,tags,created_at\n",
    )
    .unwrap();
    std::fs::write(
        data.join("messages.csv"),
        "message_id,ticket_id,user_id,author,body,internal,created_at\n",
    )
    .unwrap();
}

/// Per ticket (its `importId`), the comment numbers of `write_helpdesk` messages in the
/// order Gleap holds them: the order an agent reads the thread in.
fn threads(dump: &Value) -> HashMap<String, Vec<usize>> {
    let import_id: HashMap<&str, &str> = dump["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["_id"].as_str().unwrap(),
                t["customData"]["importId"].as_str().unwrap(),
            )
        })
        .collect();
    let mut threads: HashMap<String, Vec<usize>> = HashMap::new();
    for m in dump["messages"].as_array().unwrap() {
        let comment = m["comment"].as_str().unwrap();
        let (_, rest) = comment.split_once(": comment ").unwrap();
        let j: usize = rest.split_once(' ').unwrap().0.parse().unwrap();
        threads
            .entry(import_id[m["ticket"].as_str().unwrap()].to_string())
            .or_default()
            .push(j);
    }
    threads
}

/// userIds (or another session field) held by more than one session.
fn shared_values(dump: &Value, field: &str) -> Vec<String> {
    let mut seen = HashSet::new();
    dump["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s[field].as_str())
        .filter(|v| !seen.insert(v.to_string()))
        .map(str::to_string)
        .collect()
}

/// What a stopped export committed (if anything) holds no record twice.
fn assert_each_once(dataset: &Path) {
    if dataset.join("_manifest.json").exists() {
        let ids = dataset_ids(dataset);
        assert_eq!(ids.len(), ids.iter().collect::<HashSet<_>>().len());
    }
}

// ------------------------------------------------------------------------ thread order

/// Threads of eight messages through 5% server errors, 2% resets and 1% lost answers: each
/// reads in source order, nothing twice, nothing missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_threads_keep_their_order_through_faults() {
    let emulator = emulator(faults(0.05, 0.02, 0.01), Quirks::default(), 0).await;
    let dir = Dir::new();
    write_helpdesk(&dir.join("data"), 60, 120, 8);
    let r = run(csv_import(&emulator, &dir)).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!r.stderr.contains("panicked"), "{r:?}");
    let dump = emulator.dump();
    assert_eq!(dump["sessions"].as_array().unwrap().len(), 60);
    assert_eq!(dump["tickets"].as_array().unwrap().len(), 120);
    assert_eq!(dump["messages"].as_array().unwrap().len(), 960);
    let threads = threads(&dump);
    assert_eq!(threads.len(), 120);
    for (ticket, thread) in &threads {
        assert_eq!(
            *thread,
            (0..8).collect::<Vec<_>>(),
            "the thread of {ticket}"
        );
    }
    let stats = emulator.stats();
    assert_eq!(stats["messages_out_of_order"], 0, "{stats}");
    assert!(
        stats["faults"]["lost_responses"].as_u64().unwrap() > 5,
        "{stats}"
    );
    assert_eq!(detail(&dir, "messages")["out_of_order"], 0);
}

/// A comment added to the input after a later one of its ticket was migrated cannot be put
/// in its place: the report counts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_comment_added_later_is_counted_not_hidden() {
    let emulator = emulator(FaultConfig::default(), Quirks::default(), 0).await;
    let dir = Dir::new();
    write_helpdesk(&dir.join("data"), 5, 5, 3);
    let messages = dir.read("data/messages.csv");
    let without: String = messages
        .lines()
        .filter(|l| !l.starts_with("M-000002,"))
        .map(|l| format!("{l}\n"))
        .collect();
    dir.write("data/messages.csv", &without);
    let first = run(csv_import(&emulator, &dir)).await;
    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(detail(&dir, "messages")["out_of_order"], 0);
    dir.write("data/messages.csv", &messages);
    let second = run(csv_import(&emulator, &dir)).await;
    assert_eq!(second.code, 0, "{second:?}");
    let d = detail(&dir, "messages");
    assert_eq!(
        (d["created"].as_u64(), d["out_of_order"].as_u64()),
        (Some(1), Some(1)),
        "{d}"
    );
    assert!(
        second
            .stderr
            .contains("1 created after a later message of their ticket"),
        "{second:?}"
    );
    let threads = threads(&emulator.dump());
    assert_eq!(threads["tickets:T-00000"], [0, 2, 1]);
}

// ------------------------------------------------------------------------ --page-cap

/// Imports `n` contacts that the project already holds (the emulator's generated sessions,
/// by userId) with `prefetch: true`: none may be created again, each is updated once.
/// Returns the run and the users stream's report.
async fn import_known_contacts(quirks: Quirks, n: usize) -> (Run, Value) {
    let emulator = emulator(FaultConfig::default(), quirks, n).await;
    let dir = Dir::new();
    write_known_users(&dir.join("data"), n);
    let r = run(csv_import(&emulator, &dir)).await;
    assert_eq!(r.code, 0, "{r:?}");
    let d = detail(&dir, "users");
    assert_eq!(
        (d["created"].as_u64(), d["updated"].as_u64()),
        (Some(0), Some(n as u64)),
        "{d}"
    );
    let dump = emulator.dump();
    assert_eq!(dump["sessions"].as_array().unwrap().len(), n);
    assert!(shared_values(&dump, "userId").is_empty());
    (r, d)
}

/// A project whose lists answer at most 100 records whatever `limit` asks: the prefetch
/// reads all 500 existing contacts, so none is created twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capped_pages_prefetch_every_existing_contact() {
    let quirks = Quirks {
        page_cap: Some(100),
        ..Default::default()
    };
    let (_, d) = import_known_contacts(quirks, 500).await;
    assert!(d["prefetch_requests"].as_u64().unwrap() >= 5, "{d}");
    assert!(d.get("prefetch_skipped").is_none(), "{d}");
}

/// The same cap: an export reads all 3,000 sessions, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capped_pages_export_every_session_once() {
    let quirks = Quirks {
        page_cap: Some(100),
        ..Default::default()
    };
    let emulator = emulator(FaultConfig::default(), quirks, 3000).await;
    let dir = Dir::new();
    let r = run(export(&emulator, &dir, "sessions", &[])).await;
    assert_eq!(r.code, 0, "{r:?}");
    let ids = dataset_ids(&dir.join("out/sessions"));
    assert_eq!(ids.len(), 3000);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 3000);
}

// ------------------------------------------------------------------------ --ignore-skip

/// A project that ignores `skip`: the prefetch sees the same page twice, says so, and the
/// contacts are looked up one by one instead: none is created twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignored_skip_prefetch_falls_back_to_look_ups() {
    let quirks = Quirks {
        ignore_skip: true,
        ..Default::default()
    };
    let (r, d) = import_known_contacts(quirks, 1500).await;
    let skipped = d["prefetch_skipped"].as_str().unwrap();
    assert!(skipped.contains("ignores `skip`"), "{d}");
    assert!(r.stderr.contains("sessions not prefetched"), "{r:?}");
}

/// Ignoring `skip` does not stop message look-ups after lost answers: a ticket's messages
/// fit one page, and a short page answered again for the next `skip` is the whole list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignored_skip_look_ups_after_lost_answers_finish_exact() {
    let quirks = Quirks {
        ignore_skip: true,
        ..Default::default()
    };
    let emulator = emulator(faults(0.0, 0.02, 0.05), quirks, 0).await;
    let dir = Dir::new();
    write_helpdesk(&dir.join("data"), 20, 60, 4);
    let r = run(csv_import(&emulator, &dir)).await;
    assert_eq!(r.code, 0, "{r:?}");
    let dump = emulator.dump();
    assert_eq!(dump["messages"].as_array().unwrap().len(), 240);
    for (ticket, thread) in threads(&dump) {
        assert_eq!(thread, [0, 1, 2, 3], "the thread of {ticket}");
    }
    let stats = emulator.stats();
    assert!(
        stats["faults"]["lost_responses"].as_u64().unwrap() > 3,
        "{stats}"
    );
    assert!(
        stats["requests"]["GET /messages"]["200"].as_u64().unwrap() > 0,
        "look-ups happened: {stats}"
    );
}

/// Ignoring `skip` costs an export nothing while its pages move by time; where it needs
/// `skip` (more records at one instant than a page holds) it stops with an error and
/// commits nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignored_skip_export_pages_by_time_or_stops_clearly() {
    let quirks = Quirks {
        ignore_skip: true,
        ..Default::default()
    };
    let emulator = emulator(FaultConfig::default(), quirks, 3000).await;
    let dir = Dir::new();
    let r = run(export(&emulator, &dir, "sessions", &[])).await;
    assert_eq!(r.code, 0, "{r:?}");
    let ids = dataset_ids(&dir.join("out/sessions"));
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 3000);
    assert_eq!(ids.len(), 3000);

    let small = Dir::new();
    let r = run(export(&emulator, &small, "sessions", &["--page-size", "2"])).await;
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("ignores `skip`"), "{r:?}");
    assert_each_once(&small.join("out/sessions"));
}

// ------------------------------------------------------------------------ --ignore-filter

/// Tickets whose create answer was lost are looked up by `customData.importId`; a project
/// that ignores that filter answers other tickets, and the look-up reads every ticket
/// instead (saying so once): the import finishes with each ticket once, none written over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ignored_import_id_filter_never_duplicates_or_overwrites_tickets() {
    let quirks = Quirks {
        ignore_filters: vec!["customData.importId".into()],
        ..Default::default()
    };
    let emulator = emulator(faults(0.0, 0.02, 0.05), quirks, 0).await;
    let dir = Dir::new();
    write_helpdesk(&dir.join("data"), 30, 150, 1);
    let r = run(csv_import(&emulator, &dir)).await;
    let dump = emulator.dump();
    let tickets = dump["tickets"].as_array().unwrap();
    let mut import_ids = HashSet::new();
    for t in tickets {
        let import_id = t["customData"]["importId"].as_str().unwrap();
        assert!(import_ids.insert(import_id), "{import_id} twice");
        let i: usize = import_id
            .strip_prefix("tickets:T-")
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            t["title"]
                .as_str()
                .unwrap()
                .starts_with(&format!("Ticket {i},")),
            "ticket {import_id} holds another's title: {t}"
        );
    }
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(tickets.len(), 150, "each ticket once");
    assert!(
        emulator.stats()["faults"]["lost_responses"]
            .as_u64()
            .unwrap()
            > 3,
        "5% lost answers: look-ups happened"
    );
    assert_eq!(
        r.stderr.matches("Gleap ignores the filter").count(),
        1,
        "said once: {r:?}"
    );
}

/// The same for messages (looked up by `ticket=`, every page read); and an export of
/// messages, read ticket by ticket, stops with an error instead of reading other tickets'
/// messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ignored_ticket_filter_never_duplicates_messages_and_stops_exports() {
    let quirks = Quirks {
        ignore_filters: vec!["ticket".into()],
        ..Default::default()
    };
    let emulator = emulator(faults(0.0, 0.02, 0.05), quirks, 0).await;
    let dir = Dir::new();
    write_helpdesk(&dir.join("data"), 20, 40, 5);
    let r = run(csv_import(&emulator, &dir)).await;
    let dump = emulator.dump();
    let mut comments = HashSet::new();
    for m in dump["messages"].as_array().unwrap() {
        assert!(comments.insert(m["comment"].as_str().unwrap()), "{m} twice");
    }
    // Every page of messages is read for a look-up and the other tickets' left out: the
    // import finishes, each message once.
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(comments.len(), 200);
    assert!(r.stderr.contains("Gleap ignores the filter"), "{r:?}");
    let e = run(export(&emulator, &dir, "messages", &[])).await;
    assert_eq!(e.code, 2, "{e:?}");
    assert!(e.stderr.contains("ignores the `ticket` filter"), "{e:?}");
}

/// Exports read windows of `createdAt` (or `updatedAt`, incremental): where Gleap ignores
/// the range filter they stop with an error rather than read records twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ignored_range_filter_stops_exports() {
    for (field, extra) in [("createdAt", vec![]), ("updatedAt", vec!["--incremental"])] {
        let quirks = Quirks {
            ignore_filters: vec![field.into()],
            ..Default::default()
        };
        let emulator = emulator(FaultConfig::default(), quirks, 3000).await;
        let dir = Dir::new();
        let r = run(export(&emulator, &dir, "sessions", &extra)).await;
        assert_eq!(r.code, 2, "{field}: {r:?}");
        assert!(
            r.stderr.contains("ignores the range filter"),
            "{field}: {r:?}"
        );
        assert_each_once(&dir.join("out/sessions"));
    }
}

// ------------------------------------------------------------------------ --index-lag-ms

/// Sessions show in lists two seconds late. Contacts keyed by e-mail are looked up through
/// the list after a lost answer: the look-up keeps looking (lookup_settle_secs) and none is
/// created twice. An export reads what the list shows, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_index_creates_no_contact_twice() {
    let quirks = Quirks {
        index_lag: Duration::from_millis(2000),
        ..Default::default()
    };
    let emulator = emulator(faults(0.0, 0.0, 0.05), quirks, 0).await;
    let dir = Dir::new();
    let mut users = String::from("email,name\n");
    for i in 0..120 {
        users.push_str(&format!("user{i}@example.com,User {i}\n"));
    }
    dir.write("users.csv", users);
    dir.write(
        "pipeline.yaml",
        "version: 1\nname: by-email\nstreams:\n  - name: users\n    source: { csv: { path: users.csv } }\n    sink: { gleap: { entity: sessions, key: email } }\n",
    );
    let mut cmd = gleap(
        &emulator,
        &dir,
        &[
            "run",
            "pipeline.yaml",
            "--no-progress",
            "--state-dir",
            "state",
        ],
    );
    cmd.arg("--report").arg(dir.join("report.json"));
    let r = run(cmd).await;
    assert_eq!(r.code, 0, "{r:?}");
    let dump = emulator.dump();
    assert!(shared_values(&dump, "email").is_empty(), "an e-mail twice");
    assert_eq!(dump["sessions"].as_array().unwrap().len(), 120);
    assert!(
        emulator.stats()["faults"]["lost_responses"]
            .as_u64()
            .unwrap()
            > 0
    );

    let e = run(export(&emulator, &dir, "sessions", &[])).await;
    assert_eq!(e.code, 0, "{e:?}");
    let ids = dataset_ids(&dir.join("out/sessions"));
    assert_eq!(
        ids.len(),
        ids.iter().collect::<HashSet<_>>().len(),
        "each once"
    );
    assert!(ids.len() <= 120);
}

// ------------------------------------------------------------------------ exports in the live shape

/// Tickets and messages answer `id` only and message text in `data.content`: exports read
/// every ticket and every message (ticket by ticket, in thread order), give each row `_id`,
/// and an incremental run reads only the messages written since.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_and_messages_export_whole_in_the_live_shape() {
    let emulator = emulator(FaultConfig::default(), Quirks::default(), 0).await;
    export_tickets_and_messages_then_two_new_messages(&emulator, || {}).await;
}

/// Every record of the import created in one millisecond, the window's end: the next
/// incremental run starts there and reads none of those messages again (it did, now and
/// then, when a ticket's last message shared its updatedAt with the window's end).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_at_the_windows_boundary_are_exported_once() {
    let clock = std::sync::Arc::new(gleap_etl::clock::ManualClock::at_2024());
    let emulator = Emulator::start(EmulatorConfig {
        api_key: Some(KEY.into()),
        project: Some(PROJECT.into()),
        quota: None,
        clock: clock.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    export_tickets_and_messages_then_two_new_messages(&emulator, || {
        clock.advance(std::time::Duration::from_secs(1))
    })
    .await;
}

/// Imports 59 tickets of 3 messages, exports them, then (after `later`) adds two messages
/// to one ticket: the next incremental export reads exactly those two.
async fn export_tickets_and_messages_then_two_new_messages(emulator: &Emulator, later: impl Fn()) {
    let dir = Dir::new();
    write_helpdesk(&dir.join("data"), 20, 59, 3);
    let r = run(csv_import(emulator, &dir)).await;
    assert_eq!(r.code, 0, "{r:?}");

    let r = run(export(emulator, &dir, "tickets", &[])).await;
    assert_eq!(r.code, 0, "{r:?}");
    let tickets = dataset_ids(&dir.join("out/tickets"));
    assert_eq!(tickets.iter().collect::<HashSet<_>>().len(), 59);

    let r = run(export(emulator, &dir, "messages", &["--incremental"])).await;
    assert_eq!(r.code, 0, "{r:?}");
    let out = dir.join("out/messages");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(out.join("_manifest.json")).unwrap()).unwrap();
    let mut rows = Vec::new();
    for f in manifest["files"].as_array().unwrap() {
        rows.extend(read_parquet(&out.join(f.as_str().unwrap())).1);
    }
    assert_eq!(rows.len(), 177);
    let mut per_ticket: HashMap<String, Vec<String>> = HashMap::new();
    for row in &rows {
        assert!(
            row["_id"].is_string() && row["ticket"].is_string(),
            "{row:?}"
        );
        let data = json_column(row, "data");
        per_ticket
            .entry(row["ticket"].as_str().unwrap().to_string())
            .or_default()
            .push(data["content"].as_str().unwrap().to_string());
    }
    for (ticket, thread) in &per_ticket {
        let order: Vec<usize> = thread
            .iter()
            .map(|c| {
                let (_, rest) = c.split_once(": comment ").unwrap();
                rest.split_once(' ').unwrap().0.parse().unwrap()
            })
            .collect();
        assert_eq!(order, [0, 1, 2], "ticket {ticket} in thread order");
    }

    // Two new messages on one ticket: the next incremental run reads those two only.
    later();
    let api = Api::new(emulator);
    let ticket = per_ticket.keys().next().unwrap().clone();
    for text in ["later one", "later two"] {
        let (status, _) = api
            .post(
                "/messages",
                serde_json::json!({"ticket": ticket, "comment": text, "sendToChannel": false}),
            )
            .await;
        assert_eq!(status, 200);
    }
    let r = run(export(emulator, &dir, "messages", &["--incremental"])).await;
    assert_eq!(r.code, 0, "{r:?}");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(out.join("_manifest.json")).unwrap()).unwrap();
    let parts = manifest["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 2, "{manifest:#}");
    let (_, new_rows) = read_parquet(&out.join(parts[1]["files"][0]["file"].as_str().unwrap()));
    let texts: Vec<String> = new_rows
        .iter()
        .map(|r| {
            let data = json_column(r, "data");
            data["content"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(texts, ["later one", "later two"]);
}

/// A JSON column of a row read back: an object, or its text.
fn json_column(row: &serde_json::Map<String, Value>, column: &str) -> Value {
    match &row[column] {
        Value::String(text) => serde_json::from_str(text).unwrap(),
        other => other.clone(),
    }
}

// ------------------------------------------------------------------------ doctor

/// `gleap-etl doctor --emulator FLAGS --json`: its exit code and findings by check.
fn doctor(flags: &[&str]) -> (Run, HashMap<String, Value>) {
    let dir = Dir::new();
    let mut args = vec!["doctor", "--emulator", "--json"];
    args.extend(flags);
    let r = dir.run(&args);
    let report: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {r:?}"));
    assert!(
        report["requests"].as_u64().unwrap() <= 40,
        "at most 40 requests: {report:#}"
    );
    assert!(
        report["left_behind"].as_array().unwrap().is_empty(),
        "{report:#}"
    );
    let findings = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["check"].as_str().unwrap().to_string(), f.clone()))
        .collect();
    (r, findings)
}

/// The one finding that is not `ok`, which must be `check` with `status`.
fn assert_only(findings: &HashMap<String, Value>, check: &str, status: &str) {
    let not_ok: Vec<(&String, &Value)> = findings
        .iter()
        .filter(|(_, f)| f["status"] != "ok" && f["status"] != "unknown")
        .collect();
    assert_eq!(
        not_ok.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(),
        [check],
        "{not_ok:#?}"
    );
    assert_eq!(findings[check]["status"], status, "{:#}", findings[check]);
}

#[test]
fn doctor_passes_on_the_default_emulator() {
    let (r, findings) = doctor(&[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        findings.values().all(|f| f["status"] == "ok"),
        "{findings:#?}"
    );
    for check in [
        "auth",
        "sessions.ids",
        "tickets.ids",
        "messages.ids",
        "messages.read",
        "index_lag",
        "page_size",
        "skip",
        "sort",
        "filter.customData.importId",
        "filter.ticket",
        "filter.email",
        "filter.updatedAt",
        "by_user_id.unknown",
        "sessions.create_twice",
        "cleanup",
    ] {
        assert!(findings.contains_key(check), "{check} checked");
    }
    assert!(
        findings["messages.read"]["observed"]
            .as_str()
            .unwrap()
            .contains("data.content"),
        "{:#}",
        findings["messages.read"]
    );
}

/// `doctor --emulator FLAGS` exits `code` and names `check` (`status`) as the one
/// assumption that fails.
fn assert_doctor_names(flags: &[&str], code: i32, check: &str, status: &str) -> Value {
    let (r, findings) = doctor(flags);
    assert_eq!(r.code, code, "{flags:?}: {r:?}");
    assert_only(&findings, check, status);
    findings[check].clone()
}

#[test]
fn doctor_names_capped_pages() {
    let f = assert_doctor_names(&["--page-cap", "100"], 0, "page_size", "warn");
    assert!(
        f["observed"].as_str().unwrap().contains("at most 100"),
        "{f}"
    );
}

#[test]
fn doctor_names_an_ignored_skip() {
    assert_doctor_names(&["--ignore-skip"], 0, "skip", "warn");
}

#[test]
fn doctor_names_an_ignored_import_id_filter() {
    let flags = ["--ignore-filter", "customData.importId"];
    // gleap-etl copes (every ticket read instead): a warning.
    assert_doctor_names(&flags, 0, "filter.customData.importId", "warn");
}

#[test]
fn doctor_names_an_ignored_ticket_filter() {
    assert_doctor_names(&["--ignore-filter", "ticket"], 1, "filter.ticket", "fail");
}

#[test]
fn doctor_names_an_ignored_range_filter() {
    assert_doctor_names(
        &["--ignore-filter", "updatedAt"],
        1,
        "filter.updatedAt",
        "fail",
    );
}

#[test]
fn doctor_names_an_ignored_email_filter() {
    assert_doctor_names(&["--ignore-filter", "email"], 0, "filter.email", "warn");
}

/// A lag within `lookup_settle_secs` is a warning (gleap-etl copes); it is measured.
#[test]
fn doctor_measures_a_lagging_index() {
    let f = assert_doctor_names(&["--index-lag-ms", "1500"], 0, "index_lag", "warn");
    assert!(
        f["observed"].as_str().unwrap().contains("shown after"),
        "{f}"
    );
}

/// `--record DIR` keeps every answer, with the key, e-mail addresses and names redacted.
#[test]
fn doctor_records_redacted_answers() {
    let dir = Dir::new();
    let r = dir.run(&["doctor", "--emulator", "--record", "answers"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("| ok | filter.ticket |"), "{r:?}");
    let files: Vec<_> = std::fs::read_dir(dir.join("answers"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(files.len() >= 20, "{}", files.len());
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(!text.contains("emu_"), "{}: the key", f.display());
        assert!(
            !text.contains("@gleap-etl.invalid"),
            "{}: an e-mail",
            f.display()
        );
        assert!(
            !text.contains("\"name\": \"gleap-etl"),
            "{}: a name",
            f.display()
        );
        for name in ["Lovelace", "Hopper", "Turing", "Dijkstra"] {
            assert!(!text.contains(name), "{}: a name", f.display());
        }
        let exchange: Value = serde_json::from_str(&text).unwrap();
        assert!(exchange["request"]["method"].is_string());
    }
}
