//! The provider client against a wiremock provider: exact requests out, every kind of answer in.

use std::time::Duration;

use pm_domain::{Amount, Currency, IdempotencyKey, Money, OrderId};
use pm_provider::wire::{CAPTURE_PATH, REPRESENTMENT_PATH};
use pm_provider::{ProviderClient, ProviderConfig, ProviderError};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// Generous per-request timeout for tests that do not exercise timeouts: the machine running
/// the tests may be busy, and a spurious timeout would only make a test flaky.
const RELAXED_TIMEOUT: Duration = Duration::from_secs(5);

fn config(base_url: String) -> ProviderConfig {
    ProviderConfig {
        base_url,
        connect_timeout: RELAXED_TIMEOUT,
        request_timeout: RELAXED_TIMEOUT,
        max_attempts: 3,
        // Tiny backoff keeps the retry tests fast; the schedule itself is unit-tested.
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
    }
}

fn client(server: &MockServer) -> ProviderClient {
    ProviderClient::new(config(server.uri())).expect("client")
}

/// `client` counting its attempts, and the text its metrics render to.
fn metered(client: ProviderClient) -> (ProviderClient, impl Fn() -> String) {
    let mut registry = prometheus_client::registry::Registry::default();
    let client = client.with_metrics(pm_provider::ProviderMetrics::register(&mut registry));
    let render = move || {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        text
    };
    (client, render)
}

fn order() -> OrderId {
    OrderId::parse("ord-1").expect("order id")
}

fn key() -> IdempotencyKey {
    IdempotencyKey::parse("cap-key-1").expect("idempotency key")
}

/// 100.5 USD, which must go out as `100.50`.
fn money() -> Money {
    let amount = Amount::parse("100.5").expect("amount");
    Money::new(amount, Currency::parse("USD").expect("currency")).expect("money")
}

async fn capture(client: &ProviderClient) -> Result<pm_provider::CaptureOutcome, ProviderError> {
    client.capture(&order(), &money(), &key(), "corr-1").await
}

async fn submit(client: &ProviderClient) -> Result<pm_provider::Representment, ProviderError> {
    let files = ["file-1".to_owned(), "file-2".to_owned()];
    client
        .submit_representment(&order(), &files, "rep-key-1", "corr-2")
        .await
}

async fn requests(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.expect("recording is on")
}

fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request.headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn capture_sends_an_exact_body_with_both_headers_and_parses_success() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(CAPTURE_PATH))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"transaction_id": "tx-9", "status": "success"})),
        )
        .expect(1)
        .mount(&server)
        .await;

    let outcome = capture(&client(&server)).await.expect("capture");

    assert_eq!(outcome.transaction_id, "tx-9");
    assert!(outcome.is_success());
    let sent = requests(&server).await;
    assert_eq!(sent.len(), 1);
    // Compared as text: a JSON-value comparison would treat 100.50, 100.5 and "100.50" alike.
    assert_eq!(
        std::str::from_utf8(&sent[0].body).expect("utf-8"),
        r#"{"order_id":"ord-1","amount":100.50,"currency":"USD","idempotency_key":"cap-key-1"}"#
    );
    assert_eq!(header(&sent[0], "Idempotency-Key"), Some("cap-key-1"));
    assert_eq!(header(&sent[0], "X-Correlation-ID"), Some("corr-1"));
    assert_eq!(header(&sent[0], "Content-Type"), Some("application/json"));
}

#[tokio::test]
async fn capture_with_any_other_status_is_a_failed_outcome() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(CAPTURE_PATH))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"transaction_id": "tx-10", "status": "declined"})),
        )
        .expect(1)
        .mount(&server)
        .await;

    let outcome = capture(&client(&server)).await.expect("capture");

    assert!(!outcome.is_success());
    assert_eq!(outcome.status, "declined");
    assert_eq!(outcome.transaction_id, "tx-10");
}

#[tokio::test]
async fn representment_sends_the_file_ids_with_both_headers_and_returns_the_id() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(REPRESENTMENT_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "rep-77"})))
        .expect(1)
        .mount(&server)
        .await;

    let representment = submit(&client(&server)).await.expect("submit");

    assert_eq!(representment.id, "rep-77");
    let sent = requests(&server).await;
    assert_eq!(
        std::str::from_utf8(&sent[0].body).expect("utf-8"),
        r#"{"order_id":"ord-1","evidences_file_id":["file-1","file-2"]}"#
    );
    assert_eq!(header(&sent[0], "Idempotency-Key"), Some("rep-key-1"));
    assert_eq!(header(&sent[0], "X-Correlation-ID"), Some("corr-2"));
}

