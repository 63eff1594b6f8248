//! The Gleap emulator: every endpoint, auth, the quota, each fault kind, filters and pages.

use std::sync::Arc;
use std::time::Duration;

use gleap_etl::clock::ManualClock;
use gleap_etl::emulator::{Emulator, EmulatorConfig, FaultConfig, Quota};
use serde_json::{Value, json};

use crate::util::Api;

async fn start(config: EmulatorConfig) -> (Emulator, Api) {
    let emulator = Emulator::start(config).await.unwrap();
    let api = Api::new(&emulator);
    (emulator, api)
}

fn manual() -> (Arc<ManualClock>, EmulatorConfig) {
    let clock = Arc::new(ManualClock::at_2024());
    let config = EmulatorConfig {
        clock: clock.clone(),
        quota: None,
        ..Default::default()
    };
    (clock, config)
}

/// A document's id as clients read it (`gleap::answer::id`: `id`, else `_id`).
fn id(v: &Value) -> String {
    gleap_etl::gleap::answer::id(v).expect("an id").to_string()
}

#[tokio::test]
async fn sessions_create_get_find_update_list_delete() {
    let (_clock, config) = manual();
    let (emulator, api) = start(config).await;

    let (status, s) = api.post("/sessions", json!({"userId": "u1", "email": "ada@x.io", "name": "Ada", "customData": {"plan": "pro"}})).await;
    assert_eq!(status, 200);
    let sid = id(&s);
    assert_eq!(s["id"], s["_id"]);
    assert_eq!(sid.len(), 24);
    assert_eq!(s["createdAt"], "2024-01-01T00:00:00.000Z");

    assert_eq!(api.get(&format!("/sessions/{sid}")).await, (200, s.clone()));
    assert_eq!(api.get("/sessions/by-user-id/u1").await.1["_id"], sid);
    let (status, body) = api.get("/sessions/by-user-id/nobody").await;
    assert_eq!(status, 404);
    assert!(body["message"].as_str().unwrap().contains("nobody"));

    let (status, updated) = api
        .put(
            &format!("/sessions/{sid}"),
            json!({"name": "Ada L.", "customData": {"plan": "team"}}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            updated["name"].as_str(),
            updated["customData"]["plan"].as_str()
        ),
        (Some("Ada L."), Some("team"))
    );
    assert_eq!(updated["email"], "ada@x.io", "fields not sent stay");

    let (status, list) = api.get("/sessions").await;
    assert_eq!(status, 200);
    assert!(list.is_array(), "GET /sessions answers a bare array");
    assert_eq!(list.as_array().unwrap().len(), 1);

    assert_eq!(
        api.delete(&format!("/sessions/{sid}")).await,
        (204, Value::Null)
    );
    assert_eq!(api.get(&format!("/sessions/{sid}")).await.0, 404);
    assert_eq!(api.get("/sessions/by-user-id/u1").await.0, 404);
    assert_eq!(api.delete(&format!("/sessions/{sid}")).await.0, 404);
    assert_eq!(
        api.put(&format!("/sessions/{sid}"), json!({"name": "x"}))
            .await
            .0,
        404
    );
    emulator.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_second_post_with_a_user_id_makes_a_second_session() {
    let (_clock, config) = manual();
    let (emulator, api) = start(config).await;
    let (_, first) = api.post("/sessions", json!({"userId": "dup"})).await;
    let (_, second) = api.post("/sessions", json!({"userId": "dup"})).await;
    assert_ne!(id(&first), id(&second));
    assert_eq!(
        api.get("/sessions/by-user-id/dup").await.1["_id"],
        first["_id"],
        "the oldest is found"
    );
    let stats = emulator.stats();
    assert_eq!(stats["entities"]["sessions"], 2);
    assert_eq!(stats["sessions_sharing_a_user_id"]["user_ids"], 1);
    assert_eq!(
        stats["sessions_sharing_a_user_id"]["examples"],
        json!(["dup"])
    );
}

#[tokio::test]
async fn tickets_create_get_update_list_with_bug_ids_and_populated_sessions() {
    let (_clock, config) = manual();
    let (emulator, api) = start(config).await;
    let (_, s) = api
        .post(
            "/sessions",
            json!({"userId": "u1", "email": "ada@x.io", "name": "Ada"}),
        )
        .await;
    let (status, t) = api
        .post("/tickets", json!({"title": "Login broken", "type": "BUG", "priority": "HIGH", "session": s["_id"], "tags": ["login"], "customData": {"importId": "zd-1"}}))
        .await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["bugId"], 1);
    assert!(
        t.get("_id").is_none(),
        "tickets answer `id`, not `_id`: {t}"
    );
    assert_eq!(
        t["session"],
        json!({"id": s["_id"], "email": "ada@x.io", "name": "Ada", "userId": "u1"})
    );
    assert_eq!(t["status"], "OPEN");
    let (_, t2) = api.post("/tickets", json!({"title": "Second"})).await;
    assert_eq!(t2["bugId"], 2);

    let tid = id(&t);
    assert_eq!(api.get(&format!("/tickets/{tid}")).await, (200, t.clone()));
    let (status, updated) = api
        .put(
            &format!("/tickets/{tid}"),
            json!({"status": "DONE", "priority": "LOW"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (updated["status"].as_str(), updated["priority"].as_str()),
        (Some("DONE"), Some("LOW"))
    );
    assert_eq!(updated["bugId"], 1);

    let (status, list) = api.get("/tickets?limit=1&sort=-bugId").await;
    assert_eq!(status, 200);
    assert_eq!(list["count"], 1);
    assert_eq!(list["totalCount"], 2);
    assert_eq!(list["tickets"][0]["title"], "Second");
    assert_eq!(api.get("/tickets/000000000000000000000000").await.0, 404);

    // Gleap's ArchiveTicket / UnarchiveTicket: archived tickets stay listed unless
    // `ignoreArchived=true`.
    let (status, archived) = api.put(&format!("/tickets/{tid}/archive"), json!({})).await;
    assert_eq!(
        (status, &archived["archived"]),
        (200, &json!(true)),
        "{archived}"
    );
    assert!(archived["archivedAt"].is_string(), "{archived}");
    assert_eq!(api.get("/tickets").await.1["totalCount"], 2);
    assert_eq!(
        api.get("/tickets?ignoreArchived=true").await.1["totalCount"],
        1
    );
    let (status, back) = api
        .put(&format!("/tickets/{tid}/unarchive"), json!({}))
        .await;
    assert_eq!((status, &back["archived"]), (200, &json!(false)), "{back}");
    assert_eq!(
        api.get("/tickets?ignoreArchived=true").await.1["totalCount"],
        2
    );
    assert_eq!(
        api.put("/tickets/000000000000000000000000/archive", json!({}))
            .await
            .0,
        404
    );
    emulator.shutdown().await.unwrap();
}

#[tokio::test]
async fn references_must_exist_and_values_must_fit() {
    let (_clock, config) = manual();
    let (emulator, api) = start(config).await;
    let ghost = "65a000000000000000000000";
    let (status, body) = api
        .post("/tickets", json!({"title": "x", "session": ghost}))
        .await;
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap().contains("no session"),
        "{body}"
    );
    assert_eq!(
        api.post("/tickets", json!({"priority": "URGENT"})).await.0,
        400
    );
    assert_eq!(api.post("/tickets", json!({"title": 5})).await.0, 400);
    assert_eq!(
        api.post("/messages", json!({"ticket": ghost, "comment": "x"}))
            .await
            .0,
        400
    );
    assert_eq!(
        api.post("/messages", json!({"comment": "no ticket"}))
            .await
            .0,
        400
    );
    let (_, t) = api.post("/tickets", json!({"title": "x"})).await;
    assert_eq!(
        api.post(
            "/messages",
            json!({"ticket": t["_id"], "comment": "x", "session": ghost})
        )
        .await
        .0,
        400
    );
    assert_eq!(
        api.post("/messages", json!({"ticket": t["_id"], "comment": 42}))
            .await
            .0,
        400
    );
    let (status, body) = api
        .send(
            api.request(reqwest::Method::POST, "/sessions")
                .body("[1,2]"),
        )
        .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (400, Some("The body must be a JSON object"))
    );
    let (status, body) = api
        .send(api.request(reqwest::Method::POST, "/sessions").body("{bad"))
        .await;
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("Invalid JSON body")
    );
    emulator.shutdown().await.unwrap();
}

