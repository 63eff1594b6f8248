//! Parquet source: files (or a glob) read one record batch at a time, so memory stays flat
//! however large the files. Every row becomes a record; Arrow values become JSON (see
//! [`column_values`] for how each type is shown).
//!
//! A file that cannot be decoded stops the stream: Parquet has no rows to skip past a
//! corrupt page.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{
    ArrowTemporalType, DataType, Date32Type, Date64Type, Decimal32Type, Decimal64Type,
    Decimal128Type, Decimal256Type, DecimalType, Field, Float16Type, Float32Type, Float64Type,
    Int8Type, Int16Type, Int32Type, Int64Type, Schema, Time32MillisecondType, Time32SecondType,
    Time64MicrosecondType, Time64NanosecondType, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::{TimeZone, Utc};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Number;

use super::{OpenedSource, ProgressUnit, SourceItem, SourceIter, files};
use crate::error::{Error, Result};
use crate::record::{Map, Position, Record, Value, format_timestamp};

/// The Arrow extension name of a UTF-8 column holding JSON text (written by the Parquet sink
/// for `json` columns); its values are parsed back into JSON values.
const JSON_EXTENSION_NAME: &str = "arrow.json";
const EXTENSION_NAME_KEY: &str = "ARROW:extension:name";

/// Reads Apache Parquet files a record batch at a time.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParquetSourceConfig {
    /// A file, or a glob such as `exports/*.parquet`; files are read in name order.
    pub path: String,
    /// Read only these top-level columns, in this order. A name the file does not have is an
    /// error. Default: every column, in file order.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// Rows decoded at a time; memory grows with it. Default 8192.
    #[serde(default = "default_batch_size")]
    #[schemars(range(min = 1))]
    pub batch_size: usize,
}

/// The default of `batch_size`.
pub const DEFAULT_BATCH_SIZE: usize = 8192;

fn default_batch_size() -> usize {
    DEFAULT_BATCH_SIZE
}

impl ParquetSourceConfig {
    /// Every problem with the options as written; `at` is the source's config path.
    pub fn check(&self, at: &str) -> Vec<crate::config::ConfigError> {
        let mut errors: Vec<_> = files::check_pattern(&self.path, &format!("{at}.path"))
            .into_iter()
            .collect();
        if self.batch_size == 0 {
            errors.push(crate::config::ConfigError::at(
                format!("{at}.batch_size"),
                "must be at least 1",
            ));
        }
        if let Some(columns) = &self.columns {
            errors.extend(crate::config::repeated_names(
                columns,
                &format!("{at}.columns"),
            ));
        }
        errors
    }

    /// Finds the files, reads their footers (for the row count and to check `columns`), and
    /// prepares to read them. Progress is counted in rows.
    pub fn open(&self) -> Result<OpenedSource> {
        self.open_as(false)
    }

    /// [`ParquetSourceConfig::open`]; `columnar`: Arrow batches whose columns are all of
    /// types a [`crate::batch::Batch`] holds come through as they are (see
    /// [`as_batch_columns`]), the others as records.
    pub fn open_as(&self, columnar: bool) -> Result<OpenedSource> {
        crate::config::checked(self.check("source.parquet"))?;
        let files = files::expand(&self.path)?;
        let mut total: u64 = 0;
        for path in &files {
            let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
            // The parquet crate would overflow the stack on a deeply nested schema.
            super::parquet_depth::check(&mut file)
                .map_err(|e| Error::input(files::display_name(path).to_string(), e))?;
            let metadata = ParquetMetaDataReader::new()
                .parse_and_finish(&file)
                .map_err(|e| Error::input(files::display_name(path).to_string(), e))?;
            total += u64::try_from(metadata.file_metadata().num_rows()).unwrap_or(0);
            if let Some(columns) = &self.columns {
                root_indices(&metadata, columns, path)?;
            }
        }
        let config = self.clone();
        Ok(OpenedSource::from_files(
            files,
            ProgressUnit::Rows,
            total,
            move |path, done| {
                let mut reader = ParquetFileReader::open(&config, path, done.clone())?;
                reader.columnar = columnar;
                Ok(Box::new(reader) as SourceIter)
            },
        ))
    }
}

/// The positions of `columns` among the top-level columns of the file; an unknown name is an
/// error that lists the columns there are.
fn root_indices(metadata: &ParquetMetaData, columns: &[String], path: &Path) -> Result<Vec<usize>> {
    let roots = metadata
        .file_metadata()
        .schema_descr()
        .root_schema()
        .get_fields();
    let names: Vec<&str> = roots.iter().map(|f| f.name()).collect();
    columns
        .iter()
        .map(|column| {
            names.iter().position(|n| n == column).ok_or_else(|| {
                Error::config(format!(
                    "{}: no column `{column}` (columns: {})",
                    path.display(),
                    names.join(", ")
                ))
            })
        })
        .collect()
}

