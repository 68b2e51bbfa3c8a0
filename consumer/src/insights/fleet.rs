//! One pipeline's insights, merged from the snapshots its replicas published.
//!
//! Rules:
//! - The topic is read to its end and the last value of each key wins; a tombstone (a key
//!   with no value) removes it. That is what compaction will leave, so a reader sees the same
//!   answer before and after compaction.
//! - Totals merge every replica's latest `total` snapshot, including those of replicas that
//!   are gone: each process publishes under its own key, so none replaces another's.
//! - A window of length `W` merges the `window` snapshots whose interval ended within the last
//!   `W`: the resolution is the publishing interval, and the span actually covered is
//!   reported beside the figures.
//! - The rate is, per replica still publishing, the events of its latest interval divided by
//!   that interval's length, summed over replicas.
//! - Records that are not snapshots are skipped and counted by reason, never fatal.
//!
//! Pure logic over record keys and values; reading the topic is `kafka::insights_topic`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use serde::Serialize;

use super::snapshot::{Snapshot, SnapshotKind, Span};
use super::{Counter, Insights};

/// A replica counts as publishing while its newest snapshot is at most this many of its own
/// intervals old.
const LIVE_INTERVALS: i64 = 3;

/// The latest record of every key of the insights topic.
#[derive(Debug, Default)]
pub struct TopicState {
    latest: HashMap<Vec<u8>, Vec<u8>>,
    /// Records read, tombstones and replaced ones included.
    pub records: u64,
    /// Records skipped, by why.
    skipped: BTreeMap<String, u64>,
}

impl TopicState {
    /// Applies one record, in topic order.
    pub fn apply(&mut self, key: Option<&[u8]>, value: Option<&[u8]>) {
        self.records += 1;
        let Some(key) = key else {
            *self.skipped.entry("no key".into()).or_default() += 1;
            return;
        };
        match value {
            Some(value) => {
                self.latest.insert(key.to_vec(), value.to_vec());
            }
            None => {
                self.latest.remove(key);
            }
        }
    }

    /// Records kept (the latest per key).
    pub fn len(&self) -> usize {
        self.latest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }

    /// Decodes every kept record, counting those that are not snapshots.
    pub fn snapshots(&self) -> (Vec<Snapshot>, BTreeMap<String, u64>) {
        self.snapshots_of(None)
    }

    /// Like [`Self::snapshots`], decoding only records whose key may belong to `pipeline`
    /// (keys start with the pipeline's name and a `/`), so a reader interested in one
    /// pipeline does not hold every pipeline's snapshots in memory. The caller still checks
    /// each snapshot's pipeline: "a" is a prefix of "a/b"'s keys too.
    pub fn snapshots_of(&self, pipeline: Option<&str>) -> (Vec<Snapshot>, BTreeMap<String, u64>) {
        let prefix = pipeline.map(|p| format!("{p}/"));
        let mut skipped = self.skipped.clone();
        let mut out = Vec::with_capacity(self.latest.len());
        let wanted = self.latest.iter().filter(|(key, _)| {
            prefix
                .as_ref()
                .is_none_or(|p| key.starts_with(p.as_bytes()))
        });
        for (_, value) in wanted {
            match Snapshot::decode(value) {
                Ok(s) => out.push(s),
                Err(e) => {
                    tracing::warn!(error = %e, "skipping a record of the insights topic");
                    *skipped.entry(e.to_string()).or_default() += 1;
                }
            }
        }
        (out, skipped)
    }
}

/// Which pipeline to report on.
pub fn choose_pipeline(snapshots: &[Snapshot], wanted: Option<&str>) -> Result<String, String> {
    let names: BTreeSet<&str> = snapshots.iter().map(|s| s.pipeline.as_str()).collect();
    match wanted {
        Some(name) if names.contains(name) => Ok(name.to_owned()),
        Some(name) => Err(format!(
            "no insights published for pipeline {name:?} yet; pipelines with insights: {}",
            list(&names)
        )),
        None if names.len() == 1 => Ok(names
            .iter()
            .next()
            .map(|s| (*s).to_owned())
            .unwrap_or_default()),
        None if names.is_empty() => Err("no insights published yet".into()),
        None => Err(format!(
            "insights of several pipelines are published here; choose one with --pipeline: {}",
            list(&names)
        )),
    }
}

fn list(names: &BTreeSet<&str>) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.iter().copied().collect::<Vec<_>>().join(", ")
    }
}

