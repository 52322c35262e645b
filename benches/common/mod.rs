//! What every bench shares: settings from the environment, pinning, the
//! clock, histograms, medians, bars and the JSON reports under
//! `target/corelane-bench/`. Each bench includes it with `mod common;`.

#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};
use std::{env, fs};

use hdrhistogram::Histogram;

/// Largest round trip the histograms track: one minute.
pub const MAX_TRACKED_NS: u64 = 60_000_000_000;

/// The machine's CPUs, read once, before any thread is pinned (a pinned
/// thread, and any process it starts, sees only its own CPU).
pub fn core_ids() -> &'static [core_affinity::CoreId] {
    static CORES: OnceLock<Vec<core_affinity::CoreId>> = OnceLock::new();
    CORES.get_or_init(|| core_affinity::get_core_ids().unwrap_or_default())
}

/// Side A on the first CPU, side B on the second (for the shared parts
/// in `corelane::bench`), or unpinned on a machine with fewer than two.
pub fn sides() -> corelane::bench::ipc::Sides {
    match core_ids() {
        [a, b, ..] => corelane::bench::ipc::Sides {
            a: Some(*a),
            b: Some(*b),
        },
        _ => corelane::bench::ipc::Sides::default(),
    }
}

/// Pins the calling thread to the first (`side` 0) or second (`side` 1)
/// CPU; does nothing on a machine with fewer than two.
pub fn pin(side: usize) {
    let cores = core_ids();
    if cores.len() >= 2 {
        core_affinity::set_for_current(cores[side]);
    }
}

/// Reads the time-stamp counter with RDTSCP, which waits for the work
/// before it (the load that saw the echo) to finish; where the CPU has no
/// RDTSCP, nanoseconds on the monotonic clock.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn ticks() -> u64 {
    if has_rdtscp() {
        let mut core = 0;
        // SAFETY: the CPU has RDTSCP (checked just above); the instruction
        // only writes `core`, a local.
        unsafe { std::arch::x86_64::__rdtscp(&mut core) }
    } else {
        monotonic_ns()
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub fn ticks() -> u64 {
    monotonic_ns()
}

pub fn monotonic_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

pub fn clock_name() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    if has_rdtscp() {
        return "TSC (rdtscp)";
    }
    "Instant"
}

/// Whether the CPU has RDTSCP, asked once of CPUID (leaf 0x8000_0001, EDX
/// bit 27); virtual machines may hide it.
#[cfg(target_arch = "x86_64")]
pub fn has_rdtscp() -> bool {
    use std::arch::x86_64::__cpuid;
    static RDTSCP: OnceLock<bool> = OnceLock::new();
    *RDTSCP.get_or_init(|| {
        // SAFETY: every x86_64 CPU has CPUID, and these leaves only report.
        // (`__cpuid` is a safe function from Rust 1.87 on, unsafe before.)
        #[allow(unused_unsafe)]
        unsafe {
            __cpuid(0x8000_0000).eax >= 0x8000_0001 && __cpuid(0x8000_0001).edx & (1 << 27) != 0
        }
    })
}

/// Nanoseconds per tick, measured once against `Instant` over 100 ms.
pub fn ns_per_tick() -> f64 {
    static SCALE: OnceLock<f64> = OnceLock::new();
    *SCALE.get_or_init(|| {
        let started = Instant::now();
        let first = ticks();
        thread::sleep(Duration::from_millis(100));
        let last = ticks();
        started.elapsed().as_nanos() as f64 / (last - first).max(1) as f64
    })
}

/// The median time between two clock reads back to back, in nanoseconds:
/// every round trip, the floor's included, counts this much clock.
pub fn clock_read_ns() -> f64 {
    let mut gaps: Vec<f64> = (0..10_001)
        .map(|_| {
            let first = ticks();
            let second = ticks();
            (second - first) as f64
        })
        .collect();
    gaps.sort_by(f64::total_cmp);
    gaps[gaps.len() / 2] * ns_per_tick()
}

/// A histogram of nanoseconds from 1 ns to [`MAX_TRACKED_NS`], 3 digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKED_NS, 3).expect("constant bounds are valid")
}

/// The median of `values` (NaN if there are none).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.is_empty() {
        f64::NAN
    } else if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

