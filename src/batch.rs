//! Batches: the columnar unit of work between stages (issue 15).
//!
//! A [`Batch`] is an Arrow [`RecordBatch`] with, for each of its rows, where the row came
//! from (file, line, row number) and its sequence number in the stream. A batch never spans
//! two files. Sources that can (CSV, Parquet) hand the engine batches when the stream writes
//! a file; stages with a column kernel (`filter`, `skip`, `rename`, `cast`, `default`,
//! `drop`, `keep`, `dedupe`) work on them whole; the other stages and the sinks without a
//! batch writer (all but Parquet) see rows, converted once by [`Batch::to_rows`].
//!
//! The row path stays the reference. A batch holds only what a row would hold in the same
//! place (the same values, the same keys in the same order), and [`Batch::to_rows`] gives
//! exactly the records the row path would have made. Where a kernel meets something it
//! cannot do exactly as the row stage would (a value that would be rejected, a type it does
//! not know), it declines, and the batch goes on as rows from that stage: a batch is never
//! a different result, only a faster one.
//!
//! Missing and null: every row of a batch has every column, so a batch only ever holds
//! records whose fields are all present (a CSV row); a null in a column is a field present
//! with `null`, as in the row the source would have made.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    StructArray, TimestampMicrosecondArray,
};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, TimeUnit};

use crate::record::{Map, Position, Record, Value, format_timestamp};

/// Whether streams may move batches: `GLEAP_ETL_DATA_PLANE=rows` makes every stream move
/// records one by one, as before batches (to compare the two, or to rule batches out).
pub fn columnar_enabled() -> bool {
    std::env::var("GLEAP_ETL_DATA_PLANE").map_or(true, |v| v != "rows")
}

/// Rows of one file, as columns.
#[derive(Debug, Clone)]
pub struct Batch {
    pub columns: RecordBatch,
    /// The file the rows came from, as the user wrote its path.
    pub file: Arc<str>,
    /// The line each row starts on (line-based formats), one per row.
    pub lines: Option<Vec<u64>>,
    /// The 1-based number of each row in its file.
    pub rows: Vec<u64>,
    /// The 0-based number of each row among all records of its stream; set by the engine.
    pub seqs: Vec<u64>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Where row `i` came from.
    pub fn position(&self, i: usize) -> Position {
        Position {
            file: self.file.clone(),
            line: self.lines.as_ref().map(|l| l[i]),
            row: self.rows[i],
            seq: self.seqs.get(i).copied().unwrap_or(0),
        }
    }

    /// The same rows with other columns (a kernel's output).
    pub fn with_columns(&self, columns: RecordBatch) -> Batch {
        Batch {
            columns,
            file: self.file.clone(),
            lines: self.lines.clone(),
            rows: self.rows.clone(),
            seqs: self.seqs.clone(),
        }
    }

    /// The rows for which `keep` is true (a null counts as false).
    pub fn filter(&self, keep: &BooleanArray) -> Result<Batch, arrow::error::ArrowError> {
        if keep.true_count() == self.len() && keep.null_count() == 0 {
            return Ok(self.clone());
        }
        let kept = |i: usize| keep.is_valid(i) && keep.value(i);
        let pick = |v: &[u64]| -> Vec<u64> {
            v.iter()
                .enumerate()
                .filter(|(i, _)| kept(*i))
                .map(|(_, x)| *x)
                .collect()
        };
        Ok(Batch {
            columns: filter_record_batch(&self.columns, keep)?,
            lines: self.lines.as_deref().map(pick),
            rows: pick(&self.rows),
            seqs: pick(&self.seqs),
            file: self.file.clone(),
        })
    }

    /// Rows `from..` (a resumed run skips the rows the interrupted one confirmed).
    pub fn skip(self, from: usize) -> Batch {
        let n = self.len().saturating_sub(from);
        Batch {
            columns: self.columns.slice(from.min(self.len()), n),
            lines: self.lines.map(|l| l[from.min(l.len())..].to_vec()),
            rows: self.rows[from.min(self.rows.len())..].to_vec(),
            seqs: self.seqs[from.min(self.seqs.len())..].to_vec(),
            file: self.file,
        }
    }

    /// The records the row path would have, with their positions.
    pub fn to_rows(&self) -> Vec<(Record, Position)> {
        (0..self.len()).map(|i| self.row(i)).collect()
    }

