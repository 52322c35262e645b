//! Behaviour of the typed SPSC ring (`corelane::lane::typed`): exact
//! capacities, order under two threads, batches across the wrap, drops and
//! abandonment.

#![cfg(not(loom))]

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use corelane::lane::typed::{ring, Consumer, Producer};
use corelane::lane::Full;

/// Capacities the order and wrap tests run over: the degenerate ones, an odd
/// one, a small power of two and a large one.
const CAPACITIES: [usize; 6] = [1, 2, 3, 4, 16, 1024];

/// Values sent through each ring by the two-thread stress tests.
const STRESS_VALUES: u64 = if cfg!(miri) { 300 } else { 2_000_000 };

/// A value that counts its drops in a shared counter.
struct Counted {
    drops: Arc<AtomicUsize>,
}

impl Counted {
    fn new(drops: &Arc<AtomicUsize>) -> Self {
        Self {
            drops: Arc::clone(drops),
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::Relaxed);
    }
}

/// Waits a little while the other thread catches up, giving up the CPU now
/// and then in case both threads share one.
fn back_off(spins: &mut u32) {
    *spins += 1;
    if (*spins).is_multiple_of(64) {
        thread::yield_now();
    } else {
        std::hint::spin_loop();
    }
}

/// Held by each stress test while it runs, so that two of them never pin
/// four spinning threads onto the same two CPUs.
static STRESS: Mutex<()> = Mutex::new(());

/// Runs `produce` and `consume` on two threads, pinned to two different CPUs
/// when the machine has two (never under Miri, which cannot pin), and returns
/// what `consume` returns.
fn run_pair<P, C>(produce: P, consume: C) -> u64
where
    P: FnOnce() + Send + 'static,
    C: FnOnce() -> u64 + Send + 'static,
{
    let _alone = STRESS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let cores = if cfg!(miri) {
        Vec::new()
    } else {
        core_affinity::get_core_ids().unwrap_or_default()
    };
    let (producer_core, consumer_core) = match cores.as_slice() {
        [first, second, ..] => (Some(*first), Some(*second)),
        _ => (None, None),
    };

    let producer = thread::spawn(move || {
        if let Some(core) = producer_core {
            core_affinity::set_for_current(core);
        }
        produce();
    });
    let consumer = thread::spawn(move || {
        if let Some(core) = consumer_core {
            core_affinity::set_for_current(core);
        }
        consume()
    });
    producer.join().expect("producer thread panicked");
    consumer.join().expect("consumer thread panicked")
}

/// Sum of `0..count`, what the consumer of the stress tests must add up to.
fn expected_sum(count: u64) -> u64 {
    count * (count - 1) / 2
}

#[test]
fn smoke() {
    let (mut producer, mut consumer) = ring(4);
    assert!(consumer.is_empty());

    producer.push(1).unwrap();
    producer.push(2).unwrap();
    assert_eq!(consumer.len(), 2);
    assert_eq!(producer.slots(), 2);

    assert_eq!(consumer.pop(), Some(1));
    assert_eq!(consumer.pop(), Some(2));
    assert_eq!(consumer.pop(), None);
    assert_eq!(producer.capacity(), 4);
    assert_eq!(consumer.capacity(), 4);
}

#[test]
fn every_capacity_holds_exactly_that_many() {
    for capacity in [1, 2, 3, 4, 5, 7, 16, 100] {
        let (mut producer, mut consumer) = ring(capacity);
        // Twice round, so the second fill starts past the wrap.
        for round in 0..2 {
            for n in 0..capacity {
                assert_eq!(
                    producer.push(n),
                    Ok(()),
                    "capacity {capacity}, round {round}"
                );
            }
            assert!(producer.is_full());
            assert_eq!(producer.push(usize::MAX), Err(Full(usize::MAX)));
            assert_eq!(consumer.len(), capacity);
            for n in 0..capacity {
                assert_eq!(consumer.pop(), Some(n));
            }
            assert_eq!(consumer.pop(), None);
        }
    }
}

#[test]
#[should_panic(expected = "lane capacity must be at least 1")]
fn zero_capacity_panics() {
    let _ = ring::<u8>(0);
}

#[test]
// Miri stops the whole run at a request it cannot satisfy ("resource
// exhaustion") instead of failing the allocation.
#[cfg_attr(miri, ignore)]
#[should_panic(expected = "cannot allocate a lane of")]
fn slots_that_cannot_be_allocated_panic_rather_than_abort() {
    // 2^59 u64s are 2^62 bytes: within isize::MAX, so the request reaches
    // the allocator, and beyond any address space, so it fails. This used to
    // abort the whole process ("memory allocation of .. bytes failed").
    let _ = ring::<u64>(1 << 59);
}

