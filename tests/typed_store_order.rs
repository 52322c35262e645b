//! The typed ring after each half stores the shared count before its own
//! copy, and moves `wrap_at` on once a lap: two threads mixing every way
//! of taking values (pop, chunks moved out one by one, by `fold`, dropped
//! in place, a `fold` that panics part way), with values that count their
//! drops, on small, odd and large rings; and `len()` between operations.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::thread;

use corelane::lane::typed::ring;

#[path = "common/tracked.rs"]
mod tracked;

use tracked::Tracked;

/// A small deterministic generator (xorshift).
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn mixed_two_threads(capacity: usize, count: u64) {
    let live = Arc::new(AtomicI64::new(0));
    let (mut producer, mut consumer) = ring::<Tracked>(capacity);
    let sender_live = Arc::clone(&live);
    let sender = thread::spawn(move || {
        let mut random = 0x9e37_79b9_7f4a_7c15_u64 ^ capacity as u64;
        let mut next = 0;
        while next < count {
            match next_random(&mut random) % 3 {
                0 => {
                    if producer.push(Tracked::new(next, &sender_live)).is_ok() {
                        next += 1;
                    }
                }
                1 => {
                    let want = (next_random(&mut random) % 5) as usize + 1;
                    let end = (next + want as u64).min(count);
                    let mut values = (next..end).map(|n| Tracked::new(n, &sender_live));
                    next += producer.push_batch(&mut values) as u64;
                    // Values the ring had no room for were never made.
                }
                _ => {
                    let want = (next_random(&mut random) % 4) as usize + 1;
                    if let Ok(mut chunk) = producer.write_chunk(want) {
                        let room = chunk.len();
                        let mut written = 0;
                        while written < room && next + (written as u64) < count {
                            let value = Tracked::new(next + written as u64, &sender_live);
                            assert!(chunk.push(value).is_ok());
                            written += 1;
                        }
                        // Commit part, drop the rest unpublished.
                        let keep = if written > 1 {
                            (next_random(&mut random) as usize) % (written + 1)
                        } else {
                            written
                        };
                        chunk.commit(keep);
                        next += keep as u64;
                    }
                }
            }
            thread::yield_now();
        }
    });

    let mut expected = 0u64;
    let mut random = 0x2545_f491_4f6c_dd1d_u64 ^ capacity as u64;
    while expected < count {
        let seen = consumer.len();
        assert!(seen <= capacity, "len {seen} past the capacity {capacity}");
        match next_random(&mut random) % 5 {
            0 => {
                if let Some(value) = consumer.pop() {
                    assert_eq!(value.value, expected);
                    expected += 1;
                }
            }
            1 => {
                let mut chunk = consumer.read_chunk(3);
                let take = chunk.len().min(2);
                for _ in 0..take {
                    let value = chunk.next().expect("a value lent");
                    assert_eq!(value.value, expected);
                    expected += 1;
                }
                if let Some(peek) = chunk.get(0) {
                    assert_eq!(peek.value, expected);
                }
            }
            2 => {
                let mut chunk = consumer.read_chunk(4);
                if let Some(value) = chunk.next() {
                    assert_eq!(value.value, expected);
                    expected += 1;
                }
                let expected_ref = &mut expected;
                chunk.for_each(|value| {
                    assert_eq!(value.value, *expected_ref);
                    *expected_ref += 1;
                });
            }
            3 => {
                let chunk = consumer.read_chunk(2);
                let n = chunk.len();
                if let Some(first) = chunk.get(0) {
                    assert_eq!(first.value, expected);
                }
                chunk.commit_all();
                expected += n as u64;
            }
            _ => {
                let chunk = consumer.read_chunk(4);
                let stop_after = next_random(&mut random) % 3;
                let mut moved = 0u64;
                let start = expected;
                let mut wrong = None;
                let result = catch_unwind(AssertUnwindSafe(|| {
                    chunk.fold((), |(), value| {
                        if value.value != start + moved {
                            wrong.get_or_insert((value.value, start + moved));
                        }
                        moved += 1;
                        if moved > stop_after {
                            panic!("stop");
                        }
                    })
                }));
                assert_eq!(result.is_err(), moved > stop_after);
                assert_eq!(wrong, None, "(got, expected) in a fold");
                expected += moved;
            }
        }
    }
    sender.join().unwrap();
    assert_eq!(consumer.pop().map(|v| v.value), None);
    assert!(consumer.is_empty());
    drop(consumer);
    assert_eq!(live.load(Ordering::Relaxed), 0, "values not dropped once");
}

fn scaled(count: u64) -> u64 {
    if cfg!(miri) {
        (count / 200).max(30)
    } else {
        count
    }
}

#[test]
fn two_threads_mixing_every_way_of_taking_keep_order_and_drops() {
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for capacity in [1, 2, 3, 5, 7, 16, 1000, 4096] {
        mixed_two_threads(capacity, scaled(20_000));
    }
    std::panic::set_hook(quiet);
}

#[test]
fn len_between_operations_counts_what_is_left() {
    for capacity in [1usize, 2, 3, 5, 64, 1024] {
        let (mut producer, mut consumer) = ring::<u8>(capacity);
        let mut pushed = 0usize;
        let mut taken = 0usize;
        for round in 0..(4 * capacity + 7) {
            while producer.push((pushed % 251) as u8).is_ok() {
                pushed += 1;
            }
            assert_eq!(producer.slots(), 0, "capacity {capacity} round {round}");
            assert_eq!(consumer.len(), pushed - taken);
            let want = round % capacity + 1;
            let got = consumer.read_chunk(want).fold(0, |n, value| {
                assert_eq!(value as usize, (taken + n) % 251);
                n + 1
            });
            taken += got;
            assert_eq!(consumer.len(), pushed - taken);
            // The slots just freed are back with the producer, and the
            // count it sees agrees with the consumer's.
            assert_eq!(producer.slots(), capacity - consumer.len());
        }
    }
}
