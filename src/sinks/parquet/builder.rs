//! Records to Arrow: a record is first checked against the schema as a whole (nothing is
//! appended to a column unless every field fits), then appended to one builder per column.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, ListArray,
    NullBufferBuilder, StringBuilder, StructArray, TimestampMicrosecondBuilder,
};
use arrow::buffer::{OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{FieldRef, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use chrono::NaiveDate;

use super::schema::{ColType, Fields, arrow_fields};
use crate::record::{Map, Record, Value, describe, parse_timestamp};

/// Why a record does not fit the schema.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    /// A field the schema does not have.
    Unknown { path: String },
    /// A value of the wrong type.
    Mismatch {
        path: String,
        expected: String,
        found: String,
        /// Whether the field's type was declared (rather than inferred).
        declared: bool,
    },
}

/// Checks `record` against `fields` without changing anything; returns the bytes of text the
/// record adds to the string columns. A field holding null is accepted whether or not the
/// schema has it (it carries nothing to lose).
pub fn check_record(fields: &Fields, record: &Record) -> Result<usize, Problem> {
    let mut text_bytes = 0;
    check_object(fields, record, "", &mut text_bytes)?;
    Ok(text_bytes)
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

fn check_object(
    fields: &Fields,
    object: &Map<String, Value>,
    prefix: &str,
    text_bytes: &mut usize,
) -> Result<(), Problem> {
    for (name, value) in object {
        match fields.get(name) {
            Some(spec) => check_value(
                &spec.ty,
                value,
                &|| join(prefix, name),
                spec.declared,
                text_bytes,
            )?,
            None if value.is_null() => {}
            None => {
                return Err(Problem::Unknown {
                    path: join(prefix, name),
                });
            }
        }
    }
    Ok(())
}

fn check_value(
    ty: &ColType,
    value: &Value,
    path: &dyn Fn() -> String,
    declared: bool,
    text_bytes: &mut usize,
) -> Result<(), Problem> {
    if value.is_null() {
        return Ok(());
    }
    let mismatch = || Problem::Mismatch {
        path: path(),
        expected: ty.expected(),
        found: describe(value),
        declared,
    };
    match ty {
        ColType::String => {
            *text_bytes += to_text(value).ok_or_else(mismatch)?.len();
        }
        ColType::Json => *text_bytes += json_len(value),
        ColType::Int => {
            to_int(value).ok_or_else(mismatch)?;
        }
        ColType::Float => {
            to_float(value).ok_or_else(mismatch)?;
        }
        ColType::Bool => {
            to_bool(value).ok_or_else(mismatch)?;
        }
        ColType::Timestamp => {
            to_micros(value).ok_or_else(mismatch)?;
        }
        ColType::Date => {
            to_days(value).ok_or_else(mismatch)?;
        }
        ColType::List(item) => {
            let Value::Array(items) = value else {
                return Err(mismatch());
            };
            for (i, v) in items.iter().enumerate() {
                check_value(
                    item,
                    v,
                    &|| format!("{}[{i}]", path()),
                    declared,
                    text_bytes,
                )?;
            }
        }
        ColType::Struct(fields) => {
            let Value::Object(object) = value else {
                return Err(mismatch());
            };
            check_object(fields, object, &path(), text_bytes)?;
        }
    }
    Ok(())
}

/// Text for a string column: strings as they are, numbers and booleans as their JSON text.
fn to_text(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        _ => None,
    }
}

/// An integer, a float without a fraction within range, or a string that is exactly an i64.
fn to_int(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            let f = n.as_f64()?;
            // Every f64 in [-2^63, 2^63) without a fraction is exactly an i64.
            (n.is_f64()
                && f.fract() == 0.0
                && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f))
            .then_some(f as i64)
        }),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// A number, or a string that is exactly a finite float.
fn to_float(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

fn to_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s == "true" => Some(true),
        Value::String(s) if s == "false" => Some(false),
        _ => None,
    }
}

/// Microseconds since the epoch, from a timestamp string in any form `parse_timestamp` takes.
fn to_micros(value: &Value) -> Option<i64> {
    match value {
        Value::String(s) => parse_timestamp(s).map(|t| t.timestamp_micros()),
        _ => None,
    }
}

/// Days since the epoch, from a `YYYY-MM-DD` string (a timestamp is not cut to its date).
fn to_days(value: &Value) -> Option<i32> {
    match value {
        Value::String(s) => {
            let date = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
            let days = date.signed_duration_since(NaiveDate::default()).num_days();
            i32::try_from(days).ok()
        }
        _ => None,
    }
}

