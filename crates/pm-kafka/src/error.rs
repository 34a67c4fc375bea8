//! Why a request to the cluster failed, in words an operator can act on.

use rdkafka::error::KafkaError;

/// The failure of a request whose client watches its connections (see
/// [`crate::connection`]): a refused login or TLS handshake is named as such instead of
/// ending as a timeout, and a timeout carries the last connection error heard.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cluster refused this client's credentials (`sasl.*`).
    #[error("Kafka authentication failed: {0}")]
    Authentication(String),
    /// The TLS handshake with a broker failed: its certificate is not trusted (check
    /// `ssl.ca.location`) or not made out to the name it was reached by.
    #[error("Kafka TLS handshake failed: {0}")]
    Tls(String),
    /// No broker answered in time.
    #[error("no Kafka broker answered ({source}){}", last_heard(.last))]
    Unreachable {
        source: KafkaError,
        /// The last connection error librdkafka reported, when it reported one.
        last: Option<String>,
    },
    /// Any other failure.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
}

fn last_heard(last: &Option<String>) -> String {
    last.as_deref()
        .map(|l| format!("; last connection error: {l}"))
        .unwrap_or_default()
}
