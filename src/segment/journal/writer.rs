//! The journal's one writer: appends checksummed frames, rolls to a new
//! segment when the next frame does not fit, and syncs by its policy.
//!
//! A frame is written as a lane producer writes one: header fields and
//! payload first, then the length word with `Release`, so a reader in
//! another process never sees a length before the bytes it covers. A frame
//! that does not fit in what is left of a segment is preceded by an *end
//! marker* (a padding-type frame) there, and goes first in a new segment
//! based where the old one ends.
//!
//! The next segment is prepared ahead, on a thread of its own: created
//! under a private name (`<name>.next`, which readers and recovery ignore),
//! its header synced to the disk (unless the policy is
//! [`Durability::None`]), its first pages faulted in for writing, and
//! renamed into place at the roll, the directory synced after it. One
//! prepared for another base than the roll needs (the current segment
//! changed since it was asked for) is removed, with a log line, and made
//! again where the journal goes on; so is a prepared file found under the
//! name about to be made, and the writer's open removes (and logs) any
//! left by an earlier writer. First
//! writes to fresh pages of a fallocated file are expensive (a page fault
//! each, and the filesystem marking the space written), so the writer
//! faults pages in ahead of its tail, [`POPULATE_AHEAD`] bytes at a time
//! in one call, rather than one fault per page inside appends.
//!
//! Only that window is faulted in, never a whole segment: faulted-in pages
//! of the mapping are resident, and a server with many cores opens one
//! journal per core. Faulting in whole 64 MiB segments (current and next)
//! made `serve --cores 32 --journal` take 4 GiB and many seconds before
//! the first message.
//!
//! A segment file truncated under the writer (by another process: see
//! `segment::sigbus`) has lost what it held past its new end, and the
//! writer cannot put it back. It *abandons* that segment: writes nothing
//! more to it, logs once which positions it may have lost, and moves on to
//! a new segment based where the abandoned one ends, so appends go on. The
//! abandoned file stays where it is, as evidence: readers and `corelane
//! journal inspect` report it as damage (nothing after it is read quietly
//! past it), and a reader reaches the frames after it only when asked to
//! start there. A later writer's recovery logs it and goes on after the
//! last segment, as this writer did, or past the abandoned segment if the
//! writer stopped before writing the next (see [`super::recovery`]).

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rkyv::ser::allocator::Arena;

use super::dir::{parse_segment_name, segment_name, segment_path, LOCK_FILE};
use super::error::JournalError;
use super::policy::{Durability, JournalConfig};
use super::recovery::{recover, RecoveryReport, Resume};
use super::scan::frame_ptr;
use super::sync_clock::SyncClock;
use crate::frame::envelope::{encode_into, encoded_len};
use crate::frame::layout::{
    aligned_len, checksum, write_meta, FrameMeta, FLAG_CHECKSUM, FRAME_ALIGN, HEADER_LEN,
    LENGTH_OFFSET, PADDING_TYPE, PAYLOAD_OFFSET,
};
use crate::frame::{Encodes, Message};
use crate::segment::{sync_directory, Segment, SegmentError, SegmentKind, SEGMENT_MODE};

/// The largest segment a writer creates: a frame's length must fit the
/// `i32` length word.
pub const MAX_SEGMENT_SIZE: usize = 1 << 30;

/// Bytes of a segment's frame area faulted in ahead of the tail at a time:
/// when the tail comes within half of this of the end of what was faulted
/// in, the next window is. Also how much of a prepared segment is faulted
/// in before its roll.
pub const POPULATE_AHEAD: usize = 1 << 20;

/// A segment the writer stopped appending to because its file was
/// truncated under it (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AbandonedSegment {
    /// The segment file, left in place.
    pub path: PathBuf,
    /// The first position it held.
    pub base: u64,
    /// Where the writer's frames in it ended: positions `base..end` may
    /// be lost (those past the file's new end are).
    pub end: u64,
    /// Where the next segment starts: appends continue there.
    pub next: u64,
}

