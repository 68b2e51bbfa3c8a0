//! How many consumer replicas a pipeline gets, and why. Pure logic.
//!
//! The rules, in the order they apply:
//! - Paused: zero.
//! - The partition count is the cap: Kafka gives each partition to one group member, so a
//!   replica beyond it would sit idle. Unknown partitions keep the current replicas: a Kafka
//!   outage must never scale a pipeline.
//! - `spec.replicas.fixed` (`kubectl scale`, an HPA, KEDA) wins, within the bounds.
//! - Without autoscaling: one replica per partition, within `min`..`max`.
//! - With autoscaling: what the backlog and the arrival rate need ([`need`]), within the
//!   bounds. An unknown lag keeps the current replicas. Up at once; down only when every
//!   recommendation of the stabilization window agrees, and then to the highest of them
//!   ([`History`]), so one quiet check never undoes a burst's scale.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use fetch_consumer::insights::report::group;

use crate::crd::{AutoscalingSpec, ReplicasSpec};
use crate::rates::Rates;

/// A replica count with the reason for it, as shown in `status.scalingReason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleDecision {
    pub replicas: i32,
    pub reason: String,
}

/// The autoscaling targets, from `spec.autoscaling` with its durations parsed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Targets {
    pub lag_per_replica: Option<i64>,
    pub catch_up: Option<Duration>,
    pub stabilization: Duration,
}

impl Targets {
    /// The targets of an enabled `spec.autoscaling`; `None` when it is off. A stabilization
    /// the API server let through but that does not parse (it checks the format) falls back
    /// to the default rather than failing the pipeline.
    pub fn of(spec: &AutoscalingSpec) -> Option<Targets> {
        spec.enabled.then(|| Targets {
            lag_per_replica: spec.lag_per_replica,
            catch_up: spec
                .catch_up_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs),
            stabilization: humantime::parse_duration(&spec.scale_down_stabilization)
                .unwrap_or(DEFAULT_STABILIZATION),
        })
    }
}

pub const DEFAULT_STABILIZATION: Duration = Duration::from_secs(300);

/// What the operator observed at this check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observed {
    /// The input's partition count; `None` when Kafka could not tell.
    pub partitions: Option<i32>,
    /// The Deployment's replicas; `None` before there is one.
    pub current: Option<i32>,
    /// The group's lag; `None` when it could not be read.
    pub lag: Option<i64>,
    pub rates: Rates,
}

/// The recommendations of the last checks, for scaling down only once they agree.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// When the recommendations started: a window is agreed only once it is all covered
    /// (after an operator restart, a pause or a fixed scale, that takes a full window).
    since: Option<Instant>,
    recommendations: VecDeque<(Instant, i32)>,
}

impl History {
    /// Forgets the recommendations: they were made under other rules.
    pub fn reset(&mut self) {
        *self = History::default();
    }

    fn record(&mut self, now: Instant, recommended: i32, window: Duration) {
        self.since.get_or_insert(now);
        self.recommendations.push_back((now, recommended));
        while self
            .recommendations
            .front()
            .is_some_and(|(at, _)| *at + window < now)
        {
            self.recommendations.pop_front();
        }
    }

    /// The highest recommendation of the window ending `now`, once the window is covered.
    fn agreed(&self, now: Instant, window: Duration) -> Option<i32> {
        let since = self.since?;
        (since + window <= now)
            .then(|| self.recommendations.iter().map(|(_, r)| *r).max())
            .flatten()
    }
}

