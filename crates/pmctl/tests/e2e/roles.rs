//! Least-privilege roles (`pmctl db bootstrap`): the owner migrates and maintains, the
//! application role runs the whole API and can change no schema nor any audit row, the
//! read-only role reads; serve-api warns when it runs with more than it needs.

use std::process::Output;

use pm_storage::testing::TestDatabase;
use serde_json::json;
use sqlx::Connection;

use crate::process::{free_port, order_json, run, send_webhook, text, Pmctl, SECRET};
use crate::scenarios::play_and_verify;

fn pmctl(args: &[&str], url: &str) -> Output {
    run(args, &[("PM_DATABASE_URL", url), ("PM_LOG", "warn")])
}

/// Role names unique to one test (roles belong to the cluster all tests share).
struct Roles {
    owner: String,
    app: String,
    readonly: String,
}

impl Roles {
    fn for_test(tag: &str) -> Roles {
        let n = format!("{tag}_{}", std::process::id());
        Roles {
            owner: format!("own_{n}"),
            app: format!("app_{n}"),
            readonly: format!("ro_{n}"),
        }
    }

    fn bootstrap(&self, superuser_url: &str, extra: &[&str]) -> Output {
        let mut args = vec![
            "db",
            "bootstrap",
            "--owner-role",
            &self.owner,
            "--app-role",
            &self.app,
            "--readonly-role",
            &self.readonly,
        ];
        args.extend_from_slice(extra);
        pmctl(&args, superuser_url)
    }
}

/// `url` connecting as `role` (the throw-away cluster trusts local connections, so the
/// role is what matters).
fn as_role(url: &str, role: &str) -> String {
    let mut parsed = reqwest::Url::parse(url).unwrap();
    parsed.set_username(role).unwrap();
    parsed.to_string()
}

/// Runs `sql` as the connection's role and returns its SQLSTATE, or None if it worked.
async fn refused(conn: &mut sqlx::PgConnection, sql: &str) -> Option<String> {
    match sqlx::raw_sql(sql).execute(&mut *conn).await {
        Ok(_) => None,
        Err(e) => Some(
            e.as_database_error()
                .and_then(|d| d.code())
                .map(|c| c.into_owned())
                .unwrap_or_else(|| e.to_string()),
        ),
    }
}

/// What `pmctl project-analytics` does with an event, as the pool's role: its inbox row and
/// its count in a read model.
async fn projects_analytics(pool: &pm_storage::PgPool, n: u32) {
    let event = json!({
        "event_id": format!("0190a5c4-0000-7000-8000-{n:012}"), "event_type": "order_created",
        "schema_version": 1, "aggregate_type": "order", "aggregate_id": "roles-o",
        "sequence": 1, "occurred_at": "2026-01-01T00:00:00Z", "correlation_id": null,
        "trace_id": null,
        "data": {"order_id": "roles-o", "user_id": crate::process::USER, "status": "created",
                 "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"},
    });
    let event = pm_domain::domain_event::IncomingEvent::parse(event.to_string().as_bytes())
        .expect("an event");
    let applied = pm_storage::analytics::apply(pool, &event).await;
    assert!(
        matches!(applied, Ok(pm_storage::analytics::Applied::Projected)),
        "{applied:?}"
    );
}

