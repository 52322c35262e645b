//! Rings between processes: every frame arrives in order with its checksum
//! holding, a killed writer leaves every committed frame and nothing torn,
//! corrupt ring files give clear errors (C09), and a reader polling a
//! filling ring never sees a length before its payload (C10).
//!
//! The tests that need a second process run this test binary again with
//! `CORELANE_IPC_CHILD` naming the child's role; the child runs only the
//! ignored test `child_process_role`.

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use corelane::frame::{FrameError, FrameMeta, Message};
use corelane::lane::frames::{head_offset, tail_offset, ClaimError, RingError, WriteError};
use corelane::segment::ipc::{IpcError, IpcFrame, IpcPublisher, IpcSubscriber, WriterGone};
use corelane::segment::layout::{CAPACITY_OFFSET, HEADER_PAGE};
use corelane::segment::{SegmentError, SEGMENT_MODE};
use rkyv::ser::allocator::Arena;

/// Longest any test waits for the other side before failing.
const PATIENCE: Duration = Duration::from_secs(60);
/// Message type of the raw (claim and commit) frames.
const RAW_TYPE: u16 = 0x1d;

#[derive(rkyv::Archive, rkyv::Serialize)]
struct Tick {
    sequence: u64,
    body: Vec<u8>,
}

impl Message for Tick {
    const TYPE_ID: u16 = 0x1c;
    const VERSION: u8 = 1;
    const NAME: &'static str = "Tick";
}

/// Payload length of frame `sequence`: 1 to 300 bytes, so frames land at
/// every offset and wrap in every way.
fn body_len(sequence: u64) -> usize {
    1 + ((sequence.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) % 300) as usize
}

fn body_byte(sequence: u64, index: usize) -> u8 {
    (sequence as u8).wrapping_add(index as u8).wrapping_mul(31)
}

fn body(sequence: u64) -> Vec<u8> {
    (0..body_len(sequence))
        .map(|i| body_byte(sequence, i))
        .collect()
}

/// Writes frame `sequence`, checksummed: odd ones as raw bytes through a
/// claim, even ones as a `Tick` message. `Ok(false)` when the ring is full.
fn publish(publisher: &mut IpcPublisher, arena: &mut Arena, sequence: u64) -> bool {
    if sequence % 2 == 1 {
        let len = body_len(sequence);
        match publisher.claim(len) {
            Ok(mut claim) => {
                for (index, byte) in claim.payload_mut().iter_mut().enumerate() {
                    *byte = body_byte(sequence, index);
                }
                let meta = FrameMeta {
                    msg_type: RAW_TYPE,
                    version: 1,
                    sequence,
                    ..FrameMeta::default()
                };
                claim.commit_checksummed(len, meta);
                true
            }
            Err(ClaimError::Full) => false,
            Err(error) => panic!("frame {sequence}: {error}"),
        }
    } else {
        let tick = Tick {
            sequence,
            body: body(sequence),
        };
        match publisher.write_message_checksummed(&tick, sequence, arena) {
            Ok(()) => true,
            Err(WriteError::Claim(ClaimError::Full)) => false,
            Err(error) => panic!("frame {sequence}: {error}"),
        }
    }
}

/// Checks that `frame` is frame `expected`, whole.
fn check(frame: &IpcFrame<'_>, expected: u64) {
    assert_eq!(frame.meta.flags & 1, 1, "frame {expected} not checksummed");
    if frame.meta.msg_type == RAW_TYPE {
        assert_eq!(frame.meta.sequence, expected, "raw frame out of order");
        assert_eq!(frame.payload(), &body(expected)[..]);
    } else {
        let tick = frame
            .message::<Tick>()
            .unwrap_or_else(|error| panic!("frame {expected}: {error}"));
        assert_eq!(tick.sequence, expected, "message out of order");
        assert_eq!(&tick.body[..], &body(expected)[..]);
    }
}

/// Reads frames until `count` have arrived, checking each; returns the
/// error that stopped it early, if any.
fn receive(subscriber: &mut IpcSubscriber, count: u64) -> Result<u64, IpcError> {
    let started = Instant::now();
    let mut next = 0;
    while next < count {
        let read = subscriber.drain(64, |frame| {
            check(&frame, next);
            next += 1;
        })?;
        if read == 0 {
            assert!(started.elapsed() < PATIENCE, "stuck at frame {next}");
            std::hint::spin_loop();
        }
    }
    Ok(next)
}

