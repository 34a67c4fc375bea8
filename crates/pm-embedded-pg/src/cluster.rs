//! Starting, using and stopping one embedded cluster.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{ConnectOptions, Connection};
use tokio::time::Instant;

use crate::recovery::{self, Recovery, RECOVERY_TIMEOUT};
use crate::server_user::ServerUser;
use crate::tls::InstalledTls;
use crate::watchdog::Watchdog;
use crate::{EmbeddedError, EmbeddedTls, PgBinaries};

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
/// The module loaded at start when the installation has it: per-statement statistics.
const STATEMENT_STATISTICS: &str = "pg_stat_statements";

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
    /// The TCP port, the same on every address the server listens on. `None` picks a free one
    /// (and retries on another if it is taken before the server binds it).
    pub port: Option<u16>,
    /// Serve TLS (`ssl=on`) with this certificate and key, which the cluster copies into its
    /// data directory (see [`EmbeddedTls`]). `None`, the default, leaves TLS off.
    ///
    /// With TLS the server listens on `::1` as well as `127.0.0.1` when the machine has an
    /// IPv6 loopback: a client that verifies the host name must connect by a name the
    /// certificate holds, in practice `localhost`, and resolvers answer `::1` first on many
    /// machines. Without `::1` such a client would try a port there that may belong to another
    /// process (or to nobody, and only then fall back to `127.0.0.1`), so the cluster takes
    /// the port on both addresses and, before `start` returns, checks that both reach it.
    pub tls: Option<EmbeddedTls>,
    /// Run with `wal_level = logical`, so that logical replication slots can be made — what
    /// Debezium (`scripts/debezium.sh`) reads the outbox through. It writes a little more
    /// WAL; off by default.
    pub logical_replication: bool,
    /// Start as a streaming standby of the primary on this port of 127.0.0.1 (another
    /// embedded cluster, whose superuser may replicate without a password): a fresh data
    /// directory is copied from it with `pg_basebackup` instead of being initialised, and the
    /// server follows it read-only (hot standby). See [`EmbeddedCluster::start_standby`].
    /// A reused data directory is started as it is.
    pub standby_of: Option<u16>,
    /// Further server parameters, passed as `-c name=value` after the cluster's own, so they
    /// override its choices (`max_connections`, `wal_level`, `shared_preload_libraries`, the
    /// durability settings); e.g. `archive_mode = on` with an `archive_command` to ship WAL to
    /// a backup repository. Checked before anything starts: a name must be a parameter name,
    /// and where the server listens and its TLS (`port`, `listen_addresses`,
    /// `unix_socket_directories`, `ssl*`) are the cluster's to decide — use [`Self::port`] and
    /// [`Self::tls`]. Like every setting here they apply to this start only: nothing is
    /// written into the data directory. Standbys started by
    /// [`EmbeddedCluster::start_with_standbys`] do not inherit them.
    pub settings: Vec<(String, String)>,
}

/// A PostgreSQL server running from the machine's own binaries, owned by this process.
///
/// The server is started under a watchdog shell that holds a pipe from this process: when the
/// pipe closes — [`stop`](Self::stop), drop, or this process dying in any way, `SIGKILL`
/// included — the watchdog shuts the server down (fast shutdown) and then deletes the data
/// directory if it was a temporary one. So it is safe to keep a cluster in a `static`.
///
/// It listens on the loopback addresses only (127.0.0.1, and with TLS also ::1, see
/// [`EmbeddedOptions::tls`]) and on a Unix socket inside its data directory; the superuser
/// `postgres` connects without a password. It loads `pg_stat_statements` when the
/// installation has the module (the extension itself is created by whoever reads it).
///
/// A reused data directory holding `recovery.signal` (and no `standby.signal`) — what a
/// point-in-time restore leaves, with its recovery target in `postgresql.auto.conf` — is in
/// archive recovery: `start` returns only once the server has replayed to its target and
/// promoted, so the cluster it returns takes writes. A recovery that pauses at its target
/// instead is an error ([`EmbeddedError::RecoveryPaused`]).
#[derive(Debug)]
pub struct EmbeddedCluster {
    port: u16,
    addresses: Vec<IpAddr>,
    tls: bool,
    data_dir: PathBuf,
    log_path: PathBuf,
    /// Where this start's lines begin in a log that a reused directory keeps across starts.
    log_start: u64,
    major_version: u32,
    temporary: bool,
    /// Started in archive recovery: ready only once promoted.
    recovering: bool,
    watchdog: Option<Watchdog>,
}

