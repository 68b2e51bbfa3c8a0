//! What the operator asks Kafka: the input topic's partition count, and the group's progress
//! on it (lag, and the offset sums the rates are measured from).
//!
//! librdkafka calls block, so the controller runs [`probe`] on a blocking thread with a
//! timeout. The lag arithmetic is pure ([`progress`]) and tested apart. [`client_config`] is how
//! every operator request (the insights read too) reaches the brokers.

use std::collections::BTreeMap;
use std::time::Duration;

use std::sync::Mutex;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{ClientConfig, ClientContext};
use rdkafka::{Offset, TopicPartitionList};

use crate::rollout::Protocol;

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
    pub progress: Option<Progress>,
    /// The rebalance protocol the group's members run now; `None` for a group without
    /// members, or when it could not be read.
    pub group_protocol: Option<Protocol>,
}

/// The group's progress on the input topic, summed over its partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Records still to process (see [`progress`] for the rules).
    pub lag: i64,
    /// Sum of the log end offsets: grows with every record produced to the input.
    pub log_end: i64,
    /// Sum of the offsets the group will read from next: grows as the replicas commit.
    pub position: i64,
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

/// The client settings of every Kafka request the operator makes: the brokers, and the
/// pipeline's security settings and properties (SASL credentials and CA included), so the
/// operator reaches Kafka exactly as the pipeline's consumers do.
pub fn client_config(target: &KafkaTarget) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &target.bootstrap_servers)
        .set("client.id", "fetch-operator");
    for (k, v) in &target.properties {
        config.set(k, v);
    }
    config
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
    let mut config = client_config(target);
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false");
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
        progress: group_progress(&consumer, topic, &ids, timeout),
        group_protocol: group_protocol(&consumer, group, timeout),
    })
}

/// The rebalance protocol of the assignor `group` runs now (see [`crate::rollout`]).
fn group_protocol(
    consumer: &BaseConsumer<ProbeContext>,
    group: &str,
    timeout: Duration,
) -> Option<Protocol> {
    let list = consumer
        .fetch_group_list(Some(group), timeout)
        .map_err(|e| tracing::debug!(error = %e, group, "group unreadable; protocol unknown"))
        .ok()?;
    let info = list.groups().iter().find(|g| g.name() == group)?;
    // An empty group (no members) has no protocol: anything can join it.
    Protocol::of_assignors(info.protocol())
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

/// The group's progress on `topic`: committed offsets and watermarks read, the sums computed
/// by [`progress`]. `None` when any of it cannot be read: a partial sum would look like real
/// progress.
fn group_progress(
    consumer: &BaseConsumer<ProbeContext>,
    topic: &str,
    ids: &[i32],
    timeout: Duration,
) -> Option<Progress> {
    let mut list = TopicPartitionList::new();
    for id in ids {
        list.add_partition(topic, *id);
    }
    let committed = match consumer.committed_offsets(list, timeout) {
        Ok(committed) => committed,
        Err(e) => {
            tracing::debug!(error = %e, topic, "committed offsets unreadable; lag unknown");
            return None;
        }
    };
    let offsets: Vec<Option<PartitionOffsets>> = ids
        .iter()
        .map(|id| {
            let (low, high) = consumer
                .fetch_watermarks(topic, *id, timeout)
                .map_err(|e| {
                    tracing::debug!(error = %e, topic, partition = id, "watermarks unreadable");
                })
                .ok()?;
            let entry = committed.find_partition(topic, *id)?;
            // A per-partition error (e.g. the coordinator is loading) is not "nothing
            // committed": counting from the log start would overstate the lag.
            entry.error().ok()?;
            let committed = match entry.offset() {
                Offset::Offset(o) => Some(o),
                // What librdkafka reports for a partition the group never committed.
                Offset::Invalid => None,
                other => {
                    tracing::debug!(?other, topic, partition = id, "unexpected committed offset");
                    return None;
                }
            };
            Some(PartitionOffsets {
                low,
                high,
                committed,
            })
        })
        .collect();
    progress(&offsets)
}

/// Offsets of one partition: log start, log end, and the group's committed offset if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub low: i64,
    pub high: i64,
    pub committed: Option<i64>,
}

/// The group's progress summed over partitions (`None` for a partition whose offsets could
/// not be read). Per partition, the group reads next from its committed offset, or from the
/// log start where nothing is committed; a commit older than the log start counts from the
/// log start too (retention deleted the rest, the group cannot read it), and a commit past
/// the log end (a truncated or recreated topic) counts as no lag, never negative.
///
/// Unknown (`None`) when any partition is unknown: a sum over the partitions that happened to
/// answer would look like progress that did not happen.
pub fn progress(partitions: &[Option<PartitionOffsets>]) -> Option<Progress> {
    partitions.iter().try_fold(
        Progress {
            lag: 0,
            log_end: 0,
            position: 0,
        },
        |sum, p| {
            let p = p.as_ref()?;
            let from = p.committed.map_or(p.low, |c| c.max(p.low)).min(p.high);
            Some(Progress {
                lag: sum.lag.saturating_add(p.high.saturating_sub(from).max(0)),
                log_end: sum.log_end.saturating_add(p.high),
                position: sum.position.saturating_add(from),
            })
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_table() {
        let p = |low, high, committed| {
            Some(PartitionOffsets {
                low,
                high,
                committed,
            })
        };
        type Case = (&'static str, Vec<Option<PartitionOffsets>>, Option<i64>);
        let cases: &[Case] = &[
            ("no partitions", vec![], Some(0)),
            ("committed", vec![p(0, 100, Some(40))], Some(60)),
            ("caught up", vec![p(0, 100, Some(100))], Some(0)),
            (
                "nothing committed: from the log start",
                vec![p(30, 100, None)],
                Some(70),
            ),
            (
                "commit before the log start (retention): from the log start",
                vec![p(30, 100, Some(10))],
                Some(70),
            ),
            (
                "commit past the log end (topic truncated): zero, never negative",
                vec![p(0, 100, Some(150))],
                Some(0),
            ),
            (
                "empty partition, nothing committed",
                vec![p(0, 0, None)],
                Some(0),
            ),
            (
                "summed over partitions",
                vec![p(0, 100, Some(40)), p(0, 50, None), p(10, 20, Some(5))],
                Some(60 + 50 + 10),
            ),
            (
                "one partition unreadable: unknown",
                vec![p(0, 100, Some(40)), None],
                None,
            ),
            ("only partition unreadable", vec![None], None),
            (
                "huge offsets saturate instead of overflowing",
                vec![p(0, i64::MAX, None), p(0, i64::MAX, None)],
                Some(i64::MAX),
            ),
        ];
        for (what, partitions, expected) in cases {
            assert_eq!(progress(partitions).map(|p| p.lag), *expected, "{what}");
        }
    }

    #[test]
    fn positions_count_from_the_log_start_and_never_pass_the_log_end() {
        let p = |low, high, committed| {
            Some(PartitionOffsets {
                low,
                high,
                committed,
            })
        };
        let sums = progress(&[p(30, 100, None), p(0, 50, Some(10)), p(0, 20, Some(90))])
            .expect("all readable");
        assert_eq!(
            sums,
            Progress {
                lag: 70 + 40,
                log_end: 170,
                position: 30 + 10 + 20,
            }
        );
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
