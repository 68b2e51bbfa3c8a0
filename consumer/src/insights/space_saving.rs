//! Space-Saving (Metwally et al.): the most frequent keys of a stream in fixed memory.
//!
//! Keeps `capacity` counters. A key that is tracked is counted exactly from the moment it was
//! admitted; when an untracked key arrives and all counters are taken, it replaces the key with
//! the smallest count and inherits that count as its possible overestimate (`error`). Any key
//! whose true count exceeds `total / capacity` is guaranteed to be tracked, and every reported
//! count overestimates the true one by at most its `error` (itself at most `total / capacity`).
//!
//! Counters sit in an indexed 8-ary min-heap whose entries carry the counts and the keys' hash
//! tags (no pointer chasing while sifting). Each tracked key has a slot of exactly one cache
//! line holding the key's bytes (keys up to [`INLINE`] bytes: a UUID, any IP), and an
//! open-addressing index maps a seeded hash of the key to its slot. An eviction, which with
//! rarely repeating keys (IPs, fresh user ids) happens on nearly every insert, so touches the
//! new key's index line, a heap leaf, and the victim's index line and slot, and allocates
//! nothing. The victim's tag comes with its heap leaf, so its index line is read at once
//! rather than after its slot: with two sketches of 10,000 counters on a core shared with
//! librdkafka, the lines an update touches, and how many of them it waits for one after the
//! other, are what it costs.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// One tracked key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Counter {
    pub key: String,
    /// Upper bound of the true count.
    pub count: u64,
    /// How much `count` may overestimate: the true count is in `[count - error, count]`.
    pub error: u64,
    /// Largest value passed with the key, e.g. the latest login time (epoch seconds).
    pub last_seen: i64,
}

/// Children per heap node. An eviction with all counts tied (the common case for keys that
/// rarely repeat, like IPs) sifts the new key from the root to a leaf; with 8 children per node
/// that is 5 levels for 10,000 counters instead of 14, and a node's children sit in two
/// adjacent cache lines. Measured: 4 children were 11% slower, 16 were 9% slower.
const ARITY: usize = 8;

/// Leaves looked at for a minimum-count victim before evicting the root instead. Any counter
/// with the minimum count is a valid victim for Space-Saving, and one at a leaf needs no
/// sifting after its count goes up; the leaves are read in order, so the look is cheap.
const LEAF_PROBES: usize = 8;

/// Key bytes kept in the slot itself: what is left of a cache line after the other fields.
/// A UUID is 36 bytes and the longest IP text 39; longer keys are kept in `spilled`.
const INLINE: usize = 47;
/// [`Slot::len`] of a key kept in `spilled`.
const SPILLED: u8 = u8::MAX;

const _: () = assert!(
    std::mem::size_of::<Slot>() == 64,
    "a slot is one cache line"
);
const _: () = assert!(
    std::mem::size_of::<HeapEntry>() == 16,
    "four heap entries share a cache line"
);

/// A tracked key without its count and tag (both live in its [`HeapEntry`]): one cache line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Slot {
    error: u64,
    last_seen: i64,
    /// The key's length in `inline`, or [`SPILLED`].
    len: u8,
    inline: [u8; INLINE],
}

/// Where a key's slot is: open addressing with linear probing from `tag & mask`. An entry
/// carries the tag, so looking up an untracked key reads no slot. A removal shifts the rest
/// of its run back instead of leaving a tombstone, so constant eviction never lengthens probes
/// and never needs a rehash. Holds one entry per slot; [`Index::make_room`] keeps it at most
/// 3/8 full as slots are added ([`MAX_LOAD`]).
#[derive(Clone, Default)]
struct Index {
    /// A power of two in length, or empty.
    entries: Vec<Entry>,
}

/// The most of the index that entries may fill, as (numerator, denominator). With keys that
/// rarely repeat, nearly every update removes an entry and adds one, and each walks the run of
/// entries it lands in: a loop as long as the keys are random, whose exit mispredicts. At 3/4
/// the index of 10,000 counters was 61% full; at 3/8 it is 31% full and its runs are short.
/// `cargo bench -p fetch-consumer --bench processing -- space_saving` (both sketches over the
/// stream's user ids and IPs), alternating three runs each: 4.20-4.73 M events/s at 3/4,
/// 5.05-5.74 M at 3/8, for 128 KB more per 10,000 counters.
const MAX_LOAD: (usize, usize) = (3, 8);

