//! `lookup`: joins each record against a table read from a file (CSV, Parquet or JSON lines)
//! by key, for id and value mappings. The table is read whole when the stream starts; a row
//! the table's source cannot read (a dump's user without an id, a truncated line) is skipped
//! and kept for the stream to dead-letter, so one bad row does not stop the stream.
//!
//! Keys match by text, so the number `42` in a record finds the row whose key column holds
//! `"42"` or `42`.

use std::collections::HashMap;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Rejection, Transform};
use crate::error::{Error, Result};
use crate::record::{FieldPath, Record, Value};
use crate::sources::{Rejected, SourceConfig, SourceItem};

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupConfig {
    /// The table, as a source: `{csv: {path: ...}}`, `{parquet: {path: ...}}` or
    /// `{jsonl: {path: ...}}`.
    pub table: SourceConfig,
    /// The record field whose value is looked up.
    pub on: FieldPath,
    /// The table column matched against it. Default: the column named like `on`.
    #[serde(default)]
    pub key: Option<String>,
    /// Fields to set from the matching row, `record field: table column`. Default: every
    /// column but the key, under its own name.
    #[serde(default)]
    pub fields: Option<IndexMap<FieldPath, String>>,
    /// When no row matches: `keep` the record as it is (default), set the fields to `null`,
    /// `drop` the record, or `reject` it to the dead-letter file.
    #[serde(default)]
    pub missing: Missing,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Missing {
    #[default]
    Keep,
    Null,
    Drop,
    Reject,
}

impl LookupConfig {
    /// Every problem with the options as written; `at` is the stage's config path. The
    /// table is read from files: an API source cannot be one.
    pub fn check(&self, at: &str) -> Vec<crate::config::ConfigError> {
        let table = format!("{at}.table");
        if self.table.reads_gleap() {
            return vec![crate::config::ConfigError::at(
                format!("{table}.gleap"),
                "a lookup table is read from files; the gleap source reads through the API during a run",
            )];
        }
        let mut errors = self.table.check(&table);
        if self.key.as_deref().is_some_and(|k| k.trim().is_empty()) {
            errors.push(crate::config::ConfigError::at(
                format!("{at}.key"),
                "an empty column name matches nothing",
            ));
        }
        errors
    }

    pub fn key_column(&self) -> String {
        self.key
            .clone()
            .unwrap_or_else(|| self.on.as_str().to_string())
    }

    /// Reads the table into memory.
    pub fn build(&self) -> Result<Lookup> {
        let key_column = self.key_column();
        let opened = self.table.open()?;
        let mut rows: HashMap<String, Record> = HashMap::new();
        let mut duplicates = 0u64;
        let mut skipped_rows = Vec::new();
        let mut add = |mut row: Record, position: crate::record::Position| -> Result<()> {
            let Some(key) = row.get(&key_column).and_then(key_text) else {
                if !row.contains_key(&key_column) {
                    let columns: Vec<&str> = row.keys().map(String::as_str).collect();
                    return Err(Error::input(
                        position.to_string(),
                        format!(
                            "lookup table has no column `{key_column}` (columns: {})",
                            columns.join(", ")
                        ),
                    ));
                }
                return Ok(());
            };
            row.shift_remove(&key_column);
            match rows.entry(key) {
                std::collections::hash_map::Entry::Occupied(_) => duplicates += 1,
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(row);
                }
            }
            Ok(())
        };
        for item in opened.items {
            match item? {
                SourceItem::Record(row, position) => add(row, position)?,
                SourceItem::Batch(batch) => {
                    for (row, position) in batch.to_rows() {
                        add(row, position)?;
                    }
                }
                SourceItem::Rejected(r) => skipped_rows.push(r),
            }
        }
        let files = || {
            opened
                .files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if duplicates > 0 {
            tracing::warn!(
                "lookup table {}: {duplicates} rows repeat a key already seen; the first row with each key is used",
                files()
            );
        }
        let fields = match &self.fields {
            Some(f) => f
                .iter()
                .map(|(to, from)| (to.clone(), from.clone()))
                .collect(),
            None => {
                let mut columns: Vec<String> = Vec::new();
                for row in rows.values() {
                    for k in row.keys() {
                        if !columns.contains(k) {
                            columns.push(k.clone());
                        }
                    }
                }
                columns
                    .into_iter()
                    .map(|c| FieldPath::parse(&c).map(|p| (p, c)))
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| Error::input(files(), format!("lookup table: {e}")))?
            }
        };
        Ok(Lookup {
            on: self.on.clone(),
            rows,
            fields,
            missing: self.missing,
            skipped_rows,
        })
    }
}

/// The text a key value matches by; null and missing keys match nothing.
fn key_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

