//! Reading a journal, from its start or a position, and following a live
//! writer across rolls.
//!
//! The reader copies each frame out of the mapping and validates it
//! (length, checksum and position) before handing it out, so it never returns
//! a torn or flipped frame; it stops at the first damage and keeps
//! returning that error. At the end of what has been written it returns
//! `Ok(None)` ("no more yet"): the caller polls again later. At a
//! segment's end marker (or its exact end) it moves to the next segment
//! file once the writer has created it.
//!
//! "No more yet" is all one slot can say. A caller that will stop there,
//! or has waited there a while, asks [`JournalReader::check_end`] whether
//! the journal really ends there (the damage `inspect` finds around an
//! unwritten slot), and [`JournalReader::torn_tail`] whether damage met
//! there is only the torn tail a killed writer left.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use rkyv::api::high::HighValidator;
use rkyv::bytecheck::CheckBytes;
use rkyv::{rancor, Archived};

use super::dir::{list_segments, open_segment, segment_path};
use super::error::{Damage, JournalError};
use super::recovery::{blame_next, ends_in_leftover, torn_tail_at, TornTail};
use super::scan::{read_slot, valid_frame_after, FrameBuffer, Slot};
use crate::frame::envelope::{access_untrusted, check_type};
use crate::frame::layout::{aligned_len, FrameMeta, FRAME_ALIGN, PAYLOAD_OFFSET};
use crate::frame::Message;
use crate::segment::{Access, Segment, SegmentError};

/// Where a [`JournalReader`] starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// At the first frame of the first segment.
    Beginning,
    /// At the frame with this position (as returned by the writer).
    Position(u64),
}

/// One frame read from the journal: a copy, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalFrame<'a> {
    /// The frame's position.
    pub position: u64,
    /// Its header fields.
    pub meta: FrameMeta,
    /// Its payload, 16-byte aligned.
    pub payload: &'a [u8],
}

impl<'a> JournalFrame<'a> {
    /// The payload as an archived `M`, after checking the frame's type and
    /// validating the archive (journal bytes are untrusted).
    ///
    /// # Errors
    ///
    /// [`JournalError::Frame`] naming the position, if the frame holds
    /// another type or an invalid archive.
    pub fn message<M>(&self) -> Result<&'a Archived<M>, JournalError>
    where
        M: Message,
        Archived<M>: for<'b> CheckBytes<HighValidator<'b, rancor::Error>>,
    {
        let wrap = |error| JournalError::Frame {
            position: self.position,
            error,
        };
        check_type::<M>(&self.meta).map_err(wrap)?;
        access_untrusted::<M>(self.payload).map_err(wrap)
    }
}

/// Reads a journal directory frame by frame.
#[derive(Debug)]
pub struct JournalReader {
    dir: PathBuf,
    /// The segment being read, once it exists.
    segment: Option<Segment>,
    /// Base position of the segment being read (or awaited).
    base: u64,
    /// Offset of the next frame in its frame area.
    offset: usize,
    /// The last frame read, copied out of the mapping.
    buffer: FrameBuffer,
    /// The position where [`check_end`](JournalReader::check_end) last
    /// found no frame further on in the segment, so that a reader resting
    /// there does not scan the rest of the segment again and again.
    checked_end: Option<u64>,
    /// The torn tail [`torn_tail`](JournalReader::torn_tail) last found,
    /// kept for the same reason.
    torn: Option<TornTail>,
    /// The position where the reader last found the journal ending in a
    /// leftover segment (see [`leftover`](JournalReader::leftover)), so
    /// that a reader resting there does not check it again and again.
    leftover_at: Option<u64>,
}

/// What one step of reading found, before the frame is lent out.
enum Step {
    Frame { meta: FrameMeta, length: usize },
    NoMoreYet,
    NextSegment,
}

