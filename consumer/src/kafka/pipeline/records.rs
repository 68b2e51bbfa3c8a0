//! One input record into the record made from it: cleaned to the output or dead-lettered with
//! its original bytes (or, for the baseline, copied unchanged), its offset handed to the
//! guarantee.

use rdkafka::message::{Header, OwnedHeaders};

use super::PipelineConfig;
use super::guarantee::{Guarantee, token};
use super::hold::Destination;
use super::produce::Outputs;
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
    outputs: &mut Outputs<'_>,
    guarantee: &dyn Guarantee,
) -> Result<bool> {
    let (partition, offset) = (input.partition, input.offset);
    // The token first: a record it cannot be made for fails before anything waits for it.
    let token = token(partition, offset, false)?;
    if !guarantee.track(partition, offset, handed_at)? {
        return Ok(false);
    }
    outputs
        .send(Destination::Output, input.key, input.payload, None, token)
        .map(|()| true)
}

/// Cleans one record and hands the result (the cleaned event or a dead letter) to the outputs. Returns false for a record left to its partition's next owner
/// (`Guarantee::track`), before the insights count it.
pub(super) fn handle(
    input: InputRecord<'_>,
    handed_at: u64,
    config: &PipelineConfig,
    processor: &mut Processor,
    outputs: &mut Outputs<'_>,
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
        Routed::Output { key, value } => outputs.send(
            Destination::Output,
            Some(key.as_bytes()),
            Some(value),
            None,
            output_token,
        ),
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
            // The input's key and value, byte for byte (absent stays absent).
            let token = token(partition, offset, true)?;
            outputs.send(
                Destination::DeadLetter,
                input.key,
                input.payload,
                Some(headers),
                token,
            )
        }
    };
    sent.map(|()| true)
}
