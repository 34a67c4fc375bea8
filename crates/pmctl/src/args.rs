//! Flags shared by several subcommands. Every flag has an environment variable (flags
//! win), named as in the configuration contract of PRODUCT.md §3.3.

use std::time::Duration;

use anyhow::Context;
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
    /// also accepted. The password is never logged.
    #[arg(long = "database-url", env = "PM_DATABASE_URL", hide_env_values = true, value_parser = secret)]
    database_url: Option<SecretString>,
    /// Largest number of pooled database connections.
    #[arg(
        long = "db-max-connections",
        env = "PM_DB_MAX_CONNECTIONS",
        default_value_t = 16
    )]
    max_connections: u32,
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

    pub(crate) fn pool(&self, application_name: &str) -> anyhow::Result<pm_storage::PgPool> {
        let opts = pm_storage::PoolOptions {
            max_connections: self.max_connections,
            application_name: application_name.to_owned(),
            ..Default::default()
        };
        pm_storage::connect(&self.url()?, &opts).context("invalid database URL")
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