// ---------------------------------------------------------------------------
// The second process

/// A fresh directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("corelane-ipc-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Starts this test binary as a child in `role`, on the ring at `path`.
fn spawn_child(role: &str, path: &Path, frames: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_role",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CORELANE_IPC_CHILD", role)
        .env("CORELANE_IPC_PATH", path)
        .env("CORELANE_IPC_FRAMES", frames.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Reads the child's stdout until a line with `ipc-child: {word}`; returns
/// the line from there.
fn await_line(child: &mut Child, word: &str) -> String {
    let stdout = child.stdout.as_mut().unwrap();
    let mut reader = BufReader::new(stdout);
    let wanted = format!("ipc-child: {word}");
    let mut line = String::new();
    loop {
        line.clear();
        let read = reader.read_line(&mut line).unwrap();
        assert!(read > 0, "child closed its output before '{wanted}'");
        // libtest may have printed the test's name on the same line.
        if let Some(start) = line.find(&wanted) {
            return line[start..].trim_end().to_owned();
        }
    }
}

/// Waits for the ring at `path` to appear and opens it.
fn open_when_ready(path: &Path) -> IpcSubscriber {
    let started = Instant::now();
    loop {
        match IpcSubscriber::open(path) {
            Ok(subscriber) => return subscriber,
            Err(IpcError::Segment(SegmentError::Io { .. })) if started.elapsed() < PATIENCE => {
                thread::sleep(Duration::from_millis(2));
            }
            Err(error) => panic!("{error}"),
        }
    }
}

#[test]
#[ignore = "runs only as the child process of the other tests"]
fn child_process_role() {
    let role = std::env::var("CORELANE_IPC_CHILD").expect("run only as a child process");
    let path = PathBuf::from(std::env::var("CORELANE_IPC_PATH").unwrap());
    let frames: u64 = std::env::var("CORELANE_IPC_FRAMES")
        .unwrap()
        .parse()
        .unwrap();
    let mut arena = Arena::new();
    match role.as_str() {
        // Reads `frames` frames and reports them.
        "subscriber" => {
            let mut subscriber = open_when_ready(&path);
            let received = receive(&mut subscriber, frames).unwrap();
            println!("ipc-child: received {received}");
        }
        // Writes frames until killed.
        "publisher" => {
            let mut publisher = IpcPublisher::create(&path, 1 << 14).unwrap();
            let mut sequence = 0;
            loop {
                if publish(&mut publisher, &mut arena, sequence) {
                    sequence += 1;
                } else {
                    std::hint::spin_loop();
                }
            }
        }
        // Writes `frames` frames, then claims one more, writes half of it,
        // says so and waits to be killed.
        "half-writer" => {
            let mut publisher = IpcPublisher::create(&path, 1 << 14).unwrap();
            for sequence in 0..frames {
                assert!(publish(&mut publisher, &mut arena, sequence));
            }
            let mut claim = publisher.claim(100).unwrap();
            claim.payload_mut()[..50].fill(0xAB);
            println!("ipc-child: claimed");
            std::io::stdout().flush().unwrap();
            loop {
                thread::sleep(Duration::from_secs(1));
            }
        }
        // Opens the ring and, in the middle of a drain (while handling its
        // third frame), says so and waits to be killed.
        "stalled-subscriber" => {
            let mut subscriber = open_when_ready(&path);
            let mut seen = 0;
            let stall = |_: IpcFrame<'_>| {
                seen += 1;
                if seen == 3 {
                    println!("ipc-child: reading");
                    std::io::stdout().flush().unwrap();
                    loop {
                        thread::sleep(Duration::from_secs(1));
                    }
                }
            };
            subscriber.drain(64, stall).unwrap();
            panic!("the drain stops at its third frame, {frames} frames published");
        }
        other => panic!("unknown child role {other}"),
    }
}

