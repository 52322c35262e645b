//! The typed ring at its edges, after the change to slot indices computed
//! from each half's count and wrap point: capacities 1 to 8 and odd ones,
//! chunk commits of nothing, part and all at the wrap, read chunks dropped
//! part way, values left in the ring dropped exactly once, and two threads
//! moving values with a checksum. Runs under Miri (counts shrink):
//!
//! ```text
//! MIRIFLAGS="-Zmiri-tree-borrows" cargo +nightly miri test --test typed_ring_edges
//! ```

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use corelane::lane::typed::ring;

#[path = "common/tracked.rs"]
mod tracked;

use tracked::Tracked;

/// Scales a count down under Miri.
fn scaled(count: u64) -> u64 {
    if cfg!(miri) {
        (count / 500).max(20)
    } else {
        count
    }
}

/// Every mix of pushes, write chunks committed in part (0 included),
/// read chunks dropped part way and pops, around many laps of small and
/// odd capacities: the values come out in order, none twice, and the
/// counts add up after each step.
#[test]
fn chunks_of_every_size_across_the_wrap_keep_order() {
    for capacity in [1usize, 2, 3, 4, 5, 6, 7, 8, 13] {
        let live = Arc::new(AtomicI64::new(0));
        let (mut producer, mut consumer) = ring::<Tracked>(capacity);
        let (mut sent, mut received) = (0u64, 0u64);
        for step in 0..(scaled(40) as usize * capacity + 17) {
            let wanted = step % (capacity + 2);
            let keep = step % 3;
            let mut full = false;
            match producer.write_chunk(wanted) {
                Ok(mut chunk) => {
                    assert!(chunk.len() <= wanted.min(capacity));
                    let mut written = 0;
                    while chunk.push(Tracked::new(sent + written, &live)).is_ok() {
                        written += 1;
                    }
                    // Commit none, one, or all of what was written; the rest
                    // is dropped with the chunk.
                    let commit = match keep {
                        0 => 0,
                        1 => chunk.filled().min(1),
                        _ => chunk.filled(),
                    };
                    chunk.commit(commit);
                    sent += commit as u64;
                }
                Err(_) => full = true,
            }
            if full {
                assert_eq!(producer.slots(), 0);
            }
            assert_eq!(live.load(Ordering::Relaxed) as u64, sent - received);
            assert_eq!(consumer.len() as u64, sent - received);
            assert_eq!(producer.slots() + consumer.len(), capacity);
            // Take part of a read chunk and drop it; then pop one.
            let mut chunk = consumer.read_chunk(step % (capacity + 1));
            let take = chunk.len() / 2 + step % 2;
            for _ in 0..take.min(chunk.len()) {
                let value = chunk.next().expect("a value in the chunk");
                assert_eq!(value.value, received);
                received += 1;
            }
            if let Some(first_left) = chunk.get(0) {
                assert_eq!(first_left.value, received);
            }
            drop(chunk);
            if step % 4 == 0 {
                if let Some(value) = consumer.pop() {
                    assert_eq!(value.value, received);
                    received += 1;
                }
            }
            assert_eq!(consumer.len() as u64, sent - received, "step {step}");
        }
        assert!(sent > 2 * capacity as u64, "capacity {capacity}: laps run");
        // What is left is dropped with the ring, once.
        drop(producer);
        drop(consumer);
        assert_eq!(live.load(Ordering::Relaxed), 0, "capacity {capacity}");
    }
}

/// A read chunk left in the ring after a partial commit, then the ring
/// dropped: values in the ring are dropped once, from the consumer's
/// head wherever it is in the lap.
#[test]
fn values_left_in_the_ring_are_dropped_once_from_any_head() {
    for capacity in [1usize, 2, 3, 5, 8] {
        for head in 0..(2 * capacity) {
            for left in 0..=capacity {
                let live = Arc::new(AtomicI64::new(0));
                let (mut producer, mut consumer) = ring::<Tracked>(capacity);
                for n in 0..head as u64 {
                    producer.push(Tracked::new(n, &live)).ok().unwrap();
                    consumer.read_chunk(1).commit_all();
                }
                for n in 0..left as u64 {
                    producer.push(Tracked::new(n, &live)).ok().unwrap();
                }
                assert_eq!(live.load(Ordering::Relaxed), left as i64);
                // Drop order both ways.
                if head % 2 == 0 {
                    drop(consumer);
                    drop(producer);
                } else {
                    drop(producer);
                    drop(consumer);
                }
                assert_eq!(live.load(Ordering::Relaxed), 0);
            }
        }
    }
}

