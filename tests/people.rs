//! What a migration makes of the helpdesk's people, companies, tags and odd messages, seen in
//! Gleap: the shipped pipelines on the shipped samples into the embedded emulator. A customer
//! message of files alone arrives with its files in its place in the thread; an empty one is
//! counted as skipped with its reason; agents who are team members (the emulator's default
//! team has sam@acme.example) write as themselves and are assignees, the others keep their
//! name and are listed in the report with their counts; sessions carry their company; tags
//! are names.

use std::collections::HashMap;

use gleap_etl::emulator::{Emulator, EmulatorConfig};
use gleap_etl::state::StateStore;
use serde_json::{Value, json};

use crate::util::{Api, Dir, Run, repo};

/// The default emulator team's member for sam@acme.example.
const SAM: &str = "64b0000000000000000000a2";
const API_AGENT: &str = "64b000000000000000000001";

struct Migration {
    run: Run,
    report: Value,
    /// The emulator's data (`--emulator` saves it in the state dir).
    data: Value,
    maps: HashMap<String, HashMap<String, String>>,
}

impl Migration {
    fn doc(&self, kind: &str, stream: &str, source_id: &str) -> &Value {
        let id = &self.maps[stream][source_id];
        self.data[kind]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["_id"] == id.as_str())
            .unwrap_or_else(|| panic!("{stream} {source_id}: no {kind} {id}"))
    }

    fn stream(&self, name: &str) -> &Value {
        self.report["streams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()
    }
}

