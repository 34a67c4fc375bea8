//! The state shared by every handler.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use pm_http::intake::IntakeConfig;
use pm_http::telemetry::HttpMetrics;
use pm_provider::ProviderClient;
use pm_storage::replicas::ReadPools;
use pm_storage::PgPool;
use pm_telemetry::metrics::{Registry, SharedRegistry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

/// Settings of the API that are not connections.
#[derive(Clone)]
pub struct ApiConfig {
    pub intake: IntakeConfig,
    /// The service token ingest's HTTP sink sends to `/internal/*`; `None` disables them.
    pub internal_token: Option<SecretString>,
    /// `/internal/*` also requires a verified client certificate (the listener has a
    /// client CA; see [`pm_tls::ClientCertificate`]).
    pub internal_needs_client_certificate: bool,
    /// A pending capture whose provider call started longer ago than this is taken over
    /// by a retry with the same key (the first attempt is presumed dead).
    pub capture_stale_after: Duration,
    /// How operator API keys are checked.
    pub auth: crate::auth::AuthSettings,
    /// `GET /debug/pprof/profile` (scope `admin`) takes CPU profiles.
    pub pprof: bool,
    /// Group commit of sync-mode webhooks.
    pub webhook_groups: crate::groups::GroupSettings,
    /// The admin UI (`/admin`).
    pub admin: crate::admin::AdminSettings,
}

impl fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiConfig")
            .field("intake", &self.intake)
            .field(
                "internal_token",
                &self.internal_token.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "internal_needs_client_certificate",
                &self.internal_needs_client_certificate,
            )
            .field("capture_stale_after", &self.capture_stale_after)
            .field("auth", &self.auth)
            .field("pprof", &self.pprof)
            .field("webhook_groups", &self.webhook_groups)
            .field("admin", &self.admin)
            .finish()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct WebhookLabels {
    pub(crate) kind: &'static str,
    pub(crate) outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApplyErrorLabels {
    kind: &'static str,
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CaptureLabels {
    pub(crate) outcome: &'static str,
    pub(crate) settled_by: &'static str,
}

/// The API's metrics.
#[derive(Clone, Debug)]
pub struct ApiMetrics {
    pub(crate) http: HttpMetrics,
    pub(crate) webhooks: Family<WebhookLabels, Counter>,
    apply_errors: Family<ApplyErrorLabels, Counter>,
    captures: Family<CaptureLabels, Counter>,
    reconcile_errors: Counter,
    groups: crate::groups::GroupMetrics,
}

impl ApiMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let webhooks = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "webhooks_processed",
            "Webhooks processed by kind and outcome (applied, stale, final_kept, duplicate, order_unknown)",
            webhooks.clone(),
        );
        let apply_errors = Family::<ApplyErrorLabels, Counter>::default();
        registry.register(
            "webhook_apply_errors",
            "Webhooks that could not be applied for a reason other than their content, by kind \
             and cause (unavailable = the database refused, timed out or was unreachable; \
             internal = anything else, a bug)",
            apply_errors.clone(),
        );
        // Every series exists from the start, so a rate() over them never starts mid-incident.
        for kind in ["order", "chargeback"] {
            for cause in ["unavailable", "internal"] {
                drop(apply_errors.get_or_create(&ApplyErrorLabels { kind, cause }));
            }
        }
        let captures = Family::<CaptureLabels, Counter>::default();
        registry.register(
            "capture_outcomes",
            "Capture outcomes learned (success, failed, unknown = the answer was lost) by who learned them (request, reconciliation)",
            captures.clone(),
        );
        let reconcile_errors = Counter::default();
        registry.register(
            "capture_reconcile_errors",
            "Open captures the reconciliation could not ask the provider about",
            reconcile_errors.clone(),
        );
        Self {
            http: HttpMetrics::register(registry),
            webhooks,
            apply_errors,
            captures,
            reconcile_errors,
            groups: crate::groups::GroupMetrics::register(registry),
        }
    }

    /// Counts a webhook that failed to apply. Errors its own content caused (SQLSTATE
    /// classes 22 and 23: the request is refused, the message dead-lettered) are the
    /// sender's, not the service's, and are not counted here.
    pub(crate) fn count_apply_error(&self, kind: &'static str, e: &pm_storage::StorageError) {
        if e.is_caused_by_input() {
            return;
        }
        let cause = if e.is_transient() || e.cause() == "timeout" {
            "unavailable"
        } else {
            "internal"
        };
        self.apply_errors
            .get_or_create(&ApplyErrorLabels { kind, cause })
            .inc();
    }

    pub(crate) fn count_capture(&self, outcome: &'static str, settled_by: &'static str) {
        self.captures
            .get_or_create(&CaptureLabels {
                outcome,
                settled_by,
            })
            .inc();
    }

    /// Counts what a reconciliation round settled.
    pub fn count_reconciled(&self, report: &crate::captures::ReconcileReport) {
        for (outcome, n) in [
            ("success", report.captured),
            ("failed", report.not_captured),
        ] {
            if n > 0 {
                self.captures
                    .get_or_create(&CaptureLabels {
                        outcome,
                        settled_by: "reconciliation",
                    })
                    .inc_by(u64::from(n));
            }
        }
        self.reconcile_errors
            .inc_by(u64::try_from(report.errors.len()).unwrap_or(u64::MAX));
    }
}

