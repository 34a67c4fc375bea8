//! Least-privilege PostgreSQL roles (`pmctl db bootstrap`).
//!
//! Three roles, each with what its processes need and nothing more:
//!
//! - the **owner** owns the schema and every table: it runs the migrations and partition
//!   maintenance (pg_partman creates and drops partitions as the parent's owner). It is
//!   no superuser and cannot create roles or databases.
//! - the **application** role (serve-api, serve-ingest's database-free sibling has none)
//!   may read and write rows: `SELECT, INSERT, UPDATE` on the tables and the sequences'
//!   `USAGE` — no `DELETE` (nothing the services do deletes; pruning is maintenance), no
//!   `TRUNCATE`, no DDL (it owns nothing and cannot create in the schema), and on
//!   `audit_log` only `SELECT, INSERT`. The same holds in the `analytics` schema (the read
//!   models `pmctl project-analytics` writes), which it may use but not create in.
//! - the **read-only** role may `SELECT`, for reporting and support (analytics included).
//!
//! Default privileges make the rules hold for what the owner creates later (new tables
//! of a migration, tomorrow's partitions), so a migration does not need to repeat them.
//! Everything is idempotent: running the bootstrap again, after an upgrade, brings
//! grants and ownership back to these rules. It must run as a superuser: creating
//! roles and the pg_partman extension (not a trusted extension) needs one.

use sqlx::{Acquire, PgPool};

use crate::StorageError;

/// The names of the three roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleNames {
    pub owner: String,
    pub app: String,
    pub readonly: String,
}

impl Default for RoleNames {
    fn default() -> Self {
        Self {
            owner: "pm_owner".into(),
            app: "pm_app".into(),
            readonly: "pm_readonly".into(),
        }
    }
}

/// Passwords to set (a role without one keeps its current password, or none: it can
/// then log in only by a method that needs none, e.g. peer or certificate).
#[derive(Default)]
pub struct RolePasswords {
    pub owner: Option<String>,
    pub app: Option<String>,
    pub readonly: Option<String>,
}

impl std::fmt::Debug for RolePasswords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RolePasswords")
            .field("owner", &self.owner.as_ref().map(|_| "[redacted]"))
            .field("app", &self.app.as_ref().map(|_| "[redacted]"))
            .field("readonly", &self.readonly.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// What a bootstrap did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootstrapReport {
    /// The database the grants apply to.
    pub database: String,
    /// Roles created now (the others existed).
    pub created: Vec<String>,
    /// Objects handed to the owner (made by another role, e.g. migrations run as a
    /// superuser before the bootstrap).
    pub reowned: u64,
}

/// Why the bootstrap refused.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("the bootstrap must run as a superuser (it creates roles and the pg_partman extension); connected as {0}")]
    NotSuperuser(String),
    #[error("role names must differ and be plain identifiers (letters, digits, _): {0:?}")]
    BadNames(RoleNames),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<sqlx::Error> for BootstrapError {
    fn from(e: sqlx::Error) -> Self {
        Self::Storage(e.into())
    }
}

fn plain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && !name.starts_with("pg_")
}

