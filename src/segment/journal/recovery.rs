//! Checking a journal directory: the writer's recovery on open, and the
//! report `corelane journal inspect` prints.
//!
//! Every segment is scanned from its start, each frame validated (length
//! bounds, checksum, position). The decision on damage:
//!
//! - A sealed segment (one that a later segment follows) must be valid up
//!   to its end marker or its end. Anything else is damage, reported with
//!   its position; the writer refuses to open, because frames appended
//!   after damage could never be read.
//! - In the last segment, the first slot that is not a valid frame ends the
//!   journal. It is a *torn tail* if nothing was written after the bad
//!   frame's claimed extent (a writer killed between filling a frame and
//!   publishing its length leaves an unpublished frame, or a machine crash
//!   leaves a frame whose pages reached the disk only in part). Recovery
//!   zeroes a torn tail so the next append overwrites it cleanly, and
//!   reports how many bytes it cut. A bad frame with data after it, or a
//!   valid frame anywhere after it (whatever its length word claims: a
//!   length flipped to zero or to the segment's size must not hide the
//!   committed frames behind it), is damage, refused as above.

use std::path::{Path, PathBuf};

use super::dir::{list_segments, open_segment};
use super::error::{Damage, JournalError};
use super::scan::{
    damaged_extent, first_nonzero, frame_ptr, last_nonzero, scan_segment, valid_frame_after,
    Ending, FrameBuffer,
};
use crate::frame::layout::FRAME_ALIGN;
use crate::segment::{Access, Segment};

/// A torn tail: bytes after the last valid frame that were cut (or, from
/// [`inspect`], would be cut by the writer's recovery).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// Position where the tail starts (the end of the valid frames).
    pub position: u64,
    /// Bytes from there to the last non-zero byte.
    pub bytes: usize,
    /// What was wrong with the frame there, if it had a length at all.
    pub damage: Option<Damage>,
}

/// One segment, as [`inspect`] found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentSummary {
    /// The file.
    pub path: PathBuf,
    /// Position of its first byte.
    pub base: u64,
    /// Bytes in its frame area.
    pub capacity: usize,
    /// Valid frames in it.
    pub frames: u64,
    /// Position of its first valid frame.
    pub first: Option<u64>,
    /// Position of its last valid frame.
    pub last: Option<u64>,
    /// Position where its valid frames end.
    pub end: u64,
    /// Whether it is sealed (an end marker, or full).
    pub sealed: bool,
    /// A torn tail after the valid frames (last segment only).
    pub torn_tail: Option<TornTail>,
}

/// What [`inspect`] found in a journal directory.
#[derive(Debug)]
pub struct Inspection {
    /// The segments checked, in position order, up to the first damage.
    pub segments: Vec<SegmentSummary>,
    /// The first damage found; segments after it were not checked.
    pub damage: Option<JournalError>,
}

impl Inspection {
    /// Valid frames in all segments checked.
    pub fn frames(&self) -> u64 {
        self.segments.iter().map(|s| s.frames).sum()
    }
}

/// What the writer's recovery found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments found.
    pub segments: usize,
    /// Valid frames found in all of them.
    pub frames: u64,
    /// The torn tail that was cut, if any.
    pub torn_tail: Option<TornTail>,
}

/// Checks every segment of the journal in `dir`, read-only, and reports
/// what it holds. Stops at the first damage (or unreadable segment) and
/// reports it in [`Inspection::damage`]; a torn tail in the last segment is
/// not damage (the writer's recovery cuts it) and is reported as such.
///
/// # Errors
///
/// [`JournalError::Io`] if the directory cannot be listed.
pub fn inspect(dir: &Path) -> Result<Inspection, JournalError> {
    let listed = list_segments(dir)?;
    let mut buffer = FrameBuffer::new();
    let mut inspection = Inspection {
        segments: Vec::new(),
        damage: None,
    };
    for (index, (base, path)) in listed.iter().enumerate() {
        let is_last = index + 1 == listed.len();
        match check_segment(path, *base, Access::ReadOnly, is_last, &mut buffer) {
            Ok((summary, _segment, damage)) => {
                let next = summary.base.wrapping_add(summary.capacity as u64);
                inspection.segments.push(summary);
                if damage.is_some() {
                    inspection.damage = damage;
                    break;
                }
                if let Some(&(found, _)) = listed.get(index + 1) {
                    if found != next {
                        inspection.damage = Some(JournalError::Damaged {
                            path: path.clone(),
                            position: next,
                            damage: Damage::Gap {
                                expected: next,
                                found,
                            },
                        });
                        break;
                    }
                }
            }
            Err(error) => {
                inspection.damage = Some(error);
                break;
            }
        }
    }
    Ok(inspection)
}

