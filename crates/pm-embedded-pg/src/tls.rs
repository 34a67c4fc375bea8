//! TLS on an embedded cluster's TCP connections.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::server_user::ServerUser;
use crate::EmbeddedError;

/// The copies inside the data directory, under the names PostgreSQL itself defaults to.
const CERT_FILE: &str = "server.crt";
const KEY_FILE: &str = "server.key";

/// The server's certificate and key, for [`EmbeddedOptions::tls`](crate::EmbeddedOptions::tls).
///
/// Both are PEM files. The certificate file holds the server's certificate first, followed by
/// any intermediate certificates clients need to reach their trusted CA; the key must not be
/// encrypted (nobody is there to type a passphrase). The names clients will connect by must be
/// in the certificate: a client that verifies the host name (`sslmode=verify-full`) connecting
/// to `localhost` needs `localhost` in it, and one connecting to `127.0.0.1` needs that address.
///
/// The cluster does not ask clients for certificates, and it still accepts connections without
/// TLS: whether to insist on TLS, and on which checks, is the client's choice (`sslmode`).
#[derive(Debug, Clone)]
pub struct EmbeddedTls {
    /// The server certificate (and chain), PEM.
    pub cert_file: PathBuf,
    /// Its private key, PEM, unencrypted.
    pub key_file: PathBuf,
}

/// Where the server finds its copies.
#[derive(Debug, Clone)]
pub(crate) struct InstalledTls {
    pub(crate) cert_file: PathBuf,
    pub(crate) key_file: PathBuf,
}

impl EmbeddedTls {
    /// Copies the certificate and key into `data_dir`, replacing copies from an earlier start.
    ///
    /// The server gets copies rather than the caller's paths because the caller's files are
    /// often not the server's to read (a key that root keeps in a private directory when the
    /// server runs as `postgres`), and because PostgreSQL refuses to start with a key file that
    /// others can read unless root owns it. Each copy belongs to the server's user with mode
    /// 0600, which satisfies both, and lives and dies with the data directory.
    pub(crate) fn install(
        &self,
        data_dir: &Path,
        user: ServerUser,
    ) -> Result<InstalledTls, EmbeddedError> {
        let cert_file = data_dir.join(CERT_FILE);
        let key_file = data_dir.join(KEY_FILE);
        copy_private(&self.cert_file, &cert_file, user)?;
        copy_private(&self.key_file, &key_file, user)?;
        Ok(InstalledTls {
            cert_file,
            key_file,
        })
    }
}

/// Copies `source` to `target` as a new file that only the server's user can read.
fn copy_private(source: &Path, target: &Path, user: ServerUser) -> Result<(), EmbeddedError> {
    let contents =
        std::fs::read(source).map_err(|error| EmbeddedError::io("read", source, error))?;
    // A fresh file, never an old one opened for writing: an existing file keeps its mode when
    // truncated, and `create_new` refuses to follow a link someone left at that name (the data
    // directory belongs to the server's user, and we may be root).
    match std::fs::remove_file(target) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(EmbeddedError::io("replace", target, error)),
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(target)
        .map_err(|error| EmbeddedError::io("create", target, error))?;
    file.write_all(&contents)
        .map_err(|error| EmbeddedError::io("write", target, error))?;
    user.take_ownership_of(&file, target)
}
