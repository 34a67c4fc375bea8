//! Connection settings shared by producers, consumers and the admin client.

use rdkafka::ClientConfig;

/// Where the brokers are and how this client identifies itself.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port…]`.
    pub brokers: String,
    /// `client.id`, shown in broker logs.
    pub client_id: String,
}

impl KafkaConfig {
    pub fn new(brokers: impl Into<String>, client_id: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            client_id: client_id.into(),
        }
    }

    /// The base librdkafka configuration for this cluster.
    pub(crate) fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            // Fail fast on unreachable brokers instead of logging forever at error level.
            .set("socket.timeout.ms", "10000")
            .set("log_level", "4");
        c
    }
}
