//! Parquet sink (being written).

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Sink, SinkContext, SinkSummary};
use crate::error::{Error, Result};
use crate::record::{FieldType, Position, Record};

/// Writes one Apache Parquet file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParquetSinkConfig {
    /// The output file.
    pub path: String,
    /// Declared column types by field name (dotted names reach into nested objects);
    /// other columns are inferred from the first records.
    #[serde(default)]
    pub schema: IndexMap<String, FieldType>,
}

impl ParquetSinkConfig {
    pub fn build(&self, _context: SinkContext) -> Result<ParquetSink> {
        Err(Error::Other("parquet sink: not built yet".into()))
    }
}

pub struct ParquetSink;

impl Sink for ParquetSink {
    fn write(&mut self, _record: Record, _position: Position) -> Result<()> {
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<SinkSummary> {
        Ok(SinkSummary::default())
    }

    fn abort(self: Box<Self>) {}
}
