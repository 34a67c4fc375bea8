//! PostgreSQL over TLS as a deployment configures it: `sslmode` and `sslrootcert` in the
//! database URL, which every `pmctl` subcommand hands to [`pm_storage::connect`].
//!
//! One TLS cluster serves this test binary. Its certificate comes from a CA made at test time
//! and names `localhost` only, so these tests can show what each mode checks: `verify-full`
//! connects by that name with that CA and refuses another name or another CA; `require`
//! encrypts but would talk to anyone.

use std::path::{Path, PathBuf};

use pm_embedded_pg::{EmbeddedCluster, EmbeddedOptions, EmbeddedTls};
use pm_storage::{connect, migrate, PoolOptions};
use pm_tls::testing::TestCa;
use sqlx::{Connection, PgConnection};
use tempfile::TempDir;
use tokio::sync::OnceCell;

/// The only name in the server's certificate. The cluster listens on every loopback address
/// `localhost` may resolve to (127.0.0.1, and ::1 where the machine has it), so connecting by
/// this name reaches it whichever address the resolver answers first.
const CERTIFIED_NAME: &str = "localhost";
/// Reaches the same server, but is not in its certificate.
const UNCERTIFIED_ADDRESS: &str = "127.0.0.1";

struct TlsServer {
    cluster: EmbeddedCluster,
    /// The CA that signed the server's certificate.
    ca_pem: String,
}

static SERVER: OnceCell<TlsServer> = OnceCell::const_new();

async fn server() -> &'static TlsServer {
    SERVER
        .get_or_init(|| async {
            let ca = TestCa::new("pm-storage TLS test CA");
            let files = TempDir::new().expect("tempdir");
            let issued = ca.server(&[CERTIFIED_NAME]).write(files.path(), "server");
            let cluster = EmbeddedCluster::start(EmbeddedOptions {
                tls: Some(EmbeddedTls {
                    cert_file: issued.cert,
                    key_file: issued.key,
                }),
                ..EmbeddedOptions::default()
            })
            .await
            .unwrap_or_else(|error| panic!("embedded PostgreSQL with TLS did not start: {error}"));
            // The cluster serves its own copies of the certificate and key.
            drop(files);
            TlsServer {
                cluster,
                ca_pem: ca.cert_pem(),
            }
        })
        .await
}

/// A CA file for one test, deleted with the returned directory.
fn ca_file(pem: &str) -> (TempDir, PathBuf) {
    let dir = TempDir::new().expect("tempdir");
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, pem).expect("write the CA file");
    (dir, path)
}

/// A URL of database `db` as an operator would write it.
fn url(server: &TlsServer, host: &str, db: &str, tls: &str) -> String {
    format!(
        "postgres://postgres@{host}:{}/{db}?{tls}",
        server.cluster.port()
    )
}

fn verify_full(ca: &Path) -> String {
    format!("sslmode=verify-full&sslrootcert={}", query_value(ca))
}

