//! A typed single-producer, single-consumer ring of `Send` values.
//!
//! [`ring`] makes a ring of a fixed capacity and returns its two halves: a
//! [`Producer`] that moves values in and a [`Consumer`] that moves them out,
//! in the order they went in. Each half is owned by one thread; neither ever
//! blocks, locks or runs a compare-and-swap. A full ring hands the value back
//! (`Err(Full(value))`); an empty one returns `None`.
//!
//! Values can also move in batches. [`Producer::write_chunk`] claims a run of
//! free slots, the caller fills them, and [`WriteChunk::commit`] publishes the
//! filled prefix with a single store. [`Consumer::read_chunk`] lends a run of
//! values, which the caller may look at, move out or drop, and releases their
//! slots with a single store when the chunk goes.
//!
//! # Counts and slot indices
//!
//! The ring holds up to `capacity` values in at least as many slots (more
//! on small rings: see "Spare slots"). The shared *head* counts the values the
//! consumer has taken so far and the shared *tail* the values the producer
//! has published; both wrap at `usize::MAX`, and since the tail is never more
//! than `capacity` ahead of the head, `tail - head` (wrapping) is the number
//! of values in the ring, whatever the capacity: 1, 2, 3 ... are all exact,
//! and no slot is given up to tell a full ring from an empty one.
//!
//! Each half also keeps `wrap_at`, the count of its own at which its slot
//! index next returns to 0, so the slot of its count is `count + slots -
//! wrap_at`: no division, whatever the number of slots. A push stores the value,
//! the producer's own count and the shared tail (and `wrap_at` once a lap);
//! a pop, the consumer's own count and the shared head. Keeping the slot
//! index as well cost one store more on each side, and on a busy ring
//! every store queues behind the ones that wait for the other core's cache
//! lines: one-at-a-time throughput was about half rtrb's. Each half keeps
//! its own count rather than reading it back from the shared word: the
//! other side reads that word's line (all the time when the ring runs near
//! empty or near full), and a read-back can then miss. In the lanes bench,
//! reading the tail back cost the round trip 40%, and with the head read
//! back the ring ran at 0.3x rtrb's throughput in rounds where the two
//! CPUs sat close (a 130 ns floor). Each half also keeps the slots' address and the
//! capacity in its own fields, so that nothing on the hot path is loaded
//! through the shared state that the other side's stores would make the
//! compiler read again.
//!
//! # Memory ordering
//!
//! The producer writes a value into its slot, then stores the new tail with
//! `Release`; the consumer loads the tail with `Acquire` before it reads the
//! slot, so it sees the value whole. The other way round, the consumer moves
//! a value out of its slot, then stores the new head with `Release`; the
//! producer loads the head with `Acquire` before it writes that slot again.
//!
//! # Store order
//!
//! Each half stores the shared count first and its own copy (and other
//! fields of its own) after it, never before. On x86 stores leave the
//! store buffer in program order, so a store to the half's own fields
//! that waits for its line (presumably pulled over by the other core's
//! hardware prefetchers, the halves' fields being near each other in
//! memory) holds the publication back behind it. Measured with the lanes
//! bench, the binaries before and after this order (and `wrap_at` moved on
//! once a lap, not stored on every step) alternated four times
//! each (`LANES_ROUNDS=3`, typed and rtrb rows): the round trip's p50 went
//! from 1.01x to 1.21x rtrb's to 0.91x to 1.02x at 16 slots, and from
//! 1.08x to 1.19x to 0.92x to 1.06x at 4096; the 16-slot ring's
//! throughput from 0.57x to 0.77x rtrb's to 0.62x to 0.92x.
//!
//! Head and tail sit on cache lines of their own. Each half also keeps a
//! *cached* view of the other half's count and loads the shared one only when
//! its view says the ring is full (producer) or empty (consumer). The
//! producer keeps its view as a *limit*, the head it last loaded plus the
//! capacity: it may write until its tail reaches the limit, so "full?" is one
//! comparison. A cached view can only lag behind the real count, so it may
//! under-count free slots or available values but never over-count them.
//!
//! # Where the slots are
//!
//! The slots start on a 128-byte boundary (see `AlignedArray`), so a ring
//! of small values takes as few cache lines, and line pairs, as its bytes
//! need. A `Box<[T]>` started where the allocator put it, often 16 bytes
//! past a line: a 16-slot ring of `u64` then spans three lines instead of
//! two, and each lap moves one line more between the cores. Measured with
//! the lanes bench, the binaries before and after alternated three times
//! (`LANES_FILTER='typed (16|rtrb (16' LANES_ROUNDS=9`), when a ring of 16
//! `u64` had 16 slots (before the spare slots below): its throughput went
//! from 0.68x, 0.68x and 0.68x rtrb's to 0.89x, 0.90x and 0.83x.
//!
//! # Spare slots
//!
//! A ring of fewer than 16 cache lines has two lines' worth of slots more
//! than its capacity (a 16-value ring of `u64` has 32 slots, 256 bytes);
//! it still holds at most `capacity` values. When such a ring runs full,
//! the producer writes the slot `capacity` places after the one the
//! consumer reads, which with no spare slots is the very slot the consumer
//! has just emptied, on the line it is still reading: each value then
//! moves that line between the cores twice. With two lines of spare slots
//! the producer writes at least 128 bytes behind the consumer, on lines the
//! consumer has left, so a full ring moves a line each way once a line of
//! values, as a ring in its middle does. Values of 128 bytes and more,
//! and rings of 16 lines or more, get none: their halves never share a
//! line pair at one slot apart, and a full large ring frees a line at a
//! time (below).
//!
//! Measured with the lanes bench, in one binary that could give a ring of
//! 16 `u64` 32 slots or the same 256-byte allocation with only 16 of them
//! in use, so that the allocator (and with it where rtrb's ring lands) saw
//! no difference (`LANES_FILTER='typed (16|rtrb (16'`, `LANES_ROUNDS=5`,
//! four alternations): the median throughput of the 16-value ring was
//! 37.0, 35.0, 35.9 and 34.6 M/s with spare slots, 35.8, 27.1, 26.3 and
//! 29.4 M/s without (rtrb's 32.1 to 35.1 M/s in the same runs). The
//! bench's binaries before and after alternated three times
//! (`LANES_ROUNDS=9`): 0.75x, 0.95x and 0.89x rtrb's throughput before,
//! 1.00x, 1.12x and 1.01x after.
//!
//! # Handing slots back
//!
//! On rings of at least 16 cache lines, a busy consumer stores the head once
//! per line's worth of values it takes, not once per value, so the head's
//! line passes to the producer once a line instead of once a value.
//!
//! Measured in the lanes bench, one at a time, where the two CPUs sat close
//! (a 120 to 130 ns round trip): 0.83x to 1.17x rtrb's throughput with the
//! head stored once a value; 1.31x to 1.54x with it stored once a line and
//! when `pop` finds too few values. With the store when the consumer takes
//! the last value it has seen (below), which a consumer that then waits on
//! something else needs, it measured 0.89x to 1.05x: that store is the one
//! the next `pop` would make anyway, and why it costs that much is not yet
//! known. Where the CPUs sat far apart (350 to 400 ns) none of this made a
//! difference (1.2x to 1.4x). On a later host (110 ns close, 440 to 490 ns
//! far), all four variants (once a value, once a line, with or without the
//! store at the last value seen, and without the producer's look-ahead)
//! measured 0.84x to 1.03x rtrb's in alternated runs, in both placements.
//!
//! The consumer hands back every slot it has emptied, at once:
//!
//! - when it takes the last value it has seen in the ring;
//! - when it finds fewer values than it asked for (`pop` on an empty ring,
//!   a `read_chunk` of more than it has seen);
//! - when it counts the values (`len`, `is_empty`), and when a read chunk
//!   goes;
//! - when it is dropped.
//!
//! So a consumer that waits for values, whichever way it waits, or that has
//! taken every value it has seen, holds no slot. A producer finds the ring
//! full only while it holds at least the capacity less a line's worth of
//! values, so a `push` never waits on a consumer that keeps taking values.
//! Only a consumer that has taken some values, left others it has seen in
//! the ring, and then calls nothing on it holds slots: up to a line's worth
//! less one, until its next call. (A consumer that calls `len` or
//! `is_empty` before each `pop` stores the head once a value, as on smaller
//! rings.)
//!
//! # Prefetching the producer's next lines
//!
//! On rings of at least 16 cache lines, a push asks (with `prefetchw`, where
//! the CPU has it) for the line two lines ahead of the tail, when its limit
//! shows that line free. The producer then writes into lines it already
//! owns, stays ahead of the consumer, and the ring does not settle near
//! empty, where every value costs a transfer each way (see
//! `Producer::prefetch_ahead` for what was measured). It is a hint: it
//! changes no value and no ordering above.
//!
//! # Examples
//!
//! ```
//! use corelane::lane::typed::ring;
//!
//! let (mut producer, mut consumer) = ring(2);
//!
//! let sender = std::thread::spawn(move || {
//!     for n in 0..100u32 {
//!         let mut value = n;
//!         while let Err(full) = producer.push(value) {
//!             value = full.into_inner();
//!             std::thread::yield_now();
//!         }
//!     }
//! });
//!
//! let mut expected = 0;
//! while expected < 100 {
//!     match consumer.pop() {
//!         Some(n) => {
//!             assert_eq!(n, expected);
//!             expected += 1;
//!         }
//!         None => std::thread::yield_now(),
//!     }
//! }
//! sender.join().unwrap();
//! ```

