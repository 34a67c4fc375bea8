//! `partition-maintain`: premaking, retention, dedupe pruning.

use std::time::Duration;

use pm_storage::partitions::{
    self, ClusterOutcome, ClusteredPartition, MaintainError, MaintainOptions, OutboxRelay,
};
use pm_storage::testing::TestDatabase;

use crate::fixtures::count;

const DAY: Duration = Duration::from_secs(24 * 3600);

fn opts(retention: Option<Duration>) -> MaintainOptions {
    MaintainOptions {
        retention,
        dedupe_keep: 35 * DAY,
        dry_run: false,
        cluster_closed: None,
        outbox_retention: partitions::DEFAULT_OUTBOX_RETENTION,
        outbox_relay: Default::default(),
        analytics_inbox_keep: partitions::DEFAULT_ANALYTICS_INBOX_KEEP,
    }
}

#[tokio::test]
async fn maintenance_premakes_future_partitions_that_went_missing() {
    let db = TestDatabase::new().await;
    let mut conn = db.pool.acquire().await.expect("conn");
    let before = partitions::partitions(&mut conn, "public.order_events")
        .await
        .expect("list");
    // Drop the three newest daily partitions, as if maintenance had not run for days.
    let newest: Vec<String> = before
        .iter()
        .filter(|p| p.from.is_some())
        .rev()
        .take(3)
        .map(|p| p.name.clone())
        .collect();
    for name in &newest {
        sqlx::query(&format!("DROP TABLE {name}"))
            .execute(&mut *conn)
            .await
            .expect("drop");
    }
    drop(conn);
    let report = partitions::maintain(&db.pool, &opts(None))
        .await
        .expect("maintain");
    let orders = report
        .tables
        .iter()
        .find(|t| t.table == "public.order_events")
        .expect("order_events");
    // Every dropped partition is back (pg_partman may also premake one more day).
    for name in &newest {
        assert!(
            orders.created.contains(name),
            "{name} not recreated: {:?}",
            orders.created
        );
    }
    assert!(orders.dropped.is_empty());
    assert!(
        orders.newest_until.expect("partitions") >= chrono::Utc::now() + chrono::Duration::days(7)
    );
    assert_eq!(orders.default_rows, 0);
}

#[tokio::test]
async fn retention_drops_only_old_partitions_and_only_when_asked() {
    let db = TestDatabase::new().await;
    sqlx::query("SELECT partman.create_partition_time('public.dispute_events', ARRAY[date_trunc('day', now() - interval '100 days')])")
        .execute(&db.pool)
        .await
        .expect("old partition");
    let old = partitions::partition_for(
        &db.pool,
        "public.dispute_events",
        chrono::Utc::now() - chrono::Duration::days(100),
    )
    .await
    .expect("lookup")
    .expect("old partition exists");

    let report = partitions::maintain(&db.pool, &opts(None))
        .await
        .expect("no retention");
    assert!(
        report.tables.iter().all(|t| t.dropped.is_empty()),
        "nothing dropped without --retention"
    );

    let report = partitions::maintain(&db.pool, &opts(Some(90 * DAY)))
        .await
        .expect("retention");
    let disputes = report
        .tables
        .iter()
        .find(|t| t.table == "public.dispute_events")
        .expect("table");
    assert_eq!(disputes.dropped, [old]);
    // The configured retention is restored: the next plain run drops nothing.
    let retention: Option<String> = sqlx::query_scalar(
        "SELECT retention FROM partman.part_config WHERE parent_table = 'public.dispute_events'",
    )
    .fetch_one(&db.pool)
    .await
    .expect("config");
    assert_eq!(retention, None);
}

#[tokio::test]
async fn dedupe_ids_are_pruned_by_age_but_never_younger_than_35_days() {
    let db = TestDatabase::new().await;
    sqlx::query(
        "INSERT INTO processed_webhooks (source, provider_event_id, processed_at) VALUES
         ('order', 'old', now() - interval '40 days'), ('order', 'recent', now() - interval '34 days'),
         ('chargeback', 'new', now())",
    )
    .execute(&db.pool)
    .await
    .expect("seed");
    let too_short = MaintainOptions {
        dedupe_keep: 30 * DAY,
        ..opts(None)
    };
    assert!(matches!(
        partitions::maintain(&db.pool, &too_short).await,
        Err(MaintainError::DedupeKeepTooShort)
    ));

    let dry = MaintainOptions {
        dry_run: true,
        ..opts(None)
    };
    assert_eq!(
        partitions::maintain(&db.pool, &dry)
            .await
            .expect("dry run")
            .dedupe_pruned,
        0
    );
    assert_eq!(
        count(&db.pool, "SELECT count(*) FROM processed_webhooks").await,
        3
    );

    let report = partitions::maintain(&db.pool, &opts(None))
        .await
        .expect("prune");
    assert_eq!((report.dedupe_pruned, report.dedupe_rows), (1, 2));
    let left: Vec<String> =
        sqlx::query_scalar("SELECT provider_event_id FROM processed_webhooks ORDER BY 1")
            .fetch_all(&db.pool)
            .await
            .expect("rows");
    assert_eq!(left, ["new", "recent"]);
}

