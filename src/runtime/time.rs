//! The time a runtime's timers run on: the process's monotonic clock, or a
//! virtual clock that a test (or a simulation) moves by hand.
//!
//! Only timers read this source. Frame send timestamps and delivery
//! latency stay on [`crate::clock`], since a latency measured on a clock
//! that stands still would say nothing.
//!
//! A core parks until its next timer is due. On the monotonic clock that is
//! a poll timeout; a virtual clock instead wakes every core of the runtimes
//! it drives whenever it moves, with the same announce-then-recheck
//! handshake as a frame (see `doorbell`): the clock stores the new time,
//! fences, then rings the doorbells of cores that announced sleep; a core
//! announces sleep, fences, then reads the time to see whether a timer has
//! come due.

use std::fmt;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use super::Shared;
use crate::clock;
use crate::sync::{AtomicU64, Ordering};

/// Where a runtime's timers read the time, in nanoseconds.
#[derive(Clone, Debug, Default)]
pub enum TimeSource {
    /// [`crate::clock::now_ns`]: the monotonic clock. The default.
    #[default]
    Monotonic,
    /// A clock that moves only when told to.
    Virtual(VirtualClock),
}

impl TimeSource {
    /// The time now, in nanoseconds from the source's epoch.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        match self {
            TimeSource::Monotonic => clock::now_ns(),
            TimeSource::Virtual(virtual_clock) => virtual_clock.now_ns(),
        }
    }

    /// Lets the virtual clock wake the runtime's cores when it moves.
    pub(crate) fn attach(&self, shared: &Arc<Shared>) {
        if let TimeSource::Virtual(virtual_clock) = self {
            virtual_clock.runtimes.lock().push(Arc::downgrade(shared));
        }
    }

    /// Whether a parked core must be woken by a clock that moves, rather
    /// than time out by itself.
    pub(crate) fn is_virtual(&self) -> bool {
        matches!(self, TimeSource::Virtual(_))
    }
}

/// A clock that stands still until [`advance`](Self::advance)d or
/// [`set`](Self::set): tests of timers then assert exact values instead of
/// waiting on the wall clock. Clones share one time.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use corelane::runtime::VirtualClock;
///
/// let clock = VirtualClock::new();
/// assert_eq!(clock.now_ns(), 0);
/// clock.advance(Duration::from_millis(3));
/// assert_eq!(clock.now_ns(), 3_000_000);
/// ```
#[derive(Clone, Default)]
pub struct VirtualClock {
    now: Arc<AtomicU64>,
    /// The runtimes whose cores this clock wakes when it moves.
    runtimes: Arc<Mutex<Vec<Weak<Shared>>>>,
}

impl fmt::Debug for VirtualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtualClock")
            .field("now_ns", &self.now_ns())
            .finish()
    }
}

impl VirtualClock {
    /// A clock standing at 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// The time now, in nanoseconds.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        // Pairs with the Release store in `set`: a core that sees the new
        // time also sees what the host did before moving the clock.
        self.now.load(Ordering::Acquire)
    }

    /// Moves the clock forward by `by` and wakes the cores it drives.
    pub fn advance(&self, by: std::time::Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.set(self.now_ns().saturating_add(by));
    }

    /// Sets the time to `now_ns`; a time earlier than the current one is
    /// ignored (time never goes back). Wakes the cores it drives.
    pub fn set(&self, now_ns: u64) {
        self.now.fetch_max(now_ns, Ordering::Release);
        let mut runtimes = self.runtimes.lock();
        runtimes.retain(|runtime| match runtime.upgrade() {
            Some(shared) => {
                // The fence in `wake_all` orders the store above before the
                // loads of the cores' sleeping flags; it pairs with the
                // fence of `Doorbell::announce_sleep`, after which a core
                // reads the time again.
                shared.wake_all();
                true
            }
            None => false,
        });
    }
}