#[tokio::test]
async fn unknown_fields_are_dropped_silently_and_counted() {
    let (_clock, config) = manual();
    let (emulator, api) = start(config).await;
    let (status, s) = api
        .post(
            "/sessions",
            json!({"userId": "u1", "emial": "typo@x.io", "plan": "pro"}),
        )
        .await;
    assert_eq!(status, 200);
    assert!(s.get("emial").is_none());
    assert_eq!(s["plan"], "pro");
    let (_, t) = api
        .post(
            "/tickets",
            json!({"title": "t", "createdAt": "2020-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(
        t["createdAt"], "2024-01-01T00:00:00.000Z",
        "tickets cannot be back-dated"
    );
    api.post("/messages", json!({"ticket": t["_id"], "comment": "c", "attachments": [{"name": "a.png", "url": "https://x/a.png", "size": 1}]})).await;
    let stats = emulator.stats();
    assert_eq!(
        stats["dropped_fields"],
        json!({"sessions": {"emial": 1}, "tickets": {"createdAt": 1}, "messages": {"attachments[0].size": 1}})
    );
}

#[tokio::test]
async fn messages_as_text_doc_note_customer_and_with_attachments() {
    let (_clock, config) = manual();
    let (emulator, api) = start(config).await;
    let (_, s) = api
        .post(
            "/sessions",
            json!({"userId": "u1", "email": "c@x.io", "name": "Cus"}),
        )
        .await;
    let (_, t) = api
        .post("/tickets", json!({"title": "t", "session": s["_id"]}))
        .await;
    let (_, other) = api.post("/tickets", json!({"title": "other"})).await;
    let tid = t["id"].clone();
    let doc = json!({"type": "doc", "content": [{"type": "paragraph", "content": [{"type": "text", "text": "Hi ", "marks": [{"type": "bold"}]}]}]});
    let cases = [
        json!({"ticket": tid, "comment": "plain text", "sendToChannel": false}),
        json!({"ticket": tid, "comment": doc, "sendToChannel": false, "attachments": [{"name": "fix.png", "url": "https://e/fix.png", "type": "image/png"}]}),
        json!({"ticket": tid, "comment": "internal", "isNote": true}),
        json!({"ticket": tid, "comment": "from the customer", "session": s["_id"]}),
        json!({"ticket": other["id"], "comment": "agent reply that notifies"}),
    ];
    let mut created = Vec::new();
    for body in cases {
        let (status, m) = api.post("/messages", body).await;
        assert_eq!(status, 200, "{m}");
        created.push(m);
    }
    assert_eq!(created[0]["type"], "TEXT");
    assert_eq!(created[0]["user"]["firstName"], "API", "agent-authored");
    // As the live API answers: text in data.content, comment and isNote write-only.
    assert_eq!(created[1]["data"]["content"], doc);
    assert_eq!(created[1]["comment"], Value::Null);
    assert_eq!(created[1]["attachments"][0]["name"], "fix.png");
    assert_eq!(created[2]["type"], "NOTE");
    assert_eq!(created[2]["isNote"], Value::Null);
    assert!(
        created
            .iter()
            .all(|m| m.get("_id").is_none() && m["id"].is_string())
    );
    assert_eq!(
        created[3]["session"]["email"], "c@x.io",
        "customer-authored"
    );
    assert!(created[3].get("user").is_none());

    // In conversation order, whatever `sort` asks (as Gleap: tmcinerney/gleap 617ecce).
    for sort in ["", "&sort=-createdAt", "&sort=createdAt"] {
        let (status, list) = api
            .get(&format!(
                "/messages?ticket={}{sort}",
                t["id"].as_str().unwrap()
            ))
            .await;
        assert_eq!(status, 200);
        let comments: Vec<&Value> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|m| &m["data"]["content"])
            .collect();
        assert_eq!(comments.len(), 4);
        assert_eq!(comments[0], "plain text", "{sort}");
        assert_eq!(comments[3], "from the customer", "{sort}");
    }
    assert_eq!(
        emulator.stats()["customer_notifications"],
        1,
        "only the last message would notify a customer"
    );
}

#[tokio::test]
async fn every_auth_error_is_json() {
    let (_clock, config) = manual();
    let (emulator, api) = start(config).await;
    let url = format!("{}/sessions", api.base);
    let cases = [
        (api.client.get(&url).header("project", &api.project), 401),
        (
            api.client
                .get(&url)
                .bearer_auth("wrong")
                .header("project", &api.project),
            401,
        ),
        (
            api.client
                .get(&url)
                .header("Authorization", &api.key)
                .header("project", &api.project),
            401,
        ),
        (api.client.get(&url).bearer_auth(&api.key), 403),
        (
            api.client
                .get(&url)
                .bearer_auth(&api.key)
                .header("project", "000000000000000000000000"),
            403,
        ),
    ];
    for (request, expected) in cases {
        let (status, body) = api.send(request).await;
        assert_eq!(status, expected);
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
    let stats = emulator.stats();
    assert_eq!(
        (stats["unauthorized"].as_u64(), stats["forbidden"].as_u64()),
        (Some(3), Some(2))
    );
    let (status, body) = api.get("/nowhere").await;
    assert_eq!(status, 404);
    assert!(body["message"].is_string());
}

#[tokio::test]
async fn the_quota_answers_429_with_retry_after_until_the_window_moves() {
    let (clock, mut config) = manual();
    config.quota = Some(Quota {
        requests: 3,
        window: Duration::from_secs(60),
    });
    let (emulator, api) = start(config).await;
    for _ in 0..3 {
        assert_eq!(api.get("/sessions").await.0, 200);
    }
    clock.advance(Duration::from_secs(20));
    let response = api
        .request(reqwest::Method::GET, "/sessions")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(response.headers()["retry-after"], "40");
    let body: Value = response.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("rate limit"));
    clock.advance(Duration::from_secs(40));
    assert_eq!(api.get("/sessions").await.0, 200, "the window moved on");
    assert_eq!(emulator.stats()["rate_limited"], 1);

    let (clock, mut config) = manual();
    config.quota = Some(Quota {
        requests: 1,
        window: Duration::from_secs(60),
    });
    config.retry_after = false;
    let (_quiet, api) = start(config).await;
    api.get("/sessions").await;
    clock.advance(Duration::from_secs(1));
    let response = api
        .request(reqwest::Method::GET, "/sessions")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    assert!(response.headers().get("retry-after").is_none());
}

fn faults(f: impl FnOnce(&mut FaultConfig)) -> EmulatorConfig {
    let (_clock, mut config) = manual();
    config.faults.seed = 7;
    f(&mut config.faults);
    config
}

#[tokio::test]
async fn injected_server_errors_change_nothing() {
    let (emulator, api) = start(faults(|f| f.error_rate = 1.0)).await;
    let (status, body) = api.post("/sessions", json!({"userId": "u1"})).await;
    assert!([500, 502, 503].contains(&status), "{status}");
    assert!(body["message"].is_string());
    assert_eq!(emulator.stats()["entities"]["sessions"], 0);
    assert_eq!(emulator.stats()["faults"]["errors"], 1);
}

#[tokio::test]
async fn injected_resets_drop_the_connection_before_the_write() {
    let (emulator, api) = start(faults(|f| f.reset_rate = 1.0)).await;
    let err = api
        .request(reqwest::Method::POST, "/sessions")
        .json(&json!({"userId": "u1"}))
        .send()
        .await
        .unwrap_err();
    assert!(
        !err.is_status() && !err.is_timeout(),
        "a connection error: {err:?}"
    );
    assert_eq!(emulator.stats()["entities"]["sessions"], 0);
    assert_eq!(emulator.stats()["faults"]["resets"], 1);
    assert_eq!(emulator.stats()["requests"]["POST /sessions"]["reset"], 1);
}

#[tokio::test]
async fn injected_lost_answers_happen_after_the_write() {
    let (emulator, api) = start(faults(|f| f.lost_rate = 1.0)).await;
    let err = api
        .request(reqwest::Method::POST, "/sessions")
        .json(&json!({"userId": "u1"}))
        .send()
        .await
        .unwrap_err();
    assert!(!err.is_status(), "no answer: {err:?}");
    assert_eq!(
        emulator.stats()["entities"]["sessions"],
        1,
        "the write was applied"
    );
    assert_eq!(emulator.dump()["sessions"][0]["userId"], "u1");
    assert_eq!(emulator.stats()["faults"]["lost_responses"], 1);
}

#[tokio::test]
async fn fault_shares_follow_the_seeded_rates() {
    let (emulator, api) = start(faults(|f| {
        f.error_rate = 0.2;
        f.reset_rate = 0.1;
    }))
    .await;
    let mut outcomes = [0u32; 3];
    for _ in 0..400 {
        match api.request(reqwest::Method::GET, "/sessions").send().await {
            Ok(r) if r.status().is_success() => outcomes[0] += 1,
            Ok(_) => outcomes[1] += 1,
            Err(_) => outcomes[2] += 1,
        }
    }
    assert!(
        (55..=105).contains(&outcomes[1]),
        "~20% server errors: {outcomes:?}"
    );
    assert!(
        (20..=60).contains(&outcomes[2]),
        "~10% resets: {outcomes:?}"
    );
    assert_eq!(
        emulator.stats()["faults"]["errors"].as_u64(),
        Some(u64::from(outcomes[1]))
    );
}

#[tokio::test(start_paused = true)]
async fn latency_is_added_to_every_answer() {
    let (_emulator, api) = start(faults(|f| f.latency = Duration::from_millis(250))).await;
    let started = tokio::time::Instant::now();
    assert_eq!(api.get("/sessions").await.0, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn lists_filter_by_dotted_paths_ranges_and_page_with_sort() {
    let (clock, config) = manual();
    let (emulator, api) = start(config).await;
    for i in 0..25 {
        let plan = ["free", "pro", "team"][i % 3];
        api.post("/sessions", json!({"userId": format!("u{i:02}"), "customData": {"plan": plan, "importId": format!("imp-{i}")}})).await;
        clock.advance(Duration::from_secs(60));
    }
    let ids = |list: &Value| {
        list.as_array()
            .unwrap()
            .iter()
            .map(|s| s["userId"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };

    let (_, pro) = api.get("/sessions?customData.plan=pro&limit=1000").await;
    assert_eq!(ids(&pro).len(), 8);
    let (_, one) = api.get("/sessions?customData.importId=imp-7").await;
    assert_eq!(ids(&one), ["u07"]);
    let (_, any) = api
        .get("/sessions?customData.importId=imp-1,imp-2&sort=-userId")
        .await;
    assert_eq!(ids(&any), ["u02", "u01"]);

    // u10 was created at 00:10, u14 at 00:14.
    let (_, range) = api
        .get("/sessions?createdAt>=2024-01-01T00:10:00.000Z&createdAt<2024-01-01T00:14:00.000Z")
        .await;
    assert_eq!(ids(&range), ["u10", "u11", "u12", "u13"]);
    let range = api
        .send(
            api.request(reqwest::Method::GET, "/sessions")
                .query(&[("updatedAt>", "2024-01-01T00:23:00.000Z")]),
        )
        .await
        .1;
    assert_eq!(ids(&range), ["u23", "u24"], "an encoded `>=` works too");

    let mut pages = Vec::new();
    for page in 0..3 {
        let (_, list) = api
            .get(&format!(
                "/sessions?sort=-createdAt&limit=10&skip={}",
                page * 10
            ))
            .await;
        pages.extend(ids(&list));
    }
    assert_eq!(pages.len(), 25);
    assert_eq!(pages.first().unwrap(), "u24");
    assert_eq!(pages.last().unwrap(), "u00");
    let (status, body) = api.get("/sessions?limit=many").await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("limit"));
    assert_eq!(emulator.stats()["requests"]["GET /sessions"]["200"], 8);
}

#[tokio::test]
async fn ticket_lists_sort_by_priority_rank_and_filter_by_session() {
    let (_clock, config) = manual();
    let (_emulator, api) = start(config).await;
    let (_, s) = api.post("/sessions", json!({"userId": "u1"})).await;
    for (title, priority) in [("a", "MEDIUM"), ("b", "HIGH"), ("c", "LOW")] {
        api.post(
            "/tickets",
            json!({"title": title, "priority": priority, "session": s["_id"]}),
        )
        .await;
    }
    api.post("/tickets", json!({"title": "d", "priority": "HIGH"}))
        .await;
    let titles = |v: &Value| {
        v["tickets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["title"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let (_, list) = api
        .get(&format!(
            "/tickets?session={}&sort=-priority",
            s["_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(titles(&list), ["b", "a", "c"]);
    assert_eq!(list["totalCount"], 3);
    let (_, list) = api.get("/tickets?priority=HIGH,LOW&sort=priority").await;
    assert_eq!(titles(&list), ["c", "b", "d"]);
    let (_, list) = api.get("/tickets?bugId>=3").await;
    assert_eq!(titles(&list), ["c", "d"]);
}

#[tokio::test]
async fn the_data_file_keeps_the_state_between_runs() {
    let dir = crate::util::Dir::new();
    let data = dir.join("emulator.json");
    let (_clock, mut config) = manual();
    config.data_file = Some(data.clone());
    config.api_key = Some("key".into());
    config.project = Some("65a0000000000000000000aa".into());
    let (emulator, api) = start(config.clone()).await;
    api.post("/sessions", json!({"userId": "kept"})).await;
    api.post("/tickets", json!({"title": "kept"})).await;
    emulator.shutdown().await.unwrap();
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&data).unwrap()).unwrap();
    assert_eq!(saved["sessions"][0]["userId"], "kept");

    let (emulator, api) = start(config).await;
    assert_eq!(api.get("/sessions/by-user-id/kept").await.0, 200);
    assert_eq!(
        api.post("/tickets", json!({"title": "next"})).await.1["bugId"],
        2
    );
    emulator.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_stats_and_dump_routes_answer_over_http() {
    let (_clock, config) = manual();
    let (emulator, api) = start(config).await;
    api.post("/sessions", json!({"userId": "u1"})).await;
    let root = format!("http://{}", emulator.addr());
    let stats: Value = api
        .client
        .get(format!("{root}/__emulator/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["requests"]["POST /sessions"]["200"], 1);
    assert_eq!(stats["total_requests"], 1);
    let dump: Value = api
        .client
        .get(format!("{root}/__emulator/dump"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(dump["sessions"][0]["userId"], "u1");
}

/// Pages `/sessions` by keyset on `field` from `from`: `field>=last&skip=k`, k the sessions of
/// the pages so far at the last page's last timestamp (ties come in `_id` order, so they are
/// the first k). Returns the sessions in the order they came, and how many pages needed a skip.
async fn keyset_walk(api: &Api, field: &str, from: &str, limit: usize) -> (Vec<Value>, usize) {
    let (mut last, mut at_last) = (from.to_string(), 0);
    let mut all: Vec<Value> = Vec::new();
    let mut skips = 0;
    loop {
        skips += usize::from(at_last > 0);
        let (status, page) = api
            .send(api.request(reqwest::Method::GET, "/sessions").query(&[
                ("sort", field.to_string()),
                (&format!("{field}>"), last.clone()),
                ("skip", at_last.to_string()),
                ("limit", limit.to_string()),
            ]))
            .await;
        assert_eq!(status, 200, "{page}");
        let page = page.as_array().unwrap().clone();
        for s in &page {
            let t = s[field].as_str().unwrap().to_string();
            if t == last {
                at_last += 1;
            } else {
                (last, at_last) = (t, 1);
            }
        }
        let done = page.len() < limit;
        all.extend(page);
        if done {
            return (all, skips);
        }
    }
}

#[tokio::test]
async fn generated_sessions_page_by_keyset_and_touched_ones_come_after() {
    let (clock, mut config) = manual();
    config.generate_sessions = 3000;
    let (emulator, api) = start(config).await;
    assert_eq!(emulator.stats()["entities"]["sessions"], 3000);
    let (_, first) = api.get("/sessions/by-user-id/user-000001").await;
    assert_eq!(first["email"], "user-000001@example.com");
    assert!(first["customData"]["seats"].is_u64() && first["customData"]["trial"].is_boolean());

    for field in ["updatedAt", "createdAt"] {
        let (walked, skips) = keyset_walk(&api, field, "2023-01-01T00:00:00.000Z", 7).await;
        let key = |s: &Value| (s[field].as_str().unwrap().to_string(), id(s));
        let keys: Vec<(String, String)> = walked.iter().map(key).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "{field}: in time order, ties by _id");
        sorted.dedup_by(|a, b| a.1 == b.1);
        assert_eq!(sorted.len(), 3000, "{field}: every session once");
        let ties = keys.windows(2).filter(|w| w[0].0 == w[1].0).count();
        assert!(ties > 20, "{field}: {ties} equal timestamps");
        if field == "createdAt" {
            assert!(skips > 0, "some ties were cut by a page");
        }

        // Descending is the same order reversed.
        let mut desc = Vec::new();
        for skip in [0, 1000, 2000] {
            let (_, page) = api
                .get(&format!("/sessions?sort=-{field}&limit=1000&skip={skip}"))
                .await;
            desc.extend(page.as_array().unwrap().iter().map(key));
        }
        desc.reverse();
        assert_eq!(desc, keys, "{field} descending");
    }

    // An incremental export: what changed since the last one.
    clock.advance(Duration::from_secs(1));
    let touched = emulator.touch_sessions(25);
    assert_eq!(touched.len(), 25);
    let (since, _) = keyset_walk(&api, "updatedAt", "2024-01-01T00:00:00.000Z", 10).await;
    let mut want = touched.clone();
    want.sort();
    assert_eq!(since.iter().map(id).collect::<Vec<_>>(), want);
    assert!(
        since
            .iter()
            .all(|s| s["updatedAt"] == "2024-01-01T00:00:01.000Z")
    );
    let (_, again) = api.get(&format!("/sessions/{}", touched[0])).await;
    assert_eq!(again["updatedAt"], "2024-01-01T00:00:01.000Z");

    // Ticket lists count what matches, not only the page.
    for i in 0..7 {
        clock.advance(Duration::from_millis(if i % 2 == 0 { 0 } else { 10 }));
        api.post("/tickets", json!({"title": format!("t{i}")}))
            .await;
    }
    let (_, list) = api
        .get("/tickets?sort=createdAt&createdAt>=2024-01-01T00:00:01.010Z&limit=2&skip=1")
        .await;
    assert_eq!(
        (list["count"].as_u64(), list["totalCount"].as_u64()),
        (Some(2), Some(6))
    );
    emulator.shutdown().await.unwrap();
}

/// The literal form Gleap documents, `?createdAt>=...`, sent as it is written (a client
/// that does not percent-encode `>`): answered, not refused before routing; on a kept-alive
/// connection, after a request with a body, too.
#[tokio::test]
async fn literal_range_filters_in_a_raw_query_are_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (clock, config) = manual();
    let (emulator, api) = start(config).await;
    for i in 0..3 {
        api.post("/sessions", json!({"userId": format!("u{i}")}))
            .await;
        clock.advance(Duration::from_secs(60));
    }
    let mut stream = tokio::net::TcpStream::connect(emulator.addr())
        .await
        .unwrap();
    let body = r#"{"userId":"u<3>"}"#;
    let auth = format!(
        "Authorization: Bearer {}\r\nproject: {}\r\nHost: x\r\n",
        api.key, api.project
    );
    let requests = format!(
        "POST /v3/sessions HTTP/1.1\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}\
         GET /v3/sessions?createdAt>=2024-01-01T00:01:00.000Z&createdAt<2024-01-01T00:02:30.000Z&sort=createdAt HTTP/1.1\r\n{auth}Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(requests.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 2, "{answer}");
    assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 2, "{answer}");
    let list: Value = serde_json::from_str(answer.rsplit("\r\n\r\n").next().unwrap()).unwrap();
    let users: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["userId"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["u1", "u2"], "{answer}");
    let (_, created) = api.get("/sessions/by-user-id/u%3C3%3E").await;
    assert_eq!(created["userId"], "u<3>", "the body passed unchanged");
    emulator.shutdown().await.unwrap();
}