#[derive(Clone, Copy)]
struct Entry {
    tag: u32,
    /// [`Entry::EMPTY`]'s slot for a free entry.
    slot: u32,
}

impl Entry {
    const EMPTY: Entry = Entry {
        tag: 0,
        slot: u32::MAX,
    };
}

impl Index {
    fn mask(&self) -> usize {
        self.entries.len() - 1
    }

    /// The slot whose tag is `tag` and for which `is_key` holds.
    fn find(&self, tag: u32, is_key: impl Fn(u32) -> bool) -> Option<u32> {
        if self.entries.is_empty() {
            return None;
        }
        let mask = self.mask();
        let mut at = tag as usize & mask;
        loop {
            let e = self.entries[at];
            if e.slot == Entry::EMPTY.slot {
                return None;
            }
            if e.tag == tag && is_key(e.slot) {
                return Some(e.slot);
            }
            at = (at + 1) & mask;
        }
    }

    /// Grows the table, if need be, to hold `slots` entries at most [`MAX_LOAD`] full.
    fn make_room(&mut self, slots: usize) {
        let (num, den) = MAX_LOAD;
        if slots * den > self.entries.len() * num {
            self.grow();
        }
    }

    /// Adds `slot`'s entry; there must be room ([`Index::make_room`]).
    fn insert(&mut self, tag: u32, slot: u32) {
        let mask = self.mask();
        let mut at = tag as usize & mask;
        while self.entries[at].slot != Entry::EMPTY.slot {
            at = (at + 1) & mask;
        }
        self.entries[at] = Entry { tag, slot };
    }

    fn grow(&mut self) {
        let size = (self.entries.len() * 2).max(16);
        let old = std::mem::replace(&mut self.entries, vec![Entry::EMPTY; size]);
        for e in old.into_iter().filter(|e| e.slot != Entry::EMPTY.slot) {
            self.insert(e.tag, e.slot);
        }
    }

    /// Removes `slot`'s entry, found from its `tag`. Every slot has one (the consistency and
    /// property tests hold the index to it); should one be missing, tests fail here, and a
    /// release build leaves the index as it is rather than take the insights thread down.
    fn remove(&mut self, tag: u32, slot: u32) {
        if self.entries.is_empty() {
            debug_assert!(false, "removing slot {slot} from an empty index");
            return;
        }
        let mask = self.mask();
        let mut hole = tag as usize & mask;
        while self.entries[hole].slot != slot {
            if self.entries[hole].slot == Entry::EMPTY.slot {
                debug_assert!(false, "slot {slot} has no index entry");
                return;
            }
            hole = (hole + 1) & mask;
        }
        // Move back each later entry of the run that may sit at the hole: one whose home is
        // not between the hole and where it sits.
        let mut at = hole;
        loop {
            at = (at + 1) & mask;
            let e = self.entries[at];
            if e.slot == Entry::EMPTY.slot {
                break;
            }
            let home = e.tag as usize & mask;
            if at.wrapping_sub(home) & mask >= at.wrapping_sub(hole) & mask {
                self.entries[hole] = e;
                hole = at;
            }
        }
        self.entries[hole] = Entry::EMPTY;
    }
}

/// A counter's place in the heap: its count, its slot, and its key's tag (half of the key's
/// seeded hash, from which its [`Index`] entry is found), in the 16 bytes the first two took
/// alone with their padding.
#[derive(Clone, Copy)]
struct HeapEntry {
    count: u64,
    slot: u32,
    tag: u32,
}

