//! Folding the snapshots of replicas that are gone into one retired total per pipeline, so the
//! insights topic stays bounded however often replicas restart.
//!
//! Rules:
//! - A replica's total is retired once it is final (a clean shutdown) or its replica has
//!   published nothing for [`STALE_AFTER_MS`] (killed). It is merged into the pipeline's
//!   retired total, and its key is deleted in the same Kafka transaction, so a reader sees it
//!   exactly once: before or after, never both or neither.
//! - Window snapshots of replicas without a total left are deleted once they are older than
//!   the longest window a reader may ask for, twice over.
//! - Whoever retires (a replica, at start) does it in a transaction whose id names the
//!   pipeline: starting one fences any other in progress, so two never fold the same snapshot.
//!
//! A replica thought dead that comes back would publish its total again and be counted twice:
//! an hour of silence makes that unlikely, and the report says totals may overcount.
//!
//! Pure logic; the transaction is `kafka::insights_topic::retire`.

use std::collections::HashSet;
use std::time::Duration;

use super::Insights;
use super::snapshot::{Snapshot, SnapshotKind, Span};

/// The replica name of a pipeline's retired total (replica names always end in a suffix).
pub const RETIRED: &str = "retired";
/// Silence after which a replica is taken for dead.
pub const STALE_AFTER_MS: i64 = 3_600_000;

/// What retiring does to the insights topic for one pipeline.
#[derive(Debug)]
pub struct Plan {
    /// The new retired total.
    pub retired: Snapshot,
    /// Keys to delete (tombstones).
    pub delete: Vec<String>,
    /// Replica totals folded in by this plan.
    pub folded: usize,
}

