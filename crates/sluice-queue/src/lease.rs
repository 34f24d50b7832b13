//! Leases: named, expiring locks that the replicas of a pipeline share
//! through the queue's backend, for work that must run on one replica at a
//! time (scheduled compaction). With the embedded queue there is one
//! process, and the leases are in memory; with JetStream they are keys of a
//! KV bucket (see `jetstream::lease`).
//!
//! Invariants: a name has at most one holder at a time; a holder that stops
//! renewing (killed, partitioned) loses the lease once its time to live has
//! passed; renewing or releasing a lease that another holder took since
//! fails or does nothing, never takes it back.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;

use crate::QueueError;

/// Where leases are taken.
#[async_trait]
pub trait Leases: Send + Sync {
    /// Takes `name` if nobody holds it; `None` when someone does.
    async fn try_acquire(&self, name: &str) -> Result<Option<Box<dyn Lease>>, QueueError>;

    /// How long a lease lasts without renewal.
    fn time_to_live(&self) -> std::time::Duration;
}

/// A held lease.
#[async_trait]
pub trait Lease: Send + Sync {
    /// Extends the lease; an error means it was lost (expired and maybe
    /// taken by another holder).
    async fn renew(&mut self) -> Result<(), QueueError>;

    /// Gives the lease up, if it is still ours.
    async fn release(self: Box<Self>);
}

/// In-process leases, for one process (the embedded queue).
#[derive(Default)]
pub struct LocalLeases {
    held: Arc<Mutex<HashSet<String>>>,
}

#[async_trait]
impl Leases for LocalLeases {
    async fn try_acquire(&self, name: &str) -> Result<Option<Box<dyn Lease>>, QueueError> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if !held.insert(name.to_string()) {
            return Ok(None);
        }
        Ok(Some(Box::new(LocalLease {
            held: self.held.clone(),
            name: name.to_string(),
        })))
    }

    fn time_to_live(&self) -> std::time::Duration {
        std::time::Duration::MAX
    }
}

struct LocalLease {
    held: Arc<Mutex<HashSet<String>>>,
    name: String,
}

#[async_trait]
impl Lease for LocalLease {
    async fn renew(&mut self) -> Result<(), QueueError> {
        Ok(())
    }

    async fn release(self: Box<Self>) {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_local_lease_has_one_holder_until_released() {
        let leases = LocalLeases::default();
        let lease = leases.try_acquire("compaction/lake").await.unwrap().unwrap();
        assert!(leases.try_acquire("compaction/lake").await.unwrap().is_none());
        assert!(leases.try_acquire("compaction/other").await.unwrap().is_some());
        lease.release().await;
        assert!(leases.try_acquire("compaction/lake").await.unwrap().is_some());
    }
}
