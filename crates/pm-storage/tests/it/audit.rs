//! The audit trail is append-only, whoever connects.

use pm_storage::audit::{self, Actor, Entry};
use pm_storage::testing::TestDatabase;

use crate::fixtures::t;

#[tokio::test]
async fn rows_can_be_added_but_never_changed_or_removed() {
    let db = TestDatabase::new().await;
    let actor = Actor::new("ops-1", Some("corr-1".to_owned()));
    audit::record_alone(
        &db.pool,
        &Entry {
            actor: &actor,
            action: "hold_set",
            object_type: "order",
            object_id: "o-1",
            outcome: "applied",
            detail: serde_json::json!({"reason": "risk"}),
        },
        t(1),
    )
    .await
    .expect("append");
    for sql in [
        "UPDATE audit_log SET outcome = 'forged'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ] {
        let err = sqlx::query(sql).execute(&db.pool).await.expect_err(sql);
        let code = err
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.into_owned());
        assert_eq!(code.as_deref(), Some("42501"), "{sql}: {err}");
    }
    let outcome: String = sqlx::query_scalar("SELECT outcome FROM audit_log")
        .fetch_one(&db.pool)
        .await
        .expect("row");
    assert_eq!(outcome, "applied");
}
