//! The processing core's rules over arbitrary bytes, checked in one place: the fuzz target
//! (`fuzz/fuzz_targets/process.rs`) and the corpus replay test (`consumer/tests/fuzz_corpus.rs`)
//! both call [`check_processing`]. A broken rule is a panic; so is a panic in the core itself.
//!
//! The rules, for any record:
//!
//! - It goes to exactly one place, the output or the dead letter, and the insights count it
//!   exactly once, there.
//! - A dead letter carries a reason code and a detail, and the original bytes unchanged (the
//!   file mode's [`FileRecord`] gives them back byte for byte; the Kafka headers carry the
//!   code and detail). The reason agrees with an independent reading of the bytes: size,
//!   whitespace, UTF-8, and serde_json's verdict on whether they are well-formed JSON and an
//!   object. Two latitudes: malformed JSON that repeats a known field before it goes wrong may
//!   be rejected as `duplicate_field` (the parser reports the first problem it meets); a
//!   well-formed object with a number beyond `f64` (`1e400`) or a lone surrogate escape
//!   (`"\ud800"`) in a key or a known field's value is `malformed_json` (serde_json cannot
//!   represent them; see `UNREPRESENTABLE`).
//! - An output is a JSON object, byte for byte what serde_json makes of the cleaned event, keyed
//!   by its trimmed, non-blank `user_id`, with a timestamp in the accepted range and the
//!   matching `login_time`.
//! - Idempotence: an output fed back through a fresh processor with the same settings is
//!   cleaned to exactly the same bytes. Exceptions, by design (see `check_recleans`): `flags`
//!   say what was dropped from the input at hand, so an output with flags re-cleans to itself
//!   without them; an output longer than `--max-event-bytes` (cleaning adds the defaulted
//!   fields, so it can outgrow an input near the limit) re-cleans to a `too_large` rejection.
//!   With `--pii-mode mask`, the rule holds but for a `device_id` shorter than four
//!   characters, which masks to `ab****` and again to `ab******`. With `--pii-mode hash` it does
//!   not hold at all (a hash is hashed again, a hashed IP is no IP); what is checked there is
//!   that hashing changes nothing but `ip` and `device_id`.
//! - The two parse paths agree: whenever the fast path (`event::flat`) reads a record, its
//!   fields are exactly what the serde_json path reads.
//! - The PII modes never change where a record goes, why it is rejected, or any field but `ip`
//!   and `device_id`.
//! - A lower size limit changes nothing but to reject longer records as `too_large`; the file
//!   mode, under that limit and reading in small chunks, writes one output or dead-letter line
//!   per input line, each the same as the processor's verdict on that line.

use std::io::BufReader;
use std::net::IpAddr;

use fetch_consumer::clean::{Cleaner, DEFAULT_MAX_EVENT_BYTES, Rejection};
use fetch_consumer::dead_letter::{self, FileRecord, Source};
use fetch_consumer::event::{RawEvent, flat};
use fetch_consumer::file_mode::process_lines;
use fetch_consumer::insights::Insights;
use fetch_consumer::pii::{PiiMode, PiiPolicy};
use fetch_consumer::processor::{Processor, Routed};
use fetch_consumer::reason::RejectReason;
use fetch_consumer::time;
use serde::de::IgnoredAny;
use serde_json::{Map, Value};

/// The size limit of the second configuration: small, so that the fuzzer's inputs cross it
/// and the file mode's cutting of long lines is exercised.
pub const SMALL_LIMIT: usize = 256;

/// serde_json's errors for JSON that is well-formed but that it cannot represent: a number
/// beyond `f64` (`1e400`) and a lone UTF-16 surrogate escape (`"\ud800"`). The consumer reads
/// every key and the value of every known field, so such a key or known value makes the
/// record `malformed_json`; in the value of an unknown field it is skipped unread.
const UNREPRESENTABLE: [&str; 4] = [
    "number out of range",
    "lone leading surrogate in hex escape",
    "unexpected end of hex escape",
    "invalid unicode code point",
];

