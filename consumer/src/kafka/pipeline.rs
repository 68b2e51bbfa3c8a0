//! The Kafka loop: consume a batch, clean it, produce every record, commit what is acknowledged.
//!
//! At least once: an input offset is committed only after the broker acknowledged the output
//! or dead-letter record made from it ([`OffsetTracker`]); offsets are committed on an interval,
//! on partition revocation (after flushing the producer) and at shutdown. The producer is
//! idempotent, so its own retries add no duplicates.
//!
//! Two threads share the work, with rdkafka's polled clients: the poll loop takes records from
//! the consumer and copies them into batches; the processing stage (`kafka::stage`) cleans
//! each batch, hands the results to the producer (which batches on its own) and serves the
//! delivery reports. Neither waits on the other per record. The `--passthrough` baseline runs
//! everything on the poll loop's thread, as the whole pipeline did before the stage existed.
//!
//! With insights publishing on, the stage also takes checkpoints (`kafka::checkpoint`) and an
//! offset is committed only once a published snapshot counts its event.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};

use super::checkpoint::{Checkpointer, InsightsPublishing, Ledger, Taken};
use super::client_log;
use super::config::KafkaSettings;
use super::offsets::{Delivered, DeliveryToken, OffsetTracker};
use super::stage::{InputBatch, InputRecord, Stage, StageProgress};
use crate::dead_letter::{self, Source};
use crate::error::{Error, Result};
use crate::health::Health;
use crate::insights::Throughput;
use crate::metrics::{Metrics, OutcomeLabel, PartitionLabel};
use crate::processor::{Processor, Routed};
use crate::telemetry::Shutdown;

/// What the pipeline reads, writes and how.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub kafka: KafkaSettings,
    pub group_id: String,
    pub input_topic: String,
    pub output_topic: String,
    pub dead_letter_topic: String,
    /// Records taken from the consumer per batch.
    pub batch_size: usize,
    /// How often acknowledged offsets are committed.
    pub commit_interval: Duration,
    /// Upper bound for flushing the producer at shutdown or revocation.
    pub flush_timeout: Duration,
    /// Stop after this many records.
    pub max_records: Option<u64>,
    /// Copy records unchanged (the benchmarks' baseline): same clients, no processing.
    pub passthrough: bool,
    /// Publish the insights to a topic (ignored with `passthrough`).
    pub insights: Option<InsightsPublishing>,
}

/// What a run did.
#[derive(Debug, Clone, Copy)]
pub struct RunSummary {
    pub throughput: Throughput,
    /// Records still unacknowledged at exit; their offsets were not committed.
    pub unacknowledged: usize,
}

/// State shared by the loop and the client callbacks.
struct Shared {
    tracker: Mutex<OffsetTracker>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    /// The first permanent delivery failure; stops the loop.
    failure: Mutex<Option<String>>,
    /// Delivery reports served so far, to tell when the producer's queue of reports is drained.
    reports: AtomicU64,
    /// How far the processing stage has got, for revocations to wait on.
    stage: StageProgress,
    /// Insights checkpoints sent and not yet acknowledged.
    ledger: Mutex<Ledger>,
    /// Whether insights are published (and commits wait for them).
    publishing: bool,
    /// Checkpoints asked for (by revocations), numbered from 1.
    checkpoints_asked: AtomicU64,
    /// The highest request number a sent checkpoint was taken after. A revocation waits for
    /// its own number: a checkpoint taken before it (an interval's, still being encoded) does
    /// not count what the stage finished for the revocation, and committing on it would hand
    /// the partitions over behind what was produced.
    checkpoints_answered: AtomicU64,
}

