//! `verify`: after a clean run it passes; after a run corrupted on purpose (a message
//! deleted, a ticket duplicated by a direct POST, a ticket title edited, two messages
//! swapped) it names exactly those four problems and exits 1; its requests are counted.

use std::path::Path;
use std::process::Command;

use gleap_etl::emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};

use crate::util::{Api, Dir, Run, output, requests, unlimited, write_helpdesk};

const KEY: &str = "sk-live-TEST-verify-7c1d";
const PROJECT: &str = "65a0000000000000000000dd";

fn command(emulator: &Emulator, dir: &Path, args: &[&str]) -> Command {
    crate::util::csv_to_gleap(&emulator.base_url(), KEY, PROJECT, dir, args)
}

/// `verify --json` and the requests the emulator answered for it.
async fn verify(emulator: &Emulator, dir: &Path, extra: &[&str]) -> (Run, Value, u64) {
    let before = requests(emulator);
    let mut args = vec!["verify", "--json"];
    args.extend(extra);
    let out = output(command(emulator, dir, &args)).await;
    let report: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("verify --json prints JSON ({e}): {out:?}"));
    (out, report, requests(emulator) - before)
}

fn summary<'a>(report: &'a Value, stream: &str) -> &'a Value {
    report["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stream"] == stream)
        .unwrap()
}

