//! A ring of frames over a [`Region`]: the lane the runtime's cores talk
//! through, and (over a mapped file) the ring between processes.
//!
//! # Layout
//!
//! ```text
//!  0                                capacity     +128          +256
//!  +--------------------------------+------------+-------------+
//!  | frames ...                     | head (u64) | tail (u64)  |
//!  +--------------------------------+------------+-------------+
//! ```
//!
//! `capacity` is a power of two. A *position* is a byte count that only
//! grows; its offset in the ring is `position & (capacity - 1)`. The
//! consumer owns `head` (the position of the next frame to read), the
//! producer owns `tail` (the position of the next frame to write); each
//! word sits on a cache line of its own.
//!
//! # Protocol
//!
//! - The producer writes a frame's header fields and payload, then stores
//!   its positive length with `Release`. That store *is* the publication:
//!   the consumer never reads `tail`, it reads the length word at `head`
//!   with `Acquire` and treats zero as "not yet". So a reader that sees a
//!   length sees the payload it describes.
//! - The consumer zeroes every frame it has read before it hands the space
//!   back by storing `head` with `Release`. Every byte the producer is given
//!   is therefore zero, and a length word it has not yet written reads as
//!   zero, never as stale bytes of an older frame.
//! - A consumer that finds no frame prefetches the cache line after the
//!   length word's, so that a frame on two lines costs it one transfer
//!   time, not two (`prefetch_line_after` says what it measured).
//! - The producer keeps a cached copy of `head` and re-reads it (`Acquire`,
//!   pairing with the consumer's `Release`) only when the cached copy says
//!   the ring has no room.
//! - A frame never crosses the end of the ring. When it would, the producer
//!   fills the gap with a padding frame (type [`PADDING_TYPE`]) that
//!   readers skip, and writes the frame at offset 0.
//! - The largest frame is half the capacity: a frame that size always fits
//!   in an empty ring, whatever the offset, padding included. Anything
//!   larger is refused at once with [`ClaimError::TooLarge`], which means
//!   "never", not "retry".
//!
//! The `tail` word is stored after every commit for observers (backlog,
//! shutdown reports); neither side's hot path reads the other's word except
//! when the ring looks full.

use std::fmt;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;

use rkyv::ser::allocator::Arena;

use super::prefetch::prefetch_read;
use super::region::{HeapRegion, Region, RegionAllocError, REGION_ALIGN};
use crate::frame::envelope::{self, Encode, Encodes, Message};
use crate::frame::layout::{
    aligned_len, checksum, read_checksum, read_meta, write_meta, FrameMeta, FLAG_CHECKSUM,
    FRAME_ALIGN, HEADER_LEN, PADDING_TYPE, PAYLOAD_OFFSET,
};
use crate::frame::FrameError;

// NB: this ring's atomics live inside a `Region` (possibly a mapped file), so
// they are `std` atomics viewed over raw memory with `from_ptr`, not the
// loom-aware types of `crate::sync`; loom cannot place its atomics in
// foreign memory. The protocol is checked by Miri and the stress tests.

/// Bytes after the frames: the `head` line and the `tail` line.
pub const TRAILER_LEN: usize = 2 * REGION_ALIGN;
/// Smallest capacity a ring accepts.
pub const MIN_CAPACITY: usize = 4 * FRAME_ALIGN;

/// Offset of the consumer's `head` word in a ring region of `capacity`
/// bytes of frames.
pub const fn head_offset(capacity: usize) -> usize {
    capacity
}

/// Offset of the producer's `tail` word in a ring region of `capacity`
/// bytes of frames.
pub const fn tail_offset(capacity: usize) -> usize {
    capacity + REGION_ALIGN
}

/// Length of the region needed for a ring of `capacity` bytes of frames.
pub const fn region_len(capacity: usize) -> usize {
    capacity + TRAILER_LEN
}

/// Why a region cannot hold a ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RingError {
    /// The frame area is not a power of two of at least [`MIN_CAPACITY`].
    BadCapacity(usize),
    /// The memory for the ring could not be allocated.
    Alloc(RegionAllocError),
    /// A published frame's length is impossible: the ring is corrupt.
    Corrupt {
        /// Position of the frame.
        position: u64,
        /// The length word found there.
        length: i32,
    },
}

impl fmt::Display for RingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RingError::BadCapacity(capacity) => write!(
                f,
                "ring capacity {capacity} is not a power of two of at least {MIN_CAPACITY}"
            ),
            RingError::Alloc(error) => error.fmt(f),
            RingError::Corrupt { position, length } => {
                write!(f, "corrupt frame at position {position}: length {length}")
            }
        }
    }
}

impl std::error::Error for RingError {}

/// Why a frame could not be claimed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimError {
    /// Not enough free space now; retry after the consumer catches up.
    Full,
    /// The frame can never fit in this ring.
    TooLarge {
        /// Payload bytes asked for.
        payload_len: usize,
        /// Largest payload this ring can ever take.
        max_payload: usize,
    },
}

impl fmt::Display for ClaimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClaimError::Full => f.write_str("lane is full"),
            ClaimError::TooLarge {
                payload_len,
                max_payload,
            } => write!(
                f,
                "payload of {payload_len} bytes can never fit (largest is {max_payload})"
            ),
        }
    }
}

impl std::error::Error for ClaimError {}

/// Why a message could not be written.
#[derive(Debug)]
pub enum WriteError {
    /// No room now, or never ([`ClaimError::TooLarge`]).
    Claim(ClaimError),
    /// rkyv failed to serialize the message.
    Encode(rkyv::rancor::Error),
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::Claim(error) => error.fmt(f),
            WriteError::Encode(error) => write!(f, "cannot serialize message: {error}"),
        }
    }
}

