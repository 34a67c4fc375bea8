//! The admin UI in a real browser: headless Chromium driven through chromedriver
//! (WebDriver) against a `serve-api` in kafka mode, with htmx running as it does for an
//! operator. Log in, filter orders, open one, place a hold and see it in the timeline,
//! store and submit evidence, replay a dead letter home, run partition maintenance, read the
//! audit trail, log out; then a `read` key, which sees no action buttons.
//!
//! Each step leaves a screenshot in `target/test-artifacts/admin-ui/` (or
//! `$PM_TEST_ARTIFACTS/admin-ui/`), so a failed run can be looked at.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use pm_domain::api_key::Scope;
use pm_domain::webhook::WebhookKind;
use pm_storage::testing::TestDatabase;

use crate::kafka_mode::{count, Kafka};
use crate::process::{chargeback_json, eventually, free_port, order_json, Pmctl};

/// chromedriver on a free port, stopped when dropped.
struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first of `names` on `PATH`.
fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

impl Driver {
    async fn start() -> Driver {
        let chromedriver = on_path(&["chromedriver"]).expect(
            "chromedriver is not installed: run scripts/install-deps.sh (Debian's chromium-driver)",
        );
        let port = free_port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = Driver {
            child,
            port,
            _profile: tempfile::tempdir().expect("a profile directory"),
        };
        let status = format!("http://127.0.0.1:{port}/status");
        eventually("chromedriver answers", || async {
            reqwest::get(&status)
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        driver
    }

    async fn browser(&self) -> Client {
        let chromium = on_path(&["chromium", "chromium-browser", "google-chrome"])
            .expect("Chromium is not installed: run scripts/install-deps.sh");
        let profile = self._profile.path().display().to_string();
        let caps = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new",
                    // CI runs as root, where Chromium's sandbox cannot start.
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--window-size=1440,1000",
                    format!("--user-data-dir={profile}"),
                ],
            },
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!("an object")
        };
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a Chromium session")
    }
}

/// The browser on one `serve-api`, and where its screenshots go.
struct Ui {
    client: Client,
    base: String,
    shots: PathBuf,
    step: usize,
}

fn artifacts() -> PathBuf {
    let root = std::env::var_os("PM_TEST_ARTIFACTS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts"),
        PathBuf::from,
    );
    root.join("admin-ui")
}

impl Ui {
    async fn goto(&mut self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
    }

    /// Saves a screenshot of what the browser shows now.
    async fn shot(&mut self, name: &str) {
        self.step += 1;
        let png = self.client.screenshot().await.expect("a screenshot");
        std::fs::create_dir_all(&self.shots).expect("the artifacts directory");
        let file = self.shots.join(format!("{:02}-{name}.png", self.step));
        std::fs::write(&file, png).expect("write the screenshot");
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    async fn fill(&self, css: &str, text: &str) {
        let field = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"));
        field.clear().await.expect("clear");
        field.send_keys(text).await.expect("type");
    }

    async fn choose(&self, css: &str, value: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("choose {value} in {css}: {e}"));
    }

