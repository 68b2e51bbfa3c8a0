//! The consumer's Prometheus metrics, served at `/metrics`.
//!
//! Counters are atomics: the consume loop bumps them without locks, once per batch where it
//! can. Names follow Prometheus conventions (`_total` for counters, base units).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::kafka::requests::Emission;
use crate::reason::RejectReason;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabel {
    pub topic: String,
    pub partition: i32,
}

/// Which of the pipeline's Kafka clients a statistics emission came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    Consumer,
    Producer,
}

impl Client {
    /// The metrics' `client` label.
    pub fn label(self) -> &'static str {
        match self {
            Client::Consumer => "consumer",
            Client::Producer => "producer",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabel {
    /// [`Client::label`].
    pub client: &'static str,
    /// librdkafka's name for the request: `Produce`, `Fetch`, `OffsetCommit`, ...
    pub request: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabel {
    pub topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

/// Why an at-least-once revocation handed partitions on with some of their progress not
/// committed. Their next owner then produces those records' results again: a duplicate a
/// reader sees, which at least once allows but which never happens without one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsettled {
    /// The group gave the partitions away before this member could commit.
    Lost,
    /// The processing thread did not finish its batches within `--shutdown-timeout`, or
    /// stopped on an error.
    NotDrained,
    /// No insights checkpoint in time (commits wait for one that counts their events).
    NoInsightsCheckpoint,
    /// The producer did not deliver everything within `--shutdown-timeout`.
    FlushTimeout,
    /// The broker refused the commit, three times.
    CommitFailed,
}

impl Unsettled {
    pub const ALL: [Unsettled; 5] = [
        Unsettled::Lost,
        Unsettled::NotDrained,
        Unsettled::NoInsightsCheckpoint,
        Unsettled::FlushTimeout,
        Unsettled::CommitFailed,
    ];

    /// The metric's `reason` label.
    pub fn code(self) -> &'static str {
        match self {
            Unsettled::Lost => "lost",
            Unsettled::NotDrained => "not_drained",
            Unsettled::NoInsightsCheckpoint => "no_insights_checkpoint",
            Unsettled::FlushTimeout => "flush_timeout",
            Unsettled::CommitFailed => "commit_failed",
        }
    }
}

/// Every metric of the consumer, registered once in its own registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Records read from the input topic.
    pub consumed: Counter,
    /// Cleaned records acknowledged by the broker on the output topic.
    pub produced: Counter,
    /// Records routed to the dead-letter output, by reason.
    pub dead_lettered: Family<ReasonLabel, Counter>,
    /// Dead-letter records acknowledged by the broker.
    pub dead_letter_produced: Counter,
    /// Records the broker refused for good.
    pub delivery_failures: Counter,
    /// Releases of the records held while more input waited, by why they went (`full`,
    /// `caught_up` or, exactly once, `commit`).
    pub hold_releases: Family<ReasonLabel, Counter>,
    /// Records that went through the hold.
    pub held_records: Counter,
    /// Per release of the hold, how long its oldest record waited in it.
    pub hold_wait: Histogram,
    /// Insights checkpoints acknowledged by the broker on the insights topic.
    pub insights_published: Counter,
    /// Insights snapshot records the broker refused.
    pub insights_publish_failures: Counter,
    /// Time to poll one batch and hand it to the processing thread (waiting while it is
    /// behind).
    pub batch_duration: Histogram,
    /// Records per batch.
    pub batch_size: Histogram,
    /// Offset commits (with exactly-once, transaction commits), by outcome (`ok` or `error`).
    pub commits: Family<OutcomeLabel, Counter>,
    /// At least once: revocations that left some progress uncommitted, by [`Unsettled`] reason.
    pub unsettled_revocations: Family<ReasonLabel, Counter>,
    /// Exactly-once: transactions aborted (their results discarded and produced again).
    pub aborted_transactions: Counter,
    /// Exactly-once: time to commit one transaction (flush, offsets, commit).
    pub transaction_commit_duration: Histogram,
    /// Consumer lag per assigned partition, from librdkafka statistics.
    pub consumer_lag: Family<PartitionLabel, Gauge>,
    /// Records handed to the producer and not yet acknowledged.
    pub in_flight: Gauge,
    /// Partitions currently assigned to this consumer.
    pub assigned_partitions: Gauge,
    /// Consumer lag summed over the assigned partitions (for the progress line and alerts).
    pub total_lag: Gauge,
    /// Requests the clients sent to the brokers, from librdkafka's statistics: what the
    /// pipeline costs the brokers is mostly requests (docs/benchmarks.md §8).
    pub client_requests: Family<RequestLabel, Counter>,
    /// Produce batches by topic (one per partition and produce request) and the records in
    /// them: their ratio is the records per batch, which `linger.ms` sets.
    pub produce_batches: Family<TopicLabel, Counter>,
    pub produce_batch_records: Family<TopicLabel, Counter>,
    /// How long records waited in the producer's queue before their request was sent, mean
    /// over the last statistics interval.
    pub producer_queue_wait: Gauge<f64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("fetch_consumer");
        let m = Metrics {
            consumed: Counter::default(),
            produced: Counter::default(),
            dead_lettered: Family::default(),
            dead_letter_produced: Counter::default(),
            delivery_failures: Counter::default(),
            hold_releases: Family::default(),
            held_records: Counter::default(),
            hold_wait: Histogram::new(exponential_buckets(0.000_1, 2.0, 16)),
            insights_published: Counter::default(),
            insights_publish_failures: Counter::default(),
            batch_duration: Histogram::new(exponential_buckets(0.000_05, 2.0, 18)),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            commits: Family::default(),
            unsettled_revocations: Family::default(),
            aborted_transactions: Counter::default(),
            transaction_commit_duration: Histogram::new(exponential_buckets(0.000_5, 2.0, 16)),
            consumer_lag: Family::default(),
            in_flight: Gauge::default(),
            assigned_partitions: Gauge::default(),
            total_lag: Gauge::default(),
            client_requests: Family::default(),
            produce_batches: Family::default(),
            produce_batch_records: Family::default(),
            producer_queue_wait: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "events_consumed",
            "Records read from the input topic",
            m.consumed.clone(),
        );
        registry.register(
            "events_produced",
            "Cleaned records acknowledged on the output topic",
            m.produced.clone(),
        );
        registry.register(
            "events_dead_lettered",
            "Records routed to the dead-letter output, by reason",
            m.dead_lettered.clone(),
        );
        registry.register(
            "dead_letters_produced",
            "Dead-letter records acknowledged by the broker",
            m.dead_letter_produced.clone(),
        );
        registry.register(
            "delivery_failures",
            "Records the broker refused for good",
            m.delivery_failures.clone(),
        );
        registry.register(
            "backlog_hold_releases",
            "Releases of the records held while more input waited, by why (full, caught_up, commit)",
            m.hold_releases.clone(),
        );
        registry.register(
            "backlog_held_records",
            "Records held while more input waited, then produced a partition at a time",
            m.held_records.clone(),
        );
        registry.register(
            "backlog_hold_wait_seconds",
            "Per release of the hold, how long its oldest record waited in it: what the hold adds to a record's latency at most",
            m.hold_wait.clone(),
        );
        registry.register(
            "insights_checkpoints_published",
            "Insights checkpoints acknowledged on the insights topic",
            m.insights_published.clone(),
        );
        registry.register(
            "insights_publish_failures",
            "Insights snapshot records the broker refused",
            m.insights_publish_failures.clone(),
        );
        registry.register(
            "batch_duration_seconds",
            "Time to poll one batch and hand it to the processing thread",
            m.batch_duration.clone(),
        );
        registry.register("batch_records", "Records per batch", m.batch_size.clone());
        registry.register(
            "offset_commits",
            "Offset commits (exactly-once: transaction commits) by outcome",
            m.commits.clone(),
        );
        registry.register(
            "revocations_unsettled",
            "At least once: revocations that handed partitions on with progress not committed (their next owner produces some results again), by reason",
            m.unsettled_revocations.clone(),
        );
        registry.register(
            "transactions_aborted",
            "Exactly-once: transactions aborted, their results discarded and produced again",
            m.aborted_transactions.clone(),
        );
        registry.register(
            "transaction_commit_duration_seconds",
            "Exactly-once: time to commit one transaction",
            m.transaction_commit_duration.clone(),
        );
        registry.register(
            "consumer_lag_records",
            "Consumer lag per assigned partition (librdkafka statistics)",
            m.consumer_lag.clone(),
        );
        registry.register(
            "records_in_flight",
            "Records handed to the producer, not yet acknowledged",
            m.in_flight.clone(),
        );
        registry.register(
            "consumer_lag_total_records",
            "Consumer lag summed over assigned partitions",
            m.total_lag.clone(),
        );
        registry.register(
            "assigned_partitions",
            "Partitions assigned to this consumer",
            m.assigned_partitions.clone(),
        );
        registry.register(
            "client_requests",
            "Requests sent to the brokers, by client and request (librdkafka statistics)",
            m.client_requests.clone(),
        );
        registry.register(
            "produce_batches",
            "Produce batches sent, by topic (one per partition and produce request)",
            m.produce_batches.clone(),
        );
        registry.register(
            "produce_batch_records",
            "Records in the produce batches sent, by topic",
            m.produce_batch_records.clone(),
        );
        registry.register(
            "producer_queue_wait_seconds",
            "Mean time records waited in the producer's queue before their request was sent, over the last statistics interval",
            m.producer_queue_wait.clone(),
        );
        // Pre-create every reason so dashboards see zeros rather than gaps.
        for reason in RejectReason::ALL {
            let _ = m.dead_lettered.get_or_create(&ReasonLabel {
                reason: reason.code(),
            });
        }
        for why in Unsettled::ALL {
            let _ = m
                .unsettled_revocations
                .get_or_create(&ReasonLabel { reason: why.code() });
        }
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn count_unsettled(&self, why: Unsettled) {
        self.unsettled_revocations
            .get_or_create(&ReasonLabel { reason: why.code() })
            .inc();
    }

    /// Adds what one statistics emission of `client` reported.
    pub fn count_requests(&self, client: Client, emission: &Emission) {
        for &(request, n) in &emission.requests {
            self.client_requests
                .get_or_create(&RequestLabel {
                    client: client.label(),
                    request,
                })
                .inc_by(n);
        }
        for b in &emission.batches {
            let topic = TopicLabel {
                topic: b.topic.clone(),
            };
            self.produce_batches.get_or_create(&topic).inc_by(b.batches);
            self.produce_batch_records
                .get_or_create(&topic)
                .inc_by(b.records);
        }
        // A consumer queues no records to send; only the producer's wait is the gauge's.
        if let (Some(wait), Client::Producer) = (emission.queue_wait_seconds, client) {
            self.producer_queue_wait.set(wait);
        }
    }

    pub fn count_rejection(&self, reason: RejectReason) {
        self.dead_lettered
            .get_or_create(&ReasonLabel {
                reason: reason.code(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::requests::Batches;

    #[test]
    fn request_counters_add_each_emission_and_the_queue_wait_is_the_producers_latest() {
        let m = Metrics::default();
        let emission = |produce, records, wait| Emission {
            requests: vec![("Produce", produce)],
            batches: vec![Batches {
                topic: "out".into(),
                batches: produce,
                records,
            }],
            queue_wait_seconds: wait,
        };
        m.count_requests(Client::Producer, &emission(4, 1_000, Some(0.25)));
        m.count_requests(Client::Producer, &emission(6, 2_000, None));
        m.count_requests(
            Client::Consumer,
            &Emission {
                requests: vec![("Fetch", 3)],
                queue_wait_seconds: Some(9.0),
                ..Emission::default()
            },
        );
        let text = m.encode();
        for line in [
            r#"fetch_consumer_client_requests_total{client="producer",request="Produce"} 10"#,
            r#"fetch_consumer_produce_batches_total{topic="out"} 10"#,
            r#"fetch_consumer_produce_batch_records_total{topic="out"} 3000"#,
            r#"fetch_consumer_client_requests_total{client="consumer",request="Fetch"} 3"#,
            "fetch_consumer_producer_queue_wait_seconds 0.25",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
