//! CSV source: header row, any one-byte delimiter, quoting, a UTF-8 BOM, multi-line fields,
//! `.gz`, globs; column types declared or inferred from the first rows.
//!
//! A row with the wrong number of fields, invalid UTF-8 or a value that does not fit its
//! declared type goes to the dead-letter file with its line number; the run goes on.

use std::collections::VecDeque;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use arrow::record_batch::RecordBatch;
use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

use super::csv_scan::{Dialect, Flagged, Resume, Scanner};
use super::{OpenedSource, ProgressUnit, Rejected, SizeLimits, SourceItem, SourceIter, files};
use crate::config::{ConfigError, Spanned};
use crate::error::{Error, Result};
use crate::record::{FieldType, Position, Record, Value, cast, is_integer_literal};

/// Reads delimited text files.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CsvSourceConfig {
    /// A file, or a glob such as `exports/users-*.csv`; `.gz` files are decompressed.
    pub path: String,
    /// The field delimiter: one character, or `tab`. Default `,`.
    #[serde(default = "CsvChar::comma")]
    pub delimiter: CsvChar,
    /// The quote character. Default `"`.
    #[serde(default = "CsvChar::double_quote")]
    pub quote: CsvChar,
    /// An escape character inside quotes, such as `\`. By default a quote inside a quoted
    /// field is written twice.
    #[serde(default)]
    pub escape: Option<CsvChar>,
    /// Lines starting with this character are skipped.
    #[serde(default)]
    pub comment: Option<CsvChar>,
    /// Whether the first row names the columns. Default `true`.
    #[serde(default = "yes")]
    pub has_header: bool,
    /// Column names: required when there is no header row, replaces the header otherwise.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// Types of columns, by name: `string`, `int`, `float`, `bool`, `timestamp`, `date`,
    /// `json`, `list<TYPE>`. A value that does not fit sends its row to the dead-letter file.
    #[serde(default)]
    pub types: IndexMap<String, FieldType>,
    /// Infer `int`, `float` and `bool` for undeclared columns from the first `infer_rows`
    /// rows. Values with leading zeros stay strings. Default `true`.
    #[serde(default = "yes")]
    pub infer_types: bool,
    /// How many rows type inference looks at. Default 1000.
    #[serde(default = "default_infer_rows")]
    pub infer_rows: usize,
    /// Field values that mean "no value". Default: the empty field.
    #[serde(default = "default_null_values")]
    pub null_values: Vec<String>,
    /// Remove spaces around fields. Default `false`.
    #[serde(default)]
    pub trim: bool,
    /// The largest field, in MiB: a row with a larger one is dead-lettered (and read no
    /// further than the limit). Default 16.
    #[serde(default)]
    pub max_field_mib: Option<Spanned<u64>>,
    /// The largest row, in MiB, as [`CsvSourceConfig::max_field_mib`]. Default 64.
    #[serde(default)]
    pub max_record_mib: Option<Spanned<u64>>,
}

fn yes() -> bool {
    true
}

fn default_infer_rows() -> usize {
    1000
}

fn default_null_values() -> Vec<String> {
    vec![String::new()]
}

/// A single-byte character in CSV options: `","`, `";"`, `"|"`, `tab`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsvChar(pub u8);

impl CsvChar {
    pub fn comma() -> Self {
        CsvChar(b',')
    }

    pub fn double_quote() -> Self {
        CsvChar(b'"')
    }
}

/// The special characters of a CSV dialect, by option name, as written: none is a line
/// end, and none but `escape` may be the same as another (`escape` may be the quote: a quote
/// doubled). `at` is the component's config path.
pub fn check_chars(chars: &[(&str, Option<CsvChar>)], at: &str) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    for (i, (name, c)) in chars.iter().enumerate() {
        let Some(c) = c else { continue };
        if matches!(c.0, b'\n' | b'\r') {
            errors.push(ConfigError::at(
                format!("{at}.{name}"),
                "a line end cannot separate, quote or mark fields",
            ));
            continue;
        }
        let clash = chars[..i].iter().find(|(other_name, other)| {
            *other == Some(*c) && !matches!((*other_name, *name), ("quote", "escape"))
        });
        if let Some((first, _)) = clash {
            errors.push(ConfigError::at(
                format!("{at}.{name}"),
                format!(
                    "{:?} is the `{first}` character too: the two must differ",
                    char::from(c.0)
                ),
            ));
        }
    }
    errors
}

