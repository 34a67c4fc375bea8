//! Operator authentication and authorization: `Authorization: Bearer pmk_…` API keys with
//! scopes, checked on every route but the webhooks (signed), `/internal/*` (service token)
//! and the health probes.
//!
//! - No or an unusable credential → `401` with `WWW-Authenticate: Bearer`; a valid key
//!   without the route's scope → `403`. Neither answer says whether a key exists.
//! - Every instance keeps the stored keys in memory, re-read every
//!   [`AuthSettings::cache_ttl`] in the background, so a revoked or expired key stops working
//!   on every instance within that time, and checking a key costs no query. An id not in
//!   that copy (a key made since) is looked up once per `cache_ttl`. When the database
//!   cannot be read, the last copy goes on serving: `/metrics` and reads of an instance
//!   whose database is away keep answering for the keys it knew.
//! - An address that presents more than [`AuthSettings::max_failures`] bad keys within
//!   [`AuthSettings::failure_window`] gets `429` with `Retry-After` until the window ends,
//!   whatever it presents (a valid key included): guessing is throttled, and logged.
//!   Behind a reverse proxy every connection comes from the proxy: list it in
//!   [`AuthSettings::trusted_proxies`] and the address it reports (`X-Forwarded-For`'s last
//!   entry, else `X-Real-IP`) is the one counted. From any other peer those headers are
//!   ignored, so a client cannot dodge the count by inventing addresses.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use pm_domain::api_key::{KeyId, Presented, Scope};
use pm_http::Problem;
use pm_storage::api_keys::{self, StoredKey};
use pm_storage::audit::Actor;

use crate::error::ApiError;
use crate::state::AppState;

/// How keys are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    /// How long a looked-up key is trusted before it is read again (revocation delay).
    pub cache_ttl: Duration,
    /// Bad keys one address may present within `failure_window` before it is throttled.
    pub max_failures: u32,
    pub failure_window: Duration,
    /// Reverse proxies (their addresses as the API sees them) whose report of the client's
    /// address is believed.
    pub trusted_proxies: Vec<IpAddr>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            cache_ttl: Duration::from_secs(2),
            max_failures: 20,
            failure_window: Duration::from_secs(60),
            trusted_proxies: Vec::new(),
        }
    }
}

/// The operator a request acts for: the key's name, for logs and the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub key_name: String,
    pub key_id: String,
}

impl Operator {
    /// Who acts, as the audit trail records it.
    pub(crate) fn actor(&self, correlation: &pm_telemetry::CorrelationId) -> Actor {
        Actor::new(&self.key_name, Some(correlation.as_str().to_owned()))
    }
}

