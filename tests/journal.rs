//! The journal: crash recovery, checksums, rolls, tailing a live writer,
//! bad segment files (C09), permissions, and `serve --journal` end to end.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use corelane::frame::layout::{FrameMeta, PAYLOAD_OFFSET};
use corelane::segment::journal::dir::{list_segments, segment_path, LOCK_FILE};
use corelane::segment::journal::writer::MAX_SEGMENT_SIZE;
use corelane::segment::journal::{
    inspect, Damage, Durability, JournalConfig, JournalError, JournalReader, JournalWriter, Start,
};
use corelane::segment::layout::{HEADER_PAGE, INITIALISED_OFFSET};
use corelane::segment::{Segment, SegmentError, SegmentKind, SEGMENT_MODE};
use corelane::serve::Published;

mod common;
use common::Scratch;

/// Env var that turns this test binary into the writer child process.
const CHILD_DIR: &str = "CORELANE_JOURNAL_CHILD_DIR";

fn meta(i: u64) -> FrameMeta {
    FrameMeta {
        msg_type: 77,
        version: 1,
        timestamp_ns: i,
        ..FrameMeta::default()
    }
}

/// The payload of frame `i`: its number, then a length that varies.
fn payload(i: u64) -> Vec<u8> {
    let mut bytes = i.to_le_bytes().to_vec();
    bytes.extend((0..(i * 7) % 300).map(|k| (k as u8) ^ (i as u8)));
    bytes
}

fn config(segment_size: usize) -> JournalConfig {
    JournalConfig {
        segment_size,
        durability: Durability::None,
    }
}

/// Reads every frame there is now, checking each is frame `i` in order.
fn read_all(dir: &Path) -> Result<Vec<u64>, JournalError> {
    let mut reader = JournalReader::open(dir, Start::Beginning)?;
    let mut positions = Vec::new();
    while let Some(frame) = reader.next_frame()? {
        let i = positions.len() as u64;
        assert_eq!(frame.meta.timestamp_ns, i, "frame {i} out of order");
        assert_eq!(frame.payload, payload(i), "frame {i} payload");
        positions.push(frame.position);
    }
    Ok(positions)
}

fn append_frames(writer: &mut JournalWriter, range: std::ops::Range<u64>) -> Vec<u64> {
    range
        .map(|i| writer.append(&payload(i), meta(i)).unwrap())
        .collect()
}

/// Opens a journal of 4 KiB segments in `dir` and appends frames until one
/// lands in the second segment (at 4096, the first frame there); returns
/// every position, that one last.
fn fill_first_segment(dir: &Path) -> Vec<u64> {
    let mut writer = JournalWriter::open(dir, config(4096)).unwrap();
    let mut positions = Vec::new();
    let mut i = 0;
    while positions.last() < Some(&4096) {
        positions.extend(append_frames(&mut writer, i..i + 1));
        i += 1;
    }
    positions
}

#[test]
fn frames_round_trip_across_rolls_with_contiguous_positions() {
    let dir = Scratch::new("roundtrip");
    let mut writer = JournalWriter::open(&dir.0, config(4096)).unwrap();
    let positions = append_frames(&mut writer, 0..500);
    assert!(list_segments(&dir.0).unwrap().len() > 10, "rolled");
    assert_eq!(read_all(&dir.0).unwrap(), positions);
    // Every segment starts where the previous one ends.
    let bases: Vec<u64> = list_segments(&dir.0).unwrap().iter().map(|s| s.0).collect();
    for pair in bases.windows(2) {
        assert_eq!(pair[1] - pair[0], 4096);
    }
    // A reader can start at any frame's position.
    let mut reader = JournalReader::open(&dir.0, Start::Position(positions[321])).unwrap();
    let frame = reader.next_frame().unwrap().unwrap();
    assert_eq!(
        (frame.position, frame.meta.timestamp_ns),
        (positions[321], 321)
    );
    // Not between frames.
    let error = JournalReader::open(&dir.0, Start::Position(positions[321] + 32)).unwrap_err();
    assert!(
        matches!(error, JournalError::NotAFrameStart { position, frame: Some(frame) }
            if position == positions[321] + 32 && frame == positions[321]),
        "{error}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "no frame starts at position {}: it is inside the frame at {}",
            positions[321] + 32,
            positions[321]
        )
    );
}

#[test]
fn reopened_writer_resumes_after_the_last_frame() {
    let dir = Scratch::new("resume");
    let mut writer = JournalWriter::open(&dir.0, config(8192)).unwrap();
    let mut positions = append_frames(&mut writer, 0..100);
    drop(writer);
    let mut writer = JournalWriter::open(&dir.0, config(8192)).unwrap();
    assert_eq!(writer.recovery().frames, 100);
    assert_eq!(writer.recovery().torn_tail, None);
    positions.extend(append_frames(&mut writer, 100..200));
    assert_eq!(read_all(&dir.0).unwrap(), positions);
    // One writer at a time.
    let error = JournalWriter::open(&dir.0, config(8192)).unwrap_err();
    assert!(matches!(error, JournalError::Locked { .. }), "{error}");
}

