//! CSV rows appended into Arrow column builders (issue 15): the CSV source's batches.
//!
//! A batch holds exactly the values the row path would make (`CsvFileReader::convert`): a
//! column inferred as `int` holds only integers, `float` only values that are floats and not
//! integers (an integer in a float column is an integer in the row path), `bool` only
//! `true`/`false` in any case, strings as they are, and the null values as nulls. Anything
//! else (a ragged row, invalid UTF-8, a value after the inference window that does not fit,
//! a declared type other than `string`) makes [`build`] name the first row that cannot be,
//! and the caller reads that row as a record, as before, and the rows around it as batches.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;

use super::csv::{ColumnType, Inferred, is_float, is_int};
use crate::record::FieldType;

enum Builder {
    Text(StringBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
}

impl Builder {
    fn new(ty: &ColumnType, rows: usize) -> Option<Builder> {
        Some(match ty {
            ColumnType::Inferred(Inferred::String) | ColumnType::Declared(FieldType::String) => {
                Builder::Text(StringBuilder::with_capacity(rows, rows * 16))
            }
            ColumnType::Inferred(Inferred::Int) => Builder::Int(Int64Builder::with_capacity(rows)),
            ColumnType::Inferred(Inferred::Float) => {
                Builder::Float(Float64Builder::with_capacity(rows))
            }
            ColumnType::Inferred(Inferred::Bool) => {
                Builder::Bool(BooleanBuilder::with_capacity(rows))
            }
            ColumnType::Declared(_) => return None,
        })
    }

    fn data_type(&self) -> DataType {
        match self {
            Builder::Text(_) => DataType::Utf8,
            Builder::Int(_) => DataType::Int64,
            Builder::Float(_) => DataType::Float64,
            Builder::Bool(_) => DataType::Boolean,
        }
    }

    fn append_null(&mut self) {
        match self {
            Builder::Text(b) => b.append_null(),
            Builder::Int(b) => b.append_null(),
            Builder::Float(b) => b.append_null(),
            Builder::Bool(b) => b.append_null(),
        }
    }

    /// Appends `text` as the row path would convert it; `None` where the row path would
    /// make a value of another type (the batch is then read as rows).
    fn append(&mut self, text: &str) -> Option<()> {
        match self {
            Builder::Text(b) => b.append_value(text),
            Builder::Int(b) => {
                if !is_int(text) {
                    return None;
                }
                b.append_value(text.parse().ok()?);
            }
            Builder::Float(b) => {
                if is_int(text) || !is_float(text) {
                    return None;
                }
                b.append_value(text.parse().ok()?);
            }
            Builder::Bool(b) => {
                if text.eq_ignore_ascii_case("true") {
                    b.append_value(true);
                } else if text.eq_ignore_ascii_case("false") {
                    b.append_value(false);
                } else {
                    return None;
                }
            }
        }
        Some(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Text(b) => Arc::new(b.finish()),
            Builder::Int(b) => Arc::new(b.finish()),
            Builder::Float(b) => Arc::new(b.finish()),
            Builder::Bool(b) => Arc::new(b.finish()),
        }
    }
}

/// Why rows could not all be columns.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Unfit {
    /// No row of this file can be: no columns, or a declared type other than `string`.
    File,
    /// The row at this index (and so the batch from it on) cannot be.
    Row(usize),
}

/// The rows as columns, or the first of them that would not come out of the row path as
/// a batch holds it (see the module documentation).
pub(super) fn build(
    names: &[String],
    types: &[ColumnType],
    null_values: &[Vec<u8>],
    rows: &[&::csv::ByteRecord],
) -> Result<RecordBatch, Unfit> {
    if names.is_empty() {
        return Err(Unfit::File);
    }
    let mut builders = types
        .iter()
        .map(|t| Builder::new(t, rows.len()))
        .collect::<Option<Vec<_>>>()
        .ok_or(Unfit::File)?;
    for (i, raw) in rows.iter().enumerate() {
        if raw.len() != names.len() {
            return Err(Unfit::Row(i));
        }
        for (field, builder) in raw.iter().zip(builders.iter_mut()) {
            let Ok(text) = std::str::from_utf8(field) else {
                return Err(Unfit::Row(i));
            };
            if null_values.iter().any(|n| n.as_slice() == field) {
                builder.append_null();
            } else if builder.append(text).is_none() {
                return Err(Unfit::Row(i));
            }
        }
    }
    let fields: Vec<Field> = names
        .iter()
        .zip(&builders)
        .map(|(name, b)| Field::new(name, b.data_type(), true))
        .collect();
    let columns = builders.iter_mut().map(Builder::finish).collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|_| Unfit::File)
}
