//! Integration tests of the lab's benchmarks against a real PostgreSQL with pg_partman (a fresh database
//! per test) and a real HTTP server. Sizes are tiny and no timing is asserted: these run on
//! shared, noisy machines.

mod baseline;
mod partitioning;
