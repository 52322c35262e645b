//! A frame ring carries rkyv messages without allocating once it is warm,
//! the wraps of the ring included: a message that does not fit before the
//! end is sized by counting its bytes (nothing buffered), and the in-place
//! attempt that ran out of room fails without boxing an error. Before
//! that, every wrap allocated five times.
//!
//! The whole process counts its heap allocations (a counting global
//! allocator), so this file holds one test.

use std::sync::atomic::Ordering;

use corelane::frame::envelope::{access_trusted, check_type};
use corelane::frame::Message;
use corelane::lane::frames;
use rkyv::ser::allocator::Arena;

#[path = "common/counting.rs"]
mod counting;
use counting::ALLOCATIONS;

/// A message with bytes of its own, as a forwarded PUBLISH has.
#[derive(rkyv::Archive, rkyv::Serialize)]
struct Note {
    seq: u64,
    body: Vec<u8>,
}

impl Message for Note {
    const TYPE_ID: u16 = 0x4e4f;
    const VERSION: u8 = 1;
    const NAME: &'static str = "Note";
}

/// Bytes of frames in the ring: small, so that it wraps often.
const RING: usize = 4096;
/// Different notes sent in turn: bodies of 0 to 299 bytes, so that the
/// wraps fall at many offsets and need padding of many lengths.
const KINDS: u64 = 300;

/// Sends notes `from..to` (note `i` is `notes[i % KINDS]`) one at a time,
/// reading each back; returns the ring's position after the last.
fn pass(
    producer: &mut frames::FrameProducer<corelane::lane::HeapRegion>,
    consumer: &mut frames::FrameConsumer<corelane::lane::HeapRegion>,
    arena: &mut Arena,
    notes: &[Note],
    from: u64,
    to: u64,
) -> u64 {
    let mut position = 0;
    for i in from..to {
        let sent = &notes[(i % KINDS) as usize];
        producer.write_message(sent, i, arena).unwrap();
        let read = consumer
            .drain(usize::MAX, |frame| {
                check_type::<Note>(&frame.meta).unwrap();
                // SAFETY: written by `write_message` of a `Note` in this
                // process (type checked just above), lent unchanged.
                let note = unsafe { access_trusted::<Note>(frame.payload()) };
                assert_eq!(note.seq, sent.seq);
                assert_eq!(note.body.as_slice(), sent.body.as_slice());
                position = frame.position;
            })
            .unwrap();
        assert_eq!(read, 1);
    }
    position
}

#[test]
fn messages_through_a_wrapping_ring_allocate_nothing() {
    let (mut producer, mut consumer) = frames::heap_ring(RING);
    let mut arena = Arena::new();
    let notes: Vec<Note> = (0..KINDS)
        .map(|seq| Note {
            seq,
            body: vec![seq as u8; seq as usize],
        })
        .collect();

    // Warm up: the arena reaches its working size.
    let warm = pass(&mut producer, &mut consumer, &mut arena, &notes, 0, KINDS);

    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let end = pass(
        &mut producer,
        &mut consumer,
        &mut arena,
        &notes,
        KINDS,
        20 * KINDS,
    );
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;

    let laps = end / RING as u64 - warm / RING as u64;
    assert!(laps >= 100, "only {laps} wraps of the ring");
    assert_eq!(allocations, 0, "{laps} wraps of the ring allocated");
}
