//! `undo`: after a run with three SIGKILLs in between, `undo --all --yes` leaves the
//! emulator's sessions, tickets and messages exactly as they were before the run (ids and
//! documents), and a session that existed before and was only updated stays, listed as
//! "updated, not reverted"; an undo killed mid-way finishes when run again; `--run ID`
//! removes only that run's creations; without a terminal and without --yes it refuses.

use std::path::Path;
use std::process::Command;

use gleap_etl::emulator::{Emulator, EmulatorConfig};
use serde_json::json;

use crate::util::{
    Api, Dir, Killer, Run, contents, counts, output, requests, unlimited, write_helpdesk,
};

const KEY: &str = "sk-live-TEST-undo-41e7";
const PROJECT: &str = "65a0000000000000000000ee";

fn command(emulator: &Emulator, dir: &Path, args: &[&str]) -> Command {
    crate::util::csv_to_gleap(&emulator.base_url(), KEY, PROJECT, dir, args)
}

async fn start(killer: &Killer) -> Emulator {
    Emulator::start(EmulatorConfig {
        on_request: Some(killer.hook()),
        ..unlimited(KEY, PROJECT)
    })
    .await
    .unwrap()
}

async fn run(emulator: &Emulator, dir: &Path, args: &[&str]) -> Run {
    output(command(emulator, dir, args)).await
}

