//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::dto;
use crate::routes::{analytics, audit, disputes, ops, orders, profile, webhooks};

/// The API description served at `/openapi.json`.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Payment Manager API", description = "The merchant's payment backend: provider webhooks, reads and operator actions."),
    paths(
        webhooks::order_webhook, webhooks::chargeback_webhook,
        webhooks::internal_order_update, webhooks::internal_dispute_update,
        orders::list_orders, orders::get_order, orders::list_order_events, orders::order_events,
        orders::hold, orders::capture, orders::order_captures,
        disputes::list_disputes, disputes::get_dispute, disputes::list_dispute_events,
        disputes::get_evidence, disputes::put_evidence, disputes::submit,
        ops::live, ops::ready, ops::metrics, ops::openapi, audit::list_audit, profile::cpu_profile,
        analytics::orders, analytics::captures, analytics::disputes,
    ),
    components(schemas(
        dto::Order, dto::Dispute, dto::Event, dto::Hold, dto::Capture, dto::Evidence, dto::EvidenceFile,
        dto::Submission, dto::WebhookAck, dto::Health, dto::AuditEntry, pm_http::Problem,
        dto::OrderVolume, dto::OrderDay, dto::CaptureVolume, dto::CaptureDay,
        dto::DisputeAnalytics, dto::ReasonOutcome, dto::DecisionTimes,
        dto::requests::HoldRequest, dto::requests::CaptureRequest, dto::requests::EvidenceRequest,
        dto::requests::EvidenceFileRequest, dto::requests::OrderWebhookRequest,
        dto::requests::ChargebackWebhookRequest, dto::requests::EnvelopeRequest,
        dto::requests::names::OrderStatus, dto::requests::names::DisputeStatus,
        dto::requests::names::OrderEventKind, dto::requests::names::DisputeEventKind,
        dto::requests::names::Sort,
    )),
    modifiers(&ServiceToken, &EdgeResponses),
)]
pub struct ApiDoc;

struct ServiceToken;

impl Modify for ServiceToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "service_token",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        // Every route needs an operator key but the probes and the signed or
        // service-token routes, which state their own.
        for (path, item) in &mut openapi.paths.paths {
            if path.starts_with("/health/")
                || path.starts_with("/webhooks/")
                || path.starts_with("/internal/")
            {
                continue;
            }
            for op in [&mut item.get, &mut item.post].into_iter().flatten() {
                op.security = Some(vec![SecurityRequirement::new(
                    "api_key",
                    Vec::<String>::new(),
                )]);
            }
        }
    }
}

/// The answers every operation can get from the edge rather than from its handler, and the
/// media type of every problem, documented on each operation so that a client (or a schema
/// checker) finds every status it can receive:
/// - a problem document is `application/problem+json`;
/// - `503` from any API route: shed at the in-flight limit, past the request timeout, or
///   the database unavailable or too slow;
/// - `400` for a malformed path segment or query parameter;
/// - `408` (body too slow), `413` (too large), `415` (not JSON) and `400` (malformed JSON)
///   for an operation that reads a body;
/// - `401` for the webhook and internal routes (signature, service token).
struct EdgeResponses;

const PROBLEM_TYPE: &str = "application/problem+json";

fn problem(description: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                PROBLEM_TYPE,
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build(),
    )
}

fn refers_to_problem(content: &utoipa::openapi::Content) -> bool {
    matches!(&content.schema, Some(RefOr::Ref(r)) if r.ref_location.ends_with("/Problem"))
}