/// A pipeline's merged insights.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub pipeline: String,
    /// Everything since the pipeline started.
    pub totals: Insights,
    /// Processes that contributed (each restart is a new one), retired ones included.
    pub contributors: u64,
    /// Of those, the ones still publishing.
    pub publishing: usize,
    /// Age of the newest and oldest `total` snapshot, in milliseconds.
    pub newest_age_ms: i64,
    pub oldest_age_ms: i64,
    /// The processing time the totals cover.
    pub span: Option<Span>,
    /// Events per second over each publishing replica's latest interval, summed.
    pub rate: Option<f64>,
    /// The recent window, if asked for: its insights and the span its intervals cover.
    pub window: Option<(Insights, Option<Span>)>,
    /// Some top-k lists were cut to fit the record limit (larger error bounds).
    pub cut: bool,
}

impl Fleet {
    /// Merges the snapshots of `pipeline`, at time `now_ms`, with an optional window.
    pub fn merge(
        snapshots: &[Snapshot],
        pipeline: &str,
        now_ms: i64,
        window: Option<Duration>,
        top_capacity: usize,
    ) -> Fleet {
        let mine: Vec<&Snapshot> = snapshots
            .iter()
            .filter(|s| s.pipeline == pipeline)
            .collect();
        let totals_of: Vec<&Snapshot> = mine
            .iter()
            .copied()
            .filter(|s| s.kind == SnapshotKind::Total)
            .collect();
        let totals = Insights::merge_all(top_capacity, totals_of.iter().map(|s| &s.insights));
        let mut contributors = 0;
        let mut ages = Vec::new();
        let mut span: Option<Span> = None;
        let mut cut = false;
        for s in totals_of {
            contributors += s.folded.unwrap_or(1);
            ages.push(now_ms - s.published_at_ms);
            span = Some(widen(span, s.span));
            cut |= s.top_cut_to.is_some();
        }
        // Per replica, its newest interval.
        let mut latest: HashMap<&str, &Snapshot> = HashMap::new();
        for s in mine
            .iter()
            .filter(|s| matches!(s.kind, SnapshotKind::Window { .. }))
        {
            let newer = latest
                .get(s.replica.as_str())
                .is_none_or(|l| l.span.end_ms < s.span.end_ms);
            if newer {
                latest.insert(&s.replica, s);
            }
        }
        let mut rate = None;
        let mut publishing = 0;
        for s in latest.values() {
            let length = (s.span.end_ms - s.span.start_ms).max(1);
            if s.final_snapshot || now_ms - s.span.end_ms > LIVE_INTERVALS * length {
                continue;
            }
            publishing += 1;
            let events = s.insights.cleaned + s.insights.rejected_total();
            *rate.get_or_insert(0.0) += events as f64 * 1000.0 / length as f64;
        }
        let window = window.map(|w| {
            let from = now_ms - i64::try_from(w.as_millis()).unwrap_or(i64::MAX);
            let recent: Vec<&Snapshot> = mine
                .iter()
                .copied()
                .filter(|s| matches!(s.kind, SnapshotKind::Window { .. }) && s.span.end_ms > from)
                .collect();
            let mut covered = None;
            for s in &recent {
                covered = Some(widen(covered, s.span));
                cut |= s.top_cut_to.is_some();
            }
            let insights = Insights::merge_all(top_capacity, recent.iter().map(|s| &s.insights));
            (insights, covered)
        });
        Fleet {
            pipeline: pipeline.to_owned(),
            totals,
            contributors,
            publishing,
            newest_age_ms: ages.iter().copied().min().unwrap_or(0),
            oldest_age_ms: ages.iter().copied().max().unwrap_or(0),
            span,
            rate,
            window,
            cut,
        }
    }

    /// The small, bounded summary the operator writes into the resource's status and
    /// `fetch-consumer insights --format json` prints.
    pub fn summary(&self, top: usize) -> Summary {
        Summary {
            pipeline: self.pipeline.clone(),
            contributors: self.contributors,
            publishing: self.publishing,
            newest_snapshot_age_seconds: self.newest_age_ms / 1000,
            oldest_snapshot_age_seconds: self.oldest_age_ms / 1000,
            rate: self.rate.map(|r| (r * 10.0).round() / 10.0),
            totals: Figures::of(&self.totals, self.span, top),
            window: self
                .window
                .as_ref()
                .map(|(insights, span)| Figures::of(insights, *span, top)),
        }
    }
}

