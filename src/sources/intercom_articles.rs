//! Intercom Articles (the help centre) from API dumps: help-center collections
//! (`GET /help_center/collections`, nested by `parent_id`), the older sections
//! (`GET /help_center/sections`, `type: "section"`, whose `parent_id` is their collection)
//! and articles (`GET /articles`: `parent_id`/`parent_type`, `body` HTML, `state`
//! published or draft, `translated_content` by locale), as `{"type": "list", "data": [..]}`
//! pages, single objects, top-level arrays or JSON lines.
//!
//! As for Zendesk Guide, a stream's files are read whole first (a help centre is small).
//! Records carry what the Gleap help-centre sink takes:
//!
//! - `collections` (collections and sections both): `id`, `title` and `description`
//!   (`{locale: text}`, from `name`/`description` and `translated_content`), `parent` (the
//!   `parent_id`), `kind` (`collection` or `section`), `icon`, `url`, `locale`;
//! - `articles`: `id`, `title`, `description` (`{locale: text}`), `body` (`{locale: html}`),
//!   `collection` (the `parent_id`), `parent_type`, `draft` (`state` is not `published`),
//!   `url`, `author_id`, `locale` (`default_locale`), `created_at`, `updated_at` (RFC 3339).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use serde_json::{Map, Value, json};

use super::zendesk_guide::{Found, id_text, read_objects, records_by_id, whole_files_source};
use super::{OpenedSource, SourceItem};
use crate::error::Result;
use crate::record::{Record, epoch_to_timestamp, format_timestamp};

/// What an Intercom Articles stream reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArticlesKind {
    /// Collections and sections.
    Collections,
    Articles,
}

pub fn open(files: Vec<PathBuf>, kind: ArticlesKind) -> OpenedSource {
    whole_files_source(files, move |files, done| read(files, done, kind))
}

fn read(files: &[PathBuf], done: &Arc<AtomicU64>, kind: ArticlesKind) -> Result<Vec<SourceItem>> {
    let mut found: Vec<Found> = Vec::new();
    let rejected = read_objects(files, done, |mut o, position, docs, _| {
        // Airbyte records.
        if let (Some(Value::Object(_)), Some(_)) = (o.get("data"), o.get("stream")) {
            docs.push(o.remove("data").expect("checked"));
            return;
        }
        if let Some(Value::Array(_)) = o.get("data") {
            docs.push(o.remove("data").expect("checked"));
            return;
        }
        // Collections are answered without a `type` (2.x); sections and
        // articles with one.
        let kind_of = o.get("type").and_then(Value::as_str);
        let has = |k: &str| o.contains_key(k);
        let wanted = match (kind, kind_of) {
            (ArticlesKind::Collections, Some(t)) => {
                matches!(t, "collection" | "section")
            }
            (ArticlesKind::Collections, None) => has("id") && has("name"),
            (ArticlesKind::Articles, Some(t)) => t == "article",
            (ArticlesKind::Articles, None) => has("id") && has("title") && has("body"),
        };
        if wanted {
            found.push(Found {
                value: Value::Object(o),
                position: position.clone(),
            });
        }
    })?;
    Ok(records_by_id(
        rejected,
        found,
        "an object without an `id`",
        |id, o| match kind {
            ArticlesKind::Collections => collection(id, o),
            ArticlesKind::Articles => article(id, o),
        },
    ))
}

/// `{locale: value}` of `field` from the object (under `locale`) and its
/// `translated_content` (`{"fr": {"title": ..}}`), keeping only non-empty strings.
fn localized(o: &Map<String, Value>, locale: &str, fields: &[&str]) -> Value {
    let mut out = Map::new();
    let own = fields
        .iter()
        .find_map(|f| o.get(*f).and_then(Value::as_str).filter(|s| !s.is_empty()));
    if let Some(v) = own {
        out.insert(locale.to_string(), json!(v));
    }
    if let Some(Value::Object(t)) = o.get("translated_content") {
        for (l, content) in t {
            let text = fields.iter().find_map(|f| {
                content
                    .get(*f)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
            });
            if let Some(text) = text {
                out.entry(l.clone()).or_insert(json!(text));
            }
        }
    }
    Value::Object(out)
}

