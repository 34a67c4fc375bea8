//! Benchmarks that put Payment Manager's numbers in context, each written as JSON (for
//! machines), Markdown (for people) and an SVG chart, under `bench-results/`.
//!
//! - [`partitioning`] reproduces and extends the original project's headline experiment: the
//!   same `dispute_events` rows in three physical layouts (unpartitioned without the
//!   `(kind, created_at)` index, unpartitioned with it, daily pg_partman partitions with it),
//!   the original 5-day query and a few more, measured with `EXPLAIN (ANALYZE, BUFFERS)`.
//!   Pages touched (shared hit + read) are the headline figure because, unlike time, they do
//!   not depend on what happens to be cached.
//! - [`baseline`] measures the physical limits of the machine the other benchmarks run on —
//!   a bare HTTP server that only verifies and parses webhooks, and PostgreSQL's single-row
//!   commit rate — so that the service's own rates can be read as fractions of them.
//!
//! The crate talks to PostgreSQL through sqlx and to HTTP through axum and reqwest; it never
//! starts a database itself (the caller hands it a pool, from a configured server or the
//! embedded cluster) and it depends on no service crate of the project (API, ingest, Kafka):
//! a baseline must not contain the thing it is a baseline for.

pub mod baseline;
mod error;
pub mod machine;
pub mod partitioning;
pub mod report;

pub use error::BenchError;