/// The child process: appends frames forever, acknowledging each on stdout
/// once `append` has returned.
#[test]
fn journal_writer_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let mut writer = JournalWriter::open(Path::new(&dir), config(16 << 10)).unwrap();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for i in 0.. {
        let position = writer.append(&payload(i), meta(i)).unwrap();
        writeln!(out, "ack {i} {position}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn sigkilled_writer_loses_no_acknowledged_frame_and_leaves_nothing_torn() {
    let dir = Scratch::new("sigkill");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "journal_writer_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, &dir.0)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = Vec::new();
    while acked.len() < 3000 {
        let line = lines.next().expect("child output").unwrap();
        // libtest's "test journal_writer_child ... " may start the line.
        let Some(at) = line.find("ack ") else {
            continue;
        };
        let mut words = line[at + 4..].split_whitespace();
        let i: u64 = words.next().unwrap().parse().unwrap();
        assert_eq!(i, acked.len() as u64);
        acked.push(words.next().unwrap().parse::<u64>().unwrap());
    }
    // Kill it while it is still appending (it never stops on its own).
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // A reader before recovery sees every acknowledged frame, nothing torn.
    let read = read_all(&dir.0).unwrap();
    assert!(
        read.len() >= acked.len(),
        "{} < {}",
        read.len(),
        acked.len()
    );
    assert_eq!(read[..acked.len()], acked[..]);

    // Recovery keeps them all, and appending resumes after the last one.
    let mut writer = JournalWriter::open(&dir.0, config(16 << 10)).unwrap();
    assert_eq!(writer.recovery().frames, read.len() as u64);
    let next = read.len() as u64;
    let position = writer.append(&payload(next), meta(next)).unwrap();
    drop(writer);
    let after = read_all(&dir.0).unwrap();
    assert_eq!(after.len(), read.len() + 1);
    assert_eq!(*after.last().unwrap(), position);
}

#[test]
fn unpublished_tail_is_cut_and_overwritten_cleanly() {
    let dir = Scratch::new("torn");
    let mut writer = JournalWriter::open(&dir.0, config(1 << 16)).unwrap();
    let positions = append_frames(&mut writer, 0..10);
    let end = writer.position();
    drop(writer);
    // A frame filled in but never published (length still zero), as a
    // writer killed before its length store leaves it.
    let path = segment_path(&dir.0, 0);
    let mut bytes = fs::read(&path).unwrap();
    let at = HEADER_PAGE + end as usize;
    bytes[at + 4..at + 200].fill(0xAB);
    fs::write(&path, &bytes).unwrap();
    assert_eq!(
        read_all(&dir.0).unwrap(),
        positions,
        "reader stops before it"
    );

    let mut writer = JournalWriter::open(&dir.0, config(1 << 16)).unwrap();
    let tail = writer.recovery().torn_tail.clone().expect("a torn tail");
    assert_eq!((tail.position, tail.bytes, tail.damage), (end, 200, None));
    assert_eq!(writer.position(), end);
    let mut all = positions.clone();
    all.extend(append_frames(&mut writer, 10..12));
    assert_eq!(read_all(&dir.0).unwrap(), all);
}

#[test]
fn half_written_last_frame_is_a_torn_tail_not_damage() {
    let dir = Scratch::new("halfpage");
    let mut writer = JournalWriter::open(&dir.0, config(1 << 16)).unwrap();
    let positions = append_frames(&mut writer, 0..5);
    let last = *positions.last().unwrap() as usize;
    drop(writer);
    // The last frame's length reached the disk but not all its payload.
    let path = segment_path(&dir.0, 0);
    let mut bytes = fs::read(&path).unwrap();
    let at = HEADER_PAGE + last + PAYLOAD_OFFSET;
    bytes[at..at + 8].fill(0);
    fs::write(&path, &bytes).unwrap();

    let inspection = inspect(&dir.0).unwrap();
    assert!(inspection.damage.is_none());
    assert_eq!(inspection.frames(), 4);
    let tail = inspection.segments[0].torn_tail.clone().unwrap();
    assert_eq!(tail.position, last as u64);
    assert!(matches!(tail.damage, Some(Damage::Checksum { .. })));

    let writer = JournalWriter::open(&dir.0, config(1 << 16)).unwrap();
    assert_eq!(writer.position(), last as u64);
    drop(writer);
    assert_eq!(read_all(&dir.0).unwrap(), positions[..4]);
}

#[test]
fn flipped_byte_is_caught_by_the_checksum_and_named_by_position() {
    let dir = Scratch::new("flip");
    let mut writer = JournalWriter::open(&dir.0, config(1 << 16)).unwrap();
    let positions = append_frames(&mut writer, 0..10);
    drop(writer);
    let path = segment_path(&dir.0, 0);
    let mut bytes = fs::read(&path).unwrap();
    bytes[HEADER_PAGE + positions[5] as usize + PAYLOAD_OFFSET + 3] ^= 0x10;
    fs::write(&path, &bytes).unwrap();

    // The reader returns the five frames before it, then the damage, again
    // and again: it never skips past it.
    let mut reader = JournalReader::open(&dir.0, Start::Beginning).unwrap();
    for &position in &positions[..5] {
        assert_eq!(reader.next_frame().unwrap().unwrap().position, position);
    }
    for _ in 0..2 {
        match reader.next_frame() {
            Err(JournalError::Damaged {
                position, damage, ..
            }) => {
                assert_eq!(position, positions[5]);
                assert!(matches!(damage, Damage::Checksum { .. }));
            }
            other => panic!("expected damage, got {other:?}"),
        }
    }
    let text = reader.next_frame().unwrap_err().to_string();
    assert!(
        text.contains(&format!("position {}", positions[5])),
        "{text}"
    );

    // Frames follow it, so it is not a torn tail: the writer refuses.
    let error = JournalWriter::open(&dir.0, config(1 << 16)).unwrap_err();
    assert!(
        matches!(error, JournalError::Damaged { position, .. } if position == positions[5]),
        "{error}"
    );
    let inspection = inspect(&dir.0).unwrap();
    assert_eq!(inspection.frames(), 5);
    assert!(inspection.damage.is_some());
}

/// A length word damaged in the middle of a journal (set to the largest
/// length, or to zero) must not pass for a torn tail: the writer would cut
/// the committed frames after it. Found by a new user's test of `serve
/// --journal`.
#[test]
fn a_damaged_length_word_with_frames_after_it_is_damage_not_a_torn_tail() {
    for (name, length) in [("max", i32::MAX), ("zero", 0), ("negative", -1)] {
        let dir = Scratch::new(&format!("length-{name}"));
        let mut writer = JournalWriter::open(&dir.0, config(1 << 16)).unwrap();
        let positions = append_frames(&mut writer, 0..6);
        drop(writer);
        let path = segment_path(&dir.0, 0);
        let mut bytes = fs::read(&path).unwrap();
        let at = HEADER_PAGE + positions[2] as usize;
        bytes[at..at + 4].copy_from_slice(&length.to_le_bytes());
        fs::write(&path, &bytes).unwrap();

        let inspection = inspect(&dir.0).unwrap();
        assert_eq!(inspection.frames(), 2, "{name}");
        assert!(inspection.segments[0].torn_tail.is_none(), "{name}");
        match inspection.damage {
            Some(JournalError::Damaged { position, .. }) => {
                assert_eq!(position, positions[2], "{name}")
            }
            other => panic!("{name}: expected damage, got {other:?}"),
        }
        let error = JournalWriter::open(&dir.0, config(1 << 16)).unwrap_err();
        assert!(
            matches!(error, JournalError::Damaged { position, .. } if position == positions[2]),
            "{name}: {error}"
        );
        // Nothing was cut: mending the word gives every frame back.
        assert_eq!(fs::read(&path).unwrap(), bytes, "{name}");
    }
}

#[test]
fn tail_reader_follows_a_live_writer_across_rolls() {
    let dir = Scratch::new("follow");
    const FRAMES: u64 = 20_000;
    let mut writer = JournalWriter::open(&dir.0, config(8192)).unwrap();
    let mut reader = JournalReader::open(&dir.0, Start::Beginning).unwrap();
    let producer = std::thread::spawn(move || {
        for i in 0..FRAMES {
            writer.append(&payload(i), meta(i)).unwrap();
            if i % 64 == 0 {
                std::thread::yield_now();
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut next = 0;
    let mut empty_polls = 0u64;
    while next < FRAMES {
        match reader.next_frame().unwrap() {
            Some(frame) => {
                assert_eq!(frame.meta.timestamp_ns, next);
                assert_eq!(frame.payload, payload(next));
                next += 1;
            }
            None => {
                empty_polls += 1;
                assert!(Instant::now() < deadline, "stuck at frame {next}");
                std::thread::yield_now();
            }
        }
    }
    producer.join().unwrap();
    assert!(reader.next_frame().unwrap().is_none());
    assert!(list_segments(&dir.0).unwrap().len() > 100, "many rolls");
    eprintln!("reader polled an empty journal {empty_polls} times");
}

#[test]
fn typed_messages_are_validated_on_read() {
    let dir = Scratch::new("typed");
    let mut writer = JournalWriter::open(&dir.0, config(4096)).unwrap();
    let mut positions = Vec::new();
    for i in 0..200u64 {
        let msg = Published {
            channel: format!("chan-{}", i % 3).into_bytes(),
            payload: vec![i as u8; (i as usize * 13) % 900],
            time_ns: i,
        };
        positions.push(writer.append_message(&msg, i).unwrap());
    }
    // Too large for any segment: refused, nothing written.
    let huge = Published {
        channel: b"big".to_vec(),
        payload: vec![0; 8192],
        time_ns: 0,
    };
    let error = writer.append_message(&huge, 0).unwrap_err();
    assert!(
        matches!(error, JournalError::FrameTooLarge { .. }),
        "{error}"
    );
    drop(writer);

    let mut reader = JournalReader::open(&dir.0, Start::Beginning).unwrap();
    for (i, &position) in positions.iter().enumerate() {
        let frame = reader.next_frame().unwrap().unwrap();
        assert_eq!(frame.position, position);
        let msg = frame.message::<Published>().unwrap();
        assert_eq!(msg.channel.as_slice(), format!("chan-{}", i % 3).as_bytes());
        assert_eq!(msg.payload.len(), (i * 13) % 900);
        assert_eq!(msg.time_ns, i as u64);
    }
    assert!(reader.next_frame().unwrap().is_none());
}

#[test]
fn wrong_message_type_is_a_clear_error() {
    let dir = Scratch::new("wrongtype");
    let mut writer = JournalWriter::open(&dir.0, config(4096)).unwrap();
    writer.append(b"not an archive", meta(0)).unwrap();
    drop(writer);
    let mut reader = JournalReader::open(&dir.0, Start::Beginning).unwrap();
    let frame = reader.next_frame().unwrap().unwrap();
    let error = frame.message::<Published>().unwrap_err();
    assert!(error.to_string().contains("type id 77"), "{error}");
}

#[test]
fn bad_segment_files_give_clear_errors() {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut random = vec![0u8; HEADER_PAGE + 8192 + 256];
    for byte in random.iter_mut() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *byte = state as u8;
    }
    let mut short = Vec::new();
    {
        let dir = Scratch::new("good");
        let mut writer = JournalWriter::open(&dir.0, config(8192)).unwrap();
        append_frames(&mut writer, 0..1);
        drop(writer);
        let good = fs::read(segment_path(&dir.0, 0)).unwrap();
        short.extend_from_slice(&good[..good.len() - 100]);
    }
    type Expected = fn(&SegmentError) -> bool;
    let cases: [(&str, &[u8], Expected); 3] = [
        ("empty", &[], |e| {
            matches!(e, SegmentError::TooShort { len: 0, .. })
        }),
        ("short", &short, |e| {
            matches!(e, SegmentError::SizeMismatch { .. })
        }),
        ("random", &random, |e| {
            matches!(e, SegmentError::BadMagic { .. })
        }),
    ];
    for (name, bytes, expected) in cases {
        let dir = Scratch::new(name);
        let path = segment_path(&dir.0, 0);
        fs::write(&path, bytes).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let check = |error: JournalError| match &error {
            JournalError::Segment(inner) => {
                assert!(expected(inner), "{name}: {error}");
                assert!(error.to_string().contains(&*path.to_string_lossy()));
            }
            other => panic!("{name}: {other}"),
        };
        let mut reader = JournalReader::open(&dir.0, Start::Beginning).unwrap();
        check(reader.next_frame().unwrap_err());
        check(inspect(&dir.0).unwrap().damage.unwrap());
        if name == "empty" {
            // It holds no frame, but a segment cut to nothing may have held
            // acknowledged ones: the writer's recovery leaves it and starts
            // past every position it could have held (its header, so its
            // size, is gone: past the largest segment a writer makes).
            let writer = JournalWriter::open(&dir.0, config(8192)).unwrap();
            assert_eq!(writer.recovery().cut_short, std::slice::from_ref(&path));
            assert!(writer.recovery().removed.is_empty());
            assert_eq!(writer.position(), MAX_SEGMENT_SIZE as u64);
            assert!(fs::read(&path).unwrap().is_empty());
            continue;
        }
        if name == "short" {
            // Cut short with its frame still in it (truncated after it was
            // written): the writer leaves it as it is and resumes where its
            // positions end, so none is used twice.
            let writer = JournalWriter::open(&dir.0, config(8192)).unwrap();
            assert_eq!(writer.recovery().cut_short, std::slice::from_ref(&path));
            assert_eq!(writer.position(), 8192);
        } else {
            check(JournalWriter::open(&dir.0, config(8192)).unwrap_err());
        }
        assert_eq!(fs::read(&path).unwrap(), bytes, "{name}: left untouched");
    }
}

#[test]
fn journal_files_are_owner_only() {
    let dir = Scratch::new("mode");
    let mut writer = JournalWriter::open(&dir.0, config(4096)).unwrap();
    append_frames(&mut writer, 0..100);
    let segments = list_segments(&dir.0).unwrap();
    assert!(segments.len() > 2);
    for (_, path) in &segments {
        let mode = fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, SEGMENT_MODE, "{}", path.display());
    }
    let lock = fs::metadata(dir.0.join(LOCK_FILE)).unwrap();
    assert_eq!(lock.permissions().mode() & 0o777, 0o600);
}

#[test]
fn every_durability_policy_keeps_every_frame() {
    for durability in [
        Durability::None,
        Durability::EachFrame,
        Durability::EveryFrames(7),
        Durability::Every(Duration::from_millis(1)),
    ] {
        let dir = Scratch::new("durability");
        let mut writer = JournalWriter::open(
            &dir.0,
            JournalConfig {
                segment_size: 4096,
                durability,
            },
        )
        .unwrap();
        let positions = append_frames(&mut writer, 0..60);
        writer.sync().unwrap();
        drop(writer);
        assert_eq!(read_all(&dir.0).unwrap(), positions, "{durability:?}");
    }
}

/// Reads one reply line (without its CRLF) a byte at a time, reading again
/// when a read is interrupted.
fn read_line_past_interrupts(stream: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => line.push(byte[0]),
            Ok(_) => panic!("the server closed mid-reply: {line:?}"),
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => panic!("read a reply: {error}"),
        }
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).unwrap()
}

#[test]
fn serve_journal_records_every_publish_per_core_in_order() {
    use corelane::serve::journal::core_dir;
    use corelane::serve::{Server, ServerConfig};
    use std::net::SocketAddr;

    let dir = Scratch::new("serve");
    let server = Server::start(ServerConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        cores: Some(2),
        journal: Some(dir.0.clone()),
        journal_config: JournalConfig {
            segment_size: 1 << 20,
            durability: Durability::default(),
        },
        ..ServerConfig::default()
    })
    .unwrap();
    // Plain sockets, whose reads go on past an interrupted system call
    // (a client library's read gave up on one here, twice in many runs).
    let mut publishers: Vec<std::net::TcpStream> = (0..2)
        .map(|_| {
            let stream = std::net::TcpStream::connect(server.local_addr()).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            stream
        })
        .collect();
    for i in 0..50 {
        for (p, stream) in publishers.iter_mut().enumerate() {
            let channel = format!("chan-{p}");
            let payload = format!("msg-{p}-{i}\n\0");
            let mut command = format!(
                "*3\r\n$7\r\nPUBLISH\r\n${}\r\n{channel}\r\n${}\r\n",
                channel.len(),
                payload.len()
            )
            .into_bytes();
            command.extend_from_slice(payload.as_bytes());
            command.extend_from_slice(b"\r\n");
            stream.write_all(&command).unwrap();
            let reply = read_line_past_interrupts(stream);
            assert!(reply.starts_with(':'), "PUBLISH answered {reply:?}");
        }
    }
    drop(publishers);
    let report = server.shutdown().unwrap();
    assert!(report.adds_up(), "{report}");

    // Each publisher's messages are all in one core's journal, in order.
    let mut seen = [Vec::new(), Vec::new()];
    for core in 0..2 {
        let mut reader = JournalReader::open(&core_dir(&dir.0, core), Start::Beginning).unwrap();
        let mut last_time = 0;
        while let Some(frame) = reader.next_frame().unwrap() {
            let msg = frame.message::<Published>().unwrap();
            let channel = std::str::from_utf8(&msg.channel).unwrap();
            let p: usize = channel.strip_prefix("chan-").unwrap().parse().unwrap();
            seen[p].push((core, msg.payload.to_vec()));
            assert!(msg.time_ns.to_native() >= last_time, "time goes forward");
            last_time = msg.time_ns.to_native();
        }
    }
    for (p, messages) in seen.iter().enumerate() {
        let expected: Vec<Vec<u8>> = (0..50)
            .map(|i| format!("msg-{p}-{i}\n\0").into_bytes())
            .collect();
        let payloads: Vec<Vec<u8>> = messages.iter().map(|(_, m)| m.clone()).collect();
        assert_eq!(payloads, expected, "publisher {p}");
        assert!(messages.iter().all(|(core, _)| *core == messages[0].0));
    }
    assert_ne!(
        seen[0][0].0, seen[1][0].0,
        "connections were dealt to both cores"
    );

    // The command line reads the same journals.
    let corelane = env!("CARGO_BIN_EXE_corelane");
    let inspect = Command::new(corelane)
        .args(["journal", "inspect"])
        .arg(&dir.0)
        .output()
        .unwrap();
    let text = String::from_utf8(inspect.stdout).unwrap();
    assert!(inspect.status.success(), "{text}");
    assert_eq!(text.matches(" 50 frames,").count(), 2, "{text}");
    assert_eq!(text.matches("no damage").count(), 2, "{text}");
    let tail = Command::new(corelane)
        .args(["journal", "tail"])
        .arg(&dir.0)
        .output()
        .unwrap();
    let text = String::from_utf8(tail.stdout).unwrap();
    assert!(tail.status.success(), "{text}");
    assert_eq!(text.lines().count(), 100, "{text}");
    let line = text
        .lines()
        .find(|l| l.contains(" chan-1 msg-1-7\\n\\x00"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.starts_with("core-"), "{line}");
    assert!(
        line.contains("Z chan-1"),
        "time printed before the channel: {line}"
    );
}

#[test]
fn journal_inspect_reports_damage_with_a_failing_status() {
    let dir = Scratch::new("cli-damage");
    let mut writer = JournalWriter::open(&dir.0, config(1 << 16)).unwrap();
    let positions = append_frames(&mut writer, 0..10);
    drop(writer);
    let path = segment_path(&dir.0, 0);
    let mut bytes = fs::read(&path).unwrap();
    bytes[HEADER_PAGE + positions[2] as usize + PAYLOAD_OFFSET] ^= 1;
    fs::write(&path, &bytes).unwrap();
    let output = journal_command("inspect", &dir.0);
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(!output.status.success(), "{text}");
    assert!(text.contains(" 2 frames,"), "{text}");
    assert!(
        text.contains(&format!(
            "DAMAGE: {}: damaged frame at position {}",
            path.display(),
            positions[2]
        )),
        "{text}"
    );
    // The damaged segment is named as such, with where its valid frames
    // end, not as a segment open for appends.
    assert!(
        text.contains(&format!(
            "last {}  damaged, valid to {} bytes\n",
            positions[1], positions[2]
        )),
        "{text}"
    );
    assert!(!text.contains("open,"), "{text}");
    // Not cut short: the writer refuses it, and nothing says otherwise.
    assert!(!text.contains("cut short"), "{text}");
}

/// `journal inspect` of a journal whose only segment was cut short (here
/// to its header page) reports that damage, not "no journal segments
/// here", which would send its reader looking for a mistyped path.
#[test]
fn journal_inspect_reports_a_first_segment_cut_short_as_damage() {
    let dir = Scratch::new("cli-cut-first");
    let mut writer = JournalWriter::open(&dir.0, config(1 << 16)).unwrap();
    append_frames(&mut writer, 0..3);
    drop(writer);
    let path = segment_path(&dir.0, 0);
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(HEADER_PAGE as u64)
        .unwrap();
    let output = journal_command("inspect", &dir.0);
    let text = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{text}{stderr}");
    assert!(!stderr.contains("no journal segments here"), "{stderr}");
    assert!(text.contains(": 0 segments, 0 frames,"), "{text}");
    assert!(
        text.contains(&format!(
            "DAMAGE: {}: {HEADER_PAGE} bytes is too short for a segment",
            path.display()
        )),
        "{text}"
    );
    assert!(text.contains(CUT_SHORT_LINE), "{text}");
}

/// A journal path that is not there is named as such by both commands,
/// not as a failed step with the operating system's words.
#[test]
fn a_journal_path_that_is_not_there_is_named_plainly() {
    let dir = Scratch::new("not-there");
    let missing = dir.0.join("jounral");
    for command in ["inspect", "tail"] {
        let output = journal_command(command, &missing);
        assert_eq!(output.status.code(), Some(1), "{command}");
        let error = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            error.lines().next(),
            Some(&*format!(
                "corelane journal: {}: no such directory (give the directory passed to \
                 `serve --journal`, or one of its core-N directories)",
                missing.display()
            )),
            "{command}: {error}"
        );
    }
}