use std::fmt;
use std::iter;
use std::mem::{self, MaybeUninit};
use std::ptr::NonNull;

use super::aligned::AlignedArray;
use super::prefetch::{can_prefetch_write, prefetch_write};
use super::Full;
use crate::sync::{Arc, AtomicBool, AtomicUsize, CachePadded, Ordering, UnsafeCell};

/// The largest capacity: `isize::MAX`, what a `Vec` of one-byte values
/// allows, and the same for every `T` (zero-sized ones included).
const MAX_CAPACITY: usize = usize::MAX / 2;

/// Makes a ring that holds up to `capacity` values and returns its two
/// halves.
///
/// The ring's memory is freed when both halves have been dropped, and every
/// value still in it is dropped then. A ring of fewer than 16 cache lines
/// of values takes two lines (128 bytes) more than its capacity needs (see
/// "Spare slots" in the module doc).
///
/// # Panics
///
/// Panics if `capacity` is 0 or larger than `usize::MAX / 2`, or if the
/// slots cannot be allocated.
///
/// # Examples
///
/// ```
/// use corelane::lane::typed::ring;
///
/// let (mut producer, mut consumer) = ring::<u64>(3);
/// assert_eq!(producer.slots(), 3);
///
/// producer.push(7).unwrap();
/// assert_eq!(consumer.len(), 1);
/// assert_eq!(consumer.pop(), Some(7));
/// ```
pub fn ring<T: Send>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    assert!(capacity >= 1, "lane capacity must be at least 1");
    assert!(
        capacity <= MAX_CAPACITY,
        "lane capacity {capacity} is above the limit of {MAX_CAPACITY}"
    );

    let ring = Arc::new(Ring::new(slots_for::<T>(capacity)));
    let slots = Slots::of(&ring);
    let producer = Producer {
        ring: Arc::clone(&ring),
        slots,
        capacity,
        tail: 0,
        wrap_at: slots.len,
        limit: capacity,
        look_ahead: look_ahead::<T>(capacity),
    };
    let consumer = Consumer {
        ring,
        slots,
        capacity,
        head: 0,
        wrap_at: slots.len,
        cached_tail: 0,
        released: 0,
        release_every: release_every::<T>(capacity),
    };
    (producer, consumer)
}

/// How many slots a ring of `capacity` values of `T` has: the capacity,
/// and on rings of fewer than 16 lines two lines' worth of spare slots
/// more (see "Spare slots" in the module doc). Under loom, one spare slot
/// on every ring, so that the models' few steps still cross the end of
/// the slots, with counts that run a slot ahead of the slot indices.
fn slots_for<T>(capacity: usize) -> usize {
    capacity.saturating_add(spare_slots::<T>(capacity))
}

#[cfg(not(loom))]
fn spare_slots<T>(capacity: usize) -> usize {
    let size = mem::size_of::<T>();
    // The ring's own size, not `spans_many_lines`: that one also asks for
    // values of at most a line (for the look-ahead and the release), and
    // would give a large ring of 65- to 127-byte values spare slots too.
    if size == 0 || size >= 2 * LINE || capacity.saturating_mul(size) >= 16 * LINE {
        return 0;
    }
    (2 * LINE).div_ceil(size)
}

#[cfg(loom)]
fn spare_slots<T>(_capacity: usize) -> usize {
    1
}

/// The producer's look-ahead, in slots, for a ring of `capacity` slots of
/// `T`: two cache lines, on rings of at least 16 lines of values small
/// enough to share lines; 0 (none) otherwise, or where the CPU has no
/// `prefetchw`.
fn look_ahead<T>(capacity: usize) -> usize {
    if !can_prefetch_write() {
        return 0;
    }
    lines_look_ahead::<T>(capacity)
}

/// As [`look_ahead`], whatever the CPU has.
fn lines_look_ahead<T>(capacity: usize) -> usize {
    if !spans_many_lines::<T>(capacity) {
        return 0;
    }
    2 * LINE / mem::size_of::<T>()
}

/// Bytes in a cache line, for the producer's look-ahead and the consumer's
/// release.
const LINE: usize = 64;

/// Whether a ring of `capacity` slots of `T` takes at least 16 cache lines,
/// with values small enough to share lines (and not zero-sized).
fn spans_many_lines<T>(capacity: usize) -> bool {
    let size = mem::size_of::<T>();
    size != 0 && size <= LINE && capacity.saturating_mul(size) >= 16 * LINE
}

/// How many values the consumer takes before it hands their slots back to
/// the producer with one store of the head: a cache line's worth, on rings
/// of at least 16 lines; 1 (each at once) otherwise. See "Handing slots
/// back" in the module doc.
#[cfg(not(loom))]
fn release_every<T>(capacity: usize) -> usize {
    if !spans_many_lines::<T>(capacity) {
        return 1;
    }
    LINE / mem::size_of::<T>()
}

/// Under loom, every ring of two slots or more hands them back in twos, so
/// that the models, whose rings hold a few values, check the handing back
/// that large rings do.
#[cfg(loom)]
fn release_every<T>(capacity: usize) -> usize {
    capacity.min(2)
}

/// One slot: a value, or nothing.
type Slot<T> = UnsafeCell<MaybeUninit<T>>;

/// The state both halves share, freed by whichever half is dropped last.
struct Ring<T> {
    /// Values the consumer has taken so far, wrapping at `usize::MAX`.
    /// Stored only by the consumer.
    head: CachePadded<AtomicUsize>,
    /// Values the producer has published so far, wrapping at `usize::MAX`.
    /// Stored only by the producer.
    tail: CachePadded<AtomicUsize>,
    /// Set when either half is dropped.
    abandoned: AtomicBool,
    /// The consumer's slot index of `head`, stored when the consumer is
    /// dropped: where the values left in the ring start, for the drop of the
    /// ring itself.
    head_index: AtomicUsize,
    /// The slots (the capacity and any spare ones: see [`slots_for`]),
    /// from a 128-byte boundary (see
    /// [`AlignedArray`] for what that is worth). The `tail - head` slots
    /// from the consumer's slot index on (wrapping) hold values; the others
    /// are uninitialised.
    slots: AlignedArray<Slot<T>>,
}

// SAFETY: a `Ring` is reached only through one `Producer` and one
// `Consumer`. The producer touches only free slots and the consumer only
// filled ones, and a slot passes from one to the other only through the
// Release store and Acquire load of head or tail, so no slot is ever
// accessed from two threads at once. Values are created on one thread and
// dropped on another, hence `T: Send`; they are never shared, so `T` need
// not be `Sync`.
unsafe impl<T: Send> Sync for Ring<T> {}

impl<T> Ring<T> {
    fn new(slots: usize) -> Self {
        Self {
            head: CachePadded(AtomicUsize::new(0)),
            tail: CachePadded(AtomicUsize::new(0)),
            abandoned: AtomicBool::new(false),
            head_index: AtomicUsize::new(0),
            // A failed allocation panics as the doc of `ring` says, rather
            // than aborting the process.
            slots: AlignedArray::new(slots, || UnsafeCell::new(MaybeUninit::uninit()))
                .unwrap_or_else(|error| panic!("cannot allocate a lane of {slots} slots: {error}")),
        }
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        if !mem::needs_drop::<T>() {
            return;
        }

        // Both halves are gone. The drop of the last `Arc` orders every store
        // either half made before this point, so relaxed loads see the final
        // head, tail and head index.
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Relaxed);
        let mut left = LeftValues {
            slots: Slots::of(self),
            index: self.head_index.load(Ordering::Relaxed),
            count: tail.wrapping_sub(head),
        };
        left.drop_each();
    }
}

/// The values still in a ring whose halves are both gone: `count` of them,
/// from the slot at `index` on (wrapping).
///
/// If the drop of one of them panics, this is dropped as the panic unwinds
/// and drops the others, as a `Vec` would (a second panic aborts).
struct LeftValues<T> {
    slots: Slots<T>,
    index: usize,
    count: usize,
}

impl<T> LeftValues<T> {
    fn drop_each(&mut self) {
        while self.count > 0 {
            // Counted first: if the value's drop panics, it is not dropped a
            // second time.
            let index = self.index;
            self.index = self.slots.next(index);
            self.count -= 1;
            // SAFETY: the `count` slots from `index` on hold values that were
            // published and never taken (the consumer's last slot index and
            // `tail - head` when the ring's drop made this), and with both
            // halves gone this is the only access to them.
            drop(unsafe { self.slots.take(index) });
        }
    }
}

impl<T> Drop for LeftValues<T> {
    fn drop(&mut self) {
        // Values are left only if one's drop panicked in `drop_each`.
        self.drop_each();
    }
}

/// The slots as one half sees them: their address and number, copied out
/// of the [`Ring`] so that the hot paths keep them in registers.
///
/// The address stays valid while the ring lives; each half that holds a
/// `Slots` also holds the ring's `Arc`.
struct Slots<T> {
    base: NonNull<Slot<T>>,
    /// How many slots there are: the ring's capacity, and its spare slots.
    len: usize,
}

impl<T> Clone for Slots<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Slots<T> {}