    async fn text(&self, css: &str) -> String {
        match self.client.find(Locator::Css(css)).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    async fn has(&self, css: &str) -> bool {
        !self
            .client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_default()
            .is_empty()
    }

    /// Waits until the element `css` shows `text` (htmx swaps pages in after the click).
    async fn wait_text(&mut self, css: &str, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let shown = self.text(css).await;
            if shown.contains(text) {
                return;
            }
            if Instant::now() > deadline {
                self.shot("failed").await;
                panic!("{css} never showed {text:?}; it shows {shown:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn path(&self) -> String {
        let url = self
            .client
            .current_url()
            .await
            .expect("the current address");
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    async fn wait_path(&mut self, prefix: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.path().await.starts_with(prefix) {
            if Instant::now() > deadline {
                self.shot("failed").await;
                panic!("never reached {prefix}; at {}", self.path().await);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn login(&mut self, key: &str) {
        self.goto("/admin/orders").await;
        self.wait_path("/admin/login").await;
        self.fill("#api_key", key).await;
        self.click("section.login button[type=submit]").await;
        self.wait_path("/admin/orders").await;
        self.wait_text("h1", "Orders").await;
    }

    async fn logout(&mut self) {
        self.click(".who button").await;
        self.wait_path("/admin/login").await;
    }
}

async fn reader_key(db: &TestDatabase) -> String {
    pm_storage::api_keys::create(
        &db.pool,
        "ui-reader",
        &[Scope::Read],
        None,
        &pm_storage::audit::Actor::new("cli:e2e", None),
        pm_domain::time::now(),
    )
    .await
    .expect("a read key")
    .1
}

#[tokio::test]
async fn an_operator_works_through_the_admin_ui_in_a_real_browser() {
    let db = TestDatabase::new().await;
    let kafka = Kafka::new().await;
    let provider = Pmctl::start(&["simulate-provider"], &[]).await;
    let provider_url = provider.url("");
    let api = kafka
        .api(
            &db,
            &db.url,
            &[
                "--provider-url",
                &provider_url,
                "--kafka-retry-attempts",
                "1",
                "--kafka-retry-backoff",
                "10ms",
            ],
        )
        .await;

    // Orders in every status, a dispute, and a chargeback whose order does not exist yet:
    // it is dead-lettered.
    let o = WebhookKind::Order;
    for (i, status) in [
        "created", "updated", "updated", "success", "failed", "success",
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("ui-{i}");
        kafka
            .publish(o, &order_json(&format!("e-{id}"), &id, status, 5))
            .await;
    }
    eventually("the orders applied", || async {
        count(&db, "SELECT count(*) FROM orders").await == 6
    })
    .await;
    // After its order (another topic: sent earlier, it could overtake it).
    kafka
        .publish(
            WebhookKind::Chargeback,
            &chargeback_json("cb-ui", "ui-3", "opened"),
        )
        .await;
    kafka
        .publish(
            WebhookKind::Chargeback,
            &chargeback_json("cb-ghost", "ui-ghost", "opened"),
        )
        .await;
    eventually("the dispute applied", || async {
        count(&db, "SELECT count(*) FROM disputes").await == 1
    })
    .await;
    eventually("the early chargeback dead-lettered", || async {
        kafka.dead_letters(&kafka.topics.disputes) == 1
    })
    .await;
    let reader = reader_key(&db).await;

    let driver = Driver::start().await;
    let shots = artifacts();
    let _ = std::fs::remove_dir_all(&shots);
    let mut ui = Ui {
        client: driver.browser().await,
        base: api.url(""),
        shots,
        step: 0,
    };

    // Logging in leads to the orders; htmx runs (the page's policy allows our scripts).
    ui.goto("/admin/orders").await;
    ui.wait_path("/admin/login").await;
    ui.shot("login").await;
    ui.login(&api.key).await;
    let htmx: serde_json::Value = ui
        .client
        .execute("return typeof htmx !== 'undefined' && htmx.version", vec![])
        .await
        .expect("run a script");
    assert!(
        htmx.as_str().is_some_and(|v| v.starts_with("2.")),
        "htmx: {htmx}"
    );
    ui.shot("orders").await;
    assert!(ui.text("#orders").await.contains("ui-5"));

    // Filtering swaps the list in place (a boosted form: the window survives).
    ui.client
        .execute("window.pmMarker = 'kept'", vec![])
        .await
        .expect("mark the window");
    ui.choose("select#status", "updated").await;
    ui.click("form.filters button[type=submit]").await;
    ui.wait_path("/admin/orders?status=updated").await;
    ui.wait_text("#orders", "ui-1").await;
    let list = ui.text("#orders").await;
    assert!(list.contains("ui-2") && !list.contains("ui-3"), "{list}");
    let marker = ui
        .client
        .execute("return window.pmMarker || null", vec![])
        .await
        .expect("read the mark");
    assert_eq!(
        marker, "kept",
        "htmx swapped the page instead of a full load"
    );
    ui.shot("orders-filtered").await;

    // An order: place a hold, see it in the timeline.
    ui.click("a[href='/admin/orders/ui-1']").await;
    ui.wait_text("h1", "Order ui-1").await;
    ui.choose("select#reason", "risk").await;
    ui.click("#place-hold").await;
    ui.wait_text(".flash", "The order is on hold (risk).").await;
    assert!(ui.text("ol.timeline").await.contains("hold_set"));
    assert!(ui.text("#hold-state").await.contains("risk"));
    assert!(ui.has("#clear-hold").await);
    ui.shot("order-held").await;

    // The dispute: store evidence, then submit it to the provider (the simulator).
    ui.goto("/admin/disputes").await;
    ui.wait_text("#disputes", "ui-3").await;
    ui.shot("disputes").await;
    ui.click("#disputes td.mono a").await;
    // Not just the h1: the list's own says "Disputes".
    ui.wait_path("/admin/disputes/").await;
    ui.wait_text("#evidence h2", "Evidence").await;
    ui.fill(
        "form.evidence input[name=field_name]",
        "product_description",
    )
    .await;
    ui.fill(
        "form.evidence textarea[name=field_value]",
        "Delivered 2026-01-03, signed for.",
    )
    .await;
    ui.fill("form.evidence input[name=file_id]", "file_ui_1")
        .await;
    ui.fill("form.evidence input[name=file_name]", "receipt.pdf")
        .await;
    ui.fill("form.evidence input[name=file_type]", "application/pdf")
        .await;
    ui.fill("form.evidence input[name=file_size]", "48213")
        .await;
    ui.click("#save-evidence").await;
    ui.wait_text(".flash", "Evidence stored: 1 field(s), 1 file(s).")
        .await;
    ui.click("#submit-evidence").await;
    ui.wait_text(".flash", "Submitted to the provider as representment")
        .await;
    ui.wait_text("#submitted", "as").await;
    ui.shot("dispute-submitted").await;
    let status: String = sqlx::query_scalar("SELECT status FROM disputes WHERE order_id = 'ui-3'")
        .fetch_one(&db.pool)
        .await
        .expect("the dispute");
    assert_eq!(status, "submitted");

    // The dead letter: its order arrives, then one click replays it home.
    kafka
        .publish(o, &order_json("e-ghost", "ui-ghost", "success", 5))
        .await;
    eventually("the late order applied", || async {
        count(
            &db,
            "SELECT count(*) FROM orders WHERE order_id = 'ui-ghost'",
        )
        .await
            == 1
    })
    .await;
    ui.goto("/admin/dead-letters?dlq=disputes").await;
    ui.wait_text("#dead-letters", "retryable").await;
    ui.shot("dead-letters").await;
    ui.click("button.replay-one").await;
    ui.wait_text(".flash", "Replayed 1").await;
    ui.shot("dead-letter-replayed").await;
    eventually("the replayed chargeback applied", || async {
        count(
            &db,
            "SELECT count(*) FROM disputes WHERE order_id = 'ui-ghost'",
        )
        .await
            == 1
    })
    .await;

    // Partitions, and maintenance on demand (this API's role owns the tables).
    ui.goto("/admin/partitions").await;
    ui.wait_text("main", "order_events").await;
    ui.click("#maintain").await;
    ui.wait_text(".flash", "Maintenance done").await;
    ui.shot("partitions").await;

    // The audit trail names the key behind each action.
    ui.goto("/admin/audit").await;
    ui.wait_text("#audit", "hold_set").await;
    let trail = ui.text("#audit").await;
    for action in [
        "admin_login",
        "evidence_saved",
        "representment_submitted",
        "partition_maintenance",
    ] {
        assert!(
            trail.contains(action),
            "{action} missing from the trail:\n{trail}"
        );
    }
    ui.shot("audit").await;

    // Logging out ends the session: the pages send us to the login again.
    ui.logout().await;
    ui.goto("/admin/orders").await;
    ui.wait_path("/admin/login").await;

    // A read key sees the pages, and no action anywhere.
    ui.login(&reader).await;
    assert!(!ui.text("header nav").await.contains("Audit"));
    ui.goto("/admin/orders/ui-2").await;
    ui.wait_text("h1", "Order ui-2").await;
    for button in ["#place-hold", "#clear-hold", "#capture", "#capture-form"] {
        assert!(!ui.has(button).await, "a read key sees {button}");
    }
    ui.shot("read-only-order").await;
    ui.goto("/admin/disputes").await;
    ui.click("#disputes td.mono a").await;
    // Not just the h1: the list's own says "Disputes".
    ui.wait_path("/admin/disputes/").await;
    ui.wait_text("#evidence h2", "Evidence").await;
    assert!(!ui.has("#evidence-form").await && !ui.has("#submit-evidence").await);
    ui.goto("/admin/dead-letters").await;
    ui.wait_text("h1", "Dead letters").await;
    assert!(!ui.has("button.replay-one").await && !ui.has("#replay-matching").await);
    ui.goto("/admin/partitions").await;
    ui.wait_text("h1", "Partitions").await;
    assert!(!ui.has("#maintain").await);
    ui.goto("/admin/audit").await;
    ui.wait_text(".flash", "lacks the `admin` scope").await;
    ui.logout().await;

    ui.client.close().await.expect("close the browser");
    drop(driver);
}
