//! What each record (or AMQP message body) carries: a 24-byte stamp at the
//! start of the value (magic, run id, intended send time, sequence number) padded to `--size`
//! with random uppercase letters, and optional keys drawn from a key
//! distribution and mapped to partitions with Kafka's default partitioner
//! (murmur2).

use bytes::{BufMut, Bytes, BytesMut};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Bytes of the stamp at the start of every value.
pub const STAMP_LEN: usize = 24;
const MAGIC: u32 = 0x524D_514C; // "RMQL"

/// What a record says about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// Identifies one load generator run; consumers ignore other runs' records.
    pub run_id: u32,
    /// When the record was meant to be sent, in ns since the run's epoch.
    pub intended_ns: u64,
    /// Producer index in the top 16 bits, per-producer sequence below.
    pub seq: u64,
}

impl Stamp {
    /// Reads the stamp of a value written by `Padding::value`, if it is one.
    pub fn read(value: &[u8]) -> Option<Stamp> {
        if value.len() < STAMP_LEN || u32::from_be_bytes(value[0..4].try_into().ok()?) != MAGIC {
            return None;
        }
        Some(Stamp {
            run_id: u32::from_be_bytes(value[4..8].try_into().ok()?),
            intended_ns: u64::from_be_bytes(value[8..16].try_into().ok()?),
            seq: u64::from_be_bytes(value[16..24].try_into().ok()?),
        })
    }
}

/// Size of the padding pool: larger than any batch, so that values inside a
/// batch never repeat and compression sees realistic (letter-entropy) data.
const POOL_BYTES: usize = 1 << 20;

/// Builds record values of a fixed size.
pub struct Padding {
    size: usize,
    pool: Vec<u8>,
    cursor: usize,
}

impl Padding {
    /// `size` ≥ `STAMP_LEN` (checked by the command line).
    pub fn new(size: usize, seed: u64) -> Padding {
        let mut rng = StdRng::seed_from_u64(seed);
        let pad = size.saturating_sub(STAMP_LEN);
        let pool_len = POOL_BYTES + pad;
        let pool = (0..pool_len).map(|_| b'A' + rng.gen_range(0..26u8)).collect();
        Padding { size, pool, cursor: 0 }
    }

    /// One value: the stamp, then padding up to the configured size.
    pub fn value(&mut self, stamp: Stamp) -> Bytes {
        let mut b = BytesMut::with_capacity(self.size.max(STAMP_LEN));
        self.put_value(stamp, &mut b);
        b.freeze()
    }

    /// Appends one value to `out` (an AMQP body written straight into the
    /// frame buffer).
    pub fn put_value(&mut self, stamp: Stamp, out: &mut impl BufMut) {
        out.put_u32(MAGIC);
        out.put_u32(stamp.run_id);
        out.put_u64(stamp.intended_ns);
        out.put_u64(stamp.seq);
        let pad = self.size.saturating_sub(STAMP_LEN);
        out.put_slice(&self.pool[self.cursor..self.cursor + pad]);
        self.cursor = (self.cursor + pad + 7) % POOL_BYTES;
    }
}

/// How records are keyed (and so spread over partitions).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KeyDistribution {
    /// No keys; each producer fills one partition per request, then moves to
    /// the next (Kafka's sticky partitioner).
    None,
    /// Keys 0, 1, 2, … cycling through the key space.
    Sequential,
    /// Keys drawn uniformly from the key space.
    Random,
    /// Keys drawn from a Zipf distribution with this exponent (hot keys).
    Zipf(f64),
}

impl std::str::FromStr for KeyDistribution {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(KeyDistribution::None),
            "sequential" => Ok(KeyDistribution::Sequential),
            "random" | "uniform" => Ok(KeyDistribution::Random),
            "zipf" => Ok(KeyDistribution::Zipf(1.0)),
            _ => match s.strip_prefix("zipf:").map(str::parse::<f64>) {
                Some(Ok(e)) if e > 0.0 && e.is_finite() => Ok(KeyDistribution::Zipf(e)),
                _ => Err(format!("'{s}' is not one of none, sequential, random, zipf, zipf:EXPONENT (exponent > 0)")),
            },
        }
    }
}

impl std::fmt::Display for KeyDistribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyDistribution::None => f.write_str("none"),
            KeyDistribution::Sequential => f.write_str("sequential"),
            KeyDistribution::Random => f.write_str("random"),
            KeyDistribution::Zipf(e) => write!(f, "zipf:{e}"),
        }
    }
}

