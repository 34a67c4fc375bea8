//! Where reads go: streaming replicas when they are current enough, the primary otherwise.
//!
//! A [`ReadPools`] holds the primary's read pool and one pool per replica. A monitor
//! ([`ReadPools::check`], run every second by the service) asks each replica how far its
//! replay is behind — zero when it has replayed all the WAL it received, otherwise the age
//! of the last transaction it replayed (`pg_last_xact_replay_timestamp`) — and takes a
//! replica out of rotation while that exceeds the maximum lag or it does not answer (with a
//! log line and the metrics `pm_db_replica_lag_seconds` / `pm_db_replica_in_rotation`).
//! [`ReadPools::pick`] takes the replicas in rotation in turn (each is within the maximum
//! lag, and taking turns is what makes a second replica add read capacity), or the primary
//! when none is; writes, and reads that must see a write just made, use the primary's pools
//! directly.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sqlx::PgPool;

/// How long a lag probe may take before the replica counts as not answering.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A pool reads go to, and how stale that pool may be.
#[derive(Debug, Clone, Copy)]
pub struct Read<'a> {
    pub pool: &'a PgPool,
    /// Which replica (for [`ReadPools::get`]); `None`: the primary.
    pub replica: Option<usize>,
    /// The replica's lag as last measured; `None` for the primary.
    pub lag: Option<Duration>,
}

#[derive(Debug)]
struct Replica {
    /// How logs and metrics name it (host, port and database; never the password).
    name: String,
    pool: PgPool,
    lag_micros: AtomicU64,
    in_rotation: AtomicBool,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplicaLabels {
    replica: String,
}

#[derive(Debug, Default)]
struct ReplicaMetrics {
    lag: Family<ReplicaLabels, Gauge<f64, AtomicU64>>,
    in_rotation: Family<ReplicaLabels, Gauge>,
}

/// The primary's read pool and the replicas (see the module's documentation).
#[derive(Debug)]
pub struct ReadPools {
    primary: PgPool,
    replicas: Vec<Replica>,
    max_lag: Duration,
    metrics: ReplicaMetrics,
    /// Counts picks, so that the replicas in rotation take turns.
    turn: AtomicUsize,
}

impl ReadPools {
    /// Reads from the primary only.
    pub fn primary_only(primary: PgPool) -> Self {
        Self::new(primary, Vec::new(), Duration::MAX)
    }

    /// `replicas` are (name, pool) pairs. A replica starts out of rotation: it joins once
    /// a first [`check`](Self::check) found it current.
    pub fn new(primary: PgPool, replicas: Vec<(String, PgPool)>, max_lag: Duration) -> Self {
        ReadPools {
            primary,
            replicas: replicas
                .into_iter()
                .map(|(name, pool)| Replica {
                    name,
                    pool,
                    lag_micros: AtomicU64::new(u64::MAX),
                    in_rotation: AtomicBool::new(false),
                })
                .collect(),
            max_lag,
            metrics: ReplicaMetrics::default(),
            turn: AtomicUsize::new(0),
        }
    }

