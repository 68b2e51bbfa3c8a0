//! End-to-end latency of a pipeline run, for `hack/bench.sh`: for every cleaned event, the
//! time from the input record's produce timestamp (CreateTime) to the output record's append
//! time (the output topic uses LogAppendTime). Events are matched by `user_id`, which the
//! generator makes unique per event by default: the pipeline's output key, or the `user_id`
//! in the value for the pass-through, which keeps the input's key.
//!
//! The percentiles leave out the events produced in the first two seconds of the load, which
//! measure start-up, not a steady rate: the generator's producer waits about 0.5 s for its
//! producer id before its first batch, and each client's first produce to a topic made for
//! the run waits while it learns the leaders: on this machine some runs' second second still
//! waits (docs/benchmarks.md §8, stop 37). The all-events p99 is printed beside them.
//!
//!   cargo run --release --example e2e_latency -- BOOTSTRAP INPUT_TOPIC OUTPUT_TOPIC
//!
//! With `E2E_LATENCY_TIMELINE=FILE`, every matched event's "produced-at-ms latency-ms" goes to
//! FILE too, in production order: when the slow ones were produced, to set beside the
//! consumer's log.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// Events produced this long after the first one count towards the percentiles. The window
/// they span is printed, for `hack/bench.sh` to set the broker's GC pauses beside:
/// `window_from_ms`, the first event's produce time plus this, and `window_to_ms`, the latest
/// append of the events counted.
const WARMUP_MS: i64 = 2_000;

/// Every record of `topic`, read as librdkafka reads by default (`read_committed`): an
/// exactly-once pipeline's transaction markers take offsets but are never delivered, so each
/// partition is read to the end the broker reports, not to its high watermark.
fn read_all(bootstrap: &str, topic: &str) -> Vec<rdkafka::message::OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "e2e-latency-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut list = TopicPartitionList::new();
    let mut reading = std::collections::HashSet::new();
    for p in metadata.topics()[0].partitions() {
        reading.insert(p.id());
        list.add_partition_offset(topic, p.id(), Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&list).expect("assign");
    let mut out = Vec::new();
    while !reading.is_empty() {
        match consumer.poll(Duration::from_secs(10)) {
            Some(Ok(m)) => out.push(m.detach()),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                reading.remove(&p);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => panic!("reading {topic}: partitions {reading:?} never reached their end"),
        }
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, bootstrap, input, output] = &args[..] else {
        eprintln!("usage: e2e_latency BOOTSTRAP INPUT_TOPIC OUTPUT_TOPIC");
        std::process::exit(2);
    };
    let mut produced: HashMap<String, i64> = HashMap::new();
    for m in read_all(bootstrap, input) {
        let Some(payload) = m.payload() else { continue };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(payload) else {
            continue;
        };
        if let (Some(user), Some(ts)) = (v["user_id"].as_str(), m.timestamp().to_millis()) {
            produced.insert(user.to_owned(), ts);
        }
    }
    let Some(&load_started) = produced.values().min() else {
        eprintln!("no input record with a user_id");
        std::process::exit(1);
    };
    // (produced at, latency) of every matched event.
    let matched: Vec<(i64, i64)> = read_all(bootstrap, output)
        .iter()
        .filter_map(|m| {
            let by_key = m.key().and_then(|k| std::str::from_utf8(k).ok());
            let produced_at = match by_key.and_then(|k| produced.get(k)) {
                Some(at) => *at,
                None => {
                    let v = serde_json::from_slice::<serde_json::Value>(m.payload()?).ok()?;
                    *produced.get(v["user_id"].as_str()?)?
                }
            };
            Some((produced_at, m.timestamp().to_millis()? - produced_at))
        })
        .collect();
    if let Ok(path) = std::env::var("E2E_LATENCY_TIMELINE") {
        let mut timeline = matched.clone();
        timeline.sort_unstable();
        let lines: String = timeline
            .iter()
            .map(|(at, latency)| format!("{at} {latency}\n"))
            .collect();
        std::fs::write(&path, lines).expect("writing the timeline");
    }
    let sorted = |keep: &dyn Fn(i64) -> bool| {
        let mut l: Vec<i64> = matched
            .iter()
            .filter(|(at, _)| keep(*at))
            .map(|(_, l)| *l)
            .collect();
        l.sort_unstable();
        l
    };
    let all = sorted(&|_| true);
    let window_from = load_started + WARMUP_MS;
    let steady = sorted(&|at| at >= window_from);
    let window_to = matched
        .iter()
        .filter(|(at, _)| *at >= window_from)
        .map(|(at, latency)| at + latency)
        .max();
    let Some(window_to) = window_to else {
        eprintln!("no output record matched an input record produced after the warm-up");
        std::process::exit(1);
    };
    let pct = |l: &[i64], p: f64| l[((l.len() - 1) as f64 * p).round() as usize];
    println!(
        "latency_p50_ms={} latency_p99_ms={} latency_max_ms={} matched={} all_events_p99_ms={} all_events_max_ms={} \
         window_from_ms={window_from} window_to_ms={window_to}",
        pct(&steady, 0.50),
        pct(&steady, 0.99),
        steady[steady.len() - 1],
        steady.len(),
        pct(&all, 0.99),
        all[all.len() - 1],
    );
}
