//! `pmctl send`: one signed webhook from the command line, as a provider would send it.
//!
//! The body is assembled from the flags and parsed with the same domain parser the
//! services use before anything is sent: a value the services would refuse is refused
//! here, field by field, with their messages (exit code 2). What is sent is the parsed
//! webhook's wire form, so amounts keep their exact digits.

use std::time::Duration;

use anyhow::Context;
use pm_domain::webhook::{ChargebackWebhook, OrderWebhook};
use serde_json::{json, Map, Value};

use crate::args::WebhookSecretArgs;

/// Send one signed webhook (to ingest, or to the API in sync mode) and print the answer.
/// Exit code 0 on a 2xx answer, 3 on any other answer, 1 when nothing answered.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    webhook: Webhook,
}

#[derive(Debug, clap::Subcommand)]
enum Webhook {
    /// An order webhook (`POST /webhooks/payments/orders`).
    Order(OrderArgs),
    /// A chargeback webhook (`POST /webhooks/payments/chargebacks`).
    Chargeback(ChargebackArgs),
}

/// Where and how to send, and the fields every webhook has.
#[derive(Debug, clap::Args)]
struct Common {
    /// Where the webhook goes: ingest (port 3001) or the API in sync mode (port 3000).
    #[arg(long, env = "PM_SIM_TARGET", default_value = "http://127.0.0.1:3001")]
    target: String,
    #[command(flatten)]
    secrets: WebhookSecretArgs,
    /// Print the request (body and signature header) instead of sending it.
    #[arg(long)]
    dry_run: bool,
    /// The provider's event id (default: a new one; send the same id twice to see
    /// deduplication).
    #[arg(long)]
    event_id: Option<String>,
    /// The customer (a UUID; default: a new one).
    #[arg(long)]
    user_id: Option<String>,
    /// A `meta` entry, `key=value`; repeatable.
    #[arg(long = "meta", value_parser = key_value)]
    meta: Vec<(String, String)>,
}

#[derive(Debug, clap::Args)]
struct OrderArgs {
    /// created, updated, success or failed.
    #[arg(long, default_value = "created")]
    status: String,
    /// The order (default: a new id).
    #[arg(long)]
    order_id: Option<String>,
    /// When the order was created (RFC 3339; default: now).
    #[arg(long)]
    created_at: Option<String>,
    /// When this status was reached (RFC 3339; default: now).
    #[arg(long)]
    updated_at: Option<String>,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, clap::Args)]
