//! The merchant backend's client for the payment provider's HTTP API (PRODUCT.md §2.5).
//!
//! [`wire`] holds the JSON bodies of the API — requests, responses and the error body — in a
//! form both sides can use: [`client`] sends requests and reads responses, and the provider
//! simulator reuses the same types to serve the API, so the two can never drift apart.
//! [`client::ProviderClient`] adds what makes a call to someone else's payment system safe:
//! an `Idempotency-Key` and an `X-Correlation-ID` on every call, connect and total timeouts,
//! and retries only when retrying cannot do harm (5xx, timeouts, connection errors), with
//! exponential backoff and jitter. Its errors tell the caller whether the provider's answer
//! is known ([`ProviderError::is_definitive`]) or whether the provider may or may not have acted.
//!
//! Among the project's crates this one depends on `pm-domain` only. It must never depend on
//! sqlx or axum: a provider call is made by a use case *outside* any database transaction
//! (PRODUCT.md §2.5), and keeping storage out of reach here keeps that rule easy to follow.

pub mod client;
pub mod wire;

pub use client::{
    CaptureOutcome, ConfigError, ProviderClient, ProviderConfig, ProviderError, ProviderMetrics,
    Representment,
};
