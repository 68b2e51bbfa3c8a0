//! Exactly once: consume, clean and produce in Kafka transactions (KIP-447).
//!
//! One transactional producer per process. Every output, dead-letter and insights record is
//! produced inside a transaction, and the transaction carries the input offsets it covers with
//! the consumer's group metadata, so the results and the progress commit together or not at
//! all (`kafka::transaction` holds the rules for when). The group metadata fences a member the
//! group has moved on from: its commit fails, and so do its results.
//!
//! Failures:
//! - Abortable (a record refused, a rebalance racing a commit, a lost assignment, a revocation
//!   the stage could not drain in time): abort, so nothing of the transaction is visible, and
//!   stop the loop with [`Error::TransactionAborted`]; `run_until` starts the pipeline again,
//!   which rejoins the group and reads on from the committed offsets.
//! - Any other error that stops the run (a record the producer refused as it was handed
//!   over, say): abort too, since the transaction counts records that were never produced,
//!   and exit with that error.
//! - Fatal (fenced by a newer producer with the same transactional id, say): stop with
//!   [`Error::TransactionFailed`], exit 1. The transaction is aborted by the broker.
//!
//! Every call here blocks (librdkafka waits for the coordinator): they run on the stage's or
//! the poll loop's thread, never on the async runtime's.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};

use super::StageState;
use super::group::Consumer_;
use super::guarantee::Guarantee;
use super::produce::{Producer_, flush, publish, serve_delivery_reports};
use super::shared::Shared;
use crate::error::{Error, Result};
use crate::kafka::transaction::{Broken, Cadence, TransactionState};
use crate::metrics::OutcomeLabel;

pub(super) struct ExactlyOnce {
    pub(super) shared: Arc<Shared>,
    pub(super) producer: Arc<Producer_>,
    pub(super) input_topic: String,
    pub(super) cadence: Cadence,
    /// Upper bound for one transaction call (a commit flushes the producer first).
    pub(super) timeout: Duration,
    pub(super) state: Mutex<TransactionState>,
    /// Transactions committed, and the time their commits took, for the run's summary.
    pub(super) commits: Mutex<(u64, Duration, Duration)>,
}

impl ExactlyOnce {
    fn state(&self) -> MutexGuard<'_, TransactionState> {
        // Plain data: a panic elsewhere while holding the lock leaves it usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Why the pipeline must stop, once it must.
    fn stopped(state: &TransactionState) -> Result<()> {
        match state.broken() {
            None => Ok(()),
            Some(Broken::Failed(why)) => Err(Error::TransactionFailed(why.clone())),
            Some(Broken::Aborted(why)) => Err(Error::TransactionAborted(why.clone())),
        }
    }

    /// Begins a transaction unless one is open.
    fn open(&self, state: &mut TransactionState) -> Result<()> {
        Self::stopped(state)?;
        if state.open(Instant::now())
            && let Err(e) = self.producer.begin_transaction()
        {
            self.fail(state, "beginning a transaction", e);
        }
        Self::stopped(state)
    }