/// A top-k sketch.
#[derive(Clone, Serialize, Deserialize)]
#[serde(from = "Snapshot", into = "Snapshot")]
pub struct SpaceSaving {
    capacity: usize,
    total: u64,
    slots: Vec<Slot>,
    /// Keys too long for their slot, by slot.
    spilled: HashMap<u32, Box<str>>,
    /// Ordered as a min-heap on count.
    heap: Vec<HeapEntry>,
    /// `position[slot]` is where that slot's entry sits in `heap`.
    position: Vec<u32>,
    index: Index,
    /// Per-process hash key: keys come from the input, and a fixed one would let crafted keys
    /// pile up in one run of the index on purpose.
    seed: u64,
    /// Where the next look for a minimum-count leaf starts (see [`LEAF_PROBES`]).
    leaf_cursor: usize,
}

impl std::fmt::Debug for SpaceSaving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpaceSaving")
            .field("capacity", &self.capacity)
            .field("total", &self.total)
            .field("tracked", &self.slots.len())
            .finish()
    }
}

/// The serialized form: counters and totals; the heap and index are rebuilt on load.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    capacity: usize,
    total: u64,
    counters: Vec<Counter>,
}

impl From<SpaceSaving> for Snapshot {
    fn from(s: SpaceSaving) -> Self {
        Snapshot {
            capacity: s.capacity,
            total: s.total,
            counters: s.counters(),
        }
    }
}

impl From<Snapshot> for SpaceSaving {
    fn from(s: Snapshot) -> Self {
        let mut out = SpaceSaving::new(s.capacity.max(s.counters.len()).max(1));
        out.total = s.total;
        for c in s.counters {
            out.push(c);
        }
        out
    }
}

