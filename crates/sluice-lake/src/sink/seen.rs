//! The write-time dedupe window: event ids the sink wrote recently, so a
//! producer's duplicate is dropped before it reaches the table.
//!
//! An id is kept as 88 bits of its XXH3-128 hash in a 16-byte entry: the
//! low 64 bits are the map's key, the top 24 are stored beside the flush
//! generation that wrote it (40 bits). At the default `dedupe_max_ids`
//! (10^6) the table has 2^21 slots: 36 MB.
//! * Two ids are one only when all 88 bits agree: a distinct event is
//!   dropped with a chance of about n^2 / 2^89 for n ids held (2^-49 for a
//!   million).
//! * An id whose low 64 bits match a held id's but whose top 24 do not is
//!   not a duplicate and is let through without being held (its slot is
//!   taken); a later copy of it is then left to compaction's dedupe.
//! * A flush seals the open generation while its commit runs in the
//!   background, and later ids go to a new open one. Ids of the sealed and
//!   the open generation are forgotten by `discard` (the sink reset: those
//!   batches come again, and their events must not be dropped as
//!   duplicates of themselves); ids of committed generations
//!   are forgotten once older than the window, or, oldest first, when more
//!   than `max_ids` are held.
//! * Generations count flushes and resets; they stop at 2^40 - 1 (at ten
//!   flushes a second, after 3 000 years).

use std::{
    collections::{HashMap, VecDeque, hash_map::Entry},
    hash::{BuildHasherDefault, Hasher},
    time::{Duration, Instant},
};

use twox_hash::XxHash3_128;

/// Bits of an entry's value that hold its generation; the rest hold hash bits.
const GENERATION_BITS: u32 = 40;
const LAST_GENERATION: u64 = (1 << GENERATION_BITS) - 1;

/// An entry's value: the top 24 bits of the id's hash above its generation.
#[derive(Clone, Copy)]
struct Held(u64);

impl Held {
    fn new(tag: u64, generation: u64) -> Self {
        Held((tag << GENERATION_BITS) | generation)
    }

    fn tag(self) -> u64 {
        self.0 >> GENERATION_BITS
    }

    fn generation(self) -> u64 {
        self.0 & LAST_GENERATION
    }
}

/// The map's hasher: the key already is a hash, so it serves as its own.
#[derive(Default)]
struct KeyIsHash(u64);

impl Hasher for KeyIsHash {
    /// Required by `Hasher`; a `u64` key only ever calls `write_u64`.
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
    /// Low 64 hash bits -> the top 24 and the generation.
    ids: HashMap<u64, Held, BuildHasherDefault<KeyIsHash>>,
    /// Generation the next inserts belong to; every older one is committed.
    open: u64,
    /// Committed generations, oldest first: (generation, committed at, ids).
    committed: VecDeque<(u64, Instant, usize)>,
    /// Ids inserted into the open generation.
    open_count: usize,
    /// The generation whose commit is running, and its ids.
    sealed: Option<(u64, usize)>,
}

impl SeenIds {
    pub fn new(window: Duration, max_ids: usize) -> Self {
        SeenIds {
            window,
            max_ids,
            ids: HashMap::default(),
            open: 0,
            committed: VecDeque::new(),
            open_count: 0,
            sealed: None,
        }
    }

    /// Records `id`; `false` when it was already seen (a duplicate).
    pub fn insert(&mut self, id: &str) -> bool {
        self.insert_hash(XxHash3_128::oneshot(id.as_bytes()))
    }

    fn insert_hash(&mut self, hash: u128) -> bool {
        let tag = (hash >> 64) as u64 >> GENERATION_BITS;
        match self.ids.entry(hash as u64) {
            Entry::Occupied(held) => held.get().tag() != tag,
            Entry::Vacant(slot) => {
                slot.insert(Held::new(tag, self.open));
                self.open_count += 1;
                true
            }
        }
    }

    /// The open generation was committed at `now`; later inserts start a
    /// new one.
    #[cfg(test)]
    fn commit(&mut self, now: Instant) {
        self.seal();
        self.sealed_committed(now);
    }

