//! Golden outputs of every shipped pipeline that writes files or Gleap records, on the
//! samples: what a user gets, kept in `tests/golden/` so that a change of the data plane
//! (issue 15: Arrow batches between stages) is shown to change none of it. CSV and dead-letter
//! files byte for byte; Parquet row for row (with its schema); what reaches Gleap as the
//! emulator holds it, with its generated ids named by what they are (`tickets:1007`, the
//! userId) and the fields only the emulator makes up (times, bug numbers) left out.
//!
//! `GLEAP_ETL_BLESS=1 cargo test --test integration golden` writes them anew; the diff is
//! then reviewed like any other.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use gleap_etl::emulator::Emulator;
use serde_json::Value;

use crate::util::{Dir, output, read_parquet, repo, shipped_command, unlimited};

const KEY: &str = "sk-live-TEST-golden-5e5e";
const PROJECT: &str = "65a000000000000000000060";

fn golden_dir() -> PathBuf {
    repo().join("tests/golden")
}

/// Compares `actual` with `tests/golden/NAME` (or writes it, with `GLEAP_ETL_BLESS`).
fn check(name: &str, actual: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("GLEAP_ETL_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (GLEAP_ETL_BLESS=1 cargo test --test integration golden writes it)",
            path.display()
        )
    });
    if expected == actual {
        return;
    }
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let at = (0..e.len().max(a.len()))
        .find(|&i| e.get(i) != a.get(i))
        .unwrap_or(0);
    panic!(
        "{} differs from this run at line {}:\n  golden: {}\n  now:    {}\n({} lines golden, {} now; GLEAP_ETL_BLESS=1 writes what this run gives)",
        path.display(),
        at + 1,
        e.get(at).unwrap_or(&"(end)"),
        a.get(at).unwrap_or(&"(end)"),
        e.len(),
        a.len()
    );
}

/// A file the run wrote, as text.
fn text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A Parquet file as its schema then one JSON row a line.
fn parquet_rows(path: &Path) -> String {
    let (schema, rows) = read_parquet(path);
    let mut out = String::new();
    for f in schema.fields() {
        out.push_str(&format!(
            "# {}: {}{}\n",
            f.name(),
            f.data_type(),
            if f.is_nullable() { "" } else { " not null" }
        ));
    }
    for row in rows {
        out.push_str(&serde_json::to_string(&row).unwrap());
        out.push('\n');
    }
    out
}

/// `gleap-etl run pipelines/PIPELINE` in the repository, outputs in `dir`.
fn run_file_pipeline(dir: &Dir, pipeline: &str, code: i32) {
    let mut cmd = dir.cmd(&[
        "run",
        &format!("pipelines/{pipeline}"),
        "--no-progress",
        "--state-dir",
        dir.join("state").to_str().unwrap(),
    ]);
    cmd.current_dir(repo()).env("OUT_DIR", dir.join("out"));
    let run = crate::util::Run::from(cmd.output().unwrap());
    assert_eq!(run.code, code, "{pipeline}: {run:?}");
}

#[test]
fn events_to_csv_writes_what_it_wrote_before() {
    let dir = Dir::new();
    run_file_pipeline(&dir, "events-to-csv.yaml", 1);
    check(
        "events-to-csv/events.csv",
        &text(&dir.join("out/events.csv")),
    );
    check(
        "events-to-csv/dead-letter.jsonl",
        &text(&dir.join("state/dead-letter.jsonl")),
    );
}

#[test]
fn users_to_parquet_writes_what_it_wrote_before() {
    let dir = Dir::new();
    run_file_pipeline(&dir, "users-to-parquet.yaml", 1);
    check(
        "users-to-parquet/users.parquet.jsonl",
        &parquet_rows(&dir.join("out/users.parquet")),
    );
    check(
        "users-to-parquet/dead-letter.jsonl",
        &text(&dir.join("state/dead-letter.jsonl")),
    );
}

/// Fields the emulator makes up (times, sequence numbers) or keeps for itself.
const MADE_UP: [&str; 8] = [
    "createdAt",
    "updatedAt",
    "lastActivity",
    "archivedAt",
    "bugId",
    "docId",
    "_id",
    "index",
];