fn widen(span: Option<Span>, other: Span) -> Span {
    match span {
        None => other,
        Some(s) => Span {
            start_ms: s.start_ms.min(other.start_ms),
            end_ms: s.end_ms.max(other.end_ms),
        },
    }
}

/// A pipeline's insights in figures: no sketches, a few top rows.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub pipeline: String,
    pub contributors: u64,
    pub publishing: usize,
    pub newest_snapshot_age_seconds: i64,
    pub oldest_snapshot_age_seconds: i64,
    /// Events per second over the latest interval.
    pub rate: Option<f64>,
    pub totals: Figures,
    pub window: Option<Figures>,
}

/// Counts and top rows of one set of insights.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    pub span: Option<Span>,
    pub cleaned: u64,
    pub dead_lettered: u64,
    pub dead_letters_by_reason: BTreeMap<String, u64>,
    pub distinct_users: u64,
    pub distinct_devices: u64,
    pub top_users: Vec<Counter>,
    pub top_ips: Vec<Counter>,
    /// App versions by logins, highest first.
    pub top_app_versions: Vec<(String, u64)>,
    pub top_locales: Vec<(String, u64)>,
    pub first_login: Option<i64>,
    pub last_login: Option<i64>,
}

impl Figures {
    fn of(i: &Insights, span: Option<Span>, top: usize) -> Figures {
        let rows = |t: &super::Breakdown| {
            let mut rows: Vec<(String, u64)> =
                t.row_totals().map(|(k, n)| (k.to_owned(), n)).collect();
            rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            rows.truncate(top);
            rows
        };
        Figures {
            span,
            cleaned: i.cleaned,
            dead_lettered: i.rejected_total(),
            dead_letters_by_reason: i.rejected.clone(),
            distinct_users: i.users.estimate(),
            distinct_devices: i.devices.estimate(),
            top_users: i.top_users.top(top),
            top_ips: i.top_ips.top(top),
            top_app_versions: rows(&i.by_app_version),
            top_locales: rows(&i.by_locale),
            first_login: i.first_login,
            last_login: i.last_login,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clean::Cleaner;

    const NOW: i64 = 1_700_000_100_000;

    fn insights(users: &[&str], rejected: u64) -> Insights {
        let cleaner = Cleaner::default();
        let mut i = Insights::new(100);
        for u in users {
            let line = format!(
                r#"{{"user_id":"{u}","device_type":"iOS","app_version":"2.3.0","locale":"NY","timestamp":1730000000}}"#
            );
            i.record(&cleaner.clean(line.as_bytes()).expect("valid"));
        }
        for _ in 0..rejected {
            i.record_rejection(crate::reason::RejectReason::MalformedJson);
        }
        i
    }

    fn snap(
        pipeline: &str,
        replica: &str,
        kind: SnapshotKind,
        span: (i64, i64),
        i: Insights,
    ) -> Snapshot {
        Snapshot {
            pipeline: pipeline.into(),
            replica: replica.into(),
            kind,
            final_snapshot: false,
            span: Span {
                start_ms: NOW - span.0,
                end_ms: NOW - span.1,
            },
            published_at_ms: NOW - span.1,
            top_cut_to: None,
            folded: None,
            insights: i,
        }
    }

    fn record(state: &mut TopicState, s: &Snapshot) {
        state.apply(
            Some(s.key().as_bytes()),
            Some(&s.encode().expect("encodes")),
        );
    }

    #[test]
    fn totals_merge_every_replica_including_those_gone_and_the_latest_per_key_wins() {
        let mut state = TopicState::default();
        record(
            &mut state,
            &snap(
                "p",
                "a",
                SnapshotKind::Total,
                (60_000, 30_000),
                insights(&["x"], 0),
            ),
        );
        // The same replica later: replaces its earlier total.
        record(
            &mut state,
            &snap(
                "p",
                "a",
                SnapshotKind::Total,
                (60_000, 0),
                insights(&["x", "y"], 1),
            ),
        );
        // A replica that stopped an hour ago still counts.
        let mut gone = snap(
            "p",
            "b",
            SnapshotKind::Total,
            (7_200_000, 3_600_000),
            insights(&["z"], 2),
        );
        gone.final_snapshot = true;
        record(&mut state, &gone);
        record(
            &mut state,
            &snap(
                "other",
                "c",
                SnapshotKind::Total,
                (10_000, 0),
                insights(&["q"], 0),
            ),
        );
        let (snapshots, skipped) = state.snapshots();
        assert!(skipped.is_empty());
        let fleet = Fleet::merge(&snapshots, "p", NOW, None, 100);
        assert_eq!(fleet.totals.cleaned, 3);
        assert_eq!(fleet.totals.rejected_total(), 3);
        assert_eq!(fleet.totals.users.estimate(), 3);
        assert_eq!(fleet.contributors, 2);
        assert_eq!((fleet.newest_age_ms, fleet.oldest_age_ms), (0, 3_600_000));
        assert_eq!(fleet.span.map(|s| s.start_ms), Some(NOW - 7_200_000));
    }

    #[test]
    fn a_tombstone_removes_its_key() {
        let mut state = TopicState::default();
        let s = snap("p", "a", SnapshotKind::Total, (10, 0), insights(&["x"], 0));
        record(&mut state, &s);
        state.apply(Some(s.key().as_bytes()), None);
        assert!(state.is_empty());
    }

    #[test]
    fn the_window_merges_intervals_that_ended_within_it_and_reports_their_span() {
        let w = |slot| SnapshotKind::Window { slot };
        let snapshots = vec![
            snap("p", "a", w(0), (390_000, 360_000), insights(&["old"], 0)),
            snap("p", "a", w(1), (60_000, 30_000), insights(&["x"], 0)),
            snap("p", "a", w(2), (30_000, 0), insights(&["y", "y"], 0)),
            snap("p", "b", w(0), (40_000, 10_000), insights(&["z"], 3)),
        ];
        let fleet = Fleet::merge(&snapshots, "p", NOW, Some(Duration::from_secs(300)), 100);
        let (window, span) = fleet.window.expect("window");
        assert_eq!(window.cleaned, 4);
        assert_eq!(window.rejected_total(), 3);
        assert_eq!(
            span,
            Some(Span {
                start_ms: NOW - 60_000,
                end_ms: NOW
            })
        );
        // Rate: a's latest interval 2 events in 30 s, b's 4 in 30 s.
        let rate = fleet.rate.expect("rate");
        assert!((rate - 0.2).abs() < 1e-9, "{rate}");
        assert_eq!(fleet.publishing, 2);
    }

    #[test]
    fn replicas_that_stopped_or_went_quiet_add_nothing_to_the_rate() {
        let w = SnapshotKind::Window { slot: 0 };
        let mut stopped = snap("p", "a", w, (30_000, 0), insights(&["x"], 0));
        stopped.final_snapshot = true;
        let quiet = snap("p", "b", w, (600_000, 570_000), insights(&["y"], 0));
        let fleet = Fleet::merge(&[stopped, quiet], "p", NOW, None, 100);
        assert_eq!(fleet.rate, None);
        assert_eq!(fleet.publishing, 0);
    }

    #[test]
    fn foreign_records_are_skipped_and_counted() {
        let mut state = TopicState::default();
        state.apply(Some(b"k1"), Some(b"hello"));
        state.apply(None, Some(b"no key"));
        let (snapshots, skipped) = state.snapshots();
        assert!(snapshots.is_empty());
        assert_eq!(skipped.values().sum::<u64>(), 2, "{skipped:?}");
    }

    #[test]
    fn choosing_a_pipeline_says_which_exist() {
        let s = |p: &str| snap(p, "a", SnapshotKind::Total, (1, 0), Insights::new(10));
        let two = [s("p"), s("q")];
        assert_eq!(choose_pipeline(&two, Some("q")), Ok("q".into()));
        let err = choose_pipeline(&two, None).expect_err("ambiguous");
        assert!(err.contains("--pipeline") && err.contains("p, q"), "{err}");
        let err = choose_pipeline(&two, Some("r")).expect_err("unknown");
        assert!(err.contains("\"r\"") && err.contains("p, q"), "{err}");
        assert_eq!(choose_pipeline(&two[..1], None), Ok("p".into()));
    }

    #[test]
    fn the_summary_is_small_and_shows_the_top_rows() {
        let snapshots = [snap(
            "p",
            "a",
            SnapshotKind::Total,
            (1, 0),
            insights(&["x", "x", "y"], 1),
        )];
        let summary = Fleet::merge(&snapshots, "p", NOW, None, 100).summary(5);
        assert_eq!(summary.totals.cleaned, 3);
        assert_eq!(summary.totals.top_users[0].key, "x");
        assert_eq!(
            summary.totals.top_app_versions,
            vec![("2.3.0".to_owned(), 3)]
        );
        assert_eq!(summary.totals.dead_letters_by_reason["malformed_json"], 1);
    }
}
