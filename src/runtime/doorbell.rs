//! The park and wake protocol between a core and the cores that send to it.
//!
//! A core about to park first *announces* it (sets `sleeping`), then looks
//! at its lanes once more, and parks only if they are still empty. A sender
//! publishes its frame, then looks at `sleeping` and rings the core's mio
//! `Waker` only if it is set, clearing it so that one wake-up costs one
//! system call however many senders saw it. A busy core's peers therefore
//! make no system call at all.
//!
//! Why no wake-up is lost: the core does {store `sleeping`; SeqCst fence;
//! load lanes} and the sender does {store frame length; SeqCst fence; load
//! `sleeping`}. The two fences are ordered one way or the other; whichever
//! comes second sees the other side's store. Either the core sees the frame
//! and does not park, or the sender sees `sleeping` and wakes it.

use crate::sync::{fence, AtomicBool, CachePadded, Ordering};

/// One core's doorbell: its sleeping flag and its waker.
#[derive(Debug)]
pub(crate) struct Doorbell {
    sleeping: CachePadded<AtomicBool>,
    waker: mio::Waker,
}

impl Doorbell {
    pub(crate) fn new(waker: mio::Waker) -> Self {
        Doorbell {
            sleeping: CachePadded(AtomicBool::new(false)),
            waker,
        }
    }

    /// Core side: announce the intent to park. The caller must re-check its
    /// lanes (and anything else that may wake it) after this returns, and
    /// call [`Doorbell::awake`] if it finds work.
    pub(crate) fn announce_sleep(&self) {
        self.sleeping.store(true, Ordering::Relaxed);
        // Pairs with the fence in `fence_after_publish`; see the module doc.
        fence(Ordering::SeqCst);
    }

    /// Core side: the core is running again.
    pub(crate) fn awake(&self) {
        self.sleeping.store(false, Ordering::Relaxed);
    }

    /// Whether the core has announced that it is parking (for readers who
    /// must not wait on an idle core).
    pub(crate) fn is_sleeping(&self) -> bool {
        self.sleeping.load(Ordering::Acquire)
    }

    /// Sender side: wakes the core if it announced sleep. Call after
    /// [`fence_after_publish`].
    pub(crate) fn ring_if_sleeping(&self) {
        if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::AcqRel) {
            if let Err(error) = self.waker.wake() {
                // An eventfd write fails only if its counter would overflow,
                // that is when the core has a wake-up pending anyway.
                log::warn!("waking a core failed: {error}");
            }
        }
    }
}

/// Sender side: orders the frames published so far before the loads of the
/// receivers' `sleeping` flags that follow.
pub(crate) fn fence_after_publish() {
    // Pairs with the fence in `Doorbell::announce_sleep`.
    fence(Ordering::SeqCst);
}