/// Appends frames to the journal in one directory.
///
/// # Examples
///
/// ```
/// use corelane::frame::layout::FrameMeta;
/// use corelane::segment::journal::{JournalConfig, JournalReader, JournalWriter, Start};
///
/// let dir = std::env::temp_dir().join(format!("corelane-doc-journal-{}", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&dir);
/// let mut writer = JournalWriter::open(&dir, JournalConfig::default())?;
/// let meta = FrameMeta { msg_type: 9, version: 1, ..FrameMeta::default() };
/// let position = writer.append(b"hello", meta)?;
///
/// let mut reader = JournalReader::open(&dir, Start::Beginning)?;
/// let frame = reader.next_frame()?.expect("one frame");
/// assert_eq!((frame.position, frame.payload), (position, &b"hello"[..]));
/// assert!(reader.next_frame()?.is_none()); // nothing more yet
/// # drop(writer);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct JournalWriter {
    dir: PathBuf,
    config: JournalConfig,
    /// The segment being appended to.
    segment: Segment,
    /// Offset in its frame area of the next frame.
    tail: usize,
    /// Offset up to which its frames have been synced.
    synced: usize,
    /// Offset up to which its frame area's pages have been faulted in for
    /// writing (see [`POPULATE_AHEAD`]).
    populated: usize,
    /// Frames appended since the last sync.
    unsynced_frames: u64,
    /// When the last sync was made, on `clock`.
    last_sync_ns: u64,
    /// Syncs made since the writer opened (each an msync).
    syncs: u64,
    /// The clock [`Durability::Every`] is measured on.
    clock: SyncClock,
    /// [`Durability::Every`]'s period in nanoseconds (converted once).
    period_ns: u64,
    /// Scratch space for rkyv serialization.
    arena: Arena,
    /// What recovery found when the writer opened.
    recovery: RecoveryReport,
    /// The next segment, being prepared.
    next: Option<JoinHandle<Result<Segment, JournalError>>>,
    /// Segments abandoned because their file was truncated under the
    /// writer, the latest last.
    abandoned: Vec<AbandonedSegment>,
    /// Held (with an exclusive `flock`) for as long as the writer lives.
    _lock: File,
}

impl std::fmt::Debug for JournalWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalWriter")
            .field("dir", &self.dir)
            .field("config", &self.config)
            .field("position", &self.position())
            .field("synced_position", &self.synced_position())
            .field("syncs", &self.syncs)
            .finish()
    }
}

impl JournalWriter {
    /// Opens the journal in `dir` for appending, creating the directory and
    /// a first segment if needed. Runs recovery first
    /// ([`super::recovery`]): every segment is checked, a torn tail cut,
    /// segments at the end that hold no frame (left by a crash) removed,
    /// and appends resume after the last valid frame.
    ///
    /// # Errors
    ///
    /// [`JournalError::Locked`] if another writer has the directory,
    /// [`JournalError::Damaged`] if a frame before the end cannot be
    /// trusted, [`JournalError::Segment`] if a segment file is unreadable,
    /// [`JournalError::Io`] if a system call fails.
    pub fn open(dir: &Path, config: JournalConfig) -> Result<JournalWriter, JournalError> {
        let config = JournalConfig {
            segment_size: aligned_len(config.segment_size.clamp(FRAME_ALIGN, MAX_SEGMENT_SIZE)),
            ..config
        };
        std::fs::create_dir_all(dir).map_err(|e| JournalError::io(dir, "create directory", e))?;
        let lock = lock_directory(dir)?;
        remove_stale_prepared(dir)?;
        let (last, recovery) = recover(dir, config.segment_size)?;
        let (segment, tail) = match last {
            Resume::In(segment, tail) => (segment, tail),
            Resume::New(base) => {
                let segment = prepare_segment(dir, &config, base, false)?;
                (link_segment(segment, dir, &config, base)?, 0)
            }
        };
        let clock = SyncClock::default();
        let mut writer = JournalWriter {
            dir: dir.to_path_buf(),
            config,
            segment,
            tail,
            synced: tail,
            populated: tail,
            unsynced_frames: 0,
            last_sync_ns: clock.now_ns(),
            syncs: 0,
            clock,
            period_ns: match config.durability {
                Durability::Every(period) => u64::try_from(period.as_nanos()).unwrap_or(u64::MAX),
                _ => u64::MAX,
            },
            arena: Arena::new(),
            recovery,
            next: None,
            abandoned: Vec::new(),
            _lock: lock,
        };
        writer.populate_ahead();
        writer.prepare_next();
        Ok(writer)
    }

    /// What recovery found when the writer opened.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// The position the next frame will have (unless it rolls).
    pub fn position(&self) -> u64 {
        self.segment.header().base_position + self.tail as u64
    }

    /// The journal's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The position up to which frames have been synced: every frame
    /// before it is on the disk. Lags [`position`](Self::position) by the
    /// frames the policy has not synced yet (and stays put under
    /// [`Durability::None`]).
    pub fn synced_position(&self) -> u64 {
        self.segment.header().base_position + self.synced as u64
    }

    /// Syncs made since the writer opened, whatever asked for them (an
    /// append, [`tick`](Self::tick), [`sync`](Self::sync) or a roll). A sync
    /// with nothing to write is not counted.
    pub fn syncs(&self) -> u64 {
        self.syncs
    }

