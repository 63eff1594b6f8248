//! Finding what Gleap already holds for a record, without trusting a filter. A candidate a
//! filter returned is adopted only when its own fields are what we look for; none such means
//! "not there", more than one "ambiguous" (the record goes to the dead-letter file, nothing is
//! written over either). Where the answer shows the filter was not applied (candidates that
//! do not have the filtered value) and none is the one, "not there" cannot be trusted: the
//! stream stops rather than create a record twice.

use std::collections::HashMap;

use serde_json::Value;

use super::SessionKey;
use crate::gleap::answer;
use crate::gleap::client::{GleapClient, MAX_PAGE_SIZE, RequestCounters};
use crate::gleap::paging::{PagingError, list_all};

/// What a look-up found.
#[derive(Debug, Clone, PartialEq)]
pub enum LookUp {
    Absent,
    /// The one record that is what we look for: its id and the document.
    Found(String, Value),
    /// Several records are; their ids.
    Ambiguous(Vec<String>),
    /// The filter was not applied and none of the candidates is the one: why.
    Untrusted(String),
}

/// Decides a look-up from the candidates a filtered request returned: `filter_holds` says
/// whether a candidate has the filtered value (the server applied the filter to it), `is_it`
/// whether it is the record we look for. `what` names the request, for the message.
pub fn verify(
    what: &str,
    candidates: Vec<Value>,
    filter_holds: impl Fn(&Value) -> bool,
    is_it: impl Fn(&Value) -> bool,
) -> LookUp {
    let ignored = candidates.iter().any(|c| !filter_holds(c));
    let mut exact: Vec<Value> = candidates
        .into_iter()
        .filter(|c| filter_holds(c) && is_it(c))
        .collect();
    match exact.len() {
        0 if ignored => LookUp::Untrusted(format!(
            "{what} answered records without the value it filters on: Gleap did not apply the filter, so a record missing from its answer may still exist (run `gleap-etl doctor`)"
        )),
        0 => LookUp::Absent,
        1 => {
            let doc = exact.pop().expect("one");
            match answer::id(&doc) {
                Some(id) => LookUp::Found(id.to_string(), doc),
                None => LookUp::Untrusted(format!("{what} answered a record without an id")),
            }
        }
        _ => LookUp::Ambiguous(
            exact
                .iter()
                .map(|d| answer::id(d).unwrap_or("?").to_string())
                .collect(),
        ),
    }
}

/// A session key as compared: e-mail addresses without regard to case.
pub fn key_text(key: SessionKey, value: &str) -> String {
    match key {
        SessionKey::UserId => value.to_string(),
        SessionKey::Email => value.to_lowercase(),
    }
}

/// Whether a session document carries `key` = `value`.
pub fn session_has(key: SessionKey, value: &str, doc: &Value) -> bool {
    doc.get(key.field())
        .and_then(Value::as_str)
        .is_some_and(|v| key_text(key, v) == key_text(key, value))
}

/// Every session of the project by key, read once before a sessions stream writes.
#[derive(Debug, Default)]
pub struct Prefetched {
    key: Option<SessionKey>,
    by_key: HashMap<String, Vec<Value>>,
}

impl Prefetched {
    /// What the project holds for a key: never a look-up request.
    pub fn get(&self, value: &str) -> LookUp {
        let key = self.key.unwrap_or_default();
        let candidates = self
            .by_key
            .get(&key_text(key, value))
            .cloned()
            .unwrap_or_default();
        verify(
            "GET /sessions",
            candidates,
            |_| true,
            |d| session_has(key, value, d),
        )
    }
}

/// Reads every session ([`list_all`]: safe paging) and keys them.
pub async fn prefetch(
    client: &GleapClient,
    key: SessionKey,
    counters: &RequestCounters,
) -> Result<Prefetched, PagingError> {
    let mut prefetched = Prefetched {
        key: Some(key),
        by_key: HashMap::new(),
    };
    list_all(
        client,
        counters,
        "/sessions",
        &[("sort", "createdAt")],
        MAX_PAGE_SIZE,
        |page| {
            for session in page {
                if let Some(k) = session.get(key.field()).and_then(Value::as_str) {
                    prefetched
                        .by_key
                        .entry(key_text(key, k))
                        .or_default()
                        .push(session);
                }
            }
        },
    )
    .await?;
    Ok(prefetched)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn has_import_id(id: &str) -> impl Fn(&Value) -> bool + '_ {
        move |t: &Value| t["customData"]["importId"] == id
    }

    #[test]
    fn a_candidate_is_adopted_only_for_its_own_fields() {
        let t = |id: &str, import: &str| json!({"id": id, "customData": {"importId": import}});
        let f = has_import_id("s:1");
        assert_eq!(
            verify("GET /tickets", vec![t("a", "s:1")], &f, |_| true),
            LookUp::Found("a".into(), t("a", "s:1"))
        );
        assert_eq!(verify("GET /tickets", vec![], &f, |_| true), LookUp::Absent);
        assert_eq!(
            verify(
                "GET /tickets",
                vec![t("a", "s:1"), t("b", "s:1")],
                &f,
                |_| true
            ),
            LookUp::Ambiguous(vec!["a".into(), "b".into()])
        );
        // The filter was not applied: a page of other tickets says nothing about ours.
        let ignored = verify(
            "GET /tickets",
            vec![t("x", "s:7"), t("y", "s:8")],
            &f,
            |_| true,
        );
        assert!(
            matches!(&ignored, LookUp::Untrusted(m) if m.contains("did not apply the filter")),
            "{ignored:?}"
        );
        // ...unless ours is among them.
        assert_eq!(
            verify(
                "GET /tickets",
                vec![t("x", "s:7"), t("a", "s:1")],
                &f,
                |_| true
            ),
            LookUp::Found("a".into(), t("a", "s:1"))
        );
        // A candidate the filter matched but that is not the one is not adopted.
        assert_eq!(
            verify("GET /tickets", vec![t("a", "s:1")], &f, |_| false),
            LookUp::Absent
        );
    }

    #[test]
    fn prefetched_sessions_by_key_with_duplicates_ambiguous() {
        let mut p = Prefetched {
            key: Some(SessionKey::Email),
            by_key: HashMap::new(),
        };
        for (id, email) in [("1", "A@x.io"), ("2", "b@x.io"), ("3", "b@X.io")] {
            p.by_key
                .entry(key_text(SessionKey::Email, email))
                .or_default()
                .push(json!({"_id": id, "email": email}));
        }
        assert!(matches!(p.get("a@x.io"), LookUp::Found(id, _) if id == "1"));
        assert_eq!(
            p.get("B@x.io"),
            LookUp::Ambiguous(vec!["2".into(), "3".into()])
        );
        assert_eq!(p.get("c@x.io"), LookUp::Absent);
        assert!(session_has(
            SessionKey::UserId,
            "u1",
            &json!({"userId": "u1"})
        ));
        assert!(!session_has(
            SessionKey::UserId,
            "u1",
            &json!({"userId": "U1"})
        ));
    }
}
