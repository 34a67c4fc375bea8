//! PostgreSQL's single-row commit rate: N sessions, each inserting one row per transaction
//! into a table with nothing but a primary key, as fast as the server commits. Every write
//! path of the service commits at least this once per webhook, so this is its ceiling.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::loadtest::latency::{new_histogram, record};
use crate::LabError;

/// The commit-rate result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CommitRate {
    pub connections: u32,
    pub seconds: f64,
    pub commits: u64,
    pub commits_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The server's `fsync` and `synchronous_commit`: with either off, a commit does not
    /// wait for the disk and the rate is not a durable one.
    pub fsync: String,
    pub synchronous_commit: String,
}

/// Measures the commit rate of the database at `url` with `connections` sessions for
/// `duration`, in a scratch schema `bench_baseline` that is dropped afterwards.
pub async fn commit_rate(
    url: &str,
    connections: u32,
    duration: Duration,
) -> Result<CommitRate, LabError> {
    if connections == 0 {
        return Err(LabError::Invalid("--connections must be at least 1".into()));
    }
    let pool = pm_storage::connect(
        url,
        &pm_storage::PoolOptions {
            max_connections: connections,
            acquire_timeout: Duration::from_secs(30),
            application_name: "pmctl-bench-baseline".into(),
            ..Default::default()
        },
    )?;
    sqlx::raw_sql(
        "CREATE SCHEMA IF NOT EXISTS bench_baseline;
         DROP TABLE IF EXISTS bench_baseline.commits;
         CREATE TABLE bench_baseline.commits (
             id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
             payload    text        NOT NULL,
             created_at timestamptz NOT NULL DEFAULT now()
         );",
    )
    .execute(&pool)
    .await?;
    let (fsync, synchronous_commit): (String, String) =
        sqlx::query_as("SELECT current_setting('fsync'), current_setting('synchronous_commit')")
            .fetch_one(&pool)
            .await?;

    // Open every session before the clock starts: connecting is not committing.
    let mut sessions = Vec::new();
    for _ in 0..connections {
        sessions.push(pool.acquire().await?);
    }
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = JoinSet::new();
    for (i, mut conn) in sessions.into_iter().enumerate() {
        tasks.spawn(async move {
            let mut histogram = new_histogram()?;
            let payload = format!("session-{i}");
            while Instant::now() < deadline {
                let began = Instant::now();
                sqlx::query("INSERT INTO bench_baseline.commits (payload) VALUES ($1)")
                    .bind(&payload)
                    .execute(&mut *conn)
                    .await?;
                record(&mut histogram, began.elapsed());
            }
            // Closed here rather than handed back: a returned connection is checked by
            // the pool in the background, which may outlive the (embedded) server.
            let _ = conn.close().await;
            Ok::<_, LabError>(histogram)
        });
    }
    let mut histogram = new_histogram()?;
    while let Some(joined) = tasks.join_next().await {
        let h = joined??;
        histogram
            .add(&h)
            .map_err(|e| LabError::Invalid(format!("histogram: {e}")))?;
    }
    let seconds = start.elapsed().as_secs_f64();
    sqlx::raw_sql("DROP SCHEMA bench_baseline CASCADE")
        .execute(&pool)
        .await?;
    pool.close().await;
    let commits = histogram.len();
    Ok(CommitRate {
        connections,
        seconds,
        commits,
        commits_per_sec: commits as f64 / seconds,
        p50_ms: histogram.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: histogram.value_at_quantile(0.99) as f64 / 1000.0,
        max_ms: histogram.max() as f64 / 1000.0,
        fsync,
        synchronous_commit,
    })
}
