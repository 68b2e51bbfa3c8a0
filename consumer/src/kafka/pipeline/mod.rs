//! The Kafka loop: consume a batch, clean it, produce every record, make the progress durable.
//!
//! How progress becomes durable is the guarantee's business (`guarantee`): at least once, an
//! input offset is committed only after the broker acknowledged the output or dead-letter
//! record made from it (`OffsetTracker`), on an interval, on partition revocation (after
//! flushing the producer) and at shutdown; exactly once (`exactly_once`), the offsets commit
//! inside the Kafka transaction that holds the records made from them. The producer is
//! idempotent in both, so its own retries add no duplicates.
//!
//! Two threads share the work, with rdkafka's polled clients: the poll loop takes records from
//! the consumer and copies them into batches; the processing stage (`kafka::stage`) cleans each
//! batch, hands the results to the producer (which batches on its own; while more input waits,
//! the stage holds them and hands them over a partition at a time, `hold`) and serves the
//! delivery reports. Neither waits on the other per record. The `--passthrough` baseline takes
//! the same path and copies each record unchanged where the pipeline cleans it, under the
//! input's key or, with `--passthrough-key user-id`, under the `user_id` the pipeline keys its
//! output by (`records`: the first keeps each input partition's records together, which batches
//! better). At least once, a third thread commits on the interval: a commit waits for as long
//! as the group coordinator is unknown, and the poll loop must go on serving the consumer
//! meanwhile (`Guarantee::tick`).
//!
//! With insights publishing on, the stage also takes checkpoints (`kafka::checkpoint`) and an
//! offset is committed only once a published snapshot counts its event.
//!
//! Here: the run, its poll loop, the stage's work on a batch, and the shutdown. Beside it:
//! `connect` (the clients and the guarantee, and the check that the topics exist), `shared`
//! (what the loop, the stage and the callbacks share), `records` (one input record into the
//! record made from it), `produce` (sending, and delivery reports into acknowledgements),
//! `hold` (records held while more input waits), `group` (revocations, commits, and
//! leaving the group), `guarantee` and `exactly_once` (the two guarantees).

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::Scope;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::producer::Producer;

use super::checkpoint::{Checkpointer, InsightsPublishing};
use super::config::{Guarantee as GuaranteeKind, KafkaSettings};
use super::stage::{Backlog, InputBatch, InputRecord, Stage};
use crate::error::{Error, Result};
use crate::health::Health;
use crate::insights::Throughput;
use crate::metrics::Metrics;
use crate::processor::Processor;
use crate::telemetry::Shutdown;

mod connect;
mod exactly_once;
mod group;
mod guarantee;
mod hold;
mod produce;
mod records;
mod shared;

