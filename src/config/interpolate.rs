//! `${VAR}` interpolation from the environment, applied to each scalar value of a pipeline.
//!
//! | form              | unset            | set but empty    |
//! |-------------------|------------------|------------------|
//! | `${VAR}`          | error            | empty            |
//! | `${VAR:-default}` | `default`        | `default`        |
//! | `${VAR-default}`  | `default`        | empty            |
//! | `${VAR:?message}` | error `message`  | error `message`  |
//! | `${VAR?message}`  | error `message`  | empty            |
//!
//! `$$` stands for a literal `$`. Mapping keys are never interpolated.

use super::error::ConfigError;
use super::yaml::{Node, NodeKind};

/// Where variables come from; the process environment in production.
pub trait Env {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// Expands every value scalar of the tree in place; returns every error found.
pub fn interpolate_tree(root: &mut Node, env: &dyn Env) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    root.for_each_value_scalar_mut(&mut |node: &mut Node| {
        let location = node.location;
        if let NodeKind::Scalar(scalar) = &mut node.kind {
            if !scalar.text.contains('$') {
                return;
            }
            match expand(&scalar.text, env) {
                Ok(expansion) => {
                    if expansion.text != scalar.text {
                        scalar.verbatim = false;
                    }
                    for name in &expansion.variables {
                        if let Some(value) = env.get(name) {
                            crate::redact::remember(name, &value);
                        }
                    }
                    scalar.text = expansion.text;
                    node.interpolated = expansion.variables;
                }
                Err(message) => errors.push(ConfigError::new(location, message)),
            }
        }
    });
    errors
}

/// The result of expanding one string.
#[derive(Debug, PartialEq)]
pub struct Expansion {
    pub text: String,
    /// Variables whose values were substituted (not those that fell back to a default).
    pub variables: Vec<String>,
}

/// Expands `${...}` references in `text`.
pub fn expand(text: &str, env: &dyn Env) -> Result<Expansion, String> {
    let mut out = String::with_capacity(text.len());
    let mut variables = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(r) = rest.strip_prefix("$$") {
            out.push('$');
            rest = r;
            continue;
        }
        let Some(body_start) = rest.strip_prefix("${") else {
            out.push('$');
            rest = &rest[1..];
            continue;
        };
        let Some(end) = body_start.find('}') else {
            return Err(format!(
                "unterminated `${{` in {:?}: close it with `}}`",
                text
            ));
        };
        let body = &body_start[..end];
        rest = &body_start[end + 1..];

        let name_len = body
            .char_indices()
            .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(body.len(), |(i, _)| i);
        let (name, op) = body.split_at(name_len);
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!(
                "`${{{body}}}` is not a variable reference: expected ${{NAME}}, ${{NAME:-default}} or ${{NAME:?message}}"
            ));
        }
        let value = env.get(name);
        let (colon, op) = match op.strip_prefix(':') {
            Some(op) => (true, op),
            None => (false, op),
        };
        let missing = match &value {
            None => true,
            Some(v) => colon && v.is_empty(),
        };
        if op.is_empty() && !colon {
            match value {
                Some(v) => {
                    out.push_str(&v);
                    variables.push(name.to_string());
                }
                None => {
                    return Err(format!(
                        "environment variable {name} is not set (write ${{{name}:-default}} to give a default)"
                    ));
                }
            }
        } else if let Some(default) = op.strip_prefix('-') {
            if missing {
                out.push_str(default);
            } else {
                out.push_str(&value.unwrap_or_default());
                variables.push(name.to_string());
            }
        } else if let Some(message) = op.strip_prefix('?') {
            if missing {
                let message = if message.is_empty() {
                    "is not set"
                } else {
                    message
                };
                return Err(format!("environment variable {name}: {message}"));
            }
            out.push_str(&value.unwrap_or_default());
            variables.push(name.to_string());
        } else {
            return Err(format!(
                "`${{{body}}}` is not a variable reference: after the name expected `}}`, `:-`, `-`, `:?` or `?`"
            ));
        }
    }
    out.push_str(rest);
    Ok(Expansion {
        text: out,
        variables,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME_DIR" => Some("/home/ada".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn x(text: &str) -> Result<String, String> {
        expand(text, &env).map(|e| e.text)
    }

    #[test]
    fn expands_all_forms() {
        assert_eq!(x("${HOME_DIR}/out").unwrap(), "/home/ada/out");
        assert_eq!(x("${NOPE:-fallback}").unwrap(), "fallback");
        assert_eq!(x("${EMPTY:-fallback}").unwrap(), "fallback");
        assert_eq!(x("${EMPTY-fallback}").unwrap(), "");
        assert_eq!(x("${NOPE-fallback}").unwrap(), "fallback");
        assert_eq!(x("${HOME_DIR:?need it}").unwrap(), "/home/ada");
        assert_eq!(x("cost: $$5 and $x").unwrap(), "cost: $5 and $x");
        assert_eq!(x("${NOPE:-}").unwrap(), "");
    }

    #[test]
    fn reports_missing_and_malformed_references() {
        assert!(x("${NOPE}").unwrap_err().contains("NOPE is not set"));
        assert_eq!(
            x("${NOPE:?set the API key}").unwrap_err(),
            "environment variable NOPE: set the API key"
        );
        assert!(x("${EMPTY:?must not be empty}").is_err());
        assert!(x("${EMPTY?msg}").is_ok());
        assert!(x("${HOME_DIR").unwrap_err().contains("unterminated"));
        assert!(x("${1X}").unwrap_err().contains("not a variable reference"));
        assert!(
            x("${A+b}")
                .unwrap_err()
                .contains("not a variable reference")
        );
    }

    #[test]
    fn records_which_variables_were_used() {
        let e = expand("${HOME_DIR}:${NOPE:-d}", &env).unwrap();
        assert_eq!(e.variables, vec!["HOME_DIR".to_string()]);
    }
}
