//! Transform stages: each takes a record and gives zero, one or more records back, or
//! rejects it with a reason (the record then goes to the dead-letter file).

pub mod columns;
pub mod dedupe;
pub mod fields;
mod html_depth;
pub mod jq_stages;
pub mod lookup;
pub mod predicate;
pub mod tiptap;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, Spanned};
use crate::error::Result;
use crate::jq::{JqLimits, JqProgram};
use crate::record::{FieldPath, FieldType, Record, Value};

/// One transform stage. Exactly one kind per list item.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TransformConfig {
    /// Keeps the records for which this jq expression is true (its first output is neither
    /// `false` nor `null`).
    Filter(JqExpr),
    /// Leaves out the records for which `when` is true, counted under `reason` in the run
    /// summary and report (`filter` counts them only as filtered).
    Skip(jq_stages::SkipConfig),
    /// Renames fields: `{old: new}`. Dotted names move values in and out of nested objects.
    Rename(IndexMap<FieldPath, FieldPath>),
    /// Sets fields to the first output of a jq expression, each evaluated on the record as it
    /// entered the stage. An expression with no output leaves the field as it was.
    Set(IndexMap<FieldPath, JqExpr>),
    /// Converts fields to a type: string, int, float, bool, timestamp, date, json, list<TYPE>.
    /// A value that cannot be converted sends the record to the dead-letter file.
    Cast(IndexMap<FieldPath, FieldType>),
    /// Sets fields that are missing or null to a fixed value.
    Default(IndexMap<FieldPath, Value>),
    /// Removes these fields.
    Drop(Vec<FieldPath>),
    /// Keeps only these fields, in this order.
    Keep(Vec<FieldPath>),
    /// Lets only the first record with each key through.
    Dedupe(dedupe::DedupeConfig),
    /// Any jq program: each output object is a record (none drops the record, several
    /// split it).
    Jq(JqExpr),
    /// Joins each record against a table (CSV, Parquet or JSON lines) by key.
    Lookup(Box<lookup::LookupConfig>),
    /// Turns an HTML or plain-text field into a TipTap document (Gleap's rich text), with
    /// inline images moved to the attachments.
    HtmlToTiptap(tiptap::HtmlToTiptapConfig),
}

impl TransformConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            TransformConfig::Filter(_) => "filter",
            TransformConfig::Skip(_) => "skip",
            TransformConfig::Rename(_) => "rename",
            TransformConfig::Set(_) => "set",
            TransformConfig::Cast(_) => "cast",
            TransformConfig::Default(_) => "default",
            TransformConfig::Drop(_) => "drop",
            TransformConfig::Keep(_) => "keep",
            TransformConfig::Dedupe(_) => "dedupe",
            TransformConfig::Jq(_) => "jq",
            TransformConfig::Lookup(_) => "lookup",
            TransformConfig::HtmlToTiptap(_) => "html_to_tiptap",
        }
    }

    /// The paths and globs of the files the stage reads, as written: a lookup's table.
    pub fn input_patterns(&self) -> Vec<&str> {
        match self {
            TransformConfig::Lookup(l) => l.table.input_patterns(),
            _ => Vec::new(),
        }
    }

    /// Whether the stage is known to add no field to a record (`filter`, `drop`, `keep`,
    /// `dedupe`, `cast`), so that the fields after it are among those before it. The
    /// others may add fields.
    pub fn adds_no_field(&self) -> bool {
        matches!(
            self,
            TransformConfig::Filter(_)
                | TransformConfig::Drop(_)
                | TransformConfig::Keep(_)
                | TransformConfig::Dedupe(_)
                | TransformConfig::Cast(_)
        )
    }

    /// Problems found without touching any file: jq expressions that do not compile, options
    /// that cannot work. `path` is the config path of the stage, for messages.
    pub fn check(&self, path: &str) -> Vec<ConfigError> {
        let at = format!("{path}.{}", self.kind());
        match self {
            TransformConfig::Lookup(l) => l.check(&at),
            TransformConfig::Dedupe(d) if d.key.fields().is_empty() => vec![ConfigError::at(
                format!("{at}.key"),
                "name at least one field",
            )],
            TransformConfig::HtmlToTiptap(c) if c.from.is_empty() => vec![ConfigError::at(
                format!("{at}.from"),
                "name at least one field to convert",
            )],
            TransformConfig::Filter(e) | TransformConfig::Jq(e) => {
                e.check(&format!("{path}.{}", self.kind()))
            }
            TransformConfig::Set(fields) => fields
                .iter()
                .flat_map(|(field, e)| e.check(&format!("{path}.set.{field}")))
                .collect(),
            TransformConfig::Skip(c) => c.when.check(&format!("{path}.skip.when")),
            _ => Vec::new(),
        }
    }

    /// Builds the running stage (compiles jq, loads lookup tables) with the default limits.
    pub fn build(&self) -> Result<Box<dyn Transform>> {
        self.build_with(JqLimits::default())
    }

    /// Builds the running stage; jq stages get `limits` per record.
    pub fn build_with(&self, limits: JqLimits) -> Result<Box<dyn Transform>> {
        // jq stages are checked by compiling them, below.
        let jq = matches!(
            self,
            TransformConfig::Filter(_)
                | TransformConfig::Skip(_)
                | TransformConfig::Set(_)
                | TransformConfig::Jq(_)
        );
        if !jq {
            crate::config::checked(self.check("stage"))?;
        }
        let compile = |e: &JqExpr| e.compile().map(|p| p.with_limits(limits));
        Ok(match self {
            TransformConfig::Filter(e) => Box::new(jq_stages::Filter::new(
                compile(e)?,
                predicate::Predicate::recognise(e.code()),
            )),
            TransformConfig::Skip(c) => Box::new(jq_stages::Skip::new(
                compile(&c.when)?,
                predicate::Predicate::recognise(c.when.code()),
                c.reason.clone(),
            )),
            TransformConfig::Set(fields) => Box::new(jq_stages::Set::new(
                fields
                    .iter()
                    .map(|(f, e)| Ok((f.clone(), compile(e)?)))
                    .collect::<Result<_>>()?,
            )),
            TransformConfig::Jq(e) => Box::new(jq_stages::JqStage::new(compile(e)?)),
            TransformConfig::Rename(pairs) => Box::new(fields::Rename::new(pairs)),
            TransformConfig::Cast(types) => Box::new(fields::Cast::new(types)),
            TransformConfig::Default(values) => Box::new(fields::Defaults::new(values)),
            TransformConfig::Drop(paths) => Box::new(fields::Drop::new(paths)),
            TransformConfig::Keep(paths) => Box::new(fields::Keep::new(paths)),
            TransformConfig::Dedupe(c) => Box::new(dedupe::Dedupe::new(c)),
            TransformConfig::Lookup(c) => Box::new(c.build()?),
            TransformConfig::HtmlToTiptap(c) => Box::new(tiptap::HtmlToTiptap::new(c)),
        })
    }
}

