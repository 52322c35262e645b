//! Per-core metrics: counters and HdrHistograms recorded by the owning core
//! without atomics, published to readers without stopping the core.
//!
//! Each core records into its own [`CoreMetrics`]. At *flush points* (when a
//! reader asked for fresh numbers, at most every [`FLUSH_INTERVAL_NS`]
//! otherwise, and always before the core parks) it merges what it recorded
//! into a published copy behind a `parking_lot` mutex and starts afresh. A
//! reader locks the published copies, never the core: a parked core has
//! flushed before it parked, so a snapshot never waits for an idle core.

mod deadline;
mod histogram;
mod named;
mod publish;
mod stall;

pub mod export;
pub mod http;
pub mod scrape;
pub mod stat;
pub mod watch;

pub use histogram::{LatencyHistogram, MAX_TRACKED_NS};
pub use named::NamedHistograms;
pub use publish::Interval;
pub(crate) use publish::{prepare_to_wait, MetricsCell, Recorder};
pub use stall::{HandlerSlot, RunningHandler};

use crate::pool::PoolUsage;

/// A busy core publishes its metrics at least this often (100 ms).
pub const FLUSH_INTERVAL_NS: u64 = 100_000_000;

/// Top of the handler run time and loop turn histograms (10 s): coarser
/// than delivery latency (2 significant digits) to keep publication cheap.
const RUN_TIME_TOP_NS: u64 = 10_000_000_000;

/// Counters of one core's traffic and time. Together, over all cores, the
/// traffic counters add up: `sent == delivered + undelivered` (see
/// [`crate::runtime::ShutdownReport`]).
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
    /// Requests the core's handler reported serving
    /// ([`Context::count_requests`](crate::runtime::Context::count_requests)):
    /// for `corelane serve`, the commands its clients sent. The work a core
    /// does for sockets shows here, where no lane message counts it.
    pub requests: u64,
    /// Nanoseconds spent in turns that found work.
    pub busy_ns: u64,
    /// Nanoseconds spent in turns that found none, spinning or yielding.
    pub spinning_ns: u64,
    /// Nanoseconds spent parked.
    pub parked_ns: u64,
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
        self.requests += other.requests;
        self.busy_ns += other.busy_ns;
        self.spinning_ns += other.spinning_ns;
        self.parked_ns += other.parked_ns;
    }

    /// Share of the accounted time that was busy, 0.0 to 1.0 (0 when no
    /// time was accounted).
    pub fn busy_share(&self) -> f64 {
        let total = self.busy_ns + self.spinning_ns + self.parked_ns;
        if total == 0 {
            0.0
        } else {
            self.busy_ns as f64 / total as f64
        }
    }
}

/// Levels one core last observed: the newest value wins when a core
/// publishes; summed when cores are merged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Bytes waiting in the core's inbound lanes, at its last publication.
    pub lane_backlog_bytes: u64,
    /// Bytes the handler holds queued for other cores (its own backlog,
    /// reported with [`Context::set_backlog`](crate::runtime::Context::set_backlog)).
    pub handler_backlog_bytes: u64,
    /// Connections the core owns (reported with
    /// [`Context::set_connections`](crate::runtime::Context::set_connections)).
    pub connections: u64,
}

impl Gauges {
    fn add(&mut self, other: &Gauges) {
        self.lane_backlog_bytes += other.lane_backlog_bytes;
        self.handler_backlog_bytes += other.handler_backlog_bytes;
        self.connections += other.connections;
    }

    /// Lane and handler backlog together, in bytes.
    pub fn backlog_bytes(&self) -> u64 {
        self.lane_backlog_bytes + self.handler_backlog_bytes
    }
}

/// What one core has recorded.
#[derive(Clone, Debug)]
pub struct CoreMetrics {
    /// Traffic and time counters.
    pub counters: Counters,
    /// Levels at the last publication.
    pub gauges: Gauges,
    /// Cross-core delivery latency of every kind together: from the send
    /// timestamp in the frame header to the moment the receiving core hands
    /// the frame to its handler, in nanoseconds. Filled when the core
    /// publishes (the core itself records only `delivery_by_kind`).
    pub delivery: LatencyHistogram,
    /// Frames the core reads from one lane per turn, as it adapts to the
    /// backlog within the builder's bounds: the size in use when the core
    /// last published (a gauge; in [`Snapshot::merged`], the largest).
    pub drain_batch: u64,
    /// The core's buffer pool as last read (a reading, not an interval's
    /// count: a later flush replaces it).
    pub pool: PoolUsage,
    /// Delivery latency by message kind ([`crate::frame::Message::kind`]).
    pub delivery_by_kind: NamedHistograms,
    /// How long each handler ran per call: by message kind for
    /// `on_message`, and `on_io`, `on_timer`, `on_turn` for the other
    /// callbacks.
    pub handler_time: NamedHistograms,
    /// Length of each loop turn that found work: how long a newly arrived
    /// message may wait for the loop to come round.
    pub turn_lag: LatencyHistogram,
}

impl Default for CoreMetrics {
    fn default() -> Self {
        CoreMetrics {
            counters: Counters::default(),
            gauges: Gauges::default(),
            delivery: LatencyHistogram::new(),
            delivery_by_kind: NamedHistograms::default(),
            handler_time: NamedHistograms::new(RUN_TIME_TOP_NS, 2),
            turn_lag: LatencyHistogram::with_bounds(RUN_TIME_TOP_NS, 2),
            drain_batch: 0,
            pool: PoolUsage::default(),
        }
    }
}

impl CoreMetrics {
    /// Adds `other` into `self`: counters and gauges summed, histograms
    /// merged, pool readings added up. This is how cores are totalled.
    pub fn merge(&mut self, other: &CoreMetrics) {
        self.counters.add(&other.counters);
        self.gauges.add(&other.gauges);
        self.delivery.merge(&other.delivery);
        // A gauge: the later interval's value replaces the earlier one.
        if other.drain_batch != 0 {
            self.drain_batch = other.drain_batch;
        }
        self.pool.add(&other.pool);
        self.delivery_by_kind.merge(&other.delivery_by_kind);
        self.handler_time.merge(&other.handler_time);
        self.turn_lag.merge(&other.turn_lag);
    }

    /// Gives `self` an empty histogram for every message kind and handler
    /// `other` has, so that adding such an interval to it allocates nothing.
    fn include_names_of(&mut self, other: &CoreMetrics) {
        self.delivery_by_kind
            .include_names_of(&other.delivery_by_kind);
        self.handler_time.include_names_of(&other.handler_time);
    }

    /// Adds an interval the core recorded: like `merge`, but gauges take
    /// the interval's (newer) values and `delivery` also gathers every
    /// kind.
    fn absorb(&mut self, interval: &CoreMetrics) {
        let gauges = interval.gauges;
        self.merge(interval);
        self.gauges = gauges;
        // A pool reading replaces the last one; only counts add up.
        self.pool = interval.pool;
        for (_, histogram) in interval.delivery_by_kind.iter() {
            self.delivery.merge(histogram);
        }
    }

    /// Starts a new interval; the pool reading stays until the next one.
    fn reset(&mut self) {
        self.counters = Counters::default();
        self.delivery.reset();
        self.delivery_by_kind.reset();
        self.handler_time.reset();
        self.turn_lag.reset();
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
