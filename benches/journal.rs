//! Journal append throughput and per-append latency, for 64-byte and
//! 1 KiB payloads under each durability policy, in one run.
//!
//! Every round runs every row once, in the same order (A B C ... A B C
//! ...), so rows compared with each other run close in time; each figure
//! printed is the median over the rounds. A row's round has two phases on
//! a fresh journal: throughput (appends in a tight loop for a fixed time,
//! no clock read per append) and latency (each append timed with
//! `Instant`, recorded in an HdrHistogram). Latency here is the time one
//! `append` call takes, not an end-to-end delay.
//!
//! The journal lives in `target/corelane-bench/journal-tmp` (the real
//! disk, not tmpfs: `df -T target` says which filesystem) and is removed
//! after each row. Results: a table, and
//! `$CARGO_TARGET_DIR/corelane-bench/journal.json`.
//!
//! `CORELANE_BENCH_ROUNDS` (default 5) and `CORELANE_BENCH_SECS` (per
//! phase, default 0.3) shorten or lengthen the run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use corelane::frame::layout::FrameMeta;
use corelane::segment::journal::{Durability, JournalConfig, JournalWriter};
use hdrhistogram::Histogram;

mod common;

/// Bytes per segment file: large enough that rolls are rare.
const SEGMENT_SIZE: usize = 64 << 20;

/// Appends between two reads of the clock in the throughput phase.
const BATCH: u64 = 1024;

/// The bar: appends without sync of 64-byte frames per second.
const BAR_MSGS_PER_S: f64 = 5e6;

struct Case {
    name: String,
    payload: usize,
    durability: Durability,
}

fn cases() -> Vec<Case> {
    let policies = [
        ("none", Durability::None),
        ("every 1000 frames", Durability::EveryFrames(1000)),
        ("every 100 ms (default)", Durability::default()),
        ("each frame", Durability::EachFrame),
    ];
    let mut cases = Vec::new();
    for payload in [64, 1024] {
        for (policy, durability) in policies {
            cases.push(Case {
                name: format!("append {payload} B, sync {policy}"),
                payload,
                durability,
            });
        }
    }
    cases
}

struct Sample {
    /// Appends per second of the appending thread's CPU time.
    msgs_per_s: f64,
    /// Appends per second of wall-clock time.
    wall_msgs_per_s: f64,
    histogram: Histogram<u64>,
}

fn scratch_dir() -> PathBuf {
    common::out_dir().join("journal-tmp")
}

fn open(dir: &Path, case: &Case) -> JournalWriter {
    let _ = std::fs::remove_dir_all(dir);
    JournalWriter::open(
        dir,
        JournalConfig {
            segment_size: SEGMENT_SIZE,
            durability: case.durability,
        },
    )
    .expect("journal opens")
}

fn meta() -> FrameMeta {
    FrameMeta {
        msg_type: 1,
        version: 1,
        ..FrameMeta::default()
    }
}

fn measure(case: &Case, secs: f64) -> Sample {
    let dir = scratch_dir();
    let payload = vec![0x5Au8; case.payload];
    let phase = Duration::from_secs_f64(secs);

    let mut writer = open(&dir, case);
    let started = Instant::now();
    let cpu_started = thread_cpu_secs();
    let mut appended = 0u64;
    while started.elapsed() < phase {
        for _ in 0..BATCH {
            writer.append(&payload, meta()).expect("append");
        }
        appended += BATCH;
    }
    let msgs_per_s = appended as f64 / (thread_cpu_secs() - cpu_started);
    let wall_msgs_per_s = appended as f64 / started.elapsed().as_secs_f64();
    drop(writer);

    let mut writer = open(&dir, case);
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    let started = Instant::now();
    while started.elapsed() < phase {
        let before = Instant::now();
        writer.append(&payload, meta()).expect("append");
        histogram.saturating_record(before.elapsed().as_nanos() as u64);
    }
    drop(writer);
    let _ = std::fs::remove_dir_all(&dir);
    Sample {
        msgs_per_s,
        wall_msgs_per_s,
        histogram,
    }
}

