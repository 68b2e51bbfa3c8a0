//! The `FetchPipeline` custom resource: what users write, and the status the operator reports.
//!
//! Doc comments on the spec types become the CRD schema's descriptions, which `kubectl explain`
//! shows: they are user documentation. Cross-field rules are CEL (`x-kubernetes-validations`),
//! so the API server itself rejects an invalid resource with a message that says what to fix.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Kafka pipeline that cleans `user-login` events: the operator runs `fetch-consumer`
/// replicas for it, one per input partition within `replicas.min`..`replicas.max`, or as
/// many as its backlog and throughput need with `spec.autoscaling`.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "fetch-pipeline.dev",
    version = "v1alpha1",
    kind = "FetchPipeline",
    plural = "fetchpipelines",
    shortname = "fp",
    namespaced,
    status = "FetchPipelineStatus",
    derive = "PartialEq",
    scale(
        spec_replicas_path = ".spec.replicas.fixed",
        status_replicas_path = ".status.desiredReplicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn = r#"{"name":"Input","type":"string","jsonPath":".spec.input.topic"}"#,
    printcolumn = r#"{"name":"Partitions","type":"integer","jsonPath":".status.partitions"}"#,
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".status.desiredReplicas"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.readyReplicas"}"#,
    printcolumn = r#"{"name":"Healthy","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Lag","type":"integer","description":"Records of the input topic not yet processed","jsonPath":".status.consumerLag"}"#,
    printcolumn = r#"{"name":"Rate","type":"number","description":"Events per second over the replicas' latest insights interval","jsonPath":".status.insights.ratePerSecond"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Users","type":"integer","priority":1,"description":"Distinct users (estimate)","jsonPath":".status.insights.distinctUsers"}"#,
    printcolumn = r#"{"name":"Cleaned","type":"integer","priority":1,"description":"Events cleaned","jsonPath":".status.insights.cleaned"}"#,
    printcolumn = r#"{"name":"DeadLettered","type":"integer","priority":1,"description":"Events dead-lettered","jsonPath":".status.insights.deadLettered"}"#,
    printcolumn = r#"{"name":"Insights-Age","type":"integer","priority":1,"description":"Seconds between the newest insights snapshot and the operator's last read","jsonPath":".status.insights.snapshotAgeSeconds"}"#
)]
#[x_kube(
    validation = Rule::new("self.replicas.min <= self.replicas.max").message("spec.replicas.min must not be greater than spec.replicas.max"),
    validation = Rule::new("!self.autoscaling.enabled || has(self.autoscaling.lagPerReplica) || has(self.autoscaling.catchUpSeconds)").message("spec.autoscaling needs a target when enabled: set lagPerReplica, catchUpSeconds or both"),
    validation = Rule::new("self.input.topic != self.output.topic").message("spec.output.topic must differ from spec.input.topic: the pipeline would consume its own output"),
    validation = Rule::new("self.input.topic != self.deadLetter.topic").message("spec.deadLetter.topic must differ from spec.input.topic: rejected events would be consumed again"),
    validation = Rule::new("self.output.topic != self.deadLetter.topic").message("spec.deadLetter.topic must differ from spec.output.topic: rejects would mix with cleaned events"),
    validation = Rule::new("!self.insights.enabled || !(self.insights.topic in [self.input.topic, self.output.topic, self.deadLetter.topic])").message("spec.insights.topic must differ from spec.input.topic, spec.output.topic and spec.deadLetter.topic: insights snapshots would mix with login events"),
)]
#[serde(rename_all = "camelCase")]
pub struct FetchPipelineSpec {
    /// How to reach the Kafka cluster.
    pub kafka: KafkaSpec,

    /// The topic of raw login events to consume. Its partition count sets the number of
    /// consumer replicas.
    #[serde(default = "TopicSpec::default_input")]
    pub input: TopicSpec,

    /// The topic cleaned events are produced to (keyed by `user_id`).
    #[serde(default = "TopicSpec::default_output")]
    pub output: TopicSpec,

    /// The topic rejected events are produced to, unchanged, with the reason in headers.
    #[serde(default = "TopicSpec::default_dead_letter")]
    pub dead_letter: TopicSpec,

    /// Bounds for the replica count. Within them the operator runs one replica per input
    /// partition (more would sit idle), or what `autoscaling` asks for; it re-reads the
    /// partition count periodically.
    #[serde(default)]
    pub replicas: ReplicasSpec,

