//! Telemetry shared by every `pmctl` subcommand: log initialisation (text or JSON),
//! Prometheus metrics, and HTTP middleware that assigns a correlation id to each request
//! and measures it per route template.
//!
//! It knows nothing of the domain or the database; services register their own metrics
//! in the [`metrics::Registry`] they are given.

pub mod correlation;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod redact;

pub use correlation::CorrelationId;
pub use logging::{init_logging, LogFormat};