/// A segment file given where a journal directory goes is named as a file,
/// with its directory to give instead, by both commands: not as the
/// operating system's "Not a directory" from listing it.
#[test]
fn a_segment_file_given_as_the_journal_names_its_directory() {
    let dir = Scratch::new("file-given");
    let mut writer = JournalWriter::open(&dir.0, config(1 << 16)).unwrap();
    append_frames(&mut writer, 0..1);
    drop(writer);
    let segment = segment_path(&dir.0, 0);
    for command in ["inspect", "tail"] {
        let output = journal_command(command, &segment);
        assert_eq!(output.status.code(), Some(1), "{command}");
        assert!(output.stdout.is_empty(), "{command}");
        let error = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            error.lines().next(),
            Some(&*format!(
                "corelane journal: {}: is a file, not a directory (give the directory that \
                 holds a journal's segments, such as {}, or the directory passed to \
                 `serve --journal`)",
                segment.display(),
                dir.0.display()
            )),
            "{command}: {error}"
        );
    }
}

/// `journal inspect` counts one segment and one frame in the singular.
#[test]
fn journal_inspect_counts_one_segment_and_one_frame_in_the_singular() {
    let dir = Scratch::new("inspect-one");
    let mut writer = JournalWriter::open(&dir.0, config(1 << 16)).unwrap();
    append_frames(&mut writer, 0..1);
    drop(writer);
    let output = journal_command("inspect", &dir.0);
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains(": 1 segment, 1 frame, first position 0, last position 0,"),
        "{text}"
    );
}

