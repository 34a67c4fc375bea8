//! Proptest strategies for what a hostile client sends: webhook bodies that are valid in
//! shape but not in content (or not JSON at all), odd headers, and query strings. Shared by
//! the property tests of the API and of ingest, which assert that none of it gets a 5xx and
//! that nothing of a refused request is stored.

use std::sync::atomic::{AtomicU64, Ordering};

use pm_storage::PgPool;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{json, Map, Value};

/// The two webhook routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Orders,
    Chargebacks,
}

impl Route {
    pub fn path(self) -> &'static str {
        match self {
            Route::Orders => "/webhooks/payments/orders",
            Route::Chargebacks => "/webhooks/payments/chargebacks",
        }
    }

    /// A valid body of this route for order `order_id`, event `event`.
    pub fn valid(self, event: &str, order_id: &str) -> Value {
        const USER: &str = "0b6f5c3e-8d1a-4c7e-9a51-2f0e1b2c3d4e";
        match self {
            Route::Orders => json!({
                "provider_event_id": event, "order_id": order_id, "user_id": USER,
                "status": "created", "created_at": "2026-01-01T00:00:00Z",
                "updated_at": "2026-01-01T00:00:05Z", "meta": {"source": "proptest"}
            }),
            Route::Chargebacks => json!({
                "provider_event_id": event, "order_id": order_id, "user_id": USER,
                "status": "opened", "reason": "fraud", "amount": 100.50, "currency": "USD",
                "occurred_at": "2026-01-02T00:00:00Z", "evidence_due_at": "2026-01-20T00:00:00Z",
                "meta": {}
            }),
        }
    }
}

/// Text a validator may not expect: control characters (NUL among them), long runs,
/// surrounding spaces, non-ASCII, and values close to a field's meaning (times out of
/// range, amounts with too many decimals, lower-case codes).
pub fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => "[a-z0-9_-]{1,12}",
        1 => "\\PC{0,24}",
        // Control characters weigh more: PostgreSQL's text refuses NUL outright.
        4 => "[\\x00-\\x1f\\x7f]{1,3}[a-z]{0,4}",
        4 => "[a-z]{1,4}\\x00[a-z]{0,4}",
        1 => " [a-z]{1,6} ",
        1 => "x{250,300}",
        1 => Just(String::new()),
        1 => Just("9999-12-31T23:59:59Z".to_owned()),
        1 => Just("0000-01-01T00:00:00Z".to_owned()),
        1 => Just("2026-02-30T00:00:00Z".to_owned()),
        1 => Just("2026-01-01T00:00:00+25:00".to_owned()),
        1 => Just("+275760-09-13T00:00:00Z".to_owned()),
        1 => Just("1e400".to_owned()),
        1 => Just("100.505".to_owned()),
        1 => Just("usd".to_owned()),
        1 => Just("XXX".to_owned()),
        1 => Just("00000000-0000-0000-0000-000000000000".to_owned()),
        1 => Just("opened".to_owned()),
        1 => Just("success".to_owned()),
    ]
}

/// Any JSON value, biased towards the awkward ones.
pub fn hostile_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Just(json!(1e300)),
        Just(json!(-0.0)),
        Just(json!(0.001)),
        Just(json!(12345678901234567890u64)),
        hostile_text().prop_map(Value::String),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z\\x00]{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A webhook body for `route`: a valid one with fields replaced by hostile values, removed
/// or added; or bytes that are not JSON at all. `event` and `order_id` name the valid
/// body's ids (so that a body that stays valid is stored under them).
pub fn webhook_body(route: Route, event: String, order_id: String) -> BoxedStrategy<Vec<u8>> {
    let valid = route.valid(&event, &order_id);
    let fields: Vec<String> = valid
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let field_count = fields.len();
    let mutated = (
        prop::collection::vec((0..field_count, prop::option::of(hostile_value())), 0..4),
        prop::collection::vec(("[a-z_\\x00]{1,8}", hostile_value()), 0..2),
    )
        .prop_map(move |(changes, extra)| {
            let mut body = valid.clone();
            if let Some(map) = body.as_object_mut() {
                for (index, value) in changes {
                    match value {
                        Some(v) => {
                            map.insert(fields[index].clone(), v);
                        }
                        None => {
                            map.remove(&fields[index]);
                        }
                    }
                }
                for (name, v) in extra {
                    map.insert(name, v);
                }
            }
            serde_json::to_vec(&body).unwrap_or_default()
        });
    prop_oneof![
        8 => mutated,
        1 => prop::collection::vec(any::<u8>(), 0..256),
        1 => hostile_value().prop_map(|v| serde_json::to_vec(&v).unwrap_or_default()),
    ]
    .boxed()
}

/// One webhook case: a route, a body about one of the orders `ord-0` … `ord-{orders - 1}`
/// (which a test creates first, so chargebacks can get past "order unknown"), and how the
/// request is dressed. Every case has an event id of its own.
pub fn webhook_case(orders: u32) -> impl Strategy<Value = (Route, Vec<u8>, Dress)> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    (
        prop_oneof![Just(Route::Orders), Just(Route::Chargebacks)],
        0..orders.max(1),
        dress(),
    )
        .prop_flat_map(|(route, order, dress)| {
            let n = SEQ.fetch_add(1, Ordering::Relaxed);
            (
                Just(route),
                webhook_body(route, format!("evt-{n}"), format!("ord-{order}")),
                Just(dress),
            )
        })
}

