//! The limits that keep a slow or hostile client, or more traffic than the service can
//! take, from hurting the requests it can serve.
//!
//! - **Load shedding**: at most `max_in_flight` requests are worked on at once; one more is
//!   answered `503` with `Retry-After` at once, instead of queueing without bound (a queue
//!   only turns an overload into timeouts for everybody). Health and metrics routes are not
//!   counted, so an overloaded instance is not also declared dead.
//! - **Request timeout**: a request still unanswered after `request_timeout` is abandoned
//!   with `503` and `Retry-After`. Its work is cancelled (an open transaction rolls back);
//!   every write route is idempotent, so the client's retry is safe either way.
//! - **Body timeout**: a body still arriving after `body_timeout` is refused with `408`.
//!
//! The header-read timeout belongs to the connection, not the request: the server sets it
//! (`pmctl`'s serve loop).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::sync::Semaphore;

use crate::Problem;

/// How much one listener takes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most requests worked on at once; more are answered `503` at once.
    pub max_in_flight: usize,
    /// Longest time from the request's arrival to its response.
    pub request_timeout: Duration,
    /// Longest time to receive a request's body.
    pub body_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_in_flight: 256,
            request_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(10),
        }
    }
}

/// Paths that are never shed nor timed: an orchestrator must be able to tell a busy
/// instance from a dead one, and a scrape must see the overload.
fn exempt(path: &str) -> bool {
    path.starts_with("/health/") || path == "/metrics"
}

#[derive(Debug)]
struct Gate {
    permits: Arc<Semaphore>,
    limits: Limits,
    /// Requests shed since the last warning, and when that was: one line per interval,
    /// however hard the flood.
    shed: std::sync::Mutex<(u64, Option<std::time::Instant>)>,
}

/// Least time between two "shedding" warnings.
const SHED_LOG_INTERVAL: Duration = Duration::from_secs(5);

impl Gate {
    fn note_shed(&self) {
        let Ok(mut shed) = self.shed.lock() else {
            return;
        };
        shed.0 += 1;
        let now = std::time::Instant::now();
        if shed
            .1
            .is_none_or(|last| now.duration_since(last) >= SHED_LOG_INTERVAL)
        {
            tracing::warn!(
                shed = shed.0,
                max_in_flight = self.limits.max_in_flight,
                "overloaded: requests shed with 503 since the last report"
            );
            *shed = (0, Some(now));
        }
    }
}

impl Limits {
    /// Applies the limits to every route of `router` (and its fallbacks). Add it before
    /// the metrics middleware so shed and timed-out requests are counted.
    pub fn apply<S: Clone + Send + Sync + 'static>(&self, router: Router<S>) -> Router<S> {
        let gate = Arc::new(Gate {
            permits: Arc::new(Semaphore::new(self.max_in_flight.max(1))),
            limits: *self,
            shed: std::sync::Mutex::new((0, None)),
        });
        router
            .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
                self.body_timeout,
            ))
            .layer(axum::middleware::from_fn_with_state(gate, guard))
    }
}

async fn guard(State(gate): State<Arc<Gate>>, req: Request, next: Next) -> Response {
    if exempt(req.uri().path()) {
        return next.run(req).await;
    }
    let Ok(_permit) = gate.permits.clone().try_acquire_owned() else {
        gate.note_shed();
        let mut p = Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!(
                "the server is working on its limit of {} requests; nothing was done, retry \
                 shortly",
                gate.limits.max_in_flight
            ),
        );
        p.retry_after = Some(1);
        return p.into_response();
    };
    let timeout = gate.limits.request_timeout;
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(
                timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                "request abandoned at the request timeout"
            );
            let mut p = Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "request-timeout",
                format!(
                    "the request was not answered within {}s and was abandoned; its work was \
                     rolled back unless it had already finished. Retrying is safe",
                    timeout.as_secs_f64()
                ),
            );
            p.retry_after = Some(1);
            p.into_response()
        }
    }
}

/// Whether `error` (or one of its causes) is the body timeout.
pub(crate) fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// The answer to a body that did not arrive in time.
pub(crate) fn body_timeout_problem() -> Problem {
    Problem::new(
        StatusCode::REQUEST_TIMEOUT,
        "body-timeout",
        "the request body did not arrive in time; nothing was done",
    )
}
