//! A number for the current thread, never reused within the process, so a
//! buffer can tell cheaply whether it is dropped on its pool's own thread.

use std::cell::Cell;

/// Next number to hand out; 0 means "not yet assigned".
static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

#[cfg(not(loom))]
thread_local! {
    static ID: Cell<u64> = const { Cell::new(0) };
}

#[cfg(loom)]
loom::thread_local! {
    static ID: Cell<u64> = Cell::new(0);
}

/// The current thread's number, assigned on first use.
#[inline]
pub(crate) fn current() -> u64 {
    match ID.with(Cell::get) {
        0 => assign(),
        known => known,
    }
}

/// Gives the current thread its number: once per thread, so kept out of
/// the inlined path.
#[cold]
#[inline(never)]
fn assign() -> u64 {
    // Only uniqueness matters: no other memory is published by it.
    let fresh = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    ID.with(|id| id.set(fresh));
    fresh
}
