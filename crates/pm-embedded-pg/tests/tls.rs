//! An embedded cluster serving TLS. What clients check (`verify-full`, a wrong host name, a
//! wrong CA) is proven where the client is configured, in `pm-storage`; these tests prove the
//! server's half: it serves TLS from its own private copy of the key, on every loopback address
//! a client connecting to `localhost` may reach. Certificates are self-signed here (rcgen), so
//! that this crate's tests, like the crate, depend on nothing of Payment Manager.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use pm_embedded_pg::{EmbeddedCluster, EmbeddedOptions, EmbeddedTls};
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{ConnectOptions, Connection, PgConnection};
use tokio::sync::OnceCell;

/// One TLS cluster for the tests that only look at it.
static CLUSTER: OnceCell<EmbeddedCluster> = OnceCell::const_new();

/// A self-signed certificate for `localhost`, written to `dir` with a key that anyone may
/// read: the cluster must not care, because it serves its own copy.
fn write_certificate(dir: &Path) -> (EmbeddedTls, String) {
    let issued = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .expect("self-signed certificate");
    let cert_pem = issued.cert.pem();
    let tls = EmbeddedTls {
        cert_file: dir.join("server.pem"),
        key_file: dir.join("server-key.pem"),
    };
    std::fs::write(&tls.cert_file, &cert_pem).expect("write certificate");
    std::fs::write(&tls.key_file, issued.key_pair.serialize_pem()).expect("write key");
    std::fs::set_permissions(&tls.key_file, std::fs::Permissions::from_mode(0o644))
        .expect("make the key readable by all");
    (tls, cert_pem)
}

async fn shared_cluster() -> &'static EmbeddedCluster {
    CLUSTER
        .get_or_init(|| async {
            let files = tempfile::tempdir().expect("tempdir");
            let (tls, _) = write_certificate(files.path());
            let cluster = EmbeddedCluster::start(EmbeddedOptions {
                tls: Some(tls),
                ..EmbeddedOptions::default()
            })
            .await
            .unwrap_or_else(|error| panic!("embedded PostgreSQL with TLS did not start: {error}"));
            // The server has its copies; the originals may go.
            drop(files);
            cluster
        })
        .await
}

async fn connect(cluster: &EmbeddedCluster, host: IpAddr, mode: PgSslMode) -> PgConnection {
    PgConnectOptions::new_without_pgpass()
        .host(&host.to_string())
        .port(cluster.port())
        .username("postgres")
        .database("postgres")
        .ssl_mode(mode)
        .connect()
        .await
        .unwrap_or_else(|error| panic!("connect to {host} ({mode:?}): {error}"))
}

async fn uses_tls(connection: &mut PgConnection) -> bool {
    sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(connection)
        .await
        .expect("pg_stat_ssl")
}

#[tokio::test]
async fn serves_tls_from_a_copy_of_the_key_that_only_the_server_can_read() {
    let cluster = shared_cluster().await;
    assert!(cluster.has_tls());
    let server_uid = std::fs::metadata(cluster.data_dir())
        .expect("data directory")
        .uid();
    for name in ["server.crt", "server.key"] {
        let copy = std::fs::metadata(cluster.data_dir().join(name)).expect(name);
        assert_eq!(copy.mode() & 0o777, 0o600, "{name} mode");
        assert_eq!(
            copy.uid(),
            server_uid,
            "{name} belongs to the server's user"
        );
    }

    let mut encrypted = connect(cluster, cluster.addresses()[0], PgSslMode::Require).await;
    assert!(uses_tls(&mut encrypted).await);
    let ssl: String = sqlx::query_scalar("SELECT current_setting('ssl')")
        .fetch_one(&mut encrypted)
        .await
        .expect("ssl setting");
    assert_eq!(ssl, "on");
    encrypted.close().await.expect("close");

    // Insisting on TLS is the client's choice, not the server's.
    let mut plain = connect(cluster, cluster.addresses()[0], PgSslMode::Disable).await;
    assert!(!uses_tls(&mut plain).await);
    plain.close().await.expect("close");
}

