//! Flags shared by several subcommands. Every flag has an environment variable (flags
//! win), named as in the configuration contract of PRODUCT.md §3.3.

use std::time::Duration;

use anyhow::Context;
use pm_domain::signature::{Verifier, DEFAULT_TOLERANCE_SECS};
use pm_http::intake::{IntakeConfig, DEFAULT_MAX_BODY_BYTES};
use pm_telemetry::LogFormat;
use secrecy::{ExposeSecret, SecretString};

/// Logging (global flags).
#[derive(Debug, clap::Args)]
pub(crate) struct LogArgs {
    /// Log filter in tracing's directive syntax, e.g. `info` or `pm_api=debug,sqlx=warn`.
    #[arg(
        long = "log",
        env = "PM_LOG",
        default_value = "info,sqlx=warn",
        global = true
    )]
    filter: String,
    /// Log line format: `text` for people, `json` for log pipelines.
    #[arg(long = "log-format", env = "PM_LOG_FORMAT", default_value = "text", global = true, value_parser = ["text", "json"])]
    format: String,
}

impl LogArgs {
    pub(crate) fn init(&self) -> anyhow::Result<()> {
        let format: LogFormat = self.format.parse().map_err(anyhow::Error::msg)?;
        pm_telemetry::init_logging(&self.filter, format)?;
        Ok(())
    }
}

/// The database connection.
#[derive(Debug, clap::Args)]
pub(crate) struct DatabaseArgs {
    /// PostgreSQL URL, e.g. `postgres://user:pass@127.0.0.1:5432/payments`. `DATABASE_URL` is
    /// also accepted. The password is never logged. For TLS that authenticates the server,
    /// append `?sslmode=verify-full&sslrootcert=<CA file>` and name the host as its
    /// certificate does (`require` encrypts but accepts any server).
    #[arg(long = "database-url", env = "PM_DATABASE_URL", hide_env_values = true, value_parser = secret)]
    database_url: Option<SecretString>,
    /// Largest number of pooled database connections.
    #[arg(
        long = "db-max-connections",
        env = "PM_DB_MAX_CONNECTIONS",
        default_value_t = 16
    )]
    max_connections: u32,
    /// serve-api: connections of the separate, smaller pool the read routes use, so that
    /// reads (unauthenticated, arbitrarily many) can never take the connections webhook
    /// processing needs.
    #[arg(
        long = "db-read-max-connections",
        env = "PM_DB_READ_MAX_CONNECTIONS",
        default_value_t = 4
    )]
    read_max_connections: u32,
    /// serve-api: PostgreSQL `statement_timeout` of the service's sessions; a statement
    /// running longer is cancelled and the request answered 503 (never for migrations or
    /// partition maintenance).
    #[arg(long = "db-statement-timeout", env = "PM_DB_STATEMENT_TIMEOUT", default_value = "5s", value_parser = duration)]
    statement_timeout: Duration,
    /// serve-api: PostgreSQL `lock_timeout`; a statement waiting longer for a lock (a
    /// locked table, a long transaction) fails and the request is answered 503.
    #[arg(long = "db-lock-timeout", env = "PM_DB_LOCK_TIMEOUT", default_value = "2s", value_parser = duration)]
    lock_timeout: Duration,
}

impl DatabaseArgs {
    /// The URL from the flag, `PM_DATABASE_URL` or `DATABASE_URL`.
    pub(crate) fn url(&self) -> anyhow::Result<String> {
        self.database_url
            .as_ref()
            .map(|u| u.expose_secret().to_owned())
            .or_else(|| std::env::var("DATABASE_URL").ok().filter(|s| !s.is_empty()))
            .context("no database configured: pass --database-url or set PM_DATABASE_URL (or DATABASE_URL)")
    }

    /// A pool without statement or lock timeouts, for commands whose statements may
    /// rightly take long (migrations, partition maintenance, verification).
    pub(crate) fn pool(&self, application_name: &str) -> anyhow::Result<pm_storage::PgPool> {
        let opts = pm_storage::PoolOptions {
            max_connections: self.max_connections,
            application_name: application_name.to_owned(),
            ..Default::default()
        };
        pm_storage::connect(&self.url()?, &opts).context("invalid database URL")
    }

