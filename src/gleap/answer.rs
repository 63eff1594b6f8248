//! The one place that reads Gleap's answers, tolerantly. Gleap's spec leaves most answers as
//! `{}`, and clients run against the live API found them unlike the spec's examples
//! (tmcinerney/gleap: tickets and messages answer `id`, not `_id`, commits b7503c5 and
//! 494edaf; a message's text is in `data.content`, `comment` and `isNote` are write-only and
//! answered as null, notes are `type: "NOTE"`, commit 8d35159). So every field we read is
//! read here, in each form it is known or likely to take:
//!
//! - an id from `id` or `_id`;
//! - a reference (a ticket's `session`, a message's `ticket`) as an id string or an object
//!   with `id`/`_id`;
//! - a list as a bare array, or wrapped in `{items}`, `{tickets}`, `{sessions}` or
//!   `{messages}` (with `totalCount` when Gleap counts);
//! - a message's content from `data.content`, else `comment`; a note from `type == "NOTE"`,
//!   else `isNote`;
//! - an empty, non-object or id-less 2xx answer to a look-up as "not found".

use serde_json::Value;

/// A document's id: `id`, else `_id` (non-empty strings).
pub fn id(doc: &Value) -> Option<&str> {
    ["id", "_id"]
        .iter()
        .filter_map(|k| doc.get(k).and_then(Value::as_str))
        .find(|s| !s.is_empty())
}

/// A reference to another document: an id string, or an object carrying `id`/`_id`.
pub fn ref_id(value: &Value) -> Option<&str> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s),
        Value::Object(_) => id(value),
        _ => None,
    }
}

/// The import marker a ticket carries: `customData.importId` (`<stream>:<source id>`).
pub fn import_marker(ticket: &Value) -> Option<&str> {
    ticket
        .get("customData")
        .and_then(|c| c.get("importId"))
        .and_then(Value::as_str)
}

/// The reference a document holds in `field`.
pub fn field_ref<'a>(doc: &'a Value, field: &str) -> Option<&'a str> {
    doc.get(field).and_then(ref_id)
}

/// The documents of a list answer, and how many match in all when Gleap says so.
#[derive(Debug, Clone, PartialEq)]
pub struct ListPage {
    pub items: Vec<Value>,
    /// `totalCount` (GET /tickets answers it).
    pub total: Option<u64>,
}

/// The wrappers a list may come in.
/// (`collections`, `articles`, `data`, `results`: how clients of the live help-centre
/// endpoints read them, NicolePrince1/nicole-workspace create_help_center.py.)
const LIST_KEYS: [&str; 8] = [
    "items",
    "tickets",
    "sessions",
    "messages",
    "collections",
    "articles",
    "data",
    "results",
];

/// Reads a list answer: a bare array, or an object with one of [`LIST_KEYS`] holding it.
pub fn list(body: Value) -> Result<ListPage, String> {
    match body {
        Value::Array(items) => Ok(ListPage { items, total: None }),
        Value::Object(mut o) => {
            let total = o.get("totalCount").and_then(Value::as_u64);
            for key in LIST_KEYS {
                if let Some(Value::Array(_)) = o.get(key) {
                    let Some(Value::Array(items)) = o.remove(key) else {
                        unreachable!()
                    };
                    return Ok(ListPage { items, total });
                }
            }
            let keys: Vec<&str> = o.keys().map(String::as_str).take(8).collect();
            Err(format!(
                "an object without a list (keys: {}), where a list was expected",
                if keys.is_empty() {
                    "none".to_string()
                } else {
                    keys.join(", ")
                }
            ))
        }
        other => Err(format!(
            "{}, where a list was expected",
            crate::record::kind_of(&other)
        )),
    }
}

/// A look-up's answer: the document, or `None` for a 404 and for a 2xx answer that is empty,
/// not an object, or an object without an id (`{}`, `null`).
pub fn found(status: u16, body: Value) -> Option<Value> {
    if status == 404 || !(200..300).contains(&status) {
        return None;
    }
    id(&body)?;
    Some(body)
}

