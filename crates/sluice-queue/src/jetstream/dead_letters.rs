//! Dead letters in a JetStream stream beside the queue
//! (`SLUICE_<PIPELINE>_DLQ`), so every replica writes to, lists and
//! redrives one store, and it outlives any replica's disk.
//!
//! * A letter is a message on `sluice.<pipeline>.dead.<reason>` (the reason
//!   encoded into one subject token, so per-reason counts come from the
//!   stream's subject counts), its bytes as the payload and its fields as
//!   headers. Its `Nats-Msg-Id` is `<batch key>/<line>`: a batch dead-lettered
//!   again within the duplicate window (by a replica that took it over from
//!   a killed one) stores nothing twice.
//! * `redrive` publishes the letters as new batches (`maybe_committed`,
//!   keyed by their DLQ sequences and deduplicated by JetStream under that
//!   key), then deletes them: a redrive interrupted between the two and run
//!   again publishes the same keys, which commit nothing twice.

use std::{collections::BTreeMap, time::Duration};

use async_nats::{
    HeaderMap,
    jetstream::{
        self,
        consumer::{AckPolicy, PullConsumer, pull},
        stream::{DiscardPolicy, RetentionPolicy, StorageType},
    },
};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use sluice_core::{DeadLetter, NewBatch};

use super::{JetStreamQueue, header, storage};
use crate::{DeadLetterCounts, DeadLetterFilter, QueueError};

const LINE_HEADER: &str = "Sluice-Line";
const COMPONENT_HEADER: &str = "Sluice-Component";
const REASON_HEADER: &str = "Sluice-Reason";
const DETAIL_HEADER: &str = "Sluice-Detail";
const AT_HEADER: &str = "Sluice-At-Ms";
/// Largest payload of one batch built by `redrive`.
const REDRIVE_BATCH_BYTES: usize = 1024 * 1024;
/// How long a dead letter's id is remembered for deduplication.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(600);

/// The reason as one subject token: letters, digits, `_` and `-` as they
/// are, every other byte as `~XX`.
pub(super) fn encode_reason(reason: &str) -> String {
    let mut token = String::with_capacity(reason.len());
    for byte in reason.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
            token.push(byte as char);
        } else {
            token.push_str(&format!("~{byte:02X}"));
        }
    }
    if token.is_empty() { "~".into() } else { token }
}

