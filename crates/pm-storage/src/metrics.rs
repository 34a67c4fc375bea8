//! Database metrics: how full each connection pool is, how many callers wait for a
//! connection and for how long, and how long statements take.
//!
//! Connections are taken and statements run deep inside this crate's functions, which the
//! API, the Kafka consumers and the CLI all call; so the measurements go to process-wide
//! families, and a service that exports metrics registers them once ([`register`]). A
//! process that never registers them (a one-shot CLI command) only pays for the counting.
//!
//! Invariant: every connection this crate's service paths use is taken through
//! [`crate::db::acquire`], so `pm_db_pool_waiting` and the acquire histogram see every
//! wait. Pools are told apart by their application name, the name PostgreSQL shows for
//! their sessions in `pg_stat_activity` (`pmctl-serve-api`, `pmctl-serve-api-reads`, …).

use std::sync::LazyLock;
use std::time::Duration;

use pm_telemetry::metrics::ScrapeGauge;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use sqlx::PgPool;

/// Waits for a connection and statements: 0.1 ms to the 5 s of the default acquire
/// timeout, dense below 10 ms where a healthy pool and an indexed statement live.
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PoolLabels {
    pool: String,
}

impl PoolLabels {
    pub(crate) fn of(pool: &PgPool) -> Self {
        PoolLabels {
            pool: pool_name(pool),
        }
    }
}

fn pool_name(pool: &PgPool) -> String {
    pool.connect_options()
        .get_application_name()
        .unwrap_or("unnamed")
        .to_owned()
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
    collection: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    pool: String,
    state: &'static str,
}

struct Meters {
    waiting: Family<PoolLabels, Gauge>,
    acquire: Histograms<PoolLabels>,
    queries: Histograms<OperationLabels>,
}

static METERS: LazyLock<Meters> = LazyLock::new(|| Meters {
    waiting: Family::default(),
    acquire: Family::new_with_constructor(histogram),
    queries: Family::new_with_constructor(histogram),
});

/// Registers `db_pool_connections{pool,state}`, `db_pool_max_connections{pool}`,
/// `db_pool_waiting{pool}`, `db_pool_acquire_duration_seconds{pool}` and
/// `db_query_duration_seconds{operation,collection}` (prefix them with the registry's prefix). The
/// connection counts are read from `pools` at each scrape.
pub fn register(registry: &mut Registry, pools: &[PgPool]) {
    registry.register(
        "db_pool_waiting",
        "Callers waiting for a connection from the pool now",
        METERS.waiting.clone(),
    );
    registry.register(
        "db_pool_acquire_duration_seconds",
        "Time to get a connection from the pool (waiting included), by pool",
        METERS.acquire.clone(),
    );
    registry.register(
        "db_query_duration_seconds",
        "Statement latency by operation (the SQL verb) and collection (the table), never by a \
         parameter's value",
        METERS.queries.clone(),
    );
    let in_pools = pools.to_vec();
    ScrapeGauge::register(
        registry,
        "db_pool_connections",
        "Connections open in the pool, by state (in_use, idle)",
        move || {
            in_pools
                .iter()
                .flat_map(|pool| {
                    let (size, idle) = (pool.size(), pool.num_idle() as u32);
                    let name = pool_name(pool);
                    [("in_use", size.saturating_sub(idle)), ("idle", idle)].map(|(state, n)| {
                        let labels = StateLabels {
                            pool: name.clone(),
                            state,
                        };
                        (labels, f64::from(n))
                    })
                })
                .collect()
        },
    );
    let sized = pools.to_vec();
    ScrapeGauge::register(
        registry,
        "db_pool_max_connections",
        "The most connections the pool opens",
        move || {
            sized
                .iter()
                .map(|pool| {
                    let max = pool.options().get_max_connections();
                    (PoolLabels::of(pool), f64::from(max))
                })
                .collect()
        },
    );
}

/// Counts a caller waiting for a connection of `pool` until dropped (also when the wait
/// is cancelled), and records the wait.
pub(crate) struct Waiting {
    gauge: Gauge,
    labels: PoolLabels,
    started: std::time::Instant,
}

impl Waiting {
    pub(crate) fn start(pool: &PgPool) -> Self {
        let labels = PoolLabels::of(pool);
        // Cloned out of the family: its lock must not be held across the wait.
        let gauge = METERS.waiting.get_or_create(&labels).clone();
        gauge.inc();
        Waiting {
            gauge,
            labels,
            started: std::time::Instant::now(),
        }
    }

