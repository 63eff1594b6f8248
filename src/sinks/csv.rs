//! CSV sink. Nested objects become dotted columns (`customData.plan`), lists are written as
//! JSON text, null as an empty field. The columns are the declared ones, or those seen in the
//! first `infer_rows` records; a later record with a field outside them goes to the
//! dead-letter file rather than losing that field.

use std::collections::HashSet;

use indexmap::IndexSet;
use schemars::JsonSchema;
use serde::Deserialize;

use super::output::{PendingOutput, TextOutput};
use super::{Sink, SinkContext, SinkSummary};
use crate::error::{Error, Result};
use crate::record::{Position, Record, Value};
use crate::sources::csv::CsvChar;

/// Writes delimited text with a header row.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CsvSinkConfig {
    /// The output file; a name ending in `.gz` is gzip-compressed.
    pub path: String,
    /// The field delimiter. Default `,`.
    #[serde(default = "CsvChar::comma")]
    pub delimiter: CsvChar,
    /// Write a header row. Default `true`.
    #[serde(default = "yes")]
    pub header: bool,
    /// The columns, in order (dotted names reach into nested objects). Default: every field
    /// of the first `infer_rows` records, in the order first seen.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// How many records to look at for the columns when they are not declared. Default 1000.
    #[serde(default = "default_infer_rows")]
    pub infer_rows: usize,
}

fn yes() -> bool {
    true
}

fn default_infer_rows() -> usize {
    1000
}

impl CsvSinkConfig {
    /// Every problem with the options as written; `at` is the sink's config path.
    pub fn check(&self, at: &str) -> Vec<crate::config::ConfigError> {
        let mut errors = super::output::check_path(&self.path, at);
        errors.extend(crate::sources::csv::check_chars(
            &[("delimiter", Some(self.delimiter))],
            at,
        ));
        if let Some(columns) = &self.columns {
            if columns.is_empty() {
                errors.push(crate::config::ConfigError::at(
                    format!("{at}.columns"),
                    "an empty list writes no column: leave `columns` out to take the fields of the records",
                ));
            }
            errors.extend(crate::config::repeated_names(
                columns,
                &format!("{at}.columns"),
            ));
        }
        errors
    }

    pub fn build(&self, context: SinkContext) -> Result<CsvSink> {
        crate::config::checked(self.check("sink.csv"))?;
        let (file, pending) = PendingOutput::create(self.path.as_ref())?;
        let out = TextOutput::new(file, pending.final_path());
        let writer = ::csv::WriterBuilder::new()
            .delimiter(self.delimiter.0)
            .from_writer(out);
        Ok(CsvSink {
            config: self.clone(),
            context,
            writer: Some(writer),
            pending,
            columns: self.columns.clone().map(|c| c.into_iter().collect()),
            sample: Vec::new(),
            fixed: false,
            written: 0,
            rejected: 0,
            fields: Vec::new(),
        })
    }
}

pub struct CsvSink {
    config: CsvSinkConfig,
    context: SinkContext,
    writer: Option<::csv::Writer<TextOutput>>,
    pending: PendingOutput,
    /// Fixed once declared or inferred.
    columns: Option<IndexSet<String>>,
    /// Records held until the columns are known.
    sample: Vec<(Record, Position)>,
    /// Whether the columns are fixed and the header written.
    fixed: bool,
    written: u64,
    rejected: u64,
    fields: Vec<(String, String)>,
}

impl CsvSink {
    fn io_error(&self, e: impl std::fmt::Display) -> Error {
        Error::output(self.pending.temp_path(), e)
    }

    fn fix_columns(&mut self) -> Result<()> {
        if self.columns.is_none() {
            let mut columns = IndexSet::new();
            for (record, _) in &self.sample {
                flatten_into(record, "", &mut |name, _| {
                    columns.insert(name.to_string());
                });
            }
            self.columns = Some(columns);
        }
        self.fixed = true;
        if self.config.header {
            let columns = self.columns.as_ref().expect("set above");
            let writer = self.writer.as_mut().expect("open until finish");
            writer
                .write_record(columns.iter())
                .map_err(|e| Error::output(self.pending.temp_path(), e))?;
        }
        for (record, position) in std::mem::take(&mut self.sample) {
            self.write_row(record, position)?;
        }
        Ok(())
    }

