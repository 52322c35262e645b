//! Round trips between two processes through two shared rings, against a
//! Unix domain socket pair and a pipe pair between the same two processes,
//! and against the in-process frame lane between two threads.
//!
//! ```text
//! cargo bench --bench ipc                 # about a minute
//! IPC_QUICK=1 cargo bench --bench ipc     # smoke run, a few seconds
//! ```
//!
//! Every row bounces a 64-byte message (a [`Words64`]: eight `u64`s, so a
//! torn message shows) between side A, pinned to the first CPU, and side B,
//! pinned to the second: A sends, B echoes, A waits for the echo and times
//! the round trip with the time-stamp counter into an HdrHistogram, for a
//! fixed time after a warm-up. Side B is a second process (this bench
//! binary started again with `IPC_BENCH_CHILD` naming the transport) for
//! every row but the in-process lane, where it is a second thread.
//!
//! - *ipc ring*: A publishes on ring `a` and subscribes to ring `b`; B the
//!   other way round. Messages are written with `write_message` (in place,
//!   no checksum) and read with the subscriber's copy and validated rkyv
//!   access; the checksummed row adds a CRC-32 to every frame.
//! - *in-process frames*: the lanes' frame ring between two threads,
//!   `write_message`, then `drain` and unchecked access (trusted memory).
//! - *unix socket* / *pipe*: blocking `write` and `read` of the 64 bytes,
//!   as programs use them.
//!
//! `msgs_per_s` counts the messages delivered during the timed ping-pong
//! (two per round trip): with one message in flight it is the inverse of
//! the mean half round trip, not a streaming rate.
//!
//! Rows run interleaved (A B C D ...) for several rounds after a warm-up
//! round that is not kept; the table shows each row's median over the
//! rounds, and each bar the median of its per-round ratios.
//!
//! # Adding rows
//!
//! [`rows`] is the list. A row is a name, a key (for `IPC_FILTER` and the
//! bars) and a function that measures one round for about the given number
//! of seconds and returns a [`Sample`] (`Sample::from_histogram` turns a
//! latency histogram and a rate into one). A row that measures something
//! other than round trips (journal appends, say) returns its own
//! histogram of per-operation latency and its rate; its name says what it
//! measures. Bars are listed in [`bars`] by row keys.
//!
//! Environment: `IPC_QUICK=1`, `IPC_ROUNDS=n` (default 5),
//! `IPC_FILTER=text` (rows whose key or name contains it; the rows the bars
//! compare always run). Results also go to
//! `$CARGO_TARGET_DIR/corelane-bench/ipc.json` (default `target/`). Run as
//! a test (`cargo test --benches`), it does a quick pass and writes no JSON.

use std::fmt::Write as _;
use std::hint::spin_loop;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use std::{env, fs, thread};

use corelane::frame::envelope::{access_trusted, check_type};
use corelane::frame::Message;
use corelane::lane::frames::{self, ClaimError, FrameConsumer, FrameProducer, WriteError};
use corelane::lane::HeapRegion;
use corelane::segment::ipc::{IpcError, IpcPublisher, IpcSubscriber};
use hdrhistogram::Histogram;
use rkyv::ser::allocator::Arena;

mod common;
use common::{
    clock_name, clock_read_ns, json_number, json_string, median, new_histogram, ns_per_tick, pin,
    ticks, write_json,
};

/// Bytes of frames in every ring.
const RING_BYTES: usize = 64 * 1024;
/// Round trips before the timed ones: more than a lap of every ring.
const WARMUP_TRIPS: u64 = 4096;
/// Bytes of a message on the socket and the pipe.
const MESSAGE_BYTES: usize = 64;
/// Longest a side waits for the other before giving up.
const PATIENCE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// The message

/// Eight words, 64 archived bytes; `words[i]` is the sequence number plus
/// `i`, so a torn message shows.
#[derive(rkyv::Archive, rkyv::Serialize)]
struct Words64 {
    words: [u64; 8],
}

