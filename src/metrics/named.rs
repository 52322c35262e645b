//! Histograms kept by name: one per message kind, one per handler.
//!
//! Names are `&'static str` handed out by the program (a message type's
//! [`kind`](crate::frame::Message::kind), a handler callback's name), so
//! the usual lookup compares addresses over a handful of names kept apart
//! from the histograms (a cache line holds four); the contents of a name
//! are compared only when no address matched, and a new name costs one
//! allocation, the first time it is seen.

use super::LatencyHistogram;

/// Latency histograms by name, in the order the names were first seen.
#[derive(Clone, Debug)]
pub struct NamedHistograms {
    /// The names, scanned by address on the record path. Same length and
    /// order as `histograms`.
    names: Vec<&'static str>,
    histograms: Vec<LatencyHistogram>,
    /// Bounds of the histograms this set makes.
    top_ns: u64,
    digits: u8,
}

impl Default for NamedHistograms {
    fn default() -> Self {
        Self::new(super::MAX_TRACKED_NS, 3)
    }
}

/// Whether `a` and `b` are the same string in memory: address and length
/// (a literal may start at the same address as a longer one it prefixes).
#[inline(always)]
fn same_place(a: &str, b: &str) -> bool {
    a.as_ptr() == b.as_ptr() && a.len() == b.len()
}

impl NamedHistograms {
    /// An empty set whose histograms span 1 ns to `top_ns` with `digits`
    /// significant digits.
    pub fn new(top_ns: u64, digits: u8) -> Self {
        NamedHistograms {
            names: Vec::new(),
            histograms: Vec::new(),
            top_ns,
            digits,
        }
    }

    /// Position of `name`, added if new. Positions never change.
    ///
    /// A scan from the first name: a core sees a handful of kinds, and
    /// one address comparison each costs less than remembering the last
    /// one found (kinds often alternate).
    #[inline]
    pub fn index_of(&mut self, name: &'static str) -> usize {
        match self.names.iter().position(|known| same_place(known, name)) {
            Some(index) => index,
            None => self.index_by_contents(name),
        }
    }

    /// Position of `name` when no name sits at its address: the same
    /// contents elsewhere in memory, or a new name.
    #[cold]
    #[inline(never)]
    fn index_by_contents(&mut self, name: &'static str) -> usize {
        match self.names.iter().position(|known| *known == name) {
            Some(index) => index,
            None => {
                self.names.push(name);
                self.histograms
                    .push(LatencyHistogram::with_bounds(self.top_ns, self.digits));
                self.names.len() - 1
            }
        }
    }

    /// Records `value_ns` under `name`.
    #[inline]
    pub fn record(&mut self, name: &'static str, value_ns: u64) {
        // Names and histograms walked together: no index, no bounds check.
        let found = self
            .names
            .iter()
            .zip(self.histograms.iter_mut())
            .find(|(known, _)| same_place(known, name));
        match found {
            Some((_, histogram)) => histogram.record(value_ns),
            None => {
                let index = self.index_by_contents(name);
                self.histograms[index].record(value_ns);
            }
        }
    }

    /// The histogram at `index` (from [`NamedHistograms::index_of`]).
    ///
    /// # Panics
    ///
    /// If `index` was not given by this set's `index_of`.
    #[inline]
    pub fn at(&mut self, index: usize) -> &mut LatencyHistogram {
        &mut self.histograms[index]
    }

    /// The histogram kept for `name`, if any.
    pub fn get(&self, name: &str) -> Option<&LatencyHistogram> {
        self.names
            .iter()
            .position(|known| *known == name)
            .map(|index| &self.histograms[index])
    }

    /// Every name with its histogram.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &LatencyHistogram)> {
        self.names.iter().copied().zip(&self.histograms)
    }

    /// Number of names.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether no name was ever recorded.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Adds every histogram of `other` to the one of the same name.
    pub fn merge(&mut self, other: &NamedHistograms) {
        for (name, histogram) in other.iter() {
            if histogram.is_empty() && histogram.saturated() == 0 {
                continue;
            }
            let index = self.index_of(name);
            self.histograms[index].merge(histogram);
        }
    }

    /// Adds an empty histogram for every name of `other` this set lacks.
    pub fn include_names_of(&mut self, other: &NamedHistograms) {
        for (name, _) in other.iter() {
            self.index_of(name);
        }
    }

    /// Empties every histogram that holds values; keeps the names.
    pub fn reset(&mut self) {
        for histogram in &mut self.histograms {
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

    #[test]
    fn a_name_that_prefixes_another_at_the_same_address_is_its_own() {
        let long: &'static str = "TickTock";
        let short: &'static str = &long[..4];
        assert_eq!(short.as_ptr(), long.as_ptr());
        let mut named = NamedHistograms::default();
        for _ in 0..3 {
            named.record(long, 10);
            named.record(short, 20);
        }
        named.record(short, 20);
        assert_eq!(named.len(), 2);
        assert_eq!(named.get("TickTock").map(LatencyHistogram::count), Some(3));
        assert_eq!(named.get("Tick").map(LatencyHistogram::count), Some(4));
        assert_eq!(named.index_of(long), 0);
        assert_eq!(named.index_of(short), 1);
    }
}
