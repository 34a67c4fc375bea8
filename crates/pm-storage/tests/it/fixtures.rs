//! Builders for webhooks used across the tests.

use chrono::{DateTime, Duration, TimeZone, Utc};
use pm_domain::dispute::{ChargebackStatus, Resolution};
use pm_domain::order::OrderStatus;
use pm_domain::webhook::{ChargebackWebhook, Meta, OrderWebhook};
use pm_domain::{Amount, Currency, Money, OrderId, ProviderEventId, UserId};

pub const USER: &str = "0b6f5c3e-8d1a-4c7e-9a51-2f0e1b2c3d4e";

pub fn t(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("valid")
        + Duration::seconds(secs)
}

pub fn order(event: &str, order: &str, status: OrderStatus, updated: i64) -> OrderWebhook {
    OrderWebhook {
        provider_event_id: ProviderEventId::parse(event).expect("id"),
        order_id: OrderId::parse(order).expect("id"),
        user_id: UserId::parse(USER).expect("uuid"),
        status,
        created_at: t(0),
        updated_at: t(updated),
        meta: Meta::new(),
    }
}

pub fn chargeback(
    event: &str,
    order: &str,
    status: ChargebackStatus,
    occurred: i64,
) -> ChargebackWebhook {
    ChargebackWebhook {
        provider_event_id: ProviderEventId::parse(event).expect("id"),
        order_id: OrderId::parse(order).expect("id"),
        user_id: UserId::parse(USER).expect("uuid"),
        status,
        reason: "fraud".to_owned(),
        money: Money::new(
            Amount::parse("100.50").expect("amount"),
            Currency::parse("USD").expect("usd"),
        )
        .expect("money"),
        occurred_at: t(occurred),
        evidence_due_at: (status == ChargebackStatus::Updated).then(|| t(1000 + occurred)),
        meta: Meta::new(),
        resolution: Resolution::Closed,
    }
}

pub fn closed(
    event: &str,
    order: &str,
    resolution: Resolution,
    occurred: i64,
) -> ChargebackWebhook {
    ChargebackWebhook {
        resolution,
        ..chargeback(event, order, ChargebackStatus::Closed, occurred)
    }
}

pub async fn count(pool: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .expect("count query")
}
