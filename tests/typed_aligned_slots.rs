//! The typed ring's slots in one allocation of their own, aligned to 128
//! bytes (or more, for values that ask for more): values aligned above
//! that, zero-sized ones, allocations that cannot be made, and values left
//! in the ring when it goes, one of whose drops panics. Runs under Miri
//! (which also reports any value or allocation left behind):
//!
//! ```text
//! cargo +nightly miri test --test typed_aligned_slots
//! ```

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use corelane::lane::typed::{ring, Consumer, Producer};

/// A value aligned above the slots' own 128-byte boundary.
#[repr(align(256))]
#[derive(Debug, PartialEq)]
struct Wide(u64);

/// A value aligned to a page.
#[repr(align(4096))]
#[derive(Debug, PartialEq)]
struct Paged(u64);

/// A zero-sized value aligned above 128 bytes.
#[repr(align(256))]
#[derive(Debug, PartialEq)]
struct WideUnit;

fn address<T>(value: &T) -> usize {
    value as *const T as usize
}

/// Pushes, write chunks, pops, read chunks and pop batches in turn, laps
/// around a ring of `Wide` values: they come out in order, and each one
/// lent in place sits on its own 256-byte boundary.
#[test]
fn values_aligned_above_128_bytes_keep_their_alignment_across_the_wrap() {
    for capacity in [1usize, 2, 3, 5, 16, 17] {
        let (mut producer, mut consumer) = ring::<Wide>(capacity);
        let (mut sent, mut received) = (0u64, 0u64);
        let take = |value: Wide, received: &mut u64| {
            assert_eq!(value, Wide(*received), "capacity {capacity}");
            *received += 1;
        };
        for step in 0..capacity * 6 + 5 {
            if step % 2 == 0 {
                if producer.push(Wide(sent)).is_ok() {
                    sent += 1;
                }
            } else if let Ok(mut chunk) = producer.write_chunk(capacity) {
                while chunk.push(Wide(sent + chunk.filled() as u64)).is_ok() {}
                let filled = chunk.filled();
                chunk.commit(filled);
                sent += filled as u64;
            }

            let chunk = consumer.read_chunk(capacity);
            assert_eq!(chunk.len() as u64, sent - received);
            for value in chunk.iter() {
                assert_eq!(address(value) % 256, 0, "capacity {capacity}");
            }
            drop(chunk);
            match step % 3 {
                0 => {
                    if let Some(value) = consumer.pop() {
                        take(value, &mut received);
                    }
                }
                1 => {
                    consumer.pop_batch(2, |value| take(value, &mut received));
                }
                _ => {
                    if let Some(value) = consumer.read_chunk(1).next() {
                        take(value, &mut received);
                    }
                }
            }
            assert_eq!(consumer.len() as u64, sent - received);
            assert_eq!(consumer.is_empty(), sent == received);
        }
    }
}

#[test]
fn page_aligned_values_sit_on_pages() {
    let (mut producer, mut consumer) = ring::<Paged>(3);
    for n in 0..7 {
        producer.push(Paged(n)).unwrap();
        let chunk = consumer.read_chunk(1);
        assert_eq!(address(chunk.get(0).unwrap()) % 4096, 0);
        drop(chunk);
        assert_eq!(consumer.pop(), Some(Paged(n)));
    }
}

#[test]
fn zero_sized_values_aligned_above_128_bytes_are_counted() {
    let (mut producer, mut consumer) = ring::<WideUnit>(3);
    for _ in 0..5 {
        let free = 3 - consumer.len();
        assert_eq!(
            producer.push_batch(std::iter::repeat_with(|| WideUnit)),
            free
        );
        let chunk = consumer.read_chunk(2);
        assert_eq!(address(chunk.get(1).unwrap()) % 256, 0);
        drop(chunk);
        assert_eq!(consumer.pop(), Some(WideUnit));
        assert_eq!(consumer.pop_batch(1, drop), 1);
        assert_eq!(consumer.len(), 1);
    }
}

#[test]
// Miri stops the whole run at a request it cannot satisfy ("resource
// exhaustion") instead of failing the allocation.
#[cfg_attr(miri, ignore)]
#[should_panic(expected = "cannot allocate a lane of")]
fn values_aligned_above_128_bytes_that_cannot_be_allocated_panic() {
    // 2^50 values of 256 bytes: 2^58 bytes, within `isize::MAX`, so the
    // request reaches the allocator, which refuses it.
    let _ = ring::<Wide>(1 << 50);
}

#[test]
#[should_panic(expected = "cannot allocate a lane of")]
fn bytes_up_to_the_capacity_limit_do_not_fit_once_aligned() {
    // `isize::MAX - 126` bytes fit in `isize::MAX`; rounded up to the
    // 128-byte boundary (`isize::MAX + 1`) they do not, so no allocator is
    // asked, and the request is refused under Miri as well.
    let _ = ring::<u8>(usize::MAX / 2 - 126);
}

/// Counts its drops, and panics in the drop if asked to.
struct Bomb {
    drops: Arc<AtomicUsize>,
    explodes: bool,
}

impl Drop for Bomb {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::Relaxed);
        assert!(!self.explodes, "a value's drop panics");
    }
}

/// A ring of 4 whose head has lapped once, holding `left` values from slot
/// 3 on (so across the wrap), the `explodes`th of which panics when
/// dropped.
fn ring_with_a_bomb(
    drops: &Arc<AtomicUsize>,
    left: usize,
    explodes: usize,
) -> (Producer<Bomb>, Consumer<Bomb>) {
    let bomb = |explodes| Bomb {
        drops: Arc::clone(drops),
        explodes,
    };
    let (mut producer, mut consumer) = ring(4);
    for _ in 0..3 {
        assert!(producer.push(bomb(false)).is_ok());
        drop(consumer.pop().unwrap());
    }
    for n in 0..left {
        assert!(producer.push(bomb(n == explodes)).is_ok());
    }
    drops.store(0, Ordering::Relaxed);
    (producer, consumer)
}

/// The values left when the ring goes are all dropped even if one's drop
/// panics: the panic reaches the thread that dropped the last half, and
/// the values after the one that panicked are dropped as it unwinds.
#[test]
fn a_panicking_drop_of_a_value_left_in_the_ring_does_not_leak_the_others() {
    for explodes in 0..4 {
        for producer_last in [false, true] {
            for other_thread in [false, true] {
                let drops = Arc::new(AtomicUsize::new(0));
                let (producer, consumer) = ring_with_a_bomb(&drops, 4, explodes);
                let last: Box<dyn FnOnce() + Send> = if producer_last {
                    drop(consumer);
                    Box::new(move || drop(producer))
                } else {
                    drop(producer);
                    Box::new(move || drop(consumer))
                };
                let panicked = if other_thread {
                    thread::spawn(last).join().is_err()
                } else {
                    panic::catch_unwind(AssertUnwindSafe(last)).is_err()
                };
                assert!(panicked, "bomb {explodes}");
                assert_eq!(drops.load(Ordering::Relaxed), 4, "bomb {explodes}");
                // Every value is gone: nothing holds a clone of the counter.
                assert_eq!(Arc::strong_count(&drops), 1, "bomb {explodes}");
            }
        }
    }
}