impl Message for Words64 {
    const TYPE_ID: u16 = 0x6c61;
    const VERSION: u8 = 1;
    const NAME: &'static str = "Words64";
}

impl Words64 {
    fn new(sequence: u64) -> Self {
        Words64 {
            words: std::array::from_fn(|i| sequence + i as u64),
        }
    }
}

/// The sequence number a message of words carries, checked whole.
fn sequence_of(words: impl Fn(usize) -> u64) -> u64 {
    let first = words(0);
    for i in 1..8 {
        assert_eq!(words(i), first + i as u64, "torn message {first}");
    }
    first
}

fn bytes_of(sequence: u64) -> [u8; MESSAGE_BYTES] {
    let mut bytes = [0; MESSAGE_BYTES];
    for (i, word) in bytes.chunks_exact_mut(8).enumerate() {
        word.copy_from_slice(&(sequence + i as u64).to_le_bytes());
    }
    bytes
}

fn sequence_of_bytes(bytes: &[u8; MESSAGE_BYTES]) -> u64 {
    sequence_of(|i| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap()))
}

// ---------------------------------------------------------------------------
// The two ends of each transport

/// One side's two directions: `send` one message, `recv` one (spinning or
/// blocking as the transport does), `None` when the other side is gone.
trait Endpoint {
    fn send(&mut self, sequence: u64);
    fn recv(&mut self) -> Option<u64>;
}

/// A side of the in-process frame lane.
struct LaneEnd {
    tx: FrameProducer<HeapRegion>,
    rx: FrameConsumer<HeapRegion>,
    arena: Arena,
    stop: &'static AtomicBool,
}

impl Endpoint for LaneEnd {
    fn send(&mut self, sequence: u64) {
        let message = Words64::new(sequence);
        loop {
            match self.tx.write_message(&message, sequence, &mut self.arena) {
                Ok(()) => return,
                Err(WriteError::Claim(ClaimError::Full)) => spin_loop(),
                Err(error) => panic!("frame lane: {error}"),
            }
        }
    }

    fn recv(&mut self) -> Option<u64> {
        let mut got = None;
        while got.is_none() {
            let read = self.rx.drain(1, |frame| {
                check_type::<Words64>(&frame.meta).expect("a Words64");
                // SAFETY: written by `write_message` of a Words64 in this
                // process (type and version checked above), lent unchanged,
                // 32-byte aligned.
                let message = unsafe { access_trusted::<Words64>(frame.payload()) };
                got = Some(sequence_of(|i| message.words[i].to_native()));
            });
            if read.expect("frame lane") == 0 {
                if self.stop.load(Ordering::Relaxed) {
                    return None;
                }
                spin_loop();
            }
        }
        got
    }
}

/// A side of the IPC rings: publishes on one, subscribes to the other.
struct RingEnd {
    publisher: IpcPublisher,
    subscriber: IpcSubscriber,
    arena: Arena,
    checksummed: bool,
}

impl Endpoint for RingEnd {
    fn send(&mut self, sequence: u64) {
        let message = Words64::new(sequence);
        let started = Instant::now();
        loop {
            let sent = if self.checksummed {
                self.publisher
                    .write_message_checksummed(&message, sequence, &mut self.arena)
            } else {
                self.publisher
                    .write_message(&message, sequence, &mut self.arena)
            };
            match sent {
                Ok(()) => return,
                Err(WriteError::Claim(ClaimError::Full)) => {
                    // One message in flight never fills a ring: the other
                    // side has stopped reading.
                    assert!(started.elapsed() < PATIENCE, "ipc ring: stays full");
                    spin_loop();
                }
                Err(error) => panic!("ipc ring: {error}"),
            }
        }
    }

