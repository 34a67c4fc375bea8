//! Exit codes a script can tell apart:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done; every check passed |
//! | 1 | the command could not do its job (an error: unreachable database, bad file, …) |
//! | 2 | usage: unknown flag, bad value, missing argument (clap's own code), or a value the command refuses before starting |
//! | 3 | the check ran and the answer is no: `verify` found mismatches, `migrate --check` found pending migrations, `demo` did not verify, `send` got a non-2xx answer |

use std::process::ExitCode;

/// Usage and configuration mistakes (clap exits with it too).
pub(crate) const USAGE: u8 = 2;
/// A check that ran and failed.
pub(crate) const CHECK_FAILED: u8 = 3;

/// The error of a check that ran and said no; `main` exits with [`CHECK_FAILED`].
#[derive(Debug)]
pub(crate) struct CheckFailed(pub(crate) String);

impl std::fmt::Display for CheckFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CheckFailed {}

/// A value the command refuses before doing anything (like clap's own usage errors, but
/// found by the command: an invalid field of `pmctl send`); `main` exits with [`USAGE`].
#[derive(Debug)]
pub(crate) struct Usage(pub(crate) String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// Fails with [`CheckFailed`] unless `ok`.
pub(crate) fn check(ok: bool, why: impl FnOnce() -> String) -> anyhow::Result<()> {
    if ok {
        Ok(())
    } else {
        Err(CheckFailed(why()).into())
    }
}

/// The exit code of a command's result.
pub(crate) fn code(result: &anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<CheckFailed>().is_some() => ExitCode::from(CHECK_FAILED),
        Err(e) if e.downcast_ref::<Usage>().is_some() => ExitCode::from(USAGE),
        Err(_) => ExitCode::FAILURE,
    }
}
