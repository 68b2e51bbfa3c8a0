//! Connecting: the producer (transactional for exactly once), a check with it that every topic
//! the pipeline needs exists, the guarantee that goes with the producer, and the consumer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::producer::Producer;

use super::PipelineConfig;
use super::exactly_once::ExactlyOnce;
use super::group::{Consumer_, GroupContext};
use super::guarantee::{AtLeastOnce, Guarantee};
use super::produce::{DeliveryContext, Producer_};
use super::shared::Shared;
use crate::error::{Error, Result};
use crate::kafka::config::Guarantee as GuaranteeKind;
use crate::kafka::partitioner::Partitioner;
use crate::kafka::transaction::Cadence;

/// The clients and the guarantee of a run, and the forecasts of the partitions its records
/// get.
pub(super) struct Connected {
    pub(super) producer: Arc<Producer_>,
    pub(super) consumer: Consumer_,
    pub(super) guarantee: Arc<dyn Guarantee>,
    pub(super) partitioners: Partitioners,
}

/// The forecasts for the output topic and the dead-letter topic.
pub(super) struct Partitioners {
    pub(super) output: Partitioner,
    pub(super) dead_letter: Partitioner,
}

/// Creates the producer (transactional for exactly once), the guarantee and the consumer,
/// checks the topics exist, and subscribes.
pub(super) fn connect(config: &PipelineConfig, shared: &Arc<Shared>) -> Result<Connected> {
    let producer_config = match config.guarantee {
        GuaranteeKind::AtLeastOnce => config.kafka.producer(),
        GuaranteeKind::ExactlyOnce => config
            .kafka
            .transactional_producer(&config.transactional_id),
    };
    let producer: Arc<Producer_> = Arc::new(
        producer_config
            .create_with_context(DeliveryContext {
                shared: shared.clone(),
            })
            .map_err(|e| Error::Config(format!("producer settings: {e}")))?,
    );
    let [output, dead_letter] = require_topics(&producer, config)?;
    let property = producer_config.get("partitioner");
    let partitioners = Partitioners {
        output: Partitioner::of(property, output),
        dead_letter: Partitioner::of(property, dead_letter),
    };
    let guarantee: Arc<dyn Guarantee> = match config.guarantee {
        GuaranteeKind::AtLeastOnce => Arc::new(AtLeastOnce {
            shared: shared.clone(),
            producer: producer.clone(),
            input_topic: config.input_topic.clone(),
            commit_interval: config.commit_interval,
            flush_timeout: config.flush_timeout,
            committing: Mutex::new(()),
        }),
        GuaranteeKind::ExactlyOnce => {
            // Fences an earlier producer with this id and aborts what it left open.
            producer
                .init_transactions(config.flush_timeout)
                .map_err(|e| match &e {
                    rdkafka::error::KafkaError::Transaction(t) if t.is_fatal() => {
                        Error::TransactionFailed(format!("starting transactions: {e}"))
                    }
                    _ => Error::kafka(format!(
                        "starting transactions as {:?} (the broker needs transactions enabled: transaction.state.log.replication.factor <= its brokers)",
                        config.transactional_id
                    ))(e),
                })?;
            Arc::new(ExactlyOnce {
                shared: shared.clone(),
                producer: producer.clone(),
                input_topic: config.input_topic.clone(),
                cadence: Cadence {
                    interval: config.commit_interval,
                    max_records: config.transaction_max_records,
                },
                timeout: config.flush_timeout,
                state: Mutex::default(),
                commits: Mutex::default(),
            })
        }
    };
    let consumer: Consumer_ = config
        .kafka
        .consumer(&config.group_id)
        .create_with_context(GroupContext {
            shared: shared.clone(),
            guarantee: guarantee.clone(),
            input_topic: config.input_topic.clone(),
            flush_timeout: config.flush_timeout,
        })
        .map_err(|e| Error::Config(format!("consumer settings: {e}")))?;
    consumer
        .subscribe(&[&config.input_topic])
        .map_err(Error::kafka(format!(
            "subscribing to {}",
            config.input_topic
        )))?;
    tracing::info!(
        input = %config.input_topic, output = %config.output_topic, dead_letter = %config.dead_letter_topic,
        group = %config.group_id, guarantee = ?config.guarantee, "pipeline started"
    );
    Ok(Connected {
        producer,
        consumer,
        guarantee,
        partitioners,
    })
}

/// Fails early, with the fix, when a topic the pipeline needs does not exist. Returns the
/// output's and the dead-letter topic's partition counts.
fn require_topics(producer: &Producer_, config: &PipelineConfig) -> Result<[usize; 2]> {
    let mut partitions = [0; 3];
    for (i, (role, topic)) in [
        ("input", &config.input_topic),
        ("output", &config.output_topic),
        ("dead-letter", &config.dead_letter_topic),
    ]
    .into_iter()
    .enumerate()
    {
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
        let found = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic.as_str());
        let missing = found.is_none_or(|t| t.error().is_some() || t.partitions().is_empty());
        partitions[i] = found.map_or(0, |t| t.partitions().len());
        if missing {
            return Err(Error::Config(format!(
                "the {role} topic {topic:?} does not exist on {}: create it, or name another with the {role} topic flag",
                config.kafka.bootstrap_servers
            )));
        }
    }
    Ok([partitions[1], partitions[2]])
}