impl std::error::Error for WriteError {}

impl From<ClaimError> for WriteError {
    fn from(error: ClaimError) -> Self {
        WriteError::Claim(error)
    }
}

/// What both ends know about the ring's memory.
struct Shape<R> {
    /// Keeps the memory alive while either end exists.
    _region: Arc<R>,
    data: NonNull<u8>,
    capacity: usize,
}

// SAFETY: `data` points into `region`, which is `Send + Sync`; each end
// accesses the bytes only as the protocol in the module doc allows.
unsafe impl<R: Region> Send for Shape<R> {}

impl<R: Region> Shape<R> {
    fn new(region: Arc<R>) -> Result<Self, RingError> {
        let capacity = region.len().saturating_sub(TRAILER_LEN);
        if capacity < MIN_CAPACITY || !capacity.is_power_of_two() {
            return Err(RingError::BadCapacity(capacity));
        }
        let data = region.base();
        Ok(Shape {
            _region: region,
            data,
            capacity,
        })
    }

    #[inline]
    fn offset(&self, position: u64) -> usize {
        position as usize & (self.capacity - 1)
    }

    #[inline]
    fn ptr(&self, offset: usize) -> *mut u8 {
        debug_assert!(
            offset <= self.capacity + TRAILER_LEN,
            "offset {offset} out of region"
        );
        // SAFETY: callers pass offsets inside the region (frames at most
        // `capacity`, trailer words below `capacity + TRAILER_LEN`).
        unsafe { self.data.as_ptr().add(offset) }
    }

    #[inline]
    fn length_word(&self, offset: usize) -> &AtomicI32 {
        debug_assert_eq!(offset % FRAME_ALIGN, 0, "frame offset {offset} misaligned");
        // SAFETY: frame offsets are multiples of FRAME_ALIGN inside the frame
        // area of a REGION_ALIGN-aligned region, so the word is in bounds and
        // 4-aligned; all concurrent access to it is atomic.
        unsafe { AtomicI32::from_ptr(self.ptr(offset).cast()) }
    }

    #[inline]
    fn head(&self) -> &AtomicU64 {
        // SAFETY: the head word is the first 8 bytes of the trailer, in
        // bounds and 128-aligned; it is only ever accessed atomically.
        unsafe { AtomicU64::from_ptr(self.ptr(self.capacity).cast()) }
    }

    #[inline]
    fn tail(&self) -> &AtomicU64 {
        // SAFETY: as for `head`, one cache line further on.
        unsafe { AtomicU64::from_ptr(self.ptr(self.capacity + REGION_ALIGN).cast()) }
    }

    fn max_payload(&self) -> usize {
        self.capacity / 2 - HEADER_LEN
    }
}

/// Asks the cache for the line after the one holding frame `offset` of the
/// frame area at `data` (`capacity` bytes), if that line is in the area.
///
/// A consumer that finds no frame at `head` calls this while it waits, so
/// that a frame longer than what is left of its length word's line arrives
/// in one transfer time, not two (see [`super::prefetch`]). Measured on the
/// lanes bench's 64-byte message (a 96-byte frame): round trip p50 from
/// about 1.6x the floor's to 1.1x-1.3x.
#[inline]
pub(crate) fn prefetch_line_after(data: NonNull<u8>, offset: usize, capacity: usize) {
    if let Some(next) = line_after(offset, capacity) {
        prefetch_read(data.as_ptr().wrapping_add(next));
    }
}

/// The offset of the line after the one holding frame `offset`, if it is
/// in a frame area of `capacity` bytes (aligned to [`REGION_ALIGN`]).
#[inline]
fn line_after(offset: usize, capacity: usize) -> Option<usize> {
    // The line size of x86-64 and of most ARM cores; a hint only, so a
    // wrong guess costs speed, not correctness.
    const LINE: usize = 64;
    let next = (offset | (LINE - 1)) + 1;
    (next < capacity).then_some(next)
}

/// Creates a ring over `region`, whose bytes must be zero.
///
/// # Errors
///
/// [`RingError::BadCapacity`] unless `region.len() - TRAILER_LEN` is a
/// power of two of at least [`MIN_CAPACITY`].
pub fn ring<R: Region>(region: R) -> Result<(FrameProducer<R>, FrameConsumer<R>), RingError> {
    let region = Arc::new(region);
    let producer = FrameProducer::new(Shape::new(Arc::clone(&region))?);
    let consumer = FrameConsumer::new(Shape::new(region)?);
    Ok((producer, consumer))
}

/// Creates a ring of `capacity` bytes of frames on the heap.
///
/// # Panics
///
/// If `capacity` is not a power of two of at least [`MIN_CAPACITY`].
///
/// # Examples
///
/// ```
/// use corelane::frame::FrameMeta;
/// use corelane::lane::frames;
///
/// let (mut producer, mut consumer) = frames::heap_ring(1024);
/// let mut claim = producer.claim(5).unwrap();
/// claim.payload_mut().copy_from_slice(b"hello");
/// claim.commit(5, FrameMeta { msg_type: 1, ..FrameMeta::default() });
///
/// let mut seen = Vec::new();
/// consumer.drain(16, |frame| seen.push(frame.payload().to_vec())).unwrap();
/// assert_eq!(seen, [b"hello".to_vec()]);
/// ```
pub fn heap_ring(capacity: usize) -> (FrameProducer<HeapRegion>, FrameConsumer<HeapRegion>) {
    try_heap_ring(capacity).unwrap_or_else(|error| panic!("{error}"))
}

