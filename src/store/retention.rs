//! Data retention: the bodies and template variables of finished messages
//! are purged after a while; their status, times, attempts and events stay.

use serde_json::Value;

use super::{Result, Store};
use crate::store::with_pool;

/// Keys of a message's request and rendering that carry its content.
const CONTENT_KEYS: [&str; 7] = [
    "subject",
    "body",
    "body_html",
    "body_text",
    "template_variables",
    "template",
    "text",
];

/// The document without its content keys.
fn without_content(doc: &str) -> String {
    match serde_json::from_str::<Value>(doc) {
        Ok(Value::Object(mut o)) => {
            for k in CONTENT_KEYS {
                o.remove(k);
            }
            Value::Object(o).to_string()
        }
        _ => "{}".to_string(),
    }
}

impl Store {
    /// Purges up to `limit` messages that ended (or were sent, on a channel
    /// with no delivery reports) before `before`; how many.
    pub async fn purge_message_bodies(&self, before: i64, limit: i64, now: i64) -> Result<usize> {
        let rows: Vec<(String, String, String)> = with_pool!(self, p => sqlx::query_as(
            "SELECT id, request, rendered FROM messages WHERE body_purged_at IS NULL \
             AND status IN ('delivered', 'bounced', 'failed', 'cancelled', 'sent') \
             AND COALESCE(final_at, sent_at) < $1 LIMIT $2")
            .bind(before).bind(limit).fetch_all(p).await)?;
        if rows.is_empty() {
            return Ok(0);
        }
        let _write = self.write_guard().await;
        with_pool!(self, p => {
            let mut tx = p.begin().await?;
            for (id, request, rendered) in &rows {
                sqlx::query("UPDATE messages SET request = $1, rendered = $2, body_purged_at = $3 WHERE id = $4")
                    .bind(without_content(request)).bind(without_content(rendered)).bind(now).bind(id)
                    .execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(())
        })?;
        self.wrote();
        Ok(rows.len())
    }
}

#[cfg(test)]
mod tests {
    use super::without_content;

    #[test]
    fn content_goes_and_addresses_stay() {
        let r = without_content(
            r#"{"to":"+1555","from":"+1666","body":"secret","encoding":"gsm7","segments":1}"#,
        );
        assert_eq!(
            r,
            r#"{"encoding":"gsm7","from":"+1666","segments":1,"to":"+1555"}"#
        );
        let r = without_content(
            r#"{"to":[{"email":"a@b.c"}],"subject":"s","body_html":"<p>x</p>","template_variables":{"name":"Ann"}}"#,
        );
        assert_eq!(r, r#"{"to":[{"email":"a@b.c"}]}"#);
        assert_eq!(without_content("not json"), "{}");
    }
}
