//! The hand-over of one core's metrics to readers on other threads.

use parking_lot::Mutex;

use super::{CoreMetrics, FLUSH_INTERVAL_NS};
use crate::pool::PoolProbe;
use crate::sync::{AtomicU64, Ordering};

/// What a core shares with readers: the published copy of its metrics and
/// the request counter a reader bumps to ask for a flush.
#[derive(Debug, Default)]
pub(crate) struct MetricsCell {
    /// Bumped by readers who want fresh numbers.
    requested: AtomicU64,
    /// The last request the core has answered with a flush.
    answered: AtomicU64,
    published: Mutex<CoreMetrics>,
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

    /// A copy of the published metrics.
    pub(crate) fn read(&self) -> CoreMetrics {
        self.published.lock().clone()
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
}

impl Recorder {
    pub(crate) fn new(cell: std::sync::Arc<MetricsCell>) -> Self {
        Recorder {
            local: CoreMetrics::default(),
            cell,
            last_flush_ns: 0,
            pool: None,
        }
    }

    /// Also publishes `pool`'s usage at every flush.
    pub(crate) fn with_pool(mut self, pool: PoolProbe) -> Self {
        self.pool = Some(pool);
        self
    }

    /// Flushes if a reader asked or the interval has passed.
    #[inline]
    pub(crate) fn maybe_flush(&mut self, now_ns: u64) {
        let asked = self.cell.requested.load(Ordering::Relaxed)
            != self.cell.answered.load(Ordering::Relaxed);
        if asked || now_ns.saturating_sub(self.last_flush_ns) >= FLUSH_INTERVAL_NS {
            self.flush(now_ns);
        }
    }

    /// Merges what was recorded into the published copy and starts afresh.
    pub(crate) fn flush(&mut self, now_ns: u64) {
        let request = self.cell.requested.load(Ordering::Relaxed);
        if let Some(pool) = &self.pool {
            self.local.pool = pool.usage();
        }
        {
            let mut published = self.cell.published.lock();
            published.merge(&self.local);
            // A reading replaces the last one; only counts add up.
            published.pool = self.local.pool;
        }
        self.local.reset();
        self.last_flush_ns = now_ns;
        // Pairs with the Acquire load in `MetricsCell::answered`.
        self.cell.answered.store(request, Ordering::Release);
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
        recorder.local.delivery.record(1_000);
        let request = cell.request();
        assert!(!cell.answered(request));
        assert_eq!(cell.read().counters.sent, 0);
        recorder.maybe_flush(1);
        assert!(cell.answered(request));
        let published = cell.read();
        assert_eq!(published.counters.sent, 5);
        assert_eq!(published.delivery.count(), 1);
        // Flushing again adds nothing twice.
        recorder.flush(2);
        assert_eq!(cell.read().counters.sent, 5);
    }
}
