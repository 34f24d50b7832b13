//! Turning a byte stream (a file, an object) into batch payloads of whole
//! NDJSON lines of about `max` bytes, on a reader thread that sends each
//! payload as it is cut. Reading the same bytes again cuts the same
//! payloads, so their batch keys (`...#<chunk number>`) name the same lines.
//!
//! Gzip is recognised by its magic bytes and unpacked. A JSON array becomes
//! one line per element (line breaks between tokens become spaces; inside
//! strings they are escaped, so values are unchanged). CSV becomes one
//! object of strings per row, keyed by the header row, empty cells left out.

use std::io::{self, BufRead, BufReader, Read, Write};

use bytes::Bytes;
use serde::de::{Deserializer as _, SeqAccess, Visitor};
use serde_json::value::RawValue;
use sluice_core::{DeadLetter, FileRange, NewBatch, count_lines, reason};
use tokio::sync::mpsc;

use super::{SourceContext, SourceError};

/// Bytes of lines per batch of the file and objects sources unless their
/// `max_batch_bytes` says otherwise.
pub(crate) const DEFAULT_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// The first two bytes of a gzip stream.
pub(crate) const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// What the reader thread sends.
pub(crate) enum Chunk {
    /// Whole lines, ending in `\n`.
    Lines(Bytes),
    /// A record that does not fit the format (a CSV row with the wrong
    /// number of cells): its bytes and why; the rest goes on.
    BadRecord { record: u64, bytes: Bytes, detail: String },
    /// Reading stopped; what was sent before stands.
    Failed(ReadError),
}

/// Why a read stopped.
#[derive(Debug)]
pub(crate) struct ReadError {
    pub message: String,
    /// The bytes could not be fetched (worth another try), as opposed to
    /// bytes that are not what the format says (not worth one).
    pub retriable: bool,
    /// The fetch failed because the store could not be reached: the read
    /// waits for it rather than spending an attempt.
    pub unavailable: bool,
}

/// An I/O error of the underlying fetch, as opposed to a decoding error:
/// wrap fetch errors in it so a read that failed on them is retried.
#[derive(Debug)]
pub(crate) struct FetchError {
    pub message: String,
    /// The connection to the store failed or was lost.
    pub unavailable: bool,
}

impl FetchError {
    pub fn new(error: &(dyn std::error::Error + 'static)) -> FetchError {
        FetchError {
            message: error.to_string(),
            unavailable: sluice_core::is_connection_error(error),
        }
    }
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FetchError {}

impl ReadError {
    fn from_io(e: &io::Error) -> ReadError {
        let fetch = e.get_ref().and_then(|inner| inner.downcast_ref::<FetchError>());
        ReadError {
            message: e.to_string(),
            retriable: fetch.is_some(),
            unavailable: fetch.is_some_and(|f| f.unavailable),
        }
    }

    fn from_json(e: &serde_json::Error) -> ReadError {
        if let Some(kind) = e.io_error_kind() {
            // serde_json keeps only the kind and text of an I/O error; a
            // fetch error surfaces as `Other`, decoding errors as
            // `InvalidData`, and a lost connection says so in its text.
            let retriable = kind == io::ErrorKind::Other;
            return ReadError {
                message: e.to_string(),
                retriable,
                unavailable: retriable && sluice_core::is_connection_error(e),
            };
        }
        ReadError {
            message: format!("not a JSON array: {e}"),
            retriable: false,
            unavailable: false,
        }
    }
}

/// How the bytes are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    Ndjson,
    JsonArray,
    Csv,
}

/// Reads `input` to the end (unpacking gzip) and sends its payloads; stops
/// quietly when the receiver is gone.
pub(crate) fn read_chunks(input: Box<dyn Read + Send>, layout: Layout, max: usize, tx: &mpsc::Sender<Chunk>) {
    let mut out = Sender {
        tx,
        chunk: Vec::with_capacity(max + 4096),
        max,
    };
    let result = unpacked(input).and_then(|reader| match layout {
        Layout::Ndjson => ndjson(reader, &mut out),
        Layout::JsonArray => json_array(reader, &mut out),
        Layout::Csv => csv_rows(reader, &mut out),
    });
    match result {
        Ok(()) => {
            out.flush();
        }
        Err(Stop::Receiver) => {}
        Err(Stop::Failed(e)) => {
            if out.flush() {
                let _ = tx.blocking_send(Chunk::Failed(e));
            }
        }
    }
}

enum Stop {
    /// The receiver is gone: nobody wants the rest.
    Receiver,
    Failed(ReadError),
}

impl From<io::Error> for Stop {
    fn from(e: io::Error) -> Self {
        Stop::Failed(ReadError::from_io(&e))
    }
}

struct Sender<'a> {
    tx: &'a mpsc::Sender<Chunk>,
    chunk: Vec<u8>,
    max: usize,
}

