//! Reading one frame of a mapped journal segment, trusting nothing.
//!
//! A segment may be written by a live writer in another process or left
//! damaged by a crash, so every frame is read the same careful way: the
//! length word with `Acquire` (pairing with the writer's `Release` store,
//! which it makes after every other byte of the frame), then bounds, then a
//! copy of the frame into the caller's buffer, and only then the header
//! fields and the checksum, computed over the copy. A length is trusted for
//! a copy only once it is known to lie inside the mapped frame area, whose
//! size was checked against `fstat` when the segment was opened.

use std::sync::atomic::{AtomicI32, Ordering};

use rkyv::util::AlignedVec;

use super::error::Damage;
use crate::frame::layout::{
    aligned_len, checksum, read_checksum, read_meta, FrameMeta, FLAG_CHECKSUM, FRAME_ALIGN,
    HEADER_LEN, LENGTH_OFFSET, PADDING_TYPE,
};
use crate::segment::Segment;

// A frame that starts at an aligned offset inside the area always has room
// for a whole header before the area's end.
const _: () = assert!(FRAME_ALIGN >= HEADER_LEN);

/// A buffer that frames are copied into: payloads land 16-byte aligned
/// (the buffer is, and the header length is a multiple of 16).
pub(crate) type FrameBuffer = AlignedVec<16>;

const _: () = assert!(HEADER_LEN.is_multiple_of(16));

/// What lies at one offset of a segment's frame area.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    /// A valid frame, copied whole into the buffer (`length` bytes).
    Frame {
        /// Its header fields.
        meta: FrameMeta,
        /// Header plus payload.
        length: usize,
    },
    /// The writer's end-of-segment marker: the journal continues in the
    /// next segment.
    EndMarker,
    /// Nothing published here (yet).
    Unwritten,
    /// The offset is the end of the frame area.
    AreaEnd,
}

/// Reads the frame at `offset` (a multiple of [`FRAME_ALIGN`]) of
/// `segment`'s frame area into `buffer`.
///
/// # Errors
///
/// The [`Damage`] that makes the frame untrustworthy.
pub(crate) fn read_slot(
    segment: &Segment,
    offset: usize,
    buffer: &mut FrameBuffer,
) -> Result<Slot, Damage> {
    let capacity = segment.layout().capacity();
    debug_assert_eq!(offset % FRAME_ALIGN, 0, "unaligned offset {offset}");
    if offset >= capacity {
        return Ok(Slot::AreaEnd);
    }
    let frame = frame_ptr(segment, offset);
    // SAFETY: `offset < capacity` and both are multiples of FRAME_ALIGN, so
    // the word is inside the frame area of the mapping, and 4-aligned (the
    // area starts page-aligned). Length words are only accessed atomically.
    let word = unsafe { AtomicI32::from_ptr(frame.add(LENGTH_OFFSET).cast()) };
    // Acquire pairs with the writer's Release store of the length, made
    // after every other byte of the frame was written.
    let length = word.load(Ordering::Acquire);
    if length == 0 {
        return Ok(Slot::Unwritten);
    }
    let room = capacity - offset;
    let fits = usize::try_from(length)
        .ok()
        .filter(|&len| len >= HEADER_LEN && aligned_len(len) <= room);
    let Some(len) = fits else {
        return Err(Damage::BadLength { length, room });
    };

    buffer.clear();
    buffer.resize(len, 0);
    // SAFETY: `frame..frame + len` lies inside the frame area (checked just
    // above against the validated capacity); `buffer` holds `len` bytes of
    // its own. The source is a published frame: the writer does not change
    // it again, and any other change (a hostile process) is caught by the
    // checksum computed over the copy.
    unsafe { frame.copy_to_nonoverlapping(buffer.as_mut_ptr(), len) };

    let (header, payload) = buffer.split_at(HEADER_LEN);
    let meta = read_meta(header);
    if meta.flags & FLAG_CHECKSUM == 0 {
        return Err(Damage::NoChecksum);
    }
    let stored = read_checksum(header);
    let computed = checksum(header, payload);
    if stored != computed {
        return Err(Damage::Checksum { stored, computed });
    }
    let position = segment.header().base_position.wrapping_add(offset as u64);
    if meta.sequence != position {
        return Err(Damage::WrongPosition {
            found: meta.sequence,
        });
    }
    if meta.msg_type == PADDING_TYPE {
        return Ok(Slot::EndMarker);
    }
    Ok(Slot::Frame { meta, length: len })
}

