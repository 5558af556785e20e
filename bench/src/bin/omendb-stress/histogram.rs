//! Latency histogram: log-linear buckets (16 per power of two), about 6% resolution, fixed
//! size, so a thread records millions of operations without allocating.

const SUB_BUCKETS: usize = 16;
const BUCKETS: usize = 64 * SUB_BUCKETS;

/// Counts of latencies in nanoseconds, and the largest seen.
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    pub max_ns: u64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max_ns: 0,
        }
    }

    fn bucket(ns: u64) -> usize {
        if ns < SUB_BUCKETS as u64 {
            return ns as usize;
        }
        let power = 63 - ns.leading_zeros() as usize; // >= 4
        let sub = (ns >> (power - 4)) as usize & (SUB_BUCKETS - 1);
        (power - 3) * SUB_BUCKETS + sub
    }

    /// The upper edge of a bucket.
    fn bucket_ns(bucket: usize) -> u64 {
        if bucket < SUB_BUCKETS {
            return bucket as u64;
        }
        let power = bucket / SUB_BUCKETS + 3;
        let sub = (bucket % SUB_BUCKETS) as u64;
        ((SUB_BUCKETS as u64 + sub + 1) << (power - 4)) - 1
    }

    /// Counts one latency.
    pub fn record(&mut self, ns: u64) {
        self.counts[Histogram::bucket(ns)] += 1;
        self.total += 1;
        self.max_ns = self.max_ns.max(ns);
    }

    /// Adds `other`'s counts.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    /// The upper edge of the bucket holding quantile `q`, at most the largest latency seen.
    pub fn quantile_ns(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((self.total as f64 * q).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (bucket, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Histogram::bucket_ns(bucket).min(self.max_ns);
            }
        }
        self.max_ns
    }
}
