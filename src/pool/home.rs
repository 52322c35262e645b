//! A pool's home: the state its buffers find their way back to.
//!
//! One `Home` per pool, on the heap, reached by raw pointer from the pool's
//! handle and from every pooled buffer. It has two parts:
//!
//! - the *owner's state* (free lists, counts), touched only on the thread
//!   that made the pool, with no synchronisation;
//! - what other threads may touch: one return queue per class and the
//!   reference count `refs`.
//!
//! # Who frees the home
//!
//! `refs` counts the owner's handle (1), the owner's *credit* (references
//! it holds in reserve), and the pooled buffers that are out and will come
//! back through a return queue. Taking a buffer moves one reference from
//! the credit to the buffer, and a buffer given back on the owner's thread
//! moves it back: neither touches `refs`. A buffer dropped on another
//! thread pushes its block onto a return queue and then gives up its
//! reference (`fetch_sub`); the owner tops its credit up with one
//! `fetch_add` when it runs out. Closing the pool gives up the handle's
//! reference and the credit at once. Whoever brings `refs` to zero (the
//! owner closing, or the last buffer dropped after that) frees what is left
//! in the return queues and the home itself, so a buffer may outlive its
//! pool and nothing leaks.

use std::ptr::NonNull;

use super::block::{self, Block};
use super::class::{class_index, class_of, class_size, PoolConfig, MAX_CLASSES};
use super::return_queue::ReturnQueue;
use super::thread_id;
use super::usage::PoolUsage;
use crate::sync::{fence, AtomicU64, AtomicUsize, Ordering, UnsafeCell};

/// References the owner takes into its credit at a time.
const CREDIT_REFILL: usize = 1 << 20;

/// Blocks moved from a return queue to the free list at a time, when the
/// free list runs dry.
pub(crate) const DRAIN_BATCH: usize = 64;

/// One size class, as the owner sees it.
#[derive(Debug)]
struct ClassState {
    /// Most blocks of this class the pool may own.
    cap: usize,
    /// Blocks of this class the pool owns: free, out, or coming back.
    owned: usize,
    /// Blocks ready to hand out; never holds more than `cap`, so pushing
    /// never reallocates.
    free: Vec<Block>,
}

/// What only the owning thread touches.
#[derive(Debug)]
pub(crate) struct OwnerState {
    classes: Box<[ClassState]>,
    /// References to `Home::refs` held in reserve (see the module doc).
    credit: usize,
    /// Set when the pool's handle is dropped: later drops on the owning
    /// thread go the remote way.
    closed: bool,
    remote_returns: u64,
    fallbacks: u64,
    fallback_bytes: u64,
}

/// Where a buffer is served from.
pub(crate) enum Source {
    /// A pooled block of the class.
    Pooled(Block, usize),
    /// The allocator: the class is at its cap or no class is large enough.
    Fallback,
}

/// A pool's shared home.
pub(crate) struct Home {
    /// The thread that owns the pool; 0, no thread's number, once the pool
    /// is closed, so that drops on the owning thread after that go the
    /// remote way. One comparison on the drop path answers both "owner?"
    /// and "open?".
    owner: AtomicU64,
    /// See the module doc.
    refs: AtomicUsize,
    returns: Box<[ReturnQueue]>,
    state: UnsafeCell<OwnerState>,
}

// SAFETY: other threads touch only `refs` and `returns`, which are made for
// sharing; `state` is touched only on the `owner` thread (each access
// checks `owner` or runs through the owner's `!Send` handle), or by the
// thread that frees the home, after every other reference is gone.
unsafe impl Sync for Home {}
// SAFETY: as above; the blocks held are plain memory.
unsafe impl Send for Home {}

impl Home {
    /// Makes a home owned by the current thread; the caller holds the
    /// handle's reference.
    pub(crate) fn create(config: &PoolConfig) -> NonNull<Home> {
        let caps = config.caps();
        // `take` relies on it (see there); `PoolConfig` never makes more.
        assert!(caps.len() <= MAX_CLASSES, "{} size classes", caps.len());
        let home = Box::new(Home {
            owner: AtomicU64::new(thread_id::current()),
            refs: AtomicUsize::new(1 + CREDIT_REFILL),
            returns: caps.iter().map(|&cap| ReturnQueue::new(cap)).collect(),
            state: UnsafeCell::new(OwnerState {
                classes: caps
                    .iter()
                    .map(|&cap| ClassState {
                        cap,
                        owned: 0,
                        free: Vec::with_capacity(cap),
                    })
                    .collect(),
                credit: CREDIT_REFILL,
                closed: false,
                remote_returns: 0,
                fallbacks: 0,
                fallback_bytes: 0,
            }),
        });
        NonNull::from(Box::leak(home))
    }

