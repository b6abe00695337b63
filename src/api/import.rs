//! Bulk target import: rows (JSON items or CSV lines) are validated one by
//! one, stored in batches, and reported: created, existing (same
//! `client_token`), duplicates (same first destination) and invalid rows with
//! their index or line and the reason. A bad row never stops its neighbours.
//!
//! CSV is read one physical line at a time, streamed (memory is bounded by
//! the longest line, [`MAX_LINE_BYTES`]): one line is one record. A quoted
//! field may hold commas and doubled quotes but not a line break, so a quote
//! still open at the end of its line is an error on that line and reading
//! goes on at the next one. Must not: hold the whole body, or let one bad
//! line hide the lines after it.

use axum::body::Body;
use futures::TryStreamExt;
use serde_json::{json, Map, Value};

use super::csv_lines::{Cells, LineRead, Lines};

use super::error::{ApiError, ApiResult};

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

/// A batch on its way to the writer: where each row came from, and the rows.
type Batch = (Vec<RowRef>, Vec<NewTarget>);

/// Counts and lists the writer builds as batches are stored.
#[derive(Default)]
struct Stored {
    created: u64,
    existing: u64,
    duplicate_count: u64,
    duplicates: Vec<Value>,
    items: Option<Vec<Value>>,
}

/// Aborts the writer if the import is dropped half way (client gone).
struct WriterTask(tokio::task::JoinHandle<Result<Stored, StoreError>>);

impl Drop for WriterTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Accumulates rows and hands full batches to a writer task that stores
/// them in order while the next batch is being parsed; builds the report.
pub struct Importer {
    batch: Batch,
    to_writer: Option<tokio::sync::mpsc::Sender<Batch>>,
    writer: Option<WriterTask>,
    received: u64,
    invalid_count: u64,
    invalid: Vec<Value>,
}

impl Importer {
    /// `keep_items`: report every row's id and status (small JSON requests).
    pub fn new(store: &Store, outdial_id: &str, keep_items: bool) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel::<Batch>(1);
        let task = tokio::spawn(write_batches(
            store.clone(),
            outdial_id.to_string(),
            rx,
            keep_items,
        ));
        Importer {
            batch: (
                Vec::with_capacity(BATCH_ROWS),
                Vec::with_capacity(BATCH_ROWS),
            ),
            to_writer: Some(tx),
            writer: Some(WriterTask(task)),
            received: 0,
            invalid_count: 0,
            invalid: Vec::new(),
        }
    }

    /// Validates one row and queues it; hands a full batch to the writer.
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
                self.batch.0.push(at);
                self.batch.1.push(t);
                if self.batch.1.len() >= BATCH_ROWS {
                    self.send_batch().await?;
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

    async fn send_batch(&mut self) -> Result<(), StoreError> {
        let batch = std::mem::replace(
            &mut self.batch,
            (
                Vec::with_capacity(BATCH_ROWS),
                Vec::with_capacity(BATCH_ROWS),
            ),
        );
        let tx = self.to_writer.as_ref().expect("writer open until finish");
        if tx.send(batch).await.is_err() {
            // The writer stopped on an error: surface it.
            self.to_writer = None;
            return match self.join_writer().await {
                Err(e) => Err(e),
                Ok(_) => Err(StoreError::Corrupt("target writer stopped early".into())),
            };
        }
        Ok(())
    }

    async fn join_writer(&mut self) -> Result<Stored, StoreError> {
        let mut task = self.writer.take().expect("writer joined once");
        let joined = (&mut task.0).await;
        joined.map_err(|e| StoreError::Corrupt(format!("target writer failed: {e}")))?
    }

    /// Stores what is left, waits for the writer and returns the report.
    pub async fn finish(mut self) -> Result<Value, StoreError> {
        if !self.batch.1.is_empty() {
            self.send_batch().await?;
        }
        self.to_writer = None;
        let stored = self.join_writer().await?;
        let mut v = json!({
            "received": self.received,
            "created": stored.created,
            "existing": stored.existing,
            "duplicate_count": stored.duplicate_count,
            "invalid_count": self.invalid_count,
            "duplicates": stored.duplicates,
            "invalid": self.invalid,
            "truncated": stored.duplicate_count as usize > MAX_LISTED || self.invalid_count as usize > MAX_LISTED,
        });
        if let Some(items) = stored.items {
            v["items"] = Value::Array(items);
        }
        Ok(v)
    }
}

