//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::dto;
use crate::routes::{disputes, ops, orders, webhooks};

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
        ops::live, ops::ready, ops::metrics, ops::openapi,
    ),
    components(schemas(
        dto::Order, dto::Dispute, dto::Event, dto::Hold, dto::Capture, dto::Evidence, dto::EvidenceFileDto,
        dto::Submission, dto::WebhookAck, dto::Health, pm_http::Problem,
    )),
    modifiers(&ServiceToken),
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
    }
}
