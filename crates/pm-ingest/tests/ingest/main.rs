//! Ingest over real HTTP, against real services: the real API router on a real
//! PostgreSQL (http sink) and a real Kafka-protocol broker (kafka sink). Nothing
//! downstream is mocked; the wiremock server only stands in for the payment provider,
//! which the webhook paths never call.

mod gateway;
mod hostile;
mod http_sink;
mod kafka_sink;
mod murmur2;
mod support;
