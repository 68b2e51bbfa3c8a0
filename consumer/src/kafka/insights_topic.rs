//! The insights topic: where replicas publish their snapshots and readers merge them.
//!
//! Rules:
//! - The topic is compacted: the latest snapshot per key is kept. Replicas create it when it
//!   is missing, with segments small enough for compaction to act within an hour.
//! - Replicas fold the snapshots of replicas that are gone into one retired total per pipeline
//!   (`insights::retire`), in a transaction, so the topic stays bounded over restarts.
//! - A reader reads every partition from its start to the end it had when the read began
//!   (partition EOF, so compacted gaps and transaction markers do not stall it), within a
//!   deadline: an unreachable broker is an error, never a hang.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{Offset, TopicPartitionList};

use crate::cli::MAX_WINDOW;
use crate::error::{Error, Result};
use crate::insights::DEFAULT_TOP_CAPACITY;
use crate::insights::fleet::TopicState;
use crate::insights::retire;
use crate::kafka::client_log;
use crate::kafka::send::send;

/// The context of the client that checks the topic at startup: librdkafka's logs and errors
/// go to the log (`client_log`), so a broker that refuses the replica says why (a SASL
/// authentication failure is reported only through the error callback) instead of the start
/// ending in a bare timeout.
struct Logged;

impl ClientContext for Logged {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        client_log::log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        client_log::error(error, reason);
    }
}

impl ProducerContext for Logged {
    type DeliveryOpaque = ();

    // It sends nothing.
    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

/// The topic replicas publish to unless told otherwise.
pub const DEFAULT_TOPIC: &str = "fetch-pipeline-insights";

/// Topic settings used when a replica creates the topic. Segments roll hourly or at 64 MiB,
/// so compaction (which never touches the active segment) bounds the topic within about an
/// hour of churn.
const TOPIC_CONFIG: [(&str, &str); 4] = [
    ("cleanup.policy", "compact"),
    ("segment.ms", "3600000"),
    ("segment.bytes", "67108864"),
    ("min.cleanable.dirty.ratio", "0.1"),
];

/// Reads `topic` to its current end and returns the latest record of every key.
/// `config` says how to reach the broker (bootstrap servers, security).
pub fn read(mut config: ClientConfig, topic: &str, timeout: Duration) -> Result<TopicState> {
    let deadline = Instant::now() + timeout;
    let bootstrap = config.get("bootstrap.servers").unwrap_or("?").to_owned();
    config
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("group.id", "fetch-insights-reader")
        .set("auto.offset.reset", "earliest");
    let consumer: BaseConsumer = config
        .create()
        .map_err(|e| Error::Config(format!("insights reader settings: {e}")))?;
    let metadata = consumer
        .fetch_metadata(Some(topic), left(deadline))
        .map_err(Error::kafka(format!(
            "reading metadata of the insights topic {topic:?} from {bootstrap}"
        )))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    if partitions.is_empty() {
        return Err(Error::InsightsTopicMissing {
            topic: topic.to_owned(),
            bootstrap,
        });
    }
    let mut list = TopicPartitionList::new();
    let mut pending = HashSet::new();
    for p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, left(deadline))
            .map_err(Error::kafka(format!(
                "reading the end offsets of {topic:?}"
            )))?;
        if high > low {
            list.add_partition_offset(topic, p, Offset::Beginning)
                .map_err(Error::kafka("assigning the insights topic"))?;
            pending.insert(p);
        }
    }
    let mut state = TopicState::default();
    if pending.is_empty() {
        return Ok(state);
    }
    consumer
        .assign(&list)
        .map_err(Error::kafka("assigning the insights topic"))?;
    while !pending.is_empty() {
        if Instant::now() >= deadline {
            return Err(Error::Insights(format!(
                "reading the insights topic {topic:?} from {bootstrap} did not finish within {timeout:?} ({} partition(s) not read to the end)",
                pending.len()
            )));
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(message)) => state.apply(message.key(), message.payload()),
            Some(Err(KafkaError::PartitionEOF(p))) => {
                pending.remove(&p);
            }
            Some(Err(e)) => tracing::warn!(error = %e, "reading the insights topic"),
        }
    }
    Ok(state)
}