/// A jq expression as written in the pipeline, with its place in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct JqExpr(pub Spanned<String>);

impl JqExpr {
    pub fn new(code: &str) -> JqExpr {
        JqExpr(Spanned::new(code.to_string()))
    }

    pub fn code(&self) -> &str {
        &self.0.value
    }

    /// Compile errors, located inside the expression where possible.
    pub fn check(&self, path: &str) -> Vec<ConfigError> {
        match JqProgram::compile(self.code()) {
            Ok(_) => Vec::new(),
            Err(errors) => errors
                .into_iter()
                .map(|e| {
                    ConfigError::new(
                        self.0.span.at_char(e.offset),
                        format!(
                            "{path}: invalid jq expression `{}`: {}",
                            excerpt(self.code()),
                            e.message
                        ),
                    )
                })
                .collect(),
        }
    }

    pub fn compile(&self) -> Result<JqProgram> {
        JqProgram::compile(self.code()).map_err(|errors| {
            let first = errors
                .into_iter()
                .next()
                .map(|e| e.message)
                .unwrap_or_default();
            crate::Error::config(format!(
                "invalid jq expression `{}`: {first}",
                excerpt(self.code())
            ))
        })
    }
}

fn excerpt(code: &str) -> String {
    let one_line = code.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 50 {
        one_line.chars().take(50).collect::<String>() + "…"
    } else {
        one_line
    }
}

impl JsonSchema for JqExpr {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "JqExpr".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A jq expression, run on each record (jq's standard library is available)."
        })
    }
}

/// A running transform stage.
pub trait Transform: Send {
    /// Processes one record: pushes what comes out to `out`, or gives the record back with
    /// the reason it was rejected.
    fn apply(&mut self, record: Record, out: &mut Vec<Record>) -> Result<(), Rejection>;

    /// The stage's column kernel: the batch whose rows are what [`Transform::apply`] would
    /// give for each row of `batch`, in order, and the rows it would reject with their
    /// reasons; `None` where the stage has no kernel or cannot be sure of that for this
    /// batch (its rows then go through `apply`).
    fn apply_batch(&mut self, _batch: &crate::batch::Batch) -> Option<BatchOutput> {
        None
    }

    /// Rows of a table the stage loaded that could not be read and were skipped (lookup),
    /// each given once.
    fn take_skipped_rows(&mut self) -> Vec<crate::sources::Rejected> {
        Vec::new()
    }

