//! The two ends of every transport the IPC section compares, and the loops
//! that drive them: side A times round trips, side B echoes.
//!
//! Every transport carries the same 64-byte message (a [`Words64`]: eight
//! `u64`s, each the sequence number plus its index, so a torn message
//! shows). An end that finds the other side gone reports `Ok(None)`; a
//! message that is not what was sent is an error, never a panic, since on
//! the IPC rows it comes from another process.

use std::hint::spin_loop;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rkyv::ser::allocator::Arena;

use crate::frame::envelope::{access_trusted, check_type};
use crate::frame::Message;
use crate::lane::frames::{self, ClaimError, FrameConsumer, FrameProducer, WriteError};
use crate::lane::HeapRegion;
use crate::metrics::LatencyHistogram;
use crate::segment::ipc::{IpcError, IpcPublisher, IpcSubscriber};

/// Bytes of frames in every ring, in process and between processes.
pub const RING_BYTES: usize = 64 * 1024;
/// Bytes of one message on a socket or pipe.
pub const MESSAGE_BYTES: usize = 64;
/// Round trips before the timed ones: more than a lap of every ring.
pub const WARMUP_TRIPS: u64 = 4096;
/// Longest one side waits for the other before it gives up.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Eight words, 64 archived bytes; `words[i]` is the sequence number plus
/// `i`.
#[derive(rkyv::Archive, rkyv::Serialize)]
pub struct Words64 {
    /// `words[i]` is the sequence number plus `i`, so a reader can tell a
    /// torn message from a whole one.
    pub words: [u64; 8],
}

impl Message for Words64 {
    const TYPE_ID: u16 = 0x6c61;
    const VERSION: u8 = 1;
    const NAME: &'static str = "Words64";
}

impl Words64 {
    /// The message that carries `sequence`.
    pub fn new(sequence: u64) -> Self {
        Words64 {
            words: std::array::from_fn(|i| sequence.wrapping_add(i as u64)),
        }
    }
}

/// The sequence number eight words carry, or an error if they disagree.
fn sequence_of(word: impl Fn(usize) -> u64) -> io::Result<u64> {
    let first = word(0);
    if (1..8).all(|i| word(i) == first.wrapping_add(i as u64)) {
        Ok(first)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("torn message (first word {first})"),
        ))
    }
}

/// `sequence` as the 64 bytes a stream carries.
fn bytes_of(sequence: u64) -> [u8; MESSAGE_BYTES] {
    let mut bytes = [0; MESSAGE_BYTES];
    for (i, word) in bytes.chunks_exact_mut(8).enumerate() {
        word.copy_from_slice(&sequence.wrapping_add(i as u64).to_le_bytes());
    }
    bytes
}

fn word_of(bytes: &[u8; MESSAGE_BYTES], i: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
    u64::from_le_bytes(word)
}

/// One side of a transport: both directions.
pub trait Endpoint {
    /// Sends the message that carries `sequence`.
    ///
    /// # Errors
    ///
    /// The transport's error, or `TimedOut` if there was no room for
    /// [`PATIENCE`].
    fn send(&mut self, sequence: u64) -> io::Result<()>;

    /// Waits for the next message; `None` once the other side is gone.
    ///
    /// # Errors
    ///
    /// The transport's error, a message that is not a whole [`Words64`],
    /// or `TimedOut` if nothing came for [`PATIENCE`].
    fn recv(&mut self) -> io::Result<Option<u64>>;
}

/// An `io::Error` for a transport error of this crate.
fn other(what: &str, error: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{what}: {error}"))
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("{what}: no progress for {PATIENCE:?}"),
    )
}

/// A side of the in-process frame lane (two heap rings, two threads).
pub struct LaneEnd {
    tx: FrameProducer<HeapRegion>,
    rx: FrameConsumer<HeapRegion>,
    arena: Arena,
    /// Set by side A when it is done: the echo thread's "other side gone".
    stop: Arc<AtomicBool>,
}

