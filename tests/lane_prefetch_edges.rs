//! The lanes around their prefetches: the typed ring's `push` (which asks
//! for the line two lines ahead of the tail with `prefetchw`) with values
//! of 0, 1, 7, 8, 63, 64 and 65 bytes at capacities on each side of the
//! 16 lines where the look-ahead starts, every value dropped once; and the
//! frame consumers that prefetch the line after an empty head, waiting
//! where that line cannot be read (a page with no access, a page cut off
//! a ring file), which a prefetch must survive and report nothing about.
//!
//! The typed tests run under Miri (counts shrink):
//!
//! ```text
//! cargo +nightly miri test --test lane_prefetch_edges -- typed
//! ```

use std::cell::Cell;
use std::fmt::Debug;

use corelane::lane::typed::ring;

mod common;

thread_local! {
    /// Values made and values dropped on this thread (each test makes and
    /// drops its values on its own thread, except the two-thread one,
    /// which does not count).
    static MADE: Cell<u64> = const { Cell::new(0) };
    static DROPPED: Cell<u64> = const { Cell::new(0) };
}

fn made() -> u64 {
    MADE.with(Cell::get)
}

fn dropped() -> u64 {
    DROPPED.with(Cell::get)
}

/// A value of a given size that says which one it is (as far as its bytes
/// allow) and counts its drops on its thread.
trait Numbered: Send + Debug + Sized {
    fn numbered(n: u64) -> Self;
    /// Whether this is (or, for small sizes, could be) value `n`.
    fn is(&self, n: u64) -> bool;
}

fn counted_made() {
    MADE.with(|made| made.set(made.get() + 1));
}

fn counted_drop() {
    DROPPED.with(|dropped| dropped.set(dropped.get() + 1));
}

fn bytes_of<const N: usize>(n: u64) -> [u8; N] {
    let le = n.to_le_bytes();
    std::array::from_fn(|i| le.get(i).copied().unwrap_or(n as u8 ^ i as u8))
}

/// `N` bytes, alignment 1.
#[derive(Debug)]
struct Bytes<const N: usize>([u8; N]);

impl<const N: usize> Numbered for Bytes<N> {
    fn numbered(n: u64) -> Self {
        counted_made();
        Bytes(bytes_of(n))
    }

    fn is(&self, n: u64) -> bool {
        self.0 == bytes_of::<N>(n)
    }
}

impl<const N: usize> Drop for Bytes<N> {
    fn drop(&mut self) {
        counted_drop();
    }
}

/// 64 bytes on a line of their own.
#[derive(Debug)]
#[repr(align(64))]
struct Line([u8; 64]);

impl Numbered for Line {
    fn numbered(n: u64) -> Self {
        counted_made();
        Line(bytes_of(n))
    }

    fn is(&self, n: u64) -> bool {
        self.0 == bytes_of::<64>(n)
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        counted_drop();
    }
}

/// Zero-sized, with a drop.
#[derive(Debug)]
struct Nothing;

impl Numbered for Nothing {
    fn numbered(_: u64) -> Self {
        counted_made();
        Nothing
    }

    fn is(&self, _: u64) -> bool {
        true
    }
}

impl Drop for Nothing {
    fn drop(&mut self) {
        counted_drop();
    }
}

/// Capacities at the usual edges, and on each side of the 16 lines (1024
/// bytes) of `T` from which `push` looks ahead.
fn capacities<T>() -> Vec<usize> {
    let size = std::mem::size_of::<T>().max(1);
    let at_16_lines = 1024usize.div_ceil(size);
    let mut capacities = if cfg!(miri) {
        vec![1, 2, 15, 16]
    } else {
        vec![
            1,
            2,
            15,
            16,
            127,
            128,
            129,
            1023,
            1025,
            4096,
            2 * at_16_lines + 1,
        ]
    };
    capacities.extend([at_16_lines - 1, at_16_lines + 1]);
    if !cfg!(miri) {
        capacities.push(at_16_lines);
    }
    capacities.sort_unstable();
    capacities.dedup();
    capacities
}

