//! The operator's Prometheus metrics, served at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Reconciliations run.
    pub reconciliations: Counter,
    /// Reconciliations that failed, by reason.
    pub failures: Family<ReasonLabel, Counter>,
    /// Kafka checks that failed, by condition reason (`Unreachable`, `TopicMissing`).
    pub kafka_failures: Family<ReasonLabel, Counter>,
    /// Time per reconciliation.
    pub duration: Histogram,
    /// 1 while this replica holds the leader Lease (or runs without leader election).
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let m = Metrics {
            registry: Registry::default(),
            reconciliations: Counter::default(),
            failures: Family::default(),
            kafka_failures: Family::default(),
            duration: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            leader: Gauge::default(),
        };
        let mut registry = Registry::with_prefix("fetch_operator");
        registry.register(
            "reconciliations",
            "Reconciliations run",
            m.reconciliations.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Reconciliations that failed, by reason",
            m.failures.clone(),
        );
        registry.register(
            "kafka_check_failures",
            "Failed reads of the input topic, by reason",
            m.kafka_failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time per reconciliation",
            m.duration.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica is the leader",
            m.leader.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
