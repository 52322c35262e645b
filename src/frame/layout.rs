//! The frame header: every field's offset, named once.
//!
//! ```text
//!  0               4       6   7   8                              16
//!  +---------------+-------+---+---+-------------------------------+
//!  | length (i32)  | type  |ver|flg| sequence (u64)                |
//!  +---------------+-------+---+---+-------------------------------+
//!  | send time, ns (u64)           | checksum (u32)| reserved (u32)|
//!  +-------------------------------+---------------+---------------+
//! 32  payload (an rkyv archive), then zero padding up to FRAME_ALIGN
//! ```
//!
//! - `length` counts the header and the payload, not the trailing padding. A
//!   writer stores it last, with `Release` ordering: a reader that sees a
//!   positive length with `Acquire` sees every other byte of the frame. Zero
//!   or negative means "not yet published".
//! - `type` and `ver` name the payload's message type and its format version
//!   (see [`crate::frame::Message`]); type [`PADDING_TYPE`] marks the filler
//!   a ring writes before it wraps.
//! - `flg` holds [`FLAG_CHECKSUM`] when `checksum` is set, and
//!   [`FLAG_POOLED`] when the payload is a pooled buffer's handle.
//! - `sequence` is the writer's count of frames (lanes) or the frame's
//!   position (journal); `send time` is nanoseconds on [`crate::clock`].
//!
//! All multi-byte fields are little-endian in the native layout of the
//! machines we target; a frame never leaves the machine that wrote it.

/// Bytes in a frame header.
pub const HEADER_LEN: usize = 32;

/// Every frame starts at a multiple of this, so every payload starts at one
/// too. 32 is at least rkyv's largest alignment (16) and is a multiple of
/// the header length, so a gap at the end of a ring is never too small to
/// hold a padding frame's header.
pub const FRAME_ALIGN: usize = 32;

/// Offset of the `i32` length word, the frame's publication flag.
pub const LENGTH_OFFSET: usize = 0;
/// Offset of the `u16` message type id.
pub const TYPE_OFFSET: usize = 4;
/// Offset of the `u8` format version of the message type.
pub const VERSION_OFFSET: usize = 6;
/// Offset of the `u8` flags.
pub const FLAGS_OFFSET: usize = 7;
/// Offset of the `u64` sequence number or position.
pub const SEQUENCE_OFFSET: usize = 8;
/// Offset of the `u64` send timestamp in nanoseconds.
pub const TIMESTAMP_OFFSET: usize = 16;
/// Offset of the `u32` CRC-32 of header bytes 4..24 and the payload.
pub const CHECKSUM_OFFSET: usize = 24;
/// Offset of the payload.
pub const PAYLOAD_OFFSET: usize = HEADER_LEN;

/// Message type of a padding frame; readers skip it.
pub const PADDING_TYPE: u16 = 0;

/// Flag: the checksum field is set and must be verified.
pub const FLAG_CHECKSUM: u8 = 1;

/// Flag: the payload is not the message but a handle on a pooled buffer
/// that holds it (a message too large for the lane; see
/// `runtime/large.rs`). Only ever set in this process's own lanes.
pub const FLAG_POOLED: u8 = 2;

/// Rounds a frame length up to the space it occupies.
#[inline]
pub const fn aligned_len(length: usize) -> usize {
    (length + FRAME_ALIGN - 1) & !(FRAME_ALIGN - 1)
}

/// The fields of a header other than `length`, as a writer fills them in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameMeta {
    /// Message type id.
    pub msg_type: u16,
    /// Format version of that type.
    pub version: u8,
    /// Flags; [`FLAG_CHECKSUM`] is set by the writer when it checksums.
    pub flags: u8,
    /// Frame sequence number or position.
    pub sequence: u64,
    /// Send time in nanoseconds on [`crate::clock`].
    pub timestamp_ns: u64,
}

/// Writes the header fields after `length` into `header`
/// (`header.len() >= HEADER_LEN`). The length word is left to the caller,
/// which publishes it atomically.
pub fn write_meta(header: &mut [u8], meta: &FrameMeta, checksum: u32) {
    header[TYPE_OFFSET..TYPE_OFFSET + 2].copy_from_slice(&meta.msg_type.to_le_bytes());
    header[VERSION_OFFSET] = meta.version;
    header[FLAGS_OFFSET] = meta.flags;
    header[SEQUENCE_OFFSET..SEQUENCE_OFFSET + 8].copy_from_slice(&meta.sequence.to_le_bytes());
    header[TIMESTAMP_OFFSET..TIMESTAMP_OFFSET + 8]
        .copy_from_slice(&meta.timestamp_ns.to_le_bytes());
    header[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 4].copy_from_slice(&checksum.to_le_bytes());
    header[CHECKSUM_OFFSET + 4..HEADER_LEN].fill(0);
}

/// Reads the header fields after `length` from `header`.
pub fn read_meta(header: &[u8]) -> FrameMeta {
    FrameMeta {
        msg_type: u16::from_le_bytes([header[TYPE_OFFSET], header[TYPE_OFFSET + 1]]),
        version: header[VERSION_OFFSET],
        flags: header[FLAGS_OFFSET],
        sequence: read_u64(header, SEQUENCE_OFFSET),
        timestamp_ns: read_u64(header, TIMESTAMP_OFFSET),
    }
}

/// Reads the checksum field from `header`.
pub fn read_checksum(header: &[u8]) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&header[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 4]);
    u32::from_le_bytes(word)
}

/// The checksum of a frame: CRC-32 (IEEE, as crc32fast computes it) over
/// the header bytes that follow the length word and precede the checksum,
/// then the payload. The length word is excluded because it is the
/// publication flag, written after the checksum.
pub fn checksum(header: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[TYPE_OFFSET..CHECKSUM_OFFSET]);
    hasher.update(payload);
    hasher.finalize()
}

fn read_u64(bytes: &[u8], offset: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips_through_a_header() {
        let meta = FrameMeta {
            msg_type: 0xBEEF,
            version: 3,
            flags: FLAG_CHECKSUM,
            sequence: u64::MAX - 1,
            timestamp_ns: 123_456_789,
        };
        let mut header = [0xAAu8; HEADER_LEN];
        write_meta(&mut header, &meta, 0xDEAD_BEEF);
        assert_eq!(read_meta(&header), meta);
        assert_eq!(read_checksum(&header), 0xDEAD_BEEF);
        // The length word is the caller's to publish.
        assert_eq!(&header[..4], &[0xAA; 4]);
    }

    #[test]
    fn aligned_len_rounds_up_to_frame_align() {
        assert_eq!(aligned_len(HEADER_LEN), 32);
        assert_eq!(aligned_len(HEADER_LEN + 1), 64);
        assert_eq!(aligned_len(64), 64);
        assert_eq!(aligned_len(65), 96);
    }

    #[test]
    fn checksum_covers_payload_and_fields() {
        let mut header = [0u8; HEADER_LEN];
        write_meta(&mut header, &FrameMeta::default(), 0);
        let base = checksum(&header, b"payload");
        assert_ne!(base, checksum(&header, b"paylaod"));
        header[SEQUENCE_OFFSET] = 1;
        assert_ne!(base, checksum(&header, b"payload"));
    }
}
