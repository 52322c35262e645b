//! Segment file names: the base position in zero-padded hex, so that names
//! sort in position order.

use std::fs;
use std::path::{Path, PathBuf};

use super::error::JournalError;
use super::writer::MAX_SEGMENT_SIZE;
use crate::segment::{Access, Segment, SegmentError, SegmentKind};

/// Suffix of every journal segment file.
pub const SEGMENT_SUFFIX: &str = ".journal";

/// Name of the lock file that keeps a second writer out of a directory.
pub const LOCK_FILE: &str = "writer.lock";

/// The file name of the segment based at `base`: 16 hex digits, then the
/// suffix (`0000000000010000.journal`).
pub fn segment_name(base: u64) -> String {
    format!("{base:016x}{SEGMENT_SUFFIX}")
}

/// The path of the segment based at `base` in `dir`.
pub fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(segment_name(base))
}

/// The base position a segment file name stands for, if it is one.
///
/// Only the names [`segment_name`] writes count: lower-case hex. With
/// upper case taken too, `...a000.journal` and `...A000.journal` would both
/// stand for one base, listed in whatever order the directory gave them,
/// and recovery would keep one or the other from run to run.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(SEGMENT_SUFFIX)?;
    let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if hex.len() != 16 || !hex.bytes().all(lower_hex) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// The segments in `dir`, as (base position, path), in position order.
/// Other files (the lock file, a segment's temporary file while it is
/// created) are ignored.
///
/// # Errors
///
/// [`JournalError::Io`] if the directory cannot be read.
pub fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, JournalError> {
    let entries = fs::read_dir(dir).map_err(|e| JournalError::io(dir, "read directory", e))?;
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| JournalError::io(dir, "read directory", e))?;
        let name = entry.file_name();
        if let Some(base) = name.to_str().and_then(parse_segment_name) {
            segments.push((base, entry.path()));
        }
    }
    segments.sort_unstable_by_key(|&(base, _)| base);
    Ok(segments)
}

/// Opens the journal segment at `path`, refusing one larger than any
/// writer makes: its header says how much of the file to scan, and a
/// sparse file claiming terabytes costs nothing on disk but would keep a
/// scan for the end of its frames busy for hours.
///
/// # Errors
///
/// As [`Segment::open`]; [`SegmentError::BadField`] for a capacity over
/// [`MAX_SEGMENT_SIZE`].
pub(crate) fn open_segment(path: &Path, access: Access) -> Result<Segment, SegmentError> {
    let segment = Segment::open(path, SegmentKind::Journal, access)?;
    let capacity = segment.layout().capacity();
    if capacity > MAX_SEGMENT_SIZE {
        return Err(SegmentError::BadField {
            path: path.to_path_buf(),
            field: "capacity",
            found: capacity as u64,
        });
    }
    Ok(segment)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_by_position() {
        let bases = [0u64, 0x1000, 0xFFFF_0000, u64::MAX - 4095];
        let mut names: Vec<String> = bases.iter().rev().map(|&b| segment_name(b)).collect();
        names.sort();
        let parsed: Vec<u64> = names
            .iter()
            .map(|n| parse_segment_name(n).unwrap())
            .collect();
        assert_eq!(parsed, bases);
        assert_eq!(segment_name(0x10000), "0000000000010000.journal");
    }

    #[test]
    fn other_names_are_not_segments() {
        for name in [
            "writer.lock",
            "10000.journal",
            "000000000001000g.journal",
            "000000000000A000.journal",
            ".0000000000000000.journal.12.34.tmp",
            "0000000000000000.journa",
        ] {
            assert_eq!(parse_segment_name(name), None, "{name}");
        }
    }
}
