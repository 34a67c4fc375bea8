//! Schema migrations, embedded in the binary from the repository's `migrations/` folder.
//!
//! Applying them is idempotent (applied versions are recorded in `_sqlx_migrations`, and a
//! PostgreSQL advisory lock keeps two concurrent runs from interleaving), so `pmctl
//! migrate` is safe to run from CI and at every deploy.

use sqlx::migrate::Migrator;
use sqlx::PgPool;

use crate::StorageError;

/// The project's migrations.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// One migration and whether the database has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    pub version: i64,
    pub description: String,
    pub applied: bool,
}

/// Every known migration with its state in this database.
pub async fn status(pool: &PgPool) -> Result<Vec<MigrationStatus>, StorageError> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    let applied: Vec<i64> = if exists {
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await?
    } else {
        Vec::new()
    };
    Ok(MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| MigrationStatus {
            version: m.version,
            description: m.description.to_string(),
            applied: applied.contains(&m.version),
        })
        .collect())
}

/// Applies every pending migration; returns the ones it applied.
pub async fn run(pool: &PgPool) -> Result<Vec<MigrationStatus>, StorageError> {
    let before = status(pool).await?;
    if before.iter().any(|m| !m.applied) {
        require_partman(pool).await?;
    }
    MIGRATOR.run(pool).await?;
    Ok(before
        .into_iter()
        .filter(|m| !m.applied)
        .map(|m| MigrationStatus { applied: true, ..m })
        .collect())
}

/// Fails with an error naming the package to install when the server lacks pg_partman.
pub async fn require_partman(pool: &PgPool) -> Result<(), StorageError> {
    let (available, version_num): (bool, i32) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_partman'),
                current_setting('server_version_num')::int",
    )
    .fetch_one(pool)
    .await?;
    if available {
        Ok(())
    } else {
        Err(StorageError::PartmanMissing {
            major: (version_num / 10000) as u32,
        })
    }
}

/// A fingerprint of the migrations' contents: equal fingerprints mean identical schemas.
pub fn fingerprint() -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for m in MIGRATOR.iter() {
        h.update(m.version.to_le_bytes());
        h.update(&m.checksum);
    }
    hex::encode(&h.finalize()[..8])
}
