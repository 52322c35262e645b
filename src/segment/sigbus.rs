//! Surviving a segment file truncated while it is mapped.
//!
//! Touching a page of a shared file mapping that lies past the file's end
//! raises SIGBUS, whose default action kills the process. Segment files are
//! owner-only, but their owner (or a confused script) can still truncate
//! one under a live reader or writer. This module turns that into an error:
//!
//! - Every segment mapping is *registered* here (start, length, whether
//!   it is writable) for as long as it is mapped.
//! - A process-wide SIGBUS handler, installed once, looks up the faulting
//!   address. Inside a registered mapping, it maps one anonymous zero page
//!   over the faulting page (`MAP_FIXED`), marks the mapping *truncated*
//!   and returns: the faulting instruction runs again and reads zeros
//!   (which every reader takes as "no frame yet"), or writes into a page
//!   nobody else sees. Anywhere else, it hands the signal to the handler
//!   that was installed before (Rust's own, a fuzzer's, or the default
//!   action, which kills the process as before).
//! - Readers and writers check [`super::Segment::truncated`] after each copy
//!   out of (or write into) the mapping and report
//!   [`super::SegmentError::Truncated`]. Pages that were never touched
//!   after the truncation do not fault, so [`super::Segment::check_length`]
//!   (an fstat) is also called where a reader waits for frames.
//!
//! The zero page hides no data: the frames it stands for are gone from the
//! file already, and the mapping is reported truncated from then on. (A
//! page the disk fails to read faults the same way, `BUS_ADRERR`, and is
//! reported the same; other SIGBUS codes, such as hardware memory errors,
//! are handed on.) It
//! lives until the segment is unmapped (the unmap covers it).
//!
//! Soundness of the handler: it runs on the thread whose access faulted,
//! and uses only atomics, `mmap`, `sigaction` and the saved previous
//! handler. `mmap` and `sigaction` are single system calls on Linux (glibc
//! takes no lock for them); the same technique serves Wayland compositors,
//! which map client-provided shared memory that clients may shrink.
//! Registrations are read through a per-slot sequence lock: the handler
//! skips a slot that is being rewritten (never waits for it), so it never
//! acts on a half-written slot; a slot is only rewritten while its mapping
//! is not in use (being registered or released), so the live mapping that
//! faulted is never the one skipped. A mapping is unregistered *before* it
//! is unmapped, so an address reused by a later mapping of someone else is
//! never mistaken for ours.
//!
//! Limits: at most [`MAX_MAPPINGS`] segments are guarded at once (more are
//! mapped unguarded, with a warning); a library that later installs its own
//! SIGBUS handler without chaining to the one it found replaces this one.

use std::sync::atomic::{compiler_fence, fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, Once, OnceLock};

/// The most segment mappings guarded at once.
pub const MAX_MAPPINGS: usize = 1024;

/// One registered mapping.
#[derive(Debug)]
struct Slot {
    /// Sequence lock: odd while the fields below are being rewritten.
    seq: AtomicUsize,
    /// First byte of the mapping; 0 when the slot is free.
    start: AtomicUsize,
    len: AtomicUsize,
    writable: AtomicBool,
    /// Set by the handler when a page of the mapping faulted past the
    /// file's end.
    truncated: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)] // only to build the array
const FREE: Slot = Slot {
    seq: AtomicUsize::new(0),
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    writable: AtomicBool::new(false),
    truncated: AtomicBool::new(false),
};

static SLOTS: [Slot; MAX_MAPPINGS] = [FREE; MAX_MAPPINGS];

/// Serialises the writers of `SLOTS` (registration and release only; the
/// handler never takes it).
static WRITERS: Mutex<()> = Mutex::new(());

/// The page size, read once before the handler is installed.
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);

/// The SIGBUS action installed before ours, to chain to; set once ours is
/// installed. Reading it is one atomic load (no lock), as a signal handler
/// needs.
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();

static INSTALL: Once = Once::new();

/// A registered mapping; unregisters it when dropped. Drop it before the
/// mapping is unmapped.
#[derive(Debug)]
pub(crate) struct MappingGuard {
    /// Its slot in `SLOTS`; `None` if every slot was taken (unguarded).
    slot: Option<&'static Slot>,
}

