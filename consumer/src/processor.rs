//! One record in, one routed result out: cleaning, serialization and insights together.
//!
//! Shared by the Kafka loop and the file mode so both apply the same rules and count the same
//! way. Reuses one output buffer, so the steady state allocates nothing per clean event. The
//! insights are kept either inline (one thread, as the processing bench measures) or on their
//! own thread ([`InsightsWorker`], as the Kafka loop and the file mode run).

use std::borrow::Cow;

use crate::clean::{CleanEvent, Cleaner, Rejection};
use crate::insights::snapshot::EncodeError;
use crate::insights::worker::{Publisher, Records, Then};
use crate::insights::{Insights, InsightsWorker};
use crate::output_json;
use crate::reason::RejectReason;

/// Where a record goes.
#[derive(Debug)]
pub enum Routed<'p, 'a> {
    /// To the output: the serialized cleaned event, keyed by `user_id`.
    Output { key: Cow<'a, str>, value: &'p [u8] },
    /// To the dead-letter output, with the reason.
    DeadLetter(Rejection),
}

/// Where the insights are kept.
#[derive(Debug)]
enum InsightsSink {
    Inline(Box<Insights>),
    Thread(InsightsWorker),
}

impl InsightsSink {
    fn record(&mut self, event: &CleanEvent<'_>) {
        match self {
            InsightsSink::Inline(insights) => insights.record(event),
            InsightsSink::Thread(worker) => worker.record(event),
        }
    }

    fn record_rejection(&mut self, reason: RejectReason) {
        match self {
            InsightsSink::Inline(insights) => insights.record_rejection(reason),
            InsightsSink::Thread(worker) => worker.record_rejection(reason),
        }
    }
}

/// Cleans records and keeps the insights about them.
#[derive(Debug)]
pub struct Processor {
    cleaner: Cleaner,
    insights: InsightsSink,
    buffer: Vec<u8>,
}

impl Processor {
    /// A processor that updates the insights on the calling thread.
    pub fn new(cleaner: Cleaner, insights: Insights) -> Self {
        Processor {
            cleaner,
            insights: InsightsSink::Inline(Box::new(insights)),
            buffer: Vec::with_capacity(512),
        }
    }

    /// A processor that updates the insights on a thread of their own.
    pub fn with_insights_thread(cleaner: Cleaner, insights: Insights) -> std::io::Result<Self> {
        Ok(Processor {
            cleaner,
            insights: InsightsSink::Thread(InsightsWorker::spawn(insights)?),
            buffer: Vec::with_capacity(512),
        })
    }

    pub fn cleaner(&self) -> &Cleaner {
        &self.cleaner
    }

    /// Cleans one record, updates the insights and says where it goes.
    pub fn process<'p, 'a>(&'p mut self, record: &'a [u8]) -> Routed<'p, 'a> {
        match self.cleaner.clean(record) {
            Ok(event) => {
                self.insights.record(&event);
                self.buffer.clear();
                output_json::write_event(&mut self.buffer, &event);
                Routed::Output {
                    key: event.user_id,
                    value: &self.buffer,
                }
            }
            Err(rejection) => {
                self.insights.record_rejection(rejection.reason);
                Routed::DeadLetter(rejection)
            }
        }
    }

    /// Snapshots of the insights so far, for publishing (see [`InsightsWorker::checkpoint`]).
    /// `None` when the insights are kept inline, which is never the case in the Kafka loop.
    pub fn checkpoint(
        &mut self,
        publisher: &Publisher,
        now_ms: i64,
        final_snapshot: bool,
    ) -> Option<Result<Records, EncodeError>> {
        match &mut self.insights {
            InsightsSink::Inline(_) => None,
            InsightsSink::Thread(worker) => {
                Some(worker.checkpoint(publisher, now_ms, final_snapshot))
            }
        }
    }

    /// Like [`Self::checkpoint`] without waiting (see [`InsightsWorker::checkpoint_then`]).
    /// Returns false, `then` unused, when the insights are kept inline.
    pub fn checkpoint_then(
        &mut self,
        publisher: &Publisher,
        now_ms: i64,
        final_snapshot: bool,
        then: Then,
    ) -> bool {
        match &mut self.insights {
            InsightsSink::Inline(_) => false,
            InsightsSink::Thread(worker) => {
                worker.checkpoint_then(publisher, now_ms, final_snapshot, then);
                true
            }
        }
    }

    /// The insights over everything processed (waits for the insights thread, if any).
    pub fn into_insights(self) -> Insights {
        match self.insights {
            InsightsSink::Inline(insights) => *insights,
            InsightsSink::Thread(worker) => worker.finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reason::RejectReason;

    #[test]
    fn routes_and_counts() {
        let mut p = Processor::new(Cleaner::default(), Insights::default());
        match p.process(br#"{"user_id":"u1","timestamp":1730326892}"#) {
            Routed::Output { key, value } => {
                assert_eq!(key, "u1");
                assert!(value.starts_with(br#"{"user_id":"u1""#));
            }
            other => panic!("expected output, got {other:?}"),
        }
        match p.process(b"{") {
            Routed::DeadLetter(r) => assert_eq!(r.reason, RejectReason::MalformedJson),
            other => panic!("expected dead letter, got {other:?}"),
        }
        let insights = p.into_insights();
        assert_eq!(insights.cleaned, 1);
        assert_eq!(insights.rejected_total(), 1);
    }
}