/// Decides the replicas. `history` keeps the autoscaling recommendations between checks.
pub fn decide(
    observed: &Observed,
    bounds: ReplicasSpec,
    paused: bool,
    autoscaling: Option<Targets>,
    history: &mut History,
    now: Instant,
) -> ScaleDecision {
    if paused {
        history.reset();
        return ScaleDecision {
            replicas: 0,
            reason: "paused".into(),
        };
    }
    let Some(partitions) = observed.partitions else {
        let replicas = observed
            .current
            .unwrap_or(bounds.min.max(1).min(bounds.max));
        return ScaleDecision {
            replicas,
            reason: format!("partition count unknown; keeping {replicas}"),
        };
    };
    if let Some(fixed) = bounds.fixed {
        history.reset();
        let cap = bounds.max.min(partitions);
        let replicas = fixed.clamp(bounds.min.min(cap), cap);
        let note = if replicas == fixed {
            String::new()
        } else {
            format!(", kept within {}..{cap}", bounds.min.min(cap))
        };
        return ScaleDecision {
            replicas,
            reason: format!(
                "spec.replicas.fixed {fixed} (kubectl scale, an HPA or KEDA){note}; autoscaling stands aside"
            ),
        };
    }
    match autoscaling {
        None => {
            history.reset();
            per_partition(partitions, bounds)
        }
        Some(targets) => autoscale(observed, partitions, bounds, targets, history, now),
    }
}

/// One replica per partition within the bounds (the behaviour without autoscaling).
fn per_partition(p: i32, bounds: ReplicasSpec) -> ScaleDecision {
    if p > bounds.max {
        ScaleDecision {
            replicas: bounds.max,
            reason: format!("{p} partitions, capped at replicas.max {}", bounds.max),
        }
    } else if p < bounds.min {
        ScaleDecision {
            replicas: bounds.min,
            reason: format!("{p} partitions, raised to replicas.min {}", bounds.min),
        }
    } else {
        ScaleDecision {
            replicas: p,
            reason: format!("{p} partitions, one replica each"),
        }
    }
}

fn autoscale(
    observed: &Observed,
    partitions: i32,
    bounds: ReplicasSpec,
    targets: Targets,
    history: &mut History,
    now: Instant,
) -> ScaleDecision {
    let cap = bounds.max.min(partitions);
    let floor = bounds.min.min(cap);
    let Some(lag) = observed.lag else {
        // Never scale on missing data; recording the current count keeps a scale-down from
        // following right after the lag comes back.
        let replicas = observed.current.unwrap_or(floor.max(1)).clamp(floor, cap);
        history.record(now, replicas, targets.stabilization);
        return ScaleDecision {
            replicas,
            reason: format!("lag unknown; keeping {replicas}"),
        };
    };
    let (wanted, why) = need(lag, &observed.rates, &targets, observed.current);
    let recommended = wanted.clamp(floor, cap);
    let of = if recommended > wanted {
        format!("{wanted}, raised to replicas.min {floor}")
    } else if recommended == wanted {
        format!("{recommended} of {partitions} partitions")
    } else if cap < partitions {
        format!("{wanted}, capped at replicas.max {cap}")
    } else {
        format!("{wanted}, capped at the {partitions} partitions")
    };
    history.record(now, recommended, targets.stabilization);
    // The bounds apply at once: replicas past the cap would only sit idle.
    let current = observed.current.unwrap_or(recommended).min(cap);
    if recommended >= current {
        return ScaleDecision {
            replicas: recommended,
            reason: format!("{why} -> {of}"),
        };
    }
    let window = humantime::format_duration(targets.stabilization);
    match history.agreed(now, targets.stabilization) {
        Some(agreed) if agreed < current => ScaleDecision {
            replicas: agreed,
            reason: format!("{why} -> {of}; at most {agreed} for {window}, scaled down"),
        },
        _ => ScaleDecision {
            replicas: current,
            reason: format!("{why} -> {of}; keeping {current} until {window} agree"),
        },
    }
}

