//! Flags shared by several subcommands. Every flag has an environment variable (flags
//! win), named as in the configuration contract of PRODUCT.md §3.3.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pm_domain::signature::{Verifier, DEFAULT_TOLERANCE_SECS};
use pm_http::intake::{IntakeConfig, DEFAULT_MAX_BODY_BYTES};
use pm_telemetry::LogFormat;
use secrecy::{ExposeSecret, SecretString};

use crate::secrets::Sources;

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
    /// Installs logging, and span export when `traces` says where to. The guard exports
    /// the spans still queued when it is dropped: keep it until the command finished.
    pub(crate) fn init(
        &self,
        traces: &TraceArgs,
        service: &str,
    ) -> anyhow::Result<Option<pm_telemetry::traces::TracesGuard>> {
        let format: LogFormat = self.format.parse().map_err(anyhow::Error::msg)?;
        let config =
            pm_telemetry::traces::TracesConfig::from_env(traces.otlp_endpoint.as_deref(), service)?;
        Ok(pm_telemetry::init_logging_and_traces(
            &self.filter,
            format,
            config.as_ref(),
        )?)
    }
}

/// Distributed tracing (global flag). The other standard variables are honoured too:
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the full URL, wins), `OTEL_SERVICE_NAME`
/// (default `pmctl-<subcommand>`), `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` and
/// `OTEL_TRACES_SAMPLER_ARG`.
#[derive(Debug, clap::Args)]
pub(crate) struct TraceArgs {
    /// OpenTelemetry collector to export spans to, over OTLP/HTTP with protobuf, e.g.
    /// `http://127.0.0.1:4318` (spans go to `<url>/v1/traces`). Tracing is off without it.
    #[arg(
        long = "otlp-endpoint",
        env = "OTEL_EXPORTER_OTLP_ENDPOINT",
        global = true
    )]
    otlp_endpoint: Option<String>,
}

impl TraceArgs {
    /// The collector named by flag or `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub(crate) fn otlp_endpoint(&self) -> Option<&str> {
        self.otlp_endpoint.as_deref()
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
    /// A file holding the database URL (or the systemd credential `database-url`).
    #[arg(long = "database-url-file", env = "PM_DATABASE_URL_FILE")]
    database_url_file: Option<PathBuf>,
    /// A file holding the database password, set into the URL (or the systemd credential
    /// `database-password`): the URL can then live in a plain configuration file.
    #[arg(long = "database-password-file", env = "PM_DATABASE_PASSWORD_FILE")]
    database_password_file: Option<PathBuf>,
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
    /// serve-api: PostgreSQL URLs of streaming read replicas (repeat the flag, or a comma
    /// list). The read routes use the least-lagged one in rotation (each its own pool of
    /// `--db-read-max-connections`), the primary when none is; writes and operator actions
    /// always use the primary. Their password is in the URL.
    #[arg(long = "database-replica-url", env = "PM_DATABASE_REPLICA_URL", hide_env_values = true, value_delimiter = ',', value_parser = secret)]
    replica_urls: Vec<SecretString>,
    /// serve-api: a replica whose replay is further behind than this (or that does not
    /// answer) is taken out of rotation until it catches up.
    #[arg(long = "replica-max-lag", env = "PM_REPLICA_MAX_LAG", default_value = "5s", value_parser = duration)]
    replica_max_lag: Duration,
}

