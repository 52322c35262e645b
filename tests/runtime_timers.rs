//! Timers in the runtime: handler timers, delayed messages, batching and
//! the adaptive drain batch, on a virtual clock so that every value is
//! exact. Threaded tests take their idle strategy from
//! `CORELANE_TEST_IDLE` (busy-spin or park); CI runs both (C11), since a
//! parked core must wake for its timer.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use corelane::frame::Message;
use corelane::runtime::{Batcher, Context, Handler, Priority, Runtime, TimeSource, VirtualClock};

mod common;
use common::{idle, serial};

const MS: u64 = 1_000_000;

/// Waits (on the wall clock, generously) until `done` holds; panics with
/// `what` if it never does. Not a timing assertion: only a hang guard.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < give_up, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[derive(rkyv::Archive, rkyv::Serialize)]
struct Note {
    id: u64,
}

impl Message for Note {
    const TYPE_ID: u16 = 7;
    const VERSION: u8 = 1;
    const NAME: &'static str = "Note";
}

/// Records what it hears and which timers fired, with the time they did.
#[derive(Default)]
struct Recorder {
    heard: Vec<(u64, u64)>,
    fired: Vec<(u64, u64)>,
}

impl Handler for Recorder {
    type Message = Note;

    fn on_message(&mut self, cx: &mut Context<'_, Note>, _: usize, note: &ArchivedNote) {
        self.heard.push((note.id.to_native(), cx.now_ns()));
    }

    fn on_timer(&mut self, cx: &mut Context<'_, Note>, timer: u64) {
        self.fired.push((timer, cx.now_ns()));
    }
}

fn virtual_runtime(cores: usize, clock: &VirtualClock) -> Runtime {
    Runtime::builder()
        .cores(cores)
        .idle(idle())
        .time_source(TimeSource::Virtual(clock.clone()))
        .timer_tick(Duration::from_millis(1))
        .build()
        .unwrap()
}

#[test]
fn handler_timers_fire_at_their_tick_never_before_and_cancel_by_handle() {
    let clock = VirtualClock::new();
    let mut runtime = virtual_runtime(1, &clock)
        .start_manual(|_| Recorder::default())
        .unwrap();
    let (second, stale) = runtime.with_context(0, |_, cx| {
        cx.schedule_timer(Duration::from_millis(10), 1);
        let second = cx.schedule_timer(Duration::from_millis(20), 2);
        cx.schedule_timer_at(30 * MS - 1, 3);
        let stale = cx.schedule_timer(Duration::from_millis(1), 4);
        assert!(cx.cancel_timer(stale));
        (second, stale)
    });
    runtime.with_context(0, |_, cx| {
        assert!(!cx.cancel_timer(stale), "a stale handle cancels nothing");
        assert!(cx.cancel_timer(second));
    });

    clock.set(10 * MS - 1);
    runtime.run_until_idle(10);
    assert!(
        runtime.handler(0).fired.is_empty(),
        "fired before its deadline"
    );
    clock.set(10 * MS);
    runtime.run_until_idle(10);
    assert_eq!(runtime.handler(0).fired, [(1, 10 * MS)]);

    // 30 ms - 1 ns is due at the 30 ms tick: never early, one tick late at
    // most; timer 2 was cancelled and never fires.
    clock.set(29 * MS + 999_999 - 1);
    runtime.run_until_idle(10);
    assert_eq!(runtime.handler(0).fired.len(), 1);
    clock.set(30 * MS);
    runtime.run_until_idle(10);
    assert_eq!(runtime.handler(0).fired, [(1, 10 * MS), (3, 30 * MS)]);

    let report = runtime.shutdown().unwrap();
    assert_eq!(report.totals.timers_fired, 2);
    assert!(report.held.is_empty());
}