/// One Parquet file being read.
struct ParquetFileReader {
    file: Arc<str>,
    reader: ParquetRecordBatchReader,
    /// The columns to keep, in the order asked for; `None` keeps all in file order.
    columns: Option<Vec<String>>,
    /// Records of the last batch not yet handed out.
    pending: std::vec::IntoIter<Record>,
    /// The number of the last record handed out.
    row: u64,
    /// Rows decoded so far (1-based number of the next batch's first row, minus one).
    decoded: u64,
    done: Arc<AtomicU64>,
    failed: bool,
    /// Whether batches are handed out as they are where they can be.
    columnar: bool,
}

impl ParquetFileReader {
    fn open(
        config: &ParquetSourceConfig,
        path: &Path,
        done: Arc<AtomicU64>,
    ) -> Result<ParquetFileReader> {
        let name = files::display_name(path);
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| Error::input(name.to_string(), e))?;
        let mut columns = None;
        if let Some(wanted) = &config.columns {
            let indices = root_indices(builder.metadata(), wanted, path)?;
            let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
            builder = builder.with_projection(mask);
            let mut unique: Vec<String> = Vec::with_capacity(wanted.len());
            for column in wanted {
                if !unique.contains(column) {
                    unique.push(column.clone());
                }
            }
            columns = Some(unique);
        }
        let reader = builder
            .with_batch_size(config.batch_size)
            .build()
            .map_err(|e| Error::input(name.to_string(), e))?;
        Ok(ParquetFileReader {
            file: name,
            reader,
            columns,
            pending: Vec::new().into_iter(),
            row: 0,
            decoded: 0,
            done,
            failed: false,
            columnar: false,
        })
    }

    /// The decoded batch as a [`crate::batch::Batch`] (its columns in the order asked for),
    /// where every column is one a batch holds.
    fn as_batch(&mut self, batch: &RecordBatch) -> Option<crate::batch::Batch> {
        let schema = batch.schema();
        let order: Vec<usize> = match &self.columns {
            Some(columns) => columns
                .iter()
                .map(|c| schema.index_of(c).ok())
                .collect::<Option<_>>()?,
            None => (0..batch.num_columns()).collect(),
        };
        let mut fields = Vec::with_capacity(order.len());
        let mut columns = Vec::with_capacity(order.len());
        for i in order {
            let field = schema.field(i);
            let column = as_batch_column(batch.column(i), field)?;
            fields.push(Field::new(field.name(), column.data_type().clone(), true));
            columns.push(column);
        }
        let options =
            arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        let columns =
            RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), columns, &options)
                .ok()?;
        let first = self.row + 1;
        self.row += batch.num_rows() as u64;
        Some(crate::batch::Batch {
            columns,
            file: self.file.clone(),
            lines: None,
            rows: (first..=self.row).collect(),
            seqs: Vec::new(),
        })
    }

    fn records(&self, batch: &RecordBatch) -> std::result::Result<Vec<Record>, ArrowError> {
        let schema = batch.schema();
        let order: Vec<usize> = match &self.columns {
            Some(columns) => columns
                .iter()
                .map(|c| schema.index_of(c))
                .collect::<std::result::Result<_, _>>()?,
            None => (0..batch.num_columns()).collect(),
        };
        let mut records: Vec<Record> = (0..batch.num_rows())
            .map(|_| Record::with_capacity(order.len()))
            .collect();
        for i in order {
            let field = schema.field(i);
            let values = column_values(batch.column(i).as_ref(), is_json(field))?;
            for (record, value) in records.iter_mut().zip(values) {
                record.insert(field.name().clone(), value);
            }
        }
        Ok(records)
    }
}

impl Iterator for ParquetFileReader {
    type Item = Result<SourceItem>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(record) = self.pending.next() {
                self.row += 1;
                let position = Position {
                    seq: 0,
                    file: self.file.clone(),
                    line: None,
                    row: self.row,
                };
                return Some(Ok(SourceItem::Record(record, position)));
            }
            if self.failed {
                return None;
            }
            let location = format!("{} row {}", self.file, self.decoded + 1);
            let batch = match self.reader.next()? {
                Ok(batch) => batch,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(Error::input(location, e)));
                }
            };
            let rows = batch.num_rows() as u64;
            self.decoded += rows;
            self.done.fetch_add(rows, Ordering::Relaxed);
            if self.columnar
                && let Some(batch) = self.as_batch(&batch)
            {
                return Some(Ok(SourceItem::Batch(batch)));
            }
            match self.records(&batch) {
                Ok(records) => self.pending = records.into_iter(),
                Err(e) => {
                    self.failed = true;
                    return Some(Err(Error::input(location, e)));
                }
            }
        }
    }
}