    /// The connection came (or the wait failed): records how long it took.
    pub(crate) fn done(self) {
        METERS
            .acquire
            .get_or_create(&self.labels)
            .observe(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Records that a statement (see [`crate::statement::run`]) took `elapsed`.
pub(crate) fn observe_query(operation: &'static str, collection: &'static str, elapsed: Duration) {
    METERS
        .queries
        .get_or_create(&OperationLabels {
            operation,
            collection,
        })
        .observe(elapsed.as_secs_f64());
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabels {
    table: &'static str,
}

/// `partition_default_rows{table}` and `partition_premade_days{table}`: the two numbers
/// that say whether partition maintenance keeps up, refreshed by [`PartitionGauges::refresh`]
/// (`serve-api` calls it on a timer). Alerts on them fire days before an insert lands in
/// a default partition.
#[derive(Clone, Debug, Default)]
pub struct PartitionGauges {
    default_rows: Family<TableLabels, Gauge>,
    premade_days: Family<TableLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

impl PartitionGauges {
    pub fn register(registry: &mut Registry) -> Self {
        let gauges = Self::default();
        registry.register(
            "partition_default_rows",
            "Rows in the default partition of each partitioned table (should be 0: rows there \
             arrived when their day had no partition)",
            gauges.default_rows.clone(),
        );
        registry.register(
            "partition_premade_days",
            "Days from now to the end of the newest partition of each partitioned table (0 when \
             there is none): how long inserts have a partition waiting without maintenance",
            gauges.premade_days.clone(),
        );
        gauges
    }

    /// Reads every partitioned table's state (see [`crate::partitions::status`]).
    pub async fn refresh(
        &self,
        pool: &PgPool,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), crate::StorageError> {
        for report in crate::partitions::status(pool).await? {
            let Some(table) = crate::partitions::MAINTAINED_TABLES
                .iter()
                .copied()
                .find(|t| *t == report.table)
            else {
                continue;
            };
            let labels = TableLabels { table };
            self.default_rows
                .get_or_create(&labels)
                .set(report.default_rows);
            self.premade_days
                .get_or_create(&labels)
                .set(premade_days(report.newest_until, now));
        }
        Ok(())
    }
}

/// Days (fractional) from `now` to `until`, 0 when there is no partition or it is over.
fn premade_days(
    until: Option<chrono::DateTime<chrono::Utc>>,
    now: chrono::DateTime<chrono::Utc>,
) -> f64 {
    until.map_or(0.0, |until| {
        ((until - now).num_seconds() as f64 / 86_400.0).max(0.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn premade_days_count_from_now_to_the_end_of_the_newest_partition() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
            .expect("time")
            .to_utc();
        let until = |s| {
            Some(
                chrono::DateTime::parse_from_rfc3339(s)
                    .expect("time")
                    .to_utc(),
            )
        };
        assert_eq!(premade_days(until("2026-03-05T00:00:00Z"), now), 3.5);
        assert_eq!(premade_days(until("2026-02-27T00:00:00Z"), now), 0.0);
        assert_eq!(premade_days(None, now), 0.0);
    }

    #[tokio::test]
    async fn pools_are_exported_by_application_name_and_waits_are_counted() {
        let pool = crate::connect(
            "postgres://nobody@127.0.0.1:1/none",
            &crate::PoolOptions {
                max_connections: 3,
                application_name: "metrics-test".to_owned(),
                ..Default::default()
            },
        )
        .expect("lazy pool");
        let mut registry = Registry::default();
        register(
            registry.sub_registry_with_prefix("pm"),
            std::slice::from_ref(&pool),
        );

        let waiting = Waiting::start(&pool);
        let render = |registry: &Registry| {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, registry).expect("encodes");
            text
        };
        let during = render(&registry);
        assert!(
            during.contains("pm_db_pool_waiting{pool=\"metrics-test\"} 1"),
            "{during}"
        );
        waiting.done();
        observe_query("SELECT", "metrics_test", Duration::from_millis(3));
        let after = render(&registry);
        for line in [
            "pm_db_pool_waiting{pool=\"metrics-test\"} 0",
            "pm_db_pool_connections{pool=\"metrics-test\",state=\"in_use\"} 0",
            "pm_db_pool_connections{pool=\"metrics-test\",state=\"idle\"} 0",
            "pm_db_pool_max_connections{pool=\"metrics-test\"} 3",
            "pm_db_pool_acquire_duration_seconds_count{pool=\"metrics-test\"} 1",
            "pm_db_query_duration_seconds_count{operation=\"SELECT\",collection=\"metrics_test\"} 1",
        ] {
            assert!(after.contains(line), "{line} missing from\n{after}");
        }
    }
}