impl DatabaseArgs {
    /// The URL from the flag, `PM_DATABASE_URL`, a file, the systemd credential, or
    /// `DATABASE_URL`; with the password of `--database-password-file` when given.
    pub(crate) fn url(&self) -> anyhow::Result<String> {
        let given = Sources {
            flag: "--database-url",
            value: self.database_url.as_ref(),
            file: self.database_url_file.as_deref(),
            credential: "database-url",
        }
        .resolve()?
        .map(|(url, _)| url.expose_secret().to_owned());
        let url = given
            .or_else(|| std::env::var("DATABASE_URL").ok().filter(|s| !s.is_empty()))
            .context("no database configured: pass --database-url or set PM_DATABASE_URL (or DATABASE_URL)")?;
        crate::secrets::remember(&url);
        let password = Sources {
            flag: "--database-password",
            value: None,
            file: self.database_password_file.as_deref(),
            credential: "database-password",
        }
        .resolve()?;
        match password {
            None => Ok(url),
            Some((password, _)) => with_password(&url, password.expose_secret()),
        }
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

    /// Where the service reads: `primary_reads` (the read pool of [`service_pools`]) and a
    /// pool per `--database-replica-url`, with the read pool's size and timeouts.
    ///
    /// [`service_pools`]: Self::service_pools
    pub(crate) fn read_pools(
        &self,
        application_name: &str,
        primary_reads: pm_storage::PgPool,
    ) -> anyhow::Result<pm_storage::replicas::ReadPools> {
        let mut replicas = Vec::with_capacity(self.replica_urls.len());
        for (i, url) in self.replica_urls.iter().enumerate() {
            let url = url.expose_secret();
            crate::secrets::remember(url);
            let opts = pm_storage::PoolOptions {
                max_connections: self.read_max_connections.max(1),
                application_name: format!("{application_name}-replica-{}", i + 1),
                statement_timeout: Some(self.statement_timeout),
                lock_timeout: Some(self.lock_timeout),
                ..Default::default()
            };
            let pool = pm_storage::connect(url, &opts).with_context(|| {
                format!("invalid replica URL {}", crate::secrets::redact_url(url))
            })?;
            replicas.push((replica_name(url), pool));
        }
        Ok(pm_storage::replicas::ReadPools::new(
            primary_reads,
            replicas,
            self.replica_max_lag,
        ))
    }
}

/// How logs and metrics name a replica: its host, port and database.
fn replica_name(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!(
            "{}:{}{}",
            u.host_str().unwrap_or("?"),
            u.port().unwrap_or(5432),
            u.path()
        ),
        Err(_) => "replica".to_owned(),
    }
}

/// `url` with its password replaced by `password`.
fn with_password(url: &str, password: &str) -> anyhow::Result<String> {
    let mut parsed = reqwest::Url::parse(url).map_err(|e| {
        anyhow::anyhow!(
            "the database URL {} is not a URL: {e}",
            crate::secrets::redact_url(url)
        )
    })?;
    parsed
        .set_password(Some(password))
        .map_err(|()| anyhow::anyhow!("the database URL has no host to set a password for"))?;
    Ok(parsed.to_string())
}

/// Parses `5s`, `250ms`, `90d`.
pub(crate) fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 500ms, 5s, 2m, 90d)"))
}

/// Wraps a secret flag value so that `Debug` never shows it.
pub(crate) fn secret(s: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(s))
}

/// The webhook signing secrets: the servers accept a signature by any of them, the
/// simulator and the load test sign with the first.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct WebhookSecretArgs {
    /// Webhook signing secret; repeat the flag (or comma-separate the variable) during a
    /// rotation: a signature from any of them passes (the simulator signs with the first).
    #[arg(
        long = "webhook-secret",
        env = "PM_WEBHOOK_SECRETS",
        value_delimiter = ',',
        hide_env_values = true,
        value_parser = secret
    )]
    secrets: Vec<SecretString>,
    /// A file of webhook secrets, one per line (`#` starts a comment); the servers re-read
    /// it on SIGHUP: rotate by adding the new secret, SIGHUP, and later removing the old
    /// one. The systemd credential `webhook-secrets` is used when neither is given.
    #[arg(long = "webhook-secrets-file", env = "PM_WEBHOOK_SECRETS_FILE")]
    secrets_file: Option<PathBuf>,
}

impl WebhookSecretArgs {
    /// The secrets (perhaps none), and the file they came from.
    fn resolve(&self) -> anyhow::Result<(Vec<Vec<u8>>, Option<PathBuf>)> {
        let values: Vec<Vec<u8>> = self
            .secrets
            .iter()
            .inspect(|s| crate::secrets::remember(s.expose_secret()))
            .map(|s| s.expose_secret().as_bytes().to_vec())
            .filter(|s| !s.is_empty())
            .collect();
        let file = match (&self.secrets_file, values.is_empty()) {
            (Some(file), false) => anyhow::bail!(
                "--webhook-secret and --webhook-secrets-file ({}) both given: pass one",
                file.display()
            ),
            (Some(file), true) => Some(file.clone()),
            (None, true) => crate::secrets::credential("webhook-secrets"),
            (None, false) => None,
        };
        match file {
            Some(file) => Ok((secrets_file(&file)?, Some(file))),
            None => Ok((values, None)),
        }
    }