    /// What the stage left out of the records it passed on so far, by what it was (for the
    /// run report): `html_to_tiptap`'s unsafe or unfetchable images.
    fn dropped(&self) -> std::collections::BTreeMap<String, u64> {
        Default::default()
    }
}

/// What a column kernel made of a batch.
pub struct BatchOutput {
    /// The rows that go on.
    pub batch: crate::batch::Batch,
    /// The rows of the input batch it rejected, by index, in order, with the reason.
    pub rejected: Vec<(usize, String)>,
}

impl From<crate::batch::Batch> for BatchOutput {
    fn from(batch: crate::batch::Batch) -> BatchOutput {
        BatchOutput {
            batch,
            rejected: Vec::new(),
        }
    }
}

/// A record a stage could not process.
#[derive(Debug)]
pub struct Rejection {
    pub reason: String,
    /// The record as it entered the stage (or as far as the stage got).
    pub record: Record,
}

impl Rejection {
    pub fn new(reason: impl Into<String>, record: Record) -> Rejection {
        Rejection {
            reason: reason.into(),
            record,
        }
    }
}

/// A rejection with the stage it happened in.
#[derive(Debug)]
pub struct StageRejection {
    pub stage: String,
    pub reason: String,
    pub record: Record,
}

/// How many records went in and came out of a stage.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct StageStats {
    pub stage: String,
    pub input: u64,
    pub output: u64,
    pub rejected: u64,
    /// Rows of the stage's lookup table that could not be read and were skipped.
    #[serde(skip_serializing_if = "is_zero")]
    pub table_rows_skipped: u64,
    /// What the stage left out of records it passed on, by what it was.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub dropped: std::collections::BTreeMap<String, u64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What a batch is after the stages: still columns, or rows with their positions.
pub enum ChainOutput {
    Batch(crate::batch::Batch),
    Rows(Vec<(Record, crate::record::Position)>),
}

/// The stages of a stream, in order.
pub struct TransformChain {
    stages: Vec<(Box<dyn Transform>, StageStats)>,
    current: Vec<Record>,
    next: Vec<Record>,
}

impl TransformChain {
    pub fn build(configs: &[TransformConfig]) -> Result<TransformChain> {
        Self::build_with(configs, JqLimits::default())
    }

