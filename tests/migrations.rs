//! The shipped Zendesk and Intercom pipelines on the shipped sample dumps, against the
//! emulator: every contact, ticket and comment arrives once, on the right ticket, with the
//! right author and note flag, in the right place in its thread, and nothing notifies a
//! customer; also with 5% server errors, 2% resets and 1% lost answers, and killed three
//! times and run again. The expectations are read from the raw sample files here,
//! independently of the sources under test.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;

use gleap_etl::emulator::{Emulator, EmulatorConfig, FaultConfig};
use gleap_etl::state::StateStore;
use serde_json::Value;

use crate::util::{Dir, Killer, Run, output, read_text, repo, shipped_pipeline};

const KEY: &str = "migration-key";
const PROJECT: &str = "65a0000000000000000000ee";

/// How hard the emulator makes it.
#[derive(Clone, Copy)]
enum Trial {
    Clean,
    /// 5% server errors, 2% resets, 1% lost answers.
    Faults,
    /// The same, and killed with SIGKILL three times (after a seeded number of requests) and
    /// run again each time before the run that finishes.
    FaultsAndKills,
}

async fn migrate(
    pipeline: &str,
    dir_var: &str,
    samples: &str,
    state: &Path,
    trial: Trial,
) -> (Emulator, Run) {
    let killer = Killer::new();
    let faults = match trial {
        Trial::Clean => FaultConfig::default(),
        Trial::Faults | Trial::FaultsAndKills => FaultConfig {
            error_rate: 0.05,
            reset_rate: 0.02,
            lost_rate: 0.01,
            seed: 11,
            ..Default::default()
        },
    };
    let emulator = Emulator::start(EmulatorConfig {
        api_key: Some(KEY.into()),
        project: Some(PROJECT.into()),
        quota: None,
        faults,
        on_request: Some(killer.hook()),
        ..Default::default()
    })
    .await
    .unwrap();
    if let Trial::FaultsAndKills = trial {
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..3 {
            let done = emulator.stats()["total_requests"].as_u64().unwrap();
            let cmd = command(pipeline, dir_var, samples, state, &emulator);
            killer.run_until_killed(cmd, done + rng.u64(3..40)).await;
        }
    }
    let run = output(command(pipeline, dir_var, samples, state, &emulator)).await;
    (emulator, run)
}

fn command(
    pipeline: &str,
    dir_var: &str,
    samples: &str,
    state: &Path,
    emulator: &Emulator,
) -> Command {
    let mut cmd = shipped_pipeline(pipeline, &[], emulator, KEY, PROJECT);
    cmd.env(dir_var, repo().join("samples").join(samples))
        .env("STATE_DIR", state);
    cmd
}

/// Every JSON document of a sample file (a whole-file document, or one per line; `.gz` too).
fn documents(path: &Path) -> Vec<Value> {
    let text = read_text(path);
    match serde_json::from_str::<Value>(&text) {
        Ok(v) => vec![v],
        Err(_) => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
    }
}

fn files(dir: &Path, prefix: &str) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with(prefix))
        .collect();
    out.sort();
    out
}

fn id_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Gleap ids of the migration's entities, by their source ids (the state store's id map) and
/// by Gleap id (the emulator's data).
struct Migrated {
    maps: HashMap<String, HashMap<String, String>>,
    docs: HashMap<String, Value>,
    dump: Value,
}

impl Migrated {
    fn new(emulator: &Emulator, state: &Path, streams: &[&str]) -> Migrated {
        let store = StateStore::open(state).unwrap();
        let maps = streams
            .iter()
            .map(|s| {
                (
                    s.to_string(),
                    store
                        .load_map(s)
                        .unwrap()
                        .into_iter()
                        .map(|(k, e)| (k, e.gleap_id))
                        .collect(),
                )
            })
            .collect();
        let dump = emulator.dump();
        let mut docs = HashMap::new();
        for kind in ["sessions", "tickets", "messages"] {
            for d in dump[kind].as_array().unwrap() {
                docs.insert(d["_id"].as_str().unwrap().to_string(), d.clone());
            }
        }
        Migrated { maps, docs, dump }
    }

