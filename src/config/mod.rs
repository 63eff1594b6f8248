//! Pipeline files: one YAML document per pipeline, parsed into located nodes, interpolated
//! from the environment, deserialized into typed configs and checked, with every problem
//! reported at once as `file:line:column: message`.
//!
//! Checking is pure: it reads the pipeline file and nothing else. Input files, lookup tables
//! and outputs are opened when the pipeline runs.

pub mod de;
pub mod error;
pub mod interpolate;
mod paths;
pub mod spanned;
pub mod yaml;

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;

pub use error::{ConfigError, ConfigErrors, Location, checked, did_you_mean};
pub use interpolate::{Env, ProcessEnv};
pub use spanned::{Span, Spanned};

use de::{ConfigPath, from_node};
use yaml::Node;

use crate::sinks::SinkConfig;
use crate::sources::SourceConfig;
use crate::transforms::TransformConfig;

/// The pipeline format version this build reads.
pub const FORMAT_VERSION: u32 = 1;

/// A pipeline: streams of records from sources, through transforms, into sinks.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "gleap-etl pipeline")]
pub struct PipelineConfig {
    /// The format version: 1.
    pub version: Spanned<u32>,
    /// The pipeline's name (letters, digits, `-`, `_`, `.`); the default state directory is
    /// `.gleap-etl/<name>`.
    pub name: Spanned<String>,
    /// Where the run keeps its state and its dead-letter file. Default `.gleap-etl/<name>`.
    #[serde(default)]
    pub state_dir: Option<String>,
    /// How to reach Gleap, for Gleap sinks: `base_url`, `api_key`, `project` (default
    /// `${GLEAP_BASE_URL}`, `${GLEAP_API_KEY}`, `${GLEAP_PROJECT_ID}`), `requests_per_minute`,
    /// `concurrency`, `timeout_secs`, `max_attempts`.
    #[serde(default)]
    pub gleap: Option<crate::gleap::client::GleapConfig>,
    /// The streams. Each runs after the streams it `needs`; the others run side by side.
    pub streams: Vec<StreamConfig>,
}

/// One flow of records: a source, transform stages, a sink.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// The stream's name, unique in the pipeline.
    pub name: Spanned<String>,
    /// Streams that must finish first (for example the one that writes a lookup table).
    #[serde(default)]
    pub needs: Vec<Spanned<String>>,
    /// Where records come from.
    pub source: SourceConfig,
    /// Stages applied to each record, in order.
    #[serde(default)]
    pub transforms: Vec<TransformConfig>,
    /// Where records go.
    pub sink: SinkConfig,
    /// How long each jq stage (`filter`, `set`, `jq`) may run on one record, in
    /// milliseconds; a record that takes longer is dead-lettered. Default 10000.
    #[serde(default)]
    pub jq_timeout_ms: Option<Spanned<u64>>,
    /// How many outputs a `jq` stage may give for one record; more dead-letters the record.
    /// Default 100000.
    #[serde(default)]
    pub jq_max_outputs: Option<Spanned<u64>>,
}

impl StreamConfig {
    /// The per-record limits of the stream's jq stages, with the defaults.
    pub fn jq_limits(&self) -> crate::jq::JqLimits {
        let defaults = crate::jq::JqLimits::default();
        crate::jq::JqLimits {
            timeout: self.jq_timeout_ms.as_ref().map_or(defaults.timeout, |ms| {
                std::time::Duration::from_millis(ms.value)
            }),
            max_outputs: self
                .jq_max_outputs
                .as_ref()
                .map_or(defaults.max_outputs, |n| n.value as usize),
        }
    }

    /// The streams this one waits for: its `needs` and the streams its Gleap sink's `refs`
    /// name (their ids must exist first).
    pub fn dependencies(&self) -> Vec<&str> {
        let mut deps: Vec<&str> = self.needs.iter().map(|n| n.value.as_str()).collect();
        if let Some(g) = self.sink.gleap() {
            for parent in g.refs.values() {
                if !deps.contains(&parent.as_str()) {
                    deps.push(parent);
                }
            }
        }
        deps
    }
}

/// A loaded, checked pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub file: PathBuf,
    pub config: PipelineConfig,
}

