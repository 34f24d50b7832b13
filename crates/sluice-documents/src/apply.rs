//! Applying one batch of changes to the documents it touches, the part
//! every store shares: the store loads the records, this merges, the store
//! writes back what changed in one transaction.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    change::{Change, DocKey, Op},
    merge::{Node, Version},
};

/// What a store keeps per document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub state: Node,
    /// The highest change version seen.
    pub version: Version,
    /// Real changes applied so far: grows by one with each emitted document.
    pub revision: u64,
    /// The time of the change with the highest version.
    pub updated_at: Option<String>,
    /// The current document; `None` when it does not exist (deleted, or
    /// only tombstones and stale parts so far).
    pub document: Option<Value>,
}

/// A document as emitted downstream and read back from a store.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDocument {
    pub key: DocKey,
    pub version: Version,
    pub revision: u64,
    pub updated_at: Option<String>,
    pub document: Option<Value>,
}

impl StoredDocument {
    pub fn new(key: DocKey, record: &Record) -> Self {
        StoredDocument {
            key,
            version: record.version,
            revision: record.revision,
            updated_at: record.updated_at.clone(),
            document: record.document.clone(),
        }
    }

    /// The outbound event: `{"entity", "id", "version", "revision",
    /// "updated_at", "op": "upsert"|"delete", "document"}`.
    pub fn to_event_json(&self) -> Value {
        serde_json::json!({
            "entity": self.key.entity,
            "id": self.key.id,
            "version": crate::version::to_json(self.version),
            "revision": self.revision,
            "updated_at": self.updated_at,
            "op": if self.document.is_some() { "upsert" } else { "delete" },
            "document": self.document,
        })
    }
}

/// Counts of one batch, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Changes that altered a document (each emitted it).
    pub applied: u64,
    /// Changes that altered nothing (duplicates, stale or redundant changes).
    pub noops: u64,
    /// Parts of changes that lost to newer writes.
    pub stale_parts: u64,
}

/// A document emitted by the change at `change` (an index into the batch's changes).
#[derive(Debug, Clone, PartialEq)]
pub struct Emission {
    pub change: usize,
    pub document: StoredDocument,
}

/// The result of applying a batch: the documents emitted, in change order,
/// and which records changed (their state, possibly without a new document).
#[derive(Debug, Default)]
pub struct BatchOutcome {
    pub emitted: Vec<Emission>,
    pub dirty: Vec<DocKey>,
    pub stats: BatchStats,
}

/// Applies `changes` to `records` (which holds every key they name; a
/// missing one starts empty).
pub fn apply_changes(records: &mut HashMap<DocKey, Record>, changes: &[Change]) -> BatchOutcome {
    let mut outcome = BatchOutcome::default();
    // The keys in `outcome.dirty`, so marking one costs O(1), not a scan.
    let mut marked = std::collections::HashSet::new();
    for (index, change) in changes.iter().enumerate() {
        let record = records.entry(change.key.clone()).or_default();
        let written = match &change.op {
            Op::Upsert(patch) => record.state.upsert(change.version, patch),
            Op::Delete => record.state.delete(change.version),
        };
        outcome.stats.stale_parts += written.stale_parts;
        let mut dirty = written.written_parts > 0;
        if change.version > record.version {
            record.version = change.version;
            record.updated_at = change.ts.clone();
            dirty = true;
        }
        let document = record.state.document();
        if document != record.document {
            record.document = document;
            record.revision += 1;
            outcome.stats.applied += 1;
            outcome.emitted.push(Emission {
                change: index,
                document: StoredDocument::new(change.key.clone(), record),
            });
        } else {
            outcome.stats.noops += 1;
        }
        if dirty && marked.insert(&change.key) {
            outcome.dirty.push(change.key.clone());
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn change(id: &str, version: Version, op: Op) -> Change {
        Change {
            key: DocKey {
                entity: "doctor".into(),
                id: id.into(),
            },
            version,
            ts: Some(format!("t{version}")),
            op,
        }
    }

    fn upsert(patch: Value) -> Op {
        Op::Upsert(patch.as_object().unwrap().clone())
    }

    #[test]
    fn real_changes_emit_whole_documents_and_no_ops_emit_nothing() {
        let mut records = HashMap::new();
        let changes = [
            change("a", 2, upsert(json!({"x": 1, "y": 2}))),
            change("a", 2, upsert(json!({"x": 1, "y": 2}))),
            change("a", 1, upsert(json!({"x": 0, "z": 3}))),
            change("a", 3, upsert(json!({"x": 1}))),
            change("b", 5, Op::Delete),
            change("b", 4, upsert(json!({"q": 1}))),
        ];
        let outcome = apply_changes(&mut records, &changes);
        let emitted: Vec<(usize, &str, Version, u64, Option<Value>)> = outcome
            .emitted
            .iter()
            .map(|e| {
                (
                    e.change,
                    e.document.key.id.as_str(),
                    e.document.version,
                    e.document.revision,
                    e.document.document.clone(),
                )
            })
            .collect();
        assert_eq!(
            emitted,
            vec![
                (0, "a", 2, 1, Some(json!({"x": 1, "y": 2}))),
                (2, "a", 2, 2, Some(json!({"x": 1, "y": 2, "z": 3}))),
            ],
            "the late change adds z but loses x; a same-value change and a delete of nothing emit nothing"
        );
        assert_eq!(
            outcome.stats,
            BatchStats {
                applied: 2,
                noops: 4,
                stale_parts: 2 + 1 + 1
            }
        );
        let ids: Vec<&str> = outcome.dirty.iter().map(|k| k.id.as_str()).collect();
        assert_eq!(
            ids,
            vec!["a", "b"],
            "b's tombstone must be stored although it emitted nothing"
        );
        assert_eq!(records[&changes[0].key].updated_at.as_deref(), Some("t3"));
        assert_eq!(
            StoredDocument::new(changes[4].key.clone(), &records[&changes[4].key]).to_event_json(),
            json!({"entity": "doctor", "id": "b", "version": 5, "revision": 0, "updated_at": "t5", "op": "delete", "document": null})
        );
    }
}
