//! `run --sample N`: on the Zendesk and Intercom samples, `--sample 20` picks the longest
//! thread, the ticket with the most attachments, one with a note, one with non-ASCII text
//! and one with a message nobody is named as the author of (each checked against what the
//! whole dump, migrated into another emulator, holds in Gleap: not against the selection's
//! own code); the emulator then holds exactly the sampled tickets with their threads in
//! order, `verify` passes and says it checked the sample, and `undo --all` leaves the
//! emulator as it was. A smaller sample leaves the other tickets out, and a full run after it
//! (never resuming a sample run's checkpoint) writes them and nothing twice. Bad uses of
//! `--sample` fail clearly.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use gleap_etl::emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};

use crate::util::{Api, Dir, Run, contents, counts, output, pipeline_command, repo, report_stream};

const KEY: &str = "sk-live-TEST-sample-5e2a";
const PROJECT: &str = "65a0000000000000000000a5";

/// A shipped pipeline and its sample dump.
struct Dump {
    pipeline: &'static str,
    dir_var: &'static str,
    samples: &'static str,
    /// The stream that writes tickets, and the one that writes sessions.
    tickets: &'static str,
    sessions: &'static str,
}

const ZENDESK: Dump = Dump {
    pipeline: "zendesk_to_gleap.yaml",
    dir_var: "ZENDESK_DIR",
    samples: "samples/zendesk",
    tickets: "tickets",
    sessions: "users",
};

const INTERCOM: Dump = Dump {
    pipeline: "intercom_to_gleap.yaml",
    dir_var: "INTERCOM_DIR",
    samples: "samples/intercom",
    tickets: "conversations",
    sessions: "contacts",
};

async fn emulator() -> Emulator {
    Emulator::start(EmulatorConfig {
        api_key: Some(KEY.into()),
        project: Some(PROJECT.into()),
        quota: None,
        ..Default::default()
    })
    .await
    .unwrap()
}

fn command(dump: &Dump, emulator: &Emulator, dir: &Path, args: &[&str]) -> Command {
    let mut cmd = pipeline_command(dump.pipeline, &emulator.base_url(), KEY, PROJECT, dir, args);
    cmd.env(dump.dir_var, repo().join(dump.samples));
    cmd
}

async fn run(dump: &Dump, emulator: &Emulator, dir: &Path, args: &[&str]) -> Run {
    output(command(dump, emulator, dir, args)).await
}

/// What a ticket holds in Gleap.
#[derive(Debug, Default, Clone, PartialEq)]
struct Held {
    /// Its messages' texts, in Gleap's order.
    texts: Vec<String>,
    /// Files of its messages (attachments and images in their documents).
    files: usize,
    notes: usize,
    /// Some text of the ticket or its messages is not ASCII.
    non_ascii: bool,
    /// The ticket, or one of its messages, names nobody: no session, no team member, no
    /// e-mail of whoever wrote it.
    nameless: bool,
}

/// The text of a TipTap document (or a string).
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(o) => o
            .get("text")
            .map(text)
            .into_iter()
            .chain(o.get("content").map(text))
            .collect(),
        Value::Array(a) => a.iter().map(text).collect::<Vec<_>>().join(" "),
        _ => String::new(),
    }
}

