//! Segment files: creation rules and validation on open (case C09).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use corelane::segment::layout::{HEADER_PAGE, INITIALISED_OFFSET, KIND_OFFSET};
use corelane::segment::{Access, Segment, SegmentError, SegmentKind, SEGMENT_MODE};

mod common;
use common::Scratch;

fn open(path: &std::path::Path) -> Result<Segment, SegmentError> {
    Segment::open(path, SegmentKind::IpcRing, Access::ReadWrite)
}

#[test]
fn created_segment_reopens_with_the_same_header_and_owner_only_mode() {
    let dir = Scratch::new("roundtrip");
    let path = dir.path("ring");
    let created = Segment::create(&path, SegmentKind::IpcRing, 1 << 16, 0).unwrap();
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, SEGMENT_MODE);
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        created.layout().file_len() as u64
    );
    let opened = open(&path).unwrap();
    assert_eq!(opened.header(), created.header());
    assert_eq!(opened.header().capacity, 1 << 16);
    assert_eq!(opened.header().writer_pid, std::process::id());
    // No temporary file is left beside it.
    let names: Vec<_> = fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["ring"]);
}

#[test]
fn create_never_overwrites() {
    let dir = Scratch::new("exists");
    let path = dir.write("taken", b"precious");
    let error = Segment::create(&path, SegmentKind::Journal, 4096, 0).unwrap_err();
    assert!(matches!(error, SegmentError::Exists { .. }), "{error}");
    assert_eq!(fs::read(&path).unwrap(), b"precious");
}

#[test]
fn capacities_that_are_not_whole_frames_are_refused() {
    let dir = Scratch::new("capacity");
    for capacity in [0, 33, 4095] {
        let error = Segment::create(&dir.path("x"), SegmentKind::Journal, capacity, 0).unwrap_err();
        assert!(
            matches!(error, SegmentError::BadCapacity { capacity: c, .. } if c == capacity),
            "{error}"
        );
    }
}

#[test]
fn empty_file_is_too_short() {
    let dir = Scratch::new("empty");
    let path = dir.write("empty", b"");
    let error = open(&path).unwrap_err();
    assert!(
        matches!(error, SegmentError::TooShort { len: 0, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("too short"), "{error}");
}

#[test]
fn file_shorter_than_its_header_says_is_refused_before_reading_frames() {
    let dir = Scratch::new("short");
    let path = dir.path("ring");
    let segment = Segment::create(&path, SegmentKind::IpcRing, 1 << 16, 0).unwrap();
    let full = segment.layout().file_len() as u64;
    drop(segment);
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(full - 4096).unwrap();
    let error = open(&path).unwrap_err();
    assert!(
        matches!(error, SegmentError::SizeMismatch { file_len, expected, .. }
            if file_len == full - 4096 && expected == full),
        "{error}"
    );
}

#[test]
fn random_bytes_are_not_a_segment() {
    let dir = Scratch::new("random");
    // A fixed xorshift stream: the same "random" file every run.
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let bytes: Vec<u8> = (0..3 * HEADER_PAGE)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let path = dir.write("noise", &bytes);
    let error = open(&path).unwrap_err();
    assert!(matches!(error, SegmentError::BadMagic { .. }), "{error}");
}

#[test]
fn every_corrupted_header_field_is_named() {
    let dir = Scratch::new("fields");
    let path = dir.path("ring");
    drop(Segment::create(&path, SegmentKind::IpcRing, 1 << 12, 0).unwrap());
    let pristine = fs::read(&path).unwrap();
    let cases: [(usize, u32, &str); 5] = [
        (8, 2, "version 2"),
        (KIND_OFFSET, 7, "unknown kind 7"),
        (16, 512, "header length"),
        (20, 8, "frame alignment"),
        (INITIALISED_OFFSET, 0, "not initialised"),
    ];
    for (offset, value, expected) in cases {
        let mut bytes = pristine.clone();
        bytes[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
        fs::write(&path, &bytes).unwrap();
        let error = open(&path).unwrap_err().to_string();
        assert!(error.contains(expected), "offset {offset}: {error}");
    }
    // A capacity that does not match the file's length.
    let mut bytes = pristine.clone();
    bytes[32..40].copy_from_slice(&(1u64 << 40).to_le_bytes());
    fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        open(&path).unwrap_err(),
        SegmentError::SizeMismatch { .. }
    ));
    // A journal segment is not an IPC ring.
    fs::write(&path, &pristine).unwrap();
    let error = Segment::open(&path, SegmentKind::Journal, Access::ReadOnly).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("expected a journal segment, found a ipc ring"),
        "{error}"
    );
}

#[test]
fn files_others_may_write_are_refused() {
    let dir = Scratch::new("mode");
    let path = dir.path("ring");
    drop(Segment::create(&path, SegmentKind::IpcRing, 1 << 12, 0).unwrap());
    fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
    let error = open(&path).unwrap_err();
    assert!(
        matches!(error, SegmentError::Permissions { mode: 0o666, .. }),
        "{error}"
    );
}

#[test]
fn directories_and_missing_files_are_clear_errors() {
    let dir = Scratch::new("notfile");
    let error = open(&dir.0).unwrap_err();
    assert!(
        matches!(
            error,
            SegmentError::NotAFile { .. } | SegmentError::Io { .. }
        ),
        "{error}"
    );
    let error = open(&dir.path("missing")).unwrap_err();
    assert!(
        error.to_string().contains("missing: open failed"),
        "{error}"
    );
}

#[test]
fn read_only_segments_give_no_ring_region_and_heartbeat_is_shared() {
    let dir = Scratch::new("readonly");
    let path = dir.path("ring");
    let writer = Segment::create(&path, SegmentKind::IpcRing, 1 << 12, 0).unwrap();
    writer
        .heartbeat()
        .store(42, std::sync::atomic::Ordering::Release);
    let reader = Arc::new(Segment::open(&path, SegmentKind::IpcRing, Access::ReadOnly).unwrap());
    assert_eq!(
        reader
            .heartbeat()
            .load(std::sync::atomic::Ordering::Acquire),
        42
    );
    assert!(reader.ring_region().is_err());
    assert!(Arc::new(writer).ring_region().is_ok());
}
