//! Connecting to PostgreSQL.

use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};

use crate::metrics::Waiting;

use crate::StorageError;

/// Pool settings.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    pub max_connections: u32,
    /// How long a caller waits for a free connection before the request fails.
    pub acquire_timeout: Duration,
    /// Shown in `pg_stat_activity`.
    pub application_name: String,
    /// PostgreSQL's `statement_timeout` for every session: a statement running longer is
    /// cancelled (SQLSTATE 57014). `None` for administrative pools (migrations, partition
    /// maintenance), whose statements may rightly take long.
    pub statement_timeout: Option<Duration>,
    /// PostgreSQL's `lock_timeout`: a statement waiting longer for a lock fails (55P03)
    /// instead of holding its connection while it waits.
    pub lock_timeout: Option<Duration>,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            application_name: "pmctl".to_owned(),
            statement_timeout: None,
            lock_timeout: None,
        }
    }
}

/// Opens a pool. Every session runs in UTC, whatever the server's default, so day
/// boundaries of partitions and of time filters are UTC days.
pub fn connect(url: &str, opts: &PoolOptions) -> Result<PgPool, StorageError> {
    let connect: PgConnectOptions = url.parse()?;
    let mut settings = vec![("timezone", "UTC".to_owned())];
    for (name, limit) in [
        ("statement_timeout", opts.statement_timeout),
        ("lock_timeout", opts.lock_timeout),
    ] {
        if let Some(limit) = limit {
            // Whole milliseconds, at least 1: PostgreSQL reads 0 as "no limit".
            let ms = limit.as_millis().clamp(1, u128::from(u32::MAX >> 1));
            settings.push((name, format!("{ms}ms")));
        }
    }
    let connect = connect
        .application_name(&opts.application_name)
        .options(settings);
    let pool = PgPoolOptions::new()
        .max_connections(opts.max_connections)
        .acquire_timeout(opts.acquire_timeout)
        // Connect lazily: a service starts (and reports not-ready) while the database is
        // still coming up, instead of failing at start-up.
        .connect_lazy_with(connect);
    Ok(pool)
}

/// A connection from `pool`, counted while it is awaited and timed (see
/// [`crate::metrics`]): every service path of this crate takes its connections here.
pub async fn acquire(pool: &PgPool) -> Result<PoolConnection<Postgres>, StorageError> {
    let waiting = Waiting::start(pool);
    let conn = pool.acquire().await;
    waiting.done();
    Ok(conn?)
}

/// A transaction on a connection from `pool`, counted and timed like [`acquire`] (the
/// time recorded then includes the `BEGIN` round trip, a fraction of a millisecond).
pub async fn begin(pool: &PgPool) -> Result<Transaction<'static, Postgres>, StorageError> {
    let waiting = Waiting::start(pool);
    let tx = pool.begin().await;
    waiting.done();
    Ok(tx?)
}

/// Checks that the database answers (readiness probe).
pub async fn ping(pool: &PgPool) -> Result<(), StorageError> {
    let mut conn = acquire(pool).await?;
    sqlx::query("SELECT 1").execute(&mut *conn).await?;
    Ok(())
}