impl MappingGuard {
    /// Whether a page of the mapping faulted past the end of its file.
    ///
    /// Call it after the accesses it should cover: a compiler fence keeps
    /// them before the load (a hardware fault is synchronous, so the
    /// handler's store is visible to the faulting thread once the access
    /// has run). Another thread's fault is seen through the Release store
    /// in the handler, which this Acquire load pairs with.
    #[inline]
    pub(crate) fn truncated(&self) -> bool {
        compiler_fence(Ordering::SeqCst);
        self.slot
            .is_some_and(|slot| slot.truncated.load(Ordering::Acquire))
    }

    /// Marks the mapping truncated (an fstat found the file shorter).
    pub(crate) fn mark_truncated(&self) {
        if let Some(slot) = self.slot {
            slot.truncated.store(true, Ordering::Release);
        }
    }
}

impl Drop for MappingGuard {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            let _writers = WRITERS.lock().unwrap_or_else(|p| p.into_inner());
            write_slot(slot, 0, 0, false);
        }
    }
}

/// Registers the mapping of `len` bytes at `start` (installing the handler
/// on first use).
pub(crate) fn register(start: *const u8, len: usize, writable: bool) -> MappingGuard {
    install();
    if PREVIOUS.get().is_none() || len == 0 {
        return MappingGuard { slot: None };
    }
    let _writers = WRITERS.lock().unwrap_or_else(|p| p.into_inner());
    let free = SLOTS
        .iter()
        .find(|slot| slot.start.load(Ordering::Relaxed) == 0);
    match free {
        Some(slot) => {
            write_slot(slot, start as usize, len, writable);
            MappingGuard { slot: Some(slot) }
        }
        None => {
            log::warn!(
                "more than {MAX_MAPPINGS} segments mapped: this one is not guarded against \
                 truncation (SIGBUS)"
            );
            MappingGuard { slot: None }
        }
    }
}

/// Rewrites a slot under its sequence lock. The caller holds `WRITERS`.
fn write_slot(slot: &Slot, start: usize, len: usize, writable: bool) {
    let seq = slot.seq.load(Ordering::Relaxed);
    slot.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
    // Orders the odd sequence before the field stores; pairs with the
    // Acquire fence in `lookup`, after which the handler re-reads `seq`.
    fence(Ordering::Release);
    slot.start.store(start, Ordering::Relaxed);
    slot.len.store(len, Ordering::Relaxed);
    slot.writable.store(writable, Ordering::Relaxed);
    slot.truncated.store(false, Ordering::Relaxed);
    // Release: a handler that reads this even sequence sees the fields
    // above (pairs with the Acquire load of `seq` in `lookup`).
    slot.seq.store(seq.wrapping_add(2), Ordering::Release);
}

/// Installs the handler once, remembering the action it replaces.
fn install() {
    INSTALL.call_once(|| {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let Ok(page) = usize::try_from(page) else {
            log::warn!("page size unknown: segments are not guarded against truncation");
            return;
        };
        PAGE_SIZE.store(page, Ordering::Relaxed);
        // SAFETY: an all-zero sigaction is a valid value (no handler, empty
        // mask, no flags) that we fill in below.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            on_sigbus;
        action.sa_sigaction = handler as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        // SAFETY: `action.sa_mask` is a valid sigset to empty.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };
        let mut previous = std::mem::MaybeUninit::<libc::sigaction>::uninit();
        // SAFETY: both pointers are valid for the call; `on_sigbus` has the
        // signature SA_SIGINFO asks for. A SIGBUS that comes before
        // `PREVIOUS` is set below finds no registered mapping (none is
        // registered before this returns) and gets the default action.
        let rc = unsafe { libc::sigaction(libc::SIGBUS, &action, previous.as_mut_ptr()) };
        if rc != 0 {
            log::warn!(
                "cannot install the SIGBUS handler ({}): segments are not guarded against \
                 truncation",
                std::io::Error::last_os_error()
            );
            return;
        }
        // SAFETY: sigaction succeeded, so it wrote the previous action.
        let _ = PREVIOUS.set(unsafe { previous.assume_init() });
    });
}

