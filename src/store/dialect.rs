//! What differs between SQLite and PostgreSQL in a statement's text or in
//! the shape of a write transaction, one implementation per backend. Queries
//! are written once and ask here for the clause their database needs; no
//! statement spells `FOR UPDATE` or tests the backend itself. (How a set of
//! rows is bound is the other per-backend helper, [`super::bulk::Bulk`].)

use sqlx::{Pool, Postgres, Sqlite};

pub(crate) trait Dialect: sqlx::Database {
    /// Ends a `SELECT` of rows the transaction is about to claim: rows that
    /// another transaction holds are skipped. Empty on SQLite, whose single
    /// writer already excludes every other.
    const SKIP_LOCKED: &'static str;
    /// Ends a `SELECT` of a row the transaction then updates (not its key),
    /// so that concurrent changes of that row queue. Empty on SQLite.
    const LOCK_ROW: &'static str;
    /// Whether a claim reads its candidates and decides before it takes the
    /// writer (SQLite: that work then overlaps the single writer's, and the
    /// writes are guarded on the rows being as read), rather than reading
    /// them locked inside the writing transaction (PostgreSQL).
    const DECIDE_BEFORE_WRITE: bool;
    /// Whether only one herald process uses the database (SQLite), so that
    /// leases between nodes are always this node's.
    const SINGLE_NODE: bool;
}

impl Dialect for Sqlite {
    const SKIP_LOCKED: &'static str = "";
    const LOCK_ROW: &'static str = "";
    const DECIDE_BEFORE_WRITE: bool = true;
    const SINGLE_NODE: bool = true;
}

impl Dialect for Postgres {
    const SKIP_LOCKED: &'static str = " FOR UPDATE SKIP LOCKED";
    const LOCK_ROW: &'static str = " FOR NO KEY UPDATE";
    const DECIDE_BEFORE_WRITE: bool = false;
    const SINGLE_NODE: bool = false;
}

/// [`Dialect::SKIP_LOCKED`] of the pool's database.
pub(crate) fn skip_locked<DB: Dialect>(_: &Pool<DB>) -> &'static str {
    DB::SKIP_LOCKED
}

/// [`Dialect::LOCK_ROW`] of the pool's database.
pub(crate) fn lock_row<DB: Dialect>(_: &Pool<DB>) -> &'static str {
    DB::LOCK_ROW
}

/// [`Dialect::DECIDE_BEFORE_WRITE`] of the pool's database.
pub(crate) fn decide_before_write<DB: Dialect>(_: &Pool<DB>) -> bool {
    DB::DECIDE_BEFORE_WRITE
}

/// [`Dialect::SINGLE_NODE`] of the pool's database.
pub(crate) fn single_node<DB: Dialect>(_: &Pool<DB>) -> bool {
    DB::SINGLE_NODE
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each backend's clauses: PostgreSQL locks and skips, SQLite relies on
    /// its single writer and adds nothing to a statement.
    #[test]
    fn clauses_per_backend() {
        let table: [(&str, &str, &str, bool, bool); 2] = [
            (
                "sqlite",
                Sqlite::SKIP_LOCKED,
                Sqlite::LOCK_ROW,
                Sqlite::DECIDE_BEFORE_WRITE,
                Sqlite::SINGLE_NODE,
            ),
            (
                "postgres",
                Postgres::SKIP_LOCKED,
                Postgres::LOCK_ROW,
                Postgres::DECIDE_BEFORE_WRITE,
                Postgres::SINGLE_NODE,
            ),
        ];
        let want = [
            ("sqlite", "", "", true, true),
            (
                "postgres",
                " FOR UPDATE SKIP LOCKED",
                " FOR NO KEY UPDATE",
                false,
                false,
            ),
        ];
        assert_eq!(table, want);
    }
}
