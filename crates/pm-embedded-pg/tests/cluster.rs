//! Starts real PostgreSQL servers from this machine's binaries. These tests pass as root (CI) and
//! as an ordinary user; they need the server binaries and pg_partman
//! (`apt-get install -y postgresql postgresql-15-partman`).

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pm_embedded_pg::{EmbeddedCluster, EmbeddedOptions};
use sqlx::{Connection, PgConnection, Row};

/// Tells a re-executed copy of this test binary to act as the owner of a cluster.
const CHILD_ENV: &str = "PM_EMBEDDED_PG_TEST_CHILD";
const CHILD_TEST: &str = "owner_process_for_sigkill_test";
/// Long enough for a busy 2-core CI machine; healthy runs take a fraction of it.
const DEADLINE: Duration = Duration::from_secs(30);

async fn start_temporary() -> EmbeddedCluster {
    EmbeddedCluster::start(EmbeddedOptions::default())
        .await
        .unwrap_or_else(|error| panic!("embedded PostgreSQL did not start: {error}"))
}

async fn connect(cluster: &EmbeddedCluster) -> PgConnection {
    PgConnection::connect(&cluster.admin_url())
        .await
        .expect("connect to the embedded cluster")
}

fn accepts_connections(port: u16) -> bool {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&address, Duration::from_millis(500)).is_ok()
}

/// Polls `condition` until it holds or the deadline passes.
fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "not within {DEADLINE:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The test harness keeps its cluster in a `static`, which needs both.
#[test]
fn a_cluster_can_live_in_a_static() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<EmbeddedCluster>();
}

#[tokio::test]
async fn serves_queries_and_pg_partman() {
    let cluster = start_temporary().await;
    assert_eq!(
        cluster.major_version(),
        15,
        "these machines run PostgreSQL 15"
    );
    assert_eq!(
        cluster.admin_url(),
        format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port())
    );
    assert!(cluster.is_temporary());
    assert!(cluster.log_path().starts_with(cluster.data_dir()));
    assert_eq!(cluster.addresses(), [Ipv4Addr::LOCALHOST], "127.0.0.1 only");
    assert!(!cluster.has_tls());

    let mut connection = connect(&cluster).await;
    let version: String = sqlx::query_scalar("select version()")
        .fetch_one(&mut connection)
        .await
        .expect("version");
    assert!(version.starts_with("PostgreSQL 15"), "{version}");

    sqlx::query("create schema partman")
        .execute(&mut connection)
        .await
        .expect("schema");
    sqlx::query("create extension pg_partman schema partman")
        .execute(&mut connection)
        .await
        .expect("pg_partman must be installed: apt-get install -y postgresql-15-partman");
    let partman_functions: i64 = sqlx::query_scalar(
        "select count(*) from pg_proc p join pg_namespace n on n.oid = p.pronamespace \
         where n.nspname = 'partman' and p.proname = 'create_parent'",
    )
    .fetch_one(&mut connection)
    .await
    .expect("look up create_parent");
    assert!(partman_functions >= 1);

    let settings = sqlx::query(
        "select current_setting('TimeZone') as tz, current_setting('fsync') as fsync, \
         current_setting('max_connections')::int as max_connections",
    )
    .fetch_one(&mut connection)
    .await
    .expect("settings");
    assert_eq!(settings.get::<String, _>("tz"), "UTC");
    assert_eq!(settings.get::<String, _>("fsync"), "off");
    let ssl: String = sqlx::query_scalar("select current_setting('ssl')")
        .fetch_one(&mut connection)
        .await
        .expect("ssl");
    assert_eq!(ssl, "off", "TLS only when asked for");
    assert!(settings.get::<i32, _>("max_connections") >= 100);

    connection.close().await.expect("close");
    cluster.stop().await.expect("stop");
}

#[tokio::test]
async fn two_clusters_run_side_by_side_on_different_ports() {
    let (first, second) = tokio::join!(start_temporary(), start_temporary());
    assert_ne!(first.port(), second.port());
    assert_ne!(first.data_dir(), second.data_dir());

    for cluster in [&first, &second] {
        let mut connection = connect(cluster).await;
        let port: i32 = sqlx::query_scalar("select current_setting('port')::int")
            .fetch_one(&mut connection)
            .await
            .expect("port");
        assert_eq!(port, i32::from(cluster.port()));
    }

    let (first, second) = tokio::join!(first.stop(), second.stop());
    first.expect("stop first");
    second.expect("stop second");
}