#[test]
fn past_and_far_deadlines_fire_on_time() {
    // C13 in the runtime: a delay beyond the wheel's span is kept and
    // fires no earlier than asked; a deadline already past fires next turn.
    let clock = VirtualClock::new();
    clock.set(5 * MS);
    let mut runtime = virtual_runtime(1, &clock)
        .start_manual(|_| Recorder::default())
        .unwrap();
    let far = (1u64 << 36) * MS * 3 + 12_345;
    runtime.with_context(0, |_, cx| {
        cx.schedule_timer_at(MS, 1);
        cx.schedule_timer_at(far, 2);
    });
    runtime.turn();
    assert_eq!(runtime.handler(0).fired, [(1, 5 * MS)]);
    clock.set(far - 1);
    runtime.run_until_idle(10);
    assert_eq!(runtime.handler(0).fired.len(), 1, "far timer fired early");
    clock.set(far.div_ceil(MS) * MS);
    runtime.run_until_idle(10);
    assert_eq!(runtime.handler(0).fired[1], (2, far.div_ceil(MS) * MS));
    runtime.shutdown().unwrap();
}

#[test]
fn delayed_messages_arrive_after_their_delay_and_pending_ones_are_reported() {
    let clock = VirtualClock::new();
    let mut runtime = virtual_runtime(2, &clock)
        .start_manual(|_| Recorder::default())
        .unwrap();
    runtime.with_context(0, |_, cx| {
        let mut soon = Vec::new();
        for id in 0..5 {
            soon.push(
                cx.send_after(Duration::from_millis(10), 1, &Note { id })
                    .unwrap(),
            );
        }
        for id in 100..103 {
            cx.send_after(Duration::from_secs(3600), 1, &Note { id })
                .unwrap();
        }
        assert!(
            cx.cancel_timer(soon[2]),
            "a delayed message can be cancelled"
        );
        assert!(cx.send_after(Duration::ZERO, 9, &Note { id: 9 }).is_err());
    });
    clock.set(10 * MS - 1);
    runtime.run_until_idle(10);
    assert!(
        runtime.handler(1).heard.is_empty(),
        "delivered before its delay"
    );
    clock.set(10 * MS);
    runtime.run_until_idle(10);
    let heard: Vec<u64> = runtime.handler(1).heard.iter().map(|&(id, _)| id).collect();
    assert_eq!(heard, [0, 1, 3, 4]);
    assert!(runtime
        .handler(1)
        .heard
        .iter()
        .all(|&(_, at)| at == 10 * MS));

    let report = runtime.shutdown().unwrap();
    assert_eq!(report.totals.delayed, 8);
    assert_eq!(report.totals.sent, 4);
    assert_eq!(report.totals.delivered, 4);
    assert_eq!(report.held.len(), 1);
    assert_eq!(report.held[0].name, "Note");
    assert_eq!(report.held[0].count, 3);
    // Every delayed message is sent, cancelled (1) or held.
    assert_eq!(
        report.totals.delayed,
        report.totals.sent + 1 + report.held_total()
    );
    assert!(report.adds_up(), "{report}");
    assert!(report.to_string().contains("held by the runtime at exit"));
}

