//! What the operator remembers about each pipeline between checks: consecutive Kafka
//! failures (for the backoff), the last insights read, the offset samples the rates come from
//! and the autoscaling recommendations.
//!
//! The rule: memory is a cache of observations, never the truth. It is lost on restart or a
//! leader change without harm (rates and scale-downs wait for new samples), and it is pruned
//! of pipelines that no longer exist, so an operator that sees many pipelines come and go
//! does not grow.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use crate::crd::InsightsStatus;
use crate::insights::Verdict;
use crate::rates::Samples;
use crate::scaling::History;

/// One pipeline's memory.
#[derive(Debug, Clone)]
pub struct PipelineMemory {
    /// Consecutive failed Kafka checks.
    pub kafka_failures: u32,
    /// The last insights read, reused by the reconciliations between checks.
    pub insights: Option<InsightsRead>,
    pub samples: Samples,
    pub history: History,
}

/// One pipeline's last insights read: for which generation and when, and what it gave.
#[derive(Debug, Clone)]
pub struct InsightsRead {
    pub generation: Option<i64>,
    pub at: Instant,
    pub status: Option<InsightsStatus>,
    pub verdict: Verdict,
}

/// Every pipeline's memory, keyed by `namespace/name`.
#[derive(Default)]
pub struct Memory {
    pipelines: Mutex<HashMap<String, PipelineMemory>>,
}

impl Memory {
    /// Runs `f` on the memory of pipeline `key`, created empty if there is none.
    pub fn with<T>(&self, key: &str, f: impl FnOnce(&mut PipelineMemory) -> T) -> T {
        let mut map = self.lock();
        let entry = map.entry(key.to_owned()).or_insert_with(|| PipelineMemory {
            kafka_failures: 0,
            insights: None,
            samples: Samples::default(),
            history: History::default(),
        });
        f(entry)
    }

    /// Forgets the pipelines not in `live`. Returns how many were forgotten.
    pub fn retain(&self, live: &HashSet<String>) -> usize {
        let mut map = self.lock();
        let before = map.len();
        map.retain(|key, _| live.contains(key));
        before - map.len()
    }

    /// Pipelines remembered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A panic while the lock was held leaves nothing half-written that matters (counters and
    /// caches), so a poisoned lock is used as it is.
    fn lock(&self) -> MutexGuard<'_, HashMap<String, PipelineMemory>> {
        self.pipelines.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_starts_empty_per_pipeline_and_persists_between_checks() {
        let memory = Memory::default();
        memory.with("ns/a", |m| m.kafka_failures += 1);
        memory.with("ns/a", |m| m.kafka_failures += 1);
        assert_eq!(memory.with("ns/a", |m| m.kafka_failures), 2);
        assert_eq!(memory.with("ns/b", |m| m.kafka_failures), 0);
    }

    #[test]
    fn deleted_pipelines_are_forgotten() {
        let memory = Memory::default();
        for key in ["ns/a", "ns/b", "other/a"] {
            memory.with(key, |_| ());
        }
        let live: HashSet<String> = ["ns/b".to_owned()].into();
        assert_eq!(memory.retain(&live), 2);
        assert_eq!(memory.len(), 1);
        assert_eq!(memory.retain(&live), 0);
    }
}