    /// Scaling on the backlog and the throughput instead of one replica per partition. Off
    /// by default.
    #[serde(default)]
    pub autoscaling: AutoscalingSpec,

    /// Scale the consumers to zero without deleting anything; offsets stay committed, and
    /// setting it back to false resumes where the pipeline stopped.
    #[serde(default)]
    pub paused: bool,

    /// Kafka consumer group of the replicas. Defaults to `fetch-pipeline-<namespace>-<name>`.
    /// Changing it makes the pipeline start over from the new group's offsets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("size(self) > 0").message("spec.consumerGroup must not be empty; omit it for the default"))]
    pub consumer_group: Option<String>,

    /// Container image of the consumer. Defaults to the image the operator is configured with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,

    /// What the pipeline promises about each input event's result.
    ///
    /// `AtLeastOnce` (the default): every event's result is written; after a crash or a
    /// rebalance some are written twice.
    ///
    /// `ExactlyOnce`: results are written in Kafka transactions together with the consumer
    /// offsets, so readers with `isolation.level=read_committed` (librdkafka's default, not the
    /// Java client's) see each event's result exactly once, up to 100 ms later than at least
    /// once. Needs transactions on the brokers (`transaction.state.log.*` settings that their
    /// count can meet). After a consumer pod is killed, read_committed readers see nothing
    /// newer until the broker aborts the transaction it left open: up to 40 s (the 30 s
    /// transaction timeout and the broker's 10 s check), or at once when the container
    /// restarts in the same pod. Changing it restarts the consumers.
    #[serde(default)]
    pub guarantee: Guarantee,

    /// Protection of personal data (`ip`, `device_id`) in the cleaned events.
    #[serde(default)]
    pub pii: PiiSpec,

    /// Largest accepted event in bytes; larger ones are dead-lettered as `too_large`.
    /// Defaults to the consumer's 65536.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 64, max = 16777216))]
    pub max_event_bytes: Option<i32>,

    /// Insights: each consumer replica publishes what it has seen (events cleaned and
    /// dead-lettered, distinct users and devices, the most active users, app versions), and
    /// the operator sums them up in `status.insights` at every check.
    #[serde(default)]
    pub insights: InsightsSpec,

    /// CPU and memory for each consumer container. Defaults to requests of 100m CPU and
    /// 128Mi memory, and a 512Mi memory limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// Connection to Kafka.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("!has(self.sasl) || self.securityProtocol in ['SASL_PLAINTEXT', 'SASL_SSL']").message("spec.kafka.sasl needs spec.kafka.securityProtocol SASL_PLAINTEXT or SASL_SSL"),
    validation = Rule::new("!has(self.tls) || self.securityProtocol in ['SSL', 'SASL_SSL']").message("spec.kafka.tls needs spec.kafka.securityProtocol SSL or SASL_SSL"),
)]
#[serde(rename_all = "camelCase")]
pub struct KafkaSpec {
    /// Comma-separated `host:port` list of brokers, e.g. `kafka.data:9092`.
    #[schemars(length(min = 1))]
    pub bootstrap_servers: String,

    /// How to talk to the brokers. Defaults to PLAINTEXT.
    #[serde(default)]
    pub security_protocol: SecurityProtocol,

    /// SASL authentication, with the credentials read from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<SaslSpec>,

    /// TLS settings for `SSL` and `SASL_SSL`. Without them the brokers' certificates are
    /// checked against the image's system CA bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,

    /// Further librdkafka properties for the consumers (e.g. `ssl.ca.location`,
    /// `fetch.max.bytes`). Not for secrets: use `sasl` for credentials.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
}

/// librdkafka's `security.protocol`.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SecurityProtocol {
    #[default]
    #[serde(rename = "PLAINTEXT")]
    Plaintext,
    #[serde(rename = "SSL")]
    Ssl,
    #[serde(rename = "SASL_PLAINTEXT")]
    SaslPlaintext,
    #[serde(rename = "SASL_SSL")]
    SaslSsl,
}

impl SecurityProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }
}

/// SASL settings.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SaslSpec {
    /// The SASL mechanism.
    pub mechanism: SaslMechanism,
    /// Secret (in the pipeline's namespace) holding the username and password.
    pub credentials_secret: CredentialsSecret,
}