/// `journal inspect` of a directory with no journal in it (a mistyped
/// path) fails and says so, rather than reporting a healthy empty journal.
#[test]
fn journal_inspect_of_a_directory_without_a_journal_fails() {
    let dir = Scratch::new("inspect-empty");
    let output = journal_command("inspect", &dir.0);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("no journal segments here"), "{stderr}");
}

/// `journal inspect` of a journal whose first segment cannot be opened
/// (here its header was never marked initialised) names that segment and
/// what is wrong with it, rather than calling the directory empty: the
/// files are there, and the user needs to know which one is bad.
#[test]
fn journal_inspect_names_a_first_segment_it_cannot_open() {
    let dir = Scratch::new("inspect-bad-first");
    let mut writer = JournalWriter::open(&dir.0, config(1 << 12)).unwrap();
    append_frames(&mut writer, 0..100);
    drop(writer);
    assert!(list_segments(&dir.0).unwrap().len() > 1);
    let path = segment_path(&dir.0, 0);
    let mut bytes = fs::read(&path).unwrap();
    bytes[INITIALISED_OFFSET..INITIALISED_OFFSET + 4].fill(0);
    fs::write(&path, &bytes).unwrap();

    let output = journal_command("inspect", &dir.0);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stdout}{stderr}");
    assert!(!stderr.contains("no journal segments here"), "{stderr}");
    assert!(
        stdout.contains(&format!(
            "DAMAGE: {}: header not initialised",
            path.display()
        )),
        "{stdout}{stderr}"
    );
}

/// `journal tail` (without `--follow`) of a directory with no journal in
/// it fails and says so, as `inspect` does, rather than printing nothing
/// and succeeding; with `--follow` it waits for one instead (see
/// tests/journal_follow.rs).
#[test]
fn journal_tail_of_a_directory_without_a_journal_fails() {
    let dir = Scratch::new("tail-empty");
    let output = journal_command("tail", &dir.0);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(output.stdout.is_empty(), "{output:?}");
    assert!(
        stderr.contains(&format!("{}: no journal segments here", dir.0.display())),
        "{stderr}"
    );
}

/// Runs `corelane journal COMMAND DIR`.
fn journal_command(command: &str, dir: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_corelane"))
        .args(["journal", command])
        .arg(dir)
        .output()
        .unwrap()
}

/// A journal of three segments of 4096 bytes in `dir`; returns its frames'
/// positions.
fn three_segments(dir: &Path) -> Vec<u64> {
    let mut writer = JournalWriter::open(dir, config(4096)).unwrap();
    let mut positions = Vec::new();
    let mut i = 0;
    while list_segments(dir).unwrap().len() < 3 || positions.last() < Some(&(2 * 4096 + 512)) {
        positions.extend(append_frames(&mut writer, i..i + 1));
        i += 1;
    }
    positions
}

/// Ways a journal directory can be damaged where a reader moves on or
/// stops, most of which `next_frame` alone took for "nothing more yet".
fn damage_at_the_end(dir: &Path, case: &str, positions: &[u64]) {
    let segments = list_segments(dir).unwrap();
    let last = segments.last().unwrap().0;
    match case {
        "an empty segment file past the end" => {
            fs::File::create(segment_path(dir, last + 16 * 4096)).unwrap();
        }
        "a symlink loop under the next segment's name" => {
            let next = segment_path(dir, last + 4096);
            std::os::unix::fs::symlink(&next, &next).unwrap();
        }
        "an empty segment file between two segments" => {
            fs::File::create(segment_path(dir, 2048)).unwrap();
        }
        "a segment missing between two" => {
            fs::remove_file(segment_path(dir, 4096)).unwrap();
        }
        "a zeroed length word with frames after it" => {
            let path = segment_path(dir, last);
            let at = positions.iter().find(|&&p| p > last).unwrap();
            let mut bytes = fs::read(&path).unwrap();
            let word = HEADER_PAGE + (at - last) as usize;
            bytes[word..word + 4].fill(0);
            fs::write(&path, &bytes).unwrap();
        }
        other => panic!("no case {other}"),
    }
}