/// A column as a batch holds it, where [`crate::batch::value_at`] then gives exactly what
/// [`column_values`] gives: integers up to 32 bits widened to 64, dates, a microsecond timestamp
/// in any time zone as UTC (whose instants it counts either way) within chrono's range,
/// structs of such; `None` for any other type and for JSON text.
pub fn as_batch_column(array: &ArrayRef, field: &Field) -> Option<ArrayRef> {
    if is_json(field) {
        return None;
    }
    Some(match array.data_type() {
        DataType::Null
        | DataType::Boolean
        | DataType::Int64
        | DataType::Float64
        | DataType::Utf8 => array.clone(),
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32 => arrow::compute::cast(array, &DataType::Int64).ok()?,
        DataType::Date32 => {
            let a = array.as_primitive::<Date32Type>();
            if a.iter()
                .flatten()
                .any(|d| crate::batch::date_of(d).is_none())
            {
                return None;
            }
            array.clone()
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            let a = array.as_primitive::<TimestampMicrosecondType>();
            if a.iter()
                .flatten()
                .any(|v| chrono::DateTime::from_timestamp_micros(v).is_none())
            {
                return None;
            }
            Arc::new(a.clone().with_timezone("UTC"))
        }
        DataType::Struct(fields) => {
            let a = array.as_struct();
            let mut children = Vec::with_capacity(fields.len());
            let mut out_fields = Vec::with_capacity(fields.len());
            for (f, c) in fields.iter().zip(a.columns()) {
                let child = as_batch_column(c, f)?;
                out_fields.push(Field::new(f.name(), child.data_type().clone(), true));
                children.push(child);
            }
            Arc::new(
                arrow::array::StructArray::try_new(out_fields.into(), children, a.nulls().cloned())
                    .ok()?,
            )
        }
        _ => return None,
    })
}

/// Whether the field holds JSON text (the `arrow.json` extension).
fn is_json(field: &Field) -> bool {
    field
        .metadata()
        .get(EXTENSION_NAME_KEY)
        .is_some_and(|name| name == JSON_EXTENSION_NAME)
}

