//! A pipeline's insights in its status.
//!
//! Every consumer replica publishes snapshots of its insights to the insights topic
//! (`fetch_consumer::kafka::insights_topic`). At a check the operator reads that topic, merges
//! the snapshots of the pipeline's consumer group (`fetch_consumer::insights::fleet`) and
//! writes a small summary into `status.insights`.
//!
//! Rules:
//! - The status stays small whatever the data: a few figures, the top [`TOP`] users and app
//!   versions with keys cut to [`MAX_KEY_CHARS`], never sketches or IPs. It lives in etcd
//!   and is rewritten at every check.
//! - Insights never fail a reconciliation: after a failed read the last good summary stays,
//!   and the `InsightsAvailable` condition says why it is not current.
//! - Reading blocks and holds the whole topic in memory, so the controller runs [`read`] on a
//!   blocking thread, within [`READ_TIMEOUT`], a few at a time, and only once per check.
//!
//! [`read`] is the I/O; [`summarize`], [`next`] and [`due`] are pure.

use std::time::{Duration, Instant};

use fetch_consumer::insights::DEFAULT_TOP_CAPACITY;
use fetch_consumer::insights::fleet::{Fleet, Summary};
use fetch_consumer::kafka::checkpoint::now_ms;
use fetch_consumer::kafka::insights_topic;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use rdkafka::ClientConfig;

use crate::crd::{AppVersionCount, InsightsStatus, UserCount};

/// Rows of each top list in the status.
pub const TOP: usize = 5;
/// Longest user id or app version in the status; longer ones are cut (they come from the
/// input events, which may hold anything up to `spec.maxEventBytes`).
pub const MAX_KEY_CHARS: usize = 64;
/// Longest condition message: error texts come from Kafka and are not ours to bound.
const MAX_MESSAGE_CHARS: usize = 1000;
/// Longest read of the insights topic.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What one look at the insights gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `spec.insights.enabled` is false: nothing read.
    Disabled,
    /// The pipeline's merged snapshots.
    Read {
        // Boxed: a summary is large beside the other variants.
        summary: Box<Summary>,
        topic: String,
        /// Records of the topic that are not snapshots this operator can read.
        skipped: u64,
    },
    /// Nothing published for this pipeline yet; the text says what is missing.
    NotPublished(String),
    /// The topic could not be read; the text says why.
    Failed(String),
}

/// The `InsightsAvailable` condition after an outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub available: bool,
    pub reason: &'static str,
    pub message: String,
}

