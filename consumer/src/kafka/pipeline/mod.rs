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
//!
//! Here: the loop and its shutdown. Beside it: `shared` (what the loop, the stage and the
//! callbacks share), `records` (one input record into the record made from it), `produce`
//! (sending, and delivery reports into acknowledgements), `group` (revocations, commits, and
//! leaving the group).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::Producer;

use super::checkpoint::{Checkpointer, InsightsPublishing};
use super::config::KafkaSettings;
use super::stage::{InputBatch, InputRecord, Stage};
use crate::error::{Error, Result};
use crate::health::Health;
use crate::insights::Throughput;
use crate::metrics::Metrics;
use crate::processor::Processor;
use crate::telemetry::Shutdown;

mod group;
mod produce;
mod records;
mod shared;

use group::{GroupContext, commit, leave_group};
use produce::{DeliveryContext, Producer_, publish, serve_delivery_reports};
use records::{handle, pass_through};
use shared::{Shared, take_failure};

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
    let shared = Arc::new(Shared::new(
        metrics.clone(),
        health.clone(),
        publishing.is_some(),
    ));
    let (producer, consumer) = connect(config, &shared)?;

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

    let state = stage_state.into_inner().unwrap_or_else(|e| e.into_inner());
    let unacknowledged = shut_down(config, state, &producer, consumer, &shared);
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

/// Creates the producer and the consumer, checks the topics exist, and subscribes.
fn connect(
    config: &PipelineConfig,
    shared: &Arc<Shared>,
) -> Result<(Arc<Producer_>, BaseConsumer<GroupContext>)> {
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
    Ok((producer, consumer))
}

/// Shutdown (or a fatal error), once the stage has finished: publish the final insights, let
/// the producer deliver what it holds, commit exactly what was acknowledged (and counted by
/// published insights), then leave the group and close the consumer. Returns how many records
/// stayed unacknowledged (their offsets are not committed).
fn shut_down(
    config: &PipelineConfig,
    mut state: StageState<'_>,
    producer: &Producer_,
    consumer: BaseConsumer<GroupContext>,
    shared: &Shared,
) -> usize {
    shared.health.set_ready(false);
    if let Some(c) = &mut state.checkpointer {
        let published = c
            .take(state.processor, true)
            .and_then(|taken| publish(taken, &c.publishing.topic, producer, shared));
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
        shared,
        &config.input_topic,
        None,
        CommitMode::Sync,
    );
    let unacknowledged = shared.tracker().in_flight();
    shared.metrics.in_flight.set(unacknowledged as i64);
    leave_group(&consumer, config.flush_timeout);
    drop(consumer);
    unacknowledged
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
