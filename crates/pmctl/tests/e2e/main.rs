//! End-to-end tests of the `pmctl` binary: real processes on free ports, a real
//! PostgreSQL, a real Kafka-protocol broker, and HTTP between them.

mod admin_ui;
mod analytics;
mod auth;
mod backup;
mod bench;
mod captures;
mod cli;
mod compose;
mod debezium;
mod deploy;
mod ha;
mod ingest;
mod kafka_faults;
mod kafka_mode;
mod observability;
mod outbox;
mod overload;
mod process;
mod replicas;
mod roles;
mod scenarios;
mod secrets;
mod tls;
mod tls_pg;
mod traces;