pub(super) fn decode_reason(token: &str) -> String {
    let mut bytes = Vec::with_capacity(token.len());
    let mut rest = token.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        let escaped = tail
            .get(..2)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (first, escaped) {
            (b'~', Some(byte)) => {
                bytes.push(byte);
                rest = &tail[2..];
            }
            (b'~', _) => rest = tail,
            _ => {
                bytes.push(first);
                rest = tail;
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A header value with line breaks (not allowed in headers) as spaces.
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

impl JetStreamQueue {
    /// Creates the dead-letter stream if missing.
    pub(super) async fn open_dead_letters(
        js: &jetstream::Context,
        stream: &str,
        subject: &str,
    ) -> Result<(), QueueError> {
        js.get_or_create_stream(jetstream::stream::Config {
            name: stream.to_string(),
            subjects: vec![format!("{subject}.>")],
            retention: RetentionPolicy::Limits,
            discard: DiscardPolicy::New,
            storage: StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            ..Default::default()
        })
        .await
        .map_err(|e| storage(format!("dead-letter stream {stream}: {e}")))?;
        Ok(())
    }

    pub(super) async fn put_dead(&self, letters: Vec<DeadLetter>) -> Result<(), QueueError> {
        let mut acks = Vec::with_capacity(letters.len());
        for l in letters {
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", one_line(&format!("{}/{}", l.batch_key, l.line)).as_str());
            headers.insert(super::KEY_HEADER, one_line(&l.batch_key).as_str());
            headers.insert(LINE_HEADER, l.line.to_string().as_str());
            headers.insert(super::SOURCE_HEADER, one_line(&l.source).as_str());
            headers.insert(COMPONENT_HEADER, one_line(&l.component).as_str());
            headers.insert(REASON_HEADER, one_line(&l.reason).as_str());
            headers.insert(DETAIL_HEADER, one_line(&l.detail).as_str());
            headers.insert(AT_HEADER, l.at_ms.to_string().as_str());
            let subject = format!("{}.{}", self.names.dead_subject, encode_reason(&l.reason));
            acks.push(
                self.js
                    .publish_with_headers(subject, headers, l.bytes)
                    .await
                    .map_err(storage)?,
            );
        }
        for ack in acks {
            ack.await.map_err(storage)?;
        }
        Ok(())
    }

    pub(super) async fn dead_counts(&self) -> Result<DeadLetterCounts, QueueError> {
        let stream = self.js.get_stream(&self.names.dead_stream).await.map_err(storage)?;
        let subjects: Vec<(String, usize)> = stream
            .info_with_subjects(format!("{}.>", self.names.dead_subject))
            .await
            .map_err(storage)?
            .try_collect()
            .await
            .map_err(storage)?;
        let mut counts = DeadLetterCounts::default();
        let prefix = format!("{}.", self.names.dead_subject);
        for (subject, count) in subjects {
            let reason = decode_reason(subject.strip_prefix(&prefix).unwrap_or(&subject));
            counts.total += count as u64;
            *counts.by_reason.entry(reason.clone()).or_default() += count as u64;
            let newest = stream
                .get_last_raw_message_by_subject(&subject)
                .await
                .map_err(storage)?;
            let at = header(Some(&newest.headers), AT_HEADER).and_then(|at| at.parse().ok());
            if let Some(at) = at {
                let kept = counts.newest_ms.entry(reason).or_insert(at);
                *kept = (*kept).max(at);
            }
        }
        Ok(counts)
    }

    /// Up to `limit` letters matching `filter`, oldest first, with their
    /// stream sequences.
    pub(super) async fn read_dead(
        &self,
        filter: &DeadLetterFilter,
        limit: usize,
    ) -> Result<Vec<(u64, DeadLetter)>, QueueError> {
        let stream = self.js.get_stream(&self.names.dead_stream).await.map_err(storage)?;
        let filter_subject = match &filter.reason {
            Some(reason) => format!("{}.{}", self.names.dead_subject, encode_reason(reason)),
            None => format!("{}.>", self.names.dead_subject),
        };
        let mut consumer: PullConsumer = stream
            .create_consumer(pull::Config {
                filter_subject,
                ack_policy: AckPolicy::None,
                inactive_threshold: Duration::from_secs(60),
                ..Default::default()
            })
            .await
            .map_err(storage)?;
        let info = consumer.info().await.map_err(storage)?;
        let (name, want) = (info.name.clone(), (info.num_pending as usize).min(limit));
        let mut letters = Vec::with_capacity(want);
        while letters.len() < want {
            let mut messages = consumer
                .batch()
                .max_messages((want - letters.len()).min(1000))
                .expires(Duration::from_secs(1))
                .messages()
                .await
                .map_err(storage)?;
            let before = letters.len();
            while let Some(message) = messages.next().await {
                let message = message.map_err(storage)?;
                let seq = message.info().map_err(storage)?.stream_sequence;
                let headers = message.headers.as_ref();
                let text = |name: &str| header(headers, name).unwrap_or_default();
                letters.push((
                    seq,
                    DeadLetter {
                        batch_key: text(super::KEY_HEADER),
                        line: text(LINE_HEADER).parse().unwrap_or_default(),
                        source: text(super::SOURCE_HEADER),
                        component: text(COMPONENT_HEADER),
                        reason: text(REASON_HEADER),
                        detail: text(DETAIL_HEADER),
                        bytes: message.payload.clone(),
                        at_ms: text(AT_HEADER).parse().unwrap_or_default(),
                    },
                ));
            }
            if letters.len() == before {
                break;
            }
        }
        let _ = stream.delete_consumer(&name).await;
        Ok(letters)
    }

    pub(super) async fn redrive_dead(&self, filter: DeadLetterFilter) -> Result<u64, QueueError> {
        let letters = self.read_dead(&filter, usize::MAX).await?;
        let stream = self.js.get_stream(&self.names.dead_stream).await.map_err(storage)?;
        // One batch per source, in sequence order, cut at REDRIVE_BATCH_BYTES.
        let mut by_source: BTreeMap<&str, Vec<&(u64, DeadLetter)>> = BTreeMap::new();
        for letter in &letters {
            by_source.entry(letter.1.source.as_str()).or_default().push(letter);
        }
        for (source, letters) in by_source {
            let mut chunk: Vec<&(u64, DeadLetter)> = Vec::new();
            let mut bytes = 0;
            for letter in letters {
                if !chunk.is_empty() && bytes + letter.1.bytes.len() > REDRIVE_BATCH_BYTES {
                    self.redrive_chunk(&stream, source, &chunk).await?;
                    chunk.clear();
                    bytes = 0;
                }
                bytes += letter.1.bytes.len() + 1;
                chunk.push(letter);
            }
            if !chunk.is_empty() {
                self.redrive_chunk(&stream, source, &chunk).await?;
            }
        }
        Ok(letters.len() as u64)
    }

    async fn redrive_chunk(
        &self,
        stream: &jetstream::stream::Stream,
        source: &str,
        chunk: &[&(u64, DeadLetter)],
    ) -> Result<(), QueueError> {
        let mut payload = Vec::new();
        for (_, letter) in chunk {
            payload.extend_from_slice(&letter.bytes);
            payload.push(b'\n');
        }
        let (first, last) = (chunk[0].0, chunk[chunk.len() - 1].0);
        let key = format!("redrive/{}-{first}-{last}", self.names.dead_stream);
        self.publish(
            NewBatch {
                key: key.clone(),
                source: source.to_string(),
                payload: Bytes::from(payload),
                maybe_committed: true,
                in_file: None,
            },
            Some(&key),
        )
        .await?;
        for (seq, _) in chunk {
            stream.delete_message(*seq).await.map_err(storage)?;
        }
        Ok(())
    }
}
