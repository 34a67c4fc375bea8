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
}

#[tokio::test]
async fn partition_maintain_reports_as_json() {
    let db = TestDatabase::new().await;
    let out = pmctl(&["partition-maintain", "--json"], &db.url);
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["tables"].as_array().map(Vec::len), Some(2));
    assert_eq!(report["tables"][0]["default_rows"], 0);
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