#[tokio::test]
async fn the_partition_gauges_show_premade_days_and_rows_in_the_default_partition() {
    let db = TestDatabase::new().await;
    let mut registry = prometheus_client::registry::Registry::default();
    let gauges = pm_storage::metrics::PartitionGauges::register(&mut registry);
    let render = |registry: &prometheus_client::registry::Registry| {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).expect("encodes");
        text
    };
    let sample = |text: &str, series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{series} missing from\n{text}"))
    };
    let now = pm_domain::time::now();
    gauges.refresh(&db.pool, now).await.expect("refresh");
    let fresh = render(&registry);
    for table in partitions::PARTITIONED_TABLES {
        let premade = sample(
            &fresh,
            &format!("partition_premade_days{{table=\"{table}\"}}"),
        );
        assert!(premade >= 3.0, "{table}: {premade} days premade");
        assert_eq!(
            sample(
                &fresh,
                &format!("partition_default_rows{{table=\"{table}\"}}")
            ),
            0.0
        );
    }

    // A row far beyond the premade partitions lands in the default partition.
    sqlx::query(
        "INSERT INTO order_events (event_id, order_id, kind, data, created_at)
         VALUES (gen_random_uuid(), 'o-future', 'hold_set', '{}', now() + interval '400 days')",
    )
    .execute(&db.pool)
    .await
    .expect("insert");
    gauges.refresh(&db.pool, now).await.expect("refresh");
    let after = render(&registry);
    assert_eq!(
        sample(
            &after,
            "partition_default_rows{table=\"public.order_events\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &after,
            "partition_default_rows{table=\"public.dispute_events\"}"
        ),
        0.0
    );
}

/// Yesterday's and today's dispute event partitions, with `rows` events of interleaved kinds
/// in each, inserted in time order as webhooks would.
async fn seed_interleaved(db: &TestDatabase, rows: i32) -> (String, String) {
    sqlx::query(
        "INSERT INTO dispute_events (event_id, dispute_id, kind, data, created_at)
         SELECT gen_random_uuid(), gen_random_uuid(),
                (ARRAY['webhook_opened', 'evidence_added', 'webhook_updated'])[1 + n % 3],
                '{}'::jsonb, day + n * interval '1 second'
         FROM generate_series(1, $1) AS n,
              unnest(ARRAY[date_trunc('day', now()) - interval '1 day', date_trunc('day', now())]) AS day",
    )
    .bind(rows)
    .execute(&db.pool)
    .await
    .expect("seed");
    let partition = |at| partitions::partition_for(&db.pool, "public.dispute_events", at);
    let now = chrono::Utc::now();
    let yesterday = partition(now - chrono::Duration::days(1))
        .await
        .expect("lookup")
        .expect("yesterday's partition");
    let today = partition(now)
        .await
        .expect("lookup")
        .expect("today's partition");
    (yesterday, today)
}

/// The kinds of `partition`'s rows in their physical order.
async fn kinds_on_disk(db: &TestDatabase, partition: &str) -> Vec<String> {
    sqlx::query_scalar(&format!("SELECT kind FROM {partition} ORDER BY ctid"))
        .fetch_all(&db.pool)
        .await
        .expect("kinds")
}

fn named<'a>(report: &'a [ClusteredPartition], partition: &str) -> Option<&'a ClusterOutcome> {
    report
        .iter()
        .find(|c| c.partition == format!("public.{partition}"))
        .map(|c| &c.outcome)
}