/// The emulator's holdings with every generated id replaced by a name that says what the
/// record is, in an order that does not depend on which request went first: sessions by
/// userId, tickets by import marker, messages by ticket and then in the ticket's order,
/// help-centre objects by externalId.
fn normalized_dump(emulator: &Emulator) -> String {
    let mut dump = emulator.dump();
    let id = |d: &Value| {
        d.get("id")
            .or(d.get("_id"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        v => v.to_string(),
    };
    let mut names: HashMap<String, String> = HashMap::new();
    let mut sections: Vec<(String, Vec<Value>)> = Vec::new();
    let take = |dump: &mut Value, pointer: &str| -> Vec<Value> {
        dump.pointer_mut(pointer)
            .and_then(|v| v.as_array_mut())
            .map(std::mem::take)
            .unwrap_or_default()
    };
    let mut team = take(&mut dump, "/team");
    team.sort_by_key(|m| text(&m["email"]));
    for m in &team {
        if let Some(i) = id(m) {
            names.insert(i, format!("member {}", text(&m["email"])));
        }
    }
    let mut sessions = take(&mut dump, "/sessions");
    sessions.sort_by_key(|s| (text(&s["userId"]), text(&s["email"])));
    for s in &sessions {
        if let Some(i) = id(s) {
            names.insert(
                i,
                format!("session {}", text(&s["userId"]) + &text(&s["email"])),
            );
        }
    }
    let mut tickets = take(&mut dump, "/tickets");
    tickets.sort_by_key(|t| text(&t["customData"]["importId"]));
    for t in &tickets {
        if let Some(i) = id(t) {
            names.insert(i, format!("ticket {}", text(&t["customData"]["importId"])));
        }
    }
    // Messages: grouped by ticket, each group in the emulator's order (creation order, the
    // order agents read them).
    let messages = take(&mut dump, "/messages");
    let mut by_ticket: Vec<(String, Vec<Value>)> = Vec::new();
    for m in messages {
        let ticket = names
            .get(&text(&m["ticket"]))
            .cloned()
            .unwrap_or_else(|| text(&m["ticket"]));
        match by_ticket.iter_mut().find(|(t, _)| *t == ticket) {
            Some((_, ms)) => ms.push(m),
            None => by_ticket.push((ticket, vec![m])),
        }
    }
    by_ticket.sort_by(|a, b| a.0.cmp(&b.0));
    let mut ordered = Vec::new();
    for (ticket, ms) in by_ticket {
        for (n, m) in ms.into_iter().enumerate() {
            if let Some(i) = id(&m) {
                names.insert(i, format!("message {} of {ticket}", n + 1));
            }
            ordered.push(m);
        }
    }
    let mut collections = take(&mut dump, "/helpcenter/collections");
    collections.sort_by_key(|c| text(&c["externalId"]));
    for c in &collections {
        if let Some(i) = id(c) {
            names.insert(i, format!("collection {}", text(&c["externalId"])));
        }
    }
    let mut articles = take(&mut dump, "/helpcenter/articles");
    articles.sort_by_key(|a| text(&a["externalId"]));
    for a in &articles {
        if let Some(i) = id(a) {
            names.insert(i, format!("article {}", text(&a["externalId"])));
        }
    }
    sections.push(("team".into(), team));
    sections.push(("sessions".into(), sessions));
    sections.push(("tickets".into(), tickets));
    sections.push(("messages".into(), ordered));
    sections.push(("collections".into(), collections));
    sections.push(("articles".into(), articles));

    fn rename(v: &mut Value, names: &HashMap<String, String>) {
        match v {
            Value::String(s) => {
                if let Some(n) = names.get(s.as_str()) {
                    *s = n.clone();
                } else {
                    // Ids inside text: links to articles, `/tickets/<id>`.
                    for (id, n) in names {
                        if s.contains(id.as_str()) {
                            *s = s.replace(id.as_str(), &format!("<{n}>"));
                        }
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| rename(i, names)),
            Value::Object(map) => {
                for k in MADE_UP {
                    map.remove(k);
                }
                // Keys in one order: Gleap keeps no order of fields.
                let mut entries: Vec<(String, Value)> = std::mem::take(map).into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                for (k, mut v) in entries {
                    rename(&mut v, names);
                    map.insert(k, v);
                }
            }
            _ => {}
        }
    }
    let mut out = String::new();
    for (name, mut docs) in sections {
        if docs.is_empty() {
            continue;
        }
        out.push_str(&format!("# {name}: {}\n", docs.len()));
        for d in &mut docs {
            rename(d, &names);
            out.push_str(&serde_json::to_string(d).unwrap());
            out.push('\n');
        }
    }
    out
}

/// A shipped Gleap pipeline on its samples into a fresh emulator: what Gleap holds, and the
/// dead-letter file.
async fn gleap_pipeline(pipeline: &str, dir_var: &str, samples: &str, code: i32) {
    let emulator = Emulator::start(unlimited(KEY, PROJECT)).await.unwrap();
    let dir = Dir::new();
    let mut cmd = shipped_command("run", pipeline, &emulator, KEY, PROJECT);
    cmd.arg("--no-progress")
        .env(dir_var, repo().join("samples").join(samples))
        .env("STATE_DIR", dir.join("state"));
    let run = output(cmd).await;
    assert_eq!(run.code, code, "{pipeline}: {run:?}");
    let name = pipeline.trim_end_matches(".yaml");
    check(&format!("{name}/gleap.jsonl"), &normalized_dump(&emulator));
    let dead_letters = dir.join("state/dead-letter.jsonl");
    let dead_letters = if dead_letters.exists() {
        text(&dead_letters)
    } else {
        String::new()
    };
    check(&format!("{name}/dead-letter.jsonl"), &dead_letters);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_to_gleap_sends_what_it_sent_before() {
    gleap_pipeline("csv-to-gleap.yaml", "DATA_DIR", "helpdesk", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zendesk_to_gleap_sends_what_it_sent_before() {
    gleap_pipeline("zendesk_to_gleap.yaml", "ZENDESK_DIR", "zendesk", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intercom_to_gleap_sends_what_it_sent_before() {
    gleap_pipeline("intercom_to_gleap.yaml", "INTERCOM_DIR", "intercom", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zendesk_guide_to_gleap_sends_what_it_sent_before() {
    gleap_pipeline("zendesk_guide_to_gleap.yaml", "ZENDESK_DIR", "zendesk", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intercom_articles_to_gleap_sends_what_it_sent_before() {
    gleap_pipeline(
        "intercom_articles_to_gleap.yaml",
        "INTERCOM_DIR",
        "intercom",
        0,
    )
    .await;
}