/// Type of both ends of a heap ring.
pub type HeapRing = (FrameProducer<HeapRegion>, FrameConsumer<HeapRegion>);

/// As [`heap_ring`], returning an error instead of panicking.
///
/// # Errors
///
/// [`RingError::BadCapacity`] or [`RingError::Alloc`].
pub fn try_heap_ring(capacity: usize) -> Result<HeapRing, RingError> {
    if capacity < MIN_CAPACITY || !capacity.is_power_of_two() {
        return Err(RingError::BadCapacity(capacity));
    }
    let len = capacity
        .checked_add(TRAILER_LEN)
        .ok_or(RingError::BadCapacity(capacity))?;
    ring(HeapRegion::try_zeroed(len).map_err(RingError::Alloc)?)
}

/// The writing end of a frame ring.
pub struct FrameProducer<R: Region> {
    shape: Shape<R>,
    /// Position of the next frame to write; published as `tail`.
    tail: u64,
    /// Last value read from the consumer's `head`.
    cached_head: u64,
    /// Frames committed so far: the `sequence` of the next frame.
    sequence: u64,
    /// Position up to which bytes from `tail` on may be non-zero: payload
    /// lent by a claim and neither published nor zeroed again yet. Kept
    /// here rather than only in the claim, so that a claim forgotten
    /// (`mem::forget`) instead of dropped cannot leave bytes that the
    /// consumer would read as frames once a shorter frame is published
    /// over them: the next claim zeroes them first.
    dirty_end: u64,
}

impl<R: Region> FrameProducer<R> {
    fn new(shape: Shape<R>) -> Self {
        let head = shape.head().load(Ordering::Acquire);
        let tail = shape.tail().load(Ordering::Relaxed);
        FrameProducer {
            tail,
            cached_head: head,
            sequence: 0,
            dirty_end: tail,
            shape,
        }
    }

    /// Bytes of frames the ring holds.
    pub fn capacity(&self) -> usize {
        self.shape.capacity
    }

    /// Largest payload a frame in this ring can carry.
    pub fn max_payload(&self) -> usize {
        self.shape.max_payload()
    }

    /// Frames committed so far.
    pub fn committed(&self) -> u64 {
        self.sequence
    }

    /// Whether the consumer has released space since this producer last
    /// looked at `head` (which it does whenever a claim finds no room).
    /// For a producer deciding whether it may park after a refusal.
    pub fn consumer_moved(&self) -> bool {
        // Pairs with the consumer's Release store of `head`.
        self.shape.head().load(Ordering::Acquire) != self.cached_head
    }

    /// Whether `len` more bytes fit, re-reading `head` only if the cached
    /// copy says they do not.
    #[inline]
    fn has_room(&mut self, len: usize) -> bool {
        let capacity = self.shape.capacity as u64;
        if capacity - (self.tail - self.cached_head) >= len as u64 {
            return true;
        }
        // Pairs with the consumer's Release store of `head`, made after it
        // zeroed the frames it released: the space we now reuse is zero.
        self.cached_head = self.shape.head().load(Ordering::Acquire);
        capacity - (self.tail - self.cached_head) >= len as u64
    }

