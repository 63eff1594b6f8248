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

    pub fn output(path: impl AsRef<Path>, message: impl std::fmt::Display) -> Error {
        Error::Output {
            path: path.as_ref().to_path_buf(),
            message: message.to_string(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
