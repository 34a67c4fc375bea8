use super::*;
use proptest::prelude::*;
use serde_json::json;

const USER: &str = "0b6f5c3e-8d1a-4c7e-9a51-2f0e1b2c3d4e";

fn order_json() -> serde_json::Value {
    json!({
        "provider_event_id": "evt_1",
        "order_id": "ord_1",
        "user_id": USER,
        "status": "created",
        "created_at": "2026-01-01T10:00:00Z",
        "updated_at": "2026-01-01T10:00:00Z",
        "meta": {"channel": "web"}
    })
}

fn chargeback_body(amount: &str, extra: &str) -> String {
    format!(
        r#"{{"provider_event_id":"cb_1","order_id":"ord_1","user_id":"{USER}","status":"closed",
            "reason":"fraud","amount":{amount},"currency":"USD","occurred_at":"2026-01-02T00:00:00Z",
            "meta":{{"resolution":"Won"}}{extra}}}"#
    )
}

fn invalid_fields(err: InputError) -> Vec<String> {
    match err {
        InputError::Invalid(e) => e.errors().iter().map(|e| e.field.clone()).collect(),
        other => panic!("expected field errors, got {other:?}"),
    }
}

#[test]
fn a_valid_order_webhook_parses() {
    let w = OrderWebhook::parse(order_json().to_string().as_bytes()).expect("valid");
    assert_eq!(w.order_id.as_str(), "ord_1");
    assert_eq!(w.status, OrderStatus::Created);
    assert_eq!(w.meta.get("channel").map(String::as_str), Some("web"));
}

#[test]
fn every_field_error_is_reported_at_once() {
    let body = json!({
        "provider_event_id": "",
        "user_id": "not-a-uuid",
        "status": "done",
        "created_at": 17,
        "updated_at": "yesterday",
        "meta": {"a": 1}
    });
    let fields = invalid_fields(OrderWebhook::parse(body.to_string().as_bytes()).unwrap_err());
    assert_eq!(
        fields,
        [
            "provider_event_id",
            "order_id",
            "user_id",
            "status",
            "created_at",
            "updated_at",
            "meta.a"
        ]
    );
}

#[test]
fn malformed_json_and_non_objects_are_malformed() {
    for body in ["{", "", "[1,2]", "42", "{\"order_id\": }"] {
        assert!(
            matches!(
                OrderWebhook::parse(body.as_bytes()),
                Err(InputError::Malformed(_))
            ),
            "{body:?}"
        );
    }
}

#[test]
fn updated_before_created_is_invalid() {
    let mut body = order_json();
    body["updated_at"] = json!("2025-12-31T00:00:00Z");
    assert_eq!(
        invalid_fields(OrderWebhook::parse(body.to_string().as_bytes()).unwrap_err()),
        ["updated_at"]
    );
}

#[test]
fn a_chargeback_keeps_its_amount_exact() {
    let w = ChargebackWebhook::parse(chargeback_body("100.50", "").as_bytes()).expect("valid");
    assert_eq!(w.money.amount_text(), "100.50");
    assert_eq!(w.resolution, Resolution::Won);
    let json = serde_json::to_string(&w).expect("serialize");
    assert!(json.contains(r#""amount":100.50"#), "{json}");
    // What we forward parses back to the same webhook.
    assert_eq!(ChargebackWebhook::parse(json.as_bytes()), Ok(w));
}

#[test]
fn chargeback_money_errors() {
    for (amount, field) in [
        ("-5", "amount"),
        ("0", "amount"),
        ("\"abc\"", "amount"),
        ("1.001", "amount"),
    ] {
        let fields = invalid_fields(
            ChargebackWebhook::parse(chargeback_body(amount, "").as_bytes()).unwrap_err(),
        );
        assert_eq!(fields, [field], "{amount}");
    }
    let body = chargeback_body("1", "").replace("\"USD\"", "\"usd\"");
    assert_eq!(
        invalid_fields(ChargebackWebhook::parse(body.as_bytes()).unwrap_err()),
        ["currency"]
    );
    let body = chargeback_body("1", "").replace("\"Won\"", "\"draw\"");
    assert_eq!(
        invalid_fields(ChargebackWebhook::parse(body.as_bytes()).unwrap_err()),
        ["meta.resolution"]
    );
}

#[test]
fn evidence_due_at_is_optional_but_checked() {
    let ok =
        ChargebackWebhook::parse(chargeback_body("1", r#","evidence_due_at":null"#).as_bytes());
    assert_eq!(ok.map(|w| w.evidence_due_at), Ok(None));
    let bad =
        ChargebackWebhook::parse(chargeback_body("1", r#","evidence_due_at":"soon""#).as_bytes());
    assert_eq!(invalid_fields(bad.unwrap_err()), ["evidence_due_at"]);
}

#[test]
fn control_characters_in_text_fields_are_field_errors() {
    let body = chargeback_body("1", "").replace(r#""reason":"fraud""#, r#""reason":"fraud\u0000""#);
    let err = ChargebackWebhook::parse(body.as_bytes()).unwrap_err();
    assert_eq!(invalid_fields(err), ["reason"]);

    let mut order = order_json();
    order["meta"] = json!({"channel": "web\u{0}", "ok": "fine"});
    let err = OrderWebhook::parse(order.to_string().as_bytes()).unwrap_err();
    assert_eq!(invalid_fields(err), ["meta.channel"]);
}

#[test]
fn order_webhooks_round_trip_through_their_wire_form() {
    let w = OrderWebhook::parse(order_json().to_string().as_bytes()).expect("valid");
    let json = serde_json::to_vec(&w).expect("serialize");
    assert_eq!(OrderWebhook::parse(&json), Ok(w));
}

proptest! {
    /// Whatever bytes arrive, parsing answers with a value or an error; it never panics.
    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = OrderWebhook::parse(&body);
        let _ = ChargebackWebhook::parse(&body);
    }

    /// Arbitrary JSON objects (wrong types anywhere) are reported as field errors, not panics.
    #[test]
    fn arbitrary_field_values_are_field_errors(
        values in proptest::collection::vec(prop_oneof![
            Just(json!(null)), Just(json!(1)), Just(json!("x")), Just(json!([])), Just(json!({})),
            Just(json!(true)), Just(json!(-3.5)), Just(json!(USER)),
        ], 10)
    ) {
        let names = ["provider_event_id", "order_id", "user_id", "status", "reason", "amount",
                     "currency", "occurred_at", "evidence_due_at", "meta"];
        let obj: serde_json::Map<_, _> = names.iter().map(|n| n.to_string()).zip(values).collect();
        let body = serde_json::Value::Object(obj).to_string();
        prop_assert!(!matches!(ChargebackWebhook::parse(body.as_bytes()), Err(InputError::Malformed(_))));
    }
}
