//! Order in the runtime: priority lanes and their starvation guard,
//! routing by key, and backpressure (refuse or overflow). Exact orders are
//! checked turn by turn on a manual runtime; threaded tests take their idle
//! strategy from `CORELANE_TEST_IDLE` (busy-spin or park), as CI runs both.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use corelane::frame::Message;
use corelane::runtime::{
    core_for_key, Backpressure, Context, Handler, ManualRuntime, Priority, Runtime, SendError,
};

mod common;
use common::{idle, serial};

#[derive(rkyv::Archive, rkyv::Serialize)]
struct Item {
    id: u64,
    sender: u32,
    key: String,
}

impl Message for Item {
    const TYPE_ID: u16 = 9;
    const VERSION: u8 = 1;
    const NAME: &'static str = "Item";
}

fn item(id: u64) -> Item {
    Item {
        id,
        sender: 0,
        key: String::new(),
    }
}

/// Keeps the ids it receives, in order.
#[derive(Default)]
struct Log(Vec<u64>);

impl Handler for Log {
    type Message = Item;

    fn on_message(&mut self, _: &mut Context<'_, Item>, _: usize, item: &ArchivedItem) {
        self.0.push(item.id.to_native());
    }
}

fn manual(builder: corelane::runtime::Builder) -> ManualRuntime<Log> {
    builder
        .build()
        .unwrap()
        .start_manual(|_| Log::default())
        .unwrap()
}

#[test]
fn high_priority_is_drained_first_and_normal_waits_at_most_the_limit() {
    let mut runtime = manual(
        Runtime::builder()
            .cores(2)
            .drain_batch(1)
            .starvation_limit(2),
    );
    runtime.with_context(0, |_, cx| {
        for id in 100..104 {
            cx.send(1, &item(id)).unwrap();
        }
        for id in 0..9 {
            cx.send_with(1, &item(id), Priority::High).unwrap();
        }
    });
    runtime.run_until_idle(100);
    // One frame per lane per turn; the normal lane waits two turns behind
    // a high backlog, then gets its batch; once the high lane is empty the
    // normal lane drains every turn.
    assert_eq!(
        runtime.handler(1).0,
        [0, 1, 2, 100, 3, 4, 5, 101, 6, 7, 8, 102, 103]
    );
    let report = runtime.shutdown().unwrap();
    assert_eq!(report.totals.delivered, 13);
    assert!(report.adds_up());
}

#[test]
fn without_a_high_backlog_both_priorities_drain_every_turn() {
    let mut runtime = manual(Runtime::builder().cores(2).drain_batch(4));
    runtime.with_context(0, |_, cx| {
        for id in 100..103 {
            cx.send(1, &item(id)).unwrap();
        }
        for id in 0..3 {
            cx.send_with(1, &item(id), Priority::High).unwrap();
        }
    });
    assert_eq!(runtime.turn_core(1), 6);
    assert_eq!(runtime.handler(1).0, [0, 1, 2, 100, 101, 102]);
    runtime.shutdown().unwrap();
}

/// A flood of high-priority messages never starves the normal lane: core 0
/// keeps core 1's high lane full, and core 1 still receives every normal
/// message. Without the guard this test would never end.
#[test]
fn a_high_priority_flood_does_not_starve_normal_messages() {
    let _serial = serial();

    struct Flooder {
        normal_sent: u64,
        normal_seen: u64,
    }
    const NORMAL: u64 = 200;
    impl Handler for Flooder {
        type Message = Item;
        fn on_turn(&mut self, cx: &mut Context<'_, Item>) -> bool {
            if cx.core() != 0 {
                return false;
            }
            while cx.send_with(1, &item(0), Priority::High).is_ok() {}
            if self.normal_sent < NORMAL && cx.send(1, &item(1)).is_ok() {
                self.normal_sent += 1;
            }
            true
        }
        fn on_message(&mut self, cx: &mut Context<'_, Item>, _: usize, item: &ArchivedItem) {
            if item.id == 1 {
                self.normal_seen += 1;
                if self.normal_seen == NORMAL {
                    cx.stop_runtime();
                }
            }
        }
        fn on_stop(&mut self, _: &mut Context<'_, Item>) {
            if self.normal_seen > 0 {
                assert_eq!(self.normal_seen, NORMAL);
            }
        }
    }

    let report = Runtime::builder()
        .cores(2)
        .idle(idle())
        .drain_batch(4)
        .high_lane_capacity(1024)
        .build()
        .unwrap()
        .start(|_| Flooder {
            normal_sent: 0,
            normal_seen: 0,
        })
        .unwrap()
        .wait()
        .unwrap();
    assert!(report.totals.delivered >= NORMAL, "{report}");
    assert!(report.adds_up(), "{report}");
}

