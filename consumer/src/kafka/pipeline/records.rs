//! One input record into the record made from it: cleaned to the output or dead-lettered with
//! its original bytes (or, for the baseline, copied unchanged), its offset handed to the
//! guarantee.

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;

use super::PipelineConfig;
use super::guarantee::{Guarantee, token};
use super::produce::{Output, send};
use super::shared::Shared;
use crate::dead_letter::{self, Source};
use crate::error::Result;
use crate::kafka::stage::InputRecord;
use crate::processor::{Processor, Routed};

/// The benchmarks' baseline: copies one record to the output unchanged (through the hold, as
/// the pipeline's records go). Returns false for a record left to its partition's next
/// owner (`Guarantee::track`).
pub(super) fn pass_through(
    input: InputRecord<'_>,
    handed_at: u64,
    output: &mut Output<'_>,
    guarantee: &dyn Guarantee,
) -> Result<bool> {
    let (partition, offset) = (input.partition, input.offset);
    // The token first: a record it cannot be made for fails before anything waits for it.
    let token = token(partition, offset, false)?;
    if !guarantee.track(partition, offset, handed_at)? {
        return Ok(false);
    }
    output.send(input.key, input.payload, token).map(|()| true)
}

/// Cleans one record and hands the result to the output (a dead letter to the producer). Returns false for a record left to its partition's next owner
/// (`Guarantee::track`), before the insights count it.
pub(super) fn handle(
    input: InputRecord<'_>,
    handed_at: u64,
    config: &PipelineConfig,
    processor: &mut Processor,
    output: &mut Output<'_>,
    shared: &Shared,
    guarantee: &dyn Guarantee,
) -> Result<bool> {
    let (partition, offset) = (input.partition, input.offset);
    // The token first: a record it cannot be made for fails before anything waits for it.
    let output_token = token(partition, offset, false)?;
    if !guarantee.track(partition, offset, handed_at)? {
        return Ok(false);
    }
    let sent = match processor.process(input.payload.unwrap_or_default()) {
        Routed::Output { key, value } => {
            output.send(Some(key.as_bytes()), Some(value), output_token)
        }
        Routed::DeadLetter(rejection) => {
            shared.metrics.count_rejection(rejection.reason);
            let source = Source {
                topic: &config.input_topic,
                partition,
                offset,
            };
            let mut headers = OwnedHeaders::new_with_capacity(5);
            for (key, value) in dead_letter::headers(&rejection, source) {
                headers = headers.insert(Header {
                    key,
                    value: Some(value.as_bytes()),
                });
            }
            let token = token(partition, offset, true)?;
            let record =
                BaseRecord::<[u8], [u8], usize>::with_opaque_to(&config.dead_letter_topic, token)
                    .headers(headers);
            send(output.producer, with_original(record, input))
        }
    };
    sent.map(|()| true)
}

/// The input's key and value on `record`, byte for byte (absent stays absent).
pub(super) fn with_original<'a>(
    mut record: BaseRecord<'a, [u8], [u8], usize>,
    input: InputRecord<'a>,
) -> BaseRecord<'a, [u8], [u8], usize> {
    if let Some(payload) = input.payload {
        record = record.payload(payload);
    }
    if let Some(key) = input.key {
        record = record.key(key);
    }
    record
}
