//! The checks that need a whole pipeline: names, `needs` and `refs` between streams, outputs
//! that two streams write, circles; and, when the pipeline does not deserialize as a whole,
//! its parts one by one, so that one broken part does not hide the problems of the others.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use crate::config::de::{ConfigPath, from_node};
use crate::config::yaml::Node;
use crate::config::{ConfigError, Location, Spanned, did_you_mean};
use crate::sinks::SinkConfig;
use crate::sources::SourceConfig;
use crate::transforms::TransformConfig;

use super::{FORMAT_VERSION, PipelineConfig, StreamConfig, paths};

/// Deserializes the parts of a pipeline one by one after the whole failed, so that one
/// broken part does not hide the problems of the others. A misspelt key (`transfroms`) is
/// read as the key it was meant to be, so the problems inside it show up too.
pub(super) fn check_piecewise(root: &Node, side: &RefCell<Vec<ConfigError>>) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let root_path = ConfigPath::root();
    let mut collect = |r: Result<(), ConfigError>| {
        if let Err(e) = r {
            errors.push(e);
        }
    };
    if let Some(n) = field(root, "version", PIPELINE_KEYS) {
        collect(from_node::<Spanned<u32>>(n, &root_path.key("version"), side).map(|_| ()));
    }
    if let Some(n) = field(root, "name", PIPELINE_KEYS) {
        collect(from_node::<Spanned<String>>(n, &root_path.key("name"), side).map(|_| ()));
    }
    let Some(streams) = field(root, "streams", PIPELINE_KEYS).and_then(Node::as_seq) else {
        return errors;
    };
    let mut more = Vec::new();
    for (i, stream) in streams.iter().enumerate() {
        let path = root_path.key("streams").index(i);
        match from_node::<StreamConfig>(stream, &path, side) {
            Ok(s) => more.extend(check_stream(&s, &path.to_string())),
            Err(e) => {
                more.push(e);
                if let Some(n) = field(stream, "source", STREAM_KEYS) {
                    let at = path.key("source");
                    match from_node::<SourceConfig>(n, &at, side) {
                        Ok(s) => more.extend(s.check(&at.to_string())),
                        Err(e) => more.push(e),
                    }
                }
                if let Some(n) = field(stream, "sink", STREAM_KEYS) {
                    let at = path.key("sink");
                    match from_node::<SinkConfig>(n, &at, side) {
                        Ok(s) => more.extend(s.check(&at.to_string())),
                        Err(e) => more.push(e),
                    }
                }
                let transforms = field(stream, "transforms", STREAM_KEYS).and_then(Node::as_seq);
                for (j, t) in transforms.unwrap_or_default().iter().enumerate() {
                    let tpath = path.key("transforms").index(j);
                    match from_node::<TransformConfig>(t, &tpath, side) {
                        Ok(t) => more.extend(t.check(&tpath.to_string())),
                        Err(e) => more.push(e),
                    }
                }
            }
        }
    }
    errors.extend(more);
    errors
}

const PIPELINE_KEYS: &[&str] = &["version", "name", "state_dir", "gleap", "streams"];
const STREAM_KEYS: &[&str] = &[
    "name",
    "needs",
    "source",
    "transforms",
    "sink",
    "jq_timeout_ms",
    "jq_max_outputs",
];

/// The value of `key` in a mapping, or of a misspelling of it that is closer to `key` than
/// to any other of `keys`.
fn field<'a>(node: &'a Node, key: &str, keys: &[&str]) -> Option<&'a Node> {
    node.get(key).or_else(|| {
        node.as_map()?
            .iter()
            .find(|(k, _)| {
                let k = k.as_str().unwrap_or_default();
                !keys.contains(&k) && did_you_mean(k, keys.iter().copied()) == Some(key)
            })
            .map(|(_, v)| v)
    })
}