/// `journal tail` reports the damage `journal inspect` reports, in the
/// same words and with the same failing status, after printing the frames
/// before it, also where the damage sits where a reader waiting for more
/// would stop: a stray segment file (empty, or a symlink loop), and a
/// zeroed length word with frames after it. It once printed what it could
/// read and exited 0.
#[test]
fn journal_tail_reports_the_damage_inspect_reports() {
    let cases = [
        "an empty segment file past the end",
        "a symlink loop under the next segment's name",
        "an empty segment file between two segments",
        "a segment missing between two",
        "a zeroed length word with frames after it",
    ];
    for case in cases {
        for per_core in [false, true] {
            let dir = Scratch::new("tail-damage");
            // As `serve --journal` lays it out, the damage in core 1.
            let journal = if per_core {
                three_segments(&dir.0.join("core-0"));
                dir.0.join("core-1")
            } else {
                dir.0.clone()
            };
            let positions = three_segments(&journal);
            damage_at_the_end(&journal, case, &positions);

            let inspected = journal_command("inspect", &dir.0);
            let stdout = String::from_utf8_lossy(&inspected.stdout);
            assert_eq!(inspected.status.code(), Some(1), "{case}: {stdout}");
            let damage = stdout
                .lines()
                .find_map(|line| line.trim().strip_prefix("DAMAGE: "))
                .unwrap_or_else(|| panic!("{case}: {stdout}"));
            let frames: usize = stdout
                .lines()
                .filter_map(|line| {
                    // "N segments, M frames ...", or "1 segment, 1 frame".
                    let (_, rest) = line.split_once(" segment")?;
                    rest.trim_start_matches('s').strip_prefix(", ")
                })
                .map(|rest| rest.split(' ').next().unwrap().parse::<usize>().unwrap())
                .sum();

            let tailed = journal_command("tail", &dir.0);
            let stderr = String::from_utf8_lossy(&tailed.stderr);
            assert_eq!(tailed.status.code(), Some(1), "{case}: {stderr}");
            assert!(
                stderr.contains(&format!("corelane journal: {damage}")),
                "{case}, per core {per_core}: inspect said {damage:?}, tail {stderr:?}"
            );
            let printed = String::from_utf8_lossy(&tailed.stdout).lines().count();
            assert_eq!(printed, frames, "{case}, per core {per_core}");
        }
    }
}

/// `JournalReader::check_end` takes a live writer that appended (or
/// rolled) after the reader stopped for the more it is, never for damage:
/// the slot the reader waits at is filled by then.
#[test]
fn check_end_takes_a_live_writer_for_no_damage() {
    let dir = Scratch::new("check-end-live");
    let mut writer = JournalWriter::open(&dir.0, config(4096)).unwrap();
    append_frames(&mut writer, 0..3);
    let mut reader = JournalReader::open(&dir.0, Start::Beginning).unwrap();
    let mut read = 0;
    while reader.next_frame().unwrap().is_some() {
        read += 1;
    }
    assert_eq!(read, 3);
    reader.check_end().unwrap();

    // Frames after the reader's slot, and segments after its own: all
    // written in order by the writer, so the slot is filled too.
    let positions = append_frames(&mut writer, 3..60);
    assert!(list_segments(&dir.0).unwrap().len() > 1);
    reader.check_end().unwrap();
    let mut rest = Vec::new();
    while let Some(frame) = reader.next_frame().unwrap() {
        rest.push(frame.position);
    }
    assert_eq!(rest, positions);
    reader.check_end().unwrap();
}

/// `journal tail` stops at a torn tail as `inspect` judges it: it prints
/// the frames before it, says on stderr what `inspect` says of it, and
/// exits 0, as `inspect` does; a torn tail is no damage (the writer cuts
/// it when it opens). It once reported the torn frame as damage.
#[test]
fn journal_tail_ends_at_a_torn_tail_as_inspect_does() {
    let dir = Scratch::new("tail-torn");
    let mut writer = JournalWriter::open(&dir.0, config(1 << 16)).unwrap();
    let positions = append_frames(&mut writer, 0..5);
    let last = *positions.last().unwrap();
    drop(writer);
    let path = segment_path(&dir.0, 0);
    let mut bytes = fs::read(&path).unwrap();
    let at = HEADER_PAGE + last as usize + PAYLOAD_OFFSET;
    bytes[at..at + 8].fill(0);
    fs::write(&path, &bytes).unwrap();

    let inspected = journal_command("inspect", &dir.0);
    let stdout = String::from_utf8_lossy(&inspected.stdout);
    assert!(inspected.status.success(), "{stdout}");
    let said = format!("torn tail at position {last}: ");
    assert!(stdout.contains(&said), "{stdout}");

    let tailed = journal_command("tail", &dir.0);
    let stderr = String::from_utf8_lossy(&tailed.stderr);
    assert!(tailed.status.success(), "{stderr}");
    assert!(stderr.contains(&said), "{stderr}");
    assert!(stderr.contains("the writer cuts it on open"), "{stderr}");
    let printed: Vec<u64> = String::from_utf8_lossy(&tailed.stdout)
        .lines()
        .map(|line| line.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(printed, positions[..4]);
}

/// `journal tail` of a `serve --journal` directory where one core's
/// directory holds no segment fails as `inspect` does, after printing the
/// other cores' frames.
#[test]
fn journal_tail_of_a_core_without_segments_fails_as_inspect_does() {
    let dir = Scratch::new("tail-empty-core");
    let positions = three_segments(&dir.0.join("core-0"));
    fs::create_dir(dir.0.join("core-1")).unwrap();
    let said = format!(
        "{}: no journal segments here",
        dir.0.join("core-1").display()
    );
    for command in ["inspect", "tail"] {
        let output = journal_command(command, &dir.0);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{command}: {stderr}");
        assert!(stderr.contains(&said), "{command}: {stderr}");
    }
    let output = journal_command("tail", &dir.0);
    let printed = String::from_utf8_lossy(&output.stdout).lines().count();
    assert_eq!(printed, positions.len());
}

/// A journal of one open segment of 4096 bytes holding frames 0..5 (no end
/// marker), as a writer killed before its roll left it; returns their
/// positions, where they end and the path the next segment takes.
fn open_segment_then(dir: &Path) -> (Vec<u64>, u64, std::path::PathBuf) {
    let mut writer = JournalWriter::open(dir, config(4096)).unwrap();
    let positions = append_frames(&mut writer, 0..5);
    let end = writer.position();
    drop(writer);
    (positions, end, segment_path(dir, 4096))
}

/// Makes the segment based at 4096 in `dir` as `case` says a crash can
/// leave one that holds no frame.
fn frameless_segment(path: &Path, case: &str) {
    let segment = Segment::create(path, SegmentKind::Journal, 4096, 4096).unwrap();
    drop(segment);
    let mut bytes = fs::read(path).unwrap();
    match case {
        "linked but never written" => {}
        "its size lost" => bytes.clear(),
        "its header lost" => bytes[..HEADER_PAGE].fill(0),
        "its first frame torn" => {
            // A length word and half a header: no checksum holds.
            bytes[HEADER_PAGE..HEADER_PAGE + 4].copy_from_slice(&200i32.to_le_bytes());
            bytes[HEADER_PAGE + 8..HEADER_PAGE + 24].fill(0x5a);
        }
        other => panic!("no case {other}"),
    }
    fs::write(path, &bytes).unwrap();
}

/// A segment at the end of the journal that holds no frame (left by a
/// crash while cutting to it) after one that was never sealed: the
/// writer once refused the journal ("ends without an end marker", "too
/// short", "bad magic") until the file was moved aside by hand. Recovery
/// removes it, says so, and appends resume after the last valid frame,
/// in a segment made again at the same position when the first fills.
#[test]
fn a_segment_at_the_end_that_holds_no_frame_is_removed_on_open() {
    for case in [
        "linked but never written",
        "its size lost",
        "its header lost",
        "its first frame torn",
    ] {
        let dir = Scratch::new("frameless-end");
        let (mut positions, end, next) = open_segment_then(&dir.0);
        frameless_segment(&next, case);
        // Not damage, and `inspect` says what the writer does with it.
        let inspection = inspect(&dir.0).unwrap();
        assert!(
            inspection.damage.is_none(),
            "{case}: {:?}",
            inspection.damage
        );
        let leftover = inspection.leftover.expect("a leftover segment");
        assert_eq!((&leftover.path, leftover.base), (&next, 4096), "{case}");
        let sound = matches!(case, "linked but never written" | "its first frame torn");
        assert_eq!(leftover.header_sound, sound, "{case}");

        let mut writer = JournalWriter::open(&dir.0, config(4096)).unwrap();
        assert_eq!(
            writer.recovery().removed,
            std::slice::from_ref(&next),
            "{case}"
        );
        assert_eq!(writer.recovery().frames, 5, "{case}");
        assert_eq!(writer.position(), end, "{case}");
        assert!(!next.exists(), "{case}");
        positions.extend(append_frames(&mut writer, 5..40));
        drop(writer);
        assert!(positions.iter().any(|&p| p >= 4096), "{case}: it rolled");
        assert_eq!(read_all(&dir.0).unwrap(), positions, "{case}");
        assert!(inspect(&dir.0).unwrap().damage.is_none(), "{case}");
    }
}

/// The same segment after a sealed one is what a writer killed just
/// after its roll leaves: it is reused, not removed, if its header is
/// sound (a torn first frame cut), and removed if it is not. (One whose
/// size is lost, cut short, is a truncated segment whose frames may have
/// been acknowledged, and is passed over: see `journal_cut_last`.)
#[test]
fn a_segment_that_holds_no_frame_after_a_sealed_one_is_reused_if_sound() {
    for (case, reused) in [
        ("linked but never written", true),
        ("its first frame torn", true),
        ("its header lost", false),
    ] {
        let dir = Scratch::new("frameless-sealed");
        let mut positions = fill_first_segment(&dir.0);
        // Back to the moment after the roll, before the first frame.
        let next = segment_path(&dir.0, 4096);
        fs::remove_file(&next).unwrap();
        positions.pop();
        frameless_segment(&next, case);

        let mut writer = JournalWriter::open(&dir.0, config(4096)).unwrap();
        let removed = if reused { vec![] } else { vec![next.clone()] };
        assert_eq!(writer.recovery().removed, removed, "{case}");
        assert_eq!(writer.recovery().frames, positions.len() as u64, "{case}");
        let n = positions.len() as u64;
        positions.extend(append_frames(&mut writer, n..n + 3));
        assert_eq!(positions[n as usize], 4096, "{case}");
        drop(writer);
        assert_eq!(read_all(&dir.0).unwrap(), positions, "{case}");
    }
}

/// A segment at the end that holds a valid frame is never removed, even
/// when the one before it is damaged, nor is one whose header is lost but
/// whose frame area holds data: the writer refuses, and every byte stays.
#[test]
fn a_segment_at_the_end_that_holds_a_frame_is_never_removed() {
    for case in [
        "a valid frame after a missing end marker",
        "a lost header over frames",
    ] {
        let dir = Scratch::new("framed-end");
        let mut writer = JournalWriter::open(&dir.0, config(4096)).unwrap();
        let mut i = 0;
        while writer.position() < 4096 + 256 {
            append_frames(&mut writer, i..i + 1);
            i += 1;
        }
        drop(writer);
        let first = segment_path(&dir.0, 0);
        let second = segment_path(&dir.0, 4096);
        let sealed_at = inspect(&dir.0).unwrap().segments[0].end as usize;
        let (path, at) = match case {
            "a valid frame after a missing end marker" => (&first, HEADER_PAGE + sealed_at),
            _ => (&second, 0),
        };
        let mut bytes = fs::read(path).unwrap();
        let len = if at == 0 { HEADER_PAGE } else { 32 };
        bytes[at..at + len].fill(0);
        fs::write(path, &bytes).unwrap();
        let before = [fs::read(&first).unwrap(), fs::read(&second).unwrap()];

        let error = JournalWriter::open(&dir.0, config(4096)).unwrap_err();
        assert!(
            matches!(
                error,
                JournalError::Damaged {
                    damage: Damage::MissingEndMarker,
                    ..
                } | JournalError::Segment(SegmentError::BadMagic { .. })
            ),
            "{case}: {error}"
        );
        let after = [fs::read(&first).unwrap(), fs::read(&second).unwrap()];
        assert!(before == after, "{case}: a segment was changed");
    }
}

/// Something at the end of a journal named like a segment that is none (a
/// directory, a link to a segment based elsewhere) is not taken for a
/// frameless segment and removed, and the writer's refusal names it: it
/// once blamed the segment before it, whose frames are fine, for "ending
/// without an end marker but a later segment exists".
#[test]
fn a_non_segment_at_the_end_is_named_in_the_refusal() {
    for case in ["a directory", "a link to a segment based elsewhere"] {
        let dir = Scratch::new("non-segment-end");
        let (_, _, next) = open_segment_then(&dir.0);
        let first = segment_path(&dir.0, 0);
        match case {
            "a directory" => fs::create_dir(&next).unwrap(),
            _ => std::os::unix::fs::symlink(&first, &next).unwrap(),
        }
        let before = fs::read(&first).unwrap();

        let error = JournalWriter::open(&dir.0, config(4096)).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains(&*next.to_string_lossy()),
            "{case}: the refusal names {}: {text}",
            next.display()
        );
        assert!(!text.contains("end marker"), "{case}: {text}");
        let inspected = inspect(&dir.0).unwrap().damage.unwrap().to_string();
        assert!(
            inspected.contains(&*next.to_string_lossy()),
            "{case}: {inspected}"
        );
        assert!(
            fs::symlink_metadata(&next).is_ok(),
            "{case}: it was removed"
        );
        assert_eq!(fs::read(&first).unwrap(), before, "{case}: first changed");
    }
}

