//! Memory-mapped segment files: the frame format on shared memory and disk.
//!
//! A segment is one file: a header page ([`layout`]) and a frame area that
//! holds the lanes' frames byte for byte. [`Segment`] creates and opens them
//! safely (owner-only, space reserved before mapping, every header field
//! validated against `fstat`). The IPC ring and the journal are built on it.

pub mod error;
pub mod file;
pub mod ipc;
pub mod journal;
pub mod layout;
pub mod sigbus;

pub use error::SegmentError;
pub use file::{sync_directory, Access, Segment, SegmentHeader, SegmentRegion, SEGMENT_MODE};
pub use layout::{SegmentKind, SegmentLayout};