impl<T> Slots<T> {
    fn of(ring: &Ring<T>) -> Self {
        Slots {
            base: NonNull::from(&*ring.slots).cast(),
            len: ring.slots.len(),
        }
    }

    /// The slot index after `index`, back to 0 at the end.
    #[inline]
    fn next(&self, index: usize) -> usize {
        let next = index + 1;
        if next == self.len {
            0
        } else {
            next
        }
    }

    /// The slot index `count` slots after `index` (`count` at most the
    /// number of slots), wrapping at the end.
    #[inline]
    fn add(&self, index: usize, count: usize) -> usize {
        debug_assert!(
            index < self.len && count <= self.len,
            "index {index} or count {count} out of range for {} slots",
            self.len
        );
        let room = self.len - index;
        if count >= room {
            count - room
        } else {
            index + count
        }
    }

    /// The slot index of `count`, for a half whose index next returns to 0
    /// at count `wrap_at` (so `wrap_at - len <= count < wrap_at`,
    /// wrapping).
    #[inline]
    fn index_at(&self, count: usize, wrap_at: usize) -> usize {
        let index = count.wrapping_add(self.len).wrapping_sub(wrap_at);
        debug_assert!(
            index < self.len,
            "count {count} outside the lap ending at {wrap_at}"
        );
        index
    }

    /// `count + 1`, and whether that count starts a lap (so that the half's
    /// `wrap_at` moves on by the number of slots): one value pushed or taken.
    ///
    /// The caller moves `wrap_at` on itself, after its store of the shared
    /// count (see "Store order" in the module doc), and only once a lap: a
    /// `wrap_at` computed on every step was written back on every step.
    #[inline]
    fn step(&self, count: usize, wrap_at: usize) -> (usize, bool) {
        let next = count.wrapping_add(1);
        (next, next == wrap_at)
    }

    /// `wrap_at` for a half whose count moved on to `count`, at most one
    /// capacity (fewer than the slots) past the lap that ends at `wrap_at`.
    #[inline]
    fn wrap_after(&self, count: usize, wrap_at: usize) -> usize {
        // `count + len - wrap_at` is below `len` (the number of slots) while
        // `count` is in the lap, and at most twice `len` once it has left it
        // (no overflow: spare slots come only on small rings, so `len` is at
        // most `usize::MAX / 2`).
        if count.wrapping_add(self.len).wrapping_sub(wrap_at) >= self.len {
            wrap_at.wrapping_add(self.len)
        } else {
            wrap_at
        }
    }

    #[inline]
    fn slot(&self, index: usize) -> &Slot<T> {
        debug_assert!(index < self.len, "slot {index} out of range");
        // SAFETY: every index handed here is below `len`, the length of
        // the slice `base` points into, and that slice lives as long as the
        // ring, which outlives `self` (see the type's doc).
        unsafe { self.base.add(index).as_ref() }
    }

    /// Moves `value` into the slot at `index`.
    ///
    /// # Safety
    ///
    /// The caller must be the producer and the slot must be free: not
    /// between the consumer's head and the tail.
    #[inline]
    unsafe fn write(&self, index: usize, value: T) {
        self.slot(index).with_mut(|slot| {
            // SAFETY: the slot is free (caller's contract), so the consumer
            // does not read it and nothing in it needs dropping.
            unsafe { slot.write(MaybeUninit::new(value)) }
        });
    }

    /// Moves the value out of the slot at `index`, leaving the slot
    /// logically empty.
    ///
    /// # Safety
    ///
    /// The slot must hold a value that the caller owns and will not take
    /// again: the consumer's own, between the head and the tail it last
    /// loaded, or one the producer wrote and has not published.
    #[inline]
    unsafe fn take(&self, index: usize) -> T {
        self.slot(index).with(|slot| {
            // SAFETY: the slot holds an initialised value owned by the caller
            // (caller's contract), and it is read only this once.
            unsafe { slot.read().assume_init() }
        })
    }

    /// Lends the value in the slot at `index`.
    ///
    /// # Safety
    ///
    /// As for [`Slots::take`], and the slot must not be written, taken or
    /// released while the reference lives.
    #[inline]
    unsafe fn get(&self, index: usize) -> &T {
        self.slot(index).with(|slot| {
            // SAFETY: the slot holds an initialised value that stays put while
            // the reference lives (caller's contract).
            unsafe { (*slot).assume_init_ref() }
        })
    }
}

/// The half of a ring that moves values in.
///
/// Made by [`ring`]. It can be sent to another thread; all of its methods
/// that change the ring take `&mut self`.
pub struct Producer<T> {
    ring: Arc<Ring<T>>,
    slots: Slots<T>,
    /// The most values the ring holds (its slots may be more: see "Spare
    /// slots" in the module doc).
    capacity: usize,
    /// Values published so far: the tail as last stored. The producer is
    /// the tail's only writer, so this copy is always current and the shared
    /// one is never loaded.
    tail: usize,
    /// The tail at which the slot index of the tail next returns to 0 (see
    /// "Counts and slot indices").
    wrap_at: usize,
    /// The head as last loaded plus the capacity: the tail may grow up to
    /// it without a look at the consumer's head. The consumer may have
    /// moved on since, so it can only under-count free slots.
    limit: usize,
    /// How many slots ahead of the tail `push` asks for a line to write
    /// (see `prefetch_ahead`); 0 where that is not done.
    look_ahead: usize,
}

// SAFETY: a producer owns its `Arc` of the ring and uses `slots` (a pointer
// into that ring) only as the ring's protocol allows, from whichever thread
// holds it; values move through it to the consumer's thread, hence
// `T: Send`, as for `Arc<Ring<T>>`.
unsafe impl<T: Send> Send for Producer<T> {}
// SAFETY: `&Producer` only reads the producer's own fields and loads the
// shared atomics; it never touches a slot.
unsafe impl<T: Send> Sync for Producer<T> {}

impl<T> Producer<T> {
    /// Moves `value` into the ring, or hands it back if the ring is full.
    ///
    /// # Errors
    ///
    /// Returns `Err(Full(value))` if no slot is free: each holds a value
    /// the consumer has not taken yet, or one it has taken and not yet
    /// handed back (see "Handing slots back" in the module doc).
    ///
    /// # Examples
    ///
    /// ```
    /// use corelane::lane::{typed::ring, Full};
    ///
    /// let (mut producer, _consumer) = ring(1);
    /// assert_eq!(producer.push("first"), Ok(()));
    /// assert_eq!(producer.push("second"), Err(Full("second")));
    /// ```
    #[inline]
    pub fn push(&mut self, value: T) -> Result<(), Full<T>> {
        if self.free_slots(1) == 0 {
            return Err(Full(value));
        }

        let index = self.tail_index();
        // SAFETY: `free_slots` found at least one free slot, and the slot at
        // the tail's index is the first of them.
        unsafe { self.slots.write(index, value) };
        self.prefetch_ahead(index);
        let (tail, lap) = self.slots.step(self.tail, self.wrap_at);
        self.publish(tail);
        if lap {
            self.wrap_at = self.wrap_at.wrapping_add(self.slots.len);
        }
        Ok(())
    }

    /// Asks for the line `look_ahead` slots after `index` to be made this
    /// core's to write, if it is free space as far as `limit` shows (never
    /// a line of values the consumer has still to read).
    ///
    /// Without it, each line the producer starts is fetched when its first
    /// value is written, and on a ring that runs near empty the consumer,
    /// which reads each value as it lands, gets ahead of a producer slowed
    /// by those fetches and keeps the ring near empty: measured, 0.34x to
    /// 0.54x rtrb's throughput with about half the samples near empty, in
    /// runs where the look-ahead gave 0.8x to 1.1x (`cargo bench --bench
    /// lanes`).
    #[inline]
    fn prefetch_ahead(&self, index: usize) {
        if let Some(ahead) = self.look_ahead_index(index) {
            prefetch_write(self.slots.base.as_ptr().wrapping_add(ahead));
        }
    }

    /// The slot index whose line `prefetch_ahead` asks for after a push to
    /// the slot at `index` (the tail's, not yet stepped), if it asks.
    ///
    /// The `limit - tail` slots from `index` on were free before the push,
    /// and they are more than twice the look-ahead. The slot one look-ahead
    /// on starts at most two lines past `index`'s, so its line ends before
    /// the last of those free slots, and at least two lines less a value
    /// past it, so the line starts after the slot before `index`: whatever
    /// the slots' alignment, the line holds free slots and at most the end
    /// of the value just written (values of 43 to 62 bytes), a line this
    /// core has just written and owns already.
    #[inline]
    fn look_ahead_index(&self, index: usize) -> Option<usize> {
        if self.look_ahead == 0 || self.limit.wrapping_sub(self.tail) <= 2 * self.look_ahead {
            return None;
        }
        Some(self.slots.add(index, self.look_ahead))
    }

