//! Loom models of the typed SPSC ring (`corelane::lane::typed`).
//!
//! Loom runs each model under every interleaving of its two threads (up to a
//! bound on preemptions) and checks every access to a slot for a data race,
//! so these models prove the head and tail orderings, not only exercise them.
//! They need the crate built with loom's atomics:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test --release --test loom_typed
//! ```

#![cfg(loom)]

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

use corelane::lane::typed::{ring, Consumer, Producer};

/// Explores a model with at most `preemptions` forced thread switches, which
/// keeps the larger models to seconds; every interleaving a real bug in a
/// two-thread ring needs is reached within three.
fn check(preemptions: usize, model: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(preemptions);
    }
    builder.check(model);
}

/// Pushes `values` one at a time, yielding to the consumer while full.
fn push_all(producer: &mut Producer<usize>, values: std::ops::Range<usize>) {
    for value in values {
        let mut value = value;
        while let Err(full) = producer.push(value) {
            value = full.into_inner();
            thread::yield_now();
        }
    }
}

/// Pops `count` values one at a time, yielding to the producer while empty.
fn pop_all(consumer: &mut Consumer<usize>, count: usize) -> Vec<usize> {
    let mut values = Vec::with_capacity(count);
    while values.len() < count {
        match consumer.pop() {
            Some(value) => values.push(value),
            None => thread::yield_now(),
        }
    }
    values
}

/// Sends enough values through a ring of `capacity` for the positions to
/// wrap past `2 * capacity`, and checks that they arrive in order.
fn push_pop_across_the_wrap(capacity: usize, count: usize) {
    let (mut producer, mut consumer) = ring::<usize>(capacity);
    let sender = thread::spawn(move || push_all(&mut producer, 0..count));
    let received = pop_all(&mut consumer, count);
    sender.join().unwrap();
    assert_eq!(received, (0..count).collect::<Vec<_>>());
}

#[test]
fn push_pop_wraps_capacity_1() {
    check(3, || push_pop_across_the_wrap(1, 3));
}

#[test]
fn push_pop_wraps_capacity_2() {
    check(3, || push_pop_across_the_wrap(2, 5));
}

#[test]
fn batch_commit_publishes_the_committed_prefix() {
    check(3, || {
        let (mut producer, mut consumer) = ring::<usize>(3);
        let sender = thread::spawn(move || {
            // A chunk of three written, two published, one discarded.
            let mut chunk = producer.write_chunk(3).unwrap();
            assert_eq!(chunk.fill_from([0, 1, 99]), 3);
            chunk.commit(2);
            // Then a batch that has to reuse the slots the consumer frees.
            let mut rest = 2..5;
            while !rest.is_empty() {
                if producer.push_batch(&mut rest) == 0 {
                    thread::yield_now();
                }
            }
        });

        let mut received = Vec::new();
        while received.len() < 5 {
            if consumer.pop_batch(2, |value| received.push(value)) == 0 {
                thread::yield_now();
            }
        }
        sender.join().unwrap();
        assert_eq!(received, [0, 1, 2, 3, 4]);
    });
}

/// A read chunk's `next` releases each slot as it moves the value out, while
/// the chunk is still alive: the producer may refill that slot at once, and
/// the chunk must go on reading the values after it, not the new ones.
#[test]
fn read_chunk_next_releases_slots_the_producer_refills() {
    check(3, || {
        let (mut producer, mut consumer) = ring::<usize>(2);
        let sender = thread::spawn(move || push_all(&mut producer, 0..4));

        let mut received = Vec::new();
        while received.len() < 4 {
            let mut chunk = consumer.read_chunk(2);
            if chunk.is_empty() {
                drop(chunk);
                thread::yield_now();
                continue;
            }
            // One at a time, looking at what is left after each.
            while let Some(value) = chunk.next() {
                received.push(value);
                if let Some(&next) = chunk.get(0) {
                    assert_eq!(next, value + 1);
                }
            }
        }
        sender.join().unwrap();
        assert_eq!(received, [0, 1, 2, 3]);
    });
}

/// A value that counts its drops, to see that each is dropped exactly once
/// whichever thread drops the ring.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn last_half_to_drop_drops_the_rest_once() {
    check(3, || {
        let drops = Arc::new(AtomicUsize::new(0));
        let (mut producer, mut consumer) = ring::<Counted>(2);

        let made = Arc::clone(&drops);
        let sender = thread::spawn(move || {
            let mut chunk = producer.write_chunk(2).unwrap();
            chunk.push(Counted(Arc::clone(&made))).unwrap();
            chunk.push(Counted(Arc::clone(&made))).unwrap();
            chunk.commit(1);
        });
        drop(consumer.pop());
        drop(consumer);
        sender.join().unwrap();

        assert_eq!(drops.load(Ordering::Relaxed), 2);
    });
}

