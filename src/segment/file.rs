//! A segment file, created and opened safely, and mapped.
//!
//! Creation follows the design's rules for mapped files: the file is made
//! under a temporary name with owner-only permissions, its space reserved
//! with `posix_fallocate` before it is mapped (so a full disk is an error
//! now, not a SIGBUS later), its header written with the `initialised` word
//! last, and only then linked under its real name. Linking (rather than
//! renaming) fails if the name is taken, so a segment is never overwritten.
//!
//! Opening trusts nothing: the length comes from `fstat` before anything is
//! mapped, and every header field is checked against it before any frame is
//! read. The mapping is never handed out as `&[u8]`: another process may
//! change it at any time, so callers read it through raw pointers and
//! atomics ([`Segment::base`], [`Segment::ring_region`]).

use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use memmap2::{MmapOptions, MmapRaw};

use super::error::SegmentError;
use super::layout::*;
use super::sigbus::{self, MappingGuard};
use crate::frame::layout::FRAME_ALIGN;
use crate::lane::region::Region;

/// Permission bits of every segment file: read and write for the owner.
pub const SEGMENT_MODE: u32 = 0o600;

/// Whether a segment is opened for writing or only for reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read and write (a ring's reader writes its consumer position).
    ReadWrite,
    /// Read only (journal inspection and tailing).
    ReadOnly,
}

/// The header fields of a segment, as validated when it was opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// What the file holds.
    pub kind: SegmentKind,
    /// Bytes in the frame area.
    pub capacity: usize,
    /// Position of the first frame byte.
    pub base_position: u64,
    /// Creation time, nanoseconds since the Unix epoch.
    pub created_unix_ns: u64,
    /// Process id of the writer that created it.
    pub writer_pid: u32,
}

/// A mapped segment file.
#[derive(Debug)]
pub struct Segment {
    path: PathBuf,
    file: File,
    /// Registers `map` with the SIGBUS handler; declared before `map` so
    /// that it is dropped (unregistered) before the unmap.
    guard: MappingGuard,
    map: MmapRaw,
    header: SegmentHeader,
    layout: SegmentLayout,
    access: Access,
}

impl Segment {
    /// Creates a segment at `path` with a frame area of `capacity` bytes,
    /// zeroed, its header complete.
    ///
    /// # Errors
    ///
    /// [`SegmentError::Exists`] if `path` is taken,
    /// [`SegmentError::BadCapacity`] unless `capacity` is a non-zero
    /// multiple of [`FRAME_ALIGN`], [`SegmentError::Io`] if a system call
    /// fails (a full disk shows here, from `posix_fallocate`).
    pub fn create(
        path: &Path,
        kind: SegmentKind,
        capacity: usize,
        base_position: u64,
    ) -> Result<Segment, SegmentError> {
        Self::create_inner(path, kind, capacity, base_position, false)
    }

    /// As [`Segment::create`], and takes an exclusive `flock` on the file
    /// before it appears under its name: the lock, held until the segment
    /// is dropped, tells other processes that its writer is alive from the
    /// first moment they can open it.
    ///
    /// # Errors
    ///
    /// As [`Segment::create`].
    pub fn create_locked(
        path: &Path,
        kind: SegmentKind,
        capacity: usize,
        base_position: u64,
    ) -> Result<Segment, SegmentError> {
        Self::create_inner(path, kind, capacity, base_position, true)
    }