/// A pipeline file that is not UTF-8, located at its first bad byte.
fn not_utf8(file: &Path, e: &std::string::FromUtf8Error) -> ConfigErrors {
    let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
    let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&good[line_start..]).chars().count() + 1;
    let byte = e.as_bytes()[good.len()];
    ConfigErrors::new(
        file,
        vec![ConfigError::new(
            Location {
                line: line as u32,
                column: column as u32,
            },
            format!(
                "not UTF-8 text (byte 0x{byte:02x}): a pipeline file must be UTF-8; \
                 is this the right file?"
            ),
        )],
    )
}

impl Pipeline {
    /// Reads and checks a pipeline file, interpolating from the process environment.
    pub fn load(file: &Path) -> Result<Pipeline, crate::Error> {
        Self::load_with_env(file, &ProcessEnv)
    }

    pub fn load_with_env(file: &Path, env: &dyn Env) -> Result<Pipeline, crate::Error> {
        let bytes = std::fs::read(file).map_err(|e| crate::Error::io(file, e))?;
        let text = String::from_utf8(bytes).map_err(|e| not_utf8(file, &e))?;
        Ok(Self::parse(&text, file, env)?)
    }

    /// Parses and checks pipeline text; `file` names it in errors.
    pub fn parse(text: &str, file: &Path, env: &dyn Env) -> Result<Pipeline, ConfigErrors> {
        let mut root = yaml::parse(text).map_err(|e| ConfigErrors::new(file, vec![e]))?;
        let mut errors = interpolate::interpolate_tree(&mut root, env);
        let side = RefCell::new(Vec::new());
        let config = match from_node::<PipelineConfig>(&root, &ConfigPath::root(), &side) {
            Ok(config) => {
                errors.extend(check(&config, &root));
                Some(config)
            }
            Err(e) => {
                errors.push(e);
                None
            }
        };
        if !errors.is_empty() || !side.borrow().is_empty() {
            errors.extend(check_piecewise(&root, &side));
        }
        errors.extend(side.into_inner());
        for e in &mut errors {
            if let (false, Some(path)) = (e.location.is_known(), &e.path) {
                e.location = locate(&root, path);
            }
        }
        match config {
            Some(config) if errors.is_empty() => Ok(Pipeline {
                file: file.to_path_buf(),
                config,
            }),
            _ => Err(ConfigErrors::new(file, errors)),
        }
    }

