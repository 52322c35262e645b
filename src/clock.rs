//! The one clock all cores stamp frames with.
//!
//! Nanoseconds since a process-wide epoch, on the monotonic clock, so a
//! timestamp taken on one core can be subtracted from one taken on another.

use std::sync::OnceLock;
use std::time::Instant;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since the process's clock epoch (the first call).
#[inline]
pub fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

#[cfg(test)]
mod tests {
    #[test]
    fn never_goes_backwards() {
        let mut last = super::now_ns();
        for _ in 0..1000 {
            let now = super::now_ns();
            assert!(now >= last, "clock went back from {last} to {now}");
            last = now;
        }
    }
}