/// The writer: stores batches in arrival order and classifies each row.
async fn write_batches(
    store: Store,
    outdial_id: String,
    mut batches: tokio::sync::mpsc::Receiver<Batch>,
    keep_items: bool,
) -> Result<Stored, StoreError> {
    let mut out = Stored {
        items: keep_items.then(Vec::new),
        ..Stored::default()
    };
    while let Some((refs, targets)) = batches.recv().await {
        let now = chrono::Utc::now().timestamp_millis();
        let results = store.insert_targets(&outdial_id, &targets, now).await?;
        for ((at, t), r) in refs.into_iter().zip(&targets).zip(results) {
            let (status, id) = match r {
                Inserted::Created(id) => {
                    out.created += 1;
                    ("created", id)
                }
                Inserted::Existing(id) => {
                    out.existing += 1;
                    ("existing", id)
                }
                Inserted::Duplicate { existing_id } => {
                    out.duplicate_count += 1;
                    if out.duplicates.len() < MAX_LISTED {
                        let mut v = json!({"destination": t.destinations[0].target, "existing_id": existing_id});
                        at.put(&mut v);
                        out.duplicates.push(v);
                    }
                    ("duplicate", existing_id)
                }
            };
            if let Some(items) = &mut out.items {
                let mut v = json!({"id": id, "status": status});
                at.put(&mut v);
                items.push(v);
            }
        }
    }
    Ok(out)
}

/// Longest CSV line read, in bytes; a longer line is an error on that line
/// (and skipped), which bounds the memory one import holds.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Streams a CSV body (header row first) into the outdial. The report says
/// how many lines were read (`lines_read`, the header included); an upload
/// cut short or over `limit` bytes is an error whose details carry the same
/// report, so the rows stored before it are known.
pub async fn import_csv(
    store: &Store,
    outdial_id: &str,
    body: Body,
    limit: u64,
) -> ApiResult<Value> {
    let data = body.into_data_stream().map_err(std::io::Error::other);
    import_csv_stream(store, outdial_id, data, limit).await
}

/// As [`import_csv`], from any stream of the CSV's bytes (the console's
/// upload is one part of a form).
pub async fn import_csv_stream<S>(
    store: &Store,
    outdial_id: &str,
    data: S,
    limit: u64,
) -> ApiResult<Value>
where
    S: futures::Stream<Item = Result<axum::body::Bytes, std::io::Error>> + Send,
{
    let mut seen: u64 = 0;
    let stream = futures::StreamExt::map(Box::pin(data), move |chunk| {
        let chunk = chunk?;
        seen += chunk.len() as u64;
        if seen > limit {
            return Err(std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                "csv body over limit",
            ));
        }
        Ok(chunk)
    });
    let mut lines = Lines::new(tokio_util::io::StreamReader::new(stream));
    let mut cells = Cells::default();
    let cut_short = |e: std::io::Error, lines_read: u64, progress: Option<Value>| {
        let err = if e.kind() == std::io::ErrorKind::FileTooLarge {
            ApiError::too_large(format!(
                "CSV body is larger than api.csv_body_limit_bytes ({limit}); rows before the limit were stored"
            ))
        } else {
            ApiError::bad_request(format!("the CSV upload was cut short: {e}"))
        };
        let mut details = progress.unwrap_or_else(|| json!({"created": 0}));
        details["lines_read"] = json!(lines_read);
        err.with_details(details)
    };
    // The header row: the first line that is not blank.
    let layout = loop {
        let got = match lines.next().await {
            Ok(got) => got,
            Err(e) => return Err(cut_short(e, lines.number, None)),
        };
        let header_line = lines.number;
        let header_error = |m: String| {
            ApiError::from(FieldError::new(
                format!("(csv header, line {header_line})"),
                m,
            ))
        };
        match got {
            None => {
                break CsvLayout::new(&[]).map_err(header_error)?;
            }
            Some(LineRead::TooLong) => {
                return Err(header_error(format!(
                    "is longer than {MAX_LINE_BYTES} bytes"
                )))
            }
            Some(LineRead::Line) if lines.is_blank() => continue,
            Some(LineRead::Line) => {
                let names = cells.split(lines.line()).map_err(header_error)?;
                break CsvLayout::new(&names).map_err(header_error)?;
            }
        }
    };
    let mut importer = Importer::new(store, outdial_id, false);
    loop {
        let got = match lines.next().await {
            Ok(got) => got,
            Err(e) => {
                let progress = importer.finish().await?;
                return Err(cut_short(e, lines.number, Some(progress)));
            }
        };
        let at = RowRef::Line(lines.number);
        match got {
            None => break,
            Some(LineRead::Line) if lines.is_blank() => continue,
            Some(LineRead::TooLong) => {
                importer.count_received();
                importer.reject(
                    at,
                    FieldError::new("(row)", format!("is longer than {MAX_LINE_BYTES} bytes")),
                );
            }
            Some(LineRead::Line) => match cells.split(lines.line()) {
                Err(reason) => {
                    importer.count_received();
                    importer.reject(at, FieldError::new("(row)", reason));
                }
                Ok(record) if record.len() != layout.width() => {
                    importer.count_received();
                    importer.reject(
                        at,
                        FieldError::new(
                            "(row)",
                            format!(
                                "has {} fields; the header row has {}",
                                record.len(),
                                layout.width()
                            ),
                        ),
                    );
                }
                Ok(record) => {
                    let (row, positions) = layout.to_target(record.into_iter());
                    importer
                        .push(at, &row, |e| layout.column_name(e, &positions))
                        .await?;
                }
            },
        }
    }
    let mut report = importer.finish().await?;
    report["lines_read"] = json!(lines.number);
    Ok(report)
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
    Consent,
    ConsentAt,
    Variable(String),
}

