//! The unpartitioned layout: same schema by name, the services' statements unchanged, and
//! maintenance that leaves it alone.

use pm_domain::dispute::ChargebackStatus;
use pm_domain::order::OrderStatus;
use pm_storage::layout::{self, Layout, LayoutError};
use pm_storage::partitions::{self, MaintainOptions, MIN_DEDUPE_KEEP};
use pm_storage::testing::TestDatabase;
use pm_storage::webhooks::{apply_chargeback_tx, apply_order_tx, ChargebackOutcome, Delivery};

use crate::fixtures::{chargeback, count, order};

/// The indexes and constraints of a table, by name with their definitions (the table's name
/// is the same in both layouts, so the definitions must match exactly once `ON ONLY` of the
/// partitioned parent is read as `ON`).
async fn shape(pool: &sqlx::PgPool, table: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT indexrelid::regclass::text || ': ' || replace(pg_get_indexdef(indexrelid), ' ON ONLY ', ' ON ')
         FROM pg_index WHERE indrelid = to_regclass($1)
         UNION ALL
         SELECT conname || ': ' || pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = to_regclass($1)
         ORDER BY 1",
    )
    .bind(table)
    .fetch_all(pool)
    .await
    .expect("shape")
}

#[tokio::test]
async fn an_empty_database_switches_to_plain_tables_with_the_same_shape() {
    let partitioned = TestDatabase::new().await;
    let db = TestDatabase::new().await;
    assert_eq!(
        layout::current(&db.pool).await.expect("layout"),
        Layout::Partitioned
    );
    assert!(layout::ensure(&db.pool, Layout::Unpartitioned)
        .await
        .expect("switch"));
    assert_eq!(
        layout::current(&db.pool).await.expect("layout"),
        Layout::Unpartitioned
    );
    for table in partitions::PARTITIONED_TABLES {
        let kind: String =
            sqlx::query_scalar("SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1)")
                .bind(table)
                .fetch_one(&db.pool)
                .await
                .expect("relkind");
        assert_eq!(kind, "r", "{table} is an ordinary table");
        let want = shape(&partitioned.pool, table).await;
        assert!(
            want.len() >= 4,
            "indexes and constraints of {table}: {want:?}"
        );
        assert_eq!(shape(&db.pool, table).await, want, "{table}");
        let leftovers = count(
            &db.pool,
            &format!("SELECT count(*) FROM pg_inherits WHERE inhparent = to_regclass('{table}')"),
        )
        .await;
        assert_eq!(leftovers, 0);
    }
    // pg_partman no longer knows the tables, and its template tables are gone.
    let configured = count(
        &db.pool,
        "SELECT count(*) FROM partman.part_config WHERE parent_table IN ('public.order_events', 'public.dispute_events')",
    )
    .await;
    assert_eq!(configured, 0);
    let templates = count(
        &db.pool,
        "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'template_public_%_events'",
    )
    .await;
    assert_eq!(templates, 0);

    // Asking again changes nothing; asking for the way back is refused.
    assert!(!layout::ensure(&db.pool, Layout::Unpartitioned)
        .await
        .expect("again"));
    assert!(matches!(
        layout::ensure(&db.pool, Layout::Partitioned).await,
        Err(LayoutError::NoWayBack)
    ));
}

#[tokio::test]
async fn webhooks_and_maintenance_work_on_the_unpartitioned_layout() {
    let db = TestDatabase::new().await;
    layout::ensure(&db.pool, Layout::Unpartitioned)
        .await
        .expect("switch");
    apply_order_tx(
        &db.pool,
        &order("e1", "o1", OrderStatus::Created, 1),
        &Delivery::now(),
    )
    .await
    .expect("order");
    let outcome = apply_chargeback_tx(
        &db.pool,
        &chargeback("e2", "o1", ChargebackStatus::Opened, 2),
        &Delivery::now(),
    )
    .await
    .expect("chargeback");
    assert_ne!(outcome, ChargebackOutcome::OrderUnknown);
    assert_eq!(
        count(&db.pool, "SELECT count(*) FROM order_events").await,
        1
    );
    assert_eq!(
        count(&db.pool, "SELECT count(*) FROM dispute_events").await,
        1
    );

    let report = partitions::maintain(
        &db.pool,
        &MaintainOptions {
            retention: None,
            dedupe_keep: MIN_DEDUPE_KEEP,
            dry_run: false,
            cluster_closed: Some(std::time::Duration::from_secs(1)),
            outbox_retention: partitions::DEFAULT_OUTBOX_RETENTION,
            outbox_relay: Default::default(),
            analytics_inbox_keep: partitions::DEFAULT_ANALYTICS_INBOX_KEEP,
        },
    )
    .await
    .expect("maintenance runs");
    // Only the outbox is left to maintain: it is partitioned whatever the event tables' layout.
    let maintained = |tables: Vec<partitions::TableReport>| {
        tables.into_iter().map(|t| t.table).collect::<Vec<_>>()
    };
    assert_eq!(maintained(report.tables), [partitions::OUTBOX_TABLE]);
    assert!(report.clustered.is_empty());
    assert_eq!(
        maintained(partitions::status(&db.pool).await.expect("status")),
        [partitions::OUTBOX_TABLE]
    );
}

#[tokio::test]
async fn a_database_with_events_keeps_its_layout() {
    let db = TestDatabase::new().await;
    apply_order_tx(
        &db.pool,
        &order("e1", "o1", OrderStatus::Created, 1),
        &Delivery::now(),
    )
    .await
    .expect("order");
    let refused = layout::ensure(&db.pool, Layout::Unpartitioned).await;
    assert!(
        matches!(
            refused,
            Err(LayoutError::NotEmpty {
                table: "public.order_events",
                rows: 1,
                ..
            })
        ),
        "{refused:?}"
    );
    assert_eq!(
        layout::current(&db.pool).await.expect("layout"),
        Layout::Partitioned
    );
}