impl<'de> Deserialize<'de> for CsvChar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "tab" | "\\t" | "\t" => Ok(CsvChar(b'\t')),
            _ if s.len() == 1 && s.is_ascii() => Ok(CsvChar(s.as_bytes()[0])),
            _ => Err(serde::de::Error::custom(format!(
                "expected one ASCII character (or `tab`), found {s:?}"
            ))),
        }
    }
}

impl JsonSchema for CsvChar {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "CsvChar".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "One ASCII character, or `tab`.",
            "anyOf": [{"maxLength": 1, "minLength": 1}, {"const": "tab"}]
        })
    }
}

impl CsvSourceConfig {
    /// Every problem with the options as written; `at` is the source's config path.
    pub fn check(&self, at: &str) -> Vec<ConfigError> {
        let mut errors = super::check_text_source(
            &self.path,
            self.max_field_mib.as_ref(),
            self.max_record_mib.as_ref(),
            at,
        );
        if !self.has_header && self.columns.is_none() {
            errors.push(ConfigError::at(
                format!("{at}.has_header"),
                "`has_header: false` needs `columns:` to name the columns",
            ));
        }
        errors.extend(check_chars(
            &[
                ("delimiter", Some(self.delimiter)),
                ("quote", Some(self.quote)),
                ("escape", self.escape),
                ("comment", self.comment),
            ],
            at,
        ));
        errors
    }

    pub fn open(&self) -> Result<OpenedSource> {
        self.open_as(None)
    }

    /// [`CsvSourceConfig::open`] with the rows in [`crate::batch::Batch`]es where they can
    /// be (see `csv_columns`), runs of fewer than `min_rows` rows one by one.
    pub fn open_batches(&self, min_rows: usize) -> Result<OpenedSource> {
        self.open_as(Some(min_rows.max(1)))
    }

    fn open_as(&self, min_batch_rows: Option<usize>) -> Result<OpenedSource> {
        crate::config::checked(self.check("source.csv"))?;
        let files = files::expand(&self.path)?;
        let total = files::total_size(&files);
        let config = self.clone();
        Ok(OpenedSource::from_files(
            files,
            ProgressUnit::Bytes,
            total,
            move |path, done| {
                let mut reader = CsvFileReader::open(&config, path, done.clone())?;
                reader.columnar = min_batch_rows.is_some();
                reader.min_batch_rows = min_batch_rows.unwrap_or(usize::MAX);
                Ok(Box::new(reader) as SourceIter)
            },
        ))
    }
}

/// How the values of a column become JSON.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum ColumnType {
    /// Declared: a value that does not fit rejects the row.
    Declared(FieldType),
    /// Inferred from the first rows: a later value that does not fit is kept as it is.
    Inferred(Inferred),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Inferred {
    String,
    Int,
    Float,
    Bool,
}

type Parser = ::csv::Reader<Scanner<Box<dyn std::io::BufRead + Send>>>;

/// The CSV parser for `config`, reading through `scanner`.
fn parser(config: &CsvSourceConfig, scanner: Scanner<Box<dyn std::io::BufRead + Send>>) -> Parser {
    let mut builder = ::csv::ReaderBuilder::new();
    builder
        .has_headers(false)
        .flexible(true)
        .delimiter(config.delimiter.0)
        .quote(config.quote.0)
        .trim(if config.trim {
            ::csv::Trim::All
        } else {
            ::csv::Trim::None
        });
    if let Some(e) = config.escape {
        builder.escape(Some(e.0)).double_quote(false);
    }
    if let Some(c) = config.comment {
        builder.comment(Some(c.0));
    }
    builder.from_reader(scanner)
}

/// One CSV file being read.
struct CsvFileReader {
    reader: Parser,
    /// To read the file again after a quote never closed.
    config: CsvSourceConfig,
    path: std::path::PathBuf,
    dialect: Dialect,
    limits: SizeLimits,
    file: Arc<str>,
    columns: Arc<[String]>,
    types: Vec<ColumnType>,
    /// Rows read ahead for type inference.
    buffered: VecDeque<RawRow>,
    null_values: Vec<Vec<u8>>,
    row: u64,
    done: bool,
    /// Whether rows are read in batches.
    columnar: bool,
    /// Runs of fewer rows between two that cannot be columns are read one by one.
    min_batch_rows: usize,
    /// What a batch that could not be columns became, row by row.
    pending: VecDeque<Result<SourceItem>>,
}