/// The tickets `stream` made in the emulator (by `customData.importId`), by source id.
fn held(emulator: &Emulator, stream: &str) -> BTreeMap<String, Held> {
    let dump = emulator.dump();
    let prefix = format!("{stream}:");
    let mut source_of = BTreeMap::new();
    let mut out = BTreeMap::new();
    for t in dump["tickets"].as_array().unwrap() {
        let Some(id) = t["customData"]["importId"]
            .as_str()
            .and_then(|i| i.strip_prefix(&prefix))
        else {
            continue;
        };
        let gleap_id = t["_id"].as_str().or(t["id"].as_str()).unwrap().to_string();
        source_of.insert(gleap_id, id.to_string());
        out.insert(
            id.to_string(),
            Held {
                non_ascii: !t.to_string().is_ascii(),
                nameless: t["session"].is_null() && t["processingUser"].is_null(),
                ..Default::default()
            },
        );
    }
    for m in dump["messages"].as_array().unwrap() {
        let Some(id) = m["ticket"].as_str().and_then(|t| source_of.get(t)) else {
            continue;
        };
        let h = out.get_mut(id).unwrap();
        h.texts.push(text(&m["comment"]));
        h.files += m["attachments"].as_array().map_or(0, Vec::len)
            + m["comment"]
                .to_string()
                .matches(r#""type":"image""#)
                .count();
        h.notes += usize::from(m["isNote"] == true);
        h.non_ascii |= !m.to_string().is_ascii();
        h.nameless |= m["session"].is_null()
            && m["user"].is_null()
            && m["fallbackUser"]["email"]
                .as_str()
                .is_none_or(|e| e.is_empty());
    }
    out
}

/// The whole dump, migrated into an emulator of its own: what each ticket holds in Gleap,
/// and the number of sessions.
async fn migrated_whole(dump: &Dump) -> (BTreeMap<String, Held>, usize) {
    let emulator = emulator().await;
    let dir = Dir::new();
    let full = run(dump, &emulator, dir.path(), &["run", "--no-progress"]).await;
    assert_eq!(full.code, 0, "{full:?}");
    let sessions = emulator.dump()["sessions"].as_array().unwrap().len();
    (held(&emulator, dump.tickets), sessions)
}

/// `run --sample N --seed S --report`: the run and its report.
async fn sample_run(
    dump: &Dump,
    emulator: &Emulator,
    dir: &Dir,
    n: &str,
    seed: &str,
) -> (Run, Value) {
    let report = dir.join("sample-report.json");
    let args = [
        "run",
        "--no-progress",
        "--sample",
        n,
        "--seed",
        seed,
        "--report",
        report.to_str().unwrap(),
    ];
    let sampled = run(dump, emulator, dir.path(), &args).await;
    assert_eq!(sampled.code, 0, "{sampled:?}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    (sampled, report)
}

/// `verify`: its exit code, and its first line: `sample` (the sample of a run), or not about
/// a sample.
async fn verify(
    dump: &Dump,
    emulator: &Emulator,
    dir: &Dir,
    code: i32,
    sample: Option<&str>,
) -> Run {
    let verified = run(dump, emulator, dir.path(), &["verify"]).await;
    assert_eq!(verified.code, code, "{verified:?}");
    let first = verified.stdout.lines().next().unwrap_or_default();
    match sample {
        Some(line) => assert!(first.starts_with(line), "{verified:?}"),
        None => assert!(!first.contains("sample"), "{verified:?}"),
    }
    verified
}

/// The picks of a sample run's report: (ticket, its reasons joined).
fn picks(report: &Value) -> Vec<(String, String)> {
    report["sample"]["picks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let reasons: Vec<&str> = p["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap())
                .collect();
            (
                p["ticket"].as_str().unwrap().to_string(),
                reasons.join("; "),
            )
        })
        .collect()
}

