//! What the pipeline's clients ask of the brokers: request counts and produce batch sizes,
//! from librdkafka's statistics, so the broker's side of a run's cost can be told apart
//! (request churn against records).
//!
//! Rules:
//! - Request counts are cumulative in librdkafka's statistics: the latest emission is the
//!   total, summed over the brokers.
//! - Batch windows (`batchcnt`, `batchsize`) cover only the time since the previous emission:
//!   their sums and counts are added up emission by emission, in all and per topic.
//! - librdkafka puts one partition's batch in each produce request, so batches per topic tell
//!   which topic the produce requests went to: a topic that gets few records, such as the
//!   dead letters, can still cost a request per partition and linger.
//!
//! Pure logic; the client contexts feed it.

use std::collections::BTreeMap;

use rdkafka::statistics::Statistics;

/// The requests worth watching, by librdkafka's names for them.
pub const WATCHED: [&str; 9] = [
    "Produce",
    "Fetch",
    "OffsetCommit",
    "Metadata",
    "Heartbeat",
    "AddPartitionsToTxn",
    "AddOffsetsToTxn",
    "TxnOffsetCommit",
    "EndTxn",
];

/// One client's requests so far, and its produce batches.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ClientRequests {
    /// Requests sent, by name, summed over the brokers (only names sent at least once).
    pub sent: BTreeMap<&'static str, i64>,
    /// Records in the produce batches so far, and how many batches.
    pub batched_records: i64,
    pub batches: i64,
    /// Bytes in the produce batches so far.
    pub batched_bytes: i64,
    /// Produce batches so far, by topic.
    pub batches_by_topic: BTreeMap<String, i64>,
}

impl ClientRequests {
    /// Takes in one statistics emission.
    pub fn update(&mut self, statistics: &Statistics) {
        for name in WATCHED {
            let total: i64 = statistics
                .brokers
                .values()
                .filter_map(|b| b.req.get(name))
                .sum();
            if total > 0 {
                self.sent.insert(name, total);
            }
        }
        for topic in statistics.topics.values() {
            self.batched_records += topic.batchcnt.sum;
            self.batches += topic.batchcnt.cnt;
            self.batched_bytes += topic.batchsize.sum;
            if topic.batchcnt.cnt > 0 {
                *self
                    .batches_by_topic
                    .entry(topic.topic.clone())
                    .or_default() += topic.batchcnt.cnt;
            }
        }
    }

    /// Produce batches by topic, as `topic=count` pairs.
    pub fn batches_by_topic(&self) -> String {
        let pairs: Vec<String> = self
            .batches_by_topic
            .iter()
            .map(|(topic, n)| format!("{topic}={n}"))
            .collect();
        pairs.join(" ")
    }

    /// Records per produce batch, on average.
    pub fn records_per_batch(&self) -> f64 {
        if self.batches == 0 {
            0.0
        } else {
            self.batched_records as f64 / self.batches as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::test_statistics;

    /// A producer's emission, cut to what is read here (plus what the type needs).
    fn stats(produce: (i64, i64), batch: (i64, i64, i64)) -> Statistics {
        let broker = |name: &str, produce: i64| {
            test_statistics::broker(
                name,
                "learned",
                &format!(r#""Produce": {produce}, "Fetch": 0"#),
            )
        };
        let window = |sum: i64, cnt: i64| {
            format!(
                r#"{{"min": 0, "max": 0, "avg": 0, "sum": {sum}, "cnt": {cnt}, "stddev": 0, "hdrsize": 0,
                "p50": 0, "p75": 0, "p90": 0, "p95": 0, "p99": 0, "p99_99": 0, "outofrange": 0}}"#
            )
        };
        test_statistics::emission(
            &[broker("b1", produce.0), broker("b2", produce.1)],
            &format!(
                r#""out": {{"topic": "out", "age": 0, "metadata_age": 0, "batchsize": {}, "batchcnt": {},
                "partitions": {{}}}}"#,
                window(batch.2, batch.1),
                window(batch.0, batch.1),
            ),
        )
    }

    #[test]
    fn request_counts_are_the_latest_totals_summed_over_brokers() {
        let mut r = ClientRequests::default();
        r.update(&stats((10, 5), (0, 0, 0)));
        r.update(&stats((30, 7), (0, 0, 0)));
        assert_eq!(r.sent.get("Produce"), Some(&37));
        assert_eq!(r.sent.get("Fetch"), None, "never sent: not listed");
    }

    #[test]
    fn batch_windows_add_up_emission_by_emission() {
        let mut r = ClientRequests::default();
        r.update(&stats((1, 0), (1_000, 10, 50_000)));
        r.update(&stats((2, 0), (3_000, 10, 150_000)));
        assert_eq!(
            (r.batched_records, r.batches, r.batched_bytes),
            (4_000, 20, 200_000)
        );
        assert_eq!(r.records_per_batch(), 200.0);
        assert_eq!(r.batches_by_topic(), "out=20");
    }
}
