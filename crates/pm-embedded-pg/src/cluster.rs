//! Starting, using and stopping one embedded cluster.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use tokio::time::Instant;

use crate::server_user::ServerUser;
use crate::watchdog::Watchdog;
use crate::{EmbeddedError, PgBinaries};

/// How long a started server gets to accept its first connection. Generous because CI machines
/// are slow and busy; a healthy start takes well under a second.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often readiness is probed while waiting.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// A single connection attempt; a server that is up answers in milliseconds.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How many free ports to try: another process can take the port between our choosing it and
/// the server binding it.
const MAX_ATTEMPTS: u32 = 4;
/// How long `stop()` waits for the fast shutdown and the clean-up.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// The server's log, inside its data directory.
const LOG_FILE: &str = "postgres.log";
/// How many log lines an error message quotes.
const LOG_TAIL_LINES: usize = 25;
/// Room for the longest socket file name (`/.s.PGSQL.65535.lock`) within the 107 bytes a Unix
/// socket path may have.
const MAX_SOCKET_DIR_LEN: usize = 107 - 21;
/// The superuser `initdb` creates.
const SUPERUSER: &str = "postgres";
/// Enough for a test suite's parallel pools plus the demo's services.
const MAX_CONNECTIONS: u32 = 200;

/// How to start an [`EmbeddedCluster`]. The default is a fresh, fast, non-durable cluster in a
/// temporary directory on a free port — what tests want.
#[derive(Debug, Clone, Default)]
pub struct EmbeddedOptions {
    /// The data directory. An already initialised one is reused with its data; an empty or
    /// missing one is initialised. `None` means a fresh temporary directory that is deleted when
    /// the cluster stops. When running as root, the directory is handed to the `postgres` user,
    /// which must be able to reach it (its parent directories must be searchable by that user).
    pub data_dir: Option<PathBuf>,
    /// `false` turns off `fsync`, `synchronous_commit` and `full_page_writes`: much faster, and
    /// a crash of the machine may lose or corrupt the data — fine for throw-away clusters.
    pub durable: bool,
    /// The TCP port on 127.0.0.1. `None` picks a free one (and retries on another if it is
    /// taken before the server binds it).
    pub port: Option<u16>,
}

/// A PostgreSQL server running from the machine's own binaries, owned by this process.
///
/// The server is started under a watchdog shell that holds a pipe from this process: when the
/// pipe closes — [`stop`](Self::stop), drop, or this process dying in any way, `SIGKILL`
/// included — the watchdog shuts the server down (fast shutdown) and then deletes the data
/// directory if it was a temporary one. So it is safe to keep a cluster in a `static`.
///
/// It listens on 127.0.0.1 only and on a Unix socket inside its data directory; the superuser
/// `postgres` connects without a password.
#[derive(Debug)]
pub struct EmbeddedCluster {
    port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
    major_version: u32,
    temporary: bool,
    watchdog: Option<Watchdog>,
}

impl EmbeddedCluster {
    /// Finds the server binaries, initialises the data directory if needed, starts the server
    /// and waits until it accepts connections.
    pub async fn start(options: EmbeddedOptions) -> Result<Self, EmbeddedError> {
        let (binaries, user) = tokio::task::spawn_blocking(|| {
            Ok::<_, EmbeddedError>((PgBinaries::discover()?, ServerUser::detect()?))
        })
        .await??;

        let mut attempt = 0;
        loop {
            attempt += 1;
            let launch = Launch {
                binaries: binaries.clone(),
                user,
                options: options.clone(),
                port: match options.port {
                    Some(port) => port,
                    None => free_port()?,
                },
            };
            let cluster = tokio::task::spawn_blocking(move || launch.run()).await??;
            match cluster.wait_until_ready().await {
                Ok(()) => {
                    tracing::info!(
                        port = cluster.port,
                        data_dir = %cluster.data_dir.display(),
                        version = cluster.major_version,
                        "embedded PostgreSQL is ready"
                    );
                    return Ok(cluster);
                }
                Err(NotStarted::Exited { log_tail, .. })
                    if options.port.is_none()
                        && attempt < MAX_ATTEMPTS
                        && port_was_taken(&log_tail) =>
                {
                    tracing::warn!(
                        port = cluster.port,
                        "embedded PostgreSQL could not bind its port; retrying on another"
                    );
                    // Dropping the cluster lets the watchdog delete a temporary directory; the
                    // next attempt initialises a new one.
                    drop(cluster);
                }
                Err(NotStarted::Exited { status, log_tail }) => {
                    return Err(EmbeddedError::ExitedDuringStartup {
                        status,
                        attempts: attempt,
                        log_path: cluster.log_path.clone(),
                        log_tail,
                    });
                }
                Err(NotStarted::TimedOut {
                    last_error,
                    log_tail,
                }) => {
                    return Err(EmbeddedError::NotReady {
                        timeout: READY_TIMEOUT,
                        last_error,
                        log_path: cluster.log_path.clone(),
                        log_tail,
                    });
                }
            }
        }
    }