    /// Number of classes.
    pub(crate) fn classes(&self) -> usize {
        self.returns.len()
    }

    /// Picks the block for a buffer of `size` bytes (owner only).
    ///
    /// The common case, a free block of the class while the pool is open
    /// and the credit lasts, is inlined into the caller; everything else
    /// is [`take_slow`](Self::take_slow).
    ///
    /// # Safety
    ///
    /// Called on the owning thread, through the pool's handle.
    #[inline]
    pub(crate) unsafe fn take(&self, size: usize) -> Source {
        // Unbounded: the `get_mut` below is the bounds check (a pool has at
        // most `MAX_CLASSES` classes, and size 0 goes the slow way).
        let class = class_index(size);
        let block = self.state.with_mut(|state| {
            // SAFETY: owner thread, as the caller guarantees; no other
            // reference to the state is live (nothing here drops a buffer).
            let state = unsafe { &mut *state };
            // A closed pool has no credit (and no free blocks), so this also
            // sends a lender's late take the slow way.
            if state.credit == 0 {
                return None;
            }
            let block = state.classes.get_mut(class)?.free.pop()?;
            state.credit -= 1;
            Some(block)
        });
        if let Some(block) = block {
            return Source::Pooled(block, class);
        }
        // SAFETY: owner thread, as the caller guarantees.
        unsafe { self.take_slow(size) }
    }

    /// [`take`](Self::take) when the free list cannot serve at once: the
    /// return queue, a new block under the cap, a credit top-up, or the
    /// allocator.
    ///
    /// # Safety
    ///
    /// As for [`take`](Self::take).
    #[cold]
    #[inline(never)]
    unsafe fn take_slow(&self, size: usize) -> Source {
        let Some(class) = class_of(size, self.classes()) else {
            // SAFETY: owner thread, as the caller guarantees.
            unsafe { self.count_fallback(size) };
            return Source::Fallback;
        };
        let returns = &self.returns[class];
        let block = self.state.with_mut(|state| {
            // SAFETY: owner thread, as the caller guarantees; no other
            // reference to the state is live (nothing here drops a buffer).
            let state = unsafe { &mut *state };
            if state.closed {
                // Only a lender can ask after the pool closed: its credit
                // is gone, so it lends from the allocator.
                return None;
            }
            let block = state.take_block(class, returns)?;
            if state.credit == 0 {
                // Any order will do: the handle's own reference keeps the
                // home alive, as with `Arc::clone`.
                self.refs.fetch_add(CREDIT_REFILL, Ordering::Relaxed);
                state.credit = CREDIT_REFILL;
            }
            state.credit -= 1;
            Some(block)
        });
        match block {
            Some(block) => Source::Pooled(block, class),
            None => {
                // SAFETY: owner thread, as the caller guarantees.
                unsafe { self.count_fallback(size) };
                Source::Fallback
            }
        }
    }

    /// # Safety
    ///
    /// Owner thread only.
    unsafe fn count_fallback(&self, bytes: usize) {
        self.state.with_mut(|state| {
            // SAFETY: owner thread, as the caller guarantees.
            let state = unsafe { &mut *state };
            state.fallbacks += 1;
            state.fallback_bytes += bytes as u64;
        });
    }

    /// Takes one reference from the owner's credit, for a handle other
    /// than a buffer (see [`PoolProbe`](super::PoolProbe)).
    ///
    /// # Safety
    ///
    /// Owner thread only.
    pub(crate) unsafe fn retain(&self) {
        self.state.with_mut(|state| {
            // SAFETY: owner thread, as the caller guarantees.
            let state = unsafe { &mut *state };
            if state.credit == 0 {
                // As in `take`: the handle's reference keeps the home alive.
                self.refs.fetch_add(CREDIT_REFILL, Ordering::Relaxed);
                state.credit = CREDIT_REFILL;
            }
            state.credit -= 1;
        });
    }

