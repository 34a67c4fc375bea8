//! Serving an axum router until shutdown, shared by the long-running subcommands.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

/// Binds `listen`, serves `app` until `shutdown` is cancelled, then waits up to
/// `drain` for in-flight requests. `what` names the service in the logs.
pub(crate) async fn serve(
    what: &str,
    detail: &str,
    listen: SocketAddr,
    app: axum::Router,
    shutdown: &CancellationToken,
    drain: Duration,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(address = %listener.local_addr()?, "{what} listening ({detail})");
    let drained = shutdown.clone();
    let server =
        axum::serve(listener, app).with_graceful_shutdown(async move { drained.cancelled().await });
    let server = tokio::spawn(async move { server.await });
    shutdown.cancelled().await;
    match tokio::time::timeout(drain, server).await {
        Ok(result) => result??,
        Err(_) => tracing::warn!("in-flight requests did not finish within the shutdown timeout"),
    }
    Ok(())
}