/// The key of the `hash` configuration.
const HASH_KEY: &[u8] = b"fetch-pipeline-fuzz";

/// The output's fields, in order; `flags` only when something was dropped.
const OUTPUT_FIELDS: [&str; 9] = [
    "user_id",
    "app_version",
    "device_type",
    "ip",
    "locale",
    "device_id",
    "timestamp",
    "login_time",
    "flags",
];

const FLAG_CODES: [&str; 5] = [
    "invalid_ip",
    "invalid_app_version",
    "invalid_device_type",
    "invalid_locale",
    "invalid_device_id",
];

/// Checks every rule in the module documentation on one record. Panics when one breaks.
pub fn check_processing(input: &[u8]) {
    let cleaner = Cleaner::default();
    let kept = process(&cleaner, input);
    match &kept {
        Outcome::Output { key, value } => {
            check_output(&cleaner, input, key, value);
            check_recleans(&cleaner, key, value);
        }
        Outcome::DeadLetter(rejection) => check_dead_letter(input, rejection),
    }
    check_parse_paths_agree(input);
    check_reason_agrees(input, &kept);
    check_pii_modes(input, &kept);
    check_small_limit(input, &kept);
    check_file_mode(input);
}

fn check_parse_paths_agree(input: &[u8]) {
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    if let Some(fast) = flat::parse(text) {
        assert_eq!(
            Ok(fast),
            RawEvent::parse_reference(text),
            "the fast parse path differs from serde_json's"
        );
    }
}

/// Where one record went, owned (the processor's answer borrows it and the input).
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Output { key: String, value: Vec<u8> },
    DeadLetter(Rejection),
}

/// Runs `record` through a fresh processor and checks that its insights counted it once.
fn process(cleaner: &Cleaner, record: &[u8]) -> Outcome {
    let mut processor = Processor::new(cleaner.clone(), Insights::new(16));
    let outcome = match processor.process(record) {
        Routed::Output { key, value } => Outcome::Output {
            key: key.into_owned(),
            value: value.to_vec(),
        },
        Routed::DeadLetter(rejection) => Outcome::DeadLetter(rejection),
    };
    let insights = processor.into_insights();
    match &outcome {
        Outcome::Output { .. } => assert_eq!(
            (insights.cleaned, insights.rejected_total()),
            (1, 0),
            "an output must be counted once as cleaned, never as rejected"
        ),
        Outcome::DeadLetter(rejection) => {
            assert_eq!(
                (insights.cleaned, insights.rejected_total()),
                (0, 1),
                "a dead letter must be counted once as rejected, never as cleaned"
            );
            assert_eq!(
                insights.rejected.get(rejection.reason.code()),
                Some(&1),
                "a dead letter must be counted under its own reason"
            );
        }
    }
    outcome
}

fn check_output(cleaner: &Cleaner, input: &[u8], key: &str, value: &[u8]) {
    let event = cleaner
        .clean(input)
        .expect("the processor passed the record on, so the cleaner accepts it");
    let by_serde = serde_json::to_vec(&event).expect("a cleaned event serializes");
    assert!(
        value == by_serde,
        "the output encoder differs from serde_json:\n  ours:  {}\n  serde: {}",
        String::from_utf8_lossy(value),
        String::from_utf8_lossy(&by_serde)
    );
    let object = json_object(value, "output");
    for name in object.keys() {
        assert!(
            OUTPUT_FIELDS.contains(&name.as_str()),
            "unexpected output field {name:?}"
        );
    }
    let user_id = object
        .get("user_id")
        .and_then(Value::as_str)
        .expect("user_id is a string");
    assert_eq!(user_id, key, "the record key is the output's user_id");
    assert!(
        !key.is_empty() && key.trim() == key,
        "user_id {key:?} must be trimmed and not blank"
    );
    let timestamp = object
        .get("timestamp")
        .and_then(Value::as_i64)
        .expect("timestamp is an integer");
    assert!(
        time::in_range(timestamp),
        "timestamp {timestamp} is outside the accepted range"
    );
    let rfc3339 = time::rfc3339(timestamp);
    assert_eq!(
        object
            .get("login_time")
            .and_then(Value::as_str)
            .map(str::as_bytes),
        Some(&rfc3339[..]),
        "login_time is the timestamp in RFC 3339"
    );
    if let Some(flags) = object.get("flags") {
        let flags = flags.as_array().expect("flags is an array");
        assert!(!flags.is_empty(), "flags is omitted when empty");
        for flag in flags {
            assert!(
                flag.as_str().is_some_and(|f| FLAG_CODES.contains(&f)),
                "unknown flag {flag}"
            );
        }
    }
}

