//! Records, where they came from, dotted field paths and typed casts.
//!
//! A record is a JSON object that keeps its keys in source order. Sources make them,
//! transforms reshape them, sinks write them.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
pub use serde_json::{Map, Value};

/// A record: a JSON object with keys in insertion order.
pub type Record = Map<String, Value>;

/// How deep values in records may nest (serde_json's own parse limit). Every place that
/// builds nested values from data (JSON parsing, jq outputs, HTML) stays within it, so the
/// code that walks records recursively (jq, sinks, hashing) cannot overflow the stack.
pub const MAX_DEPTH: usize = 128;

/// Whether `text` is an integer literal (`-?[0-9]+`); with [`fits_64_bits`], tells the
/// integers that would lose digits as floats.
pub fn is_integer_literal(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Follows JSON text byte by byte to tell what is inside strings (escapes included), for
/// scans that must not parse it.
#[derive(Debug, Default)]
pub struct JsonStrings {
    in_string: bool,
    escaped: bool,
}

impl JsonStrings {
    /// Whether `b`, the next byte, belongs to a string (its quotes included).
    pub fn string_byte(&mut self, b: u8) -> bool {
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_string = false;
            }
            return true;
        }
        self.in_string = b == b'"';
        self.in_string
    }
}

/// Whether an integer literal fits a JSON number without rounding (an `i64` or a `u64`).
pub fn fits_64_bits(text: &str) -> bool {
    text.parse::<i64>().is_ok() || text.parse::<u64>().is_ok()
}

/// Where a record came from, for the dead-letter file and error messages.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Position {
    /// The source file, as the user wrote its path (after glob expansion).
    pub file: Arc<str>,
    /// The 1-based line the record starts on, for line-based formats.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// The 1-based number of the record in its file (header rows not counted).
    pub row: u64,
    /// The record's 0-based number among all records of its stream, in reading order; set
    /// by the engine (checkpoints count in it).
    #[serde(skip)]
    pub seq: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}", self.file, line),
            None => write!(f, "{} row {}", self.file, self.row),
        }
    }
}

/// A dotted path into a record: `customData.plan` is the `plan` key of the `customData` object.
/// A top-level key that itself contains dots (a CSV header `a.b`) is found by its full name first.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath {
    raw: String,
    segments: Vec<String>,
}

impl FieldPath {
    pub fn parse(raw: &str) -> Result<FieldPath, String> {
        if raw.is_empty() {
            return Err("a field name cannot be empty".into());
        }
        let segments: Vec<String> = raw.split('.').map(str::to_string).collect();
        if segments.iter().any(String::is_empty) {
            return Err(format!(
                "`{raw}` is not a field path: a dotted path has no empty parts"
            ));
        }
        Ok(FieldPath {
            raw: raw.to_string(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    pub fn is_nested(&self) -> bool {
        self.segments.len() > 1
    }

    pub fn get<'a>(&self, record: &'a Record) -> Option<&'a Value> {
        if let Some(v) = record.get(&self.raw) {
            return Some(v);
        }
        let (first, rest) = self.segments.split_first()?;
        let mut value = record.get(first)?;
        for seg in rest {
            value = value.as_object()?.get(seg)?;
        }
        Some(value)
    }

    pub fn get_mut<'a>(&self, record: &'a mut Record) -> Option<&'a mut Value> {
        if record.contains_key(&self.raw) {
            return record.get_mut(&self.raw);
        }
        let (first, rest) = self.segments.split_first()?;
        let mut value = record.get_mut(first)?;
        for seg in rest {
            value = value.as_object_mut()?.get_mut(seg)?;
        }
        Some(value)
    }

