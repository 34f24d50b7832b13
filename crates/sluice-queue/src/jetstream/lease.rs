//! Leases in a JetStream key-value bucket (`SLUICE_<PIPELINE>_LEASES`, one
//! history entry, entries expire after the time to live).
//!
//! Taking a lease is a create (it fails when the key exists); renewing is
//! an update that expects the revision we wrote last (it fails once the
//! entry expired or another holder wrote it), and it rewrites the entry, so
//! its age starts again; releasing deletes only our revision. A killed
//! holder's entry expires with the bucket's `max_age`.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use async_trait::async_trait;
use bytes::Bytes;

use super::storage;
use crate::{
    QueueError,
    lease::{Lease, Leases},
};

pub struct JetStreamLeases {
    store: kv::Store,
    holder: Bytes,
    ttl: Duration,
}

/// Opens (or creates) the KV bucket `bucket`, whose entries expire after
/// `max_age` (zero: never). Its stream is created here rather than by
/// `create_key_value`, which first reads the account's limits in a form
/// nats-server 2.9 does not answer; the configuration is the one a KV
/// bucket has (see ADR-8 of nats-architecture-and-design).
pub(crate) async fn open_bucket(js: &jetstream::Context, bucket: &str, max_age: Duration) -> Result<kv::Store, String> {
    js.get_or_create_stream(jetstream::stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_age,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: jetstream::stream::DiscardPolicy::New,
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    js.get_key_value(bucket).await.map_err(|e| e.to_string())
}

impl JetStreamLeases {
    /// Opens (or creates) `bucket`; `holder` names this replica in entries.
    pub async fn open(js: &jetstream::Context, bucket: &str, holder: &str, ttl: Duration) -> Result<Self, QueueError> {
        let store = open_bucket(js, bucket, ttl)
            .await
            .map_err(|e| storage(format!("lease bucket {bucket}: {e}")))?;
        Ok(JetStreamLeases {
            store,
            holder: Bytes::from(holder.to_string()),
            ttl,
        })
    }
}

#[async_trait]
impl Leases for JetStreamLeases {
    async fn try_acquire(&self, name: &str) -> Result<Option<Box<dyn Lease>>, QueueError> {
        match self.store.create(name, self.holder.clone()).await {
            Ok(revision) => Ok(Some(Box::new(JetStreamLease {
                store: self.store.clone(),
                name: name.to_string(),
                holder: self.holder.clone(),
                revision,
            }))),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(storage(format!("taking lease {name}: {e}"))),
        }
    }

    fn time_to_live(&self) -> Duration {
        self.ttl
    }
}

struct JetStreamLease {
    store: kv::Store,
    name: String,
    holder: Bytes,
    revision: u64,
}

#[async_trait]
impl Lease for JetStreamLease {
    async fn renew(&mut self) -> Result<(), QueueError> {
        self.revision = self
            .store
            .update(&self.name, self.holder.clone(), self.revision)
            .await
            .map_err(|e| storage(format!("lease {} was lost: {e}", self.name)))?;
        Ok(())
    }

    async fn release(self: Box<Self>) {
        if let Err(e) = self.store.delete_expect_revision(&self.name, Some(self.revision)).await {
            tracing::debug!(lease = %self.name, error = %e, "lease not released (it expires on its own)");
        }
    }
}
