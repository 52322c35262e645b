//! `corelane journal tail --follow` on a `serve --journal` directory: core
//! directories that appear after the tail started are followed too, and a
//! followed directory that is removed ends the tail with a clear error;
//! a channel with spaces prints with them escaped.
//!
//! The tail is the real binary; the test reads its output on a thread and
//! waits for expected lines (giving up after a generous bound, which only
//! decides how long a failure takes to report).

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use corelane::clock;
use corelane::segment::journal::{Durability, JournalConfig, JournalWriter};
use corelane::serve::journal::core_dir;
use corelane::serve::Published;

mod common;
use common::Scratch;

/// How long to wait for the tail before calling the test failed.
const GIVE_UP: Duration = Duration::from_secs(60);

/// A running `corelane journal tail --follow DIR` and its output lines,
/// stdout's and stderr's apart.
struct Tail {
    child: Child,
    lines: Receiver<String>,
    errors: Receiver<String>,
}

/// Sends each line `from` gives to a channel, from a thread of its own.
fn line_channel(from: impl Read + Send + 'static) -> Receiver<String> {
    let (send, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if send.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

impl Tail {
    fn start(dir: &Path) -> Tail {
        let mut child = Command::new(env!("CARGO_BIN_EXE_corelane"))
            .args(["journal", "tail", "--follow"])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = line_channel(child.stdout.take().unwrap());
        let errors = line_channel(child.stderr.take().unwrap());
        Tail {
            child,
            lines,
            errors,
        }
    }

    /// The next line containing `text`; the lines passed over are returned
    /// too, in order.
    fn wait_for(&self, text: &str) -> (String, Vec<String>) {
        wait_for(&self.lines, text)
    }

    /// As [`Tail::wait_for`], on stderr.
    fn wait_for_error(&self, text: &str) -> (String, Vec<String>) {
        wait_for(&self.errors, text)
    }

    /// Waits for the tail to exit by itself; returns its status and stderr.
    fn wait_exit(mut self) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + GIVE_UP;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The reading thread ends at the pipe's end, which came
                // with the exit.
                let stderr: Vec<String> = self.errors.iter().collect();
                return (status, stderr.join("\n"));
            }
            assert!(Instant::now() < deadline, "the tail did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The next line from `lines` containing `text`, and the lines passed
/// over, in order.
fn wait_for(lines: &Receiver<String>, text: &str) -> (String, Vec<String>) {
    let deadline = Instant::now() + GIVE_UP;
    let mut before = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(text) => return (line, before),
            Ok(line) => before.push(line),
            Err(error) => panic!("no line with {text:?} ({error}); saw {before:?}"),
        }
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        // Kills only the child this test started, if it still runs.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Opens core `core`'s journal under `root` and appends one message per
/// payload on channel `chan`.
fn publish(root: &Path, core: usize, payloads: &[&str]) -> JournalWriter {
    let mut writer = open(&core_dir(root, core));
    for payload in payloads {
        append(&mut writer, b"chan", payload.as_bytes());
    }
    writer
}

/// Opens the journal in `dir` with small segments and no syncs.
fn open(dir: &Path) -> JournalWriter {
    let config = JournalConfig {
        segment_size: 1 << 16,
        durability: Durability::None,
    };
    JournalWriter::open(dir, config).unwrap()
}

/// Appends one message published on `channel` at time 1 ns.
fn append(writer: &mut JournalWriter, channel: &[u8], payload: &[u8]) {
    let record = Published {
        channel: channel.to_vec(),
        payload: payload.to_vec(),
        time_ns: 1,
    };
    writer.append_message(&record, clock::now_ns()).unwrap();
}

#[test]
fn follow_picks_up_a_core_directory_created_after_it_started() {
    let root = Scratch::new("follow-new-core");
    let _core0 = publish(&root.0, 0, &["early-0"]);
    let tail = Tail::start(&root.0);
    let (line, _) = tail.wait_for("early-0");
    assert!(line.starts_with("core-0 "), "{line}");

    // Core 1's directory and frames come after the tail started.
    let mut core1 = publish(&root.0, 1, &["late-1a", "late-1b"]);
    let (line, _) = tail.wait_for("late-1a");
    assert!(line.starts_with("core-1 "), "{line}");
    assert!(line.ends_with(" chan late-1a"), "{line}");
    let (line, skipped) = tail.wait_for("late-1b");
    assert!(line.starts_with("core-1 "), "{line}");
    assert!(skipped.is_empty(), "{skipped:?}");

    // The new core's journal is followed, not read once.
    append(&mut core1, b"chan", b"later-1c");
    let (line, _) = tail.wait_for("later-1c");
    assert!(line.starts_with("core-1 "), "{line}");
}

#[test]
fn follow_on_an_empty_directory_reads_the_cores_that_appear() {
    let root = Scratch::new("follow-empty");
    let tail = Tail::start(&root.0);
    let _core0 = publish(&root.0, 0, &["first-0"]);
    let _core1 = publish(&root.0, 1, &["first-1"]);
    let mut seen = [tail.wait_for("first-").0, tail.wait_for("first-").0];
    seen.sort();
    assert!(seen[0].starts_with("core-0 ") && seen[0].ends_with(" chan first-0"));
    assert!(seen[1].starts_with("core-1 ") && seen[1].ends_with(" chan first-1"));
}

#[test]
fn follow_ends_with_a_clear_error_when_its_directory_is_removed() {
    let root = Scratch::new("follow-removed");
    let core0 = publish(&root.0, 0, &["before-removal"]);
    let tail = Tail::start(&root.0);
    tail.wait_for("before-removal");
    drop(core0);
    std::fs::remove_dir_all(&root.0).unwrap();

    let (status, stderr) = tail.wait_exit();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: directory removed while following it",
            root.0.display()
        )),
        "{stderr}"
    );
}

