//! Zero-copy parsing of one raw login event into its fields, whatever their JSON types.
//!
//! Parsing never decides whether an event is acceptable; it only reports what each known field
//! holds ([`Field`]), so the cleaning rules in [`crate::clean`] can decide with full information.
//! Unknown fields are skipped without being materialized. Strings borrow from the input unless
//! they contain escapes.
//!
//! Two paths give the same answer: [`flat`] reads the flat objects that make up nearly all of
//! the stream in one pass, and serde_json ([`RawEvent::parse_reference`]) reads everything else
//! and words the errors.

pub mod flat;

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// What one JSON field of an event holds.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Field<'a> {
    /// The key is not in the object.
    #[default]
    Absent,
    /// `null`.
    Null,
    Str(Cow<'a, str>),
    /// An integer that fits in `i64`.
    Int(i64),
    /// Any other number: a fraction, an exponent, or an integer beyond `i64`.
    OtherNumber,
    Bool(bool),
    /// An object or an array.
    Nested,
}

impl Field<'_> {
    /// The JSON type name, for rejection details.
    pub fn type_name(&self) -> &'static str {
        match self {
            Field::Absent => "absent",
            Field::Null => "null",
            Field::Str(_) => "string",
            Field::Int(_) | Field::OtherNumber => "number",
            Field::Bool(_) => "boolean",
            Field::Nested => "object or array",
        }
    }
}

/// The known fields of a `user-login` event, as found in the input.
#[derive(Debug, Default, PartialEq)]
pub struct RawEvent<'a> {
    pub user_id: Field<'a>,
    pub app_version: Field<'a>,
    pub device_type: Field<'a>,
    pub ip: Field<'a>,
    pub locale: Field<'a>,
    pub device_id: Field<'a>,
    pub timestamp: Field<'a>,
}

/// Why a record could not be parsed into a [`RawEvent`].
#[derive(Debug, PartialEq)]
pub enum ParseError {
    /// Not JSON at all (syntax error, truncated input, trailing data, nesting too deep).
    Malformed(String),
    /// Valid JSON whose top level is not an object; carries the JSON type found.
    NotAnObject(&'static str),
    /// A known field appears more than once.
    DuplicateField(&'static str),
}

impl<'a> RawEvent<'a> {
    /// Parses one event from JSON text.
    pub fn parse(text: &'a str) -> Result<Self, ParseError> {
        match flat::parse(text) {
            Some(event) => Ok(event),
            None => Self::parse_reference(text),
        }
    }

    /// Parses one event with serde_json alone: the reference that [`flat::parse`] must agree
    /// with, and the path for everything it leaves (escapes, nesting, errors).
    pub fn parse_reference(text: &'a str) -> Result<Self, ParseError> {
        let first = text.bytes().find(|b| !b.is_ascii_whitespace());
        if first != Some(b'{') {
            // Tell "valid JSON of the wrong shape" from "not JSON" for a precise reason code.
            return Err(match serde_json::from_str::<IgnoredAny>(text) {
                Ok(_) => ParseError::NotAnObject(match first {
                    Some(b'[') => "array",
                    Some(b'"') => "string",
                    Some(b't' | b'f') => "boolean",
                    Some(b'n') => "null",
                    _ => "number",
                }),
                Err(e) => ParseError::Malformed(e.to_string()),
            });
        }
        let mut event = RawEvent::default();
        let mut de = serde_json::Deserializer::from_str(text);
        de::DeserializeSeed::deserialize(FillEvent(&mut event), &mut de)
            .and_then(|()| de.end())
            .map(|()| event)
            .map_err(|e| {
                // The top level is an object and every value type is accepted, so the only data
                // error left is the duplicate-field one raised by the visitor below.
                if e.is_data() {
                    ParseError::DuplicateField(duplicate_name(&e.to_string()))
                } else {
                    ParseError::Malformed(e.to_string())
                }
            })
    }

    /// Whether no known string field had an escape in the input. Such a string is borrowed as
    /// is from the JSON text (by either path), and JSON text holds no control character, `"`
    /// or `\` unescaped, so none of them needs escaping when written out again.
    pub fn strings_are_plain(&self) -> bool {
        [
            &self.user_id,
            &self.app_version,
            &self.device_type,
            &self.ip,
            &self.locale,
            &self.device_id,
        ]
        .iter()
        .all(|field| !matches!(field, Field::Str(Cow::Owned(_))))
    }

    /// The field of [`KNOWN_KEYS`]`[i]`.
    fn slot_at(&mut self, i: usize) -> &mut Field<'a> {
        match i {
            0 => &mut self.user_id,
            1 => &mut self.app_version,
            2 => &mut self.device_type,
            3 => &mut self.ip,
            4 => &mut self.locale,
            5 => &mut self.device_id,
            _ => &mut self.timestamp,
        }
    }
}

fn duplicate_name(message: &str) -> &'static str {
    KNOWN_KEYS
        .iter()
        .find(|k| message.contains(&format!("`{k}`")))
        .copied()
        .unwrap_or("unknown")
}

