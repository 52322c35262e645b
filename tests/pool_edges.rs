//! Pools at their edges, after the owner's take and give-back became
//! inlined fast paths (class by one `bsr`, owner and open by one
//! comparison): sizes at every class boundary and past the last, custom
//! configurations, buffers dropped on the owner's thread or others before
//! and after the pool closes, lenders and probes outliving the pool, two
//! pools on one thread, pools on short-lived threads. Counts are checked
//! exactly after each step and a counting allocator checks that nothing
//! leaks. Under Miri:
//!
//! ```text
//! MIRIFLAGS="-Zmiri-tree-borrows" cargo +nightly miri test --test pool_edges
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread;

use corelane::pool::{Pool, PoolConfig, PoolUsage, BUFFER_ALIGN};

/// Counts live allocations aligned like pool blocks.
struct Counting;

static LIVE_BLOCKS: AtomicI64 = AtomicI64::new(0);

// SAFETY: forwards to the system allocator unchanged; the counter is a
// side effect only.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() == BUFFER_ALIGN {
            LIVE_BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's layout, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() == BUFFER_ALIGN {
            LIVE_BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's layout, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.align() == BUFFER_ALIGN {
            LIVE_BLOCKS.fetch_sub(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's pointer and layout, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

static COUNTING: Mutex<()> = Mutex::new(());

/// Takes the counting lock; no block is live to start with.
fn counting() -> MutexGuard<'static, ()> {
    let guard = COUNTING.lock().unwrap_or_else(|p| p.into_inner());
    assert_eq!(live(), 0, "blocks live before the test");
    guard
}

fn live() -> i64 {
    LIVE_BLOCKS.load(Ordering::Relaxed)
}

fn counts(usage: PoolUsage) -> (u64, u64, u64, u64) {
    (
        usage.in_use,
        usage.free,
        usage.fallbacks,
        usage.remote_returns,
    )
}

/// Every class boundary, twice each (allocate, then the inlined reuse),
/// and sizes past the largest class, with a largest class of 64 bytes (a
/// single class), the default, and each size's capacity exact.
#[test]
fn boundaries_of_every_class_and_past_the_last() {
    let _counting = counting();
    for largest in [64usize, 4096, 1 << 16] {
        let pool = Pool::new(&PoolConfig::default().largest_class(largest));
        let mut sizes = vec![0, 1, 63, 64, 65];
        let mut class = 64;
        while class <= largest {
            sizes.extend([class - 1, class, class + 1]);
            class *= 2;
        }
        let mut fallbacks = 0;
        for &size in &sizes {
            for round in 0..2 {
                let buf = pool.take(size);
                let expected = size.max(1).next_power_of_two().max(64);
                if expected <= largest {
                    assert!(buf.is_pooled(), "size {size}, largest {largest}");
                    assert_eq!(buf.capacity(), expected, "size {size}");
                } else {
                    fallbacks += 1;
                    assert!(!buf.is_pooled(), "size {size}, largest {largest}");
                    assert_eq!(buf.capacity(), size, "size {size}");
                }
                assert_eq!(buf.as_ptr() as usize % BUFFER_ALIGN, 0);
                assert_eq!(pool.usage().in_use, u64::from(buf.is_pooled()), "{round}");
            }
            assert_eq!(pool.usage().in_use, 0);
            assert_eq!(pool.usage().fallbacks, fallbacks);
        }
        let classes = largest.trailing_zeros() as u64 - 5;
        assert_eq!(pool.usage().free, classes, "one block per class, reused");
        drop(pool);
        assert_eq!(live(), 0);
    }
}

/// Sizes no class can hold, up to `usize::MAX`: the pool sends them to
/// the allocator (which refuses the largest with a panic, before the pool
/// is changed); the pool is unharmed and keeps serving.
#[test]
fn sizes_past_every_class_go_to_the_allocator() {
    let _counting = counting();
    let pool = Pool::new(&PoolConfig::default());
    for size in [(1usize << 63) + 1, usize::MAX, 1 << 63] {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pool.take(size)));
        assert!(outcome.is_err(), "size {size} cannot be allocated");
    }
    let buf = pool.take(100);
    assert!(buf.is_pooled());
    assert_eq!(buf.capacity(), 128);
    drop(buf);
    assert_eq!(pool.usage().in_use, 0);
    assert_eq!(pool.usage().free, 1);
    drop(pool);
    assert_eq!(live(), 0);
}

