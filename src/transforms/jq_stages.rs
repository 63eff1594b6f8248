//! The stages that run jq: `filter`, `skip`, `set` and `jq`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use super::predicate::Predicate;
use super::{BatchOutput, JqExpr, Rejection, Transform};
use crate::batch::Batch;
use crate::jq::{JqProgram, from_val, record_to_val, truthy, val_to_record};
use crate::record::{FieldPath, Record};

/// Keeps records for which the predicate's first output is truthy.
pub struct Filter {
    program: JqProgram,
    /// The same predicate, read off the record without jq where it is a simple one.
    simple: Option<Predicate>,
}

impl Filter {
    pub fn new(program: JqProgram, simple: Option<Predicate>) -> Filter {
        Filter { program, simple }
    }
}

/// Whether the predicate holds for `record`: decided on the record where it is a simple
/// one (and jq would raise no error), else by jq.
fn decide(
    program: &JqProgram,
    simple: Option<&Predicate>,
    record: &Record,
) -> Result<bool, String> {
    if let Some(holds) = simple.and_then(|p| p.holds(record)) {
        return Ok(holds);
    }
    Ok(program
        .first(record_to_val(record))?
        .is_some_and(|v| truthy(&v)))
}

impl Transform for Filter {
    fn apply_batch(&mut self, batch: &Batch) -> Option<BatchOutput> {
        let keep = self.simple.as_ref()?.mask(&batch.columns)?;
        batch.filter(&keep).ok().map(Into::into)
    }

    fn apply(&mut self, record: Record, out: &mut Vec<Record>) -> Result<(), Rejection> {
        match decide(&self.program, self.simple.as_ref(), &record) {
            Ok(true) => out.push(record),
            Ok(false) => {}
            Err(e) => return Err(Rejection::new(e, record)),
        }
        Ok(())
    }
}

/// `skip`: what to leave out and why.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SkipConfig {
    /// A jq expression: the records for which it is true (its first output is neither
    /// `false` nor `null`) are left out.
    pub when: JqExpr,
    /// Why, as the run summary and report count them (`empty message (no text, no file)`).
    pub reason: String,
}

/// Leaves out the records the predicate holds for, counted by reason for the report.
pub struct Skip {
    program: JqProgram,
    simple: Option<Predicate>,
    reason: String,
    skipped: u64,
}

impl Skip {
    pub fn new(program: JqProgram, simple: Option<Predicate>, reason: String) -> Skip {
        Skip {
            program,
            simple,
            reason,
            skipped: 0,
        }
    }
}

impl Transform for Skip {
    fn apply_batch(&mut self, batch: &Batch) -> Option<BatchOutput> {
        let skip = self.simple.as_ref()?.mask(&batch.columns)?;
        let out = batch.filter(&arrow::compute::not(&skip).ok()?).ok()?;
        self.skipped += (batch.len() - out.len()) as u64;
        Some(out.into())
    }

    fn apply(&mut self, record: Record, out: &mut Vec<Record>) -> Result<(), Rejection> {
        match decide(&self.program, self.simple.as_ref(), &record) {
            Ok(true) => self.skipped += 1,
            Ok(false) => out.push(record),
            Err(e) => return Err(Rejection::new(e, record)),
        }
        Ok(())
    }

    fn dropped(&self) -> BTreeMap<String, u64> {
        if self.skipped == 0 {
            return BTreeMap::new();
        }
        BTreeMap::from([(self.reason.clone(), self.skipped)])
    }
}

/// Sets fields from jq expressions evaluated on the incoming record.
pub struct Set {
    fields: Vec<(FieldPath, JqProgram)>,
}

impl Set {
    pub fn new(fields: Vec<(FieldPath, JqProgram)>) -> Set {
        Set { fields }
    }
}

impl Transform for Set {
    fn apply(&mut self, mut record: Record, out: &mut Vec<Record>) -> Result<(), Rejection> {
        let input = record_to_val(&record);
        let mut values = Vec::with_capacity(self.fields.len());
        for (field, program) in &self.fields {
            match program.first(input.clone()) {
                Ok(Some(v)) => match from_val(v) {
                    Ok(v) => values.push((field, v)),
                    Err(e) => return Err(Rejection::new(format!("field `{field}`: {e}"), record)),
                },
                Ok(None) => {}
                Err(e) => return Err(Rejection::new(format!("field `{field}`: {e}"), record)),
            }
        }
        for (field, value) in values {
            if let Err(e) = field.set(&mut record, value) {
                return Err(Rejection::new(e, record));
            }
        }
        out.push(record);
        Ok(())
    }
}

