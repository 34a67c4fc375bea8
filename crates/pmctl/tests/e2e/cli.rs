//! The `pmctl` binary as a user runs it: real processes, real PostgreSQL, HTTP only.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use pm_storage::testing::TestDatabase;

use crate::process::{free_port, run, text};

fn pmctl(args: &[&str], database_url: &str) -> Output {
    run(args, &[("PM_DATABASE_URL", database_url)])
}

/// An empty database next to the test's migrated one.
async fn empty_database(db: &TestDatabase, name: &str) -> String {
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&db.pool)
        .await
        .expect("create");
    db.url.replace(&db.name, name)
}

#[tokio::test]
async fn migrate_lists_then_applies_then_has_nothing_to_do() {
    let db = TestDatabase::new().await;
    let url = empty_database(&db, &format!("{}_fresh", db.name)).await;
    let check = pmctl(&["migrate", "--check"], &url);
    assert_eq!(
        check.status.code(),
        Some(3),
        "pending migrations fail the check: {}",
        text(&check)
    );
    assert!(text(&check).contains("pending"), "{}", text(&check));
    let dry = pmctl(&["migrate", "--dry-run"], &url);
    assert!(dry.status.success(), "{}", text(&dry));
    assert!(
        text(&dry).contains("pending") && text(&dry).contains("nothing was changed"),
        "{}",
        text(&dry)
    );
    let applied = pmctl(&["migrate"], &url);
    assert!(applied.status.success(), "{}", text(&applied));
    assert!(
        text(&applied).contains("migration(s) applied"),
        "{}",
        text(&applied)
    );
    let again = pmctl(&["migrate"], &url);
    assert!(
        again.status.success() && text(&again).contains("up to date"),
        "{}",
        text(&again)
    );
    let check = pmctl(&["migrate", "--check"], &url);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check));
    let unreachable = pmctl(
        &["migrate", "--check"],
        "postgres://nobody@127.0.0.1:1/none?connect_timeout=2",
    );
    assert_eq!(
        unreachable.status.code(),
        Some(1),
        "an error is not a failed check: {}",
        text(&unreachable)
    );
    let usage = pmctl(&["migrate", "--check", "--dry-run"], &url);
    assert_eq!(usage.status.code(), Some(2), "{}", text(&usage));
}

#[tokio::test]
async fn migrate_builds_the_unpartitioned_layout_on_request_and_keeps_it() {
    let db = TestDatabase::new().await;
    let url = empty_database(&db, &format!("{}_plain", db.name)).await;
    let plain = pmctl(&["migrate", "--layout", "unpartitioned"], &url);
    assert!(
        plain.status.success() && text(&plain).contains("switched to the unpartitioned layout"),
        "{}",
        text(&plain)
    );
    let pool = pm_storage::connect(&url, &Default::default()).expect("pool");
    assert_eq!(
        pm_storage::layout::current(&pool).await.expect("layout"),
        pm_storage::layout::Layout::Unpartitioned
    );
    // A later plain `migrate` (every deploy runs one) keeps the layout.
    let again = pmctl(&["migrate"], &url);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(
        pm_storage::layout::current(&pool).await.expect("layout"),
        pm_storage::layout::Layout::Unpartitioned
    );
    let back = pmctl(&["migrate", "--layout", "partitioned"], &url);
    assert_eq!(back.status.code(), Some(1), "{}", text(&back));
    assert!(text(&back).contains("no way back"), "{}", text(&back));
    // Only the outbox is left to maintain: it is partitioned whatever the layout.
    let maintained = pmctl(&["partition-maintain"], &url);
    let said = text(&maintained);
    assert!(maintained.status.success(), "{said}");
    assert!(
        said.contains("public.outbox") && !said.contains("public.order_events"),
        "{said}"
    );
    pool.close().await;
}

