//! Document stores: where the `documents` stage keeps each document's
//! merge state and current document. Two backends behind one trait, held to
//! one conformance suite (`tests.rs`): embedded SQLite in the data
//! directory ([`embedded`]) and PostgreSQL ([`postgres`]).
//!
//! Invariants every store keeps:
//! * A batch's changes, their documents and a record of the batch (its key
//!   and which of its changes emitted which document) commit in one
//!   transaction. A redelivered batch whose record exists changes nothing
//!   and gets back the same emissions with the documents as they are now,
//!   so a downstream stage that lost them sees them again.
//! * Every stored write takes a new sequence number; `changed_since` reads
//!   documents (and deletions) in that order, for snapshots and re-hydration.

pub mod embedded;
pub mod postgres;

/// How long a batch record is kept. A batch redelivered later than this is
/// applied again: its changes are no-ops then, so it changes nothing but
/// emits nothing either.
pub const BATCH_RECORD_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;

use async_trait::async_trait;
use sluice_core::StageError;

use crate::{
    apply::{BatchStats, Emission, StoredDocument},
    change::{Change, DocKey},
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached: retried until it is back, without
    /// spending the batch's attempts.
    #[error("{0}")]
    Unavailable(String),
    /// Worth retrying: the database is busy, or a concurrent writer won a lock.
    #[error("{0}")]
    Busy(String),
    /// The stored data or the configuration is wrong; retrying will not help.
    #[error("{0}")]
    Fatal(String),
}

impl From<StoreError> for StageError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => StageError::unavailable(format!("document store: {m}")),
            StoreError::Busy(m) => StageError::retriable(format!("document store: {m}")),
            StoreError::Fatal(m) => StageError::fatal(format!("document store: {m}")),
        }
    }
}

/// What applying one batch did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Documents to emit, in change order.
    pub emitted: Vec<Emission>,
    pub stats: BatchStats,
    /// Records written (documents, deletions and tombstones).
    pub stored: u64,
    /// The batch was applied before; `emitted` holds its documents as they are now.
    pub replayed: bool,
}

/// A batch record as stores keep it: `[[entity, id, change index], ...]`.
type Recorded = Vec<(String, String, usize)>;

fn record_of(emitted: &[Emission]) -> String {
    let recorded: Vec<(&str, &str, usize)> = emitted
        .iter()
        .map(|e| (e.document.key.entity.as_str(), e.document.key.id.as_str(), e.change))
        .collect();
    serde_json::to_string(&recorded).expect("keys serialise")
}

/// The emissions of a recorded batch with the documents `current` finds now.
fn replay(
    key: &str,
    recorded: &str,
    mut current: impl FnMut(&DocKey) -> Option<StoredDocument>,
) -> Result<Applied, StoreError> {
    let recorded: Recorded =
        serde_json::from_str(recorded).map_err(|e| StoreError::Fatal(format!("batch record {key}: {e}")))?;
    let emitted = recorded
        .into_iter()
        .filter_map(|(entity, id, change)| {
            current(&DocKey { entity, id }).map(|document| Emission { change, document })
        })
        .collect();
    Ok(Applied {
        emitted,
        replayed: true,
        ..Applied::default()
    })
}

/// The keys a recorded batch emitted, to load before [`replay`].
fn recorded_keys(key: &str, recorded: &str) -> Result<Vec<DocKey>, StoreError> {
    let recorded: Recorded =
        serde_json::from_str(recorded).map_err(|e| StoreError::Fatal(format!("batch record {key}: {e}")))?;
    Ok(recorded
        .into_iter()
        .map(|(entity, id, _)| DocKey { entity, id })
        .collect())
}

/// A document with the sequence number of its last write.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequenced {
    pub seq: i64,
    pub document: StoredDocument,
}

#[async_trait]
pub trait DocumentStore: Send + Sync {
    /// Applies one batch's changes atomically with a record of batch `key`.
    /// With `check_recorded`, a batch already recorded changes nothing and
    /// returns the current documents it emitted.
    async fn apply(&self, key: &str, check_recorded: bool, changes: &[Change]) -> Result<Applied, StoreError>;

    /// One document, if it has ever been written (deleted ones have no document).
    async fn get(&self, key: &DocKey) -> Result<Option<StoredDocument>, StoreError>;

    /// Documents written after sequence number `after`, in sequence order,
    /// at most `limit`; deletions have no document.
    async fn changed_since(&self, after: i64, limit: usize) -> Result<Vec<Sequenced>, StoreError>;

    /// How many documents (deletions included) `changed_since(after, ..)`
    /// would go through: what a snapshot or a re-hydration has ahead of it.
    async fn count_changed_since(&self, after: i64) -> Result<u64, StoreError>;
}

#[cfg(test)]
mod tests;
