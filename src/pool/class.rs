//! Size classes and the pool's configuration.
//!
//! A pool keeps buffers in classes whose sizes are powers of two, from
//! [`SMALLEST_CLASS`] up to the largest the configuration names. A request
//! is served from the smallest class that holds it. Each class has a *cap*:
//! the most buffers of that class the pool will own at once (in use, free,
//! or on their way back). Past the cap, and for requests larger than the
//! largest class, a buffer comes straight from the system allocator, goes
//! back to it when dropped, and is counted as a fallback.

use std::fmt;

/// Bytes in the smallest class.
pub const SMALLEST_CLASS: usize = 64;

/// Every buffer starts at a multiple of this: a cache line, and more than
/// the 16 bytes rkyv archives need.
pub const BUFFER_ALIGN: usize = 64;

/// log2 of [`SMALLEST_CLASS`].
const SMALLEST_SHIFT: u32 = SMALLEST_CLASS.trailing_zeros();

/// The class index serving `size` bytes, if any class of `classes` does.
#[inline]
pub(crate) fn class_of(size: usize, classes: usize) -> Option<usize> {
    // `size == 0` wraps in `class_index` and lands past every class: serve
    // it from class 0 like any other small size.
    let index = if size == 0 { 0 } else { class_index(size) };
    (index < classes.min(MAX_CLASSES)).then_some(index)
}

/// The class index of `size` bytes, with no bound: [`MAX_CLASSES`] (no
/// class) for 0 and for sizes past `1 << (usize::BITS - 1)`. A bounds
/// check against a pool's classes (never more than `MAX_CLASSES`) makes it
/// [`class_of`] for every size but 0, in fewer instructions.
#[inline]
pub(crate) fn class_index(size: usize) -> usize {
    // The bit length of `size - 1`, less the smallest class's shift. The
    // `| (SMALLEST_CLASS - 1)` puts every smaller size in class 0 and keeps
    // the operand non-zero, so the count compiles to one `bsr`.
    let bits = usize::BITS - (size.wrapping_sub(1) | (SMALLEST_CLASS - 1)).leading_zeros();
    (bits - SMALLEST_SHIFT) as usize
}

/// Most classes there can be: the largest, `SMALLEST_CLASS << (MAX_CLASSES
/// - 1)`, is the largest power of two a `usize` holds.
pub(crate) const MAX_CLASSES: usize = (usize::BITS - SMALLEST_SHIFT) as usize;

/// Bytes in the buffers of class `index`.
#[inline]
pub(crate) const fn class_size(index: usize) -> usize {
    SMALLEST_CLASS << index
}

/// How many buffers of each size class a pool may own.
///
/// # Examples
///
/// ```
/// use corelane::pool::PoolConfig;
///
/// // Classes of 64 B to 1 MiB; at most 128 buffers of 4 KiB.
/// let config = PoolConfig::default().largest_class(1 << 20).cap(4096, 128);
/// assert_eq!(config.cap_of(4096), Some(128));
/// assert_eq!(config.cap_of(3000), Some(128)); // served by the 4 KiB class
/// assert_eq!(config.cap_of(2 << 20), None); // larger than any class
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// `caps[i]`: most buffers of class `i` (`SMALLEST_CLASS << i` bytes).
    caps: Vec<usize>,
}

/// The default pooled bytes per class (when the buffers count stays within
/// [`DEFAULT_MIN_CAP`] and [`DEFAULT_MAX_CAP`]).
const DEFAULT_CLASS_BYTES: usize = 1 << 20;
/// Fewest buffers a class may own by default.
const DEFAULT_MIN_CAP: usize = 2;
/// Most buffers a class may own by default.
const DEFAULT_MAX_CAP: usize = 1024;
/// Largest class by default (16 MiB).
const DEFAULT_LARGEST: usize = 16 << 20;

impl Default for PoolConfig {
    /// Classes of 64 B to 16 MiB; each may own about 1 MiB of buffers, but
    /// no fewer than 2 and no more than 1024 (so 1024 of 64 B to 4 KiB,
    /// 256 of 4 KiB, 2 of 4 MiB).
    fn default() -> Self {
        PoolConfig::uniform(DEFAULT_LARGEST, DEFAULT_CLASS_BYTES).largest_class(DEFAULT_LARGEST)
    }
}

