//! The journal writer faults in a window of its segment ahead of the tail,
//! never the whole segment: a server opens one journal per core, and
//! resident whole segments made `serve --cores 32 --journal` hold 4 GiB
//! before its first message.
//!
//! Residency is the writer's own mapping's resident set, as
//! `/proc/self/smaps` reports it: what the process holds, which is what
//! the finding was about (the page cache may hold more of the file, in
//! folios larger than the window).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use corelane::frame::layout::FrameMeta;
use corelane::segment::journal::dir::segment_path;
use corelane::segment::journal::writer::POPULATE_AHEAD;
use corelane::segment::journal::{Durability, JournalConfig, JournalWriter};
use corelane::segment::layout::HEADER_PAGE;

mod common;
use common::Scratch;

/// A segment far larger than the window.
const SEGMENT: usize = 64 << 20;

/// Resident bytes of this process's mappings of the file at `path`, found
/// by inode: a segment is mapped under the temporary name it was made
/// with, which smaps shows as deleted once it is renamed.
fn mapped_resident(path: &Path) -> usize {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let inode = std::fs::metadata(path).unwrap().ino().to_string();
    let mut inside = false;
    let mut kib = 0;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            // A mapping's header line: range, perms, offset, dev, inode, path.
            inside = line.split_whitespace().nth(4) == Some(inode.as_str());
        } else if inside && first == "Rss:" {
            kib += line
                .split_whitespace()
                .nth(1)
                .unwrap()
                .parse::<usize>()
                .unwrap();
        }
    }
    kib * 1024
}

#[test]
fn writer_faults_in_a_window_ahead_of_its_tail_not_the_segment() {
    let dir = Scratch::new("populate-window");
    let config = JournalConfig {
        segment_size: SEGMENT,
        durability: Durability::None,
    };
    let mut writer = JournalWriter::open(&dir.0, config).unwrap();
    let segment = segment_path(&dir.0, 0);

    // Opened: the header page and the first window, not the segment.
    let resident = mapped_resident(&segment);
    assert!(
        (POPULATE_AHEAD..=HEADER_PAGE + POPULATE_AHEAD).contains(&resident),
        "{resident} bytes resident on open"
    );

    // Three windows of frames later: what was written, and up to a window
    // past the tail, faulted in before anything is written there.
    let payload = vec![7u8; 4000];
    let meta = FrameMeta {
        msg_type: 5,
        version: 1,
        ..FrameMeta::default()
    };
    while (writer.position() as usize) < 3 * POPULATE_AHEAD {
        writer.append(&payload, meta).unwrap();
    }
    let tail = writer.position() as usize;
    let resident = mapped_resident(&segment);
    assert!(
        resident >= tail + POPULATE_AHEAD / 4,
        "{resident} bytes resident at tail {tail}: nothing ahead"
    );
    assert!(
        resident <= HEADER_PAGE + tail + 2 * POPULATE_AHEAD,
        "{resident} bytes resident at tail {tail}"
    );
}
