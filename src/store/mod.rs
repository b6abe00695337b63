//! The store: SQLite or PostgreSQL behind one handle.
