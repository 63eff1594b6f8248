//! The errors that stop a run, each saying whose fault it is: the pipeline file, an input,
//! an output, or a limit the user set.

use std::path::{Path, PathBuf};

use crate::config::ConfigErrors;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pipeline file is wrong; every problem is listed.
    #[error("{0}")]
    Config(#[from] ConfigErrors),

    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// An input cannot be read any further (corrupt compression, unreadable Parquet...).
    #[error("{location}: {message}")]
    Input { location: String, message: String },

    /// An output cannot be written.
    #[error("{}: {message}", path.display())]
    Output { path: PathBuf, message: String },

    /// More records went to the dead-letter file than `--max-errors` allows.
    #[error(
        "stopped: {} went to the dead-letter file, more than --max-errors {max} allows (see {})",
        crate::engine::report::records(*count),
        file.display()
    )]
    TooManyErrors { count: u64, max: u64, file: PathBuf },

    /// A stream could not run because a stream it needs failed.
    #[error("stream `{stream}` did not run: it needs `{needs}`, which failed")]
    DependencyFailed { stream: String, needs: String },

    /// The state store could not be read or written.
    #[error("state store {}: {message}", path.display())]
    State { path: PathBuf, message: String },

    /// Gleap (or the way to it) failed a request: `status` when Gleap answered, `retryable`
    /// when running again may succeed (retries ran out, no answer) rather than needing a
    /// change (a refusal).
    #[error("{}", with_context(context, message))]
    Remote {
        context: String,
        status: Option<u16>,
        retryable: bool,
        message: String,
    },

    /// The run was interrupted.
    #[error(
        "interrupted: unfinished outputs were left as they were; what was confirmed is kept for the next run"
    )]
    Interrupted,

    /// Anything else, with its context already in the message.
    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    pub fn input(location: impl Into<String>, message: impl std::fmt::Display) -> Error {
        Error::Input {
            location: location.into(),
            message: message.to_string(),
        }
    }

    /// A Gleap request that failed, `context` saying what it was for.
    pub fn remote(context: impl Into<String>, e: &crate::gleap::client::CallError) -> Error {
        use crate::gleap::client::CallError;
        let (status, retryable) = match e {
            CallError::Rejected { status, .. } => (Some(*status), false),
            CallError::Ambiguous(_) | CallError::GaveUp(_) => (None, true),
            CallError::Fatal(_) => (None, false),
        };
        Error::Remote {
            context: context.into(),
            status,
            retryable,
            message: e.to_string(),
        }
    }

    /// An answer of Gleap's that cannot be used (a list whose pages cannot be followed, a
    /// filter it ignores): `message` says which and why.
    pub fn unusable_answer(message: impl Into<String>) -> Error {
        Error::Remote {
            context: String::new(),
            status: None,
            retryable: false,
            message: message.into(),
        }
    }

    /// A list Gleap answered in a way that cannot be followed (or a request of it failed).
    pub fn paging(context: impl Into<String>, e: &crate::gleap::paging::PagingError) -> Error {
        Error::Remote {
            context: context.into(),
            status: None,
            retryable: false,
            message: e.to_string(),
        }
    }

    pub fn output(path: impl AsRef<Path>, message: impl std::fmt::Display) -> Error {
        Error::Output {
            path: path.as_ref().to_path_buf(),
            message: message.to_string(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `context: message`, or the message alone.
fn with_context(context: &str, message: &str) -> String {
    if context.is_empty() {
        message.to_string()
    } else {
        format!("{context}: {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gleap::client::CallError;

    #[test]
    fn remote_errors_say_whether_a_run_again_may_succeed() {
        let refused = Error::remote(
            "creating ticket 7",
            &CallError::Rejected {
                status: 400,
                message: "title must be a string".into(),
            },
        );
        assert!(matches!(
            refused,
            Error::Remote {
                status: Some(400),
                retryable: false,
                ..
            }
        ));
        assert_eq!(
            refused.to_string(),
            "creating ticket 7: Gleap answered 400: title must be a string"
        );
        let gave_up = Error::remote("listing tickets", &CallError::GaveUp("5 attempts".into()));
        assert!(matches!(
            gave_up,
            Error::Remote {
                status: None,
                retryable: true,
                ..
            }
        ));
        let ignored = Error::unusable_answer("GET /sessions ignores `skip`");
        assert_eq!(ignored.to_string(), "GET /sessions ignores `skip`");
        assert!(matches!(
            ignored,
            Error::Remote {
                retryable: false,
                ..
            }
        ));
        let state = Error::State {
            path: "s/state.sqlite".into(),
            message: "database is locked".into(),
        };
        assert_eq!(
            state.to_string(),
            "state store s/state.sqlite: database is locked"
        );
    }
}
