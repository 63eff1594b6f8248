//! Zendesk dump source: users, organizations, tickets and comments from what Zendesk exports really look
//! like: the account's newline-delimited Full JSON export; API page files (`{"users": [..]}`,
//! `{"tickets": [..]}`, `{"comments": [..]}`, `{"audits": [..]}`, `{"ticket_events": [..]}`,
//! single `{"ticket": ..}`/`{"user": ..}`/`{"audit": ..}`); search export `results`; and the
//! legacy `/exports/tickets` rows (display-formatted, with `field_headers`). Several files by
//! glob, `.gz` accepted.
//!
//! Records keep Zendesk's own fields, with a few normalised so pipelines can map them:
//! users get `key` (the `external_id`, else the id); comments always carry `ticket_id`,
//! `is_note`, `attachments` as Gleap takes them (`{name, url, type}`) and `kind` (`message`
//! when it has text or files, else `empty`); legacy export rows
//! get API names and RFC 3339 timestamps; every timestamp is RFC 3339 UTC.

use std::path::Path;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::dump::{self, Document};
use super::{OpenedSource, ProgressUnit, Rejected, SourceItem, SourceIter, files};
use crate::error::Result;
use crate::record::{Position, Record, epoch_to_timestamp, format_timestamp, parse_timestamp};

/// Reads Zendesk exports and API dumps.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ZendeskSourceConfig {
    /// A file or a glob (`dump/tickets*.json*`), or a list of them; `.gz` accepted.
    pub path: files::PathSpec,
    /// What to read: `users`, `tickets`, `comments` or `organizations`; Guide (the help
    /// centre): `categories`, `sections` or `articles` ([`super::zendesk_guide`]).
    pub entity: ZendeskEntity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ZendeskEntity {
    Users,
    Tickets,
    Comments,
    Categories,
    Sections,
    Articles,
    /// The companies users belong to (a user's `organization_id`).
    Organizations,
}

impl ZendeskSourceConfig {
    /// Every problem with the options as written; `at` is the source's config path.
    pub fn check(&self, at: &str) -> Vec<crate::config::ConfigError> {
        self.path.check(&format!("{at}.path"))
    }

    pub fn open(&self) -> Result<OpenedSource> {
        crate::config::checked(self.check("source.zendesk"))?;
        let files = self.path.expand()?;
        let guide = match self.entity {
            ZendeskEntity::Categories => Some(super::zendesk_guide::GuideKind::Categories),
            ZendeskEntity::Sections => Some(super::zendesk_guide::GuideKind::Sections),
            ZendeskEntity::Articles => Some(super::zendesk_guide::GuideKind::Articles),
            _ => None,
        };
        if let Some(kind) = guide {
            return Ok(super::zendesk_guide::open(files, kind));
        }
        let total = files::total_size(&files);
        let entity = self.entity;
        Ok(OpenedSource::from_files(
            files,
            ProgressUnit::Bytes,
            total,
            move |path, done| {
                let docs = dump::documents(path, done.clone())?;
                let file = files::display_name(path);
                let file_ticket = ticket_id_from_file_name(path);
                let mut row = 0u64;
                let items = docs.flat_map(move |doc| {
                    let mut out = Vec::new();
                    match doc {
                        Err(e) => out.push(Err(e)),
                        Ok(Ok(Document { value, line })) => {
                            let mut found = Vec::new();
                            extract(entity, value, file_ticket, &mut found);
                            for item in found {
                                row += 1;
                                let position = Position {
                                    file: file.clone(),
                                    line: Some(line),
                                    row,
                                    seq: 0,
                                };
                                out.push(Ok(match item {
                                    Ok(record) => SourceItem::Record(record, position),
                                    Err((reason, raw)) => SourceItem::Rejected(Rejected {
                                        position,
                                        record: raw,
                                        reason,
                                    }),
                                }));
                            }
                        }
                        Ok(Err(bad)) => {
                            row += 1;
                            let position = Position {
                                file: file.clone(),
                                line: Some(bad.line),
                                row,
                                seq: 0,
                            };
                            out.push(Ok(SourceItem::Rejected(Rejected {
                                position,
                                record: Value::String(bad.text),
                                reason: bad.reason,
                            })));
                        }
                    }
                    out
                });
                Ok(Box::new(items) as SourceIter)
            },
        ))
    }
}