/// Any jq program; every output must be an object.
pub struct JqStage {
    program: JqProgram,
}

impl JqStage {
    pub fn new(program: JqProgram) -> JqStage {
        JqStage { program }
    }
}

impl Transform for JqStage {
    fn apply(&mut self, record: Record, out: &mut Vec<Record>) -> Result<(), Rejection> {
        let outputs = match self.program.run(record_to_val(&record)) {
            Ok(outputs) => outputs,
            Err(e) => return Err(Rejection::new(e, record)),
        };
        let start = out.len();
        for v in outputs {
            match val_to_record(v) {
                Ok(r) => out.push(r),
                Err(e) => {
                    out.truncate(start);
                    return Err(Rejection::new(e, record));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{apply, stage};
    use serde_json::json;

    #[test]
    fn filter_keeps_truthy_records_and_rejects_errors() {
        let mut s = stage(json!({"filter": ".email != null and .email != \"\""}));
        let (out, reasons) = apply(
            &mut *s,
            vec![
                json!({"email": "a@x"}),
                json!({"email": ""}),
                json!({"email": null}),
                json!({}),
            ],
        );
        assert_eq!(out, [json!({"email": "a@x"})]);
        assert!(reasons.is_empty());
        let mut s = stage(json!({"filter": ".n > (.m | tonumber)"}));
        let (_, reasons) = apply(&mut *s, vec![json!({"n": 1, "m": "x"})]);
        assert_eq!(reasons.len(), 1);
        assert!(reasons[0].starts_with("jq error"), "{}", reasons[0]);
    }

    #[test]
    fn skip_leaves_out_matching_records_and_counts_them_by_reason() {
        let mut s =
            stage(json!({"skip": {"when": ".kind == \"empty\"", "reason": "empty message"}}));
        let (out, reasons) = apply(
            &mut *s,
            vec![
                json!({"id": 1, "kind": "message"}),
                json!({"id": 2, "kind": "empty"}),
                json!({"id": 3}),
                json!({"id": 4, "kind": "empty"}),
            ],
        );
        assert_eq!(out, [json!({"id": 1, "kind": "message"}), json!({"id": 3})]);
        assert!(reasons.is_empty());
        assert_eq!(
            s.dropped(),
            std::collections::BTreeMap::from([("empty message".to_string(), 2)])
        );
        let mut s = stage(json!({"skip": {"when": ".n > (.m | tonumber)", "reason": "r"}}));
        let (_, reasons) = apply(&mut *s, vec![json!({"n": 1, "m": "x"})]);
        assert_eq!(reasons.len(), 1);
        assert!(s.dropped().is_empty());
    }

    #[test]
    fn set_evaluates_every_expression_on_the_incoming_record() {
        let mut s = stage(
            json!({"set": {"customData.plan": ".plan // \"free\"", "plan": "\"gone\"", "n": ".plan | length", "skip": "empty"}}),
        );
        let (out, _) = apply(&mut *s, vec![json!({"plan": "pro"}), json!({"x": 1})]);
        assert_eq!(
            out[0],
            json!({"plan": "gone", "customData": {"plan": "pro"}, "n": 3})
        );
        assert_eq!(
            out[1],
            json!({"x": 1, "customData": {"plan": "free"}, "plan": "gone", "n": 0})
        );
    }

    #[test]
    fn jq_emits_zero_one_or_many_records() {
        let mut s = stage(json!({"jq": ".tags = (.tags | split(\",\"))"}));
        let (out, _) = apply(&mut *s, vec![json!({"tags": "a,b"})]);
        assert_eq!(out, [json!({"tags": ["a", "b"]})]);
        let mut s = stage(json!({"jq": ".items[] | {id: .}"}));
        let (out, _) = apply(
            &mut *s,
            vec![json!({"items": [1, 2]}), json!({"items": []})],
        );
        assert_eq!(out, [json!({"id": 1}), json!({"id": 2})]);
        let mut s = stage(json!({"jq": ".id"}));
        let (out, reasons) = apply(&mut *s, vec![json!({"id": 5})]);
        assert!(out.is_empty());
        assert_eq!(reasons, ["jq produced a number, not an object: 5"]);
    }
}
