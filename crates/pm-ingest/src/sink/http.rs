//! The HTTP sink: forwards envelopes to the API's internal update routes.
//!
//! Retries happen only where a retry cannot change the outcome: on 5xx answers,
//! timeouts and connection errors. A retry of a request the API did apply is harmless,
//! because the API deduplicates by the provider's event id and answers `200 duplicate`.
//! A 4xx is the API's final word about this webhook and is passed through with its
//! meaning (404 stays 404, 422 stays 422) — the original system turned every API error
//! into a 500, which made providers retry forever what could never succeed. The exception
//! is 401/403: the API refusing ingest's own service token is our misconfiguration, so it
//! becomes a 503 that the provider retries.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use bytes::Bytes;
use pm_domain::webhook::WebhookKind;
use pm_telemetry::CorrelationId;
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use tracing::Instrument as _;

use crate::sink::{Delivered, Forwarded, SinkError};
use crate::webhook::AcceptedWebhook;
use pm_domain::retry::Backoff;

/// How the HTTP sink reaches the API.
#[derive(Debug, Clone)]
pub struct HttpSinkConfig {
    /// Base URL of the API, e.g. `http://127.0.0.1:3000`.
    pub api_url: String,
    /// The service token the API expects on `/internal/*` (never logged).
    pub internal_token: SecretString,
    /// Attempts per webhook, the first included (at least 1).
    pub max_attempts: u32,
    /// Delay after the first failed attempt; it doubles after each further failure.
    pub initial_backoff: Duration,
    /// Cap of the doubling delay between two attempts (jitter adds up to half of it on
    /// top: [`pm_domain::retry::Backoff`]).
    pub max_backoff: Duration,
    /// Timeout of one attempt, from connecting to reading the whole answer.
    pub request_timeout: Duration,
    /// How an `https://` API is checked (a private CA), and the client certificate for
    /// an API that verifies them on its internal routes.
    pub tls: pm_tls::ClientTls,
}

impl HttpSinkConfig {
    /// The defaults: 4 attempts, 50 ms doubling up to 1 s, 2 s per attempt — at most about
    /// 8.4 s in all, within the patience of providers' webhook clients.
    pub fn new(api_url: impl Into<String>, internal_token: SecretString) -> Self {
        Self {
            api_url: api_url.into(),
            internal_token,
            max_attempts: 4,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            request_timeout: Duration::from_secs(2),
            tls: pm_tls::ClientTls::default(),
        }
    }
}

/// Why an HTTP sink could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpSinkError {
    #[error("invalid API URL {url:?}: {source}")]
    Url {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the internal token cannot be sent in an HTTP header (control characters?)")]
    Token,
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error(transparent)]
    Tls(#[from] pm_tls::TlsError),
}

/// Why one attempt to forward failed.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("request failed: {}", with_causes(.0))]
    Transport(#[from] reqwest::Error),
    #[error("the API answered {0}")]
    Status(StatusCode),
}

/// 401/403 from the API: it does not accept our service token.
fn is_auth_refusal(status: StatusCode) -> bool {
    matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
}

/// reqwest's message alone says "error sending request"; the cause (connection refused,
/// timed out, reset) is what an operator needs.
fn with_causes(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl ForwardError {
    /// 5xx, timeouts and connection errors may succeed on a retry; a redirect (a
    /// misconfigured URL) or a request that could not even be built will not.
    fn is_retryable(&self) -> bool {
        match self {
            ForwardError::Status(s) => s.is_server_error(),
            ForwardError::Transport(e) => !(e.is_builder() || e.is_redirect()),
        }
    }
}

/// Forwards envelopes to `{api_url}/internal/updates/{orders,disputes}`.
pub struct HttpSink {
    client: reqwest::Client,
    orders_url: Url,
    disputes_url: Url,
    ready_url: Url,
    authorization: HeaderValue,
    attempts: u32,
    backoff: Backoff,
}

impl std::fmt::Debug for HttpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSink")
            .field("orders_url", &self.orders_url.as_str())
            .field("disputes_url", &self.disputes_url.as_str())
            .field("attempts", &self.attempts)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

fn endpoint(base: &str, path: &str) -> Result<Url, HttpSinkError> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let invalid = |source: Box<dyn std::error::Error + Send + Sync>| HttpSinkError::Url {
        url: base.to_owned(),
        source,
    };
    let parsed = Url::parse(&url).map_err(|e| invalid(Box::new(e)))?;
    match parsed.scheme() {
        "http" | "https" => Ok(parsed),
        other => Err(invalid(
            format!("the scheme must be http or https, not {other}").into(),
        )),
    }
}

