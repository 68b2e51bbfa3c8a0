//! What the poll loop, the processing stage and the client callbacks share: the offset
//! tracker, the insights checkpoints in flight, the first permanent failure, how far the stage
//! has got, and what the clients' statistics said.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::health::Health;
use crate::kafka::checkpoint::Ledger;
use crate::kafka::offsets::OffsetTracker;
use crate::kafka::rebootstrap::BrokerLoss;
use crate::kafka::requests::ClientRequests;
use crate::kafka::stage::StageProgress;
use crate::metrics::Metrics;

/// State shared by the loop and the client callbacks.
pub(super) struct Shared {
    pub(super) tracker: Mutex<OffsetTracker>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) health: Arc<Health>,
    /// The first permanent delivery failure; stops the loop.
    pub(super) failure: Mutex<Option<Failure>>,
    /// Delivery reports served so far, to tell when the producer's queue of reports is drained.
    pub(super) reports: AtomicU64,
    /// How far the processing stage has got, for revocations to wait on.
    pub(super) stage: StageProgress,
    /// Insights checkpoints sent and not yet acknowledged.
    pub(super) ledger: Mutex<Ledger>,
    /// Whether insights are published (and commits wait for them).
    pub(super) publishing: bool,
    /// Checkpoints asked for (by revocations), numbered from 1.
    pub(super) checkpoints_asked: AtomicU64,
    /// The highest request number a sent checkpoint was taken after. A revocation waits for
    /// its own number: a checkpoint taken before it (an interval's, still being encoded) does
    /// not count what the stage finished for the revocation, and committing on it would hand
    /// the partitions over behind what was produced.
    pub(super) checkpoints_answered: AtomicU64,
    /// What the producer and the consumer asked of the brokers, from their statistics.
    pub(super) requests: Mutex<Requests>,
    /// Whether the consumer or the producer has forgotten every broker, from their statistics;
    /// the poll loop mends it.
    pub(super) consumer_brokers: BrokerLoss,
    pub(super) producer_brokers: BrokerLoss,
}

/// A record the producer could not deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Failure {
    /// What happened, naming the record's input partition and offset.
    pub(super) text: String,
    /// Whether producing the record again would fail the same way (see
    /// `produce::refused_for_good`).
    pub(super) for_good: bool,
}

/// Both clients' requests.
#[derive(Debug, Default)]
pub(super) struct Requests {
    pub(super) producer: ClientRequests,
    pub(super) consumer: ClientRequests,
}

impl Shared {
    pub(super) fn new(metrics: Arc<Metrics>, health: Arc<Health>, publishing: bool) -> Self {
        Shared {
            tracker: Mutex::new(if publishing {
                OffsetTracker::gated_by_insights()
            } else {
                OffsetTracker::default()
            }),
            metrics,
            health,
            failure: Mutex::new(None),
            reports: AtomicU64::new(0),
            stage: StageProgress::default(),
            ledger: Mutex::new(Ledger::default()),
            publishing,
            checkpoints_asked: AtomicU64::new(0),
            checkpoints_answered: AtomicU64::new(0),
            requests: Mutex::default(),
            consumer_brokers: BrokerLoss::new("consumer"),
            producer_brokers: BrokerLoss::new("producer"),
        }
    }

    pub(super) fn tracker(&self) -> MutexGuard<'_, OffsetTracker> {
        // A poisoned lock means a callback panicked; the data is still consistent enough to
        // keep committing conservatively, so recover rather than abort.
        self.tracker.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn requests(&self) -> MutexGuard<'_, Requests> {
        self.requests.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the stage for a checkpoint and waits until it is sent, up to `timeout`. Once the
    /// stage has stopped (at shutdown, when the final checkpoint is taken), nothing waits.
    pub(super) fn checkpoint_now(&self, timeout: Duration) -> bool {
        let ticket = self.checkpoints_asked.fetch_add(1, Ordering::AcqRel) + 1;
        let deadline = Instant::now() + timeout;
        while self.checkpoints_answered.load(Ordering::Acquire) < ticket {
            if self.stage.is_stopped() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }
}

pub(super) fn take_failure(shared: &Shared) -> Option<Failure> {
    shared
        .failure
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
}