/// Rows per batch of a columnar read.
const BATCH_ROWS: usize = 4096;
/// Fewer rows between two that cannot be columns are read one by one (by default).
pub const MIN_BATCH_ROWS: usize = 32;

/// A row as the parser gave it, with the line it starts on and what the scanner found
/// wrong with it.
struct RawRow {
    raw: ::csv::ByteRecord,
    line: u64,
    flag: Option<Flagged>,
}

/// The record with its last field cut at its first line end (a quote never closed
/// swallowed the rest of the file into it).
fn up_to_first_line_end(raw: &::csv::ByteRecord) -> ::csv::ByteRecord {
    let last = raw.len().saturating_sub(1);
    raw.iter()
        .enumerate()
        .map(|(i, field)| {
            if i < last {
                return field;
            }
            let end = field
                .iter()
                .position(|&b| b == b'\n')
                .unwrap_or(field.len());
            field[..end].strip_suffix(b"\r").unwrap_or(&field[..end])
        })
        .collect()
}

/// The column names of a header row.
fn header_names(header: &::csv::ByteRecord, file: &str) -> Result<Vec<String>> {
    header
        .iter()
        .enumerate()
        .map(|(i, field)| {
            std::str::from_utf8(field)
                .map(|name| name.trim().to_string())
                .map_err(|e| {
                    Error::input(
                        format!("{file}:1"),
                        format!("column {} of the header is not valid UTF-8: {e}", i + 1),
                    )
                })
        })
        .collect()
}

impl CsvFileReader {
    fn open(
        config: &CsvSourceConfig,
        path: &Path,
        counter: Arc<AtomicU64>,
    ) -> Result<CsvFileReader> {
        let input = files::open(path, counter)?;
        let file = files::display_name(path);
        let dialect = Dialect {
            delimiter: config.delimiter.0,
            quote: config.quote.0,
            escape: config.escape.map(|e| e.0),
            comment: config.comment.map(|c| c.0),
        };
        let limits = SizeLimits::from_mib(
            config.max_field_mib.as_ref(),
            config.max_record_mib.as_ref(),
        );
        let reader = parser(config, Scanner::new(input, dialect, limits));
        let mut this = CsvFileReader {
            reader,
            config: config.clone(),
            path: path.to_path_buf(),
            dialect,
            limits,
            file: file.clone(),
            types: Vec::new(),
            columns: Vec::new().into(),
            buffered: VecDeque::new(),
            null_values: config
                .null_values
                .iter()
                .map(|s| s.as_bytes().to_vec())
                .collect(),
            row: 0,
            done: false,
            columnar: false,
            min_batch_rows: usize::MAX,
            pending: VecDeque::new(),
        };

        let mut names: Vec<String> = Vec::new();
        if config.has_header {
            // An empty file has no header and no rows.
            if let Some(header) = this.read()? {
                if let Some(flag) = header.flag {
                    return Err(Error::input(
                        format!("{file}:{}", header.line),
                        format!("the header row: {}", flag.reason),
                    ));
                }
                names = header_names(&header.raw, &file)?;
            }
        }
        if let Some(columns) = &config.columns {
            names = columns.clone();
        }
        this.columns = unique_names(names, &file).into();
        for name in config.types.keys() {
            if !this.columns.contains(name) {
                return Err(Error::config(format!(
                    "{file}: `types` names column `{name}`, which the file does not have (columns: {})",
                    this.columns.join(", ")
                )));
            }
        }
        // Read ahead for inference.
        let mut samples: Vec<RawRow> = Vec::new();
        if config.infer_types {
            while samples.len() < config.infer_rows {
                let Some(row) = this.read()? else { break };
                samples.push(row);
            }
        }
        this.types = this
            .columns
            .iter()
            .enumerate()
            .map(|(i, name)| match config.types.get(name) {
                Some(t) => ColumnType::Declared(t.clone()),
                None if config.infer_types => ColumnType::Inferred(infer_column(
                    samples
                        .iter()
                        .filter(|r| r.flag.is_none() && r.raw.len() == this.columns.len())
                        .map(|r| &r.raw[i]),
                    &this.null_values,
                )),
                None => ColumnType::Inferred(Inferred::String),
            })
            .collect();
        this.buffered = samples.into();
        Ok(this)
    }

