//! Opens a segment file holding the input's bytes, as every kind and
//! access: each open must succeed or give an error, never panic or fault
//! (case C09).

#![no_main]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use corelane::segment::{Access, Segment, SegmentKind};
use libfuzzer_sys::fuzz_target;

fn scratch_file() -> PathBuf {
    std::env::temp_dir().join(format!("corelane-fuzz-segment-{}", std::process::id()))
}

fuzz_target!(|data: &[u8]| {
    let path = scratch_file();
    let _ = fs::remove_file(&path);
    fs::write(&path, data).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    for kind in [SegmentKind::IpcRing, SegmentKind::Journal] {
        for access in [Access::ReadOnly, Access::ReadWrite] {
            if let Ok(segment) = Segment::open(&path, kind, access) {
                // What was accepted must describe the file exactly.
                assert_eq!(segment.layout().file_len() as u64, data.len() as u64);
                assert_eq!(segment.header().kind, kind);
            }
        }
    }
    let _ = fs::remove_file(&path);
});
