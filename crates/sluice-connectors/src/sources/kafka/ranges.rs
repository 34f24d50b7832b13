//! The offset ranges of a partition's last batches, kept as a checkpoint
//! (`kafka.<source>.<topic>.<partition>`: SQLite locally, JetStream KV with
//! a JetStream queue, so every replica reads the same) and saved before
//! each batch is enqueued.
//!
//! A batch enqueued whose offset commit was lost (a crash, a failed commit,
//! a rebalance) is read again by the partition's next owner; finding its
//! range here, the owner forms exactly that batch again (same first and
//! last offset, so the same key, flagged `maybe_committed`): sinks find it
//! committed and its dead letters are the ones already stored, not a
//! second set. The last [`KEPT`] ranges are kept: commits lag behind the
//! enqueues by far fewer batches.

use std::collections::VecDeque;

use sluice_queue::checkpoint::valid_name;

/// Ranges kept per partition.
pub const KEPT: usize = 16;

/// The inclusive offset ranges of a partition's last batches, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchRanges(VecDeque<(i64, i64)>);

impl BatchRanges {
    /// Parses a saved value (`first-last` pairs separated by spaces); pairs
    /// that do not parse are left out.
    pub fn parse(text: &str) -> BatchRanges {
        BatchRanges(
            text.split_whitespace()
                .filter_map(|pair| {
                    let (first, last) = pair.split_once('-')?;
                    let (first, last) = (first.parse().ok()?, last.parse().ok()?);
                    (first <= last).then_some((first, last))
                })
                .collect(),
        )
    }

    /// The value to save.
    pub fn to_text(&self) -> String {
        self.0
            .iter()
            .map(|(first, last)| format!("{first}-{last}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The range a batch starting at `offset` must cover, if one was enqueued.
    pub fn covering(&self, offset: i64) -> Option<(i64, i64)> {
        self.0
            .iter()
            .rev()
            .find(|(first, last)| *first <= offset && offset <= *last)
            .copied()
    }

    /// The ranges starting at or after `committed`, the group's committed
    /// offset: those are batches whose commit may have been lost.
    pub fn since(mut self, committed: i64) -> BatchRanges {
        self.0.retain(|(first, _)| *first >= committed);
        self
    }

    /// Records a batch's range (once), dropping the oldest beyond [`KEPT`].
    pub fn push(&mut self, range: (i64, i64)) {
        if self.0.back() == Some(&range) {
            return;
        }
        self.0.push_back(range);
        while self.0.len() > KEPT {
            self.0.pop_front();
        }
    }
}

/// The checkpoint name of a partition's ranges (characters a checkpoint
/// name cannot hold become `_`).
pub fn checkpoint_name(source: &str, topic: &str, partition: i32) -> String {
    let name: String = format!("kafka.{source}.{topic}.{partition}")
        .chars()
        .map(|c| if valid_name(&c.to_string()) { c } else { '_' })
        .collect();
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_round_trip_cover_offsets_and_keep_the_last_ones() {
        let mut ranges = BatchRanges::parse("0-99 100-149 junk 7-3 150-199");
        assert_eq!(ranges.to_text(), "0-99 100-149 150-199");
        assert_eq!(ranges.covering(120), Some((100, 149)));
        assert_eq!(ranges.covering(200), None);
        ranges.push((150, 199));
        assert_eq!(
            ranges.to_text(),
            "0-99 100-149 150-199",
            "a batch saved again is kept once"
        );
        for i in 0..KEPT as i64 {
            ranges.push((200 + i * 10, 209 + i * 10));
        }
        assert_eq!(ranges.covering(50), None, "the oldest went");
        assert_eq!(BatchRanges::parse(&ranges.to_text()), ranges);
        let from = BatchRanges::parse("0-99 100-149 150-199").since(100);
        assert_eq!(
            from.to_text(),
            "100-149 150-199",
            "ranges before the committed offset were committed"
        );
    }

    #[test]
    fn names_are_valid_checkpoint_names() {
        assert_eq!(
            checkpoint_name("clicks", "web.events-v1", 2),
            "kafka.clicks.web.events-v1.2"
        );
        let odd = checkpoint_name("my source/é", "t", 0);
        assert_eq!(odd, "kafka.my_source__.t.0");
        assert!(valid_name(&odd));
    }
}
