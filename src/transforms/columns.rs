//! Column kernels of the field stages (`rename`, `cast`, `default`, `drop`, `keep`): each
//! reshapes a whole [`Batch`] into the batch whose rows are the records the row stage would
//! give, or declines (`None`) where it cannot be sure of that; the engine then runs the row
//! stage on those rows. See `crate::batch` for the rule.
//!
//! What is done on columns: top-level fields, and a field one level into an object column
//! (`customData.plan`) whose objects are all present. Casts to `string`, `int`, `float`,
//! `bool` and `timestamp`. Defaults of a string, number or boolean.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Float64Builder, Int64Builder, NullArray, RecordBatch,
    StringBuilder, StructArray, TimestampMicrosecondBuilder,
};
use arrow::compute::kernels::zip::zip;
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, TimeUnit};

use super::BatchOutput;
use crate::batch::{Batch, value_at};
use crate::record::{FieldPath, FieldType, Value, cast, epoch_to_timestamp, parse_timestamp};

/// A batch's columns by name, in order, while a kernel reshapes them.
struct Columns {
    names: Vec<String>,
    arrays: Vec<ArrayRef>,
    rows: usize,
}

impl Columns {
    fn of(batch: &RecordBatch) -> Columns {
        Columns {
            names: batch
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect(),
            arrays: batch.columns().to_vec(),
            rows: batch.num_rows(),
        }
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    fn remove(&mut self, i: usize) -> ArrayRef {
        self.names.remove(i);
        self.arrays.remove(i)
    }

    /// Sets a top-level column: in its place if it exists, else at the end.
    fn set(&mut self, name: &str, array: ArrayRef) {
        match self.index(name) {
            Some(i) => self.arrays[i] = array,
            None => {
                self.names.push(name.to_string());
                self.arrays.push(array);
            }
        }
    }

    /// Where `path` is: `Top(i)`, `Child(i, j)` (child `j` of the object column `i`, whose
    /// objects are all present), `Missing` (no value in any row), or `None` where a batch
    /// cannot tell (deeper paths, a parent that is not an object column, absent objects).
    fn find(&self, path: &FieldPath) -> Option<Place> {
        if let Some(i) = self.index(path.as_str()) {
            return Some(Place::Top(i));
        }
        match path.segments() {
            [_] => Some(Place::Missing),
            [parent, child] => {
                let Some(i) = self.index(parent) else {
                    return Some(Place::Missing);
                };
                let s = self.arrays[i].as_struct_opt()?;
                if s.null_count() > 0 {
                    return None;
                }
                Some(match s.column_names().iter().position(|n| n == child) {
                    Some(j) => Place::Child(i, j),
                    None => Place::MissingChild(i),
                })
            }
            _ => None,
        }
    }

    fn get(&self, place: &Place) -> Option<&ArrayRef> {
        match place {
            Place::Top(i) => Some(&self.arrays[*i]),
            Place::Child(i, j) => Some(self.arrays[*i].as_struct().column(*j)),
            Place::Missing | Place::MissingChild(_) => None,
        }
    }

    /// Replaces the column at `place` (which holds one).
    fn replace(&mut self, place: &Place, array: ArrayRef) -> Option<()> {
        match place {
            Place::Top(i) => self.arrays[*i] = array,
            Place::Child(i, j) => {
                let (fields, mut children, nulls) =
                    self.arrays[*i].as_struct().clone().into_parts();
                children[*j] = array;
                self.arrays[*i] = Arc::new(struct_of(
                    fields.iter().map(|f| f.name().clone()).collect(),
                    children,
                    nulls,
                )?);
            }
            Place::Missing | Place::MissingChild(_) => return None,
        }
        Some(())
    }

    /// Sets `path` to `array` as `FieldPath::set` does on every row: a top-level field in
    /// its place or at the end, a child of an object column in its place or at the end of
    /// the object, a new object column at the end.
    fn set_path(&mut self, path: &FieldPath, array: ArrayRef) -> Option<()> {
        match self.find(path)? {
            Place::Top(i) => self.arrays[i] = array,
            Place::Missing if !path.is_nested() => self.set(path.as_str(), array),
            Place::Missing => {
                let [parent, child] = path.segments() else {
                    return None;
                };
                if self.index(parent).is_some() {
                    // An all-null or scalar column of that name: rows decide.
                    return None;
                }
                let object = struct_of(vec![child.clone()], vec![array], None)?;
                self.set(parent, Arc::new(object));
            }
            place @ Place::Child(..) => self.replace(&place, array)?,
            Place::MissingChild(i) => {
                let [_, child] = path.segments() else {
                    return None;
                };
                let (fields, mut children, nulls) = self.arrays[i].as_struct().clone().into_parts();
                let mut names: Vec<String> = fields.iter().map(|f| f.name().clone()).collect();
                names.push(child.clone());
                children.push(array);
                self.arrays[i] = Arc::new(struct_of(names, children, nulls)?);
            }
        }
        Some(())
    }

    /// Removes `path` as `FieldPath::remove` does, giving what it held.
    fn remove_path(&mut self, path: &FieldPath) -> Option<Option<ArrayRef>> {
        Some(match self.find(path)? {
            Place::Top(i) => Some(self.remove(i)),
            Place::Missing | Place::MissingChild(_) => None,
            Place::Child(i, j) => {
                let (fields, mut children, nulls) = self.arrays[i].as_struct().clone().into_parts();
                if children.len() == 1 {
                    // The row path leaves `{}`, which a batch does not hold.
                    return None;
                }
                let mut names: Vec<String> = fields.iter().map(|f| f.name().clone()).collect();
                names.remove(j);
                let removed = children.remove(j);
                self.arrays[i] = Arc::new(struct_of(names, children, nulls)?);
                Some(removed)
            }
        })
    }

    fn finish(self) -> Option<RecordBatch> {
        let fields: Vec<Field> = self
            .names
            .iter()
            .zip(&self.arrays)
            .map(|(n, a)| Field::new(n, a.data_type().clone(), true))
            .collect();
        let options =
            arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(self.rows));
        RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), self.arrays, &options).ok()
    }
}