#[test]
fn follow_ends_with_a_clear_error_when_a_core_directory_is_removed() {
    let root = Scratch::new("follow-core-removed");
    let _core0 = publish(&root.0, 0, &["zero"]);
    let core1 = publish(&root.0, 1, &["one"]);
    let tail = Tail::start(&root.0);
    tail.wait_for("one");
    drop(core1);
    let removed = core_dir(&root.0, 1);
    std::fs::remove_dir_all(&removed).unwrap();

    let (status, stderr) = tail.wait_exit();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: directory removed while following it",
            removed.display()
        )),
        "{stderr}"
    );
}

#[test]
fn follow_ends_with_a_clear_error_when_its_directory_is_replaced() {
    let root = Scratch::new("follow-replaced");
    let journal = root.0.join("one");
    let mut writer = open(&journal);
    append(&mut writer, b"chan", b"original");
    let tail = Tail::start(&journal);
    tail.wait_for("original");

    // Another directory takes the name; the tail's is moved away.
    drop(writer);
    std::fs::rename(&journal, root.0.join("moved")).unwrap();
    std::fs::create_dir(&journal).unwrap();

    let (status, stderr) = tail.wait_exit();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: directory replaced by another while following it",
            journal.display()
        )),
        "{stderr}"
    );
}

#[test]
fn from_on_a_serve_directory_asks_for_a_core_directory() {
    let scratch = Scratch::new("tail-from-percore");
    let root = scratch.0.join("journal");
    let _core0 = publish(&root, 0, &["a", "b"]);
    let _core1 = publish(&root, 1, &["c"]);
    let output = Command::new(env!("CARGO_BIN_EXE_corelane"))
        .args(["journal", "tail", "--from", "0"])
        .arg(&root)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "--from needs one journal; {} holds 2 (pick a core-N directory, such as {})",
            root.display(),
            core_dir(&root, 0).display()
        )),
        "{stderr}"
    );
    // The same position in one core's journal works.
    let output = Command::new(env!("CARGO_BIN_EXE_corelane"))
        .args(["journal", "tail", "--from", "0"])
        .arg(core_dir(&root, 0))
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 2);
}

