//! What a scenario turns into: deliveries in send order, merchant actions, and the ledger.

use pm_domain::evidence::EvidenceFile;
use pm_domain::signature;
use pm_domain::{OrderId, ProviderEventId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::ledger::Ledger;

mod body_text;

/// How far in the past a [`Signing::Stale`] signature is dated: well beyond the 300 s
/// tolerance, so clock skew between emitter and server cannot make it pass.
pub const STALE_AGE_SECS: i64 = 3_600;

/// Everything a scenario produces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Webhook deliveries in send order.
    pub deliveries: Vec<Delivery>,
    /// Merchant actions, ordered by [`Action::after_delivery`] (then by when they must happen).
    pub actions: Vec<Action>,
    /// What the merchant's database must hold once everything was delivered and done.
    pub ledger: Ledger,
}

impl Plan {
    /// The actions to perform once delivery `delivery` was accepted, with their indices
    /// into [`Plan::actions`], in the order they must be performed.
    pub fn actions_after(&self, delivery: usize) -> impl Iterator<Item = (usize, &Action)> {
        let start = self
            .actions
            .partition_point(|a| a.after_delivery < delivery);
        self.actions
            .iter()
            .enumerate()
            .skip(start)
            .take_while(move |(_, a)| a.after_delivery == delivery)
    }

    /// The planned send time of the last delivery, in milliseconds from the start.
    pub fn duration_ms(&self) -> u64 {
        self.deliveries.last().map_or(0, |d| d.at_ms)
    }
}

/// One HTTP request the provider sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Intended send time, in milliseconds from the start of the run (non-decreasing).
    pub at_ms: u64,
    /// Where to send it.
    pub route: Route,
    /// The exact bytes to send as the body (`Content-Type: application/json`), always
    /// UTF-8 (serialized as a string in the plan's JSON).
    #[serde(with = "body_text")]
    pub body: Vec<u8>,
    /// How the emitter must sign the body; see [`Delivery::signature_header`].
    pub signing: Signing,
    /// The event id inside the body, when it has one (malformed bodies carry it as text).
    pub provider_event_id: Option<ProviderEventId>,
    /// The order the webhook is about.
    pub order_id: OrderId,
    /// Original, duplicate or fault.
    pub kind: DeliveryKind,
    /// The outcome the provider must eventually see.
    pub expect: Expect,
    /// Whether this delivery was moved later than generated (for reports).
    pub displaced: Option<Displacement>,
    /// A delivery (index into [`Plan::deliveries`]) that must have been acknowledged
    /// before this one is sent: a chargeback needs its order's `success`, a decision
    /// needs its `opened`. Sequential emitters get this for free from the send order.
    pub depends_on: Option<usize>,
    /// An action (index into [`Plan::actions`]) that must be complete before this
    /// delivery is sent: the provider decides a dispute only after the merchant's
    /// evidence and submission.
    pub wait_for_action: Option<usize>,
}

impl Delivery {
    /// The `Webhook-Signature` header value to send at wall-clock time `now_unix`, or
    /// `None` when the header must be left out. `secret` is the secret the server
    /// accepts; the engine never signs by itself because signatures expire.
    pub fn signature_header(&self, secret: &[u8], now_unix: i64) -> Option<String> {
        match self.signing {
            Signing::Valid => Some(signature::header_value(secret, now_unix, &self.body)),
            Signing::WrongSecret => {
                let wrong = [secret, b"-not-the-secret"].concat();
                Some(signature::header_value(&wrong, now_unix, &self.body))
            }
            Signing::Stale => Some(signature::header_value(
                secret,
                now_unix - STALE_AGE_SECS,
                &self.body,
            )),
            Signing::Missing => None,
        }
    }

    /// The body as text (bodies are always UTF-8).
    pub fn body_str(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap_or("")
    }
}

/// The two webhook endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// `POST /webhooks/payments/orders`
    Orders,
    /// `POST /webhooks/payments/chargebacks`
    Chargebacks,
}

impl Route {
    /// The request path.
    pub const fn path(self) -> &'static str {
        match self {
            Route::Orders => "/webhooks/payments/orders",
            Route::Chargebacks => "/webhooks/payments/chargebacks",
        }
    }
}