    /// Reads the file again from `resume` on (after a quote never closed), with a parser
    /// that starts afresh there.
    fn read_again_from(&mut self, resume: Resume) -> Result<()> {
        // Progress counted the file once already.
        let mut input = files::open(&self.path, Arc::new(AtomicU64::new(0)))?;
        std::io::copy(&mut (&mut input).take(resume.offset), &mut std::io::sink())
            .map_err(|e| Error::io(&self.path, e))?;
        let scanner = Scanner::from_line(input, self.dialect, self.limits, resume.line);
        self.reader = parser(&self.config, scanner);
        Ok(())
    }

    /// The next record from the parser, with its line and what the scanner found wrong.
    fn read(&mut self) -> Result<Option<RawRow>> {
        let mut raw = ::csv::ByteRecord::new();
        match self.reader.read_byte_record(&mut raw) {
            Ok(true) => {
                let (line, flag) = self.reader.get_mut().take_record();
                let line = line.unwrap_or_else(|| raw.position().map_or(0, |p| p.line()));
                if let Some(resume) = flag.as_ref().and_then(|f| f.resume) {
                    // The record ends with the quote's line: the rest is read again as rows.
                    raw = up_to_first_line_end(&raw);
                    self.read_again_from(resume)?;
                }
                Ok(Some(RawRow { raw, line, flag }))
            }
            Ok(false) => Ok(None),
            Err(e) => Err(Error::input(self.file.to_string(), e)),
        }
    }

    fn next_raw(&mut self) -> Result<Option<RawRow>> {
        match self.buffered.pop_front() {
            Some(r) => Ok(Some(r)),
            None => self.read(),
        }
    }

    fn convert(
        &self,
        raw: &::csv::ByteRecord,
        position: &Position,
    ) -> std::result::Result<Record, Box<Rejected>> {
        let reject = |reason: String| {
            Box::new(Rejected {
                position: position.clone(),
                record: Value::Array(
                    raw.iter()
                        .map(|f| Value::String(String::from_utf8_lossy(f).into_owned()))
                        .collect(),
                ),
                reason,
            })
        };
        if raw.len() != self.columns.len() {
            return Err(reject(format!(
                "row has {} fields, the header has {} columns",
                raw.len(),
                self.columns.len()
            )));
        }
        let mut record = Record::with_capacity(self.columns.len());
        for (i, field) in raw.iter().enumerate() {
            let name = &self.columns[i];
            let text = match std::str::from_utf8(field) {
                Ok(t) => t,
                Err(e) => {
                    return Err(reject(format!(
                        "column `{name}` is not valid UTF-8 (invalid byte at offset {} of the field)",
                        e.valid_up_to()
                    )));
                }
            };
            let value = if self.null_values.iter().any(|n| n.as_slice() == field) {
                Value::Null
            } else {
                match &self.types[i] {
                    ColumnType::Inferred(t) => inferred_value(text, *t),
                    ColumnType::Declared(FieldType::String) => Value::String(text.to_string()),
                    ColumnType::Declared(t) => cast(&Value::String(text.to_string()), t)
                        .map_err(|e| reject(format!("column `{name}`: {e}")))?,
                }
            };
            record.insert(name.clone(), value);
        }
        Ok(record)
    }
}

impl CsvFileReader {
    /// The item the row path makes of a raw row, the `row`th of the file.
    fn item(&self, raw: RawRow, row: u64) -> SourceItem {
        let RawRow { raw, line, flag } = raw;
        let position = Position {
            seq: 0,
            file: self.file.clone(),
            line: Some(line),
            row,
        };
        if let Some(flag) = flag {
            return SourceItem::Rejected(Rejected {
                position,
                record: Value::Array(raw.iter().map(preview).collect()),
                reason: flag.reason,
            });
        }
        match self.convert(&raw, &position) {
            Ok(record) => SourceItem::Record(record, position),
            Err(rejected) => SourceItem::Rejected(*rejected),
        }
    }

