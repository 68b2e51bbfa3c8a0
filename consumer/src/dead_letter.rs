//! The dead-letter format: the original bytes, untouched, plus why they were rejected.
//!
//! In Kafka mode the record value and key are the input's, byte for byte, and the reason and
//! source position travel as headers ([`headers`]). In file mode each rejected line becomes
//! one JSON line ([`FileRecord`]).

use base64::Engine;
use serde::Serialize;

use crate::clean::Rejection;

/// Header with the stable reason code, e.g. `malformed_json`.
pub const HEADER_REASON: &str = "dlq.reason";
/// Header with a human-readable explanation.
pub const HEADER_DETAIL: &str = "dlq.detail";
pub const HEADER_SOURCE_TOPIC: &str = "dlq.source.topic";
pub const HEADER_SOURCE_PARTITION: &str = "dlq.source.partition";
pub const HEADER_SOURCE_OFFSET: &str = "dlq.source.offset";

/// Where a rejected Kafka record came from.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

/// The dead-letter headers of a rejected Kafka record, as (name, value) pairs.
pub fn headers(rejection: &Rejection, source: Source<'_>) -> [(&'static str, String); 5] {
    [
        (HEADER_REASON, rejection.reason.code().to_owned()),
        (HEADER_DETAIL, rejection.detail.clone()),
        (HEADER_SOURCE_TOPIC, source.topic.to_owned()),
        (HEADER_SOURCE_PARTITION, source.partition.to_string()),
        (HEADER_SOURCE_OFFSET, source.offset.to_string()),
    ]
}

/// One rejected input line in file mode.
#[derive(Debug, Serialize)]
pub struct FileRecord<'a> {
    pub reason: &'static str,
    pub detail: &'a str,
    /// 1-based line number in the input.
    pub line: u64,
    /// The original line (without its newline) when it is valid UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original: Option<&'a str>,
    /// The original line, base64-encoded, when it is not valid UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_base64: Option<String>,
    /// Set when the line was longer than the reader keeps; `original` then holds its start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_length: Option<u64>,
}

impl<'a> FileRecord<'a> {
    /// `kept` is the start of the line as read; `full_length` its length in the input.
    pub fn new(rejection: &'a Rejection, line: u64, kept: &'a [u8], full_length: u64) -> Self {
        let (original, original_base64) = match std::str::from_utf8(kept) {
            Ok(text) => (Some(text), None),
            Err(_) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(kept)),
            ),
        };
        FileRecord {
            reason: rejection.reason.code(),
            detail: &rejection.detail,
            line,
            original,
            original_base64,
            original_length: (full_length != kept.len() as u64).then_some(full_length),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reason::RejectReason;

    fn rejection() -> Rejection {
        Rejection {
            reason: RejectReason::InvalidUtf8,
            detail: "bad".into(),
        }
    }

    #[test]
    fn file_record_keeps_utf8_as_text_and_bytes_as_base64() {
        let r = rejection();
        let text = serde_json::to_string(&FileRecord::new(&r, 3, b"{x", 2)).expect("json");
        assert_eq!(
            text,
            r#"{"reason":"invalid_utf8","detail":"bad","line":3,"original":"{x"}"#
        );
        let bytes = serde_json::to_string(&FileRecord::new(&r, 4, b"\xff\x00", 2)).expect("json");
        assert!(bytes.contains(r#""original_base64":"/wA=""#), "{bytes}");
        let cut = serde_json::to_string(&FileRecord::new(&r, 5, b"ab", 10)).expect("json");
        assert!(cut.contains(r#""original_length":10"#), "{cut}");
    }

    #[test]
    fn kafka_headers_carry_reason_and_source() {
        let h = headers(
            &rejection(),
            Source {
                topic: "in",
                partition: 2,
                offset: 41,
            },
        );
        assert_eq!(h[0], (HEADER_REASON, "invalid_utf8".to_owned()));
        assert_eq!(h[3], (HEADER_SOURCE_PARTITION, "2".to_owned()));
        assert_eq!(h[4], (HEADER_SOURCE_OFFSET, "41".to_owned()));
    }
}
