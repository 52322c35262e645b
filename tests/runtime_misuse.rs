//! The runtime's new features misused: deadlines at the end of time, stale
//! and repeated cancels, delayed sends to cores that do not exist, and a
//! batcher sized "never by count". Each gives a clear answer and the
//! shutdown counts still add up. Manual runtimes on a virtual clock, so
//! every value is exact.

use std::time::Duration;

use corelane::frame::Message;
use corelane::runtime::{
    Backpressure, Batcher, Context, Handler, ManualRuntime, Runtime, SendError, TimeSource,
    VirtualClock,
};

const MS: u64 = 1_000_000;
const FLUSH: u64 = 5;

#[derive(rkyv::Archive, rkyv::Serialize)]
struct Note {
    id: u64,
}

impl Message for Note {
    const TYPE_ID: u16 = 11;
    const VERSION: u8 = 1;
    const NAME: &'static str = "Note";
}

/// Records what it hears and which timers fire; batches when asked to.
struct Listener {
    heard: Vec<u64>,
    fired: Vec<u64>,
    batcher: Batcher<u64>,
    batches: Vec<Vec<u64>>,
}

impl Handler for Listener {
    type Message = Note;

    fn on_message(&mut self, cx: &mut Context<'_, Note>, _: usize, note: &ArchivedNote) {
        let id = note.id.to_native();
        self.heard.push(id);
        if let Some(batch) = self.batcher.push(cx, id) {
            self.batches.push(batch);
        }
    }

    fn on_timer(&mut self, _: &mut Context<'_, Note>, timer: u64) {
        self.fired.push(timer);
        if let Some(batch) = self.batcher.on_timer(timer) {
            self.batches.push(batch);
        }
    }
}

fn manual(cores: usize, clock: &VirtualClock, max_items: usize) -> ManualRuntime<Listener> {
    Runtime::builder()
        .cores(cores)
        .time_source(TimeSource::Virtual(clock.clone()))
        .timer_tick(Duration::from_millis(1))
        .build()
        .unwrap()
        .start_manual(|_| Listener {
            heard: Vec::new(),
            fired: Vec::new(),
            batcher: Batcher::new(max_items, Duration::from_millis(3), FLUSH),
            batches: Vec::new(),
        })
        .unwrap()
}

#[test]
fn deadlines_at_the_end_of_time_wait_and_cancel_once() {
    let clock = VirtualClock::new();
    let mut runtime = manual(2, &clock, 4);
    let (forever, at_max) = runtime.with_context(0, |_, cx| {
        (
            cx.schedule_timer(Duration::MAX, 1),
            cx.schedule_timer_at(u64::MAX, 2),
        )
    });
    runtime.with_context(0, |_, cx| cx.schedule_timer(Duration::from_millis(1), 3));

    clock.set(u64::MAX / 2);
    runtime.run_until_idle(10);
    assert_eq!(runtime.handler(0).fired, [3]);

    // Each cancels once; a second cancel of the same handle is stale.
    assert!(runtime.with_context(0, |_, cx| cx.cancel_timer(forever)));
    assert!(!runtime.with_context(0, |_, cx| cx.cancel_timer(forever)));
    assert!(runtime.with_context(0, |_, cx| cx.cancel_timer(at_max)));
    assert!(!runtime.with_context(0, |_, cx| cx.cancel_timer(at_max)));
    let report = runtime.shutdown().unwrap();
    assert_eq!(report.totals.timers_fired, 1);
}

