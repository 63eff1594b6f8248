//! List queries: `limit` (at most 1000) and `skip`, `sort=field` / `sort=-field`, equality
//! filters on any property including dotted paths (`customData.importId=x`, a comma for
//! any-of), and range filters (`createdAt>=...`, `updatedAt<...`, `bugId>10`).
//!
//! A list sorted on `createdAt` or `updatedAt` orders documents with the same timestamp by
//! `_id`: ascending for `sort=field`, descending for `sort=-field` (a descending list is the
//! ascending one reversed). Other sort fields keep stored order among ties. Such lists can be
//! answered from the store's timestamp indexes (`IndexPlan`, `ListQuery::run_ordered`), which
//! give the same pages as the scan (`ListQuery::run`) without looking at every document.

use std::cmp::Ordering;

use percent_encoding::percent_decode_str;
use serde_json::Value;

use super::store::Doc;
use crate::record::parse_timestamp;

/// The most a list answers at once.
pub const MAX_LIMIT: usize = crate::gleap::client::MAX_PAGE_SIZE;
/// What a list answers without `limit`.
pub const DEFAULT_LIMIT: usize = 1000;

#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    pub limit: usize,
    pub skip: usize,
    /// Field path and whether descending.
    pub sort: Option<(Vec<String>, bool)>,
    pub filters: Vec<Filter>,
    /// Ids of documents the list does not show yet (`Quirks::index_lag`).
    pub hidden: std::collections::HashSet<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub path: Vec<String>,
    pub op: Op,
    /// Any of these (a comma-separated equality filter).
    pub values: Vec<String>,
    /// The first value as an instant, when it is one (range filters on dates), parsed once.
    pub instant: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
}

/// The fields the store keeps ordered indexes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeField {
    CreatedAt,
    UpdatedAt,
}

impl TimeField {
    pub const ALL: [TimeField; 2] = [TimeField::CreatedAt, TimeField::UpdatedAt];

    pub fn name(self) -> &'static str {
        match self {
            TimeField::CreatedAt => "createdAt",
            TimeField::UpdatedAt => "updatedAt",
        }
    }

    /// The field a (sort or filter) path names, if it is one of them.
    pub fn of(path: &[String]) -> Option<TimeField> {
        match path {
            [one] if one == "createdAt" => Some(TimeField::CreatedAt),
            [one] if one == "updatedAt" => Some(TimeField::UpdatedAt),
            _ => None,
        }
    }
}

/// How to answer a list sorted on `createdAt` or `updatedAt` from that field's index: walk it
/// from `from` to `to` (milliseconds, both included; `None` for no bound), backwards when
/// descending, and check each document against the filters the bounds do not already enforce.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexPlan {
    pub field: TimeField,
    pub desc: bool,
    pub from: Option<i64>,
    pub to: Option<i64>,
    /// Positions in `ListQuery::filters` of the filters left to check per document.
    pub residual: Vec<usize>,
}

/// Query parameters that are not filters.
const RESERVED: &[&str] = &[
    "limit",
    "skip",
    "sort",
    "paginated",
    "before",
    "showHistory",
    "ignoreArchived",
];

