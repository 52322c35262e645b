//! Backpressure: a bound on the messages in flight to each destination, and
//! what a send does when the bound (or the lane) has no room.
//!
//! *In flight* from core `a` to core `b` are the messages `a` has written
//! into its lanes to `b` that `b` has not yet read. The receiver publishes
//! how many it has read from each sender once per drained lane
//! (`Shared::consumed`); the sender keeps its own count of what it wrote
//! and a cached copy of the receiver's, which it refreshes only when the
//! cached view says the bound is reached (as a lane caches the consumer's
//! index), so a sender under the bound reads no shared memory.
//!
//! When a destination has no room, the policy decides:
//!
//! - [`Backpressure::Refuse`]: the send fails with `SendError::Full`, which
//!   hands the message back; counted in `refused`.
//! - [`Backpressure::Overflow`]: the message is serialized into a bounded
//!   local queue for that destination (counted in `overflowed`) and the
//!   send succeeds; the core moves queued messages into the lane, in order,
//!   as room appears. While a destination's queue holds anything, new
//!   sends to it queue behind, so per-destination order is kept. A full
//!   queue refuses as `Refuse` does. Messages still queued when the core
//!   exits are listed in the shutdown report's `held`. A message too large
//!   for a lane frame is held in a pooled buffer and sent on as its handle
//!   (see `held.rs`).

use std::collections::VecDeque;

use super::context::{blocked_bit, Outbox, BLOCKED_BOUND};
use super::held::HeldFrame;
use super::report::tally;
use super::Shared;
use crate::lane::frames::ClaimError;
use crate::metrics::Counters;

/// What a send does when its destination has no room.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backpressure {
    /// Refuse and hand the message back. The default.
    #[default]
    Refuse,
    /// Hold up to `capacity` messages per destination in a local overflow
    /// queue, sent on as room appears; refuse beyond that.
    Overflow {
        /// Messages held per destination, at most.
        capacity: usize,
    },
}

/// One core's sending-side accounting, per destination.
pub(crate) struct Flow {
    /// The bound on messages in flight per destination, if any.
    pub(crate) max_in_flight: Option<u64>,
    pub(crate) policy: Backpressure,
    /// Messages written into the lanes to each destination.
    pub(crate) written: Vec<u64>,
    /// The destination's count of messages read from this core, as last
    /// loaded from `Shared::consumed`.
    pub(crate) cached_consumed: Vec<u64>,
    /// Messages waiting for room, per destination, oldest first.
    pub(crate) overflow: Vec<VecDeque<HeldFrame>>,
    /// Whether any overflow queue holds a message.
    pub(crate) overflowing: bool,
}

impl Flow {
    pub(crate) fn new(cores: usize, max_in_flight: Option<u64>, policy: Backpressure) -> Self {
        Flow {
            max_in_flight,
            policy,
            written: vec![0; cores],
            cached_consumed: vec![0; cores],
            overflow: (0..cores).map(|_| VecDeque::new()).collect(),
            overflowing: false,
        }
    }

    /// Whether one more message to `to` stays within the bound, given the
    /// cached count of what `to` has read; `refresh` loads the real count
    /// and is called only when the cached one says no.
    #[inline]
    pub(crate) fn admits(&mut self, to: usize, refresh: impl FnOnce() -> u64) -> bool {
        let Some(bound) = self.max_in_flight else {
            return true;
        };
        if self.written[to] - self.cached_consumed[to] < bound {
            return true;
        }
        self.cached_consumed[to] = refresh();
        self.written[to] - self.cached_consumed[to] < bound
    }

    /// Whether the overflow queue to `to` has room for one more message.
    pub(crate) fn overflow_has_room(&self, to: usize) -> bool {
        match self.policy {
            Backpressure::Refuse => false,
            Backpressure::Overflow { capacity } => self.overflow[to].len() < capacity,
        }
    }
}

