//! Attaches the IPC ring reader to a ring image made of arbitrary bytes
//! (frame area and both position words) and drains it, checking the
//! documented behaviour: attach refuses impossible positions, a drain
//! never panics or reads out of bounds, every payload fits the ring, and a
//! bad frame is reported again on every later call, never skipped.
//!
//! Input layout: the ring's bytes from the start of the frame area
//! (1024 bytes), then its trailer (the head and tail lines); missing bytes
//! are zero.

#![no_main]

use corelane::lane::frames::TRAILER_LEN;
use corelane::lane::{HeapRegion, Region};
use corelane::segment::ipc::RingReader;
use libfuzzer_sys::fuzz_target;

const CAPACITY: usize = 1024;

fuzz_target!(|data: &[u8]| {
    let region = HeapRegion::zeroed(CAPACITY + TRAILER_LEN);
    let image = &data[..data.len().min(region.len())];
    // SAFETY: the region owns `region.len()` bytes from `base()`, no one
    // else references them yet, and `image` is no longer than that.
    unsafe {
        region
            .base()
            .as_ptr()
            .copy_from_nonoverlapping(image.as_ptr(), image.len())
    };
    let Ok(mut reader) = RingReader::attach(region) else {
        return;
    };

    // Each call reads at most 8 frames; a ring of 1024 bytes holds at most
    // 32, so a well-behaved reader is done (or stuck on an error) by then.
    for _ in 0..64 {
        let start = reader.position();
        let result = reader.drain(8, |frame| {
            assert!(frame.payload().len() <= CAPACITY, "payload past the ring");
        });
        match result {
            Ok(0) => return,
            Ok(_) => assert!(reader.position() > start),
            Err(first) => {
                let at = reader.position();
                let again = reader.drain(8, |_| panic!("a frame after the bad one"));
                assert_eq!(reader.position(), at, "the bad frame was consumed");
                assert_eq!(again.unwrap_err().to_string(), first.to_string());
                return;
            }
        }
    }
});
