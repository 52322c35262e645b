//! A value that counts how many of its kind are alive, for the ring tests
//! that check every value is dropped exactly once. A file includes it with
//! `#[path = "common/tracked.rs"] mod tracked;`.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// A value that counts how many of its kind are alive in its own counter.
pub struct Tracked {
    pub value: u64,
    live: Arc<AtomicI64>,
}

impl Tracked {
    pub fn new(value: u64, live: &Arc<AtomicI64>) -> Self {
        live.fetch_add(1, Ordering::Relaxed);
        Tracked {
            value,
            live: Arc::clone(live),
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let before = self.live.fetch_sub(1, Ordering::Relaxed);
        assert!(before > 0, "value {} dropped twice", self.value);
    }
}
