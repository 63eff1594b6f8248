//! Ordered indexes on `createdAt` and `updatedAt`, so that a list sorted on one of them (the
//! keyset pages of an incremental export) walks just the page instead of every document.
//!
//! An index holds `(milliseconds since the epoch, _id)` of every document whose field is a
//! canonical timestamp, `YYYY-MM-DDTHH:MM:SS.mmmZ`: the form the store writes, in which text
//! order, instant order and millisecond order all agree. A document whose field is anything
//! else (missing, another form, microseconds, not text) is only counted, and while a kind has
//! any such document, lists sorted on that field take the scan path (`ListQuery::run`), whose
//! order on such values is text order.

use std::collections::BTreeSet;
use std::ops::Bound;

use chrono::NaiveDate;
use serde_json::Value;

use super::query::TimeField;

/// The milliseconds of a canonical timestamp (`2024-01-01T00:00:00.000Z`), or `None` for any
/// other text, including leap seconds (`:60`), which chrono orders apart from their text.
pub fn canonical_millis(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 24 {
        return None;
    }
    for (i, &c) in b.iter().enumerate() {
        let ok = match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'.',
            23 => c == b'Z',
            _ => c.is_ascii_digit(),
        };
        if !ok {
            return None;
        }
    }
    let num = |from: usize, to: usize| {
        b[from..to]
            .iter()
            .fold(0u32, |n, &c| n * 10 + u32::from(c - b'0'))
    };
    let time = NaiveDate::from_ymd_opt(num(0, 4) as i32, num(5, 7), num(8, 10))?
        .and_hms_milli_opt(num(11, 13), num(14, 16), num(17, 19), num(20, 23))?;
    Some(time.and_utc().timestamp_millis())
}

/// One field's index for one kind of document.
#[derive(Debug, Default)]
pub struct TimeIndex {
    /// `(milliseconds, _id)` of the documents with a canonical timestamp: in time order, ties
    /// in `_id` order.
    entries: BTreeSet<(i64, Box<str>)>,
    /// How many documents have the field missing or not canonical.
    irregular: usize,
}

impl TimeIndex {
    /// Takes in a document (its `_id` and its value of the field).
    pub fn insert(&mut self, value: Option<&Value>, id: &str) {
        match millis_of(value) {
            Some(ms) => {
                self.entries.insert((ms, id.into()));
            }
            None => self.irregular += 1,
        }
    }

    /// Lets go of a document, given the value it was inserted with.
    pub fn remove(&mut self, value: Option<&Value>, id: &str) {
        match millis_of(value) {
            Some(ms) => {
                self.entries.remove(&(ms, Box::from(id)));
            }
            None => self.irregular = self.irregular.saturating_sub(1),
        }
    }

    /// Whether every document is in the index, so that it can answer lists.
    pub fn complete(&self) -> bool {
        self.irregular == 0
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The `_id`s of the documents from `from` to `to` milliseconds (both included), in time
    /// order, ties in `_id` order (reverse it for a descending list).
    pub fn range(
        &self,
        from: Option<i64>,
        to: Option<i64>,
    ) -> impl DoubleEndedIterator<Item = &str> + '_ {
        let lower = match from {
            Some(ms) => Bound::Included((ms, Box::from(""))),
            None => Bound::Unbounded,
        };
        let upper = match to {
            // The empty `_id` is the least, so this takes every `_id` at `ms`.
            Some(ms) if ms < i64::MAX => Bound::Excluded((ms + 1, Box::from(""))),
            _ => Bound::Unbounded,
        };
        let empty = matches!((from, to), (Some(a), Some(b)) if a > b);
        let (lower, upper) = if empty {
            // `BTreeSet::range` panics when the start is after the end.
            (
                Bound::Included((0, Box::from(""))),
                Bound::Excluded((0, Box::from(""))),
            )
        } else {
            (lower, upper)
        };
        self.entries.range((lower, upper)).map(|(_, id)| &**id)
    }
}