#[tokio::test]
async fn closed_days_are_clustered_by_kind_once_and_a_busy_one_is_left_for_the_next_run() {
    let db = TestDatabase::new().await;
    let (yesterday, today) = seed_interleaved(&db, 300).await;
    let cluster = |timeout_ms, dry_run| MaintainOptions {
        cluster_closed: Some(Duration::from_millis(timeout_ms)),
        outbox_retention: partitions::DEFAULT_OUTBOX_RETENTION,
        dry_run,
        ..opts(None)
    };

    // A dry run names the closed days of both tables, and not today.
    let dry = partitions::maintain(&db.pool, &cluster(5_000, true))
        .await
        .expect("dry run")
        .clustered;
    assert_eq!(named(&dry, &yesterday), Some(&ClusterOutcome::Pending));
    assert_eq!(named(&dry, &today), None, "today is not over");
    assert!(dry.iter().any(|c| c.table == "public.order_events"));
    assert!(dry.iter().all(|c| c.to <= Some(chrono::Utc::now())));
    let mut on_disk = kinds_on_disk(&db, &yesterday).await;
    assert!(
        !on_disk.is_sorted(),
        "interleaved before, and a dry run changes nothing"
    );

    // A report reading yesterday holds its lock: that partition is left for later, and the
    // others are clustered meanwhile.
    let mut reader = db.pool.begin().await.expect("reader");
    sqlx::query(&format!("SELECT count(*) FROM {yesterday}"))
        .execute(&mut *reader)
        .await
        .expect("read");
    let first = partitions::maintain(&db.pool, &cluster(200, false))
        .await
        .expect("cluster")
        .clustered;
    assert_eq!(named(&first, &yesterday), Some(&ClusterOutcome::Busy));
    assert!(first
        .iter()
        .filter(|c| !c.partition.ends_with(&yesterday))
        .all(|c| matches!(c.outcome, ClusterOutcome::Clustered { .. })));
    reader.rollback().await.expect("end the report");

    let second = partitions::maintain(&db.pool, &cluster(5_000, false))
        .await
        .expect("cluster")
        .clustered;
    assert_eq!(second.len(), 1, "only the busy one was left: {second:?}");
    assert!(
        matches!(named(&second, &yesterday), Some(ClusterOutcome::Clustered { rows: 300, pages, .. }) if *pages > 0),
        "{second:?}"
    );
    on_disk = kinds_on_disk(&db, &yesterday).await;
    assert!(on_disk.is_sorted(), "rows now lie in kind order");
    assert_eq!(on_disk.len(), 300);
    assert!(
        !kinds_on_disk(&db, &today).await.is_sorted(),
        "today untouched"
    );

    let third = partitions::maintain(&db.pool, &cluster(5_000, false))
        .await
        .expect("cluster")
        .clustered;
    assert!(third.is_empty(), "each day is clustered once: {third:?}");
}

#[tokio::test]
async fn the_migration_adds_the_lost_fraud_reports_covering_index() {
    let db = TestDatabase::new().await;
    let definition: String = sqlx::query_scalar(
        "SELECT pg_get_indexdef('disputes_status_reason_covering_idx'::regclass)",
    )
    .fetch_one(&db.pool)
    .await
    .expect("the migration made the index");
    assert!(
        definition.contains("(status, reason) INCLUDE (dispute_id, amount, currency)"),
        "{definition}"
    );
    let valid: bool = sqlx::query_scalar(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = 'disputes_status_reason_covering_idx'::regclass",
    )
    .fetch_one(&db.pool)
    .await
    .expect("index");
    assert!(valid, "built completely, although concurrently");
}

#[tokio::test]
async fn cover_creates_the_days_of_a_backfill_so_no_row_lands_in_default() {
    let db = TestDatabase::new().await;
    let since = chrono::Utc::now() - chrono::Duration::days(20);
    assert_eq!(
        partitions::partition_for(&db.pool, "public.dispute_events", since)
            .await
            .expect("lookup"),
        None,
        "the migration premakes only the week around today"
    );
    let created = partitions::cover(&db.pool, since).await.expect("cover");
    // The 13 or 14 days before the premade week, for each of the two tables.
    assert!(created.len() >= 2 * 13, "{created:?}");
    for table in partitions::PARTITIONED_TABLES {
        for days_ago in [20, 10, 5, 1] {
            let at = chrono::Utc::now() - chrono::Duration::days(days_ago);
            assert!(
                partitions::partition_for(&db.pool, table, at)
                    .await
                    .expect("lookup")
                    .is_some(),
                "{table}, {days_ago} days ago"
            );
        }
    }
    assert!(
        partitions::cover(&db.pool, since)
            .await
            .expect("again")
            .is_empty(),
        "covering twice creates nothing"
    );
}

