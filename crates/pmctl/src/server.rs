//! Serving an axum router until shutdown, shared by the long-running subcommands.
//!
//! Our own accept loop rather than `axum::serve`, for the one limit that belongs to the
//! connection: a client must send a complete request head within `--header-timeout`, or the
//! connection is closed. That closes slow-header (slowloris) connections and idle keep-alive
//! ones alike; without it, each such connection holds a task and a socket forever.
//!
//! With TLS, the handshake happens here too, within the same header timeout, with the
//! configuration of the moment it starts: a reload (SIGHUP) changes what new connections
//! get and leaves open ones alone.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use pm_tls::{ClientCertificate, ServerTls};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use crate::args::ServerArgs;

/// Binds `listen`, serves `app` until `shutdown` is cancelled, then waits up to
/// `--shutdown-timeout` for in-flight requests. `what` names the service in the logs.
/// With `tls`, every connection is TLS (plain HTTP on the port fails its handshake).
pub(crate) async fn serve(
    what: &str,
    detail: &str,
    listen: SocketAddr,
    app: axum::Router,
    tls: Option<Arc<ServerTls>>,
    shutdown: &CancellationToken,
    settings: &ServerArgs,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(address = %listener.local_addr()?, scheme, "{what} listening ({detail})");
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
        let handshake_within = settings.header_timeout;
        let tls = tls.clone();
        tokio::spawn(async move {
            // Telling HTTP/1 from HTTP/2 (or reading a ClientHello) reads the first bytes
            // with no timer of its own: a connection that sends nothing is closed after the
            // header timeout here.
            let mut first = [0u8; 1];
            match tokio::time::timeout(handshake_within, stream.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
            let connection = Connection {
                builder,
                app,
                peer,
                client_certificate: None,
            };
            let Some(tls) = tls else {
                return connection.serve(stream, watcher).await;
            };
            match tokio::time::timeout(handshake_within, tls.acceptor().accept(stream)).await {
                Ok(Ok(stream)) => {
                    let client_certificate = pm_tls::client_certificate(&stream);
                    Connection {
                        client_certificate,
                        ..connection
                    }
                    .serve(stream, watcher)
                    .await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
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

/// One accepted connection, about to be served.
struct Connection {
    builder: auto::Builder<TokioExecutor>,
    app: axum::Router,
    peer: SocketAddr,
    client_certificate: Option<ClientCertificate>,
}

impl Connection {
    async fn serve<IO>(self, io: IO, watcher: hyper_util::server::graceful::Watcher)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            builder,
            app,
            peer,
            client_certificate,
        } = self;
        // What the routes may ask about the connection: the peer's address (per-address
        // limits on failed authentication) and whether it presented a client certificate.
        let app = tower::ServiceBuilder::new()
            .map_request(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                if let Some(cert) = client_certificate {
                    req.extensions_mut().insert(cert);
                }
                req
            })
            .service(app);
        let service = TowerToHyperService::new(app);
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
        if let Err(e) = watcher.watch(connection).await {
            tracing::debug!(error = %e, "connection closed with an error");
        }
    }
}

/// On every SIGHUP until shutdown: re-reads the listener's certificate and key (a failed
/// reload is logged and the running certificate stays), then runs `also` (the webhook
/// secrets).
pub(crate) fn reload_on_hangup(
    shutdown: &CancellationToken,
    tls: Option<Arc<ServerTls>>,
    also: impl Fn() + Send + 'static,
) {
    crate::signals::on_hangup(shutdown, move || {
        if let Some(tls) = &tls {
            match tls.reload() {
                Ok(()) => tracing::info!(
                    cert = %tls.files().cert.display(),
                    "TLS certificate re-read; new connections use it"
                ),
                Err(e) => tracing::error!(
                    error = %e,
                    "TLS certificate NOT reloaded; the running one stays"
                ),
            }
        }
        also();
    });
}
