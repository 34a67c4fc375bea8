//! Serving an axum router until shutdown, shared by the long-running subcommands.
//!
//! Our own accept loop rather than `axum::serve`, for the one limit that belongs to the
//! connection: a client must send a complete request head within `--header-timeout`, or the
//! connection is closed. That closes slow-header (slowloris) connections and idle keep-alive
//! ones alike; without it, each such connection holds a task and a socket forever.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio_util::sync::CancellationToken;

use crate::args::ServerArgs;

/// Binds `listen`, serves `app` until `shutdown` is cancelled, then waits up to
/// `--shutdown-timeout` for in-flight requests. `what` names the service in the logs.
pub(crate) async fn serve(
    what: &str,
    detail: &str,
    listen: SocketAddr,
    app: axum::Router,
    shutdown: &CancellationToken,
    settings: &ServerArgs,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(address = %listener.local_addr()?, "{what} listening ({detail})");
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(settings.header_timeout));
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was accepted:
                    // wait a moment rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (builder, watcher, app) = (builder.clone(), graceful.watcher(), app.clone());
        let first_byte_within = settings.header_timeout;
        tokio::spawn(async move {
            // Telling HTTP/1 from HTTP/2 reads the first bytes with no timer of its own: a
            // connection that sends nothing is closed after the header timeout here.
            let mut first = [0u8; 1];
            match tokio::time::timeout(first_byte_within, stream.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
            // The peer's address, for per-address limits (failed authentication).
            let app = tower::ServiceBuilder::new()
                .map_request(move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    req
                })
                .service(app);
            let service = TowerToHyperService::new(app);
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(error = %e, "connection closed with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(settings.shutdown_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within the shutdown timeout");
    }
    Ok(())
}