    /// Hands `raws` on in order (to `pending`): runs of rows that can be columns as
    /// batches, the others (and runs too short to be worth a batch) one by one, as the row
    /// path makes them.
    fn split_into_batches(&mut self, raws: Vec<RawRow>) {
        use super::csv_columns::{Unfit, build};
        let refs: Vec<&::csv::ByteRecord> = raws.iter().map(|r| &r.raw).collect();
        // The runs that are batches: first and end row, and the columns when built already.
        let mut cuts: Vec<(usize, usize, Option<RecordBatch>)> = Vec::new();
        let mut at = 0;
        while self.columnar && at < raws.len() {
            let flagged = raws[at..]
                .iter()
                .position(|r| r.flag.is_some())
                .map_or(raws.len(), |p| at + p);
            let (end, built) = match build(
                &self.columns,
                &self.types,
                &self.null_values,
                &refs[at..flagged],
            ) {
                Ok(columns) => (flagged, Some(columns)),
                Err(Unfit::Row(k)) => (at + k, None),
                Err(Unfit::File) => {
                    // Declared types, no columns: this file is read row by row.
                    self.columnar = false;
                    break;
                }
            };
            if end - at >= self.min_batch_rows {
                cuts.push((at, end, built));
            }
            // The row that cannot be a column (if any) is an item.
            at = end + 1;
        }
        let mut cuts = cuts.into_iter().peekable();
        let mut rows = raws.into_iter().enumerate().peekable();
        while let Some((i, raw)) = rows.next() {
            let Some((start, end, built)) = cuts.next_if(|(start, ..)| *start == i) else {
                self.row += 1;
                let item = self.item(raw, self.row);
                self.pending.push_back(Ok(item));
                continue;
            };
            let mut run = vec![raw];
            run.extend(std::iter::from_fn(|| {
                rows.next_if(|(j, _)| *j < end).map(|(_, r)| r)
            }));
            debug_assert_eq!(run.len(), end - start);
            let columns = built.map_or_else(
                || {
                    let run_refs: Vec<&::csv::ByteRecord> = run.iter().map(|r| &r.raw).collect();
                    build(&self.columns, &self.types, &self.null_values, &run_refs)
                },
                Ok,
            );
            match columns {
                Ok(columns) => {
                    let first = self.row + 1;
                    self.row += run.len() as u64;
                    self.pending
                        .push_back(Ok(SourceItem::Batch(crate::batch::Batch {
                            columns,
                            file: self.file.clone(),
                            lines: Some(run.iter().map(|r| r.line).collect()),
                            rows: (first..=self.row).collect(),
                            seqs: Vec::new(),
                        })));
                }
                // Built once already; rows one by one should it not be.
                Err(_) => {
                    for raw in run {
                        self.row += 1;
                        let item = self.item(raw, self.row);
                        self.pending.push_back(Ok(item));
                    }
                }
            }
        }
    }

    /// The next rows as a batch, or one by one where they cannot be columns.
    fn next_columnar(&mut self) -> Option<Result<SourceItem>> {
        if self.done {
            return None;
        }
        let mut raws = Vec::with_capacity(BATCH_ROWS);
        let mut failed = None;
        while raws.len() < BATCH_ROWS {
            match self.next_raw() {
                Ok(Some(r)) => raws.push(r),
                Ok(None) => {
                    self.done = true;
                    break;
                }
                Err(e) => {
                    self.done = true;
                    failed = Some(e);
                    break;
                }
            }
        }
        self.split_into_batches(raws);
        if let Some(e) = failed {
            self.pending.push_back(Err(e));
        }
        self.pending.pop_front()
    }
}

impl Iterator for CsvFileReader {
    type Item = Result<SourceItem>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(item) = self.pending.pop_front() {
            return Some(item);
        }
        if self.columnar {
            return self.next_columnar();
        }
        if self.done {
            return None;
        }
        let raw = match self.next_raw() {
            Ok(Some(r)) => r,
            Ok(None) => {
                self.done = true;
                return None;
            }
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        self.row += 1;
        Some(Ok(self.item(raw, self.row)))
    }
}

/// A field of a record the scanner flagged, for the dead-letter file: its first KiB (the
/// rest may be megabytes, or the rest of the file).
fn preview(field: &[u8]) -> Value {
    const KEEP: usize = 1024;
    let text = String::from_utf8_lossy(&field[..field.len().min(KEEP)]).into_owned();
    Value::String(if field.len() > KEEP {
        format!("{text}… ({} bytes in all)", field.len())
    } else {
        text
    })
}