    /// The secret to sign with.
    pub(crate) fn signing_secret(&self) -> anyhow::Result<Vec<u8>> {
        self.resolve()?.0.into_iter().next().context(
            "a webhook secret is needed to sign webhooks: --webhook-secret (PM_WEBHOOK_SECRETS) \
             or --webhook-secrets-file",
        )
    }
}

/// Webhook signature and body settings (serve-api, serve-ingest).
#[derive(Debug, clap::Args)]
pub(crate) struct WebhookArgs {
    #[command(flatten)]
    secrets: WebhookSecretArgs,
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

/// The webhook checks of a server, and what SIGHUP does to them.
#[derive(Debug)]
pub(crate) struct Intake {
    pub(crate) config: IntakeConfig,
    /// The file the secrets came from, re-read on SIGHUP.
    secrets_file: Option<PathBuf>,
}

impl WebhookArgs {
    pub(crate) fn intake(&self) -> anyhow::Result<Intake> {
        let (secrets, secrets_file) = self.secrets.resolve()?;
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
                "no webhook secret configured: pass --webhook-secret (or PM_WEBHOOK_SECRETS) or \
                 --webhook-secrets-file, or --insecure-skip-signature for a local experiment"
            ),
        };
        Ok(Intake {
            config: IntakeConfig {
                verifier,
                max_body_bytes: self.max_body_bytes,
            },
            secrets_file,
        })
    }
}

impl Intake {
    /// What SIGHUP does to the webhook secrets: re-read their file, if they came from
    /// one. A file that cannot be read, or holds no secret, is logged and the running
    /// secrets stay.
    pub(crate) fn reloader(&self) -> impl Fn() + Send + 'static {
        let (file, verifier) = (self.secrets_file.clone(), self.config.verifier.clone());
        move || match (&file, &verifier) {
            (Some(file), Some(verifier)) => match secrets_file(file) {
                Ok(secrets) => {
                    verifier.rotate(secrets);
                    tracing::info!(
                        accepted = verifier.secret_count(),
                        file = %file.display(),
                        "webhook secrets re-read"
                    );
                }
                Err(e) => tracing::error!(
                    error = format!("{e:#}"),
                    "webhook secrets NOT reloaded; the running ones stay"
                ),
            },
            _ => tracing::info!(
                "webhook secrets come from flags or variables: a change needs a restart \
                 (use --webhook-secrets-file to rotate with SIGHUP)"
            ),
        }
    }
}

/// The secrets of a webhook secrets file: one per line, blank lines and `#` comments
/// skipped; at least one.
fn secrets_file(path: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the webhook secrets file {}", path.display()))?;
    let secrets: Vec<Vec<u8>> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .inspect(|l| crate::secrets::remember(l))
        .map(|l| l.as_bytes().to_vec())
        .collect();
    anyhow::ensure!(
        !secrets.is_empty(),
        "the webhook secrets file {} holds no secret",
        path.display()
    );
    Ok(secrets)
}

/// The service token of `/internal/*` (serve-api checks it, serve-ingest's http sink
/// sends it).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct InternalTokenArgs {
    /// Service token of the API's /internal/* routes (Bearer): serve-api accepts it (without
    /// it those routes refuse every call), serve-ingest's http sink sends it.
    #[arg(long = "internal-token", env = "PM_INTERNAL_TOKEN", hide_env_values = true, value_parser = secret)]
    token: Option<SecretString>,
    /// A file holding the service token (or the systemd credential `internal-token`).
    #[arg(long = "internal-token-file", env = "PM_INTERNAL_TOKEN_FILE")]
    token_file: Option<PathBuf>,
}

impl InternalTokenArgs {
    pub(crate) fn token(&self) -> anyhow::Result<Option<SecretString>> {
        Ok(Sources {
            flag: "--internal-token",
            value: self.token.as_ref(),
            file: self.token_file.as_deref(),
            credential: "internal-token",
        }
        .resolve()?
        .map(|(token, _)| token))
    }
}