impl Shared {
    fn tracker(&self) -> MutexGuard<'_, OffsetTracker> {
        // A poisoned lock means a callback panicked; the data is still consistent enough to
        // keep committing conservatively, so recover rather than abort.
        self.tracker.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the stage for a checkpoint and waits until it is sent, up to `timeout`. Once the
    /// stage has stopped (at shutdown, when the final checkpoint is taken), nothing waits.
    fn checkpoint_now(&self, timeout: Duration) -> bool {
        let ticket = self.checkpoints_asked.fetch_add(1, Ordering::AcqRel) + 1;
        let deadline = Instant::now() + timeout;
        while self.checkpoints_answered.load(Ordering::Acquire) < ticket {
            if self.stage.is_stopped() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }
}

/// The producer's context: turns delivery reports into acknowledgements.
struct DeliveryContext {
    shared: Arc<Shared>,
}

impl ClientContext for DeliveryContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        client_log::log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        client_log::error(error, reason);
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        self.shared.reports.fetch_add(1, Ordering::Relaxed);
        let token = match Delivered::decode(opaque) {
            Delivered::Record(token) => token,
            Delivered::Checkpoint(number) => return self.checkpoint_delivery(result, number),
        };
        match result {
            Ok(_) => {
                if token.dead_letter {
                    self.shared.metrics.dead_letter_produced.inc();
                } else {
                    self.shared.metrics.produced.inc();
                }
                self.shared.tracker().ack(token.partition, token.offset);
            }
            Err((error, message)) => {
                self.shared.metrics.delivery_failures.inc();
                let text = format!(
                    "the broker refused the record for input partition {} offset {} on topic {}: {error}",
                    token.partition,
                    token.offset,
                    message.topic()
                );
                tracing::error!("{text}");
                let mut failure = self
                    .shared
                    .failure
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                failure.get_or_insert(text);
            }
        }
    }
}

impl DeliveryContext {
    fn checkpoint_delivery(&self, result: &DeliveryResult<'_>, number: u64) {
        match result {
            Ok(_) => {
                let coverage = self.shared.ledger().delivered(number);
                if let Some(coverage) = coverage {
                    self.shared.metrics.insights_published.inc();
                    let mut tracker = self.shared.tracker();
                    for (partition, next) in coverage {
                        tracker.cover(partition, next);
                    }
                }
            }
            Err((error, message)) => {
                self.shared.ledger().failed(number);
                self.shared.metrics.insights_publish_failures.inc();
                tracing::error!(
                    topic = message.topic(), %error,
                    "publishing the insights failed; offsets are committed only up to the last published snapshot, the next one will try again"
                );
            }
        }
    }
}

type Producer_ = BaseProducer<DeliveryContext>;