    fn recv(&mut self) -> Option<u64> {
        let mut got = None;
        let started = Instant::now();
        while got.is_none() {
            let read = self.subscriber.drain(1, |frame| {
                let message = frame.message::<Words64>().expect("a valid Words64");
                got = Some(sequence_of(|i| message.words[i].to_native()));
            });
            match read {
                Ok(0) => {
                    assert!(started.elapsed() < PATIENCE, "ipc ring: no echo");
                    spin_loop();
                }
                Ok(_) => {}
                Err(IpcError::WriterGone(_)) => return None,
                Err(error) => panic!("ipc ring: {error}"),
            }
        }
        got
    }
}

/// A side of a byte stream pair (socket or pipes), blocking.
struct StreamEnd<W: Write, R: Read> {
    tx: W,
    rx: R,
}

impl<W: Write, R: Read> Endpoint for StreamEnd<W, R> {
    fn send(&mut self, sequence: u64) {
        self.tx
            .write_all(&bytes_of(sequence))
            .expect("stream write");
    }

    fn recv(&mut self) -> Option<u64> {
        let mut bytes = [0; MESSAGE_BYTES];
        match self.rx.read_exact(&mut bytes) {
            Ok(()) => Some(sequence_of_bytes(&bytes)),
            Err(_) => None,
        }
    }
}

// ---------------------------------------------------------------------------
// Side A's timing loop and side B's echo loop

/// Times round trips from `end` for about `secs` after [`WARMUP_TRIPS`];
/// returns the histogram and the seconds the timed ones took.
fn time_round_trips(end: &mut impl Endpoint, secs: f64) -> (Histogram<u64>, f64) {
    let scale = ns_per_tick();
    let mut histogram = new_histogram();
    let mut deadline = u64::MAX;
    let mut timed_from = Instant::now();
    for trip in 0.. {
        if trip == WARMUP_TRIPS {
            deadline = ticks() + (secs * 1e9 / scale) as u64;
            timed_from = Instant::now();
        }
        let sent = ticks();
        end.send(trip);
        let echo = end.recv().expect("the echo side went away");
        let echoed = ticks();
        assert_eq!(echo, trip, "echo out of order");
        if trip >= WARMUP_TRIPS {
            histogram.saturating_record(((echoed - sent) as f64 * scale) as u64);
            if echoed >= deadline {
                break;
            }
        }
    }
    (histogram, timed_from.elapsed().as_secs_f64())
}

/// Echoes every message back until the other side goes away.
fn echo(end: &mut impl Endpoint) {
    while let Some(sequence) = end.recv() {
        end.send(sequence);
    }
}

// ---------------------------------------------------------------------------
// The rows' measurements

/// One round of one row.
#[derive(Clone, Copy)]
struct Sample {
    msgs_per_s: Option<f64>,
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    count: u64,
}

impl Sample {
    /// A sample from a latency histogram and, if known, a rate.
    fn from_histogram(histogram: &Histogram<u64>, msgs_per_s: Option<f64>) -> Sample {
        Sample {
            msgs_per_s,
            p50: histogram.value_at_quantile(0.50) as f64,
            p99: histogram.value_at_quantile(0.99) as f64,
            p999: histogram.value_at_quantile(0.999) as f64,
            max: histogram.max() as f64,
            count: histogram.len(),
        }
    }

    /// A sample of ping-pong round trips: two messages each.
    fn round_trips(histogram: &Histogram<u64>, secs: f64) -> Sample {
        let rate = 2.0 * histogram.len() as f64 / secs.max(1e-9);
        Sample::from_histogram(histogram, Some(rate))
    }
}