/// Idempotence: `value`, an output of `cleaner`, fed back through a fresh processor with the
/// same settings, comes out as the same bytes without their `flags` (which describe the
/// previous input, not this one). The one other way out: an output longer than the size limit
/// is rejected as `too_large`.
fn check_recleans(cleaner: &Cleaner, key: &str, value: &[u8]) {
    let expected = without_flags(value);
    match process(cleaner, value) {
        Outcome::Output {
            key: again_key,
            value: again,
        } => {
            assert_eq!(again_key, key, "re-cleaning changed the key");
            assert!(
                again == expected,
                "the output does not re-clean to itself:\n  once:  {}\n  twice: {}",
                String::from_utf8_lossy(value),
                String::from_utf8_lossy(&again)
            );
            if expected.len() != value.len() {
                // The flags went; what is left must be a fixed point itself.
                check_recleans(cleaner, key, &again);
            }
        }
        Outcome::DeadLetter(rejection) => assert!(
            rejection.reason == RejectReason::TooLarge && value.len() > cleaner.max_event_bytes(),
            "the output {} is rejected when cleaned again: {rejection:?}",
            String::from_utf8_lossy(value)
        ),
    }
}

/// The output without its `flags` field, the last one when present.
fn without_flags(value: &[u8]) -> Vec<u8> {
    // Inside a JSON string every `"` is escaped, so `,"flags":[` can only be the field.
    const FLAGS: &[u8] = b",\"flags\":[";
    match value.windows(FLAGS.len()).rposition(|w| w == FLAGS) {
        Some(at) => {
            let mut out = value[..at].to_vec();
            out.push(b'}');
            out
        }
        None => value.to_vec(),
    }
}

fn check_dead_letter(input: &[u8], rejection: &Rejection) {
    let code = rejection.reason.code();
    assert!(
        !rejection.detail.is_empty(),
        "the {code} rejection has no detail"
    );
    let headers = dead_letter::headers(
        rejection,
        Source {
            topic: "in",
            partition: 3,
            offset: 7,
        },
    );
    assert_eq!(headers[0], (dead_letter::HEADER_REASON, code.to_owned()));
    assert_eq!(
        headers[1],
        (dead_letter::HEADER_DETAIL, rejection.detail.clone())
    );
    let record = FileRecord::new(rejection, 1, input, input.len() as u64);
    let line = serde_json::to_vec(&record).expect("a dead-letter record serializes");
    let object = json_object(&line, "dead-letter record");
    assert_eq!(object.get("reason").and_then(Value::as_str), Some(code));
    assert_eq!(
        object.get("detail").and_then(Value::as_str),
        Some(rejection.detail.as_str())
    );
    assert_eq!(object.get("line").and_then(Value::as_u64), Some(1));
    assert!(
        !object.contains_key("original_length"),
        "nothing was cut, yet original_length is set"
    );
    assert_eq!(
        original_bytes(&object),
        input,
        "the dead letter does not carry the original bytes"
    );
}

/// The original bytes a file-mode dead-letter record carries, as text or as base64.
fn original_bytes(record: &Map<String, Value>) -> Vec<u8> {
    match (record.get("original"), record.get("original_base64")) {
        (Some(Value::String(text)), None) => text.clone().into_bytes(),
        (None, Some(Value::String(b64))) => {
            let bytes = base64_decode(b64).expect("original_base64 is base64");
            assert!(
                std::str::from_utf8(&bytes).is_err(),
                "UTF-8 is carried as text, not base64"
            );
            bytes
        }
        other => {
            panic!("a dead letter carries exactly one of original, original_base64: {other:?}")
        }
    }
}

