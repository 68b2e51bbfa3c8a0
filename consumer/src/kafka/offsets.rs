//! At-least-once bookkeeping: which input offsets may be committed.
//!
//! An input offset becomes committable only once the broker has acknowledged the record it
//! produced (output or dead-letter), and only when every earlier offset of its partition is
//! acknowledged too, because a Kafka commit means "everything before this offset is done".
//!
//! When the replica publishes its insights, an offset also waits for them: it becomes
//! committable only once a published snapshot counts its event (`cover`). A replica killed
//! between two snapshots then reprocesses, and counts again, what no snapshot holds, rather
//! than leave committed events out of the pipeline's insights.
//!
//! A partition given away (revoked or lost) takes no more records from before it went: when a
//! revocation could not wait for the processing stage, the stage still holds batches handed to
//! it earlier, and tracking their records again would commit offsets of a partition that
//! another member now owns, moving its committed offset back or ahead of what it produced.
//! Each batch is stamped with [`OffsetTracker::revocations`] when handed over; a record of a
//! partition given away after its batch was stamped is its next owner's.
//!
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
    /// One past the last offset a published insights snapshot counts.
    covered: Option<i64>,
}

impl PartitionState {
    /// The offset that may be committed now.
    fn commit_position(&self, gated: bool) -> Option<i64> {
        if gated {
            self.committable.zip(self.covered).map(|(a, b)| a.min(b))
        } else {
            self.committable
        }
    }
}

/// Where `offset` sits in `pending` (ascending), if it is there. A partition's offsets are
/// nearly always consecutive, so its distance from the front is tried first: a binary search
/// of thousands of in-flight offsets for every acknowledgement was 0.7% of the consumer's
/// samples in a pinned drain's profile, and twice that with a 100 ms linger. Gaps
/// (transaction markers, compacted records) fall back to the search.
fn position(pending: &VecDeque<(i64, bool)>, offset: i64) -> Option<usize> {
    let front = pending.front()?.0;
    let guess = offset
        .checked_sub(front)
        .and_then(|distance| usize::try_from(distance).ok())
        .filter(|&i| pending.get(i).is_some_and(|e| e.0 == offset));
    guess.or_else(|| pending.binary_search_by_key(&offset, |e| e.0).ok())
}

/// A map keyed by partition number, for maps looked up for every record or delivery: a
/// partition number needs no DoS-proof hash, and SipHash in the tracker's map was 1-2% of the
/// processing thread in a drain's profile.
pub(crate) type PartitionMap<V> = HashMap<i32, V, foldhash::fast::RandomState>;

/// Tracks every in-flight input offset of the assigned partitions.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: PartitionMap<PartitionState>,
    /// Offsets also wait for published insights.
    gated: bool,
    /// How many times partitions were given away ([`Self::forget`]).
    revocations: u64,
    /// For each partition ever given away, the revocation (by number) that last gave it away.
    given_away: PartitionMap<u64>,
}

impl OffsetTracker {
    /// A tracker whose offsets also wait for published insights ([`Self::cover`]).
    pub fn gated_by_insights() -> Self {
        OffsetTracker {
            gated: true,
            ..OffsetTracker::default()
        }
    }

    /// Records that published insights count every event of `partition` before `next`.
    /// Ignored for a partition not tracked (revoked since the snapshot was taken).
    pub fn cover(&mut self, partition: i32, next: i64) {
        if let Some(state) = self.partitions.get_mut(&partition) {
            state.covered = Some(state.covered.map_or(next, |c| c.max(next)));
        }
    }

    /// Records that the record at `offset` was consumed and is about to be produced. The
    /// stage was handed its batch when [`Self::revocations`] was `handed_at`. Returns false,
    /// tracking nothing, when its partition was given away since: the record is the partition's
    /// next owner's. Offsets of one partition must be tracked in ascending order (Kafka
    /// delivers them so).
    pub fn track(&mut self, partition: i32, offset: i64, handed_at: u64) -> bool {
        // One comparison per record; the lookup only for batches older than a revocation.
        if handed_at < self.revocations
            && self
                .given_away
                .get(&partition)
                .is_some_and(|&revocation| revocation > handed_at)
        {
            return false;
        }
        self.partitions
            .entry(partition)
            .or_default()
            .pending
            .push_back((offset, false));
        true
    }