/// Core 0 starts a timer and a delayed message to core 1; both cores then
/// idle (under `Park`, they park). Moving the virtual clock must wake them.
#[test]
fn parked_cores_wake_for_their_timers_on_a_virtual_clock() {
    let _serial = serial();
    let clock = VirtualClock::new();
    let log = Arc::new(Mutex::new(Vec::new()));

    /// (core, what, virtual time) of each event.
    type Events = Arc<Mutex<Vec<(usize, &'static str, u64)>>>;
    struct Sleeper(Events);
    impl Handler for Sleeper {
        type Message = Note;
        fn on_start(&mut self, cx: &mut Context<'_, Note>) {
            if cx.core() == 0 {
                cx.schedule_timer(Duration::from_millis(50), 1);
                cx.send_after(Duration::from_millis(80), 1, &Note { id: 5 })
                    .unwrap();
            }
        }
        fn on_message(&mut self, cx: &mut Context<'_, Note>, _: usize, note: &ArchivedNote) {
            assert_eq!(note.id, 5);
            self.0
                .lock()
                .unwrap()
                .push((cx.core(), "message", cx.now_ns()));
        }
        fn on_timer(&mut self, cx: &mut Context<'_, Note>, _: u64) {
            self.0
                .lock()
                .unwrap()
                .push((cx.core(), "timer", cx.now_ns()));
        }
    }

    let shared = Arc::clone(&log);
    let running = virtual_runtime(2, &clock)
        .start(move |_| Sleeper(Arc::clone(&shared)))
        .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert!(log.lock().unwrap().is_empty());
    clock.set(50 * MS);
    wait_for("the timer", || log.lock().unwrap().len() == 1);
    clock.set(80 * MS);
    wait_for("the delayed message", || log.lock().unwrap().len() == 2);
    assert_eq!(
        *log.lock().unwrap(),
        [(0, "timer", 50 * MS), (1, "message", 80 * MS)]
    );
    let report = running.shutdown().unwrap();
    assert_eq!(report.totals.delivered, 1);
    assert!(report.adds_up());
}

/// On the monotonic clock, a parked core's poll timeout is its next timer.
#[test]
fn timers_fire_on_the_real_clock_never_early() {
    let _serial = serial();
    let fired = Arc::new(Mutex::new(Vec::new()));

    struct Alarm(Arc<Mutex<Vec<(u64, u64)>>>, u64);
    impl Handler for Alarm {
        type Message = Note;
        fn on_start(&mut self, cx: &mut Context<'_, Note>) {
            self.1 = cx.now_ns() + 3 * MS;
            cx.schedule_timer_at(self.1, 1);
        }
        fn on_message(&mut self, _: &mut Context<'_, Note>, _: usize, _: &ArchivedNote) {}
        fn on_timer(&mut self, cx: &mut Context<'_, Note>, _: u64) {
            self.0.lock().unwrap().push((self.1, cx.now_ns()));
        }
    }

    let shared = Arc::clone(&fired);
    let running = Runtime::builder()
        .cores(2)
        .idle(idle())
        .build()
        .unwrap()
        .start(move |_| Alarm(Arc::clone(&shared), 0))
        .unwrap();
    wait_for("both timers", || fired.lock().unwrap().len() == 2);
    for &(deadline, at) in fired.lock().unwrap().iter() {
        assert!(
            at >= deadline,
            "fired at {at}, before its deadline {deadline}"
        );
    }
    let report = running.shutdown().unwrap();
    assert_eq!(report.totals.timers_fired, 2);
}

/// Delayed messages still pending when a threaded runtime stops are in the
/// report, and the counters add up.
#[test]
fn threaded_shutdown_reports_pending_delayed_messages() {
    let _serial = serial();
    struct Later;
    impl Handler for Later {
        type Message = Note;
        fn on_start(&mut self, cx: &mut Context<'_, Note>) {
            let to = (cx.core() + 1) % cx.cores();
            cx.send(to, &Note { id: 1 }).unwrap();
            for id in 0..4 {
                cx.send_after(Duration::from_secs(600), to, &Note { id })
                    .unwrap();
            }
        }
        fn on_message(&mut self, cx: &mut Context<'_, Note>, _: usize, _: &ArchivedNote) {
            cx.stop_runtime();
        }
    }
    let report = Runtime::builder()
        .cores(2)
        .idle(idle())
        .build()
        .unwrap()
        .start(|_| Later)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(report.totals.delayed, 8);
    assert_eq!(report.held_total(), 8);
    assert_eq!(report.totals.sent, 2);
    assert!(report.adds_up(), "{report}");
}

const FLUSH: u64 = 77;

/// Batches by size or deadline, whichever first.
struct Batching {
    batcher: Batcher<u64>,
    batches: Vec<(Vec<u64>, u64)>,
}

impl Handler for Batching {
    type Message = Note;

    fn on_message(&mut self, cx: &mut Context<'_, Note>, _: usize, note: &ArchivedNote) {
        if let Some(batch) = self.batcher.push(cx, note.id.to_native()) {
            self.batches.push((batch, cx.now_ns()));
        }
    }

    fn on_timer(&mut self, cx: &mut Context<'_, Note>, timer: u64) {
        if let Some(batch) = self.batcher.on_timer(timer) {
            self.batches.push((batch, cx.now_ns()));
        }
    }
}

#[test]
fn batches_flush_by_size_or_deadline_whichever_first() {
    let clock = VirtualClock::new();
    let mut runtime = virtual_runtime(2, &clock)
        .start_manual(|_| Batching {
            batcher: Batcher::new(4, Duration::from_millis(5), FLUSH),
            batches: Vec::new(),
        })
        .unwrap();
    let send = |runtime: &mut corelane::runtime::ManualRuntime<Batching>, ids: &[u64]| {
        runtime.with_context(0, |_, cx| {
            for &id in ids {
                cx.send(1, &Note { id }).unwrap();
            }
        });
        runtime.run_until_idle(10);
    };

    // Size first: 4 items at t = 0 flush at once; the 5th starts a batch.
    send(&mut runtime, &[1, 2, 3, 4, 5]);
    assert_eq!(runtime.handler(1).batches, [(vec![1, 2, 3, 4], 0)]);
    // Deadline next: 5 ms after its first item, not before.
    clock.set(3 * MS);
    send(&mut runtime, &[6]);
    clock.set(5 * MS - 1);
    runtime.run_until_idle(10);
    assert_eq!(runtime.handler(1).batches.len(), 1);
    clock.set(5 * MS);
    runtime.run_until_idle(10);
    assert_eq!(runtime.handler(1).batches[1], (vec![5, 6], 5 * MS));
    // A batch filled by size cancels its timer: no empty or early flush
    // when that deadline passes.
    clock.set(6 * MS);
    send(&mut runtime, &[7, 8, 9, 10]);
    clock.set(20 * MS);
    runtime.run_until_idle(10);
    assert_eq!(runtime.handler(1).batches.len(), 3);
    assert_eq!(runtime.handler(1).batches[2], (vec![7, 8, 9, 10], 6 * MS));
    assert!(runtime.handler(1).batcher.is_empty());
    let report = runtime.shutdown().unwrap();
    assert_eq!(report.totals.delivered, 10);
    assert_eq!(report.totals.timers_fired, 1);
}

#[test]
fn the_drain_batch_adapts_to_the_backlog_within_its_bounds() {
    let clock = VirtualClock::new();
    let mut runtime = Runtime::builder()
        .cores(2)
        .drain_batch_range(2, 16)
        .time_source(TimeSource::Virtual(clock))
        .build()
        .unwrap()
        .start_manual(|_| Recorder::default())
        .unwrap();
    runtime.with_context(0, |_, cx| {
        for id in 0..100 {
            cx.send(1, &Note { id }).unwrap();
        }
    });
    let per_turn: Vec<usize> = (0..9).map(|_| runtime.turn_core(1)).collect();
    assert_eq!(per_turn, [2, 4, 8, 16, 16, 16, 16, 16, 6]);
    let ids: Vec<u64> = runtime.handler(1).heard.iter().map(|&(id, _)| id).collect();
    assert_eq!(ids, (0..100).collect::<Vec<_>>());
    // Quiet turns shrink it back to the lower bound.
    for _ in 0..4 {
        runtime.turn_core(1);
    }
    let report = runtime.shutdown().unwrap();
    assert_eq!(report.metrics.cores[1].drain_batch, 2);
    assert_eq!(report.totals.delivered, 100);
}

#[test]
fn the_drain_batch_in_use_shows_in_the_metrics() {
    let clock = VirtualClock::new();
    let mut runtime = Runtime::builder()
        .cores(2)
        .drain_batch_range(1, 8)
        .time_source(TimeSource::Virtual(clock))
        .build()
        .unwrap()
        .start_manual(|_| Recorder::default())
        .unwrap();
    runtime.with_context(0, |_, cx| {
        for id in 0..40 {
            cx.send(1, &Note { id }).unwrap();
        }
    });
    for _ in 0..4 {
        runtime.turn_core(1);
    }
    let seen = runtime.with_context(1, |_, cx| cx.metrics());
    assert_eq!(seen.cores[1].drain_batch, 8);
    assert_eq!(seen.merged().drain_batch, 8);
    runtime.shutdown().unwrap();
}

/// A delayed message that falls due while its lane is full waits in the
/// destination's overflow queue and is sent, in order, when room appears,
/// at shutdown too (the final drain moves it on).
#[test]
fn delayed_messages_due_at_a_full_lane_wait_and_keep_their_order() {
    let clock = VirtualClock::new();
    let mut runtime = Runtime::builder()
        .cores(2)
        .lane_capacity(1024)
        .time_source(TimeSource::Virtual(clock.clone()))
        .build()
        .unwrap()
        .start_manual(|_| Recorder::default())
        .unwrap();
    let filler = runtime.with_context(0, |_, cx| {
        for id in 1000..1005 {
            cx.send_after(Duration::from_millis(1), 1, &Note { id })
                .unwrap();
        }
        let mut filler = 0;
        while cx.send(1, &Note { id: filler }).is_ok() {
            filler += 1;
        }
        filler
    });
    assert!(filler > 0);
    clock.set(MS);
    runtime.turn_core(0);
    runtime.run_until_idle(100);
    let heard: Vec<u64> = runtime.handler(1).heard.iter().map(|&(id, _)| id).collect();
    let expected: Vec<u64> = (0..filler).chain(1000..1005).collect();
    assert_eq!(heard, expected);

    // Once more, but shut down with the lane full and the message queued.
    runtime.with_context(0, |_, cx| {
        cx.send_after(Duration::ZERO, 1, &Note { id: 2000 })
            .unwrap();
        while cx.send(1, &Note { id: 0 }).is_ok() {}
    });
    runtime.turn_core(0);
    let report = runtime.shutdown().unwrap();
    assert_eq!(report.totals.delayed, 6);
    assert_eq!(report.totals.overflowed, 6, "{report}");
    assert!(report.held.is_empty(), "{report}");
    assert_eq!(report.totals.delivered, report.totals.sent, "{report}");
    assert!(report.adds_up(), "{report}");
}

/// A message with a byte string, and a view of it made of borrowed bytes
/// (`Encodes<Label>`).
#[derive(rkyv::Archive, rkyv::Serialize)]
enum Label {
    Named { id: u64, name: Vec<u8> },
}

impl Message for Label {
    const TYPE_ID: u16 = 8;
    const VERSION: u8 = 1;
    const NAME: &'static str = "Label";
}

#[derive(rkyv::Archive, rkyv::Serialize)]
#[rkyv(as = ArchivedLabel)]
enum LabelView<'a> {
    Named {
        id: u64,
        #[rkyv(with = rkyv::with::AsVec)]
        name: &'a [u8],
    },
}

// SAFETY: `Label`'s one variant, its fields in the same order, archived to
// the same bytes; the test below reads every view back as a `Label`.
unsafe impl corelane::frame::Encodes<Label> for LabelView<'_> {}

/// Records each label it hears, with the virtual time it heard it.
#[derive(Default)]
struct Labels {
    heard: Vec<(u64, Vec<u8>, u64)>,
}

impl Handler for Labels {
    type Message = Label;

    fn on_message(&mut self, cx: &mut Context<'_, Label>, _: usize, label: &ArchivedLabel) {
        let ArchivedLabel::Named { id, name } = label;
        self.heard
            .push((id.to_native(), name.to_vec(), cx.now_ns()));
    }
}

/// A borrowed view goes wherever an owned message does: after a delay (it
/// is archived when scheduled, so the bytes it borrows may go at once), in
/// either lane, and by key; its receiver reads it as the message.
#[test]
fn views_of_borrowed_bytes_are_sent_after_a_delay_and_by_key() {
    let clock = VirtualClock::new();
    let mut runtime = Runtime::builder()
        .cores(2)
        .time_source(TimeSource::Virtual(clock.clone()))
        .build()
        .unwrap()
        .start_manual(|_| Labels::default())
        .unwrap();
    let owner = runtime.with_context(0, |_, cx| {
        let name = b"delayed".to_vec();
        let view = LabelView::Named { id: 1, name: &name };
        cx.send_after(Duration::from_millis(10), 1, &view).unwrap();
        let view = LabelView::Named {
            id: 2,
            name: &name[..3],
        };
        cx.send_after_with(Duration::from_millis(10), 1, &view, Priority::High)
            .unwrap();
        drop(name);
        let key = b"acme";
        let name = b"keyed".to_vec();
        cx.send_by_key(key, &LabelView::Named { id: 3, name: &name })
            .unwrap();
        let owned = Label::Named { id: 4, name };
        cx.send_by_key(key, &owned).unwrap();
        cx.core_for_key(key)
    });

    runtime.run_until_idle(10);
    assert_eq!(
        runtime.handler(owner).heard,
        [(3, b"keyed".to_vec(), 0), (4, b"keyed".to_vec(), 0)]
    );
    let keyed_to_1 = runtime.handler(1).heard.len();
    clock.set(10 * MS);
    runtime.run_until_idle(10);
    assert_eq!(
        runtime.handler(1).heard[keyed_to_1..],
        [
            (2, b"del".to_vec(), 10 * MS),
            (1, b"delayed".to_vec(), 10 * MS)
        ],
        "both arrive at their time, the high-priority lane's first"
    );

    let report = runtime.shutdown().unwrap();
    assert_eq!(report.totals.delayed, 2);
    assert_eq!(report.totals.delivered, 4);
    assert!(report.adds_up(), "{report}");
}

const FILL: u64 = 78;

/// A handler whose own timer (FILL) fills the batch in the same tick as
/// the batch's flush timer fires: the batch goes by size, and the flush
/// timer's call that comes after must not take the next batch early.
struct FilledByTimer {
    batcher: Batcher<u64>,
    batches: Vec<(Vec<u64>, u64)>,
}

impl Handler for FilledByTimer {
    type Message = Note;

    fn on_message(&mut self, _: &mut Context<'_, Note>, _: usize, _: &ArchivedNote) {}

    fn on_timer(&mut self, cx: &mut Context<'_, Note>, timer: u64) {
        if timer == FILL {
            for id in 2..=5 {
                if let Some(batch) = self.batcher.push(cx, id) {
                    self.batches.push((batch, cx.now_ns()));
                }
            }
        } else if let Some(batch) = self.batcher.on_timer(timer) {
            self.batches.push((batch, cx.now_ns()));
        }
    }
}

#[test]
fn a_batch_filled_as_its_flush_timer_fires_leaves_the_next_batch_its_own_deadline() {
    const MS: u64 = 1_000_000;
    let clock = VirtualClock::new();
    let mut runtime = virtual_runtime(1, &clock)
        .start_manual(|_| FilledByTimer {
            batcher: Batcher::new(4, Duration::from_millis(3), FLUSH),
            batches: Vec::new(),
        })
        .unwrap();
    // FILL first, then the batch's first item and its flush timer: both
    // due at 3 ms, FILL's handler runs first.
    runtime.with_context(0, |handler, cx| {
        cx.schedule_timer(Duration::from_millis(3), FILL);
        assert!(handler.batcher.push(cx, 1).is_none());
    });
    clock.set(3 * MS);
    runtime.run_until_idle(10);
    let batches = &runtime.handler(0).batches;
    assert_eq!(batches.len(), 1, "{batches:?}");
    assert_eq!(batches[0].0, [1, 2, 3, 4]);
    // Item 5 started a batch at 3 ms: it goes at 6 ms, not at once.
    clock.set(6 * MS);
    runtime.run_until_idle(10);
    let batches = &runtime.handler(0).batches;
    assert_eq!(batches.len(), 2, "{batches:?}");
    assert_eq!(batches[1], (vec![5], 6 * MS));
    runtime.shutdown().unwrap();
}
