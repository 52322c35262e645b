//! Messages the runtime holds for later: serialized once into memory of
//! their own, then copied whole into a lane when their time or their room
//! comes (a delayed message, or one waiting in a backpressure overflow).
//!
//! An rkyv archive holds only relative pointers, so its bytes may move to
//! any other address with the same alignment; a lane lends payloads 32-byte
//! aligned, and the archive asks for 16.
//!
//! A held message too large for a lane frame (but within the runtime's
//! `max_message`) is kept in a buffer from the core's pool instead
//! ([`HeldFrame::fit`]), and when its time comes only the buffer's handle
//! goes through the lane, as for an immediate send (see `large.rs`). It is
//! archived once into scratch memory first, to learn its size, then copied
//! into the pooled buffer: the same cost as sizing an immediate large send.
//! A held buffer dropped unsent (cancelled, or at exit) goes straight back
//! to the pool, on its own core.

use rkyv::ser::allocator::Arena;
use rkyv::util::AlignedVec;

use super::large;
use super::priority::Priority;
use crate::frame::envelope::{access_trusted, encode_owned};
use crate::frame::layout::FLAG_POOLED;
use crate::frame::{Encodes, FrameMeta, Message};
use crate::lane::frames::{ClaimError, FrameProducer};
use crate::lane::HeapRegion;
use crate::pool::{Pool, PoolBuf};

/// Where a held archive lives.
enum Archive {
    /// Small enough for a lane frame: copied into the frame when sent.
    Inline(AlignedVec<16>),
    /// Too large for a frame: the buffer itself travels, by handle.
    Pooled(PoolBuf),
}

/// One message held for a destination core.
pub(crate) struct HeldFrame {
    /// The destination core.
    pub(crate) to: usize,
    /// The lane it goes into.
    pub(crate) priority: Priority,
    /// The message's kind ([`Message::kind`]), for the shutdown report.
    pub(crate) kind: &'static str,
    /// Send time on [`crate::clock`] stamped into the frame; for overflow
    /// the time of the original send, so delivery latency includes the wait.
    pub(crate) timestamp_ns: u64,
    /// The archive.
    archive: Archive,
    msg_type: u16,
    version: u8,
}

impl HeldFrame {
    /// Serializes `msg` into a buffer of its own.
    ///
    /// # Errors
    ///
    /// rkyv's error text if the message cannot be serialized.
    pub(crate) fn encode<M: Message, T: Encodes<M>>(
        msg: &T,
        to: usize,
        priority: Priority,
        timestamp_ns: u64,
        arena: &mut Arena,
    ) -> Result<Self, String> {
        let bytes = encode_owned(msg, arena).map_err(|error| error.to_string())?;
        // SAFETY: `bytes` is the archive rkyv has just written for an `M`
        // (`T`'s archived type is `M`'s) in this process, whole, unchanged
        // and 16-byte aligned (AlignedVec).
        let kind = M::kind(unsafe { access_trusted::<M>(&bytes) });
        Ok(HeldFrame {
            to,
            priority,
            kind,
            timestamp_ns,
            archive: Archive::Inline(bytes),
            msg_type: M::TYPE_ID,
            version: M::VERSION,
        })
    }

    /// The archive's length in bytes.
    pub(crate) fn len(&self) -> usize {
        match &self.archive {
            Archive::Inline(bytes) => bytes.len(),
            Archive::Pooled(buf) => buf.len(),
        }
    }

    /// Makes the frame fit its lane: one larger than `max_payload` (the
    /// lane's largest frame payload) moves into a buffer from `pool`, to
    /// travel by handle.
    ///
    /// # Errors
    ///
    /// `(archive length, max_message)` if the archive is larger than
    /// `max_message`, the most the runtime accepts at all.
    pub(crate) fn fit(
        mut self,
        max_payload: usize,
        max_message: usize,
        pool: &Pool,
    ) -> Result<Self, (usize, usize)> {
        let len = self.len();
        if len <= max_payload {
            return Ok(self);
        }
        if len > max_message {
            return Err((len, max_message));
        }
        if let Archive::Inline(bytes) = &self.archive {
            let mut buf = pool.take(len);
            buf.capacity_mut()[..len].copy_from_slice(bytes);
            buf.set_len(len);
            self.archive = Archive::Pooled(buf);
        }
        Ok(self)
    }

    /// Writes the frame into `lane` and publishes it: the archive itself,
    /// or a pooled buffer's handle.
    ///
    /// # Errors
    ///
    /// As [`FrameProducer::claim`] (`Full` now, or `TooLarge` ever), with
    /// the frame handed back.
    pub(crate) fn write_into(
        mut self,
        lane: &mut FrameProducer<HeapRegion>,
    ) -> Result<(), (ClaimError, HeldFrame)> {
        let mut meta = FrameMeta {
            msg_type: self.msg_type,
            version: self.version,
            flags: 0,
            sequence: lane.committed(),
            timestamp_ns: self.timestamp_ns,
        };
        // The archive moves out, and back in if the lane refuses it.
        let (error, archive) = match self.archive {
            Archive::Inline(bytes) => match lane.claim(bytes.len()) {
                Ok(mut claim) => {
                    claim.payload_mut()[..bytes.len()].copy_from_slice(&bytes);
                    claim.commit(bytes.len(), meta);
                    return Ok(());
                }
                Err(error) => (error, Archive::Inline(bytes)),
            },
            Archive::Pooled(buf) => {
                meta.flags |= FLAG_POOLED;
                match large::publish_handle(lane, buf, meta) {
                    Ok(()) => return Ok(()),
                    Err((error, buf)) => (error, Archive::Pooled(buf)),
                }
            }
        };
        self.archive = archive;
        Err((error, self))
    }
}