    /// Measures [`Durability::Every`] on `clock` (nanoseconds that never go
    /// back) instead of the monotonic clock ([`crate::clock::now_ns`]):
    /// for a runtime on a virtual clock, or a test. The period restarts
    /// from the clock's time now.
    pub fn set_clock(&mut self, clock: impl Fn() -> u64 + Send + Sync + 'static) {
        self.clock = SyncClock::new(clock);
        self.last_sync_ns = self.clock.now_ns();
    }

    /// When the frames not yet synced must be, under [`Durability::Every`]:
    /// nanoseconds on the writer's clock, or `None` if nothing waits for a
    /// deadline (no unsynced frame, or another policy).
    pub fn sync_deadline_ns(&self) -> Option<u64> {
        match self.config.durability {
            Durability::Every(_) if self.unsynced_frames > 0 => {
                Some(self.last_sync_ns.saturating_add(self.period_ns))
            }
            _ => None,
        }
    }

    /// How long from now until [`sync_deadline_ns`](Self::sync_deadline_ns)
    /// (zero if it has passed): when to call [`tick`](Self::tick) next.
    pub fn sync_due_in(&self) -> Option<Duration> {
        let deadline = self.sync_deadline_ns()?;
        Some(Duration::from_nanos(
            deadline.saturating_sub(self.clock.now_ns()),
        ))
    }