/// A message's content: `data.content`, else `comment` (a string or a TipTap document).
pub fn message_content(doc: &Value) -> Option<&Value> {
    doc.get("data")
        .and_then(|d| d.get("content"))
        .filter(|c| !c.is_null())
        .or_else(|| doc.get("comment").filter(|c| !c.is_null()))
}

/// Whether a message is an internal note: `type` is `NOTE`, or (as written) `isNote` is true.
pub fn is_note(doc: &Value) -> bool {
    doc.get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.eq_ignore_ascii_case("NOTE"))
        || doc.get("isNote").and_then(Value::as_bool) == Some(true)
}

/// The plain text of a message content (a string, or a TipTap document's text nodes, blocks
/// and hard breaks as line breaks), with runs of whitespace made one space and trimmed: what
/// two forms of the same message have in common.
pub fn content_text(content: &Value) -> String {
    text_lines(content, true)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The text nodes of a TipTap document, each block ended by a line break and hard breaks as
/// line breaks. `loose`: strings and arrays met on the way are text too (a message content
/// may be either); else only objects are read.
pub fn text_lines(doc: &Value, loose: bool) -> String {
    fn walk(node: &Value, out: &mut String, loose: bool) {
        match node {
            Value::String(s) if loose => out.push_str(s),
            Value::Object(o) => {
                match o.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        if let Some(t) = o.get("text").and_then(Value::as_str) {
                            out.push_str(t);
                        }
                    }
                    Some("hardBreak") => out.push('\n'),
                    _ => {}
                }
                if let Some(Value::Array(children)) = o.get("content") {
                    for child in children {
                        walk(child, out, loose);
                    }
                    if !out.ends_with('\n') {
                        out.push('\n');
                    }
                }
            }
            Value::Array(items) if loose => items.iter().for_each(|i| walk(i, out, loose)),
            _ => {}
        }
    }
    let mut out = String::new();
    walk(doc, &mut out, loose);
    out
}

/// Whether two message contents say the same: equal as JSON, or equal as text (a string sent
/// may come back as a document, or the other way round).
pub fn same_content(a: &Value, b: &Value) -> bool {
    a == b || content_text(a) == content_text(b)
}