    /// The chain, its jq stages with `limits` per record.
    pub fn build_with(configs: &[TransformConfig], limits: JqLimits) -> Result<TransformChain> {
        let mut stages = Vec::with_capacity(configs.len());
        for (i, config) in configs.iter().enumerate() {
            let label = format!("transforms[{i}] ({})", config.kind());
            let stage = config.build_with(limits).map_err(|e| e.within(&label))?;
            stages.push((
                stage,
                StageStats {
                    stage: label,
                    ..Default::default()
                },
            ));
        }
        Ok(TransformChain {
            stages,
            current: Vec::new(),
            next: Vec::new(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// Runs one record through every stage: results are appended to `out`, rejections to
    /// `rejected`.
    pub fn process(
        &mut self,
        record: Record,
        out: &mut Vec<Record>,
        rejected: &mut Vec<StageRejection>,
    ) {
        self.process_from(0, record, out, rejected);
    }

    /// [`TransformChain::process`] from stage `first` on.
    fn process_from(
        &mut self,
        first: usize,
        record: Record,
        out: &mut Vec<Record>,
        rejected: &mut Vec<StageRejection>,
    ) {
        if first >= self.stages.len() {
            out.push(record);
            return;
        }
        self.current.clear();
        self.current.push(record);
        for (stage, stats) in &mut self.stages[first..] {
            self.next.clear();
            for record in self.current.drain(..) {
                stats.input += 1;
                if let Err(r) = stage.apply(record, &mut self.next) {
                    stats.rejected += 1;
                    rejected.push(StageRejection {
                        stage: stats.stage.clone(),
                        reason: r.reason,
                        record: r.record,
                    });
                }
            }
            stats.output += self.next.len() as u64;
            std::mem::swap(&mut self.current, &mut self.next);
            if self.current.is_empty() {
                return;
            }
        }
        out.append(&mut self.current);
    }

    /// Runs a batch through every stage: on columns while each stage has a kernel for it,
    /// then as rows from the first stage that has none (converted once). Rejections, each
    /// with the position of the row it came from, are appended to `rejected`.
    pub fn process_batch(
        &mut self,
        mut batch: crate::batch::Batch,
        rejected: &mut Vec<(StageRejection, crate::record::Position)>,
    ) -> ChainOutput {
        for k in 0..self.stages.len() {
            let (stage, stats) = &mut self.stages[k];
            let Some(out) = stage.apply_batch(&batch) else {
                return ChainOutput::Rows(self.rows_from(k, batch, rejected));
            };
            stats.input += batch.len() as u64;
            stats.output += out.batch.len() as u64;
            stats.rejected += out.rejected.len() as u64;
            for (i, reason) in out.rejected {
                let (record, position) = batch.row(i);
                let stage = stats.stage.clone();
                rejected.push((
                    StageRejection {
                        stage,
                        reason,
                        record,
                    },
                    position,
                ));
            }
            batch = out.batch;
            if batch.is_empty() {
                break;
            }
        }
        ChainOutput::Batch(batch)
    }

    /// The rows of `batch` through the stages from `first` on.
    fn rows_from(
        &mut self,
        first: usize,
        batch: crate::batch::Batch,
        rejected: &mut Vec<(StageRejection, crate::record::Position)>,
    ) -> Vec<(Record, crate::record::Position)> {
        let mut out = Vec::with_capacity(batch.len());
        let mut records = Vec::new();
        let mut rejections = Vec::new();
        for (record, position) in batch.to_rows() {
            self.process_from(first, record, &mut records, &mut rejections);
            out.extend(records.drain(..).map(|r| (r, position.clone())));
            rejected.extend(rejections.drain(..).map(|r| (r, position.clone())));
        }
        out
    }

    /// The lookup-table rows the stages skipped while loading, with the stage's label; each
    /// is given once and counted in the stage's stats.
    pub fn take_skipped_rows(&mut self) -> Vec<(String, crate::sources::Rejected)> {
        let mut rows = Vec::new();
        for (stage, stats) in &mut self.stages {
            let skipped = stage.take_skipped_rows();
            stats.table_rows_skipped += skipped.len() as u64;
            rows.extend(skipped.into_iter().map(|r| (stats.stage.clone(), r)));
        }
        rows
    }

    pub fn stats(&self) -> Vec<StageStats> {
        self.stages
            .iter()
            .map(|(stage, stats)| StageStats {
                dropped: stage.dropped(),
                ..stats.clone()
            })
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub fn rec(v: Value) -> Record {
        v.as_object().expect("an object").clone()
    }

    /// Builds a stage from its YAML-ish JSON config.
    pub fn stage(config: Value) -> Box<dyn Transform> {
        let config: TransformConfig = serde_json::from_value(config).unwrap();
        config.build().unwrap()
    }

    /// Applies a stage to records; returns outputs and rejection reasons.
    pub fn apply(stage: &mut dyn Transform, records: Vec<Value>) -> (Vec<Value>, Vec<String>) {
        let (mut out, mut reasons) = (Vec::new(), Vec::new());
        for r in records {
            if let Err(rej) = stage.apply(rec(r), &mut out) {
                reasons.push(rej.reason);
            }
        }
        (out.into_iter().map(Value::Object).collect(), reasons)
    }

    #[test]
    fn the_chain_counts_and_labels_stages() {
        let configs: Vec<TransformConfig> = serde_json::from_value(json!([
            {"filter": ".keep"},
            {"cast": {"n": "int"}},
            {"jq": "., ."}
        ]))
        .unwrap();
        let mut chain = TransformChain::build(&configs).unwrap();
        let (mut out, mut rejected) = (Vec::new(), Vec::new());
        for r in [
            json!({"keep": true, "n": "1"}),
            json!({"keep": false, "n": "2"}),
            json!({"keep": true, "n": "x"}),
        ] {
            chain.process(rec(r), &mut out, &mut rejected);
        }
        assert_eq!(out.len(), 2);
        assert_eq!(out[0]["n"], json!(1));
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].stage, "transforms[1] (cast)");
        assert_eq!(
            rejected[0].record["n"],
            json!("x"),
            "the rejected record is as it entered the stage"
        );
        let stats = chain.stats();
        assert_eq!((stats[0].input, stats[0].output), (3, 2));
        assert_eq!(
            (stats[1].input, stats[1].output, stats[1].rejected),
            (2, 1, 1)
        );
        assert_eq!((stats[2].input, stats[2].output), (1, 2));
    }

    #[test]
    fn jq_errors_are_located_inside_the_expression() {
        let mut expr = JqExpr::new(".a | nosuch");
        expr.0.span = crate::config::Span {
            location: crate::config::Location {
                line: 7,
                column: 17,
            },
            text_start: crate::config::Location {
                line: 7,
                column: 18,
            },
            verbatim: true,
        };
        let errors = expr.check("streams[0].transforms[1].filter");
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].location,
            crate::config::Location {
                line: 7,
                column: 23
            }
        );
        assert!(
            errors[0].message.contains("undefined filter `nosuch/0`"),
            "{}",
            errors[0].message
        );
    }
}
