//! Why an event was rejected: the stable reason codes of the dead-letter output.
//!
//! The codes are part of the public contract (dead-letter headers, metrics labels, the report),
//! so a code is never renamed; new ones may be added.

use std::fmt;

/// Why an event could not be cleaned. Serialized as its snake_case [`RejectReason::code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// The record had no bytes, or only whitespace.
    Empty,
    /// The record is larger than the configured `--max-event-bytes`.
    TooLarge,
    /// The bytes are not valid UTF-8, so they cannot be JSON.
    InvalidUtf8,
    /// The bytes are not well-formed JSON (syntax error, trailing data, nesting too deep).
    MalformedJson,
    /// Well-formed JSON, but not an object (an array, a string, a number, ...).
    NotAnObject,
    /// The same field appears twice in the object, so which value counts is ambiguous.
    DuplicateField,
    /// `user_id` is absent, null, or an empty/blank string.
    MissingUserId,
    /// `user_id` is present but not a string.
    InvalidUserId,
    /// `timestamp` is absent or null.
    MissingTimestamp,
    /// `timestamp` is not an integer or a string of digits, or lies outside the accepted range.
    InvalidTimestamp,
}

impl RejectReason {
    /// Every reason, in a stable order (for metrics and reports).
    pub const ALL: [RejectReason; 10] = [
        RejectReason::Empty,
        RejectReason::TooLarge,
        RejectReason::InvalidUtf8,
        RejectReason::MalformedJson,
        RejectReason::NotAnObject,
        RejectReason::DuplicateField,
        RejectReason::MissingUserId,
        RejectReason::InvalidUserId,
        RejectReason::MissingTimestamp,
        RejectReason::InvalidTimestamp,
    ];

    /// The stable snake_case code written to dead-letter records and metrics.
    pub const fn code(self) -> &'static str {
        match self {
            RejectReason::Empty => "empty",
            RejectReason::TooLarge => "too_large",
            RejectReason::InvalidUtf8 => "invalid_utf8",
            RejectReason::MalformedJson => "malformed_json",
            RejectReason::NotAnObject => "not_an_object",
            RejectReason::DuplicateField => "duplicate_field",
            RejectReason::MissingUserId => "missing_user_id",
            RejectReason::InvalidUserId => "invalid_user_id",
            RejectReason::MissingTimestamp => "missing_timestamp",
            RejectReason::InvalidTimestamp => "invalid_timestamp",
        }
    }

    /// Position in [`RejectReason::ALL`], for per-reason counters kept in arrays.
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_matches_position_in_all() {
        for (i, r) in RejectReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r}");
        }
    }

    #[test]
    fn codes_are_unique_snake_case() {
        let mut codes: Vec<_> = RejectReason::ALL.iter().map(|r| r.code()).collect();
        assert!(codes.iter().all(|c| {
            c.chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_')
        }));
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), RejectReason::ALL.len());
    }
}