/// librdkafka's `sasl.mechanisms`.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// TLS settings.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// The Secret key (in the pipeline's namespace) holding the PEM certificate(s) of the CA
    /// that signed the brokers' certificates, e.g. `{name: kafka-ca, key: ca.crt}`. The
    /// consumers get it as a read-only file; the operator's own checks use it too.
    pub ca_secret: SecretKeyRef,
}

/// A Secret with SASL credentials.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSecret {
    /// Name of the Secret.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key of the username in the Secret.
    #[serde(default = "default_username_key")]
    pub username_key: String,
    /// Key of the password in the Secret.
    #[serde(default = "default_password_key")]
    pub password_key: String,
}

fn default_username_key() -> String {
    "username".into()
}

fn default_password_key() -> String {
    "password".into()
}

/// A Kafka topic.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
pub struct TopicSpec {
    /// Topic name: 1 to 249 letters, digits, `.`, `_` or `-`.
    #[schemars(length(min = 1, max = 249), regex(pattern = r"^[a-zA-Z0-9._-]+$"))]
    pub topic: String,
}

impl TopicSpec {
    fn named(topic: &str) -> Self {
        TopicSpec {
            topic: topic.into(),
        }
    }
    pub fn default_input() -> Self {
        Self::named("user-login")
    }
    pub fn default_output() -> Self {
        Self::named("processed-user-logins")
    }
    pub fn default_dead_letter() -> Self {
        Self::named("user-login-dlq")
    }
}

/// Publishing of insights by the consumers, and their summary in the status.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InsightsSpec {
    /// Publish insights and show their summary in `status.insights`. With false the replicas
    /// publish nothing and the status shows no insights. Defaults to true.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// Kafka topic the replicas publish their insights to: one compacted record per replica,
    /// keyed by the consumer group, so several pipelines can share it. The first replica
    /// creates it (compacted) when it is missing. 1 to 249 letters, digits, `.`, `_` or `-`;
    /// defaults to `fetch-pipeline-insights`.
    #[serde(default = "InsightsSpec::default_topic")]
    #[schemars(length(min = 1, max = 249), regex(pattern = r"^[a-zA-Z0-9._-]+$"))]
    pub topic: String,

    /// How often each replica publishes, e.g. `30s`, `1m` or `1m30s`: whole numbers with the
    /// units `ms`, `s`, `m` or `h`, between 1s and 1h. Defaults to `30s`. Shorter is fresher
    /// (`status.insights`, the rate) and writes more to Kafka. While publishing, a replica
    /// commits its input offsets only once a published snapshot counts their events, so the
    /// interval is also about the most a replica reprocesses after a crash, and
    /// `status.consumerLag` includes up to an interval of processed events.
    #[serde(default = "InsightsSpec::default_interval")]
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(
        validation = Rule::new(INTERVAL_FORMAT_RULE).message("spec.insights.interval must be a duration such as 30s, 1m or 1m30s: whole numbers with the units ms, s, m or h"),
        validation = Rule::new(INTERVAL_RANGE_RULE).message("spec.insights.interval must be between 1s and 1h"),
    )]
    pub interval: String,
}

/// The durations both the consumer (humantime) and CEL's `duration()` (Go's syntax) read the
/// same way. Bounded digit and part counts, so `duration()` can never overflow.
const INTERVAL_FORMAT_RULE: &str = "self.matches('^([0-9]{1,5}(ms|s|m|h)){1,4}$')";
/// Checked only on a well-formed value: `duration()` of anything else is an evaluation error
/// whose message would not say what to fix (the format rule does).
const INTERVAL_RANGE_RULE: &str = "!self.matches('^([0-9]{1,5}(ms|s|m|h)){1,4}$') || (duration(self) >= duration('1s') && duration(self) <= duration('1h'))";

fn default_true() -> bool {
    true
}

impl InsightsSpec {
    pub fn default_topic() -> String {
        fetch_consumer::kafka::insights_topic::DEFAULT_TOPIC.into()
    }
    pub fn default_interval() -> String {
        "30s".into()
    }
}

impl Default for InsightsSpec {
    fn default() -> Self {
        InsightsSpec {
            enabled: true,
            topic: Self::default_topic(),
            interval: Self::default_interval(),
        }
    }
}

