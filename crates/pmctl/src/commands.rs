//! One module per subcommand, and what several of them share.

pub(crate) mod analytics;
pub(crate) mod api_keys;
pub(crate) mod audit;
pub(crate) mod bench;
mod child;
pub(crate) mod db;
pub(crate) mod demo;
pub(crate) mod docs;
pub(crate) mod loadtest;
pub(crate) mod migrate;
pub(crate) mod outbox_relay;
pub(crate) mod partition_maintain;
pub(crate) mod project_analytics;
pub(crate) mod reconcile_captures;
pub(crate) mod replay_dlq;
pub(crate) mod send;
pub(crate) mod serve_api;
pub(crate) mod serve_ingest;
pub(crate) mod simulate_provider;
pub(crate) mod verify;
