//! The reading end of a frame ring written by another process.
//!
//! [`RingReader`] attaches to a ring that already holds frames (its `head`
//! and `tail` words set, frames published) and reads it as the lanes'
//! [`FrameConsumer`](crate::lane::frames::FrameConsumer) does, with two
//! differences that come from not trusting the memory:
//!
//! - Every word it reads is checked before use. The positions found at
//!   attach must be frame-aligned and at most a ring apart; a length word
//!   must be zero (nothing yet) or describe a frame that fits between its
//!   offset and the end of the ring. Anything else is a [`RingError::Corrupt`]
//!   or an [`IpcError::Positions`], never a panic or an access out of bounds.
//! - A frame is copied into a buffer of this reader's own (16-byte aligned)
//!   before anything but its length is looked at, and only the copy is
//!   handed out: the other process cannot change bytes this process is
//!   reading. The checksum, when the frame carries one, is verified on the
//!   copy, and typed access goes through rkyv validation
//!   ([`IpcFrame::message`]).
//!
//! The copy is a plain `memcpy` of the published frame: the protocol says
//! the writer leaves a published frame alone until `head` moves past it. A
//! writer that breaks the protocol can only make the copy hold other bytes,
//! which the checks after it then judge.
//!
//! Consumed frames are zeroed whole before `head` is released (a `Release`
//! store, pairing with the producer's `Acquire` load when it looks for
//! room), which is what every producer of the lane protocol expects of its
//! consumer. A drain zeroes its frames only once it has handed out the
//! last of them, just before it releases them all: a zeroed length word at
//! the stored `head` reads as "nothing published yet", so zeroing as it
//! went would let a reader killed in its callback (or whose callback
//! panicked) leave zeroes there, and the next reader would wait on them
//! forever while the writer waited for room. Killed at any point but that
//! last step, it leaves its frames whole for the next reader, which reads
//! them again (at least once, never lost).
//!
//! The reader is generic over [`Region`] so that its logic runs under Miri
//! over heap memory; the IPC subscriber uses it over a mapped file.

use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicU8, Ordering};

use rkyv::api::high::HighValidator;
use rkyv::bytecheck::CheckBytes;
use rkyv::util::AlignedVec;
use rkyv::{rancor, Archived};

use super::error::IpcError;
use crate::frame::envelope::{self, FrameError, Message};
use crate::frame::layout::{
    aligned_len, checksum, read_checksum, read_meta, FrameMeta, FLAG_CHECKSUM, FRAME_ALIGN,
    HEADER_LEN, PADDING_TYPE, PAYLOAD_OFFSET,
};
use crate::lane::frames::{
    head_offset, prefetch_line_after, tail_offset, RingError, MIN_CAPACITY, TRAILER_LEN,
};
use crate::lane::region::Region;

/// A frame read from a ring, copied out of it: the bytes cannot change
/// while it is borrowed.
#[derive(Clone, Copy, Debug)]
pub struct IpcFrame<'a> {
    /// Position of the frame in the ring.
    pub position: u64,
    /// Header fields.
    pub meta: FrameMeta,
    payload: &'a [u8],
}

impl<'a> IpcFrame<'a> {
    /// The payload bytes (a private copy, 16-byte aligned).
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// The payload as an archived `M`, after checking the frame's type and
    /// version and validating the archive.
    ///
    /// # Errors
    ///
    /// [`FrameError::UnknownType`] naming the type and version found, or
    /// [`FrameError::Invalid`] if the bytes are not a valid archive of `M`.
    pub fn message<M>(&self) -> Result<&'a Archived<M>, FrameError>
    where
        M: Message,
        Archived<M>: for<'v> CheckBytes<HighValidator<'v, rancor::Error>>,
    {
        envelope::check_type::<M>(&self.meta)?;
        envelope::access_untrusted::<M>(self.payload)
    }
}

/// Reads frames from an existing ring whose bytes are not trusted.
pub struct RingReader<R: Region> {
    /// Keeps the memory alive.
    region: R,
    data: NonNull<u8>,
    capacity: usize,
    /// Position of the next frame to read; published as the ring's `head`.
    head: u64,
    /// Non-padding frames delivered since attach.
    delivered: u64,
    /// Where the frame being delivered is copied.
    copy: AlignedVec<16>,
}