    /// The open generation's commit starts; later inserts start a new one.
    /// A generation sealed before must have been committed or discarded.
    pub fn seal(&mut self) {
        debug_assert!(self.sealed.is_none(), "one commit at a time");
        self.sealed = Some((self.open, std::mem::take(&mut self.open_count)));
        self.open = next_generation(self.open);
    }

    /// The sealed generation's commit landed at `now`.
    pub fn sealed_committed(&mut self, now: Instant) {
        if let Some((generation, count)) = self.sealed.take()
            && count > 0
        {
            self.committed.push_back((generation, now, count));
        }
        self.expire(now);
    }

    /// Forgets every uncommitted id (the sealed and the open generation).
    pub fn discard(&mut self) {
        let (first_uncommitted, sealed_count) = self.sealed.take().unwrap_or((self.open, 0));
        if sealed_count + self.open_count > 0 {
            self.ids.retain(|_, held| held.generation() < first_uncommitted);
        }
        self.open_count = 0;
        self.open = next_generation(self.open);
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
            self.ids.retain(|_, held| held.generation() > last);
        }
    }
}

fn next_generation(generation: u64) -> u64 {
    (generation + 1).min(LAST_GENERATION)
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
        seen.commit(t0);
        assert!(seen.insert("uncommitted"));
        seen.discard();
        assert!(
            seen.insert("uncommitted"),
            "a batch redelivered after a failed commit is not a duplicate"
        );
        assert!(!seen.insert("committed"));
    }

    #[test]
    fn a_sealed_generation_is_kept_once_committed_and_forgotten_if_discarded() {
        let mut seen = SeenIds::new(Duration::from_secs(60), 1000);
        let t0 = Instant::now();
        assert!(seen.insert("sealed"));
        seen.seal();
        assert!(!seen.insert("sealed"), "an id whose commit runs is a duplicate");
        assert!(seen.insert("open"));
        seen.sealed_committed(t0);
        seen.discard();
        assert!(!seen.insert("sealed"), "its commit landed: kept");
        assert!(seen.insert("open"), "the open generation was discarded");

        seen.seal();
        assert!(seen.insert("later"));
        seen.discard();
        assert!(
            seen.insert("open"),
            "a sealed generation whose commit failed is forgotten"
        );
        assert!(seen.insert("later"));
        assert!(!seen.insert("sealed"));
    }

    #[test]
    fn an_entry_is_16_bytes() {
        assert_eq!(std::mem::size_of::<(u64, Held)>(), 16);
    }

    #[test]
    fn ids_are_one_when_their_first_88_hash_bits_agree() {
        let mut seen = SeenIds::new(Duration::from_secs(60), 1000);
        let hash: u128 = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210;
        assert!(seen.insert_hash(hash));
        assert!(!seen.insert_hash(hash));
        assert!(
            !seen.insert_hash(hash ^ (1 << 64)),
            "bit 64 is not among the 88 bits held"
        );
        assert!(
            seen.insert_hash(hash ^ (1 << 127)),
            "the last bit held differs: a distinct id"
        );
        assert_eq!(seen.len(), 1, "the distinct id's slot was taken: it is not held");
        assert!(seen.insert_hash(hash ^ (1 << 127)), "so its repeat is let through too");
    }

    #[test]
    fn generations_stop_at_the_last_one_instead_of_overflowing_into_the_tag() {
        assert_eq!(next_generation(LAST_GENERATION - 1), LAST_GENERATION);
        assert_eq!(next_generation(LAST_GENERATION), LAST_GENERATION);
        let held = Held::new((1 << 24) - 1, LAST_GENERATION);
        assert_eq!((held.tag(), held.generation()), ((1 << 24) - 1, LAST_GENERATION));
    }

    #[test]
    fn ids_expire_after_the_window() {
        let mut seen = SeenIds::new(Duration::from_secs(60), 1000);
        let t0 = Instant::now();
        seen.insert("old");
        seen.commit(t0);
        seen.insert("new");
        seen.commit(t0 + Duration::from_secs(30));
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
            seen.commit(t0);
        }
        assert_eq!(seen.len(), 2, "a and b were forgotten to stay under 3 ids");
        assert!(seen.insert("a"));
        assert!(!seen.insert("d"));
    }
}
