//! The one wrapper that measured statements run through: the webhook-applying statements,
//! the list pages, and the operator actions (captures, holds, evidence, the audit trail).
//!
//! Invariant: each instrumented statement is exactly one call of [`run`], with a static
//! operation (the SQL verb) and collection (the table) — never a parameter value — so
//! its span (OpenTelemetry's database conventions) and its latency histogram
//! (`pm_db_query_duration_seconds{operation,collection}`) cost nothing per distinct
//! value and leak nothing the statement binds.

use std::future::Future;
use std::time::Instant;

use tracing::Instrument as _;

/// Runs `statement` (a sqlx future) in a client span named `"{operation} {collection}"`,
/// e.g. `INSERT processed_webhooks`, and records its latency.
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
    crate::metrics::observe_query(operation, collection, elapsed);
    if let Err(e) = &result {
        span.record("otel.status_code", "error");
        span.record("otel.status_description", e.to_string());
    }
    tracing::trace!(parent: &span, operation, collection, seconds = elapsed.as_secs_f64(), "statement done");
    result
}