/// The values of an Arrow column as JSON, one per row; null stays null.
///
/// Booleans, integers (unsigned above `i64::MAX` too) and floats are JSON numbers and
/// booleans (NaN and infinities become null); text is a string (parsed as JSON when
/// `json_text`); binary is lowercase hex; dates are `YYYY-MM-DD`; timestamps of any unit and
/// time zone are RFC 3339 UTC strings (see [`format_timestamp`]), a timestamp without a time
/// zone being taken as UTC; times of day are `HH:MM:SS[.fff]`; decimals are numbers when the
/// float prints back the same digits, strings otherwise; lists are arrays; structs and maps
/// are objects (map keys that are not strings are written as their JSON text); dictionaries
/// are decoded. Any other type is shown as Arrow displays it.
pub fn column_values(
    array: &dyn Array,
    json_text: bool,
) -> std::result::Result<Vec<Value>, ArrowError> {
    let n = array.len();
    Ok(match array.data_type() {
        DataType::Null => vec![Value::Null; n],
        DataType::Boolean => {
            let a = array.as_boolean();
            per_row(array, |i| Value::Bool(a.value(i)))
        }
        DataType::Int8 => ints::<Int8Type>(array),
        DataType::Int16 => ints::<Int16Type>(array),
        DataType::Int32 => ints::<Int32Type>(array),
        DataType::Int64 => ints::<Int64Type>(array),
        DataType::UInt8 => ints::<UInt8Type>(array),
        DataType::UInt16 => ints::<UInt16Type>(array),
        DataType::UInt32 => ints::<UInt32Type>(array),
        DataType::UInt64 => {
            let a = array.as_primitive::<UInt64Type>();
            per_row(array, |i| Value::from(a.value(i)))
        }
        DataType::Float16 => {
            let a = array.as_primitive::<Float16Type>();
            // Through the shortest decimal form, so 0.1 reads as 0.1 rather than 0.0999...
            per_row(array, |i| short_float(a.value(i).to_string()))
        }
        DataType::Float32 => {
            let a = array.as_primitive::<Float32Type>();
            per_row(array, |i| short_float(a.value(i).to_string()))
        }
        DataType::Float64 => {
            let a = array.as_primitive::<Float64Type>();
            per_row(array, |i| float(a.value(i)))
        }
        DataType::Utf8 => {
            let a = array.as_string::<i32>();
            per_row(array, |i| text(a.value(i), json_text))
        }
        DataType::LargeUtf8 => {
            let a = array.as_string::<i64>();
            per_row(array, |i| text(a.value(i), json_text))
        }
        DataType::Utf8View => {
            let a = array.as_string_view();
            per_row(array, |i| text(a.value(i), json_text))
        }
        DataType::Binary => {
            let a = array.as_binary::<i32>();
            per_row(array, |i| Value::String(hex(a.value(i))))
        }
        DataType::LargeBinary => {
            let a = array.as_binary::<i64>();
            per_row(array, |i| Value::String(hex(a.value(i))))
        }
        DataType::BinaryView => {
            let a = array.as_binary_view();
            per_row(array, |i| Value::String(hex(a.value(i))))
        }
        DataType::FixedSizeBinary(_) => {
            let a = array.as_fixed_size_binary();
            per_row(array, |i| Value::String(hex(a.value(i))))
        }
        DataType::Date32 => dates::<Date32Type>(array)?,
        DataType::Date64 => dates::<Date64Type>(array)?,
        DataType::Timestamp(unit, _) => match unit {
            TimeUnit::Second => timestamps::<TimestampSecondType>(array)?,
            TimeUnit::Millisecond => timestamps::<TimestampMillisecondType>(array)?,
            TimeUnit::Microsecond => timestamps::<TimestampMicrosecondType>(array)?,
            TimeUnit::Nanosecond => timestamps::<TimestampNanosecondType>(array)?,
        },
        DataType::Time32(TimeUnit::Second) => times::<Time32SecondType>(array)?,
        DataType::Time32(TimeUnit::Millisecond) => times::<Time32MillisecondType>(array)?,
        DataType::Time64(TimeUnit::Microsecond) => times::<Time64MicrosecondType>(array)?,
        DataType::Time64(TimeUnit::Nanosecond) => times::<Time64NanosecondType>(array)?,
        DataType::Decimal32(..) => decimals::<Decimal32Type>(array),
        DataType::Decimal64(..) => decimals::<Decimal64Type>(array),
        DataType::Decimal128(..) => decimals::<Decimal128Type>(array),
        DataType::Decimal256(..) => decimals::<Decimal256Type>(array),
        DataType::List(item) => {
            let a = array.as_list::<i32>();
            let bounds = a
                .value_offsets()
                .windows(2)
                .map(|w| (w[0] as usize, w[1] as usize));
            lists(a.values(), bounds, a.nulls(), is_json(item))?
        }
        DataType::LargeList(item) => {
            let a = array.as_list::<i64>();
            let bounds = a
                .value_offsets()
                .windows(2)
                .map(|w| (w[0] as usize, w[1] as usize));
            lists(a.values(), bounds, a.nulls(), is_json(item))?
        }
        DataType::FixedSizeList(item, size) => {
            let a = array.as_fixed_size_list();
            let size = usize::try_from(*size).unwrap_or(0);
            let bounds = (0..n).map(|i| (i * size, (i + 1) * size));
            lists(a.values(), bounds, a.nulls(), is_json(item))?
        }
        DataType::Struct(fields) => {
            let a = array.as_struct();
            let mut children = Vec::with_capacity(fields.len());
            for (field, column) in fields.iter().zip(a.columns()) {
                children.push(column_values(column.as_ref(), is_json(field))?.into_iter());
            }
            (0..n)
                .map(|i| {
                    let mut object = Map::with_capacity(fields.len());
                    for (field, values) in fields.iter().zip(children.iter_mut()) {
                        object.insert(field.name().clone(), values.next().unwrap_or(Value::Null));
                    }
                    if a.is_null(i) {
                        Value::Null
                    } else {
                        Value::Object(object)
                    }
                })
                .collect()
        }
        DataType::Map(entries, _) => {
            let a = array.as_map();
            let (key_json, value_json) = match entries.data_type() {
                DataType::Struct(f) if f.len() == 2 => (is_json(&f[0]), is_json(&f[1])),
                _ => (false, false),
            };
            let bounds: Vec<(usize, usize)> = a
                .value_offsets()
                .windows(2)
                .map(|w| (w[0] as usize, w[1] as usize))
                .collect();
            let keys = lists(a.keys(), bounds.iter().copied(), None, key_json)?;
            let values = lists(a.values(), bounds.iter().copied(), None, value_json)?;
            keys.into_iter()
                .zip(values)
                .enumerate()
                .map(|(i, (keys, values))| match (keys, values) {
                    (Value::Array(keys), Value::Array(values)) if a.is_valid(i) => Value::Object(
                        keys.into_iter()
                            .zip(values)
                            .map(|(k, v)| match k {
                                Value::String(s) => (s, v),
                                other => (other.to_string(), v),
                            })
                            .collect(),
                    ),
                    _ => Value::Null,
                })
                .collect()
        }
        DataType::Dictionary(_, value_type) => {
            let decoded = arrow::compute::cast(array, value_type)?;
            column_values(decoded.as_ref(), json_text)?
        }
        _ => displayed(array)?,
    })
}

