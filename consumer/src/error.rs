//! The crate's one error type.

/// Everything that can stop a `fetch-consumer` command. Rejected events are not errors: they
/// are data, routed to the dead-letter output.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag, environment variable or setting is invalid; the message says what to fix.
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("Kafka: {context}: {source}")]
    Kafka {
        context: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The insights topic does not exist: no replica has published there yet (the first one
    /// creates it), or another topic was configured.
    #[error(
        "the insights topic {topic:?} does not exist on {bootstrap}: no replica has published insights there yet (replicas create it), or another topic was configured"
    )]
    InsightsTopicMissing { topic: String, bootstrap: String },
    /// Insights could not be published, read or merged; the message says why.
    #[error("insights: {0}")]
    Insights(String),
    /// The broker refused an output or dead-letter record for good (after retries).
    #[error("delivery failed for good: {0}")]
    Delivery(String),
    /// Exactly-once: a transaction was aborted (nothing of it is visible); the pipeline can
    /// start again from the committed offsets.
    #[error("transaction aborted: {0}")]
    TransactionAborted(String),
    /// Exactly-once: the transactional producer failed for good (e.g. fenced by another
    /// process using the same `transactional.id`).
    #[error(
        "exactly-once: {0}. If another process uses the same transactional.id, give each replica its own (-X transactional.id=...)"
    )]
    TransactionFailed(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The shared runtime failed, e.g. the HTTP endpoints' address could not be bound.
    #[error(transparent)]
    Runtime(#[from] fetch_telemetry::Error),
}

impl Error {
    pub fn kafka(context: impl Into<String>) -> impl FnOnce(rdkafka::error::KafkaError) -> Error {
        let context = context.into();
        move |source| Error::Kafka { context, source }
    }

    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