/// The reason (or its absence) agrees with an independent reading of the bytes.
fn check_reason_agrees(input: &[u8], outcome: &Outcome) {
    let (reason, detail) = match outcome {
        Outcome::Output { .. } => (None, ""),
        Outcome::DeadLetter(rejection) => (Some(rejection.reason), rejection.detail.as_str()),
    };
    let expected = if input.len() > DEFAULT_MAX_EVENT_BYTES {
        Some(RejectReason::TooLarge)
    } else if input.iter().all(u8::is_ascii_whitespace) {
        Some(RejectReason::Empty)
    } else if let Ok(text) = std::str::from_utf8(input) {
        // IgnoredAny reads nesting of any depth, as the consumer does.
        if serde_json::from_str::<IgnoredAny>(text).is_err() {
            if reason == Some(RejectReason::DuplicateField) {
                // The parser stops at the first problem: a known field repeated before the
                // syntax goes wrong is what it reports.
                return;
            }
            Some(RejectReason::MalformedJson)
        } else if text
            .trim_start_matches(|c: char| c.is_ascii_whitespace())
            .starts_with('{')
        {
            // A well-formed object: the field rules decide, any envelope reason is wrong, but
            // for values serde_json cannot represent (see UNREPRESENTABLE).
            if reason == Some(RejectReason::MalformedJson)
                && UNREPRESENTABLE.iter().any(|m| detail.starts_with(m))
            {
                return;
            }
            assert!(
                !matches!(
                    reason,
                    Some(
                        RejectReason::Empty
                            | RejectReason::TooLarge
                            | RejectReason::InvalidUtf8
                            | RejectReason::MalformedJson
                            | RejectReason::NotAnObject
                    )
                ),
                "a well-formed JSON object was rejected as {reason:?} ({detail})"
            );
            return;
        } else {
            Some(RejectReason::NotAnObject)
        }
    } else {
        Some(RejectReason::InvalidUtf8)
    };
    assert_eq!(reason, expected, "wrong routing or reason ({detail})");
}

/// `mask` and `hash` route every record as `keep` does and change only `ip` and `device_id`;
/// `mask` keeps idempotence (but for short device ids).
fn check_pii_modes(input: &[u8], kept: &Outcome) {
    for (mode, key) in [(PiiMode::Mask, None), (PiiMode::Hash, Some(HASH_KEY))] {
        let policy = PiiPolicy::new(mode, key).expect("a valid PII policy");
        let cleaner = Cleaner::new(DEFAULT_MAX_EVENT_BYTES, policy);
        let got = process(&cleaner, input);
        let (
            Outcome::Output {
                key: kept_key,
                value: kept_value,
            },
            Outcome::Output {
                key: got_key,
                value,
            },
        ) = (kept, &got)
        else {
            assert_eq!(
                &got, kept,
                "--pii-mode {mode:?} routed the record differently"
            );
            continue;
        };
        assert_eq!(got_key, kept_key, "--pii-mode {mode:?} changed the key");
        let mut plain = json_object(kept_value, "output");
        let mut protected = json_object(value, "output");
        let (plain_ip, ip) = (take(&mut plain, "ip"), take(&mut protected, "ip"));
        let (plain_id, id) = (
            take(&mut plain, "device_id"),
            take(&mut protected, "device_id"),
        );
        assert_eq!(
            protected, plain,
            "--pii-mode {mode:?} changed a field other than ip and device_id"
        );
        match mode {
            PiiMode::Mask => {
                let masked_ip = plain_ip.map(|ip| {
                    let ip: IpAddr = ip.parse().expect("an output ip is an IP address");
                    mask_ip(ip).to_string()
                });
                assert_eq!(ip, masked_ip, "mask coarsens ip to its /24 or /48");
                let masked_id = plain_id.as_deref().map(|id| {
                    let prefix: String = id.chars().take(4).collect();
                    format!("{prefix}****")
                });
                assert_eq!(
                    id, masked_id,
                    "mask keeps the first 4 characters of device_id"
                );
                if plain_id.is_none_or(|id| id.chars().count() >= 4) {
                    check_recleans(&cleaner, got_key, value);
                } else {
                    check_recleans_but_device_id(&cleaner, value);
                }
            }
            _ => {
                for (name, plain, hashed) in [("ip", plain_ip, ip), ("device_id", plain_id, id)] {
                    assert_eq!(
                        plain.is_some(),
                        hashed.is_some(),
                        "hash keeps {name} absent"
                    );
                    if let Some(h) = hashed {
                        assert!(
                            h.len() == 32
                                && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
                            "hashed {name} {h:?} is not 32 lower-case hex digits"
                        );
                    }
                }
            }
        }
    }
}