/// The in-process frame lane between two pinned threads.
fn lane_round_trips(secs: f64) -> Sample {
    static STOP: AtomicBool = AtomicBool::new(false);
    STOP.store(false, Ordering::Relaxed);
    let (out_tx, out_rx) = frames::heap_ring(RING_BYTES);
    let (back_tx, back_rx) = frames::heap_ring(RING_BYTES);
    let mut a = LaneEnd {
        tx: out_tx,
        rx: back_rx,
        arena: Arena::new(),
        stop: &STOP,
    };
    let mut b = LaneEnd {
        tx: back_tx,
        rx: out_rx,
        arena: Arena::new(),
        stop: &STOP,
    };
    thread::scope(|scope| {
        scope.spawn(move || {
            pin(1);
            echo(&mut b);
        });
        pin(0);
        let (histogram, elapsed) = time_round_trips(&mut a, secs);
        STOP.store(true, Ordering::Relaxed);
        Sample::round_trips(&histogram, elapsed)
    })
}

/// Starts this binary as side B of `transport`.
fn spawn_echo(transport: &str, dir: &Path, stdin: Stdio, stdout: Stdio) -> Child {
    // The child inherits this thread's affinity (one CPU once pinned), so
    // it is told which CPU is side B's rather than asking the machine.
    let cpu = common::core_ids().get(1).map_or(usize::MAX, |core| core.id);
    Command::new(env::current_exe().expect("own path"))
        .env("IPC_BENCH_CHILD", transport)
        .env("IPC_BENCH_CPU", cpu.to_string())
        .env("IPC_BENCH_DIR", dir)
        .stdin(stdin)
        .stdout(stdout)
        .spawn()
        .expect("spawn the echo process")
}

/// A directory for one row's ring files, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = env::temp_dir().join(format!("corelane-bench-ipc-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch directory");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Waits for the ring at `path` (made by the other process) and opens it.
fn subscribe_when_ready(path: &Path) -> IpcSubscriber {
    let started = Instant::now();
    loop {
        match IpcSubscriber::open(path) {
            Ok(subscriber) => return subscriber,
            Err(IpcError::Segment(_)) if started.elapsed() < PATIENCE => {
                thread::sleep(Duration::from_millis(1));
            }
            Err(error) => panic!("{}: {error}", path.display()),
        }
    }
}

fn ring_round_trips_with(secs: f64, checksummed: bool) -> Sample {
    let scratch = Scratch::new();
    let publisher = IpcPublisher::create(&scratch.0.join("a"), RING_BYTES).expect("ring a");
    let transport = if checksummed { "ring-crc" } else { "ring" };
    let mut child = spawn_echo(transport, &scratch.0, Stdio::null(), Stdio::null());
    let subscriber = subscribe_when_ready(&scratch.0.join("b"));
    let mut a = RingEnd {
        publisher,
        subscriber,
        arena: Arena::new(),
        checksummed,
    };
    pin(0);
    let (histogram, elapsed) = time_round_trips(&mut a, secs);
    // Dropping the publisher releases its lock: the echo side sees the
    // writer gone and exits.
    drop(a);
    assert!(child.wait().expect("echo process").success());
    Sample::round_trips(&histogram, elapsed)
}

/// Two processes, two shared rings.
fn ring_round_trips(secs: f64) -> Sample {
    ring_round_trips_with(secs, false)
}

/// As [`ring_round_trips`], every frame checksummed.
fn ring_crc_round_trips(secs: f64) -> Sample {
    ring_round_trips_with(secs, true)
}

/// Two processes, a connected pair of Unix stream sockets.
fn socket_round_trips(secs: f64) -> Sample {
    let scratch = Scratch::new();
    let (ours, theirs) = UnixStream::pair().expect("socketpair");
    let mut child = spawn_echo(
        "socket",
        &scratch.0,
        Stdio::from(OwnedFd::from(theirs)),
        Stdio::null(),
    );
    let mut a = StreamEnd {
        tx: ours.try_clone().expect("dup socket"),
        rx: ours,
    };
    pin(0);
    let (histogram, elapsed) = time_round_trips(&mut a, secs);
    drop(a);
    assert!(child.wait().expect("echo process").success());
    Sample::round_trips(&histogram, elapsed)
}

