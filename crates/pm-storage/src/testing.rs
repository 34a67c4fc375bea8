//! The per-test database harness (feature `testing`).
//!
//! Each test gets a fresh database cloned from a migrated template, so tests are isolated
//! and migrations run once per schema version rather than once per test. The server is
//! the one named by `PM_TEST_DATABASE_URL` (an admin URL, e.g.
//! `postgres://postgres@127.0.0.1:5432/postgres`) or, when that is not set, a private
//! throw-away cluster started from the machine's PostgreSQL binaries — the same embedded
//! cluster `pmctl demo` uses, with `wal_level = logical` — which lives as long as the test
//! process.
//!
//! The template's name carries a fingerprint of the migrations, and it is built under an
//! advisory lock and renamed into place only when complete, so concurrent test processes
//! against one server neither race nor see a half-migrated template.

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::OnceCell;

use crate::{connect, migrate, PoolOptions};

/// The environment variable naming an admin URL of an existing server.
pub const ADMIN_URL_VAR: &str = "PM_TEST_DATABASE_URL";

struct Server {
    admin_url: String,
    template: String,
    /// Keeps the embedded cluster (if any) running for the life of the process.
    embedded: Option<std::sync::Mutex<pm_embedded_pg::EmbeddedCluster>>,
}

static SERVER: OnceCell<Result<Server, String>> = OnceCell::const_new();
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh, migrated database for one test.
#[derive(Debug)]
pub struct TestDatabase {
    pub pool: PgPool,
    /// A URL of this database (for starting `pmctl` processes against it).
    pub url: String,
    pub name: String,
    drop_on_exit: Option<String>,
}

impl TestDatabase {
    /// Creates the database. Panics with a message saying what to start or install when
    /// no server can be had: a test that cannot find its database must fail, not skip.
    pub async fn new() -> TestDatabase {
        match Self::try_new().await {
            Ok(db) => db,
            Err(e) => panic!("no test database: {e}{}", embedded_state()),
        }
    }

    async fn try_new() -> Result<TestDatabase, String> {
        let server = SERVER
            .get_or_init(init_server)
            .await
            .as_ref()
            .map_err(Clone::clone)?;
        let name = format!(
            "pm_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            uuid::Uuid::new_v4()
                .simple()
                .to_string()
                .get(..8)
                .unwrap_or("x")
        );
        let mut admin = PgConnection::connect(&server.admin_url)
            .await
            .map_err(|e| e.to_string())?;
        let create = format!("CREATE DATABASE {name} TEMPLATE {}", server.template);
        alone_on(&mut admin, &server.template, &create)
            .await
            .map_err(|e| format!("creating {name} from {}: {e}", server.template))?;
        let url = replace_database(&server.admin_url, &name);
        let pool = connect(
            &url,
            &PoolOptions {
                max_connections: 30,
                ..PoolOptions::default()
            },
        )
        .map_err(|e| e.to_string())?;
        let drop_on_exit = server.embedded.is_none().then(|| server.admin_url.clone());
        Ok(TestDatabase {
            pool,
            url,
            name,
            drop_on_exit,
        })
    }
}

impl Drop for TestDatabase {
    /// On a shared server, drops the database again; an embedded cluster is thrown away
    /// whole when the process ends.
    fn drop(&mut self) {
        let Some(admin_url) = self.drop_on_exit.take() else {
            return;
        };
        let name = self.name.clone();
        let pool = self.pool.clone();
        // Drop runs inside the test's runtime; do the async clean-up on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async move {
                    pool.close().await;
                    if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                                .execute(&mut admin)
                                .await;
                    }
                });
            }
        })
        .join();
    }
}

/// What the embedded cluster (if this process runs one) is doing, for a failure message: a
/// server that died says so here, with its own last words.
fn embedded_state() -> String {
    let Some(Ok(server)) = SERVER.get() else {
        return String::new();
    };
    let Some(cluster) = &server.embedded else {
        return String::new();
    };
    let cluster = match cluster.lock() {
        Ok(cluster) => cluster,
        Err(poisoned) => poisoned.into_inner(),
    };
    let state = match cluster.exit_status() {
        Some(status) => format!("exited with status {status}"),
        None => "still running".to_owned(),
    };
    format!(
        "\nthe embedded server on port {} is {state}; its log ({}) ends with:\n{}",
        cluster.port(),
        cluster.log_path().display(),
        cluster.log_tail()
    )
}

