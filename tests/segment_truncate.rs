//! A segment file truncated under a live reader gives a clear `Truncated`
//! error, and under a journal writer makes it abandon that segment and go
//! on in the next, not a SIGBUS death (see `corelane::segment::sigbus`);
//! a SIGBUS on a mapping that is not a segment still kills as before.
//!
//! Each scenario runs in a child process (this test binary again, with
//! `CORELANE_TRUNCATE_CHILD` naming the scenario), so a SIGBUS that is not
//! handled kills the child and the parent reports it, instead of taking
//! the whole test run down.

use std::fs::OpenOptions;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;

use corelane::frame::layout::{aligned_len, FrameMeta, PAYLOAD_OFFSET};
use corelane::frame::Message;
use corelane::segment::ipc::{IpcError, IpcPublisher, IpcSubscriber};
use corelane::segment::journal::dir::segment_path;
use corelane::segment::journal::{
    AbandonedSegment, Durability, JournalConfig, JournalError, JournalReader, JournalWriter, Start,
};
use corelane::segment::layout::HEADER_PAGE;
use corelane::segment::SegmentError;
use rkyv::ser::allocator::Arena;

mod common;

/// Env var naming the scenario the child runs.
const CHILD: &str = "CORELANE_TRUNCATE_CHILD";
/// Env var naming the child's scratch directory.
const CHILD_DIR: &str = "CORELANE_TRUNCATE_DIR";
const PAGE: u64 = 4096;

#[derive(rkyv::Archive, rkyv::Serialize)]
struct Note {
    sequence: u64,
    body: Vec<u8>,
}

impl Message for Note {
    const TYPE_ID: u16 = 0x2e;
    const VERSION: u8 = 1;
    const NAME: &'static str = "Note";
}

fn meta(i: u64) -> FrameMeta {
    FrameMeta {
        msg_type: 9,
        version: 1,
        timestamp_ns: i,
        ..FrameMeta::default()
    }
}

/// Bytes each frame of `payload` takes in a segment.
fn frame_len() -> u64 {
    aligned_len(PAYLOAD_OFFSET + 200) as u64
}

/// 200 bytes: over a dozen frames to a page.
fn payload(i: u64) -> Vec<u8> {
    (0..200).map(|k| (k as u8) ^ (i as u8)).collect()
}

fn journal_config() -> JournalConfig {
    JournalConfig {
        segment_size: 1 << 20,
        durability: Durability::None,
    }
}

