//! `partition-maintain`: premaking, retention, dedupe pruning.

use std::time::Duration;

use pm_storage::partitions::{self, MaintainError, MaintainOptions};
use pm_storage::testing::TestDatabase;

use crate::fixtures::count;

const DAY: Duration = Duration::from_secs(24 * 3600);

fn opts(retention: Option<Duration>) -> MaintainOptions {
    MaintainOptions {
        retention,
        dedupe_keep: 35 * DAY,
        dry_run: false,
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
