//! The ingest gateway (`pmctl serve-ingest`, port 3001): the public face that payment
//! providers send their webhooks to.
//!
//! For each webhook it runs the intake checks on the raw bytes (content type, size,
//! signature: [`pm_http::intake`]), validates the fields ([`pm_domain::webhook`]), wraps
//! the webhook in a [`pm_domain::envelope::WebhookEnvelope`] and hands it to a [`Sink`]:
//!
//! - [`KafkaSink`] produces it to `webhooks.orders` / `webhooks.disputes`, keyed by the
//!   user id, and answers `202` only once the broker has stored it;
//! - [`HttpSink`] forwards it to the API's `/internal/updates/*` routes, retrying only
//!   what is safe to retry, and passes the API's answer through with its meaning.
//!
//! Whatever the sink, a provider never gets a `2xx` for a webhook that was not durably
//! handed on: when the downstream is unavailable the answer is `503` with `Retry-After`,
//! so the provider delivers again and nothing is lost.
//!
//! This crate depends on no database (no sqlx, no pm-storage): ingest can be scaled and
//! exposed independently of the service that owns the data, and an outage of PostgreSQL
//! never reaches the providers as anything but a retryable answer.

mod dedupe;
mod metrics;
mod routes;
mod sink;
mod state;
mod webhook;

pub use dedupe::{RecentlyAccepted, DEFAULT_CAPACITY as DEFAULT_DEDUPE_CAPACITY};
pub use metrics::IngestMetrics;
pub use routes::router;
pub use sink::http::{ForwardError, HttpSink, HttpSinkConfig, HttpSinkError};
pub use sink::kafka::KafkaSink;
pub use sink::{Delivered, Forwarded, Sink, SinkError};
pub use state::IngestState;
pub use webhook::{AcceptedWebhook, ParseError};