async fn sample_of_20(dump: &Dump) {
    let (all, _) = migrated_whole(dump).await;
    assert!(all.len() > 5, "{}: {} tickets", dump.samples, all.len());

    // A project that holds records of its own before the trial.
    let emulator = emulator().await;
    let api = Api::new(&emulator);
    let (status, session) = api
        .post("/sessions", json!({"userId": "before-the-trial"}))
        .await;
    assert_eq!(status, 200, "{session}");
    let (status, ticket) = api
        .post(
            "/tickets",
            json!({"title": "Already there", "session": session["_id"], "type": "INQUIRY"}),
        )
        .await;
    assert_eq!(status, 200, "{ticket}");
    let before = contents(&emulator);
    assert_eq!(counts(&before), vec![0, 1, 1]);

    let dir = Dir::new();
    let (sampled, report) = sample_run(dump, &emulator, &dir, "20", "14").await;
    let picks = picks(&report);
    // The samples are smaller than 20 tickets: every one is picked, each once.
    assert_eq!(picks.len(), all.len(), "{picks:?}");
    let mut ids: Vec<&String> = picks.iter().map(|(t, _)| t).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), picks.len(), "{picks:?}");
    assert_eq!(report["sample"]["seed"], 14);
    // The selection is shown before the run's summary.
    let table = sampled
        .stderr
        .find("sample: ")
        .expect("the selection table");
    let summary = sampled.stderr.find("finished in").expect("the summary");
    assert!(table < summary, "{sampled:?}");

    // The hard cases, each with its reason, each truly the hardest of the dump.
    let picked_for = |label: &str| -> &Held {
        let (ticket, _) = picks
            .iter()
            .find(|(_, why)| why.contains(label))
            .unwrap_or_else(|| panic!("{}: no pick for {label:?}: {picks:?}", dump.samples));
        &all[ticket]
    };
    let longest = all.values().map(|h| h.texts.len()).max().unwrap();
    assert_eq!(picked_for("longest thread").texts.len(), longest);
    let most = all.values().map(|h| h.files).max().unwrap();
    assert!(most > 0);
    assert_eq!(picked_for("most attachments").files, most);
    assert!(picked_for("note").notes > 0);
    assert!(picked_for("non-ASCII").non_ascii);
    assert!(picked_for("missing author").nameless);
    assert!(
        picks.iter().filter(|(_, why)| why == "random").count() > 0,
        "{picks:?}"
    );

    // Gleap holds exactly the sampled tickets, each with its whole thread in order.
    let got = held(&emulator, dump.tickets);
    let mut got_ids: Vec<&String> = got.keys().collect();
    got_ids.sort();
    assert_eq!(got_ids, ids);
    for (id, h) in &got {
        assert_eq!(h.texts, all[id].texts, "the thread of ticket {id}");
    }
    let sessions = emulator.dump()["sessions"].as_array().unwrap().len() - 1;
    assert_eq!(report["sample"]["streams"][dump.sessions], sessions);

    // verify checks the sample, and it all arrived.
    let sample = format!("verifying the sample of run 1: {} tickets", picks.len());
    let verified = verify(dump, &emulator, &dir, 0, Some(&sample)).await;
    assert!(verified.stdout.contains("all arrived and equal"));

    // undo --all: the emulator is as it was before the trial.
    let undone = run(dump, &emulator, dir.path(), &["undo", "--all", "--yes"]).await;
    assert_eq!(undone.code, 0, "{undone:?}");
    assert_eq!(contents(&emulator), before);
    // And verify no longer expects the sample: the whole source is missing.
    verify(dump, &emulator, &dir, 1, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zendesk_sample_of_20_has_the_hard_tickets_verifies_and_undoes() {
    sample_of_20(&ZENDESK).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intercom_sample_of_20_has_the_hard_tickets_verifies_and_undoes() {
    sample_of_20(&INTERCOM).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_sample_leaves_the_rest_out_and_a_full_run_then_writes_it_once() {
    let (all, all_sessions) = migrated_whole(&ZENDESK).await;
    let emulator = emulator().await;
    let dir = Dir::new();
    let (sampled, report) = sample_run(&ZENDESK, &emulator, &dir, "4", "7").await;
    let picks = picks(&report);
    assert_eq!(picks.len(), 4, "{picks:?}");
    let got = held(&emulator, ZENDESK.tickets);
    let mut want: Vec<&String> = picks.iter().map(|(t, _)| t).collect();
    want.sort();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want,
        "only the sampled tickets"
    );
    for (id, h) in &got {
        assert_eq!(h.texts, all[id].texts, "the thread of ticket {id}");
    }
    // The others are left out and counted as such, not as filtered or dead-lettered.
    let tickets = report_stream(&report, "tickets");
    assert_eq!(tickets["written"], 4);
    assert_eq!(tickets["outside_sample"], all.len() - 4);
    assert_eq!(tickets["dead_lettered"], 0);
    assert_eq!(report["dead_lettered"], 0);
    assert!(
        sampled
            .stderr
            .contains(&format!("{} outside the sample", all.len() - 4)),
        "{sampled:?}"
    );
    let sample = "verifying the sample of run 1: 4 tickets";
    verify(&ZENDESK, &emulator, &dir, 0, Some(sample)).await;
    // `status` says a sample is in Gleap, and how much of each stream.
    let status = |dir: &Dir| -> Value {
        let out = dir.run_in_repo(&[
            "status",
            "pipelines/zendesk_to_gleap.yaml",
            "--json",
            "--state-dir",
            dir.join("state").to_str().unwrap(),
        ]);
        assert_eq!(out.code, 0, "{out:?}");
        serde_json::from_str(&out.stdout).unwrap()
    };
    let during = status(&dir);
    assert_eq!(during["sample_run"], 1, "{during:#}");
    let tickets_status = during["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "tickets")
        .unwrap();
    assert_eq!(tickets_status["sample"], 4, "{during:#}");
    assert_eq!(tickets_status["id_map"]["mapped"], 4, "{during:#}");
    assert_eq!(
        tickets_status["progress"]["state"], "complete",
        "{during:#}"
    );

    full_run_writes_the_rest(&emulator, &dir, &all, all_sessions).await;
    let after = status(&dir);
    assert!(after.get("sample_run").is_none(), "{after:#}");
}

/// The full run after a sample writes the rest of the Zendesk dump: then Gleap holds what a
/// straight full run gives (threads in order, nothing twice), and verify checks everything.
async fn full_run_writes_the_rest(
    emulator: &Emulator,
    dir: &Dir,
    all: &BTreeMap<String, Held>,
    all_sessions: usize,
) -> Run {
    let full = run(&ZENDESK, emulator, dir.path(), &["run", "--no-progress"]).await;
    assert_eq!(full.code, 0, "{full:?}");
    assert_eq!(&held(emulator, ZENDESK.tickets), all);
    assert_eq!(
        emulator.dump()["sessions"].as_array().unwrap().len(),
        all_sessions
    );
    assert_eq!(emulator.stats()["messages_out_of_order"], 0);
    verify(&ZENDESK, emulator, dir, 0, None).await;
    full
}

/// A sample run that did not finish leaves an unfinished checkpoint (here: a finished one
/// marked unfinished in the state store, as a kill after the last confirmation leaves it);
/// the full run after it must not resume from it, or it would skip every record the sample
/// left out before that point.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_run_never_resumes_a_sample_runs_checkpoint() {
    let (all, all_sessions) = migrated_whole(&ZENDESK).await;
    let emulator = emulator().await;
    let dir = Dir::new();
    sample_run(&ZENDESK, &emulator, &dir, "4", "7").await;
    let state = rusqlite::Connection::open(dir.join("state/state.sqlite")).unwrap();
    let unfinished = state
        .execute(
            "UPDATE checkpoints SET complete = 0 WHERE done_through IS NOT NULL",
            [],
        )
        .unwrap();
    assert_eq!(unfinished, 3, "users, tickets and comments");
    drop(state);
    let status = dir.run_in_repo(&[
        "status",
        "pipelines/zendesk_to_gleap.yaml",
        "--state-dir",
        dir.join("state").to_str().unwrap(),
    ]);
    assert!(
        status.stdout.contains("comments: interrupted: records 1-"),
        "{status:?}"
    );
    let full = full_run_writes_the_rest(&emulator, &dir, &all, all_sessions).await;
    assert!(!full.stderr.contains("resumed"), "{full:?}");
}

/// Streams that do not write Gleap sessions, tickets or messages do not run in a sample run,
/// and the report says so; the sessions written are those the sampled tickets and messages
/// name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sample_run_runs_only_the_gleap_streams() {
    let emulator = emulator().await;
    let dir = Dir::new();
    crate::util::write_helpdesk(&dir.join("data"), 8, 6, 4);
    let mut yaml = std::fs::read_to_string(repo().join("pipelines/csv-to-gleap.yaml")).unwrap();
    yaml.push_str(concat!(
        "\n  - name: archive\n",
        "    source:\n      csv: { path: \"${DATA_DIR}/tickets.csv\" }\n",
        "    sink:\n      jsonl: { path: out/tickets.jsonl }\n",
    ));
    dir.write("pipeline.yaml", yaml);
    let report = dir.join("report.json");
    let mut cmd = dir.cmd(&[
        "run",
        "pipeline.yaml",
        "--no-progress",
        "--sample",
        "2",
        "--report",
        report.to_str().unwrap(),
    ]);
    cmd.env("GLEAP_BASE_URL", emulator.base_url())
        .env("GLEAP_API_KEY", KEY)
        .env("GLEAP_PROJECT_ID", PROJECT)
        .env("DATA_DIR", dir.join("data"))
        .env("STATE_DIR", dir.join("state"));
    let sampled = output(cmd).await;
    assert_eq!(sampled.code, 0, "{sampled:?}");
    assert!(
        sampled.stderr.contains(
            "archive   not run: a sample run writes only Gleap sessions, tickets and messages"
        ),
        "{sampled:?}"
    );
    assert!(!dir.join("out/tickets.jsonl").exists());
    let report: Value = serde_json::from_str(&dir.read("report.json")).unwrap();
    let stream = |name: &str| report_stream(&report, name);
    assert_eq!(stream("archive")["status"], "not_in_sample");
    assert_eq!(stream("tickets")["written"], 2);
    assert_eq!(stream("messages")["written"], 8);
    let sessions = emulator.dump()["sessions"].as_array().unwrap().len();
    assert_eq!(report["sample"]["streams"]["users"], sessions);
    assert_eq!(stream("users")["written"], sessions);
    assert_eq!(stream("users")["outside_sample"], 8 - sessions);
    // The contacts of both tickets (write_helpdesk: ticket i's is user 7i mod 8).
    let ticket_users: std::collections::BTreeSet<String> = emulator.dump()["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["session"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ticket_users.len(), sessions);
}

#[test]
fn bad_uses_of_sample_fail_clearly() {
    let dir = Dir::new();
    let zero = dir.run_in_repo(&["run", "pipelines/zendesk_to_gleap.yaml", "--sample", "0"]);
    assert_eq!(zero.code, 2, "{zero:?}");
    assert!(
        zero.stderr
            .contains("--sample 0: give the number of tickets to migrate as a trial"),
        "{zero:?}"
    );
    let no_tickets = dir.run_in_repo(&["run", "pipelines/users-to-parquet.yaml", "--sample", "3"]);
    assert_eq!(no_tickets.code, 2, "{no_tickets:?}");
    assert!(
        no_tickets
            .stderr
            .contains("has no stream that writes tickets to Gleap"),
        "{no_tickets:?}"
    );
    assert!(!dir.join("out").exists(), "nothing was written");
    let seed_alone = dir.run_in_repo(&["run", "pipelines/zendesk_to_gleap.yaml", "--seed", "3"]);
    assert_eq!(seed_alone.code, 2, "{seed_alone:?}");
    assert!(seed_alone.stderr.contains("--sample"), "{seed_alone:?}");
    // A sample run reads only its sample: it cannot tell what is gone from the source.
    let pruned = dir.run_in_repo(&[
        "run",
        "pipelines/zendesk_to_gleap.yaml",
        "--sample",
        "3",
        "--prune",
        "--emulator",
    ]);
    assert_eq!(pruned.code, 2, "{pruned:?}");
    assert!(
        pruned
            .stderr
            .contains("a --sample run reads only its sample"),
        "{pruned:?}"
    );
    assert!(
        !dir.join("state/emulator.json").exists(),
        "refused before anything ran: {pruned:?}"
    );
}
