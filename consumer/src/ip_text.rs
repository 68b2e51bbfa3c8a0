//! Reading an IP address from text, as `str::parse::<IpAddr>` reads it, with a short way for
//! the dotted quads that make up nearly all of the stream.
//!
//! The rule: [`parse`] gives exactly what the standard library gives for the same text. The
//! short way ([`dotted_quad`]) answers only when it is sure: four decimal octets of at most
//! 255, separated by dots, none with a leading zero, and nothing else. Anything else (IPv6,
//! an octet out of range, a leading zero, stray bytes, errors) goes to the standard parser.
//!
//! Why it exists: the standard parser is written for every address form and tries IPv4, then
//! IPv6, through a general reader; it was 3.9% of the processing core's profile, and this
//! reading is 2.5%.

use std::net::{IpAddr, Ipv4Addr};

/// `text` as an IP address, or `None` where `text.parse::<IpAddr>()` fails.
pub fn parse(text: &str) -> Option<IpAddr> {
    match dotted_quad(text.as_bytes()) {
        Some(v4) => Some(IpAddr::V4(v4)),
        None => text.parse().ok(),
    }
}

/// `text` when it is exactly four octets written the one way the standard parser accepts
/// (`0` to `255`, no sign, no leading zero), else `None` (which says nothing either way).
///
/// An octet's digit count is as random as the address, so a loop over its digits mispredicts
/// a branch or two per octet (this reading, written as such a loop, cost more than the
/// standard parser). Here each octet reads three bytes of a zero-padded copy and counts its
/// digits with arithmetic; the only branches left are the rare ways out.
fn dotted_quad(text: &[u8]) -> Option<Ipv4Addr> {
    // The longest dotted quad, `255.255.255.255`, is 15 bytes; the padding (a NUL, not a
    // digit) ends it, and the reads below stop at its 16th byte.
    let mut padded = [0_u8; 16];
    padded.get_mut(..text.len())?.copy_from_slice(text);
    let mut octets = [0_u8; 4];
    let mut at = 0;
    for (i, octet) in octets.iter_mut().enumerate() {
        // At most 4 bytes per octet before this one, so `at + 2` stays inside the padding.
        let digit = |b: u8| u32::from(b.wrapping_sub(b'0'));
        let (d0, d1, d2) = (
            digit(padded[at]),
            digit(padded[at + 1]),
            digit(padded[at + 2]),
        );
        let two = d1 < 10;
        let three = two && d2 < 10;
        if d0 >= 10 || (d0 == 0 && two) {
            return None;
        }
        let mut value = d0;
        value = if two { value * 10 + d1 } else { value };
        value = if three { value * 10 + d2 } else { value };
        *octet = u8::try_from(value).ok()?;
        at += 1 + usize::from(two) + usize::from(three);
        let end = if i == 3 { 0 } else { b'.' };
        if padded[at] != end {
            return None;
        }
        at += 1;
    }
    // The last octet ended on the padding: it must be where `text` ends, not a NUL inside it.
    (at == text.len() + 1).then_some(Ipv4Addr::from(octets))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn std_parse(text: &str) -> Option<IpAddr> {
        text.parse().ok()
    }

    #[test]
    fn usual_addresses_take_the_short_way() {
        for text in ["0.0.0.0", "10.0.0.1", "199.172.111.135", "255.255.255.255"] {
            assert_eq!(dotted_quad(text.as_bytes()), text.parse().ok(), "{text}");
        }
    }

    #[test]
    fn what_the_short_way_leaves_the_standard_parser_decides() {
        for text in [
            "256.0.0.1",
            "01.2.3.4",
            "1.2.3.04",
            "1.2.3",
            "1.2.3.4.5",
            "1.2.3.4 ",
            "1.2.3.4\0",
            "1.2.3\0.4",
            "255.255.255.2550",
            " 1.2.3.4",
            "1..2.3",
            "1.2.3.",
            "+1.2.3.4",
            "1234.1.1.1",
            "::1",
            "2001:db8::1",
            "::ffff:1.2.3.4",
            "",
        ] {
            assert_eq!(dotted_quad(text.as_bytes()), None, "{text}");
            assert_eq!(parse(text), std_parse(text), "{text}");
        }
    }

    /// Every text of up to seven bytes over digits, dots and one other byte: the short way
    /// never answers where the standard parser would not, nor differently.
    #[test]
    fn every_short_text_of_digits_and_dots_reads_as_the_standard_parser_reads_it() {
        const ALPHABET: &[u8] = b"0125.x";
        let mut text = Vec::new();
        for len in 0..=7 {
            let combinations = ALPHABET.len().pow(len);
            for mut n in 0..combinations {
                text.clear();
                for _ in 0..len {
                    text.push(ALPHABET[n % ALPHABET.len()]);
                    n /= ALPHABET.len();
                }
                let text = std::str::from_utf8(&text).expect("ASCII");
                assert_eq!(parse(text), std_parse(text), "{text}");
            }
        }
    }

    /// Dotted quads with octets up to 999 and leading zeros, the cases near the rule's edges.
    #[test]
    fn octets_near_the_edges_read_as_the_standard_parser_reads_them() {
        let octets = [
            "0", "00", "000", "1", "01", "9", "10", "99", "099", "100", "199", "249", "250", "255",
            "256", "299", "300", "999", "1000",
        ];
        for a in octets {
            for b in octets {
                for c in ["0", "01", "255", "256"] {
                    let text = format!("{a}.{b}.{c}.{a}");
                    assert_eq!(parse(&text), std_parse(&text), "{text}");
                }
            }
        }
    }
}