/// Two processes, a pipe each way (the child's stdin and stdout).
fn pipe_round_trips(secs: f64) -> Sample {
    let scratch = Scratch::new();
    let mut child = spawn_echo("pipe", &scratch.0, Stdio::piped(), Stdio::piped());
    let mut a = StreamEnd {
        tx: child.stdin.take().expect("child stdin"),
        rx: child.stdout.take().expect("child stdout"),
    };
    pin(0);
    let (histogram, elapsed) = time_round_trips(&mut a, secs);
    drop(a);
    assert!(child.wait().expect("echo process").success());
    Sample::round_trips(&histogram, elapsed)
}

/// Side B, in the child process: echoes on `transport` until side A goes.
fn run_echo_child(transport: &str) {
    if let Some(id) = env::var("IPC_BENCH_CPU")
        .ok()
        .and_then(|cpu| cpu.parse().ok())
        .filter(|&id| id != usize::MAX)
    {
        core_affinity::set_for_current(core_affinity::CoreId { id });
    }
    let dir = PathBuf::from(env::var_os("IPC_BENCH_DIR").expect("IPC_BENCH_DIR"));
    match transport {
        "ring" | "ring-crc" => {
            let subscriber = subscribe_when_ready(&dir.join("a"));
            let publisher = IpcPublisher::create(&dir.join("b"), RING_BYTES).expect("ring b");
            echo(&mut RingEnd {
                publisher,
                subscriber,
                arena: Arena::new(),
                checksummed: transport == "ring-crc",
            });
        }
        "socket" => {
            let fd = std::io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .expect("stdin");
            let socket = UnixStream::from(fd);
            echo(&mut StreamEnd {
                tx: socket.try_clone().expect("dup socket"),
                rx: socket,
            });
        }
        "pipe" => {
            let rx = fs::File::from(
                std::io::stdin()
                    .as_fd()
                    .try_clone_to_owned()
                    .expect("stdin"),
            );
            let tx = fs::File::from(
                std::io::stdout()
                    .as_fd()
                    .try_clone_to_owned()
                    .expect("stdout"),
            );
            echo(&mut StreamEnd { tx, rx });
        }
        other => panic!("unknown transport {other}"),
    }
}

// ---------------------------------------------------------------------------
// Rows, bars and rounds

type MeasureFn = fn(f64) -> Sample;

/// One line of the table.
struct Row {
    /// Short name, for `IPC_FILTER` and the bars.
    key: &'static str,
    name: &'static str,
    measure: MeasureFn,
}

/// The rows, in the order they run and print. Add rows here.
fn rows() -> Vec<Row> {
    vec![
        Row {
            key: "lane",
            name: "in-process frame lane (2 threads)",
            measure: lane_round_trips,
        },
        Row {
            key: "ring",
            name: "ipc ring (2 processes)",
            measure: ring_round_trips,
        },
        Row {
            key: "ring-crc",
            name: "ipc ring, checksummed (2 processes)",
            measure: ring_crc_round_trips,
        },
        Row {
            key: "socket",
            name: "unix socket pair (2 processes)",
            measure: socket_round_trips,
        },
        Row {
            key: "pipe",
            name: "pipe pair (2 processes)",
            measure: pipe_round_trips,
        },
    ]
}

/// A bar: `top`'s p50 over `bottom`'s p50, at most `limit`.
struct BarSpec {
    text: &'static str,
    top: &'static str,
    bottom: &'static str,
    limit: f64,
}

/// The issue's bars, by row key. Add bars here.
fn bars() -> Vec<BarSpec> {
    vec![
        BarSpec {
            text: "ipc ring round trip p50 <= 1.5x the in-process frame lane's",
            top: "ring",
            bottom: "lane",
            limit: 1.5,
        },
        BarSpec {
            text: "ipc ring round trip p50 <= 0.1x the unix socket's",
            top: "ring",
            bottom: "socket",
            limit: 0.1,
        },
    ]
}