/// The admin UI (`/admin`) of serve-api.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct AdminArgs {
    /// Signs the admin UI's session cookies (at least 32 characters). Give every serve-api
    /// behind one address the same secret; without one, each process draws its own and its
    /// sessions end when it restarts.
    #[arg(long = "admin-session-secret", env = "PM_ADMIN_SESSION_SECRET", hide_env_values = true, value_parser = secret)]
    session_secret: Option<SecretString>,
    /// A file holding that secret (or the systemd credential `admin-session-secret`).
    #[arg(
        long = "admin-session-secret-file",
        env = "PM_ADMIN_SESSION_SECRET_FILE"
    )]
    session_secret_file: Option<PathBuf>,
    /// How long an admin UI session lasts from login (revoking its API key ends it sooner).
    #[arg(long = "admin-session-ttl", env = "PM_ADMIN_SESSION_TTL", default_value = "8h", value_parser = duration)]
    session_ttl: Duration,
}

impl AdminArgs {
    /// The admin UI's settings; `tls`: the listener terminates TLS.
    pub(crate) fn settings(&self, tls: bool) -> anyhow::Result<pm_api::AdminSettings> {
        let secret = Sources {
            flag: "--admin-session-secret",
            value: self.session_secret.as_ref(),
            file: self.session_secret_file.as_deref(),
            credential: "admin-session-secret",
        }
        .resolve()?
        .map(|(secret, _)| secret);
        if let Some(s) = &secret {
            anyhow::ensure!(
                s.expose_secret().len() >= 32,
                "--admin-session-secret must be at least 32 characters (it signs the admin UI's sessions)"
            );
        }
        anyhow::ensure!(
            self.session_ttl >= Duration::from_secs(60),
            "--admin-session-ttl must be at least 1m"
        );
        Ok(pm_api::AdminSettings {
            session_secret: secret,
            session_ttl: self.session_ttl,
            tls,
            dead_letters: None,
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
    pub(crate) properties: Vec<Property>,
    /// A file of librdkafka properties, one `key=value` a line (`#` starts a comment).
    #[arg(long = "kafka-config-file", env = "PM_KAFKA_CONFIG_FILE")]
    pub(crate) properties_file: Option<std::path::PathBuf>,
    /// A file holding the SASL password (`sasl.password`), or the systemd credential
    /// `kafka-sasl-password`; the rest of the SASL settings go in --kafka-config.
    #[arg(long = "kafka-sasl-password-file", env = "PM_KAFKA_SASL_PASSWORD_FILE")]
    pub(crate) sasl_password_file: Option<PathBuf>,
}

/// One librdkafka property; `Debug` hides the values of secret ones.
#[derive(Clone)]
pub(crate) struct Property(String, String);

impl std::fmt::Debug for Property {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if crate::secrets::is_secret_property(&self.0) {
            write!(f, "{}=***", self.0)
        } else {
            write!(f, "{}={}", self.0, self.1)
        }
    }
}

/// `key=value` of a librdkafka property.
fn property(s: &str) -> Result<Property, String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected key=value, got {s:?}"))?;
    let k = k.trim();
    if k.is_empty() {
        return Err(format!("empty property name in {s:?}"));
    }
    Ok(Property(k.to_owned(), v.trim().to_owned()))
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
                let Property(k, v) = property(line)
                    .map_err(|e| anyhow::anyhow!("{}, line {}: {e}", path.display(), n + 1))?;
                properties.push((k, v));
            }
        }
        properties.extend(self.properties.iter().map(|p| (p.0.clone(), p.1.clone())));
        for (k, v) in &properties {
            if crate::secrets::is_secret_property(k) {
                crate::secrets::remember(v);
            }
        }
        let password = Sources {
            flag: "--kafka-sasl-password",
            value: None,
            file: self.sasl_password_file.as_deref(),
            credential: "kafka-sasl-password",
        }
        .resolve()?;
        if let Some((password, _)) = password {
            properties.push((
                "sasl.password".to_owned(),
                password.expose_secret().to_owned(),
            ));
        }
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
        let defaults = pm_provider::ProviderConfig::default();
        let backoff =
            pm_domain::retry::Backoff::new(defaults.initial_backoff, defaults.max_backoff);
        let waits: Duration = (1..provider.provider_attempts)
            .map(|retry| backoff.longest(retry))
            .sum();
        let longest = provider.provider_timeout * provider.provider_attempts + waits;
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
    /// Serve HTTPS only, with this PEM certificate chain (leaf first). Re-read with the
    /// key on SIGHUP; connections already open keep theirs.
    #[arg(long, env = "PM_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// The certificate's PEM private key (readable by the service only) [default: the
    /// systemd credential `tls-key`, if passed].
    #[arg(long, env = "PM_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