#[test]
fn a_subscriber_in_another_process_receives_every_frame_in_order() {
    let dir = Scratch::new("order");
    let path = dir.path("ring");
    let frames = 60_000;
    // A small ring, so that the writer keeps meeting the reader.
    let mut publisher = IpcPublisher::create(&path, 1 << 14).unwrap();
    let mut child = spawn_child("subscriber", &path, frames);
    let mut arena = Arena::new();
    let started = Instant::now();
    let mut sequence = 0;
    while sequence < frames {
        if publish(&mut publisher, &mut arena, sequence) {
            sequence += 1;
        } else {
            assert!(started.elapsed() < PATIENCE, "reader stuck at {sequence}");
            std::hint::spin_loop();
        }
    }
    assert_eq!(
        await_line(&mut child, "received"),
        format!("ipc-child: received {frames}")
    );
    assert!(child.wait().unwrap().success());
    assert_eq!(publisher.committed(), frames);
}

#[test]
fn a_killed_writer_leaves_every_committed_frame_then_writer_gone() {
    let dir = Scratch::new("kill");
    let path = dir.path("ring");
    let mut child = spawn_child("publisher", &path, 0);
    let mut subscriber = open_when_ready(&path);
    assert!(subscriber.writer_alive().unwrap());
    assert_eq!(subscriber.header().writer_pid, child.id());

    // Kill it mid-stream: it writes as fast as it can.
    let before = receive(&mut subscriber, 5_000).unwrap();
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert!(!subscriber.writer_alive().unwrap());

    subscriber.set_probe_every(1);
    let mut next = before;
    let gone = loop {
        match subscriber.drain(64, |frame| {
            check(&frame, next);
            next += 1;
        }) {
            Ok(_) => {}
            Err(IpcError::WriterGone(gone)) => break gone,
            Err(error) => panic!("after frame {next}: {error}"),
        }
    };
    assert_eq!(gone.frames, next);
    assert_eq!(gone.position, subscriber.position());
    assert!(next >= before);
    // The report stays.
    assert!(matches!(
        subscriber.drain(1, |_| panic!("nothing after the writer went")),
        Err(IpcError::WriterGone(again)) if again == gone
    ));
}

#[test]
fn a_frame_half_written_by_a_killed_writer_is_reported_never_returned() {
    let dir = Scratch::new("half");
    let path = dir.path("ring");
    let mut child = spawn_child("half-writer", &path, 30);
    await_line(&mut child, "claimed");
    let mut subscriber = IpcSubscriber::open(&path).unwrap();
    subscriber.set_probe_every(1);
    // Alive: the 30 frames, then nothing (not WriterGone) while it lives.
    assert_eq!(receive(&mut subscriber, 30).unwrap(), 30);
    assert_eq!(subscriber.drain(8, |_| panic!("half a frame")).unwrap(), 0);
    child.kill().unwrap();
    child.wait().unwrap();
    let error = subscriber.drain(8, |_| panic!("half a frame")).unwrap_err();
    let IpcError::WriterGone(gone) = error else {
        panic!("{error}");
    };
    assert_eq!(
        gone,
        WriterGone {
            position: subscriber.position(),
            frames: 30,
            half_written: true
        }
    );
}

/// A subscriber process killed in the middle of a drain (say, in its
/// handler) has not released the frames it was reading: a subscriber that
/// opens the ring after it reads them all again, and the writer's later
/// frames after them. Before, the drain zeroed each frame as it went and
/// released them all at its end, so the kill left zeroes at the stored
/// `head`: the next subscriber took them for "nothing published yet" and
/// waited forever, and the writer, its ring never drained, as long.
#[test]
fn a_subscriber_killed_mid_drain_leaves_its_frames_to_the_next() {
    let dir = Scratch::new("stalled");
    let path = dir.path("ring");
    let mut publisher = IpcPublisher::create(&path, 1 << 14).unwrap();
    let mut arena = Arena::new();
    for sequence in 0..10 {
        assert!(publish(&mut publisher, &mut arena, sequence));
    }
    let mut child = spawn_child("stalled-subscriber", &path, 10);
    await_line(&mut child, "reading");
    child.kill().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));

    // The writer goes on, then goes: what the next subscriber reads is
    // then fixed, and it ends with `WriterGone` rather than waiting.
    for sequence in 10..15 {
        assert!(publish(&mut publisher, &mut arena, sequence));
    }
    drop(publisher);
    let mut next = IpcSubscriber::open(&path).unwrap();
    assert_eq!(next.position(), 0, "the killed drain released nothing");
    next.set_probe_every(1);
    let mut sequence = 0;
    let gone = loop {
        match next.drain(64, |frame| {
            check(&frame, sequence);
            sequence += 1;
        }) {
            Ok(_) => {}
            Err(IpcError::WriterGone(gone)) => break gone,
            Err(error) => panic!("after frame {sequence}: {error}"),
        }
    };
    assert_eq!((gone.frames, gone.half_written), (15, false));
}

