//! End-to-end latency of a pipeline run, for `hack/bench.sh`: for every cleaned event, the
//! time from the input record's produce timestamp (CreateTime) to the output record's append
//! time (the output topic uses LogAppendTime). Events are matched by `user_id`, which the
//! generator makes unique per event by default.
//!
//!   cargo run --release --example e2e_latency -- BOOTSTRAP INPUT_TOPIC OUTPUT_TOPIC

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

fn read_all(bootstrap: &str, topic: &str) -> Vec<rdkafka::message::OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "e2e-latency-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut list = TopicPartitionList::new();
    let mut remaining = 0i64;
    for p in metadata.topics()[0].partitions() {
        let (low, high) = consumer
            .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
            .expect("watermarks");
        remaining += high - low;
        list.add_partition_offset(topic, p.id(), Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&list).expect("assign");
    let mut out = Vec::with_capacity(usize::try_from(remaining).unwrap_or(0));
    while remaining > 0 {
        match consumer.poll(Duration::from_secs(10)) {
            Some(Ok(m)) => {
                out.push(m.detach());
                remaining -= 1;
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => panic!("reading {topic}: {remaining} records never arrived"),
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
    let mut latencies: Vec<i64> = read_all(bootstrap, output)
        .iter()
        .filter_map(|m| {
            let key = std::str::from_utf8(m.key()?).ok()?;
            Some(m.timestamp().to_millis()? - produced.get(key)?)
        })
        .collect();
    latencies.sort_unstable();
    if latencies.is_empty() {
        eprintln!("no output record matched an input record");
        std::process::exit(1);
    }
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    println!(
        "latency_p50_ms={} latency_p99_ms={} latency_max_ms={} matched={}",
        pct(0.50),
        pct(0.99),
        latencies[latencies.len() - 1],
        latencies.len()
    );
}
