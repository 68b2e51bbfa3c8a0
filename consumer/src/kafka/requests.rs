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
//! - Why batches are the size they are: how long records waited in the client's queue before
//!   their request left (`int_latency`) and how long requests took to answer (`rtt`). Both are
//!   windows like the batches, added up emission by emission and over the brokers; their mean
//!   over the run is the sums over the counts. A producer that keeps up sends each batch after
//!   `linger.ms`; one that cannot keeps records queued far longer, and its batches grow.
//! - The records and bytes in the client's queue (`msg_cnt`, `msg_size`) are gauges: the run
//!   keeps the most seen, beside the queue's limit in bytes (`msg_size_max`), so a run whose
//!   producer could not keep up shows its queue full.
//! - What each emission added (requests since the one before, the window's batches, its mean
//!   queue wait) is returned as an [`Emission`], so the `/metrics` counters follow the same
//!   figures in production as the bench reads at the end of a run.
//!
//! Pure logic; the client contexts feed it.

use std::collections::BTreeMap;

use rdkafka::statistics::{Statistics, Window};

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
    /// Records per produce batch: the records so far over the batches so far.
    pub batch_records: Mean,
    /// Bytes per produce batch, likewise.
    pub batch_bytes: Mean,
    /// Produce batches so far, by topic.
    pub batches_by_topic: BTreeMap<String, i64>,
    /// Time records waited in the client's queue before their request was sent, in us.
    pub queue_wait: Mean,
    /// Time requests took from sent to answered, in us.
    pub round_trip: Mean,
    /// The most records seen in the client's queue at one emission.
    pub peak_queued: u64,
    /// The most bytes seen in the client's queue at one emission, and the queue's limit.
    pub peak_queued_bytes: u64,
    pub queue_limit_bytes: u64,
}

/// What one statistics emission added: the increments of counters that only go up.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Emission {
    /// Requests sent since the previous emission, by name (only names that grew).
    pub requests: Vec<(&'static str, u64)>,
    /// Produce batches in this emission's window and the records in them, by topic.
    pub batches: Vec<Batches>,
    /// How long records waited in the client's queue before their request was sent, mean over
    /// this emission's window in seconds; `None` when no request was sent in it.
    pub queue_wait_seconds: Option<f64>,
}

/// Produce batches to one topic in one window.
#[derive(Debug, Clone, PartialEq)]
pub struct Batches {
    pub topic: String,
    pub batches: u64,
    pub records: u64,
}

/// The mean of values that arrive as windows of sums and counts.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Mean {
    pub sum: i64,
    pub count: i64,
}

impl Mean {
    fn add(&mut self, window: &Window) {
        self.sum += window.sum;
        self.count += window.cnt;
    }

    /// The mean; 0 without values.
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }

    /// The mean in milliseconds of values in microseconds.
    pub fn millis(&self) -> f64 {
        self.mean() / 1000.0
    }
}