/// The registered, live mapping holding `addr`: its slot.
///
/// A slot being rewritten (odd sequence, or a sequence that moved while it
/// was read) is skipped, not waited for: it is a mapping being registered
/// or released, which nobody is reading or writing, so it cannot hold the
/// faulting address of a live access. The lookup never waits.
fn lookup(addr: usize) -> Option<&'static Slot> {
    SLOTS.iter().find(|slot| {
        let before = slot.seq.load(Ordering::Acquire);
        if before % 2 == 1 {
            return false;
        }
        let start = slot.start.load(Ordering::Relaxed);
        let len = slot.len.load(Ordering::Relaxed);
        // Keeps the field loads before the second look at `seq`; pairs
        // with the Release fence in `write_slot`.
        fence(Ordering::Acquire);
        slot.seq.load(Ordering::Relaxed) == before
            && start != 0
            && addr >= start
            && addr - start < len
    })
}

/// The SIGBUS handler.
extern "C" fn on_sigbus(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler;
    // si_addr is the faulting address for SIGBUS. Reading errno's location
    // is async-signal-safe; it is restored before returning so that the
    // interrupted code sees its own errno.
    let (addr, code, errno) = unsafe {
        (
            (*info).si_addr() as usize,
            (*info).si_code,
            *libc::__errno_location(),
        )
    };
    // A page past the file's end (or one the disk could not read) faults
    // with BUS_ADRERR; anything else (a hardware memory error, a SIGBUS
    // sent by kill) is not ours to hide.
    let ours = if code == libc::BUS_ADRERR {
        lookup(addr)
    } else {
        None
    };
    if let Some(slot) = ours {
        let page = PAGE_SIZE.load(Ordering::Relaxed);
        let at = addr & !(page - 1);
        let prot = if slot.writable.load(Ordering::Relaxed) {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: `at` is the page holding the faulting address, inside a
        // mapping that is registered, hence mapped and owned by a live
        // `Segment` (it is unregistered before it is unmapped). Replacing
        // that one page with zeros changes only bytes past the file's end,
        // which no longer exist. mmap is a plain system call here (no lock
        // is taken in glibc), safe to make from a signal handler.
        let mapped = unsafe {
            libc::mmap(
                at as *mut libc::c_void,
                page,
                prot,
                libc::MAP_FIXED | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if mapped != libc::MAP_FAILED {
            // Release pairs with the Acquire load in `truncated` on other
            // threads; the faulting thread sees it in program order.
            slot.truncated.store(true, Ordering::Release);
            // SAFETY: restoring errno, as read above.
            unsafe { *libc::__errno_location() = errno };
            return;
        }
    }
    // SAFETY: called from the handler with the arguments it received.
    unsafe { chain(signal, info, context) };
    // SAFETY: restoring errno, as read above.
    unsafe { *libc::__errno_location() = errno };
}

/// Hands a SIGBUS that is not ours to the action installed before.
///
/// # Safety
///
/// Only from `on_sigbus`, with its arguments.
unsafe fn chain(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    if let Some(previous) = PREVIOUS.get() {
        let handler = previous.sa_sigaction;
        if handler != libc::SIG_DFL && handler != libc::SIG_IGN {
            if previous.sa_flags & libc::SA_SIGINFO != 0 {
                // SAFETY: with SA_SIGINFO the saved value is a
                // three-argument handler, which we call as the kernel
                // would have.
                let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    unsafe { std::mem::transmute(handler) };
                handler(signal, info, context);
            } else {
                // SAFETY: without SA_SIGINFO it is a one-argument handler.
                let handler: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
                handler(signal);
            }
            return;
        }
    }
    // No handler before ours (or it ignored SIGBUS, which for a fault would
    // repeat it forever): restore the default action and return, so the
    // access faults again and the process dies of SIGBUS as it would have.
    // SAFETY: an all-zero sigaction with SIG_DFL (0) is valid; sigaction is
    // async-signal-safe.
    unsafe {
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(libc::SIGBUS, &default, std::ptr::null_mut());
    }
}
