//! The analytics projection between real processes: `serve-api` (sync mode) takes a small
//! scenario — orders, captures the provider makes or declines, disputes won and lost, a late
//! `opened` — `pmctl outbox-relay` publishes its domain events to Apache Kafka, and
//! `pmctl project-analytics` projects them: SIGKILLed mid-run, restarted (with messages that
//! are no event, and events of a newer producer, waiting for it), stopped with SIGTERM, and
//! run again `--from-beginning`. The read models always equal what the orders, captures and
//! disputes tables say, and the inbox holds one row per distinct outbox event.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use pm_domain::{Amount, Currency, Money};
use pm_kafka::group::GroupProgress;
use pm_kafka::{KafkaConfig, Producer, Topics};
use pm_storage::analytics::{self, Days};
use pm_storage::testing::TestDatabase;
use serde_json::{json, Value};

use crate::kafka_mode::count;
use crate::process::{eventually, order_json, run, send_webhook, text, Pmctl, SECRET, USER};

/// A chargeback webhook of `order` at `2026-01-<day>T<hour>:00:00Z`.
fn chargeback(event: &str, order: &str, status: &str, reason: &str, day: u32, hour: u32) -> String {
    let mut body = json!({
        "provider_event_id": event, "order_id": order, "user_id": USER, "status": status,
        "reason": reason, "amount": "49.90", "currency": "USD",
        "occurred_at": format!("2026-01-{day:02}T{hour:02}:00:00Z"),
    });
    let resolution = match status {
        "closed" if event.ends_with("won") => Some("won"),
        "closed" => Some("lost"),
        _ => None,
    };
    if let Some(resolution) = resolution {
        body["meta"] = json!({ "resolution": resolution });
    }
    body.to_string()
}

async fn webhook(api: &Pmctl, route: &str, body: &str) {
    let r = send_webhook(api, route, body).await;
    assert!(r.status().is_success(), "{route} {body}: {}", r.status());
}

async fn order(api: &Pmctl, id: &str) {
    let route = "/webhooks/payments/orders";
    webhook(
        api,
        route,
        &order_json(&format!("e-{id}-c"), id, "created", 0),
    )
    .await;
    webhook(
        api,
        route,
        &order_json(&format!("e-{id}-u"), id, "updated", 10),
    )
    .await;
}

async fn capture(api: &Pmctl, id: &str, amount: &str, currency: &str) -> u16 {
    api.client()
        .post(api.url(&format!("/orders/{id}/capture")))
        .json(
            &json!({"amount": amount, "currency": currency, "idempotency_key": format!("k-{id}")}),
        )
        .send()
        .await
        .expect("capture")
        .status()
        .as_u16()
}

async fn dispute(api: &Pmctl, n: u32, reason: &str, outcome: &str, opened: u32, closed: u32) {
    let (id, route) = (format!("d-{n}"), "/webhooks/payments/chargebacks");
    order(api, &id).await;
    let opened = chargeback(&format!("cb-{n}-o"), &id, "opened", reason, opened, 1);
    webhook(api, route, &opened).await;
    let closed = chargeback(
        &format!("cb-{n}-{outcome}"),
        &id,
        "closed",
        reason,
        closed,
        7,
    );
    webhook(api, route, &closed).await;
}

async fn serve_api(db: &TestDatabase, provider: &Pmctl) -> Pmctl {
    let url = provider.url("");
    Pmctl::start(
        &["serve-api", "--provider-url", &url],
        &[("PM_DATABASE_URL", &db.url), ("PM_WEBHOOK_SECRETS", SECRET)],
    )
    .await
    .keyed(db)
    .await
}

async fn project_analytics(
    db: &TestDatabase,
    brokers: &str,
    prefix: &str,
    extra: &[&str],
) -> Pmctl {
    let mut args = vec![
        "project-analytics",
        "--kafka-brokers",
        brokers,
        "--kafka-topic-prefix",
        prefix,
        "--kafka-session-timeout",
        "6s",
        "--kafka-batch-size",
        "7",
    ];
    args.extend_from_slice(extra);
    let p = Pmctl::start(&args, &[("PM_DATABASE_URL", &db.url)]).await;
    p.wait_for("/health/ready", 200).await;
    p
}

