//! Integration tests: every file here is a module of this one test binary.

mod util;

mod emulator;
mod pipelines;
mod validate;
