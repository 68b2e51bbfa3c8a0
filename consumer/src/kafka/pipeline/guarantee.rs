//! The seam between the loop and the delivery guarantee: how progress becomes durable.
//!
//! The loop, the processing stage and the revocation callback do the same work in both modes
//! (poll, clean, produce, drain on revocation); they differ only in what makes that work
//! count. [`AtLeastOnce`] commits input offsets once the broker acknowledged what was made
//! from them; `ExactlyOnce` (in `exactly_once`) commits them inside the transaction that holds
//! what was made from them.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::StageState;
use super::group::{Consumer_, commit};
use super::produce::{Producer_, flush, publish};
use super::shared::Shared;
use crate::error::{Error, Result};
use crate::kafka::offsets::DeliveryToken;
use crate::metrics::Unsettled;

/// What each guarantee does at the loop's few decision points.
pub(super) trait Guarantee: Send + Sync {
    /// The record at `offset` of `partition`, from a batch stamped `handed_at`, is about to be
    /// processed and produced. False when the record is no longer this replica's: its
    /// partition was given away after its batch was handed over (`OffsetTracker::track`).
    fn track(&self, partition: i32, offset: i64, handed_at: u64) -> Result<bool>;

    /// On the stage thread after each batch and when idle: send an insights checkpoint when
    /// one is due or asked for, and commit what is due. An error stops the stage.
    fn settle(&self, consumer: &Consumer_, state: &mut StageState<'_>) -> Result<()>;

    /// Whether a commit is due, so the stage hands over everything it holds first: only
    /// exactly once commits in [`Guarantee::settle`], and its transaction commits the offsets
    /// of every record handled before it. (`settle` commits only once nothing is held: a commit
    /// that fell due after this was asked waits for the next batch's release.)
    fn commit_due(&self) -> bool {
        false
    }

    /// How often [`Guarantee::tick`] runs; `None`, never.
    fn tick_interval(&self) -> Option<Duration> {
        None
    }

    /// Every tick interval, on a thread of its own: commit what is due. A commit waits while
    /// the group coordinator is unknown (librdkafka holds it until one is found, with no
    /// timeout), and the poll loop must not: it serves the consumer's statistics, which tell
    /// when the consumer has lost every broker and must be given them back before any
    /// coordinator can be found (`kafka::rebootstrap`).
    fn tick(&self, _consumer: &Consumer_) {}

    /// `partitions` are revoked, or `lost` (the group went on without this member). The
    /// stage has finished what it was handed, unless `drained` is false.
    fn revoke(&self, consumer: &Consumer_, partitions: &[i32], drained: bool, lost: bool);

    /// Shutdown or a fatal error, once the stage has finished: publish the final insights and
    /// make everything done durable. Returns how many records were left out (reprocessed by
    /// the partitions' next owner).
    fn finish(&self, consumer: &Consumer_, state: &mut StageState<'_>) -> usize;

    /// The run stopped on an error (`why`): the open transaction may count records that were
    /// never produced, so abort it before [`Guarantee::finish`], which then neither publishes
    /// into it nor commits it. Only exactly once has transactions.
    fn abandon(&self, _why: &str) {}
}

/// Returns the token, or the error naming the record it cannot be made for.
pub(super) fn token(partition: i32, offset: i64, dead_letter: bool) -> Result<usize> {
    DeliveryToken {
        partition,
        offset,
        dead_letter,
    }
    .encode()
    .ok_or_else(|| {
        Error::Config(format!(
            "input partition {partition} offset {offset} is beyond what the offset tracker supports (partitions < 65536, offsets < 2^47)"
        ))
    })
}

/// At least once: an offset is committed once the broker acknowledged the record made from it
/// (and, when publishing, once published insights count it), on the commit interval, on
/// revocation and at shutdown. The idempotent producer's retries add no duplicates; a crash or
/// a commit lost to a rebalance makes the next owner produce some records again.
pub(super) struct AtLeastOnce {
    pub(super) shared: Arc<Shared>,
    pub(super) producer: Arc<Producer_>,
    pub(super) input_topic: String,
    pub(super) commit_interval: Duration,
    pub(super) flush_timeout: Duration,
    /// Held through each commit: the tick's thread and the poll loop (revocations, shutdown)
    /// both commit, and a commit of older offsets must not land after a newer one.
    pub(super) committing: Mutex<()>,
}

impl AtLeastOnce {
    /// Commits the acknowledged offsets (of `only` these partitions, or all); false when the
    /// commit failed.
    fn commit(&self, consumer: &Consumer_, only: Option<&[i32]>) -> bool {
        let _one_at_a_time = self.committing.lock().unwrap_or_else(|e| e.into_inner());
        commit(consumer, &self.shared, &self.input_topic, only)
    }
}

impl Guarantee for AtLeastOnce {
    fn track(&self, partition: i32, offset: i64, handed_at: u64) -> Result<bool> {
        Ok(self.shared.tracker().track(partition, offset, handed_at))
    }

    /// Takes a checkpoint when the interval has passed or a revocation asks for one. Its
    /// snapshots are encoded and sent from the insights thread, so the stage goes on
    /// meanwhile; offsets wait for their acknowledgement (`OffsetTracker::cover`).
    fn settle(&self, _consumer: &Consumer_, state: &mut StageState<'_>) -> Result<()> {
        let Some(c) = &mut state.checkpointer else {
            return Ok(());
        };
        // Requests up to `asked` are answered by this checkpoint: it is taken after them.
        let asked = self.shared.checkpoints_asked.load(Ordering::Acquire);
        if asked <= state.asked_answered && !c.due() {
            return Ok(());
        }
        state.asked_answered = asked;
        let (producer, shared, topic) = (
            self.producer.clone(),
            self.shared.clone(),
            c.publishing.topic.clone(),
        );
        c.take_then(state.processor, move |taken| {
            let sent = taken.and_then(|taken| publish(taken, &topic, &producer, &shared));
            if let Err(e) = sent {
                shared.metrics.insights_publish_failures.inc();
                tracing::error!(error = %e, "insights checkpoint failed; commits wait for the next one");
            }
            // Callbacks run in order on the insights thread: answers only grow.
            shared.checkpoints_answered.fetch_max(asked, Ordering::AcqRel);
        });
        Ok(())
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(self.commit_interval)
    }

    fn tick(&self, consumer: &Consumer_) {
        self.commit(consumer, None);
    }

    /// Every way this can leave progress uncommitted is logged and counted
    /// ([`Unsettled`]): without one, the next owner starts exactly after what was produced.
    fn revoke(&self, consumer: &Consumer_, partitions: &[i32], drained: bool, lost: bool) {
        let unsettled = |why: Unsettled| self.shared.metrics.count_unsettled(why);
        if lost {
            // The group has given the partitions to others already: a commit now would be
            // refused (or, worse, move their new owner's position).
            tracing::warn!(
                ?partitions,
                "assignment lost; what was produced since the last commit is produced again by the partitions' next owner"
            );
            unsettled(Unsettled::Lost);
            self.shared.tracker().forget(partitions);
            return;
        }
        if !drained {
            // The loop's context has logged it. Records of these partitions the stage had
            // begun are produced after the commit below, and their next owner produces them
            // again; the stage leaves the rest to it, and the tracker commits none of them
            // (`OffsetTracker::forget`).
            unsettled(Unsettled::NotDrained);
        }
        // The insights counting these partitions' events must be published before their
        // offsets can be committed.
        if self.shared.publishing && !self.shared.checkpoint_now(self.flush_timeout) {
            tracing::warn!(
                "no insights checkpoint in time; the next owner reprocesses what the last published snapshot does not count"
            );
            unsettled(Unsettled::NoInsightsCheckpoint);
        }
        // Everything produced so far must be acknowledged before its offsets can be committed
        // for the next owner of these partitions.
        if let Err(e) = flush(&self.producer, self.flush_timeout) {
            tracing::warn!(error = %e, "flush on revocation timed out; unacknowledged records will be reprocessed by the next owner");
            unsettled(Unsettled::FlushTimeout);
        }
        // The partitions' next owner starts from this commit: a failure here (a rebalance
        // racing it, a coordinator moving) would make it reprocess what was produced.
        let mut committed = false;
        for attempt in 1..=3 {
            committed = self.commit(consumer, Some(partitions));
            if committed {
                break;
            }
            std::thread::sleep(Duration::from_millis(100 * attempt));
        }
        if !committed {
            tracing::warn!(
                ?partitions,
                "could not commit the revoked partitions' offsets; their next owner reprocesses from the last commit (duplicates)"
            );
            unsettled(Unsettled::CommitFailed);
        }
        self.shared.tracker().forget(partitions);
    }

    fn finish(&self, consumer: &Consumer_, state: &mut StageState<'_>) -> usize {
        if let Some(c) = &mut state.checkpointer {
            let published = c.take(state.processor, true).and_then(|taken| {
                publish(taken, &c.publishing.topic, &self.producer, &self.shared)
            });
            if let Err(e) = published {
                tracing::error!(error = %e, "publishing the final insights failed");
            }
        }
        tracing::info!(
            in_flight = self.shared.tracker().in_flight(),
            "stopping: flushing producer"
        );
        if let Err(e) = flush(&self.producer, self.flush_timeout) {
            tracing::warn!(error = %e, "flush timed out; unacknowledged records will be reprocessed");
        }
        self.commit(consumer, None);
        self.shared.tracker().in_flight()
    }
}
