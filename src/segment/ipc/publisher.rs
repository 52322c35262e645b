//! The writing end of a ring shared with another process.

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rkyv::rancor;
use rkyv::ser::allocator::Arena;

use super::error::IpcError;
use super::liveness;
use crate::frame::envelope;
use crate::frame::layout::PADDING_TYPE;
use crate::frame::Message;
use crate::lane::frames::{
    self, ClaimError, FrameClaim, FrameProducer, RingError, WriteError, MIN_CAPACITY,
};
use crate::segment::{Segment, SegmentError, SegmentKind, SegmentRegion};

/// Frames between two heartbeats written by the publisher on its own.
const FRAMES_PER_BEAT: u32 = 1024;

/// Publishes frames into a ring file that one [`IpcSubscriber`] in another
/// process reads.
///
/// The ring is the lanes' frame ring over a mapped file: the same
/// [`claim`](Self::claim) and commit, the same
/// [`write_message`](Self::write_message), the same frames byte for byte.
/// The publisher holds an exclusive lock on the file for its whole life;
/// the subscriber takes its release (the process exited or was killed) as
/// the proof that no more frames will come.
///
/// [`IpcSubscriber`]: super::IpcSubscriber
///
/// # Examples
///
/// ```
/// use corelane::frame::FrameMeta;
/// use corelane::segment::ipc::{IpcPublisher, IpcSubscriber};
///
/// let dir = std::env::temp_dir().join(format!("corelane-doc-ipc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let path = dir.join("ring");
/// # let _ = std::fs::remove_file(&path);
///
/// let mut publisher = IpcPublisher::create(&path, 1 << 16)?;
/// let mut claim = publisher.claim(5)?;
/// claim.payload_mut().copy_from_slice(b"hello");
/// claim.commit_checksummed(5, FrameMeta { msg_type: 1, ..FrameMeta::default() });
///
/// // Usually in another process:
/// let mut subscriber = IpcSubscriber::open(&path)?;
/// let mut seen = Vec::new();
/// subscriber.drain(16, |frame| seen.push(frame.payload().to_vec()))?;
/// assert_eq!(seen, [b"hello".to_vec()]);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct IpcPublisher {
    producer: FrameProducer<SegmentRegion>,
    segment: Arc<Segment>,
    /// Frames since the last heartbeat.
    since_beat: u32,
}

impl IpcPublisher {
    /// Creates the ring file at `path` with `capacity` bytes of frames
    /// (owner-only, space reserved, header complete, writer lock held, then
    /// linked into place).
    ///
    /// # Errors
    ///
    /// [`IpcError::Ring`] with [`RingError::BadCapacity`] unless
    /// `capacity` is a power of two of at least [`MIN_CAPACITY`];
    /// [`IpcError::Segment`] if the file exists already (a ring is never
    /// overwritten: see [`replace_dead`](Self::replace_dead)) or cannot be
    /// made.
    pub fn create(path: &Path, capacity: usize) -> Result<Self, IpcError> {
        if capacity < MIN_CAPACITY || !capacity.is_power_of_two() {
            return Err(IpcError::Ring(RingError::BadCapacity(capacity)));
        }
        let segment = Arc::new(Segment::create_locked(
            path,
            SegmentKind::IpcRing,
            capacity,
            0,
        )?);
        let region = Arc::clone(&segment)
            .ring_region()
            .expect("a created segment is writable");
        // A new file is zero past its header: a fresh ring. The consumer end
        // made with it is not used here; the subscriber attaches its own.
        let (producer, _) = frames::ring(region).map_err(IpcError::Ring)?;
        let publisher = IpcPublisher {
            producer,
            segment,
            since_beat: 0,
        };
        publisher.beat();
        Ok(publisher)
    }

