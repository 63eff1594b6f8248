//! Pipelines: the type that aggregates sources, transforms and sinks into streams, above
//! the components. A pipeline file is one YAML document, parsed, interpolated and
//! deserialized by [`crate::config`], then checked as a whole here, with every problem
//! reported at once as `file:line:column: message`.
//!
//! Checking is pure: it reads the pipeline file and nothing else. Input files, lookup tables
//! and outputs are opened when the pipeline runs.

mod check;
mod paths;

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;

pub use crate::config::{ConfigError, ConfigErrors, Env, Location, ProcessEnv, Spanned};

use crate::config::de::{ConfigPath, from_node};
use crate::config::yaml::{self, Node};
use crate::config::{interpolate, locate};
use check::{check, check_piecewise};

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
