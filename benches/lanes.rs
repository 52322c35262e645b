//! Lanes against the floor and against peer rings, side by side in one run.
//!
//! ```text
//! cargo bench --bench lanes                  # about 2 minutes
//! LANES_QUICK=1 cargo bench --bench lanes    # smoke run, a few seconds
//! ```
//!
//! Every row moves `u64` sequence numbers (the frame rows: 64-byte rkyv
//! messages carrying them) between two threads pinned to two different
//! CPUs, and is measured twice:
//!
//! - *throughput*: one thread sends as fast as the lane takes values, the
//!   other receives and checks their order; both spin
//!   (`std::hint::spin_loop`) when the lane is full or empty. Messages per
//!   second over a fixed time, timed by the receiver.
//! - *round trip*: thread A sends, thread B echoes what it received through
//!   a second lane of the same kind, A waits for the echo. A times each round
//!   trip with the time-stamp counter (`rdtscp`) and records it in an
//!   HdrHistogram, for a fixed time after a warm-up of more than a lap of
//!   every ring. Batch rows carry a whole batch (64 values) each way.
//!   One-value rows echo and stop the clock where the lane hands the value
//!   over: inside its receive call, where the runtime runs a handler (for
//!   the frame ring, on the frame in place, before the ring zeroes the
//!   frame and gives its space back, as a core's turn does). A value popped
//!   from a typed ring or a peer is handed over when the pop returns, its
//!   slot already released. Batch rows echo once the whole batch is in.
//!
//! The *floor* is the round trip with no lane at all: A writes a ping line,
//! B answers on a pong line, each on a 128-byte-aligned line of its own. No
//! cross-core message can cost less on this machine, so lane latencies are
//! reported as multiples of it. It is timed exactly as the lanes are, so
//! the cost of the clock (printed in the header) is in both.
//!
//! A frame of the frame rows (a 64-byte archive and its 32-byte header)
//! spans two cache lines, so a second floor moves a 96-byte message the
//! same way, length word last: the least such a frame can cost, with no
//! ring. The bars' "(why)" lines set the frame ring against it, and a
//! frame of one word (one line with its header) against the one-line floor.
//! Both floors keep their message on the same lines; a ring's messages
//! land on new lines each time. A third floor, the *slot floor*, moves the
//! 96-byte messages through as many slots as the frame ring holds frames,
//! laid out as its frames are, with no ring logic at all: the least a
//! 96-byte message costs through a ring of that many slots, and the frame
//! ring is set against it. Only of that many: the slot floor costs less
//! with fewer slots (one run: 1.4x the floor with 21 slots, 2 KiB of
//! frames, against 1.6x with 2,730), where the frame ring did not (1.8x
//! at both sizes), so it is no floor for a smaller ring.
//! And a peer carries the same bytes: rtrb with 96-byte values (twelve
//! words, the frame's size, 32-byte aligned as frames are, so that each
//! lies on two cache lines as a frame does), one slot per frame of the
//! frame ring, set against the frame ring and the floor: what the bar asks
//! of a 96-byte message, asked of the peer.
//! Two more explain tails and throughput: how many round trips a second
//! are *slow* (over 4 us: the CPUs were away, not busy with the lane) for
//! the frame ring and for the floor, and what share of each row's round
//! trips that is (past 0.1%, p99.9 is a slow one); and how often the
//! throughput runs found the typed ring and rtrb near empty, where each
//! value costs cache-line transfers. rtrb also runs twice, at 4096 and at
//! 16 slots, the second time as "rtrb again": its ratio to the first is
//! the spread that any "x rtrb" ratio carries in that run.
//!
//! The rows run interleaved for several rounds, after a short warm-up round
//! that is not kept: a round measures every row's throughput (A B C ...),
//! then every row's round trips (A B C ...), each corelane row next to the
//! row it is compared with; every other round runs them in reverse (... C B
//! A), so that neither row of a pair always runs first. The table shows
//! each row's median over the
//! rounds. Ratios are the medians of the per-round ratios,
//! each taken between two rows measured seconds apart. Runs are bounded by
//! time, not by counts, so that a loaded machine does not stretch the run.
//!
//! Environment: `LANES_QUICK=1` (smoke run), `LANES_ROUNDS=n` (rounds,
//! default 7), `LANES_FILTER=text` (only rows whose name contains `text`,
//! or one of the `|`-separated parts of `text`;
//! the three floors and rtrb always run, as references). Results also go to
//! `$CARGO_TARGET_DIR/corelane-bench/lanes.json` (default `target/`).
//! Run as a test (`cargo test --benches`), it does a quick pass and writes
//! no JSON.
//!
//! `LANES_SOLO=key` (`typed`, `typed-batch`, `frames`, `rtrb`, ...) instead
//! sends and receives `LANES_SOLO_MESSAGES` values (default 1,000,000) on
//! one thread through that row's lane, to count instructions per message:
//!
//! ```text
//! LANES_SOLO=typed valgrind --tool=callgrind --toggle-collect='*solo*' \
//!     target/release/deps/lanes-<hash> --bench
//! ```

use std::fmt::Write as _;
use std::hint::spin_loop;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};
use std::{env, thread};

use corelane::frame::envelope::{access_trusted, check_type, encode_into, encoded_len};
use corelane::frame::{Message, HEADER_LEN};
use corelane::lane::frames::{self, ClaimError, FrameConsumer, FrameProducer, WriteError};
use corelane::lane::{typed, HeapRegion};
use crossbeam_queue::ArrayQueue;
use hdrhistogram::Histogram;
use ringbuf::traits::{Consumer as _, Producer as _, Split as _};
use ringbuf::{HeapCons, HeapProd, HeapRb};
use rkyv::ser::allocator::Arena;
use rtrb::chunks::ChunkError;

mod common;
use common::{
    clock_name, clock_read_ns, json_number, json_string, median, new_histogram, ns_per_tick, pin,
    ticks, write_json,
};

/// Values a batch row moves per call, and each way per round trip.
const BATCH: usize = 64;
/// Slots of every ring in the default-capacity rows.
const DEFAULT_SLOTS: usize = 4096;
/// Slots of the small-ring rows (case C06).
const SMALL_SLOTS: usize = 16;
/// Bytes of frames in the frame ring rows: 2,730 frames of 96 bytes (a
/// 64-byte archive and its 32-byte header; frames are 32-byte aligned).
const FRAME_RING_BYTES: usize = 256 * 1024;
/// Slots of the peer row that carries frame-sized values: as many as the
/// frame ring holds frames.
const FRAME_SIZED_SLOTS: usize = FRAME_RING_BYTES / size_of::<FrameSized>();
/// Frames the frame ring's reader takes per `drain`, as the runtime does.
const DRAIN_BATCH: usize = 64;
/// Values the throughput runs move between two looks at the clock (the
/// receiver) or at the stop flag (the sender).
const BLOCK: u64 = 4096;
/// Values sent before a round trip is recorded: more than a lap of every
/// ring, so that no first touch of a page lands in the histogram.
const WARMUP_VALUES: u64 = 8192;
// ---------------------------------------------------------------------------
// The message of the frame rows

// The frame rows' message: eight words, 64 archived bytes (the IPC
// bench's and `corelane bench`'s too).
use corelane::bench::ipc::Words64;

/// A frame row's message: made from a sequence number, read back to it.
trait Probe: Message + Send {
    fn new(sequence: u64) -> Self;

    /// The sequence number in an archived message, checked whole.
    fn sequence(archived: &Self::Archived) -> u64;
}

impl Probe for Words64 {
    fn new(sequence: u64) -> Self {
        Words64::new(sequence)
    }

    fn sequence(archived: &Self::Archived) -> u64 {
        let first = archived.words[0].to_native();
        let last = archived.words[7].to_native();
        assert_eq!(last, first + 7, "torn message {first}");
        first
    }
}

/// The one-line frame row's message: one word, 8 archived bytes, so that
/// header and payload share a cache line.
#[derive(rkyv::Archive, rkyv::Serialize)]
struct Word8 {
    word: u64,
}

impl Message for Word8 {
    const TYPE_ID: u16 = 0x6c62;
    const VERSION: u8 = 1;
    const NAME: &'static str = "Word8";
}

