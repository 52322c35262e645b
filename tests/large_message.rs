//! Messages too large for a lane frame travel as pooled buffer handles:
//! they arrive intact, are read in place, and their buffers go home.

use std::sync::{Arc, Mutex};

use corelane::frame::Message;
use corelane::pool::{PoolConfig, PoolUsage};
use corelane::runtime::{Context, Handler, IdleStrategy, Runtime, SendError};

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
    let bytes: Vec<u8> = (0..BLOB_LEN)
        .map(|i| ((seq as usize + i) % 251) as u8)
        .collect();
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
                    seen.payload_aligned = bytes.as_ptr() as usize % 16 == 0;
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
}
