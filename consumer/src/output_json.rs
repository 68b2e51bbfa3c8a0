//! The output record: a [`CleanEvent`] as compact JSON, written by hand for its fixed shape.
//!
//! Byte for byte what `serde_json::to_writer` makes of the derived `Serialize` (a property test
//! holds the two together), but about twice as fast: serialization was the largest cost in the
//! processing profile after the insights, mostly serde_json checking every byte of every string
//! for escapes one at a time. Here a string is copied whole when, as nearly always, nothing in
//! it needs escaping: unchecked when the event's strings are known to need none
//! ([`KnownPlain`]), else after a check eight bytes at a time ([`json_string`]).

use crate::clean::KnownPlain;

use crate::clean::CleanEvent;
use crate::json_string;

/// Appends `event` as one JSON object to `out` (no newline).
pub fn write_event(out: &mut Vec<u8>, event: &CleanEvent<'_>) {
    let plain = event.known_plain;
    out.extend_from_slice(b"{\"user_id\":");
    write_str(out, &event.user_id, plain);
    out.extend_from_slice(b",\"app_version\":");
    write_str(out, &event.app_version, plain);
    out.extend_from_slice(b",\"device_type\":");
    write_str(out, &event.device_type, plain);
    out.extend_from_slice(b",\"ip\":");
    write_opt_str(out, event.ip.as_deref(), plain);
    out.extend_from_slice(b",\"locale\":");
    write_str(out, &event.locale, plain);
    out.extend_from_slice(b",\"device_id\":");
    write_opt_str(out, event.device_id.as_deref(), plain);
    out.extend_from_slice(b",\"timestamp\":");
    out.extend_from_slice(itoa_i64(event.timestamp, &mut [0; 20]));
    out.extend_from_slice(b",\"login_time\":\"");
    // RFC 3339 digits and separators: nothing to escape.
    out.extend_from_slice(&event.login_time.0);
    out.push(b'"');
    if !event.flags.is_empty() {
        out.extend_from_slice(b",\"flags\":[");
        for (i, flag) in event.flags.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(flag.code().as_bytes());
            out.push(b'"');
        }
        out.push(b']');
    }
    out.push(b'}');
}

fn write_opt_str(out: &mut Vec<u8>, s: Option<&str>, plain: KnownPlain) {
    match s {
        Some(s) => write_str(out, s, plain),
        None => out.extend_from_slice(b"null"),
    }
}

/// A JSON string literal: copied as is when nothing needs escaping, else serde_json escapes it.
fn write_str(out: &mut Vec<u8>, s: &str, KnownPlain(plain): KnownPlain) {
    debug_assert!(!plain || !needs_escape(s.as_bytes()), "{s:?} is not plain");
    if !plain && needs_escape(s.as_bytes()) {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    } else {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

/// Whether any byte of `bytes` is one JSON requires escaped.
fn needs_escape(bytes: &[u8]) -> bool {
    json_string::plain_len(bytes) < bytes.len()
}

/// Decimal digits of `n`, written into the end of `buf`.
fn itoa_i64(n: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        buf[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        at -= 1;
        buf[at] = b'-';
    }
    &buf[at..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clean::Cleaner;
    use crate::pii::{PiiMode, PiiPolicy};

    fn both(line: &str, cleaner: &Cleaner) -> (String, String) {
        let event = cleaner.clean(line.as_bytes()).expect("valid event");
        let mut ours = Vec::new();
        write_event(&mut ours, &event);
        let reference = serde_json::to_string(&event).expect("serialize");
        (String::from_utf8(ours).expect("utf-8"), reference)
    }

    /// Under every PII policy, since each rewrites strings the writer may copy unchecked.
    #[test]
    fn matches_serde_json() {
        for mode in [PiiMode::Keep, PiiMode::Mask, PiiMode::Hash] {
            let policy = PiiPolicy::new(mode, Some(b"key")).expect("policy");
            let cleaner = Cleaner::new(crate::clean::DEFAULT_MAX_EVENT_BYTES, policy);
            for line in [
                r#"{"user_id":"u1","timestamp":1730326892}"#,
                r#"{"user_id":" u2 ","app_version":"2.3.0 ","device_type":"iOS","ip":" 2001:DB8::1","locale":"ny","device_id":"é ✓ 日本","timestamp":"1730326892"}"#,
                r#"{"user_id":"a\"b\\c\u0001d","app_version":"2.3.0","device_type":"iOS","ip":"10.0.0.1","locale":"ny","device_id":"é ✓ 日本","timestamp":"1730326892"}"#,
                r#"{"user_id":"0123456789abcdef\n","ip":"bad","app_version":7,"timestamp":1730326892}"#,
            ] {
                let (ours, reference) = both(line, &cleaner);
                assert_eq!(ours, reference, "{mode:?}");
            }
        }
    }

    #[test]
    fn integers() {
        for n in [0, 7, -7, 10, 1_730_326_892, i64::MAX, i64::MIN] {
            assert_eq!(itoa_i64(n, &mut [0; 20]), n.to_string().as_bytes());
        }
    }
}