impl Sender<'_> {
    /// Sends the chunk once it holds `max` bytes of whole lines.
    fn line_done(&mut self) -> Result<(), Stop> {
        if self.chunk.len() >= self.max && !self.flush() {
            return Err(Stop::Receiver);
        }
        Ok(())
    }

    /// Sends what the chunk holds; `false` when the receiver is gone.
    fn flush(&mut self) -> bool {
        if self.chunk.is_empty() {
            return true;
        }
        let chunk = std::mem::replace(&mut self.chunk, Vec::with_capacity(self.max + 4096));
        self.tx.blocking_send(Chunk::Lines(Bytes::from(chunk))).is_ok()
    }

    fn send(&self, chunk: Chunk) -> Result<(), Stop> {
        self.tx.blocking_send(chunk).map_err(|_| Stop::Receiver)
    }
}

/// `input`, gunzipped if it starts with gzip's magic bytes.
fn unpacked(input: Box<dyn Read + Send>) -> Result<Box<dyn BufRead + Send>, Stop> {
    let mut reader = BufReader::with_capacity(256 * 1024, input);
    let head = reader.fill_buf()?;
    if head.starts_with(&GZIP_MAGIC) {
        let gz = flate2::read::MultiGzDecoder::new(reader);
        return Ok(Box::new(BufReader::with_capacity(256 * 1024, gz)));
    }
    Ok(Box::new(reader))
}

/// Copies whole buffers and looks for a line end only where a chunk may end:
/// the first line end that brings the chunk to `max` bytes (the cut a
/// line-by-line reader makes, so batch keys name the same lines).
fn ndjson(mut reader: Box<dyn BufRead + Send>, out: &mut Sender) -> Result<(), Stop> {
    loop {
        let buf = match reader.fill_buf() {
            Ok([]) => return Ok(()),
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // Keep the whole lines read so far; the partial last line is lost with the error.
                let end = out.chunk.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                out.chunk.truncate(end);
                return Err(e.into());
            }
        };
        let from = out.max.saturating_sub(1).saturating_sub(out.chunk.len()).min(buf.len());
        match memchr::memchr(b'\n', &buf[from..]) {
            Some(i) => {
                let end = from + i + 1;
                out.chunk.extend_from_slice(&buf[..end]);
                reader.consume(end);
                out.line_done()?;
            }
            None => {
                let all = buf.len();
                out.chunk.extend_from_slice(buf);
                reader.consume(all);
            }
        }
    }
}

fn json_array(reader: Box<dyn BufRead + Send>, out: &mut Sender) -> Result<(), Stop> {
    let mut de = serde_json::Deserializer::from_reader(reader);
    let mut elements = Elements { out, stop: None };
    let parsed = (&mut de).deserialize_seq(&mut elements);
    if let Some(stop) = elements.stop {
        return Err(stop);
    }
    parsed
        .and_then(|()| de.end())
        .map_err(|e| Stop::Failed(ReadError::from_json(&e)))
}

/// Visits a JSON array, writing each element as a line.
struct Elements<'a, 'b> {
    out: &'a mut Sender<'b>,
    stop: Option<Stop>,
}

impl<'de> Visitor<'de> for &mut Elements<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(element) = seq.next_element::<Box<RawValue>>()? {
            super::message_body::push_one_line(element.get().as_bytes(), &mut self.out.chunk);
            if let Err(stop) = self.out.line_done() {
                self.stop = Some(stop);
                return Err(serde::de::Error::custom("stopped"));
            }
        }
        Ok(())
    }
}