    /// Keeps the [`Durability::Every`] promise when appends stop: syncs the
    /// frames not yet synced if their deadline has come, and returns
    /// whether it synced. An append checks the period too, so a writer that
    /// appends steadily needs no ticks; one that may go quiet must be
    /// ticked by [`sync_due_in`](Self::sync_due_in) after each append (a
    /// core timer in `corelane serve --journal`; an embedder's own timer or
    /// loop otherwise), else its last frames wait for the next append or
    /// the drop.
    ///
    /// # Errors
    ///
    /// [`JournalError::Segment`] if msync fails.
    pub fn tick(&mut self) -> Result<bool, JournalError> {
        match self.sync_deadline_ns() {
            Some(deadline) if self.clock.now_ns() >= deadline => {
                // The frames waiting for this sync sit on pages that do not
                // fault if the file was cut (they are simply gone): ask its
                // length, so that a quiet writer finds out too.
                if self.segment.check_length().is_err() && self.segment.truncated() {
                    self.abandon()?;
                }
                self.sync()?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Appends a frame holding `payload`, with `meta`'s type, version and
    /// timestamp (its sequence is set to the frame's position and its
    /// checksum always), and returns the frame's position.
    ///
    /// # Errors
    ///
    /// [`JournalError::FrameTooLarge`] if the frame can never fit in a
    /// segment; [`JournalError::Segment`] or [`JournalError::Io`] if
    /// rolling or syncing fails. A segment file truncated under the writer
    /// is abandoned and the frame appended to a new segment (see
    /// [`abandoned`](Self::abandoned)); only if that fails too is the
    /// append refused.
    pub fn append(&mut self, payload: &[u8], meta: FrameMeta) -> Result<u64, JournalError> {
        self.past_truncation(|writer| writer.append_here(payload, meta))
    }

    /// [`append`](Self::append) in the current segment (or the next, if it
    /// rolls), whatever state its file is in.
    fn append_here(&mut self, payload: &[u8], meta: FrameMeta) -> Result<u64, JournalError> {
        let length = PAYLOAD_OFFSET + payload.len();
        self.make_room(aligned_len(length))?;
        let frame = frame_ptr(&self.segment, self.tail);
        // SAFETY: `make_room` made sure `aligned_len(length)` bytes from
        // `tail` lie inside the writable frame area; nothing else writes
        // there (the writer lock) and readers do not read past a length of
        // zero, which it is until `publish`.
        unsafe {
            frame
                .add(PAYLOAD_OFFSET)
                .copy_from_nonoverlapping(payload.as_ptr(), payload.len())
        };
        self.publish(length, meta)
    }

    /// Serializes `msg` in place into a new frame, timestamped
    /// `timestamp_ns`, and returns the frame's position.
    ///
    /// # Errors
    ///
    /// As [`JournalWriter::append`]; [`JournalError::Encode`] if rkyv
    /// cannot serialize the message.
    pub fn append_message<M: Message>(
        &mut self,
        msg: &M,
        timestamp_ns: u64,
    ) -> Result<u64, JournalError> {
        self.append_as::<M, M>(msg, timestamp_ns)
    }

    /// As [`append_message`](Self::append_message), for a value whose
    /// archive is an `M`'s ([`Encodes`]), such as a view of an `M` made of
    /// borrowed bytes: the journal holds an `M`.
    ///
    /// # Errors
    ///
    /// As [`append_message`](Self::append_message).
    pub fn append_as<M: Message, T: Encodes<M>>(
        &mut self,
        msg: &T,
        timestamp_ns: u64,
    ) -> Result<u64, JournalError> {
        self.past_truncation(|writer| writer.append_message_here::<M, T>(msg, timestamp_ns))
    }

    /// [`append_as`](Self::append_as) in the current segment (or the next,
    /// if it rolls), whatever state its file is in.
    fn append_message_here<M: Message, T: Encodes<M>>(
        &mut self,
        msg: &T,
        timestamp_ns: u64,
    ) -> Result<u64, JournalError> {
        for _attempt in 0..2 {
            self.make_room(aligned_len(HEADER_LEN))?;
            // Never more than a segment's worth, even in a larger segment
            // recovered from an earlier configuration.
            let room = (self.segment.layout().capacity() - self.tail).min(self.config.segment_size)
                - PAYLOAD_OFFSET;
            let payload = frame_ptr(&self.segment, self.tail + PAYLOAD_OFFSET);
            // SAFETY: `room` bytes from `payload` are the rest of the
            // writable frame area, unpublished (zero, since a cut or a fresh
            // segment), touched by no one else while this borrow lives.
            let space = unsafe { std::slice::from_raw_parts_mut(payload, room) };
            if let Some(len) = encode_into(msg, space, &mut self.arena) {
                return self.publish(PAYLOAD_OFFSET + len, M::meta(0, timestamp_ns));
            }
            // It did not fit: clear what the attempt wrote, then roll (or
            // report a message that fits no segment).
            space.fill(0);
            let len = encoded_len(msg, &mut self.arena)
                .map_err(|e| JournalError::Encode(e.to_string()))?;
            let need = aligned_len(PAYLOAD_OFFSET + len);
            if need > self.config.segment_size {
                return Err(JournalError::FrameTooLarge {
                    len: need,
                    segment_size: self.config.segment_size,
                });
            }
            self.roll()?;
        }
        Err(JournalError::Encode(format!(
            "{} did not fit in an empty segment of {} bytes",
            M::NAME,
            self.config.segment_size
        )))
    }

    /// Segments abandoned since the writer opened because their file was
    /// truncated under it, oldest first: each says which positions may be
    /// lost and where appends went on. Each is also logged once, when it
    /// is found.
    pub fn abandoned(&self) -> &[AbandonedSegment] {
        &self.abandoned
    }

    /// Writes every frame appended so far through to the disk.
    ///
    /// # Errors
    ///
    /// [`JournalError::Segment`] if msync fails, or if the segment's file
    /// turns out truncated under the writer (the frames are then not all
    /// in it; an append that meets this abandons the segment and goes on
    /// in the next).
    pub fn sync(&mut self) -> Result<(), JournalError> {
        if self.synced < self.tail {
            let from = self.segment.layout().frames_offset() + self.synced;
            self.segment.sync_range(from, self.tail - self.synced)?;
            self.syncs += 1;
            // A file cut inside a page leaves the rest of that page mapped:
            // writes there fault nothing and reach no file, and msync does
            // not say so. Ask the file's length, so that frames past the
            // cut are never reported synced.
            self.segment.check_length()?;
        }
        self.synced = self.tail;
        self.unsynced_frames = 0;
        self.last_sync_ns = self.clock.now_ns();
        Ok(())
    }

    /// Fills in the header of the frame at `tail` whose payload is in
    /// place, publishes its length, and applies the durability policy.
    fn publish(&mut self, length: usize, meta: FrameMeta) -> Result<u64, JournalError> {
        let position = self.position();
        let meta = FrameMeta {
            sequence: position,
            flags: meta.flags | FLAG_CHECKSUM,
            ..meta
        };
        write_frame_header(&self.segment, self.tail, length, &meta);
        // A file cut under the mapping took this frame with it (see
        // `segment::sigbus`): report that instead of a position.
        self.segment.check_truncated()?;
        self.tail += aligned_len(length);
        self.unsynced_frames += 1;
        if self.tail + POPULATE_AHEAD / 2 > self.populated {
            self.populate_ahead();
        }
        let due = match self.config.durability {
            Durability::None => false,
            Durability::EachFrame => true,
            Durability::EveryFrames(n) => self.unsynced_frames >= n.max(1),
            Durability::Every(_) => self
                .sync_deadline_ns()
                .is_some_and(|deadline| self.clock.now_ns() >= deadline),
        };
        if due {
            self.sync()?;
        }
        Ok(position)
    }

    /// Makes sure `need` bytes are free at `tail`, rolling if they are not.
    fn make_room(&mut self, need: usize) -> Result<(), JournalError> {
        if need <= self.segment.layout().capacity() - self.tail {
            return Ok(());
        }
        if need > self.config.segment_size {
            return Err(JournalError::FrameTooLarge {
                len: need,
                segment_size: self.config.segment_size,
            });
        }
        self.roll()
    }

    /// Seals the current segment with an end marker and starts the next.
    fn roll(&mut self) -> Result<(), JournalError> {
        let capacity = self.segment.layout().capacity();
        // A segment recovered from a hostile directory may sit at the top
        // of the position space: refuse before sealing, so the segment stays
        // open and no wrapped-around base is ever created.
        let next = self.next_base().ok_or(JournalError::PositionsExhausted {
            dir: self.dir.clone(),
            position: self.position(),
        })?;
        // The bytes after the marker, to the segment's end (the rest of
        // its page and any pages after it), stay unused by design: a frame
        // never spans two segments, so that a reader validates each frame
        // in one mapping and one copy. At most one frame's length is left
        // over, and the file keeps its size, so no byte of a frame is lost.
        if self.tail < capacity {
            let marker = FrameMeta {
                msg_type: PADDING_TYPE,
                version: 0,
                flags: FLAG_CHECKSUM,
                sequence: self.position(),
                timestamp_ns: 0,
            };
            write_frame_header(&self.segment, self.tail, HEADER_LEN, &marker);
            self.segment.check_truncated()?;
            self.tail += aligned_len(HEADER_LEN);
        }
        if self.config.durability != Durability::None {
            self.sync()?;
        }
        self.start_segment(next)
    }

    /// Runs `append` once; if the segment's file turns out truncated under
    /// the writer (found before, or by, the attempt), abandons the segment
    /// and runs it once more in the next.
    fn past_truncation<T>(
        &mut self,
        mut append: impl FnMut(&mut Self) -> Result<T, JournalError>,
    ) -> Result<T, JournalError> {
        if self.segment.truncated() {
            self.abandon()?;
        }
        match append(self) {
            Err(JournalError::Segment(SegmentError::Truncated { .. }))
                if self.segment.truncated() =>
            {
                self.abandon()?;
                append(self)
            }
            result => result,
        }
    }

    /// Leaves the current segment, whose file was truncated, without
    /// writing to it again (an end marker would land on a page nobody
    /// sees), and starts the segment that follows it. The loss is logged
    /// once per segment, however often starting the next one fails.
    fn abandon(&mut self) -> Result<(), JournalError> {
        let base = self.segment.header().base_position;
        let next = self.next_base().ok_or(JournalError::PositionsExhausted {
            dir: self.dir.clone(),
            position: self.position(),
        })?;
        let lost = AbandonedSegment {
            path: self.segment.path().to_path_buf(),
            base,
            end: self.position(),
            next,
        };
        if self.abandoned.last() != Some(&lost) {
            log::error!(
                "journal {}: segment {} was truncated under its writer: positions {}..{} \
                 it held may be lost; abandoning it, appends go on at position {next} in a new \
                 segment (`corelane journal inspect` reports the damage; \
                 `corelane journal tail --from {next}` reads past it)",
                self.dir.display(),
                lost.path.display(),
                lost.base,
                lost.end,
            );
            self.abandoned.push(lost);
        }
        // Frames in the abandoned segment can no longer be synced.
        self.unsynced_frames = 0;
        self.start_segment(next)
    }

    /// Makes the segment based at `next` (the one prepared ahead, or a new
    /// one) the current segment, and starts preparing the one after it.
    fn start_segment(&mut self, next: u64) -> Result<(), JournalError> {
        let prepared = self
            .next
            .take()
            .and_then(|thread| thread.join().ok())
            .and_then(Result::ok)
            .and_then(|segment| {
                let found = segment.header().base_position;
                if found == next {
                    return Some(segment);
                }
                // Prepared for another base (the current segment changed
                // since): of no use here, and its file would stay until
                // the next open. It is replaced by one made here.
                log::warn!(
                    "journal {}: segment prepared ahead {} is based at {found}, not at {next} \
                     where the journal goes on: removed, and made again at {next}",
                    self.dir.display(),
                    segment.path().display()
                );
                if let Err(error) = remove_prepared(segment.path()) {
                    log::error!("journal: {error}");
                }
                None
            });
        // A prepared segment comes with its first window faulted in.
        let (segment, populated) = match prepared {
            Some(segment) => {
                let populated = POPULATE_AHEAD.min(segment.layout().capacity());
                (segment, populated)
            }
            // The preparation failed (a full disk, say): try again here,
            // to report the error.
            None => (prepare_segment(&self.dir, &self.config, next, false)?, 0),
        };
        self.segment = link_segment(segment, &self.dir, &self.config, next)?;
        self.populated = populated;
        self.tail = 0;
        self.synced = 0;
        if self.populated == 0 {
            self.populate_ahead();
        }
        self.prepare_next();
        Ok(())
    }

    /// Where the segment after the current one starts, if one of the
    /// configured size fits there: every position of a segment, and the
    /// position where it ends, must fit in a `u64` (recovery refuses a
    /// segment that runs past it).
    fn next_base(&self) -> Option<u64> {
        let base = self.segment.header().base_position;
        let next = base.checked_add(self.segment.layout().capacity() as u64)?;
        next.checked_add(self.config.segment_size as u64)?;
        Some(next)
    }

    /// Faults in the next [`POPULATE_AHEAD`] bytes of the frame area from
    /// the tail (or from where the last window ended, if further on).
    fn populate_ahead(&mut self) {
        let capacity = self.segment.layout().capacity();
        let from = self.populated.max(self.tail);
        if from >= capacity {
            return;
        }
        let len = POPULATE_AHEAD.min(capacity - from);
        self.segment
            .populate(self.segment.layout().frames_offset() + from, len);
        self.populated = from + len;
    }

    /// Starts preparing the segment that follows the current one.
    fn prepare_next(&mut self) {
        // At the top of the position space there is no next segment; `roll`
        // refuses when it gets there.
        let Some(base) = self.next_base() else {
            return;
        };
        let dir = self.dir.clone();
        let config = self.config;
        let thread = std::thread::Builder::new()
            .name("journal-prepare".into())
            .spawn(move || prepare_segment(&dir, &config, base, true));
        match thread {
            Ok(thread) => self.next = Some(thread),
            Err(error) => log::warn!("journal: cannot start preparing a segment: {error}"),
        }
    }
}

/// Where the segment based at `base` is prepared before its roll.
fn prepared_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{}{PREPARED_SUFFIX}", segment_name(base)))
}

/// Suffix of a segment prepared ahead (not yet part of the journal).
const PREPARED_SUFFIX: &str = ".next";

/// Removes the segment prepared ahead at `path`; whether there was one.
fn remove_prepared(path: &Path) -> Result<bool, JournalError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(JournalError::io(path, "unlink", e)),
    }
}

