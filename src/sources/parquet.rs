//! Parquet source (being written).

use schemars::JsonSchema;
use serde::Deserialize;

use super::OpenedSource;
use crate::error::{Error, Result};

/// Reads Apache Parquet files a row group at a time.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParquetSourceConfig {
    /// A file, or a glob such as `exports/*.parquet`.
    pub path: String,
    /// Read only these columns. Default: all.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// Rows decoded at a time. Default 8192.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
}

fn default_batch_size() -> usize {
    8192
}

impl ParquetSourceConfig {
    pub fn open(&self) -> Result<OpenedSource> {
        Err(Error::Other("parquet source: not built yet".into()))
    }
}