    fn write_row(&mut self, record: Record, position: Position) -> Result<()> {
        let columns = self
            .columns
            .as_ref()
            .expect("fixed before rows are written");
        self.fields.clear();
        let mut unknown: Vec<String> = Vec::new();
        let fields = &mut self.fields;
        flatten_into(&record, "", &mut |name, text| {
            if columns.contains(name) {
                fields.push((name.to_string(), text));
            } else if !text.is_empty() {
                unknown.push(name.to_string());
            }
        });
        if !unknown.is_empty() {
            self.rejected += 1;
            let reason = format!(
                "field{} {} not among the CSV columns (taken from the first {} records); list {} in `columns:`",
                if unknown.len() > 1 { "s" } else { "" },
                unknown
                    .iter()
                    .map(|u| format!("`{u}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                self.config.infer_rows,
                if unknown.len() > 1 { "them" } else { "it" },
            );
            return self.context.reject(&position, reason, record);
        }
        let mut row: Vec<&str> = vec![""; columns.len()];
        for (name, text) in &self.fields {
            if let Some(i) = columns.get_index_of(name.as_str()) {
                row[i] = text;
            }
        }
        let writer = self.writer.as_mut().expect("open until finish");
        writer
            .write_record(&row)
            .map_err(|e| Error::output(self.pending.temp_path(), e))?;
        self.written += 1;
        Ok(())
    }
}

/// Calls `f(column, text)` for every leaf of the record: nested objects by dotted names.
fn flatten_into(record: &Record, prefix: &str, f: &mut dyn FnMut(&str, String)) {
    for (key, value) in record {
        let name = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Object(inner) if !inner.is_empty() => flatten_into(inner, &name, f),
            Value::Null => f(&name, String::new()),
            Value::String(s) => f(&name, s.clone()),
            other => f(&name, other.to_string()),
        }
    }
}

impl Sink for CsvSink {
    fn write(&mut self, record: Record, position: Position) -> Result<()> {
        if self.fixed {
            return self.write_row(record, position);
        }
        self.sample.push((record, position));
        if self.columns.is_some() || self.sample.len() >= self.config.infer_rows.max(1) {
            self.fix_columns()?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<SinkSummary> {
        if !self.fixed {
            self.fix_columns()?;
        }
        let writer = self.writer.take().expect("open until finish");
        let out = writer.into_inner().map_err(|e| self.io_error(e.error()))?;
        let file = out.finish().map_err(|e| self.io_error(e))?;
        let this = *self;
        let path = this.pending.final_path().to_path_buf();
        let bytes = this.pending.commit(file)?;
        let columns: HashSet<_> = this.columns.unwrap_or_default().into_iter().collect();
        Ok(SinkSummary {
            written: this.written,
            rejected: this.rejected,
            path: Some(path),
            bytes: Some(bytes),
            detail: Some(serde_json::json!({ "columns": columns.len() })),
        })
    }

    fn abort(self: Box<Self>) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dead_letter::DeadLetters;
    use serde_json::json;

    fn run(config: CsvSinkConfig, records: Vec<Value>) -> (String, DeadLetters) {
        let dl = DeadLetters::in_memory(None);
        let ctx = SinkContext::new("s", dl.clone());
        let path = config.path.clone();
        let mut sink: Box<dyn Sink> = Box::new(config.build(ctx).unwrap());
        for (i, r) in records.into_iter().enumerate() {
            let pos = Position {
                seq: 0,
                file: "in".into(),
                line: None,
                row: i as u64 + 1,
            };
            sink.write(r.as_object().unwrap().clone(), pos).unwrap();
        }
        sink.finish().unwrap();
        (std::fs::read_to_string(path).unwrap(), dl)
    }

    fn config(dir: &std::path::Path, infer_rows: usize) -> CsvSinkConfig {
        serde_json::from_value(
            json!({"path": dir.join("o.csv").to_str().unwrap(), "infer_rows": infer_rows}),
        )
        .unwrap()
    }

    #[test]
    fn flattens_nested_fields_and_quotes() {
        let dir = tempfile::tempdir().unwrap();
        let (text, _) = run(
            config(dir.path(), 10),
            vec![
                json!({"id": 1, "customData": {"plan": "pro"}, "tags": ["a", "b"], "note": "x, \"y\""}),
                json!({"id": 2, "customData": {"plan": null}, "note": null}),
            ],
        );
        assert_eq!(
            text,
            "id,customData.plan,tags,note\n1,pro,\"[\"\"a\"\",\"\"b\"\"]\",\"x, \"\"y\"\"\"\n2,,,\n"
        );
    }

    #[test]
    fn fields_outside_the_inferred_columns_are_dead_lettered() {
        let dir = tempfile::tempdir().unwrap();
        let (text, dl) = run(
            config(dir.path(), 1),
            vec![json!({"a": 1}), json!({"a": 2, "b": 3}), json!({"a": 4})],
        );
        assert_eq!(text, "a\n1\n4\n");
        let letters = dl.take();
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].row, 2);
        assert!(
            letters[0]
                .reason
                .contains("field `b` not among the CSV columns"),
            "{}",
            letters[0].reason
        );
    }

    #[test]
    fn an_empty_stream_writes_a_header_only_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(dir.path(), 10);
        c.columns = Some(vec!["x".into(), "y".into()]);
        let (text, _) = run(c, vec![]);
        assert_eq!(text, "x,y\n");
    }
}