/// Creates `topic` as a compacted topic when it does not exist yet. (A topic that exists is
/// left as it is: whoever created it chose its settings.)
pub async fn ensure(config: &ClientConfig, topic: &str, timeout: Duration) -> Result<()> {
    let bootstrap = config.get("bootstrap.servers").unwrap_or("?").to_owned();
    let (probe, name) = (config.clone(), topic.to_owned());
    let exists = tokio::task::spawn_blocking(move || exists(&probe, &name, timeout))
        .await
        .map_err(|e| Error::Insights(format!("the insights topic check stopped: {e}")))??;
    if exists {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = config
        .create()
        .map_err(|e| Error::Config(format!("admin client settings: {e}")))?;
    let mut new = NewTopic::new(topic, 1, TopicReplication::Fixed(-1));
    for (key, value) in TOPIC_CONFIG {
        new = new.set(key, value);
    }
    let options = AdminOptions::new().request_timeout(Some(timeout));
    let results = admin
        .create_topics([&new], &options)
        .await
        .map_err(Error::kafka(format!(
            "creating the insights topic {topic:?} on {bootstrap}"
        )))?;
    for result in results {
        match result {
            Ok(_) => tracing::info!(topic, "created the insights topic (compacted)"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => {
                return Err(Error::Config(format!(
                    "the insights topic {topic:?} is missing on {bootstrap} and could not be created ({code}): create it as a compacted topic (cleanup.policy=compact), or turn publishing off with --insights-topic ''"
                )));
            }
        }
    }
    Ok(())
}

/// Whether `topic` exists. A broker that cannot be reached is an error, and its reason is
/// logged: the request fails with a bare transport error, while the cause (e.g. a SASL
/// authentication failure) waits in the client's event queue for the error callback, which
/// only a poll serves. Blocking.
fn exists(config: &ClientConfig, topic: &str, timeout: Duration) -> Result<bool> {
    let bootstrap = config.get("bootstrap.servers").unwrap_or("?").to_owned();
    let mut config = config.clone();
    // A producer's metadata request may otherwise have the broker create the topic, with the
    // broker's defaults (not compacted: its snapshots would expire).
    config.set("allow.auto.create.topics", "false");
    let producer: BaseProducer<Logged> = config
        .create_with_context(Logged)
        .map_err(|e| Error::Config(format!("insights client settings: {e}")))?;
    match producer.client().fetch_metadata(Some(topic), timeout) {
        Ok(metadata) => Ok(metadata
            .topics()
            .iter()
            .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())),
        Err(e) => {
            producer.poll(Duration::from_millis(100));
            Err(Error::kafka(format!(
                "reading metadata of the insights topic {topic:?} from {bootstrap}"
            ))(e))
        }
    }
}

/// Folds the snapshots of `pipeline`'s replicas that are gone into its retired total and
/// deletes them, in one transaction (see `insights::retire`). Returns how many replica totals
/// were folded in. Blocking.
pub fn retire(
    config: &ClientConfig,
    topic: &str,
    pipeline: &str,
    now_ms: i64,
    timeout: Duration,
) -> Result<usize> {
    let mut producer_config = config.clone();
    producer_config
        .set(
            "transactional.id",
            format!("fetch-insights-retire/{pipeline}"),
        )
        .set("transaction.timeout.ms", "30000");
    let producer: BaseProducer = producer_config
        .create()
        .map_err(|e| Error::Config(format!("insights producer settings: {e}")))?;
    // Fences any other replica of this pipeline retiring at the same time: its transaction
    // is aborted, and the read below sees everything committed before.
    producer
        .init_transactions(timeout)
        .map_err(Error::kafka("starting the insights retirement transaction"))?;
    let state = read(config.clone(), topic, timeout)?;
    let (snapshots, _) = state.snapshots_of(Some(pipeline));
    let Some(plan) = retire::plan(
        &snapshots,
        pipeline,
        now_ms,
        MAX_WINDOW,
        DEFAULT_TOP_CAPACITY,
    ) else {
        return Ok(0);
    };
    let value = plan
        .retired
        .encode()
        .map_err(|e| Error::Insights(e.to_string()))?;
    let key = plan.retired.key();
    let transaction = || -> std::result::Result<(), KafkaError> {
        producer.begin_transaction()?;
        send(&producer, BaseRecord::to(topic).key(&key).payload(&value))?;
        for key in &plan.delete {
            send(&producer, BaseRecord::<String, [u8]>::to(topic).key(key))?;
        }
        // The delivery reports are served by polling, which the commit does not do.
        producer.flush(timeout)?;
        producer.commit_transaction(timeout)
    };
    if let Err(e) = transaction() {
        if fenced(&e) {
            // Another replica of the pipeline started retiring after this one: it does the
            // work, with everything this one saw.
            tracing::info!("another replica of the pipeline took over retiring");
            return Ok(0);
        }
        let _ = producer.abort_transaction(timeout);
        return Err(Error::kafka(
            "retiring the snapshots of replicas that are gone",
        )(e));
    }
    Ok(plan.folded)
}

/// Whether a newer producer with the same transactional id took over.
fn fenced(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::Fenced | RDKafkaErrorCode::ProducerFenced)
    )
}

fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}
