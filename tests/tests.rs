//! Integration tests: every file here is a module of this one test binary.

mod util;

mod pipelines;
mod validate;