use connect::{Connected, connect};
use group::{Consumer_, close_within, leave_group};
use guarantee::Guarantee;
use hold::{Ahead, Held, HoldWaits};
use produce::{Outputs, Producer_, serve_delivery_reports};
pub use records::PassthroughKey;
use records::{handle, pass_through};
use shared::{Failure, Shared, take_failure};

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
    /// Bytes of records (output and dead letters) held while more input waits, then produced a
    /// partition at a time (`hold`); 0 holds none.
    pub backlog_hold_bytes: usize,
    /// At least once or exactly once.
    pub guarantee: GuaranteeKind,
    /// How often acknowledged offsets (at least once) or transactions (exactly once) are
    /// committed.
    pub commit_interval: Duration,
    /// Exactly once: a transaction also commits once it holds this many input records.
    pub transaction_max_records: usize,
    /// Exactly once: the producer's `transactional.id`, unique among running replicas.
    pub transactional_id: String,
    /// Upper bound for flushing the producer at shutdown or revocation.
    pub flush_timeout: Duration,
    /// Stop after this many records.
    pub max_records: Option<u64>,
    /// Copy records unchanged, keyed as it says (the benchmarks' baseline): same clients and
    /// threads, no processing. None: the pipeline.
    pub passthrough: Option<PassthroughKey>,
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
    let publishing = config
        .insights
        .as_ref()
        .filter(|_| config.passthrough.is_none());
    let shared = Arc::new(Shared::new(
        metrics,
        health,
        // Exactly once, insights ride in the transactions: offsets wait for nothing else.
        publishing.is_some() && config.guarantee == GuaranteeKind::AtLeastOnce,
    ));
    let Connected {
        producer,
        consumer,
        guarantee,
        partitioners,
    } = connect(config, &shared)?;
    let parts = RunParts {
        config,
        consumer: &consumer,
        producer: &producer,
        shared: &shared,
        guarantee: &*guarantee,
    };

    let mut consumed = Consumed::default();
    let stage_state = Mutex::new(StageState {
        processor,
        checkpointer: publishing.cloned().map(Checkpointer::new),
        asked_answered: 0,
        held: Held::new(
            partitioners.output,
            partitioners.dead_letter,
            config.backlog_hold_bytes,
            hold::KEPT_AT_MOST,
        ),
    });
    let outcome: Result<()> = std::thread::scope(|scope| {
        let state = &stage_state;
        let mut stage = Stage::spawn(
            scope,
            &shared.stage,
            move |batch: &InputBatch, backlog: Backlog<'_>| {
                parts.process(batch, backlog, &mut lock(state))
            },
            move || parts.idle(&mut lock(state)),
        )?;
        let stop_ticking = spawn_ticks(scope, parts.guarantee, parts.consumer)?;
        let looped = parts.poll(&mut stage, shutdown, &mut consumed);
        drop(stop_ticking);
        // The stage produces everything it was handed before the flush below.
        let stamp = shared.tracker().revocations();
        let staged = stage.finish(stamp);
        looped.and(staged)
    });

    let mut state = stage_state.into_inner().unwrap_or_else(|e| e.into_inner());
    // Exactly once, the open transaction counts the offsets of records the stage may not have
    // produced (the one the producer refused, and every record after it): whatever stopped the
    // run, it aborts rather than commits.
    match &outcome {
        Err(Error::TransactionAborted(why)) => guarantee.abandon(why),
        Err(other) => guarantee.abandon(&other.to_string()),
        Ok(()) => {}
    }
    let unacknowledged = shut_down(config, &mut state, &*guarantee, consumer, &shared);
    let outcome = cause(outcome, take_failure(&shared));
    log_requests(&shared, consumed.records, state.held.waits());
    // From the first record to the last acknowledgement: group joining is not throughput.
    let elapsed = consumed.first_at.map_or(Duration::ZERO, |t| t.elapsed());
    outcome.map(|()| RunSummary {
        throughput: Throughput {
            records: consumed.records,
            elapsed,
        },
        unacknowledged,
    })
}

/// What the poll loop and the processing stage work with during a run.
#[derive(Clone, Copy)]
struct RunParts<'a> {
    config: &'a PipelineConfig,
    consumer: &'a Consumer_,
    producer: &'a Producer_,
    shared: &'a Shared,
    guarantee: &'a dyn Guarantee,
}

/// What the poll loop has consumed: throughput counts from the first record.
#[derive(Debug, Default)]
struct Consumed {
    records: u64,
    first_at: Option<Instant>,
}

