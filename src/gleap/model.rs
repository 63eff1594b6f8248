//! What Gleap's request bodies may hold, and a checker for them: which fields a body may
//! carry, of which type. The emulator answers 400 for a wrong type and silently drops unknown
//! fields as Gleap does (counting them); our sink refuses to send unknown fields at all.

use serde_json::{Map, Value};

/// A field a request body may carry.
#[derive(Debug)]
pub struct Field {
    pub name: &'static str,
    pub kind: FieldKind,
    pub required: bool,
}

/// The type of a field.
#[derive(Debug)]
pub enum FieldKind {
    Str,
    Bool,
    Number,
    /// A date-time string (RFC 3339).
    DateTime,
    /// An ObjectId, as a string.
    ObjectId,
    /// One of these strings.
    Enum(&'static [&'static str]),
    /// Any JSON object.
    Map,
    /// An object with these fields; others are dropped.
    Object(&'static [Field]),
    List(&'static FieldKind),
    /// Anything.
    Any,
}

impl FieldKind {
    fn describe(&self) -> String {
        match self {
            FieldKind::Str => "a string".into(),
            FieldKind::Bool => "a boolean".into(),
            FieldKind::Number => "a number".into(),
            FieldKind::DateTime => "a date-time string".into(),
            FieldKind::ObjectId => "an id string".into(),
            FieldKind::Enum(values) => format!("one of {}", values.join(", ")),
            FieldKind::Map | FieldKind::Object(_) => "an object".into(),
            FieldKind::List(inner) => format!("a list of {}", inner.describe()),
            FieldKind::Any => "any value".into(),
        }
    }
}

/// A body checked against a field table.
#[derive(Debug, Default, PartialEq)]
pub struct Checked {
    /// The body without unknown fields.
    pub body: Map<String, Value>,
    /// Dotted paths of the unknown fields that were left out (`attachments.size`).
    pub dropped: Vec<String>,
}

/// Checks `body` against `fields`: unknown fields are left out (and listed), a value of the
/// wrong type or a missing required field is an error naming the field.
pub fn check_body(fields: &[Field], body: Map<String, Value>) -> Result<Checked, String> {
    let mut checked = Checked::default();
    check_object(fields, body, "", &mut checked.dropped).map(|body| {
        checked.body = body;
        checked
    })
}

/// The field table entry for `name`, if Gleap knows the field.
pub fn field<'a>(fields: &'a [Field], name: &str) -> Option<&'a Field> {
    fields.iter().find(|f| f.name == name)
}

fn check_object(
    fields: &[Field],
    object: Map<String, Value>,
    prefix: &str,
    dropped: &mut Vec<String>,
) -> Result<Map<String, Value>, String> {
    let mut out = Map::with_capacity(object.len());
    for (key, value) in object {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match field(fields, &key) {
            Some(f) => {
                let value = check_value(&f.kind, value, &path, dropped)?;
                out.insert(key, value);
            }
            None => dropped.push(path),
        }
    }
    for f in fields.iter().filter(|f| f.required) {
        if out.get(f.name).is_none_or(Value::is_null) {
            let path = if prefix.is_empty() {
                f.name.to_string()
            } else {
                format!("{prefix}.{}", f.name)
            };
            return Err(format!("{path} is required"));
        }
    }
    Ok(out)
}

fn check_value(
    kind: &FieldKind,
    value: Value,
    path: &str,
    dropped: &mut Vec<String>,
) -> Result<Value, String> {
    if value.is_null() {
        return Ok(value);
    }
    let ok = match (kind, &value) {
        (FieldKind::Any, _) => true,
        (FieldKind::Str | FieldKind::ObjectId, Value::String(_)) => true,
        (FieldKind::DateTime, Value::String(s)) => crate::record::parse_timestamp(s).is_some(),
        (FieldKind::Bool, Value::Bool(_)) => true,
        (FieldKind::Number, Value::Number(_)) => true,
        (FieldKind::Enum(values), Value::String(s)) => values.contains(&s.as_str()),
        (FieldKind::Map, Value::Object(_)) => true,
        (FieldKind::Object(fields), Value::Object(_)) => {
            let Value::Object(object) = value else {
                unreachable!()
            };
            return check_object(fields, object, path, dropped).map(Value::Object);
        }
        (FieldKind::List(inner), Value::Array(_)) => {
            let Value::Array(items) = value else {
                unreachable!()
            };
            return items
                .into_iter()
                .enumerate()
                .map(|(i, v)| check_value(inner, v, &format!("{path}[{i}]"), dropped))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array);
        }
        _ => false,
    };
    if ok {
        Ok(value)
    } else {
        Err(format!("{path} must be {}", kind.describe()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::fields::{CREATE_MESSAGE_FIELDS, CREATE_TICKET_FIELDS, SESSION_FIELDS};
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn unknown_fields_are_dropped_and_listed() {
        let c = check_body(
            SESSION_FIELDS,
            obj(json!({"userId": "u1", "emial": "x", "customData": {"a": 1}})),
        )
        .unwrap();
        assert_eq!(
            Value::Object(c.body),
            json!({"userId": "u1", "customData": {"a": 1}})
        );
        assert_eq!(c.dropped, ["emial"]);
        let c = check_body(
            CREATE_MESSAGE_FIELDS,
            obj(json!({"ticket": "t", "attachments": [{"name": "a.png", "url": "u", "size": 3}]})),
        )
        .unwrap();
        assert_eq!(c.dropped, ["attachments[0].size"]);
    }

    #[test]
    fn wrong_types_and_missing_required_fields_are_errors() {
        let e = check_body(CREATE_TICKET_FIELDS, obj(json!({"priority": "URGENT"}))).unwrap_err();
        assert_eq!(e, "priority must be one of LOW, MEDIUM, HIGH");
        let e = check_body(CREATE_TICKET_FIELDS, obj(json!({"title": 5}))).unwrap_err();
        assert_eq!(e, "title must be a string");
        let e = check_body(CREATE_TICKET_FIELDS, obj(json!({"tags": ["a", 1]}))).unwrap_err();
        assert_eq!(e, "tags[1] must be a string");
        let e = check_body(
            CREATE_MESSAGE_FIELDS,
            obj(json!({"attachments": [{"name": "a"}]})),
        )
        .unwrap_err();
        assert_eq!(e, "attachments[0].url is required");
        assert!(
            check_body(
                CREATE_TICKET_FIELDS,
                obj(json!({"dueDate": "2024-01-01", "priority": null}))
            )
            .is_ok()
        );
    }
}
