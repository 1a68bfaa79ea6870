//! Distinct exit codes, so scripts and monitoring can tell "a check failed" from "you called me wrong".
use std::process::ExitCode;

/// Everything asked for was done, or every check passed.
pub const SUCCESS: u8 = 0;
/// A check failed, or there was nothing to do (e.g. no chan_sip in this release).
pub const CHECK_FAILED: u8 = 1;
/// Usage or input error: bad arguments, a path that is not an Asterisk tree, a malformed file.
pub const INPUT_ERROR: u8 = 2;
/// The environment refused: permission denied, a tool missing, a command that failed.
pub const ENVIRONMENT_ERROR: u8 = 3;

pub fn code(c: u8) -> ExitCode {
    ExitCode::from(c)
}