impl SpaceSaving {
    /// A sketch tracking at most `capacity` keys (at least 1).
    pub fn new(capacity: usize) -> Self {
        // Slot numbers are u32, with u32::MAX marking a free index entry.
        let capacity = capacity.clamp(1, u32::MAX as usize - 1);
        let seed = {
            use std::hash::{BuildHasher, RandomState};
            RandomState::new().hash_one(0u8)
        };
        SpaceSaving {
            capacity,
            total: 0,
            slots: Vec::new(),
            spilled: HashMap::new(),
            heap: Vec::new(),
            position: Vec::new(),
            index: Index::default(),
            seed,
            leaf_cursor: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Number of observations recorded, tracked or not.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The bound on any count's overestimate: `total / capacity`.
    pub fn max_error(&self) -> u64 {
        self.total / self.capacity as u64
    }

    fn tag(&self, key: &str) -> u32 {
        (xxhash_rust::xxh3::xxh3_64_with_seed(key.as_bytes(), self.seed) >> 32) as u32
    }

    fn key(&self, slot: u32) -> &str {
        let s = &self.slots[slot as usize];
        if s.len == SPILLED {
            self.spilled.get(&slot).map_or("", |k| k)
        } else {
            // The bytes were copied whole from a `&str`, so they are UTF-8.
            std::str::from_utf8(&s.inline[..usize::from(s.len)]).unwrap_or_default()
        }
    }

    fn is_key(&self, slot: u32, key: &str) -> bool {
        let s = &self.slots[slot as usize];
        if s.len == SPILLED {
            self.spilled.get(&slot).is_some_and(|k| **k == *key)
        } else {
            s.inline[..usize::from(s.len)] == *key.as_bytes()
        }
    }

    /// Stores `key` in `slot`, replacing its key.
    fn set_key(&mut self, slot: u32, key: &str) {
        let s = &mut self.slots[slot as usize];
        if s.len == SPILLED {
            self.spilled.remove(&slot);
        }
        if key.len() <= INLINE {
            s.inline[..key.len()].copy_from_slice(key.as_bytes());
            s.len = key.len() as u8;
        } else {
            s.len = SPILLED;
            self.spilled.insert(slot, key.into());
        }
    }

    /// Records one occurrence of `key`, seen at `at`.
    #[inline]
    pub fn insert(&mut self, key: &str, at: i64) {
        let tag = self.tag(key);
        self.total += 1;
        if let Some(slot) = self.index.find(tag, |slot| self.is_key(slot, key)) {
            let s = &mut self.slots[slot as usize];
            s.last_seen = s.last_seen.max(at);
            let at_heap = self.position[slot as usize] as usize;
            self.heap[at_heap].count += 1;
            self.sift_down(at_heap);
        } else if self.slots.len() < self.capacity {
            self.push(Counter {
                key: key.to_owned(),
                count: 1,
                error: 0,
                last_seen: at,
            });
        } else {
            // Evict a minimum: its slot takes the new key in place.
            let floor = self.heap[0].count;
            let at_heap = self.minimum_leaf(floor).unwrap_or(0);
            let victim = self.heap[at_heap];
            self.index.remove(victim.tag, victim.slot);
            self.set_key(victim.slot, key);
            let s = &mut self.slots[victim.slot as usize];
            s.error = floor;
            s.last_seen = at;
            self.index.insert(tag, victim.slot);
            self.heap[at_heap] = HeapEntry {
                count: floor + 1,
                slot: victim.slot,
                tag,
            };
            self.sift_down(at_heap);
        }
    }

    /// A leaf holding the minimum count `floor`, looking at up to [`LEAF_PROBES`] leaves from
    /// where the last look stopped. When keys rarely repeat (IPs), most counters tie at the
    /// minimum and this finds one nearly every time; the root's sift to a leaf is then saved.
    fn minimum_leaf(&mut self, floor: u64) -> Option<usize> {
        let len = self.heap.len();
        // Entries past the last one's parent have no children.
        let first_leaf = if len > 1 { (len - 2) / ARITY + 1 } else { 0 };
        for _ in 0..LEAF_PROBES.min(len - first_leaf) {
            if self.leaf_cursor < first_leaf || self.leaf_cursor >= len {
                self.leaf_cursor = first_leaf;
            }
            let at = self.leaf_cursor;
            self.leaf_cursor += 1;
            if self.heap[at].count == floor {
                return Some(at);
            }
        }
        None
    }

    fn push(&mut self, counter: Counter) {
        let slot = self.slots.len() as u32;
        let tag = self.tag(&counter.key);
        self.slots.push(Slot {
            error: counter.error,
            last_seen: counter.last_seen,
            len: 0,
            inline: [0; INLINE],
        });
        self.set_key(slot, &counter.key);
        self.index.make_room(self.slots.len());
        self.index.insert(tag, slot);
        self.heap.push(HeapEntry {
            count: counter.count,
            slot,
            tag,
        });
        self.position.push(slot);
        self.sift_up(self.heap.len() - 1);
    }

    /// Every tracked counter, in no particular order.
    fn counters(&self) -> Vec<Counter> {
        self.heap
            .iter()
            .map(|&HeapEntry { count, slot, .. }| {
                let s = &self.slots[slot as usize];
                Counter {
                    key: self.key(slot).to_owned(),
                    count,
                    error: s.error,
                    last_seen: s.last_seen,
                }
            })
            .collect()
    }

    /// The `n` keys with the highest counts, highest first (ties by key).
    pub fn top(&self, n: usize) -> Vec<Counter> {
        let mut all = self.counters();
        all.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        all.truncate(n);
        all
    }

    /// The same sketch cut to its `keep` highest counters (at least 1), with `keep` as its
    /// capacity. Every key dropped counted at most the smallest count kept, which is exactly
    /// the bound a full sketch gives for untracked keys, so the guarantees hold; only the
    /// error bound grows. Used to fit a published snapshot within the broker's record limit.
    pub fn truncated(&self, keep: usize) -> SpaceSaving {
        let keep = keep.max(1);
        if keep >= self.slots.len() && keep >= self.capacity {
            return self.clone();
        }
        SpaceSaving::from(Snapshot {
            capacity: keep.min(self.capacity),
            total: self.total,
            counters: self.top(keep),
        })
    }

    /// The smallest tracked count when every counter is taken (0 while there is room).
    fn floor(&self) -> u64 {
        if self.slots.len() < self.capacity {
            0
        } else {
            self.heap.first().map_or(0, |e| e.count)
        }
    }

    /// Folds `other` in (Agarwal et al., "Mergeable Summaries"): a key missing from one side is
    /// credited with that side's minimum count as possible error, then the largest `capacity`
    /// counters are kept. The result keeps the guarantees for the union of both streams.
    pub fn merge(&mut self, other: &SpaceSaving) {
        // Two at once is the many-at-once rule for two.
        *self = SpaceSaving::merge_all(self.capacity, [&*self, other]);
    }

    /// Merges many sketches at once into one of `capacity` counters: the same rule as
    /// [`Self::merge`] (a key missing from a sketch is credited with that sketch's minimum as
    /// possible error), cut to size once at the end instead of after every pair, which is
    /// both faster and tighter when a pipeline has many replicas.
    pub fn merge_all<'a>(
        capacity: usize,
        parts: impl IntoIterator<Item = &'a SpaceSaving>,
    ) -> Self {
        // Count and error are each "sum over sketches holding the key of its value, plus the
        // floors of the others": kept as (sum of value - floor) plus the sum of all floors.
        let mut floors = 0u64;
        let mut total = 0u64;
        let mut merged: HashMap<&'a str, (u64, u64, u64, i64)> = HashMap::new();
        for part in parts {
            let floor = part.floor();
            floors += floor;
            total += part.total;
            for &HeapEntry { count, slot, .. } in &part.heap {
                let s = &part.slots[slot as usize];
                let e = merged.entry(part.key(slot)).or_insert((0, 0, 0, i64::MIN));
                // Counts are at least the floor; errors may be below it.
                e.0 += count - floor.min(count);
                e.1 += s.error;
                e.2 += floor;
                e.3 = e.3.max(s.last_seen);
            }
        }
        let mut counters: Vec<Counter> = merged
            .into_iter()
            .map(
                |(key, (count_over, error, floors_held, last_seen))| Counter {
                    key: key.to_owned(),
                    count: count_over + floors,
                    // error + the floors of the sketches that do not hold the key.
                    error: error + (floors - floors_held),
                    last_seen,
                },
            )
            .collect();
        counters.sort_unstable_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        counters.truncate(capacity.max(1));
        SpaceSaving::from(Snapshot {
            capacity: capacity.max(1),
            total,
            counters,
        })
    }

    /// Puts `entry` at `at` and records where its slot now sits.
    fn place(&mut self, at: usize, entry: HeapEntry) {
        self.heap[at] = entry;
        self.position[entry.slot as usize] = at as u32;
    }

    // Both sifts move a hole rather than swapping at every level: one write per level.

    fn sift_up(&mut self, mut at: usize) {
        let entry = self.heap[at];
        while at > 0 {
            let parent = (at - 1) / ARITY;
            if entry.count >= self.heap[parent].count {
                break;
            }
            self.place(at, self.heap[parent]);
            at = parent;
        }
        self.place(at, entry);
    }

    fn sift_down(&mut self, mut at: usize) {
        let entry = self.heap[at];
        let len = self.heap.len();
        loop {
            let first = ARITY * at + 1;
            if first >= len {
                break;
            }
            let last = (first + ARITY).min(len);
            let mut smallest = first;
            for child in first + 1..last {
                if self.heap[child].count < self.heap[smallest].count {
                    smallest = child;
                }
            }
            if self.heap[smallest].count >= entry.count {
                break;
            }
            self.place(at, self.heap[smallest]);
            at = smallest;
        }
        self.place(at, entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_while_under_capacity() {
        let mut s = SpaceSaving::new(10);
        for (key, n) in [("a", 5), ("b", 3), ("c", 1)] {
            for t in 0..n {
                s.insert(key, t);
            }
        }
        let top = s.top(2);
        assert_eq!(top[0].key, "a");
        assert_eq!(top[0].count, 5);
        assert_eq!(top[0].error, 0);
        assert_eq!(top[0].last_seen, 4);
        assert_eq!(top[1].key, "b");
        assert_eq!(s.total(), 9);
    }

    #[test]
    fn heavy_hitters_survive_a_long_tail() {
        let mut s = SpaceSaving::new(50);
        for i in 0..100_000u64 {
            // Every 10th event is "hot"; the rest are all distinct.
            if i % 10 == 0 {
                s.insert("hot", i as i64);
            } else {
                s.insert(&format!("tail-{i}"), i as i64);
            }
        }
        let top = s.top(1);
        assert_eq!(top[0].key, "hot");
        assert!(top[0].count >= 10_000);
        assert!(top[0].count - top[0].error <= 10_000);
        assert!(top[0].error <= s.max_error());
        assert_eq!(s.slots.len(), 50, "memory stays bounded");
    }

    #[test]
    fn merge_keeps_guarantees() {
        let mut a = SpaceSaving::new(20);
        let mut b = SpaceSaving::new(20);
        for i in 0..10_000u64 {
            a.insert(if i % 4 == 0 { "noise-a" } else { "x" }, 1);
            b.insert(&format!("b-{}", i % 500), 2);
            if i % 5 == 0 {
                b.insert("x", 3);
            }
        }
        a.merge(&b);
        let top = a.top(1);
        assert_eq!(top[0].key, "x");
        assert!(top[0].count >= 7_500 + 2_000);
        assert_eq!(top[0].last_seen, 3);
        assert_eq!(a.total(), 10_000 + 10_000 + 2_000);
        assert!(a.slots.len() <= 20);
    }

    #[test]
    fn heap_and_index_stay_consistent() {
        let mut s = SpaceSaving::new(37);
        // A skewed stream with many evictions: small keys repeat, large ones rarely do.
        let mut x = 12345u64;
        for _ in 0..20_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let key = (x >> 33) % ((x >> 20) % 200 + 1);
            s.insert(&key.to_string(), 0);
        }
        for (at, &HeapEntry { count, slot, tag }) in s.heap.iter().enumerate() {
            assert_eq!(s.position[slot as usize] as usize, at);
            if at > 0 {
                assert!(
                    s.heap[(at - 1) / ARITY].count <= count,
                    "heap order at {at}"
                );
            }
            let key = s.key(slot);
            assert_eq!(tag, s.tag(key), "the entry carries its key's tag");
            assert_eq!(s.index.find(tag, |i| s.is_key(i, key)), Some(slot));
        }
        assert_eq!(s.heap.iter().map(|e| e.count).sum::<u64>(), s.total());
        let entries = s
            .index
            .entries
            .iter()
            .filter(|e| e.slot != Entry::EMPTY.slot);
        assert_eq!(entries.count(), s.slots.len(), "one index entry per slot");
    }

    proptest::proptest! {
        /// The Space-Saving rules on any stream, with keys short and long: each key has one
        /// counter, counts add up to the total, every count brackets the true one, and every
        /// key above `total / capacity` is tracked.
        #[test]
        fn every_counter_brackets_its_true_count(
            stream in proptest::collection::vec(0u16..400, 0..4_000),
            capacity in 1usize..60,
        ) {
            let key = |k: u16| if k.is_multiple_of(3) { format!("{k:0>50}") } else { k.to_string() };
            let mut s = SpaceSaving::new(capacity);
            let mut truth: HashMap<String, u64> = HashMap::new();
            for k in &stream {
                s.insert(&key(*k), 0);
                *truth.entry(key(*k)).or_default() += 1;
            }
            let counters = s.top(capacity);
            let distinct: std::collections::HashSet<&str> =
                counters.iter().map(|c| c.key.as_str()).collect();
            proptest::prop_assert_eq!(distinct.len(), counters.len());
            proptest::prop_assert_eq!(counters.iter().map(|c| c.count).sum::<u64>(), s.total());
            for c in &counters {
                let t = truth[&c.key];
                proptest::prop_assert!(c.count >= t && c.count - c.error <= t, "{:?} true {}", c, t);
            }
            for (k, n) in &truth {
                if *n > s.max_error() {
                    proptest::prop_assert!(distinct.contains(k.as_str()), "{} ({}) lost", k, n);
                }
            }
        }
    }

    #[test]
    fn keys_too_long_for_a_slot_are_tracked_and_evicted_like_the_others() {
        let long = |i: u32| format!("{i:0>60}");
        let mut s = SpaceSaving::new(4);
        for i in 0..1_000u32 {
            // Long and short keys take turns, so slots change between the two forms.
            let key = if i % 2 == 0 {
                long(i % 14)
            } else {
                (i % 6).to_string()
            };
            s.insert(&key, i64::from(i));
        }
        s.insert(&long(0), 5_000);
        s.insert(&long(0), 5_001);
        let top = s.top(4);
        assert_eq!(top.iter().map(|c| c.count).sum::<u64>(), s.total());
        assert!(top.iter().any(|c| c.key == long(0) && c.last_seen == 5_001));
        let spilled = top.iter().filter(|c| c.key.len() > INLINE).count();
        assert_eq!(
            s.spilled.len(),
            spilled,
            "a slot given a short key drops its long one"
        );
    }

    #[test]
    fn keys_with_the_same_tag_keep_separate_counters() {
        let mut s = SpaceSaving::new(10);
        // 32-bit tags: a pair sharing one turns up after ~82,000 keys on average; among a
        // million there are over a hundred such pairs.
        let mut seen = HashMap::new();
        let (a, b) = (0..1_000_000u32)
            .find_map(|i| {
                let key = i.to_string();
                seen.insert(s.tag(&key), key.clone())
                    .map(|other| (other, key))
            })
            .expect("a pair of keys with the same tag");
        for _ in 0..3 {
            s.insert(&a, 1);
        }
        s.insert(&b, 2);
        let top = s.top(2);
        assert_eq!((top[0].key.as_str(), top[0].count), (a.as_str(), 3));
        assert_eq!((top[1].key.as_str(), top[1].count), (b.as_str(), 1));
    }

    #[test]
    fn serde_round_trip_rebuilds_the_heap() {
        let mut s = SpaceSaving::new(3);
        for k in ["a", "b", "a", "c", "d", "a"] {
            s.insert(k, 0);
        }
        let json = serde_json::to_string(&s).expect("serialize");
        let mut back: SpaceSaving = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back.top(3), s.top(3));
        back.insert("e", 0);
        assert_eq!(back.top(1)[0].key, "a");
    }

    #[test]
    fn truncating_keeps_the_top_and_bounds_dropped_keys_by_the_smallest_count_kept() {
        let mut s = SpaceSaving::new(100);
        for (key, times) in [("a", 9), ("b", 7), ("c", 5), ("d", 3), ("e", 1)] {
            for _ in 0..times {
                s.insert(key, 0);
            }
        }
        let cut = s.truncated(2);
        assert_eq!(cut.capacity(), 2);
        assert_eq!(cut.total(), s.total());
        assert_eq!(cut.top(5), s.top(2));
        // A key dropped ("c", 5 logins) comes back with the floor (7) as its possible error.
        let mut merged = cut.clone();
        let mut more = SpaceSaving::new(2);
        more.insert("c", 0);
        merged.merge(&more);
        let c = merged.top(3).into_iter().find(|c| c.key == "c");
        assert!(
            c.as_ref()
                .is_none_or(|c| c.count - c.error <= 6 && c.count >= 6),
            "{c:?}"
        );
    }

    #[test]
    fn merging_many_at_once_keeps_the_guarantees_of_merging_pairs() {
        let mut parts = Vec::new();
        let mut truth: HashMap<String, u64> = HashMap::new();
        let mut x = 7u64;
        for _ in 0..6 {
            let mut s = SpaceSaving::new(20);
            for _ in 0..3_000 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let key = ((x >> 33) % ((x >> 20) % 300 + 1)).to_string();
                s.insert(&key, (x % 1000) as i64);
                *truth.entry(key).or_default() += 1;
            }
            parts.push(s);
        }
        let all = SpaceSaving::merge_all(20, &parts);
        let mut pairwise = parts[0].clone();
        for p in &parts[1..] {
            pairwise.merge(p);
        }
        assert_eq!(all.total(), pairwise.total());
        for c in all.top(20) {
            let t = truth[&c.key];
            assert!(c.count >= t && c.count - c.error <= t, "{c:?} true {t}");
        }
        // Every key heavier than total / capacity is tracked.
        let tracked: Vec<String> = all.top(20).into_iter().map(|c| c.key).collect();
        for (key, n) in &truth {
            if *n > all.total() / 20 {
                assert!(tracked.contains(key), "heavy key {key} ({n}) lost");
            }
        }
    }
}