#[tokio::test]
async fn stop_shuts_the_server_down_and_deletes_the_temporary_directory() {
    let cluster = start_temporary().await;
    let port = cluster.port();
    let data_dir = cluster.data_dir().to_path_buf();
    assert!(accepts_connections(port));
    // An open connection must not keep the server up: stop is a fast shutdown.
    let connection = connect(&cluster).await;

    cluster.stop().await.expect("stop");

    eventually("the port refuses connections", || {
        !accepts_connections(port)
    });
    assert!(!data_dir.exists(), "{} was left behind", data_dir.display());
    drop(connection);
}

#[tokio::test]
async fn dropping_the_cluster_shuts_the_server_down() {
    let cluster = start_temporary().await;
    let port = cluster.port();
    let data_dir = cluster.data_dir().to_path_buf();

    drop(cluster);

    eventually("the port refuses connections", || {
        !accepts_connections(port)
    });
    eventually("the temporary directory is deleted", || !data_dir.exists());
}

#[tokio::test]
async fn logical_replication_is_off_unless_asked_for() {
    let wal_level = |cluster: &EmbeddedCluster| {
        let url = cluster.admin_url();
        async move {
            let mut connection = PgConnection::connect(&url).await.expect("connect");
            sqlx::query_scalar::<_, String>("show wal_level")
                .fetch_one(&mut connection)
                .await
                .expect("wal_level")
        }
    };
    let plain = start_temporary().await;
    assert_eq!(wal_level(&plain).await, "replica");
    plain.stop().await.expect("stop");

    let logical = EmbeddedCluster::start(EmbeddedOptions {
        logical_replication: true,
        ..EmbeddedOptions::default()
    })
    .await
    .expect("start");
    assert_eq!(wal_level(&logical).await, "logical");
    // What Debezium does first: a slot that decodes with pgoutput.
    let mut connection = connect(&logical).await;
    sqlx::query("select pg_create_logical_replication_slot('probe', 'pgoutput')")
        .execute(&mut connection)
        .await
        .expect("a logical slot");
    connection.close().await.expect("close");
    logical.stop().await.expect("stop");
}

