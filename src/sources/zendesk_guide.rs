//! Zendesk Guide (the help centre) from API dumps: categories, sections and articles
//! (`{"categories": [..]}`, `{"sections": [..]}`, `{"articles": [..]}` pages of
//! `/api/v2/help_center[/{locale}]/...`, single `{"article": ..}` objects, top-level arrays,
//! JSON lines), with their translations from `{"translations": [..]}` pages
//! (`/help_center/articles/{id}/translations`; `source_id` and `source_type` say whose) or
//! sideloaded in an object's own `translations` list.
//!
//! A help centre is small, and a translation may come in a file after its article, so the
//! files of a stream are read whole before the first record is given (memory: the help
//! centre, not the ticket history). Each record carries what the Gleap help-centre sink
//! takes, localized by locale:
//!
//! - categories: `id`, `title` and `description` (`{locale: text}`), `position`, `locale`
//!   (the source locale), `html_url`;
//! - sections: the same, and `category_id`, `parent_section_id`, and `parent` (the parent
//!   section, else the category);
//! - articles: `id`, `title` (`{locale: text}`), `body` (`{locale: html}`), `collection`
//!   (the `section_id`), `draft`, `label_names`, `user_segment_id` (restricted to a segment
//!   when set), `locale`, `html_url`, `author_id`, `created_at`, `updated_at` (RFC 3339).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use serde_json::{Map, Value, json};

use super::dump::{self, Document};
use super::{OpenedSource, ProgressUnit, Rejected, SourceItem, SourceProgress, files};
use crate::error::Result;
use crate::record::{Position, Record};

/// What a Guide stream reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuideKind {
    Categories,
    Sections,
    Articles,
}

impl GuideKind {
    /// The page key, the single-object key and the translations' `source_type`.
    fn keys(self) -> (&'static str, &'static str, &'static str) {
        match self {
            GuideKind::Categories => ("categories", "category", "category"),
            GuideKind::Sections => ("sections", "section", "section"),
            GuideKind::Articles => ("articles", "article", "article"),
        }
    }
}

/// An object found in a dump, with where it was.
pub struct Found {
    pub value: Value,
    pub position: Position,
}

/// Reads every document of `files` and gives each to `visit` with its position; a document
/// that is not JSON becomes a rejected item. Used by the help-centre readers, which need a
/// whole stream's files before they can give a record.
pub fn read_all(
    files: &[PathBuf],
    done: &Arc<AtomicU64>,
    mut visit: impl FnMut(Value, Position),
) -> Result<Vec<Rejected>> {
    let mut rejected = Vec::new();
    for path in files {
        let file = files::display_name(path);
        for (n, doc) in dump::documents(path, done.clone())?.enumerate() {
            let row = n as u64 + 1;
            let position = |line| Position {
                file: file.clone(),
                line: Some(line),
                row,
                seq: 0,
            };
            match doc? {
                Ok(Document { value, line }) => visit(value, position(line)),
                Err(bad) => rejected.push(Rejected {
                    position: position(bad.line),
                    record: Value::String(bad.text),
                    reason: bad.reason,
                }),
            }
        }
    }
    Ok(rejected)
}

/// Reads every document of `files` as [`read_all`] does, arrays taken element by element:
/// each object goes to `visit` with its position, the stack of documents still to read (to
/// push what it unwraps) and the rejected list; anything else is rejected as not a JSON
/// object. Gives the documents that were not JSON, then the rest rejected.
pub fn read_objects(
    files: &[PathBuf],
    done: &Arc<AtomicU64>,
    mut visit: impl FnMut(Map<String, Value>, &Position, &mut Vec<Value>, &mut Vec<Rejected>),
) -> Result<Vec<Rejected>> {
    let mut invalid = Vec::new();
    let rejected = read_all(files, done, |value, position| {
        let mut docs = vec![value];
        while let Some(doc) = docs.pop() {
            match doc {
                Value::Array(items) => docs.extend(items.into_iter().rev()),
                Value::Object(o) => visit(o, &position, &mut docs, &mut invalid),
                other => invalid.push(Rejected {
                    position: position.clone(),
                    record: other,
                    reason: "not a JSON object".into(),
                }),
            }
        }
    })?;
    Ok(rejected.into_iter().chain(invalid).collect())
}

/// The items of a help-centre stream: `rejected` first, then a record made by `record` of
/// each object found, the first of each `id` (later ones are skipped); an object without an
/// `id` is rejected with `no_id` as the reason.
pub fn records_by_id(
    rejected: Vec<Rejected>,
    objects: Vec<Found>,
    no_id: &str,
    mut record: impl FnMut(String, Map<String, Value>) -> Record,
) -> Vec<SourceItem> {
    let mut items: Vec<SourceItem> = rejected.into_iter().map(SourceItem::Rejected).collect();
    let mut seen = std::collections::HashSet::new();
    for Found { value, position } in objects {
        let Value::Object(o) = value else {
            continue;
        };
        let Some(id) = o.get("id").and_then(id_text) else {
            items.push(SourceItem::Rejected(Rejected {
                position,
                record: Value::Object(o),
                reason: no_id.to_string(),
            }));
            continue;
        };
        // The same object in several pages (Guide: one per locale): the first is the record.
        if !seen.insert(id.clone()) {
            continue;
        }
        items.push(SourceItem::Record(record(id, o), position));
    }
    items
}

