//! The published form of one replica's insights: a versioned JSON envelope, gzip-compressed,
//! small enough for the broker's default record limit.
//!
//! Rules:
//! - A snapshot is keyed by pipeline (the consumer group), replica and kind, so compaction
//!   keeps the latest of each and no replica ever overwrites another's.
//! - The envelope names its format and a `major.minor` version. A reader accepts every minor
//!   version of its major (unknown fields are ignored) and refuses a newer major with a
//!   message that says to upgrade.
//! - An encoded snapshot never exceeds [`MAX_ENCODED_BYTES`]: when the full state would, the
//!   top-k lists are cut to their highest counters until it fits. Cutting keeps the
//!   sketches' guarantees (the error bounds grow), so a merged report stays correct.
//! - Decoding never trusts the input: the decompressed size is capped, and anything that is
//!   not a snapshot is an error the reader can count and skip.
//!
//! Pure logic: the Kafka side is `kafka::insights_topic`.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};

use super::Insights;

/// The `format` every snapshot names.
pub const FORMAT: &str = "fetch-pipeline/insights";
/// The version this build writes; it reads every `1.x`.
pub const VERSION_MAJOR: u32 = 1;
pub const VERSION_MINOR: u32 = 0;
/// Largest encoded snapshot. The broker's default `message.max.bytes` is 1 MiB and
/// librdkafka's producer refuses records over 1,000,000 bytes; this leaves room for the key,
/// headers and the record batch's framing.
pub const MAX_ENCODED_BYTES: usize = 960_000;
/// Largest decompressed snapshot a reader accepts (a full default snapshot is ~2.5 MB).
const MAX_DECODED_BYTES: u64 = 64 << 20;

/// Which part of a replica's insights a snapshot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SnapshotKind {
    /// Everything the replica processed since it started.
    Total,
    /// What it processed in one interval, for windowed reports. Slots are reused in a ring,
    /// so compaction bounds how many a replica leaves behind.
    Window { slot: u32 },
}

/// A span of processing time, in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub start_ms: i64,
    pub end_ms: i64,
}

/// One replica's published insights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    /// The pipeline: its consumer group.
    pub pipeline: String,
    /// The replica: host name and a per-process suffix, so a restart starts a new contribution.
    pub replica: String,
    #[serde(flatten)]
    pub kind: SnapshotKind,
    /// Written at a clean shutdown: the replica will not publish again.
    #[serde(rename = "final")]
    pub final_snapshot: bool,
    /// The processing time covered.
    pub span: Span,
    /// When the snapshot was taken.
    pub published_at_ms: i64,
    /// Top-k lists were cut to this many counters to fit the record limit (`None`: not cut).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_cut_to: Option<usize>,
    /// In the pipeline's retired total (see `insights::retire`): how many replica processes'
    /// totals were folded into it. `None` for a replica's own snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folded: Option<u64>,
    pub insights: Insights,
}

/// The envelope around a snapshot on the wire.
#[derive(Serialize)]
struct Envelope<'a> {
    format: &'a str,
    version: String,
    #[serde(flatten)]
    snapshot: &'a Snapshot,
}

/// What a reader checks before trusting the rest.
#[derive(Deserialize)]
struct Header {
    format: Option<String>,
    version: Option<String>,
}

/// Why a record is not a snapshot this build can read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("not a gzip-compressed insights snapshot")]
    NotCompressed,
    #[error("larger than {MAX_DECODED_BYTES} bytes once decompressed")]
    TooLarge,
    #[error("not a JSON insights snapshot: {0}")]
    NotJson(String),
    #[error("format {0:?}, not {FORMAT:?}")]
    Foreign(String),
    #[error(
        "written in insights format {0}, newer than the {VERSION_MAJOR}.x this fetch-consumer reads: upgrade fetch-consumer (or the operator) to read it"
    )]
    NewerMajor(String),
    #[error("malformed snapshot: {0}")]
    Malformed(String),
}

/// Why a snapshot could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error(
        "the insights snapshot takes {bytes} bytes even with its top-k lists cut to {kept} counters, over the {MAX_ENCODED_BYTES}-byte record limit (the breakdown tables are too large)"
    )]
    TooLarge { bytes: usize, kept: usize },
    #[error("encoding the insights snapshot: {0}")]
    Io(#[from] std::io::Error),
}

impl Snapshot {
    /// The record key: compaction keeps the latest snapshot per key.
    pub fn key(&self) -> String {
        match self.kind {
            SnapshotKind::Total => format!("{}/{}/total", self.pipeline, self.replica),
            SnapshotKind::Window { slot } => {
                format!("{}/{}/window/{slot}", self.pipeline, self.replica)
            }
        }
    }

