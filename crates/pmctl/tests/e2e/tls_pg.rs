//! `pmctl` against a PostgreSQL that serves TLS, connected as the README tells operators to:
//! `sslmode=verify-full&sslrootcert=<CA file>` in `--database-url`.

use std::process::Output;

use pm_embedded_pg::{EmbeddedCluster, EmbeddedOptions, EmbeddedTls};
use pm_tls::testing::TestCa;

use crate::process::{run, text};

fn pmctl(args: &[&str]) -> Output {
    run(args, &[])
}

#[tokio::test]
async fn migrate_over_verify_full_tls_and_refuse_a_name_the_certificate_lacks() {
    let files = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new("pmctl e2e PostgreSQL CA");
    let ca_file = ca.write_cert(files.path());
    let issued = ca.server(&["localhost"]).write(files.path(), "server");
    let cluster = EmbeddedCluster::start(EmbeddedOptions {
        tls: Some(EmbeddedTls {
            cert_file: issued.cert,
            key_file: issued.key,
        }),
        ..EmbeddedOptions::default()
    })
    .await
    .expect("embedded PostgreSQL with TLS");
    // The cluster listens on every loopback address `localhost` may resolve to.
    let url = |host: &str| {
        format!(
            "postgres://postgres@{host}:{}/postgres?sslmode=verify-full&sslrootcert={}",
            cluster.port(),
            ca_file.display()
        )
    };

    let applied = pmctl(&["migrate", "--database-url", &url("localhost")]);
    assert!(applied.status.success(), "{}", text(&applied));
    assert!(
        text(&applied).contains("migration(s) applied"),
        "{}",
        text(&applied)
    );

    let refused = pmctl(&["migrate", "--database-url", &url("127.0.0.1")]);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("certificate not valid for name \"127.0.0.1\""),
        "{}",
        text(&refused)
    );

    cluster.stop().await.expect("stop");
}
