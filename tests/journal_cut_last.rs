//! The journal's last segment cut short (truncated to nothing, to its
//! header page, or inside its frames) after its frames were acknowledged:
//! the next writer never gives a position it held again, never changes
//! the file, and readers and `inspect` say what the writer did.

use std::fs;
use std::path::{Path, PathBuf};

use corelane::frame::layout::FrameMeta;
use corelane::segment::journal::dir::{list_segments, segment_path};
use corelane::segment::journal::writer::MAX_SEGMENT_SIZE;
use corelane::segment::journal::{
    inspect, Damage, Durability, JournalConfig, JournalError, JournalReader, JournalWriter, Start,
};
use corelane::segment::layout::HEADER_PAGE;
use corelane::segment::{Segment, SegmentKind};

mod common;
use common::Scratch;

const SEGMENT: usize = 4096;

fn config() -> JournalConfig {
    JournalConfig {
        segment_size: SEGMENT,
        durability: Durability::None,
    }
}

fn meta(i: u64) -> FrameMeta {
    FrameMeta {
        msg_type: 41,
        version: 1,
        timestamp_ns: i,
        ..FrameMeta::default()
    }
}

fn append(writer: &mut JournalWriter, range: std::ops::Range<u64>) -> Vec<u64> {
    range
        .map(|i| writer.append(&[i as u8; 150], meta(i)).unwrap())
        .collect()
}

/// Reads from `start` until the journal ends or an error: the positions
/// read, and the error if there was one.
fn read_from(dir: &Path, start: Start) -> (Vec<u64>, Option<String>) {
    let mut reader = JournalReader::open(dir, start).unwrap();
    let mut positions = Vec::new();
    loop {
        match reader.next_frame() {
            Ok(Some(frame)) => positions.push(frame.position),
            Ok(None) => return (positions, None),
            Err(error) => return (positions, Some(error.to_string())),
        }
    }
}

