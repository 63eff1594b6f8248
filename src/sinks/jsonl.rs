//! JSON lines sink: one object per line, in field order; `.gz` names are compressed.

use std::io::Write;

use schemars::JsonSchema;
use serde::Deserialize;

use super::output::{PendingOutput, TextOutput};
use super::{Sink, SinkContext, SinkSummary};
use crate::error::{Error, Result};
use crate::record::{Position, Record};

/// Writes newline-delimited JSON.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonlSinkConfig {
    /// The output file; a name ending in `.gz` is gzip-compressed.
    pub path: String,
}

impl JsonlSinkConfig {
    /// Every problem with the options as written; `at` is the sink's config path.
    pub fn check(&self, at: &str) -> Vec<crate::config::ConfigError> {
        super::output::check_path(&self.path, at)
    }

    pub fn build(&self, _context: SinkContext) -> Result<JsonlSink> {
        crate::config::checked(self.check("sink.jsonl"))?;
        let (file, pending) = PendingOutput::create(self.path.as_ref())?;
        let out = TextOutput::new(file, pending.final_path());
        Ok(JsonlSink {
            out,
            pending,
            written: 0,
        })
    }
}

pub struct JsonlSink {
    out: TextOutput,
    pending: PendingOutput,
    written: u64,
}

impl Sink for JsonlSink {
    fn write(&mut self, record: Record, _position: Position) -> Result<()> {
        serde_json::to_writer(&mut self.out, &record)
            .map_err(std::io::Error::from)
            .and_then(|()| self.out.write_all(b"\n"))
            .map_err(|e| Error::io(self.pending.temp_path(), e))?;
        self.written += 1;
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<SinkSummary> {
        let this = *self;
        let file = this
            .out
            .finish()
            .map_err(|e| Error::io(this.pending.temp_path(), e))?;
        let path = this.pending.final_path().to_path_buf();
        let bytes = this.pending.commit(file)?;
        Ok(SinkSummary {
            written: this.written,
            path: Some(path),
            bytes: Some(bytes),
            ..Default::default()
        })
    }

    fn abort(self: Box<Self>) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dead_letter::DeadLetters;
    use serde_json::json;

    #[test]
    fn writes_lines_and_compresses_gz() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["o.jsonl", "o.jsonl.gz"] {
            let path = dir.path().join(name);
            let config = JsonlSinkConfig {
                path: path.to_str().unwrap().into(),
            };
            let ctx = SinkContext::new("s", DeadLetters::in_memory(None));
            let mut sink: Box<dyn Sink> = Box::new(config.build(ctx).unwrap());
            let pos = Position {
                seq: 0,
                file: "in".into(),
                line: None,
                row: 1,
            };
            sink.write(json!({"b": 1, "a": "ü"}).as_object().unwrap().clone(), pos)
                .unwrap();
            let summary = sink.finish().unwrap();
            assert_eq!(summary.written, 1);
            let mut text = String::new();
            let counter = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
            std::io::Read::read_to_string(
                &mut crate::sources::files::open(&path, counter).unwrap(),
                &mut text,
            )
            .unwrap();
            assert_eq!(text, "{\"b\":1,\"a\":\"ü\"}\n");
        }
    }
}