    /// Shuts the server down (fast shutdown: open transactions are aborted and clients
    /// disconnected) and waits until it has exited and a temporary data directory is deleted.
    pub async fn stop(mut self) -> Result<(), EmbeddedError> {
        let Some(mut child) = self.watchdog.take().and_then(Watchdog::release) else {
            return Ok(());
        };
        // The shell exits only after the server has exited and the directory is deleted.
        let waited = tokio::time::timeout(
            STOP_TIMEOUT,
            tokio::task::spawn_blocking(move || child.wait()),
        )
        .await;
        match waited {
            Err(_elapsed) => Err(EmbeddedError::StopTimeout(STOP_TIMEOUT)),
            Ok(joined) => joined?
                .map(drop)
                .map_err(|source| EmbeddedError::spawn("wait for the watchdog shell", source)),
        }
    }

    /// The superuser's URL for the `postgres` database:
    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn admin_url(&self) -> String {
        self.url_for("postgres")
    }

    /// The superuser's URL for the database `db_name` (which this does not create).
    pub fn url_for(&self, db_name: &str) -> String {
        format!(
            "postgres://{SUPERUSER}@127.0.0.1:{}/{}",
            self.port,
            percent_encode(db_name)
        )
    }

    /// The TCP port the server listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory; it also holds the Unix socket and the server log.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server's log file, worth quoting when something about the server goes wrong.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The major version of the running server (15 for PostgreSQL 15.x).
    pub fn major_version(&self) -> u32 {
        self.major_version
    }

    /// Whether the data directory is a temporary one, deleted when the cluster stops.
    pub fn is_temporary(&self) -> bool {
        self.temporary
    }