#[tokio::test]
async fn standbys_stream_the_primarys_writes_and_serve_reads_only() {
    let (primary, standbys) = EmbeddedCluster::start_with_standbys(EmbeddedOptions::default(), 2)
        .await
        .unwrap_or_else(|error| panic!("a primary with two standbys did not start: {error}"));
    assert_eq!(standbys.len(), 2);
    let mut on_primary = connect(&primary).await;
    sqlx::query("create table ledger (n int)")
        .execute(&mut on_primary)
        .await
        .expect("table");
    sqlx::query("insert into ledger select generate_series(1, 1000)")
        .execute(&mut on_primary)
        .await
        .expect("insert");
    // A standby is ready once it accepts connections; its WAL receiver may connect to the
    // primary a moment later.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let streaming: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_replication where state = 'streaming'",
        )
        .fetch_one(&mut on_primary)
        .await
        .expect("pg_stat_replication");
        if streaming == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "both standbys stream from the primary: {streaming} do"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    for standby in &standbys {
        assert_ne!(standby.port(), primary.port());
        let mut on_standby = connect(standby).await;
        let in_recovery: bool = sqlx::query_scalar("select pg_is_in_recovery()")
            .fetch_one(&mut on_standby)
            .await
            .expect("recovery");
        assert!(in_recovery, "a standby replays, it does not accept writes");
        let deadline = Instant::now() + DEADLINE;
        loop {
            let rows: Option<i64> = sqlx::query_scalar("select count(*) from ledger")
                .fetch_one(&mut on_standby)
                .await
                .ok();
            if rows == Some(1000) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the standby never saw the rows: {rows:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let refused = sqlx::query("insert into ledger values (0)")
            .execute(&mut on_standby)
            .await
            .expect_err("a standby refuses writes");
        assert_eq!(
            refused
                .as_database_error()
                .and_then(|e| e.code())
                .as_deref(),
            Some("25006"),
            "read_only_sql_transaction: {refused}"
        );
    }
    for standby in standbys {
        standby.stop().await.expect("stop a standby");
    }
    primary.stop().await.expect("stop the primary");
}

#[tokio::test]
async fn an_existing_data_directory_is_reused_with_its_data() {
    let parent = tempfile::tempdir().expect("tempdir");
    let options = EmbeddedOptions {
        data_dir: Some(parent.path().to_path_buf()),
        durable: true,
        ..EmbeddedOptions::default()
    };

    let first = EmbeddedCluster::start(options.clone())
        .await
        .expect("first start");
    assert!(!first.is_temporary());
    let mut connection = connect(&first).await;
    sqlx::query("create table kept (note text)")
        .execute(&mut connection)
        .await
        .expect("table");
    sqlx::query("insert into kept values ('from the first run')")
        .execute(&mut connection)
        .await
        .expect("insert");
    connection.close().await.expect("close");
    first.stop().await.expect("stop first");
    assert!(
        parent.path().join("PG_VERSION").is_file(),
        "a chosen data directory is kept"
    );

    let second = EmbeddedCluster::start(options).await.expect("second start");
    let mut connection = connect(&second).await;
    let note: String = sqlx::query_scalar("select note from kept")
        .fetch_one(&mut connection)
        .await
        .expect("data of the first run");
    assert_eq!(note, "from the first run");
    let durable: String = sqlx::query_scalar("select current_setting('fsync')")
        .fetch_one(&mut connection)
        .await
        .expect("fsync");
    assert_eq!(durable, "on");
    connection.close().await.expect("close");
    second.stop().await.expect("stop second");
}

#[tokio::test]
async fn a_server_that_cannot_start_is_reported_with_its_log() {
    // Hold the port so the server cannot bind it; an explicit port is never swapped for another.
    let taken = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let port = taken.local_addr().expect("address").port();
    let options = EmbeddedOptions {
        port: Some(port),
        ..EmbeddedOptions::default()
    };

    let error = EmbeddedCluster::start(options)
        .await
        .expect_err("the port is taken");

    let message = error.to_string();
    assert!(message.contains("exited during startup"), "{message}");
    assert!(
        message.contains("Address already in use"),
        "the log tail is quoted: {message}"
    );
    let pm_embedded_pg::EmbeddedError::ExitedDuringStartup { log_path, .. } = &error else {
        panic!("unexpected error: {error:?}");
    };
    let data_dir = log_path
        .parent()
        .expect("log is inside the data directory")
        .to_path_buf();
    eventually("the failed cluster's directory is deleted", || {
        !data_dir.exists()
    });
}

/// The owner is killed with SIGKILL, so no destructor of it runs: the watchdog alone must stop
/// the server and delete its directory.
#[test]
fn a_sigkilled_owner_does_not_leave_the_server_running() {
    let mut owner = Command::new(std::env::current_exe().expect("own test binary"))
        .args([
            CHILD_TEST,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the owner process");
    let stdout = owner.stdout.take().expect("piped stdout");

    // Read in a thread so a hung owner turns into a failure at the deadline, not a hung test.
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // libtest prints "test <name> ... " without a newline before the test's own output.
            if let Some((_, ready)) = line.split_once("READY ") {
                let _ = sender.send(ready.to_owned());
            }
        }
    });
    let ready = receiver.recv_timeout(DEADLINE * 2);
    let Ok(ready) = ready else {
        let _ = owner.kill();
        panic!("the owner process did not report a running cluster: {ready:?}");
    };
    let (port, data_dir) = ready.split_once(' ').expect("READY <port> <dir>");
    let port: u16 = port.parse().expect("port");
    let data_dir = PathBuf::from(data_dir);
    assert!(
        accepts_connections(port),
        "the owner's cluster should be up"
    );
    assert!(data_dir.is_dir());

    owner.kill().expect("SIGKILL the owner");
    let status = owner.wait().expect("reap the owner");
    assert!(
        !status.success(),
        "the owner was killed, not finished: {status}"
    );

    eventually("the orphaned server stops accepting connections", || {
        !accepts_connections(port)
    });
    eventually("the orphaned server's directory is deleted", || {
        !data_dir.exists()
    });
    eventually("no process uses the directory any more", || {
        !server_process_exists(&data_dir)
    });
}

/// Whether any process still runs with `data_dir` on its command line.
fn server_process_exists(data_dir: &Path) -> bool {
    let needle = data_dir.as_os_str().as_encoded_bytes();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .any(|cmdline| cmdline.windows(needle.len()).any(|window| window == needle))
}

/// Not a test of its own: the body of the owner process that
/// `a_sigkilled_owner_does_not_leave_the_server_running` starts and kills.
#[tokio::test]
#[ignore = "helper process for a_sigkilled_owner_does_not_leave_the_server_running"]
async fn owner_process_for_sigkill_test() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let cluster = start_temporary().await;
    println!("READY {} {}", cluster.port(), cluster.data_dir().display());
    std::io::stdout().flush().expect("flush");
    // Waiting to be killed; the bound only keeps a forgotten owner from living forever.
    std::thread::sleep(Duration::from_secs(300));
    // Never reached in the real scenario; keeps the cluster alive until the kill.
    drop(cluster);
}