/// `mask` with a device id under four characters: all but `device_id` re-cleans to itself.
fn check_recleans_but_device_id(cleaner: &Cleaner, value: &[u8]) {
    match process(cleaner, value) {
        Outcome::Output { value: again, .. } => {
            let mut once = json_object(&without_flags(value), "output");
            let mut twice = json_object(&again, "output");
            take(&mut once, "device_id");
            take(&mut twice, "device_id");
            assert_eq!(twice, once, "the masked output does not re-clean to itself");
        }
        Outcome::DeadLetter(rejection) => assert!(
            rejection.reason == RejectReason::TooLarge && value.len() > cleaner.max_event_bytes(),
            "the masked output is rejected when cleaned again: {rejection:?}"
        ),
    }
}

fn mask_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::from([a, b, c, 0])
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::from([s[0], s[1], s[2], 0, 0, 0, 0, 0])
        }
    }
}

/// Removes a string-or-null field: `Some(text)` or `None` for null. Panics on anything else.
fn take(object: &mut Map<String, Value>, name: &str) -> Option<String> {
    match object.remove(name) {
        Some(Value::String(s)) => Some(s),
        Some(Value::Null) => None,
        other => panic!("{name} must be a string or null, found {other:?}"),
    }
}

/// A lower size limit rejects longer records as `too_large` and changes nothing else.
fn check_small_limit(input: &[u8], kept: &Outcome) {
    let cleaner = Cleaner::new(SMALL_LIMIT, PiiPolicy::Keep);
    let got = process(&cleaner, input);
    if input.len() > SMALL_LIMIT {
        assert!(
            matches!(&got, Outcome::DeadLetter(r) if r.reason == RejectReason::TooLarge),
            "{} bytes over a {SMALL_LIMIT}-byte limit must be too_large, got {got:?}",
            input.len()
        );
    } else {
        assert_eq!(&got, kept, "a lower size limit changed the outcome");
        if let Outcome::Output { key, value } = &got {
            check_recleans(&cleaner, key, value);
        }
    }
}

