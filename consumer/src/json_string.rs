//! Where a JSON string's plain run ends: the first byte JSON requires escaped (a control
//! character, `"` or `\`), found eight bytes at a time.
//!
//! Shared by the two hot paths that scan strings: the fast parse ([`crate::event::flat`]),
//! which reads a string up to its closing quote, and the output writer
//! ([`crate::output_json`]), which copies a string whole when nothing in it needs escaping.
//! A byte at a time, that scan was most of the fast parse's time.

/// The length of the longest prefix of `bytes` with no byte JSON requires escaped: the index
/// of the first control character, `"` or `\`, or `bytes.len()` if there is none.
pub fn plain_len(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Classic SWAR test: (x - n*ONES) & !x & HIGHS flags the bytes below n (n <= 128), and a
    // zero byte is the case n = 1. A borrow can flag a byte above a flagged one wrongly, never
    // one below it, so the lowest flag of the three tests together is exact.
    let below = |x: u64, n: u64| x.wrapping_sub(n * ONES) & !x & HIGHS;
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        let flags = below(x, 0x20)
            | below(x ^ (u64::from(b'"') * ONES), 1)
            | below(x ^ (u64::from(b'\\') * ONES), 1);
        if flags != 0 {
            return at + (flags.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    at + chunks
        .remainder()
        .iter()
        .position(|&b| needs_escape(b))
        .unwrap_or(chunks.remainder().len())
}

/// Whether JSON requires `b` escaped in a string. serde_json escapes exactly these and leaves
/// everything else, non-ASCII included, as is.
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_byte_to_escape_is_found_exactly_wherever_it_sits() {
        for b in 0..=255u8 {
            for at in 0..19 {
                let mut bytes = vec![b'a'; 19];
                bytes[at] = b;
                let expected = if needs_escape(b) { at } else { 19 };
                assert_eq!(plain_len(&bytes), expected, "byte {b:#x} at {at}");
            }
        }
    }

    #[test]
    fn a_borrow_from_an_earlier_flag_never_hides_or_moves_the_first() {
        // 0x00 then 0x21: the subtraction borrows into the next byte.
        assert_eq!(plain_len(&[b'a', 0x00, 0x21, b'"', 0, 0, 0, 0]), 1);
        assert_eq!(
            plain_len(&[0x7f, 0x80, 0xff, 0x21, 0x5b, 0x5d, 0x23, 0x7e]),
            8
        );
        assert_eq!(plain_len(b""), 0);
        assert_eq!(plain_len("é ✓ 日本\"".as_bytes()), "é ✓ 日本".len());
    }
}
