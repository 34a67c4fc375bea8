//! Connection settings shared by producers, consumers and the admin client.

use rdkafka::ClientConfig;

/// Where the brokers are, how this client identifies itself, and any librdkafka
/// properties the user's cluster needs (security protocol, SASL, TLS files, tuning).
/// `Debug` shows the properties' names only: their values may be passwords.
#[derive(Clone)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port…]`.
    pub brokers: String,
    /// `client.id`, shown in broker logs.
    pub client_id: String,
    /// librdkafka properties for every client (security, TLS files, tuning). They win over
    /// the common settings of [`KafkaConfig::client`]; a consumer's or producer's own
    /// settings that correctness depends on (group, offset storing and commits,
    /// idempotence, `acks`, and the timeouts that have flags of their own) are set after
    /// them and win.
    pub properties: Vec<(String, String)>,
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.properties.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("client_id", &self.client_id)
            .field("properties", &names)
            .finish()
    }
}

impl KafkaConfig {
    pub fn new(brokers: impl Into<String>, client_id: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            client_id: client_id.into(),
            properties: Vec::new(),
        }
    }

    /// The same cluster with extra librdkafka properties.
    pub fn with_properties(mut self, properties: Vec<(String, String)>) -> Self {
        self.properties = properties;
        self
    }

    /// The base librdkafka configuration for this cluster.
    pub(crate) fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            // Fail fast on unreachable brokers instead of logging forever at error level.
            .set("socket.timeout.ms", "10000")
            .set("log_level", "4");
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `security.protocol=SASL_SSL` with SCRAM needs of the librdkafka we link: TLS
    /// (rdkafka's `ssl` feature) and the SCRAM mechanism, which librdkafka builds only
    /// with TLS. GSSAPI (Kerberos, Cyrus SASL) is not needed for it.
    #[test]
    fn librdkafka_is_built_with_tls_and_scram() {
        let features = ClientConfig::new()
            .create_native_config()
            .and_then(|c| c.get("builtin.features"))
            .expect("builtin.features");
        for needed in ["ssl", "sasl_scram"] {
            assert!(
                features.split(',').any(|f| f == needed),
                "librdkafka lacks {needed}: {features}"
            );
        }
    }
}