/// Moves `T`s through rings of every capacity in `capacities::<T>()`, one
/// at a time (the path that looks ahead) and in batches, keeping each ring
/// near empty for a while, then near full, over several laps; leaves some
/// values in the ring and drops the halves in both orders. Every value
/// comes out once, in order, and every value made is dropped once.
fn move_values<T: Numbered>() {
    let size = std::mem::size_of::<T>();
    for capacity in capacities::<T>() {
        for consumer_first in [false, true] {
            let (made_before, dropped_before) = (made(), dropped());
            let (mut producer, mut consumer) = ring::<T>(capacity);
            let (mut pushed, mut popped) = (0u64, 0u64);
            let laps = if cfg!(miri) { 1 } else { 4 };
            let target = (laps * capacity + 5) as u64;
            let mut step = 0usize;
            while pushed < target {
                step += 1;
                // Near empty: push one, pop one. Near full: fill, then pop a
                // few. Every few steps a batch, both ways.
                let near_full = (pushed / capacity as u64) % 2 == 1;
                let pushes = if near_full {
                    capacity + 1
                } else {
                    1 + step % 3
                };
                for _ in 0..pushes {
                    match producer.push(T::numbered(pushed)) {
                        Ok(()) => pushed += 1,
                        // The value handed back is dropped here, and counted.
                        Err(full) => {
                            assert!(full.into_inner().is(pushed));
                            // Full with fewer values in the ring than its
                            // capacity only by those the consumer has taken
                            // and not yet handed back: less than a line's
                            // worth, on rings of 16 lines or more.
                            let held_back = if size > 0 && size <= 64 && capacity * size >= 1024 {
                                64 / size
                            } else {
                                1
                            };
                            assert!(
                                consumer.len() + held_back > capacity,
                                "capacity {capacity}, size {size}: full with {} values",
                                consumer.len()
                            );
                            break;
                        }
                    }
                }
                if step.is_multiple_of(5) {
                    let count = producer.push_batch((pushed..).map(T::numbered).take(step % 7));
                    // Values are made as they are pulled, and nothing is
                    // pulled that does not fit: the counts say so.
                    pushed += count as u64;
                }
                let pops = if near_full { 1 + step % 4 } else { pushes + 1 };
                for _ in 0..pops {
                    match consumer.pop() {
                        Some(value) => {
                            assert!(
                                value.is(popped),
                                "capacity {capacity}, size {size}: {value:?} is not {popped}"
                            );
                            popped += 1;
                        }
                        None => {
                            assert_eq!(
                                popped, pushed,
                                "capacity {capacity}: an empty ring holds values"
                            );
                            break;
                        }
                    }
                }
                if step.is_multiple_of(9) {
                    let mut chunk = consumer.read_chunk(step % 4);
                    if let Some(first) = chunk.next() {
                        assert!(first.is(popped));
                        popped += 1;
                    }
                    // The rest stay in the ring.
                }
                assert_eq!(consumer.len() as u64, pushed - popped);
            }
            let left = pushed - popped;
            assert!(left <= capacity as u64);
            if consumer_first {
                drop(consumer);
                drop(producer);
            } else {
                drop(producer);
                drop(consumer);
            }
            let made = made() - made_before;
            let dropped = dropped() - dropped_before;
            assert_eq!(
                dropped, made,
                "capacity {capacity}, size {size}: {made} made, {dropped} dropped ({left} left in the ring)"
            );
        }
    }
}

#[test]
fn typed_values_of_1_byte() {
    move_values::<Bytes<1>>();
}

#[test]
fn typed_values_of_7_bytes() {
    move_values::<Bytes<7>>();
}

#[test]
fn typed_values_of_8_bytes() {
    move_values::<Bytes<8>>();
}

#[test]
fn typed_values_of_63_bytes() {
    move_values::<Bytes<63>>();
}

#[test]
fn typed_values_of_64_bytes() {
    move_values::<Bytes<64>>();
    move_values::<Line>();
}

#[test]
fn typed_values_of_65_bytes() {
    move_values::<Bytes<65>>();
}

#[test]
fn typed_zero_sized_values() {
    move_values::<Nothing>();
}

/// Two threads, one value at a time, on rings of 16 lines and more: the
/// producer looks ahead while the consumer reads each value as it lands
/// (near empty) or falls behind (near full). Values come out whole and in
/// order.
fn two_threads<const N: usize>(capacity: usize) {
    let total = if cfg!(miri) { 300 } else { 200_000 };
    let (mut producer, mut consumer) = ring::<[u8; N]>(capacity);
    let sender = std::thread::spawn(move || {
        for n in 0..total {
            let mut value = bytes_of::<N>(n);
            while let Err(full) = producer.push(value) {
                value = full.into_inner();
                std::hint::spin_loop();
            }
            // Now and then let the consumer fall behind.
            if n % 10_000 == 0 {
                std::thread::yield_now();
            }
        }
    });
    let mut next = 0;
    while next < total {
        match consumer.pop() {
            Some(value) => {
                assert_eq!(value, bytes_of::<N>(next), "capacity {capacity}");
                next += 1;
            }
            None => std::hint::spin_loop(),
        }
        if next % 7_000 == 0 {
            std::thread::yield_now();
        }
    }
    sender.join().unwrap();
    assert_eq!(consumer.pop(), None);
}

