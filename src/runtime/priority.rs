//! Two priority levels per ordered pair of cores, and the guard that keeps
//! the lower one from starving.
//!
//! Every ordered pair of cores has two lanes: the normal lane and a
//! (smaller) high-priority lane. A core drains its high lanes first, every
//! turn. While high lanes still hold frames after their batch (a *high
//! backlog*), the normal lanes wait, but only for `starvation_limit` turns
//! in a row: on the next turn the normal lanes are drained too, whatever
//! the backlog. So a flood of high-priority traffic slows normal traffic
//! to at least one batch every `starvation_limit + 1` turns, never to zero.

/// Which lane a message travels in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Priority {
    /// The normal lane. The default.
    #[default]
    Normal,
    /// The high-priority lane, drained before the normal lanes.
    High,
}

/// Decides, turn by turn, whether the normal lanes are drained.
#[derive(Debug)]
pub(crate) struct StarvationGuard {
    /// Turns in a row the normal lanes may wait behind a high backlog.
    limit: u32,
    /// Turns in a row they have waited.
    waited: u32,
}

impl StarvationGuard {
    pub(crate) fn new(limit: u32) -> Self {
        StarvationGuard { limit, waited: 0 }
    }

    /// Called after the high lanes were drained: whether the normal lanes
    /// are drained this turn, given whether a high backlog remains.
    #[inline]
    pub(crate) fn drain_normal(&mut self, high_backlog: bool) -> bool {
        if high_backlog && self.waited < self.limit {
            self.waited += 1;
            false
        } else {
            self.waited = 0;
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_lanes_wait_at_most_the_limit() {
        let mut guard = StarvationGuard::new(2);
        let turns: Vec<bool> = (0..7).map(|_| guard.drain_normal(true)).collect();
        assert_eq!(turns, [false, false, true, false, false, true, false]);
    }

    #[test]
    fn without_a_high_backlog_normal_lanes_drain_every_turn() {
        let mut guard = StarvationGuard::new(2);
        assert!(!guard.drain_normal(true));
        assert!(guard.drain_normal(false));
        // The wait starts afresh after a drain.
        assert!(!guard.drain_normal(true));
        assert!(!guard.drain_normal(true));
        assert!(guard.drain_normal(true));
    }

    #[test]
    fn a_zero_limit_is_plain_round_robin() {
        let mut guard = StarvationGuard::new(0);
        assert!((0..5).all(|_| guard.drain_normal(true)));
    }
}