// ---------------------------------------------------------------------------
// Files

#[test]
fn ring_files_are_owner_only_and_others_are_refused() {
    let dir = Scratch::new("mode");
    let path = dir.path("ring");
    let publisher = IpcPublisher::create(&path, 4096).unwrap();
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        SEGMENT_MODE
    );
    drop(publisher);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
    assert!(matches!(
        IpcSubscriber::open(&path),
        Err(IpcError::Segment(SegmentError::Permissions {
            mode: 0o666,
            ..
        }))
    ));
}

#[test]
fn capacities_must_be_powers_of_two() {
    let dir = Scratch::new("capacity");
    for capacity in [0, 64, 96, 4000, 3 * 1024] {
        assert!(matches!(
            IpcPublisher::create(&dir.path("ring"), capacity),
            Err(IpcError::Ring(RingError::BadCapacity(c))) if c == capacity
        ));
    }
    assert!(!dir.path("ring").exists());
}

#[test]
fn a_live_ring_is_never_replaced_and_a_dead_one_is() {
    let dir = Scratch::new("replace");
    let path = dir.path("ring");
    let mut arena = Arena::new();
    let mut first = IpcPublisher::create(&path, 4096).unwrap();
    assert!(publish(&mut first, &mut arena, 0));
    assert!(matches!(
        IpcPublisher::create(&path, 4096),
        Err(IpcError::Segment(SegmentError::Exists { .. }))
    ));
    assert!(matches!(
        IpcPublisher::replace_dead(&path, 4096),
        Err(IpcError::WriterAlive { .. })
    ));
    let mut old = IpcSubscriber::open(&path).unwrap();
    old.set_probe_every(1);
    assert!(matches!(
        IpcSubscriber::open(&path),
        Err(IpcError::SubscriberAttached { .. })
    ));

    drop(first);
    let mut second = IpcPublisher::replace_dead(&path, 8192).unwrap();
    assert!(publish(&mut second, &mut arena, 0));
    assert!(publish(&mut second, &mut arena, 1));
    // The old subscriber reads the old ring out, then learns it is over.
    assert_eq!(receive(&mut old, 1).unwrap(), 1);
    assert!(matches!(
        old.drain(8, |_| ()),
        Err(IpcError::WriterGone(WriterGone {
            frames: 1,
            half_written: false,
            ..
        }))
    ));
    let mut new = IpcSubscriber::open(&path).unwrap();
    assert_eq!(new.header().capacity, 8192);
    assert_eq!(receive(&mut new, 2).unwrap(), 2);
}

/// Makes a ring with a few frames and no live writer; returns its path.
fn dead_ring(dir: &Scratch, frames: u64) -> PathBuf {
    let path = dir.path("ring");
    let _ = fs::remove_file(&path);
    let mut publisher = IpcPublisher::create(&path, 4096).unwrap();
    let mut arena = Arena::new();
    for sequence in 0..frames {
        assert!(publish(&mut publisher, &mut arena, sequence));
    }
    path
}

fn poke(path: &Path, offset: usize, bytes: &[u8]) {
    let mut file = OpenOptions::new().write(true).open(path).unwrap();
    file.seek(SeekFrom::Start(offset as u64)).unwrap();
    file.write_all(bytes).unwrap();
}

