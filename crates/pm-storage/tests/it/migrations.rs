use pm_storage::testing::TestDatabase;

#[tokio::test]
async fn migrations_are_idempotent_and_report_their_state() {
    let db = TestDatabase::new().await;
    let status = pm_storage::migrate::status(&db.pool).await.expect("status");
    assert!(
        !status.is_empty() && status.iter().all(|m| m.applied),
        "{status:?}"
    );
    // Running again applies nothing and fails nothing.
    let applied = pm_storage::migrate::run(&db.pool)
        .await
        .expect("second run");
    assert!(applied.is_empty());
    let parents: Vec<String> =
        sqlx::query_scalar("SELECT parent_table FROM partman.part_config ORDER BY 1")
            .fetch_all(&db.pool)
            .await
            .expect("part_config");
    assert_eq!(
        parents,
        [
            "public.dispute_events",
            "public.order_events",
            "public.outbox"
        ]
    );
    let premake: Vec<i32> = sqlx::query_scalar("SELECT premake FROM partman.part_config")
        .fetch_all(&db.pool)
        .await
        .expect("premake");
    assert!(premake.iter().all(|p| *p >= 7));
}

#[tokio::test]
async fn a_fresh_database_is_migrated_from_scratch() {
    let db = TestDatabase::new().await;
    sqlx::query("CREATE DATABASE scratch_migrate")
        .execute(&db.pool)
        .await
        .expect("create");
    let url = db.url.replace(&db.name, "scratch_migrate");
    let pool = pm_storage::connect(&url, &Default::default()).expect("pool");
    let pending = pm_storage::migrate::status(&pool).await.expect("status");
    assert!(pending.iter().all(|m| !m.applied));
    let applied = pm_storage::migrate::run(&pool).await.expect("migrate");
    assert_eq!(applied.len(), pending.len());
    let tz: String = sqlx::query_scalar("SHOW timezone")
        .fetch_one(&pool)
        .await
        .expect("tz");
    assert_eq!(tz, "UTC");
    pool.close().await;
    sqlx::query("DROP DATABASE scratch_migrate WITH (FORCE)")
        .execute(&db.pool)
        .await
        .expect("drop");
}
