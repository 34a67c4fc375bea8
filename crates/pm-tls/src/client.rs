//! How our HTTP clients reach a service over TLS: which CA to trust and, for mutual TLS,
//! which certificate to present. Shared by every client of our own services (ingest's
//! forwarding to the API, the tools that call the API).

use std::path::{Path, PathBuf};

use crate::TlsError;

/// A client's TLS settings. The default trusts the public web roots and presents no
/// certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// Trust only the CA certificates in this PEM file (a private CA), instead of the
    /// public web roots.
    pub ca_file: Option<PathBuf>,
    /// A client certificate chain and its key (PEM), presented when the server asks.
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl ClientTls {
    /// Reads and checks the files now, so a missing or bad file fails at start-up rather
    /// than at the first request.
    pub fn load(&self) -> Result<LoadedClientTls, TlsError> {
        let mut loaded = LoadedClientTls::default();
        if let Some(path) = &self.ca_file {
            // Checked with our parser first, for an error that names the file.
            crate::certificates(path)?;
            let pem = read(path, |reason| TlsError::Certificates {
                path: path.clone(),
                reason,
            })?;
            let roots = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                TlsError::Certificates {
                    path: path.clone(),
                    reason: e.to_string(),
                }
            })?;
            loaded.roots = Some(roots);
        }
        if let Some((cert, key)) = &self.identity {
            crate::certificates(cert)?;
            crate::private_key(key)?;
            let mut pem = read(cert, |reason| TlsError::Certificates {
                path: cert.clone(),
                reason,
            })?;
            pem.push(b'\n');
            pem.extend(read(key, |reason| TlsError::Key {
                path: key.clone(),
                reason,
            })?);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| TlsError::Mismatch {
                cert: cert.clone(),
                key: key.clone(),
                reason: e.to_string(),
            })?;
            loaded.identity = Some(identity);
        }
        Ok(loaded)
    }
}

/// [`ClientTls`] read into memory, ready for any number of clients.
#[derive(Clone, Default)]
pub struct LoadedClientTls {
    roots: Option<Vec<reqwest::Certificate>>,
    identity: Option<reqwest::Identity>,
}

impl std::fmt::Debug for LoadedClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedClientTls")
            .field("private_roots", &self.roots.as_ref().map(Vec::len))
            .field("identity", &self.identity.is_some())
            .finish()
    }
}

impl LoadedClientTls {
    /// `builder` with these settings (rustls; a private CA replaces the web roots).
    pub fn apply(&self, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        let mut builder = builder.use_rustls_tls();
        if let Some(roots) = &self.roots {
            builder = builder.tls_built_in_root_certs(false);
            for cert in roots {
                builder = builder.add_root_certificate(cert.clone());
            }
        }
        if let Some(identity) = &self.identity {
            builder = builder.identity(identity.clone());
        }
        builder
    }
}

fn read(path: &Path, fail: impl FnOnce(String) -> TlsError) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| fail(e.to_string()))
}