/// Checks that need the whole typed pipeline.
pub(super) fn check(config: &PipelineConfig, root: &Node) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    if config.version.value != FORMAT_VERSION {
        errors.push(ConfigError::new(
            config.version.location(),
            format!(
                "version: this gleap-etl reads pipeline format version {FORMAT_VERSION}, not {}",
                config.version.value
            ),
        ));
    }
    if let Some(e) = check_name("name", &config.name) {
        errors.push(e);
    }
    if let Some(g) = &config.gleap {
        errors.extend(g.check("gleap"));
    }
    if config.streams.is_empty() {
        let at = root
            .get("streams")
            .map_or(Location::UNKNOWN, |n| n.location);
        errors.push(ConfigError::new(
            at,
            "streams: a pipeline needs at least one stream",
        ));
    }

    let mut names: HashMap<&str, &Spanned<String>> = HashMap::new();
    let mut outputs: HashMap<&str, &str> = HashMap::new();
    for (i, stream) in config.streams.iter().enumerate() {
        let path = format!("streams[{i}]");
        errors.extend(check_stream(stream, &path));
        if let Some(first) = names.insert(&stream.name.value, &stream.name) {
            errors.push(ConfigError::new(
                stream.name.location(),
                format!(
                    "{path}.name: a stream named `{}` is already defined on line {}",
                    stream.name.value,
                    first.location().line
                ),
            ));
        }
        if let Some(out) = stream.sink.path()
            && let Some(other) = outputs.insert(out, &stream.name.value)
        {
            let at = sink_location(root, i);
            errors.push(ConfigError::new(
                at,
                format!(
                    "{path}.sink: streams `{other}` and `{}` both write {out}",
                    stream.name.value
                ),
            ));
        }
    }
    for (i, stream) in config.streams.iter().enumerate() {
        for need in &stream.needs {
            if need.value == stream.name.value {
                errors.push(ConfigError::new(
                    need.location(),
                    format!("streams[{i}].needs: a stream cannot need itself"),
                ));
            } else if !names.contains_key(need.value.as_str()) {
                let hint = did_you_mean(&need.value, names.keys().copied())
                    .map(|s| format!(": did you mean `{s}`?"))
                    .unwrap_or_default();
                errors.push(ConfigError::new(
                    need.location(),
                    format!(
                        "streams[{i}].needs: there is no stream named `{}`{hint}",
                        need.value
                    ),
                ));
            }
        }
    }
    for (i, stream) in config.streams.iter().enumerate() {
        let Some(g) = stream.sink.gleap() else {
            continue;
        };
        for (field, parent) in &g.refs {
            let target = config.streams.iter().find(|s| s.name.value == *parent);
            let problem = match target {
                _ if *parent == stream.name.value => {
                    Some("a stream cannot refer to itself".to_string())
                }
                None => Some(format!(
                    "there is no stream named `{parent}`{}",
                    did_you_mean(parent, names.keys().copied())
                        .map(|s| format!(": did you mean `{s}`?"))
                        .unwrap_or_default()
                )),
                Some(t) if !t.sink.writes_gleap() => Some(format!(
                    "stream `{parent}` does not write to Gleap, so it has no Gleap ids"
                )),
                Some(_) => None,
            };
            if let Some(problem) = problem {
                errors.push(ConfigError::at(
                    format!("streams[{i}].sink.gleap.refs.{field}"),
                    problem,
                ));
            }
        }
    }
    errors.extend(paths::check_outputs(config, root));
    if let Some((stream, cycle)) = find_cycle(config) {
        errors.push(ConfigError::new(
            stream.name.location(),
            format!(
                "streams need each other in a circle: {}",
                cycle.join(" -> ")
            ),
        ));
    }
    errors
}

fn sink_location(root: &Node, stream: usize) -> Location {
    root.get("streams")
        .and_then(Node::as_seq)
        .and_then(|s| s.get(stream))
        .and_then(|s| s.get("sink"))
        .map_or(Location::UNKNOWN, |n| n.location)
}

fn check_stream(stream: &StreamConfig, path: &str) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    if let Some(e) = check_name(&format!("{path}.name"), &stream.name) {
        errors.push(e);
    }
    for (j, t) in stream.transforms.iter().enumerate() {
        errors.extend(t.check(&format!("{path}.transforms[{j}]")));
    }
    for (name, value) in [
        ("jq_timeout_ms", &stream.jq_timeout_ms),
        ("jq_max_outputs", &stream.jq_max_outputs),
    ] {
        if let Some(v) = value.as_ref().filter(|v| v.value == 0) {
            errors.push(ConfigError::new(
                v.location(),
                format!("{path}.{name}: must be at least 1"),
            ));
        }
    }
    errors.extend(stream.source.check(&format!("{path}.source")));
    errors.extend(stream.sink.check(&format!("{path}.sink")));
    errors
}

fn check_name(path: &str, name: &Spanned<String>) -> Option<ConfigError> {
    let ok = !name.value.is_empty()
        && name
            .value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.value.starts_with('.');
    (!ok).then(|| {
        ConfigError::new(
            name.location(),
            format!(
                "{path}: `{}` is not a usable name: use letters, digits, `-`, `_` and `.`",
                name.value
            ),
        )
    })
}

/// A stream that is part of a circle of `needs`, and the circle.
fn find_cycle(config: &PipelineConfig) -> Option<(&StreamConfig, Vec<String>)> {
    let by_name: HashMap<&str, &StreamConfig> = config
        .streams
        .iter()
        .map(|s| (s.name.value.as_str(), s))
        .collect();
    for start in &config.streams {
        let mut path = vec![start.name.value.clone()];
        let mut seen = HashSet::new();
        if visit(start, &by_name, &mut path, &mut seen, &start.name.value) {
            return Some((start, path));
        }
    }
    return None;

    fn visit(
        s: &StreamConfig,
        by_name: &HashMap<&str, &StreamConfig>,
        path: &mut Vec<String>,
        seen: &mut HashSet<String>,
        target: &str,
    ) -> bool {
        for need in s.dependencies() {
            if need == s.name.value {
                continue;
            }
            if need == target {
                path.push(need.to_string());
                return true;
            }
            if !seen.insert(need.to_string()) {
                continue;
            }
            if let Some(next) = by_name.get(need) {
                path.push(need.to_string());
                if visit(next, by_name, path, seen, target) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
}
