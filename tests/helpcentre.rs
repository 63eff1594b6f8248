//! The help centre: the shipped Zendesk Guide and Intercom Articles pipelines on their sample
//! dumps, against the emulator. Every category/section/collection arrives once as a Gleap
//! collection under the right parent, every article once in the right collection, with its
//! translations, images as TipTap image nodes and links to other articles pointing at the
//! new ones; re-runs update in place (and an unchanged one writes nothing); with 5% server
//! errors, 2% resets and 1% lost answers, still each object once. Expectations are read from
//! the raw sample files here, not from the sources under test.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use gleap_etl::emulator::{Emulator, EmulatorConfig, FaultConfig};
use serde_json::{Value, json};

use crate::util::{Dir, Run, output, repo, shipped_pipeline};

const KEY: &str = "helpcentre-key";
const PROJECT: &str = "65a0000000000000000000hc";

async fn emulator(faults: bool) -> Emulator {
    emulator_with(faults, None).await
}

async fn emulator_with(
    faults: bool,
    on_request: Option<gleap_etl::emulator::api::RequestHook>,
) -> Emulator {
    let faults = if faults {
        FaultConfig {
            error_rate: 0.05,
            reset_rate: 0.02,
            lost_rate: 0.01,
            seed: 5,
            ..Default::default()
        }
    } else {
        FaultConfig::default()
    };
    Emulator::start(EmulatorConfig {
        api_key: Some(KEY.into()),
        project: Some(PROJECT.into()),
        faults,
        on_request,
        ..Default::default()
    })
    .await
    .unwrap()
}

fn command(
    pipeline: &str,
    dir_var: &str,
    dump: &Path,
    state: &Path,
    emulator: &Emulator,
) -> Command {
    let mut cmd = shipped_pipeline(pipeline, &[], emulator, KEY, PROJECT);
    cmd.env_remove("RUST_LOG")
        .env_remove("GLEAP_HELP_CENTER_URL")
        .env(dir_var, dump)
        .env("STATE_DIR", state);
    cmd
}

async fn run(pipeline: &str, dir_var: &str, dump: &Path, state: &Path, emulator: &Emulator) -> Run {
    output(command(pipeline, dir_var, dump, state, emulator)).await
}

/// The shipped Zendesk Guide pipeline on `dump`.
async fn guide(dump: &Path, state: &Path, emulator: &Emulator) -> Run {
    run(
        "zendesk_guide_to_gleap.yaml",
        "ZENDESK_DIR",
        dump,
        state,
        emulator,
    )
    .await
}