impl JournalReader {
    /// Opens the journal in `dir` for reading from `start`.
    ///
    /// # Errors
    ///
    /// [`JournalError::Io`] if the directory cannot be listed; for a
    /// [`Start::Position`], [`JournalError::BeforeStart`],
    /// [`JournalError::NotAFrameStart`] or [`JournalError::PastEnd`] if no
    /// frame starts there, and any error reading the frames before it.
    pub fn open(dir: &Path, start: Start) -> Result<JournalReader, JournalError> {
        let segments = list_segments(dir)?;
        let mut reader = JournalReader {
            dir: dir.to_path_buf(),
            segment: None,
            base: segments.first().map_or(0, |&(base, _)| base),
            offset: 0,
            buffer: FrameBuffer::new(),
            checked_end: None,
            torn: None,
            leftover_at: None,
        };
        if let Start::Position(position) = start {
            // An empty journal ends at position 0: reading from there waits
            // for the first frame, and anything further is past the end.
            if segments.is_empty() {
                if position == 0 {
                    return Ok(reader);
                }
                return Err(JournalError::PastEnd { position, end: 0 });
            }
            let Some(&(base, _)) = segments.iter().rev().find(|&&(base, _)| base <= position)
            else {
                return Err(JournalError::BeforeStart {
                    position,
                    first: reader.base,
                });
            };
            reader.base = base;
            reader.seek(position)?;
        }
        Ok(reader)
    }

    /// The position of the next frame to be read.
    pub fn position(&self) -> u64 {
        self.base.wrapping_add(self.offset as u64)
    }

