//! Field stages without jq: `rename`, `cast`, `default`, `drop` and `keep`.

use indexmap::IndexMap;

use super::{BatchOutput, Rejection, Transform, columns};
use crate::batch::Batch;
use crate::record::{FieldPath, FieldType, Record, Value, cast};

/// Renames fields; a top-level field keeps its place among the others.
pub struct Rename {
    pairs: Vec<(FieldPath, FieldPath)>,
}

impl Rename {
    pub fn new(pairs: &IndexMap<FieldPath, FieldPath>) -> Rename {
        Rename {
            pairs: pairs.iter().map(|(a, b)| (a.clone(), b.clone())).collect(),
        }
    }
}

impl Transform for Rename {
    fn apply_batch(&mut self, batch: &Batch) -> Option<BatchOutput> {
        columns::rename(&self.pairs, batch).map(Into::into)
    }

    fn apply(&mut self, mut record: Record, out: &mut Vec<Record>) -> Result<(), Rejection> {
        for (from, to) in &self.pairs {
            if !from.is_nested() && !to.is_nested() && !record.contains_key(to.as_str()) {
                if let Some(index) = record.keys().position(|k| k == from.as_str()) {
                    let value = record.shift_remove(from.as_str()).expect("found above");
                    record.shift_insert(index, to.as_str().to_string(), value);
                }
                continue;
            }
            if let Some(value) = from.remove(&mut record)
                && let Err(e) = to.set(&mut record, value)
            {
                return Err(Rejection::new(
                    format!("rename `{from}` to `{to}`: {e}"),
                    record,
                ));
            }
        }
        out.push(record);
        Ok(())
    }
}

/// Converts fields to types; a value that does not convert rejects the record unchanged.
pub struct Cast {
    types: Vec<(FieldPath, FieldType)>,
}

impl Cast {
    pub fn new(types: &IndexMap<FieldPath, FieldType>) -> Cast {
        Cast {
            types: types.iter().map(|(a, b)| (a.clone(), b.clone())).collect(),
        }
    }
}

impl Transform for Cast {
    fn apply_batch(&mut self, batch: &Batch) -> Option<BatchOutput> {
        columns::cast_columns(&self.types, batch)
    }

    fn apply(&mut self, mut record: Record, out: &mut Vec<Record>) -> Result<(), Rejection> {
        let mut converted = Vec::with_capacity(self.types.len());
        for (i, (field, ty)) in self.types.iter().enumerate() {
            if let Some(value) = field.get(&record) {
                match cast(value, ty) {
                    Ok(v) => converted.push((i, v)),
                    Err(e) => return Err(Rejection::new(format!("field `{field}`: {e}"), record)),
                }
            }
        }
        for (i, value) in converted {
            if let Some(slot) = self.types[i].0.get_mut(&mut record) {
                *slot = value;
            }
        }
        out.push(record);
        Ok(())
    }
}

/// Fills fields that are missing or null.
pub struct Defaults {
    values: Vec<(FieldPath, Value)>,
}

impl Defaults {
    pub fn new(values: &IndexMap<FieldPath, Value>) -> Defaults {
        Defaults {
            values: values.iter().map(|(a, b)| (a.clone(), b.clone())).collect(),
        }
    }
}

impl Transform for Defaults {
    fn apply_batch(&mut self, batch: &Batch) -> Option<BatchOutput> {
        columns::default(&self.values, batch).map(Into::into)
    }

    fn apply(&mut self, mut record: Record, out: &mut Vec<Record>) -> Result<(), Rejection> {
        for (field, value) in &self.values {
            if field.get(&record).is_none_or(Value::is_null)
                && let Err(e) = field.set(&mut record, value.clone())
            {
                return Err(Rejection::new(
                    format!("default for `{field}`: {e}"),
                    record,
                ));
            }
        }
        out.push(record);
        Ok(())
    }
}

/// Removes fields.
pub struct Drop {
    paths: Vec<FieldPath>,
}

impl Drop {
    pub fn new(paths: &[FieldPath]) -> Drop {
        Drop {
            paths: paths.to_vec(),
        }
    }
}

