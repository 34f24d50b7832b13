//! Checkpoints: small named values a source keeps about its place upstream
//! (a stream shard's last enqueued sequence number), shared by the
//! replicas through the queue's backend as leases are. With the embedded
//! queue they are rows of `checkpoints.sqlite3` in the data directory; with
//! JetStream, keys of the KV bucket `SLUICE_<PIPELINE>_CHECKPOINTS`, so a
//! replica taking over a shard's lease reads where the last holder stopped.
//!
//! Invariants: `save` returns once the value is durable; only the holder of
//! the lease a checkpoint belongs to writes it. Names are made of letters,
//! digits and `-_.=` (KV keys' alphabet).

use std::{path::Path, sync::Mutex};

use async_nats::jetstream::{self, kv};
use async_trait::async_trait;

use crate::QueueError;

/// Where checkpoints are kept.
#[async_trait]
pub trait Checkpoints: Send + Sync {
    /// The value saved under `name`, if any.
    async fn load(&self, name: &str) -> Result<Option<String>, QueueError>;

    /// Saves `value` under `name`, durably.
    async fn save(&self, name: &str, value: &str) -> Result<(), QueueError>;
}

/// Whether `name` can be a checkpoint's name.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '='))
}

fn check(name: &str) -> Result<(), QueueError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(QueueError::Storage(format!(
            "checkpoint name {name:?}: only letters, digits and -_.= are allowed"
        )))
    }
}

/// Checkpoints in a SQLite file (one process: the embedded queue).
pub struct LocalCheckpoints {
    conn: Mutex<rusqlite::Connection>,
}

impl LocalCheckpoints {
    /// Opens (or creates) `data_dir/checkpoints.sqlite3`.
    pub fn open(data_dir: &Path) -> Result<Self, QueueError> {
        let storage = |e: rusqlite::Error| QueueError::Storage(format!("checkpoints: {e}"));
        std::fs::create_dir_all(data_dir).map_err(|e| QueueError::Storage(format!("checkpoints: {e}")))?;
        let conn = rusqlite::Connection::open(data_dir.join("checkpoints.sqlite3")).map_err(storage)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(storage)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(storage)?;
        conn.execute(
            "CREATE TABLE IF NOT EXISTS checkpoints (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
            [],
        )
        .map_err(storage)?;
        Ok(LocalCheckpoints { conn: Mutex::new(conn) })
    }
}

#[async_trait]
impl Checkpoints for LocalCheckpoints {
    async fn load(&self, name: &str) -> Result<Option<String>, QueueError> {
        check(name)?;
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let mut statement = conn
            .prepare_cached("SELECT value FROM checkpoints WHERE name = ?1")
            .map_err(|e| QueueError::Storage(format!("checkpoints: {e}")))?;
        let mut rows = statement
            .query([name])
            .map_err(|e| QueueError::Storage(format!("checkpoints: {e}")))?;
        match rows
            .next()
            .map_err(|e| QueueError::Storage(format!("checkpoints: {e}")))?
        {
            Some(row) => row
                .get(0)
                .map(Some)
                .map_err(|e| QueueError::Storage(format!("checkpoints: {e}"))),
            None => Ok(None),
        }
    }

    async fn save(&self, name: &str, value: &str) -> Result<(), QueueError> {
        check(name)?;
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        conn.execute(
            "INSERT INTO checkpoints (name, value) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            [name, value],
        )
        .map(|_| ())
        .map_err(|e| QueueError::Storage(format!("checkpoints: {e}")))
    }
}

/// Checkpoints in a JetStream KV bucket, shared by the replicas.
pub struct JetStreamCheckpoints {
    store: kv::Store,
}

impl JetStreamCheckpoints {
    /// Opens (or creates) `bucket`: one entry per key, kept forever, in files.
    pub async fn open(js: &jetstream::Context, bucket: &str) -> Result<Self, QueueError> {
        let store = crate::jetstream::lease::open_bucket(js, bucket, std::time::Duration::ZERO)
            .await
            .map_err(|e| QueueError::Storage(format!("JetStream: checkpoint bucket {bucket}: {e}")))?;
        Ok(JetStreamCheckpoints { store })
    }
}

#[async_trait]
impl Checkpoints for JetStreamCheckpoints {
    async fn load(&self, name: &str) -> Result<Option<String>, QueueError> {
        check(name)?;
        let value = self
            .store
            .get(name)
            .await
            .map_err(|e| QueueError::Storage(format!("JetStream: checkpoint {name}: {e}")))?;
        value
            .map(|bytes| String::from_utf8(bytes.to_vec()))
            .transpose()
            .map_err(|e| QueueError::Storage(format!("JetStream: checkpoint {name}: {e}")))
    }

    async fn save(&self, name: &str, value: &str) -> Result<(), QueueError> {
        check(name)?;
        self.store
            .put(name, value.to_string().into())
            .await
            .map(|_| ())
            .map_err(|e| QueueError::Storage(format!("JetStream: checkpoint {name}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn round_trip(checkpoints: &dyn Checkpoints, prefix: &str) {
        let name = format!("{prefix}.shardId-000000000001");
        assert_eq!(checkpoints.load(&name).await.unwrap(), None);
        checkpoints.save(&name, "{\"sequence\":\"1\"}").await.unwrap();
        checkpoints.save(&name, "{\"sequence\":\"2\"}").await.unwrap();
        assert_eq!(
            checkpoints.load(&name).await.unwrap().as_deref(),
            Some("{\"sequence\":\"2\"}")
        );
        assert!(checkpoints.save("a b", "x").await.is_err(), "names are KV keys");
    }

    #[tokio::test]
    async fn local_checkpoints_survive_a_reopen() {
        let dir = sluice_testkit::tempdir().unwrap();
        round_trip(&LocalCheckpoints::open(dir.path()).unwrap(), "kinesis.src").await;
        let again = LocalCheckpoints::open(dir.path()).unwrap();
        assert_eq!(
            again.load("kinesis.src.shardId-000000000001").await.unwrap().as_deref(),
            Some("{\"sequence\":\"2\"}")
        );
    }

    #[tokio::test]
    async fn jetstream_checkpoints_are_shared() {
        let Some(url) = sluice_testkit::services::nats() else {
            return;
        };
        let client = async_nats::connect(url).await.unwrap();
        let js = jetstream::new(client);
        let bucket = format!("SLUICE_TEST_{}_CHECKPOINTS", std::process::id());
        let one = JetStreamCheckpoints::open(&js, &bucket).await.unwrap();
        round_trip(&one, "kinesis.src").await;
        let other = JetStreamCheckpoints::open(&js, &bucket).await.unwrap();
        assert_eq!(
            other.load("kinesis.src.shardId-000000000001").await.unwrap().as_deref(),
            Some("{\"sequence\":\"2\"}")
        );
        js.delete_stream(format!("KV_{bucket}")).await.unwrap();
    }
}