impl ServerArgs {
    /// The listener's TLS, when `--tls-cert` is given; `client_ca` asks connections for
    /// a client certificate signed by it (optional for the connection; routes decide).
    pub(crate) fn tls(
        &self,
        client_ca: Option<&Path>,
    ) -> anyhow::Result<Option<Arc<pm_tls::ServerTls>>> {
        let Some(cert) = &self.tls_cert else {
            anyhow::ensure!(
                client_ca.is_none(),
                "--tls-client-ca needs TLS on the listener: pass --tls-cert and --tls-key"
            );
            return Ok(None);
        };
        let key = self
            .tls_key
            .clone()
            .or_else(|| crate::secrets::credential("tls-key"))
            .context(
                "--tls-cert needs its key: pass --tls-key (or the systemd credential tls-key)",
            )?;
        let tls = pm_tls::ServerTls::load(pm_tls::ServerTlsFiles {
            cert: cert.clone(),
            key,
            client_ca: client_ca.map(Path::to_owned),
        })?;
        Ok(Some(Arc::new(tls)))
    }

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
    /// A file holding the API key (or the systemd credential `api-key`).
    #[arg(long = "api-key-file", env = "PM_API_KEY_FILE")]
    api_key_file: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) tls: ApiTlsArgs,
}

/// How a client of the API checks it over HTTPS (and proves itself, for mutual TLS).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ApiTlsArgs {
    /// Trust only the CA certificates in this PEM file for an `https://` API URL (a
    /// private CA) instead of the public web roots.
    #[arg(long = "api-ca-file", env = "PM_API_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// A client certificate (PEM) to present to the API, for its `--tls-client-ca`.
    #[arg(
        long = "api-client-cert",
        env = "PM_API_CLIENT_CERT",
        requires = "client_key"
    )]
    client_cert: Option<PathBuf>,
    /// The client certificate's PEM private key.
    #[arg(
        long = "api-client-key",
        env = "PM_API_CLIENT_KEY",
        requires = "client_cert"
    )]
    client_key: Option<PathBuf>,
}

impl ApiTlsArgs {
    pub(crate) fn client_tls(&self) -> pm_tls::ClientTls {
        pm_tls::ClientTls {
            ca_file: self.ca_file.clone(),
            identity: self.client_cert.clone().zip(self.client_key.clone()),
        }
    }
}

impl ApiArgs {
    pub(crate) fn access(&self) -> anyhow::Result<pm_api_types::client::ApiAccess> {
        let access =
            pm_api_types::client::ApiAccess::new(&self.api_url).with_tls(&self.tls.client_tls())?;
        let key = Sources {
            flag: "--api-key",
            value: self.api_key.as_ref(),
            file: self.api_key_file.as_deref(),
            credential: "api-key",
        }
        .resolve()?;
        match key {
            Some((key, _)) => Ok(access.with_key(key).context("--api-key / PM_API_KEY")?),
            None => Ok(access),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_file_fills_in_or_replaces_the_urls_password() {
        let url = with_password(
            "postgres://app@db.internal:5432/payments?sslmode=verify-full",
            "p@ss:w/rd",
        )
        .unwrap();
        assert_eq!(
            url,
            "postgres://app:p%40ss%3Aw%2Frd@db.internal:5432/payments?sslmode=verify-full"
        );
        let replaced = with_password("postgres://app:old@db/payments", "new").unwrap();
        assert_eq!(replaced, "postgres://app:new@db/payments");
        let err = with_password("not a url with a password: old", "new").unwrap_err();
        assert!(!err.to_string().contains("old"), "{err}");
    }
}
