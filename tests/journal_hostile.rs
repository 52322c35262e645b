//! The journal against a hostile or unlucky directory: special files where
//! segments should be, gaps between segments, and segment names at the top
//! of the position space. Each case must end in a clear error, never a
//! hang, a panic or frames silently skipped.

use std::fs;

use corelane::frame::layout::{aligned_len, FrameMeta, HEADER_LEN};
use corelane::segment::journal::dir::segment_path;
use corelane::segment::journal::{
    inspect, Damage, Durability, JournalConfig, JournalError, JournalReader, JournalWriter, Start,
};
use corelane::segment::{Segment, SegmentError, SegmentKind};

mod common;
use common::Scratch;

fn meta(i: u64) -> FrameMeta {
    FrameMeta {
        msg_type: 77,
        version: 1,
        timestamp_ns: i,
        ..FrameMeta::default()
    }
}

fn config(segment_size: usize) -> JournalConfig {
    JournalConfig {
        segment_size,
        durability: Durability::None,
    }
}

/// Makes a named pipe at `path`.
fn mkfifo(path: &std::path::Path) {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
}

#[test]
fn named_pipe_as_a_segment_is_refused_without_blocking() {
    let scratch = Scratch::new("fifo");
    let path = segment_path(&scratch.0, 0);
    mkfifo(&path);

    // Opening a pipe for reading blocks until a writer comes, unless asked
    // not to: each of these must return at once with a clear error.
    let error = Segment::open(
        &path,
        SegmentKind::Journal,
        corelane::segment::Access::ReadOnly,
    )
    .unwrap_err();
    assert!(matches!(error, SegmentError::NotAFile { .. }), "{error}");
    let inspection = inspect(&scratch.0).unwrap();
    assert!(matches!(
        inspection.damage,
        Some(JournalError::Segment(SegmentError::NotAFile { .. }))
    ));
    let error = JournalWriter::open(&scratch.0, config(4096)).unwrap_err();
    assert!(
        matches!(error, JournalError::Segment(SegmentError::NotAFile { .. })),
        "{error}"
    );
    let mut reader = JournalReader::open(&scratch.0, Start::Beginning).unwrap();
    let error = reader.next_frame().unwrap_err();
    assert!(
        matches!(error, JournalError::Segment(SegmentError::NotAFile { .. })),
        "{error}"
    );
}

#[test]
fn reader_reports_a_missing_middle_segment_instead_of_stopping_quietly() {
    let scratch = Scratch::new("gap");
    let mut writer = JournalWriter::open(&scratch.0, config(4096)).unwrap();
    let positions: Vec<u64> = (0..200)
        .map(|i| writer.append(&[i as u8; 100], meta(i)).unwrap())
        .collect();
    drop(writer);
    // 200 frames of 100 bytes span several 4096-byte segments: one starts
    // each of segments 1, 2 and 3, so removing segment 2 leaves a gap.
    for segment in 1..=3 {
        assert!(positions.contains(&(segment * 4096)), "{positions:?}");
    }
    fs::remove_file(segment_path(&scratch.0, 2 * 4096)).unwrap();

    let mut reader = JournalReader::open(&scratch.0, Start::Beginning).unwrap();
    let mut read = 0;
    let error = loop {
        match reader.next_frame() {
            Ok(Some(frame)) => {
                assert_eq!(frame.position, positions[read]);
                read += 1;
            }
            Ok(None) => panic!("reader stopped quietly after {read} frames at a gap"),
            Err(error) => break error,
        }
    };
    let before_gap = positions.iter().filter(|&&p| p < 2 * 4096).count();
    assert_eq!(read, before_gap, "the two segments before the gap");
    assert!(
        matches!(
            error,
            JournalError::Damaged {
                damage: Damage::Gap {
                    expected: 8192,
                    found: 12288
                },
                ..
            }
        ),
        "{error}"
    );
}

/// Bytes a frame of a 100-byte payload takes in a segment.
const FRAME_SPACE: u64 = aligned_len(HEADER_LEN + 100) as u64;

#[test]
fn segment_at_the_top_of_the_position_space_does_not_overflow_a_roll() {
    let scratch = Scratch::new("top");
    // The highest segment of 4096 bytes that leaves room for no other:
    // the next would end at 2^64, past every position.
    let base = u64::MAX - 8191;
    drop(
        Segment::create(
            &segment_path(&scratch.0, base),
            SegmentKind::Journal,
            4096,
            base,
        )
        .unwrap(),
    );

    // The writer resumes there; a roll would need a segment that ends past
    // u64::MAX, so the append that needs one fails cleanly instead.
    let mut writer = JournalWriter::open(&scratch.0, config(4096)).unwrap();
    let mut appended = 0u64;
    let error = loop {
        match writer.append(&[7u8; 100], meta(appended)) {
            Ok(position) => {
                assert_eq!(position, base + appended * FRAME_SPACE);
                appended += 1;
            }
            Err(error) => break error,
        }
        assert!(appended < 100, "a 4096-byte segment holds few such frames");
    };
    // Every frame that fits before the segment's end marker.
    assert_eq!(
        appended,
        (4096 - aligned_len(HEADER_LEN) as u64) / FRAME_SPACE
    );
    assert!(
        matches!(error, JournalError::PositionsExhausted { .. }),
        "{error}"
    );
    drop(writer);
    assert!(!segment_path(&scratch.0, base + 4096).exists());

    // Nothing was created at position zero, and the frames read back.
    assert!(!segment_path(&scratch.0, 0).exists());
    let mut reader = JournalReader::open(&scratch.0, Start::Beginning).unwrap();
    let mut read = 0;
    while let Some(frame) = reader.next_frame().unwrap() {
        assert_eq!(frame.meta.timestamp_ns, read);
        read += 1;
    }
    assert_eq!(read, appended);
}