/// `text` as a JSON string.
pub fn json_string(text: &str) -> String {
    let mut quoted = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(quoted, "\\u{:04x}", c as u32);
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// A number for JSON, to three decimals; `null` if absent or not finite.
pub fn json_number(value: Option<f64>) -> String {
    match value {
        Some(value) if value.is_finite() => format!("{}", (value * 1000.0).round() / 1000.0),
        _ => "null".to_owned(),
    }
}

/// Writes `text` to `$CARGO_TARGET_DIR/corelane-bench/{name}.json`
/// (default `target/`); returns the path.
pub fn write_json(name: &str, text: &str) -> std::io::Result<PathBuf> {
    let directory = out_dir();
    fs::create_dir_all(&directory)?;
    let path = directory.join(format!("{name}.json"));
    fs::write(&path, text)?;
    Ok(path)
}

/// Whether `cargo bench` runs us (it passes `--bench`); `cargo test
/// --benches` does not, and then a quick pass that writes nothing will do.
pub fn benching() -> bool {
    env::args().any(|arg| arg == "--bench")
}

/// Whether the environment variable `name` is set to something but `0`.
pub fn env_flag(name: &str) -> bool {
    env::var(name).is_ok_and(|value| value != "0")
}

/// A positive number from the environment variable `name`.
pub fn env_count(name: &str) -> Option<usize> {
    env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .filter(|&count| count > 0)
}

/// Per-round ratios `top[i] / bottom[i]`.
pub fn ratios(top: &[f64], bottom: &[f64]) -> Vec<f64> {
    top.iter()
        .zip(bottom)
        .map(|(top, bottom)| top / bottom)
        .collect()
}

/// One of an issue's bars: the median of per-round ratios must be at least
/// `limit`.
pub struct Bar {
    pub text: String,
    pub ratios: Vec<f64>,
    pub limit: f64,
}

impl Bar {
    pub fn ratio(&self) -> f64 {
        median(self.ratios.clone())
    }

    pub fn met(&self) -> bool {
        self.ratio() >= self.limit
    }
}

pub fn print_bars(bars: &[Bar]) {
    println!("\nbars (this run; the machine is shared, ratios are per-round medians):");
    for bar in bars {
        let rounds: Vec<String> = bar.ratios.iter().map(|r| format!("{r:.2}")).collect();
        println!(
            "  [{}] {:<72} {:>6.2}x  (rounds: {})",
            if bar.met() { "met   " } else { "MISSED" },
            bar.text,
            bar.ratio(),
            rounds.join(" ")
        );
    }
}

/// A JSON object of `fields` (name and already-encoded value) on one line.
pub fn json_object(fields: &[(&str, String)]) -> String {
    let inner: Vec<String> = fields
        .iter()
        .map(|(name, value)| format!("{}: {value}", json_string(name)))
        .collect();
    format!("{{{}}}", inner.join(", "))
}

/// The whole report: `header` fields, then `rows` and `bars` arrays.
pub fn json_report(header: &[(&str, String)], rows: &[String], bars: &[Bar]) -> String {
    let mut out = String::from("{\n");
    for (name, value) in header {
        let _ = writeln!(out, "  {}: {value},", json_string(name));
    }
    let _ = writeln!(out, "  \"rows\": [\n    {}\n  ],", rows.join(",\n    "));
    let bars: Vec<String> = bars
        .iter()
        .map(|bar| {
            json_object(&[
                ("bar", json_string(&bar.text)),
                ("ratio", json_number(Some(bar.ratio()))),
                ("limit", json_number(Some(bar.limit))),
                ("met", bar.met().to_string()),
                (
                    "per_round",
                    format!(
                        "[{}]",
                        bar.ratios
                            .iter()
                            .map(|r| json_number(Some(*r)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
            ])
        })
        .collect();
    let _ = writeln!(out, "  \"bars\": [\n    {}\n  ]", bars.join(",\n    "));
    out.push_str("}\n");
    out
}

/// One row of results: medians over the rounds.
#[derive(Clone, Debug)]
pub struct Row {
    /// What was measured.
    pub name: String,
    /// Messages per second, if measured.
    pub msgs_per_s: Option<f64>,
    /// Latency percentiles and maximum, nanoseconds.
    pub p50_ns: f64,
    /// 99th percentile.
    pub p99_ns: f64,
    /// 99.9th percentile.
    pub p999_ns: f64,
    /// Largest.
    pub max_ns: f64,
    /// Latency samples behind the percentiles.
    pub count: u64,
}

/// The directory results go to: `$CARGO_TARGET_DIR/corelane-bench`.
pub fn out_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"),
        PathBuf::from,
    );
    target.join("corelane-bench")
}

/// Writes `rows` as `out_dir()/NAME.json`, with `notes` (machine, clock,
/// directory) as a top-level object of strings; returns the path.
pub fn write_rows(name: &str, notes: &[(&str, String)], rows: &[Row]) -> std::io::Result<PathBuf> {
    let mut text = String::from("{\n");
    for (key, value) in notes {
        let _ = writeln!(text, "  {}: {},", json_string(key), json_string(value));
    }
    text.push_str("  \"rows\": [\n");
    for (i, row) in rows.iter().enumerate() {
        let _ = write!(
            text,
            "    {{\"name\": {}, \"msgs_per_s\": {}, \"p50_ns\": {}, \"p99_ns\": {}, \
             \"p999_ns\": {}, \"max_ns\": {}, \"count\": {}}}",
            json_string(&row.name),
            json_number(row.msgs_per_s),
            json_number(Some(row.p50_ns)),
            json_number(Some(row.p99_ns)),
            json_number(Some(row.p999_ns)),
            json_number(Some(row.max_ns)),
            row.count
        );
        text.push_str(if i + 1 < rows.len() { ",\n" } else { "\n" });
    }
    text.push_str("  ]\n}\n");
    let dir = out_dir();
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, text)?;
    Ok(path)
}
