//! A reader that takes metrics intervals over and over (the watcher, an
//! interval log, `serve --metrics`) costs the cores no allocation: each
//! take leaves behind an emptied copy of the interval before it, which has
//! a histogram for every message kind and handler already, so the cores'
//! flushes add to it in place.
//!
//! The allocator counts only allocations made on the cores' threads (a
//! thread-local flag the handler sets), so the reader's own copies do not
//! count. One test in this file: the allocator is the whole process's.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use corelane::frame::Message;
use corelane::runtime::{Context, Handler, Runtime};

mod common;
use common::idle;

struct CountingOnCores;

static CORE_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set on the cores' threads; const-initialised, so reading it never
    /// allocates (and never re-enters the allocator).
    static ON_CORE: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: every call is passed to the system allocator unchanged; the
// counting reads a const thread-local and bumps an atomic, neither of
// which allocates.
unsafe impl GlobalAlloc for CountingOnCores {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

fn count() {
    if ON_CORE.try_with(Cell::get).unwrap_or(false) {
        CORE_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: CountingOnCores = CountingOnCores;

/// Two kinds, so the cores keep latency by kind.
#[derive(rkyv::Archive, rkyv::Serialize)]
enum Volley {
    Ball,
    Note,
}

impl Message for Volley {
    const TYPE_ID: u16 = 9;
    const VERSION: u8 = 1;
    const NAME: &'static str = "Volley";

    fn kind(archived: &ArchivedVolley) -> &'static str {
        match archived {
            ArchivedVolley::Ball => "Ball",
            ArchivedVolley::Note => "Note",
        }
    }
}

/// Bounces a ball between cores 0 and 1 until stopped, with a note from
/// core 1 each time; marks its thread as a core's.
struct Rally;

impl Handler for Rally {
    type Message = Volley;

    fn on_start(&mut self, cx: &mut Context<'_, Volley>) {
        ON_CORE.with(|on_core| on_core.set(true));
        if cx.core() == 0 {
            cx.send(1, &Volley::Ball).unwrap();
        }
    }

    fn on_message(&mut self, cx: &mut Context<'_, Volley>, from: usize, msg: &ArchivedVolley) {
        if let ArchivedVolley::Ball = msg {
            if cx.core() == 1 {
                cx.send(0, &Volley::Note).unwrap();
            }
            cx.send(from, &Volley::Ball).unwrap();
        }
    }
}

#[test]
fn taking_intervals_over_and_over_costs_the_cores_no_allocation() {
    let runtime = Runtime::builder().cores(2).idle(idle()).build().unwrap();
    let running = runtime.start(|_| Rally).unwrap();
    let handle = running.handle();

    // Once both cores have handled both kinds they will ever see (core 0
    // gets balls and notes, core 1 balls), two takes, each followed by a
    // flush: after them the interval each core adds to has every kind and
    // handler (the first flushes set up the published copies, once).
    let started = Instant::now();
    loop {
        let cores = handle.fresh_metrics(Duration::from_secs(10)).cores;
        let seen = |core: usize, kind: &str| {
            cores[core]
                .delivery_by_kind
                .get(kind)
                .is_some_and(|histogram| histogram.count() > 0)
        };
        if seen(0, "Ball") && seen(0, "Note") && seen(1, "Ball") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no rally");
        std::thread::sleep(Duration::from_millis(1));
    }
    for _ in 0..3 {
        handle.take_intervals();
        handle.fresh_metrics(Duration::from_secs(10));
    }

    let before = CORE_ALLOCATIONS.load(Ordering::Relaxed);
    let mut balls = 0;
    for _ in 0..200 {
        let intervals = handle.take_intervals();
        balls += intervals
            .iter()
            .filter_map(|interval| interval.metrics.delivery_by_kind.get("Ball"))
            .map(|histogram| histogram.count())
            .sum::<u64>();
        // Asks every core to flush, and waits until each has.
        handle.fresh_metrics(Duration::from_secs(10));
    }
    let during = CORE_ALLOCATIONS.load(Ordering::Relaxed) - before;

    handle.stop();
    let report = running.wait().unwrap();
    assert!(report.adds_up());
    assert!(balls > 0, "the rally ran while the intervals were taken");
    assert_eq!(
        during, 0,
        "allocations on the cores' threads during 200 takes"
    );
}
