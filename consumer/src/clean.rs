//! The processing rules: one raw record in, one cleaned event or one rejection out.
//!
//! Pure code, no I/O: the Kafka loop, the file mode and the benchmarks all call
//! [`Cleaner::clean`]. The rules are documented for users in the README ("Processing rules");
//! keep the two in step.

use std::borrow::Cow;
use std::net::IpAddr;

use serde::Serialize;
use serde::ser::{SerializeSeq, Serializer};

use crate::event::{Field, ParseError, RawEvent};
use crate::ip_text;
use crate::pii::PiiPolicy;
use crate::reason::RejectReason;
use crate::time;

/// The value written for a missing `app_version`, `device_type` or `locale`.
pub const UNKNOWN: &str = "unknown";

/// Default upper bound on the size of one record, in bytes.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 64 * 1024;

/// A cleaned login event, ready to be serialized to the output topic.
#[derive(Debug, Serialize, PartialEq)]
pub struct CleanEvent<'a> {
    pub user_id: Cow<'a, str>,
    pub app_version: Cow<'a, str>,
    /// `android`, `ios`, `unknown`, or another value lower-cased.
    pub device_type: Cow<'a, str>,
    /// Canonical text form, or `null` when absent or invalid (see `flags`).
    pub ip: Option<Cow<'a, str>>,
    /// Upper-cased, e.g. a US state code.
    pub locale: Cow<'a, str>,
    pub device_id: Option<Cow<'a, str>>,
    /// Seconds since the Unix epoch.
    pub timestamp: i64,
    /// The same instant as RFC 3339 UTC, e.g. `2024-10-30T22:21:32Z`.
    pub login_time: LoginTime,
    /// What cleaning had to discard, e.g. `["invalid_ip"]`; omitted when empty.
    #[serde(skip_serializing_if = "Flags::is_empty")]
    pub flags: Flags,
    /// Whether the strings above are known to need no JSON escaping.
    #[serde(skip)]
    pub known_plain: KnownPlain,
}

/// Whether an event's strings are known to hold nothing JSON escapes (a control character,
/// `"` or `\`), so that the output writer copies them without scanning them again. It is
/// known when no string in the input had an escape ([`RawEvent::strings_are_plain`]): every
/// cleaning step keeps such a string so (trimming takes a part of it, case changes are ASCII,
/// the PII policy keeps a prefix or writes hex digits or an address). A fact about how the
/// event was made, not part of its value: events with the same fields compare equal whatever
/// it says.
#[derive(Debug, Clone, Copy, Default)]
pub struct KnownPlain(pub bool);

impl PartialEq for KnownPlain {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// An RFC 3339 UTC timestamp kept as its 20 ASCII bytes (no allocation per event).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoginTime(pub [u8; 20]);

impl LoginTime {
    pub fn as_str(&self) -> &str {
        // The bytes come from `time::rfc3339`, which writes ASCII digits and separators only.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl Serialize for LoginTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A field that was present but unusable and therefore dropped or replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    InvalidIp,
    InvalidAppVersion,
    InvalidDeviceType,
    InvalidLocale,
    InvalidDeviceId,
}

impl Flag {
    const ALL: [Flag; 5] = [
        Flag::InvalidIp,
        Flag::InvalidAppVersion,
        Flag::InvalidDeviceType,
        Flag::InvalidLocale,
        Flag::InvalidDeviceId,
    ];

    pub const fn code(self) -> &'static str {
        match self {
            Flag::InvalidIp => "invalid_ip",
            Flag::InvalidAppVersion => "invalid_app_version",
            Flag::InvalidDeviceType => "invalid_device_type",
            Flag::InvalidLocale => "invalid_locale",
            Flag::InvalidDeviceId => "invalid_device_id",
        }
    }
}

/// A small set of [`Flag`]s (a bit set, so no allocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags(u8);

impl Flags {
    pub fn insert(&mut self, flag: Flag) {
        self.0 |= 1 << flag as u8;
    }
    pub fn contains(self, flag: Flag) -> bool {
        self.0 & (1 << flag as u8) != 0
    }
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }
    pub fn iter(self) -> impl Iterator<Item = Flag> {
        Flag::ALL.into_iter().filter(move |f| self.contains(*f))
    }
}

