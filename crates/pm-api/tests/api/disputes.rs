//! Evidence and representment submission, against the provider's 200/400/422 and outages.

use serde_json::json;
use wiremock::matchers::{body_json, header_exists, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::app::{chargeback, TestApp};

fn evidence() -> serde_json::Value {
    json!({
        "fields": {"tracking_number": "1Z999", "note": "delivered"},
        "files": [{"file_id": "file_1", "name": "receipt.pdf", "content_type": "application/pdf", "size": 2048}]
    })
}

async fn dispute(app: &TestApp, id: &str) -> serde_json::Value {
    app.get(&format!("/disputes/{id}")).await.1
}

#[tokio::test]
async fn evidence_then_submit_moves_open_to_under_review_to_submitted() {
    let app = TestApp::spawn().await;
    let id = app.open_dispute("ord-ev").await;
    let (status, p) = app
        .post_json(&format!("/disputes/{id}/submit"), &json!({}))
        .await;
    assert_eq!(status, 409, "no evidence yet: {p}");
    assert_eq!(app.get(&format!("/disputes/{id}/evidence")).await.0, 404);

    let (status, e) = app
        .post_json(&format!("/disputes/{id}/evidence"), &evidence())
        .await;
    assert_eq!(status, 200, "{e}");
    assert_eq!(e["files"][0]["file_id"], "file_1");
    assert_eq!(dispute(&app, &id).await["status"], "under_review");
    assert_eq!(
        app.get(&format!("/disputes/{id}/evidence")).await.1["fields"]["tracking_number"],
        "1Z999"
    );

    Mock::given(method("POST"))
        .and(path("/api/v1/dispute-representments/create"))
        .and(header_exists("idempotency-key"))
        .and(body_json(
            json!({"order_id": "ord-ev", "evidences_file_id": ["file_1"]}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "rep_123"})))
        .expect(1)
        .mount(&app.provider)
        .await;
    let (status, s) = app
        .post_json(&format!("/disputes/{id}/submit"), &json!({}))
        .await;
    assert_eq!(status, 202, "{s}");
    assert_eq!(
        (s["submission_id"].as_str(), s["status"].as_str()),
        (Some("rep_123"), Some("submitted"))
    );
    let d = dispute(&app, &id).await;
    assert_eq!(
        (d["status"].as_str(), d["submission_id"].as_str()),
        (Some("submitted"), Some("rep_123"))
    );
    assert!(d["submitted_at"].is_string());
    // Submitted disputes take no more evidence and no second submission.
    assert_eq!(
        app.post_json(&format!("/disputes/{id}/evidence"), &evidence())
            .await
            .0,
        409
    );
    assert_eq!(
        app.post_json(&format!("/disputes/{id}/submit"), &json!({}))
            .await
            .0,
        409
    );
    let (_, events) = app
        .get(&format!(
            "/disputes/events?dispute_id={id}&kind=evidence_added&kind=evidence_submitted"
        ))
        .await;
    assert_eq!(events["items"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn provider_refusals_are_422_with_their_message_and_outages_502() {
    for (status, body, expected_status, expected_text) in [
        (
            400,
            json!({"error": {"code": "validation_error", "message": "no files", "constraints": {"evidences_file_id": "min 1"}}}),
            422,
            "no files",
        ),
        (
            422,
            json!({"error": {"code": "file_not_ready", "message": "file file_1 is still processing"}}),
            422,
            "still processing",
        ),
        (503, json!({}), 502, "unavailable"),
    ] {
        let app = TestApp::spawn().await;
        let id = app.open_dispute("ord-p").await;
        assert_eq!(
            app.post_json(&format!("/disputes/{id}/evidence"), &evidence())
                .await
                .0,
            200
        );
        Mock::given(method("POST"))
            .and(path("/api/v1/dispute-representments/create"))
            .respond_with(ResponseTemplate::new(status).set_body_json(body))
            .mount(&app.provider)
            .await;
        let (got, p) = app
            .post_json(&format!("/disputes/{id}/submit"), &json!({}))
            .await;
        assert_eq!(got, expected_status, "{p}");
        assert!(
            p["detail"]
                .as_str()
                .expect("detail")
                .contains(expected_text),
            "{p}"
        );
        // Nothing changed: the dispute can be submitted again once fixed.
        assert_eq!(dispute(&app, &id).await["status"], "under_review");
    }
}

#[tokio::test]
async fn final_disputes_refuse_evidence_and_submission() {
    let app = TestApp::spawn().await;
    let id = app.open_dispute("ord-f").await;
    let mut closed = chargeback("cb-won", "ord-f", "closed");
    closed["meta"] = json!({"resolution": "won"});
    assert_eq!(app.chargeback_webhook(&closed).await.status(), 202);
    let (status, p) = app
        .post_json(&format!("/disputes/{id}/evidence"), &evidence())
        .await;
    assert_eq!(status, 409);
    assert!(p["detail"].as_str().expect("detail").contains("won"));
    assert_eq!(
        app.post_json(&format!("/disputes/{id}/submit"), &json!({}))
            .await
            .0,
        409
    );
    let unknown = "0b6f5c3e-8d1a-4c7e-9a51-2f0e1b2c3d4e";
    assert_eq!(
        app.post_json(&format!("/disputes/{unknown}/evidence"), &evidence())
            .await
            .0,
        404
    );
    assert_eq!(
        app.post_json(&format!("/disputes/{unknown}/submit"), &json!({}))
            .await
            .0,
        404
    );
    let (status, p) = app
        .post_json(
            &format!("/disputes/{id}/evidence"),
            &json!({"files": [{"name": "x"}]}),
        )
        .await;
    assert_eq!(status, 422, "{p}");
}