impl Probe for Word8 {
    fn new(sequence: u64) -> Self {
        Word8 { word: sequence }
    }

    fn sequence(archived: &Self::Archived) -> u64 {
        archived.word.to_native()
    }
}

/// A value of a frame's size (96 bytes: a 64-byte archive and its 32-byte
/// header), for the peer row that carries as many bytes as a frame:
/// word `i` is the sequence number plus `i`. Aligned to 32 bytes, as frames
/// are, so that each value lies on two cache lines as a frame does (a bare
/// `[u64; 12]` is 8-aligned, and rtrb's buffer then starts where malloc
/// puts it: often 16 bytes past a line, with every other value on three).
#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct FrameSized([u64; 12]);

const _: () = assert!(size_of::<FrameSized>() == 96);

fn frame_sized(sequence: u64) -> FrameSized {
    FrameSized(std::array::from_fn(|i| sequence + i as u64))
}

/// An rtrb pair for [`FrameSized`] values, checked to lay every value on
/// two cache lines, as the frame ring lays every frame: its buffer must
/// start at a multiple of 32 bytes (96-byte values at 16 bytes past a line
/// would put every other value on three lines).
fn frame_sized_pair(capacity: usize) -> (rtrb::Producer<FrameSized>, rtrb::Consumer<FrameSized>) {
    let (mut tx, rx) = rtrb::RingBuffer::new(capacity);
    // A chunk not committed writes nothing: the ring stays empty.
    let start = tx
        .write_chunk_uninit(capacity)
        .expect("a new ring has room for its capacity")
        .as_mut_slices()
        .0
        .as_ptr() as usize;
    assert_eq!(
        start % 32,
        0,
        "rtrb's buffer of 96-byte values starts at {start:#x}, not on a 32-byte \
         boundary: every other value would span three cache lines, a frame two"
    );
    (tx, rx)
}

/// The sequence number a [`FrameSized`] carries, checked at both ends: its
/// first and last words lie on different cache lines.
fn frame_sized_sequence(FrameSized(words): &FrameSized) -> u64 {
    assert_eq!(words[11], words[0] + 11, "torn value {}", words[0]);
    words[0]
}

// ---------------------------------------------------------------------------
// The lanes under test

/// A kind of lane, seen as a pipe of `u64` sequence numbers.
trait Lane {
    type Tx: Send;
    type Rx: Send;

    /// Makes a lane of `capacity` (slots, or bytes for the frame ring).
    fn pair(capacity: usize) -> (Self::Tx, Self::Rx);

    /// Sends `from`, `from + 1`, ... (below `to`), as many as one call of
    /// the lane's API takes: one for the one-at-a-time rows, up to
    /// [`BATCH`] for the batch rows. Returns how many it sent.
    fn send(tx: &mut Self::Tx, from: u64, to: u64) -> u64;

    /// Receives what one call of the lane's API hands over, but at most
    /// `limit` (at least 1) values, passing each to `each`; returns how many.
    fn recv(rx: &mut Self::Rx, limit: u64, each: impl FnMut(u64)) -> u64;

    /// Values waiting in the lane, as the receiver sees it, where the lane
    /// can tell; sampled by the throughput runs (see [`NEAR_EMPTY`]).
    fn queued(_rx: &Self::Rx) -> Option<usize> {
        None
    }
}

/// A lane is *near empty* in a throughput run when at most this many values
/// wait in it: the receiver then reads slots the sender is writing, and
/// reloads the sender's index on almost every value. How often the runs
/// find the typed ring and rtrb near empty tells why their throughputs
/// differ (the "(why)" lines under the bars).
const NEAR_EMPTY: usize = 64;

/// A round trip longer than this (ten floors and more on any machine seen
/// here) is *slow*: the CPUs were away (an interrupt, a kernel thread),
/// not busy with the lane. Slow round trips per second of running that are
/// the same for every row are the machine's; a lane's own slow path would
/// show per round trip instead. The "(why)" lines compare both.
const SLOW_NS: u64 = 4_000;

/// A lane that moves one value per call of its API, seen through the
/// three calls every such peer has: make a pair, try to send one value, try
/// to receive one. [`OneByOne`] turns it into a [`Lane`], so that every
/// one-at-a-time row runs through the same code.
trait Peer {
    type Tx: Send;
    type Rx: Send;

    fn pair(capacity: usize) -> (Self::Tx, Self::Rx);

    /// Sends `value`; `false` if the lane is full.
    fn try_send(tx: &mut Self::Tx, value: u64) -> bool;

    /// Receives the oldest value; `None` if the lane is empty.
    fn try_recv(rx: &mut Self::Rx) -> Option<u64>;

    /// As [`Lane::queued`].
    fn queued(_rx: &Self::Rx) -> Option<usize> {
        None
    }
}

/// A [`Peer`], one value per call, as a [`Lane`].
struct OneByOne<P>(std::marker::PhantomData<P>);

impl<P: Peer> Lane for OneByOne<P> {
    type Tx = P::Tx;
    type Rx = P::Rx;

    fn pair(capacity: usize) -> (Self::Tx, Self::Rx) {
        P::pair(capacity)
    }

    #[inline]
    fn send(tx: &mut Self::Tx, from: u64, _to: u64) -> u64 {
        u64::from(P::try_send(tx, from))
    }

    #[inline]
    fn recv(rx: &mut Self::Rx, _limit: u64, mut each: impl FnMut(u64)) -> u64 {
        match P::try_recv(rx) {
            Some(value) => {
                each(value);
                1
            }
            None => 0,
        }
    }

    fn queued(rx: &Self::Rx) -> Option<usize> {
        P::queued(rx)
    }
}

