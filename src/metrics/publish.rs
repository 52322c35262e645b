//! The hand-over of one core's metrics to readers on other threads.
//!
//! The core records into its own [`CoreMetrics`] with plain writes. At a
//! flush point it adds what it recorded to two published copies behind a
//! short `parking_lot` lock: the running total (for snapshots, Prometheus,
//! INFO) and the current interval. A reader of intervals (the watcher, an
//! interval log) takes the interval by swapping it with an empty one it
//! brings: the swap moves a few pointers, and neither side ever waits for
//! the other to do more than that.

use parking_lot::Mutex;

use super::stall::HandlerSlot;
use super::{CoreMetrics, FLUSH_INTERVAL_NS};
use crate::clock;
use crate::pool::PoolProbe;
use crate::sync::{AtomicU64, Ordering};

/// What a core shares with readers: the published copies of its metrics,
/// the request counter a reader bumps to ask for a flush, and the slot
/// that says which handler is running.
#[derive(Debug)]
pub(crate) struct MetricsCell {
    /// Bumped by readers who want fresh numbers.
    requested: AtomicU64,
    /// The last request the core has answered with a flush.
    answered: AtomicU64,
    published: Mutex<Published>,
    /// The next interval's empty copy, made by the last reader to take one.
    /// Only readers lock it; the core never does.
    spare: Mutex<Option<CoreMetrics>>,
    pub(crate) slot: HandlerSlot,
}

#[derive(Debug)]
struct Published {
    total: CoreMetrics,
    interval: CoreMetrics,
    /// When the current interval started, on [`crate::clock`].
    interval_start_ns: u64,
}

impl Default for MetricsCell {
    fn default() -> Self {
        MetricsCell {
            requested: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            published: Mutex::new(Published {
                total: CoreMetrics::default(),
                interval: CoreMetrics::default(),
                interval_start_ns: clock::now_ns(),
            }),
            spare: Mutex::new(None),
            slot: HandlerSlot::default(),
        }
    }
}

/// Sets up the calling thread's `parking_lot` wait state now, so that the
/// core's first wait on its metrics lock (when a reader holds it during a
/// flush) does not allocate on the core's thread later: `parking_lot` makes
/// that state on a thread's first wait, and may grow a process-wide table
/// then (measured: a 1 KiB and a 32-byte allocation, at a random moment of
/// a busy core's life).
pub(crate) fn prepare_to_wait() {
    // A key no lock uses: the address of this function's own local.
    let key = 0u8;
    // SAFETY: `validate` returns false, so nothing parks: `park` only looks
    // up (making it on first use) this thread's wait state and returns. The
    // key is an address this function owns, so no other primitive's queue
    // is touched, and the closures neither panic nor call into parking_lot.
    let _ = unsafe {
        parking_lot_core::park(
            std::ptr::addr_of!(key) as usize,
            || false,
            || {},
            |_, _| {},
            parking_lot_core::DEFAULT_PARK_TOKEN,
            None,
        )
    };
}

/// One core's metrics over a stretch of time, taken with
/// [`RuntimeHandle::take_intervals`](crate::runtime::RuntimeHandle::take_intervals).
#[derive(Clone, Debug)]
pub struct Interval {
    /// What the core published between `start_ns` and `end_ns`.
    pub metrics: CoreMetrics,
    /// Start, on [`crate::clock`].
    pub start_ns: u64,
    /// End, on [`crate::clock`].
    pub end_ns: u64,
}

