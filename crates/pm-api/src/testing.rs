//! The API on a free port, for the tests of this crate and of the crates that talk to it
//! (ingest, the load generator). Feature `testing`.

pub mod hostile;

use std::net::SocketAddr;
use std::time::Duration;

use pm_domain::api_key::Scope;

use pm_domain::signature::Verifier;
use pm_http::intake::{IntakeConfig, DEFAULT_MAX_BODY_BYTES};
use pm_http::limits::Limits;
use pm_provider::{ProviderClient, ProviderConfig};
use pm_storage::PgPool;
use pm_telemetry::metrics::{Registry, SharedRegistry};

use crate::{router, ApiConfig, ApiMetrics, AppState};

/// How the test API is set up; [`TestApi::serve`] starts it.
#[derive(Debug, Clone)]
pub struct TestApi {
    secret: Vec<u8>,
    internal_token: Option<String>,
    provider: ProviderConfig,
    capture_stale_after: Duration,
    limits: Limits,
    read_pool: Option<PgPool>,
    replicas: Vec<(String, PgPool)>,
    max_replica_lag: Duration,
    pprof: bool,
    trusted_proxies: Vec<std::net::IpAddr>,
    webhook_groups: crate::groups::GroupSettings,
}

/// A test API that stops (like a killed process) when dropped.
#[derive(Debug)]
pub struct RunningApi {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// An API key with every scope, made for this instance.
    pub key: String,
    task: tokio::task::JoinHandle<()>,
}

/// A test API serving for the rest of the test.
#[derive(Debug, Clone)]
pub struct ServedApi {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// An API key with every scope, made for this instance.
    pub key: String,
}

/// An HTTP client that sends `key` as its bearer token on every request.
///
/// # Panics
/// When `key` cannot be a header value: a test set-up error.
pub fn client_with_key(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {key}")).expect("header"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("client")
}

impl RunningApi {
    /// A client that sends this instance's key.
    pub fn client(&self) -> reqwest::Client {
        client_with_key(&self.key)
    }
}

impl ServedApi {
    /// A client that sends this instance's key.
    pub fn client(&self) -> reqwest::Client {
        client_with_key(&self.key)
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Drop for RunningApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestApi {
    /// Webhooks signed with `secret`; no internal token; a provider on a port where nothing
    /// listens (tests that capture or submit set one with [`TestApi::provider`]).
    pub fn new(secret: &[u8]) -> Self {
        TestApi {
            secret: secret.to_vec(),
            internal_token: None,
            provider: ProviderConfig {
                base_url: "http://127.0.0.1:9".to_owned(),
                ..ProviderConfig::default()
            },
            capture_stale_after: Duration::from_secs(30),
            limits: Limits::default(),
            read_pool: None,
            replicas: Vec::new(),
            max_replica_lag: Duration::from_secs(5),
            pprof: false,
            trusted_proxies: Vec::new(),
            webhook_groups: crate::groups::GroupSettings::default(),
        }
    }

    /// How sync-mode webhooks are grouped (default: as `serve-api` does by default).
    pub fn webhook_groups(mut self, settings: crate::groups::GroupSettings) -> Self {
        self.webhook_groups = settings;
        self
    }

    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// A pool of its own for the read routes (default: the one pool for everything).
    pub fn read_pool(mut self, pool: PgPool) -> Self {
        self.read_pool = Some(pool);
        self
    }

    /// A read replica (checked every 100 ms, in rotation while its lag is at most
    /// [`max_replica_lag`](Self::max_replica_lag)).
    pub fn replica(mut self, name: &str, pool: PgPool) -> Self {
        self.replicas.push((name.to_owned(), pool));
        self
    }

    pub fn max_replica_lag(mut self, lag: Duration) -> Self {
        self.max_replica_lag = lag;
        self
    }

    pub fn capture_stale_after(mut self, after: Duration) -> Self {
        self.capture_stale_after = after;
        self
    }

    pub fn internal_token(mut self, token: &str) -> Self {
        self.internal_token = Some(token.to_owned());
        self
    }

    /// Believes the client address a proxy at `ip` reports (`serve-api --trusted-proxy`).
    pub fn trusted_proxy(mut self, ip: std::net::IpAddr) -> Self {
        self.trusted_proxies.push(ip);
        self
    }

    /// Allows CPU profiles (`serve-api --pprof`).
    pub fn pprof(mut self) -> Self {
        self.pprof = true;
        self
    }

    pub fn provider(mut self, provider: ProviderConfig) -> Self {
        self.provider = provider;
        self
    }

    /// Serves the API on `127.0.0.1:<free port>` against `pool` for the rest of the test;
    /// returns its base URL and a key with every scope.
    ///
    /// # Panics
    /// When the provider settings are invalid or no port can be bound: a test set-up error.
    pub async fn serve(self, pool: PgPool) -> ServedApi {
        let running = self.spawn(pool).await;
        let served = ServedApi {
            base: running.base.clone(),
            key: running.key.clone(),
        };
        std::mem::forget(running);
        served
    }

    /// Serves the API like [`TestApi::serve`] until the returned handle is dropped.
    ///
    /// # Panics
    /// When the provider settings are invalid or no port can be bound: a test set-up error.
    pub async fn spawn(self, pool: PgPool) -> RunningApi {
        let config = ApiConfig {
            intake: IntakeConfig {
                verifier: Some(Verifier::new(vec![self.secret], 300)),
                max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            },
            internal_token: self.internal_token.map(Into::into),
            internal_needs_client_certificate: false,
            capture_stale_after: self.capture_stale_after,
            auth: crate::auth::AuthSettings {
                trusted_proxies: self.trusted_proxies.clone(),
                ..crate::auth::AuthSettings::default()
            },
            pprof: self.pprof,
            webhook_groups: self.webhook_groups,
            admin: crate::admin::AdminSettings::default(),
        };
        let now = pm_domain::time::now();
        let name = format!("test-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let actor = pm_storage::audit::Actor::new("cli:tests", None);
        let (_, key) = pm_storage::api_keys::create(&pool, &name, &Scope::ALL, None, &actor, now)
            .await
            .expect("a test API key");
        let client = ProviderClient::new(self.provider).expect("valid provider settings");
        let mut registry = Registry::with_prefix("pm");
        let metrics = ApiMetrics::register(&mut registry);
        let read_pool = self.read_pool.unwrap_or_else(|| pool.clone());
        let reads = std::sync::Arc::new(pm_storage::replicas::ReadPools::new(
            read_pool,
            self.replicas,
            self.max_replica_lag,
        ));
        reads.register(&mut registry);
        let monitor = tokio::spawn(
            reads
                .clone()
                .monitor(Duration::from_millis(100), std::future::pending()),
        );
        let state = AppState::new(
            pool,
            reads,
            config,
            client,
            metrics,
            SharedRegistry::new(registry),
            Vec::new(),
        );
        // Knows its key before it serves, as a long-running instance would.
        state.inner.keyring.refresh(state.pool()).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a free port");
        let base = format!("http://{}", listener.local_addr().expect("bound address"));
        let limits = self.limits;
        let task = tokio::spawn(async move {
            // Aborting the server drops this future, and the guard stops the monitor with it.
            let _monitor = AbortOnDrop(monitor);
            let app = router(state, &limits).into_make_service_with_connect_info::<SocketAddr>();
            let _ = axum::serve(listener, app).await;
        });
        RunningApi { base, key, task }
    }
}
