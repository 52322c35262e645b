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
//!
//! A segment before the last whose file is shorter than its header says
//! (or than any segment) was cut short after it was made: truncated under
//! a live writer, which abandoned it and went on in the next segment (see
//! [`super::writer`]). What it lost is lost, and refusing to open would
//! save none of it: the writer that found it already went on, and a
//! writer appends only after the last segment, never touching the cut one
//! or the frames after it. So recovery does as that writer did: it logs
//! the segment, reports it ([`RecoveryReport::cut_short`]), leaves it in
//! place, and appends resume after the last segment. It stays damage to
//! [`inspect`] and to readers, which stop there (a reader reaches the
//! frames after it when asked to start there); the segments after it are
//! checked as any others.
//!
//! A cut-short segment after every segment that holds frames (the last
//! one, cut to nothing, to its header page or inside its frames; or the
//! one a writer abandoned before it stopped, with only a segment that
//! holds no frame after it) is passed over the same way, after a sealed
//! segment or none. It once was taken, when nothing was left past its
//! header page, for a segment a crash left empty and removed, and new
//! frames were given positions it had held and acknowledged; when frames
//! were left, the journal was refused until the file was moved aside,
//! which did the same. Neither can be told apart from a crash's leftover
//! by the file alone, but positions must never go back, so appends
//! resume in a new segment past every position it could have held: where
//! its header (if what is left of it names the segment) says it ends,
//! else at its base plus [`MAX_SEGMENT_SIZE`], the most any writer puts
//! in a segment (its header went with the cut, so its size is unknown).
//! A segment that holds no frame and is based exactly there is reused
//! instead. The file is never changed or removed, whatever frames are
//! left in it. Where no segment fits past it, the writer refuses
//! ([`Damage::PositionsWrap`], naming the file). A crash does not cut a
//! segment short behind a sealed one: a roll seals the segment before it
//! links the next, and under a syncing policy the next one's size and
//! header are on the disk before it is linked; only under
//! [`super::Durability::None`] can a crash leave such a file, and the
//! cost there is a jump in positions, never a position used twice.
//!
//! Segments at the end of the directory that hold no frame are not
//! damage to the writer: a crash can leave one behind (the next segment
//! linked into place but never written, its size or header lost with the
//! machine before they reached the disk, or its first frame torn). The
//! writer's recovery reuses the first such segment when it is sound and
//! the one before it is sealed, and removes the others, logging each, so
//! appends resume after the last valid frame. (After a sealed segment,
//! one of them cut short is passed over instead, as above; after an
//! unsealed one, whose end marker never reached the disk, it can only be
//! a crash's, and is removed.) "No frame" is decided as a
//! torn tail is, from offset 0 (nothing valid anywhere in the segment);
//! a segment whose header cannot be read must be zero past its header
//! page. A segment that holds a valid frame is never removed: damage
//! before it is refused as above. [`inspect`] and the readers are
//! read-only: they leave such a segment where it is, and report one that
//! a crash between a roll and the first frame after it leaves (a
//! [`LeftoverSegment`]: the only one at the end, right where the journal's
//! last segment ends) as what it is, not as damage.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::dir::{list_segments, open_segment};
use super::error::{Damage, JournalError};
use super::scan::{
    damaged_extent, first_nonzero, frame_ptr, last_nonzero, read_slot, scan_segment,
    valid_frame_after, Ending, FrameBuffer, Slot,
};
use super::writer::MAX_SEGMENT_SIZE;
use crate::frame::layout::FRAME_ALIGN;
use crate::segment::layout::{
    BASE_POSITION_OFFSET, CAPACITY_OFFSET, HEADER_PAGE, KIND_OFFSET, MAGIC, MAGIC_OFFSET,
};
use crate::segment::{sync_directory, Access, Segment, SegmentError, SegmentKind};

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

/// A segment at the end of a journal, right where the segment before it
/// ends, that holds no frame, after a segment that was not sealed (or with
/// a header that cannot be read, its file not cut short): what a crash
/// between linking a segment at a roll and writing its first frame leaves
/// behind (see the module documentation). Not damage: the next writer's
/// recovery removes it and appends in the segment before it, whose frames
/// are all there. One cut short after a sealed segment is no leftover: it
/// may have held acknowledged frames, and is reported as damage (the
/// writer passes over it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeftoverSegment {
    /// The file.
    pub path: PathBuf,
    /// The position its name stands for.
    pub base: u64,
    /// Whether its header is sound; if not, its header or its size did not
    /// reach the disk before the crash.
    pub header_sound: bool,
}

