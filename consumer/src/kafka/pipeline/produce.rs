//! The producer side: handing records to the producer (with backpressure), serving its
//! delivery reports, which acknowledge input offsets and insights checkpoints, and sending a
//! checkpoint's snapshots.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::statistics::Statistics;

use super::hold::{Ahead, Destination, Held, Release};
use super::shared::{Failure, Shared};
use crate::error::{Error, Result};
use crate::kafka::checkpoint::Taken;
use crate::kafka::offsets::Delivered;
use crate::kafka::{self, client_log};
use crate::metrics::{Client, Metrics, ReasonLabel};

/// The producer's context: turns delivery reports into acknowledgements.
pub(super) struct DeliveryContext {
    pub(super) shared: Arc<Shared>,
}

impl ClientContext for DeliveryContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        client_log::log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        client_log::error(error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        let emission = self.shared.requests().producer.update(&statistics);
        self.shared
            .metrics
            .count_requests(Client::Producer, &emission);
        self.shared.producer_brokers.observe(&statistics);
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
            Err((error, message)) if discarded(error) => {
                tracing::debug!(
                    partition = token.partition,
                    offset = token.offset,
                    topic = message.topic(),
                    "result discarded with its aborted transaction; produced again after the rewind"
                );
            }
            Err((error, message)) => {
                self.shared.metrics.delivery_failures.inc();
                // Not always the broker's doing: librdkafka fails records itself too (a topic
                // missing for longer than it waits, "Local: Unknown partition").
                let text = format!(
                    "could not deliver the record made from input partition {} offset {} to topic {}: {error}",
                    token.partition,
                    token.offset,
                    message.topic()
                );
                let mut failure = self
                    .shared
                    .failure
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if failure.is_none() {
                    // The first failure stops the loop; the records batched with it fail
                    // too, and are counted in delivery_failures_total rather than logged one
                    // by one.
                    tracing::error!("{text}");
                    *failure = Some(Failure {
                        text,
                        for_good: refused_for_good(error),
                    });
                } else {
                    tracing::debug!("{text}");
                }
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
            // Discarded with its transaction: its coverage never applies, and nothing failed.
            Err((error, _)) if discarded(error) => self.shared.ledger().failed(number),
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

/// Whether a delivery failed because the record was purged from the producer's queue: what
/// aborting a transaction does to the records still in it (and dropping a producer, to what it
/// could not deliver). Those results are discarded on purpose, not refused: an abort rewinds and
/// produces them again, so treating them as failures for good would turn an abortable error
/// into an exit, and could name a purged record as the reason instead of the refused one.
fn discarded(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight)
    )
}

/// Whether a record the broker (or librdkafka) refused would be refused again if produced
/// again: it is too large or invalid for the topic, the topic is not there or not allowed.
/// Other failures (a timeout after a long broker outage, a producer id the broker lost)
/// pass: in exactly-once mode an abort and a restart from the committed offsets produce the
/// record again and may well succeed.
fn refused_for_good(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::MessageBatchTooLarge
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::PolicyViolation
                | RDKafkaErrorCode::InvalidTopic
                | RDKafkaErrorCode::UnknownTopic
                | RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownPartition
                | RDKafkaErrorCode::TopicAuthorizationFailed
        )
    )
}

pub(super) type Producer_ = BaseProducer<DeliveryContext>;

/// Sends a checkpoint's snapshots; its coverage applies once the broker acknowledged them all.
pub(super) fn publish(
    taken: Taken,
    topic: &str,
    producer: &Producer_,
    shared: &Shared,
) -> Result<()> {
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
pub(super) fn serve_delivery_reports(producer: &Producer_, shared: &Shared) {
    for _ in 0..10_000 {
        let before = shared.reports.load(Ordering::Relaxed);
        producer.poll(Duration::ZERO);
        if shared.reports.load(Ordering::Relaxed) == before {
            break;
        }
    }
}

/// Waits until the broker has acknowledged everything handed to the producer (serving the
/// delivery reports), up to `timeout`.
///
/// Not rust-rdkafka's `flush`: it waits in polls of up to 100 ms, and its last poll often
/// waited them out with nothing left to serve, so every flush ended up to 100 ms late. Each
/// exactly-once commit flushes: its commits took 105-130 ms, 100 of them that wait, and
/// transactions every 100 ms halved the throughput. Polled every millisecond, the same
/// commits take 5-40 ms.
pub(super) fn flush(producer: &Producer_, timeout: Duration) -> Result<(), KafkaError> {
    let deadline = Instant::now() + timeout;
    while producer.in_flight_count() > 0 {
        if Instant::now() >= deadline {
            return Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut));
        }
        producer.poll(Duration::from_millis(1));
    }
    Ok(())
}

/// Where the stage's records go: to the producer, or into the hold while records are held
/// (`hold`), to go to the producer a topic and a partition at a time.
pub(super) struct Outputs<'a> {
    pub(super) output_topic: &'a str,
    pub(super) dead_letter_topic: &'a str,
    pub(super) producer: &'a Producer_,
    pub(super) held: &'a mut Held,
    pub(super) metrics: &'a Metrics,
}