impl Transform for Drop {
    fn apply_batch(&mut self, batch: &Batch) -> Option<BatchOutput> {
        columns::drop(&self.paths, batch).map(Into::into)
    }

    fn apply(&mut self, mut record: Record, out: &mut Vec<Record>) -> Result<(), Rejection> {
        for path in &self.paths {
            path.remove(&mut record);
        }
        out.push(record);
        Ok(())
    }
}

/// Keeps only the listed fields, in the listed order.
pub struct Keep {
    paths: Vec<FieldPath>,
}

impl Keep {
    pub fn new(paths: &[FieldPath]) -> Keep {
        Keep {
            paths: paths.to_vec(),
        }
    }
}

impl Transform for Keep {
    fn apply_batch(&mut self, batch: &Batch) -> Option<BatchOutput> {
        columns::keep(&self.paths, batch).map(Into::into)
    }

    fn apply(&mut self, mut record: Record, out: &mut Vec<Record>) -> Result<(), Rejection> {
        let mut kept = Record::with_capacity(self.paths.len());
        for path in &self.paths {
            if let Some(value) = path.remove(&mut record)
                && let Err(e) = path.set(&mut kept, value)
            {
                return Err(Rejection::new(format!("keep `{path}`: {e}"), record));
            }
        }
        out.push(kept);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{apply, stage};
    use serde_json::json;

    #[test]
    fn rename_keeps_position_and_moves_nested_values() {
        let mut s = stage(
            json!({"rename": {"user_id": "userId", "plan": "customData.plan", "missing": "x"}}),
        );
        let (out, _) = apply(
            &mut *s,
            vec![json!({"a": 1, "user_id": "u1", "plan": "pro", "z": 2})],
        );
        assert_eq!(
            serde_json::to_string(&out[0]).unwrap(),
            r#"{"a":1,"userId":"u1","z":2,"customData":{"plan":"pro"}}"#
        );
    }

    #[test]
    fn cast_converts_nested_fields_or_rejects_unchanged() {
        let mut s = stage(json!({"cast": {"customData.seats": "int", "signup": "timestamp"}}));
        let (out, reasons) = apply(
            &mut *s,
            vec![
                json!({"customData": {"seats": "3"}, "signup": "2024-05-01"}),
                json!({"customData": {"seats": "3"}, "signup": "soon"}),
                json!({"other": 1}),
            ],
        );
        assert_eq!(
            out[0],
            json!({"customData": {"seats": 3}, "signup": "2024-05-01T00:00:00.000Z"})
        );
        assert_eq!(out[1], json!({"other": 1}));
        assert_eq!(
            reasons,
            ["field `signup`: cannot cast string \"soon\" to timestamp"]
        );
    }

    #[test]
    fn default_fills_missing_and_null_only() {
        let mut s = stage(json!({"default": {"lang": "en", "customData.seats": 1}}));
        let (out, _) = apply(
            &mut *s,
            vec![
                json!({"lang": null}),
                json!({"lang": "de", "customData": {"seats": 5}}),
            ],
        );
        assert_eq!(out[0], json!({"lang": "en", "customData": {"seats": 1}}));
        assert_eq!(out[1], json!({"lang": "de", "customData": {"seats": 5}}));
    }

    #[test]
    fn drop_and_keep() {
        let mut s = stage(json!({"drop": ["plan", "a.b"]}));
        let (out, _) = apply(
            &mut *s,
            vec![json!({"plan": 1, "a": {"b": 2, "c": 3}, "k": 4})],
        );
        assert_eq!(out[0], json!({"a": {"c": 3}, "k": 4}));
        let mut s = stage(json!({"keep": ["k", "a.c", "nope"]}));
        let (out, _) = apply(
            &mut *s,
            vec![json!({"plan": 1, "a": {"b": 2, "c": 3}, "k": 4})],
        );
        assert_eq!(
            serde_json::to_string(&out[0]).unwrap(),
            r#"{"k":4,"a":{"c":3}}"#
        );
    }
}