/// A path as a URL query value.
fn query_value(path: &Path) -> String {
    path.to_string_lossy()
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                char::from(byte).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

async fn uses_tls(connection: &mut PgConnection) -> bool {
    sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(connection)
        .await
        .expect("pg_stat_ssl")
}

/// Asserts that connecting is refused for a reason that names the certificate check.
async fn assert_refused(url: &str, because: &[&str]) {
    let error = match PgConnection::connect(url).await {
        Ok(_) => panic!("connected, but must be refused: {url}"),
        Err(error) => error.to_string(),
    };
    for word in because {
        assert!(
            error.contains(word),
            "{url}: {error:?} does not mention {word:?}"
        );
    }
}

#[tokio::test]
async fn verify_full_with_our_ca_connects_by_the_certified_name_and_encrypts() {
    let server = server().await;
    let (_dir, ca) = ca_file(&server.ca_pem);

    let url = url(server, CERTIFIED_NAME, "postgres", &verify_full(&ca));
    let mut connection = PgConnection::connect(&url)
        .await
        .unwrap_or_else(|error| panic!("{url}: {error}"));

    assert!(uses_tls(&mut connection).await);
    connection.close().await.expect("close");
}

#[tokio::test]
async fn verify_full_refuses_a_host_name_the_certificate_does_not_hold() {
    let server = server().await;
    let (_dir, ca) = ca_file(&server.ca_pem);

    // Same server, same CA, the address instead of the name.
    let url = url(server, UNCERTIFIED_ADDRESS, "postgres", &verify_full(&ca));

    assert_refused(
        &url,
        &["certificate", "not valid for name", UNCERTIFIED_ADDRESS],
    )
    .await;
}

#[tokio::test]
async fn verify_full_refuses_a_server_certified_by_another_ca() {
    let server = server().await;
    let stranger = TestCa::new("a CA this server has never met");
    let (_dir, ca) = ca_file(&stranger.cert_pem());

    let url = url(server, CERTIFIED_NAME, "postgres", &verify_full(&ca));

    assert_refused(&url, &["certificate", "UnknownIssuer"]).await;
}

/// `require` is encryption without authentication: no CA, a name the certificate does not
/// hold, and still connected — whoever answers could be an impostor. Unlike libpq, sqlx
/// ignores `sslrootcert` under `require` (libpq then checks the chain as `verify-ca` does), so
/// naming a CA does not make `require` any safer; only `verify-full` authenticates the server.
#[tokio::test]
async fn require_encrypts_without_checking_who_answers() {
    let server = server().await;
    let stranger = TestCa::new("a CA this server has never met");
    let (_dir, other_ca) = ca_file(&stranger.cert_pem());
    let with_another_ca = format!("sslmode=require&sslrootcert={}", query_value(&other_ca));

    for tls in ["sslmode=require", with_another_ca.as_str()] {
        let url = url(server, UNCERTIFIED_ADDRESS, "postgres", tls);
        let mut connection = PgConnection::connect(&url)
            .await
            .unwrap_or_else(|error| panic!("{url}: {error}"));

        assert!(uses_tls(&mut connection).await, "{url}");
        connection.close().await.expect("close");
    }
}

/// What every `pmctl` subcommand does with `--database-url`: a pool from the URL, migrations,
/// queries — all over verified TLS; and a URL the certificate does not match fails as such.
#[tokio::test]
async fn a_pool_from_a_verify_full_url_migrates_and_queries_over_tls() {
    let server = server().await;
    let (_dir, ca) = ca_file(&server.ca_pem);
    let mut admin =
        PgConnection::connect(&url(server, CERTIFIED_NAME, "postgres", &verify_full(&ca)))
            .await
            .expect("admin connection");
    sqlx::query("CREATE DATABASE migrated_over_tls")
        .execute(&mut admin)
        .await
        .expect("create database");
    admin.close().await.expect("close");

    let url = url(
        server,
        CERTIFIED_NAME,
        "migrated_over_tls",
        &verify_full(&ca),
    );
    let pool = connect(&url, &PoolOptions::default()).expect("pool");
    let applied = migrate::run(&pool).await.expect("migrations over TLS");
    assert!(!applied.is_empty(), "a fresh database gets every migration");
    let (ssl, partitioned): (bool, i64) = sqlx::query_as(
        "SELECT (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), \
                (SELECT count(*) FROM partman.part_config)",
    )
    .fetch_one(&pool)
    .await
    .expect("query over TLS");
    assert!(ssl);
    assert!(partitioned > 0, "the migrations set up pg_partman");
    pool.close().await;

    let wrong_name = url.replace(CERTIFIED_NAME, UNCERTIFIED_ADDRESS);
    let pool = connect(&wrong_name, &PoolOptions::default()).expect("pool");
    let error = sqlx::query("SELECT 1")
        .execute(&pool)
        .await
        .expect_err("the certificate does not hold the address")
        .to_string();
    assert!(error.contains("not valid for name"), "{error}");
    pool.close().await;
}