/// Rows in every table a webhook may write: a refused webhook leaves it unchanged.
pub async fn footprint(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM orders) + (SELECT count(*) FROM order_events)
              + (SELECT count(*) FROM disputes) + (SELECT count(*) FROM dispute_events)
              + (SELECT count(*) FROM processed_webhooks)",
    )
    .fetch_one(pool)
    .await
    .expect("footprint")
}

/// Sends one [`webhook_case`] to the service at `base` (the API or ingest) and checks it:
/// never a 5xx, and a refused webhook leaves the footprint of `pool` (the database behind
/// the service) unchanged.
pub async fn check_webhook(
    http: &reqwest::Client,
    base: &str,
    secret: &[u8],
    pool: &PgPool,
    (route, body, dress): (Route, Vec<u8>, Dress),
) -> Result<(), TestCaseError> {
    let before = footprint(pool).await;
    let request = dress.apply(http.post(format!("{base}{}", route.path())), secret, &body);
    let response = match request.send().await {
        Ok(r) => r,
        // A header value reqwest itself refuses never leaves the test.
        Err(e) if e.is_builder() => return Ok(()),
        Err(e) => return Err(TestCaseError::fail(format!("no answer: {e}"))),
    };
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    prop_assert!(
        !status.is_server_error(),
        "{status} for {:?}: {text}",
        String::from_utf8_lossy(&body)
    );
    if !status.is_success() {
        prop_assert_eq!(
            footprint(pool).await,
            before,
            "a refused webhook stored something: {}",
            text
        );
    }
    Ok(())
}

/// How a webhook request is dressed.
#[derive(Debug, Clone)]
pub struct Dress {
    pub content_type: Option<String>,
    pub signature: Signature,
    pub correlation_id: Option<String>,
}

/// Which signature a request carries.
#[derive(Debug, Clone)]
pub enum Signature {
    Valid,
    /// Valid, but made this many seconds ago.
    Aged(i64),
    Missing,
    Garbage(String),
}

pub fn dress() -> impl Strategy<Value = Dress> {
    (
        prop_oneof![
            6 => Just(Some("application/json".to_owned())),
            1 => Just(Some("application/json; charset=utf-8".to_owned())),
            1 => Just(Some("text/plain".to_owned())),
            1 => Just(None),
            1 => "[ -~]{0,30}".prop_map(Some),
        ],
        prop_oneof![
            8 => Just(Signature::Valid),
            1 => prop_oneof![Just(400i64), Just(-400), Just(100_000_000_000)].prop_map(Signature::Aged),
            1 => Just(Signature::Missing),
            1 => "[ -~]{0,80}".prop_map(Signature::Garbage),
        ],
        prop::option::of("[!-~]{0,80}"),
    )
        .prop_map(|(content_type, signature, correlation_id)| Dress {
            content_type,
            signature,
            correlation_id,
        })
}

impl Dress {
    /// A JSON webhook, correctly signed.
    pub fn valid() -> Dress {
        Dress {
            content_type: Some("application/json".to_owned()),
            signature: Signature::Valid,
            correlation_id: None,
        }
    }