    /// The record value, within [`MAX_ENCODED_BYTES`]. Cuts the top-k lists (and says so in
    /// `top_cut_to`) when the full state does not fit.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let full = compress(self)?;
        if full.len() <= MAX_ENCODED_BYTES {
            return Ok(full);
        }
        let mut keep = self
            .insights
            .top_users
            .capacity()
            .max(self.insights.top_ips.capacity());
        let mut bytes = full.len();
        while keep > 10 {
            // Shrink in proportion to the overshoot, and by at least a quarter per try.
            let ratio = MAX_ENCODED_BYTES as f64 / bytes as f64 * 0.9;
            keep = ((keep as f64 * ratio.min(0.75)) as usize).max(10);
            let mut cut = self.clone();
            cut.insights.top_users = self.insights.top_users.truncated(keep);
            cut.insights.top_ips = self.insights.top_ips.truncated(keep);
            cut.top_cut_to = Some(keep);
            let encoded = compress(&cut)?;
            if encoded.len() <= MAX_ENCODED_BYTES {
                return Ok(encoded);
            }
            bytes = encoded.len();
        }
        Err(EncodeError::TooLarge { bytes, kept: keep })
    }

    /// Reads a record value written by [`Snapshot::encode`] (this or any `1.x` version).
    pub fn decode(value: &[u8]) -> Result<Snapshot, DecodeError> {
        if !value.starts_with(&[0x1f, 0x8b]) {
            return Err(DecodeError::NotCompressed);
        }
        let mut json = Vec::new();
        GzDecoder::new(value)
            .take(MAX_DECODED_BYTES + 1)
            .read_to_end(&mut json)
            .map_err(|_| DecodeError::NotCompressed)?;
        if json.len() as u64 > MAX_DECODED_BYTES {
            return Err(DecodeError::TooLarge);
        }
        let header: Header =
            serde_json::from_slice(&json).map_err(|e| DecodeError::NotJson(e.to_string()))?;
        match header.format.as_deref() {
            Some(FORMAT) => {}
            other => return Err(DecodeError::Foreign(other.unwrap_or("none").to_owned())),
        }
        let version = header.version.unwrap_or_default();
        let major = version
            .split('.')
            .next()
            .and_then(|m| m.parse::<u32>().ok())
            .ok_or_else(|| DecodeError::Malformed(format!("version {version:?}")))?;
        if major > VERSION_MAJOR {
            return Err(DecodeError::NewerMajor(version));
        }
        serde_json::from_slice(&json).map_err(|e| DecodeError::Malformed(e.to_string()))
    }
}