impl Serialize for Flags {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        for flag in self.iter() {
            seq.serialize_element(flag.code())?;
        }
        seq.end()
    }
}

/// Why a record was rejected: the stable reason code and a human-readable detail.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub reason: RejectReason,
    pub detail: String,
}

impl Rejection {
    fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            detail: detail.into(),
        }
    }
}

/// Applies the processing rules. Cheap to clone; holds only configuration.
#[derive(Debug, Clone)]
pub struct Cleaner {
    max_event_bytes: usize,
    pii: PiiPolicy,
}

impl Default for Cleaner {
    fn default() -> Self {
        Cleaner::new(DEFAULT_MAX_EVENT_BYTES, PiiPolicy::Keep)
    }
}

impl Cleaner {
    pub fn new(max_event_bytes: usize, pii: PiiPolicy) -> Self {
        Cleaner {
            max_event_bytes,
            pii,
        }
    }

    pub fn max_event_bytes(&self) -> usize {
        self.max_event_bytes
    }

    /// Cleans one record (the raw bytes of a Kafka message value or of one input line).
    pub fn clean<'a>(&self, bytes: &'a [u8]) -> Result<CleanEvent<'a>, Rejection> {
        if bytes.len() > self.max_event_bytes {
            return Err(Rejection::new(
                RejectReason::TooLarge,
                format!(
                    "{} bytes exceeds the limit of {} (--max-event-bytes)",
                    bytes.len(),
                    self.max_event_bytes
                ),
            ));
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(Rejection::new(RejectReason::Empty, "no content"));
        }
        let text = std::str::from_utf8(bytes).map_err(|e| {
            Rejection::new(RejectReason::InvalidUtf8, format!("invalid UTF-8: {e}"))
        })?;
        let raw = RawEvent::parse(text).map_err(|e| match e {
            ParseError::Malformed(msg) => Rejection::new(RejectReason::MalformedJson, msg),
            ParseError::NotAnObject(kind) => Rejection::new(
                RejectReason::NotAnObject,
                format!("expected a JSON object, found {kind}"),
            ),
            ParseError::DuplicateField(name) => Rejection::new(
                RejectReason::DuplicateField,
                format!("field `{name}` appears more than once"),
            ),
        })?;
        self.clean_fields(raw)
    }

    fn clean_fields<'a>(&self, raw: RawEvent<'a>) -> Result<CleanEvent<'a>, Rejection> {
        let known_plain = KnownPlain(raw.strings_are_plain());
        let user_id = user_id(raw.user_id)?;
        let timestamp = timestamp(&raw.timestamp)?;
        let mut flags = Flags::default();

        let app_version = descriptive(raw.app_version, Flag::InvalidAppVersion, &mut flags)
            .map_or(Cow::Borrowed(UNKNOWN), trim_cow);
        let device_type = descriptive(raw.device_type, Flag::InvalidDeviceType, &mut flags)
            .map_or(Cow::Borrowed(UNKNOWN), canonical_device_type);
        let locale = descriptive(raw.locale, Flag::InvalidLocale, &mut flags)
            .map_or(Cow::Borrowed(UNKNOWN), upper_trimmed);
        let device_id = descriptive(raw.device_id, Flag::InvalidDeviceId, &mut flags)
            .map(|id| self.pii.device_id(trim_cow(id)));
        let ip = match raw.ip {
            Field::Absent | Field::Null => None,
            Field::Str(s) => match ip_text::parse(trim(&s)) {
                Some(parsed) => Some(self.pii.ip(canonical_ip(s, parsed), parsed)),
                None => {
                    flags.insert(Flag::InvalidIp);
                    None
                }
            },
            _ => {
                flags.insert(Flag::InvalidIp);
                None
            }
        };

        Ok(CleanEvent {
            user_id,
            app_version,
            device_type,
            ip,
            locale,
            device_id,
            timestamp,
            login_time: LoginTime(time::rfc3339(timestamp)),
            flags,
            known_plain,
        })
    }
}

