//! Round trips between two processes through two shared rings, against a
//! Unix domain socket pair and a pipe pair between the same two processes,
//! and against the in-process frame lane between two threads.
//!
//! ```text
//! cargo bench --bench ipc                 # about a minute
//! IPC_QUICK=1 cargo bench --bench ipc     # smoke run, a few seconds
//! ```
//!
//! Every row bounces a 64-byte message (a `Words64`: eight `u64`s, so a
//! torn message shows) between side A, pinned to the first CPU, and side B,
//! pinned to the second: A sends, B echoes, A waits for the echo and times
//! the round trip with the time-stamp counter into an HdrHistogram, for a
//! fixed time after a warm-up. Side B is a second process (this bench
//! binary started again with `--ipc-echo TRANSPORT DIR`) for every row but
//! the in-process lane, where it is a second thread. The two sides of every
//! transport are `corelane::bench::ipc`'s, which `corelane bench` runs too.
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
//! of seconds and returns a [`Sample`] (`Sample::round_trips` turns the
//! shared round-trip timer's result into one; a row that measures
//! something other than round trips builds its own `Sample` from its
//! per-operation latency and rate, and its name says what it measures). Bars are listed in [`bars`] by row keys.
//!
//! Environment: `IPC_QUICK=1`, `IPC_ROUNDS=n` (default 5),
//! `IPC_FILTER=text` (rows whose key or name contains it; the rows the bars
//! compare always run). Results also go to
//! `$CARGO_TARGET_DIR/corelane-bench/ipc.json` (default `target/`). Run as
//! a test (`cargo test --benches`), it does a quick pass and writes no JSON.

use std::fmt::Write as _;
use std::io;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use std::{env, path::PathBuf};

use corelane::bench::ipc::{self, EchoSpec, RoundTrips, TickClock, Transport, MESSAGE_BYTES};

mod common;
use common::{
    clock_name, clock_read_ns, json_number, json_string, median, ns_per_tick, ticks, write_json,
};

// ---------------------------------------------------------------------------
// The transports' two sides live in `corelane::bench::ipc`, shared with
// `corelane bench`; this file times them with the TSC and keeps its rounds,
// table, bars and JSON.

/// The time-stamp counter (or the monotonic clock), scaled to ns.
fn clock() -> TickClock {
    TickClock {
        read: ticks,
        ns_per_tick: ns_per_tick(),
    }
}

/// The first argument that makes this binary side B.
const ECHO_FLAG: &str = "--ipc-echo";

/// Starts this binary again as side B: `--ipc-echo TRANSPORT DIR [--cpu N]`.
fn spawn_echo(spec: &EchoSpec, stdin: Stdio, stdout: Stdio) -> io::Result<Child> {
    let command = [env::current_exe()?.into_os_string(), ECHO_FLAG.into()];
    let spawn = ipc::spawn_command(&command);
    spawn(spec, stdin, stdout)
}

/// The spec this binary was started with as side B, if it was.
fn echo_spec() -> Option<EchoSpec> {
    let args: Vec<String> = env::args().collect();
    if args.get(1).map(String::as_str) != Some(ECHO_FLAG) {
        return None;
    }
    let transport = Transport::parse(args.get(2)?)?;
    let dir = PathBuf::from(args.get(3)?);
    let cpu = match args.get(4).map(String::as_str) {
        Some("--cpu") => Some(args.get(5)?.parse().ok()?),
        _ => None,
    };
    Some(EchoSpec {
        transport,
        dir,
        cpu,
    })
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
    /// A sample of ping-pong round trips: two messages each.
    fn round_trips(timed: io::Result<RoundTrips>) -> Sample {
        let timed = timed.unwrap_or_else(|error| panic!("round trips: {error}"));
        let histogram = &timed.histogram;
        Sample {
            msgs_per_s: Some(timed.msgs_per_s()),
            p50: histogram.percentile(50.0) as f64,
            p99: histogram.percentile(99.0) as f64,
            p999: histogram.percentile(99.9) as f64,
            max: histogram.max() as f64,
            count: histogram.count(),
        }
    }
}

/// Side A for `secs` of round trips over `transport`.
fn between_processes(transport: Transport, secs: f64) -> Sample {
    Sample::round_trips(ipc::process_round_trips(
        transport,
        &spawn_echo,
        common::sides(),
        Duration::from_secs_f64(secs),
        clock(),
    ))
}

/// The in-process frame lane between two pinned threads.
fn lane_round_trips(secs: f64) -> Sample {
    Sample::round_trips(ipc::lane_round_trips(
        common::sides(),
        Duration::from_secs_f64(secs),
        clock(),
    ))
}

/// Two processes, two shared rings.
fn ring_round_trips(secs: f64) -> Sample {
    between_processes(Transport::Ring, secs)
}

/// As [`ring_round_trips`], every frame checksummed.
fn ring_crc_round_trips(secs: f64) -> Sample {
    between_processes(Transport::RingChecksummed, secs)
}

/// Two processes, a connected pair of Unix stream sockets.
fn socket_round_trips(secs: f64) -> Sample {
    between_processes(Transport::Socket, secs)
}

/// Two processes, a pipe each way (the child's stdin and stdout).
fn pipe_round_trips(secs: f64) -> Sample {
    between_processes(Transport::Pipe, secs)
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
    if let Some(spec) = echo_spec() {
        if let Err(error) = ipc::run_echo_side(&spec) {
            eprintln!("ipc: echo side {}: {error}", spec.transport.name());
            std::process::exit(1);
        }
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