// SAFETY: `data` points into `region`, which is `Send`; the reader touches
// the ring only through the protocol in the module doc.
unsafe impl<R: Region> Send for RingReader<R> {}

impl<R: Region> RingReader<R> {
    /// Attaches to the ring in `region`, resuming at its stored `head`.
    ///
    /// # Errors
    ///
    /// [`RingError::BadCapacity`] (as [`IpcError::Ring`]) unless the
    /// frame area is a power of two of at least [`MIN_CAPACITY`];
    /// [`IpcError::Positions`] if `head` or `tail` is not frame-aligned,
    /// they are more than a ring apart, or `head` is too close to the end
    /// of the position space to go a lap further.
    pub fn attach(region: R) -> Result<Self, IpcError> {
        let capacity = region.len().saturating_sub(TRAILER_LEN);
        if capacity < MIN_CAPACITY || !capacity.is_power_of_two() {
            return Err(IpcError::Ring(RingError::BadCapacity(capacity)));
        }
        let data = region.base();
        let mut reader = RingReader {
            region,
            data,
            capacity,
            head: 0,
            delivered: 0,
            copy: AlignedVec::new(),
        };
        // Acquire pairs with the Release stores of whoever wrote the words
        // last (a previous reader for `head`, the writer for `tail`).
        let head = reader.word(head_offset(capacity)).load(Ordering::Acquire);
        let tail = reader.word(tail_offset(capacity)).load(Ordering::Acquire);
        let align = FRAME_ALIGN as u64;
        if head % align != 0
            || tail % align != 0
            || head.abs_diff(tail) > capacity as u64
            || head.checked_add(2 * capacity as u64).is_none()
        {
            return Err(IpcError::Positions {
                head,
                tail,
                capacity,
            });
        }
        reader.head = head;
        Ok(reader)
    }

    /// Bytes of frames the ring holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Position of the next frame to read.
    pub fn position(&self) -> u64 {
        self.head
    }

    /// Frames (padding aside) delivered since attach.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// The memory the ring lives in.
    pub fn region(&self) -> &R {
        &self.region
    }