impl Outbox {
    /// Writes a held message (a delayed one whose time has come) into its
    /// lane, or, if the destination has no room or messages queued before
    /// it, queues it in the destination's overflow queue whatever its
    /// bound: it was accepted when it was scheduled.
    pub(crate) fn send_held(
        &mut self,
        core: usize,
        held: HeldFrame,
        shared: &Shared,
        counters: &mut Counters,
    ) {
        let to = held.to;
        let held = if self.flow.overflow[to].is_empty() {
            match self.try_write_held(core, held, shared, counters) {
                Ok(()) => return,
                Err(held) => held,
            }
        } else {
            held
        };
        self.flow.overflow[to].push_back(held);
        self.flow.overflowing = true;
        counters.overflowed += 1;
    }

    /// Moves queued messages into their lanes, oldest first, while their
    /// destinations have room; returns how many moved.
    pub(crate) fn flush_overflow(
        &mut self,
        core: usize,
        shared: &Shared,
        counters: &mut Counters,
    ) -> usize {
        if !self.flow.overflowing {
            return 0;
        }
        let mut moved = 0;
        let mut left = false;
        for to in 0..self.flow.overflow.len() {
            while let Some(held) = self.flow.overflow[to].pop_front() {
                if let Err(held) = self.try_write_held(core, held, shared, counters) {
                    self.flow.overflow[to].push_front(held);
                    break;
                }
                moved += 1;
            }
            left |= !self.flow.overflow[to].is_empty();
        }
        self.flow.overflowing = left;
        moved
    }

    /// Writes `held` into its lane if its destination has room; marks the
    /// destination blocked and hands it back if not.
    fn try_write_held(
        &mut self,
        core: usize,
        held: HeldFrame,
        shared: &Shared,
        counters: &mut Counters,
    ) -> Result<(), HeldFrame> {
        let (to, priority) = (held.to, held.priority);
        if !self.flow.admits(to, || shared.consumed(core, to)) {
            self.blocked[to] |= BLOCKED_BOUND;
            return Err(held);
        }
        match held.write_into(&mut self.lanes_for(priority)[to]) {
            Ok(()) => {
                self.wrote(core, to, priority, &mut counters.sent);
                Ok(())
            }
            Err((ClaimError::Full, held)) => {
                self.blocked[to] |= blocked_bit(priority);
                Err(held)
            }
            Err((error @ ClaimError::TooLarge { .. }, held)) => {
                // Sizes are checked when a message is held, so this is a
                // bug in corelane; the message is reported, not lost.
                debug_assert!(false, "held {} to core {to}: {error}", held.kind);
                log::error!("core {core}: held {} to core {to}: {error}", held.kind);
                tally(&mut self.abandoned, held.kind, 1);
                Ok(())
            }
        }
    }

    /// Tallies what the overflow queues still hold, by kind, and empties
    /// them (at exit).
    pub(crate) fn take_held(&mut self, held: &mut Vec<super::Undelivered>) {
        for queue in &mut self.flow.overflow {
            for frame in queue.drain(..) {
                tally(held, frame.kind, 1);
            }
        }
        self.flow.overflowing = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_is_checked_against_a_cached_count() {
        let mut flow = Flow::new(2, Some(2), Backpressure::Refuse);
        let mut loads = 0;
        flow.written[1] = 1;
        assert!(flow.admits(1, || unreachable!("under the bound, no load")));
        flow.written[1] = 2;
        assert!(!flow.admits(1, || {
            loads += 1;
            0
        }));
        assert!(flow.admits(1, || {
            loads += 1;
            1
        }));
        assert_eq!(loads, 2);
        // The refreshed count is kept: under the bound again, no load.
        assert!(flow.admits(1, || unreachable!()));
    }

    #[test]
    fn without_a_bound_everything_is_admitted() {
        let mut flow = Flow::new(1, None, Backpressure::Refuse);
        flow.written[0] = u64::MAX;
        assert!(flow.admits(0, || unreachable!()));
        assert!(!flow.overflow_has_room(0));
    }
}
