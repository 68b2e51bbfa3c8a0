//! Helpers shared by the integration tests of the workspace.
//!
//! The real Kafka broker started by `hack/test.sh` (Apache Kafka in KRaft mode on loopback),
//! named by `FETCH_TEST_KAFKA_BOOTSTRAP`: topics, records, offsets. A test that needs the broker
//! fails loudly, with the fix, when it is absent. With the `kube` feature, [`cluster`] gives the
//! Kubernetes control plane. [`fuzz`] holds the processing core's rules over arbitrary bytes,
//! checked on one record: the fuzz target and the corpus replay test both call it.

#[cfg(feature = "kube")]
pub mod cluster;
pub mod fuzz;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use fetch_consumer::kafka::rebootstrap::BrokerLoss;
use fetch_consumer::kafka::send::send;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::statistics::Statistics;
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

/// The workspace's `fetch-consumer` binary, for tests of other crates that run it as a real
/// process. It sits beside the test executables' directory; `cargo test --workspace` (and so
/// `hack/test.sh`) builds it. Panics with the fix when it is missing.
pub fn consumer_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    // target/<profile>/deps/<test>: the binaries are in target/<profile>.
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("fetch-consumer"))
        .expect("the test executable is in target/<profile>/deps");
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build -p fetch-consumer`, or run the tests with \
         `cargo test --workspace` (hack/test.sh does), which builds it",
        path.display()
    );
    path
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// Admin requests are futures served by librdkafka's own threads, so a plain executor drives
/// them, from sync tests and from inside a tokio runtime alike.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client")
}

/// Creates `name` with `partitions` partitions on the shared test broker.
pub fn create_topic(name: &str, partitions: i32) {
    create_topic_on(&bootstrap(), name, partitions);
}

/// Creates `name` with `partitions` partitions on the broker at `bootstrap`.
pub fn create_topic_on(bootstrap: &str, name: &str, partitions: i32) {
    create_topic_with(bootstrap, name, partitions, &[]);
}

/// Creates `name` with `partitions` partitions and topic `config` on the broker at `bootstrap`.
pub fn create_topic_with(bootstrap: &str, name: &str, partitions: i32, config: &[(&str, &str)]) {
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (key, value) in config {
        topic = topic.set(key, value);
    }
    let results = block_on(admin(bootstrap).create_topics(
        &[topic],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
    ))
    .expect("create topics");
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
    }
}

pub fn add_partitions(name: &str, total: usize) {
    let results = block_on(
        admin(&bootstrap())
            .create_partitions(&[NewPartitions::new(name, total)], &AdminOptions::new()),
    )
    .expect("create partitions");
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("adding partitions to {t}: {e}"));
    }
}

/// Produces `records` (key, value; `None` value = no payload) and waits for every ack.
pub fn produce(topic: &str, records: &[(Vec<u8>, Option<Vec<u8>>)]) {
    produce_to(&bootstrap(), topic, records);
}

/// [`produce`] to the broker at `bootstrap` (a test's own [`Broker`]). Idempotent, so a retry
/// across a broker restart writes no record twice, and any record that could not be delivered
/// fails the test here rather than as a missing record later.
pub fn produce_to(bootstrap: &str, topic: &str, records: &[(Vec<u8>, Option<Vec<u8>>)]) {
    let producer: BaseProducer<Mended> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .set("statistics.interval.ms", "1000")
        .create_with_context(Mended {
            loss: BrokerLoss::new("test producer"),
            first_failure: std::sync::Mutex::new(None),
        })
        .expect("producer");
    for (key, value) in records {
        let mut record = BaseRecord::<[u8], [u8]>::to(topic).key(&key[..]);
        if let Some(v) = value {
            record = record.payload(&v[..]);
        }
        send(&producer, record).unwrap_or_else(|e| panic!("producing to {topic}: {e}"));
    }
    // As long as any wait in the tests: a broker restarted under load can take a while.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match producer.flush(Duration::from_secs(1)) {
            Ok(()) => break,
            Err(e) if Instant::now() >= deadline => panic!("flush: {e}"),
            Err(_) => {
                if producer.context().loss.mend(producer.client(), bootstrap) {
                    eprintln!("the test producer had forgotten every broker; given them back");
                }
            }
        }
    }
    let failure = producer.context().first_failure.lock().map(|f| f.clone());
    if let Ok(Some(failure)) = failure {
        panic!("producing to {topic}: {failure}");
    }
}

/// The test producers' context. A producer streaming into a broker that restarts can forget
/// every broker, as the pipeline's can (`fetch_consumer::kafka::rebootstrap`), and is mended
/// the same way. It keeps the first delivery that failed, for the test to fail on.
struct Mended {
    loss: BrokerLoss,
    first_failure: std::sync::Mutex<Option<String>>,
}

impl ClientContext for Mended {
    fn stats(&self, statistics: Statistics) {
        self.loss.observe(&statistics);
    }
}

impl ProducerContext for Mended {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result
            && let Ok(mut first) = self.first_failure.lock()
        {
            first.get_or_insert_with(|| format!("a record was not delivered: {e}"));
        }
    }
}

/// The end offset (high watermark) of every partition of `topic`.
pub fn end_offsets(topic: &str) -> HashMap<i32, i64> {
    end_offsets_on(&bootstrap(), topic)
}

pub fn total(offsets: &HashMap<i32, i64>) -> i64 {
    offsets.values().sum()
}

/// The group's committed offsets on `topic`, by partition (absent: nothing committed).
pub fn committed(group: &str, topic: &str) -> HashMap<i32, i64> {
    committed_on(&bootstrap(), group, topic)
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
pub fn wait_until(what: &str, check: impl FnMut() -> bool) {
    wait_until_else(what, check, String::new);
}

/// [`wait_until`], whose timeout also tells what `describe` finds then (offsets, logs), so a
/// failure says where things stood.
pub fn wait_until_else(
    what: &str,
    mut check: impl FnMut() -> bool,
    describe: impl FnOnce() -> String,
) {
    let deadline = Instant::now() + TIMEOUT;
    while !check() {
        if Instant::now() >= deadline {
            panic!("timed out waiting for {what}\n{}", describe());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A broker of a test's own, for tests that stop it; stopped when dropped.
///
/// One at a time per test binary: three brokers restarting at once beside their consumers on
/// two cores once left a test's own producer unable to flush within two minutes, and the test
/// failed for the machine's sake, not the consumer's.
pub struct Broker {
    pub bootstrap: String,
    dir: std::path::PathBuf,
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
}

static OWN_BROKERS: std::sync::Mutex<()> = std::sync::Mutex::new(());

const KAFKA_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../hack/kafka.sh");

/// `hack/kafka.sh COMMAND DIR`, with `KAFKA_STOP_WITH` set to this test binary's pid: the
/// script then stops a broker it starts once the binary exits. A binary killed (a timeout,
/// Ctrl-C) never drops its [`Broker`], whose JVM would otherwise run on in the background.
pub fn kafka_sh(command: &str, dir: &std::path::Path) -> std::process::Command {
    let mut sh = std::process::Command::new("bash");
    sh.args([KAFKA_SCRIPT, command])
        .arg(dir)
        .env("KAFKA_STOP_WITH", std::process::id().to_string());
    sh
}

impl Broker {
    /// Starts a single-node KRaft broker with `hack/kafka.sh` in a fresh directory.
    pub fn start() -> Self {
        // A test that failed while holding it poisoned it; the next may still run.
        let one_at_a_time = OWN_BROKERS.lock().unwrap_or_else(|e| e.into_inner());
        let dir = std::env::temp_dir().join(unique("broker"));
        let status = kafka_sh("start", &dir)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run hack/kafka.sh");
        assert!(
            status.success(),
            "hack/kafka.sh start failed (see {})",
            dir.display()
        );
        let env = std::fs::read_to_string(dir.join("env")).expect("broker env file");
        let bootstrap = env
            .lines()
            .find_map(|l| l.strip_prefix("KAFKA_BOOTSTRAP="))
            .expect("KAFKA_BOOTSTRAP in env file")
            .to_owned();
        Broker {
            bootstrap,
            dir,
            _one_at_a_time: one_at_a_time,
        }
    }

    /// Stops the broker the way `hack/kafka.sh stop` does (SIGTERM: a controlled shutdown that
    /// flushes its logs; SIGKILL after 30 s), keeping its data and port for
    /// [`Broker::start_again`].
    pub fn stop(&self) {
        let status = kafka_sh("stop", &self.dir)
            .status()
            .expect("run hack/kafka.sh");
        assert!(
            status.success(),
            "hack/kafka.sh stop failed (see {})",
            self.dir.display()
        );
    }

    /// Starts the stopped broker again from the same data on the same port
    /// (`hack/kafka.sh restart`), as a broker pod restarted with its volume comes back, and
    /// waits until it serves every partition.
    pub fn start_again(&self) {
        let status = kafka_sh("restart", &self.dir)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run hack/kafka.sh");
        assert!(
            status.success(),
            "hack/kafka.sh restart failed (see {})",
            self.dir.display()
        );
        // "Started" comes before the broker leads its partitions again (metadata and offset
        // requests answer "not leader" for a moment): serving means every partition answers.
        wait_until("the restarted broker to serve every partition", || {
            self.serves_every_partition()
        });
    }

    fn serves_every_partition(&self) -> bool {
        let consumer: BaseConsumer = match ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
        {
            Ok(c) => c,
            Err(_) => return false,
        };
        let timeout = Duration::from_secs(5);
        let Ok(md) = consumer.fetch_metadata(None, timeout) else {
            return false;
        };
        md.topics().iter().all(|t| {
            t.error().is_none()
                && t.partitions().iter().all(|p| {
                    p.error().is_none()
                        && consumer.fetch_watermarks(t.name(), p.id(), timeout).is_ok()
                })
        })
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = kafka_sh("stop", &self.dir).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A spawned program's stderr, collected line by line by a thread as the program writes it.
/// Tests read the lines to find what the program logged.
pub struct CapturedLog {
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    reader: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl CapturedLog {
    /// The lines read so far.
    pub fn lines(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until every line is read: call it once the program has exited. The reader thread
    /// can be behind the exit, and a program's last words are the lines a test wants most.
    pub fn finish(&self) {
        let reader = self.reader.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(reader) = reader {
            let _ = reader.join();
        }
    }
}

/// Starts collecting `child`'s stderr, which must be piped.
pub fn capture_stderr(child: &mut std::process::Child) -> CapturedLog {
    use std::io::{BufRead, BufReader};
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = lines.clone();
    let pipe = child.stderr.take().expect("the child's stderr is piped");
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    });
    CapturedLog {
        lines,
        reader: std::sync::Mutex::new(Some(reader)),
    }
}

/// GET `path` from the HTTP server at `addr` (`host:port`): the status and the body. Gives up
/// after 10 s, so a stuck server fails the test instead of hanging it.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    let limit = Duration::from_secs(10);
    let socket = addr
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| panic!("{addr} is not host:port"));
    let mut stream = TcpStream::connect_timeout(&socket, limit).expect("connect");
    stream.set_read_timeout(Some(limit)).expect("read timeout");
    stream
        .set_write_timeout(Some(limit))
        .expect("write timeout");
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

/// The end offset of every partition of `topic` on the broker at `bootstrap`.
pub fn end_offsets_on(bootstrap: &str, topic: &str) -> HashMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
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

/// The group's committed offsets on `topic` on the broker at `bootstrap`. Waits out a group
/// coordinator that is not ready yet (a broker just started or restarted answers "not
/// coordinator" for a moment).
pub fn committed_on(bootstrap: &str, group: &str, topic: &str) -> HashMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in end_offsets_on(bootstrap, topic).keys() {
        tpl.add_partition(topic, *p);
    }
    let deadline = Instant::now() + TIMEOUT;
    let list = loop {
        match consumer.committed_offsets(tpl.clone(), Duration::from_secs(10)) {
            Ok(list) => break list,
            Err(e) if Instant::now() < deadline => {
                eprintln!("committed offsets of {group} not readable yet: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("committed offsets of {group}: {e}"),
        }
    };
    list.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// Every record of `topic` on the broker at `bootstrap`, from the beginning to the end offsets
/// read when called: the whole topic, however many records that is (duplicates included).
///
/// Read as librdkafka reads by default, `read_committed`: records of aborted transactions are
/// skipped, and so are transaction markers, which take offsets but are never delivered. A
/// partition is done at its end offset or at the end the broker reports (its last stable
/// offset), whichever comes first; call it once no transaction is open.
pub fn read_to_end(bootstrap: &str, topic: &str) -> Vec<OwnedMessage> {
    use rdkafka::Message;
    use rdkafka::error::KafkaError;
    let ends = end_offsets_on(bootstrap, topic);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in ends.keys() {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    // The next offset to read per partition, until each reaches its end.
    let mut next: HashMap<i32, i64> = ends.keys().map(|p| (*p, 0)).collect();
    let mut at_end: HashSet<i32> = HashSet::new();
    let deadline = Instant::now() + TIMEOUT;
    let mut out = Vec::new();
    while next
        .iter()
        .any(|(p, n)| *n < ends[p] && !at_end.contains(p))
    {
        assert!(
            Instant::now() < deadline,
            "read {} records of {topic}; positions {next:?}, ends {ends:?}",
            out.len()
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(m) => {
                let m = m.expect("consume").detach();
                if m.offset() < ends[&m.partition()] {
                    next.insert(m.partition(), m.offset() + 1);
                    out.push(m);
                }
            }
            None => {}
        }
    }
    out
}

/// Sets `config` on `topic` on the broker at `bootstrap`. A whole replacement (Kafka's
/// AlterConfigs): the topic's other settings go back to the broker's defaults.
pub fn set_topic_config(bootstrap: &str, topic: &str, config: &[(&str, &str)]) {
    let mut alter =
        rdkafka::admin::AlterConfig::new(rdkafka::admin::ResourceSpecifier::Topic(topic));
    for (key, value) in config {
        alter = alter.set(key, value);
    }
    let results = block_on(admin(bootstrap).alter_configs(
        [&alter],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
    ))
    .expect("alter configs");
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("setting {config:?} on {t:?}: {e}"));
    }
}

/// Deletes `topic` on the broker at `bootstrap` and waits until its metadata says it is gone.
pub fn delete_topic_on(bootstrap: &str, topic: &str) {
    let results = block_on(admin(bootstrap).delete_topics(
        &[topic],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
    ))
    .expect("delete topics");
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("deleting topic {t}: {e}"));
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("consumer");
    wait_until(&format!("topic {topic} gone"), || {
        consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .is_ok_and(|md| md.topics().iter().all(|t| t.error().is_some()))
    });
}
