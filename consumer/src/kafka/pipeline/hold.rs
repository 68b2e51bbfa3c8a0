//! Output records held back while more input waits, then produced a partition at a time.
//!
//! The rule: while more input waits behind the batch the stage is working on (a backlog), the
//! records it makes for the output topic are held, up to `--backlog-hold-bytes` of keys and
//! values. Once nothing more waits, or the hold is full, they go to the producer grouped by
//! the partition librdkafka will give each (`kafka::partitioner`). Each record's delivery
//! report still acknowledges its input offset, held or not, so an offset is committed only
//! after its record was delivered; a revocation or a shutdown waits for the stage to finish
//! what it was handed, and its last batch has nothing behind it, so the hold is empty by then.
//!
//! Why: librdkafka puts one partition in each produce request and sends a partition's batch
//! `linger.ms` after its first record. Produced as they are made, a backlog's records leave
//! in batches of what one partition gathers in a linger (a few hundred records), and a produce
//! request costs the broker about the same whatever it carries (docs/benchmarks.md §8).
//! Produced together and a partition at a time, each partition's share reaches librdkafka
//! well within its linger and leaves in one batch. A stage with nothing waiting holds
//! nothing, so at a steady rate records leave as soon as they are made, as before.
//!
//! Order: the grouping is stable and a key always forecasts the same partition, so one key's
//! records (one user's) keep their order, as do each partition's. A record without a key
//! (librdkafka places those at random) is grouped with partition 0's.

use std::ops::Range;

use crate::kafka::partitioner::Partitioner;

/// Output records made but not yet handed to the producer.
#[derive(Debug)]
pub(super) struct Held {
    bytes: Vec<u8>,
    records: Vec<HeldRecord>,
    partitioner: Partitioner,
    capacity_bytes: usize,
}

#[derive(Debug)]
struct HeldRecord {
    partition: u32,
    key: Option<Range<usize>>,
    value: Option<Range<usize>>,
    token: usize,
}

impl Held {
    /// A hold of up to `capacity_bytes` of keys and values (0: nothing is held), grouped by
    /// `partitioner`'s forecast.
    pub(super) fn new(partitioner: Partitioner, capacity_bytes: usize) -> Self {
        Held {
            bytes: Vec::new(),
            records: Vec::new(),
            partitioner,
            capacity_bytes,
        }
    }

    /// Whether records are held at all.
    pub(super) fn enabled(&self) -> bool {
        self.capacity_bytes > 0
    }

    /// Holds one record until the next [`Held::release`].
    pub(super) fn push(&mut self, key: Option<&[u8]>, value: Option<&[u8]>, token: usize) {
        let partition = key.map_or(0, |k| self.partitioner.partition(k));
        let mut copy = |part: Option<&[u8]>| {
            part.map(|b| {
                let start = self.bytes.len();
                self.bytes.extend_from_slice(b);
                start..self.bytes.len()
            })
        };
        let key = copy(key);
        let value = copy(value);
        self.records.push(HeldRecord {
            partition,
            key,
            value,
            token,
        });
    }

    /// Whether the held records must go now: nothing more waits, or the hold is full.
    pub(super) fn due(&self, more_waiting: bool) -> bool {
        !self.records.is_empty() && (!more_waiting || self.bytes.len() >= self.capacity_bytes)
    }