    /// The Gleap document a source record of `stream` became.
    fn doc(&self, stream: &str, source_id: &str) -> &Value {
        let id = self.maps[stream]
            .get(source_id)
            .unwrap_or_else(|| panic!("{stream} {source_id} was not migrated"));
        &self.docs[id]
    }

    fn gleap_id(&self, stream: &str, source_id: &str) -> &str {
        &self.maps[stream][source_id]
    }

    fn count(&self, kind: &str) -> usize {
        self.dump[kind].as_array().unwrap().len()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_zendesk_samples_arrive_entity_by_entity() {
    zendesk_samples(Trial::Clean).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_zendesk_samples_arrive_in_thread_order_through_faults() {
    zendesk_samples(Trial::Faults).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_zendesk_samples_arrive_in_thread_order_through_faults_and_three_kills() {
    zendesk_samples(Trial::FaultsAndKills).await;
}

/// The messages of each ticket in the order Gleap holds them (the order an agent reads),
/// as the source ids of `stream`.
fn threads(m: &Migrated, stream: &str) -> HashMap<String, Vec<String>> {
    let source_of: HashMap<&str, &str> = m.maps[stream]
        .iter()
        .map(|(source, gleap)| (gleap.as_str(), source.as_str()))
        .collect();
    let mut threads: HashMap<String, Vec<String>> = HashMap::new();
    for message in m.dump["messages"].as_array().unwrap() {
        let source = source_of[message["_id"].as_str().unwrap()];
        threads
            .entry(message["ticket"].as_str().unwrap().to_string())
            .or_default()
            .push(source.to_string());
    }
    threads
}

/// What every trial ends with, besides the counts: nothing created out of thread order (the
/// emulator's count), no contact twice, no customer notified.
fn assert_clean_stats(emulator: &Emulator) {
    let stats = emulator.stats();
    assert_eq!(stats["messages_out_of_order"], 0, "{stats}");
    assert_eq!(
        stats["sessions_sharing_a_user_id"]["user_ids"], 0,
        "{stats}"
    );
    assert_eq!(
        stats["customer_notifications"], 0,
        "no request asked Gleap to notify a customer"
    );
}

async fn zendesk_samples(trial: Trial) {
    let dir = Dir::new();
    let state = dir.join("state");
    let (emulator, run) = migrate(
        "zendesk_to_gleap.yaml",
        "ZENDESK_DIR",
        "zendesk",
        &state,
        trial,
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!run.stderr.contains("panicked"), "{run:?}");
    assert_clean_stats(&emulator);
    let samples = repo().join("samples/zendesk");

    // Users: end-users become sessions keyed by external_id, else the id.
    let mut roles = HashMap::new();
    let mut emails = HashMap::new();
    let mut keys = HashMap::new();
    let mut end_users = Vec::new();
    for f in files(&samples, "users") {
        for doc in documents(&f) {
            let users = doc
                .get("users")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_else(|| vec![doc.clone()]);
            for u in users {
                let id = id_text(&u["id"]);
                let key = match u["external_id"].as_str() {
                    Some(e) if !e.is_empty() => e.to_string(),
                    _ => id.clone(),
                };
                roles.insert(id.clone(), u["role"].as_str().unwrap().to_string());
                emails.insert(id.clone(), u["email"].as_str().map(str::to_string));
                keys.insert(id, key.clone());
                if u["role"] == "end-user" {
                    end_users.push((key, u));
                }
            }
        }
    }
    let m = Migrated::new(&emulator, &state, &["users", "tickets", "comments"]);
    assert_eq!(
        m.count("sessions"),
        end_users.len(),
        "one session per end-user, no agents"
    );
    for (key, u) in &end_users {
        let s = m.doc("users", key);
        assert_eq!(s["userId"], *key);
        assert_eq!(s["name"], u["name"]);
        assert_eq!(s["customData"]["zendeskId"], u["id"]);
    }

    // Tickets: all but the deleted ones, each with its requester's session.
    let mut tickets = HashMap::new();
    let mut comments: HashMap<String, (String, Value)> = HashMap::new();
    for f in files(&samples, "tickets") {
        for doc in documents(&f) {
            let list = doc
                .get("tickets")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_else(|| vec![doc.clone()]);
            for t in list {
                for c in t["comments"].as_array().cloned().unwrap_or_default() {
                    comments.insert(id_text(&c["id"]), (id_text(&t["id"]), c));
                }
                tickets.insert(id_text(&t["id"]), t);
            }
        }
    }
    for f in files(&samples, "audits") {
        for doc in documents(&f) {
            for a in doc["audits"].as_array().unwrap() {
                for e in a["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|e| e["type"] == "Comment")
                {
                    let mut e = e.clone();
                    e["author_id"] = e
                        .get("author_id")
                        .cloned()
                        .unwrap_or(a["author_id"].clone());
                    comments.insert(id_text(&e["id"]), (id_text(&a["ticket_id"]), e));
                }
            }
        }
    }
    for f in files(&samples, "ticket_events") {
        for doc in documents(&f) {
            for ev in doc["ticket_events"].as_array().unwrap() {
                for c in ev["child_events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|c| c["event_type"] == "Comment")
                {
                    comments.insert(id_text(&c["id"]), (id_text(&ev["ticket_id"]), c.clone()));
                }
            }
        }
    }
    for f in files(&samples, "comments-") {
        let ticket = f
            .file_stem()
            .unwrap()
            .to_str()
            .unwrap()
            .trim_start_matches("comments-")
            .split('.')
            .next()
            .unwrap()
            .to_string();
        for doc in documents(&f) {
            for c in doc["comments"].as_array().unwrap() {
                comments.insert(id_text(&c["id"]), (ticket.clone(), c.clone()));
            }
        }
    }
    let deleted: HashSet<String> = tickets
        .iter()
        .filter(|(_, t)| t["status"] == "deleted")
        .map(|(id, _)| id.clone())
        .collect();
    assert!(!deleted.is_empty(), "the samples have a deleted ticket");
    assert_eq!(m.count("tickets"), tickets.len() - deleted.len());
    for (id, t) in tickets.iter().filter(|(id, _)| !deleted.contains(*id)) {
        let g = m.doc("tickets", id);
        assert_eq!(g["title"], t["subject"]);
        assert_eq!(g["customData"]["zendeskId"], t["id"]);
        let requester = id_text(&t["requester_id"]);
        assert_eq!(
            g["session"].as_str().unwrap(),
            m.gleap_id("users", &keys[&requester]),
            "ticket {id}'s requester"
        );
        assert!(["OPEN", "INPROGRESS", "DONE"].contains(&g["status"].as_str().unwrap()));
    }

    // Comments: once each, on their ticket, end-users' as the session, private ones as notes.
    let live: Vec<_> = comments
        .iter()
        .filter(|(_, (t, _))| !deleted.contains(t))
        .collect();
    assert!(live.len() > 40, "{}", live.len());
    assert_eq!(m.count("messages"), live.len());
    let (mut notes, mut customer, mut with_attachments) = (0, 0, 0);
    for (id, (ticket, c)) in live {
        let g = m.doc("comments", id);
        assert_eq!(
            g["ticket"].as_str().unwrap(),
            m.gleap_id("tickets", ticket),
            "comment {id} on its ticket"
        );
        assert_eq!(
            g["isNote"],
            !c["public"].as_bool().unwrap(),
            "comment {id}'s note flag"
        );
        assert_eq!(
            g["comment"]["type"], "doc",
            "comment {id} as a TipTap document"
        );
        let author = id_text(&c["author_id"]);
        // An automation's comment (author -1) has no user: it is sent by name.
        if roles.get(&author).is_some_and(|r| r == "end-user") {
            customer += 1;
            assert_eq!(
                g["session"].as_str().unwrap(),
                m.gleap_id("users", &keys[&author]),
                "comment {id} by its customer"
            );
        } else {
            assert!(g["session"].is_null(), "comment {id} is an agent's");
            assert_agent(
                &m,
                g,
                emails.get(&author).cloned().flatten().as_deref(),
                None,
                &format!("comment {id}"),
            );
        }
        notes += usize::from(g["isNote"] == true);
        let source_attachments = c["attachments"].as_array().map_or(0, Vec::len);
        assert!(
            g["attachments"].as_array().map_or(0, Vec::len) >= source_attachments,
            "comment {id}'s attachments"
        );
        with_attachments += usize::from(source_attachments > 0);
        assert_eq!(g["sendToChannel"], false);
    }
    assert!(
        notes > 0 && customer > 0 && with_attachments > 0,
        "{notes} notes, {customer} by customers, {with_attachments} with files"
    );
    // Each thread reads in the order its comments were written.
    let mut multi = 0;
    for (ticket, thread) in threads(&m, "comments") {
        let mut by_time = thread.clone();
        by_time.sort_by_key(|id| {
            let c = &comments[id].1;
            (
                c["created_at"].as_str().unwrap().to_string(),
                id_text(&c["id"]),
            )
        });
        assert_eq!(thread, by_time, "the thread of ticket {ticket}");
        multi += usize::from(thread.len() > 1);
    }
    assert!(multi > 5, "{multi} threads of more than one message");
    let stats = emulator.stats();
    assert_eq!(
        stats["customer_notifications"], 0,
        "no request asked Gleap to notify a customer"
    );
    assert_eq!(
        stats["dropped_fields"],
        serde_json::json!({}),
        "no field was dropped by Gleap"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_intercom_samples_arrive_entity_by_entity() {
    intercom_samples(Trial::Clean).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_intercom_samples_arrive_in_thread_order_through_faults() {
    intercom_samples(Trial::Faults).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_intercom_samples_arrive_in_thread_order_through_faults_and_three_kills() {
    intercom_samples(Trial::FaultsAndKills).await;
}

async fn intercom_samples(trial: Trial) {
    let dir = Dir::new();
    let state = dir.join("state");
    let (emulator, run) = migrate(
        "intercom_to_gleap.yaml",
        "INTERCOM_DIR",
        "intercom",
        &state,
        trial,
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!run.stderr.contains("panicked"), "{run:?}");
    assert_clean_stats(&emulator);
    let samples = repo().join("samples/intercom");

    let mut contacts = HashMap::new();
    for f in files(&samples, "contacts") {
        for doc in documents(&f) {
            if let Some(list) = doc.get("data").and_then(Value::as_array) {
                for c in list {
                    contacts.insert(c["id"].as_str().unwrap().to_string(), c.clone());
                }
            } else if doc["stream"] == "contacts" {
                let c = &doc["data"];
                contacts.insert(c["id"].as_str().unwrap().to_string(), c.clone());
            }
        }
    }
    let key = |id: &str| -> String {
        match contacts[id]["external_id"].as_str() {
            Some(e) if !e.is_empty() => e.to_string(),
            _ => id.to_string(),
        }
    };
    let m = Migrated::new(&emulator, &state, &["contacts", "conversations", "parts"]);
    assert_eq!(m.count("sessions"), contacts.len(), "users and leads");
    for id in contacts.keys() {
        assert_eq!(
            m.doc("contacts", &key(id))["customData"]["intercomId"],
            id.as_str()
        );
    }

    let mut conversations = Vec::new();
    for f in files(&samples, "conversations") {
        for doc in documents(&f) {
            match doc.get("conversations").and_then(Value::as_array) {
                Some(list) => conversations.extend(list.iter().cloned()),
                None => conversations.push(doc),
            }
        }
    }
    assert_eq!(m.count("tickets"), conversations.len());
    let mut expected_messages = 0;
    let (mut bots, mut notes, mut customer) = (0, 0, 0);
    let threads = threads(&m, "parts");
    for conv in &conversations {
        let id = conv["id"].as_str().unwrap();
        // The thread reads as the conversation: the opening message, then its parts.
        let mut expected_thread = vec![conv["source"]["id"].as_str().unwrap().to_string()];
        for p in conv["conversation_parts"]["conversation_parts"]
            .as_array()
            .unwrap()
        {
            if is_message(p) {
                expected_thread.push(id_text(&p["id"]));
            }
        }
        assert_eq!(
            threads[m.gleap_id("conversations", id)],
            expected_thread,
            "the thread of conversation {id}"
        );
        let ticket = m.doc("conversations", id);
        let contact = conv["contacts"]["contacts"][0]["id"].as_str().unwrap();
        assert_eq!(
            ticket["session"].as_str().unwrap(),
            m.gleap_id("contacts", &key(contact))
        );
        let source_id = conv["source"]["id"].as_str().unwrap();
        let opening = m.doc("parts", source_id);
        assert_eq!(
            opening["ticket"].as_str().unwrap(),
            m.gleap_id("conversations", id),
            "the opening message is on its ticket"
        );
        assert_eq!(
            opening["session"].as_str().unwrap(),
            m.gleap_id("contacts", &key(contact)),
            "and by its customer"
        );
        expected_messages += 1;
        for p in conv["conversation_parts"]["conversation_parts"]
            .as_array()
            .unwrap()
        {
            let pid = id_text(&p["id"]);
            if !is_message(p) {
                assert!(
                    !m.maps["parts"].contains_key(&pid),
                    "event or empty part {pid} is not a message"
                );
                continue;
            }
            expected_messages += 1;
            let g = m.doc("parts", &pid);
            assert_eq!(
                g["ticket"].as_str().unwrap(),
                m.gleap_id("conversations", id)
            );
            assert_eq!(g["isNote"], p["part_type"] == "note");
            notes += usize::from(p["part_type"] == "note");
            match p["author"]["type"].as_str().unwrap() {
                "user" | "lead" | "contact" => {
                    customer += 1;
                    let author = p["author"]["id"].as_str().unwrap();
                    assert_eq!(
                        g["session"].as_str().unwrap(),
                        m.gleap_id("contacts", &key(author))
                    );
                }
                kind => {
                    bots += usize::from(kind == "bot");
                    assert!(g["session"].is_null(), "part {pid} is by an {kind}");
                    assert_agent(
                        &m,
                        g,
                        p["author"]["email"].as_str(),
                        p["author"]["name"].as_str(),
                        &format!("part {pid}"),
                    );
                }
            }
            assert_eq!(g["comment"]["type"], "doc");
        }
    }
    assert!(bots > 0 && notes > 0 && customer > 0);
    assert_eq!(m.count("messages"), expected_messages);
    let stats = emulator.stats();
    assert_eq!(stats["customer_notifications"], 0);
    assert_eq!(stats["dropped_fields"], serde_json::json!({}));
}

/// An agent's message is sent as the team member with the agent's e-mail (the emulator's
/// team, case-insensitive), else it keeps the agent's name (`name` when given).
fn assert_agent(m: &Migrated, g: &Value, email: Option<&str>, name: Option<&str>, what: &str) {
    let member = m.dump["team"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| email.is_some_and(|e| t["email"].as_str().unwrap().eq_ignore_ascii_case(e)));
    match member {
        Some(t) => {
            assert_eq!(g["user"], t["id"], "{what} is by its team member");
            assert!(g["fallbackUser"].is_null(), "{what}: {g}");
        }
        None => {
            assert!(g["user"].is_null(), "{what}: {g}");
            let username = g["fallbackUser"]["username"].as_str().unwrap_or_default();
            assert!(!username.is_empty(), "{what} keeps its agent's name");
            if let Some(name) = name {
                assert_eq!(username, name, "{what} keeps its agent's name");
            }
        }
    }
}

/// Whether an Intercom part is a message: it has text or files (events and empty parts are
/// skipped).
fn is_message(part: &Value) -> bool {
    part["body"].as_str().is_some_and(|b| !b.trim().is_empty())
        || part["attachments"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
}

/// `plan` shows the bodies that will be sent, with references still as source ids.
#[test]
fn plan_shows_what_will_be_sent() {
    for (pipeline, expect) in [
        ("zendesk_to_gleap.yaml", "\"importId\":\"tickets:"),
        ("intercom_to_gleap.yaml", "\"sendToChannel\":false"),
    ] {
        let dir = Dir::new();
        let run = dir.run_in_repo(&["plan", &format!("pipelines/{pipeline}"), "--limit", "3"]);
        assert_eq!(run.code, 0, "{run:?}");
        assert!(run.stdout.contains(expect), "{pipeline}: {run:?}");
        assert!(
            run.stdout.contains("\"session\":\"<"),
            "references show their source id: {run:?}"
        );
        assert!(!dir.join("state").exists());
    }
}