enum Place {
    Top(usize),
    Child(usize, usize),
    Missing,
    MissingChild(usize),
}

fn struct_of(
    names: Vec<String>,
    children: Vec<ArrayRef>,
    nulls: Option<arrow::buffer::NullBuffer>,
) -> Option<StructArray> {
    let fields: Vec<Field> = names
        .iter()
        .zip(&children)
        .map(|(n, a)| Field::new(n, a.data_type().clone(), true))
        .collect();
    StructArray::try_new(fields.into(), children, nulls).ok()
}

/// The columns holding `paths` (`None` for a path no row has), or `None` where a batch
/// cannot tell (see `Columns::find`).
pub fn field_columns(batch: &RecordBatch, paths: &[FieldPath]) -> Option<Vec<Option<ArrayRef>>> {
    let columns = Columns::of(batch);
    paths
        .iter()
        .map(|p| Some(columns.get(&columns.find(p)?).cloned()))
        .collect()
}

/// `rename`, pair after pair.
pub fn rename(pairs: &[(FieldPath, FieldPath)], batch: &Batch) -> Option<Batch> {
    let mut columns = Columns::of(&batch.columns);
    for (from, to) in pairs {
        if from.is_nested() {
            return None;
        }
        let Some(i) = columns.index(from.as_str()) else {
            continue;
        };
        if !to.is_nested() && columns.index(to.as_str()).is_none() {
            columns.names[i] = to.as_str().to_string();
            continue;
        }
        let array = columns.remove(i);
        columns.set_path(to, array)?;
    }
    Some(batch.with_columns(columns.finish()?))
}

/// `drop`.
pub fn drop(paths: &[FieldPath], batch: &Batch) -> Option<Batch> {
    let mut columns = Columns::of(&batch.columns);
    for path in paths {
        columns.remove_path(path)?;
    }
    Some(batch.with_columns(columns.finish()?))
}