/// Records that were in the project before the migration: a contact of the source (the
/// run finds it by userId and updates it), another session and a ticket of its own.
async fn existing_records(emulator: &Emulator) -> String {
    let api = Api::new(emulator);
    let (status, known) = api
        .post(
            "/sessions",
            json!({"userId": "cust-00003", "name": "Before the migration"}),
        )
        .await;
    assert_eq!(status, 200, "{known}");
    let (status, other) = api
        .post(
            "/sessions",
            json!({"userId": "someone-else", "name": "Not in the source"}),
        )
        .await;
    assert_eq!(status, 200, "{other}");
    let other_id = other["_id"].as_str().or(other["id"].as_str()).unwrap();
    let (status, ticket) = api
        .post(
            "/tickets",
            json!({"title": "Already there", "session": other_id, "type": "INQUIRY"}),
        )
        .await;
    assert_eq!(status, 200, "{ticket}");
    known["_id"]
        .as_str()
        .or(known["id"].as_str())
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_after_three_kills_leaves_the_emulator_as_it_was() {
    let killer = Killer::new();
    let emulator = start(&killer).await;
    let dir = Dir::new();
    write_helpdesk(&dir.join("data"), 20, 10, 3);
    let known = existing_records(&emulator).await;
    let before = contents(&emulator);
    assert_eq!(counts(&before), vec![0, 2, 1]);

    // Three runs killed with SIGKILL part-way, each resumed by the next; then one to the end.
    for at in [9, 17, 23] {
        let done = requests(&emulator);
        killer
            .run_until_killed(
                command(&emulator, dir.path(), &["run", "--no-progress"]),
                done + at,
            )
            .await;
    }
    let last = run(&emulator, dir.path(), &["run", "--no-progress"]).await;
    assert_eq!(last.code, 0, "{last:?}");
    let migrated = contents(&emulator);
    // 19 contacts created, one updated; 10 tickets of 3 comments; nothing twice.
    assert_eq!(counts(&migrated), vec![30, 21, 11], "{last:?}");
    assert_eq!(
        migrated["sessions"][&known]["name"], "User 3 Ünïcode",
        "the run updated the contact that was there"
    );

    // Without a terminal and without --yes: refused, nothing deleted.
    let refused = run(&emulator, dir.path(), &["undo", "--all"]).await;
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains("add --yes"), "{refused:?}");
    assert!(
        refused.stderr.contains("users: delete 19 sessions")
            && refused.stderr.contains("tickets: delete 10 tickets")
            && refused.stderr.contains("messages: delete 30 messages"),
        "the counts come first: {refused:?}"
    );
    assert_eq!(contents(&emulator), migrated);

    let undo = run(&emulator, dir.path(), &["undo", "--all", "--yes"]).await;
    assert_eq!(undo.code, 0, "{undo:?}");
    assert!(
        undo.stderr.contains(&format!(
            "1 session updated, not reverted: cust-00003 (Gleap {known})"
        )),
        "{undo:?}"
    );
    assert!(
        undo.stdout.contains("users: 19 sessions deleted"),
        "{undo:?}"
    );
    assert!(
        undo.stdout.contains("tickets: 10 tickets deleted"),
        "{undo:?}"
    );
    assert!(
        undo.stdout.contains("messages: 30 messages deleted"),
        "{undo:?}"
    );
    let after = contents(&emulator);
    // Exactly as before: the same ids of every kind, the records of others untouched; the
    // contact that was there stays (updated by the run, not reverted).
    assert_eq!(counts(&after), counts(&before));
    for kind in ["sessions", "tickets", "messages"] {
        assert_eq!(
            after[kind].keys().collect::<Vec<_>>(),
            before[kind].keys().collect::<Vec<_>>(),
            "{kind}"
        );
    }
    for (id, doc) in &before["sessions"] {
        if id != &known {
            assert_eq!(&after["sessions"][id], doc);
        }
    }
    assert_eq!(after["tickets"], before["tickets"]);

    // A second undo finds nothing more of ours to delete; a run afterwards migrates again.
    let again = run(&emulator, dir.path(), &["undo", "--all", "--yes"]).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stderr.contains("nothing to delete"), "{again:?}");
    assert_eq!(contents(&emulator), after);
    let rerun = run(&emulator, dir.path(), &["run", "--no-progress"]).await;
    assert_eq!(rerun.code, 0, "{rerun:?}");
    assert_eq!(counts(&contents(&emulator)), vec![30, 21, 11], "{rerun:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undo_killed_mid_way_finishes_when_run_again() {
    let killer = Killer::new();
    let emulator = start(&killer).await;
    let dir = Dir::new();
    write_helpdesk(&dir.join("data"), 8, 6, 3);
    let before = contents(&emulator);
    let first = run(&emulator, dir.path(), &["run", "--no-progress"]).await;
    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(counts(&contents(&emulator)), vec![18, 8, 6]);

    // Killed after its 12th delete: 12 of the 18 messages are gone.
    let done = requests(&emulator);
    killer
        .run_until_killed(
            command(&emulator, dir.path(), &["undo", "--all", "--yes"]),
            done + 12,
        )
        .await;
    let halfway = contents(&emulator);
    assert_eq!(counts(&halfway), vec![6, 8, 6], "killed part-way");

    let undo = run(&emulator, dir.path(), &["undo", "--all", "--yes"]).await;
    assert_eq!(undo.code, 0, "{undo:?}");
    // The delete the kill interrupted may have gone through (a 404 now: already gone).
    assert!(
        undo.stderr.contains("messages: delete 6 messages")
            || undo.stderr.contains("messages: delete 7 messages"),
        "{undo:?}"
    );
    assert_eq!(contents(&emulator), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_of_one_run_removes_only_what_it_created() {
    let killer = Killer::new();
    let emulator = start(&killer).await;
    let dir = Dir::new();
    write_helpdesk(&dir.join("data"), 8, 6, 3);
    let first = run(&emulator, dir.path(), &["run", "--no-progress"]).await;
    assert_eq!(first.code, 0, "{first:?}");
    let after_first = contents(&emulator);
    assert_eq!(counts(&after_first), vec![18, 8, 6]);

    // The export grew: two tickets more, with their comments (M-000019 .. M-000024).
    write_helpdesk(&dir.join("data"), 8, 8, 3);
    let second = run(&emulator, dir.path(), &["run", "--no-progress"]).await;
    assert_eq!(second.code, 0, "{second:?}");
    assert_eq!(counts(&contents(&emulator)), vec![24, 8, 8]);

    let missing = run(&emulator, dir.path(), &["undo", "--run", "7", "--yes"]).await;
    assert_eq!(missing.code, 2, "{missing:?}");
    assert!(missing.stderr.contains("no run 7"), "{missing:?}");

    let undo = run(&emulator, dir.path(), &["undo", "--run", "2", "--yes"]).await;
    assert_eq!(undo.code, 0, "{undo:?}");
    assert!(
        undo.stderr.contains("undo csv-to-gleap (run 2)")
            && undo.stderr.contains("users: delete 0 sessions")
            && undo.stderr.contains("tickets: delete 2 tickets")
            && undo.stderr.contains("messages: delete 6 messages"),
        "{undo:?}"
    );
    assert_eq!(contents(&emulator), after_first);

    // The next run creates them again (the tickets stream reads its input from the start).
    let rerun = run(&emulator, dir.path(), &["run", "--no-progress"]).await;
    assert_eq!(rerun.code, 0, "{rerun:?}");
    assert_eq!(counts(&contents(&emulator)), vec![24, 8, 8], "{rerun:?}");
}
