//! The one wrapper that the webhook-applying statements run through.
//!
//! Invariant: each instrumented statement is exactly one call of [`run`], with a static
//! operation (the SQL verb) and collection (the table) — never a parameter value — so
//! the span of OpenTelemetry's database conventions (and any per-statement measurement
//! added here) costs nothing per distinct value and leaks nothing the statement binds.

use std::future::Future;
use std::time::Instant;

use tracing::Instrument as _;

/// Runs `statement` (a sqlx future) in a client span named `"{operation} {collection}"`,
/// e.g. `INSERT processed_webhooks`, and times it.
pub(crate) async fn run<T, E, F>(
    operation: &'static str,
    collection: &'static str,
    statement: F,
) -> Result<T, E>
where
    F: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let span = tracing::info_span!(
        "db statement",
        otel.name = %format!("{operation} {collection}"),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        db.system = "postgresql",
        db.system.name = "postgresql",
        db.operation.name = operation,
        db.collection.name = collection,
        otel.status_description = tracing::field::Empty,
    );
    let started = Instant::now();
    let result = statement.instrument(span.clone()).await;
    let elapsed = started.elapsed();
    if let Err(e) = &result {
        span.record("otel.status_code", "error");
        span.record("otel.status_description", e.to_string());
    }
    tracing::trace!(parent: &span, operation, collection, seconds = elapsed.as_secs_f64(), "statement done");
    result
}
