//! Gleap's API v3: the shape of its entities and request bodies, shared by the emulator and
//! (later) the client and sinks.

pub mod client;
pub mod fields;
pub mod model;
