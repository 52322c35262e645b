//! What a core does on a turn that found no work.

/// How an idle core waits for work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdleStrategy {
    /// Spin forever: lowest latency, one CPU burnt per core. A core that
    /// shares its CPU with another yields instead of spinning.
    BusySpin,
    /// Spin `spins` idle turns, then yield the CPU on every idle turn.
    SpinThenYield {
        /// Idle turns spent spinning before yielding.
        spins: u32,
    },
    /// Spin `spins` idle turns, yield `yields` more, then park.
    Backoff {
        /// Idle turns spent spinning.
        spins: u32,
        /// Idle turns spent yielding after that.
        yields: u32,
    },
    /// Park at once: block in the poller until a message, an I/O event or
    /// a wake-up arrives. No CPU used while idle.
    Park,
}

impl Default for IdleStrategy {
    /// [`IdleStrategy::Backoff`] with 1000 spins and 10 yields.
    fn default() -> Self {
        IdleStrategy::Backoff {
            spins: 1000,
            yields: 10,
        }
    }
}

/// What to do on this idle turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IdleAction {
    Spin,
    Yield,
    Park,
}

/// Counts idle turns and turns a strategy into actions.
#[derive(Debug)]
pub(crate) struct Idler {
    strategy: IdleStrategy,
    /// Spinning on a CPU another loop needs would starve it: yield instead.
    shared_cpu: bool,
    idle_turns: u32,
}

impl Idler {
    pub(crate) fn new(strategy: IdleStrategy, shared_cpu: bool) -> Self {
        Idler {
            strategy,
            shared_cpu,
            idle_turns: 0,
        }
    }

    /// A turn found work.
    #[inline]
    pub(crate) fn reset(&mut self) {
        self.idle_turns = 0;
    }

    /// A turn found no work: what now.
    pub(crate) fn next(&mut self) -> IdleAction {
        self.idle_turns = self.idle_turns.saturating_add(1);
        let turns = self.idle_turns;
        let action = match self.strategy {
            IdleStrategy::BusySpin => IdleAction::Spin,
            IdleStrategy::SpinThenYield { spins } if turns <= spins => IdleAction::Spin,
            IdleStrategy::SpinThenYield { .. } => IdleAction::Yield,
            IdleStrategy::Backoff { spins, .. } if turns <= spins => IdleAction::Spin,
            IdleStrategy::Backoff { spins, yields } if turns <= spins.saturating_add(yields) => {
                IdleAction::Yield
            }
            IdleStrategy::Backoff { .. } | IdleStrategy::Park => IdleAction::Park,
        };
        if action == IdleAction::Spin && self.shared_cpu {
            IdleAction::Yield
        } else {
            action
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actions(strategy: IdleStrategy, shared_cpu: bool, n: usize) -> Vec<IdleAction> {
        let mut idler = Idler::new(strategy, shared_cpu);
        (0..n).map(|_| idler.next()).collect()
    }

    #[test]
    fn backoff_spins_then_yields_then_parks() {
        use IdleAction::*;
        let strategy = IdleStrategy::Backoff {
            spins: 2,
            yields: 1,
        };
        assert_eq!(actions(strategy, false, 5), [Spin, Spin, Yield, Park, Park]);
    }

    #[test]
    fn a_shared_cpu_never_spins() {
        for strategy in [
            IdleStrategy::BusySpin,
            IdleStrategy::SpinThenYield { spins: 3 },
            IdleStrategy::default(),
        ] {
            let spun = actions(strategy, true, 2000).contains(&IdleAction::Spin);
            assert!(!spun, "{strategy:?} spun on a shared CPU");
        }
    }

    #[test]
    fn work_restarts_the_backoff() {
        let mut idler = Idler::new(IdleStrategy::SpinThenYield { spins: 1 }, false);
        assert_eq!(idler.next(), IdleAction::Spin);
        assert_eq!(idler.next(), IdleAction::Yield);
        idler.reset();
        assert_eq!(idler.next(), IdleAction::Spin);
    }
}
