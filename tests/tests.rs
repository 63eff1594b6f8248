//! Integration tests: every file here is a module of this one test binary.

mod util;

mod emulator;
mod export;
mod fidelity;
mod gleap_sink;
mod hostile_inputs;
mod migrations;
mod pipelines;
mod validate;
