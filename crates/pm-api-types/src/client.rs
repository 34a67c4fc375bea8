//! The merchant API as its own clients reach it — the simulator's merchant actions,
//! `verify`, the load test: where it is, the API key to send and the TLS to check it with.

use std::fmt;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use secrecy::{ExposeSecret, SecretString};

/// Where the API is and which key to send (`Authorization: Bearer …`).
#[derive(Clone)]
pub struct ApiAccess {
    url: String,
    key: Option<SecretString>,
    tls: pm_tls::LoadedClientTls,
}

impl fmt::Debug for ApiAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiAccess")
            .field("url", &self.url)
            .field("key", &self.key.as_ref().map(|_| "[redacted]"))
            .field("tls", &self.tls)
            .finish()
    }
}

/// A key that cannot travel in a header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the API key must be visible ASCII characters (as `pmctl api-keys create` prints it)")]
pub struct InvalidApiKey;

impl ApiAccess {
    /// The API at `url` (e.g. `http://127.0.0.1:3000`), without a key.
    pub fn new(url: impl Into<String>) -> Self {
        ApiAccess {
            url: url.into().trim_end_matches('/').to_owned(),
            key: None,
            tls: pm_tls::LoadedClientTls::default(),
        }
    }

    /// The same API, checked over HTTPS with `tls` (a private CA, a client certificate).
    pub fn with_tls(mut self, tls: &pm_tls::ClientTls) -> Result<Self, pm_tls::TlsError> {
        self.tls = tls.load()?;
        Ok(self)
    }

    /// The same API, sending `key`.
    pub fn with_key(mut self, key: SecretString) -> Result<Self, InvalidApiKey> {
        let text = key.expose_secret();
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidApiKey);
        }
        self.key = Some(key);
        Ok(self)
    }

    /// The base URL, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A client builder whose requests carry the key (marked sensitive, so it never shows
    /// in reqwest's debug output).
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        let mut headers = HeaderMap::new();
        if let Some(key) = &self.key {
            // Checked by `with_key`: visible ASCII always makes a header value.
            if let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {}", key.expose_secret()))
            {
                value.set_sensitive(true);
                headers.insert(AUTHORIZATION, value);
            }
        }
        self.tls
            .apply(reqwest::Client::builder())
            .default_headers(headers)
    }
}
