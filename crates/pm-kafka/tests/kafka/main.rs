//! Tests against a real Kafka-protocol broker (see `pm_kafka::testing`); each test uses
//! its own topics and consumer groups.

mod consumer;
mod group;
mod harness;
mod rebalance;
mod replay;
mod restart;
