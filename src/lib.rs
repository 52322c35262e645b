//! corelane: a lock-free, thread-per-core runtime for low-latency messaging.
pub mod clock;
pub mod frame;
pub mod lane;
pub mod metrics;
pub mod runtime;
pub mod serve;
mod sync;