impl EmbeddedCluster {
    /// Finds the server binaries, initialises the data directory if needed, starts the server
    /// and waits until it accepts connections — and, for a directory in archive recovery,
    /// until it has promoted (see [`EmbeddedCluster`]).
    pub async fn start(options: EmbeddedOptions) -> Result<Self, EmbeddedError> {
        crate::settings::validate(&options.settings)?;
        let (binaries, user) = tokio::task::spawn_blocking(|| {
            Ok::<_, EmbeddedError>((PgBinaries::discover()?, ServerUser::detect()?))
        })
        .await??;

        let mut attempt = 0;
        loop {
            attempt += 1;
            let addresses = listen_addresses(&options);
            let launch = Launch {
                binaries: binaries.clone(),
                user,
                options: options.clone(),
                port: match options.port {
                    Some(port) => port,
                    None => free_port(&addresses)?,
                },
                addresses,
            };
            let cluster = tokio::task::spawn_blocking(move || launch.run()).await??;
            match cluster.wait_until_ready().await {
                Ok(()) => {
                    tracing::info!(
                        port = cluster.port,
                        addresses = ?cluster.addresses,
                        tls = cluster.tls,
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
                Err(NotStarted::AddressTaken { address, detail })
                    if options.port.is_none() && attempt < MAX_ATTEMPTS =>
                {
                    tracing::warn!(
                        port = cluster.port,
                        %address,
                        %detail,
                        "embedded PostgreSQL is not alone on its port; retrying on another"
                    );
                    // This server is running: wait until it is gone, because the next attempt
                    // may need the same (reused) data directory.
                    cluster.stop().await?;
                }
                Err(NotStarted::AddressTaken { address, detail }) => {
                    let port = cluster.port;
                    // The error says what is wrong; a failure to stop would only hide it.
                    let _ = cluster.stop().await;
                    return Err(EmbeddedError::AddressTaken {
                        address,
                        port,
                        detail,
                    });
                }
                Err(NotStarted::RecoveryPaused) => {
                    let error = EmbeddedError::RecoveryPaused {
                        data_dir: cluster.data_dir.clone(),
                        log_path: cluster.log_path.clone(),
                        log_tail: cluster.log_tail(),
                    };
                    // Stopped before returning, so the caller can start the directory again
                    // (resumed, or restored anew) at once; the error says what is wrong, a
                    // failure to stop would only hide it.
                    let _ = cluster.stop().await;
                    return Err(error);
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
                        timeout: cluster.ready_timeout(),
                        last_error,
                        log_path: cluster.log_path.clone(),
                        log_tail,
                    });
                }
            }
        }
    }

    /// Starts a streaming standby of this cluster with `options` (fresh and temporary by
    /// default, like [`EmbeddedOptions::default`]): a copy taken with `pg_basebackup` that
    /// replays this cluster's WAL as it is written and serves reads. It is ready when it
    /// accepts connections; how far behind it is, is `pg_last_xact_replay_timestamp()` on it
    /// and `pg_stat_replication` here.
    pub async fn start_standby(&self, options: EmbeddedOptions) -> Result<Self, EmbeddedError> {
        Self::start(EmbeddedOptions {
            standby_of: Some(self.port),
            ..options
        })
        .await
    }