/// A class with cap 0 pools nothing; its sizes fall back every time.
#[test]
fn a_class_capped_at_zero_always_falls_back() {
    let _counting = counting();
    let pool = Pool::new(&PoolConfig::uniform(4096, 8192).cap(128, 0));
    for round in 1..=3u64 {
        let buf = pool.take(100);
        assert!(!buf.is_pooled());
        drop(buf);
        assert_eq!(counts(pool.usage()), (0, 0, round, 0));
    }
    let buf = pool.take(64);
    assert!(buf.is_pooled());
    drop((buf, pool));
    assert_eq!(live(), 0);
}

/// Buffers dropped on the owner's thread after the pool is gone, and on
/// other threads before and after it closed; a lender and a probe outlive
/// it. Counts are exact while it lives, and nothing leaks after.
#[test]
fn buffers_lenders_and_probes_outlive_the_pool() {
    let _counting = counting();
    let pool = Pool::new(&PoolConfig::uniform(4096, 8192));
    let probe = pool.probe();
    let lender = pool.lender();
    let here: Vec<_> = (0..3).map(|_| pool.take(1000)).collect();
    let there_before: Vec<_> = (0..2).map(|_| lender.take(64)).collect();
    let there_after: Vec<_> = (0..2).map(|_| pool.take(500)).collect();
    assert_eq!(counts(probe.usage()), (7, 0, 0, 0));
    thread::spawn(move || drop(there_before)).join().unwrap();
    assert_eq!(counts(probe.usage()), (7, 0, 0, 0), "on their way back");
    assert_eq!(pool.reclaim(), 2);
    assert_eq!(counts(pool.usage()), (5, 2, 0, 2));
    drop(pool);
    // Closed: the free blocks are gone; the probe still reads.
    assert_eq!(live(), 5);
    assert_eq!(probe.usage().in_use, 5);
    // The lender lends from the allocator now.
    let late = lender.take(64);
    assert!(!late.is_pooled());
    assert_eq!(lender.usage().fallbacks, 1);
    assert_eq!(live(), 6);
    // Dropped on the owner's thread after close: the remote way, into the
    // return queue, freed with the home (the lender and probe keep it).
    drop(here);
    assert_eq!(live(), 6);
    thread::spawn(move || drop(there_after)).join().unwrap();
    assert_eq!(live(), 6);
    drop(late);
    assert_eq!(live(), 5);
    drop(lender);
    assert_eq!(live(), 5);
    assert_eq!(probe.usage().in_use, 5, "counts as the owner last saw them");
    drop(probe);
    assert_eq!(live(), 0);
}

/// Two pools on one thread: a buffer of each goes home to its own pool,
/// and one pool's close leaves the other's fast paths alone.
#[test]
fn two_pools_on_one_thread_keep_their_own_buffers() {
    let _counting = counting();
    let first = Pool::new(&PoolConfig::uniform(4096, 8192));
    let second = Pool::new(&PoolConfig::uniform(4096, 8192));
    let a = first.take(64);
    let b = second.take(64);
    drop(a);
    assert_eq!(counts(first.usage()), (0, 1, 0, 0));
    assert_eq!(counts(second.usage()), (1, 0, 0, 0));
    let a = first.take(64);
    drop(first);
    drop(b);
    assert_eq!(counts(second.usage()), (0, 1, 0, 0));
    let again = second.take(64);
    assert!(again.is_pooled());
    assert_eq!(counts(second.usage()), (1, 0, 0, 0));
    drop((a, again));
    assert_eq!(counts(second.usage()), (0, 1, 0, 0));
    drop(second);
    assert_eq!(live(), 0);
}