impl Outputs<'_> {
    /// One record for `to`, acknowledged by `token` once delivered: held, or handed to the
    /// producer.
    pub(super) fn send(
        &mut self,
        to: Destination,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: Option<OwnedHeaders>,
        token: usize,
    ) -> Result<()> {
        if !self.held.enabled() {
            let topic = topic(self.output_topic, self.dead_letter_topic, to);
            return send(self.producer, record(topic, key, value, headers, token));
        }
        self.held.push(to, key, value, headers, token);
        // Mid-batch too: a batch's records may be many more than the hold takes. (One release
        // frees at least the record that filled it; the loop keeps the bound whatever the
        // rule for what goes.)
        while self.held.full() {
            self.release(Release::Full)?;
        }
        Ok(())
    }

    /// Hands the held records to the producer if they are due ([`Held::due`]).
    pub(super) fn release_if_due(&mut self, ahead: Ahead) -> Result<()> {
        match self.held.due(ahead) {
            Some(why) => self.release(why),
            None => Ok(()),
        }
    }

    fn release(&mut self, why: Release) -> Result<()> {
        let before = self.held.waits().records;
        let (output, dead_letter, producer) =
            (self.output_topic, self.dead_letter_topic, self.producer);
        let released = self.held.release(why, |(to, key, value, headers, token)| {
            let topic = topic(output, dead_letter, to);
            send(producer, record(topic, key, value, headers, token))
        });
        let records = self.held.waits().records - before;
        self.metrics
            .hold_releases
            .get_or_create(&ReasonLabel {
                reason: why.label(),
            })
            .inc();
        self.metrics.held_records.inc_by(records);
        self.metrics
            .hold_wait
            .observe(self.held.waits().last.as_secs_f64());
        released
    }
}

fn topic<'a>(output: &'a str, dead_letter: &'a str, to: Destination) -> &'a str {
    match to {
        Destination::Output => output,
        Destination::DeadLetter => dead_letter,
    }
}

fn record<'a>(
    topic: &'a str,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    headers: Option<OwnedHeaders>,
    token: usize,
) -> BaseRecord<'a, [u8], [u8], usize> {
    let mut record = BaseRecord::with_opaque_to(topic, token);
    if let Some(key) = key {
        record = record.key(key);
    }
    if let Some(value) = value {
        record = record.payload(value);
    }
    if let Some(headers) = headers {
        record = record.headers(headers);
    }
    record
}

/// Hands a record to the producer, waiting for room when its queue is full (backpressure).
pub(super) fn send(producer: &Producer_, record: BaseRecord<'_, [u8], [u8], usize>) -> Result<()> {
    kafka::send::send(producer, record).map_err(refused)
}

/// What a record the producer would not take means for the pipeline.
///
/// `State` comes only from a transactional producer with no transaction it may add to: the
/// transaction failed (the broker refused one of its batches, say) or is being aborted (a
/// revocation on the poll loop's thread). Either way it takes no record until the abort, and
/// the delivery reports that say why may not have been served yet. So it asks for the abort
/// every abortable error gets; the reports served during the abort name the cause (see
/// `pipeline::cause`).
fn refused(error: KafkaError) -> Error {
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::State) => Error::TransactionAborted(format!(
            "the producer takes no records until its transaction is aborted ({error})"
        )),
        _ => Error::kafka("producing a record")(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_purged_by_an_abort_are_discarded_not_failed() {
        let failed = KafkaError::MessageProduction;
        assert!(discarded(&failed(RDKafkaErrorCode::PurgeQueue)));
        assert!(discarded(&failed(RDKafkaErrorCode::PurgeInflight)));
        assert!(!discarded(&failed(RDKafkaErrorCode::MessageSizeTooLarge)));
        assert!(!discarded(&failed(RDKafkaErrorCode::UnknownPartition)));
    }

    #[test]
    fn refusals_that_would_come_again_are_for_good_and_the_others_pass() {
        let failed = KafkaError::MessageProduction;
        for code in [
            RDKafkaErrorCode::MessageSizeTooLarge,
            RDKafkaErrorCode::InvalidRecord,
            RDKafkaErrorCode::UnknownTopicOrPartition,
            RDKafkaErrorCode::TopicAuthorizationFailed,
        ] {
            assert!(refused_for_good(&failed(code)), "{code:?}");
        }
        for code in [
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::UnknownProducerId,
            RDKafkaErrorCode::OutOfOrderSequenceNumber,
            RDKafkaErrorCode::NotEnoughReplicas,
        ] {
            assert!(!refused_for_good(&failed(code)), "{code:?}");
        }
    }

    #[test]
    fn a_record_refused_because_the_transaction_failed_asks_for_an_abort() {
        let refusal = refused(KafkaError::MessageProduction(RDKafkaErrorCode::State));
        assert!(
            matches!(&refusal, Error::TransactionAborted(why) if why.contains("Erroneous state")),
            "{refusal:?}"
        );
    }

    #[test]
    fn other_refusals_stop_the_pipeline_as_produce_errors() {
        for code in [
            RDKafkaErrorCode::UnknownTopic,
            RDKafkaErrorCode::MessageSizeTooLarge,
            RDKafkaErrorCode::Fatal,
        ] {
            let refusal = refused(KafkaError::MessageProduction(code));
            assert!(
                matches!(refusal, Error::Kafka { .. }),
                "{code:?}: {refusal:?}"
            );
        }
    }
}
