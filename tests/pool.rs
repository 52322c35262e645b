//! Per-core buffer pools: buffers dropped on another thread come home,
//! nothing is lost or leaked, and pooled memory stays within the caps.
//!
//! A counting global allocator tracks live blocks with the pools' alignment
//! (64 bytes), which nothing else in this binary asks for, so the tests can
//! check that every block is freed. The tests that count take a lock, so
//! they do not see each other's blocks. Counts shrink under Miri:
//!
//! ```text
//! cargo +nightly miri test --target-dir target/miri --test pool
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};
use std::thread;

use corelane::pool::{Pool, PoolBuf, PoolConfig, BUFFER_ALIGN};

/// Counts live allocations aligned like pool blocks.
struct Counting;

static LIVE_BLOCKS: AtomicI64 = AtomicI64::new(0);
static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static PEAK_BYTES: AtomicI64 = AtomicI64::new(0);
static ALLOCATED_BLOCKS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; the counters are
// side effects only.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_alloc(layout);
        // SAFETY: the caller's layout, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_alloc(layout);
        // SAFETY: the caller's layout, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.align() == BUFFER_ALIGN {
            LIVE_BLOCKS.fetch_sub(1, Ordering::Relaxed);
            LIVE_BYTES.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        }
        // SAFETY: the caller's pointer and layout, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

