//! Hostile uses of large held messages (delayed with `send_after`, held
//! by the `Overflow` policy): to the sending core itself, cancelled in
//! bulk, mixed with a full overflow queue, dropped on another core, many
//! held at shutdown. Nothing may leak from the pool and nothing may panic.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use corelane::frame::Message;
use corelane::runtime::{Backpressure, Context, Handler, VirtualClock};

/// Far over a frame of the 64 KiB lanes used here; the pool's 256 KiB
/// class serves it.
const LEN: usize = 200 * 1024;

const MS: u64 = 1_000_000;

#[derive(rkyv::Archive, rkyv::Serialize)]
enum Bulk {
    Blob { seq: u32, bytes: Vec<u8> },
}

impl Message for Bulk {
    const TYPE_ID: u16 = 19;
    const VERSION: u8 = 1;
    const NAME: &'static str = "Bulk";
}

fn blob(seq: u32) -> Bulk {
    Bulk::Blob {
        seq,
        bytes: (0..LEN).map(|i| ((seq as usize + i) % 251) as u8).collect(),
    }
}

/// Keeps the sequence of every intact blob it receives.
#[derive(Default)]
struct Keeper {
    got: Vec<u32>,
    damaged: u32,
}

impl Handler for Keeper {
    type Message = Bulk;

    fn on_message(&mut self, _: &mut Context<'_, Bulk>, _: usize, msg: &ArchivedBulk) {
        let ArchivedBulk::Blob { seq, bytes } = msg;
        let seq = seq.to_native();
        let intact = bytes.len() == LEN
            && bytes
                .iter()
                .enumerate()
                .all(|(i, &b)| b == ((seq as usize + i) % 251) as u8);
        if intact {
            self.got.push(seq);
        } else {
            self.damaged += 1;
        }
    }
}

/// A large delayed message to the sending core itself arrives intact and
/// its buffer comes home.
#[test]
fn a_large_delayed_message_to_its_own_core_arrives_and_returns() {
    let clock = VirtualClock::new();
    let mut runtime = common::manual_on_clock(common::large_message_builder(), &clock, |_| {
        Keeper::default()
    });
    runtime.with_context(0, |_, cx| {
        for seq in 0..3 {
            cx.send_after(Duration::from_millis(5), 0, &blob(seq))
                .unwrap();
        }
    });
    clock.set(5 * MS);
    runtime.run_until_idle(20);
    assert_eq!(runtime.handler(0).got, [0, 1, 2]);
    assert_eq!(runtime.handler(0).damaged, 0);
    let usage = runtime.with_context(0, |_, cx| cx.pool().usage());
    assert_eq!((usage.in_use, usage.fallbacks), (0, 0), "{usage:?}");
    let report = runtime.shutdown().unwrap();
    assert!(report.adds_up(), "{report}");
    assert_eq!(report.totals.delivered, 3);
}

/// Forty large delayed messages, every other one cancelled, the rest still
/// pending at shutdown: the cancelled ones give their buffers back at once
/// (pooled or fallback alike), the rest are reported held and freed.
#[test]
fn many_large_delayed_messages_cancelled_or_pending_at_shutdown_leak_nothing() {
    let clock = VirtualClock::new();
    let mut runtime = common::manual_on_clock(common::large_message_builder(), &clock, |_| {
        Keeper::default()
    });
    let usage = runtime.with_context(0, |_, cx| {
        let mut timers = Vec::new();
        for seq in 0..40 {
            let delay = Duration::from_millis(10 + u64::from(seq));
            timers.push(cx.send_after(delay, 1, &blob(seq)).unwrap());
        }
        for timer in timers.iter().step_by(2) {
            assert!(cx.cancel_timer(*timer));
        }
        // Cancelling twice is refused and changes nothing.
        assert!(!cx.cancel_timer(timers[0]));
        cx.pool().usage()
    });
    // The first four took the 256 KiB class (its cap), the rest came
    // from the allocator; of the four, two were cancelled and are back.
    assert_eq!((usage.in_use, usage.free), (2, 2), "{usage:?}");
    assert_eq!(usage.fallbacks, 36, "{usage:?}");
    // Half of them come due; the rest wait past shutdown.
    clock.set(30 * MS);
    runtime.run_until_idle(50);
    let expected: Vec<u32> = (0..20).filter(|seq| seq % 2 == 1).collect();
    assert_eq!(runtime.handler(1).got, expected);
    let report = runtime.shutdown().unwrap();
    assert_eq!(report.totals.delayed, 40);
    assert_eq!(report.totals.delivered, 10);
    assert_eq!(report.held_total(), 10, "{report}");
    assert!(report.adds_up(), "{report}");
    let pool = report.metrics.cores[0].pool;
    assert_eq!(pool.in_use, 0, "{pool:?}");
}