    /// Row `i` as the record the row path would have, with its position.
    pub fn row(&self, i: usize) -> (Record, Position) {
        let schema = self.columns.schema();
        let mut record = Record::with_capacity(schema.fields().len());
        for (field, column) in schema.fields().iter().zip(self.columns.columns()) {
            record.insert(field.name().clone(), value_at(column, i));
        }
        (record, self.position(i))
    }
}

/// Row `i` of `column` as the row path's value: numbers, strings and booleans as they are,
/// a timestamp as the `cast` stage writes it, a date as `YYYY-MM-DD`, a struct as an object
/// of its children.
pub fn value_at(column: &ArrayRef, i: usize) -> Value {
    if column.is_null(i) {
        return Value::Null;
    }
    match column.data_type() {
        DataType::Boolean => Value::Bool(column.as_boolean().value(i)),
        DataType::Int64 => Value::from(
            column
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("an Int64 array")
                .value(i),
        ),
        DataType::Float64 => {
            let f = column
                .as_any()
                .downcast_ref::<Float64Array>()
                .expect("a Float64 array")
                .value(i);
            serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
        }
        DataType::Utf8 => Value::String(
            column
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("a Utf8 array")
                .value(i)
                .to_string(),
        ),
        DataType::Date32 => {
            let days = column
                .as_primitive::<arrow::datatypes::Date32Type>()
                .value(i);
            date_of(days).map_or(Value::Null, |d| {
                Value::String(d.format("%Y-%m-%d").to_string())
            })
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            let micros = column
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .expect("a timestamp array")
                .value(i);
            chrono::DateTime::from_timestamp_micros(micros)
                .map_or(Value::Null, |t| Value::String(format_timestamp(&t)))
        }
        DataType::Struct(_) => {
            let s: &StructArray = column.as_struct();
            let mut object = Map::with_capacity(s.num_columns());
            for (field, child) in s.fields().iter().zip(s.columns()) {
                object.insert(field.name().clone(), value_at(child, i));
            }
            Value::Object(object)
        }
        _ => Value::Null,
    }
}

/// The date `days` after 1970-01-01, where chrono has it.
pub fn date_of(days: i32) -> Option<chrono::NaiveDate> {
    chrono::NaiveDate::default().checked_add_signed(chrono::Duration::days(i64::from(days)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field, Fields, Schema};
    use serde_json::json;

    fn batch() -> Batch {
        let plan: ArrayRef = Arc::new(StringArray::from(vec![Some("pro"), None, Some("team")]));
        let data = StructArray::new(
            Fields::from(vec![Field::new("plan", DataType::Utf8, true)]),
            vec![plan],
            None,
        );
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new(
                "signup",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("customData", data.data_type().clone(), true),
        ]);
        let columns = RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![
                        Some(1_700_000_000_000_000),
                        None,
                        Some(1),
                    ])
                    .with_timezone("UTC"),
                ),
                Arc::new(data),
            ],
        )
        .unwrap();
        Batch {
            columns,
            file: "a.csv".into(),
            lines: Some(vec![2, 3, 5]),
            rows: vec![1, 2, 3],
            seqs: vec![10, 11, 12],
        }
    }

    #[test]
    fn rows_are_what_the_row_path_holds_with_their_positions() {
        let rows = batch().to_rows();
        let values: Vec<Value> = rows.iter().map(|(r, _)| Value::Object(r.clone())).collect();
        assert_eq!(
            values,
            vec![
                json!({"id": 1, "signup": "2023-11-14T22:13:20.000Z", "customData": {"plan": "pro"}}),
                json!({"id": 2, "signup": null, "customData": {"plan": null}}),
                json!({"id": 3, "signup": "1970-01-01T00:00:00.000001Z", "customData": {"plan": "team"}}),
            ]
        );
        assert_eq!(rows[2].1.to_string(), "a.csv:5");
        assert_eq!((rows[2].1.row, rows[2].1.seq), (3, 12));
    }

    #[test]
    fn filtering_and_skipping_keep_positions_with_their_rows() {
        let b = batch()
            .filter(&BooleanArray::from(vec![Some(true), None, Some(true)]))
            .unwrap();
        assert_eq!((b.rows.clone(), b.seqs.clone()), (vec![1, 3], vec![10, 12]));
        assert_eq!(b.lines.as_deref(), Some(&[2, 5][..]));
        let b = b.skip(1);
        assert_eq!(b.to_rows()[0].0["id"], json!(3));
        assert_eq!(b.position(0).to_string(), "a.csv:5");
    }
}
