//! Messages too large for a lane frame travel as pooled buffer handles:
//! they arrive intact, are read in place, and their buffers go home.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use corelane::frame::Message;
use corelane::pool::{PoolConfig, PoolUsage};
use corelane::runtime::{
    Backpressure, Context, Handler, IdleStrategy, Runtime, SendError, VirtualClock,
};

/// 4 MiB of bytes in each large message.
const BLOB_LEN: usize = 4 << 20;

#[derive(rkyv::Archive, rkyv::Serialize)]
enum Bulk {
    /// A large message: `bytes[i] == (seq + i) % 251`, `sum` of them all.
    Blob { seq: u32, bytes: Vec<u8>, sum: u64 },
    /// The receiver checked blob `seq`.
    Checked(u32),
}

impl Message for Bulk {
    const TYPE_ID: u16 = 9;
    const VERSION: u8 = 1;
    const NAME: &'static str = "Bulk";
}

fn blob(seq: u32) -> Bulk {
    blob_of(seq, BLOB_LEN)
}

/// The bytes of blob `seq`, `len` of them.
fn blob_bytes(seq: u32, len: usize) -> Vec<u8> {
    (0..len).map(|i| ((seq as usize + i) % 251) as u8).collect()
}

fn blob_of(seq: u32, len: usize) -> Bulk {
    let bytes = blob_bytes(seq, len);
    let sum = bytes.iter().map(|&b| u64::from(b)).sum();
    Bulk::Blob { seq, bytes, sum }
}

/// What the test reads back after the runtime stops.
#[derive(Default)]
struct Seen {
    /// Blobs the receiver found intact, by sequence.
    intact: Vec<u32>,
    /// Core 0's pool after its last blob came home.
    sender_pool: Option<PoolUsage>,
    /// Bytes of the payload as the receiver saw it, for the first blob.
    payload_aligned: bool,
}

/// Core 0 sends `rounds` blobs to `to` one at a time, each after the last
/// was checked; the receiver checks every byte in place.
struct Relay {
    to: usize,
    rounds: u32,
    seen: Arc<Mutex<Seen>>,
}

impl Relay {
    fn send_blob(&self, cx: &mut Context<'_, Bulk>, seq: u32) {
        let msg = blob(seq);
        match cx.send(self.to, &msg) {
            Ok(()) => {}
            Err(error) => panic!("blob {seq}: {error}"),
        }
    }
}

impl Handler for Relay {
    type Message = Bulk;

    fn on_start(&mut self, cx: &mut Context<'_, Bulk>) {
        if cx.core() == 0 {
            assert!(BLOB_LEN > cx.max_payload(), "the blob must not fit a frame");
            self.send_blob(cx, 0);
        }
    }

    fn on_message(&mut self, cx: &mut Context<'_, Bulk>, from: usize, msg: &ArchivedBulk) {
        match msg {
            ArchivedBulk::Blob { seq, bytes, sum } => {
                let seq = seq.to_native();
                let intact = bytes.len() == BLOB_LEN
                    && bytes
                        .iter()
                        .enumerate()
                        .all(|(i, &b)| b == ((seq as usize + i) % 251) as u8)
                    && bytes.iter().map(|&b| u64::from(b)).sum::<u64>() == sum.to_native();
                let mut seen = self.seen.lock().unwrap();
                if seq == 0 {
                    seen.payload_aligned = (bytes.as_ptr() as usize).is_multiple_of(16);
                }
                if intact {
                    seen.intact.push(seq);
                }
                drop(seen);
                if let Err(SendError::Full(_)) = cx.send(from, &Bulk::Checked(seq)) {
                    panic!("an ack lane is never full here");
                }
            }
            ArchivedBulk::Checked(seq) => {
                let next = seq.to_native() + 1;
                if next < self.rounds {
                    // Taking the next buffer drains the last one home.
                    self.send_blob(cx, next);
                } else {
                    // The last buffer was dropped before the ack was sent.
                    cx.pool().reclaim();
                    self.seen.lock().unwrap().sender_pool = Some(cx.pool().usage());
                    cx.stop_runtime();
                }
            }
        }
    }
}

