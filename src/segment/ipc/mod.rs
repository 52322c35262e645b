//! Frame rings shared between processes through a mapped file.
//!
//! An [`IpcPublisher`] creates the ring file (owner-only, space reserved
//! with `posix_fallocate`, header written with `initialised` last, then
//! linked into place) and writes frames into it with the lanes' own
//! producer: the frames in the file are the lanes' frames byte for byte.
//! One [`IpcSubscriber`], usually in another process, opens the file,
//! validates it and reads frames with a reader that trusts none of it
//! ([`reader`]): lengths and positions are checked, each frame is copied out
//! before it is looked at, checksums are verified, and typed access goes
//! through rkyv validation.
//!
//! Whether the writer is alive is decided by a file lock ([`liveness`]),
//! never by a timeout: when the writer's lock is free, the subscriber reads
//! what was published and reports [`IpcError::WriterGone`], with how far
//! it got. A half-written frame is never returned.
//!
//! # Restarting a publisher
//!
//! [`IpcPublisher::create`] refuses an existing file, so a new publisher
//! can never clobber a live ring. To restart, [`IpcPublisher::replace_dead`]
//! removes the old file only after taking its writer lock (which proves the
//! old writer is gone) and creates a fresh ring under the same name; the
//! old ring's subscriber gets `WriterGone` and opens the name again.

pub mod error;
pub mod liveness;
pub mod publisher;
pub mod reader;
pub mod subscriber;

pub use error::{IpcError, WriterGone};
pub use publisher::IpcPublisher;
pub use reader::{IpcFrame, RingReader};
pub use subscriber::{IpcSubscriber, DEFAULT_PROBE_EVERY};