    /// The service's two pools, both with the statement and lock timeouts: one for writes
    /// (webhooks, Kafka batches, operator actions) and a smaller one for reads.
    pub(crate) fn service_pools(
        &self,
        application_name: &str,
    ) -> anyhow::Result<(pm_storage::PgPool, pm_storage::PgPool)> {
        let url = self.url()?;
        let opts = |max_connections, name: String| pm_storage::PoolOptions {
            max_connections,
            application_name: name,
            statement_timeout: Some(self.statement_timeout),
            lock_timeout: Some(self.lock_timeout),
            ..Default::default()
        };
        let write = pm_storage::connect(
            &url,
            &opts(self.max_connections, application_name.to_owned()),
        )
        .context("invalid database URL")?;
        let read = pm_storage::connect(
            &url,
            &opts(
                self.read_max_connections.max(1),
                format!("{application_name}-reads"),
            ),
        )
        .context("invalid database URL")?;
        Ok((write, read))
    }
}

/// Parses `5s`, `250ms`, `90d`.
pub(crate) fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 500ms, 5s, 2m, 90d)"))
}

/// Wraps a secret flag value so that `Debug` never shows it.
pub(crate) fn secret(s: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(s))
}

/// Webhook signature and body settings (shared with serve-ingest).
#[derive(Debug, clap::Args)]
pub(crate) struct WebhookArgs {
    /// Accepted webhook signing secret; repeat the flag (or comma-separate the variable)
    /// during a rotation: a signature from any of them passes.
    #[arg(
        long = "webhook-secret",
        env = "PM_WEBHOOK_SECRETS",
        value_delimiter = ',',
        hide_env_values = true,
        value_parser = secret
    )]
    secrets: Vec<SecretString>,
    /// Accept webhooks without checking signatures. For local experiments only: anyone
    /// who can reach the port can then forge provider events.
    #[arg(long, env = "PM_INSECURE_SKIP_SIGNATURE")]
    insecure_skip_signature: bool,
    /// Largest accepted webhook body, in bytes.
    #[arg(long, env = "PM_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// Allowed difference between the signature timestamp and now, in seconds.
    #[arg(long, env = "PM_SIGNATURE_TOLERANCE_SECS", default_value_t = DEFAULT_TOLERANCE_SECS)]
    signature_tolerance_secs: i64,
}

impl WebhookArgs {
    pub(crate) fn intake(&self) -> anyhow::Result<IntakeConfig> {
        let secrets: Vec<Vec<u8>> = self
            .secrets
            .iter()
            .map(|s| s.expose_secret().as_bytes().to_vec())
            .filter(|s| !s.is_empty())
            .collect();
        let verifier = match (secrets.is_empty(), self.insecure_skip_signature) {
            (false, _) => Some(Verifier::new(secrets, self.signature_tolerance_secs)),
            (true, true) => {
                tracing::warn!(
                    "WEBHOOK SIGNATURES ARE NOT CHECKED (--insecure-skip-signature): anyone who can reach \
                     this port can forge provider events"
                );
                None
            }
            (true, false) => anyhow::bail!(
                "no webhook secret configured: pass --webhook-secret (or PM_WEBHOOK_SECRETS), or \
                 --insecure-skip-signature for a local experiment"
            ),
        };
        Ok(IntakeConfig {
            verifier,
            max_body_bytes: self.max_body_bytes,
        })
    }
}

