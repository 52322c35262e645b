//! What can go wrong with a journal, and where.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::dir::segment_name;
use super::recovery::is_cut_short;
use crate::frame::FrameError;
use crate::segment::SegmentError;

/// Why a frame of a segment cannot be trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Damage {
    /// The length word is negative, shorter than a header, or runs past
    /// the end of the segment.
    BadLength {
        /// The length word found.
        length: i32,
        /// Bytes left in the segment from the frame's start.
        room: usize,
    },
    /// The frame carries no checksum; every journal frame has one.
    NoChecksum,
    /// The checksum does not match the frame's bytes.
    Checksum {
        /// Stored in the header.
        stored: u32,
        /// Computed over the frame.
        computed: u32,
    },
    /// The frame says it belongs at another position (moved or copied).
    WrongPosition {
        /// The position in the frame's header.
        found: u64,
    },
    /// A segment file's header gives a base other than the one its name
    /// stands for (renamed, or copied in from elsewhere). Not a frame's
    /// damage: the frames are never read, since every position in the file
    /// would be off by the difference.
    WrongBase {
        /// The base the file's name stands for.
        named: u64,
        /// The base in the file's header.
        found: u64,
    },
    /// A segment that a later one follows ends without an end marker.
    MissingEndMarker,
    /// The segment ends past the largest position (its header's base and
    /// capacity wrap around `u64`).
    PositionsWrap,
    /// The next segment is not where the previous one ends.
    Gap {
        /// Where the next segment was expected to start.
        expected: u64,
        /// Where the next segment found starts.
        found: u64,
    },
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::BadLength { length, room } => write!(
                f,
                "impossible frame length {length} ({room} bytes left in the segment)"
            ),
            Damage::NoChecksum => f.write_str("frame has no checksum"),
            Damage::Checksum { stored, computed } => write!(
                f,
                "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            Damage::WrongPosition { found } => {
                write!(f, "frame says it is at position {found}")
            }
            Damage::WrongBase { named, found } => write!(
                f,
                "its name says the segment starts at position {named} but its header says \
                 {found} (renamed or copied from elsewhere): move it out of the journal \
                 directory, or rename it {} if it belongs at {found}",
                segment_name(*found)
            ),
            Damage::MissingEndMarker => f.write_str(
                "segment ends without an end marker, yet a later segment follows it \
                 (a writer seals a segment before it starts the next)",
            ),
            Damage::PositionsWrap => write!(
                f,
                "segment would run past the largest position ({}), where no writer \
                 puts one",
                u64::MAX
            ),
            Damage::Gap { expected, found } if found >= expected => write!(
                f,
                "no segment starts at position {expected}, where the one before ends: \
                 the next segment file, {next}, starts at {found}, so the positions from \
                 {expected} up to {found} are missing: put {missing} back if it was moved \
                 out, or move {next} out of the journal directory if it does not belong there",
                next = segment_name(*found),
                missing = segment_name(*expected),
            ),
            Damage::Gap { expected, found } => write!(
                f,
                "the next segment file, {next}, starts at position {found}, inside the \
                 segment before it, which ends at {expected} (renamed or copied from \
                 elsewhere): move {next} out of the journal directory",
                next = segment_name(*found),
            ),
        }
    }
}

