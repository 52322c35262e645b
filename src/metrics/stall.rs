//! Which handler a core is running, and since when, for a stall detector
//! on another thread.
//!
//! The core writes two words before each handler call and one after; a
//! watcher reads them whenever it likes. The core never waits for the
//! watcher and the watcher never waits for the core: a handler that runs
//! too long is seen while it is still running.

use parking_lot::Mutex;

use crate::sync::{AtomicU64, AtomicUsize, Ordering};

/// No handler is running (`started_ns` holds this).
const IDLE: u64 = 0;

/// One core's "handler running" slot.
#[derive(Debug, Default)]
pub struct HandlerSlot {
    /// When the running handler started, on [`crate::clock`], plus one (so
    /// that a start at clock zero is not [`IDLE`]); `IDLE` between calls.
    started_ns: AtomicU64,
    /// Index of the running handler's name in `names`.
    handler: AtomicUsize,
    /// Handler names by index, appended by the core the first time it
    /// runs a handler (rare), read by the watcher.
    names: Mutex<Vec<&'static str>>,
}

/// A handler seen running by [`HandlerSlot::running`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunningHandler {
    /// The handler's name (a message kind, `on_io`, `on_timer` or `on_turn`).
    pub name: &'static str,
    /// When it started, on [`crate::clock`].
    pub started_ns: u64,
}

impl HandlerSlot {
    /// Adds `name` at `index` if the slot does not know it yet. Called by
    /// the core when a handler name is first seen.
    pub(crate) fn learn(&self, index: usize, name: &'static str) {
        let mut names = self.names.lock();
        if names.len() <= index {
            names.resize(index + 1, "?");
        }
        names[index] = name;
    }

    /// The core is about to run handler `index`.
    #[inline]
    pub(crate) fn enter(&self, index: usize, now_ns: u64) {
        self.handler.store(index, Ordering::Relaxed);
        // Pairs with the Acquire load in `running`: a watcher that sees
        // this start sees the handler index stored before it.
        self.started_ns.store(now_ns + 1, Ordering::Release);
    }

    /// The handler has returned.
    #[inline]
    pub(crate) fn leave(&self) {
        self.started_ns.store(IDLE, Ordering::Relaxed);
    }

    /// A guard that marks the slot idle if the handler it is taken for
    /// unwinds. A host driving a core (`start_manual`, `start_hosted`) may
    /// catch the panic and wait long before its next turn: without this the
    /// slot would go on naming the failed handler, and a watcher would see
    /// a stall that is not there. A handler that returns is left through
    /// the recorder as usual; the guard then does nothing.
    #[inline]
    pub(crate) fn leave_on_unwind(&self) -> LeaveOnUnwind<'_> {
        LeaveOnUnwind { slot: self }
    }

    /// The handler running now, if any. A handler that changes while this
    /// reads is reported as not running (the next look will see it).
    pub fn running(&self) -> Option<RunningHandler> {
        let started = self.started_ns.load(Ordering::Acquire);
        if started == IDLE {
            return None;
        }
        let index = self.handler.load(Ordering::Relaxed);
        // The core may have moved on between the two loads: the pair is
        // consistent only if the start time is unchanged.
        if self.started_ns.load(Ordering::Acquire) != started {
            return None;
        }
        let name = self.names.lock().get(index).copied().unwrap_or("?");
        Some(RunningHandler {
            name,
            started_ns: started - 1,
        })
    }
}

/// Marks its [`HandlerSlot`] idle when dropped during a panic; made by
/// [`HandlerSlot::leave_on_unwind`].
#[derive(Debug)]
#[must_use = "the slot is left on unwind only while the guard is held"]
pub(crate) struct LeaveOnUnwind<'a> {
    slot: &'a HandlerSlot,
}

impl Drop for LeaveOnUnwind<'_> {
    #[inline]
    fn drop(&mut self) {
        // On a normal return the recorder has left the slot already (and
        // timed the handler); only an unwind skips it.
        if std::thread::panicking() {
            self.slot.leave();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_the_running_handler_by_name() {
        let slot = HandlerSlot::default();
        assert_eq!(slot.running(), None);
        slot.learn(0, "on_turn");
        slot.learn(2, "Publish");
        slot.enter(2, 0);
        assert_eq!(
            slot.running(),
            Some(RunningHandler {
                name: "Publish",
                started_ns: 0
            })
        );
        slot.leave();
        assert_eq!(slot.running(), None);
        slot.enter(1, 7);
        assert_eq!(slot.running().map(|r| r.name), Some("?"));
    }

    #[test]
    fn an_unwinding_handler_leaves_the_slot() {
        let slot = HandlerSlot::default();
        slot.learn(0, "Publish");
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            slot.enter(0, 5);
            let _running = slot.leave_on_unwind();
            panic!("the handler fails");
        }));
        assert!(unwound.is_err());
        assert_eq!(slot.running(), None);

        // Returning, the guard leaves the slot to the recorder.
        slot.enter(0, 9);
        drop(slot.leave_on_unwind());
        assert_eq!(slot.running().map(|r| r.started_ns), Some(9));
    }
}