    /// Claims up to `count` free slots, to be filled and then published
    /// together.
    ///
    /// The chunk holds `count` slots, or fewer if fewer are free. Nothing is
    /// visible to the consumer until [`WriteChunk::commit`]; values written
    /// into a chunk that is dropped uncommitted are dropped with it.
    ///
    /// # Errors
    ///
    /// Returns `Err(Full(()))` if `count` is not zero and no slot is free.
    ///
    /// # Examples
    ///
    /// ```
    /// use corelane::lane::typed::ring;
    ///
    /// let (mut producer, mut consumer) = ring::<String>(4);
    ///
    /// let mut chunk = producer.write_chunk(3).unwrap();
    /// assert_eq!(chunk.len(), 3);
    /// chunk.push("a".to_owned()).unwrap();
    /// chunk.push("b".to_owned()).unwrap();
    /// // Publishes "a"; "b" was written but not committed, so it is dropped.
    /// chunk.commit(1);
    ///
    /// assert_eq!(consumer.pop().as_deref(), Some("a"));
    /// assert_eq!(consumer.pop(), None);
    /// ```
    #[inline]
    pub fn write_chunk(&mut self, count: usize) -> Result<WriteChunk<'_, T>, Full<()>> {
        let free = self.free_slots(count);
        if free == 0 && count > 0 {
            return Err(Full(()));
        }

        Ok(WriteChunk {
            len: free.min(count),
            filled: 0,
            next_index: self.tail_index(),
            producer: self,
        })
    }

    /// Moves values from `values` into the ring until it runs out of values
    /// or the ring runs out of free slots, publishes them with one store, and
    /// returns how many it moved.
    ///
    /// No value is pulled from the iterator that does not fit, so passing
    /// `&mut iter` leaves the values that did not fit in `iter`.
    ///
    /// # Examples
    ///
    /// ```
    /// use corelane::lane::typed::ring;
    ///
    /// let (mut producer, mut consumer) = ring(3);
    /// let mut values = 1..=5;
    /// assert_eq!(producer.push_batch(&mut values), 3);
    /// assert_eq!(values.next(), Some(4));
    ///
    /// let mut seen = Vec::new();
    /// consumer.pop_batch(usize::MAX, |n| seen.push(n));
    /// assert_eq!(seen, [1, 2, 3]);
    /// ```
    pub fn push_batch<I: IntoIterator<Item = T>>(&mut self, values: I) -> usize {
        let Ok(mut chunk) = self.write_chunk(usize::MAX) else {
            return 0;
        };
        let count = chunk.fill_from(values);
        chunk.commit(count);
        count
    }

    /// Returns how many free slots the ring has now.
    ///
    /// The consumer may free more at any moment, and on large rings hands
    /// slots back a line's worth at a time (see "Handing slots back" in the
    /// module doc), so the count is a lower bound: that many pushes in a
    /// row will succeed.
    pub fn slots(&self) -> usize {
        // Only a count: nothing is written on the strength of it, so Relaxed
        // is enough. `push` loads the head again with Acquire before it uses
        // a slot.
        let head = self.ring.head.load(Ordering::Relaxed);
        self.capacity - self.tail.wrapping_sub(head)
    }

    /// Returns `true` if the ring has no free slot now, as
    /// [`slots`](Producer::slots) counts them.
    pub fn is_full(&self) -> bool {
        self.slots() == 0
    }

    /// Returns the number of values the ring can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Returns `true` if the consumer has been dropped, so that nothing
    /// pushed from now on will be read.
    ///
    /// # Examples
    ///
    /// ```
    /// use corelane::lane::typed::ring;
    ///
    /// let (producer, consumer) = ring::<u8>(1);
    /// assert!(!producer.is_abandoned());
    /// drop(consumer);
    /// assert!(producer.is_abandoned());
    /// ```
    pub fn is_abandoned(&self) -> bool {
        // Pairs with the Release store in the consumer's `drop`.
        self.ring.abandoned.load(Ordering::Acquire)
    }

    /// Counts the free slots, loading the shared head again only if the
    /// cached limit shows fewer than `wanted` (and fewer than the capacity,
    /// the most there can be).
    #[inline]
    fn free_slots(&mut self, wanted: usize) -> usize {
        let free = self.limit.wrapping_sub(self.tail);
        if free >= wanted || free == self.capacity {
            return free;
        }

        // Pairs with the Release store of head in `Consumer::release`: the
        // consumer's moves out of the slots it freed happen before the
        // producer writes them again.
        let head = self.ring.head.load(Ordering::Acquire);
        self.limit = head.wrapping_add(self.capacity);
        self.limit.wrapping_sub(self.tail)
    }

    /// The slot index of the tail: where the next value goes.
    #[inline]
    fn tail_index(&self) -> usize {
        self.slots.index_at(self.tail, self.wrap_at)
    }

    /// Makes every value written before `tail` visible to the consumer.
    #[inline]
    fn publish(&mut self, tail: usize) {
        // Pairs with the Acquire load of tail in `Consumer::available`: the
        // values written before this store are whole when the consumer reads
        // them.
        self.ring.tail.store(tail, Ordering::Release);
        self.tail = tail;
    }
}

impl<T> Drop for Producer<T> {
    fn drop(&mut self) {
        // Pairs with the Acquire load in `Consumer::is_abandoned`, which so
        // sees every value this producer published.
        self.ring.abandoned.store(true, Ordering::Release);
    }
}

impl<T> fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("capacity", &self.capacity())
            .field("tail", &self.tail)
            .field("limit", &self.limit)
            .finish()
    }
}

/// The half of a ring that moves values out.
///
/// Made by [`ring`]. It can be sent to another thread; all of its methods
/// that change the ring take `&mut self`.
pub struct Consumer<T> {
    ring: Arc<Ring<T>>,
    slots: Slots<T>,
    /// The most values the ring holds.
    capacity: usize,
    /// Values taken so far: the head as last stored. The consumer is the
    /// head's only writer, so this copy is always current and the shared one
    /// is never loaded (see "Counts and slot indices" for why it is kept).
    head: usize,
    /// The head at which the slot index of the head next returns to 0 (see
    /// "Counts and slot indices").
    wrap_at: usize,
    /// The tail as last loaded; the producer may have moved it on since.
    cached_tail: usize,
    /// The head as last stored by `release`: the slots before it are the
    /// producer's again. It lags `head` by fewer than `release_every`
    /// values, and catches up whenever the consumer takes the last value it
    /// has seen, finds fewer values than it asked for, a read chunk goes, or
    /// the consumer is dropped. `len` (only `&self`) may store the head
    /// without moving this on, so the shared head may be past it, never
    /// behind.
    released: usize,
    /// Values taken between two stores of the head (see [`release_every`]).
    release_every: usize,
}

// SAFETY: as for `Producer`: the consumer owns its `Arc` of the ring and
// uses `slots` only as the protocol allows; values reach its thread from
// the producer's, hence `T: Send`.
unsafe impl<T: Send> Send for Consumer<T> {}
// SAFETY: `&Consumer` only reads the consumer's own fields and loads the
// shared atomics; it never touches a slot.
unsafe impl<T: Send> Sync for Consumer<T> {}

impl<T> Consumer<T> {
    /// Moves the oldest value out of the ring, or returns `None` if the ring
    /// is empty.
    ///
    /// # Examples
    ///
    /// ```
    /// use corelane::lane::typed::ring;
    ///
    /// let (mut producer, mut consumer) = ring(2);
    /// producer.push('x').unwrap();
    /// assert_eq!(consumer.pop(), Some('x'));
    /// assert_eq!(consumer.pop(), None);
    /// ```
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        if self.available(1) == 0 {
            return None;
        }

