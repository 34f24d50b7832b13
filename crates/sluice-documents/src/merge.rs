//! The order-independent merge: a document's state is a tree of the paths
//! its changes wrote, each remembering the version that wrote it, so a
//! change applied late lands exactly where version order would have put it.
//!
//! The result equals applying every change once in version order (RFC 7396
//! merge patches, deletes of the whole document), whatever the delivery
//! order and however many duplicates:
//!
//! * each path keeps its newest *replacement* (a scalar, an array, or a
//!   removal: `null` in a patch, or a delete at the root) and the newest
//!   version that *merged* an object patch into it;
//! * a path's value is its newest replacement, unless an object patch merged
//!   into it later: then it is an object of its children, counting only
//!   writes newer than that replacement (an older one was wiped by it);
//! * a write that is not newer than a replacement at or above its path is
//!   stale and kept nowhere; a replacement prunes the children it wipes.
//!
//! Storage: the tree holds each live value once plus one version per path
//! (about 10 bytes of JSON), and a tombstone (the version) for each removed
//! field until a newer write to a path above it replaces it. A deleted
//! document keeps only its root tombstone, which stops older changes from
//! bringing it back.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use crate::version::Version;

/// One path of a document and what was written there.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// The newest replacement of this path: its version and value (`null`
    /// for a removal).
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    replaced: Option<(Version, Value)>,
    /// The newest version that merged an object patch here (0: none).
    #[serde(rename = "m", default, skip_serializing_if = "is_zero")]
    merged: Version,
    #[serde(rename = "c", default, skip_serializing_if = "BTreeMap::is_empty")]
    children: BTreeMap<String, Node>,
}

fn is_zero(v: &Version) -> bool {
    *v == 0
}

/// What one change did to the state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Parts of the change that were kept (the state changed if any was).
    pub written_parts: u64,
    /// Parts of the change that lost to newer writes (a duplicate loses all of them).
    pub stale_parts: u64,
}

impl Node {
    /// Merges `patch` (an RFC 7396 merge patch of the whole document) at `version`.
    pub fn upsert(&mut self, version: Version, patch: &Map<String, Value>) -> WriteStats {
        let mut stats = WriteStats::default();
        self.merge_object(version, patch, &mut stats);
        stats
    }

    /// Deletes the whole document at `version`.
    pub fn delete(&mut self, version: Version) -> WriteStats {
        let mut stats = WriteStats::default();
        self.replace(version, Value::Null, &mut stats);
        stats
    }

    /// The document as version order makes it; `None` when it does not
    /// exist (never created, or deleted and not created again).
    pub fn document(&self) -> Option<Value> {
        if self.merged > self.replaced_version() {
            let fields = self
                .children
                .iter()
                .filter_map(|(key, child)| child.document().map(|v| (key.clone(), v)))
                .collect();
            return Some(Value::Object(fields));
        }
        self.replaced
            .as_ref()
            .map(|(_, value)| value)
            .filter(|v| !v.is_null())
            .cloned()
    }

    fn replaced_version(&self) -> Version {
        self.replaced.as_ref().map_or(0, |(v, _)| *v)
    }

    // Invariant: every write kept below a path is newer than the path's
    // replacement (older ones are refused or pruned), so a write that passes
    // a path's check needs no check against the paths above it.

    fn write(&mut self, version: Version, patch: &Value, stats: &mut WriteStats) {
        match patch {
            Value::Object(fields) => self.merge_object(version, fields, stats),
            other => self.replace(version, other.clone(), stats),
        }
    }

    fn merge_object(&mut self, version: Version, fields: &Map<String, Value>, stats: &mut WriteStats) {
        if version <= self.replaced_version() {
            stats.stale_parts += 1;
            return;
        }
        if version > self.merged {
            self.merged = version;
            stats.written_parts += 1;
        }
        for (key, value) in fields {
            self.children
                .entry(key.clone())
                .or_default()
                .write(version, value, stats);
        }
    }

    fn replace(&mut self, version: Version, value: Value, stats: &mut WriteStats) {
        if version <= self.replaced_version() {
            stats.stale_parts += 1;
            return;
        }
        self.replaced = Some((version, value));
        stats.written_parts += 1;
        if self.merged <= version {
            self.merged = 0;
        }
        self.prune(version);
    }

    /// Forgets every write below this path that a replacement at `floor` wipes.
    fn prune(&mut self, floor: Version) {
        self.children.retain(|_, child| child.newest() > floor);
        for child in self.children.values_mut() {
            if child.replaced_version() <= floor {
                child.replaced = None;
            }
            if child.merged <= floor {
                child.merged = 0;
            }
            child.prune(floor);
        }
    }

    /// The newest version written at or below this path.
    fn newest(&self) -> Version {
        let own = self.replaced_version().max(self.merged);
        self.children.values().map(Node::newest).fold(own, Version::max)
    }
}

#[cfg(test)]
mod tests;
