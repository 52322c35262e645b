//! Why a segment file could not be created or opened.

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::layout::SegmentKind;

/// Why a segment file could not be created or opened. Every variant names
/// the file.
#[derive(Debug)]
pub enum SegmentError {
    /// A system call failed.
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done ("open", "fallocate", "map", ...).
        op: &'static str,
        /// The operating system's error.
        source: io::Error,
    },
    /// The file to create is already there; segments are never overwritten.
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The capacity asked for is not a non-zero multiple of the frame
    /// alignment, or does not suit the kind of segment.
    BadCapacity {
        /// The file.
        path: PathBuf,
        /// Bytes asked for.
        capacity: usize,
    },
    /// The file is not a regular file.
    NotAFile {
        /// The file.
        path: PathBuf,
    },
    /// Others than the owner may write the file, so its contents cannot be
    /// trusted to stay as validated.
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is shorter than a header page (an empty file, say).
    TooShort {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
        /// The least length a segment can have.
        need: u64,
    },
    /// The file does not start with the segment magic.
    BadMagic {
        /// The file.
        path: PathBuf,
    },
    /// The header was written by another version of the layout.
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// Version found.
        found: u32,
    },
    /// The header says the file holds something else.
    WrongKind {
        /// The file.
        path: PathBuf,
        /// What the caller asked to open.
        expected: SegmentKind,
        /// The kind code found.
        found: u32,
    },
    /// A header field has a value this code cannot accept.
    BadField {
        /// The file.
        path: PathBuf,
        /// Which field.
        field: &'static str,
        /// The value found.
        found: u64,
    },
    /// The file's length is not what its header says it should be.
    SizeMismatch {
        /// The file.
        path: PathBuf,
        /// Its length, from fstat.
        file_len: u64,
        /// The length its header implies.
        expected: u64,
    },
    /// The writer has not finished the header (or died before it did).
    NotInitialised {
        /// The file.
        path: PathBuf,
    },
    /// The file was truncated while mapped: part of what was mapped is
    /// gone (see [`super::sigbus`]).
    Truncated {
        /// The file.
        path: PathBuf,
    },
}

impl SegmentError {
    pub(crate) fn io(path: &std::path::Path, op: &'static str, source: io::Error) -> Self {
        SegmentError::Io {
            path: path.to_path_buf(),
            op,
            source,
        }
    }
}

impl fmt::Display for SegmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SegmentError::Io { path, op, source } => {
                write!(f, "{}: {op} failed: {source}", path.display())
            }
            SegmentError::Exists { path } => {
                write!(
                    f,
                    "{}: already exists; segments are never overwritten",
                    path.display()
                )
            }
            SegmentError::BadCapacity { path, capacity } => write!(
                f,
                "{}: capacity {capacity} is not a valid frame area size",
                path.display()
            ),
            SegmentError::NotAFile { path } => write!(f, "{}: not a regular file", path.display()),
            SegmentError::Truncated { path } => write!(
                f,
                "{}: truncated while mapped; what it held past its new end is gone",
                path.display()
            ),
            SegmentError::Permissions { path, mode } => write!(
                f,
                "{}: permissions {mode:o} let others write it; a segment must be owner-only",
                path.display()
            ),
            SegmentError::TooShort { path, len, need } => write!(
                f,
                "{}: {len} bytes is too short for a segment (at least {need})",
                path.display()
            ),
            SegmentError::BadMagic { path } => {
                write!(f, "{}: not a corelane segment (bad magic)", path.display())
            }
            SegmentError::UnsupportedVersion { path, found } => write!(
                f,
                "{}: segment format version {found} is not supported (this build reads {})",
                path.display(),
                super::layout::FORMAT_VERSION
            ),
            SegmentError::WrongKind {
                path,
                expected,
                found,
            } => {
                let found = SegmentKind::from_code(*found)
                    .map_or_else(|| format!("unknown kind {found}"), |k| k.name().to_string());
                write!(
                    f,
                    "{}: expected a {}, found a {found}",
                    path.display(),
                    expected.name()
                )
            }
            SegmentError::BadField { path, field, found } => write!(
                f,
                "{}: header field {field} has an impossible value {found}",
                path.display()
            ),
            SegmentError::SizeMismatch {
                path,
                file_len,
                expected,
            } => write!(
                f,
                "{}: file is {file_len} bytes but its header implies {expected}",
                path.display()
            ),
            SegmentError::NotInitialised { path } => write!(
                f,
                "{}: header not initialised (writer unfinished or dead)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for SegmentError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SegmentError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