#[test]
fn messages_of_one_key_go_to_its_core_in_order() {
    let _serial = serial();
    const PER_SENDER: u64 = 3000;
    const KEYS: u64 = 17;
    let received = Arc::new(AtomicU64::new(0));

    struct Keyed {
        received: Arc<AtomicU64>,
        /// Last id seen per (sender, key).
        last: HashMap<(u32, String), u64>,
        sent: u64,
    }
    impl Handler for Keyed {
        type Message = Item;
        fn on_turn(&mut self, cx: &mut Context<'_, Item>) -> bool {
            // Cores 0 and 1 send; every core receives.
            if cx.core() > 1 || self.sent == PER_SENDER {
                return false;
            }
            let msg = Item {
                id: self.sent,
                sender: cx.core() as u32,
                key: format!("account-{}", self.sent % KEYS),
            };
            match cx.send_by_key(msg.key.as_bytes(), &msg) {
                Ok(()) => self.sent += 1,
                Err(SendError::Full(_)) => return false,
                Err(other) => panic!("{other}"),
            }
            true
        }
        fn on_message(&mut self, cx: &mut Context<'_, Item>, from: usize, item: &ArchivedItem) {
            let key = item.key.as_str().to_string();
            assert_eq!(
                cx.core_for_key(key.as_bytes()),
                cx.core(),
                "{key} on the wrong core"
            );
            assert_eq!(from as u32, item.sender.to_native());
            let id = item.id.to_native();
            if let Some(&last) = self.last.get(&(from as u32, key.clone())) {
                assert_eq!(id, last + KEYS, "{key} from core {from} out of order");
            }
            self.last.insert((from as u32, key), id);
            let total = self.received.fetch_add(1, Ordering::Relaxed) + 1;
            if total == 2 * PER_SENDER {
                cx.stop_runtime();
            }
        }
    }

    let shared = Arc::clone(&received);
    let report = Runtime::builder()
        .cores(3)
        .idle(idle())
        .build()
        .unwrap()
        .start(move |_| Keyed {
            received: Arc::clone(&shared),
            last: HashMap::new(),
            sent: 0,
        })
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(received.load(Ordering::Relaxed), 2 * PER_SENDER);
    assert_eq!(report.totals.delivered, 2 * PER_SENDER);
    // Each core received exactly the messages of the keys it owns.
    let mut expected = [0u64; 3];
    for n in 0..PER_SENDER {
        expected[core_for_key(format!("account-{}", n % KEYS).as_bytes(), 3)] += 2;
    }
    let delivered: Vec<u64> = report
        .metrics
        .cores
        .iter()
        .map(|core| core.counters.delivered)
        .collect();
    assert_eq!(delivered, expected);
    assert!(report.adds_up());
}

#[test]
fn refuse_hands_the_message_back_at_the_in_flight_bound() {
    let mut runtime = manual(Runtime::builder().cores(2).max_in_flight(4));
    let outcomes: Vec<Result<(), u64>> = runtime.with_context(0, |_, cx| {
        (0..6)
            .map(|id| {
                cx.send(1, &item(id)).map_err(|error| match error {
                    SendError::Full(back) => back.id,
                    other => panic!("{other}"),
                })
            })
            .collect()
    });
    assert_eq!(outcomes, [Ok(()), Ok(()), Ok(()), Ok(()), Err(4), Err(5)]);
    // Core 1 reads what is in flight: room for four more.
    runtime.turn_core(1);
    assert_eq!(runtime.handler(1).0, [0, 1, 2, 3]);
    let sent = runtime.with_context(0, |_, cx| {
        (4..10).filter(|&id| cx.send(1, &item(id)).is_ok()).count()
    });
    assert_eq!(sent, 4);
    let report = runtime.shutdown().unwrap();
    assert_eq!(report.totals.sent, 8);
    assert_eq!(report.totals.refused, 4);
    assert_eq!(report.totals.overflowed, 0);
    assert_eq!(report.totals.delivered, 8);
    assert!(report.adds_up());
}

#[test]
fn overflow_holds_a_bounded_queue_and_keeps_order() {
    let mut runtime = manual(
        Runtime::builder()
            .cores(2)
            .max_in_flight(4)
            .backpressure(Backpressure::Overflow { capacity: 3 }),
    );
    let refused: Vec<u64> = runtime.with_context(0, |_, cx| {
        (0..10)
            .filter_map(|id| {
                cx.send(1, &item(id))
                    .err()
                    .map(|error| error.into_inner().id)
            })
            .collect()
    });
    // Four in flight, three held, the rest refused and handed back.
    assert_eq!(refused, [7, 8, 9]);
    runtime.turn_core(1);
    assert_eq!(runtime.handler(1).0, [0, 1, 2, 3]);
    // The queue is full: beyond its bound, a send is refused.
    let back = runtime.with_context(0, |_, cx| {
        cx.send(1, &item(10)).err().map(|e| e.into_inner().id)
    });
    assert_eq!(back, Some(10));
    // Core 0 moves its queue into the lane as room appears.
    runtime.turn_core(0);
    runtime.with_context(0, |_, cx| {
        cx.send(1, &item(10)).unwrap(); // in flight: 4, 5, 6, 10
        cx.send(1, &item(11)).unwrap(); // held
        cx.send(1, &item(12)).unwrap(); // held
    });
    runtime.turn_core(1);
    assert_eq!(runtime.handler(1).0, [0, 1, 2, 3, 4, 5, 6, 10]);
    // Core 1 has made room, but 11 and 12 are still queued: a new send
    // queues behind them rather than overtaking.
    runtime.with_context(0, |_, cx| cx.send(1, &item(13)).unwrap());
    runtime.run_until_idle(10);
    assert_eq!(runtime.handler(1).0, [0, 1, 2, 3, 4, 5, 6, 10, 11, 12, 13]);
    let report = runtime.shutdown().unwrap();
    assert_eq!(report.totals.overflowed, 6);
    assert_eq!(report.totals.refused, 4);
    assert_eq!(report.totals.sent, 11);
    assert_eq!(report.totals.delivered, 11);
    assert!(report.held.is_empty());
    assert!(report.adds_up());
}

