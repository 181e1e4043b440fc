//! Which shard owns what: a stable function of an object's key and the shard
//! count (FNV-1a), needing no lookup table. Nothing on disk depends on it, so
//! the shard count may change between runs. Partitions are placed by topic
//! and partition, consumer groups by their offsets log; a new kind of owned
//! object hashes its own key with `Fnv1a` the same way.

/// 64-bit FNV-1a over the bytes fed to it, in order.
#[derive(Debug, Clone, Copy)]
pub struct Fnv1a(u64);

impl Fnv1a {
    pub const fn new() -> Fnv1a {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }

    pub fn bytes(self, bytes: &[u8]) -> Fnv1a {
        let mut h = self.0;
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        Fnv1a(h)
    }

    pub fn finish(self) -> u64 {
        self.0
    }

    /// The shard, of `shard_count`, that owns the object hashed.
    pub fn shard(self, shard_count: usize) -> usize {
        assert!(shard_count > 0);
        (self.0 % shard_count as u64) as usize
    }
}

impl Default for Fnv1a {
    fn default() -> Fnv1a {
        Fnv1a::new()
    }
}

/// Which shard owns a partition.
pub fn shard_of(topic: &str, partition: i32, shard_count: usize) -> usize {
    Fnv1a::new().bytes(topic.as_bytes()).bytes(&partition.to_be_bytes()).shard(shard_count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_values() {
        // Published FNV-1a 64 test vectors: the placement of data already on
        // disk (consumer offsets logs) depends on them.
        assert_eq!(Fnv1a::new().finish(), 0xcbf2_9ce4_8422_2325);
        assert_eq!(Fnv1a::new().bytes(b"a").finish(), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(Fnv1a::new().bytes(b"foobar").finish(), 0x8594_4171_f739_67e8);
    }
}
