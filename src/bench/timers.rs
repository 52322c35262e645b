//! Timers: scheduling and cancelling on the timing wheel against a binary
//! heap keyed by deadline, with most timers cancelled before they fire (the
//! common case in servers).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use super::{Report, Settings};
use crate::timer::Wheel;

pub(super) fn run(settings: &Settings, report: &mut Report) {
    let pending = if settings.measure.as_millis() < 1_000 {
        10_000
    } else {
        100_000
    };
    let operations = pending * 10;

    // Wheel: keep `pending` timers; each step schedules one and cancels
    // the oldest.
    let mut wheel: Wheel<u64> = Wheel::with_capacity(Duration::from_millis(1), pending + 1);
    let mut handles = std::collections::VecDeque::with_capacity(pending + 1);
    for i in 0..pending as u64 {
        handles.push_back(wheel.schedule(1_000_000 + i * 997 % 10_000_000_000, i));
    }
    let started = Instant::now();
    for i in 0..operations as u64 {
        handles.push_back(wheel.schedule(1_000_000 + i * 997 % 10_000_000_000, i));
        if let Some(oldest) = handles.pop_front() {
            black_box(wheel.cancel(oldest));
        }
    }
    let wheel_ns = started.elapsed().as_nanos() as f64 / operations as f64;

    // Heap: cancellation by a tombstone set is the usual trick; here the
    // heap pops what would have been cancelled, the cheaper half of it.
    let mut heap = BinaryHeap::with_capacity(pending + 1);
    for i in 0..pending as u64 {
        heap.push(Reverse((1_000_000 + i * 997 % 10_000_000_000, i)));
    }
    let started = Instant::now();
    for i in 0..operations as u64 {
        heap.push(Reverse((1_000_000 + i * 997 % 10_000_000_000, i)));
        black_box(heap.pop());
    }
    let heap_ns = started.elapsed().as_nanos() as f64 / operations as f64;

    let name = format!("schedule + cancel, {pending} pending");
    report.push(
        "timers",
        format!("wheel: {name}"),
        vec![("ns_per_op", wheel_ns)],
    );
    report.push(
        "timers",
        format!("BinaryHeap: push + pop, {pending} pending"),
        vec![("ns_per_op", heap_ns)],
    );
}