/// A journal with no frame whose only file is a stray one named after a
/// position near the top of the range (an empty file, as a crash leaves a
/// segment it was creating): recovery removes frameless files and starts
/// a new segment at the first one's position, so that positions go on
/// from there, but no segment fits there. It once made one anyway, whose
/// positions ran past `u64::MAX` (the first append's position overflowed);
/// the writer now refuses, naming the file, and removes nothing.
#[test]
fn no_segment_is_started_where_its_positions_would_run_past_the_top() {
    // An empty file is also a segment cut to nothing, whose positions may
    // reach the largest segment's size past its base: appends resume
    // there, so a base within that of the top is refused too.
    for base in [u64::MAX, u64::MAX - 100, u64::MAX - 4095, u64::MAX - 8191] {
        let dir = Scratch::new("frameless-top");
        fs::create_dir_all(&dir.0).unwrap();
        let stray = segment_path(&dir.0, base);
        fs::File::create(&stray).unwrap();

        let error = JournalWriter::open(&dir.0, config(4096)).unwrap_err();
        assert!(
            matches!(
                &error,
                JournalError::Damaged {
                    path,
                    position,
                    damage: Damage::PositionsWrap,
                } if *path == stray && *position == base
            ),
            "{base:x}: {error}"
        );
        assert!(stray.exists(), "{base:x}: the file was removed");
        assert_eq!(list_segments(&dir.0).unwrap().len(), 1, "{base:x}");
    }
    // Where a segment fits, it is made there, as before.
    let dir = Scratch::new("frameless-high");
    fs::create_dir_all(&dir.0).unwrap();
    let base = u64::MAX - MAX_SEGMENT_SIZE as u64 - 8191;
    fs::File::create(segment_path(&dir.0, base)).unwrap();
    let mut writer = JournalWriter::open(&dir.0, config(4096)).unwrap();
    let resume = base + MAX_SEGMENT_SIZE as u64;
    assert_eq!(writer.position(), resume);
    assert_eq!(append_frames(&mut writer, 0..1), [resume]);
}