/// Pools made on many short-lived threads (each thread's first use of
/// the pool gives it its number), their buffers sent to and dropped on
/// the next thread.
#[test]
fn pools_on_short_lived_threads() {
    let _counting = counting();
    let mut carried = Vec::new();
    let threads = if cfg!(miri) { 4 } else { 64 };
    for _ in 0..threads {
        carried = thread::spawn(move || {
            drop(carried);
            let pool = Pool::new(&PoolConfig::uniform(4096, 8192));
            let kept = pool.take(200);
            drop(pool.take(200));
            assert_eq!(counts(pool.usage()), (1, 1, 0, 0));
            vec![kept, pool.take(5000)]
        })
        .join()
        .unwrap();
    }
    drop(carried);
    assert_eq!(live(), 0);
}

/// More pooled buffers dropped on another thread than the owner's credit
/// of references holds (2^20): the inlined take finds the credit at 0 and
/// the slow path tops it up; every buffer comes home and nothing leaks.
/// Too long for Miri.
#[test]
#[cfg_attr(miri, ignore)]
fn more_remote_drops_than_one_credit_refill() {
    let _counting = counting();
    let total = (1usize << 20) + 5_000;
    let batch = 1000;
    let pool = Pool::new(&PoolConfig::uniform(64, 1 << 20).cap(64, 2 * batch));
    let (to_remote, remote) = std::sync::mpsc::sync_channel::<Vec<corelane::pool::PoolBuf>>(1);
    let (to_owner, dropped) = std::sync::mpsc::sync_channel::<usize>(1);
    // Each batch is dropped before the next is taken, so its buffers wait
    // in the return queue when the free list runs out: every take is
    // pooled, however slow the dropping thread (a dropper that lagged let
    // the cap send takes to the allocator on a loaded machine).
    let dropper = thread::spawn(move || {
        for bufs in remote {
            let count = bufs.len();
            drop(bufs);
            to_owner.send(count).unwrap();
        }
    });
    let mut pooled = 0u64;
    let mut taken = 0;
    let mut returned = 0;
    while taken < total {
        let bufs: Vec<_> = (0..batch).map(|_| pool.take(64)).collect();
        pooled += bufs.iter().filter(|buf| buf.is_pooled()).count() as u64;
        taken += batch;
        to_remote.send(bufs).unwrap();
        returned += dropped.recv().unwrap();
    }
    drop(to_remote);
    dropper.join().unwrap();
    assert_eq!(returned, taken);
    pool.reclaim();
    let usage = pool.usage();
    assert_eq!(usage.in_use, 0, "{usage:?}");
    assert_eq!(usage.remote_returns, pooled, "{usage:?}");
    assert_eq!(usage.fallbacks, taken as u64 - pooled, "{usage:?}");
    assert_eq!(pooled, taken as u64, "every take was pooled");
    assert!(
        pooled > 1 << 20,
        "the credit ran out at least once: {pooled}"
    );
    drop(pool);
    assert_eq!(live(), 0);
}

thread_local! {
    /// Buffers a thread keeps until it exits.
    static KEPT: std::cell::RefCell<Vec<corelane::pool::PoolBuf>> =
        const { std::cell::RefCell::new(Vec::new()) };
    /// A pool a thread keeps until it exits.
    static THREAD_POOL: std::cell::RefCell<Option<Pool>> = const { std::cell::RefCell::new(None) };
}

/// Buffers dropped by thread-local destructors as threads exit: on a
/// thread that never had a number (its first give-back numbers it while
/// its thread-locals are torn down), and on the owner's own thread, whose
/// pool is a thread-local torn down in the same pass.
#[test]
fn buffers_dropped_as_threads_exit() {
    let _counting = counting();
    let pool = Pool::new(&PoolConfig::uniform(4096, 8192));
    let bufs: Vec<_> = (0..3).map(|_| pool.take(100)).collect();
    thread::spawn(move || KEPT.with(|kept| kept.borrow_mut().extend(bufs)))
        .join()
        .unwrap();
    assert_eq!(pool.reclaim(), 3);
    assert_eq!(counts(pool.usage()), (0, 3, 0, 3));
    drop(pool);

    thread::spawn(|| {
        let pool = Pool::new(&PoolConfig::uniform(4096, 8192));
        let bufs: Vec<_> = (0..3).map(|_| pool.take(2000)).collect();
        KEPT.with(|kept| kept.borrow_mut().extend(bufs));
        THREAD_POOL.with(|slot| *slot.borrow_mut() = Some(pool));
    })
    .join()
    .unwrap();
    assert_eq!(live(), 0);
}
