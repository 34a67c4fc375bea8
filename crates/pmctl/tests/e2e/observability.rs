//! The monitoring kit in `deploy/` against the services it watches: promtool accepts the
//! Prometheus configuration and rules and their unit tests pass; every alert has a firing and
//! a quiet test, its annotations and a runbook section; every PromQL expression of the rules
//! and dashboards parses and names only metrics serve-api and serve-ingest export; and a real
//! Prometheus (Debian's, from `scripts/install-deps.sh`) scrapes both services with that
//! configuration and loads the rules.

mod deploy;
mod exported;
mod prometheus;
mod promql;
mod promtool;
mod rules;
mod stack;