    /// Creates the ring at `path` as [`create`](Self::create) does, first
    /// removing a ring left there by a writer that is confirmed gone: its
    /// lock is taken (proving no one holds it) and kept until the old file
    /// is unlinked, so two restarting publishers cannot both replace it.
    ///
    /// This is how a publisher restarts. A subscriber of the old ring gets
    /// [`IpcError::WriterGone`] once the frames it holds are read, and
    /// opens `path` again to read the new one.
    ///
    /// # Errors
    ///
    /// [`IpcError::WriterAlive`] if the old ring's writer still holds its
    /// lock (nothing is removed); otherwise as [`create`](Self::create).
    /// A subscriber probing the old writer's lock at that very moment also
    /// makes it look alive: retry after a moment.
    pub fn replace_dead(path: &Path, capacity: usize) -> Result<Self, IpcError> {
        match File::open(path) {
            Ok(old) => {
                let lock_error = |source| IpcError::Lock {
                    path: path.to_path_buf(),
                    op: "flock",
                    source,
                };
                if !liveness::try_lock_writer(&old).map_err(lock_error)? {
                    return Err(IpcError::WriterAlive {
                        path: path.to_path_buf(),
                    });
                }
                // Under the old lock, unlink only the file we locked: if the
                // name now points elsewhere, another publisher got there
                // first and its ring is live.
                let ours = old
                    .metadata()
                    .map_err(|e| SegmentError::io(path, "fstat", e))?;
                let named =
                    fs::symlink_metadata(path).map_err(|e| SegmentError::io(path, "stat", e))?;
                if (ours.dev(), ours.ino()) != (named.dev(), named.ino()) {
                    return Err(IpcError::WriterAlive {
                        path: path.to_path_buf(),
                    });
                }
                fs::remove_file(path).map_err(|e| SegmentError::io(path, "unlink", e))?;
                let fresh = Self::create(path, capacity);
                drop(old);
                fresh
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Self::create(path, capacity)
            }
            Err(error) => Err(SegmentError::io(path, "open", error).into()),
        }
    }

    /// The ring file.
    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    /// Bytes of frames the ring holds.
    pub fn capacity(&self) -> usize {
        self.producer.capacity()
    }

    /// Largest payload a frame in this ring can carry.
    pub fn max_payload(&self) -> usize {
        self.producer.max_payload()
    }

    /// Whether the ring file was found truncated under the mapping (see
    /// [`crate::segment::sigbus`]): frames written since went into pages
    /// no subscriber sees. Check it after writing when another process
    /// could cut the file; the subscriber reports it as an error.
    pub fn truncated(&self) -> bool {
        self.segment.truncated()
    }

    /// Frames committed so far.
    pub fn committed(&self) -> u64 {
        self.producer.committed()
    }

    /// Stores the time now in the ring's heartbeat word. The publisher
    /// does so itself every 1,024 frames; a publisher that
    /// may stay idle calls it when it likes. The heartbeat is information
    /// for people and monitors; liveness is decided by the lock.
    pub fn beat(&self) {
        // Relaxed: a monitor reads it as a loose indication, nothing is
        // published through it.
        self.segment
            .heartbeat()
            .store(liveness::monotonic_ns(), Ordering::Relaxed);
    }

    fn count_frame(&mut self) {
        self.since_beat += 1;
        if self.since_beat >= FRAMES_PER_BEAT {
            self.since_beat = 0;
            self.beat();
        }
    }

    /// Claims space for a frame with a payload of `payload_len` bytes, as
    /// [`FrameProducer::claim`]; commit it with `commit` or
    /// `commit_checksummed`.
    ///
    /// # Errors
    ///
    /// As [`FrameProducer::claim`]: `Full` (retry) or `TooLarge` (never).
    pub fn claim(
        &mut self,
        payload_len: usize,
    ) -> Result<FrameClaim<'_, SegmentRegion>, ClaimError> {
        self.count_frame();
        self.producer.claim(payload_len)
    }

    /// Serializes `msg` straight into the ring and publishes it, as
    /// [`FrameProducer::write_message`] (no checksum).
    ///
    /// # Errors
    ///
    /// As [`FrameProducer::write_message`].
    pub fn write_message<M: Message>(
        &mut self,
        msg: &M,
        timestamp_ns: u64,
        arena: &mut Arena,
    ) -> Result<(), WriteError> {
        self.count_frame();
        self.producer.write_message(msg, timestamp_ns, arena)
    }

    /// As [`write_message`](Self::write_message), with a checksum over the
    /// frame. The message's length is counted first, then it is serialized
    /// straight into a claim of exactly that size.
    ///
    /// # Errors
    ///
    /// As [`write_message`](Self::write_message).
    pub fn write_message_checksummed<M: Message>(
        &mut self,
        msg: &M,
        timestamp_ns: u64,
        arena: &mut Arena,
    ) -> Result<(), WriteError> {
        const {
            assert!(
                M::TYPE_ID != PADDING_TYPE,
                "Message::TYPE_ID 0 is reserved for padding frames"
            )
        };
        let len = envelope::encoded_len(msg, arena).map_err(WriteError::Encode)?;
        let sequence = self.producer.committed();
        let mut claim = self.claim(len).map_err(WriteError::Claim)?;
        match envelope::encode_into(msg, &mut claim.payload_mut()[..len], arena) {
            Some(written) if written == len => {
                claim.commit_checksummed(len, M::meta(sequence, timestamp_ns));
                Ok(())
            }
            // Not the length counted a moment ago: the claim's drop zeroes
            // whatever was written, and nothing is published.
            _ => Err(WriteError::Encode(rancor::Source::new(
                envelope::SizeChanged { len },
            ))),
        }
    }
}
