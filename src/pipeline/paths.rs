//! Checks on the files a pipeline reads and writes that `validate` can make before any record
//! is read: no stream writes a file any stream reads (the run would replace its own input),
//! and a dataset's `partition_by` names a field its records can have.

use std::path::{Component, Path, PathBuf};

use super::{PipelineConfig, StreamConfig};
use crate::config::yaml::{Node, NodeKind};
use crate::config::{ConfigError, Location, did_you_mean};

/// Every problem with outputs: an output that is also an input, a partition field that is
/// not among the fields the stream's records can have.
pub fn check_outputs(config: &PipelineConfig, root: &Node) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let inputs: Vec<(&str, &str)> = config
        .streams
        .iter()
        .flat_map(|s| {
            input_patterns(s)
                .into_iter()
                .map(|p| (s.name.value.as_str(), p))
        })
        .collect();
    for (i, stream) in config.streams.iter().enumerate() {
        let Some(out) = stream.sink.path() else {
            continue;
        };
        let at = sink_location(root, i, "path");
        let folder = stream.sink.is_dataset();
        for (reader, pattern) in &inputs {
            // A stream that reads what another writes once it has finished is a pipeline.
            let after = *reader != stream.name.value
                && needs_transitively(config, reader, &stream.name.value);
            if !after && overlaps(out, pattern, folder) {
                let whose = if *reader == stream.name.value {
                    "its own input".to_string()
                } else {
                    format!("the input of stream `{reader}`, which does not wait for it (`needs`)")
                };
                errors.push(ConfigError::new(
                    at,
                    format!(
                        "streams[{i}].sink: the output {out} is {whose} ({pattern}); \
                         the run would replace what it reads: write somewhere else"
                    ),
                ));
            }
        }
        errors.extend(check_partition_field(stream, i));
    }
    errors
}

/// Whether stream `reader` runs after `writer` through its `needs`, directly or not.
fn needs_transitively(config: &PipelineConfig, reader: &str, writer: &str) -> bool {
    let mut seen = vec![reader];
    let mut todo = vec![reader];
    while let Some(name) = todo.pop() {
        let Some(stream) = config.streams.iter().find(|s| s.name.value == name) else {
            continue;
        };
        for need in &stream.needs {
            if need.value == writer {
                return true;
            }
            if !seen.contains(&need.value.as_str()) {
                seen.push(&need.value);
                todo.push(&need.value);
            }
        }
    }
    false
}

/// The paths and globs a stream reads: its source and its lookup tables.
fn input_patterns(stream: &StreamConfig) -> Vec<&str> {
    let mut out = stream.source.input_patterns();
    for t in &stream.transforms {
        out.extend(t.input_patterns());
    }
    out
}

/// Whether writing `out` (a file, or a folder of files when `folder`) touches a file that
/// `pattern` reads.
fn overlaps(out: &str, pattern: &str, folder: bool) -> bool {
    let out = resolve(Path::new(out));
    if pattern.contains(['*', '?', '[']) {
        let resolved = resolve(Path::new(pattern));
        let Ok(glob) = glob::Pattern::new(&resolved.to_string_lossy()) else {
            return false;
        };
        // The folder the glob reads in: its components before the first wildcard.
        let literal: PathBuf = resolved
            .components()
            .take_while(|c| !c.as_os_str().to_string_lossy().contains(['*', '?', '[']))
            .collect();
        return glob.matches_path(&out) || (folder && literal.starts_with(&out));
    }
    let input = resolve(Path::new(pattern));
    input == out || (folder && input.starts_with(&out))
}

/// An absolute path with `.` and `..` taken out and, where the folder exists, symbolic links
/// resolved, so that `./a.csv`, `a.csv` and `/abs/a.csv` compare equal.
fn resolve(path: &Path) -> PathBuf {
    let absolute = std::env::current_dir()
        .map(|cwd| cwd.join(path))
        .unwrap_or_else(|_| path.to_path_buf());
    let mut lexical = PathBuf::new();
    for c in absolute.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                lexical.pop();
            }
            other => lexical.push(other),
        }
    }
    match (lexical.parent(), lexical.file_name()) {
        (Some(parent), Some(name)) => match parent.canonicalize() {
            Ok(parent) => parent.join(name),
            Err(_) => lexical,
        },
        _ => lexical,
    }
}

/// A dataset's `partition_by` field, where the fields are known before the run: a `gleap`
/// source's documented fields plus the sink's `schema:`, when no stage may add fields.
fn check_partition_field(stream: &StreamConfig, i: usize) -> Option<ConfigError> {
    let field = stream.sink.partition_field()?;
    let (records, mut known) = stream.source.known_fields()?;
    if !stream.transforms.iter().all(|t| t.adds_no_field()) {
        return None;
    }
    known.extend(stream.sink.declared_types());
    if known.contains_key(field) {
        return None;
    }
    let hint = did_you_mean(field, known.keys().map(String::as_str))
        .map(|s| format!(": did you mean `{s}`?"))
        .unwrap_or_default();
    Some(ConfigError::at(
        format!(
            "streams[{i}].sink.{}.dataset.partition_by.field",
            stream.sink.kind()
        ),
        format!("`{field}` is not a field of {records} nor of the sink's schema{hint}"),
    ))
}

/// Where a stream's sink (or a key inside its one kind) starts.
fn sink_location(root: &Node, stream: usize, key: &str) -> Location {
    let sink = root
        .get("streams")
        .and_then(Node::as_seq)
        .and_then(|s| s.get(stream))
        .and_then(|s| s.get("sink"));
    let inner = sink.and_then(|s| match &s.kind {
        NodeKind::Map(entries) => entries.first().map(|(_, v)| v),
        _ => None,
    });
    inner
        .and_then(|n| n.get(key))
        .or(inner)
        .or(sink)
        .map_or(Location::UNKNOWN, |n| n.location)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_overlap_inputs_however_they_are_written() {
        assert!(overlaps("./data/users.csv", "data/users.csv", false));
        assert!(overlaps("data/../data/users.csv", "data/*.csv", false));
        assert!(!overlaps("out/users.csv", "data/*.csv", false));
        assert!(overlaps("data", "data/part-*.parquet", true));
        assert!(overlaps("data", "data/x.parquet", true));
        assert!(!overlaps("data2", "data/x.parquet", true));
    }
}