/// `value(i)` for valid rows, null for the others.
fn per_row(array: &dyn Array, mut value: impl FnMut(usize) -> Value) -> Vec<Value> {
    (0..array.len())
        .map(|i| {
            if array.is_null(i) {
                Value::Null
            } else {
                value(i)
            }
        })
        .collect()
}

fn ints<T>(array: &dyn Array) -> Vec<Value>
where
    T: arrow::datatypes::ArrowPrimitiveType,
    T::Native: Into<i64>,
{
    let a = array.as_primitive::<T>();
    per_row(array, |i| Value::from(a.value(i).into()))
}

fn float(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// A float through its shortest text, for narrower floats.
fn short_float(text: String) -> Value {
    text.parse::<f64>().map_or(Value::Null, float)
}

fn text(s: &str, json_text: bool) -> Value {
    if json_text && let Ok(value) = serde_json::from_str(s) {
        return value;
    }
    Value::String(s.to_string())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Values out of chrono's range are shown as Arrow displays them.
fn dates<T>(array: &dyn Array) -> std::result::Result<Vec<Value>, ArrowError>
where
    T: ArrowTemporalType,
    i64: From<T::Native>,
{
    temporal(array, |a, i| {
        a.as_primitive::<T>()
            .value_as_date(i)
            .map(|d| d.format("%Y-%m-%d").to_string())
    })
}

fn timestamps<T>(array: &dyn Array) -> std::result::Result<Vec<Value>, ArrowError>
where
    T: ArrowTemporalType,
    i64: From<T::Native>,
{
    // The stored value counts from the epoch in UTC whatever the column's time zone; a
    // column without one is taken as UTC too.
    temporal(array, |a, i| {
        a.as_primitive::<T>()
            .value_as_datetime(i)
            .map(|t| format_timestamp(&Utc.from_utc_datetime(&t)))
    })
}

fn times<T>(array: &dyn Array) -> std::result::Result<Vec<Value>, ArrowError>
where
    T: ArrowTemporalType,
    i64: From<T::Native>,
{
    temporal(array, |a, i| {
        a.as_primitive::<T>()
            .value_as_time(i)
            .map(|t| t.format("%H:%M:%S%.f").to_string())
    })
}

fn temporal(
    array: &dyn Array,
    format: impl Fn(&dyn Array, usize) -> Option<String>,
) -> std::result::Result<Vec<Value>, ArrowError> {
    let mut formatter = None;
    let mut out = Vec::with_capacity(array.len());
    for i in 0..array.len() {
        if array.is_null(i) {
            out.push(Value::Null);
            continue;
        }
        match format(array, i) {
            Some(s) => out.push(Value::String(s)),
            None => {
                let f = match &formatter {
                    Some(f) => f,
                    None => formatter.insert(ArrayFormatter::try_new(array, &FORMAT)?),
                };
                out.push(Value::String(f.value(i).try_to_string()?));
            }
        }
    }
    Ok(out)
}

const FORMAT: FormatOptions<'static> = FormatOptions::new();

fn decimals<T: DecimalType>(array: &dyn Array) -> Vec<Value> {
    let a = array.as_primitive::<T>();
    per_row(array, |i| decimal(a.value_as_string(i)))
}

/// A decimal's text as a JSON number when nothing is lost: an integer that fits 64 bits, or
/// a fraction whose float prints back as the same digits. Otherwise the text.
fn decimal(text: String) -> Value {
    let digits = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    if !digits.contains('.') {
        if let Ok(i) = digits.parse::<i64>() {
            return Value::from(i);
        }
        if let Ok(u) = digits.parse::<u64>() {
            return Value::from(u);
        }
        return Value::String(text);
    }
    match digits.parse::<f64>() {
        Ok(f) if f.to_string() == digits => float(f),
        _ => Value::String(text),
    }
}

/// Splits the values of `child` into one array per row: row `i` holds the items in
/// `bounds[i]` (which never go backwards), or is null.
fn lists(
    child: &ArrayRef,
    bounds: impl Iterator<Item = (usize, usize)>,
    nulls: Option<&NullBuffer>,
    item_json: bool,
) -> std::result::Result<Vec<Value>, ArrowError> {
    let bounds: Vec<(usize, usize)> = bounds.collect();
    let first = bounds.first().map_or(0, |b| b.0);
    let last = bounds.last().map_or(0, |b| b.1).min(child.len());
    let sliced = child.slice(first.min(last), last.saturating_sub(first));
    let mut items = column_values(sliced.as_ref(), item_json)?.into_iter();
    let mut at = first;
    Ok(bounds
        .into_iter()
        .enumerate()
        .map(|(i, (start, end))| {
            if start > at {
                items.by_ref().take(start - at).for_each(drop);
                at = start;
            }
            let row: Vec<Value> = items.by_ref().take(end.saturating_sub(at)).collect();
            at = at.max(end);
            if nulls.is_some_and(|n| n.is_null(i)) {
                Value::Null
            } else {
                Value::Array(row)
            }
        })
        .collect())
}

/// Values of any other type, as Arrow displays them.
fn displayed(array: &dyn Array) -> std::result::Result<Vec<Value>, ArrowError> {
    let formatter = ArrayFormatter::try_new(array, &FORMAT)?;
    let nulls = array.logical_nulls();
    (0..array.len())
        .map(|i| {
            if nulls.as_ref().is_some_and(|n| n.is_null(i)) {
                Ok(Value::Null)
            } else {
                formatter.value(i).try_to_string().map(Value::String)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dead_letter::DeadLetters;
    use crate::sinks::parquet::ParquetSinkConfig;
    use crate::sinks::{Sink, SinkContext};
    use arrow::array::{
        BinaryArray, Decimal128Array, DictionaryArray, Float32Array, Int32Array, ListArray,
        StringArray, StructArray, Time32MillisecondArray, TimestampMillisecondArray,
        TimestampNanosecondArray, UInt64Array,
    };
    use arrow::datatypes::{Fields, Schema};
    use parquet::arrow::ArrowWriter;
    use serde_json::json;

    fn config(path: &Path) -> ParquetSourceConfig {
        serde_json::from_value(json!({"path": path.to_str().unwrap()})).unwrap()
    }

    fn read(config: &ParquetSourceConfig) -> Vec<(Value, Position)> {
        config
            .open()
            .unwrap()
            .items
            .map(|item| match item.unwrap() {
                SourceItem::Record(r, p) => (Value::Object(r), p),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    /// A file with many Arrow types, written with `ArrowWriter` directly.
    fn write_typed_file(path: &Path) {
        let tags = ListArray::from_iter_primitive::<Int32Type, _, _>([
            Some(vec![Some(1), None]),
            None,
            Some(vec![]),
        ]);
        let plan = Arc::new(StringArray::from(vec![Some("pro"), None, Some("free")]));
        let seats = Arc::new(Int32Array::from(vec![Some(3), Some(4), None]));
        let custom = StructArray::try_new(
            Fields::from(vec![
                Field::new("plan", DataType::Utf8, true),
                Field::new("seats", DataType::Int32, true),
            ]),
            vec![plan, seats],
            Some(NullBuffer::from(vec![true, true, false])),
        )
        .unwrap();
        let dict: DictionaryArray<Int32Type> =
            vec![Some("a"), None, Some("a")].into_iter().collect();
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("id", Arc::new(UInt64Array::from(vec![1, u64::MAX, 3]))),
            (
                "name",
                Arc::new(StringArray::from(vec![Some("Zoë"), None, Some("")])),
            ),
            (
                "at",
                Arc::new(
                    TimestampMillisecondArray::from(vec![Some(1_709_294_400_123), None, Some(0)])
                        .with_timezone("+02:00"),
                ),
            ),
            (
                "naive",
                Arc::new(TimestampNanosecondArray::from(vec![
                    Some(1_500),
                    Some(0),
                    None,
                ])),
            ),
            (
                "ratio",
                Arc::new(Float32Array::from(vec![Some(0.1), Some(f32::NAN), None])),
            ),
            (
                "price",
                Arc::new(
                    Decimal128Array::from(vec![Some(1250), Some(10), Some(i128::MAX / 10)])
                        .with_precision_and_scale(38, 2)
                        .unwrap(),
                ),
            ),
            (
                "blob",
                Arc::new(BinaryArray::from(vec![
                    Some(&b"\x00\xff"[..]),
                    None,
                    Some(&b""[..]),
                ])),
            ),
            (
                "time",
                Arc::new(Time32MillisecondArray::from(vec![
                    Some(3_723_500),
                    Some(0),
                    None,
                ])),
            ),
            ("tags", Arc::new(tags)),
            ("customData", Arc::new(custom)),
            ("kind", Arc::new(dict)),
        ];
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|(name, a)| Field::new(*name, a.data_type().clone(), true))
                .collect::<Vec<_>>(),
        ));
        let batch = RecordBatch::try_new(
            schema.clone(),
            columns.into_iter().map(|(_, a)| a).collect(),
        )
        .unwrap();
        let mut writer = ArrowWriter::try_new(File::create(path).unwrap(), schema, None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
    }

    #[test]
    fn reads_typed_columns_as_json() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        write_typed_file(&path);
        let opened = config(&path).open().unwrap();
        assert_eq!(opened.progress.unit, ProgressUnit::Rows);
        assert_eq!(opened.progress.total, Some(3));
        let done = opened.progress.done.clone();
        let items: Vec<(Value, Position)> = opened
            .items
            .map(|item| match item.unwrap() {
                SourceItem::Record(r, p) => (Value::Object(r), p),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(done.load(Ordering::Relaxed), 3);
        let records: Vec<&Value> = items.iter().map(|(r, _)| r).collect();
        assert_eq!(
            *records[0],
            json!({"id": 1, "name": "Zoë", "at": "2024-03-01T12:00:00.123Z",
                   "naive": "1970-01-01T00:00:00.000001Z", "ratio": 0.1, "price": 12.5,
                   "blob": "00ff", "time": "01:02:03.500", "tags": [1, null],
                   "customData": {"plan": "pro", "seats": 3}, "kind": "a"})
        );
        assert_eq!(
            *records[1],
            json!({"id": u64::MAX, "name": null, "at": null, "naive": "1970-01-01T00:00:00.000Z",
                   "ratio": null, "price": 0.1, "blob": null, "time": "00:00:00", "tags": null,
                   "customData": {"plan": null, "seats": 4}, "kind": null})
        );
        assert_eq!(records[2]["customData"], json!(null));
        assert_eq!(records[2]["tags"], json!([]));
        assert_eq!(
            records[2]["price"],
            json!("170141183460469231731687303715884105.72")
        );
        let rows: Vec<(Option<u64>, u64)> = items.iter().map(|(_, p)| (p.line, p.row)).collect();
        assert_eq!(rows, [(None, 1), (None, 2), (None, 3)]);
    }

    #[test]
    fn projects_columns_in_the_order_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        write_typed_file(&path);
        let mut c = config(&path);
        c.columns = Some(vec!["tags".into(), "id".into()]);
        let records = read(&c);
        assert_eq!(records[0].0, json!({"tags": [1, null], "id": 1}));
        let keys: Vec<&String> = records[0].0.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["tags", "id"]);

        c.columns = Some(vec!["id".into(), "nope".into()]);
        let err = c.open().err().unwrap().to_string();
        assert!(err.contains("no column `nope`"), "{err}");
        assert!(err.contains("t.parquet"), "{err}");
        assert!(err.contains("columns: id, name, at,"), "{err}");
    }

    #[test]
    fn reads_several_files_in_small_batches_with_rows_per_file() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.parquet", "b.parquet"] {
            write_typed_file(&dir.path().join(name));
        }
        let mut c = config(&dir.path().join("*.parquet"));
        c.batch_size = 2;
        let opened = c.open().unwrap();
        assert_eq!(opened.progress.total, Some(6));
        let rows: Vec<(String, u64)> = opened
            .items
            .map(|i| match i.unwrap() {
                SourceItem::Record(_, p) => (p.file.rsplit('/').next().unwrap().to_string(), p.row),
                other => panic!("{other:?}"),
            })
            .collect();
        let expected: Vec<(String, u64)> = ["a.parquet", "b.parquet"]
            .iter()
            .flat_map(|f| (1..=3).map(move |r| (f.to_string(), r)))
            .collect();
        assert_eq!(rows, expected);
    }

    #[test]
    fn a_corrupt_file_is_an_input_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.parquet");
        std::fs::write(&path, b"not parquet at all").unwrap();
        let err = config(&path).open().err().unwrap();
        assert!(matches!(err, Error::Input { .. }), "{err}");
    }

    #[test]
    fn records_round_trip_through_the_sink() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rt.parquet");
        let records = vec![
            json!({"id": 1, "email": "a@example.com", "score": 0.25, "vip": true,
                   "createdAt": "2024-03-01T12:00:00.000Z", "birthday": "1990-05-17",
                   "tags": ["x", "y"], "scores": [1.5, 2.5],
                   "customData": {"plan": "pro", "seats": 3, "nested": {"deep": "yes"}},
                   "items": [{"sku": "a", "qty": 1}], "payload": {"free": ["form"]},
                   "anything": 1, "header.with.dots": "kept"}),
            json!({"id": 2, "email": null, "score": 1.0, "vip": false,
                   "createdAt": "2024-03-01T12:00:00.123456Z", "birthday": null,
                   "tags": [], "scores": null,
                   "customData": {"plan": null, "seats": null, "nested": null},
                   "items": [{"sku": "b", "qty": null}, {"sku": null, "qty": 2}],
                   "payload": null, "anything": [1], "header.with.dots": null}),
        ];
        let dl = DeadLetters::in_memory(None);
        let sink_config: ParquetSinkConfig =
            serde_json::from_value(json!({"path": path.to_str().unwrap()})).unwrap();
        let mut sink: Box<dyn Sink> = Box::new(
            sink_config
                .build(SinkContext::new("s", dl.clone()))
                .unwrap(),
        );
        for (i, r) in records.iter().enumerate() {
            let position = Position {
                seq: 0,
                file: "in".into(),
                line: None,
                row: i as u64 + 1,
            };
            sink.write(r.as_object().unwrap().clone(), position)
                .unwrap();
        }
        let summary = sink.finish().unwrap();
        assert!(dl.take().is_empty());
        assert_eq!(summary.detail.unwrap()["schema"]["anything"], json!("json"));
        let back: Vec<Value> = read(&config(&path)).into_iter().map(|(r, _)| r).collect();
        assert_eq!(back, records);
    }

    /// Read as batches, a file gives the records a row read gives: the batchable columns
    /// (ints of any width, floats, text, booleans, microsecond timestamps with and without a
    /// zone, structs, nulls) as they are, and a file with other columns row by row.
    #[test]
    fn a_batch_read_gives_the_records_a_row_read_gives() {
        use arrow::array::{
            BooleanArray, Float64Array, Int32Array, StringArray, StructArray,
            TimestampMicrosecondArray,
        };
        let dir = tempfile::tempdir().unwrap();
        let flat = |path: &Path, columnar: bool| -> (Vec<(Value, Position)>, usize) {
            let mut batches = 0;
            let mut out = Vec::new();
            for item in config(path).open_as(columnar).unwrap().items {
                match item.unwrap() {
                    SourceItem::Record(r, p) => out.push((Value::Object(r), p)),
                    SourceItem::Batch(b) => {
                        batches += 1;
                        out.extend(b.to_rows().into_iter().map(|(r, p)| (Value::Object(r), p)));
                    }
                    other => panic!("{other:?}"),
                }
            }
            (out, batches)
        };
        let path = dir.path().join("b.parquet");
        let inner = StructArray::new(
            vec![Field::new("plan", DataType::Utf8, true)].into(),
            vec![Arc::new(StringArray::from(vec![Some("pro"), None, Some("Zoë")])) as ArrayRef],
            Some(vec![true, true, false].into()),
        );
        let columns: Vec<(&str, ArrayRef)> = vec![
            (
                "n",
                Arc::new(Int32Array::from(vec![Some(1), None, Some(-3)])),
            ),
            (
                "f",
                Arc::new(Float64Array::from(vec![Some(0.1), Some(2.0), None])),
            ),
            (
                "b",
                Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])),
            ),
            (
                "at",
                Arc::new(TimestampMicrosecondArray::from(vec![
                    Some(1),
                    Some(1_700_000_000_123_000),
                    None,
                ])),
            ),
            (
                "atz",
                Arc::new(
                    TimestampMicrosecondArray::from(vec![Some(5), None, Some(-1)])
                        .with_timezone("+02:00"),
                ),
            ),
            ("customData", Arc::new(inner)),
            (
                "born",
                Arc::new(arrow::array::Date32Array::from(vec![
                    Some(0),
                    Some(-25_000),
                    None,
                ])),
            ),
        ];
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        let file = File::create(&path).unwrap();
        let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let (rows, _) = flat(&path, false);
        let (columns, batches) = flat(&path, true);
        assert_eq!(batches, 1);
        assert_eq!(columns, rows);
        assert_eq!(rows[2].0["customData"], Value::Null);
        assert_eq!(rows[2].0["atz"], json!("1969-12-31T23:59:59.999999Z"));
        assert_eq!(rows[1].0["born"], json!("1901-07-22"));
        // Other types: read row by row, the same records.
        let typed = dir.path().join("typed.parquet");
        write_typed_file(&typed);
        let (rows, _) = flat(&typed, false);
        let (columns, batches) = flat(&typed, true);
        assert_eq!(batches, 0);
        assert_eq!(columns, rows);
    }
}