fn run(to: usize, rounds: u32, idle: IdleStrategy) -> Seen {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let shared = Arc::clone(&seen);
    let runtime = Runtime::builder()
        .cores(2)
        .idle(idle)
        .lane_capacity(1 << 16)
        .pool(PoolConfig::default())
        .build()
        .expect("a valid runtime");
    let report = runtime
        .start(move |_core| Relay {
            to,
            rounds,
            seen: Arc::clone(&shared),
        })
        .expect("the runtime starts")
        .wait()
        .expect("no core panics");
    assert!(report.adds_up(), "{report}");
    assert_eq!(report.totals.delivered, 2 * u64::from(rounds));
    let pools = report.metrics.merged().pool;
    assert_eq!(pools.in_use, 0, "every buffer is back: {pools:?}");
    Arc::try_unwrap(seen)
        .ok()
        .expect("the handlers are gone")
        .into_inner()
        .unwrap()
}

/// Blobs of 4 MiB cross from core 0 to core 1, intact; each buffer comes
/// back through the return queue and is used again, so the pool never
/// falls back to the allocator.
#[test]
fn a_large_message_crosses_cores_intact_and_its_buffer_returns() {
    let seen = run(1, 3, IdleStrategy::Park);
    assert_eq!(seen.intact, [0, 1, 2]);
    assert!(seen.payload_aligned);
    let pool = seen.sender_pool.expect("core 0 read its pool");
    assert_eq!(pool.in_use, 0, "{pool:?}");
    assert_eq!(pool.fallbacks, 0, "{pool:?}");
    assert_eq!(pool.remote_returns, 3, "{pool:?}");
    assert_eq!(pool.free, 1, "one buffer went round three times: {pool:?}");
    assert!(pool.free_bytes >= BLOB_LEN as u64, "{pool:?}");
}

/// A core may send itself a large message: the buffer comes back on the
/// owning core, straight to the free list.
#[test]
fn a_large_message_to_the_same_core_returns_locally() {
    let seen = run(0, 2, IdleStrategy::BusySpin);
    assert_eq!(seen.intact, [0, 1]);
    let pool = seen.sender_pool.expect("core 0 read its pool");
    assert_eq!(pool.remote_returns, 0, "{pool:?}");
    assert_eq!(
        (pool.in_use, pool.free, pool.fallbacks),
        (0, 1, 0),
        "{pool:?}"
    );
}

/// A message over the runtime's `max_message` is refused, handed back.
#[test]
fn a_message_over_the_limit_is_handed_back() {
    struct Refuser(Arc<Mutex<Option<String>>>);
    impl Handler for Refuser {
        type Message = Bulk;
        fn on_start(&mut self, cx: &mut Context<'_, Bulk>) {
            let msg = blob(0);
            let error = cx.send(0, &msg).expect_err("over the limit");
            assert!(matches!(error, SendError::TooLarge { .. }));
            *self.0.lock().unwrap() = Some(error.to_string());
            cx.stop_runtime();
        }
        fn on_message(&mut self, _: &mut Context<'_, Bulk>, _: usize, _: &ArchivedBulk) {
            unreachable!("nothing is sent");
        }
    }
    let text = Arc::new(Mutex::new(None));
    let shared = Arc::clone(&text);
    let report = Runtime::builder()
        .cores(1)
        .max_message(1 << 20)
        .build()
        .unwrap()
        .start(move |_| Refuser(Arc::clone(&shared)))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(report.totals.sent, 0);
    let text = text.lock().unwrap().clone().unwrap();
    assert!(text.contains("largest is 1048576"), "{text}");
    // The limit is the runtime's, not a lane's: lanes carry larger
    // messages by handle.
    assert!(text.contains("Builder::max_message"), "{text}");
    assert!(!text.contains("lane"), "{text}");
}

