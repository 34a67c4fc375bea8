//! TLS for Payment Manager's HTTP listeners, and (feature `testing`) a throw-away
//! certificate authority for the tests of every TLS connection we make: listeners,
//! PostgreSQL, Kafka.
//!
//! One invariant shapes [`ServerTls`]: **a listener never serves without a valid
//! certificate, and a bad reload never takes the good one away.** Files are parsed and
//! the whole configuration built before anything is swapped, so a half-written key or a
//! certificate that does not match its key leaves the running configuration as it was
//! and is reported to the caller. Connections already open keep the configuration they
//! were accepted with; new connections get the new one. Nothing is dropped on reload.
//!
//! Only the `ring` crypto provider is compiled in, and it is passed explicitly, so the
//! process-wide default provider never matters.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

mod client;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use client::{ClientTls, LoadedClientTls};

pub use tokio_rustls::{server::TlsStream, TlsAcceptor};

/// Why a TLS configuration could not be built. Every variant names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificates in {path}: {reason}")]
    Certificates { path: PathBuf, reason: String },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("cannot read the private key in {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("the certificate in {cert} and the key in {key} do not go together: {reason}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("the client CA in {path} cannot verify client certificates: {reason}")]
    ClientCa { path: PathBuf, reason: String },
}

/// The PEM files a listener's TLS is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates that sign client certificates. When set, a client *may* present a
    /// certificate, and one that does not verify fails the handshake; whether a route
    /// *requires* one is the application's decision (see [`ClientCertificate`]).
    pub client_ca: Option<PathBuf>,
}

/// Set on a request (as an extension) when its connection presented a client certificate
/// that verified against the listener's client CA. Absent otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientCertificate;

/// A listener's TLS configuration, re-read from its files on [`reload`](Self::reload).
#[derive(Debug)]
pub struct ServerTls {
    files: ServerTlsFiles,
    current: RwLock<Arc<ServerConfig>>,
}

impl ServerTls {
    /// Reads and checks the files.
    pub fn load(files: ServerTlsFiles) -> Result<Self, TlsError> {
        let config = build(&files)?;
        Ok(Self {
            files,
            current: RwLock::new(Arc::new(config)),
        })
    }

    /// Re-reads the files; on any error the running configuration stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = Arc::new(build(&self.files)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = config;
        Ok(())
    }

    /// An acceptor with the configuration of this moment, for one new connection.
    pub fn acceptor(&self) -> TlsAcceptor {
        let config = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        TlsAcceptor::from(config)
    }

    /// Whether client certificates are verified (a client CA is configured).
    pub fn verifies_clients(&self) -> bool {
        self.files.client_ca.is_some()
    }

    pub fn files(&self) -> &ServerTlsFiles {
        &self.files
    }
}

/// Whether the connection behind `stream` presented a verified client certificate. With a
/// client CA configured, rustls fails the handshake of a certificate that does not verify,
/// so a certificate that is present at all is a verified one.
pub fn client_certificate<IO>(stream: &TlsStream<IO>) -> Option<ClientCertificate> {
    let (_, connection) = stream.get_ref();
    connection
        .peer_certificates()
        .filter(|chain| !chain.is_empty())
        .map(|_| ClientCertificate)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn build(files: &ServerTlsFiles) -> Result<ServerConfig, TlsError> {
    let chain = certificates(&files.cert)?;
    let key = private_key(&files.key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Mismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
            reason: e.to_string(),
        })?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let roots = root_store(path)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::ClientCa {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Mismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
            reason: e.to_string(),
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Every certificate in a PEM file, in order.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let fail = |reason: String| TlsError::Certificates {
        path: path.to_owned(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(chain)
}

/// The first private key in a PEM file.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Key {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// A root store holding every certificate of a PEM file.
pub fn root_store(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path)? {
        roots.add(cert).map_err(|e| TlsError::ClientCa {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestCa;

    #[test]
    fn loads_a_pair_and_refuses_a_mismatched_one() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("pm-tls test CA");
        let a = ca.server(&["localhost"]).write(dir.path(), "a");
        let b = ca.server(&["localhost"]).write(dir.path(), "b");
        ServerTls::load(ServerTlsFiles {
            cert: a.cert.clone(),
            key: a.key.clone(),
            client_ca: None,
        })
        .unwrap();
        let err = ServerTls::load(ServerTlsFiles {
            cert: a.cert.clone(),
            key: b.key.clone(),
            client_ca: None,
        })
        .unwrap_err();
        assert!(matches!(err, TlsError::Mismatch { .. }), "{err}");
    }

    #[test]
    fn a_bad_reload_keeps_the_running_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("pm-tls test CA");
        let pair = ca.server(&["localhost"]).write(dir.path(), "server");
        let tls = ServerTls::load(ServerTlsFiles {
            cert: pair.cert.clone(),
            key: pair.key.clone(),
            client_ca: Some(ca.write_cert(dir.path())),
        })
        .unwrap();
        assert!(tls.verifies_clients());
        let before = Arc::as_ptr(&tls.current.read().unwrap());
        std::fs::write(&pair.key, "-----BEGIN PRIVATE KEY-----\ntruncated").unwrap();
        let err = tls.reload().unwrap_err();
        assert!(matches!(err, TlsError::Key { .. }), "{err}");
        assert_eq!(Arc::as_ptr(&tls.current.read().unwrap()), before);

        // A good pair swaps the configuration.
        let fresh = ca.server(&["localhost"]).write(dir.path(), "server");
        assert_eq!(fresh.key, pair.key);
        tls.reload().unwrap();
        assert_ne!(Arc::as_ptr(&tls.current.read().unwrap()), before);
    }

    #[test]
    fn an_empty_certificate_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let err = certificates(&empty).unwrap_err();
        assert!(err.to_string().contains("empty.pem"), "{err}");
    }
}