/// Two cores rally with a tight in-flight bound and an overflow queue,
/// each reply doubling the traffic, until stopped from outside. Nothing is
/// lost: every send accepted was written into a lane or is reported held.
#[test]
fn overflow_at_shutdown_is_accounted_for() {
    let _serial = serial();
    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));

    struct Rally {
        accepted: Arc<AtomicU64>,
        refused: Arc<AtomicU64>,
    }
    impl Rally {
        fn send(&self, cx: &mut Context<'_, Item>, id: u64) {
            let to = 1 - cx.core();
            let counter = match cx.send(to, &item(id)) {
                Ok(()) => &self.accepted,
                Err(_) => &self.refused,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
    impl Handler for Rally {
        type Message = Item;
        fn on_start(&mut self, cx: &mut Context<'_, Item>) {
            self.send(cx, 0);
        }
        fn on_message(&mut self, cx: &mut Context<'_, Item>, _: usize, item: &ArchivedItem) {
            let id = item.id.to_native() + 1;
            self.send(cx, id);
            self.send(cx, id);
        }
    }

    let (shared_accepted, shared_refused) = (Arc::clone(&accepted), Arc::clone(&refused));
    let running = Runtime::builder()
        .cores(2)
        .idle(idle())
        .max_in_flight(2)
        .backpressure(Backpressure::Overflow { capacity: 16 })
        .build()
        .unwrap()
        .start(move |_| Rally {
            accepted: Arc::clone(&shared_accepted),
            refused: Arc::clone(&shared_refused),
        })
        .unwrap();
    // Stop only once the overflow queue has filled and refused a send, so
    // that shutdown finds held messages however slowly the cores ran. (A
    // send is refused only when its overflow queue is full.)
    let patience = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while refused.load(Ordering::Relaxed) == 0 && std::time::Instant::now() < patience {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let report = running.shutdown().unwrap();
    let totals = report.totals;
    assert!(totals.overflowed > 0, "{report}");
    assert!(totals.refused > 0, "{report}");
    assert_eq!(refused.load(Ordering::Relaxed), totals.refused, "{report}");
    assert_eq!(
        accepted.load(Ordering::Relaxed),
        totals.sent + report.held_total(),
        "{report}"
    );
    assert!(report.adds_up(), "{report}");
}

/// Core 0 sends `TOTAL` messages to core 1 and, when refused, idles until
/// room appears (under `Park` it parks and must be woken: by core 1
/// draining a full high lane, or reading below the in-flight bound).
struct Patient {
    priority: Priority,
    sent: u64,
    seen: u64,
}

const TOTAL: u64 = 10_000;

impl Handler for Patient {
    type Message = Item;

    fn on_turn(&mut self, cx: &mut Context<'_, Item>) -> bool {
        if cx.core() != 0 || self.sent == TOTAL {
            return false;
        }
        match cx.send_with(1, &item(self.sent), self.priority) {
            Ok(()) => self.sent += 1,
            Err(SendError::Full(back)) => {
                assert_eq!(back.id, self.sent, "the same message came back");
                return false;
            }
            Err(other) => panic!("{other}"),
        }
        true
    }

    fn on_message(&mut self, cx: &mut Context<'_, Item>, _: usize, item: &ArchivedItem) {
        assert_eq!(item.id, self.seen, "out of order");
        self.seen += 1;
        if self.seen == TOTAL {
            cx.stop_runtime();
        }
    }
}

fn patient(builder: corelane::runtime::Builder, priority: Priority) {
    let report = builder
        .cores(2)
        .idle(idle())
        .drain_batch(1)
        .build()
        .unwrap()
        .start(move |_| Patient {
            priority,
            sent: 0,
            seen: 0,
        })
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(report.totals.sent, TOTAL);
    assert_eq!(report.totals.delivered, TOTAL);
    assert!(report.adds_up(), "{report}");
}

#[test]
fn a_sender_refused_by_a_full_high_lane_is_woken_when_it_drains() {
    let _serial = serial();
    patient(Runtime::builder().high_lane_capacity(1024), Priority::High);
}

#[test]
fn a_sender_refused_at_the_in_flight_bound_is_woken_when_it_falls() {
    let _serial = serial();
    patient(Runtime::builder().max_in_flight(3), Priority::Normal);
}