        // SAFETY: `available` found at least one published value, and the
        // one at the head's index is the oldest of them.
        let value = unsafe { self.slots.take(self.head_index()) };
        self.took_one();
        Some(value)
    }

    /// Lends up to `count` of the oldest values; the chunk holds fewer if
    /// fewer are available, and may be empty.
    ///
    /// The values can be looked at ([`ReadChunk::get`], [`ReadChunk::iter`]),
    /// moved out in order (the chunk is an [`Iterator`]), or dropped in place
    /// ([`ReadChunk::commit`]). When the chunk goes, the slots of every value
    /// moved out or dropped are released (see [`ReadChunk`] for when some go
    /// earlier); the values left in it stay in the ring, to be read again.
    ///
    /// # Examples
    ///
    /// ```
    /// use corelane::lane::typed::ring;
    ///
    /// let (mut producer, mut consumer) = ring(4);
    /// producer.push_batch([10, 20, 30]);
    ///
    /// let mut chunk = consumer.read_chunk(2);
    /// assert_eq!(chunk.len(), 2);
    /// assert_eq!(chunk.get(1), Some(&20));
    /// assert_eq!(chunk.next(), Some(10));
    /// drop(chunk);
    ///
    /// // 10 was moved out; 20 and 30 are still there.
    /// assert_eq!(consumer.len(), 2);
    /// consumer.read_chunk(1).commit_all(); // drops 20
    /// assert_eq!(consumer.pop(), Some(30));
    /// ```
    #[inline]
    pub fn read_chunk(&mut self, count: usize) -> ReadChunk<'_, T> {
        let len = self.available(count).min(count);
        ReadChunk {
            next_index: self.head_index(),
            consumer: self,
            len,
            taken: 0,
            counted: 0,
        }
    }

    /// Moves up to `max` of the oldest values out of the ring, oldest first,
    /// handing each to `receive`, releases their slots with one store, and
    /// returns how many it moved.
    ///
    /// If `receive` panics, the values it was given are still released and
    /// the rest stay in the ring.
    ///
    /// # Examples
    ///
    /// ```
    /// use corelane::lane::typed::ring;
    ///
    /// let (mut producer, mut consumer) = ring(8);
    /// producer.push_batch(1..=5);
    ///
    /// let mut sum = 0;
    /// assert_eq!(consumer.pop_batch(4, |n| sum += n), 4);
    /// assert_eq!(sum, 1 + 2 + 3 + 4);
    /// assert_eq!(consumer.len(), 1);
    /// ```
    #[inline]
    pub fn pop_batch<F: FnMut(T)>(&mut self, max: usize, receive: F) -> usize {
        let chunk = self.read_chunk(max);
        let count = chunk.len();
        chunk.for_each(receive);
        count
    }

    /// Returns how many values the ring holds now.
    ///
    /// The producer may add more at any moment, so the count is a lower
    /// bound: that many pops in a row will succeed.
    ///
    /// It also hands back to the producer the slots of every value taken so
    /// far (see "Handing slots back" in the module doc): a consumer that
    /// waits by polling `len()` or `is_empty()` never calls `pop` on an
    /// empty ring, and would otherwise hold up to a line's worth of slots
    /// for as long as it waits.
    pub fn len(&self) -> usize {
        // Only `&self`, so `released` cannot move on: the shared head, which
        // only this consumer stores, says whether it lags. Every `&Consumer`
        // sees the same `head`, so any store here stores the current one.
        if self.ring.head.load(Ordering::Relaxed) != self.head {
            // Pairs with the Acquire load of head in `Producer::free_slots`,
            // as in `release`.
            self.ring.head.store(self.head, Ordering::Release);
        }
        // Only a count: nothing is read on the strength of it, so Relaxed is
        // enough. `pop` loads the tail again with Acquire before it reads a
        // slot.
        let tail = self.ring.tail.load(Ordering::Relaxed);
        tail.wrapping_sub(self.head)
    }

    /// Returns `true` if the ring holds no value now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns the number of values the ring can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Returns `true` if the producer has been dropped, so that no more
    /// values will come.
    ///
    /// Every value the producer published is visible once this returns
    /// `true`: popping until `None` after it drains the ring for good.
    ///
    /// # Examples
    ///
    /// ```
    /// use corelane::lane::typed::ring;
    ///
    /// let (mut producer, mut consumer) = ring(4);
    /// producer.push(1).unwrap();
    /// drop(producer);
    ///
    /// assert!(consumer.is_abandoned());
    /// assert_eq!(consumer.pop(), Some(1));
    /// assert_eq!(consumer.pop(), None);
    /// ```
    pub fn is_abandoned(&self) -> bool {
        // Pairs with the Release store in the producer's `drop`.
        self.ring.abandoned.load(Ordering::Acquire)
    }

    /// Counts the available values, loading the shared tail again only if
    /// the cached one shows fewer than `wanted` (and fewer than the
    /// capacity, the most there can be).
    #[inline]
    fn available(&mut self, wanted: usize) -> usize {
        let head = self.head;
        let available = self.cached_tail.wrapping_sub(head);
        if available >= wanted || available == self.capacity {
            return available;
        }

        // Fewer values than wanted: the consumer may be about to wait for
        // the producer, so every slot it has emptied goes back first.
        if self.released != head {
            self.release();
        }
        // Pairs with the Release store of tail in `Producer::publish`: the
        // values in the slots before the tail are whole when they are read.
        self.cached_tail = self.ring.tail.load(Ordering::Acquire);
        self.cached_tail.wrapping_sub(head)
    }

    /// The slot index of the head: where the oldest value is.
    #[inline]
    fn head_index(&self) -> usize {
        self.slots.index_at(self.head, self.wrap_at)
    }

    /// Counts the oldest value as taken, and hands the slots taken since
    /// the last store of the head back to the producer once they are
    /// `release_every`, or once the consumer has taken every value it has
    /// seen: it may take no more for a long time (it may wait on something
    /// else than the ring), and the next `pop` would store the head then
    /// anyway, before it loads the tail again.
    #[inline]
    fn took_one(&mut self) {
        let (head, lap) = self.slots.step(self.head, self.wrap_at);
        if head.wrapping_sub(self.released) >= self.release_every || head == self.cached_tail {
            self.release_to(head);
        }
        self.head = head;
        if lap {
            self.wrap_at = self.wrap_at.wrapping_add(self.slots.len);
        }
    }

    /// Hands the slots of every value taken so far back to the producer.
    #[inline]
    fn release(&mut self) {
        self.release_to(self.head);
    }

    /// Hands the slots of every value before `head` back to the producer.
    #[inline]
    fn release_to(&mut self, head: usize) {
        // Pairs with the Acquire load of head in `Producer::free_slots`: the
        // values moved out of these slots are gone before the producer
        // writes the slots again.
        self.ring.head.store(head, Ordering::Release);
        self.released = head;
    }
}

impl<T> Drop for Consumer<T> {
    fn drop(&mut self) {
        // The ring's own drop counts the values left from the shared head,
        // so it must be current.
        self.release();
        // Read by the ring's own drop, which the last `Arc`'s drop orders
        // after this store.
        self.ring
            .head_index
            .store(self.head_index(), Ordering::Relaxed);
        // Pairs with the Acquire load in `Producer::is_abandoned`.
        self.ring.abandoned.store(true, Ordering::Release);
    }
}

impl<T> fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("capacity", &self.capacity())
            .field("head", &self.head)
            .field("released", &self.released)
            .field("cached_tail", &self.cached_tail)
            .finish()
    }
}

/// Free slots claimed by [`Producer::write_chunk`], filled front to back
/// and published by [`WriteChunk::commit`].
///
/// Values written into the chunk and not committed are dropped when the
/// chunk is.
pub struct WriteChunk<'a, T> {
    producer: &'a mut Producer<T>,
    /// Number of slots claimed, starting at the producer's tail.
    len: usize,
    /// Number of slots written so far, from the start of the chunk.
    filled: usize,
    /// Slot index of the next write.
    next_index: usize,
}

impl<T> WriteChunk<'_, T> {
    /// Returns the number of slots claimed.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Returns `true` if the chunk has no slot at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Returns the number of slots written so far.
    pub fn filled(&self) -> usize {
        self.filled
    }

    /// Moves `value` into the next unwritten slot of the chunk.
    ///
    /// # Errors
    ///
    /// Returns `Err(Full(value))` if every slot of the chunk is written.
    pub fn push(&mut self, value: T) -> Result<(), Full<T>> {
        if self.filled == self.len {
            return Err(Full(value));
        }
        self.write_next(value);
        Ok(())
    }

    /// Moves values from `values` into the unwritten slots of the chunk until
    /// one or the other runs out, and returns how many it moved.
    ///
    /// No value is pulled from the iterator that does not fit.
    pub fn fill_from<I: IntoIterator<Item = T>>(&mut self, values: I) -> usize {
        let mut values = values.into_iter();
        let slots = self.producer.slots;
        let start = self.filled;
        // The unwritten slots are at most two runs, to the end of the slots
        // and then on from the first: within a run the index only counts up.
        while self.filled < self.len {
            let run_end = slots.len.min(self.next_index + (self.len - self.filled));
            while self.next_index < run_end {
                let Some(value) = values.next() else {
                    return self.filled - start;
                };
                // SAFETY: as in `write_next`: a claimed slot, not yet written.
                unsafe { slots.write(self.next_index, value) };
                self.next_index += 1;
                self.filled += 1;
            }
            if self.next_index == slots.len {
                self.next_index = 0;
            }
        }
        self.filled - start
    }

    /// Publishes the first `count` written values with one store, and drops
    /// any written after them.
    ///
    /// # Panics
    ///
    /// Panics if `count` is more than [`filled`](WriteChunk::filled).
    pub fn commit(mut self, count: usize) {
        assert!(
            count <= self.filled,
            "cannot commit {count} values: only {} were written",
            self.filled
        );

        self.discard_after(count);
        if count > 0 {
            let producer = &mut *self.producer;
            let tail = producer.tail.wrapping_add(count);
            let wrap_at = producer.slots.wrap_after(tail, producer.wrap_at);
            producer.publish(tail);
            producer.wrap_at = wrap_at;
        }
        // The published values now belong to the consumer.
        self.filled = 0;
    }

    /// Publishes every written value with one store.
    pub fn commit_filled(self) {
        let count = self.filled;
        self.commit(count);
    }

    #[inline]
    fn write_next(&mut self, value: T) {
        debug_assert!(self.filled < self.len, "chunk of {} is full", self.len);
        let slots = &self.producer.slots;
        // SAFETY: the chunk's slots were free when it was claimed, and the
        // consumer cannot reach them before the producer publishes, which
        // needs the `&mut Producer` this chunk holds.
        unsafe { slots.write(self.next_index, value) };
        self.next_index = slots.next(self.next_index);
        self.filled += 1;
    }

    /// Drops the written values after the first `keep`.
    fn discard_after(&mut self, keep: usize) {
        while self.filled > keep {
            // Counted down first: if a value's drop panics, it is not dropped
            // a second time.
            self.filled -= 1;
            let slots = &self.producer.slots;
            let index = slots.add(self.producer.tail_index(), self.filled);
            // SAFETY: the chunk wrote this slot and has not published it, so
            // the value is the chunk's alone, and `filled` no longer counts it.
            drop(unsafe { slots.take(index) });
        }
    }
}

impl<T> Drop for WriteChunk<'_, T> {
    fn drop(&mut self) {
        self.discard_after(0);
    }
}

impl<T> fmt::Debug for WriteChunk<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteChunk")
            .field("len", &self.len)
            .field("filled", &self.filled)
            .finish()
    }
}