/// The Kafka cluster and the project's topics.
#[derive(Debug, clap::Args)]
pub(crate) struct KafkaArgs {
    /// Kafka bootstrap servers, `host:port[,host:port]`.
    #[arg(long = "kafka-brokers", env = "PM_KAFKA_BROKERS")]
    pub(crate) brokers: Option<String>,
    /// Prefix of every topic name (to keep environments apart on one cluster).
    #[arg(
        long = "kafka-topic-prefix",
        env = "PM_KAFKA_TOPIC_PREFIX",
        default_value = ""
    )]
    pub(crate) topic_prefix: String,
    /// Partitions of the topics created at start-up when missing.
    #[arg(
        long = "kafka-topic-partitions",
        env = "PM_KAFKA_TOPIC_PARTITIONS",
        default_value_t = 3
    )]
    pub(crate) topic_partitions: i32,
    /// Replication factor of the topics created at start-up [default: 3, capped at the
    /// number of brokers; 1 is logged as a warning].
    #[arg(long = "kafka-replication-factor", env = "PM_KAFKA_REPLICATION_FACTOR")]
    pub(crate) replication_factor: Option<i32>,
    /// `min.insync.replicas` of the topics created at start-up [default: one less than the
    /// replication factor, at least 1].
    #[arg(
        long = "kafka-min-insync-replicas",
        env = "PM_KAFKA_MIN_INSYNC_REPLICAS"
    )]
    pub(crate) min_insync_replicas: Option<i32>,
    /// Retention of the webhook topics created at start-up (e.g. `7d`) [default: the
    /// broker's].
    #[arg(long = "kafka-retention", env = "PM_KAFKA_RETENTION", value_parser = duration)]
    pub(crate) retention: Option<Duration>,
    /// Retention of the dead-letter topics created at start-up [default: unlimited, so a
    /// dead letter never expires unseen].
    #[arg(long = "kafka-dlq-retention", env = "PM_KAFKA_DLQ_RETENTION", value_parser = duration)]
    pub(crate) dlq_retention: Option<Duration>,
    /// A librdkafka property for every Kafka client, `key=value` (repeatable; wins over
    /// the file): security.protocol, sasl.*, ssl.* files, tuning.
    #[arg(long = "kafka-config", value_name = "KEY=VALUE", value_parser = property)]
    pub(crate) properties: Vec<(String, String)>,
    /// A file of librdkafka properties, one `key=value` a line (`#` starts a comment).
    #[arg(long = "kafka-config-file", env = "PM_KAFKA_CONFIG_FILE")]
    pub(crate) properties_file: Option<std::path::PathBuf>,
}

/// `key=value` of a librdkafka property.
fn property(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected key=value, got {s:?}"))?;
    let k = k.trim();
    if k.is_empty() {
        return Err(format!("empty property name in {s:?}"));
    }
    Ok((k.to_owned(), v.trim().to_owned()))
}

impl KafkaArgs {
    pub(crate) fn config(&self, client_id: &str) -> anyhow::Result<pm_kafka::KafkaConfig> {
        let brokers =
            self.brokers.clone().filter(|b| !b.is_empty()).context(
                "no Kafka brokers configured: pass --kafka-brokers or set PM_KAFKA_BROKERS",
            )?;
        let mut properties = Vec::new();
        if let Some(path) = &self.properties_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the Kafka config file {}", path.display()))?;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let p = property(line)
                    .map_err(|e| anyhow::anyhow!("{}, line {}: {e}", path.display(), n + 1))?;
                properties.push(p);
            }
        }
        properties.extend(self.properties.iter().cloned());
        Ok(pm_kafka::KafkaConfig::new(brokers, client_id).with_properties(properties))
    }

    /// How missing topics are created.
    pub(crate) fn topic_settings(&self) -> pm_kafka::topics::TopicSettings {
        pm_kafka::topics::TopicSettings {
            partitions: self.topic_partitions,
            replication_factor: self.replication_factor,
            min_insync_replicas: self.min_insync_replicas,
            retention: self.retention,
            dlq_retention: self.dlq_retention,
        }
    }

    pub(crate) fn topics(&self) -> pm_kafka::Topics {
        pm_kafka::Topics::with_prefix(&self.topic_prefix)
    }
}

/// Where and how the provider API is called.
#[derive(Debug, clap::Args)]
pub(crate) struct ProviderArgs {
    /// Base URL of the payment provider's API (capture, representments).
    #[arg(long, env = "PM_PROVIDER_URL", default_value = "http://127.0.0.1:3002")]
    pub(crate) provider_url: String,
    /// Timeout of one provider request.
    #[arg(long, env = "PM_PROVIDER_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub(crate) provider_timeout: Duration,
    /// Attempts per provider call (retries happen only on 5xx, timeouts and connection errors).
    #[arg(long, env = "PM_PROVIDER_ATTEMPTS", default_value_t = 3)]
    pub(crate) provider_attempts: u32,
}

impl ProviderArgs {
    pub(crate) fn client(&self) -> anyhow::Result<pm_provider::ProviderClient> {
        let config = pm_provider::ProviderConfig {
            base_url: self.provider_url.clone(),
            request_timeout: self.provider_timeout,
            max_attempts: self.provider_attempts,
            ..pm_provider::ProviderConfig::default()
        };
        pm_provider::ProviderClient::new(config).context("invalid provider settings")
    }
}