/// The length of the JSON text of `value`, without building it.
fn json_len(value: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing a Value to a writer that never fails cannot fail.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// A builder for one column, shaped like its type.
enum ColumnBuilder {
    String(StringBuilder),
    Json(StringBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Timestamp(TimestampMicrosecondBuilder),
    Date(Date32Builder),
    List {
        field: FieldRef,
        /// Item offsets; made `i32` (and checked) when the batch is built.
        offsets: Vec<usize>,
        nulls: NullBufferBuilder,
        items: Box<ColumnBuilder>,
    },
    Struct(StructBuilder),
}

/// Builders for the fields of a record or nested object.
struct StructBuilder {
    fields: arrow::datatypes::Fields,
    names: Vec<String>,
    children: Vec<ColumnBuilder>,
    nulls: NullBufferBuilder,
    len: usize,
}

impl StructBuilder {
    fn new(fields: &Fields) -> StructBuilder {
        StructBuilder {
            fields: arrow_fields(fields),
            names: fields.keys().cloned().collect(),
            children: fields.values().map(|f| ColumnBuilder::new(&f.ty)).collect(),
            nulls: NullBufferBuilder::new(0),
            len: 0,
        }
    }

    fn append(&mut self, object: Option<&Map<String, Value>>) {
        for (name, child) in self.names.iter().zip(&mut self.children) {
            child.append(object.and_then(|o| o.get(name)));
        }
        match object {
            Some(_) => self.nulls.append_non_null(),
            None => self.nulls.append_null(),
        }
        self.len += 1;
    }

    fn finish_children(&mut self) -> Result<Vec<ArrayRef>, ArrowError> {
        self.children
            .iter_mut()
            .map(ColumnBuilder::finish)
            .collect()
    }
}

impl ColumnBuilder {
    fn new(ty: &ColType) -> ColumnBuilder {
        match ty {
            ColType::String => ColumnBuilder::String(StringBuilder::new()),
            ColType::Json => ColumnBuilder::Json(StringBuilder::new()),
            ColType::Int => ColumnBuilder::Int(Int64Builder::new()),
            ColType::Float => ColumnBuilder::Float(Float64Builder::new()),
            ColType::Bool => ColumnBuilder::Bool(BooleanBuilder::new()),
            ColType::Timestamp => {
                ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::new().with_timezone("UTC"))
            }
            ColType::Date => ColumnBuilder::Date(Date32Builder::new()),
            ColType::List(item) => ColumnBuilder::List {
                field: Arc::new(item.arrow_field("item")),
                offsets: vec![0],
                nulls: NullBufferBuilder::new(0),
                items: Box::new(ColumnBuilder::new(item)),
            },
            ColType::Struct(fields) => ColumnBuilder::Struct(StructBuilder::new(fields)),
        }
    }

    /// Appends a value that passed [`check_record`]; a missing value (or, which checking
    /// rules out, one that does not fit) is appended as null.
    fn append(&mut self, value: Option<&Value>) {
        let value = value.filter(|v| !v.is_null());
        match self {
            ColumnBuilder::String(b) => b.append_option(value.and_then(to_text)),
            ColumnBuilder::Json(b) => b.append_option(value.map(Value::to_string)),
            ColumnBuilder::Int(b) => b.append_option(value.and_then(to_int)),
            ColumnBuilder::Float(b) => b.append_option(value.and_then(to_float)),
            ColumnBuilder::Bool(b) => b.append_option(value.and_then(to_bool)),
            ColumnBuilder::Timestamp(b) => b.append_option(value.and_then(to_micros)),
            ColumnBuilder::Date(b) => b.append_option(value.and_then(to_days)),
            ColumnBuilder::List {
                offsets,
                nulls,
                items,
                ..
            } => {
                let last = offsets.last().copied().unwrap_or(0);
                match value {
                    Some(Value::Array(values)) => {
                        for v in values {
                            items.append(Some(v));
                        }
                        offsets.push(last + values.len());
                        nulls.append_non_null();
                    }
                    _ => {
                        offsets.push(last);
                        nulls.append_null();
                    }
                }
            }
            ColumnBuilder::Struct(s) => s.append(value.and_then(Value::as_object)),
        }
    }

    /// The values appended since the last call, as an array; the builder starts empty again.
    fn finish(&mut self) -> Result<ArrayRef, ArrowError> {
        Ok(match self {
            ColumnBuilder::String(b) | ColumnBuilder::Json(b) => Arc::new(b.finish()),
            ColumnBuilder::Int(b) => Arc::new(b.finish()),
            ColumnBuilder::Float(b) => Arc::new(b.finish()),
            ColumnBuilder::Bool(b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(b) => Arc::new(b.finish()),
            ColumnBuilder::Date(b) => Arc::new(b.finish()),
            ColumnBuilder::List {
                field,
                offsets,
                nulls,
                items,
            } => {
                let offsets = std::mem::replace(offsets, vec![0])
                    .into_iter()
                    .map(i32::try_from)
                    .collect::<Result<Vec<i32>, _>>()
                    .map_err(|_| {
                        ArrowError::InvalidArgumentError(format!(
                            "more than {} list items in one batch; lower batch_rows",
                            i32::MAX
                        ))
                    })?;
                let values = items.finish()?;
                Arc::new(ListArray::try_new(
                    field.clone(),
                    OffsetBuffer::new(ScalarBuffer::from(offsets)),
                    values,
                    nulls.finish(),
                )?)
            }
            ColumnBuilder::Struct(s) => {
                let children = s.finish_children()?;
                let len = std::mem::take(&mut s.len);
                Arc::new(StructArray::try_new_with_length(
                    s.fields.clone(),
                    children,
                    s.nulls.finish(),
                    len,
                )?)
            }
        })
    }
}

/// Builds record batches of a fixed schema from checked records.
pub struct BatchBuilder {
    schema: SchemaRef,
    columns: StructBuilder,
}

impl BatchBuilder {
    pub fn new(fields: &Fields, schema: SchemaRef) -> BatchBuilder {
        BatchBuilder {
            schema,
            columns: StructBuilder::new(fields),
        }
    }

    /// Rows appended since the last batch.
    pub fn len(&self) -> usize {
        self.columns.len
    }

    pub fn is_empty(&self) -> bool {
        self.columns.len == 0
    }

    /// Appends a record that passed [`check_record`] with the same fields.
    pub fn append(&mut self, record: &Record) {
        self.columns.append(Some(record));
    }

    /// The rows appended since the last batch, as a batch.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let columns = self.columns.finish_children()?;
        let rows = std::mem::take(&mut self.columns.len);
        // Top-level rows are never null: the validity is dropped.
        self.columns.nulls.finish();
        RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::FieldType;
    use crate::sinks::parquet::schema::{apply_declared, arrow_schema, infer};
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
    use serde_json::json;

    fn rec(v: Value) -> Record {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn checks_values_against_their_columns() {
        let sample = [rec(json!({"n": 1, "f": 1.5, "t": "2024-03-01T00:00:00Z",
                                 "c": {"seats": 3}, "l": [1]}))];
        let mut fields = infer(&sample);
        apply_declared(
            &mut fields,
            &[("d".to_string(), FieldType::Date)].into_iter().collect(),
        );
        let ok = |v: Value| check_record(&fields, &rec(v));
        assert!(ok(json!({"n": "42", "f": "2.5", "c": {"seats": 4.0}})).is_ok());
        assert!(ok(json!({"t": "2024-03-01 10:00:00", "d": "2024-03-01", "x": null})).is_ok());
        assert_eq!(
            ok(json!({"c": {"seats": "many"}})).unwrap_err(),
            Problem::Mismatch {
                path: "c.seats".into(),
                expected: "int".into(),
                found: "string \"many\"".into(),
                declared: false
            }
        );
        assert!(matches!(
            ok(json!({"n": 1.5})),
            Err(Problem::Mismatch { .. })
        ));
        assert!(matches!(
            ok(json!({"n": " 4"})),
            Err(Problem::Mismatch { .. })
        ));
        assert!(matches!(
            ok(json!({"d": "2024-03-01T10:00:00Z"})),
            Err(Problem::Mismatch { declared: true, .. })
        ));
        assert_eq!(
            ok(json!({"l": [1, "x"]})).unwrap_err(),
            Problem::Mismatch {
                path: "l[1]".into(),
                expected: "int".into(),
                found: "string \"x\"".into(),
                declared: false
            }
        );
        assert_eq!(
            ok(json!({"c": {"plan": "pro"}})).unwrap_err(),
            Problem::Unknown {
                path: "c.plan".into()
            }
        );
    }

    #[test]
    fn builds_batches_with_nulls_for_missing_fields() {
        let sample = [
            rec(json!({"n": 1, "c": {"seats": 3}, "l": [1, 2], "t": "2024-03-01T00:00:00Z"})),
            rec(json!({"c": null, "l": null})),
        ];
        let fields = infer(&sample);
        let mut b = BatchBuilder::new(&fields, arrow_schema(&fields));
        for r in &sample {
            check_record(&fields, r).unwrap();
            b.append(r);
        }
        let batch = b.finish().unwrap();
        assert_eq!(batch.num_rows(), 2);
        let n = batch.column(0).as_primitive::<Int64Type>();
        assert_eq!((n.value(0), n.is_null(1)), (1, true));
        let c = batch.column(1).as_struct();
        assert!(c.is_valid(0) && c.is_null(1));
        let l = batch.column(2).as_list::<i32>();
        assert_eq!(l.value(0).len(), 2);
        assert!(l.is_null(1));
        let t = batch.column(3).as_primitive::<TimestampMicrosecondType>();
        assert_eq!(t.value(0), 1_709_251_200_000_000);
        assert!(b.is_empty());
    }
}