    /// Sets the value, creating intermediate objects as needed.
    pub fn set(&self, record: &mut Record, value: Value) -> Result<(), String> {
        if !self.is_nested() || record.contains_key(&self.raw) {
            record.insert(self.raw.clone(), value);
            return Ok(());
        }
        let (last, parents) = self.segments.split_last().expect("paths are never empty");
        let mut object = record;
        for (i, seg) in parents.iter().enumerate() {
            let entry = object
                .entry(seg.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if entry.is_null() {
                *entry = Value::Object(Map::new());
            }
            object = match entry {
                Value::Object(o) => o,
                other => {
                    return Err(format!(
                        "cannot set `{}`: `{}` is {}, not an object",
                        self.raw,
                        self.segments[..=i].join("."),
                        kind_of(other)
                    ));
                }
            };
        }
        object.insert(last.clone(), value);
        Ok(())
    }

    /// Removes the value and returns it. Emptied parent objects are left in place.
    pub fn remove(&self, record: &mut Record) -> Option<Value> {
        if let Some(v) = record.shift_remove(&self.raw) {
            return Some(v);
        }
        let (last, parents) = self.segments.split_last()?;
        let mut object = record;
        for seg in parents {
            object = object.get_mut(seg)?.as_object_mut()?;
        }
        object.shift_remove(last)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl<'de> Deserialize<'de> for FieldPath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        FieldPath::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl Serialize for FieldPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

impl JsonSchema for FieldPath {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "FieldPath".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A field name; dots reach into nested objects (`customData.plan`).",
            "pattern": "^[^.]+(\\.[^.]+)*$"
        })
    }
}

/// "a string", "an object"... for messages.
pub fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a float",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A value type, as written in `cast:`, in CSV column types and in Parquet schemas.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FieldType {
    String,
    Int,
    Float,
    Bool,
    /// An instant, kept in records as an RFC 3339 UTC string, written to Parquet as a UTC
    /// timestamp.
    Timestamp,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// Any JSON value; from a string, the string is parsed as JSON.
    Json,
    /// A list of values of one type; from a string, a JSON array or comma-separated items.
    List(Box<FieldType>),
}

impl FieldType {
    pub const NAMES: &'static [&'static str] = &[
        "string",
        "int",
        "float",
        "bool",
        "timestamp",
        "date",
        "json",
        "list<TYPE>",
    ];
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldType::String => f.write_str("string"),
            FieldType::Int => f.write_str("int"),
            FieldType::Float => f.write_str("float"),
            FieldType::Bool => f.write_str("bool"),
            FieldType::Timestamp => f.write_str("timestamp"),
            FieldType::Date => f.write_str("date"),
            FieldType::Json => f.write_str("json"),
            FieldType::List(t) => write!(f, "list<{t}>"),
        }
    }
}

impl FromStr for FieldType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        Ok(match t {
            "string" | "str" | "text" => FieldType::String,
            "int" | "integer" | "int64" | "long" => FieldType::Int,
            "float" | "double" | "float64" | "number" => FieldType::Float,
            "bool" | "boolean" => FieldType::Bool,
            "timestamp" | "datetime" => FieldType::Timestamp,
            "date" => FieldType::Date,
            "json" => FieldType::Json,
            _ => {
                if let Some(inner) = t.strip_prefix("list<").and_then(|r| r.strip_suffix('>')) {
                    return Ok(FieldType::List(Box::new(inner.parse()?)));
                }
                let names = FieldType::NAMES.join(", ");
                return Err(
                    match super::config::did_you_mean(t, FieldType::NAMES.iter().copied()) {
                        Some(s) => {
                            format!("unknown type `{t}`: did you mean `{s}`? (types: {names})")
                        }
                        None => format!("unknown type `{t}`; types: {names}"),
                    },
                );
            }
        })
    }
}

impl<'de> Deserialize<'de> for FieldType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for FieldType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl JsonSchema for FieldType {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "FieldType".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "string, int, float, bool, timestamp (RFC 3339, UTC), date (YYYY-MM-DD), json, or list<TYPE>",
            "pattern": "^(string|int|float|bool|timestamp|date|json|list<.+>)$"
        })
    }
}

