//! Acknowledgement tickets: one per batch in flight. Each sink the batch
//! feeds holds a share; the batch is acknowledged on the queue only when
//! every share completed after its sink committed. A failed share makes the
//! queue deliver the batch again: as a spent attempt (`nack`), or, when
//! every failure was a backend that could not be reached, without one
//! (`release`).

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use sluice_core::{DeliveryId, telemetry::QueueTelemetry};
use sluice_queue::Queue;
use tokio::sync::{Notify, mpsc};

/// How long a failed batch waits before it is delivered again.
pub const RETRY_DELAY: Duration = Duration::from_secs(1);

/// Why a share failed; a batch spends an attempt if any share's failure
/// was its own.
#[derive(Debug, Clone)]
pub(super) struct Failure {
    error: String,
    counts: bool,
}

pub struct Ticket {
    pub key: String,
    /// Payload bytes of the batch (it counts against the queue's size until acked).
    pub bytes: usize,
    ids: Mutex<Vec<DeliveryId>>,
    remaining: AtomicUsize,
    error: Mutex<Option<Failure>>,
    done: mpsc::UnboundedSender<Arc<Ticket>>,
}

impl Ticket {
    pub fn new(
        key: String,
        bytes: usize,
        id: DeliveryId,
        shares: usize,
        done: mpsc::UnboundedSender<Arc<Ticket>>,
    ) -> Arc<Self> {
        Arc::new(Ticket {
            key,
            bytes,
            ids: Mutex::new(vec![id]),
            remaining: AtomicUsize::new(shares),
            error: Mutex::new(None),
            done,
        })
    }

    /// Adds another delivery of the same batch (a redelivery that arrived
    /// while the first was still being worked on).
    pub fn add_delivery(&self, id: DeliveryId) {
        let mut ids = self.ids.lock().expect("ticket lock");
        if !ids.contains(&id) {
            ids.push(id);
        }
    }

    pub fn ids(&self) -> Vec<DeliveryId> {
        self.ids.lock().expect("ticket lock").clone()
    }

    /// One share is committed.
    pub fn complete(self: &Arc<Self>) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _ = self.done.send(self.clone());
        }
    }

    /// One share failed: the batch will be delivered again, an attempt spent.
    pub fn fail(self: &Arc<Self>, error: String) {
        self.record(Failure { error, counts: true });
    }

    /// One share failed because its sink's backend could not be reached:
    /// the batch will be delivered again without spending an attempt.
    pub fn fail_unavailable(self: &Arc<Self>, error: String) {
        self.record(Failure { error, counts: false });
    }

    fn record(self: &Arc<Self>, failure: Failure) {
        {
            let mut slot = self.error.lock().expect("ticket lock");
            match slot.as_mut() {
                None => *slot = Some(failure),
                Some(first) => first.counts |= failure.counts,
            }
        }
        self.complete();
    }

    pub(super) fn failure(&self) -> Option<Failure> {
        self.error.lock().expect("ticket lock").clone()
    }
}

/// Batches being worked on, by key.
pub type InFlight = Arc<Mutex<HashMap<String, Arc<Ticket>>>>;

/// Deliveries received and not yet ticketed (waiting for their turn, in
/// their transforms, or for room in a sink's input): kept hidden too.
pub type Received = Arc<Mutex<HashSet<DeliveryId>>>;

/// Acknowledges (or returns) finished batches, many per queue call, and
/// wakes the consumer (`freed`) once they are out of flight.
pub async fn run_acker(
    queue: Arc<dyn Queue>,
    in_flight: InFlight,
    mut done: mpsc::UnboundedReceiver<Arc<Ticket>>,
    freed: Arc<Notify>,
) {
    while let Some(first) = done.recv().await {
        let mut finished = vec![first];
        while let Ok(t) = done.try_recv() {
            finished.push(t);
        }
        let mut acks = Vec::new();
        for ticket in &finished {
            match ticket.failure() {
                None => acks.extend(ticket.ids()),
                Some(failure) => {
                    for id in ticket.ids() {
                        let returned = if failure.counts {
                            queue.nack(id, failure.error.clone(), RETRY_DELAY).await
                        } else {
                            queue.release(id, RETRY_DELAY).await
                        };
                        if let Err(e) = returned {
                            tracing::warn!(error = %e, "returning a failed batch failed; it returns after its visibility timeout");
                        }
                    }
                }
            }
        }
        if !acks.is_empty() {
            let n = acks.len() as u64;
            tracing::debug!(batches = n, "acknowledging");
            if let Err(e) = queue.ack(acks).await {
                QueueTelemetry::failed("ack");
                tracing::warn!(error = %e, "ack failed; the batches return and are recognised as committed");
            } else {
                QueueTelemetry::acked(n);
            }
        }
        {
            let mut map = in_flight.lock().expect("in-flight lock");
            for ticket in finished {
                map.remove(&ticket.key);
            }
        }
        freed.notify_one();
    }
}

/// Keeps received and in-flight batches hidden from redelivery while they
/// are worked on, however long a sink makes them wait (an outage).
pub async fn run_lease_keeper(queue: Arc<dyn Queue>, in_flight: InFlight, received: Received, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let mut ids: Vec<DeliveryId> = in_flight
            .lock()
            .expect("in-flight lock")
            .values()
            .flat_map(|t| t.ids())
            .collect();
        ids.extend(received.lock().expect("received lock").iter().copied());
        ids.sort_unstable();
        ids.dedup();
        if !ids.is_empty()
            && let Err(e) = queue.extend(ids).await
        {
            QueueTelemetry::failed("extend");
            tracing::warn!(error = %e, "extending visibility failed");
        }
    }
}
