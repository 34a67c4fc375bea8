use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Why an embedded cluster could not be started or stopped.
///
/// Messages are written for the person who has to fix the machine: they name the missing
/// piece and, where the server itself complained, quote the end of its log.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// No directory holding the server binaries was found by any discovery rule.
    #[error(
        "PostgreSQL server binaries (initdb, postgres) were not found; install them with \
         `apt-get install -y postgresql postgresql-<ver>-partman` (Debian/Ubuntu) or set \
         PM_PG_BIN_DIR"
    )]
    BinariesNotFound,

    /// `PM_PG_BIN_DIR` is set but does not hold the programs we need.
    #[error(
        "PM_PG_BIN_DIR={} does not contain `{missing}`; point it at the directory holding \
         initdb and postgres (e.g. /usr/lib/postgresql/15/bin)",
        dir.display()
    )]
    InvalidBinDir {
        /// The directory named by `PM_PG_BIN_DIR`.
        dir: PathBuf,
        /// The first program that is missing from it.
        missing: &'static str,
    },

    /// `postgres --version` did not print a version we could read.
    #[error("could not read the PostgreSQL version from `{} --version`: {output:?}", program.display())]
    UnknownVersion {
        /// The `postgres` binary that was asked.
        program: PathBuf,
        /// What it printed.
        output: String,
    },

    /// A reused data directory was created by another major version than the binaries found.
    #[error(
        "{} holds a PostgreSQL {found} cluster, but the server binaries found are version \
         {expected}; use a new directory or set PM_PG_BIN_DIR to the matching binaries",
        data_dir.display()
    )]
    VersionMismatch {
        /// The reused data directory.
        data_dir: PathBuf,
        /// The contents of its `PG_VERSION` file.
        found: String,
        /// The major version of the binaries found.
        expected: u32,
    },

    /// This process is root, so the server has to run as the `postgres` user, which is missing.
    #[error(
        "running as root, and PostgreSQL refuses to run as root, but there is no `postgres` \
         system user to run it as (`id postgres` said: {detail}); install the `postgresql` \
         package or run as an ordinary user"
    )]
    NoPostgresUser {
        /// What the user lookup reported.
        detail: String,
    },

    /// One of [`crate::EmbeddedOptions::settings`] cannot be passed to the server.
    #[error("server setting {name:?} refused: {reason}")]
    InvalidSetting {
        /// The parameter's name as given.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// A file-system operation on the cluster's directory failed.
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        /// What we were doing, as a verb phrase ("create directory").
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },

    /// A program could not be started at all.
    #[error("could not run `{program}`: {source}")]
    Spawn {
        /// The program, as it was named on the command line.
        program: String,
        /// The underlying error.
        source: io::Error,
    },

    /// `pg_basebackup` could not copy the primary for a standby.
    #[error("pg_basebackup from the primary on port {primary_port} failed ({status}) for {}:\n{output}", data_dir.display())]
    BaseBackup {
        /// Its exit status.
        status: ExitStatus,
        primary_port: u16,
        /// The directory it was copying into.
        data_dir: PathBuf,
        /// The end of what it printed.
        output: String,
    },

    /// `initdb` ran and failed.
    #[error("initdb failed ({status}) for {}:\n{output}", data_dir.display())]
    Initdb {
        /// Its exit status.
        status: ExitStatus,
        /// The directory it was initialising.
        data_dir: PathBuf,
        /// The end of what it printed.
        output: String,
    },

    /// The server exited before it accepted a connection.
    #[error(
        "PostgreSQL exited during startup (exit status {status}) after {attempts} attempt(s); \
         last lines of {}:\n{log_tail}",
        log_path.display()
    )]
    ExitedDuringStartup {
        /// The server's exit status as the shell reported it.
        status: i32,
        /// How many ports were tried.
        attempts: u32,
        /// The server log.
        log_path: PathBuf,
        /// Its last lines.
        log_tail: String,
    },

    /// The server kept running but did not accept a connection (or, recovering to a target,
    /// did not finish recovery and take writes) before the deadline.
    #[error(
        "PostgreSQL was not ready within {timeout:?} (last error: {last_error}); \
         last lines of {}:\n{log_tail}",
        log_path.display()
    )]
    NotReady {
        /// How long we waited.
        timeout: Duration,
        /// The error of the last connection attempt.
        last_error: String,
        /// The server log.
        log_path: PathBuf,
        /// Its last lines.
        log_tail: String,
    },

    /// A data directory in archive recovery (`recovery.signal`, as a restore leaves it)
    /// paused instead of promoting — at its recovery target, with `recovery_target_action =
    /// 'pause'` — so it would take no writes until someone resumed it; the server was stopped.
    #[error(
        "PostgreSQL's recovery of {} paused instead of promoting (recovery_target_action = \
         'pause', PostgreSQL's default, waits at the target; the log may give another reason); \
         restore with recovery_target_action = 'promote', or start the directory yourself and \
         run `SELECT pg_wal_replay_resume()`; last lines of {}:\n{log_tail}",
        data_dir.display(),
        log_path.display()
    )]
    RecoveryPaused {
        /// The recovered data directory.
        data_dir: PathBuf,
        /// The server log.
        log_path: PathBuf,
        /// Its last lines.
        log_tail: String,
    },

    /// The server runs, but one of its loopback addresses reaches another process: something
    /// else held the port there when the server bound it.
    #[error(
        "PostgreSQL started, but {address} port {port} does not reach it ({detail}); another \
         process holds that port there, so clients connecting by name could reach it instead; \
         choose another port"
    )]
    AddressTaken {
        /// The address that reaches something else.
        address: std::net::IpAddr,
        /// The cluster's port.
        port: u16,
        /// What the check found there.
        detail: String,
    },

    /// `stop()` closed the watchdog's pipe but the server did not finish shutting down in time.
    #[error("PostgreSQL did not shut down within {0:?}")]
    StopTimeout(Duration),

    /// A blocking helper task panicked or was cancelled.
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl EmbeddedError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn spawn(program: impl std::fmt::Display, source: io::Error) -> Self {
        Self::Spawn {
            program: program.to_string(),
            source,
        }
    }
}