fn decode(s: &str) -> String {
    percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

fn path(field: &str) -> Vec<String> {
    field.split('.').map(str::to_string).collect()
}

/// Parses a raw query string.
pub fn parse(raw: Option<&str>) -> Result<ListQuery, String> {
    let mut q = ListQuery {
        limit: DEFAULT_LIMIT,
        skip: 0,
        sort: None,
        filters: Vec::new(),
        hidden: Default::default(),
    };
    for part in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = match part.split_once('=') {
            Some((k, v)) => (decode(k), Some(decode(v))),
            None => (decode(part), None),
        };
        // `createdAt>=x` arrives as key `createdAt>` and value `x`; `createdAt>x` without `=`.
        let (field, op, value) = match value {
            Some(v) => match key.chars().last() {
                Some('>') => (key[..key.len() - 1].to_string(), Op::Gte, v),
                Some('<') => (key[..key.len() - 1].to_string(), Op::Lte, v),
                Some('!') => (key[..key.len() - 1].to_string(), Op::Ne, v),
                _ => (key, Op::Eq, v),
            },
            None => match key.find(['>', '<']) {
                Some(i) => {
                    let op = if key.as_bytes()[i] == b'>' {
                        Op::Gt
                    } else {
                        Op::Lt
                    };
                    (key[..i].to_string(), op, key[i + 1..].to_string())
                }
                None => continue,
            },
        };
        if field.is_empty() {
            return Err(format!("invalid filter `{part}`"));
        }
        if op == Op::Eq && RESERVED.contains(&field.as_str()) {
            match field.as_str() {
                "limit" => {
                    let n: usize = value
                        .parse()
                        .map_err(|_| format!("limit must be a number, not {value:?}"))?;
                    q.limit = n.min(MAX_LIMIT);
                }
                "skip" => {
                    q.skip = value
                        .parse()
                        .map_err(|_| format!("skip must be a number, not {value:?}"))?
                }
                "sort" => {
                    let (name, desc) = match value.strip_prefix('-') {
                        Some(n) => (n, true),
                        None => (value.strip_prefix('+').unwrap_or(&value), false),
                    };
                    q.sort = Some((path(name), desc));
                }
                "ignoreArchived" if value == "true" => q.filters.push(Filter {
                    path: path("archived"),
                    op: Op::Ne,
                    values: vec!["true".into()],
                    instant: None,
                }),
                _ => {}
            }
            continue;
        }
        let values = if op == Op::Eq {
            value.split(',').map(str::to_string).collect()
        } else {
            vec![value]
        };
        let instant = if op == Op::Eq || op == Op::Ne {
            None
        } else {
            parse_timestamp(&values[0])
        };
        q.filters.push(Filter {
            path: path(&field),
            op,
            values,
            instant,
        });
    }
    Ok(q)
}

/// The value at a dotted path.
pub fn value_at<'a>(doc: &'a Doc, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut v = doc.get(first)?;
    for seg in rest {
        v = v.as_object()?.get(seg)?;
    }
    Some(v)
}

fn equals(value: Option<&Value>, wanted: &str) -> bool {
    match value {
        None | Some(Value::Null) => wanted == "null",
        Some(Value::String(s)) => s == wanted,
        Some(Value::Bool(b)) => wanted == if *b { "true" } else { "false" },
        Some(Value::Number(n)) => {
            n.to_string() == wanted
                || matches!((n.as_f64(), wanted.parse::<f64>()), (Some(a), Ok(b)) if a == b)
        }
        Some(Value::Array(items)) => items.iter().any(|i| equals(Some(i), wanted)),
        Some(Value::Object(_)) => false,
    }
}

/// Orders a stored value against a filter's text: as instants when both are timestamps, as
/// numbers when both are numbers, as text otherwise.
fn compare(
    value: &Value,
    wanted: &str,
    wanted_instant: Option<chrono::DateTime<chrono::Utc>>,
) -> Option<Ordering> {
    match value {
        Value::String(s) => {
            if let (Some(b), Some(a)) = (wanted_instant, parse_timestamp(s)) {
                return Some(a.cmp(&b));
            }
            Some(s.as_str().cmp(wanted))
        }
        Value::Number(n) => n.as_f64()?.partial_cmp(&wanted.parse::<f64>().ok()?),
        _ => None,
    }
}

impl Filter {
    pub fn matches(&self, doc: &Doc) -> bool {
        let value = value_at(doc, &self.path);
        let wanted = &self.values[0];
        match self.op {
            Op::Eq => self.values.iter().any(|v| equals(value, v)),
            Op::Ne => !equals(value, wanted),
            op => {
                let Some(ord) = value.and_then(|v| compare(v, wanted, self.instant)) else {
                    return false;
                };
                match op {
                    Op::Gt => ord == Ordering::Greater,
                    Op::Gte => ord != Ordering::Less,
                    Op::Lt => ord == Ordering::Less,
                    Op::Lte => ord != Ordering::Greater,
                    Op::Eq | Op::Ne => unreachable!(),
                }
            }
        }
    }
}

