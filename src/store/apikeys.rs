//! API keys: only a SHA-256 hash and a short prefix (for recognising a key in a list) are stored.

use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{new_id, Result, Store};
use crate::store::with_pool;

/// The SHA-256 hex digest under which a key is stored.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A fresh key: `hk_` and 32 random bytes in hex.
pub fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("hk_{}", hex::encode(bytes))
}

impl Store {
    /// Creates a key named `name`; returns (id, the key). The key is not stored.
    pub async fn create_api_key(&self, name: &str, now: i64) -> Result<(String, String)> {
        let key = generate_key();
        let id = new_id();
        let prefix: String = key.chars().take(10).collect();
        with_pool!(self, p => sqlx::query(
            "INSERT INTO api_keys (id, name, key_hash, prefix, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id).bind(name).bind(hash_key(&key)).bind(&prefix).bind(now)
        .execute(p).await.map(|r| r.rows_affected()))?;
        Ok((id, key))
    }

    /// The name of the live key with this hash, if any.
    pub async fn api_key_name_by_hash(&self, hash: &str) -> Result<Option<String>> {
        let name: Option<String> = with_pool!(self, p => sqlx::query_scalar(
            "SELECT name FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
        )
        .bind(hash).fetch_optional(p).await)?;
        Ok(name)
    }

    /// Revokes the key with this id; whether a live key was revoked.
    pub async fn revoke_api_key(&self, id: &str, now: i64) -> Result<bool> {
        let n = with_pool!(self, p => sqlx::query(
            "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(now).bind(id).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Every key: (id, name, prefix, created_at, revoked_at), newest first.
    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeyRow>> {
        with_pool!(self, p => Ok(sqlx::query_as::<_, ApiKeyRow>(
            "SELECT id, name, prefix, created_at, revoked_at FROM api_keys ORDER BY created_at DESC, id LIMIT 1000")
            .fetch_all(p).await?))
    }
}

/// A stored key as listed (never the key itself).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiKeyRow {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}