/// Values lent by [`Consumer::read_chunk`], oldest first.
///
/// The chunk is an [`Iterator`] that moves its values out in order. When
/// the chunk goes, the slots of every value moved out or dropped that are
/// not back with the producer yet are released, with one store; the values
/// left in the chunk stay in the ring. A value moved out one at a time
/// (`next`, and so [`commit`](ReadChunk::commit)) is counted as taken at
/// once, as by [`Consumer::pop`], so that a chunk that is forgotten never
/// hands a value out twice, and its slot goes back as `pop`'s would while
/// the chunk lives: at once on small rings, a line's worth at a time on
/// large ones (see "Handing slots back" in the module doc). Values moved
/// out by `fold` or `for_each` (as [`Consumer::pop_batch`] does) go back
/// all together when the chunk goes.
pub struct ReadChunk<'a, T> {
    consumer: &'a mut Consumer<T>,
    /// Number of values lent, starting at the consumer's head.
    len: usize,
    /// Number of values moved out of the front of the chunk so far.
    taken: usize,
    /// Number of those already counted in the consumer's head: `next`
    /// counts each value as it moves the value out, so that a chunk that is
    /// forgotten (`mem::forget`) never hands the same value out again;
    /// `fold` (which cannot be forgotten part way) counts them all in the
    /// chunk's drop.
    counted: usize,
    /// Slot index of the next value to move out.
    next_index: usize,
}

impl<T> ReadChunk<'_, T> {
    /// Returns the number of values still in the chunk.
    pub fn len(&self) -> usize {
        self.len - self.taken
    }

    /// Returns `true` if no value is left in the chunk.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lends the value `index` places after the first one still in the
    /// chunk, if there is one.
    pub fn get(&self, index: usize) -> Option<&T> {
        if index >= self.len() {
            return None;
        }
        // SAFETY: `index` is below `len()`, so the value is one the chunk
        // holds and has not moved out; `&self` keeps it from moving out while
        // the reference lives.
        Some(unsafe { self.value(self.taken + index) })
    }

    /// Lends the values still in the chunk, oldest first.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &T> + DoubleEndedIterator + '_ {
        (self.taken..self.len).map(move |offset| {
            // SAFETY: offsets from `taken` up to `len` are values the chunk
            // holds and has not moved out; the iterator borrows the chunk, so
            // none moves out while it lives.
            unsafe { self.value(offset) }
        })
    }

    /// Drops the first `count` values still in the chunk; their slots are
    /// released with those of the values already moved out.
    ///
    /// # Panics
    ///
    /// Panics if `count` is more than [`len`](ReadChunk::len).
    pub fn commit(mut self, count: usize) {
        assert!(
            count <= self.len(),
            "cannot commit {count} values: only {} are left in the chunk",
            self.len()
        );
        self.by_ref().take(count).for_each(drop);
    }

    /// Drops every value still in the chunk and releases all of its slots.
    pub fn commit_all(self) {
        let count = self.len();
        self.commit(count);
    }

    /// Lends the value at `offset` from the start of the chunk.
    ///
    /// # Safety
    ///
    /// `offset` must be at least `taken` and below `len`, and the value must
    /// not move out while the reference lives.
    #[inline]
    unsafe fn value(&self, offset: usize) -> &T {
        let consumer = &*self.consumer;
        // The head has moved on past the counted values.
        let index = consumer
            .slots
            .add(consumer.head_index(), offset - self.counted);
        // SAFETY: the value at `offset` was published and not yet moved out
        // (caller's contract), so it is at or past the consumer's head, and
        // the producer does not write it before a store of the head passes
        // it, which only moving it out (needing `&mut self`) can bring.
        unsafe { consumer.slots.get(index) }
    }
}

impl<T> Iterator for ReadChunk<'_, T> {
    type Item = T;

    /// Moves the oldest value still in the chunk out.
    fn next(&mut self) -> Option<T> {
        if self.taken == self.len {
            return None;
        }
        let slots = &self.consumer.slots;
        // SAFETY: the value at `taken` was published, is not yet counted in
        // the head and has not moved out; counting it in `taken` right after makes sure it
        // is moved out only this once.
        let value = unsafe { slots.take(self.next_index) };
        self.next_index = slots.next(self.next_index);
        self.taken += 1;
        // Counted at once (see `counted`): the value is out of its slot.
        self.consumer.took_one();
        self.counted += 1;
        Some(value)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len(), Some(self.len()))
    }

    /// Moves every value left out, run by run (at most two: to the end of
    /// the slots, then on from the first), so that within a run the index
    /// only counts up. Counted in `taken` before `step` sees it, as in
    /// `next`, so that a panic in `step` releases it with the others.
    fn fold<B, F: FnMut(B, T) -> B>(mut self, init: B, mut step: F) -> B {
        let slots = self.consumer.slots;
        let mut acc = init;
        while self.taken < self.len {
            let run_end = slots.len.min(self.next_index + (self.len - self.taken));
            while self.next_index < run_end {
                // SAFETY: as in `next`.
                let value = unsafe { slots.take(self.next_index) };
                self.next_index += 1;
                self.taken += 1;
                acc = step(acc, value);
            }
            if self.next_index == slots.len {
                self.next_index = 0;
            }
        }
        acc
    }
}

impl<T> ExactSizeIterator for ReadChunk<'_, T> {}

impl<T> iter::FusedIterator for ReadChunk<'_, T> {}

impl<T> Drop for ReadChunk<'_, T> {
    fn drop(&mut self) {
        let consumer = &mut *self.consumer;
        let head = consumer.head.wrapping_add(self.taken - self.counted);
        // The shared head first, then the consumer's own fields (see "Store
        // order" in the module doc).
        if consumer.released != head {
            consumer.release_to(head);
        }
        if head != consumer.head {
            consumer.wrap_at = consumer.slots.wrap_after(head, consumer.wrap_at);
            consumer.head = head;
        }
    }
}