    /// Reads up to `max` frames in order, lending a private copy of each to
    /// `on_frame`; padding frames are skipped. The frames read are zeroed
    /// in the ring and released with one store of `head` once the last has
    /// been handed out; if `on_frame` panics, none is, and the next drain
    /// (of this reader or of one attached later) reads them again.
    ///
    /// Returns the number of frames delivered; zero means none is
    /// published at `head` yet.
    ///
    /// # Errors
    ///
    /// [`IpcError::Ring`] with [`RingError::Corrupt`] for an impossible
    /// length word, [`IpcError::Frame`] for a checksum that does not hold,
    /// [`IpcError::Positions`] at the end of the position space. The frames
    /// before the bad one are delivered and released; the bad one is not
    /// consumed, so every later call reports it again.
    pub fn drain(
        &mut self,
        max: usize,
        mut on_frame: impl FnMut(IpcFrame<'_>),
    ) -> Result<usize, IpcError> {
        let mut position = self.head;
        let mut read = 0;
        let mut outcome = Ok(());
        // A whole lap read: the frame area holds nothing else until the
        // frames read are released.
        while read < max && position - self.head < self.capacity as u64 {
            match self.copy_frame(position) {
                Ok(None) => break,
                Ok(Some((occupied, meta))) => {
                    if meta.msg_type != PADDING_TYPE {
                        on_frame(IpcFrame {
                            position,
                            meta,
                            payload: &self.copy[PAYLOAD_OFFSET..],
                        });
                        read += 1;
                    }
                    match position.checked_add(occupied as u64) {
                        Some(next) => position = next,
                        None => {
                            outcome = Err(self.positions_error(position));
                            break;
                        }
                    }
                }
                Err(error) => {
                    outcome = Err(error);
                    break;
                }
            }
        }
        if position != self.head {
            self.zero_read(position);
            self.head = position;
            self.delivered += read as u64;
            // Pairs with the producer's Acquire load of `head` when it looks
            // for room: the zeroes written above are visible before the
            // space is reused.
            self.word(head_offset(self.capacity))
                .store(position, Ordering::Release);
        }
        outcome.map(|()| read)
    }

    /// Zeroes the frames read, from `head` to `end`, which may wrap past
    /// the end of the frame area.
    fn zero_read(&mut self, end: u64) {
        let span = (end - self.head) as usize;
        debug_assert!(
            span <= self.capacity,
            "read {span} bytes of {}",
            self.capacity
        );
        let offset = self.offset(self.head);
        let first = span.min(self.capacity - offset);
        // SAFETY: `copy_frame` checked that every frame read lies inside the
        // frame area and that together they span at most `capacity` bytes
        // from `head`: `first` bytes from `offset` to at most the end, then
        // the rest from the start. They are published and ours until `head`
        // moves past them.
        unsafe {
            ptr::write_bytes(self.data.as_ptr().add(offset), 0, first);
            ptr::write_bytes(self.data.as_ptr(), 0, span - first);
        }
    }

    /// Whether the space at `head` holds bytes of a frame that was never
    /// published (a claim its writer did not commit). Only meaningful once
    /// the writer is known to be gone; reads with relaxed atomics, so it is
    /// sound (if meaningless) while a writer still runs.
    pub fn unpublished_bytes_at_head(&self) -> bool {
        let offset = self.offset(self.head);
        let span = (self.capacity - offset).min(self.capacity / 2);
        (0..span).any(|index| {
            // SAFETY: `offset + index < capacity`: inside the frame area;
            // read atomically because another process may write it.
            let byte = unsafe { AtomicU8::from_ptr(self.data.as_ptr().add(offset + index)) };
            byte.load(Ordering::Relaxed) != 0
        })
    }

    /// Copies the frame at `position` into `self.copy` if one is published
    /// there, checking its length and checksum; returns the bytes it
    /// occupies in the ring and its header fields.
    fn copy_frame(&mut self, position: u64) -> Result<Option<(usize, FrameMeta)>, IpcError> {
        let offset = self.offset(position);
        // Pairs with the producer's Release store of the length word: the
        // frame's other bytes are visible once a positive length is.
        let length = self.length_word(offset).load(Ordering::Acquire);
        if length == 0 {
            prefetch_line_after(self.data, offset, self.capacity);
            return Ok(None);
        }
        // Made only when needed: an error value built on every frame and
        // dropped unused costs a call to its drop glue per frame.
        let corrupt = || IpcError::Ring(RingError::Corrupt { position, length });
        // The lane protocol never writes a negative length.
        let Ok(frame_len) = usize::try_from(length) else {
            return Err(corrupt());
        };
        let occupied = aligned_len(frame_len);
        if frame_len < HEADER_LEN || occupied > self.capacity - offset {
            return Err(corrupt());
        }
        // Frames read stay in the ring until the drain ends: a frame that
        // reaches past a lap from `head` (no writer that keeps the protocol
        // makes one) overlaps some of them. It waits for the next drain,
        // which reads it over their zeroes, as a drain that zeroed as it
        // went would have read it at once.
        if occupied as u64 > self.capacity as u64 - (position - self.head) {
            return Ok(None);
        }

        self.copy.resize(frame_len, 0);
        // SAFETY: `[offset, offset + frame_len)` lies inside the frame area
        // (checked above) and `copy` holds `frame_len` bytes of its own.
        unsafe {
            ptr::copy_nonoverlapping(
                self.data.as_ptr().add(offset),
                self.copy.as_mut_ptr(),
                frame_len,
            );
        }
        let header = &self.copy[..HEADER_LEN];
        let meta = read_meta(header);
        if meta.flags & FLAG_CHECKSUM != 0 {
            let stored = read_checksum(header);
            let computed = checksum(header, &self.copy[PAYLOAD_OFFSET..]);
            if stored != computed {
                return Err(IpcError::Frame {
                    position,
                    error: FrameError::Checksum { stored, computed },
                });
            }
        }
        Ok(Some((occupied, meta)))
    }

    fn positions_error(&self, head: u64) -> IpcError {
        IpcError::Positions {
            head,
            tail: self
                .word(tail_offset(self.capacity))
                .load(Ordering::Relaxed),
            capacity: self.capacity,
        }
    }

    #[inline]
    fn offset(&self, position: u64) -> usize {
        position as usize & (self.capacity - 1)
    }

    #[inline]
    fn length_word(&self, offset: usize) -> &AtomicI32 {
        debug_assert_eq!(offset % FRAME_ALIGN, 0, "frame offset {offset} misaligned");
        // SAFETY: positions are kept multiples of FRAME_ALIGN (checked at
        // attach; every step is a multiple), so `offset` is a 4-aligned
        // word inside the frame area of a REGION_ALIGN-aligned region; all
        // concurrent access to it is atomic.
        unsafe { AtomicI32::from_ptr(self.data.as_ptr().add(offset).cast()) }
    }

    #[inline]
    fn word(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: callers pass `head_offset` or `tail_offset` of this
        // capacity: 128-aligned words inside the region's trailer, only
        // ever accessed atomically.
        unsafe { AtomicU64::from_ptr(self.data.as_ptr().add(offset).cast()) }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rkyv::ser::allocator::Arena;

    use super::*;
    use crate::frame::layout::TYPE_OFFSET;
    use crate::lane::frames::{self, region_len, ClaimError};
    use crate::lane::region::HeapRegion;

    /// One heap region seen by two ends, as a mapped file is by two
    /// processes.
    #[derive(Clone)]
    struct Shared(Arc<HeapRegion>);

    // SAFETY: delegates to a `HeapRegion`, which meets the contract; the
    // bytes were zero when the first ring end was made over them.
    unsafe impl Region for Shared {
        fn base(&self) -> NonNull<u8> {
            self.0.base()
        }

        fn len(&self) -> usize {
            self.0.len()
        }
    }

    fn meta() -> FrameMeta {
        FrameMeta {
            msg_type: 1,
            ..FrameMeta::default()
        }
    }

    fn shared(capacity: usize) -> Shared {
        Shared(Arc::new(HeapRegion::zeroed(region_len(capacity))))
    }

    fn put(region: &Shared, offset: usize, bytes: &[u8]) {
        // SAFETY: tests write inside the region while no end runs.
        unsafe {
            ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                region.base().as_ptr().add(offset),
                bytes.len(),
            )
        };
    }

    #[derive(rkyv::Archive, rkyv::Serialize)]
    struct Tick {
        sequence: u64,
        text: Vec<u8>,
    }

    impl Message for Tick {
        const TYPE_ID: u16 = 21;
        const VERSION: u8 = 1;
        const NAME: &'static str = "Tick";
    }

    #[test]
    fn reads_what_a_producer_wrote_and_resumes_where_the_last_reader_stopped() {
        let region = shared(1024);
        let (mut producer, _unused) = frames::ring(region.clone()).unwrap();
        let mut arena = Arena::new();
        let mut seen = Vec::new();
        let total = if cfg!(miri) { 40 } else { 600 };
        let mut sent = 0u64;
        let mut reader = RingReader::attach(region.clone()).unwrap();
        while seen.len() < total {
            let tick = Tick {
                sequence: sent,
                text: vec![sent as u8; (sent as usize * 13) % 200],
            };
            match producer.write_message(&tick, 0, &mut arena) {
                Ok(()) => sent += 1,
                Err(frames::WriteError::Claim(ClaimError::Full)) => {
                    // Hand over to a fresh reader now and then: it must
                    // resume at the stored head.
                    if sent.is_multiple_of(3) {
                        reader = RingReader::attach(region.clone()).unwrap();
                    }
                    reader
                        .drain(4, |frame| {
                            let tick = frame.message::<Tick>().unwrap();
                            assert_eq!(frame.payload().as_ptr() as usize % 16, 0);
                            assert_eq!(
                                tick.text.len(),
                                (tick.sequence.to_native() as usize * 13) % 200
                            );
                            seen.push(tick.sequence.to_native());
                        })
                        .unwrap();
                }
                Err(error) => panic!("{error}"),
            }
        }
        let expected: Vec<u64> = (0..seen.len() as u64).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn checksums_are_verified_on_the_copy() {
        let region = shared(256);
        let (mut producer, _unused) = frames::ring(region.clone()).unwrap();
        let mut claim = producer.claim(8).unwrap();
        claim.payload_mut().copy_from_slice(b"abcdefgh");
        claim.commit_checksummed(8, meta());
        // Flip one payload byte in the ring.
        put(&region, PAYLOAD_OFFSET + 3, b"X");
        let mut reader = RingReader::attach(region).unwrap();
        for _ in 0..2 {
            let error = reader.drain(8, |_| panic!("nothing torn")).unwrap_err();
            assert!(
                matches!(
                    error,
                    IpcError::Frame {
                        position: 0,
                        error: FrameError::Checksum { .. }
                    }
                ),
                "{error}"
            );
        }
        assert_eq!(reader.position(), 0);
    }

    /// Commits a frame of 32 payload bytes, each `byte`: 64 bytes in all.
    fn commit_filled(producer: &mut frames::FrameProducer<Shared>, byte: u8) {
        let mut claim = producer.claim(32).unwrap();
        claim.payload_mut().fill(byte);
        claim.commit(32, meta());
    }

    #[test]
    fn a_drain_whose_callback_panics_releases_nothing() {
        for fresh_reader in [false, true] {
            let region = shared(256);
            let (mut producer, _unused) = frames::ring(region.clone()).unwrap();
            for byte in 1..=3 {
                commit_filled(&mut producer, byte);
            }
            let mut reader = RingReader::attach(region.clone()).unwrap();
            let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                reader.drain(8, |frame| {
                    if frame.payload()[0] == 2 {
                        panic!("the handler fails on its second frame");
                    }
                })
            }));
            assert!(panicked.is_err());

            // Neither this reader nor one attached later finds zeroes at
            // `head` (which would read as "nothing yet" forever): both get
            // every frame again.
            if fresh_reader {
                reader = RingReader::attach(region).unwrap();
            }
            assert_eq!(reader.position(), 0);
            let mut seen = Vec::new();
            let read = reader.drain(8, |frame| seen.push(frame.payload()[0]));
            assert_eq!(read.unwrap(), 3);
            assert_eq!(seen, [1, 2, 3]);
        }
    }

    #[test]
    fn a_ring_full_to_its_last_byte_is_read_once() {
        let region = shared(256);
        let (mut producer, _unused) = frames::ring(region.clone()).unwrap();
        let mut reader = RingReader::attach(region.clone()).unwrap();
        // Start a frame into the ring, so the full lap wraps.
        commit_filled(&mut producer, 9);
        assert_eq!(reader.drain(8, |_| ()).unwrap(), 1);
        for byte in 1..=4 {
            commit_filled(&mut producer, byte);
        }
        assert!(matches!(producer.claim(1), Err(ClaimError::Full)));
        let mut seen = Vec::new();
        assert_eq!(
            reader
                .drain(usize::MAX, |frame| seen.push(frame.payload()[0]))
                .unwrap(),
            4
        );
        assert_eq!(seen, [1, 2, 3, 4]);
        assert_eq!(reader.position(), 64 + 256);
        // Every byte was given back zeroed.
        for byte in 5..=8 {
            commit_filled(&mut producer, byte);
        }
        seen.clear();
        assert_eq!(
            reader
                .drain(8, |frame| seen.push(frame.payload()[0]))
                .unwrap(),
            4
        );
        assert_eq!(seen, [5, 6, 7, 8]);
    }

    /// A frame that overlaps frames read earlier in the same drain (only a
    /// writer that breaks the protocol makes one) is read by the next
    /// drain, over their zeroes, never reported as corrupt by one drain and
    /// read by the next.
    #[test]
    fn a_frame_over_frames_just_read_waits_for_the_next_drain() {
        let region = shared(256);
        let frame = |at: usize, len: i32, byte: u8| {
            put(&region, at, &[0; HEADER_LEN]);
            put(&region, at + TYPE_OFFSET, &1u16.to_le_bytes());
            put(&region, at + PAYLOAD_OFFSET, &vec![byte; len as usize - 32]);
            put(&region, at, &len.to_le_bytes());
        };
        // Head at 128: frames there and at 192, then one at offset 0 that
        // runs over the first.
        put(&region, head_offset(256), &128u64.to_le_bytes());
        put(&region, tail_offset(256), &128u64.to_le_bytes());
        frame(0, 192, 3);
        frame(128, 64, 1);
        frame(192, 64, 2);
        let mut reader = RingReader::attach(region.clone()).unwrap();
        let mut seen = Vec::new();
        let mut take = |frame: IpcFrame<'_>| seen.push(frame.payload().to_vec());
        assert_eq!(reader.drain(8, &mut take).unwrap(), 2);
        assert_eq!(reader.drain(8, &mut take).unwrap(), 1);
        assert_eq!(reader.position(), 256 + 192);
        let mut overlapping = vec![3; 160];
        overlapping[96..].fill(0);
        assert_eq!(seen, [vec![1; 32], vec![2; 32], overlapping]);
    }

    #[test]
    fn impossible_lengths_are_corrupt_not_followed() {
        for length in [-1, i32::MIN, 1, 31, 257, 100_000, i32::MAX] {
            let region = shared(256);
            put(&region, 0, &length.to_le_bytes());
            let mut reader = RingReader::attach(region).unwrap();
            let error = reader.drain(8, |_| panic!("no frame")).unwrap_err();
            assert!(
                matches!(error, IpcError::Ring(RingError::Corrupt { position: 0, length: l }) if l == length),
                "{length}: {error}"
            );
        }
        // A frame that would run past the end of the ring, from the last slot.
        let region = shared(256);
        let capacity = 256u64;
        let last_slot = capacity - FRAME_ALIGN as u64;
        put(
            &region,
            head_offset(256),
            &(capacity * 2 + last_slot).to_le_bytes(),
        );
        put(
            &region,
            tail_offset(256),
            &(capacity * 2 + last_slot).to_le_bytes(),
        );
        let overrun = 2 * FRAME_ALIGN as i32;
        put(&region, last_slot as usize, &overrun.to_le_bytes());
        let mut reader = RingReader::attach(region).unwrap();
        assert!(matches!(
            reader.drain(8, |_| ()),
            Err(IpcError::Ring(RingError::Corrupt { length, .. })) if length == overrun
        ));
    }

    #[test]
    fn impossible_positions_are_refused_at_attach() {
        let cases: [(u64, u64); 5] = [
            (1, 1),
            (0, 33),
            (0, 512),
            (4096, 0),
            (u64::MAX - 31, u64::MAX - 31),
        ];
        for (head, tail) in cases {
            let region = shared(256);
            put(&region, head_offset(256), &head.to_le_bytes());
            put(&region, tail_offset(256), &tail.to_le_bytes());
            match RingReader::attach(region) {
                Err(IpcError::Positions {
                    head: h, tail: t, ..
                }) => assert_eq!((h, t), (head, tail)),
                Err(error) => panic!("{head}/{tail}: {error}"),
                Ok(_) => panic!("{head}/{tail} accepted"),
            }
        }
        let odd = Shared(Arc::new(HeapRegion::zeroed(region_len(300))));
        assert!(matches!(
            RingReader::attach(odd),
            Err(IpcError::Ring(RingError::BadCapacity(300)))
        ));
    }

    #[test]
    fn an_uncommitted_claim_shows_as_unpublished_bytes() {
        let region = shared(256);
        let (mut producer, _unused) = frames::ring(region.clone()).unwrap();
        let mut claim = producer.claim(4).unwrap();
        claim.payload_mut().copy_from_slice(b"half");
        claim.commit(4, meta());
        let mut claim = producer.claim(4).unwrap();
        claim.payload_mut().copy_from_slice(b"torn");
        let mut reader = RingReader::attach(region.clone()).unwrap();
        assert_eq!(
            reader
                .drain(8, |frame| assert_eq!(frame.payload(), b"half"))
                .unwrap(),
            1
        );
        assert!(reader.unpublished_bytes_at_head());
        // An abandoned claim zeroes what it wrote.
        drop(claim);
        assert!(!reader.unpublished_bytes_at_head());
        assert_eq!(reader.drain(8, |_| panic!("nothing published")).unwrap(), 0);
        assert_eq!(reader.delivered(), 1);
    }
}
