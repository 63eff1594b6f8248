//! The Parquet sink's schema: inferred from the first records, overridden by declared types,
//! turned into an Arrow schema and shown to the user in the run summary.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use indexmap::IndexMap;

use crate::record::{FieldPath, FieldType, Record, Value, is_strict_date, is_strict_timestamp};

/// The Arrow extension name marking a UTF-8 column that holds JSON text (the canonical
/// `arrow.json` extension type); the Parquet source parses such columns back into values.
pub const JSON_EXTENSION_NAME: &str = "arrow.json";
/// The field metadata key naming an Arrow extension type.
pub const EXTENSION_NAME_KEY: &str = "ARROW:extension:name";
/// The field metadata key holding an Arrow extension type's parameters.
pub const EXTENSION_METADATA_KEY: &str = "ARROW:extension:metadata";

/// The type of one column (or of a list's items, or of a struct's field).
#[derive(Debug, Clone, PartialEq)]
pub enum ColType {
    /// UTF-8 text; numbers and booleans are written as their text.
    String,
    /// UTF-8 text holding the JSON form of any value.
    Json,
    /// 64-bit signed integer.
    Int,
    /// 64-bit float.
    Float,
    Bool,
    /// Microseconds since the epoch, UTC.
    Timestamp,
    /// Days since the epoch.
    Date,
    /// A list of values of one type.
    List(Box<ColType>),
    /// A nested object with known fields.
    Struct(Fields),
}

/// The fields of a record or of a nested object, in column order.
pub type Fields = IndexMap<String, FieldSpec>;

/// One field of the schema.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSpec {
    pub ty: ColType,
    /// Whether the type comes from `schema:` rather than inference (for messages).
    pub declared: bool,
}

impl ColType {
    /// The name used in rejection messages: the `cast:` vocabulary.
    pub fn expected(&self) -> String {
        match self {
            ColType::String => "string".into(),
            ColType::Json => "json".into(),
            ColType::Int => "int".into(),
            ColType::Float => "float".into(),
            ColType::Bool => "bool".into(),
            ColType::Timestamp => "timestamp".into(),
            ColType::Date => "date (YYYY-MM-DD)".into(),
            ColType::List(item) => format!("list<{}>", item.expected()),
            ColType::Struct(_) => "an object".into(),
        }
    }

    fn from_declared(t: &FieldType) -> ColType {
        match t {
            FieldType::String => ColType::String,
            FieldType::Int => ColType::Int,
            FieldType::Float => ColType::Float,
            FieldType::Bool => ColType::Bool,
            FieldType::Timestamp => ColType::Timestamp,
            FieldType::Date => ColType::Date,
            FieldType::Json => ColType::Json,
            FieldType::List(inner) => ColType::List(Box::new(ColType::from_declared(inner))),
        }
    }

    /// The Arrow type the column is written as.
    pub fn data_type(&self) -> DataType {
        match self {
            ColType::String | ColType::Json => DataType::Utf8,
            ColType::Int => DataType::Int64,
            ColType::Float => DataType::Float64,
            ColType::Bool => DataType::Boolean,
            ColType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            ColType::Date => DataType::Date32,
            ColType::List(item) => DataType::List(Arc::new(item.arrow_field("item"))),
            ColType::Struct(fields) => DataType::Struct(arrow_fields(fields)),
        }
    }

    /// A nullable Arrow field of this type; JSON columns carry the `arrow.json` extension.
    pub fn arrow_field(&self, name: &str) -> Field {
        let field = Field::new(name, self.data_type(), true);
        if *self == ColType::Json {
            field.with_metadata(HashMap::from([
                (
                    EXTENSION_NAME_KEY.to_string(),
                    JSON_EXTENSION_NAME.to_string(),
                ),
                (EXTENSION_METADATA_KEY.to_string(), String::new()),
            ]))
        } else {
            field
        }
    }

    /// How the type is shown in the run summary: a name, or an object for a struct.
    pub fn describe(&self) -> Value {
        match self {
            ColType::Struct(fields) => describe_fields(fields),
            other => Value::String(other.type_name()),
        }
    }