#[tokio::test]
async fn a_400_is_rejected_with_code_message_and_constraints_and_not_retried() {
    let server = MockServer::start().await;
    let body = json!({"error": {
        "code": "validation_error",
        "message": "evidences_file_id must not be empty",
        "constraints": {"evidences_file_id": {"min_items": 1}}
    }});
    Mock::given(method("POST"))
        .and(path(REPRESENTMENT_PATH))
        .respond_with(ResponseTemplate::new(400).set_body_json(body))
        .expect(1)
        .mount(&server)
        .await;

    let error = submit(&client(&server)).await.expect_err("rejected");

    assert_eq!(
        error,
        ProviderError::Rejected {
            status: 400,
            code: "validation_error".into(),
            message: "evidences_file_id must not be empty".into(),
            constraints: Some(json!({"evidences_file_id": {"min_items": 1}})),
        }
    );
    assert!(error.is_definitive());
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn a_422_is_rejected_without_constraints_and_not_retried() {
    let server = MockServer::start().await;
    let body = json!({"error": {"code": "file_not_ready", "message": "file-2 is processing"}});
    Mock::given(method("POST"))
        .and(path(REPRESENTMENT_PATH))
        .respond_with(ResponseTemplate::new(422).set_body_json(body))
        .expect(1)
        .mount(&server)
        .await;

    let error = submit(&client(&server)).await.expect_err("rejected");

    assert_eq!(
        error,
        ProviderError::Rejected {
            status: 422,
            code: "file_not_ready".into(),
            message: "file-2 is processing".into(),
            constraints: None,
        }
    );
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn a_4xx_without_the_error_shape_is_rejected_as_unknown_and_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(CAPTURE_PATH))
        .respond_with(ResponseTemplate::new(402).set_body_string("x".repeat(5000)))
        .expect(1)
        .mount(&server)
        .await;

    let error = capture(&client(&server)).await.expect_err("rejected");

    let ProviderError::Rejected {
        status,
        code,
        message,
        constraints,
    } = error
    else {
        panic!("expected Rejected, got {error:?}");
    };
    assert_eq!((status, code.as_str(), constraints), (402, "unknown", None));
    assert!(
        message.starts_with("xxxx") && message.len() < 1000,
        "{message}"
    );
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn capture_retries_503s_with_the_same_key_and_succeeds_on_the_third_attempt() {
    let server = MockServer::start().await;
    // Mounted first, so it answers until it has been used twice.
    Mock::given(method("POST"))
        .and(path(CAPTURE_PATH))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(CAPTURE_PATH))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"transaction_id": "tx-3", "status": "success"})),
        )
        .expect(1)
        .mount(&server)
        .await;

    let (client, metrics) = metered(client(&server));
    let outcome = capture(&client).await.expect("capture");

    assert!(outcome.is_success());
    let sent = requests(&server).await;
    assert_eq!(sent.len(), 3);
    let text = metrics();
    for line in [
        r#"provider_requests_total{operation="capture",outcome="server_error"} 2"#,
        r#"provider_requests_total{operation="capture",outcome="success"} 1"#,
        r#"provider_request_duration_seconds_count{operation="capture"} 3"#,
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    for request in &sent {
        assert_eq!(header(request, "Idempotency-Key"), Some("cap-key-1"));
        assert_eq!(request.body, sent[0].body);
    }
}

#[tokio::test]
async fn persistent_500s_are_unavailable_after_max_attempts() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(CAPTURE_PATH))
        .respond_with(ResponseTemplate::new(500).set_body_string("database on fire"))
        .expect(4)
        .mount(&server)
        .await;
    let client = ProviderClient::new(ProviderConfig {
        max_attempts: 4,
        ..config(server.uri())
    })
    .expect("client");

    let error = capture(&client).await.expect_err("unavailable");

    let ProviderError::Unavailable {
        attempts,
        ref last_error,
    } = error
    else {
        panic!("expected Unavailable, got {error:?}");
    };
    assert_eq!(attempts, 4);
    assert!(last_error.contains("500") && last_error.contains("database on fire"));
    assert!(!error.is_definitive());
    assert_eq!(requests(&server).await.len(), 4);
}