    /// Claims space for a frame with a payload of exactly `payload_len`
    /// bytes, writing a padding frame first if it must wrap.
    ///
    /// # Errors
    ///
    /// [`ClaimError::TooLarge`] if such a frame can never fit;
    /// [`ClaimError::Full`] if it does not fit now.
    pub fn claim(&mut self, payload_len: usize) -> Result<FrameClaim<'_, R>, ClaimError> {
        self.zero_forgotten();
        let max_payload = self.shape.max_payload();
        if payload_len > max_payload {
            return Err(ClaimError::TooLarge {
                payload_len,
                max_payload,
            });
        }
        let frame_len = aligned_len(HEADER_LEN + payload_len);
        let to_end = self.shape.capacity - self.shape.offset(self.tail);
        let padding = if frame_len > to_end { to_end } else { 0 };
        if !self.has_room(padding + frame_len) {
            return Err(ClaimError::Full);
        }
        if padding > 0 {
            self.write_padding(padding);
        }
        Ok(FrameClaim {
            offset: self.shape.offset(self.tail),
            room: payload_len,
            dirty: 0,
            producer: self,
        })
    }

    /// Claims all the contiguous free space at `tail` (up to the largest
    /// frame), without wrapping; `None` if not even a header fits.
    /// Uses the cached `head` only: see `write_message` for when it is
    /// refreshed.
    fn claim_contiguous(&mut self) -> Option<FrameClaim<'_, R>> {
        self.zero_forgotten();
        let offset = self.shape.offset(self.tail);
        let largest = self.shape.max_payload() + HEADER_LEN;
        let free = self.shape.capacity - (self.tail - self.cached_head) as usize;
        let room = free.min(self.shape.capacity - offset).min(largest);
        (room > HEADER_LEN).then(|| FrameClaim {
            offset,
            room: room - HEADER_LEN,
            dirty: 0,
            producer: self,
        })
    }

    /// Serializes `msg` with rkyv straight into the ring and publishes it.
    ///
    /// The fast path serializes once into the free space at `tail`. Only if
    /// that space is too small does it learn the exact size (a second
    /// serialization into scratch memory), wrap, and serialize in place.
    ///
    /// # Errors
    ///
    /// [`WriteError::Claim`] with `Full` (retry later) or `TooLarge`
    /// (never fits); [`WriteError::Encode`] if rkyv fails.
    pub fn write_message<M: Message>(
        &mut self,
        msg: &M,
        timestamp_ns: u64,
        arena: &mut Arena,
    ) -> Result<(), WriteError> {
        self.write_as::<M, M>(msg, timestamp_ns, arena)
    }

    /// As [`write_message`](Self::write_message), for a value whose archive
    /// is an `M`'s ([`Encodes`]), such as a view of an `M` made of borrowed
    /// bytes: the frame holds an `M`, and its readers read it as one.
    ///
    /// # Errors
    ///
    /// As [`write_message`](Self::write_message).
    pub fn write_as<M: Message, T: Encodes<M>>(
        &mut self,
        msg: &T,
        timestamp_ns: u64,
        arena: &mut Arena,
    ) -> Result<(), WriteError> {
        const {
            assert!(
                M::TYPE_ID != PADDING_TYPE,
                "Message::TYPE_ID 0 is reserved for padding frames"
            )
        };
        let sequence = self.sequence;
        // First with the cached `head`; only if that room is too small, look
        // at the consumer's `head` once more and try again. Re-reading it on
        // every send would pull its cache line over from the consumer each
        // time the ring is busy.
        for attempt in 0..2 {
            if let Some(mut claim) = self.claim_contiguous() {
                if let Some(used) = claim.encode(msg, arena) {
                    claim.commit(used, M::meta(sequence, timestamp_ns));
                    return Ok(());
                }
                // The failed attempt may have written part of the space:
                // the claim's drop zeroes it.
                drop(claim);
            }
            // Pairs with the consumer's Release store of `head`.
            let head = self.shape.head().load(Ordering::Acquire);
            if attempt > 0 || head == self.cached_head {
                break;
            }
            self.cached_head = head;
        }
        let payload_len = envelope::encoded_len(msg, arena).map_err(WriteError::Encode)?;
        let mut claim = self.claim(payload_len)?;
        match claim.encode(msg, arena) {
            Some(used) => {
                claim.commit(used, M::meta(sequence, timestamp_ns));
                Ok(())
            }
            None => Err(WriteError::Encode(
                <rkyv::rancor::Error as rkyv::rancor::Source>::new(std::io::Error::other(
                    "message size changed between two serializations",
                )),
            )),
        }
    }

    /// Zeroes what a forgotten claim lent past `tail`, so that free space
    /// is zero again before the next claim (see `dirty_end`).
    #[inline]
    fn zero_forgotten(&mut self) {
        if self.dirty_end > self.tail {
            let len = (self.dirty_end - self.tail) as usize;
            // SAFETY: `[tail, dirty_end)` was one claim's frame, which lies
            // inside the frame area without wrapping; it is unpublished (the
            // length word at `tail` is still zero), so only this producer
            // touches it.
            unsafe { ptr::write_bytes(self.shape.ptr(self.shape.offset(self.tail)), 0, len) };
            self.dirty_end = self.tail;
        }
    }

    /// Publishes a padding frame of `len` bytes at `tail`.
    fn write_padding(&mut self, len: usize) {
        let offset = self.shape.offset(self.tail);
        let meta = FrameMeta {
            msg_type: PADDING_TYPE,
            ..FrameMeta::default()
        };
        self.publish(offset, len, &meta, 0);
        self.tail += len as u64;
    }

    /// Writes the header fields of the frame at `offset`, then its length.
    fn publish(&self, offset: usize, length: usize, meta: &FrameMeta, checksum: u32) {
        let mut header = [0u8; HEADER_LEN];
        write_meta(&mut header, meta, checksum);
        // SAFETY: the frame at `offset` lies in space this producer has
        // claimed and not yet published, so no one else reads these bytes;
        // the length word (bytes 0..4) is not touched here.
        unsafe { ptr::copy_nonoverlapping(header.as_ptr().add(4), self.shape.ptr(offset + 4), 28) };
        // Publication: pairs with the consumer's Acquire load of the length
        // word, which then sees the header and payload written above.
        self.shape
            .length_word(offset)
            .store(length as i32, Ordering::Release);
    }
}

/// Space claimed in the ring for one frame, not yet published.
///
/// Dropping a claim without committing it publishes nothing and returns
/// the space (zeroed again) to the producer.
pub struct FrameClaim<'p, R: Region> {
    producer: &'p mut FrameProducer<R>,
    /// Offset of the frame in the ring.
    offset: usize,
    /// Payload bytes lent.
    room: usize,
    /// Payload bytes that may have been written, from the start: what must
    /// be zeroed again if it is not published.
    dirty: usize,
}