#[test]
fn delayed_sends_to_missing_cores_are_handed_back_and_far_ones_are_held() {
    let clock = VirtualClock::new();
    let mut runtime = manual(2, &clock, 4);
    runtime.with_context(0, |_, cx| {
        let note = Note { id: 9 };
        match cx.send_after(Duration::from_millis(1), 2, &note) {
            Err(SendError::NoSuchCore(back, 2)) => assert_eq!(back.id, 9),
            other => panic!("expected NoSuchCore, got {:?}", other.map(|_| ())),
        }
        match cx.send_after(Duration::ZERO, usize::MAX, &note) {
            Err(SendError::NoSuchCore(_, core)) => assert_eq!(core, usize::MAX),
            other => panic!("expected NoSuchCore, got {:?}", other.map(|_| ())),
        }
        cx.send_after(Duration::MAX, 1, &Note { id: 1 }).unwrap();
        cx.send_after(Duration::from_millis(2), 1, &Note { id: 2 })
            .unwrap();
    });
    clock.set(10 * MS);
    runtime.run_until_idle(10);
    assert_eq!(runtime.handler(1).heard, [2]);

    // The one due at the end of time is held at shutdown, by count.
    let report = runtime.shutdown().unwrap();
    assert_eq!(report.totals.delayed, 2);
    assert_eq!(report.totals.sent, 1);
    assert_eq!(report.totals.delivered, 1);
    assert_eq!(report.held_total(), 1);
    assert!(report.adds_up(), "{report}");
}

#[test]
fn a_batcher_sized_never_by_count_flushes_by_time_without_reserving_it() {
    // usize::MAX items means "flush by deadline only"; it must not try to
    // reserve room for that many up front.
    let clock = VirtualClock::new();
    let mut runtime = manual(2, &clock, usize::MAX);
    runtime.with_context(0, |_, cx| {
        for id in 0..100 {
            cx.send(1, &Note { id }).unwrap();
        }
    });
    runtime.run_until_idle(10);
    assert!(runtime.handler(1).batches.is_empty());
    assert_eq!(runtime.handler(1).batcher.len(), 100);
    clock.set(3 * MS);
    runtime.run_until_idle(10);
    assert_eq!(runtime.handler(1).batches, [(0..100).collect::<Vec<_>>()]);
    let report = runtime.shutdown().unwrap();
    assert_eq!(report.totals.delivered, 100);
    assert!(report.adds_up(), "{report}");
}

/// A message of no bytes at all (a unit struct).
#[derive(rkyv::Archive, rkyv::Serialize)]
struct Tick;

impl Message for Tick {
    const TYPE_ID: u16 = 12;
    const VERSION: u8 = 1;
    const NAME: &'static str = "Tick";
}

/// Counts the ticks it hears.
struct Ticks {
    heard: usize,
}

impl Handler for Ticks {
    type Message = Tick;

    fn on_message(&mut self, _: &mut Context<'_, Tick>, _: usize, _: &ArchivedTick) {
        self.heard += 1;
    }
}

/// A unit struct archives to no bytes: held for later (a delay, or an
/// overflow queue behind a full lane) it is kept in an empty buffer, which
/// must still read back as a message. Empty buffers used to have no
/// aligned address, and the core panicked on them in debug builds.
#[test]
fn messages_of_no_bytes_can_be_delayed_and_queued() {
    let clock = VirtualClock::new();
    let mut runtime = Runtime::builder()
        .cores(2)
        .lane_capacity(1024)
        .backpressure(Backpressure::Overflow { capacity: 1 << 16 })
        .time_source(TimeSource::Virtual(clock.clone()))
        .timer_tick(Duration::from_millis(1))
        .build()
        .unwrap()
        .start_manual(|_| Ticks { heard: 0 })
        .unwrap();
    // Enough sends to fill the lane, so that the rest wait in overflow.
    const SENT: usize = 1000;
    runtime.with_context(0, |_, cx| {
        for _ in 0..SENT {
            cx.send(1, &Tick).unwrap();
        }
        cx.send_after(Duration::from_millis(2), 1, &Tick).unwrap();
    });
    clock.set(5 * MS);
    runtime.run_until_idle(1000);
    assert_eq!(runtime.handler(1).heard, SENT + 1);

    let report = runtime.shutdown().unwrap();
    assert!(report.totals.overflowed > 0, "{report}");
    assert_eq!(report.totals.delivered, SENT as u64 + 1);
    assert!(report.adds_up(), "{report}");
}
