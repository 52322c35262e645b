//! Opens a segment file made from the input's bytes, as every kind and
//! access: each open must succeed or give an error, never panic or fault
//! (case C09).
//!
//! Input layout: byte 0 picks a frame area size (32 << (byte % 10)); byte
//! 1 holds flags: bit 0 leaves the magic to the input (otherwise it is
//! written, so that the checks after it are reached), bit 1 shortens the
//! file by a few bytes, bit 2 makes the file exactly the rest of the input.
//! The rest is written from the start of the file (after the magic unless
//! bit 0 is set); the file is zero beyond it.

#![no_main]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use corelane::segment::layout::{HEADER_PAGE, MAGIC};
use corelane::segment::{Access, Segment, SegmentKind};
use libfuzzer_sys::fuzz_target;

fn scratch_file() -> PathBuf {
    std::env::temp_dir().join(format!("corelane-fuzz-segment-{}", std::process::id()))
}

fuzz_target!(|data: &[u8]| {
    let [pick, flags, rest @ ..] = data else {
        return;
    };
    let capacity = 32usize << (pick % 10);
    let mut len = HEADER_PAGE + capacity + 256;
    if flags & 2 != 0 {
        len -= 1 + rest.len() % 97;
    }
    if flags & 4 != 0 {
        len = rest.len();
    }
    let mut image = vec![0u8; len];
    let start = if flags & 1 == 0 && len >= MAGIC.len() {
        image[..MAGIC.len()].copy_from_slice(&MAGIC);
        MAGIC.len()
    } else {
        0
    };
    let take = rest.len().min(len.saturating_sub(start));
    image[start..start + take].copy_from_slice(&rest[..take]);

    let path = scratch_file();
    let _ = fs::remove_file(&path);
    fs::write(&path, &image).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    for kind in [SegmentKind::IpcRing, SegmentKind::Journal] {
        for access in [Access::ReadOnly, Access::ReadWrite] {
            if let Ok(segment) = Segment::open(&path, kind, access) {
                // What was accepted must describe the file exactly.
                assert_eq!(segment.layout().file_len(), image.len());
                assert_eq!(segment.header().kind, kind);
            }
        }
    }
    let _ = fs::remove_file(&path);
});