/// The keys and the failure counts of one API instance.
#[derive(Debug)]
pub(crate) struct Keyring {
    settings: AuthSettings,
    /// Every stored key, as last read.
    known: std::sync::RwLock<HashMap<KeyId, StoredKey>>,
    /// Ids looked up one by one since (keys made after the last read, and unknown ids).
    looked_up: Mutex<HashMap<KeyId, (Option<StoredKey>, Instant)>>,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Keyring {
    pub(crate) fn new(settings: AuthSettings) -> Self {
        Keyring {
            settings,
            known: std::sync::RwLock::default(),
            looked_up: Mutex::default(),
            failures: Mutex::default(),
        }
    }

    /// Re-reads every key; on failure the last copy stays.
    pub(crate) async fn refresh(&self, pool: &pm_storage::PgPool) {
        match api_keys::list(pool).await {
            Ok(keys) => {
                let keys = keys.into_iter().map(|k| (k.key_id.clone(), k)).collect();
                if let Ok(mut known) = self.known.write() {
                    *known = keys;
                }
                if let Ok(mut looked_up) = self.looked_up.lock() {
                    looked_up.clear();
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot re-read the API keys; the last copy serves")
            }
        }
    }

    pub(crate) fn refresh_interval(&self) -> Duration {
        self.settings.cache_ttl
    }

    async fn key(&self, app: &AppState, id: &KeyId) -> Result<Option<StoredKey>, ApiError> {
        if let Some(key) = self.known.read().ok().and_then(|k| k.get(id).cloned()) {
            return Ok(Some(key));
        }
        if let Ok(looked_up) = self.looked_up.lock() {
            if let Some((key, at)) = looked_up.get(id) {
                if at.elapsed() < self.settings.cache_ttl {
                    return Ok(key.clone());
                }
            }
        }
        let key = api_keys::find(app.pool(), id).await?;
        if let Some(found) = &key {
            // As current as the last read of all keys: kept with them, so it outlives a
            // database outage like they do.
            if let Ok(mut known) = self.known.write() {
                known.insert(id.clone(), found.clone());
            }
            return Ok(key);
        }
        if let Ok(mut looked_up) = self.looked_up.lock() {
            // Unknown ids are remembered too, or a guesser would cost a query per guess; the
            // map is bounded by dropping what has expired once it grows.
            if looked_up.len() > 10_000 {
                let ttl = self.settings.cache_ttl;
                looked_up.retain(|_, (_, at)| at.elapsed() < ttl);
            }
            looked_up.insert(id.clone(), (key.clone(), Instant::now()));
        }
        Ok(key)
    }

    /// Seconds until `ip` may try again, when it is throttled.
    fn throttled(&self, ip: IpAddr) -> Option<u64> {
        let failures = self.failures.lock().ok()?;
        let (count, since) = failures.get(&ip)?;
        let left = self.settings.failure_window.checked_sub(since.elapsed())?;
        (*count > self.settings.max_failures).then(|| left.as_secs().max(1))
    }

    fn failed(&self, ip: IpAddr) {
        let Ok(mut failures) = self.failures.lock() else {
            return;
        };
        let window = self.settings.failure_window;
        if failures.len() > 10_000 {
            failures.retain(|_, (_, since)| since.elapsed() < window);
        }
        let entry = failures.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= window {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
        if entry.0 == self.settings.max_failures + 1 {
            tracing::warn!(%ip, failures = entry.0, window_s = window.as_secs(), "too many bad API keys from one address; throttling it");
        }
    }
}

/// The middleware state: which scope the routes behind it need.
#[derive(Clone)]
pub(crate) struct Guard {
    pub(crate) app: AppState,
    pub(crate) scope: Scope,
}

fn unauthorized() -> Response {
    let mut response = Problem::unauthorized(
        "missing or invalid credentials: send Authorization: Bearer <API key>",
    )
    .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"payment-manager\""),
    );
    response
}

fn bearer(req: &Request) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The address a request is counted under: the peer's, or, when the peer is a trusted
/// proxy, the client address the proxy reports — the last `X-Forwarded-For` entry (the one
/// the proxy itself added; earlier ones are the client's to invent), else `X-Real-IP`.
fn client_address(peer: IpAddr, headers: &axum::http::HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    header("x-forwarded-for")
        .and_then(|list| list.rsplit(',').next())
        .or_else(|| header("x-real-ip"))
        .and_then(|ip| ip.trim().parse().ok())
        .unwrap_or(peer)
}

/// Why a credential was not accepted.
pub(crate) enum Denied {
    /// The address presented too many bad keys; it may try again after these seconds.
    Throttled(u64),
    /// No such key, a wrong secret, or a revoked or expired key (indistinguishable, on purpose).
    Invalid,
    /// The keys could not be read.
    Unavailable(ApiError),
}

/// The address a request is counted under (see [`client_address`]).
pub(crate) fn request_address(app: &AppState, parts: &axum::http::request::Parts) -> IpAddr {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    client_address(
        peer,
        &parts.headers,
        &app.inner.keyring.settings.trusted_proxies,
    )
}

/// Whether a request came through a trusted proxy that says its client used HTTPS.
pub(crate) fn forwarded_https(app: &AppState, parts: &axum::http::request::Parts) -> bool {
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>();
    peer.is_some_and(|c| {
        app.inner
            .keyring
            .settings
            .trusted_proxies
            .contains(&c.0.ip())
    }) && parts
        .headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// Checks a presented API key (`pmk_…`) from `ip`: the one check behind the `Bearer` header
/// and the admin UI's login. Bad keys count towards `ip`'s throttling.
pub(crate) async fn authenticate(
    app: &AppState,
    ip: IpAddr,
    token: &str,
) -> Result<StoredKey, Denied> {
    let keyring = &app.inner.keyring;
    if let Some(retry) = keyring.throttled(ip) {
        return Err(Denied::Throttled(retry));
    }
    let Some(presented) = Presented::parse(token) else {
        keyring.failed(ip);
        return Err(Denied::Invalid);
    };
    let key = keyring
        .key(app, &presented.id)
        .await
        .map_err(Denied::Unavailable)?;
    let now = pm_domain::time::now();
    match key.filter(|k| presented.matches(&k.secret_hash) && k.is_active(now)) {
        Some(key) => Ok(key),
        None => {
            keyring.failed(ip);
            Err(Denied::Invalid)
        }
    }
}

/// The key an admin session was opened with, as it is now: `None` once it was revoked,
/// expired or deleted (the session ends with it). Its secret was checked at login.
pub(crate) async fn session_key(app: &AppState, id: &KeyId) -> Result<Option<StoredKey>, ApiError> {
    let key = app.inner.keyring.key(app, id).await?;
    let now = pm_domain::time::now();
    Ok(key.filter(|k| k.is_active(now)))
}

/// `429` with `Retry-After` for a throttled address.
pub(crate) fn throttled(retry: u64) -> Problem {
    let mut p = Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too-many-failures",
        "too many requests with invalid credentials from this address; retry later",
    );
    p.retry_after = u32::try_from(retry).ok();
    p
}

impl Operator {
    pub(crate) fn of(key: &StoredKey) -> Self {
        Operator {
            key_name: key.name.clone(),
            key_id: key.key_id.to_string(),
        }
    }
}

/// Lets the request through when it carries an active key with the guard's scope.
pub(crate) async fn require(State(guard): State<Guard>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let ip = request_address(&guard.app, &parts);
    let mut req = Request::from_parts(parts, body);
    if let Some(retry) = guard.app.inner.keyring.throttled(ip) {
        return throttled(retry).into_response();
    }
    let Some(token) = bearer(&req) else {
        return unauthorized();
    };
    let key = match authenticate(&guard.app, ip, token).await {
        Ok(key) => key,
        Err(Denied::Throttled(retry)) => return throttled(retry).into_response(),
        Err(Denied::Invalid) => return unauthorized(),
        Err(Denied::Unavailable(e)) => return e.into_response(),
    };
    if !key.scopes.contains(&guard.scope) {
        return forbidden(guard.scope).into_response();
    }
    req.extensions_mut().insert(Operator::of(&key));
    next.run(req).await
}

/// `403` for a valid key without `scope`.
pub(crate) fn forbidden(scope: Scope) -> Problem {
    Problem::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("this key lacks the `{scope}` scope"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_trusted_proxy_says_who_the_client_is() {
        let proxy: IpAddr = "127.0.0.1".parse().expect("ip");
        let stranger: IpAddr = "198.51.100.9".parse().expect("ip");
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "10.0.0.1, 203.0.113.7".parse().expect("value"),
        );
        headers.insert("x-real-ip", "203.0.113.99".parse().expect("value"));
        let trusted = [proxy];
        assert_eq!(
            client_address(proxy, &headers, &trusted),
            "203.0.113.7".parse::<IpAddr>().expect("ip"),
            "the proxy's own entry is the last one"
        );
        assert_eq!(client_address(stranger, &headers, &trusted), stranger);
        assert_eq!(client_address(proxy, &headers, &[]), proxy);

        headers.remove("x-forwarded-for");
        assert_eq!(
            client_address(proxy, &headers, &trusted),
            "203.0.113.99".parse::<IpAddr>().expect("ip")
        );
        headers.insert("x-real-ip", "not an address".parse().expect("value"));
        assert_eq!(client_address(proxy, &headers, &trusted), proxy);
    }
}