/// The file mode (under [`SMALL_LIMIT`], reading 7 bytes at a time so that lines straddle
/// reads) writes, per input line, the processor's output or a dead letter with that line.
fn check_file_mode(input: &[u8]) {
    let cleaner = Cleaner::new(SMALL_LIMIT, PiiPolicy::Keep);
    let mut processor = Processor::new(cleaner.clone(), Insights::new(16));
    let (mut output, mut dead) = (Vec::new(), Vec::new());
    let (stats, _) = process_lines(
        &mut processor,
        &mut BufReader::with_capacity(7, input),
        &mut output,
        &mut dead,
    )
    .expect("in-memory I/O does not fail");

    // A final newline ends the last line rather than starting an empty one.
    let body = input.strip_suffix(b"\n").unwrap_or(input);
    let lines: Vec<&[u8]> = if input.is_empty() {
        Vec::new()
    } else {
        body.split(|b| *b == b'\n').collect()
    };
    assert_eq!(stats.lines, lines.len() as u64, "line count");
    assert_eq!(stats.cleaned + stats.dead_lettered, stats.lines);

    let (mut want_output, mut want_dead) = (Vec::new(), Vec::new());
    for (i, line) in lines.iter().enumerate() {
        // A line over the limit is held only up to one byte past it.
        let kept = &line[..line.len().min(SMALL_LIMIT + 1)];
        match process(&cleaner, kept) {
            Outcome::Output { value, .. } => {
                want_output.extend_from_slice(&value);
                want_output.push(b'\n');
            }
            Outcome::DeadLetter(rejection) => {
                let record = FileRecord::new(&rejection, i as u64 + 1, kept, line.len() as u64);
                serde_json::to_writer(&mut want_dead, &record).expect("serializes");
                want_dead.push(b'\n');
                if kept.len() < line.len() {
                    assert_eq!(rejection.reason, RejectReason::TooLarge);
                }
            }
        }
    }
    assert!(
        output == want_output,
        "the file mode's output differs from the processor's, line by line:\n  file mode: {}\n  expected:  {}",
        String::from_utf8_lossy(&output),
        String::from_utf8_lossy(&want_output)
    );
    assert!(
        dead == want_dead,
        "the file mode's dead letters differ from the processor's, line by line:\n  file mode: {}\n  expected:  {}",
        String::from_utf8_lossy(&dead),
        String::from_utf8_lossy(&want_dead)
    );
    for (i, record) in dead
        .split(|b| *b == b'\n')
        .filter(|r| !r.is_empty())
        .enumerate()
    {
        let record = json_object(record, "dead-letter line");
        let n = record
            .get("line")
            .and_then(Value::as_u64)
            .expect("line number");
        let line = lines[usize::try_from(n - 1).expect("line number fits")];
        let original = original_bytes(&record);
        match record.get("original_length").map(Value::as_u64) {
            None => assert_eq!(original, line, "dead letter {i} lost its line's bytes"),
            Some(Some(length)) => {
                assert_eq!(length, line.len() as u64, "original_length");
                assert!(line.starts_with(&original), "a cut line keeps its start");
            }
            Some(None) => panic!("original_length is not a number"),
        }
    }
}

fn json_object(bytes: &[u8], what: &str) -> Map<String, Value> {
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(object)) => object,
        other => panic!(
            "the {what} is not a JSON object ({other:?}): {}",
            String::from_utf8_lossy(bytes)
        ),
    }
}

/// Standard base64 with padding, as the dead-letter records write it.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    for chunk in text.as_bytes().chunks(4) {
        let pad = chunk.iter().rev().take_while(|&&b| b == b'=').count();
        let mut n = 0u32;
        for &b in &chunk[..4 - pad] {
            let v = ALPHABET.iter().position(|&a| a == b)?;
            n = (n << 6) | v as u32;
        }
        n <<= 6 * pad;
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        assert_eq!(base64_decode("/wA=").as_deref(), Some(&[0xff, 0][..]));
        assert_eq!(base64_decode("YWJj").as_deref(), Some(&b"abc"[..]));
        assert_eq!(base64_decode("YQ==").as_deref(), Some(&b"a"[..]));
        assert_eq!(base64_decode("").as_deref(), Some(&b""[..]));
        assert_eq!(base64_decode("YQ="), None);
    }

    #[test]
    fn flags_are_cut_off_the_end() {
        assert_eq!(
            without_flags(br#"{"user_id":"u\",\"flags\":[","flags":["invalid_ip"]}"#),
            br#"{"user_id":"u\",\"flags\":["}"#
        );
        assert_eq!(without_flags(br#"{"a":1}"#), br#"{"a":1}"#);
    }

    #[test]
    fn the_rules_hold_for_typical_records() {
        for record in [
            &br#"{"user_id":"u","timestamp":1730326892}"#[..],
            br#"{"user_id":" u ","timestamp":"1730326892","ip":"bad","device_id":"ab"}"#,
            br#"{"user_id":"u","timestamp":1730326892,"ip":"2001:DB8::1","device_type":"IOS"}"#,
            b"{\"user_id\":\"u\",\"timestamp\":1730326892}\n{\n\xff\n\n[]",
            b"",
            b"  \n",
            b"\xff",
            b"[1]",
        ] {
            check_processing(record);
        }
    }
}
