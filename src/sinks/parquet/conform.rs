//! A batch's columns made into the sink's schema, for writing them as they are: only where
//! every row would be written with the same values by the row path (`check_record`, then
//! the builders). Otherwise `None`, and the batch goes row by row, which checks each record
//! and dead-letters what does not fit.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Date32Builder, RecordBatch, StructArray, TimestampMicrosecondBuilder,
    new_null_array,
};
use arrow::datatypes::{DataType, Int64Type, SchemaRef, TimeUnit};

use super::MAX_BATCH_TEXT_BYTES;
use super::schema::{ColType, Fields};
use crate::record::parse_timestamp;

/// The batch as the file's columns (`schema` is the Arrow form of `fields`).
pub fn conform(fields: &Fields, schema: &SchemaRef, batch: &RecordBatch) -> Option<RecordBatch> {
    let rows = batch.num_rows();
    let columns = children(
        fields,
        schema.fields(),
        batch.schema().fields(),
        batch.columns(),
        rows,
    )?;
    let text: usize = columns.iter().map(text_bytes).sum();
    if text > MAX_BATCH_TEXT_BYTES {
        return None;
    }
    RecordBatch::try_new(schema.clone(), columns).ok()
}

/// The columns of `fields`, in order, from the named `arrays`: a field no array has is all
/// null; an array no field has must be all null (the row path accepts a null anywhere).
fn children(
    fields: &Fields,
    targets: &arrow::datatypes::Fields,
    names: &arrow::datatypes::Fields,
    arrays: &[ArrayRef],
    rows: usize,
) -> Option<Vec<ArrayRef>> {
    for (name, array) in names.iter().zip(arrays) {
        if !fields.contains_key(name.name()) && array.logical_null_count() != array.len() {
            return None;
        }
    }
    fields
        .iter()
        .zip(targets.iter())
        .map(
            |((name, spec), target)| match names.iter().position(|f| f.name() == name) {
                Some(i) => column(&arrays[i], &spec.ty, target.data_type()),
                None => Some(new_null_array(target.data_type(), rows)),
            },
        )
        .collect()
}

fn column(array: &ArrayRef, ty: &ColType, target: &DataType) -> Option<ArrayRef> {
    if array.logical_null_count() == array.len() {
        return Some(new_null_array(target, array.len()));
    }
    match (array.data_type(), ty) {
        (DataType::Int64, ColType::Int)
        | (DataType::Float64, ColType::Float)
        | (DataType::Boolean, ColType::Bool)
        | (DataType::Utf8, ColType::String)
        | (DataType::Date32, ColType::Date)
        | (DataType::Timestamp(TimeUnit::Microsecond, _), ColType::Timestamp) => {
            (array.data_type() == target).then(|| array.clone())
        }
        (DataType::Int64, ColType::Float) => {
            let floats: arrow::array::Float64Array =
                array.as_primitive::<Int64Type>().unary(|i| i as f64);
            Some(Arc::new(floats))
        }
        (DataType::Utf8, ColType::Timestamp) => {
            let mut out =
                TimestampMicrosecondBuilder::with_capacity(array.len()).with_timezone("UTC");
            for text in array.as_string::<i32>().iter() {
                match text {
                    None => out.append_null(),
                    Some(t) => out.append_value(parse_timestamp(t)?.timestamp_micros()),
                }
            }
            Some(Arc::new(out.finish()))
        }
        (DataType::Utf8, ColType::Date) => {
            let mut out = Date32Builder::with_capacity(array.len());
            for text in array.as_string::<i32>().iter() {
                match text {
                    None => out.append_null(),
                    Some(t) => out.append_value(days(t)?),
                }
            }
            Some(Arc::new(out.finish()))
        }
        (DataType::Struct(names), ColType::Struct(fields)) => {
            let DataType::Struct(targets) = target else {
                return None;
            };
            let s = array.as_struct();
            let columns = children(fields, targets, names, s.columns(), s.len())?;
            let out = StructArray::try_new(targets.clone(), columns, s.nulls().cloned()).ok()?;
            Some(Arc::new(out))
        }
        _ => None,
    }
}

/// Days since the epoch of a `YYYY-MM-DD` string, as the row path's builder reads it.
fn days(text: &str) -> Option<i32> {
    let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    i32::try_from(
        date.signed_duration_since(chrono::NaiveDate::default())
            .num_days(),
    )
    .ok()
}

/// The bytes of text a column holds (its strings, its children's).
fn text_bytes(array: &ArrayRef) -> usize {
    match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().values().len(),
        DataType::Struct(_) => array.as_struct().columns().iter().map(text_bytes).sum(),
        _ => 0,
    }
}
