//! The crate's one error type.

use std::path::PathBuf;

/// Why a benchmark could not run or could not be trusted.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The options cannot describe a meaningful run.
    #[error("invalid benchmark options: {0}")]
    InvalidOptions(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Storage(#[from] pm_storage::StorageError),
    #[error(transparent)]
    Loadtest(#[from] crate::loadtest::LoadtestError),
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
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot encode or decode a report: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot draw the chart: {0}")]
    Chart(String),
    #[error("HTTP baseline: {0}")]
    Http(String),
    /// A worker task panicked or was cancelled.
    #[error("a benchmark task failed: {0}")]
    Task(String),
}

impl BenchError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        BenchError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