/// `journal inspect` and `tail` of a journal that ends in a segment that
/// holds no frame, linked at a roll and never written (a crash came
/// first; the writer's recovery removes it): each says what it is, prints
/// every frame before it, and exits 0. They once reported it as damage
/// ("ends without an end marker", "too short", "bad magic").
#[test]
fn journal_commands_say_a_leftover_segment_is_no_damage() {
    let cases = [
        ("linked but never written", false),
        ("its first frame torn", false),
        ("its size lost", false),
        ("its header lost", false),
        // ("its size lost", true) is a segment cut short after a sealed
        // one: damage, passed over by the writer (`journal_cut_last`).
        ("its header lost", true),
    ];
    for (case, sealed) in cases {
        let dir = Scratch::new("cli-leftover");
        let positions = if sealed {
            let mut positions = fill_first_segment(&dir.0);
            fs::remove_file(segment_path(&dir.0, 4096)).unwrap();
            positions.pop();
            positions
        } else {
            open_segment_then(&dir.0).0
        };
        let next = segment_path(&dir.0, 4096);
        frameless_segment(&next, case);
        let label = format!("{case}, after a sealed segment: {sealed}");

        let inspected = journal_command("inspect", &dir.0);
        let stdout = String::from_utf8_lossy(&inspected.stdout);
        assert_eq!(inspected.status.code(), Some(0), "{label}: {stdout}");
        assert!(stdout.contains("  no damage\n"), "{label}: {stdout}");
        assert!(!stdout.contains("DAMAGE"), "{label}: {stdout}");
        assert!(
            stdout.contains(&format!(
                ": 2 segments (1 a leftover, empty), {} frames, first position 0, last \
                 position {},",
                positions.len(),
                positions.last().unwrap()
            )),
            "{label}: {stdout}"
        );
        let lost = if case.contains("lost") {
            ", its header or size not on the disk"
        } else {
            ""
        };
        assert!(
            stdout.contains(&format!(
                "  0000000000001000.journal  base 4096  empty (linked at a roll, then a crash \
                 before its first frame{lost}); not damage: the next writer removes it and \
                 appends after the last frame\n"
            )),
            "{label}: {stdout}"
        );

        let tailed = journal_command("tail", &dir.0);
        let stderr = String::from_utf8_lossy(&tailed.stderr);
        assert_eq!(tailed.status.code(), Some(0), "{label}: {stderr}");
        let printed: Vec<u64> = String::from_utf8_lossy(&tailed.stdout)
            .lines()
            .map(|line| line.split(' ').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(printed, positions, "{label}");
        assert!(
            stderr.contains(&format!(
                "{} after it is empty (linked at a roll, then a crash before its first \
                 frame): not damage, the next writer removes it",
                next.display()
            )),
            "{label}: {stderr}"
        );
        assert!(next.exists(), "{label}: read-only commands removed it");
    }
}

/// `inspect` once counted the segments it summarised but not the leftover
/// it reported after them, so a journal of two segment files was "1
/// segment" while the writer's recovery found 2. Both now count every
/// segment file, the leftover included, and the count goes down by one
/// once the writer has removed it.
#[test]
fn inspect_counts_a_leftover_segment_as_the_writer_does() {
    for case in ["linked but never written", "its header lost"] {
        let dir = Scratch::new("count-leftover");
        let (_, _, next) = open_segment_then(&dir.0);
        frameless_segment(&next, case);
        let inspection = inspect(&dir.0).unwrap();
        assert!(inspection.leftover.is_some(), "{case}");
        assert_eq!(inspection.segments.len(), 1, "{case}");
        assert_eq!(inspection.segment_count(), 2, "{case}");
        assert_eq!(list_segments(&dir.0).unwrap().len(), 2, "{case}");

        let writer = JournalWriter::open(&dir.0, config(4096)).unwrap();
        assert_eq!(writer.recovery().segments, 2, "{case}");
        assert_eq!(writer.recovery().removed.len(), 1, "{case}");
        drop(writer);
        let inspection = inspect(&dir.0).unwrap();
        assert!(inspection.leftover.is_none(), "{case}");
        assert_eq!(inspection.segment_count(), 1, "{case}");
        let inspected = journal_command("inspect", &dir.0);
        let stdout = String::from_utf8_lossy(&inspected.stdout);
        assert!(
            stdout.contains(": 1 segment, 5 frames,"),
            "{case}: {stdout}"
        );
    }
}

/// A segment that holds no frame but is not where the journal's last one
/// ends, or follows a damaged one, is still reported as damage.
#[test]
fn journal_inspect_still_reports_damage_around_an_empty_segment() {
    for case in ["not where the last segment ends", "after a damaged frame"] {
        let dir = Scratch::new("cli-leftover-damage");
        let (positions, _, next) = open_segment_then(&dir.0);
        let (stray, base) = match case {
            "not where the last segment ends" => (segment_path(&dir.0, 3 * 4096), 3 * 4096),
            _ => {
                let path = segment_path(&dir.0, 0);
                let mut bytes = fs::read(&path).unwrap();
                bytes[HEADER_PAGE + positions[1] as usize + PAYLOAD_OFFSET] ^= 1;
                fs::write(&path, &bytes).unwrap();
                (next, 4096)
            }
        };
        drop(Segment::create(&stray, SegmentKind::Journal, 4096, base).unwrap());
        let inspection = inspect(&dir.0).unwrap();
        assert!(inspection.leftover.is_none(), "{case}");
        let damage = inspection.damage.expect("damage");
        assert!(
            matches!(damage, JournalError::Damaged { .. }),
            "{case}: {damage}"
        );
        for command in ["inspect", "tail"] {
            let output = journal_command(command, &dir.0);
            assert_eq!(output.status.code(), Some(1), "{case}: {command}");
        }
    }
}

/// A reader that stops before a leftover segment waits there, as at the
/// end of any journal, and reads on once a writer has removed it and
/// appended, across the writer's next roll too.
#[test]
fn a_reader_waits_before_a_leftover_segment_and_reads_what_comes_after() {
    let dir = Scratch::new("reader-leftover");
    let (mut positions, _, next) = open_segment_then(&dir.0);
    frameless_segment(&next, "linked but never written");
    let mut reader = JournalReader::open(&dir.0, Start::Beginning).unwrap();
    let mut read = Vec::new();
    while let Some(frame) = reader.next_frame().unwrap() {
        read.push(frame.position);
    }
    assert_eq!(read, positions);
    reader.check_end().unwrap();
    assert_eq!(reader.leftover(), Some(next.clone()));
    assert!(reader.next_frame().unwrap().is_none());

    let mut writer = JournalWriter::open(&dir.0, config(4096)).unwrap();
    assert_eq!(writer.recovery().removed, std::slice::from_ref(&next));
    positions.extend(append_frames(&mut writer, 5..40));
    assert!(positions.iter().any(|&p| p > 4096), "it rolled");
    while let Some(frame) = reader.next_frame().unwrap() {
        read.push(frame.position);
    }
    assert_eq!(read, positions);
    reader.check_end().unwrap();
    assert_eq!(reader.leftover(), None);
}

/// A segment before the last cut short (truncated under a live writer,
/// which abandoned it and appended on in the next): the writer once
/// refused the journal at its next start ("too short", "file is N bytes
/// but its header implies M") until the file was moved aside, which left
/// a gap it refused too. It now goes on as the writer that found it did:
/// the cut file is reported and left in place, no frame in any other
/// segment is touched, and appends resume after the last one.
#[test]
fn a_segment_cut_short_before_the_last_does_not_stop_the_next_writer() {
    for (segment, len) in [
        (0, HEADER_PAGE as u64),
        (4096, HEADER_PAGE as u64),
        (4096, HEADER_PAGE as u64 + 1024),
        (4096, 0),
    ] {
        let case = format!("segment {segment} cut to {len} bytes");
        let dir = Scratch::new("cut-short-middle");
        let positions = three_segments(&dir.0);
        let cut = segment_path(&dir.0, segment);
        fs::OpenOptions::new()
            .write(true)
            .open(&cut)
            .unwrap()
            .set_len(len)
            .unwrap();
        let others: Vec<_> = list_segments(&dir.0)
            .unwrap()
            .into_iter()
            .filter(|(base, _)| *base != segment)
            .map(|(_, path)| (fs::read(&path).unwrap(), path))
            .collect();
        let end = positions.last().unwrap() + 64;

        let mut writer = JournalWriter::open(&dir.0, config(4096)).unwrap();
        assert_eq!(
            writer.recovery().cut_short,
            std::slice::from_ref(&cut),
            "{case}"
        );
        assert!(writer.recovery().removed.is_empty(), "{case}");
        let resumed = writer.position();
        assert!(
            resumed > *positions.last().unwrap() && resumed <= end,
            "{case}"
        );
        let n = positions.len() as u64;
        let appended = append_frames(&mut writer, n..n + 3);
        assert_eq!(appended[0], resumed, "{case}");
        drop(writer);

        // Nothing else was changed but the frames appended after the last.
        assert_eq!(fs::metadata(&cut).unwrap().len(), len, "{case}");
        for (bytes, path) in &others[..others.len() - 1] {
            assert_eq!(
                &fs::read(path).unwrap(),
                bytes,
                "{case}: {}",
                path.display()
            );
        }
        // Readers still stop at the cut segment, and read past it when
        // asked to start after it.
        assert!(inspect(&dir.0).unwrap().damage.is_some(), "{case}");
        let mut reader = JournalReader::open(&dir.0, Start::Position(8192)).unwrap();
        let mut read = Vec::new();
        while let Some(frame) = reader.next_frame().unwrap() {
            read.push(frame.position);
        }
        let after: Vec<u64> = positions.iter().copied().filter(|&p| p >= 8192).collect();
        assert_eq!(read, [after, appended].concat(), "{case}");
    }
}

/// A segment file whose header gives another base than its name (a copy of
/// another segment put in its place) is reported as a wrong header naming
/// both bases and what to do, by the writer, `inspect`, a reader and both
/// commands: it once read "damaged frame at position 8192: frame says it
/// is at position 0", blaming a frame for the header's base.
#[test]
fn a_segment_whose_header_gives_another_base_is_named_as_such() {
    for case in ["in the middle", "after a segment without an end marker"] {
        let dir = Scratch::new("wrong-base");
        let named = match case {
            "in the middle" => {
                three_segments(&dir.0);
                8192
            }
            _ => {
                open_segment_then(&dir.0);
                4096
            }
        };
        let path = segment_path(&dir.0, named);
        fs::copy(segment_path(&dir.0, 0), &path).unwrap();
        let expected = format!(
            "{}: wrong segment header: its name says the segment starts at position {named} \
             but its header says 0 (renamed or copied from elsewhere): move it out of the \
             journal directory, or rename it 0000000000000000.journal if it belongs at 0",
            path.display()
        );
        let is_wrong_base = |error: &JournalError| {
            matches!(
                error,
                JournalError::Damaged {
                    path: p,
                    position,
                    damage: Damage::WrongBase { named: n, found: 0 },
                } if *p == path && *position == named && *n == named
            )
        };

        let error = JournalWriter::open(&dir.0, config(4096)).unwrap_err();
        assert!(is_wrong_base(&error), "{case}: writer: {error:?}");
        assert_eq!(error.to_string(), expected, "{case}: writer");
        let damage = inspect(&dir.0).unwrap().damage.unwrap();
        assert!(is_wrong_base(&damage), "{case}: inspect: {damage:?}");
        let mut reader = JournalReader::open(&dir.0, Start::Beginning).unwrap();
        let error = loop {
            match reader.next_frame() {
                Ok(Some(_)) => {}
                Ok(None) => panic!("{case}: the reader stopped quietly"),
                Err(error) => break error,
            }
        };
        assert!(is_wrong_base(&error), "{case}: reader: {error:?}");
        assert_eq!(error.to_string(), expected, "{case}: reader");

        let output = journal_command("inspect", &dir.0);
        let text = String::from_utf8(output.stdout).unwrap();
        assert!(!output.status.success(), "{case}: {text}");
        assert!(
            text.contains(&format!("  DAMAGE: {expected}\n")),
            "{case}: {text}"
        );
        let output = journal_command("tail", &dir.0);
        let error = String::from_utf8(output.stderr).unwrap();
        assert!(!output.status.success(), "{case}: {error}");
        assert!(error.contains(&expected), "{case}: {error}");
        assert!(!error.contains("frame says"), "{case}: {error}");
    }
}

/// A gap between segments reads, in both commands, as what it is (not as
/// "damaged frame at position N"), with the files and positions on both
/// sides of it.
#[test]
fn journal_commands_name_a_gap_between_segments_as_such() {
    let dir = Scratch::new("cli-gap");
    three_segments(&dir.0);
    fs::remove_file(segment_path(&dir.0, 4096)).unwrap();
    let inspect = journal_command("inspect", &dir.0);
    let tail = journal_command("tail", &dir.0);
    let expected = format!(
        "{}: segments not contiguous: no segment starts at position 4096, where the one \
         before ends: the next segment file, 0000000000002000.journal, starts at 8192, so \
         the positions from 4096 up to 8192 are missing: put 0000000000001000.journal back \
         if it was moved out, or move 0000000000002000.journal out of the journal directory \
         if it does not belong there",
        segment_path(&dir.0, 0).display()
    );
    for (command, output, text) in [
        (
            "inspect",
            &inspect,
            String::from_utf8_lossy(&inspect.stdout),
        ),
        ("tail", &tail, String::from_utf8_lossy(&tail.stderr)),
    ] {
        assert_eq!(output.status.code(), Some(1), "{command}: {text}");
        assert!(text.contains(&expected), "{command}: {text}");
        assert!(!text.contains("damaged frame"), "{command}: {text}");
    }
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(text.contains(&format!("  DAMAGE: {expected}\n")), "{text}");
    // The segment before the gap is whole: listed as sealed, not damaged.
    assert!(
        text.contains("0000000000000000.journal  base 0  capacity 4096  frames 27  first 0  last 3712  sealed\n"),
        "{text}"
    );
    assert!(!text.contains("damaged, valid to"), "{text}");
}

/// What `journal inspect` says under the damage of a segment file cut
/// short: what the writer does with it on open.
const CUT_SHORT_LINE: &str = "\n  (the file was cut short after it was written: the writer, \
    on open, leaves it as it is and resumes appends past every position it could have held)\n";

/// `journal inspect` of a journal whose last segment was cut short (inside
/// its frames) says, under the segment error, that the writer leaves the
/// file as it is and resumes past every position it could have held; and
/// the writer does so.
#[test]
fn journal_inspect_says_the_writer_passes_over_a_last_segment_cut_short() {
    let dir = Scratch::new("cli-cut-last");
    three_segments(&dir.0);
    let last = segment_path(&dir.0, 8192);
    let whole = fs::metadata(&last).unwrap().len();
    let len = (HEADER_PAGE + 1024) as u64;
    fs::OpenOptions::new()
        .write(true)
        .open(&last)
        .unwrap()
        .set_len(len)
        .unwrap();
    assert!(inspect(&dir.0).unwrap().damage.unwrap().is_cut_short());
    let output = journal_command("inspect", &dir.0);
    let text = String::from_utf8(output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(1), "{text}");
    let damage = format!(
        "  DAMAGE: {}: file is {len} bytes but its header implies {}\n",
        last.display(),
        whole
    );
    let at = text.find(&damage).unwrap_or_else(|| panic!("{text}"));
    assert!(text[at..].contains(CUT_SHORT_LINE), "{text}");
    assert!(
        text.contains(&format!(
            "{CUT_SHORT_LINE}  (segments after the damage were not checked)\n"
        )),
        "{text}"
    );

    // As it says: the file is kept as it is, and appends go on past it.
    let writer = JournalWriter::open(&dir.0, config(4096)).unwrap();
    assert_eq!(writer.position(), 8192 + 4096);
    assert_eq!(fs::metadata(&last).unwrap().len(), len);
}

/// A segment cut short after one that ends without an end marker (here
/// the first segment replaced by an older copy) is damage the writer
/// refuses, as it refuses the missing end marker: `journal inspect` must
/// not say the writer passes over it.
#[test]
fn journal_inspect_says_no_pass_over_for_a_cut_segment_after_an_unsealed_one() {
    let dir = Scratch::new("cli-cut-after-unsealed");
    let first = segment_path(&dir.0, 0);
    let mut writer = JournalWriter::open(&dir.0, config(4096)).unwrap();
    let mut older = None;
    let mut i = 0;
    while list_segments(&dir.0).unwrap().len() < 2 || i < 40 {
        let position = append_frames(&mut writer, i..i + 1)[0];
        if older.is_none() && position > 2000 {
            older = Some(fs::read(&first).unwrap());
        }
        i += 1;
    }
    drop(writer);
    assert_eq!(list_segments(&dir.0).unwrap().len(), 2);
    fs::write(&first, older.unwrap()).unwrap();
    let second = segment_path(&dir.0, 4096);
    fs::OpenOptions::new()
        .write(true)
        .open(&second)
        .unwrap()
        .set_len((HEADER_PAGE + 1024) as u64)
        .unwrap();

    let output = journal_command("inspect", &dir.0);
    let text = String::from_utf8(output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("  DAMAGE: {}: file is ", second.display())),
        "{text}"
    );
    assert!(!text.contains("cut short"), "{text}");
    // The writer refuses the journal, with the same error.
    let error = JournalWriter::open(&dir.0, config(4096)).unwrap_err();
    assert!(error.is_cut_short(), "{error}");
    assert!(
        error.to_string().starts_with(&second.display().to_string()),
        "{error}"
    );
}

