//! Telemetry shared by every `pmctl` subcommand: log initialisation (text or JSON),
//! Prometheus metrics, HTTP middleware that assigns a correlation id to each request
//! and measures it per route template, and distributed tracing ([`traces`]: OTLP export;
//! [`propagation`]: W3C trace context over HTTP and Kafka headers), and CPU profiles on
//! demand ([`profiling`]).
//!
//! It knows nothing of the domain or the database; services register their own metrics
//! in the [`metrics::Registry`] they are given.

pub mod correlation;
pub mod http;
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
