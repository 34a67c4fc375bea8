//! Where the provider is and how patiently to call it.

use std::time::Duration;

use reqwest::Url;

/// Settings of a [`ProviderClient`](super::ProviderClient). No secrets: the provider's API
/// as specified is not authenticated, so `Debug` is safe to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderConfig {
    /// Base URL of the provider, e.g. `http://127.0.0.1:3002`; a path prefix is kept.
    pub base_url: String,
    /// Longest wait for a TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Longest wait for one whole attempt: connect, send, and read the response body.
    pub request_timeout: Duration,
    /// Attempts per call including the first; at least 1 (1 means never retry).
    pub max_attempts: u32,
    /// Delay before the first retry; doubles for each further retry.
    pub initial_backoff: Duration,
    /// Cap on the doubling delay. Jitter adds up to half of the delay again on top.
    pub max_backoff: Duration,
}

impl Default for ProviderConfig {
    fn default() -> Self {
        ProviderConfig {
            base_url: "http://127.0.0.1:3002".to_owned(),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            max_attempts: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// Why a [`ProviderConfig`] could not become a client.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The base URL is not an absolute `http`/`https` URL.
    #[error("provider base URL {url:?} is invalid: {reason}")]
    BaseUrl {
        /// The URL as configured.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A setting is out of range.
    #[error("invalid provider setting: {0}")]
    Invalid(&'static str),
    /// reqwest could not build its client (e.g. the TLS backend failed to initialise).
    #[error("could not build the provider HTTP client")]
    HttpClient(#[source] reqwest::Error),
}

impl ProviderConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_attempts == 0 {
            return Err(ConfigError::Invalid("max_attempts must be at least 1"));
        }
        // A zero timeout would make every call fail, which is never what was meant.
        if self.connect_timeout.is_zero() || self.request_timeout.is_zero() {
            return Err(ConfigError::Invalid("timeouts must be greater than zero"));
        }
        Ok(())
    }

    /// The absolute URL of the API path `path` (which starts with `/`).
    pub(super) fn endpoint(&self, path: &str) -> Result<Url, ConfigError> {
        let invalid = |reason: String| ConfigError::BaseUrl {
            url: self.base_url.clone(),
            reason,
        };
        // Plain concatenation rather than `Url::join`, which would drop a path prefix such as
        // `https://gateway.example/provider` when joined with an absolute path.
        let url = Url::parse(&format!("{}{path}", self.base_url.trim_end_matches('/')))
            .map_err(|e| invalid(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https".to_owned()));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("must not have a query or a fragment".to_owned()));
        }
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_base(base: &str) -> ProviderConfig {
        ProviderConfig {
            base_url: base.to_owned(),
            ..ProviderConfig::default()
        }
    }

    #[test]
    fn endpoints_keep_a_path_prefix_and_ignore_a_trailing_slash() {
        let url = with_base("https://gw.example/provider/").endpoint("/api/v1/capture");
        assert_eq!(
            url.map(String::from).ok().as_deref(),
            Some("https://gw.example/provider/api/v1/capture")
        );
        let url = ProviderConfig::default().endpoint("/api/v1/capture");
        assert_eq!(
            url.map(String::from).ok().as_deref(),
            Some("http://127.0.0.1:3002/api/v1/capture")
        );
    }

    #[test]
    fn bad_base_urls_and_settings_are_rejected() {
        for base in ["", "127.0.0.1:3002", "ftp://host", "http://host?x=1"] {
            assert!(
                matches!(
                    with_base(base).endpoint("/p"),
                    Err(ConfigError::BaseUrl { .. })
                ),
                "{base:?} should be rejected"
            );
        }
        let no_attempts = ProviderConfig {
            max_attempts: 0,
            ..ProviderConfig::default()
        };
        assert!(matches!(
            no_attempts.validate(),
            Err(ConfigError::Invalid(_))
        ));
        let no_timeout = ProviderConfig {
            request_timeout: Duration::ZERO,
            ..ProviderConfig::default()
        };
        assert!(matches!(
            no_timeout.validate(),
            Err(ConfigError::Invalid(_))
        ));
    }
}
