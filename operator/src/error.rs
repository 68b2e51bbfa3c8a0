//! The operator's one error type.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the Kubernetes API failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The resource has no namespace (the CRD is namespaced, so this is a bug or a bad object).
    #[error("FetchPipeline {0} has no namespace")]
    MissingNamespace(String),
    /// A Secret the spec refers to is missing or lacks a key.
    #[error("secret: {0}")]
    Secret(String),
    /// A flag or setting is invalid; the message says what to fix.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Another operator replica holds, or took over, the leader Lease.
    #[error("leader election: {0}")]
    Lease(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Telemetry(#[from] fetch_telemetry::Error),
}

impl Error {
    /// A short, stable label for the failures metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube_api",
            Error::MissingNamespace(_) => "missing_namespace",
            Error::Secret(_) => "secret",
            Error::Config(_) => "config",
            Error::Lease(_) => "lease",
            Error::Io { .. } => "io",
            Error::Telemetry(_) => "telemetry",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
