//! The journals `corelane journal tail` reads, and how `--follow` keeps
//! that set current.
//!
//! A directory given to `tail` is one journal (it holds segment files) or
//! the directory of `corelane serve --journal`, whose per-core journals are
//! `core-N` subdirectories. A server started with more cores, or a
//! directory that is still empty, gains `core-N` directories while a tail
//! follows it; so a following tail rescans every [`RESCAN`] and starts
//! reading each new core's journal from its beginning. A rescan also checks
//! that every directory being followed is still the one it opened: one
//! removed (or replaced by another of the same name) ends the tail with an
//! error naming it, rather than waiting forever for frames that cannot come.

use std::fmt;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use corelane::segment::journal::dir::list_segments;
use corelane::segment::journal::{JournalError, JournalFrame, JournalReader, Start};

/// How often a following tail looks for new `core-N` directories and
/// checks that the ones it follows are still there.
pub const RESCAN: Duration = Duration::from_millis(250);

/// Why a tail stopped.
#[derive(Debug)]
pub enum TailError {
    /// Reading a journal failed.
    Journal(JournalError),
    /// `--from` names a position in one journal, and the directory holds
    /// several.
    /// `first` is the first core's directory, named as the one to give.
    FromNeedsOneJournal {
        dir: PathBuf,
        journals: usize,
        first: PathBuf,
    },
    /// A directory being followed is gone.
    Removed { dir: PathBuf },
    /// A directory being followed was replaced by another of that name.
    Replaced { dir: PathBuf },
    /// A directory read as a journal holds no segment.
    NoSegments { dir: PathBuf },
}

impl fmt::Display for TailError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TailError::Journal(error) => error.fmt(f),
            TailError::FromNeedsOneJournal {
                dir,
                journals,
                first,
            } => write!(
                f,
                "--from needs one journal; {} holds {journals} (pick a core-N directory, \
                 such as {})",
                dir.display(),
                first.display()
            ),
            TailError::Removed { dir } => {
                write!(f, "{}: directory removed while following it", dir.display())
            }
            TailError::Replaced { dir } => write!(
                f,
                "{}: directory replaced by another while following it",
                dir.display()
            ),
            // A writer makes its first segment when it opens, so this is
            // most likely a mistyped path, or a core that never started.
            TailError::NoSegments { dir } => write!(
                f,
                "{}: no journal segments here (a journal directory holds `*.journal` files \
                 or `core-N` directories of them)",
                dir.display()
            ),
        }
    }
}

impl std::error::Error for TailError {}

impl From<JournalError> for TailError {
    fn from(error: JournalError) -> Self {
        TailError::Journal(error)
    }
}

/// A directory's identity: device and inode.
type DirId = (u64, u64);

/// One journal being read.
struct Tailed {
    /// The core it belongs to, for a `serve --journal` directory.
    core: Option<usize>,
    /// Printed before each of its frames (`core-N ` or nothing).
    label: String,
    dir: PathBuf,
    id: DirId,
    reader: JournalReader,
    /// The reader's position at the last rescan: one still there has
    /// rested a whole [`RESCAN`], and its journal's end is checked.
    rested_at: Option<u64>,
    /// Where its reader stopped at a torn tail (said once on stderr).
    torn_at: Option<u64>,
    /// Where its reader stopped before a leftover segment (said once on
    /// stderr).
    leftover_at: Option<u64>,
}

/// What the directory given to `tail` turned out to be.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Shape {
    /// It holds segments (or `--from` was given and it has no `core-N`
    /// directories): one journal, itself.
    Journal,
    /// It holds `core-N` directories.
    PerCore,
    /// Empty so far: read as one journal until `core-N` directories appear.
    Undecided,
}

/// The journals under the directory given to `tail`.
pub struct TailSet {
    root: PathBuf,
    root_id: DirId,
    shape: Shape,
    journals: Vec<Tailed>,
}

