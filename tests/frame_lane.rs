//! The frame ring between two threads: every frame arrives once, in order,
//! with the bytes it was written with (C04, C05, C10).

use std::thread;

use corelane::frame::FrameMeta;
use corelane::lane::frames::{self, ClaimError};

/// Frames per run; Miri interprets every byte access, so it gets fewer.
const FRAMES: u64 = if cfg!(miri) { 300 } else { 2_000_000 };

/// A deterministic payload length for frame `sequence`: 1 to 300 bytes, so
/// frames land at every offset and wrap in every way.
fn payload_len(sequence: u64, max: usize) -> usize {
    let mixed = sequence.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
    1 + (mixed as usize % 300).min(max - 1)
}

fn payload_byte(sequence: u64, index: usize) -> u8 {
    (sequence as u8).wrapping_add(index as u8).wrapping_mul(31)
}

fn pin(cpu: usize) {
    if cfg!(miri) {
        return;
    }
    if let Some(ids) = core_affinity::get_core_ids() {
        if ids.len() >= 2 {
            core_affinity::set_for_current(ids[cpu % ids.len()]);
        }
    }
}

/// Streams `FRAMES` checksummed frames through a ring of `capacity` bytes.
fn stream(capacity: usize) {
    let (mut producer, mut consumer) = frames::heap_ring(capacity);
    let max = producer.max_payload();
    let writer = thread::spawn(move || {
        pin(0);
        let mut sequence = 0;
        while sequence < FRAMES {
            let len = payload_len(sequence, max);
            match producer.claim(len) {
                Ok(mut claim) => {
                    for (index, byte) in claim.payload_mut().iter_mut().enumerate() {
                        *byte = payload_byte(sequence, index);
                    }
                    let meta = FrameMeta {
                        msg_type: 9,
                        version: 1,
                        sequence,
                        ..FrameMeta::default()
                    };
                    claim.commit_checksummed(len, meta);
                    sequence += 1;
                }
                Err(ClaimError::Full) => std::hint::spin_loop(),
                Err(error) => panic!("frame {sequence}: {error}"),
            }
        }
    });
    pin(1);
    let mut expected = 0;
    let mut spins: u64 = 0;
    while expected < FRAMES {
        let read = consumer
            .drain(64, |frame| {
                assert_eq!(frame.meta.sequence, expected, "frames out of order");
                assert_eq!(frame.verify(), Ok(()), "frame {expected}");
                let payload = frame.payload();
                assert_eq!(payload.len(), payload_len(expected, max));
                assert_eq!(payload.as_ptr() as usize % 16, 0);
                for (index, &byte) in payload.iter().enumerate() {
                    assert_eq!(byte, payload_byte(expected, index));
                }
                expected += 1;
            })
            .unwrap();
        if read == 0 {
            spins += 1;
            if cfg!(miri) || spins.is_multiple_of(1024) {
                thread::yield_now();
            }
        }
    }
    writer.join().unwrap();
    assert!(!consumer.has_frame(), "a frame appeared after the last one");
}

#[test]
fn frames_arrive_once_in_order_with_their_checksums_tiny_ring() {
    stream(128);
}

#[test]
fn frames_arrive_once_in_order_with_their_checksums_small_ring() {
    stream(1024);
}

#[test]
fn frames_arrive_once_in_order_with_their_checksums_large_ring() {
    stream(1 << 16);
}

#[test]
fn largest_frame_fits_at_every_offset_and_one_more_byte_never() {
    let (mut producer, mut consumer) = frames::heap_ring(1024);
    let max = producer.max_payload();
    let meta = FrameMeta {
        msg_type: 1,
        ..FrameMeta::default()
    };
    for shift in 0..40 {
        // Move the ring's offset by one small frame each round.
        producer.claim(shift % 7 + 1).unwrap().commit(1, meta);
        assert_eq!(consumer.drain(8, |_| ()).unwrap(), 1);
        let mut claim = producer.claim(max).expect("the largest frame fits");
        claim.payload_mut().fill(0xAB);
        claim.commit(max, meta);
        assert_eq!(
            producer.claim(max + 1).err(),
            Some(ClaimError::TooLarge {
                payload_len: max + 1,
                max_payload: max
            })
        );
        let mut lens = Vec::new();
        consumer
            .drain(8, |frame| lens.push(frame.payload().len()))
            .unwrap();
        assert_eq!(lens, [max]);
    }
}

/// Fills `payload` with bytes that read as a frame length of 64 wherever a
/// frame may start: what a forgotten claim leaves behind at its worst.
fn fill_with_lengths(payload: &mut [u8]) {
    for word in payload.chunks_mut(4) {
        word.copy_from_slice(&64i32.to_le_bytes()[..word.len()]);
    }
}

/// A claim that is forgotten (`mem::forget`, which safe code may do)
/// instead of dropped or committed publishes nothing, and what it wrote
/// never reaches the consumer as frames when a shorter frame is committed
/// in its place, lap after lap around the ring.
#[test]
fn a_forgotten_claim_leaves_no_frame_behind() {
    let (mut producer, mut consumer) = frames::heap_ring(1024);
    let meta = FrameMeta {
        msg_type: 1,
        ..FrameMeta::default()
    };
    for round in 0..20u8 {
        let mut claim = producer.claim(200).unwrap();
        fill_with_lengths(claim.payload_mut());
        std::mem::forget(claim);

        let mut claim = producer.claim(8).unwrap();
        claim.payload_mut().copy_from_slice(&[round; 8]);
        claim.commit(8, meta);

        let mut seen = Vec::new();
        let result = consumer.drain(usize::MAX, |frame| seen.push(frame.payload().to_vec()));
        assert_eq!(result, Ok(1), "round {round}: {seen:?}");
        assert_eq!(seen, vec![vec![round; 8]], "round {round}");
    }
}
