//! Publishing a replica's insights from the Kafka loop, and what that lets it commit.
//!
//! Rules:
//! - Every `interval`, on a revocation and at shutdown, the processing stage takes a
//!   checkpoint: the insights thread returns snapshots that count every event handled before
//!   it, and the stage notes, per partition, one past the last offset it handled (the
//!   checkpoint's coverage).
//! - The snapshots go to the insights topic through the pipeline's producer. Only when the
//!   broker has acknowledged every record of a checkpoint does its coverage let offsets be
//!   committed (`OffsetTracker::cover`). A failed publish leaves the coverage where it was: the
//!   next checkpoint carries it further.
//!
//! Pure bookkeeping here; the sending is in `kafka::pipeline`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::insights::worker::{Publisher, Records};
use crate::kafka::offsets::PartitionMap;
use crate::processor::Processor;
pub use crate::time::now_ms;

/// Where and how often a replica publishes its insights.
#[derive(Debug, Clone)]
pub struct InsightsPublishing {
    pub topic: String,
    pub interval: Duration,
    pub publisher: Publisher,
}

/// Per partition, one past the last offset a checkpoint counts.
pub type Coverage = Vec<(i32, i64)>;

/// Checkpoints sent whose records are not all acknowledged yet.
#[derive(Debug, Default)]
pub struct Ledger {
    open: HashMap<u64, (usize, Coverage)>,
}

impl Ledger {
    /// Notes checkpoint `number`, sent as `records` records, covering `coverage`.
    pub fn open(&mut self, number: u64, records: usize, coverage: Coverage) {
        self.open.insert(number, (records, coverage));
    }

    /// One record of checkpoint `number` was acknowledged. Returns its coverage once all were.
    pub fn delivered(&mut self, number: u64) -> Option<Coverage> {
        let (left, _) = self.open.get_mut(&number)?;
        *left = left.saturating_sub(1);
        if *left > 0 {
            return None;
        }
        self.open.remove(&number).map(|(_, coverage)| coverage)
    }

    /// A record of checkpoint `number` was refused: the checkpoint covers nothing.
    pub fn failed(&mut self, number: u64) {
        self.open.remove(&number);
    }
}

/// Takes checkpoints on the processing stage's thread.
#[derive(Debug)]
pub struct Checkpointer {
    pub publishing: InsightsPublishing,
    last: Instant,
    next: u64,
    /// Per partition, one past the last offset handled. Written for every record.
    handled: PartitionMap<i64>,
}

/// A checkpoint ready to send.
#[derive(Debug)]
pub struct Taken {
    pub number: u64,
    pub records: Records,
    pub coverage: Coverage,
}

impl Checkpointer {
    pub fn new(publishing: InsightsPublishing) -> Self {
        Checkpointer {
            publishing,
            last: Instant::now(),
            next: 0,
            handled: HashMap::default(),
        }
    }

    /// Notes that the record at `offset` of `partition` was handled.
    #[inline]
    pub fn handled(&mut self, partition: i32, offset: i64) {
        self.handled.insert(partition, offset + 1);
    }

    /// Whether the interval has passed since the last checkpoint.
    pub fn due(&self) -> bool {
        self.last.elapsed() >= self.publishing.interval
    }

    /// Takes a checkpoint of everything `processor` handled so far, and waits for it.
    pub fn take(&mut self, processor: &mut Processor, final_snapshot: bool) -> Result<Taken> {
        let (number, coverage) = self.next_checkpoint();
        let records = processor
            .checkpoint(&self.publishing.publisher, now_ms(), final_snapshot)
            .ok_or_else(|| Error::Insights("they are not kept on their own thread".into()))?
            .map_err(|e| Error::Insights(e.to_string()))?;
        Ok(Taken {
            number,
            records,
            coverage,
        })
    }

    /// Takes a checkpoint without waiting: `then` gets it on the insights thread once its
    /// snapshots are encoded, so the processing stage does not stop for the encoding.
    pub fn take_then(
        &mut self,
        processor: &mut Processor,
        then: impl FnOnce(Result<Taken>) + Send + 'static,
    ) {
        let (number, coverage) = self.next_checkpoint();
        let sent = processor.checkpoint_then(
            &self.publishing.publisher,
            now_ms(),
            false,
            Box::new(move |records| {
                then(
                    records
                        .map(|records| Taken {
                            number,
                            records,
                            coverage,
                        })
                        .map_err(|e| Error::Insights(e.to_string())),
                )
            }),
        );
        if !sent {
            tracing::error!(
                "insights checkpoint skipped: the insights are not kept on their own thread"
            );
        }
    }

    fn next_checkpoint(&mut self) -> (u64, Coverage) {
        self.last = Instant::now();
        let number = self.next;
        self.next += 1;
        let mut coverage: Coverage = self.handled.iter().map(|(p, o)| (*p, *o)).collect();
        coverage.sort_unstable();
        (number, coverage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_covers_its_offsets_only_once_every_record_is_acknowledged() {
        let mut ledger = Ledger::default();
        ledger.open(3, 2, vec![(0, 10), (1, 7)]);
        assert_eq!(ledger.delivered(3), None, "one of two");
        assert_eq!(ledger.delivered(3), Some(vec![(0, 10), (1, 7)]));
        assert_eq!(ledger.delivered(3), None, "closed");
    }

    #[test]
    fn a_refused_record_makes_its_checkpoint_cover_nothing() {
        let mut ledger = Ledger::default();
        ledger.open(4, 2, vec![(0, 10)]);
        ledger.failed(4);
        assert_eq!(ledger.delivered(4), None);
    }
}