fn compress(snapshot: &Snapshot) -> std::io::Result<Vec<u8>> {
    let envelope = Envelope {
        format: FORMAT,
        version: format!("{VERSION_MAJOR}.{VERSION_MINOR}"),
        snapshot,
    };
    // Written whole, then compressed in one call: serde_json writes token by token, and each
    // small write into the encoder cost more than the bytes it carried.
    let json = serde_json::to_vec(&envelope)?;
    // Level 1: the fastest; a full snapshot still takes well under the limit (see the size test).
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(&json)?;
    gz.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insights::DEFAULT_TOP_CAPACITY;

    fn snapshot(insights: Insights) -> Snapshot {
        Snapshot {
            pipeline: "fetch/eu".into(),
            replica: "pod-7f9c-1a2b".into(),
            kind: SnapshotKind::Total,
            final_snapshot: false,
            span: Span {
                start_ms: 1_700_000_000_000,
                end_ms: 1_700_000_030_000,
            },
            published_at_ms: 1_700_000_030_000,
            top_cut_to: None,
            folded: None,
            insights,
        }
    }

    /// A stand-in for a UUID: 36 characters of hex and dashes, distinct per `i`.
    fn uuid_like(i: u64) -> String {
        let h = xxhash_rust::xxh3::xxh3_128(&i.to_le_bytes());
        let s = format!("{h:032x}");
        format!(
            "{}-{}-{}-{}-{}",
            &s[..8],
            &s[8..12],
            &s[12..16],
            &s[16..20],
            &s[20..]
        )
    }

    /// Insights at the default capacity with every counter taken: top-k lists full of
    /// UUID user ids and IPv4 addresses, and realistic breakdown tables.
    fn full_insights() -> Insights {
        let mut i = Insights::new(DEFAULT_TOP_CAPACITY);
        for n in 0..(DEFAULT_TOP_CAPACITY as u64 * 3) {
            let user = uuid_like(n);
            let ip = format!(
                "{}.{}.{}.{}",
                n % 223 + 1,
                n / 7 % 256,
                n / 13 % 256,
                n % 251
            );
            i.users.insert(user.as_bytes());
            i.devices.insert(format!("device-{n}").as_bytes());
            i.top_users.insert(&user, 1_700_000_000 + n as i64);
            i.top_ips.insert(&ip, 1_700_000_000 + n as i64);
            i.cleaned += 1;
        }
        for v in 0..200 {
            for d in ["android", "ios", "web", "unknown", "tablet"] {
                i.by_app_version
                    .add(&format!("{}.{}.{}", v / 50, v / 10 % 5, v % 10), d, 7);
            }
        }
        for l in 0..100 {
            for d in ["android", "ios", "web", "unknown", "tablet"] {
                i.by_locale.add(&format!("L{l:02}"), d, 3);
            }
        }
        i.record_rejection(crate::reason::RejectReason::MalformedJson);
        i
    }

    #[test]
    fn a_snapshot_at_default_capacity_fits_the_record_limit_uncut() {
        let s = snapshot(full_insights());
        let bytes = s.encode().expect("encodes");
        assert!(bytes.len() <= MAX_ENCODED_BYTES, "{} bytes", bytes.len());
        let back = Snapshot::decode(&bytes).expect("decodes");
        assert_eq!(
            back.top_cut_to, None,
            "fits without cutting the top-k lists"
        );
        assert_eq!(
            back.insights.top_users.top(10),
            s.insights.top_users.top(10)
        );
        assert_eq!(back.insights.top_ips.capacity(), DEFAULT_TOP_CAPACITY);
        assert_eq!(back.insights.users.estimate(), s.insights.users.estimate());
        assert_eq!(back.insights.by_app_version, s.insights.by_app_version);
        assert_eq!(back.key(), "fetch/eu/pod-7f9c-1a2b/total");
    }

    #[test]
    fn a_snapshot_too_large_is_cut_to_fit_and_says_so() {
        let mut insights = Insights::new(100_000);
        for n in 0..100_000u64 {
            // Long random-looking keys that compress poorly.
            let key = format!("{}{}{}", uuid_like(n), uuid_like(n + 1), uuid_like(n + 2));
            insights.top_users.insert(&key, 0);
        }
        let s = snapshot(insights);
        let bytes = s.encode().expect("encodes after cutting");
        assert!(bytes.len() <= MAX_ENCODED_BYTES);
        let back = Snapshot::decode(&bytes).expect("decodes");
        let kept = back.top_cut_to.expect("cut");
        assert!((10..100_000).contains(&kept), "kept {kept}");
        assert_eq!(back.insights.top_users.total(), 100_000);
    }

    #[test]
    fn window_snapshots_have_their_own_key_per_slot() {
        let mut s = snapshot(Insights::new(10));
        s.kind = SnapshotKind::Window { slot: 17 };
        assert_eq!(s.key(), "fetch/eu/pod-7f9c-1a2b/window/17");
        let back = Snapshot::decode(&s.encode().expect("encodes")).expect("decodes");
        assert_eq!(back.kind, SnapshotKind::Window { slot: 17 });
    }

    fn gzip(json: &str) -> Vec<u8> {
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(json.as_bytes()).expect("write");
        gz.finish().expect("finish")
    }

    #[test]
    fn a_newer_major_version_is_refused_with_the_fix() {
        let err = Snapshot::decode(&gzip(
            r#"{"format":"fetch-pipeline/insights","version":"2.0"}"#,
        ))
        .expect_err("newer major");
        assert_eq!(err, DecodeError::NewerMajor("2.0".into()));
        assert!(err.to_string().contains("upgrade"), "{err}");
    }

    #[test]
    fn a_newer_minor_version_with_unknown_fields_is_read() {
        let s = snapshot(Insights::new(10));
        let bytes = s.encode().expect("encodes");
        let mut json = String::new();
        GzDecoder::new(&bytes[..])
            .read_to_string(&mut json)
            .expect("gunzip");
        let json = json.replacen(
            "\"version\":\"1.0\"",
            "\"version\":\"1.7\",\"new_field\":[1,2]",
            1,
        );
        let back = Snapshot::decode(&gzip(&json)).expect("a 1.x reads");
        assert_eq!(back.replica, s.replica);
    }

    #[test]
    fn foreign_and_malformed_records_are_errors_not_panics() {
        assert_eq!(
            Snapshot::decode(b"{}").err(),
            Some(DecodeError::NotCompressed)
        );
        assert_eq!(
            Snapshot::decode(&[0x1f, 0x8b, 0, 1]).err(),
            Some(DecodeError::NotCompressed)
        );
        assert!(matches!(
            Snapshot::decode(&gzip("not json")),
            Err(DecodeError::NotJson(_))
        ));
        assert_eq!(
            Snapshot::decode(&gzip(r#"{"format":"something-else","version":"1.0"}"#)).err(),
            Some(DecodeError::Foreign("something-else".into()))
        );
        assert!(matches!(
            Snapshot::decode(&gzip(
                r#"{"format":"fetch-pipeline/insights","version":"1.0"}"#
            )),
            Err(DecodeError::Malformed(_))
        ));
    }
}