#[test]
fn abandoned_producer_leaves_every_value_visible() {
    check(3, || {
        let (mut producer, mut consumer) = ring::<usize>(2);
        let sender = thread::spawn(move || {
            producer.push(1).unwrap();
            producer.push(2).unwrap();
        });

        let mut received = Vec::new();
        loop {
            let abandoned = consumer.is_abandoned();
            match consumer.pop() {
                Some(value) => received.push(value),
                None if abandoned => break,
                None => thread::yield_now(),
            }
        }
        sender.join().unwrap();
        assert_eq!(received, [1, 2]);
    });
}

/// The producer waits for two free slots at once (a chunk of two) after
/// one value, which the consumer takes: under loom a ring of two hands its
/// slots back in twos, so that slot goes back only because the consumer
/// has taken every value it has seen (or finds the ring empty). If it kept
/// it, both would wait for ever.
#[test]
fn a_consumer_finding_the_ring_empty_hands_back_what_it_took() {
    check(3, || {
        let (mut producer, mut consumer) = ring::<usize>(2);
        let sender = thread::spawn(move || {
            push_all(&mut producer, 0..1);
            loop {
                let mut chunk = producer.write_chunk(2).unwrap_or_else(|_| unreachable!());
                if chunk.len() == 2 {
                    assert_eq!(chunk.fill_from(1..3), 2);
                    chunk.commit_filled();
                    break;
                }
                drop(chunk);
                thread::yield_now();
            }
        });
        let received = pop_all(&mut consumer, 3);
        sender.join().unwrap();
        assert_eq!(received, [0, 1, 2]);
    });
}

/// The consumer takes one value, then waits with `len()` for two: the
/// producer, which has pushed two, needs the slot of the first back to push
/// the third. If `len()` left it held, both would wait for ever.
#[test]
fn a_consumer_waiting_with_len_hands_back_what_it_took() {
    check(3, || {
        let (mut producer, mut consumer) = ring::<usize>(2);
        let sender = thread::spawn(move || push_all(&mut producer, 0..3));
        let mut received = pop_all(&mut consumer, 1);
        while consumer.len() < 2 {
            thread::yield_now();
        }
        received.extend(pop_all(&mut consumer, 2));
        sender.join().unwrap();
        assert_eq!(received, [0, 1, 2]);
    });
}

/// The consumer takes the one value it knows of, then waits for the
/// producer to finish pushing two more: on a ring of two, handed back in
/// twos under loom, the producer needs the slot of the first. If the
/// consumer kept it (it calls nothing on the ring while it waits), both
/// would wait for ever.
#[test]
fn a_consumer_that_took_all_it_saw_then_waits_elsewhere_holds_no_slot() {
    check(3, || {
        let (mut producer, mut consumer) = ring::<usize>(2);
        let first = Arc::new(AtomicUsize::new(0));
        let pushed = Arc::clone(&first);
        let sender = thread::spawn(move || {
            push_all(&mut producer, 0..1);
            // Says the first is in, then waits for it to be taken (so the
            // consumer has seen only it), then pushes two more.
            pushed.store(1, Ordering::Release);
            while pushed.load(Ordering::Acquire) != 2 {
                thread::yield_now();
            }
            push_all(&mut producer, 1..3);
            pushed.store(3, Ordering::Release);
        });
        while first.load(Ordering::Acquire) != 1 {
            thread::yield_now();
        }
        let mut received = pop_all(&mut consumer, 1);
        first.store(2, Ordering::Release);
        // Waits on the producer, not the ring.
        while first.load(Ordering::Acquire) != 3 {
            thread::yield_now();
        }
        received.extend(pop_all(&mut consumer, 2));
        sender.join().unwrap();
        assert_eq!(received, [0, 1, 2]);
    });
}

/// A consumer that takes one value with `next` and the rest of the chunk
/// with `fold` (counted only when the chunk goes, the shared head stored
/// before the consumer's own), on a ring of three slots, so that its
/// head and `wrap_at` cross a lap inside one chunk while the producer
/// refills the slots it hands back.
#[test]
fn next_then_fold_across_the_wrap_of_an_odd_ring() {
    check(3, || {
        let count = 5;
        let (mut producer, mut consumer) = ring::<usize>(3);
        let sender = thread::spawn(move || push_all(&mut producer, 0..count));
        let mut received = Vec::new();
        while received.len() < count {
            let mut chunk = consumer.read_chunk(3);
            if let Some(value) = chunk.next() {
                received.push(value);
            }
            // `for_each` moves the rest out through the chunk's `fold`.
            chunk.for_each(|value| received.push(value));
            if received.len() < count {
                thread::yield_now();
            }
        }
        sender.join().unwrap();
        assert_eq!(received, (0..count).collect::<Vec<_>>());
        assert!(consumer.is_empty());
    });
}
