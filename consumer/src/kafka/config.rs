//! librdkafka client settings: our defaults, then the user's `-X key=value` overrides.

use std::str::FromStr;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::config::RDKafkaLogLevel;

/// One librdkafka property given with `-X key=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaProperty {
    pub key: String,
    pub value: String,
}

impl FromStr for KafkaProperty {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => Ok(KafkaProperty {
                key: key.trim().to_owned(),
                value: value.to_owned(),
            }),
            _ => Err(format!(
                "expected KEY=VALUE (a librdkafka property), e.g. -X security.protocol=SASL_SSL; got {s:?}"
            )),
        }
    }
}

/// What the pipeline promises about each input record's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Guarantee {
    /// Every record's result is written; after a crash or a rebalance some are written twice.
    #[default]
    AtLeastOnce,
    /// Results are written in Kafka transactions with the input offsets: readers with
    /// `isolation.level=read_committed` see each record's result exactly once.
    ExactlyOnce,
}

impl Guarantee {
    /// How often progress is committed unless told: offsets every second; transactions every
    /// 100 ms, since a transaction's output is visible to read_committed readers only once it
    /// commits (the interval is their latency; `hack/bench.sh` measures the cost).
    pub fn default_commit_interval(self) -> Duration {
        match self {
            Guarantee::AtLeastOnce => Duration::from_secs(1),
            Guarantee::ExactlyOnce => Duration::from_millis(100),
        }
    }
}

/// Where the broker is and how to talk to it.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub bootstrap_servers: String,
    /// Applied after our defaults, so they can override any of them.
    pub properties: Vec<KafkaProperty>,
}

impl KafkaSettings {
    /// Every client starts here. librdkafka hands all its log lines to the client's context
    /// (`client_log`, into `tracing`, whose filter decides): without the level set here,
    /// rust-rdkafka takes it from the `log` crate, which nothing here sets up, so it was Error
    /// and disconnects, session timeouts and `-X debug=...` output never reached the log.
    /// (librdkafka writes debug lines only for the contexts `debug` names.)
    fn base(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers);
        c.set("client.id", "fetch-consumer");
        c.set_log_level(RDKafkaLogLevel::Debug);
        c
    }

    fn with_overrides(&self, mut c: ClientConfig) -> ClientConfig {
        for p in &self.properties {
            c.set(&p.key, &p.value);
        }
        c
    }

    /// A plain client (admin, or a reader that assigns partitions itself): the address, the
    /// security settings and the user's overrides.
    pub fn client(&self) -> ClientConfig {
        self.with_overrides(self.base())
    }

    /// The consumer: manual offset management (commits follow acknowledgements), statistics
    /// for the lag metric, and a small prefetch queue that is refilled promptly.
    ///
    /// librdkafka bounds its prefetch queue per partition (64 MB by default, most of a memory
    /// budget with a few partitions) and, once a partition's queue is over that bound, waits
    /// `fetch.queue.backoff.ms` (1 s by default) before fetching it again. With a bounded queue
    /// that pause starved the loop: it spent 80% of its time waiting for records and drained
    /// 96,000 events/s; with a 10 ms pause it drains 4x as many from a 4 MB queue, and as
    /// many again from a 2 MB one, with ~20 MB less peak RSS (docs/benchmarks.md).
    ///
    /// Heartbeats every second: the members of a group learn of a rebalance at their next
    /// heartbeat, and at librdkafka's 3 s a scale event paused partitions for up to 3 s longer
    /// (`hack/rebalance-cost.sh`, docs/benchmarks.md).
    ///
    /// Cooperative-sticky assignment: a replica joining or leaving moves only the partitions
    /// it must, and the others keep consuming theirs (librdkafka's eager default stops every
    /// partition of the group at each scale event). Measured, it pauses half the partitions a
    /// join pauses with eager assignment, for about twice as long (two rounds); p50 latency
    /// through scale events halves. `-X partition.assignment.strategy=range,roundrobin` goes
    /// back to eager; every member of a group must use the same kind.
    pub fn consumer(&self, group_id: &str) -> ClientConfig {
        let mut c = self.base();
        c.set("group.id", group_id)
            .set("heartbeat.interval.ms", "1000")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("statistics.interval.ms", "5000")
            .set("queued.max.messages.kbytes", "2048")
            .set("fetch.queue.backoff.ms", "10");
        self.with_overrides(c)
    }

    /// The producer: idempotent (no duplicates or reordering from its own retries), all
    /// in-sync replicas acknowledge, small linger so batches fill under load, and a send
    /// queue capped at 16 MB (librdkafka's default is 1 GB) so memory stays bounded and a slow
    /// broker pushes back on consumption instead.
    pub fn producer(&self) -> ClientConfig {
        let mut c = self.base();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            .set("queue.buffering.max.kbytes", "16384")
            // Request counts and batch sizes for the run's summary line.
            .set("statistics.interval.ms", "5000");
        self.with_overrides(c)
    }

    /// The exactly-once producer: [`Self::producer`]'s settings plus a transactional id.
    ///
    /// A transaction left open by a replica killed mid-way holds back read_committed readers
    /// (and its partitions' next owner, if it had sent their offsets) until the broker aborts
    /// it: at `transaction.timeout.ms` (found by the broker's check every 10 s), or at once
    /// when a producer with the same id starts (a container restarted in its pod keeps its
    /// host name and pid 1, so its id). 30 s keeps that pause near the group's own 45 s
    /// session timeout, which a killed member costs anyway, and still lets records wait out a
    /// 30 s broker outage (a transactional producer's `message.timeout.ms` cannot exceed it).
    pub fn transactional_producer(&self, transactional_id: &str) -> ClientConfig {
        let mut c = self.producer();
        c.set("transactional.id", transactional_id)
            .set("transaction.timeout.ms", "30000");
        // The user's overrides win here too (another transactional.id, a longer timeout).
        self.with_overrides(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_key_value() {
        let p: KafkaProperty = "sasl.password=a=b".parse().expect("valid");
        assert_eq!((p.key.as_str(), p.value.as_str()), ("sasl.password", "a=b"));
        let err = "novalue".parse::<KafkaProperty>().expect_err("invalid");
        assert!(err.contains("KEY=VALUE"), "{err}");
        assert!("=x".parse::<KafkaProperty>().is_err());
    }

    #[test]
    fn overrides_win_over_defaults() {
        let s = KafkaSettings {
            bootstrap_servers: "b:9092".into(),
            properties: vec!["linger.ms=50".parse().expect("valid")],
        };
        let p = s.producer();
        assert_eq!(p.get("linger.ms"), Some("50"));
        assert_eq!(p.get("enable.idempotence"), Some("true"));
        assert_eq!(s.consumer("g").get("enable.auto.commit"), Some("false"));
        let t = s.transactional_producer("g.host.1");
        assert_eq!(t.get("transactional.id"), Some("g.host.1"));
        assert_eq!(t.get("linger.ms"), Some("50"));
    }
}