/// A read chunk's `next` moves a value out; if the chunk is then
/// forgotten (safe code), the value must not be handed out a second time.
/// (Until `next` released each slot at once, the slot was released only in
/// the chunk's drop, so the consumer read the moved-out value again: for a
/// `Copy` type a duplicate, for a type that owns memory a double drop.)
#[test]
fn a_forgotten_read_chunk_does_not_hand_values_out_twice() {
    let (mut producer, mut consumer) = ring::<u64>(4);
    producer.push_batch([1, 2]);
    let mut chunk = consumer.read_chunk(2);
    assert_eq!(chunk.next(), Some(1));
    std::mem::forget(chunk);
    assert_eq!(consumer.pop(), Some(2), "1 was already moved out");
    assert_eq!(consumer.pop(), None);

    // The same with values that own memory, across the wrap.
    let (mut producer, mut consumer) = ring::<String>(3);
    for round in 0..5 {
        producer.push_batch((0..3).map(|n| format!("{round}.{n}")));
        let mut chunk = consumer.read_chunk(3);
        assert_eq!(chunk.next().as_deref(), Some(format!("{round}.0").as_str()));
        assert_eq!(
            chunk.get(0).map(String::as_str),
            Some(format!("{round}.1").as_str())
        );
        std::mem::forget(chunk);
        let mut rest = Vec::new();
        consumer.pop_batch(usize::MAX, |value| rest.push(value));
        assert_eq!(rest, [format!("{round}.1"), format!("{round}.2")]);
    }
}

/// Two threads, capacities 1 to 8: every value arrives once, in order,
/// by pushes and chunks on one side and pops and chunks on the other.
#[test]
fn two_threads_move_every_value_once_in_order() {
    for capacity in 1..=8usize {
        let total = scaled(200_000);
        let (mut producer, mut consumer) = ring::<u64>(capacity);
        let sender = std::thread::spawn(move || {
            let mut next = 0u64;
            while next < total {
                if next.is_multiple_of(3) {
                    if let Ok(mut chunk) = producer.write_chunk((next % 5) as usize + 1) {
                        let room = (total - next).min(chunk.len() as u64);
                        let filled = chunk.fill_from(next..next + room);
                        chunk.commit(filled);
                        next += filled as u64;
                    }
                } else if producer.push(next).is_ok() {
                    next += 1;
                }
                if producer.is_full() {
                    std::thread::yield_now();
                }
            }
        });
        let (mut expected, mut sum) = (0u64, 0u64);
        while expected < total {
            let before = expected;
            if expected % 2 == 0 {
                consumer.pop_batch((expected % 7) as usize + 1, |value| {
                    assert_eq!(value, expected, "capacity {capacity}");
                    sum = sum.wrapping_add(value);
                    expected += 1;
                });
            } else if let Some(value) = consumer.pop() {
                assert_eq!(value, expected, "capacity {capacity}");
                sum = sum.wrapping_add(value);
                expected += 1;
            }
            if expected == before {
                std::thread::yield_now();
            }
        }
        sender.join().unwrap();
        assert_eq!(sum, total * (total - 1) / 2);
        assert_eq!(consumer.pop(), None);
    }
}

/// A ring of a large capacity laps like a small one.
#[test]
fn a_large_ring_laps() {
    let capacity = if cfg!(miri) { 1000 } else { 100_003 };
    let (mut producer, mut consumer) = ring::<u32>(capacity);
    let seen = Mutex::new(0u32);
    for lap in 0..3u32 {
        assert_eq!(
            producer.push_batch((0..capacity as u32).map(|n| n ^ lap)),
            capacity
        );
        assert!(producer.is_full());
        let mut n = 0;
        consumer.pop_batch(usize::MAX, |value| {
            assert_eq!(value, n ^ lap);
            n += 1;
        });
        *seen.lock().unwrap() += n;
    }
    assert_eq!(*seen.lock().unwrap(), 3 * capacity as u32);
}