/// Bytes in the blobs of the held-message tests: far over a frame of the
/// 64 KiB lanes they use, and served by the pool's 256 KiB class.
const HELD_BLOB_LEN: usize = 200 * 1024;

const MS: u64 = 1_000_000;

/// Keeps every blob it receives, byte for byte, in order.
#[derive(Default)]
struct Keeper {
    got: Vec<(u32, Vec<u8>)>,
}

impl Handler for Keeper {
    type Message = Bulk;

    fn on_message(&mut self, _: &mut Context<'_, Bulk>, _: usize, msg: &ArchivedBulk) {
        if let ArchivedBulk::Blob { seq, bytes, .. } = msg {
            self.got.push((seq.to_native(), bytes.to_vec()));
        }
    }
}

/// The blobs `keeper` received are exactly `seqs`, in that order, each
/// with every byte it was sent with.
fn assert_received(keeper: &Keeper, seqs: &[u32]) {
    let got: Vec<u32> = keeper.got.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(got, seqs);
    for (seq, bytes) in &keeper.got {
        assert!(
            *bytes == blob_bytes(*seq, HELD_BLOB_LEN),
            "blob {seq} arrived changed ({} bytes)",
            bytes.len()
        );
    }
}

/// Delayed messages too large for a frame wait in pooled buffers and
/// travel by handle when due: they arrive byte for byte, a cancelled one
/// gives its buffer back at once, and one still pending at shutdown is
/// reported held and its buffer freed.
#[test]
fn delayed_large_messages_travel_by_handle_and_their_buffers_return() {
    let clock = VirtualClock::new();
    let mut runtime = common::manual_on_clock(common::large_message_builder(), &clock, |_| {
        Keeper::default()
    });
    let usage = runtime.with_context(0, |_, cx| {
        assert!(
            HELD_BLOB_LEN > cx.max_payload(),
            "the blob must not fit a frame"
        );
        cx.send_after(Duration::from_millis(10), 1, &blob_of(0, HELD_BLOB_LEN))
            .unwrap();
        cx.send_after(Duration::from_millis(20), 1, &blob_of(1, HELD_BLOB_LEN))
            .unwrap();
        let cancelled = cx
            .send_after(Duration::from_millis(15), 1, &blob_of(2, HELD_BLOB_LEN))
            .unwrap();
        cx.send_after(Duration::from_secs(3600), 1, &blob_of(3, HELD_BLOB_LEN))
            .unwrap();
        assert!(cx.cancel_timer(cancelled));
        cx.pool().usage()
    });
    // Four held in buffers of the 256 KiB class; the cancelled one is back.
    assert_eq!(
        (usage.in_use, usage.free, usage.fallbacks),
        (3, 1, 0),
        "{usage:?}"
    );
    assert_eq!(usage.in_use_bytes, 3 * 256 * 1024, "{usage:?}");

    clock.set(10 * MS);
    runtime.run_until_idle(10);
    assert_received(runtime.handler(1), &[0]);
    clock.set(20 * MS);
    runtime.run_until_idle(10);
    assert_received(runtime.handler(1), &[0, 1]);

    // Both delivered buffers came home (on this test's one thread the
    // receiver drops them on their owner's thread: no return queue).
    let usage = runtime.with_context(0, |_, cx| cx.pool().usage());
    assert_eq!(
        (usage.in_use, usage.free, usage.fallbacks),
        (1, 3, 0),
        "{usage:?}"
    );

    let report = runtime.shutdown().unwrap();
    assert_eq!(report.totals.delayed, 4);
    assert_eq!(report.totals.sent, 2);
    assert_eq!(report.totals.delivered, 2);
    assert_eq!(report.held_total(), 1, "{report}");
    assert_eq!(report.held[0].name, "Bulk", "{report}");
    assert!(report.adds_up(), "{report}");
    let pool = report.metrics.cores[0].pool;
    assert_eq!((pool.in_use, pool.fallbacks), (0, 0), "{pool:?}");
}