/// Draws keys of one producer.
pub struct KeyGen {
    dist: KeyDistribution,
    keys: u64,
    next: u64,
    rng: StdRng,
    /// Cumulative Zipf probabilities over the key space.
    zipf_cdf: Vec<f64>,
}

impl KeyGen {
    pub fn new(dist: KeyDistribution, keys: u64, seed: u64) -> KeyGen {
        let keys = keys.max(1);
        let zipf_cdf = match dist {
            KeyDistribution::Zipf(s) => {
                let mut acc = 0.0;
                let mut cdf: Vec<f64> = (1..=keys)
                    .map(|k| {
                        acc += 1.0 / (k as f64).powf(s);
                        acc
                    })
                    .collect();
                for c in cdf.iter_mut() {
                    *c /= acc;
                }
                cdf
            }
            _ => Vec::new(),
        };
        KeyGen { dist, keys, next: seed % keys, rng: StdRng::seed_from_u64(seed), zipf_cdf }
    }

    /// The next key, or `None` for unkeyed records.
    pub fn next_key(&mut self) -> Option<Bytes> {
        let n = match self.dist {
            KeyDistribution::None => return None,
            KeyDistribution::Sequential => {
                let n = self.next;
                self.next = (self.next + 1) % self.keys;
                n
            }
            KeyDistribution::Random => self.rng.gen_range(0..self.keys),
            KeyDistribution::Zipf(_) => {
                let u: f64 = self.rng.gen();
                self.zipf_cdf.partition_point(|&c| c < u).min(self.zipf_cdf.len() - 1) as u64
            }
        };
        Some(Bytes::from(format!("key-{n}")))
    }
}

/// Kafka's `Utils.murmur2`, as its default partitioner uses it.
pub fn murmur2(data: &[u8]) -> i32 {
    let len = data.len();
    let m: u32 = 0x5bd1_e995;
    let r = 24;
    let mut h: u32 = 0x9747_b28c ^ (len as u32);
    let chunks = len / 4;
    for i in 0..chunks {
        let i4 = i * 4;
        let mut k = u32::from_le_bytes([data[i4], data[i4 + 1], data[i4 + 2], data[i4 + 3]]);
        k = k.wrapping_mul(m);
        k ^= k >> r;
        k = k.wrapping_mul(m);
        h = h.wrapping_mul(m);
        h ^= k;
    }
    let tail = len & !3;
    let rem = len % 4;
    if rem == 3 {
        h ^= (data[tail + 2] as u32) << 16;
    }
    if rem >= 2 {
        h ^= (data[tail + 1] as u32) << 8;
    }
    if rem >= 1 {
        h ^= data[tail] as u32;
        h = h.wrapping_mul(m);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(m);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner picks for a key.
pub fn partition_for_key(key: &[u8], partitions: usize) -> usize {
    ((murmur2(key) & 0x7fff_ffff) as usize) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafkas_test_vectors() {
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"), -58897971);
        assert_eq!(murmur2(b"abc"), 479470107);
    }

    #[test]
    fn a_value_carries_its_stamp_and_has_the_requested_size() {
        let mut p = Padding::new(100, 7);
        let stamp = Stamp { run_id: 9, intended_ns: 123_456_789, seq: (3 << 48) | 42 };
        let v = p.value(stamp);
        assert_eq!(v.len(), 100);
        assert_eq!(Stamp::read(&v), Some(stamp));
        assert!(v[STAMP_LEN..].iter().all(|b| b.is_ascii_uppercase()));
        assert_eq!(Stamp::read(b"not a stamped value at all, no"), None);
    }

    #[test]
    fn zipf_keys_favour_the_first_keys() {
        let mut g = KeyGen::new(KeyDistribution::Zipf(1.2), 100, 1);
        let hot = (0..10_000).filter(|_| g.next_key().as_deref() == Some(b"key-0".as_slice())).count();
        assert!(hot > 2_000, "key-0 drawn {hot} times of 10000");
    }

    #[test]
    fn key_distributions_parse() {
        assert_eq!("zipf:0.9".parse::<KeyDistribution>(), Ok(KeyDistribution::Zipf(0.9)));
        assert!("zipf:-1".parse::<KeyDistribution>().is_err());
        assert!("bogus".parse::<KeyDistribution>().is_err());
    }
}
