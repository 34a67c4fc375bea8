//! The storage error, with the classification the Kafka consumer and the API need:
//! transient errors (the database is unreachable, a serialization failure) are worth
//! retrying as they are; everything else is not.

/// An error from the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value that the domain does not accept: a schema/code mismatch.
    #[error("unexpected value {value:?} in column {column}")]
    Corrupt { column: &'static str, value: String },
    #[error(
        "pg_partman is not installed on the PostgreSQL {major} server. Install it on the database \
         host (Debian/Ubuntu: `apt-get install -y postgresql-{major}-partman`; RHEL-like: \
         `dnf install pg_partman_{major}`), then run `pmctl migrate` again"
    )]
    PartmanMissing { major: u32 },
    /// A pagination cursor whose id is not of the listed resource's id type.
    #[error("cursor is not one this API issued")]
    InvalidCursor,
    #[error("cannot encode event data: {0}")]
    Encode(#[from] serde_json::Error),
}

impl StorageError {
    pub(crate) fn corrupt(column: &'static str, value: impl std::fmt::Display) -> Self {
        StorageError::Corrupt {
            column,
            value: value.to_string(),
        }
    }

    /// True when the same operation may well succeed if simply retried later: the
    /// database is down or restarting, the pool is exhausted, or PostgreSQL aborted the
    /// transaction for a concurrency reason (serialization failure, deadlock).
    pub fn is_transient(&self) -> bool {
        match self {
            StorageError::Database(e) => is_transient_sqlx(e),
            StorageError::Migrate(sqlx::migrate::MigrateError::Execute(e)) => is_transient_sqlx(e),
            _ => false,
        }
    }
}

fn is_transient_sqlx(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exception; 40001 serialization failure; 40P01 deadlock;
            // 53: insufficient resources; 57P0x: shutdown or restart; 55P03 lock timeout.
            code.starts_with("08")
                || code.starts_with("53")
                || matches!(
                    &*code,
                    "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "55P03"
                )
        }),
        _ => false,
    }
}
