//! Per-core buffer pools.
//!
//! Each core owns a [`Pool`] of buffers in power-of-two size classes
//! ([`PoolConfig`]), for memory that must not be allocated per message:
//! large messages that travel through a lane as a buffer handle, socket
//! buffers, anything that outlives a lane slot.
//!
//! - The owning core takes and gives back buffers with no synchronisation
//!   (a free list per class).
//! - A [`PoolBuf`] dropped on another core goes home through a lock-free
//!   return queue (crossbeam-queue) of its class; the owner drains it a
//!   batch at a time when the free list runs dry ([`Pool::reclaim`] drains
//!   it all).
//! - Each class has a cap: the most buffers it owns at once. Past it, or
//!   above the largest class, a buffer comes from the system allocator and
//!   is counted ([`PoolUsage::fallbacks`]); pooled memory never exceeds
//!   [`PoolConfig::max_pooled_bytes`].
//! - Buffers are 64-byte aligned, so an rkyv archive can be written into
//!   one in place and read where it lies.
//!
//! How a pool's shared part is freed when buffers outlive it is described
//! in `home.rs`; the protocol runs under loom (`--cfg loom`).

mod block;
mod buffer;
mod class;
mod home;
mod lender;
mod owner;
mod return_queue;
mod thread_id;
mod usage;

#[cfg(all(test, loom))]
mod loom_models;

pub use buffer::{PoolBuf, RawPoolBuf};
pub use class::{PoolConfig, BUFFER_ALIGN, SMALLEST_CLASS};
pub use lender::PoolLender;
pub use owner::{Pool, PoolProbe};
pub use usage::PoolUsage;
