//! Integration tests: every file here is a module of this one test binary.

mod util;

mod emulator;
mod gleap_sink;
mod pipelines;
mod validate;