impl ClientRequests {
    /// Takes in one statistics emission and returns what it added.
    pub fn update(&mut self, statistics: &Statistics) -> Emission {
        let mut emission = Emission::default();
        for name in WATCHED {
            let total: i64 = statistics
                .brokers
                .values()
                .filter_map(|b| b.req.get(name))
                .sum();
            if total > 0 {
                let before = self.sent.insert(name, total).unwrap_or(0);
                // The sum falls when the client drops a broker, whose count goes with it.
                // What was sent meanwhile cannot be told; counting goes on from the new sum.
                let added = (total - before).max(0);
                if added > 0 {
                    emission.requests.push((name, added as u64));
                }
            }
        }
        let mut window_wait = Mean::default();
        for broker in statistics.brokers.values() {
            // Windows a broker has not measured yet are absent, not empty.
            broker.int_latency.iter().for_each(|w| {
                self.queue_wait.add(w);
                window_wait.add(w);
            });
            broker.rtt.iter().for_each(|w| self.round_trip.add(w));
        }
        if window_wait.count > 0 {
            emission.queue_wait_seconds = Some(window_wait.mean() / 1e6);
        }
        self.peak_queued = self.peak_queued.max(statistics.msg_cnt);
        self.peak_queued_bytes = self.peak_queued_bytes.max(statistics.msg_size);
        self.queue_limit_bytes = statistics.msg_size_max;
        for topic in statistics.topics.values() {
            self.batch_records.add(&topic.batchcnt);
            self.batch_bytes.add(&topic.batchsize);
            if topic.batchcnt.cnt > 0 {
                *self
                    .batches_by_topic
                    .entry(topic.topic.clone())
                    .or_default() += topic.batchcnt.cnt;
                emission.batches.push(Batches {
                    topic: topic.topic.clone(),
                    batches: topic.batchcnt.cnt.unsigned_abs(),
                    records: topic.batchcnt.sum.unsigned_abs(),
                });
            }
        }
        emission
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::test_statistics;

    /// A window of librdkafka's statistics with this sum and count.
    fn window(sum: i64, cnt: i64) -> String {
        format!(
            r#"{{"min": 0, "max": 0, "avg": 0, "sum": {sum}, "cnt": {cnt}, "stddev": 0, "hdrsize": 0,
            "p50": 0, "p75": 0, "p90": 0, "p95": 0, "p99": 0, "p99_99": 0, "outofrange": 0}}"#
        )
    }

    /// A producer's emission, cut to what is read here (plus what the type needs).
    fn stats(produce: (i64, i64), batch: (i64, i64, i64)) -> Statistics {
        let broker = |name: &str, produce: i64| {
            test_statistics::broker(
                name,
                "learned",
                &format!(r#""Produce": {produce}, "Fetch": 0"#),
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
    fn each_emission_returns_the_requests_sent_since_the_one_before() {
        let mut r = ClientRequests::default();
        let first = r.update(&stats((10, 5), (0, 0, 0)));
        assert_eq!(first.requests, vec![("Produce", 15)]);
        let second = r.update(&stats((30, 7), (0, 0, 0)));
        assert_eq!(second.requests, vec![("Produce", 22)]);
        let idle = r.update(&stats((30, 7), (0, 0, 0)));
        assert!(idle.requests.is_empty(), "nothing sent: nothing added");
        let dropped = r.update(&stats((3, 0), (0, 0, 0)));
        assert!(
            dropped.requests.is_empty(),
            "a broker dropped with its count: the sum went down, nothing is added"
        );
        let after = r.update(&stats((8, 0), (0, 0, 0)));
        assert_eq!(
            after.requests,
            vec![("Produce", 5)],
            "counted from the new sum"
        );
    }

    #[test]
    fn each_emission_returns_its_own_window_of_batches_and_queue_wait() {
        let mut r = ClientRequests::default();
        let e = r.update(&stats((1, 0), (1_000, 10, 50_000)));
        assert_eq!(
            e.batches,
            vec![Batches {
                topic: "out".into(),
                batches: 10,
                records: 1_000
            }]
        );
        assert_eq!(e.queue_wait_seconds, None, "no request sent: no wait");
        let e = r.update(&timed([(10_000, 2), (30_000, 2)], [(0, 0); 2], 0));
        assert_eq!(e.queue_wait_seconds, Some(0.01));
        assert!(e.batches.is_empty(), "an empty window adds no batches");
    }

    #[test]
    fn batch_windows_add_up_emission_by_emission() {
        let mut r = ClientRequests::default();
        r.update(&stats((1, 0), (1_000, 10, 50_000)));
        r.update(&stats((2, 0), (3_000, 10, 150_000)));
        assert_eq!(
            (r.batch_records, r.batch_bytes),
            (
                Mean {
                    sum: 4_000,
                    count: 20
                },
                Mean {
                    sum: 200_000,
                    count: 20
                }
            )
        );
        assert_eq!(r.batch_records.mean(), 200.0);
        assert_eq!(r.batches_by_topic(), "out=20");
    }

    /// An emission whose brokers b1 and b2 each report `queue_wait` and `round_trip` windows
    /// as (sum in us, count), with `queued` records of 100 bytes in a client's queue of 1 MB.
    fn timed(queue_wait: [(i64, i64); 2], round_trip: [(i64, i64); 2], queued: u64) -> Statistics {
        let mut s = stats((0, 0), (0, 0, 0));
        for (name, (wait, rtt)) in ["b1", "b2"]
            .into_iter()
            .zip(queue_wait.into_iter().zip(round_trip))
        {
            let broker = s.brokers.get_mut(name).expect("broker");
            broker.int_latency = serde_json::from_str(&window(wait.0, wait.1)).ok();
            broker.rtt = serde_json::from_str(&window(rtt.0, rtt.1)).ok();
        }
        s.msg_cnt = queued;
        s.msg_size = queued * 100;
        s.msg_size_max = 1_000_000;
        s
    }

    #[test]
    fn waits_and_round_trips_are_means_over_every_window_of_every_broker() {
        let mut r = ClientRequests::default();
        r.update(&timed([(10_000, 2), (0, 0)], [(3_000, 1), (1_000, 1)], 0));
        r.update(&timed(
            [(50_000, 4), (30_000, 4)],
            [(2_000, 1), (2_000, 1)],
            0,
        ));
        assert_eq!(
            r.queue_wait,
            Mean {
                sum: 90_000,
                count: 10
            }
        );
        assert_eq!(r.queue_wait.millis(), 9.0);
        assert_eq!(r.round_trip.millis(), 2.0);
    }

    #[test]
    fn a_client_without_waits_reports_none_and_keeps_its_peak_queue() {
        let mut r = ClientRequests::default();
        assert_eq!(r.queue_wait.millis(), 0.0, "no window yet: 0, not NaN");
        r.update(&stats((0, 0), (0, 0, 0)));
        assert_eq!(
            r.round_trip,
            Mean::default(),
            "brokers without windows add nothing"
        );
        r.update(&timed([(0, 0); 2], [(0, 0); 2], 9_000));
        r.update(&timed([(0, 0); 2], [(0, 0); 2], 40));
        assert_eq!(
            (r.peak_queued, r.peak_queued_bytes, r.queue_limit_bytes),
            (9_000, 900_000, 1_000_000)
        );
    }
}