/// Bounds for the replica count.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReplicasSpec {
    /// Fewest replicas while not paused, even with fewer partitions (spares take over
    /// partitions at once when a replica fails).
    #[serde(default = "default_min")]
    #[schemars(range(min = 0, max = 1000))]
    pub min: i32,
    /// Most replicas, whatever the partition count.
    #[serde(default = "default_max")]
    #[schemars(range(min = 1, max = 1000))]
    pub max: i32,
    /// A fixed replica count, set by `kubectl scale fp NAME --replicas N` or by an HPA or a
    /// KEDA ScaledObject through the `/scale` subresource. While it is set it wins over both
    /// one-replica-per-partition and `spec.autoscaling`, kept within `min`..`max` and the
    /// partition count. Remove it to hand the scale back to the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub fixed: Option<i32>,
}

fn default_min() -> i32 {
    1
}

fn default_max() -> i32 {
    12
}

impl Default for ReplicasSpec {
    fn default() -> Self {
        ReplicasSpec {
            min: default_min(),
            max: default_max(),
            fixed: None,
        }
    }
}

/// Scaling on the backlog and the throughput. The operator measures, at every check, the
/// consumer lag, the rate records arrive at (log end offsets over time) and the rate the
/// replicas process them (committed offsets over time), and runs as many replicas as the
/// targets need: never more than the partition count (a replica beyond it would sit idle),
/// always within `spec.replicas.min`..`spec.replicas.max`. It scales up at once, and down
/// only once every check of the last `scaleDownStabilization` agreed, to the highest count
/// any of them asked for. It never scales on missing data: while the lag cannot be read the
/// replicas stay as they are. With `spec.replicas.min: 0` an idle pipeline (no backlog, no new
/// records) scales to zero, and the first new record brings one replica back at the next
/// check.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingSpec {
    /// Turn autoscaling on. Defaults to false: one replica per input partition.
    #[serde(default)]
    pub enabled: bool,

    /// Records of backlog one replica should carry: with a lag of 120000 and 25000 per
    /// replica, the pipeline runs 5 replicas (fewer if it has fewer partitions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub lag_per_replica: Option<i64>,

    /// Drain the backlog within this many seconds, at the per-replica rate measured so far,
    /// while keeping up with the records arriving. Until a rate has been measured (replicas
    /// that had a backlog for a whole check), a backlog gets one replica, or what
    /// `lagPerReplica` asks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub catch_up_seconds: Option<i32>,

    /// How long lower replica counts must have been asked for before the pipeline scales
    /// down, e.g. `5m` or `90s`: whole numbers with the units `s`, `m` or `h`, up to 1h.
    /// Defaults to `5m`. Scaling down moves partitions between replicas (a rebalance), so
    /// this keeps a bursty input from doing it at every check.
    #[serde(default = "AutoscalingSpec::default_stabilization")]
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(
        validation = Rule::new(STABILIZATION_FORMAT_RULE).message("spec.autoscaling.scaleDownStabilization must be a duration such as 5m, 90s or 1m30s: whole numbers with the units s, m or h"),
        validation = Rule::new(STABILIZATION_RANGE_RULE).message("spec.autoscaling.scaleDownStabilization must be at most 1h"),
    )]
    pub scale_down_stabilization: String,
}

/// Like [`INTERVAL_FORMAT_RULE`], without milliseconds (no use at this scale).
const STABILIZATION_FORMAT_RULE: &str = "self.matches('^([0-9]{1,5}(s|m|h)){1,4}$')";
const STABILIZATION_RANGE_RULE: &str =
    "!self.matches('^([0-9]{1,5}(s|m|h)){1,4}$') || duration(self) <= duration('1h')";

impl AutoscalingSpec {
    pub fn default_stabilization() -> String {
        "5m".into()
    }
}

impl Default for AutoscalingSpec {
    fn default() -> Self {
        AutoscalingSpec {
            enabled: false,
            lag_per_replica: None,
            catch_up_seconds: None,
            scale_down_stabilization: Self::default_stabilization(),
        }
    }
}

/// Protection of personal data in the output.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("self.mode != 'Hash' || has(self.hashKeySecret)").message("spec.pii.mode Hash needs spec.pii.hashKeySecret (a Secret key holding the HMAC key)"))]
#[serde(rename_all = "camelCase")]
pub struct PiiSpec {
    /// `Keep` passes `ip` and `device_id` through; `Mask` coarsens them (IPv4 /24, IPv6 /48,
    /// device id prefix); `Hash` replaces them with a keyed hash, so joins still work.
    #[serde(default)]
    pub mode: PiiMode,
    /// The Secret key holding the HMAC key for `Hash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_key_secret: Option<SecretKeyRef>,
}

