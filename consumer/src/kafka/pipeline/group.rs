//! The consumer group side: the revocation protocol (drain the stage, then let the guarantee
//! make the revoked partitions' progress durable), readiness on assignment, lag from
//! statistics, offset commits, and leaving the group before the consumer closes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};

use super::guarantee::Guarantee;
use super::shared::Shared;
use crate::kafka::client_log;
use crate::metrics::{Client, OutcomeLabel, PartitionLabel};

/// The pipeline's consumer.
pub(super) type Consumer_ = BaseConsumer<GroupContext>;

/// The consumer's context: commits on revocation, readiness, lag from statistics.
pub(super) struct GroupContext {
    pub(super) shared: Arc<Shared>,
    pub(super) guarantee: Arc<dyn Guarantee>,
    pub(super) input_topic: String,
    pub(super) flush_timeout: Duration,
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        client_log::log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        client_log::error(error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        let emission = self.shared.requests().consumer.update(&statistics);
        self.shared
            .metrics
            .count_requests(Client::Consumer, &emission);
        self.shared.consumer_brokers.observe(&statistics);
        if let Some(group) = &statistics.cgrp {
            let stuck = crate::health::group_stuck(&group.state, group.stateage);
            if self.shared.health.set_group_stuck(stuck) {
                tracing::error!(
                    state = %group.state,
                    seconds = group.stateage / 1000,
                    "the consumer has been without its group coordinator for too long; /healthz fails so that it is restarted"
                );
            }
        }
        let Some(topic) = statistics.topics.get(&self.input_topic) else {
            return;
        };
        let mut total = 0;
        for (partition, p) in &topic.partitions {
            // librdkafka reports -1 for partitions it does not consume and for unknown lag.
            if *partition < 0 || p.consumer_lag < 0 {
                continue;
            }
            total += p.consumer_lag;
            self.shared
                .metrics
                .consumer_lag
                .get_or_create(&PartitionLabel {
                    topic: self.input_topic.clone(),
                    partition: *partition,
                })
                .set(p.consumer_lag);
        }
        self.shared.metrics.total_lag.set(total);
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        let partitions: Vec<i32> = revoked
            .elements_for_topic(&self.input_topic)
            .iter()
            .map(|e| e.partition())
            .collect();
        let _span = tracing::info_span!("revoke", ?partitions).entered();
        let lost = consumer.assignment_lost();
        tracing::info!(
            ?partitions,
            lost,
            "partitions revoked: committing their progress"
        );
        let drained = self
            .shared
            .stage
            .revoke_and_drain(&partitions, self.flush_timeout);
        if !drained && self.shared.stage.has_failed() {
            tracing::warn!(
                "the processing stage stopped on an error; the records it did not produce will be reprocessed by the next owner"
            );
        } else if !drained {
            tracing::warn!(
                "the processing stage did not finish its batches in time; their records will be reprocessed by the next owner"
            );
        }
        self.guarantee.revoke(consumer, &partitions, drained, lost);
        self.shared.health.set_ready(false);
        // Incremental (cooperative) revocations keep the rest of the assignment.
        let before = consumer.assignment().map_or(0, |a| a.count());
        self.shared
            .metrics
            .assigned_partitions
            .set(before.saturating_sub(revoked.count()) as i64);
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(assigned) => {
                let n = assigned.count();
                // With cooperative assignment `assigned` is what was added, not all there is.
                let total = consumer.assignment().map_or(n, |a| a.count());
                tracing::info!(partitions = n, total, "partitions assigned");
                self.shared.metrics.assigned_partitions.set(total as i64);
                // A member left without partitions (more replicas than partitions, or a new
                // pod surging in a rolling update) is a ready standby: requiring a partition
                // would keep it unready for good and stall the Deployment's rollout.
                self.shared.health.set_ready(true);
            }
            Rebalance::Error(e) => tracing::error!(error = %e, "rebalance failed"),
            Rebalance::Revoke(_) => {}
        }
    }
}

/// Marks the offsets of a failed commit to be sent again.
fn mark_failed(shared: &Shared, offsets: &TopicPartitionList) {
    let mut tracker = shared.tracker();
    for e in offsets.elements() {
        if let Offset::Offset(offset) = e.offset() {
            tracker.commit_failed(e.partition(), offset);
        }
    }
}

