//! Batches: the unit the durable queue stores, delivers and acknowledges.
//!
//! A batch is many events from one source (one HTTP request, one chunk of a
//! file) stored as NDJSON. Its `key` is stable across re-reads of the same
//! input (a file chunk keeps its key when a crash makes the source read the
//! file again), so a sink that records keys in its commit can recognise a
//! batch it has already written.
//!
//! A batch that `sluice replay` asks a source for is keyed
//! `replay/<replay id>/<key of the first read>` ([`replay_key`]): a new key,
//! so sinks do not skip it as committed, and one that says its events
//! replace the rows earlier reads of the same input left (lake rows with
//! the same event id; PostgreSQL upserts replace by key anyway).

use std::time::UNIX_EPOCH;

use bytes::Bytes;

/// How the keys of replayed batches start.
pub const REPLAY_PREFIX: &str = "replay/";

/// The key of `key` read again by the replay `replay_id`.
pub fn replay_key(replay_id: &str, key: &str) -> String {
    format!("{REPLAY_PREFIX}{replay_id}/{key}")
}

/// Whether a batch is a replay: its events replace earlier rows with their ids.
pub fn is_replay(key: &str) -> bool {
    key.starts_with(REPLAY_PREFIX)
}

/// A batch handed to the queue by a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBatch {
    /// Stable identity of the input this batch came from; sinks record it.
    pub key: String,
    /// Name of the source component that produced it.
    pub source: String,
    /// NDJSON: one event per line.
    pub payload: Bytes,
    /// True when the source may have produced this batch before (a re-read
    /// after a crash), so sinks must check their commit log for `key`.
    pub maybe_committed: bool,
    /// Where `payload` lies, byte for byte, in a local file that stays put:
    /// a queue on this machine may keep this instead of the bytes and read
    /// them back at delivery (the file source's `queue_payloads =
    /// "reference"`). Other queues copy the payload.
    pub in_file: Option<FileRange>,
}

/// The bytes `offset..offset + len` of the file at `path` as it was when
/// read (its size and modification time), where a batch's payload lies;
/// the embedded queue reads them back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRange {
    pub path: String,
    pub size: u64,
    pub mtime_ns: i64,
    pub offset: u64,
}

/// A file's modification time in nanoseconds since the epoch (0 when the
/// platform gives none), as file checkpoints and [`FileRange`]s record it.
pub fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i64)
}

/// The queue backend's handle for one delivery of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeliveryId(pub u64);

/// A batch as delivered by the queue to the stages.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: DeliveryId,
    pub key: String,
    pub source: String,
    pub payload: Bytes,
    /// 1 on first delivery.
    pub attempts: u32,
    /// The batch may already be in a sink, which must check its commit log:
    /// the source flagged it (a re-read after a crash) or this is not its
    /// first delivery. Queues set it from both.
    pub maybe_committed: bool,
    pub enqueued_at_ms: i64,
}

/// Splits an NDJSON payload into `(line_number, line)` pairs, skipping blank
/// lines and stripping a trailing `\r`. Line numbers start at 0 and count
/// every line, so they identify a line within its batch across redeliveries.
pub fn split_lines(payload: &Bytes) -> impl Iterator<Item = (u32, Bytes)> + '_ {
    line_ranges(payload).map(|(line_no, range)| (line_no, payload.slice(range)))
}

/// How many lines [`split_lines`] gives, without taking them out.
pub fn count_lines(payload: &[u8]) -> usize {
    line_ranges(payload).count()
}

/// The byte ranges of [`split_lines`]'s lines, with their numbers.
fn line_ranges(payload: &[u8]) -> impl Iterator<Item = (u32, std::ops::Range<usize>)> + '_ {
    let mut start = 0usize;
    let mut line_no = 0u32;
    std::iter::from_fn(move || {
        while start < payload.len() {
            let end = memchr::memchr(b'\n', &payload[start..]).map_or(payload.len(), |i| start + i);
            let mut line_end = end;
            if line_end > start && payload[line_end - 1] == b'\r' {
                line_end -= 1;
            }
            let this = line_no;
            let range = start..line_end;
            start = end + 1;
            line_no += 1;
            if payload[range.clone()].iter().any(|b| !b.is_ascii_whitespace()) {
                return Some((this, range));
            }
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_lines_numbers_every_line_and_skips_blanks() {
        let payload = Bytes::from_static(b"{\"a\":1}\r\n\n  \n{\"b\":2}\n{\"c\":3}");
        let lines: Vec<_> = split_lines(&payload).collect();
        assert_eq!(
            lines,
            vec![
                (0, Bytes::from_static(b"{\"a\":1}")),
                (3, Bytes::from_static(b"{\"b\":2}")),
                (4, Bytes::from_static(b"{\"c\":3}")),
            ]
        );
    }

    #[test]
    fn replay_keys_name_the_replay_and_the_first_read() {
        let key = replay_key("20261203T120000Z", "file:/in/a.ndjson@10:7#0");
        assert_eq!(key, "replay/20261203T120000Z/file:/in/a.ndjson@10:7#0");
        assert!(is_replay(&key));
        assert!(!is_replay("file:/in/replay/a.ndjson@10:7#0"));
    }

    #[test]
    fn split_lines_of_empty_payload_is_empty() {
        assert_eq!(split_lines(&Bytes::new()).count(), 0);
        assert_eq!(count_lines(b""), 0);
    }

    #[test]
    fn count_lines_counts_what_split_lines_gives() {
        for payload in ["{}\r\n\n  \n{}\n{}", "\n\n", " \t\r\n{}", "{}\n", "{}", "\r"] {
            let bytes = Bytes::from(payload);
            assert_eq!(count_lines(&bytes), split_lines(&bytes).count(), "{payload:?}");
        }
    }
}
