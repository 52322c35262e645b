//! `corelane serve --journal` when appends fail: each PUBLISH that cannot
//! be journaled gets an error reply, and the server's log does not grow by
//! a line per refused message. A message too large for a segment is the
//! client's doing and its reply says so; a segment cut under the server is
//! abandoned (logged once, with the positions it may have lost) and
//! appends go on in a new one; a journal that keeps failing is logged
//! once, not once per PUBLISH, so that a busy publisher cannot fill the
//! disk with the same line. The server runs as a child process, on
//! loopback only, and is stopped with SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod common;
use common::Scratch;

/// Publishes sent in a row in each test: enough that a line per message
/// would stand out.
const PUBLISHES: usize = 50;

/// A `corelane serve` child with its stderr lines read so far.
struct Served {
    child: Child,
    address: String,
    log: Vec<String>,
    lines: std::io::Lines<BufReader<std::process::ChildStderr>>,
}

impl Served {
    /// Starts a one-core server journaling into `dir` with segments of
    /// `segment_size` bytes, and waits until it says it is listening.
    fn start(dir: &Path, segment_size: usize) -> Served {
        let mut child = Command::new(env!("CARGO_BIN_EXE_corelane"))
            .args(["serve", "--bind", "127.0.0.1:0", "--cores", "1"])
            .args(["--journal-segment-size", &segment_size.to_string()])
            .arg("--journal")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run corelane serve");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut log = Vec::new();
        let address = loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("server exited before listening: {log:?}"))
                .unwrap();
            let found = line
                .split_once("listening on ")
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .map(str::to_owned);
            log.push(line);
            if let Some(address) = found {
                break address;
            }
        };
        Served {
            child,
            address,
            log,
            lines,
        }
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(&self.address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream
    }

    /// Stops the server with SIGTERM and returns everything it logged.
    fn stop(mut self) -> Vec<String> {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill has no memory effects; the pid is our own child,
        // which has not been waited for, so it cannot be another process.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        for line in self.lines.by_ref() {
            self.log.push(line.unwrap());
        }
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status}: {:?}", self.log);
        std::mem::take(&mut self.log)
    }
}

impl Drop for Served {
    /// A test that fails before `stop` leaves no server running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn publish(channel: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut command = b"*3\r\n$7\r\nPUBLISH\r\n".to_vec();
    for arg in [channel, payload] {
        command.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        command.extend_from_slice(arg);
        command.extend_from_slice(b"\r\n");
    }
    command
}

/// Sends `PUBLISHES` publishes of `payload` in one write and reads back
/// one reply line each.
fn publish_all(stream: &mut TcpStream, payload: &[u8]) -> Vec<String> {
    let one = publish(b"news", payload);
    stream.write_all(&one.repeat(PUBLISHES)).unwrap();
    let mut replies = Vec::new();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    while replies.len() < PUBLISHES {
        let mut line = String::new();
        assert_ne!(reader.read_line(&mut line).unwrap(), 0, "{replies:?}");
        replies.push(line.trim_end().to_owned());
    }
    replies
}

fn lines_with<'a>(log: &'a [String], text: &str) -> Vec<&'a String> {
    log.iter().filter(|line| line.contains(text)).collect()
}