fn migrate(dir: &Dir, pipeline: &str, env: &[(&str, &str)]) -> Migration {
    let report = dir.join("report.json");
    let mut cmd = dir.emulated_run(pipeline, &report);
    cmd.current_dir(repo()).env("STATE_DIR", dir.join("state"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let run = Run::from(cmd.output().unwrap());
    assert_eq!(run.code, 0, "{run:?}");
    let report: Value = serde_json::from_str(&dir.read("report.json")).unwrap();
    let data: Value = serde_json::from_str(&dir.read("state/emulator.json")).unwrap();
    let store = StateStore::open(&dir.join("state")).unwrap();
    let maps = report["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let name = s["name"].as_str().unwrap().to_string();
            let map = store
                .load_map(&name)
                .unwrap()
                .into_iter()
                .map(|(k, e)| (k, e.gleap_id))
                .collect();
            (name, map)
        })
        .collect();
    Migration {
        run,
        report,
        data,
        maps,
    }
}

/// The source ids of a ticket's messages in the order Gleap holds them.
fn thread(m: &Migration, stream: &str, ticket: &str) -> Vec<String> {
    let source_of: HashMap<&str, &str> = m.maps[stream]
        .iter()
        .map(|(s, g)| (g.as_str(), s.as_str()))
        .collect();
    m.data["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["ticket"] == ticket)
        .map(|d| source_of[d["_id"].as_str().unwrap()].to_string())
        .collect()
}

fn unmatched(m: &Migration, stream: &str) -> Value {
    m.stream(stream)["sink"]["detail"]["agents"]["unmatched"].clone()
}

#[test]
fn intercom_files_alone_agents_companies_and_tag_names() {
    let dir = Dir::new();
    let m = migrate(&dir, "pipelines/intercom_to_gleap.yaml", &[]);

    // The customer's message of a PNG and a PDF and no text, in its place, with its files.
    let files_only = m.doc("messages", "parts", "30000040");
    assert_eq!(
        files_only["session"],
        m.doc("sessions", "contacts", "crm-0")["_id"],
        "written by its customer"
    );
    assert_eq!(
        files_only["attachments"],
        json!([
            {"name": "export-error.png", "url": "https://downloads.intercomcdn.com/i/o/1001/export-error.png", "type": "image/png"},
            {"name": "export-log.pdf", "url": "https://downloads.intercomcdn.com/i/o/1002/export-log.pdf", "type": "application/pdf"}
        ])
    );
    assert_eq!(
        files_only["comment"]["content"][0]["content"][0]["text"],
        "📎 export-error.png, export-log.pdf",
        "its text names its files"
    );
    let ticket = m.doc("tickets", "conversations", "1911149811")["_id"]
        .as_str()
        .unwrap();
    assert_eq!(
        thread(&m, "parts", ticket),
        [
            "403918320",
            "30000002",
            "30000003",
            "30000004",
            "30000040",
            "30000005"
        ]
    );
    // The empty, redacted comment is skipped, and said so.
    assert!(!m.maps["parts"].contains_key("30000041"));
    let parts = m.stream("parts");
    let dropped: Vec<&Value> = parts["transforms"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.get("dropped"))
        .collect();
    assert_eq!(
        dropped,
        [
            &json!({"event parts (assignment, open, close...)": 12}),
            &json!({"empty messages (no text, no file)": 1})
        ]
    );
    assert!(
        m.run
            .stderr
            .contains("empty messages (no text, no file) left out: 1"),
        "{:?}",
        m.run
    );

    // Sam is a team member: his replies are his, and he is every conversation's assignee.
    let sam_reply = m.doc("messages", "parts", "30000003");
    assert_eq!(sam_reply["user"], SAM);
    assert!(sam_reply["fallbackUser"].is_null());
    for t in m.data["tickets"].as_array().unwrap() {
        assert_eq!(t["processingUser"], SAM, "{t}");
    }
    // Olivia and the bot are not: they keep their names, and the report lists them.
    let olivia_note = m.doc("messages", "parts", "30000005");
    assert!(olivia_note["user"].is_null());
    assert_eq!(olivia_note["fallbackUser"]["username"], "Olivia Owner");
    assert_eq!(
        unmatched(&m, "parts"),
        json!([
            {"agent": "operator+acme@intercom.io (Fin)", "records": 6},
            {"agent": "owner@acme.example (Olivia Owner)", "records": 6},
            // A workflow bot without an e-mail (the sample's message with a missing author).
            {"agent": "Answer Bot (id 5992)", "records": 1}
        ])
    );
    assert_eq!(m.stream("parts")["sink"]["detail"]["agents"]["matched"], 6);
    assert!(
        m.run.stderr.contains(
            "agents not in the team: operator+acme@intercom.io (Fin): 6, owner@acme.example (Olivia Owner): 6"
        ),
        "{:?}",
        m.run
    );

    // Companies and tag names (the contacts list both by id only).
    let zoe = m.doc("sessions", "contacts", "crm-0");
    assert_eq!(zoe["companyId"], "crm-co-1");
    assert_eq!(zoe["companyName"], "Umbrella Analytics");
    assert_eq!(zoe["plan"], "Pro");
    assert_eq!(zoe["value"], 490.0);
    assert_eq!(zoe["tags"], json!(["vip"]), "named by tags.json");
    let contact1 = m.doc("sessions", "contacts", "65f1a2b3c4d5e6f7a8b9c001");
    assert_eq!(
        contact1["tags"],
        json!(["onboarding"]),
        "named by a conversation's tags"
    );
    assert_eq!(
        m.doc("sessions", "contacts", "crm-2")["companyName"],
        "Hooli"
    );
    assert!(m.doc("sessions", "contacts", "crm-4")["companyId"].is_null());
    assert_eq!(
        m.doc("tickets", "conversations", "1911149813")["tags"],
        json!(["beta-tester"])
    );
    for s in m.data["sessions"].as_array().unwrap() {
        for tag in s["tags"].as_array().unwrap() {
            assert!(
                !tag.as_str().unwrap().chars().all(|c| c.is_ascii_digit()),
                "a bare tag id: {s}"
            );
        }
    }

    // Run again: the same authors and assignees, nothing to send.
    let again = migrate(&dir, "pipelines/intercom_to_gleap.yaml", &[]);
    for s in again.report["streams"].as_array().unwrap() {
        let d = &s["sink"]["detail"];
        assert_eq!(
            (d["created"].as_u64(), d["updated"].as_u64()),
            (Some(0), Some(0)),
            "{s}"
        );
    }
}

#[test]
fn an_agents_file_maps_who_has_another_email_in_gleap() {
    let dir = Dir::new();
    let file = dir.write(
        "agents.csv",
        "source,gleap\nowner@acme.example,API@gleap.local\n",
    );
    let m = migrate(
        &dir,
        "pipelines/intercom_to_gleap.yaml",
        &[("AGENTS_FILE", file.to_str().unwrap())],
    );
    let olivia_note = m.doc("messages", "parts", "30000005");
    assert_eq!(olivia_note["user"], API_AGENT);
    assert!(olivia_note["fallbackUser"].is_null());
    assert_eq!(
        unmatched(&m, "parts"),
        json!([
            {"agent": "operator+acme@intercom.io (Fin)", "records": 6},
            {"agent": "Answer Bot (id 5992)", "records": 1}
        ])
    );
}

#[test]
fn zendesk_organizations_and_agents() {
    let dir = Dir::new();
    let m = migrate(&dir, "pipelines/zendesk_to_gleap.yaml", &[]);
    let soren = m.doc("sessions", "users", "crm-2");
    assert_eq!(soren["companyId"], "361000000001");
    assert_eq!(soren["companyName"], "Globex Corporation");
    assert!(m.doc("sessions", "users", "900000000005")["companyName"].is_null());

    // A customer's comment of a file alone: sent with it, last in its thread.
    let files_only = m.doc("messages", "comments", "599001");
    assert_eq!(files_only["attachments"][0]["name"], "crash-log.txt");
    assert_eq!(
        files_only["comment"]["content"][0]["content"][0]["text"],
        "📎 crash-log.txt"
    );
    assert_eq!(
        files_only["session"],
        m.doc("sessions", "users", "crm-12")["_id"]
    );
    let ticket = m.doc("tickets", "tickets", "1009")["_id"].as_str().unwrap();
    assert_eq!(
        thread(&m, "comments", ticket),
        ["500034", "500035", "500036", "599001", "599002"]
    );

    // Sam (a team member) is assigned his tickets; Olivia's ticket stays unassigned.
    assert_eq!(m.doc("tickets", "tickets", "1001")["processingUser"], SAM);
    assert!(m.doc("tickets", "tickets", "1007")["processingUser"].is_null());
    assert_eq!(
        unmatched(&m, "tickets"),
        json!([{"agent": "owner@acme.example (Olivia Owner)", "records": 1}])
    );
    // Comments: Sam's are his; Olivia's keep her name and are counted.
    let by_agent = |email_user: Option<&str>| {
        m.data["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["session"].is_null() && d["user"].as_str() == email_user)
            .count()
    };
    let sam = by_agent(Some(SAM));
    let unassigned = by_agent(None);
    assert!(sam > 0 && unassigned > 0, "sam {sam}, by name {unassigned}");
    // And an automation's note (author -1, no user) keeps "Zendesk user -1".
    let automation = m.doc("messages", "comments", "599002");
    assert_eq!(automation["fallbackUser"]["username"], "Zendesk user -1");
    assert_eq!(
        unmatched(&m, "comments"),
        json!([
            {"agent": "owner@acme.example (Olivia Owner)", "records": unassigned - 1},
            {"agent": "id -1", "records": 1}
        ])
    );
}

#[tokio::test]
async fn the_emulator_lists_the_team_behind_its_gate_and_checks_users() {
    let emulator = Emulator::start(EmulatorConfig {
        team: Some(vec![
            json!({"_id": "64b0000000000000000000b1", "email": "kim@acme.example"})
                .as_object()
                .unwrap()
                .clone(),
        ]),
        ..Default::default()
    })
    .await
    .unwrap();
    let api = Api::new(&emulator);
    let (status, team) = api.get("/projects/users").await;
    assert_eq!(status, 200);
    assert_eq!(
        team,
        json!([{"email": "kim@acme.example", "id": "64b0000000000000000000b1"}])
    );
    let (status, _) = api
        .send(
            reqwest::Client::new()
                .get(format!("{}/projects/users", api.base))
                .header("project", &api.project),
        )
        .await;
    assert_eq!(status, 401, "no key, no team");
    let (_, session) = api.post("/sessions", json!({"userId": "u"})).await;
    let (_, ticket) = api
        .post("/tickets", json!({"title": "t", "session": session["_id"]}))
        .await;
    let (status, body) = api
        .post(
            "/messages",
            json!({"ticket": ticket["id"], "comment": "hi", "user": "64b0000000000000000000a2"}),
        )
        .await;
    assert_eq!(status, 400, "not a member of this team: {body}");
    let (status, message) = api
        .post(
            "/messages",
            json!({"ticket": ticket["id"], "comment": "hi", "user": "64b0000000000000000000b1"}),
        )
        .await;
    assert_eq!(status, 200, "{message}");
    assert_eq!(message["user"]["email"], "kim@acme.example");
    let (status, _) = api
        .put(
            &format!("/tickets/{}", ticket["id"].as_str().unwrap()),
            json!({"processingUser": "nobody"}),
        )
        .await;
    assert_eq!(status, 400);
    emulator.shutdown().await.unwrap();
}