    /// The type's name in the run summary (`int64`, `list<string>`, `struct<a: bool>`).
    pub fn type_name(&self) -> String {
        match self {
            ColType::String => "string".into(),
            ColType::Json => "json".into(),
            ColType::Int => "int64".into(),
            ColType::Float => "float64".into(),
            ColType::Bool => "bool".into(),
            ColType::Timestamp => "timestamp[us, UTC]".into(),
            ColType::Date => "date32".into(),
            ColType::List(item) => format!("list<{}>", item.type_name()),
            ColType::Struct(fields) => {
                let inner: Vec<String> = fields
                    .iter()
                    .map(|(name, f)| format!("{name}: {}", f.ty.type_name()))
                    .collect();
                format!("struct<{}>", inner.join(", "))
            }
        }
    }
}

/// The Arrow fields for `fields`.
pub fn arrow_fields(fields: &Fields) -> arrow::datatypes::Fields {
    fields
        .iter()
        .map(|(name, f)| f.ty.arrow_field(name))
        .collect()
}

/// The Arrow schema of a record with `fields`.
pub fn arrow_schema(fields: &Fields) -> SchemaRef {
    Arc::new(Schema::new(arrow_fields(fields)))
}

/// `{"column": "int64", "nested": {"field": "string"}}`, for the run summary.
pub fn describe_fields(fields: &Fields) -> Value {
    Value::Object(
        fields
            .iter()
            .map(|(name, f)| (name.clone(), f.ty.describe()))
            .collect(),
    )
}

/// What the sample records held in one field, merged across records.
#[derive(Debug, Default)]
struct Shape {
    bools: bool,
    ints: bool,
    floats: bool,
    /// Integers beyond the int64 range: kept exact as text.
    big_ints: bool,
    timestamps: bool,
    dates: bool,
    texts: bool,
    /// The merged shape of the items of every list seen.
    list: Option<Box<Shape>>,
    /// The merged fields of every object seen, in order of first appearance.
    object: Option<IndexMap<String, Shape>>,
}

impl Shape {
    fn observe(&mut self, value: &Value) {
        match value {
            Value::Null => {}
            Value::Bool(_) => self.bools = true,
            Value::Number(n) if n.is_i64() => self.ints = true,
            Value::Number(n) if n.is_u64() => self.big_ints = true,
            Value::Number(_) => self.floats = true,
            Value::String(s) if is_strict_timestamp(s) => self.timestamps = true,
            Value::String(s) if is_strict_date(s) => self.dates = true,
            Value::String(_) => self.texts = true,
            Value::Array(items) => {
                let shape = self.list.get_or_insert_default();
                for item in items {
                    shape.observe(item);
                }
            }
            Value::Object(map) => observe_object(self.object.get_or_insert_default(), map),
        }
    }

    fn resolve(&self) -> ColType {
        let strings = self.timestamps || self.dates || self.texts;
        let numbers = self.ints || self.floats || self.big_ints;
        let scalars = strings || numbers || self.bools;
        let nested = usize::from(self.list.is_some()) + usize::from(self.object.is_some());
        if nested > 1 || (nested == 1 && scalars) {
            return ColType::Json;
        }
        if let Some(items) = &self.list {
            return ColType::List(Box::new(items.resolve()));
        }
        if let Some(fields) = &self.object {
            if fields.is_empty() {
                // Parquet has no empty groups; only `{}` was ever seen.
                return ColType::Json;
            }
            return ColType::Struct(resolve_fields(fields));
        }
        match (strings, numbers, self.bools) {
            (false, false, false) => ColType::String,
            (true, false, false) => match (self.timestamps, self.dates, self.texts) {
                (true, false, false) => ColType::Timestamp,
                (false, true, false) => ColType::Date,
                _ => ColType::String,
            },
            (false, false, true) => ColType::Bool,
            (false, true, false) if self.big_ints => ColType::String,
            (false, true, false) if self.floats => ColType::Float,
            (false, true, false) => ColType::Int,
            _ => ColType::String,
        }
    }
}

fn observe_object(fields: &mut IndexMap<String, Shape>, record: &Record) {
    for (key, value) in record {
        // Look up before inserting so the key is only cloned the first time it is seen.
        match fields.get_mut(key) {
            Some(shape) => shape.observe(value),
            None => {
                let mut shape = Shape::default();
                shape.observe(value);
                fields.insert(key.clone(), shape);
            }
        }
    }
}

fn resolve_fields(shapes: &IndexMap<String, Shape>) -> Fields {
    shapes
        .iter()
        .map(|(name, shape)| {
            let spec = FieldSpec {
                ty: shape.resolve(),
                declared: false,
            };
            (name.clone(), spec)
        })
        .collect()
}