/// The consumer's context: commits on revocation, readiness, lag from statistics.
struct GroupContext {
    shared: Arc<Shared>,
    producer: Arc<Producer_>,
    input_topic: String,
    flush_timeout: Duration,
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        client_log::log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        client_log::error(error, reason);
    }

    fn stats(&self, statistics: Statistics) {
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
        tracing::info!(?partitions, "partitions revoked: flushing and committing");
        if !self
            .shared
            .stage
            .revoke_and_drain(&partitions, self.flush_timeout)
        {
            tracing::warn!(
                "the processing stage did not finish its batches in time; their records will be reprocessed by the next owner"
            );
        }
        // The insights counting these partitions' events must be published before their
        // offsets can be committed.
        if self.shared.publishing && !self.shared.checkpoint_now(self.flush_timeout) {
            tracing::warn!(
                "no insights checkpoint in time; the next owner reprocesses what the last published snapshot does not count"
            );
        }
        // Everything produced so far must be acknowledged before its offsets can be committed
        // for the next owner of these partitions.
        if let Err(e) = self.producer.flush(self.flush_timeout) {
            tracing::warn!(error = %e, "flush on revocation timed out; unacknowledged records will be reprocessed by the next owner");
        }
        // The partitions' next owner starts from this commit: a failure here (a rebalance
        // racing it, a coordinator moving) would make it reprocess what was produced.
        let mut committed = false;
        for attempt in 1..=3 {
            committed = commit(
                consumer,
                &self.shared,
                &self.input_topic,
                Some(&partitions),
                CommitMode::Sync,
            );
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
        }
        self.shared.tracker().forget(&partitions);
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

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        let outcome = if result.is_ok() { "ok" } else { "error" };
        self.shared
            .metrics
            .commits
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
        if let Err(e) = result {
            tracing::warn!(error = %e, offsets = ?offsets.to_topic_map(), "offset commit failed; it is sent again with the next commit");
            mark_failed(&self.shared, offsets);
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

/// Commits the acknowledged offsets (of `only` these partitions, or all). Returns false when
/// the commit could not be sent or, for a synchronous one, failed.
fn commit<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    shared: &Shared,
    topic: &str,
    only: Option<&[i32]>,
    mode: CommitMode,
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
    let _span = tracing::info_span!(
        "commit",
        partitions = offsets.len(),
        sync = matches!(mode, CommitMode::Sync)
    )
    .entered();
    let mut list = TopicPartitionList::with_capacity(offsets.len());
    for (partition, next) in &offsets {
        if let Err(e) = list.add_partition_offset(topic, *partition, Offset::Offset(*next)) {
            tracing::warn!(error = %e, partition, "cannot build commit");
        }
    }
    let result = consumer.commit(&list, mode);
    if matches!(mode, CommitMode::Sync) {
        // The commit callback never sees a sync commit: count its outcome here.
        let outcome = if result.is_ok() { "ok" } else { "error" };
        shared
            .metrics
            .commits
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }
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

/// Runs the pipeline on the current thread until `shutdown` is triggered or delivery fails for
/// good.
pub fn run(
    config: &PipelineConfig,
    processor: &mut Processor,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: &Shutdown,
) -> Result<RunSummary> {
    let _span =
        tracing::info_span!("pipeline", group = %config.group_id, input = %config.input_topic)
            .entered();
    let publishing = config.insights.as_ref().filter(|_| !config.passthrough);
    let shared = Arc::new(Shared {
        tracker: Mutex::new(if publishing.is_some() {
            OffsetTracker::gated_by_insights()
        } else {
            OffsetTracker::default()
        }),
        metrics: metrics.clone(),
        health: health.clone(),
        failure: Mutex::new(None),
        reports: AtomicU64::new(0),
        stage: StageProgress::default(),
        ledger: Mutex::new(Ledger::default()),
        publishing: publishing.is_some(),
        checkpoints_asked: AtomicU64::new(0),
        checkpoints_answered: AtomicU64::new(0),
    });
    let producer: Arc<Producer_> = Arc::new(
        config
            .kafka
            .producer()
            .create_with_context(DeliveryContext {
                shared: shared.clone(),
            })
            .map_err(|e| Error::Config(format!("producer settings: {e}")))?,
    );
    let consumer: BaseConsumer<GroupContext> = config
        .kafka
        .consumer(&config.group_id)
        .create_with_context(GroupContext {
            shared: shared.clone(),
            producer: producer.clone(),
            input_topic: config.input_topic.clone(),
            flush_timeout: config.flush_timeout,
        })
        .map_err(|e| Error::Config(format!("consumer settings: {e}")))?;
    require_topics(&producer, config)?;
    consumer
        .subscribe(&[&config.input_topic])
        .map_err(Error::kafka(format!(
            "subscribing to {}",
            config.input_topic
        )))?;
    tracing::info!(
        input = %config.input_topic, output = %config.output_topic, dead_letter = %config.dead_letter_topic,
        group = %config.group_id, "pipeline started"
    );

    let mut first_record: Option<Instant> = None;
    let mut consumed = 0u64;
    let mut last_commit = Instant::now();
    let stage_state = Mutex::new(StageState {
        processor,
        checkpointer: publishing.cloned().map(Checkpointer::new),
        asked_answered: 0,
    });
    let outcome: Result<()> = std::thread::scope(|scope| {
        let mut stage = if config.passthrough {
            None
        } else {
            let publish_to = (producer.clone(), shared.clone());
            let idle_publish_to = publish_to.clone();
            let (shared, producer, state) = (&*shared, &*producer, &stage_state);
            Some(Stage::spawn(
                scope,
                &shared.stage,
                move |batch: &InputBatch| {
                    let mut state = lock(state);
                    let StageState {
                        processor,
                        checkpointer,
                        ..
                    } = &mut *state;
                    for record in batch.iter() {
                        let (partition, offset) = (record.partition, record.offset);
                        handle(record, config, processor, producer, shared)?;
                        if let Some(c) = checkpointer {
                            c.handled(partition, offset);
                        }
                    }
                    serve_delivery_reports(producer, shared);
                    checkpoint_if_wanted(&mut state, &publish_to);
                    Ok(())
                },
                move || {
                    serve_delivery_reports(producer, shared);
                    checkpoint_if_wanted(&mut lock(state), &idle_publish_to);
                },
            )?)
        };
        let looped = loop {
            health.beat();
            if shutdown.is_triggered() || config.max_records.is_some_and(|max| consumed >= max) {
                break Ok(());
            }
            let batch_started = Instant::now();
            let remaining = config.max_records.map_or(u64::MAX, |max| max - consumed);
            let limit = config
                .batch_size
                .min(usize::try_from(remaining).unwrap_or(usize::MAX));
            let batch =
                match run_batch(&consumer, config, stage.as_mut(), &producer, &shared, limit) {
                    Ok(n) => n,
                    Err(e) => break Err(e),
                };
            match &mut stage {
                // A stopped stage ends the loop; finishing it below says why.
                Some(stage) => {
                    if !stage.hand_over() {
                        break Ok(());
                    }
                }
                None => serve_delivery_reports(&producer, &shared),
            }
            if batch > 0 {
                first_record.get_or_insert(batch_started);
                consumed += batch as u64;
                metrics.consumed.inc_by(batch as u64);
                metrics
                    .batch_duration
                    .observe(batch_started.elapsed().as_secs_f64());
                metrics.batch_size.observe(batch as f64);
            }
            metrics.in_flight.set(shared.tracker().in_flight() as i64);
            if let Some(failure) = take_failure(&shared) {
                break Err(Error::Delivery(failure));
            }
            if last_commit.elapsed() >= config.commit_interval {
                commit(
                    &consumer,
                    &shared,
                    &config.input_topic,
                    None,
                    // Not Async: rust-rdkafka's BaseConsumer never reports the outcome of an
                    // async commit (fede1024/rust-rdkafka#856), so a commit refused during a
                    // rebalance was lost silently, its offsets marked as committed and never
                    // sent again. A sync commit on loopback costs about a millisecond a second.
                    CommitMode::Sync,
                );
                last_commit = Instant::now();
            }
        };
        // The stage produces everything it was handed before the flush below.
        let staged = stage.map_or(Ok(()), Stage::finish);
        looped.and(staged)
    });

    // Shutdown (or a fatal error): stop taking input, publish the final insights, let the
    // producer deliver what it holds, commit exactly what was acknowledged (and counted by
    // published insights), then leave the group.
    health.set_ready(false);
    let mut state = stage_state.into_inner().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = &mut state.checkpointer {
        let published = c
            .take(state.processor, true)
            .and_then(|taken| publish(taken, &c.publishing.topic, &producer, &shared));
        if let Err(e) = published {
            tracing::error!(error = %e, "publishing the final insights failed");
        }
    }
    tracing::info!(
        in_flight = shared.tracker().in_flight(),
        "stopping: flushing producer"
    );
    if let Err(e) = producer.flush(config.flush_timeout) {
        tracing::warn!(error = %e, "flush timed out; unacknowledged records will be reprocessed");
    }
    commit(
        &consumer,
        &shared,
        &config.input_topic,
        None,
        CommitMode::Sync,
    );
    let unacknowledged = shared.tracker().in_flight();
    metrics.in_flight.set(unacknowledged as i64);
    leave_group(&consumer, config.flush_timeout);
    drop(consumer);
    let outcome = outcome.and_then(|()| match take_failure(&shared) {
        Some(failure) => Err(Error::Delivery(failure)),
        None => Ok(()),
    });
    // From the first record to the last acknowledgement: group joining is not throughput.
    let elapsed = first_record.map_or(Duration::ZERO, |t| t.elapsed());
    outcome.map(|()| RunSummary {
        throughput: Throughput {
            records: consumed,
            elapsed,
        },
        unacknowledged,
    })
}

/// Leaves the group before the consumer is closed: unsubscribes, then serves the revocation
/// here, in an ordinary poll, until nothing is assigned.
///
/// Closing a member that still holds partitions makes librdkafka run the revocation inside
/// the close, and a close that receives an assignment meanwhile (another replica leaving at the
/// same moment) can wait forever in the unassign (confluentinc/librdkafka#4527, #4884, seen
/// with cooperative-sticky). Once unsubscribed, no assignment can arrive, and the close has
/// nothing left to revoke. Records fetched before the revocation are dropped uncommitted:
/// their next owner reads them.
fn leave_group<C: ConsumerContext>(consumer: &BaseConsumer<C>, timeout: Duration) {
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

/// What the processing stage works with: the processor and, when publishing, the checkpoints.
struct StageState<'p> {
    processor: &'p mut Processor,
    checkpointer: Option<Checkpointer>,
    /// The last checkpoint request a checkpoint was taken for.
    asked_answered: u64,
}

fn lock<'a, T>(mutex: &'a Mutex<T>) -> MutexGuard<'a, T> {
    // Only the stage thread and, after it, the loop use it: no one else can see it torn.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Takes a checkpoint when the interval has passed or a revocation asks for one. Its
/// snapshots are encoded and sent from the insights thread, so the stage goes on meanwhile.
fn checkpoint_if_wanted(state: &mut StageState<'_>, to: &(Arc<Producer_>, Arc<Shared>)) {
    let Some(c) = &mut state.checkpointer else {
        return;
    };
    // Requests up to `asked` are answered by this checkpoint: it is taken after them.
    let asked = to.1.checkpoints_asked.load(Ordering::Acquire);
    if asked <= state.asked_answered && !c.due() {
        return;
    }
    state.asked_answered = asked;
    let (producer, shared, topic) = (to.0.clone(), to.1.clone(), c.publishing.topic.clone());
    c.take_then(state.processor, move |taken| {
        let sent = taken.and_then(|taken| publish(taken, &topic, &producer, &shared));
        if let Err(e) = sent {
            shared.metrics.insights_publish_failures.inc();
            tracing::error!(error = %e, "insights checkpoint failed; commits wait for the next one");
        }
        // Callbacks run in order on the insights thread: answers only grow.
        shared.checkpoints_answered.fetch_max(asked, Ordering::AcqRel);
    });
}

/// Sends a checkpoint's snapshots; its coverage applies once the broker acknowledged them all.
fn publish(taken: Taken, topic: &str, producer: &Producer_, shared: &Shared) -> Result<()> {
    let Some(opaque) = Delivered::checkpoint(taken.number) else {
        return Ok(());
    };
    shared
        .ledger()
        .open(taken.number, taken.records.len(), taken.coverage);
    for (key, value) in &taken.records {
        let record = BaseRecord::with_opaque_to(topic, opaque)
            .key(key.as_bytes())
            .payload(value.as_slice());
        send(producer, record)?;
    }
    Ok(())
}

/// Serves every delivery report that is ready, without waiting: acknowledgements advance the
/// committable offsets. (`poll` with a zero timeout serves one event, a batch of reports, per
/// call, so call it until a call serves nothing.)
fn serve_delivery_reports(producer: &Producer_, shared: &Shared) {
    for _ in 0..10_000 {
        let before = shared.reports.load(Ordering::Relaxed);
        producer.poll(Duration::ZERO);
        if shared.reports.load(Ordering::Relaxed) == before {
            break;
        }
    }
}

fn take_failure(shared: &Shared) -> Option<String> {
    shared
        .failure
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
}

/// Takes up to `limit` records: waits briefly for the first, then drains what librdkafka has
/// already fetched into the stage's batch (or, without a stage, copies each to the output).
/// Returns how many were taken.
fn run_batch(
    consumer: &BaseConsumer<GroupContext>,
    config: &PipelineConfig,
    mut stage: Option<&mut Stage<'_>>,
    producer: &Producer_,
    shared: &Shared,
    limit: usize,
) -> Result<usize> {
    // Debug level: disabled (and nearly free) unless RUST_LOG asks for it.
    let _span = tracing::debug_span!("batch").entered();
    let mut handled = 0;
    let mut wait = Duration::from_millis(100);
    while handled < limit {
        match consumer.poll(wait) {
            None => break,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "consumer error");
                break;
            }
            Some(Ok(message)) => {
                let record = InputRecord::of(&message);
                match stage.as_deref_mut() {
                    Some(stage) => stage.push(record),
                    None => pass_through(record, config, producer, shared)?,
                }
                handled += 1;
            }
        }
        wait = Duration::ZERO;
    }
    Ok(handled)
}