/// The offset of the first non-zero byte of the frame area at or after
/// `from`, if any.
pub(crate) fn first_nonzero(segment: &Segment, from: usize) -> Option<usize> {
    let capacity = segment.layout().capacity();
    let mut chunk = [0u8; 4096];
    let mut offset = from;
    while offset < capacity {
        let n = chunk.len().min(capacity - offset);
        // SAFETY: `offset + n <= capacity`, inside the frame area; the copy
        // goes into a local array.
        unsafe { frame_ptr(segment, offset).copy_to_nonoverlapping(chunk.as_mut_ptr(), n) };
        if let Some(i) = chunk[..n].iter().position(|&b| b != 0) {
            return Some(offset + i);
        }
        offset += n;
    }
    None
}

/// The offset of the last non-zero byte of the frame area at or after
/// `from`, if any.
pub(crate) fn last_nonzero(segment: &Segment, from: usize) -> Option<usize> {
    let mut chunk = [0u8; 4096];
    let mut end = segment.layout().capacity();
    while end > from {
        let n = chunk.len().min(end - from);
        let start = end - n;
        // SAFETY: `start..end` is inside the frame area; the copy goes into
        // a local array.
        unsafe { frame_ptr(segment, start).copy_to_nonoverlapping(chunk.as_mut_ptr(), n) };
        if let Some(i) = chunk[..n].iter().rposition(|&b| b != 0) {
            return Some(start + i);
        }
        end = start;
    }
    None
}

/// The first byte of the frame at `offset` of the frame area.
pub(crate) fn frame_ptr(segment: &Segment, offset: usize) -> *mut u8 {
    debug_assert!(offset <= segment.layout().capacity());
    // SAFETY: the frame area starts at `frames_offset()` and is `capacity`
    // bytes long, all inside the mapping; callers pass `offset <= capacity`.
    unsafe {
        segment
            .base()
            .as_ptr()
            .add(segment.layout().frames_offset() + offset)
    }
}

/// How a scan of one segment ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// At the writer's end marker: the segment is sealed.
    Sealed,
    /// The frames fill the area exactly: sealed too.
    Full,
    /// At an unwritten slot: the segment is open for more.
    Open,
    /// At a frame that cannot be trusted.
    Damaged(Damage),
}

/// The frames of one segment, as far as they can be trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SegmentScan {
    /// Valid frames.
    pub frames: u64,
    /// Position of the first valid frame.
    pub first: Option<u64>,
    /// Position of the last valid frame.
    pub last: Option<u64>,
    /// Offset where the valid frames end (the end marker, the unwritten
    /// slot or the damaged frame).
    pub end: usize,
    /// Why the scan stopped.
    pub ending: Ending,
}

/// Reads every frame of `segment` from the start until the first slot that
/// is not a valid frame. Takes at most `capacity / FRAME_ALIGN` steps.
pub(crate) fn scan_segment(segment: &Segment, buffer: &mut FrameBuffer) -> SegmentScan {
    let base = segment.header().base_position;
    let mut scan = SegmentScan {
        frames: 0,
        first: None,
        last: None,
        end: 0,
        ending: Ending::Open,
    };
    loop {
        match read_slot(segment, scan.end, buffer) {
            Ok(Slot::Frame { length, .. }) => {
                let position = base.wrapping_add(scan.end as u64);
                scan.first.get_or_insert(position);
                scan.last = Some(position);
                scan.frames += 1;
                scan.end += aligned_len(length);
            }
            Ok(Slot::EndMarker) => {
                scan.ending = Ending::Sealed;
                return scan;
            }
            Ok(Slot::AreaEnd) => {
                scan.ending = Ending::Full;
                return scan;
            }
            Ok(Slot::Unwritten) => {
                scan.ending = Ending::Open;
                return scan;
            }
            Err(damage) => {
                scan.ending = Ending::Damaged(damage);
                return scan;
            }
        }
    }
}

