//! Bulk target import: rows (JSON items or CSV lines) are validated one by
//! one, stored in batches, and reported: created, existing (same
//! `client_token`), duplicates (same first destination) and invalid rows with
//! their index or line and the reason. A bad row never stops its neighbours.

use serde_json::{json, Map, Value};

use crate::domain::target::{parse_target, NewTarget};
use crate::domain::FieldError;
use crate::store::targets::Inserted;
use crate::store::{new_id, Store, StoreError};

/// Rows stored per transaction.
pub const BATCH_ROWS: usize = 5000;
/// Duplicates and invalid rows listed in a report (all are counted).
pub const MAX_LISTED: usize = 1000;

/// Where a row came from: a JSON array index or a CSV line number.
#[derive(Clone, Copy, Debug)]
pub enum RowRef {
    Index(u64),
    Line(u64),
}

impl RowRef {
    fn put(self, v: &mut Value) {
        match self {
            RowRef::Index(i) => v["index"] = json!(i),
            RowRef::Line(l) => v["line"] = json!(l),
        }
    }
}

/// Accumulates rows, stores them in batches, and builds the report.
pub struct Importer<'a> {
    store: &'a Store,
    outdial_id: &'a str,
    pending: Vec<(RowRef, NewTarget)>,
    received: u64,
    created: u64,
    existing: u64,
    duplicate_count: u64,
    invalid_count: u64,
    duplicates: Vec<Value>,
    invalid: Vec<Value>,
    /// Per-row outcomes, kept only for small JSON requests.
    items: Option<Vec<Value>>,
}

impl<'a> Importer<'a> {
    pub fn new(store: &'a Store, outdial_id: &'a str, keep_items: bool) -> Self {
        Importer {
            store,
            outdial_id,
            pending: Vec::with_capacity(BATCH_ROWS),
            received: 0,
            created: 0,
            existing: 0,
            duplicate_count: 0,
            invalid_count: 0,
            duplicates: Vec::new(),
            invalid: Vec::new(),
            items: keep_items.then(Vec::new),
        }
    }

    /// Validates one row and queues it; stores a batch when one is full.
    /// `rename` may rewrite an error's field (CSV column names).
    pub async fn push(
        &mut self,
        at: RowRef,
        row: &Value,
        rename: impl FnOnce(FieldError) -> FieldError,
    ) -> Result<(), StoreError> {
        self.received += 1;
        match parse_target(row, new_id()).map_err(rename) {
            Ok(t) => {
                self.pending.push((at, t));
                if self.pending.len() >= BATCH_ROWS {
                    self.flush().await?;
                }
            }
            Err(e) => self.reject(at, e),
        }
        Ok(())
    }

    /// Records a row that could not be read or validated.
    pub fn reject(&mut self, at: RowRef, e: FieldError) {
        self.invalid_count += 1;
        if self.invalid.len() < MAX_LISTED {
            let mut v = json!({"field": e.field, "reason": e.reason});
            at.put(&mut v);
            self.invalid.push(v);
        }
    }

    /// Counts a row that was rejected before validation (e.g. unreadable CSV).
    pub fn count_received(&mut self) {
        self.received += 1;
    }

    pub async fn flush(&mut self) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch: Vec<NewTarget> = self.pending.iter().map(|(_, t)| t.clone()).collect();
        let now = chrono::Utc::now().timestamp_millis();
        let results = self
            .store
            .insert_targets(self.outdial_id, &batch, now)
            .await?;
        for ((at, t), r) in self.pending.drain(..).zip(results) {
            let (status, id) = match r {
                Inserted::Created(id) => {
                    self.created += 1;
                    ("created", id)
                }
                Inserted::Existing(id) => {
                    self.existing += 1;
                    ("existing", id)
                }
                Inserted::Duplicate { existing_id } => {
                    self.duplicate_count += 1;
                    if self.duplicates.len() < MAX_LISTED {
                        let mut v = json!({"destination": t.destinations[0].target, "existing_id": existing_id});
                        at.put(&mut v);
                        self.duplicates.push(v);
                    }
                    ("duplicate", existing_id)
                }
            };
            if let Some(items) = &mut self.items {
                let mut v = json!({"id": id, "status": status});
                at.put(&mut v);
                items.push(v);
            }
        }
        Ok(())
    }

    /// Stores what is left and returns the report.
    pub async fn finish(mut self) -> Result<Value, StoreError> {
        self.flush().await?;
        let mut v = json!({
            "received": self.received,
            "created": self.created,
            "existing": self.existing,
            "duplicate_count": self.duplicate_count,
            "invalid_count": self.invalid_count,
            "duplicates": self.duplicates,
            "invalid": self.invalid,
            "truncated": self.duplicate_count as usize > MAX_LISTED || self.invalid_count as usize > MAX_LISTED,
        });
        if let Some(items) = self.items {
            v["items"] = Value::Array(items);
        }
        Ok(v)
    }

    /// The counts so far, for an import cut short.
    pub fn progress(&self) -> Value {
        json!({"received": self.received, "created": self.created, "existing": self.existing,
               "duplicate_count": self.duplicate_count, "invalid_count": self.invalid_count})
    }
}

/// What a CSV column means.
#[derive(Debug, Clone, PartialEq)]
enum Column {
    Destination(usize),
    Name,
    TryCountMax,
    Timezone,
    NotBefore,
    ExpiresAt,
    ClientToken,
    Variable(String),
}

/// Maps a CSV header row to target fields; unknown columns become variables.
pub struct CsvLayout {
    columns: Vec<Column>,
    names: Vec<String>,
}