/// Cuts the file at `path` to `len` bytes, as another process might.
fn cut(path: &Path, len: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// The ways a segment's file is cut short, and where the positions it could
/// have held end once cut (from its header where that is left, else the
/// most any segment holds), for a segment based at `base`.
fn cuts(base: u64) -> [(&'static str, u64, u64); 3] {
    [
        ("to nothing", 0, base + MAX_SEGMENT_SIZE as u64),
        (
            "to its header page",
            HEADER_PAGE as u64,
            base + SEGMENT as u64,
        ),
        (
            "inside its frames",
            (HEADER_PAGE + 1000) as u64,
            base + SEGMENT as u64,
        ),
    ]
}

/// A journal whose first segment is sealed and whose second holds frames,
/// the second then cut short: the next writer once took a segment cut to
/// nothing or to its header for one a crash left empty, removed it, and
/// gave its positions (acknowledged before the cut) to new frames; one cut
/// inside its frames was refused until moved aside, which did the same.
/// Now the file is left as it is, and appends resume past every position
/// it held; readers stop there as at damage, `inspect` reports it as
/// damage, and a reader reaches the new frames when asked to start there.
#[test]
fn a_last_segment_cut_short_never_gives_its_positions_again() {
    for (case, len, resume) in cuts(SEGMENT as u64) {
        let dir = Scratch::new("cut-last");
        let mut writer = JournalWriter::open(&dir.0, config()).unwrap();
        let mut acked = Vec::new();
        let mut i = 0;
        while acked.iter().filter(|&&p| p >= SEGMENT as u64).count() < 5 {
            acked.extend(append(&mut writer, i..i + 1));
            i += 1;
        }
        drop(writer);
        let sealed: Vec<u64> = acked
            .iter()
            .copied()
            .filter(|&p| p < SEGMENT as u64)
            .collect();
        let last = segment_path(&dir.0, SEGMENT as u64);
        cut(&last, len);
        let cut_bytes = fs::read(&last).unwrap();

        // Before a writer comes: damage, named, not a leftover to remove.
        let inspection = inspect(&dir.0).unwrap();
        assert!(inspection.leftover.is_none(), "{case}");
        let damage = inspection.damage.expect("damage").to_string();
        assert!(
            damage.contains(&*last.to_string_lossy()),
            "{case}: {damage}"
        );
        let (read, error) = read_from(&dir.0, Start::Beginning);
        assert_eq!(read, sealed, "{case}");
        let error = error.expect("the reader stops at the cut");
        assert!(error.contains(&*last.to_string_lossy()), "{case}: {error}");

        let mut writer = JournalWriter::open(&dir.0, config()).unwrap();
        assert_eq!(
            writer.recovery().cut_short,
            std::slice::from_ref(&last),
            "{case}"
        );
        assert!(writer.recovery().removed.is_empty(), "{case}");
        assert_eq!(writer.position(), resume, "{case}");
        let new = append(&mut writer, i..i + 3);
        drop(writer);
        let newest_acked = *acked.last().unwrap();
        assert!(new.iter().all(|&p| p > newest_acked), "{case}: {new:?}");
        assert_eq!(new[0], resume, "{case}");
        assert_eq!(fs::read(&last).unwrap(), cut_bytes, "{case}: changed");

        // Readers and `inspect` agree with what the writer did.
        let (read, error) = read_from(&dir.0, Start::Beginning);
        assert_eq!(read, sealed, "{case}");
        assert!(error.is_some(), "{case}");
        assert_eq!(
            read_from(&dir.0, Start::Position(resume)),
            (new.clone(), None)
        );
        let inspection = inspect(&dir.0).unwrap();
        assert_eq!(inspection.frames(), sealed.len() as u64, "{case}");
        let damage = inspection.damage.expect("damage").to_string();
        assert!(
            damage.contains(&*last.to_string_lossy()),
            "{case}: {damage}"
        );

        // A second restart goes on from the new frames, passing the cut
        // segment over again.
        let mut writer = JournalWriter::open(&dir.0, config()).unwrap();
        assert_eq!(
            writer.recovery().cut_short,
            std::slice::from_ref(&last),
            "{case}"
        );
        let after = append(&mut writer, i + 3..i + 4);
        assert!(after[0] > *new.last().unwrap(), "{case}");
        drop(writer);
        assert_eq!(fs::read(&last).unwrap(), cut_bytes, "{case}: changed");
    }
}

/// A writer that found its segment cut under it, abandoned it, linked the
/// next and stopped before writing there (killed) leaves the cut segment
/// last but one, and a segment that holds no frame after it. The next
/// writer once removed both (as a crash's leftovers) and began again at
/// the cut segment's base. Now the cut one stays and appends resume past
/// it: in the linked segment when that is where its positions end, in a
/// new one further on when its header (so its end) was lost.
#[test]
fn a_segment_abandoned_before_the_next_was_written_is_passed_over() {
    for (case, len, resume) in cuts(0) {
        let dir = Scratch::new("cut-abandoned");
        let mut writer = JournalWriter::open(&dir.0, config()).unwrap();
        let acked = append(&mut writer, 0..8);
        drop(writer);
        let first = segment_path(&dir.0, 0);
        cut(&first, len);
        let next = segment_path(&dir.0, SEGMENT as u64);
        drop(Segment::create(&next, SegmentKind::Journal, SEGMENT, SEGMENT as u64).unwrap());

        let mut writer = JournalWriter::open(&dir.0, config()).unwrap();
        assert_eq!(
            writer.recovery().cut_short,
            std::slice::from_ref(&first),
            "{case}"
        );
        let reused = resume == SEGMENT as u64;
        let removed: Vec<PathBuf> = if reused { vec![] } else { vec![next.clone()] };
        assert_eq!(writer.recovery().removed, removed, "{case}");
        let new = append(&mut writer, 8..10);
        drop(writer);
        assert_eq!(new[0], resume, "{case}");
        assert!(new[0] > *acked.last().unwrap(), "{case}");
        assert_eq!(
            list_segments(&dir.0).unwrap().first().map(|(b, _)| *b),
            Some(0),
            "{case}: the cut segment stays"
        );
        assert_eq!(read_from(&dir.0, Start::Position(resume)), (new, None));
    }
}

/// The same cut in a journal's only segment (a writer that made it, then
/// had it cut before it rolled): appends resume past it, not at 0.
#[test]
fn an_only_segment_cut_short_is_passed_over_too() {
    for (case, len, resume) in cuts(0) {
        let dir = Scratch::new("cut-only");
        let mut writer = JournalWriter::open(&dir.0, config()).unwrap();
        let acked = append(&mut writer, 0..8);
        drop(writer);
        let first = segment_path(&dir.0, 0);
        cut(&first, len);

        let mut writer = JournalWriter::open(&dir.0, config()).unwrap();
        assert_eq!(
            writer.recovery().cut_short,
            std::slice::from_ref(&first),
            "{case}"
        );
        let new = append(&mut writer, 8..9);
        drop(writer);
        assert_eq!(new, [resume], "{case}");
        assert!(new[0] > *acked.last().unwrap(), "{case}");
        assert!(first.exists(), "{case}");
    }
}

/// A segment that holds no frame and is not cut short, between a sealed
/// segment and one cut short, is no segment a writer leaves: once appends
/// went on past the cut one, the next open would find it unsealed before
/// the last. The writer refuses now, naming it, and removes nothing.
#[test]
fn an_empty_segment_before_a_cut_one_is_refused_and_kept() {
    let dir = Scratch::new("cut-after-empty");
    let mut writer = JournalWriter::open(&dir.0, config()).unwrap();
    let mut i = 0;
    while append(&mut writer, i..i + 1)[0] < SEGMENT as u64 {
        i += 1;
    }
    drop(writer);
    // The segment at 4096 emptied back to a fresh one, then one cut to
    // nothing after it.
    let empty = segment_path(&dir.0, SEGMENT as u64);
    fs::remove_file(&empty).unwrap();
    drop(Segment::create(&empty, SegmentKind::Journal, SEGMENT, SEGMENT as u64).unwrap());
    let cut_one = segment_path(&dir.0, 2 * SEGMENT as u64);
    fs::write(&cut_one, b"").unwrap();
    let before = list_segments(&dir.0).unwrap();

    let error = JournalWriter::open(&dir.0, config()).unwrap_err();
    assert!(
        matches!(
            &error,
            JournalError::Damaged { path, damage: Damage::MissingEndMarker, .. } if *path == empty
        ),
        "{error}"
    );
    assert_eq!(list_segments(&dir.0).unwrap(), before);
    assert_eq!(fs::read(&cut_one).unwrap(), b"");
}