/// CPU time this thread has used, in seconds: on a machine shared with
/// other work, the rate per CPU second is what the code costs, while the
/// wall-clock rate also counts the time the thread was not scheduled.
/// Time spent blocked (in msync, or waiting for a prepared segment) is not
/// CPU time either, so the sync rows are judged by the wall-clock rate.
fn thread_cpu_secs() -> f64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the call to fill in.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    now.tv_sec as f64 + now.tv_nsec as f64 * 1e-9
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument filters nothing.
    let rounds: usize = env_or("CORELANE_BENCH_ROUNDS", 5);
    let secs: f64 = env_or("CORELANE_BENCH_SECS", 0.3);
    let cases = cases();
    println!(
        "journal append: {rounds} rounds x {} rows, {secs} s per phase, segments of {} MiB in {}",
        cases.len(),
        SEGMENT_SIZE >> 20,
        scratch_dir().display()
    );
    let mut samples: Vec<Vec<Sample>> = cases.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for (case, row) in cases.iter().zip(&mut samples) {
            row.push(measure(case, secs));
        }
        eprintln!("round {} of {rounds} done", round + 1);
    }

    let rows: Vec<common::Row> = cases
        .iter()
        .zip(&samples)
        .map(|(case, samples)| {
            let pick = |f: &dyn Fn(&Sample) -> f64| common::median(samples.iter().map(f).collect());
            common::Row {
                name: case.name.clone(),
                msgs_per_s: Some(pick(&|s| s.msgs_per_s)),
                p50_ns: pick(&|s| s.histogram.value_at_quantile(0.5) as f64),
                p99_ns: pick(&|s| s.histogram.value_at_quantile(0.99) as f64),
                p999_ns: pick(&|s| s.histogram.value_at_quantile(0.999) as f64),
                max_ns: pick(&|s| s.histogram.max() as f64),
                count: samples.iter().map(|s| s.histogram.len()).sum(),
            }
        })
        .collect();

    let wall: Vec<f64> = samples
        .iter()
        .map(|samples| common::median(samples.iter().map(|s| s.wall_msgs_per_s).collect()))
        .collect();
    println!(
        "\n{:<40} {:>12} {:>12} {:>10} {:>10} {:>10} {:>12} {:>10}",
        "row", "frames/cpu-s", "frames/s", "p50 ns", "p99 ns", "p99.9 ns", "max ns", "count"
    );
    for (row, wall) in rows.iter().zip(&wall) {
        println!(
            "{:<40} {:>11.2}M {:>11.3}M {:>10.0} {:>10.0} {:>10.0} {:>12.0} {:>10}",
            row.name,
            row.msgs_per_s.unwrap_or(f64::NAN) / 1e6,
            wall / 1e6,
            row.p50_ns,
            row.p99_ns,
            row.p999_ns,
            row.max_ns,
            row.count
        );
    }
    println!(
        "medians over {rounds} rounds; frames/cpu-s: per second of the appending thread's CPU \
         time (msgs_per_s in the JSON); frames/s: per wall-clock second; latency = time of one \
         append call (Instant)"
    );

    let unsynced = rows[0].msgs_per_s.unwrap_or(0.0);
    println!(
        "\nbar: append without sync, 64 B: {:.2} M frames per CPU second >= {:.0} M: {}",
        unsynced / 1e6,
        BAR_MSGS_PER_S / 1e6,
        if unsynced >= BAR_MSGS_PER_S {
            "met"
        } else {
            "MISSED"
        }
    );
    let notes = [
        ("directory", scratch_dir().display().to_string()),
        ("rounds", rounds.to_string()),
        ("phase_secs", secs.to_string()),
        ("latency", "per append call, Instant".to_string()),
        (
            "msgs_per_s",
            "appends per second of the appending thread's CPU time".to_string(),
        ),
    ];
    match common::write_rows("journal", &notes, &rows) {
        Ok(path) => println!("wrote {}", path.display()),
        Err(error) => eprintln!("cannot write journal.json: {error}"),
    }
}