/// Reads the ring until it errors; panics if it never does.
fn read_until_error(path: &Path) -> IpcError {
    let mut subscriber = match IpcSubscriber::open(path) {
        Ok(subscriber) => subscriber,
        Err(error) => return error,
    };
    subscriber.set_probe_every(1);
    for _ in 0..10_000 {
        if let Err(error) = subscriber.drain(64, |frame| {
            let _ = frame.message::<Tick>();
        }) {
            return error;
        }
    }
    panic!("a dead ring never reported an end");
}

#[test]
fn corrupt_ring_files_give_clear_errors() {
    let dir = Scratch::new("corrupt");
    let frames_at = HEADER_PAGE;
    let trailer = HEADER_PAGE + 4096;

    // Lengths that are negative, huge, too short or run past the end.
    for length in [-5i32, i32::MIN, i32::MAX, 4097, 3, 0x10_0000] {
        let path = dead_ring(&dir, 2);
        poke(&path, frames_at, &length.to_le_bytes());
        let error = read_until_error(&path);
        assert!(
            matches!(error, IpcError::Ring(RingError::Corrupt { position: 0, length: l }) if l == length),
            "{length}: {error}"
        );
        assert!(error.to_string().contains("corrupt frame at position 0"));
    }

    // A flipped payload byte: the checksum catches it.
    let path = dead_ring(&dir, 2);
    poke(&path, frames_at + 40, &[0x5A]);
    let error = read_until_error(&path);
    assert!(
        matches!(
            error,
            IpcError::Frame {
                position: 0,
                error: FrameError::Checksum { .. }
            }
        ),
        "{error}"
    );

    // Positions beyond the ring, or not on a frame boundary.
    for (head, tail) in [
        (0u64, 1 << 20),
        (8192, 0),
        (7, 7),
        (u64::MAX - 31, u64::MAX - 31),
    ] {
        let path = dead_ring(&dir, 0);
        poke(&path, trailer + head_offset(0), &head.to_le_bytes());
        poke(&path, trailer + tail_offset(0), &tail.to_le_bytes());
        let error = read_until_error(&path);
        assert!(
            matches!(error, IpcError::Positions { head: h, tail: t, capacity: 4096 } if (h, t) == (head, tail)),
            "{head}/{tail}: {error}"
        );
    }

    // A capacity that does not match the file's length.
    let path = dead_ring(&dir, 0);
    poke(&path, CAPACITY_OFFSET, &(1u64 << 40).to_le_bytes());
    assert!(matches!(
        read_until_error(&path),
        IpcError::Segment(SegmentError::SizeMismatch { .. })
    ));

    // Random bytes over the frame area: an error or the end, no panic.
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for round in 0..50 {
        let path = dead_ring(&dir, round % 3);
        let mut noise = vec![0u8; 4096];
        for byte in &mut noise {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *byte = state as u8;
        }
        // Keep some frames plausible: a small length at offset 0 sometimes.
        if round % 2 == 0 {
            noise[..4].copy_from_slice(&(32 + round as i32 * 8).to_le_bytes());
        }
        poke(&path, frames_at, &noise);
        let error = read_until_error(&path);
        assert!(
            matches!(
                error,
                IpcError::Ring(RingError::Corrupt { .. })
                    | IpcError::Frame { .. }
                    | IpcError::WriterGone(_)
            ),
            "round {round}: {error}"
        );
    }
}

// ---------------------------------------------------------------------------
// C10

#[test]
fn a_reader_polling_a_filling_ring_sees_every_checksum_hold() {
    let dir = Scratch::new("c10");
    let path = dir.path("ring");
    let frames = 100_000;
    // Two mappings of one file, one per thread, as two processes have.
    let mut publisher = IpcPublisher::create(&path, 4096).unwrap();
    let mut subscriber = IpcSubscriber::open(&path).unwrap();
    let reader = thread::spawn(move || receive(&mut subscriber, frames).unwrap());
    let mut arena = Arena::new();
    let started = Instant::now();
    let mut sequence = 0;
    while sequence < frames {
        if publish(&mut publisher, &mut arena, sequence) {
            sequence += 1;
        } else {
            assert!(started.elapsed() < PATIENCE, "reader stuck at {sequence}");
            std::hint::spin_loop();
        }
    }
    assert_eq!(reader.join().unwrap(), frames);
}