    /// Hands every held record to `send` (key, value, token), a forecast partition at a time,
    /// each partition's in the order they were held. Stops at the first error; the hold is
    /// empty either way (records never sent are never acknowledged, so their offsets are not
    /// committed).
    pub(super) fn release<E>(
        &mut self,
        mut send: impl FnMut(Option<&[u8]>, Option<&[u8]>, usize) -> Result<(), E>,
    ) -> Result<(), E> {
        // Stable: records of one partition stay in the order they were held.
        self.records.sort_by_key(|r| r.partition);
        let bytes = &self.bytes;
        let slice = |range: &Option<Range<usize>>| range.clone().map(|r| &bytes[r]);
        let outcome = self
            .records
            .iter()
            .try_for_each(|r| send(slice(&r.key), slice(&r.value), r.token));
        self.records.clear();
        self.bytes.clear();
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Sent = Vec<(Option<Vec<u8>>, Option<Vec<u8>>, usize)>;

    fn released(held: &mut Held) -> Sent {
        let mut sent = Vec::new();
        held.release(|key, value, token| {
            sent.push((key.map(<[u8]>::to_vec), value.map(<[u8]>::to_vec), token));
            Ok::<(), ()>(())
        })
        .expect("no send fails");
        sent
    }

    fn crc32(partitions: usize) -> Partitioner {
        Partitioner::of(None, partitions)
    }

    #[test]
    fn each_partitions_records_go_together_and_one_keys_keep_their_order() {
        let partitioner = crc32(4);
        let mut held = Held::new(partitioner, 1 << 20);
        let keys: Vec<String> = (0..40).map(|i| format!("user-{}", i % 10)).collect();
        for (token, key) in keys.iter().enumerate() {
            held.push(Some(key.as_bytes()), Some(b"v"), token);
        }
        let sent = released(&mut held);
        assert_eq!(sent.len(), 40);
        let partitions: Vec<u32> = sent
            .iter()
            .map(|(key, ..)| partitioner.partition(key.as_deref().expect("keyed")))
            .collect();
        assert!(
            partitions.windows(2).all(|w| w[0] <= w[1]),
            "partitions in runs: {partitions:?}"
        );
        for key in &keys[..10] {
            let tokens: Vec<usize> = sent
                .iter()
                .filter(|(k, ..)| k.as_deref() == Some(key.as_bytes()))
                .map(|(.., token)| *token)
                .collect();
            assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{key}: {tokens:?}");
        }
    }

    #[test]
    fn a_release_hands_over_every_record_once_as_it_was_held_and_empties_the_hold() {
        let mut held = Held::new(Partitioner::Unknown, 1 << 20);
        held.push(Some(b"k"), Some(b"{\"a\":1}"), 7);
        held.push(None, Some(b"no key"), 8);
        held.push(Some(b"tombstone"), None, 9);
        let sent = released(&mut held);
        assert_eq!(
            sent,
            vec![
                (Some(b"k".to_vec()), Some(b"{\"a\":1}".to_vec()), 7),
                (None, Some(b"no key".to_vec()), 8),
                (Some(b"tombstone".to_vec()), None, 9),
            ]
        );
        assert!(!held.due(false), "nothing left to release");
        assert!(released(&mut held).is_empty());
    }

    #[test]
    fn records_are_due_once_nothing_more_waits_or_the_hold_is_full() {
        let mut held = Held::new(crc32(3), 10);
        assert!(
            !held.due(false) && !held.due(true),
            "an empty hold is never due"
        );
        held.push(Some(b"k1"), Some(b"12345"), 0);
        assert!(!held.due(true), "7 of 10 bytes, more waiting: held");
        assert!(held.due(false), "nothing more waits: due");
        held.push(Some(b"k2"), Some(b"1"), 1);
        assert!(held.due(true), "10 of 10 bytes: due even with more waiting");
    }

    #[test]
    fn a_failed_send_stops_the_release_and_leaves_the_hold_empty() {
        let mut held = Held::new(Partitioner::Unknown, 1 << 20);
        for token in 0..5 {
            held.push(Some(b"k"), Some(b"v"), token);
        }
        let mut tried = Vec::new();
        let outcome = held.release(|_, _, token| {
            tried.push(token);
            if token == 2 { Err("refused") } else { Ok(()) }
        });
        assert_eq!(outcome, Err("refused"));
        assert_eq!(tried, [0, 1, 2]);
        assert!(!held.due(false));
    }

    #[test]
    fn a_hold_of_no_bytes_holds_nothing() {
        assert!(!Held::new(crc32(6), 0).enabled());
        assert!(Held::new(crc32(6), 1).enabled());
    }
}
