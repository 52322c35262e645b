//! Per-core metrics: counters and HdrHistograms recorded by the owning core
//! without atomics, published to readers without stopping the core.
//!
//! Each core records into its own [`CoreMetrics`]. At *flush points* (when a
//! reader asked for fresh numbers, at most every [`FLUSH_INTERVAL_NS`]
//! otherwise, and always before the core parks) it merges what it recorded
//! into a published copy behind a `parking_lot` mutex and starts afresh. A
//! reader locks the published copies, never the core: a parked core has
//! flushed before it parked, so a snapshot never waits for an idle core.

mod histogram;
mod publish;

pub use histogram::LatencyHistogram;
pub(crate) use publish::{MetricsCell, Recorder};

use crate::pool::PoolUsage;

/// A busy core publishes its metrics at least this often (100 ms).
pub const FLUSH_INTERVAL_NS: u64 = 100_000_000;

/// Counters of one core's traffic. Together, over all cores, they add up:
/// `sent == delivered + undelivered` (see [`crate::runtime::ShutdownReport`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Messages this core wrote into a lane.
    pub sent: u64,
    /// Messages this core read from a lane and handed to its handler.
    pub delivered: u64,
    /// Messages this core could not send because a lane was full (handed
    /// back to the sender, not lost).
    pub refused: u64,
    /// Loop turns run.
    pub turns: u64,
    /// Times the core parked.
    pub parks: u64,
    /// Delayed messages scheduled (`Context::send_after`); each is later
    /// sent, cancelled, or listed as held at shutdown.
    pub delayed: u64,
    /// Messages put in a backpressure overflow queue instead of a lane
    /// (sent on later, or listed as held at shutdown).
    pub overflowed: u64,
    /// Timers that fired (handler timers and delayed messages).
    pub timers_fired: u64,
}

impl Counters {
    fn add(&mut self, other: &Counters) {
        self.sent += other.sent;
        self.delivered += other.delivered;
        self.refused += other.refused;
        self.turns += other.turns;
        self.parks += other.parks;
        self.delayed += other.delayed;
        self.overflowed += other.overflowed;
        self.timers_fired += other.timers_fired;
    }
}

/// What one core has recorded.
#[derive(Clone, Debug, Default)]
pub struct CoreMetrics {
    /// Traffic counters.
    pub counters: Counters,
    /// Cross-core delivery latency: from the send timestamp in the frame
    /// header to the moment the receiving core hands the frame to its
    /// handler, in nanoseconds.
    pub delivery: LatencyHistogram,
    /// Frames the core reads from one lane per turn, as it adapts to the
    /// backlog within the builder's bounds: the size in use when the core
    /// last published (a gauge; in [`Snapshot::merged`], the largest).
    pub drain_batch: u64,
    /// The core's buffer pool as last read (a reading, not an interval's
    /// count: a later flush replaces it).
    pub pool: PoolUsage,
}

impl CoreMetrics {
    /// Adds `other` into `self` (counters summed, histograms merged, pool
    /// readings added up, as for a total over cores).
    pub fn merge(&mut self, other: &CoreMetrics) {
        self.counters.add(&other.counters);
        self.delivery.merge(&other.delivery);
        // A gauge: the later interval's value replaces the earlier one.
        if other.drain_batch != 0 {
            self.drain_batch = other.drain_batch;
        }
        self.pool.add(&other.pool);
    }

    /// Starts a new interval; the pool reading stays until the next one.
    fn reset(&mut self) {
        self.counters = Counters::default();
        self.delivery.reset();
    }
}

/// Metrics of every core, as last published.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// One entry per core, by core index.
    pub cores: Vec<CoreMetrics>,
}

impl Snapshot {
    /// All cores merged into one.
    pub fn merged(&self) -> CoreMetrics {
        let mut total = CoreMetrics::default();
        for core in &self.cores {
            total.merge(core);
        }
        total.drain_batch = self
            .cores
            .iter()
            .map(|core| core.drain_batch)
            .max()
            .unwrap_or(0);
        total
    }
}
