//! librdkafka's own logs and errors, into `tracing`.
//!
//! librdkafka reports some failures only through its error callback, never as a log line:
//! a SASL authentication failure is one. rust-rdkafka's default callback writes them through
//! the `log` crate, which nothing here listens to, so every client context of the crate sends
//! both through these two functions, and a user sees why a consumer cannot connect.

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;

/// A librdkafka log line, at the matching level.
pub(crate) fn log(level: RDKafkaLogLevel, facility: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", facility, "{message}")
        }
        RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", facility, "{message}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
    }
}

/// An error librdkafka reports on its own (not the answer to a call), e.g. "SASL
/// authentication error: Authentication failed ... invalid credentials".
pub(crate) fn error(error: KafkaError, reason: &str) {
    tracing::error!(target: "librdkafka", error = %error, "{reason}");
}
