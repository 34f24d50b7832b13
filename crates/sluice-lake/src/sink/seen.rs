//! The write-time dedupe window: event ids the sink wrote recently, so a
//! producer's duplicate is dropped before it reaches the table.
//!
//! Ids are kept as 128-bit XXH3 hashes (a collision, which would drop a
//! distinct event, is about as likely as 2^-64 for 2^32 ids). Each id is
//! tagged with the flush generation that wrote it:
//! * ids of the open and of the flushed-but-uncommitted generations are
//!   forgotten by `discard` (the sink reset: those batches come again, and
//!   their events must not be dropped as duplicates of themselves);
//! * ids of committed generations are forgotten once older than the window,
//!   or, oldest first, when more than `max_ids` are held.

use std::{
    collections::{HashMap, VecDeque, hash_map::Entry},
    hash::{BuildHasherDefault, Hash, Hasher},
    time::{Duration, Instant},
};

use twox_hash::XxHash3_128;

/// An id's XXH3-128 as two words: 24 bytes per entry with its generation,
/// where a `u128` key (16-byte aligned) makes 32.
#[derive(PartialEq, Eq, Clone, Copy)]
struct IdHash(u64, u64);

impl Hash for IdHash {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0);
    }
}

/// The map's hasher: the key already is a hash, so its first word serves.
#[derive(Default)]
struct FirstWord(u64);

impl Hasher for FirstWord {
    /// Required by `Hasher`; `IdHash` only ever calls `write_u64`.
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub struct SeenIds {
    window: Duration,
    max_ids: usize,
    ids: HashMap<IdHash, u64, BuildHasherDefault<FirstWord>>,
    /// Generation the next inserts belong to.
    open: u64,
    /// First generation not yet committed.
    first_uncommitted: u64,
    /// Committed generations, oldest first: (generation, committed at, ids).
    committed: VecDeque<(u64, Instant, usize)>,
    /// Ids inserted into the open generation.
    open_count: usize,
    /// Ids in flushed generations whose commit is pending.
    staged_count: usize,
}

impl SeenIds {
    pub fn new(window: Duration, max_ids: usize) -> Self {
        SeenIds {
            window,
            max_ids,
            ids: HashMap::default(),
            open: 0,
            first_uncommitted: 0,
            committed: VecDeque::new(),
            open_count: 0,
            staged_count: 0,
        }
    }

    /// Records `id`; `false` when it was already seen (a duplicate).
    pub fn insert(&mut self, id: &str) -> bool {
        let hash = XxHash3_128::oneshot(id.as_bytes());
        let key = IdHash(hash as u64, (hash >> 64) as u64);
        match self.ids.entry(key) {
            Entry::Occupied(_) => false,
            Entry::Vacant(slot) => {
                slot.insert(self.open);
                self.open_count += 1;
                true
            }
        }
    }

    /// The open generation was flushed; later inserts start a new one.
    pub fn stage(&mut self) {
        self.staged_count += std::mem::take(&mut self.open_count);
        self.open += 1;
    }

    /// Every staged generation was committed at `now`.
    pub fn commit(&mut self, now: Instant) {
        if self.staged_count > 0 {
            self.committed
                .push_back((self.open - 1, now, std::mem::take(&mut self.staged_count)));
        }
        self.first_uncommitted = self.open;
        self.expire(now);
    }

    /// Forgets every uncommitted id (open and staged generations).
    pub fn discard(&mut self) {
        let first = self.first_uncommitted;
        if self.open_count + self.staged_count > 0 {
            self.ids.retain(|_, generation| *generation < first);
        }
        self.open_count = 0;
        self.staged_count = 0;
        self.open += 1;
        self.first_uncommitted = self.open;
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.ids.len()
    }

    fn expire(&mut self, now: Instant) {
        let mut held: usize = self.ids.len();
        let mut last_expired = None;
        while let Some(&(generation, at, count)) = self.committed.front() {
            let too_old = now.duration_since(at) >= self.window;
            if !too_old && held <= self.max_ids {
                break;
            }
            held -= count;
            last_expired = Some(generation);
            self.committed.pop_front();
        }
        if let Some(last) = last_expired {
            self.ids.retain(|_, generation| *generation > last);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_repeats_within_and_across_committed_flushes() {
        let mut seen = SeenIds::new(Duration::from_secs(60), 1000);
        let t0 = Instant::now();
        assert!(seen.insert("a"));
        assert!(!seen.insert("a"));
        seen.stage();
        seen.commit(t0);
        assert!(
            !seen.insert("a"),
            "a committed id is still a duplicate inside the window"
        );
        assert!(seen.insert("b"));
    }

    #[test]
    fn a_discarded_window_forgets_its_ids_but_keeps_committed_ones() {
        let mut seen = SeenIds::new(Duration::from_secs(60), 1000);
        let t0 = Instant::now();
        assert!(seen.insert("committed"));
        seen.stage();
        seen.commit(t0);
        assert!(seen.insert("staged"));
        seen.stage();
        assert!(seen.insert("open"));
        seen.discard();
        assert!(
            seen.insert("staged"),
            "a batch redelivered after a failed commit is not a duplicate"
        );
        assert!(seen.insert("open"));
        assert!(!seen.insert("committed"));
    }

    #[test]
    fn ids_expire_after_the_window() {
        let mut seen = SeenIds::new(Duration::from_secs(60), 1000);
        let t0 = Instant::now();
        seen.insert("old");
        seen.stage();
        seen.commit(t0);
        seen.insert("new");
        seen.stage();
        seen.commit(t0 + Duration::from_secs(30));
        seen.stage();
        seen.commit(t0 + Duration::from_secs(61));
        assert_eq!(seen.len(), 1);
        assert!(seen.insert("old"), "expired after 60 s");
        assert!(!seen.insert("new"));
    }

    #[test]
    fn the_oldest_generations_go_first_when_over_the_cap() {
        let mut seen = SeenIds::new(Duration::from_secs(3600), 3);
        let t0 = Instant::now();
        for batch in [["a", "b"], ["c", "d"]] {
            for id in batch {
                seen.insert(id);
            }
            seen.stage();
            seen.commit(t0);
        }
        assert_eq!(seen.len(), 2, "a and b were forgotten to stay under 3 ids");
        assert!(seen.insert("a"));
        assert!(!seen.insert("d"));
    }
}
