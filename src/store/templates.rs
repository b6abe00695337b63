//! Templates and their immutable versions. A change writes a new version
//! row and moves `templates.version` in one transaction; a message names the
//! version it was rendered from. Variables and parts are stored as JSON
//! (their shape and validation belong to `message::template`).

use sqlx::FromRow;

use super::{conflict_on_unique, new_id, BeginWrite, Page, PageRequest, Result, Store, StoreError};
use crate::store::with_pool;

/// A template at one version.
#[derive(Debug, Clone, FromRow)]
pub struct TemplateRow {
    pub id: String,
    pub code: String,
    pub name: String,
    pub channel: String,
    pub status: String,
    pub version: i64,
    /// JSON array of variable specs.
    pub variables: String,
    /// JSON object of the channel's parts.
    pub parts: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What a create or a change stores.
#[derive(Debug, Clone)]
pub struct TemplateDraft {
    pub code: String,
    pub name: String,
    pub channel: String,
    pub variables: String,
    pub parts: String,
}

const SELECT: &str =
    "SELECT t.id, t.code, t.name, t.channel, t.status, t.version, v.variables, v.parts, \
     t.created_at, t.updated_at FROM templates t \
     JOIN template_versions v ON v.template_id = t.id AND v.version = t.version";

impl Store {
    /// Stores a new template, `inactive`, at version 1. A taken code is a
    /// [`StoreError::Conflict`].
    pub async fn create_template(&self, d: &TemplateDraft, now: i64) -> Result<TemplateRow> {
        let id = new_id();
        let _write = self.write_guard().await;
        with_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query("INSERT INTO templates (id, code, name, channel, status, version, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, 'inactive', 1, $5, $5)")
                .bind(&id).bind(&d.code).bind(&d.name).bind(&d.channel).bind(now)
                .execute(&mut *tx).await.map_err(|e| conflict_on_unique(e, "a template with this code exists"))?;
            sqlx::query("INSERT INTO template_versions (template_id, version, variables, parts, created_at) VALUES ($1, 1, $2, $3, $4)")
                .bind(&id).bind(&d.variables).bind(&d.parts).bind(now).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok::<_, StoreError>(())
        })?;
        self.get_template(&id).await
    }

    pub async fn get_template(&self, id: &str) -> Result<TemplateRow> {
        let sql = format!("{SELECT} WHERE t.id = $1");
        with_pool!(self, p => sqlx::query_as::<_, TemplateRow>(&sql).bind(id).fetch_optional(p).await)?
            .ok_or(StoreError::NotFound)
    }

    pub async fn get_template_by_code(&self, code: &str) -> Result<TemplateRow> {
        let sql = format!("{SELECT} WHERE t.code = $1");
        with_pool!(self, p => sqlx::query_as::<_, TemplateRow>(&sql).bind(code).fetch_optional(p).await)?
            .ok_or(StoreError::NotFound)
    }

    /// A send's `template_id`: the template's id, or else its code.
    pub async fn resolve_template(&self, id_or_code: &str) -> Result<TemplateRow> {
        match self.get_template(id_or_code).await {
            Err(StoreError::NotFound) => self.get_template_by_code(id_or_code).await,
            other => other,
        }
    }

    /// One stored version (for a message rendered from it).
    pub async fn get_template_version(&self, id: &str, version: i64) -> Result<TemplateRow> {
        let sql = "SELECT t.id, t.code, t.name, t.channel, t.status, v.version, v.variables, v.parts, \
                   t.created_at, t.updated_at FROM templates t \
                   JOIN template_versions v ON v.template_id = t.id AND v.version = $2 WHERE t.id = $1";
        with_pool!(self, p => sqlx::query_as::<_, TemplateRow>(sql).bind(id).bind(version).fetch_optional(p).await)?
            .ok_or(StoreError::NotFound)
    }

    pub async fn list_templates(
        &self,
        channel: Option<&str>,
        status: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<TemplateRow>> {
        let sql = format!(
            "{SELECT} WHERE t.id > $1 AND ($2 IS NULL OR t.channel = $2) AND ($3 IS NULL OR t.status = $3) \
             ORDER BY t.id LIMIT $4"
        );
        let rows = with_pool!(self, p => sqlx::query_as::<_, TemplateRow>(&sql)
            .bind(page.after_or_start()).bind(channel).bind(status).bind(page.fetch_limit())
            .fetch_all(p).await)?;
        Ok(page.finish(rows, |t| t.id.clone()))
    }

    /// Saves a change as the next version (name, code, variables, parts;
    /// the channel never changes).
    pub async fn update_template(
        &self,
        id: &str,
        d: &TemplateDraft,
        now: i64,
    ) -> Result<TemplateRow> {
        let _write = self.write_guard().await;
        with_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            let version: Option<i64> = sqlx::query_scalar("UPDATE templates SET version = version + 1, name = $2, code = $3, updated_at = $4 \
                                                           WHERE id = $1 RETURNING version")
                .bind(id).bind(&d.name).bind(&d.code).bind(now)
                .fetch_optional(&mut *tx).await.map_err(|e| conflict_on_unique(e, "a template with this code exists"))?;
            let version = version.ok_or(StoreError::NotFound)?;
            sqlx::query("INSERT INTO template_versions (template_id, version, variables, parts, created_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(id).bind(version).bind(&d.variables).bind(&d.parts).bind(now).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok::<_, StoreError>(())
        })?;
        self.get_template(id).await
    }

    /// `active` or `inactive`.
    pub async fn set_template_status(
        &self,
        id: &str,
        status: &str,
        now: i64,
    ) -> Result<TemplateRow> {
        let n = with_pool!(self, p => sqlx::query("UPDATE templates SET status = $2, updated_at = $3 WHERE id = $1")
            .bind(id).bind(status).bind(now).execute(p).await.map(|r| r.rows_affected()))?;
        self.wrote();
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        self.get_template(id).await
    }

    /// Deletes a template and its versions; a [`StoreError::Conflict`] while
    /// messages rendered from it are still waiting to be sent.
    pub async fn delete_template(&self, id: &str) -> Result<()> {
        let _write = self.write_guard().await;
        with_pool!(self, p => {
            let mut tx = p.begin_write().await?;
            let waiting: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE template_id = $1 AND status IN ('queued', 'sending')")
                .bind(id).fetch_one(&mut *tx).await?;
            if waiting > 0 {
                return Err(StoreError::Conflict(format!("{waiting} queued message(s) use this template; cancel them or wait until they are sent")));
            }
            let n = sqlx::query("DELETE FROM templates WHERE id = $1").bind(id).execute(&mut *tx).await?.rows_affected();
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            tx.commit().await?;
            Ok(())
        })
    }
}