/// Why a journal operation failed. Every variant names the file or
/// position concerned.
#[derive(Debug)]
pub enum JournalError {
    /// A segment file could not be created or opened (bad header, too
    /// short, wrong permissions, ...).
    Segment(SegmentError),
    /// A system call failed.
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The operating system's error.
        source: io::Error,
    },
    /// A frame cannot be trusted; nothing after it is read.
    Damaged {
        /// The segment file.
        path: PathBuf,
        /// The journal position of the bad frame.
        position: u64,
        /// What is wrong with it.
        damage: Damage,
    },
    /// A frame is larger than a whole segment: it can never be appended.
    FrameTooLarge {
        /// Bytes the frame would occupy.
        len: usize,
        /// Bytes in a segment's frame area.
        segment_size: usize,
    },
    /// Another writer holds the directory's lock.
    Locked {
        /// The directory.
        dir: PathBuf,
    },
    /// A read was asked to start where no frame starts.
    NotAFrameStart {
        /// The position asked for.
        position: u64,
        /// Where the frame that holds `position` starts, if one does (not
        /// in the unused end of a full segment).
        frame: Option<u64>,
    },
    /// A read was asked to start past the last frame written.
    PastEnd {
        /// The position asked for.
        position: u64,
        /// Where the journal ends.
        end: u64,
    },
    /// A read was asked to start before the first segment.
    BeforeStart {
        /// The position asked for.
        position: u64,
        /// Where the first segment starts.
        first: u64,
    },
    /// The journal's positions are used up: the next segment would start
    /// past `u64::MAX` (only a segment planted near the top gets there).
    PositionsExhausted {
        /// The directory.
        dir: PathBuf,
        /// The position the refused frame would have had.
        position: u64,
    },
    /// The message could not be serialized.
    Encode(String),
    /// A frame is valid but not the message type asked for, or its payload
    /// failed rkyv validation.
    Frame {
        /// The frame's position.
        position: u64,
        /// What is wrong.
        error: FrameError,
    },
}

impl JournalError {
    /// Whether this is a segment file cut short after it was made (shorter
    /// than any segment, or than its header says): one the writer's
    /// recovery leaves as it is, resuming appends past every position it
    /// could have held (see [`RecoveryReport::cut_short`]), while
    /// [`inspect`] and the readers report it as damage.
    ///
    /// [`RecoveryReport::cut_short`]: super::RecoveryReport::cut_short
    /// [`inspect`]: super::inspect
    pub fn is_cut_short(&self) -> bool {
        matches!(self, JournalError::Segment(error) if is_cut_short(error))
    }

    pub(crate) fn io(path: &Path, op: &'static str, source: io::Error) -> Self {
        JournalError::Io {
            path: path.to_path_buf(),
            op,
            source,
        }
    }
}

impl From<SegmentError> for JournalError {
    fn from(error: SegmentError) -> Self {
        JournalError::Segment(error)
    }
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalError::Segment(error) => error.fmt(f),
            JournalError::Io { path, op, source } => {
                write!(f, "{}: {op} failed: {source}", path.display())
            }
            JournalError::Damaged {
                path,
                position,
                damage,
            } => match damage {
                // The header is wrong, not a frame: say so, not "damaged
                // frame" (`damage` names both bases).
                Damage::WrongBase { .. } => {
                    write!(f, "{}: wrong segment header: {damage}", path.display())
                }
                // Neither are these three a frame's damage: each says what
                // it is, with the positions concerned.
                Damage::Gap { .. } => {
                    write!(f, "{}: segments not contiguous: {damage}", path.display())
                }
                Damage::PositionsWrap => write!(
                    f,
                    "{}: positions run out: the segment at position {position} would run \
                     past the largest position ({}), where no writer puts one (renamed, \
                     or planted near the top of the range): move it out of the journal \
                     directory",
                    path.display(),
                    u64::MAX
                ),
                Damage::MissingEndMarker => write!(
                    f,
                    "{}: segment not sealed: it ends at position {position} without an end \
                     marker, yet a later segment follows it (a writer seals a segment before \
                     it starts the next): the file was replaced by an older copy, or a later \
                     segment file was put in from elsewhere; move out whichever does not \
                     belong to this journal (the frames before position {position} can \
                     still be read)",
                    path.display()
                ),
                _ => write!(
                    f,
                    "{}: damaged frame at position {position}: {damage}",
                    path.display()
                ),
            },
            JournalError::FrameTooLarge { len, segment_size } => write!(
                f,
                "a frame of {len} bytes can never fit in a segment of {segment_size} bytes"
            ),
            JournalError::Locked { dir } => {
                write!(f, "{}: another journal writer holds it", dir.display())
            }
            JournalError::NotAFrameStart {
                position,
                frame: Some(frame),
            } => write!(
                f,
                "no frame starts at position {position}: it is inside the frame at {frame}"
            ),
            JournalError::NotAFrameStart {
                position,
                frame: None,
            } => write!(f, "no frame starts at position {position}"),
            JournalError::PastEnd { position, end } => {
                write!(f, "position {position} is past the journal's end ({end})")
            }
            JournalError::BeforeStart { position, first } => write!(
                f,
                "position {position} is before the journal's first segment ({first})"
            ),
            JournalError::PositionsExhausted { dir, position } => write!(
                f,
                "journal {}: no segment can follow position {position}: positions are used up",
                dir.display()
            ),
            JournalError::Encode(reason) => write!(f, "cannot serialize message: {reason}"),
            JournalError::Frame { position, error } => {
                write!(f, "frame at position {position}: {error}")
            }
        }
    }
}

