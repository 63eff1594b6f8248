//! The errors that stop a run, each saying whose fault it is: the pipeline file, an input,
//! an output, or a limit the user set.

use std::path::{Path, PathBuf};

use crate::config::{ConfigError, ConfigErrors};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pipeline file is wrong; every problem is listed.
    #[error("{0}")]
    Config(#[from] ConfigErrors),

    /// A file or folder could not be read, written or created.
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

    /// The embedded Gleap emulator (`--emulator`) could not serve: its address cannot be
    /// listened on.
    #[error("{message}")]
    Emulator { message: String },

    /// gleap-etl itself (or the machine under it) failed, not the pipeline, an input or
    /// Gleap: a thread or async runtime could not start, a thread or task panicked, a part of
    /// the run was not handed what it needs. `message` says which.
    #[error("{message}")]
    Internal { message: String },
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

    /// A problem with the pipeline or the command's options found outside a pipeline file
    /// (a flag, a component built in code), `message` naming the option.
    pub fn config(message: impl Into<String>) -> Error {
        Error::Config(ConfigErrors::unplaced(vec![ConfigError::new(
            crate::config::Location::UNKNOWN,
            message,
        )]))
    }

    /// A problem with the option at config path `path` (`sink.parquet.compression_level`):
    /// `path: message`.
    pub fn config_at(path: impl Into<String>, message: impl std::fmt::Display) -> Error {
        Error::Config(ConfigErrors::unplaced(vec![ConfigError::at(path, message)]))
    }

    pub fn internal(message: impl Into<String>) -> Error {
        Error::Internal {
            message: message.into(),
        }
    }

    /// The same error, said within `what` (a stage, a flag, a step of the run): `what: ...`
    /// before its text, the variant kept. An interruption and the run's own stops
    /// (`TooManyErrors`, `DependencyFailed`) are left as they are.
    pub fn within(self, what: impl std::fmt::Display) -> Error {
        self.reworded(Some(&what.to_string()), None)
    }

    /// The same error with `hint` (what to do about it) after its text; the variant kept.
    pub fn hinted(self, hint: &str) -> Error {
        self.reworded(None, Some(hint))
    }

    /// `what: ` before the error's text and `; hint` after it, where the variant has text.
    fn reworded(self, what: Option<&str>, hint: Option<&str>) -> Error {
        let before = |text: String| match what {
            Some(what) if text.is_empty() => what.to_string(),
            Some(what) => format!("{what}: {text}"),
            None => text,
        };
        let after = |text: String| match hint {
            Some(hint) => format!("{text}; {hint}"),
            None => text,
        };
        let both = |text: String| after(before(text));
        match self {
            Error::Config(mut errors) => {
                for e in &mut errors.errors {
                    e.message = both(std::mem::take(&mut e.message));
                }
                Error::Config(errors)
            }
            // The path is said first: `what` and the hint go with the cause.
            Error::Io { path, source } => Error::Io {
                path,
                source: std::io::Error::new(source.kind(), both(source.to_string())),
            },
            Error::Input { location, message } => Error::Input {
                location: before(location),
                message: after(message),
            },
            Error::Output { path, message } => Error::Output {
                path,
                message: both(message),
            },
            Error::State { path, message } => Error::State {
                path,
                message: both(message),
            },
            Error::Remote {
                context,
                status,
                retryable,
                message,
            } => Error::Remote {
                context: before(context),
                status,
                retryable,
                message: after(message),
            },
            Error::Emulator { message } => Error::Emulator {
                message: both(message),
            },
            Error::Internal { message } => Error::Internal {
                message: both(message),
            },
            e @ (Error::TooManyErrors { .. }
            | Error::DependencyFailed { .. }
            | Error::Interrupted) => e,
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

    #[test]
    fn internal_and_emulator_errors_say_their_message() {
        let e = Error::internal("cannot start a writer thread: out of threads");
        assert!(matches!(e, Error::Internal { .. }));
        assert_eq!(
            e.to_string(),
            "cannot start a writer thread: out of threads"
        );
        let e = Error::Emulator {
            message: "cannot listen on 127.0.0.1:1: permission denied".into(),
        };
        assert_eq!(
            e.to_string(),
            "cannot listen on 127.0.0.1:1: permission denied"
        );
    }

    #[test]
    fn config_errors_outside_a_file_are_one_line() {
        let e = Error::config_at("sink.parquet.compression_level", "40 is not a zstd level");
        assert!(matches!(&e, Error::Config(c) if c.errors.len() == 1));
        assert_eq!(
            e.to_string(),
            "sink.parquet.compression_level: 40 is not a zstd level"
        );
        // Several problems a component's `build` found: in the order found, on one line.
        let e = crate::config::checked(vec![
            ConfigError::at("sink.csv.delimiter", "must be one character"),
            ConfigError::at("sink.csv.b", "a"),
        ])
        .unwrap_err();
        assert!(matches!(e, Error::Config(_)));
        assert_eq!(
            e.to_string(),
            "sink.csv.delimiter: must be one character; sink.csv.b: a"
        );
        assert!(crate::config::checked(Vec::new()).is_ok());
    }

    #[test]
    fn within_and_hinted_keep_the_variant() {
        let e = Error::config("invalid jq expression `.a ==`: expected term")
            .within("transforms[0] (filter)");
        assert!(matches!(e, Error::Config(_)));
        assert_eq!(
            e.to_string(),
            "transforms[0] (filter): invalid jq expression `.a ==`: expected term"
        );

        let e = Error::remote(
            "deleting ticket 7",
            &CallError::Rejected {
                status: 500,
                message: "boom".into(),
            },
        )
        .within("prune")
        .hinted("the next full run goes on");
        assert!(matches!(
            e,
            Error::Remote {
                status: Some(500),
                retryable: false,
                ..
            }
        ));
        assert_eq!(
            e.to_string(),
            "prune: deleting ticket 7: Gleap answered 500: boom; the next full run goes on"
        );
        let e = Error::remote("", &CallError::Fatal("the key was refused".into()))
            .hinted("run undo again to go on");
        assert_eq!(
            e.to_string(),
            "the key was refused; run undo again to go on"
        );

        let e = Error::io(
            "t/plans.csv",
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        )
        .within("transforms[2] (lookup)");
        assert!(
            matches!(&e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
        );
        assert_eq!(
            e.to_string(),
            "t/plans.csv: transforms[2] (lookup): no such file"
        );

        let e = Error::input("a.csv:3", "unclosed quote").within("--sample");
        assert_eq!(e.to_string(), "--sample: a.csv:3: unclosed quote");
        assert!(matches!(e, Error::Input { .. }));

        let e = Error::State {
            path: "s/state.sqlite".into(),
            message: "database is locked".into(),
        }
        .hinted("run undo again to go on");
        assert_eq!(
            e.to_string(),
            "state store s/state.sqlite: database is locked; run undo again to go on"
        );

        // An interruption says what it always says.
        let e = Error::Interrupted.within("prune").hinted("x");
        assert!(matches!(e, Error::Interrupted));
    }
}
