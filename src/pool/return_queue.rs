//! The queue a buffer dropped on another core travels back home through.
//!
//! Normally a crossbeam-queue `ArrayQueue`: lock-free, bounded, many
//! producers (any core) and one consumer (the owner, draining in batches).
//! Its capacity is the class's cap, and a class never owns more buffers
//! than its cap, so a push never finds it full.
//!
//! crossbeam-queue does not run under loom, so under `--cfg loom` the same
//! interface is a `VecDeque` behind loom's `Mutex` (from [`crate::sync`]).
//! The loom models therefore check the protocol around the queue (who
//! frees what, and when, across the owner's close and remote drops), and
//! crossbeam's own tests and Miri runs check the queue itself.

use super::block::Block;

/// A bounded multi-producer queue of blocks coming home.
#[derive(Debug)]
pub(crate) struct ReturnQueue {
    #[cfg(not(loom))]
    blocks: crossbeam_queue::ArrayQueue<Block>,
    #[cfg(loom)]
    blocks: crate::sync::Mutex<std::collections::VecDeque<Block>>,
    #[cfg(loom)]
    capacity: usize,
}

impl ReturnQueue {
    /// A queue for at most `capacity` blocks (at least one slot is made).
    pub(crate) fn new(capacity: usize) -> Self {
        ReturnQueue {
            #[cfg(not(loom))]
            blocks: crossbeam_queue::ArrayQueue::new(capacity.max(1)),
            #[cfg(loom)]
            blocks: crate::sync::Mutex::new(std::collections::VecDeque::new()),
            #[cfg(loom)]
            capacity: capacity.max(1),
        }
    }

    /// Sends a block home; hands it back if the queue is full.
    #[inline]
    pub(crate) fn push(&self, block: Block) -> Result<(), Block> {
        #[cfg(not(loom))]
        {
            self.blocks.push(block)
        }
        #[cfg(loom)]
        {
            let mut blocks = self.blocks.lock().unwrap();
            if blocks.len() == self.capacity {
                return Err(block);
            }
            blocks.push_back(block);
            Ok(())
        }
    }

    /// Takes the oldest block that came home.
    #[inline]
    pub(crate) fn pop(&self) -> Option<Block> {
        #[cfg(not(loom))]
        {
            self.blocks.pop()
        }
        #[cfg(loom)]
        {
            self.blocks.lock().unwrap().pop_front()
        }
    }
}
