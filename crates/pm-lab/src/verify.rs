//! `pmctl verify`: compares a ledger (what a run must have produced) with what the API
//! serves. This is how a run proves "nothing lost, nothing doubled": every expected event
//! id stored exactly once, no rejected one stored, every order and dispute in its expected
//! final status, evidence where it was added and submitted.

use std::collections::{BTreeMap, HashMap};

use pm_api_types::{Dispute, Event, List, Order};
use pm_scenario::Ledger;
use serde::de::DeserializeOwned;

use pm_api_types::client::ApiAccess;

/// One cell of an expected-vs-actual status table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StatusRow {
    pub expected: String,
    pub actual: String,
    pub count: u64,
}

/// The comparison.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct VerifyReport {
    pub orders: Vec<StatusRow>,
    pub disputes: Vec<StatusRow>,
    /// Webhook event ids that must be stored, and how many of them are.
    pub events_expected: u64,
    pub events_stored: u64,
    /// Duplicate deliveries the run made (each must have been suppressed).
    pub duplicates_delivered: u64,
    /// Expected event ids stored more than once.
    pub doubled: Vec<String>,
    /// Expected event ids not stored.
    pub missing: Vec<String>,
    /// Event ids stored that must not be (rejected deliveries, or unknown ids on the
    /// scenario's orders).
    pub unexpected: Vec<String>,
    /// Disputes whose amount, currency, reason or evidence differ from the ledger.
    pub dispute_mismatches: Vec<String>,
}

impl VerifyReport {
    pub fn status_mismatches(&self) -> u64 {
        self.orders
            .iter()
            .chain(&self.disputes)
            .filter(|r| r.expected != r.actual)
            .map(|r| r.count)
            .sum()
    }

    /// Everything that is wrong, counted.
    pub fn mismatches(&self) -> u64 {
        self.status_mismatches()
            + (self.doubled.len()
                + self.missing.len()
                + self.unexpected.len()
                + self.dispute_mismatches.len()) as u64
    }

    pub fn ok(&self) -> bool {
        self.mismatches() == 0
    }
}

/// Why the API could not be read.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot reach the API: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("unexpected answer from {url}: {error}")]
    Decode { url: String, error: String },
}

/// Reads every page of a list route.
async fn all<T: DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
    query: &[(&str, &str)],
) -> Result<Vec<T>, VerifyError> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q: Vec<(&str, &str)> = query.to_vec();
        q.push(("limit", "1000"));
        if let Some(c) = &cursor {
            q.push(("cursor", c));
        }
        let r = http.get(url).query(&q).send().await?;
        let status = r.status().as_u16();
        let body = r.bytes().await?;
        if status != 200 {
            return Err(VerifyError::Status {
                url: url.to_owned(),
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        let page: List<T> = serde_json::from_slice(&body).map_err(|e| VerifyError::Decode {
            url: url.to_owned(),
            error: e.to_string(),
        })?;
        out.extend(page.items);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(out),
        }
    }
}

fn table(pairs: impl Iterator<Item = (String, String)>) -> Vec<StatusRow> {
    let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
    for p in pairs {
        *counts.entry(p).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|((expected, actual), count)| StatusRow {
            expected,
            actual,
            count,
        })
        .collect()
}

const WEBHOOK_DISPUTE_KINDS: [&str; 3] = ["webhook_opened", "webhook_updated", "provider_decision"];

