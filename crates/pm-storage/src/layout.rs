//! The physical layout of the event tables: daily pg_partman partitions (what the migrations
//! build, and what production runs) or one plain table each (what benchmarks compare against).
//!
//! The layout is read from the catalog, never recorded apart: `order_events` is either a
//! partitioned table or an ordinary one, and everything that cares (`partition-maintain`, the
//! partition metrics) asks [`current`]. Both layouts have the same columns, constraints and
//! index names, so every query of the services runs unchanged on either.
//!
//! Only a database whose event tables are still empty can be switched to
//! [`Layout::Unpartitioned`] (`pmctl migrate --layout unpartitioned`): the layout is chosen
//! when a database is created, and never changes under data. There is no way back — create a
//! new database instead.

use std::fmt;

use sqlx::{Connection, PgConnection, PgPool};

use crate::partitions::{quote_ident, PARTITIONED_TABLES};
use crate::StorageError;

/// How the event tables are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// Range-partitioned by day with pg_partman (the migrations' layout).
    Partitioned,
    /// One ordinary table per event table, with the same indexes.
    Unpartitioned,
}

impl Layout {
    pub const ALL: [Layout; 2] = [Layout::Partitioned, Layout::Unpartitioned];

    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Partitioned => "partitioned",
            Layout::Unpartitioned => "unpartitioned",
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a database cannot take the layout asked for.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("the event tables do not exist yet; run `pmctl migrate` first")]
    NotMigrated,
    #[error(
        "{table} already holds {rows} row(s): the layout is chosen for a new database and never \
         changes under data (create a new database with `--layout {wanted}`)"
    )]
    NotEmpty {
        table: &'static str,
        rows: i64,
        wanted: Layout,
    },
    #[error(
        "this database's event tables are unpartitioned, and there is no way back: create a new \
         database for the partitioned layout"
    )]
    NoWayBack,
    #[error("the event tables disagree: {0}")]
    Mixed(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<sqlx::Error> for LayoutError {
    fn from(e: sqlx::Error) -> Self {
        LayoutError::Storage(e.into())
    }
}

/// The layout of one table, from its `relkind` (`p` partitioned, `r` ordinary).
async fn table_layout(conn: &mut PgConnection, table: &str) -> Result<Option<Layout>, sqlx::Error> {
    let kind: Option<String> =
        sqlx::query_scalar("SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1)")
            .bind(table)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(kind.map(|k| {
        if k == "p" {
            Layout::Partitioned
        } else {
            Layout::Unpartitioned
        }
    }))
}

/// Whether `table` (schema-qualified) exists and is partitioned.
pub(crate) async fn is_partitioned(
    conn: &mut PgConnection,
    table: &str,
) -> Result<bool, sqlx::Error> {
    Ok(table_layout(conn, table).await? == Some(Layout::Partitioned))
}

/// The layout of this database's event tables.
pub async fn current(pool: &PgPool) -> Result<Layout, LayoutError> {
    let mut conn = crate::db::acquire(pool).await?;
    current_on(&mut conn).await
}

async fn current_on(conn: &mut PgConnection) -> Result<Layout, LayoutError> {
    let mut found = Vec::with_capacity(PARTITIONED_TABLES.len());
    for table in PARTITIONED_TABLES {
        found.push((table, table_layout(conn, table).await?));
    }
    match found.as_slice() {
        [(_, Some(a)), rest @ ..] if rest.iter().all(|(_, l)| l == &Some(*a)) => Ok(*a),
        _ if found.iter().all(|(_, l)| l.is_none()) => Err(LayoutError::NotMigrated),
        _ => Err(LayoutError::Mixed(
            found
                .iter()
                .map(|(t, l)| format!("{t} is {}", l.map_or("missing", Layout::as_str)))
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

/// Gives the (migrated) database the layout `wanted`; returns whether anything changed.
/// Switching to [`Layout::Unpartitioned`] replaces each empty partitioned event table by an
/// ordinary one with the same columns, constraints, indexes and grants, and removes it from
/// pg_partman's configuration — all in one transaction, so a failure leaves the partitioned
/// layout as it was.
pub async fn ensure(pool: &PgPool, wanted: Layout) -> Result<bool, LayoutError> {
    let mut conn = crate::db::acquire(pool).await?;
    let mut tx = conn.begin().await?;
    // Two concurrent runs must not both convert: the first one's locks make the second wait,
    // and it then finds the layout already in place.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('pm_storage::layout'))")
        .execute(&mut *tx)
        .await?;
    let now = current_on(&mut tx).await?;
    match (now, wanted) {
        (a, b) if a == b => return Ok(false),
        (Layout::Unpartitioned, Layout::Partitioned) => return Err(LayoutError::NoWayBack),
        _ => {}
    }
    for table in PARTITIONED_TABLES {
        sqlx::query(&format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
            .execute(&mut *tx)
            .await?;
        let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&mut *tx)
            .await?;
        if rows > 0 {
            return Err(LayoutError::NotEmpty {
                table,
                rows,
                wanted,
            });
        }
    }
    for table in PARTITIONED_TABLES {
        unpartition(&mut tx, table).await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Replaces the partitioned `table` (schema-qualified) by an ordinary table of the same name.
async fn unpartition(conn: &mut PgConnection, table: &str) -> Result<(), LayoutError> {
    let name = table.rsplit('.').next().unwrap_or(table);
    let staging = format!("{name}_unpartitioned");
    // What the new table must get back by name: the indexes (their definitions say
    // `ON ONLY` on a partitioned parent), the key constraints, and the grants.
    let constraints: Vec<(String, String)> = sqlx::query_as(
        "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint
         WHERE conrelid = to_regclass($1) AND contype IN ('p', 'u', 'x') ORDER BY conname",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await?;
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
         WHERE i.indrelid = to_regclass($1)
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
         ORDER BY i.indexrelid",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await?;
    let grants: Vec<(String, String)> = sqlx::query_as(
        "SELECT grantee, string_agg(privilege_type, ', ') FROM information_schema.role_table_grants
         WHERE table_schema = split_part($1, '.', 1) AND table_name = split_part($1, '.', 2)
           AND grantee <> current_user
         GROUP BY grantee ORDER BY grantee",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await?;

    sqlx::query(&format!(
        "CREATE TABLE {staging} (LIKE {table} INCLUDING ALL EXCLUDING INDEXES)"
    ))
    .execute(&mut *conn)
    .await?;
    forget_in_partman(conn, table).await?;
    sqlx::query(&format!("DROP TABLE {table}"))
        .execute(&mut *conn)
        .await?;
    sqlx::query(&format!("ALTER TABLE {staging} RENAME TO {name}"))
        .execute(&mut *conn)
        .await?;
    for (constraint, definition) in constraints {
        sqlx::query(&format!(
            "ALTER TABLE {table} ADD CONSTRAINT {constraint} {definition}"
        ))
        .execute(&mut *conn)
        .await?;
    }
    for definition in indexes {
        sqlx::query(&definition.replacen(" ON ONLY ", " ON ", 1))
            .execute(&mut *conn)
            .await?;
    }
    for (grantee, privileges) in grants {
        sqlx::query(&format!(
            "GRANT {privileges} ON {table} TO {}",
            quote_ident(&grantee)
        ))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Removes `table` from pg_partman's configuration, with the template table pg_partman 4.x
/// keeps for it.
async fn forget_in_partman(conn: &mut PgConnection, table: &str) -> Result<(), LayoutError> {
    let Some((schema, _)) = crate::partitions::installed_partman(conn).await? else {
        return Ok(());
    };
    let schema = quote_ident(&schema);
    let template: Option<Option<String>> = sqlx::query_scalar(&format!(
        "DELETE FROM {schema}.part_config WHERE parent_table = $1 RETURNING template_table"
    ))
    .bind(table)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(Some(template)) = template {
        if let Some(regclass) =
            sqlx::query_scalar::<_, Option<String>>("SELECT to_regclass($1)::text")
                .bind(&template)
                .fetch_one(&mut *conn)
                .await?
        {
            sqlx::query(&format!("DROP TABLE {regclass}"))
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}
