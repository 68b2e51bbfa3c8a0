//! What the operator asks Kafka: the input topic's partition count, and the group's lag.
//!
//! librdkafka calls block, so the controller runs [`probe`] on a blocking thread with a
//! timeout. The lag arithmetic is pure ([`lag`]) and tested apart.

use std::collections::BTreeMap;
use std::time::Duration;

use std::sync::Mutex;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{ClientConfig, ClientContext};
use rdkafka::{Offset, TopicPartitionList};

/// How to connect: bootstrap servers plus librdkafka properties (credentials included).
#[derive(Clone)]
pub struct KafkaTarget {
    pub bootstrap_servers: String,
    pub properties: BTreeMap<String, String>,
}

impl std::fmt::Debug for KafkaTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Properties may hold a SASL password.
        f.debug_struct("KafkaTarget")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .finish_non_exhaustive()
    }
}

/// What the operator learned about the input topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicState {
    pub partitions: i32,
    /// `None` when the offsets could not be read (the partition count still counts).
    pub lag: Option<i64>,
}

/// Why the topic could not be read; the variant becomes the `KafkaReachable` condition reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot read metadata from {servers}: {detail}")]
    Unreachable { servers: String, detail: String },
    #[error("topic {topic:?} does not exist on {servers}")]
    TopicMissing { topic: String, servers: String },
    #[error("Kafka credentials unavailable: {0}")]
    Credentials(String),
    #[error("{servers} refused the credentials: {detail}")]
    AuthenticationFailed { servers: String, detail: String },
    #[error("no answer from {servers} within {seconds} s")]
    Timeout { servers: String, seconds: u64 },
}

impl ProbeError {
    /// The condition reason (CamelCase, per API conventions).
    pub fn reason(&self) -> &'static str {
        match self {
            ProbeError::Unreachable { .. } => "Unreachable",
            ProbeError::TopicMissing { .. } => "TopicMissing",
            ProbeError::Credentials(_) => "CredentialsUnavailable",
            ProbeError::AuthenticationFailed { .. } => "AuthenticationFailed",
            ProbeError::Timeout { .. } => "Unreachable",
        }
    }
}

/// Reads the partition count of `topic` and the lag of `group` on it. Blocking.
pub fn probe(
    target: &KafkaTarget,
    topic: &str,
    group: &str,
    timeout: Duration,
) -> Result<TopicState, ProbeError> {
    let unreachable = |detail: String| ProbeError::Unreachable {
        servers: target.bootstrap_servers.clone(),
        detail,
    };
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &target.bootstrap_servers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("client.id", "fetch-operator");
    for (k, v) in &target.properties {
        config.set(k, v);
    }
    let consumer: BaseConsumer<ProbeContext> = config
        .create_with_context(ProbeContext::default())
        .map_err(|e| unreachable(e.to_string()))?;
    let metadata = consumer.fetch_metadata(Some(topic), timeout).map_err(|e| {
        // The request itself only fails with "transport failure"; the reason, when it is the
        // credentials, waits in the client's event queue for the error callback: serve it.
        let _ = consumer.poll(Duration::from_millis(100));
        match consumer.context().authentication_error() {
            Some(detail) => ProbeError::AuthenticationFailed {
                servers: target.bootstrap_servers.clone(),
                detail,
            },
            None => unreachable(e.to_string()),
        }
    })?;
    let missing = || ProbeError::TopicMissing {
        topic: topic.to_owned(),
        servers: target.bootstrap_servers.clone(),
    };
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(missing());
    };
    match t.error() {
        Some(e) if RDKafkaErrorCode::from(e) == RDKafkaErrorCode::UnknownTopicOrPartition => {
            return Err(missing());
        }
        Some(e) => return Err(unreachable(format!("{:?}", RDKafkaErrorCode::from(e)))),
        None => {}
    }
    let ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    if ids.is_empty() {
        return Err(missing());
    }
    let partitions = i32::try_from(ids.len()).unwrap_or(i32::MAX);
    Ok(TopicState {
        partitions,
        lag: group_lag(&consumer, topic, &ids, timeout),
    })
}

/// Keeps the authentication failure librdkafka reports through its error callback (and
/// nowhere else), so the condition can say the credentials are wrong.
#[derive(Default)]
struct ProbeContext {
    authentication: Mutex<Option<String>>,
}

impl ProbeContext {
    fn authentication_error(&self) -> Option<String> {
        self.authentication
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl ClientContext for ProbeContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Authentication) {
            let mut slot = self
                .authentication
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            slot.get_or_insert_with(|| reason.to_owned());
        }
        tracing::debug!(error = %error, "{reason}");
    }
}

impl ConsumerContext for ProbeContext {}

fn group_lag(
    consumer: &BaseConsumer<ProbeContext>,
    topic: &str,
    ids: &[i32],
    timeout: Duration,
) -> Option<i64> {
    let mut list = TopicPartitionList::new();
    for id in ids {
        list.add_partition(topic, *id);
    }
    let committed = consumer.committed_offsets(list, timeout).ok()?;
    let mut offsets = Vec::with_capacity(ids.len());
    for id in ids {
        let (low, high) = consumer.fetch_watermarks(topic, *id, timeout).ok()?;
        let done = committed
            .find_partition(topic, *id)
            .and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            });
        offsets.push(PartitionOffsets {
            low,
            high,
            committed: done,
        });
    }
    Some(lag(&offsets))
}

/// Offsets of one partition: log start, log end, and the group's committed offset if any.
#[derive(Debug, Clone, Copy)]
pub struct PartitionOffsets {
    pub low: i64,
    pub high: i64,
    pub committed: Option<i64>,
}

/// Records still to process, summed over partitions: log end minus the committed offset, or
/// minus the log start where nothing is committed (a commit older than the log start counts
/// from the log start too: retention deleted the rest).
pub fn lag(partitions: &[PartitionOffsets]) -> i64 {
    partitions
        .iter()
        .map(|p| {
            let from = p.committed.map_or(p.low, |c| c.max(p.low));
            (p.high - from).max(0)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_from_committed_or_log_start() {
        let p = |low, high, committed| PartitionOffsets {
            low,
            high,
            committed,
        };
        assert_eq!(lag(&[p(0, 100, Some(40)), p(0, 50, None)]), 60 + 50);
        assert_eq!(
            lag(&[p(30, 100, None)]),
            70,
            "nothing committed: from the log start"
        );
        assert_eq!(
            lag(&[p(30, 100, Some(10))]),
            70,
            "commit before retention: from the log start"
        );
        assert_eq!(lag(&[p(0, 100, Some(100))]), 0);
        assert_eq!(lag(&[]), 0);
    }

    #[test]
    fn unreachable_broker_is_reported_not_hung() {
        let target = KafkaTarget {
            bootstrap_servers: "127.0.0.1:1".into(),
            properties: BTreeMap::new(),
        };
        let err = probe(&target, "t", "g", Duration::from_millis(500))
            .expect_err("nothing listens there");
        assert_eq!(err.reason(), "Unreachable");
    }
}