/// Sorts values like the API: priorities by rank (LOW < MEDIUM < HIGH), numbers by value,
/// text by text; missing values first.
fn sort_key_cmp(field: &[String], a: Option<&Value>, b: Option<&Value>) -> Ordering {
    let rank = |v: &str| match v {
        "LOW" => 0,
        "MEDIUM" => 1,
        "HIGH" => 2,
        _ => 3,
    };
    match (a, b) {
        (None | Some(Value::Null), None | Some(Value::Null)) => Ordering::Equal,
        (None | Some(Value::Null), _) => Ordering::Less,
        (_, None | Some(Value::Null)) => Ordering::Greater,
        (Some(Value::String(x)), Some(Value::String(y)))
            if field.len() == 1 && field[0] == "priority" =>
        {
            rank(x).cmp(&rank(y))
        }
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        (Some(x), Some(y)) => x.to_string().cmp(&y.to_string()),
    }
}

impl ListQuery {
    /// The value of an equality filter on `field` with one value, if the query has one.
    pub fn single_value(&self, field: &str) -> Option<&str> {
        self.filters
            .iter()
            .find(|f| {
                f.op == Op::Eq && f.values.len() == 1 && f.path.len() == 1 && f.path[0] == field
            })
            .map(|f| f.values[0].as_str())
    }

    /// Whether the list shows a document (it is not hidden).
    fn shown(&self, doc: &Doc) -> bool {
        self.hidden.is_empty()
            || doc
                .get("_id")
                .and_then(Value::as_str)
                .is_none_or(|id| !self.hidden.contains(id))
    }