/// Compares `ledger` with what the API serves (read with a key of scope `read`).
pub async fn verify(api: &ApiAccess, ledger: &Ledger) -> Result<VerifyReport, VerifyError> {
    let http = api.client_builder().build()?;
    let base = api.url();
    let orders: Vec<Order> = all(&http, &format!("{base}/orders"), &[]).await?;
    let disputes: Vec<Dispute> = all(&http, &format!("{base}/disputes"), &[]).await?;
    let order_events: Vec<Event> = all(
        &http,
        &format!("{base}/orders/events"),
        &[("kind", "webhook_received")],
    )
    .await?;
    let dispute_events: Vec<Event> = all(&http, &format!("{base}/disputes/events"), &[]).await?;

    let order_status: HashMap<&str, &str> = orders
        .iter()
        .map(|o| (o.order_id.as_str(), o.status.as_str()))
        .collect();
    let dispute_of: HashMap<&str, &Dispute> =
        disputes.iter().map(|d| (d.order_id.as_str(), d)).collect();
    let mut report = VerifyReport {
        duplicates_delivered: ledger.counts.duplicates,
        ..Default::default()
    };

    report.orders = table(ledger.orders.iter().map(|o| {
        let actual = order_status
            .get(o.order_id.as_str())
            .map_or("missing", |s| s);
        (o.final_status.as_str().to_owned(), actual.to_owned())
    }));
    report.disputes = table(ledger.disputes.iter().map(|d| {
        let actual = dispute_of
            .get(d.order_id.as_str())
            .map_or("missing", |r| r.status.as_str());
        (d.final_status.as_str().to_owned(), actual.to_owned())
    }));

    // Webhook event ids as stored, with the aggregate they belong to.
    let mut stored: HashMap<&str, u64> = HashMap::new();
    for e in order_events.iter().chain(
        dispute_events
            .iter()
            .filter(|e| WEBHOOK_DISPUTE_KINDS.contains(&e.kind.as_str())),
    ) {
        if let Some(id) = &e.provider_event_id {
            *stored.entry(id.as_str()).or_default() += 1;
        }
    }
    for id in ledger.stored_event_ids() {
        report.events_expected += 1;
        match stored.get(id.as_str()) {
            None => report.missing.push(id.to_string()),
            Some(1) => report.events_stored += 1,
            Some(_) => {
                report.events_stored += 1;
                report.doubled.push(id.to_string());
            }
        }
    }
    let expected: std::collections::HashSet<&str> =
        ledger.stored_event_ids().map(|i| i.as_str()).collect();
    for id in &ledger.rejected_event_ids {
        if stored.contains_key(id.as_str()) {
            report.unexpected.push(id.to_string());
        }
    }
    // Unknown webhook ids on the scenario's own orders.
    let ours: std::collections::HashSet<&str> =
        ledger.orders.iter().map(|o| o.order_id.as_str()).collect();
    let our_disputes: std::collections::HashSet<String> = ledger
        .disputes
        .iter()
        .filter_map(|d| {
            dispute_of
                .get(d.order_id.as_str())
                .map(|r| r.dispute_id.to_string())
        })
        .collect();
    for e in &order_events {
        let owned = ours.contains(e.aggregate.id());
        if let Some(id) = e
            .provider_event_id
            .as_deref()
            .filter(|id| owned && !expected.contains(id))
        {
            report.unexpected.push(id.to_owned());
        }
    }

    // Dispute details and evidence.
    let mut evidence: HashMap<&str, (bool, bool)> = HashMap::new();
    for e in &dispute_events {
        let d = e.aggregate.id();
        if !our_disputes.contains(d) {
            continue;
        }
        let flags = evidence.entry(d).or_default();
        match e.kind.as_str() {
            "evidence_added" => flags.0 = true,
            "evidence_submitted" => flags.1 = true,
            k if WEBHOOK_DISPUTE_KINDS.contains(&k) => {
                if let Some(id) = e
                    .provider_event_id
                    .as_deref()
                    .filter(|id| !expected.contains(id))
                {
                    report.unexpected.push(id.to_owned());
                }
            }
            _ => {}
        }
    }
    for d in &ledger.disputes {
        let Some(row) = dispute_of.get(d.order_id.as_str()) else {
            continue;
        };
        let amount = pm_domain::Amount::from_json(&row.amount).map(|a| a.value());
        let mut wrong = Vec::new();
        if amount.ok() != Some(d.amount.normalize()) {
            wrong.push(format!(
                "amount {} (expected {})",
                row.amount.get(),
                d.amount
            ));
        }
        if row.currency != d.currency.code() {
            wrong.push(format!(
                "currency {} (expected {})",
                row.currency, d.currency
            ));
        }
        if row.reason != d.reason {
            wrong.push(format!("reason {} (expected {})", row.reason, d.reason));
        }
        let (added, submitted) = evidence
            .get(row.dispute_id.to_string().as_str())
            .copied()
            .unwrap_or_default();
        if (added, submitted) != (d.evidence_added, d.evidence_submitted) {
            wrong.push(format!(
                "evidence added/submitted {added}/{submitted} (expected {}/{})",
                d.evidence_added, d.evidence_submitted
            ));
        }
        if !wrong.is_empty() {
            report.dispute_mismatches.push(format!(
                "dispute of order {}: {}",
                d.order_id,
                wrong.join(", ")
            ));
        }
    }
    report.unexpected.sort();
    report.unexpected.dedup();
    Ok(report)
}
