//! `html_to_tiptap` (being written).

use schemars::JsonSchema;
use serde::Deserialize;

use super::{Rejection, Transform};
use crate::record::{FieldPath, Record};

/// Turns an HTML (or plain text) field into a TipTap document.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HtmlToTiptapConfig {
    /// The fields to read, in order: the first that holds a non-empty string is converted.
    pub from: Vec<FieldPath>,
    /// Where the document goes. Default: the first `from` field.
    #[serde(default)]
    pub to: Option<FieldPath>,
    /// Where inline images go, as `{name, url, type}` added to a list. Default `attachments`.
    #[serde(default)]
    pub attachments: Option<FieldPath>,
}

pub struct HtmlToTiptap {
    _config: HtmlToTiptapConfig,
}

impl HtmlToTiptap {
    pub fn new(config: &HtmlToTiptapConfig) -> HtmlToTiptap {
        HtmlToTiptap {
            _config: config.clone(),
        }
    }
}

impl Transform for HtmlToTiptap {
    fn apply(&mut self, record: Record, _out: &mut Vec<Record>) -> Result<(), Rejection> {
        Err(Rejection::new("html_to_tiptap is not built yet", record))
    }
}