impl PoolConfig {
    /// Classes up to `largest` bytes (rounded up to a power of two), each
    /// owning about `class_bytes` of buffers (at least 2 and at most 1024
    /// buffers).
    pub fn uniform(largest: usize, class_bytes: usize) -> Self {
        let classes = class_of(largest, usize::BITS as usize).map_or(1, |index| index + 1);
        let caps = (0..classes)
            .map(|index| (class_bytes / class_size(index)).clamp(DEFAULT_MIN_CAP, DEFAULT_MAX_CAP))
            .collect();
        PoolConfig { caps }
    }

    /// Makes `largest` (rounded up to a power of two, at least
    /// [`SMALLEST_CLASS`]) the largest class, dropping larger ones or adding
    /// classes with a cap of 2.
    pub fn largest_class(mut self, largest: usize) -> Self {
        let classes = class_of(largest, usize::BITS as usize).map_or(1, |index| index + 1);
        self.caps.resize(classes, DEFAULT_MIN_CAP);
        self
    }

    /// Sets the cap of the class serving `size` bytes (0 pools nothing of
    /// that size). Sizes above the largest class are ignored.
    pub fn cap(mut self, size: usize, cap: usize) -> Self {
        if let Some(index) = class_of(size, self.caps.len()) {
            self.caps[index] = cap;
        }
        self
    }

    /// The cap of the class serving `size` bytes, `None` if no class does.
    pub fn cap_of(&self, size: usize) -> Option<usize> {
        class_of(size, self.caps.len()).map(|index| self.caps[index])
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.caps.len()
    }

    /// Bytes in the largest class.
    pub fn largest(&self) -> usize {
        class_size(self.caps.len() - 1)
    }

    /// The most bytes the pool can own at once, all classes full.
    pub fn max_pooled_bytes(&self) -> usize {
        self.caps
            .iter()
            .enumerate()
            .map(|(index, cap)| cap.saturating_mul(class_size(index)))
            .fold(0, usize::saturating_add)
    }

    pub(crate) fn caps(&self) -> &[usize] {
        &self.caps
    }
}

impl fmt::Debug for PoolConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (index, cap) in self.caps.iter().enumerate() {
            map.entry(&class_size(index), cap);
        }
        map.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_map_to_the_smallest_class_that_holds_them() {
        assert_eq!(class_of(0, 8), Some(0));
        assert_eq!(class_of(64, 8), Some(0));
        assert_eq!(class_of(65, 8), Some(1));
        assert_eq!(class_of(4096, 8), Some(6));
        assert_eq!(class_of(4097, 8), Some(7));
        assert_eq!(class_of(8192, 8), Some(7));
        assert_eq!(class_of(8193, 8), None);
        assert_eq!(class_of(usize::MAX, 64), None);
        assert_eq!(class_of((1 << 63) + 1, 64), None);
        assert_eq!(class_of(1 << 63, 64), Some(57));
        assert_eq!(class_size(57), 1 << 63);
        for size in 1..=64 {
            assert_eq!(class_of(size, 8), Some(0), "size {size}");
        }
        assert_eq!(class_index(0), MAX_CLASSES);
        assert_eq!(class_index(usize::MAX), MAX_CLASSES);
        for size in [1, 64, 65, 4096, 4097, 1 << 40, 1 << 63] {
            assert_eq!(Some(class_index(size)), class_of(size, MAX_CLASSES));
        }
        for index in 0..8 {
            assert!(class_size(index) >= SMALLEST_CLASS);
            assert_eq!(class_of(class_size(index), 8), Some(index));
        }
    }

    #[test]
    fn default_caps_bound_each_class_near_a_mebibyte() {
        let config = PoolConfig::default();
        assert_eq!(config.largest(), 16 << 20);
        assert_eq!(config.cap_of(64), Some(1024));
        assert_eq!(config.cap_of(4096), Some(256));
        assert_eq!(config.cap_of(65536), Some(16));
        assert_eq!(config.cap_of(4 << 20), Some(2));
        assert_eq!(config.cap_of(32 << 20), None);
    }

    #[test]
    fn caps_and_the_largest_class_can_be_set() {
        let config = PoolConfig::uniform(4096, 8192)
            .cap(100, 7)
            .largest_class(16384);
        assert_eq!(config.classes(), 9);
        assert_eq!(config.cap_of(128), Some(7));
        assert_eq!(config.cap_of(4096), Some(2));
        assert_eq!(config.cap_of(16384), Some(2));
        assert_eq!(
            config.max_pooled_bytes(),
            (0..9)
                .map(|i| config.caps()[i] * class_size(i))
                .sum::<usize>()
        );
    }
}
