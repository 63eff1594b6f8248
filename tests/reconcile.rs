//! A lost state store: the re-run stops before creating anything, `reconcile` rebuilds the id
//! map from Gleap, and the next run creates nothing (sessions, tickets, messages counted in
//! the emulator); the conversations read as before, `verify` passes.

use std::path::Path;
use std::process::Command;

use gleap_etl::emulator::{Emulator, EmulatorConfig, Quirks};
use serde_json::Value;

use crate::util::{Dir, Run, output, repo, shipped_command, unlimited};

const KEY: &str = "sk-live-TEST-reconcile-42ab";
const PROJECT: &str = "65a0000000000000000000ab";

/// `gleap-etl COMMAND <repo>/pipelines/PIPELINE ARGS..` on the samples in `samples`, its
/// state in `state`, against `emulator`.
fn gleap(
    emulator: &Emulator,
    (pipeline, dir_var, samples): (&str, &str, &str),
    state: &Path,
    args: &[&str],
) -> Command {
    let mut cmd = shipped_command(args[0], pipeline, emulator, KEY, PROJECT);
    cmd.args(&args[1..])
        .env(dir_var, repo().join("samples").join(samples))
        .env("STATE_DIR", state);
    cmd
}

/// Sessions, tickets and messages the emulator holds, and each ticket's thread (by import
/// marker: the texts of its messages in Gleap's order).
type Threads = Vec<(String, Vec<String>)>;

fn holdings(emulator: &Emulator) -> ((usize, usize, usize), Threads) {
    let dump = emulator.dump();
    let n = |kind: &str| dump[kind].as_array().map_or(0, Vec::len);
    let id = |v: &Value| {
        v.get("id")
            .or(v.get("_id"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let mut threads: Threads = dump["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let tid = id(t);
            let texts = dump["messages"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["ticket"].as_str() == Some(tid.as_str()))
                .map(|m| m["data"]["content"].to_string())
                .collect();
            (t["customData"]["importId"].to_string(), texts)
        })
        .collect();
    threads.sort();
    ((n("sessions"), n("tickets"), n("messages")), threads)
}

/// The Gleap sink's counts of every stream in a run report.
fn sink_counts(report: &Path) -> Vec<(String, u64, u64, u64)> {
    let report: Value = serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    report["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let d = &s["sink"]["detail"];
            let n = |k: &str| d[k].as_u64().unwrap_or(0);
            (
                s["name"].as_str().unwrap().to_string(),
                n("created"),
                n("recreated"),
                n("unchanged"),
            )
        })
        .collect()
}

async fn lost_state_is_noticed_and_reconciled(samples: (&str, &str, &str), quirks: Quirks) {
    let emulator = Emulator::start(EmulatorConfig {
        quirks: quirks.clone(),
        ..unlimited(KEY, PROJECT)
    })
    .await
    .unwrap();
    let dir = Dir::new();
    let state = dir.join("state");
    let report = dir.join("report.json");
    let report_arg = report.to_str().unwrap();
    let run = |state: &Path| {
        gleap(
            &emulator,
            samples,
            state,
            &["run", "--no-progress", "--report", report_arg],
        )
    };

    let first = output(run(&state)).await;
    assert_eq!(first.code, 0, "{first:?}");
    let (counts, threads) = holdings(&emulator);
    assert!(counts.1 > 5 && counts.2 > counts.1, "{counts:?}");

    // The laptop is lost: the same import with an empty state dir stops before creating.
    std::fs::remove_dir_all(&state).unwrap();
    let again = output(run(&state)).await;
    assert_ne!(again.code, 0, "{again:?}");
    assert!(
        again.stderr.contains("gleap-etl reconcile"),
        "the error says what to do: {again:?}"
    );
    assert_eq!(holdings(&emulator), (counts, threads.clone()), "{again:?}");

    // `reconcile` rebuilds the map: every record matched, nothing ambiguous.
    let before = emulator.stats()["total_requests"].as_u64().unwrap();
    let out: Run = output(gleap(&emulator, samples, &state, &["reconcile", "--json"])).await;
    assert_eq!(out.code, 0, "{out:?}");
    let sent = emulator.stats()["total_requests"].as_u64().unwrap() - before;
    let rebuilt: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(rebuilt["requests"], sent);
    // Announced for pages of 1000 and filters applied; a project without costs more.
    if quirks == Quirks::default() {
        assert!(
            sent <= rebuilt["estimate"].as_u64().unwrap(),
            "{sent} requests, more than announced: {out:?}"
        );
    }
    assert!(
        out.stderr.contains("about "),
        "the cost comes first: {out:?}"
    );
    let mut found = 0;
    for s in rebuilt["streams"].as_array().unwrap() {
        let n = |k: &str| s[k].as_u64().unwrap();
        assert_eq!(
            (n("not_in_gleap"), n("ambiguous"), n("gone_from_source")),
            (0, 0, 0),
            "{s}"
        );
        assert_eq!(
            n("matched") + n("matched_changed") + n("already_mapped"),
            n("in_source"),
            "{s}"
        );
        found += n("matched") + n("matched_changed") + n("already_mapped");
    }
    assert_eq!(found as usize, counts.0 + counts.1 + counts.2, "{out:?}");
    assert_eq!(holdings(&emulator), (counts, threads.clone()));

    // The next run creates nothing, and Gleap reads as before.
    let next = output(run(&state)).await;
    assert_eq!(next.code, 0, "{next:?}");
    for (stream, created, recreated, _) in sink_counts(&report) {
        assert_eq!((created, recreated), (0, 0), "{stream}: {next:?}");
    }
    assert_eq!(holdings(&emulator), (counts, threads));
    let verify = output(gleap(&emulator, samples, &state, &["verify"])).await;
    assert_eq!(verify.code, 0, "{verify:?}");

    // `undo` reaches what reconcile mapped: the tickets and messages carry this pipeline's
    // marker and go; who made the contacts is not known, so they stay.
    let undo = output(gleap(
        &emulator,
        samples,
        &state,
        &["undo", "--all", "--yes"],
    ))
    .await;
    assert_eq!(undo.code, 0, "{undo:?}");
    assert_eq!(holdings(&emulator).0, (counts.0, 0, 0), "{undo:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intercom_lost_state_is_noticed_and_reconciled() {
    lost_state_is_noticed_and_reconciled(
        ("intercom_to_gleap.yaml", "INTERCOM_DIR", "intercom"),
        Quirks::default(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zendesk_lost_state_is_noticed_and_reconciled() {
    lost_state_is_noticed_and_reconciled(
        ("zendesk_to_gleap.yaml", "ZENDESK_DIR", "zendesk"),
        Quirks::default(),
    )
    .await;
}

/// A project that answers pages of 25 (Gleap's default is 20) and ignores the import-marker and ticket filters: the
/// lost state is still noticed (this stream's markers among the tickets answered), and
/// `reconcile` pages through everything and keeps each ticket's own messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_state_is_noticed_and_reconciled_where_gleap_ignores_filters() {
    lost_state_is_noticed_and_reconciled(
        ("intercom_to_gleap.yaml", "INTERCOM_DIR", "intercom"),
        Quirks {
            page_cap: Some(25),
            ignore_filters: vec!["customData.importId".into(), "ticket".into()],
            ..Default::default()
        },
    )
    .await;
}