/// Empty names become `column_N`; repeated names get `_2`, `_3`... so no column overwrites
/// another. Linear in the number of columns (a set of the names taken).
fn unique_names(names: Vec<String>, file: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    // The next suffix to try for a name, so repeated names do not retry from `_2`.
    let mut next_suffix: std::collections::HashMap<String, usize> = Default::default();
    for (i, name) in names.into_iter().enumerate() {
        let base = if name.is_empty() {
            format!("column_{}", i + 1)
        } else {
            name
        };
        let mut candidate = base.clone();
        if seen.contains(&base) {
            let n = next_suffix.entry(base.clone()).or_insert(2);
            loop {
                candidate = format!("{base}_{n}");
                *n += 1;
                if !seen.contains(&candidate) {
                    break;
                }
            }
        }
        seen.insert(candidate.clone());
        if candidate != base {
            tracing::warn!(
                "{file}: column {} is also named `{base}`; reading it as `{candidate}`",
                i + 1
            );
        }
        out.push(candidate);
    }
    out
}

fn infer_column<'a>(values: impl Iterator<Item = &'a [u8]>, nulls: &[Vec<u8>]) -> Inferred {
    let (mut int, mut float, mut boolean, mut any) = (true, true, true, false);
    for v in values {
        if nulls.iter().any(|n| n.as_slice() == v) {
            continue;
        }
        any = true;
        let Ok(text) = std::str::from_utf8(v) else {
            return Inferred::String;
        };
        int &= is_int(text);
        float &= is_float(text);
        boolean &= is_bool(text);
        if !(int || float || boolean) {
            return Inferred::String;
        }
    }
    match (any, int, float, boolean) {
        (false, ..) => Inferred::String,
        (_, true, _, _) => Inferred::Int,
        (_, _, true, _) => Inferred::Float,
        (_, _, _, true) => Inferred::Bool,
        _ => Inferred::String,
    }
}

/// `-?(0|[1-9][0-9]*)` within i64: no leading zeros (zip codes, ids stay strings).
pub(super) fn is_int(t: &str) -> bool {
    let d = t.strip_prefix('-').unwrap_or(t);
    !d.is_empty()
        && d.bytes().all(|b| b.is_ascii_digit())
        && !(d.len() > 1 && d.starts_with('0'))
        && t.parse::<i64>().is_ok()
}

/// An integer, or digits with a fraction and/or exponent, without leading zeros, that a
/// float holds without rounding: an integer beyond 64 bits or more than 17 significant digits
/// is not a float (such columns stay strings, so no digit is lost).
pub(super) fn is_float(t: &str) -> bool {
    if is_integer_literal(t) && t.parse::<i64>().is_err() {
        return false;
    }
    let mantissa = t.split(['e', 'E']).next().unwrap_or("");
    let significant = mantissa
        .bytes()
        .filter(u8::is_ascii_digit)
        .skip_while(|&b| b == b'0')
        .count();
    if significant > 17 {
        return false;
    }
    let d = t.strip_prefix('-').unwrap_or(t);
    let int_part = d.split(['.', 'e', 'E']).next().unwrap_or("");
    if int_part.is_empty()
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || (int_part.len() > 1 && int_part.starts_with('0'))
    {
        return false;
    }
    d.bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
        && t.parse::<f64>().is_ok_and(f64::is_finite)
}

fn is_bool(t: &str) -> bool {
    t.eq_ignore_ascii_case("true") || t.eq_ignore_ascii_case("false")
}

