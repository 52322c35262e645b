//! Messages too large for a lane frame travel as a pooled buffer handle.
//!
//! A frame ring refuses a frame larger than half its capacity. Such a
//! message is serialized with rkyv straight into a buffer from the sending
//! core's [`Pool`], and the lane carries a frame flagged
//! [`FLAG_POOLED`] whose payload is the buffer's handle ([`RawPoolBuf`]),
//! a few words. The receiving core puts the buffer back together, lends the
//! archive in it to its handler in place, and drops it when the handler
//! returns: the buffer goes home through its pool's return queue.
//!
//! A handle holds raw pointers, so such frames exist only in this
//! process's own lanes (never in a mapped file or another process), and
//! each is read exactly once: by the receiving core, or by the count of
//! undelivered messages at shutdown, which also gives the buffer back.

use std::mem::size_of;

use rkyv::rancor::Source;

use crate::clock;
use crate::frame::envelope::encode_into;
use crate::frame::layout::FLAG_POOLED;
use crate::frame::FrameMeta;
use crate::frame::{Encodes, Message};
use crate::lane::frames::{ClaimError, Frame, FrameProducer, WriteError};
use crate::lane::HeapRegion;
use crate::pool::{Pool, PoolBuf, RawPoolBuf};

/// Largest archived message `Context::send` accepts by default (256 MiB).
pub(crate) const DEFAULT_MAX_MESSAGE: usize = 256 << 20;

/// Payload bytes of a pooled frame: the buffer's handle.
const HANDLE_LEN: usize = size_of::<RawPoolBuf>();

/// Serializes `msg` (whose archive takes `payload_len` bytes) into a buffer
/// from `pool` and publishes its handle in `lane`. If the lane is full the
/// buffer goes straight back to the pool.
///
/// # Errors
///
/// As [`FrameProducer::write_message`]: `Full` (retry later), `TooLarge`
/// over `max_message` (with `max_message` as the limit), `Encode`.
pub(crate) fn write_pooled<M: Message, T: Encodes<M>>(
    lane: &mut FrameProducer<HeapRegion>,
    pool: &Pool,
    arena: &mut rkyv::ser::allocator::Arena,
    msg: &T,
    payload_len: usize,
    max_message: usize,
) -> Result<(), WriteError> {
    if payload_len > max_message {
        return Err(WriteError::Claim(ClaimError::TooLarge {
            payload_len,
            max_payload: max_message,
        }));
    }
    let mut buf = pool.take(payload_len);
    let Some(written) = encode_into(msg, buf.capacity_mut(), arena) else {
        return Err(WriteError::Encode(rkyv::rancor::Error::new(SizeChanged {
            sized: payload_len,
        })));
    };
    buf.set_len(written);

    let mut meta = M::meta(lane.committed(), clock::now_ns());
    meta.flags |= FLAG_POOLED;
    // A full lane hands the buffer back; dropping it returns it to the pool.
    publish_handle(lane, buf, meta).map_err(|(error, _buf)| WriteError::Claim(error))
}

/// Publishes `buf`'s handle in `lane` as a frame with `meta` (whose
/// `flags` must include [`FLAG_POOLED`]); the lane's reader owns the
/// buffer from then on. Used for immediate sends and for held messages
/// (delayed, or queued by the overflow policy) alike.
///
/// # Errors
///
/// As [`FrameProducer::claim`], with the buffer handed back unchanged.
pub(crate) fn publish_handle(
    lane: &mut FrameProducer<HeapRegion>,
    buf: PoolBuf,
    meta: FrameMeta,
) -> Result<(), (ClaimError, PoolBuf)> {
    debug_assert!(meta.flags & FLAG_POOLED != 0, "a handle frame unflagged");
    let mut claim = match lane.claim(HANDLE_LEN) {
        Ok(claim) => claim,
        Err(error) => return Err((error, buf)),
    };
    let handle = buf.into_raw();
    // SAFETY: the claim lends at least `HANDLE_LEN` bytes; an unaligned
    // write of a plain `Copy` value. The handle's pointers keep their
    // provenance through the copy, as the reader copies them back out.
    unsafe {
        std::ptr::write_unaligned(
            claim.payload_mut().as_mut_ptr().cast::<RawPoolBuf>(),
            handle,
        )
    };
    claim.commit(HANDLE_LEN, meta);
    Ok(())
}

/// The buffer a pooled frame names, put back together; `None` for a frame
/// that carries its message itself.
///
/// # Safety
///
/// `frame` is in this process's own lane, was written by
/// [`write_pooled`] if it is flagged, and is read here once.
pub(crate) unsafe fn pooled_buffer(frame: &Frame<'_>) -> Option<PoolBuf> {
    if frame.meta.flags & FLAG_POOLED == 0 {
        return None;
    }
    let payload = frame.payload();
    debug_assert_eq!(payload.len(), HANDLE_LEN, "pooled frame of the wrong size");
    if payload.len() != HANDLE_LEN {
        return None;
    }
    // SAFETY: `write_pooled` wrote a `RawPoolBuf` here (an unaligned copy
    // of a plain value), and this is the one time it is read.
    let raw = unsafe { std::ptr::read_unaligned(payload.as_ptr().cast::<RawPoolBuf>()) };
    // SAFETY: taken apart by `into_raw` in this process, put back once.
    Some(unsafe { PoolBuf::from_raw(raw) })
}

/// The message archived to a different size the second time: only a
/// `Serialize` that is not deterministic does that.
#[derive(Debug)]
struct SizeChanged {
    sized: usize,
}

impl std::fmt::Display for SizeChanged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the message archived to more than the {} bytes it was sized at",
            self.sized
        )
    }
}

impl std::error::Error for SizeChanged {}
