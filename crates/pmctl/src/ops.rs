//! The operations endpoints of the commands that serve no HTTP API of their own
//! (`outbox-relay`, `project-analytics`): `GET /metrics` (Prometheus), `GET /health/live`
//! and `GET /health/ready`, on an address given with `--listen`.

use std::net::SocketAddr;

use anyhow::Context;
use pm_telemetry::metrics::SharedRegistry;
use tokio_util::sync::CancellationToken;

/// Serves the endpoints until `shutdown`. `ready` says why the command is not ready (503
/// with that text) or that it is (200).
pub(crate) async fn serve(
    addr: SocketAddr,
    registry: SharedRegistry,
    ready: impl Fn() -> Result<(), String> + Clone + Send + Sync + 'static,
    shutdown: &CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use axum::http::{header, StatusCode};
    use axum::routing::get;

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(address = %listener.local_addr()?, "serving /metrics and /health/*");
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || async move {
                (
                    [(header::CONTENT_TYPE, pm_telemetry::metrics::CONTENT_TYPE)],
                    registry.render(),
                )
            }),
        )
        .route("/health/live", get(|| async { "ok" }))
        .route(
            "/health/ready",
            get(move || async move {
                match ready() {
                    Ok(()) => (StatusCode::OK, "ok".to_owned()),
                    Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
                }
            }),
        );
    let stop = shutdown.clone();
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the metrics listener failed");
        }
    }))
}
