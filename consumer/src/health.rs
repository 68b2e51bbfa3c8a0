//! Liveness and readiness, as seen by `/healthz` and `/readyz`.
//!
//! Live: the consume loop went round recently (a stuck loop fails the probe and gets the pod
//! restarted), and the consumer has not been without its group coordinator for
//! [`GROUP_STALL_LIMIT`]. Ready: connected to the group and assigned at least one partition.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long the loop may go without a heartbeat before it counts as stuck.
pub const STALL_LIMIT: Duration = Duration::from_secs(60);

/// How long the consumer may go without its group coordinator before it counts as stuck.
///
/// Seen under load (`consumer/tests/faults.rs`): after a broker restart, librdkafka went on
/// logging "no broker available for coordinator query" for minutes after the broker was back,
/// and the consumer never rejoined. The cause found since, a client that has forgotten every
/// broker, is mended (`kafka::rebootstrap`); this stays as the backstop for any other way a
/// consumer loses its coordinator for good. A restart does rejoin. Five minutes leaves real
/// outages and slow rebalances alone.
pub const GROUP_STALL_LIMIT: Duration = Duration::from_secs(300);

#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    /// Milliseconds since the epoch of the loop's last heartbeat; 0 before the first one.
    heartbeat_ms: AtomicU64,
    /// Set while the consumer has been without its group coordinator for too long.
    group_stuck: AtomicBool,
}

/// Whether librdkafka's consumer group state (from its statistics: `cgrp.state`, and how
/// long it has been in it, `cgrp.stateage` in ms) means the group is stuck: anything but
/// `up` (the coordinator known) for [`GROUP_STALL_LIMIT`].
pub fn group_stuck(state: &str, state_age_ms: i64) -> bool {
    state != "up" && state != "term" && state_age_ms >= GROUP_STALL_LIMIT.as_millis() as i64
}

impl Health {
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn beat(&self) {
        self.heartbeat_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Notes the consumer group's state; returns true when it just became stuck.
    pub fn set_group_stuck(&self, stuck: bool) -> bool {
        let was = self.group_stuck.swap(stuck, Ordering::Relaxed);
        stuck && !was
    }

    /// Live until a started loop stops beating for [`STALL_LIMIT`], or the group is stuck.
    pub fn is_live(&self) -> bool {
        let last = self.heartbeat_ms.load(Ordering::Relaxed);
        let beating = last == 0 || now_ms().saturating_sub(last) < STALL_LIMIT.as_millis() as u64;
        beating && !self.group_stuck.load(Ordering::Relaxed)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_before_start_and_while_beating() {
        let h = Health::default();
        assert!(h.is_live());
        h.beat();
        assert!(h.is_live());
        h.heartbeat_ms.store(1, Ordering::Relaxed);
        assert!(!h.is_live());
        assert!(!h.is_ready());
        h.set_ready(true);
        assert!(h.is_ready());
    }

    #[test]
    fn a_group_without_its_coordinator_for_five_minutes_is_not_live() {
        let five_minutes = GROUP_STALL_LIMIT.as_millis() as i64;
        assert!(
            !group_stuck("up", 10 * five_minutes),
            "up: fine however long"
        );
        assert!(
            !group_stuck("query-coord", five_minutes - 1),
            "a while: fine"
        );
        assert!(group_stuck("query-coord", five_minutes));
        assert!(group_stuck("wait-coord", five_minutes));
        assert!(
            !group_stuck("term", five_minutes),
            "shutting down: not stuck"
        );
        let h = Health::default();
        h.beat();
        assert!(h.set_group_stuck(true), "became stuck");
        assert!(!h.set_group_stuck(true), "still stuck: no news");
        assert!(!h.is_live());
        h.set_group_stuck(false);
        assert!(h.is_live());
    }
}