/// Commits the acknowledged offsets (of `only` these partitions, or all), synchronously.
/// Returns false when the commit failed; its offsets are sent again with the next.
///
/// Never async: rust-rdkafka's BaseConsumer never reports the outcome of an async commit
/// (fede1024/rust-rdkafka#856), so a commit refused during a rebalance was lost silently, its
/// offsets marked as committed and never sent again. A sync commit on loopback costs about a
/// millisecond a second.
pub(super) fn commit<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    shared: &Shared,
    topic: &str,
    only: Option<&[i32]>,
) -> bool {
    let offsets = {
        let mut tracker = shared.tracker();
        match only {
            Some(partitions) => tracker.take_commits_for(partitions),
            None => tracker.take_commits(),
        }
    };
    if offsets.is_empty() {
        return true;
    }
    let _span = tracing::info_span!("commit", partitions = offsets.len()).entered();
    let mut list = TopicPartitionList::with_capacity(offsets.len());
    for (partition, next) in &offsets {
        if let Err(e) = list.add_partition_offset(topic, *partition, Offset::Offset(*next)) {
            tracing::warn!(error = %e, partition, "cannot build commit");
        }
    }
    let result = consumer.commit(&list, CommitMode::Sync);
    let outcome = if result.is_ok() { "ok" } else { "error" };
    shared
        .metrics
        .commits
        .get_or_create(&OutcomeLabel { outcome })
        .inc();
    match result {
        Ok(()) => true,
        Err(e) => {
            // Not fatal: the offsets are sent again with the next commit.
            tracing::warn!(error = %e, "offset commit failed");
            mark_failed(shared, &list);
            false
        }
    }
}

/// Leaves the group before the consumer is closed: unsubscribes, then serves the revocation
/// here, in an ordinary poll, until nothing is assigned.
///
/// Closing a member that still holds partitions makes librdkafka run the revocation inside
/// the close, and a close that receives an assignment meanwhile (another replica leaving at the
/// same moment) can wait forever in the unassign (confluentinc/librdkafka#4527, #4884, seen
/// with cooperative-sticky). Once unsubscribed, no assignment can arrive, and the close has
/// nothing left to revoke; that made the hang rare, not impossible, so the close itself is
/// bounded too ([`close_within`]). Records fetched before the revocation are dropped
/// uncommitted: their next owner reads them.
pub(super) fn leave_group<C: ConsumerContext>(consumer: &BaseConsumer<C>, timeout: Duration) {
    consumer.unsubscribe();
    let deadline = Instant::now() + timeout;
    loop {
        match consumer.assignment() {
            Ok(assigned) if assigned.count() == 0 => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the assignment while leaving the group");
                return;
            }
            Ok(_) if Instant::now() >= deadline => {
                tracing::warn!(
                    "the revocation did not come in time; the consumer's close revokes what is left"
                );
                return;
            }
            Ok(_) => {
                let _ = consumer.poll(Duration::from_millis(100));
            }
        }
    }
}

/// Closes the consumer (by dropping it), giving up after `timeout`. librdkafka's close can
/// still wait forever in its own unassign after [`leave_group`] (confluentinc/librdkafka#4884;
/// seen once in CI with eager assignment, the process alive and idle 15 minutes after its
/// SIGTERM). Everything durable is done by then: a close left behind only leaves the group to
/// notice at its session timeout, which beats a pod that never stops.
pub(super) fn close_within<C>(consumer: BaseConsumer<C>, timeout: Duration)
where
    C: ConsumerContext + 'static,
{
    let (closed, done) = std::sync::mpsc::channel();
    let closing = std::thread::Builder::new()
        .name("consumer-close".into())
        .spawn(move || {
            drop(consumer);
            let _ = closed.send(());
        });
    if let Err(e) = closing {
        tracing::warn!(error = %e, "cannot start a thread to close the consumer; not closing it");
        return;
    }
    if done.recv_timeout(timeout).is_err() {
        tracing::warn!(
            ?timeout,
            "the consumer's close did not finish in time; leaving it (confluentinc/librdkafka#4884)"
        );
    }
}
