//! TLS on the listeners: HTTPS only, certificates re-read on SIGHUP without dropping
//! open connections, client certificates on `/internal/*`, and ingest forwarding to the
//! API over HTTPS with CA verification and its own client certificate.

use pm_storage::testing::TestDatabase;
use pm_tls::testing::{IssuedFiles, TestCa};

use crate::process::{eventually, order_json, path, send_webhook, Pmctl, SECRET};

const TOKEN: &str = "e2e-tls-internal-token";

/// A client that trusts only `ca` (and presents `identity`, when given).
fn client(ca: &TestCa, identity: Option<&IssuedFiles>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).unwrap());
    if let Some(files) = identity {
        let mut pem = std::fs::read(&files.cert).unwrap();
        pem.extend(std::fs::read(&files.key).unwrap());
        builder = builder.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    builder.build().unwrap()
}

#[tokio::test]
async fn the_api_serves_https_only_and_swaps_its_certificate_on_sighup_without_dropping_connections(
) {
    let dir = tempfile::tempdir().unwrap();
    let (old_ca, new_ca) = (TestCa::new("old CA"), TestCa::new("new CA"));
    let server = old_ca
        .server(&["localhost", "127.0.0.1"])
        .write(dir.path(), "api");
    let db = TestDatabase::new().await;
    let env = [
        ("PM_DATABASE_URL", db.url.as_str()),
        ("PM_WEBHOOK_SECRETS", SECRET),
        ("PM_TLS_CERT", path(&server.cert)),
        ("PM_TLS_KEY", path(&server.key)),
        // Idle keep-alive connections are closed after the header timeout; this test
        // needs one to stay open across the reload.
        ("PM_HEADER_TIMEOUT", "120s"),
    ];
    let old_client = client(&old_ca, None);
    let api = Pmctl::start_https(&["serve-api"], &env, old_client.clone()).await;

    // Plain HTTP on the TLS port gets no HTTP answer at all.
    let plain = format!("http://127.0.0.1:{}/health/live", api.port);
    assert!(reqwest::get(&plain).await.is_err(), "plain HTTP answered");
    // A client that does not trust the server's CA refuses it.
    let stranger = client(&new_ca, None);
    assert!(stranger.get(api.url("/health/live")).send().await.is_err());
    // This connection stays open (pooled) across the reload.
    let live = old_client
        .get(api.url("/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    live.bytes().await.unwrap();

    // Rotate to a certificate of another CA and signal.
    let rotated = new_ca
        .server(&["localhost", "127.0.0.1"])
        .write(dir.path(), "api");
    assert_eq!(rotated.key, server.key);
    api.hangup();
    eventually("new connections get the new certificate", || async {
        let fresh = client(&new_ca, None);
        fresh
            .get(api.url("/health/live"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    // The connection opened before the reload still works: a new one made by this client
    // would fail (it trusts only the old CA), so this request travels on the old one.
    let again = old_client.get(api.url("/health/live")).send().await;
    assert_eq!(again.expect("the open connection survived").status(), 200);

    // A broken key on the next reload keeps the running certificate.
    std::fs::write(&server.key, "-----BEGIN PRIVATE KEY-----\nbroken").unwrap();
    api.hangup();
    api.wait_for_log("TLS certificate NOT reloaded").await;
    let fresh = client(&new_ca, None);
    let r = fresh.get(api.url("/health/live")).send().await;
    assert_eq!(
        r.expect("still serving the last good certificate").status(),
        200
    );
}

#[tokio::test]
async fn internal_routes_need_a_client_certificate_and_ingest_forwards_over_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("e2e CA");
    let ca_file = ca.write_cert(dir.path());
    let api_cert = ca
        .server(&["localhost", "127.0.0.1"])
        .write(dir.path(), "api");
    let ingest_cert = ca
        .server(&["localhost", "127.0.0.1"])
        .write(dir.path(), "ingest");
    let ingest_identity = ca.client("pm-ingest").write(dir.path(), "ingest-client");
    let other_ca = TestCa::new("someone else's CA");
    let stranger_identity = other_ca.client("pm-ingest").write(dir.path(), "stranger");

    let db = TestDatabase::new().await;
    let common = [
        ("PM_DATABASE_URL", db.url.as_str()),
        ("PM_WEBHOOK_SECRETS", SECRET),
        ("PM_INTERNAL_TOKEN", TOKEN),
    ];
    let api_env = [
        ("PM_TLS_CERT", path(&api_cert.cert)),
        ("PM_TLS_KEY", path(&api_cert.key)),
        ("PM_TLS_CLIENT_CA", path(&ca_file)),
    ];
    let env: Vec<_> = common.iter().chain(&api_env).copied().collect();
    let api = Pmctl::start_https(&["serve-api"], &env, client(&ca, None)).await;
    let api_url = format!("https://localhost:{}", api.port);

    // Without a client certificate: reads of health work, /internal/* does not, even with
    // the right token.
    let envelope = format!(
        r#"{{"event_id":"00000000-0000-4000-8000-000000000001","type":"order","received_at":"2026-01-01T00:00:00Z","payload":{}}}"#,
        order_json("tls-e1", "tls-o0", "success", 0)
    );
    let internal = |c: reqwest::Client| {
        let (url, body) = (
            format!("{api_url}/internal/updates/orders"),
            envelope.clone(),
        );
        async move {
            c.post(url)
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
        }
    };
    let anonymous = internal(client(&ca, None)).await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let problem: serde_json::Value = anonymous.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("client certificate")),
        "{problem}"
    );
    // A certificate from another CA fails the handshake.
    assert!(internal(client(&ca, Some(&stranger_identity)))
        .await
        .is_err());
    // With a certificate of the client CA and the token, the call goes through.
    let with_cert = internal(client(&ca, Some(&ingest_identity))).await.unwrap();
    assert_eq!(with_cert.status(), 202, "{:?}", with_cert.text().await);

    // Ingest, itself on HTTPS, forwards over mutual TLS, checking the API against the CA.
    let ingest_env: Vec<_> = common
        .iter()
        .copied()
        .chain([
            ("PM_TLS_CERT", path(&ingest_cert.cert)),
            ("PM_TLS_KEY", path(&ingest_cert.key)),
            ("PM_API_CA_FILE", path(&ca_file)),
            ("PM_API_CLIENT_CERT", path(&ingest_identity.cert)),
            ("PM_API_CLIENT_KEY", path(&ingest_identity.key)),
        ])
        .collect();
    let ingest = Pmctl::start_https(
        &["serve-ingest", "--sink", "http", "--api-url", &api_url],
        &ingest_env,
        client(&ca, None),
    )
    .await;
    ingest.wait_for("/health/ready", 200).await;
    let accepted = send_webhook(
        &ingest,
        "/webhooks/payments/orders",
        &order_json("tls-e2", "tls-o1", "success", 0),
    )
    .await;
    assert_eq!(accepted.status(), 202);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(stored, 2);
}

#[tokio::test]
async fn bad_tls_settings_stop_the_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("e2e CA");
    let a = ca.server(&["localhost"]).write(dir.path(), "a");
    let b = ca.server(&["localhost"]).write(dir.path(), "b");
    let run = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pmctl"))
            .args(["serve-ingest", "--sink", "http", "--internal-token", "t"])
            .args(["--insecure-skip-signature", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env("PM_LOG", "off")
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let mismatch = run(&["--tls-cert", path(&a.cert), "--tls-key", path(&b.key)]);
    assert!(mismatch.contains("do not go together"), "{mismatch}");
    let missing = run(&["--tls-cert", path(&a.cert)]);
    assert!(missing.contains("--tls-key"), "{missing}");
    let nowhere = dir.path().join("absent.pem");
    let absent = run(&["--api-ca-file", path(&nowhere)]);
    assert!(absent.contains("absent.pem"), "{absent}");
}
