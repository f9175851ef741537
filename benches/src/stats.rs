//! Latency statistics. Samples are nanoseconds; percentiles use the nearest-rank method (the
//! smallest sample with at least q of all samples at or below it), so every figure is a latency
//! that was actually observed.

/// The statistics of one block of round trips, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub mean: f64,
    pub count: usize,
}

/// Nearest-rank percentile of sorted samples; `q` in (0, 1].
///
/// # Panics
/// On an empty slice.
pub fn percentile(sorted: &[u64], q: f64) -> u64 {
    assert!(!sorted.is_empty(), "percentile of no samples");
    let n = sorted.len();
    // ceil(q * n) as a 1-based rank, kept within 1..=n.
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    sorted[rank - 1]
}

/// Sorts `samples` in place and summarises them.
///
/// # Panics
/// On an empty slice.
pub fn summarize(samples: &mut [u64]) -> Summary {
    samples.sort_unstable();
    let total: u128 = samples.iter().map(|&s| u128::from(s)).sum();
    Summary {
        p50: percentile(samples, 0.50) as f64,
        p90: percentile(samples, 0.90) as f64,
        p99: percentile(samples, 0.99) as f64,
        mean: total as f64 / samples.len() as f64,
        count: samples.len(),
    }
}

/// The median of `values` (the mean of the two middle values for an even count).
///
/// # Panics
/// On an empty slice.
pub fn median(values: &[f64]) -> f64 {
    assert!(!values.is_empty(), "median of no values");
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// Block statistics combined: each figure is the median over blocks of that block figure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aggregate {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub mean: f64,
    /// Lowest and highest block p50: how much the blocks disagreed.
    pub p50_min: f64,
    pub p50_max: f64,
    pub blocks: usize,
    pub samples: usize,
}

/// Medians over blocks of each statistic.
///
/// # Panics
/// With no blocks.
pub fn aggregate(blocks: &[Summary]) -> Aggregate {
    let pick = |f: fn(&Summary) -> f64| blocks.iter().map(f).collect::<Vec<_>>();
    let p50s = pick(|s| s.p50);
    Aggregate {
        p50: median(&p50s),
        p90: median(&pick(|s| s.p90)),
        p99: median(&pick(|s| s.p99)),
        mean: median(&pick(|s| s.mean)),
        p50_min: p50s.iter().copied().fold(f64::INFINITY, f64::min),
        p50_max: p50s.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        blocks: blocks.len(),
        samples: blocks.iter().map(|s| s.count).sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles_of_one_to_hundred() {
        let sorted: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 0.50), 50);
        assert_eq!(percentile(&sorted, 0.90), 90);
        assert_eq!(percentile(&sorted, 0.99), 99);
        assert_eq!(percentile(&sorted, 1.0), 100);
    }

    #[test]
    fn percentiles_of_few_samples_are_observed_values() {
        assert_eq!(percentile(&[7], 0.99), 7);
        // Three samples: p50 is the second, p90 and p99 the third.
        assert_eq!(percentile(&[1, 5, 9], 0.50), 5);
        assert_eq!(percentile(&[1, 5, 9], 0.90), 9);
    }

    #[test]
    fn summarize_sorts_and_averages() {
        let mut samples = vec![40, 10, 30, 20];
        let s = summarize(&mut samples);
        assert_eq!(samples, vec![10, 20, 30, 40]);
        assert_eq!(s.p50, 20.0);
        assert_eq!(s.p99, 40.0);
        assert_eq!(s.mean, 25.0);
        assert_eq!(s.count, 4);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn aggregate_takes_medians_per_statistic() {
        let block = |p50: f64, p99: f64| Summary {
            p50,
            p90: p50 + 1.0,
            p99,
            mean: p50 + 0.5,
            count: 10,
        };
        // An outlier block (p99 1000) does not move the median p99.
        let a = aggregate(&[block(10.0, 20.0), block(12.0, 1000.0), block(11.0, 22.0)]);
        assert_eq!(a.p50, 11.0);
        assert_eq!(a.p90, 12.0);
        assert_eq!(a.p99, 22.0);
        assert_eq!(a.mean, 11.5);
        assert_eq!((a.p50_min, a.p50_max), (10.0, 12.0));
        assert_eq!((a.blocks, a.samples), (3, 30));
    }
}