/// Whether `name` is one [`prepared_path`] gives: a segment's name, then
/// [`PREPARED_SUFFIX`].
fn is_prepared_name(name: &str) -> bool {
    name.strip_suffix(PREPARED_SUFFIX)
        .is_some_and(|segment| parse_segment_name(segment).is_some())
}

/// Removes segments a previous writer prepared but never used. Only names
/// a writer gives them count: any other file that ends in `.next` (one of
/// the user's, kept next to the journal) is no segment, and is left alone.
fn remove_stale_prepared(dir: &Path) -> Result<(), JournalError> {
    let entries = std::fs::read_dir(dir).map_err(|e| JournalError::io(dir, "read directory", e))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.to_str().is_some_and(is_prepared_name) {
            let path = entry.path();
            if remove_prepared(&path)? {
                log::warn!(
                    "{}: removed a segment a previous writer prepared and never used",
                    path.display()
                );
            }
        }
    }
    Ok(())
}

impl Drop for JournalWriter {
    fn drop(&mut self) {
        if let Some(Ok(Ok(prepared))) = self.next.take().map(JoinHandle::join) {
            let _ = std::fs::remove_file(prepared.path());
        }
        if self.config.durability != Durability::None {
            if let Err(error) = self.sync() {
                log::error!("journal {}: final sync failed: {error}", self.dir.display());
            }
        }
    }
}