/// Declares a [`Peer`]: its name and doc, its two halves, how to make a
/// pair of capacity `$capacity`, and its send and receive calls on
/// `$tx`/`$rx` with `$value`.
macro_rules! peer {
    ($(#[$doc:meta])* $name:ident: $tx_type:ty, $rx_type:ty;
     pair($capacity:ident) $pair:expr;
     send($tx:ident, $value:ident) $send:expr;
     recv($rx:ident) $recv:expr;
     $(queued($queued_rx:ident) $queued:expr;)?) => {
        $(#[$doc])*
        struct $name;

        impl Peer for $name {
            type Tx = $tx_type;
            type Rx = $rx_type;

            fn pair($capacity: usize) -> (Self::Tx, Self::Rx) {
                $pair
            }

            #[inline]
            fn try_send($tx: &mut Self::Tx, $value: u64) -> bool {
                $send
            }

            #[inline]
            fn try_recv($rx: &mut Self::Rx) -> Option<u64> {
                $recv
            }

            $(
                fn queued($queued_rx: &Self::Rx) -> Option<usize> {
                    Some($queued)
                }
            )?
        }
    };
}

peer! {
    /// corelane's typed ring, `push` and `pop`.
    Typed: typed::Producer<u64>, typed::Consumer<u64>;
    pair(capacity) typed::ring(capacity);
    send(tx, value) tx.push(value).is_ok();
    recv(rx) rx.pop();
    queued(rx) rx.len();
}

peer! {
    /// rtrb, `push` and `pop`.
    Rtrb: rtrb::Producer<u64>, rtrb::Consumer<u64>;
    pair(capacity) rtrb::RingBuffer::new(capacity);
    send(tx, value) tx.push(value).is_ok();
    recv(rx) rx.pop().ok();
    queued(rx) rx.slots();
}

peer! {
    /// rtrb with values of a frame's size, `push` and `pop`.
    RtrbFrameSized: rtrb::Producer<FrameSized>, rtrb::Consumer<FrameSized>;
    pair(capacity) frame_sized_pair(capacity);
    send(tx, value) tx.push(frame_sized(value)).is_ok();
    recv(rx) rx.pop().ok().map(|words| frame_sized_sequence(&words));
}

peer! {
    /// ringbuf's SPSC heap ring, `try_push` and `try_pop`.
    Ringbuf: HeapProd<u64>, HeapCons<u64>;
    pair(capacity) HeapRb::new(capacity).split();
    send(tx, value) tx.try_push(value).is_ok();
    recv(rx) rx.try_pop();
}

peer! {
    /// crossbeam-queue's `ArrayQueue` (a bounded MPMC queue), used by one
    /// thread on each side.
    Queue: Arc<ArrayQueue<u64>>, Arc<ArrayQueue<u64>>;
    pair(capacity) {
        let queue = Arc::new(ArrayQueue::new(capacity));
        (Arc::clone(&queue), queue)
    };
    send(tx, value) tx.push(value).is_ok();
    recv(rx) rx.pop();
}

peer! {
    /// crossbeam-channel's bounded channel, `try_send` and `try_recv`.
    Channel: crossbeam_channel::Sender<u64>, crossbeam_channel::Receiver<u64>;
    pair(capacity) crossbeam_channel::bounded(capacity);
    send(tx, value) tx.try_send(value).is_ok();
    recv(rx) rx.try_recv().ok();
}

peer! {
    /// `std::sync::mpsc::sync_channel`, `try_send` and `try_recv`.
    Mpsc: std::sync::mpsc::SyncSender<u64>, std::sync::mpsc::Receiver<u64>;
    pair(capacity) std::sync::mpsc::sync_channel(capacity);
    send(tx, value) tx.try_send(value).is_ok();
    recv(rx) rx.try_recv().ok();
}

/// corelane's typed ring in batches: `write_chunk` and `pop_batch` (a
/// `read_chunk`).
struct TypedBatch;

impl Lane for TypedBatch {
    type Tx = typed::Producer<u64>;
    type Rx = typed::Consumer<u64>;

    fn pair(capacity: usize) -> (Self::Tx, Self::Rx) {
        typed::ring(capacity)
    }

    #[inline]
    fn send(tx: &mut Self::Tx, from: u64, to: u64) -> u64 {
        // `write_chunk` of the batch, as rtrb's batch row claims its chunk:
        // `push_batch` claims every free slot, and so loads the shared head
        // on every call.
        let wanted = (to - from).min(BATCH as u64);
        let Ok(mut chunk) = tx.write_chunk(wanted as usize) else {
            return 0;
        };
        let sent = chunk.fill_from(from..from + wanted);
        chunk.commit(sent);
        sent as u64
    }

    #[inline]
    fn recv(rx: &mut Self::Rx, limit: u64, each: impl FnMut(u64)) -> u64 {
        rx.pop_batch(BATCH.min(limit as usize), each) as u64
    }
}

/// corelane's frame ring: `write_message` of a [`Probe`] message (a
/// [`Words64`] unless named), then `drain`, `check_type` and
/// `access_trusted`.
struct Frames<M = Words64>(PhantomData<M>);

/// The writing end of a frame row, with the scratch space rkyv needs.
struct FrameTx<M> {
    producer: FrameProducer<HeapRegion>,
    arena: Arena,
    /// Bytes a message archives to.
    payload_len: usize,
    _message: PhantomData<fn(M)>,
}

impl<M: Probe> Lane for Frames<M> {
    type Tx = FrameTx<M>;
    type Rx = FrameConsumer<HeapRegion>;

    fn pair(capacity: usize) -> (Self::Tx, Self::Rx) {
        let (producer, consumer) = frames::heap_ring(capacity);
        let mut arena = Arena::new();
        let payload_len = encoded_len(&M::new(0), &mut arena).expect("probe messages archive");
        let tx = FrameTx {
            producer,
            arena,
            payload_len,
            _message: PhantomData,
        };
        (tx, consumer)
    }

    #[inline]
    fn send(tx: &mut Self::Tx, from: u64, _to: u64) -> u64 {
        // The send time is the caller's to give; the sequence number stands
        // in for it, so that no clock read is charged to the ring.
        let message = M::new(from);
        match tx.producer.write_message(&message, from, &mut tx.arena) {
            Ok(()) => 1,
            Err(WriteError::Claim(ClaimError::Full)) => 0,
            Err(error) => panic!("frame lane refused a message: {error}"),
        }
    }

    #[inline]
    fn recv(rx: &mut Self::Rx, limit: u64, mut each: impl FnMut(u64)) -> u64 {
        let read = rx.drain(DRAIN_BATCH.min(limit as usize), |frame| {
            if let Err(error) = check_type::<M>(&frame.meta) {
                panic!("unexpected frame: {error}");
            }
            // SAFETY: the frame was written by `write_message` of an `M` in
            // this process (type and version checked just above) and is
            // lent unchanged; frame payloads start 32-byte aligned.
            let message = unsafe { access_trusted::<M>(frame.payload()) };
            each(M::sequence(message));
        });
        read.unwrap_or_else(|error| panic!("frame lane: {error}")) as u64
    }
}

/// corelane's frame ring with a claim of exactly the message's size:
/// `claim`, `encode_into` and `commit`, read as [`Frames`] reads. Not one of
/// the issue's rows: it tells the ring's cost apart from `write_message`'s.
struct FramesExact;

impl Lane for FramesExact {
    type Tx = FrameTx<Words64>;
    type Rx = FrameConsumer<HeapRegion>;

    fn pair(capacity: usize) -> (Self::Tx, Self::Rx) {
        Frames::<Words64>::pair(capacity)
    }

    #[inline]
    fn send(tx: &mut Self::Tx, from: u64, _to: u64) -> u64 {
        let message = Words64::new(from);
        let sequence = tx.producer.committed();
        let mut claim = match tx.producer.claim(tx.payload_len) {
            Ok(claim) => claim,
            Err(ClaimError::Full) => return 0,
            Err(error) => panic!("frame lane refused a message: {error}"),
        };
        let used = encode_into(&message, claim.payload_mut(), &mut tx.arena)
            .expect("a Words64 fits the space its archive needs");
        claim.commit(used, Words64::meta(sequence, from));
        1
    }

    #[inline]
    fn recv(rx: &mut Self::Rx, limit: u64, each: impl FnMut(u64)) -> u64 {
        Frames::<Words64>::recv(rx, limit, each)
    }
}

/// rtrb in batches: `write_chunk_uninit` and `read_chunk`.
struct RtrbBatch;

impl Lane for RtrbBatch {
    type Tx = rtrb::Producer<u64>;
    type Rx = rtrb::Consumer<u64>;

    fn pair(capacity: usize) -> (Self::Tx, Self::Rx) {
        rtrb::RingBuffer::new(capacity)
    }

    #[inline]
    fn send(tx: &mut Self::Tx, from: u64, to: u64) -> u64 {
        let wanted = (to - from).min(BATCH as u64) as usize;
        let chunk = match tx.write_chunk_uninit(wanted) {
            Ok(chunk) => chunk,
            Err(ChunkError::TooFewSlots(0)) => return 0,
            Err(ChunkError::TooFewSlots(free)) => match tx.write_chunk_uninit(free) {
                Ok(chunk) => chunk,
                Err(_) => return 0,
            },
        };
        chunk.fill_from_iter(from..) as u64
    }

    #[inline]
    fn recv(rx: &mut Self::Rx, limit: u64, each: impl FnMut(u64)) -> u64 {
        let chunk = match rx.read_chunk(BATCH.min(limit as usize)) {
            Ok(chunk) => chunk,
            Err(ChunkError::TooFewSlots(0)) => return 0,
            Err(ChunkError::TooFewSlots(available)) => match rx.read_chunk(available) {
                Ok(chunk) => chunk,
                Err(_) => return 0,
            },
        };
        let count = chunk.len() as u64;
        chunk.into_iter().for_each(each);
        count
    }
}

// ---------------------------------------------------------------------------
// The two measurements

/// A value alone on its 128 bytes. Each half of a lane under test lives in
/// one, so that the sender's private fields (its tail, its cached head)
/// never share a cache line with the receiver's, wherever the halves are
/// kept: the harness must not add false sharing the lane itself avoids.
#[repr(align(128))]
struct Own<T>(T);

/// Makes a lane with each half in an [`Own`].
fn own_pair<L: Lane>(capacity: usize) -> (Own<L::Tx>, Own<L::Rx>) {
    let (tx, rx) = L::pair(capacity);
    (Own(tx), Own(rx))
}

/// Sets the flag when dropped: each measuring thread holds one, so that its
/// partner stops spinning when it ends, normally or by a panic.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Sends `from..to`, spinning while the lane is full. Returns `false`,
/// unfinished, if `stop` is set meanwhile.
#[inline]
fn send_all<L: Lane>(tx: &mut L::Tx, from: u64, to: u64, stop: &AtomicBool) -> bool {
    let mut next = from;
    while next < to {
        let sent = L::send(tx, next, to);
        if sent == 0 {
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            spin_loop();
        }
        next += sent;
    }
    true
}

/// Receives `from..to`, checking that they come in order, spinning while
/// the lane is empty. Returns `false`, unfinished, if `stop` is set
/// meanwhile.
#[inline]
fn receive_all<L: Lane>(rx: &mut L::Rx, from: u64, to: u64, stop: &AtomicBool) -> bool {
    receive_each::<L>(rx, from, to, stop, |_| {})
}

/// As [`receive_all`], calling `on_value` with each value where the lane
/// hands it over (inside its receive call).
#[inline]
fn receive_each<L: Lane>(
    rx: &mut L::Rx,
    from: u64,
    to: u64,
    stop: &AtomicBool,
    mut on_value: impl FnMut(u64),
) -> bool {
    let mut expected = from;
    while expected < to {
        let received = L::recv(rx, to - expected, |value| {
            assert_eq!(value, expected, "lane lost or reordered a value");
            expected += 1;
            on_value(value);
        });
        if received == 0 {
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            spin_loop();
        }
    }
    true
}

/// Messages per second from one pinned thread to another through one lane,
/// over about `secs` seconds, and the share of the receiver's looks that
/// found the lane near empty ([`NEAR_EMPTY`]), where the lane can tell.
///
/// The receiver looks at the clock (and at the lane's depth) once every
/// [`BLOCK`] values and, past the deadline, raises the flag the sender
/// looks at as often.
fn throughput<L: Lane>(capacity: usize, secs: f64) -> (f64, Option<f64>) {
    let (mut tx, mut rx) = own_pair::<L>(capacity);
    let start_line = Barrier::new(2);
    let stop = Own(AtomicBool::new(false));
    let stop = &stop.0;
    thread::scope(|scope| {
        scope.spawn(|| {
            pin(0);
            let _stop = StopOnDrop(stop);
            start_line.wait();
            let mut next = 0;
            while !stop.load(Ordering::Relaxed)
                && send_all::<L>(&mut tx.0, next, next + BLOCK, stop)
            {
                next += BLOCK;
            }
        });
        let receiver = scope.spawn(|| {
            pin(1);
            let _stop = StopOnDrop(stop);
            start_line.wait();
            let started = Instant::now();
            let deadline = started + Duration::from_secs_f64(secs);
            let mut received = 0;
            let (mut looks, mut near_empty) = (0u64, 0u64);
            while receive_all::<L>(&mut rx.0, received, received + BLOCK, stop) {
                received += BLOCK;
                if let Some(queued) = L::queued(&rx.0) {
                    looks += 1;
                    near_empty += u64::from(queued <= NEAR_EMPTY.min(capacity / 4));
                }
                if Instant::now() >= deadline {
                    break;
                }
            }
            let rate = received as f64 / started.elapsed().as_secs_f64();
            (rate, (looks > 0).then(|| near_empty as f64 / looks as f64))
        });
        receiver.join().expect("receiving thread panicked")
    })
}

/// Round trips of `per_trip` values out through one lane and back through
/// another, recorded for about `secs` seconds after `warmup` unrecorded ones.
fn round_trips<L: Lane>(capacity: usize, per_trip: u64, warmup: u64, secs: f64) -> Histogram<u64> {
    let (mut out_tx, mut out_rx) = own_pair::<L>(capacity);
    let (mut back_tx, mut back_rx) = own_pair::<L>(capacity);
    let stop = &Own(AtomicBool::new(false)).0;
    thread::scope(|scope| {
        scope.spawn(|| {
            pin(1);
            let _stop = StopOnDrop(stop);
            let mut first = 0;
            if per_trip == 1 {
                // Echo from inside the receive call (see the module doc).
                let mut echoed = true;
                while echoed
                    && receive_each::<L>(&mut out_rx.0, first, first + 1, stop, |value| {
                        echoed = send_all::<L>(&mut back_tx.0, value, value + 1, stop);
                    })
                {
                    first += 1;
                }
                return;
            }
            while receive_all::<L>(&mut out_rx.0, first, first + per_trip, stop)
                && send_all::<L>(&mut back_tx.0, first, first + per_trip, stop)
            {
                first += per_trip;
            }
        });
        let timer = scope.spawn(|| {
            pin(0);
            let _stop = StopOnDrop(stop);
            let scale = ns_per_tick();
            let mut histogram = new_histogram();
            let mut deadline = u64::MAX;
            for trip in 0.. {
                if trip == warmup {
                    deadline = ticks() + (secs * 1e9 / scale) as u64;
                }
                let first = trip * per_trip;
                let sent = ticks();
                // The clock stops where the last value of the trip is
                // handed over (see the module doc).
                let mut echoed = 0;
                let received = send_all::<L>(&mut out_tx.0, first, first + per_trip, stop)
                    && if per_trip == 1 {
                        receive_each::<L>(&mut back_rx.0, first, first + 1, stop, |_| {
                            echoed = ticks();
                        })
                    } else {
                        let received =
                            receive_all::<L>(&mut back_rx.0, first, first + per_trip, stop);
                        echoed = ticks();
                        received
                    };
                if !received {
                    break;
                }
                if trip >= warmup {
                    histogram.saturating_record(((echoed - sent) as f64 * scale) as u64);
                    if echoed >= deadline {
                        break;
                    }
                }
            }
            histogram
        });
        timer.join().expect("timing thread panicked")
    })
}

/// What a floor bounces between A and B: written by one side only, waited
/// for by the other.
trait Mailbox: Sync {
    fn new() -> Self;

    /// Publishes `value`.
    fn write(&self, value: u64);

    /// Spins until `value` is published; `false` if `stop` was set first.
    fn wait_for(&self, value: u64, stop: &AtomicBool) -> bool;
}

/// A cache line of its own for one word: the floor.
#[repr(align(128))]
struct Line(AtomicU64);

impl Mailbox for Line {
    fn new() -> Self {
        Line(AtomicU64::new(0))
    }

    #[inline]
    fn write(&self, value: u64) {
        self.0.store(value, Ordering::Release);
    }

    #[inline]
    fn wait_for(&self, value: u64, stop: &AtomicBool) -> bool {
        while self.0.load(Ordering::Acquire) != value {
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            spin_loop();
        }
        true
    }
}

/// Words of the two-line floor's message: 96 bytes, a frame's size with
/// its 64-byte archive.
const MESSAGE_WORDS: usize = 12;

/// A 96-byte message on two cache lines of its own: bytes 32 to 128 of a
/// 128-byte block, as a frame at a 32-byte offset lies. Word 0 (the
/// frame's length word) is written last.
#[repr(C, align(128))]
struct MessageLines {
    _lead: [u64; 4],
    words: [AtomicU64; MESSAGE_WORDS],
}

impl Mailbox for MessageLines {
    fn new() -> Self {
        MessageLines {
            _lead: [0; 4],
            words: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Writes `value + i` into words 1 to 11, then `value` into word 0.
    #[inline]
    fn write(&self, value: u64) {
        for (i, word) in self.words.iter().enumerate().skip(1) {
            word.store(value + i as u64, Ordering::Relaxed);
        }
        // Pairs with the Acquire load in `wait_for`: the other words are
        // visible once word 0 is.
        self.words[0].store(value, Ordering::Release);
    }

    /// Spins until word 0 holds `value`, then reads and checks the rest.
    #[inline]
    fn wait_for(&self, value: u64, stop: &AtomicBool) -> bool {
        while self.words[0].load(Ordering::Acquire) != value {
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            spin_loop();
        }
        for (i, word) in self.words.iter().enumerate().skip(1) {
            assert_eq!(word.load(Ordering::Relaxed), value + i as u64, "torn");
        }
        true
    }
}

/// Frame-sized messages in as many 96-byte slots as the frame ring holds
/// frames, laid out as its frames are (slot `i` at byte `96 * i` of a
/// 128-byte-aligned area): message `value` goes to slot `value % SLOTS`,
/// word 0 last. The waiter prefetches the slot's next line while it polls,
/// as the frame ring's consumer does. A ring's messages land on new lines
/// every time, where the floors' stay on the same ones: this is the least
/// a 96-byte message costs through a ring of `SLOTS` slots, with none of a
/// ring's bookkeeping (fewer slots cost less: see the module doc).
struct MessageSlots {
    words: Box<[AtomicU64]>,
    /// Index of the word at the area's 128-byte boundary.
    first: usize,
}

impl MessageSlots {
    const SLOTS: usize = FRAME_SIZED_SLOTS;

    /// Word 0 of the slot `value` goes to.
    fn slot(&self, value: u64) -> usize {
        self.first + (value as usize % Self::SLOTS) * MESSAGE_WORDS
    }
}

impl Mailbox for MessageSlots {
    fn new() -> Self {
        let words: Box<[AtomicU64]> = (0..Self::SLOTS * MESSAGE_WORDS + 16)
            .map(|_| AtomicU64::new(0))
            .collect();
        let misalignment = words.as_ptr() as usize % 128 / 8;
        let first = (16 - misalignment) % 16;
        MessageSlots { words, first }
    }

    /// Writes `value + i` into words 1 to 11 of the slot, then `value`
    /// into word 0. Values are never repeated, so slots need no zeroing.
    #[inline]
    fn write(&self, value: u64) {
        let slot = &self.words[self.slot(value)..][..MESSAGE_WORDS];
        for (i, word) in slot.iter().enumerate().skip(1) {
            word.store(value + i as u64, Ordering::Relaxed);
        }
        // Pairs with the Acquire load in `wait_for`.
        slot[0].store(value, Ordering::Release);
    }

    #[inline]
    fn wait_for(&self, value: u64, stop: &AtomicBool) -> bool {
        let slot = &self.words[self.slot(value)..][..MESSAGE_WORDS];
        // The first word of the line after word 0's.
        let next_line = 8 - (slot.as_ptr() as usize % 64) / 8;
        while slot[0].load(Ordering::Acquire) != value {
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            prefetch(&slot[next_line]);
            spin_loop();
        }
        for (i, word) in slot.iter().enumerate().skip(1) {
            assert_eq!(word.load(Ordering::Relaxed), value + i as u64, "torn");
        }
        true
    }
}

/// Asks for the cache line holding `word` to be fetched for reading.
#[inline(always)]
fn prefetch(word: &AtomicU64) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` reads no memory the program can observe and
    // does not fault; the address is a live reference's anyway.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(word).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = word;
}

/// A floor's row: round trips through mailboxes `M` ([`Line`]: the floor;
/// [`MessageLines`]: a 96-byte message on the same two lines every time;
/// [`MessageSlots`]: 96-byte messages on new lines each time, as a ring's
/// land), timed as [`round_trips`] times a lane's.
fn floor_row<M: Mailbox>(
    _capacity: usize,
    _per_trip: u64,
    warmup: u64,
    secs: f64,
) -> Histogram<u64> {
    mailbox_round_trips::<M>(warmup, secs)
}

/// Round trips through a `ping` mailbox written only by A and a `pong`
/// one written only by B, timed as [`round_trips`] times a lane's.
fn mailbox_round_trips<M: Mailbox>(warmup: u64, secs: f64) -> Histogram<u64> {
    let (ping, pong) = (&M::new(), &M::new());
    let stop = &Own(AtomicBool::new(false)).0;
    thread::scope(|scope| {
        scope.spawn(move || {
            pin(1);
            let _stop = StopOnDrop(stop);
            for value in 1.. {
                if !ping.wait_for(value, stop) {
                    return;
                }
                pong.write(value);
            }
        });
        let timer = scope.spawn(move || {
            pin(0);
            let _stop = StopOnDrop(stop);
            let scale = ns_per_tick();
            let mut histogram = new_histogram();
            let mut deadline = u64::MAX;
            for value in 1.. {
                if value == warmup + 1 {
                    deadline = ticks() + (secs * 1e9 / scale) as u64;
                }
                let sent = ticks();
                ping.write(value);
                if !pong.wait_for(value, stop) {
                    break;
                }
                let echoed = ticks();
                if value > warmup {
                    histogram.saturating_record(((echoed - sent) as f64 * scale) as u64);
                    if echoed >= deadline {
                        break;
                    }
                }
            }
            histogram
        });
        timer.join().expect("timing thread panicked")
    })
}

/// Sends and receives `messages` values on one thread, `per_trip` at a
/// time: the loop to count instructions per message in, under
/// `valgrind --tool=callgrind --toggle-collect='*solo*'` (see `LANES_SOLO`).
#[inline(never)]
fn solo<L: Lane>(capacity: usize, per_trip: u64, messages: u64) {
    let (mut tx, mut rx) = L::pair(capacity);
    let never = AtomicBool::new(false);
    let mut next = 0;
    while next < messages {
        let end = messages.min(next + per_trip);
        send_all::<L>(&mut tx, next, end, &never);
        receive_all::<L>(&mut rx, next, end, &never);
        next = end;
    }
}

// ---------------------------------------------------------------------------
// Rows, rounds and medians

/// What a row is to the bars: the rows they compare.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Floor,
    /// The floor for a frame-sized (two-line) message.
    FloorMessage,
    /// Frame-sized messages in rotating slots, with no ring logic.
    FloorSlots,
    Typed,
    TypedBatch,
    TypedSmall,
    Frames,
    /// The frame ring with a message that fits one line with its header.
    FramesSmall,
    /// rtrb with values of a frame's size.
    RtrbFrameSized,
    Rtrb,
    RtrbSmall,
    /// rtrb measured once more, next to itself: how far two runs of the
    /// same ring differ, the spread any "x rtrb" ratio carries.
    RtrbAgain,
    RtrbSmallAgain,
    Other,
}

type ThroughputFn = fn(usize, f64) -> (f64, Option<f64>);
type RoundTripFn = fn(usize, u64, u64, f64) -> Histogram<u64>;
type SoloFn = fn(usize, u64, u64);

struct Row {
    /// Short name for `LANES_SOLO`.
    key: &'static str,
    name: &'static str,
    role: Role,
    capacity: usize,
    /// Values each way per round trip.
    per_trip: u64,
    throughput: Option<ThroughputFn>,
    round_trips: RoundTripFn,
    solo: Option<SoloFn>,
}

impl Row {
    /// A floor's row: round trips through mailboxes `M` only.
    fn floor<M: Mailbox>(key: &'static str, name: &'static str, role: Role) -> Row {
        Row {
            key,
            name,
            role,
            capacity: 0,
            per_trip: 1,
            throughput: None,
            round_trips: floor_row::<M>,
            solo: None,
        }
    }

    fn lane<L: Lane>(
        key: &'static str,
        name: &'static str,
        role: Role,
        capacity: usize,
        per_trip: u64,
    ) -> Row {
        Row {
            key,
            name,
            role,
            capacity,
            per_trip,
            throughput: Some(throughput::<L>),
            round_trips: round_trips::<L>,
            solo: Some(solo::<L>),
        }
    }
}

/// The rows, in the order they run and print: each corelane row next to the
/// row its bar compares it with.
fn rows() -> Vec<Row> {
    let batch = BATCH as u64;
    let (slots, small, other) = (DEFAULT_SLOTS, SMALL_SLOTS, Role::Other);
    vec![
        Row::floor::<Line>("floor", "floor (cache-line ping-pong)", Role::Floor),
        Row::floor::<MessageLines>(
            "floor-96",
            "floor, 96 B message (two lines)",
            Role::FloorMessage,
        ),
        Row::floor::<MessageSlots>(
            "floor-slots",
            "floor, 96 B messages in 2730 slots",
            Role::FloorSlots,
        ),
        Row::lane::<Frames>(
            "frames",
            "corelane frames, 64 B (256 KiB)",
            Role::Frames,
            FRAME_RING_BYTES,
            1,
        ),
        Row::lane::<OneByOne<RtrbFrameSized>>(
            "rtrb-96",
            "rtrb, 96 B values (2730)",
            Role::RtrbFrameSized,
            FRAME_SIZED_SLOTS,
            1,
        ),
        Row::lane::<Frames<Word8>>(
            "frames-8",
            "corelane frames, 8 B (one line)",
            Role::FramesSmall,
            FRAME_RING_BYTES,
            1,
        ),
        Row::lane::<FramesExact>(
            "frames-exact",
            "(frames, exact claim: diagnostic)",
            other,
            FRAME_RING_BYTES,
            1,
        ),
        Row::lane::<OneByOne<Typed>>("typed", "corelane typed (4096)", Role::Typed, slots, 1),
        Row::lane::<OneByOne<Rtrb>>("rtrb", "rtrb (4096)", Role::Rtrb, slots, 1),
        Row::lane::<OneByOne<Rtrb>>(
            "rtrb-again",
            "(rtrb again: the spread)",
            Role::RtrbAgain,
            slots,
            1,
        ),
        Row::lane::<TypedBatch>(
            "typed-batch",
            "corelane typed, batch 64 (4096)",
            Role::TypedBatch,
            slots,
            batch,
        ),
        Row::lane::<RtrbBatch>("rtrb-batch", "rtrb, batch 64 (4096)", other, slots, batch),
        Row::lane::<OneByOne<Typed>>(
            "typed-16",
            "corelane typed (16)",
            Role::TypedSmall,
            small,
            1,
        ),
        Row::lane::<OneByOne<Rtrb>>("rtrb-16", "rtrb (16)", Role::RtrbSmall, small, 1),
        Row::lane::<OneByOne<Rtrb>>(
            "rtrb-16-again",
            "(rtrb (16) again: the spread)",
            Role::RtrbSmallAgain,
            small,
            1,
        ),
        Row::lane::<OneByOne<Ringbuf>>("ringbuf", "ringbuf HeapRb (4096)", other, slots, 1),
        Row::lane::<OneByOne<Queue>>("arrayqueue", "crossbeam ArrayQueue (4096)", other, slots, 1),
        Row::lane::<OneByOne<Channel>>(
            "channel",
            "crossbeam-channel bounded (4096)",
            other,
            slots,
            1,
        ),
        Row::lane::<OneByOne<Mpsc>>("mpsc", "std mpsc sync_channel (4096)", other, slots, 1),
    ]
}

/// How long and how often to measure.
struct Settings {
    rounds: usize,
    /// Seconds of each throughput run.
    throughput_secs: f64,
    /// Seconds of recorded round trips in each round-trip run.
    round_trip_secs: f64,
    /// Seconds of each run of the warm-up round, which is not kept.
    warmup_secs: f64,
    filter: Option<String>,
    write_json: bool,
}

impl Settings {
    fn from_env() -> Settings {
        // `cargo bench` passes `--bench`; `cargo test --benches` does not,
        // and then a quick pass that writes nothing is enough.
        let benching = env::args().any(|arg| arg == "--bench");
        let quick = !benching || env::var("LANES_QUICK").is_ok_and(|value| value != "0");
        let rounds = env::var("LANES_ROUNDS")
            .ok()
            .and_then(|value| value.parse().ok())
            .filter(|&rounds| rounds > 0)
            .unwrap_or(if quick { 3 } else { 7 });
        let filter = env::var("LANES_FILTER")
            .ok()
            .filter(|text| !text.is_empty());
        let (run_secs, warmup_secs) = if quick { (0.05, 0.02) } else { (0.6, 0.1) };
        Settings {
            rounds,
            throughput_secs: run_secs,
            round_trip_secs: run_secs,
            warmup_secs,
            filter,
            write_json: benching,
        }
    }
}

/// One round of one row.
#[derive(Clone, Copy)]
struct Sample {
    msgs_per_s: Option<f64>,
    /// Share of the throughput run's looks that found the lane near empty.
    near_empty: Option<f64>,
    /// Round trips slower than [`SLOW_NS`], per second of recording.
    slow_per_s: f64,
    /// Round trips slower than [`SLOW_NS`], as a share of all.
    slow_share: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    count: u64,
}

/// One round: every row's throughput, then every row's round trips, in the
/// order of [`rows`], so that rows compared with each other run close in
/// time.
fn measure_round(
    rows: &[Row],
    reversed: bool,
    throughput_secs: f64,
    round_trip_secs: f64,
) -> Vec<Sample> {
    let order: Vec<usize> = if reversed {
        (0..rows.len()).rev().collect()
    } else {
        (0..rows.len()).collect()
    };
    let mut throughputs: Vec<Option<(f64, Option<f64>)>> = vec![None; rows.len()];
    for &at in &order {
        let row = &rows[at];
        throughputs[at] = row
            .throughput
            .map(|throughput| throughput(row.capacity, throughput_secs));
    }
    let mut samples: Vec<Option<Sample>> = vec![None; rows.len()];
    for &at in &order {
        let (row, throughput) = (&rows[at], throughputs[at]);
        samples[at] = Some({
            let warmup = WARMUP_VALUES.div_ceil(row.per_trip);
            let histogram = (row.round_trips)(row.capacity, row.per_trip, warmup, round_trip_secs);
            let slow = histogram.count_between(SLOW_NS, histogram.max().max(SLOW_NS)) as f64;
            Sample {
                slow_per_s: slow / round_trip_secs,
                slow_share: slow / histogram.len().max(1) as f64,
                msgs_per_s: throughput.map(|(rate, _)| rate),
                near_empty: throughput.and_then(|(_, share)| share),
                p50: histogram.value_at_quantile(0.50) as f64,
                p99: histogram.value_at_quantile(0.99) as f64,
                p999: histogram.value_at_quantile(0.999) as f64,
                max: histogram.max() as f64,
                count: histogram.len(),
            }
        });
    }
    samples.into_iter().flatten().collect()
}

/// Per-round ratios of `field` between two rows.
fn ratios(top: &[Sample], bottom: &[Sample], field: fn(&Sample) -> Option<f64>) -> Vec<f64> {
    top.iter()
        .zip(bottom)
        .filter_map(|(top, bottom)| Some(field(top)? / field(bottom)?))
        .collect()
}

fn msgs(sample: &Sample) -> Option<f64> {
    sample.msgs_per_s
}

fn p50(sample: &Sample) -> Option<f64> {
    Some(sample.p50)
}

fn p999(sample: &Sample) -> Option<f64> {
    Some(sample.p999)
}

fn slow_per_s(sample: &Sample) -> Option<f64> {
    Some(sample.slow_per_s)
}

/// A row's medians over the rounds, and its ratios to the references.
struct Summary {
    name: &'static str,
    per_trip: u64,
    msgs_per_s: Option<f64>,
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    count: u64,
    vs_rtrb: Option<f64>,
    p50_vs_floor: Option<f64>,
    p999_vs_floor: Option<f64>,
    rounds: Vec<Sample>,
}

fn summarize(row: &Row, samples: &[Sample], rtrb: &[Sample], floor: &[Sample]) -> Summary {
    let column = |field: fn(&Sample) -> f64| median(samples.iter().map(field).collect());
    let median_ratio = |values: Vec<f64>| (!values.is_empty()).then(|| median(values));
    let throughputs: Vec<f64> = samples.iter().filter_map(msgs).collect();
    Summary {
        name: row.name,
        per_trip: row.per_trip,
        msgs_per_s: (!throughputs.is_empty()).then(|| median(throughputs)),
        p50: column(|sample| sample.p50),
        p99: column(|sample| sample.p99),
        p999: column(|sample| sample.p999),
        max: column(|sample| sample.max),
        count: column(|sample| sample.count as f64) as u64,
        vs_rtrb: median_ratio(ratios(samples, rtrb, msgs)),
        p50_vs_floor: median_ratio(ratios(samples, floor, p50)),
        p999_vs_floor: median_ratio(ratios(samples, floor, p999)),
        rounds: samples.to_vec(),
    }
}

/// One of the issue's bars, as met or missed in this run.
struct Bar {
    text: &'static str,
    /// Per-round ratios.
    ratios: Vec<f64>,
    /// The bar; `None` for a diagnostic ratio, printed to explain a bar.
    limit: Option<f64>,
    /// `true` if the ratio must be at least `limit`, `false` at most.
    at_least: bool,
    /// Per-round values are shares, printed as percentages (diagnostics).
    percent: bool,
}

impl Bar {
    fn ratio(&self) -> f64 {
        median(self.ratios.clone())
    }

    /// Whether the bar is met; `None` for a diagnostic.
    fn met(&self) -> Option<bool> {
        let ratio = self.ratio();
        let limit = self.limit?;
        Some(if self.at_least {
            ratio >= limit
        } else {
            ratio <= limit
        })
    }
}

fn bars(results: &[(Role, Vec<Sample>)]) -> Vec<Bar> {
    let of = |role: Role| {
        results
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, s)| &s[..])
    };
    let mut bars = Vec::new();
    let mut bar = |text, top: Role, bottom: Role, field, limit: Option<f64>, at_least| {
        if let (Some(top), Some(bottom)) = (of(top), of(bottom)) {
            bars.push(Bar {
                text,
                ratios: ratios(top, bottom, field),
                limit,
                at_least,
                percent: false,
            });
        }
    };
    bar(
        "typed ring, one at a time: throughput >= 1.0x rtrb's",
        Role::Typed,
        Role::Rtrb,
        msgs,
        Some(1.0),
        true,
    );
    bar(
        "typed ring, batches of 64: throughput >= 3x rtrb's one at a time",
        Role::TypedBatch,
        Role::Rtrb,
        msgs,
        Some(3.0),
        true,
    );
    bar(
        "frame ring, 64 B: round trip p50 <= 1.3x the floor's p50",
        Role::Frames,
        Role::Floor,
        p50,
        Some(1.3),
        false,
    );
    bar(
        "frame ring, 64 B: round trip p99.9 <= 2x the floor's p99.9",
        Role::Frames,
        Role::Floor,
        p999,
        Some(2.0),
        false,
    );
    // Why the frame bars stand where they do: the ring's latency over the
    // least a 96-byte message costs to move, and a frame that fits one
    // line against the one-line floor.
    bar(
        "(why) frame ring, 64 B: p50 / the two-line floor's p50",
        Role::Frames,
        Role::FloorMessage,
        p50,
        None,
        false,
    );
    bar(
        "(why) two-line floor p50 / the floor's p50",
        Role::FloorMessage,
        Role::Floor,
        p50,
        None,
        false,
    );
    // A ring's messages land on new lines each time: the frame ring over
    // the least that costs, and that over the floor.
    bar(
        "(why) frame ring, 64 B: p50 / the slot floor's p50",
        Role::Frames,
        Role::FloorSlots,
        p50,
        None,
        false,
    );
    bar(
        "(why) slot floor (96 B in 2730 slots) p50 / the floor's p50",
        Role::FloorSlots,
        Role::Floor,
        p50,
        None,
        false,
    );
    // And what the same 96 bytes cost through the peer: the bar asked of
    // rtrb.
    bar(
        "(why) frame ring, 64 B: p50 / rtrb's with 96 B values",
        Role::Frames,
        Role::RtrbFrameSized,
        p50,
        None,
        false,
    );
    bar(
        "(why) rtrb, 96 B values: p50 / the floor's p50",
        Role::RtrbFrameSized,
        Role::Floor,
        p50,
        None,
        false,
    );
    bar(
        "(why) frame ring, 8 B (one line): p50 / the floor's p50",
        Role::FramesSmall,
        Role::Floor,
        p50,
        None,
        false,
    );
    bar(
        "capacity 16: typed ring throughput >= 1.0x rtrb's at capacity 16",
        Role::TypedSmall,
        Role::RtrbSmall,
        msgs,
        Some(1.0),
        true,
    );
    // Why a throughput bar against rtrb can land on either side of 1.0x:
    // rtrb against itself, measured the same way, seconds apart.
    bar(
        "(why) rtrb (4096) again / rtrb (4096): throughput",
        Role::RtrbAgain,
        Role::Rtrb,
        msgs,
        None,
        true,
    );
    bar(
        "(why) rtrb (16) again / rtrb (16): throughput",
        Role::RtrbSmallAgain,
        Role::RtrbSmall,
        msgs,
        None,
        true,
    );
    // Why the frame ring's p99.9 stands where it does: slow round trips
    // come at the same rate per second for the frame ring and the floor
    // (the machine's), but the frame ring makes fewer round trips a
    // second, so more than 0.1% of them are slow and p99.9 lands on one.
    bar(
        "(why) frames 64 B: round trips > 4 us a second / the floor's",
        Role::Frames,
        Role::Floor,
        slow_per_s,
        None,
        false,
    );
    for (text, role) in [
        (
            "(why) frames 64 B: share of round trips > 4 us",
            Role::Frames,
        ),
        ("(why) the floor: share of round trips > 4 us", Role::Floor),
    ] {
        if let Some(samples) = of(role) {
            bars.push(Bar {
                text,
                ratios: samples.iter().map(|s| s.slow_share).collect(),
                limit: None,
                at_least: false,
                percent: true,
            });
        }
    }
    // Why the one-at-a-time throughputs differ: how often each ring ran
    // near empty, where every value costs a cache-line transfer or two.
    for (text, role) in [
        (
            "(why) typed (4096): share of throughput samples near empty",
            Role::Typed,
        ),
        (
            "(why) rtrb (4096): share of throughput samples near empty",
            Role::Rtrb,
        ),
        (
            "(why) typed (16): share of throughput samples near empty",
            Role::TypedSmall,
        ),
        (
            "(why) rtrb (16): share of throughput samples near empty",
            Role::RtrbSmall,
        ),
    ] {
        if let Some(samples) = of(role) {
            let shares: Vec<f64> = samples.iter().filter_map(|s| s.near_empty).collect();
            if !shares.is_empty() {
                bars.push(Bar {
                    text,
                    ratios: shares,
                    limit: None,
                    at_least: false,
                    percent: true,
                });
            }
        }
    }
    bars
}

// ---------------------------------------------------------------------------
// Output

fn or_dash(value: Option<f64>, format: impl Fn(f64) -> String) -> String {
    value.map_or_else(|| "-".to_owned(), format)
}

fn print_table(summaries: &[Summary]) {
    println!(
        "{:<36} {:>9} {:>8} {:>8} {:>8} {:>9} {:>9} {:>8} {:>8} {:>8}",
        "lane (capacity)",
        "msgs/s",
        "p50 ns",
        "p99 ns",
        "p99.9 ns",
        "max ns",
        "count",
        "x rtrb",
        "p50 /fl",
        "p999 /fl"
    );
    for row in summaries {
        let name = if row.per_trip > 1 {
            format!("{} *", row.name)
        } else {
            row.name.to_owned()
        };
        println!(
            "{:<36} {:>9} {:>8.0} {:>8.0} {:>8.0} {:>9.0} {:>9} {:>8} {:>8} {:>8}",
            name,
            or_dash(row.msgs_per_s, |rate| format!("{:.1}M", rate / 1e6)),
            row.p50,
            row.p99,
            row.p999,
            row.max,
            row.count,
            or_dash(row.vs_rtrb, |ratio| format!("{ratio:.2}")),
            or_dash(row.p50_vs_floor, |ratio| format!("{ratio:.2}")),
            or_dash(row.p999_vs_floor, |ratio| format!("{ratio:.2}")),
        );
    }
    println!(
        "Rows move one value per call of the lane's API unless marked *; a round trip \
         of a * row carries {BATCH} values each way.\nMedians over the rounds; ratios are medians of per-round ratios \
         (x rtrb: throughput / rtrb (4096)'s; /fl: latency / the floor's)."
    );
}

/// A share as a percentage, with decimals for the small ones.
fn percent(share: f64) -> String {
    let value = share * 100.0;
    if value < 10.0 {
        format!("{value:.2}%")
    } else {
        format!("{value:.0}%")
    }
}

fn print_bars(bars: &[Bar]) {
    println!("\nbars (this run):");
    for bar in bars {
        let (value, rounds): (String, Vec<String>) = if bar.percent {
            (
                format!("{:>6}", percent(bar.ratio())),
                bar.ratios.iter().map(|&r| percent(r)).collect(),
            )
        } else {
            (
                format!("{:>5.2}x", bar.ratio()),
                bar.ratios.iter().map(|r| format!("{r:.2}")).collect(),
            )
        };
        println!(
            "  [{}] {:<66} {value}  (rounds: {})",
            match bar.met() {
                Some(true) => "met   ",
                Some(false) => "MISSED",
                None => "info  ",
            },
            bar.text,
            rounds.join(" ")
        );
    }
}

fn json_sample(sample: &Sample) -> String {
    format!(
        "{{\"msgs_per_s\": {}, \"near_empty_share\": {}, \"slow_per_s\": {}, \
         \"slow_share\": {}, \"p50_ns\": {}, \"p99_ns\": {}, \"p999_ns\": {}, \
         \"max_ns\": {}, \"count\": {}}}",
        json_number(sample.msgs_per_s),
        json_number(sample.near_empty),
        json_number(Some(sample.slow_per_s)),
        json_number(Some(sample.slow_share)),
        json_number(Some(sample.p50)),
        json_number(Some(sample.p99)),
        json_number(Some(sample.p999)),
        json_number(Some(sample.max)),
        sample.count
    )
}

fn json(settings: &Settings, clock_ns: f64, summaries: &[Summary], bars: &[Bar]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{{");
    let _ = writeln!(out, "  \"bench\": \"lanes\",");
    let _ = writeln!(out, "  \"rounds\": {},", settings.rounds);
    let _ = writeln!(out, "  \"throughput_secs\": {},", settings.throughput_secs);
    let _ = writeln!(out, "  \"round_trip_secs\": {},", settings.round_trip_secs);
    let _ = writeln!(out, "  \"clock\": {},", json_string(clock_name()));
    let _ = writeln!(out, "  \"clock_read_ns\": {},", json_number(Some(clock_ns)));
    let _ = writeln!(out, "  \"message_bytes\": 64,");
    let _ = writeln!(out, "  \"rows\": [");
    for (index, row) in summaries.iter().enumerate() {
        let rounds: Vec<String> = row.rounds.iter().map(json_sample).collect();
        let _ = write!(
            out,
            "    {{\"name\": {}, \"msgs_per_s\": {}, \"p50_ns\": {}, \"p99_ns\": {}, \
             \"p999_ns\": {}, \"max_ns\": {}, \"count\": {}, \"values_per_round_trip\": {}, \
             \"throughput_vs_rtrb\": {}, \"p50_vs_floor\": {}, \"p999_vs_floor\": {}, \
             \"per_round\": [{}]}}",
            json_string(row.name),
            json_number(row.msgs_per_s),
            json_number(Some(row.p50)),
            json_number(Some(row.p99)),
            json_number(Some(row.p999)),
            json_number(Some(row.max)),
            row.count,
            row.per_trip,
            json_number(row.vs_rtrb),
            json_number(row.p50_vs_floor),
            json_number(row.p999_vs_floor),
            rounds.join(", ")
        );
        let _ = writeln!(
            out,
            "{}",
            if index + 1 < summaries.len() { "," } else { "" }
        );
    }
    let _ = writeln!(out, "  ],");
    let _ = writeln!(out, "  \"bars\": [");
    for (index, bar) in bars.iter().enumerate() {
        let _ = writeln!(
            out,
            "    {{\"bar\": {}, \"{}\": {}, \"limit\": {}, \"met\": {}}}{}",
            json_string(bar.text),
            if bar.percent { "share" } else { "ratio" },
            json_number(Some(bar.ratio())),
            json_number(bar.limit),
            bar.met().map_or("null".to_owned(), |met| met.to_string()),
            if index + 1 < bars.len() { "," } else { "" }
        );
    }
    let _ = writeln!(out, "  ]");
    let _ = writeln!(out, "}}");
    out
}

/// Runs one row's [`solo`] loop, for an instruction count under callgrind.
fn run_solo(key: &str) {
    let messages = env::var("LANES_SOLO_MESSAGES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(1_000_000);
    let rows = rows();
    let Some((row, solo)) = rows
        .iter()
        .find_map(|row| Some((row, row.solo?)).filter(|_| row.key == key))
    else {
        let keys: Vec<&str> = rows
            .iter()
            .filter(|row| row.solo.is_some())
            .map(|row| row.key)
            .collect();
        eprintln!(
            "lanes: LANES_SOLO={key} names no lane; try one of {}",
            keys.join(", ")
        );
        std::process::exit(2);
    };
    let started = Instant::now();
    solo(row.capacity, row.per_trip, messages);
    println!(
        "{}: {messages} values sent and received on one thread, {} at a time, in {:.3} s",
        row.name,
        row.per_trip,
        started.elapsed().as_secs_f64()
    );
}

fn main() {
    if let Ok(key) = env::var("LANES_SOLO") {
        run_solo(&key);
        return;
    }
    let settings = Settings::from_env();
    let rows: Vec<Row> = rows()
        .into_iter()
        .filter(|row| {
            matches!(
                row.role,
                Role::Floor | Role::FloorMessage | Role::FloorSlots | Role::Rtrb
            ) || settings
                .filter
                .as_deref()
                .is_none_or(|text| text.split('|').any(|part| row.name.contains(part)))
        })
        .collect();

    let cpus = core_affinity::get_core_ids().map_or(0, |cores| cores.len());
    if cpus < 2 {
        eprintln!("lanes: fewer than 2 CPUs to pin to; threads run unpinned");
    }
    let message_len = encoded_len(&Words64::new(0), &mut Arena::new()).expect("Words64 archives");
    let clock_ns = clock_read_ns();
    println!(
        "lanes: 2 threads pinned to CPUs 0 and 1 (of {cpus}); clock {} ({:.3} ns/tick, \
         {clock_ns:.1} ns a read); {} rounds\n\
         frame message: {message_len} archived bytes, {} bytes with its header; \
         values: u64",
        clock_name(),
        ns_per_tick(),
        settings.rounds,
        message_len + HEADER_LEN,
    );

    // A short first round warms every row up (caches, allocator, clock
    // speed); it is not kept.
    let started = Instant::now();
    measure_round(&rows, false, settings.warmup_secs, settings.warmup_secs);
    eprintln!("warmed up in {:.1} s", started.elapsed().as_secs_f64());

    let mut samples: Vec<Vec<Sample>> = rows.iter().map(|_| Vec::new()).collect();
    for round in 1..=settings.rounds {
        // Every other round runs the rows in reverse, so that neither row of
        // a compared pair always runs first.
        let measured = measure_round(
            &rows,
            round % 2 == 0,
            settings.throughput_secs,
            settings.round_trip_secs,
        );
        for (kept, sample) in samples.iter_mut().zip(measured) {
            kept.push(sample);
        }
        eprintln!(
            "round {round}/{} done at {:.1} s",
            settings.rounds,
            started.elapsed().as_secs_f64()
        );
    }

    let results: Vec<(Role, Vec<Sample>)> = rows
        .iter()
        .zip(samples)
        .map(|(row, kept)| (row.role, kept))
        .collect();
    let reference = |role: Role| {
        results
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, kept)| kept.clone())
            .expect("reference rows always run")
    };
    let (rtrb, floor) = (reference(Role::Rtrb), reference(Role::Floor));
    let summaries: Vec<Summary> = rows
        .iter()
        .zip(&results)
        .map(|(row, (_, kept))| summarize(row, kept, &rtrb, &floor))
        .collect();
    let bars = bars(&results);

    println!();
    print_table(&summaries);
    print_bars(&bars);
    if settings.write_json {
        match write_json("lanes", &json(&settings, clock_ns, &summaries, &bars)) {
            Ok(path) => println!("\nwrote {}", path.display()),
            Err(error) => eprintln!("lanes: cannot write the JSON report: {error}"),
        }
    }
}