/// The benchmarks' baseline: copies one record to the output unchanged.
fn pass_through(
    input: InputRecord<'_>,
    config: &PipelineConfig,
    producer: &Producer_,
    shared: &Shared,
) -> Result<()> {
    let token = track(shared, input.partition, input.offset, false)?;
    let record = BaseRecord::<[u8], [u8], usize>::with_opaque_to(&config.output_topic, token);
    send(producer, with_original(record, input))
}

/// Cleans one record and hands the result to the producer.
fn handle(
    input: InputRecord<'_>,
    config: &PipelineConfig,
    processor: &mut Processor,
    producer: &Producer_,
    shared: &Shared,
) -> Result<()> {
    let (partition, offset) = (input.partition, input.offset);
    let routed = processor.process(input.payload.unwrap_or_default());
    let token = track(
        shared,
        partition,
        offset,
        matches!(routed, Routed::DeadLetter(_)),
    )?;
    match routed {
        Routed::Output { key, value } => send(
            producer,
            BaseRecord::with_opaque_to(&config.output_topic, token)
                .key(key.as_bytes())
                .payload(value),
        ),
        Routed::DeadLetter(rejection) => {
            shared.metrics.count_rejection(rejection.reason);
            let source = Source {
                topic: &config.input_topic,
                partition,
                offset,
            };
            let mut headers = OwnedHeaders::new_with_capacity(5);
            for (key, value) in dead_letter::headers(&rejection, source) {
                headers = headers.insert(Header {
                    key,
                    value: Some(value.as_bytes()),
                });
            }
            let record =
                BaseRecord::<[u8], [u8], usize>::with_opaque_to(&config.dead_letter_topic, token)
                    .headers(headers);
            send(producer, with_original(record, input))
        }
    }
}

