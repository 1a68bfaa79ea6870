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
    Config(#[from] crate::settings::ConfigError),
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
            // The machine refused, not the operator's input: a full disk, a read-only mount and
            // missing permission are fixed on the system, so scripts must see them as such.
            Error::Io { source, .. } if refused_by_system(source) => exit_codes::ENVIRONMENT_ERROR,
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
                io::ErrorKind::StorageFull => Some(
                    "free space on that filesystem (`df -h` shows it), then run the command again"
                        .into(),
                ),
                io::ErrorKind::ReadOnlyFilesystem => Some(
                    "the filesystem is mounted read-only; remount it read-write, or copy the tree somewhere writable".into(),
                ),
                io::ErrorKind::QuotaExceeded => Some(
                    "your disk quota is used up; free some of it, then run the command again"
                        .into(),
                ),
                _ => None,
            },
            Error::Input { hint, .. }
            | Error::NothingToDo { hint, .. }
            | Error::Environment { hint, .. } => hint.clone(),
            Error::Config(e) => e.hint(),
        }
    }
}

fn refused_by_system(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::PermissionDenied
            | io::ErrorKind::StorageFull
            | io::ErrorKind::ReadOnlyFilesystem
            | io::ErrorKind::QuotaExceeded
    )
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_or_read_only_disk_is_the_environment_not_the_input() {
        for errno in [libc::ENOSPC, libc::EROFS, libc::EDQUOT, libc::EACCES] {
            let e = Error::io("/x/chan_sip.c", io::Error::from_raw_os_error(errno));
            assert_eq!(
                e.exit_code(),
                exit_codes::ENVIRONMENT_ERROR,
                "errno {errno}"
            );
            assert!(e.hint().is_some(), "errno {errno} has no hint");
        }
        let e = Error::io("/x", io::Error::from_raw_os_error(libc::EISDIR));
        assert_eq!(e.exit_code(), exit_codes::INPUT_ERROR);
    }
}