fn sample(file: &str) -> Value {
    let path = repo().join("samples").join(file);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn id_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The emulator's help centre: collections and articles by externalId, each checked to be
/// there once.
struct HelpCentre {
    collections: HashMap<String, Value>,
    articles: HashMap<String, Value>,
}

impl HelpCentre {
    fn of(emulator: &Emulator) -> HelpCentre {
        let dump = emulator.dump();
        let by_external = |key: &str| {
            let mut out = HashMap::new();
            for doc in dump["helpcenter"][key].as_array().unwrap() {
                let ext = doc["externalId"].as_str().unwrap().to_string();
                assert!(
                    out.insert(ext.clone(), doc.clone()).is_none(),
                    "{key}: {ext} is in Gleap twice"
                );
            }
            out
        };
        HelpCentre {
            collections: by_external("collections"),
            articles: by_external("articles"),
        }
    }

    fn collection_id(&self, external: &str) -> String {
        self.collections[external]["_id"].as_str().unwrap().into()
    }

    /// The Gleap article of each source article, by source id.
    fn by_source(&self, articles: &[Value]) -> HashMap<String, &Value> {
        articles
            .iter()
            .map(|a| {
                (
                    id_text(&a["id"]),
                    &self.articles[&format!("articles:{}", id_text(&a["id"]))],
                )
            })
            .collect()
    }
}

/// The `href`s of an HTML body.
fn hrefs(body: &str) -> impl Iterator<Item = &str> {
    body.split("href=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap())
}

/// Asserts that the images of an article are its HTML body's, in order, with their source.
fn assert_images_kept(images: &[Value], body: &str, article: &Value) {
    let srcs: Vec<&str> = body
        .split("<img src=\"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap())
        .collect();
    assert_eq!(
        images
            .iter()
            .map(|i| i["src"].as_str().unwrap())
            .collect::<Vec<_>>(),
        srcs,
        "article {}",
        article["id"]
    );
}

/// Every link href and every image of a TipTap document, in order.
fn links_and_images(doc: &Value, links: &mut Vec<String>, images: &mut Vec<Value>) {
    if let Some(marks) = doc["marks"].as_array() {
        for m in marks.iter().filter(|m| m["type"] == "link") {
            links.push(m["attrs"]["href"].as_str().unwrap().into());
        }
    }
    if doc["type"] == "image" {
        images.push(doc["attrs"].clone());
    }
    for child in doc["content"].as_array().into_iter().flatten() {
        links_and_images(child, links, images);
    }
}

fn article_links(article: &Value, locale: &str) -> (Vec<String>, Vec<Value>) {
    let (mut links, mut images) = (Vec::new(), Vec::new());
    links_and_images(&article["content"][locale], &mut links, &mut images);
    (links, images)
}

/// The new URL of an article, as the shipped pipelines' `article_url` makes it.
fn new_url(article: &Value, locale: &str) -> String {
    format!(
        "https://help.example.com/{locale}/articles/{}-",
        article["docId"]
    )
}

/// The Zendesk Guide sample, checked against what the emulator holds.
fn check_zendesk(help: &HelpCentre) {
    let categories = sample("zendesk/help_center_categories.json")["categories"].clone();
    let sections = sample("zendesk/help_center_sections.json")["sections"].clone();
    let articles = sample("zendesk/help_center_articles.json")["articles"].clone();
    let translations = sample("zendesk/help_center_translations.json")["translations"].clone();
    let (categories, sections, articles) = (
        categories.as_array().unwrap(),
        sections.as_array().unwrap(),
        articles.as_array().unwrap(),
    );
    assert_eq!(
        help.collections.len(),
        categories.len() + sections.len(),
        "each category and section once"
    );
    assert_eq!(help.articles.len(), articles.len(), "each article once");
    for c in categories {
        let got = &help.collections[&format!("categories:{}", id_text(&c["id"]))];
        assert_eq!(got["title"], json!({"en": c["name"]}));
        assert_eq!(got["parent"], Value::Null, "categories are top level");
    }
    for s in sections {
        let got = &help.collections[&format!("sections:{}", id_text(&s["id"]))];
        assert_eq!(got["title"], json!({"en": s["name"]}));
        let parent = match &s["parent_section_id"] {
            Value::Null => {
                help.collection_id(&format!("categories:{}", id_text(&s["category_id"])))
            }
            p => help.collection_id(&format!("sections:{}", id_text(p))),
        };
        assert_eq!(got["parent"], json!(parent), "section {} nested", s["id"]);
    }
    let by_source = help.by_source(articles);
    for a in articles {
        let got = by_source[&id_text(&a["id"])];
        assert_eq!(
            got["helpcenterCollection"],
            json!(help.collection_id(&format!("sections:{}", id_text(&a["section_id"])))),
            "article {} in its section",
            a["id"]
        );
        assert_eq!(got["title"]["en"], a["title"]);
        // Restricted to a user segment: kept a draft.
        let draft = a["draft"] == true || !a["user_segment_id"].is_null();
        assert_eq!(got["isDraft"], json!(draft));
        assert_eq!(got["tags"], a["label_names"]);
        assert_eq!(got["content"]["en"]["type"], "doc");
        assert!(
            got["plainContent"]["en"].as_str().unwrap().len() > 10,
            "{got}"
        );
        // Links to other articles of the old help centre point at the new ones; others stay.
        let body = a["body"].as_str().unwrap();
        let (links, images) = article_links(got, "en");
        for old in hrefs(body) {
            let target = articles.iter().find(|t| {
                let id = id_text(&t["id"]);
                (old.contains("acme.zendesk.com") || old.starts_with('/'))
                    && old.contains(&format!("/articles/{id}"))
            });
            match target {
                Some(t) => {
                    let new = by_source[&id_text(&t["id"])];
                    let want = new_url(new, "en");
                    assert!(
                        links.iter().any(|l| l.starts_with(&want)),
                        "a link to {old} should point at {want}…: {links:?}"
                    );
                    assert!(!links.iter().any(|l| l == old), "{old} kept: {links:?}");
                }
                None => assert!(links.iter().any(|l| l == old), "{old} lost: {links:?}"),
            }
        }
        // Images are image nodes, in place, with their source.
        assert_images_kept(&images, body, a);
    }
    // Translations arrive as further locales of their article.
    for t in translations.as_array().unwrap() {
        let got = by_source[&id_text(&t["source_id"])];
        let locale = t["locale"].as_str().unwrap();
        assert_eq!(got["title"][locale], t["title"]);
        assert_eq!(got["content"][locale]["type"], "doc", "{got}");
        assert!(
            got["plainContent"][locale]
                .as_str()
                .unwrap()
                .contains("Herunterladen")
        );
    }
    assert!(
        !by_source
            .values()
            .any(|a| a["content"].to_string().contains("\"attachments\"")),
        "no attachments list on articles"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zendesk_guide_sample_arrives_nested_once_with_translations_images_and_links() {
    check_zendesk(
        &sample_run(
            "zendesk_guide_to_gleap.yaml",
            "ZENDESK_DIR",
            "samples/zendesk",
        )
        .await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intercom_articles_sample_arrives_nested_once_with_translations_images_and_links() {
    check_intercom(
        &sample_run(
            "intercom_articles_to_gleap.yaml",
            "INTERCOM_DIR",
            "samples/intercom",
        )
        .await,
    );
}

/// The help centre after a run of `pipeline` on the sample dump `samples`.
async fn sample_run(pipeline: &str, dir_var: &str, samples: &str) -> HelpCentre {
    let dir = Dir::new();
    let emulator = emulator(false).await;
    let run = run(
        pipeline,
        dir_var,
        &repo().join(samples),
        &dir.join("state"),
        &emulator,
    )
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    HelpCentre::of(&emulator)
}

/// The Intercom Articles sample, checked against what the emulator holds.
fn check_intercom(help: &HelpCentre) {
    let mut groups = sample("intercom/help_center_collections.json")["data"]
        .as_array()
        .unwrap()
        .clone();
    groups.extend(
        sample("intercom/help_center_sections.json")["data"]
            .as_array()
            .unwrap()
            .clone(),
    );
    let articles = sample("intercom/articles.json")["data"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        help.collections.len(),
        groups.len(),
        "each collection and section once"
    );
    assert_eq!(help.articles.len(), articles.len(), "each article once");
    for g in &groups {
        let got = &help.collections[&format!("collections:{}", id_text(&g["id"]))];
        assert_eq!(got["title"]["en"], g["name"]);
        if let Some(t) = g["translated_content"].as_object() {
            for (locale, content) in t.iter().filter(|(_, c)| c.is_object()) {
                assert_eq!(got["title"][locale], content["name"], "{got}");
            }
        }
        let parent = match &g["parent_id"] {
            Value::Null => Value::Null,
            p => json!(help.collection_id(&format!("collections:{}", id_text(p)))),
        };
        assert_eq!(got["parent"], parent, "{} nested", g["id"]);
    }
    let by_source = help.by_source(&articles);
    for a in &articles {
        let got = by_source[&id_text(&a["id"])];
        assert_eq!(
            got["helpcenterCollection"],
            json!(help.collection_id(&format!("collections:{}", id_text(&a["parent_id"])))),
        );
        assert_eq!(got["isDraft"], json!(a["state"] != "published"));
        if let Some(t) = a["translated_content"].as_object() {
            for (locale, content) in t.iter().filter(|(_, c)| c.is_object()) {
                assert_eq!(got["title"][locale], content["title"]);
                assert_eq!(got["content"][locale]["type"], "doc");
            }
        }
        let body = a["body"].as_str().unwrap();
        let (links, images) = article_links(got, "en");
        for old in hrefs(body) {
            let target = articles
                .iter()
                .find(|t| old.contains(&format!("/articles/{}-", id_text(&t["id"]))))
                .expect("the sample's links are to its articles");
            let want = new_url(by_source[&id_text(&target["id"])], "en");
            assert!(
                links.iter().any(|l| l.starts_with(&want)),
                "{old} should point at {want}…: {links:?}"
            );
        }
        assert_images_kept(&images, body, a);
    }
}

/// Writes (POST, PUT) the emulator carried out on help-centre routes.
fn writes(emulator: &Emulator) -> u64 {
    carried_out(&emulator.stats(), |route| {
        route.contains("/helpcenter/") && (route.starts_with("POST") || route.starts_with("PUT"))
    })
}

/// Requests the emulator answered 200 on the routes `route` picks.
fn carried_out(stats: &Value, route: impl Fn(&str) -> bool) -> u64 {
    stats["requests"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(r, _)| route(r))
        .map(|(_, by_status)| by_status["200"].as_u64().unwrap_or(0))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_centre_reruns_update_in_place_and_an_unchanged_rerun_writes_nothing() {
    let dir = Dir::new();
    let emulator = emulator(false).await;
    let dump = dir.join("dump");
    std::fs::create_dir_all(&dump).unwrap();
    for f in [
        "help_center_categories.json",
        "help_center_sections.json",
        "help_center_articles.json",
        "help_center_translations.json",
    ] {
        std::fs::copy(repo().join("samples/zendesk").join(f), dump.join(f)).unwrap();
    }
    let state = dir.join("state");
    let first = guide(&dump, &state, &emulator).await;
    assert_eq!(first.code, 0, "{first:?}");
    let before = HelpCentre::of(&emulator);
    let written = writes(&emulator);
    // The first article links to the second, created after it: its link is rewritten by
    // an update once the second exists (the second's link back is right at once).
    assert_eq!(
        written,
        5 + 3 + 1,
        "5 collections, 3 articles and 1 link update"
    );

    let again = guide(&dump, &state, &emulator).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(
        writes(&emulator),
        written,
        "an unchanged re-run writes nothing"
    );
    assert!(again.stderr.contains("3 unchanged"), "{again:?}");

    // An article edited at the source: the same Gleap article, with the new text.
    let path = dump.join("help_center_articles.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let edited = text.replace("and click <em>Download</em>", "and click <em>Get PDF</em>");
    assert_ne!(text, edited);
    std::fs::write(&path, edited).unwrap();
    let edit = guide(&dump, &state, &emulator).await;
    assert_eq!(edit.code, 0, "{edit:?}");
    assert_eq!(writes(&emulator), written + 1, "one update");
    let after = HelpCentre::of(&emulator);
    let ext = "articles:360000300003";
    assert_eq!(
        after.articles[ext]["_id"], before.articles[ext]["_id"],
        "updated in place"
    );
    assert!(
        after.articles[ext]["plainContent"]["en"]
            .as_str()
            .unwrap()
            .contains("Get PDF")
    );
    assert!(
        after.articles[ext]["plainContent"]["de"]
            .as_str()
            .unwrap()
            .contains("Herunterladen")
    );
    assert_eq!(after.collections.len(), before.collections.len());

    // The state store lost: found again by externalId, nothing created twice.
    std::fs::remove_dir_all(&state).unwrap();
    let lost = guide(&dump, &state, &emulator).await;
    assert_eq!(lost.code, 0, "{lost:?}");
    let found = HelpCentre::of(&emulator);
    assert_eq!(found.collections.len(), 5);
    assert_eq!(found.articles.len(), 3);
    check_zendesk(&found);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_centre_with_faults_still_arrives_each_object_once() {
    for (pipeline, var, samples) in [
        (
            "zendesk_guide_to_gleap.yaml",
            "ZENDESK_DIR",
            "samples/zendesk",
        ),
        (
            "intercom_articles_to_gleap.yaml",
            "INTERCOM_DIR",
            "samples/intercom",
        ),
    ] {
        let dir = Dir::new();
        let emulator = emulator(true).await;
        let state = dir.join("state");
        let mut code = -1;
        // A record whose retries ran out is a dead letter; the next run writes it.
        for _ in 0..3 {
            let r = run(pipeline, var, &repo().join(samples), &state, &emulator).await;
            code = r.code;
            if code == 0 {
                break;
            }
            assert_eq!(r.code, 1, "{r:?}");
        }
        assert_eq!(code, 0, "{pipeline}");
        let faults = emulator.stats()["faults"].clone();
        assert!(
            faults["errors"].as_u64().unwrap()
                + faults["resets"].as_u64().unwrap()
                + faults["lost_responses"].as_u64().unwrap()
                > 0,
            "{pipeline}: the faults should have hit: {faults}"
        );
        let help = HelpCentre::of(&emulator);
        if var == "ZENDESK_DIR" {
            check_zendesk(&help);
        } else {
            check_intercom(&help);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulated_help_centre_checks_shapes_nesting_and_auth_like_gleap() {
    let emulator = emulator(false).await;
    let api = crate::util::Api::new(&emulator);
    // A title that is not localized is refused: the shape the sink relies on is enforced.
    let (status, body) = api
        .post("/helpcenter/collections", json!({"title": "Plain"}))
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, top) = api
        .post(
            "/helpcenter/collections",
            json!({"title": {"en": "Top"}, "externalId": "x:1", "unknownField": 1}),
        )
        .await;
    assert_eq!(status, 200, "{top}");
    let top_id = top["id"].as_str().unwrap();
    assert_eq!(top["_id"], top["id"]);
    let (status, _) = api
        .post(
            "/helpcenter/collections",
            json!({"title": {"en": "Orphan"}, "parent": "6a1000000000000000000999"}),
        )
        .await;
    assert_eq!(status, 400, "a parent that does not exist");
    let (_, sub) = api
        .post(
            "/helpcenter/collections",
            json!({"title": {"en": "Sub"}, "parent": top_id}),
        )
        .await;
    // GET /helpcenter/collections: top level with counts; /all: subcollections too.
    let (_, listed) = api.get("/helpcenter/collections").await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["subCollectionsCount"], 1);
    let (_, all) = api.get("/helpcenter/collections/all").await;
    assert_eq!(all.as_array().unwrap().len(), 2);
    let sub_id = sub["id"].as_str().unwrap();
    let doc = json!({"type": "doc", "content": [{"type": "paragraph"}]});
    let (status, article) = api
        .post(
            &format!("/helpcenter/collections/{sub_id}/articles"),
            json!({"title": {"en": "A"}, "content": {"en": doc}, "isDraft": false}),
        )
        .await;
    assert_eq!(status, 200, "{article}");
    assert_eq!(article["docId"], 1);
    assert_eq!(article["helpcenterCollection"], sub_id);
    let (status, _) = api
        .post(
            &format!("/helpcenter/collections/{sub_id}/articles"),
            json!({"title": {"en": "B"}, "content": {"en": "not a doc"}}),
        )
        .await;
    assert_eq!(status, 400, "content must be TipTap documents");
    let article_id = article["id"].as_str().unwrap();
    let (status, moved) = api
        .put(
            &format!("/helpcenter/collections/{sub_id}/articles/{article_id}/move"),
            json!({"newCollectionId": top_id}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(moved["helpcenterCollection"], top_id);
    let stats = emulator.stats();
    assert_eq!(
        stats["help_centre"],
        json!({"collections": 2, "articles": 1})
    );
    assert_eq!(
        stats["dropped_fields"]["helpcenter_collections"]["unknownField"],
        1
    );
    // The gate: no key, no answer.
    let (status, _) = api
        .send(
            api.client
                .get(format!("{}/helpcenter/collections", api.base))
                .header("project", PROJECT),
        )
        .await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_centre_killed_mid_run_and_run_again_arrives_each_object_once() {
    let dir = Dir::new();
    let killer = crate::util::Killer::new();
    let emulator = emulator_with(false, Some(killer.hook())).await;
    let state = dir.join("state");
    let dump = repo().join("samples/zendesk");
    // Killed right after the second category's create (before its answer came back), then
    // between an articles list and a create, then right after the second article's create.
    for at in [3, 8, 2] {
        let done = emulator.stats()["total_requests"].as_u64().unwrap();
        let cmd = command(
            "zendesk_guide_to_gleap.yaml",
            "ZENDESK_DIR",
            &dump,
            &state,
            &emulator,
        );
        killer.run_until_killed(cmd, done + at).await;
    }
    let last = guide(&dump, &state, &emulator).await;
    assert_eq!(last.code, 0, "{last:?}");
    check_zendesk(&HelpCentre::of(&emulator));
    let stats = emulator.stats();
    let creates = carried_out(&stats, |route| route.starts_with("POST /helpcenter/"));
    assert_eq!(creates, 5 + 3, "no create sent twice: {stats}");
}

#[test]
fn help_centre_records_that_cannot_be_placed_are_dead_letters_with_their_reason() {
    let dir = Dir::new();
    dir.write(
        "collections.jsonl",
        [
            r#"{"id": "a", "title": "A"}"#,
            r#"{"id": "b", "title": "B", "parent": "c"}"#,
            r#"{"id": "c", "title": "C", "parent": "b"}"#,
            r#"{"id": "d", "title": "D", "parent": "nowhere"}"#,
            r#"{"id": "e", "title": "E", "parent": "d"}"#,
            r#"{"id": "f", "title": {"en": "F", "de-DE": "F!"}, "parent": "a", "colour": "red"}"#,
        ]
        .join("\n"),
    );
    dir.write(
        "articles.jsonl",
        [
            r#"{"id": 1, "title": "One", "content": "Plain text body", "collection": "a"}"#,
            r#"{"id": 2, "title": "Two", "content": "x", "collection": "zzz"}"#,
            r#"{"id": 3, "content": "no title", "collection": "a"}"#,
            r#"{"id": 1, "title": "One again", "collection": "a"}"#,
        ]
        .join("\n"),
    );
    dir.write(
        "p.yaml",
        r#"version: 1
name: hc
streams:
  - name: collections
    source: { jsonl: { path: collections.jsonl } }
    sink: { gleap: { entity: collections } }
  - name: articles
    source: { jsonl: { path: articles.jsonl } }
    sink: { gleap: { entity: articles, refs: { collection: collections } } }
"#,
    );
    let run = dir.run(&["run", "p.yaml", "--emulator", "--no-progress"]);
    assert_eq!(run.code, 1, "{run:?}");
    let letters = crate::util::json_lines(&dir.read(".gleap-etl/hc/dead-letter.jsonl"));
    let reason = |stream: &str, id: Value| -> String {
        letters
            .iter()
            .find(|l| l["stream"] == stream && l["record"]["id"] == id)
            .unwrap_or_else(|| panic!("no dead letter for {stream} {id}: {letters:?}"))["reason"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(reason("collections", json!("b")).contains("circle"));
    assert!(reason("collections", json!("c")).contains("circle"));
    assert!(reason("collections", json!("d")).contains("\"nowhere\", which is no collection"));
    assert!(
        reason("collections", json!("e")).contains("parent collection \"d\" could not be written")
    );
    assert!(reason("collections", json!("f")).contains("`colour`"));
    assert!(reason("articles", json!(2)).contains("\"zzz\""));
    assert!(reason("articles", json!(3)).contains("needs a `title`"));
    assert!(letters.iter().any(|l| l["record"]["title"] == "One again"
        && l["reason"].as_str().unwrap().contains("came first")));
    assert_eq!(letters.len(), 8, "{letters:?}");
    let data: Value = serde_json::from_str(&dir.read(".gleap-etl/hc/emulator.json")).unwrap();
    let help = &data["helpcenter"];
    assert_eq!(help["collections"].as_array().unwrap().len(), 1, "only `a`");
    let article = &help["articles"][0];
    assert_eq!(article["title"], json!({"en": "One"}));
    assert_eq!(
        article["content"]["en"]["content"][0]["content"][0]["text"],
        "Plain text body"
    );
    assert_eq!(article["plainContent"], json!({"en": "Plain text body"}));
    assert_eq!(article["isDraft"], false);
}

/// A stand-in for the old help centre's file host on 127.0.0.1:0: every path is an image
/// whose bytes name the path; the count of requests served.
async fn image_host() -> (String, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let served = std::sync::Arc::new(AtomicU64::new(0));
    let count = served.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let count = count.clone();
        async move {
            count.fetch_add(1, Ordering::Relaxed);
            (
                [(axum::http::header::CONTENT_TYPE, "image/png")],
                format!("PNG {}", uri.path()).into_bytes(),
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), served)
}

/// Every image `src` of every article, in every locale.
fn article_image_sources(help: &HelpCentre) -> Vec<String> {
    let mut sources = Vec::new();
    for article in help.articles.values() {
        for doc in article["content"].as_object().unwrap().values() {
            let (mut links, mut images) = (Vec::new(), Vec::new());
            links_and_images(doc, &mut links, &mut images);
            sources.extend(
                images
                    .iter()
                    .map(|i| i["src"].as_str().unwrap().to_string()),
            );
        }
    }
    sources
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_centre_images_are_rehosted_to_gleap_once_and_not_again_on_a_rerun() {
    use std::sync::atomic::Ordering;
    for (pipeline, dir_var, samples, files, old_host, path) in [
        (
            "zendesk_guide_to_gleap.yaml",
            "ZENDESK_DIR",
            "zendesk",
            &[
                "help_center_categories.json",
                "help_center_sections.json",
                "help_center_articles.json",
                "help_center_translations.json",
            ][..],
            "https://acme.zendesk.com/hc/article_attachments/",
            "/hc/article_attachments/",
        ),
        (
            "intercom_articles_to_gleap.yaml",
            "INTERCOM_DIR",
            "intercom",
            &[
                "help_center_collections.json",
                "help_center_sections.json",
                "articles.json",
            ][..],
            "https://downloads.intercomcdn.com/",
            "/ic/",
        ),
    ] {
        let dir = Dir::new();
        let emulator = emulator(false).await;
        let (host, served) = image_host().await;
        // The sample dump with its images on the stand-in host, as a user's dump points at
        // their help centre's.
        let dump = dir.join("dump");
        std::fs::create_dir_all(&dump).unwrap();
        let mut images_in_dump = 0;
        for f in files {
            let text =
                std::fs::read_to_string(repo().join("samples").join(samples).join(f)).unwrap();
            images_in_dump += text.matches(old_host).count();
            std::fs::write(
                dump.join(f),
                text.replace(old_host, &format!("{host}{path}")),
            )
            .unwrap();
        }
        assert!(images_in_dump > 0, "{samples}: the sample has images");
        let state = dir.join("state");
        let rehost = |emulator: &Emulator| {
            let mut cmd = command(pipeline, dir_var, &dump, &state, emulator);
            cmd.env("GLEAP_ATTACHMENTS", "rehost")
                .env("FILES_ALLOW_PRIVATE_HOSTS", "true");
            output(cmd)
        };
        let first = rehost(&emulator).await;
        assert_eq!(first.code, 0, "{pipeline}: {first:?}");
        let help = HelpCentre::of(&emulator);
        let sources = article_image_sources(&help);
        assert!(!sources.is_empty(), "{pipeline}: images arrived");
        let gleap_files = emulator.base_url().replace("/v3", "/uploads/files/");
        for src in &sources {
            assert!(
                src.starts_with(&gleap_files),
                "{pipeline}: an image still points at {src}, not at Gleap"
            );
        }
        // One upload per distinct image content, each downloaded once.
        let uploads = emulator.uploads();
        let uploads = uploads.as_array().unwrap();
        let distinct: std::collections::HashSet<&str> = uploads
            .iter()
            .map(|u| u["xxh3"].as_str().unwrap())
            .collect();
        assert_eq!(uploads.len(), distinct.len(), "{pipeline}: {uploads:?}");
        let downloads = served.load(Ordering::Relaxed);
        assert_eq!(downloads as usize, distinct.len(), "{pipeline}");
        // The uploaded bytes are the old host's image.
        for src in &sources {
            let bytes = reqwest::get(src).await.unwrap().bytes().await.unwrap();
            assert!(bytes.starts_with(format!("PNG {path}").as_bytes()), "{src}");
        }

        // Unchanged: no download, no upload, no write.
        let written = writes(&emulator);
        let again = rehost(&emulator).await;
        assert_eq!(again.code, 0, "{pipeline}: {again:?}");
        assert_eq!(emulator.uploads().as_array().unwrap().len(), uploads.len());
        assert_eq!(served.load(Ordering::Relaxed), downloads, "{pipeline}");
        assert_eq!(writes(&emulator), written, "{pipeline}");
    }
}
