//! Config files: YAML parsed into located nodes, interpolated from the environment,
//! deserialized into typed configs, with every problem reported at once as
//! `file:line:column: message`.
//!
//! This module names no component: sources, transforms and sinks use its helpers
//! (`ConfigError`, `Spanned`, `checked`, `did_you_mean`) for their own options, and the
//! pipeline that aggregates them ([`crate::pipeline`]) sits above them all.

pub mod de;
pub mod error;
pub mod interpolate;
pub mod spanned;
pub mod yaml;

pub use error::{ConfigError, ConfigErrors, Location, checked, did_you_mean};
pub use interpolate::{Env, ProcessEnv};
pub use spanned::{Span, Spanned};

use yaml::Node;

/// Where the option at config path `path` (`streams[0].sink.parquet.compression_level`) is
/// written: its value, or the nearest enclosing part of the path that is written (an option
/// left out is reported where its component is).
pub fn locate(root: &Node, path: &str) -> Location {
    let mut node = root;
    for segment in path.split('.') {
        let (key, indices) = match segment.find('[') {
            Some(i) => (&segment[..i], &segment[i..]),
            None => (segment, ""),
        };
        if !key.is_empty() {
            match node.get(key) {
                Some(n) => node = n,
                None => return node.location,
            }
        }
        for index in indices.split(['[', ']']).filter(|i| !i.is_empty()) {
            match index
                .parse::<usize>()
                .ok()
                .and_then(|i| node.as_seq()?.get(i))
            {
                Some(n) => node = n,
                None => return node.location,
            }
        }
    }
    node.location
}

/// A name listed twice in a list option (`columns: [a, a]`), at each repetition; `at` is the
/// list's config path.
pub fn repeated_names(names: &[String], at: &str) -> Vec<ConfigError> {
    names
        .iter()
        .enumerate()
        .filter(|(i, name)| names[..*i].contains(name))
        .map(|(i, name)| ConfigError::at(format!("{at}[{i}]"), format!("`{name}` is named twice")))
        .collect()
}
