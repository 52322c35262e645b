//! Rings with spare slots (fewer than 16 cache lines of values) must still
//! hold at most `capacity` values, whatever the size of the value, and keep
//! order, counts and drops right across the physical end of their slots.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use corelane::lane::typed::ring;

/// Capacities to try: all of 1..=40 under miri would be slow, so fewer there.
fn capacities() -> Vec<usize> {
    if cfg!(miri) {
        vec![1, 2, 3, 7, 16, 17]
    } else {
        (1..=130).collect()
    }
}

/// Fills a ring of `capacity` values made by `make`, checks it refuses the
/// next push at exactly `capacity`, then drains it, for several laps so
/// that the values cross the end of the slots at every offset.
fn full_at_capacity<T: Send + PartialEq + std::fmt::Debug>(make: fn(usize) -> T) {
    for capacity in capacities() {
        let (mut producer, mut consumer) = ring::<T>(capacity);
        let mut next = 0usize;
        let mut expected = 0usize;
        // Each lap starts `capacity` slots on from the last, so the full
        // ring sits across the end of the slots at several offsets.
        let laps = if cfg!(miri) { 3 } else { capacity + 3 };
        for _ in 0..laps {
            for _ in 0..capacity {
                producer.push(make(next)).unwrap();
                next += 1;
            }
            assert!(producer.is_full(), "capacity {capacity}");
            assert_eq!(producer.slots(), 0, "capacity {capacity}");
            assert_eq!(consumer.len(), capacity, "capacity {capacity}");
            let refused = producer.push(make(next));
            assert!(refused.is_err(), "capacity {capacity}: push past capacity");
            assert!(
                producer.write_chunk(1).is_err(),
                "capacity {capacity}: chunk past capacity"
            );
            assert_eq!(producer.push_batch(std::iter::once(make(next))), 0);
            // Take all but one, so the next lap starts one slot further on.
            for _ in 0..capacity.saturating_sub(1).max(1) {
                assert_eq!(consumer.pop(), Some(make(expected)));
                expected += 1;
            }
            // `len` hands back the slots a large ring's consumer may still
            // hold (see "Handing slots back").
            let taken = capacity.saturating_sub(1).max(1);
            assert_eq!(consumer.len(), capacity - taken);
            assert_eq!(producer.slots(), taken, "capacity {capacity}");
            // Drain what is left.
            while expected < next {
                if let Some(value) = consumer.pop() {
                    assert_eq!(value, make(expected));
                    expected += 1;
                }
            }
            assert!(consumer.is_empty());
            assert_eq!(producer.slots(), capacity);
        }
    }
}

#[test]
fn u8_ring_refuses_at_capacity() {
    full_at_capacity::<u8>(|n| n as u8);
}

#[test]
fn u16_ring_refuses_at_capacity() {
    full_at_capacity::<u16>(|n| n as u16);
}

#[test]
fn u64_ring_refuses_at_capacity() {
    full_at_capacity::<u64>(|n| n as u64);
}

#[test]
fn array24_ring_refuses_at_capacity() {
    full_at_capacity::<[u8; 24]>(|n| [n as u8; 24]);
}

#[test]
fn array127_ring_refuses_at_capacity() {
    full_at_capacity::<[u8; 127]>(|n| [n as u8; 127]);
}

#[test]
fn string_ring_refuses_at_capacity() {
    full_at_capacity::<String>(|n| n.to_string());
}

