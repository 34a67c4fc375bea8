//! The errors of a load test: bad settings, a scenario that cannot be used, an HTTP client
//! that cannot be built, the API unreadable during verification, report files.

use std::path::PathBuf;

/// Why a load test (or one of its reports) could not be run or written.
#[derive(Debug, thiserror::Error)]
pub enum LoadtestError {
    /// A setting is out of range (a rate of 0, no connections, …).
    #[error("invalid setting: {0}")]
    Invalid(String),
    /// The scenario, or a variant of it made for the load test, is not valid.
    #[error("scenario: {0}")]
    Scenario(#[from] pm_scenario::ScenarioError),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// A histogram could not be created, merged or (de)serialized.
    #[error("histogram: {0}")]
    Histogram(String),
    /// Reading the database through the API failed during verification.
    #[error("verification: {0}")]
    Verify(#[from] crate::verify::VerifyError),
    /// A task of the engine panicked or was cancelled.
    #[error("a load-test task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A report file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// A report file is not a load-test result this version understands.
    #[error("{path}: not a load-test result: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Statement statistics could not be reset or read.
    #[error(transparent)]
    Statements(#[from] crate::statements::ProfilerError),
    /// The chart could not be drawn.
    #[error("chart: {0}")]
    Chart(String),
}
