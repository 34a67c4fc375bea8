//! The core service's HTTP API (`pmctl serve-api`, port 3000).
//!
//! Routes (PRODUCT.md §3.2): provider webhooks in sync mode, the internal update routes
//! that ingest's HTTP sink forwards to, the read routes with filters and cursor
//! pagination, and the operator actions (hold, capture, evidence, submit), plus health,
//! metrics and the OpenAPI document.
//!
//! Handlers parse and validate at the edge, call `pm-storage` for everything that touches
//! the database and `pm-provider` for the provider, and turn errors into problem+json in
//! one place ([`error`]). Provider calls are made between transactions, never inside one.

pub mod admin;
pub mod auth;
pub mod captures;
pub mod consumer;
pub mod dto;
pub mod error;
pub mod groups;
pub mod openapi;
mod query;
mod routes;
mod state;
#[cfg(feature = "testing")]
pub mod testing;

pub use admin::{AdminSettings, DeadLetters};
pub use routes::router;
pub use state::{ApiConfig, ApiMetrics, AppState, Readiness};
