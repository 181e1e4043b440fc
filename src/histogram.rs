//! A fixed-size power-of-two histogram for metrics: bucket i counts values in
//! (2^(i-1), 2^i]; no allocation after creation, cheap to copy between shards.

pub const BUCKETS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Log2Histogram {
    counts: [u64; BUCKETS],
    sum: u64,
    count: u64,
}

impl Default for Log2Histogram {
    fn default() -> Self {
        Log2Histogram { counts: [0; BUCKETS], sum: 0, count: 0 }
    }
}

impl Log2Histogram {
    pub fn record(&mut self, value: u64) {
        let bucket = if value <= 1 { 0 } else { (64 - (value - 1).leading_zeros()) as usize };
        self.counts[bucket.min(BUCKETS - 1)] += 1;
        self.sum = self.sum.saturating_add(value);
        self.count += 1;
    }

    pub fn merge(&mut self, other: &Log2Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.sum = self.sum.saturating_add(other.sum);
        self.count += other.count;
    }

    /// (upper bound, cumulative count) per bucket, the last one unbounded.
    pub fn cumulative(&self) -> impl Iterator<Item = (Option<u64>, u64)> + '_ {
        let mut total = 0;
        self.counts.iter().enumerate().map(move |(i, c)| {
            total += c;
            ((i + 1 < BUCKETS).then(|| 1u64 << i), total)
        })
    }

    pub fn sum(&self) -> u64 {
        self.sum
    }

    pub fn count(&self) -> u64 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_bucket_of_their_power_of_two() {
        let mut h = Log2Histogram::default();
        for v in [0, 1, 2, 3, 4, 5, 1000] {
            h.record(v);
        }
        let c: Vec<(Option<u64>, u64)> = h.cumulative().take(4).collect();
        assert_eq!(c, vec![(Some(1), 2), (Some(2), 3), (Some(4), 5), (Some(8), 6)]);
        assert_eq!(h.count(), 7);
        assert_eq!(h.sum(), 1015);
        assert_eq!(h.cumulative().last(), Some((None, 7)));
    }
}
