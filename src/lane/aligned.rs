//! A fixed array that starts on a 128-byte boundary: the typed ring's
//! slots.
//!
//! A `Box<[T]>` of small values starts wherever the allocator puts it, for
//! glibc 16 bytes past a 64-byte line as often as on one. A 16-slot ring of
//! `u64` is 128 bytes: on a boundary it is two lines, the pair the
//! adjacent-line prefetcher fetches together, and elsewhere it is three,
//! so each lap moves a line more between the producer's core and the
//! consumer's. Measured in the lanes bench (`LANES_FILTER='typed (16|rtrb
//! (16'`, `LANES_ROUNDS=3`, one binary with the slots placed by hand, two
//! runs each): the 16-slot typed ring's throughput was 1.04x to 1.07x
//! rtrb's with the slots on a 128-byte boundary, 0.93x and 1.03x on a
//! 64-byte one, and 0.75x to 0.89x 16, 32 or 48 bytes past a line.

use std::alloc::{self, Layout};
use std::fmt;
use std::ops::Deref;
use std::ptr::{self, NonNull};

use super::region::REGION_ALIGN;

/// Where every array starts: the same boundary as a frame ring's region
/// and as a padded index word.
pub(crate) const ARRAY_ALIGN: usize = REGION_ALIGN;

/// `len` values of `T` in one allocation whose first byte is aligned to
/// [`ARRAY_ALIGN`] (or to `T`'s own alignment, if that is larger).
pub(crate) struct AlignedArray<T> {
    base: NonNull<T>,
    /// Values made so far: all of them once `new` returns; fewer only while
    /// it runs, so that a panicking `make` drops what it had made.
    len: usize,
    /// What was allocated, or `None` if nothing was (no bytes asked for).
    layout: Option<Layout>,
}

/// The array could not be allocated: its size overflows, or the allocator
/// refused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ArrayAllocError {
    /// Values asked for.
    pub(crate) len: usize,
}

impl fmt::Display for ArrayAllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no memory for {} values of this type", self.len)
    }
}

impl<T> AlignedArray<T> {
    /// Makes an array of `len` values, each made by `make`, in order.
    ///
    /// # Errors
    ///
    /// [`ArrayAllocError`] if `len` values of `T` do not fit in `isize::MAX`
    /// bytes or the allocator refuses them.
    pub(crate) fn new(len: usize, mut make: impl FnMut() -> T) -> Result<Self, ArrayAllocError> {
        let error = ArrayAllocError { len };
        let layout = Layout::array::<T>(len)
            .and_then(|layout| layout.align_to(ARRAY_ALIGN))
            .map_err(|_| error)?;
        let (base, layout) = if layout.size() == 0 {
            // Zero-sized values, or none: nothing to allocate, and any
            // well-aligned address will do for reads and writes of no bytes.
            // The layout's alignment, as an address, is one on the boundary,
            // as the type's doc says (and never 0: the error is never
            // returned).
            let base = NonNull::new(ptr::without_provenance_mut::<T>(layout.align()));
            (base.ok_or(error)?, None)
        } else {
            // SAFETY: the layout's size is not zero.
            let allocation = unsafe { alloc::alloc(layout) };
            (NonNull::new(allocation).ok_or(error)?.cast(), Some(layout))
        };

        let mut array = AlignedArray {
            base,
            len: 0,
            layout,
        };
        while array.len < len {
            // SAFETY: `array.len < len`, so the address is inside the
            // allocation (or is the aligned base of no bytes, for zero-sized
            // values), and nothing is there yet.
            unsafe { array.base.as_ptr().add(array.len).write(make()) };
            array.len += 1;
        }
        Ok(array)
    }
}

impl<T> Deref for AlignedArray<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        // SAFETY: `base` points to `len` values made by `new`, aligned and
        // alive until `drop`; `&self` keeps them from being dropped or
        // changed except through `T`'s own interior mutability.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr(), self.len) }
    }
}

impl<T> Drop for AlignedArray<T> {
    fn drop(&mut self) {
        // Freed after the values, and also if the drop of one of them
        // panics (the others are dropped all the same), as a `Box<[T]>`'s
        // would be.
        let _allocation = self.layout.map(|layout| Allocation {
            base: self.base.cast(),
            layout,
        });
        // SAFETY: the first `len` values were made by `new` and are dropped
        // only here, once.
        unsafe {
            ptr::drop_in_place(ptr::slice_from_raw_parts_mut(self.base.as_ptr(), self.len));
        }
    }
}

/// An array's allocation, freed when this is dropped.
struct Allocation {
    base: NonNull<u8>,
    layout: Layout,
}