#[tokio::test]
async fn send_delivers_one_signed_webhook_and_its_exit_code_says_how_it_went() {
    let db = TestDatabase::new().await;
    let api = crate::process::Pmctl::start(
        &["serve-api"],
        &[
            ("PM_DATABASE_URL", db.url.as_str()),
            ("PM_WEBHOOK_SECRETS", crate::process::SECRET),
        ],
    )
    .await;
    let target = api.url("");
    let send = |args: &[&str]| {
        run(
            &[&["send"], args, &["--target", &target]].concat(),
            &[("PM_WEBHOOK_SECRETS", crate::process::SECRET)],
        )
    };
    let order = ["order", "--order-id", "cli-o1", "--event-id", "cli-e1"];
    let first = send(&[&order[..], &["--status", "success"]].concat());
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    assert!(text(&first).contains("HTTP 202"), "{}", text(&first));
    let again = send(&[&order[..], &["--status", "success"]].concat());
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(text(&again).contains("duplicate"), "{}", text(&again));

    let chargeback = send(&[
        "chargeback",
        "--order-id",
        "cli-o1",
        "--amount",
        "100.50",
        "--currency",
        "EUR",
    ]);
    assert_eq!(chargeback.status.code(), Some(0), "{}", text(&chargeback));
    let (exact,): (bool,) = sqlx::query_as(
        "SELECT amount = 100.50 AND currency = 'EUR' FROM disputes WHERE order_id = 'cli-o1'",
    )
    .fetch_one(&db.pool)
    .await
    .expect("the dispute");
    assert!(exact, "the dispute holds 100.50 EUR");

    let unknown = send(&["chargeback", "--order-id", "cli-nobody"]);
    assert_eq!(
        unknown.status.code(),
        Some(3),
        "a refusal is exit code 3: {}",
        text(&unknown)
    );
    assert!(text(&unknown).contains("404"), "{}", text(&unknown));
    let wrong_secret = run(
        &[
            "send",
            "order",
            "--target",
            &target,
            "--webhook-secret",
            "not-it",
        ],
        &[],
    );
    assert_eq!(
        wrong_secret.status.code(),
        Some(3),
        "{}",
        text(&wrong_secret)
    );
    let invalid = send(&["order", "--status", "shipped"]);
    assert_eq!(invalid.status.code(), Some(2), "{}", text(&invalid));
    assert!(text(&invalid).contains("status"), "{}", text(&invalid));
}

#[tokio::test]
async fn completions_and_manual_pages_come_from_the_parser() {
    let bash = run(&["completions", "bash"], &[]);
    assert_eq!(bash.status.code(), Some(0), "{}", text(&bash));
    assert!(text(&bash).contains("serve-api") && text(&bash).contains("--webhook-secret"));
    let dir = tempfile::tempdir().expect("dir");
    let dir_arg = dir.path().to_str().expect("utf-8").to_owned();
    let man = run(&["man", "--out-dir", &dir_arg], &[]);
    assert_eq!(man.status.code(), Some(0), "{}", text(&man));
    let page =
        std::fs::read_to_string(dir.path().join("pmctl-migrate.1")).expect("a page per command");
    assert!(page.contains(r"\-\-check"), "{page}");
    assert!(dir.path().join("pmctl-api-keys-create.1").exists());
    let unknown = run(&["completions", "tcsh"], &[]);
    assert_eq!(unknown.status.code(), Some(2));
}

