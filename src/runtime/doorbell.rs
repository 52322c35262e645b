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

/// What rings: mio's `Waker` in the runtime, a flag in the loom model.
pub(crate) trait Wake {
    fn wake(&self) -> std::io::Result<()>;
}

impl Wake for mio::Waker {
    fn wake(&self) -> std::io::Result<()> {
        mio::Waker::wake(self)
    }
}

/// One core's doorbell: its sleeping flag and its waker.
#[derive(Debug)]
pub(crate) struct Doorbell<W = mio::Waker> {
    sleeping: CachePadded<AtomicBool>,
    waker: W,
}

impl<W: Wake> Doorbell<W> {
    pub(crate) fn new(waker: W) -> Self {
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

#[cfg(all(test, loom))]
mod loom_models {
    //! The protocol under loom: whatever the interleaving, a frame published
    //! while the core parks is either seen by the core's re-check or rings
    //! the doorbell; and one announcement costs at most one wake-up.

    use super::*;
    use crate::sync::{Arc, AtomicUsize};
    use loom::thread;

    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(&self) -> std::io::Result<()> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    }

    #[test]
    fn no_wake_up_is_lost() {
        loom::model(|| {
            let doorbell = Arc::new(Doorbell::new(CountingWaker::default()));
            let frame = Arc::new(AtomicBool::new(false));
            let sender = {
                let (doorbell, frame) = (Arc::clone(&doorbell), Arc::clone(&frame));
                thread::spawn(move || {
                    frame.store(true, Ordering::Release);
                    fence_after_publish();
                    doorbell.ring_if_sleeping();
                })
            };
            doorbell.announce_sleep();
            let saw_frame = frame.load(Ordering::Acquire);
            if saw_frame {
                doorbell.awake();
            }
            sender.join().unwrap();
            let woken = doorbell.waker.0.load(Ordering::Relaxed) > 0;
            assert!(saw_frame || woken, "the core parked and nobody woke it");
        });
    }

    #[test]
    fn two_senders_ring_once_per_announcement() {
        loom::model(|| {
            let doorbell = Arc::new(Doorbell::new(CountingWaker::default()));
            doorbell.announce_sleep();
            let senders: Vec<_> = (0..2)
                .map(|_| {
                    let doorbell = Arc::clone(&doorbell);
                    thread::spawn(move || {
                        fence_after_publish();
                        doorbell.ring_if_sleeping();
                    })
                })
                .collect();
            for sender in senders {
                sender.join().unwrap();
            }
            assert_eq!(doorbell.waker.0.load(Ordering::Relaxed), 1);
        });
    }
}