impl RunParts<'_> {
    /// The poll loop: takes batches from the consumer and hands them to the stage until
    /// shutdown, the record limit, a stopped stage or a record the producer could not deliver.
    fn poll(
        &self,
        stage: &mut Stage<'_>,
        shutdown: &Shutdown,
        consumed: &mut Consumed,
    ) -> Result<()> {
        let (config, shared, metrics) = (self.config, self.shared, &*self.shared.metrics);
        loop {
            shared.health.beat();
            if shutdown.is_triggered()
                || config
                    .max_records
                    .is_some_and(|max| consumed.records >= max)
            {
                return Ok(());
            }
            // A stopped stage ends the loop; finishing it says why.
            if shared.stage.is_stopped() {
                return Ok(());
            }
            let batch_started = Instant::now();
            let remaining = config
                .max_records
                .map_or(u64::MAX, |max| max - consumed.records);
            let limit = config
                .batch_size
                .min(usize::try_from(remaining).unwrap_or(usize::MAX));
            let batch = poll_batch(self.consumer, stage, limit);
            // Read apart: the tracker's guard must not live through a hand-over that waits for
            // the stage, which locks the tracker for every record.
            let stamp = shared.tracker().revocations();
            if !stage.hand_over(stamp) {
                return Ok(());
            }
            if batch > 0 {
                consumed.first_at.get_or_insert(batch_started);
                consumed.records += batch as u64;
                metrics.consumed.inc_by(batch as u64);
                metrics
                    .batch_duration
                    .observe(batch_started.elapsed().as_secs_f64());
                metrics.batch_size.observe(batch as f64);
            }
            metrics.in_flight.set(shared.tracker().in_flight() as i64);
            if let Some(failure) = take_failure(shared) {
                return Err(Error::Delivery(failure.text));
            }
            let servers = &config.kafka.bootstrap_servers;
            shared
                .consumer_brokers
                .mend(self.consumer.client(), servers);
            shared
                .producer_brokers
                .mend(self.producer.client(), servers);
        }
    }

    /// The stage's work on one batch: each record into the record made from it (or, for a
    /// partition given away since the batch was handed over, left to its next owner); the
    /// held records to the producer unless more input waits and no transaction is due to
    /// commit (`hold`); then [`Self::settle`].
    fn process(
        &self,
        batch: &InputBatch,
        backlog: Backlog<'_>,
        state: &mut StageState<'_>,
    ) -> Result<()> {
        let StageState {
            processor,
            checkpointer,
            held,
            ..
        } = state;
        let (config, guarantee) = (self.config, self.guarantee);
        let mut outputs = self.outputs(held);
        let handed_at = batch.handed_at();
        let mut left = 0usize;
        for record in batch.iter() {
            let (partition, offset) = (record.partition, record.offset);
            let handled = if let Some(key) = config.passthrough {
                pass_through(record, key, handed_at, &mut outputs, guarantee)?
            } else {
                handle(
                    record,
                    handed_at,
                    config,
                    processor,
                    &mut outputs,
                    self.shared,
                    guarantee,
                )?
            };
            if !handled {
                left += 1;
            } else if let Some(c) = checkpointer {
                c.handled(partition, offset);
            }
        }
        if left > 0 {
            tracing::info!(
                records = left,
                "records of partitions given away after their batch was handed over: left to their partitions' next owner"
            );
        }
        outputs.release_if_due(Ahead {
            more_input: backlog.more_waiting(),
            commit: guarantee.commit_due(),
        })?;
        self.settle(state)
    }

    /// No batch came for a while: nothing waits, so nothing stays held; then
    /// [`Self::settle`]. (The last batch before a pause found nothing behind it and released
    /// already: this release is a guard, so that no rule change can leave records held
    /// while the stage waits.)
    fn idle(&self, state: &mut StageState<'_>) -> Result<()> {
        self.outputs(&mut state.held)
            .release_if_due(Ahead::default())?;
        self.settle(state)
    }

    /// The topics' end of the stage, holding with `held`.
    fn outputs<'h>(&self, held: &'h mut Held) -> Outputs<'h>
    where
        Self: 'h,
    {
        Outputs {
            output_topic: &self.config.output_topic,
            dead_letter_topic: &self.config.dead_letter_topic,
            producer: self.producer,
            held,
            metrics: &self.shared.metrics,
        }
    }

    /// Serves the delivery reports, then the guarantee's [`Guarantee::settle`]: an insights
    /// checkpoint when one is due or asked for, and (exactly once) the transaction's commit
    /// when due.
    fn settle(&self, state: &mut StageState<'_>) -> Result<()> {
        serve_delivery_reports(self.producer, self.shared);
        self.guarantee.settle(self.consumer, state)
    }
}

/// Runs the guarantee's tick on a thread of its own, if it has one, until the returned sender
/// is dropped.
fn spawn_ticks<'scope>(
    scope: &'scope Scope<'scope, '_>,
    guarantee: &'scope dyn Guarantee,
    consumer: &'scope Consumer_,
) -> Result<mpsc::Sender<()>> {
    let (stop, stopped) = mpsc::channel::<()>();
    if let Some(interval) = guarantee.tick_interval() {
        std::thread::Builder::new()
            .name("commits".into())
            .spawn_scoped(scope, move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    guarantee.tick(consumer);
                }
            })
            .map_err(Error::io("starting the commit thread"))?;
    }
    Ok(stop)
}