/// The schema of a file this sink wrote, read back from its Arrow schema (so a dataset's
/// later parts keep the columns of its first). `None` for a type this sink does not write.
pub fn from_arrow(schema: &arrow::datatypes::Schema) -> Option<Fields> {
    fn col(field: &Field) -> Option<ColType> {
        Some(match field.data_type() {
            DataType::Utf8
                if field.metadata().get(EXTENSION_NAME_KEY).map(String::as_str)
                    == Some(JSON_EXTENSION_NAME) =>
            {
                ColType::Json
            }
            DataType::Utf8 => ColType::String,
            DataType::Int64 => ColType::Int,
            DataType::Float64 => ColType::Float,
            DataType::Boolean => ColType::Bool,
            DataType::Timestamp(TimeUnit::Microsecond, _) => ColType::Timestamp,
            DataType::Date32 => ColType::Date,
            DataType::List(item) => ColType::List(Box::new(col(item)?)),
            DataType::Struct(children) => {
                let mut fields = Fields::new();
                for c in children {
                    fields.insert(
                        c.name().clone(),
                        FieldSpec {
                            ty: col(c)?,
                            declared: true,
                        },
                    );
                }
                ColType::Struct(fields)
            }
            _ => return None,
        })
    }
    let mut fields = Fields::new();
    for f in schema.fields() {
        fields.insert(
            f.name().clone(),
            FieldSpec {
                ty: col(f)?,
                declared: true,
            },
        );
    }
    Some(fields)
}

/// The type of every field of `records`, in order of first appearance.
pub fn infer<'a>(records: impl IntoIterator<Item = &'a Record>) -> Fields {
    let mut shapes: IndexMap<String, Shape> = IndexMap::new();
    for record in records {
        observe_object(&mut shapes, record);
    }
    resolve_fields(&shapes)
}

/// The schema of a dataset's next part under `schema: evolve`: every column of `base` (the
/// dataset's last part) with its type, then the columns `inferred` from this run's first
/// records that `base` lacks, in order of first appearance, and `rest` (the JSON column
/// taking what fits no column) kept last. A new field is added only when it is declared or
/// `has_value` says a sampled record held a value (not null) in it: a field seen only as
/// null gets its column, typed, in the first run that sees a value. Returns the schema and
/// the names of the columns added.
pub fn evolve(
    base: &Fields,
    inferred: Fields,
    rest: Option<&str>,
    has_value: impl Fn(&str) -> bool,
) -> (Fields, Vec<String>) {
    let mut fields: Fields = base
        .iter()
        .filter(|(name, _)| Some(name.as_str()) != rest)
        .map(|(name, f)| (name.clone(), f.clone()))
        .collect();
    let mut added = Vec::new();
    let mut rest_spec = rest.and_then(|r| base.get(r)).cloned();
    for (name, spec) in inferred {
        if Some(name.as_str()) == rest {
            rest_spec.get_or_insert(spec);
        } else if !fields.contains_key(&name) && (spec.declared || has_value(&name)) {
            added.push(name.clone());
            fields.insert(name, spec);
        }
    }
    if let (Some(rest), Some(spec)) = (rest, rest_spec) {
        fields.insert(rest.to_string(), spec);
    }
    (fields, added)
}

/// The type a value would be inferred as (`string`, `int64`, ...), for messages.
pub fn value_type(value: &Value) -> String {
    let mut shape = Shape::default();
    shape.observe(value);
    shape.resolve().type_name()
}

/// Checks the declared `schema:` entries: valid paths, and no entry reaching into a field
/// another entry declares as a non-object type.
pub fn validate_declared(declared: &IndexMap<String, FieldType>) -> Result<(), String> {
    for name in declared.keys() {
        let path = FieldPath::parse(name).map_err(|e| format!("`{name}`: {e}"))?;
        let segments = path.segments();
        for i in 1..segments.len() {
            let parent = segments[..i].join(".");
            if let Some(t) = declared.get(&parent) {
                return Err(format!(
                    "`{parent}` is declared as {t}, so `{name}` cannot reach into it; \
                     declare the fields of `{parent}` by dotted names only"
                ));
            }
        }
    }
    Ok(())
}