/// The URL an upload answered: `fileUrl` (Gleap's importers read it), else `url`,
/// `file.url`/`file.fileUrl`, `data.fileUrl`, or a bare string; only http(s) URLs.
pub fn file_url(body: &Value) -> Option<String> {
    let candidates = [
        body.get("fileUrl"),
        body.get("url"),
        body.get("file")
            .and_then(|f| f.get("fileUrl").or_else(|| f.get("url"))),
        body.get("data")
            .and_then(|d| d.get("fileUrl").or_else(|| d.get("url"))),
        Some(body),
    ];
    candidates
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::trim)
        .find(|u| u.starts_with("https://") || u.starts_with("http://"))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_come_from_id_or_underscore_id() {
        assert_eq!(id(&json!({"id": "a1"})), Some("a1"));
        assert_eq!(id(&json!({"_id": "b2"})), Some("b2"));
        assert_eq!(id(&json!({"_id": "b2", "id": "b2"})), Some("b2"));
        assert_eq!(id(&json!({"id": "", "_id": "c3"})), Some("c3"));
        assert_eq!(id(&json!({"id": 5})), None);
        assert_eq!(id(&json!({})), None);
        assert_eq!(id(&json!("a1")), None);
    }

    #[test]
    fn references_are_strings_or_objects_with_an_id() {
        let ticket = json!({
            "session": {"id": "s1", "email": "a@x"},
            "processingUser": {"_id": "u1"},
            "ticket": "t1",
            "empty": {},
            "none": null,
        });
        assert_eq!(field_ref(&ticket, "session"), Some("s1"));
        assert_eq!(field_ref(&ticket, "processingUser"), Some("u1"));
        assert_eq!(field_ref(&ticket, "ticket"), Some("t1"));
        assert_eq!(field_ref(&ticket, "empty"), None);
        assert_eq!(field_ref(&ticket, "none"), None);
        assert_eq!(field_ref(&ticket, "missing"), None);
    }

    #[test]
    fn lists_come_bare_or_wrapped() {
        let a = || vec![json!({"id": "1"}), json!({"id": "2"})];
        assert_eq!(list(json!(a())).unwrap().items, a());
        for key in ["items", "tickets", "sessions", "messages"] {
            let page = list(json!({key: a(), "count": 2, "totalCount": 7})).unwrap();
            assert_eq!(page.items, a(), "{key}");
            assert_eq!(page.total, Some(7));
        }
        let page = list(json!({"nextBefore": null, "hasMore": false, "items": []})).unwrap();
        assert!(page.items.is_empty());
        assert_eq!(page.total, None);
        let e = list(json!({"message": "nope"})).unwrap_err();
        assert!(e.contains("keys: message"), "{e}");
        assert!(list(json!("text")).unwrap_err().contains("a string"));
        assert!(list(Value::Null).is_err());
    }

    #[test]
    fn look_ups_find_only_documents_with_an_id() {
        assert_eq!(
            found(200, json!({"_id": "s1", "userId": "u"})),
            Some(json!({"_id": "s1", "userId": "u"}))
        );
        assert_eq!(found(201, json!({"id": "t1"})), Some(json!({"id": "t1"})));
        assert_eq!(found(404, json!({"id": "t1"})), None);
        assert_eq!(found(200, Value::Null), None, "an empty body");
        assert_eq!(found(200, json!({})), None);
        assert_eq!(found(200, json!([])), None);
        assert_eq!(found(200, json!("ok")), None);
        assert_eq!(found(200, json!(null)), None);
    }

    #[test]
    fn message_text_and_notes_in_every_form() {
        let live = json!({"id": "m1", "comment": null, "isNote": null, "type": "NOTE",
                          "data": {"content": "hello"}});
        assert_eq!(message_content(&live), Some(&json!("hello")));
        assert!(is_note(&live));
        let written = json!({"_id": "m2", "comment": "hi", "isNote": true});
        assert_eq!(message_content(&written), Some(&json!("hi")));
        assert!(is_note(&written));
        let agent = json!({"id": "m3", "type": "TEXT", "data": {"content": null}, "comment": "x"});
        assert_eq!(message_content(&agent), Some(&json!("x")));
        assert!(!is_note(&agent));
        assert!(!is_note(&json!({"type": "BOT_REPLY"})));
        assert!(is_note(&json!({"type": "note"})));
        assert_eq!(message_content(&json!({"id": "m4"})), None);
    }

    #[test]
    fn contents_compare_as_json_or_as_text() {
        let doc = json!({"type": "doc", "content": [
            {"type": "paragraph", "content": [{"type": "text", "text": "Hello"},
                                              {"type": "hardBreak"},
                                              {"type": "text", "text": "world", "marks": [{"type": "bold"}]}]},
            {"type": "paragraph", "content": [{"type": "text", "text": "Bye  now"}]}
        ]});
        assert_eq!(content_text(&doc), "Hello world Bye now");
        assert!(same_content(&doc, &doc.clone()));
        assert!(same_content(&doc, &json!("Hello\nworld\n\nBye now")));
        assert!(same_content(&json!(" Hello world Bye now "), &doc));
        assert!(!same_content(&doc, &json!("Hello world")));
        assert!(!same_content(&json!("a"), &json!("b")));
    }

    #[test]
    fn upload_answers_are_read_tolerantly() {
        let u = "https://cdn.gleap.io/a.png";
        for body in [
            json!({"fileUrl": u}),
            json!({"url": u}),
            json!({"file": {"url": u}}),
            json!({"data": {"fileUrl": u}}),
            json!(u),
        ] {
            assert_eq!(file_url(&body).as_deref(), Some(u), "{body}");
        }
        assert_eq!(file_url(&json!({"fileUrl": "javascript:x"})), None);
        assert_eq!(file_url(&json!({})), None);
    }
}