/// The writer's recovery: checks every segment as [`inspect`] does, but
/// refuses any damage, cuts a torn tail, and returns the last segment
/// opened for writing with the offset where appends resume.
pub(crate) fn recover(
    dir: &Path,
) -> Result<(Option<(Segment, usize)>, RecoveryReport), JournalError> {
    let listed = list_segments(dir)?;
    let mut buffer = FrameBuffer::new();
    let mut report = RecoveryReport {
        segments: listed.len(),
        ..RecoveryReport::default()
    };
    let mut last = None;
    let mut expected_base = None;
    for (index, (base, path)) in listed.iter().enumerate() {
        if let Some(expected) = expected_base {
            if *base != expected {
                return Err(JournalError::Damaged {
                    path: path.clone(),
                    position: expected,
                    damage: Damage::Gap {
                        expected,
                        found: *base,
                    },
                });
            }
        }
        let is_last = index + 1 == listed.len();
        let access = if is_last {
            Access::ReadWrite
        } else {
            Access::ReadOnly
        };
        let (summary, segment, damage) = check_segment(path, *base, access, is_last, &mut buffer)?;
        if let Some(damage) = damage {
            return Err(damage);
        }
        report.frames += summary.frames;
        expected_base = Some(summary.base.wrapping_add(summary.capacity as u64));
        if is_last {
            let resume = (summary.end - summary.base) as usize;
            if let Some(tail) = summary.torn_tail {
                cut(&segment, resume)?;
                log::warn!(
                    "{}: cut a torn tail of {} bytes at position {}",
                    path.display(),
                    tail.bytes,
                    tail.position
                );
                report.torn_tail = Some(tail);
            }
            let resume = if summary.sealed {
                summary.capacity
            } else {
                resume
            };
            last = Some((segment, resume));
        }
    }
    Ok((last, report))
}

/// Opens and scans one segment. A damaged sealed segment, or a damaged
/// frame with data after it, is returned as the third element, with the
/// summary of the valid frames before it; a bad last frame with nothing
/// after it is reported as a torn tail.
fn check_segment(
    path: &Path,
    base: u64,
    access: Access,
    is_last: bool,
    buffer: &mut FrameBuffer,
) -> Result<(SegmentSummary, Segment, Option<JournalError>), JournalError> {
    let segment = open_segment(path, access)?;
    if segment.header().base_position != base {
        return Err(JournalError::Damaged {
            path: path.to_path_buf(),
            position: base,
            damage: Damage::WrongPosition {
                found: segment.header().base_position,
            },
        });
    }
    let scan = scan_segment(&segment, buffer);
    let end = base.wrapping_add(scan.end as u64);
    let damaged = |damage| {
        Some(JournalError::Damaged {
            path: path.to_path_buf(),
            position: end,
            damage,
        })
    };
    // A frame that validates after the slot where the scan stopped means
    // that slot is damage in the middle, not the end of what was written.
    let mut frames_after =
        || valid_frame_after(&segment, scan.end + FRAME_ALIGN, buffer) != Ok(None);
    let (sealed, torn_tail, damage) = match scan.ending {
        Ending::Sealed | Ending::Full => (true, None, None),
        Ending::Open if !is_last => (false, None, damaged(Damage::MissingEndMarker)),
        Ending::Open if frames_after() => {
            let room = segment.layout().capacity() - scan.end;
            (false, None, damaged(Damage::BadLength { length: 0, room }))
        }
        Ending::Open => (false, tail_after(&segment, scan.end, end, None), None),
        Ending::Damaged(damage) => {
            let torn = is_last
                .then(|| torn_tail_at(&segment, scan.end, end, damage.clone(), buffer))
                .flatten();
            match torn {
                Some(tail) => (false, Some(tail), None),
                None => (false, None, damaged(damage)),
            }
        }
    };
    // Zeros read from a file cut during the scan are no verdict on it.
    segment.check_truncated()?;
    let summary = SegmentSummary {
        path: path.to_path_buf(),
        base,
        capacity: segment.layout().capacity(),
        frames: scan.frames,
        first: scan.first,
        last: scan.last,
        end,
        sealed,
        torn_tail,
    };
    Ok((summary, segment, damage))
}

/// The torn tail at `offset` of a journal's last segment, where a frame
/// holds `damage`: if nothing was written past the frame's claimed extent
/// and no valid frame follows it (whatever its length word claims), the
/// writer died writing it. `None` if it is damage instead.
pub(crate) fn torn_tail_at(
    segment: &Segment,
    offset: usize,
    position: u64,
    damage: Damage,
    buffer: &mut FrameBuffer,
) -> Option<TornTail> {
    let extent = damaged_extent(segment, offset);
    if first_nonzero(segment, extent).is_some()
        || valid_frame_after(segment, offset + FRAME_ALIGN, buffer) != Ok(None)
    {
        return None;
    }
    tail_after(segment, offset, position, Some(damage))
}

/// The torn tail from `offset`, if any byte there is non-zero.
fn tail_after(
    segment: &Segment,
    offset: usize,
    position: u64,
    damage: Option<Damage>,
) -> Option<TornTail> {
    let last = last_nonzero(segment, offset)?;
    Some(TornTail {
        position,
        bytes: last + 1 - offset,
        damage,
    })
}

/// Zeroes the frame area from `offset` to its end, then writes it through.
fn cut(segment: &Segment, offset: usize) -> Result<(), JournalError> {
    let capacity = segment.layout().capacity();
    // SAFETY: the segment is mapped writable (recovery opens the last one
    // ReadWrite) and `offset..capacity` is inside its frame area; this
    // process holds the journal's writer lock, so no other writer touches
    // it, and readers treat the zeroed bytes as unwritten.
    unsafe { frame_ptr(segment, offset).write_bytes(0, capacity - offset) };
    segment.check_truncated()?;
    segment.sync_range(segment.layout().frames_offset() + offset, capacity - offset)?;
    Ok(())
}