/// A bar as met or missed in this run.
struct Bar {
    text: &'static str,
    ratios: Vec<f64>,
    limit: f64,
}

impl Bar {
    fn ratio(&self) -> f64 {
        median(self.ratios.clone())
    }

    fn met(&self) -> bool {
        self.ratio() <= self.limit
    }
}

struct Settings {
    rounds: usize,
    secs: f64,
    warmup_secs: f64,
    filter: Option<String>,
    write_json: bool,
}

impl Settings {
    fn from_env() -> Settings {
        let benching = env::args().any(|arg| arg == "--bench");
        let quick = !benching || env::var("IPC_QUICK").is_ok_and(|value| value != "0");
        let rounds = env::var("IPC_ROUNDS")
            .ok()
            .and_then(|value| value.parse().ok())
            .filter(|&rounds| rounds > 0)
            .unwrap_or(if quick { 2 } else { 5 });
        let (secs, warmup_secs) = if quick { (0.05, 0.02) } else { (1.0, 0.2) };
        Settings {
            rounds,
            secs,
            warmup_secs,
            filter: env::var("IPC_FILTER").ok().filter(|text| !text.is_empty()),
            write_json: benching,
        }
    }
}

/// A row's medians over the rounds.
struct Summary {
    name: &'static str,
    key: &'static str,
    msgs_per_s: Option<f64>,
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    count: u64,
}

fn summarize(row: &Row, samples: &[Sample]) -> Summary {
    let column = |field: fn(&Sample) -> f64| median(samples.iter().map(field).collect());
    let rates: Vec<f64> = samples.iter().filter_map(|s| s.msgs_per_s).collect();
    Summary {
        name: row.name,
        key: row.key,
        msgs_per_s: (!rates.is_empty()).then(|| median(rates)),
        p50: column(|s| s.p50),
        p99: column(|s| s.p99),
        p999: column(|s| s.p999),
        max: column(|s| s.max),
        count: column(|s| s.count as f64) as u64,
    }
}

fn print_table(summaries: &[Summary]) {
    println!(
        "{:<40} {:>9} {:>8} {:>8} {:>9} {:>10} {:>9}",
        "row", "msgs/s", "p50 ns", "p99 ns", "p99.9 ns", "max ns", "count"
    );
    for row in summaries {
        println!(
            "{:<40} {:>9} {:>8.0} {:>8.0} {:>9.0} {:>10.0} {:>9}",
            row.name,
            row.msgs_per_s
                .map_or_else(|| "-".to_owned(), |rate| format!("{:.2}M", rate / 1e6)),
            row.p50,
            row.p99,
            row.p999,
            row.max,
            row.count
        );
    }
    println!(
        "64-byte messages, one in flight; round-trip latency; msgs/s counts both directions.\n\
         Medians over the rounds."
    );
}

