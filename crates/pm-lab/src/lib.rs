//! The lab of Payment Manager: the instruments that measure it, each writing its results as
//! JSON (for machines), Markdown (for people) and an SVG chart, under `bench-results/`.
//!
//! - [`loadtest`] drives reproducible webhook traffic at fixed arrival rates (an open-model
//!   generator: no coordinated omission) and checks what the system made of it.
//! - [`partitioning`] reproduces and extends the original project's headline experiment: the
//!   same `dispute_events` rows in four physical layouts (unpartitioned without the
//!   `(kind, created_at)` index, unpartitioned with it, daily pg_partman partitions with it,
//!   and those partitions clustered by kind), the original 5-day query and a few more,
//!   measured with `EXPLAIN (ANALYZE, BUFFERS)`. Pages touched (shared hit + read) are the
//!   headline figure because, unlike time, they do not depend on what happens to be cached.
//! - [`verify`] compares what a run must have produced (a scenario's ledger) with what the
//!   API serves: nothing lost, nothing doubled — `pmctl verify`, the demo and `--verify`.
//! - [`baseline`] measures the physical limits of the machine the other benchmarks run on —
//!   a bare HTTP server that only verifies and parses webhooks, and PostgreSQL's single-row
//!   commit rate — so that the service's own rates can be read as fractions of them.
//! - [`statements`] reads `pg_stat_statements`: where PostgreSQL spent its time during a
//!   measurement, statement by statement.
//! - [`walks`] is the original project's read benchmark: Goose users paging through
//!   `GET /disputes/events` over a fixed window (a closed model), every complete walk checked.
//! - [`layouts`] puts the services on partitioned and unpartitioned event tables side by side
//!   (`pmctl bench layouts`): the same history, the write knee and the read walks.
//! - [`replication`] measures streaming standbys (`pmctl bench replication`): how stale their
//!   reads are under a steady write load, and what routing the read walks to them changes.
//!
//! The lab talks to the system under test only from outside: over HTTP (webhooks to ingest
//! or the API, reads from the API), and to PostgreSQL through a pool the caller hands it (a
//! configured server or the embedded cluster). It depends on no service crate of the project
//! (API, ingest, Kafka): a baseline must not contain the thing it is a baseline for.

pub mod baseline;
mod error;
mod generate;
pub mod layouts;
pub mod loadtest;
pub mod machine;
pub mod partitioning;
pub mod replication;
pub mod report;
pub mod statements;
pub mod verify;
pub mod walks;

pub use error::LabError;
