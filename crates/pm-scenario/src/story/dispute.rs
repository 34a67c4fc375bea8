//! The chargeback part of a story: `opened` after the order succeeded, maybe an `updated`
//! with a later due date, maybe a decision (`closed`, with or without
//! `meta.resolution`), and the merchant's evidence in between.

use std::collections::BTreeMap;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use pm_domain::dispute::{ChargebackStatus, DisputeStatus, Resolution};
use pm_domain::evidence::EvidenceFile;

use super::{Event, Fact, Story, StoryMaker};
use crate::body::{map_text, time_text, JsonFields};
use crate::plan::Route;

/// Days between `opened` and its evidence due date; an `updated` adds a week.
const DUE_DAYS: i64 = 14;
const EXTENSION_DAYS: i64 = 7;

/// The dispute of a story.
#[derive(Debug, Clone)]
pub(crate) struct DisputeStory {
    pub(crate) reason: String,
    /// `None`: the provider does not decide during the run.
    pub(crate) outcome: Option<Resolution>,
    pub(crate) evidence: Option<EvidenceStory>,
    /// Indices into the story's events.
    pub(crate) opened: usize,
    pub(crate) updated: Option<usize>,
    pub(crate) decision: Option<usize>,
}

/// What the merchant sends as evidence, and whether it also submits it.
#[derive(Debug, Clone)]
pub(crate) struct EvidenceStory {
    pub(crate) fields: BTreeMap<String, String>,
    pub(crate) files: Vec<EvidenceFile>,
    pub(crate) submit: bool,
}

impl DisputeStory {
    /// The status the dispute ends in, by the domain's rules: a decision is final;
    /// otherwise the merchant's last action decides.
    pub(crate) fn final_status(&self) -> DisputeStatus {
        match (self.outcome, &self.evidence) {
            (Some(r), _) => r.status(),
            (None, Some(e)) if e.submit => DisputeStatus::Submitted,
            (None, Some(_)) => DisputeStatus::UnderReview,
            (None, None) => DisputeStatus::Open,
        }
    }
}

/// Adds a dispute to a successful order whose last webhook is at `tick`.
pub(crate) fn add(maker: &mut StoryMaker<'_>, story: &mut Story, tick: u64) {
    let config = maker.scenario.config().disputes.clone();
    let spread = u64::from(maker.scenario.config().orders.spread);
    let success = story.events.len().saturating_sub(1);

    let reasons: Vec<(&String, u64)> = config
        .reasons
        .iter()
        .map(|(r, w)| (r, u64::from(*w)))
        .collect();
    let weights: Vec<u64> = reasons.iter().map(|(_, w)| *w).collect();
    let reason = reasons
        .get(maker.dice.weighted(&weights))
        .map_or_else(|| "other".to_owned(), |(r, _)| (*r).clone());
    let outcome = [
        Some(Resolution::Won),
        Some(Resolution::Lost),
        Some(Resolution::Closed),
        None,
    ][maker.dice.weighted(&config.outcomes.weights())];
    let has_update = maker.dice.chance(config.updated_share);
    let evidence = maker
        .dice
        .chance(config.evidence_share)
        .then(|| evidence(maker, story, &reason, config.submit_share));

    let tick = maker.after(tick, 1, 4 * spread);
    let opened_at = maker.time_at(tick);
    let mut due = due_date(opened_at, DUE_DAYS);
    let opened = push(
        maker,
        story,
        tick,
        ChargebackStatus::Opened,
        opened_at,
        due,
        &reason,
        None,
    );
    story.events[opened].depends_on = Some(success);

    let mut last = tick;
    let mut updated = None;
    if has_update {
        last = maker.after(last, 1, spread);
        let at = maker.time_at(last);
        due += TimeDelta::days(EXTENSION_DAYS);
        let i = push(
            maker,
            story,
            last,
            ChargebackStatus::Updated,
            at,
            due,
            &reason,
            None,
        );
        story.events[i].depends_on = Some(success);
        updated = Some(i);
    }

    let mut decision = None;
    if let Some(resolution) = outcome {
        // Leave room for the merchant's actions before the provider decides, so an
        // emitter that holds the decision until they are done rarely has to wait.
        last = if evidence.is_some() {
            maker.after(last, 3 * spread, 6 * spread)
        } else {
            maker.after(last, spread, 2 * spread)
        };
        let at = maker.time_at(last);
        let meta = resolution_meta(maker, resolution);
        let i = push(
            maker,
            story,
            last,
            ChargebackStatus::Closed,
            at,
            due,
            &reason,
            Some(meta),
        );
        let event = &mut story.events[i];
        event.depends_on = Some(if evidence.is_some() { opened } else { success });
        event.waits_for_actions = evidence.is_some();
        decision = Some(i);
    }

    story.dispute = Some(DisputeStory {
        reason,
        outcome,
        evidence,
        opened,
        updated,
        decision,
    });
}