/// Puts the declared types over the inferred ones: a declared field keeps its inferred
/// position, or goes after the fields seen; dotted names make (or reach into) struct columns.
/// `declared` must have passed [`validate_declared`].
pub fn apply_declared(fields: &mut Fields, declared: &IndexMap<String, FieldType>) {
    for (name, t) in declared {
        let segments: Vec<&str> = name.split('.').collect();
        let Some((last, parents)) = segments.split_last() else {
            continue;
        };
        let mut level = &mut *fields;
        for parent in parents {
            let entry = level
                .entry((*parent).to_string())
                .or_insert_with(|| FieldSpec {
                    ty: ColType::Struct(Fields::new()),
                    declared: false,
                });
            if !matches!(entry.ty, ColType::Struct(_)) {
                // Inferred as something else: the declaration decides it is an object.
                entry.ty = ColType::Struct(Fields::new());
            }
            level = match &mut entry.ty {
                ColType::Struct(inner) => inner,
                _ => unreachable!("made a struct just above"),
            };
        }
        level.insert(
            (*last).to_string(),
            FieldSpec {
                ty: ColType::from_declared(t),
                declared: true,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn types(records: Vec<Value>) -> Value {
        let records: Vec<Record> = records
            .into_iter()
            .map(|r| r.as_object().unwrap().clone())
            .collect();
        describe_fields(&infer(&records))
    }

    #[test]
    fn infers_scalar_nested_and_mixed_types() {
        let got = types(vec![
            json!({"i": 1, "f": 1, "b": true, "s": "x", "t": "2024-03-01T12:00:00.000Z",
                   "d": "2024-03-01", "n": null, "l": ["a"], "o": {"x": 1}, "m": {"a": 1},
                   "e": [], "big": 18446744073709551615u64, "mix": 1}),
            json!({"i": 2, "f": 1.5, "b": false, "s": 3, "t": "2024-03-02T12:00:00Z",
                   "d": "2024-03-02", "n": null, "l": [null], "o": {"y": "z"}, "m": 5,
                   "e": [], "big": 1, "mix": true, "late": "2024-03-01"}),
        ]);
        assert_eq!(
            got,
            json!({"i": "int64", "f": "float64", "b": "bool", "s": "string",
                   "t": "timestamp[us, UTC]", "d": "date32", "n": "string", "l": "list<string>",
                   "o": {"x": "int64", "y": "string"}, "m": "json", "e": "list<string>",
                   "big": "string", "mix": "string", "late": "date32"})
        );
    }

    #[test]
    fn evolving_keeps_old_columns_and_adds_fields_with_values() {
        let records: Vec<Record> = [
            json!({"id": "a", "n": 1, "plan": "pro", "empty": null, "otherFields": null}),
            json!({"id": "b", "n": "two", "churn": 0.5}),
        ]
        .iter()
        .map(|r| r.as_object().unwrap().clone())
        .collect();
        let base = infer(&[json!({"id": "x", "n": 1.5, "otherFields": null})
            .as_object()
            .unwrap()
            .clone()]);
        let mut base = base;
        base["otherFields"].ty = ColType::Json;
        let mut inferred = infer(&records);
        inferred["otherFields"].ty = ColType::Json;
        let has_value = |name: &str| {
            records
                .iter()
                .any(|r| r.get(name).is_some_and(|v| !v.is_null()))
        };
        let (fields, added) = evolve(&base, inferred, Some("otherFields"), has_value);
        assert_eq!(
            describe_fields(&fields),
            json!({"id": "string", "n": "float64", "plan": "string", "churn": "float64",
                   "otherFields": "json"})
        );
        let names: Vec<&String> = fields.keys().collect();
        assert_eq!(names, ["id", "n", "plan", "churn", "otherFields"]);
        assert_eq!(added, ["plan", "churn"]);
        assert_eq!(value_type(&json!("x")), "string");
        assert_eq!(value_type(&json!({"a": 1})), "struct<a: int64>");
    }

    #[test]
    fn declared_types_override_and_nest() {
        let records = [json!({"a": 1, "c": {"x": 1}, "s": "text"})
            .as_object()
            .unwrap()
            .clone()];
        let mut fields = infer(&records);
        let declared: IndexMap<String, FieldType> = [
            ("a", "float"),
            ("c.seats", "int"),
            ("s.inner", "string"),
            ("z", "list<date>"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
        .collect();
        validate_declared(&declared).unwrap();
        apply_declared(&mut fields, &declared);
        assert_eq!(
            describe_fields(&fields),
            json!({"a": "float64", "c": {"x": "int64", "seats": "int64"},
                   "s": {"inner": "string"}, "z": "list<date32>"})
        );
        assert!(fields["a"].declared && !fields["c"].declared);

        let bad: IndexMap<String, FieldType> = [("a", "json"), ("a.b", "int")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
            .collect();
        let err = validate_declared(&bad).unwrap_err();
        assert!(err.contains("`a` is declared as json"), "{err}");
    }
}
