//! The pipeline floor: the pipeline of [`super::pipeline`] with no
//! runtime, no lane and no message, only two cache lines between two
//! pinned, busy-spinning threads on the CPUs corelane's pipeline uses.
//!
//! The schedule and the measurement are the corelane pipeline's: request
//! `k` is due at `start_ns + k * period_ns`, and its latency runs from
//! that intended time to the moment the client sees it answered, so a
//! stalled client or server owes every request that fell due meanwhile.
//! A request is a bump of the client's sequence counter; an answer is the
//! server storing the highest sequence it has seen. Nothing that carries
//! a message can do less, so this is the least any spinning cross-core
//! pipeline can show at that rate on this machine: its tail is the
//! machine's (the time each spinning CPU loses to the kernel, see
//! [`super::hiccups`]), not corelane's.

use std::hint::spin_loop;
use std::sync::atomic::{AtomicU64, Ordering};

use super::pin;
use super::pipeline::Schedule;
use crate::clock;
use crate::metrics::LatencyHistogram;

/// Longest the client waits for outstanding answers after the last
/// request is due (as the corelane pipeline's drain).
const DRAIN_NS: u64 = 1_000_000_000;

/// The server's stop signal in the request line: never a real count.
const STOP: u64 = u64::MAX;

/// A counter alone on its cache lines (128 bytes: adjacent-line
/// prefetch), written by one side only.
#[repr(align(128))]
#[derive(Default)]
struct SequenceLine(AtomicU64);

/// Runs `schedule`: client on the first CPU, server on the second, both
/// spinning. Returns the answer latencies from the intended send times of
/// the requests due at or after `schedule.record_from_ns`.
pub(super) fn run(schedule: Schedule) -> LatencyHistogram {
    // Requests issued so far (request k is issued when this reaches k + 1).
    let issued = SequenceLine::default();
    // The highest count of requests the server has seen.
    let answered = SequenceLine::default();
    std::thread::scope(|scope| {
        scope.spawn(|| serve(&issued, &answered));
        let client = scope.spawn(|| {
            let histogram = request(schedule, &issued, &answered);
            // Pairs with the server's Acquire load: it stops spinning.
            issued.0.store(STOP, Ordering::Release);
            histogram
        });
        client.join().unwrap_or_else(|_| {
            // The server would spin forever without the stop signal.
            issued.0.store(STOP, Ordering::Release);
            log::error!("pipeline floor: the client panicked");
            LatencyHistogram::new()
        })
    })
}

/// The server: echoes the highest request count it sees until told to
/// stop.
fn serve(issued: &SequenceLine, answered: &SequenceLine) {
    pin(1);
    let mut seen = 0;
    loop {
        // Pairs with the client's Release stores of the count.
        let count = issued.0.load(Ordering::Acquire);
        if count == seen {
            spin_loop();
            continue;
        }
        if count == STOP {
            return;
        }
        seen = count;
        // Pairs with the client's Acquire load of the answer.
        answered.0.store(count, Ordering::Release);
    }
}

/// The client: issues each request as it comes due (all those owed at
/// once, if it was late) and records each newly answered one.
fn request(schedule: Schedule, issued: &SequenceLine, answered: &SequenceLine) -> LatencyHistogram {
    pin(0);
    let intended = |k: u64| schedule.start_ns + k * schedule.period_ns;
    let total = schedule
        .end_ns
        .saturating_sub(schedule.start_ns)
        .div_ceil(schedule.period_ns);
    let mut histogram = LatencyHistogram::new();
    let (mut sent, mut seen) = (0u64, 0u64);
    loop {
        let now = clock::now_ns();
        let due = if now < schedule.start_ns {
            0
        } else {
            ((now - schedule.start_ns) / schedule.period_ns + 1).min(total)
        };
        if due > sent {
            sent = due;
            // Pairs with the server's Acquire load.
            issued.0.store(sent, Ordering::Release);
        }

        // Pairs with the server's Release store of the answer.
        let count = answered.0.load(Ordering::Acquire);
        if count > seen {
            let now = clock::now_ns();
            for k in seen..count {
                if intended(k) >= schedule.record_from_ns {
                    histogram.record(now.saturating_sub(intended(k)));
                }
            }
            seen = count;
        }

        if sent == total && (seen == total || now > schedule.end_ns + DRAIN_NS) {
            return histogram;
        }
        spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn every_recorded_request_is_answered_once() {
        let rate = 20_000;
        let schedule = Schedule::new(rate, Duration::from_millis(10), Duration::from_millis(50));
        let histogram = run(schedule);
        // Requests due from record_from_ns until end_ns, each recorded once
        // (as the corelane client sends them: while intended < end_ns).
        let first = (schedule.record_from_ns - schedule.start_ns).div_ceil(schedule.period_ns);
        let total = (schedule.end_ns - schedule.start_ns).div_ceil(schedule.period_ns);
        assert_eq!(histogram.count(), total - first);
        assert!(histogram.percentile(50.0) <= histogram.percentile(99.0));
        assert!(histogram.percentile(50.0) > 0);
    }
}