type Found = std::result::Result<Record, (String, Value)>;

/// The last run of digits in the file name (`comments-123.json`), else the parent folder's
/// name when it is a number (`tickets/123/comments.json`): the ticket of a comments page.
fn ticket_id_from_file_name(path: &Path) -> Option<i64> {
    let stem = path.file_name()?.to_string_lossy();
    let stem = stem.split('.').next().unwrap_or("");
    let digits: Vec<&str> = stem
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(d) = digits.last() {
        return d.parse().ok();
    }
    path.parent()?.file_name()?.to_str()?.parse().ok()
}

/// Finds the records of `entity` in one document; the items of a top-level array are
/// documents.
fn extract(entity: ZendeskEntity, value: Value, file_ticket: Option<i64>, out: &mut Vec<Found>) {
    let value = match value {
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::Object(_) => extract(entity, item, file_ticket, out),
                    other => out.push(Err(("not a JSON object".into(), other))),
                }
            }
            return;
        }
        other => other,
    };
    let Value::Object(mut doc) = value else {
        out.push(Err(("not a JSON object".into(), value)));
        return;
    };
    let list = |doc: &mut Map<String, Value>, key: &str| match doc.remove(key) {
        Some(Value::Array(items)) => items,
        Some(Value::Object(one)) => vec![Value::Object(one)],
        _ => Vec::new(),
    };
    // API pages and single-record responses wrap records under a key and have no `id` of
    // their own; a Full JSON export line is the record itself (a ticket there also carries
    // its `comments`).
    let wrapped = !doc.contains_key("id")
        && [
            "users",
            "user",
            "tickets",
            "ticket",
            "comments",
            "audits",
            "audit",
            "ticket_events",
            "results",
            "organizations",
            "organization",
        ]
        .iter()
        .any(|k| doc.contains_key(*k));
    match entity {
        ZendeskEntity::Users => {
            if wrapped {
                for u in list(&mut doc, "users")
                    .into_iter()
                    .chain(list(&mut doc, "user"))
                {
                    out.push(user(u));
                }
                for r in list(&mut doc, "results") {
                    if r.get("result_type").and_then(Value::as_str) == Some("user") {
                        out.push(user(r));
                    }
                }
            } else {
                out.push(user(Value::Object(doc)));
            }
        }
        ZendeskEntity::Organizations => {
            if wrapped {
                for o in list(&mut doc, "organizations")
                    .into_iter()
                    .chain(list(&mut doc, "organization"))
                {
                    out.push(organization(o));
                }
                for r in list(&mut doc, "results") {
                    if r.get("result_type").and_then(Value::as_str) == Some("organization") {
                        out.push(organization(r));
                    }
                }
            } else if !["role", "requester_id", "ticket_id", "author_id"]
                .iter()
                .any(|k| doc.contains_key(*k))
            {
                // An export line of another kind (a user, a ticket) is not an organization.
                out.push(organization(Value::Object(doc)));
            }
        }
        ZendeskEntity::Tickets => {
            if wrapped {
                for t in list(&mut doc, "tickets")
                    .into_iter()
                    .chain(list(&mut doc, "ticket"))
                {
                    out.push(ticket(t));
                }
                let legacy = doc.contains_key("field_headers");
                for r in list(&mut doc, "results") {
                    if legacy {
                        out.push(legacy_ticket(r));
                    } else if r.get("result_type").and_then(Value::as_str) == Some("ticket") {
                        out.push(ticket(r));
                    }
                }
            } else {
                out.push(ticket(Value::Object(doc)));
            }
        }
        ZendeskEntity::Comments => {
            // A Full JSON export line: a ticket with its comments inside.
            if doc.contains_key("id") && doc.get("comments").is_some_and(Value::is_array) {
                nested_comments(Value::Object(doc), out);
            } else if wrapped {
                let page_ticket = doc
                    .get("ticket")
                    .and_then(|t| t.get("id"))
                    .and_then(Value::as_i64);
                for c in list(&mut doc, "comments") {
                    let ticket = c
                        .get("ticket_id")
                        .and_then(Value::as_i64)
                        .or(page_ticket)
                        .or(file_ticket);
                    out.push(comment(c, ticket, None));
                }
                for a in list(&mut doc, "audits")
                    .into_iter()
                    .chain(list(&mut doc, "audit"))
                {
                    audit_comments(a, out);
                }
                for e in list(&mut doc, "ticket_events") {
                    event_comments(e, out);
                }
                for r in list(&mut doc, "results") {
                    if r.get("result_type").and_then(Value::as_str) == Some("ticket") {
                        nested_comments(r, out);
                    }
                }
            }
        }
        // Read by `zendesk_guide`.
        ZendeskEntity::Categories | ZendeskEntity::Sections | ZendeskEntity::Articles => {}
    }
}

