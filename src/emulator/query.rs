//! List queries: `limit` (at most 1000) and `skip`, `sort=field` / `sort=-field`, equality
//! filters on any property including dotted paths (`customData.importId=x`, a comma for
//! any-of), and range filters (`createdAt>=...`, `updatedAt<...`, `bugId>10`).

use std::cmp::Ordering;

use percent_encoding::percent_decode_str;
use serde_json::Value;

use super::store::Doc;
use crate::record::parse_timestamp;

/// The most a list answers at once.
pub const MAX_LIMIT: usize = 1000;
/// What a list answers without `limit`.
pub const DEFAULT_LIMIT: usize = 1000;

#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    pub limit: usize,
    pub skip: usize,
    /// Field path and whether descending.
    pub sort: Option<(Vec<String>, bool)>,
    pub filters: Vec<Filter>,
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
    /// The page of matching documents (in stored order, or sorted; ties keep stored order)
    /// and how many match in all.
    pub fn run<'a>(&self, docs: impl Iterator<Item = &'a Doc>) -> (Vec<&'a Doc>, usize) {
        let mut matching: Vec<&Doc> = docs
            .filter(|d| self.filters.iter().all(|f| f.matches(d)))
            .collect();
        let total = matching.len();
        if let Some((field, desc)) = &self.sort {
            // Order by the key, then by stored order (so ties keep it); only the first
            // skip + limit need to be in order.
            let mut keyed: Vec<(usize, &Doc)> = matching.into_iter().enumerate().collect();
            let cmp = |a: &(usize, &Doc), b: &(usize, &Doc)| {
                let ord = sort_key_cmp(field, value_at(a.1, field), value_at(b.1, field));
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