/// Converts `value` to `ty`. Null stays null; an empty string becomes null for every type but
/// `string`. The error says what could not be converted, without the field name.
pub fn cast(value: &Value, ty: &FieldType) -> Result<Value, String> {
    let fail = || Err(format!("cannot cast {} to {ty}", describe(value)));
    match value {
        Value::Null => return Ok(Value::Null),
        Value::String(s) if s.is_empty() && *ty != FieldType::String => return Ok(Value::Null),
        _ => {}
    }
    match ty {
        FieldType::String => Ok(match value {
            Value::String(_) => value.clone(),
            Value::Number(n) => Value::String(n.to_string()),
            Value::Bool(b) => Value::String(b.to_string()),
            other => Value::String(other.to_string()),
        }),
        FieldType::Int => match value {
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(value.clone()),
            Value::Number(n) => float_to_int(n.as_f64().unwrap_or(f64::NAN)).map_or_else(fail, Ok),
            Value::String(s) => parse_int(s.trim()).map_or_else(fail, Ok),
            _ => fail(),
        },
        FieldType::Float => match value {
            Value::Number(n) => serde_json::Number::from_f64(n.as_f64().unwrap_or(f64::NAN))
                .map(Value::Number)
                .map_or_else(fail, Ok),
            Value::String(s) => s
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .map_or_else(fail, Ok),
            _ => fail(),
        },
        FieldType::Bool => match value {
            Value::Bool(_) => Ok(value.clone()),
            Value::Number(n) if n.as_i64() == Some(0) => Ok(Value::Bool(false)),
            Value::Number(n) if n.as_i64() == Some(1) => Ok(Value::Bool(true)),
            Value::String(s) => parse_bool(s.trim()).map(Value::Bool).map_or_else(fail, Ok),
            _ => fail(),
        },
        FieldType::Timestamp => match value {
            Value::String(s) => parse_timestamp(s.trim())
                .map(|t| Value::String(format_timestamp(&t)))
                .map_or_else(fail, Ok),
            Value::Number(n) => n
                .as_f64()
                .and_then(epoch_to_timestamp)
                .map(|t| Value::String(format_timestamp(&t)))
                .map_or_else(fail, Ok),
            _ => fail(),
        },
        FieldType::Date => match value {
            Value::String(s) => parse_date(s.trim())
                .map(|d| Value::String(d.format("%Y-%m-%d").to_string()))
                .map_or_else(fail, Ok),
            _ => fail(),
        },
        FieldType::Json => match value {
            Value::String(s) => serde_json::from_str(s)
                .map_err(|e| format!("cannot cast {} to json: {e}", describe(value))),
            other => Ok(other.clone()),
        },
        FieldType::List(inner) => {
            let owned;
            let items: &[Value] = match value {
                Value::Array(items) => items,
                Value::String(s) => {
                    let t = s.trim();
                    owned = if t.starts_with('[') {
                        match serde_json::from_str::<Value>(t) {
                            Ok(Value::Array(items)) => items,
                            _ => return fail(),
                        }
                    } else {
                        t.split(',')
                            .map(|p| Value::String(p.trim().to_string()))
                            .collect()
                    };
                    &owned
                }
                other => std::slice::from_ref(other),
            };
            items
                .iter()
                .map(|v| cast(v, inner))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array)
        }
    }
}

fn float_to_int(f: f64) -> Option<Value> {
    (f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15).then(|| Value::from(f as i64))
}

fn parse_int(s: &str) -> Option<Value> {
    if let Ok(i) = s.parse::<i64>() {
        return Some(Value::from(i));
    }
    if let Ok(u) = s.parse::<u64>() {
        return Some(Value::from(u));
    }
    s.parse::<f64>().ok().and_then(float_to_int)
}

pub fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "y" | "1" => Some(true),
        "false" | "f" | "no" | "n" | "0" => Some(false),
        _ => None,
    }
}

/// A value for messages: the type and a short excerpt.
pub fn describe(value: &Value) -> String {
    match value {
        Value::String(s) if s.chars().count() > 40 => {
            format!("string {:?}", s.chars().take(40).collect::<String>() + "…")
        }
        Value::String(s) => format!("string {s:?}"),
        Value::Object(_) => "an object".into(),
        Value::Array(_) => "a list".into(),
        other => format!("{} `{other}`", kind_of(other)),
    }
}

/// Parses the timestamp forms found in exports: RFC 3339 with an offset, or a date-time
/// without one (`2024-03-01 12:00:00`, `2024-03-01T12:00:00.5`, taken as UTC), or a date
/// (midnight UTC).
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    if let Some(t) = parse_timestamp_fast(s.as_bytes()) {
        return Some(t);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%.f%#z",
        "%Y-%m-%dT%H:%M:%S%.f%#z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(s, format) {
            return Some(t.with_timezone(&Utc));
        }
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
            return Some(Utc.from_utc_datetime(&t));
        }
    }
    if let Some(s) = s.strip_suffix(" UTC")
        && let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
    {
        return Some(Utc.from_utc_datetime(&t));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| Utc.from_utc_datetime(&t))
}