/// The problems as (stream, kind, records, ticket) in a stable order.
fn problems(report: &Value) -> Vec<(String, String, Vec<String>, Option<String>)> {
    let mut all: Vec<_> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["stream"].as_str().unwrap().to_string(),
                p["kind"].as_str().unwrap().to_string(),
                p["records"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap().to_string())
                    .collect(),
                p["ticket"].as_str().map(str::to_string),
            )
        })
        .collect();
    all.sort();
    all
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_exactly_the_four_problems_of_a_corrupted_run() {
    let emulator = Emulator::start(unlimited(KEY, PROJECT)).await.unwrap();
    let dir = Dir::new();
    // 12 contacts, 10 tickets of 3 comments: ticket i has M-(3i+1) .. M-(3i+3).
    write_helpdesk(&dir.join("data"), 12, 10, 3);
    let first = output(command(&emulator, dir.path(), &["run", "--no-progress"])).await;
    assert_eq!(first.code, 0, "{first:?}");

    // A clean run: all arrived and equal, exit 0; 2 list pages of sessions (12, then an
    // empty one: a short first page is not trusted), 2 of tickets, one request per ticket.
    let (out, report, sent) = verify(&emulator, dir.path(), &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(report["ok"], true);
    assert_eq!(problems(&report), vec![]);
    assert_eq!(sent, 2 + 2 + 10, "{out:?}");
    assert_eq!(report["requests"], sent);
    assert_eq!(report["estimate"]["requests"], sent);
    assert!(
        out.stderr.contains("about 14 requests"),
        "the cost comes first: {out:?}"
    );
    for (stream, n) in [("users", 12), ("tickets", 10), ("messages", 30)] {
        let s = summary(&report, stream);
        assert_eq!(
            (&s["in_source"], &s["arrived_equal"]),
            (&json!(n), &json!(n))
        );
    }
    assert_eq!(summary(&report, "messages")["deep_tickets"], 10);

    // Corrupt it.
    let dump = emulator.dump();
    let ticket_id = |source: &str| -> String {
        dump["tickets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["customData"]["importId"] == format!("tickets:{source}"))
            .and_then(|t| t["_id"].as_str().or(t["id"].as_str()))
            .unwrap()
            .to_string()
    };
    let message_id = |source: &str| -> String {
        dump["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| {
                m["comment"]
                    .as_str()
                    .is_some_and(|c| c.starts_with(&format!("{source}:")))
            })
            .and_then(|m| m["_id"].as_str().or(m["id"].as_str()))
            .unwrap()
            .to_string()
    };
    let api = Api::new(&emulator);
    let (status, _) = api
        .delete(&format!("/messages/{}", message_id("M-000002")))
        .await;
    assert_eq!(status, 204, "message deleted");
    let (status, copy) = api
        .post(
            "/tickets",
            json!({"title": "Ticket 1, again", "customData": {"importId": "tickets:T-00001"}}),
        )
        .await;
    assert!((200..300).contains(&status), "{copy}");
    let (status, _) = api
        .put(
            &format!("/tickets/{}", ticket_id("T-00002")),
            json!({"title": "Edited by hand"}),
        )
        .await;
    assert!((200..300).contains(&status), "title edited");
    assert!(emulator.swap_messages(&ticket_id("T-00003"), 0, 1));

    let (out, report, sent) = verify(&emulator, dir.path(), &[]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(report["ok"], false);
    assert_eq!(
        problems(&report),
        vec![
            (
                "messages".into(),
                "missing".into(),
                strings(&["M-000002"]),
                Some("T-00000".into())
            ),
            (
                "messages".into(),
                "out_of_order".into(),
                strings(&["M-000010", "M-000011"]),
                Some("T-00003".into())
            ),
            (
                "tickets".into(),
                "changed".into(),
                strings(&["T-00002"]),
                None
            ),
            (
                "tickets".into(),
                "twice".into(),
                strings(&["T-00001"]),
                None
            ),
        ],
        "{out:?}"
    );
    let changed = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["kind"] == "changed")
        .unwrap();
    assert_eq!(changed["fields"], json!(["title"]));
    let twice = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["kind"] == "twice")
        .unwrap();
    assert_eq!(twice["gleap_ids"].as_array().unwrap().len(), 2);
    assert!(twice["gleap_ids"].as_array().unwrap().contains(&copy["id"]));
    assert_eq!(sent, 2 + 2 + 10, "11 tickets still fit a page: {out:?}");
    assert_eq!(report["requests"], sent);
    let tickets = summary(&report, "tickets");
    assert_eq!(
        (
            &tickets["arrived_equal"],
            &tickets["changed"],
            &tickets["twice"]
        ),
        (&json!(8), &json!(1), &json!(1))
    );
    let messages = summary(&report, "messages");
    assert_eq!(
        (
            &messages["arrived_equal"],
            &messages["missing"],
            &messages["out_of_order"]
        ),
        (&json!(27), &json!(1), &json!(2))
    );

    // The table names the same problems for a person.
    let table = output(command(&emulator, dir.path(), &["verify"])).await;
    assert_eq!(table.code, 1, "{table:?}");
    for line in [
        "messages M-000002 (ticket T-00000): missing",
        "tickets T-00001: present twice",
        "tickets T-00002: changed since: title: Gleap \"Edited by hand\", sent \"Ticket 2, about \\\"things\\\"\"",
        "messages M-000010, M-000011 (ticket T-00003): out of order",
        "4 problems",
    ] {
        assert!(table.stdout.contains(line), "{line}\n{table:?}");
    }

    // --sample 3: three tickets message by message, the rest counted from the list pages of
    // all messages (29: one page and an empty one). The missing message is named either way.
    let (out, report, sent) =
        verify(&emulator, dir.path(), &["--sample", "3", "--seed", "7"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(sent, 2 + 2 + 2 + 3, "{out:?}");
    assert_eq!(report["estimate"]["requests"], sent);
    let messages = summary(&report, "messages");
    assert_eq!(messages["deep_tickets"], 3);
    assert_eq!(messages["by_count"], 30 - 3 * 3, "{out:?}");
    let found = problems(&report);
    assert!(
        found
            .iter()
            .any(|p| p.1 == "missing" && p.2 == ["M-000002"]),
        "{found:?}"
    );
}

/// A message posted a second time, a ticket and a message removed from the source, a ticket
/// the pipeline cannot send: each named, exit 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_copies_leftovers_and_records_never_sent() {
    let emulator = Emulator::start(unlimited(KEY, PROJECT)).await.unwrap();
    let dir = Dir::new();
    // 4 tickets of 2 comments: ticket i has M-(2i+1) and M-(2i+2).
    write_helpdesk(&dir.join("data"), 6, 4, 2);
    let first = output(command(&emulator, dir.path(), &["run", "--no-progress"])).await;
    assert_eq!(first.code, 0, "{first:?}");

    // In Gleap: a copy of M-000003's text on its ticket.
    let dump = emulator.dump();
    let original = dump["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["comment"].as_str().unwrap().starts_with("M-000003:"))
        .unwrap()
        .clone();
    let api = Api::new(&emulator);
    let (status, copy) = api
        .post(
            "/messages",
            json!({"ticket": original["ticket"], "comment": original["comment"]}),
        )
        .await;
    assert!((200..300).contains(&status), "{copy}");
    // In the source: T-00003 and M-000002 gone, a ticket Gleap would refuse.
    let data = dir.join("data");
    let tickets = std::fs::read_to_string(data.join("tickets.csv")).unwrap();
    let mut tickets: String = tickets
        .lines()
        .filter(|l| !l.starts_with("T-00003,"))
        .map(|l| format!("{l}\n"))
        .collect();
    tickets.push_str("T-00009,cust-00001,Urgent,OPEN,URGENT,BUG,a,2024-01-01T00:00:00Z\n");
    std::fs::write(data.join("tickets.csv"), tickets).unwrap();
    let messages: String = std::fs::read_to_string(data.join("messages.csv"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("M-000002,") && !l.contains(",T-00003,"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(data.join("messages.csv"), messages).unwrap();

    let (out, report, sent) = verify(&emulator, dir.path(), &[]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        problems(&report),
        vec![
            (
                "messages".into(),
                "gone_from_source".into(),
                strings(&["M-000002"]),
                Some("T-00000".into())
            ),
            (
                "messages".into(),
                "twice".into(),
                strings(&["M-000003"]),
                Some("T-00001".into())
            ),
            (
                "tickets".into(),
                "gone_from_source".into(),
                strings(&["T-00003"]),
                None
            ),
            (
                "tickets".into(),
                "not_sent".into(),
                strings(&["T-00009"]),
                None
            ),
        ],
        "{out:?}"
    );
    let twice = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["kind"] == "twice")
        .unwrap();
    assert_eq!(
        twice["gleap_ids"],
        json!([
            original["_id"].as_str().or(original["id"].as_str()),
            copy["id"]
        ])
    );
    // Sessions and tickets: two pages each; the messages of the 3 tickets left.
    assert_eq!(sent, 2 + 2 + 3, "{out:?}");
    let tickets = summary(&report, "tickets");
    assert_eq!(
        (
            &tickets["in_source"],
            &tickets["arrived_equal"],
            &tickets["dead_lettered"]
        ),
        (&json!(4), &json!(3), &json!(1))
    );
}

/// `--sample`: list pages for the counts (under one request per 100 records) and one request
/// per sampled ticket, as estimated up front.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sample_costs_list_pages_and_a_request_per_sampled_ticket() {
    let emulator = Emulator::start(unlimited(KEY, PROJECT)).await.unwrap();
    let dir = Dir::new();
    write_helpdesk(&dir.join("data"), 1200, 1100, 2);
    let records = 1200 + 1100 + 2200;
    let first = output(command(&emulator, dir.path(), &["run", "--no-progress"])).await;
    assert_eq!(first.code, 0, "{first:?}");

    let (out, report, sent) = verify(&emulator, dir.path(), &["--sample", "5"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    // Sessions 1000 + 200, tickets 1000 + 100, messages 1000 + 1000 + 200 (a page shorter
    // than the one before ends a listing), and the 5 tickets.
    assert_eq!(sent, 2 + 2 + 3 + 5, "{out:?}");
    assert!(sent <= records / 100 + 5);
    assert_eq!(report["estimate"]["requests"], sent);
    assert!(out.stderr.contains("about 12 requests"), "{out:?}");
    let messages = summary(&report, "messages");
    assert_eq!(messages["deep_tickets"], 5);
    assert_eq!(messages["by_count"], 2200 - 5 * 2);
    assert_eq!(messages["arrived_equal"], 2200);

    // A sampled check still finds a message gone from a ticket outside the sample.
    let victim = emulator.dump()["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["comment"].as_str().unwrap().starts_with("M-000001:"))
        .unwrap()
        .clone();
    let id = victim["_id"].as_str().or(victim["id"].as_str()).unwrap();
    let (status, _) = Api::new(&emulator).delete(&format!("/messages/{id}")).await;
    assert_eq!(status, 204);
    let (out, report, _) = verify(&emulator, dir.path(), &["--sample", "5", "--seed", "1"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    let found = problems(&report);
    assert_eq!(
        found,
        vec![(
            "messages".into(),
            "missing".into(),
            strings(&["M-000001"]),
            Some("T-00000".into())
        )]
    );
}

/// A server that caps pages and ignores the `ticket` filter: nothing is taken on trust, the
/// verdict is the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capped_pages_and_an_ignored_ticket_filter_change_no_verdict() {
    let emulator = Emulator::start(EmulatorConfig {
        quirks: gleap_etl::emulator::Quirks {
            page_cap: Some(25),
            ignore_filters: vec!["ticket".into()],
            ..Default::default()
        },
        ..unlimited(KEY, PROJECT)
    })
    .await
    .unwrap();
    let dir = Dir::new();
    write_helpdesk(&dir.join("data"), 40, 10, 3);
    let first = output(command(&emulator, dir.path(), &["run", "--no-progress"])).await;
    assert_eq!(first.code, 0, "{first:?}");
    let (out, report, _) = verify(&emulator, dir.path(), &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(summary(&report, "users")["arrived_equal"], 40);
    assert_eq!(summary(&report, "messages")["arrived_equal"], 30);
    assert_eq!(summary(&report, "messages")["others_in_gleap"], 0);

    let victim = emulator.dump()["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["comment"].as_str().unwrap().starts_with("M-000005:"))
        .unwrap()
        .clone();
    let id = victim["_id"].as_str().or(victim["id"].as_str()).unwrap();
    let (status, _) = Api::new(&emulator).delete(&format!("/messages/{id}")).await;
    assert_eq!(status, 204);
    let (out, report, _) = verify(&emulator, dir.path(), &[]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        problems(&report),
        vec![(
            "messages".into(),
            "missing".into(),
            strings(&["M-000005"]),
            Some("T-00001".into())
        )]
    );
}
