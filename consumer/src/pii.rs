//! Optional protection of personal data in cleaned events: the `ip` and `device_id` fields.
//!
//! Off by default. `mask` coarsens the values (an IPv4 /24, an IPv6 /48, the first four
//! characters of a device id) so they can no longer single out a person. `hash` replaces
//! them with a keyed hash (HMAC-SHA-256, first 128 bits, hex), which hides the value but keeps
//! it stable, so downstream joins and distinct counts still work. The key must stay secret:
//! without it, hashes of the small IPv4 space could be reversed by brute force.

use std::borrow::Cow;
use std::net::IpAddr;

use hmac::{KeyInit, Mac};
use sha2::Sha256;

/// Environment variable that holds the HMAC key for `--pii-mode hash`.
pub const HASH_KEY_ENV: &str = "FETCH_PII_HASH_KEY";

/// How `ip` and `device_id` are written to the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PiiMode {
    /// Pass the values through (after validation).
    #[default]
    Keep,
    /// Coarsen: IPv4 to its /24, IPv6 to its /48, device ids to their first 4 characters.
    Mask,
    /// Replace with a keyed hash (HMAC-SHA-256 with the key in `FETCH_PII_HASH_KEY`).
    Hash,
}

/// A ready-to-apply PII policy: the mode plus, for `hash`, the key.
#[derive(Clone)]
pub enum PiiPolicy {
    Keep,
    Mask,
    Hash(Box<hmac::Hmac<Sha256>>),
}

impl std::fmt::Debug for PiiPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.write_str(match self {
            PiiPolicy::Keep => "Keep",
            PiiPolicy::Mask => "Mask",
            PiiPolicy::Hash(_) => "Hash(<key>)",
        })
    }
}

impl PiiPolicy {
    /// Builds the policy for `mode`; `hash_key` is required (and must be non-empty) for `hash`.
    pub fn new(mode: PiiMode, hash_key: Option<&[u8]>) -> Result<Self, crate::Error> {
        Ok(match mode {
            PiiMode::Keep => PiiPolicy::Keep,
            PiiMode::Mask => PiiPolicy::Mask,
            PiiMode::Hash => {
                let key = hash_key.filter(|k| !k.is_empty()).ok_or_else(|| {
                    crate::Error::Config(format!(
                        "--pii-mode hash needs a secret key: set {HASH_KEY_ENV} (for example from a Kubernetes Secret)"
                    ))
                })?;
                let mac = hmac::Hmac::<Sha256>::new_from_slice(key)
                    .map_err(|e| crate::Error::Config(format!("{HASH_KEY_ENV}: {e}")))?;
                PiiPolicy::Hash(Box::new(mac))
            }
        })
    }

    /// Applies the policy to a valid IP address in canonical text form.
    pub fn ip<'a>(&self, ip: Cow<'a, str>, parsed: IpAddr) -> Cow<'a, str> {
        match self {
            PiiPolicy::Keep => ip,
            PiiPolicy::Mask => Cow::Owned(mask_ip(parsed).to_string()),
            PiiPolicy::Hash(mac) => Cow::Owned(keyed_hash(mac, ip.as_bytes())),
        }
    }

    /// Applies the policy to a device id.
    pub fn device_id<'a>(&self, id: Cow<'a, str>) -> Cow<'a, str> {
        match self {
            PiiPolicy::Keep => id,
            PiiPolicy::Mask => {
                let prefix: String = id.chars().take(4).collect();
                Cow::Owned(format!("{prefix}****"))
            }
            PiiPolicy::Hash(mac) => Cow::Owned(keyed_hash(mac, id.as_bytes())),
        }
    }
}

fn mask_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::from([a, b, c, 0])
        }
        IpAddr::V6(v6) => {
            let mut segments = v6.segments();
            segments[3..].fill(0);
            IpAddr::from(segments)
        }
    }
}

fn keyed_hash(mac: &hmac::Hmac<Sha256>, value: &[u8]) -> String {
    let mut mac = mac.clone();
    mac.update(value);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(32);
    for byte in &digest[..16] {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test ip")
    }

    #[test]
    fn keep_passes_through() {
        let p = PiiPolicy::new(PiiMode::Keep, None).expect("keep");
        assert_eq!(p.ip("1.2.3.4".into(), ip("1.2.3.4")), "1.2.3.4");
        assert_eq!(p.device_id("abcdef".into()), "abcdef");
    }

    #[test]
    fn mask_coarsens() {
        let p = PiiPolicy::new(PiiMode::Mask, None).expect("mask");
        assert_eq!(p.ip("1.2.3.4".into(), ip("1.2.3.4")), "1.2.3.0");
        assert_eq!(
            p.ip("2001:db8:1:2::3".into(), ip("2001:db8:1:2::3")),
            "2001:db8:1::"
        );
        assert_eq!(p.device_id("c2fbd8a3-cfdc".into()), "c2fb****");
    }

    #[test]
    fn hash_is_keyed_stable_and_hides_value() {
        let a = PiiPolicy::new(PiiMode::Hash, Some(b"k1")).expect("hash");
        let b = PiiPolicy::new(PiiMode::Hash, Some(b"k2")).expect("hash");
        let h1 = a.ip("1.2.3.4".into(), ip("1.2.3.4"));
        assert_eq!(
            h1,
            a.ip("1.2.3.4".into(), ip("1.2.3.4")),
            "stable for joins"
        );
        assert_ne!(
            h1,
            b.ip("1.2.3.4".into(), ip("1.2.3.4")),
            "depends on the key"
        );
        assert_eq!(h1.len(), 32);
        assert!(!h1.contains("1.2.3.4"));
    }

    #[test]
    fn hash_without_key_is_a_config_error_naming_the_variable() {
        let err = PiiPolicy::new(PiiMode::Hash, None).expect_err("needs key");
        assert!(err.to_string().contains(HASH_KEY_ENV), "{err}");
        assert!(PiiPolicy::new(PiiMode::Hash, Some(b"")).is_err());
    }
}