fn count_alloc(layout: Layout) {
    if layout.align() == BUFFER_ALIGN {
        LIVE_BLOCKS.fetch_add(1, Ordering::Relaxed);
        ALLOCATED_BLOCKS.fetch_add(1, Ordering::Relaxed);
        let now =
            LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed) + layout.size() as i64;
        PEAK_BYTES.fetch_max(now, Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

static COUNTING: Mutex<()> = Mutex::new(());

/// Takes the counting lock and checks that no block is live to start with.
fn counting() -> MutexGuard<'static, ()> {
    let guard = COUNTING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    assert_eq!(
        LIVE_BLOCKS.load(Ordering::Relaxed),
        0,
        "blocks live before the test"
    );
    PEAK_BYTES.store(0, Ordering::Relaxed);
    guard
}

fn live_blocks() -> i64 {
    LIVE_BLOCKS.load(Ordering::Relaxed)
}

/// Scales a count down under Miri.
fn scaled(count: usize) -> usize {
    if cfg!(miri) {
        (count / 2000).max(50)
    } else {
        count
    }
}

/// One million buffers (fewer under Miri) taken on one thread and dropped
/// on another: every one comes home or was a counted fallback, the pool's
/// counts add up at every step, and once the pool is gone no block is live.
#[test]
fn a_million_buffers_dropped_on_another_thread_all_come_home() {
    let _counting = counting();
    let total = scaled(1_000_000);
    let config = PoolConfig::uniform(4096, 1 << 20)
        .cap(64, 256)
        .cap(4096, 64);
    let pool = Pool::new(&config);
    let (to_remote, remote) = mpsc::sync_channel::<PoolBuf>(512);
    let dropper = thread::spawn(move || {
        let mut sum = 0u64;
        for buf in remote {
            sum += u64::from(buf[0]) + buf.len() as u64;
            drop(buf);
        }
        sum
    });
    let mut expected = 0u64;
    let mut pooled = 0usize;
    for i in 0..total {
        let size = if i % 3 == 0 { 4096 } else { 64 };
        let mut buf = pool.take(size);
        buf.capacity_mut()[0] = (i % 251) as u8;
        buf.set_len(size);
        expected += (i % 251) as u64 + size as u64;
        pooled += usize::from(buf.is_pooled());
        to_remote
            .send(buf)
            .expect("the dropper runs until the channel closes");
    }
    drop(to_remote);
    assert_eq!(
        dropper.join().unwrap(),
        expected,
        "a buffer's contents changed"
    );

    pool.reclaim();
    let usage = pool.usage();
    assert_eq!(usage.in_use, 0, "{usage:?}");
    assert_eq!(pooled as u64 + usage.fallbacks, total as u64, "{usage:?}");
    // Every pooled buffer was dropped on the other thread, so every one
    // came home through a return queue, and was counted once there.
    assert_eq!(usage.remote_returns, pooled as u64, "{usage:?}");
    assert!(usage.free <= 256 + 64, "{usage:?}");
    // Only the blocks the pool owns are still live: no fallback leaked.
    assert_eq!(live_blocks(), usage.free as i64);
    drop(pool);
    assert_eq!(live_blocks(), 0, "blocks leaked");
}

/// A flood of takes with nothing given back: pooled memory stops at the
/// caps, the rest is counted as fallbacks, and giving it all back leaves at
/// most the caps on the free lists.
#[test]
fn a_flood_stays_within_the_caps() {
    let _counting = counting();
    let sizes = [64, 1000, 4096, 65536];
    // Caps well below the number of takes of each size (fewer under Miri).
    let caps = if cfg!(miri) {
        [5, 4, 3, 2]
    } else {
        [100, 64, 16, 2]
    };
    let config = sizes.iter().zip(caps).fold(
        PoolConfig::uniform(65536, 64 * 1024),
        |config, (&size, cap)| config.cap(size, cap),
    );
    let bound = config.max_pooled_bytes() as u64;
    let pool = Pool::new(&config);
    let mut held = Vec::new();
    for i in 0..scaled(20_000) {
        let size = sizes[i % 4];
        held.push(pool.take(size));
        let usage = pool.usage();
        assert!(usage.pooled_bytes() <= bound, "{usage:?} over {bound}");
    }
    let usage = pool.usage();
    let pooled = held.iter().filter(|buf| buf.is_pooled()).count() as u64;
    assert_eq!(usage.in_use, pooled);
    assert_eq!(usage.fallbacks, held.len() as u64 - pooled);
    assert_eq!(
        pooled,
        caps.iter().sum::<usize>() as u64,
        "every class filled to its cap"
    );
    // Half go back on this thread, half on another.
    let far: Vec<PoolBuf> = held.split_off(held.len() / 2);
    thread::spawn(move || drop(far)).join().unwrap();
    drop(held);
    pool.reclaim();
    let usage = pool.usage();
    assert_eq!(usage.in_use, 0);
    assert_eq!(usage.free, pooled);
    assert!(usage.free_bytes <= bound);
    assert_eq!(
        live_blocks(),
        pooled as i64,
        "fallbacks went back to the allocator"
    );
    drop(pool);
    assert_eq!(live_blocks(), 0);
}

/// Memory stays bounded while another thread floods the return queues:
/// the same few blocks go round and round.
#[test]
fn a_flood_across_threads_reuses_the_same_blocks() {
    let _counting = counting();
    let config = PoolConfig::uniform(4096, 1 << 20).cap(4096, 8);
    let pool = Pool::new(&config);
    let (to_remote, remote) = mpsc::sync_channel::<PoolBuf>(4);
    let dropper = thread::spawn(move || remote.into_iter().count());
    for _ in 0..scaled(100_000) {
        to_remote.send(pool.take(4096)).unwrap();
    }
    drop(to_remote);
    dropper.join().unwrap();
    assert!(
        PEAK_BYTES.load(Ordering::Relaxed) as usize <= 8 * 4096 + (4 + 8) * 4096,
        "peak {} bytes",
        PEAK_BYTES.load(Ordering::Relaxed)
    );
    drop(pool);
    assert_eq!(live_blocks(), 0);
}

/// Buffers may outlive their pool, on its thread or another; the last one
/// dropped frees the pool's home, and nothing leaks.
#[test]
fn buffers_outlive_their_pool() {
    let _counting = counting();
    let pool = Pool::new(&PoolConfig::default());
    let here = pool.take(100);
    let there = pool.take(5000);
    let fallback = pool.take(64 << 20);
    assert!(!fallback.is_pooled());
    drop(pool);
    assert_eq!(live_blocks(), 3);
    thread::spawn(move || drop(there)).join().unwrap();
    drop(fallback);
    // `there` waits in the return queue until the home goes.
    assert_eq!(live_blocks(), 2);
    drop(here);
    assert_eq!(live_blocks(), 0);
}

/// Every buffer, pooled or not, is aligned for rkyv and holds an archive
/// written into it in place.
#[test]
fn buffers_are_aligned_and_hold_archives_in_place() {
    #[derive(rkyv::Archive, rkyv::Serialize)]
    struct Fill {
        price: u64,
        quantity: u32,
        venue: String,
    }

    let _counting = counting();
    let pool = Pool::new(&PoolConfig::uniform(4096, 8192));
    let mut arena = rkyv::ser::allocator::Arena::new();
    for size in [1, 15, 16, 17, 63, 64, 65, 1000, 4096, 4097, 100_000] {
        let mut buf = pool.take(size);
        assert_eq!(buf.as_ptr() as usize % BUFFER_ALIGN, 0, "size {size}");
        assert!(buf.capacity() >= size);
        let fill = Fill {
            price: size as u64,
            quantity: 3,
            venue: "XLON".into(),
        };
        let written = rkyv::api::high::to_bytes_in_with_alloc::<_, _, rkyv::rancor::Error>(
            &fill,
            rkyv::ser::writer::Buffer::from(buf.capacity_mut()),
            arena.acquire(),
        );
        let Ok(written) = written.map(|bytes| bytes.len()) else {
            assert!(size < 40, "an archive of 40 bytes did not fit {size}");
            continue;
        };
        buf.set_len(written);
        let archived =
            rkyv::access::<ArchivedFill, rkyv::rancor::Error>(&buf).expect("a valid archive");
        assert_eq!(archived.price, size as u64);
        assert_eq!(archived.venue, "XLON");
    }
}

#[test]
fn contents_survive_the_trip_and_length_is_checked() {
    let _counting = counting();
    let pool = Pool::new(&PoolConfig::default());
    let mut buf = pool.take(10);
    assert!(buf.is_empty());
    buf.capacity_mut()[..3].copy_from_slice(b"abc");
    buf.set_len(3);
    let back = thread::spawn(move || {
        assert_eq!(&buf[..], b"abc");
        buf
    })
    .join()
    .unwrap();
    assert_eq!(back.len(), 3);
    let capacity = back.capacity();
    let mut back = back;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        back.set_len(capacity + 1);
    }));
    assert!(outcome.is_err(), "set_len past the capacity must panic");
    assert_eq!(back.len(), 3);
}

/// Every size is served by the smallest class that holds it, 0 included,
/// and a size past the largest class comes from the allocator at its own
/// size: the take path's class arithmetic against plain numbers.
#[test]
fn each_size_gets_the_smallest_class_that_holds_it() {
    let pool = Pool::new(&PoolConfig::default().largest_class(1 << 20));
    for (size, capacity) in [
        (0, 64),
        (1, 64),
        (64, 64),
        (65, 128),
        (4095, 4096),
        (4096, 4096),
        (4097, 8192),
        (1 << 20, 1 << 20),
    ] {
        // Twice: the first take allocates the class's block, the second
        // reuses it from the free list (the inlined path).
        for _ in 0..2 {
            let buf = pool.take(size);
            assert!(buf.is_pooled(), "size {size}");
            assert_eq!(buf.capacity(), capacity, "size {size}");
        }
    }
    let past = pool.take((1 << 20) + 1);
    assert!(!past.is_pooled());
    assert_eq!(past.capacity(), (1 << 20) + 1);
    drop(past);
    assert_eq!(pool.usage().fallbacks, 1);
    assert_eq!(pool.usage().in_use, 0);
}