    /// Exports `pm_db_replica_lag_seconds` and `pm_db_replica_in_rotation` per replica.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "db_replica_lag_seconds",
            "How far each read replica's replay is behind, as last measured (0: it replayed \
             all it received)",
            self.metrics.lag.clone(),
        );
        registry.register(
            "db_replica_in_rotation",
            "1 while a read replica serves reads, 0 while it lags too far or does not answer",
            self.metrics.in_rotation.clone(),
        );
        for r in &self.replicas {
            self.metrics.in_rotation.get_or_create(&labels(r)).set(0);
        }
    }

    /// Whether any replica is configured.
    pub fn has_replicas(&self) -> bool {
        !self.replicas.is_empty()
    }

    /// Every pool (for the pool metrics and for closing them).
    pub fn pools(&self) -> Vec<PgPool> {
        std::iter::once(self.primary.clone())
            .chain(self.replicas.iter().map(|r| r.pool.clone()))
            .collect()
    }

    /// Where a read goes now: the next replica in rotation, in turn, else the primary.
    pub fn pick(&self) -> Read<'_> {
        let in_rotation = |r: &&Replica| r.in_rotation.load(Ordering::Relaxed);
        let count = self.replicas.iter().filter(in_rotation).count();
        if count == 0 {
            return self.get(None);
        }
        let nth = self.turn.fetch_add(1, Ordering::Relaxed) % count;
        let chosen = self
            .replicas
            .iter()
            .enumerate()
            .filter(|(_, r)| in_rotation(r))
            .nth(nth)
            .map(|(i, _)| i);
        self.get(chosen)
    }

    /// The pool [`pick`](Self::pick) chose before (so that one request reads from one
    /// server throughout), whether or not it is still in rotation.
    pub fn get(&self, replica: Option<usize>) -> Read<'_> {
        match replica.and_then(|i| self.replicas.get(i).map(|r| (i, r))) {
            Some((i, r)) => Read {
                pool: &r.pool,
                replica: Some(i),
                lag: Some(Duration::from_micros(r.lag_micros.load(Ordering::Relaxed))),
            },
            None => Read {
                pool: &self.primary,
                replica: None,
                lag: None,
            },
        }
    }

    /// Measures every replica's lag once and moves it in or out of rotation.
    pub async fn check(&self) {
        for r in &self.replicas {
            let measured = tokio::time::timeout(PROBE_TIMEOUT, lag_of(&r.pool)).await;
            let (lag, why_out) = match measured {
                Ok(Ok(lag)) if lag <= self.max_lag => (Some(lag), None),
                Ok(Ok(lag)) => (
                    Some(lag),
                    Some(format!(
                        "its replay is {:.1}s behind (more than {:?})",
                        lag.as_secs_f64(),
                        self.max_lag
                    )),
                ),
                Ok(Err(e)) => (None, Some(format!("it does not answer: {e}"))),
                Err(_) => (None, Some(format!("no answer within {PROBE_TIMEOUT:?}"))),
            };
            if let Some(lag) = lag {
                let micros = u64::try_from(lag.as_micros()).unwrap_or(u64::MAX);
                r.lag_micros.store(micros, Ordering::Relaxed);
                self.metrics
                    .lag
                    .get_or_create(&labels(r))
                    .set(lag.as_secs_f64());
            }
            let was = r.in_rotation.swap(why_out.is_none(), Ordering::Relaxed);
            self.metrics
                .in_rotation
                .get_or_create(&labels(r))
                .set(i64::from(why_out.is_none()));
            match (&why_out, was) {
                (Some(why), true) => {
                    tracing::warn!(replica = %r.name, "read replica taken out of rotation: {why}");
                }
                (None, false) => {
                    tracing::info!(replica = %r.name, "read replica in rotation");
                }
                _ => {}
            }
        }
    }

    /// Runs [`check`](Self::check) every `every` until `stop` completes.
    pub async fn monitor(
        self: Arc<Self>,
        every: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) {
        if !self.has_replicas() {
            return;
        }
        tokio::pin!(stop);
        loop {
            self.check().await;
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}

fn labels(r: &Replica) -> ReplicaLabels {
    ReplicaLabels {
        replica: r.name.clone(),
    }
}

/// How far `pool`'s server is behind its primary: zero when it streams and has replayed all
/// the WAL it received (however old its last transaction), else the age of the last
/// transaction it replayed — so a standby cut off from its primary ages. Whether it streams
/// is in `pg_stat_wal_receiver`, which only roles with `pg_read_all_stats` (or `pg_monitor`)
/// can read; for others a standby that replayed all it received counts as current. A server
/// that is not a standby (promoted, or a primary named by mistake) is current.
async fn lag_of(pool: &PgPool) -> Result<Duration, sqlx::Error> {
    let seconds: Option<f64> = sqlx::query_scalar(
        "SELECT CASE
                    WHEN NOT pg_is_in_recovery() THEN 0
                    WHEN coalesce((SELECT status FROM pg_stat_wal_receiver), 'streaming')
                             = 'streaming'
                         AND pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn()
                        THEN 0
                    ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8
                END",
    )
    .fetch_one(pool)
    .await?;
    // No transaction replayed yet and WAL still to replay: as stale as can be.
    Ok(seconds.map_or(Duration::MAX, |s| {
        Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lazy_pool(port: u16) -> PgPool {
        // Never connected: picking a pool does not touch it.
        sqlx::postgres::PgPoolOptions::new()
            .connect_lazy(&format!("postgres://nobody@127.0.0.1:{port}/none"))
            .expect("a lazy pool")
    }

    #[tokio::test]
    async fn replicas_in_rotation_take_turns_and_the_primary_reads_when_none_is() {
        let pools = ReadPools::new(
            lazy_pool(1),
            (2..=4)
                .map(|p| (format!("replica-{p}"), lazy_pool(p)))
                .collect(),
            Duration::from_secs(5),
        );
        // None in rotation yet: the primary.
        assert_eq!(pools.pick().replica, None);
        pools.replicas[0].in_rotation.store(true, Ordering::Relaxed);
        pools.replicas[2].in_rotation.store(true, Ordering::Relaxed);
        let picked: Vec<_> = (0..4).map(|_| pools.pick().replica).collect();
        assert_eq!(picked, [Some(0), Some(2), Some(0), Some(2)]);
        pools.replicas[0]
            .in_rotation
            .store(false, Ordering::Relaxed);
        assert!((0..3).all(|_| pools.pick().replica == Some(2)));
    }
}