    /// A pipeline built in code (`export`), checked as a file is: its errors name
    /// options by their config path, as there are no lines to point at.
    pub fn from_config(config: PipelineConfig, file: &Path) -> Result<Pipeline, ConfigErrors> {
        let nowhere = Node {
            kind: yaml::NodeKind::Map(Vec::new()),
            location: Location::UNKNOWN,
            interpolated: Vec::new(),
        };
        let errors = check(&config, &nowhere);
        if errors.is_empty() {
            Ok(Pipeline {
                file: file.to_path_buf(),
                config,
            })
        } else {
            Err(ConfigErrors::new(file, errors))
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name.value
    }

    /// The state directory: `--state-dir`, else the file's `state_dir`, else
    /// `.gleap-etl/<name>`.
    pub fn state_dir(&self, overridden: Option<&Path>) -> PathBuf {
        match (overridden, &self.config.state_dir) {
            (Some(dir), _) => dir.to_path_buf(),
            (None, Some(dir)) => PathBuf::from(dir),
            (None, None) => Path::new(".gleap-etl").join(self.name()),
        }
    }
}

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

/// Deserializes the parts of a pipeline one by one after the whole failed, so that one
/// broken part does not hide the problems of the others. A misspelt key (`transfroms`) is
/// read as the key it was meant to be, so the problems inside it show up too.
fn check_piecewise(root: &Node, side: &RefCell<Vec<ConfigError>>) -> Vec<ConfigError> {
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
fn check(config: &PipelineConfig, root: &Node) -> Vec<ConfigError> {
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

/// The JSON Schema of the pipeline format, for editors.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(PipelineConfig);
    serde_json::to_value(schema).expect("a schema is JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Pipeline, ConfigErrors> {
        let env = |name: &str| (name == "OUT").then(|| "out".to_string());
        Pipeline::parse(text, Path::new("p.yaml"), &env)
    }

    const GOOD: &str = r#"version: 1
name: users-to-parquet
streams:
  - name: users
    source:
      csv: { path: samples/users.csv }
    transforms:
      - filter: '.email != null and .email != ""'
      - rename: { user_id: userId, full_name: name }
      - set: { "customData.plan": '.plan // "free"' }
      - cast: { "customData.seats": int, signup: timestamp }
      - default: { lang: en }
      - drop: [plan]
      - dedupe: { key: userId }
      - jq: '.tags = (.tags | split(","))'
    sink:
      parquet: { path: "${OUT}/users.parquet" }
"#;

    #[test]
    fn the_documented_example_loads() {
        let p = parse(GOOD).unwrap();
        assert_eq!(p.name(), "users-to-parquet");
        assert_eq!(p.state_dir(None), Path::new(".gleap-etl/users-to-parquet"));
        assert_eq!(p.config.streams[0].transforms.len(), 8);
        assert_eq!(p.config.streams[0].sink.path(), Some("out/users.parquet"));
    }

    #[test]
    fn three_different_mistakes_give_three_located_errors() {
        let text = GOOD
            .replace("    transforms:", "    transfroms:")
            .replace("      parquet: { path", "    parquet: { path")
            .replace(
                "'.email != null and .email != \"\"'",
                "'.email != null and (.email'",
            );
        // The sink block lost its indentation and the key is misspelt; the filter is cut short.
        let errs = parse(&text).unwrap_err();
        let lines: Vec<String> = errs.to_string().lines().map(str::to_string).collect();
        assert!(lines.len() >= 3, "{lines:#?}");
        assert!(lines.iter().any(|l| l.starts_with("p.yaml:7:5: streams[0].transfroms: unknown field `transfroms`: did you mean `transforms`?")), "{lines:#?}");
        assert!(
            lines.iter().any(|l| l
                .starts_with("p.yaml:17:5: streams[0].parquet: unknown field `parquet`")
                && l.contains("indented under `sink` on line 16")),
            "{lines:#?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("p.yaml:8:") && l.contains("invalid jq expression")),
            "{lines:#?}"
        );
    }

    #[test]
    fn stream_references_and_names_are_checked() {
        let text = r#"version: 2
name: x
streams:
  - name: a
    needs: [b]
    source: { jsonl: { path: in.jsonl } }
    sink: { jsonl: { path: o1.jsonl } }
  - name: b
    needs: [a, nope]
    source: { jsonl: { path: in.jsonl } }
    sink: { jsonl: { path: o1.jsonl } }
  - name: a
    needs: [a]
    source: { jsonl: { path: in.jsonl } }
    sink: { jsonl: { path: o3.jsonl } }
"#;
        let msgs: Vec<String> = parse(text)
            .unwrap_err()
            .errors
            .into_iter()
            .map(|e| format!("{}:{} {}", e.location.line, e.location.column, e.message))
            .collect();
        let has = |needle: &str| msgs.iter().any(|m| m.contains(needle));
        assert!(
            has("1:10 version: this gleap-etl reads pipeline format version 1, not 2"),
            "{msgs:#?}"
        );
        assert!(has("there is no stream named `nope`"), "{msgs:#?}");
        assert!(
            has("a stream named `a` is already defined on line 4"),
            "{msgs:#?}"
        );
        assert!(has("a stream cannot need itself"), "{msgs:#?}");
        assert!(has("streams `a` and `b` both write o1.jsonl"), "{msgs:#?}");
        assert!(
            has("streams need each other in a circle: a -> b -> a"),
            "{msgs:#?}"
        );
    }

    #[test]
    fn missing_environment_variables_are_located() {
        let text = GOOD.replace("${OUT}", "${NOT_SET:?set NOT_SET to the output folder}");
        let errs = parse(&text).unwrap_err();
        assert_eq!(errs.errors.len(), 1, "{errs}");
        assert_eq!(errs.errors[0].location.line, 17);
        assert!(
            errs.errors[0]
                .message
                .contains("set NOT_SET to the output folder")
        );
    }

    #[test]
    fn yaml_syntax_errors_are_located() {
        let errs = parse("version: 1\nname: [x\n").unwrap_err();
        assert_eq!(errs.errors.len(), 1);
        assert!(errs.to_string().starts_with("p.yaml:"), "{errs}");
    }

    #[test]
    fn the_schema_names_every_component() {
        let schema = json_schema().to_string();
        for word in [
            "csv",
            "parquet",
            "jsonl",
            "filter",
            "rename",
            "lookup",
            "dedupe",
            "needs",
            "state_dir",
        ] {
            assert!(
                schema.contains(&format!("\"{word}\"")),
                "{word} missing from the schema"
            );
        }
    }
}
