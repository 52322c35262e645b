//! The reading end of a ring shared with another process.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::error::{IpcError, WriterGone};
use super::liveness;
use super::reader::{IpcFrame, RingReader};
use crate::segment::{Access, Segment, SegmentHeader, SegmentKind, SegmentRegion};

/// Empty drains between two looks at the writer's lock, unless changed
/// with [`IpcSubscriber::set_probe_every`].
pub const DEFAULT_PROBE_EVERY: u32 = 1024;

/// Reads the frames an [`IpcPublisher`] in another process writes.
///
/// Opening validates the file (length from `fstat`, every header field) and
/// the ring's positions; reading checks every length and checksum and
/// hands out private copies of the frames only (see [`RingReader`]).
///
/// # When the writer goes
///
/// The subscriber never decides on a timeout. When a drain finds nothing
/// to read it counts; every [`DEFAULT_PROBE_EVERY`] empty drains (or as
/// set) it asks whether the writer still holds its lock. Once the lock is
/// free the writer has exited or been killed, and nothing more will be
/// published; the subscriber then reads what is left, and when the ring is
/// empty it reports [`IpcError::WriterGone`]: the position it reached, the
/// frames it delivered, and whether the writer left a frame half-written
/// (bytes written, length never published). Such a frame is never
/// delivered, nor anything after it. Every later drain reports the same.
///
/// [`IpcPublisher`]: super::IpcPublisher
pub struct IpcSubscriber {
    reader: RingReader<SegmentRegion>,
    segment: Arc<Segment>,
    /// Empty drains since the last probe of the writer's lock.
    empty_drains: u32,
    probe_every: u32,
    /// Set once a probe found the writer's lock free.
    writer_dead: bool,
    gone: Option<WriterGone>,
}

impl IpcSubscriber {
    /// Opens the ring at `path`, takes its one subscriber seat and resumes
    /// reading at its stored `head`.
    ///
    /// # Errors
    ///
    /// [`IpcError::Segment`] for a file that is not a valid ring (C09),
    /// [`IpcError::Ring`] or [`IpcError::Positions`] for a ring whose
    /// capacity or positions are impossible, [`IpcError::SubscriberAttached`]
    /// if another subscriber reads it.
    pub fn open(path: &Path) -> Result<Self, IpcError> {
        let segment = Arc::new(Segment::open(
            path,
            SegmentKind::IpcRing,
            Access::ReadWrite,
        )?);
        let seated = liveness::try_take_subscriber_seat(segment.file()).map_err(|source| {
            IpcError::Lock {
                path: path.to_path_buf(),
                op: "fcntl(F_OFD_SETLK)",
                source,
            }
        })?;
        if !seated {
            return Err(IpcError::SubscriberAttached {
                path: path.to_path_buf(),
            });
        }
        let region = Arc::clone(&segment)
            .ring_region()
            .expect("opened read-write");
        Ok(IpcSubscriber {
            reader: RingReader::attach(region)?,
            segment,
            empty_drains: 0,
            probe_every: DEFAULT_PROBE_EVERY,
            writer_dead: false,
            gone: None,
        })
    }

    /// Looks at the writer's lock every `drains` empty drains (at least 1:
    /// every time). A probe is a system call; spinning readers keep the
    /// default, readers that sleep between drains may lower it.
    pub fn set_probe_every(&mut self, drains: u32) {
        self.probe_every = drains.max(1);
    }

    /// The ring file's validated header.
    pub fn header(&self) -> &SegmentHeader {
        self.segment.header()
    }

    /// Position of the next frame to read.
    pub fn position(&self) -> u64 {
        self.reader.position()
    }

    /// Frames (padding aside) delivered so far.
    pub fn delivered(&self) -> u64 {
        self.reader.delivered()
    }

    /// The writer's last heartbeat, in nanoseconds on the system's
    /// monotonic clock (information only; see the type's doc).
    pub fn heartbeat_ns(&self) -> u64 {
        self.segment.heartbeat().load(Ordering::Relaxed)
    }

    /// Whether the writer still holds its lock, asked now.
    ///
    /// # Errors
    ///
    /// [`IpcError::Lock`] if the lock cannot be probed.
    pub fn writer_alive(&self) -> Result<bool, IpcError> {
        liveness::writer_holds_lock(self.segment.file()).map_err(|source| IpcError::Lock {
            path: self.segment.path().to_path_buf(),
            op: "flock",
            source,
        })
    }

    /// The reader's drain, with the truncation guard around it: a frame
    /// copied from a page cut off by a truncation holds zeros (see
    /// `segment::sigbus`), so it is never lent out, and the drain reports
    /// the truncation instead of anything it found.
    fn drain_guarded(
        &mut self,
        max: usize,
        on_frame: &mut impl FnMut(IpcFrame<'_>),
    ) -> Result<usize, IpcError> {
        let segment = &self.segment;
        let read = self.reader.drain(max, |frame| {
            if !segment.truncated() {
                on_frame(frame);
            }
        });
        self.segment.check_truncated()?;
        read
    }

    /// Reads up to `max` frames in order, lending a private copy of each to
    /// `on_frame`. Returns how many; zero when none is published yet.
    ///
    /// # Errors
    ///
    /// [`IpcError::WriterGone`] once the writer has gone and every frame it
    /// published has been delivered (see the type's doc);
    /// [`IpcError::Segment`] with [`SegmentError::Truncated`](crate::segment::SegmentError::Truncated) once the ring
    /// file is found truncated (a page of it faulted, or a probe's fstat
    /// found it short), on this and every later drain; the errors of
    /// [`RingReader::drain`] for a corrupt ring (frames before the bad one
    /// are delivered first).
    pub fn drain(
        &mut self,
        max: usize,
        mut on_frame: impl FnMut(IpcFrame<'_>),
    ) -> Result<usize, IpcError> {
        if let Some(gone) = self.gone {
            return Err(IpcError::WriterGone(gone));
        }
        let read = self.drain_guarded(max, &mut on_frame)?;
        if read > 0 || max == 0 {
            self.empty_drains = 0;
            return Ok(read);
        }
        if !self.writer_dead {
            self.empty_drains += 1;
            if self.empty_drains < self.probe_every {
                return Ok(0);
            }
            self.empty_drains = 0;
            // Pages untouched since a truncation do not fault: ask the
            // file's length while waiting.
            self.segment.check_length()?;
            if self.writer_alive()? {
                return Ok(0);
            }
            self.writer_dead = true;
            // The writer is gone, so nothing is being written: what is
            // published now is all there will be. Frames it published just
            // before it went may have arrived since the drain above.
            let read = self.drain_guarded(max, &mut on_frame)?;
            if read > 0 {
                return Ok(read);
            }
        }
        let gone = WriterGone {
            position: self.reader.position(),
            frames: self.reader.delivered(),
            half_written: self.reader.unpublished_bytes_at_head(),
        };
        log::info!(
            "{}: ring writer gone after {} frames",
            self.segment.path().display(),
            gone.frames
        );
        self.gone = Some(gone);
        Err(IpcError::WriterGone(gone))
    }
}