#[test]
fn full_ring_hands_the_value_back() {
    let (mut producer, _consumer) = ring(1);
    producer.push(String::from("kept")).unwrap();
    let refused = producer.push(String::from("refused")).unwrap_err();
    assert_eq!(refused.into_inner(), "refused");
}

#[test]
fn spsc_one_at_a_time_keeps_order() {
    for capacity in CAPACITIES {
        let (mut producer, mut consumer) = ring::<u64>(capacity);
        let produce = move || {
            let mut spins = 0;
            for n in 0..STRESS_VALUES {
                let mut value = n;
                while let Err(Full(refused)) = producer.push(value) {
                    value = refused;
                    back_off(&mut spins);
                }
            }
        };
        let consume = move || {
            let (mut sum, mut spins) = (0, 0);
            for expected in 0..STRESS_VALUES {
                let value = loop {
                    match consumer.pop() {
                        Some(value) => break value,
                        None => back_off(&mut spins),
                    }
                };
                assert_eq!(value, expected, "capacity {capacity}");
                sum += value;
            }
            assert_eq!(consumer.pop(), None);
            sum
        };
        assert_eq!(
            run_pair(produce, consume),
            expected_sum(STRESS_VALUES),
            "capacity {capacity}"
        );
    }
}

#[test]
fn spsc_batches_keep_order() {
    for capacity in CAPACITIES {
        let (mut producer, mut consumer) = ring::<u64>(capacity);
        let produce = move || {
            let mut values = 0..STRESS_VALUES;
            let mut spins = 0;
            // Batches of changing sizes, so that they end everywhere in the ring.
            let mut batch = 1;
            while !values.is_empty() {
                if producer.push_batch(values.by_ref().take(batch)) == 0 {
                    back_off(&mut spins);
                }
                batch = batch % 37 + 1;
            }
        };
        let consume = move || {
            let (mut sum, mut expected, mut spins) = (0, 0, 0);
            let mut batch = 1;
            while expected < STRESS_VALUES {
                let popped = consumer.pop_batch(batch, |value| {
                    assert_eq!(value, expected, "capacity {capacity}");
                    sum += value;
                    expected += 1;
                });
                if popped == 0 {
                    back_off(&mut spins);
                }
                batch = batch % 29 + 1;
            }
            assert_eq!(consumer.pop(), None);
            sum
        };
        assert_eq!(
            run_pair(produce, consume),
            expected_sum(STRESS_VALUES),
            "capacity {capacity}"
        );
    }
}

#[test]
fn batches_of_every_size_cross_the_wrap() {
    for capacity in CAPACITIES.into_iter().filter(|&c| c <= 16) {
        let (mut producer, mut consumer) = ring::<usize>(capacity);
        let (mut sent, mut received) = (0, 0);
        // Each offset shifts where the next batches start; each size is
        // written through a chunk and read back through a chunk.
        for offset in 0..2 * capacity + 1 {
            producer.push(sent).unwrap();
            sent += 1;
            assert_eq!(consumer.pop(), Some(received));
            received += 1;
            for size in 1..=capacity {
                let mut chunk = producer.write_chunk(size).unwrap();
                assert_eq!(chunk.len(), size);
                assert_eq!(chunk.fill_from(sent..), size);
                assert_eq!(chunk.push(usize::MAX), Err(Full(usize::MAX)));
                chunk.commit_filled();
                sent += size;

                let chunk = consumer.read_chunk(size + 1);
                assert_eq!(chunk.len(), size, "capacity {capacity}, offset {offset}");
                let expected: Vec<usize> = (received..received + size).collect();
                assert!(chunk.iter().eq(expected.iter()));
                assert!(chunk.eq(expected));
                received += size;
            }
        }
        assert_eq!(sent, received);
        assert!(consumer.is_empty());
    }
}

#[test]
fn write_chunk_claims_only_free_slots() {
    let (mut producer, mut consumer) = ring::<u8>(3);
    assert_eq!(producer.write_chunk(10).unwrap().len(), 3);
    assert!(producer.write_chunk(0).unwrap().is_empty());

    producer.push_batch([1, 2, 3]);
    assert_eq!(producer.write_chunk(1).unwrap_err(), Full(()));
    assert!(producer.write_chunk(0).unwrap().is_empty());

    assert_eq!(consumer.pop(), Some(1));
    assert_eq!(producer.write_chunk(10).unwrap().len(), 1);
}