/// Starts tracking an input offset and returns the delivery token for the record made from it.
fn track(shared: &Shared, partition: i32, offset: i64, dead_letter: bool) -> Result<usize> {
    let token = DeliveryToken {
        partition,
        offset,
        dead_letter,
    }
    .encode()
    .ok_or_else(|| {
        Error::Config(format!(
            "input partition {partition} offset {offset} is beyond what the offset tracker supports (partitions < 65536, offsets < 2^47)"
        ))
    })?;
    shared.tracker().track(partition, offset);
    Ok(token)
}

/// The input's key and value on `record`, byte for byte (absent stays absent).
fn with_original<'a>(
    mut record: BaseRecord<'a, [u8], [u8], usize>,
    input: InputRecord<'a>,
) -> BaseRecord<'a, [u8], [u8], usize> {
    if let Some(payload) = input.payload {
        record = record.payload(payload);
    }
    if let Some(key) = input.key {
        record = record.key(key);
    }
    record
}

/// Hands a record to the producer, waiting for room when its queue is full (backpressure).
fn send(producer: &Producer_, mut record: BaseRecord<'_, [u8], [u8], usize>) -> Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                producer.poll(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(Error::kafka("producing a record")(e)),
        }
    }
}

/// Fails early, with the fix, when a topic the pipeline needs does not exist.
fn require_topics(producer: &Producer_, config: &PipelineConfig) -> Result<()> {
    for (role, topic) in [
        ("input", &config.input_topic),
        ("output", &config.output_topic),
        ("dead-letter", &config.dead_letter_topic),
    ] {
        let metadata = producer
            .client()
            .fetch_metadata(Some(topic), Duration::from_secs(15))
            .inspect_err(|_| {
                // The request fails only with "transport failure"; why (refused credentials,
                // a TLS error) waits in the client's event queue: serve it, so it is logged.
                producer.poll(Duration::from_millis(100));
            })
            .map_err(Error::kafka(format!(
                "reading metadata of {role} topic {topic:?} from {}",
                config.kafka.bootstrap_servers
            )))?;
        let missing = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic.as_str())
            .is_none_or(|t| t.error().is_some() || t.partitions().is_empty());
        if missing {
            return Err(Error::Config(format!(
                "the {role} topic {topic:?} does not exist on {}: create it, or name another with the {role} topic flag",
                config.kafka.bootstrap_servers
            )));
        }
    }
    Ok(())
}

/// Runs [`run`] on a blocking thread until `shutdown` is triggered, then stops it gracefully.
/// Returns the summary and the processor (with its insights).
pub async fn run_until(
    config: PipelineConfig,
    mut processor: Processor,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: &Shutdown,
) -> (Result<RunSummary>, Processor) {
    let shutdown = shutdown.clone();
    let task = tokio::task::spawn_blocking(move || {
        let result = run(&config, &mut processor, metrics, health, &shutdown);
        (result, processor)
    });
    match task.await {
        Ok(pair) => pair,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