fn millis_of(value: Option<&Value>) -> Option<i64> {
    value.and_then(Value::as_str).and_then(canonical_millis)
}

/// A kind's two indexes.
#[derive(Debug, Default)]
pub struct TimeIndexes {
    created: TimeIndex,
    updated: TimeIndex,
}

impl TimeIndexes {
    pub fn get(&self, field: TimeField) -> &TimeIndex {
        match field {
            TimeField::CreatedAt => &self.created,
            TimeField::UpdatedAt => &self.updated,
        }
    }

    pub fn get_mut(&mut self, field: TimeField) -> &mut TimeIndex {
        match field {
            TimeField::CreatedAt => &mut self.created,
            TimeField::UpdatedAt => &mut self.updated,
        }
    }

    /// Takes in a new document.
    pub fn insert(&mut self, id: &str, doc: &super::store::Doc) {
        for field in TimeField::ALL {
            self.get_mut(field).insert(doc.get(field.name()), id);
        }
    }

    /// Lets go of a document.
    pub fn remove(&mut self, id: &str, doc: &super::store::Doc) {
        for field in TimeField::ALL {
            self.get_mut(field).remove(doc.get(field.name()), id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{format_timestamp, parse_timestamp};
    use serde_json::json;

    #[test]
    fn canonical_timestamps_only() {
        for s in [
            "2024-01-01T00:00:00.000Z",
            "1970-01-01T00:00:00.000Z",
            "1969-12-31T23:59:59.999Z",
            "2024-02-29T13:14:15.678Z",
            "0001-01-01T00:00:00.000Z",
            "9999-12-31T23:59:59.999Z",
        ] {
            let t = parse_timestamp(s).unwrap();
            assert_eq!(canonical_millis(s), Some(t.timestamp_millis()), "{s}");
            assert_eq!(format_timestamp(&t), s);
        }
        for s in [
            "2024-01-01T00:00:00Z",
            "2024-01-01T00:00:00.000+00:00",
            "2024-01-01T00:00:00.000001Z",
            "2024-01-01 00:00:00.000Z",
            "2024-01-01",
            "2023-02-29T00:00:00.000Z",
            "2016-12-31T23:59:60.000Z",
            "2024-01-01T24:00:00.000Z",
            "+2024-01-01T00:00:00.000Z",
            "2024-01-01T00:00:00.00aZ",
        ] {
            assert_eq!(canonical_millis(s), None, "{s}");
        }
    }

    #[test]
    fn ranges_take_whole_milliseconds_in_id_order() {
        let mut index = TimeIndex::default();
        for (t, id) in [(5, "b"), (5, "a"), (3, "z"), (7, "c"), (5, "c")] {
            let ts = format_timestamp(&chrono::DateTime::from_timestamp_millis(t).unwrap());
            index.insert(Some(&json!(ts)), id);
        }
        index.insert(Some(&json!("2024-01-01")), "odd");
        index.insert(None, "none");
        let ids = |from, to| index.range(from, to).collect::<Vec<_>>();
        assert_eq!(ids(None, None), ["z", "a", "b", "c", "c"]);
        assert_eq!(ids(Some(5), Some(5)), ["a", "b", "c"]);
        assert_eq!(ids(Some(4), None), ["a", "b", "c", "c"]);
        assert_eq!(ids(None, Some(4)), ["z"]);
        assert!(ids(Some(6), Some(5)).is_empty());
        assert_eq!(ids(Some(i64::MIN), Some(i64::MAX)).len(), 5);
        assert_eq!(
            index.range(None, None).rev().collect::<Vec<_>>(),
            ["c", "c", "b", "a", "z"]
        );
        assert!(!index.complete());
        index.remove(Some(&json!("2024-01-01")), "odd");
        index.remove(None, "none");
        assert!(index.complete());
        index.remove(Some(&json!("1970-01-01T00:00:00.005Z")), "b");
        assert_eq!(
            index.range(Some(5), Some(5)).collect::<Vec<_>>(),
            ["a", "c"]
        );
        assert_eq!(index.len(), 4);
    }
}