/// What [`inspect`] found in a journal directory.
#[derive(Debug)]
pub struct Inspection {
    /// The segments checked, in position order, up to the first damage;
    /// not the [`leftover`](Self::leftover) (counted with them in
    /// [`segment_count`](Self::segment_count)).
    pub segments: Vec<SegmentSummary>,
    /// The first damage found; segments after it were not checked.
    pub damage: Option<JournalError>,
    /// A segment after the last one in `segments` that holds no frame and
    /// that the next writer removes (not damage).
    pub leftover: Option<LeftoverSegment>,
}

impl Inspection {
    /// Valid frames in all segments checked.
    pub fn frames(&self) -> u64 {
        self.segments.iter().map(|s| s.frames).sum()
    }

    /// Segment files checked: those in [`segments`](Self::segments) and
    /// the [`leftover`](Self::leftover), if any. A leftover is a segment
    /// file of the journal's directory all the same (the writer's
    /// [`RecoveryReport::segments`] counts it too, before removing it), so
    /// a count without it would say the directory holds one file fewer
    /// than it does. Segments after [`damage`](Self::damage) are not
    /// checked, so not counted.
    pub fn segment_count(&self) -> usize {
        self.segments.len() + usize::from(self.leftover.is_some())
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
    /// Segments at the end of the journal that held no frame and were
    /// removed (see the module documentation), in position order.
    pub removed: Vec<PathBuf>,
    /// Segments that were found cut short (see the module documentation),
    /// before the last or at the end: left in place, in position order;
    /// appends resume past each.
    pub cut_short: Vec<PathBuf>,
}

/// Checks every segment of the journal in `dir`, read-only, and reports
/// what it holds. Stops at the first damage (or unreadable segment) and
/// reports it in [`Inspection::damage`]; a torn tail in the last segment is
/// not damage (the writer's recovery cuts it) and is reported as such, nor
/// is a [`LeftoverSegment`] after it, reported in
/// [`Inspection::leftover`]. A segment that holds no frame after a sealed
/// one, with a sound header, is the journal's last segment, listed with
/// the others: the next frame goes there.
///
/// # Errors
///
/// [`JournalError::Io`] if the directory cannot be listed.
pub fn inspect(dir: &Path) -> Result<Inspection, JournalError> {
    let listed = list_segments(dir)?;
    let mut buffer = FrameBuffer::new();
    if let Some(leftover) = leftover(&listed, &mut buffer)? {
        // Checked as the writer's recovery checks it: without the
        // leftover, the segment before it is the last.
        let framed = &listed[..listed.len() - 1];
        let mut inspection = inspect_listed(framed, &mut buffer);
        let last = inspection.segments.last().filter(|last| {
            last.base.checked_add(last.capacity as u64) == Some(leftover.base)
                && !(last.sealed
                    && (leftover.header_sound || cut_short_error(&leftover.path).is_some()))
        });
        if inspection.damage.is_none() && last.is_some() {
            inspection.leftover = Some(leftover);
            return Ok(inspection);
        }
    }
    Ok(inspect_listed(&listed, &mut buffer))
}

/// [`inspect`] of the segments `listed`, every one of them part of the
/// journal.
fn inspect_listed(listed: &[(u64, PathBuf)], buffer: &mut FrameBuffer) -> Inspection {
    let mut inspection = Inspection {
        segments: Vec::new(),
        damage: None,
        leftover: None,
    };
    for (index, (base, path)) in listed.iter().enumerate() {
        let is_last = index + 1 == listed.len();
        match check_segment(path, *base, Access::ReadOnly, is_last, buffer) {
            Ok((summary, _segment, damage)) => {
                let next = summary.base.wrapping_add(summary.capacity as u64);
                inspection.segments.push(summary);
                if let Some(damage) = damage {
                    inspection.damage = Some(blame_what_follows(listed, index, damage));
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
    inspection
}

/// The last segment of `listed`, if it holds no frame and the one before
/// it does (as [`LeftoverSegment`] says a crash leaves one; whether it
/// sits where that one ends is for the caller to check).
fn leftover(
    listed: &[(u64, PathBuf)],
    buffer: &mut FrameBuffer,
) -> Result<Option<LeftoverSegment>, JournalError> {
    let trailing = frameless_trailing(listed, buffer)?;
    let ([kind], [.., _, (base, path)]) = (trailing.as_slice(), listed) else {
        return Ok(None);
    };
    Ok(Some(LeftoverSegment {
        path: path.clone(),
        base: *base,
        header_sound: *kind == Trailing::Sound,
    }))
}

/// Whether the journal in `dir` ends, past the segment based at `base`
/// that holds frames, in a segment based at `next` (where that one ends)
/// that holds no frame: listed last, right after it. For a reader stopped
/// at the unwritten slot of an unsealed segment, or at the end of a
/// sealed one whose successor cannot be opened: either way a
/// [`LeftoverSegment`]. `sealed` says whether the segment at `base` is.
///
/// # Errors
///
/// [`JournalError::Io`] if the directory cannot be listed or a file read.
pub(crate) fn ends_in_leftover(
    dir: &Path,
    base: u64,
    next: u64,
    sealed: bool,
    buffer: &mut FrameBuffer,
) -> Result<bool, JournalError> {
    let listed = list_segments(dir)?;
    let [.., (before, _), (last, path)] = listed.as_slice() else {
        return Ok(false);
    };
    if (*before, *last) != (base, next) {
        return Ok(false);
    }
    // After a sealed segment, one cut short is a truncated segment that the
    // writer passes over, not a leftover (see `recover`): damage here.
    if sealed && cut_short_error(path).is_some() {
        return Ok(false);
    }
    Ok(frameless(path, next, buffer)?.is_some())
}

/// Where the writer appends after recovery.
pub(crate) enum Resume {
    /// In this segment (opened for writing), from this offset.
    In(Segment, usize),
    /// In a first segment to be made, based at this position.
    New(u64),
}

/// The writer's recovery: checks every segment as [`inspect`] does, but
/// refuses any damage, cuts a torn tail, passes over segments cut short,
/// removes segments at the end that hold no frame (all but one it can
/// reuse), and says where appends resume, never below a position a
/// segment cut short could have held; a new segment is made
/// `segment_size` bytes long.
pub(crate) fn recover(
    dir: &Path,
    segment_size: usize,
) -> Result<(Resume, RecoveryReport), JournalError> {
    let mut listed = list_segments(dir)?;
    let mut buffer = FrameBuffer::new();
    let trailing = frameless_trailing(&listed, &mut buffer)?;
    let frameless = listed.split_off(listed.len() - trailing.len());
    let mut report = RecoveryReport {
        segments: listed.len() + frameless.len(),
        ..RecoveryReport::default()
    };
    let mut last = None;
    let mut expected_base = None;
    // Where appends must resume at the earliest, past a segment cut short
    // after every segment that holds frames (see `pass_over`).
    let mut past: Option<u64> = None;
    for (index, (base, path)) in listed.iter().enumerate() {
        if let Some(expected) = expected_base {
            if *base != expected {
                return Err(gap(path, expected, *base));
            }
        }
        let is_last = index + 1 == listed.len();
        let access = if is_last {
            Access::ReadWrite
        } else {
            Access::ReadOnly
        };
        let (summary, segment, damage) =
            match check_segment(path, *base, access, is_last, &mut buffer) {
                Err(JournalError::Segment(error)) if is_cut_short(&error) => {
                    past = Some(pass_over(path, *base, &error, &mut report)?);
                    expected_base = None;
                    continue;
                }
                result => result?,
            };
        if let Some(damage) = damage {
            return Err(blame_what_follows(&listed, index, damage));
        }
        report.frames += summary.frames;
        expected_base = Some(summary.base.wrapping_add(summary.capacity as u64));
        past = None;
        if is_last {
            last = Some((summary, segment));
        }
    }

    // Segments that hold no frame after a sealed one (or with none
    // before them) that were cut short may be truncated segments whose
    // frames were acknowledged (a crash leaves one only under
    // `Durability::None`: see the module documentation), so each is
    // passed over as above and appends resume past it. Any such segment
    // after an unsealed one is a crash's leftover (a roll seals the
    // segment before it links the next), removed below with the others.
    let sealed = last.as_ref().is_none_or(|(summary, _)| summary.sealed);
    let mut kept = 0;
    if sealed {
        let last_cut = frameless
            .iter()
            .rposition(|(_, path)| cut_short_error(path).is_some());
        if let Some(last_cut) = last_cut {
            for (base, path) in &frameless[..=last_cut] {
                if let Some(expected) = expected_base {
                    if *base != expected {
                        return Err(gap(path, expected, *base));
                    }
                }
                let Some(error) = cut_short_error(path) else {
                    // Between the journal and a truncated segment, and
                    // not one itself: what the next open would refuse
                    // once appends went on past it.
                    let (_, _, damage) =
                        check_segment(path, *base, Access::ReadOnly, false, &mut buffer)?;
                    return Err(damage.unwrap_or_else(|| JournalError::Damaged {
                        path: path.clone(),
                        position: *base,
                        damage: Damage::MissingEndMarker,
                    }));
                };
                past = Some(pass_over(path, *base, &error, &mut report)?);
                expected_base = None;
            }
            kept = last_cut + 1;
        }
    }
    let frameless = &frameless[kept..];
    let trailing = &trailing[kept..];
    // After a sealed segment, the next one a writer links starts where it
    // ends: one that holds no frame elsewhere stands past a gap (the
    // segments between moved out), as `inspect` reports. Removing it and
    // appending after the sealed segment would give the positions of the
    // missing segments again.
    if let (true, Some(expected), Some((base, path))) = (sealed, expected_base, frameless.first()) {
        if *base != expected {
            return Err(gap(path, expected, *base));
        }
    }

    // The first segment that holds no frame is reused if it is sound and
    // follows a sealed one (as the writer left it, linked at a roll and
    // never written); every other one would stand between the valid
    // frames and the next append, and goes.
    if past.is_some() {
        // Appends go on past the segment passed over, not in one before it.
        last = None;
    }
    let reusable = match (frameless.first(), trailing.first()) {
        (Some((base, path)), Some(Trailing::Sound))
            if sealed
                && expected_base.is_none_or(|expected| expected == *base)
                && past.is_none_or(|past| past <= *base) =>
        {
            Some((*base, path))
        }
        _ => None,
    };
    let mut remove = frameless;
    if let Some((base, path)) = reusable {
        let (summary, segment, damage) =
            check_segment(path, base, Access::ReadWrite, true, &mut buffer)?;
        if let Some(damage) = damage {
            return Err(damage);
        }
        last = Some((summary, segment));
        remove = &frameless[1..];
    }
    let first_base = frameless.first().map_or(0, |&(base, _)| base);
    let first_base = past.map_or(first_base, |past| past.max(first_base));
    if last.is_none() && (past.is_some() || !frameless.is_empty()) {
        // Appends start in a new segment where the first removed one was,
        // or past the segment passed over, so that positions go on from
        // there: refused, before anything is removed, where no segment
        // fits (a stray file named after a position near the top of the
        // range), as a roll there would be.
        if first_base.checked_add(segment_size as u64).is_none() {
            let path = frameless.first().map_or_else(
                || report.cut_short.last().cloned().unwrap_or_default(),
                |(_, path)| path.clone(),
            );
            return Err(JournalError::Damaged {
                path,
                position: first_base,
                damage: Damage::PositionsWrap,
            });
        }
    }
    for (_, path) in remove.iter().rev() {
        std::fs::remove_file(path).map_err(|e| JournalError::io(path, "unlink", e))?;
        log::warn!(
            "{}: removed a segment at the end of the journal that held no frame \
             (left by a crash); appends resume after the last valid frame",
            path.display()
        );
    }
    if !remove.is_empty() {
        sync_directory(dir)?;
        report.removed = remove.iter().map(|(_, path)| path.clone()).collect();
    }

    let Some((summary, segment)) = last else {
        return Ok((Resume::New(first_base), report));
    };
    let resume = (summary.end - summary.base) as usize;
    if let Some(tail) = summary.torn_tail {
        cut(&segment, resume)?;
        log::warn!(
            "{}: cut a torn tail of {} bytes at position {}",
            summary.path.display(),
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
    Ok((Resume::In(segment, resume), report))
}

/// Passes over the segment at `path`, based at `base`, whose file was cut
/// short (`error`, from opening it): logs it, reports it, and returns the
/// position appends must resume at the earliest, where the positions it
/// could have held end (see [`claimed_end`]).
fn pass_over(
    path: &Path,
    base: u64,
    error: &SegmentError,
    report: &mut RecoveryReport,
) -> Result<u64, JournalError> {
    let end = claimed_end(path, base)?.ok_or_else(|| JournalError::Damaged {
        path: path.to_path_buf(),
        position: base,
        damage: Damage::PositionsWrap,
    })?;
    log::error!(
        "{error}: the segment was cut short (truncated after it was written); the frames \
         it lost are lost, and readers from before it stop there as at any damage. Appends \
         resume after it, at position {end} or later, so that no position it held is used \
         again; the file is left in place"
    );
    report.cut_short.push(path.to_path_buf());
    Ok(end)
}

/// The error opening the segment at `path` gives if its
/// file was cut short ([`is_cut_short`]); `None` if it opens, or fails
/// otherwise.
fn cut_short_error(path: &Path) -> Option<SegmentError> {
    match open_segment(path, Access::ReadOnly) {
        Err(error) if is_cut_short(&error) => Some(error),
        _ => None,
    }
}

/// Where the positions of the segment at `path`, based at `base`, end:
/// by its capacity if what is left of its header names it (and `base`),
/// else by the largest capacity any writer makes ([`MAX_SEGMENT_SIZE`]),
/// since its header went with the cut. `None` if that end does not fit in
/// a `u64`.
fn claimed_end(path: &Path, base: u64) -> Result<Option<u64>, JournalError> {
    let mut header = [0u8; BASE_POSITION_OFFSET + 8];
    let mut file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| JournalError::io(path, "open", e))?;
    let mut read = 0;
    while read < header.len() {
        match file.read(&mut header[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(JournalError::io(path, "read", e)),
        }
    }
    let u64_at = |offset: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&header[offset..offset + 8]);
        u64::from_ne_bytes(bytes)
    };
    let mut kind = [0u8; 4];
    kind.copy_from_slice(&header[KIND_OFFSET..KIND_OFFSET + 4]);
    let named = read == header.len()
        && header[MAGIC_OFFSET..MAGIC_OFFSET + 8] == MAGIC
        && SegmentKind::from_code(u32::from_ne_bytes(kind)) == Some(SegmentKind::Journal)
        && u64_at(BASE_POSITION_OFFSET) == base;
    let capacity = match u64_at(CAPACITY_OFFSET) {
        capacity if named && capacity > 0 && capacity <= MAX_SEGMENT_SIZE as u64 => capacity,
        _ => MAX_SEGMENT_SIZE as u64,
    };
    Ok(base.checked_add(capacity))
}

/// Whether `error`, from opening a segment, says its file is shorter than
/// any segment or than its header implies: a file truncated after it was
/// made (every segment a writer makes has the length its header says).
pub(crate) fn is_cut_short(error: &SegmentError) -> bool {
    match error {
        SegmentError::TooShort { .. } => true,
        SegmentError::SizeMismatch {
            file_len, expected, ..
        } => file_len < expected,
        _ => false,
    }
}

/// `damage`, found in the segment that the file at `next` (named for
/// that base) follows, unless it is a missing end marker and that file is
/// no segment of this journal at all (a directory, a symlink loop, a file
/// that does not open as a journal segment, a link to a segment based
/// elsewhere): then the error is that file's, since the segment's frames
/// may all be fine and only the file after it is wrong.
pub(crate) fn blame_next(next: Option<(u64, &Path)>, damage: JournalError) -> JournalError {
    let (
        JournalError::Damaged {
            damage: Damage::MissingEndMarker,
            ..
        },
        Some((base, path)),
    ) = (&damage, next)
    else {
        return damage;
    };
    match open_segment(path, Access::ReadOnly) {
        Err(error) => error.into(),
        Ok(segment) if segment.header().base_position != base => JournalError::Damaged {
            path: path.to_path_buf(),
            position: base,
            damage: Damage::WrongBase {
                named: base,
                found: segment.header().base_position,
            },
        },
        Ok(_) => damage,
    }
}

/// [`blame_next`] for segment `index` of `listed`.
fn blame_what_follows(
    listed: &[(u64, PathBuf)],
    index: usize,
    damage: JournalError,
) -> JournalError {
    let next = listed
        .get(index + 1)
        .map(|(base, path)| (*base, path.as_path()));
    blame_next(next, damage)
}

/// Damage: the segment at `path` is based at `found`, not `expected`.
fn gap(path: &Path, expected: u64, found: u64) -> JournalError {
    JournalError::Damaged {
        path: path.to_path_buf(),
        position: expected,
        damage: Damage::Gap { expected, found },
    }
}

/// A segment at the end of a journal that holds no frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trailing {
    /// Its header is sound: it could be appended to.
    Sound,
    /// Its header or length cannot be trusted; its bytes past the header
    /// page are all zero.
    Unreadable,
}

/// The run of segments at the end of `listed` that hold no frame, in
/// position order (the last of `listed` last).
fn frameless_trailing(
    listed: &[(u64, PathBuf)],
    buffer: &mut FrameBuffer,
) -> Result<Vec<Trailing>, JournalError> {
    let mut trailing = Vec::new();
    for (base, path) in listed.iter().rev() {
        match frameless(path, *base, buffer)? {
            Some(kind) => trailing.push(kind),
            None => break,
        }
    }
    trailing.reverse();
    Ok(trailing)
}

/// Whether the segment at `path` holds no frame, and of which kind; `None`
/// if it holds one, or anything else that is not known to be nothing (a
/// segment of another kind, open to others, or not a file).
fn frameless(
    path: &Path,
    base: u64,
    buffer: &mut FrameBuffer,
) -> Result<Option<Trailing>, JournalError> {
    let segment = match open_segment(path, Access::ReadOnly) {
        Ok(segment) => segment,
        Err(
            SegmentError::TooShort { .. }
            | SegmentError::SizeMismatch { .. }
            | SegmentError::BadMagic { .. }
            | SegmentError::NotInitialised { .. },
        ) => return Ok(zero_past_header(path)?.then_some(Trailing::Unreadable)),
        Err(_) => return Ok(None),
    };
    if segment.header().base_position != base {
        let zero = first_nonzero(&segment, 0).is_none();
        segment.check_truncated()?;
        return Ok(zero.then_some(Trailing::Unreadable));
    }
    // As `check_segment` decides for a last segment whose scan stops at
    // its first slot (only that slot is read when it holds a frame).
    let none = match read_slot(&segment, 0, buffer) {
        Ok(Slot::Unwritten) => valid_frame_after(&segment, FRAME_ALIGN, buffer) == Ok(None),
        Err(damage) => torn_tail_at(&segment, 0, base, damage, buffer).is_some(),
        Ok(Slot::Frame { .. } | Slot::EndMarker | Slot::AreaEnd) => false,
    };
    segment.check_truncated()?;
    Ok(none.then_some(Trailing::Sound))
}

/// Whether every byte of the file at `path` past its header page is zero
/// (and it is a regular file no longer than any segment a writer makes).
fn zero_past_header(path: &Path) -> Result<bool, JournalError> {
    let mut file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| JournalError::io(path, "open", e))?;
    let metadata = file
        .metadata()
        .map_err(|e| JournalError::io(path, "fstat", e))?;
    let largest = (HEADER_PAGE + MAX_SEGMENT_SIZE + HEADER_PAGE) as u64;
    if !metadata.is_file() || metadata.len() > largest {
        return Ok(false);
    }
    let mut chunk = vec![0u8; 1 << 16];
    let mut read = 0;
    loop {
        let n = match file.read(&mut chunk) {
            Ok(0) => return Ok(true),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(JournalError::io(path, "read", e)),
        };
        let skip = HEADER_PAGE.saturating_sub(read).min(n);
        if chunk[skip..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        read += n;
    }
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
            damage: Damage::WrongBase {
                named: base,
                found: segment.header().base_position,
            },
        });
    }
    // No writer makes a segment whose positions, or the position where it
    // ends, do not fit in a u64 (a planted one): every position computed
    // in it would be a wrap or an overflow.
    if base
        .checked_add(segment.layout().capacity() as u64)
        .is_none()
    {
        return Err(JournalError::Damaged {
            path: path.to_path_buf(),
            position: base,
            damage: Damage::PositionsWrap,
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