/// A due date on a whole second, `days` after `at`.
fn due_date(at: DateTime<Utc>, days: i64) -> DateTime<Utc> {
    let t = at + TimeDelta::days(days);
    t.duration_trunc(TimeDelta::seconds(1)).unwrap_or(t)
}

/// `meta` of a decision. The resolution's case varies: the rule is case-insensitive.
fn resolution_meta(maker: &mut StoryMaker<'_>, resolution: Resolution) -> String {
    let word = match resolution {
        Resolution::Won => "won",
        Resolution::Lost => "lost",
        Resolution::Closed => return map_text(&[]),
    };
    let text = match maker.dice.below(10) {
        0 => word.to_ascii_uppercase(),
        1 => {
            let mut w = word.to_owned();
            w[..1].make_ascii_uppercase();
            w
        }
        _ => word.to_owned(),
    };
    map_text(&[("resolution", &text)])
}

#[allow(clippy::too_many_arguments)] // one webhook's worth of fields
fn push(
    maker: &mut StoryMaker<'_>,
    story: &mut Story,
    tick: u64,
    status: ChargebackStatus,
    occurred_at: DateTime<Utc>,
    evidence_due_at: DateTime<Utc>,
    reason: &str,
    meta: Option<String>,
) -> usize {
    let j = story.events.len();
    let event_id = maker.ids().event(story.index, j);
    let mut fields = JsonFields::new()
        .str("provider_event_id", event_id.as_str())
        .str("order_id", story.order_id.as_str())
        .str("user_id", &story.user_id.to_string())
        .str("status", status.as_str())
        .str("reason", reason)
        .raw("amount", story.amount_text())
        .str("currency", story.currency.code())
        .raw("occurred_at", time_text(&occurred_at))
        .raw("evidence_due_at", time_text(&evidence_due_at));
    if let Some(meta) = meta {
        fields.set_raw("meta", meta);
    }
    story.events.push(Event {
        tick,
        event_id,
        route: Route::Chargebacks,
        fields,
        fact: Fact::Chargeback {
            status,
            occurred_at,
            evidence_due_at,
        },
        depends_on: None,
        waits_for_actions: false,
    });
    j
}

/// Evidence that fits the reason, with one or two files.
fn evidence(
    maker: &mut StoryMaker<'_>,
    story: &Story,
    reason: &str,
    submit_share: f64,
) -> EvidenceStory {
    let d = &mut maker.dice;
    let mut fields = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        fields.insert(k.to_owned(), v);
    };
    match reason {
        "fraud" => {
            put("customer_ip", format!("203.0.113.{}", d.below(255)));
            put("avs_check", "match".to_owned());
            put(
                "explanation",
                "The customer authenticated with 3-D Secure.".to_owned(),
            );
        }
        "product_not_received" => {
            let carrier = *d.pick(&["UPS", "DHL", "FedEx"]).unwrap_or(&"UPS");
            put("carrier", carrier.to_owned());
            put("tracking_number", format!("1Z{:012X}", d.below(1 << 48)));
        }
        "duplicate" => {
            put(
                "explanation",
                "Two separate purchases, not a duplicate charge.".to_owned(),
            );
        }
        _ => put(
            "explanation",
            "The service was delivered as described.".to_owned(),
        ),
    }
    put("order_id", story.order_id.to_string());
    let files = (0..d.between(1, 2) as usize)
        .map(|n| {
            let (name, content_type) = [
                ("receipt.pdf", "application/pdf"),
                ("delivery-photo.png", "image/png"),
            ][n % 2];
            EvidenceFile {
                file_id: maker.ids.file(story.index, n),
                name: name.to_owned(),
                content_type: content_type.to_owned(),
                size: maker.dice.between(10_000, 2_000_000),
            }
        })
        .collect();
    let submit = maker.dice.chance(submit_share);
    EvidenceStory {
        fields,
        files,
        submit,
    }
}