/// Replicas the backlog and the arrival rate need (before the bounds), and why.
///
/// - `lagPerReplica`: the backlog divided by it, rounded up.
/// - `catchUpSeconds`: the backlog drained within it plus the arrivals, at the measured
///   per-replica capacity; without a measurement yet, a backlog gets one replica.
/// - Never below what the arrivals alone need at that capacity, nor below one while
///   anything arrives or waits.
/// - Idle (no backlog, nothing arriving) needs none; no rate yet keeps the current count.
pub fn need(lag: i64, rates: &Rates, targets: &Targets, current: Option<i32>) -> (i32, String) {
    let input = rates.input.unwrap_or(0.0).max(0.0);
    if lag == 0 {
        match rates.input {
            Some(i) if i <= 0.0 => return (0, "idle (no backlog, nothing arriving)".into()),
            None => {
                let keep = current.unwrap_or(0);
                return (keep, "no backlog, arrival rate not measured yet".into());
            }
            Some(_) => {}
        }
    }
    let mut wanted = 1;
    let mut why = Vec::new();
    if let Some(per) = targets.lag_per_replica {
        let n = ceil_div(lag, per);
        wanted = wanted.max(n);
        why.push(format!(
            "backlog {} records, {} per replica",
            grouped(lag),
            grouped(per)
        ));
    }
    if let Some(catch_up) = targets.catch_up {
        match rates.capacity_per_replica {
            Some(capacity) if capacity > 0.0 => {
                let per_second = lag as f64 / catch_up.as_secs_f64().max(1.0) + input;
                wanted = wanted.max(ceil_f(per_second / capacity));
                why.push(format!(
                    "backlog {} records to drain in {} with {}/s arriving, {}/s per replica",
                    grouped(lag),
                    humantime::format_duration(catch_up),
                    grouped(input.round() as i64),
                    grouped(capacity.round() as i64)
                ));
            }
            _ if targets.lag_per_replica.is_none() => why.push(format!(
                "backlog {} records, per-replica rate not measured yet",
                grouped(lag)
            )),
            _ => {}
        }
    }
    if let Some(capacity) = rates.capacity_per_replica.filter(|c| *c > 0.0) {
        let for_arrivals = ceil_f(input / capacity);
        if for_arrivals > wanted {
            wanted = for_arrivals;
            why.push(format!(
                "{}/s arriving, {}/s per replica",
                grouped(input.round() as i64),
                grouped(capacity.round() as i64)
            ));
        }
    }
    (wanted, why.join("; "))
}

fn ceil_div(a: i64, b: i64) -> i32 {
    let b = b.max(1);
    i32::try_from(a.saturating_add(b - 1) / b).unwrap_or(i32::MAX)
}

fn ceil_f(x: f64) -> i32 {
    if x.is_finite() && x > 0.0 {
        // `as` saturates, and the bounds clamp what follows.
        x.ceil() as i32
    } else {
        0
    }
}

