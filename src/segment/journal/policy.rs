//! When the journal forces its frames to the disk.

use std::time::Duration;

/// When appended frames are written through to the disk (msync of the bytes
/// written since the last sync). For every policy but [`Durability::None`],
/// a new segment's header is fsynced before the segment is linked into
/// place, and the directory after.
///
/// Frames reach the page cache as they are appended, so a crash of the
/// writing *process* loses nothing under any policy: the policy only bounds
/// what a crash of the *machine* (power, kernel) can take.
///
/// The default is [`Durability::Every`] 100 ms: at most a tenth of a second
/// of frames at risk from a machine crash, at a cost of ten syncs a second
/// at most. The period is checked when a frame is appended and by
/// [`JournalWriter::tick`](crate::segment::journal::JournalWriter::tick):
/// a writer that may go quiet is ticked when
/// [`JournalWriter::sync_due_in`](crate::segment::journal::JournalWriter::sync_due_in)
/// says (`corelane serve --journal` does it with a core timer), so its last
/// frames are synced about one period after the previous sync even if no
/// append follows. A writer nobody ticks syncs them at its next append, or
/// when synced or dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Never sync; the kernel writes pages back when it likes.
    None,
    /// Sync after every `n` frames (`n` of 0 counts as 1).
    EveryFrames(u64),
    /// Sync at most this long after the last sync, when frames wait: at
    /// the append that finds the period over, or at the
    /// [`tick`](crate::segment::journal::JournalWriter::tick) at its end.
    Every(Duration),
    /// Sync after each frame, before `append` returns.
    EachFrame,
}

impl Default for Durability {
    fn default() -> Self {
        Durability::Every(Duration::from_millis(100))
    }
}

/// Settings of a journal writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalConfig {
    /// Bytes of frames in each new segment file, rounded up to the frame
    /// alignment and kept between one alignment unit and
    /// [`super::writer::MAX_SEGMENT_SIZE`]; the largest frame must fit in
    /// one. Default 64 MiB.
    pub segment_size: usize,
    /// When frames are synced to the disk. Default [`Durability::default`].
    pub durability: Durability,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            segment_size: 64 << 20,
            durability: Durability::default(),
        }
    }
}