#[tokio::test]
async fn a_fresh_database_is_bootstrapped_migrated_and_maintained_without_a_superuser() {
    let db = TestDatabase::new().await;
    let fresh = format!("{}_roles", db.name);
    sqlx::query(&format!("CREATE DATABASE {fresh}"))
        .execute(&db.pool)
        .await
        .unwrap();
    let superuser = db.url.replace(&db.name, &fresh);
    let roles = Roles::for_test("fresh");
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("app-password");
    std::fs::write(&password, "app-password-1\n").unwrap();
    let password_arg = password.to_str().unwrap();

    let first = roles.bootstrap(&superuser, &["--app-password-file", password_arg]);
    assert!(first.status.success(), "{}", text(&first));
    assert!(text(&first).contains("created roles"), "{}", text(&first));
    let again = roles.bootstrap(&superuser, &["--app-password-file", password_arg]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(text(&again).contains("existed"), "{}", text(&again));
    assert!(!text(&again).contains("app-password-1"));

    let owner = as_role(&superuser, &roles.owner);
    let migrated = pmctl(&["migrate"], &owner);
    assert!(migrated.status.success(), "{}", text(&migrated));
    assert!(!text(&migrated).contains("warning"), "{}", text(&migrated));
    // Clustering rewrites partitions, which only their owner may do.
    let maintained = pmctl(&["partition-maintain", "--cluster-closed"], &owner);
    assert!(maintained.status.success(), "{}", text(&maintained));

    // The application role writes into the partitions the owner made.
    let app = as_role(&superuser, &roles.app);
    let pool = pm_storage::connect(&app, &Default::default()).unwrap();
    let key = pm_storage::api_keys::create(
        &pool,
        "made-by-app",
        &pm_domain::api_key::Scope::ALL,
        None,
        &pm_storage::audit::Actor::new("cli:e2e", None),
        pm_domain::time::now(),
    )
    .await;
    assert!(key.is_ok(), "{key:?}");
    projects_analytics(&pool, 1).await;
    let mut conn = sqlx::PgConnection::connect(&app).await.unwrap();
    assert_eq!(
        refused(&mut conn, "DROP TABLE orders").await.as_deref(),
        Some("42501")
    );
}

#[tokio::test]
async fn the_application_role_runs_the_api_and_can_change_no_schema_nor_audit_row() {
    let db = TestDatabase::new().await;
    let roles = Roles::for_test("api");
    // Migrated by a superuser first (the test template), as an existing deployment would
    // be: the bootstrap hands every object to the owner.
    let boot = roles.bootstrap(&db.url, &[]);
    assert!(boot.status.success(), "{}", text(&boot));
    assert!(text(&boot).contains("objects handed to"), "{}", text(&boot));

    let app_url = as_role(&db.url, &roles.app);
    let mut app = sqlx::PgConnection::connect(&app_url).await.unwrap();
    for (sql, what) in [
        ("DROP TABLE orders", "drop a table"),
        ("ALTER TABLE orders ADD COLUMN x int", "alter a table"),
        ("TRUNCATE orders", "truncate a table"),
        ("TRUNCATE audit_log", "truncate the audit log"),
        ("CREATE TABLE mine (x int)", "create a table"),
        ("CREATE INDEX ON orders (user_id)", "create an index"),
        ("DELETE FROM orders", "delete rows"),
        (
            "UPDATE audit_log SET actor = 'someone else'",
            "rewrite the audit log",
        ),
        ("DELETE FROM audit_log", "delete audit rows"),
        (
            "DROP FUNCTION audit_log_is_append_only() CASCADE",
            "drop the audit trigger",
        ),
        (
            "ALTER TABLE audit_log DISABLE TRIGGER USER",
            "disable the audit trigger",
        ),
        ("ALTER TABLE audit_log OWNER TO CURRENT_USER", "take the audit log"),
        ("INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time) VALUES (1, 'x', now(), true, '', 0)", "fake a migration"),
        ("CREATE ROLE intruder", "create a role"),
        ("DELETE FROM analytics.inbox", "forget analytics events"),
        ("TRUNCATE analytics.orders_daily", "truncate a read model"),
        ("CREATE TABLE analytics.mine (x int)", "create an analytics table"),
        ("DROP SCHEMA analytics CASCADE", "drop the analytics schema"),
    ] {
        assert_eq!(
            refused(&mut app, sql).await.as_deref(),
            Some("42501"),
            "the application role could {what}"
        );
    }
    let mut readonly = sqlx::PgConnection::connect(&as_role(&db.url, &roles.readonly))
        .await
        .unwrap();
    assert_eq!(
        refused(&mut readonly, "SELECT count(*) FROM orders").await,
        None
    );
    assert_eq!(
        refused(&mut readonly, "SELECT count(*) FROM analytics.inbox").await,
        None
    );
    assert_eq!(
        refused(
            &mut readonly,
            "INSERT INTO analytics.orders_daily VALUES ('2026-01-01', 1)"
        )
        .await
        .as_deref(),
        Some("42501")
    );
    let app_pool = pm_storage::connect(&app_url, &Default::default()).unwrap();
    projects_analytics(&app_pool, 2).await;
    assert_eq!(
        refused(&mut readonly, "INSERT INTO audit_log (created_at, actor, action, object_type, object_id, outcome, detail) VALUES (now(), 'x', 'x', 'x', 'x', 'x', '{}')").await.as_deref(),
        Some("42501")
    );

    // Everything the API does, as the application role: webhooks, merchant actions
    // (evidence, submit), reads, holds, captures, keys, the audit trail; and no warning.
    let provider = Pmctl::start(&["simulate-provider"], &[]).await;
    let provider_url = provider.url("");
    let env = [
        ("PM_DATABASE_URL", app_url.as_str()),
        ("PM_WEBHOOK_SECRETS", SECRET),
        ("PM_PROVIDER_URL", provider_url.as_str()),
    ];
    let api = Pmctl::start(&["serve-api"], &env).await.keyed(&db).await;
    api.wait_for("/health/ready", 200).await;
    play_and_verify("quickstart", &api.url(""), &api, free_port(), false).await;

    let r = send_webhook(
        &api,
        "/webhooks/payments/orders",
        &order_json("roles-e1", "roles-o1", "updated", 5),
    )
    .await;
    assert_eq!(r.status(), 202);
    let client = api.client();
    for (path, body) in [
        (
            "/orders/roles-o1/hold",
            json!({"action": "set", "reason": "risk"}),
        ),
        ("/orders/roles-o1/hold", json!({"action": "clear"})),
        (
            "/orders/roles-o1/capture",
            json!({"amount": 10, "currency": "USD", "idempotency_key": "roles-k1"}),
        ),
    ] {
        let r = client.post(api.url(path)).json(&body).send().await.unwrap();
        let status = r.status();
        assert!(
            status.is_success(),
            "{path}: {status} {}",
            r.text().await.unwrap()
        );
    }
    let audit: serde_json::Value = client
        .get(api.url("/audit?object_type=order&object_id=roles-o1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .expect("audit items")
        .iter()
        .filter_map(|i| i["action"].as_str())
        .collect();
    assert!(actions.contains(&"capture_settled"), "{audit}");
    let keys = pmctl(
        &["api-keys", "create", "--name", "by-app", "--scope", "read"],
        &app_url,
    );
    assert!(keys.status.success(), "{}", text(&keys));
    let reconciled = pmctl(
        &["reconcile-captures", "--provider-url", &provider_url],
        &app_url,
    );
    assert!(reconciled.status.success(), "{}", text(&reconciled));
}

#[tokio::test]
async fn serve_api_warns_when_its_role_can_change_the_schema() {
    let db = TestDatabase::new().await;
    let roles = Roles::for_test("warn");
    let boot = roles.bootstrap(&db.url, &[]);
    assert!(boot.status.success(), "{}", text(&boot));
    for (url, expected) in [
        (db.url.clone(), Some("is a superuser")),
        (as_role(&db.url, &roles.owner), Some("owns")),
        (as_role(&db.url, &roles.app), None),
    ] {
        let env = [
            ("PM_DATABASE_URL", url.as_str()),
            ("PM_WEBHOOK_SECRETS", SECRET),
            ("PM_LOG", "info"),
        ];
        let api = Pmctl::start(&["serve-api"], &env).await;
        // The check runs before the listener starts: everything it says is logged by then.
        api.wait_for_log("listening").await;
        let lines = api.logged();
        match expected {
            Some(why) => assert!(
                lines.contains("MORE PRIVILEGES THAN IT NEEDS") && lines.contains(why),
                "{url}: {lines}"
            ),
            None => assert!(!lines.contains("MORE PRIVILEGES"), "{lines}"),
        }
    }
}