impl MetricsCell {
    /// Asks the core to flush; returns the request to wait for.
    pub(crate) fn request(&self) -> u64 {
        self.requested.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Whether the core has flushed since `request` was made.
    pub(crate) fn answered(&self, request: u64) -> bool {
        // Pairs with the Release store in `Recorder::flush`: a reader that
        // sees the answer sees the flushed numbers.
        self.answered.load(Ordering::Acquire) >= request
    }

    /// A copy of the published running total.
    pub(crate) fn read(&self) -> CoreMetrics {
        self.published.lock().total.clone()
    }

    /// Takes the interval published since the last take, leaving an empty
    /// one in its place.
    ///
    /// The empty one was made at the take before, on the reader's thread:
    /// it has a histogram for every message kind and handler in the
    /// intervals taken so far, so the core's next flush adds to them
    /// instead of allocating new ones on the core's thread. Each spare
    /// holds the names of the one before it as well as those of the
    /// interval just taken, so a quiet interval (a kind that sent nothing
    /// then) does not drop a name from the ones after it.
    pub(crate) fn take_interval(&self) -> Interval {
        let mut spare_slot = self.spare.lock();
        let mut spare = spare_slot.take().unwrap_or_default();
        spare.reset();
        // Its names, passed on to the next spare below.
        let mut next = spare.clone();
        let now = clock::now_ns();
        let mut published = self.published.lock();
        // Gauges are levels, not sums: the new interval starts from the
        // last ones seen.
        spare.gauges = published.interval.gauges;
        let metrics = std::mem::replace(&mut published.interval, spare);
        let start_ns = std::mem::replace(&mut published.interval_start_ns, now);
        drop(published);
        next.include_names_of(&metrics);
        *spare_slot = Some(next);
        Interval {
            metrics,
            start_ns,
            end_ns: now,
        }
    }
}

/// The core-local side: records without synchronisation, flushes to the
/// cell at flush points.
#[derive(Debug)]
pub(crate) struct Recorder {
    pub(crate) local: CoreMetrics,
    cell: std::sync::Arc<MetricsCell>,
    last_flush_ns: u64,
    /// The core's buffer pool, read at every flush.
    pool: Option<PoolProbe>,
    /// End of the previous turn (or park), on [`crate::clock`].
    last_turn_end_ns: u64,
    /// Handler names the slot has been told about.
    names_known: usize,
}

impl Recorder {
    pub(crate) fn new(cell: std::sync::Arc<MetricsCell>) -> Self {
        let now = clock::now_ns();
        Recorder {
            local: CoreMetrics::default(),
            cell,
            last_flush_ns: now,
            last_turn_end_ns: now,
            names_known: 0,
            pool: None,
        }
    }

    /// Also publishes `pool`'s usage at every flush.
    pub(crate) fn with_pool(mut self, pool: PoolProbe) -> Self {
        self.pool = Some(pool);
        self
    }

    /// Whether a reader asked or the flush interval has passed.
    #[inline]
    pub(crate) fn flush_due(&self, now_ns: u64) -> bool {
        let asked = self.cell.requested.load(Ordering::Relaxed)
            != self.cell.answered.load(Ordering::Relaxed);
        asked || now_ns.saturating_sub(self.last_flush_ns) >= FLUSH_INTERVAL_NS
    }

    /// Whether the core published less than `within_ns` before `now_ns`.
    #[inline]
    pub(crate) fn flushed_since(&self, now_ns: u64, within_ns: u64) -> bool {
        now_ns.saturating_sub(self.last_flush_ns) < within_ns
    }

    /// Adds what was recorded to the published copies and starts afresh.
    pub(crate) fn flush(&mut self, now_ns: u64) {
        let request = self.cell.requested.load(Ordering::Relaxed);
        if let Some(pool) = &self.pool {
            self.local.pool = pool.usage();
        }
        {
            let mut published = self.cell.published.lock();
            published.total.absorb(&self.local);
            published.interval.absorb(&self.local);
        }
        self.local.reset();
        self.last_flush_ns = now_ns;
        // Pairs with the Acquire load in `MetricsCell::answered`.
        self.cell.answered.store(request, Ordering::Release);
    }

