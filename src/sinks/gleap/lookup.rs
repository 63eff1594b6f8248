//! Finding what Gleap already holds for a record, without trusting a filter. A candidate a
//! filter returned is adopted only when its own fields are what we look for; none such means
//! "not there", more than one "ambiguous" (the record goes to the dead-letter file, nothing is
//! written over either). Where the answer shows the filter was not applied (candidates that
//! do not have the filtered value) and none is the one, "not there" cannot be trusted
//! ([`LookUp::FilterIgnored`]): tickets and messages are then looked for among every page,
//! other look-ups stop the stream rather than create a record twice.

use serde_json::Value;

use super::SessionKey;
use crate::gleap::answer;
use crate::gleap::client::{GleapClient, MAX_PAGE_SIZE, RequestCounters};
use crate::gleap::fields::SESSION_FIELDS;
use crate::gleap::paging::{PagingError, list_paced};

/// What a look-up found.
#[derive(Debug, Clone, PartialEq)]
pub enum LookUp {
    Absent,
    /// The one record that is what we look for: its id and the document.
    Found(String, Value),
    /// Several records are; their ids.
    Ambiguous(Vec<String>),
    /// The filter was not applied (candidates without the filtered value came back) and
    /// none of the candidates is the one: why. The answer says nothing of the record.
    FilterIgnored(String),
    /// The answer cannot be used (a candidate without an id): why.
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
        0 if ignored => LookUp::FilterIgnored(format!(
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

/// What a prefetch keeps of one session: a hash of its key, its id, and where the hashes of
/// its fields are ([`Prefetched::field_hashes`]). About 40 bytes and 8 a field, instead of the
/// whole document.
#[derive(Debug)]
struct Summary {
    key: [u64; 2],
    id: CompactId,
    fields_at: u32,
    fields_len: u8,
}

/// A session id: a 24-hex-digit ObjectId as its 12 bytes, any other by its place in
/// `Prefetched::other_ids`.
#[derive(Debug)]
enum CompactId {
    ObjectId([u8; 12]),
    Other(u32),
}

/// Every session of the project by key, read once before (or, with `prefetch: auto`, while)
/// a sessions stream writes: kept compact, so that a million sessions fit in well under
/// 200 MB.
#[derive(Debug, Default)]
pub struct Prefetched {
    key: Option<SessionKey>,
    /// Sorted by key once complete.
    sessions: Vec<Summary>,
    /// Per session field: its index in [`SESSION_FIELDS`] (top 6 bits) and a hash of its
    /// value ([`field_hash`]).
    field_hashes: Vec<u64>,
    /// Ids that are not ObjectIds.
    other_ids: Vec<Box<str>>,
    sorted: bool,
}

/// What the prefetch found for a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Cached {
    Absent,
    /// Its id, and whether the stored session already holds every field of the body.
    Found(String, bool),
    Ambiguous(Vec<String>),
}

fn key_hash(key: SessionKey, value: &str) -> [u64; 2] {
    let h = xxhash_rust::xxh3::xxh3_128(key_text(key, value).as_bytes());
    [(h >> 64) as u64, h as u64]
}

/// A field's index in [`SESSION_FIELDS`] and a hash of its value (objects with their keys in
/// order, so `{"a":1,"b":2}` and `{"b":2,"a":1}` are one value, as they compare equal).
pub fn field_hash(index: usize, value: &Value) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    hash_value(&mut h, value);
    ((index as u64) << 58) | (h.digest() >> 6)
}

fn hash_value(h: &mut xxhash_rust::xxh3::Xxh3, value: &Value) {
    match value {
        Value::Null => h.update(b"n"),
        Value::Bool(b) => h.update(if *b { b"t" } else { b"f" }),
        Value::Number(n) => {
            h.update(b"#");
            h.update(n.to_string().as_bytes());
            h.update(b";");
        }
        Value::String(s) => {
            h.update(b"s");
            h.update(&(s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
        Value::Array(items) => {
            h.update(b"[");
            h.update(&(items.len() as u64).to_le_bytes());
            for item in items {
                hash_value(h, item);
            }
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            h.update(b"{");
            h.update(&(keys.len() as u64).to_le_bytes());
            for k in keys {
                h.update(&(k.len() as u64).to_le_bytes());
                h.update(k.as_bytes());
                hash_value(h, &map[k]);
            }
        }
    }
}

/// A `userId` found by its key is the same value (an email may differ in case): not kept.
fn key_equals_itself(key: SessionKey, field: &str) -> bool {
    key == SessionKey::UserId && field == key.field()
}

fn field_index(name: &str) -> Option<usize> {
    SESSION_FIELDS.iter().position(|f| f.name == name)
}

impl Prefetched {
    fn new(key: SessionKey) -> Prefetched {
        Prefetched {
            key: Some(key),
            ..Default::default()
        }
    }

    /// Keeps what a look-up and a comparison need of a session document.
    fn add(&mut self, doc: &Value) {
        let key = self.key.unwrap_or_default();
        let (Some(k), Some(id)) = (
            doc.get(key.field()).and_then(Value::as_str),
            answer::id(doc),
        ) else {
            return;
        };
        let fields_at = self.field_hashes.len() as u32;
        if let Value::Object(map) = doc {
            for (name, value) in map {
                if key_equals_itself(key, name) {
                    continue;
                }
                if let Some(i) = field_index(name) {
                    self.field_hashes.push(field_hash(i, value));
                }
            }
        }
        let id = match object_id_bytes(id) {
            Some(bytes) => CompactId::ObjectId(bytes),
            None => {
                self.other_ids.push(id.into());
                CompactId::Other(self.other_ids.len() as u32 - 1)
            }
        };
        self.sessions.push(Summary {
            key: key_hash(key, k),
            id,
            fields_at,
            fields_len: (self.field_hashes.len() as u32 - fields_at) as u8,
        });
    }

    /// Sorts by key for look-ups: in place, and not shrunk (a second copy of either list
    /// would be the peak).
    fn finish(&mut self) {
        self.sessions.sort_unstable_by_key(|s| s.key);
        self.sorted = true;
    }

    /// How many sessions it holds.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    fn id(&self, i: usize) -> String {
        match &self.sessions[i].id {
            CompactId::ObjectId(bytes) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
            CompactId::Other(at) => self.other_ids[*at as usize].to_string(),
        }
    }

    /// What the project holds for a key, and whether it already holds `body`: never a
    /// request.
    pub fn get(&self, value: &str, body: &serde_json::Map<String, Value>) -> Cached {
        debug_assert!(self.sorted);
        let wanted = key_hash(self.key.unwrap_or_default(), value);
        let from = self.sessions.partition_point(|s| s.key < wanted);
        let to = from + self.sessions[from..].partition_point(|s| s.key == wanted);
        match to - from {
            0 => Cached::Absent,
            1 => {
                let s = &self.sessions[from];
                let at = s.fields_at as usize;
                let stored = &self.field_hashes[at..at + s.fields_len as usize];
                let key = self.key.unwrap_or_default();
                let same = body.iter().all(|(name, v)| {
                    key_equals_itself(key, name)
                        || field_index(name).is_some_and(|i| stored.contains(&field_hash(i, v)))
                });
                Cached::Found(self.id(from), same)
            }
            _ => Cached::Ambiguous((from..to).map(|i| self.id(i)).collect()),
        }
    }
}

/// The 12 bytes of a 24-hex-digit ObjectId (lower case, so that it prints back the same).
fn object_id_bytes(id: &str) -> Option<[u8; 12]> {
    if id.len() != 24
        || !id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut out = [0u8; 12];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&id[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Reads every session ([`list_paced`]: safe paging) and keeps them compactly. With `pace`,
/// each page waits for a permit of it first (`prefetch: auto`); `page_read` is called after
/// each page.
pub async fn prefetch(
    client: &GleapClient,
    key: SessionKey,
    counters: &RequestCounters,
    pace: Option<&tokio::sync::Semaphore>,
    mut page_read: impl FnMut(),
) -> Result<Prefetched, PagingError> {
    let mut prefetched = Prefetched::new(key);
    list_paced(
        client,
        counters,
        "/sessions",
        &[("sort", "createdAt")],
        MAX_PAGE_SIZE,
        pace,
        |page| {
            for session in &page {
                prefetched.add(session);
            }
            page_read();
        },
    )
    .await?;
    prefetched.finish();
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
            matches!(&ignored, LookUp::FilterIgnored(m) if m.contains("did not apply the filter")),
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
        let mut p = Prefetched::new(SessionKey::Email);
        let docs = [
            ("65a000000000000000000001", "A@x.io"),
            ("2", "b@x.io"),
            ("65a000000000000000000003", "b@X.io"),
        ];
        for (id, email) in docs {
            p.add(
                &json!({"_id": id, "email": email, "name": "N", "customData": {"a": 1, "b": [2]}}),
            );
        }
        p.finish();
        let body = |v: Value| v.as_object().unwrap().clone();
        let same = body(json!({"email": "a@x.io", "customData": {"b": [2], "a": 1}}));
        // The stored email is `A@x.io`: not the same value.
        assert_eq!(
            p.get("a@x.io", &same),
            Cached::Found("65a000000000000000000001".into(), false)
        );
        let same = body(json!({"email": "A@x.io", "customData": {"b": [2], "a": 1}, "name": "N"}));
        assert_eq!(
            p.get("a@X.io", &same),
            Cached::Found("65a000000000000000000001".into(), true),
            "the same fields, whatever the order of an object's keys"
        );
        let other = body(json!({"email": "A@x.io", "phone": "1"}));
        assert_eq!(
            p.get("a@x.io", &other),
            Cached::Found("65a000000000000000000001".into(), false),
            "a field the session does not have"
        );
        assert_eq!(
            p.get("B@x.io", &same),
            Cached::Ambiguous(vec!["2".into(), "65a000000000000000000003".into()])
        );
        assert_eq!(p.get("c@x.io", &same), Cached::Absent);
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