    /// Commits the open transaction with its input offsets. Returns false when it failed (and
    /// was aborted, or failed for good).
    fn commit(&self, consumer: &Consumer_, state: &mut TransactionState) -> bool {
        if state.broken().is_some() {
            return false;
        }
        if !state.is_open() {
            return true;
        }
        let started = Instant::now();
        let offsets = state.offsets();
        let sent = if offsets.is_empty() {
            // Only insights in it: no input offsets to send.
            Ok(())
        } else {
            let mut list = TopicPartitionList::with_capacity(offsets.len());
            for (partition, next) in &offsets {
                if let Err(e) =
                    list.add_partition_offset(&self.input_topic, *partition, Offset::Offset(*next))
                {
                    self.fail(state, "listing the offsets to commit", e);
                    return false;
                }
            }
            match consumer.group_metadata() {
                Some(group) => {
                    self.producer
                        .send_offsets_to_transaction(&list, &group, self.timeout)
                }
                None => {
                    let why = "the consumer has no group metadata".to_owned();
                    self.break_off(state, Broken::Aborted(why));
                    return false;
                }
            }
        };
        // Flushed here, not by `commit_transaction`'s own flush: see `produce::flush`.
        let committed = sent
            .and_then(|()| flush(&self.producer, self.timeout))
            .and_then(|()| self.producer.commit_transaction(self.timeout));
        self.count_commit(committed.is_ok());
        match committed {
            Ok(()) => {
                state.committed();
                let took = started.elapsed();
                self.shared
                    .metrics
                    .transaction_commit_duration
                    .observe(took.as_secs_f64());
                let mut commits = self.commits.lock().unwrap_or_else(|e| e.into_inner());
                commits.0 += 1;
                commits.1 += took;
                commits.2 = commits.2.max(took);
                tracing::debug!(?offsets, "transaction committed");
                true
            }
            Err(e) => {
                self.fail(state, "committing the transaction", e);
                false
            }
        }
    }

    fn count_commit(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.shared
            .metrics
            .commits
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// A transaction call failed: abort unless the producer failed for good.
    fn fail(&self, state: &mut TransactionState, doing: &str, error: KafkaError) {
        let fatal = matches!(&error, KafkaError::Transaction(e) if e.is_fatal());
        let why = format!("{doing}: {error}");
        self.break_off(
            state,
            if fatal {
                Broken::Failed(why)
            } else {
                Broken::Aborted(why)
            },
        );
    }

    /// Aborts the open transaction (unless the producer is beyond that) and stops the
    /// pipeline: what it held is discarded, and the restart reads it again.
    fn break_off(&self, state: &mut TransactionState, why: Broken) {
        if state.broken().is_some() {
            return;
        }
        let was_open = state.is_open();
        let discarded = state.break_off(why.clone());
        self.shared.metrics.aborted_transactions.inc();
        match why {
            Broken::Aborted(reason) => {
                if was_open && let Err(e) = self.abort() {
                    tracing::error!(error = %e, "aborting the transaction failed; the broker aborts it at transaction.timeout.ms");
                }
                tracing::warn!(
                    records = discarded,
                    %reason,
                    "transaction aborted: its results are discarded and the pipeline reads on from the committed offsets"
                );
            }
            Broken::Failed(reason) => tracing::error!(
                records = discarded,
                %reason,
                "the transactional producer failed for good; its open transaction is aborted by the broker"
            ),
        }
    }

    /// Aborts the open transaction, serving the producer's delivery reports while it waits.
    ///
    /// librdkafka's abort purges the records still queued and then waits until the report of
    /// every record handed to it has been served, purged or not. Once the stage has stopped,
    /// nothing else serves them, and an abort that only waited ran out its whole timeout with
    /// the reports unserved (among them the one naming the record the broker refused, which
    /// is why the transaction had to abort). An abort that timed out may be called again and
    /// goes on where it was (librdkafka's rule), so it runs in short steps with the reports
    /// served between them, up to `timeout` in all. Only its own time running out is retried:
    /// any other error (a commit still pending after it timed out, which an abort conflicts
    /// with) would come back at every step until the deadline.
    fn abort(&self) -> Result<(), KafkaError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            match self.producer.abort_transaction(ABORT_STEP) {
                Err(KafkaError::Transaction(e))
                    if e.code() == RDKafkaErrorCode::OperationTimedOut
                        && Instant::now() < deadline =>
                {
                    self.producer.poll(ABORT_STEP / 10);
                    serve_delivery_reports(&self.producer, &self.shared);
                }
                done => return done,
            }
        }
    }
}

/// How long one step of an abort waits before the delivery reports are served again.
const ABORT_STEP: Duration = Duration::from_millis(100);

impl Guarantee for ExactlyOnce {
    /// Every record is tracked: a revocation that could not wait for the stage, or a lost
    /// assignment, aborts the transaction that would hold its partitions' stale records.
    fn track(&self, partition: i32, offset: i64, _handed_at: u64) -> Result<bool> {
        let mut state = self.state();
        self.open(&mut state)?;
        state.handled(partition, offset, Instant::now());
        Ok(true)
    }

