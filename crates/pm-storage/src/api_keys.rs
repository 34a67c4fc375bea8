//! Operator API keys: created, listed, revoked, and looked up by id on each request.

use chrono::{DateTime, Utc};
use pm_domain::api_key::{KeyId, NewKey, Scope};
use sqlx::PgPool;

use crate::audit::{self, Actor};
use crate::StorageError;

/// A stored key, without anything secret but its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub key_id: KeyId,
    pub name: String,
    pub secret_hash: Vec<u8>,
    pub scopes: Vec<Scope>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl StoredKey {
    /// Usable at `now`: neither revoked nor expired.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| e > now)
    }
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    key_id: String,
    name: String,
    secret_hash: Vec<u8>,
    scopes: Vec<String>,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl KeyRow {
    fn key(self) -> Result<StoredKey, StorageError> {
        let key_id = KeyId::parse(&self.key_id)
            .ok_or_else(|| StorageError::corrupt("api_keys.key_id", &self.key_id))?;
        let scopes = self
            .scopes
            .iter()
            .map(|s| {
                s.parse()
                    .map_err(|_| StorageError::corrupt("api_keys.scopes", s))
            })
            .collect::<Result<_, _>>()?;
        Ok(StoredKey {
            key_id,
            name: self.name,
            secret_hash: self.secret_hash,
            scopes,
            created_at: self.created_at,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
        })
    }
}

const COLUMNS: &str = "key_id, name, secret_hash, scopes, created_at, expires_at, revoked_at";

/// Why a key could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("a key named {0:?} exists already (revoked keys keep their names)")]
    NameTaken(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Creates a key; returns it with the token to hand out (once).
pub async fn create(
    pool: &PgPool,
    name: &str,
    scopes: &[Scope],
    expires_at: Option<DateTime<Utc>>,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<(StoredKey, String), CreateError> {
    let new = NewKey::generate();
    let scopes: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    let mut tx = crate::db::begin(pool).await?;
    let row: Option<KeyRow> = sqlx::query_as(&format!(
        "INSERT INTO api_keys (key_id, name, secret_hash, scopes, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (name) DO NOTHING
         RETURNING {COLUMNS}"
    ))
    .bind(new.id.as_str())
    .bind(name)
    .bind(&new.secret_hash[..])
    .bind(&scopes)
    .bind(now)
    .bind(expires_at)
    .fetch_optional(&mut *tx)
    .await
    .map_err(StorageError::from)?;
    let key = row
        .ok_or_else(|| CreateError::NameTaken(name.to_owned()))?
        .key()?;
    audit::record(
        &mut tx,
        &audit::Entry {
            actor,
            action: "api_key_created",
            object_type: "api_key",
            object_id: name,
            outcome: "applied",
            detail: serde_json::json!({
                "key_id": key.key_id.as_str(),
                "scopes": scopes,
                "expires_at": expires_at,
            }),
        },
        now,
    )
    .await?;
    tx.commit().await.map_err(StorageError::from)?;
    Ok((key, new.token))
}

/// Every key, oldest first.
pub async fn list(pool: &PgPool) -> Result<Vec<StoredKey>, StorageError> {
    let rows: Vec<KeyRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM api_keys ORDER BY created_at, name"
    ))
    .fetch_all(&mut *crate::db::acquire(pool).await?)
    .await?;
    rows.into_iter().map(KeyRow::key).collect()
}

/// Revokes the key named `name`; `None` when there is none, the key when it was revoked now
/// or earlier.
pub async fn revoke(
    pool: &PgPool,
    name: &str,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<Option<StoredKey>, StorageError> {
    let mut tx = crate::db::begin(pool).await?;
    let row: Option<KeyRow> = sqlx::query_as(&format!(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, $2) WHERE name = $1 RETURNING {COLUMNS}"
    ))
    .bind(name)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let key = row.map(KeyRow::key).transpose()?;
    if let Some(key) = &key {
        audit::record(
            &mut tx,
            &audit::Entry {
                actor,
                action: "api_key_revoked",
                object_type: "api_key",
                object_id: name,
                outcome: if key.revoked_at == Some(now) {
                    "applied"
                } else {
                    "unchanged"
                },
                detail: serde_json::json!({ "key_id": key.key_id.as_str() }),
            },
            now,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(key)
}

/// The key with this id, if any (checking its secret is the caller's).
pub async fn find(pool: &PgPool, key_id: &KeyId) -> Result<Option<StoredKey>, StorageError> {
    let row: Option<KeyRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM api_keys WHERE key_id = $1"))
            .bind(key_id.as_str())
            .fetch_optional(&mut *crate::db::acquire(pool).await?)
            .await?;
    row.map(KeyRow::key).transpose()
}