/// Creates or updates the roles and brings the connected database's ownership and
/// grants to the rules above, in one transaction.
pub async fn bootstrap(
    pool: &PgPool,
    names: &RoleNames,
    passwords: &RolePasswords,
) -> Result<BootstrapReport, BootstrapError> {
    let RoleNames {
        owner,
        app,
        readonly,
    } = names;
    if ![owner, app, readonly].iter().all(|n| plain(n))
        || owner == app
        || owner == readonly
        || app == readonly
    {
        return Err(BootstrapError::BadNames(names.clone()));
    }
    let mut conn = crate::db::acquire(pool).await?;
    let (user, superuser, database): (String, bool, String) = sqlx::query_as(
        "SELECT current_user::text, rolsuper, current_database()::text \
         FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(&mut *conn)
    .await?;
    if !superuser {
        return Err(BootstrapError::NotSuperuser(user));
    }
    let mut tx = conn.begin().await?;
    let mut report = BootstrapReport {
        database: database.clone(),
        ..Default::default()
    };

    // The roles. Identifiers are checked plain above and quoted anyway; passwords go
    // through quote_literal on the server, never into our SQL text.
    for (role, password) in [
        (owner, &passwords.owner),
        (app, &passwords.app),
        (readonly, &passwords.readonly),
    ] {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
                .bind(role)
                .fetch_one(&mut *tx)
                .await?;
        if !exists {
            exec(&mut tx, &format!("CREATE ROLE \"{role}\" LOGIN")).await?;
            report.created.push(role.clone());
        }
        exec(
            &mut tx,
            &format!(
                "ALTER ROLE \"{role}\" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
            ),
        )
        .await?;
        if let Some(password) = password {
            let sql: String = sqlx::query_scalar(&format!(
                "SELECT format('ALTER ROLE \"{role}\" PASSWORD %L', $1::text)"
            ))
            .bind(password)
            .fetch_one(&mut *tx)
            .await?;
            exec(&mut tx, &sql).await?;
        }
    }

    let db = quote(&database);
    let statements = [
        // The database: only our roles connect; the owner owns it.
        format!("ALTER DATABASE {db} OWNER TO \"{owner}\""),
        format!("REVOKE ALL ON DATABASE {db} FROM PUBLIC"),
        format!("GRANT CONNECT, TEMPORARY ON DATABASE {db} TO \"{app}\", \"{readonly}\""),
        // The schemas: the owner creates, the others only use.
        format!("ALTER SCHEMA public OWNER TO \"{owner}\""),
        "REVOKE ALL ON SCHEMA public FROM PUBLIC".to_owned(),
        format!("GRANT USAGE ON SCHEMA public TO \"{app}\", \"{readonly}\""),
        "CREATE SCHEMA IF NOT EXISTS partman".to_owned(),
        format!("ALTER SCHEMA partman OWNER TO \"{owner}\""),
        "CREATE EXTENSION IF NOT EXISTS pg_partman SCHEMA partman".to_owned(),
    ];
    for sql in &statements {
        exec(&mut tx, sql).await?;
    }
    // pg_partman's own tables and functions (in whichever schema it was installed), as
    // its documentation asks for a non-superuser maintenance role.
    let partman: String = sqlx::query_scalar(
        "SELECT n.nspname::text FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace \
         WHERE e.extname = 'pg_partman'",
    )
    .fetch_one(&mut *tx)
    .await?;
    let pm = quote(&partman);
    for sql in [
        format!("GRANT ALL ON SCHEMA {pm} TO \"{owner}\""),
        format!("GRANT ALL ON ALL TABLES IN SCHEMA {pm} TO \"{owner}\""),
        format!("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {pm} TO \"{owner}\""),
        format!("GRANT EXECUTE ON ALL PROCEDURES IN SCHEMA {pm} TO \"{owner}\""),
        format!("GRANT USAGE ON SCHEMA {pm} TO \"{app}\", \"{readonly}\""),
        format!("GRANT SELECT ON ALL TABLES IN SCHEMA {pm} TO \"{app}\", \"{readonly}\""),
    ] {
        exec(&mut tx, &sql).await?;
    }

    // The analytics schema, when a migration made it already: the owner's, and used (not
    // created in) by the others, like public.
    let analytics: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(ANALYTICS_SCHEMA)
            .fetch_one(&mut *tx)
            .await?;
    if analytics {
        for sql in [
            format!("ALTER SCHEMA {ANALYTICS_SCHEMA} OWNER TO \"{owner}\""),
            format!("REVOKE ALL ON SCHEMA {ANALYTICS_SCHEMA} FROM PUBLIC"),
        ] {
            exec(&mut tx, &sql).await?;
        }
    }

    // Objects of our schemas made by someone else (migrations run as a superuser before
    // the bootstrap) go to the owner. Partitions included: pg_partman maintains a
    // partition set only as the owner of its parent. Identity sequences are skipped:
    // they follow their table.
    let foreign: Vec<(String, String)> = sqlx::query_as(
        "SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' \
                WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END, \
                format('%I.%I', n.nspname, c.relname) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname IN ('public', $2) AND c.relkind IN ('r', 'p', 'S', 'v', 'm') \
           AND pg_get_userbyid(c.relowner) <> $1 \
           AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'i')",
    )
    .bind(owner)
    .bind(ANALYTICS_SCHEMA)
    .fetch_all(&mut *tx)
    .await?;
    for (kind, name) in &foreign {
        exec(
            &mut tx,
            &format!("ALTER {kind} {name} OWNER TO \"{owner}\""),
        )
        .await?;
    }
    let functions: Vec<String> = sqlx::query_scalar(
        "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
         WHERE n.nspname = 'public' AND pg_get_userbyid(p.proowner) <> $1 \
           AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')",
    )
    .bind(owner)
    .fetch_all(&mut *tx)
    .await?;
    for f in &functions {
        exec(&mut tx, &format!("ALTER FUNCTION {f} OWNER TO \"{owner}\"")).await?;
    }
    report.reowned = (foreign.len() + functions.len()) as u64;

    // Where `migrate` finds the roles, to keep the grants right on the tables it adds.
    exec(
        &mut tx,
        "CREATE TABLE IF NOT EXISTS _pm_roles (kind text PRIMARY KEY, role_name text NOT NULL)",
    )
    .await?;
    for (kind, role) in [("owner", owner), ("app", app), ("readonly", readonly)] {
        sqlx::query(
            "INSERT INTO _pm_roles (kind, role_name) VALUES ($1, $2) \
             ON CONFLICT (kind) DO UPDATE SET role_name = excluded.role_name",
        )
        .bind(kind)
        .bind(role)
        .execute(&mut *tx)
        .await?;
    }
    exec(
        &mut tx,
        &format!("ALTER TABLE _pm_roles OWNER TO \"{owner}\""),
    )
    .await?;

    // What the others may do on everything the owner makes later (tomorrow's
    // partitions, a migration's tables: `migrate` then narrows them with the rules of
    // `table_grants`).
    for sql in [
        format!(
            "ALTER DEFAULT PRIVILEGES FOR ROLE \"{owner}\" IN SCHEMA public \
             GRANT SELECT, INSERT, UPDATE ON TABLES TO \"{app}\""
        ),
        format!(
            "ALTER DEFAULT PRIVILEGES FOR ROLE \"{owner}\" IN SCHEMA public \
             GRANT USAGE, SELECT ON SEQUENCES TO \"{app}\""
        ),
        format!(
            "ALTER DEFAULT PRIVILEGES FOR ROLE \"{owner}\" IN SCHEMA public \
             GRANT SELECT ON TABLES TO \"{readonly}\""
        ),
    ] {
        exec(&mut tx, &sql).await?;
    }
    table_grants(&mut tx, names).await?;
    tx.commit().await?;
    Ok(report)
}

/// The schema of the analytics read models (migration `…_analytics.sql`).
const ANALYTICS_SCHEMA: &str = "analytics";

/// The grants on the tables that exist now: rows for the application role (without
/// `DELETE`, and only `SELECT, INSERT` on the audit log), reads for the read-only role; the
/// same in the analytics schema, with its use. Run by the owner (as `migrate`) or a
/// superuser.
async fn table_grants(conn: &mut sqlx::PgConnection, names: &RoleNames) -> Result<(), sqlx::Error> {
    let RoleNames { app, readonly, .. } = names;
    let mut statements = vec![
        format!("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM \"{app}\", \"{readonly}\""),
        format!("GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO \"{app}\""),
        format!("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO \"{app}\""),
        format!("GRANT SELECT ON ALL TABLES IN SCHEMA public TO \"{readonly}\""),
    ];
    let analytics: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(ANALYTICS_SCHEMA)
            .fetch_one(&mut *conn)
            .await?;
    if analytics {
        let a = ANALYTICS_SCHEMA;
        statements.extend([
            format!("GRANT USAGE ON SCHEMA {a} TO \"{app}\", \"{readonly}\""),
            format!("REVOKE ALL ON ALL TABLES IN SCHEMA {a} FROM \"{app}\", \"{readonly}\""),
            format!("GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA {a} TO \"{app}\""),
            format!("GRANT SELECT ON ALL TABLES IN SCHEMA {a} TO \"{readonly}\""),
        ]);
    }
    // Narrower rules for the tables that have them, where they exist yet: audit rows are
    // append-only; the role registry and the migration history are the owner's business.
    let narrower: Vec<String> = sqlx::query_scalar(
        "SELECT t FROM unnest(ARRAY['audit_log', '_pm_roles', '_sqlx_migrations']) AS t \
         WHERE to_regclass('public.' || t) IS NOT NULL",
    )
    .fetch_all(&mut *conn)
    .await?;
    for table in narrower {
        let refused = if table == "audit_log" {
            "UPDATE"
        } else {
            "INSERT, UPDATE"
        };
        statements.push(format!("REVOKE {refused} ON {table} FROM \"{app}\""));
    }
    for sql in &statements {
        exec(conn, sql).await?;
    }
    Ok(())
}

/// After migrations: re-applies the table grants of a bootstrapped database, so the
/// tables a migration added follow the same rules. Returns the roles, or `None` for a
/// database that was never bootstrapped (nothing to do).
pub async fn refresh_grants(pool: &PgPool) -> Result<Option<RoleNames>, StorageError> {
    let bootstrapped: bool =
        sqlx::query_scalar("SELECT to_regclass('public._pm_roles') IS NOT NULL")
            .fetch_one(pool)
            .await?;
    if !bootstrapped {
        return Ok(None);
    }
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT kind, role_name FROM _pm_roles")
        .fetch_all(pool)
        .await?;
    let role = |kind: &str| rows.iter().find(|(k, _)| k == kind).map(|(_, r)| r.clone());
    let (Some(owner), Some(app), Some(readonly)) = (role("owner"), role("app"), role("readonly"))
    else {
        return Ok(None);
    };
    let names = RoleNames {
        owner,
        app,
        readonly,
    };
    let mut tx = crate::db::begin(pool).await?;
    table_grants(&mut tx, &names).await?;
    tx.commit().await?;
    Ok(Some(names))
}

/// What the connected role may do that a service should not, in words; empty when it
/// is a plain application role. Checked by serve-api at start.
pub async fn excess_privileges(pool: &PgPool) -> Result<Vec<String>, StorageError> {
    let (user, superuser, create_db, create_role): (String, bool, bool, bool) = sqlx::query_as(
        "SELECT current_user::text, rolsuper, rolcreatedb, rolcreaterole \
         FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(pool)
    .await?;
    let mut excess = Vec::new();
    if superuser {
        excess.push(format!("{user} is a superuser"));
    }
    if create_db || create_role {
        excess.push(format!("{user} may create databases or roles"));
    }
    let (creates, owns): (bool, i64) = sqlx::query_as(
        "SELECT has_schema_privilege(current_user, 'public', 'CREATE'), \
                (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = 'public' AND c.relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user))",
    )
    .fetch_one(pool)
    .await?;
    if creates && !superuser {
        excess.push(format!(
            "{user} may create tables in the public schema (DDL)"
        ));
    }
    if owns > 0 && !superuser {
        excess.push(format!(
            "{user} owns {owns} tables, so it may alter, drop or truncate them (DDL)"
        ));
    }
    Ok(excess)
}

async fn exec(tx: &mut sqlx::PgConnection, sql: &str) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(sql).execute(tx).await.map(|_| ())
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// The owner role of a bootstrapped schema, when the connected role is a superuser
/// other than it: what it creates then escapes the bootstrap's rules.
pub async fn bypassed_owner(pool: &PgPool) -> Result<Option<String>, StorageError> {
    let row: Option<(String, bool)> = sqlx::query_as(
        "SELECT pg_get_userbyid(n.nspowner)::text, \
                (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) \
         FROM pg_namespace n WHERE n.nspname = 'public' \
           AND pg_get_userbyid(n.nspowner) <> current_user \
           AND NOT (SELECT rolsuper FROM pg_roles WHERE oid = n.nspowner) \
           AND pg_get_userbyid(n.nspowner) <> 'pg_database_owner'",
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.and_then(|(owner, superuser)| superuser.then_some(owner)))
}
