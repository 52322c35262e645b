//! Feeds arbitrary bytes to the journal as the frame area of its last
//! segment (behind a valid header, so the frame scan is what gets fuzzed)
//! and checks the documented behaviour: inspection, reading and the
//! writer's recovery never panic; a recovered writer appends after what
//! the reader returned, and a reader then sees those frames followed by
//! the new one, nothing torn in between.
//!
//! Input layout: the frame area's bytes (at most one 4096-byte segment;
//! shorter inputs leave the rest zero).

#![no_main]

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use corelane::frame::layout::FrameMeta;
use corelane::segment::journal::dir::segment_path;
use corelane::segment::journal::{
    inspect, Durability, JournalConfig, JournalReader, JournalWriter, Start,
};
use corelane::segment::layout::HEADER_PAGE;
use corelane::segment::{Segment, SegmentKind};
use libfuzzer_sys::fuzz_target;

const CAPACITY: usize = 4096;

/// One scratch directory per fuzzing process, emptied for each input.
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        std::env::temp_dir().join(format!("corelane-fuzz-journal-{}", std::process::id()))
    })
}

/// Positions of every frame a reader returns before it stops, and
/// whether it stopped at an error.
fn read_positions(dir: &std::path::Path) -> (Vec<u64>, bool) {
    let mut positions = Vec::new();
    let Ok(mut reader) = JournalReader::open(dir, Start::Beginning) else {
        return (positions, true);
    };
    loop {
        match reader.next_frame() {
            Ok(Some(frame)) => positions.push(frame.position),
            Ok(None) => return (positions, false),
            Err(_) => return (positions, true),
        }
        assert!(positions.len() <= CAPACITY / 32, "more frames than slots");
    }
}

fuzz_target!(|data: &[u8]| {
    let dir = scratch();
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let path = segment_path(dir, 0);
    drop(Segment::create(&path, SegmentKind::Journal, CAPACITY, 0).unwrap());
    let frames = &data[..data.len().min(CAPACITY)];
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(frames, HEADER_PAGE as u64).unwrap();
    drop(file);

    let inspection = inspect(dir).unwrap();
    let (before, reader_failed) = read_positions(dir);
    assert_eq!(
        inspection.frames(),
        before.len() as u64,
        "inspect and the reader disagree"
    );
    let config = JournalConfig {
        segment_size: CAPACITY,
        durability: Durability::None,
    };
    let Ok(mut writer) = JournalWriter::open(dir, config) else {
        assert!(
            inspection.damage.is_some(),
            "recovery refused an undamaged journal"
        );
        return;
    };
    assert!(!reader_failed || inspection.segments[0].torn_tail.is_some());
    let meta = FrameMeta {
        msg_type: 9,
        version: 1,
        ..FrameMeta::default()
    };
    let appended = writer.append(b"after recovery", meta).unwrap();
    drop(writer);
    let (after, failed) = read_positions(dir);
    assert!(!failed, "a recovered journal reads without damage");
    assert_eq!(&after[..before.len()], &before[..]);
    assert_eq!(after[before.len()..], [appended]);
});
