//! How fast records arrive and how fast a pipeline processes them, measured from the offsets
//! the operator reads at every check. Pure logic.
//!
//! The rule: a rate is the change of an offset sum over the samples of the last
//! [`Samples::window`], never a guess. Arrivals are log end offsets over time; processing is
//! the group's read positions (committed offsets) over time. What one replica *can* process
//! (its capacity) is only known from a window in which the replicas never ran out of work:
//! the smallest backlog seen in the window was at least what they processed in it, and their
//! count did not change. Commits follow the consumers' insights interval, so a pipeline that
//! keeps up still shows a backlog of up to an interval of records; this rule does not mistake
//! that for a pipeline working flat out.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::kafka::Progress;

/// One check's reading of the group's progress.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub at: Instant,
    pub progress: Progress,
    /// Replicas the Deployment ran (ready) when the sample was taken.
    pub replicas: i32,
}

/// What the samples of the window say.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Rates {
    /// Records per second arriving on the input. `None` before the window spans
    /// [`MIN_SPAN`].
    pub input: Option<f64>,
    /// Records per second the group processed (committed).
    pub processing: Option<f64>,
    /// Records per second one replica processes when it has work: the last measurement from a
    /// busy window, kept until a newer one.
    pub capacity_per_replica: Option<f64>,
}

/// Shortest span of samples a rate is computed over: shorter ones are mostly noise.
pub const MIN_SPAN: Duration = Duration::from_secs(5);

/// The window of a pipeline whose replicas commit every `commits` and whose offsets are read
/// every `checks`: a few checks and two commit intervals, so that the commits (which come in
/// steps) average out.
pub fn window(checks: Duration, commits: Duration) -> Duration {
    (checks * 4).max(commits * 2).max(MIN_SPAN * 2)
}

impl Default for Samples {
    fn default() -> Self {
        Samples::new(Duration::from_secs(60))
    }
}

/// A pipeline's recent samples and its last capacity measurement.
#[derive(Debug, Clone)]
pub struct Samples {
    window: Duration,
    samples: VecDeque<Sample>,
    capacity: Option<f64>,
}

impl Samples {
    pub fn new(window: Duration) -> Self {
        Samples {
            window: window.max(MIN_SPAN * 2),
            samples: VecDeque::new(),
            capacity: None,
        }
    }

    /// Measures over `window` from now on (at least twice [`MIN_SPAN`]).
    pub fn set_window(&mut self, window: Duration) {
        self.window = window.max(MIN_SPAN * 2);
    }

    /// Adds a sample and returns the rates over the window that ends with it. A sample whose
    /// offsets went backwards (a topic deleted and recreated, a group reset) starts the
    /// window over: rates across it would be meaningless.
    pub fn record(&mut self, sample: Sample) -> Rates {
        if let Some(last) = self.samples.back()
            && (sample.progress.log_end < last.progress.log_end
                || sample.progress.position < last.progress.position
                || sample.at < last.at)
        {
            self.samples.clear();
            self.capacity = None;
        }
        self.samples.push_back(sample);
        // Keep the newest sample at or before the window's start, so a window is always
        // spanned in full once there is enough history.
        while self.samples.len() > 2 && self.samples[1].at + self.window <= sample.at {
            self.samples.pop_front();
        }
        self.rates()
    }

