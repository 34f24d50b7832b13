//! What JetStream does not keep about a message's deliveries, kept beside
//! the queue in a KV bucket (`SLUICE_<PIPELINE>_DELIVERIES`) shared by the
//! replicas, one entry per message (its stream sequence), written only
//! once a message has been answered with a NAK or handed out as a suspect:
//!
//! * `failures`: NAKs, i.e. errors a transform or sink reported: the
//!   attempts that count toward `max_attempts`;
//! * `answered`: the delivery count of the last NAK. A redelivery whose
//!   previous delivery was neither acknowledged nor NAKed (the process died
//!   or hung past the ack wait) is a *suspect*;
//! * `crashes`: deliveries made while the suspect was the only batch in
//!   flight in its process that ended unanswered: the engine died with it
//!   alone, so it is the likely cause (counted against `max_crashes`);
//! * `last_error`: the last NAK's error, for the dead letters of whichever
//!   replica gives up on the batch.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Record {
    pub failures: u32,
    pub answered: u64,
    pub crashes: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// What a delivery of a message is, from its delivery count and record.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Deliver as usual (first delivery, or a retry after a NAK).
    Deliver,
    /// The previous delivery ended unanswered: run it alone.
    Suspect,
    /// Reported errors used up `max_attempts`.
    Exhausted,
    /// It was alone in flight `max_crashes` times when the engine died.
    CrashedEngine,
}

impl Record {
    pub fn verdict(&self, delivered: u64, max_attempts: u32, max_crashes: u32) -> Verdict {
        if self.crashes >= max_crashes {
            Verdict::CrashedEngine
        } else if self.failures >= max_attempts {
            Verdict::Exhausted
        } else if delivered > 1 && delivered - 1 > self.answered {
            Verdict::Suspect
        } else {
            Verdict::Deliver
        }
    }

    pub fn decode(bytes: &[u8]) -> Record {
        serde_json::from_slice(bytes).unwrap_or_default()
    }

    pub fn encode(&self) -> bytes::Bytes {
        bytes::Bytes::from(serde_json::to_vec(self).expect("a record serializes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redelivery_nobody_answered_is_a_suspect_and_a_nacked_one_is_not() {
        let fresh = Record::default();
        assert_eq!(fresh.verdict(1, 3, 2), Verdict::Deliver);
        assert_eq!(fresh.verdict(2, 3, 2), Verdict::Suspect, "died with it in flight");
        let nacked = Record {
            failures: 1,
            answered: 2,
            ..Record::default()
        };
        assert_eq!(nacked.verdict(3, 3, 2), Verdict::Deliver);
        assert_eq!(nacked.verdict(4, 3, 2), Verdict::Suspect);
        let spent = Record {
            failures: 3,
            answered: 3,
            ..Record::default()
        };
        assert_eq!(spent.verdict(4, 3, 2), Verdict::Exhausted);
        let crasher = Record {
            crashes: 2,
            ..Record::default()
        };
        assert_eq!(crasher.verdict(5, 3, 2), Verdict::CrashedEngine);
        assert_eq!(Record::decode(b"not json"), Record::default());
        assert_eq!(Record::decode(&crasher.encode()), crasher);
    }
}
