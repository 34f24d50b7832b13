//! A shard's checkpoint: the last sequence number enqueued, the end of the
//! batch on its way (if any), and whether the shard was read to its end.
//! Stored as JSON under `<kind>.<source>.<shard>`.

use serde::{Deserialize, Serialize};
use sluice_queue::checkpoint::Checkpoints;

use crate::sources::SourceError;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ShardCheckpoint {
    /// Records up to this sequence number are in the queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<String>,
    /// A batch ending at this sequence number may be in the queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_end: Option<String>,
    /// The shard is closed and every record of it is in the queue.
    #[serde(default)]
    pub finished: bool,
}

/// The checkpoint's (and lease's) name. Characters a KV key cannot hold
/// become `_`.
pub(crate) fn name(kind: &str, source: &str, shard: &str) -> String {
    format!("{kind}.{source}.{shard}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl ShardCheckpoint {
    pub async fn load(store: &dyn Checkpoints, name: &str) -> Result<ShardCheckpoint, SourceError> {
        match store.load(name).await {
            Ok(Some(text)) => serde_json::from_str(&text)
                .map_err(|e| SourceError::State(format!("checkpoint {name} is not one: {e}"))),
            Ok(None) => Ok(ShardCheckpoint::default()),
            Err(e) => Err(SourceError::State(format!("reading checkpoint {name}: {e}"))),
        }
    }

    pub async fn save(&self, store: &dyn Checkpoints, name: &str) -> Result<(), sluice_queue::QueueError> {
        let text = serde_json::to_string(self).expect("a checkpoint serialises");
        store.save(name, &text).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_kv_keys() {
        assert_eq!(
            name("kinesis", "cdc", "shardId-000000000002"),
            "kinesis.cdc.shardId-000000000002"
        );
        assert_eq!(
            name("dynamodb", "orders", "shardId-0001/x:y"),
            "dynamodb.orders.shardId-0001_x_y"
        );
    }
}