/// `YYYY-MM-DD`, optionally followed by `[T ]HH:MM:SS[.fraction]` and `Z`, `±HH:MM` or
/// nothing (UTC): the forms nearly every export uses, without chrono's format parsing.
/// Anything else is left to the general parser.
fn parse_timestamp_fast(b: &[u8]) -> Option<DateTime<Utc>> {
    fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
        let part = b.get(at..at + n)?;
        part.iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    }
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let date =
        NaiveDate::from_ymd_opt(digits(b, 0, 4)? as i32, digits(b, 5, 2)?, digits(b, 8, 2)?)?;
    if b.len() == 10 {
        return Some(Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0)?));
    }
    if !(b[10] == b'T' || b[10] == b' ') || b.len() < 19 || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, m, sec) = (digits(b, 11, 2)?, digits(b, 14, 2)?, digits(b, 17, 2)?);
    let mut i = 19;
    let mut nanos = 0u32;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 9 {
                nanos = nanos * 10 + u32::from(b[i] - b'0');
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return None;
        }
        nanos *= 10u32.pow(9u32.saturating_sub(n as u32));
    }
    let offset_secs: i64 = match &b[i..] {
        [] | [b'Z'] | [b'z'] => 0,
        [sign @ (b'+' | b'-'), rest @ ..] if rest.len() == 5 && rest[2] == b':' => {
            let minutes = i64::from(digits(rest, 0, 2)?) * 60 + i64::from(digits(rest, 3, 2)?);
            if *sign == b'+' {
                minutes * 60
            } else {
                -minutes * 60
            }
        }
        _ => return None,
    };
    let time = chrono::NaiveTime::from_hms_nano_opt(h, m, sec, nanos)?;
    let local = Utc.from_utc_datetime(&date.and_time(time));
    Some(local - chrono::Duration::seconds(offset_secs))
}

/// Parses a date, or the UTC date of a timestamp.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .or_else(|| parse_timestamp(s).map(|t| t.date_naive()))
}

/// Unix time: seconds when below 10^11 (before year 5138), milliseconds above.
pub fn epoch_to_timestamp(n: f64) -> Option<DateTime<Utc>> {
    if !n.is_finite() {
        return None;
    }
    let millis = if n.abs() < 1e11 { n * 1000.0 } else { n };
    Utc.timestamp_millis_opt(millis.round() as i64).single()
}

/// The canonical form timestamps take in records: RFC 3339 in UTC, milliseconds
/// (microseconds when there are any).
pub fn format_timestamp(t: &DateTime<Utc>) -> String {
    let format = if t.timestamp_subsec_micros().is_multiple_of(1000) {
        SecondsFormat::Millis
    } else {
        SecondsFormat::Micros
    };
    t.to_rfc3339_opts(format, true)
}

/// Whether `s` is written exactly in a canonical timestamp form (`2024-03-01T12:00:00.000Z`,
/// an offset, or no fraction); used by schema inference, which must not guess on loose forms.
pub fn is_strict_timestamp(s: &str) -> bool {
    s.len() >= 20 && s.as_bytes().get(10) == Some(&b'T') && DateTime::parse_from_rfc3339(s).is_ok()
}

