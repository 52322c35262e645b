//! The journal: append-only segment files of checksummed frames that
//! survive a crash, can be tailed while written, and roll when full.
//!
//! A journal is a directory of segment files ([`crate::segment::Segment`],
//! kind `Journal`), each named after the journal position of its first
//! byte ([`dir`]). Positions are byte offsets in one contiguous space: a
//! segment of capacity `C` based at `B` holds positions `B..B + C`, and the
//! next segment is based at `B + C`. Each frame is a lane frame byte for
//! byte, its `sequence` field holding its own position and its checksum
//! always set, so a frame that is moved, torn or flipped is caught.
//!
//! - [`JournalWriter`] appends (one writer per directory, enforced with a
//!   lock file) and applies a [`Durability`] policy.
//! - [`JournalReader`] reads from the start or a position and follows a live
//!   writer across rolls; it never returns a frame that fails validation.
//! - [`recovery`] is what the writer runs on open (cut a torn tail, refuse
//!   damage) and what `corelane journal inspect` reports.
//!
//! # Damage
//!
//! A bad frame in the middle of the journal is never skipped: readers and
//! the writer stop at the first damage and report its position. Only a bad
//! frame that is the last thing written in the last segment is a torn tail,
//! which the writer's recovery cuts (zeroes) before it appends again.

pub mod dir;
pub mod error;
pub mod policy;
pub mod reader;
pub mod recovery;
pub(crate) mod scan;
mod sync_clock;
pub mod writer;

pub use error::{Damage, JournalError};
pub use policy::{Durability, JournalConfig};
pub use reader::{JournalFrame, JournalReader, Start};
pub use recovery::{
    inspect, Inspection, LeftoverSegment, RecoveryReport, SegmentSummary, TornTail,
};
pub use writer::{AbandonedSegment, JournalWriter};
