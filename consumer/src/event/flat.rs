//! The fast path of [`RawEvent::parse`]: one pass over the flat objects that make up nearly
//! all of the stream.
//!
//! The rule: **it answers only when it is sure.** When [`parse`] returns `Some`, the event is
//! exactly what the serde_json path ([`RawEvent::parse_reference`]) gives for the same text.
//! Anything it does not fully read returns `None` and the caller takes the serde_json path,
//! which also words every error: an escape in a string, a nested value, a negative number, a
//! fraction or exponent, an integer of more than 18 digits, a duplicate known key, or anything
//! malformed. The fuzz rules check the agreement on arbitrary bytes
//! (`fetch_testing::fuzz`).
//!
//! Why it exists: parsing is the processing core's largest cost after the insights. Over the
//! generator's mix this path parses in about two thirds of serde_json's time
//! (`cargo bench -p fetch-consumer --bench processing`: `event_parse` against
//! `event_parse_reference`), and the whole core runs 7-10% faster.

use std::borrow::Cow;

use super::{Field, KNOWN_KEYS, RawEvent, known_key};
use crate::json_string;

/// The event in `text` if it is a flat JSON object this scan reads in full, else `None`.
pub fn parse(text: &str) -> Option<RawEvent<'_>> {
    let mut scan = Scan { text, at: 0 };
    let mut event = RawEvent::default();
    // Producers write the keys in one order; this is where the next known key would be in it.
    let mut guess = 0;
    scan.skip_whitespace();
    scan.expect(b'{')?;
    scan.skip_whitespace();
    if scan.peek() == Some(b'}') {
        scan.at += 1;
    } else {
        loop {
            let known = if scan.quoted_key(guess) {
                Some(guess)
            } else {
                known_key(scan.string()?)
            };
            scan.skip_whitespace();
            scan.expect(b':')?;
            scan.skip_whitespace();
            let value = scan.value()?;
            if let Some(i) = known {
                let slot = event.slot_at(i);
                if !matches!(slot, Field::Absent) {
                    return None;
                }
                *slot = value;
                guess = i + 1;
            }
            scan.skip_whitespace();
            match scan.next()? {
                b',' => scan.skip_whitespace(),
                b'}' => break,
                _ => return None,
            }
        }
    }
    scan.skip_whitespace();
    (scan.at == text.len()).then_some(event)
}

/// A position in the text. Every method returns `None` on what it does not read in full.
struct Scan<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Scan<'a> {
    fn rest(&self) -> &'a [u8] {
        self.text.as_bytes().get(self.at..).unwrap_or_default()
    }

    fn peek(&self) -> Option<u8> {
        self.rest().first().copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn expect(&mut self, wanted: u8) -> Option<()> {
        (self.next()? == wanted).then_some(())
    }

    /// JSON's four whitespace bytes, and no others.
    fn skip_whitespace(&mut self) {
        let n = self
            .rest()
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            .count();
        self.at += n;
    }

    /// A string without escapes or control characters, borrowed from the text.
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.at;
        let len = json_string::plain_len(self.rest());
        if self.rest().get(len) != Some(&b'"') {
            return None;
        }
        self.at = start + len + 1;
        // Both ends are ASCII quotes, so the slice is on character boundaries.
        self.text.get(start..start + len)
    }

    /// Whether the text here is known key number `i`, quoted (and if so, steps over it).
    /// One masked compare of 16 bytes, where reading the key as a string and looking it up
    /// compared it with the known keys one by one.
    fn quoted_key(&mut self, i: usize) -> bool {
        let (Some(key), Some(here)) = (QUOTED_KEYS.get(i), self.rest().first_chunk::<16>()) else {
            return false;
        };
        let found = u128::from_le_bytes(*here) & key.mask == key.bytes;
        if found {
            self.at += key.len;
        }
        found
    }

    fn value(&mut self) -> Option<Field<'a>> {
        match self.peek()? {
            b'"' => Some(Field::Str(Cow::Borrowed(self.string()?))),
            b'0'..=b'9' => self.integer(),
            b't' => self.literal("true", Field::Bool(true)),
            b'f' => self.literal("false", Field::Bool(false)),
            b'n' => self.literal("null", Field::Null),
            _ => None,
        }
    }

    /// A non-negative integer of at most 18 digits, which always fits in `i64`, without a
    /// leading zero (JSON has none). What follows it is the caller's to check: a `.` or an
    /// `e` there is not a `,` or a `}`, so a fraction falls back.
    fn integer(&mut self) -> Option<Field<'a>> {
        let digits = self
            .rest()
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits > 18 || (digits > 1 && self.peek() == Some(b'0')) {
            return None;
        }
        let n = self.rest()[..digits]
            .iter()
            .fold(0_i64, |n, d| n * 10 + i64::from(d - b'0'));
        self.at += digits;
        Some(Field::Int(n))
    }

    fn literal(&mut self, word: &str, field: Field<'a>) -> Option<Field<'a>> {
        self.rest().starts_with(word.as_bytes()).then(|| {
            self.at += word.len();
            field
        })
    }
}

/// A known key with its quotes, as the first bytes of a little-endian `u128`.
#[derive(Clone, Copy)]
struct QuotedKey {
    bytes: u128,
    /// Ones over the quoted key's bytes.
    mask: u128,
    len: usize,
}