/// Whether `s` is exactly `YYYY-MM-DD`.
pub fn is_strict_date(s: &str) -> bool {
    s.len() == 10 && NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(v: Value) -> Record {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn paths_get_set_and_remove_nested_values() {
        let mut r = rec(json!({"a": {"b": 1}, "x.y": 2, "s": "str"}));
        let ab = FieldPath::parse("a.b").unwrap();
        assert_eq!(ab.get(&r), Some(&json!(1)));
        assert_eq!(FieldPath::parse("x.y").unwrap().get(&r), Some(&json!(2)));
        FieldPath::parse("c.d.e")
            .unwrap()
            .set(&mut r, json!(true))
            .unwrap();
        assert_eq!(r["c"], json!({"d": {"e": true}}));
        let err = FieldPath::parse("s.t")
            .unwrap()
            .set(&mut r, json!(1))
            .unwrap_err();
        assert!(err.contains("`s` is a string"), "{err}");
        assert_eq!(ab.remove(&mut r), Some(json!(1)));
        assert_eq!(r["a"], json!({}));
        assert!(FieldPath::parse("a..b").is_err());
    }

    #[test]
    fn casts_convert_or_explain() {
        assert_eq!(cast(&json!("42"), &FieldType::Int).unwrap(), json!(42));
        assert_eq!(cast(&json!(" 4.0 "), &FieldType::Int).unwrap(), json!(4));
        assert_eq!(cast(&json!(""), &FieldType::Int).unwrap(), json!(null));
        assert_eq!(
            cast(&json!("abc"), &FieldType::Int).unwrap_err(),
            "cannot cast string \"abc\" to int"
        );
        assert!(cast(&json!(4.5), &FieldType::Int).is_err());
        assert_eq!(cast(&json!("yes"), &FieldType::Bool).unwrap(), json!(true));
        assert_eq!(cast(&json!(12), &FieldType::String).unwrap(), json!("12"));
        assert_eq!(
            cast(&json!("2024-03-01 12:30:00"), &FieldType::Timestamp).unwrap(),
            json!("2024-03-01T12:30:00.000Z")
        );
        assert_eq!(
            cast(&json!("2024-03-01T12:30:00+02:00"), &FieldType::Timestamp).unwrap(),
            json!("2024-03-01T10:30:00.000Z")
        );
        assert_eq!(
            cast(&json!(1700000000), &FieldType::Timestamp).unwrap(),
            json!("2023-11-14T22:13:20.000Z")
        );
        assert_eq!(
            cast(&json!(1700000000123i64), &FieldType::Timestamp).unwrap(),
            json!("2023-11-14T22:13:20.123Z")
        );
        assert_eq!(
            cast(&json!("2024-02-30"), &FieldType::Date).unwrap_err(),
            "cannot cast string \"2024-02-30\" to date"
        );
        assert_eq!(
            cast(&json!("a, b"), &"list<string>".parse().unwrap()).unwrap(),
            json!(["a", "b"])
        );
        assert_eq!(
            cast(&json!("[1,2]"), &"list<int>".parse().unwrap()).unwrap(),
            json!([1, 2])
        );
        assert_eq!(
            cast(&json!("{\"a\":1}"), &FieldType::Json).unwrap(),
            json!({"a": 1})
        );
    }

    #[test]
    fn type_names_parse_with_suggestions() {
        assert_eq!(
            "list<int>".parse::<FieldType>().unwrap(),
            FieldType::List(Box::new(FieldType::Int))
        );
        assert!(
            "timestmap"
                .parse::<FieldType>()
                .unwrap_err()
                .contains("did you mean `timestamp`")
        );
    }

    #[test]
    fn the_fast_timestamp_path_agrees_with_chrono() {
        for s in [
            "2024-03-01",
            "2024-03-01 12:30:00",
            "2024-03-01T12:30:00Z",
            "2024-03-01T12:30:00.5Z",
            "2024-03-01T12:30:00.123456789+02:00",
            "2024-03-01 12:30:00-05:30",
            "2024-02-29T23:59:59.000Z",
        ] {
            let fast = parse_timestamp_fast(s.as_bytes()).unwrap_or_else(|| panic!("{s}"));
            let slow = DateTime::parse_from_rfc3339(&s.replace(' ', "T"))
                .map(|t| t.with_timezone(&Utc))
                .ok()
                .or_else(|| {
                    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
                        .ok()
                        .map(|t| Utc.from_utc_datetime(&t))
                })
                .or_else(|| {
                    NaiveDate::parse_from_str(s, "%Y-%m-%d")
                        .ok()
                        .map(|d| Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap()))
                });
            assert_eq!(Some(fast), slow, "{s}");
        }
        for s in [
            "2024-02-30",
            "2024-03-01T25:00:00",
            "2024-03-01T12:30",
            "2024-3-1",
            "2024-03-01T12:30:00+0200",
        ] {
            assert_eq!(parse_timestamp_fast(s.as_bytes()), None, "{s}");
        }
        assert!(
            parse_timestamp("2024-03-01T12:30").is_some(),
            "the general parser takes the rest"
        );
        assert!(parse_timestamp("2024-03-01T12:30:00+0200").is_some());
    }

    #[test]
    fn strict_forms_for_inference() {
        assert!(is_strict_timestamp("2024-03-01T12:30:00.000Z"));
        assert!(!is_strict_timestamp("2024-03-01 12:30:00"));
        assert!(is_strict_date("2024-03-01"));
        assert!(!is_strict_date("2024-3-1"));
    }
}
