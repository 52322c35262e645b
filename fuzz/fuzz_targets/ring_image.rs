//! Reads an arbitrary ring image (header, frames and the two position
//! words) with the IPC subscriber until it errors or reports the writer
//! gone: it must never panic, fault or loop forever.
//!
//! Input layout: byte 0 picks the capacity (128 << (byte % 8) bytes of
//! frames); byte 1 bit 0 says whether the header page comes from the input
//! too (usually refused at open) or is a valid header; the rest fills the
//! header page (if asked), then the frame area and the position words,
//! zero-padded.

#![no_main]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use corelane::frame::Message;
use corelane::segment::ipc::IpcSubscriber;
use corelane::segment::layout::{
    SegmentKind, SegmentLayout, CAPACITY_OFFSET, FORMAT_VERSION, FRAME_ALIGN_OFFSET,
    HEADER_LEN_OFFSET, HEADER_PAGE, INITIALISED, INITIALISED_OFFSET, KIND_OFFSET, MAGIC,
    MAGIC_OFFSET, VERSION_OFFSET,
};
use libfuzzer_sys::fuzz_target;

#[derive(rkyv::Archive, rkyv::Serialize)]
struct Probe {
    id: u32,
    text: String,
    values: Vec<u64>,
}

impl Message for Probe {
    const TYPE_ID: u16 = 1;
    const VERSION: u8 = 1;
    const NAME: &'static str = "Probe";
}

fn scratch_file() -> PathBuf {
    std::env::temp_dir().join(format!("corelane-fuzz-ring-{}", std::process::id()))
}

fn put(image: &mut [u8], offset: usize, bytes: &[u8]) {
    image[offset..offset + bytes.len()].copy_from_slice(bytes);
}

fuzz_target!(|data: &[u8]| {
    let [pick, flags, rest @ ..] = data else {
        return;
    };
    let capacity = 128usize << (pick % 8);
    let layout = SegmentLayout::new(capacity).unwrap();
    let mut image = vec![0u8; layout.file_len()];
    let (start, rest) = if flags & 1 == 1 {
        (0, rest)
    } else {
        put(&mut image, MAGIC_OFFSET, &MAGIC);
        put(&mut image, VERSION_OFFSET, &FORMAT_VERSION.to_le_bytes());
        put(
            &mut image,
            KIND_OFFSET,
            &(SegmentKind::IpcRing as u32).to_le_bytes(),
        );
        put(
            &mut image,
            HEADER_LEN_OFFSET,
            &(HEADER_PAGE as u32).to_le_bytes(),
        );
        put(
            &mut image,
            FRAME_ALIGN_OFFSET,
            &(corelane::frame::FRAME_ALIGN as u32).to_le_bytes(),
        );
        put(
            &mut image,
            CAPACITY_OFFSET,
            &(capacity as u64).to_le_bytes(),
        );
        put(&mut image, INITIALISED_OFFSET, &INITIALISED.to_le_bytes());
        (HEADER_PAGE, rest)
    };
    let take = rest.len().min(image.len() - start);
    image[start..start + take].copy_from_slice(&rest[..take]);

    let path = scratch_file();
    let _ = fs::remove_file(&path);
    fs::write(&path, &image).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    if let Ok(mut subscriber) = IpcSubscriber::open(&path) {
        subscriber.set_probe_every(1);
        // Every drain that delivers consumes (and zeroes) at least one
        // frame slot, so the ring is empty after at most this many.
        let bound = capacity / corelane::frame::FRAME_ALIGN + 4;
        let mut ended = false;
        for _ in 0..bound {
            let drained = subscriber.drain(64, |frame| {
                let _ = frame.message::<Probe>();
                assert_eq!(frame.payload().as_ptr() as usize % 16, 0);
            });
            if drained.is_err() {
                ended = true;
                break;
            }
        }
        assert!(ended, "the reader neither ended nor errored");
    }
    let _ = fs::remove_file(&path);
});