impl<R: Region> FrameClaim<'_, R> {
    /// The payload space, zeroed, to write into in place. Its start is
    /// aligned to [`FRAME_ALIGN`].
    pub fn payload_mut(&mut self) -> &mut [u8] {
        // Anything in the room may be written now; the producer learns it
        // too, in case this claim is forgotten rather than dropped.
        self.dirty = self.room;
        let producer = &mut *self.producer;
        producer.dirty_end = producer.tail + aligned_len(HEADER_LEN + self.room) as u64;
        self.payload_unmarked()
    }

    fn payload_unmarked(&mut self) -> &mut [u8] {
        // SAFETY: the claimed bytes lie inside the frame area, are owned by
        // this producer until published (the consumer reads nothing beyond
        // the length word at `offset`, which this slice excludes), and the
        // slice borrows the claim mutably, so it cannot outlive it.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.producer.shape.ptr(self.offset + PAYLOAD_OFFSET),
                self.room,
            )
        }
    }

    /// Serializes `msg` into the payload space; returns the bytes used.
    /// rkyv writes front to back, so on success only those bytes are dirty
    /// and a large claim costs nothing to give back.
    fn encode<T: Encode>(&mut self, msg: &T, arena: &mut Arena) -> Option<usize> {
        let used = envelope::encode_into(msg, self.payload_unmarked(), arena);
        self.dirty = self.dirty.max(used.unwrap_or(self.room));
        used
    }

    /// Publishes the frame with `payload_len` bytes of payload (at most the
    /// claimed room) and the header fields of `meta`.
    ///
    /// # Panics
    ///
    /// If `payload_len` exceeds the claimed room.
    pub fn commit(self, payload_len: usize, meta: FrameMeta) {
        self.commit_inner(payload_len, meta, false);
    }

    /// As [`commit`](Self::commit), and also sets the checksum field.
    pub fn commit_checksummed(self, payload_len: usize, meta: FrameMeta) {
        self.commit_inner(payload_len, meta, true);
    }

    fn commit_inner(mut self, payload_len: usize, mut meta: FrameMeta, with_checksum: bool) {
        assert!(
            payload_len <= self.room,
            "payload of {payload_len} bytes committed in a claim of {}",
            self.room
        );
        let length = HEADER_LEN + payload_len;
        let used = aligned_len(length);
        // The consumer zeroes the published frame; what was written beyond
        // it is ours to zero.
        self.zero_from(used);
        let mut sum = 0;
        if with_checksum {
            meta.flags |= FLAG_CHECKSUM;
            let mut header = [0u8; HEADER_LEN];
            write_meta(&mut header, &meta, 0);
            sum = checksum(&header, &self.payload_unmarked()[..payload_len]);
        }
        let producer = &mut *self.producer;
        producer.publish(self.offset, length, &meta, sum);
        producer.tail += used as u64;
        producer.dirty_end = producer.tail;
        producer.sequence += 1;
        // For observers only; nobody's hot path reads it.
        producer
            .shape
            .tail()
            .store(producer.tail, Ordering::Release);
        std::mem::forget(self);
    }

    /// Zeroes the dirty bytes of the claim from frame offset `from`,
    /// restoring the ring's "free space is zero" invariant for the part of
    /// the claim that will not be published.
    fn zero_from(&mut self, from: usize) {
        let end = aligned_len(HEADER_LEN + self.dirty);
        if from < end {
            // SAFETY: `[offset + from, offset + end)` lies inside the claim,
            // owned by this producer, and inside the frame area.
            unsafe { ptr::write_bytes(self.producer.shape.ptr(self.offset + from), 0, end - from) };
        }
    }
}

impl<R: Region> Drop for FrameClaim<'_, R> {
    fn drop(&mut self) {
        self.zero_from(PAYLOAD_OFFSET);
        self.producer.dirty_end = self.producer.tail;
    }
}

/// A published frame, borrowed from the ring until the consumer releases it.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// Position of the frame in the ring.
    pub position: u64,
    /// Header fields.
    pub meta: FrameMeta,
    header: &'a [u8],
    payload: &'a [u8],
}

impl<'a> Frame<'a> {
    /// The payload bytes, aligned to [`FRAME_ALIGN`].
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// Checks the frame's checksum if it carries one.
    ///
    /// # Errors
    ///
    /// [`FrameError::Checksum`] if the stored and computed sums differ.
    pub fn verify(&self) -> Result<(), FrameError> {
        if self.meta.flags & FLAG_CHECKSUM == 0 {
            return Ok(());
        }
        let stored = read_checksum(self.header);
        let computed = checksum(self.header, self.payload);
        if stored == computed {
            Ok(())
        } else {
            Err(FrameError::Checksum { stored, computed })
        }
    }
}

/// The reading end of a frame ring.
pub struct FrameConsumer<R: Region> {
    shape: Shape<R>,
    /// Position of the next frame to read; published as `head`.
    head: u64,
}

impl<R: Region> FrameConsumer<R> {
    fn new(shape: Shape<R>) -> Self {
        FrameConsumer {
            head: shape.head().load(Ordering::Acquire),
            shape,
        }
    }

    /// Whether a frame (possibly padding) is published at `head`.
    #[inline]
    pub fn has_frame(&self) -> bool {
        // Pairs with the producer's Release store of the length word.
        self.shape
            .length_word(self.shape.offset(self.head))
            .load(Ordering::Acquire)
            > 0
    }

    /// Bytes published and not yet released, as last stored by the
    /// producer (a snapshot for observers, not for the hot path).
    pub fn backlog_bytes(&self) -> u64 {
        self.shape
            .tail()
            .load(Ordering::Acquire)
            .saturating_sub(self.head)
    }

