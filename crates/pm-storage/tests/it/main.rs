//! Storage tests against a real PostgreSQL with pg_partman: a fresh database per test,
//! cloned from a migrated template (see `pm_storage::testing`).

mod analytics;
mod audit;
mod captures;
mod fixtures;
mod layout;
mod migrations;
mod outbox;
mod pagination;
mod partitions;
mod webhooks;
