//! Insights kept on their own thread, fed in batches, so the hot loop only copies a few strings.
//!
//! In the Kafka loop the insights cost far more than in isolation (~0.75 µs per event against
//! ~0.2 µs in the processing bench): their sketches span a few MB that librdkafka's work keeps
//! pushing out of the cache. On their own thread they stay warm and run beside the loop, which
//! now only appends each event's fields to a batch. Batches come back for reuse, and the
//! channel is bounded, so a slow insights thread slows the loop rather than growing memory.

use std::thread::JoinHandle;

use super::{Insights, LoginFacts};
use crate::clean::{CleanEvent, Flags};
use crate::handoff::{self, BatchSender};
use crate::reason::RejectReason;

/// Events per batch handed to the insights thread.
const BATCH_EVENTS: usize = 1024;
/// Batches queued for the insights thread before the loop waits for it.
const QUEUED_BATCHES: usize = 4;

/// One cleaned event's facts, its strings stored in the batch's text.
#[derive(Debug, Clone, Copy)]
struct Packed {
    /// End offsets in `Batch::text` of user_id, app_version, device_type, locale, ip, device_id.
    ends: [u32; 6],
    has_ip: bool,
    has_device_id: bool,
    timestamp: i64,
    flags: Flags,
}

#[derive(Debug, Default)]
struct Batch {
    text: String,
    events: Vec<Packed>,
    rejections: Vec<RejectReason>,
}

impl Batch {
    fn push(&mut self, ev: &LoginFacts<'_>) {
        let mut ends = [0u32; 6];
        let fields = [
            ev.user_id,
            ev.app_version,
            ev.device_type,
            ev.locale,
            ev.ip.unwrap_or(""),
            ev.device_id.unwrap_or(""),
        ];
        for (end, field) in ends.iter_mut().zip(fields) {
            self.text.push_str(field);
            // Batches are flushed long before 4 GiB of text (events are capped at 64 KiB).
            *end = u32::try_from(self.text.len()).unwrap_or(u32::MAX);
        }
        self.events.push(Packed {
            ends,
            has_ip: ev.ip.is_some(),
            has_device_id: ev.device_id.is_some(),
            timestamp: ev.timestamp,
            flags: ev.flags,
        });
    }

    fn len(&self) -> usize {
        self.events.len() + self.rejections.len()
    }

    fn record_into(&self, insights: &mut Insights) {
        // Fields are stored back to back: each starts where the previous one ended.
        let mut start = 0;
        for packed in &self.events {
            let [user_id, app_version, device_type, locale, ip, device_id] =
                packed.ends.map(|end| {
                    let field = self.text.get(start as usize..end as usize).unwrap_or("");
                    start = end;
                    field
                });
            insights.record_facts(&LoginFacts {
                user_id,
                app_version,
                device_type,
                locale,
                ip: packed.has_ip.then_some(ip),
                device_id: packed.has_device_id.then_some(device_id),
                timestamp: packed.timestamp,
                flags: packed.flags,
            });
        }
        for reason in &self.rejections {
            insights.record_rejection(*reason);
        }
    }

    fn clear(&mut self) {
        self.text.clear();
        self.events.clear();
        self.rejections.clear();
    }
}

/// The sending side of an insights thread.
#[derive(Debug)]
pub struct InsightsWorker {
    batch: Batch,
    to_worker: Option<BatchSender<Batch>>,
    thread: Option<JoinHandle<Insights>>,
}

impl InsightsWorker {
    /// Starts a thread that folds batches into `insights`.
    pub fn spawn(mut insights: Insights) -> std::io::Result<Self> {
        let (to_worker, batches) = handoff::channel::<Batch>(QUEUED_BATCHES);
        let thread = std::thread::Builder::new()
            .name("insights".into())
            .spawn(move || {
                while let Some(mut batch) = batches.recv() {
                    batch.record_into(&mut insights);
                    batch.clear();
                    batches.give_back(batch);
                }
                insights
            })?;
        Ok(InsightsWorker {
            batch: Batch::default(),
            to_worker: Some(to_worker),
            thread: Some(thread),
        })
    }

    pub fn record(&mut self, ev: &CleanEvent<'_>) {
        self.batch.push(&LoginFacts::of(ev));
        self.flush_if_full();
    }

    pub fn record_rejection(&mut self, reason: RejectReason) {
        self.batch.rejections.push(reason);
        self.flush_if_full();
    }

    fn flush_if_full(&mut self) {
        if self.batch.len() >= BATCH_EVENTS {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if let Some(sender) = &self.to_worker {
            // Fails only if the thread is gone (it panicked); `finish` reports that.
            sender.send(&mut self.batch);
        }
    }

    /// Hands over what is pending, waits for the thread and returns the insights.
    pub fn finish(mut self) -> Insights {
        self.flush();
        drop(self.to_worker.take());
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(insights)) => insights,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            // `finish` consumes the worker, so the thread is always there.
            None => Insights::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clean::Cleaner;

    #[test]
    fn same_insights_as_inline() {
        let cleaner = Cleaner::default();
        let mut inline = Insights::new(50);
        let mut worker = InsightsWorker::spawn(Insights::new(50)).expect("thread");
        for i in 0..5_000 {
            let line = match i % 7 {
                0 => "{".to_owned(),
                1 => format!(
                    r#"{{"user_id":"u{}","ip":"bad","timestamp":1730000000}}"#,
                    i % 13
                ),
                _ => format!(
                    r#"{{"user_id":"u{}","app_version":"2.{}.0","device_type":"iOS","ip":"10.0.0.{}","locale":"ny","device_id":"d{i}","timestamp":{}}}"#,
                    i % 13,
                    i % 3,
                    i % 200,
                    1_730_000_000 + i
                ),
            };
            match cleaner.clean(line.as_bytes()) {
                Ok(ev) => {
                    inline.record(&ev);
                    worker.record(&ev);
                }
                Err(r) => {
                    inline.record_rejection(r.reason);
                    worker.record_rejection(r.reason);
                }
            }
        }
        let threaded = worker.finish();
        assert_eq!(
            serde_json::to_value(&threaded).expect("json"),
            serde_json::to_value(&inline).expect("json")
        );
    }
}