/// The offset of the first valid frame (or end marker) at or after
/// `from`, if any: a bad slot with a valid frame after it is damage, not a
/// torn tail, whatever its length word claims (a length flipped to zero
/// or to the segment's size must not let recovery cut committed frames).
///
/// Unwritten space is skipped a page at a time, slots whose header names
/// another position are passed over without their payload being read,
/// and at most the segment's capacity in payload
/// bytes is checksummed in all, so a hostile segment cannot make this
/// quadratic. Past that budget the answer is `Err(offset)` where it
/// stopped: the caller keeps the data and reports damage.
pub(crate) fn valid_frame_after(
    segment: &Segment,
    from: usize,
    buffer: &mut FrameBuffer,
) -> Result<Option<usize>, usize> {
    let capacity = segment.layout().capacity();
    let base = segment.header().base_position;
    let mut budget = capacity;
    let mut offset = from.next_multiple_of(FRAME_ALIGN);
    let mut header = [0u8; HEADER_LEN];
    while offset + HEADER_LEN <= capacity {
        // SAFETY: `offset + HEADER_LEN <= capacity`: inside the frame area
        // of the mapping; a plain copy, as `read_slot` makes.
        unsafe {
            frame_ptr(segment, offset).copy_to_nonoverlapping(header.as_mut_ptr(), HEADER_LEN)
        };
        if header == [0; HEADER_LEN] {
            // Unwritten space (most of an open segment): jump to the slot
            // of the next byte written, past this header, if there is one.
            match first_nonzero(segment, offset) {
                Some(at) => offset = at / FRAME_ALIGN * FRAME_ALIGN,
                None => return Ok(None),
            }
            continue;
        }
        let meta = read_meta(&header);
        if meta.sequence == base.wrapping_add(offset as u64) {
            let length = i32::from_le_bytes(
                header[LENGTH_OFFSET..LENGTH_OFFSET + 4]
                    .try_into()
                    .expect("four bytes"),
            );
            let Some(cost) = usize::try_from(length).ok().filter(|&len| len <= budget) else {
                // A negative length is no frame; one past the budget is
                // not checked, and so not trusted to be garbage either.
                if length >= 0 {
                    return Err(offset);
                }
                offset += FRAME_ALIGN;
                continue;
            };
            budget -= cost;
            if let Ok(Slot::Frame { .. } | Slot::EndMarker) = read_slot(segment, offset, buffer) {
                return Ok(Some(offset));
            }
        }
        offset += FRAME_ALIGN;
    }
    Ok(None)
}

