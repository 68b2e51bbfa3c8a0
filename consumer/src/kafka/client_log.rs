//! librdkafka's own logs and errors, into `tracing`.
//!
//! librdkafka reports some failures only through its error callback, never as a log line:
//! a SASL authentication failure is one. rust-rdkafka's default callback writes them through
//! the `log` crate, which nothing here listens to, so every client context of the crate sends
//! both through these two functions, and a user sees why a consumer cannot connect.
//!
//! One kind of warning is not passed on as one: a `-X` property goes to every client of the
//! process (that is how it is documented), so a consumer setting such as `fetch.wait.max.ms`
//! reaches the producer too, and librdkafka warns that the producer ignores it. Ignoring it
//! is right, and the warning on every start would teach users to skip warnings: it is logged
//! at debug.

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;

/// A librdkafka log line, at the matching level.
pub(crate) fn log(level: RDKafkaLogLevel, facility: &str, message: &str) {
    let level = if for_the_other_kind_of_client(facility, message) {
        RDKafkaLogLevel::Debug
    } else {
        level
    };
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

/// Whether a line is librdkafka's notice that a property meant for consumers was given to a
/// producer, or the other way round.
fn for_the_other_kind_of_client(facility: &str, message: &str) -> bool {
    facility == "CONFWARN"
        && (message.contains(" is a consumer property and will be ignored by this producer")
            || message.contains(" is a producer property and will be ignored by this consumer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_property_meant_for_the_other_kind_of_client_is_not_a_warning() {
        assert!(for_the_other_kind_of_client(
            "CONFWARN",
            "[thrd:app]: Configuration property fetch.wait.max.ms is a consumer property and will be ignored by this producer instance"
        ));
        assert!(for_the_other_kind_of_client(
            "CONFWARN",
            "[thrd:app]: Configuration property linger.ms is a producer property and will be ignored by this consumer instance"
        ));
    }

    #[test]
    fn other_configuration_warnings_stay_warnings() {
        assert!(!for_the_other_kind_of_client(
            "CONFWARN",
            "[thrd:app]: Configuration property queue.buffering.max.ms is deprecated: use linger.ms"
        ));
        assert!(!for_the_other_kind_of_client(
            "FAIL",
            "is a consumer property and will be ignored by this producer"
        ));
    }
}
