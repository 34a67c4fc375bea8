//! [`ProviderClient`]: the calls the merchant makes to the provider.
//!
//! Each call serializes its body once, then goes through one retry loop
//! (`transport::post_json`) that decides — per attempt — whether the answer is final or
//! whether asking again is safe. Asking again is safe only because every call carries an
//! idempotency key: the provider treats a repeated key as the same operation.

mod config;
mod error;
mod metrics;
mod outcome;
mod transport;

use pm_domain::{IdempotencyKey, Money, OrderId};
use reqwest::Url;

use crate::wire::{
    CaptureRequest, CaptureResponse, RepresentmentRequest, RepresentmentResponse, CAPTURES_PATH,
    CAPTURE_NOT_FOUND, CAPTURE_PATH, REPRESENTMENT_PATH,
};
use pm_domain::retry::Backoff;
use transport::{Call, RetryPolicy};

pub use config::{ConfigError, ProviderConfig};
pub use error::ProviderError;
pub use metrics::ProviderMetrics;
pub use outcome::{CaptureOutcome, Representment};

/// Client for the provider's API. Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct ProviderClient {
    http: reqwest::Client,
    capture_url: Url,
    captures_url: Url,
    representment_url: Url,
    retry: RetryPolicy,
    metrics: Option<ProviderMetrics>,
}

impl ProviderClient {
    /// Builds a client from `config`, checking the base URL, timeouts and attempt count.
    pub fn new(config: ProviderConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            // A redirected POST may be replayed as a GET or to another host; the provider's
            // API never redirects, so a 3xx is reported rather than followed.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("pmctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ConfigError::HttpClient)?;
        Ok(ProviderClient {
            http,
            capture_url: config.endpoint(CAPTURE_PATH)?,
            captures_url: config.endpoint(CAPTURES_PATH)?,
            representment_url: config.endpoint(REPRESENTMENT_PATH)?,
            retry: RetryPolicy {
                max_attempts: config.max_attempts,
                backoff: Backoff::new(config.initial_backoff, config.max_backoff),
            },
            metrics: None,
        })
    }

    /// The same client, counting every attempt in `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: ProviderMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Captures `money` for the order. `key` identifies this capture to the provider, so a
    /// retried call (by us or by our caller) captures at most once.
    ///
    /// A provider answer of any `status` is `Ok`; check [`CaptureOutcome::is_success`].
    pub async fn capture(
        &self,
        order_id: &OrderId,
        money: &Money,
        key: &IdempotencyKey,
        correlation_id: &str,
    ) -> Result<CaptureOutcome, ProviderError> {
        let body = CaptureRequest::new(order_id, money, key);
        let call = Call {
            operation: "capture",
            url: &self.capture_url,
            idempotency_key: key.as_str(),
            correlation_id,
            metrics: self.metrics.as_ref(),
        };
        let response: CaptureResponse =
            transport::post_json(&self.http, &self.retry, call, &body).await?;
        Ok(CaptureOutcome::from(response))
    }

    /// Asks the provider what became of the capture made under `key`, without capturing:
    /// `Ok(Some(outcome))` when it processed one, `Ok(None)` when it has no capture under
    /// that key (the request never reached it). Used to settle captures whose answer was
    /// lost (timeout, connection reset, 5xx).
    pub async fn capture_status(
        &self,
        key: &IdempotencyKey,
        correlation_id: &str,
    ) -> Result<Option<CaptureOutcome>, ProviderError> {
        let mut url = self.captures_url.clone();
        url.path_segments_mut()
            .map_err(|()| ProviderError::InvalidRequest("the base URL cannot have a path".into()))?
            .push(key.as_str());
        let call = Call {
            operation: "capture_status",
            url: &url,
            idempotency_key: key.as_str(),
            correlation_id,
            metrics: self.metrics.as_ref(),
        };
        match transport::get_json::<CaptureResponse>(&self.http, &self.retry, call).await {
            Ok(response) => Ok(Some(CaptureOutcome::from(response))),
            Err(ProviderError::Rejected {
                status: 404, code, ..
            }) if code == CAPTURE_NOT_FOUND => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Submits the evidence files `file_ids` as the merchant's representment of a dispute.
    ///
    /// The provider answers `400` for a blank order id or no files and `422` for a file that
    /// is not ready; both arrive as [`ProviderError::Rejected`] with the provider's code.
    pub async fn submit_representment(
        &self,
        order_id: &OrderId,
        file_ids: &[String],
        idempotency_key: &str,
        correlation_id: &str,
    ) -> Result<Representment, ProviderError> {
        let body = RepresentmentRequest {
            order_id: order_id.as_str().to_owned(),
            evidences_file_id: file_ids.to_vec(),
        };
        let call = Call {
            operation: "submit_representment",
            url: &self.representment_url,
            idempotency_key,
            correlation_id,
            metrics: self.metrics.as_ref(),
        };
        let response: RepresentmentResponse =
            transport::post_json(&self.http, &self.retry, call, &body).await?;
        Ok(Representment::from(response))
    }
}