#[tokio::test]
async fn a_response_slower_than_the_request_timeout_is_unavailable() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(CAPTURE_PATH))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"transaction_id": "tx-late", "status": "success"}))
                .set_delay(Duration::from_secs(10)),
        )
        .expect(2)
        .mount(&server)
        .await;
    let (client, metrics) = metered(
        ProviderClient::new(ProviderConfig {
            request_timeout: Duration::from_millis(200),
            max_attempts: 2,
            ..config(server.uri())
        })
        .expect("client"),
    );

    let error = capture(&client).await.expect_err("timed out");
    let text = metrics();
    assert!(
        text.contains(r#"provider_requests_total{operation="capture",outcome="timeout"} 2"#),
        "{text}"
    );

    assert!(
        matches!(error, ProviderError::Unavailable { attempts: 2, ref last_error } if last_error.contains("timed out")),
        "{error:?}"
    );
    assert_eq!(requests(&server).await.len(), 2);
}

#[tokio::test]
async fn a_refused_connection_is_unavailable_after_max_attempts() {
    // Bind then drop a listener: the port was free a moment ago and now nobody listens on it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let (client, metrics) = metered(
        ProviderClient::new(ProviderConfig {
            connect_timeout: Duration::from_millis(200),
            request_timeout: Duration::from_millis(500),
            ..config(format!("http://127.0.0.1:{port}"))
        })
        .expect("client"),
    );

    let error = capture(&client).await.expect_err("refused");
    let text = metrics();
    assert!(
        text.contains(r#"provider_requests_total{operation="capture",outcome="unreachable"} 3"#),
        "{text}"
    );

    assert!(
        matches!(error, ProviderError::Unavailable { attempts: 3, ref last_error } if last_error.contains("could not connect")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_2xx_with_a_garbage_body_is_an_invalid_response_and_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(CAPTURE_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>oops</html>"))
        .expect(1)
        .mount(&server)
        .await;

    let error = capture(&client(&server)).await.expect_err("invalid");

    assert!(
        matches!(error, ProviderError::InvalidResponse(ref m) if m.contains("<html>oops")),
        "{error:?}"
    );
    assert!(!error.is_definitive());
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn an_illegal_correlation_id_is_refused_before_anything_is_sent() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;

    let error = client(&server)
        .capture(&order(), &money(), &key(), "line\nbreak")
        .await
        .expect_err("refused");

    assert!(
        matches!(error, ProviderError::InvalidRequest(_)),
        "{error:?}"
    );
    assert!(error.is_definitive());
}

#[tokio::test]
async fn a_config_without_attempts_is_refused() {
    let config = ProviderConfig {
        max_attempts: 0,
        ..ProviderConfig::default()
    };
    assert!(ProviderClient::new(config).is_err());
}

#[tokio::test]
async fn a_409_or_429_is_retried_and_ends_unknown_rather_than_rejected() {
    for status in [409, 429] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(CAPTURE_PATH))
            .respond_with(ResponseTemplate::new(status).set_body_json(
                json!({"error": {"code": "busy", "message": "a request with this key is in progress"}}),
            ))
            .expect(3)
            .mount(&server)
            .await;

        let error = capture(&client(&server)).await.expect_err("unknown");

        assert!(
            matches!(&error, ProviderError::Unavailable { attempts: 3, last_error } if last_error.contains("in progress")),
            "{status}: {error:?}"
        );
        assert!(!error.is_definitive(), "{status}");
    }
}

#[tokio::test]
async fn every_attempt_carries_the_callers_trace_in_traceparent() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(CAPTURE_PATH))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(CAPTURE_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "transaction_id": "tx-traced", "status": "success"
        })))
        .mount(&server)
        .await;
    let _subscriber = tracing::subscriber::set_default(pm_telemetry::testing::traced_subscriber());
    let caller = tracing::info_span!("caller");
    let trace_id = pm_telemetry::testing::trace_id(&caller);
    assert_ne!(
        trace_id,
        "0".repeat(32),
        "the test subscriber gives spans ids"
    );

    use tracing::Instrument as _;
    capture(&client(&server))
        .instrument(caller)
        .await
        .expect("captured on the second attempt");

    let sent = requests(&server).await;
    assert_eq!(sent.len(), 2);
    let mut parents = Vec::new();
    for request in &sent {
        let traceparent = header(request, "traceparent").expect("a traceparent header");
        let parts: Vec<&str> = traceparent.split('-').collect();
        assert_eq!(parts.len(), 4, "{traceparent}");
        assert_eq!(parts[0], "00");
        assert_eq!(parts[1], trace_id, "the caller's trace");
        assert_eq!(parts[3], "01", "sampled");
        parents.push(parts[2].to_owned());
    }
    assert_ne!(parents[0], parents[1], "each attempt is a span of its own");
}