/// 120000 as "120,000": the status is read by people. The consumer's report groups the same
/// way ([`group`]).
fn grouped(n: i64) -> String {
    let digits = group(n.unsigned_abs());
    if n < 0 { format!("-{digits}") } else { digits }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: ReplicasSpec = ReplicasSpec {
        min: 2,
        max: 4,
        fixed: None,
    };

    fn observed(partitions: Option<i32>, current: Option<i32>) -> Observed {
        Observed {
            partitions,
            current,
            lag: None,
            rates: Rates::default(),
        }
    }

    fn fixed_rules(o: Observed, bounds: ReplicasSpec, paused: bool) -> ScaleDecision {
        decide(
            &o,
            bounds,
            paused,
            None,
            &mut History::default(),
            Instant::now(),
        )
    }

    #[test]
    fn one_replica_per_partition_within_bounds() {
        assert_eq!(fixed_rules(observed(Some(3), None), B, false).replicas, 3);
        let capped = fixed_rules(observed(Some(6), Some(3)), B, false);
        assert_eq!(capped.replicas, 4);
        assert_eq!(capped.reason, "6 partitions, capped at replicas.max 4");
        let raised = fixed_rules(observed(Some(1), None), B, false);
        assert_eq!(raised.replicas, 2);
        assert!(raised.reason.contains("raised to replicas.min 2"));
    }

    #[test]
    fn paused_scales_to_zero() {
        assert_eq!(
            fixed_rules(observed(Some(6), Some(4)), B, true),
            ScaleDecision {
                replicas: 0,
                reason: "paused".into()
            }
        );
    }

    #[test]
    fn unknown_partitions_keep_the_current_scale() {
        assert_eq!(fixed_rules(observed(None, Some(3)), B, false).replicas, 3);
        assert_eq!(
            fixed_rules(observed(None, None), B, false).replicas,
            2,
            "first deployment starts at min"
        );
        let zero_min = ReplicasSpec {
            min: 0,
            max: 4,
            fixed: None,
        };
        assert_eq!(
            fixed_rules(observed(None, None), zero_min, false).replicas,
            1
        );
    }

    #[test]
    fn a_fixed_count_wins_within_the_bounds_and_the_partitions() {
        let fixed = |n| ReplicasSpec {
            fixed: Some(n),
            ..B
        };
        let d = fixed_rules(observed(Some(6), Some(2)), fixed(3), false);
        assert_eq!(d.replicas, 3);
        assert!(
            d.reason.contains("autoscaling stands aside"),
            "{}",
            d.reason
        );
        assert_eq!(
            fixed_rules(observed(Some(6), None), fixed(9), false).replicas,
            4
        );
        assert_eq!(
            fixed_rules(observed(Some(3), None), fixed(4), false).replicas,
            3,
            "never past the partition count"
        );
        assert_eq!(
            fixed_rules(observed(Some(6), None), fixed(0), false).replicas,
            2
        );
        // Autoscaling on: the fixed count still wins.
        let d = decide(
            &Observed {
                lag: Some(1_000_000),
                ..observed(Some(6), Some(2))
            },
            fixed(2),
            false,
            Some(LAG_1000),
            &mut History::default(),
            Instant::now(),
        );
        assert_eq!(d.replicas, 2);
    }

    const LAG_1000: Targets = Targets {
        lag_per_replica: Some(1_000),
        catch_up: None,
        stabilization: Duration::from_secs(300),
    };
    const ZERO_TO_8: ReplicasSpec = ReplicasSpec {
        min: 0,
        max: 8,
        fixed: None,
    };

    /// A pipeline under autoscaling, checked at `t` seconds.
    struct Scaler {
        t0: Instant,
        history: History,
        targets: Targets,
        bounds: ReplicasSpec,
        partitions: i32,
    }

    impl Scaler {
        fn new(targets: Targets) -> Self {
            Scaler {
                t0: Instant::now(),
                history: History::default(),
                targets,
                bounds: ZERO_TO_8,
                partitions: 6,
            }
        }

        fn check(&mut self, t: u64, current: i32, lag: Option<i64>, rates: Rates) -> ScaleDecision {
            decide(
                &Observed {
                    partitions: Some(self.partitions),
                    current: Some(current),
                    lag,
                    rates,
                },
                self.bounds,
                false,
                Some(self.targets),
                &mut self.history,
                self.t0 + Duration::from_secs(t),
            )
        }
    }

    fn arriving(per_second: f64) -> Rates {
        Rates {
            input: Some(per_second),
            processing: Some(per_second),
            capacity_per_replica: None,
        }
    }

    #[test]
    fn a_backlog_scales_up_at_once_to_the_partition_count_at_most() {
        let mut s = Scaler::new(LAG_1000);
        let d = s.check(0, 1, Some(3_500), arriving(10.0));
        assert_eq!(d.replicas, 4);
        assert_eq!(
            d.reason,
            "backlog 3,500 records, 1,000 per replica -> 4 of 6 partitions"
        );
        let d = s.check(30, 4, Some(120_000), arriving(10.0));
        assert_eq!(d.replicas, 6, "capped at the partition count");
        assert!(
            d.reason.ends_with("120, capped at the 6 partitions"),
            "{}",
            d.reason
        );
        s.bounds.max = 5;
        let d = s.check(60, 6, Some(120_000), arriving(10.0));
        assert_eq!(d.replicas, 5);
        assert!(
            d.reason.ends_with("capped at replicas.max 5"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn scale_down_waits_for_the_whole_window_to_agree() {
        let mut s = Scaler::new(LAG_1000);
        assert_eq!(s.check(0, 1, Some(6_000), arriving(10.0)).replicas, 6);
        // Drained: fewer are enough, but not before 300 s of agreeing checks.
        let d = s.check(30, 6, Some(1_500), arriving(10.0));
        assert_eq!(d.replicas, 6);
        assert!(
            d.reason.ends_with("keeping 6 until 5m agree"),
            "{}",
            d.reason
        );
        for t in (60..300).step_by(30) {
            assert_eq!(
                s.check(t, 6, Some(1_500), arriving(10.0)).replicas,
                6,
                "t={t}"
            );
        }
        // The 6 of t=0 leaves the window only after 300 s.
        assert_eq!(s.check(300, 6, Some(1_500), arriving(10.0)).replicas, 6);
        let d = s.check(330, 6, Some(1_500), arriving(10.0));
        assert_eq!(d.replicas, 2);
        assert!(
            d.reason.ends_with("at most 2 for 5m, scaled down"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn scale_down_goes_to_the_highest_recommendation_of_the_window() {
        let mut s = Scaler::new(LAG_1000);
        s.check(0, 6, Some(6_000), arriving(10.0));
        s.check(100, 6, Some(1_000), arriving(10.0));
        s.check(200, 6, Some(3_000), arriving(10.0));
        let d = s.check(310, 6, Some(1_000), arriving(10.0));
        assert_eq!(d.replicas, 3, "the 3 of t=200 is still in the window");
    }

    #[test]
    fn a_burst_inside_the_window_keeps_the_scale() {
        let mut s = Scaler::new(LAG_1000);
        s.check(0, 1, Some(5_000), arriving(10.0));
        s.check(200, 5, Some(500), arriving(10.0));
        s.check(400, 5, Some(5_000), arriving(10.0));
        assert_eq!(s.check(650, 5, Some(500), arriving(10.0)).replicas, 5);
    }

    #[test]
    fn after_a_restart_of_the_operator_a_full_window_passes_before_scaling_down() {
        let mut s = Scaler::new(LAG_1000);
        // No history: the Deployment runs 6, the lag needs 1.
        assert_eq!(s.check(0, 6, Some(10), arriving(1.0)).replicas, 6);
        assert_eq!(s.check(299, 6, Some(10), arriving(1.0)).replicas, 6);
        assert_eq!(s.check(300, 6, Some(10), arriving(1.0)).replicas, 1);
    }

    #[test]
    fn idle_with_min_zero_scales_to_zero_and_one_record_brings_one_back() {
        let mut s = Scaler::new(LAG_1000);
        assert_eq!(s.check(0, 2, Some(0), arriving(0.0)).replicas, 2);
        let d = s.check(300, 2, Some(0), arriving(0.0));
        assert_eq!(d.replicas, 0);
        assert!(
            d.reason
                .starts_with("idle (no backlog, nothing arriving) -> 0"),
            "{}",
            d.reason
        );
        // One record: lag 1, at the next check.
        let d = s.check(330, 0, Some(1), arriving(0.03));
        assert_eq!(d.replicas, 1);
    }

    #[test]
    fn traffic_without_backlog_keeps_at_least_one_replica() {
        let mut s = Scaler::new(LAG_1000);
        s.check(0, 1, Some(0), arriving(50.0));
        assert_eq!(s.check(600, 1, Some(0), arriving(50.0)).replicas, 1);
    }

    #[test]
    fn min_is_kept_when_idle() {
        let mut s = Scaler::new(LAG_1000);
        s.bounds.min = 2;
        s.check(0, 3, Some(0), arriving(0.0));
        assert_eq!(s.check(400, 3, Some(0), arriving(0.0)).replicas, 2);
    }

    #[test]
    fn the_partition_count_caps_even_min_at_once() {
        let mut s = Scaler::new(LAG_1000);
        s.bounds.min = 8;
        s.partitions = 3;
        assert_eq!(s.check(0, 8, Some(0), arriving(0.0)).replicas, 3, "at once");
    }

    #[test]
    fn unknown_lag_keeps_the_replicas_and_delays_a_scale_down() {
        let mut s = Scaler::new(LAG_1000);
        let d = s.check(0, 5, None, Rates::default());
        assert_eq!(
            d,
            ScaleDecision {
                replicas: 5,
                reason: "lag unknown; keeping 5".into()
            }
        );
        // Data back, little lag: the 5 recorded while it was unknown holds for the window.
        assert_eq!(s.check(200, 5, Some(0), arriving(1.0)).replicas, 5);
        assert_eq!(s.check(301, 5, Some(0), arriving(1.0)).replicas, 1);
    }

    #[test]
    fn no_arrival_rate_yet_and_no_backlog_keeps_the_current_count() {
        let (n, why) = need(0, &Rates::default(), &LAG_1000, Some(3));
        assert_eq!(
            (n, why.as_str()),
            (3, "no backlog, arrival rate not measured yet")
        );
    }

    const CATCH_UP_60: Targets = Targets {
        lag_per_replica: None,
        catch_up: Some(Duration::from_secs(60)),
        stabilization: Duration::from_secs(300),
    };

    #[test]
    fn catch_up_drains_the_backlog_in_time_at_the_measured_rate() {
        let rates = Rates {
            input: Some(1_000.0),
            processing: Some(2_000.0),
            capacity_per_replica: Some(2_000.0),
        };
        // 120,000 in 60 s is 2,000/s, plus 1,000/s arriving: 3,000/s, 2 replicas' worth.
        let (n, why) = need(120_000, &rates, &CATCH_UP_60, Some(1));
        assert_eq!(n, 2);
        assert_eq!(
            why,
            "backlog 120,000 records to drain in 1m with 1,000/s arriving, 2,000/s per replica"
        );
    }

    #[test]
    fn catch_up_without_a_measured_rate_gives_a_backlog_one_replica() {
        let (n, why) = need(120_000, &arriving(10.0), &CATCH_UP_60, Some(0));
        assert_eq!(n, 1);
        assert_eq!(
            why,
            "backlog 120,000 records, per-replica rate not measured yet"
        );
    }

    #[test]
    fn never_below_what_the_arrivals_need() {
        let rates = Rates {
            input: Some(5_000.0),
            processing: Some(5_000.0),
            capacity_per_replica: Some(2_000.0),
        };
        let (n, why) = need(100, &rates, &LAG_1000, Some(3));
        assert_eq!(n, 3);
        assert!(
            why.ends_with("5,000/s arriving, 2,000/s per replica"),
            "{why}"
        );
    }

    #[test]
    fn both_targets_take_the_larger() {
        let targets = Targets {
            lag_per_replica: Some(50_000),
            ..CATCH_UP_60
        };
        let rates = Rates {
            input: Some(0.0),
            processing: Some(1_000.0),
            capacity_per_replica: Some(1_000.0),
        };
        // Lag: 3; catch-up: 120,000 / 60 / 1,000 = 2.
        assert_eq!(need(120_000, &rates, &targets, Some(1)).0, 3);
    }

    #[test]
    fn kedas_failure_cases_do_not_happen_here() {
        // Nothing committed: the lag counts from the log start (kafka::progress), so a new
        // group with 5,000 records waiting scales on 5,000, not on "everything" or on 1.
        assert_eq!(need(5_000, &arriving(0.0), &LAG_1000, Some(0)).0, 5);
        // An empty topic with nothing committed: idle, not one replica "just in case".
        assert_eq!(need(0, &arriving(0.0), &LAG_1000, Some(1)).0, 0);
        // A lag larger than any count: capped by the partitions, never overflowing.
        let mut s = Scaler::new(LAG_1000);
        assert_eq!(s.check(0, 1, Some(i64::MAX), arriving(0.0)).replicas, 6);
    }

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_000), "1,000");
        assert_eq!(grouped(120_000), "120,000");
        assert_eq!(grouped(-1_234_567), "-1,234,567");
    }
}