/// Plans the retirement of `pipeline`'s gone replicas at `now_ms`. `None`: nothing to do.
pub fn plan(
    snapshots: &[Snapshot],
    pipeline: &str,
    now_ms: i64,
    max_window: Duration,
    top_capacity: usize,
) -> Option<Plan> {
    let mine: Vec<&Snapshot> = snapshots
        .iter()
        .filter(|s| s.pipeline == pipeline)
        .collect();
    let last_heard = |replica: &str| {
        mine.iter()
            .filter(|s| s.replica == replica)
            .map(|s| s.published_at_ms)
            .max()
            .unwrap_or(i64::MIN)
    };
    let gone = |s: &Snapshot| {
        s.kind == SnapshotKind::Total
            && s.replica != RETIRED
            && (s.final_snapshot || now_ms - last_heard(&s.replica) > STALE_AFTER_MS)
    };
    let retiring: Vec<&Snapshot> = mine.iter().copied().filter(|s| gone(s)).collect();
    let with_total: HashSet<&str> = mine
        .iter()
        .filter(|s| s.kind == SnapshotKind::Total && !gone(s))
        .map(|s| s.replica.as_str())
        .collect();
    let old = now_ms - 2 * i64::try_from(max_window.as_millis()).unwrap_or(i64::MAX / 4);
    let old_windows = mine.iter().filter(|s| {
        matches!(s.kind, SnapshotKind::Window { .. })
            && !with_total.contains(s.replica.as_str())
            && s.span.end_ms < old
    });
    let delete: Vec<String> = retiring
        .iter()
        .copied()
        .chain(old_windows.copied())
        .map(|s| s.key())
        .collect();
    if delete.is_empty() {
        return None;
    }
    let previous = mine
        .iter()
        .find(|s| s.kind == SnapshotKind::Total && s.replica == RETIRED);
    let folding: Vec<&Snapshot> = previous
        .into_iter()
        .chain(retiring.iter())
        .copied()
        .collect();
    let insights = Insights::merge_all(top_capacity, folding.iter().map(|s| &s.insights));
    let mut folded = 0;
    let mut span: Option<Span> = None;
    for s in folding {
        folded += s.folded.unwrap_or(1);
        span = Some(match span {
            None => s.span,
            Some(a) => Span {
                start_ms: a.start_ms.min(s.span.start_ms),
                end_ms: a.end_ms.max(s.span.end_ms),
            },
        });
    }
    Some(Plan {
        retired: Snapshot {
            pipeline: pipeline.to_owned(),
            replica: RETIRED.to_owned(),
            kind: SnapshotKind::Total,
            final_snapshot: false,
            span: span.unwrap_or(Span {
                start_ms: now_ms,
                end_ms: now_ms,
            }),
            published_at_ms: now_ms,
            top_cut_to: None,
            folded: Some(folded),
            insights,
        },
        delete,
        folded: retiring.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insights::fleet::Fleet;

    const NOW: i64 = 10_000_000_000;
    const HOUR: Duration = Duration::from_secs(3600);

    fn snap(replica: &str, kind: SnapshotKind, ago_ms: i64, cleaned: u64, fin: bool) -> Snapshot {
        let mut insights = Insights::new(10);
        insights.cleaned = cleaned;
        Snapshot {
            pipeline: "p".into(),
            replica: replica.into(),
            kind,
            final_snapshot: fin,
            span: Span {
                start_ms: NOW - ago_ms - 1000,
                end_ms: NOW - ago_ms,
            },
            published_at_ms: NOW - ago_ms,
            top_cut_to: None,
            folded: None,
            insights,
        }
    }

    fn apply(snapshots: &mut Vec<Snapshot>, plan: Plan) {
        snapshots.retain(|s| !plan.delete.contains(&s.key()) && s.key() != plan.retired.key());
        snapshots.push(plan.retired);
    }

    #[test]
    fn final_totals_are_folded_and_deleted_and_the_totals_do_not_change() {
        let mut topic = vec![
            snap("a-1", SnapshotKind::Total, 5_000, 10, true),
            snap("b-1", SnapshotKind::Total, 1_000, 7, false),
            snap("c-1", SnapshotKind::Total, 2_000, 3, true),
        ];
        let before = Fleet::merge(&topic, "p", NOW, None, 10);
        let plan = plan(&topic, "p", NOW, HOUR, 10).expect("something to retire");
        assert_eq!(plan.folded, 2);
        assert_eq!(plan.delete, vec!["p/a-1/total", "p/c-1/total"]);
        apply(&mut topic, plan);
        let after = Fleet::merge(&topic, "p", NOW, None, 10);
        assert_eq!(after.totals.cleaned, before.totals.cleaned);
        assert_eq!(after.contributors, before.contributors);
        assert_eq!(topic.len(), 2, "the live replica and the retired total");
    }

    #[test]
    fn retiring_again_folds_into_the_previous_retired_total() {
        let mut topic = vec![snap("a-1", SnapshotKind::Total, 5_000, 10, true)];
        let first = plan(&topic, "p", NOW, HOUR, 10).expect("plan");
        apply(&mut topic, first);
        topic.push(snap("a-2", SnapshotKind::Total, 1_000, 4, true));
        let second = plan(&topic, "p", NOW, HOUR, 10).expect("plan");
        apply(&mut topic, second);
        assert_eq!(topic.len(), 1);
        assert_eq!(topic[0].insights.cleaned, 14);
        assert_eq!(topic[0].folded, Some(2));
        assert!(
            plan(&topic, "p", NOW, HOUR, 10).is_none(),
            "nothing left to do"
        );
    }

    #[test]
    fn a_replica_silent_for_an_hour_is_retired_one_that_spoke_recently_is_not() {
        let w = SnapshotKind::Window { slot: 0 };
        let topic = vec![
            snap("dead-1", SnapshotKind::Total, STALE_AFTER_MS + 1, 5, false),
            snap("idle-1", SnapshotKind::Total, STALE_AFTER_MS + 1, 5, false),
            snap("idle-1", w, 1_000, 0, false),
        ];
        let plan = plan(&topic, "p", NOW, HOUR, 10).expect("plan");
        assert_eq!(plan.delete, vec!["p/dead-1/total"]);
    }

    #[test]
    fn old_windows_of_replicas_gone_are_deleted_recent_ones_and_live_ones_are_kept() {
        let w = |slot| SnapshotKind::Window { slot };
        let old = 2 * 3_600_000 + 1;
        let topic = vec![
            snap("gone-1", w(0), old, 1, true),
            snap("gone-1", w(1), 10_000, 1, true),
            snap("live-1", SnapshotKind::Total, 1_000, 1, false),
            snap("live-1", w(0), old, 1, false),
            snap("other", SnapshotKind::Total, 1, 1, true),
        ];
        let mut topic_other = topic.clone();
        topic_other.iter_mut().for_each(|s| {
            if s.replica == "other" {
                s.pipeline = "q".into();
            }
        });
        let plan = plan(&topic_other, "p", NOW, HOUR, 10).expect("plan");
        assert_eq!(plan.delete, vec!["p/gone-1/window/0"]);
        assert_eq!(plan.folded, 0);
    }
}