    /// Gives back a reference taken with [`retain`](Self::retain): to the
    /// credit while the pool is open, to `refs` once it is closed.
    ///
    /// # Safety
    ///
    /// Owner thread only; the caller holds the reference and uses `home`
    /// no more.
    pub(crate) unsafe fn forget(home: NonNull<Home>) {
        // SAFETY: the caller's reference keeps the home alive until here.
        let this = unsafe { home.as_ref() };
        let open = this.state.with_mut(|state| {
            // SAFETY: owner thread, as the caller guarantees.
            let state = unsafe { &mut *state };
            if !state.closed {
                state.credit += 1;
            }
            !state.closed
        });
        if !open {
            // SAFETY: the caller's reference, given up.
            unsafe { Home::release(home, 1) };
        }
    }

    /// Brings a pooled block of `class` home: straight onto the free list
    /// on the owner's thread while the pool is open (inlined into the
    /// buffer's drop), through the return queue otherwise.
    ///
    /// # Safety
    ///
    /// `home` is live (the block's buffer holds a reference to it), and
    /// `block` is a block of `class` taken from it and no longer used.
    #[inline(always)]
    pub(crate) unsafe fn give_back(home: NonNull<Home>, block: Block, class: usize) {
        // SAFETY: the buffer's reference keeps the home alive until the
        // `release` in `give_back_remote`.
        let this = unsafe { home.as_ref() };
        // Relaxed: only the owning thread can find its own number here,
        // and it reads its own store of 0 when it closed the pool; any
        // other thread sees the owner's number or 0, never its own.
        if this.owner.load(Ordering::Relaxed) == thread_id::current() {
            this.state.with_mut(|state| {
                // SAFETY: we are on the owning thread, and the owner's
                // handle never holds a reference to the state across a
                // call that could drop a buffer.
                let state = unsafe { &mut *state };
                debug_assert!(!state.closed, "a closed pool's owner is 0");
                // Never grows: a class owns at most `cap` blocks and its
                // free list was made with room for `cap`.
                state.classes[class].free.push(block);
                state.credit += 1;
            });
            return;
        }
        // SAFETY: as this function's own contract.
        unsafe { Home::give_back_remote(home, block, class) }
    }

    /// [`give_back`](Self::give_back) off the owner's thread, or after the
    /// pool closed: through the return queue, giving up the buffer's
    /// reference.
    ///
    /// # Safety
    ///
    /// As for [`give_back`](Self::give_back).
    #[cold]
    #[inline(never)]
    unsafe fn give_back_remote(home: NonNull<Home>, block: Block, class: usize) {
        // SAFETY: the buffer's reference keeps the home alive until the
        // `release` below.
        let this = unsafe { home.as_ref() };
        if let Err(block) = this.returns[class].push(block) {
            // Cannot happen: a class owns at most `cap` blocks and its queue
            // holds `cap`. Freeing it keeps memory safe; the owner's count
            // of that class stays one high.
            log::error!("pool return queue of class {class} overflowed");
            // SAFETY: a block of this class, given up by its buffer.
            unsafe { block::free(block, class_size(class)) };
        }
        // SAFETY: the buffer held one reference and gives it up; it does
        // not touch the home again.
        unsafe { Home::release(home, 1) };
    }

    /// Gives up `count` references; the last one frees the home and the
    /// blocks still in its return queues.
    ///
    /// # Safety
    ///
    /// The caller holds `count` references and uses `home` no more.
    unsafe fn release(home: NonNull<Home>, count: usize) {
        // Release: our pushes onto the return queues and our use of the
        // home happen before whoever frees it (the Acquire fence below).
        // SAFETY: our references keep the home alive for this call.
        let before = unsafe { home.as_ref() }
            .refs
            .fetch_sub(count, Ordering::Release);
        debug_assert!(before >= count, "pool refs {before} < released {count}");
        if before == count {
            // Pairs with every other holder's Release decrement: all their
            // pushes are visible before we drain and free.
            fence(Ordering::Acquire);
            // SAFETY: that was the last reference: no buffer and no handle
            // can reach the home any more; it came from `Box::leak`.
            drop(unsafe { Box::from_raw(home.as_ptr()) });
        }
    }

