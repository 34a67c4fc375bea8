//! The HTTP edge shared by the core API and the ingest gateway.
//!
//! - [`problem`]: every error leaves as `application/problem+json` (RFC 9457), with the
//!   field errors of a validation failure listed under `errors`.
//! - [`intake`]: the checks a provider webhook passes before anything acts on it, in the
//!   order that gives the most useful answer: content type (415), body size (413),
//!   signature on the raw bytes (401), JSON (400), fields (422).
//!
//! - [`limits`]: load shedding, request and body timeouts, for every listener.
//! - [`telemetry`]: the middleware every route runs in — correlation id, the server span,
//!   per-route metrics and one log line per request.
//!
//! Errors are mapped to HTTP here, at the edge, and nowhere deeper.

pub mod intake;
pub mod limits;
pub mod problem;
pub mod telemetry;

pub use problem::Problem;
