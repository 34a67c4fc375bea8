//! The bare webhook server: everything a webhook endpoint must do before it can hand a
//! webhook on — verify the signature on the raw bytes, parse and validate the JSON — and
//! nothing after. Its rate is the ceiling for any real endpoint on this machine.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use pm_domain::signature::{self, Verifier, DEFAULT_TOLERANCE_SECS};
use pm_domain::webhook::OrderWebhook;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::LabError;

/// The route, as on the API and ingest.
pub const ORDERS_PATH: &str = pm_scenario::Route::Orders.path();

/// A running bare server on 127.0.0.1 (a free port). Stopped by [`stop`](Self::stop) or
/// when dropped.
#[derive(Debug)]
pub struct BareServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl BareServer {
    /// Starts the server accepting webhooks signed with `secret`.
    pub async fn start(secret: &[u8]) -> Result<BareServer, LabError> {
        let verifier = Arc::new(Verifier::new(vec![secret.to_vec()], DEFAULT_TOLERANCE_SECS));
        let app = Router::new()
            .route(ORDERS_PATH, post(receive))
            .with_state(verifier);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| LabError::io("listen on", "127.0.0.1:0", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| LabError::io("read the address of", "127.0.0.1:0", e))?;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                // A dropped sender means stop as well.
                let _ = rx.await;
            };
            if let Err(error) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::warn!(%error, "the bare baseline server stopped with an error");
            }
        });
        Ok(BareServer {
            addr,
            shutdown: Some(tx),
            task,
        })
    }

    /// `http://127.0.0.1:<port>/webhooks/payments/orders`.
    pub fn url(&self) -> String {
        format!("{}{ORDERS_PATH}", self.base_url())
    }

    /// `http://127.0.0.1:<port>`: a load test's target.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, finishes in-flight requests and waits for the server to end.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for BareServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// 401 for a bad signature, 400 for a body that does not parse, 202 otherwise: the answers
/// of the real endpoints, minus the hand-over.
async fn receive(
    State(verifier): State<Arc<Verifier>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = headers.get(signature::HEADER).and_then(|v| v.to_str().ok());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    if verifier.verify(header, &body, now).is_err() {
        return StatusCode::UNAUTHORIZED;
    }
    match OrderWebhook::parse(&body) {
        Ok(_) => StatusCode::ACCEPTED,
        Err(_) => StatusCode::BAD_REQUEST,
    }
}