/// How a delivery is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signing {
    /// With the shared secret at the current time.
    Valid,
    /// With a secret the server does not know.
    WrongSecret,
    /// With the right secret but a timestamp [`STALE_AGE_SECS`] in the past.
    Stale,
    /// No `Webhook-Signature` header at all.
    Missing,
}

/// What a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryKind {
    /// The first delivery of a real webhook.
    Original,
    /// The same bytes again; `original` is the index of the first delivery.
    Duplicate {
        /// Index of the [`DeliveryKind::Original`] it repeats.
        original: usize,
    },
    /// An extra, bad delivery that must be rejected and never stored.
    Fault(FaultReason),
}

/// Why a fault delivery must be rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultReason {
    /// Not a JSON object (400).
    Malformed,
    /// Wrong secret or no signature (401).
    BadSignature,
    /// Signature timestamp outside the tolerance (401).
    StaleTimestamp,
    /// A JSON object with an invalid field (422).
    InvalidFields,
}

impl FaultReason {
    /// Every reason, in a fixed order.
    pub const ALL: [FaultReason; 4] = [
        FaultReason::Malformed,
        FaultReason::BadSignature,
        FaultReason::StaleTimestamp,
        FaultReason::InvalidFields,
    ];

    /// The HTTP status the server must answer.
    pub fn status(self) -> u16 {
        match self {
            FaultReason::Malformed => 400,
            FaultReason::BadSignature | FaultReason::StaleTimestamp => 401,
            FaultReason::InvalidFields => 422,
        }
    }

    /// The name used in scenario files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultReason::Malformed => "malformed",
            FaultReason::BadSignature => "bad_signature",
            FaultReason::StaleTimestamp => "stale_timestamp",
            FaultReason::InvalidFields => "invalid_fields",
        }
    }
}

/// The HTTP outcome class the provider must eventually see for a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// `202` (stored) or `200` (known duplicate): both are fine for any real webhook.
    Accepted,
    /// This status (`400`, `401` or `422`), and nothing stored.
    Rejected(u16),
}

impl Expect {
    /// Whether a final (non-retryable) response status meets the expectation.
    pub fn matches(self, status: u16) -> bool {
        match self {
            Expect::Accepted => status == 200 || status == 202,
            Expect::Rejected(s) => status == s,
        }
    }

    /// Statuses an emitter should retry rather than judge: `503` (downstream down), `429`,
    /// `5xx`, and `404` on a chargeback whose order the server has not stored yet (it
    /// stores nothing and asks for a later delivery).
    pub fn is_retryable(status: u16) -> bool {
        status == 404 || status == 429 || status >= 500
    }
}

/// How a real webhook was moved later than generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Displacement {
    /// Held back by about `by` deliveries (at most `faults.reorder_window`).
    Reordered {
        /// Planned distance, in deliveries.
        by: u32,
    },
    /// Held back by about `by_ms` of schedule (`faults.late_by_ms`).
    Late {
        /// Planned delay, in milliseconds.
        by_ms: u64,
    },
}

/// A merchant action the emitter performs through the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    /// Perform it once this delivery (index into [`Plan::deliveries`], the dispute's
    /// `opened`) was accepted, and after the earlier actions of the same order.
    pub after_delivery: usize,
    /// The disputed order; find the dispute with `GET /disputes?order_id=…`.
    pub order_id: OrderId,
    /// What to do.
    pub kind: ActionKind,
}

/// The merchant actions a scenario plans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// `POST /disputes/{dispute_id}/evidence` with `{fields, files}` (an upsert: safe to
    /// retry). Moves `open → under_review` and records `evidence_added`.
    AddEvidence {
        /// Free-form evidence fields.
        fields: BTreeMap<String, String>,
        /// Files already uploaded to the provider.
        files: Vec<EvidenceFile>,
    },
    /// `POST /disputes/{dispute_id}/submit`. Moves the dispute to `submitted` and records
    /// `evidence_submitted`. If a retry answers 409 and the dispute is `submitted`, the
    /// earlier attempt went through.
    Submit,
}

impl ActionKind {
    /// The JSON request body, or `None` for actions without one.
    pub fn request_body(&self) -> Option<Vec<u8>> {
        match self {
            ActionKind::AddEvidence { fields, files } => {
                serde_json::to_vec(&serde_json::json!({ "fields": fields, "files": files })).ok()
            }
            ActionKind::Submit => None,
        }
    }
}
