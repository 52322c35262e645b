//! The floor: the round trip of one value between two pinned threads
//! through two cache lines, with no lane at all. No cross-core message
//! can cost less on this machine; lanes and pipelines are read against it.
//! Then the hiccups of spinning CPUs ([`super::hiccups`]), the floor of a
//! spinning pipeline's tail.

use std::hint::spin_loop;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::report::{curve, latency_fields};
use super::{pin, Report, Settings};
use crate::metrics::LatencyHistogram;

/// A value alone on its cache lines (128 bytes: adjacent-line prefetch).
#[repr(align(128))]
#[derive(Default)]
struct Line(AtomicU64);

pub(super) fn run(settings: &Settings, report: &mut Report) {
    let histogram = round_trips(settings);
    report.push("floor", "cache-line round trip", latency_fields(&histogram));
    report
        .curves
        .push(curve("floor round trip".into(), &histogram));
    // What spinning on these CPUs loses to the machine: the floor of a
    // spinning pipeline's tail.
    super::hiccups::run(settings, report);
}

/// Round trips for `settings.measure`, timed one by one.
pub(super) fn round_trips(settings: &Settings) -> LatencyHistogram {
    let ping = Arc::new(Line::default());
    let pong = Arc::new(Line::default());
    let (ping_b, pong_b) = (Arc::clone(&ping), Arc::clone(&pong));
    let echo = std::thread::spawn(move || {
        pin(1);
        let mut seen = 0;
        loop {
            // Pairs with the Release store of the pinging side.
            let value = ping_b.0.load(Ordering::Acquire);
            if value == seen {
                spin_loop();
                continue;
            }
            seen = value;
            pong_b.0.store(value, Ordering::Release);
            if value == u64::MAX {
                return;
            }
        }
    });
    pin(0);
    let mut histogram = LatencyHistogram::new();
    let started = Instant::now();
    let mut value = 0;
    while started.elapsed() < settings.measure {
        value += 1;
        let sent = Instant::now();
        ping.0.store(value, Ordering::Release);
        // Pairs with the echo's Release store.
        while pong.0.load(Ordering::Acquire) != value {
            spin_loop();
        }
        histogram.record(sent.elapsed().as_nanos() as u64);
    }
    ping.0.store(u64::MAX, Ordering::Release);
    let _ = echo.join();
    histogram
}