pub struct Lookup {
    on: FieldPath,
    rows: HashMap<String, Record>,
    fields: Vec<(FieldPath, String)>,
    missing: Missing,
    /// Rows of the table its source could not read, not yet handed to the stream.
    skipped_rows: Vec<Rejected>,
}

impl Transform for Lookup {
    fn apply(&mut self, mut record: Record, out: &mut Vec<Record>) -> Result<(), Rejection> {
        let key = self.on.get(&record).and_then(key_text);
        let row = key.as_ref().and_then(|k| self.rows.get(k));
        let result = match (row, self.missing) {
            (Some(row), _) => self.fields.iter().try_for_each(|(to, column)| {
                to.set(&mut record, row.get(column).cloned().unwrap_or(Value::Null))
            }),
            (None, Missing::Keep) => Ok(()),
            (None, Missing::Null) => self
                .fields
                .iter()
                .try_for_each(|(to, _)| to.set(&mut record, Value::Null)),
            (None, Missing::Drop) => return Ok(()),
            (None, Missing::Reject) => {
                let reason = match key {
                    Some(k) => format!("lookup: no row has `{}` = {k:?}", self.on),
                    None => format!("lookup: the record has no `{}`", self.on),
                };
                return Err(Rejection::new(reason, record));
            }
        };
        if let Err(e) = result {
            return Err(Rejection::new(format!("lookup: {e}"), record));
        }
        out.push(record);
        Ok(())
    }

    fn take_skipped_rows(&mut self) -> Vec<Rejected> {
        std::mem::take(&mut self.skipped_rows)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{apply, stage};
    use serde_json::json;

    #[test]
    fn joins_by_key_with_each_missing_policy() {
        let dir = tempfile::tempdir().unwrap();
        let table = dir.path().join("plans.csv");
        std::fs::write(&table, "code,name,price\n1,Free,0\n2,Pro,20\n2,Dup,99\n").unwrap();
        let table = table.to_str().unwrap();

        let mut s = stage(json!({"lookup": {
            "table": {"csv": {"path": table}}, "on": "plan", "key": "code",
            "fields": {"customData.planName": "name"}, "missing": "reject"}}));
        let (out, reasons) = apply(
            &mut *s,
            vec![
                json!({"plan": 2}),
                json!({"plan": "1"}),
                json!({"plan": 3}),
                json!({}),
            ],
        );
        assert_eq!(
            out,
            [
                json!({"plan": 2, "customData": {"planName": "Pro"}}),
                json!({"plan": "1", "customData": {"planName": "Free"}})
            ]
        );
        assert_eq!(
            reasons,
            [
                "lookup: no row has `plan` = \"3\"",
                "lookup: the record has no `plan`"
            ]
        );

        let mut s = stage(json!({"lookup": {"table": {"csv": {"path": table}}, "on": "code"}}));
        let (out, _) = apply(&mut *s, vec![json!({"code": 1}), json!({"code": 9})]);
        assert_eq!(
            out,
            [
                json!({"code": 1, "name": "Free", "price": 0}),
                json!({"code": 9})
            ]
        );

        let mut s = stage(
            json!({"lookup": {"table": {"csv": {"path": table}}, "on": "code", "missing": "drop"}}),
        );
        let (out, _) = apply(&mut *s, vec![json!({"code": 9})]);
        assert!(out.is_empty());
    }

    #[test]
    fn unreadable_table_rows_are_skipped_and_handed_over_once() {
        let dir = tempfile::tempdir().unwrap();
        let table = dir.path().join("plans.jsonl");
        std::fs::write(
            &table,
            "{\"code\": 1, \"name\": \"Free\"}\n{\"code\": 2, \"na\n{\"code\": 3, \"name\": \"Team\"}\n",
        )
        .unwrap();
        let config: super::LookupConfig = serde_json::from_value(
            json!({"table": {"jsonl": {"path": table.to_str().unwrap()}}, "on": "code"}),
        )
        .unwrap();
        let mut lookup = config.build().expect("a bad row does not fail the table");
        let (out, _) = apply(&mut lookup, vec![json!({"code": 3}), json!({"code": 2})]);
        assert_eq!(
            out,
            [json!({"code": 3, "name": "Team"}), json!({"code": 2})]
        );
        let skipped = super::Transform::take_skipped_rows(&mut lookup);
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].position.line, Some(2));
        assert!(super::Transform::take_skipped_rows(&mut lookup).is_empty());
    }

    #[test]
    fn a_table_without_the_key_column_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let table = dir.path().join("t.csv");
        std::fs::write(&table, "a,b\n1,2\n").unwrap();
        let config: super::super::TransformConfig = serde_json::from_value(
            json!({"lookup": {"table": {"csv": {"path": table.to_str().unwrap()}}, "on": "id"}}),
        )
        .unwrap();
        let err = config.build().err().unwrap().to_string();
        assert!(err.contains("no column `id` (columns: a, b)"), "{err}");
    }
}