fn csv_rows(reader: Box<dyn BufRead + Send>, out: &mut Sender) -> Result<(), Stop> {
    let csv_error = |e: csv::Error| {
        let message = format!("not CSV: {e}");
        match e.into_kind() {
            csv::ErrorKind::Io(io) => Stop::from(io),
            _ => Stop::Failed(ReadError {
                message,
                retriable: false,
                unavailable: false,
            }),
        }
    };
    let mut rows = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
    let header: Vec<String> = rows.headers().map_err(csv_error)?.iter().map(str::to_string).collect();
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = header.iter().find(|h| !seen.insert(h.as_str())) {
        return Err(Stop::Failed(ReadError {
            message: format!("not CSV with a header row: column {dup:?} appears twice"),
            retriable: false,
            unavailable: false,
        }));
    }
    let mut row = csv::ByteRecord::new();
    let mut record = 0u64;
    while rows.read_byte_record(&mut row).map_err(csv_error)? {
        record += 1;
        let problem = if row.len() != header.len() {
            Some(format!("row has {} cells, the header {}", row.len(), header.len()))
        } else {
            row.iter()
                .position(|cell| std::str::from_utf8(cell).is_err())
                .map(|i| format!("cell {:?} is not UTF-8", header[i]))
        };
        if let Some(detail) = problem {
            let bytes = Bytes::from(row.iter().collect::<Vec<_>>().join(&b','));
            out.send(Chunk::BadRecord { record, bytes, detail })?;
            continue;
        }
        let object: serde_json::Map<String, serde_json::Value> = header
            .iter()
            .zip(row.iter())
            .filter(|(_, cell)| !cell.is_empty())
            .map(|(h, cell)| {
                let text = std::str::from_utf8(cell).expect("checked above");
                (h.clone(), serde_json::Value::String(text.to_string()))
            })
            .collect();
        serde_json::to_writer(&mut out.chunk, &object).map_err(|e| io::Error::other(e.to_string()))?;
        out.chunk.write_all(b"\n")?;
        out.line_done()?;
    }
    Ok(())
}

/// What became of one input's chunks.
pub(crate) struct Enqueued {
    pub batches: u64,
    /// Why reading stopped early, if it did.
    pub failed: Option<ReadError>,
}

/// Enqueues each payload from `rx` as batch `<base>#<n>` (waiting while the
/// queue is full) and stores bad records as dead letters
/// (`<base>#records`, line = record number). With `in_file`, the payloads
/// are the bytes of that file from its start, in order (plain NDJSON): each
/// batch then also names where its bytes lie, for the queue to keep
/// instead of them.
pub(crate) async fn enqueue_chunks(
    ctx: &SourceContext,
    mut rx: mpsc::Receiver<Chunk>,
    base: &str,
    maybe_committed: bool,
    mut in_file: Option<FileRange>,
) -> Result<Enqueued, SourceError> {
    let mut done = Enqueued {
        batches: 0,
        failed: None,
    };
    while let Some(chunk) = rx.recv().await {
        match chunk {
            Chunk::Lines(payload) => {
                let events = count_lines(&payload) as u64;
                let bytes = payload.len() as u64;
                let batch = NewBatch {
                    key: format!("{base}#{}", done.batches),
                    source: ctx.name.clone(),
                    payload,
                    maybe_committed,
                    in_file: in_file.clone(),
                };
                if let Some(at) = &mut in_file {
                    at.offset += bytes;
                }
                ctx.enqueue_waiting(batch).await?;
                ctx.telemetry.enqueued(events, bytes);
                done.batches += 1;
            }
            Chunk::BadRecord { record, bytes, detail } => {
                let letter = DeadLetter::new(
                    format!("{base}#records"),
                    u32::try_from(record).unwrap_or(u32::MAX),
                    &ctx.name,
                    &ctx.name,
                    reason::BAD_RECORD,
                    format!("record {record}: {detail}"),
                    bytes,
                );
                ctx.dead_letters
                    .put(vec![letter])
                    .await
                    .map_err(|e| SourceError::State(format!("storing dead letter: {e}")))?;
            }
            Chunk::Failed(e) => done.failed = Some(e),
        }
    }
    Ok(done)
}

/// Stores the dead letter for an input that could not be read to the end:
/// batch key `<base>#error`, no bytes, `detail` naming the input.
pub(crate) async fn dead_letter_unreadable(ctx: &SourceContext, base: &str, detail: String) -> Result<(), SourceError> {
    let letter = DeadLetter::new(
        format!("{base}#error"),
        0,
        &ctx.name,
        &ctx.name,
        reason::UNREADABLE_INPUT,
        detail,
        Bytes::new(),
    );
    ctx.dead_letters
        .put(vec![letter])
        .await
        .map_err(|e| SourceError::State(format!("storing dead letter: {e}")))
}

#[cfg(test)]
mod tests;
