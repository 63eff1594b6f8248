//! gleap-etl: move helpdesk data in and out of Gleap.
pub mod batch;
pub mod cli;
pub mod clock;
pub mod config;
pub mod dead_letter;
pub mod dirs;
pub mod doctor;
pub mod emulator;
pub mod engine;
pub mod error;
pub mod files;
pub mod gleap;
pub mod jq;
pub mod pipeline;
pub mod prune;
pub mod reconcile;
pub mod record;
pub mod redact;
pub mod sample;
pub mod sinks;
pub mod sources;
pub mod state;
pub mod status;
pub mod transforms;
pub mod undo;
pub mod verify;

pub use error::{Error, Result};
