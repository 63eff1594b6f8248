//! The Gleap sink against the emulator: faults, a tight quota, SIGKILLs, request budgets and
//! the API key kept out of everything.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use gleap_etl::emulator::{Emulator, EmulatorConfig, FaultConfig, Quota};
use serde_json::Value;

use crate::util::{Dir, Killer, Run, repo, write_helpdesk};

const KEY: &str = "sk-live-TEST-4f9c2e7a1b3d";
const PROJECT: &str = "65a0000000000000000000cc";

fn emulator_config(quota: Option<Quota>, faults: FaultConfig) -> EmulatorConfig {
    EmulatorConfig {
        api_key: Some(KEY.into()),
        project: Some(PROJECT.into()),
        quota,
        faults,
        ..Default::default()
    }
}

/// An emulator answering `error`/`reset`/`lost` shares of requests with faults and admitting
/// `per_second` requests a second.
async fn faulty_emulator(
    error: f64,
    reset: f64,
    lost: f64,
    seed: u64,
    per_second: u32,
) -> Emulator {
    let faults = FaultConfig {
        error_rate: error,
        reset_rate: reset,
        lost_rate: lost,
        seed,
        ..Default::default()
    };
    let quota = Quota {
        requests: per_second,
        window: Duration::from_secs(1),
    };
    Emulator::start(emulator_config(Some(quota), faults))
        .await
        .unwrap()
}

/// `gleap-etl run pipelines/csv-to-gleap.yaml` on `data`, against `emulator`.
fn command(
    emulator: &Emulator,
    data: &Path,
    state: &Path,
    requests_per_minute: u32,
    extra: &[&str],
) -> Command {
    command_for(
        &repo().join("pipelines/csv-to-gleap.yaml"),
        emulator,
        data,
        state,
        requests_per_minute,
        extra,
    )
}

fn command_for(
    pipeline: &Path,
    emulator: &Emulator,
    data: &Path,
    state: &Path,
    requests_per_minute: u32,
    extra: &[&str],
) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gleap-etl"));
    cmd.args(["run", pipeline.to_str().unwrap(), "--no-progress"])
        .args(extra)
        .current_dir(data)
        .env("GLEAP_BASE_URL", emulator.base_url())
        .env("GLEAP_API_KEY", KEY)
        .env("GLEAP_PROJECT_ID", PROJECT)
        .env("GLEAP_REQUESTS_PER_MINUTE", requests_per_minute.to_string())
        .env("DATA_DIR", data)
        .env("STATE_DIR", state)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs a command to its end without blocking the emulator's runtime.
async fn run(mut cmd: Command) -> Run {
    tokio::task::spawn_blocking(move || Run::from(cmd.output().expect("gleap-etl runs")))
        .await
        .unwrap()
}

/// Everything the helpdesk data should have become, checked in the emulator's data.
fn assert_migrated(dump: &Value, users: usize, tickets: usize, per_ticket: usize) {
    let sessions = dump["sessions"].as_array().unwrap();
    let all_tickets = dump["tickets"].as_array().unwrap();
    let messages = dump["messages"].as_array().unwrap();
    assert_eq!(
        (sessions.len(), all_tickets.len(), messages.len()),
        (users, tickets, tickets * per_ticket),
        "sessions, tickets, messages"
    );
    let mut user_of_session = HashMap::new();
    let mut seen = HashSet::new();
    for s in sessions {
        let user_id = s["userId"].as_str().unwrap().to_string();
        assert!(seen.insert(user_id.clone()), "userId {user_id} twice");
        user_of_session.insert(s["_id"].as_str().unwrap().to_string(), user_id);
    }
    let mut ticket_no = HashMap::new();
    for t in all_tickets {
        let import_id = t["customData"]["importId"].as_str().unwrap();
        let i: usize = import_id
            .strip_prefix("tickets:T-")
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            ticket_no
                .insert(t["_id"].as_str().unwrap().to_string(), i)
                .is_none()
        );
        let owner = &user_of_session[t["session"].as_str().unwrap()];
        assert_eq!(
            *owner,
            format!("cust-{:05}", (i * 7) % users),
            "ticket {i}'s session"
        );
    }
    assert_eq!(ticket_no.len(), tickets, "one ticket per importId");
    let mut comments = HashSet::new();
    for m in messages {
        let comment = m["comment"].as_str().unwrap();
        assert!(
            comments.insert(comment.to_string()),
            "comment {comment:?} twice"
        );
        let (_, rest) = comment.split_once(": comment ").unwrap();
        let (j, i) = rest.split_once(" on ticket ").unwrap();
        let (j, i): (usize, usize) = (j.parse().unwrap(), i.parse().unwrap());
        assert_eq!(
            ticket_no[m["ticket"].as_str().unwrap()],
            i,
            "{comment:?} is on its ticket"
        );
        match (i + j) % 4 {
            0 => {
                let session = m["session"]
                    .as_str()
                    .expect("a customer message has a session");
                assert_eq!(
                    user_of_session[session],
                    format!("cust-{:05}", (i * 7) % users),
                    "{comment:?} by its customer"
                );
                assert_eq!(m["isNote"], false);
            }
            3 => {
                assert!(m["session"].is_null(), "{comment:?} is an agent's");
                assert_eq!(m["isNote"], true, "{comment:?} is a note");
            }
            _ => {
                assert!(m["session"].is_null(), "{comment:?} is an agent's");
                assert_eq!(m["isNote"], false);
            }
        }
        assert_eq!(m["sendToChannel"], false, "{comment:?} must not notify");
    }
}

