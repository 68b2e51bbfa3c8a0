//! Liveness and readiness, as seen by `/healthz` and `/readyz`.
//!
//! Live: the consume loop went round recently (a stuck loop fails the probe and gets the pod
//! restarted). Ready: connected to the group and assigned at least one partition.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long the loop may go without a heartbeat before it counts as stuck.
pub const STALL_LIMIT: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    /// Milliseconds since the epoch of the loop's last heartbeat; 0 before the first one.
    heartbeat_ms: AtomicU64,
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

    /// Live until a started loop stops beating for [`STALL_LIMIT`].
    pub fn is_live(&self) -> bool {
        let last = self.heartbeat_ms.load(Ordering::Relaxed);
        last == 0 || now_ms().saturating_sub(last) < STALL_LIMIT.as_millis() as u64
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
}