/// How open captures (the provider's answer lost) are told apart from running ones.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct CaptureArgs {
    /// A pending capture whose provider call started longer ago than this is presumed
    /// abandoned (its process died): a retry with the same idempotency key may take it
    /// over, and the reconciliation settles a capture the provider never saw as failed
    /// only once this long has passed. Must exceed the longest provider call
    /// (attempts × timeout + backoff).
    #[arg(long = "capture-stale-after", env = "PM_CAPTURE_STALE_AFTER", default_value = "30s", value_parser = duration)]
    pub(crate) stale_after: Duration,
}

impl CaptureArgs {
    pub(crate) fn settings(&self) -> pm_api::captures::ReconcileSettings {
        pm_api::captures::ReconcileSettings {
            stale_after: self.stale_after,
            batch: 500,
        }
    }

    /// Warns when a provider call could outlast `stale_after`: a retry could then take
    /// over a capture whose first call is still running (harmless, the key is the same)
    /// and the reconciliation could give up on a request still on its way.
    pub(crate) fn check_against(&self, provider: &ProviderArgs) {
        let longest = provider.provider_timeout * provider.provider_attempts
            + pm_provider::ProviderConfig::default().max_backoff * provider.provider_attempts;
        if self.stale_after <= longest {
            tracing::warn!(
                stale_after = ?self.stale_after,
                longest_provider_call = ?longest,
                "--capture-stale-after should exceed the longest provider call"
            );
        }
    }
}

/// The limits of one HTTP listener (serve-api, serve-ingest): what a slow or hostile
/// client, or more traffic than the service can take, may cost.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ServerArgs {
    /// Most requests worked on at once; one more is answered 503 with Retry-After at once
    /// (load shedding) instead of waiting in a queue. Health and metrics are not counted.
    #[arg(long, env = "PM_MAX_IN_FLIGHT", default_value_t = 256)]
    max_in_flight: usize,
    /// A request not answered within this is abandoned with 503 and Retry-After (its work
    /// rolls back; every write route is idempotent, so a retry is safe).
    #[arg(long, env = "PM_REQUEST_TIMEOUT", default_value = "30s", value_parser = duration)]
    request_timeout: Duration,
    /// A request body still arriving after this is refused with 408.
    #[arg(long, env = "PM_BODY_TIMEOUT", default_value = "10s", value_parser = duration)]
    body_timeout: Duration,
    /// A connection that has not sent a complete request head within this — a slow
    /// client, or an idle keep-alive connection — is closed.
    #[arg(long, env = "PM_HEADER_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub(crate) header_timeout: Duration,
    /// How long to wait for in-flight requests on shutdown.
    #[arg(long, env = "PM_SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = duration)]
    pub(crate) shutdown_timeout: Duration,
}

impl ServerArgs {
    pub(crate) fn limits(&self) -> pm_http::limits::Limits {
        pm_http::limits::Limits {
            max_in_flight: self.max_in_flight.max(1),
            request_timeout: self.request_timeout,
            body_timeout: self.body_timeout,
        }
    }
}

/// The API as its clients reach it (verify, the simulator's merchant actions, the load test).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ApiArgs {
    /// The API's base URL.
    #[arg(
        long = "api-url",
        env = "PM_API_URL",
        default_value = "http://127.0.0.1:3000"
    )]
    pub(crate) api_url: String,
    /// API key sent as `Authorization: Bearer` (`pmctl api-keys create`): scope `read`, and
    /// `operate` for the simulator's merchant actions.
    #[arg(long = "api-key", env = "PM_API_KEY", hide_env_values = true, value_parser = secret)]
    api_key: Option<SecretString>,
}

impl ApiArgs {
    pub(crate) fn access(&self) -> anyhow::Result<pm_sim::api::ApiAccess> {
        let access = pm_sim::api::ApiAccess::new(&self.api_url);
        match &self.api_key {
            Some(key) if !key.expose_secret().is_empty() => Ok(access
                .with_key(key.clone())
                .context("--api-key / PM_API_KEY")?),
            _ => Ok(access),
        }
    }
}

/// Parses an RFC 3339 time, or an age like `2h` (that long before now).
pub(crate) fn time_or_age(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    pm_domain::time::parse_rfc3339(s).or_else(|_| {
        let age = humantime::parse_duration(s)
            .map_err(|_| format!("expected RFC 3339 or an age like 2h (got {s:?})"))?;
        Ok(chrono::Utc::now() - chrono::Duration::from_std(age).map_err(|e| e.to_string())?)
    })
}