#[test]
fn tail_escapes_the_channels_spaces_so_the_fields_split_on_spaces() {
    let scratch = Scratch::new("tail-spaced-channel");
    let dir = core_dir(&scratch.0, 0);
    let mut writer = open(&dir);
    append(&mut writer, b"news of the day", b"rain, then sun\n");
    drop(writer);

    let output = Command::new(env!("CARGO_BIN_EXE_corelane"))
        .args(["journal", "tail"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().next().unwrap_or_default();
    // Position, time, channel, then the payload to the end of the line.
    let fields: Vec<&str> = line.splitn(4, ' ').collect();
    assert_eq!(fields.len(), 4, "{line}");
    assert_eq!(fields[0], "0", "{line}");
    assert_eq!(fields[1], "1970-01-01T00:00:00.000000001Z", "{line}");
    assert_eq!(fields[2], "news\\x20of\\x20the\\x20day", "{line}");
    assert_eq!(fields[3], "rain, then sun\\n", "{line}");
}

/// Only the names the server gives (`core-0`, `core-1`, ...) are core
/// directories: a copy named `core-00` or `core-+1` (a backup, say) is
/// neither printed as a second `core-0` nor inspected as one.
#[test]
fn only_plain_core_numbers_name_core_directories() {
    let scratch = Scratch::new("core-names");
    let root = scratch.0.join("journal");
    drop(publish(&root, 0, &["zero"]));
    drop(publish(&root, 1, &["one"]));
    for copy in ["core-00", "core-+1", "core-01"] {
        let target = root.join(copy);
        fs::create_dir(&target).unwrap();
        for entry in fs::read_dir(core_dir(&root, 0)).unwrap() {
            let entry = entry.unwrap();
            fs::copy(entry.path(), target.join(entry.file_name())).unwrap();
        }
    }

    let tail = Command::new(env!("CARGO_BIN_EXE_corelane"))
        .args(["journal", "tail"])
        .arg(&root)
        .output()
        .unwrap();
    assert!(tail.status.success(), "{tail:?}");
    let text = String::from_utf8_lossy(&tail.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with("core-0 ") && lines[0].ends_with(" chan zero"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("core-1 ") && lines[1].ends_with(" chan one"),
        "{text}"
    );

    let inspect = Command::new(env!("CARGO_BIN_EXE_corelane"))
        .args(["journal", "inspect"])
        .arg(&root)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(inspect.status.success(), "{text}");
    assert_eq!(text.matches("no damage").count(), 2, "{text}");
}

/// `tail --follow` that has read everything there is ends with the damage
/// `inspect` would report once it finds some where it waits, instead of
/// waiting for ever: a stray file named after a later position that is no
/// segment (named, with what is wrong with it: the open segment is fine),
/// or a zeroed length word hiding the frames after it.
#[test]
fn follow_ends_with_the_damage_it_waits_at() {
    for case in ["stray segment", "symlink loop", "zeroed length"] {
        let dir = Scratch::new("follow-damage");
        let mut writer = open(&dir.0);
        for payload in ["one", "two", "three"] {
            append(&mut writer, b"chan", payload.as_bytes());
        }
        let segment = corelane::segment::journal::dir::segment_path(&dir.0, 0);
        if case == "zeroed length" {
            // The reader stops at the zeroed word; the writer is gone, so
            // nothing will ever fill it.
            drop(writer);
            let mut bytes = fs::read(&segment).unwrap();
            let word = corelane::segment::layout::HEADER_PAGE;
            bytes[word..word + 4].fill(0);
            fs::write(&segment, &bytes).unwrap();
        }
        let tail = Tail::start(&dir.0);
        let stray = corelane::segment::journal::dir::segment_path(&dir.0, 1 << 20);
        let (blamed, expected) = if case == "zeroed length" {
            (
                &segment,
                "damaged frame at position 0: impossible frame length 0",
            )
        } else {
            tail.wait_for(" chan three");
            if case == "symlink loop" {
                std::os::unix::fs::symlink(&stray, &stray).unwrap();
                (&stray, "")
            } else {
                fs::File::create(&stray).unwrap();
                (&stray, "0 bytes is too short for a segment")
            }
        };
        let (status, stderr) = tail.wait_exit();
        assert_eq!(status.code(), Some(1), "{case}: {stderr}");
        assert!(
            stderr.starts_with(&format!("corelane journal: {}", blamed.display())),
            "{case}: {stderr}"
        );
        assert!(!stderr.contains("end marker"), "{case}: {stderr}");
        assert!(stderr.contains(expected), "{case}: {stderr}");
    }
}

/// `tail --follow` waits at a torn tail (saying so once) instead of ending
/// there with an error: the next writer cuts it and appends in its place,
/// and the tail prints what it appends.
#[test]
fn follow_waits_at_a_torn_tail_for_the_next_writer() {
    let dir = Scratch::new("follow-torn");
    let mut writer = open(&dir.0);
    for payload in ["one", "two"] {
        append(&mut writer, b"chan", payload.as_bytes());
    }
    let last = writer.position();
    append(&mut writer, b"chan", b"torn");
    drop(writer);
    // The last frame's length reached the disk but not all its payload.
    let segment = corelane::segment::journal::dir::segment_path(&dir.0, 0);
    let mut bytes = fs::read(&segment).unwrap();
    let at = corelane::segment::layout::HEADER_PAGE
        + last as usize
        + corelane::frame::layout::PAYLOAD_OFFSET;
    bytes[at] ^= 0xff;
    fs::write(&segment, &bytes).unwrap();

    let tail = Tail::start(&dir.0);
    tail.wait_for(" chan two");
    tail.wait_for_error(&format!("torn tail at position {last}: "));
    let mut writer = open(&dir.0);
    assert_eq!(writer.recovery().torn_tail.as_ref().unwrap().position, last);
    append(&mut writer, b"chan", b"three");
    let (line, skipped) = tail.wait_for(" chan three");
    assert!(line.starts_with(&format!("{last} ")), "{line}");
    assert!(skipped.is_empty(), "{skipped:?}");
}
