//! `dedupe`: lets the first record with each key through and drops later ones.
//!
//! Keys are remembered as 128-bit hashes (16 bytes each), so a million distinct keys cost
//! about 32 MB; two different keys share a hash with odds around 1 in 10^29.

use std::collections::HashSet;

use schemars::JsonSchema;
use serde::Deserialize;

use arrow::array::BooleanArray;

use super::{BatchOutput, Rejection, Transform};
use crate::batch::{Batch, value_at};
use crate::record::{FieldPath, Record, Value};

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DedupeConfig {
    /// The field (or fields) that identify a record.
    pub key: KeyFields,
}

/// One field or a list of fields.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum KeyFields {
    One(FieldPath),
    Many(Vec<FieldPath>),
}

impl KeyFields {
    pub fn fields(&self) -> &[FieldPath] {
        match self {
            KeyFields::One(f) => std::slice::from_ref(f),
            KeyFields::Many(fs) => fs,
        }
    }
}

pub struct Dedupe {
    fields: Vec<FieldPath>,
    seen: HashSet<u128>,
    buffer: Vec<u8>,
}

impl Dedupe {
    pub fn new(config: &DedupeConfig) -> Dedupe {
        Dedupe {
            fields: config.key.fields().to_vec(),
            seen: HashSet::new(),
            buffer: Vec::new(),
        }
    }
}

/// The hash of a record's key values (canonical JSON text, each followed by a byte JSON
/// never contains, written into `buffer`); `None` when every one is null or missing: records
/// without a key are not duplicates of each other.
fn key<'a>(buffer: &mut Vec<u8>, values: impl Iterator<Item = &'a Value>) -> Option<u128> {
    buffer.clear();
    let mut any = false;
    for value in values {
        any |= !value.is_null();
        serde_json::to_writer(&mut *buffer, value).expect("writing to memory");
        buffer.push(0xff);
    }
    any.then(|| xxhash_rust::xxh3::xxh3_128(buffer))
}

impl Transform for Dedupe {
    fn apply(&mut self, record: Record, out: &mut Vec<Record>) -> Result<(), Rejection> {
        let values = self
            .fields
            .iter()
            .map(|f| f.get(&record).unwrap_or(&Value::Null));
        if key(&mut self.buffer, values).is_none_or(|k| self.seen.insert(k)) {
            out.push(record);
        }
        Ok(())
    }

    /// The same keys read off the key columns; the keys are remembered only once the batch
    /// is through, so a batch that falls back to rows is not counted twice.
    fn apply_batch(&mut self, batch: &Batch) -> Option<BatchOutput> {
        let columns = super::columns::field_columns(&batch.columns, &self.fields)?;
        let mut new = HashSet::new();
        let mut keep = Vec::with_capacity(batch.len());
        for i in 0..batch.len() {
            let values: Vec<Value> = columns
                .iter()
                .map(|c| c.as_ref().map_or(Value::Null, |c| value_at(c, i)))
                .collect();
            keep.push(match key(&mut self.buffer, values.iter()) {
                None => true,
                Some(k) => !self.seen.contains(&k) && new.insert(k),
            });
        }
        let out = batch.filter(&BooleanArray::from(keep)).ok()?;
        self.seen.extend(new);
        Some(out.into())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{apply, stage};
    use serde_json::json;

    #[test]
    fn keeps_the_first_of_each_key() {
        let mut s = stage(json!({"dedupe": {"key": "userId"}}));
        let (out, _) = apply(
            &mut *s,
            vec![
                json!({"userId": "a", "n": 1}),
                json!({"userId": "b", "n": 2}),
                json!({"userId": "a", "n": 3}),
                json!({"n": 4}),
                json!({"n": 5}),
            ],
        );
        let ns: Vec<_> = out.iter().map(|r| r["n"].as_i64().unwrap()).collect();
        assert_eq!(ns, [1, 2, 4, 5]);
    }

    #[test]
    fn compound_keys_distinguish_types() {
        let mut s = stage(json!({"dedupe": {"key": ["a", "b"]}}));
        let (out, _) = apply(
            &mut *s,
            vec![
                json!({"a": 1, "b": 2}),
                json!({"a": "1", "b": 2}),
                json!({"a": 1, "b": 2}),
                json!({"a": 1, "b": 3}),
            ],
        );
        assert_eq!(out.len(), 3);
    }
}
