//! Status conditions, per the Kubernetes API conventions: one entry per type, and
//! `lastTransitionTime` moves only when the status changes. Pure logic.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const READY: &str = "Ready";
pub const KAFKA_REACHABLE: &str = "KafkaReachable";
/// Whether `status.insights` is current: read at the last check, or why not.
pub const INSIGHTS_AVAILABLE: &str = "InsightsAvailable";

/// Sets condition `type_` in `conditions`, keeping its transition time if the status is the same.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) {
    let status = if status { "True" } else { "False" }.to_owned();
    let existing = conditions.iter().position(|c| c.type_ == type_);
    let last_transition_time = match existing.map(|i| &conditions[i]) {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => now.clone(),
    };
    let condition = Condition {
        type_: type_.to_owned(),
        status,
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time,
    };
    match existing {
        Some(i) => conditions[i] = condition,
        None => conditions.push(condition),
    }
}

/// Whether condition `type_` is present and `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).expect("valid"))
    }

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let mut c = Vec::new();
        set(
            &mut c,
            READY,
            false,
            "Starting",
            "waiting".into(),
            Some(1),
            &at(100),
        );
        set(
            &mut c,
            READY,
            false,
            "Starting",
            "still waiting".into(),
            Some(1),
            &at(200),
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].last_transition_time, at(100));
        assert_eq!(c[0].message, "still waiting");
        set(
            &mut c,
            READY,
            true,
            "Running",
            "ok".into(),
            Some(2),
            &at(300),
        );
        assert_eq!(c[0].last_transition_time, at(300));
        assert_eq!(c[0].observed_generation, Some(2));
        assert!(is_true(&c, READY));
        set(
            &mut c,
            KAFKA_REACHABLE,
            true,
            "MetadataRead",
            "ok".into(),
            Some(2),
            &at(300),
        );
        assert_eq!(c.len(), 2);
        assert!(!is_true(&c, "Other"));
    }
}