/// A source whose items are made, on first read, from all its files by `build`.
pub fn whole_files_source(
    files: Vec<PathBuf>,
    build: impl FnOnce(&[PathBuf], &Arc<AtomicU64>) -> Result<Vec<SourceItem>> + Send + 'static,
) -> OpenedSource {
    let total = files::total_size(&files);
    let done = Arc::new(AtomicU64::new(0));
    let progress = SourceProgress {
        unit: ProgressUnit::Bytes,
        total: Some(total),
        done: done.clone(),
    };
    let list = files.clone();
    let items = std::iter::once_with(move || match build(&list, &done) {
        Ok(items) => items.into_iter().map(Ok).collect::<Vec<_>>(),
        Err(e) => vec![Err(e)],
    })
    .flatten();
    OpenedSource {
        items: Box::new(items),
        progress,
        files,
        cursor: None,
    }
}

/// Opens a Guide stream.
pub fn open(files: Vec<PathBuf>, kind: GuideKind) -> OpenedSource {
    whole_files_source(files, move |files, done| read(files, done, kind))
}

fn read(files: &[PathBuf], done: &Arc<AtomicU64>, kind: GuideKind) -> Result<Vec<SourceItem>> {
    let (page_key, one_key, source_type) = kind.keys();
    let mut objects: Vec<Found> = Vec::new();
    let mut translations: HashMap<String, Vec<Value>> = HashMap::new();
    let add_translation = |t: Value, translations: &mut HashMap<String, Vec<Value>>| {
        let of_kind = t
            .get("source_type")
            .and_then(Value::as_str)
            .is_none_or(|s| s.eq_ignore_ascii_case(source_type));
        if let (true, Some(id)) = (of_kind, t.get("source_id").and_then(id_text)) {
            translations.entry(id).or_default().push(t);
        }
    };
    let rejected = read_objects(files, done, |mut o, position, _, invalid| {
        let list = |o: &mut Map<String, Value>, key: &str| match o.remove(key) {
            Some(Value::Array(items)) => items,
            Some(one @ Value::Object(_)) => vec![one],
            _ => Vec::new(),
        };
        if o.contains_key("id") && !o.contains_key(page_key) {
            // A record itself (JSON lines, an element of an array).
            if o.contains_key("source_id") && o.contains_key("source_type") {
                add_translation(Value::Object(o), &mut translations);
            } else {
                objects.push(Found {
                    value: Value::Object(o),
                    position: position.clone(),
                });
            }
            return;
        }
        for t in list(&mut o, "translations")
            .into_iter()
            .chain(list(&mut o, "translation"))
        {
            add_translation(t, &mut translations);
        }
        for item in list(&mut o, page_key)
            .into_iter()
            .chain(list(&mut o, one_key))
        {
            match item {
                Value::Object(_) => objects.push(Found {
                    value: item,
                    position: position.clone(),
                }),
                other => invalid.push(Rejected {
                    position: position.clone(),
                    record: other,
                    reason: format!("an element of `{page_key}` is not a JSON object"),
                }),
            }
        }
    })?;
    Ok(records_by_id(
        rejected,
        objects,
        &format!("an element of `{page_key}` without an `id`"),
        |id, mut o| {
            let mut own: Vec<Value> = match o.remove("translations") {
                Some(Value::Array(t)) => t,
                _ => Vec::new(),
            };
            own.extend(translations.remove(&id).unwrap_or_default());
            record(kind, id, o, own)
        },
    ))
}

