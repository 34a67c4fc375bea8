//! Integration tests of the load generator: the engine against tiny in-process servers,
//! the report files, and a smoke run against the real API on a fresh database.

mod e2e;
mod engine;
mod reports;
mod support;
