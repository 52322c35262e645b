//! Histograms kept by name: one per message kind, one per handler.
//!
//! Names are `&'static str` handed out by the program (a message type's
//! [`kind`](crate::frame::Message::kind), a handler callback's name), so
//! the usual lookup is a pointer comparison over a handful of entries; a
//! new name costs one allocation, the first time it is seen.

use super::LatencyHistogram;

/// Latency histograms by name, in the order the names were first seen.
#[derive(Clone, Debug)]
pub struct NamedHistograms {
    entries: Vec<(&'static str, LatencyHistogram)>,
    /// Position of the name found last: messages come in runs of one kind.
    last: usize,
    /// Bounds of the histograms this set makes.
    top_ns: u64,
    digits: u8,
}

impl Default for NamedHistograms {
    fn default() -> Self {
        Self::new(super::MAX_TRACKED_NS, 3)
    }
}

impl NamedHistograms {
    /// An empty set whose histograms span 1 ns to `top_ns` with `digits`
    /// significant digits.
    pub fn new(top_ns: u64, digits: u8) -> Self {
        NamedHistograms {
            entries: Vec::new(),
            last: 0,
            top_ns,
            digits,
        }
    }

    /// Position of `name`, added if new. Positions never change.
    #[inline]
    pub fn index_of(&mut self, name: &'static str) -> usize {
        if let Some((known, _)) = self.entries.get(self.last) {
            if std::ptr::eq(*known, name) {
                return self.last;
            }
        }
        // Names are usually the same static string each time: compare
        // addresses first, contents only when they differ.
        if let Some(index) = self
            .entries
            .iter()
            .position(|(known, _)| std::ptr::eq(*known, name) || *known == name)
        {
            self.last = index;
            return index;
        }
        self.entries.push((
            name,
            LatencyHistogram::with_bounds(self.top_ns, self.digits),
        ));
        self.last = self.entries.len() - 1;
        self.last
    }

    /// Records `value_ns` under `name`.
    #[inline]
    pub fn record(&mut self, name: &'static str, value_ns: u64) {
        let index = self.index_of(name);
        self.entries[index].1.record(value_ns);
    }

    /// The histogram at `index` (from [`NamedHistograms::index_of`]).
    #[inline]
    pub fn at(&mut self, index: usize) -> &mut LatencyHistogram {
        &mut self.entries[index].1
    }

    /// The histogram kept for `name`, if any.
    pub fn get(&self, name: &str) -> Option<&LatencyHistogram> {
        self.entries
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, histogram)| histogram)
    }

    /// Every name with its histogram.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &LatencyHistogram)> {
        self.entries
            .iter()
            .map(|(name, histogram)| (*name, histogram))
    }

    /// Number of names.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no name was ever recorded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds every histogram of `other` to the one of the same name.
    pub fn merge(&mut self, other: &NamedHistograms) {
        for (name, histogram) in &other.entries {
            if histogram.is_empty() && histogram.saturated() == 0 {
                continue;
            }
            let index = self.index_of(name);
            self.entries[index].1.merge(histogram);
        }
    }

    /// Empties every histogram that holds values; keeps the names.
    pub fn reset(&mut self) {
        for (_, histogram) in &mut self.entries {
            if !histogram.is_empty() || histogram.saturated() > 0 {
                histogram.reset();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_by_name_and_merges_by_name() {
        let mut a = NamedHistograms::default();
        let mut b = NamedHistograms::default();
        a.record("Tick", 100);
        a.record("Quote", 200);
        // A different string with the same contents is the same name.
        let tick = String::from("Tick").leak();
        a.record(tick, 100);
        b.record("Quote", 300);
        b.record("Trade", 400);
        a.merge(&b);
        assert_eq!(a.len(), 3);
        assert_eq!(a.get("Tick").map(LatencyHistogram::count), Some(2));
        assert_eq!(a.get("Quote").map(LatencyHistogram::count), Some(2));
        assert_eq!(a.get("Trade").map(LatencyHistogram::count), Some(1));
        a.reset();
        assert_eq!(a.len(), 3);
        assert_eq!(a.get("Tick").map(LatencyHistogram::count), Some(0));
    }
}
