//! Which partition of the dead-letter topic each dead letter goes to.
//!
//! Rule: a consumer writes its dead letters to one partition at a time, from a random first
//! one, and moves on to the next after [`RUN`] of them. Not by key: dead letters are few
//! (about 1% of a typical stream), and spread by their keys over every partition each
//! partition had a produce request of its own per linger with a record or two in it: 14-18% of
//! the pipeline's produce requests carried dead letters (docs/benchmarks.md §8). Together they
//! fill one request per linger. Over whole runs every partition gets an equal share, and the
//! random first partition spreads a fleet's replicas. Nothing reads dead letters in key order;
//! each keeps its key and says in its headers where it came from.

/// Dead letters written to one partition before the next takes over: a few lingers' worth
/// at a high dead-letter rate, so moving on adds a request now and then, not one per linger.
pub const RUN: u32 = 1_000;

/// The partition for each dead letter in turn, by the rule above.
#[derive(Debug, Clone)]
pub struct DeadLetterPartitions {
    partitions: i32,
    current: i32,
    /// Dead letters the current partition takes before the next one.
    left: u32,
}

impl DeadLetterPartitions {
    /// For a topic of `partitions` partitions (one if the count is not positive), starting at
    /// partition `start` modulo the count.
    pub fn new(partitions: i32, start: u64) -> Self {
        let partitions = partitions.max(1);
        let current = i32::try_from(start % partitions.unsigned_abs() as u64).unwrap_or(0);
        Self {
            partitions,
            current,
            left: RUN,
        }
    }

    /// Starting at a random partition, so replicas started together do not all write to one.
    pub fn from_random_start(partitions: i32) -> Self {
        use std::hash::BuildHasher;
        // std seeds each RandomState afresh: randomness without a dependency.
        Self::new(
            partitions,
            std::collections::hash_map::RandomState::new().hash_one(0u8),
        )
    }

    /// The partition for the next dead letter.
    pub fn next(&mut self) -> i32 {
        if self.left == 0 {
            self.current = (self.current + 1) % self.partitions;
            self.left = RUN;
        }
        self.left -= 1;
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(partitions: &mut DeadLetterPartitions, n: u32) -> Vec<i32> {
        (0..n).map(|_| partitions.next()).collect()
    }

    #[test]
    fn a_run_of_dead_letters_shares_one_partition() {
        let mut p = DeadLetterPartitions::new(6, 4);
        assert!(take(&mut p, RUN).iter().all(|&at| at == 4));
    }

    #[test]
    fn after_a_run_the_next_partition_takes_over_and_the_last_wraps_to_the_first() {
        let mut p = DeadLetterPartitions::new(3, 1);
        let order: Vec<i32> = (0..4).map(|_| take(&mut p, RUN)[0]).collect();
        assert_eq!(order, [1, 2, 0, 1]);
    }

    #[test]
    fn whole_rounds_give_every_partition_an_equal_share() {
        let mut p = DeadLetterPartitions::new(5, 7);
        let mut counts = [0u32; 5];
        for at in take(&mut p, 5 * RUN * 3) {
            counts[at as usize] += 1;
        }
        assert_eq!(counts, [3 * RUN; 5]);
    }

    #[test]
    fn the_start_is_taken_modulo_the_partitions() {
        assert_eq!(DeadLetterPartitions::new(4, u64::MAX).next(), 3);
        assert_eq!(DeadLetterPartitions::new(4, 9).next(), 1);
    }

    #[test]
    fn a_count_that_is_not_positive_is_one_partition() {
        for partitions in [0, -3] {
            let mut p = DeadLetterPartitions::new(partitions, 5);
            assert!(take(&mut p, 2 * RUN + 1).iter().all(|&at| at == 0));
        }
    }

    #[test]
    fn a_random_start_is_a_partition_of_the_topic() {
        for _ in 0..100 {
            assert!((0..7).contains(&DeadLetterPartitions::from_random_start(7).next()));
        }
    }
}