impl CsvLayout {
    pub fn new(headers: &[&str]) -> Result<CsvLayout, String> {
        let mut columns = Vec::with_capacity(headers.len());
        let mut names = Vec::with_capacity(headers.len());
        for h in headers {
            let name = h.trim().trim_start_matches('\u{feff}').to_string();
            let key = name.to_ascii_lowercase();
            let col = match key.as_str() {
                "phone" | "destination" | "phone_1" | "destination_1" => Column::Destination(0),
                "name" => Column::Name,
                "try_count_max" => Column::TryCountMax,
                "timezone" => Column::Timezone,
                "not_before" => Column::NotBefore,
                "expires_at" => Column::ExpiresAt,
                "client_token" => Column::ClientToken,
                k => match k
                    .strip_prefix("phone_")
                    .or_else(|| k.strip_prefix("destination_"))
                    .and_then(|n| n.parse::<usize>().ok())
                {
                    Some(n @ 2..=5) => Column::Destination(n - 1),
                    _ => {
                        if name.is_empty() {
                            return Err(format!(
                                "column {} of the header row has no name",
                                columns.len() + 1
                            ));
                        }
                        Column::Variable(name.clone())
                    }
                },
            };
            if columns.contains(&col) {
                return Err(format!(
                    "header {name:?} appears twice (or names the same field as another column)"
                ));
            }
            columns.push(col);
            names.push(name);
        }
        if !columns.contains(&Column::Destination(0)) {
            return Err("the header row needs a \"phone\" or \"destination\" column".into());
        }
        Ok(CsvLayout { columns, names })
    }

    pub fn width(&self) -> usize {
        self.columns.len()
    }

    /// Turns one CSV record into the JSON shape of a target, with the column
    /// position each destination came from (for error messages).
    pub fn to_target<'r>(&self, cells: impl Iterator<Item = &'r str>) -> (Value, Vec<usize>) {
        let mut dests: Vec<(usize, usize, Value)> = Vec::new();
        let mut obj = Map::new();
        let mut vars = Map::new();
        for (pos, (col, cell)) in self.columns.iter().zip(cells).enumerate() {
            let cell = cell.trim();
            if cell.is_empty() {
                continue;
            }
            let s = Value::String(cell.to_string());
            let key = match col {
                Column::Destination(i) => {
                    let kind = if cell.starts_with("sip:") || cell.starts_with("sips:") {
                        "sip"
                    } else {
                        "tel"
                    };
                    dests.push((*i, pos, json!({"type": kind, "target": cell})));
                    continue;
                }
                Column::Variable(k) => {
                    vars.insert(k.clone(), s);
                    continue;
                }
                Column::Name => "name",
                Column::TryCountMax => "try_count_max",
                Column::Timezone => "timezone",
                Column::NotBefore => "not_before",
                Column::ExpiresAt => "expires_at",
                Column::ClientToken => "client_token",
            };
            obj.insert(key.into(), s);
        }
        dests.sort_by_key(|(i, _, _)| *i);
        let positions = dests.iter().map(|(_, pos, _)| *pos).collect();
        obj.insert(
            "destinations".into(),
            Value::Array(dests.into_iter().map(|(_, _, d)| d).collect()),
        );
        if !vars.is_empty() {
            obj.insert("variables".into(), Value::Object(vars));
        }
        (Value::Object(obj), positions)
    }

    /// Rewrites `destinations[i]…` in an error to the CSV column it came from.
    pub fn column_name(&self, mut e: FieldError, positions: &[usize]) -> FieldError {
        if e.field == "destinations" {
            if let Some(pos) = self
                .columns
                .iter()
                .position(|c| *c == Column::Destination(0))
            {
                e.field = self.names[pos].clone();
                e.reason = "is empty: every row needs a destination".into();
            }
            return e;
        }
        let index = e
            .field
            .strip_prefix("destinations[")
            .and_then(|rest| rest.split_once(']'))
            .and_then(|(i, _)| i.parse::<usize>().ok());
        if let Some(pos) = index.and_then(|i| positions.get(i)) {
            e.field = self.names[*pos].clone();
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_maps_known_columns_and_keeps_the_rest_as_variables() {
        let l =
            CsvLayout::new(&["phone", "Name", "phone_2", "clinic", "appointment_time"]).unwrap();
        let (v, _) = l.to_target(
            [
                "+15551234567",
                "Jane",
                "sip:jane@pbx.example.com",
                "North",
                "15:00",
            ]
            .into_iter(),
        );
        assert_eq!(v["name"], "Jane");
        assert_eq!(v["destinations"][1]["type"], "sip");
        assert_eq!(v["variables"]["clinic"], "North");
        assert!(parse_target(&v, "x".into()).is_ok());
    }

    #[test]
    fn header_without_a_destination_is_refused() {
        assert!(CsvLayout::new(&["name", "clinic"])
            .unwrap_err()
            .contains("phone"));
        assert!(CsvLayout::new(&["phone", "destination"])
            .unwrap_err()
            .contains("twice"));
    }

    #[test]
    fn errors_name_the_csv_column() {
        let l = CsvLayout::new(&["destination", "phone_2"]).unwrap();
        let (row, pos) = l.to_target(["+15551234567", "12"].into_iter());
        let e = parse_target(&row, "x".into()).unwrap_err();
        assert_eq!(l.column_name(e, &pos).field, "phone_2");
        let (row, pos) = l.to_target(["", "12"].into_iter());
        let e = parse_target(&row, "x".into()).unwrap_err();
        assert_eq!(l.column_name(e, &pos).field, "phone_2");
        let (row, pos) = l.to_target(["", ""].into_iter());
        let e = parse_target(&row, "x".into()).unwrap_err();
        assert_eq!(l.column_name(e, &pos).field, "destination");
    }
}