    /// The page of matching documents (in stored order, or sorted: ties by `_id` on
    /// `createdAt`/`updatedAt`, else in stored order) and how many match in all, looking at
    /// every document: the scan path.
    pub fn run<'a>(&self, docs: impl Iterator<Item = &'a Doc>) -> (Vec<&'a Doc>, usize) {
        let mut matching: Vec<&Doc> = docs
            .filter(|d| self.shown(d) && self.filters.iter().all(|f| f.matches(d)))
            .collect();
        let total = matching.len();
        if let Some((field, desc)) = &self.sort {
            // Order by the key (on createdAt and updatedAt, then by `_id`, the order of their
            // indexes), then by stored order (so other ties keep it); only the first
            // skip + limit need to be in order.
            let by_id = TimeField::of(field).is_some();
            let mut keyed: Vec<(usize, &Doc)> = matching.into_iter().enumerate().collect();
            let cmp = |a: &(usize, &Doc), b: &(usize, &Doc)| {
                let mut ord = sort_key_cmp(field, value_at(a.1, field), value_at(b.1, field));
                if by_id {
                    ord = ord.then_with(|| sort_key_cmp(&[], a.1.get("_id"), b.1.get("_id")));
                }
                let ord = if *desc { ord.reverse() } else { ord };
                ord.then(a.0.cmp(&b.0))
            };
            let wanted = self.skip.saturating_add(self.limit);
            if wanted < keyed.len() && wanted > 0 {
                keyed.select_nth_unstable_by(wanted - 1, cmp);
                keyed.truncate(wanted);
            }
            keyed.sort_unstable_by(cmp);
            matching = keyed.into_iter().map(|(_, d)| d).collect();
        }
        let page = matching
            .into_iter()
            .skip(self.skip)
            .take(self.limit)
            .collect();
        (page, total)
    }

    /// The plan for answering this query from a timestamp index: when it sorts on
    /// `createdAt` or `updatedAt`. Range filters on that field with a timestamp value become
    /// the bounds (exactly: documents in the index are whole milliseconds); every other
    /// filter stays to be checked per document.
    pub fn index_plan(&self) -> Option<IndexPlan> {
        let (path, desc) = self.sort.as_ref()?;
        let field = TimeField::of(path)?;
        let mut plan = IndexPlan {
            field,
            desc: *desc,
            from: None,
            to: None,
            residual: Vec::new(),
        };
        for (i, filter) in self.filters.iter().enumerate() {
            let bound = match filter.instant {
                // A leap second's milliseconds are not where chrono orders it.
                Some(t)
                    if filter.path == *path
                        && t.timestamp_subsec_nanos() < 1_000_000_000
                        && !matches!(filter.op, Op::Eq | Op::Ne) =>
                {
                    let ms = t.timestamp_millis();
                    let whole = t.timestamp_subsec_nanos().is_multiple_of(1_000_000);
                    // A document at k ms is after t (at ms + a fraction) from ms + 1 on.
                    match filter.op {
                        Op::Gte if whole => (Some(ms), None),
                        Op::Gte | Op::Gt => (Some(ms + 1), None),
                        Op::Lte => (None, Some(ms)),
                        Op::Lt if whole => (None, Some(ms - 1)),
                        Op::Lt => (None, Some(ms)),
                        Op::Eq | Op::Ne => unreachable!(),
                    }
                }
                _ => {
                    plan.residual.push(i);
                    continue;
                }
            };
            if let Some(from) = bound.0 {
                plan.from = Some(plan.from.map_or(from, |f| f.max(from)));
            }
            if let Some(to) = bound.1 {
                plan.to = Some(plan.to.map_or(to, |t| t.min(to)));
            }
        }
        Some(plan)
    }

    /// The page from the keys of an index walk already in the list's order (`lookup` gives
    /// a key's document), with `plan.residual` filters, skip and limit applied: it stops once
    /// the page is full unless `count_all` asks for how many match in all. Without residual
    /// filters every key matches, so skipped and counted keys are never looked up.
    pub fn run_ordered<'a, K>(
        &self,
        plan: &IndexPlan,
        mut keys: impl Iterator<Item = K>,
        lookup: impl Fn(K) -> &'a Doc,
        count_all: bool,
    ) -> (Vec<&'a Doc>, Option<usize>) {
        let filters: Vec<&Filter> = plan.residual.iter().map(|&i| &self.filters[i]).collect();
        if filters.is_empty() && self.hidden.is_empty() {
            let skipped = keys.by_ref().take(self.skip).count();
            let page: Vec<&Doc> = keys.by_ref().take(self.limit).map(lookup).collect();
            let total = count_all.then(|| skipped + page.len() + keys.count());
            return (page, total);
        }
        let mut page = Vec::with_capacity(self.limit.min(MAX_LIMIT));
        if self.limit == 0 && !count_all {
            return (page, None);
        }
        let mut matched = 0usize;
        for key in keys {
            let doc = lookup(key);
            if !self.shown(doc) || !filters.iter().all(|f| f.matches(doc)) {
                continue;
            }
            matched += 1;
            if matched > self.skip && page.len() < self.limit {
                page.push(doc);
                if page.len() == self.limit && !count_all {
                    break;
                }
            }
        }
        (page, count_all.then_some(matched))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn docs() -> Vec<Doc> {
        [
            json!({"_id": "a", "priority": "HIGH", "createdAt": "2024-01-01T00:00:00.000Z", "customData": {"importId": "z1"}, "tags": ["x", "y"], "bugId": 1}),
            json!({"_id": "b", "priority": "LOW", "createdAt": "2024-01-02T00:00:00.000Z", "customData": {"importId": "z2"}, "bugId": 2, "archived": true}),
            json!({"_id": "c", "priority": "MEDIUM", "createdAt": "2024-01-03T00:00:00.000Z", "bugId": 10}),
        ]
        .into_iter()
        .map(|v| v.as_object().unwrap().clone())
        .collect()
    }

    fn ids(query: &str) -> (Vec<String>, usize) {
        let d = docs();
        let q = parse(Some(query)).unwrap();
        let (page, total) = q.run(d.iter());
        (
            page.iter()
                .map(|d| d["_id"].as_str().unwrap().to_string())
                .collect(),
            total,
        )
    }

    #[test]
    fn filters_by_dotted_paths_any_of_and_arrays() {
        assert_eq!(ids("customData.importId=z2").0, ["b"]);
        assert_eq!(ids("customData.importId=z2,z1").0, ["a", "b"]);
        assert_eq!(ids("tags=y").0, ["a"]);
        assert_eq!(ids("bugId=10").0, ["c"]);
        assert_eq!(ids("ignoreArchived=true").0, ["a", "c"]);
        assert_eq!(ids("customData.importId=null").0, ["c"]);
    }

    #[test]
    fn range_filters_compare_instants_and_numbers() {
        assert_eq!(ids("createdAt>=2024-01-02T00:00:00.000Z").0, ["b", "c"]);
        assert_eq!(
            ids("createdAt%3E=2024-01-02").0,
            ["b", "c"],
            "an encoded operator"
        );
        assert_eq!(ids("createdAt<2024-01-02T00:00:00Z").0, ["a"]);
        assert_eq!(ids("createdAt>2024-01-02T00:00:00.000Z").0, ["c"]);
        assert_eq!(ids("bugId>2").0, ["c"], "10 > 2 as numbers, not as text");
        assert_eq!(ids("bugId<=2&createdAt>=2024-01-02").0, ["b"]);
    }

    #[test]
    fn a_partial_sort_keeps_stored_order_among_ties() {
        let docs: Vec<Doc> = (0..50)
            .map(|i| json!({"_id": i, "k": i % 3}).as_object().unwrap().clone())
            .collect();
        let q = parse(Some("sort=k&skip=3&limit=4")).unwrap();
        let (page, total) = q.run(docs.iter());
        let got: Vec<i64> = page.iter().map(|d| d["_id"].as_i64().unwrap()).collect();
        assert_eq!(
            got,
            [9, 12, 15, 18],
            "k=0 docs in stored order, from the fourth"
        );
        assert_eq!(total, 50);
        let q = parse(Some("sort=-k&limit=3")).unwrap();
        let got: Vec<i64> = q
            .run(docs.iter())
            .0
            .iter()
            .map(|d| d["_id"].as_i64().unwrap())
            .collect();
        assert_eq!(got, [2, 5, 8]);
    }

    #[test]
    fn index_plans_turn_ranges_on_the_sort_field_into_exact_millisecond_bounds() {
        let plan = |raw: &str| {
            let p = parse(Some(raw)).unwrap().index_plan();
            p.map(|p| (p.field, p.desc, p.from, p.to, p.residual))
        };
        // 2024-01-01T00:00:00Z in milliseconds.
        let t = 1_704_067_200_000;
        use TimeField::*;
        for (raw, want) in [
            ("sort=updatedAt", (UpdatedAt, false, None, None, vec![])),
            ("sort=-createdAt", (CreatedAt, true, None, None, vec![])),
            (
                "sort=updatedAt&updatedAt>=2024-01-01T00:00:00.000Z&updatedAt<2024-01-01T00:00:01Z",
                (UpdatedAt, false, Some(t), Some(t + 999), vec![]),
            ),
            (
                "sort=updatedAt&updatedAt>2024-01-01T00:00:00Z&updatedAt<=2024-01-01",
                (UpdatedAt, false, Some(t + 1), Some(t), vec![]),
            ),
            // A fraction of a millisecond: whole milliseconds after it, or up to it.
            (
                "sort=createdAt&createdAt>=2024-01-01T00:00:00.0005Z&createdAt<2024-01-01T00:00:00.0105Z",
                (CreatedAt, false, Some(t + 1), Some(t + 10), vec![]),
            ),
            // The tightest of several bounds.
            (
                "sort=createdAt&createdAt>=2024-01-01&createdAt>=2024-01-01T00:00:02Z&createdAt<=2024-01-02&createdAt<=2024-01-01T00:00:05Z",
                (CreatedAt, false, Some(t + 2000), Some(t + 5000), vec![]),
            ),
            // Other fields, other operators and text that is no timestamp are checked per
            // document.
            (
                "status=OPEN&sort=-updatedAt&createdAt>=2024-01-01&updatedAt=2024-01-01T00:00:00.000Z&updatedAt>=soon&updatedAt<=2024-01-01",
                (UpdatedAt, true, None, Some(t), vec![0, 1, 2, 3]),
            ),
        ] {
            assert_eq!(plan(raw), Some(want), "{raw}");
        }
        assert_eq!(plan("sort=bugId&createdAt>=2024-01-01"), None);
        assert_eq!(plan("createdAt>=2024-01-01"), None, "stored order");
        assert_eq!(plan("sort=customData.createdAt"), None);
    }

    #[test]
    fn sorts_pages_and_counts() {
        assert_eq!(ids("sort=-priority").0, ["a", "c", "b"]);
        assert_eq!(ids("sort=priority&limit=2").0, ["b", "c"]);
        assert_eq!(
            ids("sort=-createdAt&skip=1&limit=1"),
            (vec!["b".to_string()], 3)
        );
        assert_eq!(parse(Some("limit=5000")).unwrap().limit, MAX_LIMIT);
        assert!(parse(Some("limit=x")).is_err());
    }
}