    /// A turn ended at `now_ns`, having found work or not.
    #[inline]
    pub(crate) fn end_turn(&mut self, now_ns: u64, worked: bool) {
        let took = now_ns.saturating_sub(self.last_turn_end_ns);
        self.last_turn_end_ns = now_ns;
        let counters = &mut self.local.counters;
        counters.turns += 1;
        if worked {
            counters.busy_ns += took;
            self.local.turn_lag.record(took);
        } else {
            counters.spinning_ns += took;
        }
    }

    /// The core was parked from `from_ns` to `to_ns`.
    pub(crate) fn parked(&mut self, from_ns: u64, to_ns: u64) {
        self.local.counters.parks += 1;
        self.local.counters.parked_ns += to_ns.saturating_sub(from_ns);
        self.last_turn_end_ns = to_ns;
    }

    /// A frame of `kind` sent at `sent_ns` is handed to its handler at
    /// `now_ns`: records its delivery and marks the handler running.
    #[inline]
    pub(crate) fn enter_message(&mut self, kind: &'static str, sent_ns: u64, now_ns: u64) -> usize {
        self.local.counters.delivered += 1;
        self.local
            .delivery_by_kind
            .record(kind, now_ns.saturating_sub(sent_ns));
        self.enter_handler(kind, now_ns)
    }

    /// Handler `name` starts at `now_ns`; returns its index for
    /// [`Recorder::leave_handler`].
    #[inline]
    pub(crate) fn enter_handler(&mut self, name: &'static str, now_ns: u64) -> usize {
        let index = self.local.handler_time.index_of(name);
        if index >= self.names_known {
            self.cell.slot.learn(index, name);
            self.names_known = index + 1;
        }
        self.cell.slot.enter(index, now_ns);
        index
    }

    /// Handler `index` started at `started_ns` and returned at `now_ns`.
    #[inline]
    pub(crate) fn leave_handler(&mut self, index: usize, started_ns: u64, now_ns: u64) {
        self.cell.slot.leave();
        self.local
            .handler_time
            .at(index)
            .record(now_ns.saturating_sub(started_ns));
    }

