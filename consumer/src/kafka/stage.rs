//! The processing stage: a thread that cleans and produces the records the poll loop hands it.
//!
//! The poll loop is the pipeline's narrowest point: one thread takes every record from
//! librdkafka. With cleaning and producing on that thread too, it was busy ~90% of the time
//! while a core sat half idle. Now the loop only copies each record's key and value into an
//! [`InputBatch`] (one memcpy into a reused buffer) and hands full batches to this thread over a
//! bounded channel, so the two halves run at once and a slow stage holds the loop back
//! (backpressure) instead of growing a queue.
//!
//! Order and offsets: one stage thread takes batches in the order they were polled, so each
//! partition's offsets reach the offset tracker in order, as before. On revocation the loop's
//! context waits for the stage to finish what it was handed ([`StageProgress`]) before it
//! flushes and commits; records of the revoked partitions polled before the revocation but not
//! yet handed over are dropped uncommitted, so the partitions' next owner reads them again (at
//! least once). Records of partitions kept (cooperative rebalancing) are kept too: the
//! consumer's position has moved past them, so dropping them would lose them. When the wait
//! times out, the batches already handed over still hold the revoked partitions' records: each
//! batch carries a stamp from its hand-over, by which the offset tracker tells those records
//! apart from the ones of a later assignment of the same partitions.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Mutex, MutexGuard};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use rdkafka::message::Message;

use crate::error::{Error, Result};
use crate::handoff::{self, BatchSender};

/// Batches waiting for the stage, besides the one it is working on and the one being filled.
const QUEUED_BATCHES: usize = 2;

/// One input record as the stage sees it: borrowed from a batch (or from a librdkafka message).
#[derive(Debug, Clone, Copy)]
pub struct InputRecord<'a> {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
}

impl<'a> InputRecord<'a> {
    pub fn of(message: &'a impl Message) -> Self {
        InputRecord {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key(),
            payload: message.payload(),
        }
    }
}

/// Records copied out of librdkafka's messages: one byte buffer, reused batch after batch.
#[derive(Debug, Default)]
pub struct InputBatch {
    bytes: Vec<u8>,
    records: Vec<Copied>,
    /// The stamp it was handed over with ([`Stage::hand_over`]).
    handed_at: u64,
}

#[derive(Debug)]
struct Copied {
    partition: i32,
    offset: i64,
    key: Option<Range<usize>>,
    payload: Option<Range<usize>>,
}

/// Appends `part`, when present, to `bytes` and returns where it went: how the stage's batches
/// (and the pipeline's hold) keep many records' bytes in one reused buffer.
pub(crate) fn copy_into(bytes: &mut Vec<u8>, part: Option<&[u8]>) -> Option<Range<usize>> {
    part.map(|b| {
        let start = bytes.len();
        bytes.extend_from_slice(b);
        start..bytes.len()
    })
}

impl InputBatch {
    fn push(&mut self, record: InputRecord<'_>) {
        let key = copy_into(&mut self.bytes, record.key);
        let payload = copy_into(&mut self.bytes, record.payload);
        self.records.push(Copied {
            partition: record.partition,
            offset: record.offset,
            key,
            payload,
        });
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The stamp the poll loop gave the batch when it handed it over.
    pub fn handed_at(&self) -> u64 {
        self.handed_at
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.records.clear();
    }

    /// Drops the records of `partitions` (their bytes stay until the batch is cleared).
    fn drop_partitions(&mut self, partitions: &[i32]) -> usize {
        let before = self.records.len();
        self.records.retain(|r| !partitions.contains(&r.partition));
        if self.records.is_empty() {
            self.bytes.clear();
        }
        before - self.records.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = InputRecord<'_>> {
        self.records.iter().map(|r| InputRecord {
            partition: r.partition,
            offset: r.offset,
            key: r.key.clone().map(|k| &self.bytes[k]),
            payload: r.payload.clone().map(|p| &self.bytes[p]),
        })
    }
}

/// How far the stage has got, shared with the consumer's rebalance callback.
#[derive(Debug, Default)]
pub struct StageProgress {
    /// Records handed to the stage.
    handed: AtomicU64,
    /// Records the stage has produced (or failed on).
    done: AtomicU64,
    /// Partitions revoked since the loop last looked.
    revoked: Mutex<Vec<i32>>,
    /// Whether `revoked` has news, so the loop looks at it without locking per record.
    revoked_since_seen: AtomicBool,
    /// Set when the stage thread has ended: nothing handed over will be done any more.
    stopped: AtomicBool,
    /// Set when the stage thread ends on an error, before `done` counts the batch that failed
    /// and before `stopped`: what it was handed may not all have been produced.
    failed: AtomicBool,
}

impl StageProgress {
    /// Called on revocation of `partitions`: waits until the stage has produced everything
    /// handed to it, up to `timeout`. Returns whether it did: false when the time ran out, or
    /// when the stage stopped on an error (exactly once must then abort, not commit, the
    /// transaction that counts the offsets of what it failed to produce).
    pub fn revoke_and_drain(&self, partitions: &[i32], timeout: Duration) -> bool {
        self.revoked_partitions().extend_from_slice(partitions);
        self.revoked_since_seen.store(true, Ordering::Release);
        let deadline = Instant::now() + timeout;
        while self.done.load(Ordering::Acquire) < self.handed.load(Ordering::Acquire)
            && !self.stopped.load(Ordering::Acquire)
        {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        !self.failed.load(Ordering::Acquire)
    }

    /// Whether the stage thread ended on an error.
    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Whether the stage thread has ended (nothing more will be done there).
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    fn revoked_partitions(&self) -> MutexGuard<'_, Vec<i32>> {
        // Plain data: a panic elsewhere while holding the lock leaves it usable.
        self.revoked.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What waits behind the batch the stage is working on.
#[derive(Debug, Clone, Copy)]
pub struct Backlog<'a> {
    progress: &'a StageProgress,
    batch: u64,
}

impl Backlog<'_> {
    /// Whether another batch has been handed over behind this one (or is being handed over:
    /// the poll loop counts a batch before it waits for room in the queue). Read when asked, so
    /// a batch handed over while this one was being worked on counts.
    pub fn more_waiting(&self) -> bool {
        self.progress.handed.load(Ordering::Acquire)
            > self.progress.done.load(Ordering::Acquire) + self.batch
    }
}

/// The poll loop's end of the stage.
pub struct Stage<'scope> {
    batches: Option<BatchSender<InputBatch>>,
    filling: InputBatch,
    progress: &'scope StageProgress,
    thread: ScopedJoinHandle<'scope, Result<()>>,
}