    /// The next frame, or `None` if the writer has written nothing more
    /// yet.
    ///
    /// # Errors
    ///
    /// [`JournalError::Damaged`] naming the position of a frame that fails
    /// validation, [`JournalError::Segment`] if the next segment file is
    /// unreadable. The reader stays where it was: calling again returns
    /// the same error.
    pub fn next_frame(&mut self) -> Result<Option<JournalFrame<'_>>, JournalError> {
        loop {
            match self.step()? {
                Step::NoMoreYet => return Ok(None),
                Step::NextSegment => match self.advance_segment() {
                    Ok(true) => {}
                    Ok(false) => return Ok(None),
                    // A sealed segment's successor whose header or size
                    // never reached the disk: the next writer removes it
                    // and makes it again.
                    Err(error) => {
                        let next = self.next_base();
                        let (dir, base, offset) = (&self.dir, self.base, self.offset);
                        if Self::at_leftover(dir, base, offset, next, true, &mut self.leftover_at)?
                        {
                            return Ok(None);
                        }
                        return Err(error);
                    }
                },
                Step::Frame { meta, length } => {
                    let position = self.position();
                    self.offset += aligned_len(length);
                    return Ok(Some(JournalFrame {
                        position,
                        meta,
                        payload: &self.buffer[PAYLOAD_OFFSET..length],
                    }));
                }
            }
        }
    }

    /// Reads the slot at the current offset.
    fn step(&mut self) -> Result<Step, JournalError> {
        if self.segment.is_none() && !self.open_current()? {
            return Ok(Step::NoMoreYet);
        }
        let segment = self.segment.as_ref().expect("opened just above");
        let damaged = |damage| JournalError::Damaged {
            path: segment.path().to_path_buf(),
            position: self.base.wrapping_add(self.offset as u64),
            damage,
        };
        // A truncation under the mapping turns what was cut into zeros
        // (see `segment::sigbus`): checked after each read, before its
        // result (a frame, damage, or "nothing yet") is believed.
        let slot = read_slot(segment, self.offset, &mut self.buffer);
        segment.check_truncated()?;
        match slot.map_err(damaged)? {
            Slot::Frame { meta, length } => Ok(Step::Frame { meta, length }),
            Slot::EndMarker | Slot::AreaEnd => Ok(Step::NextSegment),
            Slot::Unwritten => {
                // Pages untouched since a truncation do not fault: the
                // reader waits on this one, so ask the file's length.
                segment.check_length()?;
                // The writer seals a segment before it creates the next: if
                // the next exists, this slot must be filled by now.
                // Any file under the next segment's name counts (lstat, not
                // stat): a symlink loop or a dangling link there is no
                // segment, and must not pass for "not made yet".
                let next = self.next_base();
                if !is_named(&segment_path(&self.dir, next)) {
                    return Ok(Step::NoMoreYet);
                }
                let slot = read_slot(segment, self.offset, &mut self.buffer);
                segment.check_truncated()?;
                match slot.map_err(damaged)? {
                    Slot::Unwritten
                        if Self::at_leftover(
                            &self.dir,
                            self.base,
                            self.offset,
                            next,
                            false,
                            &mut self.leftover_at,
                        )? =>
                    {
                        Ok(Step::NoMoreYet)
                    }
                    Slot::Unwritten => Err(blame_next(
                        Some((next, &segment_path(&self.dir, next))),
                        damaged(Damage::MissingEndMarker),
                    )),
                    Slot::Frame { meta, length } => Ok(Step::Frame { meta, length }),
                    Slot::EndMarker | Slot::AreaEnd => Ok(Step::NextSegment),
                }
            }
        }
    }

    /// Checks that the journal really ends where the reader stands, as
    /// [`inspect`](super::inspect) would judge it, after
    /// [`next_frame`](Self::next_frame) said "nothing more yet": for a
    /// reader that will not wait for more, or has waited a while.
    /// `next_frame` alone cannot tell a writer that has not written yet
    /// from these, which look the same at the reader's slot:
    ///
    /// - a segment file named after a later position (whatever it is: an
    ///   empty file, a symlink loop, a directory): the current segment
    ///   should have been sealed before it was made, so its unwritten slot
    ///   is [`Damage::MissingEndMarker`], or, if that file is no segment
    ///   of this journal at all, the error of that file (as
    ///   [`inspect`](super::inspect) and the writer report it);
    /// - a valid frame further on in the current segment: the unwritten
    ///   slot hides frames written after it ([`Damage::BadLength`] of 0).
    ///
    /// Each is checked against the slot again after it is seen, so a live
    /// writer that fills the slot meanwhile (it seals a segment before it
    /// makes the next, and publishes frames in order) is not taken for
    /// damage. The scan for frames further on reads the rest of the
    /// segment, so it is made once per position the reader stops at.
    ///
    /// # Errors
    ///
    /// The damage, as [`next_frame`](Self::next_frame) reports it (a
    /// damaged frame at the reader's slot included);
    /// [`JournalError::Io`] if the directory cannot be listed.
    pub fn check_end(&mut self) -> Result<(), JournalError> {
        let listed = list_segments(&self.dir)?;
        let later = listed.iter().find(|&&(base, _)| base > self.base);
        if self.segment.is_none() && !self.open_current()? {
            // Nothing read yet (a reader opened on an empty directory), and
            // the journal that appeared since starts further on: read it
            // from there.
            if let Some(&(first, _)) = listed.first() {
                self.base = self.base.max(first);
            }
            return Ok(());
        }
        let position = self.position();
        let next = self.next_base();
        let segment = self.segment.as_ref().expect("opened just above");
        let damaged = |damage| JournalError::Damaged {
            path: segment.path().to_path_buf(),
            position,
            damage,
        };
        let read = |buffer: &mut FrameBuffer| {
            let slot = read_slot(segment, self.offset, buffer);
            segment.check_truncated()?;
            slot.map_err(damaged)
        };
        if read(&mut self.buffer)? != Slot::Unwritten {
            // A frame, or the segment's end: there is more to read.
            return Ok(());
        }
        segment.check_length()?;
        let later = match later {
            Some(_)
                if Self::at_leftover(
                    &self.dir,
                    self.base,
                    self.offset,
                    next,
                    false,
                    &mut self.leftover_at,
                )? =>
            {
                None
            }
            later => later,
        };
        if let Some((base, path)) = later {
            // Listed before the slot was read: had the writer made that
            // segment, it would have sealed this one first.
            let next = Some((*base, path.as_path()));
            return Err(blame_next(next, damaged(Damage::MissingEndMarker)));
        }
        if self.checked_end == Some(position) {
            return Ok(());
        }
        let after = valid_frame_after(segment, self.offset + FRAME_ALIGN, &mut self.buffer);
        segment.check_truncated()?;
        if after != Ok(None) && read(&mut self.buffer)? == Slot::Unwritten {
            let room = segment.layout().capacity() - self.offset;
            return Err(damaged(Damage::BadLength { length: 0, room }));
        }
        self.checked_end = Some(position);
        Ok(())
    }

    /// The torn tail the reader has stopped at, if the damage
    /// [`next_frame`](Self::next_frame) reports at its position is one as
    /// [`inspect`](super::inspect) and the writer's recovery judge it: a
    /// frame in the last segment with nothing written past its claimed
    /// extent and no valid frame after it, which a writer killed while
    /// writing it leaves, and the next writer cuts (zeroes) before it
    /// appends there. `None` at a valid frame, an unwritten slot, or
    /// damage that is not a torn tail.
    ///
    /// The scan of the rest of the segment is made once per position; the
    /// directory is listed each time, since a later segment makes the
    /// frame damage.
    ///
    /// # Errors
    ///
    /// [`JournalError::Io`] if the directory cannot be listed;
    /// [`JournalError::Segment`] if the segment was truncated.
    pub fn torn_tail(&mut self) -> Result<Option<TornTail>, JournalError> {
        let position = self.position();
        let next = self.next_base();
        let Some(segment) = &self.segment else {
            return Ok(None);
        };
        let slot = read_slot(segment, self.offset, &mut self.buffer);
        segment.check_truncated()?;
        let Err(damage) = slot else {
            return Ok(None);
        };
        if list_segments(&self.dir)?
            .iter()
            .any(|&(b, _)| b > self.base)
            && !Self::at_leftover(
                &self.dir,
                self.base,
                self.offset,
                next,
                false,
                &mut self.leftover_at,
            )?
        {
            return Ok(None);
        }
        if let Some(torn) = self.torn.as_ref().filter(|t| t.position == position) {
            return Ok(Some(torn.clone()));
        }
        let torn = torn_tail_at(segment, self.offset, position, damage, &mut self.buffer);
        segment.check_truncated()?;
        self.torn.clone_from(&torn);
        Ok(torn)
    }

    /// The segment the journal ends in past the reader's position, if it is
    /// a [`LeftoverSegment`](super::LeftoverSegment): one that holds no
    /// frame, linked at a roll from the segment the reader is in, with a
    /// crash before its first frame. It is no damage, as
    /// [`inspect`](super::inspect) reports it: the next writer removes it
    /// and appends after the frames the reader has read. `None` anywhere
    /// else, or until [`next_frame`](Self::next_frame),
    /// [`check_end`](Self::check_end) or [`torn_tail`](Self::torn_tail) has
    /// stopped there.
    pub fn leftover(&self) -> Option<PathBuf> {
        (self.leftover_at == Some(self.position()))
            .then(|| segment_path(&self.dir, self.next_base()))
    }

    /// Whether the journal in `dir` ends in a leftover segment past
    /// `offset` of the segment based at `base`, which ends at `next` (see
    /// [`leftover`](Self::leftover)); checked once per position, the last
    /// one found kept in `found_at`. Only a segment that holds frames
    /// before `offset` can be the one before a leftover; `sealed` says
    /// whether the segment at `base` is (then a successor cut short is no
    /// leftover but damage, as the writer's recovery takes it).
    fn at_leftover(
        dir: &Path,
        base: u64,
        offset: usize,
        next: u64,
        sealed: bool,
        found_at: &mut Option<u64>,
    ) -> Result<bool, JournalError> {
        let position = base.wrapping_add(offset as u64);
        if *found_at == Some(position) {
            return Ok(true);
        }
        if offset == 0 {
            return Ok(false);
        }
        // A buffer of its own: the reader's may hold the frame it lent out
        // last, and this is seldom asked (only where a later segment is
        // named while the reader's slot is unwritten).
        let found = ends_in_leftover(dir, base, next, sealed, &mut FrameBuffer::new())?;
        if found {
            *found_at = Some(position);
        }
        Ok(found)
    }

    fn next_base(&self) -> u64 {
        let capacity = self.segment.as_ref().map_or(0, |s| s.layout().capacity());
        self.base.wrapping_add(capacity as u64)
    }

    /// Moves to the next segment if it exists yet.
    fn advance_segment(&mut self) -> Result<bool, JournalError> {
        let next = self.next_base();
        if next <= self.base {
            // Positions wrapped around u64 (a hostile header): following
            // them could go round the same files forever.
            return Err(JournalError::Damaged {
                path: segment_path(&self.dir, self.base),
                position: self.base,
                damage: Damage::PositionsWrap,
            });
        }
        let previous = (self.segment.take(), self.base, self.offset);
        self.base = next;
        self.offset = 0;
        let opened = self.open_current();
        let base = previous.1;
        if let Ok(true) = opened {
            // A file named between the two is no segment any writer made:
            // reported as the gap `inspect` sees there, not passed over.
            let stray = list_segments(&self.dir)
                .map(|listed| listed.into_iter().find(|&(b, _)| b > base && b < next));
            match stray {
                Ok(None) => return Ok(true),
                Ok(Some((found, _))) => {
                    (self.segment, self.base, self.offset) = previous;
                    return Err(JournalError::Damaged {
                        path: segment_path(&self.dir, base),
                        position: next,
                        damage: Damage::Gap {
                            expected: next,
                            found,
                        },
                    });
                }
                Err(error) => {
                    (self.segment, self.base, self.offset) = previous;
                    return Err(error);
                }
            }
        }
        (self.segment, self.base, self.offset) = previous;
        opened?;

        // The next segment is not there. Normally the writer has not made
        // it yet; but if a later one exists, the frames between are gone
        // and stopping here quietly would hide everything after them.
        let later = list_segments(&self.dir)?
            .into_iter()
            .map(|(base, _)| base)
            .find(|&base| base > self.base);
        match later {
            // Named after the segment the chain breaks at, as `inspect`
            // names it.
            Some(found) if found != next => Err(JournalError::Damaged {
                path: segment_path(&self.dir, self.base),
                position: next,
                damage: Damage::Gap {
                    expected: next,
                    found,
                },
            }),
            _ => Ok(false),
        }
    }

    /// Opens the segment based at `self.base`; `false` if it is not there.
    fn open_current(&mut self) -> Result<bool, JournalError> {
        let path = segment_path(&self.dir, self.base);
        let segment = match open_segment(&path, Access::ReadOnly) {
            Ok(segment) => segment,
            Err(SegmentError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
                return Ok(false)
            }
            Err(error) => return Err(error.into()),
        };
        if segment.header().base_position != self.base {
            return Err(JournalError::Damaged {
                path,
                position: self.base,
                damage: Damage::WrongBase {
                    named: self.base,
                    found: segment.header().base_position,
                },
            });
        }
        // As recovery refuses it: no writer makes a segment whose end does
        // not fit in a u64.
        if self
            .base
            .checked_add(segment.layout().capacity() as u64)
            .is_none()
        {
            return Err(JournalError::Damaged {
                path,
                position: self.base,
                damage: Damage::PositionsWrap,
            });
        }
        self.segment = Some(segment);
        Ok(true)
    }

    /// Walks the frames of the current segment up to `position`.
    fn seek(&mut self, position: u64) -> Result<(), JournalError> {
        if !self.open_current()? {
            return Err(JournalError::PastEnd {
                position,
                end: self.base,
            });
        }
        let capacity = self.segment.as_ref().map_or(0, |s| s.layout().capacity());
        let target = usize::try_from(position - self.base).unwrap_or(usize::MAX);
        // The last frame passed: the one that holds `position` if it is no
        // frame's start, which the error names as a place to start instead.
        let mut frame = None;
        while self.offset < target {
            match self.step()? {
                Step::Frame { length, .. } => {
                    frame = Some(self.position());
                    self.offset += aligned_len(length);
                }
                Step::NextSegment if target >= capacity => {
                    return if target == capacity {
                        self.offset = capacity;
                        Ok(())
                    } else {
                        Err(JournalError::PastEnd {
                            position,
                            end: self.next_base(),
                        })
                    };
                }
                Step::NextSegment => {
                    return Err(JournalError::NotAFrameStart {
                        position,
                        frame: None,
                    })
                }
                Step::NoMoreYet => {
                    return Err(JournalError::PastEnd {
                        position,
                        end: self.position(),
                    })
                }
            }
        }
        if self.offset != target {
            return Err(JournalError::NotAFrameStart { position, frame });
        }
        Ok(())
    }
}

/// Whether anything has `path` as its name (a link counts, wherever it
/// points). An error other than "not found" counts too: the name is there
/// but cannot be looked at, which is no reason to say nothing follows.
fn is_named(path: &Path) -> bool {
    match std::fs::symlink_metadata(path) {
        Ok(_) => true,
        Err(error) => error.kind() != ErrorKind::NotFound,
    }
}