/// `pm_analytics_events_total{outcome="<outcome>"}` of a running projection.
async fn events_counted(p: &Pmctl, outcome: &str) -> u64 {
    let text = reqwest::get(p.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let series = format!("pm_analytics_events_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |v| v.trim().parse::<f64>().expect("a number") as u64)
}

/// Waits until the projection's group has committed every message the topic holds.
async fn caught_up(config: &KafkaConfig, group: &str, topic: &str) {
    let progress = GroupProgress::new(config, group, topic).expect("group progress");
    let on_topic = pm_kafka::testing::read_all(config, topic).len() as u64;
    eventually(&format!("{group} at the end of {topic}"), || async {
        progress.committed().is_ok_and(|c| c == on_topic)
    })
    .await;
}

fn stop(p: &mut Pmctl) {
    let pid = p.child.id().to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = p.child.try_wait().expect("wait") {
            assert!(status.success(), "project-analytics stopped with {status}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "project-analytics did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A sum in minor units of the numeric text PostgreSQL gives for `sum(amount)`.
fn minor(sum: Option<&str>, currency: &str) -> i64 {
    let currency = Currency::parse(currency).expect("currency");
    sum.map_or(0, |s| {
        Money::new(Amount::parse(s).expect("amount"), currency)
            .expect("money")
            .minor_units()
    })
}

type CaptureTotals = BTreeMap<String, (i64, i64, i64, i64)>;
/// A currency's captures as stored: made, their sum, declined, their sum (numeric text).
type StoredCaptures = (String, i64, Option<String>, i64, Option<String>);

/// The read models equal what the tables they are derived from say.
async fn check_against_tables(db: &TestDatabase) {
    let pool = &db.pool;
    let orders = analytics::order_days(pool, Days::default())
        .await
        .expect("orders");
    let per_day: Vec<(chrono::NaiveDate, i64)> = sqlx::query_as(
        "SELECT (payload->>'occurred_at')::timestamptz::date, count(*) FROM outbox
         WHERE event_type = 'order_created' GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .expect("per day");
    assert_eq!(
        orders
            .iter()
            .map(|o| (o.day, o.orders_created))
            .collect::<Vec<_>>(),
        per_day
    );
    assert_eq!(
        orders.iter().map(|o| o.orders_created).sum::<i64>(),
        count(db, "SELECT count(*) FROM orders").await
    );

    let captures = analytics::capture_days(pool, Days::default())
        .await
        .expect("captures");
    let mut projected = CaptureTotals::new();
    for c in &captures {
        let t = projected.entry(c.currency.code().to_owned()).or_default();
        *t = (
            t.0 + c.captured,
            t.1 + c.captured_minor,
            t.2 + c.failed,
            t.3 + c.failed_minor,
        );
    }
    let rows: Vec<StoredCaptures> = sqlx::query_as(
        "SELECT currency::text,
                count(*) FILTER (WHERE status = 'success'),
                (sum(amount) FILTER (WHERE status = 'success'))::text,
                count(*) FILTER (WHERE status = 'failed'),
                (sum(amount) FILTER (WHERE status = 'failed'))::text
         FROM order_captures GROUP BY 1",
    )
    .fetch_all(pool)
    .await
    .expect("captures");
    let stored: CaptureTotals = rows
        .into_iter()
        .map(|(c, ok, ok_sum, failed, failed_sum)| {
            let totals = (
                ok,
                minor(ok_sum.as_deref(), &c),
                failed,
                minor(failed_sum.as_deref(), &c),
            );
            (c, totals)
        })
        .collect();
    assert_eq!(projected, stored);
    let captured_days: Vec<(chrono::NaiveDate, String, i64)> = sqlx::query_as(
        "SELECT captured_at::date, currency::text, count(*) FROM order_captures
         WHERE status = 'success' GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .fetch_all(pool)
    .await
    .expect("captured per day");
    assert_eq!(
        captures
            .iter()
            .filter(|c| c.captured > 0)
            .map(|c| (c.day, c.currency.code().to_owned(), c.captured))
            .collect::<Vec<_>>(),
        captured_days
    );

    let outcomes: Vec<(chrono::NaiveDate, String, i64, i64)> = sqlx::query_as(
        "SELECT day, reason, won, lost FROM analytics.dispute_outcomes ORDER BY 1, 2",
    )
    .fetch_all(pool)
    .await
    .expect("outcomes");
    let decided: Vec<(chrono::NaiveDate, String, i64, i64)> = sqlx::query_as(
        "SELECT closed_at::date, reason, count(*) FILTER (WHERE status = 'won'),
                count(*) FILTER (WHERE status = 'lost')
         FROM disputes WHERE status IN ('won', 'lost') GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .fetch_all(pool)
    .await
    .expect("decided");
    assert_eq!(outcomes, decided);
    let times = analytics::decision_times(pool, Days::default())
        .await
        .expect("times");
    let (n, mean, p50, p90): (i64, Option<f64>, Option<f64>, Option<f64>) = sqlx::query_as(
        "WITH t AS (SELECT extract(epoch FROM closed_at - opened_at)::float8 AS s FROM disputes
                    WHERE status IN ('won', 'lost'))
         SELECT count(*), avg(s), percentile_cont(0.5) WITHIN GROUP (ORDER BY s),
                percentile_cont(0.9) WITHIN GROUP (ORDER BY s) FROM t",
    )
    .fetch_one(pool)
    .await
    .expect("times");
    assert_eq!(times.count, n);
    for (got, want) in [
        (times.mean_seconds, mean),
        (times.p50_seconds, p50),
        (times.p90_seconds, p90),
    ] {
        let (got, want) = (got.expect("projected"), want.expect("stored"));
        assert!((got - want).abs() < 1e-6, "{times:?} vs {want}");
    }

    let inbox = analytics::inbox_counts(pool).await.expect("inbox");
    assert_eq!(
        inbox.projected,
        count(db, "SELECT count(DISTINCT event_id) FROM outbox").await,
        "one inbox row per distinct outbox event"
    );
}

/// What a newer producer might publish, and what is no event at all.
async fn publish_foreign(config: &KafkaConfig, topic: &str) {
    let producer = Producer::new(config, Duration::from_secs(30)).expect("producer");
    let newer = |id: &str, event_type: &str, version: i32| {
        json!({
            "event_id": id, "event_type": event_type, "schema_version": version,
            "aggregate_type": "order", "aggregate_id": "o-foreign", "sequence": 1,
            "occurred_at": "2026-01-05T00:00:00Z", "correlation_id": null, "trace_id": null,
            "data": {"order_id": "o-foreign"}
        })
        .to_string()
    };
    for payload in [
        newer("0190a5c4-0000-7000-8000-00000000f001", "order_refunded", 1),
        newer("0190a5c4-0000-7000-8000-00000000f002", "order_created", 2),
        "this is not an event".to_owned(),
    ] {
        producer
            .send(
                topic,
                b"o-foreign",
                payload.as_bytes(),
                pm_kafka::headers::build([]),
            )
            .await
            .expect("published");
    }
}

#[tokio::test]
async fn the_projection_counts_each_event_once_through_kills_restarts_and_replays() {
    let db = TestDatabase::new().await;
    let brokers = pm_kafka::testing::brokers();
    let prefix = pm_kafka::testing::unique("analytics");
    let config = KafkaConfig::new(brokers.clone(), "e2e-analytics");
    let topics = Topics::with_prefix(&prefix);
    let topic = topics.domain_events.clone();
    let group = format!("{prefix}pm-analytics");
    pm_kafka::topics::ensure_topics(
        &config,
        &topics,
        &pm_kafka::topics::TopicSettings::with_partitions(3),
    )
    .await
    .expect("topics");

    // Captures the provider makes, and captures it declines: an API for each.
    let makes = Pmctl::start(&["simulate-provider"], &[]).await;
    let declines = Pmctl::start(&["simulate-provider", "--decline-rate", "1"], &[]).await;
    let api = serve_api(&db, &makes).await;
    let api_declining = serve_api(&db, &declines).await;
    let _relay = Pmctl::background(
        &[
            "outbox-relay",
            "--kafka-brokers",
            &brokers,
            "--kafka-topic-prefix",
            &prefix,
            "--outbox-poll-interval",
            "50ms",
        ],
        &[("PM_DATABASE_URL", &db.url)],
    );

    // Wave 1: orders, captures in three currencies (two declined), two decided disputes.
    for (id, amount, currency) in [
        ("c-1", "10.00", "USD"),
        ("c-2", "20.50", "USD"),
        ("c-3", "1000", "JPY"),
        ("c-4", "5.25", "EUR"),
    ] {
        order(&api, id).await;
        assert_eq!(capture(&api, id, amount, currency).await, 200, "{id}");
    }
    for id in ["c-5", "c-6"] {
        order(&api, id).await;
        assert_ne!(
            capture(&api_declining, id, "7.00", "USD").await / 100,
            2,
            "{id}"
        );
    }
    dispute(&api, 1, "fraud", "won", 2, 3).await;
    dispute(&api, 2, "fraud", "lost", 2, 6).await;
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM order_captures WHERE status = 'failed'"
        )
        .await,
        2
    );

    let mut first = project_analytics(&db, &brokers, &prefix, &[]).await;
    let wave1 = count(&db, "SELECT count(*) FROM outbox").await;
    eventually("wave 1 projected", || async {
        count(&db, "SELECT count(*) FROM analytics.inbox").await == wave1
    })
    .await;
    check_against_tables(&db).await;

    // Wave 2, and a SIGKILL while it is being projected.
    for n in 3..6 {
        let reason = if n % 2 == 0 { "fraud" } else { "not_received" };
        dispute(
            &api,
            n,
            reason,
            if n == 4 { "lost" } else { "won" },
            3,
            3 + n,
        )
        .await;
    }
    eventually("wave 2 under way", || async {
        count(&db, "SELECT count(*) FROM analytics.inbox").await > wave1
    })
    .await;
    first.kill9();

    // While no projection runs: events of a newer producer, a message that is no event, and
    // wave 3 — more orders, and a late `opened` that moves a decided dispute's opening.
    publish_foreign(&config, &topic).await;
    for n in 0..4 {
        order(&api, &format!("late-{n}")).await;
    }
    let late = chargeback("cb-1-late", "d-1", "opened", "fraud", 1, 0);
    webhook(&api, "/webhooks/payments/chargebacks", &late).await;
    eventually("everything published", || async {
        count(
            &db,
            "SELECT count(*) FROM outbox WHERE published_at IS NULL",
        )
        .await
            == 0
    })
    .await;

    let mut second = project_analytics(&db, &brokers, &prefix, &[]).await;
    caught_up(&config, &group, &topic).await;
    check_against_tables(&db).await;
    let skipped: Vec<String> = sqlx::query_scalar(
        "SELECT event_type || ' v' || schema_version FROM analytics.inbox
         WHERE outcome = 'skipped' ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .expect("skipped");
    assert_eq!(skipped, ["order_created v2", "order_refunded v1"]);
    assert_eq!(events_counted(&second, "skipped").await, 2);
    assert_eq!(events_counted(&second, "malformed").await, 1);
    let dead: Vec<String> = pm_kafka::testing::read_all(&config, &Topics::dlq(&topic))
        .iter()
        .map(|m| {
            String::from_utf8_lossy(rdkafka::Message::payload(m).unwrap_or_default()).into_owned()
        })
        .collect();
    assert_eq!(
        dead,
        ["this is not an event"],
        "recorded, and the partition moved on"
    );
    let shown = run(&["analytics", "--json"], &[("PM_DATABASE_URL", &db.url)]);
    assert!(shown.status.success(), "{}", text(&shown));
    let shown: Value = serde_json::from_slice(&shown.stdout).expect("JSON");
    let inbox = analytics::inbox_counts(&db.pool).await.expect("inbox");
    assert_eq!(
        shown["inbox"],
        json!({"projected": inbox.projected, "skipped": 2})
    );
    assert_eq!(
        shown["disputes"]["time_to_decision"]["decided"],
        count(
            &db,
            "SELECT count(*) FROM disputes WHERE status IN ('won', 'lost')"
        )
        .await
    );
    stop(&mut second);

    // From offset zero: every event is found in the inbox; nothing changes.
    let before = (
        analytics::order_days(&db.pool, Days::default())
            .await
            .expect("orders"),
        analytics::capture_days(&db.pool, Days::default())
            .await
            .expect("captures"),
        analytics::dispute_outcomes(&db.pool, Days::default())
            .await
            .expect("outcomes"),
        analytics::decision_times(&db.pool, Days::default())
            .await
            .expect("times"),
        analytics::inbox_counts(&db.pool).await.expect("inbox"),
    );
    let third = project_analytics(&db, &brokers, &prefix, &["--from-beginning"]).await;
    caught_up(&config, &group, &topic).await;
    let on_topic = pm_kafka::testing::read_all(&config, &topic).len() as u64;
    assert_eq!(events_counted(&third, "duplicate").await, on_topic - 1);
    assert_eq!(events_counted(&third, "projected").await, 0);
    assert_eq!(events_counted(&third, "malformed").await, 1);
    let after = (
        analytics::order_days(&db.pool, Days::default())
            .await
            .expect("orders"),
        analytics::capture_days(&db.pool, Days::default())
            .await
            .expect("captures"),
        analytics::dispute_outcomes(&db.pool, Days::default())
            .await
            .expect("outcomes"),
        analytics::decision_times(&db.pool, Days::default())
            .await
            .expect("times"),
        analytics::inbox_counts(&db.pool).await.expect("inbox"),
    );
    assert_eq!(after, before);
    check_against_tables(&db).await;
}
