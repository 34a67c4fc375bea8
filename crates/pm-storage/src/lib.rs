//! PostgreSQL storage for Payment Manager.
//!
//! Owns the schema (the SQL migrations in the repository's `migrations/`), the
//! repositories behind the read API, and the transactions that apply webhooks and operator
//! actions: each state change commits together with its event row and, for webhooks, its
//! deduplication record, or none of them does (PRODUCT.md §2.4). The decisions themselves
//! come from `pm-domain`; this crate only loads, locks and stores.
//!
//! It depends on sqlx and the domain, never on HTTP or Kafka: the API and the Kafka
//! consumers both call the same functions here.

pub mod analytics;
pub mod api_keys;
pub mod audit;
pub mod captures;
pub mod db;
pub mod disputes;
mod error;
pub mod events;
pub mod layout;
pub mod metrics;
pub mod migrate;
pub mod orders;
pub mod outbox;
pub mod partitions;
pub mod replicas;
pub mod roles;
mod statement;
#[cfg(feature = "testing")]
pub mod testing;
pub mod webhooks;

pub use db::{connect, PoolOptions};
pub use error::StorageError;
pub use sqlx::PgPool;