/// A journal whose middle segment was moved out, its last segment linked
/// at a roll and never written: `inspect` reports the gap, and the writer
/// refuses it too, rather than removing the last segment and appending
/// after the first, which gave the missing segment's positions again.
#[test]
fn the_writer_refuses_a_gap_before_an_empty_last_segment() {
    let dir = Scratch::new("gap-before-empty");
    three_segments(&dir.0);
    fs::remove_file(segment_path(&dir.0, 4096)).unwrap();
    let last = segment_path(&dir.0, 8192);
    // Its frames zeroed: as linked at a roll, never written.
    let mut bytes = fs::read(&last).unwrap();
    bytes[HEADER_PAGE..].fill(0);
    fs::write(&last, &bytes).unwrap();

    let inspection = inspect(&dir.0).unwrap();
    assert!(
        matches!(
            inspection.damage,
            Some(JournalError::Damaged {
                damage: Damage::Gap {
                    expected: 4096,
                    found: 8192
                },
                ..
            })
        ),
        "{:?}",
        inspection.damage
    );
    let error = JournalWriter::open(&dir.0, config(4096)).unwrap_err();
    assert!(
        matches!(
            error,
            JournalError::Damaged {
                damage: Damage::Gap {
                    expected: 4096,
                    found: 8192
                },
                ..
            }
        ),
        "{error}"
    );
    // Nothing removed: the file is there to be put back or moved out.
    assert_eq!(fs::read(&last).unwrap(), bytes);
}