fn inferred_value(text: &str, t: Inferred) -> Value {
    match t {
        Inferred::String => Value::String(text.to_string()),
        Inferred::Int | Inferred::Float => {
            if is_int(text) {
                return Value::from(text.parse::<i64>().expect("checked by is_int"));
            }
            if is_float(text)
                && let Some(n) = text
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
            {
                return Value::Number(n);
            }
            Value::String(text.to_string())
        }
        Inferred::Bool => match text.to_ascii_lowercase().as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::String(text.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(path: &Path) -> CsvSourceConfig {
        serde_json::from_value(json!({"path": path.to_str().unwrap()})).unwrap()
    }

    fn read_all(config: &CsvSourceConfig) -> Vec<SourceItem> {
        config.open().unwrap().items.map(|i| i.unwrap()).collect()
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn reads_bom_quotes_multiline_and_unicode_with_inferred_types() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "u.csv",
            "\u{feff}id,name,zip,score,active,note\n1,Zoë,02139,1.5,true,\"line one\nline two\"\n2,李,10001,2,false,\"say \"\"hi\"\"\"\n"
                .as_bytes(),
        );
        let items = read_all(&config(&p));
        assert_eq!(items.len(), 2);
        let SourceItem::Record(r, pos) = &items[0] else {
            panic!("{:?}", items[0])
        };
        assert_eq!(
            Value::Object(r.clone()),
            json!({"id": 1, "name": "Zoë", "zip": "02139", "score": 1.5, "active": true, "note": "line one\nline two"})
        );
        assert_eq!((pos.line, pos.row), (Some(2), 1));
        let SourceItem::Record(r, pos) = &items[1] else {
            panic!()
        };
        assert_eq!(r["score"], json!(2));
        assert_eq!(r["note"], json!("say \"hi\""));
        assert_eq!(
            pos.line,
            Some(4),
            "the second record starts after the two-line field"
        );
    }

    #[test]
    fn ragged_rows_and_bad_utf8_are_rejected_with_their_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "r.csv", b"a,b\n1,2\n3,4,5\n6,\xff\n7,8\n");
        let items = read_all(&config(&p));
        let summary: Vec<String> = items
            .iter()
            .map(|i| match i {
                SourceItem::Record(r, p) => format!("ok {} {}", p.line.unwrap(), r["a"]),
                SourceItem::Rejected(r) => format!("bad {} {}", r.position.line.unwrap(), r.reason),
                SourceItem::Batch(_) => unreachable!("a source opened for rows gives no batch"),
            })
            .collect();
        assert_eq!(
            summary,
            [
                "ok 2 1",
                "bad 3 row has 3 fields, the header has 2 columns",
                "bad 4 column `b` is not valid UTF-8 (invalid byte at offset 0 of the field)",
                "ok 5 7",
            ]
        );
        let SourceItem::Rejected(r) = &items[1] else {
            panic!()
        };
        assert_eq!(r.record, json!(["3", "4", "5"]));
    }

    #[test]
    fn declared_types_reject_values_that_do_not_fit() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "t.csv",
            b"id;seats;at\n1;3;2024-01-02 10:00:00\n2;many;\n",
        );
        let mut c = config(&p);
        c.delimiter = CsvChar(b';');
        c.types.insert("seats".into(), FieldType::Int);
        c.types.insert("at".into(), FieldType::Timestamp);
        let items = read_all(&c);
        let SourceItem::Record(r, _) = &items[0] else {
            panic!()
        };
        assert_eq!(r["at"], json!("2024-01-02T10:00:00.000Z"));
        let SourceItem::Rejected(bad) = &items[1] else {
            panic!()
        };
        assert_eq!(
            bad.reason,
            "column `seats`: cannot cast string \"many\" to int"
        );
    }

    #[test]
    fn values_after_the_inference_window_are_kept_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "w.csv", b"n\n1\n2\nthree\n");
        let mut c = config(&p);
        c.infer_rows = 2;
        let values: Vec<Value> = read_all(&c)
            .into_iter()
            .map(|i| match i {
                SourceItem::Record(r, _) => r["n"].clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(values, [json!(1), json!(2), json!("three")]);
    }

    #[test]
    fn duplicate_and_empty_header_names_are_made_unique() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "d.csv", b"email,,email\na,b,c\n");
        let items = read_all(&config(&p));
        let SourceItem::Record(r, _) = &items[0] else {
            panic!()
        };
        assert_eq!(
            Value::Object(r.clone()),
            json!({"email": "a", "column_2": "b", "email_2": "c"})
        );
    }

    #[test]
    fn reads_several_files_by_glob() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "p1.csv", b"x\n1\n");
        write(dir.path(), "p2.csv", b"x\n2\n3\n");
        let c = config(&dir.path().join("p*.csv"));
        let opened = c.open().unwrap();
        assert_eq!(opened.files.len(), 2);
        let rows: Vec<(String, u64)> = opened
            .items
            .map(|i| match i.unwrap() {
                SourceItem::Record(_, p) => (p.file.rsplit('/').next().unwrap().to_string(), p.row),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("p1.csv".into(), 1),
                ("p2.csv".into(), 1),
                ("p2.csv".into(), 2)
            ]
        );
    }

    #[test]
    fn a_quote_never_closed_is_rejected_and_reading_goes_on_in_gzip_files_too() {
        let dir = tempfile::tempdir().unwrap();
        let text = b"\xef\xbb\xbfid,n\n1,\"a\r\n2,3\r\n4,\"\"\n";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, text).unwrap();
        for p in [
            write(dir.path(), "q.csv", text),
            write(dir.path(), "q.csv.gz", &gz.finish().unwrap()),
        ] {
            let got: Vec<String> = read_all(&config(&p))
                .iter()
                .map(|i| match i {
                    SourceItem::Record(r, p) => {
                        format!("ok {} {}", p.line.unwrap(), Value::Object(r.clone()))
                    }
                    SourceItem::Rejected(r) => {
                        format!("bad {} {} {}", r.position.line.unwrap(), r.record, r.reason)
                    }
                    SourceItem::Batch(_) => unreachable!("a source opened for rows gives no batch"),
                })
                .collect();
            assert_eq!(
                got,
                [
                    "bad 2 [\"1\",\"a\"] quote opened on line 2 never closed; the record ends with that line and reading goes on from line 3",
                    "ok 3 {\"id\":2,\"n\":3}",
                    "ok 4 {\"id\":4,\"n\":null}",
                ],
                "{}",
                p.display()
            );
        }
    }

    #[test]
    fn big_integers_and_long_decimals_are_not_inferred_as_floats() {
        assert!(!is_float("12345678901234567890123") && !is_float("18446744073709551617"));
        assert!(!is_float("0.123456789012345678901") && is_float("0.12345678901234567"));
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "b.csv", b"a,b\n1,99999999999999999999\n2,3\n");
        let values: Vec<Value> = read_all(&config(&p))
            .into_iter()
            .map(|i| match i {
                SourceItem::Record(r, _) => Value::Object(r),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            values,
            [
                json!({"a": 1, "b": "99999999999999999999"}),
                json!({"a": 2, "b": "3"})
            ]
        );
    }

    #[test]
    fn inference_keeps_ids_with_leading_zeros_as_strings() {
        assert!(is_int("0") && is_int("-12") && !is_int("007") && !is_int("1.0"));
        assert!(
            is_float("1.5")
                && is_float("2")
                && is_float("1e3")
                && !is_float("01.5")
                && !is_float("inf")
        );
    }

    /// Read in batches, a file gives the items a row read gives; a row that cannot be a
    /// column value (text in an int column after the inference window, a ragged row) is
    /// an item of its own between two batches.
    #[test]
    fn batches_split_around_rows_that_cannot_be_columns() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from("id,score,ok\n");
        for i in 0..100 {
            match i {
                40 => text.push_str("x40,1.5,true\n"),
                41 => text.push_str("41,2\n"),
                70 => text.push_str("70,7,maybe\n"),
                _ => text.push_str(&format!("{i},{i}.5,{}\n", i % 2 == 0)),
            }
        }
        let p = write(dir.path(), "s.csv", text.as_bytes());
        let mut c = config(&p);
        c.infer_rows = 10;
        let lines = |opened: OpenedSource| -> (Vec<String>, Vec<usize>) {
            let mut lines = Vec::new();
            let mut batches = Vec::new();
            for item in opened.items {
                match item.unwrap() {
                    SourceItem::Record(r, p) => lines.push(format!("{p:?} {r:?}")),
                    SourceItem::Batch(b) => {
                        batches.push(b.len());
                        for (r, p) in b.to_rows() {
                            lines.push(format!("{p:?} {r:?}"));
                        }
                    }
                    SourceItem::Rejected(r) => lines.push(format!("{r:?}")),
                }
            }
            (lines, batches)
        };
        let (rows, _) = lines(c.open().unwrap());
        let (columns, batches) = lines(c.open_batches(1).unwrap());
        assert_eq!(columns, rows);
        assert_eq!(batches, [40, 28, 29]);
        let (_, batches) = lines(c.open_batches(30).unwrap());
        assert_eq!(batches, [40]);
    }
}
