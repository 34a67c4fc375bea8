//! The benchmark's schemas: one per layout for `dispute_events`, and `bench_data` for what the
//! layouts share (the disputes and the generator's plan). Everything lives in these schemas,
//! so the benchmark can run in a database that holds other things, and is dropped whole.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::Layout;
use crate::LabError;

/// The shared schema: `disputes` (joined by every layout) and the generator's scratch table.
pub(crate) const DATA_SCHEMA: &str = "bench_data";

/// The columns of `dispute_events`, as in migrations/20261125000002_event_tables.sql.
const EVENT_COLUMNS: &str = "
    event_id          uuid        NOT NULL,
    dispute_id        uuid        NOT NULL,
    kind              text        NOT NULL,
    provider_event_id text,
    data              jsonb       NOT NULL,
    created_at        timestamptz NOT NULL";

/// How many days pg_partman premakes ahead, as in the real migration.
const PREMAKE_DAYS: u32 = 7;

/// Where pg_partman is installed and its version.
#[derive(Debug, Clone)]
pub(crate) struct Partman {
    pub(crate) schema: String,
    pub(crate) version: String,
}

impl Partman {
    fn major(&self) -> u32 {
        self.version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0)
    }
}

/// Finds pg_partman, installing it into schema `partman` when the server has it but this
/// database does not.
pub(crate) async fn ensure_partman(conn: &mut PgConnection) -> Result<Partman, LabError> {
    if let Some(found) = installed_partman(conn).await? {
        return Ok(found);
    }
    let (available, version_num): (bool, i32) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_partman'),
                current_setting('server_version_num')::int",
    )
    .fetch_one(&mut *conn)
    .await?;
    if !available {
        return Err(LabError::PartmanMissing {
            major: u32::try_from(version_num / 10_000).unwrap_or(0),
        });
    }
    sqlx::raw_sql(
        "CREATE SCHEMA IF NOT EXISTS partman; CREATE EXTENSION IF NOT EXISTS pg_partman SCHEMA partman;",
    )
    .execute(&mut *conn)
    .await?;
    installed_partman(conn)
        .await?
        .ok_or_else(|| LabError::Explain("pg_partman vanished after CREATE EXTENSION".into()))
}

async fn installed_partman(conn: &mut PgConnection) -> Result<Option<Partman>, LabError> {
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT n.nspname::text, e.extversion FROM pg_extension e
         JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_partman'",
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|(schema, version)| Partman { schema, version }))
}