#[test]
fn commit_publishes_only_the_committed_prefix() {
    let (mut producer, mut consumer) = ring(8);
    let mut chunk = producer.write_chunk(5).unwrap();
    assert_eq!(chunk.fill_from([10, 11, 12, 13]), 4);
    assert_eq!(chunk.filled(), 4);
    chunk.commit(2);

    assert_eq!(consumer.len(), 2);
    producer.push(14).unwrap();
    let drained: Vec<i32> = consumer.read_chunk(usize::MAX).collect();
    assert_eq!(drained, [10, 11, 14]);
}

#[test]
#[should_panic(expected = "cannot commit 2 values: only 1 were written")]
fn committing_unwritten_slots_panics() {
    let (mut producer, _consumer) = ring(4);
    let mut chunk = producer.write_chunk(4).unwrap();
    chunk.push(1).unwrap();
    chunk.commit(2);
}

#[test]
fn push_batch_leaves_what_does_not_fit_in_the_iterator() {
    let (mut producer, mut consumer) = ring(4);
    let mut values = 0..10;
    assert_eq!(producer.push_batch(&mut values), 4);
    assert_eq!(producer.push_batch(&mut values), 0);
    assert_eq!(values.start, 4);

    assert_eq!(consumer.pop_batch(3, drop), 3);
    assert_eq!(producer.push_batch(&mut values), 3);
    assert_eq!(values.start, 7);
    let mut seen = Vec::new();
    assert_eq!(consumer.pop_batch(usize::MAX, |n| seen.push(n)), 4);
    assert_eq!(seen, [3, 4, 5, 6]);
}

#[test]
fn read_chunk_lends_moves_and_keeps_values() {
    let (mut producer, mut consumer) = ring(6);
    producer.push_batch((1..=6).map(|n| n.to_string()));

    let mut chunk = consumer.read_chunk(4);
    assert_eq!(chunk.len(), 4);
    assert_eq!(chunk.get(0).map(String::as_str), Some("1"));
    assert_eq!(chunk.get(4), None);
    assert_eq!(chunk.next().as_deref(), Some("1"));
    assert_eq!(chunk.len(), 3);
    assert_eq!(chunk.get(0).map(String::as_str), Some("2"));
    assert_eq!(chunk.iter().next_back().map(String::as_str), Some("4"));
    // Drops "2"; "3" and "4" stay in the ring.
    chunk.commit(1);

    assert_eq!(consumer.len(), 4);
    assert_eq!(producer.slots(), 2);
    assert_eq!(consumer.pop().as_deref(), Some("3"));

    // A chunk dropped untouched releases nothing.
    drop(consumer.read_chunk(2));
    assert_eq!(consumer.len(), 3);
    consumer.read_chunk(usize::MAX).commit_all();
    assert!(consumer.is_empty());
    assert_eq!(producer.slots(), 6);
}

#[test]
fn values_left_in_the_ring_drop_once() {
    for capacity in [1, 2, 3, 4, 16] {
        // Some rounds first, so that the values left behind straddle the wrap.
        for skew in 0..2 * capacity {
            let drops = Arc::new(AtomicUsize::new(0));
            let (mut producer, mut consumer) = ring(capacity);
            for _ in 0..skew {
                producer.push(Counted::new(&drops)).unwrap();
                drop(consumer.pop());
            }
            for _ in 0..capacity {
                producer.push(Counted::new(&drops)).unwrap();
            }
            drop(consumer.pop());
            assert_eq!(drops.load(Ordering::Relaxed), skew + 1);

            drop(producer);
            drop(consumer);
            assert_eq!(drops.load(Ordering::Relaxed), skew + capacity);
        }
    }
}

