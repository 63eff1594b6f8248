//! gleap-etl: move helpdesk data in and out of Gleap.
pub mod config;
pub mod dead_letter;
pub mod error;
pub mod jq;
pub mod record;
pub mod sinks;
pub mod sources;

pub use error::{Error, Result};