/// Timestamps as RFC 3339 UTC: ISO strings, Zendesk's display form
/// (`2012-09-06 12:18:55 -0800`) or Unix seconds.
fn timestamp(value: Option<&Value>) -> Value {
    match value {
        Some(Value::String(s)) if !s.trim().is_empty() => match parse_timestamp(s.trim()) {
            Some(t) => Value::String(format_timestamp(&t)),
            None => Value::String(s.clone()),
        },
        Some(Value::Number(n)) => n
            .as_f64()
            .and_then(epoch_to_timestamp)
            .map_or(Value::Null, |t| Value::String(format_timestamp(&t))),
        _ => Value::Null,
    }
}

fn normalise_times(r: &mut Record) {
    for key in [
        "created_at",
        "updated_at",
        "last_login_at",
        "due_at",
        "solved_at",
        "assigned_at",
    ] {
        if let Some(v) = r.get(key) {
            let t = timestamp(Some(v));
            r.insert(key.into(), t);
        }
    }
}

fn id_of(v: Option<&Value>) -> Option<Value> {
    match v {
        Some(Value::Number(n)) => Some(Value::Number(n.clone())),
        Some(Value::String(s)) if !s.is_empty() => Some(
            s.parse::<i64>()
                .map_or_else(|_| Value::String(s.clone()), Value::from),
        ),
        _ => None,
    }
}

fn user(value: Value) -> Found {
    let Value::Object(mut r) = value else {
        return Err(("a user that is not an object".into(), value));
    };
    let Some(id) = id_of(r.get("id")) else {
        return Err(("a user without an id".into(), Value::Object(r)));
    };
    let key = match r.get("external_id") {
        Some(Value::String(e)) if !e.trim().is_empty() => e.trim().to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => match &id {
            Value::Number(n) => n.to_string(),
            other => other.as_str().unwrap_or_default().to_string(),
        },
    };
    r.insert("id".into(), id);
    r.insert("key".into(), Value::String(key));
    if let Some(Value::String(e)) = r.get("email")
        && e.trim().is_empty()
    {
        r.insert("email".into(), Value::Null);
    }
    r.shift_remove("result_type");
    normalise_times(&mut r);
    Ok(r)
}

fn organization(value: Value) -> Found {
    let Value::Object(mut r) = value else {
        return Err(("an organization that is not an object".into(), value));
    };
    let Some(id) = id_of(r.get("id")) else {
        return Err(("an organization without an id".into(), Value::Object(r)));
    };
    r.insert("id".into(), id);
    r.shift_remove("result_type");
    normalise_times(&mut r);
    Ok(r)
}

fn ticket(value: Value) -> Found {
    let Value::Object(mut r) = value else {
        return Err(("a ticket that is not an object".into(), value));
    };
    let Some(id) = id_of(r.get("id")) else {
        return Err(("a ticket without an id".into(), Value::Object(r)));
    };
    r.insert("id".into(), id);
    // Comments are the `comments` entity; the ticket keeps their number.
    if let Some(Value::Array(c)) = r.shift_remove("comments") {
        r.insert("comments_count".into(), Value::from(c.len()));
    }
    r.shift_remove("result_type");
    normalise_times(&mut r);
    Ok(r)
}