impl HttpSink {
    pub fn new(config: HttpSinkConfig) -> Result<Self, HttpSinkError> {
        let mut authorization =
            HeaderValue::from_str(&format!("Bearer {}", config.internal_token.expose_secret()))
                .map_err(|_| HttpSinkError::Token)?;
        // Keeps the token out of HTTP debug output and header compression tables.
        authorization.set_sensitive(true);
        let client = config
            .tls
            .load()?
            .apply(reqwest::Client::builder())
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout)
            // A redirect means a wrong URL; following it could send the token elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            client,
            orders_url: endpoint(&config.api_url, "/internal/updates/orders")?,
            disputes_url: endpoint(&config.api_url, "/internal/updates/disputes")?,
            ready_url: endpoint(&config.api_url, "/health/ready")?,
            authorization,
            attempts: config.max_attempts.max(1),
            backoff: Backoff::new(config.initial_backoff, config.max_backoff),
        })
    }

    pub(crate) async fn deliver(
        &self,
        webhook: &AcceptedWebhook,
        correlation: &CorrelationId,
    ) -> Result<Delivered, SinkError> {
        let url = match webhook.kind {
            WebhookKind::Order => &self.orders_url,
            WebhookKind::Chargeback => &self.disputes_url,
        };
        let body = Bytes::from(webhook.envelope_json()?);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let failure = match self.attempt(url, &body, correlation, attempt).await {
                Ok(answer) if is_auth_refusal(answer.status) => {
                    // Our own misconfiguration, not the provider's fault: answer 503 so the
                    // provider keeps retrying until the token is fixed (some providers give
                    // up on a 4xx, which would lose the webhook).
                    tracing::error!(
                        status = answer.status.as_u16(),
                        "the API refused ingest's service token: PM_INTERNAL_TOKEN must be the same for serve-api and serve-ingest"
                    );
                    return Err(SinkError::ApiUnavailable {
                        attempts: attempt,
                        last: ForwardError::Status(answer.status),
                    });
                }
                Ok(answer) => return Ok(Delivered::Forwarded(answer)),
                Err(e) => e,
            };
            if !failure.is_retryable() || attempt >= self.attempts {
                return Err(SinkError::ApiUnavailable {
                    attempts: attempt,
                    last: failure,
                });
            }
            let delay = self.backoff.delay(attempt);
            tracing::info!(attempt, error = %failure, ?delay, "forwarding to the API failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }

    /// One POST in a client span whose context the API continues; `Ok` for a final
    /// answer (2xx or 4xx), read in full.
    async fn attempt(
        &self,
        url: &Url,
        body: &Bytes,
        correlation: &CorrelationId,
        attempt: u32,
    ) -> Result<Forwarded, ForwardError> {
        use pm_telemetry::http_client;
        let span = http_client::client_span("POST", Some(url.path()), url.as_str(), attempt);
        let result = self
            .post(url, body, correlation, http_client::trace_headers(&span))
            .instrument(span.clone())
            .await;
        match &result {
            Ok(answer) => http_client::record_status(&span, answer.status.as_u16()),
            Err(ForwardError::Status(status)) => http_client::record_status(&span, status.as_u16()),
            Err(e) => http_client::record_failure(&span, e),
        }
        result
    }

    async fn post(
        &self,
        url: &Url,
        body: &Bytes,
        correlation: &CorrelationId,
        trace: header::HeaderMap,
    ) -> Result<Forwarded, ForwardError> {
        let response = self
            .client
            .post(url.clone())
            .headers(trace)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, self.authorization.clone())
            .header(pm_telemetry::correlation::HEADER, correlation.as_str())
            .body(body.clone())
            .send()
            .await?;
        let status = response.status();
        if !(status.is_success() || status.is_client_error()) {
            return Err(ForwardError::Status(status));
        }
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
        // A body that fails to arrive is retried like any transport error: if the API did
        // apply the webhook, the retry is answered `200 duplicate`.
        let body = response.bytes().await?;
        Ok(Forwarded {
            status,
            content_type,
            retry_after,
            body,
        })
    }

    /// Whether the API reports itself ready.
    pub(crate) async fn ready(&self) -> Result<(), String> {
        match self.client.get(self.ready_url.clone()).send().await {
            Ok(r) if r.status() == StatusCode::OK => Ok(()),
            Ok(r) => Err(format!("the API answered {}", r.status())),
            Err(e) => Err(format!("the API is unreachable: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_join_whatever_the_trailing_slash_and_refuse_other_schemes() {
        for base in ["http://api:3000", "http://api:3000/"] {
            assert_eq!(
                endpoint(base, "/internal/updates/orders")
                    .expect("url")
                    .as_str(),
                "http://api:3000/internal/updates/orders"
            );
        }
        assert_eq!(
            endpoint("https://h/prefix", "/health/ready")
                .expect("url")
                .as_str(),
            "https://h/prefix/health/ready"
        );
        assert!(endpoint("ftp://h", "/x").is_err());
        assert!(endpoint("not a url", "/x").is_err());
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let sink = HttpSink::new(HttpSinkConfig::new(
            "http://127.0.0.1:1",
            SecretString::from("s3cr3t-token"),
        ))
        .expect("sink");
        let shown = format!("{sink:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        let config = format!(
            "{:?}",
            HttpSinkConfig::new("http://x", SecretString::from("s3cr3t-token"))
        );
        assert!(!config.contains("s3cr3t"), "{config}");
    }

    #[test]
    fn only_server_errors_are_retried_among_statuses() {
        assert!(ForwardError::Status(StatusCode::SERVICE_UNAVAILABLE).is_retryable());
        assert!(ForwardError::Status(StatusCode::BAD_GATEWAY).is_retryable());
        assert!(!ForwardError::Status(StatusCode::TEMPORARY_REDIRECT).is_retryable());
    }
}