#[tokio::test]
async fn the_overview_lists_every_partition_with_its_estimated_rows() {
    let db = TestDatabase::new().await;
    let (yesterday, today) = seed_interleaved(&db, 40).await;
    let status = partitions::status(&db.pool).await.expect("status");
    // The estimates are PostgreSQL's statistics, which the inserting connection reports
    // once it is idle (within seconds).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let overview = partitions::overview(&db.pool).await.expect("overview");
        assert_eq!(
            overview.iter().map(|(t, _)| t).collect::<Vec<_>>(),
            status.iter().collect::<Vec<_>>(),
            "the tables' state is the status the metrics show"
        );
        let (_, disputes) = overview
            .iter()
            .find(|(t, _)| t.table == "public.dispute_events")
            .expect("dispute_events");
        assert!(
            disputes
                .last()
                .expect("partitions")
                .partition
                .from
                .is_none(),
            "the default partition comes last"
        );
        let rows = |name: &str| {
            disputes
                .iter()
                .find(|p| name.ends_with(&p.partition.name))
                .unwrap_or_else(|| panic!("{name} is listed"))
                .estimated_rows
        };
        let total: i64 = disputes.iter().map(|p| p.estimated_rows).sum();
        if (rows(&yesterday), rows(&today), total) == (40, 40, 80) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "estimates: {yesterday} {}, {today} {}, all {total}",
            rows(&yesterday),
            rows(&today)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// An outbox event `days` old, published or not; returns its partition's name.
async fn old_outbox_event(db: &TestDatabase, days: i32, published: bool) -> String {
    sqlx::query_scalar(
        "INSERT INTO outbox (event_id, aggregate_type, aggregate_id, sequence, event_type, \
                             schema_version, payload, created_at, published_at) \
         SELECT gen_random_uuid(), 'order', 'o-old', 1, 'order_created', 1, '{}', t, \
                CASE WHEN $2 THEN t END \
         FROM (SELECT now() - make_interval(days => $1) AS t) AS at \
         RETURNING tableoid::regclass::text",
    )
    .bind(days)
    .bind(published)
    .fetch_one(&db.pool)
    .await
    .expect("an old outbox event")
}

async fn exists(db: &TestDatabase, table: &str) -> bool {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(table)
        .fetch_one(&db.pool)
        .await
        .expect("lookup")
}

#[tokio::test]
async fn old_outbox_partitions_go_once_published_or_by_age_when_debezium_reads_them() {
    let db = TestDatabase::new().await;
    let published = old_outbox_event(&db, 4, true).await;
    let unpublished = old_outbox_event(&db, 3, false).await;
    assert_ne!(published, unpublished);
    let run = |relay| MaintainOptions {
        outbox_retention: DAY,
        outbox_relay: relay,
        ..opts(None)
    };

    // The polling relay marks what it published: the unpublished event keeps its day.
    partitions::maintain(&db.pool, &run(OutboxRelay::Polling))
        .await
        .expect("maintain");
    assert!(!exists(&db, &published).await, "published and old: dropped");
    assert!(exists(&db, &unpublished).await, "unpublished: kept");

    // Debezium marks nothing, so age decides — but not while its slot is idle: a stopped
    // Debezium may not have read the day yet.
    sqlx::query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')")
        .bind(&db.name)
        .execute(&db.pool)
        .await
        .expect("a logical slot (the test cluster runs with wal_level=logical)");
    partitions::maintain(&db.pool, &run(OutboxRelay::Debezium))
        .await
        .expect("maintain");
    assert!(exists(&db, &unpublished).await, "an idle slot keeps it");

    sqlx::query("SELECT pg_drop_replication_slot($1)")
        .bind(&db.name)
        .execute(&db.pool)
        .await
        .expect("drop the slot");
    partitions::maintain(&db.pool, &run(OutboxRelay::Debezium))
        .await
        .expect("maintain");
    assert!(!exists(&db, &unpublished).await, "old enough: dropped");
    assert_eq!(count(&db.pool, "SELECT count(*) FROM outbox").await, 0);
}

#[tokio::test]
async fn the_analytics_inbox_forgets_events_older_than_it_keeps_them() {
    let db = TestDatabase::new().await;
    for days in [40, 36, 2] {
        sqlx::query(
            "INSERT INTO analytics.inbox (event_id, event_type, schema_version, aggregate_type, \
                                          aggregate_id, sequence, outcome, processed_at) \
             VALUES (gen_random_uuid(), 'order_created', 1, 'order', 'o-1', 1, 'projected', \
                     now() - make_interval(days => $1))",
        )
        .bind(days)
        .execute(&db.pool)
        .await
        .expect("an inbox row");
    }
    let dry = partitions::maintain(
        &db.pool,
        &MaintainOptions {
            dry_run: true,
            ..opts(None)
        },
    )
    .await
    .expect("dry run");
    assert_eq!(dry.inbox_pruned, 0);
    let report = partitions::maintain(&db.pool, &opts(None))
        .await
        .expect("maintain");
    assert_eq!(
        report.inbox_pruned, 2,
        "the 36- and 40-day-old rows (35 days kept)"
    );
    assert_eq!(
        count(&db.pool, "SELECT count(*) FROM analytics.inbox").await,
        1
    );
}
