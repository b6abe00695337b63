//! The console's sessions. The cookie carries a random token; only its
//! hash is stored, with the hash and name of the API key that opened it and
//! the session's CSRF token. A session is live while it has not expired and
//! its key is live (checked by the caller, the way every API request is).

use super::apikeys::{generate_key, hash_key};
use super::{Result, Store};
use crate::store::with_pool;

/// A live session as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UiSession {
    pub key_hash: String,
    pub key_name: String,
    pub csrf: String,
    pub expires_at: i64,
}

impl Store {
    /// Opens a session for the key with this hash; returns the cookie's
    /// token and the session's CSRF token. Expired sessions go meanwhile.
    pub async fn open_ui_session(
        &self,
        key_hash: &str,
        key_name: &str,
        now: i64,
        ttl_ms: i64,
    ) -> Result<(String, String)> {
        let token = generate_key();
        let csrf = hash_key(&generate_key());
        let _write = self.write_guard().await;
        with_pool!(self, p => {
            sqlx::query("DELETE FROM ui_sessions WHERE expires_at <= $1")
                .bind(now).execute(p).await?;
            sqlx::query(
                "INSERT INTO ui_sessions (token_hash, key_hash, key_name, csrf, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(hash_key(&token)).bind(key_hash).bind(key_name).bind(&csrf).bind(now)
                .bind(now + ttl_ms).execute(p).await.map(|r| r.rows_affected())
        })?;
        Ok((token, csrf))
    }

    /// The unexpired session of this cookie token.
    pub async fn ui_session(&self, token: &str, now: i64) -> Result<Option<UiSession>> {
        with_pool!(self, p => Ok(sqlx::query_as::<_, UiSession>(
            "SELECT key_hash, key_name, csrf, expires_at FROM ui_sessions WHERE token_hash = $1 AND expires_at > $2")
            .bind(hash_key(token)).bind(now).fetch_optional(p).await?))
    }

    /// Ends the session of this cookie token (logout).
    pub async fn close_ui_session(&self, token: &str) -> Result<()> {
        let _write = self.write_guard().await;
        with_pool!(self, p => sqlx::query("DELETE FROM ui_sessions WHERE token_hash = $1")
            .bind(hash_key(token)).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }
}
