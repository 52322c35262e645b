//! A global allocator that keeps the heap bytes the process holds now
//! ([`LIVE`]) and the most it held at once since a test last reset
//! [`PEAK`], for the tests that check what a request makes the server hold.
//! A test file that includes it holds one test, so that nothing else
//! allocates while it measures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use corelane::serve::{Server, ServerConfig};

/// Keeps the bytes allocated now and the most allocated at once.
struct Peak;

/// Heap bytes allocated now.
pub static LIVE: AtomicUsize = AtomicUsize::new(0);
/// The most heap bytes allocated at once since the last reset.
pub static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

// SAFETY: every call is passed to the system allocator unchanged; the
// counters are plain atomics, which do not allocate.
unsafe impl GlobalAlloc for Peak {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Counted as a new block before the old one goes: the copy needs both.
        grew(new_size);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Peak = Peak;

/// Starts a one-core server on a free loopback port.
pub fn start_one_core() -> Server {
    let config = ServerConfig {
        bind: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        cores: Some(1),
        ..ServerConfig::default()
    };
    Server::start(config).expect("server starts")
}
