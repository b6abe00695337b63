//! A number's calls across every campaign and one-off call, for the
//! compliance gate's history rules (frequency caps, quiet periods): read by
//! a claim for its candidates (`claims`), or for one one-off call.

use sqlx::{QueryBuilder, Row};

use super::bulk::{self, Bulk};
use super::{Result, Store};
use crate::store::with_pool;

/// One call to a number, for the compliance gate's history rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastCall {
    /// The call's id (a one-off call's row is the call, across its tries).
    pub id: String,
    pub at: i64,
    /// `None` while it is in progress.
    pub outcome: Option<String>,
    pub result: Option<String>,
    pub answered: bool,
}

/// The calls to some numbers since `since` (ms): the caller adds `to_uri IN
/// (…)`. A one-off call's row is its last try's: its time is the INVITE's
/// when later than the request's.
pub(super) fn past_calls_query<'a, DB: Bulk>(since: i64) -> QueryBuilder<'a, DB> {
    let mut qb = QueryBuilder::new(
        "SELECT id, to_uri, CASE WHEN invite_sent_at > created_at THEN invite_sent_at ELSE created_at END AS at, \
         outcome, result, answered_at FROM calls WHERE (created_at >= ",
    );
    DB::bind_int8(&mut qb, since);
    qb.push(" OR invite_sent_at >= ");
    DB::bind_int8(&mut qb, since);
    qb.push(") AND ");
    qb
}

pub(super) fn past_call<R: Row>(row: &R) -> Result<(String, PastCall)>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok((
        row.try_get("to_uri")?,
        PastCall {
            id: row.try_get("id")?,
            at: row.try_get("at")?,
            outcome: row.try_get("outcome")?,
            result: row.try_get("result")?,
            answered: row.try_get::<Option<i64>, _>("answered_at")?.is_some(),
        },
    ))
}

impl Store {
    /// The calls to `number` since `since` (ms), every campaign's and
    /// one-off's, for the compliance gate of a one-off call.
    pub async fn past_calls_to(&self, number: &str, since: i64) -> Result<Vec<PastCall>> {
        with_pool!(self, p => {
            let mut qb = past_calls_query(since);
            bulk::is_in(&mut qb, "to_uri", vec![number]);
            let mut out = Vec::new();
            for row in qb.build().fetch_all(p).await? {
                out.push(past_call(&row)?.1);
            }
            Ok(out)
        })
    }
}