/// Why the run stopped, given its outcome and the first record the producer could not deliver
/// since the loop last looked (if any).
///
/// A failed record is the cause of what follows it: a transactional producer then refuses the
/// records after it and its transaction must abort, and neither says why. So the failure fails
/// a clean finish, as it always has. An aborted transaction restarts the pipeline from the
/// committed offsets, which produces the record again: when it would be refused again (too
/// large for the topic, say) the refusal replaces the abort and the consumer stops, naming
/// it; otherwise the restart goes ahead with the failure in its reason. A delivery failure the
/// loop already stopped on (later ones are the records batched with it) and any other error
/// (a fenced producer, say) keep their place.
fn cause(outcome: Result<()>, failure: Option<Failure>) -> Result<()> {
    match (outcome, failure) {
        (Ok(()), Some(failure)) => Err(Error::Delivery(failure.text)),
        (Err(Error::TransactionAborted(_)), Some(failure)) if failure.for_good => {
            Err(Error::Delivery(failure.text))
        }
        (Err(Error::TransactionAborted(why)), Some(failure)) => Err(Error::TransactionAborted(
            format!("{why}; a record failed: {}", failure.text),
        )),
        (outcome, _) => outcome,
    }
}

/// Shutdown (or a fatal error), once the stage has finished: the guarantee publishes the final
/// insights and makes what was done durable; then leave the group and close the consumer.
/// Returns how many records were left out (their offsets are not committed).
fn shut_down(
    config: &PipelineConfig,
    state: &mut StageState<'_>,
    guarantee: &dyn Guarantee,
    consumer: Consumer_,
    shared: &Shared,
) -> usize {
    shared.health.set_ready(false);
    let left_out = guarantee.finish(&consumer, state);
    shared.metrics.in_flight.set(left_out as i64);
    leave_group(&consumer, config.flush_timeout);
    close_within(consumer, config.flush_timeout);
    left_out
}

/// The run's requests to the brokers, per record consumed: what the broker's work follows,
/// and the producer's queue, which says why its batches are the size they are
/// (`hack/bench.sh` prints it), from the latest statistics, up to `statistics.interval.ms`
/// old; and the hold's releases and how long their oldest records waited, the most the hold
/// added to a record's latency.
fn log_requests(shared: &Shared, consumed: u64, hold: HoldWaits) {
    const MIB: f64 = 1024.0 * 1024.0;
    let requests = shared.requests();
    let (p, c) = (&requests.producer, &requests.consumer);
    let count = |r: &super::requests::ClientRequests, name| r.sent.get(name).copied().unwrap_or(0);
    tracing::info!(
        consumed,
        produce_requests = count(p, "Produce"),
        fetch_requests = count(c, "Fetch"),
        offset_commits = count(c, "OffsetCommit"),
        transaction_requests = count(p, "AddPartitionsToTxn")
            + count(p, "AddOffsetsToTxn")
            + count(p, "TxnOffsetCommit")
            + count(p, "EndTxn"),
        records_per_produce_batch = format!("{:.1}", p.batch_records.mean()),
        bytes_per_produce_batch = p.batch_bytes.mean() as i64,
        produce_batches_by_topic = p.batches_by_topic(),
        produce_queue_wait_ms = format!("{:.1}", p.queue_wait.millis()),
        produce_round_trip_ms = format!("{:.1}", p.round_trip.millis()),
        produce_peak_queued = p.peak_queued,
        produce_peak_queued_mib = format!("{:.1}", p.peak_queued_bytes as f64 / MIB),
        produce_queue_limit_mib = format!("{:.1}", p.queue_limit_bytes as f64 / MIB),
        hold_releases = hold.releases,
        records_per_hold_release =
            format!("{:.1}", hold.records as f64 / hold.releases.max(1) as f64),
        hold_wait_mean_ms = format!(
            "{:.2}",
            hold.total.as_secs_f64() * 1e3 / hold.releases.max(1) as f64
        ),
        hold_wait_max_ms = format!("{:.2}", hold.longest.as_secs_f64() * 1e3),
        "requests to the brokers"
    );
}

/// What the processing stage works with: the processor and, when publishing, the checkpoints.
pub(super) struct StageState<'p> {
    processor: &'p mut Processor,
    checkpointer: Option<Checkpointer>,
    /// At least once: the last checkpoint request a checkpoint was taken for.
    asked_answered: u64,
    /// Records held while more input waits (`hold`).
    held: Held,
}

fn lock<'a, T>(mutex: &'a Mutex<T>) -> MutexGuard<'a, T> {
    // Only the stage thread and, after it, the loop use it: no one else can see it torn.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Takes up to `limit` records into the stage's batch: waits briefly for the first, then