/// 5% server errors, 2% resets, 1% lost answers and a quota the client has to keep to:
/// exactly 2,000 sessions, 2,000 tickets and 6,000 messages, each where it belongs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_and_a_tight_quota_lose_and_duplicate_nothing() {
    let emulator = faulty_emulator(0.05, 0.02, 0.01, 2024, 600).await;
    let dir = Dir::new();
    write_helpdesk(&dir.join("data"), 2000, 2000, 3);
    let report = dir.join("report.json");
    let run = run(command(
        &emulator,
        &dir.join("data"),
        &dir.join("state"),
        36_000,
        &["--report", report.to_str().unwrap()],
    ))
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_migrated(&emulator.dump(), 2000, 2000, 3);

    let stats = emulator.stats();
    assert_eq!(
        stats["customer_notifications"], 0,
        "no request asked Gleap to notify a customer"
    );
    assert!(stats["faults"]["errors"].as_u64().unwrap() > 100, "{stats}");
    assert!(
        stats["faults"]["lost_responses"].as_u64().unwrap() > 10,
        "{stats}"
    );
    assert_eq!(stats["sessions_sharing_a_user_id"]["user_ids"], 0);
    let report: Value = serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    let detail = &report["streams"][2]["sink"]["detail"];
    assert_eq!(detail["created"], 6000, "{detail}");
    assert!(detail["retries"].as_u64().unwrap() > 0, "{detail}");
}

/// Killed with SIGKILL at five random moments (each right after the emulator carried out a
/// request, before the client heard back) and run again each time: the same exact result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_sigkills_and_reruns_end_with_exact_counts() {
    let killer = Killer::new();
    let mut config = emulator_config(
        None,
        FaultConfig {
            lost_rate: 0.01,
            seed: 5,
            ..Default::default()
        },
    );
    config.on_request = Some(killer.hook());
    let emulator = Emulator::start(config).await.unwrap();
    let dir = Dir::new();
    write_helpdesk(&dir.join("data"), 150, 150, 3);
    let mut rng = fastrand::Rng::with_seed(77);
    let handled = || emulator.stats()["total_requests"].as_u64().unwrap();
    for _ in 0..5 {
        let at = handled() + rng.u64(20..180);
        let cmd = command(
            &emulator,
            &dir.join("data"),
            &dir.join("state"),
            600_000,
            &[],
        );
        killer.run_until_killed(cmd, at).await;
    }
    let last = run(command(
        &emulator,
        &dir.join("data"),
        &dir.join("state"),
        600_000,
        &[],
    ))
    .await;
    assert_eq!(last.code, 0, "{last:?}");
    assert_migrated(&emulator.dump(), 150, 150, 3);
    assert_eq!(
        emulator.stats()["sessions_sharing_a_user_id"]["user_ids"],
        0
    );
}

/// With prefetch the first run costs at most 1.05 requests per record; a second run over the
/// same input at most one per hundred.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_per_record_first_run_and_unchanged_rerun() {
    let emulator = Emulator::start(emulator_config(None, FaultConfig::default()))
        .await
        .unwrap();
    let dir = Dir::new();
    write_helpdesk(&dir.join("data"), 1000, 800, 3);
    let records = 1000 + 800 + 2400;
    let first = run(command(
        &emulator,
        &dir.join("data"),
        &dir.join("state"),
        600_000,
        &[],
    ))
    .await;
    assert_eq!(first.code, 0, "{first:?}");
    let after_first = emulator.stats()["total_requests"].as_u64().unwrap();
    assert!(
        after_first as f64 <= 1.05 * records as f64,
        "{after_first} requests for {records} records"
    );

    let second = run(command(
        &emulator,
        &dir.join("data"),
        &dir.join("state"),
        600_000,
        &[],
    ))
    .await;
    assert_eq!(second.code, 0, "{second:?}");
    let rerun = emulator.stats()["total_requests"].as_u64().unwrap() - after_first;
    assert!(
        rerun * 100 <= records,
        "{rerun} requests for {records} unchanged records"
    );
    assert!(second.stderr.contains("1,000 unchanged"), "{second:?}");

    // One contact changed: one more request for it (an update), nothing else.
    let users = std::fs::read_to_string(dir.join("data/users.csv"))
        .unwrap()
        .replace("User 3 Ünïcode", "User 3 Renamed");
    std::fs::write(dir.join("data/users.csv"), users).unwrap();
    let before = emulator.stats()["total_requests"].as_u64().unwrap();
    let third = run(command(
        &emulator,
        &dir.join("data"),
        &dir.join("state"),
        600_000,
        &[],
    ))
    .await;
    assert_eq!(third.code, 0, "{third:?}");
    assert!(third.stderr.contains("1 updated"), "{third:?}");
    let third_requests = emulator.stats()["total_requests"].as_u64().unwrap() - before;
    assert!(
        third_requests <= 3,
        "two prefetch pages (1000 sessions fill the first) and one update: {third_requests}"
    );
    let renamed = emulator.dump()["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["userId"] == "cust-00003")
        .unwrap()
        .clone();
    assert_eq!(renamed["name"], "User 3 Renamed");
}