async fn init_server() -> Result<Server, String> {
    let (admin_url, embedded) = match std::env::var(ADMIN_URL_VAR) {
        Ok(url) if !url.is_empty() => (url, None),
        _ => {
            let cluster = pm_embedded_pg::EmbeddedCluster::start(pm_embedded_pg::EmbeddedOptions {
                data_dir: None,
                durable: false,
                port: None,
                tls: None,
                // The Debezium tests stream the outbox through a logical replication slot.
                logical_replication: true,
                standby_of: None,
                settings: Vec::new(),
            })
            .await
            .map_err(|e| {
                format!("{e}\n(or point {ADMIN_URL_VAR} at a PostgreSQL server with pg_partman, as a superuser)")
            })?;
            (cluster.admin_url(), Some(std::sync::Mutex::new(cluster)))
        }
    };
    let template = ensure_template(&admin_url).await?;
    Ok(Server {
        admin_url,
        template,
        embedded,
    })
}

/// Creates the migrated template once per migration set.
async fn ensure_template(admin_url: &str) -> Result<String, String> {
    let template = format!("pm_template_{}", migrate::fingerprint());
    let mut admin = PgConnection::connect(admin_url)
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", redact(admin_url)))?;
    // Serialise template creation across processes sharing this server.
    sqlx::query("SELECT pg_advisory_lock(72616001)")
        .execute(&mut admin)
        .await
        .map_err(|e| e.to_string())?;
    let result = async {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(&template)
                .fetch_one(&mut admin)
                .await
                .map_err(|e| e.to_string())?;
        if exists {
            return Ok(());
        }
        let building = format!("{template}_building");
        sqlx::query(&format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"))
            .execute(&mut admin)
            .await
            .map_err(|e| e.to_string())?;
        sqlx::query(&format!("CREATE DATABASE {building}"))
            .execute(&mut admin)
            .await
            .map_err(|e| e.to_string())?;
        let pool = connect(
            &replace_database(admin_url, &building),
            &PoolOptions::default(),
        )
        .map_err(|e| e.to_string())?;
        let migrated = migrate::run(&pool)
            .await
            .map_err(|e| format!("migrating the template: {e}"));
        pool.close().await;
        migrated?;
        let rename = format!("ALTER DATABASE {building} RENAME TO {template}");
        alone_on(&mut admin, &building, &rename).await?;
        Ok::<(), String>(())
    }
    .await;
    let _ = sqlx::query("SELECT pg_advisory_unlock(72616001)")
        .execute(&mut admin)
        .await;
    result.map(|()| template)
}

/// Runs `sql`, which PostgreSQL refuses while anyone else is connected to `database`
/// ("being accessed by other users"): a closed pool's backends end a moment after its
/// sockets close, and autovacuum visits a freshly migrated database at any time. Nobody
/// else has business on a template, so its other sessions are ended and the statement
/// retried, for a bounded time.
async fn alone_on(admin: &mut PgConnection, database: &str, sql: &str) -> Result<(), String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match sqlx::query(sql).execute(&mut *admin).await {
            Ok(_) => return Ok(()),
            Err(e)
                if std::time::Instant::now() < deadline
                    && e.to_string().contains("other users") =>
            {
                let _ = sqlx::query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE datname = $1 AND pid <> pg_backend_pid()",
                )
                .bind(database)
                .execute(&mut *admin)
                .await;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Replaces the database name (the URL path) of a PostgreSQL URL.
fn replace_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{db}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_replaced_in_urls() {
        assert_eq!(
            replace_database("postgres://u@h:5/postgres", "x"),
            "postgres://u@h:5/x"
        );
        assert_eq!(
            replace_database("postgres://u@h:5", "x"),
            "postgres://u@h:5/x"
        );
        assert_eq!(
            replace_database("postgres://u@h/db?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
    }
}