/// What the pipeline promises about each input event's result.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Guarantee {
    #[default]
    AtLeastOnce,
    ExactlyOnce,
}

impl Guarantee {
    /// The consumer's `--guarantee` value.
    pub fn flag(self) -> &'static str {
        match self {
            Guarantee::AtLeastOnce => "at-least-once",
            Guarantee::ExactlyOnce => "exactly-once",
        }
    }
}

/// How personal data is written.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PiiMode {
    #[default]
    Keep,
    Mask,
    Hash,
}

impl PiiMode {
    /// The consumer's `--pii-mode` value.
    pub fn flag(self) -> &'static str {
        match self {
            PiiMode::Keep => "keep",
            PiiMode::Mask => "mask",
            PiiMode::Hash => "hash",
        }
    }
}

/// One key of a Secret in the pipeline's namespace.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key within the Secret.
    #[schemars(length(min = 1))]
    pub key: String,
}

/// What the operator last saw and did. Follows the Kubernetes API conventions.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FetchPipelineStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Partitions of the input topic at the last check (absent while unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,
    /// Replicas the operator asks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_replicas: Option<i32>,
    /// Replicas of the consumer Deployment that are ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Why the replica count is what it is, e.g. "6 partitions, capped at replicas.max 4" or
    /// "backlog 120,000 records, 25,000 per replica -> 5 of 6 partitions".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling_reason: Option<String>,
    /// The label selector of the consumer pods, for the `/scale` subresource (an HPA reads it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Records not yet processed: per partition, log end offset minus the group's committed
    /// offset (or minus the log start where nothing is committed yet), summed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_lag: Option<i64>,
    /// Records per second arriving on the input topic, measured from its log end offsets over
    /// the last few checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_rate_per_second: Option<f64>,
    /// Records per second the replicas process, measured from the group's committed offsets
    /// over the last few checks (commits follow the insights interval, so this is smoothed
    /// over it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processing_rate_per_second: Option<f64>,
    /// Hash of the consumer configuration; a change rolls the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// The pipeline's insights, summed over the snapshots its replicas published (see
    /// `spec.insights`), as of `lastUpdated`. Absent while insights are disabled or nothing
    /// has been published yet; when a read fails, the last summary stays (see the
    /// `InsightsAvailable` condition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insights: Option<InsightsStatus>,
    /// `Ready`: the consumers run at the desired scale. `KafkaReachable`: the operator could
    /// read the input topic's metadata. `InsightsAvailable`: `status.insights` is current.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// A small summary of the pipeline's insights: figures and short top lists, no raw data.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InsightsStatus {
    /// Events cleaned and produced to the output topic, summed over every replica that ever
    /// published (a restarted replica's earlier work included).
    pub cleaned: i64,
    /// Events dead-lettered, summed the same way.
    pub dead_lettered: i64,
    /// Events (cleaned and dead-lettered) per second over the replicas' latest publishing
    /// interval, summed over the replicas still publishing. Absent while none is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_second: Option<f64>,
    /// Distinct user ids: an estimate with about 1% standard error.
    pub distinct_users: i64,
    /// Distinct device ids: an estimate with about 1% standard error.
    pub distinct_devices: i64,
    /// Replica processes whose snapshots were summed (each restart is a new one).
    pub contributors: i64,
    /// Age of the newest snapshot, in seconds, when the operator read them at `lastUpdated`.
    pub snapshot_age_seconds: i64,
    /// The most active users, most logins first. Counts are upper bounds (a sketch counts
    /// them), close to the truth for the most active users.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = crate::insights::TOP))]
    pub top_users: Vec<UserCount>,
    /// App versions by logins, most first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = crate::insights::TOP))]
    pub top_app_versions: Vec<AppVersionCount>,
    /// When the operator read these figures from the insights topic.
    pub last_updated: Time,
}

/// A user and their logins.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
pub struct UserCount {
    /// The user id (long ids are shortened, ending in `…`).
    #[schemars(length(max = crate::insights::MAX_KEY_CHARS))]
    pub key: String,
    /// Logins (an upper bound).
    pub count: i64,
}

/// An app version and its logins.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
pub struct AppVersionCount {
    /// The app version (long values are shortened, ending in `…`).
    #[schemars(length(max = crate::insights::MAX_KEY_CHARS))]
    pub version: String,
    /// Logins with this version.
    pub count: i64,
}
