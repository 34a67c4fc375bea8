//! The storage error, with the classification the Kafka consumer and the API need:
//! transient errors (the database is unreachable, a serialization failure) are worth
//! retrying as they are; errors that the input itself causes (SQLSTATE classes 22 and 23)
//! never succeed on a retry; everything else — a missing table, a read-only database
//! after a failover, a revoked grant, a statement timeout — is the operator's to fix and
//! must not cost the input (the consumer retries it instead of dead-lettering it).

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

    /// True when the input itself is at fault: a data exception (SQLSTATE class 22, e.g.
    /// a value out of range or a NUL byte in text) or an integrity violation (class 23).
    /// The same input fails the same way on every retry.
    pub fn is_caused_by_input(&self) -> bool {
        self.sqlstate()
            .is_some_and(|code| code.starts_with("22") || code.starts_with("23"))
    }

    /// The SQLSTATE PostgreSQL answered with, when it answered with one.
    pub fn sqlstate(&self) -> Option<String> {
        match self {
            StorageError::Database(sqlx::Error::Database(db)) => db.code().map(|c| c.into_owned()),
            _ => None,
        }
    }

    /// A short, bounded name of the kind of failure, for metrics and logs: `unavailable`,
    /// `concurrency`, `timeout`, `read_only`, `schema`, `privilege`, `input`, or the
    /// SQLSTATE class as `sqlstate_XX` for the rest.
    pub fn cause(&self) -> &'static str {
        let Some(code) = self.sqlstate() else {
            return match self {
                StorageError::Database(e) if is_transient_sqlx(e) => "unavailable",
                StorageError::Migrate(_)
                | StorageError::PartmanMissing { .. }
                | StorageError::Corrupt { .. } => "schema",
                _ => "other",
            };
        };
        match code.as_str() {
            "40001" | "40P01" => "concurrency",
            "57014" | "55P03" => "timeout",
            "25006" => "read_only",
            "42501" => "privilege",
            c if c.starts_with("08") || c.starts_with("53") || c.starts_with("57P") => {
                "unavailable"
            }
            c if c.starts_with("42") => "schema",
            c if c.starts_with("22") || c.starts_with("23") => "input",
            c => sqlstate_class(c),
        }
    }

    /// True when the same operation may well succeed if simply retried later: the
    /// database is down, restarting or failing over (a write that reached a standby), the
    /// pool is exhausted, or PostgreSQL aborted the transaction for a concurrency reason
    /// (serialization failure, deadlock).
    pub fn is_transient(&self) -> bool {
        match self {
            StorageError::Database(e) => is_transient_sqlx(e),
            StorageError::Migrate(sqlx::migrate::MigrateError::Execute(e)) => is_transient_sqlx(e),
            _ => false,
        }
    }
}

/// `sqlstate_XX` for a SQLSTATE's class: a bounded label (PostgreSQL has about forty).
fn sqlstate_class(code: &str) -> &'static str {
    #[rustfmt::skip]
    const LABELS: &[&str] = &[
        "sqlstate_01", "sqlstate_02", "sqlstate_03", "sqlstate_08", "sqlstate_09", "sqlstate_0A",
        "sqlstate_0B", "sqlstate_0F", "sqlstate_0L", "sqlstate_0P", "sqlstate_0Z", "sqlstate_20",
        "sqlstate_21", "sqlstate_22", "sqlstate_23", "sqlstate_24", "sqlstate_25", "sqlstate_26",
        "sqlstate_27", "sqlstate_28", "sqlstate_2B", "sqlstate_2D", "sqlstate_2F", "sqlstate_34",
        "sqlstate_38", "sqlstate_39", "sqlstate_3B", "sqlstate_3D", "sqlstate_3F", "sqlstate_40",
        "sqlstate_42", "sqlstate_44", "sqlstate_53", "sqlstate_54", "sqlstate_55", "sqlstate_57",
        "sqlstate_58", "sqlstate_72", "sqlstate_F0", "sqlstate_HV", "sqlstate_P0", "sqlstate_XX",
    ];
    let class = code.get(..2).unwrap_or("");
    LABELS
        .iter()
        .find(|label| label.ends_with(class) && class.len() == 2)
        .copied()
        .unwrap_or("sqlstate_other")
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
            // 53: insufficient resources; 57P0x: shutdown or restart; 55P03 lock timeout;
            // 25006 a write on a server in recovery: during a failover a connection may
            // reach the old primary, now a standby, until the proxy or the pool moves on.
            code.starts_with("08")
                || code.starts_with("53")
                || matches!(
                    &*code,
                    "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "55P03" | "25006"
                )
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sqlstate_class_becomes_a_bounded_label() {
        assert_eq!(sqlstate_class("42P01"), "sqlstate_42");
        assert_eq!(sqlstate_class("XX000"), "sqlstate_XX");
        assert_eq!(sqlstate_class("ZZ999"), "sqlstate_other");
        assert_eq!(sqlstate_class(""), "sqlstate_other");
    }
}
