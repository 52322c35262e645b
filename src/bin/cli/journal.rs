//! `corelane journal inspect|tail`: reading journals from the command line.
//!
//! Both accept a journal directory (segment files) or the directory given
//! to `corelane serve --journal`, whose per-core journals live in `core-N`
//! subdirectories; then every core's journal is inspected or tailed.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use corelane::segment::journal::dir::list_segments;
use corelane::segment::journal::{
    inspect, Damage, JournalError, JournalFrame, LeftoverSegment, SegmentSummary,
};
use corelane::serve::Published;

use crate::journal_follow::{core_dirs, TailError, TailSet, RESCAN};

/// How often `tail --follow` polls a journal that has nothing new.
const FOLLOW_POLL: Duration = Duration::from_millis(10);

#[derive(clap::Subcommand)]
pub enum JournalCommand {
    /// Check every segment: frame counts, first and last positions, torn
    /// tails and damage. Exits with status 1 if damage is found.
    Inspect {
        /// The journal directory (or a `serve --journal` directory).
        dir: PathBuf,
    },
    /// Print frames: published messages as position, time, channel and
    /// payload, each line led by `core-N` for a `serve --journal` directory.
    Tail {
        /// The journal directory (or a `serve --journal` directory).
        dir: PathBuf,
        /// Start at the frame with this position (one journal only).
        #[arg(long)]
        from: Option<u64>,
        /// Keep printing frames as they are appended, until interrupted;
        /// `core-N` directories that appear meanwhile are followed too.
        #[arg(long)]
        follow: bool,
    },
}