/// A record of `id`, `title` (from the first of `title_fields` given) and `description`,
/// and the object's locale (`default_locale`, else `en`).
fn localized_record(id: String, o: &Map<String, Value>, title_fields: &[&str]) -> (Record, String) {
    let locale = o
        .get("default_locale")
        .and_then(Value::as_str)
        .unwrap_or("en")
        .to_string();
    let mut r = Record::new();
    r.insert("id".into(), json!(id));
    r.insert("title".into(), localized(o, &locale, title_fields));
    r.insert(
        "description".into(),
        localized(o, &locale, &["description"]),
    );
    (r, locale)
}

/// Copies `keys` of `o` that are there and not null to `r`.
fn keep(r: &mut Record, o: &mut Map<String, Value>, keys: &[&str]) {
    for key in keys {
        if let Some(v) = o.remove(*key).filter(|v| !v.is_null()) {
            r.insert((*key).into(), v);
        }
    }
}

fn collection(id: String, mut o: Map<String, Value>) -> Record {
    let (mut r, locale) = localized_record(id, &o, &["name", "title"]);
    if let Some(p) = o.get("parent_id").and_then(id_text) {
        r.insert("parent".into(), json!(p));
    }
    let kind = o.remove("type").unwrap_or_else(|| json!("collection"));
    r.insert("kind".into(), kind);
    keep(&mut r, &mut o, &["icon", "url", "order"]);
    r.insert("locale".into(), json!(locale));
    r
}

fn article(id: String, mut o: Map<String, Value>) -> Record {
    let (mut r, locale) = localized_record(id, &o, &["title"]);
    r.insert("body".into(), localized(&o, &locale, &["body"]));
    if let Some(p) = o.get("parent_id").and_then(id_text) {
        r.insert("collection".into(), json!(p));
    }
    let state = o.get("state").and_then(Value::as_str).unwrap_or("draft");
    r.insert("draft".into(), json!(state != "published"));
    keep(&mut r, &mut o, &["parent_type", "url", "author_id"]);
    for key in ["created_at", "updated_at"] {
        let t = match o.get(key) {
            Some(Value::Number(n)) => n
                .as_f64()
                .and_then(epoch_to_timestamp)
                .map(|t| json!(format_timestamp(&t))),
            Some(v @ Value::String(_)) => Some(v.clone()),
            _ => None,
        };
        if let Some(t) = t {
            r.insert(key.into(), t);
        }
    }
    r.insert("locale".into(), json!(locale));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(kind: ArticlesKind, text: &str) -> Vec<Record> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        std::fs::write(&p, text).unwrap();
        open(vec![p], kind)
            .items
            .filter_map(|i| match i.unwrap() {
                SourceItem::Record(r, _) => Some(r),
                SourceItem::Rejected(_) => None,
                SourceItem::Batch(_) => unreachable!("a source opened for rows gives no batch"),
            })
            .collect()
    }

    #[test]
    fn collections_and_sections_both_become_collections_nested_by_parent() {
        let r = records(
            ArticlesKind::Collections,
            r#"[{"type": "list", "data": [{"id": "1", "name": "Top", "parent_id": null,
                  "translated_content": {"fr": {"name": "Haut"}}}]},
                {"type": "section", "id": "2", "name": "Sec", "parent_id": 1},
                {"type": "article", "id": "9", "title": "not a collection", "body": ""}]"#,
        );
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(r[0]["title"], json!({"en": "Top", "fr": "Haut"}));
        assert!(r[0].get("parent").is_none());
        assert_eq!(r[1]["parent"], "1");
        assert_eq!(r[1]["kind"], "section");
    }

    #[test]
    fn articles_carry_every_locale_their_collection_and_draft_state() {
        let r = records(
            ArticlesKind::Articles,
            r#"{"type": "list", "data": [{"type": "article", "id": 5, "title": "T", "body": "<p>b</p>",
                 "state": "draft", "parent_id": 7, "default_locale": "de", "created_at": 1672531200,
                 "translated_content": {"type": "article_translated_content",
                   "en": {"type": "article_content", "title": "E", "body": "<p>e</p>"}}}]}"#,
        );
        assert_eq!(r[0]["id"], "5");
        assert_eq!(r[0]["title"], json!({"de": "T", "en": "E"}));
        assert_eq!(r[0]["body"], json!({"de": "<p>b</p>", "en": "<p>e</p>"}));
        assert_eq!(r[0]["collection"], "7");
        assert_eq!(r[0]["draft"], true);
        assert_eq!(r[0]["created_at"], "2023-01-01T00:00:00.000Z");
    }
}
