//! How many batches the consumer asks the queue for at once.
//!
//! Received batches wait in memory until the consumer has run them through
//! the transforms and handed them to the sinks, so the payload bytes taken
//! per `receive` are what the consumer holds on top of its work. The count
//! follows the mean size of the batches seen so far: about
//! [`RECEIVE_BYTES`] per call (a file source's 4 MiB batches two at a
//! time, HTTP requests of 100 events sixteen at a time), at least one, at
//! most [`MAX_RECEIVE`]. Before any batch is seen it asks for one.

use sluice_core::Delivery;

/// Payload bytes one `receive` aims at.
pub const RECEIVE_BYTES: f64 = 8.0 * 1024.0 * 1024.0;
/// Batches one `receive` asks for at most.
pub const MAX_RECEIVE: usize = 16;

/// The running mean of batch sizes, and the count it gives.
#[derive(Debug, Default)]
pub struct ReceiveSize {
    mean_batch_bytes: Option<f64>,
}

impl ReceiveSize {
    /// Batches to ask for when `free` more may be in flight (`free` ≥ 1).
    pub fn count(&self, free: usize) -> usize {
        let by_bytes = match self.mean_batch_bytes {
            None => 1,
            Some(mean) => (RECEIVE_BYTES / mean.max(1.0)) as usize,
        };
        by_bytes.clamp(1, MAX_RECEIVE).min(free)
    }

    /// Counts the sizes of batches just received (an exponential mean, so a
    /// source whose batches change size is followed within a few calls).
    pub fn observe(&mut self, deliveries: &[Delivery]) {
        for d in deliveries {
            let bytes = d.payload.len() as f64;
            self.mean_batch_bytes = Some(match self.mean_batch_bytes {
                None => bytes,
                Some(mean) => mean * 0.75 + bytes * 0.25,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use sluice_core::{Delivery, DeliveryId};

    use super::*;

    fn delivery(bytes: usize) -> Delivery {
        Delivery {
            id: DeliveryId(1),
            key: "k".into(),
            source: "s".into(),
            payload: Bytes::from(vec![b'x'; bytes]),
            attempts: 1,
            maybe_committed: false,
            enqueued_at_ms: 0,
        }
    }

    #[test]
    fn large_batches_are_taken_two_at_a_time_and_small_ones_sixteen() {
        let mut size = ReceiveSize::default();
        assert_eq!(size.count(64), 1, "nothing seen yet: one");
        size.observe(&[delivery(4 * 1024 * 1024)]);
        assert_eq!(size.count(64), 2);
        assert_eq!(size.count(1), 1, "never more than may be in flight");

        let mut small = ReceiveSize::default();
        small.observe(&[delivery(40_000), delivery(40_000)]);
        assert_eq!(small.count(64), MAX_RECEIVE);
    }

    #[test]
    fn a_batch_larger_than_the_aim_still_gets_one_and_the_mean_follows_a_change() {
        let mut size = ReceiveSize::default();
        size.observe(&[delivery(64 * 1024 * 1024)]);
        assert_eq!(size.count(64), 1);
        for _ in 0..20 {
            size.observe(&[delivery(100_000)]);
        }
        assert_eq!(size.count(64), MAX_RECEIVE);
    }
}