/// A misspelt field, a ticket whose contact is missing: dead letters with reasons, nothing
/// sent for them, exit 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_and_missing_parents_go_to_the_dead_letter_file() {
    let emulator = Emulator::start(emulator_config(None, FaultConfig::default()))
        .await
        .unwrap();
    let dir = Dir::new();
    let data = dir.join("data");
    write_helpdesk(&data, 10, 5, 1);
    let tickets = std::fs::read_to_string(data.join("tickets.csv")).unwrap();
    std::fs::write(
        data.join("tickets.csv"),
        tickets + "T-99999,cust-nobody,Orphan,OPEN,LOW,BUG,x,2024-01-01T00:00:00Z\n",
    )
    .unwrap();
    let pipeline = dir.write(
        "typo.yaml",
        format!(
            "version: 1\nname: typo\nstreams:\n  - name: users\n    source: {{ csv: {{ path: {} }} }}\n    transforms:\n      - rename: {{ user_id: userId, email: emial }}\n    sink: {{ gleap: {{ entity: sessions }} }}\n",
            data.join("users.csv").display()
        ),
    );
    let typo_state = dir.join("typo-state");
    let cmd = command_for(
        &pipeline,
        &emulator,
        &data,
        &typo_state,
        600_000,
        &["--state-dir", typo_state.to_str().unwrap()],
    );
    let typo = run(cmd).await;
    assert_eq!(typo.code, 1, "{typo:?}");
    assert_eq!(
        emulator.stats()["entities"]["sessions"],
        0,
        "nothing was sent"
    );
    let dead = crate::util::json_lines(
        &std::fs::read_to_string(dir.join("typo-state/dead-letter.jsonl")).unwrap(),
    );
    assert_eq!(dead.len(), 10);
    assert!(
        dead[0]["reason"]
            .as_str()
            .unwrap()
            .contains("`emial` (did you mean `email`?)"),
        "{}",
        dead[0]
    );

    let real = run(command(&emulator, &data, &dir.join("state"), 600_000, &[])).await;
    assert_eq!(real.code, 1, "{real:?}");
    let dead = crate::util::json_lines(
        &std::fs::read_to_string(dir.join("state/dead-letter.jsonl")).unwrap(),
    );
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["stream"], "tickets");
    assert!(
        dead[0]["reason"]
            .as_str()
            .unwrap()
            .contains("\"cust-nobody\" of stream `users`"),
        "{}",
        dead[0]
    );
    assert_eq!(emulator.stats()["entities"]["tickets"], 5);
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The API key appears in no output, error, report, dead letter or state file, even with
/// faults, failures and verbose logging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_key_appears_nowhere() {
    let emulator = faulty_emulator(0.1, 0.05, 0.05, 9, 50).await;
    let dir = Dir::new();
    let data = dir.join("data");
    write_helpdesk(&data, 30, 30, 1);
    let tickets = std::fs::read_to_string(data.join("tickets.csv")).unwrap();
    std::fs::write(
        data.join("tickets.csv"),
        tickets + "T-99999,cust-nobody,Orphan,OPEN,LOW,BUG,x,2024-01-01T00:00:00Z\n",
    )
    .unwrap();
    let report = dir.join("state/report.json");
    let runs = [
        run(command(
            &emulator,
            &data,
            &dir.join("state"),
            6000,
            &["-vv", "--report", report.to_str().unwrap()],
        ))
        .await,
        {
            let mut status = Command::new(env!("CARGO_BIN_EXE_gleap-etl"));
            status
                .args([
                    "status",
                    repo().join("pipelines/csv-to-gleap.yaml").to_str().unwrap(),
                ])
                .env("STATE_DIR", dir.join("state"));
            run(status).await
        },
    ];
    let mut wrong_key = command(&emulator, &data, &dir.join("state2"), 6000, &[]);
    wrong_key.env("GLEAP_API_KEY", format!("{KEY}-wrong"));
    let wrong = run(wrong_key).await;
    assert_eq!(runs[0].code, 1, "{:?}", runs[0]);
    assert_ne!(wrong.code, 0, "{wrong:?}");
    for r in runs.iter().chain([&wrong]) {
        assert!(
            !r.stdout.contains(KEY) && !r.stderr.contains(KEY),
            "the key leaked: {r:?}"
        );
    }
    let files = files_under(dir.path());
    assert!(
        files.iter().any(|f| f.ends_with("state.sqlite")),
        "{files:?}"
    );
    assert!(
        files.iter().any(|f| f.ends_with("dead-letter.jsonl")),
        "{files:?}"
    );
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()),
            "the key is in {}",
            f.display()
        );
    }
}