impl EdgeResponses {
    fn operation(path: &str, op: &mut Operation) {
        let responses = &mut op.responses.responses;
        for response in responses.values_mut() {
            if let RefOr::T(response) = response {
                if let Some(json) = response.content.get("application/json") {
                    if refers_to_problem(json) {
                        let json = json.clone();
                        response.content.shift_remove("application/json");
                        response.content.insert(PROBLEM_TYPE.to_owned(), json);
                    }
                }
            }
        }
        let mut add = |status: &str, description: &str| {
            responses
                .entry(status.to_owned())
                .or_insert_with(|| problem(description));
        };
        if path.starts_with("/health/") {
            return;
        }
        let signed = path.starts_with("/webhooks/") || path.starts_with("/internal/");
        if !signed {
            add(
                "401",
                "No usable API key (`WWW-Authenticate: Bearer`): missing, malformed, unknown, \
                 revoked or expired — the answer does not say which",
            );
            add("403", "The key lacks the scope this route needs");
            add(
                "429",
                "This address presented too many invalid keys; retry after Retry-After",
            );
        }
        add(
            "503",
            "Not acted on: the server is at its in-flight limit (overloaded), the request \
             took longer than the request timeout, or the database is unavailable or too slow. \
             Retry after Retry-After",
        );
        let has_query = op.parameters.iter().flatten().any(|p| {
            matches!(
                p.parameter_in,
                utoipa::openapi::path::ParameterIn::Query
                    | utoipa::openapi::path::ParameterIn::Path
            )
        });
        if has_query {
            add("400", "A malformed path segment or query parameter");
        }
        if op.request_body.is_some() {
            add("400", "The body is not well-formed JSON");
            add("408", "The body did not arrive within the body timeout");
            add("413", "The body is larger than the limit");
            add("415", "The body is not JSON (Content-Type)");
        }
        if path.starts_with("/webhooks/") || path.starts_with("/internal/") {
            add(
                "401",
                "Missing or invalid signature (webhooks) or service token (internal routes)",
            );
        }
    }
}

impl Modify for EdgeResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in &mut openapi.paths.paths {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                Self::operation(path, op);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$ref` names a schema of the document: an unresolvable one hides a parameter or
    /// a body from clients and from the schema-driven fuzzing in CI.
    #[test]
    fn every_reference_resolves() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("json");
        let schemas = doc["components"]["schemas"]
            .as_object()
            .expect("schemas")
            .clone();
        let mut refs = Vec::new();
        let mut stack = vec![&doc];
        while let Some(v) = stack.pop() {
            match v {
                serde_json::Value::Object(map) => {
                    if let Some(serde_json::Value::String(r)) = map.get("$ref") {
                        refs.push(r.clone());
                    }
                    stack.extend(map.values());
                }
                serde_json::Value::Array(items) => stack.extend(items),
                _ => {}
            }
        }
        assert!(!refs.is_empty());
        for r in refs {
            let name = r.trim_start_matches("#/components/schemas/");
            assert!(schemas.contains_key(name), "unresolvable reference {r}");
        }
    }

    /// Problems are documented as `application/problem+json`; every API operation documents
    /// the 503 of the edge (overload, timeouts, database), and every operation behind an API
    /// key its 401/403 and its security requirement.
    #[test]
    fn problems_have_their_media_type_and_every_operation_its_503() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("json");
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("item") {
                let responses = op["responses"].as_object().expect("responses");
                for (status, response) in responses {
                    if let Some(content) = response["content"].as_object() {
                        if let Some(json) = content.get("application/json") {
                            assert!(
                                !json["schema"]["$ref"]
                                    .as_str()
                                    .unwrap_or_default()
                                    .ends_with("/Problem"),
                                "{method} {path} {status}: a problem as application/json"
                            );
                        }
                    }
                }
                let probe = path.starts_with("/health/");
                assert_eq!(
                    responses.contains_key("503"),
                    !probe || path == "/health/ready",
                    "{method} {path}"
                );
                let keyed =
                    !probe && !path.starts_with("/webhooks/") && !path.starts_with("/internal/");
                assert_eq!(
                    responses.contains_key("401") && responses.contains_key("403"),
                    keyed,
                    "{method} {path}"
                );
                assert_eq!(
                    op.get("security").is_some(),
                    keyed || path.starts_with("/internal/"),
                    "{method} {path}"
                );
            }
        }
    }
}
