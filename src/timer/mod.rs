//! Timers for one core: a hierarchical timing wheel.
//!
//! Each core owns one [`Wheel`] and is the only thread that touches it, so
//! the wheel has no locks and no atomics. The core loop schedules delayed
//! work with [`Wheel::schedule`], drops it with [`Wheel::cancel`] (the
//! common fate of a timeout), asks [`Wheel::next_deadline`] how long it may
//! block, and calls [`Wheel::advance`] once per turn to fire what is due.
//!
//! # Time and units
//!
//! The wheel takes time as `u64` nanoseconds from an epoch the caller
//! chooses and keeps, such as [`crate::clock::now_ns`]; tests
//! pass a virtual clock. Internally it counts *ticks* of a length fixed at
//! construction (1 ms suits most servers). A deadline of `d` ns is due at
//! tick `ceil(d / tick)`, and `advance(now)` fires what is due by tick
//! `floor(now / tick)`: a timer never fires before its deadline and, with
//! `advance` called every tick, at most one tick after it.
//!
//! # Layout
//!
//! Six levels of 64 slots; a slot at level `l` spans `64^l` ticks, so the
//! levels cover `2^36` ticks. Deadlines further out wait in an overflow list.
//! Timers live in a slab and are linked into slot lists by index, so the
//! steady state allocates nothing and cancelling is an O(1) unlink.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use corelane::timer::Wheel;
//!
//! const MS: u64 = 1_000_000;
//! let mut wheel = Wheel::new(Duration::from_millis(1));
//! let timeout = wheel.schedule(30 * MS, "request 7 timed out");
//! wheel.schedule(10 * MS, "flush batch");
//!
//! // The reply came: the timeout is no longer wanted.
//! assert!(wheel.cancel(timeout).is_some());
//!
//! let mut fired = Vec::new();
//! wheel.advance(50 * MS, &mut fired);
//! assert_eq!(fired, ["flush batch"]);
//! ```

mod level;
mod slab;
mod wheel;

pub use slab::TimerHandle;
pub use wheel::Wheel;
