//! Exactly-once bookkeeping: what the open transaction holds, and when it commits.
//!
//! Rules:
//! - A transaction opens with the first record produced after the last commit; no record, no
//!   transaction, so an idle pipeline never commits an empty one.
//! - It holds, per input partition, one past the last record handled: the offsets it commits
//!   with the consumer group, atomically with every output, dead-letter and insights record
//!   produced in it.
//! - It is due when it has been open for the commit interval or holds the records limit,
//!   whichever comes first. Revocations and shutdown commit it whether due or not.
//! - Once a transaction is aborted (or failed for good), nothing more may be produced or
//!   committed by this producer: the records handled since the last commit are gone, and
//!   committing later offsets would skip them. The pipeline starts again from the committed
//!   offsets.
//!
//! Pure logic; `kafka::pipeline` makes the librdkafka calls.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// When a transaction commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cadence {
    /// Commit once the transaction has been open this long.
    pub interval: Duration,
    /// Commit once it holds this many input records.
    pub max_records: usize,
}

/// Where the producer's transactions stand.
#[derive(Debug, Default)]
pub struct TransactionState {
    open: Option<Open>,
    /// Set once a transaction was aborted or failed for good.
    broken: Option<Broken>,
}

/// Why the producer may not go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Broken {
    /// Aborted: nothing of it is visible; the pipeline can start again from the committed
    /// offsets.
    Aborted(String),
    /// The producer failed for good (fenced, say): the process stops.
    Failed(String),
}

#[derive(Debug)]
struct Open {
    since: Instant,
    records: usize,
    /// Per input partition, one past the last record handled in this transaction.
    next: BTreeMap<i32, i64>,
}

impl TransactionState {
    /// Notes that the record at `offset` of `partition` is about to be produced. Returns true
    /// when it opens a transaction (the caller begins one before producing).
    pub fn handled(&mut self, partition: i32, offset: i64, now: Instant) -> bool {
        let opens = self.open(now);
        if let Some(open) = &mut self.open {
            open.records += 1;
            open.next.insert(partition, offset + 1);
        }
        opens
    }

    /// Opens a transaction unless one is open (for records not made from input records:
    /// insights snapshots). Returns true when it opens one.
    pub fn open(&mut self, now: Instant) -> bool {
        let opens = self.open.is_none();
        self.open.get_or_insert_with(|| Open {
            since: now,
            records: 0,
            next: BTreeMap::new(),
        });
        opens
    }

    /// Whether a transaction is open (records were produced since the last commit).
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Whether the open transaction should commit now.
    pub fn due(&self, now: Instant, cadence: Cadence) -> bool {
        self.open.as_ref().is_some_and(|o| {
            o.records >= cadence.max_records || now.duration_since(o.since) >= cadence.interval
        })
    }

    /// The offsets to commit with the open transaction: per partition, the next to read.
    pub fn offsets(&self) -> Vec<(i32, i64)> {
        self.open
            .as_ref()
            .map(|o| o.next.iter().map(|(p, n)| (*p, *n)).collect())
            .unwrap_or_default()
    }

    /// The open transaction committed: the next record opens another.
    pub fn committed(&mut self) {
        self.open = None;
    }

    /// The open transaction was aborted or failed for good: nothing more may be produced or
    /// committed. Returns how many records it held (their results are discarded).
    pub fn break_off(&mut self, why: Broken) -> usize {
        self.broken.get_or_insert(why);
        self.open.take().map_or(0, |o| o.records)
    }

    /// Why the producer may not go on, once it may not.
    pub fn broken(&self) -> Option<&Broken> {
        self.broken.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CADENCE: Cadence = Cadence {
        interval: Duration::from_millis(100),
        max_records: 3,
    };

    #[test]
    fn no_record_no_transaction() {
        let t = TransactionState::default();
        assert!(!t.is_open());
        assert!(!t.due(Instant::now() + Duration::from_secs(60), CADENCE));
        assert!(t.offsets().is_empty());
    }

    #[test]
    fn the_first_record_after_a_commit_opens_a_transaction() {
        let mut t = TransactionState::default();
        let now = Instant::now();
        assert!(t.handled(0, 10, now), "opens");
        assert!(!t.handled(0, 11, now), "already open");
        t.committed();
        assert!(t.handled(1, 5, now), "opens again after the commit");
    }

    #[test]
    fn it_commits_one_past_the_last_record_of_each_partition() {
        let mut t = TransactionState::default();
        let now = Instant::now();
        for (p, o) in [(0, 10), (1, 4), (0, 11), (2, 0), (1, 5)] {
            t.handled(p, o, now);
        }
        assert_eq!(t.offsets(), vec![(0, 12), (1, 6), (2, 1)]);
        t.committed();
        assert!(t.offsets().is_empty(), "a commit starts afresh");
    }

    #[test]
    fn it_is_due_after_the_interval_or_at_the_records_limit() {
        let mut t = TransactionState::default();
        let now = Instant::now();
        t.handled(0, 1, now);
        assert!(!t.due(now, CADENCE));
        assert!(t.due(now + CADENCE.interval, CADENCE), "by time");
        t.handled(0, 2, now);
        t.handled(0, 3, now);
        assert!(t.due(now, CADENCE), "by size");
    }

    #[test]
    fn a_broken_transaction_stays_broken_and_gives_up_its_records() {
        let mut t = TransactionState::default();
        let now = Instant::now();
        t.handled(0, 1, now);
        t.handled(0, 2, now);
        assert_eq!(t.break_off(Broken::Aborted("abort".into())), 2);
        assert!(!t.is_open());
        assert_eq!(t.break_off(Broken::Failed("later".into())), 0);
        assert_eq!(
            t.broken(),
            Some(&Broken::Aborted("abort".into())),
            "the first reason is kept"
        );
    }
}
