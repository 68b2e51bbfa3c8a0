//! A pipeline's status after a check, and when to check again. Pure logic.
//!
//! The status reports what the check observed and decided; the previous conditions keep
//! their transition times (see [`crate::conditions`]). A failed Kafka check is retried with
//! backoff ([`requeue_after`]), never slower than the regular interval.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::conditions::{self, INSIGHTS_AVAILABLE, KAFKA_REACHABLE, READY};
use crate::crd::{FetchPipeline, FetchPipelineStatus, InsightsStatus};
use crate::insights::Verdict;
use crate::kafka::{ProbeError, TopicState};
use crate::rates::Rates;
use crate::scaling::ScaleDecision;

/// What a check saw and decided, for the status.
pub struct Report<'a> {
    pub probe: &'a Result<TopicState, ProbeError>,
    pub rates: Rates,
    pub decision: &'a ScaleDecision,
    pub ready: i32,
    pub config_hash: String,
    pub selector: String,
    pub insights: Option<InsightsStatus>,
    pub verdict: &'a Verdict,
}

/// The status after this check, as of `now`.
pub fn build(fp: &FetchPipeline, report: Report<'_>, now: &Time) -> FetchPipelineStatus {
    let Report {
        probe,
        rates,
        decision,
        ready,
        config_hash,
        selector,
        insights,
        verdict,
    } = report;
    let generation = fp.metadata.generation;
    let previous = fp.status.clone().unwrap_or_default();
    let mut conditions = previous.conditions;
    match probe {
        Ok(state) => conditions::set(
            &mut conditions,
            KAFKA_REACHABLE,
            true,
            "TopicFound",
            format!(
                "input topic {} has {} partitions",
                fp.spec.input.topic, state.partitions
            ),
            generation,
            now,
        ),
        Err(e) => conditions::set(
            &mut conditions,
            KAFKA_REACHABLE,
            false,
            e.reason(),
            e.to_string(),
            generation,
            now,
        ),
    }
    let desired = decision.replicas;
    let (ok, reason, message) = if fp.spec.paused {
        (
            true,
            "Paused",
            "scaled to zero while spec.paused is true".to_owned(),
        )
    } else if probe.is_err() {
        (
            false,
            "KafkaUnavailable",
            format!(
                "{ready}/{desired} replicas ready; the input topic cannot be read (see KafkaReachable)"
            ),
        )
    } else if desired == 0 {
        (true, "ScaledToZero", decision.reason.clone())
    } else if ready >= desired {
        (true, "Running", format!("{ready}/{desired} replicas ready"))
    } else {
        (
            false,
            "Progressing",
            format!("{ready}/{desired} replicas ready"),
        )
    };
    conditions::set(&mut conditions, READY, ok, reason, message, generation, now);
    conditions::set(
        &mut conditions,
        INSIGHTS_AVAILABLE,
        verdict.available,
        verdict.reason,
        verdict.message.clone(),
        generation,
        now,
    );
    let progress = probe.as_ref().ok().and_then(|s| s.progress);
    FetchPipelineStatus {
        observed_generation: generation,
        partitions: probe.as_ref().ok().map(|s| s.partitions),
        desired_replicas: Some(desired),
        ready_replicas: Some(ready),
        scaling_reason: Some(decision.reason.clone()),
        selector: Some(selector),
        consumer_lag: progress.map(|p| p.lag),
        // Rates are only as current as the offsets they come from.
        input_rate_per_second: progress.and(rates.input).map(round2),
        processing_rate_per_second: progress.and(rates.processing).map(round2),
        config_hash: Some(config_hash),
        insights,
        conditions,
    }
}

