//! Messages the runtime holds for later: serialized once into memory of
//! their own, then copied whole into a lane when their time or their room
//! comes (a delayed message, or one waiting in a backpressure overflow).
//!
//! An rkyv archive holds only relative pointers, so its bytes may move to
//! any other address with the same alignment; a lane lends payloads 32-byte
//! aligned, and the archive asks for 16.

use rkyv::rancor;
use rkyv::ser::allocator::Arena;
use rkyv::util::AlignedVec;

use super::priority::Priority;
use crate::frame::envelope::access_trusted;
use crate::frame::Message;
use crate::lane::frames::{ClaimError, FrameProducer};
use crate::lane::HeapRegion;

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
    bytes: AlignedVec<16>,
    msg_type: u16,
    version: u8,
}

impl HeldFrame {
    /// Serializes `msg` into a buffer of its own.
    ///
    /// # Errors
    ///
    /// rkyv's error text if the message cannot be serialized.
    pub(crate) fn encode<M: Message>(
        msg: &M,
        to: usize,
        priority: Priority,
        timestamp_ns: u64,
        arena: &mut Arena,
    ) -> Result<Self, String> {
        let bytes = rkyv::api::high::to_bytes_in_with_alloc::<_, _, rancor::Error>(
            msg,
            AlignedVec::<16>::new(),
            arena.acquire(),
        )
        .map_err(|error| error.to_string())?;
        // SAFETY: `bytes` is the archive rkyv has just written for an `M` in
        // this process, whole, unchanged and 16-byte aligned (AlignedVec).
        let kind = M::kind(unsafe { access_trusted::<M>(&bytes) });
        Ok(HeldFrame {
            to,
            priority,
            kind,
            timestamp_ns,
            bytes,
            msg_type: M::TYPE_ID,
            version: M::VERSION,
        })
    }

    /// The archive's length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Copies the frame into `lane` and publishes it.
    ///
    /// # Errors
    ///
    /// As [`FrameProducer::claim`]: `Full` now, or `TooLarge` ever.
    pub(crate) fn write_into(
        &self,
        lane: &mut FrameProducer<HeapRegion>,
    ) -> Result<(), ClaimError> {
        let sequence = lane.committed();
        let mut claim = lane.claim(self.bytes.len())?;
        claim.payload_mut()[..self.bytes.len()].copy_from_slice(&self.bytes);
        let meta = crate::frame::FrameMeta {
            msg_type: self.msg_type,
            version: self.version,
            flags: 0,
            sequence,
            timestamp_ns: self.timestamp_ns,
        };
        claim.commit(self.bytes.len(), meta);
        Ok(())
    }
}
