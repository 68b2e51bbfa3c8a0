//! One record in, one routed result out: cleaning, serialization and insights together.
//!
//! Shared by the Kafka loop and the file mode so both apply the same rules and count the same
//! way. Reuses one output buffer, so the steady state allocates nothing per clean event.

use std::borrow::Cow;

use crate::clean::{Cleaner, Rejection};
use crate::insights::Insights;
use crate::output_json;

/// Where a record goes.
#[derive(Debug)]
pub enum Routed<'p, 'a> {
    /// To the output: the serialized cleaned event, keyed by `user_id`.
    Output { key: Cow<'a, str>, value: &'p [u8] },
    /// To the dead-letter output, with the reason.
    DeadLetter(Rejection),
}

/// Cleans records and keeps the insights about them.
#[derive(Debug)]
pub struct Processor {
    cleaner: Cleaner,
    insights: Insights,
    buffer: Vec<u8>,
}

impl Processor {
    pub fn new(cleaner: Cleaner, insights: Insights) -> Self {
        Processor {
            cleaner,
            insights,
            buffer: Vec::with_capacity(512),
        }
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

    pub fn insights(&self) -> &Insights {
        &self.insights
    }

    pub fn into_insights(self) -> Insights {
        self.insights
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
        assert_eq!(p.insights().cleaned, 1);
        assert_eq!(p.insights().rejected_total(), 1);
    }
}
