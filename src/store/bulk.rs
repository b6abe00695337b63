//! Multi-row statements written once for both databases. A set of rows is a
//! row source `v` with columns `column1`, `column2`, …:
//!
//! - on SQLite, a `VALUES` list with one parameter per cell (so a statement
//!   carries at most 32,766 cells);
//! - on PostgreSQL, `UNNEST` of one array parameter per column, so that the
//!   statement's text, and with it the server's prepared statement and
//!   plan, is the same whatever the number of rows. A `VALUES` list of
//!   thousands of parameters is parsed and planned again on every execution.

use sqlx::{Postgres, QueryBuilder, Sqlite};

/// One column of a row source, every row's value in order.
pub enum Column<'a> {
    Text(Vec<Option<&'a str>>),
    BigInt(Vec<Option<i64>>),
    Int(Vec<Option<i32>>),
}

impl Column<'_> {
    fn len(&self) -> usize {
        match self {
            Column::Text(v) => v.len(),
            Column::BigInt(v) => v.len(),
            Column::Int(v) => v.len(),
        }
    }
}

/// How a database takes a set of rows, or a list of values, as parameters.
pub trait Bulk: sqlx::Database {
    /// Whether a statement built with [`rows`] is worth keeping prepared on
    /// its connection: on PostgreSQL its text is the same for any number of
    /// rows; on SQLite each row count is a new text, and a cached
    /// 2,000-row statement would hold its memory for nothing.
    const KEEP_PREPARED: bool;
    /// Pushes the row source `… AS v` (columns `column1` … `columnN`).
    fn push_rows<'a>(qb: &mut QueryBuilder<'a, Self>, columns: Vec<Column<'a>>);
    /// Pushes `expr IN (…)` (SQLite) or `expr = ANY(…)` (PostgreSQL).
    fn push_in<'a>(qb: &mut QueryBuilder<'a, Self>, expr: &str, values: Vec<&'a str>);
    /// Binds one text value (a statement built for either database).
    fn bind_text<'a>(qb: &mut QueryBuilder<'a, Self>, value: Option<&'a str>);
    /// Binds one 64-bit integer.
    fn bind_int8(qb: &mut QueryBuilder<'_, Self>, value: i64);
}

/// [`Bulk::push_rows`] for the query builder's database. Every column must
/// hold the same, non-zero number of rows.
pub fn rows<'a, DB: Bulk>(qb: &mut QueryBuilder<'a, DB>, columns: Vec<Column<'a>>) {
    let n = columns.first().map_or(0, Column::len);
    assert!(n > 0, "a row source needs at least one row and one column");
    assert!(
        columns.iter().all(|c| c.len() == n),
        "a row source's columns differ in length"
    );
    DB::push_rows(qb, columns)
}

/// [`Bulk::KEEP_PREPARED`] for the query builder's database.
pub fn keep_prepared<DB: Bulk>(_: &QueryBuilder<'_, DB>) -> bool {
    DB::KEEP_PREPARED
}

/// [`Bulk::push_in`] for the query builder's database.
pub fn is_in<'a, DB: Bulk>(qb: &mut QueryBuilder<'a, DB>, expr: &str, values: Vec<&'a str>) {
    DB::push_in(qb, expr, values)
}

impl Bulk for Sqlite {
    const KEEP_PREPARED: bool = false;

    fn push_rows<'a>(qb: &mut QueryBuilder<'a, Self>, columns: Vec<Column<'a>>) {
        let n = columns.first().map_or(0, Column::len);
        let mut cells: Vec<_> = columns.into_iter().map(Cells::from).collect();
        qb.push("(VALUES ");
        for row in 0..n {
            if row > 0 {
                qb.push(", ");
            }
            qb.push("(");
            for (i, c) in cells.iter_mut().enumerate() {
                if i > 0 {
                    qb.push(", ");
                }
                match c {
                    Cells::Text(it) => qb.push_bind(it.next().flatten()),
                    Cells::BigInt(it) => qb.push_bind(it.next().flatten()),
                    Cells::Int(it) => qb.push_bind(it.next().flatten()),
                };
            }
            qb.push(")");
        }
        qb.push(") AS v");
    }

    fn push_in<'a>(qb: &mut QueryBuilder<'a, Self>, expr: &str, values: Vec<&'a str>) {
        qb.push(expr).push(" IN (");
        let mut list = qb.separated(", ");
        for v in values {
            list.push_bind(v);
        }
        qb.push(")");
    }

    fn bind_text<'a>(qb: &mut QueryBuilder<'a, Self>, value: Option<&'a str>) {
        qb.push_bind(value);
    }

    fn bind_int8(qb: &mut QueryBuilder<'_, Self>, value: i64) {
        qb.push_bind(value);
    }
}

impl Bulk for Postgres {
    const KEEP_PREPARED: bool = true;

    fn push_rows<'a>(qb: &mut QueryBuilder<'a, Self>, columns: Vec<Column<'a>>) {
        let n = columns.len();
        qb.push("UNNEST(");
        for (i, c) in columns.into_iter().enumerate() {
            if i > 0 {
                qb.push(", ");
            }
            match c {
                Column::Text(v) => qb.push_bind(v).push("::text[]"),
                Column::BigInt(v) => qb.push_bind(v).push("::int8[]"),
                Column::Int(v) => qb.push_bind(v).push("::int4[]"),
            };
        }
        qb.push(") AS v(");
        for i in 1..=n {
            if i > 1 {
                qb.push(", ");
            }
            qb.push(format!("column{i}"));
        }
        qb.push(")");
    }

    fn push_in<'a>(qb: &mut QueryBuilder<'a, Self>, expr: &str, values: Vec<&'a str>) {
        qb.push(expr)
            .push(" = ANY(")
            .push_bind(values)
            .push("::text[])");
    }

    fn bind_text<'a>(qb: &mut QueryBuilder<'a, Self>, value: Option<&'a str>) {
        qb.push_bind(value);
    }

    fn bind_int8(qb: &mut QueryBuilder<'_, Self>, value: i64) {
        qb.push_bind(value);
    }
}

/// A column's values, handed out row by row.
enum Cells<'a> {
    Text(std::vec::IntoIter<Option<&'a str>>),
    BigInt(std::vec::IntoIter<Option<i64>>),
    Int(std::vec::IntoIter<Option<i32>>),
}

impl<'a> From<Column<'a>> for Cells<'a> {
    fn from(c: Column<'a>) -> Self {
        match c {
            Column::Text(v) => Cells::Text(v.into_iter()),
            Column::BigInt(v) => Cells::BigInt(v.into_iter()),
            Column::Int(v) => Cells::Int(v.into_iter()),
        }
    }
}