impl TailSet {
    /// Opens a reader on each journal under `root`, from `from` (one
    /// journal only) or the beginning.
    pub fn open(root: &Path, from: Option<u64>) -> Result<TailSet, TailError> {
        let root_id = dir_id(root)?;
        let cores = core_dirs(root)?;
        let shape = if !list_segments(root)?.is_empty() || (from.is_some() && cores.is_empty()) {
            Shape::Journal
        } else if cores.is_empty() {
            Shape::Undecided
        } else {
            Shape::PerCore
        };
        let mut set = TailSet {
            root: root.to_path_buf(),
            root_id,
            shape,
            journals: Vec::new(),
        };
        if shape == Shape::PerCore {
            if from.is_some() {
                return Err(TailError::FromNeedsOneJournal {
                    dir: root.to_path_buf(),
                    journals: cores.len(),
                    first: cores[0].1.clone(),
                });
            }
            for (core, dir) in cores {
                set.add(Some(core), dir, Start::Beginning)?;
            }
        } else {
            let start = from.map_or(Start::Beginning, Start::Position);
            set.add(None, root.to_path_buf(), start)?;
        }
        Ok(set)
    }

    /// Whether the directory held neither segments nor `core-N`
    /// directories when last looked at: a following tail waits for them.
    pub fn is_undecided(&self) -> bool {
        self.shape == Shape::Undecided
    }

