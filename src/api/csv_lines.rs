//! CSV lines for the target import: a byte stream cut into numbered
//! physical lines of bounded length, and one line split into its fields
//! (RFC 4180 quoting within the line; a quote left open at the end of the
//! line is an error on that line). Must not: read past a line to close a quote.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use super::import::MAX_LINE_BYTES;

/// What [`Lines::next`] read.
#[derive(Debug, PartialEq)]
pub(super) enum LineRead {
    /// A line, in [`Lines::line`].
    Line,
    /// A line longer than [`MAX_LINE_BYTES`], skipped.
    TooLong,
}

/// Physical lines of a byte stream, numbered from 1, each at most
/// [`MAX_LINE_BYTES`] long. A line is handed out without its `\n` or `\r\n`.
pub(super) struct Lines<R> {
    inner: R,
    buf: Vec<u8>,
    /// Lines read so far (the number of the current line).
    pub(super) number: u64,
}

impl<R: AsyncBufRead + Unpin> Lines<R> {
    pub(super) fn new(inner: R) -> Self {
        Lines {
            inner,
            buf: Vec::with_capacity(1024),
            number: 0,
        }
    }

    /// Reads the next line; `None` at the end of the stream.
    pub(super) async fn next(&mut self) -> std::io::Result<Option<LineRead>> {
        self.buf.clear();
        let mut too_long = false;
        let mut any = false;
        loop {
            let chunk = self.inner.fill_buf().await?;
            if chunk.is_empty() {
                if !any {
                    return Ok(None);
                }
                break;
            }
            any = true;
            let (take, used, done) = match memchr::memchr(b'\n', chunk) {
                Some(i) => (i, i + 1, true),
                None => (chunk.len(), chunk.len(), false),
            };
            if !too_long {
                if self.buf.len() + take > MAX_LINE_BYTES {
                    too_long = true;
                    self.buf.clear();
                } else {
                    self.buf.extend_from_slice(&chunk[..take]);
                }
            }
            self.inner.consume(used);
            if done {
                break;
            }
        }
        self.number += 1;
        if too_long {
            return Ok(Some(LineRead::TooLong));
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        Ok(Some(LineRead::Line))
    }

    pub(super) fn line(&self) -> &[u8] {
        &self.buf
    }

    pub(super) fn is_blank(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Splits one CSV line into its fields (RFC 4180 quoting within the line).
pub(super) struct Cells {
    reader: csv_core::Reader,
    out: Vec<u8>,
    ends: Vec<usize>,
}

impl Default for Cells {
    fn default() -> Self {
        Cells {
            reader: csv_core::ReaderBuilder::new()
                .terminator(csv_core::Terminator::Any(b'\n'))
                .build(),
            out: vec![0; 1024],
            ends: vec![0; 64],
        }
    }
}

impl Cells {
    /// The fields of `line` (given without its line break), or why it cannot
    /// be read: a quoted field still open at the end of the line, or bytes
    /// that are not UTF-8.
    pub(super) fn split(&mut self, line: &[u8]) -> Result<Vec<&str>, String> {
        self.reader.reset();
        if self.out.len() < line.len() {
            self.out.resize(line.len(), 0);
        }
        let (mut nin, mut nout, mut nend) = (0, 0, 0);
        let mut input: &[u8] = line;
        let mut terminated = false;
        loop {
            let (result, i, o, e) =
                self.reader
                    .read_record(input, &mut self.out[nout..], &mut self.ends[nend..]);
            nin += i;
            nout += o;
            nend += e;
            input = &input[i..];
            match result {
                csv_core::ReadRecordResult::Record => break,
                csv_core::ReadRecordResult::End => break,
                csv_core::ReadRecordResult::OutputFull => {
                    let n = self.out.len() * 2;
                    self.out.resize(n, 0);
                }
                csv_core::ReadRecordResult::OutputEndsFull => {
                    let n = self.ends.len() * 2;
                    self.ends.resize(n, 0);
                }
                csv_core::ReadRecordResult::InputEmpty if !terminated => {
                    debug_assert_eq!(nin, line.len());
                    input = b"\n";
                    terminated = true;
                }
                csv_core::ReadRecordResult::InputEmpty => {
                    return Err(
                        "unclosed quote: a quoted field runs past the end of its line (a field cannot hold a line break)"
                            .into(),
                    );
                }
            }
        }
        let mut cells = Vec::with_capacity(nend);
        let mut start = 0;
        for (i, &end) in self.ends[..nend].iter().enumerate() {
            let cell = std::str::from_utf8(&self.out[start..end])
                .map_err(|_| format!("field {} is not valid UTF-8", i + 1))?;
            cells.push(cell);
            start = end;
        }
        Ok(cells)
    }
}