#[test]
fn typed_two_threads_one_at_a_time() {
    two_threads::<1>(1024);
    two_threads::<1>(4096);
    two_threads::<8>(128);
    two_threads::<8>(4097);
    two_threads::<64>(16);
    two_threads::<64>(17);
}

// ---------------------------------------------------------------------
// Frame consumers waiting where the line after their head cannot be read.
// Each runs in a child process (this test binary again, with
// `CORELANE_PREFETCH_CHILD` naming the scenario), so that a fault kills
// the child and the parent reports it.

#[cfg(not(miri))]
mod waiting {
    use std::fs::OpenOptions;
    use std::os::unix::process::ExitStatusExt;
    use std::path::Path;
    use std::ptr::NonNull;
    use std::sync::Arc;

    use corelane::frame::layout::FRAME_ALIGN;
    use corelane::frame::FrameMeta;
    use corelane::lane::frames::{self, region_len};
    use corelane::lane::region::Region;
    use corelane::segment::ipc::{IpcError, IpcPublisher, IpcSubscriber, RingReader};
    use corelane::segment::layout::HEADER_PAGE;
    use corelane::segment::SegmentError;

    const CHILD: &str = "CORELANE_PREFETCH_CHILD";
    const CHILD_DIR: &str = "CORELANE_PREFETCH_DIR";
    const PAGE: usize = 4096;

    fn meta() -> FrameMeta {
        FrameMeta {
            msg_type: 7,
            ..FrameMeta::default()
        }
    }

    /// Anonymous pages for a ring of two pages of frames (its trailer on a
    /// third page), whose pages can be made inaccessible.
    struct Pages {
        base: NonNull<u8>,
    }

    // SAFETY: plain memory, reached only through the ring's protocol.
    unsafe impl Send for Pages {}
    // SAFETY: as above.
    unsafe impl Sync for Pages {}

    impl Pages {
        const CAPACITY: usize = 2 * PAGE;
        const MAPPED: usize = 3 * PAGE;

        fn new() -> Self {
            // SAFETY: a fresh anonymous mapping, zeroed by the kernel.
            let base = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    Self::MAPPED,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert_ne!(base, libc::MAP_FAILED);
            Pages {
                base: NonNull::new(base.cast()).unwrap(),
            }
        }

        /// Sets the access of the frames' second page.
        fn second_page(&self, prot: libc::c_int) {
            // SAFETY: the page is inside this mapping.
            let done = unsafe { libc::mprotect(self.base.as_ptr().add(PAGE).cast(), PAGE, prot) };
            assert_eq!(done, 0);
        }
    }

    impl Drop for Pages {
        fn drop(&mut self) {
            // SAFETY: the mapping made in `new`, unmapped once, after every
            // ring end over it has gone (they hold the `Arc`).
            unsafe { libc::munmap(self.base.as_ptr().cast(), Self::MAPPED) };
        }
    }

    #[derive(Clone)]
    struct Shared(Arc<Pages>);

    // SAFETY: page-aligned (so REGION_ALIGN-aligned), readable and writable
    // for `len()` bytes while the mapping lives (the `Arc` keeps it) except
    // while a test has made a page inaccessible on purpose, and zero when
    // made.
    unsafe impl Region for Shared {
        fn base(&self) -> NonNull<u8> {
            self.0.base
        }

        fn len(&self) -> usize {
            region_len(Pages::CAPACITY)
        }
    }

    /// Frames of no payload (one frame slot each) up to the last slot of
    /// the first page: where the next frame's length word is the last word
    /// before the second page.
    const TO_PAGE_END: usize = PAGE / FRAME_ALIGN - 1;

    fn run_child(scenario: &str) -> (std::process::ExitStatus, String) {
        super::common::run_test_in_child(
            "waiting::child_scenario",
            "prefetch",
            (CHILD, scenario),
            CHILD_DIR,
        )
    }

    fn assert_survived(scenario: &str) {
        let (status, text) = run_child(scenario);
        assert_eq!(status.signal(), None, "child died of a signal: {text}");
        assert!(status.success(), "{text}");
        assert!(text.contains(&format!("survived {scenario}")), "{text}");
    }

    #[test]
    fn a_frame_consumer_waits_before_a_page_it_cannot_read() {
        assert_survived("frame-consumer");
    }

    #[test]
    fn an_ipc_reader_waits_before_a_page_it_cannot_read() {
        assert_survived("ring-reader");
    }

