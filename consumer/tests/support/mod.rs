//! Shared helpers for the integration tests: the real broker, topics, and the consumer binary.
//!
//! The broker is started by `hack/test.sh` (a real Apache Kafka in KRaft mode on loopback) and
//! named by `FETCH_TEST_KAFKA_BOOTSTRAP`. A test that needs it fails loudly when it is absent.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

pub const TIMEOUT: Duration = Duration::from_secs(120);

/// The test broker's address. Panics with the fix when no broker was started.
pub fn bootstrap() -> String {
    std::env::var("FETCH_TEST_KAFKA_BOOTSTRAP").unwrap_or_else(|_| {
        panic!(
            "FETCH_TEST_KAFKA_BOOTSTRAP is not set: these tests need the real Kafka broker. \
             Run them with hack/test.sh, which starts one, or start one with \
             `hack/kafka.sh start DIR` and export FETCH_TEST_KAFKA_BOOTSTRAP"
        )
    })
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn admin() -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .expect("admin client")
}

pub fn create_topic(name: &str, partitions: i32) {
    let results = block_on(admin().create_topics(
        &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
    ))
    .expect("create topics");
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
    }
}

pub fn add_partitions(name: &str, total: usize) {
    let results = block_on(
        admin().create_partitions(&[NewPartitions::new(name, total)], &AdminOptions::new()),
    )
    .expect("create partitions");
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("adding partitions to {t}: {e}"));
    }
}

/// Produces `records` (key, value; `None` value = no payload) and waits for every ack.
pub fn produce(topic: &str, records: &[(Vec<u8>, Option<Vec<u8>>)]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    for (key, value) in records {
        let mut record = BaseRecord::<[u8], [u8]>::to(topic).key(&key[..]);
        if let Some(v) = value {
            record = record.payload(&v[..]);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
}

/// The end offset (high watermark) of every partition of `topic`.
pub fn end_offsets(topic: &str) -> HashMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
    partitions
        .into_iter()
        .map(|p| {
            let (_, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks");
            (p, high)
        })
        .collect()
}

pub fn total(offsets: &HashMap<i32, i64>) -> i64 {
    offsets.values().sum()
}

/// The group's committed offsets on `topic`, by partition (absent: nothing committed).
pub fn committed(group: &str, topic: &str) -> HashMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in end_offsets(topic).keys() {
        tpl.add_partition(topic, *p);
    }
    let list = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    list.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// Reads every record of `topic` from the beginning until `expected` have arrived.
pub fn read_all(topic: &str, expected: usize) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in end_offsets(topic).keys() {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + TIMEOUT;
    let mut out = Vec::with_capacity(expected);
    while out.len() < expected {
        assert!(
            Instant::now() < deadline,
            "read {} of {expected} records from {topic}",
            out.len()
        );
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            out.push(m.expect("consume").detach());
        }
    }
    out
}

/// Waits until `check` holds, polling; panics with `what` on timeout.
pub fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A running `fetch-consumer run` process.
pub struct ConsumerProcess {
    pub child: Child,
    pub stderr: Arc<Mutex<Vec<String>>>,
    pub http: String,
}

impl ConsumerProcess {
    /// Starts the consumer with JSON logs and the HTTP endpoints on a kernel-chosen port.
    pub fn start(
        group: &str,
        input: &str,
        output: &str,
        dead_letter: &str,
        extra: &[&str],
    ) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fetch-consumer"))
            .args(["--log-format", "json", "run", "--bootstrap-servers"])
            .arg(bootstrap())
            .args(["--group-id", group, "--input-topic", input])
            .args(["--output-topic", output, "--dead-letter-topic", dead_letter])
            .args(["--http-addr", "127.0.0.1:0", "--commit-interval", "200ms"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn fetch-consumer");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = stderr.clone();
        let pipe = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                lines.lock().expect("lock").push(line);
            }
        });
        let mut http = String::new();
        wait_until("the consumer's HTTP address in its log", || {
            let lines = stderr.lock().expect("lock");
            http = lines
                .iter()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find_map(|v| v["fields"]["addr"].as_str().map(str::to_owned))
                .unwrap_or_default();
            !http.is_empty()
        });
        ConsumerProcess {
            child,
            stderr,
            http,
        }
    }

    /// GET `path` on the consumer's HTTP endpoints: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.http, path)
    }

    pub fn log(&self) -> String {
        self.stderr.lock().expect("lock").join("\n")
    }

    /// Sends SIGTERM and waits for the exit; returns (exit code, stdout).
    pub fn terminate(mut self) -> (Option<i32>, String) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            out.read_to_string(&mut stdout).expect("read stdout");
        }
        let code = self.child.wait().expect("wait").code();
        (code, stdout)
    }

    /// SIGKILL: no flush, no commit, no report.
    pub fn kill(mut self) {
        self.child.kill().expect("kill");
        let _ = self.child.wait();
    }
}

impl Drop for ConsumerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or_default()
        .to_owned();
    (status, body)
}