impl Drop for Allocation {
    fn drop(&mut self) {
        // SAFETY: made only by the drop of an `AlignedArray`, whose `base`
        // came from `alloc` with this same layout, and only once.
        unsafe { alloc::dealloc(self.base.as_ptr(), self.layout) };
    }
}

// SAFETY: the array owns its values as a `Box<[T]>` would: sending it sends
// them, and sharing it shares `&T`s.
unsafe impl<T: Send> Send for AlignedArray<T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Sync for AlignedArray<T> {}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[repr(align(256))]
    struct Wide(#[allow(dead_code)] u8);

    fn address<T>(array: &AlignedArray<T>) -> usize {
        array.as_ptr() as usize
    }

    #[test]
    fn arrays_start_on_the_boundary_whatever_the_type_and_length() {
        for len in [1, 2, 3, 15, 16, 17, 1000] {
            // Allocations in between, so that the allocator's next address
            // moves around.
            let _u8s = AlignedArray::new(len, || 1u8).unwrap();
            let u64s = AlignedArray::new(len, || 7u64).unwrap();
            assert_eq!(address(&u64s) % ARRAY_ALIGN, 0, "{len} u64s");
            assert_eq!(u64s.len(), len);
            assert!(u64s.iter().all(|&value| value == 7));
            let _strings = AlignedArray::new(len, || String::from("x")).unwrap();
            let bytes = AlignedArray::new(len, || 3u8).unwrap();
            assert_eq!(address(&bytes) % ARRAY_ALIGN, 0, "{len} u8s");
            let wide = AlignedArray::new(len, || Wide(0)).unwrap();
            assert_eq!(address(&wide) % 256, 0, "{len} values aligned to 256");
            let units = AlignedArray::new(len, || ()).unwrap();
            assert_eq!(units.len(), len);
        }
    }

    #[test]
    fn values_are_made_in_order_and_dropped_once() {
        let made = Cell::new(0);
        let dropped = Cell::new(0);
        struct Counted<'a>(usize, &'a Cell<usize>);
        impl Drop for Counted<'_> {
            fn drop(&mut self) {
                self.1.set(self.1.get() + 1);
            }
        }
        let array = AlignedArray::new(5, || {
            made.set(made.get() + 1);
            Counted(made.get(), &dropped)
        })
        .unwrap();
        let order: Vec<usize> = array.iter().map(|value| value.0).collect();
        assert_eq!(order, [1, 2, 3, 4, 5]);
        drop(array);
        assert_eq!(dropped.get(), 5);
    }

    #[test]
    fn a_panicking_maker_drops_what_it_had_made() {
        let dropped = Cell::new(0);
        struct Counted<'a>(&'a Cell<usize>);
        impl Drop for Counted<'_> {
            fn drop(&mut self) {
                self.0.set(self.0.get() + 1);
            }
        }
        let mut made = 0;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            AlignedArray::new(4, || {
                made += 1;
                assert!(made <= 3, "fourth value");
                Counted(&dropped)
            })
        }));
        assert!(result.is_err());
        assert_eq!(dropped.get(), 3);
    }

    /// The allocation is left behind only as far as Miri sees (it reports
    /// it at exit): natively this checks the drops alone.
    #[test]
    fn a_panicking_drop_of_a_value_drops_the_others_and_frees_the_array() {
        let dropped = Cell::new(0);
        struct Bomb<'a>(bool, &'a Cell<usize>);
        impl Drop for Bomb<'_> {
            fn drop(&mut self) {
                self.1.set(self.1.get() + 1);
                assert!(!self.0, "a value's drop panics");
            }
        }
        let mut made = 0;
        let array = AlignedArray::new(4, || {
            made += 1;
            Bomb(made == 2, &dropped)
        })
        .unwrap();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(array)));
        assert!(result.is_err());
        assert_eq!(dropped.get(), 4);
    }

    #[test]
    fn arrays_of_no_bytes_start_on_the_boundary_too() {
        #[repr(align(256))]
        struct WideUnit;

        let none = AlignedArray::new(0, || 7u64).unwrap();
        assert_eq!(address(&none) % ARRAY_ALIGN, 0, "no u64s");
        for len in [0, 1, 3] {
            let units = AlignedArray::new(len, || ()).unwrap();
            assert_eq!(address(&units) % ARRAY_ALIGN, 0, "{len} units");
            let wide = AlignedArray::new(len, || WideUnit).unwrap();
            assert_eq!(address(&wide) % 256, 0, "{len} units aligned to 256");
            assert_eq!(wide.len(), len);
        }
    }

    #[test]
    fn sizes_past_the_address_space_are_errors() {
        assert_eq!(
            AlignedArray::new(usize::MAX / 4, || 0u64).err(),
            Some(ArrayAllocError {
                len: usize::MAX / 4
            })
        );
    }
}
