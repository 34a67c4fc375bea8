//! The admin UI over HTTP, as a browser without JavaScript uses it: login and the session
//! cookie, CSRF, scopes, the actions' answers and what they change. (The browser test in
//! `pmctl`'s end-to-end tests drives it with htmx in a real Chromium.)

use std::collections::HashMap;

use pm_domain::api_key::Scope;
use pm_storage::api_keys;
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::app::TestApp;

/// A cookie-keeping client that does not follow redirects.
struct Browser {
    base: String,
    http: reqwest::Client,
    cookies: HashMap<String, String>,
}

struct Page {
    status: u16,
    location: Option<String>,
    set_cookies: Vec<String>,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Page {
    /// The CSRF token of the page's forms.
    fn csrf(&self) -> String {
        hidden(&self.body, "csrf").expect("a form with a CSRF token")
    }
}

/// The value of the first hidden input `name`.
fn hidden(html: &str, name: &str) -> Option<String> {
    let pattern = format!(r#"name="{name}" value=""#);
    let rest = &html[html.find(&pattern)? + pattern.len()..];
    Some(rest[..rest.find('"')?].to_owned())
}

impl Browser {
    fn new(app: &TestApp) -> Browser {
        Browser {
            base: app.base.clone(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            cookies: HashMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn take(&mut self, r: reqwest::Response) -> Page {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let set_cookies: Vec<String> = headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        for c in &set_cookies {
            let (pair, attrs) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = pair.split_once('=').expect("name=value");
            if attrs.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), v.to_owned());
            }
        }
        Page {
            status,
            location: headers
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            set_cookies,
            headers,
            body: r.text().await.expect("body"),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .expect("GET");
        self.take(r).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .form(form)
            .send()
            .await
            .expect("POST");
        self.take(r).await
    }

    async fn login(&mut self, key: &str) -> Page {
        let form = self.get("/admin/login").await;
        assert_eq!(form.status, 200, "{}", form.body);
        let token = hidden(&form.body, "login_token").expect("a login token");
        self.post("/admin/login", &[("api_key", key), ("login_token", &token)])
            .await
    }
}

#[tokio::test]
async fn login_opens_a_strict_http_only_session_and_logout_ends_it() {
    let app = TestApp::spawn().await;
    let mut b = Browser::new(&app);

    let away = b.get("/admin/orders?status=success").await;
    assert_eq!(away.status, 303);
    assert_eq!(
        away.location.as_deref(),
        Some("/admin/login?next=%2Fadmin%2Forders%3Fstatus%3Dsuccess")
    );

    // The login form's token must come back with its cookie.
    let form = b.get("/admin/login").await;
    assert!(form.set_cookies[0].starts_with("pm_admin_login="));
    let r = b
        .post(
            "/admin/login",
            &[("api_key", &app.key), ("login_token", "forged")],
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("login form expired"));

    let wrong = b.login("pmk_0123456789abcdef_nope").await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("not valid"));

    let token = hidden(&b.get("/admin/login").await.body, "login_token").expect("token");
    let ok = b
        .post(
            "/admin/login",
            &[
                ("api_key", &app.key),
                ("login_token", &token),
                ("next", "/admin/orders?status=success"),
            ],
        )
        .await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert_eq!(ok.location.as_deref(), Some("/admin/orders?status=success"));
    let session = ok
        .set_cookies
        .iter()
        .find(|c| c.starts_with("pm_admin="))
        .expect("a session cookie");
    assert!(session.contains("HttpOnly") && session.contains("SameSite=Strict"));
    assert!(session.contains("Path=/admin") && session.contains("Max-Age=28800"));
    assert!(!session.contains("Secure"), "plain HTTP: no Secure flag");
    let cookie = b.cookies["pm_admin"].clone();
    assert!(
        !cookie.contains(&app.key[4..]),
        "the cookie never holds the key's secret"
    );

    let orders = b.get("/admin/orders").await;
    assert_eq!(orders.status, 200);
    assert_eq!(orders.headers["cache-control"], "no-store");
    assert_eq!(orders.headers["x-frame-options"], "DENY");
    assert!(orders.headers["content-security-policy"]
        .to_str()
        .expect("csp")
        .contains("script-src 'self'"));

    // An address elsewhere is never the login's destination.
    let token = hidden(&b.get("/admin/login").await.body, "login_token");
    assert!(
        token.is_none(),
        "a logged-in operator is sent on, not shown the form"
    );

    let csrf = orders.csrf();
    let out = b.post("/admin/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, 303);
    assert!(!b.cookies.contains_key("pm_admin"), "the cookie is cleared");
    // The old cookie is refused too, even if a browser kept it.
    b.cookies.insert("pm_admin".to_owned(), cookie);
    assert_eq!(b.get("/admin/orders").await.status, 303);

    let trail: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit_log WHERE action LIKE 'admin_%' ORDER BY audit_id",
    )
    .fetch_all(&app.db.pool)
    .await
    .expect("audit");
    assert_eq!(trail, ["admin_login", "admin_logout"]);

    // Assets are embedded and served without a session.
    let js = b.get("/admin/assets/htmx.min.js").await;
    assert_eq!(js.status, 200);
    assert!(js.body.contains("htmx"));
    assert_eq!(b.get("/admin/assets/nothing.js").await.status, 404);
}

#[tokio::test]
async fn an_operator_holds_and_captures_from_the_order_page() {
    let app = TestApp::spawn().await;
    app.order_in("ord-ui", "updated").await;
    let mut b = Browser::new(&app);
    assert_eq!(b.login(&app.key).await.status, 303);

    let list = b.get("/admin/orders?status=updated").await;
    assert!(list.body.contains("/admin/orders/ord-ui"), "{}", list.body);
    let none = b.get("/admin/orders?status=success").await;
    assert!(none.body.contains("No orders match"));

    let page = b.get("/admin/orders/ord-ui").await;
    assert!(page.body.contains(r#"id="place-hold""#));
    let csrf = page.csrf();

    // Without the session's CSRF token nothing happens.
    let forged = b
        .post(
            "/admin/orders/ord-ui/hold",
            &[("action", "set"), ("reason", "risk"), ("csrf", "x")],
        )
        .await;
    assert_eq!(forged.status, 403);
    let held: bool = sqlx::query_scalar("SELECT on_hold FROM orders WHERE order_id = 'ord-ui'")
        .fetch_one(&app.db.pool)
        .await
        .expect("order");
    assert!(!held);

    let done = b
        .post(
            "/admin/orders/ord-ui/hold",
            &[("action", "set"), ("reason", "risk"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("The order is on hold (risk)"));
    assert!(
        done.body.contains("hold_set"),
        "the timeline shows the hold"
    );
    // A reload of the action's address goes back to the page.
    let reload = b.get("/admin/orders/ord-ui/hold").await;
    assert_eq!(reload.location.as_deref(), Some("/admin/orders/ord-ui"));

    // On hold, a capture is refused with the API's reason.
    let refused = b
        .post(
            "/admin/orders/ord-ui/capture",
            &[
                ("amount", "25.50"),
                ("currency", "usd"),
                ("idempotency_key", "ui-cap-1"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(refused.status, 409);
    assert!(refused.body.contains("is on hold"));

    let cleared = b
        .post(
            "/admin/orders/ord-ui/hold",
            &[("action", "clear"), ("csrf", &csrf)],
        )
        .await;
    assert!(cleared.body.contains("The order is not on hold."));

    // Bad input is named, not a 500.
    let bad = b
        .post(
            "/admin/orders/ord-ui/capture",
            &[
                ("amount", "lots"),
                ("currency", "EUR"),
                ("idempotency_key", "ui-cap-0"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert!(bad.body.contains("amount"));

    Mock::given(method("POST"))
        .and(path("/api/v1/capture"))
        .and(header("idempotency-key", "ui-cap-1"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"transaction_id": "tx-ui", "status": "success"})),
        )
        .expect(1)
        .mount(&app.provider)
        .await;
    let form = [
        ("amount", "25.50"),
        ("currency", "usd"),
        ("idempotency_key", "ui-cap-1"),
        ("csrf", csrf.as_str()),
    ];
    let captured = b.post("/admin/orders/ord-ui/capture", &form).await;
    assert_eq!(captured.status, 200, "{}", captured.body);
    assert!(captured
        .body
        .contains("Captured 25.50 USD (provider transaction tx-ui)"));
    // The same form sent again (a double click, a reload) is the same capture.
    let again = b.post("/admin/orders/ord-ui/capture", &form).await;
    assert_eq!(again.status, 200);
    assert!(again.body.contains("tx-ui"));
    assert_eq!(app.count("order_captures").await, 1);
    assert!(
        !again.body.contains(r#"id="capture""#),
        "nothing left to capture"
    );
}

#[tokio::test]
async fn a_read_key_sees_no_actions_and_is_refused_if_it_tries() {
    let app = TestApp::spawn().await;
    app.order_in("ord-r", "updated").await;
    let dispute = app.open_dispute("ord-rd").await;
    let reader = app.key("reader", &[Scope::Read]).await;
    let mut b = Browser::new(&app);
    assert_eq!(b.login(&reader).await.status, 303);

    let page = b.get("/admin/orders/ord-r").await;
    assert_eq!(page.status, 200);
    for button in ["place-hold", "capture", "clear-hold"] {
        assert!(
            !page.body.contains(&format!(r#"id="{button}""#)),
            "{button}"
        );
    }
    assert!(
        !page.body.contains("/admin/audit"),
        "no audit link for a read key"
    );
    let d = b.get(&format!("/admin/disputes/{dispute}")).await;
    assert!(!d.body.contains("evidence-form") && !d.body.contains("submit-evidence"));
    let parts = b.get("/admin/partitions").await;
    assert!(parts.body.contains("order_events") && !parts.body.contains(r#"id="maintain""#));

    let csrf = page.csrf();
    for (path, form) in [
        (
            "/admin/orders/ord-r/hold",
            vec![("action", "set"), ("reason", "risk")],
        ),
        (
            "/admin/orders/ord-r/capture",
            vec![
                ("amount", "1"),
                ("currency", "EUR"),
                ("idempotency_key", "k"),
            ],
        ),
        ("/admin/partitions/maintain", vec![]),
        ("/admin/dead-letters/replay", vec![]),
    ] {
        let mut form = form.clone();
        form.push(("csrf", &csrf));
        let r = b.post(path, &form).await;
        assert_eq!(r.status, 403, "{path}");
        assert!(r.body.contains("lacks the"), "{path}: {}", r.body);
    }
    assert_eq!(b.get("/admin/audit").await.status, 403);

    // Revoking the key ends its session (within the key cache's lifetime).
    api_keys::revoke(
        &app.db.pool,
        "reader",
        &pm_storage::audit::Actor::new("cli:tests", None),
        pm_domain::time::now(),
    )
    .await
    .expect("revoke");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while b.get("/admin/orders").await.status != 303 {
        assert!(
            std::time::Instant::now() < deadline,
            "the session outlived its key"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn evidence_is_stored_and_submitted_from_the_dispute_page() {
    let app = TestApp::spawn().await;
    let dispute = app.open_dispute("ord-d").await;
    let mut b = Browser::new(&app);
    assert_eq!(b.login(&app.key).await.status, 303);
    let list = b.get("/admin/disputes?status=open").await;
    assert!(list.body.contains(&dispute));
    let page_path = format!("/admin/disputes/{dispute}");
    let page = b.get(&page_path).await;
    assert!(
        !page.body.contains("submit-evidence"),
        "nothing to submit yet"
    );
    let csrf = page.csrf();

    let refused = b
        .post(
            &format!("{page_path}/evidence"),
            &[
                ("csrf", &csrf),
                ("field_name", "note"),
                ("field_value", "kept"),
                ("file_id", "f1"),
                ("file_name", "r.pdf"),
                ("file_type", "application/pdf"),
                ("file_size", "big"),
            ],
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(refused.body.contains("size"));
    assert!(
        refused.body.contains("kept"),
        "the operator's input is shown again"
    );

    let stored = b
        .post(
            &format!("{page_path}/evidence"),
            &[
                ("csrf", &csrf),
                ("field_name", "product_description"),
                ("field_value", "A <b>red</b> bike"),
                ("file_id", "file_1"),
                ("file_name", "receipt.pdf"),
                ("file_type", "application/pdf"),
                ("file_size", "1234"),
            ],
        )
        .await;
    assert_eq!(stored.status, 200, "{}", stored.body);
    assert!(stored
        .body
        .contains("Evidence stored: 1 field(s), 1 file(s)."));
    assert!(
        stored.body.contains("A &lt;b&gt;red&lt;/b&gt; bike"),
        "escaped"
    );
    assert!(stored.body.contains("submit-evidence"));

    Mock::given(method("POST"))
        .and(path("/api/v1/dispute-representments/create"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "rep-ui"})))
        .expect(1)
        .mount(&app.provider)
        .await;
    let submitted = b
        .post(&format!("{page_path}/submit"), &[("csrf", &csrf)])
        .await;
    assert_eq!(submitted.status, 200, "{}", submitted.body);
    assert!(
        submitted.body.contains("representment rep-ui"),
        "{}",
        submitted.body
    );
    assert!(submitted.body.contains("evidence can no longer change"));
}

#[tokio::test]
async fn bad_filters_and_hostile_paths_get_clear_4xx_pages() {
    let app = TestApp::spawn().await;
    let mut b = Browser::new(&app);
    assert_eq!(b.login(&app.key).await.status, 303);
    for (path, status, says) in [
        ("/admin/orders?user_id=nope", 400, "user_id"),
        ("/admin/orders?status=paid", 400, "status"),
        (
            "/admin/orders?created_from=2026-12-02&created_to=2026-12-01",
            400,
            "created_from",
        ),
        ("/admin/orders?cursor=garbage", 400, "cursor"),
        ("/admin/orders?stauts=x", 400, "stauts"),
        ("/admin/orders/%00", 400, "order_id"),
        ("/admin/orders/nope", 404, "does not exist"),
        ("/admin/disputes/not-a-uuid", 400, "dispute_id"),
        ("/admin/disputes?status=%00", 400, "status"),
        ("/admin/audit?actor=%00", 400, "actor"),
        ("/admin/dead-letters", 200, "sync mode"),
    ] {
        let page = b.get(path).await;
        assert_eq!(page.status, status, "{path}: {}", page.body);
        assert!(
            page.body.contains(says),
            "{path} should say {says:?}: {}",
            page.body
        );
    }
    let csrf = b.get("/admin/orders").await.csrf();
    let r = b
        .http
        .post(format!("{}/admin/orders/x/hold", b.base))
        .header("cookie", b.cookie_header())
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 415);
    let cross = b
        .http
        .post(format!("{}/admin/orders/x/hold", b.base))
        .header("cookie", b.cookie_header())
        .header("sec-fetch-site", "cross-site")
        .form(&[("csrf", csrf.as_str()), ("action", "clear")])
        .send()
        .await
        .expect("post");
    assert_eq!(cross.status(), 403);
}