/// Writes the header of a frame of `length` bytes at `offset` (payload
/// already in place), checksum included, and publishes it by storing the
/// length last.
fn write_frame_header(segment: &Segment, offset: usize, length: usize, meta: &FrameMeta) {
    let frame = frame_ptr(segment, offset);
    // SAFETY: the caller checked that `aligned_len(length)` bytes from
    // `offset` are inside the writable frame area; the payload's bytes are
    // this writer's own until the length below publishes them.
    let payload =
        unsafe { std::slice::from_raw_parts(frame.add(PAYLOAD_OFFSET), length - PAYLOAD_OFFSET) };
    let mut header = [0u8; HEADER_LEN];
    write_meta(&mut header, meta, 0);
    let sum = checksum(&header, payload);
    write_meta(&mut header, meta, sum);
    // SAFETY: as above; the length word is left alone here.
    unsafe {
        frame
            .add(LENGTH_OFFSET + 4)
            .copy_from_nonoverlapping(header.as_ptr().add(LENGTH_OFFSET + 4), HEADER_LEN - 4)
    };
    let length = i32::try_from(length).expect("segment sizes are checked to fit an i32 length");
    // SAFETY: the word is inside the frame area and 4-aligned (frames are
    // FRAME_ALIGN-aligned in a page-aligned area); length words are only
    // accessed atomically.
    let word = unsafe { AtomicI32::from_ptr(frame.add(LENGTH_OFFSET).cast()) };
    // Release pairs with the Acquire load in `scan::read_slot`: a reader
    // that sees the length sees the header and payload written above.
    word.store(length, Ordering::Release);
}