fn json(settings: &Settings, clock_ns: f64, summaries: &[Summary], bars: &[Bar]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{{");
    let _ = writeln!(out, "  \"bench\": \"ipc\",");
    let _ = writeln!(out, "  \"rounds\": {},", settings.rounds);
    let _ = writeln!(out, "  \"secs\": {},", settings.secs);
    let _ = writeln!(out, "  \"clock\": {},", json_string(clock_name()));
    let _ = writeln!(out, "  \"clock_read_ns\": {},", json_number(Some(clock_ns)));
    let _ = writeln!(out, "  \"message_bytes\": {MESSAGE_BYTES},");
    let _ = writeln!(out, "  \"rows\": [");
    for (index, row) in summaries.iter().enumerate() {
        let _ = writeln!(
            out,
            "    {{\"name\": {}, \"key\": {}, \"msgs_per_s\": {}, \"p50_ns\": {}, \
             \"p99_ns\": {}, \"p999_ns\": {}, \"max_ns\": {}, \"count\": {}}}{}",
            json_string(row.name),
            json_string(row.key),
            json_number(row.msgs_per_s),
            json_number(Some(row.p50)),
            json_number(Some(row.p99)),
            json_number(Some(row.p999)),
            json_number(Some(row.max)),
            row.count,
            if index + 1 < summaries.len() { "," } else { "" }
        );
    }
    let _ = writeln!(out, "  ],");
    let _ = writeln!(out, "  \"bars\": [");
    for (index, bar) in bars.iter().enumerate() {
        let _ = writeln!(
            out,
            "    {{\"bar\": {}, \"ratio\": {}, \"limit\": {}, \"met\": {}}}{}",
            json_string(bar.text),
            json_number(Some(bar.ratio())),
            json_number(Some(bar.limit)),
            bar.met(),
            if index + 1 < bars.len() { "," } else { "" }
        );
    }
    let _ = writeln!(out, "  ]");
    let _ = writeln!(out, "}}");
    out
}

fn main() {
    if let Ok(transport) = env::var("IPC_BENCH_CHILD") {
        run_echo_child(&transport);
        return;
    }
    let settings = Settings::from_env();
    common::core_ids();
    let specs = bars();
    let compared: Vec<&str> = specs.iter().flat_map(|b| [b.top, b.bottom]).collect();
    let rows: Vec<Row> = rows()
        .into_iter()
        .filter(|row| {
            compared.contains(&row.key)
                || settings
                    .filter
                    .as_deref()
                    .is_none_or(|text| row.key.contains(text) || row.name.contains(text))
        })
        .collect();

    let clock_ns = clock_read_ns();
    println!(
        "ipc: side A pinned to CPU 0, side B to CPU 1; clock {} ({:.3} ns/tick, {clock_ns:.1} ns \
         a read); {} rounds of {} s per row",
        clock_name(),
        ns_per_tick(),
        settings.rounds,
        settings.secs
    );
    let started = Instant::now();
    for row in &rows {
        (row.measure)(settings.warmup_secs);
    }
    eprintln!("warmed up in {:.1} s", started.elapsed().as_secs_f64());
    let mut samples: Vec<Vec<Sample>> = rows.iter().map(|_| Vec::new()).collect();
    for round in 1..=settings.rounds {
        for (row, kept) in rows.iter().zip(&mut samples) {
            kept.push((row.measure)(settings.secs));
        }
        eprintln!(
            "round {round}/{} done at {:.1} s",
            settings.rounds,
            started.elapsed().as_secs_f64()
        );
    }

    let of = |key: &str| {
        rows.iter()
            .position(|row| row.key == key)
            .map(|index| &samples[index])
    };
    let bars: Vec<Bar> = specs
        .iter()
        .filter_map(|spec| {
            let (top, bottom) = (of(spec.top)?, of(spec.bottom)?);
            Some(Bar {
                text: spec.text,
                ratios: top.iter().zip(bottom).map(|(t, b)| t.p50 / b.p50).collect(),
                limit: spec.limit,
            })
        })
        .collect();
    let summaries: Vec<Summary> = rows
        .iter()
        .zip(&samples)
        .map(|(row, kept)| summarize(row, kept))
        .collect();

    println!();
    print_table(&summaries);
    println!("\nbars (this run):");
    for bar in &bars {
        let rounds: Vec<String> = bar.ratios.iter().map(|r| format!("{r:.3}")).collect();
        println!(
            "  [{}] {:<62} {:>6.3}x  (rounds: {})",
            if bar.met() { "met   " } else { "MISSED" },
            bar.text,
            bar.ratio(),
            rounds.join(" ")
        );
    }
    if settings.write_json {
        match write_json("ipc", &json(&settings, clock_ns, &summaries, &bars)) {
            Ok(path) => println!("\nwrote {}", path.display()),
            Err(error) => eprintln!("ipc: cannot write the JSON report: {error}"),
        }
    }
}
