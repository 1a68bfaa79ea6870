//! The library's error type. Every variant knows its exit code and, where one exists, a hint
//! that tells the operator what to do next; the CLI prints `error: ...` then `hint: ...`.
use std::io;
use std::path::PathBuf;

use crate::exit_codes;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The input is not what it must be (wrong kind of path, malformed file, bad argument).
    #[error("{message}")]
    Input {
        message: String,
        hint: Option<String>,
    },
    /// The request is sound but the thing asked about cannot be done (e.g. no chan_sip in 21+).
    #[error("{message}")]
    NothingToDo {
        message: String,
        hint: Option<String>,
    },
    /// The environment refused: a command missing or failing, permission denied.
    #[error("{message}")]
    Environment {
        message: String,
        hint: Option<String>,
    },
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn input(message: impl Into<String>, hint: Option<&str>) -> Self {
        Error::Input {
            message: message.into(),
            hint: hint.map(str::to_owned),
        }
    }

    pub fn nothing_to_do(message: impl Into<String>, hint: Option<&str>) -> Self {
        Error::NothingToDo {
            message: message.into(),
            hint: hint.map(str::to_owned),
        }
    }

    pub fn environment(message: impl Into<String>, hint: Option<&str>) -> Self {
        Error::Environment {
            message: message.into(),
            hint: hint.map(str::to_owned),
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Io { source, .. } if source.kind() == io::ErrorKind::PermissionDenied => {
                exit_codes::ENVIRONMENT_ERROR
            }
            Error::Io { .. } | Error::Input { .. } | Error::Config(_) => exit_codes::INPUT_ERROR,
            Error::NothingToDo { .. } => exit_codes::CHECK_FAILED,
            Error::Environment { .. } => exit_codes::ENVIRONMENT_ERROR,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Io { source, .. } => match source.kind() {
                io::ErrorKind::NotFound => Some("check the path; it does not exist".into()),
                io::ErrorKind::PermissionDenied => {
                    Some("run as a user that may read/write it (often root)".into())
                }
                _ => None,
            },
            Error::Input { hint, .. }
            | Error::NothingToDo { hint, .. }
            | Error::Environment { hint, .. } => hint.clone(),
            Error::Config(e) => e.hint(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