/// Creates the segment based at `base` under its private name
/// ([`prepared_path`]), its first [`POPULATE_AHEAD`] bytes faulted in if
/// `populate`. Unless the policy is [`Durability::None`], its header and
/// size are on the disk before this returns (fsync), so that once
/// [`link_segment`] has put it in place no crash can leave a linked
/// segment whose header is zeros behind frames synced into it.
fn prepare_segment(
    dir: &Path,
    config: &JournalConfig,
    base: u64,
    populate: bool,
) -> Result<Segment, JournalError> {
    let path = prepared_path(dir, base);
    // Left by a roll that failed after its preparation (a full disk, say):
    // never part of the journal, so made again.
    if remove_prepared(&path)? {
        log::warn!(
            "{}: a segment prepared earlier and never used was there: removed, and made again",
            path.display()
        );
    }
    let segment = Segment::create(&path, SegmentKind::Journal, config.segment_size, base)?;
    // Before the window is faulted in: those pages are dirtied by the
    // fault, and need not reach the disk until frames are written there.
    if config.durability != Durability::None {
        segment.sync()?;
        steps::record(steps::Step::HeaderSynced, segment.path());
    }
    if populate {
        segment.populate(segment.layout().frames_offset(), POPULATE_AHEAD);
    }
    Ok(segment)
}

/// Puts a segment made by [`prepare_segment`] in place as the segment
/// based at `base`, then (unless the policy is [`Durability::None`])
/// makes the new name durable with an fsync of the directory.
fn link_segment(
    mut segment: Segment,
    dir: &Path,
    config: &JournalConfig,
    base: u64,
) -> Result<Segment, JournalError> {
    segment.rename_to(&segment_path(dir, base))?;
    steps::record(steps::Step::Linked, segment.path());
    if config.durability != Durability::None {
        sync_directory(dir)?;
        steps::record(steps::Step::DirectorySynced, segment.path());
    }
    Ok(segment)
}

/// The steps that make a new segment durable, recorded in the order they
/// were taken, so that a unit test can check that order (a power loss
/// between them cannot be shown in a test). Records nothing outside tests.
mod steps {
    use std::path::Path;

    /// One step of making a new segment durable.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(super) enum Step {
        /// Its header and size were synced (under its private name).
        HeaderSynced,
        /// It was linked under its segment name.
        Linked,
        /// The directory was synced after the link.
        DirectorySynced,
    }

    #[cfg(test)]
    pub(super) static TAKEN: std::sync::Mutex<Vec<(Step, std::path::PathBuf)>> =
        std::sync::Mutex::new(Vec::new());

    /// Notes that `step` was taken for the segment file at `path`.
    pub(super) fn record(step: Step, path: &Path) {
        #[cfg(test)]
        TAKEN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((step, path.to_path_buf()));
        #[cfg(not(test))]
        let _ = (step, path);
    }
}

/// How long opening a writer waits out a directory lock that another
/// holder may be about to let go.
///
/// A process that starts a child lends the child its descriptors until the
/// child's `exec` closes them (they are all close-on-exec), the lock's
/// included. So a writer dropped and reopened while another thread of the
/// same process starts a child can find its own old lock still held for a
/// moment; the tests saw it. A writer in another process holds the lock for
/// good, and is reported as [`JournalError::Locked`] after this wait.
const LOCK_PATIENCE: Duration = Duration::from_millis(100);