    async fn wait_until_ready(&self) -> Result<(), NotStarted> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let connect_options = PgConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port)
            .username(SUPERUSER)
            .database("postgres")
            // Probing is routine; failed probes are expected while the server starts.
            .disable_statement_logging();
        loop {
            // A probe can fail because the server is still starting ("the database system is
            // starting up", connection refused) or because it died; only the watchdog knows.
            let last_error =
                match tokio::time::timeout(CONNECT_TIMEOUT, connect_options.connect()).await {
                    Ok(Ok(connection)) => {
                        // Failing to say goodbye cleanly changes nothing about readiness.
                        let _ = connection.close().await;
                        return Ok(());
                    }
                    Ok(Err(error)) => error.to_string(),
                    Err(_elapsed) => format!("no answer within {CONNECT_TIMEOUT:?}"),
                };
            if let Some(status) = self
                .watchdog
                .as_ref()
                .and_then(Watchdog::server_exit_status)
            {
                return Err(NotStarted::Exited {
                    status,
                    log_tail: self.log_tail(),
                });
            }
            if Instant::now() >= deadline {
                return Err(NotStarted::TimedOut {
                    last_error,
                    log_tail: self.log_tail(),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    fn log_tail(&self) -> String {
        match std::fs::read(&self.log_path) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
            }
            Err(error) => format!("(could not read the log: {error})"),
        }
    }
}

/// Why a launched server did not become ready.
enum NotStarted {
    Exited {
        status: i32,
        log_tail: String,
    },
    TimedOut {
        last_error: String,
        log_tail: String,
    },
}

/// One attempt to bring a server up; blocking, so it runs on tokio's blocking pool.
struct Launch {
    binaries: PgBinaries,
    user: ServerUser,
    options: EmbeddedOptions,
    port: u16,
}

impl Launch {
    fn run(self) -> Result<EmbeddedCluster, EmbeddedError> {
        // Until the watchdog is running, `temp` deletes the directory if anything fails.
        let (data_dir, temp) = match &self.options.data_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|source| EmbeddedError::io("create directory", dir, source))?;
                let dir = std::fs::canonicalize(dir)
                    .map_err(|source| EmbeddedError::io("resolve", dir, source))?;
                (dir, None)
            }
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("pm-embedded-pg-")
                    .tempdir()
                    .map_err(|source| {
                        EmbeddedError::io("create a directory in", std::env::temp_dir(), source)
                    })?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };

        if data_dir.join("PG_VERSION").is_file() {
            self.check_version(&data_dir)?;
        } else {
            self.user.take_ownership(&data_dir)?;
            self.initdb(&data_dir)?;
        }

        let log_path = data_dir.join(LOG_FILE);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|source| EmbeddedError::io("open the server log", &log_path, source))?;
        self.user.take_ownership(&log_path)?;

        let watchdog = Watchdog::spawn(
            self.server_command_line(&data_dir),
            temp.as_ref().map(tempfile::TempDir::path),
            log,
        )?;
        // From here on the watchdog deletes the temporary directory, even if we are killed.
        let temporary = temp.map(tempfile::TempDir::keep).is_some();

        Ok(EmbeddedCluster {
            port: self.port,
            data_dir,
            log_path,
            major_version: self.binaries.major_version(),
            temporary,
            watchdog: Some(watchdog),
        })
    }

    fn initdb(&self, data_dir: &Path) -> Result<(), EmbeddedError> {
        let output = self
            .user
            .command(&self.binaries.initdb())
            .args([
                "-U",
                SUPERUSER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "-D",
            ])
            .arg(data_dir)
            // The server user may not be allowed into our working directory.
            .current_dir("/")
            .env_remove("PGDATA")
            .stdin(Stdio::null())
            .output()
            .map_err(|source| EmbeddedError::spawn(self.binaries.initdb().display(), source))?;
        if output.status.success() {
            return Ok(());
        }
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        let lines: Vec<&str> = text.lines().collect();
        Err(EmbeddedError::Initdb {
            status: output.status,
            data_dir: data_dir.to_path_buf(),
            output: lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n"),
        })
    }

    /// A reused directory must match the binaries: a server refuses another major version's
    /// files, and saying so up front beats a FATAL line in the log.
    fn check_version(&self, data_dir: &Path) -> Result<(), EmbeddedError> {
        let path = data_dir.join("PG_VERSION");
        let found = std::fs::read_to_string(&path)
            .map_err(|source| EmbeddedError::io("read", &path, source))?
            .trim()
            .to_owned();
        let found_major = found
            .split('.')
            .next()
            .and_then(|major| major.parse::<u32>().ok());
        if found_major == Some(self.binaries.major_version()) {
            Ok(())
        } else {
            Err(EmbeddedError::VersionMismatch {
                data_dir: data_dir.to_path_buf(),
                found,
                expected: self.binaries.major_version(),
            })
        }
    }

    /// Settings go on the command line rather than into `postgresql.conf`, so a reused
    /// directory always runs with this run's port and durability.
    fn server_command_line(&self, data_dir: &Path) -> Vec<OsString> {
        let mut argv = self.user.command_line(&self.binaries.postgres());
        argv.push("-D".into());
        argv.push(data_dir.into());
        // A long data directory path cannot hold a socket; TCP alone is enough for us.
        let socket_dir = if data_dir.as_os_str().len() <= MAX_SOCKET_DIR_LEN {
            data_dir.as_os_str().to_owned()
        } else {
            OsString::new()
        };
        let mut settings: Vec<(&str, OsString)> = vec![
            ("listen_addresses", "127.0.0.1".into()),
            ("port", self.port.to_string().into()),
            ("unix_socket_directories", socket_dir),
            ("max_connections", MAX_CONNECTIONS.to_string().into()),
            ("timezone", "UTC".into()),
            ("log_timezone", "UTC".into()),
        ];
        if !self.options.durable {
            for name in ["fsync", "synchronous_commit", "full_page_writes"] {
                settings.push((name, "off".into()));
            }
        }
        for (name, value) in settings {
            let mut setting = OsString::from(format!("{name}="));
            setting.push(value);
            argv.push("-c".into());
            argv.push(setting);
        }
        argv
    }
}

/// A port that was free a moment ago. The listener is closed before the server binds, so
/// another process can take it in between; `start` retries when that happens.
fn free_port() -> Result<u16, EmbeddedError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|source| EmbeddedError::io("find a free port on", "127.0.0.1", source))
}

fn port_was_taken(log_tail: &str) -> bool {
    log_tail.contains("Address already in use")
        || log_tail.contains("could not create any TCP/IP sockets")
}

/// Database names may contain anything; a URL path may not.
fn percent_encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(byte).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_encoded_for_urls() {
        assert_eq!(percent_encode("pm_test_01"), "pm_test_01");
        assert_eq!(percent_encode("a b/ü"), "a%20b%2F%C3%BC");
    }

    #[test]
    fn recognises_a_taken_port_in_the_log() {
        let log = "LOG:  could not bind IPv4 address \"127.0.0.1\": Address already in use\n\
                   FATAL:  could not create any TCP/IP sockets";
        assert!(port_was_taken(log));
        assert!(!port_was_taken(
            "FATAL:  data directory has invalid permissions"
        ));
    }
}