/// A row of the legacy `/api/v2/exports/tickets`: display values under export names.
fn legacy_ticket(value: Value) -> Found {
    let Value::Object(row) = value else {
        return Err(("a ticket row that is not an object".into(), value));
    };
    let Some(id) = id_of(row.get("id")) else {
        return Err(("a ticket row without an id".into(), Value::Object(row)));
    };
    let lower = |k: &str| match row.get(k) {
        Some(Value::String(s)) if !s.is_empty() && s != "-" => Value::String(s.to_lowercase()),
        _ => Value::Null,
    };
    let text = |k: &str| match row.get(k) {
        Some(Value::String(s)) if !s.is_empty() && s != "-" => Value::String(s.clone()),
        Some(v @ Value::Number(_)) => v.clone(),
        _ => Value::Null,
    };
    let tags: Vec<Value> = row
        .get("current_tags")
        .and_then(Value::as_str)
        .unwrap_or("")
        .split_whitespace()
        .map(|t| Value::String(t.to_string()))
        .collect();
    let mut r = Record::new();
    r.insert("id".into(), id);
    r.insert("subject".into(), text("subject"));
    r.insert("status".into(), lower("status"));
    r.insert("priority".into(), lower("priority"));
    r.insert("type".into(), lower("ticket_type"));
    r.insert(
        "requester_id".into(),
        id_of(row.get("req_id")).unwrap_or(Value::Null),
    );
    r.insert("requester_external_id".into(), text("req_external_id"));
    r.insert("requester_email".into(), text("req_email"));
    r.insert("requester_name".into(), text("req_name"));
    r.insert("assignee_name".into(), text("assignee_name"));
    r.insert("group_name".into(), text("group_name"));
    r.insert("organization_name".into(), text("organization_name"));
    r.insert("via".into(), text("via"));
    r.insert("tags".into(), Value::Array(tags));
    r.insert("created_at".into(), timestamp(row.get("created_at")));
    r.insert("updated_at".into(), timestamp(row.get("updated_at")));
    r.insert("solved_at".into(), timestamp(row.get("solved_at")));
    r.insert("url".into(), text("url"));
    let custom: Map<String, Value> = row
        .iter()
        .filter(|(k, v)| k.starts_with("field_") && !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    r.insert("custom_fields".into(), Value::Object(custom));
    r.insert("legacy_export".into(), Value::Bool(true));
    Ok(r)
}

/// Gleap's attachment shape from Zendesk's.
fn attachments(value: Option<&Value>) -> Value {
    let list = value
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    Value::Array(
        list.iter()
            .filter_map(|a| {
                let url = a
                    .get("content_url")
                    .or_else(|| a.get("mapped_content_url"))
                    .and_then(Value::as_str)?;
                let name = a
                    .get("file_name")
                    .and_then(Value::as_str)
                    .unwrap_or("attachment");
                let kind = a
                    .get("content_type")
                    .and_then(Value::as_str)
                    .unwrap_or("application/octet-stream");
                Some(json!({"name": name, "url": url, "type": kind}))
            })
            .collect(),
    )
}

/// A comment with its ticket; `context` fills author and time from an audit or event.
fn comment(value: Value, ticket: Option<i64>, context: Option<(&Value, &Value)>) -> Found {
    let Value::Object(c) = value else {
        return Err(("a comment that is not an object".into(), value));
    };
    let Some(id) = id_of(c.get("id")) else {
        return Err(("a comment without an id".into(), Value::Object(c)));
    };
    let Some(ticket) = ticket else {
        return Err((
            "a comment without its ticket: comment pages do not name it, so name the file after the ticket (comments-<ticket id>.json) or export audits".into(),
            Value::Object(c),
        ));
    };
    let (context_author, context_time) = context.unwrap_or((&Value::Null, &Value::Null));
    let html = c
        .get("html_body")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string);
    let body = c
        .get("body")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            c.get("plain_body")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
    let public = c.get("public").and_then(Value::as_bool).unwrap_or(true);
    let author = id_of(c.get("author_id"))
        .or_else(|| id_of(Some(context_author)))
        .unwrap_or(Value::Null);
    let created = c
        .get("created_at")
        .filter(|v| !v.is_null())
        .or(Some(context_time).filter(|v| !v.is_null()));
    let attachments = attachments(c.get("attachments"));
    // A comment with neither text nor file says nothing; one with only files is a message.
    let kind = if html.is_some()
        || body.as_deref().is_some_and(|b| !b.trim().is_empty())
        || attachments.as_array().is_some_and(|a| !a.is_empty())
    {
        "message"
    } else {
        "empty"
    };
    let mut r = Record::new();
    r.insert("id".into(), id);
    r.insert("kind".into(), Value::from(kind));
    r.insert("ticket_id".into(), Value::from(ticket));
    r.insert("author_id".into(), author);
    r.insert("body".into(), body.map_or(Value::Null, Value::String));
    r.insert("html_body".into(), html.map_or(Value::Null, Value::String));
    r.insert("public".into(), Value::Bool(public));
    r.insert("is_note".into(), Value::Bool(!public));
    r.insert("attachments".into(), attachments);
    r.insert("created_at".into(), timestamp(created));
    r.insert(
        "via".into(),
        c.get("via")
            .and_then(|v| v.get("channel"))
            .cloned()
            .unwrap_or(Value::Null),
    );
    Ok(r)
}