tokio::task_local! {
    /// The replica (or, `None`, the primary) the current request reads from.
    static CHOSEN_READ: Option<usize>;
}

/// The response header naming the server a read came from when replicas are configured:
/// `primary`, or `replica` with [`READ_LAG_HEADER`].
pub const READ_SOURCE_HEADER: &str = "pm-read-source";
/// How stale a read from a replica may be: its lag when last measured, in milliseconds.
pub const READ_LAG_HEADER: &str = "pm-read-lag-ms";

/// Middleware of the read routes: picks the server the request reads from once, and says
/// in the response which it was and how stale it may be (only when replicas are
/// configured: without them every read is the primary's).
pub(crate) async fn choose_read(
    axum::extract::State(app): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let reads = app.inner.reads.clone();
    if !reads.has_replicas() {
        return next.run(request).await;
    }
    let read = reads.pick();
    let (chosen, lag) = (read.replica, read.lag);
    let mut response = CHOSEN_READ.scope(chosen, next.run(request)).await;
    let headers = response.headers_mut();
    match lag {
        Some(lag) => {
            headers.insert(
                READ_SOURCE_HEADER,
                axum::http::HeaderValue::from_static("replica"),
            );
            let millis = u64::try_from(lag.as_millis()).unwrap_or(u64::MAX);
            headers.insert(READ_LAG_HEADER, axum::http::HeaderValue::from(millis));
        }
        None => {
            headers.insert(
                READ_SOURCE_HEADER,
                axum::http::HeaderValue::from_static("primary"),
            );
        }
    }
    response
}

/// An extra readiness check (e.g. the Kafka consumers in kafka mode).
pub type Readiness =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// Everything a handler needs.
#[derive(Clone)]
pub struct AppState {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) pool: PgPool,
    pub(crate) reads: Arc<ReadPools>,
    pub(crate) config: ApiConfig,
    pub(crate) provider: ProviderClient,
    pub(crate) metrics: ApiMetrics,
    pub(crate) registry: SharedRegistry,
    pub(crate) readiness: Vec<(&'static str, Readiness)>,
    pub(crate) keyring: crate::auth::Keyring,
    pub(crate) groups: crate::groups::WebhookGroups,
    pub(crate) admin: crate::admin::Admin,
}

impl fmt::Debug for AppState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// `pool` serves writes (webhooks, operator actions) and readiness; `reads` — a
    /// separate and smaller pool on the primary, and the read replicas — serve the read
    /// routes, so a flood of reads can never take the connections webhook processing needs.
    pub fn new(
        pool: PgPool,
        reads: Arc<ReadPools>,
        config: ApiConfig,
        provider: ProviderClient,
        metrics: ApiMetrics,
        registry: SharedRegistry,
        readiness: Vec<(&'static str, Readiness)>,
    ) -> Self {
        let keyring = crate::auth::Keyring::new(config.auth.clone());
        let groups = crate::groups::WebhookGroups::start(
            &pool,
            config.webhook_groups,
            metrics.groups.clone(),
        );
        let admin = crate::admin::Admin::new(&config.admin);
        let state = AppState {
            inner: Arc::new(Inner {
                admin,
                groups,
                pool,
                reads,
                keyring,
                config,
                provider,
                metrics,
                registry,
                readiness,
            }),
        };
        state.keep_keys_current();
        state
    }

    /// Reads the API keys now and then every `cache_ttl`, for as long as the state lives.
    fn keep_keys_current(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        runtime.spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                inner.keyring.refresh(&inner.pool).await;
                let pause = inner.keyring.refresh_interval();
                drop(inner);
                tokio::time::sleep(pause).await;
            }
        });
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The pool of a read: the one the request's [`choose_read`] picked (every read of a
    /// request goes to one server), else the current pick.
    pub(crate) fn read_pool(&self) -> &PgPool {
        let reads = &self.inner.reads;
        CHOSEN_READ
            .try_with(|chosen| *chosen)
            .map_or_else(|_| reads.pick().pool, |chosen| reads.get(chosen).pool)
    }

    /// Constant-time check of a bearer token against the configured service token.
    pub(crate) fn internal_token_matches(&self, presented: &str) -> Option<bool> {
        let expected = self.inner.config.internal_token.as_ref()?;
        Some(bool::from(
            expected
                .expose_secret()
                .as_bytes()
                .ct_eq(presented.as_bytes()),
        ))
    }

    pub(crate) fn count_webhook(&self, kind: &'static str, outcome: &'static str) {
        self.inner
            .metrics
            .webhooks
            .get_or_create(&WebhookLabels { kind, outcome })
            .inc();
    }
}