/// Takes the directory's writer lock, held until the file is closed.
fn lock_directory(dir: &Path) -> Result<File, JournalError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(SEGMENT_MODE)
        .open(&path)
        .map_err(|e| JournalError::io(&path, "open lock", e))?;
    let started = Instant::now();
    loop {
        // SAFETY: flock on a descriptor we own; it only takes an advisory
        // lock.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(file);
        }
        let error = std::io::Error::last_os_error();
        match error.kind() {
            std::io::ErrorKind::WouldBlock if started.elapsed() < LOCK_PATIENCE => {
                std::thread::sleep(Duration::from_millis(1));
            }
            std::io::ErrorKind::WouldBlock => {
                return Err(JournalError::Locked {
                    dir: dir.to_path_buf(),
                })
            }
            std::io::ErrorKind::Interrupted => {}
            _ => return Err(JournalError::io(&path, "flock", error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::steps::{Step, TAKEN};
    use super::*;

    /// The steps recorded for the segment based at `base` in `dir`, under
    /// its private name or its own.
    fn steps_for(dir: &Path, base: u64) -> Vec<(Step, PathBuf)> {
        let names = [prepared_path(dir, base), segment_path(dir, base)];
        TAKEN
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, path)| names.contains(path))
            .cloned()
            .collect()
    }

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("corelane-writer-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// A new segment's header is synced before the segment is linked in
    /// place, and the directory after: a power loss can never leave a
    /// linked segment whose header is zeros behind synced frames. Both the
    /// first segment and one made at a roll.
    #[test]
    fn a_new_segment_is_synced_before_it_is_linked_and_the_directory_after() {
        let dir = scratch("durable-roll");
        let config = JournalConfig {
            segment_size: 4096,
            durability: Durability::EachFrame,
        };
        let mut writer = JournalWriter::open(&dir, config).unwrap();
        let meta = FrameMeta::default();
        while writer.position() < 4096 + 64 {
            writer.append(&[7; 200], meta).unwrap();
        }
        drop(writer);
        for base in [0, 4096] {
            assert_eq!(
                steps_for(&dir, base),
                [
                    (Step::HeaderSynced, prepared_path(&dir, base)),
                    (Step::Linked, segment_path(&dir, base)),
                    (Step::DirectorySynced, segment_path(&dir, base)),
                ],
                "segment {base}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A segment prepared ahead for a base the journal does not go on at
    /// (the current segment changed after it was asked for) once stayed
    /// in the directory under its `.next` name until the next open. The
    /// writer that finds it at a roll removes it and makes the segment it
    /// needs.
    #[test]
    fn a_prepared_segment_with_the_wrong_base_is_replaced_at_the_roll() {
        let dir = scratch("prepared-wrong-base");
        let config = JournalConfig {
            segment_size: 4096,
            durability: Durability::None,
        };
        let mut writer = JournalWriter::open(&dir, config).unwrap();
        let wrong = 64 * 4096;
        let stale = prepared_path(&dir, wrong);
        if let Some(thread) = writer.next.take() {
            let prepared = thread.join().unwrap().unwrap();
            std::fs::remove_file(prepared.path()).unwrap();
        }
        let (thread_dir, thread_config) = (dir.clone(), config);
        writer.next = Some(std::thread::spawn(move || {
            prepare_segment(&thread_dir, &thread_config, wrong, false)
        }));
        let mut positions = Vec::new();
        while positions.last() < Some(&4096) {
            positions.push(writer.append(&[3; 300], FrameMeta::default()).unwrap());
        }
        assert_eq!(positions.last(), Some(&4096));
        assert!(!stale.exists(), "the wrongly based segment stayed");
        assert_eq!(writer.segment.header().base_position, 4096);
        assert_eq!(writer.segment.path(), segment_path(&dir, 4096));
        drop(writer);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name != LOCK_FILE)
            .collect();
        names.sort();
        assert_eq!(names, [segment_name(0), segment_name(4096)]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The writer's open once removed every file in the journal's
    /// directory whose name ends in `.next`, a user's `notes.next` too.
    /// Only the names a writer gives a segment prepared ahead go.
    #[test]
    fn only_prepared_segments_are_removed_at_open() {
        let dir = scratch("prepared-names");
        std::fs::create_dir_all(&dir).unwrap();
        // Far past where this writer prepares its own next segment.
        let stale = prepared_path(&dir, 64 * 4096);
        drop(Segment::create(&stale, SegmentKind::Journal, 4096, 64 * 4096).unwrap());
        let others = [
            "notes.next",
            ".next",
            "0000000000001000.next",
            "000000000000100G.journal.next",
            "0000000000001000.journal.next.next",
        ];
        for name in others {
            std::fs::write(dir.join(name), name).unwrap();
        }
        let config = JournalConfig {
            segment_size: 4096,
            durability: Durability::None,
        };
        let writer = JournalWriter::open(&dir, config).unwrap();
        drop(writer);
        assert!(!stale.exists(), "the stale prepared segment stayed");
        for name in others {
            assert_eq!(std::fs::read(dir.join(name)).unwrap(), name.as_bytes());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Under [`Durability::None`] nothing is synced: the segment is only
    /// linked.
    #[test]
    fn a_new_segment_is_only_linked_without_durability() {
        let dir = scratch("none-roll");
        let config = JournalConfig {
            segment_size: 4096,
            durability: Durability::None,
        };
        let mut writer = JournalWriter::open(&dir, config).unwrap();
        while writer.position() < 4096 + 64 {
            writer.append(&[7; 200], FrameMeta::default()).unwrap();
        }
        drop(writer);
        for base in [0, 4096] {
            assert_eq!(
                steps_for(&dir, base),
                [(Step::Linked, segment_path(&dir, base))],
                "segment {base}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