/// Runs a `journal` subcommand.
pub fn run(command: JournalCommand) -> ExitCode {
    let (JournalCommand::Inspect { dir } | JournalCommand::Tail { dir, .. }) = &command;
    // A mistyped path is the likely cause: say so in plain words, rather
    // than as the step that failed on it.
    if dir.symlink_metadata().is_err() {
        eprintln!(
            "corelane journal: {}: no such directory (give the directory passed to \
             `serve --journal`, or one of its core-N directories)",
            dir.display()
        );
        return ExitCode::FAILURE;
    }
    // A segment file is the other likely slip (`inspect` reads like it
    // takes one): name the directory to give, rather than the operating
    // system's "Not a directory" from listing it.
    if dir.is_file() {
        let parent = match dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        eprintln!(
            "corelane journal: {}: is a file, not a directory (give the directory that \
             holds a journal's segments, such as {}, or the directory passed to \
             `serve --journal`)",
            dir.display(),
            parent.display()
        );
        return ExitCode::FAILURE;
    }
    let result = match command {
        JournalCommand::Inspect { dir } => inspect_command(&dir),
        JournalCommand::Tail { dir, from, follow } => tail_command(&dir, from, follow),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("corelane journal: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The journals under `dir`: itself if it holds segments (or nothing at
/// all), else its `core-N` subdirectories in core order.
fn journals(dir: &Path) -> Result<Vec<PathBuf>, TailError> {
    let cores = core_dirs(dir)?;
    if cores.is_empty() || !list_segments(dir)?.is_empty() {
        return Ok(vec![dir.to_path_buf()]);
    }
    Ok(cores.into_iter().map(|(_, path)| path).collect())
}

fn inspect_command(dir: &Path) -> Result<ExitCode, TailError> {
    let mut out = io::stdout().lock();
    let mut failed = false;
    for journal in journals(dir)? {
        let inspection = inspect(&journal)?;
        let segments = &inspection.segments;
        if segments.is_empty() && inspection.damage.is_none() {
            // A writer makes its first segment when it opens, so a journal
            // has at least one: this is most likely a mistyped path. (A
            // first segment too damaged to summarise is reported below.)
            say_no_segments(&journal);
            failed = true;
            continue;
        }
        let first = segments.iter().find_map(|s| s.first);
        let last = segments.iter().rev().find_map(|s| s.last);
        // Every segment file checked is counted, a leftover too (it is
        // listed below, and the writer's recovery counts it); the line
        // says how many of them are leftovers, which hold no frame.
        let leftovers = match &inspection.leftover {
            Some(_) => " (1 a leftover, empty)",
            None => "",
        };
        let _ = writeln!(
            out,
            "journal {}: {}{leftovers}, {}, first position {}, last position {}, ends at {}",
            journal.display(),
            counted(inspection.segment_count() as u64, "segment"),
            counted(inspection.frames(), "frame"),
            shown(first),
            shown(last),
            segments.last().map_or(0, |s| s.end),
        );
        // The segment the damage is in is not open for appends: the
        // writer refuses the journal. A gap after a segment is not that
        // segment's damage: it is listed as it is (sealed).
        let damaged = match &inspection.damage {
            Some(JournalError::Damaged {
                damage: Damage::Gap { .. },
                ..
            }) => None,
            Some(JournalError::Damaged { path, .. }) => Some(path.as_path()),
            _ => None,
        };
        for segment in segments {
            let state = if damaged == Some(segment.path.as_path()) {
                format!("damaged, valid to {} bytes", segment.end - segment.base)
            } else if segment.sealed {
                "sealed".to_string()
            } else if segment.frames == 0 && segment.torn_tail.is_none() {
                "empty, the next frame goes here".to_string()
            } else {
                format!("open, {} bytes used", segment.end - segment.base)
            };
            let _ = writeln!(out, "  {}  {state}", segment_line(segment));
            if let Some(tail) = &segment.torn_tail {
                let why = tail
                    .damage
                    .as_ref()
                    .map_or_else(|| "unpublished frame".to_string(), ToString::to_string);
                let _ = writeln!(
                    out,
                    "    torn tail at position {}: {} bytes ({why}); the writer cuts it on open",
                    tail.position, tail.bytes
                );
            }
        }
        if let Some(leftover) = &inspection.leftover {
            let _ = writeln!(out, "  {}", leftover_line(leftover));
        }
        match &inspection.damage {
            Some(error) => {
                failed = true;
                let _ = writeln!(out, "  DAMAGE: {error}");
                // The writer passes over a segment cut short only where it
                // reaches it: after a sealed segment (or with none before
                // it). After one that ends without an end marker, the file
                // is blamed for that missing marker, and the writer
                // refuses the journal with the same error.
                let passed_over = segments.last().is_none_or(|last| last.sealed);
                if error.is_cut_short() && passed_over {
                    let _ = writeln!(
                        out,
                        "  (the file was cut short after it was written: the writer, on open, \
                         leaves it as it is and resumes appends past every position it could \
                         have held)"
                    );
                }
                let _ = writeln!(out, "  (segments after the damage were not checked)");
            }
            None => {
                let _ = writeln!(out, "  no damage");
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `count` of `noun`, in the plural unless there is one.
fn counted(count: u64, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// Says on stderr that `dir` holds no journal, and what one looks like.
fn say_no_segments(dir: &Path) {
    let error = TailError::NoSegments {
        dir: dir.to_path_buf(),
    };
    eprintln!("corelane journal: {error}");
}

fn segment_line(segment: &SegmentSummary) -> String {
    let name = segment
        .path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    format!(
        "{name}  base {}  capacity {}  frames {}  first {}  last {}",
        segment.base,
        segment.capacity,
        segment.frames,
        shown(segment.first),
        shown(segment.last),
    )
}

/// What a leftover segment is, in plain words: no damage, and what the
/// next writer does with it.
fn leftover_line(leftover: &LeftoverSegment) -> String {
    let name = leftover
        .path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let lost = if leftover.header_sound {
        ""
    } else {
        ", its header or size not on the disk"
    };
    format!(
        "{name}  base {}  empty (linked at a roll, then a crash before its first frame{lost}); \
         not damage: the next writer removes it and appends after the last frame",
        leftover.base
    )
}

fn shown(position: Option<u64>) -> String {
    position.map_or_else(|| "-".to_string(), |p| p.to_string())
}

fn tail_command(dir: &Path, from: Option<u64>, follow: bool) -> Result<ExitCode, TailError> {
    let mut set = TailSet::open(dir, from)?;
    if !follow && set.is_undecided() {
        // Nothing to print and nothing to wait for: as for `inspect`, most
        // likely a mistyped path, not an empty journal (a writer makes its
        // first segment when it opens).
        say_no_segments(dir);
        return Ok(ExitCode::FAILURE);
    }
    let mut out = io::stdout().lock();
    let mut last_scan = Instant::now();
    loop {
        let (printed, open) = set.read_new(|label, frame| {
            // A failed write means the reader of our output went away
            // (`| head`).
            writeln!(out, "{label}{}", frame_line(frame)).is_ok()
        })?;
        if !open {
            return Ok(ExitCode::SUCCESS);
        }
        if !follow {
            // "Nothing more yet" is the end only if nothing is wrong
            // there: report what `inspect` would, with its status.
            set.check_ends()?;
            return Ok(ExitCode::SUCCESS);
        }
        if last_scan.elapsed() >= RESCAN {
            set.rescan()?;
            last_scan = Instant::now();
        }
        if printed == 0 {
            let _ = out.flush();
            std::thread::sleep(FOLLOW_POLL);
        }
    }
}

/// One frame as a line: a published message as position, time, channel
/// and payload; any other frame as its header fields and size.
///
/// The payload runs to the end of the line, so only the channel needs its
/// spaces escaped for the fields to split on spaces.
fn frame_line(frame: &JournalFrame<'_>) -> String {
    match frame.message::<Published>() {
        Ok(message) => format!(
            "{} {} {} {}",
            frame.position,
            utc(message.time_ns.to_native()),
            field(&message.channel),
            escaped(&message.payload)
        ),
        Err(_) => format!(
            "{} type {} version {} {} bytes",
            frame.position,
            frame.meta.msg_type,
            frame.meta.version,
            frame.payload.len()
        ),
    }
}

/// Bytes as printable ASCII, the rest escaped (`\n`, `\x00`).
fn escaped(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// As [`escaped`], with spaces escaped too (`\x20`), for a field followed
/// by others on the line.
fn field(bytes: &[u8]) -> String {
    escaped(bytes).replace(' ', "\\x20")
}

/// Nanoseconds since the Unix epoch as an RFC 3339 UTC time.
fn utc(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian), by eras
    // of 400 years.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        ns % 1_000_000_000
    )
}

#[cfg(test)]
mod tests {
    use super::{field, utc};

    #[test]
    fn a_field_keeps_no_space_and_no_control_byte() {
        assert_eq!(field(b"news"), "news");
        assert_eq!(field(b"a b"), "a\\x20b");
        assert_eq!(field(b"tab\there\n"), "tab\\there\\n");
        assert_eq!(field(b"back\\slash"), "back\\\\slash");
    }

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            utc(951_827_696_000_000_007),
            "2000-02-29T12:34:56.000000007Z"
        );
        assert_eq!(
            utc(4_102_444_799_000_000_000),
            "2099-12-31T23:59:59.000000000Z"
        );
    }
}