/// drains what librdkafka has already fetched. Returns how many were taken.
fn poll_batch(consumer: &Consumer_, stage: &mut Stage<'_>, limit: usize) -> usize {
    // Debug level: disabled (and nearly free) unless RUST_LOG asks for it.
    let _span = tracing::debug_span!("batch").entered();
    let mut taken = 0;
    let mut wait = Duration::from_millis(100);
    while taken < limit {
        match consumer.poll(wait) {
            None => break,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "consumer error");
                break;
            }
            Some(Ok(message)) => {
                stage.push(InputRecord::of(&message));
                taken += 1;
            }
        }
        wait = Duration::ZERO;
    }
    taken
}

/// Aborted transactions in a row, with no commit between them, before the pipeline gives up:
/// something (a record the output topic refuses, say) fails every time.
const ABORTS_IN_A_ROW: u32 = 5;

/// Runs [`run`], and runs it again after an aborted transaction: the new run rejoins the group
/// and reads on from the committed offsets, which is the rewind exactly once needs (nothing of
/// the aborted transaction is visible, and no record polled after it may be produced).
fn run_restarting_after_aborts(
    config: &PipelineConfig,
    processor: &mut Processor,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: &Shutdown,
) -> Result<RunSummary> {
    let commits = || {
        metrics
            .commits
            .get_or_create(&crate::metrics::OutcomeLabel { outcome: "ok" })
            .get()
    };
    let mut in_a_row = 0;
    loop {
        let committed_before = commits();
        match run(config, processor, metrics.clone(), health.clone(), shutdown) {
            Err(Error::TransactionAborted(why)) if !shutdown.is_triggered() => {
                in_a_row = if commits() > committed_before {
                    1
                } else {
                    in_a_row + 1
                };
                if in_a_row >= ABORTS_IN_A_ROW {
                    return Err(Error::TransactionFailed(format!(
                        "{in_a_row} transactions aborted in a row without a commit between them, the last: {why}"
                    )));
                }
                tracing::warn!(reason = %why, "starting again from the committed offsets after an aborted transaction");
                std::thread::sleep(Duration::from_millis(500));
            }
            other => return other,
        }
    }
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
        let result =
            run_restarting_after_aborts(&config, &mut processor, metrics, health, &shutdown);
        (result, processor)
    });
    match task.await {
        Ok(pair) => pair,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> Option<Failure> {
        Some(Failure {
            text: "could not deliver ...: MessageSizeTooLarge".to_owned(),
            for_good: true,
        })
    }

    fn timed_out() -> Option<Failure> {
        Some(Failure {
            text: "could not deliver ...: MessageTimedOut".to_owned(),
            for_good: false,
        })
    }

    fn aborted() -> Result<()> {
        Err(Error::TransactionAborted("committing".to_owned()))
    }

    #[test]
    fn a_record_refused_for_good_is_the_cause_of_the_abort_it_brought_on() {
        assert!(matches!(
            cause(aborted(), refused()),
            Err(Error::Delivery(why)) if why.contains("MessageSizeTooLarge")
        ));
    }

    #[test]
    fn an_abort_a_restart_may_mend_restarts_and_names_the_failure() {
        assert!(matches!(
            cause(aborted(), timed_out()),
            Err(Error::TransactionAborted(why)) if why.starts_with("committing") && why.contains("MessageTimedOut")
        ));
        assert!(matches!(
            cause(aborted(), None),
            Err(Error::TransactionAborted(why)) if why == "committing"
        ));
    }

    #[test]
    fn any_failed_record_fails_a_run_that_finished_cleanly() {
        assert!(matches!(cause(Ok(()), refused()), Err(Error::Delivery(_))));
        assert!(matches!(
            cause(Ok(()), timed_out()),
            Err(Error::Delivery(_))
        ));
        assert!(cause(Ok(()), None).is_ok());
    }

    #[test]
    fn the_first_failure_and_other_errors_keep_their_place() {
        let first = Err(Error::Delivery("the first".to_owned()));
        assert!(matches!(cause(first, refused()), Err(Error::Delivery(why)) if why == "the first"));
        let fenced = Err(Error::TransactionFailed("fenced".to_owned()));
        assert!(matches!(
            cause(fenced, refused()),
            Err(Error::TransactionFailed(_))
        ));
    }
}