/// A journal directory that is not there is created, parents and all,
/// and said, so that a mistyped path does not go unnoticed.
#[test]
fn a_journal_directory_that_is_not_there_is_created_and_said() {
    let base = std::env::temp_dir().join(format!("corelane-journal-said-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let dir = base.join("nested").join("journal");
    let served = Served::start(&dir, 64 * 1024);
    let said = lines_with(&served.log, "created the journal directory");
    assert_eq!(said.len(), 1, "{:?}", served.log);
    assert!(said[0].ends_with(&dir.display().to_string()), "{said:?}");
    assert!(dir.join("core-0").is_dir());
    served.stop();

    // Started again on it: there is nothing to say.
    let served = Served::start(&dir, 64 * 1024);
    assert!(
        lines_with(&served.log, "journal directory").is_empty(),
        "{:?}",
        served.log
    );
    served.stop();
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn messages_too_large_for_a_segment_are_refused_without_a_log_line_each() {
    let dir = Scratch::new("serve-journal-too-large");
    let served = Served::start(&dir.0, 1 << 16);
    let mut stream = served.connect();

    let replies = publish_all(&mut stream, &vec![b'x'; 100_000]);
    for reply in &replies {
        assert!(reply.starts_with("-ERR journal: "), "{reply}");
        assert!(reply.contains("--journal-segment-size"), "{reply}");
    }
    // The connection still works, and a message that fits is journaled.
    stream.write_all(&publish(b"news", b"fits")).unwrap();
    let mut reply = [0; 4];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b":0\r\n");

    drop(stream);
    let log = served.stop();
    assert!(lines_with(&log, "journal").is_empty(), "{log:#?}");
}

/// Cuts core 0's open segment (the first: nothing has rolled) to nothing,
/// as `truncate -s 0` from another process would; returns its path.
fn cut_first_segment(dir: &Path) -> PathBuf {
    let segment = corelane::segment::journal::dir::segment_path(&dir.join("core-0"), 0);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(0)
        .unwrap();
    segment
}

/// Publishes one message and returns the reply line.
fn publish_one(stream: &mut TcpStream, payload: &[u8]) -> String {
    stream.write_all(&publish(b"news", payload)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    line.trim_end().to_owned()
}

fn journal_command(args: &[&str], dir: &Path) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_corelane"))
        .arg("journal")
        .args(args)
        .arg(dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

/// The segment a running server appends to is cut under it: the server
/// does not die of the SIGBUS, abandons the segment, says once in its log
/// which positions may be lost and where appends went on, and journals
/// every later PUBLISH in a new segment, where `tail --from` finds them.
/// The cut segment stays, and `inspect` reports it as damage.
#[test]
fn a_segment_cut_under_the_server_is_abandoned_and_publishing_goes_on() {
    let dir = Scratch::new("serve-journal-abandon");
    let served = Served::start(&dir.0, 1 << 16);
    let mut stream = served.connect();
    assert_eq!(publish_one(&mut stream, b"before"), ":0");

    let segment = cut_first_segment(&dir.0);
    let replies = publish_all(&mut stream, b"after");
    assert_eq!(replies, vec![":0"; PUBLISHES]);
    drop(stream);
    let log = served.stop();
    let said = lines_with(&log, "truncated under its writer");
    assert_eq!(said.len(), 1, "{log:#?}");
    assert!(said[0].contains(&segment.display().to_string()), "{said:?}");
    assert!(said[0].contains(": positions 0.."), "{said:?}");
    assert!(said[0].contains("at position 65536"), "{said:?}");
    assert!(
        lines_with(&log, "journal append failed").is_empty(),
        "{log:#?}"
    );

    let core = dir.0.join("core-0");
    let (ok, text) = journal_command(&["tail", "--from", "65536"], &core);
    assert!(ok, "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), PUBLISHES, "{text}");
    assert!(lines[0].starts_with("65536 "), "{text}");
    assert!(
        lines.iter().all(|line| line.ends_with(" news after")),
        "{text}"
    );

    let (ok, text) = journal_command(&["inspect"], &dir.0);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("DAMAGE: {}: 0 bytes", segment.display())),
        "{text}"
    );
}

/// A cut segment the server cannot move on from (the next segment's name
/// is taken): each PUBLISH gets an error reply, and the log says once what
/// was cut and once that appends fail, not once per PUBLISH, so that a busy
/// publisher cannot fill the disk with the same line. Once the name is
/// free, appends go on.
#[test]
fn a_journal_that_keeps_failing_is_logged_once() {
    let dir = Scratch::new("serve-journal-cut");
    let served = Served::start(&dir.0, 1 << 16);
    let mut stream = served.connect();
    assert_eq!(publish_one(&mut stream, b"before"), ":0");

    let blocker = corelane::segment::journal::dir::segment_path(&dir.0.join("core-0"), 1 << 16);
    std::fs::create_dir(&blocker).unwrap();
    cut_first_segment(&dir.0);
    let replies = publish_all(&mut stream, b"after");
    for reply in &replies {
        assert!(reply.starts_with("-ERR journal: "), "{reply}");
        assert!(reply.contains(&blocker.display().to_string()), "{reply}");
    }
    std::fs::remove_dir(&blocker).unwrap();
    assert_eq!(publish_one(&mut stream, b"again"), ":0");
    drop(stream);
    let log = served.stop();
    for text in [
        "truncated under its writer",
        "journal append failed",
        "journal appends succeed again",
    ] {
        assert_eq!(lines_with(&log, text).len(), 1, "{text}: {log:#?}");
    }
}
