//! Extra server settings, and data directories left in archive recovery as a point-in-time
//! restore leaves them: `start` returns a cluster that takes writes, or says why it cannot.
//! Real servers from this machine's binaries, as root (CI) or as an ordinary user.

use std::path::{Path, PathBuf};

use pm_embedded_pg::{EmbeddedCluster, EmbeddedError, EmbeddedOptions};
use sqlx::{Connection, PgConnection};

fn setting(name: &str, value: &str) -> (String, String) {
    (name.to_owned(), value.to_owned())
}

async fn connect(cluster: &EmbeddedCluster) -> PgConnection {
    PgConnection::connect(&cluster.admin_url())
        .await
        .expect("connect to the embedded cluster")
}

async fn show(connection: &mut PgConnection, name: &str) -> String {
    sqlx::query_scalar(&format!("SHOW {name}"))
        .fetch_one(connection)
        .await
        .unwrap_or_else(|e| panic!("SHOW {name}: {e}"))
}

#[tokio::test]
async fn extra_settings_reach_the_server_and_override_the_clusters_own() {
    let cluster = EmbeddedCluster::start(EmbeddedOptions {
        settings: vec![
            setting("work_mem", "7MB"),
            setting("max_connections", "150"),
            setting("cluster_name", "two words, one = sign"),
        ],
        ..EmbeddedOptions::default()
    })
    .await
    .unwrap_or_else(|e| panic!("embedded PostgreSQL did not start: {e}"));
    let mut connection = connect(&cluster).await;
    assert_eq!(show(&mut connection, "work_mem").await, "7MB");
    assert_eq!(show(&mut connection, "max_connections").await, "150");
    assert_eq!(
        show(&mut connection, "cluster_name").await,
        "two words, one = sign",
        "a value is passed as it is"
    );
    connection.close().await.expect("close");
    cluster.stop().await.expect("stop");
}

#[tokio::test]
async fn a_setting_the_cluster_decides_itself_is_refused_before_anything_starts() {
    let data_dir = tempfile::tempdir().expect("tempdir");
    let refused = EmbeddedCluster::start(EmbeddedOptions {
        data_dir: Some(data_dir.path().to_path_buf()),
        settings: vec![setting("Port", "5432")],
        ..EmbeddedOptions::default()
    })
    .await
    .expect_err("a port through settings is refused");
    assert!(
        matches!(&refused, EmbeddedError::InvalidSetting { name, .. } if name == "Port"),
        "{refused}"
    );
    assert!(
        !data_dir.path().join("PG_VERSION").exists(),
        "nothing was initialised"
    );
}

/// A directory in archive recovery as a restore leaves one: a copy of a primary (taken as a
/// standby and stopped at once; `standby.signal` replaced by `recovery.signal`), with the
/// primary's WAL as the archive. The primary wrote two rows after the copy was taken.
async fn directory_in_archive_recovery(parent: &Path) -> Restored {
    let primary_dir = parent.join("primary");
    let primary = EmbeddedCluster::start(EmbeddedOptions {
        data_dir: Some(primary_dir.clone()),
        ..EmbeddedOptions::default()
    })
    .await
    .unwrap_or_else(|e| panic!("the primary did not start: {e}"));
    let mut connection = connect(&primary).await;
    sqlx::query("CREATE TABLE kept (note text)")
        .execute(&mut connection)
        .await
        .expect("a table");
    let data_dir = parent.join("copy");
    let standby = primary
        .start_standby(EmbeddedOptions {
            data_dir: Some(data_dir.clone()),
            ..EmbeddedOptions::default()
        })
        .await
        .unwrap_or_else(|e| panic!("the standby did not start: {e}"));
    // Stopped before the rows exist: the copy must replay them from the archive.
    standby.stop().await.expect("stop the standby");
    let mut xids = Vec::new();
    for note in ["first", "second"] {
        let xid: String =
            sqlx::query_scalar("INSERT INTO kept VALUES ($1) RETURNING pg_current_xact_id()::text")
                .bind(note)
                .fetch_one(&mut connection)
                .await
                .expect("a row");
        xids.push(xid);
    }
    connection.close().await.expect("close");
    primary.stop().await.expect("stop the primary");
    std::fs::remove_file(data_dir.join("standby.signal")).expect("remove standby.signal");
    std::fs::write(data_dir.join("recovery.signal"), "").expect("write recovery.signal");
    Restored {
        data_dir,
        archive: primary_dir.join("pg_wal"),
        first: xids.swap_remove(0),
    }
}

struct Restored {
    data_dir: PathBuf,
    /// The stopped primary's `pg_wal`, which `restore_command` copies from.
    archive: PathBuf,
    /// The first row's transaction id: a recovery target between the two rows.
    first: String,
}

impl Restored {
    /// Recovery up to and including the first row's transaction, then `action`.
    fn options(&self, action: &str) -> EmbeddedOptions {
        let archive = self.archive.display();
        EmbeddedOptions {
            data_dir: Some(self.data_dir.clone()),
            settings: vec![
                setting("restore_command", &format!("cp '{archive}/%f' '%p'")),
                setting("recovery_target_xid", &self.first),
                setting("recovery_target_action", action),
            ],
            ..EmbeddedOptions::default()
        }
    }
}

async fn notes(connection: &mut PgConnection) -> Vec<String> {
    sqlx::query_scalar("SELECT note FROM kept ORDER BY note")
        .fetch_all(connection)
        .await
        .expect("the notes")
}

#[tokio::test]
async fn a_directory_in_archive_recovery_is_ready_once_promoted() {
    let parent = tempfile::tempdir().expect("tempdir");
    let restored = directory_in_archive_recovery(parent.path()).await;

    let recovered = EmbeddedCluster::start(restored.options("promote"))
        .await
        .unwrap_or_else(|e| panic!("the recovered directory did not start: {e}"));
    let mut connection = connect(&recovered).await;
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&mut connection)
        .await
        .expect("ask");
    assert!(!in_recovery, "start returned before the promotion");
    assert_eq!(
        notes(&mut connection).await,
        ["first"],
        "recovered up to the target transaction and no further"
    );
    sqlx::query("INSERT INTO kept VALUES ('promoted')")
        .execute(&mut connection)
        .await
        .expect("it takes writes at once");
    assert!(
        !restored.data_dir.join("recovery.signal").exists(),
        "the server removes the signal when it promotes"
    );
    connection.close().await.expect("close");
    recovered.stop().await.expect("stop");
}

#[tokio::test]
async fn a_recovery_that_pauses_at_its_target_is_an_error_and_the_server_is_stopped() {
    let parent = tempfile::tempdir().expect("tempdir");
    let restored = directory_in_archive_recovery(parent.path()).await;

    let error = EmbeddedCluster::start(restored.options("pause"))
        .await
        .expect_err("a paused recovery takes no writes");
    assert!(
        matches!(error, EmbeddedError::RecoveryPaused { .. }),
        "{error}"
    );
    assert!(
        !restored.data_dir.join("postmaster.pid").exists(),
        "the server was stopped before the error was returned"
    );

    // Stopped, so the same directory can be started again at once, this time promoting.
    let recovered = EmbeddedCluster::start(restored.options("promote"))
        .await
        .unwrap_or_else(|e| panic!("the second start did not promote: {e}"));
    let mut connection = connect(&recovered).await;
    assert_eq!(notes(&mut connection).await, ["first"]);
    connection.close().await.expect("close");
    recovered.stop().await.expect("stop");
}
