//! A latency histogram that never panics on the value it is given.

use hdrhistogram::Histogram;

/// Largest value tracked exactly: 60 seconds in nanoseconds. Larger values
/// are recorded as this value and counted in [`LatencyHistogram::saturated`].
pub const MAX_TRACKED_NS: u64 = 60_000_000_000;

/// Nanosecond latencies, 3 significant digits, from 1 ns to 60 s.
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    histogram: Histogram<u64>,
    saturated: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        let histogram =
            Histogram::new_with_bounds(1, MAX_TRACKED_NS, 3).expect("constant bounds are valid");
        LatencyHistogram {
            histogram,
            saturated: 0,
        }
    }

    /// Records one value; values above [`MAX_TRACKED_NS`] are clamped to it
    /// and counted as saturated.
    #[inline]
    pub fn record(&mut self, value_ns: u64) {
        if value_ns > MAX_TRACKED_NS {
            self.saturated += 1;
        }
        self.histogram
            .saturating_record(value_ns.min(MAX_TRACKED_NS));
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        // Both histograms have the same bounds, so `add` cannot fail; the
        // count saturates rather than overflow.
        let _ = self.histogram.add(&other.histogram);
        self.saturated += other.saturated;
    }

    /// Forgets every value.
    pub fn reset(&mut self) {
        self.histogram.reset();
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
    fn empty_histogram_reports_zero() {
        let histogram = LatencyHistogram::new();
        assert_eq!(histogram.percentile(99.0), 0);
        assert_eq!(histogram.max(), 0);
    }
}