    #[test]
    fn an_ipc_subscriber_waits_before_a_page_cut_off_its_file() {
        assert_survived("subscriber-cut");
    }

    #[test]
    fn child_scenario() {
        let Ok(scenario) = std::env::var(CHILD) else {
            return;
        };
        let dir = std::path::PathBuf::from(std::env::var_os(CHILD_DIR).unwrap());
        match scenario.as_str() {
            "frame-consumer" => frame_consumer(),
            "ring-reader" => ring_reader(),
            "subscriber-cut" => subscriber_cut(&dir),
            other => panic!("unknown scenario {other}"),
        }
        println!("survived {scenario}");
    }

    /// The lanes' consumer at the last slot of a page, the next page with
    /// no access: it finds no frame (and asks for the line on that page)
    /// again and again, then reads the frame that crosses into the page
    /// once it is back.
    fn frame_consumer() {
        let pages = Shared(Arc::new(Pages::new()));
        let (mut producer, mut consumer) = frames::ring(pages.clone()).unwrap();
        for _ in 0..TO_PAGE_END {
            producer.claim(0).unwrap().commit(0, meta());
        }
        assert_eq!(consumer.drain(usize::MAX, |_| ()), Ok(TO_PAGE_END));
        pages.0.second_page(libc::PROT_NONE);
        for _ in 0..3 {
            assert!(!consumer.has_frame());
            assert_eq!(consumer.drain(8, |_| panic!("no frame")), Ok(0));
        }
        pages.0.second_page(libc::PROT_READ | libc::PROT_WRITE);
        let mut claim = producer.claim(200).unwrap();
        claim.payload_mut().fill(0x5a);
        claim.commit(200, meta());
        let mut seen = 0;
        consumer
            .drain(8, |frame| {
                assert_eq!(frame.position, (TO_PAGE_END * FRAME_ALIGN) as u64);
                assert!(frame.payload().iter().all(|&b| b == 0x5a));
                seen += 1;
            })
            .unwrap();
        assert_eq!(seen, 1);
    }

    /// The IPC reader (over plain memory here) in the same place.
    fn ring_reader() {
        let pages = Shared(Arc::new(Pages::new()));
        let (mut producer, _unused) = frames::ring(pages.clone()).unwrap();
        for _ in 0..TO_PAGE_END {
            producer.claim(0).unwrap().commit(0, meta());
        }
        let mut reader = RingReader::attach(pages.clone()).unwrap();
        assert_eq!(reader.drain(usize::MAX, |_| ()).unwrap(), TO_PAGE_END);
        pages.0.second_page(libc::PROT_NONE);
        for _ in 0..3 {
            assert_eq!(reader.drain(8, |_| panic!("no frame")).unwrap(), 0);
        }
        pages.0.second_page(libc::PROT_READ | libc::PROT_WRITE);
        let mut claim = producer.claim(100).unwrap();
        claim.payload_mut().fill(0xa5);
        claim.commit_checksummed(100, meta());
        assert_eq!(
            reader
                .drain(8, |frame| assert!(frame
                    .payload()
                    .iter()
                    .all(|&b| b == 0xa5)))
                .unwrap(),
            1
        );
    }

    /// A subscriber at the last slot of the ring file's first page of
    /// frames, the file cut right after that page: the line it asks for
    /// lies past the end of the file. Asking faults nothing (a fault would
    /// mark the mapping truncated and the very next drain would say so);
    /// the probe's fstat then reports the cut.
    fn subscriber_cut(dir: &Path) {
        let path = dir.join("ring");
        let mut publisher = IpcPublisher::create(&path, 1 << 16).unwrap();
        let mut subscriber = IpcSubscriber::open(&path).unwrap();
        for _ in 0..TO_PAGE_END {
            publisher.claim(0).unwrap().commit(0, meta());
        }
        assert_eq!(subscriber.drain(usize::MAX, |_| ()).unwrap(), TO_PAGE_END);
        assert_eq!(subscriber.position(), (PAGE - FRAME_ALIGN) as u64);

        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len((HEADER_PAGE + PAGE) as u64)
            .unwrap();
        for _ in 0..3 {
            assert_eq!(
                subscriber.drain(8, |_| panic!("no frame")).unwrap(),
                0,
                "the wait touched nothing past its page"
            );
        }
        subscriber.set_probe_every(1);
        let error = subscriber.drain(8, |_| panic!("no frame")).unwrap_err();
        assert!(
            matches!(&error, IpcError::Segment(SegmentError::Truncated { path: p }) if *p == path),
            "{error}"
        );
    }
}