/// Cuts `path` to `len` bytes, as a hostile process would.
fn truncate(path: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn is_truncated(error: &JournalError, path: &Path) -> bool {
    matches!(error, JournalError::Segment(SegmentError::Truncated { path: p }) if p == path)
}

/// Runs `scenario` in a child process; returns its status and output.
fn run_child(scenario: &str) -> (std::process::ExitStatus, String) {
    common::run_test_in_child("child_scenario", "truncate", (CHILD, scenario), CHILD_DIR)
}

/// Asserts the child ran its scenario to the end: no signal, exit 0, and
/// its closing line printed.
fn assert_survived(scenario: &str) -> String {
    let (status, text) = run_child(scenario);
    assert_eq!(status.signal(), None, "child died of a signal: {text}");
    assert!(status.success(), "{text}");
    assert!(text.contains(&format!("survived {scenario}")), "{text}");
    text
}

#[test]
fn journal_reader_reports_a_segment_cut_under_it() {
    let text = assert_survived("journal-reader");
    assert!(text.contains("segment_truncated"), "{text}");
}

#[test]
fn journal_reader_waiting_on_an_untouched_page_notices_the_cut() {
    assert_survived("journal-reader-waiting");
}

#[test]
fn journal_writer_abandons_a_segment_cut_under_it_and_goes_on() {
    assert_survived("journal-writer");
}

#[test]
fn quiet_journal_writer_notices_a_cut_when_it_ticks() {
    assert_survived("journal-writer-quiet");
}

#[test]
fn journal_writer_syncs_no_frame_past_a_cut_inside_a_page() {
    assert_survived("journal-writer-mid-page");
}

#[test]
fn ipc_subscriber_reports_a_ring_cut_under_it() {
    assert_survived("ipc-subscriber");
}

#[test]
fn ipc_subscriber_waiting_notices_a_cut_that_faults_nothing() {
    assert_survived("ipc-subscriber-waiting");
}

#[test]
fn a_sigbus_outside_segments_still_kills() {
    let (status, text) = run_child("foreign-mapping");
    assert_eq!(status.signal(), Some(libc::SIGBUS), "{text}");
    assert!(text.contains("touching the cut page"), "{text}");
    assert!(!text.contains("survived"), "{text}");
}

/// The child: runs the scenario named by `CORELANE_TRUNCATE_CHILD`.
#[test]
fn child_scenario() {
    let Ok(scenario) = std::env::var(CHILD) else {
        return;
    };
    let dir = std::path::PathBuf::from(std::env::var_os(CHILD_DIR).unwrap());
    match scenario.as_str() {
        "journal-reader" => journal_reader(&dir),
        "journal-reader-waiting" => journal_reader_waiting(&dir),
        "journal-writer" => journal_writer(&dir),
        "journal-writer-quiet" => journal_writer_quiet(&dir),
        "journal-writer-mid-page" => journal_writer_mid_page(&dir),
        "ipc-subscriber" => ipc_subscriber(&dir),
        "ipc-subscriber-waiting" => ipc_subscriber_waiting(&dir),
        "foreign-mapping" => foreign_mapping(&dir),
        other => panic!("unknown scenario {other}"),
    }
    println!("survived {scenario}");
}

/// A reader part way through a segment whose frame area is cut to its
/// first page: it reads the frames that are left, then reports the cut.
fn journal_reader(dir: &Path) {
    let mut writer = JournalWriter::open(dir, journal_config()).unwrap();
    for i in 0..200 {
        writer.append(&payload(i), meta(i)).unwrap();
    }
    let path = segment_path(dir, 0);
    let mut reader = JournalReader::open(dir, Start::Beginning).unwrap();
    assert_eq!(reader.next_frame().unwrap().unwrap().payload, payload(0));

    truncate(&path, HEADER_PAGE as u64 + PAGE);
    let mut read = 1;
    let error = loop {
        match reader.next_frame() {
            Ok(Some(frame)) => {
                assert_eq!(frame.payload, payload(read), "frame {read}");
                read += 1;
            }
            Ok(None) => panic!("no frame after {read}: the cut was not noticed"),
            Err(error) => break error,
        }
    };
    assert!(is_truncated(&error, &path), "{error}");
    assert!((1..200).contains(&read), "read {read} frames");
    // Every frame wholly in the page that is left was read.
    let per_page = PAGE / frame_len();
    assert!(read >= per_page - 1, "read {read} frames");
    // The error stays.
    let again = reader.next_frame().map(|f| f.is_some());
    assert!(
        matches!(&again, Err(e) if is_truncated(e, &path)),
        "{again:?}"
    );
    println!("segment_truncated: {error}");
}

/// A reader waiting for frames on a page the cut leaves in place (so
/// nothing faults): the fstat while it waits notices the file is short.
fn journal_reader_waiting(dir: &Path) {
    let mut writer = JournalWriter::open(dir, journal_config()).unwrap();
    writer.append(&payload(0), meta(0)).unwrap();
    let path = segment_path(dir, 0);
    let mut reader = JournalReader::open(dir, Start::Beginning).unwrap();
    assert!(reader.next_frame().unwrap().is_some());
    assert!(reader.next_frame().unwrap().is_none(), "nothing more yet");

    truncate(&path, HEADER_PAGE as u64 + 2 * PAGE);
    let error = reader.next_frame().map(|f| f.is_some()).unwrap_err();
    assert!(is_truncated(&error, &path), "{error}");
    drop(writer);
}

/// A writer whose segment is cut to its header: the next append (whose
/// write faults on a page past the new end) abandons that segment and
/// lands at the start of the next, and the loss is recorded once. The
/// cut segment stays, as damage a reader from the beginning reports; a
/// reader asked to start after it reads the frames that went on.
fn journal_writer(dir: &Path) {
    let mut writer = JournalWriter::open(dir, journal_config()).unwrap();
    let end = (0..10)
        .map(|i| writer.append(&payload(i), meta(i)).unwrap())
        .last()
        .unwrap()
        + frame_len();
    let path = segment_path(dir, 0);
    truncate(&path, HEADER_PAGE as u64);
    let next = journal_config().segment_size as u64;
    let positions: Vec<u64> = (10..12)
        .map(|i| writer.append(&payload(i), meta(i)).unwrap())
        .collect();
    assert_eq!(positions, [next, next + frame_len()]);
    let lost = AbandonedSegment {
        path: path.clone(),
        base: 0,
        end,
        next,
    };
    assert_eq!(writer.abandoned(), [lost]);
    drop(writer);

    let mut reader = JournalReader::open(dir, Start::Position(next)).unwrap();
    for i in 10..12 {
        assert_eq!(reader.next_frame().unwrap().unwrap().payload, payload(i));
    }
    let error = JournalReader::open(dir, Start::Beginning)
        .unwrap()
        .next_frame()
        .map(|f| f.is_some())
        .unwrap_err();
    assert!(
        matches!(&error, JournalError::Segment(SegmentError::TooShort { path: p, .. }) if *p == path),
        "{error}"
    );

    // The next writer goes on after the frames that went on, as this one
    // did, leaving the cut segment where it is.
    let mut writer = JournalWriter::open(dir, journal_config()).unwrap();
    assert_eq!(writer.recovery().cut_short, std::slice::from_ref(&path));
    assert_eq!(writer.position(), next + 2 * frame_len());
    assert_eq!(
        writer.append(&payload(12), meta(12)).unwrap(),
        next + 2 * frame_len()
    );
    assert!(path.exists());
}

/// A writer gone quiet, whose segment is cut where nothing faults (the
/// pages its frames were on are simply gone): the tick that comes to sync
/// them asks the file's length, abandons the segment, and the next append
/// goes to the next segment.
fn journal_writer_quiet(dir: &Path) {
    let config = JournalConfig {
        durability: Durability::Every(std::time::Duration::from_millis(100)),
        ..journal_config()
    };
    let mut writer = JournalWriter::open(dir, config).unwrap();
    let now = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let clock = now.clone();
    writer.set_clock(move || clock.load(std::sync::atomic::Ordering::Relaxed));
    writer.append(&payload(0), meta(0)).unwrap();
    truncate(&segment_path(dir, 0), HEADER_PAGE as u64);

    now.store(200_000_000, std::sync::atomic::Ordering::Relaxed);
    assert!(writer.tick().unwrap());
    let next = config.segment_size as u64;
    assert_eq!(writer.abandoned().len(), 1);
    assert_eq!(writer.abandoned()[0].end, frame_len());
    assert_eq!(writer.position(), next);
    assert_eq!(writer.append(&payload(1), meta(1)).unwrap(), next);
    assert_eq!(writer.abandoned().len(), 1);
}

/// A writer syncing each frame, whose segment is cut inside a page: the
/// rest of that page stays mapped (nothing faults), but whatever is
/// written there is past the file's end and reaches no file. The sync
/// asks the file's length, so the frame that landed there is not reported
/// synced: the segment is abandoned and the frame appended again in the
/// next, as are those after it. (Frames written past the cut were once
/// acknowledged as synced until the writer reached the next page.)
fn journal_writer_mid_page(dir: &Path) {
    let config = JournalConfig {
        durability: Durability::EachFrame,
        ..journal_config()
    };
    let mut writer = JournalWriter::open(dir, config).unwrap();
    for i in 0..2 {
        assert_eq!(
            writer.append(&payload(i), meta(i)).unwrap(),
            i * frame_len()
        );
    }
    let path = segment_path(dir, 0);
    let cut = 2 * frame_len() + 100;
    truncate(&path, HEADER_PAGE as u64 + cut);

    let next = config.segment_size as u64;
    let positions: Vec<u64> = (2..6)
        .map(|i| writer.append(&payload(i), meta(i)).unwrap())
        .collect();
    let expected: Vec<u64> = (0..4).map(|k| next + k * frame_len()).collect();
    assert_eq!(positions, expected);
    let lost = AbandonedSegment {
        path: path.clone(),
        base: 0,
        end: 3 * frame_len(),
        next,
    };
    assert_eq!(writer.abandoned(), [lost]);
    drop(writer);

    // Every frame acknowledged is in a file: two in the cut one (which
    // keeps its first bytes), the rest in the next.
    let on_disk = std::fs::read(&path).unwrap();
    assert_eq!(on_disk.len() as u64, HEADER_PAGE as u64 + cut);
    let second = HEADER_PAGE + frame_len() as usize + PAYLOAD_OFFSET;
    assert_eq!(on_disk[second..second + 200], payload(1)[..]);
    let mut reader = JournalReader::open(dir, Start::Position(next)).unwrap();
    for i in 2..6 {
        assert_eq!(reader.next_frame().unwrap().unwrap().payload, payload(i));
    }
    assert!(reader.next_frame().unwrap().is_none());
}

/// A subscriber with frames waiting, whose ring file is cut to its header
/// page: the drain reports the cut and lends no zeroed frame out.
fn ipc_subscriber(dir: &Path) {
    let path = dir.join("ring");
    let mut publisher = IpcPublisher::create(&path, 1 << 16).unwrap();
    let mut subscriber = IpcSubscriber::open(&path).unwrap();
    let mut arena = Arena::new();
    let note = |sequence| Note {
        sequence,
        body: vec![7; 300],
    };
    for sequence in 0..50 {
        publisher
            .write_message_checksummed(&note(sequence), sequence, &mut arena)
            .unwrap();
    }
    let mut seen = Vec::new();
    let read = subscriber
        .drain(10, |frame| {
            seen.push(frame.message::<Note>().unwrap().sequence.to_native());
        })
        .unwrap();
    assert_eq!((read, seen.len()), (10, 10));

    truncate(&path, HEADER_PAGE as u64);
    for _ in 0..2 {
        let error = subscriber
            .drain(100, |frame| {
                let note = frame.message::<Note>().unwrap();
                seen.push(note.sequence.to_native());
            })
            .unwrap_err();
        assert!(
            matches!(&error, IpcError::Segment(SegmentError::Truncated { path: p }) if *p == path),
            "{error}"
        );
    }
    assert_eq!(
        seen,
        (0..10).collect::<Vec<u64>>(),
        "no frame after the cut"
    );
    // The publisher's mapping is cut too: its next write is flagged.
    let _ = publisher.write_message_checksummed(&note(50), 50, &mut arena);
    assert!(publisher.truncated());
}

/// A subscriber waiting on an empty ring whose file loses its last 64
/// bytes: the page they were on stays mapped (no fault), and the probe's
/// fstat reports the cut.
fn ipc_subscriber_waiting(dir: &Path) {
    let path = dir.join("ring");
    let _publisher = IpcPublisher::create(&path, 1 << 16).unwrap();
    let mut subscriber = IpcSubscriber::open(&path).unwrap();
    subscriber.set_probe_every(1);
    assert_eq!(subscriber.drain(10, |_| panic!("no frame")).unwrap(), 0);

    let len = std::fs::metadata(&path).unwrap().len();
    truncate(&path, len - 64);
    let error = subscriber.drain(10, |_| panic!("no frame")).unwrap_err();
    assert!(
        matches!(&error, IpcError::Segment(SegmentError::Truncated { path: p }) if *p == path),
        "{error}"
    );
}

/// A plain file mapping (no segment) cut under its reader: the handler
/// installed for segments hands the SIGBUS on, and it kills as always.
fn foreign_mapping(dir: &Path) {
    // Installs the handler.
    let _journal = JournalWriter::open(&dir.join("journal"), journal_config()).unwrap();
    let path = dir.join("plain");
    std::fs::write(&path, vec![1u8; 2 * PAGE as usize]).unwrap();
    let file = OpenOptions::new().read(true).open(&path).unwrap();
    let map = memmap2::MmapOptions::new()
        .len(2 * PAGE as usize)
        .map_raw_read_only(&file)
        .unwrap();
    truncate(&path, 0);
    println!("touching the cut page");
    // SAFETY: inside the mapping; the read faults (the file is empty) and
    // the process is meant to die of it.
    let byte = unsafe { map.as_ptr().add(PAGE as usize).read_volatile() };
    println!("read {byte}: the SIGBUS was swallowed");
}
