//! Scenarios played by `pmctl simulate-provider` and checked by `pmctl verify`, in every
//! pipeline: sync (straight to the API), ingest → API over HTTP, ingest → Kafka → API; and
//! `pmctl demo` itself.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pm_storage::testing::TestDatabase;

use crate::process::{demo, eventually, free_port, run, text, Pmctl, SECRET};

const TOKEN: &str = "e2e-token";

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scenarios")
        .join(format!("{name}.toml"))
}

/// Runs `pmctl <args>` to its end, sending `key` (PM_API_KEY) where it calls the API.
/// Warnings only, and none of librdkafka's.
const QUIET: (&str, &str) = ("PM_LOG", "warn,librdkafka=off,rdkafka=off");

fn pmctl(args: &[&str], key: &str) -> Output {
    run(args, &[("PM_API_KEY", key), QUIET])
}

/// Plays `name` against `target` with the provider simulator on `provider_port`, then
/// verifies; in kafka mode the consumers may still be catching up, so verify is retried.
pub(crate) async fn play_and_verify(
    name: &str,
    target: &str,
    api: &Pmctl,
    provider_port: u16,
    eventually_consistent: bool,
) {
    let dir = tempfile::tempdir().expect("tmp");
    let ledger = dir.path().join("ledger.json");
    let (ledger_arg, scenario_arg) = (
        ledger.display().to_string(),
        scenario(name).display().to_string(),
    );
    let listen = format!("127.0.0.1:{provider_port}");
    let api_url = api.url("");
    let played = pmctl(
        &[
            "simulate-provider",
            "--listen",
            &listen,
            "--scenario",
            &scenario_arg,
            "--target",
            target,
            "--api-url",
            &api_url,
            "--webhook-secret",
            SECRET,
            "--ledger",
            &ledger_arg,
            "--speed",
            "4",
            "--exit-when-done",
        ],
        &api.key,
    );
    assert!(played.status.success(), "{name}: {}", text(&played));
    let verify = || {
        pmctl(
            &["verify", "--ledger", &ledger_arg, "--api-url", &api_url],
            &api.key,
        )
    };
    if eventually_consistent {
        eventually(&format!("{name} verified"), || async {
            verify().status.success()
        })
        .await;
    }
    let verified = verify();
    assert!(verified.status.success(), "{name}: {}", text(&verified));
    assert!(
        text(&verified).contains("nothing lost, nothing doubled"),
        "{}",
        text(&verified)
    );
}

async fn api(
    db: &TestDatabase,
    provider_port: u16,
    extra_env: &[(&str, &str)],
    args: &[&str],
) -> Pmctl {
    let provider = format!("http://127.0.0.1:{provider_port}");
    let mut env = vec![
        ("PM_DATABASE_URL", db.url.as_str()),
        ("PM_WEBHOOK_SECRETS", SECRET),
        ("PM_INTERNAL_TOKEN", TOKEN),
        ("PM_PROVIDER_URL", provider.as_str()),
    ];
    env.extend_from_slice(extra_env);
    let api = Pmctl::start(args, &env).await.keyed(db).await;
    api.wait_for("/health/ready", 200).await;
    api
}

#[tokio::test]
async fn sync_mode_quickstart_and_chaos_verify() {
    for name in ["quickstart", "chaos"] {
        let db = TestDatabase::new().await;
        let provider_port = free_port();
        let api = api(&db, provider_port, &[], &["serve-api"]).await;
        play_and_verify(name, &api.url(""), &api, provider_port, false).await;
    }
}

#[tokio::test]
async fn ingest_http_quickstart_and_chaos_verify() {
    for name in ["quickstart", "chaos"] {
        let db = TestDatabase::new().await;
        let provider_port = free_port();
        let api = api(&db, provider_port, &[], &["serve-api"]).await;
        let env = [("PM_WEBHOOK_SECRETS", SECRET), ("PM_INTERNAL_TOKEN", TOKEN)];
        let api_url = api.url("");
        let ingest = Pmctl::start(
            &["serve-ingest", "--sink", "http", "--api-url", &api_url],
            &env,
        )
        .await;
        play_and_verify(name, &ingest.url(""), &api, provider_port, false).await;
    }
}

#[tokio::test]
async fn ingest_kafka_quickstart_and_chaos_verify() {
    let brokers = pm_kafka::testing::brokers();
    for name in ["quickstart", "chaos"] {
        let db = TestDatabase::new().await;
        let provider_port = free_port();
        let prefix = pm_kafka::testing::unique("e2e-sim");
        let kafka = [
            ("PM_KAFKA_BROKERS", brokers.as_str()),
            ("PM_KAFKA_TOPIC_PREFIX", prefix.as_str()),
        ];
        let ingest = Pmctl::start(
            &["serve-ingest", "--sink", "kafka"],
            &[&kafka[..], &[("PM_WEBHOOK_SECRETS", SECRET)]].concat(),
        )
        .await;
        let api = api(
            &db,
            provider_port,
            &kafka,
            &["serve-api", "--mode", "kafka"],
        )
        .await;
        play_and_verify(name, &ingest.url(""), &api, provider_port, true).await;
    }
}

