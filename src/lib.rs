//! gleap-etl: move helpdesk data in and out of Gleap.
pub mod config;
pub mod jq;
pub mod record;