/// The fields of [`RawEvent`], in the order producers write them.
const KNOWN_KEYS: [&str; 7] = [
    "user_id",
    "app_version",
    "device_type",
    "ip",
    "locale",
    "device_id",
    "timestamp",
];

/// The index in [`KNOWN_KEYS`] of the field `key` names.
fn known_key(key: &str) -> Option<usize> {
    KNOWN_KEYS.iter().position(|k| *k == key)
}

/// Which known field a key names (or none of them).
enum Key {
    Known(usize),
    Other,
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(known_key(v).map_or(Key::Other, Key::Known))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

impl<'de> de::Deserialize<'de> for Field<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FieldVisitor)
    }
}

struct FieldVisitor;

impl<'de> Visitor<'de> for FieldVisitor {
    type Value = Field<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Owned(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Field::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(v).map_or(Field::OtherNumber, Field::Int))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Field::OtherNumber)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Field::Bool(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Field::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Field::Nested)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Field::Nested)
    }
}

/// Fills a [`RawEvent`] in place: the event is ~200 bytes, and returning it by value through
/// serde's layers copied it several times per record (~4% of the processing profile).
struct FillEvent<'e, 'de>(&'e mut RawEvent<'de>);

impl<'de> de::DeserializeSeed<'de> for FillEvent<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FillEvent<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a login event object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let ev = self.0;
        while let Some(key) = map.next_key::<Key>()? {
            let Key::Known(i) = key else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let slot = ev.slot_at(i);
            if !matches!(slot, Field::Absent) {
                return Err(de::Error::duplicate_field(KNOWN_KEYS[i]));
            }
            *slot = map.next_value()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_known_field_and_skips_others() {
        let ev = RawEvent::parse(
            r#"{"user_id":"u1","app_version":"2.3.0","device_type":"iOS","ip":"1.2.3.4",
                "locale":"RU","device_id":"d1","timestamp":1730326892,"extra":{"a":[1,2]}}"#,
        )
        .expect("valid");
        assert_eq!(ev.user_id, Field::Str("u1".into()));
        assert_eq!(ev.device_type, Field::Str("iOS".into()));
        assert_eq!(ev.timestamp, Field::Int(1_730_326_892));
    }

    #[test]
    fn borrows_plain_strings_and_owns_escaped_ones() {
        let ev = RawEvent::parse(r#"{"user_id":"plain","locale":"N\u0059"}"#).expect("valid");
        assert!(matches!(ev.user_id, Field::Str(Cow::Borrowed("plain"))));
        assert_eq!(ev.locale, Field::Str(Cow::Owned("NY".into())));
    }

    #[test]
    fn escaped_keys_are_recognised() {
        let ev = RawEvent::parse(r#"{"user\u005fid":"u"}"#).expect("valid");
        assert_eq!(ev.user_id, Field::Str("u".into()));
    }

    #[test]
    fn classifies_other_types() {
        let ev = RawEvent::parse(
            r#"{"user_id":null,"ip":1.5,"locale":true,"device_id":[1],"timestamp":18446744073709551615}"#,
        )
        .expect("valid");
        assert_eq!(ev.user_id, Field::Null);
        assert_eq!(ev.ip, Field::OtherNumber);
        assert_eq!(ev.locale, Field::Bool(true));
        assert_eq!(ev.device_id, Field::Nested);
        assert_eq!(ev.timestamp, Field::OtherNumber);
        assert_eq!(ev.app_version, Field::Absent);
    }

    #[test]
    fn rejects_non_objects_with_their_type() {
        assert_eq!(
            RawEvent::parse("[1]"),
            Err(ParseError::NotAnObject("array"))
        );
        assert_eq!(
            RawEvent::parse(" 42 "),
            Err(ParseError::NotAnObject("number"))
        );
        assert_eq!(
            RawEvent::parse("\"x\""),
            Err(ParseError::NotAnObject("string"))
        );
        assert_eq!(
            RawEvent::parse("null"),
            Err(ParseError::NotAnObject("null"))
        );
    }

    #[test]
    fn rejects_malformed_json() {
        for text in [
            "{",
            "{\"user_id\":}",
            "{} trailing",
            "nope",
            "",
            "{\"a\":1,}",
        ] {
            assert!(
                matches!(RawEvent::parse(text), Err(ParseError::Malformed(_))),
                "{text:?}"
            );
        }
    }

    #[test]
    fn rejects_duplicate_known_fields() {
        assert_eq!(
            RawEvent::parse(r#"{"user_id":"a","user_id":"b"}"#),
            Err(ParseError::DuplicateField("user_id"))
        );
    }

    #[test]
    fn deep_nesting_neither_overflows_the_stack_nor_fails_valid_json() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let text = format!(r#"{{"user_id":{deep},"x":{deep}}}"#);
        let ev = RawEvent::parse(&text).expect("valid JSON");
        assert_eq!(ev.user_id, Field::Nested);
        assert_eq!(
            RawEvent::parse(&deep),
            Err(ParseError::NotAnObject("array"))
        );
        let unclosed = "[".repeat(100_000);
        assert!(matches!(
            RawEvent::parse(&unclosed),
            Err(ParseError::Malformed(_))
        ));
    }
}