#[tokio::test]
async fn verify_catches_a_broken_run() {
    let db = TestDatabase::new().await;
    let provider_port = free_port();
    let api = api(&db, provider_port, &[], &["serve-api"]).await;
    play_and_verify("quickstart", &api.url(""), &api, provider_port, false).await;

    // The same ledger against a database that lost an event and changed a status.
    let dir = tempfile::tempdir().expect("tmp");
    let ledger = dir.path().join("ledger.json");
    let text_of = |o: &Output| text(o);
    let plan = pm_scenario::Scenario::from_toml(
        &std::fs::read_to_string(scenario("quickstart")).expect("file"),
    )
    .expect("scenario")
    .generate();
    std::fs::write(&ledger, plan.ledger.to_json()).expect("ledger");
    let ledger_arg = ledger.display().to_string();
    let api_url = api.url("");
    let ok = pmctl(
        &["verify", "--ledger", &ledger_arg, "--api-url", &api_url],
        &api.key,
    );
    assert!(ok.status.success(), "{}", text_of(&ok));

    sqlx::query("DELETE FROM order_events WHERE ctid = (SELECT ctid FROM order_events WHERE kind = 'webhook_received' LIMIT 1)")
        .execute(&db.pool)
        .await
        .expect("delete an event");
    let broken = pmctl(
        &[
            "verify",
            "--ledger",
            &ledger_arg,
            "--api-url",
            &api_url,
            "--json",
        ],
        &api.key,
    );
    assert_eq!(broken.status.code(), Some(3), "a mismatch is exit code 3");
    let report: serde_json::Value = serde_json::from_slice(&broken.stdout).expect("json report");
    assert_eq!(
        report["missing"].as_array().map(Vec::len),
        Some(1),
        "{report}"
    );

    sqlx::query("UPDATE orders SET status = 'created' WHERE order_id = (SELECT order_id FROM orders WHERE status = 'success' LIMIT 1)")
        .execute(&db.pool)
        .await
        .expect("change a status");
    let broken = pmctl(
        &["verify", "--ledger", &ledger_arg, "--api-url", &api_url],
        &api.key,
    );
    assert_eq!(broken.status.code(), Some(3));
    assert!(
        text_of(&broken).contains("MISMATCH"),
        "{}",
        text_of(&broken)
    );
}

#[tokio::test]
async fn the_demo_runs_and_verifies() {
    let out = demo(&[], &[], &[QUIET]).await;
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("nothing lost, nothing doubled") && t.contains("embedded PostgreSQL"),
        "{t}"
    );
    assert!(
        t.contains("/metrics (with the API key below)") && t.contains("--otlp-endpoint"),
        "the report says where the metrics are and how to see a trace: {t}"
    );
}

#[tokio::test]
async fn the_demo_starts_apache_kafka_and_runs_through_it() {
    // `--kafka` without brokers: the demo starts (and removes) a cluster of its own.
    let out = demo(&[], &["--kafka"], &[QUIET]).await;
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("DLQ: 0 message(s)"), "{t}");
    assert!(t.contains("nothing lost, nothing doubled"), "{t}");
    assert!(
        t.contains(&format!(
            "Apache Kafka {}",
            pm_kafka::local::kafka_version()
        )),
        "the report names the broker and its version: {t}"
    );
}

#[tokio::test]
async fn a_capture_goes_through_the_simulated_provider() {
    let db = TestDatabase::new().await;
    let provider_port = free_port();
    let api = api(&db, provider_port, &[], &["serve-api"]).await;
    let listen = format!("127.0.0.1:{provider_port}");
    let mut provider = Command::new(env!("CARGO_BIN_EXE_pmctl"))
        .args(["simulate-provider", "--listen", &listen])
        .env("PM_LOG", "warn")
        .spawn()
        .expect("simulator");
    let provider_url = format!("http://{listen}");
    let http = api.client();
    eventually("the simulator", || async {
        http.get(format!("{provider_url}/health/live"))
            .send()
            .await
            .is_ok()
    })
    .await;

    let t = chrono::Utc::now().timestamp();
    let body = crate::process::order_json("cap-e1", "cap-o1", "updated", 5);
    let sent = http
        .post(api.url("/webhooks/payments/orders"))
        .header("content-type", "application/json")
        .header(
            "webhook-signature",
            pm_domain::signature::header_value(SECRET.as_bytes(), t, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .expect("webhook");
    assert_eq!(sent.status(), 202);
    let capture = http
        .post(api.url("/orders/cap-o1/capture"))
        .json(&serde_json::json!({"amount": "12.30", "currency": "EUR", "idempotency_key": "cap-key-1"}))
        .send()
        .await
        .expect("capture");
    assert_eq!(capture.status(), 200);
    let accepted: serde_json::Value = http
        .get(format!("{provider_url}/_sim/accepted"))
        .send()
        .await
        .expect("accepted")
        .json()
        .await
        .expect("json");
    assert_eq!(accepted[0]["type"], "capture");
    assert_eq!(accepted[0]["amount"], "12.30");
    assert_eq!(accepted[0]["idempotency_key"], "cap-key-1");
    let _ = provider.kill();
    let _ = provider.wait();
}