impl<'scope> Stage<'scope> {
    /// Starts the stage thread. `work` is called with each batch, in order, and the
    /// [`Backlog`] behind it; `idle` when no batch came for a while (to serve delivery reports,
    /// and commit what is due). An error from either stops the stage.
    pub fn spawn<'env, W, I>(
        scope: &'scope Scope<'scope, 'env>,
        progress: &'scope StageProgress,
        mut work: W,
        mut idle: I,
    ) -> Result<Self>
    where
        W: FnMut(&InputBatch, Backlog<'_>) -> Result<()> + Send + 'scope,
        I: FnMut() -> Result<()> + Send + 'scope,
    {
        let (batches, incoming) = handoff::channel::<InputBatch>(QUEUED_BATCHES);
        let thread = std::thread::Builder::new()
            .name("processing".into())
            .spawn_scoped(scope, move || {
                let outcome = (|| loop {
                    match incoming.recv_timeout(Duration::from_millis(100)) {
                        Ok(mut batch) => {
                            let backlog = Backlog {
                                progress,
                                batch: batch.len() as u64,
                            };
                            let result = work(&batch, backlog);
                            if result.is_err() {
                                // Before `done` counts the batch: a revocation that sees it
                                // done must see that it failed.
                                progress.failed.store(true, Ordering::Release);
                            }
                            progress
                                .done
                                .fetch_add(batch.len() as u64, Ordering::AcqRel);
                            result?;
                            batch.clear();
                            incoming.give_back(batch);
                        }
                        Err(RecvTimeoutError::Timeout) => idle()?,
                        Err(RecvTimeoutError::Disconnected) => return Ok(()),
                    }
                })();
                if outcome.is_err() {
                    progress.failed.store(true, Ordering::Release);
                }
                progress.stopped.store(true, Ordering::Release);
                outcome
            })
            .map_err(Error::io("starting the processing thread"))?;
        Ok(Stage {
            batches: Some(batches),
            filling: InputBatch::default(),
            progress,
            thread,
        })
    }

    /// Copies a record into the batch being filled.
    pub fn push(&mut self, record: InputRecord<'_>) {
        self.drop_if_revoked();
        self.filling.push(record);
    }

    /// Hands the batch being filled to the stage (waiting while the stage is behind), stamped
    /// with `stamp` (the pipeline's count of revocations, `OffsetTracker::revocations`). Returns
    /// false when the stage thread has stopped; [`Stage::finish`] then says why.
    pub fn hand_over(&mut self, stamp: u64) -> bool {
        self.drop_if_revoked();
        if self.filling.is_empty() {
            return true;
        }
        self.filling.handed_at = stamp;
        let Some(batches) = &self.batches else {
            return false;
        };
        let n = self.filling.len() as u64;
        self.progress.handed.fetch_add(n, Ordering::AcqRel);
        if !batches.send(&mut self.filling) {
            self.progress.done.fetch_add(n, Ordering::AcqRel);
            self.batches = None;
            return false;
        }
        true
    }

    /// Records of a revoked partition polled before the revocation belong to the partition's
    /// next owner; they were neither produced nor tracked, so dropping them loses nothing.
    fn drop_if_revoked(&mut self) {
        // A load per record; the swap (and the lock) only after a revocation.
        if self.progress.revoked_since_seen.load(Ordering::Acquire)
            && self
                .progress
                .revoked_since_seen
                .swap(false, Ordering::AcqRel)
        {
            let revoked = std::mem::take(&mut *self.progress.revoked_partitions());
            let dropped = self.filling.drop_partitions(&revoked);
            if dropped > 0 {
                tracing::info!(
                    records = dropped,
                    "dropping records of revoked partitions polled before the revocation; their next owner reads them again"
                );
            }
        }
    }

    /// Hands over what is left (stamped as by [`Stage::hand_over`]), lets the stage finish and
    /// returns its outcome.
    pub fn finish(mut self, stamp: u64) -> Result<()> {
        self.hand_over(stamp);
        drop(self.batches.take());
        // A panic there is a bug: carry it on here rather than hide it behind an error.
        self.thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(
        offset: i64,
        key: Option<&'static [u8]>,
        payload: &'static [u8],
    ) -> InputRecord<'static> {
        InputRecord {
            partition: 3,
            offset,
            key,
            payload: Some(payload),
        }
    }

    #[test]
    fn batch_keeps_keys_and_values_apart() {
        let mut batch = InputBatch::default();
        batch.push(record(7, Some(b"k1"), b"{\"a\":1}"));
        batch.push(record(8, None, b"x"));
        let back: Vec<_> = batch.iter().collect();
        assert_eq!(back[0].key, Some(&b"k1"[..]));
        assert_eq!(back[0].payload, Some(&b"{\"a\":1}"[..]));
        assert_eq!((back[1].partition, back[1].offset), (3, 8));
        assert_eq!(back[1].key, None);
    }

    #[test]
    fn a_batch_sees_the_batches_handed_over_behind_it_and_the_last_sees_none() {
        let progress = StageProgress::default();
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let wait = std::sync::Mutex::new(wait);
        let seen = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            let mut stage = Stage::spawn(
                scope,
                &progress,
                |batch: &InputBatch, backlog: Backlog<'_>| {
                    // The first batch waits until all three are handed over.
                    if batch.iter().next().map(|r| r.offset) == Some(0) {
                        wait.lock().expect("lock").recv().expect("go");
                    }
                    seen.lock().expect("lock").push(backlog.more_waiting());
                    Ok(())
                },
                || Ok(()),
            )
            .expect("spawn");
            for offset in 0..3 {
                stage.push(record(offset, None, b"v"));
                assert!(stage.hand_over(0));
            }
            go.send(()).expect("go");
            stage.finish(0).expect("finish");
        });
        assert_eq!(*seen.lock().expect("lock"), [true, true, false]);
    }

    #[test]
    fn stage_sees_stamped_batches_in_order_and_drops_revoked_records_polled_before_a_revocation() {
        let progress = StageProgress::default();
        let seen = std::sync::Mutex::new(Vec::new());
        let stamps = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            let mut stage = Stage::spawn(
                scope,
                &progress,
                |batch: &InputBatch, _: Backlog<'_>| {
                    let mut seen = seen.lock().expect("lock");
                    seen.extend(batch.iter().map(|r| r.offset));
                    stamps.lock().expect("lock").push(batch.handed_at());
                    Ok(())
                },
                || Ok(()),
            )
            .expect("spawn");
            for offset in 0..5000 {
                stage.push(record(offset, None, b"v"));
                if offset % 100 == 99 {
                    assert!(stage.hand_over(offset as u64 / 1000));
                }
            }
            stage.push(record(5000, None, b"v"));
            stage.push(InputRecord {
                partition: 4,
                ..record(5001, None, b"kept")
            });
            assert!(progress.revoke_and_drain(&[3], Duration::from_secs(10)));
            stage.push(record(6000, None, b"v"));
            stage.finish(9).expect("stage ran");
        });
        let seen = seen.into_inner().expect("lock");
        // 5000 was polled from partition 3 before its revocation; 5001 is from partition 4, kept.
        let mut expected: Vec<i64> = (0..5000).collect();
        expected.extend([5001, 6000]);
        assert_eq!(seen, expected);
        let mut expected_stamps: Vec<u64> = (0..50).map(|batch| batch / 10).collect();
        expected_stamps.push(9);
        assert_eq!(stamps.into_inner().expect("lock"), expected_stamps);
    }

    #[test]
    fn a_failing_stage_stops_the_hand_over_reports_why_and_is_not_drained() {
        let progress = StageProgress::default();
        std::thread::scope(|scope| {
            let mut stage = Stage::spawn(
                scope,
                &progress,
                |_: &InputBatch, _: Backlog<'_>| Err(Error::Config("broken".into())),
                || Ok(()),
            )
            .expect("spawn");
            let mut handed = true;
            for offset in 0..100 {
                stage.push(record(offset, None, b"v"));
                handed = stage.hand_over(0);
                if !handed {
                    break;
                }
            }
            assert!(!handed, "hand-over notices the stopped stage");
            let err = stage.finish(0).expect_err("the stage's error");
            assert!(err.to_string().contains("broken"), "{err}");
            assert!(
                !progress.revoke_and_drain(&[3], Duration::from_secs(1)),
                "a stage that failed did not produce all it was handed"
            );
        });
    }
}