/// `keep`: top-level fields only.
pub fn keep(paths: &[FieldPath], batch: &Batch) -> Option<Batch> {
    let mut from = Columns::of(&batch.columns);
    let mut kept = Columns {
        names: Vec::new(),
        arrays: Vec::new(),
        rows: from.rows,
    };
    for path in paths {
        if path.is_nested() {
            return None;
        }
        if let Some(i) = from.index(path.as_str()) {
            let array = from.remove(i);
            kept.set(path.as_str(), array);
        }
    }
    Some(batch.with_columns(kept.finish()?))
}

/// `default`: fills nulls of a column of the value's type, or adds the column.
pub fn default(values: &[(FieldPath, Value)], batch: &Batch) -> Option<Batch> {
    let mut columns = Columns::of(&batch.columns);
    for (path, value) in values {
        let place = columns.find(path)?;
        let filled = match columns.get(&place) {
            None => constant(value, columns.rows)?,
            Some(column) if column.logical_null_count() == 0 => continue,
            Some(column) if column.logical_null_count() == column.len() => {
                constant(value, columns.rows)?
            }
            Some(column) => {
                let fill = constant(value, 1)?;
                if fill.data_type() != column.data_type() || column.as_struct_opt().is_some() {
                    return None;
                }
                let present = arrow::compute::is_not_null(column).ok()?;
                let fill = arrow::array::Scalar::new(fill);
                zip(&present, column, &fill).ok()?
            }
        };
        match place {
            Place::Top(_) | Place::Child(..) => columns.replace(&place, filled)?,
            Place::Missing | Place::MissingChild(_) => columns.set_path(path, filled)?,
        }
    }
    Some(batch.with_columns(columns.finish()?))
}

/// A column of `rows` copies of a scalar value (a null column for `null`).
fn constant(value: &Value, rows: usize) -> Option<ArrayRef> {
    Some(match value {
        Value::Null => Arc::new(NullArray::new(rows)),
        Value::Bool(b) => Arc::new(arrow::array::BooleanArray::from(vec![*b; rows])),
        Value::Number(n) if n.is_i64() => {
            Arc::new(arrow::array::Int64Array::from(vec![n.as_i64()?; rows]))
        }
        Value::Number(n) if n.is_f64() => {
            Arc::new(arrow::array::Float64Array::from(vec![n.as_f64()?; rows]))
        }
        Value::String(s) => Arc::new(arrow::array::StringArray::from(vec![s.as_str(); rows])),
        _ => return None,
    })
}

/// `cast`: every field is converted first, then set, as the row stage does. A row with a
/// value that does not convert is rejected for its first such field, with the row stage's
/// reason, and left out of the batch.
pub fn cast_columns(types: &[(FieldPath, FieldType)], batch: &Batch) -> Option<BatchOutput> {
    let mut columns = Columns::of(&batch.columns);
    let mut converted = Vec::with_capacity(types.len());
    let mut reasons: Vec<Option<String>> = vec![None; batch.len()];
    for (path, ty) in types {
        let place = columns.find(path)?;
        let Some(column) = columns.get(&place) else {
            continue;
        };
        let (array, failed) = cast_column(column, ty)?;
        for i in failed {
            // The row cast gives the reason; it must fail there too.
            let e = cast(&value_at(column, i), ty).err()?;
            reasons[i].get_or_insert_with(|| format!("field `{path}`: {e}"));
        }
        converted.push((place, array));
    }
    for (place, array) in converted {
        columns.replace(&place, array)?;
    }
    let out = batch.with_columns(columns.finish()?);
    let rejected: Vec<(usize, String)> = reasons
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| Some((i, r?)))
        .collect();
    if rejected.is_empty() {
        return Some(out.into());
    }
    let keep: arrow::array::BooleanArray = (0..batch.len())
        .map(|i| Some(rejected.binary_search_by_key(&i, |(j, _)| *j).is_err()))
        .collect();
    Some(BatchOutput {
        batch: out.filter(&keep).ok()?,
        rejected,
    })
}