fn user_id(field: Field<'_>) -> Result<Cow<'_, str>, Rejection> {
    match field {
        Field::Absent | Field::Null => Err(Rejection::new(
            RejectReason::MissingUserId,
            "user_id is missing",
        )),
        Field::Str(s) if trim(&s).is_empty() => Err(Rejection::new(
            RejectReason::MissingUserId,
            "user_id is empty",
        )),
        Field::Str(s) => Ok(trim_cow(s)),
        other => Err(Rejection::new(
            RejectReason::InvalidUserId,
            format!("user_id must be a string, found {}", other.type_name()),
        )),
    }
}

fn timestamp(field: &Field<'_>) -> Result<i64, Rejection> {
    let secs = match field {
        Field::Absent | Field::Null => {
            return Err(Rejection::new(
                RejectReason::MissingTimestamp,
                "timestamp is missing",
            ));
        }
        Field::Int(n) => Some(*n),
        Field::Str(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
        Field::Str(s) => {
            return Err(Rejection::new(
                RejectReason::InvalidTimestamp,
                format!("timestamp {s:?} is not a string of digits"),
            ));
        }
        other => {
            return Err(Rejection::new(
                RejectReason::InvalidTimestamp,
                format!(
                    "timestamp must be integer epoch seconds, found {}",
                    other.type_name()
                ),
            ));
        }
    };
    match secs {
        Some(secs) if time::in_range(secs) => Ok(secs),
        _ => Err(Rejection::new(
            RejectReason::InvalidTimestamp,
            format!(
                "timestamp is outside the accepted range [{}, {}) epoch seconds (2000-01-01 to 2100-01-01 UTC); milliseconds are not accepted",
                time::MIN_EPOCH_SECONDS,
                time::MAX_EPOCH_SECONDS
            ),
        )),
    }
}

/// A descriptive string field: `Some` when it holds a non-blank string, `None` when absent,
/// null or blank; any other JSON type also gives `None` and raises `flag`.
fn descriptive<'a>(field: Field<'a>, flag: Flag, flags: &mut Flags) -> Option<Cow<'a, str>> {
    match field {
        Field::Str(s) if !trim(&s).is_empty() => Some(s),
        Field::Absent | Field::Null | Field::Str(_) => None,
        _ => {
            flags.insert(flag);
            None
        }
    }
}

