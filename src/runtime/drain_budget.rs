//! How many frames a core reads from one lane per turn, adapted to the
//! backlog within bounds set on the builder.
//!
//! A small batch keeps turns short (timers and I/O are served often); a
//! large one amortises a turn's fixed costs when lanes are backed up. The
//! budget doubles after a turn that left frames behind in a lane it
//! drained, and halves after a turn in which no lane gave even a quarter of
//! it, staying within `min..=max`. With `min == max` it is fixed.

/// The adaptive per-lane, per-turn batch.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DrainBudget {
    min: usize,
    max: usize,
    current: usize,
}

impl DrainBudget {
    /// A budget within `min..=max`, starting at `min`. Both at least 1.
    pub(crate) fn new(min: usize, max: usize) -> Self {
        debug_assert!(1 <= min && min <= max, "drain budget {min}..={max}");
        DrainBudget {
            min,
            max,
            current: min,
        }
    }

    /// Frames to read from one lane this turn.
    #[inline]
    pub(crate) fn current(&self) -> usize {
        self.current
    }

    /// Adapts after a turn: `backlog` if a lane still held frames after
    /// its batch, `largest` the most frames one lane gave.
    #[inline]
    pub(crate) fn adapt(&mut self, backlog: bool, largest: usize) {
        if backlog {
            self.current = self.current.saturating_mul(2).min(self.max);
        } else if largest < self.current / 4 {
            self.current = (self.current / 2).max(self.min);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_with_a_backlog_and_shrinks_when_quiet_within_bounds() {
        let mut budget = DrainBudget::new(4, 32);
        let mut seen = Vec::new();
        for _ in 0..5 {
            budget.adapt(true, budget.current());
            seen.push(budget.current());
        }
        assert_eq!(seen, [8, 16, 32, 32, 32]);
        // A turn that used a quarter or more keeps the size.
        budget.adapt(false, 8);
        assert_eq!(budget.current(), 32);
        let mut seen = Vec::new();
        for _ in 0..5 {
            budget.adapt(false, 0);
            seen.push(budget.current());
        }
        assert_eq!(seen, [16, 8, 4, 4, 4]);
    }

    #[test]
    fn equal_bounds_fix_the_batch() {
        let mut budget = DrainBudget::new(64, 64);
        budget.adapt(true, 64);
        assert_eq!(budget.current(), 64);
        budget.adapt(false, 0);
        assert_eq!(budget.current(), 64);
    }
}
