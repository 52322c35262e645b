//! A second handle on a pool that lends buffers, for code kept apart from
//! the pool's owner (a server's connections, say).

use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;

use super::buffer::PoolBuf;
use super::class::class_size;
use super::home::Home;
use super::usage::PoolUsage;

/// Takes buffers from a pool on its owning thread, as [`Pool::take`]
/// does; see [`Pool::lender`]. Like the pool it is neither `Send` nor
/// `Sync`.
///
/// A lender keeps the pool's shared part alive. Once the pool itself is
/// dropped, [`take`](Self::take) serves from the allocator (counted as a
/// fallback), so a lender that outlives its pool stays safe to use.
///
/// [`Pool::take`]: super::Pool::take
/// [`Pool::lender`]: super::Pool::lender
///
/// # Examples
///
/// ```
/// use corelane::pool::{Pool, PoolConfig};
///
/// let pool = Pool::new(&PoolConfig::default());
/// let lender = pool.lender();
/// let buf = lender.take(1000);
/// assert!(buf.is_pooled());
/// drop(buf);
/// assert_eq!(pool.usage().free, 1);
/// ```
pub struct PoolLender {
    home: NonNull<Home>,
    _owner_thread: PhantomData<*const ()>,
}

impl PoolLender {
    /// Holds one reference to `home`, taken by the caller.
    pub(crate) fn new(home: NonNull<Home>) -> Self {
        PoolLender {
            home,
            _owner_thread: PhantomData,
        }
    }

    fn home(&self) -> &Home {
        // SAFETY: the lender holds a reference until it is dropped.
        unsafe { self.home.as_ref() }
    }

    /// A buffer of at least `size` bytes, as [`Pool::take`](super::Pool::take).
    ///
    /// # Panics
    ///
    /// As [`Pool::take`](super::Pool::take): for a `size` past
    /// `isize::MAX`.
    #[inline]
    pub fn take(&self, size: usize) -> PoolBuf {
        // SAFETY: the lender holds a reference to its home and is on its
        // owning thread (it is `!Send`).
        unsafe { PoolBuf::take_from(self.home, size) }
    }

    /// Bytes in the pool's largest class: larger requests always fall
    /// back to the allocator.
    pub fn largest_class(&self) -> usize {
        class_size(self.home().classes() - 1)
    }

    /// What the pool holds and has served.
    pub fn usage(&self) -> PoolUsage {
        // SAFETY: owning thread (the lender is `!Send`).
        unsafe { self.home().usage() }
    }
}

impl Drop for PoolLender {
    fn drop(&mut self) {
        // SAFETY: owning thread; the lender's reference, given up.
        unsafe { Home::forget(self.home) }
    }
}

impl fmt::Debug for PoolLender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolLender")
            .field("usage", &self.usage())
            .finish()
    }
}

// Plain threads and std atomics: not a loom model (the return path has
// its own, in `loom_models`).
#[cfg(all(test, not(loom)))]
mod tests {
    use crate::pool::{Pool, PoolConfig};

    #[test]
    fn a_lender_takes_from_the_same_pool() {
        let pool = Pool::new(&PoolConfig::default());
        let lender = pool.lender();
        let first = lender.take(100);
        let second = pool.take(100);
        assert!(first.is_pooled() && second.is_pooled());
        assert_eq!(pool.usage().in_use, 2);
        assert_eq!(lender.usage(), pool.usage());
        drop((first, second));
        assert_eq!((pool.usage().in_use, pool.usage().free), (0, 2));
        assert_eq!(lender.largest_class(), PoolConfig::default().largest());
    }

    #[test]
    fn a_lender_outliving_its_pool_lends_from_the_allocator() {
        let pool = Pool::new(&PoolConfig::default());
        let lender = pool.lender();
        let early = lender.take(64);
        drop(pool);
        // Taken after the pool closed: counted, and never pooled.
        let late = lender.take(64);
        assert!(!late.is_pooled());
        assert_eq!(lender.usage().fallbacks, 1);
        // Both go back safely; the last reference frees the pool's home
        // (Miri checks nothing leaks).
        drop(early);
        drop(late);
        drop(lender);
    }
}