    /// Starts a primary with `options` and `standbys` streaming standbys of it (temporary,
    /// with the primary's durability and logical-replication setting).
    pub async fn start_with_standbys(
        options: EmbeddedOptions,
        standbys: usize,
    ) -> Result<(Self, Vec<Self>), EmbeddedError> {
        let primary = Self::start(options.clone()).await?;
        let mut started = Vec::with_capacity(standbys);
        for _ in 0..standbys {
            started.push(
                primary
                    .start_standby(EmbeddedOptions {
                        durable: options.durable,
                        logical_replication: options.logical_replication,
                        ..EmbeddedOptions::default()
                    })
                    .await?,
            );
        }
        Ok((primary, started))
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
    ///
    /// It names the address, so a client that verifies the certificate's host name
    /// (`sslmode=verify-full`) needs a URL with a name the certificate holds instead, such as
    /// `localhost` (see [`EmbeddedOptions::tls`]).
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

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The loopback addresses the server listens on: 127.0.0.1, and with TLS also ::1 when the
    /// machine has it.
    pub fn addresses(&self) -> &[IpAddr] {
        &self.addresses
    }

    /// Whether the server serves TLS.
    pub fn has_tls(&self) -> bool {
        self.tls
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

    /// How long [`Self::wait_until_ready`] waits.
    fn ready_timeout(&self) -> Duration {
        if self.recovering {
            RECOVERY_TIMEOUT
        } else {
            READY_TIMEOUT
        }
    }

    async fn wait_until_ready(&self) -> Result<(), NotStarted> {
        let deadline = Instant::now() + self.ready_timeout();
        let mut connect_options = PgConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port)
            .username(SUPERUSER)
            .database("postgres")
            // Probing is routine; failed probes are expected while the server starts.
            .disable_statement_logging();
        if self.tls {
            // A TLS cluster is ready only when it serves TLS; who it is, is checked below.
            connect_options = connect_options.ssl_mode(PgSslMode::Require);
        }
        loop {
            // A probe can fail because the server is still starting ("the database system is
            // starting up", connection refused) or because it died; only the watchdog knows.
            let last_error = match self.probe(&connect_options).await {
                Ok(Recovery::Over) => return self.check_addresses(&connect_options).await,
                Ok(Recovery::Paused) => return Err(NotStarted::RecoveryPaused),
                Ok(Recovery::Replaying) => {
                    "it accepts connections but is still replaying WAL towards its recovery \
                     target"
                        .to_owned()
                }
                Err(error) => error,
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
            if let Some(address) = self.address_not_bound() {
                return Err(NotStarted::AddressTaken {
                    address,
                    detail: "the server could not bind it: Address already in use".to_owned(),
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

    /// One readiness probe: connects and, in archive recovery, asks how far it got.
    async fn probe(&self, options: &PgConnectOptions) -> Result<Recovery, String> {
        let mut connection = tokio::time::timeout(CONNECT_TIMEOUT, options.connect())
            .await
            .map_err(|_elapsed| format!("no answer within {CONNECT_TIMEOUT:?}"))?
            .map_err(|error| error.to_string())?;
        let state = if self.recovering {
            recovery::state(&mut connection).await
        } else {
            Ok(Recovery::Over)
        };
        // Failing to say goodbye cleanly changes nothing about readiness.
        let _ = connection.close().await;
        state
    }

    /// Checks that every address but the first (which the readiness probe used) reaches this
    /// server. PostgreSQL starts when it can bind at least one of its addresses, so a port that
    /// another process holds on `::1` only shows up as a warning in its log; clients connecting
    /// by name would then reach that process. All addresses are bound before the server
    /// accepts its first connection, so one look suffices.
    async fn check_addresses(&self, probe: &PgConnectOptions) -> Result<(), NotStarted> {
        let [first, others @ ..] = self.addresses.as_slice() else {
            return Ok(());
        };
        if others.is_empty() {
            return Ok(());
        }
        let ours =
            system_identifier(probe, *first)
                .await
                .map_err(|detail| NotStarted::AddressTaken {
                    address: *first,
                    detail,
                })?;
        for &address in others {
            let detail = match system_identifier(probe, address).await {
                Ok(theirs) if theirs == ours => continue,
                Ok(_) => "another PostgreSQL server answers there".to_owned(),
                Err(detail) => detail,
            };
            return Err(NotStarted::AddressTaken { address, detail });
        }
        Ok(())
    }

    /// One of several addresses that the server found taken. It runs on the others, so it
    /// does not exit as it would with a single address; and when the probed address is the
    /// taken one, probes reach the other process until the deadline. Its log says so at once.
    fn address_not_bound(&self) -> Option<IpAddr> {
        if self.addresses.len() < 2 {
            return None;
        }
        let mut log = std::fs::File::open(&self.log_path).ok()?;
        std::io::Seek::seek(&mut log, std::io::SeekFrom::Start(self.log_start)).ok()?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut log, &mut bytes).ok()?;
        address_taken(&String::from_utf8_lossy(&bytes), &self.addresses)
    }

    /// The server's exit status if it has exited since it became ready (`None`: it still runs,
    /// or it was stopped through [`Self::stop`]).
    pub fn exit_status(&self) -> Option<i32> {
        self.watchdog
            .as_ref()
            .and_then(Watchdog::server_exit_status)
    }

    /// The last lines of the server's log: what to quote when a client cannot reach it.
    pub fn log_tail(&self) -> String {
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

/// What tells one cluster from every other: `initdb` draws it at random.
async fn system_identifier(probe: &PgConnectOptions, address: IpAddr) -> Result<i64, String> {
    let options = probe.clone().host(&address.to_string());
    let mut connection = tokio::time::timeout(CONNECT_TIMEOUT, options.connect())
        .await
        .map_err(|_elapsed| format!("no answer within {CONNECT_TIMEOUT:?}"))?
        .map_err(|error| error.to_string())?;
    let identifier = sqlx::query_scalar("SELECT system_identifier FROM pg_control_system()")
        .fetch_one(&mut connection)
        .await
        .map_err(|error| error.to_string());
    let _ = connection.close().await;
    identifier
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
    /// It runs, but this address of it reaches something else.
    AddressTaken {
        address: IpAddr,
        detail: String,
    },
    /// It was started in archive recovery and paused at the target instead of promoting.
    RecoveryPaused,
}

/// One attempt to bring a server up; blocking, so it runs on tokio's blocking pool.
struct Launch {
    binaries: PgBinaries,
    user: ServerUser,
    options: EmbeddedOptions,
    port: u16,
    addresses: Vec<IpAddr>,
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
        } else if let Some(primary_port) = self.options.standby_of {
            self.user.take_ownership(&data_dir)?;
            self.base_backup(&data_dir, primary_port)?;
        } else {
            self.user.take_ownership(&data_dir)?;
            self.initdb(&data_dir)?;
        }
        let recovering = recovery::in_archive_recovery(&data_dir);
        let tls = self
            .options
            .tls
            .as_ref()
            .map(|tls| tls.install(&data_dir, self.user))
            .transpose()?;

        let log_path = data_dir.join(LOG_FILE);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|source| EmbeddedError::io("open the server log", &log_path, source))?;
        self.user.take_ownership(&log_path)?;
        let log_start = log
            .metadata()
            .map_err(|source| EmbeddedError::io("read the size of", &log_path, source))?
            .len();

        let watchdog = Watchdog::spawn(
            self.server_command_line(&data_dir, tls.as_ref()),
            temp.as_ref().map(tempfile::TempDir::path),
            log,
        )?;
        // From here on the watchdog deletes the temporary directory, even if we are killed.
        let temporary = temp.map(tempfile::TempDir::keep).is_some();

        Ok(EmbeddedCluster {
            port: self.port,
            addresses: self.addresses,
            tls: tls.is_some(),
            data_dir,
            log_path,
            log_start,
            major_version: self.binaries.major_version(),
            temporary,
            recovering,
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

    /// Copies the primary into `data_dir` (empty, the server user's) and leaves it set up as
    /// its standby: `-R` writes `standby.signal` and the `primary_conninfo` to follow, and
    /// `-X stream` brings the WAL the copy needs to be consistent.
    fn base_backup(&self, data_dir: &Path, primary_port: u16) -> Result<(), EmbeddedError> {
        // initdb sets the mode a server insists on; pg_basebackup keeps an existing
        // directory's (a temporary one is 0755 under the usual umask).
        std::fs::set_permissions(
            data_dir,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .map_err(|source| EmbeddedError::io("restrict the permissions of", data_dir, source))?;
        let output = self
            .user
            .command(&self.binaries.basebackup())
            .args(["-h", "127.0.0.1", "-p"])
            .arg(primary_port.to_string())
            .args(["-U", SUPERUSER, "-X", "stream", "-R", "--no-sync", "-D"])
            .arg(data_dir)
            .current_dir("/")
            .env_remove("PGDATA")
            .stdin(Stdio::null())
            .output()
            .map_err(|source| EmbeddedError::spawn(self.binaries.basebackup().display(), source))?;
        if output.status.success() {
            // The copy brings the primary's log along; the standby's starts empty.
            let _ = std::fs::remove_file(data_dir.join(LOG_FILE));
            return Ok(());
        }
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        let lines: Vec<&str> = text.lines().collect();
        Err(EmbeddedError::BaseBackup {
            status: output.status,
            primary_port,
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
    /// directory always runs with this run's port, durability and TLS.
    fn server_command_line(&self, data_dir: &Path, tls: Option<&InstalledTls>) -> Vec<OsString> {
        let mut argv = self.user.command_line(&self.binaries.postgres());
        argv.push("-D".into());
        argv.push(data_dir.into());
        // A long data directory path cannot hold a socket; TCP alone is enough for us.
        let socket_dir = if data_dir.as_os_str().len() <= MAX_SOCKET_DIR_LEN {
            data_dir.as_os_str().to_owned()
        } else {
            OsString::new()
        };
        let listen = self
            .addresses
            .iter()
            .map(IpAddr::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut settings: Vec<(&str, OsString)> = vec![
            ("listen_addresses", listen.into()),
            ("port", self.port.to_string().into()),
            ("unix_socket_directories", socket_dir),
            ("max_connections", MAX_CONNECTIONS.to_string().into()),
            ("timezone", "UTC".into()),
            ("log_timezone", "UTC".into()),
        ];
        // Statement statistics for benchmarks (`pmctl loadtest --database-url`); loading the
        // module costs a little per statement and needs a restart to change, so it is always on.
        if self.binaries.has_module(STATEMENT_STATISTICS) {
            settings.push(("shared_preload_libraries", STATEMENT_STATISTICS.into()));
        }
        if !self.options.durable {
            for name in ["fsync", "synchronous_commit", "full_page_writes"] {
                settings.push((name, "off".into()));
            }
        }
        if self.options.logical_replication {
            settings.push(("wal_level", "logical".into()));
        }
        if let Some(tls) = tls {
            settings.push(("ssl", "on".into()));
            settings.push(("ssl_cert_file", tls.cert_file.clone().into()));
            settings.push(("ssl_key_file", tls.key_file.clone().into()));
        }
        // The caller's come last: of two `-c` for one name, the server keeps the last.
        settings.extend(
            self.options
                .settings
                .iter()
                .map(|(name, value)| (name.as_str(), OsString::from(value))),
        );
        for (name, value) in settings {
            let mut setting = OsString::from(format!("{name}="));
            setting.push(value);
            argv.push("-c".into());
            argv.push(setting);
        }
        argv
    }
}

/// Where the server listens: see [`EmbeddedOptions::tls`] for why TLS adds `::1`. Without
/// TLS clients get URLs naming 127.0.0.1, so that address alone serves them.
fn listen_addresses(options: &EmbeddedOptions) -> Vec<IpAddr> {
    let mut addresses = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
    // A kernel without IPv6, or a loopback without ::1, refuses the bind.
    if options.tls.is_some() && TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_ok() {
        addresses.push(IpAddr::V6(Ipv6Addr::LOCALHOST));
    }
    addresses
}

/// A port that was free on all `addresses` a moment ago. The listeners are closed before the
/// server binds, so another process can take the port in between; `start` retries when that
/// happens.
fn free_port(addresses: &[IpAddr]) -> Result<u16, EmbeddedError> {
    let described = || {
        addresses
            .iter()
            .map(IpAddr::to_string)
            .collect::<Vec<_>>()
            .join(" and ")
    };
    let mut last_error = None;
    'attempts: for _ in 0..MAX_ATTEMPTS {
        // The kernel picks a port free on the first address; the others are tried with it,
        // all held at once, so that it is free on every one at the same moment.
        let mut port = 0;
        let mut held = Vec::with_capacity(addresses.len());
        for address in addresses {
            let bound = TcpListener::bind((*address, port))
                .and_then(|listener| Ok((listener.local_addr()?.port(), listener)));
            match bound {
                Ok((bound_port, listener)) => {
                    port = bound_port;
                    held.push(listener);
                }
                Err(error) if held.is_empty() => {
                    return Err(EmbeddedError::io("find a free port on", described(), error));
                }
                Err(error) => {
                    last_error = Some(error);
                    continue 'attempts;
                }
            }
        }
        return Ok(port);
    }
    let error = last_error.unwrap_or_else(|| std::io::ErrorKind::AddrInUse.into());
    Err(EmbeddedError::io(
        "find a port free on all of",
        described(),
        error,
    ))
}

/// Which of `addresses` the log says the server could not bind because of another process.
fn address_taken(log: &str, addresses: &[IpAddr]) -> Option<IpAddr> {
    log.lines()
        .filter(|line| line.contains("could not bind") && line.contains("Address already in use"))
        .find_map(|line| {
            let address = line.split('"').nth(1)?.parse::<IpAddr>().ok()?;
            addresses.contains(&address).then_some(address)
        })
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

    #[test]
    fn recognises_which_address_was_taken_in_the_log() {
        let addresses = [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ];
        let log = "2026-01-01 00:00:00.000 UTC [7] LOG:  listening on IPv4 address \"127.0.0.1\", port 5432\n\
                   2026-01-01 00:00:00.000 UTC [7] LOG:  could not bind IPv6 address \"::1\": Address already in use\n\
                   2026-01-01 00:00:00.000 UTC [7] HINT:  Is another postmaster already running on port 5432?";
        assert_eq!(address_taken(log, &addresses), Some(addresses[1]));
        assert_eq!(address_taken(log, &addresses[..1]), None);
        assert_eq!(
            address_taken(
                "LOG:  listening on IPv6 address \"::1\", port 5432",
                &addresses
            ),
            None
        );
    }
}