    fn rates(&mut self) -> Rates {
        let (Some(first), Some(last)) = (self.samples.front(), self.samples.back()) else {
            return Rates::default();
        };
        let span = last.at.saturating_duration_since(first.at);
        if span < MIN_SPAN {
            return Rates {
                capacity_per_replica: self.capacity,
                ..Rates::default()
            };
        }
        let seconds = span.as_secs_f64();
        let processed = last
            .progress
            .position
            .saturating_sub(first.progress.position);
        let input = last.progress.log_end.saturating_sub(first.progress.log_end) as f64 / seconds;
        let processing = processed as f64 / seconds;
        let busy =
            self.samples.iter().all(|s| {
                s.replicas == first.replicas && s.replicas > 0 && s.progress.lag >= processed
            }) && processed > 0;
        if busy {
            self.capacity = Some(processing / f64::from(first.replicas));
        }
        Rates {
            input: Some(input),
            processing: Some(processing),
            capacity_per_replica: self.capacity,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t0: Instant, secs: u64, log_end: i64, position: i64, replicas: i32) -> Sample {
        Sample {
            at: t0 + Duration::from_secs(secs),
            progress: Progress {
                lag: log_end - position,
                log_end,
                position,
            },
            replicas,
        }
    }

    #[test]
    fn rates_are_offset_changes_over_the_window() {
        let t0 = Instant::now();
        let mut s = Samples::new(Duration::from_secs(60));
        assert_eq!(s.record(sample(t0, 0, 1_000, 1_000, 1)).input, None);
        let r = s.record(sample(t0, 10, 2_000, 1_500, 1));
        assert_eq!(r.input, Some(100.0));
        assert_eq!(r.processing, Some(50.0));
    }

    #[test]
    fn nothing_is_measured_over_less_than_the_minimum_span() {
        let t0 = Instant::now();
        let mut s = Samples::new(Duration::from_secs(60));
        s.record(sample(t0, 0, 0, 0, 1));
        assert_eq!(s.record(sample(t0, 2, 500, 0, 1)), Rates::default());
    }

    #[test]
    fn samples_older_than_the_window_are_dropped() {
        let t0 = Instant::now();
        let mut s = Samples::new(Duration::from_secs(30));
        s.record(sample(t0, 0, 0, 0, 1));
        s.record(sample(t0, 30, 3_000, 3_000, 1));
        // The burst of the first 30 s is out of the window now.
        let r = s.record(sample(t0, 60, 3_000, 3_000, 1));
        assert_eq!(r.input, Some(0.0));
    }

    #[test]
    fn capacity_comes_only_from_replicas_that_never_ran_out_of_work() {
        let t0 = Instant::now();
        let mut s = Samples::new(Duration::from_secs(60));
        // A backlog of 100,000 that 2 replicas drain at 1,000/s each: busy all along.
        s.record(sample(t0, 0, 100_000, 0, 2));
        let r = s.record(sample(t0, 20, 100_000, 40_000, 2));
        assert_eq!(r.capacity_per_replica, Some(1_000.0));
        // Keeping up with 100/s (the lag is the records not yet committed): not busy, and the
        // earlier measurement stays.
        let mut idle = Samples::new(Duration::from_secs(60));
        idle.record(sample(t0, 0, 1_000, 0, 2));
        let r = idle.record(sample(t0, 30, 4_000, 3_000, 2));
        assert_eq!(r.processing, Some(100.0));
        assert_eq!(r.capacity_per_replica, None);
    }

    #[test]
    fn a_change_of_replicas_in_the_window_measures_no_capacity() {
        let t0 = Instant::now();
        let mut s = Samples::new(Duration::from_secs(60));
        s.record(sample(t0, 0, 100_000, 0, 1));
        let r = s.record(sample(t0, 20, 100_000, 40_000, 2));
        assert_eq!(r.capacity_per_replica, None);
    }

    #[test]
    fn the_window_spans_checks_and_commit_intervals() {
        let s = Duration::from_secs;
        assert_eq!(window(s(30), s(30)), s(120));
        assert_eq!(window(s(5), s(30)), s(60));
        assert_eq!(
            window(s(1), s(1)),
            s(10),
            "never under twice the minimum span"
        );
    }

    #[test]
    fn offsets_going_backwards_start_over() {
        let t0 = Instant::now();
        let mut s = Samples::new(Duration::from_secs(60));
        s.record(sample(t0, 0, 100_000, 0, 1));
        s.record(sample(t0, 20, 100_000, 40_000, 1));
        // The topic was recreated: log end and positions dropped.
        let r = s.record(sample(t0, 40, 10, 0, 1));
        assert_eq!(r, Rates::default());
    }
}
