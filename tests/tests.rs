//! Integration tests: every file here is a module of this one test binary.

mod util;

mod buckets;
mod data_plane;
mod emulator;
mod export;
mod fidelity;
mod files;
mod fuzz;
mod gleap_sink;
mod golden;
mod helpcentre;
mod hostile;
mod hostile_dumps;
mod hostile_gleap;
mod hostile_inputs;
mod hostile_signals;
mod migrations;
mod people;
mod pipelines;
mod prune;
mod reconcile;
mod sample;
mod schema_evolution;
mod shell;
mod snapshot;
mod undo;
mod validate;
mod verify;