/// One column cast as `record::cast` casts each of its values, with the rows whose value
/// does not convert (null in the column); `None` where the result is a type a batch does
/// not hold.
fn cast_column(column: &ArrayRef, ty: &FieldType) -> Option<(ArrayRef, Vec<usize>)> {
    let rows = column.len();
    let mut failed = Vec::new();
    if column.logical_null_count() == rows {
        return Some((column.clone(), failed));
    }
    let array: ArrayRef = match (column.data_type(), ty) {
        (DataType::Int64, FieldType::Int)
        | (DataType::Float64, FieldType::Float)
        | (DataType::Boolean, FieldType::Bool)
        | (DataType::Utf8, FieldType::String)
        | (DataType::Timestamp(TimeUnit::Microsecond, _), FieldType::Timestamp) => column.clone(),
        (DataType::Int64, FieldType::Float) => {
            let ints = column.as_primitive::<Int64Type>();
            let floats: arrow::array::Float64Array = ints.unary(|i| i as f64);
            Arc::new(floats)
        }
        (DataType::Utf8, FieldType::Timestamp) => {
            let texts = column.as_string::<i32>();
            let mut out = TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC");
            for (i, text) in texts.iter().enumerate() {
                match text.map(|t| (t, parse_timestamp(t.trim()))) {
                    None | Some(("", _)) => out.append_null(),
                    Some((_, Some(t))) => out.append_value(t.timestamp_micros()),
                    Some((_, None)) => {
                        out.append_null();
                        failed.push(i);
                    }
                }
            }
            Arc::new(out.finish())
        }
        (DataType::Int64 | DataType::Float64, FieldType::Timestamp) => {
            let mut out = TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC");
            for i in 0..rows {
                if column.is_null(i) {
                    out.append_null();
                    continue;
                }
                let n = match column.data_type() {
                    DataType::Int64 => column.as_primitive::<Int64Type>().value(i) as f64,
                    _ => column.as_primitive::<Float64Type>().value(i),
                };
                match epoch_to_timestamp(n) {
                    Some(t) => out.append_value(t.timestamp_micros()),
                    None => {
                        out.append_null();
                        failed.push(i);
                    }
                }
            }
            Arc::new(out.finish())
        }
        _ => {
            // The rest value by value through the row cast, into a column of its type.
            let mut out = TypedBuilder::new(ty, rows)?;
            for i in 0..rows {
                match cast(&value_at(column, i), ty) {
                    Ok(value) => out.append(&value)?,
                    Err(_) => {
                        out.append(&Value::Null)?;
                        failed.push(i);
                    }
                }
            }
            out.finish()
        }
    };
    Some((array, failed))
}

/// A builder for the values a cast to a scalar type gives.
enum TypedBuilder {
    Text(StringBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
}

impl TypedBuilder {
    fn new(ty: &FieldType, rows: usize) -> Option<TypedBuilder> {
        Some(match ty {
            FieldType::String => TypedBuilder::Text(StringBuilder::with_capacity(rows, rows * 8)),
            FieldType::Int => TypedBuilder::Int(Int64Builder::with_capacity(rows)),
            FieldType::Float => TypedBuilder::Float(Float64Builder::with_capacity(rows)),
            FieldType::Bool => TypedBuilder::Bool(BooleanBuilder::with_capacity(rows)),
            _ => return None,
        })
    }

    fn append(&mut self, value: &Value) -> Option<()> {
        match (self, value) {
            (TypedBuilder::Text(b), Value::Null) => b.append_null(),
            (TypedBuilder::Int(b), Value::Null) => b.append_null(),
            (TypedBuilder::Float(b), Value::Null) => b.append_null(),
            (TypedBuilder::Bool(b), Value::Null) => b.append_null(),
            (TypedBuilder::Text(b), Value::String(s)) => b.append_value(s),
            (TypedBuilder::Int(b), Value::Number(n)) if n.is_i64() => b.append_value(n.as_i64()?),
            (TypedBuilder::Float(b), Value::Number(n)) if n.is_f64() => b.append_value(n.as_f64()?),
            (TypedBuilder::Bool(b), Value::Bool(v)) => b.append_value(*v),
            _ => return None,
        }
        Some(())
    }

    fn finish(self) -> ArrayRef {
        match self {
            TypedBuilder::Text(mut b) => Arc::new(b.finish()),
            TypedBuilder::Int(mut b) => Arc::new(b.finish()),
            TypedBuilder::Float(mut b) => Arc::new(b.finish()),
            TypedBuilder::Bool(mut b) => Arc::new(b.finish()),
        }
    }
}
