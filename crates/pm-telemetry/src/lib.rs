//! Telemetry shared by every `pmctl` subcommand: log initialisation (text or JSON),
//! Prometheus metrics, correlation ids, distributed tracing ([`traces`]: OTLP export;
//! [`propagation`]: W3C trace context over HTTP and Kafka headers), and CPU profiles on
//! demand ([`profiling`]).
//!
//! It is no web framework's: the HTTP middleware built on it lives in
//! `pm_http::telemetry`, so the Kafka adapter and the CLI do not compile one.
//!
//! It knows nothing of the domain or the database; services register their own metrics
//! in the [`metrics::Registry`] they are given.

pub mod correlation;
pub mod http_client;
pub mod logging;
pub mod metrics;
pub mod profiling;
pub mod propagation;
pub mod redact;
#[cfg(feature = "testing")]
pub mod testing;
pub mod traces;

pub use correlation::CorrelationId;
pub use logging::{init_logging, init_logging_and_traces, LogFormat};