#[test]
fn half_committed_chunk_drops_every_value_once() {
    let drops = Arc::new(AtomicUsize::new(0));
    let (mut producer, mut consumer) = ring(8);
    // Fill half, read one, so that the chunk runs across the wrap.
    for _ in 0..4 {
        producer.push(Counted::new(&drops)).unwrap();
    }
    consumer.pop().unwrap();
    for _ in 0..4 {
        producer.push(Counted::new(&drops)).unwrap();
    }

    let mut chunk = producer.write_chunk(4).unwrap();
    assert_eq!(chunk.len(), 1);
    chunk.push(Counted::new(&drops)).unwrap();
    chunk.commit_filled();
    assert!(producer.is_full());
    consumer.pop_batch(4, drop);
    assert_eq!(drops.load(Ordering::Relaxed), 5);

    // The ring holds 4 values: claim the 4 free slots, fill them, commit half.
    let mut chunk = producer.write_chunk(4).unwrap();
    assert_eq!(chunk.fill_from(iter_counted(&drops).take(4)), 4);
    chunk.commit(2);
    assert_eq!(drops.load(Ordering::Relaxed), 7);

    drop(producer);
    drop(consumer);
    // 4 + 4 + 1 + 4 values made, every one dropped once.
    assert_eq!(drops.load(Ordering::Relaxed), 13);
}

#[test]
fn uncommitted_chunk_values_drop_with_the_chunk() {
    let drops = Arc::new(AtomicUsize::new(0));
    let (mut producer, mut consumer) = ring(4);
    let mut chunk = producer.write_chunk(3).unwrap();
    chunk.push(Counted::new(&drops)).unwrap();
    chunk.push(Counted::new(&drops)).unwrap();
    drop(chunk);
    assert_eq!(drops.load(Ordering::Relaxed), 2);
    assert!(consumer.pop().is_none());
    assert_eq!(producer.slots(), 4);
}

#[test]
fn read_chunk_drops_taken_and_committed_values_once() {
    let drops = Arc::new(AtomicUsize::new(0));
    let (mut producer, mut consumer) = ring(6);
    assert_eq!(producer.push_batch(iter_counted(&drops).take(6)), 6);

    let mut chunk = consumer.read_chunk(5);
    let taken = chunk.next().unwrap();
    chunk.commit(2);
    assert_eq!(drops.load(Ordering::Relaxed), 2);
    drop(taken);
    assert_eq!(drops.load(Ordering::Relaxed), 3);
    assert_eq!(consumer.len(), 3);

    drop(consumer);
    drop(producer);
    assert_eq!(drops.load(Ordering::Relaxed), 6);
}

#[test]
fn panic_in_pop_batch_releases_what_was_handed_out() {
    let (mut producer, mut consumer) = ring(4);
    producer.push_batch([1, 2, 3, 4]);
    let seen = Cell::new(0);

    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        consumer.pop_batch(usize::MAX, |n| {
            seen.set(n);
            assert!(n < 2, "refusing {n}");
        });
    }));
    assert!(result.is_err());
    assert_eq!(seen.get(), 2);
    assert_eq!(consumer.pop(), Some(3));
    assert_eq!(producer.slots(), 3);
}

#[test]
fn producer_sees_consumer_abandon() {
    let (producer, consumer) = ring::<u8>(2);
    assert!(!producer.is_abandoned());
    assert!(!consumer.is_abandoned());
    drop(consumer);
    assert!(producer.is_abandoned());
}

#[test]
fn consumer_drains_an_abandoned_producer() {
    let (mut producer, mut consumer) = ring::<u64>(16);
    let count = if cfg!(miri) { 50 } else { 10_000 };
    let sender = thread::spawn(move || {
        let mut spins = 0;
        for n in 0..count {
            while producer.push(n).is_err() {
                back_off(&mut spins);
            }
        }
    });

    let (mut next, mut spins) = (0, 0);
    loop {
        // Read before popping: once it is seen, every value is visible.
        let abandoned = consumer.is_abandoned();
        match consumer.pop() {
            Some(value) => {
                assert_eq!(value, next);
                next += 1;
            }
            None if abandoned => break,
            None => back_off(&mut spins),
        }
    }
    sender.join().unwrap();
    assert_eq!(next, count);
}

#[test]
fn zero_sized_values_are_counted() {
    let (mut producer, mut consumer) = ring::<()>(3);
    assert_eq!(producer.push_batch(std::iter::repeat(())), 3);
    assert_eq!(producer.push(()), Err(Full(())));
    assert_eq!(consumer.pop_batch(2, drop), 2);
    assert_eq!(consumer.len(), 1);
}

#[test]
fn halves_move_to_other_threads() {
    fn assert_send<T: Send>() {}
    assert_send::<Producer<String>>();
    assert_send::<Consumer<String>>();
}

fn iter_counted(drops: &Arc<AtomicUsize>) -> impl Iterator<Item = Counted> + '_ {
    std::iter::repeat_with(move || Counted::new(drops))
}
