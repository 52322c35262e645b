//! Is the ring's writer alive? File locks, not clocks, decide.
//!
//! The publisher holds an exclusive `flock` on its ring file from before
//! the file has its name (see [`Segment::create_locked`]) until the
//! publisher is dropped. The kernel releases it when the process exits,
//! however it exits (SIGKILL included), so a reader that can take a shared
//! lock on its own open file description knows the writer is gone: not
//! slow, not descheduled, gone. Nothing is ever decided on a timeout.
//!
//! The one subscriber a ring may have holds an open-file-description
//! (`F_OFD_SETLK`) write lock on the file's first byte. On Linux these and
//! `flock` locks do not interact, so the two seats are independent.
//!
//! Limits: the locks belong to an open file description, so a publisher
//! that forks without `exec` shares its lock with the child, and the writer
//! looks alive as long as either lives (the descriptors are close-on-exec,
//! so `exec` drops them). Locks are advisory and local: a ring on a network
//! file system is not supported.
//!
//! [`Segment::create_locked`]: crate::segment::Segment::create_locked

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Whether a process holds the exclusive writer lock on `file`'s inode,
/// probed from `file`, an open file description of the prober's own.
pub(crate) fn writer_holds_lock(file: &File) -> io::Result<bool> {
    let fd = file.as_raw_fd();
    // SAFETY: flock only takes or drops a lock on a descriptor we own.
    if unsafe { libc::flock(fd, libc::LOCK_SH | libc::LOCK_NB) } == 0 {
        // SAFETY: as above.
        unsafe { libc::flock(fd, libc::LOCK_UN) };
        return Ok(false);
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(true)
    } else {
        Err(error)
    }
}

/// Takes the exclusive writer lock on `file` if no one holds it; `false`
/// if someone does.
pub(crate) fn try_lock_writer(file: &File) -> io::Result<bool> {
    // SAFETY: flock only takes a lock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(error)
    }
}

/// Takes the subscriber seat of the ring in `file` (a write lock on its
/// first byte, held by this open file description until it is closed);
/// `false` if another subscriber holds it.
pub(crate) fn try_take_subscriber_seat(file: &File) -> io::Result<bool> {
    // SAFETY: `flock` is plain data; all-zero is a valid value of it.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = 0;
    lock.l_len = 1;
    // SAFETY: F_OFD_SETLK reads the `flock` we pass and takes a lock on a
    // descriptor we own.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &lock) } == 0 {
        return Ok(true);
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
        _ => Err(error),
    }
}

/// Nanoseconds on the system-wide monotonic clock, comparable between
/// processes on one machine: the unit of the writer's heartbeat.
pub fn monotonic_ns() -> u64 {
    // SAFETY: `timespec` is plain data; all-zero is a valid value of it.
    let mut now: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: clock_gettime writes the `timespec` we pass; CLOCK_MONOTONIC
    // always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    (now.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec as u64)
}
