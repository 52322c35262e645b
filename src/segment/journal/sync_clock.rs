//! The clock a journal writer measures its [`super::Durability::Every`]
//! period on.
//!
//! By default the process's monotonic clock ([`crate::clock::now_ns`]), the
//! one the runtime's timers run on too; a runtime on a virtual clock (or a
//! test) hands the writer that clock instead, so the period and the timer
//! that enforces it agree.

use std::fmt;

/// Nanoseconds that never go back.
pub(crate) struct SyncClock(Option<Box<dyn Fn() -> u64 + Send + Sync>>);

impl SyncClock {
    /// A clock read through `now_ns`.
    pub(crate) fn new(now_ns: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        SyncClock(Some(Box::new(now_ns)))
    }

    /// The time now, in nanoseconds.
    pub(crate) fn now_ns(&self) -> u64 {
        match &self.0 {
            Some(now_ns) => now_ns(),
            None => crate::clock::now_ns(),
        }
    }
}

impl Default for SyncClock {
    /// The monotonic clock.
    fn default() -> Self {
        SyncClock(None)
    }
}

impl fmt::Debug for SyncClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = if self.0.is_some() {
            "custom"
        } else {
            "monotonic"
        };
        f.write_str(name)
    }
}