    /// Passes every frame written since the last call to `print`, journal
    /// by journal; returns how many there were, or stops early (with the
    /// count so far) when `print` returns `false`.
    pub fn read_new(
        &mut self,
        mut print: impl FnMut(&str, &JournalFrame<'_>) -> bool,
    ) -> Result<(u64, bool), TailError> {
        let mut frames = 0;
        for tailed in &mut self.journals {
            loop {
                let frame = match tailed.reader.next_frame() {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(error) => {
                        // A read that fails because the directory went away
                        // (the next segment cannot be listed) says so.
                        if let Some(gone) = gone(&tailed.dir, tailed.id) {
                            return Err(gone);
                        }
                        if at_torn_tail(tailed, &error)? {
                            break;
                        }
                        return Err(error.into());
                    }
                };
                frames += 1;
                if !print(&tailed.label, &frame) {
                    return Ok((frames, false));
                }
            }
        }
        Ok((frames, true))
    }

    /// Checks that every journal ends where its reader stopped, as
    /// `inspect` would judge it (see [`JournalReader::check_end`]): for a
    /// tail that has read everything and is not following.
    /// A journal with no segment at all is an error here too, as it is to
    /// `inspect` (a following tail waits for its first segment instead).
    pub fn check_ends(&mut self) -> Result<(), TailError> {
        for tailed in &mut self.journals {
            check_end(tailed)?;
            if list_segments(&tailed.dir)?.is_empty() {
                return Err(TailError::NoSegments {
                    dir: tailed.dir.clone(),
                });
            }
        }
        Ok(())
    }

    /// Checks that the directories followed are still there, that each
    /// journal whose reader has rested since the last rescan really ends
    /// there (damage `inspect` reports is reported here too, rather than
    /// waited on for ever), and starts reading `core-N` directories that
    /// appeared since the last scan.
    pub fn rescan(&mut self) -> Result<(), TailError> {
        if let Some(error) = gone(&self.root, self.root_id) {
            return Err(error);
        }
        for tailed in &mut self.journals {
            if let Some(error) = gone(&tailed.dir, tailed.id) {
                return Err(error);
            }
            let position = tailed.reader.position();
            if tailed.rested_at == Some(position) {
                check_end(tailed)?;
            }
            tailed.rested_at = Some(position);
        }
        if self.shape == Shape::Journal {
            return Ok(());
        }
        if self.shape == Shape::Undecided && !list_segments(&self.root)?.is_empty() {
            self.shape = Shape::Journal;
            return Ok(());
        }
        let cores = core_dirs(&self.root)?;
        if cores.is_empty() {
            return Ok(());
        }
        if self.shape == Shape::Undecided {
            // The root's own reader waited for segments that never came.
            self.shape = Shape::PerCore;
            self.journals.clear();
        }
        for (core, dir) in cores {
            if !self.journals.iter().any(|t| t.core == Some(core)) {
                self.add(Some(core), dir, Start::Beginning)?;
            }
        }
        Ok(())
    }

    /// Starts reading the journal in `dir`, keeping the set in core order.
    fn add(&mut self, core: Option<usize>, dir: PathBuf, start: Start) -> Result<(), TailError> {
        let id = dir_id(&dir)?;
        let reader = JournalReader::open(&dir, start)?;
        let label = core.map_or_else(String::new, |core| format!("core-{core} "));
        let at = self.journals.partition_point(|t| t.core < core);
        self.journals.insert(
            at,
            Tailed {
                core,
                label,
                dir,
                id,
                reader,
                rested_at: None,
                torn_at: None,
                leftover_at: None,
            },
        );
        Ok(())
    }
}

/// Checks that `tailed`'s journal ends where its reader stands.
fn check_end(tailed: &mut Tailed) -> Result<(), TailError> {
    match tailed.reader.check_end() {
        Ok(()) => {
            say_leftover(tailed);
            Ok(())
        }
        Err(error) => match gone(&tailed.dir, tailed.id) {
            Some(gone) => Err(gone),
            None if at_torn_tail(tailed, &error)? => Ok(()),
            None => Err(error.into()),
        },
    }
}

/// Whether `error`, met where `tailed`'s reader stands, is a torn tail,
/// as `inspect` calls it: not damage but the end of what a killed writer
/// wrote, which the next writer cuts, so a tail ends (or waits) there.
/// Said on stderr the first time it is met at that position.
fn at_torn_tail(tailed: &mut Tailed, error: &JournalError) -> Result<bool, TailError> {
    let position = tailed.reader.position();
    if !matches!(error, JournalError::Damaged { position: p, .. } if *p == position) {
        return Ok(false);
    }
    let Some(torn) = tailed.reader.torn_tail()? else {
        return Ok(false);
    };
    if tailed.torn_at != Some(position) {
        tailed.torn_at = Some(position);
        let why = torn
            .damage
            .map_or_else(|| "unpublished frame".to_string(), |d| d.to_string());
        eprintln!(
            "corelane journal: {}: torn tail at position {position}: {} bytes ({why}); the \
             writer cuts it on open",
            tailed.dir.display(),
            torn.bytes
        );
    }
    Ok(true)
}

/// Says on stderr, once per position, that `tailed`'s journal ends past
/// its reader in a segment that holds no frame, left by a crash, as
/// `inspect` says it: not damage, removed by the next writer.
fn say_leftover(tailed: &mut Tailed) {
    let position = tailed.reader.position();
    let Some(path) = tailed.reader.leftover() else {
        return;
    };
    if tailed.leftover_at != Some(position) {
        tailed.leftover_at = Some(position);
        eprintln!(
            "corelane journal: {}: the journal ends at position {position}; {} after it is \
             empty (linked at a roll, then a crash before its first frame): not damage, the \
             next writer removes it",
            tailed.dir.display(),
            path.display()
        );
    }
}

/// The `core-N` subdirectories of `root`, in core order.
pub fn core_dirs(root: &Path) -> Result<Vec<(usize, PathBuf)>, TailError> {
    let entries = std::fs::read_dir(root).map_err(|e| io_error(root, "read directory", e))?;
    let mut cores: Vec<(usize, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|entry| {
            let name = entry.file_name();
            let core = core_number(name.to_str()?)?;
            Some((core, entry.path()))
        })
        .collect();
    cores.sort();
    Ok(cores)
}

/// The core a directory named `core-N` belongs to: `N` as the server
/// writes it, digits with no sign and no leading zero. Other spellings of
/// the same number (`core-00`, `core-+1`: copies, most likely) are not
/// core directories, so that no core is read twice under one label.
fn core_number(name: &str) -> Option<usize> {
    let digits = name.strip_prefix("core-")?;
    let core: usize = digits.parse().ok()?;
    (core.to_string() == digits).then_some(core)
}

fn dir_id(dir: &Path) -> Result<DirId, TailError> {
    let meta = std::fs::metadata(dir).map_err(|e| io_error(dir, "stat", e))?;
    Ok((meta.dev(), meta.ino()))
}

/// Whether `dir` is no longer the directory `id` names.
fn gone(dir: &Path, id: DirId) -> Option<TailError> {
    match std::fs::metadata(dir) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Some(TailError::Removed {
            dir: dir.to_path_buf(),
        }),
        Ok(meta) if (meta.dev(), meta.ino()) != id => Some(TailError::Replaced {
            dir: dir.to_path_buf(),
        }),
        _ => None,
    }
}

fn io_error(path: &Path, op: &'static str, source: io::Error) -> TailError {
    TailError::Journal(JournalError::Io {
        path: path.to_path_buf(),
        op,
        source,
    })
}
