//! Acknowledgement tickets: one per batch in flight. Each sink the batch
//! feeds holds a share; the batch is acknowledged on the queue only when
//! every share completed after its sink committed. A failed share makes the
//! queue deliver the batch again.

use std::{
    collections::HashMap,
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

pub struct Ticket {
    pub key: String,
    /// Payload bytes of the batch (it counts against the queue's size until acked).
    pub bytes: usize,
    ids: Mutex<Vec<DeliveryId>>,
    remaining: AtomicUsize,
    error: Mutex<Option<String>>,
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

    /// One share failed: the batch will be delivered again.
    pub fn fail(self: &Arc<Self>, error: String) {
        self.error.lock().expect("ticket lock").get_or_insert(error);
        self.complete();
    }

    fn error(&self) -> Option<String> {
        self.error.lock().expect("ticket lock").clone()
    }
}

/// Batches being worked on, by key.
pub type InFlight = Arc<Mutex<HashMap<String, Arc<Ticket>>>>;

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
            match ticket.error() {
                None => acks.extend(ticket.ids()),
                Some(error) => {
                    for id in ticket.ids() {
                        if let Err(e) = queue.nack(id, error.clone(), RETRY_DELAY).await {
                            tracing::warn!(error = %e, "nack failed; the batch returns after its visibility timeout");
                        }
                    }
                }
            }
        }
        if !acks.is_empty() {
            let n = acks.len() as u64;
            if let Err(e) = queue.ack(acks).await {
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

/// Keeps in-flight batches hidden from redelivery while they are worked on.
pub async fn run_lease_keeper(queue: Arc<dyn Queue>, in_flight: InFlight, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let ids: Vec<DeliveryId> = in_flight
            .lock()
            .expect("in-flight lock")
            .values()
            .flat_map(|t| t.ids())
            .collect();
        if !ids.is_empty()
            && let Err(e) = queue.extend(ids).await
        {
            tracing::warn!(error = %e, "extending visibility failed");
        }
    }
}
