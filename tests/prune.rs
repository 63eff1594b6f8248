//! `run --prune`: a sync after two source tickets were removed archives exactly those two
//! tickets in the emulator and nothing else, and the next identical run sends no request for
//! them; a ticket that comes back is un-archived; a run interrupted by SIGTERM or stopped by
//! --max-errors prunes nothing; `--prune=delete` deletes the tickets and their messages;
//! `--prune-sessions` deletes a session the pipeline created and never one it adopted.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use gleap_etl::emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};

use crate::util::{
    Api, Dir, Run, contents, output, requests, run_with_pid, unlimited, write_helpdesk,
};

const KEY: &str = "sk-live-TEST-prune-5c1d";
const PROJECT: &str = "65a0000000000000000000ef";

fn command(emulator: &Emulator, dir: &Path, args: &[&str]) -> Command {
    crate::util::csv_to_gleap(&emulator.base_url(), KEY, PROJECT, dir, args)
}

async fn start(hook: Option<gleap_etl::emulator::api::RequestHook>) -> Emulator {
    Emulator::start(EmulatorConfig {
        on_request: hook,
        ..unlimited(KEY, PROJECT)
    })
    .await
    .unwrap()
}

async fn run(emulator: &Emulator, dir: &Path, args: &[&str]) -> Run {
    output(command(emulator, dir, args)).await
}

/// The Gleap id of the ticket migrated from source ticket `source_id`.
fn ticket_id(c: &BTreeMap<String, BTreeMap<String, Value>>, source_id: &str) -> String {
    let import_id = format!("tickets:{source_id}");
    let ids: Vec<&String> = c["tickets"]
        .iter()
        .filter(|(_, d)| d["customData"]["importId"] == import_id.as_str())
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids.len(), 1, "{source_id}: {ids:?}");
    ids[0].clone()
}

/// The Gleap ids of the messages on ticket `ticket`.
fn messages_of(c: &BTreeMap<String, BTreeMap<String, Value>>, ticket: &str) -> Vec<String> {
    c["messages"]
        .iter()
        .filter(|(_, d)| d["ticket"] == ticket)
        .map(|(id, _)| id.clone())
        .collect()
}

/// The ids of the archived tickets.
fn archived(c: &BTreeMap<String, BTreeMap<String, Value>>) -> Vec<String> {
    c["tickets"]
        .iter()
        .filter(|(_, d)| d["archived"] == true)
        .map(|(id, _)| id.clone())
        .collect()
}

/// Removes the lines of a CSV file that hold one of `ids` as a field.
fn remove_rows(path: &Path, ids: &[&str]) {
    let text = std::fs::read_to_string(path).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|line| !line.split(',').any(|field| ids.contains(&field)))
        .collect();
    std::fs::write(path, kept.join("\n") + "\n").unwrap();
}

fn report(dir: &Dir) -> Value {
    serde_json::from_str(&dir.read("report.json")).unwrap()
}

/// `run --no-progress ARGS --report report.json`: what it printed, and its report.
async fn run_reported(emulator: &Emulator, dir: &Dir, args: &[&str]) -> (Run, Value) {
    let mut all = vec!["run", "--no-progress"];
    all.extend(args);
    all.extend(["--report", "report.json"]);
    let out = run(emulator, dir.path(), &all).await;
    let report = report(dir);
    (out, report)
}

/// The prune counts of a stream in a run report: gone, archived, deleted, already gone,
/// archived by an earlier run, left.
fn pruned(report: &Value, stream: &str) -> [u64; 6] {
    let s = report["prune"]["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stream"] == stream)
        .unwrap_or_else(|| panic!("no {stream} in {report}"));
    [
        "gone",
        "archived",
        "deleted",
        "already_gone",
        "archived_earlier",
        "left",
    ]
    .map(|k| s[k].as_u64().unwrap())
}