    /// Reads up to `max` frames in order, lending each to `on_frame` in
    /// place; padding frames are skipped. The frames read are then zeroed
    /// and released to the producer with a single store of `head`.
    ///
    /// If `on_frame` panics, the frame it was lent counts as read: it is
    /// zeroed and released with those before it as the panic unwinds, so a
    /// caller that catches the panic finds the lane going on with the next
    /// frame (not stopped for good at zeroes nobody released).
    ///
    /// Returns the number of (non-padding) frames read.
    ///
    /// # Errors
    ///
    /// [`RingError::Corrupt`] if a length word is impossible (the frames
    /// before it are still delivered and released).
    pub fn drain(
        &mut self,
        max: usize,
        mut on_frame: impl FnMut(Frame<'_>),
    ) -> Result<usize, RingError> {
        let mut release = Release {
            position: self.head,
            lent: 0,
            consumer: self,
        };
        let mut read = 0;
        let mut outcome = Ok(());
        while read < max {
            let shape = &release.consumer.shape;
            let offset = shape.offset(release.position);
            // Pairs with the producer's Release store in `publish`.
            let length = shape.length_word(offset).load(Ordering::Acquire);
            if length <= 0 {
                prefetch_line_after(shape.data, offset, shape.capacity);
                break;
            }
            let occupied = aligned_len(length as usize);
            if (length as usize) < HEADER_LEN || occupied > shape.capacity - offset {
                let position = release.position;
                outcome = Err(RingError::Corrupt { position, length });
                break;
            }
            // SAFETY: the frame `[offset, offset + length)` is published
            // (Acquire above) and in bounds (checked above); the producer
            // does not touch it until `head` moves past it.
            let bytes = unsafe { std::slice::from_raw_parts(shape.ptr(offset), length as usize) };
            let meta = read_meta(bytes);
            if meta.msg_type != PADDING_TYPE {
                release.lent = occupied;
                on_frame(Frame {
                    position: release.position,
                    meta,
                    header: &bytes[..HEADER_LEN],
                    payload: &bytes[PAYLOAD_OFFSET..],
                });
                release.lent = 0;
                read += 1;
            }
            // SAFETY: as above; the borrow of `bytes` ended with `on_frame`.
            unsafe { ptr::write_bytes(shape.ptr(offset), 0, occupied) };
            release.position += occupied as u64;
        }
        outcome.map(|()| read)
    }
}

/// What a drain has read, released when the drain ends, by return or by
/// a panic of its callback.
struct Release<'c, R: Region> {
    consumer: &'c mut FrameConsumer<R>,
    /// Position after the frames read and zeroed.
    position: u64,
    /// Bytes of the frame lent to the callback now, if any.
    lent: usize,
}