fn audit_comments(audit: Value, out: &mut Vec<Found>) {
    let ticket = audit.get("ticket_id").and_then(Value::as_i64);
    let author = audit.get("author_id").cloned().unwrap_or(Value::Null);
    let time = audit.get("created_at").cloned().unwrap_or(Value::Null);
    for event in audit
        .get("events")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        if matches!(
            event.get("type").and_then(Value::as_str),
            Some("Comment" | "VoiceComment")
        ) {
            out.push(comment(event, ticket, Some((&author, &time))));
        }
    }
}

fn event_comments(event: Value, out: &mut Vec<Found>) {
    let ticket = event.get("ticket_id").and_then(Value::as_i64);
    let author = event.get("updater_id").cloned().unwrap_or(Value::Null);
    let time = event
        .get("created_at")
        .or_else(|| event.get("timestamp"))
        .cloned()
        .unwrap_or(Value::Null);
    for child in event
        .get("child_events")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        let kind = child
            .get("event_type")
            .or_else(|| child.get("type"))
            .and_then(Value::as_str);
        if matches!(kind, Some("Comment" | "VoiceComment")) {
            out.push(comment(child, ticket, Some((&author, &time))));
        }
    }
}

fn nested_comments(ticket: Value, out: &mut Vec<Found>) {
    let id = ticket.get("id").and_then(Value::as_i64);
    let author = ticket.get("requester_id").cloned().unwrap_or(Value::Null);
    for c in ticket
        .get("comments")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        out.push(comment(c, id, Some((&author, &Value::Null))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(entity: &str, files: &[(&str, &str)]) -> Vec<std::result::Result<Value, String>> {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let config: ZendeskSourceConfig = serde_json::from_value(
            json!({"path": format!("{}/**/*.json", dir.path().display()), "entity": entity}),
        )
        .unwrap();
        config
            .open()
            .unwrap()
            .items
            .map(|i| match i.unwrap() {
                SourceItem::Record(r, _) => Ok(Value::Object(r)),
                SourceItem::Rejected(r) => Err(format!(
                    "{}: {}",
                    r.position.file.rsplit('/').next().unwrap_or(""),
                    r.reason
                )),
                SourceItem::Batch(_) => unreachable!("a source opened for rows gives no batch"),
            })
            .collect()
    }

    #[test]
    fn a_top_level_array_of_users_and_an_audits_page_element_by_element() {
        let got = read(
            "users",
            &[(
                "users.json",
                "[\n  {\"id\": 1, \"name\": \"A\"},\n  7,\n  {\"id\": 2}\n]\n",
            )],
        );
        let ids: Vec<String> = got
            .iter()
            .map(|r| match r {
                Ok(u) => u["key"].as_str().unwrap().to_string(),
                Err(e) => e.clone(),
            })
            .collect();
        assert_eq!(ids, ["1", "users.json: not a JSON object", "2"]);

        // Comments of audits placed by the line their audit starts on.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audits.json");
        std::fs::write(
            &path,
            "{\"audits\": [\n {\"ticket_id\": 5, \"events\": [{\"type\": \"Comment\", \"id\": 1, \"body\": \"a\"}]},\n {\"ticket_id\": 6,\n  \"events\": [{\"type\": \"Comment\", \"id\": 2, \"body\": \"b\"}, {\"type\": \"Comment\", \"body\": \"no id\"}]}\n]}\n",
        )
        .unwrap();
        let config: ZendeskSourceConfig =
            serde_json::from_value(json!({"path": path.to_str().unwrap(), "entity": "comments"}))
                .unwrap();
        let places: Vec<String> = config
            .open()
            .unwrap()
            .items
            .map(|i| match i.unwrap() {
                SourceItem::Record(r, p) => format!("{}@{}:{}", r["id"], p.line.unwrap(), p.row),
                SourceItem::Rejected(r) => {
                    format!("!@{}:{}", r.position.line.unwrap(), r.position.row)
                }
                SourceItem::Batch(_) => unreachable!("a source opened for rows gives no batch"),
            })
            .collect();
        assert_eq!(places, ["1@2:1", "2@3:2", "!@3:3"]);
    }

    #[test]
    fn users_from_pages_and_full_export_lines_get_a_key() {
        let got = read(
            "users",
            &[
                (
                    "a.json",
                    r#"{"users": [{"id": 1, "external_id": "ext-1", "role": "end-user", "email": "", "created_at": "2012-09-06T20:18:10Z"}, {"id": 2, "external_id": null, "role": "agent"}], "next_page": null}"#,
                ),
                (
                    "b.json",
                    "{\"id\": 3, \"role\": \"admin\", \"email\": \"x@y\"}\n{\"id\": 4, \"role\": \"end-user\", \"email\": \"z@y\"}\n",
                ),
                ("c.json", r#"{"tickets": [{"id": 9}]}"#),
            ],
        );
        let users: Vec<Value> = got.into_iter().map(Result::unwrap).collect();
        assert_eq!(users.len(), 4);
        assert_eq!(users[0]["key"], "ext-1");
        assert_eq!(users[0]["email"], Value::Null, "an empty email is no email");
        assert_eq!(users[0]["created_at"], "2012-09-06T20:18:10.000Z");
        assert_eq!(users[1]["key"], "2");
        assert_eq!(users[3]["key"], "4");
    }

    #[test]
    fn tickets_from_pages_exports_and_legacy_rows() {
        let got = read(
            "tickets",
            &[
                (
                    "t.json",
                    r#"{"tickets": [{"id": 1, "subject": "Hi", "status": "open", "comments": [{"id": 5}]}], "count": 1}"#,
                ),
                (
                    "one.json",
                    r#"{"ticket": {"id": 2, "subject": "Solo"}, "audit": {"id": 7, "events": []}}"#,
                ),
                (
                    "legacy.json",
                    r#"{"results": [{"id": 3, "subject": "Old", "status": "Deleted", "priority": "Normal", "ticket_type": "Question", "req_id": "20014192", "current_tags": "awesome blossom", "created_at": "2012-09-06 12:18:55 -0800", "field_123": "x", "group_name": "-"}], "field_headers": {}}"#,
                ),
            ],
        );
        let t: Vec<Value> = got.into_iter().map(Result::unwrap).collect();
        assert_eq!(t.len(), 3);
        let legacy = t.iter().find(|r| r["id"] == 3).unwrap();
        assert_eq!(legacy["status"], "deleted");
        assert_eq!(legacy["type"], "question");
        assert_eq!(legacy["requester_id"], 20014192);
        assert_eq!(legacy["tags"], json!(["awesome", "blossom"]));
        assert_eq!(legacy["created_at"], "2012-09-06T20:18:55.000Z");
        assert_eq!(legacy["group_name"], Value::Null);
        let first = t.iter().find(|r| r["id"] == 1).unwrap();
        assert_eq!(first["comments_count"], 1);
        assert!(first.get("comments").is_none());
    }

    #[test]
    fn comments_from_audits_events_exports_and_named_pages() {
        let got = read(
            "comments",
            &[
                (
                    "audits.json",
                    r#"{"audits": [{"id": 10, "ticket_id": 666, "author_id": 5, "created_at": "2011-09-25T22:35:44Z", "events": [{"id": 11, "type": "Comment", "html_body": "<p>private</p>", "body": "private", "public": false, "attachments": [{"file_name": "a.gif", "content_url": "https://z/a.gif", "content_type": "image/gif"}]}, {"id": 12, "type": "Change", "field_name": "status"}]}]}"#,
                ),
                (
                    "events.json",
                    r#"{"ticket_events": [{"id": 20, "ticket_id": 7, "updater_id": 8, "timestamp": 1700000000, "child_events": [{"id": 21, "event_type": "Comment", "body": "hey", "public": true}]}]}"#,
                ),
                (
                    "export.json",
                    "{\"id\": 30, \"subject\": \"s\", \"requester_id\": 4, \"comments\": [{\"id\": 31, \"body\": \"b\", \"author_id\": 4, \"public\": true}]}\n",
                ),
                (
                    "tickets/42/comments.json",
                    r#"{"comments": [{"id": 41, "body": "x", "html_body": "", "author_id": 1, "public": true}]}"#,
                ),
                (
                    "comments.json",
                    r#"{"comments": [{"id": 51, "body": "orphan"}]}"#,
                ),
            ],
        );
        let ok: Vec<&Value> = got.iter().filter_map(|r| r.as_ref().ok()).collect();
        let bad: Vec<&String> = got.iter().filter_map(|r| r.as_ref().err()).collect();
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert!(bad[0].contains("comments-<ticket id>.json"), "{}", bad[0]);
        let by_id = |id: i64| ok.iter().find(|c| c["id"] == id).unwrap();
        let private = by_id(11);
        assert_eq!(private["ticket_id"], 666);
        assert_eq!(private["author_id"], 5);
        assert_eq!(private["is_note"], true);
        assert_eq!(
            private["attachments"],
            json!([{"name": "a.gif", "url": "https://z/a.gif", "type": "image/gif"}])
        );
        assert_eq!(private["created_at"], "2011-09-25T22:35:44.000Z");
        assert_eq!(by_id(21)["ticket_id"], 7);
        assert_eq!(by_id(21)["author_id"], 8);
        assert_eq!(by_id(21)["created_at"], "2023-11-14T22:13:20.000Z");
        assert_eq!(by_id(31)["ticket_id"], 30);
        assert_eq!(by_id(41)["ticket_id"], 42, "from the folder name");
        assert_eq!(by_id(41)["html_body"], Value::Null);
        assert_eq!(ok.len(), 4);
    }

    #[test]
    fn organizations_from_pages_and_export_lines() {
        let got = read(
            "organizations",
            &[
                (
                    "organizations.json",
                    r#"{"organizations": [{"id": 361, "name": "Acme", "created_at": "2024-01-02T03:04:05Z"}, {"name": "no id"}], "next_page": null}"#,
                ),
                (
                    "organizations-export.json",
                    "{\"id\": \"362\", \"name\": \"Globex\", \"tags\": [\"enterprise\"]}\n",
                ),
                ("users.json", r#"{"users": [{"id": 1, "name": "u"}]}"#),
                (
                    "users-export.json",
                    "{\"id\": 2, \"name\": \"u\", \"role\": \"end-user\"}\n",
                ),
            ],
        );
        let ok: Vec<&Value> = got.iter().filter_map(|r| r.as_ref().ok()).collect();
        let bad: Vec<&String> = got.iter().filter_map(|r| r.as_ref().err()).collect();
        assert_eq!(
            bad,
            [&"organizations.json: an organization without an id".to_string()]
        );
        assert_eq!(ok.len(), 2, "{ok:?}");
        let acme = ok.iter().find(|o| o["name"] == "Acme").unwrap();
        assert_eq!(acme["id"], 361);
        assert_eq!(acme["created_at"], "2024-01-02T03:04:05.000Z");
        assert_eq!(
            ok.iter().find(|o| o["name"] == "Globex").unwrap()["id"],
            362
        );
    }

    #[test]
    fn comments_say_whether_they_hold_text_or_files() {
        let got = read(
            "comments",
            &[(
                "comments-9.json",
                r#"{"comments": [
  {"id": 1, "body": "", "html_body": "<p></p>", "author_id": 4, "attachments": [{"file_name": "a.png", "content_url": "https://z/a.png", "content_type": "image/png"}]},
  {"id": 2, "body": "  ", "html_body": "", "author_id": 4, "attachments": []},
  {"id": 3, "body": "hi", "author_id": 4}
]}"#,
            )],
        );
        let kinds: Vec<(i64, String)> = got
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|c| {
                (
                    c["id"].as_i64().unwrap(),
                    c["kind"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                (1, "message".to_string()),
                (2, "empty".to_string()),
                (3, "message".to_string())
            ]
        );
    }

    #[test]
    fn ticket_ids_from_file_names() {
        assert_eq!(
            ticket_id_from_file_name(Path::new("d/comments-123.json.gz")),
            Some(123)
        );
        assert_eq!(
            ticket_id_from_file_name(Path::new("d/ticket_9_comments.json")),
            Some(9)
        );
        assert_eq!(
            ticket_id_from_file_name(Path::new("d/77/comments.json")),
            Some(77)
        );
        assert_eq!(ticket_id_from_file_name(Path::new("d/comments.json")), None);
    }
}