/// Maps a CSV header row to target fields; unknown columns become variables.
#[derive(Debug)]
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
            let col =
                match key.as_str() {
                    "phone" | "destination" | "phone_1" | "destination_1" => Column::Destination(0),
                    "name" => Column::Name,
                    "try_count_max" => Column::TryCountMax,
                    "timezone" => Column::Timezone,
                    "not_before" => Column::NotBefore,
                    "expires_at" => Column::ExpiresAt,
                    "client_token" => Column::ClientToken,
                    "consent" => Column::Consent,
                    "consent_at" => Column::ConsentAt,
                    k => {
                        match k
                            .strip_prefix("phone_")
                            .or_else(|| k.strip_prefix("destination_"))
                            .and_then(|n| n.parse::<usize>().ok())
                        {
                            Some(n @ 2..=5) => Column::Destination(n - 1),
                            Some(n) if n > 5 => {
                                return Err(format!(
                            "column {name:?}: a target has at most 5 destinations ({} to {}_5)",
                            if k.starts_with("phone") { "phone" } else { "destination" },
                            if k.starts_with("phone") { "phone" } else { "destination" },
                        ))
                            }
                            _ => {
                                if name.is_empty() {
                                    return Err(format!(
                                        "column {} of the header row has no name",
                                        columns.len() + 1
                                    ));
                                }
                                Column::Variable(name.clone())
                            }
                        }
                    }
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
                Column::Consent => "consent",
                Column::ConsentAt => "consent_at",
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

    fn split(line: &str) -> Result<Vec<String>, String> {
        let mut c = Cells::default();
        c.split(line.as_bytes())
            .map(|v| v.into_iter().map(String::from).collect())
    }

    #[test]
    fn lines_split_into_fields_with_quoting_inside_the_line() {
        let ok: &[(&str, &[&str])] = &[
            ("+15551234567,Jane", &["+15551234567", "Jane"]),
            ("+1555,\"Smith, Jane\",x", &["+1555", "Smith, Jane", "x"]),
            ("a,\"say \"\"hi\"\"\"", &["a", "say \"hi\""]),
            ("a,,", &["a", "", ""]),
            ("a,\"\"", &["a", ""]),
            (" ", &[" "]),
        ];
        for (line, want) in ok {
            assert_eq!(split(line).unwrap(), *want, "{line:?}");
        }
    }

    #[test]
    fn a_quote_left_open_at_the_end_of_its_line_is_an_error() {
        for line in ["+12040000009,\"Smith", "\"abc", "a,\"b\"\"", "a,\"b,c"] {
            let e = split(line).unwrap_err();
            assert!(e.contains("unclosed quote"), "{line:?}: {e}");
        }
        // The reader is reset: the next line is read on its own.
        let mut c = Cells::default();
        assert!(c.split(b"a,\"open").is_err());
        assert_eq!(c.split(b"b,c").unwrap(), ["b", "c"]);
    }

    #[test]
    fn fields_that_are_not_utf8_are_named() {
        let mut c = Cells::default();
        assert_eq!(
            c.split(b"ok,\xff").unwrap_err(),
            "field 2 is not valid UTF-8"
        );
    }

    #[test]
    fn long_lines_grow_the_buffers() {
        let line = vec!["x".repeat(3000); 200].join(",");
        assert_eq!(split(&line).unwrap().len(), 200);
    }

    #[tokio::test]
    async fn lines_are_numbered_and_overlong_ones_skipped() {
        let long = "y".repeat(MAX_LINE_BYTES + 1);
        let body = format!("a\r\n\nb\n{long}\nc");
        let mut lines = Lines::new(std::io::Cursor::new(body.into_bytes()));
        let mut got = Vec::new();
        while let Some(r) = lines.next().await.unwrap() {
            let text = String::from_utf8(lines.line().to_vec()).unwrap();
            got.push((lines.number, r, text));
        }
        assert_eq!(
            got,
            vec![
                (1, LineRead::Line, "a".to_string()),
                (2, LineRead::Line, String::new()),
                (3, LineRead::Line, "b".to_string()),
                (4, LineRead::TooLong, String::new()),
                (5, LineRead::Line, "c".to_string()),
            ]
        );
    }

    #[test]
    fn phone_columns_beyond_the_fifth_are_refused() {
        let e = CsvLayout::new(&["phone", "phone_6"]).unwrap_err();
        assert!(
            e.contains("at most 5 destinations") && e.contains("phone_6"),
            "{e}"
        );
        let e = CsvLayout::new(&["destination", "destination_7"]).unwrap_err();
        assert!(e.contains("at most 5 destinations"), "{e}");
        assert!(CsvLayout::new(&["phone", "phone_5"]).is_ok());
    }

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