    fn commit_due(&self) -> bool {
        self.state().due(Instant::now(), self.cadence)
    }

    /// Insights ride in the transaction: a snapshot is visible exactly when the results of
    /// the events it counts are. It is encoded here, on the stage's thread (a few ms every
    /// insights interval), since the transaction must not commit before it is produced.
    fn settle(&self, consumer: &Consumer_, stage: &mut StageState<'_>) -> Result<()> {
        let mut state = self.state();
        if let Some(c) = stage.checkpointer.as_mut().filter(|c| c.due()) {
            self.open(&mut state)?;
            let sent = c.take(stage.processor, false).and_then(|taken| {
                publish(taken, &c.publishing.topic, &self.producer, &self.shared)
            });
            if let Err(e) = sent {
                self.shared.metrics.insights_publish_failures.inc();
                tracing::error!(error = %e, "insights checkpoint failed; the next one carries its counts");
            }
        }
        // Records still held are counted in the transaction but not yet produced: it waits
        // for them (the stage releases them after its next batch, `commit_due`).
        if state.due(Instant::now(), self.cadence) && stage.held.is_empty() {
            self.commit(consumer, &mut state);
        }
        Self::stopped(&state)
    }

    fn revoke(&self, consumer: &Consumer_, partitions: &[i32], drained: bool, lost: bool) {
        let mut state = self.state();
        if lost {
            // The group moved on: the commit would be fenced; the partitions' next owner
            // starts from the last committed transaction.
            let why = format!("the assignment of partitions {partitions:?} was lost");
            self.break_off(&mut state, Broken::Aborted(why));
        } else if !drained {
            // Records of the revoked partitions may still be produced after the commit below,
            // and committed later under a generation that no longer owns them.
            let why = if self.shared.stage.has_failed() {
                "the processing stage stopped on an error before a revocation"
            } else {
                "the processing stage did not finish its batches in time for a revocation"
            };
            self.break_off(&mut state, Broken::Aborted(why.into()));
        } else if self.commit(consumer, &mut state) {
            tracing::info!(
                ?partitions,
                "revoked partitions' results and offsets committed"
            );
        }
    }

    fn abandon(&self, why: &str) {
        self.break_off(&mut self.state(), Broken::Aborted(why.to_owned()));
    }

    fn finish(&self, consumer: &Consumer_, stage: &mut StageState<'_>) -> usize {
        let mut state = self.state();
        if state.broken().is_some() {
            return 0;
        }
        if !stage.held.is_empty() {
            // The stage's last batch had nothing behind it and released: a bug if not. Abort
            // rather than commit offsets of records never produced.
            debug_assert!(false, "records held when the stage finished");
            let why = format!(
                "{} records were still held when the stage finished",
                stage.held.len()
            );
            tracing::error!(%why, "not committing: a bug");
            self.break_off(&mut state, Broken::Aborted(why));
            return 0;
        }
        if let Some(c) = &mut stage.checkpointer {
            let published = self.open(&mut state).and_then(|()| {
                c.take(stage.processor, true).and_then(|taken| {
                    publish(taken, &c.publishing.topic, &self.producer, &self.shared)
                })
            });
            if let Err(e) = published {
                tracing::error!(error = %e, "publishing the final insights failed");
            }
        }
        tracing::info!("stopping: committing the open transaction");
        self.commit(consumer, &mut state);
        let (count, total, longest) = *self.commits.lock().unwrap_or_else(|e| e.into_inner());
        // The stage produces nothing while a commit runs: their share of the run is the cost.
        tracing::info!(
            transactions = count,
            mean_commit_ms = format!("{:.1}", total.as_secs_f64() * 1e3 / count.max(1) as f64),
            longest_commit_ms = longest.as_millis() as u64,
            total_commit_ms = total.as_millis() as u64,
            "transactions committed"
        );
        0
    }
}