impl<T> fmt::Debug for ReadChunk<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadChunk")
            .field("len", &self.len)
            .field("taken", &self.taken)
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A ring whose counts start at `start` instead of 0 (its slot indices
    /// still start at 0), so that a test reaches the wrap of the counts at
    /// `usize::MAX` without 2^64 pushes.
    fn ring_from<T: Send>(capacity: usize, start: usize) -> (Producer<T>, Consumer<T>) {
        let (mut producer, mut consumer) = ring(capacity);
        producer.ring.head.store(start, Ordering::Relaxed);
        producer.ring.tail.store(start, Ordering::Relaxed);
        producer.tail = start;
        producer.limit = start.wrapping_add(capacity);
        producer.wrap_at = start.wrapping_add(producer.slots.len);
        consumer.head = start;
        consumer.released = start;
        consumer.cached_tail = start;
        consumer.wrap_at = start.wrapping_add(consumer.slots.len);
        (producer, consumer)
    }

    #[test]
    fn both_halves_see_the_slots_from_a_128_byte_boundary() {
        fn check<T: Send>(capacity: usize) {
            let (producer, consumer) = ring::<T>(capacity);
            let base = producer.slots.base.as_ptr() as usize;
            assert_eq!(
                base % 128,
                0,
                "{capacity} slots of {}",
                std::any::type_name::<T>()
            );
            assert_eq!(consumer.slots.base.as_ptr() as usize, base);
            assert_eq!(producer.slots.len, slots_for::<T>(capacity));
            assert_eq!(consumer.slots.len, slots_for::<T>(capacity));
        }
        // Small allocations in between move the allocator's next address.
        for capacity in [1, 2, 15, 16, 17, 4096] {
            let _moved = vec![0u8; capacity % 48 + 1];
            check::<u64>(capacity);
            let _moved = vec![0u8; capacity % 32 + 8];
            check::<u8>(capacity);
            check::<[u8; 24]>(capacity);
            check::<String>(capacity);
            check::<()>(capacity);
        }
    }

    #[test]
    fn small_rings_have_two_lines_of_spare_slots_and_hold_no_more_than_their_capacity() {
        fn check<T: Send>(capacity: usize, slots: usize, make: impl Fn() -> T) {
            let name = std::any::type_name::<T>();
            let (mut producer, consumer) = ring::<T>(capacity);
            assert_eq!(producer.slots.len, slots, "{capacity} of {name}");
            assert_eq!(consumer.slots.len, slots, "{capacity} of {name}");
            assert_eq!(
                (producer.capacity(), consumer.capacity()),
                (capacity, capacity)
            );
            for pushed in 0..capacity {
                assert_eq!(producer.slots(), capacity - pushed);
                assert!(producer.push(make()).is_ok(), "{capacity} of {name}");
            }
            assert!(producer.push(make()).is_err(), "{capacity} of {name}");
            assert!(producer.is_full());
            assert_eq!(consumer.len(), capacity);
        }
        // Two lines (128 bytes) of spare slots on rings under 16 lines.
        check(1, 1 + 16, || 0u64);
        check(16, 16 + 16, || 0u64);
        check(127, 127 + 16, || 0u64);
        check(16, 16 + 128, || 0u8);
        check(3, 3 + 6, || [0u8; 24]);
        check(2, 2 + 2, || [0u8; 127]);
        // None from 16 lines on, for values of 128 bytes and more, and for
        // values of no bytes.
        check(128, 128, || 0u64);
        check(1024, 1024, || 0u8);
        check(2, 2, || [0u8; 128]);
        check(16, 16, || ());
        // Values of 65 to 127 bytes: spare slots below 16 lines only.
        check(10, 10 + 2, || [0u8; 100]);
        check(11, 11, || [0u8; 100]);
        check(1000, 1000, || [0u8; 100]);
        check(16, 16, || [0u8; 65]);
        check(15, 15 + 2, || [0u8; 65]);
    }

    #[test]
    fn a_full_small_ring_writes_at_least_two_lines_behind_the_consumer() {
        for capacity in [1, 2, 7, 16, 100] {
            // Counts that wrap at `usize::MAX` in the middle of the run.
            let start = usize::MAX - 5 * capacity;
            let (mut producer, mut consumer) = ring_from::<u64>(capacity, start);
            let slots = producer.slots.len;
            let mut next = 0;
            while producer.push(next).is_ok() {
                next += 1;
            }
            assert_eq!(next, capacity as u64);
            for taken in 0..10 * slots as u64 {
                assert_eq!(consumer.pop(), Some(taken));
                // The slot the producer writes next, and the one the
                // consumer has just read (on the line it is reading), in
                // bytes apart going forward from the producer's.
                let write = producer.tail_index();
                let read = (consumer.head_index() + slots - 1) % slots;
                let apart = (read + slots - write) % slots * mem::size_of::<u64>();
                assert!(
                    apart >= 128,
                    "capacity {capacity}: writing slot {write}, {apart} bytes behind {read}"
                );
                producer.push(next).unwrap();
                next += 1;
                assert!(producer.push(next).is_err(), "full again");
            }
        }
    }

    #[test]
    fn the_look_ahead_is_two_lines_of_small_values_on_large_rings_only() {
        let two_lines = |slots: usize| if can_prefetch_write() { slots } else { 0 };
        assert_eq!(look_ahead::<u64>(4096), two_lines(16));
        assert_eq!(look_ahead::<u8>(1024), two_lines(128));
        assert_eq!(look_ahead::<[u8; 64]>(16), two_lines(2));
        // Rings under 16 lines, values over a line, and zero-sized values
        // get none.
        assert_eq!(look_ahead::<u64>(127), 0);
        assert_eq!(look_ahead::<u64>(16), 0);
        assert_eq!(look_ahead::<[u8; 65]>(4096), 0);
        assert_eq!(look_ahead::<()>(4096), 0);
    }

    #[test]
    fn the_look_ahead_stays_clear_of_values_still_to_be_read() {
        // Fill a large ring to within one look-ahead of full, read a few,
        // and keep pushing across the wrap: values come out whole and in
        // order whether or not a line ahead was asked for.
        let (mut producer, mut consumer) = ring::<u64>(256);
        let mut next_out = 0;
        for value in 0..10_000u64 {
            while producer.push(value).is_err() {
                assert_eq!(consumer.pop(), Some(next_out));
                next_out += 1;
            }
        }
        while let Some(value) = consumer.pop() {
            assert_eq!(value, next_out);
            next_out += 1;
        }
        assert_eq!(next_out, 10_000);
    }

    /// A value of `N` bytes (alignment 1) that says which one it is.
    #[derive(Debug, PartialEq)]
    struct Blob<const N: usize>([u8; N]);

    /// As `Blob<64>`, on a line of its own.
    #[derive(Debug, PartialEq)]
    #[repr(align(64))]
    struct Line([u8; 64]);

    trait Numbered {
        fn numbered(n: u64) -> Self;
    }

    impl<const N: usize> Numbered for Blob<N> {
        fn numbered(n: u64) -> Self {
            Blob(std::array::from_fn(|i| (n as u8).wrapping_add(i as u8)))
        }
    }

    impl Numbered for Line {
        fn numbered(n: u64) -> Self {
            Line(std::array::from_fn(|i| (n as u8).wrapping_add(i as u8)))
        }
    }

    impl Numbered for () {
        fn numbered(_: u64) {}
    }

    /// Pushes and pops `T`s in bursts that take the ring from near empty
    /// to full and back over several laps, with counts that wrap at
    /// `usize::MAX`, and after every push checks the line `push` asked
    /// for: every slot it overlaps is free or the one just written, never
    /// one of a value still to be read. Returns how many pushes asked for
    /// a line, and how many did not.
    fn check_look_ahead_lines<T: Numbered + PartialEq + fmt::Debug + Send>(
        capacity: usize,
        start: usize,
    ) -> (usize, usize) {
        const LINE: usize = 64;
        let (mut producer, mut consumer) = ring_from::<T>(capacity, start);
        // Where the CPU cannot prefetch for writing, `push` never asks
        // (and must not be made to); under Miri the prefetch is a no-op, so
        // the look-ahead is checked there whatever the CPU.
        if cfg!(miri) || can_prefetch_write() {
            producer.look_ahead = lines_look_ahead::<T>(capacity);
        }
        let size = mem::size_of::<T>();
        let base = producer.slots.base.as_ptr() as usize;
        let (mut pushed, mut popped, mut asked) = (0u64, 0u64, 0);
        let laps = if cfg!(miri) { 1 } else { 5 };
        let mut burst = 0;
        while pushed < (laps * capacity) as u64 {
            burst += 1;
            // Bursts of pushes from 1 to the capacity and beyond.
            for _ in 0..(burst * 7) % (capacity + 3) + 1 {
                let index = producer.tail_index();
                // Free as far as the head the consumer last stored shows
                // (it may hand slots back a line's worth at a time).
                let head = producer.ring.head.load(Ordering::Relaxed);
                let free = capacity - producer.tail.wrapping_sub(head);
                let slots = producer.slots.len;
                if free == 0 {
                    assert!(producer.push(T::numbered(pushed)).is_err());
                    break;
                }
                // What the push sees: its `free_slots` (which reloads the
                // head only if the cached limit shows no free slot), then
                // the look-ahead from the tail before it steps.
                assert!(producer.free_slots(1) > 0);
                let ask = producer.look_ahead_index(index);
                producer.push(T::numbered(pushed)).unwrap();
                pushed += 1;
                let Some(ahead) = ask else {
                    continue;
                };
                asked += 1;
                assert!(size > 0 && ahead < slots);
                let line_start = (base + ahead * size) & !(LINE - 1);
                let line_end = line_start + LINE;
                // Every slot whose bytes overlap the line.
                let first = line_start.saturating_sub(base) / size;
                let last = ((line_end - base).div_ceil(size)).min(slots);
                for slot in first..last {
                    // Slots after `index` in ring order: 0 is the one just
                    // written, 1.. are free up to `free`.
                    let after = (slot + slots - index) % slots;
                    assert!(
                        after < free,
                        "size {size}, capacity {capacity}: the line of slot {ahead} \
                         (after a push to {index}, {free} free) holds slot {slot}, \
                         a value still to be read"
                    );
                }
            }
            // Pops from 1 to all, so the ring runs near full and near empty.
            for _ in 0..(burst * 5) % (capacity + 2) {
                match consumer.pop() {
                    Some(value) => {
                        assert_eq!(value, T::numbered(popped));
                        popped += 1;
                    }
                    None => break,
                }
            }
        }
        assert!(producer.tail < start, "the counts wrapped");
        while let Some(value) = consumer.pop() {
            assert_eq!(value, T::numbered(popped));
            popped += 1;
        }
        assert_eq!(popped, pushed);
        (asked, pushed as usize - asked)
    }

    #[test]
    fn the_line_asked_for_holds_no_value_still_to_be_read() {
        const LINES_16: usize = 16 * 64;
        let asks = cfg!(miri) || can_prefetch_write();
        // Capacities just under, at and over 16 lines, and an odd one (under
        // Miri, just under and just over).
        fn capacities<T: Numbered + PartialEq + fmt::Debug + Send>(
            at_16_lines: usize,
        ) -> Vec<(usize, usize)> {
            let start = usize::MAX - at_16_lines / 2;
            let capacities = if cfg!(miri) {
                vec![at_16_lines - 1, at_16_lines + 1]
            } else {
                vec![
                    at_16_lines - 1,
                    at_16_lines,
                    at_16_lines + 1,
                    2 * at_16_lines + 3,
                ]
            };
            capacities
                .into_iter()
                .map(|capacity| check_look_ahead_lines::<T>(capacity, start))
                .collect()
        }
        let mut checked = vec![
            (1, capacities::<Blob<1>>(LINES_16)),
            (7, capacities::<Blob<7>>(LINES_16.div_ceil(7))),
            (43, capacities::<Blob<43>>(LINES_16.div_ceil(43))),
            (64, capacities::<Line>(LINES_16 / 64)),
        ];
        if !cfg!(miri) {
            checked.extend([
                (8, capacities::<Blob<8>>(LINES_16 / 8)),
                (63, capacities::<Blob<63>>(LINES_16.div_ceil(63))),
                (64, capacities::<Blob<64>>(LINES_16 / 64)),
            ]);
        }
        for (size, asked) in checked {
            // Under 16 lines, never; at 16 lines and over, some pushes ask
            // and some (near full) do not.
            assert_eq!(asked[0].0, 0, "size {size}");
            for &(asked, not) in &asked[1..] {
                assert_eq!(asked > 0, asks, "size {size}: {asked} asked");
                assert!(not > 0, "size {size}: every push asked");
            }
        }
        // Values over a line, and zero-sized ones: never.
        let capacity = if cfg!(miri) { 100 } else { 4096 };
        let start = usize::MAX - 50;
        assert_eq!(check_look_ahead_lines::<Blob<65>>(capacity, start).0, 0);
        assert_eq!(check_look_ahead_lines::<()>(capacity, start).0, 0);
    }

    /// A value that records its drop in `drops[id]`.
    struct Tracked {
        id: usize,
        drops: std::sync::Arc<Vec<AtomicUsize>>,
    }

    impl Drop for Tracked {
        fn drop(&mut self) {
            self.drops[self.id].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Random pushes, pops, read chunks (taken from, committed, dropped and
    /// forgotten part way), `pop_batch` callbacks that panic, and counts,
    /// on a ring that hands slots back a line's worth at a time, with counts
    /// that wrap at `usize::MAX`; then the halves dropped in either order.
    /// Every value comes out in order and is dropped exactly once, and after
    /// `len()` the producer sees every slot the consumer has emptied.
    #[test]
    fn random_operations_across_the_wrap_drop_every_value_once() {
        use std::collections::VecDeque;
        use std::panic::{catch_unwind, AssertUnwindSafe};
        use std::sync::Arc as StdArc;

        // 16 lines of `Tracked` (16 bytes): 8 values to a line.
        let capacity = 64;
        let line = LINE / mem::size_of::<Tracked>();
        assert_eq!(release_every::<Tracked>(capacity), line);
        let (runs, steps) = if cfg!(miri) { (4, 300) } else { (64, 3000) };
        let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
        let mut random = move |below: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % below as u64) as usize
        };
        for run in 0..runs {
            let drops = StdArc::new(
                // At most a chunk's worth of values made a step.
                (0..steps * (capacity + 1))
                    .map(|_| AtomicUsize::new(0))
                    .collect::<Vec<_>>(),
            );
            let make = |id: usize| Tracked {
                id,
                drops: StdArc::clone(&drops),
            };
            let start = usize::MAX - random(3 * capacity);
            let (mut producer, mut consumer) = ring_from::<Tracked>(capacity, start);
            // Ids in the ring, oldest first, and the next id to make.
            let mut model = VecDeque::new();
            let mut next_id = 0;
            for _ in 0..steps {
                let shared_head = consumer.ring.head.load(Ordering::Relaxed);
                let held_back = consumer.head.wrapping_sub(shared_head);
                assert!(held_back < line, "run {run}: {held_back} held back");
                assert_eq!(
                    producer.slots() + model.len() + held_back,
                    capacity,
                    "run {run}"
                );
                let op = random(9);
                match op {
                    0 | 1 => {
                        // A value the ring hands back is dropped here.
                        if producer.push(make(next_id)).is_ok() {
                            model.push_back(next_id);
                        }
                        next_id += 1;
                    }
                    2 => {
                        let want = random(capacity + 2);
                        if let Ok(mut chunk) = producer.write_chunk(want) {
                            let fill = random(chunk.len() + 1);
                            let keep = random(fill + 1);
                            for id in next_id..next_id + fill {
                                chunk.push(make(id)).unwrap();
                            }
                            next_id += fill;
                            chunk.commit(keep);
                            model.extend(next_id - fill..next_id - fill + keep);
                        }
                    }
                    3 => match consumer.pop() {
                        Some(value) => assert_eq!(Some(value.id), model.pop_front()),
                        None => assert!(model.is_empty()),
                    },
                    4 | 5 => {
                        let ask = random(capacity + 2);
                        let mut chunk = consumer.read_chunk(ask);
                        assert_eq!(chunk.len(), ask.min(model.len()));
                        let take = random(chunk.len() + 1);
                        for _ in 0..take {
                            assert_eq!(chunk.next().map(|v| v.id), model.pop_front());
                            if let Some(value) = chunk.get(0) {
                                assert_eq!(Some(value.id), model.front().copied());
                            }
                        }
                        match random(3) {
                            0 => drop(chunk),
                            1 => mem::forget(chunk),
                            _ => {
                                let more = random(chunk.len() + 1);
                                chunk.commit(more);
                                model.drain(..more);
                            }
                        }
                    }
                    6 => {
                        let max = random(capacity + 2);
                        let panic_at = random(max + 2);
                        let mut seen = 0;
                        let mut out_of_order = false;
                        let outcome = catch_unwind(AssertUnwindSafe(|| {
                            consumer.pop_batch(max, |value| {
                                out_of_order |= Some(value.id) != model.pop_front();
                                seen += 1;
                                if seen == panic_at {
                                    panic!("receive panics at value {seen}");
                                }
                            })
                        }));
                        assert!(!out_of_order, "run {run}: pop_batch out of order");
                        if let Ok(count) = outcome {
                            assert_eq!(count, seen);
                        }
                    }
                    7 => {
                        assert_eq!(consumer.len(), model.len());
                        assert_eq!(producer.slots(), capacity - model.len());
                    }
                    _ => {
                        let drained = consumer.read_chunk(random(4)).count();
                        model.drain(..drained);
                    }
                }
            }
            if run % 2 == 0 {
                drop(consumer);
                drop(producer);
            } else {
                drop(producer);
                drop(consumer);
            }
            for (id, dropped) in drops.iter().enumerate().take(next_id) {
                assert_eq!(dropped.load(Ordering::Relaxed), 1, "run {run}: value {id}");
            }
        }
    }

    #[test]
    fn counts_and_slot_indices_survive_the_wrap_of_the_counts() {
        for capacity in [1, 2, 3, 4, 7, 16] {
            // A few laps before `usize::MAX`, so the counts wrap mid-run.
            let start = usize::MAX - 3 * capacity;
            let (mut producer, mut consumer) = ring_from::<u64>(capacity, start);
            let (mut sent, mut received) = (0u64, 0u64);
            for step in 0..(10 * capacity + 20) {
                // Fill by pushes and chunks in turn, some steps only part
                // way, then empty by pops and chunks in turn.
                let wanted = 1 + step % capacity;
                if step % 2 == 0 {
                    for _ in 0..wanted {
                        if producer.push(sent).is_err() {
                            break;
                        }
                        sent += 1;
                    }
                } else if let Ok(mut chunk) = producer.write_chunk(wanted) {
                    let filled = chunk.fill_from(sent..);
                    chunk.commit(filled);
                    sent += filled as u64;
                }
                assert_eq!(
                    consumer.len() + producer.slots(),
                    capacity,
                    "capacity {capacity}, step {step}"
                );
                assert_eq!(consumer.len() as u64, sent - received);
                if step % 3 == 0 {
                    while let Some(value) = consumer.pop() {
                        assert_eq!(value, received, "capacity {capacity}, step {step}");
                        received += 1;
                    }
                } else {
                    consumer.pop_batch(wanted, |value| {
                        assert_eq!(value, received, "capacity {capacity}, step {step}");
                        received += 1;
                    });
                }
            }
            assert!(sent > 3 * capacity as u64, "the run crossed the wrap");
            // Counts wrapped: the shared tail is now below where it started.
            assert!(producer.tail < start);
            consumer.pop_batch(usize::MAX, |value| {
                assert_eq!(value, received);
                received += 1;
            });
            assert_eq!(received, sent);
        }
    }

    #[test]
    fn spare_slot_rings_keep_order_and_drops_across_the_wrap_of_the_counts() {
        fn check<T: Send + PartialEq + fmt::Debug>(capacity: usize, make: impl Fn(usize) -> T) {
            let name = std::any::type_name::<T>();
            let start = usize::MAX - 2 * capacity - 1;
            let (mut producer, mut consumer) = ring_from::<T>(capacity, start);
            // Spare slots on rings of fewer than 16 lines.
            let small = capacity * mem::size_of::<T>() < 16 * 64;
            assert_eq!(producer.slots.len > capacity, small, "{capacity} of {name}");
            let (mut next, mut expected) = (0, 0);
            for round in 0..4 * producer.slots.len {
                // Fill to the capacity in two chunks, the first partly
                // committed, then check the ring refuses one more.
                let mut chunk = producer.write_chunk(round % capacity + 1).unwrap();
                let len = chunk.len();
                for n in next..next + len {
                    chunk.push(make(n)).unwrap();
                }
                chunk.commit(len - len / 2);
                next += len - len / 2;
                // The first chunk may have filled the ring already.
                if let Ok(mut chunk) = producer.write_chunk(usize::MAX) {
                    for n in next..next + chunk.len() {
                        chunk.push(make(n)).unwrap();
                    }
                    next += chunk.len();
                    chunk.commit_filled();
                }
                assert_eq!(next - expected, capacity, "{capacity} of {name}");
                assert!(producer.push(make(next)).is_err(), "{capacity} of {name}");
                assert!(producer.is_full());
                // Take a varying number out, all through a read chunk.
                let take = round % capacity + 1;
                let chunk = consumer.read_chunk(take);
                assert_eq!(chunk.len(), take);
                for value in chunk {
                    assert_eq!(value, make(expected), "{capacity} of {name}");
                    expected += 1;
                }
                assert_eq!(consumer.len(), next - expected);
            }
        }
        for capacity in [1, 2, 3, 5, 16, 17, 100] {
            check(capacity, |n| n as u8);
            check(capacity, |n| [n as u8; 127]);
            check(capacity, |n| n.to_string());
        }
    }
}
