//! A private, throw-away PostgreSQL cluster started from the machine's own PostgreSQL server
//! binaries (`initdb`, `postgres`).
//!
//! It is the database of last resort: the test harness uses it when no database URL is
//! configured, and `pmctl demo` uses it as its embedded default, so that neither needs a
//! PostgreSQL service that somebody has to install, start and configure first. It depends on
//! nothing of Payment Manager and must stay that way: it knows how to run a server, not what is
//! stored in it.
//!
//! The server must never outlive the process that started it, even when that process is killed
//! with `SIGKILL` or exits without running destructors (the test harness keeps its cluster in a
//! `static`, and statics are never dropped). Destructors alone cannot promise that, so
//! `postgres` runs under a small `sh` watchdog (see [`EmbeddedCluster`]) that stops it and
//! deletes its temporary directory as soon as the pipe from its owner closes — which the kernel
//! does for us however the owner dies.
//!
//! With [`EmbeddedOptions::tls`] it serves TLS from a certificate and key the caller made
//! (plain files: this crate knows nothing of where they come from), so that tests can prove
//! what clients check.
//!
//! [`EmbeddedCluster::start_with_standbys`] starts a primary with streaming standbys (each a
//! `pg_basebackup` copy following the primary's WAL, read-only), for tests of read replicas
//! and replication lag; [`EmbeddedOptions::logical_replication`] makes a cluster logical
//! decoding (Debezium) can read.
//!
//! [`EmbeddedOptions::settings`] passes further server parameters (WAL archiving to a backup
//! repository, say), and a data directory a point-in-time restore left in archive recovery is
//! started until it has promoted, so that the cluster `start` returns takes writes.
//!
//! PostgreSQL refuses to run as root. When this process is root (as tests and CI are), `initdb`
//! and `postgres` run as the `postgres` system user, which then owns the data directory.

mod binaries;
mod cluster;
mod error;
mod recovery;
mod server_user;
mod settings;
mod tls;
mod watchdog;

pub use binaries::{PgBinaries, BIN_DIR_ENV};
pub use cluster::{EmbeddedCluster, EmbeddedOptions};
pub use error::EmbeddedError;
pub use tls::EmbeddedTls;