/// A record with its localized fields: the object's own locale first, then each
/// translation's (a translation of the object's own locale wins: it is the newer text).
fn record(
    kind: GuideKind,
    id: String,
    mut o: Map<String, Value>,
    translations: Vec<Value>,
) -> Record {
    let locale = o
        .get("source_locale")
        .or_else(|| o.get("locale"))
        .and_then(Value::as_str)
        .unwrap_or("en")
        .to_string();
    let own_locale = o
        .get("locale")
        .and_then(Value::as_str)
        .unwrap_or(&locale)
        .to_string();
    let title_key = if kind == GuideKind::Articles {
        "title"
    } else {
        "name"
    };
    let mut titles = Map::new();
    let mut texts = Map::new();
    let text_key = if kind == GuideKind::Articles {
        "body"
    } else {
        "description"
    };
    let title = o
        .get(title_key)
        .or_else(|| o.get("name"))
        .or_else(|| o.get("title"))
        .cloned();
    if let Some(t) = title.filter(|t| t.is_string()) {
        titles.insert(own_locale.clone(), t);
    }
    if let Some(b) = o.get(text_key).filter(|b| b.is_string()).cloned() {
        texts.insert(own_locale.clone(), b);
    }
    for t in translations {
        let Some(l) = t.get("locale").and_then(Value::as_str) else {
            continue;
        };
        if let Some(title) = t.get("title").filter(|v| v.is_string()) {
            titles.insert(l.to_string(), title.clone());
        }
        if let Some(body) = t.get("body").filter(|v| v.is_string()) {
            texts.insert(l.to_string(), body.clone());
        }
    }
    let mut r = Record::new();
    r.insert("id".into(), json!(id));
    r.insert("title".into(), Value::Object(titles));
    let mut keep = |r: &mut Record, from: &str, to: &str| {
        if let Some(v) = o.remove(from).filter(|v| !v.is_null()) {
            r.insert(to.into(), v);
        }
    };
    match kind {
        GuideKind::Articles => {
            r.insert("body".into(), Value::Object(texts));
            keep(&mut r, "section_id", "collection");
            keep(&mut r, "draft", "draft");
            keep(&mut r, "label_names", "label_names");
            keep(&mut r, "author_id", "author_id");
            keep(&mut r, "promoted", "promoted");
            keep(&mut r, "user_segment_id", "user_segment_id");
            keep(&mut r, "created_at", "created_at");
            keep(&mut r, "updated_at", "updated_at");
        }
        GuideKind::Sections => {
            r.insert("description".into(), Value::Object(texts));
            keep(&mut r, "category_id", "category_id");
            keep(&mut r, "parent_section_id", "parent_section_id");
            let parent = r
                .get("parent_section_id")
                .or_else(|| r.get("category_id"))
                .cloned();
            if let Some(p) = parent {
                r.insert("parent".into(), p);
            }
        }
        GuideKind::Categories => {
            r.insert("description".into(), Value::Object(texts));
        }
    }
    keep(&mut r, "position", "position");
    keep(&mut r, "html_url", "html_url");
    r.insert("locale".into(), json!(locale));
    r
}

pub(super) fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(kind: GuideKind, files: &[(&str, &str)]) -> (Vec<Record>, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = files
            .iter()
            .map(|(name, text)| {
                let p = dir.path().join(name);
                std::fs::write(&p, text).unwrap();
                p
            })
            .collect();
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for item in open(paths, kind).items {
            match item.unwrap() {
                SourceItem::Record(r, _) => ok.push(r),
                SourceItem::Rejected(r) => {
                    bad.push(format!("{}:{}", r.reason, r.position.line.unwrap()))
                }
                SourceItem::Batch(_) => unreachable!("a source opened for rows gives no batch"),
            }
        }
        (ok, bad)
    }

    #[test]
    fn articles_take_their_translations_from_later_files_and_other_locale_pages() {
        let (ok, bad) = records(
            GuideKind::Articles,
            &[
                (
                    "a.json",
                    r#"{"articles": [{"id": 1, "title": "Hi", "body": "<p>x</p>", "locale": "en-us",
                        "source_locale": "en-us", "section_id": 5, "draft": true, "label_names": ["a"]},
                       7,
                       {"title": "no id"}]}"#,
                ),
                (
                    "a-de.json",
                    r#"{"articles": [{"id": 1, "title": "Hallo", "body": "<p>y</p>", "locale": "de", "section_id": 5}]}"#,
                ),
                (
                    "t.json",
                    r#"{"translations": [{"source_id": 1, "source_type": "Article", "locale": "fr", "title": "Salut", "body": "<p>z</p>"},
                                         {"source_id": 1, "source_type": "Section", "locale": "it", "title": "no"}]}"#,
                ),
            ],
        );
        assert_eq!(ok.len(), 1, "{ok:?}");
        let a = &ok[0];
        assert_eq!(a["title"], json!({"en-us": "Hi", "fr": "Salut"}));
        assert_eq!(a["body"]["fr"], "<p>z</p>");
        assert_eq!(a["collection"], 5);
        assert_eq!(a["draft"], true);
        assert_eq!(a["locale"], "en-us");
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert!(
            bad[0].starts_with("an element of `articles` is not a JSON object"),
            "{bad:?}"
        );
        assert!(
            bad[1].starts_with("an element of `articles` without an `id`"),
            "{bad:?}"
        );
    }

    #[test]
    fn sections_nest_under_their_parent_section_else_their_category() {
        let (ok, _) = records(
            GuideKind::Sections,
            &[(
                "s.json",
                r#"{"sections": [{"id": 2, "name": "A", "category_id": 1, "parent_section_id": null},
                                 {"id": 3, "name": "B", "category_id": 1, "parent_section_id": 2}]}"#,
            )],
        );
        assert_eq!(ok[0]["parent"], 1);
        assert_eq!(ok[1]["parent"], 2);
        assert_eq!(ok[1]["title"], json!({"en": "B"}));
    }
}