/// The overflow policy holds messages too large for a frame in pooled
/// buffers and sends them on by handle, in order, as room appears.
#[test]
fn overflow_holds_large_messages_by_handle_and_keeps_order() {
    let mut runtime = common::large_message_builder()
        .max_in_flight(1)
        .backpressure(Backpressure::Overflow { capacity: 3 })
        .build()
        .unwrap()
        .start_manual(|_| Keeper::default())
        .unwrap();
    let (refused, usage) = runtime.with_context(0, |_, cx| {
        let refused: Vec<u32> = (0..5)
            .filter_map(|seq| {
                cx.send(1, &blob_of(seq, HELD_BLOB_LEN)).err().map(|error| {
                    match error.into_inner() {
                        Bulk::Blob { seq, .. } => *seq,
                        Bulk::Checked(_) => unreachable!(),
                    }
                })
            })
            .collect();
        (refused, cx.pool().usage())
    });
    // One in flight, three held, the last refused and handed back; four
    // buffers out, the refused one never took one.
    assert_eq!(refused, [4]);
    assert_eq!((usage.in_use, usage.fallbacks), (4, 0), "{usage:?}");

    runtime.run_until_idle(20);
    assert_received(runtime.handler(1), &[0, 1, 2, 3]);
    let usage = runtime.with_context(0, |_, cx| cx.pool().usage());
    assert_eq!(
        (usage.in_use, usage.free, usage.fallbacks),
        (0, 4, 0),
        "{usage:?}"
    );

    let report = runtime.shutdown().unwrap();
    assert_eq!(report.totals.overflowed, 3);
    assert_eq!(report.totals.refused, 1);
    assert_eq!((report.totals.sent, report.totals.delivered), (4, 4));
    assert!(report.held.is_empty(), "{report}");
    assert!(report.adds_up(), "{report}");
}

/// Messages held by the overflow policy when the runtime stops are
/// accounted for: delivered in the final drain or reported held, never
/// lost, and their buffers are back either way.
#[test]
fn large_messages_held_at_shutdown_are_reported_and_their_buffers_freed() {
    let mut runtime = common::large_message_builder()
        .max_in_flight(1)
        .backpressure(Backpressure::Overflow { capacity: 8 })
        .build()
        .unwrap()
        .start_manual(|_| Keeper::default())
        .unwrap();
    runtime.with_context(0, |_, cx| {
        for seq in 0..6 {
            cx.send(1, &blob_of(seq, HELD_BLOB_LEN)).unwrap();
        }
    });
    let report = runtime.shutdown().unwrap();
    assert_eq!(report.totals.overflowed, 5);
    assert_eq!(report.totals.delivered + report.held_total(), 6, "{report}");
    assert!(report.adds_up(), "{report}");
    // Six out at once, four the 256 KiB class's cap: two came from the
    // allocator, counted, and went back to it.
    let pool = report.metrics.cores[0].pool;
    assert_eq!(
        (pool.in_use, pool.free, pool.fallbacks),
        (0, 4, 2),
        "{pool:?}"
    );
}

/// A delayed message over `max_message` is handed back when scheduled.
#[test]
fn a_delayed_message_over_the_limit_is_handed_back() {
    let mut runtime = common::large_message_builder()
        .max_message(100 * 1024)
        .build()
        .unwrap()
        .start_manual(|_| Keeper::default())
        .unwrap();
    let text = runtime.with_context(0, |_, cx| {
        let msg = blob_of(0, HELD_BLOB_LEN);
        let error = cx
            .send_after(Duration::from_millis(1), 1, &msg)
            .expect_err("over the limit");
        assert!(matches!(error, SendError::TooLarge { .. }));
        error.to_string()
    });
    assert!(text.contains("largest is 102400"), "{text}");
    let report = runtime.shutdown().unwrap();
    assert_eq!(report.totals.delayed, 0);
    assert_eq!(report.metrics.cores[0].pool.in_use, 0);
}