/// Where a damaged frame's claimed extent ends, for deciding whether
/// anything was written after it: its claimed length when that stays in
/// the segment, else the end of the segment.
pub(crate) fn damaged_extent(segment: &Segment, offset: usize) -> usize {
    let capacity = segment.layout().capacity();
    // SAFETY: as in `read_slot`: a damaged frame's offset is below capacity
    // and aligned.
    let word = unsafe { AtomicI32::from_ptr(frame_ptr(segment, offset).cast()) };
    let length = word.load(Ordering::Acquire);
    let claimed = usize::try_from(length)
        .ok()
        .filter(|&len| len >= HEADER_LEN)
        .map_or(FRAME_ALIGN, aligned_len);
    offset.saturating_add(claimed).min(capacity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::layout::{write_meta, SEQUENCE_OFFSET};
    use crate::segment::SegmentKind;

    const CAPACITY: usize = 4096;

    fn segment(name: &str) -> (Segment, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!(
            "corelane-scan-{name}-{}.journal",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        let segment = Segment::create(&path, SegmentKind::Journal, CAPACITY, 1 << 20).unwrap();
        (segment, path)
    }

    /// Writes a frame of `payload` at `offset` with `meta`, checksummed.
    fn put(segment: &Segment, offset: usize, length: i32, meta: &FrameMeta, payload: &[u8]) {
        let mut header = [0u8; HEADER_LEN];
        write_meta(&mut header, meta, 0);
        let sum = checksum(&header, payload);
        write_meta(&mut header, meta, sum);
        header[..4].copy_from_slice(&length.to_le_bytes());
        let frame = frame_ptr(segment, offset);
        // SAFETY: test segment, writable, offsets inside the area.
        unsafe {
            frame.copy_from_nonoverlapping(header.as_ptr(), HEADER_LEN);
            frame
                .add(HEADER_LEN)
                .copy_from_nonoverlapping(payload.as_ptr(), payload.len());
        }
    }

    fn meta(offset: usize, flags: u8) -> FrameMeta {
        FrameMeta {
            msg_type: 5,
            version: 1,
            flags,
            sequence: (1 << 20) + offset as u64,
            timestamp_ns: 0,
        }
    }

    #[test]
    fn frames_after_damage_are_found_and_the_search_is_bounded() {
        let (segment, path) = segment("after");
        let mut buffer = FrameBuffer::new();
        assert_eq!(valid_frame_after(&segment, 0, &mut buffer), Ok(None));
        // A valid frame is found from anywhere before it, not after.
        put(&segment, 256, 64, &meta(256, FLAG_CHECKSUM), &[7; 32]);
        assert_eq!(valid_frame_after(&segment, 32, &mut buffer), Ok(Some(256)));
        assert_eq!(valid_frame_after(&segment, 288, &mut buffer), Ok(None));
        // Headers that name their own position, with lengths their bytes
        // do not check out for, spend the budget (the capacity in bytes
        // checksummed); past it, the search gives up where it stands.
        for offset in (512..CAPACITY).step_by(FRAME_ALIGN) {
            put(&segment, offset, 3000, &meta(offset, FLAG_CHECKSUM), b"");
        }
        assert_eq!(valid_frame_after(&segment, 288, &mut buffer), Err(544));
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn lengths_outside_the_area_are_damage_never_read() {
        let (segment, path) = segment("lengths");
        let mut buffer = FrameBuffer::new();
        let offset = CAPACITY - 64;
        for length in [-1, 1, HEADER_LEN as i32 - 1, 65, i32::MAX] {
            put(&segment, offset, length, &meta(offset, FLAG_CHECKSUM), b"");
            assert_eq!(
                read_slot(&segment, offset, &mut buffer),
                Err(Damage::BadLength { length, room: 64 }),
                "length {length}"
            );
        }
        assert_eq!(read_slot(&segment, 0, &mut buffer), Ok(Slot::Unwritten));
        assert_eq!(
            read_slot(&segment, CAPACITY, &mut buffer),
            Ok(Slot::AreaEnd)
        );
        // The largest frame that fits is read whole.
        put(&segment, offset, 64, &meta(offset, FLAG_CHECKSUM), &[7; 32]);
        let slot = read_slot(&segment, offset, &mut buffer).unwrap();
        assert_eq!(
            slot,
            Slot::Frame {
                meta: meta(offset, FLAG_CHECKSUM),
                length: 64
            }
        );
        assert_eq!(&buffer[HEADER_LEN..], &[7; 32]);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn frames_without_checksum_or_at_the_wrong_position_are_damage() {
        let (segment, path) = segment("fields");
        let mut buffer = FrameBuffer::new();
        put(&segment, 0, 40, &meta(0, 0), b"12345678");
        assert_eq!(read_slot(&segment, 0, &mut buffer), Err(Damage::NoChecksum));
        let mut moved = meta(0, FLAG_CHECKSUM);
        moved.sequence += 32;
        put(&segment, 0, 40, &moved, b"12345678");
        assert_eq!(
            read_slot(&segment, 0, &mut buffer),
            Err(Damage::WrongPosition {
                found: moved.sequence
            })
        );
        // A flipped sequence byte is caught by the checksum first.
        put(&segment, 0, 40, &meta(0, FLAG_CHECKSUM), b"12345678");
        // SAFETY: test segment, writable.
        unsafe { *frame_ptr(&segment, SEQUENCE_OFFSET) ^= 1 };
        assert!(matches!(
            read_slot(&segment, 0, &mut buffer),
            Err(Damage::Checksum { .. })
        ));
        let scan = scan_segment(&segment, &mut buffer);
        assert_eq!((scan.frames, scan.end), (0, 0));
        let _ = std::fs::remove_file(path);
    }
}