fn trim_cow(s: Cow<'_, str>) -> Cow<'_, str> {
    match s {
        Cow::Borrowed(b) => Cow::Borrowed(trim(b)),
        Cow::Owned(o) if trim(&o).len() == o.len() => Cow::Owned(o),
        Cow::Owned(o) => Cow::Owned(trim(&o).to_owned()),
    }
}

/// `str::trim`, with a shortcut for the usual case of a value that starts and ends with a
/// visible ASCII character (Unicode whitespace is never ASCII beyond these six bytes).
fn trim(s: &str) -> &str {
    let visible =
        |b: Option<&u8>| b.is_some_and(|&b| b.is_ascii() && !matches!(b, b'\t'..=b'\r' | b' '));
    let bytes = s.as_bytes();
    if visible(bytes.first()) && visible(bytes.last()) {
        s
    } else {
        s.trim()
    }
}

fn canonical_device_type(s: Cow<'_, str>) -> Cow<'_, str> {
    let t = trim(&s);
    if t.eq_ignore_ascii_case("android") {
        Cow::Borrowed("android")
    } else if t.eq_ignore_ascii_case("ios") {
        Cow::Borrowed("ios")
    } else if t.bytes().any(|b| b.is_ascii_uppercase()) || t.len() != s.len() {
        Cow::Owned(t.to_ascii_lowercase())
    } else {
        s
    }
}

fn upper_trimmed(s: Cow<'_, str>) -> Cow<'_, str> {
    let t = trim(&s);
    // The sentinel keeps its spelling, so cleaning a cleaned event changes nothing.
    if t.eq_ignore_ascii_case(UNKNOWN) {
        Cow::Borrowed(UNKNOWN)
    } else if t.bytes().any(|b| b.is_ascii_lowercase()) || t.len() != s.len() {
        Cow::Owned(t.to_ascii_uppercase())
    } else {
        s
    }
}

/// IPv4 text that parsed is already canonical; IPv6 may be written many ways, so normalize it.
fn canonical_ip(text: Cow<'_, str>, parsed: IpAddr) -> Cow<'_, str> {
    match (parsed, text) {
        (IpAddr::V4(_), Cow::Borrowed(b)) => Cow::Borrowed(trim(b)),
        (parsed, _) => Cow::Owned(parsed.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pii::PiiMode;

    const GOOD: &str = r#"{"user_id": "424cdd21-063a-43a7-b91b-7ca1a833afae", "app_version": "2.3.0", "device_type": "android", "ip": "199.172.111.135", "locale": "RU", "device_id": "593-47-5928", "timestamp": "1694479551"}"#;

    fn clean(s: &str) -> Result<CleanEvent<'_>, Rejection> {
        Cleaner::default().clean(s.as_bytes())
    }

    fn reason(s: &str) -> RejectReason {
        clean(s).expect_err("should be rejected").reason
    }

    #[test]
    fn trim_shortcut_agrees_with_str_trim() {
        for c in (0..0x3100).filter_map(char::from_u32) {
            for s in [
                format!("{c}a"),
                format!("a{c}"),
                format!("{c}"),
                format!("{c}a{c}"),
            ] {
                assert_eq!(trim(&s), s.trim(), "{:?}", c);
            }
        }
        assert_eq!(trim(""), "");
    }

    #[test]
    fn cleans_the_take_home_example() {
        let ev = clean(GOOD).expect("valid");
        assert_eq!(ev.user_id, "424cdd21-063a-43a7-b91b-7ca1a833afae");
        assert_eq!(ev.timestamp, 1_694_479_551);
        assert_eq!(ev.login_time.as_str(), "2023-09-12T00:45:51Z");
        assert_eq!(ev.device_type, "android");
        assert!(ev.flags.is_empty());
        let json = serde_json::to_string(&ev).expect("serialize");
        assert_eq!(
            json,
            r#"{"user_id":"424cdd21-063a-43a7-b91b-7ca1a833afae","app_version":"2.3.0","device_type":"android","ip":"199.172.111.135","locale":"RU","device_id":"593-47-5928","timestamp":1694479551,"login_time":"2023-09-12T00:45:51Z"}"#
        );
    }

    #[test]
    fn missing_descriptive_fields_become_unknown() {
        let ev = clean(r#"{"user_id":"u","timestamp":1730326892}"#).expect("valid");
        assert_eq!(ev.app_version, UNKNOWN);
        assert_eq!(ev.device_type, UNKNOWN);
        assert_eq!(ev.locale, UNKNOWN);
        assert_eq!(ev.ip, None);
        assert_eq!(ev.device_id, None);
        let ev =
            clean(r#"{"user_id":"u","timestamp":1730326892,"device_type":"  ","locale":null}"#)
                .expect("valid");
        assert_eq!(ev.device_type, UNKNOWN);
        assert_eq!(ev.locale, UNKNOWN);
    }

    #[test]
    fn device_type_has_one_spelling() {
        for (input, want) in [
            ("iOS", "ios"),
            ("IOS", "ios"),
            (" ios ", "ios"),
            ("Android", "android"),
            ("ANDROID", "android"),
            ("Web", "web"),
        ] {
            let text =
                format!(r#"{{"user_id":"u","timestamp":1730326892,"device_type":"{input}"}}"#);
            assert_eq!(clean(&text).expect("valid").device_type, want, "{input}");
        }
    }

    #[test]
    fn locale_is_upper_cased_and_trimmed() {
        let ev = clean(r#"{"user_id":"u","timestamp":1730326892,"locale":" ny"}"#).expect("valid");
        assert_eq!(ev.locale, "NY");
    }

    #[test]
    fn invalid_ip_is_dropped_and_flagged() {
        for ip in [r#""999.1.1.1""#, r#""not-an-ip""#, "12", r#""01.2.3.4""#] {
            let text = format!(r#"{{"user_id":"u","timestamp":1730326892,"ip":{ip}}}"#);
            let ev = clean(&text).expect("valid");
            assert_eq!(ev.ip, None, "{ip}");
            assert!(ev.flags.contains(Flag::InvalidIp), "{ip}");
            let json = serde_json::to_string(&ev).expect("serialize");
            assert!(json.contains(r#""flags":["invalid_ip"]"#), "{json}");
        }
    }

    #[test]
    fn ipv6_is_canonicalized() {
        let ev = clean(r#"{"user_id":"u","timestamp":1730326892,"ip":"2001:DB8:0:0:0:0:0:1"}"#)
            .expect("valid");
        assert_eq!(ev.ip.as_deref(), Some("2001:db8::1"));
    }

    #[test]
    fn wrong_types_in_descriptive_fields_are_flagged() {
        let ev = clean(r#"{"user_id":"u","timestamp":1730326892,"app_version":2.3,"device_id":7}"#)
            .expect("valid");
        assert_eq!(ev.app_version, UNKNOWN);
        assert!(ev.flags.contains(Flag::InvalidAppVersion));
        assert!(ev.flags.contains(Flag::InvalidDeviceId));
    }

    #[test]
    fn timestamps_as_integers_or_digit_strings() {
        assert_eq!(
            clean(r#"{"user_id":"u","timestamp":"1730326892"}"#)
                .expect("ok")
                .timestamp,
            1_730_326_892
        );
        assert_eq!(reason(r#"{"user_id":"u"}"#), RejectReason::MissingTimestamp);
        assert_eq!(
            reason(r#"{"user_id":"u","timestamp":null}"#),
            RejectReason::MissingTimestamp
        );
        for bad in [
            r#""""#,
            r#""-5""#,
            r#""17e8""#,
            r#"" 1730326892""#,
            "1730326892.5",
            "1730326892000",
            "-1730326892",
            "5",
            r#""99999999999999999999999""#,
            "true",
            "{}",
        ] {
            let text = format!(r#"{{"user_id":"u","timestamp":{bad}}}"#);
            assert_eq!(reason(&text), RejectReason::InvalidTimestamp, "{bad}");
        }
    }

    #[test]
    fn user_id_rules() {
        assert_eq!(
            reason(r#"{"timestamp":1730326892}"#),
            RejectReason::MissingUserId
        );
        assert_eq!(
            reason(r#"{"user_id":null,"timestamp":1730326892}"#),
            RejectReason::MissingUserId
        );
        assert_eq!(
            reason(r#"{"user_id":"  ","timestamp":1730326892}"#),
            RejectReason::MissingUserId
        );
        assert_eq!(
            reason(r#"{"user_id":42,"timestamp":1730326892}"#),
            RejectReason::InvalidUserId
        );
        assert_eq!(
            clean(r#"{"user_id":"a\u0041","timestamp":1730326892}"#)
                .expect("ok")
                .user_id,
            "aA"
        );
        assert_eq!(
            clean(r#"{"user_id":" u1 ","timestamp":1730326892}"#)
                .expect("ok")
                .user_id,
            "u1"
        );
    }

    #[test]
    fn envelope_reasons() {
        assert_eq!(reason(""), RejectReason::Empty);
        assert_eq!(reason(" \r\n"), RejectReason::Empty);
        assert_eq!(reason("{\"user_id\""), RejectReason::MalformedJson);
        assert_eq!(reason("[]"), RejectReason::NotAnObject);
        assert_eq!(
            reason(r#"{"timestamp":1,"timestamp":2}"#),
            RejectReason::DuplicateField
        );
        let bad_utf8 = Cleaner::default()
            .clean(b"{\"user_id\":\"\xff\"}")
            .expect_err("utf8");
        assert_eq!(bad_utf8.reason, RejectReason::InvalidUtf8);
        let big = format!(
            r#"{{"user_id":"{}","timestamp":1730326892}}"#,
            "x".repeat(1 << 20)
        );
        assert_eq!(reason(&big), RejectReason::TooLarge);
    }

    #[test]
    fn pii_policy_applies_to_ip_and_device_id() {
        let cleaner = Cleaner::new(
            DEFAULT_MAX_EVENT_BYTES,
            PiiPolicy::new(PiiMode::Mask, None).expect("mask"),
        );
        let ev = cleaner.clean(GOOD.as_bytes()).expect("valid");
        assert_eq!(ev.ip.as_deref(), Some("199.172.111.0"));
        assert_eq!(ev.device_id.as_deref(), Some("593-****"));
    }
}
