//! At-least-once bookkeeping: which input offsets may be committed.
//!
//! An input offset becomes committable only once the broker has acknowledged the record it
//! produced (output or dead-letter), and only when every earlier offset of its partition is
//! acknowledged too, because a Kafka commit means "everything before this offset is done".
//! Pure logic; the pipeline calls it from the consume loop and the delivery callback.

use std::collections::{HashMap, VecDeque};

/// Per-partition in-flight offsets and commit position.
#[derive(Debug, Default)]
struct PartitionState {
    /// Offsets handed to the producer and not yet released, ascending, with their ack state.
    pending: VecDeque<(i64, bool)>,
    /// The next offset to commit (one past the last offset whose predecessors are all acked).
    committable: Option<i64>,
    /// What was last committed (or sent for commit).
    committed: Option<i64>,
}

/// Tracks every in-flight input offset of the assigned partitions.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<i32, PartitionState>,
}

impl OffsetTracker {
    /// Records that the record at `offset` was consumed and handed to the producer.
    /// Offsets of one partition must be tracked in ascending order (Kafka delivers them so).
    pub fn track(&mut self, partition: i32, offset: i64) {
        self.partitions
            .entry(partition)
            .or_default()
            .pending
            .push_back((offset, false));
    }

    /// Records the broker's acknowledgement of the record produced for `offset`.
    /// Returns false for an offset that is not tracked (e.g. its partition was revoked).
    pub fn ack(&mut self, partition: i32, offset: i64) -> bool {
        let Some(state) = self.partitions.get_mut(&partition) else {
            return false;
        };
        let Ok(i) = state.pending.binary_search_by_key(&offset, |e| e.0) else {
            return false;
        };
        state.pending[i].1 = true;
        while let Some(&(front, true)) = state.pending.front() {
            state.committable = Some(front + 1);
            state.pending.pop_front();
        }
        true
    }

    /// Partitions whose commit position advanced since the last call, with the offset to
    /// commit; they are marked committed.
    pub fn take_commits(&mut self) -> Vec<(i32, i64)> {
        self.take_commits_where(|_| true)
    }

    /// Like [`Self::take_commits`], for the given partitions only.
    pub fn take_commits_for(&mut self, partitions: &[i32]) -> Vec<(i32, i64)> {
        self.take_commits_where(|p| partitions.contains(&p))
    }

    fn take_commits_where(&mut self, wanted: impl Fn(i32) -> bool) -> Vec<(i32, i64)> {
        let mut out: Vec<(i32, i64)> = self
            .partitions
            .iter_mut()
            .filter(|(p, _)| wanted(**p))
            .filter_map(|(p, s)| match s.committable {
                Some(next) if s.committed != Some(next) => {
                    s.committed = Some(next);
                    Some((*p, next))
                }
                _ => None,
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// Forgets revoked partitions; late acknowledgements for them are then ignored.
    pub fn forget(&mut self, partitions: &[i32]) {
        for p in partitions {
            self.partitions.remove(p);
        }
    }

    /// Records handed to the producer and not yet released.
    pub fn in_flight(&self) -> usize {
        self.partitions.values().map(|s| s.pending.len()).sum()
    }
}

/// What a delivery report refers to, packed into the `usize` opaque that librdkafka carries
/// with each produced record, so the hot path allocates nothing per record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryToken {
    pub partition: i32,
    pub offset: i64,
    pub dead_letter: bool,
}

const OFFSET_BITS: u32 = 47;
const PARTITION_LIMIT: i32 = 1 << 16;

impl DeliveryToken {
    /// Packs the token; `None` when the partition (>= 65536) or offset (>= 2^47) is beyond
    /// what fits, which no real topic reaches.
    pub fn encode(self) -> Option<usize> {
        if !(0..PARTITION_LIMIT).contains(&self.partition)
            || !(0..1 << OFFSET_BITS).contains(&self.offset)
        {
            return None;
        }
        let packed = (self.partition as u64) << 48
            | u64::from(self.dead_letter) << OFFSET_BITS
            | self.offset as u64;
        usize::try_from(packed).ok()
    }

    pub fn decode(packed: usize) -> Self {
        let packed = packed as u64;
        DeliveryToken {
            partition: (packed >> 48) as i32,
            dead_letter: packed >> OFFSET_BITS & 1 == 1,
            offset: (packed & ((1 << OFFSET_BITS) - 1)) as i64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_only_contiguous_acknowledged_offsets() {
        let mut t = OffsetTracker::default();
        for o in 10..15 {
            t.track(0, o);
        }
        assert!(t.take_commits().is_empty(), "nothing acked yet");
        assert!(t.ack(0, 11));
        assert!(t.ack(0, 12));
        assert!(t.take_commits().is_empty(), "10 is still in flight");
        assert!(t.ack(0, 10));
        assert_eq!(t.take_commits(), vec![(0, 13)]);
        assert!(t.take_commits().is_empty(), "reported once");
        assert_eq!(t.in_flight(), 2);
        t.ack(0, 14);
        t.ack(0, 13);
        assert_eq!(t.take_commits(), vec![(0, 15)]);
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn partitions_are_independent_and_gaps_are_fine() {
        let mut t = OffsetTracker::default();
        t.track(0, 5);
        t.track(1, 100);
        t.track(1, 103); // compacted topics and transaction markers leave gaps
        t.ack(1, 103);
        t.ack(1, 100);
        assert_eq!(t.take_commits(), vec![(1, 104)]);
        assert_eq!(t.take_commits_for(&[0]), vec![]);
        t.ack(0, 5);
        assert_eq!(t.take_commits_for(&[0]), vec![(0, 6)]);
    }

    #[test]
    fn revoked_partitions_ignore_late_acks() {
        let mut t = OffsetTracker::default();
        t.track(2, 1);
        t.forget(&[2]);
        assert!(!t.ack(2, 1));
        assert!(!t.ack(9, 1), "never tracked");
        assert!(t.take_commits().is_empty());
    }

    #[test]
    fn tokens_round_trip_and_refuse_what_does_not_fit() {
        for token in [
            DeliveryToken {
                partition: 0,
                offset: 0,
                dead_letter: false,
            },
            DeliveryToken {
                partition: 65_535,
                offset: (1 << 47) - 1,
                dead_letter: true,
            },
            DeliveryToken {
                partition: 7,
                offset: 123_456_789,
                dead_letter: true,
            },
        ] {
            assert_eq!(DeliveryToken::decode(token.encode().expect("fits")), token);
        }
        assert_eq!(
            DeliveryToken {
                partition: 65_536,
                offset: 0,
                dead_letter: false
            }
            .encode(),
            None
        );
        assert_eq!(
            DeliveryToken {
                partition: 0,
                offset: -1,
                dead_letter: false
            }
            .encode(),
            None
        );
    }
}