    /// The number of revocations so far: the stamp of a batch handed to the stage now.
    pub fn revocations(&self) -> u64 {
        self.revocations
    }

    /// Records the broker's acknowledgement of the record produced for `offset`.
    /// Returns false for an offset that is not tracked (e.g. its partition was revoked).
    pub fn ack(&mut self, partition: i32, offset: i64) -> bool {
        let Some(state) = self.partitions.get_mut(&partition) else {
            return false;
        };
        let Some(i) = position(&state.pending, offset) else {
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
            .filter_map(|(p, s)| match s.commit_position(self.gated) {
                Some(next) if s.committed.is_none_or(|c| c < next) => {
                    s.committed = Some(next);
                    Some((*p, next))
                }
                _ => None,
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// Records that the commit of `offset` for `partition` failed: the next call to
    /// [`Self::take_commits`] sends it again. Without this, a commit lost during a rebalance
    /// would never be repeated unless newer offsets came, and a revocation would then hand
    /// the partition over at an older commit (its next owner reprocessing, and duplicating,
    /// what was already produced).
    pub fn commit_failed(&mut self, partition: i32, offset: i64) {
        if let Some(state) = self.partitions.get_mut(&partition)
            && state.committed == Some(offset)
        {
            state.committed = None;
        }
    }

    /// Forgets partitions given away (revoked or lost): late acknowledgements for them are
    /// ignored, and their records in batches handed over before now are not tracked.
    pub fn forget(&mut self, partitions: &[i32]) {
        self.revocations += 1;
        for &p in partitions {
            self.partitions.remove(&p);
            self.given_away.insert(p, self.revocations);
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
/// Partitions a record token can name; the last value marks checkpoint tokens.
const PARTITION_LIMIT: i32 = (1 << 16) - 1;

/// What a delivery report's opaque refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// A record made from an input record.
    Record(DeliveryToken),
    /// A record of an insights checkpoint, by the checkpoint's number.
    Checkpoint(u64),
}

impl Delivered {
    /// The opaque of a checkpoint's records; `None` past 2^48 checkpoints.
    pub fn checkpoint(number: u64) -> Option<usize> {
        (number < 1 << 48)
            .then_some((PARTITION_LIMIT as u64) << 48 | number)
            .and_then(|packed| usize::try_from(packed).ok())
    }

    pub fn decode(packed: usize) -> Self {
        let packed64 = packed as u64;
        if (packed64 >> 48) as i32 == PARTITION_LIMIT {
            Delivered::Checkpoint(packed64 & ((1 << 48) - 1))
        } else {
            Delivered::Record(DeliveryToken::decode(packed))
        }
    }
}

impl DeliveryToken {
    /// Packs the token; `None` when the partition (>= 65535) or offset (>= 2^47) is beyond
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
            t.track(0, o, 0);
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
    fn an_ack_finds_its_offset_with_or_without_gaps_and_nothing_else() {
        let mut t = OffsetTracker::default();
        for o in [10, 11, 12, 20, 21, 22] {
            t.track(0, o, 0);
        }
        assert!(
            t.ack(0, 11),
            "consecutive: found by its distance from the front"
        );
        assert!(t.ack(0, 21), "after a gap: found by the search");
        assert!(!t.ack(0, 15), "inside the gap: never tracked");
        assert!(!t.ack(0, 9), "before the front");
        assert!(!t.ack(0, 23), "past the back");
        assert!(!t.ack(0, i64::MIN), "no overflow on a far offset");
        assert!(t.ack(0, 10));
        assert_eq!(t.take_commits(), vec![(0, 12)]);
        assert!(!t.ack(0, 11), "released with the front");
        for o in [12, 20, 22] {
            assert!(t.ack(0, o));
        }
        assert_eq!(t.take_commits(), vec![(0, 23)]);
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn partitions_are_independent_and_gaps_are_fine() {
        let mut t = OffsetTracker::default();
        t.track(0, 5, 0);
        t.track(1, 100, 0);
        t.track(1, 103, 0); // compacted topics and transaction markers leave gaps
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
        t.track(2, 1, 0);
        t.forget(&[2]);
        assert!(!t.ack(2, 1));
        assert!(!t.ack(9, 1), "never tracked");
        assert!(t.take_commits().is_empty());
    }

    #[test]
    fn a_record_handed_over_before_its_partition_was_given_away_is_not_tracked() {
        let mut t = OffsetTracker::default();
        let stamp = t.revocations();
        assert!(t.track(2, 10, stamp));
        t.forget(&[2]);
        assert!(!t.track(2, 11, stamp), "handed over before the revocation");
        assert!(!t.ack(2, 11));
        assert!(
            t.take_commits().is_empty(),
            "nothing committed for a partition another member owns"
        );
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn other_partitions_of_the_same_batch_are_tracked() {
        let mut t = OffsetTracker::default();
        let stamp = t.revocations();
        t.forget(&[2]);
        assert!(t.track(3, 10, stamp), "kept by cooperative rebalancing");
        assert!(t.ack(3, 10));
        assert_eq!(t.take_commits(), vec![(3, 11)]);
    }

    #[test]
    fn records_handed_over_after_the_partition_came_back_are_tracked() {
        let mut t = OffsetTracker::default();
        let before = t.revocations();
        t.forget(&[2]);
        let after = t.revocations();
        assert!(!t.track(2, 50, before), "the old assignment's record");
        assert!(
            t.track(2, 40, after),
            "the new assignment reads from its commit"
        );
        assert!(t.ack(2, 40));
        assert_eq!(t.take_commits(), vec![(2, 41)]);
        t.forget(&[7]);
        assert!(
            t.track(2, 41, after),
            "a later revocation of another partition changes nothing for this one"
        );
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
                partition: 65_534,
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
                partition: 65_535,
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

    #[test]
    fn with_insights_an_offset_waits_for_a_snapshot_that_counts_it() {
        let mut t = OffsetTracker::gated_by_insights();
        for o in 0..10 {
            t.track(0, o, 0);
            t.ack(0, o);
        }
        assert!(
            t.take_commits().is_empty(),
            "acknowledged, but no snapshot yet"
        );
        t.cover(0, 4);
        assert_eq!(t.take_commits(), vec![(0, 4)]);
        t.cover(0, 20);
        assert_eq!(
            t.take_commits(),
            vec![(0, 10)],
            "and never past what is acknowledged"
        );
        t.cover(0, 3);
        assert!(t.take_commits().is_empty(), "coverage never goes back");
    }

    #[test]
    fn coverage_of_a_partition_not_tracked_is_ignored() {
        let mut t = OffsetTracker::gated_by_insights();
        t.cover(5, 100);
        t.track(5, 200, 0);
        t.ack(5, 200);
        assert!(
            t.take_commits().is_empty(),
            "the old coverage does not count"
        );
    }

    #[test]
    fn checkpoint_tokens_are_told_apart_from_record_tokens() {
        let record = DeliveryToken {
            partition: 65_534,
            offset: 9,
            dead_letter: true,
        };
        let packed = record.encode().expect("fits");
        assert_eq!(Delivered::decode(packed), Delivered::Record(record));
        let checkpoint = Delivered::checkpoint(42).expect("fits");
        assert_eq!(Delivered::decode(checkpoint), Delivered::Checkpoint(42));
        assert_eq!(Delivered::checkpoint(1 << 48), None);
    }

    #[test]
    fn a_failed_commit_is_sent_again() {
        let mut t = OffsetTracker::default();
        t.track(0, 7, 0);
        t.ack(0, 7);
        assert_eq!(t.take_commits(), vec![(0, 8)]);
        assert!(t.take_commits().is_empty(), "sent once");
        t.commit_failed(0, 8);
        assert_eq!(t.take_commits_for(&[0]), vec![(0, 8)], "sent again");
        t.commit_failed(0, 5);
        assert!(
            t.take_commits().is_empty(),
            "an older failure changes nothing"
        );
    }
}