impl<R: Region> Drop for Release<'_, R> {
    fn drop(&mut self) {
        let consumer = &mut *self.consumer;
        if self.lent > 0 {
            // The callback panicked with this frame: it is read.
            let offset = consumer.shape.offset(self.position);
            // SAFETY: the frame lent lies in bounds at `offset` (checked
            // before it was lent) and is ours until `head` moves past it;
            // the callback that borrowed it has unwound.
            unsafe { ptr::write_bytes(consumer.shape.ptr(offset), 0, self.lent) };
            self.position += self.lent as u64;
        }
        if self.position != consumer.head {
            // Pairs with the producer's Acquire load in `has_room`: the
            // zeroes written above are visible before the space is reused.
            // Stored before the consumer's own copy, as the typed ring does
            // (see "Store order" in `lane::typed`).
            consumer
                .shape
                .head()
                .store(self.position, Ordering::Release);
            consumer.head = self.position;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(msg_type: u16, sequence: u64) -> FrameMeta {
        FrameMeta {
            msg_type,
            sequence,
            ..FrameMeta::default()
        }
    }

    fn write(producer: &mut FrameProducer<HeapRegion>, payload: &[u8]) -> Result<(), ClaimError> {
        let mut claim = producer.claim(payload.len())?;
        claim.payload_mut().copy_from_slice(payload);
        claim.commit(payload.len(), meta(1, 0));
        Ok(())
    }

    fn read_all(consumer: &mut FrameConsumer<HeapRegion>) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        consumer
            .drain(usize::MAX, |frame| out.push(frame.payload().to_vec()))
            .unwrap();
        out
    }

    #[test]
    fn a_frame_whose_callback_panics_is_read_and_released() {
        let (mut producer, mut consumer) = heap_ring(256);
        for byte in 1..=4u8 {
            write(&mut producer, &[byte; 32]).unwrap();
        }
        assert!(matches!(
            write(&mut producer, &[5; 32]),
            Err(ClaimError::Full)
        ));
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            consumer.drain(8, |frame| assert_ne!(frame.payload()[0], 2, "fails on 2"))
        }));
        assert!(panicked.is_err());
        // Frames 1 and 2 were given back, zeroed: two more fit.
        write(&mut producer, &[5; 32]).unwrap();
        write(&mut producer, &[6; 32]).unwrap();
        let rest: Vec<u8> = read_all(&mut consumer).iter().map(|p| p[0]).collect();
        assert_eq!(rest, [3, 4, 5, 6]);
    }

    #[test]
    fn largest_frame_fits_and_one_more_byte_never_does() {
        let (mut producer, mut consumer) = heap_ring(256);
        let max = producer.max_payload();
        assert_eq!(max, 128 - HEADER_LEN);
        // Move the offset off zero so the largest frame has to wrap.
        write(&mut producer, b"x").unwrap();
        assert_eq!(read_all(&mut consumer).len(), 1);
        write(&mut producer, &vec![7; max]).unwrap();
        assert_eq!(
            write(&mut producer, &vec![7; max + 1]),
            Err(ClaimError::TooLarge {
                payload_len: max + 1,
                max_payload: max
            })
        );
        assert_eq!(read_all(&mut consumer), vec![vec![7; max]]);
    }

    #[test]
    fn full_ring_refuses_then_accepts_after_release() {
        let (mut producer, mut consumer) = heap_ring(256);
        // Each 1-byte payload occupies 64 bytes: four fill the ring.
        for i in 0..4u8 {
            write(&mut producer, &[i]).unwrap();
        }
        assert_eq!(write(&mut producer, &[9]), Err(ClaimError::Full));
        assert_eq!(
            read_all(&mut consumer),
            vec![vec![0], vec![1], vec![2], vec![3]]
        );
        write(&mut producer, &[9]).unwrap();
        assert_eq!(read_all(&mut consumer), vec![vec![9]]);
    }

    #[test]
    fn frames_ending_exactly_at_the_end_need_no_padding() {
        let (mut producer, mut consumer) = heap_ring(256);
        // Two frames of 128 bytes end exactly at the ring's end.
        let payload = vec![1; 128 - HEADER_LEN];
        write(&mut producer, &payload).unwrap();
        write(&mut producer, &payload).unwrap();
        assert_eq!(read_all(&mut consumer).len(), 2);
        write(&mut producer, &payload).unwrap();
        let mut positions = Vec::new();
        consumer
            .drain(8, |frame| positions.push(frame.position))
            .unwrap();
        assert_eq!(positions, [256]);
    }

    #[test]
    fn a_wrap_leaves_padding_that_readers_skip() {
        let (mut producer, mut consumer) = heap_ring(1024);
        write(&mut producer, &[1; 400]).unwrap(); // occupies 448 bytes
        write(&mut producer, &[1; 400]).unwrap();
        assert_eq!(read_all(&mut consumer).len(), 2);
        // 128 bytes remain before the end: the next 256-byte frame pads them
        // and starts the next lap at offset 0.
        write(&mut producer, &[2; 200]).unwrap();
        let mut seen = Vec::new();
        consumer
            .drain(8, |frame| seen.push((frame.position, frame.payload()[0])))
            .unwrap();
        assert_eq!(seen, [(1024, 2)]);
        assert!(!consumer.has_frame());
        // The padding was zeroed with the frame: the whole ring is free again
        // and takes four 256-byte frames, wrapping with no padding.
        for i in 0..4u8 {
            write(&mut producer, &[i; 224]).unwrap();
        }
        assert_eq!(write(&mut producer, &[4]), Err(ClaimError::Full));
        let firsts: Vec<u8> = read_all(&mut consumer).iter().map(|p| p[0]).collect();
        assert_eq!(firsts, [0, 1, 2, 3]);
    }

    #[test]
    fn payloads_start_aligned_whatever_came_before() {
        let (mut producer, mut consumer) = heap_ring(4096);
        for len in 1..=100 {
            let mut claim = producer.claim(len).unwrap();
            assert_eq!(claim.payload_mut().as_ptr() as usize % 16, 0, "len {len}");
            claim.commit(len, meta(1, 0));
            consumer
                .drain(1, |frame| {
                    assert_eq!(frame.payload().as_ptr() as usize % 16, 0);
                    assert_eq!(frame.payload().len(), len);
                })
                .unwrap();
        }
    }

    #[test]
    fn dropped_claim_publishes_nothing_and_leaves_zeroes() {
        let (mut producer, mut consumer) = heap_ring(256);
        let mut claim = producer.claim(60).unwrap();
        claim.payload_mut().fill(0xFF);
        drop(claim);
        assert!(!consumer.has_frame());
        // A short frame in the same place; the dirty bytes after it must not
        // be read as a frame.
        write(&mut producer, b"ok").unwrap();
        assert_eq!(read_all(&mut consumer), vec![b"ok".to_vec()]);
        assert!(!consumer.has_frame());
    }

    #[test]
    fn committing_less_than_claimed_zeroes_the_rest() {
        let (mut producer, mut consumer) = heap_ring(256);
        let mut claim = producer.claim(90).unwrap();
        claim.payload_mut().fill(0xEE);
        claim.commit(1, meta(1, 0));
        assert_eq!(read_all(&mut consumer), vec![vec![0xEE]]);
        assert!(!consumer.has_frame());
        write(&mut producer, b"next").unwrap();
        assert_eq!(read_all(&mut consumer), vec![b"next".to_vec()]);
    }

    #[test]
    fn checksums_verify_and_catch_flips() {
        let (mut producer, mut consumer) = heap_ring(256);
        let mut claim = producer.claim(4).unwrap();
        claim.payload_mut().copy_from_slice(b"abcd");
        claim.commit_checksummed(4, meta(5, 77));
        consumer
            .drain(1, |frame| {
                assert_eq!(frame.meta.flags & FLAG_CHECKSUM, FLAG_CHECKSUM);
                assert_eq!(frame.verify(), Ok(()));
                let mut copy = frame.payload().to_vec();
                copy[0] ^= 1;
                let tampered = Frame {
                    payload: &copy,
                    ..frame
                };
                assert!(matches!(
                    tampered.verify(),
                    Err(FrameError::Checksum { .. })
                ));
            })
            .unwrap();
    }

    #[test]
    fn corrupt_length_is_reported_not_followed() {
        let (_producer, mut consumer) = heap_ring(256);
        consumer.shape.length_word(0).store(4, Ordering::Release);
        assert_eq!(
            consumer.drain(8, |_| panic!("no frame expected")),
            Err(RingError::Corrupt {
                position: 0,
                length: 4
            })
        );
        consumer.shape.length_word(0).store(1000, Ordering::Release);
        assert!(consumer.drain(8, |_| ()).is_err());
    }

    #[derive(rkyv::Archive, rkyv::Serialize)]
    struct Note {
        id: u32,
        text: Vec<u8>,
    }

    impl Message for Note {
        const TYPE_ID: u16 = 3;
        const VERSION: u8 = 1;
        const NAME: &'static str = "Note";
    }

    #[test]
    fn messages_of_every_size_survive_wraps_and_a_full_ring() {
        let (mut producer, mut consumer) = heap_ring(1024);
        let mut arena = Arena::new();
        let (mut sent, mut read) = (0u32, 0u32);
        // Miri interprets every byte access: fewer laps there.
        let total = if cfg!(miri) { 60 } else { 2000 };
        while read < total {
            // Fill until refused, then read a few: the producer keeps
            // meeting the end of the ring and a stale cached `head`.
            loop {
                let note = Note {
                    id: sent,
                    text: vec![sent as u8; (sent as usize * 7) % 300],
                };
                match producer.write_message(&note, 0, &mut arena) {
                    Ok(()) => sent += 1,
                    Err(WriteError::Claim(ClaimError::Full)) => break,
                    Err(error) => panic!("message {sent}: {error}"),
                }
            }
            consumer
                .drain(3, |frame| {
                    let note = crate::frame::envelope::access_untrusted::<Note>(frame.payload())
                        .expect("a valid archive");
                    assert_eq!(note.id, read);
                    assert_eq!(note.text.len(), (read as usize * 7) % 300);
                    assert!(note.text.iter().all(|&b| b == read as u8));
                    read += 1;
                })
                .unwrap();
        }
    }

    #[derive(rkyv::Archive, rkyv::Serialize)]
    enum Memo {
        Text { id: u32, text: Vec<u8> },
    }

    impl Message for Memo {
        const TYPE_ID: u16 = 4;
        const VERSION: u8 = 1;
        const NAME: &'static str = "Memo";
    }

    /// A `Memo` of borrowed bytes, archived as one.
    #[derive(rkyv::Archive, rkyv::Serialize)]
    #[rkyv(as = ArchivedMemo)]
    enum MemoView<'a> {
        Text {
            id: u32,
            #[rkyv(with = rkyv::with::AsVec)]
            text: &'a [u8],
        },
    }

    // SAFETY: `Memo`'s one variant, its fields in the same order, archived
    // to the same bytes; the test below validates every view it reads.
    unsafe impl crate::frame::Encodes<Memo> for MemoView<'_> {}

    #[test]
    fn a_view_written_as_its_message_reads_as_that_message_across_wraps() {
        let (mut producer, mut consumer) = heap_ring(1024);
        let mut arena = Arena::new();
        let (mut sent, mut read) = (0u32, 0u32);
        let total = if cfg!(miri) { 40 } else { 1000 };
        while read < total {
            loop {
                let text = vec![sent as u8; (sent as usize * 13) % 250];
                // Views and owned memos in turn: one reader, one type.
                let written = if sent % 3 == 0 {
                    let memo = Memo::Text { id: sent, text };
                    producer.write_message(&memo, 0, &mut arena)
                } else {
                    let view = MemoView::Text {
                        id: sent,
                        text: &text,
                    };
                    producer.write_as::<Memo, _>(&view, 0, &mut arena)
                };
                match written {
                    Ok(()) => sent += 1,
                    Err(WriteError::Claim(ClaimError::Full)) => break,
                    Err(error) => panic!("memo {sent}: {error}"),
                }
            }
            consumer
                .drain(2, |frame| {
                    crate::frame::envelope::check_type::<Memo>(&frame.meta).unwrap();
                    let memo = crate::frame::envelope::access_untrusted::<Memo>(frame.payload())
                        .expect("a valid archive");
                    let ArchivedMemo::Text { id, text } = memo;
                    assert_eq!(*id, read);
                    assert_eq!(text.len(), (read as usize * 13) % 250);
                    assert!(text.iter().all(|&b| b == read as u8));
                    read += 1;
                })
                .unwrap();
        }
    }

    #[test]
    fn the_line_after_is_the_next_line_of_the_frame_area_or_none() {
        for capacity in [MIN_CAPACITY, 256, 4096] {
            for offset in (0..capacity).step_by(FRAME_ALIGN) {
                let line = offset / 64;
                match line_after(offset, capacity) {
                    Some(next) => assert_eq!(next, (line + 1) * 64, "{capacity}/{offset}"),
                    // Only from the last line: the head word's line after
                    // it is not the frame area's.
                    None => assert_eq!(line, capacity / 64 - 1, "{capacity}/{offset}"),
                }
            }
        }
    }

    #[test]
    fn a_consumer_waits_at_every_offset_of_the_smallest_ring() {
        // A frame published while the consumer waits at each offset in
        // turn, from sizes that end exactly at the end of the ring and
        // ones that need padding: each is read once, whole.
        let (mut producer, mut consumer) = heap_ring(MIN_CAPACITY);
        let max = producer.max_payload();
        let mut offsets = std::collections::BTreeSet::new();
        for step in 0..64u8 {
            assert_eq!(consumer.drain(8, |_| panic!("nothing yet")), Ok(0));
            offsets.insert(producer.shape.offset(producer.tail));
            let payload = vec![step + 1; [0, 1, max, 32, 31, 2][usize::from(step) % 6]];
            write(&mut producer, &payload).unwrap();
            assert_eq!(read_all(&mut consumer), [payload]);
        }
        assert_eq!(offsets.len(), MIN_CAPACITY / FRAME_ALIGN, "{offsets:?}");
        // SAFETY: the frame area, which no end uses while this borrow
        // lives (both are borrowed by this test only).
        let bytes =
            unsafe { std::slice::from_raw_parts(consumer.shape.data.as_ptr(), MIN_CAPACITY) };
        assert!(bytes.iter().all(|&b| b == 0), "the ring is all zero again");
    }

    #[test]
    fn bad_capacities_are_refused() {
        let region = HeapRegion::zeroed(region_len(300));
        assert_eq!(ring(region).err(), Some(RingError::BadCapacity(300)));
        let region = HeapRegion::zeroed(region_len(64));
        assert_eq!(ring(region).err(), Some(RingError::BadCapacity(64)));
    }
}
