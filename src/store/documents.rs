//! Named JSON documents: outdials, outplans and agents. Each row is an id, a
//! name and the parsed document (`spec`) as JSON; parsing is the caller's.
//! Outplans and agents are read back typed with [`Store::get_outplan`] and
//! [`Store::get_agent`].

use serde::de::DeserializeOwned;
use serde_json::Value;
use sqlx::Row;

use super::{conflict_on_unique, new_id, Page, PageRequest, Result, Store, StoreError};
use crate::domain::specs::{AgentSpec, Outplan};
use crate::store::with_pool;

/// A table of named documents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DocTable {
    pub table: &'static str,
    /// Singular noun for messages, e.g. "outplan".
    pub noun: &'static str,
}

pub const OUTDIALS: DocTable = DocTable {
    table: "outdials",
    noun: "outdial",
};
pub const OUTPLANS: DocTable = DocTable {
    table: "outplans",
    noun: "outplan",
};
pub const AGENTS: DocTable = DocTable {
    table: "agents",
    noun: "agent",
};

#[derive(Debug, Clone)]
pub struct Doc {
    pub id: String,
    pub name: String,
    pub spec: Value,
    pub created_at: i64,
    pub updated_at: i64,
}

fn doc_from_row<R: Row>(row: &R) -> Result<Doc>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let spec: String = row.try_get("spec")?;
    Ok(Doc {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        spec: serde_json::from_str(&spec).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Doc {
    /// The document as the typed spec it was parsed into.
    pub fn typed<T: DeserializeOwned>(&self, t: DocTable) -> Result<T> {
        T::deserialize(&self.spec)
            .map_err(|e| StoreError::Corrupt(format!("{} {}: {e}", t.noun, self.id)))
    }
}

impl Store {
    /// An outplan, typed.
    pub async fn get_outplan(&self, id: &str) -> Result<Outplan> {
        self.get_doc(OUTPLANS, id).await?.typed(OUTPLANS)
    }

    /// An agent configuration, typed.
    pub async fn get_agent(&self, id: &str) -> Result<AgentSpec> {
        self.get_doc(AGENTS, id).await?.typed(AGENTS)
    }

    pub async fn insert_doc(&self, t: DocTable, name: &str, spec: &Value, now: i64) -> Result<Doc> {
        let id = new_id();
        let sql = format!(
            "INSERT INTO {} (id, name, spec, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)",
            t.table
        );
        let spec_text = spec.to_string();
        with_pool!(self, p => sqlx::query(&sql).bind(&id).bind(name).bind(&spec_text).bind(now).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(Doc {
            id,
            name: name.to_string(),
            spec: spec.clone(),
            created_at: now,
            updated_at: now,
        })
    }

    pub async fn get_doc(&self, t: DocTable, id: &str) -> Result<Doc> {
        let sql = format!(
            "SELECT id, name, spec, created_at, updated_at FROM {} WHERE id = $1",
            t.table
        );
        with_pool!(self, p => {
            let row = sqlx::query(&sql).bind(id).fetch_optional(p).await?.ok_or(StoreError::NotFound)?;
            doc_from_row(&row)
        })
    }

    pub async fn list_docs(&self, t: DocTable, page: &PageRequest) -> Result<Page<Doc>> {
        let sql = format!(
            "SELECT id, name, spec, created_at, updated_at FROM {} WHERE id > $1 ORDER BY id LIMIT $2",
            t.table
        );
        let docs = with_pool!(self, p => {
            let rows = sqlx::query(&sql).bind(page.after_or_start()).bind(page.fetch_limit()).fetch_all(p).await?;
            rows.iter().map(doc_from_row).collect::<Result<Vec<_>>>()
        })?;
        Ok(page.finish(docs, |d| d.id.clone()))
    }

    pub async fn update_doc(
        &self,
        t: DocTable,
        id: &str,
        name: &str,
        spec: &Value,
        now: i64,
    ) -> Result<Doc> {
        let sql = format!(
            "UPDATE {} SET name = $2, spec = $3, updated_at = $4 WHERE id = $1",
            t.table
        );
        let spec_text = spec.to_string();
        let done = with_pool!(self, p => sqlx::query(&sql).bind(id).bind(name).bind(&spec_text).bind(now).execute(p).await.map(|r| r.rows_affected()))?;
        if done == 0 {
            return Err(StoreError::NotFound);
        }
        self.get_doc(t, id).await
    }

    /// Deletes a document; a document a campaign still uses is a conflict.
    pub async fn delete_doc(&self, t: DocTable, id: &str) -> Result<()> {
        let sql = format!("DELETE FROM {} WHERE id = $1", t.table);
        let done = with_pool!(self, p => sqlx::query(&sql).bind(id).execute(p).await.map(|r| r.rows_affected()))
            .map_err(|e| conflict_on_unique(e, &format!("{} {id} is used by a campaign", t.noun)))?;
        if done == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}