/// Offset by `shift` single values, then fills with chunks and batches that
/// cross the end of the slots, with partial commits, and reads them back
/// with read chunks, pop_batch and fold.
#[test]
fn chunks_and_batches_cross_the_end_of_the_slots() {
    for capacity in capacities() {
        for shift in 0..capacity.min(if cfg!(miri) { 3 } else { 40 }) {
            let (mut producer, mut consumer) = ring::<u16>(capacity);
            let mut next = 0u16;
            let mut expected = 0u16;
            for _ in 0..shift {
                producer.push(next).unwrap();
                next += 1;
                assert_eq!(consumer.pop(), Some(expected));
                expected += 1;
            }
            for round in 0..6 {
                // Ask for more than fits: the chunk is cut at capacity - len.
                let free = producer.slots();
                let mut chunk = producer.write_chunk(capacity + 5).unwrap();
                assert_eq!(chunk.len(), free, "capacity {capacity} shift {shift}");
                let filled = chunk.fill_from(next..);
                assert_eq!(filled, free);
                // Commit all but a few on odd rounds: those are dropped.
                let keep = if round % 2 == 1 {
                    filled - filled / 3
                } else {
                    filled
                };
                chunk.commit(keep);
                next += keep as u16;
                assert_eq!(consumer.len(), keep + (capacity - free));
                assert_eq!(producer.slots(), capacity - consumer.len());

                // Read half with a chunk, the rest with pop_batch or fold.
                let len = consumer.len();
                let mut read = consumer.read_chunk(len / 2);
                assert_eq!(read.len(), len / 2);
                for i in 0..read.len() {
                    assert_eq!(read.get(i), Some(&(expected + i as u16)));
                }
                let moved: Vec<u16> = read.by_ref().take(len / 4).collect();
                drop(read);
                for value in moved {
                    assert_eq!(value, expected);
                    expected += 1;
                }
                if round % 2 == 0 {
                    let mut seen = Vec::new();
                    let count = consumer.pop_batch(usize::MAX, |v| seen.push(v));
                    assert_eq!(count, len - len / 4);
                    for value in seen {
                        assert_eq!(value, expected);
                        expected += 1;
                    }
                } else {
                    let rest = consumer.read_chunk(usize::MAX);
                    assert_eq!(rest.len(), len - len / 4);
                    let first = u64::from(expected);
                    let sum = rest.fold(0u64, |sum, v| {
                        assert_eq!(v, expected);
                        expected += 1;
                        sum + u64::from(v)
                    });
                    let last = u64::from(expected);
                    assert_eq!(sum, (first..last).sum::<u64>());
                }
                assert_eq!(expected, next);
                assert!(consumer.is_empty());
                assert_eq!(producer.slots(), capacity);
            }
        }
    }
}

/// Counts drops, so a test can see every value dropped exactly once.
#[derive(Debug)]
struct Counted {
    drops: Arc<AtomicUsize>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn values_left_in_a_wrapped_ring_are_dropped_once() {
    for capacity in capacities() {
        for shift in 0..capacity.min(if cfg!(miri) { 3 } else { 20 }) {
            let drops = Arc::new(AtomicUsize::new(0));
            let make = || Counted {
                drops: Arc::clone(&drops),
            };
            let (mut producer, mut consumer) = ring::<Counted>(capacity);
            let mut made = 0;
            for _ in 0..shift + capacity {
                producer.push(make()).unwrap();
                made += 1;
                drop(consumer.pop().unwrap());
            }
            while producer.push(make()).is_ok() {
                made += 1;
            }
            // The refused value came back and was dropped with the Err.
            made += 1;
            assert_eq!(drops.load(Ordering::Relaxed), shift + capacity + 1);
            // A chunk written and not committed over the consumer's slots
            // is not possible: the ring is full.
            assert!(producer.write_chunk(1).is_err());
            // Take one, write a chunk of one and drop it uncommitted.
            drop(consumer.pop().unwrap());
            // Hands the slot back on large rings too.
            assert_eq!(consumer.len(), capacity - 1);
            {
                let mut chunk = producer.write_chunk(3).unwrap();
                assert_eq!(chunk.len(), 1);
                chunk.push(make()).unwrap();
                made += 1;
            }
            assert_eq!(drops.load(Ordering::Relaxed), shift + capacity + 3);
            assert_eq!(consumer.len(), capacity - 1);
            drop(producer);
            drop(consumer);
            assert_eq!(
                drops.load(Ordering::Relaxed),
                made,
                "capacity {capacity} shift {shift}"
            );
        }
    }
}

#[test]
fn two_threads_pass_every_value_in_order() {
    let total: u64 = if cfg!(miri) { 200 } else { 200_000 };
    for capacity in [1usize, 2, 3, 7, 15, 16, 17, 31, 127] {
        let (mut producer, mut consumer) = ring::<u64>(capacity);
        let sender = std::thread::spawn(move || {
            let mut n = 0;
            while n < total {
                if n % 3 == 0 {
                    let pushed = producer.push_batch(n..total.min(n + 5));
                    n += pushed as u64;
                } else if producer.push(n).is_ok() {
                    n += 1;
                }
                if producer.slots() > capacity {
                    panic!("more free slots than the capacity");
                }
                std::thread::yield_now();
            }
        });
        let mut expected = 0;
        let mut sum = 0u64;
        while expected < total {
            assert!(consumer.len() <= capacity, "capacity {capacity}");
            let got = consumer.pop_batch(4, |v| {
                assert_eq!(v, expected);
                expected += 1;
                sum = sum.wrapping_add(v);
            });
            if got == 0 {
                std::thread::yield_now();
            }
        }
        sender.join().unwrap();
        assert_eq!(sum, total * (total - 1) / 2);
    }
}