    /// Applies this dress to a POST of `body`, signing with `secret` where it says so.
    pub fn apply(
        &self,
        request: reqwest::RequestBuilder,
        secret: &[u8],
        body: &[u8],
    ) -> reqwest::RequestBuilder {
        let now = chrono::Utc::now().timestamp();
        let mut request = request.body(body.to_vec());
        if let Some(ct) = &self.content_type {
            request = request.header("content-type", ct);
        }
        if let Some(id) = &self.correlation_id {
            request = request.header("x-correlation-id", id);
        }
        let header = pm_domain::signature::HEADER;
        match &self.signature {
            Signature::Valid => request.header(
                header,
                pm_domain::signature::header_value(secret, now, body),
            ),
            Signature::Aged(secs) => request.header(
                header,
                pm_domain::signature::header_value(secret, now.saturating_sub(*secs), body),
            ),
            Signature::Missing => request,
            Signature::Garbage(text) => request.header(header, text),
        }
    }
}

/// A parameter of a read route with values it accepts.
type Param = (&'static str, &'static [&'static str]);

const TIMES: &[&str] = &["2026-01-01T00:00:00Z", "2026-01-01T00:00:00.123456+02:00"];
const PAGE: &[Param] = &[
    ("limit", &["1", "50", "1000"]),
    ("sort", &["asc", "desc"]),
    ("cursor", &["YTE3NjcyMjU2MDAwMDAwMDB8b3JkLTE"]),
];

const DAYS: &[Param] = &[
    ("from", &["2026-01-01", "0001-01-01"]),
    ("to", &["2026-01-02", "9999-12-31"]),
];

/// The read routes and the parameters each knows, with values it accepts.
pub const READ_ROUTES: &[(&str, &[Param])] = &[
    ("/analytics/orders", DAYS),
    ("/analytics/captures", DAYS),
    ("/analytics/disputes", DAYS),
    (
        "/orders",
        &[
            ("status", &["created", "updated", "success", "failed"]),
            ("user_id", &["0b6f5c3e-8d1a-4c7e-9a51-2f0e1b2c3d4e"]),
            ("on_hold", &["true", "false"]),
            ("created_from", TIMES),
            ("created_to", &["2027-01-01T00:00:00Z"]),
        ],
    ),
    (
        "/orders/events",
        &[
            ("order_id", &["ord-1"]),
            ("kind", &["webhook_received", "capture_unknown"]),
            ("time_from", TIMES),
            ("time_to", &["2027-01-01T00:00:00Z"]),
        ],
    ),
    ("/orders/ord-1/events", &[("kind", &["hold_set"])]),
    ("/orders/ord-1/captures", &[]),
    (
        "/disputes",
        &[
            ("status", &["opened", "won", "lost"]),
            ("reason", &["fraud"]),
            ("order_id", &["ord-1"]),
        ],
    ),
    (
        "/disputes/events",
        &[
            ("dispute_id", &["0b6f5c3e-8d1a-4c7e-9a51-2f0e1b2c3d4e"]),
            ("kind", &["evidence_added"]),
        ],
    ),
];

/// A read route and a query string for it: mostly parameters it knows with values it
/// accepts, some of them hostile, now and then one it does not know; percent-encoded.
pub fn read_request() -> impl Strategy<Value = String> {
    (0..READ_ROUTES.len())
        .prop_flat_map(|index| {
            let (route, own) = READ_ROUTES[index];
            let paged = !route.ends_with("/captures") && !route.starts_with("/analytics/");
            let known: Vec<Param> = own
                .iter()
                .chain(if paged { PAGE.iter() } else { [].iter() })
                .copied()
                .collect();
            let count = known.len().max(1);
            let param = (
                0..count,
                0..8usize,
                prop::option::weighted(0.3, hostile_text()),
            );
            (
                Just(route),
                Just(known),
                prop::collection::vec(param, 0..4),
                prop::option::weighted(0.1, ("[a-z\\x00]{1,8}", hostile_text())),
            )
        })
        .prop_map(|(route, known, params, unknown)| {
            let mut q = form_urlencoded::Serializer::new(String::new());
            for (which, pick, hostile) in params {
                let Some((name, values)) = known.get(which) else {
                    continue;
                };
                let value = hostile.unwrap_or_else(|| {
                    values
                        .get(pick % values.len().max(1))
                        .copied()
                        .unwrap_or("")
                        .to_owned()
                });
                q.append_pair(name, &value);
            }
            if let Some((name, value)) = unknown {
                q.append_pair(&name, &value);
            }
            format!("{route}?{}", q.finish())
        })
}