/// Migrates 6 contacts and 5 tickets of 2 comments each; then tickets T-00001 and T-00003
/// and their comments are deleted from the source (`dir/data`). Gives tickets.csv as it was.
async fn migrated_then_two_tickets_removed(emulator: &Emulator, dir: &Dir) -> String {
    let data = dir.join("data");
    write_helpdesk(&data, 6, 5, 2);
    let first = run(emulator, dir.path(), &["run", "--no-progress"]).await;
    assert_eq!(first.code, 0, "{first:?}");
    let tickets_csv = std::fs::read_to_string(data.join("tickets.csv")).unwrap();
    remove_rows(&data.join("tickets.csv"), &["T-00001", "T-00003"]);
    remove_rows(&data.join("messages.csv"), &["T-00001", "T-00003"]);
    tickets_csv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_with_prune_archives_exactly_the_tickets_gone_from_the_source() {
    let emulator = start(None).await;
    let dir = Dir::new();
    let data = dir.join("data");
    let tickets_csv = migrated_then_two_tickets_removed(&emulator, &dir).await;
    let before = contents(&emulator);
    assert_eq!(before["tickets"].len(), 5);
    assert!(archived(&before).is_empty());
    let gone = [ticket_id(&before, "T-00001"), ticket_id(&before, "T-00003")];

    let (sync, r) = run_reported(&emulator, &dir, &["--prune"]).await;
    assert_eq!(sync.code, 0, "{sync:?}");
    let after = contents(&emulator);
    // Exactly those two are archived; every other document is as it was.
    let mut expected = gone.to_vec();
    expected.sort();
    assert_eq!(archived(&after), expected, "{sync:?}");
    for kind in ["sessions", "tickets", "messages"] {
        assert_eq!(
            after[kind].keys().collect::<Vec<_>>(),
            before[kind].keys().collect::<Vec<_>>(),
            "{kind}: nothing created or deleted"
        );
        for (id, doc) in &before[kind] {
            if !gone.contains(id) {
                assert_eq!(&after[kind][id], doc, "{kind} {id}");
            }
        }
    }
    assert_eq!(r["prune"]["mode"], "archive");
    assert_eq!(pruned(&r, "tickets"), [2, 2, 0, 0, 0, 0], "{r}");
    // Archiving leaves the messages, and says so; no contact is gone.
    assert_eq!(pruned(&r, "messages"), [4, 0, 0, 0, 0, 4], "{r}");
    assert_eq!(pruned(&r, "users"), [0, 0, 0, 0, 0, 0], "{r}");
    assert_eq!(r["prune"]["requests"], 2, "one PUT per ticket: {r}");
    assert!(
        sync.stderr
            .contains("tickets   2 tickets gone: 2 archived, 0 deleted, 0 already gone, 0 left"),
        "{sync:?}"
    );
    assert!(
        sync.stderr
            .contains("messages  4 messages gone: 0 archived, 0 deleted, 0 already gone, 4 left"),
        "{sync:?}"
    );

    // verify: the archived tickets are pruned, not a problem; nothing else is wrong.
    let verified = run(&emulator, dir.path(), &["verify"]).await;
    assert_eq!(verified.code, 0, "{verified:?}");
    assert!(
        verified.stdout.contains(
            "tickets: 2 tickets gone from the source and archived in Gleap (run --prune): pruned, not a problem"
        ),
        "{verified:?}"
    );
    let json = run(&emulator, dir.path(), &["verify", "--json"]).await;
    let v: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    let tickets = v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stream"] == "tickets")
        .unwrap();
    assert_eq!(
        (&tickets["pruned"], &tickets["gone_from_source"]),
        (&json!(2), &json!(0))
    );
    // status counts them too.
    let status = run(&emulator, dir.path(), &["status", "--json"]).await;
    let status: Value = serde_json::from_str(&status.stdout).unwrap();
    let archived_counts: Vec<(&Value, &Value)> = status["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (&s["name"], &s["id_map"]["archived"]))
        .collect();
    assert_eq!(
        archived_counts,
        [
            (&json!("users"), &json!(0)),
            (&json!("tickets"), &json!(2)),
            (&json!("messages"), &json!(0))
        ],
        "{status:#}"
    );

    // The next night: the same source, no request for the archived tickets.
    let plain_cost = {
        let at = requests(&emulator);
        let plain = run(&emulator, dir.path(), &["run", "--no-progress"]).await;
        assert_eq!(plain.code, 0, "{plain:?}");
        requests(&emulator) - at
    };
    let at = requests(&emulator);
    let (again, r) = run_reported(&emulator, &dir, &["--prune"]).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(
        requests(&emulator) - at,
        plain_cost,
        "a pruning run costs what a plain one does: {again:?}"
    );
    assert_eq!(pruned(&r, "tickets"), [2, 0, 0, 0, 2, 0], "{r}");
    assert_eq!(r["prune"]["requests"], 0, "{r}");
    assert_eq!(contents(&emulator), after);

    // T-00001 comes back in the source: the next run un-archives it (and only it).
    std::fs::write(data.join("tickets.csv"), &tickets_csv).unwrap();
    remove_rows(&data.join("tickets.csv"), &["T-00003"]);
    let (back, r) = run_reported(&emulator, &dir, &["--prune"]).await;
    assert_eq!(back.code, 0, "{back:?}");
    let now = contents(&emulator);
    assert_eq!(archived(&now), vec![gone[1].clone()], "{back:?}");
    let tickets = r["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "tickets")
        .unwrap();
    assert_eq!(tickets["sink"]["detail"]["unarchived"], 1, "{r}");
    assert_eq!(pruned(&r, "tickets"), [1, 0, 0, 0, 1, 0], "{r}");
    // And stays so: the run after sends nothing for it.
    let at = requests(&emulator);
    let quiet = run(&emulator, dir.path(), &["run", "--no-progress", "--prune"]).await;
    assert_eq!(quiet.code, 0, "{quiet:?}");
    assert_eq!(requests(&emulator) - at, plain_cost, "{quiet:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_stopped_by_max_errors_or_sigterm_prunes_nothing() {
    // SIGTERM to the run when the emulator carries out request number `at`.
    let pid = Arc::new(AtomicU32::new(0));
    let at = Arc::new(AtomicU64::new(u64::MAX));
    let hook: gleap_etl::emulator::api::RequestHook = {
        let (pid, at) = (pid.clone(), at.clone());
        Arc::new(move |n| {
            if n == at.load(Ordering::SeqCst) {
                let _ = Command::new("kill")
                    .args(["-TERM", &pid.load(Ordering::SeqCst).to_string()])
                    .status();
            }
        })
    };
    let emulator = start(Some(hook)).await;
    let dir = Dir::new();
    let data = dir.join("data");
    migrated_then_two_tickets_removed(&emulator, &dir).await;
    let before = contents(&emulator);

    // A ticket Gleap would refuse, with --max-errors 0: the run stops, nothing is pruned.
    let mut tickets = std::fs::read_to_string(data.join("tickets.csv")).unwrap();
    tickets.push_str("T-00099,cust-00000,Bad one,OPEN,URGENT,BUG,a,2024-01-01T00:00:00Z\n");
    std::fs::write(data.join("tickets.csv"), &tickets).unwrap();
    let (stopped, r) = run_reported(&emulator, &dir, &["--prune", "--max-errors", "0"]).await;
    assert_eq!(stopped.code, 2, "{stopped:?}");
    assert!(
        stopped.stderr.contains(
            "prune (archive): nothing pruned: more than 0 records went to the dead-letter file (--max-errors)"
        ),
        "{stopped:?}"
    );
    assert_eq!(r["prune"]["streams"], json!([]), "{r}");
    assert!(
        r["prune"]["not_pruned"][0]
            .as_str()
            .unwrap()
            .contains("--max-errors"),
        "{r}"
    );
    assert_eq!(contents(&emulator), before);
    remove_rows(&data.join("tickets.csv"), &["T-00099"]);

    // SIGTERM at the run's first request: interrupted, nothing pruned.
    at.store(requests(&emulator) + 1, Ordering::SeqCst);
    let status = run_with_pid(
        command(
            &emulator,
            dir.path(),
            &["run", "--no-progress", "--prune", "--report", "report.json"],
        ),
        pid.clone(),
    )
    .await;
    at.store(u64::MAX, Ordering::SeqCst);
    assert_eq!(status.code(), Some(2), "{status:?}");
    let r = report(&dir);
    assert_eq!(r["prune"]["streams"], json!([]), "{r}");
    assert!(
        r["prune"]["not_pruned"][0]
            .as_str()
            .unwrap()
            .contains("interrupted"),
        "{r}"
    );
    assert!(archived(&contents(&emulator)).is_empty());

    // The next full run prunes them.
    let full = run(&emulator, dir.path(), &["run", "--no-progress", "--prune"]).await;
    assert_eq!(full.code, 0, "{full:?}");
    let after = contents(&emulator);
    let mut expected = vec![ticket_id(&after, "T-00001"), ticket_id(&after, "T-00003")];
    expected.sort();
    assert_eq!(archived(&after), expected, "{full:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_delete_deletes_the_tickets_and_their_messages() {
    let emulator = start(None).await;
    let dir = Dir::new();
    migrated_then_two_tickets_removed(&emulator, &dir).await;
    let before = contents(&emulator);
    let gone_tickets = [ticket_id(&before, "T-00001"), ticket_id(&before, "T-00003")];
    let gone_messages: Vec<String> = gone_tickets
        .iter()
        .flat_map(|t| messages_of(&before, t))
        .collect();
    assert_eq!(gone_messages.len(), 4);

    let (sync, r) = run_reported(&emulator, &dir, &["--prune=delete"]).await;
    assert_eq!(sync.code, 0, "{sync:?}");
    let after = contents(&emulator);
    let mut expected = before.clone();
    for id in &gone_tickets {
        expected.get_mut("tickets").unwrap().remove(id);
    }
    for id in &gone_messages {
        expected.get_mut("messages").unwrap().remove(id);
    }
    assert_eq!(after, expected, "{sync:?}");
    assert_eq!(r["prune"]["mode"], "delete");
    assert_eq!(pruned(&r, "messages"), [4, 0, 4, 0, 0, 0], "{r}");
    assert_eq!(pruned(&r, "tickets"), [2, 0, 2, 0, 0, 0], "{r}");
    // Deleted records are forgotten: the next run has nothing to prune.
    let (again, r) = run_reported(&emulator, &dir, &["--prune=delete"]).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(pruned(&r, "tickets"), [0; 6]);
    assert_eq!(contents(&emulator), after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_sessions_deletes_a_created_session_never_an_adopted_one() {
    let emulator = start(None).await;
    let api = Api::new(&emulator);
    // A contact that was in Gleap before the migration: the run adopts it.
    let (status, existing) = api
        .post(
            "/sessions",
            json!({"userId": "cust-00003", "name": "Before the migration"}),
        )
        .await;
    assert_eq!(status, 200, "{existing}");
    let existing = existing["_id"]
        .as_str()
        .or(existing["id"].as_str())
        .unwrap()
        .to_string();
    let dir = Dir::new();
    let data = dir.join("data");
    // 10 contacts, 3 tickets (of cust-00000, cust-00007, cust-00004).
    write_helpdesk(&data, 10, 3, 2);
    let first = run(&emulator, dir.path(), &["run", "--no-progress"]).await;
    assert_eq!(first.code, 0, "{first:?}");
    let before = contents(&emulator);
    assert_eq!(before["sessions"].len(), 10);
    let created: Vec<String> = before["sessions"]
        .iter()
        .filter(|(_, d)| d["userId"] == "cust-00005")
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(created.len(), 1);

    // Three contacts are deleted in the helpdesk; one of them (cust-00000) still has a
    // ticket in the source.
    remove_rows(
        &data.join("users.csv"),
        &["cust-00003", "cust-00005", "cust-00000"],
    );
    let refused = run(
        &emulator,
        dir.path(),
        &["run", "--no-progress", "--prune-sessions"],
    )
    .await;
    assert_eq!(
        refused.code, 2,
        "--prune-sessions needs --prune: {refused:?}"
    );
    assert!(refused.stderr.contains("--prune"), "{refused:?}");

    // Without --prune-sessions, contacts are left.
    let (sync, r) = run_reported(&emulator, &dir, &["--prune"]).await;
    assert_eq!(sync.code, 0, "{sync:?}");
    assert_eq!(pruned(&r, "users"), [3, 0, 0, 0, 0, 3]);
    assert_eq!(contents(&emulator), before);

    let (sync, r) = run_reported(&emulator, &dir, &["--prune", "--prune-sessions"]).await;
    assert_eq!(sync.code, 0, "{sync:?}");
    let after = contents(&emulator);
    let mut expected = before.clone();
    expected.get_mut("sessions").unwrap().remove(&created[0]);
    assert_eq!(after, expected, "{sync:?}");
    assert!(
        after["sessions"].contains_key(&existing),
        "the adopted one stays"
    );
    // Gone: three; deleted: the one the pipeline created that nothing refers to; left: the
    // adopted one, and the one a ticket in the source still belongs to.
    assert_eq!(pruned(&r, "users"), [3, 0, 1, 0, 0, 2]);
    let users = r["prune"]["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stream"] == "users")
        .unwrap();
    assert_eq!(users["in_use"], 1, "{users}");
    assert!(
        sync.stderr
            .contains("1 still referred to by records in the source"),
        "{sync:?}"
    );
}
