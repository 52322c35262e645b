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

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use rkyv::api::high::HighValidator;
use rkyv::bytecheck::CheckBytes;
use rkyv::{rancor, Archived};

use super::dir::{list_segments, open_segment, segment_path};
use super::error::{Damage, JournalError};
use super::scan::{read_slot, FrameBuffer, Slot};
use crate::frame::envelope::{access_untrusted, check_type};
use crate::frame::layout::{aligned_len, FrameMeta, PAYLOAD_OFFSET};
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
                Step::NextSegment => {
                    if !self.advance_segment()? {
                        return Ok(None);
                    }
                }
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
                let next = self.next_base();
                if !segment_path(&self.dir, next).exists() {
                    return Ok(Step::NoMoreYet);
                }
                let slot = read_slot(segment, self.offset, &mut self.buffer);
                segment.check_truncated()?;
                match slot.map_err(damaged)? {
                    Slot::Unwritten => Err(damaged(Damage::MissingEndMarker)),
                    Slot::Frame { meta, length } => Ok(Step::Frame { meta, length }),
                    Slot::EndMarker | Slot::AreaEnd => Ok(Step::NextSegment),
                }
            }
        }
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
        if self.open_current()? {
            return Ok(true);
        }
        (self.segment, self.base, self.offset) = previous;

        // The next segment is not there. Normally the writer has not made
        // it yet; but if a later one exists, the frames between are gone
        // and stopping here quietly would hide everything after them.
        let later = list_segments(&self.dir)?
            .into_iter()
            .map(|(base, _)| base)
            .find(|&base| base > self.base);
        match later {
            Some(found) if found != next => Err(JournalError::Damaged {
                path: segment_path(&self.dir, next),
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
                damage: Damage::WrongPosition {
                    found: segment.header().base_position,
                },
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
