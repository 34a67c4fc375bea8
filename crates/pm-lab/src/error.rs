//! The lab's one error type, shared by every instrument: the load test, the baseline, the
//! partitioning experiment and their reports.

use std::path::PathBuf;

/// Why a measurement could not run, could not be trusted, or its report could not be read
/// or written.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A setting is out of range, or the options cannot describe a meaningful run.
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
    /// Statement statistics could not be reset or read.
    #[error(transparent)]
    Statements(#[from] crate::statements::ProfilerError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Storage(#[from] pm_storage::StorageError),
    /// The server has no pg_partman to install; the partitioned layout needs it.
    #[error(
        "pg_partman is not available on this PostgreSQL server \
         (Debian/Ubuntu: apt-get install postgresql-{major}-partman)"
    )]
    PartmanMissing { major: u32 },
    /// The layouts answered a query with different numbers of rows: they do not hold the same
    /// data, so comparing their costs would be meaningless.
    #[error("query `{query}` returned different row counts per layout: {counts}")]
    RowCountMismatch { query: String, counts: String },
    /// Generated rows fell outside the daily partitions (into the default partition), which
    /// would make the partitioned layout's plans unrepresentative.
    #[error("{rows} rows landed in the default partition of the partitioned layout")]
    RowsInDefaultPartition { rows: i64 },
    /// A partition of the clustered layout could not be clustered, so that layout would not
    /// be what it claims to be.
    #[error("{partition} of the clustered layout was not clustered ({outcome})")]
    NotClustered { partition: String, outcome: String },
    /// `EXPLAIN (FORMAT JSON)` returned something this crate does not understand.
    #[error("unexpected EXPLAIN output: {0}")]
    Explain(String),
    /// A file could not be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A report file is not a result this version understands.
    #[error("{}: not a result this version reads: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    #[error("cannot encode or decode a report: {0}")]
    Json(#[from] serde_json::Error),
    /// The chart could not be drawn.
    #[error("cannot draw the chart: {0}")]
    Chart(String),
    #[error("read walk: {0}")]
    Walk(String),
    #[error("HTTP baseline: {0}")]
    Http(String),
    /// A standby did not keep up or catch up in time.
    #[error("replication: {0}")]
    Replication(String),
    /// A task panicked or was cancelled.
    #[error("a lab task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl LabError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        LabError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
