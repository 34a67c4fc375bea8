//! Every real body parses; every fault is refused for the reason it claims.

use pm_domain::signature::{SignatureError, Verifier, DEFAULT_TOLERANCE_SECS};
use pm_domain::webhook::{ChargebackWebhook, OrderWebhook};
use pm_domain::InputError;
use pm_scenario::{DeliveryKind, Expect, FaultReason, Plan, Route, Signing};

use crate::support::scenario_file;

fn parse(route: Route, body: &[u8]) -> Result<String, InputError> {
    match route {
        Route::Orders => OrderWebhook::parse(body).map(|w| w.provider_event_id.to_string()),
        Route::Chargebacks => {
            ChargebackWebhook::parse(body).map(|w| w.provider_event_id.to_string())
        }
    }
}

pub fn assert_bodies(plan: &Plan) {
    for (i, d) in plan.deliveries.iter().enumerate() {
        assert!(
            std::str::from_utf8(&d.body).is_ok(),
            "delivery {i} is UTF-8"
        );
        let parsed = parse(d.route, &d.body);
        match d.kind {
            DeliveryKind::Original | DeliveryKind::Duplicate { .. } => {
                let id = parsed.unwrap_or_else(|e| panic!("delivery {i}: {e}: {}", d.body_str()));
                assert_eq!(
                    Some(id),
                    d.provider_event_id.as_ref().map(ToString::to_string)
                );
                assert_eq!(d.expect, Expect::Accepted);
                assert_eq!(d.signing, Signing::Valid);
            }
            DeliveryKind::Fault(reason) => {
                assert_eq!(d.expect, Expect::Rejected(reason.status()), "delivery {i}");
                match reason {
                    FaultReason::Malformed => assert!(
                        matches!(parsed, Err(InputError::Malformed(_))),
                        "delivery {i} must be malformed: {}",
                        d.body_str()
                    ),
                    FaultReason::InvalidFields => assert!(
                        matches!(parsed, Err(InputError::Invalid(_))),
                        "delivery {i} must have invalid fields: {}",
                        d.body_str()
                    ),
                    FaultReason::BadSignature | FaultReason::StaleTimestamp => {
                        // A valid webhook: only the signature check stands in its way.
                        assert!(parsed.is_ok(), "delivery {i}: {parsed:?}");
                        assert_ne!(d.signing, Signing::Valid);
                    }
                }
                if reason != FaultReason::Malformed {
                    assert_eq!(
                        d.signing == Signing::Valid,
                        reason == FaultReason::InvalidFields
                    );
                }
            }
        }
    }
}

#[test]
fn quickstart_and_chaos_bodies_are_what_they_claim() {
    for file in ["quickstart.toml", "chaos.toml", "disputes-heavy.toml"] {
        assert_bodies(&scenario_file(file).generate());
    }
}

#[test]
fn amounts_are_written_with_the_currency_minor_units() {
    let plan = scenario_file("disputes-heavy.toml").generate();
    let mut seen_jpy = false;
    for d in plan
        .deliveries
        .iter()
        .filter(|d| d.kind == DeliveryKind::Original && d.route == Route::Chargebacks)
    {
        let w = ChargebackWebhook::parse(&d.body).expect("parses");
        let text = w.money.amount_text();
        assert!(
            d.body_str().contains(&format!("\"amount\":{text},")),
            "{}",
            d.body_str()
        );
        seen_jpy |= w.money.currency().code() == "JPY";
    }
    assert!(seen_jpy, "the scenario draws JPY too");
    for dispute in &plan.ledger.disputes {
        assert_eq!(
            dispute.amount.scale(),
            dispute.currency.minor_units(),
            "{}",
            dispute.amount
        );
    }
}

#[test]
fn signature_headers_follow_the_signing_mode() {
    let plan = scenario_file("quickstart.toml").generate();
    let secret = b"whsec_test";
    let verifier = Verifier::new(vec![secret.to_vec()], DEFAULT_TOLERANCE_SECS);
    let now = 1_800_000_000;
    let mut modes = std::collections::BTreeSet::new();
    for d in &plan.deliveries {
        let header = d.signature_header(secret, now);
        let result = verifier.verify(header.as_deref(), &d.body, now);
        match d.signing {
            Signing::Valid => assert_eq!(result, Ok(())),
            Signing::WrongSecret => assert_eq!(result, Err(SignatureError::Mismatch)),
            Signing::Stale => assert!(matches!(result, Err(SignatureError::Stale { .. }))),
            Signing::Missing => assert_eq!(result, Err(SignatureError::Missing)),
        }
        modes.insert(format!("{:?}", d.signing));
    }
    assert_eq!(
        modes.len(),
        4,
        "quickstart uses every signing mode: {modes:?}"
    );
}