    /// Closes the pool: frees every free block and every block that came
    /// home, and gives up the handle's references. Blocks still out are
    /// freed as they come back.
    ///
    /// # Safety
    ///
    /// Called once, on the owning thread, by the pool's handle, which uses
    /// `home` no more.
    pub(crate) unsafe fn close(home: NonNull<Home>) {
        // SAFETY: the handle's reference keeps the home alive until the
        // `release` below.
        let this = unsafe { home.as_ref() };
        let references = this.state.with_mut(|state| {
            // SAFETY: owner thread, as the caller guarantees.
            let state = unsafe { &mut *state };
            state.closed = true;
            this.owner.store(0, Ordering::Relaxed);
            for (class, returns) in this.returns.iter().enumerate() {
                let class_state = &mut state.classes[class];
                while let Some(block) = returns.pop() {
                    class_state.free.push(block);
                }
                class_state.owned -= class_state.free.len();
                for block in class_state.free.drain(..) {
                    // SAFETY: free blocks of this class, owned by nobody.
                    unsafe { block::free(block, class_size(class)) };
                }
            }
            1 + std::mem::take(&mut state.credit)
        });
        // SAFETY: the handle's reference and the credit are ours.
        unsafe { Home::release(home, references) };
    }

    /// Moves every block waiting in the return queues to the free lists;
    /// returns how many.
    ///
    /// # Safety
    ///
    /// Owner thread only.
    pub(crate) unsafe fn reclaim(&self) -> usize {
        self.state.with_mut(|state| {
            // SAFETY: owner thread, as the caller guarantees.
            let state = unsafe { &mut *state };
            (0..self.classes())
                .map(|class| state.drain_returns(class, &self.returns[class], usize::MAX))
                .sum()
        })
    }

    /// The owner's counts.
    ///
    /// # Safety
    ///
    /// Owner thread only.
    pub(crate) unsafe fn usage(&self) -> PoolUsage {
        self.state.with(|state| {
            // SAFETY: owner thread, as the caller guarantees.
            let state = unsafe { &*state };
            let mut usage = PoolUsage {
                remote_returns: state.remote_returns,
                fallbacks: state.fallbacks,
                fallback_bytes: state.fallback_bytes,
                ..PoolUsage::default()
            };
            for (class, class_state) in state.classes.iter().enumerate() {
                let size = class_size(class) as u64;
                let free = class_state.free.len() as u64;
                let in_use = (class_state.owned as u64).saturating_sub(free);
                usage.free += free;
                usage.free_bytes += free * size;
                usage.in_use += in_use;
                usage.in_use_bytes += in_use * size;
            }
            usage
        })
    }
}

impl OwnerState {
    /// A block of `class`: from the free list, else from the return queue,
    /// else newly allocated while under the cap; `None` at the cap.
    #[inline]
    fn take_block(&mut self, class: usize, returns: &ReturnQueue) -> Option<Block> {
        if let Some(block) = self.classes[class].free.pop() {
            return Some(block);
        }
        if self.drain_returns(class, returns, DRAIN_BATCH) > 0 {
            return self.classes[class].free.pop();
        }
        let class_state = &mut self.classes[class];
        if class_state.owned < class_state.cap {
            class_state.owned += 1;
            return Some(block::allocate(class_size(class)));
        }
        None
    }

    /// Moves up to `max` blocks from `returns` to the free list.
    fn drain_returns(&mut self, class: usize, returns: &ReturnQueue, max: usize) -> usize {
        let free = &mut self.classes[class].free;
        let mut moved = 0;
        while moved < max {
            let Some(block) = returns.pop() else { break };
            free.push(block);
            moved += 1;
        }
        self.remote_returns += moved as u64;
        moved
    }
}

impl Drop for Home {
    /// Runs once every reference is gone: frees what came home after the
    /// owner closed, and anything left on the free lists.
    fn drop(&mut self) {
        let returns = &self.returns;
        self.state.with_mut(|state| {
            // SAFETY: `drop` has the home to itself.
            let state = unsafe { &mut *state };
            for (class, queue) in returns.iter().enumerate() {
                let free = &mut state.classes[class].free;
                while let Some(block) = queue.pop() {
                    free.push(block);
                }
                for block in free.drain(..) {
                    // SAFETY: a block of this class that is free or came
                    // home; no buffer holds it any more.
                    unsafe { block::free(block, class_size(class)) };
                }
            }
        });
    }
}