/// Side A and side B of a fresh in-process lane pair.
pub fn lane_pair() -> (LaneEnd, LaneEnd) {
    let (out_tx, out_rx) = frames::heap_ring(RING_BYTES);
    let (back_tx, back_rx) = frames::heap_ring(RING_BYTES);
    let stop = Arc::new(AtomicBool::new(false));
    let a = LaneEnd {
        tx: out_tx,
        rx: back_rx,
        arena: Arena::new(),
        stop: Arc::clone(&stop),
    };
    let b = LaneEnd {
        tx: back_tx,
        rx: out_rx,
        arena: Arena::new(),
        stop,
    };
    (a, b)
}

impl LaneEnd {
    /// Tells the other side to stop echoing.
    pub fn hang_up(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Endpoint for LaneEnd {
    fn send(&mut self, sequence: u64) -> io::Result<()> {
        let message = Words64::new(sequence);
        let started = Instant::now();
        loop {
            match self.tx.write_message(&message, sequence, &mut self.arena) {
                Ok(()) => return Ok(()),
                Err(WriteError::Claim(ClaimError::Full)) if started.elapsed() < PATIENCE => {
                    spin_loop();
                }
                Err(WriteError::Claim(ClaimError::Full)) => return Err(timed_out("frame lane")),
                Err(error) => return Err(other("frame lane", error)),
            }
        }
    }

    fn recv(&mut self) -> io::Result<Option<u64>> {
        let started = Instant::now();
        loop {
            let mut got = None;
            let read = self.rx.drain(1, |frame| {
                got = Some(check_type::<Words64>(&frame.meta).map(|()| {
                    // SAFETY: the frame's type and version are Words64's
                    // (checked just above), and it was written by
                    // `write_message` into heap memory of this process; the
                    // payload is lent aligned and unchanged until released.
                    let message = unsafe { access_trusted::<Words64>(frame.payload()) };
                    message.words.each_ref().map(|word| word.to_native())
                }));
            });
            read.map_err(|error| other("frame lane", error))?;
            match got {
                Some(Ok(words)) => return sequence_of(|i| words[i]).map(Some),
                Some(Err(error)) => return Err(other("frame lane", error)),
                None => {}
            }
            if self.stop.load(Ordering::Relaxed) {
                return Ok(None);
            }
            if started.elapsed() > PATIENCE {
                return Err(timed_out("frame lane"));
            }
            spin_loop();
        }
    }
}

/// A side of the IPC rings: publishes on one, subscribes to the other.
pub struct RingEnd {
    publisher: IpcPublisher,
    subscriber: IpcSubscriber,
    arena: Arena,
    checksummed: bool,
}

impl RingEnd {
    /// A side that writes with `publisher` and reads with `subscriber`;
    /// with `checksummed`, every frame carries a CRC-32.
    pub fn new(publisher: IpcPublisher, subscriber: IpcSubscriber, checksummed: bool) -> Self {
        RingEnd {
            publisher,
            subscriber,
            arena: Arena::new(),
            checksummed,
        }
    }
}

impl Endpoint for RingEnd {
    fn send(&mut self, sequence: u64) -> io::Result<()> {
        let message = Words64::new(sequence);
        let started = Instant::now();
        loop {
            let sent = if self.checksummed {
                self.publisher
                    .write_message_checksummed(&message, sequence, &mut self.arena)
            } else {
                self.publisher
                    .write_message(&message, sequence, &mut self.arena)
            };
            match sent {
                Ok(()) => return Ok(()),
                // One message in flight never fills a ring: if it stays
                // full, the other side has stopped reading.
                Err(WriteError::Claim(ClaimError::Full)) if started.elapsed() < PATIENCE => {
                    spin_loop();
                }
                Err(WriteError::Claim(ClaimError::Full)) => return Err(timed_out("ipc ring")),
                Err(error) => return Err(other("ipc ring", error)),
            }
        }
    }

    fn recv(&mut self) -> io::Result<Option<u64>> {
        let started = Instant::now();
        loop {
            let mut got = None;
            let read = self.subscriber.drain(1, |frame| {
                got = Some(
                    frame
                        .message::<Words64>()
                        .map(|message| message.words.each_ref().map(|word| word.to_native())),
                );
            });
            match (read, got) {
                (Ok(_), Some(Ok(words))) => return sequence_of(|i| words[i]).map(Some),
                (Ok(_), Some(Err(error))) => return Err(other("ipc ring", error)),
                (Ok(_), None) if started.elapsed() < PATIENCE => spin_loop(),
                (Ok(_), None) => return Err(timed_out("ipc ring")),
                (Err(IpcError::WriterGone(_)), _) => return Ok(None),
                (Err(error), _) => return Err(other("ipc ring", error)),
            }
        }
    }
}

/// A side of a byte stream pair (a socket, or a pipe each way), blocking.
pub struct StreamEnd<W: Write, R: Read> {
    tx: W,
    rx: R,
}

impl<W: Write, R: Read> StreamEnd<W, R> {
    /// A side that writes to `tx` and reads from `rx`.
    pub fn new(tx: W, rx: R) -> Self {
        StreamEnd { tx, rx }
    }
}

impl<W: Write, R: Read> Endpoint for StreamEnd<W, R> {
    fn send(&mut self, sequence: u64) -> io::Result<()> {
        self.tx.write_all(&bytes_of(sequence))
    }

    fn recv(&mut self) -> io::Result<Option<u64>> {
        let mut bytes = [0; MESSAGE_BYTES];
        match self.rx.read_exact(&mut bytes) {
            Ok(()) => sequence_of(|i| word_of(&bytes, i)).map(Some),
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
            Err(error) => Err(error),
        }
    }
}

/// A clock to time round trips with: `read` gives ticks, `ns_per_tick`
/// turns them into nanoseconds (the cargo benches pass the time-stamp
/// counter; `corelane bench` the monotonic clock).
#[derive(Clone, Copy, Debug)]
pub struct TickClock {
    /// Reads the clock.
    pub read: fn() -> u64,
    /// Nanoseconds per tick.
    pub ns_per_tick: f64,
}

impl TickClock {
    /// The process's monotonic clock ([`crate::clock`]), in nanoseconds.
    pub fn monotonic() -> Self {
        TickClock {
            read: crate::clock::now_ns,
            ns_per_tick: 1.0,
        }
    }
}

/// Round trips timed by side A: the histogram (ns) and the seconds the
/// timed ones took.
#[derive(Clone, Debug)]
pub struct RoundTrips {
    /// Each round trip, from before the send to after the echo.
    pub histogram: LatencyHistogram,
    /// Seconds from the first timed send to the last echo.
    pub seconds: f64,
}

impl RoundTrips {
    /// Messages delivered per second, both directions (two a round trip):
    /// with one in flight, the inverse of the mean half round trip.
    pub fn msgs_per_s(&self) -> f64 {
        2.0 * self.histogram.count() as f64 / self.seconds.max(1e-9)
    }
}

/// Times round trips from `end` for `measure`, after [`WARMUP_TRIPS`]
/// untimed ones.
///
/// # Errors
///
/// The transport's errors; `UnexpectedEof` if the echo side went away; an
/// `InvalidData` error if an echo is out of order.
pub fn time_round_trips(
    end: &mut impl Endpoint,
    measure: Duration,
    clock: TickClock,
) -> io::Result<RoundTrips> {
    let mut histogram = LatencyHistogram::new();
    let mut deadline = u64::MAX;
    let mut timed_from = Instant::now();
    for trip in 0.. {
        if trip == WARMUP_TRIPS {
            deadline = (clock.read)() + (measure.as_nanos() as f64 / clock.ns_per_tick) as u64;
            timed_from = Instant::now();
        }
        let sent = (clock.read)();
        end.send(trip)?;
        let echo = end.recv()?;
        let echoed = (clock.read)();
        match echo {
            Some(echo) if echo == trip => {}
            Some(echo) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("echo {echo} for message {trip}"),
                ))
            }
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the echo side went away",
                ))
            }
        }
        if trip >= WARMUP_TRIPS {
            histogram.record((echoed.saturating_sub(sent) as f64 * clock.ns_per_tick) as u64);
            if echoed >= deadline {
                break;
            }
        }
    }
    Ok(RoundTrips {
        histogram,
        seconds: timed_from.elapsed().as_secs_f64(),
    })
}

/// Echoes every message back until the other side goes away.
///
/// # Errors
///
/// The transport's errors.
pub fn echo(end: &mut impl Endpoint) -> io::Result<()> {
    while let Some(sequence) = end.recv()? {
        end.send(sequence)?;
    }
    Ok(())
}
