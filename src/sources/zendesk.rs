//! Zendesk dump source (being written).

use schemars::JsonSchema;
use serde::Deserialize;

use super::OpenedSource;
use crate::error::{Error, Result};

/// Reads Zendesk exports.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ZendeskSourceConfig {
    /// A file or a glob (`dump/conversations*.json*`); `.gz` accepted.
    pub path: String,
    /// What to read: `contacts`, `conversations` or `parts` (the messages of conversations).
    pub entity: ZendeskEntity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ZendeskEntity {
    Users,
    Tickets,
    Comments,
}

impl ZendeskSourceConfig {
    pub fn open(&self) -> Result<OpenedSource> {
        Err(Error::Other("the zendesk source is not built yet".into()))
    }
}