    /// The handler returned having done nothing worth a sample (an idle
    /// `on_turn`).
    #[inline]
    pub(crate) fn leave_handler_idle(&mut self) {
        self.cell.slot.leave();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn flush_publishes_and_answers_requests() {
        let cell = Arc::new(MetricsCell::default());
        let mut recorder = Recorder::new(Arc::clone(&cell));
        recorder.local.counters.sent = 5;
        let handler = recorder.enter_message("Tick", 0, 1_000);
        recorder.leave_handler(handler, 1_000, 1_500);
        let request = cell.request();
        assert!(!cell.answered(request));
        assert_eq!(cell.read().counters.sent, 0);
        assert!(recorder.flush_due(1));
        recorder.flush(1);
        assert!(cell.answered(request));
        let published = cell.read();
        assert_eq!(published.counters.sent, 5);
        assert_eq!(published.counters.delivered, 1);
        assert_eq!(published.delivery.count(), 1);
        assert_eq!(published.delivery_by_kind.get("Tick").unwrap().count(), 1);
        let run = published.handler_time.get("Tick").unwrap();
        assert_eq!(run.count(), 1);
        assert!(run.max().abs_diff(500) <= 5);
        // Flushing again adds nothing twice.
        recorder.flush(2);
        assert_eq!(cell.read().counters.sent, 5);
    }

    #[test]
    fn intervals_are_swapped_out_and_totals_keep_counting() {
        let cell = Arc::new(MetricsCell::default());
        let mut recorder = Recorder::new(Arc::clone(&cell));
        recorder.local.counters.sent = 3;
        recorder.local.gauges.connections = 4;
        recorder.flush(1);
        let first = cell.take_interval();
        assert_eq!(first.metrics.counters.sent, 3);
        assert!(first.end_ns >= first.start_ns);

        recorder.local.counters.sent = 2;
        recorder.flush(2);
        let second = cell.take_interval();
        assert_eq!(second.metrics.counters.sent, 2);
        assert_eq!(second.metrics.gauges.connections, 4);
        assert_eq!(second.start_ns, first.end_ns);
        assert_eq!(cell.read().counters.sent, 5);

        // Nothing flushed since: an empty interval, gauges carried over.
        let third = cell.take_interval();
        assert_eq!(third.metrics.counters.sent, 0);
        assert_eq!(third.metrics.gauges.connections, 4);
    }

    #[test]
    fn after_two_takes_the_published_interval_has_every_kind_seen() {
        let cell = Arc::new(MetricsCell::default());
        let mut recorder = Recorder::new(Arc::clone(&cell));
        let kinds_in_published_interval = |cell: &MetricsCell| {
            let published = cell.published.lock();
            let kinds: Vec<_> = published
                .interval
                .delivery_by_kind
                .iter()
                .map(|(kind, histogram)| (kind, histogram.count()))
                .collect();
            kinds
        };
        let handler = recorder.enter_message("Tick", 0, 10);
        recorder.leave_handler(handler, 10, 20);
        recorder.flush(1);
        // The first take has no copy to leave: the core starts afresh.
        assert_eq!(cell.take_interval().metrics.delivery.count(), 1);
        assert_eq!(kinds_in_published_interval(&cell), []);
        let handler = recorder.enter_message("Tick", 0, 10);
        recorder.leave_handler(handler, 10, 20);
        recorder.flush(2);
        // From the second on, the interval left in place is an emptied
        // copy of the last: "Tick" is there, at zero, for the next flush.
        let second = cell.take_interval();
        assert_eq!(
            second.metrics.delivery_by_kind.get("Tick").unwrap().count(),
            1
        );
        assert_eq!(kinds_in_published_interval(&cell), [("Tick", 0)]);
        let handler = recorder.enter_message("Tick", 0, 10);
        recorder.leave_handler(handler, 10, 20);
        recorder.flush(3);
        assert_eq!(kinds_in_published_interval(&cell), [("Tick", 1)]);
        assert_eq!(cell.read().delivery.count(), 3);
    }

    /// A quiet interval (no message of a kind seen before) does not take
    /// that kind out of the spares: the interval the core adds to after
    /// it still has the kind, and the core's flush allocates nothing.
    #[test]
    fn a_quiet_interval_leaves_every_kind_in_the_next_spares() {
        let cell = Arc::new(MetricsCell::default());
        let mut recorder = Recorder::new(Arc::clone(&cell));
        let kinds = |cell: &MetricsCell| {
            let published = cell.published.lock();
            let names: Vec<_> = published
                .interval
                .delivery_by_kind
                .iter()
                .map(|(kind, _)| kind)
                .collect();
            names
        };
        let handler = recorder.enter_message("Tick", 0, 10);
        recorder.leave_handler(handler, 10, 20);
        recorder.flush(1);
        cell.take_interval();
        // Quiet: nothing recorded in the interval the first take began.
        recorder.flush(2);
        let quiet = cell.take_interval();
        assert_eq!(quiet.metrics.delivery.count(), 0);
        for take in 3..8 {
            assert_eq!(kinds(&cell), ["Tick"], "after take {take}");
            recorder.flush(take);
            cell.take_interval();
        }
    }

    #[test]
    fn turns_split_time_into_busy_spinning_and_parked() {
        let cell = Arc::new(MetricsCell::default());
        let mut recorder = Recorder::new(Arc::clone(&cell));
        let start = recorder.last_turn_end_ns;
        recorder.end_turn(start + 100, true);
        recorder.end_turn(start + 130, false);
        recorder.parked(start + 130, start + 1_130);
        recorder.end_turn(start + 1_200, true);
        let counters = recorder.local.counters;
        assert_eq!(counters.turns, 3);
        assert_eq!(counters.parks, 1);
        assert_eq!(counters.busy_ns, 170);
        assert_eq!(counters.spinning_ns, 30);
        assert_eq!(counters.parked_ns, 1_000);
        assert_eq!(recorder.local.turn_lag.count(), 2);
    }
}
