//! Why an IPC ring could not be created, opened or read.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::frame::FrameError;
use crate::lane::frames::RingError;
use crate::segment::SegmentError;

/// How far a subscriber got before its writer went away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriterGone {
    /// Position of the first frame never published: every frame before it
    /// was delivered.
    pub position: u64,
    /// Frames (padding aside) this subscriber delivered.
    pub frames: u64,
    /// Whether the writer left a frame half-written at `position` (bytes
    /// written, length never published). Those bytes are never delivered.
    pub half_written: bool,
}

/// Why an IPC ring could not be created, opened or read.
#[derive(Debug)]
pub enum IpcError {
    /// The ring file could not be created or opened (C09).
    Segment(SegmentError),
    /// The ring's capacity is unusable, or a length word in it is
    /// impossible ([`RingError::Corrupt`]).
    Ring(RingError),
    /// The ring's `head` and `tail` words cannot both be right: not
    /// frame-aligned, more than a ring apart, or at the end of the position
    /// space.
    Positions {
        /// The consumer position found.
        head: u64,
        /// The producer position found.
        tail: u64,
        /// Bytes of frames in the ring.
        capacity: usize,
    },
    /// A frame's bytes do not match its checksum.
    Frame {
        /// Position of the frame.
        position: u64,
        /// What is wrong with it.
        error: FrameError,
    },
    /// The writer has gone (its lock is released: it exited or was
    /// killed), and every frame it published has been delivered.
    WriterGone(WriterGone),
    /// The ring's writer is alive: a new publisher may not replace it.
    WriterAlive {
        /// The ring file.
        path: PathBuf,
    },
    /// Another subscriber reads this ring; a ring has one reader.
    SubscriberAttached {
        /// The ring file.
        path: PathBuf,
    },
    /// A lock could not be taken or probed.
    Lock {
        /// The ring file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The operating system's error.
        source: io::Error,
    },
}

impl fmt::Display for IpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpcError::Segment(error) => error.fmt(f),
            IpcError::Ring(error) => error.fmt(f),
            IpcError::Positions {
                head,
                tail,
                capacity,
            } => write!(
                f,
                "impossible ring positions: head {head}, tail {tail} in a ring of {capacity} bytes"
            ),
            IpcError::Frame { position, error } => {
                write!(f, "frame at position {position}: {error}")
            }
            IpcError::WriterGone(gone) => write!(
                f,
                "ring writer gone after {} frames (position {}){}",
                gone.frames,
                gone.position,
                if gone.half_written {
                    "; it left a frame half-written, not delivered"
                } else {
                    ""
                }
            ),
            IpcError::WriterAlive { path } => write!(
                f,
                "{}: the ring's writer is alive; it cannot be replaced",
                path.display()
            ),
            IpcError::SubscriberAttached { path } => write!(
                f,
                "{}: another subscriber reads this ring already",
                path.display()
            ),
            IpcError::Lock { path, op, source } => {
                write!(f, "{}: {op} failed: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for IpcError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            IpcError::Segment(error) => Some(error),
            IpcError::Ring(error) => Some(error),
            IpcError::Frame { error, .. } => Some(error),
            IpcError::Lock { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<SegmentError> for IpcError {
    fn from(error: SegmentError) -> Self {
        IpcError::Segment(error)
    }
}
