//! Space-Saving (Metwally et al.): the most frequent keys of a stream in fixed memory.
//!
//! Keeps `capacity` counters. A key that is tracked is counted exactly from the moment it was
//! admitted; when an untracked key arrives and all counters are taken, it replaces the key with
//! the smallest count and inherits that count as its possible overestimate (`error`). Any key
//! whose true count exceeds `total / capacity` is guaranteed to be tracked, and every reported
//! count overestimates the true one by at most its `error` (itself at most `total / capacity`).
//!
//! Counters sit in an indexed binary min-heap, so an update costs one hash lookup and
//! O(log capacity) swaps at worst, and evicting reuses the evicted key's allocation.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3Builder;

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

/// A top-k sketch.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "Snapshot", into = "Snapshot")]
pub struct SpaceSaving {
    capacity: usize,
    total: u64,
    counters: Vec<Counter>,
    /// Counter indices ordered as a min-heap on `count`.
    heap: Vec<usize>,
    /// `position[i]` is where counter `i` sits in `heap`.
    position: Vec<usize>,
    index: HashMap<String, usize, Xxh3Builder>,
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
            counters: s.counters,
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
        let capacity = capacity.max(1);
        // A per-process random seed: keys come from the input, and a fixed seed would let
        // crafted keys collide into one bucket.
        let seed = {
            use std::hash::{BuildHasher, RandomState};
            RandomState::new().hash_one(0u8)
        };
        SpaceSaving {
            capacity,
            total: 0,
            counters: Vec::new(),
            heap: Vec::new(),
            position: Vec::new(),
            index: HashMap::with_hasher(Xxh3Builder::new().with_seed(seed)),
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

    /// Records one occurrence of `key`, seen at `at`.
    pub fn insert(&mut self, key: &str, at: i64) {
        self.add(key, 1, 0, at);
    }

    fn add(&mut self, key: &str, count: u64, error: u64, at: i64) {
        self.total += count;
        if let Some(&i) = self.index.get(key) {
            let c = &mut self.counters[i];
            c.count += count;
            c.error += error;
            c.last_seen = c.last_seen.max(at);
            self.sift_down(self.position[i]);
        } else if self.counters.len() < self.capacity {
            self.push(Counter {
                key: key.to_owned(),
                count,
                error,
                last_seen: at,
            });
        } else {
            // Evict the minimum; reuse its String so steady-state eviction does not allocate.
            let i = self.heap[0];
            let floor = self.counters[i].count;
            let (mut owned, _) = self
                .index
                .remove_entry(self.counters[i].key.as_str())
                .unwrap_or_default();
            owned.clear();
            owned.push_str(key);
            let c = &mut self.counters[i];
            c.key.clear();
            c.key.push_str(key);
            c.count = floor + count;
            c.error = floor + error;
            c.last_seen = at;
            self.index.insert(owned, i);
            self.sift_down(0);
        }
    }

    fn push(&mut self, counter: Counter) {
        let i = self.counters.len();
        self.index.insert(counter.key.clone(), i);
        self.counters.push(counter);
        self.heap.push(i);
        self.position.push(i);
        self.sift_up(i);
    }

    /// The `n` keys with the highest counts, highest first (ties by key).
    pub fn top(&self, n: usize) -> Vec<Counter> {
        let mut all: Vec<&Counter> = self.counters.iter().collect();
        all.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        all.into_iter().take(n).cloned().collect()
    }

    /// Folds `other` in (Agarwal et al., "Mergeable Summaries"): a key missing from one side is
    /// credited with that side's minimum count as possible error, then the largest `capacity`
    /// counters are kept. The result keeps the guarantees for the union of both streams.
    pub fn merge(&mut self, other: &SpaceSaving) {
        let floor = |s: &SpaceSaving| {
            if s.counters.len() < s.capacity {
                0
            } else {
                s.heap.first().map_or(0, |&i| s.counters[i].count)
            }
        };
        let (my_floor, their_floor) = (floor(self), floor(other));
        let mut merged: HashMap<&str, Counter> = HashMap::new();
        for c in &self.counters {
            merged.insert(c.key.as_str(), c.clone());
        }
        for c in &other.counters {
            merged
                .entry(c.key.as_str())
                .and_modify(|m| {
                    m.count += c.count;
                    m.error += c.error;
                    m.last_seen = m.last_seen.max(c.last_seen);
                })
                .or_insert_with(|| Counter {
                    count: c.count + my_floor,
                    error: c.error + my_floor,
                    ..c.clone()
                });
        }
        for c in &self.counters {
            if !other.index.contains_key(c.key.as_str())
                && let Some(m) = merged.get_mut(c.key.as_str())
            {
                m.count += their_floor;
                m.error += their_floor;
            }
        }
        let mut counters: Vec<Counter> = merged.into_values().collect();
        counters.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        counters.truncate(self.capacity);
        let total = self.total + other.total;
        *self = SpaceSaving::from(Snapshot {
            capacity: self.capacity,
            total,
            counters,
        });
    }

    fn less(&self, a: usize, b: usize) -> bool {
        self.counters[self.heap[a]].count < self.counters[self.heap[b]].count
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.position[self.heap[a]] = a;
        self.position[self.heap[b]] = b;
    }

    fn sift_up(&mut self, mut at: usize) {
        while at > 0 {
            let parent = (at - 1) / 2;
            if !self.less(at, parent) {
                break;
            }
            self.swap(at, parent);
            at = parent;
        }
    }

    fn sift_down(&mut self, mut at: usize) {
        loop {
            let (left, right) = (2 * at + 1, 2 * at + 2);
            let mut smallest = at;
            if left < self.heap.len() && self.less(left, smallest) {
                smallest = left;
            }
            if right < self.heap.len() && self.less(right, smallest) {
                smallest = right;
            }
            if smallest == at {
                return;
            }
            self.swap(at, smallest);
            at = smallest;
        }
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
        assert_eq!(s.counters.len(), 50, "memory stays bounded");
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
        assert!(a.counters.len() <= 20);
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
}