struct ChargebackArgs {
    /// opened, updated or closed.
    #[arg(long, default_value = "opened")]
    status: String,
    /// The order disputed (it must be known to the receiver, or the answer is 404).
    #[arg(long)]
    order_id: String,
    /// Why the customer disputes.
    #[arg(long, default_value = "fraud")]
    reason: String,
    /// The disputed amount, in the currency's units (`10.00`).
    #[arg(long, default_value = "10.00", allow_negative_numbers = true)]
    amount: String,
    /// ISO 4217 code.
    #[arg(long, default_value = "USD")]
    currency: String,
    /// When it happened (RFC 3339; default: now).
    #[arg(long)]
    occurred_at: Option<String>,
    /// Evidence deadline (RFC 3339; default: 7 days after `occurred_at`).
    #[arg(long)]
    evidence_due_at: Option<String>,
    /// With `--status closed`: who won (`meta.resolution`); without it, a plain close.
    #[arg(long, value_parser = ["won", "lost"])]
    resolution: Option<String>,
    #[command(flatten)]
    common: Common,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

/// The route and the exact body of the webhook the flags describe.
fn build(
    webhook: &Webhook,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<(&'static str, Vec<u8>)> {
    let stamp = pm_domain::time::format(&now);
    let fill = |mut body: Map<String, Value>, common: &Common| {
        let event_id = common
            .event_id
            .clone()
            .unwrap_or_else(|| format!("evt-{}", uuid::Uuid::new_v4().simple()));
        let user_id = common
            .user_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        body.insert("provider_event_id".into(), json!(event_id));
        body.insert("user_id".into(), json!(user_id));
        body
    };
    let meta = |common: &Common, extra: Option<(&str, &str)>| {
        let mut meta: Map<String, Value> = common
            .meta
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        if let Some((k, v)) = extra {
            meta.insert(k.to_owned(), json!(v));
        }
        Value::Object(meta)
    };
    match webhook {
        Webhook::Order(o) => {
            let mut body = fill(Map::new(), &o.common);
            let order_id = o.order_id.clone().unwrap_or_else(|| {
                format!("ord-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
            });
            body.insert("order_id".into(), json!(order_id));
            body.insert("status".into(), json!(o.status));
            body.insert(
                "created_at".into(),
                json!(o.created_at.as_deref().unwrap_or(&stamp)),
            );
            body.insert(
                "updated_at".into(),
                json!(o.updated_at.as_deref().unwrap_or(&stamp)),
            );
            body.insert("meta".into(), meta(&o.common, None));
            let text = serde_json::to_vec(&Value::Object(body))?;
            let parsed = OrderWebhook::parse(&text).map_err(invalid)?;
            Ok(("/webhooks/payments/orders", serde_json::to_vec(&parsed)?))
        }
        Webhook::Chargeback(c) => {
            let mut body = fill(Map::new(), &c.common);
            let occurred_at = match &c.occurred_at {
                Some(t) => pm_domain::time::parse_rfc3339(t)
                    .map_err(|e| invalid(format!("occurred_at: {e}")))?,
                None => now,
            };
            let due = c.evidence_due_at.clone().unwrap_or_else(|| {
                pm_domain::time::format(&(occurred_at + chrono::Duration::days(7)))
            });
            body.insert("order_id".into(), json!(c.order_id));
            body.insert("status".into(), json!(c.status));
            body.insert("reason".into(), json!(c.reason));
            // A string: the parser reads its digits exactly, and the wire form sent is a number.
            body.insert("amount".into(), json!(c.amount));
            body.insert("currency".into(), json!(c.currency));
            body.insert(
                "occurred_at".into(),
                json!(pm_domain::time::format(&occurred_at)),
            );
            body.insert("evidence_due_at".into(), json!(due));
            let resolution = c.resolution.as_deref().map(|r| ("resolution", r));
            body.insert("meta".into(), meta(&c.common, resolution));
            let text = serde_json::to_vec(&Value::Object(body))?;
            let parsed = ChargebackWebhook::parse(&text).map_err(invalid)?;
            Ok((
                "/webhooks/payments/chargebacks",
                serde_json::to_vec(&parsed)?,
            ))
        }
    }
}

fn invalid(e: impl std::fmt::Display) -> anyhow::Error {
    crate::exit::Usage(format!("the webhook would be refused: {e}")).into()
}

impl Webhook {
    fn common(&self) -> &Common {
        match self {
            Webhook::Order(o) => &o.common,
            Webhook::Chargeback(c) => &c.common,
        }
    }
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let now = pm_domain::time::now();
    let (route, body) = build(&args.webhook, now)?;
    let args = args.webhook.common();
    let secret = args.secrets.signing_secret()?;
    let signature = pm_domain::signature::header_value(&secret, now.timestamp(), &body);
    let url = format!("{}{route}", args.target.trim_end_matches('/'));
    if args.dry_run {
        println!("POST {url}");
        println!("Content-Type: application/json");
        println!("{}: {signature}", pm_domain::signature::HEADER);
        println!();
        println!("{}", String::from_utf8_lossy(&body));
        return Ok(());
    }
    let response = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?
        .post(&url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(pm_domain::signature::HEADER, signature)
        .body(body.clone())
        .send()
        .await
        .with_context(|| format!("cannot send to {url}"))?;
    let status = response.status();
    let answer = response.text().await.unwrap_or_default();
    println!("sent {}", String::from_utf8_lossy(&body));
    println!("HTTP {status}");
    if !answer.is_empty() {
        println!("{answer}");
    }
    crate::exit::check(status.is_success(), || format!("{url} answered {status}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> chrono::DateTime<chrono::Utc> {
        pm_domain::time::parse_rfc3339("2026-03-01T12:00:00Z").expect("time")
    }

    fn parse(args: &[&str]) -> Webhook {
        #[derive(Debug, clap::Parser)]
        struct Cli {
            #[command(subcommand)]
            webhook: Webhook,
        }
        <Cli as clap::Parser>::try_parse_from([&["send"], args].concat())
            .expect("flags")
            .webhook
    }

    #[test]
    fn an_order_gets_fresh_ids_and_the_time_of_sending() {
        let (route, body) = build(&parse(&["order", "--status", "success"]), now()).expect("valid");
        assert_eq!(route, "/webhooks/payments/orders");
        let w = OrderWebhook::parse(&body).expect("parses");
        assert_eq!(w.status.as_str(), "success");
        assert_eq!(w.created_at, now());
        assert!(w.order_id.as_str().starts_with("ord-"), "{:?}", w.order_id);
    }

    #[test]
    fn a_chargeback_keeps_its_amount_exactly_and_carries_its_resolution() {
        let webhook = parse(&[
            "chargeback",
            "--order-id",
            "ord-1",
            "--status",
            "closed",
            "--amount",
            "100.50",
            "--currency",
            "EUR",
            "--resolution",
            "won",
            "--meta",
            "channel=cli",
        ]);
        let (route, body) = build(&webhook, now()).expect("valid");
        assert_eq!(route, "/webhooks/payments/chargebacks");
        let text = String::from_utf8(body.clone()).expect("utf-8");
        assert!(text.contains(r#""amount":100.50"#), "{text}");
        let w = ChargebackWebhook::parse(&body).expect("parses");
        assert_eq!(w.resolution, pm_domain::dispute::Resolution::Won);
        assert_eq!(w.meta.get("channel").map(String::as_str), Some("cli"));
        assert_eq!(w.evidence_due_at, Some(now() + chrono::Duration::days(7)));
    }

    #[test]
    fn values_the_services_would_refuse_are_refused_before_sending() {
        for args in [
            &["order", "--status", "shipped"][..],
            &["order", "--user-id", "not-a-uuid"],
            &["chargeback", "--order-id", "o", "--amount", "-3"],
            &[
                "chargeback",
                "--order-id",
                "o",
                "--occurred-at",
                "yesterday",
            ],
            &["chargeback", "--order-id", "o", "--currency", "XXXX"],
        ] {
            let e = build(&parse(args), now()).expect_err("refused");
            assert!(
                e.downcast_ref::<crate::exit::Usage>().is_some(),
                "{args:?}: {e}"
            );
            assert!(e.to_string().contains("would be refused"), "{e}");
        }
    }
}
