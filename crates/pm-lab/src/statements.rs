//! Where PostgreSQL spends its time, statement by statement, from `pg_stat_statements`:
//! the counters are reset before a measurement and the statements that took the most
//! execution time are read after it.
//!
//! The extension only counts when the server loads it at start
//! (`shared_preload_libraries = 'pg_stat_statements'`); [`StatementProfiler::connect`] creates
//! it in the database if it is missing and says plainly when the server does not load it.
//! Resetting needs a superuser or a role granted `pg_stat_statements_reset()`. The counters
//! are per server and database: anything else running against the same database during a
//! measurement is counted too.

use serde::{Deserialize, Serialize};
use sqlx::PgPool;

/// Longest query text kept in a report; statements are normalized (`$1` for constants), so
/// the start names them.
const QUERY_CHARS: usize = 300;

/// One normalized statement's share of a measurement.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatementStat {
    /// The normalized text, whitespace collapsed, cut at a few hundred characters.
    pub query: String,
    /// Executions.
    pub calls: u64,
    /// Execution time, all calls, milliseconds.
    pub total_ms: f64,
    /// Execution time per call, milliseconds.
    pub mean_ms: f64,
    /// Rows returned or affected, all calls.
    pub rows: u64,
    /// Shared buffer hits, all calls.
    pub shared_blocks_hit: u64,
    /// Shared blocks read from the kernel, all calls.
    pub shared_blocks_read: u64,
    /// WAL written, bytes, all calls.
    pub wal_bytes: u64,
}

/// The statements of one measurement.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatementProfile {
    /// Execution time of every statement counted, milliseconds.
    pub total_ms: f64,
    /// Executions of every statement counted.
    pub calls: u64,
    /// WAL written by every statement counted, bytes.
    pub wal_bytes: u64,
    /// The statements that took the most execution time, most first.
    pub top: Vec<StatementStat>,
}

/// Resets and reads `pg_stat_statements` for the database a pool is connected to.
#[derive(Debug, Clone)]
pub struct StatementProfiler {
    pool: PgPool,
}

/// Why statements cannot be profiled.
#[derive(Debug, thiserror::Error)]
pub enum ProfilerError {
    /// The server does not load the extension.
    #[error(
        "pg_stat_statements is not loaded by this server (add it to shared_preload_libraries \
         and restart PostgreSQL)"
    )]
    NotLoaded,
    /// Creating, resetting or reading it failed (often: missing privilege).
    #[error("pg_stat_statements: {0}")]
    Database(#[from] sqlx::Error),
}

impl StatementProfiler {
    /// Checks that the server loads the extension and creates it in the pool's database if
    /// it is missing.
    pub async fn connect(pool: PgPool) -> Result<Self, ProfilerError> {
        let loaded: bool = sqlx::query_scalar(
            "SELECT 'pg_stat_statements' = ANY(string_to_array( \
                 replace(current_setting('shared_preload_libraries'), ' ', ''), ','))",
        )
        .fetch_one(&pool)
        .await?;
        if !loaded {
            return Err(ProfilerError::NotLoaded);
        }
        sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .execute(&pool)
            .await?;
        let profiler = StatementProfiler { pool };
        profiler.reset().await?;
        Ok(profiler)
    }

    /// Forgets everything counted so far.
    pub async fn reset(&self) -> Result<(), ProfilerError> {
        sqlx::query("SELECT pg_stat_statements_reset()")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// What was counted in this database since the last reset: totals and the `top`
    /// statements by execution time. The profiler's own statements are left out.
    pub async fn profile(&self, top: usize) -> Result<StatementProfile, ProfilerError> {
        type Row = (String, i64, f64, i64, i64, i64, i64);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT query, calls, total_exec_time, rows, shared_blks_hit, shared_blks_read, \
                    wal_bytes::int8 \
             FROM pg_stat_statements \
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
               AND query NOT LIKE '%pg_stat_statements%' \
             ORDER BY total_exec_time DESC",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(summarize(rows, top))
    }
}

fn summarize(rows: Vec<(String, i64, f64, i64, i64, i64, i64)>, top: usize) -> StatementProfile {
    let count = |v: i64| u64::try_from(v).unwrap_or(0);
    let mut profile = StatementProfile::default();
    for (query, calls, total_ms, rows, hit, read, wal) in rows {
        profile.total_ms += total_ms;
        profile.calls += count(calls);
        profile.wal_bytes += count(wal);
        if profile.top.len() < top {
            profile.top.push(StatementStat {
                query: normalize(&query),
                calls: count(calls),
                total_ms,
                mean_ms: if calls > 0 {
                    total_ms / calls as f64
                } else {
                    0.0
                },
                rows: count(rows),
                shared_blocks_hit: count(hit),
                shared_blocks_read: count(read),
                wal_bytes: count(wal),
            });
        }
    }
    profile
}

/// Whitespace collapsed to single spaces, cut at [`QUERY_CHARS`] characters with `…`.
fn normalize(query: &str) -> String {
    let mut text = query.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some((cut, _)) = text.char_indices().nth(QUERY_CHARS) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_count_every_statement_and_top_keeps_the_first() {
        let rows = vec![
            (
                "INSERT  INTO a\n VALUES ($1)".to_owned(),
                10,
                5.0,
                10,
                30,
                1,
                800,
            ),
            ("SELECT 1".to_owned(), 4, 1.0, 4, 0, 0, 0),
        ];
        let profile = summarize(rows, 1);
        assert_eq!(profile.calls, 14);
        assert_eq!(profile.total_ms, 6.0);
        assert_eq!(profile.wal_bytes, 800);
        assert_eq!(profile.top.len(), 1);
        let first = &profile.top[0];
        assert_eq!(first.query, "INSERT INTO a VALUES ($1)");
        assert_eq!(first.mean_ms, 0.5);
        assert_eq!((first.shared_blocks_hit, first.shared_blocks_read), (30, 1));
    }

    #[test]
    fn long_statements_are_cut_on_a_character_boundary() {
        let long = "é".repeat(QUERY_CHARS + 5);
        let cut = normalize(&long);
        assert_eq!(cut.chars().count(), QUERY_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(normalize("SELECT 1"), "SELECT 1");
    }
}