    fn create_inner(
        path: &Path,
        kind: SegmentKind,
        capacity: usize,
        base_position: u64,
        lock: bool,
    ) -> Result<Segment, SegmentError> {
        let layout = SegmentLayout::new(capacity).ok_or_else(|| SegmentError::BadCapacity {
            path: path.to_path_buf(),
            capacity,
        })?;
        if path.exists() {
            return Err(SegmentError::Exists {
                path: path.to_path_buf(),
            });
        }
        let temporary = TemporaryFile::new(path);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(SEGMENT_MODE)
            .open(&temporary.path)
            .map_err(|e| SegmentError::io(&temporary.path, "create", e))?;
        // The umask can only take bits away from 0600; set it outright anyway
        // so the file's mode never depends on the caller's environment.
        file.set_permissions(fs::Permissions::from_mode(SEGMENT_MODE))
            .map_err(|e| SegmentError::io(&temporary.path, "chmod", e))?;
        let file_len = layout.file_len();
        let off_len = libc::off_t::try_from(file_len).map_err(|_| SegmentError::BadCapacity {
            path: path.to_path_buf(),
            capacity,
        })?;
        // SAFETY: `file` is an open descriptor we own; posix_fallocate only
        // reserves space for it.
        let status = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, off_len) };
        if status != 0 {
            return Err(SegmentError::io(
                &temporary.path,
                "fallocate",
                std::io::Error::from_raw_os_error(status),
            ));
        }
        let map = MmapOptions::new()
            .len(file_len)
            .map_raw(&file)
            .map_err(|e| SegmentError::io(&temporary.path, "map", e))?;
        let guard = sigbus::register(map.as_ptr(), map.len(), true);
        let header = SegmentHeader {
            kind,
            capacity,
            base_position,
            created_unix_ns: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
            writer_pid: std::process::id(),
        };
        let segment = Segment {
            path: path.to_path_buf(),
            file,
            guard,
            map,
            header,
            layout,
            access: Access::ReadWrite,
        };
        segment.write_header();
        if lock {
            // SAFETY: flock only takes a lock on a descriptor we own.
            if unsafe { libc::flock(segment.file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0
            {
                let error = std::io::Error::last_os_error();
                return Err(SegmentError::io(&temporary.path, "flock", error));
            }
        }
        link_new(&temporary.path, path)?;
        drop(temporary);
        Ok(segment)
    }

    /// Opens the segment at `path`, which must hold a `kind`, checking its
    /// length and every header field before anything else is read.
    ///
    /// # Errors
    ///
    /// A [`SegmentError`] naming the file and what is wrong with it: too
    /// short, bad magic, unsupported version, wrong kind, impossible header
    /// field, length not matching the header, header not initialised,
    /// permissions open to others, or a failed system call.
    pub fn open(path: &Path, kind: SegmentKind, access: Access) -> Result<Segment, SegmentError> {
        // Non-blocking, so that a named pipe where a segment should be is
        // refused below rather than blocking the open until a writer comes;
        // the flag changes nothing for a regular file.
        let file = OpenOptions::new()
            .read(true)
            .write(access == Access::ReadWrite)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| SegmentError::io(path, "open", e))?;
        let metadata = file
            .metadata()
            .map_err(|e| SegmentError::io(path, "fstat", e))?;
        if !metadata.is_file() {
            return Err(SegmentError::NotAFile {
                path: path.to_path_buf(),
            });
        }
        if metadata.mode() & 0o022 != 0 {
            return Err(SegmentError::Permissions {
                path: path.to_path_buf(),
                mode: metadata.mode() & 0o7777,
            });
        }
        let file_len = metadata.len();
        let need = (HEADER_PAGE + FRAME_ALIGN + crate::lane::frames::TRAILER_LEN) as u64;
        if file_len < need {
            return Err(SegmentError::TooShort {
                path: path.to_path_buf(),
                len: file_len,
                need,
            });
        }
        let map_len = usize::try_from(file_len).map_err(|_| SegmentError::BadField {
            path: path.to_path_buf(),
            field: "file length",
            found: file_len,
        })?;
        let mut options = MmapOptions::new();
        options.len(map_len);
        let map = match access {
            Access::ReadWrite => options.map_raw(&file),
            Access::ReadOnly => options.map_raw_read_only(&file),
        }
        .map_err(|e| SegmentError::io(path, "map", e))?;
        // Registered before the header is read: the file may be cut
        // between the fstat above and the reads below.
        let guard = sigbus::register(map.as_ptr(), map.len(), access == Access::ReadWrite);
        let (header, layout) = validate(path, &map, kind, file_len)?;
        if guard.truncated() {
            return Err(SegmentError::Truncated {
                path: path.to_path_buf(),
            });
        }
        Ok(Segment {
            path: path.to_path_buf(),
            file,
            guard,
            map,
            header,
            layout,
            access,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file (for locks and syncs).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The validated header.
    pub fn header(&self) -> &SegmentHeader {
        &self.header
    }

    /// Where everything is in the file.
    pub fn layout(&self) -> SegmentLayout {
        self.layout
    }

    /// How the file was opened.
    pub fn access(&self) -> Access {
        self.access
    }

    /// First byte of the mapping. Valid for `layout().file_len()` bytes
    /// while `self` lives; writable only if opened [`Access::ReadWrite`].
    /// Another process may change any byte at any time: read through raw
    /// pointers or atomics, never through a `&[u8]` held across reads.
    pub fn base(&self) -> NonNull<u8> {
        NonNull::new(self.map.as_mut_ptr()).expect("a mapping is never at address zero")
    }

    /// Whether the file was found truncated under the mapping: a page past
    /// its new end was touched (see [`super::sigbus`]) or
    /// [`check_length`](Self::check_length) found it short. Call it after
    /// reading or writing the mapping; bytes read since the truncation may
    /// be zeros standing in for lost ones.
    #[inline]
    pub fn truncated(&self) -> bool {
        self.guard.truncated()
    }

    /// [`SegmentError::Truncated`] if [`truncated`](Self::truncated).
    ///
    /// # Errors
    ///
    /// As said.
    #[inline]
    pub fn check_truncated(&self) -> Result<(), SegmentError> {
        if self.truncated() {
            return Err(SegmentError::Truncated {
                path: self.path.clone(),
            });
        }
        Ok(())
    }

    /// Asks the file's length (fstat) and reports it truncated if it is
    /// shorter than the mapping; for readers waiting on pages they have
    /// not touched since a truncation (those do not fault).
    ///
    /// # Errors
    ///
    /// [`SegmentError::Truncated`], or the fstat's error.
    pub fn check_length(&self) -> Result<(), SegmentError> {
        let len = self
            .file
            .metadata()
            .map_err(|e| SegmentError::io(&self.path, "fstat", e))?
            .len();
        if len < self.map.len() as u64 {
            // Sticky, for the checks after each access (when guarded).
            self.guard.mark_truncated();
            return Err(SegmentError::Truncated {
                path: self.path.clone(),
            });
        }
        self.check_truncated()
    }

    /// The writer's heartbeat word (nanoseconds on the writer's clock).
    pub fn heartbeat(&self) -> &AtomicU64 {
        // SAFETY: HEARTBEAT_OFFSET + 8 is inside the header page of a
        // page-aligned mapping at least that long (checked at open/create),
        // so the word is in bounds and 8-aligned; it is only accessed
        // atomically, by every process that maps the file.
        unsafe { AtomicU64::from_ptr(self.base().as_ptr().add(HEARTBEAT_OFFSET).cast()) }
    }

    /// The frame area and position lines as a ring [`Region`].
    ///
    /// # Errors
    ///
    /// The segment when it was opened read-only: a ring needs to write.
    pub fn ring_region(self: Arc<Self>) -> Result<SegmentRegion, Arc<Self>> {
        if self.access != Access::ReadWrite {
            return Err(self);
        }
        Ok(SegmentRegion { segment: self })
    }

    /// Writes dirty pages of `len` bytes from `offset` to the file and waits
    /// (msync); see [`Segment::sync`] for the whole file.
    ///
    /// # Errors
    ///
    /// The system call's error.
    pub fn sync_range(&self, offset: usize, len: usize) -> Result<(), SegmentError> {
        self.map
            .flush_range(offset, len)
            .map_err(|e| SegmentError::io(&self.path, "msync", e))
    }

    /// Writes every dirty page and the file's metadata to the disk.
    ///
    /// # Errors
    ///
    /// The system call's error.
    pub fn sync(&self) -> Result<(), SegmentError> {
        self.map
            .flush()
            .map_err(|e| SegmentError::io(&self.path, "msync", e))?;
        self.file
            .sync_all()
            .map_err(|e| SegmentError::io(&self.path, "fsync", e))
    }

    /// Gives the file a new name: links it at `path` (never over an
    /// existing file), then removes the old name. For a segment prepared
    /// under a private name and published when it is needed.
    ///
    /// # Errors
    ///
    /// [`SegmentError::Exists`] if `path` is taken, [`SegmentError::Io`] if
    /// a system call fails.
    pub fn rename_to(&mut self, path: &Path) -> Result<(), SegmentError> {
        link_new(&self.path, path)?;
        fs::remove_file(&self.path).map_err(|e| SegmentError::io(&self.path, "unlink", e))?;
        self.path = path.to_path_buf();
        Ok(())
    }

    /// Asks the kernel to fault in `len` bytes of the mapping from `offset`
    /// for writing now (`MADV_POPULATE_WRITE`, Linux 5.14 and later), so
    /// that the first writes there take no page fault (nor, for space
    /// reserved by fallocate, the filesystem's work of marking it written).
    /// A hint: a kernel without it leaves the faults for later.
    pub fn populate(&self, offset: usize, len: usize) {
        let len = len.min(self.layout.file_len().saturating_sub(offset));
        if len == 0 {
            return;
        }
        let page = HEADER_PAGE;
        let start = offset / page * page;
        // SAFETY: `start..offset + len` lies inside this mapping (clamped
        // above; `start` is rounded down to a page, still inside it), which
        // lives as long as `self`. MADV_POPULATE_WRITE only faults pages
        // in; it changes no byte.
        let rc = unsafe {
            libc::madvise(
                self.base().as_ptr().add(start).cast(),
                offset + len - start,
                libc::MADV_POPULATE_WRITE,
            )
        };
        if rc != 0 {
            log::debug!(
                "{}: madvise(POPULATE_WRITE): {}",
                self.path.display(),
                std::io::Error::last_os_error()
            );
        }
    }

    fn write_header(&self) {
        let base = self.base().as_ptr();
        let h = &self.header;
        // SAFETY: the mapping is writable, page-aligned and at least a header
        // page long; every offset below is inside it and aligned for its
        // type. No other process can see the file yet (it has a temporary
        // name), so plain writes do not race.
        unsafe {
            base.add(MAGIC_OFFSET)
                .copy_from_nonoverlapping(MAGIC.as_ptr(), MAGIC.len());
            base.add(VERSION_OFFSET).cast::<u32>().write(FORMAT_VERSION);
            base.add(KIND_OFFSET).cast::<u32>().write(h.kind as u32);
            base.add(HEADER_LEN_OFFSET)
                .cast::<u32>()
                .write(HEADER_PAGE as u32);
            base.add(FRAME_ALIGN_OFFSET)
                .cast::<u32>()
                .write(FRAME_ALIGN as u32);
            base.add(CAPACITY_OFFSET)
                .cast::<u64>()
                .write(h.capacity as u64);
            base.add(BASE_POSITION_OFFSET)
                .cast::<u64>()
                .write(h.base_position);
            base.add(CREATED_OFFSET)
                .cast::<u64>()
                .write(h.created_unix_ns);
            base.add(WRITER_PID_OFFSET)
                .cast::<u32>()
                .write(h.writer_pid);
        }
        // Release pairs with the Acquire load in `validate`: a reader that
        // sees INITIALISED sees every field above.
        self.initialised_word()
            .store(INITIALISED, Ordering::Release);
    }

    fn initialised_word(&self) -> &AtomicU32 {
        // SAFETY: in bounds and 4-aligned inside the header page; accessed
        // only atomically.
        unsafe { AtomicU32::from_ptr(self.base().as_ptr().add(INITIALISED_OFFSET).cast()) }
    }
}

/// Reads and checks every header field of a mapping `file_len` bytes long.
fn validate(
    path: &Path,
    map: &MmapRaw,
    kind: SegmentKind,
    file_len: u64,
) -> Result<(SegmentHeader, SegmentLayout), SegmentError> {
    let base = map.as_ptr();
    // Another process may write the header while we read it, so every field
    // is read atomically (a torn or changing value is then just a value,
    // checked like any other).
    let u32_at = |offset: usize| {
        // SAFETY: callers pass offsets of u32 fields inside the header page;
        // the mapping is page-aligned and at least a header page long.
        unsafe { AtomicU32::from_ptr(base.add(offset).cast_mut().cast()) }.load(Ordering::Relaxed)
    };
    let u64_at = |offset: usize| {
        // SAFETY: as above, for u64 fields.
        unsafe { AtomicU64::from_ptr(base.add(offset).cast_mut().cast()) }.load(Ordering::Relaxed)
    };
    let bad = |field, found| SegmentError::BadField {
        path: path.to_path_buf(),
        field,
        found,
    };
    // Acquire pairs with the Release store in `write_header`.
    // SAFETY: as for `u32_at`.
    let initialised =
        unsafe { AtomicU32::from_ptr(base.add(INITIALISED_OFFSET).cast_mut().cast()) }
            .load(Ordering::Acquire);
    let magic = u64_at(MAGIC_OFFSET).to_le_bytes();
    if magic != MAGIC {
        return Err(SegmentError::BadMagic {
            path: path.to_path_buf(),
        });
    }
    if initialised != INITIALISED {
        return Err(SegmentError::NotInitialised {
            path: path.to_path_buf(),
        });
    }
    let version = u32_at(VERSION_OFFSET);
    if version != FORMAT_VERSION {
        return Err(SegmentError::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version,
        });
    }
    let found_kind = u32_at(KIND_OFFSET);
    if SegmentKind::from_code(found_kind) != Some(kind) {
        return Err(SegmentError::WrongKind {
            path: path.to_path_buf(),
            expected: kind,
            found: found_kind,
        });
    }
    let header_len = u32_at(HEADER_LEN_OFFSET);
    if header_len as usize != HEADER_PAGE {
        return Err(bad("header length", header_len.into()));
    }
    let frame_align = u32_at(FRAME_ALIGN_OFFSET);
    if frame_align as usize != FRAME_ALIGN {
        return Err(bad("frame alignment", frame_align.into()));
    }
    let capacity = u64_at(CAPACITY_OFFSET);
    let layout = usize::try_from(capacity)
        .ok()
        .and_then(SegmentLayout::new)
        .ok_or_else(|| bad("capacity", capacity))?;
    if layout.file_len() as u64 != file_len {
        return Err(SegmentError::SizeMismatch {
            path: path.to_path_buf(),
            file_len,
            expected: layout.file_len() as u64,
        });
    }
    let header = SegmentHeader {
        kind,
        capacity: layout.capacity(),
        base_position: u64_at(BASE_POSITION_OFFSET),
        created_unix_ns: u64_at(CREATED_OFFSET),
        writer_pid: u32_at(WRITER_PID_OFFSET),
    };
    Ok((header, layout))
}

/// The ring part of a writable segment: frames and the two position lines.
#[derive(Debug)]
pub struct SegmentRegion {
    segment: Arc<Segment>,
}

impl SegmentRegion {
    /// The segment this region is part of.
    pub fn segment(&self) -> &Arc<Segment> {
        &self.segment
    }
}

// SAFETY: `base()` is the mapping's base plus HEADER_PAGE (4096), so it is
// aligned to REGION_ALIGN (128); the mapping is writable (checked in
// `ring_region`), at least `HEADER_PAGE + ring_region_len()` long (checked
// against fstat at open, or made so at create) and lives as long as the
// `Arc<Segment>` held here. A freshly created segment is zero past its header
// (fallocate of a new file). A ring over a segment opened by a second process
// sees the bytes the first one wrote: code that attaches to an existing ring
// must treat them as untrusted, as the IPC reader does.
unsafe impl Region for SegmentRegion {
    fn base(&self) -> NonNull<u8> {
        // SAFETY: HEADER_PAGE is inside the mapping (see above).
        unsafe { self.segment.base().add(self.segment.layout.frames_offset()) }
    }

    fn len(&self) -> usize {
        self.segment.layout.ring_region_len()
    }
}

/// A file created under a temporary name, removed when dropped (after the
/// segment has been linked under its real name, or on any error).
struct TemporaryFile {
    path: PathBuf,
}

impl TemporaryFile {
    fn new(target: &Path) -> Self {
        let name = target
            .file_name()
            .map_or_else(|| "segment".into(), |n| n.to_string_lossy().into_owned());
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = target.with_file_name(format!(".{name}.{}.{nanos}.tmp", std::process::id()));
        TemporaryFile { path }
    }
}

impl Drop for TemporaryFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Makes a directory entry change (a created or removed segment) durable.
///
/// # Errors
///
/// The system call's error.
pub fn sync_directory(dir: &Path) -> Result<(), SegmentError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| SegmentError::io(dir, "fsync directory", e))
}

/// Links the file at `from` also at `to`, never over an existing file.
fn link_new(from: &Path, to: &Path) -> Result<(), SegmentError> {
    fs::hard_link(from, to).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            SegmentError::Exists {
                path: to.to_path_buf(),
            }
        } else {
            SegmentError::io(to, "link", e)
        }
    })
}
