//! The pure domain model of Payment Manager.
//!
//! Everything here is data and decisions: typed ids, exact money, order and dispute
//! statuses with their state machines, webhook payloads with validation that reports
//! every field error, event kinds, webhook signatures, pagination cursors, and the one
//! retry schedule of every client ([`retry`]).
//!
//! This crate performs no I/O. It must never depend on tokio, sqlx, rdkafka, axum or
//! reqwest: the storage, API, ingest and Kafka adapters depend on it, never the reverse,
//! so the rules of PRODUCT.md §2.4 can be tested without a database or a network.

pub mod api_key;
pub mod command;
pub mod dispute;
pub mod domain_event;
pub mod envelope;
pub mod event;
pub mod evidence;
pub mod ids;
mod json_fields;
pub mod money;
pub mod order;
pub mod pagination;
pub mod retry;
pub mod signature;
pub mod time;
pub mod validation;
pub mod webhook;

pub use ids::{DisputeId, EventId, IdempotencyKey, OrderId, ProviderEventId, UserId};
pub use money::{Amount, Currency, Money};
pub use validation::{FieldError, InputError, ValidationErrors};