impl std::error::Error for JournalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JournalError::Segment(error) => Some(error),
            JournalError::Io { source, .. } => Some(source),
            JournalError::Frame { error, .. } => Some(error),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks that the damage `damage` at `position` of segment
    /// 0000000000001000.journal reads as `expected`, and not as a damaged
    /// frame.
    fn assert_reads(position: u64, damage: Damage, expected: &str) {
        let text = JournalError::Damaged {
            path: PathBuf::from("/j/0000000000001000.journal"),
            position,
            damage,
        }
        .to_string();
        assert_eq!(text, expected);
        assert!(!text.contains("damaged frame"), "{text}");
    }

    /// A gap between segments is named as such, with the segment files
    /// and positions on both sides and what to do: not "damaged frame".
    #[test]
    fn a_gap_says_which_positions_are_missing() {
        assert_reads(
            8192,
            Damage::Gap {
                expected: 8192,
                found: 12288,
            },
            "/j/0000000000001000.journal: segments not contiguous: no segment starts at \
             position 8192, where the one before ends: the next segment file, \
             0000000000003000.journal, starts at 12288, so the positions from 8192 up to 12288 \
             are missing: put 0000000000002000.journal back if it was moved out, or move \
             0000000000003000.journal out of the journal directory if it does not belong there",
        );
    }

    /// A segment named inside the one before it overlaps it: said so.
    #[test]
    fn an_overlapping_segment_is_named_as_such() {
        assert_reads(
            8192,
            Damage::Gap {
                expected: 8192,
                found: 4608,
            },
            "/j/0000000000001000.journal: segments not contiguous: the next segment file, \
             0000000000001200.journal, starts at position 4608, inside the segment before it, \
             which ends at 8192 (renamed or copied from elsewhere): move \
             0000000000001200.journal out of the journal directory",
        );
    }

    #[test]
    fn positions_that_wrap_are_named_as_such() {
        let base = u64::MAX - 4095;
        assert_reads(
            base,
            Damage::PositionsWrap,
            &format!(
                "/j/0000000000001000.journal: positions run out: the segment at position {base} \
                 would run past the largest position (18446744073709551615), where no \
                 writer puts one (renamed, or planted near the top of the range): move it \
                 out of the journal directory"
            ),
        );
    }

    #[test]
    fn a_missing_end_marker_is_named_as_such() {
        assert_reads(
            5000,
            Damage::MissingEndMarker,
            "/j/0000000000001000.journal: segment not sealed: it ends at position 5000 without \
             an end marker, yet a later segment follows it (a writer seals a segment \
             before it starts the next): the file was replaced by an older copy, or a \
             later segment file was put in from elsewhere; move out whichever does not \
             belong to this journal (the frames before position 5000 can still be read)",
        );
    }

    /// A frame's damage still reads as one.
    #[test]
    fn a_damaged_frame_still_says_so() {
        let text = JournalError::Damaged {
            path: PathBuf::from("/j/0000000000001000.journal"),
            position: 64,
            damage: Damage::NoChecksum,
        }
        .to_string();
        assert_eq!(
            text,
            "/j/0000000000001000.journal: damaged frame at position 64: frame has no checksum"
        );
    }
}
