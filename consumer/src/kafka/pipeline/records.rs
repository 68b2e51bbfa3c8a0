//! One input record into the record made from it: cleaned to the output or dead-lettered with
//! its original bytes (or, for the baseline, copied unchanged), its offset handed to the
//! guarantee.
//!
//! The baseline's key: the pipeline keys its output by `user_id`, so each input batch of one
//! partition spreads over every output partition. A copy under the input's own key lands in
//! the partition its input came from (same key, same partitioner, same partition count), whole
//! fetched runs in one partition, and batches far better with many partitions. `user-id`
//! re-keys the copy as the pipeline keys its output, found by a scan of the bytes, not a parse.

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

/// The key the `--passthrough` baseline gives each copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PassthroughKey {
    /// The input record's own key: with the same partitioner and partition count, each copy
    /// lands in the partition number its input came from.
    #[default]
    Input,
    /// The event's `user_id`, as the pipeline keys its output, so the copies spread over the
    /// partitions as the pipeline's records do (the input's key when the value has no plain
    /// `user_id` string).
    UserId,
}

/// The benchmarks' baseline: copies one record to the output unchanged (through the hold, as
/// the pipeline's records go), keyed as `key` says. Returns false for a record left to its
/// partition's next owner (`Guarantee::track`).
pub(super) fn pass_through(
    input: InputRecord<'_>,
    key: PassthroughKey,
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
    let key = match key {
        PassthroughKey::Input => input.key,
        PassthroughKey::UserId => input.payload.and_then(user_id_of).or(input.key),
    };
    outputs
        .send(Destination::Output, key, input.payload, None, token)
        .map(|()| true)
}

/// The `user_id` string of a raw JSON event, by a scan: the first `"user_id"` (at any depth)
/// followed by a colon and a non-empty string with no escapes, trimmed of ASCII whitespace (the
/// cleaner trims Unicode's too and decodes escapes; for spreading records over partitions as
/// the pipeline does, the difference does not matter). None when there is no such string.
fn user_id_of(payload: &[u8]) -> Option<&[u8]> {
    const FIELD: &[u8] = b"\"user_id\"";
    let mut from = 0;
    while let Some(found) = payload[from..]
        .windows(FIELD.len())
        .position(|w| w == FIELD)
    {
        from += found + FIELD.len();
        if let Some(id) = string_after_colon(&payload[from..]) {
            return Some(id);
        }
    }
    None
}

/// The string after `:` at the start of `rest`, trimmed, if it is non-empty and has no escapes.
fn string_after_colon(rest: &[u8]) -> Option<&[u8]> {
    let value = rest.trim_ascii_start().strip_prefix(b":")?;
    let value = value.trim_ascii_start().strip_prefix(b"\"")?;
    let end = value.iter().position(|&b| b == b'"' || b == b'\\')?;
    let id = value[..end].trim_ascii();
    (value[end] == b'"' && !id.is_empty()).then_some(id)
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

#[cfg(test)]
mod tests {
    use super::user_id_of;

    #[test]
    fn the_user_id_is_the_string_after_the_field_name() {
        let event = br#"{"user_id": "63087e52-44c6", "ip": "1.2.3.4"}"#;
        assert_eq!(user_id_of(event), Some(&b"63087e52-44c6"[..]));
        assert_eq!(
            user_id_of(br#"{"ip":"1","user_id" :"u1"}"#),
            Some(&b"u1"[..])
        );
    }

    #[test]
    fn the_user_id_is_trimmed_as_the_cleaner_trims_it() {
        assert_eq!(user_id_of(br#"{"user_id": " u2 "}"#), Some(&b"u2"[..]));
    }

    #[test]
    fn a_field_name_not_followed_by_a_string_is_passed_over() {
        let event = br#"{"note": "user_id", "other": "user_id", "user_id": "u3"}"#;
        assert_eq!(user_id_of(event), Some(&b"u3"[..]));
    }

    #[test]
    fn no_plain_string_user_id_gives_none() {
        for event in [
            &br#"{"ip": "1.2.3.4"}"#[..],
            br#"{"user_id": 42}"#,
            br#"{"user_id": "  "}"#,
            br#"{"user_id": "a\"b"}"#,
            br#"{"user_id": "unterminated"#,
            br#"{"user_id""#,
            b"not json",
        ] {
            assert_eq!(
                user_id_of(event),
                None,
                "{}",
                String::from_utf8_lossy(event)
            );
        }
    }
}