/// Two decimals: the status is rewritten only when it changes, and noise in the fifth
/// decimal would rewrite it at every check.
fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// When to check again after `failures` consecutive failed Kafka checks: 1 s, 2 s, 4 s, ...
/// up to the regular `interval`, which is also the wait when nothing failed.
pub fn requeue_after(failures: u32, interval: Duration) -> Duration {
    if failures == 0 {
        return interval;
    }
    (Duration::from_secs(1) * 2u32.pow((failures - 1).min(10))).min(interval)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::Progress;
    use k8s_openapi::jiff::Timestamp;

    fn pipeline(paused: bool) -> FetchPipeline {
        let mut fp: FetchPipeline = serde_json::from_value(serde_json::json!({
            "apiVersion": "fetch-pipeline.dev/v1alpha1",
            "kind": "FetchPipeline",
            "metadata": {"name": "p", "namespace": "ns", "generation": 3},
            "spec": {"kafka": {"bootstrapServers": "k:9092"}, "paused": paused},
        }))
        .expect("valid pipeline");
        fp.status = None;
        fp
    }

    fn verdict() -> Verdict {
        Verdict {
            available: false,
            reason: "Disabled",
            message: "off".into(),
        }
    }

    fn state(lag: i64) -> Result<TopicState, ProbeError> {
        Ok(TopicState {
            partitions: 6,
            progress: Some(Progress {
                lag,
                log_end: 1_000,
                position: 1_000 - lag,
            }),
            group_protocol: None,
        })
    }

    fn build_with(
        fp: &FetchPipeline,
        probe: &Result<TopicState, ProbeError>,
        replicas: i32,
        ready: i32,
    ) -> FetchPipelineStatus {
        let decision = ScaleDecision {
            replicas,
            reason: "why".into(),
        };
        let verdict = verdict();
        build(
            fp,
            Report {
                probe,
                rates: Rates {
                    input: Some(10.123_456),
                    processing: Some(9.0),
                    capacity_per_replica: None,
                },
                decision: &decision,
                ready,
                config_hash: "h".into(),
                selector: "a=b".into(),
                insights: None,
                verdict: &verdict,
            },
            &Time(Timestamp::UNIX_EPOCH),
        )
    }

    fn ready_condition(status: &FetchPipelineStatus) -> (String, String) {
        let c = status
            .conditions
            .iter()
            .find(|c| c.type_ == READY)
            .expect("Ready is always set");
        (c.status.clone(), c.reason.clone())
    }

    #[test]
    fn ready_follows_the_replicas_the_decision_asked_for() {
        let fp = pipeline(false);
        let s = build_with(&fp, &state(5), 3, 3);
        assert_eq!(ready_condition(&s), ("True".into(), "Running".into()));
        let s = build_with(&fp, &state(5), 3, 1);
        assert_eq!(ready_condition(&s), ("False".into(), "Progressing".into()));
        let s = build_with(&fp, &state(0), 0, 0);
        assert_eq!(ready_condition(&s), ("True".into(), "ScaledToZero".into()));
        let s = build_with(&pipeline(true), &state(5), 0, 0);
        assert_eq!(ready_condition(&s), ("True".into(), "Paused".into()));
    }

    #[test]
    fn an_unreadable_topic_is_not_ready_and_reports_no_lag_or_rates() {
        let probe = Err(ProbeError::Credentials("no Secret".into()));
        let s = build_with(&pipeline(false), &probe, 2, 2);
        assert_eq!(
            ready_condition(&s),
            ("False".into(), "KafkaUnavailable".into())
        );
        assert_eq!(
            (s.consumer_lag, s.input_rate_per_second, s.partitions),
            (None, None, None)
        );
    }

    #[test]
    fn the_status_carries_lag_rates_and_the_scale_subresource_fields() {
        let s = build_with(&pipeline(false), &state(40), 2, 2);
        assert_eq!(s.consumer_lag, Some(40));
        assert_eq!(s.input_rate_per_second, Some(10.12));
        assert_eq!(s.processing_rate_per_second, Some(9.0));
        assert_eq!(s.desired_replicas, Some(2));
        assert_eq!(s.selector.as_deref(), Some("a=b"));
        assert_eq!(s.observed_generation, Some(3));
    }

    #[test]
    fn failed_checks_back_off_up_to_the_interval() {
        let interval = Duration::from_secs(30);
        let waits: Vec<u64> = (0..8)
            .map(|f| requeue_after(f, interval).as_secs())
            .collect();
        assert_eq!(waits, [30, 1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(requeue_after(u32::MAX, interval), interval);
    }
}