/// Delayed large messages that come due while the overflow queue is full
/// still go out, after what was queued before them, in order.
#[test]
fn delayed_large_messages_due_behind_a_full_overflow_queue_keep_order() {
    let clock = VirtualClock::new();
    let mut runtime = common::manual_on_clock(
        common::large_message_builder()
            .max_in_flight(1)
            .backpressure(Backpressure::Overflow { capacity: 2 }),
        &clock,
        |_| Keeper::default(),
    );
    runtime.with_context(0, |_, cx| {
        for seq in 10..13 {
            cx.send(1, &blob(seq)).unwrap();
        }
        // The queue is full: a fourth is refused.
        assert!(cx.send(1, &blob(13)).is_err());
        for seq in 0..3 {
            cx.send_after(Duration::from_millis(1), 1, &blob(seq))
                .unwrap();
        }
    });
    clock.set(2 * MS);
    // Fire the timers before the receiver reads anything.
    runtime.with_context(0, |_, _| {});
    runtime.run_until_idle(50);
    assert_eq!(runtime.handler(1).got, [10, 11, 12, 0, 1, 2]);
    let usage = runtime.with_context(0, |_, cx| cx.pool().usage());
    assert_eq!(usage.in_use, 0, "{usage:?}");
    let report = runtime.shutdown().unwrap();
    assert!(report.adds_up(), "{report}");
    assert_eq!(report.totals.delivered, 6);
}

/// Core 0 sends large messages to core 1 by delay and by overflow; core 1
/// drops them on its own thread, so every buffer goes home through the
/// return queue, then (from `on_turn`, after the last buffer is dropped)
/// tells core 0, which drains its return queue and reads its pool.
struct Sender {
    rounds: u32,
    done_sent: bool,
    seen: Arc<Mutex<Seen>>,
    keeper: Keeper,
}

#[derive(Default)]
struct Seen {
    got: Vec<u32>,
    damaged: u32,
    sender_pool: Option<corelane::pool::PoolUsage>,
}

impl Handler for Sender {
    type Message = Bulk;

    fn on_start(&mut self, cx: &mut Context<'_, Bulk>) {
        if cx.core() == 0 {
            for seq in 0..self.rounds {
                let delay = Duration::from_micros(u64::from(seq % 7) * 100);
                cx.send_after(delay, 1, &blob(seq)).unwrap();
            }
        }
    }

    fn on_message(&mut self, cx: &mut Context<'_, Bulk>, from: usize, msg: &ArchivedBulk) {
        if cx.core() == 0 {
            // Core 1 is done and has dropped every blob.
            cx.pool().reclaim();
            self.seen.lock().unwrap().sender_pool = Some(cx.pool().usage());
            cx.stop_runtime();
            return;
        }
        self.keeper.on_message(cx, from, msg);
    }

    fn on_turn(&mut self, cx: &mut Context<'_, Bulk>) -> bool {
        if cx.core() == 1
            && !self.done_sent
            && self.keeper.got.len() as u32 + self.keeper.damaged == self.rounds
        {
            self.done_sent = true;
            let mut seen = self.seen.lock().unwrap();
            seen.got = self.keeper.got.clone();
            seen.damaged = self.keeper.damaged;
            drop(seen);
            cx.send(
                0,
                &Bulk::Blob {
                    seq: u32::MAX,
                    bytes: Vec::new(),
                },
            )
            .unwrap();
            return true;
        }
        false
    }
}

#[test]
fn large_delayed_messages_dropped_on_another_core_all_come_home() {
    let rounds = 60;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let shared = Arc::clone(&seen);
    let report = common::large_message_builder()
        .max_in_flight(2)
        .backpressure(Backpressure::Overflow { capacity: 4 })
        .build()
        .unwrap()
        .start(move |_| Sender {
            rounds,
            done_sent: false,
            seen: Arc::clone(&shared),
            keeper: Keeper::default(),
        })
        .unwrap()
        .wait()
        .unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.damaged, 0);
    let mut got = seen.got.clone();
    got.sort_unstable();
    assert_eq!(got, (0..rounds).collect::<Vec<_>>());
    assert!(report.adds_up(), "{report}");
    assert_eq!(report.totals.delivered, u64::from(rounds) + 1);
    // Every pooled buffer came home through the return queue.
    let pool = seen.sender_pool.expect("core 0 read its pool");
    assert_eq!(pool.in_use, 0, "{pool:?}");
    assert_eq!(pool.remote_returns, pool.free, "{pool:?}");
}
