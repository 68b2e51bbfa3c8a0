//! Which partition librdkafka's partitioner gives a keyed record, computed here.
//!
//! The rule: this is a forecast, never the decision. librdkafka partitions every record
//! itself; the pipeline only uses the forecast to order the records it holds (see
//! `pipeline::hold`), so a wrong forecast costs batching, never correctness.
//!
//! librdkafka's keyed partitioners: `consistent` and `consistent_random` (the default) take
//! the CRC-32 of the key modulo the partitions; `murmur2` and `murmur2_random` (the Java
//! client's) take Kafka's murmur2 of the key with the sign bit cleared, modulo the partitions.
//! The others (`random`, `fnv1a`, `fnv1a_random`) are not forecast.

/// A forecast of librdkafka's partitioner, for one topic's partition count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partitioner {
    Crc32 {
        partitions: u32,
    },
    Murmur2 {
        partitions: u32,
    },
    /// A partitioner this module does not forecast: every key forecasts partition 0.
    Unknown,
}

impl Partitioner {
    /// The forecast for a producer whose `partitioner` property is `property` (librdkafka's
    /// default when unset), writing to a topic of `partitions` partitions.
    pub fn of(property: Option<&str>, partitions: usize) -> Self {
        let partitions = u32::try_from(partitions).unwrap_or(u32::MAX);
        if partitions == 0 {
            return Partitioner::Unknown;
        }
        match property.unwrap_or("consistent_random") {
            "consistent" | "consistent_random" => Partitioner::Crc32 { partitions },
            "murmur2" | "murmur2_random" => Partitioner::Murmur2 { partitions },
            _ => Partitioner::Unknown,
        }
    }

    /// The partition librdkafka will give a record with `key`.
    pub fn partition(&self, key: &[u8]) -> u32 {
        match *self {
            Partitioner::Crc32 { partitions } => crc32fast::hash(key) % partitions,
            Partitioner::Murmur2 { partitions } => (murmur2(key) & 0x7fff_ffff) % partitions,
            Partitioner::Unknown => 0,
        }
    }
}

/// Kafka's murmur2 (seed 0x9747b28c), as its Java client and librdkafka compute it.
fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // The length is folded into the seed as Java's int, so a longer key wraps the same way.
    let mut h: u32 = 0x9747_b28c ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, byte) in tail.iter().enumerate() {
            h ^= u32::from(*byte) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_is_kafkas_on_librdkafkas_reference_keys() {
        // librdkafka's src/rdmurmur2.c unit test, the Java client's results.
        for (key, expected) in [
            ("kafka", 0xd067_cf64_u32),
            ("giberish123456789", 0x8f55_2b0c),
            ("1234", 0x9fc9_7b14),
            ("234", 0xe7c0_09ca),
            ("34", 0x8739_30da),
            ("4", 0x5a4b_5ca1),
            ("PreAmbleWillBeRemoved,ThePrePartThatIs", 0x7842_4f1c),
            ("reAmbleWillBeRemoved,ThePrePartThatIs", 0x4a62_b377),
            ("eAmbleWillBeRemoved,ThePrePartThatIs", 0xe0e4_e09e),
            ("AmbleWillBeRemoved,ThePrePartThatIs", 0x62b8_b43f),
            ("", 0x106e_08d9),
        ] {
            assert_eq!(murmur2(key.as_bytes()), expected, "{key:?}");
        }
    }

    #[test]
    fn the_default_and_the_consistent_partitioners_take_the_keys_crc32() {
        // CRC-32 of "kafka" is 0x5bbc7517 (zlib's crc32, as librdkafka's rd_crc32).
        let crc = 0x5bbc_7517_u32;
        assert_eq!(crc32fast::hash(b"kafka"), crc);
        for property in [None, Some("consistent"), Some("consistent_random")] {
            assert_eq!(Partitioner::of(property, 7).partition(b"kafka"), crc % 7);
        }
    }

    #[test]
    fn the_java_compatible_partitioners_clear_the_sign_bit_first() {
        let hash = 0xd067_cf64_u32 & 0x7fff_ffff;
        for property in ["murmur2", "murmur2_random"] {
            assert_eq!(
                Partitioner::of(Some(property), 6).partition(b"kafka"),
                hash % 6
            );
        }
    }

    #[test]
    fn partitioners_not_forecast_and_topics_without_partitions_forecast_partition_0() {
        for property in ["random", "fnv1a", "fnv1a_random", "something new"] {
            assert_eq!(Partitioner::of(Some(property), 6), Partitioner::Unknown);
        }
        assert_eq!(Partitioner::of(None, 0), Partitioner::Unknown);
        assert_eq!(Partitioner::Unknown.partition(b"kafka"), 0);
    }
}