/// Drops everything a previous run (or this one) created: the schemas, and pg_partman's
/// configuration and template table for the partitioned layout, which live outside them and
/// would otherwise make `run_maintenance()` trip over a parent that no longer exists.
pub(crate) async fn drop_all(conn: &mut PgConnection, partman: &Partman) -> Result<(), LabError> {
    for layout in Layout::ALL.into_iter().filter(|l| l.is_partitioned()) {
        let parent = layout.table();
        let template: Option<Option<String>> = sqlx::query_scalar(&format!(
            "SELECT template_table::text FROM {}.part_config WHERE parent_table = $1",
            quote_ident(&partman.schema)
        ))
        .bind(&parent)
        .fetch_optional(&mut *conn)
        .await?;
        sqlx::query(&format!(
            "DELETE FROM {}.part_config WHERE parent_table = $1",
            quote_ident(&partman.schema)
        ))
        .bind(&parent)
        .execute(&mut *conn)
        .await?;
        if let Some(template) = template.flatten() {
            let qualified = template
                .split('.')
                .map(quote_ident)
                .collect::<Vec<_>>()
                .join(".");
            sqlx::raw_sql(&format!("DROP TABLE IF EXISTS {qualified}"))
                .execute(&mut *conn)
                .await?;
        }
    }
    let schemas = Layout::ALL
        .iter()
        .map(|l| l.schema())
        .chain([DATA_SCHEMA])
        .collect::<Vec<_>>()
        .join(", ");
    sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS {schemas} CASCADE"))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Creates the schemas and empty tables. Indexes come after the load (see `load`), so the
/// load is fast and every layout's indexes are built the same way.
pub(crate) async fn create(
    conn: &mut PgConnection,
    partman: &Partman,
    period_start: DateTime<Utc>,
) -> Result<(), LabError> {
    let mut ddl = format!(
        "CREATE SCHEMA {DATA_SCHEMA};
         -- The generator's plan: dispute n gets `events` rows, numbered from `first_event`.
         CREATE UNLOGGED TABLE {DATA_SCHEMA}.generator (
             n           bigint PRIMARY KEY,
             events      int    NOT NULL,
             first_event bigint NOT NULL
         );
         -- As migrations/20261125000001_core_tables.sql, without the foreign key to orders
         -- (the benchmark has no orders).
         CREATE TABLE {DATA_SCHEMA}.disputes (
             dispute_id          uuid        NOT NULL,
             order_id            text        NOT NULL,
             user_id             uuid        NOT NULL,
             status              text        NOT NULL,
             reason              text        NOT NULL,
             amount              numeric(19, 4) NOT NULL,
             currency            char(3)     NOT NULL,
             opened_at           timestamptz NOT NULL,
             evidence_due_at     timestamptz,
             submitted_at        timestamptz,
             closed_at           timestamptz,
             submission_id       text,
             provider_updated_at timestamptz NOT NULL,
             created_at          timestamptz NOT NULL
         );"
    );
    for layout in Layout::ALL {
        let partition = if layout.is_partitioned() {
            " PARTITION BY RANGE (created_at)"
        } else {
            ""
        };
        ddl.push_str(&format!(
            "CREATE SCHEMA {schema};
             CREATE TABLE {table} ({EVENT_COLUMNS}){partition};",
            schema = layout.schema(),
            table = layout.table(),
        ));
    }
    sqlx::raw_sql(&ddl).execute(&mut *conn).await?;

    // pg_partman 4.x and 5.x differ in create_parent's arguments (see
    // migrations/20261125000003_partman.sql). The start partition is the first day of the
    // data; partitions are made from it to today plus the premake, as in a live table.
    let start = period_start.format("%Y-%m-%d %H:%M:%S+00").to_string();
    let call = if partman.major() >= 5 {
        format!(
            "SELECT {}.create_parent(p_parent_table := $1, p_control := 'created_at', \
             p_interval := '1 day', p_premake := {PREMAKE_DAYS}, p_start_partition := $2)",
            quote_ident(&partman.schema)
        )
    } else {
        format!(
            "SELECT {}.create_parent(p_parent_table := $1, p_control := 'created_at', \
             p_type := 'native', p_interval := 'daily', p_premake := {PREMAKE_DAYS}, \
             p_start_partition := $2)",
            quote_ident(&partman.schema)
        )
    };
    for layout in Layout::ALL.into_iter().filter(|l| l.is_partitioned()) {
        sqlx::query(&call)
            .bind(layout.table())
            .bind(&start)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The name of the `(kind, created_at)` index, in each layout's schema as in the real one
/// (`public.dispute_events_kind_idx`): the clustered layout's partitions are clustered on it.
pub(crate) const KIND_INDEX: &str = "dispute_events_kind_idx";

/// The indexes of each layout, as in the real schema: the primary key and the per-dispute
/// index everywhere, the `(kind, created_at)` index everywhere but the plain layout; the
/// disputes have the real schema's indexes, the covering one of the lost-fraud report
/// included. `None` marks the shared disputes table.
pub(crate) fn index_statements() -> Vec<(Option<Layout>, String)> {
    let mut out = vec![(
        None,
        format!(
            "ALTER TABLE {DATA_SCHEMA}.disputes ADD PRIMARY KEY (dispute_id);
             CREATE UNIQUE INDEX ON {DATA_SCHEMA}.disputes (order_id);
             CREATE INDEX ON {DATA_SCHEMA}.disputes (created_at, dispute_id);
             CREATE INDEX ON {DATA_SCHEMA}.disputes (status, created_at, dispute_id);
             -- As migrations/20261206000008_disputes_covering_index.sql.
             CREATE INDEX ON {DATA_SCHEMA}.disputes (status, reason)
                 INCLUDE (dispute_id, amount, currency);"
        ),
    )];
    for layout in Layout::ALL {
        let table = layout.table();
        out.push((
            Some(layout),
            format!("ALTER TABLE {table} ADD PRIMARY KEY (created_at, event_id)"),
        ));
        out.push((
            Some(layout),
            format!("CREATE INDEX ON {table} (dispute_id, created_at, event_id)"),
        ));
        if layout != Layout::Plain {
            out.push((
                Some(layout),
                format!("CREATE INDEX {KIND_INDEX} ON {table} (kind, created_at)"),
            ));
        }
    }
    out
}

/// `"x"` with inner quotes doubled: identifiers from the catalog, not from users, but quoting
/// them keeps odd names working.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("partman"), "\"partman\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn only_the_plain_layout_lacks_the_kind_index() {
        let kind_index = |layout| {
            index_statements()
                .iter()
                .any(|(l, sql)| *l == Some(layout) && sql.contains("(kind, created_at)"))
        };
        assert!(!kind_index(Layout::Plain));
        assert!(kind_index(Layout::Indexed));
        assert!(kind_index(Layout::Partitioned));
        assert!(kind_index(Layout::Clustered));
    }
}
