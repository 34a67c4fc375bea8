//! API tests over real HTTP against a real PostgreSQL (a fresh database per test) and a
//! wiremock provider whose received requests are asserted exactly.

mod admin;
mod analytics;
mod app;
mod audit;
mod auth;
mod bad_input;
mod capture_outcomes;
mod disputes;
mod groups;
mod hostile;
mod operations;
mod orders;
mod overload;
mod profile;
mod reads;
mod replicas;
mod webhooks;
