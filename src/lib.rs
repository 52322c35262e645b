//! corelane: a lock-free, thread-per-core runtime for low-latency messaging.
//!
//! One event loop per CPU core ([`runtime`]), pinned to its core, owns its
//! state and talks to the other cores only through single-producer,
//! single-consumer lanes ([`lane`]). Messages are rkyv archives in
//! [`frame`]s, written once in place and read where they lie. Every core
//! records its own [`metrics`]. [`serve`] is the reference embedding: a
//! pub/sub server that speaks the Redis protocol.
//!
//! Start with [`runtime`] for embedding, or run `corelane serve`.

pub mod bench;
pub mod clock;
pub mod frame;
pub mod lane;
pub mod metrics;
pub mod pool;
pub mod runtime;
pub mod segment;
pub mod serve;
mod sync;
pub mod timer;

/// The mio corelane's cores poll with: [`runtime::Handler::on_io`] takes its
/// `Event` and [`runtime::Context::registry`] lends its `Registry`, so an
/// embedder registers sockets with these types without a mio of its own.
pub use mio;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// docs/journal.md's examples, compiled and run as doctests, as the
/// README's are.
#[cfg(doctest)]
#[doc = include_str!("../docs/journal.md")]
pub struct JournalDocDoctests;