const QUOTED_KEYS: [QuotedKey; KNOWN_KEYS.len()] = {
    let mut out = [QuotedKey {
        bytes: 0,
        mask: 0,
        len: 0,
    }; KNOWN_KEYS.len()];
    let mut i = 0;
    while i < KNOWN_KEYS.len() {
        let key = KNOWN_KEYS[i].as_bytes();
        let len = key.len() + 2;
        assert!(
            len < 16,
            "a quoted known key fits in a u128 with room for its mask"
        );
        let mut bytes = b'"' as u128 | (b'"' as u128) << (8 * (len - 1));
        let mut at = 0;
        while at < key.len() {
            bytes |= (key[at] as u128) << (8 * (at + 1));
            at += 1;
        }
        out[i] = QuotedKey {
            bytes,
            mask: (1 << (8 * len)) - 1,
            len,
        };
        i += 1;
    }
    out
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::{Generator, GeneratorConfig};

    /// Texts the fast path reads: it must agree with the serde_json path on each.
    const READ: &[&str] = &[
        r#"{"user_id":"u1","app_version":"2.3.0","device_type":"android","ip":"10.0.0.1","locale":"RU","device_id":"d1","timestamp":"1694479551"}"#,
        r#" { "user_id" : "u1" ,	"timestamp" : 1694479551 , "other" : null }
"#,
        r#"{}"#,
        r#"{"user_id":"","ip":"","locale":true,"device_id":false,"timestamp":0}"#,
        r#"{"timestamp":999999999999999999,"app_version":"é ü 中"}"#,
        r#"{"extra":"x","extra":"y","user_id":"u"}"#,
        r#"{"timestamp":1,"device_id":"d","locale":"l","ip":"i","device_type":"t","app_version":"a","user_id":"u"}"#,
        r#"{"user_idx":"a","user_id":"b","app_versio":"c","device_typ":1,"ipp":"d","ip":"e"}"#,
        r#"{"user_id":"u","ip":"1.2.3.4","app_version":"x","locale":"l","timestamp":1}"#,
    ];

    /// Texts it must leave to the serde_json path, well-formed or not.
    const LEFT: &[&str] = &[
        r#"{"user_id":"a\"b"}"#,
        r#"{"user\u005fid":"u"}"#,
        r#"{"timestamp":-5}"#,
        r#"{"timestamp":-0}"#,
        r#"{"timestamp":1.5}"#,
        r#"{"timestamp":1e3}"#,
        r#"{"timestamp":1000000000000000000}"#,
        r#"{"timestamp":01}"#,
        r#"{"user_id":["u"]}"#,
        r#"{"extra":{"a":1},"user_id":"u"}"#,
        r#"{"user_id":"a","user_id":"b"}"#,
        r#"{"user_id":"a","app_version":"b","user_id":"c"}"#,
        r#"{"user_id":"a","app_version":"b","app_version":"c"}"#,
        r#"{"user_id":"u",}"#,
        r#"{"user_id":"u"} x"#,
        r#"{"user_id":"u""#,
        r#"{"user_id" "u"}"#,
        r#"{"locale":truex}"#,
        r#"{"locale":tru}"#,
        "{\"user_id\":\"a\tb\"}",
        "\u{a0}{}",
        "[1]",
        "",
    ];

    #[test]
    fn what_it_reads_is_what_serde_json_reads() {
        for text in READ {
            let fast = parse(text).unwrap_or_else(|| panic!("not read: {text}"));
            assert_eq!(Ok(fast), RawEvent::parse_reference(text), "{text}");
        }
    }

    #[test]
    fn escapes_nesting_signs_fractions_long_integers_duplicates_and_errors_fall_back() {
        for text in LEFT {
            assert_eq!(parse(text), None, "{text}");
        }
    }

    #[test]
    fn strings_are_borrowed() {
        let event = parse(r#"{"user_id":"u1"}"#).expect("read");
        assert!(matches!(event.user_id, Field::Str(Cow::Borrowed("u1"))));
    }

    #[test]
    fn every_line_of_the_fixture_agrees_with_serde_json() {
        let fixture = include_bytes!("../../tests/fixtures/events.jsonl");
        let mut read = 0;
        for line in fixture.split(|b| *b == b'\n') {
            let Ok(line) = std::str::from_utf8(line) else {
                continue;
            };
            if let Some(fast) = parse(line) {
                assert_eq!(Ok(fast), RawEvent::parse_reference(line), "{line}");
                read += 1;
            }
        }
        assert!(read > 0, "the fixture has flat events");
    }

    /// The generator's mix (string timestamps, odd spellings, missing fields, malformed
    /// records): the fast path agrees on every record and reads nearly all the valid ones.
    #[test]
    fn generated_records_agree_with_serde_json_and_most_take_the_fast_path() {
        let mut generator = Generator::new(GeneratorConfig {
            seed: 7,
            variety: true,
            malformed: 0.05,
            ..GeneratorConfig::default()
        });
        let (mut key, mut value) = (Vec::new(), Vec::new());
        let (mut read, total) = (0, 10_000);
        for _ in 0..total {
            generator.next_record(1_730_326_892, &mut key, &mut value);
            let Ok(text) = std::str::from_utf8(&value) else {
                continue;
            };
            if let Some(fast) = parse(text) {
                assert_eq!(Ok(fast), RawEvent::parse_reference(text), "{text}");
                read += 1;
            }
        }
        assert!(
            read * 100 >= total * 90,
            "only {read} of {total} took the fast path"
        );
    }
}
