//! The segment file layout: every field's offset, named once.
//!
//! Every segment file, whether it holds a ring shared between processes or
//! a piece of the journal, is a header page followed by a frame area and
//! the frame ring's two index lines:
//!
//! ```text
//!  0        8        12       16       20       24                32
//!  +--------+--------+--------+--------+--------+-----------------+
//!  | magic "CORELANE"| version| kind   |hdr len | frame align     |  (u32 each)
//!  +-----------------+--------+--------+--------+-----------------+
//!  32 capacity (u64) | 40 base position (u64)   | 48 created, unix ns (u64)
//!  56 writer pid (u32)                          | 64 initialised (u32)
//!  128  writer heartbeat, ns on the writer's clock (u64), a line of its own
//!  256  reserved, zero, up to HEADER_PAGE (4096)
//!  +-------------------------------------------------------------+
//!  HEADER_PAGE                                   frames (capacity bytes)
//!  HEADER_PAGE + capacity                        consumer position (u64), own line
//!  HEADER_PAGE + capacity + 128                  producer position (u64), own line
//!  HEADER_PAGE + capacity + 256                  end of file
//! ```
//!
//! - The frames are the lanes' frames byte for byte
//!   ([`crate::frame::layout`]); the frame area and the two position lines
//!   after it are exactly a [`crate::lane::frames`] ring region, so the same
//!   ring code runs over heap memory and over a mapped file.
//! - `initialised` is written last, with `Release`, once every other header
//!   field is in place. A reader that does not see [`INITIALISED`] there
//!   refuses the file.
//! - `base position` is the position of the first frame byte: zero for an
//!   IPC ring, the journal position where a journal segment starts.
//! - The writer's heartbeat lives on its own line so that a reader polling it
//!   does not slow the writer's other header reads.

use crate::frame::layout::FRAME_ALIGN;
use crate::lane::frames::TRAILER_LEN;
use crate::lane::region::REGION_ALIGN;

/// Bytes before the frame area: one page, so the frames start page-aligned.
pub const HEADER_PAGE: usize = 4096;

/// First eight bytes of every segment file.
pub const MAGIC: [u8; 8] = *b"CORELANE";
/// Layout version this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Value of the `initialised` word once the header is complete ("INIT").
pub const INITIALISED: u32 = u32::from_le_bytes(*b"INIT");

/// Offset of the eight magic bytes.
pub const MAGIC_OFFSET: usize = 0;
/// Offset of the `u32` format version.
pub const VERSION_OFFSET: usize = 8;
/// Offset of the `u32` [`SegmentKind`].
pub const KIND_OFFSET: usize = 12;
/// Offset of the `u32` header length (always [`HEADER_PAGE`]).
pub const HEADER_LEN_OFFSET: usize = 16;
/// Offset of the `u32` frame alignment (always [`FRAME_ALIGN`]).
pub const FRAME_ALIGN_OFFSET: usize = 20;
/// Offset of the `u64` capacity of the frame area in bytes.
pub const CAPACITY_OFFSET: usize = 32;
/// Offset of the `u64` position of the first frame byte.
pub const BASE_POSITION_OFFSET: usize = 40;
/// Offset of the `u64` creation time, in nanoseconds since the Unix epoch.
pub const CREATED_OFFSET: usize = 48;
/// Offset of the `u32` process id of the writer that created the file.
pub const WRITER_PID_OFFSET: usize = 56;
/// Offset of the `u32` initialised word, written last.
pub const INITIALISED_OFFSET: usize = 64;
/// Offset of the `u64` writer heartbeat, on a line of its own.
pub const HEARTBEAT_OFFSET: usize = 2 * 64;

/// What a segment file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum SegmentKind {
    /// A frame ring shared between a writer process and a reader process.
    IpcRing = 1,
    /// One file of an append-only journal.
    Journal = 2,
}

impl SegmentKind {
    /// The kind with this on-disk code, if any.
    pub fn from_code(code: u32) -> Option<Self> {
        match code {
            1 => Some(SegmentKind::IpcRing),
            2 => Some(SegmentKind::Journal),
            _ => None,
        }
    }

    /// Name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            SegmentKind::IpcRing => "ipc ring",
            SegmentKind::Journal => "journal segment",
        }
    }
}

/// Where everything is in a segment with a frame area of `capacity` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentLayout {
    capacity: usize,
}

impl SegmentLayout {
    /// The layout for a frame area of `capacity` bytes, if that is a
    /// non-zero multiple of [`FRAME_ALIGN`] whose file length fits a
    /// `usize`.
    pub fn new(capacity: usize) -> Option<Self> {
        if capacity == 0 || !capacity.is_multiple_of(FRAME_ALIGN) {
            return None;
        }
        HEADER_PAGE
            .checked_add(capacity)?
            .checked_add(TRAILER_LEN)?;
        Some(SegmentLayout { capacity })
    }

    /// Bytes in the frame area.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Offset of the first frame.
    pub fn frames_offset(&self) -> usize {
        HEADER_PAGE
    }

    /// Offset of the consumer's position word (the ring's `head`).
    pub fn consumer_position_offset(&self) -> usize {
        HEADER_PAGE + self.capacity
    }

    /// Offset of the producer's position word (the ring's `tail`).
    pub fn producer_position_offset(&self) -> usize {
        HEADER_PAGE + self.capacity + REGION_ALIGN
    }

    /// Length of the ring region: frames plus the two position lines.
    pub fn ring_region_len(&self) -> usize {
        self.capacity + TRAILER_LEN
    }

    /// Length of the whole file.
    pub fn file_len(&self) -> usize {
        HEADER_PAGE + self.capacity + TRAILER_LEN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_has_a_line_of_its_own() {
        let layout = SegmentLayout::new(1 << 16).unwrap();
        let lines = [
            0, // the immutable header fields, initialised included
            HEARTBEAT_OFFSET / 64,
            layout.consumer_position_offset() / 64,
            layout.producer_position_offset() / 64,
        ];
        for (i, a) in lines.iter().enumerate() {
            for b in &lines[i + 1..] {
                assert_ne!(a, b);
            }
        }
        const { assert!(INITIALISED_OFFSET + 4 <= HEARTBEAT_OFFSET) };
        assert_eq!(layout.consumer_position_offset() % REGION_ALIGN, 0);
        assert_eq!(layout.file_len(), 4096 + (1 << 16) + 256);
    }

    #[test]
    fn capacities_must_be_whole_frames() {
        assert!(SegmentLayout::new(0).is_none());
        assert!(SegmentLayout::new(FRAME_ALIGN + 1).is_none());
        assert!(SegmentLayout::new(usize::MAX - 31).is_none());
        assert_eq!(
            SegmentLayout::new(3 * FRAME_ALIGN).unwrap().capacity(),
            3 * FRAME_ALIGN
        );
    }

    #[test]
    fn kinds_round_trip_and_unknown_codes_are_refused() {
        for kind in [SegmentKind::IpcRing, SegmentKind::Journal] {
            assert_eq!(SegmentKind::from_code(kind as u32), Some(kind));
        }
        assert_eq!(SegmentKind::from_code(0), None);
        assert_eq!(SegmentKind::from_code(3), None);
    }
}