#[tokio::test]
async fn answers_on_every_loopback_address_localhost_may_resolve_to() {
    let cluster = shared_cluster().await;
    let machine_has_ipv6_loopback = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_ok();
    let expected_addresses = if machine_has_ipv6_loopback { 2 } else { 1 };
    assert_eq!(
        cluster.addresses().len(),
        expected_addresses,
        "{:?}",
        cluster.addresses()
    );

    for &address in cluster.addresses() {
        let mut connection = connect(cluster, address, PgSslMode::Require).await;
        let server_address: String = sqlx::query_scalar("SELECT host(inet_server_addr())")
            .fetch_one(&mut connection)
            .await
            .expect("server address");
        assert_eq!(server_address, address.to_string());
        assert!(uses_tls(&mut connection).await, "{address}");
        connection.close().await.expect("close");
    }
}

#[tokio::test]
async fn a_reused_data_directory_serves_the_certificate_of_this_start() {
    let data_dir = tempfile::tempdir().expect("data directory");
    let files = tempfile::tempdir().expect("certificate directory");
    let start = |tls: EmbeddedTls| {
        EmbeddedCluster::start(EmbeddedOptions {
            data_dir: Some(data_dir.path().to_path_buf()),
            tls: Some(tls),
            ..EmbeddedOptions::default()
        })
    };

    let (first_tls, _) = write_certificate(files.path());
    start(first_tls)
        .await
        .expect("first start")
        .stop()
        .await
        .expect("stop");
    let (second_tls, second_pem) = write_certificate(files.path());
    let cluster = start(second_tls).await.expect("second start");

    let served = std::fs::read_to_string(cluster.data_dir().join("server.crt")).expect("copy");
    assert_eq!(served, second_pem);
    let mut connection = connect(&cluster, cluster.addresses()[0], PgSslMode::Require).await;
    assert!(uses_tls(&mut connection).await);
    connection.close().await.expect("close");
    cluster.stop().await.expect("stop");
}

/// Something else holding the port on one loopback address would get the connections of
/// clients whose resolver answers that address first; PostgreSQL itself starts anyway (one
/// bound address is enough for it), so the cluster has to notice. With a port of its own
/// choosing it retries on another; with a fixed port it must refuse, naming the address.
#[tokio::test]
async fn a_port_held_by_another_process_on_either_loopback_address_is_refused() {
    let files = tempfile::tempdir().expect("certificate directory");
    let (tls, _) = write_certificate(files.path());
    if TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_err() {
        // No ::1 here, so nothing can be reached there: the cluster must use 127.0.0.1 alone.
        let cluster = EmbeddedCluster::start(EmbeddedOptions {
            tls: Some(tls),
            ..EmbeddedOptions::default()
        })
        .await
        .expect("start without ::1");
        assert_eq!(cluster.addresses().len(), 1);
        cluster.stop().await.expect("stop");
        return;
    }
    let loopbacks = [
        IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
    ];
    for taken in loopbacks {
        // Accepted by the kernel, never answered: like a stuck or foreign service. The port
        // must be free on the other address, or the server would not start at all.
        let squatter = (0..10)
            .find_map(|_| {
                let held = TcpListener::bind((taken, 0)).ok()?;
                let port = held.local_addr().ok()?.port();
                for other in loopbacks.iter().filter(|other| **other != taken) {
                    TcpListener::bind((*other, port)).ok()?;
                }
                Some(held)
            })
            .expect("a port free on both loopback addresses");
        let port = squatter.local_addr().expect("address").port();

        let error = EmbeddedCluster::start(EmbeddedOptions {
            port: Some(port),
            tls: Some(tls.clone()),
            ..EmbeddedOptions::default()
        })
        .await
        .expect_err("one address is held by another process");

        let message = error.to_string();
        assert!(
            matches!(error, pm_embedded_pg::EmbeddedError::AddressTaken { address, .. }
                if address == taken),
            "{taken}: {message}"
        );
        assert!(message.contains(&port.to_string()), "{message}");
    }
}
