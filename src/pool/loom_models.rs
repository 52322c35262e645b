//! The return path under loom: whatever the interleaving of a buffer's
//! drop on another thread with the owner taking, reclaiming and closing,
//! every block is freed exactly once and the home is freed last.
//!
//! Loom checks every access to the owner's state (a loom `UnsafeCell`) for
//! data races and reports a block or home that is never freed as a leak
//! (the return queue stands in as a loom `Mutex<VecDeque>`, see
//! `return_queue.rs`).
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test --release --target-dir target/loom --lib pool::
//! ```

use loom::thread;

use super::{Pool, PoolConfig};

fn check(model: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(model);
}

/// A small pool: one class of 64 bytes, at most two buffers.
fn small() -> PoolConfig {
    PoolConfig::uniform(64, 128)
}

#[test]
fn a_buffer_dropped_remotely_is_taken_again() {
    check(|| {
        let pool = Pool::new(&small());
        let mut buf = pool.take(64);
        buf.capacity_mut()[0] = 7;
        let remote = thread::spawn(move || drop(buf));
        // The owner keeps working while the buffer comes back: its take
        // finds the block on the return queue, or allocates a second one.
        let second = pool.take(64);
        remote.join().unwrap();
        pool.reclaim();
        let usage = pool.usage();
        assert_eq!((usage.in_use, usage.remote_returns), (1, 1), "{usage:?}");
        assert!(usage.free <= 1, "{usage:?}");
        drop(second);
        let usage = pool.usage();
        assert_eq!(usage.in_use, 0, "{usage:?}");
        assert!((1..=2).contains(&usage.free), "{usage:?}");
    });
}

#[test]
fn the_owner_closing_while_a_buffer_comes_back_frees_both() {
    check(|| {
        let pool = Pool::new(&small());
        let buf = pool.take(64);
        let kept = pool.take(64);
        let remote = thread::spawn(move || {
            let mut buf = buf;
            buf.capacity_mut()[63] = 1;
        });
        // The home must survive until the last buffer is back, whichever
        // of the owner and the remote thread lets go last.
        drop(pool);
        drop(kept);
        remote.join().unwrap();
    });
}

#[test]
fn two_remote_threads_and_the_owner_close_in_any_order() {
    check(|| {
        let pool = Pool::new(&small());
        let first = pool.take(64);
        let second = pool.take(64);
        let a = thread::spawn(move || drop(first));
        let b = thread::spawn(move || drop(second));
        drop(pool);
        a.join().unwrap();
        b.join().unwrap();
    });
}