#[tokio::test]
async fn partition_maintain_reports_as_json() {
    let db = TestDatabase::new().await;
    let out = pmctl(&["partition-maintain", "--json"], &db.url);
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let tables: Vec<&str> = report["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .filter_map(|t| t["table"].as_str())
        .collect();
    assert_eq!(
        tables,
        [
            "public.order_events",
            "public.dispute_events",
            "public.outbox"
        ]
    );
    assert_eq!(report["tables"][0]["default_rows"], 0);
    assert_eq!(
        report["clustered"],
        serde_json::json!([]),
        "only when asked"
    );

    let dry = pmctl(
        &[
            "partition-maintain",
            "--cluster-closed",
            "--dry-run",
            "--json",
        ],
        &db.url,
    );
    assert!(dry.status.success(), "{}", text(&dry));
    let report: serde_json::Value = serde_json::from_slice(&dry.stdout).expect("JSON report");
    let pending = report["clustered"]
        .as_array()
        .expect("clustered partitions");
    assert!(
        !pending.is_empty(),
        "the premade days before today are over"
    );
    assert!(
        pending.iter().all(|p| p["outcome"]["state"] == "pending"),
        "{pending:?}"
    );
    let table = pmctl(&["partition-maintain", "--cluster-closed"], &db.url);
    assert!(table.status.success(), "{}", text(&table));
    assert!(
        text(&table).contains("clustered on (kind, created_at)"),
        "{}",
        text(&table)
    );
    let again = pmctl(
        &["partition-maintain", "--cluster-closed", "--json"],
        &db.url,
    );
    let report: serde_json::Value = serde_json::from_slice(&again.stdout).expect("JSON report");
    assert_eq!(report["clustered"], serde_json::json!([]), "each day once");
    let unbounded = pmctl(
        &["partition-maintain", "--cluster-lock-timeout", "1s"],
        &db.url,
    );
    assert_eq!(
        unbounded.status.code(),
        Some(2),
        "the timeout needs --cluster-closed"
    );

    let refused = pmctl(&["partition-maintain", "--dedupe-keep", "7d"], &db.url);
    assert!(!refused.status.success());
    assert!(text(&refused).contains("35 days"), "{}", text(&refused));
}

#[tokio::test]
async fn serve_api_refuses_to_start_without_a_webhook_secret() {
    let db = TestDatabase::new().await;
    let out = pmctl(&["serve-api", "--listen", "127.0.0.1:0"], &db.url);
    assert!(!out.status.success());
    assert!(text(&out).contains("--webhook-secret"), "{}", text(&out));
}

#[tokio::test]
async fn serve_api_serves_and_stops_gracefully_on_sigterm() {
    let db = TestDatabase::new().await;
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pmctl"))
        .args([
            "serve-api",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--webhook-secret",
            "s3cret",
        ])
        .env("PM_DATABASE_URL", &db.url)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let client = reqwest::Client::new();
    let ready = format!("http://127.0.0.1:{port}/health/ready");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(&ready).send().await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "serve-api did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = r#"{"provider_event_id":"e1","order_id":"o1","user_id":"0b6f5c3e-8d1a-4c7e-9a51-2f0e1b2c3d4e","status":"created","created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z"}"#;
    let t = chrono::Utc::now().timestamp();
    let r = client
        .post(format!("http://127.0.0.1:{port}/webhooks/payments/orders"))
        .header("content-type", "application/json")
        .header(
            "webhook-signature",
            pm_domain::signature::header_value(b"s3cret", t, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .expect("webhook");
    assert_eq!(r.status(), 202);

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "serve-api did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut logs = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().expect("stderr"), &mut logs).expect("logs");
    assert!(status.success(), "{logs}");
    assert!(logs.contains("serve-api stopped"), "{logs}");
    assert!(!logs.contains("s3cret"), "the secret must never be logged");
}

#[tokio::test]
async fn bench_kafka_measures_a_backlog_and_writes_its_report() {
    let out_dir = tempfile::tempdir().expect("tmp");
    let out = Command::new(env!("CARGO_BIN_EXE_pmctl"))
        .args([
            "bench",
            "kafka",
            "--messages",
            "400",
            "--partitions",
            "2",
            "--batch-sizes",
            "50",
            "--out",
        ])
        .arg(out_dir.path())
        .env("PM_LOG", "warn,librdkafka=off")
        .env("PM_KAFKA_BROKERS", pm_kafka::testing::brokers())
        .output()
        .expect("pmctl bench kafka");
    assert!(out.status.success(), "{}", text(&out));
    let json = std::fs::read_dir(out_dir.path())
        .expect("out dir")
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .expect("a JSON report");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(json.path()).expect("read")).expect("json");
    let run = &report["runs"][0];
    assert_eq!(run["messages"], 400);
    assert_eq!(run["partitions"], 2);
    assert!(
        run["apply_rate"].as_f64().is_some_and(|r| r > 0.0),
        "{report}"
    );
}