/// Reads `topic` and summarizes the snapshots of consumer group `group`. Blocking: it reads
/// the topic to its end, within `timeout`.
pub fn read(config: ClientConfig, topic: &str, group: &str, timeout: Duration) -> Outcome {
    let state = match insights_topic::read(config, topic, timeout) {
        Ok(state) => state,
        Err(fetch_consumer::Error::InsightsTopicMissing { .. }) => {
            return Outcome::NotPublished(format!(
                "the insights topic {topic:?} does not exist yet: no replica has published (the first one creates it)"
            ));
        }
        // Its configuration errors are about the read (a deadline), not about a setting.
        Err(fetch_consumer::Error::Config(message)) => return Outcome::Failed(message),
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let (snapshots, skipped) = state.snapshots_of(Some(group));
    if !skipped.is_empty() {
        tracing::debug!(topic, ?skipped, "records of the insights topic skipped");
    }
    if !snapshots.iter().any(|s| s.pipeline == group) {
        return Outcome::NotPublished(format!(
            "no replica of consumer group {group:?} has published to the insights topic {topic:?} yet"
        ));
    }
    let fleet = Fleet::merge(&snapshots, group, now_ms(), None, DEFAULT_TOP_CAPACITY);
    Outcome::Read {
        summary: Box::new(fleet.summary(TOP)),
        topic: topic.to_owned(),
        skipped: skipped.values().sum(),
    }
}

/// The status form of a summary read at `now`: bounded, whatever the summary holds.
pub fn summarize(summary: &Summary, now: &Time) -> InsightsStatus {
    let totals = &summary.totals;
    InsightsStatus {
        cleaned: count(totals.cleaned),
        dead_lettered: count(totals.dead_lettered),
        // JSON has no NaN or infinity; a rate that is not a number is no rate.
        rate_per_second: summary.rate.filter(|r| r.is_finite()),
        distinct_users: count(totals.distinct_users),
        distinct_devices: count(totals.distinct_devices),
        contributors: i64::try_from(summary.contributors).unwrap_or(i64::MAX),
        // Clocks of replicas and operator differ a little: never a negative age.
        snapshot_age_seconds: summary.newest_snapshot_age_seconds.max(0),
        top_users: totals
            .top_users
            .iter()
            .take(TOP)
            .map(|c| UserCount {
                key: shorten(&c.key),
                count: count(c.count),
            })
            .collect(),
        top_app_versions: totals
            .top_app_versions
            .iter()
            .take(TOP)
            .map(|(version, n)| AppVersionCount {
                version: shorten(version),
                count: count(*n),
            })
            .collect(),
        last_updated: now.clone(),
    }
}

/// The status holds signed 64-bit integers (the API's `int64`).
fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn shorten(text: &str) -> String {
    if text.chars().count() <= MAX_KEY_CHARS {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(MAX_KEY_CHARS - 1).collect();
    short.push('…');
    short
}

fn bounded(mut message: String) -> String {
    if let Some((cut, _)) = message.char_indices().nth(MAX_MESSAGE_CHARS) {
        message.truncate(cut);
        message.push('…');
    }
    message
}

/// `status.insights` and the `InsightsAvailable` condition after `outcome`, given the
/// previous summary: a failed read keeps it; nothing published, or disabled, clears it (it
/// would describe a topic or group the pipeline no longer publishes to).
pub fn next(
    previous: Option<&InsightsStatus>,
    outcome: &Outcome,
    now: &Time,
) -> (Option<InsightsStatus>, Verdict) {
    match outcome {
        Outcome::Disabled => (
            None,
            Verdict {
                available: false,
                reason: "Disabled",
                message: "spec.insights.enabled is false: the replicas publish no insights".into(),
            },
        ),
        Outcome::Read {
            summary,
            topic,
            skipped,
        } => {
            let status = summarize(summary, now);
            let mut message = format!(
                "summed the snapshots of {} replica(s) from topic {topic:?}; the newest is {} s old",
                status.contributors, status.snapshot_age_seconds
            );
            if *skipped > 0 {
                message.push_str(&format!(
                    "; {skipped} record(s) of the topic are not snapshots this operator reads and were skipped"
                ));
            }
            (
                Some(status),
                Verdict {
                    available: true,
                    reason: "Read",
                    message: bounded(message),
                },
            )
        }
        Outcome::NotPublished(why) => (
            None,
            Verdict {
                available: false,
                reason: "NotPublished",
                message: bounded(why.clone()),
            },
        ),
        Outcome::Failed(why) => {
            let kept = match previous {
                Some(p) => format!(
                    "; status.insights still shows the figures read at {}",
                    p.last_updated.0
                ),
                None => "; no insights read yet".to_owned(),
            };
            (
                previous.cloned(),
                Verdict {
                    available: false,
                    reason: "ReadFailed",
                    message: bounded(format!("{why}{kept}")),
                },
            )
        }
    }
}

/// Whether a reconciliation should read the insights: on a new generation (the spec may name
/// another topic), and otherwise at most once per `min_gap`, so the reconciliations that
/// Deployment changes set off between checks do not read the whole topic again.
pub fn due(
    last: Option<(Option<i64>, Instant)>,
    generation: Option<i64>,
    now: Instant,
    min_gap: Duration,
) -> bool {
    match last {
        None => true,
        Some((read_for, at)) => read_for != generation || now.duration_since(at) >= min_gap,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use fetch_consumer::insights::Counter;
    use fetch_consumer::insights::fleet::Figures;
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).expect("valid"))
    }

    fn figures(users: Vec<Counter>, versions: Vec<(String, u64)>) -> Figures {
        Figures {
            span: None,
            cleaned: 1200,
            dead_lettered: 34,
            dead_letters_by_reason: BTreeMap::from([("malformed_json".to_owned(), 34)]),
            distinct_users: 250,
            distinct_devices: 300,
            top_users: users,
            top_ips: vec![Counter {
                key: "10.0.0.1".into(),
                count: 9,
                error: 0,
                last_seen: 0,
            }],
            top_app_versions: versions,
            top_locales: vec![("NY".into(), 1200)],
            first_login: Some(1),
            last_login: Some(2),
        }
    }

    fn summary(users: Vec<Counter>, versions: Vec<(String, u64)>) -> Summary {
        Summary {
            pipeline: "group".into(),
            contributors: 3,
            publishing: 2,
            newest_snapshot_age_seconds: 4,
            oldest_snapshot_age_seconds: 90,
            rate: Some(12.5),
            totals: figures(users, versions),
            window: None,
        }
    }

    fn user(key: &str, count: u64) -> Counter {
        Counter {
            key: key.into(),
            count,
            error: 0,
            last_seen: 0,
        }
    }

    #[test]
    fn the_status_carries_the_figures_and_top_rows() {
        let s = summarize(
            &summary(
                vec![user("u1", 9), user("u2", 7)],
                vec![("2.3.0".into(), 1000), ("2.2.1".into(), 200)],
            ),
            &at(1000),
        );
        assert_eq!(
            (
                s.cleaned,
                s.dead_lettered,
                s.distinct_users,
                s.distinct_devices
            ),
            (1200, 34, 250, 300)
        );
        assert_eq!(
            (s.rate_per_second, s.contributors, s.snapshot_age_seconds),
            (Some(12.5), 3, 4)
        );
        assert_eq!(
            s.top_users,
            vec![
                UserCount {
                    key: "u1".into(),
                    count: 9
                },
                UserCount {
                    key: "u2".into(),
                    count: 7
                }
            ]
        );
        assert_eq!(s.top_app_versions[0].version, "2.3.0");
        assert_eq!(s.last_updated, at(1000));
        let json = serde_json::to_string(&s).expect("json");
        assert!(!json.contains("10.0.0.1"), "no IPs in the status: {json}");
        assert!(
            !json.contains("NY"),
            "only the lists the status names: {json}"
        );
    }

    #[test]
    fn the_status_stays_small_whatever_the_summary_holds() {
        let huge = "x".repeat(1 << 20);
        let users = (0..1000)
            .map(|i| user(&format!("{huge}{i}"), u64::MAX))
            .collect();
        let versions = (0..1000)
            .map(|i| (format!("{huge}{i}"), u64::MAX))
            .collect();
        let mut s = summary(users, versions);
        s.rate = Some(f64::NAN);
        s.totals.cleaned = u64::MAX;
        s.newest_snapshot_age_seconds = -3;
        let status = summarize(&s, &at(0));
        assert_eq!(status.top_users.len(), TOP);
        assert_eq!(status.top_app_versions.len(), TOP);
        assert_eq!(status.top_users[0].key.chars().count(), MAX_KEY_CHARS);
        assert!(status.top_users[0].key.ends_with('…'));
        assert_eq!(status.cleaned, i64::MAX, "saturates, never wraps negative");
        assert_eq!(status.rate_per_second, None, "NaN is not valid JSON");
        assert_eq!(status.snapshot_age_seconds, 0);
        let json = serde_json::to_string(&status).expect("json");
        assert!(json.len() < 2048, "{} bytes", json.len());
    }

    #[test]
    fn multibyte_keys_are_cut_on_character_boundaries() {
        let key = "é".repeat(MAX_KEY_CHARS * 2);
        let short = shorten(&key);
        assert_eq!(short.chars().count(), MAX_KEY_CHARS);
        assert_eq!(shorten("ünïcode"), "ünïcode");
    }

    #[test]
    fn each_outcome_gives_the_status_and_condition() {
        let read = Outcome::Read {
            summary: Box::new(summary(vec![user("u1", 9)], vec![])),
            topic: "insights".into(),
            skipped: 0,
        };
        let (status, verdict) = next(None, &read, &at(100));
        let good = status.expect("a summary");
        assert_eq!(good.last_updated, at(100));
        assert!(verdict.available);
        assert_eq!(verdict.reason, "Read");
        assert!(
            verdict.message.contains("3 replica(s)"),
            "{}",
            verdict.message
        );

        // A failed read keeps the last good summary and says so.
        let failed = Outcome::Failed("no answer from kafka:9092".into());
        let (status, verdict) = next(Some(&good), &failed, &at(200));
        assert_eq!(status.as_ref(), Some(&good), "the last good summary stays");
        assert!(!verdict.available);
        assert_eq!(verdict.reason, "ReadFailed");
        assert!(
            verdict.message.contains("no answer from kafka:9092")
                && verdict.message.contains("still shows the figures read at"),
            "{}",
            verdict.message
        );
        let (status, verdict) = next(None, &failed, &at(200));
        assert_eq!(status, None);
        assert!(verdict.message.contains("no insights read yet"));

        let (status, verdict) = next(
            Some(&good),
            &Outcome::NotPublished("nothing yet".into()),
            &at(300),
        );
        assert_eq!((status, verdict.reason), (None, "NotPublished"));

        let (status, verdict) = next(Some(&good), &Outcome::Disabled, &at(300));
        assert_eq!(
            (status, verdict.available, verdict.reason),
            (None, false, "Disabled")
        );

        let skipped = Outcome::Read {
            summary: Box::new(summary(vec![], vec![])),
            topic: "insights".into(),
            skipped: 2,
        };
        assert!(
            next(None, &skipped, &at(1))
                .1
                .message
                .contains("2 record(s)")
        );
        let long = Outcome::Failed("e".repeat(100_000));
        assert!(next(None, &long, &at(1)).1.message.chars().count() <= MAX_MESSAGE_CHARS + 1);
    }

    #[test]
    fn insights_are_read_once_per_gap_or_on_a_new_generation() {
        let t0 = Instant::now();
        let gap = Duration::from_secs(15);
        assert!(due(None, Some(1), t0, gap), "never read");
        assert!(!due(
            Some((Some(1), t0)),
            Some(1),
            t0 + Duration::from_secs(3),
            gap
        ));
        assert!(due(Some((Some(1), t0)), Some(1), t0 + gap, gap));
        assert!(
            due(Some((Some(1), t0)), Some(2), t0, gap),
            "a spec change reads at once"
        );
    }
}
