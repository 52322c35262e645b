//! A latency histogram that never panics on the value it is given.

use hdrhistogram::Histogram;

/// Largest value tracked exactly: 60 seconds in nanoseconds. Larger values
/// are recorded as this value and counted in [`LatencyHistogram::saturated`].
pub const MAX_TRACKED_NS: u64 = 60_000_000_000;

/// Nanosecond latencies, from 1 ns to 60 s, 3 significant digits unless
/// made with [`LatencyHistogram::with_bounds`].
///
/// Recording never panics: a value above the top is recorded as the top
/// and counted in [`LatencyHistogram::saturated`]; zero is recorded as the
/// lowest bucket.
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    histogram: Histogram<u64>,
    /// `histogram.high()`, kept next to the counts for the record path.
    top: u64,
    saturated: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    /// An empty histogram from 1 ns to [`MAX_TRACKED_NS`], 3 significant
    /// digits.
    pub fn new() -> Self {
        Self::with_bounds(MAX_TRACKED_NS, 3)
    }

    /// An empty histogram from 1 ns to `top_ns` with `digits` significant
    /// digits. Out-of-range settings are brought into range (`top_ns` at
    /// least 2, `digits` 0 to 5) rather than refused.
    pub fn with_bounds(top_ns: u64, digits: u8) -> Self {
        let histogram = Histogram::new_with_bounds(1, top_ns.max(2), digits.min(5))
            .expect("bounds were brought into range");
        LatencyHistogram {
            top: histogram.high(),
            histogram,
            saturated: 0,
        }
    }

    /// Records one value; values above the top are clamped to it and
    /// counted as saturated.
    #[inline]
    pub fn record(&mut self, value_ns: u64) {
        if value_ns > self.top {
            self.saturated += 1;
        }
        self.histogram.saturating_record(value_ns.min(self.top));
    }

    /// The largest value tracked exactly.
    pub fn top(&self) -> u64 {
        self.top
    }

    /// Adds every value of `other`, whatever its bounds: values above this
    /// histogram's top are clamped to it and counted as saturated.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        if other.histogram.is_empty() {
            self.saturated += other.saturated;
            return;
        }
        if self.histogram.add(&other.histogram).is_err() {
            // `other` reaches above our top: add value by value, clamping.
            for value in other.histogram.iter_recorded() {
                let at = value.value_iterated_to();
                let count = value.count_at_value();
                if at > self.top {
                    self.saturated += count;
                }
                self.histogram.saturating_record_n(at.min(self.top), count);
            }
        }
        self.saturated += other.saturated;
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.histogram.is_empty()
    }

    /// Mean of the values recorded; 0 when empty.
    pub fn mean(&self) -> f64 {
        if self.histogram.is_empty() {
            0.0
        } else {
            self.histogram.mean()
        }
    }

    /// Forgets every value (nothing to clear when already empty).
    pub fn reset(&mut self) {
        if !self.histogram.is_empty() {
            self.histogram.reset();
        }
        self.saturated = 0;
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// Number of values that were above [`MAX_TRACKED_NS`].
    pub fn saturated(&self) -> u64 {
        self.saturated
    }

    /// The value at percentile `p` (0.0 to 100.0); 0 when empty.
    pub fn percentile(&self, p: f64) -> u64 {
        if self.histogram.is_empty() {
            0
        } else {
            self.histogram.value_at_percentile(p)
        }
    }

    /// Largest value recorded; 0 when empty.
    pub fn max(&self) -> u64 {
        self.histogram.max()
    }

    /// The underlying HdrHistogram, for exporters.
    pub fn inner(&self) -> &Histogram<u64> {
        &self.histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_above_the_top_are_saturated_and_counted() {
        let mut histogram = LatencyHistogram::new();
        histogram.record(u64::MAX);
        histogram.record(MAX_TRACKED_NS + 1);
        histogram.record(500);
        assert_eq!(histogram.count(), 3);
        assert_eq!(histogram.saturated(), 2);
        assert!(histogram.max() >= MAX_TRACKED_NS);
    }

    #[test]
    fn merge_adds_counts_and_percentiles_follow() {
        let mut fast = LatencyHistogram::new();
        let mut slow = LatencyHistogram::new();
        for _ in 0..99 {
            fast.record(100);
        }
        slow.record(1_000_000);
        fast.merge(&slow);
        assert_eq!(fast.count(), 100);
        assert!(fast.percentile(50.0).abs_diff(100) <= 1);
        assert!(fast.percentile(100.0).abs_diff(1_000_000) <= 1_000);
    }

    #[test]
    fn merge_of_different_ranges_clamps_and_counts() {
        // A narrow histogram (top 1 ms, 2 digits) and the default one.
        let mut narrow = LatencyHistogram::with_bounds(1_000_000, 2);
        let mut wide = LatencyHistogram::new();
        narrow.record(5_000_000); // saturated in the narrow one
        narrow.record(100);
        wide.record(10_000_000);
        wide.record(200);

        let mut into_wide = wide.clone();
        into_wide.merge(&narrow);
        assert_eq!(into_wide.count(), 4);
        assert_eq!(into_wide.saturated(), 1);
        assert!(into_wide.max().abs_diff(10_000_000) <= 10_000);

        let mut into_narrow = narrow.clone();
        into_narrow.merge(&wide);
        assert_eq!(into_narrow.count(), 4);
        // One saturated before, plus the 10 ms value clamped on the way in.
        assert_eq!(into_narrow.saturated(), 2);
        assert!(into_narrow.max() <= into_narrow.top() + into_narrow.top() / 50);
        assert!(into_narrow.percentile(25.0).abs_diff(100) <= 2);
    }

    #[test]
    fn zero_and_silly_bounds_do_not_panic() {
        let mut histogram = LatencyHistogram::with_bounds(0, 9);
        histogram.record(0);
        histogram.record(u64::MAX);
        assert_eq!(histogram.count(), 2);
        assert_eq!(histogram.saturated(), 1);
    }

    #[test]
    fn empty_histogram_reports_zero() {
        let histogram = LatencyHistogram::new();
        assert_eq!(histogram.percentile(99.0), 0);
        assert_eq!(histogram.max(), 0);
    }
}
