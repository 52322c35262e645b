//! A journal directory holding one segment made from arbitrary bytes:
//! inspection, the reader, and the writer's recovery must give an error or
//! frames, never panic, loop, or read out of bounds.
//!
//! Input layout: byte 0 picks how the segment file is made:
//! - 0: the rest of the input is the whole file (mostly refused at the
//!   header);
//! - 1: a valid header for a 4 KiB frame area, the input copied over the
//!   frame area;
//! - 2: valid frames appended by the writer (payloads cut from the input),
//!   then the last bytes of input taken as (offset, xor) pairs that damage
//!   the file anywhere, header included.

#![no_main]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use corelane::frame::layout::FrameMeta;
use corelane::segment::journal::dir::segment_path;
use corelane::segment::journal::{inspect, JournalConfig, JournalReader, JournalWriter, Start};
use corelane::segment::layout::HEADER_PAGE;
use corelane::segment::{Segment, SegmentKind};
use libfuzzer_sys::fuzz_target;

const CAPACITY: usize = 4096;

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("corelane-fuzz-journal-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn config() -> JournalConfig {
    JournalConfig {
        segment_size: CAPACITY,
        durability: corelane::segment::journal::Durability::None,
    }
}

/// Reads every frame; each call must make progress or stop.
fn read_all(dir: &Path) {
    let Ok(mut reader) = JournalReader::open(dir, Start::Beginning) else {
        return;
    };
    // A 4 KiB segment holds at most 4096 / 32 frames; the writer may have
    // rolled into a couple more segments.
    for _ in 0..(4 * CAPACITY / 32 + 8) {
        match reader.next_frame() {
            Ok(Some(frame)) => {
                let _ = frame.message::<corelane::serve::Published>();
            }
            Ok(None) | Err(_) => return,
        }
    }
    panic!("reader did not stop");
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let dir = scratch();
    let path = segment_path(&dir, 0);
    match mode % 3 {
        0 => {
            fs::write(&path, rest).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        }
        1 => {
            drop(Segment::create(&path, SegmentKind::Journal, CAPACITY, 0).unwrap());
            let mut bytes = fs::read(&path).unwrap();
            let n = rest.len().min(CAPACITY);
            bytes[HEADER_PAGE..HEADER_PAGE + n].copy_from_slice(&rest[..n]);
            fs::write(&path, &bytes).unwrap();
        }
        _ => {
            let damage_len = rest.len().min(16) / 4 * 4;
            let (frames, damage) = rest.split_at(rest.len() - damage_len);
            let mut writer = JournalWriter::open(&dir, config()).unwrap();
            for (i, chunk) in frames.chunks(61).enumerate() {
                let meta = FrameMeta {
                    msg_type: 1 + (i % 3) as u16,
                    version: 1,
                    ..FrameMeta::default()
                };
                writer.append(chunk, meta).unwrap();
            }
            drop(writer);
            let mut bytes = fs::read(&path).unwrap();
            for pair in damage.chunks(4) {
                let offset = usize::from(u16::from_le_bytes([pair[0], pair[1]]));
                let at = (HEADER_PAGE / 2 + offset) % bytes.len();
                bytes[at] ^= pair[2] | 1;
                let _ = pair[3];
            }
            fs::write(&path, &bytes).unwrap();
        }
    }

    let _ = inspect(&dir);
    read_all(&dir);
    if let Ok(mut writer) = JournalWriter::open(&dir, config()) {
        let _ = writer.append(
            b"after recovery",
            FrameMeta {
                msg_type: 9,
                version: 1,
                ..FrameMeta::default()
            },
        );
        drop(writer);
        read_all(&dir);
        let _ = inspect(&dir);
    }
    let _ = fs::remove_dir_all(&dir);
});