#[test]
fn an_empty_journal_read_from_a_position_waits_at_zero_and_is_past_its_end_after() {
    let scratch = Scratch::new("empty");
    let mut reader = JournalReader::open(&scratch.0, Start::Position(0)).unwrap();
    assert_eq!(reader.position(), 0);
    assert!(reader.next_frame().unwrap().is_none());
    let error = JournalReader::open(&scratch.0, Start::Position(u64::MAX)).unwrap_err();
    assert!(
        matches!(
            error,
            JournalError::PastEnd {
                position: u64::MAX,
                end: 0
            }
        ),
        "{error}"
    );

    // Once the writer has appended, the waiting reader sees the frame.
    let mut writer = JournalWriter::open(&scratch.0, config(4096)).unwrap();
    assert_eq!(writer.append(b"first", meta(0)).unwrap(), 0);
    let frame = reader.next_frame().unwrap().expect("the first frame");
    assert_eq!((frame.position, frame.payload), (0, &b"first"[..]));
}

#[test]
fn a_sparse_segment_claiming_more_than_any_writer_makes_is_refused_at_once() {
    use std::os::unix::fs::FileExt;

    let scratch = Scratch::new("sparse");
    let path = segment_path(&scratch.0, 0);
    drop(Segment::create(&path, SegmentKind::Journal, 4096, 0).unwrap());
    // Claim 64 GiB of frames: a sparse file, nothing on disk, all zero, so
    // a scan for its last non-zero byte would read all 64 GiB.
    let claimed: u64 = 64 << 30;
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(
        &claimed.to_le_bytes(),
        corelane::segment::layout::CAPACITY_OFFSET as u64,
    )
    .unwrap();
    file.set_len(corelane::segment::layout::HEADER_PAGE as u64 + claimed + 256)
        .unwrap();
    drop(file);

    let refused = |error: &JournalError| {
        matches!(
            error,
            JournalError::Segment(SegmentError::BadField {
                field: "capacity",
                found,
                ..
            }) if *found == claimed
        )
    };
    let inspection = inspect(&scratch.0).unwrap();
    let damage = inspection.damage.expect("refused");
    assert!(refused(&damage), "{damage}");
    let error = JournalWriter::open(&scratch.0, config(4096)).unwrap_err();
    assert!(refused(&error), "{error}");
    let mut reader = JournalReader::open(&scratch.0, Start::Beginning).unwrap();
    let error = reader.next_frame().unwrap_err();
    assert!(refused(&error), "{error}");
}

/// Writes a valid frame of `payload` at `offset` of the segment at `path`
/// (based at `base`), checksummed as a writer makes it.
fn plant_frame(path: &std::path::Path, base: u64, offset: usize, payload: &[u8]) {
    use corelane::frame::layout::{checksum, write_meta, FLAG_CHECKSUM};
    use std::os::unix::fs::FileExt;

    let length = HEADER_LEN + payload.len();
    let meta = FrameMeta {
        flags: FLAG_CHECKSUM,
        sequence: base.wrapping_add(offset as u64),
        ..meta(0)
    };
    let mut frame = vec![0u8; length];
    write_meta(&mut frame[..HEADER_LEN], &meta, 0);
    let sum = checksum(&frame[..HEADER_LEN], payload);
    write_meta(&mut frame[..HEADER_LEN], &meta, sum);
    frame[..4].copy_from_slice(&(length as i32).to_le_bytes());
    frame[HEADER_LEN..].copy_from_slice(payload);
    let at = corelane::segment::layout::HEADER_PAGE + offset;
    let file = fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(&frame, at as u64).unwrap();
}

/// A sound segment planted near the top of the position space, whose
/// positions would run past `u64::MAX` (or end exactly at 2^64), with a
/// valid frame in it or none: the writer once opened it and appended, its
/// positions overflowing (a panic, or a wrap in a release build). It is
/// refused, naming the file, by the writer, `inspect` and a reader, and
/// left as it was.
#[test]
fn a_segment_whose_positions_run_past_the_top_is_refused_naming_it() {
    for base in [u64::MAX - 100, u64::MAX - 4095, u64::MAX - 4096 + 64] {
        for framed in [true, false] {
            let scratch = Scratch::new("past-top");
            let path = segment_path(&scratch.0, base);
            drop(Segment::create(&path, SegmentKind::Journal, 4096, base).unwrap());
            if framed {
                plant_frame(&path, base, 0, b"planted");
            }
            let before = fs::read(&path).unwrap();
            let refused = |error: &JournalError| {
                matches!(
                    error,
                    JournalError::Damaged {
                        path: p,
                        position,
                        damage: Damage::PositionsWrap,
                    } if *p == path && *position == base
                ) && error.to_string().contains(&*path.to_string_lossy())
            };

            let error = JournalWriter::open(&scratch.0, config(4096)).unwrap_err();
            assert!(refused(&error), "{base:x} framed {framed}: {error}");
            let damage = inspect(&scratch.0).unwrap().damage.expect("damage");
            assert!(refused(&damage), "{base:x} framed {framed}: {damage}");
            let mut reader = JournalReader::open(&scratch.0, Start::Beginning).unwrap();
            let error = reader.next_frame().unwrap_err();
            assert!(refused(&error), "{base:x} framed {framed}: {error}");
            assert_eq!(fs::read(&path).unwrap(), before, "{base:x} framed {framed}");
        }
    }
}
