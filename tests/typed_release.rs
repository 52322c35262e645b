//! How the typed ring's consumer hands slots back to the producer: a line's
//! worth at a time on rings of 16 cache lines or more, at once on smaller
//! rings, and everything whenever it finds fewer values than it asked for,
//! when a read chunk goes and when it is dropped. Runs under Miri:
//!
//! ```text
//! cargo +nightly miri test --test typed_release
//! ```

use std::sync::Arc;

use corelane::lane::typed::ring;

/// 4096 `u64`s take 512 lines: the consumer hands back 8 slots (a line) at a
/// time.
const LARGE: usize = 4096;
const LINE_OF_U64: usize = 8;

#[test]
fn a_busy_consumer_hands_slots_back_a_line_at_a_time() {
    let (mut producer, mut consumer) = ring::<u64>(LARGE);
    assert_eq!(producer.push_batch(0..LARGE as u64), LARGE);

    for expected in 0..LINE_OF_U64 as u64 - 1 {
        assert_eq!(consumer.pop(), Some(expected));
    }
    // Seven values taken, none handed back yet: still full to the producer.
    assert_eq!(producer.slots(), 0);
    assert!(producer.push(LARGE as u64).is_err());
    assert_eq!(consumer.len(), LARGE - 7);

    // The eighth hands back the whole line.
    assert_eq!(consumer.pop(), Some(7));
    assert_eq!(producer.slots(), LINE_OF_U64);
    let next = LARGE as u64;
    assert_eq!(producer.push_batch(next..next + 100), LINE_OF_U64);

    // Every value still comes out once, in order.
    let mut expected = LINE_OF_U64 as u64;
    while let Some(value) = consumer.pop() {
        assert_eq!(value, expected);
        expected += 1;
    }
    assert_eq!(expected, next + LINE_OF_U64 as u64);
}

#[test]
fn a_consumer_that_finds_the_ring_empty_has_handed_every_slot_back() {
    let (mut producer, mut consumer) = ring::<u64>(LARGE);
    producer.push_batch([1, 2, 3]);
    assert_eq!(consumer.pop(), Some(1));
    assert_eq!(consumer.pop(), Some(2));
    assert_eq!(consumer.pop(), Some(3));
    // Three taken: not yet a line's worth, so not yet handed back.
    assert_eq!(producer.slots(), LARGE - 3);
    assert_eq!(consumer.pop(), None);
    assert_eq!(producer.slots(), LARGE);
}

#[test]
fn len_and_is_empty_hand_nothing_back() {
    // As the module doc says: a consumer that waits by polling `is_empty`
    // keeps the slots of the values it took until it next pops `None`.
    let (mut producer, mut consumer) = ring::<u64>(LARGE);
    producer.push_batch([1, 2, 3]);
    for expected in 1..=3 {
        assert!(!consumer.is_empty());
        assert_eq!(consumer.pop(), Some(expected));
    }
    assert!(consumer.is_empty());
    assert_eq!(consumer.len(), 0);
    assert_eq!(producer.slots(), LARGE - 3);
    assert_eq!(consumer.pop(), None);
    assert_eq!(producer.slots(), LARGE);
}

#[test]
fn a_read_chunk_finding_fewer_values_than_asked_hands_every_slot_back() {
    let (mut producer, mut consumer) = ring::<u64>(LARGE);
    producer.push_batch(0..10);
    assert_eq!(consumer.pop(), Some(0));
    assert_eq!(consumer.pop(), Some(1));
    assert_eq!(producer.slots(), LARGE - 10);

    // Asks for more than there are: the two taken go back at once.
    let chunk = consumer.read_chunk(20);
    assert_eq!(chunk.len(), 8);
    assert_eq!(producer.slots(), LARGE - 8);
    drop(chunk);
    assert_eq!(producer.slots(), LARGE - 8);
}

#[test]
fn a_read_chunk_hands_back_every_value_taken_when_it_goes() {
    let (mut producer, mut consumer) = ring::<u64>(LARGE);
    producer.push_batch(0..10);
    assert_eq!(consumer.pop(), Some(0));
    assert_eq!(consumer.pop(), Some(1));
    assert_eq!(consumer.pop(), Some(2));

    // Asks for no more than there are, so the three taken are still held.
    let mut chunk = consumer.read_chunk(2);
    assert_eq!(chunk.next(), Some(3));
    assert_eq!(producer.slots(), LARGE - 10);
    drop(chunk);
    // The three popped and the one moved out of the chunk.
    assert_eq!(producer.slots(), LARGE - 6);
    assert_eq!(consumer.pop(), Some(4));
}

#[test]
fn small_rings_and_large_values_hand_each_slot_back_at_once() {
    // 16 `u64`s take two lines.
    let (mut producer, mut consumer) = ring::<u64>(16);
    producer.push_batch(0..16);
    assert_eq!(consumer.pop(), Some(0));
    assert_eq!(producer.slots(), 1);

    // Values of more than a line share none.
    let (mut producer, mut consumer) = ring::<[u8; 65]>(LARGE);
    producer.push_batch((0..LARGE).map(|n| [n as u8; 65]));
    assert_eq!(consumer.pop(), Some([0; 65]));
    assert_eq!(producer.slots(), 1);

    // 15 lines of `u64`s, one short of 16.
    let (mut producer, mut consumer) = ring::<u64>(15 * LINE_OF_U64);
    producer.push_batch(0..);
    assert_eq!(consumer.pop(), Some(0));
    assert_eq!(producer.slots(), 1);
}

#[test]
fn values_taken_but_not_yet_handed_back_are_not_dropped_again() {
    // Each value holds a clone of `alive`: its strong count, less one, is
    // the number of values not yet dropped.
    for consumer_first in [false, true] {
        let alive = Arc::new(());
        let (mut producer, mut consumer) = ring::<Arc<()>>(LARGE);
        for _ in 0..100 {
            producer.push(Arc::clone(&alive)).unwrap();
        }
        // Five taken and dropped, not a line's worth: not handed back yet
        // when the halves go.
        for _ in 0..5 {
            drop(consumer.pop().unwrap());
        }
        assert_eq!(Arc::strong_count(&alive), 1 + 95);
        assert_eq!(producer.slots(), LARGE - 100);
        if consumer_first {
            drop(consumer);
            drop(producer);
        } else {
            drop(producer);
            drop(consumer);
        }
        // The ring dropped the 95 left, each once.
        assert_eq!(Arc::strong_count(&alive), 1);
    }
}

#[test]
fn two_threads_move_every_value_once_in_order_through_a_large_ring() {
    // The producer keeps the ring near full, so it keeps meeting slots the
    // consumer has taken and not yet handed back.
    let count: u64 = if cfg!(miri) { 2_000 } else { 2_000_000 };
    let (mut producer, mut consumer) = ring::<u64>(if cfg!(miri) { 128 } else { LARGE });
    let sender = std::thread::spawn(move || {
        for n in 0..count {
            let mut value = n;
            while let Err(full) = producer.push(value) {
                value = full.into_inner();
                std::hint::spin_loop();
            }
        }
    });
    let mut expected = 0;
    while expected < count {
        // Pops part of the time, and takes chunks the rest, so that both
        // paths hand slots back.
        if expected % 1000 < 500 {
            if let Some(value) = consumer.pop() {
                assert_eq!(value, expected);
                expected += 1;
            }
        } else {
            let mut chunk = consumer.read_chunk(3);
            if let Some(value) = chunk.next() {
                assert_eq!(value, expected);
                expected += 1;
            }
        }
        std::hint::spin_loop();
    }
    sender.join().unwrap();
    assert_eq!(consumer.pop(), None);
}
